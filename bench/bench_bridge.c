/*  bench_bridge: the measuring side of the bridge benchmark (bench/README.md). The driver
    bench_bridge.py starts dfpod and dfbridge and runs this program in two roles:

    consume   libdfconsumer (public API only) with one no-op listener on the bridge, live or
              as a late joiner from gseq 1 through the replay endpoint. Prints "ready" once a
              heartbeat came through (the SUB is connected and subscribed: the driver then
              releases the pod's backlog), checks that every gseq 1..N came exactly once and
              that the library saw no gap, loss or duplicate, and prints one JSON line.
              --lat-file F writes "id monotonic_ns" of each listener start (latency join).
              --replay EP --fill: live, with the replay endpoint filling gaps (a consumer
              more than bridge.sndhwm behind): gaps are then allowed, lost ones not (every
              gseq must still come exactly once).
    ceilings  the same-run ceilings on the same events: (b) libcurl keep-alive reads of the
              pod's batches parsed with the bridge's dfb_json tape; (c) JSON -> msgpack frames
              (dfb_transcode) on one core, CPU time; (a) raw libzmq PUB -> SUB of those frames
              over loopback TCP; (d) appending those frames to a file in --dir, one write per
              batch of 100, with the journal's fsync policy. One JSON line.
    publish   the C consumer's publisher: ceiling (a) on N pre-encoded 1.2 KB MESSAGESENT
              frames, then the same frames on an XPUB once a consumer subscribed. */
#define _GNU_SOURCE /* memmem */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "canonical.h"
#include "dfb_json.h"
#include "dfb_transcode.h"
#include "dfconsumer.h"

static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *
opt(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return dflt;
}

/* ---- consume ------------------------------------------------------------------------------ */

#define ID_MAX 48

static struct {
    dfc_loop_t *loop;
    uint64_t want, gseq_base;
    atomic_uint_fast64_t handled, out_of_range, repeated;
    atomic_uchar *seen; /* one byte per gseq base+1 .. base+want */
    atomic_llong first_ns, last_ns;
    char (*ids)[ID_MAX]; /* latency: id and start time of each handled event, or NULL */
    int64_t *start_ns;
} C;

static bool
accept_all(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *initiator, int64_t bot_id)
{
    return true;
}

/*  The listener does nothing; this is the benchmark's own bookkeeping. */
static void
handle(const dfc_event_t *ev)
{
    int64_t now = mono_ns();
    uint64_t k = atomic_fetch_add(&C.handled, 1);
    if (k == 0)
        atomic_store(&C.first_ns, now);
    uint64_t g = dfc_event_gseq(ev);
    if (g <= C.gseq_base || g > C.gseq_base + C.want)
        atomic_fetch_add(&C.out_of_range, 1);
    else if (atomic_exchange(&C.seen[g - C.gseq_base - 1], 1))
        atomic_fetch_add(&C.repeated, 1);
    if (C.ids && k < C.want) {
        const char *id = dfc_event_id(ev);
        snprintf(C.ids[k], ID_MAX, "%s", id ? id : "-");
        C.start_ns[k] = now;
    }
    if (k + 1 == C.want) {
        atomic_store(&C.last_ns, mono_ns());
        dfc_loop_stop(C.loop);
    }
}

/* One no-op callback per event type: the 17 from the one list (canonical.h). */
#define DEFINE_CB(name, type)                                                                      \
    static void cb_##name(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i,              \
                          const type *p)                                                           \
    {                                                                                              \
        handle(ev);                                                                                \
    }
CANONICAL_CALLBACKS(DEFINE_CB)

static void
cb_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i)
{
    handle(ev);
}

static void *
loop_main(void *arg)
{
    *(int *)arg = dfc_loop_start(C.loop);
    return NULL;
}

