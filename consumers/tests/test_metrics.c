/*  dfc_stats_prometheus: the snprintf contract, label checks and escaping,
    and (with --sample) the text for the sample counters that
    metrics_check.py compares with the Python and Node packages' and with
    its own rendering of consumers/metrics.json. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "df_check.h"
#include "dfconsumer.h"

/*  The sample of metrics_check.py: field i (0-based, struct order) holds
    (i + 1) * 1000003 + 7, except lag_ms = 1000042 (1000.042 s). */
static void
sample(dfc_stats_t *st)
{
    uint64_t *f = (uint64_t *)st;
    for (size_t i = 0; i < sizeof *st / sizeof(uint64_t); i++)
        f[i] = (uint64_t)(i + 1) * 1000003u + 7u;
    st->lag_ms = 1000042;
}

static const char *const sample_labels[] = {"worker", "w \"1\"\\\n", "group", "gr\xc3\xbcppe",
                                            NULL};

static void
test_snprintf(void)
{
    dfc_stats_t st;
    sample(&st);
    size_t need = dfc_stats_prometheus(&st, NULL, NULL, 0);
    CHECK(need > 0);
    char *buf = malloc(need + 1);
    CHECK_EQ(dfc_stats_prometheus(&st, NULL, buf, need + 1), need);
    CHECK_EQ(strlen(buf), need);
    /* too small: cut, NUL-terminated, same answer */
    char small[100];
    memset(small, 'x', sizeof small);
    CHECK_EQ(dfc_stats_prometheus(&st, NULL, small, sizeof small), need);
    CHECK_EQ(strlen(small), sizeof small - 1);
    CHECK(strncmp(small, buf, sizeof small - 1) == 0);
    char one = 'x';
    CHECK_EQ(dfc_stats_prometheus(&st, NULL, &one, 1), need);
    CHECK_EQ(one, '\0');
    const char *head = "# HELP dfconsumer_listeners Listeners subscribed now.\n"
                       "# TYPE dfconsumer_listeners gauge\n"
                       "dfconsumer_listeners 1000010\n"
                       "# HELP dfconsumer_connects_total ";
    CHECK(strncmp(buf, head, strlen(head)) == 0);
    CHECK(strstr(buf, "\n# TYPE dfconsumer_received_total counter\n"
                      "dfconsumer_received_total 4000019\n") != NULL);
    CHECK(strstr(buf, "\n# TYPE dfconsumer_lag_seconds gauge\ndfconsumer_lag_seconds 1000.042\n") !=
          NULL);
    /* 39 fields, 3 lines each */
    size_t lines = 0;
    for (const char *p = buf; *p; p++)
        lines += *p == '\n';
    CHECK_EQ(lines, 3 * (sizeof st / sizeof(uint64_t)));
    free(buf);
    /* a lag below a second keeps its leading zero and 3 decimals */
    memset(&st, 0, sizeof st);
    st.lag_ms = 42;
    char all[16384];
    dfc_stats_prometheus(&st, NULL, all, sizeof all);
    CHECK(strstr(all, "\ndfconsumer_lag_seconds 0.042\n") != NULL);
    CHECK(strstr(all, "\ndfconsumer_completed_total 0\n") != NULL);
    CHECK_EQ(dfc_stats_prometheus(NULL, NULL, all, sizeof all), 0);
    CHECK_STR(all, "");
}

static void
test_labels(void)
{
    dfc_stats_t st;
    memset(&st, 0, sizeof st);
    st.completed = 5;
    char buf[16384];
    CHECK(dfc_stats_prometheus(&st, sample_labels, buf, sizeof buf) > 0);
    CHECK(
        strstr(buf,
               "\ndfconsumer_completed_total{worker=\"w \\\"1\\\"\\\\\\n\",group=\"gr\xc3\xbcppe\"}"
               " 5\n") != NULL);
    const char *const empty[] = {NULL};
    char plain[16384];
    dfc_stats_prometheus(&st, NULL, plain, sizeof plain);
    CHECK_EQ(dfc_stats_prometheus(&st, empty, buf, sizeof buf), strlen(plain));
    CHECK_STR(buf, plain);
    /* refused: bad names, a repeated name, a NULL value, a value not UTF-8 */
    const char *const bad[][5] = {
        {"9lives", "x", NULL},
        {"__name__", "x", NULL},
        {"a-b", "x", NULL},
        {"", "x", NULL},
        {"worker", NULL},
        {"worker", "a", "worker", "b", NULL},
        {"worker", "\xff", NULL},
        {"worker", "\xc0\xaf", NULL},         /* overlong '/' */
        {"worker", "\xed\xa0\x80", NULL},     /* a surrogate */
        {"worker", "\xf4\x90\x80\x80", NULL}, /* above U+10FFFF */
        {"worker", "caf\xc3", NULL},          /* cut */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(buf, 'x', 8);
        size_t n = dfc_stats_prometheus(&st, bad[i], buf, sizeof buf);
        if (n != 0 || buf[0] != '\0')
            fprintf(stderr, "label case %zu accepted\n", i);
        CHECK_EQ(n, 0);
        CHECK_EQ(buf[0], '\0');
    }
    const char *const good[] = {"_x", "", "Worker_2", "\xf0\x9f\x90\x9d", NULL};
    CHECK(dfc_stats_prometheus(&st, good, buf, sizeof buf) > 0);
    CHECK(strstr(buf, "\ndfconsumer_completed_total{_x=\"\",Worker_2=\"\xf0\x9f\x90\x9d\"} 5\n"));
}

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--sample") == 0) {
        dfc_stats_t st;
        sample(&st);
        bool labelled = argc > 2 && strcmp(argv[2], "--labels") == 0;
        size_t need = dfc_stats_prometheus(&st, labelled ? sample_labels : NULL, NULL, 0);
        char *buf = malloc(need + 1);
        if (!buf)
            return 1;
        dfc_stats_prometheus(&st, labelled ? sample_labels : NULL, buf, need + 1);
        fwrite(buf, 1, need, stdout);
        free(buf);
        return 0;
    }
    test_snprintf();
    test_labels();
    return df_check_report("consumer_test_metrics");
}
