/*  dfb_outbound: one command channel request turned into its Symphony call
    and an outcome (see dfb_outbound.h). What makes a message post exactly
    once: the mark in its data, the rule that a failure after the request
    went out is ambiguous and settled by looking for the mark before any new
    create, and fresh connections for posts (curl would otherwise re-send a
    post by itself when a reused connection dies). */
#define _GNU_SOURCE /* memmem */
#include "dfb_outbound.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "dfb_http.h"
#include "dfb_json.h"
#include "dfb_log.h"
#include "dfb_retry.h"
#include "dfb_upstream.h"

struct dfb_outbound {
    const dfb_config_t *cfg; /* borrowed */
    dfb_auth_t *auth;        /* borrowed */
    dfb_http_t *http;
    int stop_fd;
    uint64_t gen; /* the shared session's generation in http (0: none yet) */
    int64_t lookback_ms;
    int64_t settle_ms; /* bridge.commandsSettleMillis: the wait before a lookup */
    int page, pages; /* the lookup's bounds (DFB_OUTBOUND_PAGE, DFB_OUTBOUND_PAGES) */
    char pod_url[512];
    char agent_url[512];
    dfb_json_t *json;  /* responses */
    dfb_json_t *json2; /* a listed message's data */
    dfb_buf_t body;    /* the request body */
    dfb_buf_t scratch;
};

/*  One HTTP call of a request. */
typedef struct {
    dfb_up_call_t up;
    const char *method;
    char url[2048];
    const char *content_type; /* NULL = JSON */
    int posts;                /* a message create/update: fresh connection, ambiguity matters */
} call_t;

/*  What one attempt came to. */
typedef enum {
    A_OK,        /* 2xx with a usable body (or 204) */
    A_REJECTED,  /* 4xx other than 401 and 429: nothing was done */
    A_AUTH,      /* 401 */
    A_SAFE,      /* failed, certainly not applied: retry (not sent, 429) */
    A_AMBIGUOUS, /* failed after the request went out: it may have been applied */
    A_FATAL,     /* not retried: unusable configuration (certificate) or request */
    A_STOPPED
} attempt_t;

dfb_outbound_t *
dfb_outbound_new(const dfb_config_t *cfg, dfb_auth_t *auth, int stop_fd, char *err, size_t errlen)
{
    dfb_outbound_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->auth = auth;
    self->stop_fd = stop_fd;
    self->lookback_ms = DFB_OUTBOUND_LOOKBACK_MS;
    self->settle_ms = cfg->commands_settle_ms;
    self->page = DFB_OUTBOUND_PAGE;
    self->pages = DFB_OUTBOUND_PAGES;
    self->http =
        dfb_http_new(cfg->connect_timeout_ms, cfg->read_timeout_ms, cfg->max_body_bytes, stop_fd);
    self->json = dfb_json_new();
    self->json2 = dfb_json_new();
    if (!self->http || !self->json || !self->json2) {
        snprintf(err, errlen, "out of memory");
        dfb_outbound_destroy(&self);
        return NULL;
    }
    if (dfb_http_configure(self->http, cfg, err, errlen) != 0) {
        dfb_outbound_destroy(&self);
        return NULL;
    }
    if (dfb_endpoint_url(&cfg->pod, self->pod_url, sizeof self->pod_url) ||
        dfb_endpoint_url(&cfg->agent, self->agent_url, sizeof self->agent_url)) {
        snprintf(err, errlen, "config: endpoint URL too long");
        dfb_outbound_destroy(&self);
        return NULL;
    }
    return self;
}

void
dfb_outbound_destroy(dfb_outbound_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_outbound_t *self = *self_p;
    dfb_http_destroy(&self->http);
    dfb_json_destroy(&self->json);
    dfb_json_destroy(&self->json2);
    dfb_buf_free(&self->body);
    dfb_buf_free(&self->scratch);
    free(self);
    *self_p = NULL;
}

void
dfb_outbound_set_lookback(dfb_outbound_t *self, int64_t ms)
{
    self->lookback_ms = ms >= 0 ? ms : DFB_OUTBOUND_LOOKBACK_MS;
}

void
dfb_outbound_set_paging(dfb_outbound_t *self, int page, int pages)
{
    self->page = page >= 1 && page <= DFB_OUTBOUND_PAGE ? page : DFB_OUTBOUND_PAGE;
    self->pages = pages >= 1 && pages <= 1000 ? pages : DFB_OUTBOUND_PAGES;
}

/* ---- building the call ------------------------------------------------------- */

static int
puts_(dfb_buf_t *b, const char *s)
{
    return dfb_buf_put(b, s, strlen(s));
}

/*  Percent-encodes s (everything but RFC 3986's unreserved characters). */
static int
put_pct(dfb_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            if (dfb_buf_put(b, &c, 1))
                return -1;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (dfb_buf_put(b, e, 3))
                return -1;
        }
    }
    return 0;
}

static void
safe_id(const dfb_cmd_str_t *id, char *out, size_t outlen)
{
    dfb_cmd_urlsafe_id(id->s, id->len, out, outlen);
}