static int
cmd_consume(int argc, char **argv)
{
    const char *ep = opt(argc, argv, "--endpoint", NULL);
    const char *replay = opt(argc, argv, "--replay", NULL);
    const char *lat = opt(argc, argv, "--lat-file", NULL);
    C.want = strtoull(opt(argc, argv, "--count", "0"), NULL, 10);
    C.gseq_base = strtoull(opt(argc, argv, "--gseq-base", "0"), NULL, 10);
    long idle_ms = atol(opt(argc, argv, "--idle-ms", "30000"));
    if (!ep || C.want == 0) {
        fprintf(stderr, "usage: bench_bridge consume --endpoint EP --count N [--replay EP] "
                        "[--fill] [--gseq-base B] [--lat-file F] [--workers W] [--idle-ms MS]\n");
        return 2;
    }
    C.seen = calloc(C.want, 1);
    if (lat) {
        C.ids = calloc(C.want, sizeof *C.ids);
        C.start_ns = calloc(C.want, sizeof *C.start_ns);
    }
    if (!C.seen || (lat && (!C.ids || !C.start_ns)))
        return 1;
    dfc_config_t cfg = {0};
    cfg.workers = atoi(opt(argc, argv, "--workers", "0"));
    cfg.stale_ms = -1; /* a backlog being replayed is not a stale link */
    /* --fill: the replay endpoint fills gaps only (a live consumer more than bridge.sndhwm
       behind); without it, --replay reads from gseq 1 (a late joiner). */
    bool fill = false;
    for (int i = 2; i < argc; i++)
        fill = fill || !strcmp(argv[i], "--fill");
    if (replay && !fill)
        cfg.from_gseq = 1;
    dfc_log_set_level(DFC_LOG_WARN);
    C.loop = dfc_loop_new(&cfg);
    if (!C.loop)
        return 1;
    dfc_listener_t l = {.name = "bench", .is_accepting_event = accept_all, .on_unknown = cb_unknown};
#define SET_CB(name, type) l.name = cb_##name;
    CANONICAL_CALLBACKS(SET_CB)
    int rc = replay ? dfc_loop_connect_replay(C.loop, ep, replay) : dfc_loop_connect(C.loop, ep);
    if (rc != DFC_OK || dfc_loop_subscribe(C.loop, &l) != DFC_OK) {
        fprintf(stderr, "bench_bridge: connect/subscribe: %s\n", dfc_strerror(rc));
        return 1;
    }
    int loop_rc = DFC_OK;
    pthread_t th;
    if (pthread_create(&th, NULL, loop_main, &loop_rc) != 0)
        return 1;
    /* Ready: a heartbeat came through (or, replaying, anything came). */
    bool ready = false, failed = false;
    int64_t t_ready = mono_ns();
    uint64_t last_count = 0;
    int64_t last_move = mono_ns();
    dfc_stats_t st;
    for (;;) {
        struct timespec ms = {0, 5000000};
        nanosleep(&ms, NULL);
        dfc_loop_stats(C.loop, &st);
        uint64_t h = atomic_load(&C.handled);
        if (!ready && (st.heartbeats > 0 || h > 0)) {
            ready = true;
            printf("ready\n");
            fflush(stdout);
            last_move = mono_ns();
        }
        if (h >= C.want)
            break;
        if (h != last_count) {
            last_count = h;
            last_move = mono_ns();
        }
        int64_t since = (mono_ns() - (ready ? last_move : t_ready)) / 1000000;
        if (since > idle_ms) {
            fprintf(stderr, "bench_bridge: %s after %" PRIu64 " of %" PRIu64 " events\n",
                    ready ? "no progress" : "no heartbeat", h, C.want);
            failed = true;
            dfc_loop_stop(C.loop);
            break;
        }
    }
    pthread_join(th, NULL);
    dfc_loop_stats(C.loop, &st);
    dfc_loop_destroy(&C.loop);
    uint64_t handled = atomic_load(&C.handled), missing = 0;
    for (uint64_t i = 0; i < C.want; i++)
        missing += !atomic_load(&C.seen[i]);
    bool exact = !failed && loop_rc == DFC_OK && handled == C.want && missing == 0 &&
                 atomic_load(&C.out_of_range) == 0 && atomic_load(&C.repeated) == 0 &&
                 (fill || st.gaps == 0) && st.lost == 0 && st.duplicates == 0 &&
                 st.dropped_malformed == 0;
    if (lat && C.ids) {
        FILE *f = fopen(lat, "w");
        if (!f) {
            fprintf(stderr, "bench_bridge: %s: %s\n", lat, strerror(errno));
            exact = false;
        } else {
            uint64_t n = handled < C.want ? handled : C.want;
            for (uint64_t i = 0; i < n; i++)
                fprintf(f, "%s %" PRId64 "\n", C.ids[i], C.start_ns[i]);
            fclose(f);
        }
    }
    double s = (double)(atomic_load(&C.last_ns) - atomic_load(&C.first_ns)) / 1e9;
    printf("{\"ok\":%s,\"events\":%" PRIu64 ",\"want\":%" PRIu64 ",\"missing\":%" PRIu64
           ",\"out_of_range\":%" PRIu64 ",\"repeated\":%" PRIu64 ",\"gaps\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"malformed\":%" PRIu64
           ",\"replayed\":%" PRIu64 ",\"gaps_filled\":%" PRIu64 ",\"first_ns\":%lld,\"last_ns\":%lld,\"seconds\":%.6f"
           ",\"rate\":%.0f}\n",
           exact ? "true" : "false", handled, C.want, missing, (uint64_t)atomic_load(&C.out_of_range),
           (uint64_t)atomic_load(&C.repeated), st.gaps, st.lost, st.duplicates,
           st.dropped_malformed, st.replayed, st.gaps_filled, (long long)atomic_load(&C.first_ns),
           (long long)atomic_load(&C.last_ns), s, s > 0 ? (double)(C.want - 1) / s : 0.0);
    free(C.seen);
    free(C.ids);
    free(C.start_ns);
    return exact ? 0 : 1;
}

