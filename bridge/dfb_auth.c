/*  dfb_auth: RS512 JWT signing (OpenSSL 3 EVP), the pubkey and certificate
    authentication calls, and simplified key delivery (see dfb_auth.h). The
    private key is held only as an EVP_PKEY; tokens go only into the http
    client. */
#include "dfb_auth.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dfb_json.h"
#include "dfb_log.h"
#include "dfb_retry.h"
#include "dfb_secret.h"
#include "dfb_tls.h"
#include "dfb_upstream.h"

struct dfb_auth {
    const dfb_config_t *cfg; /* borrowed */
    EVP_PKEY *key;           /* NULL = certificate authentication */
    dfb_json_t *json;
    char pod_url[512];
    char km_url[512];
    char sa_url[512];
    char agent_url[512];
    /* The shared session (issue 12 D5): the loop and the command executors
       each have their own dfb_http_t and copy the tokens from here. lock
       also serialises every login (one per 401 wave) and guards json; the
       counters are atomics. */
    pthread_mutex_t lock;
    char *store[2]; /* session, key manager (NULL: none, e.g. simplified key delivery) */
    uint64_t gen;   /* bumped by each successful login; 0 = never logged in */
    _Atomic unsigned logins, skd; /* read without the lock: a login may hold it for long */
};

#define SKD_CLAIM "canUseSimplifiedKeyDelivery"
/*  A PEM RSA key is a few KiB; a bigger bot.privateKey.path is not one. */
#define DFB_AUTH_MAX_KEY_FILE (1 << 20)
#define SKD_MIN_MAJOR 24
#define SKD_MIN_MINOR 12

/*  Certificate authentication: the certificate is loaded here only to
    report a bad file as a config error (dfb_http_configure presents it). */
static dfb_auth_t *
new_cert_auth(const dfb_config_t *cfg, char *err, size_t errlen)
{
    const char *which = cfg->cert_path ? "bot.certificate.path" : "bot.certificate.content";
    dfb_tls_identity_t *id =
        dfb_tls_identity_load(cfg->cert_path, cfg->cert_content, cfg->cert_password, which,
                              cfg->strict_permissions, err, errlen);
    if (!id)
        return NULL;
    if (strcmp(id->subject_cn, cfg->bot_username) != 0)
        dfb_warn("%s: the certificate's CN is '%s', not bot.username '%s': the pod "
                 "authenticates the certificate's CN",
                 which, id->subject_cn, cfg->bot_username);
    if (id->not_after && id->not_after < time(NULL))
        dfb_warn("%s: the certificate has expired", which);
    dfb_tls_identity_destroy(&id);
    dfb_auth_t *self = calloc(1, sizeof *self);
    if (self)
        self->json = dfb_json_new();
    if (!self || !self->json ||
        dfb_endpoint_url(&cfg->session_auth, self->sa_url, sizeof self->sa_url) ||
        dfb_endpoint_url(&cfg->key_manager, self->km_url, sizeof self->km_url) ||
        dfb_endpoint_url(&cfg->pod, self->pod_url, sizeof self->pod_url) ||
        dfb_endpoint_url(&cfg->agent, self->agent_url, sizeof self->agent_url)) {
        snprintf(err, errlen, "config: out of memory or endpoint too long");
        if (self)
            dfb_json_destroy(&self->json);
        free(self);
        return NULL;
    }
    self->cfg = cfg;
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

dfb_auth_t *
dfb_auth_new(const dfb_config_t *cfg, char *err, size_t errlen)
{
    /* Every file needed to reach the pod is checked here, so that
       `dfbridge --check` reports a bad trust store too. */
    if (cfg->trust_store_path && dfb_tls_check_ca_bundle(cfg->trust_store_path, err, errlen) < 0)
        return NULL;
    const char *which = cfg->key_path ? "bot.privateKey.path" : "bot.privateKey.content";
    BIO *bio = NULL;
    char *pem = NULL; /* the key file's text: wiped once parsed */
    size_t pem_len = 0;
    if (!cfg->key_path && !cfg->key_content && (cfg->cert_path || cfg->cert_content))
        return new_cert_auth(cfg, err, errlen);
    if (cfg->key_path) {
        /* A secret file: its mode is checked on the file opened, and it is
           read with read(2) into a buffer wiped below (no stdio copy). */
        pem = dfb_secret_read(cfg->key_path, which, cfg->strict_permissions, DFB_AUTH_MAX_KEY_FILE,
                              &pem_len, err, errlen);
        if (!pem)
            return NULL;
        bio = BIO_new_mem_buf(pem, (int)pem_len);
    } else if (cfg->key_content) {
        bio = BIO_new_mem_buf(cfg->key_content, -1);
    } else {
        snprintf(err, errlen, "config: bot.privateKey.path: required");
        return NULL;
    }
    if (!bio) {
        dfb_secret_free(pem, pem_len);
        snprintf(err, errlen, "config: %s: cannot read the key", which);
        return NULL;
    }
    /* PEM_read_bio_PrivateKey takes "RSA PRIVATE KEY" (PKCS#1) and
       "PRIVATE KEY" (PKCS#8) alike. An encrypted key would prompt: refuse. */
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    BIO_free(bio);
    dfb_secret_free(pem, pem_len);
    ERR_clear_error();
    if (!key) {
        snprintf(err, errlen, "config: %s: not a PEM private key (PKCS#1 or PKCS#8)", which);
        return NULL;
    }
    if (!EVP_PKEY_is_a(key, "RSA")) {
        EVP_PKEY_free(key);
        snprintf(err, errlen, "config: %s: not an RSA key (RS512 needs RSA)", which);
        return NULL;
    }
    dfb_auth_t *self = calloc(1, sizeof *self);
    if (self)
        self->json = dfb_json_new();
    if (!self || !self->json || dfb_endpoint_url(&cfg->pod, self->pod_url, sizeof self->pod_url) ||
        dfb_endpoint_url(&cfg->key_manager, self->km_url, sizeof self->km_url) ||
        dfb_endpoint_url(&cfg->agent, self->agent_url, sizeof self->agent_url)) {
        snprintf(err, errlen, "config: out of memory or endpoint too long");
        EVP_PKEY_free(key);
        if (self)
            dfb_json_destroy(&self->json);
        free(self);
        return NULL;
    }
    self->cfg = cfg;
    self->key = key;
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

/*  Cleanses and frees a stored token. */
static void
wipe_str(char **s)
{
    if (*s) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void
dfb_auth_destroy(dfb_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_auth_t *self = *self_p;
    for (int i = 0; i < 2; i++)
        wipe_str(&self->store[i]);
    pthread_mutex_destroy(&self->lock);
    EVP_PKEY_free(self->key);
    dfb_json_destroy(&self->json);
    free(self);
    *self_p = NULL;
}

/*  base64url without padding; out must hold 4 * ceil(len / 3) + 1. */
static size_t
b64url(const unsigned char *in, size_t len, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = t[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = t[v & 63];
    }
    out[o] = '\0';
    return o;
}

/*  Appends s as a JSON string literal; returns the new length or 0 when it
    does not fit. */
static size_t
json_str(char *buf, size_t cap, size_t len, const char *s)
{
    if (len + 1 >= cap)
        return 0;
    buf[len++] = '"';
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (len + 7 >= cap)
            return 0;
        if (ch == '"' || ch == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)ch;
        } else if (ch < 0x20) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", ch);
        } else {
            buf[len++] = (char)ch;
        }
    }
    if (len + 1 >= cap)
        return 0;
    buf[len++] = '"';
    buf[len] = '\0';
    return len;
}

