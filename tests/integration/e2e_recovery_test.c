/*  End to end under faults: the pod answers 500, 503, 429, drops the
    connection, truncates a body and expires the session token; later it
    expires the feed (400). Every event must still arrive exactly once, the
    bridge must re-authenticate, recreate exactly one feed, never exit; a
    fatal status (404 on read) must end it with exit status 1.
      e2e_recovery_test DFPOD DFBRIDGE */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_common.h"

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DFPOD DFBRIDGE\n", argv[0]);
        return 2;
    }
    h_env_t env;
    if (h_env_init(&env, argv[1], argv[2]) != 0)
        return 1;
    const char *pod_args[] = {"--hold-ms", "800", "--visibility-ms", "1500", NULL};
    H_CHECK(h_pod_start(&env, pod_args) == 0, "dfpod did not start");
    H_CHECK(h_bridge_start(&env, NULL) == 0, "dfbridge did not start");
    e2e_sink_t s;
    e2e_sink_init(&s);
    dfc_listener_t all, dflt;
    e2e_listeners(&s, &all, &dflt);
    e2e_consumer_t c = {0};
    H_CHECK(e2e_consumer_start(&c, env.pub_endpoint, &s, &all, NULL) == 0, "consumer start");
    H_CHECK(e2e_sync(&env, &s, 30000), "no probe came through the bridge");
    if (h_failures)
        goto done;
    long long auth0 = h_pod_counter(&env, "calls.auth");

    /*  Phase A: transient faults on the reads, with events flowing. */
    H_CHECK(h_admin(&env, "POST", "/admin/generate", "{\"count\":150,\"seed\":3}", NULL) == 200,
            "generate");
    const char *faults = "[{\"endpoint\":\"read\",\"action\":\"status\",\"status\":500},"
                         "{\"endpoint\":\"read\",\"action\":\"status\",\"status\":503},"
                         "{\"endpoint\":\"read\",\"action\":\"truncate\"},"
                         "{\"endpoint\":\"read\",\"action\":\"status\",\"status\":429},"
                         "{\"endpoint\":\"read\",\"action\":\"drop\"},"
                         "{\"endpoint\":\"read\",\"action\":\"truncate\"},"
                         "{\"endpoint\":\"read\",\"action\":\"expire_token\"},"
                         "{\"endpoint\":\"read\",\"action\":\"status\",\"status\":502}]";
    H_CHECK(h_admin(&env, "POST", "/admin/faults", faults, NULL) == 200, "inject faults");
    H_CHECK(h_admin(&env, "POST", "/admin/generate", "{\"count\":150,\"seed\":4}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 300, 60000), "phase A: %zu of 300 events arrived",
            e2e_sink_count(&s));
    H_CHECK(h_wait_counter(&env, "faults_applied", 8, 10000), "not every fault was applied");
    H_CHECK(h_pod_counter(&env, "calls.auth") > auth0, "no re-authentication after a 401");
    long compared = e2e_compare(&env, &s, 0, 0, false);
    H_CHECK(compared == 300, "phase A: %ld of 300 events deep-equal", compared);

    /*  Phase B: the feed expires (400 on read): one new feed, then events. */
    long long created0 = h_pod_counter(&env, "feeds_created");
    H_CHECK(h_admin(&env, "POST", "/admin/faults",
                    "{\"endpoint\":\"read\",\"action\":\"expire_feed\"}", NULL) == 200,
            "inject expire_feed");
    H_CHECK(h_wait_counter(&env, "feeds_created", created0 + 1, 15000), "no feed recreated");
    H_CHECK(h_admin(&env, "POST", "/admin/generate", "{\"count\":200,\"seed\":5}", NULL) == 200,
            "generate");
    H_CHECK(e2e_wait_events(&s, 500, 60000), "phase B: %zu of 500 events arrived",
            e2e_sink_count(&s));
    compared = e2e_compare(&env, &s, 300, 300, false);
    H_CHECK(compared == 200, "phase B: %ld of 200 events deep-equal", compared);
    H_CHECK(h_pod_counter(&env, "feeds_created") == created0 + 1,
            "more than one feed created for one 400 (%lld)", h_pod_counter(&env, "feeds_created"));
    H_CHECK(h_pod_counter(&env, "live_feeds") == 1, "live feeds %lld",
            h_pod_counter(&env, "live_feeds"));
    e2e_check_seq(&s);
    H_CHECK(h_child_wait(&env.bridge_pid, 0) == -2, "dfbridge exited during recoverable faults");

    /*  Phase C: a fatal status ends the bridge with a reason and status 1. */
    H_CHECK(h_admin(&env, "POST", "/admin/faults",
                    "{\"endpoint\":\"read\",\"action\":\"status\",\"status\":404}", NULL) == 200,
            "inject 404");
    int st = h_child_wait(&env.bridge_pid, 10000);
    H_CHECK(st == 1, "dfbridge exit status %d after a 404 on read, want 1", st);

done:
    e2e_consumer_stop(&c);
    h_env_destroy(&env);
    e2e_sink_free(&s);
    printf("%s\n", h_failures ? "FAILED" : "OK");
    return h_failures ? 1 : 0;
}
