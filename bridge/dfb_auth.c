/*  dfb_auth: RS512 JWT signing (OpenSSL 3 EVP) and the pubkey
    authentication calls (see dfb_auth.h). The private key is held only as
    an EVP_PKEY; tokens go only into the http client. */
#include "dfb_auth.h"

#include <errno.h>
#include <inttypes.h>
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

struct dfb_auth {
    const dfb_config_t *cfg; /* borrowed */
    EVP_PKEY *key;
    dfb_json_t *json;
    char pod_url[512];
    char km_url[512];
};

dfb_auth_t *
dfb_auth_new(const dfb_config_t *cfg, char *err, size_t errlen)
{
    const char *which = cfg->key_path ? "bot.privateKey.path" : "bot.privateKey.content";
    BIO *bio = NULL;
    if (cfg->key_path) {
        FILE *f = fopen(cfg->key_path, "rb");
        if (!f) {
            snprintf(err, errlen, "config: %s: cannot read '%s': %s", which, cfg->key_path,
                     strerror(errno));
            return NULL;
        }
        fclose(f);
        bio = BIO_new_file(cfg->key_path, "rb");
    } else if (cfg->key_content) {
        bio = BIO_new_mem_buf(cfg->key_content, -1);
    } else {
        snprintf(err, errlen, "config: bot.privateKey.path: required");
        return NULL;
    }
    if (!bio) {
        snprintf(err, errlen, "config: %s: cannot read the key", which);
        return NULL;
    }
    /* PEM_read_bio_PrivateKey takes "RSA PRIVATE KEY" (PKCS#1) and
       "PRIVATE KEY" (PKCS#8) alike. An encrypted key would prompt: refuse. */
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    BIO_free(bio);
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
        dfb_endpoint_url(&cfg->key_manager, self->km_url, sizeof self->km_url)) {
        snprintf(err, errlen, "config: out of memory or endpoint too long");
        EVP_PKEY_free(key);
        if (self)
            dfb_json_destroy(&self->json);
        free(self);
        return NULL;
    }
    self->cfg = cfg;
    self->key = key;
    return self;
}

void
dfb_auth_destroy(dfb_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_auth_t *self = *self_p;
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
    free(sig);
    return jwt;
fail:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    free(sig);
    free(jwt);
    return NULL;
}

/*  One call with the BDK authentication retry: network errors, 5xx and 429
    are retried per the global `retry`; 200 returns OK; 401 UNAUTHORIZED;
    anything else FAILED. Bodies are never logged (they carry tokens). */
static dfb_auth_rc_t
call(dfb_auth_t *self, dfb_http_t *http, int stop_fd, const char *method, const char *url,
     const char *body, const char *what)
{
    dfb_backoff_t b;
    dfb_backoff_init(&b, &self->cfg->retry);
    for (;;) {
        int status = 0;
        dfb_http_err_t rc =
            dfb_http_request(http, method, url, body, body ? strlen(body) : 0, &status);
        if (rc == DFB_HTTP_ESTOPPED)
            return DFB_AUTH_STOPPED;
        if (rc == DFB_HTTP_OK && status == 200)
            return DFB_AUTH_OK;
        if (rc == DFB_HTTP_OK && status == 401)
            return DFB_AUTH_UNAUTHORIZED;
        if (rc == DFB_HTTP_OK && status != 429 && status < 500) {
            dfb_error("%s: unexpected HTTP status %d", what, status);
            return DFB_AUTH_FAILED;
        }
        if (rc == DFB_HTTP_EOTHER) {
            dfb_error("%s: %s (%s)", what, dfb_http_strerror(rc), dfb_http_detail(http));
            return DFB_AUTH_FAILED;
        }
        long wait = dfb_backoff_next(&b);
        if (rc == DFB_HTTP_OK)
            dfb_warn("%s: HTTP %d, attempt %d", what, status, b.attempts);
        else
            dfb_warn("%s: %s (%s), attempt %d", what, dfb_http_strerror(rc), dfb_http_detail(http),
                     b.attempts);
        if (wait < 0) {
            dfb_error("%s: giving up after %d attempts", what, b.attempts);
            return DFB_AUTH_FAILED;
        }
        if (dfb_wait(stop_fd, wait))
            return DFB_AUTH_STOPPED;
    }
}

