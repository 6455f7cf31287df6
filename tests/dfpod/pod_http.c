/* dfpod HTTP front end on libmicrohttpd: routes the Symphony endpoints and the /admin/
 * control interface, applies scripted faults (status, drop, truncate, slow, expire_*),
 * logs every non-admin call. One thread per connection, so a held long-poll blocks nothing. */
#include "pod.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <strings.h>

#define MAX_BODY_POD ((size_t)1 << 20)    /* Symphony endpoints */
#define MAX_BODY_ADMIN ((size_t)64 << 20) /* /admin/ */
#define MAX_BODY_POST ((size_t)64 << 20)  /* message create/update: attachments (30 MB) */
#define MAX_GENERATE 10000000L

struct pod_http_t {
    struct MHD_Daemon *d;
    const pod_config_t *cfg;
    pod_state_t *st;
    pod_jwt_t *jwt;
    pod_gen_t *gen;
    pod_out_t *out; /* outbound endpoints and their state */
    int port;
    char *tls_cert, *tls_key, *tls_ca; /* PEM texts MHD uses while it runs (NULL = none) */
};

/* One request's upload, accumulated across MHD calls. */
typedef struct {
    char *body;
    size_t len, cap;
    bool too_big;
    bool admin;
    size_t limit; /* body size limit of this path */
} req_t;

/* ---- responses ---- */

/* A truncated reply: announces LEN bytes, sends SEND of them, then fails the connection. */
typedef struct {
    char *body;
    size_t send;
} trunc_t;

static ssize_t
trunc_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    trunc_t *t = cls;
    if (pos >= t->send)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = t->send - (size_t)pos;
    if (n > max)
        n = max;
    memcpy(buf, t->body + pos, n);
    return (ssize_t)n;
}

static void
trunc_free(void *cls)
{
    trunc_t *t = cls;
    free(t->body);
    free(t);
}

/* Queues STATUS with BODY (malloc'd, taken; NULL = empty). TRUNCATE cuts the body in half
 * while announcing its full length. X_WARNING adds the v1 deprecation header. */
static enum MHD_Result
reply(struct MHD_Connection *c, int status, char *body, size_t len, bool truncate, bool x_warning,
      long retry_after)
{
    struct MHD_Response *r;
    if (truncate) {
        trunc_t *t = malloc(sizeof *t);
        if (!t) {
            free(body);
            return MHD_NO;
        }
        t->body = body;
        t->send = len / 2;
        /* An empty body still announces bytes that never come. */
        uint64_t announced = len > 0 ? len : 16;
        r = MHD_create_response_from_callback(announced, 4096, trunc_read, t, trunc_free);
        if (!r) {
            trunc_free(t);
            return MHD_NO;
        }
    } else {
        r = MHD_create_response_from_buffer(len, body ? body : (void *)"",
                                            body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!r) {
            free(body);
            return MHD_NO;
        }
    }
    if (len > 0 || truncate)
        MHD_add_response_header(r, "Content-Type", "application/json");
    if (x_warning)
        MHD_add_response_header(r, "X-Warning", "This method is deprecated");
    if (retry_after >= 0) {
        char ra[32];
        snprintf(ra, sizeof ra, "%ld", retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    enum MHD_Result rc = MHD_queue_response(c, (unsigned int)status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Writes LEN bytes straight to the connection's socket, bypassing MHD: the only way to
 * send what MHD refuses to (a header over 100 KB, a reply that is not HTTP). Safe here
 * because with one thread per connection this thread is the only one using the socket
 * until the handler returns MHD_NO, which closes it. Gives up after 5 s of no progress. */
static void
raw_send(struct MHD_Connection *c, const char *data, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    int fd = (int)ci->connect_fd;
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 5000) > 0)
                continue;
        }
        return; /* the client left, or no progress for 5 s */
    }
}

/* The huge_header and not_http faults: raw bytes, then the connection is closed. */
static void
raw_fault(struct MHD_Connection *c, pod_fault_action_t action)
{
    if (action == POD_FAULT_NOT_HTTP) {
        /* What a misrouted load balancer might answer: HTTP/0.9-like bytes. */
        static const char junk[] = "SSH-2.0-OpenSSH_9.2 dfpod not_http fault\r\n";
        raw_send(c, junk, sizeof junk - 1);
        return;
    }
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Huge: ";
    static const char tail[] = "\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    size_t fill = 120 * 1024; /* one header line over curl's 100 KB limit */
    char *buf = malloc(sizeof head - 1 + fill + sizeof tail - 1);
    if (!buf)
        return;
    memcpy(buf, head, sizeof head - 1);
    memset(buf + sizeof head - 1, 'h', fill);
    memcpy(buf + sizeof head - 1 + fill, tail, sizeof tail - 1);
    raw_send(c, buf, sizeof head - 1 + fill + sizeof tail - 1);
    free(buf);
}

/* A V2Error text {"code","message"}; caller frees. */
static char *
v2error(int code, const char *message, size_t *len)
{
    json_t *o = json_pack("{s:i,s:s}", "code", code, "message", message);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    *len = s ? strlen(s) : 0;
    return s;
}

static char *
dump(json_t *o, size_t *len)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(o);
    *len = s ? strlen(s) : 0;
    return s;
}

/* The echo fault: a server (or a proxy in the way) that echoes the request. */
typedef struct {
    const char *key[64], *value[64];
    size_t n;
} header_list_t;

static enum MHD_Result
list_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    header_list_t *l = cls;
    (void)kind;
    if (l->n < 64) {
        l->key[l->n] = key;
        l->value[l->n] = value ? value : "";
        l->n++;
    }
    return MHD_YES;
}

/* {"code":S,"message":"echo","headers":{...},"body":"<request body>"}: every header with its
 * value as received (tokens included: the test checks the client hides them), in reverse
 * order of arrival so that the last ones - tokens, default headers - come first, within
 * reach of a client that logs the start of an error body. Caller frees. */
