/*  A fake dfbridge for the delivery tests: an XPUB the test thread publishes
    on (topic + v1 envelope, "_hb" heartbeats) and a replay ROUTER served by
    its own thread from an in-memory journal, speaking the issue-4 protocol
    (request by gseq, messages, "_end"). Faults: messages journaled but not
    published, a retention floor ("gone"), a gate that holds answers, mute. */
#ifndef DFC_FAKEBRIDGE_H
#define DFC_FAKEBRIDGE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "testutil.h"

#define FB_BOT 68719476738LL

typedef struct {
    char topic[32];
    char *body;
    size_t len;
    uint64_t gseq;
} fb_entry_t;

typedef struct {
    void *zctx, *xpub, *router;
    char pub_ep[128], rep_ep[128], epoch[32];
    pthread_mutex_t mu;
    pthread_cond_t cond;
    fb_entry_t *j; /* the journal; under mu */
    size_t nj, capj;
    uint64_t gseq;
    struct {
        char topic[32];
        uint64_t seq;
    } seqs[32];
    int nseqs;
    uint64_t oldest;                   /* entries below are gone (0: none) */
    uint64_t damaged_from, damaged_to; /* entries in this range cannot be read (0: none) */
    const char *transient;             /* the next transient_n requests get this code */
    int transient_n;
    bool gate_closed;  /* the server holds its answers until opened */
    bool mute;         /* the server reads requests and never answers */
    int requests;      /* requests read */
    uint64_t interval; /* heartbeat "interval" */
    bool advertise;    /* heartbeat "replay" = rep_ep, else "" */
    /* answers that are wrong on purpose */
    enum {
        FB_END_NORMAL,
        FB_END_STALL_MORE, /* "ok", nothing sent, more: true, last_gseq = from - 1 */
        FB_END_WALK_GONE,  /* "gone" with oldest_gseq = from + 1, every time */
        FB_END_LAST        /* the next end_fault_n end markers say last_gseq = end_last */
    } end_fault;
    int end_fault_n;
    uint64_t end_last;
    atomic_bool stop;
    pthread_t th;
    msgpack_sbuffer sb;
} fb_t;

static inline void
fb_lock(fb_t *fb)
{
    pthread_mutex_lock(&fb->mu);
}
static inline void
fb_unlock(fb_t *fb)
{
    pthread_cond_broadcast(&fb->cond);
    pthread_mutex_unlock(&fb->mu);
}

static inline bool
mp_key(const msgpack_object_kv *kv, const char *k)
{
    return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(k) &&
           memcmp(kv->key.via.str.ptr, k, strlen(k)) == 0;
}

static inline void
fb_send_end(fb_t *fb, zmq_msg_t *id, uint64_t req, const char *code, size_t count, uint64_t last,
            bool more)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bool damaged = code && strcmp(code, "damaged") == 0;
    msgpack_pack_map(&pk, code ? (damaged ? 13 : 11) : 9);
#define K(s) msgpack_pack_str_with_body(&pk, s, strlen(s))
    K("v");
    msgpack_pack_uint64(&pk, 1);
    K("req");
    msgpack_pack_uint64(&pk, req);
    K("status");
    K(code ? "error" : "ok");
    K("count");
    msgpack_pack_uint64(&pk, count);
    K("last_gseq");
    msgpack_pack_uint64(&pk, last);
    K("more");
    more ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    K("head_gseq");
    msgpack_pack_uint64(&pk, fb->gseq);
    K("oldest_gseq");
    msgpack_pack_uint64(&pk, fb->oldest ? fb->oldest : 1);
    K("epoch");
    K(fb->epoch);
    if (code) {
        K("code");
        K(code);
        K("error");
        K("test fault");
    }
    if (damaged) {
        K("lost_from");
        msgpack_pack_uint64(&pk, fb->damaged_from);
        K("lost_to");
        msgpack_pack_uint64(&pk, fb->damaged_to);
    }