/*  One multipart part's head. */
static int
part_head(dfb_buf_t *b, const char *boundary, const char *name, const char *filename,
          size_t filename_len, const char *ctype, size_t ctype_len)
{
    if (puts_(b, "--") || puts_(b, boundary) ||
        puts_(b, "\r\nContent-Disposition: form-data; name=\"") || puts_(b, name) || puts_(b, "\""))
        return -1;
    if (filename &&
        (puts_(b, "; filename=\"") || dfb_buf_put(b, filename, filename_len) || puts_(b, "\"")))
        return -1;
    if (ctype && (puts_(b, "\r\nContent-Type: ") || dfb_buf_put(b, ctype, ctype_len)))
        return -1;
    return puts_(b, "\r\n\r\n");
}

/*  The attachment (or preview) parts, in order. */
static int
file_parts(dfb_buf_t *b, const char *boundary, const dfb_cmd_args_t *a, int previews)
{
    dfb_mpack_reader_t r = {a->attachments, a->attachments + a->attachments_len};
    uint32_t n = 0;
    if (a->attachments && dfb_mpack_read_array(&r, &n) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nk;
        const char *name = NULL, *ctype = "application/octet-stream";
        size_t name_len = 0, ctype_len = strlen(ctype), content_len = 0, preview_len = 0;
        const uint8_t *content = NULL, *preview = NULL;
        if (dfb_mpack_read_map(&r, &nk) != 0)
            return -1;
        for (uint32_t j = 0; j < nk; j++) {
            const char *k;
            size_t kl;
            if (dfb_mpack_read_str(&r, &k, &kl) != 0)
                return -1;
            if (kl == 4 && memcmp(k, "name", 4) == 0) {
                if (dfb_mpack_read_str(&r, &name, &name_len))
                    return -1;
            } else if (kl == 12 && memcmp(k, "content_type", 12) == 0) {
                if (dfb_mpack_read_str(&r, &ctype, &ctype_len))
                    return -1;
            } else if (kl == 7 && memcmp(k, "content", 7) == 0) {
                if (dfb_mpack_read_bin(&r, &content, &content_len))
                    return -1;
            } else if (kl == 7 && memcmp(k, "preview", 7) == 0) {
                if (dfb_mpack_read_bin(&r, &preview, &preview_len))
                    return -1;
            } else if (dfb_mpack_skip(&r, 8) != 0)
                return -1;
        }
        const uint8_t *bytes = previews ? preview : content;
        size_t len = previews ? preview_len : content_len;
        if (previews && !preview)
            continue;
        if (part_head(b, boundary, previews ? "preview" : "attachment", name, name_len, ctype,
                      ctype_len) ||
            (len && dfb_buf_put(b, bytes, len)) || puts_(b, "\r\n"))
            return -1;
    }
    return 0;
}

/*  The multipart/form-data body of a create or update: message, data,
    version, [silent], attachment x n, preview x n. The boundary is random
    and checked not to occur in the body (else drawn again). */
static int
multipart(dfb_outbound_t *self, const dfb_cmd_req_t *req, const dfb_cmd_args_t *a, const char *mark,
          char *ctype, size_t ctype_len)
{
    dfb_buf_t *b = &self->body;
    for (int round = 0; round < 8; round++) {
        uint8_t rnd[16];
        char boundary[64];
        if (RAND_bytes(rnd, sizeof rnd) != 1)
            return -1;
        int n = snprintf(boundary, sizeof boundary, "dfbridge-");
        for (int i = 0; i < 16; i++)
            n += snprintf(boundary + n, sizeof boundary - (size_t)n, "%02x", rnd[i]);
        dfb_buf_reset(b);
        dfb_buf_reset(&self->scratch);
        if (part_head(b, boundary, "message", NULL, 0, NULL, 0) ||
            dfb_cmd_message_text(&a->message, b) || puts_(b, "\r\n") ||
            part_head(b, boundary, "data", NULL, 0, NULL, 0) || dfb_cmd_data_json(a, mark, b) ||
            puts_(b, "\r\n") || part_head(b, boundary, "version", NULL, 0, NULL, 0) ||
            (a->has_version && dfb_buf_put(b, a->version.s, a->version.len)) || puts_(b, "\r\n"))
            return -1;
        if (req->op == DFB_OP_UPDATE &&
            (part_head(b, boundary, "silent", NULL, 0, NULL, 0) ||
             puts_(b, a->silent == 0 ? "false" : "true") || puts_(b, "\r\n")))
            return -1;
        if (file_parts(b, boundary, a, 0) || (a->npreviews && file_parts(b, boundary, a, 1)) ||
            puts_(b, "--") || puts_(b, boundary) || puts_(b, "--\r\n"))
            return -1;
        /* the boundary's own lines are "--" boundary: more means a part holds it */
        size_t bl = strlen(boundary), count = 0;
        for (size_t i = 0; i + bl <= b->len; i++)
            if (b->data[i] == 'd' && memcmp(b->data + i, boundary, bl) == 0)
                count++;
        size_t parts = 3 + (req->op == DFB_OP_UPDATE) + a->nattachments + (size_t)a->npreviews;
        if (count == parts + 1) {
            snprintf(ctype, ctype_len, "multipart/form-data; boundary=%s", boundary);
            return 0;
        }
    }
    return -1;
}

