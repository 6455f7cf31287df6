/*  The command channel client's mechanics (dfc_client, dfc_args) against a
    tiny fake ROUTER played by this test, for what the real bridge cannot
    show on demand: exact request bytes, a timeout and the resend of the same
    request, a late duplicate reply dropped, busy retried, a bridge restart
    between attempts, 100 threads at once matched by id, destroy with calls
    pending, the default ids. End to end against dfbridge: client_e2e.py. */
#include <stdatomic.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dfc_internal.h"
#include "testutil.h"

static void *zctx;

/* ------------------------------------------------------------ fake bridge */

typedef struct {
    void *sock;
    char endpoint[128];
} router_t;

static void
router_open(router_t *r, const char *endpoint)
{
    r->sock = zmq_socket(zctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger);
    /* the same port again (a restart): libzmq closes the old listener
       asynchronously, so the address may stay taken for a moment */
    int64_t end = tu_now_ms() + 5000;
    int rc;
    while ((rc = zmq_bind(r->sock, endpoint)) != 0 && errno == EADDRINUSE && tu_now_ms() < end) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc != 0) {
        fprintf(stderr, "bind %s: %s\n", endpoint, zmq_strerror(errno));
        exit(2);
    }
    size_t n = sizeof r->endpoint;
    zmq_getsockopt(r->sock, ZMQ_LAST_ENDPOINT, r->endpoint, &n);
}

static void
router_close(router_t *r)
{
    zmq_close(r->sock);
    r->sock = NULL;
}

/*  One request as the router saw it. */
typedef struct {
    unsigned char rid[256];
    size_t rid_len;
    unsigned char body[4096];
    size_t body_len;
    int nframes;
    char id[160], op[64];
    int64_t at; /* when it arrived (monotonic ms) */
    dfc_doc_t *doc;
} req_t;

static void
req_free(req_t *q)
{
    dfc_doc_destroy(&q->doc);
}

/*  Waits up to ms for a request. 1 when one came (parsed into q), 0 if not. */
static int
router_recv(router_t *r, int ms, req_t *q)
{
    memset(q, 0, sizeof *q);
    zmq_pollitem_t it = {.socket = r->sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, ms) <= 0)
        return 0;
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, r->sock, 0) < 0) {
            zmq_msg_close(&m);
            return 0;
        }
        size_t n = zmq_msg_size(&m);
        if (q->nframes == 0) {
            q->rid_len = n < sizeof q->rid ? n : sizeof q->rid;
            memcpy(q->rid, zmq_msg_data(&m), q->rid_len);
        } else {
            q->body_len = n < sizeof q->body ? n : sizeof q->body;
            memcpy(q->body, zmq_msg_data(&m), q->body_len);
        }
        q->nframes++;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    q->at = tu_now_ms();
    if (dfc_doc_parse(q->body, q->body_len, &q->doc) == 0) {
        const dfc_value_t *root = dfc_doc_root(q->doc);
        const char *s = dfc_value_str(dfc_value_find(root, "id"), NULL);
        snprintf(q->id, sizeof q->id, "%s", s ? s : "");
        s = dfc_value_str(dfc_value_find(root, "op"), NULL);
        snprintf(q->op, sizeof q->op, "%s", s ? s : "");
    }
    return 1;
}

/*  Sends a reply to q's peer: {v, id, ok, result|error, replayed, found}.
    result_json: the result as JSON (ok); else code/message/status/retry. */
static void
router_reply(router_t *r, const req_t *q, const char *id, bool ok, const char *result_json,
             const char *code, const char *message, int status, int retry_ms)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_str_with_body(&pk, id, strlen(id));
    msgpack_pack_str_with_body(&pk, "ok", 2);
    if (ok) {
        msgpack_pack_true(&pk);
        msgpack_pack_str_with_body(&pk, "result", 6);
        json_error_t e;
        json_t *j = json_loads(result_json, JSON_DECODE_ANY, &e);
        tu_pack_json(&pk, j);
        json_decref(j);
    } else {
        msgpack_pack_false(&pk);
        msgpack_pack_str_with_body(&pk, "error", 5);
        msgpack_pack_map(&pk, 2 + (status ? 1 : 0) + (retry_ms ? 1 : 0));
        msgpack_pack_str_with_body(&pk, "code", 4);
        msgpack_pack_str_with_body(&pk, code, strlen(code));
        msgpack_pack_str_with_body(&pk, "message", 7);
        msgpack_pack_str_with_body(&pk, message, strlen(message));
        if (status) {
            msgpack_pack_str_with_body(&pk, "status", 6);
            msgpack_pack_int(&pk, status);
        }
        if (retry_ms) {
            msgpack_pack_str_with_body(&pk, "retry_after_ms", 14);
            msgpack_pack_int(&pk, retry_ms);
        }
    }
    msgpack_pack_str_with_body(&pk, "replayed", 8);
    msgpack_pack_false(&pk);
    msgpack_pack_str_with_body(&pk, "found", 5);
    msgpack_pack_false(&pk);
    zmq_send(r->sock, q->rid, q->rid_len, ZMQ_SNDMORE);
    zmq_send(r->sock, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

static void
reply_ok(router_t *r, const req_t *q, const char *result_json)
{
    router_reply(r, q, q->id, true, result_json, NULL, NULL, 0, 0);
}

/* --------------------------------------------------------- async results */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int n, rc;
    dfc_reply_t *reply;
    int64_t at;
} done_t;

static void
done_init(done_t *d)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cond, NULL);
}

static void
done_fini(done_t *d)
{
    dfc_reply_destroy(&d->reply);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
}

