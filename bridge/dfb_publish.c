/*  dfb_publish: seq/gseq, dedupe and the journal on the caller's thread; the
    PUB socket, the replay ROUTER and the heartbeat timer in one actor thread
    fed through an inproc PAIR pipe (see dfb_publish.h). The hot path
    (dfb_publish_event) allocates nothing of its own once warm: the body
    buffer is reused, a topic's counter is allocated the first time the topic
    is seen, dedupe keys live in preallocated rings, and the journal writes
    from the caller's buffers. */
#include "dfb_publish.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include <openssl/rand.h>

#include "dfb_dedupe.h"
#include "dfb_log.h"
#include "dfb_mpack.h"
#include "dfb_replay.h"
#include "dfb_stop.h"
#include "dfb_transcode.h"

/*  The pipe holds this many messages before dfb_publish_event waits for the
    actor (which never blocks: PUB drops rather than waits). */
#define PIPE_HWM 10000
#define TICK_MS 1000 /* journal retention and `interval` fsync checks */

/*  What the actor owns: sockets, the published counters for heartbeats. */
typedef struct {
    void *pipe; /* actor end */
    void *pub;
    dfb_replay_t *replay; /* NULL = off */
    dfb_journal_t *journal;
    dfb_topics_t *seqs; /* last seq published per topic */
    uint64_t gseq;      /* last gseq published */
    int heartbeat_ms;
    char epoch[64];
    char advertise[256];
    dfb_buf_t hb;
    uint64_t published, send_errors, heartbeats; /* atomics */
} actor_t;

struct dfb_publish {
    void *ctx;
    void *pipe; /* caller end */
    pthread_t thread;
    int running;
    actor_t actor;
    char endpoint[256];
    char replay_endpoint[256];
    char epoch[64];
    int64_t bot;
    uint64_t gseq;
    dfb_buf_t body;
    dfb_topics_t *topics;
    dfb_topic_t *unknown; /* always present: the cap never evicts it */
    dfb_journal_t *journal;
    dfb_dedupe_t *dedupe;
    dfb_publish_stats_t stats; /* caller-side counters */
};

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
bump(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

/* ---- the actor ------------------------------------------------------------ */

int
dfb_publish_heartbeat_encode(dfb_buf_t *b, const char *epoch, uint64_t gseq,
                             const dfb_topics_t *seqs, uint64_t ts, int interval_ms,
                             const char *replay)
{
    uint32_t n = 0;
    size_t cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(seqs, &cur));)
        n += t->seq > 0;
    int rc = dfb_mpack_map(b, 7);
    rc |= dfb_mpack_cstr(b, "v") | dfb_mpack_uint(b, 1);
    rc |= dfb_mpack_cstr(b, "epoch") | dfb_mpack_cstr(b, epoch);
    rc |= dfb_mpack_cstr(b, "gseq") | dfb_mpack_uint(b, gseq);
    rc |= dfb_mpack_cstr(b, "seqs") | dfb_mpack_map(b, n);
    cur = 0;
    for (dfb_topic_t *t; (t = dfb_topics_next(seqs, &cur));)
        if (t->seq > 0)
            rc |= dfb_mpack_str(b, t->topic, t->len) | dfb_mpack_uint(b, t->seq);
    rc |= dfb_mpack_cstr(b, "ts") | dfb_mpack_uint(b, ts);
    rc |= dfb_mpack_cstr(b, "interval") | dfb_mpack_uint(b, (uint64_t)interval_ms);
    rc |= dfb_mpack_cstr(b, "replay") | dfb_mpack_cstr(b, replay);
    return rc ? -1 : 0;
}

/*  Builds and sends one heartbeat (schemas/CONTRACT.md, "Heartbeat"). */
static void
send_heartbeat(actor_t *a)
{
    dfb_buf_t *b = &a->hb;
    b->len = 0;
    if (dfb_publish_heartbeat_encode(b, a->epoch, a->gseq, a->seqs, (uint64_t)wall_ms(),
                                     a->heartbeat_ms, a->advertise) != 0)
        return;
    if (zmq_send(a->pub, DFB_TOPIC_HEARTBEAT, strlen(DFB_TOPIC_HEARTBEAT), ZMQ_SNDMORE) >= 0 &&
        zmq_send(a->pub, b->data, b->len, 0) >= 0)
        bump(&a->heartbeats);
}

