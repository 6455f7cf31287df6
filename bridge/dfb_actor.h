/*  dfb_actor: the publisher actor, one thread that owns the PUB socket and
    the `_hb` timer. The sequencer (dfb_publish) hands it numbered messages
    through an inproc PAIR pipe; it publishes them in order and never waits
    on anything but that pipe and its timer (no disk, no lock), so a
    long-poll or a slow disk never delays a heartbeat.

    If the thread stops on an error it logs one error line, counts it in
    dead_threads and requests the daemon's stop (dfb_stop_request): the
    bridge then exits 5. After that, no call here blocks: they return -1. */
#ifndef DFB_ACTOR_H
#define DFB_ACTOR_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "dfb_fdguard.h"
#include "dfb_heartbeat.h"
#include "dfb_info.h"
#include "dfb_topics.h"
#include "dfb_zsock.h"

typedef struct dfb_actor dfb_actor_t;

typedef struct {
    int heartbeat_ms;             /* 0 = no heartbeat */
    const char *epoch;            /* copied */
    const char *advertise;        /* the heartbeat's replay endpoint ("" = off), copied */
    uint64_t gseq;                /* last gseq published before start (from the journal) */
    const dfb_topics_t *seqs;     /* last seq per topic before start, copied; NULL = none */
    dfb_pub_counters_t *counters; /* borrowed: published, send_errors, heartbeats, ... */
    uint64_t fail_after;          /* test only (DFB_TEST_ACTOR_FAIL_AFTER): 0 = never */
    /* CURVE (borrowed, must outlive the actor): the PUB's options with the
       bound endpoint. When counters->auth_rebinds changes (dfb_zap removed
       a key) the actor closes the PUB, which cuts every connection, and
       binds a new one with these options, retrying every 100 ms until it
       works; events meanwhile are counted in send_errors (replay has them).
       NULL = never. Tests: DFB_TEST_REBIND_FAILS=N fails the first N
       attempts of each re-bind (here and in dfb_replay). */
    const dfb_zsock_opts_t *rebind;
    dfb_fdguard_t *guard; /* borrowed: a re-bound PUB is watched again (dfb_fdguard_rewatch) */
} dfb_actor_opts_t;

/*  Starts the actor on pub (a bound PUB socket of ctx: ownership moves to
    the actor, which closes it). NULL on error with a message in err (pub is
    then closed too). */
dfb_actor_t *dfb_actor_new(void *ctx, void *pub, const dfb_actor_opts_t *opts, char *err,
                           size_t errlen);

/*  Publishes what was handed over, stops the thread, closes its sockets,
    NULLs *self_p; accepts NULL. Never blocks on a dead actor. */
void dfb_actor_destroy(dfb_actor_t **self_p);

/*  A batch of messages handed to the actor as one unit: one pipe message
    (a pointer), so one wake of the actor per batch instead of one per
    event. The caller fills it (dfb_actor_batch_add), hands it over
    (dfb_actor_send_batch) and must not touch it again until
    dfb_actor_batch_busy says the actor is done with it (dfb_actor_sync
    waits for that). The memory is reused from batch to batch. */
typedef struct {
    dfb_buf_t buf; /* per message: u64 gseq, u64 seq, u32 topic_len, u32 body_len, topic, body */
    size_t n;      /* messages in buf */
    uint64_t sent; /* caller: hand-offs so far */
    _Atomic uint64_t ready; /* = sent before the pointer goes through the pipe (release) */
    _Atomic uint64_t done;  /* the actor: the last hand-off it has published (release) */
} dfb_actor_batch_t;

void dfb_actor_batch_init(dfb_actor_batch_t *b);
void dfb_actor_batch_free(dfb_actor_batch_t *b);
/*  Appends one message (copies topic and body). 0, or -1 out of memory. */
int dfb_actor_batch_add(dfb_actor_batch_t *b, uint64_t gseq, uint64_t seq, const char *topic,
                        size_t topic_len, const void *body, size_t body_len);
/*  1 while the actor may still read b (handed over and not yet published). */
int dfb_actor_batch_busy(const dfb_actor_batch_t *b);

/*  Hands b over (see above); the actor publishes its messages in order
    and keeps the heartbeat's watermark per message. Waits while the pipe
    is full. 0, or -1 when the actor is dead (nothing handed, b is free).
    Caller's thread only. */
int dfb_actor_send_batch(dfb_actor_t *self, dfb_actor_batch_t *b);

/*  Waits until the actor has handled everything sent before. 0, or -1 when
    the actor is dead. Caller's thread only. */
int dfb_actor_sync(dfb_actor_t *self);

/*  1 once the actor thread has stopped on an error. Any thread. */
int dfb_actor_dead(const dfb_actor_t *self);

#endif
