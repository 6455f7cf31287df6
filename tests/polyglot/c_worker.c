/*  c_worker: the C worker of the polyglot live test (live_test.py). One listener on
    libdfconsumer with the default filter (the BDK rule) and every callback; each callback
    prints one line "E <gseq> <callback> <canonical event>" (schemas/conformance/README.md,
    "Canonical JSON of an event", printed by schemas/conformance/canonical.c as the C
    conformance adapter does) on stdout. The Python (bdk_worker.py) and Node (worker.js)
    workers print the same lines for the same events. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "canonical.h" /* schemas/conformance: the one C printer */
#include "dfconsumer.h"
#include "dfc_tsan.h" /* libzmq under ThreadSanitizer (empty otherwise) */

static dfc_loop_t *the_loop;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void
on_signal(int sig)
{
    (void)sig;
    dfc_loop_stop(the_loop); /* async-signal-safe */
}

static void
emit(const dfc_event_t *ev, const char *callback)
{
    canonical_buf_t b = {0};
    char head[96];
    snprintf(head, sizeof head, "E %" PRIu64 " %s ", dfc_event_gseq(ev), callback);
    canonical_puts(&b, head);
    canonical_value(&b, dfc_event_value(ev));
    canonical_puts(&b, "\n");
    pthread_mutex_lock(&out_lock);
    if (b.oom)
        fprintf(stderr, "c_worker: out of memory printing gseq %" PRIu64 "\n", dfc_event_gseq(ev));
    else
        fwrite(b.p, 1, b.n, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(b.p);
}

/*  One callback per event type (canonical.h), each printing its own C name. */
#define DEFINE_CB(name, T)                                                                         \
    static void cb_##name(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const T *p)  \
    {                                                                                              \
        emit(ev, #name);                                                                           \
    }
CANONICAL_CALLBACKS(DEFINE_CB)

static void
cb_on_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i)
{
    emit(ev, "on_unknown");
}

/*  The counters as one JSON line {"stats":{name:value,...}}. */
static void
print_stats(void)
{
    dfc_stats_t st;
    char text[4096];
    dfc_loop_stats(the_loop, &st);
    dfc_stats_format(&st, text, sizeof text);
    canonical_buf_t b = {0};
    canonical_puts(&b, "{\"stats\":{");
    int first = 1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        if (!first)
            canonical_puts(&b, ",");
        first = 0;
        canonical_str(&b, line, strlen(line));
        canonical_puts(&b, ":");
        canonical_puts(&b, colon + 1);
    }
    canonical_puts(&b, "}}\n");
    pthread_mutex_lock(&out_lock);
    if (!b.oom)
        fwrite(b.p, 1, b.n, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(b.p);
}

static void
usage(void)
{
    fprintf(stderr, "usage: c_worker --endpoint E [--replay R] [--from-gseq N]\n"
                    "                [--checkpoint-dir D --name N] [--server-key K --cert F]\n");
}

int
main(int argc, char **argv)
{
    const char *endpoint = NULL, *replay = NULL;
    dfc_config_t cfg = {0};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--endpoint"))
            endpoint = v;
        else if (!strcmp(a, "--replay"))
            replay = v;
        else if (!strcmp(a, "--from-gseq"))
            cfg.from_gseq = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--checkpoint-dir"))
            cfg.checkpoint_dir = v;
        else if (!strcmp(a, "--name"))
            cfg.name = v;
        else if (!strcmp(a, "--server-key")) /* CURVE (curve_live_test.py) */
            cfg.server_key = v;
        else if (!strcmp(a, "--cert"))
            cfg.cert = v;
        else {
            usage();
            return 2;
        }
    }
    if (!endpoint) {
        usage();
        return 2;
    }
    the_loop = dfc_loop_new(&cfg);
    if (!the_loop)
        return 1;
    dfc_listener_t l = {.name = "polyglot", .on_unknown = cb_on_unknown};
#define SET_CB(name, T) l.name = cb_##name;
    CANONICAL_CALLBACKS(SET_CB)
    if (dfc_loop_connect_replay(the_loop, endpoint, replay) != DFC_OK ||
        dfc_loop_subscribe(the_loop, &l) != DFC_OK) {
        dfc_loop_destroy(&the_loop);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_mutex_lock(&out_lock);
    fputs("{\"ready\":true}\n", stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    int rc = dfc_loop_start(the_loop);
    print_stats();
    dfc_loop_destroy(&the_loop);
    return rc == DFC_OK ? 0 : 1;
}
