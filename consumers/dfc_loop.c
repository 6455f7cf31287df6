/*  dfc_loop: the receiver (the thread that calls dfc_loop_start owns every
    socket: one SUB, monitor and replay DEALER per bridge), the bounded job
    queues and the worker pool, and the delivery state machine: gaps from seq
    and heartbeats, fills from replay in gseq order, dedupe, group filter,
    staleness, and the watermark that the checkpoint records. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
#define REPLAY_LIMIT 1000 /* the protocol's maximum per request */
#define REPLAY_TRIES 3
#define REPLAY_STALLS 3 /* answers in a row that deliver nothing, then the fill gives up */
#define MAX_WORKERS 256
#define MAX_RANGES 65536  /* missing gseq ranges remembered per bridge, for gaps_filled */
#define GAP_TABLE_MAX 512 /* (epoch, topic) pairs remembered for gap counting */
#define RECV_BATCH 256    /* messages read per poll before looking at stop again */
#define POLL_MS 100       /* timers (staleness, replay, checkpoint) are checked this often */

typedef struct lrec {
    dfc_listener_t l; /* our copy */
    const dfc_listener_t *key;
    char id[64];
    int refs;    /* list membership + queued/running jobs; under loop->mu */
    int running; /* jobs inside a callback now; under loop->mu */
    bool removed;
    struct lrec *next;
} lrec_t;

/*  The watermark of one bridge epoch: events are tracked in the order they
    were handed to the listeners (gseq order), and the watermark moves over
    the prefix whose jobs all ran. Under loop->mu. */
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

typedef struct {
    job_t *q;
    size_t head, len;
    pthread_cond_t not_empty;
    int idle; /* workers waiting on not_empty: signal only when someone waits */
} wqueue_t;

typedef struct {
    char *key; /* epoch bytes then topic bytes */
    size_t epoch_len, key_len;
    uint64_t last_seq;
} gap_entry_t;

typedef struct {
    uint64_t lo, hi;
} range_t;

/*  One bridge. endpoint and replay_cfg are set by connect (under mu);
    everything else belongs to the receiver thread. */
typedef struct link {
    char *endpoint;
    char *replay;    /* replay endpoint: configured, or learnt from "_hb"; NULL = none */
    bool replay_cfg; /* configured: heartbeats do not change it */
    void *sub, *mon, *dealer;
    char *dealer_ep;
    char epoch[DFC_EPOCH_MAX];
    size_t epoch_len; /* epochs are bytes: compared with their length */
    bool has_epoch, had_epoch, from_used;
    uint64_t hw;        /* highest gseq of the epoch delivered (or given up as lost) */
    uint64_t live_last; /* highest gseq of the epoch seen live or announced by "_hb" */
    uint64_t seen;      /* highest gseq of the epoch received in a message (live or replayed) */
    bool hb_known;      /* a heartbeat of this epoch was accepted: live gseqs are bounded */
    range_t *ranges;    /* gseqs known missing (not seen live), ascending */
    size_t nranges, ranges_cap;
    /* fill: one replay request in flight */
    bool filling, sent;
    uint64_t target, req;
    int tries;
    int stalls;             /* answers in a row that delivered nothing */
    uint64_t answer_events; /* events delivered from the answer in flight */
    int64_t deadline;
    dfc_event_t **held; /* live events held during a fill, gseq increasing */
    size_t nheld, held_cap;
    /* liveness */
    int64_t last_rx;
    int strikes; /* staleness reconnects since the last message: backs off */
    uint64_t hb_interval;
    bool hb_seen;
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

    pthread_mutex_t mu; /* listeners, queues, links list, watermarks, stats */
    pthread_cond_t not_full, idle;
    wqueue_t *qs;
    int nq;         /* 1 (CONCURRENT) or one per worker (STREAM) */
    bool quit;      /* workers: drain then exit */
    bool full_wait; /* the receiver waits on not_full */
    lrec_t *listeners;
    unsigned next_lid;
    link_t *links;
    size_t nlinks, nopened;
    dfc_stats_t stats;
    wm_t wms[DFC_CKPT_MAX];
    uint64_t wm_clock;
    bool ckpt_dirty, ckpt_loaded;
    char *ckpt_path; /* NULL: no checkpoint */

    /* receiver-only state */
    gap_entry_t gaps[GAP_TABLE_MAX];
    size_t ngaps;
    lrec_t **snap;
    size_t snap_cap;
    link_t **rl; /* links the receiver opened, in connect order */
    size_t rl_cap;
    dfc_dedupe_t *dedupe;
    int64_t ckpt_next;
    bool connect_retry; /* connect_pending ran out of memory: try again */
    uint64_t ckpt_failing; /* saves failed in a row (logged: the first, and the recovery) */
};

static _Thread_local lrec_t *tl_current; /* the listener whose callback runs here */

static void link_release_held(dfc_loop_t *loop, link_t *L, bool force);

const char *
dfc_strerror(int rc)
{
    switch (rc) {
    case DFC_OK:
        return "ok";
    case DFC_EINVAL:
        return "invalid argument";
    case DFC_ENOMEM:
        return "out of memory";
    case DFC_EALREADY:
        return "the loop is already started";
    case DFC_EZMQ:
        return "ZeroMQ error";
    case DFC_ENOTFOUND:
        return "listener not subscribed";
    case DFC_EIO:
        return "I/O error";
    default:
        return "unknown error";
    }
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
wake(dfc_loop_t *loop)
{
    char c = 1;
    /* A full pipe already means "wake up": EAGAIN is fine. */
    ssize_t r = write(loop->wake[1], &c, 1);
    (void)r;
}

static void
stat_add(dfc_loop_t *loop, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&loop->mu);
    *field += n;
    pthread_mutex_unlock(&loop->mu);
}

dfc_loop_t *
dfc_loop_new(const dfc_config_t *cfg)
{
    dfc_loop_t *loop = calloc(1, sizeof *loop);
    if (!loop) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_new: out of memory");
        return NULL;
    }
    if (cfg)
        loop->cfg = *cfg;
    dfc_config_t *c = &loop->cfg;
    if (c->workers <= 0)
        c->workers = DEFAULT_WORKERS;
    if (c->workers > MAX_WORKERS)
        c->workers = MAX_WORKERS;
    if (c->rcvhwm <= 0)
        c->rcvhwm = DEFAULT_RCVHWM;
    if (c->max_frame == 0)
        c->max_frame = DEFAULT_MAX_FRAME;
    if (c->queue_size == 0)
        c->queue_size = DEFAULT_QUEUE;
    if (c->checkpoint_ms <= 0)
        c->checkpoint_ms = DEFAULT_CKPT_MS;
    if (c->replay_timeout_ms <= 0)
        c->replay_timeout_ms = DEFAULT_REPLAY_TIMEOUT_MS;
    if (c->max_held == 0)
        c->max_held = DEFAULT_MAX_HELD;
    if (c->members > 1 && (c->member < 0 || c->member >= c->members)) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_new: member %d is not in 0..%d", c->member,
                c->members - 1);
        free(loop);
        return NULL;
    }
    /* the strings are the caller's: keep what we need as our own copies */
    c->checkpoint_dir = c->name = c->group = NULL;
    bool grouped = cfg && cfg->group && cfg->members > 1;
    if (cfg && cfg->checkpoint_dir && !(cfg->name && *cfg->name) && !grouped) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_new: invalid argument: checkpoint_dir needs a name "
                               "(or a group): the file is <checkpoint_dir>/<name>.ckpt");
        free(loop);
        return NULL;
    }
    if (cfg && cfg->checkpoint_dir && (cfg->name || grouped)) {
        /* a group member's checkpoint is its own: the name carries k and N */
        char name[256];
        if (grouped)
            snprintf(name, sizeof name, "%s-%d-of-%d", cfg->group, cfg->member, cfg->members);
        else
            snprintf(name, sizeof name, "%s", cfg->name);
        size_t n = strlen(cfg->checkpoint_dir) + strlen(name) + 8;
        loop->ckpt_path = malloc(n);
        if (loop->ckpt_path)
            snprintf(loop->ckpt_path, n, "%s/%s.ckpt", cfg->checkpoint_dir, name);
    }
    loop->nq = c->ordering == DFC_ORDER_STREAM ? c->workers : 1;
    loop->wake[0] = loop->wake[1] = -1;
    loop->qs = calloc((size_t)loop->nq, sizeof *loop->qs);
    bool ok = loop->qs != NULL && (!cfg || !cfg->checkpoint_dir || loop->ckpt_path);
    for (int i = 0; ok && i < loop->nq; i++) {
        loop->qs[i].q = calloc(c->queue_size, sizeof(job_t));
        ok = loop->qs[i].q != NULL;
    }
    if (ok && c->dedupe_window >= 0) {
        loop->dedupe = dfc_dedupe_new(c->dedupe_window ? (size_t)c->dedupe_window : DEFAULT_DEDUPE);
        ok = loop->dedupe != NULL;
    }
    if (!ok || pipe(loop->wake) != 0) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_new: %s", ok ? strerror(errno) : "out of memory");
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(loop->wake[i], F_SETFL, fcntl(loop->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(loop->wake[i], F_SETFD, FD_CLOEXEC);
    }
    if (c->zmq_ctx) {
        loop->zctx = c->zmq_ctx;
    } else {
        loop->zctx = zmq_ctx_new();
        loop->own_zctx = true;
        if (!loop->zctx) {
            dfc_log(DFC_LOG_ERROR, "dfc_loop_new: zmq_ctx_new: %s", zmq_strerror(errno));
            goto fail;
        }
    }
    pthread_mutex_init(&loop->mu, NULL);
    pthread_cond_init(&loop->not_full, NULL);
    pthread_cond_init(&loop->idle, NULL);
    for (int i = 0; i < loop->nq; i++)
        pthread_cond_init(&loop->qs[i].not_empty, NULL);
    atomic_init(&loop->stop_req, 0);
    atomic_init(&loop->running, 0);
    return loop;
fail:
    if (loop->wake[0] >= 0) {
        close(loop->wake[0]);
        close(loop->wake[1]);
    }
    for (int i = 0; loop->qs && i < loop->nq; i++)
        free(loop->qs[i].q);
    free(loop->qs);
    dfc_dedupe_destroy(&loop->dedupe);
    free(loop->ckpt_path);
    free(loop);
    return NULL;
}

