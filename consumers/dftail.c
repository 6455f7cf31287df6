/*  dftail: subscribe to one or more dfbridge PUB endpoints and print every
    message as one JSON line (topic, envelope, event), for humans and tests.
    --from-gseq replays the bridge's journal first. Malformed messages get a
    line on stderr and are skipped. --metrics serves its counters as
    Prometheus text (dfc_stats_prometheus: the names every consumer uses). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "dfc_internal.h"
#include "dfc_tsan.h"
#include "metrics_http.h"

static volatile sig_atomic_t interrupted;

/*  The counters dftail has, under the library's names (dfc_stats_t): it runs
    no loop, so the others (listeners, jobs, gaps, dedupe...) stay 0. Atomics:
    the metrics server's thread reads them. */
static struct {
    _Atomic uint64_t received, reserved, heartbeats, replayed, replay_requests, replay_errors,
        lag_ms, alloc_failures;
    _Atomic uint64_t drops[DFC_MSG_NOMEM]; /* by dfc_msg_status_t, DFC_MSG_OK unused */
} tail;
static const char **metric_labels; /* name, value, ..., NULL */

#define TAIL_ADD(f) atomic_fetch_add_explicit(&tail.f, 1, memory_order_relaxed)
#define TAIL_GET(f) atomic_load_explicit(&tail.f, memory_order_relaxed)

/*  A message not printed: counted under its reason. */
static void
count_drop(dfc_msg_status_t st)
{
    if (st == DFC_MSG_NOMEM)
        TAIL_ADD(alloc_failures);
    else if (st > DFC_MSG_OK && st < DFC_MSG_NOMEM)
        TAIL_ADD(drops[st]);
}

static size_t
render_metrics(void *ctx, char *buf, size_t size)
{
    (void)ctx;
    dfc_stats_t st;
    memset(&st, 0, sizeof st);
    st.received = TAIL_GET(received);
    st.reserved = TAIL_GET(reserved);
    st.heartbeats = TAIL_GET(heartbeats);
    st.replayed = TAIL_GET(replayed);
    st.replay_requests = TAIL_GET(replay_requests);
    st.replay_errors = TAIL_GET(replay_errors);
    st.lag_ms = TAIL_GET(lag_ms);
    st.alloc_failures = TAIL_GET(alloc_failures);
    st.bad_frames = TAIL_GET(drops[DFC_MSG_BAD_FRAMES]);
    st.oversize = TAIL_GET(drops[DFC_MSG_OVERSIZE]);
    st.bad_msgpack = TAIL_GET(drops[DFC_MSG_BAD_MSGPACK]);
    st.not_map = TAIL_GET(drops[DFC_MSG_NOT_MAP]);
    st.bad_version = TAIL_GET(drops[DFC_MSG_BAD_VERSION]);
    st.bad_envelope = TAIL_GET(drops[DFC_MSG_BAD_ENVELOPE]);
    st.bad_event = TAIL_GET(drops[DFC_MSG_BAD_EVENT]);
    st.dropped_malformed = st.bad_frames + st.oversize + st.bad_msgpack + st.not_map +
                           st.bad_version + st.bad_envelope + st.bad_event;
    return dfc_stats_prometheus(&st, metric_labels, buf, size);
}

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void
usage(FILE *out)
{
    fprintf(out, "usage: dftail [--endpoint E]... [--count N] [--timeout MS] [--heartbeats]\n"
                 "              [--from-gseq N [--replay R]] [--server-key FILE|Z85 --cert FILE]\n"
                 "              [--metrics HOST:PORT [--metrics-label NAME=VALUE]...] [TOPIC...]\n"
                 "  --endpoint E   bridge PUB endpoint (repeatable; default tcp://127.0.0.1:5556)\n"
                 "  --count N      exit after printing N messages\n"
                 "  --timeout MS   exit after MS milliseconds without a message\n"
                 "  --heartbeats   also print the bridge's _hb heartbeats\n"
                 "  --from-gseq N  first print the journaled messages from gseq N (replay), then\n"
                 "                 live ones after them (one endpoint only)\n"
                 "  --replay R     the bridge's replay endpoint (default: from its heartbeat)\n"
                 "  --server-key K CURVE: the bridge's public key (its .key file, or 40 Z85\n"
                 "                 characters); with --cert every socket is a CURVE client\n"
                 "  --cert FILE    CURVE: this consumer's secret certificate (.key_secret)\n"
                 "  --metrics A    serve the counters on http://A/metrics (Prometheus text;\n"
                 "                 port 0: any free port, named on stderr)\n"
                 "  --metrics-label NAME=VALUE  a constant label of every sample (repeatable)\n"
                 "  TOPIC          event types to print, matched exactly (all when none)\n");
}


