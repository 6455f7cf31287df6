/*  Internals of the datafeed loop, shared by its files and by nothing else:
    the loop, listener, job, watermark and link structures, and the calls
    between dfc_loop.c (API, receiver), dfc_pool.c (workers and queues),
    dfc_dispatch.c (dedupe, group, listeners), dfc_link.c (one bridge's SUB,
    gaps, heartbeats), dfc_fill.c (the gap filler) and dfc_watermark.c
    (watermarks, checkpoint). Not installed. */
#ifndef DFC_LOOP_PRIV_H
#define DFC_LOOP_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include <zmq.h>

#include "dfc_internal.h"

#define DEFAULT_WORKERS 4
#define DEFAULT_RCVHWM 1000
#define DEFAULT_MAX_FRAME (16u << 20)
#define DEFAULT_QUEUE 1024
#define DEFAULT_CKPT_MS 1000
#define DEFAULT_REPLAY_TIMEOUT_MS 5000
#define DEFAULT_DEDUPE 65536
#define DEFAULT_MAX_HELD 10000
#define DEFAULT_MAX_HELD_BYTES ((size_t)64 << 20)
#define REPLAY_LIMIT 1000 /* the protocol's maximum per request */
#define REPLAY_TRIES 3
#define REPLAY_BACKOFF_MS 100 /* busy, io_error, internal: asked again after 100, then 200 ms */
#define REPLAY_STALLS 3       /* answers in a row that deliver nothing, then the fill gives up */
#define MAX_WORKERS 256
#define MAX_RANGES 65536  /* missing gseq ranges remembered per bridge, for gaps_filled */
#define GAP_TABLE_MAX 512 /* (epoch, topic) pairs remembered for gap counting */
#define RECV_BATCH 256    /* messages read per poll before looking at stop again */
#define STAGE_MAX 64      /* jobs the receiver stages per queue before taking its lock */
#define POLL_MS 100       /* timers (staleness, replay, checkpoint) are checked this often */

/*  A listener. refs, running and removed are atomics so that the per-event
    path (dispatch, workers) takes no lock: a callback or filter enters with
    dfc_lrec_enter (running++, then removed is checked) and leaves with
    dfc_lrec_leave; unsubscribe sets removed, then waits under loop->mu on
    loop->idle for running == 0 (sequentially consistent on both sides, so
    one of them sees the other). next is under loop->mu. */
typedef struct lrec {
    dfc_listener_t l; /* our copy */
    const dfc_listener_t *key;
    char id[64];
    atomic_int refs;    /* list membership + the receiver's snapshot + queued/running jobs */
    atomic_int running; /* callbacks and filters inside user code now */
    atomic_bool removed;
    struct lrec *next;
} lrec_t;

/*  The watermark of one bridge epoch: events are tracked in the order they
    were handed to the listeners (gseq order), and the watermark moves over
    the prefix whose jobs all ran. Under loop->wm_mu. */
typedef struct track {
    struct wm *wm;
    uint64_t gseq;
    int pending; /* jobs not finished + 1 while the receiver queues them */
    bool failed; /* a job was not queued (stop while full): the watermark stops here */
    struct track *next;
} track_t;

typedef struct wm {
    char epoch[DFC_EPOCH_MAX];
    size_t epoch_len;
    uint64_t gseq; /* everything <= gseq of this epoch was handled */
    bool used, blocked;
    uint64_t stamp; /* last use, to evict the oldest epoch */
    track_t *head, *tail;
    uint64_t *done; /* from the checkpoint: handled above gseq, ascending; skipped */
    size_t ndone;
} wm_t;

typedef struct {
    dfc_event_t *ev;
    lrec_t *lr;
    track_t *trk;
} job_t;

/*  A bounded job queue with its own lock: the receiver pushes, its
    worker(s) pop; nothing else is under mu. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    job_t *q;
    size_t head, len;
    int idle;       /* workers waiting on not_empty: signal only when someone waits */
    bool full_wait; /* the receiver waits on not_full */
    /* receiver-only: jobs staged for this queue, handed over by dfc_pool_flush
       under one lock (no lock and no wake-up per event) */
    job_t stage[STAGE_MAX];
    size_t nstage;
    size_t stage_room; /* room the queue had at the last flush (at most STAGE_MAX) */
} wqueue_t;

typedef struct {
    char *key; /* epoch bytes then topic bytes */
    size_t epoch_len, key_len;
    uint64_t last_seq;
} gap_entry_t;

typedef struct {
    uint64_t lo, hi;
} range_t;

/*  The counters of dfc_stats_t, in its order: one list for the atomic
    twin below, the copy in dfc_loop_stats and the INFO format (checked
    against the public struct field by field at compile time). */
