/*  dfb_loop: the datafeed loop (see dfb_loop.h). Every upstream call goes
    through attempt() (one HTTP request, its action from dfb_policy's table,
    the body checked) and recover() (re-authentication, the interruptible
    backoff, and the one log line when the loop has to end). */
#include "dfb_loop.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dfb_feedfile.h"
#include "dfb_json.h"
#include "dfb_log.h"
#include "dfb_policy.h"
#include "dfb_retry.h"
#include "dfb_stop.h"
#include "dfb_transcode.h"
#include "dfb_upstream.h"

/*  Where a sequence of calls stands. */
typedef enum {
    OUT_OK,       /* done */
    OUT_RETRY,    /* call again (the backoff was waited) */
    OUT_RECREATE, /* a read found its feed gone */
    OUT_END,      /* the loop ends: self->exit_code says how, the reason was logged */
} outcome_t;

struct dfb_loop {
    const dfb_config_t *cfg;
    dfb_auth_t *auth;
    dfb_http_t *http;
    dfb_publish_t *pub;
    int stop_fd;
    dfb_json_t *json;
    char agent_url[512];
    char feed_id[256];       /* "" = none yet */
    char feed_shown[256];    /* feed_id for a log line, redacted (the pod chose it) */
    char *ack_id;            /* acknowledges the last published batch: ack_len bytes, */
    size_t ack_len;          /* any byte (Symphony's are ASCII; a NUL must not cut it) */
    size_t ack_cap;          /* ack_id's room: reused from batch to batch */
    int last_status;         /* HTTP status of the last call (0: none) */
    dfb_http_err_t last_err; /* transport error of the last call */
    char last_error[160];    /* the last failure, for the "giving up" line */
    int exit_code;           /* set with OUT_END */
    uint64_t auth_gen;       /* the shared session's generation in self->http (dfb_auth_apply) */
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

int
dfb_feed_is_reusable(const char *id, const char *type, const char *tag)
{
    if (!id)
        return 0;
    if (tag)
        return strcmp(id, tag) == 0 && type && strcasecmp(type, "fanout") == 0;
    return dfb_feed_id_is_fanout(id);
}

static int reset_ack(dfb_loop_t *self);

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
    if (!self->json || reset_ack(self) != 0 ||
        dfb_endpoint_url(&cfg->agent, self->agent_url, sizeof self->agent_url) != 0) {
        dfb_loop_destroy(&self);
        return NULL;
    }
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

const dfb_loop_stats_t *
dfb_loop_counters(const dfb_loop_t *self)
{
    return &self->stats;
}

/*  The feed id in a log line: the pod chose it, so it is redacted like a
    body (no token or header value of ours can be shown through it). */
static const char *
feed_shown(dfb_loop_t *self)
{
    dfb_http_redact(self->http, self->feed_id, strlen(self->feed_id), self->feed_shown,
                    sizeof self->feed_shown);
    return self->feed_shown;
}

/* ---- one call, and what follows a failure ---------------------------------- */

/*  Ends the loop with exit status code; the caller has logged why. */
static outcome_t
end(dfb_loop_t *self, int code)
{
    self->exit_code = code;
    return OUT_END;
}

/*  Body check of a successful response: 0 = good, -1 = malformed (retried). */
typedef int (*accept_fn)(dfb_loop_t *self);

/*  The `call` field of a log line about call: its /metrics label
    ("read_feed"), so a line joins the series that counts it; the message
    keeps the human name ("read datafeed"). */
static const char *
call_label(dfb_call_t call)
{
    return dfb_upstream_call_name(dfb_upstream_of(call));
}

/*  Performs one call and returns its action. A malformed body on a 2xx
    becomes DFB_ACT_RETRY. The failure is described in self->last_error. */
static dfb_action_t
attempt(dfb_loop_t *self, dfb_call_t call, const char *method, const char *url, const char *body,
        size_t body_len, accept_fn accept)
{
    const char *what = dfb_policy_call_name(call);
    int status = 0;
    int64_t t0 = dfb_upstream_now_us();
    dfb_http_err_t err = dfb_http_request(self->http, method, url, body, body_len, &status);
    dfb_upstream_record(dfb_upstream_of(call), err, status, dfb_upstream_now_us() - t0);
    self->last_status = err == DFB_HTTP_OK ? status : 0;
    self->last_err = err;
    dfb_action_t act = dfb_policy_action(call, err, status);
    if (err != DFB_HTTP_OK)
        snprintf(self->last_error, sizeof self->last_error, "%s (%.100s)", dfb_http_strerror(err),
                 dfb_http_detail(self->http));
    else
        snprintf(self->last_error, sizeof self->last_error, "HTTP %d", status);
    if (act == DFB_ACT_OK && accept && accept(self) != 0) {
        self->stats.malformed++;
        snprintf(self->last_error, sizeof self->last_error, "HTTP %d with a malformed body",
                 status);
        act = DFB_ACT_RETRY;
    }
    /* logs: call and status (0: no HTTP answer, error says why) as fields */
    if (act == DFB_ACT_RETRY || act == DFB_ACT_REAUTH || act == DFB_ACT_IGNORE) {
        const dfb_logf_t f[] = {dfb_ls("call", call_label(call)),
                                dfb_li("status", self->last_status),
                                dfb_ls("error", err != DFB_HTTP_OK ? dfb_http_strerror(err) : "")};
        dfb_logkv(act == DFB_ACT_IGNORE ? DFB_LOG_INFO : DFB_LOG_WARN, f,
                  err != DFB_HTTP_OK ? 3 : 2, "%s: %s%s", what, self->last_error,
                  act == DFB_ACT_IGNORE ? ", ignored" : "");
    }
    return act;
}

/*  Logs the one line that ends the loop for a fatal response. */
static outcome_t
fatal(dfb_loop_t *self, dfb_call_t call)
{
    const char *what = dfb_policy_call_name(call);
    if (self->last_status == 0 && self->last_err == DFB_HTTP_ECERT) {
        dfb_logkv(DFB_LOG_ERROR, DFB_FIELDS(dfb_ls("call", call_label(call)), dfb_li("status", 0)),
                  "%s: %s: check ssl.trustStore.path: exiting (status %d)", what, self->last_error,
                  DFB_EXIT_FATAL);
        return end(self, DFB_EXIT_FATAL);
    }
    if (self->last_status == 0) {
        /* Not an HTTP status: EOTHER (bad URL, out of memory). */
        dfb_logkv(DFB_LOG_ERROR, DFB_FIELDS(dfb_ls("call", call_label(call)), dfb_li("status", 0)),
                  "%s: %s: exiting (status %d)", what, self->last_error, DFB_EXIT_INTERNAL);
        return end(self, DFB_EXIT_INTERNAL);
    }
    /* The body's start says why (403: not entitled ...); a pod or proxy that
       echoes the request would put tokens and header values in it: redacted. */
    char b[201];
    dfb_http_body_excerpt(self->http, b, sizeof b);
    const dfb_policy_row_t *row = dfb_policy_row(call, self->last_status);
    dfb_logkv(DFB_LOG_ERROR,
              DFB_FIELDS(dfb_ls("call", call_label(call)), dfb_li("status", self->last_status)),
              "%s: HTTP %d%s%s: %s: exiting (status %d)", what, self->last_status,
              row && row->why ? ": " : "", row && row->why ? row->why : "", b, DFB_EXIT_FATAL);
    return end(self, DFB_EXIT_FATAL);
}

/*  Waits the next backoff interval of bo, or gives up (one line). key is
    the config block whose maxAttempts ran out ("datafeed.retry"). */
static outcome_t
backoff(dfb_loop_t *self, dfb_call_t call, dfb_backoff_t *bo, const char *key)
{
    self->stats.retries++;
    dfb_upstream_retry(dfb_upstream_of(call));
    long wait = dfb_backoff_next(bo);
    if (wait < 0) {
        dfb_logkv(DFB_LOG_ERROR,
                  DFB_FIELDS(dfb_ls("call", call_label(call)), dfb_li("status", self->last_status),
                             dfb_li("attempt", bo->attempts)),
                  "%s: giving up after %d attempts (%s.maxAttempts), last error %s: exiting "
                  "(status %d)",
                  dfb_policy_call_name(call), bo->attempts, key, self->last_error,
                  DFB_EXIT_EXHAUSTED);
        return end(self, DFB_EXIT_EXHAUSTED);
    }
    dfb_logkv(DFB_LOG_DEBUG,
              DFB_FIELDS(dfb_ls("call", call_label(call)), dfb_li("attempt", bo->attempts),
                         dfb_li("delayMs", wait)),
              "%s: retrying in %ld ms", dfb_policy_call_name(call), wait);
    if (dfb_wait(self->stop_fd, wait))
        return end(self, DFB_EXIT_STOPPED);
    return OUT_RETRY;
}

/*  Logs in again after a 401. A 401 on the login itself is fatal (exit 4). */
static outcome_t
reauth(dfb_loop_t *self)
{
    self->stats.reauths++;
    self->stats.ready = 0; /* not authenticated until the refresh succeeds */
    dfb_logkv(DFB_LOG_INFO, DFB_FIELDS(dfb_li("status", 401)),
              "session expired (401): authenticating again");
    /* Shared with the command executors: one login per 401 wave. */
    dfb_auth_rc_t rc = dfb_auth_refresh_shared(self->auth, self->http, self->stop_fd,
                                               &self->auth_gen);
    switch (rc) {
    case DFB_AUTH_OK:
        self->stats.ready = self->feed_id[0] || self->cfg->source == DFB_SOURCE_DATAHOSE;
        return OUT_RETRY;
    case DFB_AUTH_STOPPED:
        return end(self, DFB_EXIT_STOPPED);
    case DFB_AUTH_UNAUTHORIZED:
        /* dfb_auth logged the 401 line. */
        return end(self, DFB_EXIT_AUTH);
    case DFB_AUTH_EXHAUSTED:
        return end(self, DFB_EXIT_EXHAUSTED); /* dfb_auth logged the giving-up line */
    default:
        return end(self, DFB_EXIT_FATAL); /* dfb_auth logged why */
    }
}

/*  After a failed attempt: re-authenticates if asked, waits the backoff
    (the retry after a refresh waits too, as in the BDKs), or ends. */
static outcome_t
recover(dfb_loop_t *self, dfb_call_t call, dfb_action_t act, dfb_backoff_t *bo, const char *key)
{
    switch (act) {
    case DFB_ACT_STOPPED:
        return end(self, DFB_EXIT_STOPPED);
    case DFB_ACT_FATAL:
        return fatal(self, call);
    case DFB_ACT_REAUTH: {
        outcome_t out = reauth(self);
        if (out != OUT_RETRY)
            return out;
        return backoff(self, call, bo, key);
    }
    case DFB_ACT_RETRY:
        return backoff(self, call, bo, key);
    default:
        return end(self, DFB_EXIT_INTERNAL); /* OK/IGNORE/RECREATE are the caller's */
    }
}

/*  Calls until the response is accepted (OUT_OK; an ignorable failure
    counts as accepted), a read asks for another feed (OUT_RECREATE), or
    the loop ends (OUT_END). bo carries the attempts across calls (a read's
    backoff survives a recreate); NULL = a fresh one from retry. */
static outcome_t
call_until(dfb_loop_t *self, dfb_call_t call, const char *method, const char *url, const char *body,
           size_t body_len, accept_fn accept, dfb_backoff_t *bo, const dfb_retry_cfg_t *retry,
           const char *key)
{
    dfb_backoff_t local;
    if (!bo) {
        dfb_backoff_init(&local, retry);
        bo = &local;
    }
    for (;;) {
        dfb_action_t act = attempt(self, call, method, url, body, body_len, accept);
        if (act == DFB_ACT_OK || act == DFB_ACT_IGNORE)
            return OUT_OK;
        if (act == DFB_ACT_RECREATE)
            return OUT_RECREATE;
        outcome_t out = recover(self, call, act, bo, key);
        if (out != OUT_RETRY)
            return out;
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

/*  The "id" string of the root object if it can be used in a URL path. */
static const char *
body_id(dfb_loop_t *self, dfb_json_ref_t obj, size_t *len)
{
    dfb_json_ref_t id = dfb_json_get(self->json, obj, "id");
    const char *s = id == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, id, len);
    if (!s || *len >= sizeof self->feed_id || !id_is_safe(s, *len))
        return NULL;
    return s;
}

static int
accept_create(dfb_loop_t *self)
{
    size_t len = 0;
    if (parse_body(self, "create datafeed") != 0)
        return -1;
    if (!body_id(self, 0, &len)) {
        dfb_warn("create datafeed: no usable \"id\" in the response");
        return -1;
    }
    return 0;
}

static int
accept_read(dfb_loop_t *self)
{
    /* A 204 has no content (whatever bytes follow it), so no ackId: the
       read is retried with the ackId it sent, as for a malformed answer. */
    if (self->last_status == 204) {
        dfb_warn("read: 204 No Content: a read answers 200 with its events and ackId");
        return -1;
    }
    if (parse_body(self, "read") != 0)
        return -1;
    if (dfb_json_type(self->json, 0) != DFB_JSON_OBJECT) {
        dfb_warn("read: the body is not an object");
        return -1;
    }
    dfb_json_ref_t ev = dfb_json_get(self->json, 0, "events");
    if (ev != DFB_JSON_NONE && dfb_json_type(self->json, ev) != DFB_JSON_ARRAY &&
        dfb_json_type(self->json, ev) != DFB_JSON_NULL) {
        dfb_warn("read: \"events\" is not an array");
        return -1;
    }
    dfb_json_ref_t ack = dfb_json_get(self->json, 0, "ackId");
    if (ack == DFB_JSON_NONE || dfb_json_type(self->json, ack) != DFB_JSON_STRING) {
        dfb_warn("read: no \"ackId\" string");
        return -1;
    }
    return 0;
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

/*  A request body being built on the bridge's one byte buffer; the first
    failed append sets oom and later ones do nothing, so a builder checks
    once at the end. */
typedef struct {
    dfb_buf_t buf;
    int oom;
} sbuf_t;

static void
sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (!b->oom && dfb_buf_put(&b->buf, s, n) != 0)
        b->oom = 1;
}

static void
sb_adds(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/*  The body so far as NUL-terminated text (the NUL is not counted in
    buf.len); NULL after an allocation failure. */
static char *
sb_text(sbuf_t *b)
{
    if (b->oom || dfb_buf_reserve(&b->buf, 1) != 0) {
        b->oom = 1;
        return NULL;
    }
    b->buf.data[b->buf.len] = '\0';
    return (char *)b->buf.data;
}

/*  Appends the len bytes at s as a JSON string literal: every byte counts,
    a NUL included (escaped as \u0000). */
static void
sb_quote(sbuf_t *b, const char *s, size_t len)
{
    sb_adds(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; p < (const unsigned char *)s + len;
         p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_add(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_adds(b, esc);
        } else {
            sb_add(b, (const char *)p, 1);
        }
    }
    sb_adds(b, "\"");
}

/* ---- publishing ------------------------------------------------------------ */

/*  Publishes every element of the array at ev, in order. Returns 0, or -1
    at the first event dfb_publish could not take (the rest of the batch is
    skipped, as the Java BDK skips it on a requeue request): the caller then
    keeps the old ackId, so Symphony redelivers the whole batch. A batch of
    more than bridge.maxBatchEvents events is published in chunks of that
    many, each flushed (journal, PUB) before the next; a stop requested
    between chunks leaves the batch unacknowledged (redelivered, the dedupe
    window drops what was published): nothing is dropped. */
static int
publish_events(dfb_loop_t *self, dfb_json_ref_t ev)
{
    uint32_t n = 0;
    if (ev == DFB_JSON_NONE || dfb_json_type(self->json, ev) != DFB_JSON_ARRAY)
        return 0;
    uint32_t total = dfb_json_count(self->json, ev); /* the tape knows it */
    uint64_t chunk =
        self->cfg->max_batch_events > 0 ? (uint64_t)self->cfg->max_batch_events : UINT64_MAX;
    if (total > chunk) {
        if (self->stats.over_batch++ == 0)
            dfb_warn("a batch of %u events (over bridge.maxBatchEvents %llu): published in "
                     "chunks (said once; counted in batches_over_limit)",
                     total, (unsigned long long)chunk);
    }
    for (dfb_json_ref_t e = dfb_json_first(self->json, ev); e != DFB_JSON_NONE;
         e = dfb_json_next(self->json, e)) {
        if (n && n % chunk == 0) {
            if (dfb_publish_flush(self->pub) != 0 || dfb_stop_requested()) {
                self->stats.events += n;
                self->stats.unacked++;
                dfb_warn("batch interrupted after %u of %u events: not acknowledged, Symphony "
                         "will deliver it again (the dedupe window drops what was published)",
                         n, total);
                return -1;
            }
        }
        if (dfb_publish_event(self->pub, self->json, e) != 0) {
            self->stats.events += n;
            self->stats.unacked++;
            dfb_warn("publish failed at event %u of %u: the batch is not acknowledged, "
                     "Symphony will deliver it again",
                     n + 1, total);
            return -1;
        }
        n++;
    }
    self->stats.events += n;
    /*  One fsync per batch (bridge.journal.fsync: always), before the ackId
        that acknowledges it can go out. */
    if (n && dfb_publish_flush(self->pub) != 0) {
        self->stats.unacked++;
        dfb_warn("journal flush failed: the batch is not acknowledged, Symphony will deliver it "
                 "again (the journal drops the duplicates)");
        return -1;
    }
    if (n)
        dfb_debug("published %u events", n);
    return 0;
}

/*  v2 and datahose: publishes the batch's events, then adopts its ackId
    (acknowledged by the next read). Returns 0, or -1 on out of memory. */
static int
publish_batch(dfb_loop_t *self)
{
    if (publish_events(self, dfb_json_get(self->json, 0, "events")) != 0)
        return 0; /* keep the old ackId */
    size_t len;
    const char *ack = dfb_json_string(self->json, dfb_json_get(self->json, 0, "ackId"), &len);
    if (len + 1 > self->ack_cap) {
        size_t cap = len + 1 < 256 ? 256 : len + 1;
        char *copy = malloc(cap);
        if (!copy)
            return -1;
        free(self->ack_id);
        self->ack_id = copy;
        self->ack_cap = cap;
    }
    memcpy(self->ack_id, ack, len);
    self->ack_id[len] = '\0';
    self->ack_len = len;
    return 0;
}

static int
reset_ack(dfb_loop_t *self)
{
    if (!self->ack_id) {
        self->ack_id = malloc(256);
        if (!self->ack_id)
            return -1;
        self->ack_cap = 256;
    }
    self->ack_id[0] = '\0';
    self->ack_len = 0;
    return 0;
}

/*  After a successful read. */
static void
read_ok(dfb_loop_t *self, dfb_backoff_t *bo)
{
    self->stats.reads++;
    self->stats.last_read_ms = dfb_now_ms();
    dfb_backoff_reset(bo);
}

/* ---- datafeed v2 ------------------------------------------------------------ */

static const char *
v2_tag(const dfb_config_t *cfg)
{
    /* The Java BDK sends a tag only when it is not blank. */
    const char *t = cfg->datafeed_tag;
    if (!t || t[strspn(t, " \t\r\n")] == '\0')
        return NULL;
    return t;
}

/*  Looks in the list body for a reusable feed other than `dead`; copies it
    to self->feed_id. Returns 1 if found. */
static int
pick_listed(dfb_loop_t *self, const char *dead)
{
    const char *tag = v2_tag(self->cfg);
    for (dfb_json_ref_t f = dfb_json_first(self->json, 0); f != DFB_JSON_NONE;
         f = dfb_json_next(self->json, f)) {
        if (dfb_json_type(self->json, f) != DFB_JSON_OBJECT)
            continue;
        size_t len = 0;
        const char *id = body_id(self, f, &len);
        dfb_json_ref_t t = dfb_json_get(self->json, f, "type");
        const char *type = t == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, t, NULL);
        if (!id)
            continue;
        char copy[sizeof self->feed_id];
        memcpy(copy, id, len);
        copy[len] = '\0';
        if ((dead && strcmp(copy, dead) == 0) || !dfb_feed_is_reusable(copy, type, tag))
            continue;
        memcpy(self->feed_id, copy, len + 1);
        return 1;
    }
    return 0;
}

/*  The create body, as the Java BDK builds it: {} plus "tag" when
    datafeed.tag is not blank, "includeInvisible":true when it is set true. */
static char *
create_body(const dfb_config_t *cfg)
{
    sbuf_t b = {0};
    const char *tag = v2_tag(cfg);
    sb_adds(&b, "{");
    if (tag) {
        sb_adds(&b, "\"tag\":");
        sb_quote(&b, tag, strlen(tag));
    }
    if (cfg->datafeed_include_invisible == 1)
        sb_adds(&b, tag ? ",\"includeInvisible\":true" : "\"includeInvisible\":true");
    sb_adds(&b, "}");
    char *text = sb_text(&b);
    if (!text)
        dfb_buf_free(&b.buf);
    return text;
}

/*  Gets a feed to read: lists the feeds and adopts the first reusable one
    other than `dead` (NULL at start); only if there is none, deletes `dead`
    (once; a 400/404 there is fine) and creates one. A failed create is
    followed by a new list before the next create, so that a create whose
    answer was lost (timeout, reset, truncated body) never makes a second
    feed: one create per start or per 400, whatever the faults. */
static outcome_t
obtain_feed(dfb_loop_t *self, const char *dead)
{
    const dfb_retry_cfg_t *retry = &self->cfg->datafeed_retry;
    char url[900];
    char dead_copy[sizeof self->feed_id];
    int deleted = 0;
    dfb_backoff_t bo;
    dfb_backoff_init(&bo, retry);
    if (dead) {
        snprintf(dead_copy, sizeof dead_copy, "%s", dead);
        dead = dead_copy;
    }
    char *body = create_body(self->cfg);
    if (!body) {
        dfb_error("create datafeed: out of memory: exiting (status %d)", DFB_EXIT_INTERNAL);
        return end(self, DFB_EXIT_INTERNAL);
    }
    outcome_t out;
    for (;;) {
        snprintf(url, sizeof url, "%s/agent/v5/datafeeds", self->agent_url);
        out = call_until(self, DFB_CALL_LIST, "GET", url, NULL, 0, accept_list, NULL, retry,
                         "datafeed.retry");
        if (out != OUT_OK)
            break;
        if (pick_listed(self, dead)) {
            if (dead) {
                self->stats.adopted++;
                dfb_logkv(DFB_LOG_INFO, DFB_FIELDS(dfb_ls("feed", feed_shown(self))),
                          "adopting datafeed %s, listed meanwhile (another instance created it)",
                          feed_shown(self));
            } else {
                dfb_logkv(DFB_LOG_INFO, DFB_FIELDS(dfb_ls("feed", feed_shown(self))),
                          "reusing datafeed %s", feed_shown(self));
            }
            break;
        }
        if (dead && !deleted) {
            snprintf(url, sizeof url, "%s/agent/v5/datafeeds/%s", self->agent_url, dead);
            out = call_until(self, DFB_CALL_DELETE, "DELETE", url, NULL, 0, NULL, NULL, retry,
                             "datafeed.retry");
            if (out != OUT_OK)
                break;
            deleted = 1;
        }
        snprintf(url, sizeof url, "%s/agent/v5/datafeeds", self->agent_url);
        dfb_action_t act =
            attempt(self, DFB_CALL_CREATE, "POST", url, body, strlen(body), accept_create);
        if (act == DFB_ACT_OK) {
            size_t len = 0;
            const char *id = body_id(self, 0, &len);
            memcpy(self->feed_id, id, len);
            self->feed_id[len] = '\0';
            self->stats.created++;
            dfb_logkv(DFB_LOG_INFO, DFB_FIELDS(dfb_ls("feed", feed_shown(self))),
                      "created datafeed %s", feed_shown(self));
            out = OUT_OK;
            break;
        }
        out = recover(self, DFB_CALL_CREATE, act, &bo, "datafeed.retry");
        if (out != OUT_RETRY)
            break;
        /* List again: the create may have succeeded without us hearing it. */
    }
    free(body);
    if (out == OUT_OK && reset_ack(self) != 0)
        return end(self, DFB_EXIT_INTERNAL);
    return out;
}

/*  v2: a feed, then read -> publish -> ack with the next read. A 400 on
    read gets another feed (obtain_feed) and the read is retried after the
    read's backoff; the read's attempts count across recreates. */
static outcome_t
run_v2(dfb_loop_t *self)
{
    outcome_t out = obtain_feed(self, NULL);
    self->stats.ready = out == OUT_OK;
    char url[900];
    sbuf_t body = {0};
    dfb_backoff_t bo;
    dfb_backoff_init(&bo, &self->cfg->datafeed_retry);
    while (out == OUT_OK) {
        snprintf(url, sizeof url, "%s/agent/v5/datafeeds/%s/read", self->agent_url, self->feed_id);
        dfb_buf_reset(&body.buf);
        sb_adds(&body, "{\"ackId\":");
        sb_quote(&body, self->ack_id, self->ack_len);
        sb_adds(&body, ",\"updatePresence\":true}");
        if (body.oom) {
            out = end(self, DFB_EXIT_INTERNAL);
            break;
        }
        out = call_until(self, DFB_CALL_READ, "POST", url, (const char *)body.buf.data,
                         body.buf.len, accept_read, &bo, NULL, "datafeed.retry");
        if (out == OUT_OK) {
            read_ok(self, &bo);
            if (publish_batch(self) != 0)
                out = end(self, DFB_EXIT_INTERNAL);
        } else if (out == OUT_RECREATE) {
            self->stats.recreates++;
            self->stats.ready = 0;
            dfb_logkv(DFB_LOG_WARN,
                      DFB_FIELDS(dfb_ls("call", call_label(DFB_CALL_READ)),
                                 dfb_ls("feed", feed_shown(self)), dfb_li("status", 400)),
                      "datafeed %s is gone (400): looking for another one", feed_shown(self));
            out = obtain_feed(self, self->feed_id);
            self->stats.ready = out == OUT_OK;
            if (out == OUT_OK)
                out = backoff(self, DFB_CALL_READ, &bo, "datafeed.retry");
            if (out == OUT_RETRY)
                out = OUT_OK;
        }
    }
    dfb_buf_free(&body.buf);
    return out;
}

/* ---- datafeed v1 (Agent /v4, deprecated) ------------------------------------ */

/*  Creates a v1 feed and writes the id file (a failed write is logged: the
    loop goes on, a restart will create another feed). */
static outcome_t
create_v1(dfb_loop_t *self, const char *idfile)
{
    char url[600];
    snprintf(url, sizeof url, "%s/agent/v4/datafeed/create", self->agent_url);
    outcome_t out = call_until(self, DFB_CALL_V1_CREATE, "POST", url, "", 0, accept_create, NULL,
                               &self->cfg->datafeed_retry, "datafeed.retry");
    if (out != OUT_OK)
        return out;
    size_t len = 0;
    const char *id = body_id(self, 0, &len);
    memcpy(self->feed_id, id, len);
    self->feed_id[len] = '\0';
    self->stats.created++;
    if (dfb_feedfile_write(idfile, self->feed_id, self->agent_url) != 0)
        dfb_warn("created v1 datafeed %s, but cannot write %s: %s", feed_shown(self), idfile,
                 strerror(errno));
    else
        dfb_logkv(DFB_LOG_INFO, DFB_FIELDS(dfb_ls("feed", feed_shown(self))),
                  "created v1 datafeed %s (saved in %s)", feed_shown(self), idfile);
    return OUT_OK;
}

/*  v1: the id from the id file, else a new feed; then GET .../read in a
    loop, no ackId (v1 removes events as it serves them). A 400 means the
    feed is gone: create another one and rewrite the file. */
static outcome_t
run_v1(dfb_loop_t *self)
{
    char idfile[1100], url[900];
    const char *why = NULL;
    if (dfb_feedfile_path(self->cfg->datafeed_id_file_path, idfile, sizeof idfile) != 0) {
        dfb_error("datafeed.idFilePath: too long: exiting (status %d)", DFB_EXIT_INTERNAL);
        return end(self, DFB_EXIT_INTERNAL);
    }
    outcome_t out = OUT_OK;
    if (dfb_feedfile_read(idfile, self->feed_id, sizeof self->feed_id, &why) == 0) {
        dfb_logkv(DFB_LOG_INFO, DFB_FIELDS(dfb_ls("feed", feed_shown(self))),
                  "reusing v1 datafeed %s from %s", feed_shown(self), idfile);
    } else {
        dfb_info("no usable v1 datafeed id in %s (%s): creating a feed", idfile, why);
        out = create_v1(self, idfile);
    }
    dfb_backoff_t bo;
    dfb_backoff_init(&bo, &self->cfg->datafeed_retry);
    self->stats.ready = out == OUT_OK;
    while (out == OUT_OK) {
        snprintf(url, sizeof url, "%s/agent/v4/datafeed/%s/read", self->agent_url, self->feed_id);
        out = call_until(self, DFB_CALL_V1_READ, "GET", url, NULL, 0, accept_v1_read, &bo, NULL,
                         "datafeed.retry");
        if (out == OUT_OK) {
            read_ok(self, &bo);
            /* No ack in v1: a failed publish is counted, nothing to hold back. */
            if (self->last_status != 204)
                publish_events(self, 0);
        } else if (out == OUT_RECREATE) {
            self->stats.recreates++;
            self->stats.ready = 0;
            dfb_logkv(DFB_LOG_WARN,
                      DFB_FIELDS(dfb_ls("call", call_label(DFB_CALL_V1_READ)),
                                 dfb_ls("feed", feed_shown(self)), dfb_li("status", 400)),
                      "v1 datafeed %s is gone (400): creating another one", feed_shown(self));
            out = create_v1(self, idfile);
            self->stats.ready = out == OUT_OK;
            if (out == OUT_OK)
                out = backoff(self, DFB_CALL_V1_READ, &bo, "datafeed.retry");
            if (out == OUT_RETRY)
                out = OUT_OK;
        }
    }
    return out;
}

/* ---- datahose ---------------------------------------------------------------- */

/*  Datahose: no list/create/delete; the feed is keyed by (tag, eventTypes)
    on the agent's side. A 400 is not recovered (dfb_policy). */
static outcome_t
run_datahose(dfb_loop_t *self)
{
    const dfb_config_t *cfg = self->cfg;
    char url[600];
    snprintf(url, sizeof url, "%s/agent/v5/events/read", self->agent_url);
    /* The part of the body that never changes. */
    sbuf_t head = {0}, body = {0};
    sb_adds(&head, "{\"type\":\"datahose\",\"tag\":");
    sb_quote(&head, cfg->datahose_tag, strlen(cfg->datahose_tag));
    sb_adds(&head, ",\"eventTypes\":[");
    for (size_t i = 0; i < cfg->datahose_event_types_n; i++) {
        if (i)
            sb_adds(&head, ",");
        sb_quote(&head, cfg->datahose_event_types[i], strlen(cfg->datahose_event_types[i]));
    }
    sb_adds(&head, "],\"ackId\":");
    dfb_info("reading the datahose, tag '%s', %zu event types", cfg->datahose_tag,
             cfg->datahose_event_types_n);
    dfb_backoff_t bo;
    dfb_backoff_init(&bo, &cfg->datahose_retry);
    outcome_t out = reset_ack(self) == 0 ? OUT_OK : end(self, DFB_EXIT_INTERNAL);
    self->stats.ready = out == OUT_OK; /* no feed to obtain: the agent keys it */
    while (out == OUT_OK) {
        dfb_buf_reset(&body.buf);
        sb_add(&body, (const char *)head.buf.data, head.buf.len);
        sb_quote(&body, self->ack_id, self->ack_len);
        sb_adds(&body, ",\"updatePresence\":true}");
        if (head.oom || body.oom) {
            out = end(self, DFB_EXIT_INTERNAL);
            break;
        }
        out = call_until(self, DFB_CALL_DATAHOSE, "POST", url, (const char *)body.buf.data,
                         body.buf.len, accept_read, &bo, NULL, "datahose.retry");
        if (out == OUT_OK) {
            read_ok(self, &bo);
            if (publish_batch(self) != 0)
                out = end(self, DFB_EXIT_INTERNAL);
        } else if (out == OUT_RECREATE) {
            out = end(self, DFB_EXIT_INTERNAL); /* not in the datahose table */
        }
    }
    dfb_buf_free(&head.buf);
    dfb_buf_free(&body.buf);
    return out;
}

/* ---- entry ------------------------------------------------------------------ */

static int run(dfb_loop_t *self);

int
dfb_loop_run(dfb_loop_t *self)
{
    self->stats.ready = 0;
    self->stats.exit_code = 0;
    self->stats.state = 1;
    int rc = run(self);
    self->stats.ready = 0;
    self->stats.exit_code = (uint64_t)rc;
    self->stats.state = 2;
    return rc;
}

static int
run(dfb_loop_t *self)
{
    /* Nothing from a previous run survives: a run after an ended one
       starts from scratch (no "already started" trap). */
    self->exit_code = DFB_EXIT_STOPPED;
    self->feed_id[0] = '\0';
    self->last_status = 0;
    self->last_error[0] = '\0';
    if (reset_ack(self) != 0)
        return DFB_EXIT_INTERNAL;

    /* Login, then the bot id; a 401 on sessioninfo gets one fresh login. */
    int64_t bot = 0;
    dfb_auth_rc_t arc = DFB_AUTH_OK;
    for (int round = 0; round < 2; round++) {
        /* a fresh login unless another thread has logged in since ours */
        arc = dfb_auth_refresh_shared(self->auth, self->http, self->stop_fd, &self->auth_gen);
        if (arc != DFB_AUTH_OK)
            break; /* dfb_auth logged why */
        arc = dfb_auth_session_info(self->auth, self->http, self->stop_fd, &bot);
        if (arc != DFB_AUTH_UNAUTHORIZED)
            break;
        if (round == 1)
            dfb_logkv(DFB_LOG_ERROR,
                      DFB_FIELDS(dfb_ls("call", dfb_upstream_call_name(DFB_UP_SESSION_INFO)),
                                 dfb_li("status", 401)),
                      "session info: 401 right after authenticating: exiting (status %d)",
                      DFB_EXIT_AUTH);
    }
    if (arc == DFB_AUTH_STOPPED)
        return DFB_EXIT_STOPPED;
    if (arc == DFB_AUTH_UNAUTHORIZED)
        return DFB_EXIT_AUTH;
    if (arc == DFB_AUTH_EXHAUSTED)
        return DFB_EXIT_EXHAUSTED;
    if (arc != DFB_AUTH_OK)
        return DFB_EXIT_FATAL;
    dfb_publish_set_bot(self->pub, bot);

    if (self->cfg->source == DFB_SOURCE_DATAHOSE)
        run_datahose(self);
    else if (self->cfg->datafeed_version == DFB_DATAFEED_V1)
        run_v1(self);
    else
        run_v2(self);
    return self->exit_code;
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
    /* Reuse with and without datafeed.tag (Java BDK isMatchingFeed). */
    struct {
        const char *id, *type, *tag;
        int want;
    } reuse[] = {
        {"abc_f", "fanout", NULL, 1},      {"abc_f", NULL, NULL, 1},
        {"abc_p_x", "datahose", NULL, 0},  {"mytag", "fanout", "mytag", 1},
        {"mytag", "FANOUT", "mytag", 1},   {"mytag", "datahose", "mytag", 0},
        {"mytag", NULL, "mytag", 0},       {"abc_f", "fanout", "mytag", 0},
        {"mytag_f", "fanout", "mytag", 0}, {NULL, "fanout", NULL, 0},
    };
    for (size_t i = 0; i < sizeof reuse / sizeof reuse[0]; i++) {
        int got = dfb_feed_is_reusable(reuse[i].id, reuse[i].type, reuse[i].tag);
        if (got != reuse[i].want) {
            printf("FAIL reusable(%s, %s, tag %s) = %d\n", reuse[i].id ? reuse[i].id : "NULL",
                   reuse[i].type ? reuse[i].type : "NULL", reuse[i].tag ? reuse[i].tag : "NULL",
                   got);
            fails++;
        }
    }
    /* The create body, as the Java BDK's V5DatafeedCreateBody. */
    struct {
        const char *tag;
        int inv;
        const char *want;
    } bodies[] = {
        {NULL, -1, "{}"},
        {NULL, 0, "{}"},
        {NULL, 1, "{\"includeInvisible\":true}"},
        {"t1", -1, "{\"tag\":\"t1\"}"},
        {"t\"1", 1, "{\"tag\":\"t\\\"1\",\"includeInvisible\":true}"},
        {"  ", 1, "{\"includeInvisible\":true}"},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        dfb_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.datafeed_tag = (char *)bodies[i].tag;
        cfg.datafeed_include_invisible = bodies[i].inv;
        char *b = create_body(&cfg);
        if (verbose)
            printf("  create body %s\n", b ? b : "NULL");
        if (!b || strcmp(b, bodies[i].want) != 0) {
            printf("FAIL create body %s, want %s\n", b ? b : "NULL", bodies[i].want);
            fails++;
        }
        free(b);
    }
    /* A request body's string is bytes with a length: a NUL inside an
       ackId is escaped, never the end of it. */
    {
        sbuf_t b = {0};
        sb_quote(&b, "Qk3\0t\"\\-1", 9);
        const char *want = "\"Qk3\\u0000t\\\"\\\\-1\"";
        char *got = sb_text(&b);
        if (!got || b.buf.len != strlen(want) || strcmp(got, want) != 0) {
            printf("FAIL sb_quote with a NUL: %s, want %s\n", got ? got : "NULL", want);
            fails++;
        }
        dfb_buf_free(&b.buf);
    }
    /* The error table (every call x every response class). */
    fails += dfb_policy_test(verbose);
    return fails;
}
