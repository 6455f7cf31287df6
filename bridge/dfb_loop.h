/*  dfb_loop: the datafeed loop, as the BDKs run it: v2 (list and reuse a
    fanout feed, else create one; long-poll read -> publish every event ->
    acknowledge with the next read), the deprecated v1 (id file, GET read)
    or the datahose (POST /agent/v5/events/read). What each response leads
    to is the error table in dfb_policy.c. */
#ifndef DFB_LOOP_H
#define DFB_LOOP_H

#include <stdint.h>

#include "dfb_auth.h"
#include "dfb_config.h"
#include "dfb_http.h"
#include "dfb_loop_counters.h"
#include "dfb_publish.h"

/*  Exit statuses of the daemon (README "Exit statuses", dfbridge --help).
    Every non-zero one comes after exactly one error line saying why. */
enum {
    DFB_EXIT_STOPPED = 0,   /* stopped by SIGINT/SIGTERM */
    DFB_EXIT_FATAL = 1,     /* fatal upstream status (403, 404, datahose 400 ...) */
    DFB_EXIT_CONFIG = 2,    /* bad configuration or command line */
    DFB_EXIT_EXHAUSTED = 3, /* retries exhausted (retry.maxAttempts reached) */
    DFB_EXIT_AUTH = 4,      /* authentication refused (401 on login or re-login) */
    DFB_EXIT_INTERNAL = 5   /* internal error: out of memory, bad URL */
};

typedef struct dfb_loop dfb_loop_t;

/*  Counters for the INFO view: dfb_loop_stats_t (dfb_loop_counters.h). */

/*  Creates a loop over borrowed objects (all must outlive it; the loop runs
    on the calling thread, which must be the thread that created pub). */
dfb_loop_t *dfb_loop_new(const dfb_config_t *cfg, dfb_auth_t *auth, dfb_http_t *http,
                         dfb_publish_t *pub, int stop_fd);

void dfb_loop_destroy(dfb_loop_t **self_p);

/*  Runs until stopped (returns DFB_EXIT_STOPPED) or the loop ends
    (DFB_EXIT_FATAL, _EXHAUSTED, _AUTH or _INTERNAL, after one error line
    saying why: call, status or error, attempts). On stop, a batch already
    received is published completely (it is in memory) but its ackId is
    never sent: the pod redelivers it after its visibility timeout
    (at-least-once). The feed is never deleted on stop. May be called again
    after it returned (no state says "already started"). */
int dfb_loop_run(dfb_loop_t *self);

void dfb_loop_stats(const dfb_loop_t *self, dfb_loop_stats_t *stats);

/*  The live counters (borrowed, valid until the loop is destroyed): other
    threads read them with atomic loads. */
const dfb_loop_stats_t *dfb_loop_counters(const dfb_loop_t *self);

/*  1 when id is a fanout datafeed id, i.e. matches ^[^\s_]+_f(_[^\s_]+)?$
    (the BDKs' pattern; datahose ids _p_ do not match). */
int dfb_feed_id_is_fanout(const char *id);

/*  1 when a listed feed {id, type} may be reused: with a datafeed.tag (tag
    not NULL), the Java BDK's rule, id == tag and type "fanout" (any case);
    without, the fanout pattern above. type may be NULL. */
int dfb_feed_is_reusable(const char *id, const char *type, const char *tag);

/*  Self-test; returns 0 when all checks pass. */
int dfb_loop_test(int verbose);

#endif
