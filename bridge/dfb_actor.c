/*  dfb_actor: the thread that owns the PUB socket (see dfb_actor.h). Its
    per-topic seqs are not a second counter: they are the published
    watermark (what subscribers can have seen), derived from the (gseq, seq)
    each message carries, and exist only for the heartbeat. */
#include "dfb_actor.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "dfb_clock.h"
#include "dfb_heartbeat.h"
#include "dfb_log.h"
#include "dfb_stop.h"

/*  The pipe holds this many messages before dfb_actor_send_batch waits for the
    actor (which never blocks: PUB drops rather than waits). */
#define PIPE_HWM 10000
#define BATCH_MSG (1 + sizeof(void *) + 8) /* 'B', the batch's address, its generation */
#define WAIT_SLICE_MS 100 /* how often a waiting caller checks that the actor lives */
#define REBIND_RETRY_MS 100 /* a failed re-bind (the port not free yet) is tried again */
#define REBIND_CHECK_MS 500 /* longest wait before the actor sees auth_rebinds change */

struct dfb_actor {
    void *ctx;
    void *pipe; /* caller end */
    pthread_t thread;
    int started;
    _Atomic int dead;
    /* the actor's own, from start to the end of the thread */
    void *apipe; /* actor end */
    void *pub;
    dfb_topics_t *seqs; /* published watermark per topic */
    uint64_t gseq;      /* last gseq published */
    int heartbeat_ms;
    uint64_t fail_after;
    char epoch[64];
    char advertise[256];
    dfb_buf_t hb;
    dfb_pub_counters_t *c;
    /* CURVE re-bind (dfb_actor_opts_t.rebind) */
    const dfb_zsock_opts_t *rebind;
    dfb_fdguard_t *guard; /* connection caps: the new PUB is watched again */
    uint64_t rebind_seen;  /* auth_rebinds when the PUB was last (re)bound */
    int64_t rebind_at;     /* pub NULL: next bind attempt (monotonic ms) */
    uint64_t rebind_tries; /* failed attempts of this re-bind */
    uint64_t rebind_lost;  /* events not published while unbound */
    uint64_t rebind_fail;  /* test only: attempts made to fail (DFB_TEST_REBIND_FAILS) */
};

/*  The allow-list lost a key: close the PUB (every connection goes with it,
    ZMQ_LINGER 0) and bind it again; allowed clients reconnect and pass the
    handshake again, the others do not. A failed bind is retried. */
static void
check_rebind(dfb_actor_t *a, int64_t now)
{
    uint64_t g = a->c->auth_rebinds;
    if (g != a->rebind_seen) {
        a->rebind_seen = g;
        if (a->pub) {
            int zero = 0;
            zmq_setsockopt(a->pub, ZMQ_LINGER, &zero, sizeof zero);
            zmq_close(a->pub);
            a->pub = NULL;
        }
        a->rebind_at = now;
        a->rebind_tries = 0;
        a->rebind_lost = 0;
    }
    if (a->pub || now < a->rebind_at)
        return;
    char bound[256], err[512];
    if (a->rebind_tries < a->rebind_fail) /* test fault (DFB_TEST_REBIND_FAILS) */
        snprintf(err, sizeof err, "test fault (DFB_TEST_REBIND_FAILS)");
    else
        a->pub = dfb_zsock_new(a->ctx, a->rebind, bound, sizeof bound, err, sizeof err);
    if (!a->pub) {
        if (a->rebind_tries++ % 50 == 0)
            dfb_warn("publish: re-bind after an allow-list change failed (%s): retrying every "
                     "%d ms",
                     err, REBIND_RETRY_MS);
        a->rebind_at = now + REBIND_RETRY_MS;
        return;
    }
    dfb_fdguard_rewatch(a->guard, a->pub, "bridge.publish");
    dfb_info("publish: PUB re-bound at %s after an allow-list change (%" PRIu64
             " event(s) not published meanwhile: replay has them)",
             bound, a->rebind_lost);
}

static void
send_heartbeat(dfb_actor_t *a)
{
    dfb_buf_t *b = &a->hb;
    if (!a->pub) /* re-binding */
        return;
    b->len = 0;
    if (dfb_heartbeat_encode(b, a->epoch, a->gseq, a->seqs, (uint64_t)dfb_wall_ms(),
                             a->heartbeat_ms, a->advertise) != 0)
        return;
    if (zmq_send(a->pub, DFB_TOPIC_HEARTBEAT, strlen(DFB_TOPIC_HEARTBEAT), ZMQ_SNDMORE) >= 0 &&
        zmq_send(a->pub, b->data, b->len, 0) >= 0)
        a->c->heartbeats++;
}

