/*  dfb_secret: permission checks of secret files, reading them without
    stray copies, wiping, redaction (see dfb_secret.h). */
#include "dfb_secret.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "dfb_log.h"

/*  Files already warned about (start-up loads the bot certificate twice:
    once to check it, once for the HTTP client): one warning per file. */
#define WARNED_MAX 16
static struct {
    dev_t dev;
    ino_t ino;
} s_warned[WARNED_MAX];
static size_t s_nwarned;
static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;

/*  1 the first time (dev, ino) is seen, 0 after. */
static int
first_warning(dev_t dev, ino_t ino)
{
    int first = 1;
    pthread_mutex_lock(&s_mutex);
    for (size_t i = 0; i < s_nwarned && first; i++)
        if (s_warned[i].dev == dev && s_warned[i].ino == ino)
            first = 0;
    if (first && s_nwarned < WARNED_MAX) {
        s_warned[s_nwarned].dev = dev;
        s_warned[s_nwarned].ino = ino;
        s_nwarned++;
    }
    pthread_mutex_unlock(&s_mutex);
    return first;
}

int
dfb_secret_check_fd(int fd, const char *path, const char *key, int strict, char *err, size_t errlen)
{
    char scratch[8];
    if (!err) {
        err = scratch;
        errlen = sizeof scratch;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "config: %s: cannot check '%s': %s", key, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "config: %s: '%s' is not a regular file", key, path);
        return -1;
    }
    static const struct {
        mode_t bit;
        const char *what;
    } bits[] = {{S_IRGRP, "group-readable"},
                {S_IWGRP, "group-writable"},
                {S_IROTH, "world-readable"},
                {S_IWOTH, "world-writable"}};
    char what[80] = "";
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
        if (st.st_mode & bits[i].bit) {
            size_t l = strlen(what);
            snprintf(what + l, sizeof what - l, "%s%s", l ? ", " : "", bits[i].what);
        }
    }
    if (!what[0])
        return 0;
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if (strict) {
        snprintf(err, errlen,
                 "config: %s: %s is %s (mode %04o): refused (bridge.strictPermissions is true); "
                 "run chmod 600 %s",
                 key, path, what, mode, path);
        return -1;
    }
    if (first_warning(st.st_dev, st.st_ino))
        dfb_warn("config: %s: %s is %s (mode %04o): run chmod 600 %s; with "
                 "bridge.strictPermissions: true the bridge refuses to start",
                 key, path, what, mode, path);
    return 0;
}

/*  O_NONBLOCK: a FIFO named as a secret file must not hang the start-up in
    open(); it is then refused as not a regular file. Reads of a regular
    file ignore the flag. */
char *
dfb_secret_read(const char *path, const char *key, int strict, size_t max, size_t *len, char *err,
                size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "config: %s: cannot read '%s': %s", key, path, strerror(errno));
        return NULL;
    }
    if (dfb_secret_check_fd(fd, path, key, strict, err, errlen) != 0) {
        close(fd);
        return NULL;
    }
    /* Grown by copying, never realloc: a moved block would leave its old
       copy unwiped. */
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    const char *why = NULL;
    while (buf) {
        if (n == cap) {
            if (cap > max) {
                why = "too large";
                break;
            }
            size_t ncap = cap * 2;
            char *nb = malloc(ncap + 1);
            if (!nb) {
                why = "out of memory";
                break;
            }
            memcpy(nb, buf, n);
            dfb_secret_free(buf, n);
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            why = strerror(errno);
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf)
        why = "out of memory";
    else if (!why && n > max)
        why = "too large";
    if (why) {
        if (strcmp(why, "too large") == 0)
            snprintf(err, errlen, "config: %s: cannot read '%s': larger than %zu bytes", key, path,
                     max);
        else
            snprintf(err, errlen, "config: %s: cannot read '%s': %s", key, path, why);
        dfb_secret_free(buf, n);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int
dfb_secret_check_path(const char *path, const char *key, int strict, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "config: %s: cannot read '%s': %s", key, path, strerror(errno));
        return -1;
    }
    int rc = dfb_secret_check_fd(fd, path, key, strict, err, errlen);
    close(fd);
    return rc;
}

void
dfb_secret_free(void *buf, size_t len)
{
    if (!buf)
        return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}

void
dfb_secret_free_str(char *s)
{
    if (s)
        dfb_secret_free(s, strlen(s));
}