char *
dfb_auth_jwt(dfb_auth_t *self, time_t now)
{
    static const char header[] = "{\"alg\":\"RS512\",\"typ\":\"JWT\"}";
    char claims[1024];
    if (!self->key)
        return NULL; /* certificate authentication signs nothing */
    size_t n = (size_t)snprintf(claims, sizeof claims, "{\"sub\":");
    n = json_str(claims, sizeof claims, n, self->cfg->bot_username);
    if (n == 0)
        return NULL;
    int m = snprintf(claims + n, sizeof claims - n, ",\"exp\":%lld}",
                     (long long)now + DFB_JWT_LIFETIME_S);
    if (m < 0 || (size_t)m >= sizeof claims - n)
        return NULL;
    n += (size_t)m;

    size_t siglen = (size_t)EVP_PKEY_get_size(self->key);
    size_t cap = 4 * ((sizeof header + n + siglen) / 3 + 3) + 8;
    char *jwt = malloc(cap);
    unsigned char *sig = malloc(siglen);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!jwt || !sig || !md)
        goto fail;
    size_t len = b64url((const unsigned char *)header, sizeof header - 1, jwt);
    jwt[len++] = '.';
    len += b64url((const unsigned char *)claims, n, jwt + len);
    if (EVP_DigestSignInit(md, NULL, EVP_sha512(), NULL, self->key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)jwt, len) != 1)
        goto fail;
    jwt[len++] = '.';
    b64url(sig, siglen, jwt + len);
    EVP_MD_CTX_free(md);
    dfb_secret_free(sig, siglen); /* the signature is the credential's secret part */
    return jwt;
fail:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    dfb_secret_free(sig, siglen);
    dfb_secret_free(jwt, jwt ? cap : 0);
    return NULL;
}

