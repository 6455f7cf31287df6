/*  dfb_publish: the sequencer (see dfb_publish.h): seq/gseq, dedupe and the
    journal on the caller's thread, then the message goes to the actor. The
    hot path (dfb_publish_event) allocates nothing of its own once warm: the
    body buffer is reused, a topic's counter is allocated the first time the
    topic is seen, dedupe keys live in preallocated rings, and the journal
    writes from the caller's buffers. */
#include "dfb_publish.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include <openssl/rand.h>

#include "dfb_actor.h"
#include "dfb_clock.h"
#include "dfb_dedupe.h"
#include "dfb_log.h"
#include "dfb_replay.h"
#include "dfb_stop.h"
#include "dfb_zap.h"
#include "dfb_zsock.h"

_Static_assert(DFB_TOPIC_MAX_LEN == DFB_TOPICS_MAX_LEN, "one topic length cap");

struct dfb_publish {
    void *ctx;
    dfb_actor_t *actor;
    dfb_replay_t *replay; /* NULL without a journal */
    dfb_zap_t *zap;       /* NULL without CURVE */
    uint8_t curve_secret[32];
    dfb_zsock_opts_t pub_zo; /* the PUB's options, endpoint = the bound one (re-binds) */
    char endpoint[256];
    char epoch[64];
    int64_t bot;
    uint64_t gseq;        /* last gseq given */
    dfb_topics_t *topics; /* last seq given per topic: the one owner */
    dfb_topic_t *unknown; /* always present: the cap never evicts it */
    dfb_buf_t body;
    /* The batch being filled and the one the actor may still be reading:
       handed over at flush (or early, past DFB_PUBLISH_BATCH_*). */
    dfb_actor_batch_t batch[2];
    int cur;
    int filling; /* batch[cur] was taken (batch_take) and is being filled */
    dfb_journal_t *journal;
    dfb_dedupe_t *dedupe;
    uint64_t max_event_bytes; /* bridge.maxEventBytes; 0 = no limit */
    /* A failing journal, said once: when it started, how many failures. */
    int64_t failing_since;
    uint64_t failures;
    dfb_pub_counters_t c;
    void *cmd_sock;            /* bridge.commands until dfb_publish_take_commands */
    dfb_zsock_opts_t cmd_zo;   /* its options, endpoint = cmd_endpoint */
    char cmd_endpoint[256];
};

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

/*  The journal and the state recovered from it: epoch, gseq, seqs, the
    dedupe window. 0 or -1 (message in err). */
static int
open_journal(dfb_publish_t *self, const dfb_publish_opts_t *o, char *err, size_t errlen)
{
    dfb_journal_opts_t jo = o->journal;
    jo.dir = o->state_dir;
    self->journal = dfb_journal_open(&jo, self->epoch, dfb_wall_ms(), err, errlen);
    if (!self->journal)
        return -1;
    /* The counters continue where the journal stopped; from here on the
       sequencer alone owns them. */
    snprintf(self->epoch, sizeof self->epoch, "%s", dfb_journal_epoch(self->journal));
    self->gseq = dfb_journal_last_gseq(self->journal);
    if (dfb_topics_copy(self->topics, dfb_journal_topics(self->journal)) != 0) {
        snprintf(err, errlen, "publish: out of memory");
        return -1;
    }
    dfb_journal_scan_tail(self->journal, o->dedupe_window,
                          o->dedupe_ms > 0 ? dfb_wall_ms() - o->dedupe_ms : INT64_MIN,
                          rebuild_dedupe, self->dedupe);
    return 0;
}

