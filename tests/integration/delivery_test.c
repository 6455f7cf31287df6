/*  End-to-end delivery guarantees: dfpod -> dfbridge (journal, replay,
    heartbeat) -> libdfconsumer with gap filling.
      delivery_test DFPOD DFBRIDGE restart   kill -9 of the bridge mid-stream and
                                             a restart, a 400 feed expiry, then a
                                             late joiner from gseq 1
      delivery_test DFPOD DFBRIDGE ha        an HA pair on one feed, one bridge
                                             killed mid-stream
    Every event the pod served must be handled exactly once, deep-equal. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_common.h"

typedef struct {
    dfc_loop_t *loop;
    pthread_t th;
    int rc;
} dc_t;

static void *
dc_main(void *arg)
{
    dc_t *c = arg;
    c->rc = dfc_loop_start(c->loop);
    return NULL;
}

/*  A consumer of one or two bridges (pub, replay pairs; NULL ends). */
static int
dc_start(dc_t *c, dfc_config_t cfg, e2e_sink_t *s, dfc_listener_t *all, const char *pub1,
         const char *rep1, const char *pub2, const char *rep2)
{
    (void)s;
    c->loop = dfc_loop_new(&cfg);
    if (!c->loop || dfc_loop_connect_replay(c->loop, pub1, rep1) != DFC_OK ||
        (pub2 && dfc_loop_connect_replay(c->loop, pub2, rep2) != DFC_OK) ||
        dfc_loop_subscribe(c->loop, all) != DFC_OK)
        return -1;
    return pthread_create(&c->th, NULL, dc_main, c) == 0 ? 0 : -1;
}

static void
dc_stop(dc_t *c, dfc_stats_t *st)
{
    if (!c->loop)
        return;
    dfc_loop_stop(c->loop);
    pthread_join(c->th, NULL);
    dfc_loop_stats(c->loop, st);
    char info[2048];
    dfc_stats_format(st, info, sizeof info);
    if (h_failures || getenv("H_VERBOSE"))
        fprintf(stderr, "consumer counters:\n%s", info);
    dfc_loop_destroy(&c->loop);
}

static void
bridge_yaml(char *out, size_t size, const char *dir, const char *tag, const char *rep)
{
    snprintf(out, size,
             "  stateDir: %s/state-%s\n  replay: %s\n  heartbeatMillis: 200\n"
             "  journal:\n    fsync: never\n",
             dir, tag, rep);
}

/*  Every non-probe event the pod served is recorded exactly once (matched
    by id and type) and deep-equal. Returns how many matched. */
static long
compare_by_id(h_env_t *env, e2e_sink_t *s)
{
    json_t *served = h_admin_json(env, "/admin/events");
    H_CHECK(served && json_is_array(served), "GET /admin/events");
    if (!served)
        return -1;
    size_t n = json_array_size(served), i;
    int *hits = calloc(n + 1, sizeof *hits);
    long matched = 0, expected = 0, stray = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t r = 0; r < s->n; r++) {
        json_error_t err;
        json_t *got = json_loads(s->recs[r].event_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        const char *id = json_string_value(json_object_get(got, "id"));
        const char *type = json_string_value(json_object_get(got, "type"));
        json_t *e;
        bool found = false;
        json_array_foreach(served, i, e)
        {
            const char *sid = json_string_value(json_object_get(e, "id"));
            const char *stype = json_string_value(json_object_get(e, "type"));
            if (id && sid && strcmp(id, sid) == 0 && type && stype && strcmp(type, stype) == 0) {
                char where[256] = "";
                H_CHECK(e2e_json_equal(e, got, where, sizeof where), "event %s differs: %s", id,
                        where);
                hits[i]++;
                found = true;
                break;
            }
        }
        stray += !found;
        json_decref(got);
    }
    pthread_mutex_unlock(&s->mu);
    json_t *e;
    json_array_foreach(served, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        if (type && strcmp(type, "PROBE") == 0)
            continue;
        expected++;
        H_CHECK(hits[i] == 1, "event %s handled %d times",
                json_string_value(json_object_get(e, "id")), hits[i]);
        matched += hits[i] == 1;
    }
    H_CHECK(stray == 0, "%ld records match no served event", stray);
    H_CHECK(matched == expected, "%ld of %ld events handled exactly once", matched, expected);
    free(hits);
    json_decref(served);
    return matched;
}