static void
on_reply(void *arg, int rc, dfc_reply_t *reply)
{
    done_t *d = arg;
    pthread_mutex_lock(&d->mu);
    d->n++;
    d->rc = rc;
    dfc_reply_destroy(&d->reply);
    d->reply = reply;
    d->at = tu_now_ms();
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

/*  Waits up to ms for n callbacks; returns the count seen. */
static int
done_wait(done_t *d, int n, int ms)
{
    struct timespec dl = tu_deadline(ms);
    pthread_mutex_lock(&d->mu);
    while (d->n < n && pthread_cond_timedwait(&d->cond, &d->mu, &dl) == 0)
        ;
    int got = d->n;
    pthread_mutex_unlock(&d->mu);
    return got;
}

static dfc_client_t *
client(const char *endpoint, int timeout_ms, int attempts)
{
    dfc_client_config_t cfg = {
        .endpoint = endpoint, .zmq_ctx = zctx, .timeout_ms = timeout_ms, .attempts = attempts};
    dfc_client_t *c = dfc_client_new(&cfg);
    if (!c) {
        fprintf(stderr, "dfc_client_new failed\n");
        exit(2);
    }
    return c;
}

/*  Waits (bounded) until the client's stats satisfy pred. */
static bool
stats_wait(dfc_client_t *c, bool (*pred)(const dfc_client_stats_t *), int ms)
{
    int64_t end = tu_now_ms() + ms;
    dfc_client_stats_t st;
    do {
        dfc_client_stats(c, &st);
        if (pred(&st))
            return true;
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    } while (tu_now_ms() < end);
    return false;
}

static bool
one_unmatched(const dfc_client_stats_t *s)
{
    return s->unmatched == 1;
}

/* ------------------------------------------------------------------ cases */

/*  The request frame, byte for byte, and a reply's accessors. */
static void
test_request_bytes_and_reply(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    dfc_client_t *c = client(r.endpoint, 5000, 1);
    dfc_args_t *a = dfc_args_new();
    dfc_args_str(a, "stream_id", "S1");
    dfc_args_str(a, "message", "<messageML>hi</messageML>");
    size_t alen;
    const void *args = dfc_args_data(a, &alen);
    done_t d;
    done_init(&d);
    CHECK_EQ(dfc_client_call_async(c, "messages.send", "req-1", args, alen, on_reply, &d), 0);
    req_t q;
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_EQ(q.nframes, 2); /* routing id + the one request frame */
    /* the same document written by msgpack-c */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_str_with_body(&pk, "req-1", 5);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "messages.send", 13);
    msgpack_pack_str_with_body(&pk, "args", 4);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "stream_id", 9);
    msgpack_pack_str_with_body(&pk, "S1", 2);
    msgpack_pack_str_with_body(&pk, "message", 7);
    msgpack_pack_str_with_body(&pk, "<messageML>hi</messageML>", 25);
    CHECK_EQ(q.body_len, sb.size);
    CHECK(q.body_len == sb.size && memcmp(q.body, sb.data, sb.size) == 0);
    msgpack_sbuffer_destroy(&sb);

    /* not replies: not msgpack, a map without id, three frames: dropped and counted */
    zmq_send(r.sock, q.rid, q.rid_len, ZMQ_SNDMORE);
    zmq_send(r.sock, "\xc1", 1, 0);
    zmq_send(r.sock, q.rid, q.rid_len, ZMQ_SNDMORE);
    zmq_send(r.sock, "\x81\xa1v\x01", 4, 0);
    zmq_send(r.sock, q.rid, q.rid_len, ZMQ_SNDMORE);
    zmq_send(r.sock, "a", 1, ZMQ_SNDMORE);
    zmq_send(r.sock, "b", 1, ZMQ_SNDMORE);
    zmq_send(r.sock, "c", 1, 0);
    reply_ok(&r, &q, "{\"messageId\":\"M1\",\"timestamp\":9007199254740993,\"data\":\"{}\"}");
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK_EQ(d.rc, DFC_OK);
    CHECK(dfc_reply_ok(d.reply));
    CHECK_STR(dfc_reply_id(d.reply), "req-1");
    CHECK(dfc_reply_error_code(d.reply) == NULL);
    CHECK(!dfc_reply_replayed(d.reply) && !dfc_reply_found(d.reply));
    CHECK_STR(dfc_value_str(dfc_value_get(dfc_reply_result(d.reply), "messageId"), NULL), "M1");
    int64_t ts = 0;
    CHECK_EQ(dfc_value_int64(dfc_value_get(dfc_reply_result(d.reply), "timestamp"), &ts), 0);
    CHECK(ts == INT64_C(9007199254740993));
    req_free(&q);
    done_fini(&d);

    /* an error reply: code, message, status */
    done_init(&d);
    CHECK_EQ(dfc_client_call_async(c, "streams.info", "req-2", NULL, 0, on_reply, &d), 0);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_STR(q.op, "streams.info");
    CHECK_EQ(dfc_value_size(dfc_value_find(dfc_doc_root(q.doc), "args")), 0);
    router_reply(&r, &q, "req-2", false, NULL, "rejected", "Stream S9 not found", 400, 0);
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK_EQ(d.rc, DFC_OK);
    CHECK(!dfc_reply_ok(d.reply));
    CHECK(dfc_reply_result(d.reply) == NULL);
    CHECK_STR(dfc_reply_error_code(d.reply), "rejected");
    CHECK_STR(dfc_reply_error_message(d.reply), "Stream S9 not found");
    CHECK_EQ(dfc_reply_status(d.reply), 400);
    req_free(&q);
    done_fini(&d);

    /* refused before anything is sent: bad op, id, args */
    dfc_reply_t *out = NULL;
    unsigned char arr[] = {0x90}, trunc[] = {0x81, 0xa1};
    char big[130];
    memset(big, 'x', 129);
    big[129] = '\0';
    CHECK_EQ(dfc_client_call(c, "", "x", NULL, 0, &out), DFC_EINVAL);
    CHECK_EQ(dfc_client_call(c, "streams.info", "", NULL, 0, &out), DFC_EINVAL);
    CHECK_EQ(dfc_client_call(c, "streams.info", big, NULL, 0, &out), DFC_EINVAL);
    big[128] = '\0'; /* 128 bytes: fine (answered below) */
    CHECK_EQ(dfc_client_call(c, "streams.info", "a\nb", NULL, 0, &out), DFC_EINVAL);
    CHECK_EQ(dfc_client_call(c, "streams.info",
                             "a\xc2\x85"
                             "b",
                             NULL, 0, &out),
             DFC_EINVAL);
    CHECK_EQ(dfc_client_call(c, "streams.info", "\xff", NULL, 0, &out), DFC_EINVAL);
    CHECK_EQ(dfc_client_call(c, "streams.info", "x", arr, sizeof arr, &out), DFC_EINVAL);
    CHECK_EQ(dfc_client_call(c, "streams.info", "x", trunc, sizeof trunc, &out), DFC_EINVAL);
    CHECK(out == NULL);
    CHECK_EQ(router_recv(&r, 100, &q), 0); /* none of them was sent */
    done_init(&d);
    CHECK_EQ(dfc_client_call_async(c, "streams.info", big, NULL, 0, on_reply, &d), 0);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_STR(q.id, big);
    reply_ok(&r, &q, "null");
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK_EQ(dfc_value_type(dfc_reply_result(d.reply)), DFC_NIL);
    CHECK(dfc_reply_result(d.reply) != NULL);
    req_free(&q);
    done_fini(&d);

    dfc_client_stats_t st;
    dfc_client_stats(c, &st);
    CHECK_EQ(st.calls, 3);
    CHECK_EQ(st.sent, 3);
    CHECK_EQ(st.replies, 6);
    CHECK_EQ(st.bad_replies, 3);
    CHECK_EQ(st.unmatched + st.resent + st.timeouts, 0);
    dfc_args_destroy(&a);
    dfc_client_destroy(&c);
    CHECK(c == NULL);
    router_close(&r);
}