/*  The /metrics label of a call, by the name its log lines use. */
static dfb_up_call_t
up_call(const char *what)
{
    static const struct {
        const char *what;
        dfb_up_call_t call;
    } map[] = {
        {"pod authentication", DFB_UP_LOGIN},
        {"session authentication", DFB_UP_LOGIN},
        {"key manager authentication", DFB_UP_KEYMANAGER},
        {"agent info", DFB_UP_AGENT_INFO},
        {"session info", DFB_UP_SESSION_INFO},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].what, what) == 0)
            return map[i].call;
    return DFB_UP_LOGIN;
}

/*  One call with the BDK authentication retry: network errors, 5xx and 429
    are retried per the global `retry`; 200 returns OK; 401 UNAUTHORIZED;
    a certificate problem (DFB_HTTP_ECERT) and anything else FAILED (logged
    unless quiet). Bodies are never logged
    (they carry tokens). */
static dfb_auth_rc_t
call_ex(dfb_auth_t *self, dfb_http_t *http, int stop_fd, const char *method, const char *url,
        const char *body, const char *what, int quiet)
{
    dfb_backoff_t b;
    dfb_backoff_init(&b, &self->cfg->retry);
    dfb_up_call_t up = up_call(what);
    const char *label = dfb_upstream_call_name(up); /* the log's `call`: the metric's label */
    for (;;) {
        int status = 0;
        int64_t t0 = dfb_upstream_now_us();
        dfb_http_err_t rc =
            dfb_http_request(http, method, url, body, body ? strlen(body) : 0, &status);
        dfb_upstream_record(up, rc, status, dfb_upstream_now_us() - t0);
        if (rc == DFB_HTTP_ESTOPPED)
            return DFB_AUTH_STOPPED;
        if (rc == DFB_HTTP_OK && status == 200)
            return DFB_AUTH_OK;
        if (rc == DFB_HTTP_OK && status == 401)
            return DFB_AUTH_UNAUTHORIZED;
        if (rc == DFB_HTTP_OK && status != 429 && status < 500) {
            if (!quiet)
                dfb_logkv(DFB_LOG_ERROR,
                          DFB_FIELDS(dfb_ls("call", label), dfb_li("status", status)),
                          "%s: unexpected HTTP status %d%s", what, status,
                          status == 407 ? " (the proxy refused: check proxy.username and "
                                          "proxy.password)"
                                        : "");
            return DFB_AUTH_FAILED;
        }
        if (rc == DFB_HTTP_ECERT) {
            /* A certificate that does not verify will not start to: a
               configuration problem, fatal at once as in the loop's table. */
            dfb_logkv(DFB_LOG_ERROR,
                      DFB_FIELDS(dfb_ls("call", label), dfb_li("status", 0),
                                 dfb_ls("error", dfb_http_strerror(rc))),
                      "%s: %s (%s): not retried, fix the configuration", what,
                      dfb_http_strerror(rc), dfb_http_detail(http));
            return DFB_AUTH_FAILED;
        }
        if (rc == DFB_HTTP_EOTHER) {
            dfb_logkv(DFB_LOG_ERROR,
                      DFB_FIELDS(dfb_ls("call", label), dfb_li("status", 0),
                                 dfb_ls("error", dfb_http_strerror(rc))),
                      "%s: %s (%s)", what, dfb_http_strerror(rc), dfb_http_detail(http));
            return DFB_AUTH_FAILED;
        }
        long wait = dfb_backoff_next(&b);
        /* delayMs (last) only when a retry follows: the lines with it are
           the retries dfbridge_retries_total{call} counts */
        if (rc == DFB_HTTP_OK) {
            const dfb_logf_t f[] = {dfb_ls("call", label), dfb_li("status", status),
                                    dfb_li("attempt", b.attempts), dfb_li("delayMs", wait)};
            dfb_logkv(DFB_LOG_WARN, f, wait < 0 ? 3 : 4, "%s: HTTP %d, attempt %d", what, status,
                      b.attempts);
        } else {
            const dfb_logf_t f[] = {dfb_ls("call", label), dfb_li("status", 0),
                                    dfb_ls("error", dfb_http_strerror(rc)),
                                    dfb_li("attempt", b.attempts), dfb_li("delayMs", wait)};
            dfb_logkv(DFB_LOG_WARN, f, wait < 0 ? 4 : 5, "%s: %s (%s), attempt %d", what,
                      dfb_http_strerror(rc), dfb_http_detail(http), b.attempts);
        }
        if (wait < 0) {
            /* One line that says everything: the call, the attempts, the last error. */
            if (rc == DFB_HTTP_OK)
                dfb_logkv(DFB_LOG_ERROR,
                          DFB_FIELDS(dfb_ls("call", label), dfb_li("status", status),
                                     dfb_li("attempt", b.attempts)),
                          "%s: giving up after %d attempts (retry.maxAttempts), last error HTTP %d",
                          what, b.attempts, status);
            else
                dfb_logkv(DFB_LOG_ERROR,
                          DFB_FIELDS(dfb_ls("call", label), dfb_li("status", 0),
                                     dfb_ls("error", dfb_http_strerror(rc)),
                                     dfb_li("attempt", b.attempts)),
                          "%s: giving up after %d attempts (retry.maxAttempts), last error %s (%s)",
                          what, b.attempts, dfb_http_strerror(rc), dfb_http_detail(http));
            return DFB_AUTH_EXHAUSTED;
        }
        dfb_upstream_retry(up);
        if (dfb_wait(stop_fd, wait))
            return DFB_AUTH_STOPPED;
    }
}

