/*  consumer_delivery: the delivery guarantees of libdfconsumer against an
    in-process fake bridge (fakebridge.h: XPUB + replay ROUTER): gap fill in
    order with live messages held, "gone", loss of the last message seen by
    the heartbeat, staleness reconnect, dedupe across two bridges, STREAM
    ordering, a consumer group of 3 with a restart, a stalled subscriber, and
    (in a child process) resume from a checkpoint after SIGKILL. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakebridge.h"

#include <jansson.h>

#include "dfc_internal.h"

#define WAIT_MS 20000

/* ----------------------------------------------------------- recorder */

typedef struct {
    int who;
    uint64_t gseq;
    char stream[16], lst;
    int worker;
} hrec_t;

typedef struct {
    int who;
    char lst;
} who_t;

static pthread_mutex_t hmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hcond = PTHREAD_COND_INITIALIZER;
static hrec_t *hrecs;
static size_t nh, caph;
/* optional per-test hook, called before the record is made */
static void (*hook)(const who_t *w, uint64_t gseq, const char *stream);

static void
h_reset(void)
{
    pthread_mutex_lock(&hmu);
    nh = 0;
    hook = NULL;
    pthread_mutex_unlock(&hmu);
}

static void
on_msg(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *init, const dfc_message_sent_t *p)
{
    (void)init;
    const who_t *w = ctx;
    uint64_t g = dfc_event_gseq(ev);
    const char *s = p->message.stream.stream_id ? p->message.stream.stream_id : "";
    if (hook)
        hook(w, g, s);
    int worker = 0;
    sscanf(dfc_listener_context(), "worker-%d/", &worker);
    pthread_mutex_lock(&hmu);
    if (nh == caph) {
        caph = caph ? caph * 2 : 1024;
        hrecs = realloc(hrecs, caph * sizeof *hrecs);
    }
    hrec_t *r = &hrecs[nh++];
    r->who = w->who;
    r->gseq = g;
    snprintf(r->stream, sizeof r->stream, "%s", s);
    r->lst = w->lst;
    r->worker = worker;
    pthread_cond_broadcast(&hcond);
    pthread_mutex_unlock(&hmu);
}

/*  Waits until at least n records exist. */
static bool
h_wait(size_t n)
{
    struct timespec ts = tu_deadline(WAIT_MS);
    pthread_mutex_lock(&hmu);
    while (nh < n)
        if (pthread_cond_timedwait(&hcond, &hmu, &ts) != 0)
            break;
    bool ok = nh >= n;
    pthread_mutex_unlock(&hmu);
    if (!ok)
        fprintf(stderr, "  waited for %zu records, have %zu\n", n, nh);
    return ok;
}

static size_t
h_count(void)
{
    pthread_mutex_lock(&hmu);
    size_t n = nh;
    pthread_mutex_unlock(&hmu);
    return n;
}

/*  The records of consumer `who` must be exactly gseqs first..last in order. */
static void
check_sequence(int who, uint64_t first, uint64_t last, const char *what)
{
    uint64_t want = first;
    bool ok = true;
    pthread_mutex_lock(&hmu);
    for (size_t i = 0; i < nh; i++) {
        if (hrecs[i].who != who)
            continue;
        if (hrecs[i].gseq != want) {
            if (ok)
                fprintf(stderr, "  %s: record %zu is gseq %llu, want %llu\n", what, i,
                        (unsigned long long)hrecs[i].gseq, (unsigned long long)want);
            ok = false;
        }
        want++;
    }
    pthread_mutex_unlock(&hmu);
    if (want != last + 1) {
        fprintf(stderr, "  %s: %llu records, want %llu\n", what, (unsigned long long)(want - first),
                (unsigned long long)(last - first + 1));
        ok = false;
    }
    CHECK(ok);
}

/* ----------------------------------------------------------- consumer */

typedef struct {
    dfc_loop_t *loop;
    pthread_t th;
    int rc;
    who_t w, w2;
    dfc_listener_t l, l2;
} cons_t;

static void *
cons_thread(void *arg)
{
    cons_t *c = arg;
    c->rc = dfc_loop_start(c->loop);
    return NULL;
}

/*  Starts a consumer of fb (replay given when with_replay, else learnt from
    the heartbeat) and waits for its subscription. Tests that check the
    handling order use one worker: the loop hands events out in gseq order,
    several workers would then run them concurrently. */
static void
cons_start(cons_t *c, int who, dfc_config_t cfg, fb_t *fb, bool with_replay)
{
    memset(c, 0, sizeof *c);
    cfg.zmq_ctx = fb->zctx;
    c->loop = dfc_loop_new(&cfg);
    CHECK(c->loop != NULL);
    c->w = (who_t){who, 'A'};
    c->l = (dfc_listener_t){.name = "A", .ctx = &c->w, .on_message_sent = on_msg};
    dfc_loop_subscribe(c->loop, &c->l);
    CHECK_EQ(dfc_loop_connect_replay(c->loop, fb->pub_ep, with_replay ? fb->rep_ep : NULL), DFC_OK);
    pthread_create(&c->th, NULL, cons_thread, c);
    CHECK(tu_wait_subscription(fb->xpub, WAIT_MS) == 0);
}

static void
cons_stop(cons_t *c, dfc_stats_t *st)
{
    dfc_loop_stop(c->loop);
    pthread_join(c->th, NULL);
    CHECK_EQ(c->rc, DFC_OK);
    dfc_loop_stats(c->loop, st);
    dfc_loop_destroy(&c->loop);
}

static bool
wait_stat(dfc_loop_t *loop, size_t off, uint64_t want)
{
    int64_t end = tu_now_ms() + WAIT_MS;
    dfc_stats_t st;
    uint64_t v = 0;
    while (tu_now_ms() < end) {
        dfc_loop_stats(loop, &st);
        memcpy(&v, (char *)&st + off, sizeof v);
        if (v >= want)
            return true;
        usleep(2000); /* polling a counter: the counter is the signal */
    }
    fprintf(stderr, "  counter at offset %zu is %llu, want %llu\n", off, (unsigned long long)v,
            (unsigned long long)want);
    return false;
}
#define WAIT_STAT(loop, field, n) wait_stat(loop, offsetof(dfc_stats_t, field), n)

/* ------------------------------------------------------------ gap fill */

static void
test_gap_fill(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://gf-pub", "inproc://gf-rep", "ep-gf", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1}, &fb, true);
    for (int i = 0; i < 3; i++)
        fb_message(&fb, "s1", NULL, true);
    CHECK(h_wait(3));
    /* 4..6 journaled but lost by PUB; hold the replay answer while 7..9 arrive live */
    fb_lock(&fb);
    fb.gate_closed = true;
    fb_unlock(&fb);
    for (int i = 0; i < 3; i++)
        fb_message(&fb, "s1", NULL, false);
    for (int i = 0; i < 3; i++)
        fb_message(&fb, "s1", NULL, true);
    CHECK(WAIT_STAT(c.loop, received, 6));
    CHECK(WAIT_STAT(c.loop, replay_requests, 1));
    CHECK_EQ(h_count(), 3); /* 7..9 are held, not handled before 4..6 */
    fb_lock(&fb);
    fb.gate_closed = false;
    fb_unlock(&fb);
    CHECK(h_wait(9));
    fb_message(&fb, "s1", NULL, true);
    CHECK(h_wait(10));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_sequence(1, 1, 10, "gap fill");
    CHECK_EQ(st.received, 7);
    CHECK_EQ(st.gaps, 3);
    CHECK_EQ(st.gaps_filled, 3);
    CHECK_EQ(st.replayed, 6); /* 4..9: the answer runs to the head; live 7..9 dropped */
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(st.duplicates, 0);
    CHECK_EQ(st.replay_requests, 1);
    CHECK_EQ(st.completed, 10);
    fb_fini(&fb);
}