#undef K
    zmq_msg_t c;
    zmq_msg_init(&c);
    zmq_msg_copy(&c, id);
    zmq_msg_send(&c, fb->router, ZMQ_SNDMORE);
    zmq_send(fb->router, "_end", 4, ZMQ_SNDMORE);
    zmq_send(fb->router, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

/*  Answers one request (under mu). */
static inline void
fb_answer(fb_t *fb, zmq_msg_t *id, const void *data, size_t len)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    uint64_t req = 0, from = 0, limit = 1000;
    char epoch[64] = "";
    if (msgpack_unpack_next(&up, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < up.data.via.map.size; i++) {
            msgpack_object_kv *kv = &up.data.via.map.ptr[i];
            if (mp_key(kv, "req"))
                req = kv->val.via.u64;
            else if (mp_key(kv, "from_gseq"))
                from = kv->val.via.u64;
            else if (mp_key(kv, "limit"))
                limit = kv->val.via.u64;
            else if (mp_key(kv, "epoch") && kv->val.type == MSGPACK_OBJECT_STR &&
                     kv->val.via.str.size < sizeof epoch)
                memcpy(epoch, kv->val.via.str.ptr, kv->val.via.str.size);
        }
    }
    msgpack_unpacked_destroy(&up);
    if (fb->transient && fb->transient_n > 0) {
        fb->transient_n--;
        fb_send_end(fb, id, req, fb->transient, 0, from - 1, false);
        return;
    }
    if (fb->end_fault == FB_END_STALL_MORE) {
        fb_send_end(fb, id, req, NULL, 0, from - 1, true);
        return;
    }
    if (fb->end_fault == FB_END_WALK_GONE) {
        fb->oldest = from + 1;
        fb_send_end(fb, id, req, "gone", 0, from - 1, false);
        return;
    }
    if (epoch[0] && strcmp(epoch, fb->epoch) != 0) {
        fb_send_end(fb, id, req, "epoch", 0, from - 1, false);
        return;
    }
    if (fb->oldest && from < fb->oldest) {
        fb_send_end(fb, id, req, "gone", 0, from - 1, false);
        return;
    }
    size_t count = 0;
    uint64_t last = from - 1;
    for (size_t i = 0; i < fb->nj && count < limit; i++) {
        if (fb->j[i].gseq < from)
            continue;
        if (fb->damaged_from && fb->j[i].gseq >= fb->damaged_from &&
            fb->j[i].gseq <= fb->damaged_to) {
            fb_send_end(fb, id, req, "damaged", count, last, false);
            return;
        }
        zmq_msg_t c;
        zmq_msg_init(&c);
        zmq_msg_copy(&c, id);
        zmq_msg_send(&c, fb->router, ZMQ_SNDMORE);
        zmq_send(fb->router, fb->j[i].topic, strlen(fb->j[i].topic), ZMQ_SNDMORE);
        zmq_send(fb->router, fb->j[i].body, fb->j[i].len, 0);
        count++;
        last = fb->j[i].gseq;
    }
    bool more = last < fb->gseq;
    if (fb->end_fault == FB_END_LAST && fb->end_fault_n > 0) {
        fb->end_fault_n--;
        last = fb->end_last;
    }
    fb_send_end(fb, id, req, NULL, count, last, more);
}

static inline void *
fb_server(void *arg)
{
    fb_t *fb = arg;
    while (!atomic_load(&fb->stop)) {
        zmq_pollitem_t it = {fb->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 20) <= 0)
            continue;
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, fb->router, ZMQ_DONTWAIT) < 0 ||
            zmq_msg_recv(&body, fb->router, 0) < 0) {
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            continue;
        }
        fb_lock(fb);
        fb->requests++;
        while (fb->gate_closed && !atomic_load(&fb->stop)) {
            struct timespec ts = tu_deadline(20);
            pthread_cond_timedwait(&fb->cond, &fb->mu, &ts);
        }
        if (!fb->mute && !atomic_load(&fb->stop))
            fb_answer(fb, &id, zmq_msg_data(&body), zmq_msg_size(&body));
        fb_unlock(fb);
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

/*  Binds the XPUB at pub_ep and the ROUTER at rep_ep ("tcp://127.0.0.1:*"
    works: the real endpoints are read back). sndhwm 0 -> libzmq's default. */
