/*  conformance_adapter_c: the C side of the conformance suite. Runs
    libdfconsumer as CONFIG.json says and prints, one JSON line each, every
    callback it runs (with the event in the canonical JSON of README.md) and,
    after SIGTERM, the library's counters. The protocol is README.md's. */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canonical.h"
#include "dfconsumer.h"
#include "dfc_tsan.h" /* TSan builds: libzmq is not instrumented */

/* ------------------------------------------------------------ the output */

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/*  One line on stdout, whole and flushed (workers print concurrently). On
    allocation failure the adapter exits (it is a test program: a half-printed
    line would only hide the failure). */
static void
emit(const canonical_buf_t *b)
{
    if (b->oom) {
        fprintf(stderr, "adapter_c: out of memory\n");
        _exit(3);
    }
    pthread_mutex_lock(&out_mu);
    fwrite(b->p, 1, b->n, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

/* ------------------------------------------------------------ listeners */

typedef struct {
    char id[64];
} lctx_t;

static uint64_t block_gseq; /* 0: none; set before start, read by workers */

/*  The event's id as the canonical map holds it: the last "id" key. */
static const dfc_value_t *
event_id(const dfc_value_t *event)
{
    const dfc_value_t *id = NULL;
    for (size_t i = 0; i < dfc_value_size(event); i++) {
        size_t len;
        const char *k = dfc_value_str(dfc_value_key_at(event, i), &len);
        if (k && len == 2 && memcmp(k, "id", 2) == 0)
            id = dfc_value_item_at(event, i);
    }
    return dfc_value_type(id) == DFC_STR ? id : NULL;
}

static void
handled(void *ctx, const dfc_event_t *ev, const char *callback)
{
    const lctx_t *l = ctx;
    canonical_buf_t b = {0};
    canonical_puts(&b, "{\"handled\":{\"listener\":");
    canonical_str(&b, l->id, strlen(l->id));
    canonical_printf(&b, ",\"callback\":\"%s\",\"topic\":", callback);
    canonical_str(&b, dfc_event_topic(ev), strlen(dfc_event_topic(ev)));
    canonical_printf(&b, ",\"gseq\":%" PRIu64 ",\"epoch\":", dfc_event_gseq(ev));
    canonical_str(&b, dfc_event_epoch(ev), strlen(dfc_event_epoch(ev)));
    canonical_puts(&b, ",\"id\":");
    const dfc_value_t *id = event_id(dfc_event_value(ev));
    if (id)
        canonical_value(&b, id);
    else
        canonical_puts(&b, "null");
    canonical_puts(&b, ",\"context\":");
    const char *c = dfc_listener_context();
    canonical_str(&b, c, strlen(c));
    canonical_puts(&b, ",\"event\":");
    canonical_value(&b, dfc_event_value(ev));
    canonical_puts(&b, "}}\n");
    emit(&b);
    free(b.p);
    if (block_gseq && dfc_event_gseq(ev) == block_gseq) {
        canonical_buf_t k = {0};
        canonical_printf(&k, "{\"blocked\":%" PRIu64 "}\n", block_gseq);
        emit(&k);
        free(k.p);
        for (;;)
            pause(); /* the runner kills this process here */
    }
}

/*  The 17 typed callbacks (canonical.h), one function each (each has its own
    payload type), all printing through handled(). */
#define CB(name, payload_t)                                                                        \
    static void cb_##name(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in,             \
                          const payload_t *p)                                                      \
    {                                                                                              \
        (void)in, (void)p;                                                                         \
        handled(ctx, ev, #name);                                                                   \
    }
CANONICAL_CALLBACKS(CB)
#undef CB

static void
cb_on_unknown(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in)
{
    (void)in;
    handled(ctx, ev, "on_unknown");
}

static bool
accept_all(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in, int64_t bot)
{
    (void)ctx, (void)ev, (void)in, (void)bot;
    return true;
}

/* --------------------------------------------------------------- config */

/*  Sets the dfc_config_t fields CONFIG.json's "options" names; unknown keys
    are an error (a scenario asking for a setting the adapter ignores would
    test nothing). Strings stay owned by root. */
static int
set_options(dfc_config_t *cfg, json_t *opts)
{
    const char *key;
    json_t *val;
    json_object_foreach(opts, key, val)
    {
        json_int_t i = json_integer_value(val);
        if (strcmp(key, "workers") == 0)
            cfg->workers = (int)i;
        else if (strcmp(key, "rcvhwm") == 0)
            cfg->rcvhwm = (int)i;
        else if (strcmp(key, "max_frame") == 0)
            cfg->max_frame = (size_t)i;
        else if (strcmp(key, "queue_size") == 0)
            cfg->queue_size = (size_t)i;
        else if (strcmp(key, "ordering") == 0)
            cfg->ordering =
                strcmp(json_string_value(val) ? json_string_value(val) : "", "stream") == 0
                    ? DFC_ORDER_STREAM
                    : DFC_ORDER_CONCURRENT;
        else if (strcmp(key, "checkpoint_dir") == 0)
            cfg->checkpoint_dir = json_string_value(val);
        else if (strcmp(key, "name") == 0)
            cfg->name = json_string_value(val);
        else if (strcmp(key, "checkpoint_ms") == 0)
            cfg->checkpoint_ms = (int)i;
        else if (strcmp(key, "group") == 0)
            cfg->group = json_string_value(val);
        else if (strcmp(key, "member") == 0)
            cfg->member = (int)i;
        else if (strcmp(key, "members") == 0)
            cfg->members = (int)i;
        else if (strcmp(key, "from_gseq") == 0)
            cfg->from_gseq = (uint64_t)i;
        else if (strcmp(key, "stale_ms") == 0)
            cfg->stale_ms = (int)i;
        else if (strcmp(key, "replay_timeout_ms") == 0)
            cfg->replay_timeout_ms = (int)i;
        else if (strcmp(key, "dedupe_window") == 0)
            cfg->dedupe_window = (int)i;
        else if (strcmp(key, "max_held") == 0)
            cfg->max_held = (size_t)i;
        else if (strcmp(key, "max_held_bytes") == 0)
            cfg->max_held_bytes = (size_t)i;
        else if (strcmp(key, "replay_any_host") == 0)
            cfg->replay_any_host = json_is_true(val);
        else {
            fprintf(stderr, "adapter_c: unknown option %s\n", key);
            return -1;
        }
    }
    return 0;
}

static dfc_loop_t *the_loop;

static void
on_term(int sig)
{
    (void)sig;
    dfc_loop_stop(the_loop);
}

/*  {"stats":{...}} from dfc_stats_format's "name:value" lines: every counter
    of dfc_stats_t, under its C name, without a second list of them here. */
static void
print_stats(dfc_loop_t *loop)
{
    dfc_stats_t st;
    dfc_loop_stats(loop, &st);
    size_t need = dfc_stats_format(&st, NULL, 0) + 1;
    char *txt = malloc(need);
    if (!txt)
        _exit(3);
    dfc_stats_format(&st, txt, need);
    canonical_buf_t b = {0};
    canonical_puts(&b, "{\"stats\":{");
    bool comma = false;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        canonical_printf(&b, "%s\"%s\":%s", comma ? "," : "", line, colon + 1);
        comma = true;
    }
    canonical_puts(&b, "}}\n");
    emit(&b);
    free(b.p);
    free(txt);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG.json\n", argv[0]);
        return 2;
    }
    json_error_t jerr;
    json_t *root = json_load_file(argv[1], 0, &jerr);
    if (!json_is_object(root)) {
        fprintf(stderr, "adapter_c: %s: %s\n", argv[1], jerr.text);
        return 2;
    }
    dfc_log_set_level(getenv("CONFORMANCE_DEBUG") ? DFC_LOG_DEBUG : DFC_LOG_INFO);
    signal(SIGPIPE, SIG_IGN);

    dfc_config_t cfg = {0};
    json_t *opts = json_object_get(root, "options");
    if (opts && set_options(&cfg, opts) != 0)
        return 2;
    block_gseq = (uint64_t)json_integer_value(json_object_get(root, "block_gseq"));
    the_loop = dfc_loop_new(&cfg);
    if (!the_loop)
        return 2;

    json_t *ls = json_object_get(root, "listeners");
    size_t nl = json_array_size(ls);
    dfc_listener_t *lst = calloc(nl ? nl : 1, sizeof *lst);
    lctx_t *lctx = calloc(nl ? nl : 1, sizeof *lctx);
    if (!lst || !lctx)
        return 3;
    for (size_t i = 0; i < nl; i++) {
        json_t *l = json_array_get(ls, i);
        const char *id = json_string_value(json_object_get(l, "id"));
        const char *accept = json_string_value(json_object_get(l, "accept"));
        snprintf(lctx[i].id, sizeof lctx[i].id, "%s", id ? id : "");
        lst[i] = (dfc_listener_t){.name = lctx[i].id, .ctx = &lctx[i], .on_unknown = cb_on_unknown};
#define SET(name, payload_t) lst[i].name = cb_##name;
        CANONICAL_CALLBACKS(SET)
#undef SET
        if (accept && strcmp(accept, "all") == 0)
            lst[i].is_accepting_event = accept_all;
        if (dfc_loop_subscribe(the_loop, &lst[i]) != DFC_OK)
            return 2;
    }
    json_t *bridges = json_object_get(root, "bridges");
    for (size_t i = 0; i < json_array_size(bridges); i++) {
        json_t *br = json_array_get(bridges, i);
        const char *ep = json_string_value(json_object_get(br, "endpoint"));
        const char *rep = json_string_value(json_object_get(br, "replay"));
        if (!ep || dfc_loop_connect_replay(the_loop, ep, rep) != DFC_OK)
            return 2;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    canonical_buf_t ready = {0};
    canonical_puts(&ready, "{\"ready\":true}\n");
    emit(&ready);
    free(ready.p);

    int rc = dfc_loop_start(the_loop);
    if (rc != DFC_OK)
        fprintf(stderr, "adapter_c: dfc_loop_start: %s\n", dfc_strerror(rc));
    print_stats(the_loop);
    dfc_loop_destroy(&the_loop);
    free(lst);
    free(lctx);
    json_decref(root);
    return rc == DFC_OK ? 0 : 1;
}