/* ---- ceilings ----------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} body_t;

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    body_t *b = arg;
    size_t n = size * nmemb;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1 << 20;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return n;
}

typedef struct {
    char **bodies; /* every read answer, kept for (c) */
    size_t *lens;
    size_t nbodies, cap;
} batches_t;

/*  (b): reads the feed until COUNT events came, parsing each answer with the tape. Returns
    the events read, or -1. */
static long
fetch_parse(const char *url, const char *feed, const char *token, long count, batches_t *out,
            double *seconds)
{
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char full[1024], hdr[256], post[256];
    snprintf(full, sizeof full, "%s/agent/v5/datafeeds/%s/read", url, feed);
    snprintf(hdr, sizeof hdr, "sessionToken: %s", token);
    struct curl_slist *h = curl_slist_append(NULL, hdr);
    h = curl_slist_append(h, "Content-Type: application/json");
    body_t b = {0};
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    dfb_json_t *tape = dfb_json_new();
    char ack[128] = "";
    long got = 0;
    int64_t t0 = mono_ns();
    while (got < count && tape) {
        snprintf(post, sizeof post, "{\"ackId\":\"%s\"}", ack);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
        b.n = 0;
        long status = 0;
        if (curl_easy_perform(c) != CURLE_OK ||
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200 ||
            dfb_json_parse(tape, b.p, b.n) != 0) {
            fprintf(stderr, "bench_bridge: read failed (HTTP %ld) after %ld events\n", status, got);
            got = -1;
            break;
        }
        dfb_json_ref_t evs = dfb_json_get(tape, 0, "events");
        dfb_json_ref_t a = dfb_json_get(tape, 0, "ackId");
        size_t al = 0;
        const char *as = a == DFB_JSON_NONE ? NULL : dfb_json_string(tape, a, &al);
        if (evs == DFB_JSON_NONE || !as || al >= sizeof ack) {
            got = -1;
            break;
        }
        memcpy(ack, as, al);
        ack[al] = '\0';
        long n = (long)dfb_json_count(tape, evs);
        if (n == 0)
            continue;
        got += n;
        if (out->nbodies == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 1024;
            out->bodies = realloc(out->bodies, out->cap * sizeof *out->bodies);
            out->lens = realloc(out->lens, out->cap * sizeof *out->lens);
            if (!out->bodies || !out->lens) {
                got = -1;
                break;
            }
        }
        out->bodies[out->nbodies] = malloc(b.n);
        if (!out->bodies[out->nbodies]) {
            got = -1;
            break;
        }
        memcpy(out->bodies[out->nbodies], b.p, b.n);
        out->lens[out->nbodies++] = b.n;
    }
    *seconds = (double)(mono_ns() - t0) / 1e9;
    dfb_json_destroy(&tape);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(b.p);
    return got;
}

