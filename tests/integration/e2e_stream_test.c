/*  End to end: dfpod -> dfbridge -> libdfconsumer with more than 1000 events
    of all 17 types plus hand-made tricky ones. Every event must arrive
    exactly once, deep-equal to what the pod served, in gseq order without a
    gap, per-topic seq 1..n, named fields equal to the generic values, the
    BDK's default filter dropping exactly the bot's own events, and the
    logging context set in every callback.
      e2e_stream_test DFPOD DFBRIDGE */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_common.h"

#define GENERATED 1200

static const char *const KNOWN[17] = {"MESSAGESENT",
                                      "SHAREDPOST",
                                      "INSTANTMESSAGECREATED",
                                      "ROOMCREATED",
                                      "ROOMUPDATED",
                                      "ROOMDEACTIVATED",
                                      "ROOMREACTIVATED",
                                      "USERREQUESTEDTOJOINROOM",
                                      "USERJOINEDROOM",
                                      "USERLEFTROOM",
                                      "ROOMMEMBERPROMOTEDTOOWNER",
                                      "ROOMMEMBERDEMOTEDFROMOWNER",
                                      "CONNECTIONREQUESTED",
                                      "CONNECTIONACCEPTED",
                                      "MESSAGESUPPRESSED",
                                      "SYMPHONYELEMENTSACTION",
                                      "GENERICSYSTEMEVENT"};

static bool
is_known(const char *type)
{
    for (int i = 0; type && i < 17; i++)
        if (strcmp(type, KNOWN[i]) == 0)
            return true;
    return false;
}

/*  Events no generator would think of: extreme integers, -0.0, 1.0 as a
    float, emoji, an escaped NUL, a 300 KB string, 40 levels of nesting,
    an unknown type, no type at all. Returned as one JSON array text. */
