/*  bench_json_parsers: why the bridge parses with yajl into a token tape.
    Measures parse throughput of dfb_json (yajl tape), jansson, json-c and
    cJSON on realistic MESSAGESENT events of ~1, 10, 100 and 300 KB, the
    end-to-end JSON -> msgpack frame, and checks each parser's exactness on
    64-bit ids, key order, duplicate keys and \u0000.
    Usage: bench_json_parsers [seconds-per-cell, default 0.4] */
#include "dfb_transcode.h"

#include "json_parsers.h"

#include <cjson/cJSON.h>
#include <yajl/yajl_parse.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- events */

typedef struct {
    char *data;
    size_t len, cap;
} sb_t;

static void sb_add(sb_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_add(sb_t *sb, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(sb->data ? sb->data + sb->len : NULL, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            abort();
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        sb->cap = (sb->cap + (size_t)n + 1) * 2;
        sb->data = realloc(sb->data, sb->cap);
        if (!sb->data)
            abort();
    }
}

/*  A MESSAGESENT shaped like the agent's: `msg` bytes of PresentationML
    (escaped quotes, mentions, some non-ASCII), `attachments` entries and an
    EntityJSON `data` string of about `data` bytes (JSON inside a string,
    so every quote is escaped). */
static char *
make_event(size_t msg, int attachments, size_t data, size_t *len)
{
    sb_t sb = {0};
    sb_add(&sb, "{\"id\":\"ulPr8a\",\"messageId\":\"CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA\","
                "\"timestamp\":1700000000000,\"type\":\"MESSAGESENT\",\"initiator\":{\"user\":"
                "{\"userId\":68719476737,\"firstName\":\"Jane\",\"lastName\":\"Doe\","
                "\"displayName\":\"Jane Doe\",\"email\":\"jane.doe@example.com\","
                "\"username\":\"jane.doe\"}},\"payload\":{\"messageSent\":{\"message\":{"
                "\"messageId\":\"CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA\",\"timestamp\":1700000000000,"
                "\"message\":\"<div data-format=\\\"PresentationML\\\" data-version=\\\"2.0\\\">");
    size_t start = sb.len;
    for (int i = 0; sb.len - start < msg; i++)
        sb_add(&sb,
               "<p>Update %d for <span class=\\\"entity\\\" data-entity-id=\\\"%d\\\">@Jos\xc3\xa9"
               "</span>: r\xc3\xa9sum\xc3\xa9 of the Q3 numbers \xe2\x82\xac 1,234.56 "
               "<b>approved</b>.</p>",
               i, i);
    sb_add(&sb, "</div>\",\"data\":\"{");
    start = sb.len;
    for (int i = 0; i == 0 || sb.len - start < data; i++)
        sb_add(&sb,
               "%s\\\"%d\\\":{\\\"id\\\":[{\\\"type\\\":\\\"com.symphony.user.userId\\\","
               "\\\"value\\\":\\\"%" PRIu64 "\\\"}],\\\"type\\\":\\\"com.symphony.user.mention\\\","
               "\\\"version\\\":\\\"1.0\\\"}",
               i ? "," : "", i, (uint64_t)68719476738u + (uint64_t)i);
    sb_add(&sb, "}\",\"attachments\":[");
    for (int i = 0; i < attachments; i++)
        sb_add(&sb,
               "%s{\"id\":\"internal_14362_%08d_fs_attachment.pdf\",\"name\":\"report-%d.pdf\","
               "\"size\":%d,\"images\":[{\"id\":\"internal_14362_%08d_preview.png\","
               "\"dimension\":\"600px\"}]}",
               i ? "," : "", i, i, 100000 + 37 * i, i);
    sb_add(&sb,
           "],\"user\":{\"userId\":68719476737,\"displayName\":\"Jane Doe\","
           "\"username\":\"jane.doe\"},\"stream\":{\"streamId\":"
           "\"wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA\",\"streamType\":\"ROOM\",\"roomName\":"
           "\"Test room\",\"external\":false,\"crossPod\":false},\"externalRecipients\":false,"
           "\"userAgent\":\"DESKTOP-40.0.0-10665\",\"originalFormat\":"
           "\"com.symphony.messageml.v2\",\"sid\":\"fa691cd3-484a-4109-aeb2-57c05b78c95b\"}}}}");
    *len = sb.len;
    return sb.data;
}

/* ---------------------------------------------------------------- parsers */

typedef struct {
    const char *name;
    int (*parse)(const char *text, size_t len); /* 0 on success */
} parser_t;

static dfb_json_t *s_tape;
static dfb_buf_t s_buf;

static int
p_dfb(const char *text, size_t len)
{
    return dfb_json_parse(s_tape, text, len);
}

static int
p_dfb_msgpack(const char *text, size_t len)
{
    static const dfb_envelope_t env = {1, 1, "bench", 1700000000000, 68719476738};
    if (dfb_json_parse(s_tape, text, len))
        return -1;
    dfb_buf_reset(&s_buf);
    return dfb_transcode_message(&env, s_tape, 0, &s_buf);
}

static int
p_yajl_bare(const char *text, size_t len)
{
    /* yajl with no callbacks: the lexer/validator alone, a floor for ours. */
    yajl_handle h = yajl_alloc(NULL, NULL, NULL);
    int rc = yajl_parse(h, (const unsigned char *)text, len) == yajl_status_ok &&
                     yajl_complete_parse(h) == yajl_status_ok
                 ? 0
                 : -1;
    yajl_free(h);
    return rc;
}

static int
p_cjson(const char *text, size_t len)
{
    cJSON *c = cJSON_ParseWithLength(text, len);
    cJSON_Delete(c);
    return c ? 0 : -1;
}

static const parser_t s_parsers[] = {
    {"dfb_json tape (yajl)", p_dfb},       {"dfb_json + msgpack frame", p_dfb_msgpack},
    {"yajl, no callbacks", p_yajl_bare},   {"jansson json_loadb", bench_jansson_parse},
    {"json-c tokener", bench_jsonc_parse}, {"cJSON", p_cjson},
};
#define NPARSERS (sizeof s_parsers / sizeof s_parsers[0])

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define TRIALS 5

/*  Events per second over one trial of `seconds` (at least one parse), or
    -1 on a parse error. */
static double
trial(const parser_t *p, const char *text, size_t len, double seconds)
{
    long n = 0, batch = 1;
    double t0 = now(), t;
    do {
        for (long i = 0; i < batch; i++)
            if (p->parse(text, len))
                return -1;
        n += batch;
        t = now() - t0;
        if (batch < 1 << 20)
            batch *= 2;
    } while (t < seconds);
    return (double)n / t;
}

/* ---------------------------------------------------------------- exactness */

/*  Each probe parses `text` and answers in a few words. */
typedef struct {
    const char *name;
    void (*probe)(const char *what, const char *text, char *out, size_t outlen);
} prober_t;

/*  What: "int" (value of [N]), "order" (keys of an object), "dup" (members of
    {"a":1,"a":2}), "nul" (length of "a\u0000b"). */
static void
probe_dfb(const char *what, const char *text, char *out, size_t n)
{
    if (dfb_json_parse(s_tape, text, strlen(text))) {
        snprintf(out, n, "rejected");
        return;
    }
    dfb_json_ref_t r = dfb_json_first(s_tape, 0);
    if (!strcmp(what, "int")) {
        if (dfb_json_type(s_tape, r) == DFB_JSON_INT)
            snprintf(out, n, "%" PRId64, dfb_json_int(s_tape, r));
        else if (dfb_json_type(s_tape, r) == DFB_JSON_UINT)
            snprintf(out, n, "%" PRIu64, dfb_json_uint(s_tape, r));
        else
            snprintf(out, n, "%.17g", dfb_json_double(s_tape, r));
    } else if (!strcmp(what, "nul")) {
        size_t len = 0;
        dfb_json_string(s_tape, r, &len);
        snprintf(out, n, "len %zu", len);
    } else {
        out[0] = '\0';
        for (; r != DFB_JSON_NONE; r = dfb_json_next(s_tape, dfb_json_next(s_tape, r))) {
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s%s=%" PRId64, l ? "," : "",
                     dfb_json_string(s_tape, r, NULL),
                     dfb_json_int(s_tape, dfb_json_next(s_tape, r)));
        }
    }
}