dfb_publish_t *
dfb_publish_new_opts(const dfb_publish_opts_t *o, char *err, size_t errlen)
{
    dfb_publish_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "publish: out of memory");
        return NULL;
    }
    dfb_buf_init(&self->body);
    dfb_actor_batch_init(&self->batch[0]);
    dfb_actor_batch_init(&self->batch[1]);
    self->max_event_bytes = o->max_event_bytes;
    self->topics = dfb_topics_new();
    self->dedupe = dfb_dedupe_new(o->dedupe_window, o->dedupe_ms);
    self->ctx = zmq_ctx_new();
    if (!self->topics || !self->dedupe || !self->ctx) {
        snprintf(err, errlen, "publish: out of memory");
        dfb_publish_destroy(&self);
        return NULL;
    }
    self->unknown = dfb_topics_get(self->topics, DFB_TOPIC_UNKNOWN, strlen(DFB_TOPIC_UNKNOWN), 1);
    if (!self->unknown) {
        snprintf(err, errlen, "publish: out of memory");
        dfb_publish_destroy(&self);
        return NULL;
    }
    int curve = o->curve_secret && o->curve_clients_dir;
    if (curve) {
        /* The ZAP handler first: libzmq lets every CURVE client in while
           none is bound. */
        memcpy(self->curve_secret, o->curve_secret, sizeof self->curve_secret);
        if (!(self->zap = dfb_zap_new(self->ctx, o->curve_clients_dir, &self->c, err, errlen))) {
            dfb_publish_destroy(&self);
            return NULL;
        }
    }
    dfb_zsock_opts_t zo = {.type = ZMQ_PUB,
                           .endpoint = o->endpoint,
                           .key = "bridge.publish",
                           .sndhwm = o->sndhwm,
                           .linger_ms = DFB_PUBLISH_LINGER_MS,
                           .zmtp_ms = o->zmtp_heartbeat_ms,
                           .curve_secret = curve ? self->curve_secret : NULL};
    void *pub = dfb_zsock_new(self->ctx, &zo, self->endpoint, sizeof self->endpoint, err, errlen);
    if (!pub) {
        dfb_publish_destroy(&self);
        return NULL;
    }
    self->pub_zo = zo;
    self->pub_zo.endpoint = self->endpoint; /* a re-bind takes the same port */
    if (make_epoch(self->epoch, sizeof self->epoch) != 0) {
        zmq_close(pub);
        snprintf(err, errlen, "publish: no randomness for the epoch");
        dfb_publish_destroy(&self);
        return NULL;
    }
    if (o->commands && *o->commands) {
        /* Bound before the replay thread starts, so that its connection
           guard watches it from the start (dfb_fdguard_watch). */
        dfb_zsock_opts_t co = {.type = ZMQ_ROUTER,
                               .endpoint = o->commands,
                               .key = "bridge.commands",
                               .sndhwm = 1000,
                               .linger_ms = 0,
                               .zmtp_ms = o->zmtp_heartbeat_ms,
                               .router_mandatory = 1,
                               .maxmsgsize = o->commands_maxmsgsize,
                               .curve_secret = curve ? self->curve_secret : NULL};
        self->cmd_sock = dfb_zsock_new(self->ctx, &co, self->cmd_endpoint,
                                       sizeof self->cmd_endpoint, err, errlen);
        if (!self->cmd_sock) {
            zmq_close(pub);
            dfb_publish_destroy(&self);
            return NULL;
        }
        self->cmd_zo = co;
        self->cmd_zo.endpoint = self->cmd_endpoint; /* a re-bind takes the same port */
    }
    int has_replay = o->replay && *o->replay;
    if (has_replay && !(o->state_dir && *o->state_dir)) {
        zmq_close(pub);
        snprintf(err, errlen, "config: bridge.replay: needs bridge.stateDir (the journal)");
        dfb_publish_destroy(&self);
        return NULL;
    }
    if (o->state_dir && *o->state_dir) {
        dfb_replay_opts_t ro = {.endpoint = has_replay ? o->replay : NULL,
                                .zmtp_ms = o->zmtp_heartbeat_ms,
                                .counters = &self->c,
                                .curve_secret = curve ? self->curve_secret : NULL,
                                .max_bytes = o->replay_max_bytes,
                                .pub = pub,
                                .commands = self->cmd_sock,
                                .max_connections = o->max_connections,
                                .client_bytes = o->replay_client_bytes};
        if (open_journal(self, o, err, errlen) != 0 ||
            (ro.journal = self->journal, ro.epoch = self->epoch,
             !(self->replay = dfb_replay_new(self->ctx, &ro, err, errlen)))) {
            zmq_close(pub);
            dfb_publish_destroy(&self);
            return NULL;
        }
    }
    const char *bound = self->replay ? dfb_replay_endpoint(self->replay) : "";
    const char *fail_after = getenv("DFB_TEST_ACTOR_FAIL_AFTER");
    dfb_actor_opts_t ao = {
        .heartbeat_ms = o->heartbeat_ms,
        .epoch = self->epoch,
        .advertise = o->replay_advertise && *o->replay_advertise ? o->replay_advertise : bound,
        .gseq = self->gseq,
        .seqs = self->topics,
        .counters = &self->c,
        .fail_after = fail_after ? strtoull(fail_after, NULL, 10) : 0,
        .rebind = curve ? &self->pub_zo : NULL,
        .guard = dfb_replay_guard(self->replay)};
    self->actor = dfb_actor_new(self->ctx, pub, &ao, err, errlen);
    if (!self->actor) {
        dfb_publish_destroy(&self);
        return NULL;
    }
    self->c.topics = dfb_topics_count(self->topics);
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
    /* What was published but not flushed: out once it is in the journal
       (no retry: this is the end). */
    if (self->actor && self->filling && self->batch[self->cur].n &&
        (!self->journal || dfb_journal_commit(self->journal, dfb_wall_ms()) == 0))
        dfb_actor_send_batch(self->actor, &self->batch[self->cur]);
    dfb_actor_destroy(&self->actor); /* publishes what was handed over */
    if (self->cmd_sock) /* never taken by the command thread */
        zmq_close(self->cmd_sock);
    dfb_replay_destroy(&self->replay); /* its readers before the journal */
    dfb_zap_destroy(&self->zap);       /* after every CURVE socket is closed */
    explicit_bzero(self->curve_secret, sizeof self->curve_secret);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    dfb_journal_destroy(&self->journal);
    dfb_dedupe_destroy(&self->dedupe);
    dfb_topics_destroy(&self->topics);
    dfb_buf_free(&self->body);
    dfb_actor_batch_free(&self->batch[0]);
    dfb_actor_batch_free(&self->batch[1]);
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
    return self->replay ? dfb_replay_endpoint(self->replay) : "";
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