/*  No reply: the same bytes again after timeout_ms; the late answer to the
    first send is dropped and counted; then every attempt used -> ETIMEOUT. */
static void
test_timeout_resend(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    dfc_client_t *c = client(r.endpoint, 300, 3);
    done_t d;
    done_init(&d);
    int64_t t0 = tu_now_ms();
    CHECK_EQ(dfc_client_call_async(c, "messages.send", "once", "\x80", 1, on_reply, &d), 0);
    req_t q1, q2;
    CHECK_EQ(router_recv(&r, 5000, &q1), 1);
    CHECK_EQ(router_recv(&r, 5000, &q2), 1); /* not answered: resent */
    CHECK(q2.at - q1.at >= 250);
    CHECK_STR(q2.id, "once");
    CHECK(q1.body_len == q2.body_len && memcmp(q1.body, q2.body, q1.body_len) == 0);
    reply_ok(&r, &q2, "{\"n\":2}");
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK_EQ(d.rc, DFC_OK);
    CHECK_EQ(dfc_value_double(dfc_value_get(dfc_reply_result(d.reply), "n")), 2);
    /* the first send's reply comes late: nobody waits for it any more */
    reply_ok(&r, &q1, "{\"n\":1}");
    CHECK(stats_wait(c, one_unmatched, 5000));
    CHECK_EQ(done_wait(&d, 2, 200), 1); /* not delivered twice */
    req_free(&q1);
    req_free(&q2);
    done_fini(&d);

    /* every attempt unanswered: exactly 3 sends, then DFC_ETIMEOUT at about 3 x 300 ms */
    done_init(&d);
    t0 = tu_now_ms();
    CHECK_EQ(dfc_client_call_async(c, "messages.send", "lost", "\x80", 1, on_reply, &d), 0);
    int sends = 0;
    req_t q;
    while (router_recv(&r, 1500, &q) == 1) {
        CHECK_STR(q.id, "lost");
        sends++;
        req_free(&q);
    }
    CHECK_EQ(sends, 3);
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK_EQ(d.rc, DFC_ETIMEOUT);
    CHECK(d.reply == NULL);
    CHECK(d.at - t0 >= 850);
    done_fini(&d);
    dfc_client_stats_t st;
    dfc_client_stats(c, &st);
    CHECK_EQ(st.sent, 5);
    CHECK_EQ(st.resent, 3);
    CHECK_EQ(st.timeouts, 1);
    CHECK_EQ(st.unmatched, 1);
    dfc_client_destroy(&c);
    router_close(&r);
}

/*  busy: sent again (same id) after retry_after_ms; a busy whose wait does
    not fit the budget is the answer. */
static void
test_busy(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    dfc_client_t *c = client(r.endpoint, 2000, 1);
    done_t d;
    done_init(&d);
    CHECK_EQ(dfc_client_call_async(c, "messages.send", "b1", "\x80", 1, on_reply, &d), 0);
    req_t q1, q2;
    CHECK_EQ(router_recv(&r, 5000, &q1), 1);
    router_reply(&r, &q1, "b1", false, NULL, "busy", "queue full", 0, 300);
    int64_t t_busy = tu_now_ms();
    CHECK_EQ(router_recv(&r, 5000, &q2), 1);
    CHECK_STR(q2.id, "b1");
    CHECK(q2.at - t_busy >= 280);
    CHECK_EQ(done_wait(&d, 1, 0), 0); /* the busy reply was not handed out */
    reply_ok(&r, &q2, "{}");
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK(dfc_reply_ok(d.reply));
    req_free(&q1);
    req_free(&q2);
    done_fini(&d);

    done_init(&d);
    CHECK_EQ(dfc_client_call_async(c, "messages.send", "b2", "\x80", 1, on_reply, &d), 0);
    CHECK_EQ(router_recv(&r, 5000, &q1), 1);
    router_reply(&r, &q1, "b2", false, NULL, "busy", "queue full", 0, 5000);
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK_EQ(d.rc, DFC_OK);
    CHECK_STR(dfc_reply_error_code(d.reply), "busy");
    CHECK_EQ(dfc_reply_retry_after_ms(d.reply), 5000);
    CHECK_EQ(router_recv(&r, 200, &q2), 0);
    req_free(&q1);
    done_fini(&d);
    dfc_client_stats_t st;
    dfc_client_stats(c, &st);
    CHECK_EQ(st.busy_retries, 1);
    CHECK_EQ(st.sent, 3);
    dfc_client_destroy(&c);
    router_close(&r);
}