static char *
echo_body(struct MHD_Connection *c, int status, const char *body, size_t body_len, size_t *len)
{
    header_list_t l = {.n = 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, list_header, &l);
    json_t *h = json_object();
    for (size_t i = l.n; h && i-- > 0;) {
        json_t *v = json_string(l.value[i]);
        json_object_set_new(h, l.key[i], v ? v : json_string("<not utf-8>"));
    }
    json_t *b = json_stringn(body ? body : "", body ? body_len : 0);
    return dump(json_pack("{s:i,s:s,s:o,s:o}", "code", status, "message", "echo", "headers",
                          h ? h : json_object(), "body", b ? b : json_string("<not utf-8>")),
                len);
}

/* ---- routing ---- */

static bool
path_feed(const char *url, const char *prefix, const char *suffix, char *id, size_t idlen)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), ul = strlen(url);
    if (ul <= pl + sl || strncmp(url, prefix, pl) != 0 || strcmp(url + ul - sl, suffix) != 0)
        return false;
    size_t n = ul - pl - sl;
    if (memchr(url + pl, '/', n) || n >= idlen)
        return false;
    memcpy(id, url + pl, n);
    id[n] = '\0';
    return true;
}

/* True if URL is PREFIX, one or more segments (as many '/' as SLASHES), then SUFFIX. */
static bool
path_match(const char *url, const char *prefix, int slashes, const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), ul = strlen(url);
    if (ul <= pl + sl || strncmp(url, prefix, pl) != 0 || strcmp(url + ul - sl, suffix) != 0)
        return false;
    int n = 0;
    for (size_t i = pl; i < ul - sl; i++) {
        if (url[i] == '/') {
            if (i == pl || url[i - 1] == '/' || i + 1 == ul - sl)
                return false; /* empty segment */
            n++;
        }
    }
    return n == slashes;
}

/* The outbound endpoints (pod_outbound.c), or POD_EP_UNKNOWN. */
static pod_ep_t
route_outbound(const char *url, bool get, bool post)
{
    if (post && path_match(url, "/agent/v4/stream/", 0, "/message/create"))
        return POD_EP_MSGCREATE;
    if (post && path_match(url, "/agent/v4/stream/", 2, "/update") && strstr(url + 17, "/message/"))
        return POD_EP_MSGUPDATE;
    if (post && path_match(url, "/pod/v1/admin/messagesuppression/", 0, "/suppress"))
        return POD_EP_MSGSUPPRESS;
    if (get && path_match(url, "/agent/v1/message/", 0, ""))
        return POD_EP_MSGGET;
    if (get && path_match(url, "/agent/v4/stream/", 0, "/message"))
        return POD_EP_MSGLIST;
    if (post && strcmp(url, "/pod/v1/im/create") == 0)
        return POD_EP_IMCREATE;
    if (post && path_match(url, "/pod/v1/room/", 0, "/membership/add"))
        return POD_EP_ROOMADD;
    if (post && path_match(url, "/pod/v1/room/", 0, "/membership/remove"))
        return POD_EP_ROOMREMOVE;
    if (get && path_match(url, "/pod/v2/streams/", 0, "/info"))
        return POD_EP_STREAMINFO;
    if (get && strcmp(url, "/pod/v3/users") == 0)
        return POD_EP_USERS;
    return POD_EP_UNKNOWN;
}

static pod_ep_t
route(const char *url, const char *m, char *feed, size_t feedlen)
{
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
    feed[0] = '\0';
    if (post && strcmp(url, "/login/pubkey/authenticate") == 0)
        return POD_EP_AUTH;
    if (post && strcmp(url, "/relay/pubkey/authenticate") == 0)
        return POD_EP_RELAY;
    if (get && strcmp(url, "/pod/v2/sessioninfo") == 0)
        return POD_EP_SESSIONINFO;
    if (strcmp(url, "/agent/v5/datafeeds") == 0)
        return get ? POD_EP_LIST : post ? POD_EP_CREATE : POD_EP_UNKNOWN;
    if (post && path_feed(url, "/agent/v5/datafeeds/", "/read", feed, feedlen))
        return POD_EP_READ;
    if (del && path_feed(url, "/agent/v5/datafeeds/", "", feed, feedlen))
        return POD_EP_DELETE;
    if (post && strcmp(url, "/agent/v4/datafeed/create") == 0)
        return POD_EP_V1CREATE;
    if (get && path_feed(url, "/agent/v4/datafeed/", "/read", feed, feedlen))
        return POD_EP_V1READ;
    if (post && strcmp(url, "/agent/v5/events/read") == 0)
        return POD_EP_DHREAD;
    if (post && strcmp(url, "/sessionauth/v1/authenticate") == 0)
        return POD_EP_SESSIONAUTH;
    if (post && strcmp(url, "/keyauth/v1/authenticate") == 0)
        return POD_EP_KEYAUTH;
    if (get && strcmp(url, "/agent/v1/info") == 0)
        return POD_EP_AGENTINFO;
    pod_ep_t out = route_outbound(url, get, post);
    if (out != POD_EP_UNKNOWN)
        return out;
    feed[0] = '\0';
    return POD_EP_UNKNOWN;
}

/* Parses an optional JSON body: empty or "null" gives *OUT = NULL. false if malformed. */
static bool
parse_optional(const req_t *r, json_t **out)
{
    *out = NULL;
    size_t i = 0;
    while (i < r->len &&
           (r->body[i] == ' ' || r->body[i] == '\n' || r->body[i] == '\r' || r->body[i] == '\t'))
        i++;
    if (i == r->len)
        return true;
    /* \u0000 is valid JSON: an ackId holding it must come back as sent. */
    json_t *j = json_loadb(r->body, r->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j)
        return false;
    if (json_is_null(j)) {
        json_decref(j);
        return true;
    }
    *out = j;
    return true;
}

/* ---- Symphony endpoints ---- */