static dfb_auth_rc_t
call(dfb_auth_t *self, dfb_http_t *http, int stop_fd, const char *method, const char *url,
     const char *body, const char *what)
{
    return call_ex(self, http, stop_fd, method, url, body, what, 0);
}

/*  Authenticates at url - with an RS512 JWT body (RSA), or with no body
    over mutual TLS (certificate) - and stores the token as header `which`
    in http. */
static dfb_auth_rc_t
authenticate(dfb_auth_t *self, dfb_http_t *http, int stop_fd, const char *url,
             dfb_http_token_t which, const char *what)
{
    dfb_auth_rc_t rc;
    if (self->key) {
        char *jwt = dfb_auth_jwt(self, time(NULL));
        if (!jwt) {
            dfb_error("%s: cannot sign the JWT", what);
            return DFB_AUTH_FAILED;
        }
        size_t jl = strlen(jwt);
        char *body = malloc(jl + 16);
        if (!body) {
            free(jwt);
            return DFB_AUTH_FAILED;
        }
        snprintf(body, jl + 16, "{\"token\":\"%s\"}", jwt);
        OPENSSL_cleanse(jwt, jl);
        free(jwt);
        rc = call(self, http, stop_fd, "POST", url, body, what);
        OPENSSL_cleanse(body, strlen(body));
        free(body);
    } else {
        rc = call(self, http, stop_fd, "POST", url, "", what);
    }
    const char *label = dfb_upstream_call_name(up_call(what)); /* the log's `call` */
    if (rc == DFB_AUTH_UNAUTHORIZED)
        dfb_logkv(DFB_LOG_ERROR, DFB_FIELDS(dfb_ls("call", label), dfb_li("status", 401)),
                  "%s: 401, the service account is not authorized to authenticate "
                  "(check bot.username and %s)",
                  what, self->key ? "the key" : "the certificate, whose CN must be the username");
    if (rc != DFB_AUTH_OK)
        return rc;
    size_t len;
    const char *text = dfb_http_body(http, &len);
    if (dfb_json_parse(self->json, text, len) != 0) {
        dfb_logkv(DFB_LOG_ERROR, DFB_FIELDS(dfb_ls("call", label), dfb_li("status", 200)),
                  "%s: the response is not JSON (%s)", what, dfb_json_error(self->json));
        return DFB_AUTH_FAILED;
    }
    dfb_json_ref_t tok = dfb_json_get(self->json, 0, "token");
    size_t tl = 0;
    const char *token = tok == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, tok, &tl);
    if (!token || tl == 0 || strlen(token) != tl) {
        dfb_logkv(DFB_LOG_ERROR, DFB_FIELDS(dfb_ls("call", label), dfb_li("status", 200)),
                  "%s: the response has no \"token\" string", what);
        return DFB_AUTH_FAILED;
    }
    int bad = dfb_http_set_token(http, which, token) != 0;
    if (!bad) { /* into the shared store, for dfb_auth_apply */
        wipe_str(&self->store[which]);
        self->store[which] = strdup(token);
        bad = self->store[which] == NULL;
    }
    dfb_json_wipe(self->json); /* the tape held the token */
    if (bad) {
        dfb_logkv(DFB_LOG_ERROR, DFB_FIELDS(dfb_ls("call", label), dfb_li("status", 200)),
                  "%s: the token is unusable as a header", what);
        return DFB_AUTH_FAILED;
    }
    return DFB_AUTH_OK;
}

