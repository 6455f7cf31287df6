/*  dfb_auth: authentication of the bot, as the BDKs do it. RSA: an RS512
    JWT (claims sub = bot.username, exp = now + 240 s) signed with the bot's
    private key is exchanged for a session token (pod /login) and a key
    manager token (/relay). Certificate: mutual TLS with bot.certificate at
    /sessionauth/v1/authenticate and /keyauth/v1/authenticate, no body.
    Simplified key delivery: a session token that is a JWT with
    canUseSimplifiedKeyDelivery=true and an agent >= 24.12 (/agent/v1/info)
    mean no key manager call and no keyManagerToken. Tokens go straight into
    the dfb_http client; this module has no getter for them, so nothing can
    log them. */
#ifndef DFB_AUTH_H
#define DFB_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dfb_config.h"
#include "dfb_http.h"

typedef struct dfb_auth dfb_auth_t;

/*  Outcome of an authentication step. */
typedef enum {
    DFB_AUTH_OK = 0,
    DFB_AUTH_UNAUTHORIZED, /* 401: the credentials are refused: fatal (exit status) */
    DFB_AUTH_FAILED,       /* an unexpected status/body, or a certificate that does not verify */
    DFB_AUTH_EXHAUSTED,    /* retry.maxAttempts reached on network errors, 5xx or 429 */
    DFB_AUTH_STOPPED       /* a stop was requested */
} dfb_auth_rc_t;

#define DFB_JWT_LIFETIME_S 240

/*  Loads the private key named by the config (path or content; PKCS#1 or
    PKCS#8 PEM, RSA only), or, when no private key is configured, checks the
    bot certificate (bot.certificate.*; dfb_http_configure presents it).
    cfg is borrowed and must outlive the object. Returns NULL on error with
    a message naming the config key in err ("config: bot.privateKey.path:
    cannot read ...'"). */
dfb_auth_t *dfb_auth_new(const dfb_config_t *cfg, char *err, size_t errlen);

/*  Frees the key and NULLs *self_p; accepts NULL. */
void dfb_auth_destroy(dfb_auth_t **self_p);

/*  Returns a new signed JWT for time now (caller frees it), or NULL on a
    signing failure. */
char *dfb_auth_jwt(dfb_auth_t *self, time_t now);

/*  Authenticates: session token (pod /login, or /sessionauth with the
    certificate), then the key manager token (/relay or /keyauth) unless
    simplified key delivery applies, retrying network errors, TLS handshake
    failures, 5xx and 429 (each logged at warn level) per the global `retry`
    config (waits are cut by stop_fd); a certificate that does not verify
    (DFB_HTTP_ECERT) is not retried: DFB_AUTH_FAILED after an error line. On success the tokens are
   set in http (no keyManagerToken header with simplified key delivery). A 401 gives
    DFB_AUTH_UNAUTHORIZED after one error line naming the endpoint. */
dfb_auth_rc_t dfb_auth_login(dfb_auth_t *self, dfb_http_t *http, int stop_fd);

/*  What the loop calls after a 401 from ANY call (datafeed, datahose,
    sessioninfo ...): authenticates again as dfb_auth_login (the BDKs'
    AuthSession.refresh). DFB_AUTH_UNAUTHORIZED here means the credentials
    were revoked or are wrong: the loop must end with its fatal exit status;
    one error line has said why. */
dfb_auth_rc_t dfb_auth_refresh(dfb_auth_t *self, dfb_http_t *http, int stop_fd);

/*  The shared session (issue 12): the tokens of the last successful login
    are kept here (mutex-protected, cleansed on replace and destroy; no
    getter) with a generation counter, so that each thread's own dfb_http_t
    can use them. Copies the current tokens into http and returns their
    generation (0 = never logged in: nothing copied). */
uint64_t dfb_auth_apply(dfb_auth_t *self, dfb_http_t *http);

/*  After a 401 seen with tokens of generation *gen: under the auth's lock,
    if another thread has logged in since (the store's generation differs),
    its tokens are applied to http; else this caller logs in (as
    dfb_auth_login: store updated, generation bumped). *gen is updated on
    DFB_AUTH_OK. The datafeed loop and the command executors thus log in once
    per 401 wave and never concurrently. */
dfb_auth_rc_t dfb_auth_refresh_shared(dfb_auth_t *self, dfb_http_t *http, int stop_fd,
                                      uint64_t *gen);

/*  Counts of authentications since dfb_auth_new: logins (the first
    included) and key manager calls skipped by simplified key delivery. */
void dfb_auth_counts(const dfb_auth_t *self, unsigned *logins, unsigned *skd);

/*  GET {pod}/pod/v2/sessioninfo: the bot's user id into *bot_id (exact
    int64). Same retries as dfb_auth_login; a 401 is returned as
    DFB_AUTH_UNAUTHORIZED so the caller can log in again. */
dfb_auth_rc_t dfb_auth_session_info(dfb_auth_t *self, dfb_http_t *http, int stop_fd,
                                    int64_t *bot_id);

/*  Self-test (generates keys with the openssl command); returns 0 when all
    checks pass. */
int dfb_auth_test(int verbose);

#endif
