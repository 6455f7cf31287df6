/* dfz_cert: read and write ZeroMQ CURVE certificate files (czmq zcert / pyzmq
 * format, see dfz_cert.h). The parser is our own, strict where a mistake would
 * change meaning (key length, alphabet, duplicates, a secret that does not
 * match its public key) and lenient where czmq and pyzmq are (comments,
 * metadata, quoting). Key material is wiped from every buffer that held it. */
#include "dfz_cert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static const char z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int
z85_value(char c)
{
    const char *p = c ? strchr(z85_chars, c) : NULL;
    return p ? (int)(p - z85_chars) : -1;
}

int
dfz_key_parse(const char *z85, uint8_t out[DFZ_KEY_BYTES])
{
    if (!z85 || strlen(z85) != DFZ_Z85_LEN)
        return -1;
    uint8_t tmp[DFZ_KEY_BYTES];
    for (size_t i = 0; i < DFZ_Z85_LEN; i += 5) {
        uint64_t v = 0;
        for (size_t j = 0; j < 5; j++) {
            int d = z85_value(z85[i + j]);
            if (d < 0) {
                explicit_bzero(tmp, sizeof tmp);
                return -1;
            }
            v = v * 85 + (uint64_t)d;
        }
        if (v > 0xffffffffu) { /* e.g. "%%%%%": not the encoding of 4 bytes */
            explicit_bzero(tmp, sizeof tmp);
            return -1;
        }
        size_t o = i / 5 * 4;
        tmp[o] = (uint8_t)(v >> 24);
        tmp[o + 1] = (uint8_t)(v >> 16);
        tmp[o + 2] = (uint8_t)(v >> 8);
        tmp[o + 3] = (uint8_t)v;
    }
    memcpy(out, tmp, DFZ_KEY_BYTES);
    explicit_bzero(tmp, sizeof tmp);
    return 0;
}

void
dfz_key_encode(const uint8_t key[DFZ_KEY_BYTES], char out[DFZ_Z85_LEN + 1])
{
    for (size_t i = 0; i < DFZ_KEY_BYTES; i += 4) {
        uint32_t v = (uint32_t)key[i] << 24 | (uint32_t)key[i + 1] << 16 |
                     (uint32_t)key[i + 2] << 8 | key[i + 3];
        char *o = out + i / 4 * 5;
        for (int j = 4; j >= 0; j--) {
            o[j] = z85_chars[v % 85];
            v /= 85;
        }
    }
    out[DFZ_Z85_LEN] = '\0';
}

void
dfz_cert_fingerprint(const uint8_t pub[DFZ_KEY_BYTES], char out[DFZ_FP_LEN + 1])
{
    char z[DFZ_Z85_LEN + 1];
    dfz_key_encode(pub, z);
    memcpy(out, z, DFZ_FP_LEN);
    out[DFZ_FP_LEN] = '\0';
}

void
dfz_cert_wipe(dfz_cert_t *cert)
{
    if (cert)
        explicit_bzero(cert, sizeof *cert);
}

/* ---- the ZPL subset certificates use ---------------------------------- */

static bool
is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("$-_@.&+/", c) != NULL;
}

/* One `name = value` line's value, copied into val (NUL-terminated, at most
 * valcap-1 bytes; longer values are reported as too long via *too_long).
 * Returns 0, or -1 with err set. */
static int
parse_value(const char *p, const char *end, char *val, size_t valcap, bool *too_long,
            const char **msg)
{
    size_t n = 0;
    *too_long = false;
    if (p < end && (*p == '"' || *p == '\'')) {
        char q = *p++;
        const char *s = p;
        while (p < end && *p != q)
            p++;
        if (p == end) {
            *msg = "unterminated quoted value";
            return -1;
        }
        n = (size_t)(p - s);
        if (n >= valcap)
            *too_long = true;
        else
            memcpy(val, s, n);
        p++;
    } else {
        const char *s = p;
        while (p < end && *p != ' ' && *p != '\t')
            p++;
        n = (size_t)(p - s);
        if (n >= valcap)
            *too_long = true;
        else
            memcpy(val, s, n);
    }
    if (!*too_long)
        val[n] = '\0';
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p < end && *p != '#') {
        *msg = "unexpected text after the value";
        return -1;
    }
    return 0;
}