/* ------------------------- numbers that cannot be right (issue 7, A2) */

/*  n real messages of stream s1, published live. */
static void
publish_live(fb_t *fb, int n)
{
    for (int i = 0; i < n; i++)
        fb_message(fb, "s1", NULL, true);
}

/*  Live path: gseq 2^64-1 (above DFC_SEQ_MAX), then, after a heartbeat,
    a gseq DFC_GSEQ_AHEAD + 1 above its head, and a seq DFC_GSEQ_AHEAD + 1
    above the topic's. None moves the mark or counts a gap. */
static void
test_absurd_live(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://al-pub", "inproc://al-rep", "ep-al", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1}, &fb, true);
    publish_live(&fb, 5);
    CHECK(h_wait(5));
    fb_send_raw(&fb, 6, UINT64_MAX);
    fb_heartbeat(&fb); /* gseq 5 */
    CHECK(WAIT_STAT(c.loop, heartbeats, 1));
    fb_send_raw(&fb, 6, 5 + DFC_GSEQ_AHEAD + 1);
    fb_send_raw(&fb, 5 + DFC_GSEQ_AHEAD + 1, 6); /* the right gseq, a seq far ahead */
    publish_live(&fb, 100);
    CHECK(h_wait(105));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_sequence(1, 1, 105, "absurd live");
    CHECK_EQ(st.completed, 105);
    CHECK_EQ(st.bad_envelope, 3);
    CHECK_EQ(st.dropped_malformed, 3);
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(st.gaps, 0);
    CHECK_EQ(st.replay_requests, 0);
    fb_fini(&fb);
}

/*  Heartbeat path: a heartbeat claiming gseq 2^64-1 is refused outright;
    one claiming 10^12 starts a fill that replay answers with head 5: the
    claim is not confirmed, nothing is lost. */
static void
test_absurd_heartbeat(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://ah-pub", "inproc://ah-rep", "ep-ah", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1}, &fb, true);
    publish_live(&fb, 5);
    CHECK(h_wait(5));
    fb_heartbeat_at(&fb, true, UINT64_MAX);
    CHECK(WAIT_STAT(c.loop, bad_envelope, 1));
    fb_heartbeat_at(&fb, true, 1000000000000ull);
    CHECK(WAIT_STAT(c.loop, bad_envelope, 2)); /* after replay's answer */
    publish_live(&fb, 100);
    CHECK(h_wait(105));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_sequence(1, 1, 105, "absurd heartbeat");
    CHECK_EQ(st.completed, 105);
    CHECK_EQ(st.bad_envelope, 2);
    CHECK_EQ(st.heartbeats, 1); /* the first was refused before being counted */
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(st.replay_requests, 1);
    CHECK_EQ(st.replayed, 0);
    fb_fini(&fb);
}

/*  End marker path: an answer whose end marker says last_gseq 2^64-1, and
    later one that says 10^12 with head_gseq at the real head. Both are
    ignored (the deadline asks again); the events they came with count. */
static void
test_absurd_end(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://ae-pub", "inproc://ae-rep", "ep-ae", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1, .replay_timeout_ms = 200}, &fb, true);
    publish_live(&fb, 5);
    CHECK(h_wait(5));
    uint64_t claims[2] = {UINT64_MAX, 1000000000000ull};
    for (int k = 0; k < 2; k++) {
        fb_lock(&fb);
        fb.end_fault = FB_END_LAST;
        fb.end_fault_n = 1;
        fb.end_last = claims[k];
        fb_unlock(&fb);
        fb_message(&fb, "s1", NULL, false); /* lost by PUB: 6, then 8 */
        fb_message(&fb, "s1", NULL, true);  /* held: 7, then 9 */
        CHECK(h_wait(7 + 2 * (size_t)k));
        CHECK(WAIT_STAT(c.loop, bad_envelope, (uint64_t)k + 1));
    }
    publish_live(&fb, 96);
    CHECK(h_wait(105));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_sequence(1, 1, 105, "absurd end marker");
    CHECK_EQ(st.completed, 105);
    CHECK_EQ(st.bad_envelope, 2);
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(st.received, 103); /* 1..5, 7, 9, 10..105 */
    /* 6, 7, 8, 9 came from replay; some of 10..105 may too, when they were
       held while the retry after the ignored marker was in flight */
    CHECK(st.replayed >= 4);
    fb_fini(&fb);
}

/* ----------------------- replay answers that make no progress (A3) */

/*  The scenario of the fill tests below: a fake bridge named name, one
    consumer with one worker, gseq 1..3 published live and handled. */
static void
gap_start(fb_t *fb, cons_t *c, void *zctx, const char *name)
{
    char pub[64], rep[64];
    snprintf(pub, sizeof pub, "inproc://%s-pub", name);
    snprintf(rep, sizeof rep, "inproc://%s-rep", name);
    fb_init(fb, zctx, pub, rep, name, 0);
    h_reset();
    cons_start(c, 1, (dfc_config_t){.workers = 1}, fb, true);
    publish_live(fb, 3);
    CHECK(h_wait(3));
}

/*  The handled gseqs are exactly want[0..n), in this order. */
static void
check_gseqs(const uint64_t *want, size_t n)
{
    CHECK_EQ(nh, n);
    for (size_t i = 0; i < n && i < nh; i++)
        CHECK_EQ(hrecs[i].gseq, want[i]);
}

/*  1..3 live, 4 lost by PUB, 5..7 live and held; every answer asks for
    more without sending anything. The fill gives up after 3 requests. */
static void
test_stall(void *zctx, int fault, const char *name)
{
    fb_t fb;
    cons_t c;
    gap_start(&fb, &c, zctx, name);
    fb_lock(&fb);
    fb.end_fault = fault;
    fb_unlock(&fb);
    fb_message(&fb, "s1", NULL, false);
    publish_live(&fb, 3);
    CHECK(h_wait(6));
    CHECK(WAIT_STAT(c.loop, replay_stalls, 1));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_gseqs((uint64_t[]){1, 2, 3, 5, 6, 7}, 6);
    CHECK_EQ(st.replay_stalls, 1);
    CHECK_EQ(st.replay_requests, 3);
    CHECK_EQ(st.lost, 1);
    CHECK_EQ(st.replay_errors, fault == FB_END_WALK_GONE ? 3 : 0);
    CHECK_EQ(st.completed, 6);
    fb_lock(&fb);
    CHECK_EQ(fb.requests, 3);
    fb_unlock(&fb);
    fb_fini(&fb);
}