void
dfc_loop_destroy(dfc_loop_t **loop_p)
{
    if (!loop_p || !*loop_p)
        return;
    dfc_loop_t *loop = *loop_p;
    if (atomic_load(&loop->running)) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_destroy: the loop is running; stop it first");
        return;
    }
    lrec_t *lr = loop->listeners;
    while (lr) {
        lrec_t *next = lr->next;
        free(lr);
        lr = next;
    }
    link_t *L = loop->links;
    while (L) {
        link_t *next = L->next;
        free(L->endpoint);
        free(L->replay);
        free(L->dealer_ep);
        free(L->held); /* emptied when start returned */
        free(L->ranges);
        free(L);
        L = next;
    }
    for (int i = 0; i < DFC_CKPT_MAX; i++) {
        free(loop->wms[i].done);
        track_t *t = loop->wms[i].head;
        while (t) {
            track_t *next = t->next;
            free(t);
            t = next;
        }
    }
    for (size_t i = 0; i < loop->ngaps; i++)
        free(loop->gaps[i].key);
    free(loop->snap);
    free(loop->rl);
    for (int i = 0; i < loop->nq; i++) {
        free(loop->qs[i].q);
        pthread_cond_destroy(&loop->qs[i].not_empty);
    }
    free(loop->qs);
    dfc_dedupe_destroy(&loop->dedupe);
    free(loop->ckpt_path);
    close(loop->wake[0]);
    close(loop->wake[1]);
    if (loop->own_zctx)
        zmq_ctx_term(loop->zctx);
    pthread_mutex_destroy(&loop->mu);
    pthread_cond_destroy(&loop->not_full);
    pthread_cond_destroy(&loop->idle);
    free(loop);
    *loop_p = NULL;
}

int
dfc_loop_connect_replay(dfc_loop_t *loop, const char *endpoint, const char *replay_endpoint)
{
    if (!loop || !endpoint || !*endpoint)
        return DFC_EINVAL;
    link_t *L = calloc(1, sizeof *L);
    if (!L)
        return DFC_ENOMEM;
    L->endpoint = strdup(endpoint);
    if (replay_endpoint && *replay_endpoint) {
        L->replay = strdup(replay_endpoint);
        L->replay_cfg = true;
    }
    if (!L->endpoint || (replay_endpoint && *replay_endpoint && !L->replay)) {
        free(L->endpoint);
        free(L->replay);
        free(L);
        return DFC_ENOMEM;
    }
    pthread_mutex_lock(&loop->mu);
    link_t **tail = &loop->links;
    while (*tail)
        tail = &(*tail)->next;
    *tail = L;
    loop->nlinks++;
    pthread_mutex_unlock(&loop->mu);
    wake(loop);
    return DFC_OK;
}

int
dfc_loop_connect(dfc_loop_t *loop, const char *endpoint)
{
    return dfc_loop_connect_replay(loop, endpoint, NULL);
}

/* Under mu. */
static void
lrec_unref(lrec_t *lr)
{
    if (--lr->refs == 0)
        free(lr);
}

int
dfc_loop_subscribe(dfc_loop_t *loop, const dfc_listener_t *listener)
{
    if (!loop || !listener)
        return DFC_EINVAL;
    lrec_t *lr = calloc(1, sizeof *lr);
    if (!lr)
        return DFC_ENOMEM;
    lr->l = *listener;
    lr->key = listener;
    lr->refs = 1;
    pthread_mutex_lock(&loop->mu);
    loop->next_lid++;
    if (listener->name)
        snprintf(lr->id, sizeof lr->id, "%s", listener->name);
    else
        snprintf(lr->id, sizeof lr->id, "L%u", loop->next_lid);
    lr->l.name = lr->id;
    lrec_t **tail = &loop->listeners;
    while (*tail)
        tail = &(*tail)->next;
    *tail = lr;
    loop->stats.listeners++;
    pthread_mutex_unlock(&loop->mu);
    return DFC_OK;
}

int
dfc_loop_unsubscribe(dfc_loop_t *loop, const dfc_listener_t *listener)
{
    if (!loop || !listener)
        return DFC_EINVAL;
    pthread_mutex_lock(&loop->mu);
    lrec_t **pp = &loop->listeners;
    while (*pp && (*pp)->key != listener)
        pp = &(*pp)->next;
    lrec_t *lr = *pp;
    if (!lr) {
        pthread_mutex_unlock(&loop->mu);
        return DFC_ENOTFOUND;
    }
    *pp = lr->next;
    lr->next = NULL;
    lr->removed = true; /* queued jobs are skipped from now on */
    loop->stats.listeners--;
    /* From its own callback we would wait for ourselves: return at once. */
    if (tl_current != lr) {
        while (lr->running > 0)
            pthread_cond_wait(&loop->idle, &loop->mu);
    }
    lrec_unref(lr);
    pthread_mutex_unlock(&loop->mu);
    return DFC_OK;
}

void
dfc_loop_stop(dfc_loop_t *loop)
{
    if (!loop)
        return;
    /* async-signal-safe: an atomic store and write(2) only */
    atomic_store(&loop->stop_req, 1);
    wake(loop);
}

void
dfc_loop_stats(dfc_loop_t *loop, dfc_stats_t *out)
{
    if (!loop || !out)
        return;
    pthread_mutex_lock(&loop->mu);
    *out = loop->stats;
    pthread_mutex_unlock(&loop->mu);
}

size_t
dfc_stats_format(const dfc_stats_t *st, char *buf, size_t size)
{
#define S(f)                                                                                       \
    {                                                                                              \
#f, offsetof(dfc_stats_t, f)                                                               \
    }
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {S(listeners),     S(connects),          S(disconnects), S(received),
                  S(dispatched),    S(completed),         S(skipped),     S(dropped_at_stop),
                  S(filtered),      S(dropped_malformed), S(bad_frames),  S(oversize),
                  S(bad_msgpack),   S(not_map),           S(bad_version), S(bad_envelope),
                  S(bad_event),     S(unknown_type),      S(reserved),    S(gaps),
                  S(heartbeats),    S(replayed),          S(gaps_filled), S(lost),
                  S(duplicates),    S(not_mine),          S(reconnects),  S(replay_requests),
                  S(replay_errors), S(checkpoints),       S(lag_ms),      S(replay_stalls),
                  S(held_dropped),  S(alloc_failures),    S(checkpoint_errors)};
#undef S
    size_t pos = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)st + fields[i].off, sizeof v);
        int n = snprintf(buf && pos < size ? buf + pos : NULL, buf && pos < size ? size - pos : 0,
                         "%s:%llu\n", fields[i].name, (unsigned long long)v);
        if (n > 0)
            pos += (size_t)n;
    }
    if (buf && size && pos == 0)
        buf[0] = '\0';
    return pos;
}

/* ------------------------------------------------------------ watermarks */

/*  Finds (or, with create, makes) the watermark of an epoch. Under mu. A
    full table forgets the least recently used epoch that has nothing in
    flight. */
static wm_t *
wm_get(dfc_loop_t *loop, const char *epoch, size_t el, bool create)
{
    if (el >= DFC_EPOCH_MAX)
        return NULL;
    wm_t *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < DFC_CKPT_MAX; i++) {
        wm_t *w = &loop->wms[i];
        if (w->used && w->epoch_len == el && memcmp(w->epoch, epoch, el) == 0) {
            w->stamp = ++loop->wm_clock;
            return w;
        }
        if (!w->used && !free_slot)
            free_slot = w;
        if (w->used && !w->head && (!oldest || w->stamp < oldest->stamp))
            oldest = w;
    }
    if (!create)
        return NULL;
    wm_t *w = free_slot ? free_slot : oldest;
    if (!w)
        return NULL;
    free(w->done);
    memset(w, 0, sizeof *w);
    w->used = true;
    memcpy(w->epoch, epoch, el);
    w->epoch[el] = '\0';
    w->epoch_len = el;
    w->stamp = ++loop->wm_clock;
    return w;
}

/*  Drops one pending count; a finished prefix moves the watermark. Under mu. */
static void
track_release(dfc_loop_t *loop, track_t *t)
{
    if (--t->pending > 0)
        return;
    wm_t *w = t->wm;
    loop->ckpt_dirty = true; /* the watermark or the done set moved */
    while (w->head && w->head->pending == 0) {
        track_t *h = w->head;
        if (h->failed)
            w->blocked = true; /* until a restart replays it */
        if (!w->blocked && h->gseq > w->gseq)
            w->gseq = h->gseq;
        w->head = h->next;
        if (!w->head)
            w->tail = NULL;
        free(h);
    }
}