/*  The call of req (url, method, body in self->body). 0, or -1 (memory). */
static int
build_call(dfb_outbound_t *self, const dfb_cmd_req_t *req, const dfb_cmd_args_t *a,
           const char *mark, call_t *c, char *ctype, size_t ctype_len)
{
    char sid[DFB_CMD_MAX_SID + 1], mid[DFB_CMD_MAX_SID + 1];
    safe_id(&a->stream_id, sid, sizeof sid);
    safe_id(&a->message_id, mid, sizeof mid);
    dfb_buf_t *b = &self->body;
    dfb_buf_reset(b);
    c->content_type = NULL;
    c->posts = dfb_op_posts(req->op);
    c->method = "POST";
    switch (req->op) {
    case DFB_OP_SEND:
    case DFB_OP_UPDATE:
        c->up = req->op == DFB_OP_SEND ? DFB_UP_MSG_CREATE : DFB_UP_MSG_UPDATE;
        if (req->op == DFB_OP_SEND)
            snprintf(c->url, sizeof c->url, "%s/agent/v4/stream/%s/message/create", self->agent_url,
                     sid);
        else
            snprintf(c->url, sizeof c->url, "%s/agent/v4/stream/%s/message/%s/update",
                     self->agent_url, sid, mid);
        c->content_type = ctype;
        return multipart(self, req, a, mark, ctype, ctype_len);
    case DFB_OP_SUPPRESS:
        c->up = DFB_UP_MSG_SUPPRESS;
        snprintf(c->url, sizeof c->url, "%s/pod/v1/admin/messagesuppression/%s/suppress",
                 self->pod_url, mid);
        return 0;
    case DFB_OP_GET:
        c->up = DFB_UP_MSG_GET;
        c->method = "GET";
        snprintf(c->url, sizeof c->url, "%s/agent/v1/message/%s", self->agent_url, mid);
        return 0;
    case DFB_OP_CREATE_IM: {
        c->up = DFB_UP_IM_CREATE;
        snprintf(c->url, sizeof c->url, "%s/pod/v1/im/create", self->pod_url);
        char num[32];
        if (puts_(b, "["))
            return -1;
        if (a->has_user_id) {
            snprintf(num, sizeof num, "%" PRId64, a->user_id);
            if (puts_(b, num))
                return -1;
        } else {
            dfb_mpack_reader_t r = {a->user_ids, a->user_ids + a->user_ids_len};
            uint32_t n;
            if (dfb_mpack_read_array(&r, &n))
                return -1;
            for (uint32_t i = 0; i < n; i++) {
                int64_t v;
                if (dfb_mpack_read_int(&r, &v))
                    return -1;
                snprintf(num, sizeof num, "%s%" PRId64, i ? "," : "", v);
                if (puts_(b, num))
                    return -1;
            }
        }
        return puts_(b, "]");
    }
    case DFB_OP_ADD_MEMBER:
    case DFB_OP_REMOVE_MEMBER: {
        int add = req->op == DFB_OP_ADD_MEMBER;
        c->up = add ? DFB_UP_ROOM_ADD : DFB_UP_ROOM_REMOVE;
        snprintf(c->url, sizeof c->url, "%s/pod/v1/room/%s/membership/%s", self->pod_url, sid,
                 add ? "add" : "remove");
        char json[48];
        snprintf(json, sizeof json, "{\"id\":%" PRId64 "}", a->user_id);
        return puts_(b, json);
    }
    case DFB_OP_STREAM_INFO:
        c->up = DFB_UP_STREAM_INFO;
        c->method = "GET";
        snprintf(c->url, sizeof c->url, "%s/pod/v2/streams/%s/info", self->pod_url, sid);
        return 0;
    case DFB_OP_USERS: {
        c->up = DFB_UP_USERS;
        c->method = "GET";
        /* the query is built in scratch, then copied into the url */
        dfb_buf_t *q = &self->scratch;
        dfb_buf_reset(q);
        const char *key = a->lookup_by == 'u'   ? "uid="
                          : a->lookup_by == 'e' ? "email="
                                                : "username=";
        if (puts_(q, self->pod_url) || puts_(q, "/pod/v3/users?") || puts_(q, key))
            return -1;
        dfb_mpack_reader_t r =
            a->lookup_by == 'u' ? (dfb_mpack_reader_t){a->user_ids, a->user_ids + a->user_ids_len}
                                : (dfb_mpack_reader_t){a->strs, a->strs + a->strs_len};
        uint32_t n;
        if (dfb_mpack_read_array(&r, &n))
            return -1;
        for (uint32_t i = 0; i < n; i++) {
            if (i && puts_(q, ","))
                return -1;
            if (a->lookup_by == 'u') {
                int64_t v;
                char num[24];
                if (dfb_mpack_read_int(&r, &v))
                    return -1;
                snprintf(num, sizeof num, "%" PRId64, v);
                if (puts_(q, num))
                    return -1;
            } else {
                const char *s;
                size_t len;
                if (dfb_mpack_read_str(&r, &s, &len) || put_pct(q, s, len))
                    return -1;
            }
        }
        /* usernames are looked up locally, as the BDKs do */
        int local = a->lookup_by == 'n' ? 1 : a->local == 1;
        if (puts_(q, local ? "&local=true" : "&local=false") ||
            (a->active >= 0 && puts_(q, a->active ? "&active=true" : "&active=false")))
            return -1;
        if (q->len >= sizeof c->url)
            return -1;
        memcpy(c->url, q->data, q->len);
        c->url[q->len] = 0;
        return 0;
    }
    default:
        return -1;
    }
}

