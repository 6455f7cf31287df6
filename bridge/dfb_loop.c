/*  dfb_loop: datafeed v2 loop (see dfb_loop.h). Every upstream call goes
    through call_until(): one HTTP request, classified by the per-operation
    table below, with retries, re-authentication and the interruptible
    backoff handled in one place. v1 and datahose will be further ops. */
#include "dfb_loop.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfb_json.h"
#include "dfb_log.h"
#include "dfb_retry.h"

typedef enum { OP_LIST, OP_CREATE, OP_DELETE, OP_READ, OP_V1_CREATE, OP_V1_READ } op_t;

static const char *const s_op_name[] = {"list datafeeds", "create datafeed",    "delete datafeed",
                                        "read datafeed",  "create v1 datafeed", "read v1 datafeed"};

/*  How one response is handled. */
typedef enum {
    OUT_OK,       /* done */
    OUT_RETRY,    /* wait the backoff, call again */
    OUT_REAUTH,   /* log in again, wait, call again */
    OUT_RECREATE, /* read only: the feed is gone */
    OUT_FATAL,    /* exit status 1 */
    OUT_STOPPED   /* exit status 0 */
} outcome_t;

struct dfb_loop {
    const dfb_config_t *cfg;
    dfb_auth_t *auth;
    dfb_http_t *http;
    dfb_publish_t *pub;
    int stop_fd;
    dfb_json_t *json;
    dfb_backoff_t backoff;
    char agent_url[512];
    char feed_id[256]; /* "" = none yet */
    char *ack_id;      /* acknowledges the last published batch */
    int last_status;   /* HTTP status of the last call, for accept_* */
    dfb_loop_stats_t stats;
};

int
dfb_feed_id_is_fanout(const char *id)
{
#define IS_SPACE(c)                                                                                \
    ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\v' || (c) == '\f' || (c) == '\r')
    const char *p = id;
    const char *start = p;
    while (*p && *p != '_' && !IS_SPACE(*p))
        p++;
    if (p == start || p[0] != '_' || p[1] != 'f')
        return 0;
    p += 2;
    if (*p == '\0')
        return 1;
    if (*p != '_')
        return 0;
    start = ++p;
    while (*p && *p != '_' && !IS_SPACE(*p))
        p++;
    return p > start && *p == '\0';
#undef IS_SPACE
}

/*  Feed ids go into URL paths: accept only characters that need no
    escaping, so a hostile id cannot redirect a call. */
static int
id_is_safe(const char *id, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == '~'))
            return 0;
    }
    return len > 0;
}

dfb_loop_t *
dfb_loop_new(const dfb_config_t *cfg, dfb_auth_t *auth, dfb_http_t *http, dfb_publish_t *pub,
             int stop_fd)
{
    dfb_loop_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->auth = auth;
    self->http = http;
    self->pub = pub;
    self->stop_fd = stop_fd;
    self->json = dfb_json_new();
    /* One string with invalid UTF-8 must not make a batch unreadable: it
       would be redelivered and refused forever (a poison batch). Such
       strings are published with U+FFFD substitutions and counted. */
    if (self->json)
        dfb_json_set_options(self->json, DFB_JSON_REPLACE_INVALID);
    self->ack_id = strdup("");
    if (!self->json || !self->ack_id ||
        dfb_endpoint_url(&cfg->agent, self->agent_url, sizeof self->agent_url) != 0) {
        dfb_loop_destroy(&self);
        return NULL;
    }
    dfb_backoff_init(&self->backoff, &cfg->datafeed_retry);
    return self;
}

void
dfb_loop_destroy(dfb_loop_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_loop_t *self = *self_p;
    dfb_json_destroy(&self->json);
    free(self->ack_id);
    free(self);
    *self_p = NULL;
}

void
dfb_loop_stats(const dfb_loop_t *self, dfb_loop_stats_t *stats)
{
    *stats = self->stats;
}

