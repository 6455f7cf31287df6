/*  dfb_replay: the ROUTER side of replay (see dfb_replay.h). Each request
    owns a journal reader and a cursor; dfb_replay_work advances every
    request by at most STEP records, so one big answer cannot starve the
    heartbeat or the publisher that share the thread. */
#include "dfb_replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "dfb_log.h"
#include "dfb_mpack.h"
#include "dfb_publish.h"

#define STEP 256   /* records scanned per request per call */
#define RETRY_MS 5 /* wait before retrying a client whose pipe is full */
#define MAX_ID 255 /* ZeroMQ routing ids are 1..255 bytes */

typedef enum { ST_READ, ST_SEND, ST_PEEK, ST_END, ST_DONE } state_t;

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
    state_t state;
    dfb_journal_reader_t *reader;
    dfb_journal_rec_t rec; /* the record being sent (points into the reader) */
    int frames_sent;       /* of rec, 0..2: a ROUTER accepts a message whole */
    int64_t last_progress;
} req_t;

struct dfb_replay {
    void *sock;
    dfb_journal_t *journal;
    char endpoint[256];
    req_t *reqs[DFB_REPLAY_MAX_ACTIVE];
    size_t nreqs;
    dfb_buf_t out;
    dfb_replay_stats_t st;
};

static void
bump(uint64_t *c)
{
    __atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

dfb_replay_t *
dfb_replay_new(void *ctx, const char *endpoint, dfb_journal_t *journal, int zmtp_ms, char *err,
               size_t errlen)
{
    dfb_replay_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "replay: out of memory");
        return NULL;
    }
    self->journal = journal;
    dfb_buf_init(&self->out);
    self->sock = zmq_socket(ctx, ZMQ_ROUTER);
    if (!self->sock) {
        snprintf(err, errlen, "replay: cannot create the socket: %s", zmq_strerror(errno));
        free(self);
        return NULL;
    }
    int one = 1, linger = 0, hwm = 2 * DFB_REPLAY_MAX_LIMIT + 16, maxmsg = DFB_REPLAY_MAX_REQUEST;
    int ipv6 = strchr(endpoint, '[') != NULL;
    int64_t maxmsg64 = maxmsg;
    if (zmq_setsockopt(self->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg64, sizeof maxmsg64) != 0 ||
        dfb_publish_liveness(self->sock, zmtp_ms) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_IPV6, &ipv6, sizeof ipv6) != 0) {
        snprintf(err, errlen, "replay: setsockopt: %s", zmq_strerror(errno));
        dfb_replay_destroy(&self);
        return NULL;
    }
    if (zmq_bind(self->sock, endpoint) != 0) {
        snprintf(err, errlen, "config: bridge.replay: cannot bind '%s': %s", endpoint,
                 zmq_strerror(errno));
        dfb_replay_destroy(&self);
        return NULL;
    }
    size_t sz = sizeof self->endpoint;
    if (zmq_getsockopt(self->sock, ZMQ_LAST_ENDPOINT, self->endpoint, &sz) != 0)
        snprintf(self->endpoint, sizeof self->endpoint, "%s", endpoint);
    return self;
}

static void
req_free(req_t *r)
{
    if (!r)
        return;
    dfb_journal_reader_destroy(&r->reader);
    free(r->topic);
    for (uint32_t i = 0; i < r->ntopics; i++)
        free(r->topics[i]);
    free(r);
}

void
dfb_replay_destroy(dfb_replay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_replay_t *self = *self_p;
    for (size_t i = 0; i < self->nreqs; i++)
        req_free(self->reqs[i]);
    if (self->sock)
        zmq_close(self->sock);
    dfb_buf_free(&self->out);
    free(self);
    *self_p = NULL;
}

void *
dfb_replay_socket(dfb_replay_t *self)
{
    return self->sock;
}

const char *
dfb_replay_endpoint(const dfb_replay_t *self)
{
    return self->endpoint;
}

void
dfb_replay_stats(const dfb_replay_t *self, dfb_replay_stats_t *stats)
{
    stats->requests = __atomic_load_n(&self->st.requests, __ATOMIC_RELAXED);
    stats->messages = __atomic_load_n(&self->st.messages, __ATOMIC_RELAXED);
    stats->errors = __atomic_load_n(&self->st.errors, __ATOMIC_RELAXED);
    stats->abandoned = __atomic_load_n(&self->st.abandoned, __ATOMIC_RELAXED);
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
    int has_v = 0, has_gseq = 0, has_seq = 0, has_topic = 0, has_topics = 0;
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
    else if (has_gseq == (has_topic || has_seq))
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
    r->reader = dfb_journal_reader_new(self->journal);
    if (!r->reader) {
        fail(r, "bad_request", "out of memory");
        return;
    }
    int rc = r->by_topic ? dfb_journal_reader_seek_topic(r->reader, r->topic, r->topic_len, r->from)
                         : dfb_journal_reader_seek_gseq(r->reader, r->from);
    if (rc == DFB_JOURNAL_GONE)
        fail(r, "gone",
             r->by_topic ? "from_seq is older than the journal's retention"
                         : "from_gseq is older than the journal's retention");
    else if (rc != 0)
        fail(r, "gone", "the journal cannot be read at that position");
}