/*  base64url (padding tolerated) to bytes; -1 on a bad character. */
static long
b64url_bytes(const char *in, size_t len, unsigned char *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && in[i] != '='; i++) {
        char c = in[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-' || c == '+' ? 62
                : c == '_' || c == '/' ? 63
                                       : -1;
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/*  A boolean claim of a JWT's payload, signature not verified (the BDKs
    only peek): 1 true, 0 false/absent, -1 not a JWT with a JSON payload. */
static int
jwt_claim_bool(dfb_json_t *json, const char *token, const char *name)
{
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.') || d2 - d1 - 1 > 65536)
        return -1;
    size_t n = (size_t)(d2 - d1 - 1);
    unsigned char *buf = malloc(n + 1);
    long got = buf ? b64url_bytes(d1 + 1, n, buf) : -1;
    int rc = -1;
    if (got >= 0 && dfb_json_parse(json, (const char *)buf, (size_t)got) == 0 &&
        dfb_json_type(json, 0) == DFB_JSON_OBJECT) {
        dfb_json_ref_t v = dfb_json_get(json, 0, name);
        rc = v != DFB_JSON_NONE && dfb_json_type(json, v) == DFB_JSON_TRUE;
    }
    dfb_secret_free(buf, buf ? n + 1 : 0);
    dfb_json_wipe(json);
    return rc;
}

/*  "Agent-24.12.1..." >= 24.12 ? As the Python BDK: anything else is no. */
static int
agent_version_has_skd(const char *version)
{
    int major, minor;
    char dot;
    if (!version || sscanf(version, "Agent-%d.%d%c", &major, &minor, &dot) != 3 || dot != '.')
        return 0;
    return major > SKD_MIN_MAJOR || (major == SKD_MIN_MAJOR && minor >= SKD_MIN_MINOR);
}

/*  Simplified key delivery: 1 when the session token allows it and the
    agent supports it, 0 otherwise, -1 on stop. The session token must be
    set in http (GET /agent/v1/info needs it). */
static int
skd_applies(dfb_auth_t *self, dfb_http_t *http, int stop_fd, const char *session_token)
{
    if (jwt_claim_bool(self->json, session_token, SKD_CLAIM) != 1)
        return 0;
    char url[600];
    snprintf(url, sizeof url, "%s/agent/v1/info", self->agent_url);
    dfb_auth_rc_t rc = call_ex(self, http, stop_fd, "GET", url, NULL, "agent info", 1);
    if (rc == DFB_AUTH_STOPPED)
        return -1;
    char version[64] = "";
    if (rc == DFB_AUTH_OK) {
        size_t len;
        const char *text = dfb_http_body(http, &len);
        if (dfb_json_parse(self->json, text, len) == 0) {
            dfb_json_ref_t v = dfb_json_get(self->json, 0, "version");
            const char *s = v == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, v, NULL);
            if (s)
                snprintf(version, sizeof version, "%s", s);
        }
    }
    int yes = agent_version_has_skd(version);
    char shown[sizeof version]; /* the agent's words: redacted like a body */
    dfb_http_redact(http, version, strlen(version), shown, sizeof shown);
    dfb_info("simplified key delivery: allowed by the session token; agent version '%s'%s: %s",
             shown, rc == DFB_AUTH_OK ? "" : " (GET /agent/v1/info failed)",
             yes ? "no key manager token needed" : "agent older than 24.12, using the key manager");
    return yes;
}

/*  The login; self->lock held. */
static dfb_auth_rc_t
login_locked(dfb_auth_t *self, dfb_http_t *http, int stop_fd)
{
    /* Stale tokens must not be sent to the login endpoints. */
    dfb_http_set_token(http, DFB_HTTP_SESSION_TOKEN, NULL);
    dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, NULL);
    char url[700];
    if (self->key)
        snprintf(url, sizeof url, "%s/login/pubkey/authenticate", self->pod_url);
    else
        snprintf(url, sizeof url, "%s/sessionauth/v1/authenticate", self->sa_url);
    dfb_auth_rc_t rc = authenticate(self, http, stop_fd, url, DFB_HTTP_SESSION_TOKEN,
                                    self->key ? "pod authentication" : "session authentication");
    if (rc != DFB_AUTH_OK)
        return rc;
    /* The token is still in the json tape of the last response. */
    size_t len;
    const char *text = dfb_http_body(http, &len);
    char *session = NULL;
    if (dfb_json_parse(self->json, text, len) == 0) {
        dfb_json_ref_t t = dfb_json_get(self->json, 0, "token");
        const char *s = t == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, t, NULL);
        session = s ? strdup(s) : NULL;
        dfb_json_wipe(self->json); /* the tape held the session token */
    }
    int skd = session ? skd_applies(self, http, stop_fd, session) : 0;
    if (session) {
        OPENSSL_cleanse(session, strlen(session));
        free(session);
    }
    if (skd < 0)
        return DFB_AUTH_STOPPED;
    self->logins++;
    if (skd) {
        self->skd++;
        wipe_str(&self->store[DFB_HTTP_KM_TOKEN]);
        self->gen++;
        dfb_info("authenticated as %s (%s, simplified key delivery)", self->cfg->bot_username,
                 self->key ? "RSA" : "certificate");
        return DFB_AUTH_OK;
    }
    if (self->key)
        snprintf(url, sizeof url, "%s/relay/pubkey/authenticate", self->km_url);
    else
        snprintf(url, sizeof url, "%s/keyauth/v1/authenticate", self->km_url);
    rc = authenticate(self, http, stop_fd, url, DFB_HTTP_KM_TOKEN, "key manager authentication");
    if (rc == DFB_AUTH_OK)
        self->gen++;
    if (rc == DFB_AUTH_OK)
        dfb_info("authenticated as %s (%s)", self->cfg->bot_username,
                 self->key ? "RSA" : "certificate");
    return rc;
}

