/*  dfc_loop: the receiver (the thread that calls dfc_loop_start owns the SUB
    socket), the bounded job queue and the worker pool. One job per (event,
    accepting listener), so callbacks run concurrently across events and
    across listeners, like the BDK's per-(event, listener) asyncio tasks. */
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
#define MAX_WORKERS 256
#define GAP_TABLE_MAX 512 /* (epoch, topic) pairs remembered for gap counting */
#define RECV_BATCH 256    /* messages read per poll before looking at stop again */

typedef struct lrec {
    dfc_listener_t l; /* our copy */
    const dfc_listener_t *key;
    char id[64];
    int refs;    /* list membership + queued/running jobs; under loop->mu */
    int running; /* jobs inside a callback now; under loop->mu */
    bool removed;
    struct lrec *next;
} lrec_t;

typedef struct {
    dfc_event_t *ev;
    lrec_t *lr;
} job_t;

typedef struct {
    char *key; /* epoch '\0' topic */
    size_t key_len;
    uint64_t last_seq;
} gap_entry_t;

typedef struct {
    dfc_loop_t *loop;
    char name[24];
    pthread_t tid;
} worker_t;

struct dfc_loop {
    dfc_config_t cfg;
    void *zctx;
    bool own_zctx;
    int wake[2]; /* stop and connect requests wake the receiver's poll */
    atomic_int stop_req;
    atomic_int running;

    pthread_mutex_t mu; /* listeners, queue, endpoints, stats */
    pthread_cond_t not_empty, not_full, idle;
    job_t *q;
    size_t qhead, qlen;
    bool quit;        /* workers: drain then exit */
    int idle_workers; /* waiting on not_empty: signal only when someone waits */
    bool full_wait;   /* the receiver waits on not_full */
    lrec_t *listeners;
    unsigned next_lid;
    char **endpoints;
    size_t nendpoints, nconnected;
    dfc_stats_t stats;

    /* receiver-only state */
    gap_entry_t gaps[GAP_TABLE_MAX];
    size_t ngaps;
    lrec_t **snap;
    size_t snap_cap;
};

static _Thread_local lrec_t *tl_current; /* the listener whose callback runs here */

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
    default:
        return "unknown error";
    }
}

