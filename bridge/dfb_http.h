/*  dfb_http: the bridge's HTTP client. One curl easy handle (connections are
    kept alive between calls) driven by a curl multi handle, so that a stop
    request - a readable stop fd - aborts a 30 s long-poll within
    milliseconds. Tokens are set once and sent as headers; they are never
    logged and cannot be read back. */
#ifndef DFB_HTTP_H
#define DFB_HTTP_H

#include <stddef.h>

#include "dfb_config.h"

/*  What came of a request. DFB_HTTP_OK means an HTTP status was received
    with a complete body (any status, 500 included); the rest are transport
    failures, classified so the caller can decide what is retried. */
typedef enum {
    DFB_HTTP_OK = 0,
    DFB_HTTP_ECONNECT,   /* refused, unreachable, DNS failure */
    DFB_HTTP_ETIMEOUT,   /* connect timeout or total (read) timeout */
    DFB_HTTP_ERESET,     /* connection reset, send/receive error */
    DFB_HTTP_ETRUNCATED, /* body shorter than announced, or no reply at all */
    DFB_HTTP_ETOOBIG,    /* body larger than max_body_bytes */
    DFB_HTTP_ETLS,       /* TLS handshake failure (also a client certificate refused) */
    DFB_HTTP_ESTOPPED,   /* aborted because the stop fd became readable */
    DFB_HTTP_ECERT,      /* the server's certificate did not verify, or a local
                            certificate/CA file is unusable: a configuration
                            problem (ssl.trustStore.path), never transient */
    DFB_HTTP_EBADREPLY,  /* the request went out and what came back is not a
                            usable HTTP response (not HTTP at all, a header over
                            curl's limit): a glitching proxy or load balancer */
    DFB_HTTP_EOTHER,     /* anything else (bad URL, out of memory ...) */
    DFB_HTTP_ERR_COUNT
} dfb_http_err_t;

typedef enum { DFB_HTTP_SESSION_TOKEN = 0, DFB_HTTP_KM_TOKEN } dfb_http_token_t;

typedef struct dfb_http dfb_http_t;

/*  Creates a client. stop_fd (borrowed, may be -1) is polled during every
    transfer; once readable, the transfer is aborted and requests fail with
    DFB_HTTP_ESTOPPED. Returns NULL on failure. */
dfb_http_t *dfb_http_new(long connect_timeout_ms, long timeout_ms, size_t max_body_bytes,
                         int stop_fd);

/*  Frees the client and NULLs *self_p; accepts NULL. Tokens are wiped. */
void dfb_http_destroy(dfb_http_t **self_p);

/*  Sets the sessionToken or keyManagerToken header sent with every request
    (copied). NULL or "" removes it: an empty keyManagerToken is omitted.
    Returns 0, or -1 on allocation failure. */
int dfb_http_set_token(dfb_http_t *self, dfb_http_token_t which, const char *value);

/*  Performs one request. body may be NULL (no body). On DFB_HTTP_OK *status
    holds the HTTP status and dfb_http_body() the response body. Blocks until
    done, timed out or stopped. */
dfb_http_err_t dfb_http_request(dfb_http_t *self, const char *method, const char *url,
                                const char *body, size_t body_len, int *status);

/*  Per-request options of dfb_http_request_ex (issue 12's command channel). */
typedef struct {
    const char *content_type; /* replaces "application/json" (e.g. multipart/form-data; boundary=..) */
    int fresh_connect;        /* a new connection, closed after the call: curl retries a request
                                 on its own when a REUSED connection dies before any answer, which
                                 for a message create would be a second post */
} dfb_http_opts_t;

/*  dfb_http_request with options (opts NULL = the defaults). */
dfb_http_err_t dfb_http_request_ex(dfb_http_t *self, const char *method, const char *url,
                                   const char *body, size_t body_len, const dfb_http_opts_t *opts,
                                   int *status);

