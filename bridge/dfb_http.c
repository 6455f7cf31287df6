/*  dfb_http: libcurl client behind a small class (see dfb_http.h).
    The easy handle is reused (keep-alive lives in the multi handle's
    connection cache); curl_multi_poll waits on the transfer's sockets and
    on the stop fd together, which is what makes a stop immediate. */
#include "dfb_http.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dfb_log.h"
#include "dfb_secret.h"
#include "dfb_tls.h"

#ifndef DF_VERSION
#define DF_VERSION "0"
#endif

/*  curl's receive buffer (CURLOPT_BUFFERSIZE; 512 KB is the largest
    every libcurl accepts). */
#define DFB_HTTP_RECV_BUFFER (512L * 1024)

/*  One client's transport options (dfb_http_add_client), owned copies. */
typedef struct {
    char *prefix;
    size_t prefix_len;
    char *proxy;      /* "http://host:port", NULL = direct */
    char *proxy_user; /* NULL = no credentials; cleansed on destroy */
    char *proxy_pass;
    char *proxy_basic;        /* base64 "user:password" as sent, for redaction; cleansed */
    char *proxy_name;         /* "host:port" for log lines (never credentials) */
    struct curl_slist *extra; /* "Name: value" default headers (may hold secrets) */
    char *user_agent;         /* "User-Agent: ..." override, NULL = the bridge's */
    int own_trace;            /* the default headers carry an X-Trace-Id */
    int client_cert;
} route_t;

struct dfb_http {
    route_t *routes;
    size_t nroutes;
    char *ca_file;         /* NULL = system CAs */
    struct curl_blob cert; /* client certificate (PEM), data NULL = none */
    struct curl_blob key;  /* its key (PEM); cleansed on destroy */
    CURLM *multi;
    CURL *easy;
    int stop_fd;
    long connect_timeout_ms;
    long timeout_ms;
    size_t max_body;
    char *token[2];
    /* The request headers, built once and kept while nothing they are made
       of changes (gen counts token and route changes); only the trace id
       is rewritten in place per call. */
    struct curl_slist *hdrs; /* holds tokens: wiped when dropped */
    char *hdrs_trace;        /* the 6 characters of its X-Trace-Id, or NULL */
    size_t hdrs_route;       /* route index it was built for (SIZE_MAX: none) */
    unsigned gen, hdrs_gen;
    char *body; /* response body, reused: grows to the largest response */
    size_t body_len;
    size_t body_cap;
    int too_big;
    int sent;                /* the last request went out (dfb_http_request_sent) */
    long long retry_after_ms; /* of the last response, -1 = none */
    long fail_opt; /* self-test only: this option "fails" to be set (0 = none) */
    char detail[CURL_ERROR_SIZE];
};

static const char *const s_token_header[2] = {"sessionToken", "keyManagerToken"};

static int option_is_tls(const char *name);
static CURLcode set_options(dfb_http_t *self, const route_t *route, const char *url,
                            const char *method, struct curl_slist *headers, const char *body,
                            size_t body_len, const char **failed);

/*  Frees a string that may be a secret (password, header value). */
static void
wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/*  Frees a header list whose lines may hold tokens or header values. */
static void
slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *x = l; x; x = x->next)
        OPENSSL_cleanse(x->data, strlen(x->data));
    curl_slist_free_all(l);
}

/*  Wipes the body kept from the last response (an authentication answer
    holds a token) before the buffer is reused. */
static void
body_wipe(dfb_http_t *self)
{
    if (self->body)
        OPENSSL_cleanse(self->body,
                        self->body_len + 1 < self->body_cap ? self->body_len + 1 : self->body_cap);
    self->body_len = 0;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    dfb_http_t *self = arg;
    size_t n = size * nmemb;
    if (n > self->max_body - self->body_len) {
        self->too_big = 1;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    if (self->body_len + n + 1 > self->body_cap) {
        size_t cap = self->body_cap ? self->body_cap : 4096;
        while (cap < self->body_len + n + 1)
            cap *= 2;
        /* Not realloc: a moved block would leave an unwiped copy. */
        char *p = malloc(cap);
        if (!p)
            return 0;
        if (self->body_len)
            memcpy(p, self->body, self->body_len);
        dfb_secret_free(self->body, self->body_cap);
        self->body = p;
        self->body_cap = cap;
    }
    memcpy(self->body + self->body_len, data, n);
    self->body_len += n;
    self->body[self->body_len] = '\0';
    return n;
}

dfb_http_t *
dfb_http_new(long connect_timeout_ms, long timeout_ms, size_t max_body_bytes, int stop_fd)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    dfb_http_t *self = calloc(1, sizeof *self);
    if (!self) {
        curl_global_cleanup();
        return NULL;
    }
    self->stop_fd = stop_fd;
    self->connect_timeout_ms = connect_timeout_ms;
    self->timeout_ms = timeout_ms;
    self->max_body = max_body_bytes;
    self->multi = curl_multi_init();
    self->easy = curl_easy_init();
    if (!self->multi || !self->easy) {
        dfb_http_destroy(&self);
        return NULL;
    }
    return self;
}

void
dfb_http_destroy(dfb_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_http_t *self = *self_p;
    for (int i = 0; i < 2; i++)
        dfb_http_set_token(self, (dfb_http_token_t)i, NULL);
    slist_wipe_free(self->hdrs);
    if (self->easy)
        curl_easy_cleanup(self->easy);
    if (self->multi)
        curl_multi_cleanup(self->multi);
    if (self->body) {
        /* Auth responses carry tokens: wipe before freeing. */
        OPENSSL_cleanse(self->body, self->body_cap);
        free(self->body);
    }
    for (size_t i = 0; i < self->nroutes; i++) {
        route_t *r = &self->routes[i];
        free(r->prefix);
        free(r->proxy);
        free(r->proxy_name);
        wipe_free(r->proxy_user);
        wipe_free(r->proxy_pass);
        wipe_free(r->proxy_basic);
        slist_wipe_free(r->extra);
        free(r->user_agent);
    }
    free(self->routes);
    free(self->ca_file);
    free(self->cert.data);
    if (self->key.data) {
        OPENSSL_cleanse(self->key.data, self->key.len);
        free(self->key.data);
    }
    free(self);
    curl_global_cleanup();
    *self_p = NULL;
}

