/*  consumer_curve: CURVE in libdfconsumer and dftail (issue 9), real tcp on
    127.0.0.1 against curvebridge.py (a fake bridge whose XPUB and replay
    ROUTER are CURVE servers with pyzmq's ThreadAuthenticator as the ZAP
    handler, one allow-list per socket), driven over its stdin/stdout:
    an allowed consumer gets every event, replayed and live; a valid key not
    allowed gets nothing, backs off, and gets in within 5 s of the grant
    without a restart; a refused replay DEALER is connected again; a wrong
    server key gets nothing and does not crash; bad config fails in
    dfc_loop_new with a precise log line; dftail likewise.
    Usage: consumer_test_curve PYTHON3 CURVEBRIDGE.PY DFTAIL */
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dfc_internal.h"
#include "testutil.h"

static const char *python3, *script, *dftail_path;

/* ------------------------------------------------------------ processes */

typedef struct {
    pid_t pid;
    int in, out, err; /* -1 when not piped */
    char buf[65536];  /* what was read from out and not consumed yet */
    size_t len;
} proc_t;

static int
proc_spawn(proc_t *p, const char *const *argv, bool with_stdin)
{
    int pi[2] = {-1, -1}, po[2], pe[2];
    memset(p, 0, sizeof *p);
    if ((with_stdin && pipe(pi)) || pipe(po) || pipe(pe))
        return -1;
    p->pid = fork();
    if (p->pid == 0) {
        if (with_stdin)
            dup2(pi[0], 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        for (int fd = 3; fd < 256; fd++)
            close(fd);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (with_stdin)
        close(pi[0]);
    close(po[1]);
    close(pe[1]);
    p->in = with_stdin ? pi[1] : -1;
    p->out = po[0];
    p->err = pe[0];
    return p->pid > 0 ? 0 : -1;
}

/*  The next line of p's stdout (without the newline) into line, waiting at
    most timeout_ms; 0, or -1 on timeout or EOF. */
static int
proc_line(proc_t *p, char *line, size_t size, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl) {
            size_t n = (size_t)(nl - p->buf);
            size_t c = n < size - 1 ? n : size - 1;
            memcpy(line, p->buf, c);
            line[c] = '\0';
            memmove(p->buf, nl + 1, p->len - n - 1);
            p->len -= n + 1;
            return 0;
        }
        int64_t left = end - tu_now_ms();
        struct pollfd fd = {p->out, POLLIN, 0};
        if (left <= 0 || poll(&fd, 1, (int)left) <= 0)
            return -1;
        ssize_t r = read(p->out, p->buf + p->len, sizeof p->buf - 1 - p->len);
        if (r <= 0)
            return -1;
        p->len += (size_t)r;
    }
}

/*  Everything p writes to stderr until it exits (bounded), and its status
    (-1: killed at the deadline). */