/*  Handles one message from the pipe. Returns 1 on $TERM. */
static int
on_pipe(actor_t *a)
{
    zmq_msg_t head, topic, body;
    zmq_msg_init(&head);
    if (zmq_msg_recv(&head, a->pipe, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&head);
        return errno == ETERM ? 1 : 0;
    }
    size_t hl = zmq_msg_size(&head);
    if (hl != 16) { /* a command: $TERM or $SYNC */
        int term = hl == 5 && memcmp(zmq_msg_data(&head), "$TERM", 5) == 0;
        zmq_msg_close(&head);
        if (!term)
            zmq_send(a->pipe, "$OK", 3, 0);
        return term;
    }
    uint64_t gs[2];
    memcpy(gs, zmq_msg_data(&head), 16);
    zmq_msg_close(&head);
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&topic, a->pipe, 0) < 0 || zmq_msg_recv(&body, a->pipe, 0) < 0) {
        zmq_msg_close(&topic);
        zmq_msg_close(&body);
        return 0;
    }
    dfb_topic_t *t = dfb_topics_get(a->seqs, zmq_msg_data(&topic), zmq_msg_size(&topic), 1);
    if (t)
        t->seq = gs[1];
    a->gseq = gs[0];
    /* zmq_msg_send hands the frames over without a copy. */
    if (zmq_msg_send(&topic, a->pub, ZMQ_SNDMORE) < 0 || zmq_msg_send(&body, a->pub, 0) < 0) {
        bump(&a->send_errors);
        dfb_warn("publish: zmq_send: %s (gseq %" PRIu64 " not published; replay has it)",
                 zmq_strerror(errno), gs[0]);
    } else
        bump(&a->published);
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return 0;
}

static void *
actor_run(void *arg)
{
    actor_t *a = arg;
    int64_t now = mono_ms();
    int64_t next_hb = now + a->heartbeat_ms, next_tick = now + TICK_MS;
    int replay_wait = -1;
    for (;;) {
        zmq_pollitem_t items[2] = {{a->pipe, 0, ZMQ_POLLIN, 0}, {NULL, 0, ZMQ_POLLIN, 0}};
        int n = 1;
        if (a->replay) {
            items[1].socket = dfb_replay_socket(a->replay);
            n = 2;
        }
        now = mono_ms();
        int64_t timeout = next_tick - now;
        if (a->heartbeat_ms > 0 && next_hb - now < timeout)
            timeout = next_hb - now;
        if (replay_wait >= 0 && replay_wait < timeout)
            timeout = replay_wait;
        if (timeout < 0)
            timeout = 0;
        if (zmq_poll(items, n, (long)timeout) < 0 && errno != EINTR)
            break;
        /* Events first, a bounded batch, so a flood cannot starve the timer. */
        if (items[0].revents & ZMQ_POLLIN)
            for (int k = 0; k < 1000; k++) {
                int events = 0;
                size_t sz = sizeof events;
                if (zmq_getsockopt(a->pipe, ZMQ_EVENTS, &events, &sz) != 0 ||
                    !(events & ZMQ_POLLIN))
                    break;
                if (on_pipe(a))
                    return NULL;
            }
        now = mono_ms();
        if (a->replay) {
            if (items[1].revents & ZMQ_POLLIN)
                dfb_replay_receive(a->replay, a->epoch, now);
            replay_wait = dfb_replay_work(a->replay, a->epoch, now);
        }
        if (a->heartbeat_ms > 0 && now >= next_hb) {
            send_heartbeat(a);
            next_hb += a->heartbeat_ms;
            if (next_hb <= now) /* fell behind (a stalled machine): no burst */
                next_hb = now + a->heartbeat_ms;
        }
        if (now >= next_tick) {
            if (a->journal)
                dfb_journal_tick(a->journal, wall_ms());
            next_tick = now + TICK_MS;
        }
    }
    return NULL;
}