int
dfb_http_add_client(dfb_http_t *self, const char *url_prefix, const dfb_http_client_t *opts)
{
    self->gen++; /* cached headers were built from the routes as they were */
    route_t *rs = realloc(self->routes, (self->nroutes + 1) * sizeof *rs);
    if (!rs)
        return -1;
    self->routes = rs;
    route_t *r = &rs[self->nroutes];
    memset(r, 0, sizeof *r);
    self->nroutes++; /* counted at once: destroy frees whatever was set */
    r->prefix = strdup(url_prefix);
    if (!r->prefix)
        return -1;
    r->prefix_len = strlen(url_prefix);
    while (r->prefix_len > 0 && r->prefix[r->prefix_len - 1] == '/')
        r->prefix[--r->prefix_len] = '\0';
    r->client_cert = opts->client_cert;
    char line[8192];
    if (opts->proxy_host) {
        int v6 = strchr(opts->proxy_host, ':') && opts->proxy_host[0] != '[';
        snprintf(line, sizeof line, "%s%s%s:%d", v6 ? "[" : "", opts->proxy_host, v6 ? "]" : "",
                 opts->proxy_port);
        r->proxy_name = strdup(line);
        snprintf(line, sizeof line, "http://%s", r->proxy_name ? r->proxy_name : "");
        r->proxy = strdup(line);
        if (!r->proxy_name || !r->proxy)
            return -1;
        /* As the Python BDK: credentials only with both username and password. */
        if (opts->proxy_username && opts->proxy_password) {
            r->proxy_user = strdup(opts->proxy_username);
            r->proxy_pass = strdup(opts->proxy_password);
            if (!r->proxy_user || !r->proxy_pass)
                return -1;
            /* What Proxy-Authorization carries, should a peer echo it. */
            int n = snprintf(line, sizeof line, "%s:%s", r->proxy_user, r->proxy_pass);
            if (n > 0 && (size_t)n < sizeof line) {
                r->proxy_basic = malloc(4 * (((size_t)n + 2) / 3) + 1);
                if (r->proxy_basic)
                    EVP_EncodeBlock((unsigned char *)r->proxy_basic, (unsigned char *)line, n);
            }
            OPENSSL_cleanse(line, sizeof line);
            if (!r->proxy_basic)
                return -1;
        }
    }
    for (size_t i = 0; opts->headers && i < opts->headers->count; i++) {
        const char *name = opts->headers->names[i], *value = opts->headers->values[i];
        if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
            return -1;
        /* "Name;" is curl's way of sending a header with an empty value. */
        int n = *value ? snprintf(line, sizeof line, "%s: %s", name, value)
                       : snprintf(line, sizeof line, "%s;", name);
        if (n < 0 || (size_t)n >= sizeof line) {
            OPENSSL_cleanse(line, sizeof line);
            return -1;
        }
        if (strcasecmp(name, "User-Agent") == 0) {
            free(r->user_agent);
            r->user_agent = strdup(line);
            OPENSSL_cleanse(line, sizeof line);
            if (!r->user_agent)
                return -1;
            continue;
        }
        if (strcasecmp(name, "X-Trace-Id") == 0)
            r->own_trace = 1;
        struct curl_slist *l = curl_slist_append(r->extra, line);
        OPENSSL_cleanse(line, sizeof line);
        if (!l)
            return -1;
        r->extra = l;
    }
    return 0;
}

int
dfb_http_set_identity(dfb_http_t *self, const char *cert_pem, size_t cert_len, const char *key_pem,
                      size_t key_len)
{
    free(self->cert.data);
    if (self->key.data) {
        OPENSSL_cleanse(self->key.data, self->key.len);
        free(self->key.data);
    }
    memset(&self->cert, 0, sizeof self->cert);
    memset(&self->key, 0, sizeof self->key);
    if (!cert_pem || !key_pem)
        return 0;
    self->cert.data = malloc(cert_len);
    self->key.data = malloc(key_len);
    if (!self->cert.data || !self->key.data)
        return -1;
    memcpy(self->cert.data, cert_pem, cert_len);
    memcpy(self->key.data, key_pem, key_len);
    self->cert.len = cert_len;
    self->key.len = key_len;
    /* Blobs are copied by curl per transfer: ours are kept for reuse. */
    self->cert.flags = self->key.flags = CURL_BLOB_NOCOPY;
    return 0;
}

int
dfb_http_set_ca_file(dfb_http_t *self, const char *path)
{
    free(self->ca_file);
    self->ca_file = path ? strdup(path) : NULL;
    return path && !self->ca_file ? -1 : 0;
}

/*  Registers one client's URL prefix (base URL + suffix) from an endpoint. */
static int
add_endpoint(dfb_http_t *self, const dfb_endpoint_t *ep, const char *suffix, int client_cert)
{
    char url[600];
    if (!ep->host || dfb_endpoint_url(ep, url, sizeof url - 32) != 0)
        return -1;
    strcat(url, suffix);
    dfb_http_client_t opts = {
        .proxy_host = ep->proxy.host,
        .proxy_port = ep->proxy.port,
        .proxy_username = ep->proxy.username,
        .proxy_password = ep->proxy.password,
        .headers = &ep->headers,
        .client_cert = client_cert,
    };
    return dfb_http_add_client(self, url, &opts);
}

/*  Sets every route's options once on the idle handle, so that an option
    this libcurl refuses (a TLS backend without blob support, a build
    without proxies ...) is a configuration error at start, not a surprise
    on the first call. Returns 0, or -1 with the reason in err. */
static int
check_options(dfb_http_t *self, char *err, size_t errlen)
{
    for (size_t i = 0; i <= self->nroutes; i++) {
        const route_t *r = i < self->nroutes ? &self->routes[i] : NULL; /* NULL: direct */
        const char *url = r ? r->prefix : "https://localhost/";
        const char *failed = NULL;
        curl_easy_reset(self->easy);
        CURLcode rc = set_options(self, r, url, "POST", NULL, "", 0, &failed);
        curl_easy_reset(self->easy);
        if (rc != CURLE_OK) {
            snprintf(err, errlen, "config: %s: this libcurl cannot set %s (%s)%s",
                     option_is_tls(failed) ? "ssl" : "transport", failed, curl_easy_strerror(rc),
                     option_is_tls(failed) ? ": TLS verification is never left off" : "");
            return -1;
        }
    }
    return 0;
}