typedef struct {
    int status;
    char *body;
    size_t len;
    bool x_warning;
    char ack_in[128];
    size_t ack_in_len;
    bool has_ack_in;
    bool gone;
    pod_ackid_t ack_out;
    long events;
    char client_cn[256]; /* certificate auth: the verified client CN, "" if none */
} result_t;

static void
set_error(result_t *res, int code, const char *msg)
{
    res->status = code;
    res->body = v2error(code, msg, &res->len);
}

/* Answers a successful authentication with a fresh token: KM (relay, keyauth) or session
 * (login, sessionauth); with --skd a session token is a JWT carrying
 * canUseSimplifiedKeyDelivery=true (header and payload base64url, then the stored token). */
static void
issue_token(pod_http_t *h, bool km, result_t *res)
{
    char tok[33];
    pod_state_token_issue(h->st, km ? POD_TOKEN_KM : POD_TOKEN_SESSION, tok);
    char jwt[600];
    const char *value = tok;
    if (!km && h->cfg->skd) {
        static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char payload[300];
        snprintf(payload, sizeof payload,
                 "{\"sub\":\"%.100s\",\"canUseSimplifiedKeyDelivery\":true}", h->cfg->bot_username);
        size_t o = (size_t)snprintf(jwt, sizeof jwt, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.");
        const unsigned char *in = (const unsigned char *)payload;
        size_t len = strlen(payload);
        for (size_t i = 0; i < len; i += 3) {
            unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) |
                         (i + 2 < len ? in[i + 2] : 0);
            jwt[o++] = t[(v >> 18) & 63];
            jwt[o++] = t[(v >> 12) & 63];
            if (i + 1 < len)
                jwt[o++] = t[(v >> 6) & 63];
            if (i + 2 < len)
                jwt[o++] = t[v & 63];
        }
        snprintf(jwt + o, sizeof jwt - o, ".%s", tok);
        value = jwt;
    }
    pod_state_token_record(h->st, value);
    res->status = 200;
    res->body = dump(
        json_pack("{s:s,s:s}", "name", km ? "keyManagerToken" : "sessionToken", "token", value),
        &res->len);
}

static void
do_auth(pod_http_t *h, const req_t *r, bool relay, result_t *res)
{
    json_t *j = NULL;
    if (!parse_optional(r, &j) || (j && !json_is_object(j))) {
        json_decref(j);
        set_error(res, 400, "body must be a JSON object {\"token\": JWT}");
        return;
    }
    const char *jwt = json_string_value(json_object_get(j, "token"));
    char why[128];
    if (pod_jwt_verify(h->jwt, jwt, pod_wall_ms() / 1000, why, sizeof why) != 0) {
        json_decref(j);
        pod_state_count_auth(h->st, false);
        char msg[200];
        snprintf(msg, sizeof msg, "Invalid JWT: %s", why);
        set_error(res, 401, msg);
        return;
    }
    json_decref(j);
    pod_state_count_auth(h->st, true);
    issue_token(h, relay, res);
}

/* The session token as seen by the token store: with --skd it is a JWT whose last part
 * (where a signature would be) is the stored 32-hex token. */
static const char *
session_core(const char *st)
{
    const char *dot = st ? strrchr(st, '.') : NULL;
    return dot ? dot + 1 : st;
}

/* POST /sessionauth/v1/authenticate and /keyauth/v1/authenticate: mutual TLS, no body;
 * the verified client certificate's CN must be the bot's username. */
static void
do_cert_auth(pod_http_t *h, struct MHD_Connection *c, bool keyauth, result_t *res)
{
    char why[160] = "";
    bool ok = h->cfg->tls_client_ca_path &&
              pod_tls_client_cn(c, res->client_cn, sizeof res->client_cn, why, sizeof why);
    if (!h->cfg->tls_client_ca_path)
        snprintf(why, sizeof why, "certificate authentication is off (no --tls-client-ca)");
    else if (ok && strcmp(res->client_cn, h->cfg->bot_username) != 0) {
        snprintf(why, sizeof why, "the certificate's CN is not the bot's username");
        ok = false;
    }
    pod_state_count_auth(h->st, ok);
    if (!ok) {
        char msg[220];
        snprintf(msg, sizeof msg, "Invalid certificate: %s", why);
        set_error(res, 401, msg);
        return;
    }
    issue_token(h, keyauth, res);
}

/* Request headers for the call log, with the values of secrets replaced (an empty value
 * stays empty: tests check that an empty keyManagerToken was sent). */
static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    static const char *const secret[] = {"sessionToken", "keyManagerToken", "Authorization",
                                         "Proxy-Authorization", "Cookie"};
    json_t *o = cls;
    const char *v = value ? value : "";
    for (size_t i = 0; i < sizeof secret / sizeof secret[0] && *v; i++)
        if (strcasecmp(key, secret[i]) == 0)
            v = "<redacted>";
    json_t *js = json_string(v);
    json_object_set_new(o, key, js ? js : json_string("<not utf-8>"));
    return MHD_YES;
}

static bool
tokens_ok(pod_http_t *h, struct MHD_Connection *c)
{
    const char *st = session_core(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "sessionToken"));
    const char *km = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "keyManagerToken");
    if (!pod_state_token_valid(h->st, POD_TOKEN_SESSION, st))
        return false;
    /* Simplified key delivery: an absent or empty KM token is fine, a stale one is not. */
    return !km || !km[0] || pod_state_token_valid(h->st, POD_TOKEN_KM, km);
}

/* Creates a fanout feed and answers 201 V5Datafeed, or 403 beyond --max-feeds: the
 * agent's create and the admin's "another instance" create alike. */
static void
create_fanout(pod_http_t *h, result_t *res)
{
    char id[64];
    if (pod_state_feed_create(h->st, false, id) == POD_ETOOMANY) {
        set_error(res, 403, "Too many feeds created: 20 active feeds is the limit");
        return;
    }
    res->status = 201;
    res->body = dump(json_pack("{s:s,s:s}", "id", id, "type", "fanout"), &res->len);
}