/*  Publishes one message; the topic's seq and the gseq become the
    heartbeat's watermark. */
static void
publish_one(dfb_actor_t *a, uint64_t gseq, uint64_t seq, const char *topic, size_t tlen,
            const void *body, size_t blen)
{
    dfb_topic_t *t = dfb_topics_get(a->seqs, topic, tlen, 1);
    if (t)
        t->seq = seq;
    a->gseq = gseq;
    size_t type = dfb_event_type_index(topic, tlen); /* for /metrics */
    if (!a->pub) { /* re-binding: subscribers fill the gap from replay */
        a->c->send_errors++;
        a->rebind_lost++;
    } else if (zmq_send(a->pub, topic, tlen, ZMQ_SNDMORE) < 0 ||
               zmq_send(a->pub, body, blen, 0) < 0) {
        a->c->send_errors++;
        dfb_logkv(DFB_LOG_WARN, DFB_FIELDS(dfb_li("gseq", (long long)gseq)),
                  "publish: zmq_send: %s (gseq %" PRIu64 " not published; replay has it)",
                  zmq_strerror(errno), gseq);
    } else {
        a->c->published++;
        a->c->published_by_type[type]++;
    }
}

/*  A batch handed over by pointer (dfb_actor_send_batch): its messages in
    order, then it is given back (done = gen). Returns 0, or 2 when the test
    fault (DFB_TEST_ACTOR_FAIL_AFTER) stops the actor in the middle. */
static int
on_batch(dfb_actor_t *a, dfb_actor_batch_t *b, uint64_t gen)
{
    int rc = 0;
    /* Pairs with the caller's release: the batch's bytes are visible. */
    if (atomic_load_explicit(&b->ready, memory_order_acquire) != gen) {
        a->c->pipe_drops++; /* cannot happen: a batch is never reused while busy */
        dfb_warn("publish: a stale batch in the actor pipe: not published; replay has it");
        atomic_store_explicit(&b->done, gen, memory_order_release);
        return 0;
    }
    const uint8_t *p = b->buf.data, *end = p + b->buf.len;
    for (size_t i = 0; i < b->n && end - p >= 24; i++) {
        uint64_t gs[2];
        uint32_t len[2];
        memcpy(gs, p, 16);
        memcpy(len, p + 16, 8);
        p += 24;
        if ((size_t)(end - p) < (size_t)len[0] + len[1])
            break;
        publish_one(a, gs[0], gs[1], (const char *)p, len[0], p + len[0], len[1]);
        p += (size_t)len[0] + len[1];
        if (a->fail_after && a->c->published >= a->fail_after) {
            rc = 2;
            break;
        }
    }
    atomic_store_explicit(&b->done, gen, memory_order_release);
    return rc;
}

/*  Handles one message from the pipe. Returns 1 on $TERM, 2 when the test
    fault stopped a batch, -1 when the pipe itself failed (the actor must
    stop), else 0. */
static int
on_pipe(dfb_actor_t *a)
{
    zmq_msg_t head;
    zmq_msg_init(&head);
    if (zmq_msg_recv(&head, a->apipe, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&head);
        return errno == EAGAIN || errno == EINTR ? 0 : errno == ETERM ? 1 : -1;
    }
    size_t hl = zmq_msg_size(&head);
    if (hl == BATCH_MSG && *(const char *)zmq_msg_data(&head) == 'B') {
        struct {
            dfb_actor_batch_t *b;
            uint64_t gen;
        } m;
        memcpy(&m, (const char *)zmq_msg_data(&head) + 1, sizeof m);
        zmq_msg_close(&head);
        return on_batch(a, m.b, m.gen);
    }
    /* a command: $TERM or $SYNC */
    int term = hl == 5 && memcmp(zmq_msg_data(&head), "$TERM", 5) == 0;
    zmq_msg_close(&head);
    if (!term)
        zmq_send(a->apipe, "$OK", 3, 0);
    return term;
}