/*  The BDK error table (reference §5), per operation. */
static outcome_t
classify(op_t op, dfb_http_err_t err, int status)
{
    if (err == DFB_HTTP_ESTOPPED)
        return OUT_STOPPED;
    if (err == DFB_HTTP_EOTHER)
        return OUT_FATAL; /* bad URL or out of memory: retrying cannot help */
    if (err != DFB_HTTP_OK)
        return OUT_RETRY; /* connect, timeout, reset, truncated, too big, TLS */
    if (status == 401)
        return OUT_REAUTH;
    if (status == 429 || status >= 500)
        return OUT_RETRY;
    switch (op) {
    case OP_LIST:
        return status == 200 ? OUT_OK : OUT_FATAL;
    case OP_CREATE:
        if (status == 201 || status == 200)
            return OUT_OK;
        /* A load balancer's 400 on create is transient (Java BDK PR #746). */
        return status == 400 ? OUT_RETRY : OUT_FATAL;
    case OP_DELETE:
        /* 400/404: the feed is already gone, which is what we wanted. */
        return status == 204 || status == 200 || status == 400 || status == 404 ? OUT_OK
                                                                                : OUT_FATAL;
    case OP_READ:
        if (status == 200)
            return OUT_OK;
        return status == 400 ? OUT_RECREATE : OUT_FATAL;
    case OP_V1_CREATE:
        return status == 200 || status == 201 ? OUT_OK : OUT_FATAL;
    case OP_V1_READ:
        /* 204: the hold ended without events. */
        if (status == 200 || status == 204)
            return OUT_OK;
        return status == 400 ? OUT_RECREATE : OUT_FATAL;
    }
    return OUT_FATAL;
}

/*  Waits the next backoff interval, or gives up. Returns OUT_RETRY to go
    on, OUT_FATAL when attempts are exhausted, OUT_STOPPED on stop. */
static outcome_t
backoff(dfb_loop_t *self, const char *what)
{
    self->stats.retries++;
    long wait = dfb_backoff_next(&self->backoff);
    if (wait < 0) {
        dfb_error("%s: giving up after %d attempts (datafeed.retry.maxAttempts)", what,
                  self->backoff.attempts);
        return OUT_FATAL;
    }
    dfb_debug("%s: retrying in %ld ms", what, wait);
    return dfb_wait(self->stop_fd, wait) ? OUT_STOPPED : OUT_RETRY;
}

static outcome_t
reauth(dfb_loop_t *self)
{
    self->stats.reauths++;
    dfb_info("session expired (401): authenticating again");
    dfb_auth_rc_t rc = dfb_auth_login(self->auth, self->http, self->stop_fd);
    if (rc == DFB_AUTH_STOPPED)
        return OUT_STOPPED;
    if (rc != DFB_AUTH_OK) {
        dfb_error("re-authentication failed: giving up");
        return OUT_FATAL;
    }
    return OUT_RETRY;
}

/*  Body check of a successful response: 0 = good, -1 = malformed (retried). */
typedef int (*accept_fn)(dfb_loop_t *self);

/*  Calls until the response is accepted (OUT_OK), the read asks for a
    recreate (OUT_RECREATE), or the loop must end (OUT_FATAL, OUT_STOPPED). */
static outcome_t
call_until(dfb_loop_t *self, op_t op, const char *method, const char *url, const char *body,
           accept_fn accept)
{
    const char *what = s_op_name[op];
    for (;;) {
        int status = 0;
        dfb_http_err_t err =
            dfb_http_request(self->http, method, url, body, body ? strlen(body) : 0, &status);
        outcome_t out = classify(op, err, status);
        self->last_status = status;
        if (out == OUT_OK && accept && accept(self) != 0) {
            self->stats.malformed++;
            out = OUT_RETRY;
        } else if (out == OUT_RETRY || out == OUT_REAUTH) {
            if (err == DFB_HTTP_OK)
                dfb_warn("%s: HTTP %d", what, status);
            else
                dfb_warn("%s: %s (%s)", what, dfb_http_strerror(err), dfb_http_detail(self->http));
        }
        switch (out) {
        case OUT_OK:
        case OUT_RECREATE:
        case OUT_STOPPED:
            return out;
        case OUT_FATAL: {
            size_t len;
            const char *b = dfb_http_body(self->http, &len);
            if (err == DFB_HTTP_OK)
                dfb_error("%s: HTTP %d%s: %.200s", what, status,
                          status == 403   ? " (forbidden: too many datafeeds, or not entitled)"
                          : status == 404 ? " (not found: wrong agent URL?)"
                                          : "",
                          b);
            else
                dfb_error("%s: %s (%s)", what, dfb_http_strerror(err), dfb_http_detail(self->http));
            return OUT_FATAL;
        }
        case OUT_REAUTH:
            out = reauth(self);
            if (out != OUT_RETRY)
                return out;
            /* The retry after a refresh waits the backoff too. */
            __attribute__((fallthrough));
        case OUT_RETRY:
            out = backoff(self, what);
            if (out != OUT_RETRY)
                return out;
            break;
        }
    }
}