static void
do_create(pod_http_t *h, const req_t *r, result_t *res)
{
    json_t *j = NULL;
    if (!parse_optional(r, &j) || (j && !json_is_object(j))) {
        json_decref(j);
        set_error(res, 400, "body must be a V5DatafeedCreateBody object");
        return;
    }
    json_t *tag = json_object_get(j, "tag"), *inv = json_object_get(j, "includeInvisible");
    bool bad =
        (tag && !json_is_null(tag) && (!json_is_string(tag) || json_string_length(tag) > 100)) ||
        (inv && !json_is_null(inv) && !json_is_boolean(inv));
    json_decref(j);
    if (bad) {
        set_error(res, 400,
                  "tag must be a string of at most 100 characters, includeInvisible "
                  "a boolean");
        return;
    }
    create_fanout(h, res);
}

/* The part of every read (v2, v1, datahose) after its body was checked: records the
 * ackId sent, holds until events or the hold's end (or the client leaves), and builds the
 * answer. ackj (borrowed) is the body's "ackId": a JSON string (its bytes, NULs included,
 * name the batch), null or NULL. */
static void
answer_read(pod_http_t *h, struct MHD_Connection *c, const char *feed, bool v1, json_t *ackj,
            const char *nofeed_msg, result_t *res)
{
    const char *ack = json_string_value(ackj);
    size_t ack_len = ack ? json_string_length(ackj) : 0;
    if (ack) {
        /* Logged as received, up to the buffer: the bytes may hold NUL. */
        res->ack_in_len = ack_len < sizeof res->ack_in ? ack_len : sizeof res->ack_in;
        memcpy(res->ack_in, ack, res->ack_in_len);
        res->has_ack_in = true;
    }
    char *body = NULL;
    size_t len = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci ? (int)ci->connect_fd : -1;
    int rc =
        pod_state_read(h->st, feed, v1, ack, ack_len, fd, &body, &len, &res->ack_out, &res->events);
    if (rc == POD_EGONE) {
        res->gone = true;
        res->ack_out.len = 0;
    } else if (rc == POD_ENOFEED) {
        set_error(res, 400, nofeed_msg);
    } else if (rc == POD_EBADACK) {
        set_error(res, 400, "The format of the provided ackId is incorrect.");
    } else if (!body) {
        res->status = 204; /* v1: nothing arrived during the hold */
    } else {
        res->status = 200;
        res->body = body;
        res->len = len;
    }
}

static void
do_read(pod_http_t *h, struct MHD_Connection *c, const req_t *r, const char *feed, bool v1,
        result_t *res)
{
    json_t *ack = NULL;
    json_t *j = NULL;
    if (!v1) {
        if (!parse_optional(r, &j) || (j && !json_is_object(j))) {
            json_decref(j);
            set_error(res, 400, "body must be an AckId object");
            return;
        }
        json_t *a = json_object_get(j, "ackId"), *up = json_object_get(j, "updatePresence");
        if ((a && !json_is_null(a) && !json_is_string(a)) ||
            (up && !json_is_null(up) && !json_is_boolean(up))) {
            json_decref(j);
            set_error(res, 400, "ackId must be a string, updatePresence a boolean");
            return;
        }
        ack = a;
    }
    answer_read(h, c, feed, v1, ack,
                "Do not retry: the feed no longer exists, please create a new feed.", res);
    json_decref(j);
}

/* Datahose read: V5EventsReadBody {type: "datahose", tag (1..80 chars), eventTypes (>= 1
 * strings), ackId?, updatePresence?}; anything else is a 400. The feed is keyed by (tag,
 * eventTypes) and then read like a fanout feed. The feed id is logged as the call's "feed". */
static void
do_dhread(pod_http_t *h, struct MHD_Connection *c, const req_t *r, char *feed, size_t feedlen,
          result_t *res)
{
    json_t *j = NULL;
    if (!parse_optional(r, &j) || !json_is_object(j)) {
        json_decref(j);
        set_error(res, 400, "body must be a V5EventsReadBody object");
        return;
    }
    json_t *type = json_object_get(j, "type"), *tag = json_object_get(j, "tag"),
           *types = json_object_get(j, "eventTypes"), *a = json_object_get(j, "ackId"),
           *up = json_object_get(j, "updatePresence");
    bool ok = json_is_string(type) && strcmp(json_string_value(type), "datahose") == 0 &&
              json_is_string(tag) && json_string_length(tag) >= 1 &&
              json_string_length(tag) <= 80 && json_is_array(types) &&
              json_array_size(types) >= 1 && (!a || json_is_null(a) || json_is_string(a)) &&
              (!up || json_is_null(up) || json_is_boolean(up));
    for (size_t i = 0; ok && i < json_array_size(types); i++)
        ok = json_is_string(json_array_get(types, i)) &&
             json_string_length(json_array_get(types, i)) > 0;
    if (!ok) {
        json_decref(j);
        set_error(res, 400,
                  "type must be \"datahose\", tag a string of 1 to 80 characters, eventTypes a "
                  "non-empty array of strings, ackId a string");
        return;
    }
    char id[64];
    pod_state_datahose_feed(h->st, json_string_value(tag), types, id);
    snprintf(feed, feedlen, "%s", id);
    answer_read(h, c, id, false, a, "The datahose feed no longer exists.", res);
    json_decref(j);
}