/*  A tracking record for an event about to be handed out (or skipped), with
    the receiver's own pending count; NULL without a checkpoint. Under mu. */
static track_t *
track_new(dfc_loop_t *loop, const dfc_event_t *ev)
{
    if (!loop->ckpt_path)
        return NULL;
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    wm_t *w = wm_get(loop, epoch, el, true);
    track_t *t = w ? calloc(1, sizeof *t) : NULL;
    if (!t)
        return NULL;
    t->wm = w;
    t->gseq = dfc_event_gseq(ev);
    t->pending = 1;
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
    return t;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*  The gseqs of w handled above its watermark: finished events still behind
    an unfinished one, plus those the last checkpoint named and this run has
    not reached. Under mu; *out malloc'ed. */
static size_t
wm_done_above(const wm_t *w, uint64_t **out)
{
    size_t n = 0, cap = w->ndone;
    for (const track_t *t = w->head; t; t = t->next)
        cap++;
    *out = cap ? malloc(cap * sizeof **out) : NULL;
    if (!*out)
        return 0;
    for (size_t i = 0; i < w->ndone; i++)
        if (w->done[i] > w->gseq)
            (*out)[n++] = w->done[i];
    for (const track_t *t = w->head; t; t = t->next)
        if (t->pending == 0 && !t->failed && t->gseq > w->gseq)
            (*out)[n++] = t->gseq;
    qsort(*out, n, sizeof **out, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || (*out)[i] != (*out)[u - 1])
            (*out)[u++] = (*out)[i];
    return u < DFC_CKPT_DONE_MAX ? u : DFC_CKPT_DONE_MAX;
}

static void
ckpt_write(dfc_loop_t *loop)
{
    dfc_ckpt_entry_t e[DFC_CKPT_MAX];
    size_t n = 0;
    pthread_mutex_lock(&loop->mu);
    if (!loop->ckpt_path || !loop->ckpt_dirty) {
        pthread_mutex_unlock(&loop->mu);
        return;
    }
    /* oldest first, so that a reader keeping the newest keeps the right ones */
    wm_t *order[DFC_CKPT_MAX];
    for (int i = 0; i < DFC_CKPT_MAX; i++) /* the text file cannot hold a NUL */
        if (loop->wms[i].used && !memchr(loop->wms[i].epoch, '\0', loop->wms[i].epoch_len))
            order[n++] = &loop->wms[i];
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && order[j]->stamp < order[j - 1]->stamp; j--) {
            wm_t *tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (size_t i = 0; i < n; i++) {
        memcpy(e[i].epoch, order[i]->epoch, DFC_EPOCH_MAX);
        e[i].gseq = order[i]->gseq;
        e[i].ndone = wm_done_above(order[i], &e[i].done);
    }
    loop->ckpt_dirty = false;
    pthread_mutex_unlock(&loop->mu);
    /* a full disk fails every period: one error line, then quiet */
    int rc = dfc_ckpt_save(loop->ckpt_path, e, n,
                           loop->ckpt_failing ? DFC_LOG_DEBUG : DFC_LOG_ERROR);
    dfc_ckpt_entries_free(e, n);
    if (rc != DFC_OK) {
        if (loop->ckpt_failing++ == 0)
            dfc_log(DFC_LOG_WARN, "cannot write the checkpoint %s (%s): the previous one is "
                                   "kept; retrying every %d ms",
                    loop->ckpt_path, dfc_strerror(rc), loop->cfg.checkpoint_ms);
        pthread_mutex_lock(&loop->mu);
        loop->ckpt_dirty = true; /* try again next period */
        loop->stats.checkpoint_errors++;
        pthread_mutex_unlock(&loop->mu);
        return;
    }
    if (loop->ckpt_failing)
        dfc_log(DFC_LOG_INFO, "checkpoint %s written again after %llu failed attempt(s)",
                loop->ckpt_path, (unsigned long long)loop->ckpt_failing);
    loop->ckpt_failing = 0;
    stat_add(loop, &loop->stats.checkpoints, 1);
}

static void
ckpt_load(dfc_loop_t *loop)
{
    if (!loop->ckpt_path || loop->ckpt_loaded)
        return;
    dfc_ckpt_entry_t e[DFC_CKPT_MAX];
    size_t n = 0;
    if (dfc_ckpt_load(loop->ckpt_path, e, DFC_CKPT_MAX, &n) != DFC_OK)
        dfc_log(DFC_LOG_ERROR, "checkpoint %s is malformed: %zu entries used", loop->ckpt_path, n);
    pthread_mutex_lock(&loop->mu);
    for (size_t i = 0; i < n; i++) {
        wm_t *w = wm_get(loop, e[i].epoch, strlen(e[i].epoch), true);
        if (w) {
            w->gseq = e[i].gseq;
            w->done = e[i].done; /* taken over */
            w->ndone = e[i].ndone;
            e[i].done = NULL;
        }
    }
    loop->ckpt_loaded = true;
    pthread_mutex_unlock(&loop->mu);
    dfc_ckpt_entries_free(e, n);
    if (n)
        dfc_log(DFC_LOG_INFO, "checkpoint %s: %zu epoch(s), resuming", loop->ckpt_path, n);
}

/* ---------------------------------------------------------------- workers */

static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    dfc_loop_t *loop = w->loop;
    wqueue_t *wq = &loop->qs[loop->nq == 1 ? 0 : w->index];
    pthread_mutex_lock(&loop->mu);
    for (;;) {
        while (wq->len == 0 && !loop->quit) {
            wq->idle++;
            pthread_cond_wait(&wq->not_empty, &loop->mu);
            wq->idle--;
        }
        if (wq->len == 0)
            break; /* quit and drained */
        job_t job = wq->q[wq->head];
        wq->head = (wq->head + 1) % loop->cfg.queue_size;
        wq->len--;
        if (loop->full_wait)
            pthread_cond_broadcast(&loop->not_full);
        lrec_t *lr = job.lr;
        if (!lr->removed) {
            lr->running++;
            pthread_mutex_unlock(&loop->mu);
            tl_current = lr;
            dfc_context_set(w->name, dfc_event_id(job.ev), lr->id);
            dfc_event_dispatch(job.ev, &lr->l);
            dfc_context_clear();
            tl_current = NULL;
            pthread_mutex_lock(&loop->mu);
            loop->stats.completed++;
            if (--lr->running == 0)
                pthread_cond_broadcast(&loop->idle);
        } else {
            loop->stats.skipped++;
        }
        if (job.trk)
            track_release(loop, job.trk);
        lrec_unref(lr);
        pthread_mutex_unlock(&loop->mu);
        dfc_event_unref(job.ev); /* may free: outside the lock */
        pthread_mutex_lock(&loop->mu);
    }
    pthread_mutex_unlock(&loop->mu);
    return NULL;
}

/*  Queues one job on queue qi, waiting while it is full (back-pressure: the
    SUB socket then fills up to its RCVHWM). Takes a reference on ev, lr and
    trk. Returns false when stop was requested while waiting. Under mu. */
static bool
enqueue(dfc_loop_t *loop, int qi, dfc_event_t *ev, lrec_t *lr, track_t *trk)
{
    wqueue_t *wq = &loop->qs[qi];
    if (wq->len == loop->cfg.queue_size) {
        /* Full: wait for room. stop cannot signal a condvar (it must be
           async-signal-safe), so the flag is polled every 50 ms; once we had
           to wait, a stop wins even if room appears at the same time. */
        while (!atomic_load(&loop->stop_req) && wq->len == loop->cfg.queue_size) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            loop->full_wait = true;
            pthread_cond_timedwait(&loop->not_full, &loop->mu, &ts);
            loop->full_wait = false;
        }
        if (atomic_load(&loop->stop_req))
            return false;
    }
    dfc_event_ref(ev);
    lr->refs++;
    if (trk)
        trk->pending++;
    wq->q[(wq->head + wq->len) % loop->cfg.queue_size] = (job_t){ev, lr, trk};
    wq->len++;
    loop->stats.dispatched++;
    if (wq->idle > 0)
        pthread_cond_signal(&wq->not_empty);
    return true;
}

/* --------------------------------------------------------------- receiver */

/*  Counts messages missing from seq per (epoch, topic): the first seq seen
    is the baseline. A live message's seq s follows s-1; a heartbeat's
    (announced) s is the last one published, so s itself may be missing. */
static void
count_gap(dfc_loop_t *loop, const char *epoch, size_t el, const char *topic, size_t tl,
          uint64_t seq, bool announced)
{
    size_t kl = el + tl;
    for (size_t i = 0; i < loop->ngaps; i++) {
        gap_entry_t *g = &loop->gaps[i];
        if (g->key_len == kl && g->epoch_len == el && memcmp(g->key, epoch, el) == 0 &&
            memcmp(g->key + el, topic, tl) == 0) {
            uint64_t next = announced ? 0 : 1;
            if (seq > g->last_seq && seq - g->last_seq > next) /* no wrap at UINT64_MAX */
                stat_add(loop, &loop->stats.gaps, seq - g->last_seq - next);
            if (seq > g->last_seq)
                g->last_seq = seq;
            return;
        }
    }
    if (loop->ngaps == GAP_TABLE_MAX) {
        /* many epochs seen: forget the old ones rather than grow */
        for (size_t i = 0; i < loop->ngaps; i++)
            free(loop->gaps[i].key);
        loop->ngaps = 0;
    }
    char *key = malloc(kl ? kl : 1);
    if (!key)
        return;
    memcpy(key, epoch, el);
    memcpy(key + el, topic, tl);
    loop->gaps[loop->ngaps++] = (gap_entry_t){key, el, kl, seq};
}