/* ---- bodies ---------------------------------------------------------------- */

static int
parse_body(dfb_loop_t *self, const char *what)
{
    size_t len;
    const char *text = dfb_http_body(self->http, &len);
    if (dfb_json_parse(self->json, text, len) != 0) {
        dfb_warn("%s: malformed JSON body: %s", what, dfb_json_error(self->json));
        return -1;
    }
    uint32_t bad = dfb_json_replacements(self->json);
    if (bad) {
        self->stats.replaced += bad;
        dfb_warn("%s: %u invalid UTF-8 sequences or lone surrogates replaced by U+FFFD", what, bad);
    }
    return 0;
}

static int
accept_list(dfb_loop_t *self)
{
    if (parse_body(self, "list datafeeds") != 0)
        return -1;
    if (dfb_json_type(self->json, 0) != DFB_JSON_ARRAY) {
        dfb_warn("list datafeeds: the body is not an array");
        return -1;
    }
    return 0;
}

static int
accept_create(dfb_loop_t *self)
{
    if (parse_body(self, "create datafeed") != 0)
        return -1;
    dfb_json_ref_t id = dfb_json_get(self->json, 0, "id");
    size_t len = 0;
    const char *s = id == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, id, &len);
    if (!s || len >= sizeof self->feed_id || !id_is_safe(s, len)) {
        dfb_warn("create datafeed: no usable \"id\" in the response");
        return -1;
    }
    return 0;
}

static int
accept_read(dfb_loop_t *self)
{
    if (parse_body(self, "read datafeed") != 0)
        return -1;
    if (dfb_json_type(self->json, 0) != DFB_JSON_OBJECT) {
        dfb_warn("read datafeed: the body is not an object");
        return -1;
    }
    dfb_json_ref_t ev = dfb_json_get(self->json, 0, "events");
    if (ev != DFB_JSON_NONE && dfb_json_type(self->json, ev) != DFB_JSON_ARRAY &&
        dfb_json_type(self->json, ev) != DFB_JSON_NULL) {
        dfb_warn("read datafeed: \"events\" is not an array");
        return -1;
    }
    dfb_json_ref_t ack = dfb_json_get(self->json, 0, "ackId");
    if (ack == DFB_JSON_NONE || dfb_json_type(self->json, ack) != DFB_JSON_STRING) {
        dfb_warn("read datafeed: no \"ackId\" string");
        return -1;
    }
    return 0;
}

/*  Appends s as a JSON string literal to buf (cap bytes). Returns the new
    length, or 0 when it does not fit. */
static size_t
json_quote(char *buf, size_t cap, size_t len, const char *s, size_t slen)
{
    if (len + 2 >= cap)
        return 0;
    buf[len++] = '"';
    for (size_t i = 0; i < slen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (len + 8 >= cap)
            return 0;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    buf[len++] = '"';
    buf[len] = '\0';
    return len;
}

/* ---- the loop -------------------------------------------------------------- */

static outcome_t
create_feed(dfb_loop_t *self)
{
    char url[600], body[512];
    size_t n = (size_t)snprintf(body, sizeof body, "{");
    if (self->cfg->datafeed_tag) {
        n += (size_t)snprintf(body + n, sizeof body - n, "\"tag\":");
        n = json_quote(body, sizeof body, n, self->cfg->datafeed_tag,
                       strlen(self->cfg->datafeed_tag));
    }
    if (n && self->cfg->datafeed_include_invisible >= 0)
        n += (size_t)snprintf(body + n, sizeof body - n, "%s\"includeInvisible\":%s",
                              n > 1 ? "," : "",
                              self->cfg->datafeed_include_invisible ? "true" : "false");
    if (n == 0 || n + 2 > sizeof body)
        return OUT_FATAL;
    snprintf(body + n, sizeof body - n, "}");
    snprintf(url, sizeof url, "%s/agent/v5/datafeeds", self->agent_url);
    outcome_t out = call_until(self, OP_CREATE, "POST", url, body, accept_create);
    if (out != OUT_OK)
        return out;
    dfb_json_ref_t id = dfb_json_get(self->json, 0, "id");
    snprintf(self->feed_id, sizeof self->feed_id, "%s", dfb_json_string(self->json, id, NULL));
    dfb_info("created datafeed %s", self->feed_id);
    return OUT_OK;
}

static outcome_t
prepare(dfb_loop_t *self)
{
    char url[600];
    snprintf(url, sizeof url, "%s/agent/v5/datafeeds", self->agent_url);
    outcome_t out = call_until(self, OP_LIST, "GET", url, NULL, accept_list);
    if (out != OUT_OK)
        return out;
    self->feed_id[0] = '\0';
    for (dfb_json_ref_t f = dfb_json_first(self->json, 0); f != DFB_JSON_NONE;
         f = dfb_json_next(self->json, f)) {
        dfb_json_ref_t id = dfb_json_get(self->json, f, "id");
        size_t len = 0;
        const char *s = id == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, id, &len);
        if (s && len < sizeof self->feed_id && id_is_safe(s, len) && dfb_feed_id_is_fanout(s)) {
            memcpy(self->feed_id, s, len + 1);
            dfb_info("reusing datafeed %s", self->feed_id);
            break;
        }
    }
    if (!self->feed_id[0]) {
        out = create_feed(self);
        if (out != OUT_OK)
            return out;
    }
    free(self->ack_id);
    self->ack_id = strdup("");
    return self->ack_id ? OUT_OK : OUT_FATAL;
}