/* ------------------------------ a damaged range in the journal (issue 7) */

/*  1..3 live, 4..6 lost by PUB, 7..9 live and held; the journal cannot read
    4..5 (code damaged, lost_from 4, lost_to 5). The fill counts exactly 4..5
    lost and asks again from 6: 6 comes from replay, nothing else is lost. */
static void
test_damaged(void *zctx)
{
    fb_t fb;
    cons_t c;
    gap_start(&fb, &c, zctx, "damaged");
    fb_lock(&fb);
    fb.damaged_from = 4;
    fb.damaged_to = 5;
    fb_unlock(&fb);
    for (int i = 0; i < 3; i++)
        fb_message(&fb, "s1", NULL, false); /* 4, 5, 6: lost by PUB */
    publish_live(&fb, 3);                   /* 7..9 */
    CHECK(h_wait(7));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_gseqs((uint64_t[]){1, 2, 3, 6, 7, 8, 9}, 7);
    CHECK_EQ(st.lost, 2);
    CHECK_EQ(st.replay_errors, 1);
    CHECK_EQ(st.replay_requests, 2);
    CHECK_EQ(st.completed, 7);
    fb_fini(&fb);
}

/*  1..3 live, 4 lost by PUB, 5..7 live and held; the replay endpoint
    answers `code` (busy, io_error, internal: "ask again later") n times.
    Twice: the third request gets 4, nothing lost. Three times: the fill
    gives up after 3 requests, 4 lost, 5..7 released. */
static void
test_transient(void *zctx, const char *code, int n, const char *name)
{
    fb_t fb;
    cons_t c;
    gap_start(&fb, &c, zctx, name);
    fb_lock(&fb);
    fb.transient = code;
    fb.transient_n = n;
    fb_unlock(&fb);
    fb_message(&fb, "s1", NULL, false); /* 4 */
    publish_live(&fb, 3);               /* 5..7 */
    CHECK(h_wait(n < 3 ? 7 : 6));
    dfc_stats_t st;
    cons_stop(&c, &st);
    if (n < 3)
        check_gseqs((uint64_t[]){1, 2, 3, 4, 5, 6, 7}, 7);
    else
        check_gseqs((uint64_t[]){1, 2, 3, 5, 6, 7}, 6);
    CHECK_EQ(st.lost, n < 3 ? 0 : 1);
    CHECK_EQ(st.replay_errors, n < 3 ? n : 3);
    CHECK_EQ(st.replay_requests, 3);
    fb_lock(&fb);
    CHECK_EQ(fb.requests, 3);
    fb_unlock(&fb);
    fb_fini(&fb);
}

/* ------------------------------------------- beyond max_held (A6) */

/*  max_held 2: of the 5 live messages that arrive during a fill, 3 are not
    held (counted) and come from replay instead. */
static void
test_max_held(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://mh-pub", "inproc://mh-rep", "ep-mh", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1, .max_held = 2}, &fb, true);
    publish_live(&fb, 3);
    CHECK(h_wait(3));
    fb_lock(&fb);
    fb.gate_closed = true;
    fb_unlock(&fb);
    fb_message(&fb, "s1", NULL, false); /* 4 */
    publish_live(&fb, 5);               /* 5..9: 5 held (the fill starts), 6 held, 7..9 not */
    CHECK(WAIT_STAT(c.loop, received, 8));
    CHECK(WAIT_STAT(c.loop, held_dropped, 3));
    fb_lock(&fb);
    fb.gate_closed = false;
    fb_unlock(&fb);
    CHECK(h_wait(9));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_sequence(1, 1, 9, "max_held");
    CHECK_EQ(st.held_dropped, 3);
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(st.replayed, 6);
    CHECK_EQ(st.replay_requests, 1);
    fb_fini(&fb);
}

/* ------------------------------------------- a flooding replay endpoint */

/*  The hostile replay endpoint: replay_flooder.py (shared with the Python and
    Node tests), FLOOD_N messages of 1 MiB. */
#define FLOOD_N 200

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_shut;

static void
gate_hook(const who_t *w, uint64_t gseq, const char *stream)
{
    (void)w;
    (void)stream;
    pthread_mutex_lock(&gate_mu);
    while (gseq == 1 && gate_shut)
        pthread_cond_wait(&gate_cond, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static long
rss_kb(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &res) != 2)
        res = 0;
    if (f)
        fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/*  The last count the flood script printed, waiting at most ms for a new
    line; -1 on EOF. */
static long
flood_progress(FILE *out, long last, int ms)
{
    int fd = fileno(out);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    fd_set rf;
    FD_ZERO(&rf);
    FD_SET(fd, &rf);
    if (select(fd + 1, &rf, NULL, NULL, &tv) <= 0)
        return last;
    char line[64];
    if (!fgets(line, sizeof line, out))
        return -1;
    return atol(line);
}

/*  A replay endpoint that floods while the loop cannot read (issue 9): the
    one worker is held in the callback of gseq 1, the job queue (1) holds 2,
    3 is lost by PUB and asked from the flooding endpoint, whose answer (3,
    its end marker, then FLOOD_N x 1 MiB unsolicited) finds the receiver
    waiting for room. The replay DEALER's RCVHWM is small and a DEALER does
    not drop: libzmq stops reading the connection, the flooder cannot send
    them all (TCP holds it back) and this process grows by far less than
    FLOOD_N MiB (before issue 9: no HWM, all of it queued here). Then the
    worker goes on: 1..4 handled once each, in order, nothing lost, the
    FLOOD_N counted in replay_unexpected. */
static void
test_replay_flood(void *zctx)
{
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0);
    char n_arg[16];
    snprintf(n_arg, sizeof n_arg, "%d", FLOOD_N);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl("/usr/bin/python3", "python3", DFC_TESTS_DIR "/replay_flooder.py", n_arg,
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    FILE *to = fdopen(in[1], "w"), *from = fdopen(out[0], "r");
    long port = flood_progress(from, 0, WAIT_MS);
    CHECK(port > 0);
    char rep[64];
    snprintf(rep, sizeof rep, "tcp://127.0.0.1:%ld", port);

    fb_t fb;
    fb_init(&fb, zctx, "inproc://fl-pub", "inproc://fl-rep", "ep-fl", 0);
    h_reset();
    gate_shut = true;
    hook = gate_hook;
    cons_t c;
    memset(&c, 0, sizeof c);
    c.loop = dfc_loop_new(&(dfc_config_t){.workers = 1, .queue_size = 1, .zmq_ctx = zctx});
    CHECK(c.loop != NULL);
    c.w = (who_t){1, 'A'};
    c.l = (dfc_listener_t){.name = "A", .ctx = &c.w, .on_message_sent = on_msg};
    dfc_loop_subscribe(c.loop, &c.l);
    CHECK_EQ(dfc_loop_connect_replay(c.loop, fb.pub_ep, rep), DFC_OK);
    pthread_create(&c.th, NULL, cons_thread, &c);
    CHECK(tu_wait_subscription(fb.xpub, WAIT_MS) == 0);

    publish_live(&fb, 2); /* 1 held in its callback, 2 queued */
    CHECK(WAIT_STAT(c.loop, received, 2));
    uint64_t g3 = fb_message(&fb, "s1", NULL, false); /* lost by PUB */
    fb_lock(&fb);
    for (size_t i = 0; i < fb.j[g3 - 1].len; i++)
        fprintf(to, "%02x", (unsigned char)fb.j[g3 - 1].body[i]);
    fb_unlock(&fb);
    fputc('\n', to);
    fflush(to);
    long before = rss_kb();
    publish_live(&fb, 1); /* 4: the gap, a request to the flooder */
    CHECK(WAIT_STAT(c.loop, replay_requests, 1));
    int64_t end = tu_now_ms() + WAIT_MS;
    while (!dfc_loop_receiver_waits(c.loop) && tu_now_ms() < end)
        usleep(2000); /* the receiver's state is the signal */
    CHECK(dfc_loop_receiver_waits(c.loop));
    /* how far the flooder gets: no new line for 1 s = held back (bounded by
       WAIT_MS in all) */
    long sent = 0, next;
    while (sent < FLOOD_N && tu_now_ms() < end && (next = flood_progress(from, sent, 1000)) > sent)
        sent = next;
    long grown = rss_kb() - before;
    fprintf(stderr, "  replay_flood: the flooder sent %ld of %d, RSS grew %ld KiB\n", sent, FLOOD_N,
            grown);
    CHECK(sent < FLOOD_N / 2);
    CHECK(grown < 64 * 1024);

    pthread_mutex_lock(&gate_mu);
    gate_shut = false;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_mu);
    CHECK(h_wait(4));
    CHECK(WAIT_STAT(c.loop, replay_unexpected, FLOOD_N));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_sequence(1, 1, 4, "replay_flood");
    CHECK_EQ(st.replay_unexpected, FLOOD_N);
    CHECK_EQ(st.replayed, 1);
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(st.bad_msgpack, 0);
    fclose(to); /* the flooder exits */
    fclose(from);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fb_fini(&fb);
    hook = NULL;
}