/*  The SUB's socket monitor with CURVE: a handshake the bridge refused is
    connected again after a backoff (libzmq 4.3 never does; the same rule as
    the library, dfc_monitor.c), one dfc_hs_t per endpoint. */
typedef struct {
    void *sub, *mon;
    const char **endpoints;
    dfc_hs_t *hs;
    size_t n;
} sub_watch_t;

static void
watch_read(sub_watch_t *w)
{
    uint16_t id;
    char ep[256];
    while (w->mon && w->hs && dfc_monitor_next(w->mon, &id, ep, sizeof ep)) {
        for (size_t i = 0; i < w->n; i++) {
            if (strcmp(ep, w->endpoints[i]) != 0)
                continue;
            if (id == ZMQ_EVENT_CONNECT_RETRIED)
                w->hs[i].retry_at = 0; /* libzmq retries by itself (a wrong key) */
            else
                dfc_hs_event(&w->hs[i], id, ep, dfc_mono_ms());
        }
    }
}

/*  Connects refused endpoints again; returns how long the next poll may wait. */
static long
watch_tick(sub_watch_t *w, long wait)
{
    int64_t now = dfc_mono_ms();
    for (size_t i = 0; w->hs && i < w->n; i++) {
        if (!w->hs[i].retry_at)
            continue;
        if (now >= w->hs[i].retry_at) {
            w->hs[i].retry_at = 0;
            zmq_disconnect(w->sub, w->endpoints[i]);
            if (zmq_connect(w->sub, w->endpoints[i]) != 0)
                fprintf(stderr, "dftail: cannot reconnect %s: %s\n", w->endpoints[i],
                        zmq_strerror(errno));
        } else if (w->hs[i].retry_at - now < wait) {
            wait = (long)(w->hs[i].retry_at - now);
        }
    }
    return wait;
}

/*  Polls the SUB (and its monitor) for up to wait ms; >0 when the SUB has
    a message, 0 when not, -1 on error (errno). */
static int
watch_poll(sub_watch_t *w, long wait)
{
    wait = watch_tick(w, wait);
    zmq_pollitem_t items[2] = {{w->sub, 0, ZMQ_POLLIN, 0}, {w->mon, 0, ZMQ_POLLIN, 0}};
    int n = zmq_poll(items, w->mon ? 2 : 1, wait);
    if (n > 0 && w->mon && (items[1].revents & ZMQ_POLLIN))
        watch_read(w);
    return n < 0 ? -1 : (items[0].revents & ZMQ_POLLIN) ? 1 : 0;
}