#define DFC_STATS_FIELDS(X)                                                                        \
    X(listeners)                                                                                   \
    X(connects)                                                                                    \
    X(disconnects)                                                                                 \
    X(received)                                                                                    \
    X(dispatched)                                                                                  \
    X(completed)                                                                                   \
    X(skipped)                                                                                     \
    X(dropped_at_stop)                                                                             \
    X(filtered)                                                                                    \
    X(dropped_malformed)                                                                           \
    X(bad_frames)                                                                                  \
    X(oversize)                                                                                    \
    X(bad_msgpack)                                                                                 \
    X(not_map)                                                                                     \
    X(bad_version)                                                                                 \
    X(bad_envelope)                                                                                \
    X(bad_event)                                                                                   \
    X(unknown_type)                                                                                \
    X(reserved)                                                                                    \
    X(gaps)                                                                                        \
    X(heartbeats)                                                                                  \
    X(replayed)                                                                                    \
    X(gaps_filled)                                                                                 \
    X(lost)                                                                                        \
    X(duplicates)                                                                                  \
    X(not_mine)                                                                                    \
    X(reconnects)                                                                                  \
    X(auth_failures)                                                                               \
    X(replay_requests)                                                                             \
    X(replay_errors)                                                                               \
    X(checkpoints)                                                                                 \
    X(lag_ms)                                                                                      \
    X(replay_stalls)                                                                               \
    X(held_dropped)                                                                                \
    X(alloc_failures)                                                                              \
    X(checkpoint_errors)                                                                           \
    X(queue_waits)                                                                                 \
    X(replay_unexpected)                                                                           \
    X(replay_refused)

/*  The loop's counters: atomics, so that no thread takes a lock to count. */
typedef struct {
#define X(f) _Atomic uint64_t f;
    DFC_STATS_FIELDS(X)
#undef X
} dfc_counters_t;

#define STAT_ADD(loop, f, n) atomic_fetch_add_explicit(&(loop)->stats.f, (n), memory_order_relaxed)
#define STAT_SUB(loop, f, n) atomic_fetch_sub_explicit(&(loop)->stats.f, (n), memory_order_relaxed)
#define STAT_SET(loop, f, v) atomic_store_explicit(&(loop)->stats.f, (v), memory_order_relaxed)

/*  The gap filler of one link (dfc_fill.c): one state, changed only by
    dfc_fill_on. */
typedef enum {
    DFC_FILL_IDLE,    /* nothing missing */
    DFC_FILL_WAITING, /* something missing, no request out: no replay endpoint known yet, or
                         the send failed; the deadline asks again (or gives up) */
    DFC_FILL_ASKED    /* a request is out: its answer (or a message of it) is due by the
                         deadline */
} dfc_fill_state_t;

/*  What happens to a fill. */
typedef enum {
    DFC_FILL_EV_MISSING,   /* gseqs up to arg are missing (a live hole, a heartbeat, a
                              new epoch's baseline): start, or raise the target */
    DFC_FILL_EV_HEARTBEAT, /* a heartbeat came: it may have named the replay endpoint */
    DFC_FILL_EV_TICK,      /* the timer; arg = now (monotonic ms) */
    DFC_FILL_EV_ANSWER,    /* an end marker of the request in flight (end) */
    DFC_FILL_EV_EPOCH,     /* the link's epoch ends: what is held goes out, the fill ends */
    DFC_FILL_EV_STOP       /* the receiver stops: held events are dropped unhandled */
} dfc_fill_ev_t;

typedef struct {
    dfc_fill_state_t state;
    uint64_t target;        /* fill up to this gseq */
    uint64_t req;           /* the id of the last request */
    int tries;              /* timeouts of the request in flight */
    int stalls;             /* answers in a row that asked for more and delivered nothing */
    uint64_t answer_events; /* events delivered from the answer in flight */
    int64_t deadline;
    void *dealer; /* the replay client socket (dfc_replay_open) */
    char *dealer_ep;
    dfc_event_t **held; /* live events held meanwhile, gseq increasing */
    size_t nheld, held_cap;
    size_t held_bytes;    /* their wire bytes (dfc_event_wire_size): <= max_held_bytes */
    uint64_t answer_msgs; /* messages read for the request in flight (at most REPLAY_LIMIT
                             are taken) */
    bool answer_dropped;  /* ...of which some were dropped as unexpected: the end marker's
                             claims (last_gseq) are not taken, the rest is asked again */
    void *dealer_mon; /* CURVE: the dealer's handshakes (dfc_monitor.c) */
    dfc_hs_t hs;
} dfc_fill_t;