typedef struct {
    uint8_t *data; /* every frame-2 body back to back */
    size_t *off;   /* body i is data[off[i] .. off[i+1]) */
    char (*topic)[64];
    long n;
} frames_t;

/*  (c): every batch parsed and every event encoded as the bridge's frame 2. Returns the CPU
    seconds of this thread, or -1. */
static double
transcode_all(const batches_t *bt, long count, frames_t *fr)
{
    dfb_json_t *tape = dfb_json_new();
    dfb_buf_t one, all;
    dfb_buf_init(&one);
    dfb_buf_init(&all);
    fr->off = calloc((size_t)count + 1, sizeof *fr->off);
    fr->topic = calloc((size_t)count, sizeof *fr->topic);
    if (!tape || !fr->off || !fr->topic)
        return -1;
    /* First pass, timed: parse + encode only (the buffer is reused, as in the bridge). */
    int64_t c0 = cpu_ns();
    uint64_t gseq = 0, bytes = 0;
    for (size_t i = 0; i < bt->nbodies; i++) {
        if (dfb_json_parse(tape, bt->bodies[i], bt->lens[i]) != 0)
            return -1;
        dfb_json_ref_t evs = dfb_json_get(tape, 0, "events");
        for (dfb_json_ref_t e = dfb_json_first(tape, evs); e != DFB_JSON_NONE;
             e = dfb_json_next(tape, e)) {
            gseq++;
            dfb_envelope_t env = {gseq, gseq, "bench", 1700000000000ULL, 68719476738LL};
            size_t tl;
            (void)dfb_transcode_topic(tape, e, &tl);
            dfb_buf_reset(&one);
            if (dfb_transcode_message(&env, tape, e, &one) != 0)
                return -1;
            bytes += one.len;
        }
    }
    double cpu = (double)(cpu_ns() - c0) / 1e9;
    /* Second pass, untimed: keep the frames for (a) and (d). */
    long k = 0;
    gseq = 0;
    for (size_t i = 0; i < bt->nbodies && k < count; i++) {
        dfb_json_parse(tape, bt->bodies[i], bt->lens[i]);
        dfb_json_ref_t evs = dfb_json_get(tape, 0, "events");
        for (dfb_json_ref_t e = dfb_json_first(tape, evs); e != DFB_JSON_NONE && k < count;
             e = dfb_json_next(tape, e)) {
            gseq++;
            dfb_envelope_t env = {gseq, gseq, "bench", 1700000000000ULL, 68719476738LL};
            size_t tl;
            const char *t = dfb_transcode_topic(tape, e, &tl);
            snprintf(fr->topic[k], sizeof fr->topic[k], "%.*s", (int)tl, t);
            fr->off[k] = all.len;
            if (dfb_transcode_message(&env, tape, e, &all) != 0)
                return -1;
            k++;
        }
    }
    fr->off[k] = all.len;
    fr->n = k;
    fr->data = all.data;
    dfb_buf_free(&one);
    dfb_json_destroy(&tape);
    (void)bytes;
    return cpu;
}

typedef struct {
    void *ctx;
    const char *ep;
    long want;
    long got;
    size_t bytes;
    int64_t last_ns;
} sub_arg_t;

