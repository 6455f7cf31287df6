/*  consumer_dftail: runs the dftail binary (path in argv[1]) against an XPUB
    on loopback TCP and compares its output with exact expected JSON lines:
    int64 min, uint64 max, -0.0, \u0000, emoji, escapes, fixed envelope key
    order, topic filtering, malformed messages on stderr, SIGINT and idle exit;
    against the fake bridge (fakebridge.h): --from-gseq with the replay
    endpoint learnt from the heartbeat, and --heartbeats; --metrics: the
    counters by reason over HTTP, 404 elsewhere. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakebridge.h"

static const char *dftail_path;

typedef struct {
    pid_t pid;
    int out, err;
} child_t;

static child_t
spawn(const char *const *args)
{
    child_t c = {-1, -1, -1};
    int po[2], pe[2];
    if (pipe(po) || pipe(pe))
        return c;
    c.pid = fork();
    if (c.pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        close(po[1]);
        close(pe[1]);
        const char *argv[32] = {dftail_path};
        int i = 1;
        for (; args[i - 1] && i < 31; i++)
            argv[i] = args[i - 1];
        argv[i] = NULL;
        execv(dftail_path, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    c.out = po[0];
    c.err = pe[0];
    return c;
}

/*  Reads both pipes until EOF (bounded), then reaps the child. Returns the
    exit status, or -1 on timeout (the child is then killed). */