/* ---- performing it ----------------------------------------------------------- */

/*  Symphony's `message` of an error body, or the body's start. */
static void
error_message(dfb_outbound_t *self, char *out, size_t outlen)
{
    size_t len;
    const char *body = dfb_http_body(self->http, &len);
    if (len && dfb_json_parse(self->json, body, len) == 0 &&
        dfb_json_type(self->json, 0) == DFB_JSON_OBJECT) {
        dfb_json_ref_t m = dfb_json_get(self->json, 0, "message");
        size_t ml;
        const char *s = m == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, m, &ml);
        if (s) {
            dfb_http_redact(self->http, s, ml, out, outlen);
            return;
        }
    }
    dfb_http_body_excerpt(self->http, out, outlen);
}

/*  One HTTP call: its class, the status and a description of a failure. */
static attempt_t
attempt(dfb_outbound_t *self, const call_t *c, const void *body, size_t body_len, int *status,
        char *what, size_t whatlen)
{
    dfb_http_opts_t opts = {.content_type = c->content_type, .fresh_connect = c->posts};
    int64_t t0 = dfb_upstream_now_us();
    dfb_http_err_t rc =
        dfb_http_request_ex(self->http, c->method, c->url, body, body_len, &opts, status);
    dfb_upstream_record(c->up, rc, *status, dfb_upstream_now_us() - t0);
    const char *name = dfb_upstream_call_name(c->up);
    what[0] = 0;
    if (rc == DFB_HTTP_ESTOPPED) {
        snprintf(what, whatlen, "%s: the bridge is stopping", name);
        return A_STOPPED;
    }
    if (rc != DFB_HTTP_OK) {
        snprintf(what, whatlen, "%s: %s (%s)", name, dfb_http_strerror(rc),
                 dfb_http_detail(self->http));
        if (rc == DFB_HTTP_ECERT)
            return A_FATAL;
        if (!dfb_http_request_sent(self->http))
            return rc == DFB_HTTP_EOTHER ? A_FATAL : A_SAFE;
        return A_AMBIGUOUS;
    }
    int s = *status;
    if (s >= 200 && s < 300)
        return A_OK;
    if (s == 401) {
        snprintf(what, whatlen, "%s: HTTP 401", name);
        return A_AUTH;
    }
    if (s == 429) {
        snprintf(what, whatlen, "%s: HTTP 429", name);
        return A_SAFE;
    }
    if (s >= 500) {
        snprintf(what, whatlen, "%s: HTTP %d", name, s);
        return A_AMBIGUOUS;
    }
    if (s >= 400) {
        char msg[400];
        error_message(self, msg, sizeof msg);
        snprintf(what, whatlen, "%s", msg);
        return A_REJECTED;
    }
    snprintf(what, whatlen, "%s: unexpected HTTP status %d", name, s);
    return A_AMBIGUOUS; /* 1xx/3xx: not an answer we understand */
}

/*  The response body as the result: JSON -> msgpack as events are (204 or
    an empty body: nil). 0, or -1 when the body is not JSON. */
static int
take_result(dfb_outbound_t *self, int status, dfb_cmd_outcome_t *out)
{
    size_t len;
    const char *body = dfb_http_body(self->http, &len);
    dfb_buf_reset(&out->result);
    if (status == 204 || len == 0)
        return dfb_mpack_nil(&out->result);
    if (dfb_json_parse(self->json, body, len) != 0 ||
        dfb_transcode_value(self->json, 0, &out->result) != 0) {
        dfb_buf_reset(&out->result);
        return -1;
    }
    return 0;
}

/*  The wait before the next try: the backoff, or Retry-After when longer,
    at most retry.maxIntervalMillis. -1 when the attempts are spent. */
static long
next_wait(dfb_outbound_t *self, dfb_backoff_t *b)
{
    long wait = dfb_backoff_next(b);
    if (wait < 0)
        return -1;
    long long ra = dfb_http_retry_after_ms(self->http);
    if (ra > wait)
        wait = ra > self->cfg->retry.max_ms ? self->cfg->retry.max_ms : (long)ra;
    return wait;
}

/*  Logs in again after a 401, shared with the loop and the other
    executors. 0, or -1 (out set: unavailable). */
static int
reauth(dfb_outbound_t *self, dfb_cmd_outcome_t *out)
{
    dfb_auth_rc_t rc = dfb_auth_refresh_shared(self->auth, self->http, self->stop_fd, &self->gen);
    if (rc == DFB_AUTH_OK)
        return 0;
    dfb_cmd_outcome_error(out, DFB_CMD_UNAVAILABLE, 0,
                          rc == DFB_AUTH_STOPPED ? "the bridge is stopping"
                                                 : "re-authentication failed after a 401");
    return -1;
}