static inline void
fb_init(fb_t *fb, void *zctx, const char *pub_ep, const char *rep_ep, const char *epoch, int sndhwm)
{
    memset(fb, 0, sizeof *fb);
    fb->zctx = zctx;
    snprintf(fb->epoch, sizeof fb->epoch, "%s", epoch);
    pthread_mutex_init(&fb->mu, NULL);
    pthread_cond_init(&fb->cond, NULL);
    msgpack_sbuffer_init(&fb->sb);
    fb->interval = 1000;
    fb->advertise = true;
    fb->xpub = zmq_socket(zctx, ZMQ_XPUB);
    fb->router = zmq_socket(zctx, ZMQ_ROUTER);
    int linger = 0, one = 1, zero = 0;
    zmq_setsockopt(fb->xpub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fb->xpub, ZMQ_XPUB_VERBOSE, &one, sizeof one);
    if (sndhwm)
        zmq_setsockopt(fb->xpub, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(fb->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fb->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(fb->router, ZMQ_SNDHWM, &zero, sizeof zero);
    if (zmq_bind(fb->xpub, pub_ep) != 0 || zmq_bind(fb->router, rep_ep) != 0) {
        fprintf(stderr, "fake bridge: cannot bind: %s\n", zmq_strerror(errno));
        exit(2);
    }
    size_t n = sizeof fb->pub_ep;
    zmq_getsockopt(fb->xpub, ZMQ_LAST_ENDPOINT, fb->pub_ep, &n);
    n = sizeof fb->rep_ep;
    zmq_getsockopt(fb->router, ZMQ_LAST_ENDPOINT, fb->rep_ep, &n);
    atomic_init(&fb->stop, false);
    pthread_create(&fb->th, NULL, fb_server, fb);
}

static inline void
fb_fini(fb_t *fb)
{
    atomic_store(&fb->stop, true);
    pthread_join(fb->th, NULL);
    zmq_close(fb->xpub);
    zmq_close(fb->router);
    for (size_t i = 0; i < fb->nj; i++)
        free(fb->j[i].body);
    free(fb->j);
    msgpack_sbuffer_destroy(&fb->sb);
    pthread_mutex_destroy(&fb->mu);
    pthread_cond_destroy(&fb->cond);
}

/*  Journals one event (seq per topic, gseq) and publishes it unless send is
    false (a message "dropped by PUB"). Returns its gseq. */
static inline uint64_t
fb_publish(fb_t *fb, const char *topic, const char *event_json, bool send)
{
    fb_lock(fb);
    int t = 0;
    while (t < fb->nseqs && strcmp(fb->seqs[t].topic, topic) != 0)
        t++;
    if (t == fb->nseqs) {
        snprintf(fb->seqs[t].topic, sizeof fb->seqs[t].topic, "%s", topic);
        fb->seqs[t].seq = 0;
        fb->nseqs++;
    }
    uint64_t seq = ++fb->seqs[t].seq, gseq = ++fb->gseq;
    tu_envelope(&fb->sb, seq, gseq, fb->epoch, FB_BOT, event_json);
    if (fb->nj == fb->capj) {
        fb->capj = fb->capj ? fb->capj * 2 : 256;
        fb->j = realloc(fb->j, fb->capj * sizeof *fb->j);
    }
    fb_entry_t *e = &fb->j[fb->nj++];
    snprintf(e->topic, sizeof e->topic, "%s", topic);
    e->body = malloc(fb->sb.size);
    memcpy(e->body, fb->sb.data, fb->sb.size);
    e->len = fb->sb.size;
    e->gseq = gseq;
    fb_unlock(fb);
    if (send)
        tu_send2(fb->xpub, topic, e->body, e->len);
    return gseq;
}

/*  A MESSAGESENT in stream `stream` with id "e<gseq>" (or the given id). */
static inline uint64_t
fb_message(fb_t *fb, const char *stream, const char *id, bool send)
{
    char json[512], idb[64];
    if (id)
        snprintf(idb, sizeof idb, "%s", id);
    else
        snprintf(idb, sizeof idb, "e%llu", (unsigned long long)(fb->gseq + 1));
    snprintf(json, sizeof json,
             "{\"id\":\"%s\",\"type\":\"MESSAGESENT\",\"initiator\":{\"user\":{\"userId\":7}},"
             "\"payload\":{\"messageSent\":{\"message\":{\"stream\":{\"streamId\":\"%s\"}}}}}",
             idb, stream);
    return fb_publish(fb, "MESSAGESENT", json, send);
}

/*  A heartbeat; claim true -> its gseq is `gseq` instead of the truth. */
static inline void
fb_heartbeat_at(fb_t *fb, bool claim, uint64_t gseq)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fb_lock(fb);
    msgpack_pack_map(&pk, 7);
#define K(s) msgpack_pack_str_with_body(&pk, s, strlen(s))
    K("v");
    msgpack_pack_uint64(&pk, 1);
    K("epoch");
    K(fb->epoch);
    K("gseq");
    msgpack_pack_uint64(&pk, claim ? gseq : fb->gseq);
    K("seqs");
    msgpack_pack_map(&pk, (size_t)fb->nseqs);
    for (int i = 0; i < fb->nseqs; i++) {
        K(fb->seqs[i].topic);
        msgpack_pack_uint64(&pk, fb->seqs[i].seq);
    }
    K("ts");
    msgpack_pack_uint64(&pk, 1700000000000ull);
    K("interval");
    msgpack_pack_uint64(&pk, fb->interval);
    K("replay");
    K(fb->advertise ? fb->rep_ep : "");
#undef K
    fb_unlock(fb);
    tu_send2(fb->xpub, "_hb", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static inline void
fb_heartbeat(fb_t *fb)
{
    fb_heartbeat_at(fb, false, 0);
}

/*  Publishes a MESSAGESENT with the given seq and gseq, not journaled and
    not counted: a message whose numbers are wrong. */
static inline void
fb_send_raw(fb_t *fb, uint64_t seq, uint64_t gseq)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tu_envelope(&sb, seq, gseq, fb->epoch, FB_BOT,
                "{\"id\":\"bogus\",\"type\":\"MESSAGESENT\",\"initiator\":{\"user\":"
                "{\"userId\":7}},\"payload\":{\"messageSent\":{\"message\":{}}}}");
    tu_send2(fb->xpub, "MESSAGESENT", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

#endif