/*  A growable line buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} line_t;

static int
line_reserve(line_t *l, size_t extra)
{
    if (l->len + extra + 1 <= l->cap)
        return 0;
    size_t cap = l->cap ? l->cap : 4096;
    while (cap < l->len + extra + 1)
        cap *= 2;
    char *p = realloc(l->p, cap);
    if (!p)
        return -1;
    l->p = p;
    l->cap = cap;
    return 0;
}

static int
line_add(line_t *l, const char *s)
{
    size_t n = strlen(s);
    if (line_reserve(l, n))
        return -1;
    memcpy(l->p + l->len, s, n + 1);
    l->len += n;
    return 0;
}

static int
line_add_json_str(line_t *l, const char *s, size_t n)
{
    size_t need = dfc_json_string(s, n, NULL, 0);
    if (line_reserve(l, need))
        return -1;
    dfc_json_string(s, n, l->p + l->len, need + 1);
    l->len += need;
    return 0;
}

static int
line_add_value(line_t *l, const dfc_value_t *v)
{
    size_t need = dfc_value_to_json(v, NULL, 0);
    if (line_reserve(l, need))
        return -1;
    dfc_value_to_json(v, l->p + l->len, need + 1);
    l->len += need;
    return 0;
}

/*  Formats one message; returns DFC_MSG_OK and the line, or why not. */
static dfc_msg_status_t
format_message(const zmq_msg_t *topic, const zmq_msg_t *body, line_t *l)
{
    dfc_doc_t *doc = NULL;
    int rc = dfc_doc_parse(zmq_msg_data((zmq_msg_t *)body), zmq_msg_size((zmq_msg_t *)body), &doc);
    if (rc != DFC_OK)
        return rc == DFC_ENOMEM ? DFC_MSG_NOMEM : DFC_MSG_BAD_MSGPACK;
    dfc_envelope_t env;
    dfc_msg_status_t st = dfc_envelope_check(dfc_doc_root(doc), &env);
    if (st == DFC_MSG_OK) {
        uint64_t now = dfc_wall_ms();
        atomic_store_explicit(&tail.lag_ms, now > env.ts ? now - env.ts : 0, memory_order_relaxed);
        char num[160];
        l->len = 0;
        int bad = line_add(l, "{\"topic\":");
        bad |= line_add_json_str(l, zmq_msg_data((zmq_msg_t *)topic),
                                 zmq_msg_size((zmq_msg_t *)topic));
        snprintf(num, sizeof num,
                 ",\"v\":%llu,\"seq\":%llu,\"gseq\":%llu,\"epoch\":", (unsigned long long)env.v,
                 (unsigned long long)env.seq, (unsigned long long)env.gseq);
        bad |= line_add(l, num);
        size_t elen = 0;
        const char *epoch = dfc_value_str(dfc_value_find(env.root, "epoch"), &elen);
        bad |= line_add_json_str(l, epoch, elen);
        snprintf(num, sizeof num,
                 ",\"ts\":%llu,\"bot\":%lld,\"event\":", (unsigned long long)env.ts,
                 (long long)env.bot);
        bad |= line_add(l, num);
        bad |= line_add_value(l, env.event);
        bad |= line_add(l, "}\n");
        if (bad)
            st = DFC_MSG_NOMEM;
    }
    dfc_doc_destroy(&doc);
    return st;
}

/*  Reserved "_" topics are the bridge's own messages, not envelopes: shown as
    {"topic":…,"body":…} when the body is msgpack. */
static dfc_msg_status_t
format_reserved(const zmq_msg_t *topic, const zmq_msg_t *body, line_t *l)
{
    dfc_doc_t *doc = NULL;
    int rc = dfc_doc_parse(zmq_msg_data((zmq_msg_t *)body), zmq_msg_size((zmq_msg_t *)body), &doc);
    if (rc != DFC_OK)
        return rc == DFC_ENOMEM ? DFC_MSG_NOMEM : DFC_MSG_BAD_MSGPACK;
    l->len = 0;
    int bad = line_add(l, "{\"topic\":");
    bad |= line_add_json_str(l, zmq_msg_data((zmq_msg_t *)topic), zmq_msg_size((zmq_msg_t *)topic));
    bad |= line_add(l, ",\"body\":");
    bad |= line_add_value(l, dfc_doc_root(doc));
    bad |= line_add(l, "}\n");
    dfc_doc_destroy(&doc);
    return bad ? DFC_MSG_NOMEM : DFC_MSG_OK;
}

/*  The gseq and epoch of an envelope (epoch bytes copied into out, *olen
    their length); -1 if not one, or the epoch does not fit. */
static int
envelope_position(const zmq_msg_t *body, uint64_t *gseq, char *out, size_t size, size_t *olen)
{
    dfc_doc_t *doc = NULL;
    if (dfc_doc_parse(zmq_msg_data((zmq_msg_t *)body), zmq_msg_size((zmq_msg_t *)body), &doc))
        return -1;
    dfc_envelope_t env;
    int rc = -1;
    if (dfc_envelope_check(dfc_doc_root(doc), &env) == DFC_MSG_OK) {
        if (env.epoch_len <= size) {
            *gseq = env.gseq;
            memcpy(out, env.epoch, env.epoch_len);
            *olen = env.epoch_len;
            rc = 0;
        }
    }
    dfc_doc_destroy(&doc);
    return rc;
}

/*  State of the replay phase: what it printed, so that the live messages
    queued meanwhile in the SUB are not printed twice. */