static void
handle_pod(pod_http_t *h, struct MHD_Connection *c, const char *url, pod_ep_t ep, char *feed,
           size_t feedlen, const req_t *r, result_t *res)
{
    if (ep == POD_EP_UNKNOWN) {
        set_error(res, 404, "Not found");
        return;
    }
    if (ep == POD_EP_AUTH || ep == POD_EP_RELAY) {
        do_auth(h, r, ep == POD_EP_RELAY, res);
        return;
    }
    if (ep == POD_EP_SESSIONAUTH || ep == POD_EP_KEYAUTH) {
        do_cert_auth(h, c, ep == POD_EP_KEYAUTH, res);
        return;
    }
    if (!tokens_ok(h, c)) {
        set_error(res, 401, "Invalid session");
        return;
    }
    if (pod_ep_outbound(ep)) {
        pod_out_result_t o;
        pod_out_handle(h->out, c, ep, url, r->body, r->len, &o);
        res->status = o.status;
        res->body = o.body;
        res->len = o.len;
        return;
    }
    switch (ep) {
    case POD_EP_AGENTINFO:
        res->status = 200;
        res->body =
            dump(json_pack("{s:s,s:s,s:s}", "version",
                           h->cfg->agent_version ? h->cfg->agent_version : "Agent-24.12.1",
                           "serverFqdn", "https://dfpod.local", "url", "https://dfpod.local"),
                 &res->len);
        break;
    case POD_EP_SESSIONINFO:
        res->status = 200;
        res->body =
            dump(json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:[s]}", "id", (json_int_t)h->cfg->bot_id,
                           "emailAddress", "bot@example.com", "firstName", "My", "lastName", "Bot",
                           "displayName", "My Bot", "username", h->cfg->bot_username, "company",
                           "dfpod", "roles", "INDIVIDUAL"),
                 &res->len);
        break;
    case POD_EP_LIST:
        res->status = 200;
        res->body = pod_state_feeds_json(h->st);
        res->len = res->body ? strlen(res->body) : 0;
        break;
    case POD_EP_CREATE:
        do_create(h, r, res);
        break;
    case POD_EP_DELETE:
        if (pod_state_feed_delete(h->st, feed) == POD_OK)
            res->status = 204;
        else
            set_error(res, 400, "Datafeed not found");
        break;
    case POD_EP_READ:
        do_read(h, c, r, feed, false, res);
        break;
    case POD_EP_V1CREATE: {
        char id[64];
        pod_state_feed_create(h->st, true, id);
        res->status = 200;
        res->x_warning = true;
        res->body = dump(json_pack("{s:s}", "id", id), &res->len);
        break;
    }
    case POD_EP_V1READ:
        do_read(h, c, r, feed, true, res);
        res->x_warning = true;
        break;
    case POD_EP_DHREAD:
        do_dhread(h, c, r, feed, feedlen, res);
        break;
    default:
        set_error(res, 404, "Not found");
        break;
    }
}

/* True if the client of C has closed its connection (a peek at the socket). */
static bool
peer_closed(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd p = {.fd = (int)ci->connect_fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR))
        return true;
    char b;
    ssize_t n = recv(p.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Replaces RES by the fault's status and body (a V2Error when the fault has none). */
static void
fault_answer(result_t *res, pod_fault_t *f, bool *retry_after)
{
    free(res->body);
    res->body = NULL;
    res->len = 0;
    res->status = f->status;
    if (f->action == POD_FAULT_RETRY_AFTER) {
        *retry_after = true;
        res->body = v2error(429, "Too many requests", &res->len);
    } else if (f->body) {
        res->body = f->body;
        res->len = strlen(f->body);
        f->body = NULL;
    } else {
        res->body = v2error(f->status, "Injected fault", &res->len);
    }
}

static enum MHD_Result
serve_pod(pod_http_t *h, struct MHD_Connection *c, const char *url, const char *method, req_t *r)
{
    char feed[128];
    pod_ep_t ep = route(url, method, feed, sizeof feed);
    result_t res = {0};
    res.events = -1;
    bool truncate = false, retry_after = false;
    pod_fault_t f;
    const char *fault = NULL;
    bool has_fault = false;
    /* Outbound endpoints: a fault with commit makes the call first, then applies itself. */
    bool commit = false;

    if (r->too_big) {
        set_error(&res, 413, "Request body too large");
    } else if ((has_fault = pod_state_fault_take(h->st, ep, &f))) {
        fault = pod_fault_name(f.action);
        commit = pod_ep_outbound(ep) && f.commit &&
                 (f.action == POD_FAULT_STATUS || f.action == POD_FAULT_DROP ||
                  f.action == POD_FAULT_TRUNCATE || f.action == POD_FAULT_SLOW ||
                  f.action == POD_FAULT_RETRY_AFTER);
        switch (f.action) {
        case POD_FAULT_STATUS:
        case POD_FAULT_RETRY_AFTER:
            if (!commit)
                fault_answer(&res, &f, &retry_after);
            break;
        case POD_FAULT_DROP:
            break;
        case POD_FAULT_TRUNCATE:
            truncate = true;
            if (pod_ep_outbound(ep) && !commit) /* no call: half of a 500 */
                res.body = v2error(500, "Injected fault: truncated, nothing done", &res.len),
                res.status = 500;
            break;
        case POD_FAULT_SLOW:
            if (!commit) {
                pod_state_sleep(h->st, f.delay_ms);
                /* Outbound without commit: a client that gave up meanwhile gets nothing done. */
                if (pod_ep_outbound(ep) && peer_closed(c))
                    res.gone = true;
            }
            break;
        case POD_FAULT_EXPIRE_TOKEN:
            pod_state_tokens_expire(h->st);
            set_error(&res, 401, "Invalid session");
            break;
        case POD_FAULT_EXPIRE_FEED:
            pod_state_feed_expire(h->st, feed[0] ? feed : NULL);
            set_error(&res, 400,
                      "Do not retry: the feed no longer exists, please create a new feed.");
            break;
        case POD_FAULT_ECHO:
            res.status = f.status;
            res.body = echo_body(c, f.status, r->body, r->len, &res.len);
            break;
        case POD_FAULT_HUGE_HEADER:
        case POD_FAULT_NOT_HTTP:
        case POD_FAULT_COUNT:
            break; /* answered with raw bytes below, instead of the call */
        }
    }
    bool raw = has_fault && (f.action == POD_FAULT_HUGE_HEADER || f.action == POD_FAULT_NOT_HTTP);
    bool dropped = has_fault && (f.action == POD_FAULT_DROP || raw);
    if ((!dropped || commit) && res.status == 0 && !res.gone)
        handle_pod(h, c, url, ep, feed, sizeof feed, r, &res);
    if (commit) {
        if (f.action == POD_FAULT_STATUS || f.action == POD_FAULT_RETRY_AFTER)
            fault_answer(&res, &f, &retry_after);
        else if (f.action == POD_FAULT_SLOW)
            pod_state_sleep(h->st, f.delay_ms);
    }
    if (has_fault)
        free(f.body);
    if (res.gone)
        dropped = true; /* nobody to answer */

    json_t *headers = json_object();
    if (headers)
        MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, headers);
    /* A multipart body is logged as its list of parts. */
    char *log_body = (ep == POD_EP_MSGCREATE || ep == POD_EP_MSGUPDATE) && !r->too_big
                         ? pod_out_log_body(c, r->body, r->len)
                         : NULL;
    pod_call_t call = {
        .headers = headers,
        .client_cn = res.client_cn[0] ? res.client_cn : NULL,
        .ep = ep,
        .method = method,
        .path = url,
        .status = dropped ? 0 : res.status,
        .body = log_body ? log_body : r->body,
        .body_len = log_body ? strlen(log_body) : r->len,
        .feed = feed[0] ? feed : NULL,
        .ack_in = res.has_ack_in ? res.ack_in : NULL,
        .ack_in_len = res.ack_in_len,
        .ack_out = res.ack_out.len ? res.ack_out.b : NULL,
        .ack_out_len = res.ack_out.len,
        .events = res.events,
        .fault = fault,
        .gone = res.gone,
        .wall_ms = pod_wall_ms(),
    };
    pod_state_log_call(h->st, &call);
    free(log_body);
    json_decref(headers);
    if (h->cfg->verbose)
        fprintf(stderr, "dfpod: %s %s -> %d%s%s\n", method, url, call.status,
                fault ? " fault=" : "", fault ? fault : "");
    if (raw)
        raw_fault(c, f.action);
    if (dropped) {
        free(res.body);
        return MHD_NO; /* MHD closes the connection without a (further) reply */
    }
    if (res.status == 204) { /* no content, whatever was built */
        free(res.body);
        res.body = NULL;
        res.len = 0;
    }
    return reply(c, res.status, res.body, res.len, truncate, res.x_warning,
                 retry_after ? f.retry_after : -1);
}