/* ---- the caller's side ---------------------------------------------------- */

/*  TCP keepalive with a short idle, and ZMTP heartbeats when zmtp_ms > 0:
    PING every zmtp_ms, a peer silent for 3 x zmtp_ms is dropped (TTL asks the
    peer to do the same). 0 or -1. Used for the PUB and the replay ROUTER. */
int
dfb_publish_liveness(void *sock, int zmtp_ms)
{
    int one = 1, idle = DFB_TCP_KEEPALIVE_IDLE_S, intvl = 5, cnt = 3;
    if (zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof idle) != 0 ||
        zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_INTVL, &intvl, sizeof intvl) != 0 ||
        zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_CNT, &cnt, sizeof cnt) != 0)
        return -1;
    if (zmtp_ms <= 0)
        return 0;
    int timeout = zmtp_ms > 2184533 ? 6553599 : zmtp_ms * 3; /* TTL max 6553599 ms */
    return zmq_setsockopt(sock, ZMQ_HEARTBEAT_IVL, &zmtp_ms, sizeof zmtp_ms) != 0 ||
                   zmq_setsockopt(sock, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout) != 0 ||
                   zmq_setsockopt(sock, ZMQ_HEARTBEAT_TTL, &timeout, sizeof timeout) != 0
               ? -1
               : 0;
}

/*  A fresh epoch: UTC start time + 32 random bits, so a restart within the
    same second still gets a new one. */
static int
make_epoch(char *out, size_t cap)
{
    unsigned char rnd[4];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return -1;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, cap, "%s-%02x%02x%02x%02x", stamp, rnd[0], rnd[1], rnd[2], rnd[3]);
    return 0;
}

static void
rebuild_dedupe(void *arg, const dfb_journal_rec_t *rec)
{
    dfb_dedupe_add(arg, rec->id, rec->id_len, rec->type, rec->type_len, rec->ts);
}

