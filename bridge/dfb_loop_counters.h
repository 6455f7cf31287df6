/*  dfb_loop_counters: the datafeed loop's counters. The loop's thread is the
    only writer; the fields are atomics so the INFO view (dfb_info, on the
    replay thread) reads them live without a lock. */
#ifndef DFB_LOOP_COUNTERS_H
#define DFB_LOOP_COUNTERS_H

#include <stdint.h>

typedef struct {
    _Atomic uint64_t reads;         /* successful reads (200) */
    _Atomic uint64_t events;        /* events handed to dfb_publish */
    _Atomic uint64_t retries;       /* failed calls that were retried */
    _Atomic uint64_t reauths;       /* re-authentications after a 401 */
    _Atomic uint64_t recreates;     /* 400s on read that needed another feed */
    _Atomic uint64_t adopted;       /* ... of which were solved by a feed listed meanwhile */
    _Atomic uint64_t created;       /* feeds this process created (v2, v1) */
    _Atomic uint64_t unacked;       /* batches not acknowledged: a publish failed */
    _Atomic uint64_t malformed;     /* bodies that were not the expected JSON */
    _Atomic uint64_t replaced;      /* invalid UTF-8 / lone surrogates replaced by U+FFFD */
    _Atomic uint64_t over_batch;    /* batches over bridge.maxBatchEvents (published in chunks) */
    _Atomic long long last_read_ms; /* monotonic time of the last successful read */
    /* health (dfb_metrics /healthz, /readyz) */
    _Atomic uint64_t ready;     /* 1 while authenticated with a feed to read */
    _Atomic uint64_t state;     /* 0 not started, 1 running, 2 ended */
    _Atomic uint64_t exit_code; /* dfb_loop_run's return, once state is 2 */
} dfb_loop_stats_t;

#endif
