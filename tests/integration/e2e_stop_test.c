/*  Stop semantics end to end: SIGTERM (then SIGINT on a second run) while
    the bridge is held in a 30 s long-poll must end it with status 0 within
    1 s; the bridge never deletes its feed on stop, and a restart reuses the
    feed instead of creating another one.
      e2e_stop_test DFPOD DFBRIDGE */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_common.h"

static void
stop_during_poll(h_env_t *env, int sig, const char *name)
{
    H_CHECK(h_bridge_start(env, NULL) == 0, "dfbridge did not start");
    H_CHECK(h_wait_counter(env, "held", 1, 15000), "%s: the bridge never reached a held long-poll",
            name);
    int64_t took = 0;
    int st = h_child_stop(&env->bridge_pid, sig, 5000, &took);
    H_CHECK(st == 0, "%s: exit status %d, want 0", name, st);
    H_CHECK(took < 1000, "%s: stopping took %lld ms (limit 1000)", name, (long long)took);
    fprintf(stderr, "e2e_stop: %s stopped the bridge in %lld ms\n", name, (long long)took);
}

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
    const char *pod_args[] = {"--hold-ms", "30000", NULL};
    H_CHECK(h_pod_start(&env, pod_args) == 0, "dfpod did not start");
    if (!h_failures) {
        stop_during_poll(&env, SIGTERM, "SIGTERM");
        stop_during_poll(&env, SIGINT, "SIGINT");
        H_CHECK(h_pod_counter(&env, "calls.delete") == 0, "the bridge deleted a feed on stop");
        H_CHECK(h_pod_counter(&env, "feeds_created") == 1,
                "a restart created a new feed instead of reusing it (%lld created)",
                h_pod_counter(&env, "feeds_created"));
        H_CHECK(h_pod_counter(&env, "calls.list") == 2, "each start lists the feeds once (%lld)",
                h_pod_counter(&env, "calls.list"));
    }
    h_env_destroy(&env);
    printf("%s\n", h_failures ? "FAILED" : "OK");
    return h_failures ? 1 : 0;
}