/*  Authenticates at base + "/pubkey/authenticate" and stores the token as
    header `which` in http. */
static dfb_auth_rc_t
authenticate(dfb_auth_t *self, dfb_http_t *http, int stop_fd, const char *base,
             dfb_http_token_t which, const char *what)
{
    char url[600];
    snprintf(url, sizeof url, "%s/pubkey/authenticate", base);
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
    dfb_auth_rc_t rc = call(self, http, stop_fd, "POST", url, body, what);
    OPENSSL_cleanse(body, strlen(body));
    free(body);
    if (rc == DFB_AUTH_UNAUTHORIZED)
        dfb_error("%s: 401, the service account is not authorized to authenticate "
                  "(check bot.username and the key)",
                  what);
    if (rc != DFB_AUTH_OK)
        return rc;
    size_t len;
    const char *text = dfb_http_body(http, &len);
    if (dfb_json_parse(self->json, text, len) != 0) {
        dfb_error("%s: the response is not JSON (%s)", what, dfb_json_error(self->json));
        return DFB_AUTH_FAILED;
    }
    dfb_json_ref_t tok = dfb_json_get(self->json, 0, "token");
    size_t tl = 0;
    const char *token = tok == DFB_JSON_NONE ? NULL : dfb_json_string(self->json, tok, &tl);
    if (!token || tl == 0 || strlen(token) != tl) {
        dfb_error("%s: the response has no \"token\" string", what);
        return DFB_AUTH_FAILED;
    }
    if (dfb_http_set_token(http, which, token) != 0) {
        dfb_error("%s: the token is unusable as a header", what);
        return DFB_AUTH_FAILED;
    }
    return DFB_AUTH_OK;
}

dfb_auth_rc_t
dfb_auth_login(dfb_auth_t *self, dfb_http_t *http, int stop_fd)
{
    /* Stale tokens must not be sent to the login endpoints. */
    dfb_http_set_token(http, DFB_HTTP_SESSION_TOKEN, NULL);
    dfb_http_set_token(http, DFB_HTTP_KM_TOKEN, NULL);
    char base[600];
    snprintf(base, sizeof base, "%s/login", self->pod_url);
    dfb_auth_rc_t rc =
        authenticate(self, http, stop_fd, base, DFB_HTTP_SESSION_TOKEN, "pod authentication");
    if (rc != DFB_AUTH_OK)
        return rc;
    snprintf(base, sizeof base, "%s/relay", self->km_url);
    rc = authenticate(self, http, stop_fd, base, DFB_HTTP_KM_TOKEN, "key manager authentication");
    if (rc == DFB_AUTH_OK)
        dfb_info("authenticated as %s", self->cfg->bot_username);
    return rc;
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
    if (dfb_json_parse(self->json, text, len) != 0) {
        dfb_error("session info: the response is not JSON (%s)", dfb_json_error(self->json));
        return DFB_AUTH_FAILED;
    }
    dfb_json_ref_t id = dfb_json_get(self->json, 0, "id");
    if (id == DFB_JSON_NONE || dfb_json_type(self->json, id) != DFB_JSON_INT) {
        dfb_error("session info: no integer \"id\" in the response");
        return DFB_AUTH_FAILED;
    }
    *bot_id = dfb_json_int(self->json, id);
    dfb_info("bot user id %" PRId64, *bot_id);
    return DFB_AUTH_OK;
}

/* ---- self-test ------------------------------------------------------------ */

#include <unistd.h>