static int
proc_wait(proc_t *p, char *err, size_t size, int timeout_ms)
{
    size_t n = 0;
    int64_t end = tu_now_ms() + timeout_ms;
    struct pollfd fd = {p->err, POLLIN, 0};
    while (tu_now_ms() < end) {
        if (poll(&fd, 1, (int)(end - tu_now_ms())) <= 0)
            continue;
        ssize_t r = read(p->err, err + n, size - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    err[n] = '\0';
    int status = 0;
    if (tu_now_ms() >= end)
        kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    close(p->out);
    close(p->err);
    if (p->in >= 0)
        close(p->in);
    return tu_now_ms() >= end ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* ------------------------------------------------------ curvebridge.py */

typedef struct {
    proc_t p;
    char dir[128], pub[128], replay[128], server_z85[64];
} bridge_t;

static json_t *bridge_cmd(bridge_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *
bridge_cmd(bridge_t *b, const char *fmt, ...)
{
    char cmd[256], line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd - 1, fmt, ap);
    va_end(ap);
    strcat(cmd, "\n");
    if (write(b->p.in, cmd, strlen(cmd)) != (ssize_t)strlen(cmd) ||
        proc_line(&b->p, line, sizeof line, 10000) != 0) {
        fprintf(stderr, "curvebridge.py: no answer to %s", cmd);
        exit(1);
    }
    json_t *v = json_loads(line, 0, NULL);
    if (!v || json_object_get(v, "error")) {
        fprintf(stderr, "curvebridge.py: %s -> %s\n", cmd, line);
        exit(1);
    }
    return v;
}

/*  A command whose answer is {"ok": true}. */
static bool
bridge_ok(bridge_t *b, const char *cmd)
{
    json_t *v = bridge_cmd(b, "%s", cmd);
    bool ok = json_is_true(json_object_get(v, "ok"));
    json_decref(v);
    return ok;
}

static long long
bridge_stat(bridge_t *b, const char *name)
{
    json_t *v = bridge_cmd(b, "stats");
    long long n = json_integer_value(json_object_get(v, name));
    json_decref(v);
    return n;
}

static void
bridge_start(bridge_t *b)
{
    snprintf(b->dir, sizeof b->dir, "/tmp/dfc-curve-XXXXXX");
    if (!mkdtemp(b->dir)) {
        perror("mkdtemp");
        exit(1);
    }
    const char *argv[] = {python3, script, b->dir, NULL};
    char line[4096];
    if (proc_spawn(&b->p, argv, true) || proc_line(&b->p, line, sizeof line, 15000)) {
        fprintf(stderr, "curvebridge.py did not start\n");
        exit(1);
    }
    json_t *v = json_loads(line, 0, NULL);
    snprintf(b->pub, sizeof b->pub, "%s", json_string_value(json_object_get(v, "pub")));
    snprintf(b->replay, sizeof b->replay, "%s", json_string_value(json_object_get(v, "replay")));
    snprintf(b->server_z85, sizeof b->server_z85, "%s",
             json_string_value(json_object_get(v, "server_key")));
    json_decref(v);
}

static void
bridge_stop(bridge_t *b)
{
    char err[8192];
    if (write(b->p.in, "quit\n", 5) != 5)
        kill(b->p.pid, SIGKILL);
    CHECK_EQ(proc_wait(&b->p, err, sizeof err, 10000), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", b->dir);
}

static const char *
key(bridge_t *b, const char *name, bool secret)
{
    static char paths[8][256];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 256, "%s/keys/%s.key%s", b->dir, name, secret ? "_secret" : "");
    return p;
}

/* ---------------------------------------------------------- the loop */

typedef struct {
    pthread_mutex_t mu;
    uint64_t gseqs[256];
    size_t n;
} rec_t;

static bool
accept_all(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in, int64_t bot)
{
    return true;
}

static void
on_sent(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in, const dfc_message_sent_t *p)
{
    rec_t *r = ctx;
    char want[32];
    snprintf(want, sizeof want, "ev-%llu", (unsigned long long)dfc_event_gseq(ev));
    pthread_mutex_lock(&r->mu);
    if (r->n < 256)
        r->gseqs[r->n++] = strcmp(dfc_event_id(ev), want) == 0 ? dfc_event_gseq(ev) : 0;
    pthread_mutex_unlock(&r->mu);
}

static size_t
rec_count(rec_t *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*  The recorded gseqs, sorted (workers run concurrently), are exactly lo..hi. */
static bool
rec_is(rec_t *r, uint64_t lo, uint64_t hi)
{
    pthread_mutex_lock(&r->mu);
    qsort(r->gseqs, r->n, sizeof r->gseqs[0], cmp_u64);
    bool ok = r->n == hi - lo + 1;
    for (size_t i = 0; ok && i < r->n; i++)
        ok = r->gseqs[i] == lo + i;
    if (!ok) {
        fprintf(stderr, "got %zu gseqs:", r->n);
        for (size_t i = 0; i < r->n; i++)
            fprintf(stderr, " %llu", (unsigned long long)r->gseqs[i]);
        fprintf(stderr, "\n");
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

typedef struct {
    dfc_loop_t *loop;
    pthread_t th;
    rec_t rec;
    dfc_listener_t l;
} run_t;

static void *
run_thread(void *arg)
{
    dfc_loop_start(((run_t *)arg)->loop);
    return NULL;
}

static void
run_start(run_t *r, bridge_t *b, dfc_config_t *cfg, bool replay)
{
    memset(&r->rec, 0, sizeof r->rec);
    pthread_mutex_init(&r->rec.mu, NULL);
    r->loop = dfc_loop_new(cfg);
    if (!r->loop) {
        fprintf(stderr, "dfc_loop_new failed\n");
        exit(1);
    }
    r->l = (dfc_listener_t){.name = "rec", .ctx = &r->rec, .is_accepting_event = accept_all,
                            .on_message_sent = on_sent};
    dfc_loop_subscribe(r->loop, &r->l);
    dfc_loop_connect_replay(r->loop, b->pub, replay ? b->replay : NULL);
    pthread_create(&r->th, NULL, run_thread, r);
}

static dfc_stats_t
run_stop(run_t *r)
{
    dfc_loop_stop(r->loop);
    pthread_join(r->th, NULL);
    dfc_stats_t st;
    dfc_loop_stats(r->loop, &st);
    dfc_loop_destroy(&r->loop);
    return st;
}

static uint64_t
stat_of(run_t *r, size_t off)
{
    dfc_stats_t st;
    dfc_loop_stats(r->loop, &st);
    uint64_t v;
    memcpy(&v, (char *)&st + off, sizeof v);
    return v;
}
#define STAT(r, f) stat_of((r), offsetof(dfc_stats_t, f))

/*  Polls cond every 5 ms for at most ms; true when it held. */
#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        int64_t end_ = tu_now_ms() + (ms);                                                         \
        while (!(cond) && tu_now_ms() < end_)                                                      \
            usleep(5000);                                                                          \
        (cond);                                                                                    \
    })

static void
test_allowed(void)
{
    bridge_t b;
    bridge_start(&b);
    json_decref(bridge_cmd(&b, "publish 5")); /* before the consumer: only replay has them */
    dfc_config_t cfg = {.from_gseq = 1, .server_key = key(&b, "bridge", false),
                        .cert = key(&b, "allowed", true)};
    run_t r;
    run_start(&r, &b, &cfg, true);
    CHECK(bridge_ok(&b, "subscribed 5000"));
    json_decref(bridge_cmd(&b, "heartbeat"));
    CHECK(WAIT_FOR(rec_count(&r.rec) == 5, 5000));
    json_decref(bridge_cmd(&b, "publish 15"));
    CHECK(WAIT_FOR(rec_count(&r.rec) == 20, 5000));
    dfc_stats_t st = run_stop(&r);
    CHECK(rec_is(&r.rec, 1, 20));
    CHECK_EQ(st.replayed, 5);
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(st.gaps, 0);
    CHECK_EQ(st.auth_failures, 0);
    CHECK_EQ(bridge_stat(&b, "denied"), 0);
    bridge_stop(&b);
}

static void
test_denied_then_allowed(void)
{
    bridge_t b;
    bridge_start(&b);
    /* the Z85 form of the server key this time */
    dfc_config_t cfg = {.server_key = b.server_z85, .cert = key(&b, "denied", true)};
    run_t r;
    run_start(&r, &b, &cfg, false);
    CHECK(WAIT_FOR(STAT(&r, auth_failures) >= 1, 5000));
    int64_t t1 = tu_now_ms();
    CHECK(WAIT_FOR(STAT(&r, auth_failures) >= 4, 5000));
    /* connected again after 250, 500, 1000 ms (a fixed 250 ms: 0.75 s) */
    int64_t took = tu_now_ms() - t1;
    if (took < 1600)
        fprintf(stderr, "4th refusal %lld ms after the 1st\n", (long long)took);
    CHECK(took >= 1600);
    json_decref(bridge_cmd(&b, "publish 3"));
    CHECK(bridge_stat(&b, "denied") >= 4);
    int64_t t0 = tu_now_ms();
    CHECK(bridge_ok(&b, "allow denied"));
    CHECK(bridge_ok(&b, "subscribed 5000"));
    CHECK(tu_now_ms() - t0 < 5000);
    json_decref(bridge_cmd(&b, "publish 4"));
    CHECK(WAIT_FOR(rec_count(&r.rec) == 4, 5000));
    dfc_stats_t st = run_stop(&r);
    CHECK(rec_is(&r.rec, 4, 7)); /* 1..3 went out while it was refused */
    CHECK_EQ(st.received, 4);
    CHECK(st.auth_failures >= 4);
    bridge_stop(&b);
}

static void
test_dealer_refused(void)
{
    bridge_t b;
    bridge_start(&b);
    CHECK(bridge_ok(&b, "allow denied pub"));
    json_decref(bridge_cmd(&b, "publish 6"));
    dfc_config_t cfg = {.from_gseq = 1, .replay_timeout_ms = 3000,
                        .server_key = key(&b, "bridge", false), .cert = key(&b, "denied", true)};
    run_t r;
    run_start(&r, &b, &cfg, true);
    CHECK(bridge_ok(&b, "subscribed 5000"));
    json_decref(bridge_cmd(&b, "heartbeat"));
    /* 3 refusals before the request's timeout: 2 of them reconnects of ours */
    CHECK(WAIT_FOR(STAT(&r, auth_failures) >= 3, 5000));
    CHECK_EQ(STAT(&r, replay_errors), 0);
    CHECK_EQ(rec_count(&r.rec), 0);
    CHECK(bridge_ok(&b, "allow denied replay"));
    CHECK(WAIT_FOR(rec_count(&r.rec) == 6, 5000));
    json_decref(bridge_cmd(&b, "publish 2"));
    CHECK(WAIT_FOR(rec_count(&r.rec) == 8, 5000));
    dfc_stats_t st = run_stop(&r);
    CHECK(rec_is(&r.rec, 1, 8));
    CHECK_EQ(st.replayed, 6);
    CHECK_EQ(st.lost, 0);
    bridge_stop(&b);
}

/*  Both allowed; one key revoked and every connection cut (what the bridge
    does on a revocation): the revoked consumer is refused from then on, the
    allowed one reconnects and fills what it missed from replay. */
static void
test_revoked(void)
{
    bridge_t b;
    bridge_start(&b);
    CHECK(bridge_ok(&b, "allow other"));
    dfc_config_t ca = {.server_key = key(&b, "bridge", false), .cert = key(&b, "allowed", true)};
    dfc_config_t co = {.server_key = key(&b, "bridge", false), .cert = key(&b, "other", true)};
    run_t a, o;
    run_start(&a, &b, &ca, true);
    CHECK(bridge_ok(&b, "subscribed 5000"));
    run_start(&o, &b, &co, true);
    CHECK(bridge_ok(&b, "subscribed 5000"));
    json_decref(bridge_cmd(&b, "publish 5"));
    CHECK(WAIT_FOR(rec_count(&a.rec) == 5 && rec_count(&o.rec) == 5, 5000));
    CHECK(bridge_ok(&b, "revoke other"));
    CHECK(bridge_ok(&b, "rebind"));
    json_decref(bridge_cmd(&b, "publish 3")); /* during the cut */
    int64_t t0 = tu_now_ms();
    CHECK(bridge_ok(&b, "subscribed 5000")); /* the allowed one is back */
    CHECK(WAIT_FOR(STAT(&o, auth_failures) >= 1, 5000));
    CHECK(tu_now_ms() - t0 < 5000);
    json_decref(bridge_cmd(&b, "publish 2"));
    json_decref(bridge_cmd(&b, "heartbeat"));
    CHECK(WAIT_FOR(rec_count(&a.rec) == 10, 5000));
    usleep(300 * 1000); /* the revoked one gets nothing more: no event to wait for */
    dfc_stats_t sa = run_stop(&a), so = run_stop(&o);
    CHECK(rec_is(&a.rec, 1, 10));
    CHECK_EQ(sa.lost, 0);
    CHECK_EQ(sa.auth_failures, 0);
    CHECK(sa.replayed >= 3);
    CHECK(rec_is(&o.rec, 1, 5));
    CHECK(so.auth_failures >= 1);
    bridge_stop(&b);
}

static void
test_wrong_server_key(void)
{
    bridge_t b;
    bridge_start(&b);
    dfc_config_t cfg = {.from_gseq = 1, .server_key = key(&b, "other", false),
                        .cert = key(&b, "allowed", true)};
    run_t r;
    run_start(&r, &b, &cfg, true);
    CHECK(WAIT_FOR(STAT(&r, auth_failures) >= 2, 5000));
    json_decref(bridge_cmd(&b, "publish 3"));
    json_decref(bridge_cmd(&b, "heartbeat"));
    usleep(300 * 1000); /* nothing may come: there is no event to wait for */
    dfc_stats_t st = run_stop(&r);
    CHECK_EQ(rec_count(&r.rec), 0);
    CHECK_EQ(st.received, 0);
    CHECK(st.connects > 0);
    CHECK_EQ(bridge_stat(&b, "allowed") + bridge_stat(&b, "denied"), 0); /* ZAP never asked */
    bridge_stop(&b);
}

/*  dfc_loop_new refuses cfg and logs a line holding every word. */
static void
refused(const dfc_config_t *cfg, const char *w1, const char *w2, const char *w3)
{
    char *log = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&log, &len);
    dfc_log_set_stream(f);
    dfc_loop_t *loop = dfc_loop_new(cfg);
    dfc_log_set_stream(stderr);
    fclose(f);
    CHECK(loop == NULL);
    dfc_loop_destroy(&loop);
    const char *w[] = {"invalid argument", w1, w2, w3};
    for (int i = 0; i < 4; i++)
        if (w[i] && !strstr(log, w[i])) {
            fprintf(stderr, "FAIL: log lacks \"%s\": %s", w[i], log);
            failures++;
        }
    free(log);
}

static void
test_bad_config(void)
{
    bridge_t b;
    bridge_start(&b);
    const char *server = key(&b, "bridge", false), *cert = key(&b, "allowed", true);
    char garbage[256], mixed[256], missing[256], nofile[256];
    snprintf(garbage, sizeof garbage, "%s/garbage.key", b.dir);
    snprintf(mixed, sizeof mixed, "%s/mixed.key_secret", b.dir);
    snprintf(missing, sizeof missing, "%s/nope.key_secret", b.dir);
    snprintf(nofile, sizeof nofile, "%s/nope.key", b.dir);
    FILE *f = fopen(garbage, "w");
    fputs("this is not a certificate\n", f);
    fclose(f);
    /* allowed's public key with other's secret key */
    dfc_curve_t a, o;
    char err[512];
    CHECK_EQ(dfc_curve_load(&a, server, cert, err, sizeof err), DFC_OK);
    CHECK_EQ(dfc_curve_load(&o, server, key(&b, "other", true), err, sizeof err), DFC_OK);
    char pz[41], sz[41];
    zmq_z85_encode(pz, a.public_key, 32);
    zmq_z85_encode(sz, o.secret, 32);
    f = fopen(mixed, "w");
    fprintf(f, "metadata\ncurve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", pz, sz);
    fclose(f);
    explicit_bzero(sz, sizeof sz);
    dfc_curve_wipe(&o);
    dfc_curve_t zero;
    memset(&zero, 0, sizeof zero);
    dfc_curve_wipe(&a);
    CHECK(memcmp(&a, &zero, sizeof a) == 0);

    refused(&(dfc_config_t){.server_key = server}, "server_key needs cert", NULL, NULL);
    refused(&(dfc_config_t){.cert = cert}, "cert needs server_key", NULL, NULL);
    refused(&(dfc_config_t){.server_key = server, .cert = missing}, "cert:", missing,
            "No such file");
    refused(&(dfc_config_t){.server_key = nofile, .cert = cert}, "server_key:",
            "neither a certificate file", "40-character Z85 key");
    refused(&(dfc_config_t){.server_key = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", .cert = cert},
            "server_key:", "neither", "(39 characters)");
    refused(&(dfc_config_t){.server_key = garbage, .cert = cert}, "server_key:", garbage, NULL);
    refused(&(dfc_config_t){.server_key = key(&b, "bridge", true), .cert = cert}, "server_key:",
            "bridge.key_secret", "holds a secret-key");
    refused(&(dfc_config_t){.server_key = server, .cert = key(&b, "allowed", false)}, "cert:",
            "allowed.key", "public certificate");
    refused(&(dfc_config_t){.server_key = server, .cert = garbage}, "cert:", garbage, NULL);
    refused(&(dfc_config_t){.server_key = server, .cert = mixed}, "cert:", "mixed.key_secret",
            "does not belong");
    bridge_stop(&b);
}

/* --------------------------------------------------------------- dftail */

/*  dftail with the arguments (NULL-terminated). */
#define DFTAIL(...) dftail((const char *[]){dftail_path, __VA_ARGS__, NULL})
static proc_t
dftail(const char **argv)
{
    proc_t p;
    if (proc_spawn(&p, argv, false)) {
        perror("spawn dftail");
        exit(1);
    }
    return p;
}

/*  The gseqs of n lines of dftail's output are exactly lo..lo+n-1. */
static void
dftail_lines(proc_t *p, uint64_t lo, int n)
{
    for (int i = 0; i < n; i++) {
        char line[65536];
        if (proc_line(p, line, sizeof line, 10000) != 0) {
            fprintf(stderr, "FAIL: dftail line %d of %d missing\n", i + 1, n);
            failures++;
            return;
        }
        json_t *v = json_loads(line, 0, NULL);
        CHECK_EQ(json_integer_value(json_object_get(v, "gseq")), lo + (uint64_t)i);
        json_decref(v);
    }
}

static void
test_dftail(void)
{
    bridge_t b;
    bridge_start(&b);
    char err[65536];
    /* allowed: 2 replayed, then 2 live, exactly */
    json_decref(bridge_cmd(&b, "publish 2"));
    proc_t p = DFTAIL("--endpoint", b.pub, "--from-gseq", "1", "--replay", b.replay, "--count",
                      "4", "--server-key", key(&b, "bridge", false), "--cert",
                      key(&b, "allowed", true));
    CHECK(bridge_ok(&b, "subscribed 5000"));
    json_decref(bridge_cmd(&b, "publish 2"));
    dftail_lines(&p, 1, 4);
    CHECK_EQ(proc_wait(&p, err, sizeof err, 10000), 0);

    /* refused, then allowed while it runs: the events published after */
    p = DFTAIL("--endpoint", b.pub, "--count", "2", "--timeout", "15000", "--server-key",
               b.server_z85, "--cert", key(&b, "denied", true));
    CHECK(WAIT_FOR(bridge_stat(&b, "denied") >= 2, 5000));
    CHECK(bridge_ok(&b, "allow denied pub"));
    CHECK(bridge_ok(&b, "subscribed 5000"));
    json_decref(bridge_cmd(&b, "publish 2"));
    dftail_lines(&p, 5, 2);
    CHECK_EQ(proc_wait(&p, err, sizeof err, 10000), 0);
    CHECK(strstr(err, "refused by the bridge") != NULL);

    /* its replay refused: a clear error, exit 1 */
    p = DFTAIL("--endpoint", b.pub, "--from-gseq", "1", "--replay", b.replay, "--count", "4",
               "--server-key", key(&b, "bridge", false), "--cert", key(&b, "denied", true));
    CHECK_EQ(proc_wait(&p, err, sizeof err, 10000), 1);
    CHECK(strstr(err, "the CURVE handshake failed") != NULL);

    /* bad options: exit 2 naming the option */
    p = DFTAIL("--server-key", key(&b, "bridge", false));
    CHECK_EQ(proc_wait(&p, err, sizeof err, 10000), 2);
    CHECK(strstr(err, "server_key needs cert") != NULL);
    p = DFTAIL("--server-key", key(&b, "bridge", true), "--cert", key(&b, "allowed", true));
    CHECK_EQ(proc_wait(&p, err, sizeof err, 10000), 2);
    CHECK(strstr(err, "holds a secret-key") != NULL);
    bridge_stop(&b);
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PYTHON3 CURVEBRIDGE.PY DFTAIL\n", argv[0]);
        return 2;
    }
    python3 = argv[1];
    script = argv[2];
    dftail_path = argv[3];
    signal(SIGPIPE, SIG_IGN);
    dfc_log_set_level(DFC_LOG_ERROR);
    test_bad_config();
    dfc_log_set_level(DFC_LOG_WARN);
    dfc_log_set_stream(fopen("/dev/null", "w"));
    test_allowed();
    test_denied_then_allowed();
    test_dealer_refused();
    test_revoked();
    test_wrong_server_key();
    test_dftail();
    return df_check_report("consumer_curve");
}