int
dfz_cert_parse(const char *text, size_t len, const char *origin, dfz_cert_t *out, char *err,
               size_t errlen)
{
    const char *o = origin ? origin : "certificate";
    const char *sep = ": ";
    dfz_cert_t c;
    memset(&c, 0, sizeof c);
    bool have_pub = false, have_curve = false, in_curve = false;
    char val[DFZ_Z85_LEN + 2];
    int rc = -1;
    size_t lineno = 0;
    const char *p = text, *end = text + len;

    if (len > DFZ_CERT_MAX_BYTES) {
        set_err(err, errlen, "%s%sis larger than %d bytes", o, sep, DFZ_CERT_MAX_BYTES);
        goto out;
    }
    if (memchr(text, '\0', len)) {
        set_err(err, errlen, "%s%scontains a NUL byte (not a certificate text file)", o, sep);
        goto out;
    }
    while (p < end) {
        lineno++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *next = eol ? eol + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        size_t indent = 0;
        const char *q = p;
        while (q < le && (*q == ' ' || *q == '\t')) {
            if (*q == '\t') {
                set_err(err, errlen, "%s%sline %zu: indentation must be spaces, not tabs", o, sep,
                        lineno);
                goto out;
            }
            q++;
            indent++;
        }
        if (q == le || *q == '#') { /* blank or comment */
            p = next;
            continue;
        }
        if (indent % 4 != 0) {
            set_err(err, errlen, "%s%sline %zu: indentation is %zu spaces, not a multiple of 4", o,
                    sep, lineno, indent);
            goto out;
        }
        const char *ns = q;
        while (q < le && is_name_char(*q))
            q++;
        if (q == ns) {
            set_err(err, errlen, "%s%sline %zu: expected a name", o, sep, lineno);
            goto out;
        }
        size_t nlen = (size_t)(q - ns);
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        bool has_value = q < le && *q == '=';
        if (!has_value && q < le && *q != '#') {
            set_err(err, errlen, "%s%sline %zu: expected '=' or the end of the line", o, sep,
                    lineno);
            goto out;
        }
        if (indent == 0) {
            in_curve = nlen == 5 && memcmp(ns, "curve", 5) == 0;
            if (in_curve)
                have_curve = true;
            p = next;
            continue;
        }
        if (!in_curve || indent != 4 || !has_value) {
            p = next; /* metadata, deeper levels, other sections: not ours */
            continue;
        }
        bool is_pub = nlen == 10 && memcmp(ns, "public-key", 10) == 0;
        bool is_sec = nlen == 10 && memcmp(ns, "secret-key", 10) == 0;
        if (!is_pub && !is_sec) {
            p = next;
            continue;
        }
        const char *kname = is_pub ? "public-key" : "secret-key";
        q++;
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        bool too_long;
        const char *msg = NULL;
        if (parse_value(q, le, val, sizeof val, &too_long, &msg) < 0) {
            set_err(err, errlen, "%s%sline %zu: %s: %s", o, sep, lineno, kname, msg);
            goto out;
        }
        if ((is_pub && have_pub) || (is_sec && c.has_secret)) {
            set_err(err, errlen, "%s%sline %zu: %s given twice", o, sep, lineno, kname);
            goto out;
        }
        if (too_long || dfz_key_parse(val, is_pub ? c.public_key : c.secret_key) < 0) {
            set_err(err, errlen, "%s%sline %zu: %s is not %d Z85 characters", o, sep, lineno, kname,
                    DFZ_Z85_LEN);
            goto out;
        }
        if (is_pub)
            have_pub = true;
        else
            c.has_secret = true;
        p = next;
    }
    if (!have_curve) {
        set_err(err, errlen, "%s%sno curve section", o, sep);
        goto out;
    }
    if (!have_pub) {
        set_err(err, errlen, "%s%sno public-key in the curve section", o, sep);
        goto out;
    }
    if (c.has_secret) {
        char sec_z85[DFZ_Z85_LEN + 1], derived[DFZ_Z85_LEN + 1], pub_z85[DFZ_Z85_LEN + 1];
        dfz_key_encode(c.secret_key, sec_z85);
        int d = zmq_curve_public(derived, sec_z85);
        explicit_bzero(sec_z85, sizeof sec_z85);
        dfz_key_encode(c.public_key, pub_z85);
        if (d != 0) {
            set_err(err, errlen, "%s%scannot check the secret-key (libzmq without CURVE?)", o, sep);
            goto out;
        }
        if (strcmp(derived, pub_z85) != 0) {
            set_err(err, errlen, "%s%ssecret-key does not belong to public-key", o, sep);
            goto out;
        }
    }
    *out = c;
    rc = 0;
out:
    explicit_bzero(val, sizeof val);
    explicit_bzero(&c, sizeof c);
    return rc;
}

int
dfz_cert_load(const char *path, dfz_cert_t *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size > DFZ_CERT_MAX_BYTES) {
        set_err(err, errlen, "%s: is larger than %d bytes", path, DFZ_CERT_MAX_BYTES);
        close(fd);
        return -1;
    }
    static const size_t cap = DFZ_CERT_MAX_BYTES + 1;
    char *buf = malloc(cap);
    if (!buf) {
        set_err(err, errlen, "%s: out of memory", path);
        close(fd);
        return -1;
    }
    size_t n = 0;
    int rc = -1;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, errlen, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    rc = dfz_cert_parse(buf, n, path, out, err, errlen);
done:
    explicit_bzero(buf, cap);
    free(buf);
    close(fd);
    return rc;
}