dfb_publish_t *
dfb_publish_new_opts(const dfb_publish_opts_t *o, char *err, size_t errlen)
{
    dfb_publish_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "publish: out of memory");
        return NULL;
    }
    actor_t *a = &self->actor;
    dfb_buf_init(&self->body);
    dfb_buf_init(&a->hb);
    a->heartbeat_ms = o->heartbeat_ms;
    self->topics = dfb_topics_new();
    a->seqs = dfb_topics_new();
    self->dedupe = dfb_dedupe_new(o->dedupe_window, o->dedupe_ms);
    self->ctx = zmq_ctx_new();
    if (!self->topics || !a->seqs || !self->dedupe || !self->ctx) {
        snprintf(err, errlen, "publish: out of memory");
        dfb_publish_destroy(&self);
        return NULL;
    }
    self->unknown = dfb_topics_get(self->topics, DFB_TOPIC_UNKNOWN, strlen(DFB_TOPIC_UNKNOWN), 1);
    a->pub = zmq_socket(self->ctx, ZMQ_PUB);
    if (!self->unknown || !a->pub) {
        snprintf(err, errlen, "publish: cannot create the socket: %s", zmq_strerror(errno));
        dfb_publish_destroy(&self);
        return NULL;
    }
    int linger = DFB_PUBLISH_LINGER_MS, sndhwm = o->sndhwm;
    int ipv6 = strchr(o->endpoint, '[') != NULL;
    /* HWM first: it only applies to pipes created after it is set. */
    if (zmq_setsockopt(a->pub, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm) != 0 ||
        zmq_setsockopt(a->pub, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        dfb_publish_liveness(a->pub, o->zmtp_heartbeat_ms) != 0 ||
        zmq_setsockopt(a->pub, ZMQ_IPV6, &ipv6, sizeof ipv6) != 0) {
        snprintf(err, errlen, "publish: setsockopt: %s", zmq_strerror(errno));
        dfb_publish_destroy(&self);
        return NULL;
    }
    if (zmq_bind(a->pub, o->endpoint) != 0) {
        snprintf(err, errlen, "config: bridge.publish: cannot bind '%s': %s", o->endpoint,
                 zmq_strerror(errno));
        dfb_publish_destroy(&self);
        return NULL;
    }
    size_t sz = sizeof self->endpoint;
    if (zmq_getsockopt(a->pub, ZMQ_LAST_ENDPOINT, self->endpoint, &sz) != 0)
        snprintf(self->endpoint, sizeof self->endpoint, "%s", o->endpoint);

    char fresh[64];
    if (make_epoch(fresh, sizeof fresh) != 0) {
        snprintf(err, errlen, "publish: no randomness for the epoch");
        dfb_publish_destroy(&self);
        return NULL;
    }
    snprintf(self->epoch, sizeof self->epoch, "%s", fresh);
    if (o->state_dir && *o->state_dir) {
        dfb_journal_opts_t jo = o->journal;
        jo.dir = o->state_dir;
        self->journal = dfb_journal_open(&jo, fresh, wall_ms(), err, errlen);
        if (!self->journal) {
            dfb_publish_destroy(&self);
            return NULL;
        }
        /* The counters continue where the journal stopped. */
        snprintf(self->epoch, sizeof self->epoch, "%s", dfb_journal_epoch(self->journal));
        self->gseq = dfb_journal_last_gseq(self->journal);
        if (dfb_topics_copy(self->topics, dfb_journal_topics(self->journal)) != 0 ||
            dfb_topics_copy(a->seqs, dfb_journal_topics(self->journal)) != 0) {
            snprintf(err, errlen, "publish: out of memory");
            dfb_publish_destroy(&self);
            return NULL;
        }
        a->gseq = self->gseq;
        a->journal = self->journal;
        dfb_journal_scan_tail(self->journal, o->dedupe_window,
                              o->dedupe_ms > 0 ? wall_ms() - o->dedupe_ms : INT64_MIN,
                              rebuild_dedupe, self->dedupe);
    }
    snprintf(a->epoch, sizeof a->epoch, "%s", self->epoch);
    if (o->replay && *o->replay) {
        if (!self->journal) {
            snprintf(err, errlen, "config: bridge.replay: needs bridge.stateDir (the journal)");
            dfb_publish_destroy(&self);
            return NULL;
        }
        a->replay =
            dfb_replay_new(self->ctx, o->replay, self->journal, o->zmtp_heartbeat_ms, err, errlen);
        if (!a->replay) {
            dfb_publish_destroy(&self);
            return NULL;
        }
        snprintf(self->replay_endpoint, sizeof self->replay_endpoint, "%s",
                 dfb_replay_endpoint(a->replay));
    }
    snprintf(a->advertise, sizeof a->advertise, "%s",
             o->replay_advertise && *o->replay_advertise ? o->replay_advertise
                                                         : self->replay_endpoint);

    /* The pipe: bind, connect, then start the actor (pthread_create is the
       memory barrier that lets the sockets move to its thread). */
    char name[64];
    snprintf(name, sizeof name, "inproc://dfb-publish-%p", (void *)self);
    self->pipe = zmq_socket(self->ctx, ZMQ_PAIR);
    a->pipe = zmq_socket(self->ctx, ZMQ_PAIR);
    int hwm = PIPE_HWM, zero = 0;
    if (!self->pipe || !a->pipe || zmq_setsockopt(self->pipe, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(a->pipe, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(self->pipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(a->pipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(a->pipe, name) != 0 || zmq_connect(self->pipe, name) != 0) {
        snprintf(err, errlen, "publish: cannot create the actor pipe: %s", zmq_strerror(errno));
        dfb_publish_destroy(&self);
        return NULL;
    }
    if (pthread_create(&self->thread, NULL, actor_run, a) != 0) {
        snprintf(err, errlen, "publish: cannot start the publisher thread");
        dfb_publish_destroy(&self);
        return NULL;
    }
    self->running = 1;
    return self;
}

dfb_publish_t *
dfb_publish_new(const char *endpoint, int sndhwm, char *err, size_t errlen)
{
    dfb_publish_opts_t o = {.endpoint = endpoint, .sndhwm = sndhwm};
    return dfb_publish_new_opts(&o, err, errlen);
}

void
dfb_publish_destroy(dfb_publish_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_publish_t *self = *self_p;
    actor_t *a = &self->actor;
    if (self->running) {
        /* The pipe is ordered: everything handed over is published first. */
        zmq_send(self->pipe, "$TERM", 5, 0);
        pthread_join(self->thread, NULL);
    }
    if (self->pipe)
        zmq_close(self->pipe);
    if (a->pipe)
        zmq_close(a->pipe);
    dfb_replay_destroy(&a->replay);
    if (a->pub)
        zmq_close(a->pub);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    dfb_journal_destroy(&self->journal);
    dfb_dedupe_destroy(&self->dedupe);
    dfb_topics_destroy(&self->topics);
    dfb_topics_destroy(&a->seqs);
    dfb_buf_free(&self->body);
    dfb_buf_free(&a->hb);
    free(self);
    *self_p = NULL;
}

const char *
dfb_publish_endpoint(const dfb_publish_t *self)
{
    return self->endpoint;
}

const char *
dfb_publish_replay_endpoint(const dfb_publish_t *self)
{
    return self->replay_endpoint;
}

const char *
dfb_publish_epoch(const dfb_publish_t *self)
{
    return self->epoch;
}

void
dfb_publish_set_bot(dfb_publish_t *self, int64_t bot_id)
{
    self->bot = bot_id;
}

static int
send_frame(void *sock, const void *data, size_t len, int flags)
{
    for (;;) {
        if (zmq_send(sock, data, len, flags) >= 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/*  Appends to the journal, retrying with a backoff (100 ms doubling to 5 s)
    until it works or a stop is requested: the batch must not be
    acknowledged before its events are journaled. 0 or -1 (stopped). */
static int
journal_append(dfb_publish_t *self, const dfb_journal_rec_t *rec)
{
    int wait = 100;
    for (;;) {
        if (dfb_journal_append(self->journal, rec, wall_ms()) == 0)
            return 0;
        self->stats.journal_errors++;
        if (dfb_stop_requested())
            return -1;
        dfb_warn("publish: journal append failed; retrying in %d ms (the batch is not "
                 "acknowledged meanwhile)",
                 wait);
        struct pollfd pfd = {dfb_stop_fd(), POLLIN, 0};
        poll(&pfd, pfd.fd >= 0 ? 1 : 0, wait);
        if (wait < 5000)
            wait *= 2;
    }
}

int
dfb_publish_event(dfb_publish_t *self, const dfb_json_t *json, dfb_json_ref_t event_ref)
{
    size_t tlen;
    const char *topic = dfb_transcode_topic(json, event_ref, &tlen);
    dfb_topic_t *slot = dfb_topics_get(self->topics, topic, tlen, 1);
    if (!slot) {
        if (self->stats.topics_overflow++ == 0)
            dfb_warn("publish: more than %d distinct event types; further new types are "
                     "published under %s",
                     DFB_PUBLISH_MAX_TOPICS, DFB_TOPIC_UNKNOWN);
        slot = self->unknown;
    }
    /* The dedupe key: (id, type) as strings; no id, no dedupe. */
    size_t id_len = 0, type_len = 0;
    const char *id = dfb_json_string(json, dfb_json_get(json, event_ref, "id"), &id_len);
    const char *type = dfb_json_string(json, dfb_json_get(json, event_ref, "type"), &type_len);
    if (!id)
        id = "", id_len = 0;
    if (!type)
        type = "", type_len = 0;
    int64_t now = wall_ms();
    if (dfb_dedupe_seen(self->dedupe, id, id_len, type, type_len, now)) {
        self->stats.deduped++;
        dfb_debug("publish: %s event %.*s already published: skipped", slot->topic,
                  (int)(id_len > 64 ? 64 : id_len), id);
        return 0;
    }
    dfb_envelope_t env = {
        .seq = slot->seq + 1,
        .gseq = self->gseq + 1,
        .epoch = self->epoch,
        .ts = (uint64_t)now,
        .bot = self->bot,
    };
    dfb_buf_reset(&self->body);
    if (dfb_transcode_message(&env, json, event_ref, &self->body) != 0) {
        self->stats.encode_errors++;
        dfb_buf_reset(&self->body);
        dfb_warn("publish: cannot encode a %s event: not published", slot->topic);
        return -1;
    }
    if (self->journal) {
        dfb_journal_rec_t rec = {.gseq = env.gseq,
                                 .seq = env.seq,
                                 .topic = slot->topic,
                                 .topic_len = slot->len,
                                 .type = type,
                                 .type_len = type_len,
                                 .id = id,
                                 .id_len = id_len,
                                 .body = self->body.data,
                                 .body_len = self->body.len};
        if (journal_append(self, &rec) != 0)
            return -1;
    }
    slot->seq = env.seq;
    self->gseq = env.gseq;
    dfb_dedupe_add(self->dedupe, id, id_len, type, type_len, now);
    uint64_t head[2] = {env.gseq, env.seq};
    if (send_frame(self->pipe, head, sizeof head, ZMQ_SNDMORE) != 0 ||
        send_frame(self->pipe, slot->topic, slot->len, ZMQ_SNDMORE) != 0 ||
        send_frame(self->pipe, self->body.data, self->body.len, 0) != 0) {
        self->stats.send_errors++;
        dfb_warn("publish: actor pipe: %s (gseq %" PRIu64 " not published; replay has it)",
                 zmq_strerror(errno), env.gseq);
        return self->journal ? 0 : -1;
    }
    return 0;
}

int
dfb_publish_flush(dfb_publish_t *self)
{
    return self->journal ? dfb_journal_flush(self->journal) : 0;
}

void
dfb_publish_stats(dfb_publish_t *self, dfb_publish_stats_t *stats)
{
    /* A round trip through the pipe: the actor has handled everything sent
       before it, so `published` is exact for the events handed over. */
    if (self->running && send_frame(self->pipe, "$SYNC", 5, 0) == 0) {
        char ok[8];
        zmq_recv(self->pipe, ok, sizeof ok, 0);
    }
    *stats = self->stats;
    stats->topics = dfb_topics_count(self->topics);
    actor_t *a = &self->actor;
    stats->published = __atomic_load_n(&a->published, __ATOMIC_RELAXED);
    stats->send_errors += __atomic_load_n(&a->send_errors, __ATOMIC_RELAXED);
    stats->heartbeats = __atomic_load_n(&a->heartbeats, __ATOMIC_RELAXED);
    if (self->journal) {
        dfb_journal_stats_t js;
        dfb_journal_stats(self->journal, &js);
        stats->journaled = js.appended;
    }
    if (a->replay) {
        dfb_replay_stats_t rs;
        dfb_replay_stats(a->replay, &rs);
        stats->replay_requests = rs.requests;
        stats->replay_messages = rs.messages;
        stats->replay_errors = rs.errors;
        stats->replay_abandoned = rs.abandoned;
    }
}

uint64_t
dfb_publish_topic_seq(const dfb_publish_t *self, const char *topic, size_t len)
{
    dfb_topic_t *s = dfb_topics_get(self->topics, topic, len, 0);
    return s ? s->seq : 0;
}

/* ---- self-test ------------------------------------------------------------ */

#include <msgpack.h>

static int s_pfails;
#define PCHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                 \
            s_pfails++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct {
    char topic[64];
    uint64_t seq, gseq, ts;
    int64_t bot;
    char epoch[64];
    char type[64]; /* event.type if a string */
    int has_event;
} got_t;

static const msgpack_object *
map_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static uint64_t
as_u64(const msgpack_object *o)
{
    if (!o)
        return UINT64_MAX;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (uint64_t)o->via.i64;
    return UINT64_MAX;
}

static void
copy_str(const msgpack_object *o, char *out, size_t cap)
{
    out[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < cap) {
        memcpy(out, o->via.str.ptr, o->via.str.size);
        out[o->via.str.size] = '\0';
    }
}

/*  Receives one two-frame message within 2 s. Returns 0 or -1. */
static int
recv_one(void *sub, got_t *g, int timeout_ms)
{
    memset(g, 0, sizeof *g);
    zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return -1;
    int n = zmq_recv(sub, g->topic, sizeof g->topic - 1, 0);
    if (n < 0 || n >= (int)sizeof g->topic)
        return -1;
    g->topic[n] = '\0';
    int more = 0;
    size_t ms = sizeof more;
    zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ms);
    if (!more)
        return -1;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, sub, 0) < 0) {
        zmq_msg_close(&msg);
        return -1;
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = -1;
    if (msgpack_unpack_next(&up, zmq_msg_data(&msg), zmq_msg_size(&msg), &off) ==
            MSGPACK_UNPACK_SUCCESS &&
        off == zmq_msg_size(&msg)) {
        const msgpack_object *root = &up.data;
        g->seq = as_u64(map_get(root, "seq"));
        g->gseq = as_u64(map_get(root, "gseq"));
        g->ts = as_u64(map_get(root, "ts"));
        g->bot = (int64_t)as_u64(map_get(root, "bot"));
        copy_str(map_get(root, "epoch"), g->epoch, sizeof g->epoch);
        const msgpack_object *ev = map_get(root, "event");
        g->has_event = ev != NULL;
        if (ev)
            copy_str(map_get(ev, "type"), g->type, sizeof g->type);
        rc = 0;
    }
    msgpack_unpacked_destroy(&up);
    zmq_msg_close(&msg);
    return rc;
}

static int
epoch_ok(const char *e)
{
    /* YYYYMMDDTHHMMSSZ-xxxxxxxx */
    if (strlen(e) != 25)
        return 0;
    for (int i = 0; i < 25; i++) {
        char c = e[i];
        int ok = i == 8    ? c == 'T'
                 : i == 15 ? c == 'Z'
                 : i == 16 ? c == '-'
                 : i < 15  ? (c >= '0' && c <= '9')
                           : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        if (!ok)
            return 0;
    }
    return 1;
}

int
dfb_publish_test(int verbose)
{
    s_pfails = 0;
    char err[256];
    dfb_publish_t *pub = dfb_publish_new("tcp://127.0.0.1:*", 100000, err, sizeof err);
    if (!pub) {
        printf("FAIL %s\n", err);
        return 1;
    }
    if (verbose)
        printf("  bound %s epoch %s\n", dfb_publish_endpoint(pub), dfb_publish_epoch(pub));
    PCHECK(strncmp(dfb_publish_endpoint(pub), "tcp://127.0.0.1:", 16) == 0);
    PCHECK(epoch_ok(dfb_publish_epoch(pub)));
    dfb_publish_set_bot(pub, 68719476738LL);

    /* A second instance gets another epoch. */
    dfb_publish_t *other = dfb_publish_new("tcp://127.0.0.1:*", 10, err, sizeof err);
    PCHECK(other && strcmp(dfb_publish_epoch(other), dfb_publish_epoch(pub)) != 0);
    dfb_publish_destroy(&other);
    PCHECK(!other);

    /* Binding an endpoint in use fails with a message naming the key. */
    other = dfb_publish_new(dfb_publish_endpoint(pub), 10, err, sizeof err);
    PCHECK(!other && strstr(err, "bridge.publish"));

    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int hwm = 0, linger = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    PCHECK(zmq_connect(sub, dfb_publish_endpoint(pub)) == 0);

    dfb_json_t *json = dfb_json_new();
    /* Probe until the subscription has reached the publisher (slow joiner):
       bounded, and each probe waits on the SUB, not on a sleep. */
    const char *probe = "{\"type\":\"PROBE\"}";
    PCHECK(dfb_json_parse(json, probe, strlen(probe)) == 0);
    got_t g;
    int joined = 0;
    for (int i = 0; i < 200 && !joined; i++) {
        PCHECK(dfb_publish_event(pub, json, 0) == 0);
        joined = recv_one(sub, &g, 20) == 0;
    }
    PCHECK(joined);
    while (recv_one(sub, &g, 50) == 0) /* drain the probes still in flight */
        ;
    dfb_publish_stats_t st;
    dfb_publish_stats(pub, &st);
    uint64_t base = st.published; /* gseq of the last probe */
    PCHECK(dfb_publish_topic_seq(pub, "PROBE", 5) == base);

    const char *batch = "[{\"type\":\"MESSAGESENT\",\"id\":\"a\"},{\"type\":\"ROOMCREATED\"},"
                        "{\"type\":\"MESSAGESENT\",\"id\":\"b\"},{\"notype\":1},5,{\"type\":\"\"},"
                        "{\"type\":7}]";
    PCHECK(dfb_json_parse(json, batch, strlen(batch)) == 0);
    int sent = 0;
    for (dfb_json_ref_t e = dfb_json_first(json, 0); e != DFB_JSON_NONE;
         e = dfb_json_next(json, e)) {
        PCHECK(dfb_publish_event(pub, json, e) == 0);
        sent++;
    }
    PCHECK(sent == 7);
    struct {
        const char *topic;
        uint64_t seq;
        const char *type;
    } want[] = {{"MESSAGESENT", 1, "MESSAGESENT"},
                {"ROOMCREATED", 1, "ROOMCREATED"},
                {"MESSAGESENT", 2, "MESSAGESENT"},
                {"UNKNOWN", 1, ""},
                {"UNKNOWN", 2, ""},
                {"UNKNOWN", 3, ""},
                {"UNKNOWN", 4, ""}};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    for (int i = 0; i < 7; i++) {
        int rc = recv_one(sub, &g, 2000);
        PCHECK(rc == 0);
        if (rc != 0)
            break;
        if (verbose)
            printf("  %-12s seq %llu gseq %llu type '%s'\n", g.topic, (unsigned long long)g.seq,
                   (unsigned long long)g.gseq, g.type);
        PCHECK(strcmp(g.topic, want[i].topic) == 0);
        PCHECK(g.seq == want[i].seq);
        PCHECK(g.gseq == base + 1 + (uint64_t)i);
        PCHECK(strcmp(g.epoch, dfb_publish_epoch(pub)) == 0);
        PCHECK(g.bot == 68719476738LL);
        PCHECK(g.ts + 5000 > now_ms && g.ts <= now_ms + 1000);
        PCHECK(g.has_event && strcmp(g.type, want[i].type) == 0);
    }
    PCHECK(recv_one(sub, &g, 50) != 0); /* nothing more */
    dfb_publish_stats(pub, &st);
    PCHECK(st.published == base + 7 && st.encode_errors == 0 && st.send_errors == 0);
    PCHECK(st.topics == 4); /* UNKNOWN, PROBE, MESSAGESENT, ROOMCREATED */

    /* Topic cap: fill the table, then new types go to UNKNOWN. */
    char ev[64];
    uint64_t unknown_before = dfb_publish_topic_seq(pub, "UNKNOWN", 7);
    int extra = DFB_PUBLISH_MAX_TOPICS - 4 + 5; /* 5 beyond the cap */
    for (int i = 0; i < extra; i++) {
        snprintf(ev, sizeof ev, "{\"type\":\"T%d\"}", i);
        PCHECK(dfb_json_parse(json, ev, strlen(ev)) == 0);
        PCHECK(dfb_publish_event(pub, json, 0) == 0);
    }
    dfb_publish_stats(pub, &st);
    PCHECK(st.topics == DFB_PUBLISH_MAX_TOPICS);
    PCHECK(st.topics_overflow == 5);
    PCHECK(dfb_publish_topic_seq(pub, "UNKNOWN", 7) == unknown_before + 5);
    PCHECK(dfb_publish_topic_seq(pub, "T0", 2) == 1);
    snprintf(ev, sizeof ev, "T%d", extra - 1);
    PCHECK(dfb_publish_topic_seq(pub, ev, strlen(ev)) == 0);
    /* The last one was received under UNKNOWN with its real type. */
    got_t last;
    memset(&last, 0, sizeof last);
    int count = 0;
    while (recv_one(sub, &g, 200) == 0) {
        last = g;
        count++;
    }
    PCHECK(count == extra);
    PCHECK(strcmp(last.topic, "UNKNOWN") == 0 && strcmp(last.type, ev) == 0);
    PCHECK(last.seq == unknown_before + 5);

    dfb_json_destroy(&json);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    dfb_publish_destroy(&pub);
    PCHECK(!pub);
    return s_pfails;
}
