/*  dfb_log: leveled logging to stderr (see dfb_log.h). Each line is built in
    a local buffer and written with one write(2) under a mutex, so lines from
    several threads never interleave; text or JSON (bridge.logFormat). */
#include "dfb_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static volatile int s_level = DFB_LOG_INFO;
static atomic_int s_format = DFB_LOG_TEXT;
static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;
static const char *const s_names[] = {"error", "warn", "info", "debug"};

#define MSG_MAX 4096    /* a message is cut here, as before */
#define LINE_MAX_ 32768 /* a message escaped 6x (4 KiB), fields cut at FIELD_MAX */
#define FIELD_MAX 512

void
dfb_log_set_level(dfb_log_level_t level)
{
    if (level >= DFB_LOG_ERROR && level <= DFB_LOG_DEBUG)
        s_level = (int)level;
}

dfb_log_level_t
dfb_log_level(void)
{
    return (dfb_log_level_t)s_level;
}

void
dfb_log_set_format(dfb_log_format_t format)
{
    atomic_store(&s_format, format == DFB_LOG_JSON ? DFB_LOG_JSON : DFB_LOG_TEXT);
}

dfb_log_format_t
dfb_log_format(void)
{
    return (dfb_log_format_t)atomic_load(&s_format);
}

int
dfb_log_level_parse(const char *name, dfb_log_level_t *level)
{
    for (int i = 0; i <= DFB_LOG_DEBUG; i++) {
        if (name && strcasecmp(name, s_names[i]) == 0) {
            *level = (dfb_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

const char *
dfb_log_level_name(dfb_log_level_t level)
{
    if (level < DFB_LOG_ERROR || level > DFB_LOG_DEBUG)
        return "?";
    return s_names[level];
}

size_t
dfb_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < need + 1 || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i <= need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return need + 1;
}

size_t
dfb_log_json_escape(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    if (outlen == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        char esc[8];
        const char *piece = esc;
        size_t plen;
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, plen = 2;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            if (c == '\n')
                memcpy(esc, "\\n", 2), plen = 2;
            else if (c == '\t')
                memcpy(esc, "\\t", 2), plen = 2;
            else if (c == '\r')
                memcpy(esc, "\\r", 2), plen = 2;
            else
                plen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            esc[0] = (char)c, plen = 1;
            i++;
        } else {
            size_t l = dfb_utf8_len(p + i, len - i);
            if (l) {
                piece = (const char *)p + i, plen = l;
                i += l;
            } else {
                piece = "\xEF\xBF\xBD", plen = 3; /* U+FFFD */
                i++;
            }
        }
        if (o + plen + 1 > outlen)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
    }
    out[o] = '\0';
    return o;
}

/*  Text mode: copies s, control characters as spaces (a forged line). */
static size_t
text_copy(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *s && o + 1 < outlen; s++)
        out[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
    out[o] = '\0';
    return o;
}

static void
put(char *line, size_t *len, const char *s, size_t n)
{
    if (*len + n > LINE_MAX_ - 2)
        n = LINE_MAX_ - 2 - *len;
    memcpy(line + *len, s, n);
    *len += n;
}

/*  A JSON string, escaped in place; at most max bytes of escaped text. */
static void
put_json_str(char *line, size_t *len, const char *s, size_t max)
{
    put(line, len, "\"", 1);
    if (*len + max + 8 < LINE_MAX_)
        *len += dfb_log_json_escape(s, strlen(s), line + *len, max + 1);
    put(line, len, "\"", 1);
}

static void vlogkv(dfb_log_level_t level, const dfb_logf_t *fields, size_t nf, const char *fmt,
                   va_list ap) __attribute__((format(printf, 4, 0)));

static void
vlogkv(dfb_log_level_t level, const dfb_logf_t *fields, size_t nf, const char *fmt, va_list ap)
{
    if ((int)level > s_level)
        return;
    char msg[MSG_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    char line[LINE_MAX_];
    size_t len = 0;
    char num[32];
    if (dfb_log_format() == DFB_LOG_JSON) {
        put(line, &len, "{\"time\":\"", 9);
        put(line, &len, when, strlen(when));
        put(line, &len, "\",\"level\":\"", 11);
        put(line, &len, dfb_log_level_name(level), strlen(dfb_log_level_name(level)));
        put(line, &len, "\",\"message\":", 12);
        put_json_str(line, &len, msg, MSG_MAX * 6);
        for (size_t i = 0; i < nf; i++) {
            put(line, &len, ",", 1);
            put_json_str(line, &len, fields[i].key, 64);
            put(line, &len, ":", 1);
            if (fields[i].str)
                put_json_str(line, &len, fields[i].str, FIELD_MAX);
            else {
                int n = snprintf(num, sizeof num, "%lld", fields[i].num);
                put(line, &len, num, (size_t)n);
            }
        }
        /* a cut line still ends as an object (the cut is in a value) */
        if (len >= LINE_MAX_ - 3)
            len = 0, put(line, &len, "{\"level\":\"error\",\"message\":\"log line too long\"", 46);
        put(line, &len, "}", 1);
    } else {
        char head[64];
        int n = snprintf(head, sizeof head, "%s %-5s ", when, dfb_log_level_name(level));
        put(line, &len, head, (size_t)n);
        put(line, &len, msg, strlen(msg));
        for (size_t i = 0; i < nf; i++) {
            char val[MSG_MAX];
            put(line, &len, " ", 1);
            put(line, &len, fields[i].key, strlen(fields[i].key));
            put(line, &len, "=", 1);
            if (!fields[i].str) {
                n = snprintf(num, sizeof num, "%lld", fields[i].num);
                put(line, &len, num, (size_t)n);
                continue;
            }
            size_t vl = text_copy(fields[i].str, val, sizeof val);
            int quote = vl == 0 || strpbrk(val, " \"=") != NULL;
            if (quote)
                put(line, &len, "\"", 1);
            for (size_t j = 0; j < vl; j++) {
                if (val[j] == '"' || val[j] == '\\')
                    put(line, &len, "\\", 1);
                put(line, &len, val + j, 1);
            }
            if (quote)
                put(line, &len, "\"", 1);
        }
    }
    line[len++] = '\n';
    pthread_mutex_lock(&s_mutex);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&s_mutex);
}

void
dfb_log(dfb_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlogkv(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void
dfb_logkv(dfb_log_level_t level, const dfb_logf_t *fields, size_t nfields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlogkv(level, fields, nfields, fmt, ap);
    va_end(ap);
}

/* ---- self-test ------------------------------------------------------------ */

#include <stdlib.h>

#include "df_check.h"

/*  Runs one log call (fields f[0..nf)) with stderr sent to a temporary
    file; returns the line. */
static void
capture(char *out, size_t outlen, dfb_log_format_t format, const char *msg, const dfb_logf_t *f,
        size_t nf)
{
    char path[] = "/tmp/dfb_log_test_XXXXXX";
    int fd = mkstemp(path);
    out[0] = '\0';
    if (fd < 0)
        return;
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    dfb_log_format_t was = dfb_log_format();
    dfb_log_set_format(format);
    dfb_logkv(DFB_LOG_WARN, f, nf, "%s", msg);
    dfb_log_set_format(was);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, outlen - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
}

int
dfb_log_test(int verbose)
{
    int failures = df_check_failures;
    char out[256], line[2048];
    /* escaping: quotes, backslash, controls, valid and invalid UTF-8 */
    dfb_log_json_escape("a\"b\\c\n\x01\x7f", 8, out, sizeof out);
    CHECK_STR(out, "a\\\"b\\\\c\\n\\u0001\\u007f");
    dfb_log_json_escape("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, out, sizeof out);
    CHECK_STR(out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"); /* é € 😀 as they are */
    dfb_log_json_escape("x\xff\xc3y\xed\xa0\x80z\xc0\xaf", 10, out, sizeof out);
    CHECK_STR(out, "x\xEF\xBF\xBD\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz\xEF\xBF\xBD"
                   "\xEF\xBF\xBD");
    dfb_log_json_escape("\xe2\x82", 2, out, sizeof out); /* cut sequence */
    CHECK_STR(out, "\xEF\xBF\xBD\xEF\xBF\xBD");
    /* a short buffer cuts at a whole escape */
    CHECK(dfb_log_json_escape("ab\n", 3, out, 4) == 2 && strcmp(out, "ab") == 0);
    /* both formats, one line each; a call as the logs name it (its metric label) */
    capture(line, sizeof line, DFB_LOG_JSON, "he said \"hi\"\nforged",
            DFB_FIELDS(dfb_ls("call", "read_feed"), dfb_li("status", 503)));
    if (verbose)
        printf("  %s", line);
    CHECK(strchr(line, '\n') == line + strlen(line) - 1);
    CHECK(strstr(line, "\",\"level\":\"warn\",\"message\":\"he said \\\"hi\\\"\\nforged\","
                       "\"call\":\"read_feed\",\"status\":503}\n") != NULL);
    CHECK(strncmp(line, "{\"time\":\"20", 11) == 0 && line[32] == 'Z');
    /* a field value with a quote and invalid UTF-8; integers signed and wide */
    capture(line, sizeof line, DFB_LOG_JSON, "m",
            DFB_FIELDS(dfb_ls("feed", "f\"\xff"), dfb_li("gseq", 9007199254740993LL),
                       dfb_li("delayMs", -1)));
    CHECK(strstr(line, ",\"message\":\"m\",\"feed\":\"f\\\"\xEF\xBF\xBD\","
                       "\"gseq\":9007199254740993,\"delayMs\":-1}\n") != NULL);
    capture(line, sizeof line, DFB_LOG_TEXT, "plain message",
            DFB_FIELDS(dfb_ls("feed", "a b\n"), dfb_li("status", 503)));
    if (verbose)
        printf("  %s", line);
    CHECK(strstr(line, "Z warn  plain message feed=\"a b \" status=503\n") != NULL);
    capture(line, sizeof line, DFB_LOG_TEXT, "m",
            DFB_FIELDS(dfb_ls("call", "read_feed"), dfb_li("status", 0)));
    CHECK(strstr(line, "Z warn  m call=read_feed status=0\n") != NULL);
    return df_check_failures - failures;
}
