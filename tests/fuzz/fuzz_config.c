/*  Fuzz target bridge_config: the YAML config loader (dfb_config.c, over
    libyaml), fed through a memfd so the real dfb_config_load path runs.
    A refused config must say why; an accepted one must be freed whole
    (LeakSanitizer). */
#include "fuzz_util.h"

#include "dfb_config.h"
#include "dfb_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfb_log_set_level(getenv("DF_FUZZ_LOG") ? DFB_LOG_DEBUG : DFB_LOG_ERROR);
    char path[64], err[512];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    err[0] = '\0';
    dfb_config_t *cfg = dfb_config_load(path, err, sizeof err);
    if (!cfg && err[0] == '\0')
        abort(); /* a refusal without a reason */
    dfb_config_destroy(&cfg);
    if (cfg)
        abort();
    close(fd);
    return 0;
}