static void *
sub_main(void *p)
{
    sub_arg_t *a = p;
    void *s = zmq_socket(a->ctx, ZMQ_SUB);
    int zero = 0, tmo = 10000;
    zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(s, a->ep);
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (a->got < a->want) {
        if (zmq_msg_recv(&m, s, 0) < 0)
            break; /* timeout: counted short */
        if (zmq_msg_more(&m))
            continue; /* the topic frame */
        a->bytes += zmq_msg_size(&m);
        a->got++;
    }
    a->last_ns = mono_ns();
    zmq_msg_close(&m);
    zmq_close(s);
    return NULL;
}

/*  (a): raw PUB -> SUB over loopback TCP; events/s from the first send to the last receive.
    The SUB has a context (an I/O thread) of its own, as a consumer in another process has: one
    shared I/O thread would carry both ends' TCP work and understate the transport. */
static double
zmq_ceiling(const frames_t *fr, long *got)
{
    void *ctx = zmq_ctx_new(), *sub_ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_XPUB);
    int zero = 0;
    zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    char ep[128];
    size_t el = sizeof ep;
    if (zmq_bind(pub, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(pub, ZMQ_LAST_ENDPOINT, ep, &el) != 0)
        return -1;
    sub_arg_t a = {sub_ctx, ep, fr->n, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, sub_main, &a);
    /* Wait for the subscription (XPUB hands it to us), bounded. */
    char sub[64];
    int tmo = 10000;
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if (zmq_recv(pub, sub, sizeof sub, 0) < 1) {
        fprintf(stderr, "bench_bridge: no subscription on the zmq ceiling\n");
        return -1;
    }
    int64_t t0 = mono_ns();
    for (long i = 0; i < fr->n; i++) {
        zmq_send(pub, fr->topic[i], strlen(fr->topic[i]), ZMQ_SNDMORE);
        zmq_send(pub, fr->data + fr->off[i], fr->off[i + 1] - fr->off[i], 0);
    }
    pthread_join(th, NULL);
    *got = a.got;
    zmq_close(pub);
    zmq_ctx_term(ctx);
    zmq_ctx_term(sub_ctx);
    if (a.bytes != fr->off[fr->n])
        *got = -1; /* not the same bytes */
    double s = (double)(a.last_ns - t0) / 1e9;
    return s > 0 ? (double)fr->n / s : 0;
}

/*  (d): append every frame with a 16-byte record header, one write() per batch of 100;
    fsync "interval" = fdatasync every second, "always" = after each batch, "never" = none. */
static double
append_ceiling(const frames_t *fr, const char *dir, const char *fsync_policy, long *syncs)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/bench-append.%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    bool always = !strcmp(fsync_policy, "always"), interval = !strcmp(fsync_policy, "interval");
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    int64_t t0 = mono_ns(), last_sync = t0;
    *syncs = 0;
    bool ok = buf != NULL;
    for (long i = 0; ok && i < fr->n; i += 100) {
        size_t n = 0;
        for (long j = i; j < fr->n && j < i + 100; j++) {
            size_t len = fr->off[j + 1] - fr->off[j];
            if (n + len + 16 > cap) {
                cap = (n + len + 16) * 2;
                uint8_t *nb = realloc(buf, cap);
                if (!nb) {
                    ok = false;
                    break;
                }
                buf = nb;
            }
            uint64_t hdr[2] = {len, (uint64_t)j + 1}; /* length and gseq, as a journal record */
            memcpy(buf + n, hdr, 16);
            memcpy(buf + n + 16, fr->data + fr->off[j], len);
            n += len + 16;
        }
        if (ok && write(fd, buf, n) != (ssize_t)n)
            ok = false;
        int64_t now = mono_ns();
        if (ok && (always || (interval && now - last_sync >= 1000000000))) {
            fdatasync(fd);
            last_sync = now;
            (*syncs)++;
        }
    }
    if (ok && interval) {
        fdatasync(fd);
        (*syncs)++;
    }
    double s = (double)(mono_ns() - t0) / 1e9;
    close(fd);
    unlink(path);
    free(buf);
    return ok && s > 0 ? (double)fr->n / s : -1;
}