/*  400 on read: delete the old feed (its absence is fine), create a new
    one, start again with an empty ackId. */
static outcome_t
recreate(dfb_loop_t *self)
{
    char url[900];
    self->stats.recreates++;
    dfb_warn("datafeed %s is gone (400): recreating it", self->feed_id);
    snprintf(url, sizeof url, "%s/agent/v5/datafeeds/%s", self->agent_url, self->feed_id);
    outcome_t out = call_until(self, OP_DELETE, "DELETE", url, NULL, NULL);
    if (out != OUT_OK)
        return out;
    self->feed_id[0] = '\0';
    out = create_feed(self);
    if (out != OUT_OK)
        return out;
    free(self->ack_id);
    self->ack_id = strdup("");
    if (!self->ack_id)
        return OUT_FATAL;
    /* As in the BDKs, the read is retried after the backoff sleep. */
    return backoff(self, "read datafeed");
}

/*  Publishes every element of the array at ev (if it is an array), in
    order. Returns how many. */
static uint32_t
publish_events(dfb_loop_t *self, dfb_json_ref_t ev)
{
    uint32_t n = 0;
    if (ev == DFB_JSON_NONE || dfb_json_type(self->json, ev) != DFB_JSON_ARRAY)
        return 0;
    for (dfb_json_ref_t e = dfb_json_first(self->json, ev); e != DFB_JSON_NONE;
         e = dfb_json_next(self->json, e)) {
        /* A failed publish is counted by dfb_publish and shows as a seq gap
           downstream; the batch is still acknowledged, as the BDKs do for
           listener errors that are not requeue requests. */
        dfb_publish_event(self->pub, self->json, e);
        n++;
    }
    self->stats.events += n;
    if (n)
        dfb_debug("published %u events", n);
    return n;
}

/*  v2: publishes the batch's events, then adopts its ackId. */
static int
publish_batch(dfb_loop_t *self)
{
    publish_events(self, dfb_json_get(self->json, 0, "events"));
    size_t len;
    const char *ack = dfb_json_string(self->json, dfb_json_get(self->json, 0, "ackId"), &len);
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, ack, len);
    copy[len] = '\0';
    free(self->ack_id);
    self->ack_id = copy;
    return 0;
}

static outcome_t run_v2(dfb_loop_t *self);

/* ---- datafeed v1 (Agent /v4, deprecated) ------------------------------------ */

static int
accept_v1_create(dfb_loop_t *self)
{
    return accept_create(self); /* same {"id": ...} shape */
}

static int
accept_v1_read(dfb_loop_t *self)
{
    if (self->last_status == 204)
        return 0;
    if (parse_body(self, "read v1 datafeed") != 0)
        return -1;
    dfb_json_type_t t = dfb_json_type(self->json, 0);
    if (t != DFB_JSON_ARRAY && t != DFB_JSON_NULL) {
        dfb_warn("read v1 datafeed: the body is not an array");
        return -1;
    }
    return 0;
}