typedef enum { L_FOUND, L_NOT_FOUND, L_FAILED, L_STOPPED } lookup_t;

/*  Is the message at ref (a V4Message of the list) the one with our mark? */
static int
has_mark(dfb_outbound_t *self, dfb_json_ref_t msg, const char *mark)
{
    dfb_json_ref_t d = dfb_json_get(self->json, msg, "data");
    size_t len;
    const char *data = d == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, d, &len);
    if (!data || !memmem(data, len, mark, 32)) /* cheap filter, then exactly */
        return 0;
    if (dfb_json_parse(self->json2, data, len) != 0)
        return 0;
    dfb_json_ref_t e = dfb_json_get(self->json2, 0, "dfbridge.request");
    dfb_json_ref_t id = e == DFB_JSON_NONE ? DFB_JSON_NONE : dfb_json_get(self->json2, e, "id");
    size_t il;
    const char *s = id == DFB_JSON_NONE ? NULL : dfb_json_string(self->json2, id, &il);
    return s && il == 32 && memcmp(s, mark, 32) == 0;
}

/*  Looks for the mark among the stream's messages since begin_ms -
    lookback (pages of 500, at most 20), each page retried per the `retry`
    block. L_FOUND fills out->result with the message. L_NOT_FOUND only
    when the list ended (a short page or a 204) without it: when every page
    allowed was full, the newest messages were not read and the answer is
    L_FAILED (unknown_outcome), so a busy room never gets a second post. */
static lookup_t
lookup(dfb_outbound_t *self, const char *sid, const char *mark, const dfb_outbound_ctx_t *ctx,
       dfb_cmd_outcome_t *out, char *why, size_t whylen)
{
    call_t c = {.up = DFB_UP_MSG_LIST, .method = "GET"};
    int64_t since = ctx->begin_ms - self->lookback_ms;
    if (since < 0)
        since = 0;
    int reauthed = 0;
    for (int page = 0; page < self->pages; page++) {
        snprintf(c.url, sizeof c.url, "%s/agent/v4/stream/%s/message?since=%" PRId64 "&limit=%d%s",
                 self->agent_url, sid, since, self->page, "");
        if (page) {
            size_t l = strlen(c.url);
            snprintf(c.url + l, sizeof c.url - l, "&skip=%d", page * self->page);
        }
        dfb_backoff_t b;
        dfb_backoff_init(&b, &self->cfg->retry);
        for (;;) {
            int status = 0;
            char what[512];
            out->attempts++;
            attempt_t at = attempt(self, &c, NULL, 0, &status, what, sizeof what);
            if (at == A_STOPPED) {
                snprintf(why, whylen, "%s", what);
                return L_STOPPED;
            }
            if (at == A_OK) {
                size_t len;
                const char *body = dfb_http_body(self->http, &len);
                if (status == 204 || len == 0)
                    return L_NOT_FOUND;
                if (dfb_json_parse(self->json, body, len) == 0 &&
                    dfb_json_type(self->json, 0) == DFB_JSON_ARRAY) {
                    uint32_t n = dfb_json_count(self->json, 0);
                    for (dfb_json_ref_t m = dfb_json_first(self->json, 0); m != DFB_JSON_NONE;
                         m = dfb_json_next(self->json, m))
                        if (has_mark(self, m, mark)) {
                            dfb_buf_reset(&out->result);
                            if (dfb_transcode_value(self->json, m, &out->result) != 0) {
                                snprintf(why, whylen, "out of memory");
                                return L_FAILED;
                            }
                            return L_FOUND;
                        }
                    if (n < (uint32_t)self->page)
                        return L_NOT_FOUND;
                    break; /* a full page: the next one */
                }
                snprintf(what, sizeof what, "msg_list: the answer is not a JSON array");
            } else if (at == A_AUTH && !reauthed) {
                reauthed = 1;
                dfb_cmd_outcome_t tmp;
                dfb_cmd_outcome_init(&tmp);
                int r = reauth(self, &tmp);
                if (r != 0) {
                    snprintf(why, whylen, "%s", tmp.message);
                    dfb_cmd_outcome_free(&tmp);
                    return L_FAILED;
                }
                dfb_cmd_outcome_free(&tmp);
                continue;
            } else if (at == A_REJECTED || at == A_AUTH || at == A_FATAL) {
                snprintf(why, whylen, "msg_list: %s%s%d)", what, status ? " (HTTP " : " (", status);
                return L_FAILED;
            }
            long wait = next_wait(self, &b);
            dfb_logkv(DFB_LOG_WARN,
                      DFB_FIELDS(dfb_ls("call", "msg_list"), dfb_li("status", status),
                                 dfb_li("attempt", b.attempts)),
                      "mark lookup: %s, attempt %d%s", what, b.attempts,
                      wait < 0 ? ": giving up" : "");
            if (wait < 0) {
                snprintf(why, whylen, "%s (after %d attempts)", what, b.attempts);
                return L_FAILED;
            }
            dfb_upstream_retry(DFB_UP_MSG_LIST);
            if (dfb_wait(self->stop_fd, wait)) {
                snprintf(why, whylen, "the bridge is stopping");
                return L_STOPPED;
            }
        }
    }
    snprintf(why, whylen,
             "the stream has more than %d messages since %" PRId64
             " (the lookup's limit): the newest, where the message would be, were not read",
             self->page * self->pages, since);
    return L_FAILED;
}