/*  The bridge goes away after reading the request and a new one binds the
    same address: the resend after the timeout reaches the new one. */
static void
test_bridge_restart(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    char ep[128];
    snprintf(ep, sizeof ep, "%s", r.endpoint);
    dfc_client_t *c = client(ep, 400, 5);
    done_t d;
    done_init(&d);
    CHECK_EQ(dfc_client_call_async(c, "messages.send", "r1", "\x80", 1, on_reply, &d), 0);
    req_t q;
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    req_free(&q);
    router_close(&r); /* killed between the call and its answer */
    router_open(&r, ep);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_STR(q.id, "r1");
    reply_ok(&r, &q, "{\"after\":\"restart\"}");
    CHECK_EQ(done_wait(&d, 1, 5000), 1);
    CHECK_EQ(d.rc, DFC_OK);
    CHECK_STR(dfc_value_str(dfc_value_get(dfc_reply_result(d.reply), "after"), NULL), "restart");
    req_free(&q);
    done_fini(&d);
    dfc_client_destroy(&c);
    router_close(&r);
}

/*  No bridge yet: 1500 async calls fill the socket's queue (SNDHWM 1000:
    the rest wait for POLLOUT), the bridge comes up, each request arrives
    once and every call gets its own answer. */
static void
done_count(void *arg, int rc, dfc_reply_t *reply)
{
    done_t *d = arg;
    int64_t i = -1;
    bool good =
        rc == DFC_OK && dfc_value_int64(dfc_value_get(dfc_reply_result(reply), "i"), &i) == 0;
    char want[32];
    snprintf(want, sizeof want, "q-%lld", (long long)i);
    good = good && strcmp(dfc_reply_id(reply), want) == 0;
    dfc_reply_destroy(&reply);
    pthread_mutex_lock(&d->mu);
    d->n++;
    if (!good)
        d->rc = -100;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

static void
test_queue_full(void)
{
    /* a free port from the kernel (a ZeroMQ listener bound and closed would close
       asynchronously and might still accept the client's first connection) */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
          getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    char ep[128];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
    router_t r;
    dfc_client_t *c = client(ep, 30000, 1); /* nobody listens yet */
    done_t d;
    done_init(&d);
    enum { N = 1500 };
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "q-%d", i);
        CHECK_EQ(dfc_client_call_async(c, "streams.info", id, NULL, 0, done_count, &d), 0);
    }
    router_open(&r, ep);
    static bool seen[N];
    int n = 0, dup = 0;
    req_t q;
    while (n < N && router_recv(&r, 10000, &q) == 1) {
        int i = -1;
        sscanf(q.id, "q-%d", &i);
        if (i < 0 || i >= N || seen[i])
            dup++;
        else
            seen[i] = true;
        char res[32];
        snprintf(res, sizeof res, "{\"i\":%d}", i);
        reply_ok(&r, &q, res);
        req_free(&q);
        n++;
    }
    CHECK_EQ(n, N);
    CHECK_EQ(dup, 0);
    CHECK_EQ(done_wait(&d, N, 10000), N);
    CHECK_EQ(d.rc, 0);
    dfc_client_stats_t st;
    dfc_client_stats(c, &st);
    CHECK_EQ(st.sent, N);
    CHECK_EQ(st.resent + st.unmatched + st.timeouts, 0);
    done_fini(&d);
    dfc_client_destroy(&c);
    router_close(&r);
}

/* ------------------------------------------------------ 100 threads at once */

#define NTHREADS 100

typedef struct {
    dfc_client_t *c;
    int i;
    _Atomic int *bad;
} worker_t;

static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    char id[32];
    snprintf(id, sizeof id, "t-%d", w->i);
    dfc_args_t *a = dfc_args_new();
    dfc_args_int(a, "i", w->i);
    size_t len;
    const void *args = dfc_args_data(a, &len);
    dfc_reply_t *r = NULL;
    int rc = dfc_client_call(w->c, "messages.get", id, args, len, &r);
    int64_t got = -1;
    if (rc != DFC_OK || !dfc_reply_ok(r) || strcmp(dfc_reply_id(r), id) != 0 ||
        dfc_value_int64(dfc_value_get(dfc_reply_result(r), "i"), &got) || got != w->i) {
        fprintf(stderr, "thread %d: rc %d, reply for %s (%lld)\n", w->i, rc,
                r ? dfc_reply_id(r) : "-", (long long)got);
        atomic_fetch_add(w->bad, 1);
    }
    dfc_reply_destroy(&r);
    dfc_args_destroy(&a);
    return NULL;
}

static void
test_threads(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    dfc_client_t *c = client(r.endpoint, 20000, 1);
    pthread_t th[NTHREADS];
    worker_t w[NTHREADS];
    _Atomic int bad = 0;
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker_t){.c = c, .i = i, .bad = &bad};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    /* all 100 requests first, then the answers in reverse order */
    static req_t q[NTHREADS];
    int n = 0;
    bool seen[NTHREADS] = {false};
    while (n < NTHREADS && router_recv(&r, 10000, &q[n]) == 1) {
        int i = -1;
        sscanf(q[n].id, "t-%d", &i);
        int64_t ai = -2;
        dfc_value_int64(dfc_value_get(dfc_value_find(dfc_doc_root(q[n].doc), "args"), "i"), &ai);
        CHECK(i >= 0 && i < NTHREADS && ai == i && !seen[i]);
        if (i >= 0 && i < NTHREADS)
            seen[i] = true;
        n++;
    }
    CHECK_EQ(n, NTHREADS);
    for (int k = n - 1; k >= 0; k--) {
        char res[64];
        int i = -1;
        sscanf(q[k].id, "t-%d", &i);
        snprintf(res, sizeof res, "{\"i\":%d}", i);
        reply_ok(&r, &q[k], res);
        req_free(&q[k]);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(atomic_load(&bad), 0);
    dfc_client_stats_t st;
    dfc_client_stats(c, &st);
    CHECK_EQ(st.calls, NTHREADS);
    CHECK_EQ(st.replies, NTHREADS);
    CHECK_EQ(st.unmatched, 0);
    dfc_client_destroy(&c);
    router_close(&r);
}