/*  Hands an event to the listeners: one job per accepting listener with a
    callback, on the shared queue or (STREAM order) on the queue of the
    worker its partition key hashes to. */
static void
dispatch(dfc_loop_t *loop, dfc_event_t *ev, track_t *trk)
{
    int qi = 0;
    if (loop->nq > 1) {
        size_t kl;
        const char *key = dfc_event_partition_key(ev, &kl);
        uint64_t h = dfc_fnv1a64(key, kl);
        /* remix: a group member only sees keys with one FNV value modulo
           members, which must still spread over its workers */
        h ^= h >> 31;
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        qi = (int)(h % (uint64_t)loop->nq);
    }
    pthread_mutex_lock(&loop->mu);
    if (!dfc_event_is_known(ev))
        loop->stats.unknown_type++;
    size_t n = 0;
    for (lrec_t *lr = loop->listeners; lr; lr = lr->next)
        n++;
    if (n > loop->snap_cap) {
        lrec_t **grown = realloc(loop->snap, n * sizeof *grown);
        if (!grown) {
            if (trk) {
                trk->failed = true;
                track_release(loop, trk);
            }
            pthread_mutex_unlock(&loop->mu);
            dfc_log(DFC_LOG_ERROR, "out of memory: event dropped");
            return;
        }
        loop->snap = grown;
        loop->snap_cap = n;
    }
    n = 0;
    for (lrec_t *lr = loop->listeners; lr; lr = lr->next) {
        lr->refs++;
        loop->snap[n++] = lr;
    }
    pthread_mutex_unlock(&loop->mu);

    const dfc_initiator_t *init = dfc_event_initiator(ev);
    int64_t bot = dfc_event_bot(ev);
    bool stopping = false;
    for (size_t i = 0; i < n; i++) {
        lrec_t *lr = loop->snap[i];
        if (stopping) {
            pthread_mutex_lock(&loop->mu);
            loop->stats.dropped_at_stop++;
            pthread_mutex_unlock(&loop->mu);
            continue;
        }
        /* The filter runs user code with the listener's ctx: it counts as
           running, so that unsubscribe waits for it like for a callback
           (and a listener removed meanwhile is not asked at all). */
        pthread_mutex_lock(&loop->mu);
        bool removed = lr->removed;
        if (!removed)
            lr->running++;
        pthread_mutex_unlock(&loop->mu);
        if (removed)
            continue;
        tl_current = lr; /* unsubscribing itself from its filter must not wait */
        bool accept = lr->l.is_accepting_event ? lr->l.is_accepting_event(lr->l.ctx, ev, init, bot)
                                               : dfc_default_is_accepting(lr->l.ctx, ev, init, bot);
        tl_current = NULL;
        pthread_mutex_lock(&loop->mu);
        if (--lr->running == 0)
            pthread_cond_broadcast(&loop->idle);
        if (!accept)
            loop->stats.filtered++;
        else if (!lr->removed && dfc_event_has_callback(ev, &lr->l) &&
                 !enqueue(loop, qi, ev, lr, trk)) {
            stopping = true;
            loop->stats.dropped_at_stop++;
            if (trk)
                trk->failed = true; /* not handled: the checkpoint must not pass it */
        }
        pthread_mutex_unlock(&loop->mu);
    }
    pthread_mutex_lock(&loop->mu);
    for (size_t i = 0; i < n; i++)
        lrec_unref(loop->snap[i]);
    if (trk)
        track_release(loop, trk);
    pthread_mutex_unlock(&loop->mu);
}

/*  The last step for every event, live or replayed: lag, dedupe, group
    filter, then dispatch. Skipped events still count as handled for the
    watermark. */
static void
deliver(dfc_loop_t *loop, dfc_event_t *ev)
{
    uint64_t now = wall_ms(), ts = dfc_event_ts(ev);
    size_t idl, tl;
    const char *id = dfc_event_id_n(ev, &idl), *type = dfc_event_type_n(ev, &tl);
    bool done = false;
    if (loop->ckpt_path) { /* handled before a restart, above the watermark */
        pthread_mutex_lock(&loop->mu);
        size_t el;
        const char *epoch = dfc_event_epoch_n(ev, &el);
        wm_t *w = wm_get(loop, epoch, el, false);
        uint64_t g = dfc_event_gseq(ev);
        done = w && w->ndone && bsearch(&g, w->done, w->ndone, sizeof g, cmp_u64);
        pthread_mutex_unlock(&loop->mu);
    }
    bool dup = loop->dedupe && id && dfc_dedupe_seen(loop->dedupe, id, idl, type ? type : "", tl);
    dup = dup || done;
    bool mine = true;
    if (!dup && loop->cfg.members > 1) {
        size_t kl;
        const char *key = dfc_event_partition_key(ev, &kl);
        mine = dfc_partition(key, kl, (uint32_t)loop->cfg.members) == (uint32_t)loop->cfg.member;
    }
    pthread_mutex_lock(&loop->mu);
    loop->stats.lag_ms = now > ts ? now - ts : 0;
    if (dup)
        loop->stats.duplicates++;
    else if (!mine)
        loop->stats.not_mine++;
    track_t *trk = track_new(loop, ev);
    if (dup || !mine) {
        if (trk)
            track_release(loop, trk);
        pthread_mutex_unlock(&loop->mu);
        return;
    }
    pthread_mutex_unlock(&loop->mu);
    dispatch(loop, ev, trk);
}

/*  Counts a refused message under its reason (and in dropped_malformed). */
static void
drop_count(dfc_loop_t *loop, dfc_msg_status_t st)
{
    pthread_mutex_lock(&loop->mu);
    uint64_t *reason[] = {NULL,
                          &loop->stats.bad_frames,
                          &loop->stats.oversize,
                          &loop->stats.bad_msgpack,
                          &loop->stats.not_map,
                          &loop->stats.bad_version,
                          &loop->stats.bad_envelope,
                          &loop->stats.bad_event,
                          NULL};
    if ((size_t)st < sizeof reason / sizeof reason[0] && reason[st])
        (*reason[st])++;
    loop->stats.dropped_malformed++;
    pthread_mutex_unlock(&loop->mu);
}

static void
drop(dfc_loop_t *loop, dfc_msg_status_t st, size_t size)
{
    drop_count(loop, st);
    dfc_log(DFC_LOG_WARN, "dropped a message (%zu bytes): %s", size, dfc_msg_status_str(st));
}

/* ------------------------------------------------------ delivery per link */

/*  Ordered delivery (gseq order, fills, duplicates by gseq) is on for a
    bridge once there is something to fill from or resume to: a replay
    endpoint, a checkpoint or from_gseq. Without it the loop hands every
    message out as it comes (the spine's behaviour). */
static bool
link_ordered(const dfc_loop_t *loop, const link_t *L)
{
    return L->replay || loop->ckpt_path || loop->cfg.from_gseq;
}

static void
range_add(link_t *L, uint64_t lo, uint64_t hi)
{
    if (lo > hi)
        return;
    if (L->nranges && L->ranges[L->nranges - 1].hi + 1 >= lo) {
        if (hi > L->ranges[L->nranges - 1].hi)
            L->ranges[L->nranges - 1].hi = hi;
        return;
    }
    if (L->nranges == L->ranges_cap) {
        size_t cap = L->ranges_cap ? L->ranges_cap * 2 : 16;
        range_t *grown = cap <= MAX_RANGES ? realloc(L->ranges, cap * sizeof *grown) : NULL;
        if (!grown) { /* bounded: stretch the last one (gaps_filled may over-count) */
            if (L->nranges)
                L->ranges[L->nranges - 1].hi = hi;
            return;
        }
        L->ranges = grown;
        L->ranges_cap = cap;
    }
    L->ranges[L->nranges++] = (range_t){lo, hi};
}

/*  True when gseq g was known missing; forgets ranges below g. */
static bool
range_hit(link_t *L, uint64_t g)
{
    size_t k = 0;
    while (k < L->nranges && L->ranges[k].hi < g)
        k++;
    if (k) {
        memmove(L->ranges, L->ranges + k, (L->nranges - k) * sizeof(range_t));
        L->nranges -= k;
    }
    return L->nranges && L->ranges[0].lo <= g;
}

static void
dealer_close(link_t *L)
{
    if (L->dealer)
        zmq_close(L->dealer);
    L->dealer = NULL;
    free(L->dealer_ep);
    L->dealer_ep = NULL;
}

