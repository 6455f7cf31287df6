/*  Fuzz target consumer_checkpoint: the consumer's checkpoint loader
    (dfc_ckpt_load, CONTRACT section 11), reading the input as a checkpoint
    file (memfd). What it accepts must survive a save and a load unchanged
    (the same entries, epochs, watermarks and handled gseqs), and the loaded
    entries obey the loader's own bounds: at most `max` entries, at most
    DFC_CKPT_DONE_MAX handled gseqs each, strictly ascending. */
#include "fuzz_util.h"

#include "dfc_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX 4

static void
check_entries(const dfc_ckpt_entry_t *e, size_t n)
{
    if (n > MAX)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (memchr(e[i].epoch, '\0', sizeof e[i].epoch) == NULL || e[i].ndone > DFC_CKPT_DONE_MAX)
            abort();
        for (size_t k = 1; k < e[i].ndone; k++)
            if (e[i].done[k] <= e[i].done[k - 1])
                abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfc_log_set_level((dfc_log_level_t)(getenv("DF_FUZZ_LOG") ? DFC_LOG_DEBUG : DFC_LOG_ERROR + 1));
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    dfc_ckpt_entry_t e[MAX], again[MAX];
    size_t n = 0, n2 = 0;
    int rc = dfc_ckpt_load(path, e, MAX, &n);
    close(fd);
    check_entries(e, n);
    if (rc == DFC_OK && n > 0) {
        /* what was accepted round-trips through the writer */
        const char *dir = fuzz_scratch();
        char file[300];
        snprintf(file, sizeof file, "%s/ckpt", dir ? dir : ".");
        int save = dfc_ckpt_save(file, e, n, DFC_LOG_DEBUG);
        if (save == DFC_OK) {
            /* the writer skips epochs it cannot write (a space: a
               hand-edited file, or a bridge's odd epoch) */
            if (dfc_ckpt_load(file, again, MAX, &n2) != DFC_OK)
                abort();
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (strpbrk(e[i].epoch, " \n") || !e[i].epoch[0])
                    continue;
                if (k >= n2 || strcmp(e[i].epoch, again[k].epoch) != 0 ||
                    e[i].gseq != again[k].gseq || e[i].ndone != again[k].ndone ||
                    (e[i].ndone &&
                     memcmp(e[i].done, again[k].done, e[i].ndone * sizeof *e[i].done) != 0))
                    abort();
                k++;
            }
            if (k != n2)
                abort();
            dfc_ckpt_entries_free(again, n2);
        }
        unlink(file);
    }
    dfc_ckpt_entries_free(e, n);
    return 0;
}
