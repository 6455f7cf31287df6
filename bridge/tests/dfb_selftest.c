/*  dfb_selftest: runs one bridge class's self-test by name, so each is its
    own ctest (bridge_<name>). `dfb_selftest all` runs them all. */
#include <stdio.h>
#include <string.h>

#include "dfb_auth.h"
#include "dfb_cmd.h"
#include "dfb_cmdlog.h"
#include "dfb_cmdproto.h"
#include "dfb_cmdsched.h"
#include "dfb_config.h"
#include "dfb_crc32c.h"
#include "dfb_feedfile.h"
#include "dfb_http.h"
#include "dfb_log.h"
#include "dfb_loop.h"
#include "dfb_metrics.h"
#include "dfb_outbound.h"
#include "dfb_publish.h"
#include "dfb_retry.h"
#include "dfb_secret.h"
#include "dfb_stop.h"
#include "dfb_tls.h"

typedef struct {
    const char *name;
    int (*fn)(int verbose);
} test_t;

static const test_t s_tests[] = {
    {"retry", dfb_retry_test}, {"config", dfb_config_test}, {"auth", dfb_auth_test},
    {"http", dfb_http_test},   {"loop", dfb_loop_test},     {"publish", dfb_publish_test},
    {"stop", dfb_stop_test},
    {"metrics", dfb_metrics_test},
    {"feedfile", dfb_feedfile_test},
    {"tls", dfb_tls_test},
    {"secret", dfb_secret_test},
    {"log", dfb_log_test},
    {"crc32c", dfb_crc32c_test},
    {"cmdproto", dfb_cmdproto_test},
    {"outbound", dfb_outbound_test},
    {"cmdlog", dfb_cmdlog_test},
    {"cmdlog_bench", dfb_cmdlog_bench}, /* a benchmark: by name only, not in `all` */
    {"cmdsched", dfb_cmdsched_test},
    {"cmd", dfb_cmd_test},
};

int
main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "all";
    int verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
    int ran = 0, fails = 0;
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests[0]; i++) {
        if (strcmp(which, "all") != 0 ? strcmp(which, s_tests[i].name) != 0
                                       : strstr(s_tests[i].name, "_bench") != NULL)
            continue;
        printf("* %s\n", s_tests[i].name);
        int rc = s_tests[i].fn(verbose);
        printf("  %s: %s\n", s_tests[i].name, rc == 0 ? "OK" : "FAILED");
        fails += rc != 0;
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "dfb_selftest: no test named '%s'\n", which);
        return 2;
    }
    return fails ? 1 : 0;
}