static bool
dealer_open(dfc_loop_t *loop, link_t *L)
{
    if (L->dealer && L->dealer_ep && strcmp(L->dealer_ep, L->replay) == 0)
        return true;
    dealer_close(L);
    L->dealer = zmq_socket(loop->zctx, ZMQ_DEALER);
    int linger = 0, hwm = 0; /* replies are bounded by the limit: never drop them */
    int64_t maxsize = (int64_t)loop->cfg.max_frame + DFC_MAX_TOPIC;
    if (!L->dealer || zmq_setsockopt(L->dealer, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(L->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(L->dealer, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize) ||
        zmq_connect(L->dealer, L->replay) != 0) {
        dfc_log(DFC_LOG_ERROR, "replay %s: %s", L->replay, zmq_strerror(errno));
        if (L->dealer)
            zmq_close(L->dealer);
        L->dealer = NULL;
        return false;
    }
    L->dealer_ep = strdup(L->replay);
    return true;
}

/*  Gives up on what the fill still misses: counted lost, then the held live
    events go out. */
static void
fill_give_up(dfc_loop_t *loop, link_t *L, const char *why)
{
    /* Without an answer nothing confirms a heartbeat's claim: trust it only
       DFC_GSEQ_AHEAD beyond what was received (see gseq_plausible). */
    uint64_t proof = (L->seen > L->hw ? L->seen : L->hw);
    if (L->target > proof && L->target - proof > DFC_GSEQ_AHEAD)
        L->target = proof + DFC_GSEQ_AHEAD;
    uint64_t missing = L->target > L->hw ? L->target - L->hw : 0;
    if (missing) {
        stat_add(loop, &loop->stats.lost, missing);
        dfc_log(DFC_LOG_WARN, "%s: %llu message(s) of epoch %s lost (gseq %llu..%llu): %s",
                L->endpoint, (unsigned long long)missing, L->epoch, (unsigned long long)L->hw + 1,
                (unsigned long long)L->target, why);
        L->hw = L->target;
    }
    /* everything held goes out now, holes counted lost: asking again for
       them would fail the same way (and recurse) */
    link_release_held(loop, L, true);
}

/*  Answers keep asking for more without delivering anything (a "more"
    that does not advance, a "gone" whose oldest walks forward): asking
    again would never end. */
static void
fill_stalled(dfc_loop_t *loop, link_t *L)
{
    stat_add(loop, &loop->stats.replay_stalls, 1);
    fill_give_up(loop, L, "the replay answers make no progress");
}

static void
fill_send(dfc_loop_t *loop, link_t *L)
{
    L->sent = false;
    L->answer_events = 0;
    L->deadline = mono_ms() + loop->cfg.replay_timeout_ms;
    if (!L->replay) {
        /* a heartbeat said the bridge has no replay: nothing to wait for */
        if (L->hb_seen)
            fill_give_up(loop, L, "the bridge has no replay endpoint");
        return; /* else the first heartbeat may name one; the deadline bounds the wait */
    }
    if (!dealer_open(loop, L)) {
        fill_give_up(loop, L, "cannot open the replay socket");
        return;
    }
    unsigned char buf[512];
    size_t n =
        dfc_replay_request(buf, sizeof buf, ++L->req, L->epoch, L->epoch_len, L->hw + 1,
                           REPLAY_LIMIT, NULL, 0);
    if (n == 0 || zmq_send(L->dealer, buf, n, ZMQ_DONTWAIT) != (int)n) {
        dfc_log(DFC_LOG_WARN, "replay %s: cannot send the request", L->replay);
        return; /* the deadline retries */
    }
    L->sent = true;
    stat_add(loop, &loop->stats.replay_requests, 1);
    dfc_log(DFC_LOG_DEBUG, "replay %s: from gseq %llu (epoch %s)", L->replay,
            (unsigned long long)L->hw + 1, L->epoch);
}

static void
fill_start(dfc_loop_t *loop, link_t *L, uint64_t target)
{
    if (L->filling) {
        if (target > L->target)
            L->target = target;
        return;
    }
    L->filling = true;
    L->target = target;
    L->tries = 0;
    L->stalls = 0;
    fill_send(loop, L);
}

/*  Releases held events in gseq order: older ones are dropped (replay gave
    them), the next one goes out, a hole starts another fill (force: hand
    everything out, holes counted lost). */
static void
link_release_held(dfc_loop_t *loop, link_t *L, bool force)
{
    L->filling = false;
    size_t i = 0;
    for (; i < L->nheld; i++) {
        dfc_event_t *ev = L->held[i];
        uint64_t g = dfc_event_gseq(ev);
        if (g > L->hw + 1 && !force)
            break;
        if (g > L->hw) {
            if (g > L->hw + 1)
                stat_add(loop, &loop->stats.lost, g - L->hw - 1);
            L->hw = g;
            deliver(loop, ev);
        }
        dfc_event_unref(ev);
    }
    if (i && i < L->nheld)
        memmove(L->held, L->held + i, (L->nheld - i) * sizeof *L->held);
    L->nheld -= i;
    if (L->nheld)
        fill_start(loop, L, dfc_event_gseq(L->held[0]) - 1);
}

static void
hold(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    uint64_t g = dfc_event_gseq(ev);
    if (L->nheld == loop->cfg.max_held) {
        /* too many: let replay bring it (the journal has it) */
        if (g > L->target)
            L->target = g;
        stat_add(loop, &loop->stats.held_dropped, 1);
        return;
    }
    if (L->nheld == L->held_cap) {
        size_t cap = L->held_cap ? L->held_cap * 2 : 64;
        if (cap > loop->cfg.max_held)
            cap = loop->cfg.max_held;
        dfc_event_t **grown = dfc_realloc(L->held, cap * sizeof *grown);
        if (!grown) {
            if (g > L->target)
                L->target = g;
            pthread_mutex_lock(&loop->mu);
            loop->stats.held_dropped++;
            loop->stats.alloc_failures++;
            pthread_mutex_unlock(&loop->mu);
            dfc_log(DFC_LOG_ERROR, "out of memory: live gseq %llu not held (replay brings it)",
                    (unsigned long long)g);
            return;
        }
        L->held = grown;
        L->held_cap = cap;
    }
    dfc_event_ref(ev);
    L->held[L->nheld++] = ev;
}

/*  A new epoch on this bridge (first message or heartbeat, or the bridge
    lost its journal): set the baseline. head is the newest gseq known to
    exist (the message's gseq - 1, or the heartbeat's gseq). The checkpoint,
    then from_gseq (first epoch only), decide where to resume; an epoch that
    follows another is new as a whole (replayed from 1); otherwise live. */
static void
link_new_epoch(dfc_loop_t *loop, link_t *L, const char *epoch, size_t el, uint64_t head)
{
    if (L->filling || L->nheld) {
        L->target = L->hw; /* what the old epoch still missed stays counted in gaps */
        link_release_held(loop, L, true);
    }
    if (L->dealer)
        dealer_close(L); /* stale replies of the old epoch must not reach the new one */
    L->had_epoch = L->has_epoch;
    L->has_epoch = true;
    memcpy(L->epoch, epoch, el); /* el < DFC_EPOCH_MAX: checked on receipt */
    L->epoch[el] = '\0';
    L->epoch_len = el;
    L->nranges = 0;
    L->live_last = head;
    L->seen = 0;
    L->hb_known = false;
    bool ordered = link_ordered(loop, L);
    uint64_t base = head;
    pthread_mutex_lock(&loop->mu);
    wm_t *w = loop->ckpt_path ? wm_get(loop, epoch, el, false) : NULL;
    if (w) {
        base = w->gseq;
    } else if (ordered) {
        if (!L->had_epoch && loop->cfg.from_gseq && !L->from_used)
            base = loop->cfg.from_gseq - 1;
        else if (L->had_epoch)
            base = 0;
        if (loop->ckpt_path && (w = wm_get(loop, epoch, el, true)) != NULL) {
            w->gseq = base;
            loop->ckpt_dirty = true;
        }
    }
    pthread_mutex_unlock(&loop->mu);
    L->from_used = true;
    L->hw = base;
    dfc_log(DFC_LOG_INFO, "%s: epoch %s, resuming after gseq %llu (newest %llu)", L->endpoint,
            epoch, (unsigned long long)base, (unsigned long long)head);
    if (ordered && base < head)
        fill_start(loop, L, head);
}

static bool
link_same_epoch(const link_t *L, const char *epoch, size_t el)
{
    return L->has_epoch && L->epoch_len == el && memcmp(L->epoch, epoch, el) == 0;
}

/*  Whether a live message's seq and gseq can be right (consumers/README.md,
    "Numbers that cannot be right"): both at most DFC_SEQ_MAX, and, once a
    heartbeat of its epoch was accepted on this link, the gseq at most
    DFC_GSEQ_AHEAD above the highest gseq known (announced, received or
    handled). A message of another epoch starts that epoch: no bound. */
static bool
gseq_plausible(const link_t *L, const dfc_event_t *ev)
{
    uint64_t g = dfc_event_gseq(ev);
    if (g > DFC_SEQ_MAX || dfc_event_seq(ev) > DFC_SEQ_MAX)
        return false;
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    if (!L->hb_known || !link_same_epoch(L, epoch, el))
        return true;
    uint64_t known = L->live_last > L->hw ? L->live_last : L->hw;
    return g <= known || g - known <= DFC_GSEQ_AHEAD;
}

static void
on_live(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    uint64_t g = dfc_event_gseq(ev);
    if (!link_same_epoch(L, epoch, el))
        link_new_epoch(loop, L, epoch, el, g ? g - 1 : 0);
    if (g > L->seen)
        L->seen = g;
    if (!link_ordered(loop, L)) {
        if (g > L->hw)
            L->hw = g;
        if (g > L->live_last)
            L->live_last = g;
        deliver(loop, ev);
        return;
    }
    if (g > L->live_last + 1)
        range_add(L, (L->live_last > L->hw ? L->live_last : L->hw) + 1, g - 1);
    if (g > L->live_last)
        L->live_last = g;
    if (g <= L->hw)
        return; /* replay gave it already */
    if (L->filling) {
        hold(loop, L, ev);
        return;
    }
    if (g == L->hw + 1) {
        L->hw = g;
        deliver(loop, ev);
        return;
    }
    hold(loop, L, ev);
    fill_start(loop, L, g - 1);
}

/*  "_hb": {v, epoch, gseq, seqs{topic: seq}, ts, interval, replay}. */
static void
on_heartbeat(dfc_loop_t *loop, link_t *L, const void *body, size_t len)
{
    dfc_doc_t *doc = NULL;
    if (dfc_doc_parse(body, len, &doc) != DFC_OK) {
        drop(loop, DFC_MSG_BAD_MSGPACK, len);
        return;
    }
    const dfc_value_t *root = dfc_doc_root(doc);
    const dfc_value_t *ep = dfc_value_find(root, "epoch"), *seqs = dfc_value_find(root, "seqs");
    const dfc_value_t *rp = dfc_value_find(root, "replay");
    uint64_t gseq = 0, interval = 0, v = 0;
    if (dfc_value_type(root) != DFC_MAP || dfc_value_uint64(dfc_value_find(root, "v"), &v) ||
        v > DFC_WIRE_VERSION || dfc_value_type(ep) != DFC_STR ||
        dfc_value_uint64(dfc_value_find(root, "gseq"), &gseq)) {
        dfc_doc_destroy(&doc);
        drop(loop, DFC_MSG_BAD_ENVELOPE, len);
        return;
    }
    dfc_value_uint64(dfc_value_find(root, "interval"), &interval);
    size_t el = 0;
    const char *epoch = dfc_value_str(ep, &el);
    bool absurd = gseq > DFC_SEQ_MAX;
    for (size_t i = 0; dfc_value_type(seqs) == DFC_MAP && i < dfc_value_size(seqs); i++) {
        uint64_t s;
        if (dfc_value_uint64(dfc_value_item_at(seqs, i), &s) == 0 && s > DFC_SEQ_MAX)
            absurd = true;
    }
    if (el >= DFC_EPOCH_MAX || absurd) {
        dfc_doc_destroy(&doc);
        drop(loop, DFC_MSG_BAD_ENVELOPE, len);
        return;
    }
    stat_add(loop, &loop->stats.heartbeats, 1);
    L->hb_seen = true;
    L->hb_interval = interval;
    if (!L->replay_cfg && (rp == NULL || dfc_value_type(rp) == DFC_STR)) {
        size_t rl = 0;
        const char *r = rp ? dfc_value_str(rp, &rl) : NULL;
        if (rl == 0 || rl > 1024 || memchr(r, '\0', rl))
            r = NULL;
        if (!r != !L->replay || (r && strcmp(r, L->replay) != 0)) {
            free(L->replay);
            L->replay = r ? strdup(r) : NULL;
            dfc_log(DFC_LOG_INFO, "%s: replay endpoint %s (from the heartbeat)", L->endpoint,
                    L->replay ? L->replay : "none");
        }
    }
    /* the last messages of each topic: a higher seq means we missed them */
    for (size_t i = 0; dfc_value_type(seqs) == DFC_MAP && i < dfc_value_size(seqs); i++) {
        size_t tl;
        const char *t = dfc_value_str(dfc_value_key_at(seqs, i), &tl);
        uint64_t s;
        if (t && tl <= DFC_MAX_TOPIC && dfc_value_uint64(dfc_value_item_at(seqs, i), &s) == 0)
            count_gap(loop, epoch, el, t, tl, s, true);
    }
    if (!link_same_epoch(L, epoch, el)) {
        link_new_epoch(loop, L, epoch, el, gseq);
        L->hb_known = true;
    } else if (link_ordered(loop, L)) {
        if (gseq > L->live_last) {
            range_add(L, (L->live_last > L->hw ? L->live_last : L->hw) + 1, gseq);
            L->live_last = gseq;
        }
        if (L->filling) {
            if (gseq > L->target)
                L->target = gseq;
            if (!L->sent)
                fill_send(loop, L); /* it may have been waiting for the endpoint */
        } else if (gseq > L->hw) {
            dfc_log(DFC_LOG_INFO, "%s: heartbeat at gseq %llu, last seen %llu: filling",
                    L->endpoint, (unsigned long long)gseq, (unsigned long long)L->hw);
            fill_start(loop, L, gseq);
        }
    }
    L->hb_known = true;
    dfc_doc_destroy(&doc);
}

/*  "_end": {v, req, status, count, last_gseq, more, head_gseq, oldest_gseq,
    epoch, code, error}. */
static void
on_replay_end(dfc_loop_t *loop, link_t *L, const void *body, size_t len)
{
    dfc_doc_t *doc = NULL;
    if (dfc_doc_parse(body, len, &doc) != DFC_OK) {
        dfc_log(DFC_LOG_WARN, "replay %s: malformed end marker", L->replay);
        return;
    }
    const dfc_value_t *root = dfc_doc_root(doc);
    uint64_t req = 0, last = 0, oldest = 0;
    const char *status = dfc_value_cstr(dfc_value_find(root, "status"));
    const char *code = dfc_value_cstr(dfc_value_find(root, "code"));
    const char *err = dfc_value_cstr(dfc_value_find(root, "error"));
    bool more = dfc_value_bool(dfc_value_find(root, "more"));
    uint64_t head = 0;
    bool has_head = dfc_value_uint64(dfc_value_find(root, "head_gseq"), &head) == 0;
    dfc_value_uint64(dfc_value_find(root, "last_gseq"), &last);
    dfc_value_uint64(dfc_value_find(root, "oldest_gseq"), &oldest);
    if (dfc_value_uint64(dfc_value_find(root, "req"), &req) || req != L->req || !L->filling) {
        dfc_doc_destroy(&doc); /* an answer to a request we gave up */
        return;
    }
    /* A marker that contradicts itself cannot be right: ignored, so the
       deadline asks again (and gives up after REPLAY_TRIES). */
    if (last > DFC_SEQ_MAX || head > DFC_SEQ_MAX || oldest > DFC_SEQ_MAX ||
        (has_head && last > head)) {
        dfc_doc_destroy(&doc);
        drop(loop, DFC_MSG_BAD_ENVELOPE, len);
        return;
    }
    L->sent = false;
    bool progress = L->answer_events > 0;
    if (progress)
        L->stalls = 0;
    if (status && strcmp(status, "ok") == 0) {
        /* whatever it sent and we could not use (malformed) is lost */
        if (last > L->hw) {
            stat_add(loop, &loop->stats.lost, last - L->hw);
            L->hw = last;
        }
        if (more && !progress && ++L->stalls >= REPLAY_STALLS) {
            fill_stalled(loop, L);
        } else if (more) {
            L->tries = 0;
            fill_send(loop, L);
        } else {
            /* The answer runs to the journal's head: a target above both
               the head and every gseq received was claimed (by a heartbeat)
               and cannot be right. Not a loss; the mark stays below it. */
            uint64_t confirmed = has_head && head > L->seen ? head : L->seen;
            if (confirmed < L->hw)
                confirmed = L->hw;
            if (L->target > confirmed) {
                dfc_log(DFC_LOG_WARN,
                        "%s: gseq %llu was announced but replay's head is %llu: dropped as a "
                        "bad envelope",
                        L->endpoint, (unsigned long long)L->target, (unsigned long long)head);
                drop_count(loop, DFC_MSG_BAD_ENVELOPE);
                L->target = confirmed;
                if (L->live_last > confirmed)
                    L->live_last = confirmed;
            }
            fill_give_up(loop, L, "not in the journal");
        }
    } else {
        stat_add(loop, &loop->stats.replay_errors, 1);
        if (code && strcmp(code, "gone") == 0 && oldest > L->hw + 1) {
            uint64_t upto = oldest - 1 < L->target ? oldest - 1 : L->target;
            uint64_t target = L->target;
            L->target = upto;
            char why[64];
            snprintf(why, sizeof why, "gone (oldest retained %llu)", (unsigned long long)oldest);
            /* counted lost up to oldest-1, then go on from there */
            uint64_t missing = upto - L->hw;
            stat_add(loop, &loop->stats.lost, missing);
            dfc_log(DFC_LOG_WARN, "%s: %llu message(s) lost: %s", L->endpoint,
                    (unsigned long long)missing, why);
            L->hw = upto;
            L->target = target;
            L->tries = 0;
            if (!progress && ++L->stalls >= REPLAY_STALLS)
                fill_stalled(loop, L);
            else
                fill_send(loop, L);
        } else {
            char why[256];
            snprintf(why, sizeof why, "replay error %s: %s", code ? code : "?", err ? err : "");
            fill_give_up(loop, L, why);
        }
    }
    dfc_doc_destroy(&doc);
}

/*  One replayed message (same framing as published). */
static void
on_replayed(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    uint64_t g = dfc_event_gseq(ev);
    L->deadline = mono_ms() + loop->cfg.replay_timeout_ms; /* it is answering */
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    if (!L->filling || !link_same_epoch(L, epoch, el) || g <= L->hw)
        return;
    if (g > L->hw + 1)
        stat_add(loop, &loop->stats.lost, g - L->hw - 1); /* the journal has a hole */
    L->hw = g;
    if (g > L->seen)
        L->seen = g;
    L->answer_events++;
    pthread_mutex_lock(&loop->mu);
    loop->stats.replayed++;
    pthread_mutex_unlock(&loop->mu);
    if (range_hit(L, g))
        stat_add(loop, &loop->stats.gaps_filled, 1);
    deliver(loop, ev);
}

int
dfc_msg_read(void *s, zmq_msg_t parts[2], size_t *nparts, size_t *total)
{
    zmq_msg_init(&parts[0]);
    zmq_msg_init(&parts[1]);
    *nparts = 0;
    *total = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp, *m = *nparts < 2 ? &parts[*nparts] : &tmp;
        if (m == &tmp)
            zmq_msg_init(&tmp);
        if (zmq_msg_recv(m, s, *nparts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int err = errno;
            if (m == &tmp)
                zmq_msg_close(&tmp);
            zmq_msg_close(&parts[0]);
            zmq_msg_close(&parts[1]);
            if (*nparts == 0 && (err == EAGAIN || err == EINTR))
                return 0;
            errno = err;
            return -1;
        }
        more = zmq_msg_more(m);
        *total += zmq_msg_size(m);
        (*nparts)++;
        if (m == &tmp)
            zmq_msg_close(&tmp); /* extra frames are only counted */
    }
    return 1;
}

bool
dfc_msg_is(const zmq_msg_t *m, const char *name)
{
    size_t n = strlen(name);
    return zmq_msg_size((zmq_msg_t *)m) == n && memcmp(zmq_msg_data((zmq_msg_t *)m), name, n) == 0;
}

/*  One message from a bridge's SUB socket. Returns like dfc_msg_read. */
static int
receive_one(dfc_loop_t *loop, link_t *L)
{
    zmq_msg_t parts[2];
    size_t nparts, total;
    int r = dfc_msg_read(L->sub, parts, &nparts, &total);
    if (r <= 0)
        return r;
    L->last_rx = mono_ms();
    L->strikes = 0;
    /* "_" topics are the bridge's own (heartbeat, status...): the contract
       says readers that do not know them ignore them */
    bool reserved =
        zmq_msg_size(&parts[0]) > 0 && ((const char *)zmq_msg_data(&parts[0]))[0] == '_';
    pthread_mutex_lock(&loop->mu);
    loop->stats.received++;
    if (reserved)
        loop->stats.reserved++;
    pthread_mutex_unlock(&loop->mu);
    if (reserved) {
        if (nparts == 2 && dfc_msg_is(&parts[0], "_hb"))
            on_heartbeat(loop, L, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]));
        zmq_msg_close(&parts[0]);
        zmq_msg_close(&parts[1]);
        return 1;
    }
    dfc_msg_status_t st = DFC_MSG_BAD_FRAMES;
    dfc_event_t *ev = NULL;
    if (dfc_frames_check(nparts, zmq_msg_size(&parts[0])) == DFC_MSG_OK)
        ev =
            dfc_event_new(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), zmq_msg_data(&parts[1]),
                          zmq_msg_size(&parts[1]), loop->cfg.max_frame, &st);
    /* the event copied what it needs: the frames can go now */
    zmq_msg_close(&parts[0]);
    zmq_msg_close(&parts[1]);
    if (!ev) {
        drop(loop, st, total);
        return 1;
    }
    size_t tl, el;
    const char *topic = dfc_event_topic_n(ev, &tl), *epoch = dfc_event_epoch_n(ev, &el);
    /* an epoch that cannot be tracked, or a seq/gseq that cannot be right */
    if (el >= DFC_EPOCH_MAX || !gseq_plausible(L, ev)) {
        dfc_event_unref(ev);
        drop(loop, DFC_MSG_BAD_ENVELOPE, total);
        return 1;
    }
    count_gap(loop, epoch, el, topic, tl, dfc_event_seq(ev), false);
    on_live(loop, L, ev);
    dfc_event_unref(ev);
    return 1;
}