static int s_afails;
#define ACHECK(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                 \
            s_afails++;                                                                            \
        }                                                                                          \
    } while (0)

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
    cfg.pod = (dfb_endpoint_t){"http", "127.0.0.1", 1, ""};
    cfg.key_manager = cfg.pod;
    char err[256] = "";
    dfb_auth_t *auth = dfb_auth_new(&cfg, err, sizeof err);
    if (!auth)
        printf("  %s\n", err);
    ACHECK(auth);
    if (!auth)
        return;
    time_t now = time(NULL);
    char *jwt = dfb_auth_jwt(auth, now);
    ACHECK(jwt);
    if (verbose && jwt)
        printf("  jwt %.60s...\n", jwt);
    const char *d1 = jwt ? strchr(jwt, '.') : NULL;
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    ACHECK(d1 && d2 && !strchr(d2 + 1, '.'));
    if (d1 && d2) {
        unsigned char buf[2048];
        size_t n;
        ACHECK(b64url_decode(jwt, (size_t)(d1 - jwt), buf, &n) == 0);
        buf[n] = '\0';
        ACHECK(strcmp((char *)buf, "{\"alg\":\"RS512\",\"typ\":\"JWT\"}") == 0);
        ACHECK(b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, &n) == 0);
        dfb_json_t *j = dfb_json_new();
        ACHECK(j && dfb_json_parse(j, (char *)buf, n) == 0);
        if (j) {
            ACHECK(dfb_json_count(j, 0) == 2); /* only sub and exp */
            dfb_json_ref_t sub = dfb_json_get(j, 0, "sub");
            dfb_json_ref_t exp = dfb_json_get(j, 0, "exp");
            ACHECK(sub != DFB_JSON_NONE &&
                   strcmp(dfb_json_string(j, sub, NULL), "my-bot \"quoted\"") == 0);
            ACHECK(exp != DFB_JSON_NONE && dfb_json_type(j, exp) == DFB_JSON_INT);
            if (exp != DFB_JSON_NONE) {
                int64_t e = dfb_json_int(j, exp);
                ACHECK(e == (int64_t)now + 240);
                ACHECK(e >= (int64_t)time(NULL) + 239 && e <= (int64_t)time(NULL) + 241);
            }
        }
        dfb_json_destroy(&j);
        /* Verify the signature independently with the public key. */
        unsigned char sig[1024];
        size_t siglen;
        ACHECK(b64url_decode(d2 + 1, strlen(d2 + 1), sig, &siglen) == 0);
        FILE *f = fopen(pub_path, "rb");
        EVP_PKEY *pub = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
        if (f)
            fclose(f);
        ACHECK(pub);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok =
            pub && md && EVP_DigestVerifyInit(md, NULL, EVP_sha512(), NULL, pub) == 1 &&
            EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(d2 - jwt)) == 1;
        ACHECK(ok);
        /* And a tampered token must not verify. */
        if (pub && md) {
            char *bad = strdup(jwt);
            bad[(d1 - jwt) + 2] ^= 1;
            EVP_MD_CTX_reset(md);
            ACHECK(EVP_DigestVerifyInit(md, NULL, EVP_sha512(), NULL, pub) == 1 &&
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
    ACHECK(!auth);
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
    s_afails = 0;
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
    ACHECK(text && strstr(text, "BEGIN RSA PRIVATE KEY")); /* really PKCS#1 */
    free(text);
    text = slurp(p8);
    ACHECK(text && strstr(text, "BEGIN PRIVATE KEY")); /* really PKCS#8 */

    check_jwt(p8, NULL, pub, verbose);   /* PKCS#8 from a path */
    check_jwt(p1, NULL, pub, verbose);   /* PKCS#1 from a path */
    check_jwt(NULL, text, pub, verbose); /* PKCS#8 from content */
    free(text);

    /* Key errors name the config key. */
    dfb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.bot_username = (char *)"u";
    cfg.pod = (dfb_endpoint_t){"http", "127.0.0.1", 1, ""};
    cfg.key_manager = cfg.pod;
    char err[512];
    cfg.key_path = (char *)"/nonexistent/key.pem";
    dfb_auth_t *auth = dfb_auth_new(&cfg, err, sizeof err);
    ACHECK(!auth && strstr(err, "config: bot.privateKey.path: cannot read"));
    cfg.key_path = pub; /* a public key is not a private key */
    auth = dfb_auth_new(&cfg, err, sizeof err);
    ACHECK(!auth && strstr(err, "config: bot.privateKey.path: not a PEM private key"));
    cfg.key_path = ec;
    auth = dfb_auth_new(&cfg, err, sizeof err);
    ACHECK(!auth && strstr(err, "config: bot.privateKey.path: not an RSA key"));
    cfg.key_path = NULL;
    cfg.key_content = (char *)"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n";
    auth = dfb_auth_new(&cfg, err, sizeof err);
    ACHECK(!auth && strstr(err, "config: bot.privateKey.content: not a PEM private key"));
    if (verbose)
        printf("  last error: %s\n", err);

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        s_afails++;
    return s_afails;
}