/*  The loop; returns NULL on $TERM, else the reason it stopped. */
static const char *
run(dfb_actor_t *a)
{
    int64_t next_hb = dfb_mono_ms() + a->heartbeat_ms;
    for (;;) {
        zmq_pollitem_t item = {a->apipe, 0, ZMQ_POLLIN, 0};
        int64_t timeout = a->heartbeat_ms > 0 ? next_hb - dfb_mono_ms() : -1;
        if (a->heartbeat_ms > 0 && timeout < 0)
            timeout = 0;
        if (a->rebind) {
            int64_t cap = a->pub ? REBIND_CHECK_MS : REBIND_RETRY_MS;
            if (timeout < 0 || timeout > cap)
                timeout = cap;
        }
        if (zmq_poll(&item, 1, (long)timeout) < 0 && errno != EINTR)
            return zmq_strerror(errno);
        /* Events first, a bounded batch, so a flood cannot starve the timer. */
        if (item.revents & ZMQ_POLLIN)
            for (int k = 0; k < 1000; k++) {
                int events = 0;
                size_t sz = sizeof events;
                if (zmq_getsockopt(a->apipe, ZMQ_EVENTS, &events, &sz) != 0)
                    return zmq_strerror(errno);
                if (!(events & ZMQ_POLLIN))
                    break;
                int rc = on_pipe(a);
                if (rc == 1)
                    return NULL;
                if (rc < 0)
                    return zmq_strerror(errno);
                if (rc == 2 || (a->fail_after && a->c->published >= a->fail_after))
                    return "test fault (DFB_TEST_ACTOR_FAIL_AFTER)";
            }
        int64_t now = dfb_mono_ms();
        if (a->rebind)
            check_rebind(a, now);
        if (a->heartbeat_ms > 0 && now >= next_hb) {
            send_heartbeat(a);
            next_hb += a->heartbeat_ms;
            if (next_hb <= now) /* fell behind (a stalled machine): no burst */
                next_hb = now + a->heartbeat_ms;
        }
    }
}

static void *
actor_main(void *arg)
{
    dfb_actor_t *a = arg;
    const char *why = run(a);
    if (why) {
        /* Nothing is published any more: the only safe course is to stop
           the daemon, whose journal lets the next start continue. */
        a->c->dead_threads++;
        dfb_error("publish: the publisher thread stopped: %s; nothing more can be published, "
                  "the bridge exits (status 5)",
                  why);
        atomic_store_explicit(&a->dead, 1, memory_order_release);
        dfb_stop_request();
    }
    return NULL;
}

