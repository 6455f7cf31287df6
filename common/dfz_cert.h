/* dfz_cert: ZeroMQ CURVE certificate files, shared by the bridge and libdfconsumer.
 *
 * Reads and writes the ZPL files czmq's zcert_save / zcert_save_public and pyzmq's
 * zmq.auth.create_certificates write: '#' comment lines, a `metadata` section and a
 * `curve` section holding `public-key = "<40 Z85 chars>"` and, in a secret
 * certificate, `secret-key = "<40 Z85 chars>"`, children indented by 4 spaces.
 *
 *     #   ZeroMQ CURVE **Secret** Certificate
 *     metadata
 *         name = "bridge"
 *     curve
 *         public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
 *         secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
 *
 * Every function returns 0 on success and -1 on error; on error a one-line
 * message naming the file and the line goes to err (never any key material).
 * Self-contained (libzmq only) so both sides link the same parser. */
#ifndef DFZ_CERT_H
#define DFZ_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DFZ_KEY_BYTES 32 /* a binary CURVE key */
#define DFZ_Z85_LEN 40   /* its Z85 text form (without the NUL) */
#define DFZ_FP_LEN 12    /* a fingerprint's length (without the NUL) */
#define DFZ_CERT_MAX_BYTES 65536 /* a larger file is refused, not read */

typedef struct {
    uint8_t public_key[DFZ_KEY_BYTES];
    uint8_t secret_key[DFZ_KEY_BYTES]; /* all zero unless has_secret */
    bool has_secret;
} dfz_cert_t;

/* Parse certificate text (len bytes, need not be NUL-terminated). `origin`
 * prefixes error messages (a path, or NULL). A file without `secret-key` is a
 * public certificate (has_secret false); with one, the secret must match the
 * public key. Unknown sections and keys (metadata) are ignored. */
int dfz_cert_parse(const char *text, size_t len, const char *origin, dfz_cert_t *out, char *err,
                   size_t errlen);

/* Load a certificate file (public or secret). The read buffer is wiped. */
int dfz_cert_load(const char *path, dfz_cert_t *out, char *err, size_t errlen);

/* Load a certificate that must hold a secret key: a public certificate is an
 * error ("... holds a public certificate where a secret one is needed"). */
int dfz_cert_load_secret(const char *path, dfz_cert_t *out, char *err, size_t errlen);

/* Generate a new key pair and write DIR/NAME.key (mode 0644, public) and
 * DIR/NAME.key_secret (mode 0600, both keys). NAME is [A-Za-z0-9._-]{1,64}, not
 * starting with '.'. Refuses to overwrite either file (O_EXCL); on any error no
 * file of the pair is left behind. If out is not NULL it receives the pair (wipe
 * it with dfz_cert_wipe); pub_path/sec_path (may be NULL) receive the paths. */
int dfz_cert_save_pair(const char *dir, const char *name, dfz_cert_t *out, char *pub_path,
                       size_t pub_path_len, char *sec_path, size_t sec_path_len, char *err,
                       size_t errlen);

/* Zero a certificate's key material (explicit_bzero). Accepts NULL. */
void dfz_cert_wipe(dfz_cert_t *cert);

/* Parse a 40-character Z85 key (exactly 40 characters of the Z85 alphabet,
 * nothing else). Returns 0, or -1 if it is not one. */
int dfz_key_parse(const char *z85, uint8_t out[DFZ_KEY_BYTES]);

/* Encode a binary key as 40 Z85 characters plus NUL. */
void dfz_key_encode(const uint8_t key[DFZ_KEY_BYTES], char out[DFZ_Z85_LEN + 1]);

/* The fingerprint logs show for a public key: the first 12 characters of its
 * Z85 form (so grepping the clientsDir for it finds the file). Public keys only:
 * never call it on a secret key. */
void dfz_cert_fingerprint(const uint8_t pub[DFZ_KEY_BYTES], char out[DFZ_FP_LEN + 1]);

#endif