static int
run_restart(h_env_t *env)
{
    char pub[64], rep[64], yaml[600], log[300];
    snprintf(pub, sizeof pub, "tcp://127.0.0.1:%d", h_free_port());
    snprintf(rep, sizeof rep, "tcp://127.0.0.1:%d", h_free_port());
    bridge_yaml(yaml, sizeof yaml, env->dir, "a", rep);
    pid_t a = h_bridge_spawn(env, "a", pub, yaml, log, sizeof log);
    H_CHECK(a > 0, "dfbridge did not start");
    e2e_sink_t s;
    e2e_sink_init(&s);
    dfc_listener_t all, dflt;
    e2e_listeners(&s, &all, &dflt);
    dc_t c = {0};
    H_CHECK(dc_start(&c, (dfc_config_t){.workers = 4, .rcvhwm = 100000}, &s, &all, pub, rep, NULL,
                     NULL) == 0,
            "consumer start");
    H_CHECK(e2e_sync(env, &s, 30000), "no probe came through the bridge");
    if (h_failures)
        goto done;

    /* a stream, and kill -9 of the bridge in the middle of the next one */
    H_CHECK(h_admin(env, "POST", "/admin/generate", "{\"count\":200,\"seed\":3}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 200, 60000), "%zu of 200 events", e2e_sink_count(&s));
    H_CHECK(h_admin(env, "POST", "/admin/generate", "{\"count\":300,\"seed\":4}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 260, 60000), "%zu of 260 events", e2e_sink_count(&s));
    H_CHECK(h_child_stop(&a, SIGKILL, 5000, NULL) == 128 + SIGKILL, "kill -9 of the bridge");
    a = h_bridge_spawn(env, "a", pub, yaml, log, sizeof log); /* same journal, same ports */
    H_CHECK(a > 0, "dfbridge did not restart");
    H_CHECK(e2e_wait_events(&s, 500, 60000), "after the restart: %zu of 500 events",
            e2e_sink_count(&s));

    /* the feed expires (400) between two parts of the stream (events still
       unread in an expired feed are gone upstream, as with Symphony) */
    long long created0 = h_pod_counter(env, "feeds_created");
    H_CHECK(h_admin(env, "POST", "/admin/generate", "{\"count\":50,\"seed\":5}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 550, 60000), "%zu of 550 events", e2e_sink_count(&s));
    H_CHECK(h_admin(env, "POST", "/admin/faults",
                    "{\"endpoint\":\"read\",\"action\":\"expire_feed\"}", NULL) == 200,
            "inject expire_feed");
    H_CHECK(h_wait_counter(env, "feeds_created", created0 + 1, 15000), "no feed recreated");
    H_CHECK(h_admin(env, "POST", "/admin/generate", "{\"count\":50,\"seed\":6}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 600, 60000), "after the 400: %zu of 600 events",
            e2e_sink_count(&s));
    long compared = e2e_compare(env, &s, 0, 0, false);
    H_CHECK(compared == 600, "%ld of 600 events exactly once and deep-equal", compared);
    dfc_stats_t st;
    dc_stop(&c, &st);
    H_CHECK(st.lost == 0, "lost %llu", (unsigned long long)st.lost);
    printf("restart: gaps %llu filled %llu replayed %llu duplicates %llu reconnects %llu\n",
           (unsigned long long)st.gaps, (unsigned long long)st.gaps_filled,
           (unsigned long long)st.replayed, (unsigned long long)st.duplicates,
           (unsigned long long)st.reconnects);

    /* a late joiner from gseq 1: everything, from the journal */
    e2e_sink_t s2;
    e2e_sink_init(&s2);
    dfc_listener_t all2, dflt2;
    e2e_listeners(&s2, &all2, &dflt2);
    dc_t c2 = {0};
    H_CHECK(dc_start(&c2, (dfc_config_t){.workers = 4, .from_gseq = 1}, &s2, &all2, pub, NULL, NULL,
                     NULL) == 0,
            "late joiner start");
    H_CHECK(e2e_wait_events(&s2, 600, 60000), "late joiner: %zu of 600 events",
            e2e_sink_count(&s2));
    compared = e2e_compare(env, &s2, 0, 0, false);
    H_CHECK(compared == 600, "late joiner: %ld of 600 events exactly once", compared);
    dc_stop(&c2, &st);
    H_CHECK(st.replayed >= 600, "late joiner replayed %llu", (unsigned long long)st.replayed);
    H_CHECK(st.lost == 0, "late joiner lost %llu", (unsigned long long)st.lost);
    e2e_sink_free(&s2);
done:
    dc_stop(&c, &st);
    if (a > 0)
        h_child_stop(&a, SIGTERM, 5000, NULL);
    if (h_failures)
        h_dump_file("dfbridge (a) stderr", log);
    e2e_sink_free(&s);
    return 0;
}

static int
run_ha(h_env_t *env)
{
    char pub[2][64], rep[2][64], yaml[600], yaml_a[600], log[2][300];
    pid_t b[2];
    const char *tags[2] = {"a", "b"};
    for (int k = 0; k < 2; k++) {
        snprintf(pub[k], sizeof pub[k], "tcp://127.0.0.1:%d", h_free_port());
        snprintf(rep[k], sizeof rep[k], "tcp://127.0.0.1:%d", h_free_port());
        bridge_yaml(yaml, sizeof yaml, env->dir, tags[k], rep[k]);
        if (k == 0)
            snprintf(yaml_a, sizeof yaml_a, "%s", yaml);
        b[k] = h_bridge_spawn(env, tags[k], pub[k], yaml, log[k], sizeof log[k]);
        H_CHECK(b[k] > 0, "dfbridge %s did not start", tags[k]);
        /* one feed for both: b starts once a created it, and reuses it */
        if (k == 0)
            H_CHECK(h_wait_counter(env, "feeds_created", 1, 15000), "bridge a made no feed");
    }
    e2e_sink_t s;
    e2e_sink_init(&s);
    dfc_listener_t all, dflt;
    e2e_listeners(&s, &all, &dflt);
    dc_t c = {0};
    /* from_gseq 1: each bridge's epoch is taken from its start, so events that
       bridge b published before this consumer's subscription reached it (b
       starts reading at once, the consumer connects a moment later) are
       replayed, not skipped as "before my time" */
    H_CHECK(dc_start(&c, (dfc_config_t){.workers = 4, .rcvhwm = 100000, .from_gseq = 1}, &s, &all,
                     pub[0], rep[0], pub[1], rep[1]) == 0,
            "consumer start");
    H_CHECK(e2e_sync(env, &s, 30000), "no probe came through the bridges");
    dfc_stats_t st;
    if (h_failures)
        goto done;
    H_CHECK(h_admin(env, "POST", "/admin/generate", "{\"count\":200,\"seed\":3}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 200, 60000), "%zu of 200 events", e2e_sink_count(&s));
    H_CHECK(h_admin(env, "POST", "/admin/generate", "{\"count\":300,\"seed\":4}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 230, 60000), "%zu of 230 events", e2e_sink_count(&s));
    int64_t t0 = h_now_ms();
    H_CHECK(h_child_stop(&b[0], SIGKILL, 5000, NULL) == 128 + SIGKILL, "kill -9 of bridge a");
    /* b takes over what a had not acknowledged (after the visibility
       timeout); what a had acknowledged but not yet delivered when it died
       is in a's journal only: it comes when a is back */
    bool complete = e2e_wait_events(&s, 500, 5000);
    printf("ha: %zu of 500 events handled %lld ms after bridge a was killed (visibility 1500 ms)\n",
           e2e_sink_count(&s), (long long)(h_now_ms() - t0));
    if (!complete) {
        b[0] = h_bridge_spawn(env, tags[0], pub[0], yaml_a, log[0], sizeof log[0]);
        H_CHECK(b[0] > 0, "dfbridge a did not restart");
        H_CHECK(e2e_wait_events(&s, 500, 60000), "after a's restart: %zu of 500 events",
                e2e_sink_count(&s));
        printf("ha: all 500 after a's restart, %lld ms after the kill\n",
               (long long)(h_now_ms() - t0));
    }
    H_CHECK(h_pod_counter(env, "feeds_created") == 1, "the pair does not share one feed");
    compare_by_id(env, &s);
done:
    dc_stop(&c, &st);
    H_CHECK(st.lost == 0, "lost %llu", (unsigned long long)st.lost);
    printf("ha: duplicates dropped %llu, reconnects %llu\n", (unsigned long long)st.duplicates,
           (unsigned long long)st.reconnects);
    for (int k = 0; k < 2; k++) {
        if (b[k] > 0)
            h_child_stop(&b[k], SIGTERM, 5000, NULL);
        if (h_failures)
            h_dump_file(tags[k], log[k]);
    }
    e2e_sink_free(&s);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[3], "restart") != 0 && strcmp(argv[3], "ha") != 0)) {
        fprintf(stderr, "usage: %s DFPOD DFBRIDGE restart|ha\n", argv[0]);
        return 2;
    }
    dfc_log_set_level(getenv("H_VERBOSE") ? DFC_LOG_INFO : DFC_LOG_WARN);
    h_env_t env;
    if (h_env_init(&env, argv[1], argv[2]) != 0)
        return 1;
    const char *pod_args[] = {"--hold-ms", "800", "--visibility-ms", "1500", "--batch-max",
                              "20",        NULL};
    H_CHECK(h_pod_start(&env, pod_args) == 0, "dfpod did not start");
    if (!h_failures) {
        if (strcmp(argv[3], "restart") == 0)
            run_restart(&env);
        else
            run_ha(&env);
    }
    h_env_destroy(&env);
    printf("%s %s\n", argv[3], h_failures ? "FAILED" : "OK");
    return h_failures ? 1 : 0;
}