static int
finish(child_t *c, char *out, size_t outsz, char *err, size_t errsz, int timeout_ms)
{
    size_t no = 0, ne = 0;
    int64_t end = tu_now_ms() + timeout_ms;
    struct pollfd fds[2] = {{c->out, POLLIN, 0}, {c->err, POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0 && tu_now_ms() < end) {
        if (poll(fds, 2, (int)(end - tu_now_ms())) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            char *buf = i ? err : out;
            size_t *len = i ? &ne : &no, cap = i ? errsz : outsz;
            ssize_t r = read(fds[i].fd, buf + *len, cap - 1 - *len);
            if (r <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            } else {
                *len += (size_t)r;
            }
        }
    }
    out[no] = '\0';
    err[ne] = '\0';
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    int status = 0;
    if (open_fds > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &status, 0);
        return -1;
    }
    waitpid(c->pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void *
new_xpub(void *ctx, char *endpoint, size_t size)
{
    void *x = zmq_socket(ctx, ZMQ_XPUB);
    int linger = 0;
    zmq_setsockopt(x, ZMQ_LINGER, &linger, sizeof linger);
    CHECK(zmq_bind(x, "tcp://127.0.0.1:*") == 0);
    zmq_getsockopt(x, ZMQ_LAST_ENDPOINT, endpoint, &size);
    return x;
}

static void
pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

static void
test_exact_lines(void *ctx)
{
    char ep[256];
    void *x = new_xpub(ctx, ep, sizeof ep);
    const char *args[] = {"--endpoint", ep, "--count", "3", "--timeout", "10000", NULL};
    child_t c = spawn(args);
    CHECK(c.pid > 0);
    CHECK(tu_wait_subscription(x, 10000) == 0);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* 1: the awkward values */
    msgpack_pack_map(&pk, 7);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, 1);
    pack_key(&pk, "seq");
    msgpack_pack_uint64(&pk, 1);
    pack_key(&pk, "gseq");
    msgpack_pack_uint64(&pk, 10);
    pack_key(&pk, "epoch");
    msgpack_pack_str_with_body(&pk, "ep\"1", 4);
    pack_key(&pk, "ts");
    msgpack_pack_uint64(&pk, 1700000000123ull);
    pack_key(&pk, "bot");
    msgpack_pack_int64(&pk, 68719476738LL);
    pack_key(&pk, "event");
    msgpack_pack_map(&pk, 9);
    pack_key(&pk, "id");
    msgpack_pack_str_with_body(&pk, "a1", 2);
    pack_key(&pk, "n");
    msgpack_pack_int64(&pk, INT64_MIN);
    pack_key(&pk, "u");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    pack_key(&pk, "z");
    msgpack_pack_double(&pk, -0.0);
    pack_key(&pk, "f");
    msgpack_pack_double(&pk, 0.1);
    pack_key(&pk, "s");
    static const char s[] = "nul\0 emoji \xf0\x9f\x98\x80 ctl\x01\n\"\\/";
    msgpack_pack_str_with_body(&pk, s, sizeof s - 1);
    pack_key(&pk, "b");
    msgpack_pack_true(&pk);
    pack_key(&pk, "x");
    msgpack_pack_nil(&pk);
    pack_key(&pk, "arr");
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int64(&pk, 1);
    msgpack_pack_int64(&pk, -1);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_double(&pk, 2.0);
    CHECK(tu_send2(x, "MESSAGESENT", sb.data, sb.size) == 0);

    /* 2: malformed (v = 2) and a 1-frame message: stderr, not counted */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, 2);
    CHECK(tu_send2(x, "MESSAGESENT", sb.data, sb.size) == 0);
    zmq_send(x, "MESSAGESENT", 11, 0);

    /* 3: keys in another order plus an unknown one: printed in fixed order */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 8);
    pack_key(&pk, "event");
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "type");
    msgpack_pack_str_with_body(&pk, "FUTURE", 6);
    pack_key(&pk, "extra");
    msgpack_pack_array(&pk, 0);
    pack_key(&pk, "bot");
    msgpack_pack_int64(&pk, -5);
    pack_key(&pk, "ts");
    msgpack_pack_uint64(&pk, 2);
    pack_key(&pk, "epoch");
    msgpack_pack_str_with_body(&pk, "e", 1);
    pack_key(&pk, "gseq");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    pack_key(&pk, "seq");
    msgpack_pack_uint64(&pk, 3);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, 1);
    CHECK(tu_send2(x, "FUTURE", sb.data, sb.size) == 0);

    /* 4: a reserved topic: its body is shown as is */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "up");
    msgpack_pack_true(&pk);
    CHECK(tu_send2(x, "_heartbeat", sb.data, sb.size) == 0);

    static char out[65536], err[65536];
    int rc = finish(&c, out, sizeof out, err, sizeof err, 10000);
    CHECK_EQ(rc, 0);
    CHECK_STR(out, "{\"topic\":\"MESSAGESENT\",\"v\":1,\"seq\":1,\"gseq\":10,\"epoch\":\"ep\\\"1\","
                   "\"ts\":1700000000123,\"bot\":68719476738,\"event\":{\"id\":\"a1\","
                   "\"n\":-9223372036854775808,\"u\":18446744073709551615,\"z\":-0.0,"
                   "\"f\":0.10000000000000001,"
                   "\"s\":\"nul\\u0000 emoji \xf0\x9f\x98\x80 ctl\\u0001\\u000a\\\"\\\\/\","
                   "\"b\":true,\"x\":null,\"arr\":[1,-1,1.5,2.0]}}\n"
                   "{\"topic\":\"FUTURE\",\"v\":1,\"seq\":3,\"gseq\":18446744073709551615,"
                   "\"epoch\":\"e\",\"ts\":2,\"bot\":-5,\"event\":{\"type\":\"FUTURE\"}}\n"
                   "{\"topic\":\"_heartbeat\",\"body\":{\"up\":true}}\n");
    CHECK(strstr(err, "bad or newer version") != NULL);
    CHECK(strstr(err, "frame count is not 2") != NULL);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(x);
}

static void
test_topic_filter(void *ctx)
{
    char ep[256];
    void *x = new_xpub(ctx, ep, sizeof ep);
    const char *args[] = {"--endpoint", ep,      "--count",     "1",
                          "--timeout",  "10000", "ROOMCREATED", NULL};
    child_t c = spawn(args);
    CHECK(tu_wait_subscription(x, 10000) == 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tu_envelope(&sb, 1, 1, "e", 7, "{\"id\":\"m\"}");
    tu_send2(x, "MESSAGESENT", sb.data, sb.size);
    tu_send2(x, "ROOMCREATEDX", sb.data, sb.size); /* prefix match only: not shown */
    tu_envelope(&sb, 1, 2, "e", 7, "{\"id\":\"r\"}");
    tu_send2(x, "ROOMCREATED", sb.data, sb.size);
    static char out[4096], err[4096];
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 10000), 0);
    CHECK_STR(out, "{\"topic\":\"ROOMCREATED\",\"v\":1,\"seq\":1,\"gseq\":2,\"epoch\":\"e\","
                   "\"ts\":1700000000123,\"bot\":7,\"event\":{\"id\":\"r\"}}\n");
    msgpack_sbuffer_destroy(&sb);
    zmq_close(x);
}

