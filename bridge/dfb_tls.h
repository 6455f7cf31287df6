/*  dfb_tls: the TLS material the bridge loads itself - the bot's client
    certificate for certificate authentication (PEM or PKCS#12, as the Python
    and Java BDKs accept them) and the private CA bundle of ssl.trustStore -
    checked at start-up so that a bad file is a config error naming its key,
    not a handshake failure later. */
#ifndef DFB_TLS_H
#define DFB_TLS_H

#include <stddef.h>
#include <time.h>

/*  The bot's certificate as libcurl takes it from memory: PEM text of the
    certificate (then its chain) and of the unencrypted private key. */
typedef struct {
    char *cert_pem; /* certificate, then any chain certificates */
    size_t cert_len;
    char *key_pem; /* unencrypted key: cleansed on destroy, never logged */
    size_t key_len;
    char subject_cn[256]; /* the certificate's CN (the bot's username for Symphony) */
    time_t not_after;     /* expiry, for the start-up log */
} dfb_tls_identity_t;

/*  Loads the bot certificate from path (a file) or content (text), exactly
    one non-NULL. Accepted:
    - PEM: a CERTIFICATE block (plus chain blocks) and a private key block
      (PKCS#1, PKCS#8, or encrypted PKCS#8 / legacy PEM with password) in
      the same file or text, as the Python BDK's certificate.path;
    - PKCS#12 (.p12/.pfx) with password (NULL = empty), as the Java BDK's
      certificate.path; content may hold it base64-encoded (Java's
      certificate.content).
    key names the config key for messages ("bot.certificate.path"). A file
    is a secret file (dfb_secret_read): group or other access is warned
    about, or refused when strict (bridge.strictPermissions). Returns a new
    identity, or NULL with "config: <key>: <reason>" in err. */
dfb_tls_identity_t *dfb_tls_identity_load(const char *path, const char *content,
                                          const char *password, const char *key, int strict,
                                          char *err, size_t errlen);

/*  Wipes the key, frees, NULLs *self_p; accepts NULL. */
void dfb_tls_identity_destroy(dfb_tls_identity_t **self_p);

/*  Checks that path is a readable PEM bundle holding at least one
    certificate. Returns the number of certificates, or -1 with
    "config: ssl.trustStore.path: <reason>" in err. */
int dfb_tls_check_ca_bundle(const char *path, char *err, size_t errlen);

/*  Self-test (generates certificates with the openssl command); returns 0
    when all checks pass. */
int dfb_tls_test(int verbose);

#endif