static outcome_t
create_v1(dfb_loop_t *self)
{
    char url[600];
    snprintf(url, sizeof url, "%s/agent/v4/datafeed/create", self->agent_url);
    outcome_t out = call_until(self, OP_V1_CREATE, "POST", url, "", accept_v1_create);
    if (out != OUT_OK)
        return out;
    dfb_json_ref_t id = dfb_json_get(self->json, 0, "id");
    snprintf(self->feed_id, sizeof self->feed_id, "%s", dfb_json_string(self->json, id, NULL));
    dfb_info("created v1 datafeed %s", self->feed_id);
    return OUT_OK;
}

/*  v1: create a feed (no id file yet: a new feed at every start), then
    GET .../read in a loop; no ackId (v1 removes events as it serves them).
    A 400 means the feed is gone: create another one. */
static outcome_t
run_v1(dfb_loop_t *self)
{
    outcome_t out = create_v1(self);
    char url[900];
    while (out == OUT_OK) {
        snprintf(url, sizeof url, "%s/agent/v4/datafeed/%s/read", self->agent_url, self->feed_id);
        out = call_until(self, OP_V1_READ, "GET", url, NULL, accept_v1_read);
        if (out == OUT_OK) {
            self->stats.reads++;
            self->stats.last_read_ms = dfb_now_ms();
            dfb_backoff_reset(&self->backoff);
            if (self->last_status != 204)
                publish_events(self, 0);
        } else if (out == OUT_RECREATE) {
            self->stats.recreates++;
            dfb_warn("v1 datafeed %s is gone (400): creating another one", self->feed_id);
            out = create_v1(self);
            if (out == OUT_OK)
                out = backoff(self, "read v1 datafeed");
            if (out == OUT_RETRY)
                out = OUT_OK;
        }
    }
    return out;
}

int
dfb_loop_run(dfb_loop_t *self)
{
    /* Login, then the bot id; a 401 on sessioninfo gets one fresh login. */
    int64_t bot = 0;
    dfb_auth_rc_t arc = DFB_AUTH_OK;
    for (int round = 0; round < 2; round++) {
        arc = dfb_auth_login(self->auth, self->http, self->stop_fd);
        if (arc != DFB_AUTH_OK)
            break; /* dfb_auth logged why */
        arc = dfb_auth_session_info(self->auth, self->http, self->stop_fd, &bot);
        if (arc != DFB_AUTH_UNAUTHORIZED)
            break;
        if (round == 1)
            dfb_error("session info: 401 right after authenticating: giving up");
    }
    if (arc == DFB_AUTH_STOPPED)
        return DFB_EXIT_STOPPED;
    if (arc != DFB_AUTH_OK)
        return DFB_EXIT_FATAL;
    dfb_publish_set_bot(self->pub, bot);

    outcome_t out = self->cfg->datafeed_version == DFB_DATAFEED_V1 ? run_v1(self) : run_v2(self);
    return out == OUT_STOPPED ? DFB_EXIT_STOPPED : DFB_EXIT_FATAL;
}

/*  v2: list/create, then read -> publish -> ack with the next read. */
static outcome_t
run_v2(dfb_loop_t *self)
{
    outcome_t out = prepare(self);
    char url[900], *body = NULL;
    size_t body_cap = 0;
    while (out == OUT_OK) {
        snprintf(url, sizeof url, "%s/agent/v5/datafeeds/%s/read", self->agent_url, self->feed_id);
        size_t ack_len = strlen(self->ack_id);
        size_t need = ack_len * 6 + 64;
        if (need > body_cap) {
            char *p = realloc(body, need);
            if (!p) {
                out = OUT_FATAL;
                break;
            }
            body = p;
            body_cap = need;
        }
        size_t n = (size_t)snprintf(body, body_cap, "{\"ackId\":");
        n = json_quote(body, body_cap, n, self->ack_id, ack_len);
        snprintf(body + n, body_cap - n, ",\"updatePresence\":true}");
        out = call_until(self, OP_READ, "POST", url, body, accept_read);
        if (out == OUT_OK) {
            self->stats.reads++;
            self->stats.last_read_ms = dfb_now_ms();
            dfb_backoff_reset(&self->backoff);
            if (publish_batch(self) != 0)
                out = OUT_FATAL;
        } else if (out == OUT_RECREATE) {
            out = recreate(self);
            if (out == OUT_RETRY)
                out = OUT_OK;
        }
    }
    free(body);
    return out;
}