/*  One bridge. endpoint and replay_cfg are set by connect (under mu);
    everything else belongs to the receiver thread. */
typedef struct link {
    char *endpoint;
    char *replay;    /* replay endpoint: configured, or learnt from "_hb"; NULL = none */
    bool replay_cfg; /* configured: heartbeats do not change it */
    void *sub, *mon;
    char epoch[DFC_EPOCH_MAX];
    size_t epoch_len; /* epochs are bytes: compared with their length */
    bool has_epoch, had_epoch, from_used;
    uint64_t hw;        /* highest gseq of the epoch delivered (or given up as lost) */
    uint64_t live_last; /* highest gseq of the epoch seen live or announced by "_hb" */
    uint64_t seen;      /* highest gseq of the epoch received in a message (live or replayed) */
    bool hb_known;      /* a heartbeat of this epoch was accepted: live gseqs are bounded */
    range_t *ranges;    /* gseqs known missing (not seen live), ascending */
    size_t nranges, ranges_cap;
    dfc_fill_t fill;
    /* liveness */
    int64_t last_rx;
    int strikes;       /* staleness reconnects since the last message: backs off */
    int64_t relink_at; /* disconnected and libzmq is not reconnecting: connect again
                          ourselves at this time (0 = nothing pending); dfc_link.c */
    uint64_t hb_interval;
    bool hb_seen;
    char *replay_refused; /* the last endpoint a heartbeat named and the rule refused (logged
                             once per value) */
    dfc_hs_t hs; /* the SUB's CURVE handshakes: a refusal arms relink_at (dfc_link.c) */
    struct link *next;
} link_t;

typedef struct {
    dfc_loop_t *loop;
    char name[24];
    int index;
    pthread_t tid;
} worker_t;

struct dfc_loop {
    dfc_config_t cfg;
    void *zctx;
    bool own_zctx;
    int wake[2]; /* stop and connect requests wake the receiver's poll */
    atomic_int stop_req;
    atomic_int running;

    /*  Lock order: mu, then a queue's mu, then wm_mu; never the other way. */
    pthread_mutex_t mu;    /* the listener list and each listener's refs/running/removed,
                              the links list */
    pthread_mutex_t wm_mu; /* watermarks, tracking records, ckpt_dirty */
    pthread_cond_t idle;   /* a listener's running count went to 0 (under mu) */
    wqueue_t *qs;          /* each with its own lock */
    int nq;                /* 1 (CONCURRENT) or one per worker (STREAM) */
    atomic_bool quit;      /* workers: drain then exit (set, then each queue signalled) */
    lrec_t *listeners;
    atomic_uint lgen; /* bumped (under mu) when the listener list changes */
    unsigned next_lid;
    link_t *links;
    size_t nlinks, nopened;
    dfc_counters_t stats;
    wm_t wms[DFC_CKPT_MAX];
    uint64_t wm_clock;
    bool ckpt_dirty, ckpt_loaded;
    char *ckpt_path; /* NULL: no checkpoint */

    /* receiver-only state */
    gap_entry_t gaps[GAP_TABLE_MAX];
    size_t ngaps;
    lrec_t **snap; /* the listeners as of snap_gen, each with a reference */
    size_t nsnap, snap_cap;
    unsigned snap_gen;
    link_t **rl; /* links the receiver opened, in connect order */
    size_t rl_cap;
    dfc_dedupe_t *dedupe;
    dfc_blocks_t *blocks; /* event memory, recycled (taken by the receiver only) */
    int64_t ckpt_next;
    bool connect_retry;    /* connect_pending ran out of memory: try again */
    uint64_t ckpt_failing; /* saves failed in a row (logged: the first, and the recovery) */
    dfc_curve_t curve;     /* CURVE keys of every socket to a bridge (off: plain) */
};

/*  The listener whose callback (or filter) runs on this thread: unsubscribe
    from there must not wait for itself. */
extern _Thread_local lrec_t *dfc_tl_listener;

/* pool */
/*  Starts cfg.workers threads (*n_p of them started, also on error). */
int dfc_pool_start(dfc_loop_t *loop, worker_t **workers_p, int *n_p);
/*  Lets the workers run every queued job, joins them, frees workers. */
void dfc_pool_stop(dfc_loop_t *loop, worker_t *workers, int n);
/*  Drops a reference; the last one frees. Any thread, any lock. */
void dfc_lrec_unref(lrec_t *lr);
/*  Before user code of lr runs: false (nothing entered) when lr was removed. */
bool dfc_lrec_enter(dfc_loop_t *loop, lrec_t *lr);
/*  After it: wakes an unsubscribe that waits for it. Takes mu only then. */
void dfc_lrec_leave(dfc_loop_t *loop, lrec_t *lr);
/*  Stages one job for queue qi (the caller gave it its listener reference;
    this takes one on ev and on trk); once the stage holds as many jobs as
    the queue had room for, they are handed over (dfc_pool_flush), waiting
    for room if needed. Returns false when stop came while waiting: the jobs
    not queued (this one included) were dropped, counted in dropped_at_stop,
    their watermark records failed. */