dfb_actor_t *
dfb_actor_new(void *ctx, void *pub, const dfb_actor_opts_t *o, char *err, size_t errlen)
{
    dfb_actor_t *self = calloc(1, sizeof *self);
    if (!self) {
        zmq_close(pub);
        snprintf(err, errlen, "publish: out of memory");
        return NULL;
    }
    self->ctx = ctx;
    self->pub = pub;
    self->c = o->counters;
    self->heartbeat_ms = o->heartbeat_ms;
    self->gseq = o->gseq;
    self->fail_after = o->fail_after;
    self->rebind = o->rebind;
    self->guard = o->guard;
    const char *rf = getenv("DFB_TEST_REBIND_FAILS");
    self->rebind_fail = rf ? strtoull(rf, NULL, 10) : 0;
    self->rebind_seen = o->counters->auth_rebinds;
    snprintf(self->epoch, sizeof self->epoch, "%s", o->epoch);
    snprintf(self->advertise, sizeof self->advertise, "%s", o->advertise ? o->advertise : "");
    dfb_buf_init(&self->hb);
    self->seqs = dfb_topics_new();
    if (!self->seqs || (o->seqs && dfb_topics_copy(self->seqs, o->seqs) != 0)) {
        snprintf(err, errlen, "publish: out of memory");
        dfb_actor_destroy(&self);
        return NULL;
    }
    /* The pipe: bind, connect, then start the thread (pthread_create is the
       memory barrier that lets the sockets move to it). */
    char name[64];
    snprintf(name, sizeof name, "inproc://dfb-actor-%p", (void *)self);
    self->pipe = zmq_socket(ctx, ZMQ_PAIR);
    self->apipe = zmq_socket(ctx, ZMQ_PAIR);
    int hwm = PIPE_HWM, zero = 0;
    if (!self->pipe || !self->apipe ||
        zmq_setsockopt(self->pipe, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(self->apipe, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(self->pipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(self->apipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(self->apipe, name) != 0 || zmq_connect(self->pipe, name) != 0) {
        snprintf(err, errlen, "publish: cannot create the actor pipe: %s", zmq_strerror(errno));
        dfb_actor_destroy(&self);
        return NULL;
    }
    if (pthread_create(&self->thread, NULL, actor_main, self) != 0) {
        snprintf(err, errlen, "publish: cannot start the publisher thread");
        dfb_actor_destroy(&self);
        return NULL;
    }
    self->started = 1;
    return self;
}

int
dfb_actor_dead(const dfb_actor_t *self)
{
    return atomic_load_explicit(&self->dead, memory_order_acquire);
}

/*  Sends one frame, waiting for room in slices so a dead actor is noticed.
    0, or -1 (dead actor or a pipe error). */
static int
pipe_send(dfb_actor_t *self, const void *data, size_t len, int more)
{
    for (;;) {
        if (zmq_send(self->pipe, data, len, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) >= 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        if (dfb_actor_dead(self))
            return -1;
        if (errno == EAGAIN) {
            zmq_pollitem_t item = {self->pipe, 0, ZMQ_POLLOUT, 0};
            zmq_poll(&item, 1, WAIT_SLICE_MS);
        }
    }
}

void
dfb_actor_batch_init(dfb_actor_batch_t *b)
{
    memset(b, 0, sizeof *b);
    dfb_buf_init(&b->buf);
}

void
dfb_actor_batch_free(dfb_actor_batch_t *b)
{
    dfb_buf_free(&b->buf);
    b->n = 0;
}

int
dfb_actor_batch_add(dfb_actor_batch_t *b, uint64_t gseq, uint64_t seq, const char *topic,
                    size_t topic_len, const void *body, size_t body_len)
{
    if (topic_len > UINT32_MAX || body_len > UINT32_MAX ||
        dfb_buf_reserve(&b->buf, 24 + topic_len + body_len) != 0)
        return -1;
    uint8_t *p = b->buf.data + b->buf.len;
    uint64_t gs[2] = {gseq, seq};
    uint32_t len[2] = {(uint32_t)topic_len, (uint32_t)body_len};
    memcpy(p, gs, 16);
    memcpy(p + 16, len, 8);
    memcpy(p + 24, topic, topic_len);
    memcpy(p + 24 + topic_len, body, body_len);
    b->buf.len += 24 + topic_len + body_len;
    b->n++;
    return 0;
}

int
dfb_actor_batch_busy(const dfb_actor_batch_t *b)
{
    return atomic_load_explicit(&b->done, memory_order_acquire) != b->sent;
}

int
dfb_actor_send_batch(dfb_actor_t *self, dfb_actor_batch_t *b)
{
    if (!self->started || dfb_actor_dead(self))
        return -1;
    uint64_t gen = b->sent + 1;
    char msg[BATCH_MSG];
    msg[0] = 'B';
    memcpy(msg + 1, &b, sizeof b);
    memcpy(msg + 1 + sizeof b, &gen, 8);
    /* Release: the actor's acquire of ready sees the batch's bytes. */
    atomic_store_explicit(&b->ready, gen, memory_order_release);
    if (pipe_send(self, msg, sizeof msg, 0) != 0)
        return -1;
    b->sent = gen;
    return 0;
}

int
dfb_actor_sync(dfb_actor_t *self)
{
    if (!self->started || dfb_actor_dead(self) || pipe_send(self, "$SYNC", 5, 0) != 0)
        return -1;
    for (;;) {
        char ok[8];
        if (zmq_recv(self->pipe, ok, sizeof ok, ZMQ_DONTWAIT) >= 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        if (dfb_actor_dead(self))
            return -1;
        zmq_pollitem_t item = {self->pipe, 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, WAIT_SLICE_MS);
    }
}

void
dfb_actor_destroy(dfb_actor_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_actor_t *self = *self_p;
    if (self->started) {
        /* The pipe is ordered: everything handed over is published first. */
        pipe_send(self, "$TERM", 5, 0);
        pthread_join(self->thread, NULL);
    }
    if (self->pipe)
        zmq_close(self->pipe);
    if (self->apipe)
        zmq_close(self->apipe);
    if (self->pub)
        zmq_close(self->pub);
    dfb_topics_destroy(&self->seqs);
    dfb_buf_free(&self->hb);
    free(self);
    *self_p = NULL;
}