dfb_auth_rc_t
dfb_auth_login(dfb_auth_t *self, dfb_http_t *http, int stop_fd)
{
    pthread_mutex_lock(&self->lock);
    dfb_auth_rc_t rc = login_locked(self, http, stop_fd);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

static void
refresh_note(dfb_auth_rc_t rc)
{
    if (rc == DFB_AUTH_UNAUTHORIZED)
        /* The login logged the one error line; this only adds the context. */
        dfb_info("that was a re-authentication after a 401: the bot's credentials are no "
                 "longer accepted");
}

dfb_auth_rc_t
dfb_auth_refresh(dfb_auth_t *self, dfb_http_t *http, int stop_fd)
{
    dfb_auth_rc_t rc = dfb_auth_login(self, http, stop_fd);
    refresh_note(rc);
    return rc;
}

/*  Copies the stored tokens into http; self->lock held. */
static uint64_t
apply_locked(dfb_auth_t *self, dfb_http_t *http)
{
    for (int i = 0; i < 2; i++)
        if (dfb_http_set_token(http, (dfb_http_token_t)i, self->store[i]) != 0)
            return 0; /* out of memory: as if never logged in, the caller logs in */
    return self->gen;
}

uint64_t
dfb_auth_apply(dfb_auth_t *self, dfb_http_t *http)
{
    pthread_mutex_lock(&self->lock);
    uint64_t gen = apply_locked(self, http);
    pthread_mutex_unlock(&self->lock);
    return gen;
}

dfb_auth_rc_t
dfb_auth_refresh_shared(dfb_auth_t *self, dfb_http_t *http, int stop_fd, uint64_t *gen)
{
    pthread_mutex_lock(&self->lock);
    dfb_auth_rc_t rc = DFB_AUTH_OK;
    if (self->gen != 0 && self->gen != *gen) {
        /* someone re-authenticated since this caller's tokens were set */
        uint64_t g = apply_locked(self, http);
        if (g != 0) {
            *gen = g;
            pthread_mutex_unlock(&self->lock);
            return DFB_AUTH_OK;
        }
    }
    rc = login_locked(self, http, stop_fd);
    if (rc == DFB_AUTH_OK)
        *gen = self->gen;
    pthread_mutex_unlock(&self->lock);
    if (*gen != 0)
        refresh_note(rc);
    return rc;
}

void
dfb_auth_counts(const dfb_auth_t *self, unsigned *logins, unsigned *skd)
{
    if (logins)
        *logins = self->logins;
    if (skd)
        *skd = self->skd;
}

dfb_auth_rc_t
dfb_auth_session_info(dfb_auth_t *self, dfb_http_t *http, int stop_fd, int64_t *bot_id)
{
    char url[600];
    snprintf(url, sizeof url, "%s/pod/v2/sessioninfo", self->pod_url);
    dfb_auth_rc_t rc = call(self, http, stop_fd, "GET", url, NULL, "session info");
    if (rc != DFB_AUTH_OK)
        return rc;
    size_t len;
    const char *text = dfb_http_body(http, &len);
    pthread_mutex_lock(&self->lock); /* the json tape is shared */
    if (dfb_json_parse(self->json, text, len) != 0) {
        dfb_error("session info: the response is not JSON (%s)", dfb_json_error(self->json));
        pthread_mutex_unlock(&self->lock);
        return DFB_AUTH_FAILED;
    }
    dfb_json_ref_t id = dfb_json_get(self->json, 0, "id");
    if (id == DFB_JSON_NONE || dfb_json_type(self->json, id) != DFB_JSON_INT) {
        dfb_error("session info: no integer \"id\" in the response");
        pthread_mutex_unlock(&self->lock);
        return DFB_AUTH_FAILED;
    }
    *bot_id = dfb_json_int(self->json, id);
    pthread_mutex_unlock(&self->lock);
    dfb_info("bot user id %" PRId64, *bot_id);
    return DFB_AUTH_OK;
}

/* ---- self-test ------------------------------------------------------------ */

#include <sys/stat.h>
#include <unistd.h>

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

static int
b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-'             ? 62
                : c == '_'             ? 63
                                       : -1;
        if (v < 0)
            return -1; /* '=' padding or '+' '/' are not base64url-without-padding */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = o;
    return 0;
}

