/*  dfc_loop: the public API (new, connect, subscribe, stop, stats) and the
    receiver: the thread that calls dfc_loop_start owns every socket and polls
    them, driving links, fills and the checkpoint timer. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dfc_loop_priv.h"

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
    case DFC_ETIMEOUT:
        return "no reply from the bridge (timed out)";
    case DFC_ECANCELED:
        return "canceled: the client was destroyed";
    default:
        return "unknown error";
    }
}

int64_t
dfc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
dfc_wall_ms(void)
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

/*  The atomic twin must stay the public struct, field for field. */
_Static_assert(sizeof(dfc_counters_t) == sizeof(dfc_stats_t), "dfc_stats_t and its twin");
#define X(f)                                                                                       \
    _Static_assert(offsetof(dfc_counters_t, f) == offsetof(dfc_stats_t, f), "order of " #f);
DFC_STATS_FIELDS(X)
#undef X

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
    if (c->max_held_bytes == 0)
        c->max_held_bytes = DEFAULT_MAX_HELD_BYTES;
    if (c->members > 1 && (c->member < 0 || c->member >= c->members)) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_new: member %d is not in 0..%d", c->member,
                c->members - 1);
        free(loop);
        return NULL;
    }
    char err[512];
    c->server_key = c->cert = NULL; /* the caller's: the keys are loaded now */
    if (cfg && dfc_curve_load(&loop->curve, cfg->server_key, cfg->cert, err, sizeof err)) {
        dfc_log(DFC_LOG_ERROR, "dfc_loop_new: invalid argument: %s", err);
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
    if (ok) {
        /* enough for every event a full pipeline holds (queues and stages) */
        size_t inflight = c->queue_size * (size_t)loop->nq + 2 * STAGE_MAX;
        loop->blocks = dfc_blocks_new(inflight < 4096 ? inflight : 4096);
        ok = loop->blocks != NULL;
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
    pthread_mutex_init(&loop->wm_mu, NULL);
    pthread_cond_init(&loop->idle, NULL);
    for (int i = 0; i < loop->nq; i++) {
        pthread_mutex_init(&loop->qs[i].mu, NULL);
        pthread_cond_init(&loop->qs[i].not_empty, NULL);
        pthread_cond_init(&loop->qs[i].not_full, NULL);
    }
    atomic_init(&loop->quit, false);
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
    dfc_blocks_destroy(&loop->blocks);
    free(loop->ckpt_path);
    dfc_curve_wipe(&loop->curve);
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
        free(L->replay_refused);
        dfc_fill_destroy(L);
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
        pthread_mutex_destroy(&loop->qs[i].mu);
        pthread_cond_destroy(&loop->qs[i].not_empty);
        pthread_cond_destroy(&loop->qs[i].not_full);
    }
    free(loop->qs);
    dfc_dedupe_destroy(&loop->dedupe);
    dfc_blocks_destroy(&loop->blocks); /* after the links: held events went back to it */
    free(loop->ckpt_path);
    dfc_curve_wipe(&loop->curve);
    close(loop->wake[0]);
    close(loop->wake[1]);
    if (loop->own_zctx)
        zmq_ctx_term(loop->zctx);
    pthread_mutex_destroy(&loop->mu);
    pthread_mutex_destroy(&loop->wm_mu);
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
    atomic_init(&lr->refs, 1);
    atomic_init(&lr->running, 0);
    atomic_init(&lr->removed, false);
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
    atomic_fetch_add(&loop->lgen, 1);
    STAT_ADD(loop, listeners, 1);
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
    atomic_store(&lr->removed, true); /* queued jobs are skipped from now on */
    atomic_fetch_add(&loop->lgen, 1);
    STAT_SUB(loop, listeners, 1);
    /* From its own callback we would wait for ourselves: return at once.
       A callback that leaves after this check broadcasts under mu (see
       dfc_lrec_leave), so the wakeup is not lost. */
    if (dfc_tl_listener != lr) {
        while (atomic_load(&lr->running) > 0)
            pthread_cond_wait(&loop->idle, &loop->mu);
    }
    dfc_lrec_unref(lr);
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
        /* each counter is exact; together they are a snapshot only when the
           loop is idle (as after start returned) */
#define X(f) out->f = atomic_load_explicit(&loop->stats.f, memory_order_relaxed);
    DFC_STATS_FIELDS(X)
#undef X
}