static char *
tricky_events(size_t *count)
{
    size_t big = 300 * 1024;
    size_t cap = big + 16384;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
    n += snprintf(out + n, cap - n,
                  "[{\"id\":\"t-ints\",\"messageId\":\"m-ints\",\"timestamp\":9223372036854775807,"
                  "\"type\":\"MESSAGESENT\",\"initiator\":{\"user\":{\"userId\":"
                  "-9223372036854775808,\"username\":\"min.int\"}},\"payload\":{\"messageSent\":"
                  "{\"message\":{\"messageId\":\"m-ints\",\"timestamp\":9007199254740993,"
                  "\"message\":\"<div>emoji \\ud83d\\ude00 \xe2\x82\xac nul \\u0000 end</div>\","
                  "\"data\":\"{\\\"k\\\":1}\",\"numbers\":[-0.0,1.0,1E2,0.1,1e300,-1,0,127,128,"
                  "255,256,65535,65536,4294967296,-32,-33,-128,-129,-32768,-32769],"
                  "\"empty\":{},\"none\":[],\"flags\":[true,false,null],"
                  "\"user\":{\"userId\":68719476737,\"username\":\"jane\"},"
                  "\"stream\":{\"streamId\":\"s-ints\",\"streamType\":\"ROOM\"}}}}},\n");
    /*  A 300 KB PresentationML message. */
    n += snprintf(out + n, cap - n,
                  "{\"id\":\"t-big\",\"timestamp\":1700000000001,\"type\":\"MESSAGESENT\","
                  "\"initiator\":{\"user\":{\"userId\":68719476737}},\"payload\":{\"messageSent\":"
                  "{\"message\":{\"messageId\":\"m-big\",\"message\":\"<div>");
    for (size_t i = 0; i < big; i++)
        out[n++] = (char)('a' + i % 26);
    n += snprintf(out + n, cap - n, "</div>\"}}}},\n");
    /*  40 levels of nesting inside formValues. */
    n += snprintf(
        out + n, cap - n,
        "{\"id\":\"t-deep\",\"timestamp\":1700000000002,\"type\":\"SYMPHONYELEMENTSACTION\","
        "\"initiator\":{\"user\":{\"userId\":68719476737}},\"payload\":"
        "{\"symphonyElementsAction\":{\"formId\":\"deep\",\"formValues\":");
    for (int i = 0; i < 40; i++)
        n += snprintf(out + n, cap - n, "{\"d%d\":[", i);
    n += snprintf(out + n, cap - n, "\"bottom\"");
    for (int i = 0; i < 40; i++)
        n += snprintf(out + n, cap - n, "]}");
    n += snprintf(out + n, cap - n, "}}},\n");
    n += snprintf(out + n, cap - n,
                  "{\"id\":\"t-future\",\"timestamp\":1700000000003,\"type\":\"FUTURETYPE\","
                  "\"initiator\":{\"user\":{\"userId\":68719476737}},\"payload\":{\"futureType\":"
                  "{\"x\":1}}},\n"
                  "{\"id\":\"t-notype\",\"timestamp\":1700000000004,\"payload\":{}},\n"
                  "{\"id\":\"t-nulltype\",\"type\":null,\"timestamp\":1700000000005}]");
    *count = 6;
    return out;
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DFPOD DFBRIDGE\n", argv[0]);
        return 2;
    }
    h_env_t env;
    if (h_env_init(&env, argv[1], argv[2]) != 0) {
        fprintf(stderr, "cannot prepare the test environment\n");
        return 1;
    }
    const char *pod_args[] = {"--hold-ms", "2000", "--visibility-ms", "20000", NULL};
    H_CHECK(h_pod_start(&env, pod_args) == 0, "dfpod did not start");
    H_CHECK(h_bridge_start(&env, NULL) == 0, "dfbridge did not start");

    e2e_sink_t s;
    e2e_sink_init(&s);
    dfc_listener_t all, dflt;
    e2e_listeners(&s, &all, &dflt);
    e2e_consumer_t c = {0};
    H_CHECK(e2e_consumer_start(&c, env.pub_endpoint, &s, &all, &dflt) == 0, "consumer start");
    H_CHECK(e2e_sync(&env, &s, 30000), "no probe came through the bridge");
    if (h_failures)
        goto done;

    size_t ntricky = 0;
    char *tricky = tricky_events(&ntricky);
    H_CHECK(h_admin(&env, "POST", "/admin/events", tricky, NULL) == 200, "enqueue tricky");
    free(tricky);
    char gen[128];
    snprintf(gen, sizeof gen, "{\"count\":%d,\"seed\":42}", GENERATED);
    H_CHECK(h_admin(&env, "POST", "/admin/generate", gen, NULL) == 200, "generate");

    size_t total = ntricky + GENERATED;
    H_CHECK(e2e_wait_progress(&s, total, 30000), "only %zu of %zu events arrived (none for 30 s)",
            e2e_sink_count(&s), total);
    long compared = e2e_compare(&env, &s, 0, 0, true);
    H_CHECK(compared == (long)total, "%ld of %zu events deep-equal", compared, total);
    e2e_check_seq(&s);

    /*  Named fields, per type. */
    H_CHECK(s.field_mismatch == 0, "%zu named fields differ from the generic values",
            s.field_mismatch);
    for (int i = 0; i < 17; i++)
        H_CHECK(s.typed_seen[i] > 0, "no %s event with its named field set", KNOWN[i]);

    /*  Default filter: exactly the known-type events not initiated by the
        bot (and having an initiator id). */
    json_t *served = h_admin_json(&env, "/admin/events");
    size_t want_default = 0, i;
    json_t *e;
    json_array_foreach(served, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        json_t *uid =
            json_object_get(json_object_get(json_object_get(e, "initiator"), "user"), "userId");
        if (is_known(type) && json_is_integer(uid) && json_integer_value(uid) != s.bot)
            want_default++;
    }
    json_decref(served);
    H_CHECK(s.bot == 68719476738LL, "envelope bot id %lld", (long long)s.bot);
    /*  Wait for the counting listener too (bounded): its jobs run on the
        same pool, so they are done once the loop has drained. */
    e2e_consumer_stop(&c);
    H_CHECK(s.default_count == want_default, "default filter took %zu events, want %zu",
            s.default_count, want_default);
    H_CHECK(want_default < total - 3, "the generator produced no bot events (%zu of %zu)",
            want_default, total);

    /*  Logging context in every callback: worker-K/<event id>/recorder. */
    size_t bad_ctx = 0;
    for (size_t k = 0; k < s.n; k++) {
        json_t *ev = json_loads(s.recs[k].event_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        const char *id = json_string_value(json_object_get(ev, "id"));
        char want[256];
        int worker = 0;
        if (sscanf(s.recs[k].context, "worker-%d/", &worker) != 1 || worker < 1 || worker > 4)
            bad_ctx++;
        else {
            snprintf(want, sizeof want, "worker-%d/%s/recorder", worker, id ? id : "None");
            bad_ctx += strcmp(want, s.recs[k].context) != 0;
        }
        json_decref(ev);
    }
    H_CHECK(bad_ctx == 0, "%zu callbacks saw a wrong logging context (e.g. %s)", bad_ctx,
            s.n ? s.recs[0].context : "");

    /*  The bridge is still running and stops cleanly. */
    H_CHECK(h_child_wait(&env.bridge_pid, 0) == -2, "dfbridge exited during the test");
    int64_t took = 0;
    int st = h_child_stop(&env.bridge_pid, SIGTERM, 5000, &took);
    H_CHECK(st == 0, "dfbridge exit status %d after SIGTERM", st);
    fprintf(stderr, "e2e_stream: %zu events compared, bridge stopped in %lld ms\n", total,
            (long long)took);

done:
    e2e_consumer_stop(&c);
    h_env_destroy(&env);
    e2e_sink_free(&s);
    printf("%s\n", h_failures ? "FAILED" : "OK");
    return h_failures ? 1 : 0;
}