/*  One message from a bridge's replay DEALER. */
static int
replay_one(dfc_loop_t *loop, link_t *L)
{
    zmq_msg_t parts[2];
    size_t nparts, total;
    int r = dfc_msg_read(L->dealer, parts, &nparts, &total);
    if (r <= 0)
        return r;
    if (nparts == 2 && dfc_msg_is(&parts[0], "_end")) {
        on_replay_end(loop, L, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]));
    } else {
        dfc_msg_status_t st = DFC_MSG_BAD_FRAMES;
        dfc_event_t *ev = NULL;
        if (dfc_frames_check(nparts, zmq_msg_size(&parts[0])) == DFC_MSG_OK)
            ev = dfc_event_new(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
                               zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]),
                               loop->cfg.max_frame, &st);
        if (ev && (dfc_event_seq(ev) > DFC_SEQ_MAX || dfc_event_gseq(ev) > DFC_SEQ_MAX)) {
            dfc_event_unref(ev);
            ev = NULL;
            st = DFC_MSG_BAD_ENVELOPE;
        }
        if (ev) {
            on_replayed(loop, L, ev);
            dfc_event_unref(ev);
        } else {
            drop(loop, st, total);
        }
    }
    zmq_msg_close(&parts[0]);
    zmq_msg_close(&parts[1]);
    return 1;
}