/* ------------------------------------------------ destroy with calls pending */

typedef struct {
    dfc_client_t *c;
    int rc;
    dfc_reply_t *r;
} pending_t;

static void *
pending_main(void *arg)
{
    pending_t *p = arg;
    char id[32];
    snprintf(id, sizeof id, "p-%p", arg);
    p->rc = dfc_client_call(p->c, "messages.send", id, NULL, 0, &p->r);
    return NULL;
}

static void
test_destroy_pending(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    dfc_client_t *c = client(r.endpoint, 30000, 1);
    pthread_t th[5];
    pending_t p[5];
    done_t d;
    done_init(&d);
    for (int i = 0; i < 5; i++) {
        p[i] = (pending_t){.c = c, .rc = 99};
        pthread_create(&th[i], NULL, pending_main, &p[i]);
    }
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "a-%d", i);
        CHECK_EQ(dfc_client_call_async(c, "messages.send", id, NULL, 0, on_reply, &d), 0);
    }
    /* all ten reached the bridge, which never answers */
    req_t q;
    int n = 0;
    while (n < 10 && router_recv(&r, 5000, &q) == 1) {
        n++;
        req_free(&q);
    }
    CHECK_EQ(n, 10);
    int64_t t0 = tu_now_ms();
    dfc_client_destroy(&c);
    CHECK(tu_now_ms() - t0 < TU_PROMPT_MS);
    CHECK(c == NULL);
    for (int i = 0; i < 5; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(p[i].rc, DFC_ECANCELED);
        CHECK(p[i].r == NULL);
    }
    CHECK_EQ(done_wait(&d, 5, 0), 5);
    CHECK_EQ(d.rc, DFC_ECANCELED);
    CHECK(d.reply == NULL);
    done_fini(&d);
    router_close(&r);
}

/* ---------------------------------------------------------- default ids */

static void
test_default_ids(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    dfc_client_t *c = client(r.endpoint, 5000, 1);
    done_t d;
    done_init(&d);
    req_t q;
    char ids[8][160];
    int n = 0;
    /* outside a job: a UUIDv4 each */
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(dfc_client_call_async(c, "streams.info", NULL, NULL, 0, on_reply, &d), 0);
        CHECK_EQ(router_recv(&r, 5000, &q), 1);
        snprintf(ids[n++], sizeof ids[0], "%s", q.id);
        reply_ok(&r, &q, "{}");
        req_free(&q);
    }
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(strlen(ids[i]), 36);
        CHECK(ids[i][8] == '-' && ids[i][13] == '-' && ids[i][14] == '4' && ids[i][18] == '-' &&
              strchr("89ab", ids[i][19]) && ids[i][23] == '-');
    }
    CHECK(strcmp(ids[0], ids[1]) != 0);
    /* inside a job: <event id>/<listener id>/<n>, every call counted, reset per job */
    dfc_context_set("worker-1", "EvT9", "replier");
    const char *want[] = {"EvT9/replier/1", "explicit", "EvT9/replier/3"};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(dfc_client_call_async(c, "streams.info", i == 1 ? "explicit" : NULL, NULL, 0,
                                       on_reply, &d),
                 0);
        CHECK_EQ(router_recv(&r, 5000, &q), 1);
        CHECK_STR(q.id, want[i]);
        reply_ok(&r, &q, "{}");
        req_free(&q);
    }
    dfc_context_set("worker-2", "EvT9", "replier"); /* the same event again, elsewhere */
    CHECK_EQ(dfc_client_call_async(c, "streams.info", NULL, NULL, 0, on_reply, &d), 0);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_STR(q.id, "EvT9/replier/1");
    reply_ok(&r, &q, "{}");
    req_free(&q);
    /* no event id, or an id beyond 128 bytes: random */
    char lname[140];
    memset(lname, 'L', 130);
    lname[130] = '\0';
    dfc_context_set("worker-1", NULL, "replier");
    CHECK_EQ(dfc_client_call_async(c, "streams.info", NULL, NULL, 0, on_reply, &d), 0);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_EQ(strlen(q.id), 36);
    reply_ok(&r, &q, "{}");
    req_free(&q);
    dfc_context_set("worker-1", "E", lname);
    CHECK_EQ(dfc_client_call_async(c, "streams.info", NULL, NULL, 0, on_reply, &d), 0);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_EQ(strlen(q.id), 36);
    reply_ok(&r, &q, "{}");
    req_free(&q);
    dfc_context_clear();
    CHECK_EQ(done_wait(&d, 8, 5000), 8);
    done_fini(&d);
    dfc_client_destroy(&c);
    router_close(&r);
}

/* ------------------------------------------------------------- dfc_args */