const dfb_pub_counters_t *
dfb_publish_counters(const dfb_publish_t *self)
{
    return &self->c;
}

void *
dfb_publish_take_commands(dfb_publish_t *self, dfb_zsock_opts_t *zo)
{
    void *sock = self->cmd_sock;
    self->cmd_sock = NULL;
    if (sock)
        *zo = self->cmd_zo;
    return sock;
}

void *
dfb_publish_ctx(dfb_publish_t *self)
{
    return self->ctx;
}

dfb_pub_counters_t *
dfb_publish_counters_rw(dfb_publish_t *self)
{
    return &self->c;
}

dfb_fdguard_t *
dfb_publish_guard(dfb_publish_t *self)
{
    return dfb_replay_guard(self->replay);
}

dfb_journal_t *
dfb_publish_journal(dfb_publish_t *self)
{
    return self->journal;
}

void
dfb_publish_set_loop(dfb_publish_t *self, const dfb_loop_stats_t *loop)
{
    if (self->replay)
        dfb_replay_set_loop(self->replay, loop);
}

int
dfb_publish_failed(const dfb_publish_t *self)
{
    return self->c.dead_threads > 0;
}

/*  Stages rec in the journal (rec NULL: commits what is staged, one
    writev), retrying with a backoff (100 ms doubling to 5 s) until it works
    or a stop is requested: the batch must not be acknowledged, nor its
    events seen by a subscriber, before they are journaled. A failing
    journal is said once (error) and its recovery once (info); each retry
    is a debug line. 0 or -1 (stopped). */