static void
wake(dfc_loop_t *loop)
{
    char c = 1;
    /* A full pipe already means "wake up": EAGAIN is fine. */
    ssize_t r = write(loop->wake[1], &c, 1);
    (void)r;
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
    if (loop->cfg.workers <= 0)
        loop->cfg.workers = DEFAULT_WORKERS;
    if (loop->cfg.workers > MAX_WORKERS)
        loop->cfg.workers = MAX_WORKERS;
    if (loop->cfg.rcvhwm <= 0)
        loop->cfg.rcvhwm = DEFAULT_RCVHWM;
    if (loop->cfg.max_frame == 0)
        loop->cfg.max_frame = DEFAULT_MAX_FRAME;
    if (loop->cfg.queue_size == 0)
        loop->cfg.queue_size = DEFAULT_QUEUE;
    loop->wake[0] = loop->wake[1] = -1;
    loop->q = calloc(loop->cfg.queue_size, sizeof *loop->q);
    if (!loop->q || pipe(loop->wake) != 0) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_new: %s", loop->q ? strerror(errno) : "out of memory");
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(loop->wake[i], F_SETFL, fcntl(loop->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(loop->wake[i], F_SETFD, FD_CLOEXEC);
    }
    if (loop->cfg.zmq_ctx) {
        loop->zctx = loop->cfg.zmq_ctx;
    } else {
        loop->zctx = zmq_ctx_new();
        loop->own_zctx = true;
        if (!loop->zctx) {
            dfc_log(DFC_LOG_ERROR, "dfc_loop_new: zmq_ctx_new: %s", zmq_strerror(errno));
            goto fail;
        }
    }
    pthread_mutex_init(&loop->mu, NULL);
    pthread_cond_init(&loop->not_empty, NULL);
    pthread_cond_init(&loop->not_full, NULL);
    pthread_cond_init(&loop->idle, NULL);
    atomic_init(&loop->stop_req, 0);
    atomic_init(&loop->running, 0);
    return loop;
fail:
    if (loop->wake[0] >= 0) {
        close(loop->wake[0]);
        close(loop->wake[1]);
    }
    free(loop->q);
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
    for (size_t i = 0; i < loop->nendpoints; i++)
        free(loop->endpoints[i]);
    free(loop->endpoints);
    for (size_t i = 0; i < loop->ngaps; i++)
        free(loop->gaps[i].key);
    free(loop->snap);
    free(loop->q);
    close(loop->wake[0]);
    close(loop->wake[1]);
    if (loop->own_zctx)
        zmq_ctx_term(loop->zctx);
    pthread_mutex_destroy(&loop->mu);
    pthread_cond_destroy(&loop->not_empty);
    pthread_cond_destroy(&loop->not_full);
    pthread_cond_destroy(&loop->idle);
    free(loop);
    *loop_p = NULL;
}

int
dfc_loop_connect(dfc_loop_t *loop, const char *endpoint)
{
    if (!loop || !endpoint || !*endpoint)
        return DFC_EINVAL;
    char *copy = strdup(endpoint);
    if (!copy)
        return DFC_ENOMEM;
    pthread_mutex_lock(&loop->mu);
    char **grown = realloc(loop->endpoints, (loop->nendpoints + 1) * sizeof *grown);
    if (!grown) {
        pthread_mutex_unlock(&loop->mu);
        free(copy);
        return DFC_ENOMEM;
    }
    loop->endpoints = grown;
    loop->endpoints[loop->nendpoints++] = copy;
    pthread_mutex_unlock(&loop->mu);
    wake(loop);
    return DFC_OK;
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
    } fields[] = {S(listeners),   S(connects),          S(disconnects), S(received),
                  S(dispatched),  S(completed),         S(skipped),     S(dropped_at_stop),
                  S(filtered),    S(dropped_malformed), S(bad_frames),  S(oversize),
                  S(bad_msgpack), S(not_map),           S(bad_version), S(bad_envelope),
                  S(bad_event),   S(unknown_type),      S(reserved),    S(gaps)};
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

/* ---------------------------------------------------------------- workers */

static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    dfc_loop_t *loop = w->loop;
    pthread_mutex_lock(&loop->mu);
    for (;;) {
        while (loop->qlen == 0 && !loop->quit) {
            loop->idle_workers++;
            pthread_cond_wait(&loop->not_empty, &loop->mu);
            loop->idle_workers--;
        }
        if (loop->qlen == 0)
            break; /* quit and drained */
        job_t job = loop->q[loop->qhead];
        loop->qhead = (loop->qhead + 1) % loop->cfg.queue_size;
        loop->qlen--;
        if (loop->full_wait)
            pthread_cond_signal(&loop->not_full);
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
        lrec_unref(lr);
        pthread_mutex_unlock(&loop->mu);
        dfc_event_unref(job.ev); /* may free: outside the lock */
        pthread_mutex_lock(&loop->mu);
    }
    pthread_mutex_unlock(&loop->mu);
    return NULL;
}

/*  Queues one job, waiting while the queue is full (back-pressure: the SUB
    socket then fills up to its RCVHWM). Takes a reference on ev and lr.
    Returns false when stop was requested while waiting. Under mu. */