/*  Checks one JWT made with key file `priv` against public key file `pub`. */
static void
check_jwt(const char *priv_path, const char *key_content, const char *pub_path, int verbose)
{
    dfb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.bot_username = (char *)"my-bot \"quoted\"";
    cfg.key_path = (char *)priv_path;
    cfg.key_content = (char *)key_content;
    cfg.pod = (dfb_endpoint_t){.scheme = "http", .host = "127.0.0.1", .port = 1, .context = ""};
    cfg.key_manager = cfg.pod;
    cfg.agent = cfg.pod;
    char err[256] = "";
    dfb_auth_t *auth = dfb_auth_new(&cfg, err, sizeof err);
    if (!auth)
        printf("  %s\n", err);
    CHECK(auth);
    if (!auth)
        return;
    time_t now = time(NULL);
    char *jwt = dfb_auth_jwt(auth, now);
    CHECK(jwt);
    if (verbose && jwt)
        printf("  jwt %.60s...\n", jwt);
    const char *d1 = jwt ? strchr(jwt, '.') : NULL;
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    CHECK(d1 && d2 && !strchr(d2 + 1, '.'));
    if (d1 && d2) {
        unsigned char buf[2048];
        size_t n;
        CHECK(b64url_decode(jwt, (size_t)(d1 - jwt), buf, &n) == 0);
        buf[n] = '\0';
        CHECK(strcmp((char *)buf, "{\"alg\":\"RS512\",\"typ\":\"JWT\"}") == 0);
        CHECK(b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, &n) == 0);
        dfb_json_t *j = dfb_json_new();
        CHECK(j && dfb_json_parse(j, (char *)buf, n) == 0);
        if (j) {
            CHECK(dfb_json_count(j, 0) == 2); /* only sub and exp */
            dfb_json_ref_t sub = dfb_json_get(j, 0, "sub");
            dfb_json_ref_t exp = dfb_json_get(j, 0, "exp");
            CHECK(sub != DFB_JSON_NONE &&
                   strcmp(dfb_json_string(j, sub, NULL), "my-bot \"quoted\"") == 0);
            CHECK(exp != DFB_JSON_NONE && dfb_json_type(j, exp) == DFB_JSON_INT);
            if (exp != DFB_JSON_NONE) {
                int64_t e = dfb_json_int(j, exp);
                CHECK(e == (int64_t)now + 240);
                CHECK(e >= (int64_t)time(NULL) + 239 && e <= (int64_t)time(NULL) + 241);
            }
        }
        dfb_json_destroy(&j);
        /* Verify the signature independently with the public key. */
        unsigned char sig[1024];
        size_t siglen;
        CHECK(b64url_decode(d2 + 1, strlen(d2 + 1), sig, &siglen) == 0);
        FILE *f = fopen(pub_path, "rb");
        EVP_PKEY *pub = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
        if (f)
            fclose(f);
        CHECK(pub);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok =
            pub && md && EVP_DigestVerifyInit(md, NULL, EVP_sha512(), NULL, pub) == 1 &&
            EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(d2 - jwt)) == 1;
        CHECK(ok);
        /* And a tampered token must not verify. */
        if (pub && md) {
            char *bad = strdup(jwt);
            bad[(d1 - jwt) + 2] ^= 1;
            EVP_MD_CTX_reset(md);
            CHECK(EVP_DigestVerifyInit(md, NULL, EVP_sha512(), NULL, pub) == 1 &&
                   EVP_DigestVerify(md, sig, siglen, (const unsigned char *)bad,
                                    (size_t)(d2 - jwt)) != 1);
            free(bad);
        }
        ERR_clear_error();
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pub);
    }
    free(jwt);
    dfb_auth_destroy(&auth);
    CHECK(!auth);
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    (void)n;
    fclose(f);
    return buf;
}