size_t
dfc_stats_format(const dfc_stats_t *st, char *buf, size_t size)
{
#define X(f) {#f, offsetof(dfc_stats_t, f)},
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {DFC_STATS_FIELDS(X)};
#undef X
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
            STAT_ADD(loop, alloc_failures, 1);
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
        dfc_link_open_sub(loop, loop->rl[i]);
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
    dfc_wm_restore(loop);
    zmq_pollitem_t *items = NULL;
    link_t **owner = NULL;
    size_t items_cap = 0;
    worker_t *workers = NULL;
    int nworkers = 0;
    rc = dfc_pool_start(loop, &workers, &nworkers);
    if (rc != DFC_OK)
        atomic_store(&loop->stop_req, 1); /* no receiving: run what started, then return */

    connect_pending(loop);
    loop->ckpt_next = dfc_mono_ms() + loop->cfg.checkpoint_ms;
    while (!atomic_load(&loop->stop_req)) {
        size_t need = 1 + 4 * loop->nopened;
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
            void *socks[4] = {L->sub, L->mon, L->fill.dealer, L->fill.dealer_mon};
            for (int k = 0; k < 4; k++)
                if (socks[k]) {
                    owner[n] = L;
                    items[n++] = (zmq_pollitem_t){socks[k], 0, ZMQ_POLLIN, 0};
                }
        }
        dfc_pool_flush(loop); /* nothing staged waits while we sleep */
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
            if (s != L->sub && s != L->mon && s != L->fill.dealer && s != L->fill.dealer_mon)
                continue;
            if (s == L->fill.dealer_mon) {
                if (items[k].revents & ZMQ_POLLIN)
                    dfc_dealer_read_monitor(loop, L);
                continue;
            }
            if (s == L->mon) {
                if (items[k].revents & ZMQ_POLLIN)
                    dfc_link_read_monitor(loop, L);
                continue;
            }
            /* ZMQ_POLLIN on a zmq socket is edge-ish: drain up to a batch,
               whether or not poll said so */
            for (int i = 0; i < RECV_BATCH && !atomic_load(&loop->stop_req); i++) {
                if (s != L->sub && s != L->fill.dealer)
                    break;
                int r = s == L->sub ? dfc_link_receive(loop, L) : dfc_fill_receive(loop, L);
                if (r == 0)
                    break;
                if (r < 0) {
                    dfc_log(DFC_LOG_ERROR, "zmq_msg_recv: %s", zmq_strerror(errno));
                    break;
                }
            }
            dfc_pool_flush(loop); /* one hand-over per burst */
        }
        int64_t now = dfc_mono_ms();
        if (loop->connect_retry)
            connect_pending(loop);
        for (size_t i = 0; i < loop->nopened; i++)
            dfc_link_timers(loop, loop->rl[i], now);
        if (now >= loop->ckpt_next) {
            dfc_wm_save(loop);
            loop->ckpt_next = now + loop->cfg.checkpoint_ms;
        }
    }

    for (size_t i = 0; i < loop->nopened; i++) {
        link_t *L = loop->rl[i];
        dfc_link_close_sub(L);
        dfc_fill_on(loop, L, DFC_FILL_EV_STOP, 0, NULL);
    }
    free(items);
    free(owner);
    dfc_pool_stop(loop, workers, nworkers);
    dfc_snap_clear(loop);
    dfc_wm_save(loop); /* every queued job ran: the final watermark */
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