size_t
dfb_secret_redact(const char *text, size_t len, const char *const *secrets, size_t n, char *out,
                  size_t outlen)
{
    static const char mask[] = DFB_SECRET_MASK;
    size_t o = 0, found = 0;
    if (outlen == 0)
        return 0;
    for (size_t i = 0; i < len && o + 1 < outlen;) {
        size_t hit = 0;
        for (size_t k = 0; k < n; k++) { /* the longest secret that matches here */
            size_t sl = secrets[k] ? strlen(secrets[k]) : 0;
            if (sl > hit && sl <= len - i && memcmp(text + i, secrets[k], sl) == 0)
                hit = sl;
        }
        if (hit) {
            for (size_t m = 0; m < sizeof mask - 1 && o + 1 < outlen; m++)
                out[o++] = mask[m];
            i += hit;
            found++;
            continue;
        }
        unsigned char c = (unsigned char)text[i++];
        out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[o] = '\0';
    return found;
}

/* ---- self-test ------------------------------------------------------------ */

/* The project's one CHECK macro set (tests/include/df_check.h). */
#include "df_check.h"

static int
write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    close(fd);
    return ok && chmod(path, mode) == 0 ? 0 : -1;
}

int
dfb_secret_test(int verbose)
{
    df_check_failures = 0;
    char dir[] = "/tmp/dfb_secret_test_XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    char key[128], open_key[128], link[128], sub[128], big[128];
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(open_key, sizeof open_key, "%s/open.pem", dir);
    snprintf(link, sizeof link, "%s/link.pem", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(big, sizeof big, "%s/big.pem", dir);
    CHECK(write_file(key, "SECRET-KEY-TEXT", 0600) == 0);
    CHECK(write_file(open_key, "OPEN-KEY-TEXT", 0644) == 0);
    CHECK(symlink(open_key, link) == 0);
    CHECK(mkdir(sub, 0700) == 0);
    char err[512];
    size_t len = 99;

    /* 0600 (and 0400, 0700): read whole, no complaint even under strict. */
    char *buf = dfb_secret_read(key, "bot.privateKey.path", 1, 1024, &len, err, sizeof err);
    CHECK(buf && len == 15 && strcmp(buf, "SECRET-KEY-TEXT") == 0);
    dfb_secret_free(buf, len);
    CHECK(chmod(key, 0400) == 0 && dfb_secret_check_path(key, "k", 1, err, sizeof err) == 0);
    CHECK(chmod(key, 0700) == 0 && dfb_secret_check_path(key, "k", 1, err, sizeof err) == 0);
    CHECK(chmod(key, 0600) == 0);

    /* 0644 under strict: refused, the message names the key, the mode, the fix. */
    err[0] = '\0';
    buf = dfb_secret_read(open_key, "bot.privateKey.path", 1, 1024, &len, err, sizeof err);
    if (verbose)
        printf("  strict 0644: %s\n", err);
    CHECK(!buf);
    CHECK(strstr(err, "config: bot.privateKey.path: ") == err);
    CHECK(strstr(err, "group-readable, world-readable (mode 0644)"));
    CHECK(strstr(err, "chmod 600 ") && strstr(err, open_key));
    CHECK(strstr(err, "bridge.strictPermissions"));
    /* Without strict: read, with one warning line (logged, not in err), and
       only one however often the file is read. */
    {
        char logf[160];
        snprintf(logf, sizeof logf, "%s/stderr.txt", dir);
        fflush(stderr);
        int saved = dup(2), fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        CHECK(saved >= 0 && fd >= 0 && dup2(fd, 2) == 2);
        for (int i = 0; i < 3; i++) {
            err[0] = '\0';
            buf = dfb_secret_read(open_key, "bot.privateKey.path", 0, 1024, &len, err, sizeof err);
            CHECK(buf && strcmp(buf, "OPEN-KEY-TEXT") == 0 && err[0] == '\0');
            dfb_secret_free(buf, len);
        }
        fflush(stderr);
        CHECK(dup2(saved, 2) == 2);
        close(saved);
        close(fd);
        size_t ll = 0;
        char *log = dfb_secret_read(logf, "log", 0, 65536, &ll, err, sizeof err);
        if (verbose && log)
            printf("  logged: %s", log);
        CHECK(log && strstr(log, " warn  config: bot.privateKey.path: "));
        CHECK(log && strstr(log, "(mode 0644): run chmod 600 ") &&
              strstr(log, "bridge.strictPermissions: true the bridge refuses to start"));
        CHECK(log && strchr(log, '\n') == log + ll - 1); /* one line */
        free(log);
    }

    /* The file opened is checked, not the link: a symlink (0777 itself) to a
       0644 file is refused, to a 0600 file accepted. */
    CHECK(dfb_secret_check_path(link, "k", 1, err, sizeof err) == -1 && strstr(err, "mode 0644"));
    CHECK(unlink(link) == 0 && symlink(key, link) == 0);
    CHECK(dfb_secret_check_path(link, "k", 1, err, sizeof err) == 0);

    /* Each bit alone. */
    static const struct {
        mode_t mode;
        const char *what;
    } modes[] = {{0640, "group-readable (mode 0640)"},
                 {0620, "group-writable (mode 0620)"},
                 {0604, "world-readable (mode 0604)"},
                 {0602, "world-writable (mode 0602)"},
                 {0666, "group-readable, group-writable, world-readable, world-writable"}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        CHECK(chmod(open_key, modes[i].mode) == 0);
        err[0] = '\0';
        CHECK(dfb_secret_check_path(open_key, "k", 1, err, sizeof err) == -1);
        CHECK(strstr(err, modes[i].what));
        if (verbose)
            printf("  %04o: %s\n", (unsigned)modes[i].mode, err);
    }
    /* Execute bits alone are not a leak. */
    CHECK(chmod(open_key, 0611) == 0 &&
          dfb_secret_check_path(open_key, "k", 1, err, sizeof err) == 0);

    /* Not a regular file, missing, too large. */
    CHECK(dfb_secret_check_path(sub, "k", 0, err, sizeof err) == -1 &&
          strstr(err, "is not a regular file"));
    {
        /* A FIFO (no writer): refused at once, never a hang in open(). */
        char fifo[160];
        snprintf(fifo, sizeof fifo, "%s/fifo", dir);
        CHECK(mkfifo(fifo, 0600) == 0);
        CHECK(!dfb_secret_read(fifo, "k", 0, 100, &len, err, sizeof err) &&
              strstr(err, "is not a regular file"));
    }
    CHECK(!dfb_secret_read("/nonexistent/k.pem", "bot.privateKey.path", 0, 1024, &len, err,
                           sizeof err));
    CHECK(strstr(err, "config: bot.privateKey.path: cannot read '/nonexistent/k.pem': No such"));
    {
        char text[10001];
        memset(text, 'x', 10000);
        text[10000] = '\0';
        CHECK(write_file(big, text, 0600) == 0);
        buf = dfb_secret_read(big, "k", 1, 10000, &len, err, sizeof err);
        CHECK(buf && len == 10000 && buf[9999] == 'x' && buf[10000] == '\0');
        dfb_secret_free(buf, len);
        CHECK(!dfb_secret_read(big, "k", 1, 9999, &len, err, sizeof err));
        CHECK(strstr(err, "larger than 9999 bytes"));
        CHECK(write_file(big, "", 0600) == 0);
        buf = dfb_secret_read(big, "k", 1, 100, &len, err, sizeof err);
        CHECK(buf && len == 0 && buf[0] == '\0');
        dfb_secret_free(buf, len);
    }

    /* Redaction: every occurrence, overlapping names, control characters,
       the cut never shows a prefix of a secret. */
    {
        const char *secrets[] = {"tok-123", "", NULL, "hdrvalue", "tok-1234567"};
        char out[256];
        const char *text = "a tok-123 b\nhdrvalue tok-1234567 hdrvalue";
        size_t n = dfb_secret_redact(text, strlen(text), secrets, 5, out, sizeof out);
        if (verbose)
            printf("  redacted: '%s'\n", out);
        CHECK(n == 4);
        /* the longest match wins: "tok-1234567" is masked whole, not as "***4567" */
        CHECK(strcmp(out, "a *** b *** *** ***") == 0);
        const char *one[] = {"tok-123"};
        n = dfb_secret_redact(text, strlen(text), one, 1, out, sizeof out);
        CHECK(n == 2 && strcmp(out, "a *** b hdrvalue ***4567 hdrvalue") == 0);
        /* Cut at 5 bytes in the middle of a secret: its mask, never "tok-1". */
        n = dfb_secret_redact("ab tok-123", 10, secrets, 5, out, 6);
        CHECK(strcmp(out, "ab **") == 0 && !strstr(out, "tok"));
        n = dfb_secret_redact("x", 1, secrets, 5, out, 1);
        CHECK(n == 0 && out[0] == '\0');
    }

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        df_check_failures++;
    return df_check_failures;
}