/* ---- self-test ------------------------------------------------------------ */

int
dfb_loop_test(int verbose)
{
    int fails = 0;
    /* The BDK test ids (Java DatafeedLoopV2Test) plus edge cases. */
    struct {
        const char *id;
        int want;
    } cases[] = {
        {"abc_f", 1},
        {"abc_f_def", 1},
        {"abc", 0},
        {"abc_def", 0},
        {"abc_p_def", 0},
        {"abc_f_", 0},
        {"", 0},
        {"_f", 0},
        {"a b_f", 0},
        {"abc_f_d e", 0},
        {"abc_f_def_g", 0},
        {"abc_ff", 0},
        {"0123456789abcdef0123456789abcdef_f", 1},
        {"abc_f\n", 0},
        {"abc__f", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = dfb_feed_id_is_fanout(cases[i].id);
        if (verbose)
            printf("  '%s' -> %d\n", cases[i].id, got);
        if (got != cases[i].want) {
            printf("FAIL fanout('%s') = %d, want %d\n", cases[i].id, got, cases[i].want);
            fails++;
        }
    }
    /* The error table. */
    struct {
        op_t op;
        dfb_http_err_t err;
        int status;
        outcome_t want;
    } table[] = {
        {OP_READ, DFB_HTTP_OK, 200, OUT_OK},          {OP_READ, DFB_HTTP_OK, 400, OUT_RECREATE},
        {OP_READ, DFB_HTTP_OK, 401, OUT_REAUTH},      {OP_READ, DFB_HTTP_OK, 403, OUT_FATAL},
        {OP_READ, DFB_HTTP_OK, 404, OUT_FATAL},       {OP_READ, DFB_HTTP_OK, 409, OUT_FATAL},
        {OP_READ, DFB_HTTP_OK, 429, OUT_RETRY},       {OP_READ, DFB_HTTP_OK, 500, OUT_RETRY},
        {OP_READ, DFB_HTTP_OK, 503, OUT_RETRY},       {OP_READ, DFB_HTTP_ETIMEOUT, 0, OUT_RETRY},
        {OP_READ, DFB_HTTP_ETRUNCATED, 0, OUT_RETRY}, {OP_READ, DFB_HTTP_ERESET, 0, OUT_RETRY},
        {OP_READ, DFB_HTTP_ECONNECT, 0, OUT_RETRY},   {OP_READ, DFB_HTTP_ETOOBIG, 0, OUT_RETRY},
        {OP_READ, DFB_HTTP_ESTOPPED, 0, OUT_STOPPED}, {OP_LIST, DFB_HTTP_OK, 400, OUT_FATAL},
        {OP_LIST, DFB_HTTP_OK, 401, OUT_REAUTH},      {OP_CREATE, DFB_HTTP_OK, 201, OUT_OK},
        {OP_CREATE, DFB_HTTP_OK, 400, OUT_RETRY},     {OP_CREATE, DFB_HTTP_OK, 403, OUT_FATAL},
        {OP_DELETE, DFB_HTTP_OK, 204, OUT_OK},        {OP_DELETE, DFB_HTTP_OK, 400, OUT_OK},
        {OP_DELETE, DFB_HTTP_OK, 502, OUT_RETRY},     {OP_DELETE, DFB_HTTP_OK, 403, OUT_FATAL},
        {OP_V1_READ, DFB_HTTP_OK, 204, OUT_OK},       {OP_V1_READ, DFB_HTTP_OK, 400, OUT_RECREATE},
        {OP_V1_READ, DFB_HTTP_OK, 401, OUT_REAUTH},   {OP_V1_READ, DFB_HTTP_OK, 403, OUT_FATAL},
        {OP_V1_CREATE, DFB_HTTP_OK, 200, OUT_OK},     {OP_V1_CREATE, DFB_HTTP_OK, 503, OUT_RETRY},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        outcome_t got = classify(table[i].op, table[i].err, table[i].status);
        if (got != table[i].want) {
            printf("FAIL classify(%s, %s, %d) = %d, want %d\n", s_op_name[table[i].op],
                   dfb_http_strerror(table[i].err), table[i].status, got, table[i].want);
            fails++;
        }
    }
    return fails;
}
