/*  dfb_cmdsched: the command channel's scheduler (README "Replying from a
    worker", D3 "Rate and concurrency"): which waiting request goes to an
    executor next. Pure logic on a clock the caller passes (ms), no threads,
    no sockets: the channel thread owns it.

    Rules, in this order, over the requests in arrival order:
    - a posting request (messages.send/update: a stream is given) waits
      while another request of its stream waits before it (FIFO per
      stream), while one of its stream is in flight, and until
      1000 / stream_rate ms after the previous one into its stream
      finished (not after it was dispatched: a post commits somewhere
      between its dispatch and its end, so only this spacing keeps two
      commits into a stream that far apart at Symphony);
    - the first request that may go takes a token of the global bucket
      (rate per second, burst = the rate rounded up); none left: nothing
      goes (the order is kept);
    - at most `executors` requests are in flight.
    Bounded: at most `queue` requests wait; more are refused (busy). */
#ifndef DFB_CMDSCHED_H
#define DFB_CMDSCHED_H

#include <stddef.h>
#include <stdint.h>

typedef struct dfb_cmdsched dfb_cmdsched_t;

typedef struct {
    double rate;        /* dispatches per second over all requests; 0 = no limit */
    double stream_rate; /* dispatches per second into one stream (posting requests); 0 = none */
    size_t queue;       /* most requests waiting (>= 1) */
    int executors;      /* most requests in flight (>= 1) */
} dfb_cmdsched_opts_t;

/*  NULL when out of memory. */
dfb_cmdsched_t *dfb_cmdsched_new(const dfb_cmdsched_opts_t *o);

/*  Frees the scheduler (not the jobs still waiting: drain them first);
    NULLs *self_p; accepts NULL. */
void dfb_cmdsched_destroy(dfb_cmdsched_t **self_p);

/*  Queues job (borrowed, opaque, not NULL) arriving at now_ms; stream is
    the posting request's stream id (copied, at most 255 bytes) or NULL.
    0, or -1 when the queue is full (busy) or out of memory, with
    *retry_after_ms = the time the queue is expected to need (>= 100). */
int dfb_cmdsched_push(dfb_cmdsched_t *self, void *job, const char *stream, int64_t now_ms,
                      int64_t *retry_after_ms);

/*  The next job that may go at now_ms, removed from the queue and counted
    in flight (its token taken, its stream marked), or NULL: then *wait_ms
    is the time until one may go (-1: none waits, or what waits needs an
    executor or a request in flight to finish: call again after
    dfb_cmdsched_done). */
void *dfb_cmdsched_next(dfb_cmdsched_t *self, int64_t now_ms, int64_t *wait_ms);

/*  A job returned by dfb_cmdsched_next finished at now_ms (stream as
    pushed): its stream's spacing counts from here. */
void dfb_cmdsched_done(dfb_cmdsched_t *self, const char *stream, int64_t now_ms);

/*  Removes and returns the oldest waiting job (NULL when none): at a stop. */
void *dfb_cmdsched_pop(dfb_cmdsched_t *self);

size_t dfb_cmdsched_queued(const dfb_cmdsched_t *self);
size_t dfb_cmdsched_inflight(const dfb_cmdsched_t *self);

/*  Self-test (a clock of its own); returns the number of failed checks. */
int dfb_cmdsched_test(int verbose);

#endif