static void
test_args(void)
{
    dfc_args_t *a = dfc_args_new();
    dfc_args_str(a, "stream_id", "S");
    dfc_args_int(a, "neg", -33);
    dfc_args_int(a, "big", INT64_C(9007199254740993));
    dfc_args_bool(a, "silent", false);
    dfc_args_nil(a, "none");
    dfc_args_bin(a, "bin", "\x00\x01", 2);
    dfc_args_array_begin(a, "user_ids");
    for (int i = 0; i < 17; i++) /* > 15: array16 */
        dfc_args_int(a, NULL, 1000 + i);
    dfc_args_end(a);
    dfc_args_map_begin(a, "message");
    dfc_args_str(a, "message", "<messageML>x</messageML>");
    dfc_args_end(a);
    dfc_args_json(a, "data",
                  "{\"k\": [1, -2, 3.5, true, null, \"\\u00e9\\ud83d\\ude00\"], "
                  "\"u\": 18446744073709551615}");
    size_t len;
    const unsigned char *got = dfc_args_data(a, &len);
    CHECK(got != NULL);
    const char *json = "{\"stream_id\":\"S\",\"neg\":-33,\"big\":9007199254740993,\"silent\":false,"
                       "\"none\":null,\"bin\":\"AAE=\",\"user_ids\":[1000,1001,1002,1003,1004,1005,"
                       "1006,1007,1008,1009,1010,1011,1012,1013,1014,1015,1016],\"message\":{"
                       "\"message\":\"<messageML>x</messageML>\"},\"data\":{\"k\":[1,-2,3.5,true,"
                       "null,\"\xc3\xa9\xf0\x9f\x98\x80\"],\"u\":18446744073709551615}}";
    dfc_doc_t *doc = NULL;
    char out[1024];
    CHECK(got && dfc_doc_parse(got, len, &doc) == 0);
    dfc_value_to_json(dfc_doc_root(doc), out, sizeof out);
    CHECK_STR(out, json);
    dfc_doc_destroy(&doc);
    /* the bytes msgpack-c writes for the same document (smallest forms) */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    msgpack_pack_str_with_body(&pk, "stream_id", 9);
    msgpack_pack_str_with_body(&pk, "S", 1);
    msgpack_pack_str_with_body(&pk, "neg", 3);
    msgpack_pack_int64(&pk, -33);
    msgpack_pack_str_with_body(&pk, "big", 3);
    msgpack_pack_int64(&pk, INT64_C(9007199254740993));
    msgpack_pack_str_with_body(&pk, "silent", 6);
    msgpack_pack_false(&pk);
    msgpack_pack_str_with_body(&pk, "none", 4);
    msgpack_pack_nil(&pk);
    msgpack_pack_str_with_body(&pk, "bin", 3);
    msgpack_pack_bin_with_body(&pk, "\x00\x01", 2);
    msgpack_pack_str_with_body(&pk, "user_ids", 8);
    msgpack_pack_array(&pk, 17);
    for (int i = 0; i < 17; i++)
        msgpack_pack_int64(&pk, 1000 + i);
    msgpack_pack_str_with_body(&pk, "message", 7);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "message", 7);
    msgpack_pack_str_with_body(&pk, "<messageML>x</messageML>", 24);
    msgpack_pack_str_with_body(&pk, "data", 4);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "k", 1);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_int64(&pk, 1);
    msgpack_pack_int64(&pk, -2);
    msgpack_pack_double(&pk, 3.5);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_str_with_body(&pk, "\xc3\xa9\xf0\x9f\x98\x80", 6);
    msgpack_pack_str_with_body(&pk, "u", 1);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    CHECK_EQ(len, sb.size);
    CHECK(got && len == sb.size && memcmp(got, sb.data, len) == 0);
    msgpack_sbuffer_destroy(&sb);
    dfc_args_destroy(&a);
    CHECK(a == NULL);

    /* errors are sticky */
    a = dfc_args_new();
    CHECK_EQ(dfc_args_str(a, NULL, "no key in a map"), DFC_EINVAL);
    CHECK_EQ(dfc_args_str(a, "k", "v"), DFC_EINVAL);
    CHECK(dfc_args_data(a, &len) == NULL);
    dfc_args_destroy(&a);
    a = dfc_args_new();
    dfc_args_array_begin(a, "arr");
    CHECK_EQ(dfc_args_int(a, "key in an array", 1), DFC_EINVAL);
    dfc_args_destroy(&a);
    a = dfc_args_new();
    dfc_args_map_begin(a, "open");
    CHECK(dfc_args_data(a, &len) == NULL); /* a container still open */
    dfc_args_end(a);
    CHECK(dfc_args_data(a, &len) != NULL);
    CHECK_EQ(dfc_args_end(a), DFC_EINVAL); /* the root closes itself */
    dfc_args_destroy(&a);
    const char *bad[] = {"",    "{",    "[1,]",     "{\"a\" 1}", "01",   "1.", "\"\\ud800\"",
                         "tru", "{} x", "\"a\nb\"", "-",         "[1 2]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = dfc_args_new();
        CHECK_EQ(dfc_args_json(a, "x", bad[i]), DFC_EINVAL);
        CHECK(dfc_args_data(a, &len) == NULL);
        dfc_args_destroy(&a);
    }
    /* 600 nested arrays: refused, not a stack overflow */
    char deep[1300];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    deep[1200] = '\0';
    a = dfc_args_new();
    CHECK_EQ(dfc_args_json(a, "x", deep), DFC_EINVAL);
    dfc_args_destroy(&a);
}

/* ---------------------------------------------------------------- dfsend */

static const char *dfsend_path;
static char tmpdir[64];

/*  Starts dfsend with argv (NULL-terminated, without the program), its
    stdout and stderr into files of tmpdir. */
static pid_t
dfsend_start(const char *const *argv)
{
    char out[128], err[128];
    snprintf(out, sizeof out, "%s/out", tmpdir);
    snprintf(err, sizeof err, "%s/err", tmpdir);
    const char *args[32] = {dfsend_path};
    for (int i = 0; argv[i] && i < 30; i++)
        args[i + 1] = argv[i];
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, 1);
        dup2(e, 2);
        execv(dfsend_path, (char *const *)args);
        _exit(127);
    }
    return pid;
}