static int
cmd_ceilings(int argc, char **argv)
{
    const char *url = opt(argc, argv, "--url", NULL), *feed = opt(argc, argv, "--feed", NULL),
               *token = opt(argc, argv, "--token", NULL), *dir = opt(argc, argv, "--dir", "/tmp"),
               *fs = opt(argc, argv, "--fsync", "interval");
    long count = atol(opt(argc, argv, "--count", "0"));
    if (!url || !feed || !token || count <= 0) {
        fprintf(stderr, "usage: bench_bridge ceilings --url URL --feed ID --token T --count N "
                        "[--dir D] [--fsync interval|always|never]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    batches_t bt = {0};
    double fetch_s = 0;
    long fetched = fetch_parse(url, feed, token, count, &bt, &fetch_s);
    frames_t fr = {0};
    double tc = fetched == count ? transcode_all(&bt, count, &fr) : -1;
    long zgot = 0, syncs = 0;
    double zrate = tc >= 0 && fr.n == count ? zmq_ceiling(&fr, &zgot) : -1;
    double arate = tc >= 0 && fr.n == count ? append_ceiling(&fr, dir, fs, &syncs) : -1;
    bool ok = fetched == count && tc >= 0 && fr.n == count && zgot == count && arate > 0;
    printf("{\"ok\":%s,\"events\":%ld,\"fetched\":%ld,\"fetch_parse_rate\":%.0f,"
           "\"transcode_us\":%.3f,\"transcode_rate\":%.0f,\"frame_bytes\":%.1f,"
           "\"zmq_received\":%ld,\"zmq_rate\":%.0f,\"append_rate\":%.0f,\"append_syncs\":%ld,"
           "\"fsync\":\"%s\"}\n",
           ok ? "true" : "false", count, fetched, fetch_s > 0 ? (double)fetched / fetch_s : 0,
           tc > 0 ? tc * 1e6 / (double)count : 0, tc > 0 ? (double)count / tc : 0,
           fr.n > 0 ? (double)fr.off[fr.n] / (double)fr.n : 0, zgot, zrate, arate, syncs, fs);
    for (size_t i = 0; i < bt.nbodies; i++)
        free(bt.bodies[i]);
    free(bt.bodies);
    free(bt.lens);
    free(fr.data);
    free(fr.off);
    free(fr.topic);
    curl_global_cleanup();
    return ok ? 0 : 1;
}

/* ---- publish ------------------------------------------------------------------------------ */

/*  The C consumer's dispatch figure (bench_bridge.py's consumers section): N frames of the wire
    contract built before the clock starts from one MESSAGESENT (--event FILE: its JSON, with
    the id "bench-00000000", whose digits become 1..N), envelope seq = gseq = 1..N made by the
    bridge's own dfb_transcode_message. First ceiling (a) on those frames (raw PUB -> SUB in this
    process); then an XPUB (SNDHWM 0) prints "endpoint EP", waits for a subscription covering
    MESSAGESENT, sends the N frames, and stays until a line on stdin (the consumer is done) or
    --idle-ms. One JSON line. */
static int
cmd_publish(int argc, char **argv)
{
    const char *path = opt(argc, argv, "--event", NULL);
    const char *epoch = opt(argc, argv, "--epoch", "bench");
    long count = atol(opt(argc, argv, "--count", "0"));
    int idle_ms = atoi(opt(argc, argv, "--idle-ms", "120000"));
    if (!path || count <= 0 || count > 99999999) {
        fprintf(stderr, "usage: bench_bridge publish --event FILE --count N [--epoch E] "
                        "[--idle-ms MS]\n");
        return 2;
    }
    FILE *f = fopen(path, "rb");
    char *json = malloc(1 << 20);
    size_t jl = f && json ? fread(json, 1, (1 << 20) - 1, f) : 0;
    if (f)
        fclose(f);
    char *digits = jl ? memmem(json, jl, "\"bench-00000000\"", 16) : NULL;
    if (!digits) {
        fprintf(stderr, "bench_bridge: %s: no event with the id \"bench-00000000\"\n", path);
        free(json);
        return 2;
    }
    digits += 7;
    frames_t fr = {0};
    fr.off = calloc((size_t)count + 1, sizeof *fr.off);
    fr.topic = calloc((size_t)count, sizeof *fr.topic);
    dfb_json_t *tape = dfb_json_new();
    dfb_buf_t all;
    dfb_buf_init(&all);
    bool ok = fr.off && fr.topic && tape;
    uint64_t ts = (uint64_t)time(NULL) * 1000;
    for (long i = 0; ok && i < count; i++) {
        char d[24]; /* 8 digits: count <= 99999999 */
        snprintf(d, sizeof d, "%08ld", i + 1);
        memcpy(digits, d, 8);
        dfb_envelope_t env = {(uint64_t)i + 1, (uint64_t)i + 1, epoch, ts, 68719476738LL};
        fr.off[i] = all.len;
        snprintf(fr.topic[i], sizeof fr.topic[i], "MESSAGESENT");
        ok = dfb_json_parse(tape, json, jl) == 0 &&
             dfb_transcode_message(&env, tape, 0, &all) == 0;
    }
    dfb_json_destroy(&tape);
    free(json);
    if (!ok) {
        fprintf(stderr, "bench_bridge: %s: not an event the transcoder takes\n", path);
        return 1;
    }
    fr.off[count] = all.len;
    fr.n = count;
    fr.data = all.data;
    long zgot = 0;
    double zrate = zmq_ceiling(&fr, &zgot);
    ok = zgot == count;

    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_XPUB);
    int zero = 0, tmo = 30000;
    zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    char ep[128];
    size_t el = sizeof ep;
    double pub_s = 0;
    if (!ok || zmq_bind(pub, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(pub, ZMQ_LAST_ENDPOINT, ep, &el) != 0) {
        ok = false;
    } else {
        printf("endpoint %s\n", ep);
        fflush(stdout);
        /* The subscription (XPUB: 0x01 + prefix) that covers MESSAGESENT, within 30 s. */
        bool subscribed = false;
        char sub[300];
        int n;
        while (!subscribed && (n = zmq_recv(pub, sub, sizeof sub, 0)) >= 1)
            subscribed = sub[0] == 1 && n - 1 <= 11 && !memcmp("MESSAGESENT", sub + 1, n - 1);
        if (!subscribed) {
            fprintf(stderr, "bench_bridge: no subscription within 30 s\n");
            ok = false;
        } else {
            int64_t t0 = mono_ns();
            for (long i = 0; i < fr.n; i++) {
                zmq_send(pub, fr.topic[i], strlen(fr.topic[i]), ZMQ_SNDMORE);
                zmq_send(pub, fr.data + fr.off[i], fr.off[i + 1] - fr.off[i], 0);
            }
            pub_s = (double)(mono_ns() - t0) / 1e9;
            /* Stay (the queued frames go out) until the driver says the consumer is done. */
            struct pollfd pfd = {0, POLLIN, 0};
            if (poll(&pfd, 1, idle_ms) != 1)
                fprintf(stderr, "bench_bridge: publish: no word from the driver in %d ms\n",
                        idle_ms);
        }
    }
    zmq_close(pub);
    zmq_ctx_term(ctx);
    printf("{\"ok\":%s,\"events\":%ld,\"frame_bytes\":%.1f,\"zmq_received\":%ld,"
           "\"zmq_rate\":%.0f,\"publish_rate\":%.0f}\n",
           ok ? "true" : "false", count, (double)fr.off[count] / (double)count, zgot, zrate,
           pub_s > 0 ? (double)count / pub_s : 0);
    free(fr.data);
    free(fr.off);
    free(fr.topic);
    return ok ? 0 : 1;
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "consume"))
        return cmd_consume(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "ceilings"))
        return cmd_ceilings(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "publish"))
        return cmd_publish(argc, argv);
    fprintf(stderr, "usage: bench_bridge consume|ceilings|publish ... (run by "
                    "bench/bench_bridge.py; see bench/README.md)\n");
    return 2;
}