static int
journal_do(dfb_publish_t *self, const dfb_journal_rec_t *rec)
{
    int wait = 100;
    for (;;) {
        int rc = rec ? dfb_journal_stage(self->journal, rec, dfb_wall_ms())
                     : dfb_journal_commit(self->journal, dfb_wall_ms());
        if (rc == 0) {
            if (self->failing_since) {
                dfb_info("publish: the journal works again after %" PRIu64
                         " failed appends in %.1f s: publishing and acknowledging resume",
                         self->failures, (double)(dfb_mono_ms() - self->failing_since) / 1000);
                self->failing_since = 0;
                self->failures = 0;
                self->c.journal_failing = 0;
            }
            return 0;
        }
        self->c.journal_errors++;
        self->failures++;
        if (!self->failing_since) {
            self->failing_since = dfb_mono_ms();
            self->c.journal_failing = 1;
            uint64_t g = rec ? rec->gseq : self->gseq;
            dfb_logkv(DFB_LOG_ERROR, DFB_FIELDS(dfb_li("gseq", (long long)g)),
                      "publish: the journal cannot append (gseq %" PRIu64
                      "): batches are not acknowledged (Symphony keeps the events) until it "
                      "works again; retrying, heartbeats and replay go on",
                      g);
        }
        if (dfb_stop_requested())
            return -1;
        dfb_debug("publish: journal append failed; retrying in %d ms", wait);
        struct pollfd pfd = {dfb_stop_fd(), POLLIN, 0};
        poll(&pfd, pfd.fd >= 0 ? 1 : 0, wait);
        if (wait < 5000)
            wait *= 2;
    }
}

/*  Commits the journal (retrying), then hands the current batch to the
    actor and switches to the other one, waiting for the actor to be done
    with it first. 0, or -1 (a stop interrupted a failing journal, or the
    actor is dead: counted in pipe_errors). */
static int
hand_over(dfb_publish_t *self)
{
    dfb_actor_batch_t *b = &self->batch[self->cur];
    if (!self->filling || !b->n)
        return 0;
    if (self->journal && journal_do(self, NULL) != 0)
        return -1;
    if (dfb_actor_send_batch(self->actor, b) != 0) {
        self->c.pipe_errors += b->n;
        b->n = 0;
        dfb_buf_reset(&b->buf);
        return -1;
    }
    self->cur ^= 1;
    self->filling = 0;
    return 0;
}

/*  The batch to fill next: the actor must be done with it (a round trip
    through its pipe when it may still be reading it). 0, or -1 when the
    pipe failed. */
static int
batch_take(dfb_publish_t *self, dfb_actor_batch_t *b)
{
    if (dfb_actor_batch_busy(b)) {
        dfb_actor_sync(self->actor);
        /* Done with it, or the actor thread is gone and will not read it. */
        if (dfb_actor_batch_busy(b) && !dfb_actor_dead(self->actor))
            return -1;
    }
    b->n = 0;
    dfb_buf_reset(&b->buf);
    self->filling = 1;
    return 0;
}