/* ---------------------------------------------------------------- gone */

static void
test_gone(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://gone-pub", "inproc://gone-rep", "ep-gone", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1}, &fb, true);
    for (int i = 0; i < 3; i++)
        fb_message(&fb, "s1", NULL, true);
    CHECK(h_wait(3));
    for (int i = 0; i < 5; i++) /* 4..8 lost by PUB; 4 and 5 are also past retention */
        fb_message(&fb, "s1", NULL, false);
    fb_lock(&fb);
    fb.oldest = 6;
    fb_unlock(&fb);
    fb_message(&fb, "s1", NULL, true); /* 9 */
    CHECK(h_wait(7));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_gseqs((uint64_t[]){1, 2, 3, 6, 7, 8, 9}, 7);
    CHECK_EQ(st.gaps, 5);
    CHECK_EQ(st.lost, 2);
    CHECK_EQ(st.gaps_filled, 3);
    CHECK_EQ(st.replay_errors, 1);
    CHECK_EQ(st.replay_requests, 2);
    fb_fini(&fb);
}

/* ----------------- lost ranges and the gseqs a checkpoint recorded */

enum { CL_GONE, CL_DAMAGED, CL_HOLE, CL_END_LAST };

/*  A restart from a checkpoint (watermark 20, done 23, 25 and 32) with
    1..35 journaled: every range counted lost in bulk leaves out the gseqs
    the checkpoint recorded as handled (they were handled before the
    restart). gone below 30: 21..29 is 7 lost, not 9. damaged 21..27: 5, not
    7. 21..29 not in the journal: a hole before 30, 7. Only 1..20 in the
    journal, the first end marker says last_gseq 29: 7 by the ok answer,
    then 3 answers without progress, the fill gives up: 30..35 is 5 lost,
    not 6. 32 is skipped when replayed (duplicates). */
static void
test_ckpt_lost(void *zctx, const char *dir, int fault, const char *name)
{
    static const uint64_t gone[] = {30, 31, 33, 34, 35}, damaged[] = {28, 29, 30, 31, 33, 34, 35};
    char pub[64], rep[64], path[512];
    snprintf(pub, sizeof pub, "inproc://%s-pub", name);
    snprintf(rep, sizeof rep, "inproc://%s-rep", name);
    fb_t fb;
    fb_init(&fb, zctx, pub, rep, name, 0);
    for (int i = 0; i < 35; i++)
        fb_message(&fb, "s1", NULL, false); /* journaled before the consumer exists */
    fb_lock(&fb);
    if (fault == CL_GONE) {
        fb.oldest = 30;
    } else if (fault == CL_DAMAGED) {
        fb.damaged_from = 21;
        fb.damaged_to = 27;
    } else { /* the journal loses 21..29 (CL_HOLE) or everything above 20 */
        size_t keep = fault == CL_HOLE ? 29 : 35;
        for (size_t i = 20; i < keep; i++)
            free(fb.j[i].body);
        memmove(&fb.j[20], &fb.j[keep], (fb.nj - keep) * sizeof *fb.j);
        fb.nj -= keep - 20;
        fb.end_fault = fault == CL_END_LAST ? FB_END_LAST : FB_END_NORMAL;
        fb.end_fault_n = 1;
        fb.end_last = 29;
    }
    fb_unlock(&fb);
    snprintf(path, sizeof path, "%s/%s.ckpt", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f, "dfc-checkpoint 1\ne %s 20\nd 23\nd 25\nd 32\n", name);
    fclose(f);
    h_reset();
    cons_t c;
    cons_start(
        &c, 1,
        (dfc_config_t){.workers = 1, .checkpoint_dir = dir, .name = name, .checkpoint_ms = 20}, &fb,
        true);
    fb_heartbeat(&fb); /* 35 is the head: the catch-up from 21 */
    size_t want = fault == CL_DAMAGED ? 7 : fault == CL_END_LAST ? 0 : 5;
    CHECK(h_wait(want));
    if (fault == CL_END_LAST)
        CHECK(WAIT_STAT(c.loop, replay_stalls, 1));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_gseqs(fault == CL_DAMAGED ? damaged : gone, want);
    CHECK_EQ(st.lost, fault == CL_DAMAGED ? 5 : fault == CL_END_LAST ? 12 : 7);
    CHECK_EQ(st.duplicates, fault == CL_END_LAST ? 0 : 1);
    CHECK_EQ(st.replay_errors, fault == CL_GONE || fault == CL_DAMAGED ? 1 : 0);
    fb_fini(&fb);
}

/* ------------------------------------- a replay endpoint that is mute */