int
dfb_http_configure(dfb_http_t *self, const dfb_config_t *cfg, char *err, size_t errlen)
{
    int cert_auth = !cfg->key_path && !cfg->key_content;
    if (cfg->trust_store_path) {
        int n = dfb_tls_check_ca_bundle(cfg->trust_store_path, err, errlen);
        if (n < 0)
            return -1;
        if (dfb_http_set_ca_file(self, cfg->trust_store_path) != 0)
            goto oom;
        dfb_info("TLS: trusting the %d certificate%s of %s (ssl.trustStore.path) instead of the "
                 "system CAs",
                 n, n == 1 ? "" : "s", cfg->trust_store_path);
    }
    if (cert_auth) {
        const char *key = cfg->cert_path ? "bot.certificate.path" : "bot.certificate.content";
        dfb_tls_identity_t *id =
            dfb_tls_identity_load(cfg->cert_path, cfg->cert_content, cfg->cert_password, key,
                                  cfg->strict_permissions, err, errlen);
        if (!id)
            return -1;
        int rc = dfb_http_set_identity(self, id->cert_pem, id->cert_len, id->key_pem, id->key_len);
        dfb_tls_identity_destroy(&id);
        if (rc != 0)
            goto oom;
    }
    struct {
        const dfb_endpoint_t *ep;
        const char *suffix;
        int cert;
        const char *section;
    } map[] = {
        {&cfg->pod, "/pod", 0, "pod"},
        {&cfg->pod, "/login", 0, "pod"},
        {&cfg->agent, "/agent", 0, "agent"},
        {&cfg->key_manager, "/relay", 0, "keyManager"},
        {&cfg->key_manager, "/keyauth", cert_auth, "keyManager"},
        {&cfg->session_auth, "/sessionauth", cert_auth, "sessionAuth"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (!map[i].ep->host)
            continue; /* sessionAuth without a host: unused */
        if (add_endpoint(self, map[i].ep, map[i].suffix, map[i].cert) != 0) {
            snprintf(err, errlen, "config: %s.defaultHeaders: unusable (a header is too long?)",
                     map[i].section);
            return -1;
        }
        if (map[i].ep->proxy.host && strcmp(map[i].suffix, "/login") != 0 &&
            strcmp(map[i].suffix, "/keyauth") != 0)
            dfb_info("%s: through proxy %s:%d%s", map[i].section, map[i].ep->proxy.host,
                     map[i].ep->proxy.port, map[i].ep->proxy.username ? " (with credentials)" : "");
    }
    return check_options(self, err, errlen);
oom:
    snprintf(err, errlen, "config: out of memory");
    return -1;
}

/*  The options for url: the longest registered prefix it starts with. */
static const route_t *
find_route(const dfb_http_t *self, const char *url)
{
    const route_t *best = NULL;
    for (size_t i = 0; i < self->nroutes; i++) {
        const route_t *r = &self->routes[i];
        /* url[prefix_len] only once url is known to be that long */
        if (strncmp(url, r->prefix, r->prefix_len) != 0)
            continue;
        char next = url[r->prefix_len];
        if ((next == '\0' || next == '/' || next == '?') &&
            (!best || r->prefix_len > best->prefix_len))
            best = r;
    }
    return best;
}

int
dfb_http_set_token(dfb_http_t *self, dfb_http_token_t which, const char *value)
{
    char **slot = &self->token[which == DFB_HTTP_KM_TOKEN ? 1 : 0];
    /* The cached headers hold the old token: gone now, rebuilt on use. */
    slist_wipe_free(self->hdrs);
    self->hdrs = NULL;
    self->hdrs_trace = NULL;
    self->gen++;
    if (*slot) {
        OPENSSL_cleanse(*slot, strlen(*slot));
        free(*slot);
        *slot = NULL;
    }
    if (value && *value) {
        /* Reject header injection from a hostile server's token. */
        if (strpbrk(value, "\r\n"))
            return -1;
        *slot = strdup(value);
        if (!*slot)
            return -1;
    }
    return 0;
}

/*  The secrets this client sends, for redaction: the tokens, every
    defaultHeaders value (User-Agent included), proxy passwords and the
    Basic credentials made of them. Returns a malloc'd array of borrowed
    strings (*n of them), or NULL when there are none or on allocation
    failure (*n = SIZE_MAX then: the caller shows nothing). */
static const char **
secrets_list(const dfb_http_t *self, size_t *n)
{
    size_t cap = 2;
    for (size_t i = 0; i < self->nroutes; i++) {
        cap += 3;
        for (const struct curl_slist *x = self->routes[i].extra; x; x = x->next)
            cap++;
    }
    const char **list = malloc(cap * sizeof *list);
    *n = 0;
    if (!list) {
        *n = SIZE_MAX;
        return NULL;
    }
    for (int t = 0; t < 2; t++)
        if (self->token[t])
            list[(*n)++] = self->token[t];
    for (size_t i = 0; i < self->nroutes; i++) {
        const route_t *r = &self->routes[i];
        if (r->proxy_pass)
            list[(*n)++] = r->proxy_pass;
        if (r->proxy_basic)
            list[(*n)++] = r->proxy_basic;
        /* "Name: value" lines ("Name;" = empty value: nothing to hide) */
        if (r->user_agent && strstr(r->user_agent, ": "))
            list[(*n)++] = strstr(r->user_agent, ": ") + 2;
        for (const struct curl_slist *x = r->extra; x; x = x->next) {
            const char *v = strstr(x->data, ": ");
            if (v && v[2])
                list[(*n)++] = v + 2;
        }
    }
    return list;
}

/*  curl's words do not quote headers, but a proxy's or server's reply may
    reach them: the detail is redacted like a body. */
static void
redact_detail(dfb_http_t *self)
{
    if (!self->detail[0])
        return;
    size_t n;
    const char **list = secrets_list(self, &n);
    char out[sizeof self->detail];
    if (n == SIZE_MAX)
        snprintf(out, sizeof out, "(detail withheld: out of memory)");
    else
        dfb_secret_redact(self->detail, strlen(self->detail), list, n, out, sizeof out);
    memcpy(self->detail, out, sizeof out);
    OPENSSL_cleanse(out, sizeof out);
    free(list);
}

size_t
dfb_http_redact(const dfb_http_t *self, const char *text, size_t len, char *out, size_t outlen)
{
    if (outlen == 0)
        return 0;
    size_t n;
    const char **list = secrets_list(self, &n);
    size_t found = 0;
    if (n == SIZE_MAX)
        snprintf(out, outlen, "(withheld: out of memory)");
    else
        found = dfb_secret_redact(text, len, list, n, out, outlen);
    free(list);
    return found;
}

size_t
dfb_http_body_excerpt(const dfb_http_t *self, char *out, size_t outlen)
{
    return dfb_http_redact(self, self->body ? self->body : "", self->body ? self->body_len : 0, out,
                           outlen);
}

const char *
dfb_http_body(const dfb_http_t *self, size_t *len)
{
    if (len)
        *len = self->body_len;
    return self->body ? self->body : "";
}

const char *
dfb_http_detail(const dfb_http_t *self)
{
    return self->detail;
}

const char *
dfb_http_strerror(dfb_http_err_t err)
{
    switch (err) {
    case DFB_HTTP_OK:
        return "ok";
    case DFB_HTTP_ECONNECT:
        return "cannot connect";
    case DFB_HTTP_ETIMEOUT:
        return "timed out";
    case DFB_HTTP_ERESET:
        return "connection reset";
    case DFB_HTTP_ETRUNCATED:
        return "truncated or empty reply";
    case DFB_HTTP_ETOOBIG:
        return "response body too large";
    case DFB_HTTP_ETLS:
        return "TLS failure";
    case DFB_HTTP_ECERT:
        return "TLS certificate problem (a private CA needs ssl.trustStore.path)";
    case DFB_HTTP_ESTOPPED:
        return "stopped";
    case DFB_HTTP_EBADREPLY:
        return "malformed HTTP reply";
    case DFB_HTTP_EOTHER:
    case DFB_HTTP_ERR_COUNT:
        break;
    }
    return "transport error";
}

/*  sent: the request left (curl counted request bytes). curl 7.88 reports
    a response header over its 100 KB limit as CURLE_OUT_OF_MEMORY and a
    reply that is not HTTP (HTTP/0.9 refused) as CURLE_UNSUPPORTED_PROTOCOL;
    before anything was sent the same codes mean a bad URL or a real
    allocation failure, which retrying cannot mend. */
static dfb_http_err_t
classify(dfb_http_t *self, CURLcode rc, int sent)
{
    switch (rc) {
    case CURLE_OUT_OF_MEMORY:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return sent ? DFB_HTTP_EBADREPLY : DFB_HTTP_EOTHER;
    case CURLE_WEIRD_SERVER_REPLY:
        return DFB_HTTP_EBADREPLY;
    case CURLE_OK:
        return DFB_HTTP_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return DFB_HTTP_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return DFB_HTTP_ETIMEOUT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        return DFB_HTTP_ERESET;
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
        return DFB_HTTP_ETRUNCATED;
    case CURLE_FILESIZE_EXCEEDED:
        return DFB_HTTP_ETOOBIG;
    case CURLE_WRITE_ERROR:
        return self->too_big ? DFB_HTTP_ETOOBIG : DFB_HTTP_EOTHER;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CIPHER:
        return DFB_HTTP_ETLS;
    case CURLE_PEER_FAILED_VERIFICATION: /* unknown CA, wrong host name, expired */
    case CURLE_SSL_CERTPROBLEM:          /* our client certificate is unusable */
    case CURLE_SSL_CACERT_BADFILE:       /* the trust store is unusable */
        return DFB_HTTP_ECERT;
    default:
        return DFB_HTTP_EOTHER;
    }
}

/*  Whether a failed option guards the server's identity or ours: such a
    failure must stop the call, never leave verification off. */
static int
option_is_tls(const char *name)
{
    return strstr(name, "CURLOPT_SSL") == name || strcmp(name, "CURLOPT_CAINFO") == 0;
}

/*  Sets one option; after the first failure the rest are skipped and
 *failed names it. */
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK) {                                                                      \
            rc = self->fail_opt == (long)(opt) ? CURLE_UNKNOWN_OPTION                              \
                                               : curl_easy_setopt(e, opt, val);                    \
            if (rc != CURLE_OK)                                                                    \
                *failed = #opt;                                                                    \
        }                                                                                          \
    } while (0)