/*  After a possible post (ambiguous failure or a resumed request): looks
    for the mark. 1 = settled (out filled: found, or unknown_outcome), 0 =
    not found: the create may be made (again). */
static int
settle(dfb_outbound_t *self, const dfb_cmd_req_t *req, const char *mark,
       const dfb_outbound_ctx_t *ctx, const char *after, dfb_cmd_outcome_t *out)
{
    char why[600];
    lookup_t l;
    /* A listing may lag behind the store: give Symphony time to list what it
       may have stored before concluding "not found" (and posting again). */
    if (self->settle_ms > 0 && dfb_wait(self->stop_fd, self->settle_ms)) {
        snprintf(why, sizeof why, "the bridge is stopping");
        l = L_STOPPED;
    } else
        l = lookup(self, req->stream, mark, ctx, out, why, sizeof why);
    switch (l) {
    case L_FOUND:
        out->ok = 1;
        out->found = 1;
        out->definite = 1;
        dfb_logkv(DFB_LOG_INFO,
                  DFB_FIELDS(dfb_ls("call", "msg_list"), dfb_ls("op", dfb_op_name(req->op))),
                  "request %s: its message was found by its mark after %s: not posted again",
                  req->id, after);
        return 1;
    case L_NOT_FOUND:
        dfb_debug("request %s: no message with its mark after %s", req->id, after);
        return 0;
    default:
        dfb_cmd_outcome_error(out, DFB_CMD_UNKNOWN_OUTCOME, 0,
                              "%s; the message may have been posted and the stream could not be "
                              "searched for it: %s",
                              after, why);
        return 1;
    }
}

void
dfb_outbound_exec(dfb_outbound_t *self, const dfb_cmd_req_t *req, const dfb_outbound_ctx_t *ctx,
                  dfb_cmd_outcome_t *out)
{
    dfb_buf_t keep = out->result;
    memset(out, 0, sizeof *out);
    out->result = keep;
    dfb_buf_reset(&out->result);

    dfb_cmd_args_t a;
    char why[600], ctype[128], mark[33] = "";
    if (dfb_cmd_args_read(req, &a, why, sizeof why) != 0) {
        dfb_cmd_outcome_error(out, DFB_CMD_BAD_REQUEST, 0, "%s", why);
        return;
    }
    int posts = dfb_op_posts(req->op);
    if (posts)
        dfb_cmd_mark(ctx->scope, ctx->scope_len, req->id, req->id_len, mark);
    call_t c;
    if (build_call(self, req, &a, mark, &c, ctype, sizeof ctype) != 0) {
        dfb_cmd_outcome_error(out, DFB_CMD_UNAVAILABLE, 0, "cannot build the call (out of memory)");
        return;
    }
    dfb_debug("request %s: %s (%s)%s", req->id, dfb_op_name(req->op), dfb_upstream_call_name(c.up),
              ctx->resumed ? ", resumed" : "");

    /* the session: the shared tokens, or a first login */
    if (self->gen == 0)
        self->gen = dfb_auth_apply(self->auth, self->http);
    if (self->gen == 0 && reauth(self, out) != 0)
        return;

    if (posts && ctx->resumed &&
        settle(self, req, mark, ctx, "an earlier attempt that may have reached Symphony", out))
        return;

    dfb_backoff_t b;
    dfb_backoff_init(&b, &self->cfg->retry);
    int reauthed = 0;
    const char *name = dfb_upstream_call_name(c.up);
    for (;;) {
        int status = 0;
        char what[512];
        out->attempts++;
        /* a POST always has a body, if empty (suppress): Content-Length: 0 */
        const char *body = c.method[0] == 'G' ? NULL
                           : self->body.len   ? (const char *)self->body.data
                                              : "";
        attempt_t at = attempt(self, &c, body, self->body.len, &status, what, sizeof what);
        if (at == A_OK && take_result(self, status, out) != 0) {
            snprintf(what, sizeof what, "%s: HTTP %d with a body that is not JSON", name, status);
            at = A_AMBIGUOUS;
        }
        switch (at) {
        case A_OK:
            out->ok = 1;
            out->definite = 1;
            dfb_debug("request %s: %s HTTP %d", req->id, name, status);
            return;
        case A_REJECTED:
            dfb_logkv(DFB_LOG_WARN, DFB_FIELDS(dfb_ls("call", name), dfb_li("status", status)),
                      "request %s: %s rejected with HTTP %d", req->id, name, status);
            dfb_cmd_outcome_error(out, DFB_CMD_REJECTED, status, "%s", what);
            return;
        case A_AUTH:
            if (reauthed) {
                dfb_cmd_outcome_error(out, DFB_CMD_REJECTED, 401,
                                      "HTTP 401 again after re-authenticating");
                return;
            }
            reauthed = 1;
            if (reauth(self, out) != 0)
                return;
            continue;
        case A_STOPPED:
            if (posts && dfb_http_request_sent(self->http))
                dfb_cmd_outcome_error(out, DFB_CMD_UNKNOWN_OUTCOME, 0,
                                      "the bridge stopped during the call: the message may have "
                                      "been posted (the same id again looks for it)");
            else
                dfb_cmd_outcome_error(out, DFB_CMD_UNAVAILABLE, 0, "the bridge is stopping");
            return;
        case A_FATAL:
            dfb_logkv(DFB_LOG_WARN, DFB_FIELDS(dfb_ls("call", name), dfb_li("status", status)),
                      "request %s: %s", req->id, what);
            dfb_cmd_outcome_error(out, DFB_CMD_UNAVAILABLE, 0, "%s", what);
            return;
        case A_AMBIGUOUS:
            if (posts && settle(self, req, mark, ctx, what, out))
                return;
            break;
        case A_SAFE:
            break;
        }
        long wait = next_wait(self, &b);
        dfb_logkv(DFB_LOG_WARN,
                  DFB_FIELDS(dfb_ls("call", name), dfb_li("status", status),
                             dfb_li("attempt", b.attempts)),
                  "request %s: %s, attempt %d%s", req->id, what, b.attempts,
                  wait < 0 ? ": giving up (retry.maxAttempts)" : "");
        if (wait < 0) {
            dfb_cmd_outcome_error(out, DFB_CMD_UNAVAILABLE, 0, "gave up after %d attempts: %s",
                                  b.attempts, what);
            return;
        }
        dfb_upstream_retry(c.up);
        if (dfb_wait(self->stop_fd, wait)) {
            dfb_cmd_outcome_error(out, DFB_CMD_UNAVAILABLE, 0, "the bridge is stopping");
            return;
        }
    }
}