int
dfb_auth_test(int verbose)
{
    df_check_failures = 0;
    char dir[] = "/tmp/dfb_auth_test_XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    char cmd[2048], p8[64], p1[64], pub[64], ec[64];
    snprintf(p8, sizeof p8, "%s/pkcs8.pem", dir);
    snprintf(p1, sizeof p1, "%s/pkcs1.pem", dir);
    snprintf(pub, sizeof pub, "%s/pub.pem", dir);
    snprintf(ec, sizeof ec, "%s/ec.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null && "
             "openssl rsa -in %s -traditional -out %s 2>/dev/null && "
             "openssl pkey -in %s -pubout -out %s 2>/dev/null && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s 2>/dev/null",
             p8, p8, p1, p8, pub, ec);
    if (system(cmd) != 0) {
        printf("FAIL openssl could not generate the test keys\n");
        return 1;
    }
    char *text = slurp(p1);
    CHECK(text && strstr(text, "BEGIN RSA PRIVATE KEY")); /* really PKCS#1 */
    free(text);
    text = slurp(p8);
    CHECK(text && strstr(text, "BEGIN PRIVATE KEY")); /* really PKCS#8 */

    check_jwt(p8, NULL, pub, verbose);   /* PKCS#8 from a path */
    check_jwt(p1, NULL, pub, verbose);   /* PKCS#1 from a path */
    check_jwt(NULL, text, pub, verbose); /* PKCS#8 from content */
    free(text);

    /* Key errors name the config key. */
    dfb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.bot_username = (char *)"u";
    cfg.pod = (dfb_endpoint_t){.scheme = "http", .host = "127.0.0.1", .port = 1, .context = ""};
    cfg.key_manager = cfg.pod;
    cfg.agent = cfg.pod;
    char err[512];
    cfg.key_path = (char *)"/nonexistent/key.pem";
    dfb_auth_t *auth = dfb_auth_new(&cfg, err, sizeof err);
    CHECK(!auth && strstr(err, "config: bot.privateKey.path: cannot read"));
    cfg.key_path = pub; /* a public key is not a private key */
    auth = dfb_auth_new(&cfg, err, sizeof err);
    CHECK(!auth && strstr(err, "config: bot.privateKey.path: not a PEM private key"));
    cfg.key_path = ec;
    auth = dfb_auth_new(&cfg, err, sizeof err);
    CHECK(!auth && strstr(err, "config: bot.privateKey.path: not an RSA key"));
    /* secrets: the key file's mode, checked on the file opened (strict:
       refused naming the key and the fix; else accepted with a warning). */
    CHECK(chmod(p8, 0640) == 0);
    cfg.key_path = p8;
    cfg.strict_permissions = 1;
    auth = dfb_auth_new(&cfg, err, sizeof err);
    if (verbose)
        printf("  0640 strict: %s\n", auth ? "accepted" : err);
    CHECK(!auth && strstr(err, "config: bot.privateKey.path: ") == err &&
          strstr(err, "group-readable (mode 0640): refused") && strstr(err, "chmod 600 "));
    cfg.strict_permissions = 0;
    auth = dfb_auth_new(&cfg, err, sizeof err);
    CHECK(auth);
    dfb_auth_destroy(&auth);
    CHECK(chmod(p8, 0600) == 0);
    cfg.strict_permissions = 1;
    auth = dfb_auth_new(&cfg, err, sizeof err);
    CHECK(auth);
    dfb_auth_destroy(&auth);
    cfg.strict_permissions = 0;
    cfg.key_path = NULL;
    cfg.key_content = (char *)"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n";
    auth = dfb_auth_new(&cfg, err, sizeof err);
    CHECK(!auth && strstr(err, "config: bot.privateKey.content: not a PEM private key"));
    if (verbose)
        printf("  last error: %s\n", err);

    /* Simplified key delivery: the claim peek and the version rule. */
    dfb_json_t *j = dfb_json_new();
    /* {"sub":"b","canUseSimplifiedKeyDelivery":true} / ...false / {"sub":"b"} */
    CHECK(jwt_claim_bool(j,
                          "eyJhbGciOiJIUzI1NiJ9."
                          "eyJzdWIiOiJiIiwiY2FuVXNlU2ltcGxpZmllZEtleURlbGl2ZXJ5Ijp0cnVlfQ.sig",
                          SKD_CLAIM) == 1);
    CHECK(jwt_claim_bool(j,
                          "eyJhbGciOiJIUzI1NiJ9."
                          "eyJzdWIiOiJiIiwiY2FuVXNlU2ltcGxpZmllZEtleURlbGl2ZXJ5IjpmYWxzZX0.sig",
                          SKD_CLAIM) == 0);
    CHECK(jwt_claim_bool(j, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiIn0.sig", SKD_CLAIM) == 0);
    CHECK(jwt_claim_bool(j, "0123456789abcdef0123456789abcdef", SKD_CLAIM) == -1);
    CHECK(jwt_claim_bool(j, "a.b.c.d", SKD_CLAIM) == -1);
    CHECK(jwt_claim_bool(j, "a.!!!.c", SKD_CLAIM) == -1);
    dfb_json_destroy(&j);
    CHECK(agent_version_has_skd("Agent-24.12.1"));
    CHECK(agent_version_has_skd("Agent-24.12.0-SNAPSHOT"));
    CHECK(agent_version_has_skd("Agent-25.1.3"));
    CHECK(!agent_version_has_skd("Agent-24.11.9"));
    CHECK(!agent_version_has_skd("Agent-23.14.2"));
    CHECK(!agent_version_has_skd("Agent-24.12")); /* the BDK's regexp wants a third part */
    CHECK(!agent_version_has_skd("24.12.1"));
    CHECK(!agent_version_has_skd(""));
    CHECK(!agent_version_has_skd(NULL));

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        df_check_failures++;
    return df_check_failures;
}
