/*  c_worker: the C worker of the polyglot live test (live_test.py). One listener on
    libdfconsumer with the default filter (the BDK rule) and every callback; each callback
    prints one line "E <gseq> <callback> <canonical event>" (schemas/conformance/README.md,
    "Canonical JSON of an event") on stdout. The Python (bdk_worker.py) and Node (worker.js)
    workers print the same lines for the same events. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

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

/*  A growable byte buffer; a failed allocation sets oom and later writes are ignored. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} buf_t;

static void
buf_add(buf_t *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_str(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void
buf_quoted(buf_t *b, const char *s, size_t n)
{
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_add(b, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, &s[i], 1);
        }
    }
    buf_add(b, "\"", 1);
}

static int
same_key(const dfc_value_t *a, const dfc_value_t *b)
{
    size_t la, lb;
    const char *sa = dfc_value_str(a, &la), *sb = dfc_value_str(b, &lb);
    return sa && sb && la == lb && memcmp(sa, sb, la) == 0;
}

/*  The canonical JSON of v: maps in wire order, a repeated key once at its first position
    with its last value; ints exact; floats "f64:<bits>"; bin "bin:<hex>". */
static void
canonical(buf_t *b, const dfc_value_t *v)
{
    char num[48];
    size_t n;
    switch (dfc_value_type(v)) {
    case DFC_NIL:
    case DFC_EXT:
        buf_str(b, "null");
        break;
    case DFC_BOOL:
        buf_str(b, dfc_value_bool(v) ? "true" : "false");
        break;
    case DFC_INT: {
        int64_t i = 0;
        dfc_value_int64(v, &i);
        snprintf(num, sizeof num, "%" PRId64, i);
        buf_str(b, num);
        break;
    }
    case DFC_UINT: {
        uint64_t u = 0;
        dfc_value_uint64(v, &u);
        snprintf(num, sizeof num, "%" PRIu64, u);
        buf_str(b, num);
        break;
    }
    case DFC_DOUBLE: {
        double d = dfc_value_double(v);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        snprintf(num, sizeof num, "\"f64:%016" PRIx64 "\"", bits);
        buf_str(b, num);
        break;
    }
    case DFC_STR: {
        const char *s = dfc_value_str(v, &n);
        buf_quoted(b, s, n);
        break;
    }
    case DFC_BIN: {
        const unsigned char *p = dfc_value_bin(v, &n, NULL);
        buf_str(b, "\"bin:");
        for (size_t i = 0; i < n; i++) {
            snprintf(num, sizeof num, "%02x", p[i]);
            buf_add(b, num, 2);
        }
        buf_str(b, "\"");
        break;
    }
    case DFC_ARRAY:
        buf_str(b, "[");
        for (size_t i = 0; i < dfc_value_size(v); i++) {
            if (i)
                buf_str(b, ",");
            canonical(b, dfc_value_at(v, i));
        }
        buf_str(b, "]");
        break;
    case DFC_MAP: {
        size_t count = dfc_value_size(v);
        int first = 1;
        buf_str(b, "{");
        for (size_t i = 0; i < count; i++) {
            const dfc_value_t *k = dfc_value_key_at(v, i);
            size_t j, last = i;
            for (j = 0; j < i && !same_key(k, dfc_value_key_at(v, j)); j++)
                ;
            if (j < i)
                continue; /* written at its first occurrence */
            for (j = i + 1; j < count; j++)
                if (same_key(k, dfc_value_key_at(v, j)))
                    last = j;
            if (!first)
                buf_str(b, ",");
            first = 0;
            const char *s = dfc_value_str(k, &n);
            buf_quoted(b, s, n);
            buf_str(b, ":");
            canonical(b, dfc_value_item_at(v, last));
        }
        buf_str(b, "}");
        break;
    }
    }
}

static void
emit(const dfc_event_t *ev, const char *callback)
{
    buf_t b = {0};
    char head[96];
    snprintf(head, sizeof head, "E %" PRIu64 " %s ", dfc_event_gseq(ev), callback);
    buf_str(&b, head);
    canonical(&b, dfc_event_value(ev));
    buf_str(&b, "\n");
    pthread_mutex_lock(&out_lock);
    if (b.oom)
        fprintf(stderr, "c_worker: out of memory printing gseq %" PRIu64 "\n",
                dfc_event_gseq(ev));
    else
        fwrite(b.p, 1, b.len, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(b.p);
}

/*  One callback per event type, each printing its own C name. */
#define CALLBACKS(X)                                                                               \
    X(on_message_sent, dfc_message_sent_t)                                                         \
    X(on_shared_post, dfc_shared_post_t)                                                           \
    X(on_instant_message_created, dfc_instant_message_created_t)                                   \
    X(on_room_created, dfc_room_created_t)                                                         \
    X(on_room_updated, dfc_room_updated_t)                                                         \
    X(on_room_deactivated, dfc_room_deactivated_t)                                                 \
    X(on_room_reactivated, dfc_room_reactivated_t)                                                 \
    X(on_user_requested_to_join_room, dfc_user_requested_to_join_room_t)                           \
    X(on_user_joined_room, dfc_user_joined_room_t)                                                 \
    X(on_user_left_room, dfc_user_left_room_t)                                                     \
    X(on_room_member_promoted_to_owner, dfc_room_member_promoted_to_owner_t)                       \
    X(on_room_member_demoted_from_owner, dfc_room_member_demoted_from_owner_t)                     \
    X(on_connection_requested, dfc_connection_requested_t)                                         \
    X(on_connection_accepted, dfc_connection_accepted_t)                                           \
    X(on_message_suppressed, dfc_message_suppressed_t)                                             \
    X(on_symphony_elements_action, dfc_symphony_elements_action_t)                                 \
    X(on_generic_system_event, dfc_generic_system_event_t)

#define DEFINE_CB(name, T)                                                                         \
    static void cb_##name(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *i, const T *p) \
    {                                                                                              \
        emit(ev, #name);                                                                           \
    }
CALLBACKS(DEFINE_CB)

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
    buf_t b = {0};
    buf_str(&b, "{\"stats\":{");
    int first = 1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        if (!first)
            buf_str(&b, ",");
        first = 0;
        buf_quoted(&b, line, strlen(line));
        buf_str(&b, ":");
        buf_str(&b, colon + 1);
    }
    buf_str(&b, "}}\n");
    pthread_mutex_lock(&out_lock);
    if (!b.oom)
        fwrite(b.p, 1, b.len, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(b.p);
}

static void
usage(void)
{
    fprintf(stderr, "usage: c_worker --endpoint E [--replay R] [--from-gseq N]\n"
                    "                [--checkpoint-dir D --name N]\n");
}

int
main(int argc, char **argv)
{
    const char *endpoint = NULL, *replay = NULL;
    dfc_config_t cfg = {0};
    for (int i = 1; i < argc; i++) {
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
        else {
            usage();
            return 2;
        }
        i++;
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
    CALLBACKS(SET_CB)
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