int
dfb_publish_event(dfb_publish_t *self, const dfb_json_t *json, dfb_json_ref_t event_ref)
{
    size_t tlen;
    const char *topic = dfb_transcode_topic(json, event_ref, &tlen);
    /* The dedupe key: (id, type) as strings; no id, no dedupe. */
    size_t id_len = 0, type_len = 0;
    const char *id = dfb_json_string(json, dfb_json_get(json, event_ref, "id"), &id_len);
    const char *type = dfb_json_string(json, dfb_json_get(json, event_ref, "type"), &type_len);
    if (type && type_len > DFB_TOPIC_MAX_LEN && type[0] != '_' && self->c.topics_too_long++ == 0)
        dfb_warn("publish: an event type of %zu bytes (over %d): published under %s with its "
                 "type in the event (said once; counted in topics_too_long)",
                 type_len, DFB_TOPIC_MAX_LEN, DFB_TOPIC_UNKNOWN);
    dfb_topic_t *slot = dfb_topics_get(self->topics, topic, tlen, 1);
    if (!slot) {
        if (self->c.topics_overflow++ == 0)
            dfb_warn("publish: the topic table is full (%d event types or %d bytes of names); "
                     "further new types are published under %s",
                     DFB_PUBLISH_MAX_TOPICS, DFB_TOPICS_MAX_BYTES, DFB_TOPIC_UNKNOWN);
        slot = self->unknown;
    } else
        self->c.topics = dfb_topics_count(self->topics);
    if (!id)
        id = "", id_len = 0;
    if (!type)
        type = "", type_len = 0;
    int64_t now = dfb_wall_ms();
    if (dfb_dedupe_seen(self->dedupe, id, id_len, type, type_len, now)) {
        self->c.deduped++;
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
        self->c.encode_errors++;
        dfb_buf_reset(&self->body);
        dfb_logkv(DFB_LOG_WARN, DFB_FIELDS(dfb_ls("topic", slot->topic)),
                  "publish: cannot encode a %s event: not published", slot->topic);
        return -1;
    }
    if (self->max_event_bytes && self->body.len > self->max_event_bytes) {
        /* Too large to publish whole: a stub under the same topic keeps the
           id visible and the seqs whole; the pod's event is acknowledged. */
        uint64_t full = self->body.len;
        dfb_buf_reset(&self->body);
        if (dfb_transcode_stub(&env, json, event_ref, full, &self->body) != 0) {
            self->c.encode_errors++;
            dfb_buf_reset(&self->body);
            dfb_logkv(DFB_LOG_WARN, DFB_FIELDS(dfb_ls("topic", slot->topic)),
                      "publish: cannot encode a %s event stub: not published", slot->topic);
            return -1;
        }
        self->c.events_too_large++;
        dfb_logkv(DFB_LOG_WARN,
                  DFB_FIELDS(dfb_ls("topic", slot->topic), dfb_li("gseq", (long long)env.gseq)),
                  "publish: a %s event of %" PRIu64 " bytes (over bridge.maxEventBytes %" PRIu64
                  ", id %.*s) is published as a stub with too_large",
                  slot->topic, full, self->max_event_bytes, (int)(id_len > 64 ? 64 : id_len), id);
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
        if (journal_do(self, &rec) != 0)
            return -1;
    }
    slot->seq = env.seq;
    self->gseq = env.gseq;
    dfb_dedupe_add(self->dedupe, id, id_len, type, type_len, now);
    /* Publish lag: Symphony's timestamp (ms) to now; a clock ahead of ours is 0. */
    dfb_json_ref_t ts = dfb_json_get(json, event_ref, "timestamp");
    if (ts != DFB_JSON_NONE && dfb_json_type(json, ts) == DFB_JSON_INT &&
        dfb_json_int(json, ts) > 0) {
        int64_t lag = now - dfb_json_int(json, ts);
        lag = lag > 0 ? lag : 0;
        self->c.lag_sum_ms += (uint64_t)lag;
        dfb_hist_observe(self->c.lag_buckets, dfb_lag_bounds_s, DFB_LAG_BUCKETS,
                         (double)lag / 1000.0);
    }
    /* Only a dead actor refuses (it said so; the daemon is stopping): the
       batch must not be acknowledged. */
    dfb_actor_batch_t *b = &self->batch[self->cur];
    if (dfb_actor_dead(self->actor) || (!self->filling && batch_take(self, b) != 0) ||
        dfb_actor_batch_add(b, env.gseq, env.seq, slot->topic, slot->len, self->body.data,
                            self->body.len) != 0) {
        self->c.pipe_errors++;
        return -1;
    }
    /* Bounded whatever the pod sends: a long batch goes out in parts. */
    if (b->n >= DFB_PUBLISH_BATCH_MAX || b->buf.len >= DFB_PUBLISH_BATCH_BYTES)
        return hand_over(self);
    return 0;
}

