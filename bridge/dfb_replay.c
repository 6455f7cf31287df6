/*  dfb_replay: the replay thread (see dfb_replay.h). It owns the ROUTER and
    the journal readers; each request owns a reader and a cursor, and
    replay_work advances the requests in turn (round robin), each by a slice
    of at most STEP records, SLICE_MS and SLICE_BYTES read, the whole turn
    by at most DFB_REPLAY_TURN_MS and DFB_REPLAY_TURN_BYTES, so one big
    answer cannot starve the others nor the thread's pipe. */
#include "dfb_replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include <pthread.h>
#include <stdatomic.h>

#include "dfb_clock.h"
#include "dfb_fdguard.h"
#include "dfb_log.h"
#include "dfb_mpack.h"
#include "dfb_stop.h"
#include "dfb_zsock.h"

#define STEP 256                       /* records scanned per request per call */
#define RETRY_MS 5                     /* wait before retrying a client whose pipe is full */
#define MAX_ID 255                     /* ZeroMQ routing ids are 1..255 bytes */
#define TICK_MS 1000                   /* journal retention and `interval` fsync checks */
#define RECV_PER_TURN 32               /* requests read per turn */
#define SLICE_MS 2                     /* one request's share of a turn: time */
#define SLICE_BYTES ((int64_t)1 << 20) /* and journal bytes read */
#define REBIND_RETRY_MS 100            /* CURVE: a failed re-bind is tried again */
#define REBIND_CHECK_MS 500            /* CURVE: longest wait before auth_rebinds is looked at */
#define RESUME_SLOTS 16                /* positions remembered for the next request */

/*  What one client's answers hold in the ROUTER: shared by its request and
    every message of it not yet written out (a new request from the same
    client takes it over), freed with the last of them. */
typedef struct {
    _Atomic uint64_t bytes;
    _Atomic int refs;
    dfb_counter_t *total; /* replay_bytes_held */
} acct_t;

/*  Replayed bodies are copied into chunks of CHUNK_BYTES, one request's
    chunk at a time (so a chunk holds one client's messages only and is
    freed in order as that client reads): no malloc per message. A chunk
    lives while the request or any message in it does; bodies over a
    quarter of a chunk get one of their own. */
#define CHUNK_BYTES ((size_t)64 << 10)
typedef struct {
    _Atomic int refs;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
} chunk_t;

/*  Ahead of each zero-copy body: who to charge when libzmq frees it. */
typedef struct {
    acct_t *acct;
    uint64_t n;
    chunk_t *chunk;
} held_t;
#define HELD_HEAD ((sizeof(held_t) + 15) & ~(size_t)15)

typedef enum { ST_READ, ST_SEND, ST_PEEK, ST_END, ST_INFO, ST_DONE } state_t;

typedef struct {
    uint8_t id[MAX_ID];
    size_t id_len;
    uint64_t req;
    int by_topic;
    char *topic; /* topic request */
    size_t topic_len;
    char *topics[DFB_REPLAY_MAX_TOPICS]; /* filter of a gseq request */
    size_t topics_len[DFB_REPLAY_MAX_TOPICS];
    uint32_t ntopics;
    uint64_t from;
    uint32_t limit, count;
    uint64_t last_gseq, last_seq;
    int more;
    const char *code; /* error answers */
    char error[160];
    uint64_t lost_from, lost_to; /* code "damaged" */
    state_t state;
    dfb_journal_reader_t *reader;
    dfb_journal_rec_t rec; /* the record being sent (points into the reader) */
    int frames_sent;       /* of rec, 0..2: a ROUTER accepts a message whole */
    int64_t last_progress;
    acct_t *acct;     /* this client's held bytes */
    chunk_t *chunk;   /* where its next bodies go (one reference) */
    int paused;       /* waiting on a byte cap (counted once per pause) */
    uint64_t scanned; /* journal bytes read for this answer */
} req_t;

struct dfb_replay {
    void *ctx;
    void *pipe; /* owner's end: $TERM */
    pthread_t thread;
    int started;
    _Atomic(const dfb_loop_stats_t *) loop; /* for info; set once the loop exists */
    /* the thread's own */
    void *tpipe; /* thread's end */
    void *sock;  /* NULL: no ROUTER (bridge.replay off), the thread only ticks */
    dfb_journal_t *journal;
    char endpoint[256];
    char epoch[64];
    req_t *reqs[DFB_REPLAY_MAX_ACTIVE];
    size_t nreqs;
    dfb_buf_t out;
    dfb_pub_counters_t *c;
    /* CURVE re-bind (dfb_replay_opts_t.curve_secret) */
    dfb_zsock_opts_t zo; /* the ROUTER's options; endpoint = the bound one */
    int rebinding;       /* sock closed, the next bind at rebind_at */
    int64_t rebind_at;
    uint64_t rebind_seen; /* auth_rebinds when the ROUTER was last (re)bound */
    uint64_t rebind_tries;
    uint64_t rebind_fail; /* test only: attempts made to fail (DFB_TEST_REBIND_FAILS) */
    uint64_t max_bytes, client_bytes;
    size_t rr; /* the request the next turn starts with */
    /* Where recent answers cut by their limit stopped: the next request of
       a late joiner starts there without a seek (dfb_journal_reader_seek_pos). */
    dfb_journal_pos_t resume[RESUME_SLOTS];
    size_t nresume;
    dfb_fdguard_t *guard; /* connection caps on the PUB and the ROUTER (NULL: none) */
};

static void *replay_main(void *arg);

