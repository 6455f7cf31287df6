/*  dfb_secret: files and bytes that hold secrets. A secret file (the bot's
    private key, its certificate with key, the CURVE secret certificate)
    must not be readable or writable by group or others; the check looks at
    the file actually opened (fstat on the descriptor), never at a path that
    may change between the check and the read. Secret bytes are wiped before
    they are freed, and text that may echo a secret (a response body, an
    error detail) is redacted before it is logged. */
#ifndef DFB_SECRET_H
#define DFB_SECRET_H

#include <stddef.h>

/*  What replaces a secret in redacted text. */
#define DFB_SECRET_MASK "***"

/*  Checks fd, the secret file opened from path for the config key `key`
    ("bot.privateKey.path"). A regular file without any group or other read
    or write bit passes: 0. Otherwise:
    - strict 0: logs one warning naming the key, the file, its mode and the
      fix ("config: bot.privateKey.path: /k.pem is group-readable,
      world-readable (mode 0644): run chmod 600 /k.pem; with
      bridge.strictPermissions: true the bridge refuses to start") once per
      file, and returns 0;
    - strict 1: returns -1 with the same facts and "refused
      (bridge.strictPermissions is true)" in err, logs nothing.
    Not a regular file, or fstat failing: -1 with a message in err.
    err may be NULL when strict is 0. */
int dfb_secret_check_fd(int fd, const char *path, const char *key, int strict, char *err,
                        size_t errlen);

/*  Opens path (following symbolic links, as open(2) does), checks the file
    opened with dfb_secret_check_fd, and reads all of it with read(2) (no
    stdio buffer keeps a copy). Returns a malloc'd, NUL-terminated buffer
    and its length in *len (0 for an empty file); the caller owns it and
    frees it with dfb_secret_free(buf, *len). A file over max bytes, an
    unreadable file or a refused mode: NULL with "config: <key>: ..." in err
    ("config: bot.privateKey.path: cannot read '/k.pem': No such file or
    directory"). */
char *dfb_secret_read(const char *path, const char *key, int strict, size_t max, size_t *len,
                      char *err, size_t errlen);

/*  For a secret file that a library opens itself (czmq's zcert_load):
    opens path, checks the file opened with dfb_secret_check_fd, closes it.
    The library's own open() then finds the same file unless it is replaced
    in between; prefer dfb_secret_read when the bytes can be parsed from
    memory. Returns 0, or -1 with "config: <key>: ..." in err (cannot open,
    not a regular file, refused mode under strict). */
int dfb_secret_check_path(const char *path, const char *key, int strict, char *err, size_t errlen);

/*  Wipes len bytes of buf (OPENSSL_cleanse: not optimised away), then
    frees it; accepts NULL. */
void dfb_secret_free(void *buf, size_t len);

/*  Wipes a NUL-terminated string, then frees it; accepts NULL. */
void dfb_secret_free_str(char *s);

/*  Copies text (len bytes, need not be NUL-terminated) to out (outlen
    bytes, always NUL-terminated, cut if short), replacing every occurrence
    of each non-empty string of secrets[0..n) with DFB_SECRET_MASK, and every
    control character (a forged log line) with a space. A secret that begins
    before the cut is matched against all of text, so no prefix of a secret
    is ever copied. Returns the number of secrets replaced. */
size_t dfb_secret_redact(const char *text, size_t len, const char *const *secrets, size_t n,
                         char *out, size_t outlen);

/*  Self-test; returns 0 when all checks pass. */
int dfb_secret_test(int verbose);

#endif