int
dfb_publish_flush(dfb_publish_t *self)
{
    /* The batch's records in the journal (one writev), then to the actor. */
    if (hand_over(self) != 0)
        return -1;
    int rc = self->journal ? dfb_journal_flush(self->journal) : 0;
    /* A round trip through the actor: the batch is acknowledged only once
       every event of it has reached the PUB socket, never when the actor
       died with some of it still in its pipe. */
    if (dfb_actor_sync(self->actor) != 0)
        rc = -1;
    return rc;
}

void
dfb_publish_stats(dfb_publish_t *self, dfb_publish_stats_t *stats)
{
    /* Events published but not flushed go out first (not while the actor
       is dead: nothing would take them). */
    if (!dfb_actor_dead(self->actor))
        hand_over(self);
    /* A round trip through the pipe: the actor has handled everything sent
       before it, so `published` is exact for the events handed over. */
    dfb_actor_sync(self->actor);
    const dfb_pub_counters_t *c = &self->c;
    memset(stats, 0, sizeof *stats);
    stats->published = c->published;
    stats->encode_errors = c->encode_errors;
    stats->send_errors = c->send_errors + c->pipe_errors;
    stats->topics_overflow = c->topics_overflow;
    stats->topics = (uint32_t)c->topics;
    stats->journal_errors = c->journal_errors;
    stats->deduped = c->deduped;
    stats->heartbeats = c->heartbeats;
    stats->replay_requests = c->replay_requests;
    stats->replay_messages = c->replay_messages;
    stats->replay_errors = c->replay_errors;
    stats->replay_abandoned = c->replay_abandoned;
    stats->pipe_drops = c->pipe_drops;
    if (self->journal) {
        dfb_journal_stats_t js;
        dfb_journal_stats(self->journal, &js);
        stats->journaled = js.appended;
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

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

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
    df_check_failures = 0;
    char err[256];
    dfb_publish_t *pub = dfb_publish_new("tcp://127.0.0.1:*", 100000, err, sizeof err);
    if (!pub) {
        printf("FAIL %s\n", err);
        return 1;
    }
    if (verbose)
        printf("  bound %s epoch %s\n", dfb_publish_endpoint(pub), dfb_publish_epoch(pub));
    CHECK(strncmp(dfb_publish_endpoint(pub), "tcp://127.0.0.1:", 16) == 0);
    CHECK(epoch_ok(dfb_publish_epoch(pub)));
    dfb_publish_set_bot(pub, 68719476738LL);

    /* A second instance gets another epoch. */
    dfb_publish_t *other = dfb_publish_new("tcp://127.0.0.1:*", 10, err, sizeof err);
    CHECK(other && strcmp(dfb_publish_epoch(other), dfb_publish_epoch(pub)) != 0);
    dfb_publish_destroy(&other);
    CHECK(!other);

    /* Binding an endpoint in use fails with a message naming the key. */
    other = dfb_publish_new(dfb_publish_endpoint(pub), 10, err, sizeof err);
    CHECK(!other && strstr(err, "bridge.publish"));

    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int hwm = 0, linger = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    CHECK(zmq_connect(sub, dfb_publish_endpoint(pub)) == 0);

    dfb_json_t *json = dfb_json_new();
    /* Probe until the subscription has reached the publisher (slow joiner):
       bounded, and each probe waits on the SUB, not on a sleep. */
    const char *probe = "{\"type\":\"PROBE\"}";
    CHECK(dfb_json_parse(json, probe, strlen(probe)) == 0);
    got_t g;
    int joined = 0;
    for (int i = 0; i < 200 && !joined; i++) {
        CHECK(dfb_publish_event(pub, json, 0) == 0);
        CHECK(dfb_publish_flush(pub) == 0); /* events go out at flush */
        joined = recv_one(sub, &g, 20) == 0;
    }
    CHECK(joined);
    while (recv_one(sub, &g, 50) == 0) /* drain the probes still in flight */
        ;
    dfb_publish_stats_t st;
    dfb_publish_stats(pub, &st);
    uint64_t base = st.published; /* gseq of the last probe */
    CHECK(dfb_publish_topic_seq(pub, "PROBE", 5) == base);

    const char *batch = "[{\"type\":\"MESSAGESENT\",\"id\":\"a\"},{\"type\":\"ROOMCREATED\"},"
                        "{\"type\":\"MESSAGESENT\",\"id\":\"b\"},{\"notype\":1},5,{\"type\":\"\"},"
                        "{\"type\":7}]";
    CHECK(dfb_json_parse(json, batch, strlen(batch)) == 0);
    int sent = 0;
    for (dfb_json_ref_t e = dfb_json_first(json, 0); e != DFB_JSON_NONE;
         e = dfb_json_next(json, e)) {
        CHECK(dfb_publish_event(pub, json, e) == 0);
        sent++;
    }
    CHECK(sent == 7);
    CHECK(dfb_publish_flush(pub) == 0);
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
    uint64_t now_ms = (uint64_t)dfb_wall_ms();
    for (int i = 0; i < 7; i++) {
        int rc = recv_one(sub, &g, 2000);
        CHECK(rc == 0);
        if (rc != 0)
            break;
        if (verbose)
            printf("  %-12s seq %llu gseq %llu type '%s'\n", g.topic, (unsigned long long)g.seq,
                   (unsigned long long)g.gseq, g.type);
        CHECK(strcmp(g.topic, want[i].topic) == 0);
        CHECK(g.seq == want[i].seq);
        CHECK(g.gseq == base + 1 + (uint64_t)i);
        CHECK(strcmp(g.epoch, dfb_publish_epoch(pub)) == 0);
        CHECK(g.bot == 68719476738LL);
        CHECK(g.ts + 5000 > now_ms && g.ts <= now_ms + 1000);
        CHECK(g.has_event && strcmp(g.type, want[i].type) == 0);
    }
    CHECK(recv_one(sub, &g, 50) != 0); /* nothing more */
    dfb_publish_stats(pub, &st);
    CHECK(st.published == base + 7 && st.encode_errors == 0 && st.send_errors == 0);
    CHECK(st.topics == 4); /* UNKNOWN, PROBE, MESSAGESENT, ROOMCREATED */

    /* Topic cap: fill the table, then new types go to UNKNOWN. */
    char ev[64];
    uint64_t unknown_before = dfb_publish_topic_seq(pub, "UNKNOWN", 7);
    int extra = DFB_PUBLISH_MAX_TOPICS - 4 + 5; /* 5 beyond the cap */
    for (int i = 0; i < extra; i++) {
        snprintf(ev, sizeof ev, "{\"type\":\"T%d\"}", i);
        CHECK(dfb_json_parse(json, ev, strlen(ev)) == 0);
        CHECK(dfb_publish_event(pub, json, 0) == 0);
    }
    dfb_publish_stats(pub, &st);
    CHECK(st.topics == DFB_PUBLISH_MAX_TOPICS);
    CHECK(st.topics_overflow == 5);
    CHECK(dfb_publish_topic_seq(pub, "UNKNOWN", 7) == unknown_before + 5);
    CHECK(dfb_publish_topic_seq(pub, "T0", 2) == 1);
    snprintf(ev, sizeof ev, "T%d", extra - 1);
    CHECK(dfb_publish_topic_seq(pub, ev, strlen(ev)) == 0);
    /* The last one was received under UNKNOWN with its real type. */
    got_t last;
    memset(&last, 0, sizeof last);
    int count = 0;
    /* Every one of them, however slow the machine (a sanitizer build): each
       wait is bounded, then nothing more may come. */
    while (count < extra && recv_one(sub, &g, 5000) == 0) {
        last = g;
        count++;
    }
    CHECK(count == extra);
    CHECK(recv_one(sub, &g, 100) != 0);
    CHECK(strcmp(last.topic, "UNKNOWN") == 0 && strcmp(last.type, ev) == 0);
    CHECK(last.seq == unknown_before + 5);

    dfb_json_destroy(&json);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    dfb_publish_destroy(&pub);
    CHECK(!pub);
    return df_check_failures;
}