static bool
enqueue(dfc_loop_t *loop, dfc_event_t *ev, lrec_t *lr)
{
    if (loop->qlen == loop->cfg.queue_size) {
        /* Full: wait for room. stop cannot signal a condvar (it must be
           async-signal-safe), so the flag is polled every 50 ms; once we had
           to wait, a stop wins even if room appears at the same time. */
        while (!atomic_load(&loop->stop_req) && loop->qlen == loop->cfg.queue_size) {
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
    loop->q[(loop->qhead + loop->qlen) % loop->cfg.queue_size] = (job_t){ev, lr};
    loop->qlen++;
    loop->stats.dispatched++;
    if (loop->idle_workers > 0)
        pthread_cond_signal(&loop->not_empty);
    return true;
}

/* --------------------------------------------------------------- receiver */

static void
count_gap(dfc_loop_t *loop, const dfc_event_t *ev)
{
    const char *epoch = dfc_event_epoch(ev), *topic = dfc_event_topic(ev);
    size_t el = strlen(epoch), tl = strlen(topic), kl = el + 1 + tl;
    uint64_t seq = dfc_event_seq(ev);
    for (size_t i = 0; i < loop->ngaps; i++) {
        gap_entry_t *g = &loop->gaps[i];
        if (g->key_len == kl && memcmp(g->key, epoch, el + 1) == 0 &&
            memcmp(g->key + el + 1, topic, tl) == 0) {
            if (seq > g->last_seq && seq - g->last_seq > 1) { /* no wrap at UINT64_MAX */
                pthread_mutex_lock(&loop->mu);
                loop->stats.gaps += seq - g->last_seq - 1;
                pthread_mutex_unlock(&loop->mu);
            }
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
    char *key = malloc(kl);
    if (!key)
        return;
    memcpy(key, epoch, el + 1);
    memcpy(key + el + 1, topic, tl);
    /* the first message seen on a topic is the baseline, not a gap */
    loop->gaps[loop->ngaps++] = (gap_entry_t){key, kl, seq};
}

static void
dispatch(dfc_loop_t *loop, dfc_event_t *ev)
{
    pthread_mutex_lock(&loop->mu);
    if (!dfc_event_is_known(ev))
        loop->stats.unknown_type++;
    size_t n = 0;
    for (lrec_t *lr = loop->listeners; lr; lr = lr->next)
        n++;
    if (n > loop->snap_cap) {
        lrec_t **grown = realloc(loop->snap, n * sizeof *grown);
        if (!grown) {
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
        /* user code: called without the lock */
        bool accept = lr->l.is_accepting_event ? lr->l.is_accepting_event(lr->l.ctx, ev, init, bot)
                                               : dfc_default_is_accepting(lr->l.ctx, ev, init, bot);
        pthread_mutex_lock(&loop->mu);
        if (!accept)
            loop->stats.filtered++;
        else if (!lr->removed && dfc_event_has_callback(ev, &lr->l) && !enqueue(loop, ev, lr)) {
            stopping = true;
            loop->stats.dropped_at_stop++;
        }
        pthread_mutex_unlock(&loop->mu);
    }
    pthread_mutex_lock(&loop->mu);
    for (size_t i = 0; i < n; i++)
        lrec_unref(loop->snap[i]);
    pthread_mutex_unlock(&loop->mu);
}

static void
drop(dfc_loop_t *loop, dfc_msg_status_t st, size_t size)
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
    dfc_log(DFC_LOG_WARN, "dropped a message (%zu bytes): %s", size, dfc_msg_status_str(st));
}

/*  Reads one whole multipart message. Returns 1 when one was handled, 0
    when none was waiting, -1 on a socket error. */
static int
receive_one(dfc_loop_t *loop, void *sub)
{
    zmq_msg_t parts[2];
    zmq_msg_init(&parts[0]);
    zmq_msg_init(&parts[1]);
    size_t nparts = 0, total = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp, *m = nparts < 2 ? &parts[nparts] : &tmp;
        if (m == &tmp)
            zmq_msg_init(&tmp);
        if (zmq_msg_recv(m, sub, nparts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int err = errno;
            if (m == &tmp)
                zmq_msg_close(&tmp);
            zmq_msg_close(&parts[0]);
            zmq_msg_close(&parts[1]);
            if (nparts == 0 && err == EAGAIN)
                return 0;
            return err == EINTR && nparts == 0 ? 0 : -1;
        }
        more = zmq_msg_more(m);
        total += zmq_msg_size(m);
        nparts++;
        if (m == &tmp)
            zmq_msg_close(&tmp); /* extra frames are only counted */
    }
    /* "_" topics are the bridge's own (heartbeat, status...): the contract
       says readers that do not know them ignore them */
    bool reserved = nparts >= 1 && zmq_msg_size(&parts[0]) > 0 &&
                    ((const char *)zmq_msg_data(&parts[0]))[0] == '_';
    pthread_mutex_lock(&loop->mu);
    loop->stats.received++;
    if (reserved)
        loop->stats.reserved++;
    pthread_mutex_unlock(&loop->mu);
    if (reserved) {
        zmq_msg_close(&parts[0]);
        zmq_msg_close(&parts[1]);
        return 1;
    }

    dfc_msg_status_t st = DFC_MSG_BAD_FRAMES;
    dfc_event_t *ev = NULL;
    if (nparts == 2)
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
    count_gap(loop, ev);
    dispatch(loop, ev);
    dfc_event_unref(ev);
    return 1;
}

static void
connect_pending(dfc_loop_t *loop, void *sub)
{
    pthread_mutex_lock(&loop->mu);
    while (loop->nconnected < loop->nendpoints) {
        const char *ep = loop->endpoints[loop->nconnected++];
        if (zmq_connect(sub, ep) != 0)
            dfc_log(DFC_LOG_ERROR, "cannot connect %s: %s", ep, zmq_strerror(errno));
        else
            dfc_log(DFC_LOG_DEBUG, "connected %s", ep);
    }
    pthread_mutex_unlock(&loop->mu);
}

/*  A socket monitor on the SUB: connects and disconnects become counters and
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
    good. So after any disconnect of one of our endpoints we connect it again
    ourselves (for an ordinary connection loss this only replaces libzmq's
    own reconnect). The monitor reports the address as connected, so this
    works for endpoints given in that form (tcp://127.0.0.1:5556). */
static void
reconnect(dfc_loop_t *loop, void *sub, const char *addr)
{
    bool ours = false;
    pthread_mutex_lock(&loop->mu);
    for (size_t i = 0; i < loop->nconnected && !ours; i++)
        ours = strcmp(loop->endpoints[i], addr) == 0;
    pthread_mutex_unlock(&loop->mu);
    if (!ours) {
        dfc_log(DFC_LOG_WARN,
                "disconnected from %s: not reconnected by us (connect it by "
                "its numeric address for that)",
                addr);
        return;
    }
    zmq_disconnect(sub, addr); /* may already be gone: ignore */
    if (zmq_connect(sub, addr) != 0)
        dfc_log(DFC_LOG_ERROR, "cannot reconnect %s: %s", addr, zmq_strerror(errno));
    else
        dfc_log(DFC_LOG_WARN, "disconnected from %s: reconnecting", addr);
}

/*  Reads the monitor's events: frame 1 = uint16 event + uint32 value,
    frame 2 = the endpoint. */
static void
read_monitor(dfc_loop_t *loop, void *pair, void *sub)
{
    for (int i = 0; i < 64; i++) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, pair, ZMQ_DONTWAIT) < 0) {
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
            if (zmq_msg_recv(&addr, pair, 0) >= 0) {
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
            reconnect(loop, sub, ep);
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
    void *sub = open_sub(loop);
    void *mon = sub ? open_monitor(loop, sub) : NULL;
    worker_t *workers = calloc((size_t)loop->cfg.workers, sizeof *workers);
    int nworkers = 0;
    if (!sub || !workers) {
        dfc_log(DFC_LOG_ERROR, "cannot start: %s", sub ? "out of memory" : zmq_strerror(errno));
        rc = sub ? DFC_ENOMEM : DFC_EZMQ;
        goto done;
    }
    pthread_mutex_lock(&loop->mu);
    loop->quit = false;
    pthread_mutex_unlock(&loop->mu);
    for (; nworkers < loop->cfg.workers; nworkers++) {
        worker_t *w = &workers[nworkers];
        w->loop = loop;
        snprintf(w->name, sizeof w->name, "worker-%d", nworkers + 1);
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            dfc_log(DFC_LOG_ERROR, "cannot start worker %d", nworkers + 1);
            rc = DFC_ENOMEM;
            atomic_store(&loop->stop_req, 1);
            break;
        }
    }

    connect_pending(loop, sub);
    while (!atomic_load(&loop->stop_req)) {
        zmq_pollitem_t items[3] = {
            {sub, 0, ZMQ_POLLIN, 0}, {NULL, loop->wake[0], ZMQ_POLLIN, 0}, {mon, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, mon ? 3 : 2, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            dfc_log(DFC_LOG_ERROR, "zmq_poll: %s", zmq_strerror(errno));
            rc = DFC_EZMQ;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            char buf[64];
            while (read(loop->wake[0], buf, sizeof buf) > 0)
                ;
            connect_pending(loop, sub);
        }
        if (mon && (items[2].revents & ZMQ_POLLIN))
            read_monitor(loop, mon, sub);
        /* ZMQ_POLLIN on a zmq socket is edge-ish: drain up to a batch */
        for (int i = 0; i < RECV_BATCH && !atomic_load(&loop->stop_req); i++) {
            int r = receive_one(loop, sub);
            if (r == 0)
                break;
            if (r < 0) {
                dfc_log(DFC_LOG_ERROR, "zmq_msg_recv: %s", zmq_strerror(errno));
                break;
            }
        }
    }

done:
    if (mon) {
        zmq_socket_monitor(sub, NULL, 0);
        zmq_close(mon);
    }
    if (sub)
        zmq_close(sub);
    /* let the workers run what is queued, then join them */
    pthread_mutex_lock(&loop->mu);
    loop->quit = true;
    pthread_cond_broadcast(&loop->not_empty);
    pthread_mutex_unlock(&loop->mu);
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i].tid, NULL);
    free(workers);
    /* new endpoints get connected again by the next start */
    pthread_mutex_lock(&loop->mu);
    loop->nconnected = 0;
    pthread_mutex_unlock(&loop->mu);
    char buf[64];
    while (read(loop->wake[0], buf, sizeof buf) > 0)
        ;
    atomic_store(&loop->stop_req, 0);
    atomic_store(&loop->running, 0);
    return rc;
}