typedef struct {
    char epoch[DFC_EPOCH_BYTES]; /* bytes: compared with their length */
    size_t epoch_len;
    uint64_t last; /* last gseq printed from replay; 0 none */
} replayed_t;

/*  Replays from gseq `from` on endpoint `rep` (a DEALER, one request in
    flight, the limit/more loop), printing each message. Returns 0, or 1
    after an error answer or 10 s without one (a line on stderr). */
static int
replay_phase(void *ctx, const char *rep, uint64_t from, const char **topics, size_t ntopics,
             line_t *line, long long *printed, long long count, replayed_t *done,
             const dfc_curve_t *curve)
{
    /* the library's replay client; no size limit, like the SUB. With CURVE a
       failed handshake ends the replay at once (a request to a bridge that
       refuses us would only time out) */
    void *mon = NULL;
    void *d = dfc_replay_open(ctx, rep, 0, curve, &mon);
    int rc = 1;
    if (!d) {
        fprintf(stderr, "dftail: cannot connect %s: %s\n", rep, zmq_strerror(errno));
        return 1;
    }
    uint64_t req = 0;
    for (;;) {
        unsigned char buf[4096];
        size_t n = dfc_replay_request(buf, sizeof buf, ++req, NULL, 0, from, 1000, topics, ntopics);
        TAIL_ADD(replay_requests);
        if (n == 0 || zmq_send(d, buf, n, 0) != (int)n) {
            fprintf(stderr, "dftail: cannot send the replay request\n");
            break;
        }
        bool end = false, more = false, failed = false;
        int64_t deadline = dfc_mono_ms() + 10000;
        while (!end && !interrupted) {
            zmq_pollitem_t it[2] = {{d, 0, ZMQ_POLLIN, 0}, {mon, 0, ZMQ_POLLIN, 0}};
            if (dfc_mono_ms() > deadline) {
                fprintf(stderr, "dftail: no answer from %s\n", rep);
                TAIL_ADD(replay_errors);
                failed = true;
                break;
            }
            if (zmq_poll(it, mon ? 2 : 1, 200) <= 0)
                continue;
            uint16_t id;
            char ep[256];
            while (mon && (it[1].revents & ZMQ_POLLIN) && dfc_monitor_next(mon, &id, ep, sizeof ep))
                if (id != ZMQ_EVENT_HANDSHAKE_SUCCEEDED && (id & DFC_HS_EVENTS))
                    failed = true;
            if (failed) {
                fprintf(stderr, "dftail: replay %s: the CURVE handshake failed (key not allowed "
                                "by the bridge, or a wrong --server-key)\n", rep);
                break;
            }
            if (!(it[0].revents & ZMQ_POLLIN))
                continue;
            zmq_msg_t parts[2];
            size_t np, total;
            while (!end && dfc_msg_read(d, parts, &np, &total) == 1) {
                deadline = dfc_mono_ms() + 10000;
                if (np == 2 && dfc_msg_is(&parts[0], "_end")) {
                    dfc_replay_end_t e;
                    int pr =
                        dfc_replay_end_parse(zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), &e);
                    end = pr != DFC_OK || (e.has_req && e.req == req);
                    more = e.more;
                    if (!end) {
                        fprintf(stderr, "dftail: replay: dropped an end marker of req %llu\n",
                                (unsigned long long)e.req);
                    } else if (pr != DFC_OK || e.impossible) {
                        fprintf(stderr, "dftail: replay from gseq %llu: %s end marker\n",
                                (unsigned long long)from,
                                pr == DFC_EINVAL ? "malformed" : "impossible numbers in the");
                        failed = true;
                    } else if (!e.ok) {
                        TAIL_ADD(replay_errors);
                        fprintf(stderr, "dftail: replay from gseq %llu: %s: %s\n",
                                (unsigned long long)from, e.code[0] ? e.code : "error", e.error);
                        failed = true;
                    } else if (more && e.last_gseq < from) {
                        /* no progress: asking again would never end */
                        fprintf(stderr, "dftail: replay from gseq %llu: more, but no progress\n",
                                (unsigned long long)from);
                        failed = true;
                    } else {
                        from = e.last_gseq + 1;
                    }
                } else if (dfc_frames_check(np, zmq_msg_size(&parts[0])) != DFC_MSG_OK) {
                    fprintf(stderr, "dftail: dropped a replayed message: %s\n",
                            dfc_msg_status_str(DFC_MSG_BAD_FRAMES));
                    count_drop(DFC_MSG_BAD_FRAMES);
                } else if (count < 0 || *printed < count) {
                    uint64_t g = 0;
                    size_t el = 0;
                    if (envelope_position(&parts[1], &g, done->epoch, sizeof done->epoch, &el) ==
                        0) {
                        done->epoch_len = el;
                        done->last = g;
                    }
                    dfc_msg_status_t st = format_message(&parts[0], &parts[1], line);
                    if (st == DFC_MSG_OK) {
                        fputs(line->p, stdout);
                        (*printed)++;
                        TAIL_ADD(replayed);
                    } else {
                        fprintf(stderr, "dftail: dropped a replayed message: %s\n",
                                dfc_msg_status_str(st));
                        count_drop(st);
                    }
                }
                zmq_msg_close(&parts[0]);
                zmq_msg_close(&parts[1]);
            }
        }
        fflush(stdout);
        if (failed || interrupted || !end)
            break;
        if (!more || (count >= 0 && *printed >= count)) {
            rc = 0;
            break;
        }
    }
    dfc_monitor_close(d, &mon);
    zmq_close(d);
    return rc;
}