bool dfc_pool_enqueue(dfc_loop_t *loop, int qi, dfc_event_t *ev, lrec_t *lr, track_t *trk);
/*  Hands every staged job to the workers: one lock and at most one wake-up
    per queue. The receiver calls it after each burst and before it polls.
    Returns false when stop came while waiting for room (the rest dropped). */
bool dfc_pool_flush(dfc_loop_t *loop);
/*  Drops the receiver's listener snapshot (its references). */
void dfc_snap_clear(dfc_loop_t *loop);
/* watermark */
wm_t *dfc_wm_get(dfc_loop_t *loop, const char *epoch, size_t el, bool create);
void dfc_track_release(dfc_loop_t *loop, track_t *t);
/*  One more pending job on t / t's event was not handed out. Take wm_mu. */
void dfc_track_hold(dfc_loop_t *loop, track_t *t);
void dfc_track_fail(dfc_loop_t *loop, track_t *t);
track_t *dfc_track_new(dfc_loop_t *loop, const dfc_event_t *ev);
int dfc_cmp_u64(const void *a, const void *b);
/*  How many gseqs of the epoch in (a, b] the checkpoint recorded as handled
    (its "d" lines: skipped when replayed, so never counted lost). Takes
    wm_mu; 0 without a checkpoint. */
uint64_t dfc_wm_done_in(dfc_loop_t *loop, const char *epoch, size_t el, uint64_t a, uint64_t b);
/*  A checkpoint entry meets the bridge's head (the newest gseq it says it
    published in that epoch): a watermark above it cannot be right (a file
    edited or damaged, or a bridge whose journal lost its tail) and is not
    used: false, the entry's handled gseqs forgotten; handled gseqs above it
    are forgotten. Logged at ERROR. Under wm_mu. */
bool dfc_wm_check_head(dfc_loop_t *loop, wm_t *w, uint64_t head);
void dfc_wm_save(dfc_loop_t *loop);
void dfc_wm_restore(dfc_loop_t *loop);
/* dispatch */
void dfc_deliver(dfc_loop_t *loop, dfc_event_t *ev);
/* link */
void dfc_drop_count(dfc_loop_t *loop, dfc_msg_status_t st);
void dfc_drop(dfc_loop_t *loop, dfc_msg_status_t st, size_t size);
bool dfc_link_ordered(const dfc_loop_t *loop, const link_t *L);
void dfc_range_add(link_t *L, uint64_t lo, uint64_t hi);
bool dfc_range_hit(link_t *L, uint64_t g);
bool dfc_link_same_epoch(const link_t *L, const char *epoch, size_t el);
int dfc_link_receive(dfc_loop_t *loop, link_t *L);
void dfc_link_read_monitor(dfc_loop_t *loop, link_t *L);
void dfc_link_close_sub(link_t *L);
int dfc_link_open_sub(dfc_loop_t *loop, link_t *L);
void dfc_link_timers(dfc_loop_t *loop, link_t *L, int64_t now);
/* fill */
/*  The transition function of a link's fill: the only place its state
    changes. Receiver thread. */
void dfc_fill_on(dfc_loop_t *loop, link_t *L, dfc_fill_ev_t ev, uint64_t arg,
                 const dfc_replay_end_t *end);
/*  True unless the fill is idle: live events are then held. */
bool dfc_fill_busy(const link_t *L);
/*  Keeps a live event until the fill ends (beyond max_held: counted in
    held_dropped and left to replay). */
void dfc_fill_hold(dfc_loop_t *loop, link_t *L, dfc_event_t *ev);
/*  Reads one message from the link's replay socket (like dfc_msg_read). */
int dfc_fill_receive(dfc_loop_t *loop, link_t *L);
/*  Frees what the fill owns (held events, socket, arrays). */
void dfc_fill_destroy(link_t *L);

/* monitor (CURVE handshakes of the replay DEALER) */
void dfc_dealer_read_monitor(dfc_loop_t *loop, link_t *L);
void dfc_dealer_tick(dfc_loop_t *loop, link_t *L, int64_t now);

/* loop */
/* dfc_mono_ms and dfc_wall_ms: in dfc_internal.h */

#endif