/* ---- admin ---- */

/* Enqueues each element of a validated JSON array of objects byte-for-byte, all at once (a
 * held read never takes only the first few): the element spans are found by a scanner that
 * only needs to respect strings and nesting. */
static long
enqueue_raw_array(pod_state_t *st, const char *s, size_t len)
{
    size_t i = 0;
    long n = 0;
    size_t cap = 0;
    const char **raw = NULL;
    size_t *lens = NULL;
    while (i < len && s[i] != '[')
        i++;
    i++;
    for (;;) {
        while (i < len &&
               (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t' || s[i] == ','))
            i++;
        if (i >= len || s[i] == ']')
            break;
        size_t start = i;
        int depth = 0;
        bool in_str = false, esc = false;
        for (; i < len; i++) {
            char ch = s[i];
            if (in_str) {
                if (esc)
                    esc = false;
                else if (ch == '\\')
                    esc = true;
                else if (ch == '"')
                    in_str = false;
                continue;
            }
            if (ch == '"')
                in_str = true;
            else if (ch == '{' || ch == '[')
                depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0) {
                i++;
                break;
            }
        }
        if ((size_t)n == cap) {
            cap = cap ? cap * 2 : 64;
            const char **r2 = realloc(raw, cap * sizeof *raw);
            size_t *l2 = realloc(lens, cap * sizeof *lens);
            if (!r2 || !l2) {
                fprintf(stderr, "dfpod: out of memory\n");
                exit(2);
            }
            raw = r2;
            lens = l2;
        }
        raw[n] = s + start;
        lens[n] = i - start;
        n++;
    }
    pod_state_enqueue_many(st, raw, lens, (size_t)n);
    free(raw);
    free(lens);
    return n;
}

/* POST /admin/feeds: creates a fanout feed as another instance of the bot would (403 at
 * --max-feeds); GET /admin/feeds: the live v2 and datahose feeds, as the list endpoint. */
static void
admin_feeds(pod_http_t *h, bool post, result_t *res)
{
    if (!post) {
        res->status = 200;
        res->body = pod_state_feeds_json(h->st);
        res->len = res->body ? strlen(res->body) : 0;
        return;
    }
    create_fanout(h, res);
}

static void
admin_route(pod_http_t *h, const char *url, const char *m, const req_t *r, result_t *res)
{
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
    json_t *j = NULL;
    if (r->too_big) {
        set_error(res, 413, "Request body too large");
        return;
    }
    if (strcmp(url, "/admin/events") == 0 && post) {
        json_error_t err;
        j = json_loadb(r->body ? r->body : "", r->len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL,
                       &err);
        bool ok = json_is_array(j);
        for (size_t i = 0; ok && i < json_array_size(j); i++)
            ok = json_is_object(json_array_get(j, i));
        json_decref(j);
        if (!ok) {
            set_error(res, 400, "body must be a JSON array of event objects");
            return;
        }
        long n = enqueue_raw_array(h->st, r->body, r->len);
        res->status = 200;
        res->body = dump(json_pack("{s:I}", "enqueued", (json_int_t)n), &res->len);
    } else if (strcmp(url, "/admin/events") == 0 && get) {
        res->status = 200;
        res->body = pod_state_events_json(h->st, &res->len);
    } else if (strcmp(url, "/admin/generate") == 0 && post) {
        if (!parse_optional(r, &j) || !json_is_object(j)) {
            json_decref(j);
            set_error(res, 400, "body must be {\"count\":N,\"seed\":S?,\"bot_ratio\":F?}");
            return;
        }
        json_t *cnt = json_object_get(j, "count"), *seed = json_object_get(j, "seed"),
               *ratio = json_object_get(j, "bot_ratio");
        /* Benchmark options: kind/bytes (the events), at_once (a backlog released in one
         * go), rate (paced release; the answer then lists each id and its release time). */
        json_t *kind = json_object_get(j, "kind"), *bytes = json_object_get(j, "bytes"),
               *once = json_object_get(j, "at_once"), *rate = json_object_get(j, "rate");
        pod_gen_opts_t go = {(pod_gen_kind_t)h->cfg->gen_kind, h->cfg->gen_bytes, false, 0, NULL,
                             NULL};
        const char *ks = json_string_value(kind);
        if ((kind && (!ks || (strcmp(ks, "mix") && strcmp(ks, "messagesent")))) ||
            (bytes && (!json_is_integer(bytes) || json_integer_value(bytes) < 600 ||
                       json_integer_value(bytes) > 1000000)) ||
            (once && !json_is_boolean(once)) ||
            (rate && (!json_is_number(rate) || json_number_value(rate) <= 0 ||
                      json_number_value(rate) > 1e7))) {
            json_decref(j);
            set_error(res, 400, "kind must be \"mix\" or \"messagesent\", bytes 600..1000000, "
                                "at_once a boolean, rate a number in (0, 1e7]");
            return;
        }
        if (ks)
            go.kind = strcmp(ks, "messagesent") == 0 ? POD_GEN_MESSAGESENT : POD_GEN_MIX;
        if (bytes)
            go.bytes = (size_t)json_integer_value(bytes);
        go.at_once = once && json_is_true(once);
        go.rate = rate ? json_number_value(rate) : 0;
        if (!json_is_integer(cnt) || json_integer_value(cnt) < 0 ||
            json_integer_value(cnt) > MAX_GENERATE || (seed && !json_is_integer(seed)) ||
            (ratio && (!json_is_number(ratio) || json_number_value(ratio) < 0 ||
                       json_number_value(ratio) > 1))) {
            json_decref(j);
            set_error(res, 400, "count must be 0..10000000, seed an integer, bot_ratio 0..1");
            return;
        }
        long count = (long)json_integer_value(cnt);
        double br = ratio ? json_number_value(ratio) : 0.05;
        pod_gen_t *g = h->gen;
        if (seed)
            g = pod_gen_new((uint64_t)json_integer_value(seed), h->cfg->bot_id,
                            h->cfg->bot_username);
        json_decref(j);
        if (!g) {
            set_error(res, 500, "out of memory");
            return;
        }
        char first[64];
        if (go.rate > 0 && count > 0) {
            go.ids = calloc((size_t)count, sizeof *go.ids);
            go.release_ns = calloc((size_t)count, sizeof *go.release_ns);
            if (!go.ids || !go.release_ns) {
                free(go.ids);
                free(go.release_ns);
                if (g != h->gen)
                    pod_gen_destroy(&g);
                set_error(res, 500, "out of memory");
                return;
            }
        }
        long n = pod_gen_enqueue_opts(g, h->st, count, br, &go, first);
        if (g != h->gen)
            pod_gen_destroy(&g);
        json_t *ans =
            json_pack("{s:I,s:s?}", "enqueued", (json_int_t)n, "first_id", n > 0 ? first : NULL);
        if (go.ids && ans) {
            json_t *ids = json_array(), *ns = json_array();
            for (long i = 0; i < n; i++) {
                json_array_append_new(ids, json_string(go.ids[i]));
                json_array_append_new(ns, json_integer(go.release_ns[i]));
            }
            json_object_set_new(ans, "ids", ids);
            json_object_set_new(ans, "release_ns", ns);
        }
        free(go.ids);
        free(go.release_ns);
        res->status = 200;
        res->body = dump(ans, &res->len);
    } else if (strcmp(url, "/admin/faults") == 0 && post) {
        char why[128];
        if (!parse_optional(r, &j) || !(json_is_object(j) || json_is_array(j))) {
            json_decref(j);
            set_error(res, 400, "body must be a fault object or an array of them");
            return;
        }
        int rc = pod_state_faults_add(h->st, j, why, sizeof why);
        size_t n = json_is_array(j) ? json_array_size(j) : 1;
        json_decref(j);
        if (rc != 0) {
            set_error(res, 400, why);
            return;
        }
        res->status = 200;
        res->body = dump(json_pack("{s:I}", "queued", (json_int_t)n), &res->len);
    } else if (strcmp(url, "/admin/faults") == 0 && del) {
        pod_state_faults_clear(h->st);
        res->status = 200;
        res->body = strdup("{}");
        res->len = 2;
    } else if (strcmp(url, "/admin/counters") == 0 && get) {
        char *text = pod_state_counters_json(h->st);
        json_t *o = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        if (!o) {
            set_error(res, 500, "out of memory");
            return;
        }
        pod_out_counters(h->out, o); /* messages_posted, ... */
        res->status = 200;
        res->body = dump(o, &res->len);
    } else if (strcmp(url, "/admin/calls") == 0 && get) {
        res->status = 200;
        res->body = pod_state_calls_json(h->st);
        res->len = res->body ? strlen(res->body) : 0;
    } else if (strcmp(url, "/admin/calls") == 0 && del) {
        pod_state_calls_clear(h->st);
        res->status = 200;
        res->body = strdup("{}");
        res->len = 2;
    } else if (strcmp(url, "/admin/tokens") == 0 && get) {
        res->status = 200;
        res->body = pod_state_tokens_json(h->st);
        res->len = res->body ? strlen(res->body) : 0;
    } else if (strcmp(url, "/admin/expire-tokens") == 0 && post) {
        pod_state_tokens_expire(h->st);
        res->status = 200;
        res->body = strdup("{}");
        res->len = 2;
    } else if (strcmp(url, "/admin/next-ackid") == 0 && post) {
        json_t *a = parse_optional(r, &j) && json_is_object(j) ? json_object_get(j, "ackId") : NULL;
        if (!json_is_string(a) ||
            pod_state_set_next_ackid(h->st, json_string_value(a), json_string_length(a)) != 0) {
            json_decref(j);
            set_error(res, 400, "body must be {\"ackId\": a string of 1 to 60 bytes}");
            return;
        }
        json_decref(j);
        res->status = 200;
        res->body = strdup("{}");
        res->len = 2;
    } else if (strcmp(url, "/admin/feeds") == 0 && (post || get)) {
        admin_feeds(h, post, res);
    } else if (strcmp(url, "/admin/expire-feed") == 0 && post) {
        if (!parse_optional(r, &j) || (j && !json_is_object(j))) {
            json_decref(j);
            set_error(res, 400, "body must be {\"id\":…} or {}");
            return;
        }
        json_t *id = json_object_get(j, "id");
        if (id && !json_is_string(id)) {
            json_decref(j);
            set_error(res, 400, "id must be a string");
            return;
        }
        int n = pod_state_feed_expire(h->st, json_string_value(id));
        json_decref(j);
        res->status = 200;
        res->body = dump(json_pack("{s:i}", "expired", n), &res->len);
    } else {
        pod_out_result_t o;
        if (pod_out_admin(h->out, url, m, r->body, r->len, &o)) {
            res->status = o.status;
            res->body = o.body;
            res->len = o.len;
        } else {
            set_error(res, 404, "Not found");
        }
    }
}

/* ---- MHD glue ---- */

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    pod_http_t *h = cls;
    req_t *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->admin = strncmp(url, "/admin/", 7) == 0;
        r->limit = r->admin ? MAX_BODY_ADMIN : MAX_BODY_POD;
        char ignore[128];
        pod_ep_t ep = route(url, method, ignore, sizeof ignore);
        if (ep == POD_EP_MSGCREATE || ep == POD_EP_MSGUPDATE)
            r->limit = MAX_BODY_POST;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!r->too_big && r->len + *upload_size > r->limit) {
            /* Keep reading (and discarding) so that the 413 can be sent cleanly. */
            r->too_big = true;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
        }
        if (!r->too_big) {
            if (r->len + *upload_size + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                while (cap < r->len + *upload_size + 1)
                    cap *= 2;
                char *p = realloc(r->body, cap);
                if (!p)
                    return MHD_NO;
                r->body = p;
                r->cap = cap;
            }
            memcpy(r->body + r->len, upload, *upload_size);
            r->len += *upload_size;
            r->body[r->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (!r->admin)
        return serve_pod(h, c, url, method, r);
    result_t res = {0};
    admin_route(h, url, method, r, &res);
    return reply(c, res.status, res.body, res.len, false, false, -1);
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    req_t *r = *con_cls;
    if (r) {
        free(r->body);
        free(r);
        *con_cls = NULL;
    }
}

pod_http_t *
pod_http_new(const pod_config_t *cfg, pod_state_t *st, pod_jwt_t *jwt, pod_gen_t *gen,
             pod_out_t *out)
{
    pod_http_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->st = st;
    self->jwt = jwt;
    self->gen = gen;
    self->out = out;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    /* MHD reports every injected drop and truncation as an error: only when asked. */
    if (cfg->verbose)
        flags |= MHD_USE_ERROR_LOG;
    if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
        flags |= MHD_USE_POLL; /* no FD_SETSIZE limit on the listener */
    if (cfg->ipv6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)cfg->listen_port);
        if (inet_pton(AF_INET6, cfg->listen_host, &a->sin6_addr) != 1) {
            fprintf(stderr, "dfpod: bad IPv6 address %s\n", cfg->listen_host);
            free(self);
            return NULL;
        }
        flags |= MHD_USE_IPv6;
        if (strcmp(cfg->listen_host, "::") == 0)
            flags |= MHD_USE_DUAL_STACK; /* "[::]:port" takes IPv4 too */
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)cfg->listen_port);
        if (inet_pton(AF_INET, cfg->listen_host, &a->sin_addr) != 1) {
            fprintf(stderr, "dfpod: bad IPv4 address %s\n", cfg->listen_host);
            free(self);
            return NULL;
        }
    }
    /* HTTPS (--tls-cert/--tls-key) and client certificates (--tls-client-ca). */
    struct MHD_OptionItem tls[4];
    int nt = 0;
    if (cfg->tls_cert_path) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            fprintf(stderr, "dfpod: this libmicrohttpd has no TLS\n");
            free(self);
            return NULL;
        }
        self->tls_cert = pod_tls_read_pem(cfg->tls_cert_path);
        self->tls_key = pod_tls_read_pem(cfg->tls_key_path);
        self->tls_ca = cfg->tls_client_ca_path ? pod_tls_read_pem(cfg->tls_client_ca_path) : NULL;
        if (!self->tls_cert || !self->tls_key || (cfg->tls_client_ca_path && !self->tls_ca)) {
            pod_http_destroy(&self);
            return NULL;
        }
        flags |= MHD_USE_TLS;
        tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, self->tls_key};
        tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, self->tls_cert};
        if (self->tls_ca) /* makes MHD request (not require) a client certificate */
            tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, self->tls_ca};
    }
    tls[nt] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    self->d = MHD_start_daemon(
        flags, (uint16_t)cfg->listen_port, NULL, NULL, on_request, self, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, self,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!self->d) {
        fprintf(stderr, "dfpod: cannot listen on %s:%d%s\n", cfg->listen_host, cfg->listen_port,
                cfg->tls_cert_path ? " (or the TLS certificate/key is unusable)" : "");
        pod_http_destroy(&self);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->d, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : cfg->listen_port;
    return self;
}

int
pod_http_port(pod_http_t *self)
{
    return self->port;
}

void
pod_http_destroy(pod_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    if ((*self_p)->d)
        MHD_stop_daemon((*self_p)->d);
    free((*self_p)->tls_cert);
    free((*self_p)->tls_key);
    free((*self_p)->tls_ca);
    free(*self_p);
    *self_p = NULL;
}