static bool
topic_wanted(const zmq_msg_t *topic, const char **topics, size_t n)
{
    size_t len = zmq_msg_size((zmq_msg_t *)topic);
    for (size_t i = 0; i < n; i++)
        if (strlen(topics[i]) == len &&
            memcmp(topics[i], zmq_msg_data((zmq_msg_t *)topic), len) == 0)
            return true;
    return false;
}

int
main(int argc, char **argv)
{
    const char **endpoints = calloc((size_t)argc + 1, sizeof *endpoints);
    const char **topics = calloc((size_t)argc + 1, sizeof *topics);
    size_t nend = 0, ntopics = 0;
    long long count = -1, timeout = -1;
    bool heartbeats = false;
    uint64_t from_gseq = 0;
    const char *replay = NULL, *server_key = NULL, *cert = NULL, *metrics = NULL;
    size_t nlabels = 0;
    metric_labels = calloc((size_t)argc * 2 + 1, sizeof *metric_labels);
    if (!endpoints || !topics || !metric_labels)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--endpoint") || !strcmp(a, "-e")) && i + 1 < argc) {
            endpoints[nend++] = argv[++i];
        } else if (!strcmp(a, "--count") && i + 1 < argc) {
            count = strtoll(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            timeout = strtoll(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--heartbeats")) {
            heartbeats = true;
        } else if (!strcmp(a, "--from-gseq") && i + 1 < argc) {
            from_gseq = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--replay") && i + 1 < argc) {
            replay = argv[++i];
        } else if (!strcmp(a, "--server-key") && i + 1 < argc) {
            server_key = argv[++i];
        } else if (!strcmp(a, "--cert") && i + 1 < argc) {
            cert = argv[++i];
        } else if (!strcmp(a, "--metrics") && i + 1 < argc) {
            metrics = argv[++i];
        } else if (!strcmp(a, "--metrics-label") && i + 1 < argc && strchr(argv[i + 1], '=')) {
            char *eq = strchr(argv[++i], '=');
            *eq = '\0'; /* NAME=VALUE */
            metric_labels[nlabels++] = argv[i];
            metric_labels[nlabels++] = eq + 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] == '-') {
            usage(stderr);
            return 2;
        } else {
            topics[ntopics++] = a;
        }
    }
    if (nend == 0)
        endpoints[nend++] = "tcp://127.0.0.1:5556";
    if (from_gseq && nend > 1) {
        fprintf(stderr, "dftail: --from-gseq takes one --endpoint\n");
        return 2;
    }
    dfc_stats_t zero = {0};
    if (nlabels && dfc_stats_prometheus(&zero, metric_labels, NULL, 0) == 0) {
        fprintf(stderr, "dftail: invalid --metrics-label (a name is [a-zA-Z_][a-zA-Z0-9_]*, "
                        "once; a value is UTF-8)\n");
        free(endpoints);
        free(topics);
        free(metric_labels);
        return 2;
    }
    dfc_curve_t curve;
    char err[512];
    if (dfc_curve_load(&curve, server_key, cert, err, sizeof err) != DFC_OK) {
        /* err names the library's options (server_key, cert) */
        fprintf(stderr, "dftail: invalid --server-key/--cert: %s\n", err);
        free(endpoints);
        free(topics);
        free(metric_labels);
        return 2;
    }

    metrics_http_t *http = NULL;
    if (metrics) {
        http = metrics_http_new(metrics, render_metrics, NULL, err, sizeof err);
        if (!http) {
            fprintf(stderr, "dftail: %s\n", err);
            dfc_curve_wipe(&curve);
            free(endpoints);
            free(topics);
            free(metric_labels);
            return 2;
        }
        /* the port chosen for :0 is in this line (tests read it) */
        fprintf(stderr, "dftail: metrics on port %d: GET /metrics\n", metrics_http_port(http));
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    void *ctx = zmq_ctx_new();
    void *sub = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sub) {
        fprintf(stderr, "dftail: %s\n", zmq_strerror(errno));
        return 1;
    }
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    sub_watch_t watch = {sub, NULL, endpoints, NULL, nend};
    if (curve.on) {
        watch.hs = calloc(nend, sizeof *watch.hs);
        if (!watch.hs || dfc_curve_apply(&curve, sub) != 0) {
            fprintf(stderr, "dftail: CURVE: %s\n", watch.hs ? zmq_strerror(errno) : "out of memory");
            dfc_curve_wipe(&curve);
            return 1;
        }
        watch.mon = dfc_monitor_open(ctx, sub, DFC_HS_EVENTS | ZMQ_EVENT_CONNECT_RETRIED);
    }
    /* No ZMQ_MAXMSGSIZE: libzmq 4.3 drops an oversize sender for good (no
       reconnect), and a debugging tool should rather show what comes. */
    /* subscribe before connecting, so nothing is missed once connected */
    if (ntopics == 0)
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    for (size_t i = 0; i < ntopics; i++)
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i]));
    /* the heartbeat names the replay endpoint */
    if (ntopics && (heartbeats || (from_gseq && !replay)))
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "_hb", 3);
    for (size_t i = 0; i < nend; i++) {
        if (zmq_connect(sub, endpoints[i]) != 0) {
            fprintf(stderr, "dftail: cannot connect %s: %s\n", endpoints[i], zmq_strerror(errno));
            zmq_close(sub);
            zmq_ctx_term(ctx);
            return 1;
        }
    }

    line_t line = {0};
    long long printed = 0;
    int rc = 0;
    replayed_t done = {"", 0, 0};
    char learnt[1024] = "";
    if (from_gseq && !replay) {
        /* wait for a heartbeat; what comes live before it is covered by the
           replay, which runs to the journal's head */
        int64_t end = dfc_mono_ms() + (timeout >= 0 ? timeout : 10000);
        while (!interrupted && !learnt[0] && dfc_mono_ms() < end) {
            if (watch_poll(&watch, 200) <= 0)
                continue;
            zmq_msg_t parts[2];
            size_t np, total;
            while (!learnt[0] && dfc_msg_read(sub, parts, &np, &total) == 1) {
                TAIL_ADD(received); /* dropped here: the replay that follows brings them */
                if (np == 2 && dfc_msg_is(&parts[0], "_hb")) {
                    TAIL_ADD(reserved);
                    TAIL_ADD(heartbeats);
                    dfc_doc_t *doc = NULL;
                    if (dfc_doc_parse(zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), &doc) ==
                        DFC_OK) {
                        size_t rl = 0;
                        const char *r =
                            dfc_value_str(dfc_value_find(dfc_doc_root(doc), "replay"), &rl);
                        char named[1024] = "";
                        if (r && rl > 0 && rl < sizeof named && !memchr(r, '\0', rl))
                            memcpy(named, r, rl);
                        /* the library's rule: a forged heartbeat must not send us to
                           another machine (dfc_config_t.replay_any_host) */
                        if (!named[0]) {
                            snprintf(learnt, sizeof learnt, "-");
                        } else if (dfc_replay_advert(endpoints[0], named, false, learnt,
                                                     sizeof learnt) != 0) {
                            fprintf(stderr,
                                    "dftail: the heartbeat names replay endpoint %s, not on "
                                    "the bridge's host: not used (give --replay)\n",
                                    named);
                            snprintf(learnt, sizeof learnt, "-");
                        }
                        dfc_doc_destroy(&doc);
                    }
                }
                zmq_msg_close(&parts[0]);
                zmq_msg_close(&parts[1]);
            }
        }
        if (!learnt[0] || strcmp(learnt, "-") == 0) {
            fprintf(stderr, "dftail: %s: no replay endpoint (give --replay)\n",
                    learnt[0] ? "the bridge has no replay" : "no heartbeat");
            rc = 1;
        }
        replay = learnt;
    }
    if (from_gseq && rc == 0)
        rc = replay_phase(ctx, replay, from_gseq, topics, ntopics, &line, &printed, count, &done,
                          &curve);
    int64_t last = dfc_mono_ms();
    while (rc == 0 && !interrupted && (count < 0 || printed < count)) {
        long wait = 500;
        if (timeout >= 0) {
            int64_t left = last + timeout - dfc_mono_ms();
            if (left <= 0) {
                fprintf(stderr, "dftail: idle for %lld ms, exiting\n", timeout);
                break;
            }
            if (left < wait)
                wait = (long)left;
        }
        int n = watch_poll(&watch, wait);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "dftail: zmq_poll: %s\n", zmq_strerror(errno));
            rc = 1;
            break;
        }
        if (n == 0)
            continue;
        zmq_msg_t parts[2];
        size_t nparts = 0, total = 0;
        int got = dfc_msg_read(sub, parts, &nparts, &total);
        if (got < 0 && errno != EINTR) {
            fprintf(stderr, "dftail: zmq_msg_recv: %s\n", zmq_strerror(errno));
            rc = 1;
            break;
        }
        if (got <= 0)
            continue;
        TAIL_ADD(received);
        if (nparts >= 1 && zmq_msg_size(&parts[0]) > 0 &&
            ((const char *)zmq_msg_data(&parts[0]))[0] == '_')
            TAIL_ADD(reserved);
        if (nparts >= 1 && dfc_msg_is(&parts[0], "_hb"))
            TAIL_ADD(heartbeats);
        /* ZeroMQ matches prefixes: keep only the exact topics asked for */
        bool hb = nparts >= 1 && dfc_msg_is(&parts[0], "_hb");
        /* replayed already: the live copy queued meanwhile is skipped */
        uint64_t g = 0;
        char epoch[DFC_EPOCH_BYTES];
        size_t el = 0;
        bool seen = done.last && nparts == 2 && !hb &&
                    envelope_position(&parts[1], &g, epoch, sizeof epoch, &el) == 0 &&
                    el == done.epoch_len && memcmp(epoch, done.epoch, el) == 0 && g <= done.last;
        if (seen || (hb && !heartbeats) ||
            (!hb && ntopics > 0 && !topic_wanted(&parts[0], topics, ntopics))) {
            zmq_msg_close(&parts[0]);
            zmq_msg_close(&parts[1]);
            continue;
        }
        last = dfc_mono_ms();
        /* the library's frame rule, so that dftail shows what a consumer gets */
        dfc_msg_status_t st = dfc_frames_check(nparts, zmq_msg_size(&parts[0]));
        if (st == DFC_MSG_OK && ((const char *)zmq_msg_data(&parts[0]))[0] == '_')
            st = format_reserved(&parts[0], &parts[1], &line);
        else if (st == DFC_MSG_OK)
            st = format_message(&parts[0], &parts[1], &line);
        if (st == DFC_MSG_OK) {
            fputs(line.p, stdout);
            fflush(stdout);
            printed++;
        } else {
            fprintf(stderr, "dftail: dropped a message (%zu frames, %zu bytes): %s\n", nparts,
                    total, dfc_msg_status_str(st));
            count_drop(st);
        }
        zmq_msg_close(&parts[0]);
        zmq_msg_close(&parts[1]);
    }
    metrics_http_destroy(&http);
    free(metric_labels);
    free(line.p);
    free(endpoints);
    free(topics);
    free(watch.hs);
    dfc_curve_wipe(&curve);
    dfc_monitor_close(sub, &watch.mon);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
