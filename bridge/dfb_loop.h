/*  dfb_loop: the datafeed v2 loop, as the BDKs run it: authenticate, list
    feeds and reuse the first fanout feed (else create one), then long-poll
    read -> publish every event -> acknowledge with the next read. Errors
    follow the BDK table: 401 re-authenticates, 400 on read recreates the
    feed, 5xx/429/network/timeouts/truncated or malformed bodies are retried
    with backoff, 403/404/other 4xx are fatal. datafeed.version v1 runs the
    deprecated Agent /v4 loop instead (create, GET read, 204 = no events). */
#ifndef DFB_LOOP_H
#define DFB_LOOP_H

#include <stdint.h>

#include "dfb_auth.h"
#include "dfb_config.h"
#include "dfb_http.h"
#include "dfb_publish.h"

/*  Exit statuses of the daemon. */
enum {
    DFB_EXIT_STOPPED = 0, /* stopped by SIGINT/SIGTERM */
    DFB_EXIT_FATAL = 1,   /* fatal upstream error (401 on login, 403/404 ...) */
    DFB_EXIT_CONFIG = 2   /* bad configuration or command line */
};

typedef struct dfb_loop dfb_loop_t;

/*  Counters for an INFO-like view. */
typedef struct {
    uint64_t reads;         /* successful reads (200) */
    uint64_t events;        /* events handed to dfb_publish */
    uint64_t retries;       /* failed calls that were retried */
    uint64_t reauths;       /* re-authentications after a 401 */
    uint64_t recreates;     /* feed recreations after a 400 on read */
    uint64_t malformed;     /* bodies that were not the expected JSON */
    uint64_t replaced;      /* invalid UTF-8 / lone surrogates replaced by U+FFFD */
    long long last_read_ms; /* monotonic time of the last successful read */
} dfb_loop_stats_t;

/*  Creates a loop over borrowed objects (all must outlive it; the loop runs
    on the calling thread, which must be the thread that created pub). */
dfb_loop_t *dfb_loop_new(const dfb_config_t *cfg, dfb_auth_t *auth, dfb_http_t *http,
                         dfb_publish_t *pub, int stop_fd);

void dfb_loop_destroy(dfb_loop_t **self_p);

/*  Runs until stopped (returns DFB_EXIT_STOPPED) or a fatal error
    (DFB_EXIT_FATAL, after one error line saying why). On stop, a batch
    already received is published completely (it is in memory) but its
    ackId is never sent: the pod redelivers it after its visibility timeout
    (at-least-once). The feed is never deleted on stop. */
int dfb_loop_run(dfb_loop_t *self);

void dfb_loop_stats(const dfb_loop_t *self, dfb_loop_stats_t *stats);

/*  1 when id is a fanout datafeed id, i.e. matches ^[^\s_]+_f(_[^\s_]+)?$
    (the BDKs' pattern; datahose ids _p_ do not match). */
int dfb_feed_id_is_fanout(const char *id);

/*  Self-test; returns 0 when all checks pass. */
int dfb_loop_test(int verbose);

#endif