static void
probe_cjson(const char *what, const char *text, char *out, size_t n)
{
    cJSON *v = cJSON_Parse(text);
    if (!v) {
        snprintf(out, n, "rejected");
        return;
    }
    if (!strcmp(what, "int"))
        snprintf(out, n, "%.17g", cJSON_GetArrayItem(v, 0)->valuedouble);
    else if (!strcmp(what, "nul"))
        snprintf(out, n, "len %zu", strlen(cJSON_GetArrayItem(v, 0)->valuestring));
    else {
        out[0] = '\0';
        for (cJSON *x = v->child; x; x = x->next) {
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s%s=%.0f", l ? "," : "", x->string, x->valuedouble);
        }
    }
    cJSON_Delete(v);
}

static const prober_t s_probers[] = {
    {"dfb_json (yajl)", probe_dfb},
    {"jansson", bench_jansson_probe},
    {"json-c", bench_jsonc_probe},
    {"cJSON", probe_cjson},
};

int
main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.4;
    s_tape = dfb_json_new();
    bench_jsonc_init();
    dfb_buf_init(&s_buf);
    if (!s_tape)
        return 1;

    struct {
        const char *label;
        char *text;
        size_t len;
    } ev[] = {
        {"~1KB", NULL, 0},
        {"~10KB", NULL, 0},
        {"~100KB", NULL, 0},
        {"~300KB", NULL, 0},
    };
    ev[0].text = make_event(180, 0, 100, &ev[0].len);
    ev[1].text = make_event(9000, 0, 300, &ev[1].len);
    ev[2].text = make_event(2000, 570, 2000, &ev[2].len);
    ev[3].text = make_event(4000, 10, 300000, &ev[3].len);

    printf("JSON parse throughput, MESSAGESENT events (best of %d interleaved rounds of %.3f s "
           "per cell, one core)\n",
           TRIALS, seconds / TRIALS);
    printf("event sizes:");
    for (size_t e = 0; e < 4; e++)
        printf(" %s=%zu B", ev[e].label, ev[e].len);
    printf("\n\n| parser | ");
    for (size_t e = 0; e < 4; e++)
        printf("%s MB/s | %s ev/s | ", ev[e].label, ev[e].label);
    printf("\n|---|---|---|---|---|---|---|---|---|\n");
    /* The machine is shared: TRIALS rounds over every (parser, event) cell,
       interleaved so that a burst of outside load hits all parsers alike;
       each cell keeps its best round (the least disturbed). */
    int rc = 0;
    double best[NPARSERS][4] = {{0}};
    for (int t = 0; t < TRIALS; t++)
        for (size_t p = 0; p < NPARSERS; p++)
            for (size_t e = 0; e < 4; e++) {
                if (t == 0 && s_parsers[p].parse(ev[e].text, ev[e].len))
                    best[p][e] = -1; /* warm-up and correctness gate */
                if (best[p][e] < 0)
                    continue;
                double eps = trial(&s_parsers[p], ev[e].text, ev[e].len, seconds / TRIALS);
                if (eps < 0 || eps > best[p][e])
                    best[p][e] = eps;
            }
    for (size_t p = 0; p < NPARSERS; p++) {
        printf("| %s | ", s_parsers[p].name);
        for (size_t e = 0; e < 4; e++) {
            if (best[p][e] < 0) {
                printf("FAILED | FAILED | ");
                rc = 1;
            } else
                printf("%.0f | %.0f | ", best[p][e] * (double)ev[e].len / 1e6, best[p][e]);
        }
        printf("\n");
    }
    if (s_buf.len)
        printf("\nmsgpack frame of the ~300KB event: %zu B (JSON %zu B)\n", s_buf.len, ev[3].len);
    printf("\"yajl, no callbacks\" only lexes and validates: yajl decodes string escapes only\n"
           "for a string callback, so it is a floor, not a parser we could use.\n"
           "json-c runs with JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8; cJSON does not\n"
           "validate UTF-8.\n");

    struct {
        const char *what, *label, *text, *want;
    } checks[] = {
        {"int", "68719476737", "[68719476737]", "68719476737"},
        {"int", "2^53+1", "[9007199254740993]", "9007199254740993"},
        {"int", "INT64_MAX", "[9223372036854775807]", "9223372036854775807"},
        {"int", "UINT64_MAX", "[18446744073709551615]", "18446744073709551615"},
        {"order", "key order {b,a,c}", "{\"b\":1,\"a\":2,\"c\":3}", "b=1,a=2,c=3"},
        {"dup", "duplicate keys {a:1,a:2}", "{\"a\":1,\"a\":2}", "a=1,a=2"},
        {"nul", "\"a\\u0000b\" length", "[\"a\\u0000b\"]", "len 3"},
    };
    printf("\nExactness (what the parser gives back; * = differs from the input)\n\n| check |");
    for (size_t p = 0; p < sizeof s_probers / sizeof s_probers[0]; p++)
        printf(" %s |", s_probers[p].name);
    printf("\n|---|---|---|---|---|\n");
    for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++) {
        printf("| %s |", checks[c].label);
        for (size_t p = 0; p < sizeof s_probers / sizeof s_probers[0]; p++) {
            char out[160];
            s_probers[p].probe(checks[c].what, checks[c].text, out, sizeof out);
            int ok = strcmp(out, checks[c].want) == 0;
            printf(" %s%s |", out, ok ? "" : " *");
            if (p == 0 && !ok)
                rc = 1; /* our own parser must be exact */
        }
        printf("\n");
    }
    for (size_t e = 0; e < 4; e++)
        free(ev[e].text);
    bench_jsonc_fini();
    dfb_buf_free(&s_buf);
    dfb_json_destroy(&s_tape);
    return rc;
}