/*  Every option of one request on the (reset) easy handle. Returns
    CURLE_OK, or the first failure with *failed naming the option: every
    result is checked, so a transfer never starts with an option silently
    missing (TLS verification above all). */
static CURLcode
set_options(dfb_http_t *self, const route_t *route, const char *url, const char *method,
            struct curl_slist *headers, const char *body, size_t body_len, const char **failed)
{
    CURL *e = self->easy;
    CURLcode rc = CURLE_OK;
    SET(CURLOPT_URL, url);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, self);
    SET(CURLOPT_ERRORBUFFER, self->detail);
    SET(CURLOPT_CONNECTTIMEOUT_MS, self->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, self->timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)self->max_body);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* A datafeed batch is ~100 KB: read it in one or two recv() calls, not
       one per 16 KB (curl's default); every syscall is costly on a VM. Only
       a wish: libcurl before 8.7 refuses a new size while the handle still
       holds its receive buffer (CURLE_BAD_FUNCTION_ARGUMENT), and then keeps
       reading into that buffer with the default size: slower, never wrong. */
    (void)curl_easy_setopt(e, CURLOPT_BUFFERSIZE, DFB_HTTP_RECV_BUFFER);
    SET(CURLOPT_CUSTOMREQUEST, method);
    /* TLS: peer and host verification stay on (curl's defaults, set again
       so no reset can lose them). */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (self->ca_file)
        SET(CURLOPT_CAINFO, self->ca_file);
    if (route && route->client_cert && self->cert.data) {
        SET(CURLOPT_SSLCERT_BLOB, &self->cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY_BLOB, &self->key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    /* "" = no proxy, even if http_proxy/https_proxy are set: the BDKs use
       only the configured proxy. */
    SET(CURLOPT_PROXY, route && route->proxy ? route->proxy : "");
    if (route && route->proxy) {
        SET(CURLOPT_PROXYTYPE, (long)CURLPROXY_HTTP);
        if (route->proxy_user) {
            SET(CURLOPT_PROXYUSERNAME, route->proxy_user);
            SET(CURLOPT_PROXYPASSWORD, route->proxy_pass);
            SET(CURLOPT_PROXYAUTH, (long)CURLAUTH_BASIC);
        }
    }
    if (body) {
        SET(CURLOPT_POSTFIELDS, body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    }
    return rc;
}
#undef SET

void
dfb_http_fail_option(dfb_http_t *self, long option)
{
    self->fail_opt = option;
}

static int
stop_requested(int fd)
{
    if (fd < 0)
        return 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0;
}

/*  Builds self->hdrs for a call on route (NULL: direct): the fixed
    headers, an X-Trace-Id (filled per call) unless the client's default
    headers carry their own, the defaultHeaders, the tokens. 0, or -1 (no
    list) when out of memory or a token line is too long. */
static int
build_headers(dfb_http_t *self, const route_t *route)
{
    struct curl_slist *headers = NULL, *h;
    char line[8192];
    const char *fixed[] = {"Content-Type: application/json", "Accept: application/json",
                           route && route->user_agent ? route->user_agent
                                                      : "User-Agent: dfbridge/" DF_VERSION,
                           "Expect:"};
    int ok = 1;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && ok; i++) {
        h = curl_slist_append(headers, fixed[i]);
        ok = h != NULL;
        headers = h ? h : headers;
    }
    if (ok && !(route && route->own_trace)) {
        h = curl_slist_append(headers, "X-Trace-Id: 000000");
        ok = h != NULL;
        headers = h ? h : headers;
        if (ok) {
            while (h->next)
                h = h->next;
            self->hdrs_trace = h->data + strlen("X-Trace-Id: ");
        }
    }
    /* defaultHeaders of the client (never logged: they may carry keys) */
    for (const struct curl_slist *x = route ? route->extra : NULL; x && ok; x = x->next) {
        h = curl_slist_append(headers, x->data);
        ok = h != NULL;
        headers = h ? h : headers;
    }
    for (int i = 0; i < 2 && ok; i++) {
        if (!self->token[i])
            continue;
        int n = snprintf(line, sizeof line, "%s: %s", s_token_header[i], self->token[i]);
        if (n < 0 || (size_t)n >= sizeof line) {
            ok = 0;
            break;
        }
        h = curl_slist_append(headers, line);
        ok = h != NULL;
        headers = h ? h : headers;
    }
    OPENSSL_cleanse(line, sizeof line);
    if (!ok) {
        slist_wipe_free(headers);
        self->hdrs_trace = NULL;
        return -1;
    }
    self->hdrs = headers;
    return 0;
}

dfb_http_err_t
dfb_http_request(dfb_http_t *self, const char *method, const char *url, const char *body,
                 size_t body_len, int *status)
{
    return dfb_http_request_ex(self, method, url, body, body_len, NULL, status);
}

int
dfb_http_request_sent(const dfb_http_t *self)
{
    return self->sent;
}

long long
dfb_http_retry_after_ms(const dfb_http_t *self)
{
    return self->retry_after_ms;
}

dfb_http_err_t
dfb_http_request_ex(dfb_http_t *self, const char *method, const char *url, const char *body,
                    size_t body_len, const dfb_http_opts_t *opts, int *status)
{
    *status = 0;
    self->sent = 0;
    self->retry_after_ms = -1;
    body_wipe(self);
    self->too_big = 0;
    self->detail[0] = '\0';
    if (stop_requested(self->stop_fd))
        return DFB_HTTP_ESTOPPED;

    const route_t *route = find_route(self, url);
    size_t ridx = route ? (size_t)(route - self->routes) : SIZE_MAX;
    if (!self->hdrs || self->hdrs_gen != self->gen || self->hdrs_route != ridx) {
        slist_wipe_free(self->hdrs);
        self->hdrs = NULL;
        self->hdrs_trace = NULL;
        if (build_headers(self, route) != 0) {
            snprintf(self->detail, sizeof self->detail, "cannot build headers");
            return DFB_HTTP_EOTHER;
        }
        self->hdrs_gen = self->gen;
        self->hdrs_route = ridx;
    }
    struct curl_slist *headers = self->hdrs;
    if (self->hdrs_trace) {
        /* A fresh trace id per call, as the BDKs send. */
        unsigned char rnd[6];
        static const char alphabet[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        if (RAND_bytes(rnd, sizeof rnd) != 1)
            memset(rnd, 0, sizeof rnd);
        for (int i = 0; i < 6; i++)
            self->hdrs_trace[i] = alphabet[rnd[i] % (sizeof alphabet - 1)];
    }

    /* Another Content-Type: one node in front of the cached list's tail (its
       first line is the JSON Content-Type), nothing allocated. */
    char ct_line[256];
    struct curl_slist ct_node;
    if (opts && opts->content_type && headers) {
        snprintf(ct_line, sizeof ct_line, "Content-Type: %s", opts->content_type);
        ct_node.data = ct_line;
        ct_node.next = headers->next;
        headers = &ct_node;
    }

    CURL *e = self->easy;
    curl_easy_reset(e); /* keeps the connection cache, clears options */
    const char *failed = NULL;
    CURLcode orc = set_options(self, route, url, method, headers, body, body_len, &failed);
    if (orc == CURLE_OK && opts && opts->fresh_connect) {
        orc = curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        if (orc == CURLE_OK)
            orc = curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        failed = "CURLOPT_FRESH_CONNECT";
    }
    if (orc != CURLE_OK) {
        snprintf(self->detail, sizeof self->detail, "cannot set %s: %s", failed,
                 curl_easy_strerror(orc));
        /* Never a request with TLS verification in doubt: ECERT is fatal. */
        return option_is_tls(failed) ? DFB_HTTP_ECERT : DFB_HTTP_EOTHER;
    }

    dfb_http_err_t result = DFB_HTTP_EOTHER;
    if (curl_multi_add_handle(self->multi, e) != CURLM_OK) {
        snprintf(self->detail, sizeof self->detail, "curl_multi_add_handle failed");
        return DFB_HTTP_EOTHER;
    }
    int stopped = 0, running = 1;
    CURLMcode mc = CURLM_OK;
    while (running) {
        mc = curl_multi_perform(self->multi, &running);
        if (mc != CURLM_OK || !running)
            break;
        struct curl_waitfd wfd = {.fd = self->stop_fd, .events = CURL_WAIT_POLLIN};
        mc = curl_multi_poll(self->multi, &wfd, self->stop_fd >= 0 ? 1 : 0, 1000, NULL);
        if (mc != CURLM_OK)
            break;
        if (wfd.revents & CURL_WAIT_POLLIN) {
            stopped = 1;
            break;
        }
    }
    if (stopped) {
        result = DFB_HTTP_ESTOPPED;
        self->sent = 1; /* cut mid-transfer: the server may have it */
    } else if (mc != CURLM_OK) {
        snprintf(self->detail, sizeof self->detail, "%s", curl_multi_strerror(mc));
        result = DFB_HTTP_EOTHER;
    } else {
        int left;
        CURLMsg *msg;
        result = DFB_HTTP_EOTHER;
        while ((msg = curl_multi_info_read(self->multi, &left))) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == e) {
                long sent = 0;
                if (curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK)
                    sent = 0;
                self->sent = sent > 0;
                result = classify(self, msg->data.result, sent > 0);
                if (result != DFB_HTTP_OK && !self->detail[0])
                    snprintf(self->detail, sizeof self->detail, "%s",
                             curl_easy_strerror(msg->data.result));
                if (result == DFB_HTTP_EBADREPLY && msg->data.result == CURLE_OUT_OF_MEMORY) {
                    /* curl's words would send an operator after the wrong problem */
                    size_t dl = strlen(self->detail);
                    snprintf(self->detail + dl, sizeof self->detail - dl,
                             ": a response header over curl's limit");
                }
            }
        }
        long connect_code = 0;
        if (result != DFB_HTTP_OK && route && route->proxy) {
            /* Say which proxy, and what it answered to CONNECT (407 = credentials). */
            if (curl_easy_getinfo(e, CURLINFO_HTTP_CONNECTCODE, &connect_code) != CURLE_OK)
                connect_code = 0; /* only refines the message */
            size_t dl = strlen(self->detail);
            snprintf(self->detail + dl, sizeof self->detail - dl, "; via proxy %s%s",
                     route->proxy_name,
                     connect_code == 407 ? ": 407 proxy authentication required (check "
                                           "proxy.username and proxy.password)"
                                         : "");
        }
        if (result == DFB_HTTP_OK) {
            long code = 0;
            if (curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code < 100 ||
                code > 999) {
                snprintf(self->detail, sizeof self->detail, "no usable HTTP status (%ld)", code);
                result = DFB_HTTP_EBADREPLY;
            } else {
                *status = (int)code;
                curl_off_t ra = 0;
                if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
                    self->retry_after_ms = (long long)ra * 1000;
            }
        }
    }
    curl_multi_remove_handle(self->multi, e);
    if (result != DFB_HTTP_OK)
        body_wipe(self);
    redact_detail(self);
    return result;
}

/* ---- self-test: a loopback HTTP server in a thread ---------------------- */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dfb_retry.h"

typedef struct {
    int listen_fd;
    int quit[2];       /* the test writes here to end the server */
    int stop_wr;       /* /hold writes the client's stop fd when it arrives */
    long long stop_at; /* when it did */
    char last_request[8192];
    int requests;
    /* The client reads what the server thread wrote after the response
       arrives: ordered by the socket, which TSan cannot see; the lock
       makes the order visible. */
    pthread_mutex_t lock;
    char seen[8192]; /* the test's copy of last_request (last_req) */
} server_t;

/*  The last request the server read, copied under the lock. */
static const char *
last_req(server_t *srv)
{
    pthread_mutex_lock(&srv->lock);
    memcpy(srv->seen, srv->last_request, sizeof srv->seen);
    pthread_mutex_unlock(&srv->lock);
    return srv->seen;
}

static long long
stop_seen(server_t *srv)
{
    pthread_mutex_lock(&srv->lock);
    long long t = srv->stop_at;
    pthread_mutex_unlock(&srv->lock);
    return t;
}

static int
requests_seen(server_t *srv)
{
    pthread_mutex_lock(&srv->lock);
    int n = srv->requests;
    pthread_mutex_unlock(&srv->lock);
    return n;
}


/*  Case-insensitive strstr (ci_find is a GNU extension). */
static const char *
ci_find(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}
/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

static void
send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

/*  Waits until fd is readable or the server is told to quit (5 s cap).
    Returns 1 when fd is readable. */
static int
wait_readable(server_t *srv, int fd)
{
    struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = srv->quit[0], .events = POLLIN}};
    int rc = poll(pfd, 2, 5000);
    return rc > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) && !pfd[1].revents;
}

