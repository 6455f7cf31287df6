/*  conformance_adapter_c: the C side of the conformance suite. Runs
    libdfconsumer as CONFIG.json says and prints, one JSON line each, every
    callback it runs (with the event in the canonical JSON of README.md) and,
    after SIGTERM, the library's counters. The protocol is README.md's. */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dfconsumer.h"
#include "dfc_tsan.h" /* TSan builds: libzmq is not instrumented */

/* ------------------------------------------------------------ the output */

/*  A growing byte buffer; on allocation failure the adapter exits (it is a
    test program: a half-printed line would only hide the failure). */
typedef struct {
    char *p;
    size_t n, cap;
} buf_t;

static void
buf_put(buf_t *b, const void *data, size_t len)
{
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "adapter_c: out of memory\n");
            _exit(3);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void
buf_puts(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
buf_printf(buf_t *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/*  A JSON string by the canonical rule: '"' and '\' escaped, bytes below
    0x20 as \u00xx, every other byte as it is. */
static void
put_str(buf_t *b, const char *s, size_t len)
{
    buf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            buf_put(b, e, 2);
        } else {
            buf_printf(b, "\\u%04x", c);
        }
    }
    buf_put(b, s + run, len - run);
    buf_put(b, "\"", 1);
}

static void
put_hex(buf_t *b, const char *prefix, const unsigned char *p, size_t len)
{
    static const char hx[] = "0123456789abcdef";
    buf_puts(b, prefix);
    for (size_t i = 0; i < len; i++) {
        char two[2] = {hx[p[i] >> 4], hx[p[i] & 15]};
        buf_put(b, two, 2);
    }
}

static void put_value(buf_t *b, const dfc_value_t *v);

static bool
key_eq(const dfc_value_t *a, const dfc_value_t *b)
{
    size_t la, lb;
    const char *sa = dfc_value_str(a, &la), *sb = dfc_value_str(b, &lb);
    return sa && sb && la == lb && memcmp(sa, sb, la) == 0;
}

/*  A map by the duplicate-key rule: each key once, at its first position,
    with the value of its last occurrence. first[i] is the first pair with
    i's key, last[j] (for a first pair j) the last; an open-addressing table
    of the keys finds them in linear time (a map can have 65536 pairs). */
static void
put_map(buf_t *b, const dfc_value_t *v)
{
    size_t n = dfc_value_size(v), cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    size_t *slot = malloc(cap * sizeof *slot), *last = malloc((n ? n : 1) * sizeof *last);
    bool *is_first = malloc((n ? n : 1) * sizeof *is_first);
    if (!slot || !last || !is_first) {
        fprintf(stderr, "adapter_c: out of memory\n");
        _exit(3);
    }
    for (size_t s = 0; s < cap; s++)
        slot[s] = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *k = dfc_value_str(dfc_value_key_at(v, i), &len);
        size_t s = (size_t)dfc_fnv1a64(k ? k : "", k ? len : 0) & (cap - 1);
        while (slot[s] != SIZE_MAX && !key_eq(dfc_value_key_at(v, slot[s]), dfc_value_key_at(v, i)))
            s = (s + 1) & (cap - 1);
        is_first[i] = slot[s] == SIZE_MAX;
        if (is_first[i])
            slot[s] = i;
        last[slot[s]] = i;
    }
    buf_put(b, "{", 1);
    bool comma = false;
    for (size_t i = 0; i < n; i++) {
        if (!is_first[i])
            continue;
        if (comma)
            buf_put(b, ",", 1);
        comma = true;
        put_value(b, dfc_value_key_at(v, i));
        buf_put(b, ":", 1);
        put_value(b, dfc_value_item_at(v, last[i]));
    }
    buf_put(b, "}", 1);
    free(slot);
    free(last);
    free(is_first);
}

