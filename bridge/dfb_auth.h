/*  dfb_auth: RSA authentication of the bot, as the BDKs do it: an RS512 JWT
    (claims sub = bot.username, exp = now + 240 s) signed with the bot's
    private key is exchanged for a session token (pod /login) and a key
    manager token (/relay). Tokens go straight into the dfb_http client;
    this module has no getter for them, so nothing can log them. */
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
    DFB_AUTH_UNAUTHORIZED, /* 401: fatal, the key or username is wrong */
    DFB_AUTH_FAILED,       /* retries exhausted, or an unexpected status/body */
    DFB_AUTH_STOPPED       /* a stop was requested */
} dfb_auth_rc_t;

#define DFB_JWT_LIFETIME_S 240

/*  Loads the private key named by the config (path or content; PKCS#1 or
    PKCS#8 PEM, RSA only). cfg is borrowed and must outlive the object.
    Returns NULL on error with a message naming the config key in err
    ("config: bot.privateKey.path: cannot read ...'"). */
dfb_auth_t *dfb_auth_new(const dfb_config_t *cfg, char *err, size_t errlen);

/*  Frees the key and NULLs *self_p; accepts NULL. */
void dfb_auth_destroy(dfb_auth_t **self_p);

/*  Returns a new signed JWT for time now (caller frees it), or NULL on a
    signing failure. */
char *dfb_auth_jwt(dfb_auth_t *self, time_t now);

/*  Authenticates against the pod, then the key manager, retrying network
    errors, 5xx and 429 per the global `retry` config (waits are cut by
    stop_fd). On success both tokens are set in http. */
dfb_auth_rc_t dfb_auth_login(dfb_auth_t *self, dfb_http_t *http, int stop_fd);

/*  GET {pod}/pod/v2/sessioninfo: the bot's user id into *bot_id (exact
    int64). Same retries as dfb_auth_login; a 401 is returned as
    DFB_AUTH_UNAUTHORIZED so the caller can log in again. */
dfb_auth_rc_t dfb_auth_session_info(dfb_auth_t *self, dfb_http_t *http, int stop_fd,
                                    int64_t *bot_id);

/*  Self-test (generates keys with the openssl command); returns 0 when all
    checks pass. */
int dfb_auth_test(int verbose);

#endif