/*  The library's frame rule (dfc_frames_check): an empty topic and one of
    256 bytes are dropped with a line on stderr; 255 bytes are fine. */
static void
test_bad_topics(void *ctx)
{
    char ep[256];
    void *x = new_xpub(ctx, ep, sizeof ep);
    const char *args[] = {"--endpoint", ep, "--count", "2", "--timeout", "10000", NULL};
    child_t c = spawn(args);
    CHECK(tu_wait_subscription(x, 10000) == 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    tu_envelope(&sb, 1, 1, "e", 7, "{\"id\":\"t\"}");
    char topic[257];
    memset(topic, 'T', sizeof topic);
    CHECK(tu_send2n(x, "", 0, sb.data, sb.size) == 0);
    CHECK(tu_send2n(x, topic, 256, sb.data, sb.size) == 0);
    CHECK(tu_send2n(x, topic, 255, sb.data, sb.size) == 0);
    CHECK(tu_send2(x, "MESSAGESENT", sb.data, sb.size) == 0);
    static char out[4096], err[4096];
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 10000), 0);
    topic[255] = '\0';
    char want[1024];
    snprintf(want, sizeof want,
             "{\"topic\":\"%s\",\"v\":1,\"seq\":1,\"gseq\":1,\"epoch\":\"e\","
             "\"ts\":1700000000123,\"bot\":7,\"event\":{\"id\":\"t\"}}\n"
             "{\"topic\":\"MESSAGESENT\",\"v\":1,\"seq\":1,\"gseq\":1,\"epoch\":\"e\","
             "\"ts\":1700000000123,\"bot\":7,\"event\":{\"id\":\"t\"}}\n",
             topic);
    CHECK_STR(out, want);
    int drops = 0;
    for (const char *p = err; (p = strstr(p, "topic empty or over 255 bytes")) != NULL; p++)
        drops++;
    CHECK_EQ(drops, 2);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(x);
}

static void
test_sigint_and_idle(void *ctx)
{
    char ep[256];
    void *x = new_xpub(ctx, ep, sizeof ep);
    const char *args[] = {"--endpoint", ep, NULL};
    child_t c = spawn(args);
    CHECK(tu_wait_subscription(x, 10000) == 0);
    int64_t t0 = tu_now_ms();
    kill(c.pid, SIGINT);
    static char out[4096], err[4096];
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 5000), 0);
    CHECK(tu_now_ms() - t0 < TU_PROMPT_MS);
    CHECK_STR(out, "");

    const char *idle[] = {"--endpoint", ep, "--timeout", "200", NULL};
    t0 = tu_now_ms();
    c = spawn(idle);
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 5000), 0);
    CHECK(tu_now_ms() - t0 >= 200);
    CHECK(strstr(err, "idle for 200 ms") != NULL);
    zmq_close(x);
}

/*  Lines must carry gseq first..last in order, nothing else. */
static void
check_gseqs(const char *out, int first, int last)
{
    const char *p = out;
    int want = first, lines = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        char needle[48];
        snprintf(needle, sizeof needle, "\"gseq\":%d,", want);
        const char *hit = strstr(p, needle);
        CHECK(hit != NULL && hit < nl);
        want++;
        lines++;
        p = nl + 1;
    }
    CHECK_EQ(lines, last - first + 1);
}

/*  Reads fd into buf (appending at *len) until `want` appears or timeout;
    true when it did. */
static bool
read_until(int fd, char *buf, size_t size, size_t *len, const char *want, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    while (!strstr(buf, want) && tu_now_ms() < end && *len + 1 < size) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - tu_now_ms())) <= 0)
            continue;
        ssize_t r = read(fd, buf + *len, size - 1 - *len);
        if (r <= 0)
            break;
        *len += (size_t)r;
        buf[*len] = '\0';
    }
    return strstr(buf, want) != NULL;
}