static void
test_mute(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://mu-pub", "inproc://mu-rep", "ep-mu", 0);
    fb.mute = true;
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1, .replay_timeout_ms = 150}, &fb, true);
    fb_message(&fb, "s1", NULL, true);
    fb_message(&fb, "s1", NULL, false); /* 2: lost, and replay never answers */
    fb_message(&fb, "s1", NULL, true);
    CHECK(h_wait(2)); /* 3 is held, then released after three timeouts */
    dfc_stats_t st;
    cons_stop(&c, &st);
    CHECK_EQ(nh, 2);
    CHECK(nh == 2 && hrecs[0].gseq == 1 && hrecs[1].gseq == 3);
    CHECK_EQ(st.lost, 1);
    CHECK_EQ(st.gaps, 1);
    CHECK_EQ(st.gaps_filled, 0);
    CHECK_EQ(st.replay_requests, 3);
    CHECK_EQ(st.replay_errors, 3);
    fb_lock(&fb);
    CHECK_EQ(fb.requests, 3);
    fb_unlock(&fb);
    fb_fini(&fb);
}

/* ---------------------------- the LAST message, seen by the heartbeat */

static void
test_heartbeat_last(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://hb-pub", "inproc://hb-rep", "ep-hb", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1}, &fb, false); /* endpoint from the heartbeat */
    fb_heartbeat(&fb); /* gseq 0: baseline, names the replay endpoint */
    CHECK(WAIT_STAT(c.loop, heartbeats, 1));
    for (int i = 0; i < 4; i++)
        fb_message(&fb, "s1", NULL, true);
    fb_message(&fb, "s1", NULL, false); /* 5: the last one, lost */
    CHECK(h_wait(4));
    fb_heartbeat(&fb); /* gseq 5 > 4 */
    CHECK(h_wait(5));
    fb_heartbeat(&fb); /* nothing new: no request */
    CHECK(WAIT_STAT(c.loop, heartbeats, 3));
    dfc_stats_t st;
    cons_stop(&c, &st);
    check_sequence(1, 1, 5, "heartbeat");
    CHECK_EQ(st.gaps, 1); /* from the heartbeat's seqs */
    CHECK_EQ(st.gaps_filled, 1);
    CHECK_EQ(st.replayed, 1);
    CHECK_EQ(st.replay_requests, 1);
    CHECK_EQ(st.reserved, 3);
    CHECK_EQ(st.lost, 0);
    fb_fini(&fb);
}

/* ----------------------------------------------------------- staleness */

static void
test_stale(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://st-pub", "inproc://st-rep", "ep-st", 0);
    /* stale after 1.2 s of silence: 24 heartbeat periods of margin, so a
       test thread slowed down by a sanitizer does not look silent */
    fb.interval = 400;
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1}, &fb, true);
    /* heartbeats every 50 ms for 1.2 s keep the link fresh */
    for (int i = 0; i < 24; i++) {
        fb_heartbeat(&fb);
        usleep(50000); /* the bridge's heartbeat period, not a synchronisation */
    }
    dfc_stats_t st;
    dfc_loop_stats(c.loop, &st);
    CHECK_EQ(st.reconnects, 0);
    /* silence: the loop replaces its SUB, which subscribes again */
    CHECK(WAIT_STAT(c.loop, reconnects, 1));
    CHECK(tu_wait_subscription(fb.xpub, WAIT_MS) == 0);
    fb_message(&fb, "s1", NULL, true);
    CHECK(h_wait(1));
    cons_stop(&c, &st);
    CHECK(st.reconnects >= 1);
    CHECK_EQ(st.lost, 0);
    check_sequence(1, 1, 1, "stale");
    fb_fini(&fb);
}

/* ------------------------------------------------ dedupe, two bridges */

static void
test_dedupe(void *zctx)
{
    fb_t a, b;
    fb_init(&a, zctx, "inproc://dd-a", "inproc://dd-ar", "ep-a", 0);
    fb_init(&b, zctx, "inproc://dd-b", "inproc://dd-br", "ep-b", 0);
    h_reset();
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 1}, &a, true);
    CHECK_EQ(dfc_loop_connect_replay(c.loop, b.pub_ep, b.rep_ep), DFC_OK);
    CHECK(tu_wait_subscription(b.xpub, WAIT_MS) == 0);
    char id[32];
    /* both bridges publish the same 20 events (an HA pair after a failover,
       or a redelivery), interleaved */
    for (int i = 1; i <= 20; i++) {
        snprintf(id, sizeof id, "same-%d", i);
        fb_message(&a, "s1", id, true);
        fb_message(&b, "s1", id, true);
    }
    /* and bridge a publishes event 5 again (Symphony redelivery) */
    fb_message(&a, "s1", "same-5", true);
    fb_message(&a, "s1", "last", true);
    CHECK(h_wait(21));
    CHECK(WAIT_STAT(c.loop, received, 42));
    dfc_stats_t st;
    cons_stop(&c, &st);
    CHECK_EQ(nh, 21);
    CHECK_EQ(st.duplicates, 21);
    CHECK_EQ(st.gaps, 0);
    CHECK_EQ(st.completed, 21);
    /* the same id with another type is another event */
    CHECK(!dfc_dedupe_seen(NULL, "x", 1, "A", 1));
    dfc_dedupe_t *d = dfc_dedupe_new(3);
    CHECK(!dfc_dedupe_seen(d, "x", 1, "ROOMCREATED", 11));
    CHECK(!dfc_dedupe_seen(d, "x", 1, "USERJOINEDROOM", 14));
    CHECK(dfc_dedupe_seen(d, "x", 1, "ROOMCREATED", 11));
    CHECK(!dfc_dedupe_seen(d, "y", 1, "A", 1));
    CHECK(!dfc_dedupe_seen(d, "z", 1, "A", 1)); /* window 3: x/ROOMCREATED forgotten */
    CHECK(!dfc_dedupe_seen(d, "x", 1, "ROOMCREATED", 11));
    CHECK(dfc_dedupe_seen(d, "z", 1, "A", 1));
    dfc_dedupe_destroy(&d);
    fb_fini(&a);
    fb_fini(&b);
}

/* ------------------------------------------------------------ ordering */

static atomic_int in_s0, in_other, overlap_seen;

/*  Stream s0's first event waits (bounded) until another stream's handler
    runs at the same time: proof that streams run concurrently. */
static void
order_hook(const who_t *w, uint64_t g, const char *stream)
{
    (void)g;
    if (w->lst != 'A')
        return;
    bool s0 = strcmp(stream, "s0") == 0;
    atomic_fetch_add(s0 ? &in_s0 : &in_other, 1);
    int64_t end = tu_now_ms() + 5000;
    while (!atomic_load(&overlap_seen) && tu_now_ms() < end) {
        if (atomic_load(&in_s0) > 0 && atomic_load(&in_other) > 0)
            atomic_store(&overlap_seen, 1);
        else
            usleep(200);
    }
    atomic_fetch_sub(s0 ? &in_s0 : &in_other, 1);
}

