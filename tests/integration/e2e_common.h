/*  What the end-to-end tests share: a recording listener for all 17 types
    that checks the named fields against the generic accessors, and the
    comparison of what was received with what the pod served. */
#ifndef E2E_COMMON_H
#define E2E_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <dfconsumer.h>
#include <jansson.h>

#include "harness.h"

typedef struct {
    uint64_t gseq, seq;
    char *topic;
    char *event_json; /* dfc_value_to_json of the event */
    char *context;    /* dfc_listener_context() inside the callback */
} e2e_rec_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    e2e_rec_t *recs;
    size_t n, cap;
    size_t probes;         /* PROBE events seen (sync) */
    size_t field_checks;   /* named field compared and non-NULL */
    size_t field_mismatch; /* named field differs from the generic value */
    size_t typed_seen[17]; /* events per known type with a non-NULL named field */
    size_t default_count;  /* events taken by the default-filter listener */
    int64_t bot;
} e2e_sink_t;

void e2e_sink_init(e2e_sink_t *s);
void e2e_sink_free(e2e_sink_t *s);

/*  A listener recording every event (accepting all, bot events too) and one
    with the BDK's default filter that only counts. */
void e2e_listeners(e2e_sink_t *s, dfc_listener_t *all, dfc_listener_t *dflt);

/*  Waits (bounded) until the sink has recorded at least n non-probe events. */
bool e2e_wait_events(e2e_sink_t *s, size_t n, int timeout_ms);
/*  The same, failing only when no new event came for idle_ms: a stream that
    keeps moving is waited for however slow the machine (sanitizers, a loaded
    CI), a stalled one fails; the test's ctest TIMEOUT bounds the whole. */
bool e2e_wait_progress(e2e_sink_t *s, size_t n, int idle_ms);
/*  The number of non-probe events recorded, read under the sink's lock (the
    consumer's workers may still be recording). */
size_t e2e_sink_count(e2e_sink_t *s);

/*  Enqueues PROBE events until one reaches the sink: proof that the
    subscription reached the bridge. Returns false after timeout_ms. */
bool e2e_sync(h_env_t *env, e2e_sink_t *s, int timeout_ms);

/*  Runs a dfc loop on its own thread. */
typedef struct {
    dfc_loop_t *loop;
    pthread_t thread;
    int rc;
} e2e_consumer_t;
int e2e_consumer_start(e2e_consumer_t *c, const char *endpoint, e2e_sink_t *s, dfc_listener_t *all,
                       dfc_listener_t *dflt);
void e2e_consumer_stop(e2e_consumer_t *c);

/*  Compares the non-probe events the pod served (GET /admin/events, in
    order) from index `from` with the sink's records from index `rec_from`
    ordered by gseq: same count, same JSON deep-equal (exact integers, key
    order, -0.0, embedded NULs), gseq contiguous (no gap, no duplicate),
    topic = type. With `ordered`, the i-th record must be the i-th event
    served; without it (a batch redelivered after a fault comes after newer
    ones), records are matched to served events by event id, each id once.
    Returns the number of events that matched, or -1 (failures are counted
    in h_failures). */
long e2e_compare(h_env_t *env, e2e_sink_t *s, size_t from, size_t rec_from, bool ordered);

/*  Checks that per topic the seq values recorded are exactly 1..n. */
void e2e_check_seq(e2e_sink_t *s);

/*  Strict JSON equality: same types (integer vs real), same key order,
    bit-identical reals, byte-identical strings. */
bool e2e_json_equal(const json_t *a, const json_t *b, char *where, size_t where_len);

#endif