/* ---- self-test: the calls built for each op (no network) ---------------------- */

#include <unistd.h>

#include "df_check.h"

/*  Builds the call of one request given as msgpack bytes. */
static int
built(dfb_outbound_t *ob, const dfb_buf_t *frame, call_t *c, char *ctype, size_t ctlen)
{
    dfb_cmd_req_t req;
    dfb_cmd_args_t a;
    char why[256], mark[33];
    if (dfb_cmd_req_parse(frame->data, frame->len, 1 << 20, &req, why, sizeof why) != 0 ||
        dfb_cmd_args_read(&req, &a, why, sizeof why) != 0) {
        fprintf(stderr, "outbound test request refused: %s\n", why);
        return -1;
    }
    dfb_cmd_mark("", 0, req.id, req.id_len, mark);
    int rc = build_call(ob, &req, &a, mark, c, ctype, ctlen);
    dfb_cmd_req_free(&req);
    return rc;
}

/*  A request {id, op, args} with args written by the caller after this. */
static void
head(dfb_buf_t *b, const char *op, uint32_t nargs)
{
    dfb_buf_reset(b);
    dfb_mpack_map(b, 3);
    dfb_mpack_cstr(b, "id");
    dfb_mpack_cstr(b, "t1");
    dfb_mpack_cstr(b, "op");
    dfb_mpack_cstr(b, op);
    dfb_mpack_cstr(b, "args");
    dfb_mpack_map(b, nargs);
}

static int
body_is(dfb_outbound_t *ob, const char *want)
{
    return ob->body.len == strlen(want) && memcmp(ob->body.data, want, ob->body.len) == 0;
}