static void
test_ordering(void *zctx)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://or-pub", "inproc://or-rep", "ep-or", 0);
    h_reset();
    hook = order_hook;
    cons_t c;
    cons_start(&c, 1, (dfc_config_t){.workers = 4, .ordering = DFC_ORDER_STREAM}, &fb, true);
    c.w2 = (who_t){1, 'B'};
    c.l2 = (dfc_listener_t){.name = "B", .ctx = &c.w2, .on_message_sent = on_msg};
    dfc_loop_subscribe(c.loop, &c.l2);
    char s[8];
    for (int i = 0; i < 400; i++) {
        snprintf(s, sizeof s, "s%d", i % 8);
        fb_message(&fb, s, NULL, true);
    }
    CHECK(h_wait(800));
    dfc_stats_t st;
    cons_stop(&c, &st);
    CHECK(atomic_load(&overlap_seen));
    /* per stream: A then B for each event, gseq increasing, one worker */
    for (int k = 0; k < 8; k++) {
        snprintf(s, sizeof s, "s%d", k);
        uint64_t prev = 0;
        int worker = -1, n = 0;
        char expect = 'A';
        bool ok = true;
        for (size_t i = 0; i < nh; i++) {
            if (strcmp(hrecs[i].stream, s) != 0)
                continue;
            n++;
            if (worker < 0)
                worker = hrecs[i].worker;
            ok &= hrecs[i].worker == worker && hrecs[i].lst == expect;
            if (expect == 'A') {
                ok &= hrecs[i].gseq > prev;
                prev = hrecs[i].gseq;
            } else {
                ok &= hrecs[i].gseq == prev;
            }
            expect = expect == 'A' ? 'B' : 'A';
        }
        CHECK(ok);
        CHECK_EQ(n, 100);
    }
    CHECK_EQ(st.completed, 800);
    fb_fini(&fb);
}

/* ------------------------------------- consumer group of 3, one restarted */

static void
test_group(void *zctx, const char *dir)
{
    fb_t fb;
    fb_init(&fb, zctx, "inproc://gr-pub", "inproc://gr-rep", "ep-gr", 0);
    h_reset();
    cons_t m[3];
    dfc_config_t cfg = {.workers = 3,
                        .ordering = DFC_ORDER_STREAM,
                        .checkpoint_dir = dir,
                        .checkpoint_ms = 20,
                        .group = "g",
                        .members = 3};
    for (int k = 0; k < 3; k++) {
        cfg.member = k;
        cons_start(&m[k], k, cfg, &fb, true);
    }
    char s[8];
    for (int i = 0; i < 150; i++) {
        snprintf(s, sizeof s, "s%d", i % 12);
        fb_message(&fb, s, NULL, true);
    }
    CHECK(h_wait(150));
    dfc_stats_t st;
    cons_stop(&m[1], &st); /* member 1 stops; its checkpoint is written at stop */
    CHECK(st.checkpoints >= 1);
    char path[512];
    snprintf(path, sizeof path, "%s/g-1-of-3.ckpt", dir);
    CHECK(access(path, R_OK) == 0);
    for (int i = 150; i < 300; i++) {
        snprintf(s, sizeof s, "s%d", i % 12);
        fb_message(&fb, s, NULL, true);
    }
    cfg.member = 1;
    cons_start(&m[1], 1, cfg, &fb, true); /* resumes from its checkpoint by replay */
    for (int i = 300; i < 360; i++) {
        snprintf(s, sizeof s, "s%d", i % 12);
        fb_message(&fb, s, NULL, true);
    }
    CHECK(h_wait(360));
    for (int k = 0; k < 3; k++) {
        cons_stop(&m[k], &st);
        if (k == 1) /* what it missed while down came by replay */
            CHECK(st.replayed > 0 && st.replay_requests >= 1);
    }
    CHECK_EQ(nh, 360);
    int *by = calloc(361, sizeof *by);
    uint64_t last[12][3] = {{0}};
    bool order_ok = true, owner_ok = true;
    for (size_t i = 0; i < nh; i++) {
        uint64_t g = hrecs[i].gseq;
        if (g >= 1 && g <= 360)
            by[g]++;
        int sk = atoi(hrecs[i].stream + 1);
        owner_ok &=
            dfc_partition(hrecs[i].stream, strlen(hrecs[i].stream), 3) == (uint32_t)hrecs[i].who;
        order_ok &= g > last[sk][hrecs[i].who];
        last[sk][hrecs[i].who] = g;
    }
    int once = 0;
    for (int g = 1; g <= 360; g++)
        once += by[g] == 1;
    CHECK_EQ(once, 360); /* union = all, intersection = none */
    CHECK(owner_ok);
    CHECK(order_ok);
    free(by);
    /* FNV-1a 64 reference values */
    CHECK(dfc_fnv1a64("", 0) == 14695981039346656037ull);
    CHECK(dfc_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(dfc_fnv1a64("foobar", 6) == 0x85944171f73967e8ull);
    fb_fini(&fb);
}

/* --------------------------------------------------- stalled subscriber */

static atomic_int slow_gate;

static void
slow_hook(const who_t *w, uint64_t g, const char *stream)
{
    (void)stream;
    if (w->who != 1 || g != 1)
        return;
    int64_t end = tu_now_ms() + WAIT_MS;
    while (!atomic_load(&slow_gate) && tu_now_ms() < end)
        usleep(1000);
}

static void
test_slow(void *zctx)
{
    /* 5000 in the suite; DFC_SLOW_N=50000 for the figure */
    const uint64_t N = getenv("DFC_SLOW_N") ? strtoull(getenv("DFC_SLOW_N"), NULL, 10) : 5000;
    fb_t fb;
    fb_init(&fb, zctx, "inproc://sl-pub", "inproc://sl-rep", "ep-sl", 20);
    h_reset();
    atomic_store(&slow_gate, 0);
    hook = slow_hook;
    cons_t slow, fast;
    cons_start(&slow, 1, (dfc_config_t){.workers = 1, .rcvhwm = 20, .queue_size = 8}, &fb, true);
    cons_start(&fast, 2, (dfc_config_t){.workers = 1}, &fb, true); /* 1: in order */
    for (uint64_t i = 0; i < N; i++) {
        fb_message(&fb, "s1", NULL, true);
        /* pace on the fast one so that only the stalled one overflows */
        if (i % 10 == 9)
            CHECK(WAIT_STAT(fast.loop, received, (uint64_t)i + 1));
    }
    dfc_stats_t st;
    dfc_loop_stats(slow.loop, &st);
    CHECK(st.received < N); /* it was stalled */
    atomic_store(&slow_gate, 1);
    /* heartbeats until the slow one caught up (its last messages were lost too) */
    int64_t end = tu_now_ms() + WAIT_MS;
    while (tu_now_ms() < end) {
        pthread_mutex_lock(&hmu);
        size_t n1 = 0;
        for (size_t i = 0; i < nh; i++)
            n1 += hrecs[i].who == 1;
        pthread_mutex_unlock(&hmu);
        if (n1 >= N)
            break;
        fb_heartbeat(&fb);
        usleep(20000); /* the heartbeat period */
    }
    CHECK(h_wait(2 * N));
    dfc_stats_t sf;
    cons_stop(&slow, &st);
    cons_stop(&fast, &sf);
    check_sequence(1, 1, N, "slow");
    check_sequence(2, 1, N, "fast");
    CHECK(st.gaps > 0);
    CHECK_EQ(st.gaps_filled, st.gaps);
    CHECK_EQ(st.lost, 0);
    CHECK_EQ(sf.gaps, 0);
    CHECK_EQ(sf.replay_requests, 0);
    printf("  slow subscriber: received %llu live, gaps %llu filled %llu, replayed %llu in %llu "
           "requests\n",
           (unsigned long long)st.received - st.heartbeats, (unsigned long long)st.gaps,
           (unsigned long long)st.gaps_filled, (unsigned long long)st.replayed,
           (unsigned long long)st.replay_requests);
    fb_fini(&fb);
}

/* ------------------------------------- checkpoint and SIGKILL (child) */

static int child_out = -1;
static uint64_t child_block = 0;

static void
child_msg(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *init,
          const dfc_message_sent_t *p)
{
    (void)ctx, (void)init, (void)p;
    uint64_t g = dfc_event_gseq(ev);
    if (g == child_block)
        for (;;)
            pause(); /* killed here, before any effect */
    char line[32];
    int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)g);
    if (write(child_out, line, (size_t)n) != n)
        _exit(3);
}

