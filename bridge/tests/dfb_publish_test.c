/*  dfb_publish_test: unit tests of the publishing side's hardening (issue 7),
    one ctest per name:  dfb_publish_test NAME
    The dead actor (no call blocks, the failure is visible), the INFO table
    against the contract, the `_info` and io_error encoders against the
    golden vectors. End-to-end cases are in delivery_e2e.py. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "df_check.h"
#include "dfb_clock.h"
#include "dfb_info.h"
#include "dfb_json.h"
#include "dfb_publish.h"
#include "dfb_replay.h"
#include "dfb_stop.h"
#include "dfb_golden.h"

/*  The actor stops after 3 messages (the test fault) and says so through
    the daemon's stop pipe; then every call returns at once: 30000
    publishes, past the 20000 messages an inproc pipe holds (SNDHWM +
    RCVHWM) that used to block dfb_publish_event for ever, and
    dfb_publish_stats does not wait for a reply that cannot come. */
static void
test_dead_actor(void)
{
    CHECK(dfb_stop_init() == 0);
    setenv("DFB_TEST_ACTOR_FAIL_AFTER", "3", 1);
    char err[256];
    dfb_publish_t *p = dfb_publish_new("tcp://127.0.0.1:*", 100000, err, sizeof err);
    unsetenv("DFB_TEST_ACTOR_FAIL_AFTER");
    CHECK(p);
    if (!p)
        return;
    dfb_json_t *json = dfb_json_new();
    const char *ev = "{\"type\":\"MESSAGESENT\"}";
    CHECK(dfb_json_parse(json, ev, strlen(ev)) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(dfb_publish_event(p, json, 0) == 0);
    dfb_publish_flush(p); /* hands them over; the actor may die before its reply: -1 or 0 */
    /* The actor's death requests the stop: wait for that signal (bounded). */
    struct pollfd pfd = {dfb_stop_fd(), POLLIN, 0};
    CHECK(poll(&pfd, 1, 10000) == 1);
    CHECK_EQ(dfb_publish_failed(p), 1);
    int64_t t0 = dfb_mono_ms();
    int refused = 0;
    for (int i = 0; i < 30000 && dfb_mono_ms() - t0 < 20000; i++)
        refused += dfb_publish_event(p, json, 0) != 0;
    int64_t took = dfb_mono_ms() - t0;
    printf("  30000 refused in %lld ms\n", (long long)took);
    CHECK_EQ(refused, 30000);
    t0 = dfb_mono_ms();
    dfb_publish_stats_t st;
    dfb_publish_stats(p, &st);
    CHECK(dfb_mono_ms() - t0 < 2000);
    CHECK_EQ(st.published, 3);
    CHECK_EQ(dfb_publish_counters(p)->dead_threads, 1);
    CHECK_EQ(dfb_publish_counters(p)->pipe_errors, 30000);
    t0 = dfb_mono_ms();
    dfb_publish_destroy(&p);
    CHECK(!p);
    CHECK(dfb_mono_ms() - t0 < 3000);
    dfb_json_destroy(&json);
}

/*  One table: dfb_info_rows is what contract-v1.json replay_info.counters
    lists, name for name, in order; names are unique and help is present. */
static void
test_info_table(void)
{
    char *text;
    dfb_json_t *json = dfb_golden_load(DF_SOURCE_DIR "/schemas/contract-v1.json", &text);
    CHECK(json);
    if (!json) {
        free(text);
        return;
    }
    dfb_json_ref_t c = dfb_json_get(json, dfb_json_get(json, 0, "replay_info"), "counters");
    CHECK(c != DFB_JSON_NONE);
    CHECK_EQ(dfb_json_count(json, c), dfb_info_nrows);
    size_t i = 0;
    for (dfb_json_ref_t k = dfb_json_first(json, c); k != DFB_JSON_NONE && i < dfb_info_nrows;
         k = dfb_json_next(json, dfb_json_next(json, k)), i++) {
        CHECK_STR(dfb_json_string(json, k, NULL), dfb_info_rows[i].name);
        CHECK_STR(dfb_json_string(json, dfb_json_next(json, k), NULL), dfb_info_rows[i].help);
    }
    CHECK_EQ(i, dfb_info_nrows);
    for (size_t a = 0; a < dfb_info_nrows; a++)
        for (size_t b = a + 1; b < dfb_info_nrows; b++)
            CHECK(strcmp(dfb_info_rows[a].name, dfb_info_rows[b].name) != 0);
    /* Gauges (for /metrics): exactly these go down as well as up. */
    const char *gauges = " last_read_age_ms topics journal_failing journal_segments journal_bytes "
                         "journal_oldest_gseq journal_head_gseq replay_bytes_held connections "
                         "auth_clients auth_bad_files commands_queued commands_inflight "
                         "commands_log_entries commands_log_bytes ";
    for (size_t a = 0; a < dfb_info_nrows; a++) {
        char word[80];
        snprintf(word, sizeof word, " %s ", dfb_info_rows[a].name);
        CHECK_EQ(dfb_info_rows[a].kind == DFB_INFO_GAUGE, strstr(gauges, word) != NULL);
    }
    dfb_json_destroy(&json);
    free(text);
}

/*  The `_info` body and the io_error end marker, byte for byte. */
static void
test_info_golden(void)
{
    char *text;
    dfb_json_t *json = dfb_golden_load(DF_SOURCE_DIR "/schemas/golden/vectors.json", &text);
    CHECK(json);
    if (!json) {
        free(text);
        return;
    }
    dfb_buf_t b;
    dfb_buf_init(&b);
    const char *names[] = {"reads", "published", "journal_failing"};
    uint64_t values[] = {3, 4294967296ULL, 0};
    CHECK(dfb_info_encode(&b, 11, "20261127T075500Z-3fa2c1d9", 1764230100123ULL, names, values,
                          3) == 0);
    CHECK(dfb_golden_same_hex(
        &b, dfb_golden_vector(json, "bridge_messages", "info_reply", "msgpack_hex")));
    b.len = 0;
    dfb_replay_end_t e = {.req = 10,
                          .last_gseq = 41,
                          .head_gseq = 3000,
                          .oldest_gseq = 1,
                          .epoch = "20261127T075500Z-3fa2c1d9",
                          .code = "io_error",
                          .error = "the journal cannot be read at that position: ask again later"};
    CHECK(dfb_replay_end_encode(&b, &e) == 0);
    CHECK(dfb_golden_same_hex(
        &b, dfb_golden_vector(json, "bridge_messages", "end_error_io_error", "msgpack_hex")));
    b.len = 0;
    dfb_replay_end_t d = {.req = 12,
                          .count = 10,
                          .last_gseq = 10,
                          .head_gseq = 20,
                          .oldest_gseq = 1,
                          .epoch = "20261127T075500Z-3fa2c1d9",
                          .code = "damaged",
                          .error = "gseq 11..20 are damaged in the journal: count them lost, ask "
                                   "again from 21",
                          .lost_from = 11,
                          .lost_to = 20};
    CHECK(dfb_replay_end_encode(&b, &d) == 0);
    CHECK(dfb_golden_same_hex(
        &b, dfb_golden_vector(json, "bridge_messages", "end_error_damaged", "msgpack_hex")));
    dfb_buf_free(&b);
    dfb_json_destroy(&json);
    free(text);
}

int
main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {{"publish_dead_actor_unit", test_dead_actor},
                 {"publish_info_table", test_info_table},
                 {"publish_info_golden", test_info_golden}};
    const char *which = argc > 1 ? argv[1] : "";
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (strcmp(which, tests[i].name) == 0) {
            tests[i].fn();
            printf("%s: %s\n", which, df_check_failures ? "FAILED" : "OK");
            return DF_CHECK_RESULT();
        }
    fprintf(stderr, "dfb_publish_test: no test named '%s'\n", which);
    return 2;
}