/*  A socket monitor on a SUB: connects and disconnects become counters and
    log lines, so a dead link or a peer dropped by ZMQ_MAXMSGSIZE is visible.
    Returns the PAIR end to poll, or NULL (then we run without it). */
static void *
open_monitor(dfc_loop_t *loop, void *sub)
{
    static atomic_uint serial;
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://dfc-monitor-%p-%u", (void *)loop,
             atomic_fetch_add(&serial, 1));
    if (zmq_socket_monitor(sub, ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
        return NULL;
    void *pair = zmq_socket(loop->zctx, ZMQ_PAIR);
    int linger = 0;
    if (pair &&
        (zmq_setsockopt(pair, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(pair, ep) != 0)) {
        zmq_close(pair);
        pair = NULL;
    }
    if (!pair) {
        zmq_socket_monitor(sub, NULL, 0);
        dfc_log(DFC_LOG_WARN, "no socket monitor: connects/disconnects not counted");
    }
    return pair;
}

/*  libzmq 4.3 treats a message above ZMQ_MAXMSGSIZE as a protocol error and
    then drops the connection WITHOUT reconnecting: the SUB would go deaf for
    good. So after any disconnect of the bridge's endpoint we connect it
    again ourselves (for an ordinary connection loss this only replaces
    libzmq's own reconnect). The monitor reports the address as connected, so
    this works for endpoints given in that form (tcp://127.0.0.1:5556). */
static void
reconnect(link_t *L, const char *addr)
{
    if (strcmp(L->endpoint, addr) != 0) {
        dfc_log(DFC_LOG_WARN,
                "disconnected from %s: not reconnected by us (connect it by "
                "its numeric address for that)",
                addr);
        return;
    }
    zmq_disconnect(L->sub, addr); /* may already be gone: ignore */
    if (zmq_connect(L->sub, addr) != 0)
        dfc_log(DFC_LOG_ERROR, "cannot reconnect %s: %s", addr, zmq_strerror(errno));
    else
        dfc_log(DFC_LOG_WARN, "disconnected from %s: reconnecting", addr);
}

/*  Reads the monitor's events: frame 1 = uint16 event + uint32 value,
    frame 2 = the endpoint. */
static void
read_monitor(dfc_loop_t *loop, link_t *L)
{
    for (int i = 0; i < 64; i++) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, L->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t id = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&id, zmq_msg_data(&ev), 2);
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        char ep[256] = "";
        if (more) {
            zmq_msg_init(&addr);
            if (zmq_msg_recv(&addr, L->mon, 0) >= 0) {
                size_t n =
                    zmq_msg_size(&addr) < sizeof ep - 1 ? zmq_msg_size(&addr) : sizeof ep - 1;
                memcpy(ep, zmq_msg_data(&addr), n);
                ep[n] = '\0';
            }
            zmq_msg_close(&addr);
        }
        pthread_mutex_lock(&loop->mu);
        if (id == ZMQ_EVENT_CONNECTED)
            loop->stats.connects++;
        else if (id == ZMQ_EVENT_DISCONNECTED)
            loop->stats.disconnects++;
        pthread_mutex_unlock(&loop->mu);
        if (id == ZMQ_EVENT_CONNECTED)
            dfc_log(DFC_LOG_INFO, "connected to %s", ep);
        else if (id == ZMQ_EVENT_DISCONNECTED)
            reconnect(L, ep);
    }
}

static void *
open_sub(dfc_loop_t *loop)
{
    void *sub = zmq_socket(loop->zctx, ZMQ_SUB);
    if (!sub)
        return NULL;
    int hwm = loop->cfg.rcvhwm, linger = 0;
    /* libzmq drops bigger frames on tcp before we see them; inproc is
       checked again in dfc_event_new */
    int64_t maxsize = loop->cfg.max_frame > (size_t)INT64_MAX - 4096
                          ? -1
                          : (int64_t)loop->cfg.max_frame + DFC_MAX_TOPIC;
    if (zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(sub, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize) ||
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0)) {
        zmq_close(sub);
        return NULL;
    }
    return sub;
}

static void
link_close_sub(link_t *L)
{
    if (L->mon) {
        zmq_socket_monitor(L->sub, NULL, 0);
        zmq_close(L->mon);
        L->mon = NULL;
    }
    if (L->sub)
        zmq_close(L->sub);
    L->sub = NULL;
}

