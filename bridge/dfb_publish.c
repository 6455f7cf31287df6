/*  dfb_publish: ZeroMQ PUB socket + wire-contract counters (see
    dfb_publish.h). The hot path (dfb_publish_event) allocates nothing once
    warm: the body buffer is reused and a topic's counter slot is allocated
    only the first time the topic is seen. */
#include "dfb_publish.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include <openssl/rand.h>

#include "dfb_log.h"
#include "dfb_transcode.h"

/*  Open addressing, at most half full so probes stay short. */
#define SLOTS (DFB_PUBLISH_MAX_TOPICS * 2)

typedef struct {
    char *topic; /* NULL = free */
    size_t len;
    uint64_t seq;
} slot_t;

struct dfb_publish {
    void *ctx;
    void *sock;
    char endpoint[256];
    char epoch[64];
    int64_t bot;
    uint64_t gseq;
    dfb_buf_t body;
    slot_t *slots;
    slot_t *unknown; /* always present: the cap never evicts it */
    dfb_publish_stats_t stats;
};

static uint64_t
fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/*  Finds the slot of topic; inserts it when create is set and the cap
    allows. Returns NULL when absent (and not created). */
static slot_t *
lookup(dfb_publish_t *self, const char *topic, size_t len, int create)
{
    size_t i = (size_t)fnv1a(topic, len) & (SLOTS - 1);
    for (size_t n = 0; n < SLOTS; n++, i = (i + 1) & (SLOTS - 1)) {
        slot_t *s = &self->slots[i];
        if (!s->topic) {
            if (!create || self->stats.topics >= DFB_PUBLISH_MAX_TOPICS)
                return NULL;
            s->topic = malloc(len + 1);
            if (!s->topic)
                return NULL;
            memcpy(s->topic, topic, len);
            s->topic[len] = '\0';
            s->len = len;
            s->seq = 0;
            self->stats.topics++;
            return s;
        }
        if (s->len == len && memcmp(s->topic, topic, len) == 0)
            return s;
    }
    return NULL;
}

dfb_publish_t *
dfb_publish_new(const char *endpoint, int sndhwm, char *err, size_t errlen)
{
    dfb_publish_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "publish: out of memory");
        return NULL;
    }
    dfb_buf_init(&self->body);
    self->slots = calloc(SLOTS, sizeof(slot_t));
    self->ctx = zmq_ctx_new();
    if (!self->slots || !self->ctx) {
        snprintf(err, errlen, "publish: out of memory");
        dfb_publish_destroy(&self);
        return NULL;
    }
    self->unknown = lookup(self, DFB_TOPIC_UNKNOWN, strlen(DFB_TOPIC_UNKNOWN), 1);
    self->sock = zmq_socket(self->ctx, ZMQ_PUB);
    if (!self->unknown || !self->sock) {
        snprintf(err, errlen, "publish: cannot create the socket: %s", zmq_strerror(errno));
        dfb_publish_destroy(&self);
        return NULL;
    }
    int linger = DFB_PUBLISH_LINGER_MS, one = 1, idle = 60, intvl = 10, cnt = 3;
    int ipv6 = strchr(endpoint, '[') != NULL;
    /* HWM first: it only applies to pipes created after it is set. */
    if (zmq_setsockopt(self->sock, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_TCP_KEEPALIVE, &one, sizeof one) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof idle) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_TCP_KEEPALIVE_INTVL, &intvl, sizeof intvl) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_TCP_KEEPALIVE_CNT, &cnt, sizeof cnt) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_IPV6, &ipv6, sizeof ipv6) != 0) {
        snprintf(err, errlen, "publish: setsockopt: %s", zmq_strerror(errno));
        dfb_publish_destroy(&self);
        return NULL;
    }
    if (zmq_bind(self->sock, endpoint) != 0) {
        snprintf(err, errlen, "config: bridge.publish: cannot bind '%s': %s", endpoint,
                 zmq_strerror(errno));
        dfb_publish_destroy(&self);
        return NULL;
    }
    size_t sz = sizeof self->endpoint;
    if (zmq_getsockopt(self->sock, ZMQ_LAST_ENDPOINT, self->endpoint, &sz) != 0)
        snprintf(self->endpoint, sizeof self->endpoint, "%s", endpoint);

    /* Epoch: UTC start time + 32 random bits, so a restart within the same
       second still gets a new epoch. */
    unsigned char rnd[4];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        snprintf(err, errlen, "publish: no randomness for the epoch");
        dfb_publish_destroy(&self);
        return NULL;
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(self->epoch, sizeof self->epoch, "%s-%02x%02x%02x%02x", stamp, rnd[0], rnd[1], rnd[2],
             rnd[3]);
    return self;
}

void
dfb_publish_destroy(dfb_publish_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_publish_t *self = *self_p;
    if (self->sock)
        zmq_close(self->sock);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    if (self->slots) {
        for (size_t i = 0; i < SLOTS; i++)
            free(self->slots[i].topic);
        free(self->slots);
    }
    dfb_buf_free(&self->body);
    free(self);
    *self_p = NULL;
}

const char *
dfb_publish_endpoint(const dfb_publish_t *self)
{
    return self->endpoint;
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

int
dfb_publish_event(dfb_publish_t *self, const dfb_json_t *json, dfb_json_ref_t event_ref)
{
    size_t tlen;
    const char *topic = dfb_transcode_topic(json, event_ref, &tlen);
    slot_t *slot = lookup(self, topic, tlen, 1);
    if (!slot) {
        if (self->stats.topics_overflow++ == 0)
            dfb_warn("publish: more than %d distinct event types; further new types are "
                     "published under %s",
                     DFB_PUBLISH_MAX_TOPICS, DFB_TOPIC_UNKNOWN);
        slot = self->unknown;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    dfb_envelope_t env = {
        .seq = ++slot->seq,
        .gseq = ++self->gseq,
        .epoch = self->epoch,
        .ts = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
        .bot = self->bot,
    };
    dfb_buf_reset(&self->body);
    if (dfb_transcode_message(&env, json, event_ref, &self->body) != 0) {
        self->stats.encode_errors++;
        dfb_buf_reset(&self->body);
        dfb_warn("publish: cannot encode a %s event (gseq %llu lost)", slot->topic,
                 (unsigned long long)env.gseq);
        return -1;
    }
    if (send_frame(self->sock, slot->topic, slot->len, ZMQ_SNDMORE) != 0 ||
        send_frame(self->sock, self->body.data, self->body.len, 0) != 0) {
        self->stats.send_errors++;
        dfb_warn("publish: zmq_send: %s (gseq %llu lost)", zmq_strerror(errno),
                 (unsigned long long)env.gseq);
        return -1;
    }
    self->stats.published++;
    return 0;
}

void
dfb_publish_stats(const dfb_publish_t *self, dfb_publish_stats_t *stats)
{
    *stats = self->stats;
}

uint64_t
dfb_publish_topic_seq(const dfb_publish_t *self, const char *topic, size_t len)
{
    slot_t *s = lookup((dfb_publish_t *)self, topic, len, 0);
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