static dfc_loop_t *child_loop;
static void
child_term(int sig)
{
    (void)sig;
    dfc_loop_stop(child_loop);
}

/*  consumer_test_delivery --child PUB REPLAY DIR OUT BLOCK */
static int
child_main(char **argv)
{
    child_out = open(argv[5], O_WRONLY | O_APPEND | O_CREAT, 0644);
    child_block = strtoull(argv[6], NULL, 10);
    dfc_log_set_level(DFC_LOG_WARN);
    dfc_config_t cfg = {.workers = 2,
                        .checkpoint_dir = argv[4],
                        .name = "killme",
                        .checkpoint_ms = 20,
                        .from_gseq = 1};
    child_loop = dfc_loop_new(&cfg);
    dfc_listener_t l = {.name = "c", .on_message_sent = child_msg};
    dfc_loop_subscribe(child_loop, &l);
    dfc_loop_connect_replay(child_loop, argv[2], argv[3]);
    signal(SIGTERM, child_term);
    int rc = dfc_loop_start(child_loop);
    dfc_loop_destroy(&child_loop);
    return rc == DFC_OK ? 0 : 1;
}

static size_t
read_lines(const char *path, uint64_t *out, size_t max)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    unsigned long long v;
    while (f && n < max && fscanf(f, "%llu", &v) == 1)
        out[n++] = v;
    if (f)
        fclose(f);
    return n;
}

static bool
wait_file(const char *path, const char *needle)
{
    int64_t end = tu_now_ms() + WAIT_MS;
    while (tu_now_ms() < end) {
        char buf[4096] = "";
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = '\0';
            fclose(f);
            if (strstr(buf, needle))
                return true;
        }
        usleep(5000); /* the file's contents are the signal */
    }
    fprintf(stderr, "  %s never contained %s", path, needle);
    return false;
}

static pid_t
spawn_child(const char *self, fb_t *fb, const char *dir, const char *out, const char *block)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "--child", fb->pub_ep, fb->rep_ep, dir, out, block, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void
test_sigkill(void *zctx, const char *self, const char *dir)
{
    fb_t fb;
    fb_init(&fb, zctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "ep-kill", 0);
    char out[512], ckpt[512];
    snprintf(out, sizeof out, "%s/handled.txt", dir);
    snprintf(ckpt, sizeof ckpt, "%s/killme.ckpt", dir);
    /* 20 events before the consumer exists: a late joiner from gseq 1 */
    for (int i = 0; i < 20; i++)
        fb_message(&fb, "s1", NULL, true);
    pid_t pid = spawn_child(self, &fb, dir, out, "30");
    CHECK(tu_wait_subscription(fb.xpub, WAIT_MS) == 0);
    fb_heartbeat(&fb); /* the quiet link: the heartbeat starts the catch-up */
    for (int i = 20; i < 50; i++)
        fb_message(&fb, "s1", NULL, true);
    /* it blocks in event 30: everything below is handled and checkpointed */
    CHECK(wait_file(ckpt, "e ep-kill 29\nd 31\n"));
    CHECK(wait_file(ckpt, "d 50\n")); /* the other worker went on: 31..50 handled */
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    for (int i = 50; i < 60; i++) /* published while no consumer runs */
        fb_message(&fb, "s1", NULL, true);
    pid = spawn_child(self, &fb, dir, out, "0");
    CHECK(tu_wait_subscription(fb.xpub, WAIT_MS) == 0);
    fb_heartbeat(&fb);
    for (int i = 60; i < 70; i++)
        fb_message(&fb, "s1", NULL, true);
    CHECK(wait_file(ckpt, "e ep-kill 70\n"));
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uint64_t got[200];
    size_t n = read_lines(out, got, 200);
    CHECK_EQ(n, 70); /* none lost, none twice */
    int seen[71] = {0};
    for (size_t i = 0; i < n; i++)
        if (got[i] >= 1 && got[i] <= 70)
            seen[got[i]]++;
    int once = 0;
    for (int g = 1; g <= 70; g++)
        once += seen[g] == 1;
    CHECK_EQ(once, 70);
    /* the first run handled 1..29 and 31..50, the restart 30 and 51..70;
       each run has two workers, so its lines are a set, not a sequence
       (with 'each exactly once' above: 49 lines of at most 50 without 30) */
    uint64_t first_max = 0;
    bool first_has_30 = false;
    for (size_t i = 0; i < 49 && i < n; i++) {
        first_max = got[i] > first_max ? got[i] : first_max;
        first_has_30 |= got[i] == 30;
    }
    CHECK(n == 70 && first_max == 50 && !first_has_30);
    fb_fini(&fb);
}

/* ------------------------------------------------- checkpoint file io */