/*  Opens the link's SUB (and monitor) and connects it. */
static int
link_open_sub(dfc_loop_t *loop, link_t *L)
{
    L->sub = open_sub(loop);
    if (!L->sub) {
        dfc_log(DFC_LOG_ERROR, "cannot open a SUB socket: %s", zmq_strerror(errno));
        return DFC_EZMQ;
    }
    L->mon = open_monitor(loop, L->sub);
    L->last_rx = mono_ms();
    if (zmq_connect(L->sub, L->endpoint) != 0) {
        dfc_log(DFC_LOG_ERROR, "cannot connect %s: %s", L->endpoint, zmq_strerror(errno));
        return DFC_OK; /* counted as a dead link: stays silent */
    }
    dfc_log(DFC_LOG_DEBUG, "connected %s", L->endpoint);
    return DFC_OK;
}

/*  Opens the links added since the last call. Out of memory: nothing is
    opened, the next timer tick tries again (connect_retry). */
static void
connect_pending(dfc_loop_t *loop)
{
    pthread_mutex_lock(&loop->mu);
    loop->connect_retry = false;
    if (loop->nlinks > loop->rl_cap) {
        link_t **grown = dfc_realloc(loop->rl, loop->nlinks * sizeof *grown);
        if (!grown) {
            size_t n = loop->nlinks - loop->nopened;
            loop->stats.alloc_failures++;
            loop->connect_retry = true;
            pthread_mutex_unlock(&loop->mu);
            dfc_log(DFC_LOG_ERROR, "out of memory: %zu bridge link(s) not opened, retrying", n);
            return;
        }
        loop->rl = grown;
        loop->rl_cap = loop->nlinks;
    }
    size_t i = 0;
    for (link_t *L = loop->links; L; L = L->next, i++)
        loop->rl[i] = L;
    size_t from = loop->nopened;
    loop->nopened = loop->nlinks;
    pthread_mutex_unlock(&loop->mu);
    for (i = from; i < loop->nopened; i++)
        link_open_sub(loop, loop->rl[i]);
}

/*  Staleness and replay deadlines, for every bridge. */
static void
link_timers(dfc_loop_t *loop, link_t *L, int64_t now)
{
    int64_t stale = loop->cfg.stale_ms > 0 ? loop->cfg.stale_ms
                    : loop->cfg.stale_ms == 0 && L->hb_interval
                        ? 3 * (int64_t)(L->hb_interval < INT32_MAX ? L->hb_interval : INT32_MAX)
                        : 0;
    /* a bridge that stays silent (dead) is retried less and less often:
       3 x interval, then x2 per attempt up to x32 */
    if (stale && L->sub && now - L->last_rx > stale << (L->strikes < 5 ? L->strikes : 5)) {
        dfc_log(L->strikes ? DFC_LOG_DEBUG : DFC_LOG_WARN,
                "%s: no message and no heartbeat for %lld ms: new SUB socket", L->endpoint,
                (long long)(now - L->last_rx));
        link_close_sub(L);
        link_open_sub(loop, L);
        L->strikes++;
        stat_add(loop, &loop->stats.reconnects, 1);
    }
    if (L->filling && now > L->deadline) {
        if (!L->sent) {
            if (L->replay)
                fill_send(loop, L);
            else
                fill_give_up(loop, L, "no replay endpoint known");
            return;
        }
        stat_add(loop, &loop->stats.replay_errors, 1);
        if (++L->tries < REPLAY_TRIES) {
            dfc_log(DFC_LOG_WARN, "replay %s: no answer in %d ms, asking again", L->replay,
                    loop->cfg.replay_timeout_ms);
            dealer_close(L); /* a late answer to the old request must not mix in */
            fill_send(loop, L);
        } else {
            dealer_close(L);
            fill_give_up(loop, L, "the replay endpoint does not answer");
        }
    }
}

int
dfc_loop_start(dfc_loop_t *loop)
{
    if (!loop)
        return DFC_EINVAL;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&loop->running, &expected, 1)) {
        dfc_log(DFC_LOG_ERROR, "the datafeed loop is already started");
        return DFC_EALREADY;
    }
    if (atomic_exchange(&loop->stop_req, 0)) {
        /* a stop that came before start: consume it, touch nothing */
        atomic_store(&loop->running, 0);
        return DFC_OK;
    }
    int rc = DFC_OK;
    ckpt_load(loop);
    worker_t *workers = calloc((size_t)loop->cfg.workers, sizeof *workers);
    zmq_pollitem_t *items = NULL;
    link_t **owner = NULL;
    size_t items_cap = 0;
    int nworkers = 0;
    if (!workers) {
        dfc_log(DFC_LOG_ERROR, "cannot start: out of memory");
        rc = DFC_ENOMEM;
        goto done;
    }
    pthread_mutex_lock(&loop->mu);
    loop->quit = false;
    pthread_mutex_unlock(&loop->mu);
    for (; nworkers < loop->cfg.workers; nworkers++) {
        worker_t *w = &workers[nworkers];
        w->loop = loop;
        w->index = nworkers;
        snprintf(w->name, sizeof w->name, "worker-%d", nworkers + 1);
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            dfc_log(DFC_LOG_ERROR, "cannot start worker %d", nworkers + 1);
            rc = DFC_ENOMEM;
            atomic_store(&loop->stop_req, 1);
            break;
        }
    }

    connect_pending(loop);
    loop->ckpt_next = mono_ms() + loop->cfg.checkpoint_ms;
    while (!atomic_load(&loop->stop_req)) {
        size_t need = 1 + 3 * loop->nopened;
        if (need > items_cap) {
            zmq_pollitem_t *gi = realloc(items, need * sizeof *gi);
            link_t **go = gi ? realloc(owner, need * sizeof *go) : NULL;
            if (gi)
                items = gi;
            if (!gi || !go) {
                dfc_log(DFC_LOG_ERROR, "out of memory");
                rc = DFC_ENOMEM;
                break;
            }
            owner = go;
            items_cap = need;
        }
        size_t n = 0;
        items[n++] = (zmq_pollitem_t){NULL, loop->wake[0], ZMQ_POLLIN, 0};
        for (size_t i = 0; i < loop->nopened; i++) {
            link_t *L = loop->rl[i];
            void *socks[3] = {L->sub, L->mon, L->dealer};
            for (int k = 0; k < 3; k++)
                if (socks[k]) {
                    owner[n] = L;
                    items[n++] = (zmq_pollitem_t){socks[k], 0, ZMQ_POLLIN, 0};
                }
        }
        int pr = zmq_poll(items, (int)n, POLL_MS);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            dfc_log(DFC_LOG_ERROR, "zmq_poll: %s", zmq_strerror(errno));
            rc = DFC_EZMQ;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char buf[64];
            while (read(loop->wake[0], buf, sizeof buf) > 0)
                ;
            connect_pending(loop);
        }
        for (size_t k = 1; k < n && !atomic_load(&loop->stop_req); k++) {
            link_t *L = owner[k];
            void *s = items[k].socket;
            /* sockets may have been replaced by an earlier item's handling */
            if (s != L->sub && s != L->mon && s != L->dealer)
                continue;
            if (s == L->mon) {
                if (items[k].revents & ZMQ_POLLIN)
                    read_monitor(loop, L);
                continue;
            }
            /* ZMQ_POLLIN on a zmq socket is edge-ish: drain up to a batch,
               whether or not poll said so */
            for (int i = 0; i < RECV_BATCH && !atomic_load(&loop->stop_req); i++) {
                if (s != L->sub && s != L->dealer)
                    break;
                int r = s == L->sub ? receive_one(loop, L) : replay_one(loop, L);
                if (r == 0)
                    break;
                if (r < 0) {
                    dfc_log(DFC_LOG_ERROR, "zmq_msg_recv: %s", zmq_strerror(errno));
                    break;
                }
            }
        }
        int64_t now = mono_ms();
        if (loop->connect_retry)
            connect_pending(loop);
        for (size_t i = 0; i < loop->nopened; i++)
            link_timers(loop, loop->rl[i], now);
        if (now >= loop->ckpt_next) {
            ckpt_write(loop);
            loop->ckpt_next = now + loop->cfg.checkpoint_ms;
        }
    }

done:
    for (size_t i = 0; i < loop->nopened; i++) {
        link_t *L = loop->rl[i];
        link_close_sub(L);
        dealer_close(L);
        /* held events are not handled: the checkpoint stays below them */
        for (size_t k = 0; k < L->nheld; k++)
            dfc_event_unref(L->held[k]);
        L->nheld = 0;
        L->filling = false;
        L->sent = false;
    }
    free(items);
    free(owner);
    /* let the workers run what is queued, then join them */
    pthread_mutex_lock(&loop->mu);
    loop->quit = true;
    for (int i = 0; i < loop->nq; i++)
        pthread_cond_broadcast(&loop->qs[i].not_empty);
    pthread_mutex_unlock(&loop->mu);
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i].tid, NULL);
    free(workers);
    ckpt_write(loop); /* every queued job ran: the final watermark */
    /* links get opened again by the next start */
    pthread_mutex_lock(&loop->mu);
    loop->nopened = 0;
    pthread_mutex_unlock(&loop->mu);
    char buf[64];
    while (read(loop->wake[0], buf, sizeof buf) > 0)
        ;
    atomic_store(&loop->stop_req, 0);
    atomic_store(&loop->running, 0);
    return rc;
}