dfb_replay_t *
dfb_replay_new(void *ctx, const dfb_replay_opts_t *o, char *err, size_t errlen)
{
    dfb_replay_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "replay: out of memory");
        return NULL;
    }
    self->ctx = ctx;
    self->journal = o->journal;
    self->c = o->counters;
    self->max_bytes = o->max_bytes ? o->max_bytes : DFB_REPLAY_MAX_BYTES_DEFAULT;
    self->client_bytes = o->client_bytes ? o->client_bytes : DFB_REPLAY_CLIENT_BYTES_DEFAULT;
    snprintf(self->epoch, sizeof self->epoch, "%s", o->epoch);
    dfb_buf_init(&self->out);
    if (o->endpoint && *o->endpoint) {
        dfb_zsock_opts_t zo = {.type = ZMQ_ROUTER,
                               .endpoint = o->endpoint,
                               .key = "bridge.replay",
                               .sndhwm = 2 * DFB_REPLAY_MAX_LIMIT + 16,
                               .linger_ms = 0,
                               .zmtp_ms = o->zmtp_ms,
                               .router_mandatory = 1,
                               .maxmsgsize = DFB_REPLAY_MAX_REQUEST,
                               .curve_secret = o->curve_secret};
        self->sock = dfb_zsock_new(ctx, &zo, self->endpoint, sizeof self->endpoint, err, errlen);
        if (!self->sock) {
            dfb_replay_destroy(&self);
            return NULL;
        }
        self->zo = zo;
        self->zo.endpoint = self->endpoint; /* a re-bind takes the same port */
        self->rebind_seen = self->c->auth_rebinds;
        const char *rf = getenv("DFB_TEST_REBIND_FAILS");
        self->rebind_fail = rf ? strtoull(rf, NULL, 10) : 0;
    }
    /* Connection caps: watched from here, before the sockets' threads run. */
    self->guard = dfb_fdguard_new(ctx, dfb_fdguard_default_cap(o->max_connections), self->c);
    if (self->guard && o->pub)
        dfb_fdguard_watch(self->guard, o->pub, "bridge.publish");
    if (self->guard && self->sock)
        dfb_fdguard_watch(self->guard, self->sock, "bridge.replay");
    if (self->guard && o->commands)
        dfb_fdguard_watch(self->guard, o->commands, "bridge.commands");
    char name[64];
    snprintf(name, sizeof name, "inproc://dfb-replay-%p", (void *)self);
    self->pipe = zmq_socket(ctx, ZMQ_PAIR);
    self->tpipe = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    if (!self->pipe || !self->tpipe ||
        zmq_setsockopt(self->pipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(self->tpipe, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(self->tpipe, name) != 0 || zmq_connect(self->pipe, name) != 0) {
        snprintf(err, errlen, "replay: cannot create the thread pipe: %s", zmq_strerror(errno));
        dfb_replay_destroy(&self);
        return NULL;
    }
    /* pthread_create is the barrier that hands the ROUTER to the thread. */
    if (pthread_create(&self->thread, NULL, replay_main, self) != 0) {
        snprintf(err, errlen, "replay: cannot start the replay thread");
        dfb_replay_destroy(&self);
        return NULL;
    }
    self->started = 1;
    return self;
}

void
dfb_replay_set_loop(dfb_replay_t *self, const dfb_loop_stats_t *loop)
{
    atomic_store_explicit(&self->loop, loop, memory_order_release);
}

static acct_t *
acct_new(dfb_counter_t *total)
{
    acct_t *a = calloc(1, sizeof *a);
    if (a) {
        a->refs = 1;
        a->total = total;
    }
    return a;
}

/*  Drops a reference; any thread (libzmq's I/O thread frees messages). */
static void
acct_release(acct_t *a)
{
    if (a && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        free(a);
}

/*  Drops a reference; any thread. */
static void
chunk_release(chunk_t *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        free(c);
}

/*  Room for a held body of len bytes in r's chunk (a new one when it is
    full, one of its own when len is large), with a reference taken for
    it. NULL when out of memory. */
static held_t *
chunk_alloc(req_t *r, size_t len)
{
    size_t need = HELD_HEAD + ((len + 15) & ~(size_t)15);
    if (need > CHUNK_BYTES / 4 || !r->chunk || r->chunk->cap - r->chunk->used < need) {
        size_t cap = need > CHUNK_BYTES / 4 ? need : CHUNK_BYTES;
        chunk_t *c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        atomic_init(&c->refs, 1);
        c->used = 0;
        c->cap = cap;
        if (need > CHUNK_BYTES / 4) {
            c->used = need;
            held_t *h = (held_t *)c->data;
            h->chunk = c;
            return h; /* its only reference is the message's */
        }
        chunk_release(r->chunk);
        r->chunk = c;
    }
    held_t *h = (held_t *)(r->chunk->data + r->chunk->used);
    r->chunk->used += need;
    atomic_fetch_add_explicit(&r->chunk->refs, 1, memory_order_relaxed);
    h->chunk = r->chunk;
    return h;
}

/*  libzmq's free function of a replayed body: the bytes leave both counts. */
static void
held_free(void *data, void *hint)
{
    (void)hint;
    held_t *h = (held_t *)((char *)data - HELD_HEAD);
    h->acct->bytes -= h->n;
    *h->acct->total -= h->n;
    acct_release(h->acct);
    chunk_release(h->chunk);
}

static void
req_free(req_t *r)
{
    if (!r)
        return;
    acct_release(r->acct);
    chunk_release(r->chunk);
    dfb_journal_reader_destroy(&r->reader);
    free(r->topic);
    for (uint32_t i = 0; i < r->ntopics; i++)
        free(r->topics[i]);
    free(r);
}

/*  The client in log lines: its routing id in hex (at most 16 bytes). */
static void
client_hex(const req_t *r, char out[33])
{
    size_t n = r->id_len < 16 ? r->id_len : 16;
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", r->id[i]);
    out[2 * n] = '\0';
}

/*  Frees a finished request, counting the segments its filter skipped. */
static void
req_done(dfb_replay_t *self, req_t *r)
{
    char client[33];
    client_hex(r, client);
    dfb_logkv(DFB_LOG_DEBUG,
              DFB_FIELDS(dfb_ls("client", client), dfb_li("req", (long long)r->req),
                         dfb_li("from", (long long)r->from), dfb_li("to", (long long)r->last_gseq),
                         dfb_li("count", r->count), dfb_ls("code", r->code ? r->code : "ok")),
              "replay: request %llu answered, %u message(s)", (unsigned long long)r->req, r->count);
    if (r->reader)
        self->c->replay_segments_skipped += dfb_journal_reader_skipped(r->reader);
    req_free(r);
}

void
dfb_replay_destroy(dfb_replay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_replay_t *self = *self_p;
    if (self->started) {
        zmq_send(self->pipe, "$TERM", 5, 0);
        pthread_join(self->thread, NULL);
    }
    for (size_t i = 0; i < self->nreqs; i++)
        req_free(self->reqs[i]);
    if (self->pipe)
        zmq_close(self->pipe);
    if (self->tpipe)
        zmq_close(self->tpipe);
    dfb_fdguard_destroy(&self->guard);
    if (self->sock)
        zmq_close(self->sock);
    dfb_buf_free(&self->out);
    free(self);
    *self_p = NULL;
}

dfb_fdguard_t *
dfb_replay_guard(dfb_replay_t *self)
{
    return self ? self->guard : NULL;
}

const char *
dfb_replay_endpoint(const dfb_replay_t *self)
{
    return self->endpoint;
}

/* ---- requests ------------------------------------------------------------- */

static void
fail(req_t *r, const char *code, const char *message)
{
    r->code = code;
    snprintf(r->error, sizeof r->error, "%s", message);
    r->state = ST_END;
}

static int
key_is(const char *k, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(k, name, len) == 0;
}

static char *
dup_bytes(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/*  Parses the request frame into r; on a bad request, r->state is ST_END
    with code "bad_request". */
static void
parse_request(req_t *r, const uint8_t *data, size_t len, const char *epoch)
{
    dfb_mpack_reader_t rd = {data, data + len};
    uint32_t n;
    uint64_t v = 0, limit = DFB_REPLAY_MAX_LIMIT, from_seq = 0;
    int has_v = 0, has_gseq = 0, has_seq = 0, has_topic = 0, has_topics = 0, info = 0;
    const char *ep = NULL;
    size_t ep_len = 0;
    r->state = ST_READ;
    if (dfb_mpack_read_map(&rd, &n) != 0) {
        fail(r, "bad_request", "the request is not a msgpack map");
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        size_t kl;
        if (dfb_mpack_read_str(&rd, &k, &kl) != 0) {
            fail(r, "bad_request", "keys must be strings");
            return;
        }
        int bad = 0;
        if (key_is(k, kl, "v")) {
            bad = dfb_mpack_read_uint(&rd, &v) != 0;
            has_v = 1;
        } else if (key_is(k, kl, "req")) {
            bad = dfb_mpack_read_uint(&rd, &r->req) != 0;
        } else if (key_is(k, kl, "epoch")) {
            bad = dfb_mpack_read_str(&rd, &ep, &ep_len) != 0;
        } else if (key_is(k, kl, "from_gseq")) {
            bad = dfb_mpack_read_uint(&rd, &r->from) != 0;
            has_gseq = 1;
        } else if (key_is(k, kl, "from_seq")) {
            bad = dfb_mpack_read_uint(&rd, &from_seq) != 0;
            has_seq = 1;
        } else if (key_is(k, kl, "info")) {
            bad = rd.p >= rd.end || (*rd.p != 0xc2 && *rd.p != 0xc3);
            info = !bad && *rd.p++ == 0xc3;
        } else if (key_is(k, kl, "limit")) {
            bad = dfb_mpack_read_uint(&rd, &limit) != 0;
        } else if (key_is(k, kl, "topic")) {
            const char *t;
            size_t tl;
            bad = dfb_mpack_read_str(&rd, &t, &tl) != 0;
            if (!bad && !has_topic) {
                r->topic = dup_bytes(t, tl);
                r->topic_len = tl;
                bad = !r->topic;
            }
            has_topic = 1;
        } else if (key_is(k, kl, "topics")) {
            uint32_t m;
            bad = dfb_mpack_read_array(&rd, &m) != 0 || m > DFB_REPLAY_MAX_TOPICS || has_topics;
            for (uint32_t j = 0; !bad && j < m; j++) {
                const char *t;
                size_t tl;
                bad = dfb_mpack_read_str(&rd, &t, &tl) != 0;
                if (!bad) {
                    r->topics[r->ntopics] = dup_bytes(t, tl);
                    r->topics_len[r->ntopics] = tl;
                    bad = !r->topics[r->ntopics++];
                }
            }
            has_topics = 1;
        } else {
            bad = dfb_mpack_skip(&rd, 32) != 0; /* unknown keys are ignored */
        }
        if (bad) {
            fail(r, "bad_request", "bad value type");
            snprintf(r->error, sizeof r->error, "bad value for key '%.*s'", kl < 32 ? (int)kl : 32,
                     k);
            return;
        }
    }
    if (rd.p != rd.end)
        fail(r, "bad_request", "trailing bytes after the request map");
    else if (!has_v || v != 1)
        fail(r, "bad_request", "\"v\" must be 1");
    else if (info && (has_gseq || has_topic || has_seq || has_topics))
        fail(r, "bad_request", "an info request has no from_gseq, topic, from_seq or topics");
    else if (info) {
        r->state = ST_INFO;
        return;
    } else if (has_gseq == (has_topic || has_seq))
        fail(r, "bad_request", "give either from_gseq (and topics) or topic and from_seq");
    else if (has_topic != has_seq)
        fail(r, "bad_request", "a topic request needs both topic and from_seq");
    else if (has_topic && has_topics)
        fail(r, "bad_request", "topics filters a from_gseq request only");
    else if (limit == 0)
        fail(r, "bad_request", "limit must be at least 1");
    else if (ep && (ep_len != strlen(epoch) || memcmp(ep, epoch, ep_len) != 0)) {
        fail(r, "epoch", "");
        snprintf(r->error, sizeof r->error, "the bridge's epoch is %s", epoch);
    }
    if (r->state == ST_END)
        return;
    r->by_topic = has_topic;
    if (has_topic)
        r->from = from_seq;
    if (r->from == 0)
        r->from = 1;
    r->limit = limit > DFB_REPLAY_MAX_LIMIT ? DFB_REPLAY_MAX_LIMIT : (uint32_t)limit;
    r->last_seq = r->from - 1;
    r->last_gseq = r->by_topic ? 0 : r->from - 1;
}

static int send_end(dfb_replay_t *self, req_t *r, const char *epoch);

static void
start(dfb_replay_t *self, req_t *r)
{
    if (r->state != ST_READ)
        return;
    /* The journal knows every topic it holds: a filter naming none of
       them matches nothing, answered at once without a scan. */
    int known = !r->by_topic && !r->ntopics;
    if (r->by_topic)
        known = dfb_journal_has_topic(self->journal, r->topic, r->topic_len);
    for (uint32_t i = 0; i < r->ntopics && !known; i++)
        known = dfb_journal_has_topic(self->journal, r->topics[i], r->topics_len[i]);
    if (!known) {
        self->c->replay_skipped++;
        r->state = ST_END;
        return;
    }
    r->reader = dfb_journal_reader_new(self->journal);
    if (!r->reader) {
        fail(r, "internal", "out of memory: ask again later");
        return;
    }
    if ((r->by_topic
             ? dfb_journal_reader_filter(r->reader, &r->topic, &r->topic_len, 1)
             : dfb_journal_reader_filter(r->reader, r->topics, r->topics_len, r->ntopics)) != 0) {
        fail(r, "internal", "out of memory: ask again later");
        return;
    }
    const dfb_journal_pos_t *pos = NULL;
    for (size_t i = 0; i < RESUME_SLOTS && !r->by_topic && !r->ntopics && !pos; i++)
        if (self->resume[i].gseq == r->from)
            pos = &self->resume[i];
    int rc = r->by_topic ? dfb_journal_reader_seek_topic(r->reader, r->topic, r->topic_len, r->from)
             : pos       ? dfb_journal_reader_seek_pos(r->reader, r->from, pos)
                         : dfb_journal_reader_seek_gseq(r->reader, r->from);
    if (rc == DFB_JOURNAL_GONE)
        fail(r, "gone",
             r->by_topic ? "from_seq is older than the journal's retention"
                         : "from_gseq is older than the journal's retention");
    else if (rc == DFB_JOURNAL_NOMEM)
        fail(r, "internal", "out of memory: ask again later");
    else if (rc != 0)
        fail(r, "io_error", "the journal cannot be read at that position: ask again later");
}

static void
replay_receive(dfb_replay_t *self, const char *epoch, int64_t now_ms)
{
    /* A bounded intake per turn, so clients that keep asking cannot keep
       the thread from serving what was asked (zmq_poll reports the rest). */
    for (int k = 0; k < RECV_PER_TURN; k++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        /* Frames: routing id, then the request: exactly one frame. The first
           is kept (its req lets a client match the error answer); the rest
           are read and dropped. */
        int frames = 0, ok = 1;
        zmq_msg_init(&body);
        for (int more = zmq_msg_more(&id); more && ok;) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            if (zmq_msg_recv(frames ? &extra : &body, self->sock, 0) < 0)
                ok = 0;
            else
                more = zmq_msg_more(frames ? &extra : &body);
            zmq_msg_close(&extra);
            frames++;
        }
        self->c->replay_requests++;
        if (!ok || zmq_msg_size(&id) == 0 || zmq_msg_size(&id) > MAX_ID) {
            /* A ROUTER delivers whole messages: unreachable unless the
               socket itself fails, and then there is no one to answer. */
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            continue;
        }
        req_t *r = calloc(1, sizeof *r);
        if (!r) {
            /* Still an answer: the client must not wait for a timeout. */
            req_t oom;
            memset(&oom, 0, sizeof oom);
            oom.id_len = zmq_msg_size(&id);
            memcpy(oom.id, zmq_msg_data(&id), oom.id_len);
            fail(&oom, "internal", "out of memory: ask again later");
            if (send_end(self, &oom, epoch) != 0)
                self->c->replay_abandoned++;
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            continue;
        }
        r->id_len = zmq_msg_size(&id);
        memcpy(r->id, zmq_msg_data(&id), r->id_len);
        r->last_progress = now_ms;
        if (frames >= 1)
            parse_request(r, zmq_msg_data(&body), zmq_msg_size(&body), epoch);
        if (frames != 1) {
            r->code = "bad_request";
            snprintf(r->error, sizeof r->error, "a request is exactly one frame (got %d)", frames);
            r->state = ST_END;
        }
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        /* One request in flight per client: a new one replaces the old. */
        for (size_t i = 0; i < self->nreqs; i++) {
            req_t *o = self->reqs[i];
            if (o->id_len == r->id_len && memcmp(o->id, r->id, r->id_len) == 0 &&
                o->state != ST_DONE) {
                o->state = ST_DONE;
                self->c->replay_abandoned++;
            }
            /* The client's held bytes follow it from request to request. */
            if (!r->acct && o->acct && o->id_len == r->id_len &&
                memcmp(o->id, r->id, r->id_len) == 0) {
                r->acct = o->acct;
                atomic_fetch_add_explicit(&r->acct->refs, 1, memory_order_relaxed);
            }
        }
        if (!r->acct && !(r->acct = acct_new(&self->c->replay_bytes_held)))
            fail(r, "internal", "out of memory: ask again later");
        size_t live = 0;
        for (size_t i = 0; i < self->nreqs; i++)
            if (self->reqs[i]->state != ST_DONE)
                self->reqs[live++] = self->reqs[i];
            else
                req_done(self, self->reqs[i]);
        self->nreqs = live;
        if (self->nreqs == DFB_REPLAY_MAX_ACTIVE) {
            /* Too many at once: an immediate error answer, never a silent drop. */
            r->code = "busy";
            snprintf(r->error, sizeof r->error, "%d requests in progress, ask again later",
                     DFB_REPLAY_MAX_ACTIVE);
            r->state = ST_END;
            if (send_end(self, r, epoch) != 0)
                self->c->replay_abandoned++;
            req_free(r);
            continue;
        }
        start(self, r);
        self->reqs[self->nreqs++] = r;
    }
}

/* ---- answers -------------------------------------------------------------- */

/*  Sends one frame to the client without blocking: 0 sent, 1 its pipe is
    full (try later), -1 the client is gone or the send failed. */
static int
send_frame(dfb_replay_t *self, const void *data, size_t len, int more)
{
    for (;;) {
        if (zmq_send(self->sock, data, len, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 1 : -1;
    }
}

/*  Sends [id][topic][body]. A ROUTER takes a message whole once its first
    frame is accepted, so only the id frame can be refused for a full pipe. */
static int
send_msg(dfb_replay_t *self, req_t *r, const void *topic, size_t tlen, const void *body,
         size_t blen)
{
    int rc = send_frame(self, r->id, r->id_len, 1);
    if (rc != 0)
        return rc;
    if (send_frame(self, topic, tlen, 1) != 0 || send_frame(self, body, blen, 0) != 0)
        return -1;
    return 0;
}

/*  Sends [id][topic][record body] with the body as a zero-copy message
    charged to the client's and the total held bytes until libzmq frees it
    (written to the network, or dropped with the client's pipe). 0 sent,
    1 the client's pipe is full, 2 a byte cap says wait, -1 gone. */
static int
send_record(dfb_replay_t *self, req_t *r)
{
    const dfb_journal_rec_t *rec = &r->rec;
    uint64_t n = rec->topic_len + rec->body_len;
    uint64_t mine = r->acct->bytes, all = *r->acct->total;
    /* A client holding nothing may go over max_bytes into a headroom of a
       quarter of it, one message at a time, so stalled clients that fill
       max_bytes cannot starve the others; the total stays under 1.25 x
       max_bytes (or one message when nothing at all is held). */
    if (mine > 0 ? mine + n > self->client_bytes || all + n > self->max_bytes
                 : all > 0 && all + n > self->max_bytes + self->max_bytes / 4)
        return 2;
    held_t *h = chunk_alloc(r, rec->body_len ? rec->body_len : 1);
    if (!h)
        return 1; /* out of memory: try again later, as for a full pipe */
    uint8_t *data = (uint8_t *)h + HELD_HEAD;
    memcpy(data, rec->body, rec->body_len);
    h->acct = r->acct;
    h->n = n;
    atomic_fetch_add_explicit(&r->acct->refs, 1, memory_order_relaxed);
    r->acct->bytes += n;
    *r->acct->total += n;
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, data, rec->body_len, held_free, NULL) != 0) {
        held_free(data, NULL);
        return 1;
    }
    int rc = send_frame(self, r->id, r->id_len, 1);
    if (rc == 0 && send_frame(self, rec->topic, rec->topic_len, 1) != 0)
        rc = -1;
    if (rc == 0) {
        for (;;) {
            if (zmq_msg_send(&m, self->sock, ZMQ_DONTWAIT) >= 0)
                break;
            if (errno != EINTR) {
                rc = -1;
                break;
            }
        }
    }
    zmq_msg_close(&m); /* after a send it is empty; else it frees the body */
    return rc;
}

int
dfb_replay_end_encode(dfb_buf_t *b, const dfb_replay_end_t *e)
{
    int err = e->code != NULL;
    int damaged = err && strcmp(e->code, "damaged") == 0;
    uint32_t n = 9 + (e->by_topic ? 1 : 0) + (err ? 2 : 0) + (damaged ? 2 : 0);
    int rc = dfb_mpack_map(b, n);
    rc |= dfb_mpack_cstr(b, "v") | dfb_mpack_uint(b, 1);
    rc |= dfb_mpack_cstr(b, "req") | dfb_mpack_uint(b, e->req);
    rc |= dfb_mpack_cstr(b, "status") | dfb_mpack_cstr(b, err ? "error" : "ok");
    rc |= dfb_mpack_cstr(b, "count") | dfb_mpack_uint(b, e->count);
    rc |= dfb_mpack_cstr(b, "last_gseq") | dfb_mpack_uint(b, e->last_gseq);
    if (e->by_topic)
        rc |= dfb_mpack_cstr(b, "last_seq") | dfb_mpack_uint(b, e->last_seq);
    rc |= dfb_mpack_cstr(b, "more") | dfb_mpack_bool(b, e->more);
    rc |= dfb_mpack_cstr(b, "head_gseq") | dfb_mpack_uint(b, e->head_gseq);
    rc |= dfb_mpack_cstr(b, "oldest_gseq") | dfb_mpack_uint(b, e->oldest_gseq);
    rc |= dfb_mpack_cstr(b, "epoch") | dfb_mpack_cstr(b, e->epoch);
    if (err) {
        rc |= dfb_mpack_cstr(b, "code") | dfb_mpack_cstr(b, e->code);
        rc |= dfb_mpack_cstr(b, "error") | dfb_mpack_cstr(b, e->error ? e->error : "");
    }
    if (damaged) {
        rc |= dfb_mpack_cstr(b, "lost_from") | dfb_mpack_uint(b, e->lost_from);
        rc |= dfb_mpack_cstr(b, "lost_to") | dfb_mpack_uint(b, e->lost_to);
    }
    return rc ? -1 : 0;
}

static int
send_end(dfb_replay_t *self, req_t *r, const char *epoch)
{
    dfb_journal_stats_t js;
    dfb_journal_stats(self->journal, &js);
    dfb_buf_t *b = &self->out;
    b->len = 0;
    dfb_replay_end_t e = {.req = r->req,
                          .count = r->count,
                          .last_gseq = r->last_gseq,
                          .last_seq = r->last_seq,
                          .head_gseq = js.head_gseq,
                          .oldest_gseq = js.oldest_gseq,
                          .by_topic = r->by_topic,
                          .more = r->more,
                          .epoch = epoch,
                          .code = r->code,
                          .error = r->error,
                          .lost_from = r->lost_from,
                          .lost_to = r->lost_to};
    if (dfb_replay_end_encode(b, &e) != 0)
        return -1;
    int rc = send_msg(self, r, DFB_REPLAY_TOPIC_END, strlen(DFB_REPLAY_TOPIC_END), b->data, b->len);
    if (rc == 0 && r->code)
        self->c->replay_errors++;
    else if (rc == 0)
        self->c->replay_ok++;
    return rc;
}

/*  The info answer: [_info][counters], the same table as the exit log. */
static int
send_info(dfb_replay_t *self, req_t *r)
{
    uint64_t values[128];
    const char *names[128];
    size_t n = dfb_info_nrows < 128 ? dfb_info_nrows : 128;
    dfb_info_sources_t src = {.loop = atomic_load_explicit(&self->loop, memory_order_acquire),
                              .pub = self->c,
                              .journal = self->journal};
    dfb_info_values(&src, dfb_mono_ms(), values);
    for (size_t i = 0; i < n; i++)
        names[i] = dfb_info_rows[i].name;
    dfb_buf_t *b = &self->out;
    b->len = 0;
    if (dfb_info_encode(b, r->req, self->epoch, (uint64_t)dfb_wall_ms(), names, values, n) != 0) {
        fail(r, "internal", "out of memory: ask again later");
        return 0; /* answered by the end marker instead */
    }
    return send_msg(self, r, DFB_REPLAY_TOPIC_INFO, strlen(DFB_REPLAY_TOPIC_INFO), b->data, b->len);
}

static int
matches(const req_t *r, const dfb_journal_rec_t *rec)
{
    if (r->by_topic)
        return rec->topic_len == r->topic_len && memcmp(rec->topic, r->topic, r->topic_len) == 0 &&
               rec->seq >= r->from;
    if (rec->gseq < r->from)
        return 0;
    if (!r->ntopics)
        return 1;
    for (uint32_t i = 0; i < r->ntopics; i++)
        if (rec->topic_len == r->topics_len[i] &&
            memcmp(rec->topic, r->topics[i], rec->topic_len) == 0)
            return 1;
    return 0;
}

/*  What is left of the current turn's work (DFB_REPLAY_TURN_*). */
typedef struct {
    int64_t deadline_ms;
    int64_t bytes_left;
} budget_t;

static int
budget_spent(budget_t *b, int n)
{
    /* The clock is read every 16 records: cheap, and a turn overruns by
       at most 16 records. */
    return b->bytes_left <= 0 || (n % 16 == 15 && dfb_mono_ms() >= b->deadline_ms);
}

/*  Advances one request by at most STEP records within the turn's budget.
    Returns 1 when it made progress, 0 when it waits for its client. */
static int
step(dfb_replay_t *self, req_t *r, const char *epoch, int64_t now_ms, budget_t *b)
{
    int progress = 0;
    for (int n = 0; n < STEP && r->state != ST_DONE && !budget_spent(b, n); n++) {
        if (r->state == ST_READ || r->state == ST_PEEK) {
            int rc = dfb_journal_reader_next(r->reader, &r->rec);
            /* Records stepped over by the filter count for the scan budget;
               their cost is time (the slice's clock), not bytes read. */
            r->scanned += dfb_journal_reader_take_passed(r->reader);
            if (rc == DFB_JOURNAL_PASSED) {
                uint64_t passed_to = dfb_journal_reader_last(r->reader);
                if (r->ntopics && r->state == ST_READ && r->scanned >= DFB_REPLAY_SCAN_BYTES &&
                    passed_to >= r->from && passed_to > r->last_gseq) {
                    r->last_gseq = passed_to;
                    r->more = 1;
                    r->state = ST_END;
                    self->c->replay_scan_cut++;
                }
            } else if (rc == 0) {
                r->state = ST_END;
            } else if (rc == DFB_JOURNAL_READER_GONE) {
                fail(r, "gone", "retention deleted the following records during the answer");
            } else if (rc == DFB_JOURNAL_CORRUPT) {
                /* Lost for good (damaged on disk): the client counts the range
                   and asks again after it, so what follows is not lost too. */
                dfb_journal_reader_lost(r->reader, &r->lost_from, &r->lost_to);
                char msg[160];
                snprintf(msg, sizeof msg,
                         "gseq %" PRIu64 "..%" PRIu64
                         " are damaged in the journal: count them lost, ask again from %" PRIu64,
                         r->lost_from, r->lost_to, r->lost_to + 1);
                fail(r, "damaged", msg);
            } else if (rc == DFB_JOURNAL_NOMEM) {
                fail(r, "internal", "out of memory: ask again later");
            } else if (rc < 0) {
                fail(r, "io_error", "a journal record cannot be read: ask again later");
            } else {
                uint64_t read =
                    49 + r->rec.topic_len + r->rec.type_len + r->rec.id_len + r->rec.body_len;
                b->bytes_left -= (int64_t)read;
                r->scanned += read;
                if (matches(r, &r->rec)) {
                    if (r->state == ST_PEEK) {
                        r->more = 1;
                        r->state = ST_END;
                        if (!r->by_topic && !r->ntopics && r->rec.gseq == r->last_gseq + 1)
                            dfb_journal_reader_pos(r->reader,
                                                   &self->resume[self->nresume++ % RESUME_SLOTS]);
                    } else
                        r->state = ST_SEND;
                } else if (r->ntopics && r->state == ST_READ &&
                           r->scanned >= DFB_REPLAY_SCAN_BYTES) {
                    /* The scan budget of a filtered answer: nothing up to
                       here matched after what was sent; ask again after it. */
                    r->last_gseq = r->rec.gseq;
                    r->more = 1;
                    r->state = ST_END;
                    self->c->replay_scan_cut++;
                }
            }
            progress = 1;
            continue;
        }
        int rc;
        if (r->state == ST_INFO) {
            if (!r->count++) /* counted once, and included in its own answer */
                self->c->info_requests++;
            rc = send_info(self, r);
            if (rc == 1)
                break;
            if (rc == 0 && r->state == ST_INFO) {
                r->state = ST_DONE;
            } else if (rc < 0) {
                r->state = ST_DONE;
                self->c->replay_abandoned++;
            }
            progress = 1;
            r->last_progress = now_ms;
            continue;
        }
        if (r->state == ST_SEND)
            rc = send_record(self, r);
        else
            rc = send_end(self, r, epoch);
        if (rc == 2) {
            if (!r->paused) {
                r->paused = 1;
                self->c->replay_paused++;
            }
            break; /* over a byte cap: later, as its client reads */
        }
        if (rc == 1)
            break; /* the client's pipe is full: later */
        r->paused = 0;
        if (rc < 0) {
            r->state = ST_DONE;
            self->c->replay_abandoned++;
            return 1;
        }
        progress = 1;
        r->last_progress = now_ms;
        if (r->state == ST_END) {
            r->state = ST_DONE;
            break;
        }
        self->c->replay_messages++;
        r->count++;
        r->last_gseq = r->rec.gseq;
        r->last_seq = r->rec.seq;
        r->state = r->count == r->limit ? ST_PEEK : ST_READ;
    }
    if (progress)
        r->last_progress = now_ms;
    else if (budget_spent(b, 15))
        return 1; /* not its turn's fault: the budget ran out before it */
    else if (now_ms - r->last_progress > DFB_REPLAY_STALL_MS) {
        char client[33];
        client_hex(r, client);
        dfb_logkv(DFB_LOG_WARN,
                  DFB_FIELDS(dfb_ls("client", client), dfb_li("from", (long long)r->from),
                             dfb_li("to", (long long)r->last_gseq)),
                  "replay: a client read nothing for %d ms: request %llu abandoned",
                  DFB_REPLAY_STALL_MS, (unsigned long long)r->req);
        r->state = ST_DONE;
        self->c->replay_abandoned++;
        return 1;
    }
    return progress;
}

/*  One turn: the requests in turn from self->rr, each a slice of at most
    SLICE_MS and SLICE_BYTES read, until each had one or the turn's budget
    is spent (the next turn starts where this one stopped, so every request
    gets its slice in turn however many there are). Returns the poll
    timeout: 0 more work, RETRY_MS every request waits for its client, -1
    none. */
static int
replay_work(dfb_replay_t *self, const char *epoch, int64_t now_ms)
{
    int busy = 0, waiting = 0;
    size_t n = self->nreqs, start = n ? self->rr % n : 0, next = start + 1;
    budget_t turn = {now_ms + DFB_REPLAY_TURN_MS, (int64_t)DFB_REPLAY_TURN_BYTES};
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        req_t *r = self->reqs[i];
        if (r->state == ST_DONE)
            continue;
        int64_t t = dfb_mono_ms();
        if (k > 0 && (turn.bytes_left <= 0 || t >= turn.deadline_ms)) {
            next = i;
            busy = 1;
            break;
        }
        budget_t slice = {t + SLICE_MS, SLICE_BYTES};
        if (step(self, r, epoch, now_ms, &slice))
            busy = 1;
        else
            waiting = 1;
        turn.bytes_left -= SLICE_BYTES - slice.bytes_left;
    }
    /* Compacted, the turn's next request keeps its place in the order. */
    size_t live = 0, nrr = SIZE_MAX;
    for (size_t i = 0; i < self->nreqs; i++) {
        if (i == next)
            nrr = live;
        if (self->reqs[i]->state != ST_DONE)
            self->reqs[live++] = self->reqs[i];
        else
            req_done(self, self->reqs[i]);
    }
    self->nreqs = live;
    self->rr = nrr == SIZE_MAX ? 0 : nrr;
    if (!live)
        return -1;
    return busy ? 0 : waiting ? RETRY_MS : -1;
}

/* ---- the thread ----------------------------------------------------------- */

/*  CURVE: the allow-list lost a key: close the ROUTER (every connection and
    every queued answer goes; requests in progress are abandoned) and bind
    it again, retrying a failed bind. Returns 1 while unbound. */
static int
check_rebind(dfb_replay_t *self, int64_t now)
{
    uint64_t g = self->c->auth_rebinds;
    if (g != self->rebind_seen) {
        self->rebind_seen = g;
        size_t dropped = 0;
        for (size_t i = 0; i < self->nreqs; i++) {
            if (self->reqs[i]->state != ST_DONE) {
                self->c->replay_abandoned++;
                dropped++;
            }
            req_free(self->reqs[i]);
        }
        self->nreqs = 0;
        if (self->sock) {
            zmq_close(self->sock); /* ZMQ_LINGER 0 (dfb_zsock) */
            self->sock = NULL;
        }
        if (dropped)
            dfb_info("replay: %zu request(s) in progress abandoned: the ROUTER re-binds after an "
                     "allow-list change",
                     dropped);
        self->rebinding = 1;
        self->rebind_at = now;
        self->rebind_tries = 0;
    }
    if (!self->rebinding || now < self->rebind_at)
        return self->rebinding;
    char bound[256], err[512];
    if (self->rebind_tries < self->rebind_fail) /* test fault (DFB_TEST_REBIND_FAILS) */
        snprintf(err, sizeof err, "test fault (DFB_TEST_REBIND_FAILS)");
    else
        self->sock = dfb_zsock_new(self->ctx, &self->zo, bound, sizeof bound, err, sizeof err);
    if (!self->sock) {
        if (self->rebind_tries++ % 50 == 0)
            dfb_warn("replay: re-bind after an allow-list change failed (%s): retrying every "
                     "%d ms",
                     err, REBIND_RETRY_MS);
        self->rebind_at = now + REBIND_RETRY_MS;
        return 1;
    }
    self->rebinding = 0;
    dfb_fdguard_rewatch(self->guard, self->sock, "bridge.replay");
    dfb_info("replay: ROUTER re-bound at %s after an allow-list change", bound);
    return 0;
}

/*  The loop; returns NULL on $TERM, else the reason it stopped. */
static const char *
run(dfb_replay_t *self)
{
    int64_t next_tick = dfb_mono_ms() + TICK_MS;
    int replay_wait = -1;
    for (;;) {
        int64_t now = dfb_mono_ms();
        int64_t timeout = next_tick - now;
        if (self->zo.curve_secret) {
            if (check_rebind(self, now))
                replay_wait = -1; /* nothing left to serve */
            int64_t cap = self->rebinding ? REBIND_RETRY_MS : REBIND_CHECK_MS;
            if (timeout > cap)
                timeout = cap;
        }
        zmq_pollitem_t items[2 + DFB_FDGUARD_MAX_SOCKETS] = {{self->tpipe, 0, ZMQ_POLLIN, 0},
                                                             {self->sock, 0, ZMQ_POLLIN, 0}};
        int n = self->sock ? 2 : 1;
        int ng = (int)dfb_fdguard_items(self->guard, items + n, DFB_FDGUARD_MAX_SOCKETS);
        if (replay_wait >= 0 && replay_wait < timeout)
            timeout = replay_wait;
        if (timeout < 0)
            timeout = 0;
        if (zmq_poll(items, n + ng, (long)timeout) < 0 && errno != EINTR)
            return zmq_strerror(errno);
        if (items[0].revents & ZMQ_POLLIN)
            return NULL; /* $TERM, the only command */
        for (int i = n; i < n + ng; i++)
            if (items[i].revents & ZMQ_POLLIN) {
                dfb_fdguard_handle(self->guard);
                break;
            }
        now = dfb_mono_ms();
        if (self->sock) {
            if (items[1].revents & ZMQ_POLLIN)
                replay_receive(self, self->epoch, now);
            replay_wait = replay_work(self, self->epoch, now);
        }
        if (now >= next_tick) {
            /* On this thread: the interval fsync and retention deletes may
               wait on the disk; the publisher actor never does. */
            if (self->journal)
                dfb_journal_tick(self->journal, dfb_wall_ms());
            next_tick = now + TICK_MS;
        }
    }
}

static void *
replay_main(void *arg)
{
    dfb_replay_t *self = arg;
    const char *why = run(self);
    if (why) {
        self->c->dead_threads++;
        dfb_error("replay: the replay thread stopped: %s; the bridge exits (status 5)", why);
        dfb_stop_request();
    }
    return NULL;
}

/* ---- the parser alone (tests, tests/fuzz) ---------------------------------- */

#include "dfb_replay_parse.h"

int
dfb_replay_parse(const uint8_t *data, size_t len, const char *epoch, dfb_replay_parsed_t *out)
{
    req_t *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    parse_request(r, data, len, epoch);
    memset(out, 0, sizeof *out);
    out->info = r->state == ST_INFO;
    out->by_topic = r->by_topic;
    out->from = r->from;
    out->limit = r->limit;
    out->ntopics = r->ntopics;
    out->code = r->state == ST_END ? r->code : NULL;
    int rc = r->state == ST_END ? 1 : 0;
    req_free(r);
    return rc;
}