static void
serve_one(server_t *srv, int fd)
{
    char req[8192];
    size_t len = 0;
    /* Read the head (and the small bodies our tests send). */
    while (len < sizeof req - 1) {
        if (!wait_readable(srv, fd))
            return;
        ssize_t n = recv(fd, req + len, sizeof req - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
        char *end = strstr(req, "\r\n\r\n");
        if (end) {
            const char *cl = ci_find(req, "\r\nContent-Length:");
            size_t want = cl ? (size_t)atol(cl + 17) : 0;
            if (len >= (size_t)(end + 4 - req) + want)
                break;
        }
    }
    pthread_mutex_lock(&srv->lock);
    memcpy(srv->last_request, req, len + 1);
    srv->requests++;
    pthread_mutex_unlock(&srv->lock);
    char path[256] = "";
    sscanf(req, "%*s %255s", path);
    char head[512];
    size_t pl = strlen(path);
    if (pl >= 5 && strcmp(path + pl - 5, "/echo") == 0) {
        /* A hostile server (or a proxy in the way) that echoes the request,
           tokens and header values included, in a 403 body. */
        snprintf(head, sizeof head,
                 "HTTP/1.1 403 Forbidden\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
        send_all(fd, head, strlen(head));
        send_all(fd, req, len);
    } else if (strcmp(path, "/ok") == 0) {
        const char *b = "{\"hello\":\"world\"}";
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 "%zu\r\nConnection: close\r\n\r\n",
                 strlen(b));
        send_all(fd, head, strlen(head));
        send_all(fd, b, strlen(b));
    } else if (strcmp(path, "/status500") == 0) {
        const char *b = "{\"code\":500,\"message\":\"boom\"}";
        snprintf(head, sizeof head,
                 "HTTP/1.1 500 Internal Server Error\r\nContent-Length: %zu\r\nConnection: "
                 "close\r\n\r\n",
                 strlen(b));
        send_all(fd, head, strlen(head));
        send_all(fd, b, strlen(b));
    } else if (strcmp(path, "/hold") == 0 || strcmp(path, "/hold-stop") == 0) {
        if (strcmp(path, "/hold-stop") == 0) {
            pthread_mutex_lock(&srv->lock);
            srv->stop_at = dfb_now_ms();
            pthread_mutex_unlock(&srv->lock);
            if (write(srv->stop_wr, "s", 1) != 1)
                return;
        }
        /* Hold until the client goes away (or the test ends). */
        while (wait_readable(srv, fd)) {
            char tmp[256];
            if (recv(fd, tmp, sizeof tmp, 0) <= 0)
                break;
        }
    } else if (strcmp(path, "/big") == 0 || strcmp(path, "/bigchunked") == 0) {
        size_t total = 200000;
        if (strcmp(path, "/big") == 0)
            snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", total);
        else
            snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        send_all(fd, head, strlen(head));
        char chunk[4096];
        memset(chunk, 'a', sizeof chunk);
        for (size_t sent = 0; sent < total; sent += sizeof chunk)
            send_all(fd, chunk, sizeof chunk);
    } else if (strcmp(path, "/hugeheader") == 0) {
        /* One header line over curl's 100 KB header limit. */
        const char *h = "HTTP/1.1 200 OK\r\nX-Huge: ";
        send_all(fd, h, strlen(h));
        char chunk[4096];
        memset(chunk, 'h', sizeof chunk);
        for (int i = 0; i < 30; i++)
            send_all(fd, chunk, sizeof chunk);
        const char *tail = "\r\nContent-Length: 2\r\n\r\n{}";
        send_all(fd, tail, strlen(tail));
    } else if (strcmp(path, "/nothttp") == 0) {
        const char *junk = "SSH-2.0-OpenSSH_9.2 not an HTTP reply\r\n";
        send_all(fd, junk, strlen(junk));
    } else if (strcmp(path, "/truncated") == 0) {
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"events\":");
        send_all(fd, head, strlen(head));
    } else {
        /* /nothing and anything else: close without a reply. */
    }
}