static void
test_ckpt_file(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/unit.ckpt", dir);
    dfc_ckpt_entry_t e[3] = {{"a", 5, NULL, 0},
                             {"b", UINT64_MAX, NULL, 0},
                             {"with space", 1, NULL, 0}},
                     r[DFC_CKPT_MAX];
    size_t n = 9;
    CHECK_EQ(dfc_ckpt_load(path, r, DFC_CKPT_MAX, &n), DFC_OK); /* missing: empty */
    CHECK_EQ(n, 0);
    CHECK_EQ(dfc_ckpt_save(path, e, 3, DFC_LOG_ERROR), DFC_OK);
    CHECK_EQ(dfc_ckpt_load(path, r, DFC_CKPT_MAX, &n), DFC_OK);
    CHECK_EQ(n, 2); /* an epoch with a space is never written */
    CHECK_STR(r[0].epoch, "a");
    CHECK(r[1].gseq == UINT64_MAX);
    dfc_ckpt_entries_free(r, n);
    FILE *f = fopen(path, "w");
    fputs("dfc-checkpoint 1\ne a 7\nd 9\nd 12\nd 11\ne b x\n", f);
    fclose(f);
    CHECK_EQ(dfc_ckpt_load(path, r, DFC_CKPT_MAX, &n), DFC_EINVAL);
    CHECK_EQ(n, 1);
    CHECK_EQ(r[0].gseq, 7);
    CHECK_EQ(r[0].ndone, 2); /* 11 after 12 is not ascending: ignored */
    CHECK(r[0].ndone == 2 && r[0].done[0] == 9 && r[0].done[1] == 12);
    dfc_ckpt_entries_free(r, n);
    e[0].done = (uint64_t[]){8, 10};
    e[0].ndone = 2;
    CHECK_EQ(dfc_ckpt_save(path, e, 1, DFC_LOG_ERROR), DFC_OK);
    f = fopen(path, "r");
    char buf[256] = "";
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = '\0';
    fclose(f);
    CHECK_STR(buf, "dfc-checkpoint 1\ne a 5\nd 8\nd 10\n");

    /* hand-edited or damaged files (issue 9): a line over 190 bytes is
       malformed (its rest must not read as another line), entries before kept */
    f = fopen(path, "w");
    fprintf(f, "dfc-checkpoint 1\ne a 7\nd %0190d\nd 9\n", 8);
    fclose(f);
    CHECK_EQ(dfc_ckpt_load(path, r, DFC_CKPT_MAX, &n), DFC_EINVAL);
    CHECK(n == 1 && r[0].gseq == 7 && r[0].ndone == 0);
    dfc_ckpt_entries_free(r, n);
    /* an epoch of 128 bytes (127 is the most): malformed there */
    f = fopen(path, "w");
    fprintf(f, "dfc-checkpoint 1\ne %0127d 7\ne %0128d 3\n", 1, 2);
    fclose(f);
    CHECK_EQ(dfc_ckpt_load(path, r, DFC_CKPT_MAX, &n), DFC_EINVAL);
    CHECK(n == 1 && r[0].gseq == 7 && strlen(r[0].epoch) == 127);
    dfc_ckpt_entries_free(r, n);
    /* a file bigger than any writer makes: read up to DFC_CKPT_FILE_MAX, then
       malformed; what came before is kept, the d list stays at its bound */
    f = fopen(path, "w");
    fputs("dfc-checkpoint 1\ne a 7\n", f);
    for (uint64_t g = 0; g < DFC_CKPT_FILE_MAX / 16 + 1000; g++) /* 16 bytes a line */
        fprintf(f, "d %llu\n", (unsigned long long)(UINT64_C(1000000000000) + g));
    fputs("e b 3\n", f);
    fclose(f);
    CHECK_EQ(dfc_ckpt_load(path, r, DFC_CKPT_MAX, &n), DFC_EINVAL);
    CHECK(n == 1 && r[0].gseq == 7 && r[0].ndone == DFC_CKPT_DONE_MAX);
    CHECK(n == 1 &&
          r[0].done[DFC_CKPT_DONE_MAX - 1] == UINT64_C(1000000000000) + DFC_CKPT_DONE_MAX - 1);
    dfc_ckpt_entries_free(r, n);
    unlink(path);
}

/*  The rule for replay endpoints named by heartbeats (dfc_replay_advert). */
static void
test_replay_advert(void)
{
    json_error_t jerr;
    json_t *doc = json_load_file(DFC_TESTS_DIR "/replay_advert.json", 0, &jerr);
    CHECK(doc != NULL);
    json_t *cases = json_object_get(doc, "cases"), *c;
    size_t i;
    CHECK(json_array_size(cases) >= 17);
    json_array_foreach(cases, i, c)
    {
        const char *want = json_string_value(json_object_get(c, "want"));
        char out[256] = "";
        int rc = dfc_replay_advert(json_string_value(json_object_get(c, "pub")),
                                   json_string_value(json_object_get(c, "adv")),
                                   json_is_true(json_object_get(c, "any_host")), out, sizeof out);
        if (want) {
            CHECK_EQ(rc, 0);
            CHECK_STR(out, want);
        } else {
            CHECK_EQ(rc, -1);
        }
    }
    json_decref(doc);
    char small[8];
    CHECK_EQ(
        dfc_replay_advert("tcp://127.0.0.1:1", "tcp://127.0.0.1:5557", false, small, sizeof small),
        -1);
    CHECK_EQ(dfc_replay_rcvhwm(0), 4);
    CHECK_EQ(dfc_replay_rcvhwm((size_t)16 << 20), 4);
    CHECK_EQ(dfc_replay_rcvhwm((size_t)1 << 20), 63);
    CHECK_EQ(dfc_replay_rcvhwm(65536), 256);
}

int
main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "--child") == 0)
        return child_main(argv);
    dfc_log_set_level(DFC_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/dfc-delivery-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    char gdir[300], kdir[300];
    snprintf(gdir, sizeof gdir, "%s/group", dir);
    snprintf(kdir, sizeof kdir, "%s/kill", dir);
    mkdir(gdir, 0700);
    mkdir(kdir, 0700);
    void *zctx = zmq_ctx_new();
    const char *only = argc > 1 ? argv[1] : NULL;
#define RUN(name, call)                                                                            \
    if (!only || strcmp(only, name) == 0) {                                                        \
        int64_t t0 = tu_now_ms();                                                                  \
        call;                                                                                      \
        printf("%s: %lld ms\n", name, (long long)(tu_now_ms() - t0));                              \
        fflush(stdout);                                                                            \
    }
    RUN("ckpt_file", test_ckpt_file(dir));
    RUN("replay_advert", test_replay_advert());
    RUN("gap_fill", test_gap_fill(zctx));
    RUN("gone", test_gone(zctx));
    RUN("mute", test_mute(zctx));
    RUN("heartbeat_last", test_heartbeat_last(zctx));
    RUN("absurd_live", test_absurd_live(zctx));
    RUN("absurd_heartbeat", test_absurd_heartbeat(zctx));
    RUN("absurd_end", test_absurd_end(zctx));
    RUN("max_held", test_max_held(zctx));
    RUN("replay_flood", test_replay_flood(zctx));
    RUN("stall_more", test_stall(zctx, FB_END_STALL_MORE, "stall-more"));
    RUN("stall_gone", test_stall(zctx, FB_END_WALK_GONE, "stall-gone"));
    RUN("damaged", test_damaged(zctx));
    RUN("transient_busy", test_transient(zctx, "busy", 2, "tr-busy"));
    RUN("transient_io_error", test_transient(zctx, "io_error", 2, "tr-io"));
    RUN("transient_internal_gives_up", test_transient(zctx, "internal", 3, "tr-int"));
    RUN("ckpt_lost_gone", test_ckpt_lost(zctx, kdir, CL_GONE, "cl-gone"));
    RUN("ckpt_lost_damaged", test_ckpt_lost(zctx, kdir, CL_DAMAGED, "cl-damaged"));
    RUN("ckpt_lost_hole", test_ckpt_lost(zctx, kdir, CL_HOLE, "cl-hole"));
    RUN("ckpt_lost_end_last", test_ckpt_lost(zctx, kdir, CL_END_LAST, "cl-end-last"));
    RUN("stale", test_stale(zctx));
    RUN("dedupe", test_dedupe(zctx));
    RUN("ordering", test_ordering(zctx));
    RUN("group", test_group(zctx, gdir));
    RUN("slow", test_slow(zctx));
    RUN("sigkill", test_sigkill(zctx, argv[0], kdir));
    zmq_ctx_term(zctx);
    free(hrecs);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return df_check_report("consumer_delivery");
}