/*  GET http://127.0.0.1:port/path (HTTP/1.0: the server closes after the
    answer). Returns the status, the whole answer in buf; -1 on failure. */
static int
http_get(int port, const char *path, char *buf, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    buf[0] = '\0';
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    int64_t end = tu_now_ms() + 5000;
    while (len + 1 < size && tu_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - tu_now_ms())) <= 0)
            continue;
        ssize_t r = read(fd, buf + len, size - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fd);
    int status = -1;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    return status;
}

/*  The value of sample `line` ("name{labels} ") in a /metrics answer, -1 if absent. */
static long long
sample(const char *page, const char *line)
{
    const char *p = strstr(page, line);
    return p ? strtoll(p + strlen(line), NULL, 10) : -1;
}

/*  --metrics: 2 events, 5 malformed messages (one per reason dftail can
    see), a heartbeat and a reserved message; the scrape counts each under
    the library's name, with the label; 404 elsewhere; SIGINT exits 0. */
static void
test_metrics(void *ctx)
{
    char ep[256];
    void *x = new_xpub(ctx, ep, sizeof ep);
    const char *args[] = {"--endpoint",      ep,         "--metrics", "127.0.0.1:0",
                          "--metrics-label", "worker=t", NULL};
    child_t c = spawn(args);
    static char err[65536], out[65536], page[65536];
    size_t elen = 0;
    err[0] = '\0';
    CHECK(read_until(c.err, err, sizeof err, &elen, "GET /metrics\n", 10000));
    int port = 0;
    const char *at = strstr(err, "metrics on port ");
    if (at)
        port = atoi(at + strlen("metrics on port "));
    CHECK(port > 0);
    CHECK(tu_wait_subscription(x, 10000) == 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tu_envelope(&sb, 1, 1, "e", 7, "{\"id\":\"a\"}");
    CHECK(tu_send2(x, "MESSAGESENT", sb.data, sb.size) == 0);
    tu_envelope(&sb, 2, 2, "e", 7, "{\"id\":\"b\"}");
    CHECK(tu_send2(x, "MESSAGESENT", sb.data, sb.size) == 0);
    CHECK(tu_send2(x, "MESSAGESENT", "\xc1", 1) == 0); /* bad_msgpack */
    CHECK(tu_send2(x, "MESSAGESENT", "\x07", 1) == 0); /* not_map */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, 2);
    CHECK(tu_send2(x, "MESSAGESENT", sb.data, sb.size) == 0); /* bad_version */
    zmq_send(x, "MESSAGESENT", 11, 0);                        /* bad_frames */
    tu_envelope(&sb, 3, 3, "e", 7, "[1]");
    CHECK(tu_send2(x, "MESSAGESENT", sb.data, sb.size) == 0); /* bad_event */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 0);
    CHECK(tu_send2(x, "_hb", sb.data, sb.size) == 0);
    CHECK(tu_send2(x, "_other", sb.data, sb.size) == 0);
    /* poll the counter until all 9 are read (bounded) */
    int64_t end = tu_now_ms() + 10000;
    while (tu_now_ms() < end && (http_get(port, "/metrics", page, sizeof page) != 200 ||
                                 sample(page, "\ndfconsumer_received_total{worker=\"t\"} ") < 9))
        usleep(20000);
    CHECK(strstr(page, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
    static const struct {
        const char *name;
        long long want;
    } want[] = {
        {"dfconsumer_received_total", 9},    {"dfconsumer_reserved_total", 2},
        {"dfconsumer_heartbeats_total", 1},  {"dfconsumer_dropped_malformed_total", 5},
        {"dfconsumer_bad_msgpack_total", 1}, {"dfconsumer_not_map_total", 1},
        {"dfconsumer_bad_version_total", 1}, {"dfconsumer_bad_frames_total", 1},
        {"dfconsumer_bad_event_total", 1},   {"dfconsumer_bad_envelope_total", 0},
        {"dfconsumer_oversize_total", 0},    {"dfconsumer_listeners", 0},
        {"dfconsumer_replayed_total", 0},    {"dfconsumer_replay_requests_total", 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "\n%s{worker=\"t\"} ", want[i].name);
        long long got = sample(page, line);
        if (got != want[i].want)
            fprintf(stderr, "%s: %lld, want %lld\n", want[i].name, got, want[i].want);
        CHECK_EQ(got, want[i].want);
    }
    /* ts 1700000000123: the lag is years, in seconds */
    CHECK(sample(page, "\ndfconsumer_lag_seconds{worker=\"t\"} ") > 86400);
    CHECK_EQ(http_get(port, "/", page, sizeof page), 404);
    CHECK_EQ(http_get(port, "/metricsx", page, sizeof page), 404);
    kill(c.pid, SIGINT);
    CHECK_EQ(finish(&c, out, sizeof out, err + elen, sizeof err - elen, 5000), 0);
    /* the two events and the reserved message are printed, nothing else */
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    CHECK_EQ(lines, 3);
    CHECK_EQ(http_get(port, "/metrics", page, sizeof page), -1); /* closed */
    msgpack_sbuffer_destroy(&sb);
    zmq_close(x);
}

static void
test_replay(void *ctx)
{
    fb_t fb;
    fb_init(&fb, ctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "ep-dt", 0);
    for (int i = 0; i < 5; i++) /* journaled before dftail runs */
        fb_message(&fb, "s1", NULL, true);
    const char *args[] = {"--endpoint", fb.pub_ep,   "--from-gseq", "2", "--count",
                          "6",          "--timeout", "10000",       NULL};
    child_t c = spawn(args);
    CHECK(tu_wait_subscription(fb.xpub, 10000) == 0);
    fb_heartbeat(&fb);                 /* names the replay endpoint; not printed */
    fb_message(&fb, "s1", NULL, true); /* 6: replayed or live, printed once */
    fb_message(&fb, "s1", NULL, true); /* 7 */
    static char out[65536], err[4096];
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 10000), 0);
    check_gseqs(out, 2, 7);
    CHECK(strstr(out, "_hb") == NULL);
    CHECK(strstr(out, "\"id\":\"e2\"") != NULL);

    /* the same with the endpoint given, and a topic that is not there */
    const char *args2[] = {"--endpoint", fb.pub_ep, "--from-gseq", "6", "--replay",
                           fb.rep_ep,    "--count", "2",           NULL};
    c = spawn(args2);
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 10000), 0);
    check_gseqs(out, 6, 7);

    /* gone: an error on stderr, status 1 */
    fb_lock(&fb);
    fb.oldest = 3;
    fb_unlock(&fb);
    const char *args3[] = {"--endpoint", fb.pub_ep, "--from-gseq", "1",
                           "--replay",   fb.rep_ep, NULL};
    c = spawn(args3);
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 10000), 1);
    CHECK(strstr(err, "replay from gseq 1: gone") != NULL);

    /* --heartbeats prints them (first forget the earlier runs' subscriptions) */
    char sub[256];
    while (zmq_recv(fb.xpub, sub, sizeof sub, ZMQ_DONTWAIT) >= 0)
        ;
    const char *args4[] = {"--endpoint", fb.pub_ep, "--heartbeats", "--count", "2", NULL};
    c = spawn(args4);
    CHECK(tu_wait_subscription(fb.xpub, 10000) == 0);
    fb_heartbeat(&fb);
    fb_message(&fb, "s1", NULL, true); /* 8 */
    CHECK_EQ(finish(&c, out, sizeof out, err, sizeof err, 10000), 0);
    const char *hb_head = "{\"topic\":\"_hb\",\"body\":{\"v\":1,\"epoch\":\"ep-dt\",\"gseq\":7,";
    CHECK(strncmp(out, hb_head, strlen(hb_head)) == 0);
    CHECK(strstr(out, "\n{\"topic\":\"MESSAGESENT\",\"v\":1,\"seq\":8,\"gseq\":8,") != NULL);
    fb_fini(&fb);
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: consumer_test_dftail PATH-TO-DFTAIL\n");
        return 2;
    }
    dftail_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    void *ctx = zmq_ctx_new();
    test_exact_lines(ctx);
    test_topic_filter(ctx);
    test_bad_topics(ctx);
    test_sigint_and_idle(ctx);
    test_replay(ctx);
    test_metrics(ctx);
    zmq_ctx_term(ctx);
    return df_check_report("consumer_dftail");
}