static void *
server_run(void *arg)
{
    server_t *srv = arg;
    for (;;) {
        if (!wait_readable(srv, srv->listen_fd)) {
            /* quit, or 5 s without a client: both end the server */
            return NULL;
        }
        int fd = accept(srv->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        serve_one(srv, fd);
        close(fd);
    }
}

static int
listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

int
dfb_http_test(int verbose)
{
    df_check_failures = 0;
    server_t srv;
    memset(&srv, 0, sizeof srv);
    pthread_mutex_init(&srv.lock, NULL);
    int port;
    int stop[2];
    srv.listen_fd = listen_loopback(&port);
    if (srv.listen_fd < 0 || pipe(srv.quit) != 0 || pipe(stop) != 0) {
        printf("FAIL cannot set up the loopback server\n");
        return 1;
    }
    srv.stop_wr = stop[1];
    pthread_t thread;
    pthread_create(&thread, NULL, server_run, &srv);

    char url[256];
    int status;
    size_t len;
    dfb_http_t *http = dfb_http_new(2000, 5000, 65536, stop[0]);
    CHECK(http);

    /* 200 with a body; headers as the pod expects them. */
    CHECK(dfb_http_set_token(http, DFB_HTTP_SESSION_TOKEN, "sess-123") == 0);
    CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "") == 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", port);
    dfb_http_err_t rc = dfb_http_request(http, "POST", url, "{\"a\":1}", 7, &status);
    const char *body = dfb_http_body(http, &len);
    if (verbose)
        printf("  /ok -> %s %d '%s'\n", dfb_http_strerror(rc), status, body);
    CHECK(rc == DFB_HTTP_OK && status == 200);
    CHECK(len == 17 && strcmp(body, "{\"hello\":\"world\"}") == 0);
    CHECK(strncmp(last_req(&srv), "POST /ok HTTP/1.1\r\n", 19) == 0);
    CHECK(strstr(last_req(&srv), "\r\nsessionToken: sess-123\r\n"));
    CHECK(!ci_find(last_req(&srv), "keyManagerToken"));
    CHECK(strstr(last_req(&srv), "\r\nContent-Type: application/json\r\n"));
    CHECK(strstr(last_req(&srv), "\r\nUser-Agent: dfbridge/" DF_VERSION "\r\n"));
    CHECK(strstr(last_req(&srv), "\r\n\r\n{\"a\":1}"));
    const char *trace = strstr(last_req(&srv), "\r\nX-Trace-Id: ");
    CHECK(trace && trace[14 + 6] == '\r');

    /* keyManagerToken sent when set; a token with CR/LF is refused. */
    CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "km-9") == 0);
    CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "bad\r\nX: y") == -1);
    CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "km-9") == 0);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    CHECK(rc == DFB_HTTP_OK && status == 200);
    CHECK(strncmp(last_req(&srv), "GET /ok HTTP/1.1\r\n", 18) == 0);
    CHECK(strstr(last_req(&srv), "\r\nkeyManagerToken: km-9\r\n"));

    /* The header list is kept from call to call: the trace id is still new
       on each call, and a changed or removed token is sent as it is now. */
    {
        char first[7] = "";
        const char *t1 = strstr(last_req(&srv), "\r\nX-Trace-Id: ");
        CHECK(t1 != NULL);
        if (t1)
            memcpy(first, t1 + 14, 6);
        rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
        const char *t2 = strstr(last_req(&srv), "\r\nX-Trace-Id: ");
        CHECK(rc == DFB_HTTP_OK && t2 && t2[14 + 6] == '\r' && memcmp(t2 + 14, first, 6) != 0);
        CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "km-10") == 0);
        rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
        CHECK(rc == DFB_HTTP_OK && strstr(last_req(&srv), "\r\nkeyManagerToken: km-10\r\n"));
        CHECK(!strstr(last_req(&srv), "km-9"));
        CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "") == 0);
        rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
        CHECK(rc == DFB_HTTP_OK && !ci_find(last_req(&srv), "keyManagerToken"));
        CHECK(strstr(last_req(&srv), "\r\nsessionToken: sess-123\r\n"));
        CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "km-9") == 0);
    }

    /* Client routes: defaultHeaders and a User-Agent override for URLs under
       the prefix only; X-Trace-Id from defaultHeaders replaces the random one. */
    {
        char *names[] = {"X-Team", "User-Agent", "X-Trace-Id", "X-Empty"};
        char *values[] = {"bots", "custom/2", "fixed1", ""};
        dfb_headers_t hd = {names, values, 4};
        char prefix[128];
        snprintf(prefix, sizeof prefix, "http://127.0.0.1:%d/ok", port);
        dfb_http_client_t opts = {.headers = &hd};
        CHECK(dfb_http_add_client(http, prefix, &opts) == 0);
        rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
        CHECK(rc == DFB_HTTP_OK && status == 200);
        CHECK(strstr(last_req(&srv), "\r\nX-Team: bots\r\n"));
        CHECK(strstr(last_req(&srv), "\r\nX-Empty:\r\n"));
        CHECK(strstr(last_req(&srv), "\r\nUser-Agent: custom/2\r\n"));
        CHECK(!strstr(last_req(&srv), "dfbridge/"));
        CHECK(strstr(last_req(&srv), "\r\nX-Trace-Id: fixed1\r\n"));
        CHECK(!strstr(strstr(last_req(&srv), "X-Trace-Id: fixed1") + 1, "X-Trace-Id"));
        /* A prefix matches whole path segments only: /okay is not under /ok. */
        char other[128];
        snprintf(other, sizeof other, "http://127.0.0.1:%d/okay", port);
        rc = dfb_http_request(http, "GET", other, NULL, 0, &status);
        CHECK(!strstr(last_req(&srv), "X-Team"));
        CHECK(strstr(last_req(&srv), "\r\nUser-Agent: dfbridge/" DF_VERSION "\r\n"));
        /* A header value with CR/LF is refused. */
        char *bad_v[] = {"a\r\nX-Injected: 1"};
        dfb_headers_t bad = {names, bad_v, 1};
        dfb_http_client_t bad_opts = {.headers = &bad};
        CHECK(dfb_http_add_client(http, "http://x", &bad_opts) == -1);
    }
    /* A proxy route: the request goes to the proxy (this server) in absolute
       form with Basic credentials; the reply is garbage to curl here, which
       does not matter: the request line and headers are what is checked. */
    {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "http://192.0.2.1:9");
        dfb_http_client_t opts = {.proxy_host = "127.0.0.1",
                                  .proxy_port = port,
                                  .proxy_username = "pu",
                                  .proxy_password = "pp"};
        CHECK(dfb_http_add_client(http, prefix, &opts) == 0);
        rc = dfb_http_request(http, "GET", "http://192.0.2.1:9/via/proxy", NULL, 0, &status);
        if (verbose)
            printf("  via proxy -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
        CHECK(strncmp(last_req(&srv), "GET http://192.0.2.1:9/via/proxy HTTP/1.1\r\n", 43) == 0);
        CHECK(strstr(last_req(&srv), "\r\nProxy-Authorization: Basic cHU6cHA=\r\n"));
        char via[64];
        snprintf(via, sizeof via, "via proxy 127.0.0.1:%d", port);
        CHECK(rc != DFB_HTTP_OK && strstr(dfb_http_detail(http), via));
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", port);

    /* secrets: a server that echoes the request in its body. The raw body
       holds every secret the client sent; the excerpt for the log holds
       none, at any cut. */
    {
        char *names[] = {"X-Api-Key", "User-Agent"};
        char *values[] = {"hdr-SECRET-3", "ua-SECRET-4"};
        dfb_headers_t hd = {names, values, 2};
        char prefix[128], out[4096];
        snprintf(prefix, sizeof prefix, "http://127.0.0.1:%d/echo", port);
        dfb_http_client_t opts = {.headers = &hd};
        CHECK(dfb_http_add_client(http, prefix, &opts) == 0);
        CHECK(dfb_http_set_token(http, DFB_HTTP_SESSION_TOKEN, "sess-SECRET-1") == 0);
        CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "km-SECRET-2") == 0);
        rc = dfb_http_request(http, "GET", prefix, NULL, 0, &status);
        CHECK(rc == DFB_HTTP_OK && status == 403);
        body = dfb_http_body(http, &len);
        CHECK(strstr(body, "sess-SECRET-1") && strstr(body, "km-SECRET-2") &&
              strstr(body, "hdr-SECRET-3") && strstr(body, "ua-SECRET-4"));
        size_t found = dfb_http_body_excerpt(http, out, sizeof out);
        if (verbose)
            printf("  echo excerpt (%zu replaced): %.300s\n", found, out);
        /* 4 secrets, and twice the proxy password "pp" of the route above
           (inside "application"): every secret is masked, however short */
        CHECK(found == 6 && !strstr(out, "SECRET") && strstr(out, "sessionToken: ***") &&
              strstr(out, "X-Api-Key: ***") && !strchr(out, '\n'));
        for (size_t cut = 1; cut < sizeof out && cut <= len + 1; cut++) {
            dfb_http_body_excerpt(http, out, cut);
            if (strstr(out, "SECRE") || strstr(out, "sess-") || strstr(out, "km-S") ||
                strstr(out, "hdr-") || strstr(out, "ua-S")) {
                printf("  cut %zu shows a secret's start: %s\n", cut, out);
                CHECK(!"an excerpt shows a secret's start");
                break;
            }
        }
        /* Through a proxy with credentials: the echoed Basic credentials. */
        rc = dfb_http_request(http, "GET", "http://192.0.2.1:9/echo", NULL, 0, &status);
        CHECK(rc == DFB_HTTP_OK && status == 403);
        body = dfb_http_body(http, &len);
        CHECK(strstr(body, "Proxy-Authorization: Basic cHU6cHA=\r\n"));
        dfb_http_body_excerpt(http, out, sizeof out);
        CHECK(!strstr(out, "cHU6cHA=") && strstr(out, "Proxy-Authorization: Basic ***"));
        /* The next request wipes the body it replaces: no token left behind. */
        const char *old = dfb_http_body(http, NULL);
        rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
        CHECK(rc == DFB_HTTP_OK && dfb_http_body(http, NULL) == old);
        int left = 0; /* the old bytes past the new body: zeros, no credential */
        for (size_t i = strlen(old); i < len; i++)
            left |= old[i];
        CHECK(left == 0);
        CHECK(dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, "km-9") == 0);
        CHECK(dfb_http_set_token(http, DFB_HTTP_SESSION_TOKEN, "sess-123") == 0);
    }

    /* A 500 is a status, not a transport error. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/status500", port);
    rc = dfb_http_request(http, "POST", url, "{}", 2, &status);
    CHECK(rc == DFB_HTTP_OK && status == 500);
    CHECK(strstr(dfb_http_body(http, NULL), "boom"));

    /* Body cap, with and without Content-Length. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    if (verbose)
        printf("  /big -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
    CHECK(rc == DFB_HTTP_ETOOBIG);
    CHECK(dfb_http_body(http, &len) && len == 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/bigchunked", port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    if (verbose)
        printf("  /bigchunked -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
    CHECK(rc == DFB_HTTP_ETOOBIG);

    /* Truncated body and no reply at all. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/truncated", port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    if (verbose)
        printf("  /truncated -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
    CHECK(rc == DFB_HTTP_ETRUNCATED);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nothing", port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    if (verbose)
        printf("  /nothing -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
    CHECK(rc == DFB_HTTP_ETRUNCATED);

    /* What a glitching proxy sends: a header over curl's limit, bytes that
       are not HTTP. Both are retryable transport errors, never EOTHER. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hugeheader", port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    if (verbose)
        printf("  /hugeheader -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
    CHECK(rc == DFB_HTTP_EBADREPLY);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nothttp", port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    if (verbose)
        printf("  /nothttp -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
    CHECK(rc == DFB_HTTP_EBADREPLY);
    /* A scheme curl is not allowed to speak fails before anything is sent:
       a configuration error, not a bad reply. */
    rc = dfb_http_request(http, "GET", "ftp://127.0.0.1/x", NULL, 0, &status);
    if (verbose)
        printf("  ftp:// -> %s (%s)\n", dfb_http_strerror(rc), dfb_http_detail(http));
    CHECK(rc == DFB_HTTP_EOTHER);

    /* Every option is checked: one that cannot be set stops the call before
       anything is sent; a TLS one as ECERT (fatal: verification is never
       left off), any other as EOTHER. At start, check_options reports the
       same as a configuration error. */
    {
        struct {
            long opt;
            const char *name;
            dfb_http_err_t want;
        } fails[] = {
            {CURLOPT_SSL_VERIFYPEER, "CURLOPT_SSL_VERIFYPEER", DFB_HTTP_ECERT},
            {CURLOPT_SSL_VERIFYHOST, "CURLOPT_SSL_VERIFYHOST", DFB_HTTP_ECERT},
            {CURLOPT_CAINFO, "CURLOPT_CAINFO", DFB_HTTP_ECERT},
            {CURLOPT_TIMEOUT_MS, "CURLOPT_TIMEOUT_MS", DFB_HTTP_EOTHER},
            {CURLOPT_CONNECTTIMEOUT_MS, "CURLOPT_CONNECTTIMEOUT_MS", DFB_HTTP_EOTHER},
            {CURLOPT_PROXY, "CURLOPT_PROXY", DFB_HTTP_EOTHER},
            {CURLOPT_PROTOCOLS_STR, "CURLOPT_PROTOCOLS_STR", DFB_HTTP_EOTHER},
        };
        CHECK(dfb_http_set_ca_file(http, "/nonexistent/ca.pem") == 0);
        snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", port);
        for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
            int before = requests_seen(&srv);
            dfb_http_fail_option(http, fails[i].opt);
            rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
            if (verbose)
                printf("  %s fails -> %s (%s)\n", fails[i].name, dfb_http_strerror(rc),
                       dfb_http_detail(http));
            CHECK(rc == fails[i].want);
            CHECK(strstr(dfb_http_detail(http), fails[i].name));
            CHECK(requests_seen(&srv) == before);
            char err[256] = "";
            CHECK(check_options(http, err, sizeof err) == -1);
            CHECK(strstr(err, fails[i].name));
            CHECK((fails[i].want == DFB_HTTP_ECERT) == (strstr(err, "config: ssl:") == err));
        }
        dfb_http_fail_option(http, 0);
        char err[256] = "";
        CHECK(check_options(http, err, sizeof err) == 0 && err[0] == '\0');
        CHECK(dfb_http_set_ca_file(http, NULL) == 0);
        rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
        CHECK(rc == DFB_HTTP_OK && status == 200);
    }

    /* Total timeout on a held request. */
    dfb_http_t *quick = dfb_http_new(2000, 300, 65536, -1);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hold", port);
    long long t0 = dfb_now_ms();
    rc = dfb_http_request(quick, "POST", url, "{}", 2, &status);
    long long took = dfb_now_ms() - t0;
    if (verbose)
        printf("  /hold with 300 ms timeout -> %s after %lld ms\n", dfb_http_strerror(rc), took);
    CHECK(rc == DFB_HTTP_ETIMEOUT);
    CHECK(took >= 250 && took < 2000);
    dfb_http_destroy(&quick);
    CHECK(!quick);

    /* Connection refused: a port that was just released. */
    int dead_port;
    int dead = listen_loopback(&dead_port);
    close(dead);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", dead_port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    CHECK(rc == DFB_HTTP_ECONNECT);

    /* Stop: the server writes the stop fd once it holds the request; the
       client must give up at once: ESTOPPED (not the 5 s ETIMEOUT), within
       1 s of that write (not 100 ms: a margin a loaded ASan run keeps). */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hold-stop", port);
    rc = dfb_http_request(http, "POST", url, "{}", 2, &status);
    long long after = dfb_now_ms() - stop_seen(&srv);
    if (verbose)
        printf("  /hold-stop -> %s, %lld ms after the stop\n", dfb_http_strerror(rc), after);
    CHECK(rc == DFB_HTTP_ESTOPPED);
    CHECK(stop_seen(&srv) > 0 && after < 1000);
    /* Stop is sticky: the next request fails at once without a call. */
    int before = requests_seen(&srv);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", port);
    rc = dfb_http_request(http, "GET", url, NULL, 0, &status);
    CHECK(rc == DFB_HTTP_ESTOPPED && requests_seen(&srv) == before);

    dfb_http_destroy(&http);
    CHECK(!http);
    if (write(srv.quit[1], "q", 1) != 1)
        df_check_failures++;
    pthread_join(thread, NULL);
    pthread_mutex_destroy(&srv.lock);
    close(srv.listen_fd);
    close(srv.quit[0]);
    close(srv.quit[1]);
    close(stop[0]);
    close(stop[1]);
    return df_check_failures;
}