static int
dfsend_wait(pid_t pid)
{
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void
slurp(const char *name, char *buf, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void
test_dfsend(void)
{
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    char att[128], out[4096], err[1024], json[2048];
    snprintf(att, sizeof att, "%s/hello.txt", tmpdir);
    FILE *f = fopen(att, "w");
    fputs("hi!", f);
    fclose(f);
    req_t q;

    /* words: strings, typed values, an attachment; the reply printed as it came */
    const char *a1[] = {"--endpoint",
                        r.endpoint,
                        "--id",
                        "op-1",
                        "--attach",
                        att,
                        "messages.send",
                        "stream_id=S+/=",
                        "message=<messageML>hi</messageML>",
                        "n:=5",
                        "flags:=[true,null,{\"k\":\"v\"}]",
                        "version=",
                        NULL};
    pid_t pid = dfsend_start(a1);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_STR(q.id, "op-1");
    CHECK_STR(q.op, "messages.send");
    dfc_value_to_json(dfc_value_find(dfc_doc_root(q.doc), "args"), json, sizeof json);
    CHECK_STR(json, "{\"stream_id\":\"S+/=\",\"message\":\"<messageML>hi</messageML>\",\"n\":5,"
                    "\"flags\":[true,null,{\"k\":\"v\"}],\"version\":\"\",\"attachments\":[{"
                    "\"name\":\"hello.txt\",\"content\":\"aGkh\"}]}");
    CHECK_EQ(dfc_value_type(dfc_value_get(dfc_doc_root(q.doc), "args.attachments.0.content")),
             DFC_BIN);
    reply_ok(&r, &q, "{\"messageId\":\"M1\",\"timestamp\":1700000000123}");
    req_free(&q);
    CHECK_EQ(dfsend_wait(pid), 0);
    slurp("out", out, sizeof out);
    CHECK_STR(out, "{\"v\":1,\"id\":\"op-1\",\"ok\":true,\"result\":{\"messageId\":\"M1\","
                   "\"timestamp\":1700000000123},\"replayed\":false,\"found\":false}\n");

    /* --json; an error reply: exit 1, the code on stderr */
    const char *a2[] = {"--endpoint",   r.endpoint, "--json", "{\"user_ids\": [12, 13]}",
                        "users.lookup", NULL};
    pid = dfsend_start(a2);
    CHECK_EQ(router_recv(&r, 5000, &q), 1);
    CHECK_EQ(strlen(q.id), 36); /* no --id: a UUID */
    dfc_value_to_json(dfc_value_find(dfc_doc_root(q.doc), "args"), json, sizeof json);
    CHECK_STR(json, "{\"user_ids\":[12,13]}");
    router_reply(&r, &q, q.id, false, NULL, "rejected", "no such user", 400, 0);
    req_free(&q);
    CHECK_EQ(dfsend_wait(pid), 1);
    slurp("err", err, sizeof err);
    CHECK_STR(err, "rejected 400: no such user\n");
    slurp("out", out, sizeof out);
    CHECK(strstr(out, "\"ok\":false,\"error\":{\"code\":\"rejected\"") != NULL);

    /* no reply: every attempt sent with the same id, then exit 3 */
    const char *a3[] = {"--endpoint", r.endpoint, "--id",         "nobody",      "--timeout", "200",
                        "--attempts", "2",        "streams.info", "stream_id=S", NULL};
    pid = dfsend_start(a3);
    int n = 0;
    while (router_recv(&r, 1000, &q) == 1) {
        CHECK_STR(q.id, "nobody");
        n++;
        req_free(&q);
    }
    CHECK_EQ(n, 2);
    CHECK_EQ(dfsend_wait(pid), 3);

    /* usage errors: nothing sent */
    const char *u1[] = {"--endpoint", r.endpoint, "streams.info", "n:=nope", NULL};
    const char *u2[] = {"--endpoint", r.endpoint, "--json", "[1]", "streams.info", NULL};
    const char *u3[] = {"--endpoint", r.endpoint, "--id", "", "streams.info", NULL};
    const char *u4[] = {"--endpoint", r.endpoint, NULL};
    const char *const *us[] = {u1, u2, u3, u4};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(dfsend_wait(dfsend_start(us[i])), 2);
    CHECK_EQ(router_recv(&r, 100, &q), 0);
    unlink(att);
    router_close(&r);
}

/* ------------------------------------------------------- golden vectors */

static int
unhex(const char *h, unsigned char *out, size_t cap)
{
    size_t n = strlen(h) / 2;
    if (n > cap)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return (int)n;
}

/*  A golden view's value into args ({"$bin": hex} is a bin). */
static void
args_put(dfc_args_t *a, const char *key, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        json_t *bin = json_object_get(v, "$bin");
        if (bin && json_object_size(v) == 1) {
            unsigned char b[4096];
            int n = unhex(json_string_value(bin), b, sizeof b);
            dfc_args_bin(a, key, b, n > 0 ? (size_t)n : 0);
            return;
        }
        dfc_args_map_begin(a, key);
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) args_put(a, k, x);
        dfc_args_end(a);
        return;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        dfc_args_array_begin(a, key);
        json_array_foreach(v, i, x) args_put(a, NULL, x);
        dfc_args_end(a);
        return;
    }
    case JSON_STRING:
        dfc_args_strn(a, key, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        dfc_args_int(a, key, json_integer_value(v));
        return;
    case JSON_REAL: {
        char t[64];
        snprintf(t, sizeof t, "%.17g", json_real_value(v));
        dfc_args_json(a, key, t);
        return;
    }
    case JSON_TRUE:
    case JSON_FALSE:
        dfc_args_bool(a, key, json_is_true(v));
        return;
    default:
        dfc_args_nil(a, key);
    }
}

/*  The golden command vectors (schemas/golden/vectors.json "commands", made
    by python3-msgpack): every request in the client's form ({v, id, op,
    args}) comes out of dfc_client byte for byte; every reply frame, sent by
    the fake bridge as it is, reads back as its view. */
