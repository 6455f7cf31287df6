/*  dftail: subscribe to one or more dfbridge PUB endpoints and print every
    message as one JSON line (topic, envelope, event), for humans and tests.
    Malformed messages get a line on stderr and are skipped. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "dfc_internal.h"

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void
usage(FILE *out)
{
    fprintf(out, "usage: dftail [--endpoint E]... [--count N] [--timeout MS] [TOPIC...]\n"
                 "  --endpoint E  bridge PUB endpoint (repeatable; default tcp://127.0.0.1:5556)\n"
                 "  --count N     exit after printing N messages\n"
                 "  --timeout MS  exit after MS milliseconds without a message\n"
                 "  TOPIC         event types to print, matched exactly (all when none)\n");
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    if (!endpoints || !topics)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "--endpoint") || !strcmp(a, "-e")) && i + 1 < argc) {
            endpoints[nend++] = argv[++i];
        } else if (!strcmp(a, "--count") && i + 1 < argc) {
            count = strtoll(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            timeout = strtoll(argv[++i], NULL, 10);
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
    /* No ZMQ_MAXMSGSIZE: libzmq 4.3 drops an oversize sender for good (no
       reconnect), and a debugging tool should rather show what comes. */
    /* subscribe before connecting, so nothing is missed once connected */
    if (ntopics == 0)
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    for (size_t i = 0; i < ntopics; i++)
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i]));
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
    int64_t last = now_ms();
    int rc = 0;
    while (!interrupted && (count < 0 || printed < count)) {
        long wait = 500;
        if (timeout >= 0) {
            int64_t left = last + timeout - now_ms();
            if (left <= 0) {
                fprintf(stderr, "dftail: idle for %lld ms, exiting\n", timeout);
                break;
            }
            if (left < wait)
                wait = (long)left;
        }
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&item, 1, wait);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "dftail: zmq_poll: %s\n", zmq_strerror(errno));
            rc = 1;
            break;
        }
        if (n == 0)
            continue;
        /* one multipart message; frames beyond the second are only counted */
        zmq_msg_t parts[2];
        zmq_msg_init(&parts[0]);
        zmq_msg_init(&parts[1]);
        size_t nparts = 0, total = 0;
        int more = 1, err = 0;
        while (more) {
            zmq_msg_t tmp, *m = nparts < 2 ? &parts[nparts] : &tmp;
            if (m == &tmp)
                zmq_msg_init(&tmp);
            if (zmq_msg_recv(m, sub, nparts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                err = errno;
                if (m == &tmp)
                    zmq_msg_close(&tmp);
                break;
            }
            more = zmq_msg_more(m);
            total += zmq_msg_size(m);
            nparts++;
            if (m == &tmp)
                zmq_msg_close(&tmp);
        }
        /* ZeroMQ matches prefixes: keep only the exact topics asked for */
        if (err == 0 && ntopics > 0 && !topic_wanted(&parts[0], topics, ntopics)) {
            zmq_msg_close(&parts[0]);
            zmq_msg_close(&parts[1]);
            continue;
        }
        if (err == 0) {
            last = now_ms();
            dfc_msg_status_t st = DFC_MSG_BAD_FRAMES;
            if (nparts == 2 && zmq_msg_size(&parts[0]) > 0 &&
                ((const char *)zmq_msg_data(&parts[0]))[0] == '_')
                st = format_reserved(&parts[0], &parts[1], &line);
            else if (nparts == 2)
                st = format_message(&parts[0], &parts[1], &line);
            if (st == DFC_MSG_OK) {
                fputs(line.p, stdout);
                fflush(stdout);
                printed++;
            } else {
                fprintf(stderr, "dftail: dropped a message (%zu frames, %zu bytes): %s\n", nparts,
                        total, dfc_msg_status_str(st));
            }
        } else if (err != EAGAIN && err != EINTR) {
            fprintf(stderr, "dftail: zmq_msg_recv: %s\n", zmq_strerror(err));
            rc = 1;
        }
        zmq_msg_close(&parts[0]);
        zmq_msg_close(&parts[1]);
        if (rc)
            break;
    }
    free(line.p);
    free(endpoints);
    free(topics);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