/*  The canonical JSON of README.md. */
static void
put_value(buf_t *b, const dfc_value_t *v)
{
    size_t len = 0;
    switch (dfc_value_type(v)) {
    case DFC_NIL:
        buf_puts(b, "null");
        break;
    case DFC_BOOL:
        buf_puts(b, dfc_value_bool(v) ? "true" : "false");
        break;
    case DFC_INT: {
        int64_t i = 0;
        dfc_value_int64(v, &i);
        buf_printf(b, "%" PRId64, i);
        break;
    }
    case DFC_UINT: {
        uint64_t u = 0;
        dfc_value_uint64(v, &u);
        buf_printf(b, "%" PRIu64, u);
        break;
    }
    case DFC_DOUBLE: {
        double d = dfc_value_double(v);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        buf_printf(b, "\"f64:%016" PRIx64 "\"", bits);
        break;
    }
    case DFC_STR: {
        const char *s = dfc_value_str(v, &len);
        put_str(b, s, len);
        break;
    }
    case DFC_BIN: {
        const void *p = dfc_value_bin(v, &len, NULL);
        put_hex(b, "\"bin:", p, len);
        buf_put(b, "\"", 1);
        break;
    }
    case DFC_EXT: {
        int8_t t = 0;
        const void *p = dfc_value_bin(v, &len, &t);
        char pre[16];
        snprintf(pre, sizeof pre, "\"ext:%d:", t);
        put_hex(b, pre, p, len);
        buf_put(b, "\"", 1);
        break;
    }
    case DFC_ARRAY:
        buf_put(b, "[", 1);
        for (size_t i = 0; i < dfc_value_size(v); i++) {
            if (i)
                buf_put(b, ",", 1);
            put_value(b, dfc_value_at(v, i));
        }
        buf_put(b, "]", 1);
        break;
    case DFC_MAP:
        put_map(b, v);
        break;
    }
}

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/*  One line on stdout, whole and flushed (workers print concurrently). */
static void
emit(const buf_t *b)
{
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
    buf_t b = {0};
    buf_puts(&b, "{\"handled\":{\"listener\":");
    put_str(&b, l->id, strlen(l->id));
    buf_printf(&b, ",\"callback\":\"%s\",\"topic\":", callback);
    put_str(&b, dfc_event_topic(ev), strlen(dfc_event_topic(ev)));
    buf_printf(&b, ",\"gseq\":%" PRIu64 ",\"epoch\":", dfc_event_gseq(ev));
    put_str(&b, dfc_event_epoch(ev), strlen(dfc_event_epoch(ev)));
    buf_puts(&b, ",\"id\":");
    const dfc_value_t *id = event_id(dfc_event_value(ev));
    if (id)
        put_value(&b, id);
    else
        buf_puts(&b, "null");
    buf_puts(&b, ",\"context\":");
    const char *c = dfc_listener_context();
    put_str(&b, c, strlen(c));
    buf_puts(&b, ",\"event\":");
    put_value(&b, dfc_event_value(ev));
    buf_puts(&b, "}}\n");
    emit(&b);
    free(b.p);
    if (block_gseq && dfc_event_gseq(ev) == block_gseq) {
        buf_t k = {0};
        buf_printf(&k, "{\"blocked\":%" PRIu64 "}\n", block_gseq);
        emit(&k);
        free(k.p);
        for (;;)
            pause(); /* the runner kills this process here */
    }
}

/*  The 17 typed callbacks, one function each (each has its own payload
    type), all printing through handled(). */
#define DFC_TYPES(X)                                                                               \
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

#define CB(name, payload_t)                                                                        \
    static void cb_##name(void *ctx, const dfc_event_t *ev, const dfc_initiator_t *in,             \
                          const payload_t *p)                                                      \
    {                                                                                              \
        (void)in, (void)p;                                                                         \
        handled(ctx, ev, #name);                                                                   \
    }
DFC_TYPES(CB)
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
    buf_t b = {0};
    buf_puts(&b, "{\"stats\":{");
    bool comma = false;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        buf_printf(&b, "%s\"%s\":%s", comma ? "," : "", line, colon + 1);
        comma = true;
    }
    buf_puts(&b, "}}\n");
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
        DFC_TYPES(SET)
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

    buf_t ready = {0};
    buf_puts(&ready, "{\"ready\":true}\n");
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