static void
test_golden(const char *path)
{
    json_error_t e;
    json_t *all = json_load_file(path, 0, &e), *cmds = json_object_get(all, "commands");
    if (!cmds) {
        printf("golden: %s has no command vectors: skipped\n", path);
        json_decref(all);
        return;
    }
    router_t r;
    router_open(&r, "tcp://127.0.0.1:*");
    dfc_client_t *c = client(r.endpoint, 2000, 1);
    size_t i;
    json_t *vec;
    int compared = 0;
    json_array_foreach(json_object_get(cmds, "requests"), i, vec)
    {
        const char *name = json_string_value(json_object_get(vec, "name"));
        json_t *view = json_loads(json_string_value(json_object_get(vec, "view")), 0, &e);
        /* the client writes exactly v:1, id, op, args: other forms are the bridge's to read */
        const char *keys[4] = {NULL}, *k;
        json_t *x;
        size_t nk = 0;
        json_object_foreach(view, k, x) if (nk < 4) keys[nk++] = k;
        if (json_object_size(view) != 4 || strcmp(keys[0], "v") || strcmp(keys[1], "id") ||
            strcmp(keys[2], "op") || strcmp(keys[3], "args") ||
            json_integer_value(json_object_get(view, "v")) != 1) {
            json_decref(view);
            continue;
        }
        dfc_args_t *a = dfc_args_new();
        json_object_foreach(json_object_get(view, "args"), k, x) args_put(a, k, x);
        size_t alen;
        const void *args = dfc_args_data(a, &alen);
        done_t d;
        done_init(&d);
        CHECK(args != NULL);
        CHECK_EQ(dfc_client_call_async(c, json_string_value(json_object_get(view, "op")),
                                       json_string_value(json_object_get(view, "id")), args, alen,
                                       on_reply, &d),
                 0);
        req_t q;
        CHECK_EQ(router_recv(&r, 5000, &q), 1);
        static unsigned char want[8192];
        int n = unhex(json_string_value(json_object_get(vec, "msgpack_hex")), want, sizeof want);
        if (n < 0 || (size_t)n != q.body_len || memcmp(want, q.body, (size_t)n) != 0) {
            fprintf(stderr, "FAIL golden request %s: not the golden bytes\n", name);
            failures++;
        }
        reply_ok(&r, &q, "null");
        CHECK_EQ(done_wait(&d, 1, 5000), 1);
        req_free(&q);
        done_fini(&d);
        dfc_args_destroy(&a);
        json_decref(view);
        compared++;
    }
    CHECK(compared >= 12);

    int replies = 0, unmatched = 0;
    json_array_foreach(json_object_get(cmds, "replies"), i, vec)
    {
        const char *name = json_string_value(json_object_get(vec, "name"));
        json_t *view = json_loads(json_string_value(json_object_get(vec, "view")), 0, &e);
        const char *id = json_string_value(json_object_get(view, "id"));
        static unsigned char frame[8192];
        int n = unhex(json_string_value(json_object_get(vec, "msgpack_hex")), frame, sizeof frame);
        CHECK(n > 0);
        done_t d;
        done_init(&d);
        req_t q;
        if (!*id) {
            /* no usable id: matches no call; sent after a request so it has a peer */
            CHECK_EQ(dfc_client_call_async(c, "streams.info", "carrier", NULL, 0, on_reply, &d), 0);
            CHECK_EQ(router_recv(&r, 5000, &q), 1);
            zmq_send(r.sock, q.rid, q.rid_len, ZMQ_SNDMORE);
            zmq_send(r.sock, frame, (size_t)n, 0);
            reply_ok(&r, &q, "{}");
            CHECK_EQ(done_wait(&d, 1, 5000), 1);
            unmatched++;
            req_free(&q);
            done_fini(&d);
            json_decref(view);
            continue;
        }
        CHECK_EQ(dfc_client_call_async(c, "messages.get", id, NULL, 0, on_reply, &d), 0);
        CHECK_EQ(router_recv(&r, 5000, &q), 1);
        zmq_send(r.sock, q.rid, q.rid_len, ZMQ_SNDMORE);
        zmq_send(r.sock, frame, (size_t)n, 0);
        CHECK_EQ(done_wait(&d, 1, 5000), 1);
        dfc_reply_t *rep = d.reply;
        CHECK_EQ(d.rc, DFC_OK);
        json_t *err = json_object_get(view, "error");
        char text[8192];
        dfc_value_to_json(dfc_reply_value(rep), text, sizeof text);
        json_t *got = json_loads(text, 0, &e);
        if (!rep || !json_equal(got, view) ||
            dfc_reply_ok(rep) != json_is_true(json_object_get(view, "ok")) ||
            strcmp(dfc_reply_id(rep), id) != 0 ||
            dfc_reply_replayed(rep) != json_is_true(json_object_get(view, "replayed")) ||
            dfc_reply_found(rep) != json_is_true(json_object_get(view, "found")) ||
            (err ? !dfc_reply_error_code(rep) ||
                       strcmp(dfc_reply_error_code(rep),
                              json_string_value(json_object_get(err, "code"))) ||
                       strcmp(dfc_reply_error_message(rep),
                              json_string_value(json_object_get(err, "message"))) ||
                       dfc_reply_status(rep) !=
                           json_integer_value(json_object_get(err, "status")) ||
                       dfc_reply_retry_after_ms(rep) !=
                           json_integer_value(json_object_get(err, "retry_after_ms")) ||
                       dfc_reply_result(rep) != NULL
                 : dfc_reply_error_code(rep) != NULL || dfc_reply_result(rep) == NULL)) {
            fprintf(stderr, "FAIL golden reply %s: read back as %s\n", name, text);
            failures++;
        }
        json_decref(got);
        replies++;
        req_free(&q);
        done_fini(&d);
        json_decref(view);
    }
    CHECK(replies >= 12);
    dfc_client_stats_t st;
    dfc_client_stats(c, &st);
    CHECK_EQ(st.unmatched, unmatched);
    CHECK_EQ(st.bad_replies, 0);
    printf("golden: %d requests byte for byte, %d replies read, %d without id dropped\n", compared,
           replies, unmatched);
    dfc_client_destroy(&c);
    router_close(&r);
    json_decref(all);
}

int
main(int argc, char **argv)
{
    dfc_log_set_level(DFC_LOG_ERROR);
    zctx = zmq_ctx_new();
    test_args();
    test_request_bytes_and_reply();
    test_timeout_resend();
    test_busy();
    test_bridge_restart();
    test_default_ids();
    test_threads();
    test_queue_full();
    test_destroy_pending();
    if (argc > 1) {
        dfsend_path = argv[1];
        snprintf(tmpdir, sizeof tmpdir, "/tmp/dfsend_test.XXXXXX");
        if (mkdtemp(tmpdir)) {
            test_dfsend();
            char p[128];
            snprintf(p, sizeof p, "%s/out", tmpdir);
            unlink(p);
            snprintf(p, sizeof p, "%s/err", tmpdir);
            unlink(p);
            rmdir(tmpdir);
        } else {
            CHECK(!"mkdtemp");
        }
    }
    if (argc > 2)
        test_golden(argv[2]);
    zmq_ctx_term(zctx);
    return df_check_report("consumer_client");
}