/*  Whether any byte of the last request went out (curl's request size > 0):
    0 means the server cannot have seen it (a refused connection, a connect
    timeout), so its failure is unambiguous. */
int dfb_http_request_sent(const dfb_http_t *self);

/*  The Retry-After of the last response (delta seconds or an HTTP date, as
    curl reads it) in ms; -1 when there was none. */
long long dfb_http_retry_after_ms(const dfb_http_t *self);

/*  Response body of the last request: borrowed, NUL-terminated, valid until
    the next request. */
const char *dfb_http_body(const dfb_http_t *self, size_t *len);

/*  The start of the last response body for a log line: copied into out
    (outlen bytes, NUL-terminated, cut), with every secret this client sends
    - the session and key manager tokens, defaultHeaders values, proxy
    passwords and their Basic credentials - replaced by "***" and control
    characters by spaces, so that a server or proxy echoing the request
    cannot put a secret in the log. Returns the number of secrets replaced. */
size_t dfb_http_body_excerpt(const dfb_http_t *self, char *out, size_t outlen);

/*  The same redaction for any text a peer chose (a feed id, an agent
    version) before it is logged: text (len bytes) into out. */
size_t dfb_http_redact(const dfb_http_t *self, const char *text, size_t len, char *out,
                       size_t outlen);

/*  Short human-readable name of an error class ("connection refused" ...). */
const char *dfb_http_strerror(dfb_http_err_t err);

/*  curl's detail message of the last failed request ("" if none). Never
    contains a body; redacted as dfb_http_body_excerpt is. */
const char *dfb_http_detail(const dfb_http_t *self);

/*  Applies the transport settings of the config: for each client (pod,
    agent, keyManager, sessionAuth) its proxy and defaultHeaders, chosen per
    request by the URL's prefix (pod URL + /pod and /login, agent URL +
    /agent, keyManager URL + /relay and /keyauth, sessionAuth URL +
    /sessionauth); the bot certificate (bot.certificate.*, when it is the
    authentication in use) presented on /sessionauth and /keyauth only; and
    ssl.trustStore.path as the only CAs trusted (else the system's).
    Environment proxies (http_proxy ...) are never used, as in the BDKs.
    Returns 0, or -1 with "config: <key>: <reason>" in err. */
int dfb_http_configure(dfb_http_t *self, const dfb_config_t *cfg, char *err, size_t errlen);

/*  One client's transport options for dfb_http_add_client (all borrowed,
    copied by the call). proxy_host NULL = direct. A header named
    User-Agent replaces the bridge's, one named X-Trace-Id the random one. */
typedef struct {
    const char *proxy_host;
    int proxy_port;
    const char *proxy_username; /* NULL = no credentials */
    const char *proxy_password;
    const dfb_headers_t *headers; /* NULL = none */
    int client_cert;              /* present the identity set by dfb_http_set_identity */
} dfb_http_client_t;

/*  Registers the options used for every URL that starts with url_prefix
    (followed by '/', '?' or the end); the longest prefix wins; other URLs
    go direct with no extra header. Returns 0, or -1 on allocation failure
    or a header line that is too long. */
int dfb_http_add_client(dfb_http_t *self, const char *url_prefix, const dfb_http_client_t *opts);

/*  The client certificate and key (PEM text, copied; the key is cleansed on
    destroy) presented by clients registered with client_cert. */
int dfb_http_set_identity(dfb_http_t *self, const char *cert_pem, size_t cert_len,
                          const char *key_pem, size_t key_len);

/*  The PEM CA bundle to trust instead of the system's (copied path; NULL =
    system). */
int dfb_http_set_ca_file(dfb_http_t *self, const char *path);

/*  Self-test only: makes setting the curl option `option` (a CURLoption
    value; 0 = none) fail, as a libcurl without that feature would. */
void dfb_http_fail_option(dfb_http_t *self, long option);

/*  Self-test (runs a loopback HTTP server in a thread); returns 0 when all
    checks pass. */
int dfb_http_test(int verbose);

#endif