int
dfz_cert_load_secret(const char *path, dfz_cert_t *out, char *err, size_t errlen)
{
    dfz_cert_t c;
    if (dfz_cert_load(path, &c, err, errlen) != 0)
        return -1;
    if (!c.has_secret) {
        set_err(err, errlen,
                "%s: holds a public certificate where a secret one is needed (no secret-key)", path);
        dfz_cert_wipe(&c);
        return -1;
    }
    *out = c;
    dfz_cert_wipe(&c);
    return 0;
}

/* ---- writing ------------------------------------------------------------ */

static const char banner_public[] =
    "#   ZeroMQ CURVE Public Certificate\n"
    "#   Exchange securely, or use a secure mechanism to verify the contents\n"
    "#   of this file after exchange. Store public certificates in your home\n"
    "#   directory, in the .curve subdirectory.\n";
static const char banner_secret[] =
    "#   ZeroMQ CURVE **Secret** Certificate\n"
    "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n";

static int
write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Create path with O_EXCL and exactly `mode`, write text, fsync. On error
 * the file is removed if this call created it. */
static int
write_new_file(const char *path, mode_t mode, const char *text, size_t n, char *err,
               size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            set_err(err, errlen, "%s: already exists (refusing to overwrite)", path);
        else
            set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fchmod(fd, mode) != 0 || write_all(fd, text, n) != 0 || fsync(fd) != 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
        close(fd);
        unlink(path);
        return -1;
    }
    if (close(fd) != 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

static bool
valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

int
dfz_cert_save_pair(const char *dir, const char *name, dfz_cert_t *out, char *pub_path,
                   size_t pub_path_len, char *sec_path, size_t sec_path_len, char *err,
                   size_t errlen)
{
    if (!valid_name(name)) {
        set_err(err, errlen,
                "certificate name '%s' is not 1-64 characters of [A-Za-z0-9._-] "
                "(not starting with '.')",
                name);
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "%s: not a directory", dir);
        return -1;
    }
    char pp[4096], sp[4096];
    int a = snprintf(pp, sizeof pp, "%s/%s.key", dir, name);
    int b = snprintf(sp, sizeof sp, "%s/%s.key_secret", dir, name);
    if (a < 0 || (size_t)a >= sizeof pp || b < 0 || (size_t)b >= sizeof sp) {
        set_err(err, errlen, "%s: path too long", dir);
        return -1;
    }
    /* Refuse before generating anything if either exists. */
    if (access(pp, F_OK) == 0 || access(sp, F_OK) == 0) {
        set_err(err, errlen, "%s: already exists (refusing to overwrite)",
                access(pp, F_OK) == 0 ? pp : sp);
        return -1;
    }
    char pub_z85[DFZ_Z85_LEN + 1], sec_z85[DFZ_Z85_LEN + 1];
    if (zmq_curve_keypair(pub_z85, sec_z85) != 0) {
        set_err(err, errlen, "cannot generate a CURVE key pair: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tmv);
    char text[1024];
    int rc = -1;
    int n = snprintf(text, sizeof text,
                     "#   ****  Generated on %s by dfbridge  ****\n%s\nmetadata\n"
                     "    name = \"%s\"\ncurve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
                     when, banner_secret, name, pub_z85, sec_z85);
    if (n < 0 || (size_t)n >= sizeof text) {
        set_err(err, errlen, "certificate text too long");
        goto wipe;
    }
    if (write_new_file(sp, 0600, text, (size_t)n, err, errlen) != 0)
        goto wipe;
    explicit_bzero(text, sizeof text);
    n = snprintf(text, sizeof text,
                 "#   ****  Generated on %s by dfbridge  ****\n%s\nmetadata\n"
                 "    name = \"%s\"\ncurve\n    public-key = \"%s\"\n",
                 when, banner_public, name, pub_z85);
    if (n < 0 || (size_t)n >= sizeof text) {
        set_err(err, errlen, "certificate text too long");
        unlink(sp);
        goto wipe;
    }
    if (write_new_file(pp, 0644, text, (size_t)n, err, errlen) != 0) {
        unlink(sp);
        goto wipe;
    }
    if (out) {
        memset(out, 0, sizeof *out);
        if (dfz_key_parse(pub_z85, out->public_key) != 0 ||
            dfz_key_parse(sec_z85, out->secret_key) != 0) {
            set_err(err, errlen, "libzmq returned a key that is not Z85");
            unlink(sp);
            unlink(pp);
            dfz_cert_wipe(out);
            goto wipe;
        }
        out->has_secret = true;
    }
    if (pub_path && pub_path_len)
        snprintf(pub_path, pub_path_len, "%s", pp);
    if (sec_path && sec_path_len)
        snprintf(sec_path, sec_path_len, "%s", sp);
    rc = 0;
wipe:
    explicit_bzero(text, sizeof text);
    explicit_bzero(sec_z85, sizeof sec_z85);
    return rc;
}