void
dfb_replay_receive(dfb_replay_t *self, const char *epoch, int64_t now_ms)
{
    for (;;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        /* Frames: routing id, then the request: exactly one frame. */
        int frames = 0, ok = 1;
        zmq_msg_init(&body);
        while (zmq_msg_more(frames ? &body : &id)) {
            zmq_msg_close(&body);
            zmq_msg_init(&body);
            if (zmq_msg_recv(&body, self->sock, 0) < 0) {
                ok = 0;
                break;
            }
            frames++;
        }
        bump(&self->st.requests);
        req_t *r = ok ? calloc(1, sizeof *r) : NULL;
        if (!r || zmq_msg_size(&id) > MAX_ID) {
            free(r);
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            continue;
        }
        r->id_len = zmq_msg_size(&id);
        memcpy(r->id, zmq_msg_data(&id), r->id_len);
        r->last_progress = now_ms;
        if (frames != 1)
            fail(r, "bad_request", "a request is exactly one frame");
        else
            parse_request(r, zmq_msg_data(&body), zmq_msg_size(&body), epoch);
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        /* One request in flight per client: a new one replaces the old. */
        for (size_t i = 0; i < self->nreqs; i++) {
            req_t *o = self->reqs[i];
            if (o->id_len == r->id_len && memcmp(o->id, r->id, r->id_len) == 0 &&
                o->state != ST_DONE) {
                o->state = ST_DONE;
                bump(&self->st.abandoned);
            }
        }
        size_t live = 0;
        for (size_t i = 0; i < self->nreqs; i++)
            if (self->reqs[i]->state != ST_DONE)
                self->reqs[live++] = self->reqs[i];
            else
                req_free(self->reqs[i]);
        self->nreqs = live;
        if (self->nreqs == DFB_REPLAY_MAX_ACTIVE) {
            /* Too many at once: an immediate error answer, never a silent drop. */
            r->code = "busy";
            snprintf(r->error, sizeof r->error, "%d requests in progress, ask again later",
                     DFB_REPLAY_MAX_ACTIVE);
            r->state = ST_END;
            if (send_end(self, r, epoch) != 0)
                bump(&self->st.abandoned);
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

int
dfb_replay_end_encode(dfb_buf_t *b, const dfb_replay_end_t *e)
{
    int err = e->code != NULL;
    uint32_t n = 9 + (e->by_topic ? 1 : 0) + (err ? 2 : 0);
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
                          .error = r->error};
    if (dfb_replay_end_encode(b, &e) != 0)
        return -1;
    int rc = send_msg(self, r, DFB_REPLAY_TOPIC_END, strlen(DFB_REPLAY_TOPIC_END), b->data, b->len);
    if (rc == 0 && r->code)
        bump(&self->st.errors);
    return rc;
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

/*  Advances one request by at most STEP records. Returns 1 when it made
    progress, 0 when it waits for its client. */
static int
step(dfb_replay_t *self, req_t *r, const char *epoch, int64_t now_ms)
{
    int progress = 0;
    for (int n = 0; n < STEP && r->state != ST_DONE; n++) {
        if (r->state == ST_READ || r->state == ST_PEEK) {
            int rc = dfb_journal_reader_next(r->reader, &r->rec);
            if (rc == 0) {
                r->state = ST_END;
            } else if (rc == DFB_JOURNAL_READER_GONE) {
                fail(r, "gone", "retention deleted the following records during the answer");
            } else if (rc < 0) {
                fail(r, "gone", "a journal record cannot be read");
            } else if (matches(r, &r->rec)) {
                if (r->state == ST_PEEK) {
                    r->more = 1;
                    r->state = ST_END;
                } else
                    r->state = ST_SEND;
            }
            progress = 1;
            continue;
        }
        int rc;
        if (r->state == ST_SEND)
            rc = send_msg(self, r, r->rec.topic, r->rec.topic_len, r->rec.body, r->rec.body_len);
        else
            rc = send_end(self, r, epoch);
        if (rc == 1)
            break; /* the client's pipe is full: later */
        if (rc < 0) {
            r->state = ST_DONE;
            bump(&self->st.abandoned);
            return 1;
        }
        progress = 1;
        r->last_progress = now_ms;
        if (r->state == ST_END) {
            r->state = ST_DONE;
            break;
        }
        bump(&self->st.messages);
        r->count++;
        r->last_gseq = r->rec.gseq;
        r->last_seq = r->rec.seq;
        r->state = r->count == r->limit ? ST_PEEK : ST_READ;
    }
    if (progress)
        r->last_progress = now_ms;
    else if (now_ms - r->last_progress > DFB_REPLAY_STALL_MS) {
        dfb_warn("replay: a client read nothing for %d ms: request %llu abandoned",
                 DFB_REPLAY_STALL_MS, (unsigned long long)r->req);
        r->state = ST_DONE;
        bump(&self->st.abandoned);
        return 1;
    }
    return progress;
}

int
dfb_replay_work(dfb_replay_t *self, const char *epoch, int64_t now_ms)
{
    int busy = 0, waiting = 0;
    for (size_t i = 0; i < self->nreqs; i++) {
        req_t *r = self->reqs[i];
        if (r->state == ST_DONE)
            continue;
        if (step(self, r, epoch, now_ms))
            busy = 1;
        else
            waiting = 1;
    }
    size_t live = 0;
    for (size_t i = 0; i < self->nreqs; i++)
        if (self->reqs[i]->state != ST_DONE)
            self->reqs[live++] = self->reqs[i];
        else
            req_free(self->reqs[i]);
    self->nreqs = live;
    if (!live)
        return -1;
    return busy ? 0 : waiting ? RETRY_MS : -1;
}