int
dfb_outbound_test(int verbose)
{
    (void)verbose;
    df_check_failures = 0;
    char path[] = "/tmp/dfb_outbound_test_XXXXXX", err[512];
    int fd = mkstemp(path);
    static const char yaml[] =
        "host: pod.example.com\nport: 8443\nagent:\n  host: agent.example.com\n"
        "bot:\n  username: b\n  privateKey:\n    path: /nonexistent.pem\n";
    CHECK(fd >= 0 && write(fd, yaml, sizeof yaml - 1) == (ssize_t)(sizeof yaml - 1));
    if (fd >= 0)
        close(fd);
    dfb_config_t *cfg = dfb_config_load(path, err, sizeof err);
    unlink(path);
    if (!cfg) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    dfb_outbound_t *ob = dfb_outbound_new(cfg, NULL, -1, err, sizeof err);
    CHECK(ob != NULL);
    if (!ob) {
        dfb_config_destroy(&cfg);
        return 1;
    }
    dfb_buf_t b = {0};
    call_t c;
    char ct[128];

    /* users by email: percent-encoded, comma-separated, local=false unless asked */
    head(&b, "users.lookup", 2);
    dfb_mpack_cstr(&b, "emails");
    dfb_mpack_array(&b, 2);
    dfb_mpack_cstr(&b, "ann+x@example.com");
    dfb_mpack_cstr(&b, "b&c=d e");
    dfb_mpack_cstr(&b, "active");
    dfb_mpack_bool(&b, 1);
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://pod.example.com:8443/pod/v3/users?email=ann%2Bx%40example.com,"
                     "b%26c%3Dd%20e&local=false&active=true");
    CHECK_STR(c.method, "GET");
    CHECK_EQ(c.up, DFB_UP_USERS);
    /* usernames: local forced true; ids exact int64 */
    head(&b, "users.lookup", 2);
    dfb_mpack_cstr(&b, "usernames");
    dfb_mpack_array(&b, 1);
    dfb_mpack_cstr(&b, "bob");
    dfb_mpack_cstr(&b, "local");
    dfb_mpack_bool(&b, 0);
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://pod.example.com:8443/pod/v3/users?username=bob&local=true");
    head(&b, "users.lookup", 1);
    dfb_mpack_cstr(&b, "user_ids");
    dfb_mpack_array(&b, 2);
    dfb_mpack_int(&b, INT64_MAX);
    dfb_mpack_int(&b, 7);
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url,
              "https://pod.example.com:8443/pod/v3/users?uid=9223372036854775807,7&local=false");

    /* IM: a JSON array; membership: {"id":N}; URL-safe stream ids in paths */
    head(&b, "streams.createIm", 1);
    dfb_mpack_cstr(&b, "user_ids");
    dfb_mpack_array(&b, 2);
    dfb_mpack_int(&b, 349026222344891);
    dfb_mpack_int(&b, INT64_MAX);
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://pod.example.com:8443/pod/v1/im/create");
    CHECK(body_is(ob, "[349026222344891,9223372036854775807]"));
    CHECK_EQ(c.posts, 0);
    head(&b, "rooms.removeMember", 2);
    dfb_mpack_cstr(&b, "stream_id");
    dfb_mpack_cstr(&b, "lX1hwfmQ+AK/k/a/BB0y2n///q2+0KfbdA==");
    dfb_mpack_cstr(&b, "user_id");
    dfb_mpack_int(&b, 349026222344891);
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://pod.example.com:8443/pod/v1/room/lX1hwfmQ-AK_k_a_BB0y2n___q2-0KfbdA/"
                     "membership/remove");
    CHECK(body_is(ob, "{\"id\":349026222344891}"));
    head(&b, "messages.get", 1);
    dfb_mpack_cstr(&b, "message_id");
    dfb_mpack_cstr(&b, "a+b/c==");
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://agent.example.com:8443/agent/v1/message/a-b_c");
    head(&b, "messages.suppress", 1);
    dfb_mpack_cstr(&b, "message_id");
    dfb_mpack_cstr(&b, "m1");
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://pod.example.com:8443/pod/v1/admin/messagesuppression/m1/suppress");
    CHECK_EQ(ob->body.len, 0);
    head(&b, "streams.info", 1);
    dfb_mpack_cstr(&b, "stream_id");
    dfb_mpack_cstr(&b, "s_1");
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://pod.example.com:8443/pod/v2/streams/s_1/info");

    /* update: multipart with silent "true" by default; the boundary nowhere but its lines */
    head(&b, "messages.update", 3);
    dfb_mpack_cstr(&b, "stream_id");
    dfb_mpack_cstr(&b, "s");
    dfb_mpack_cstr(&b, "message_id");
    dfb_mpack_cstr(&b, "m");
    dfb_mpack_cstr(&b, "message");
    dfb_mpack_cstr(&b, "--dfbridge-");
    CHECK_EQ(built(ob, &b, &c, ct, sizeof ct), 0);
    CHECK_STR(c.url, "https://agent.example.com:8443/agent/v4/stream/s/message/m/update");
    CHECK_EQ(c.posts, 1);
    CHECK_EQ(c.up, DFB_UP_MSG_UPDATE);
    CHECK(strncmp(ct, "multipart/form-data; boundary=dfbridge-", 39) == 0 && strlen(ct) == 71);
    char bnd[160];
    snprintf(bnd, sizeof bnd, "--%s\r\n", ct + 30);
    char want[2048];
    char mark[33];
    dfb_cmd_mark("", 0, "t1", 2, mark);
    snprintf(want, sizeof want,
             "%sContent-Disposition: form-data; name=\"message\"\r\n\r\n<messageML>--dfbridge-"
             "</messageML>\r\n%sContent-Disposition: form-data; name=\"data\"\r\n\r\n"
             "{\"dfbridge.request\":{\"type\":\"org.dfbridge.request\",\"version\":\"1.0\",\"id\":"
             "\"%s\"}}\r\n%sContent-Disposition: form-data; name=\"version\"\r\n\r\n\r\n"
             "%sContent-Disposition: form-data; name=\"silent\"\r\n\r\ntrue\r\n--%s--\r\n",
             bnd, bnd, mark, bnd, bnd, ct + 30);
    CHECK(body_is(ob, want));
    if (!body_is(ob, want))
        fprintf(stderr, "got:\n%.*s\nwant:\n%s\n", (int)ob->body.len, (char *)ob->body.data, want);

    dfb_buf_free(&b);
    dfb_outbound_destroy(&ob);
    dfb_config_destroy(&cfg);
    return DF_CHECK_RESULT();
}
