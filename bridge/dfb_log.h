/*  dfb_log: leveled, thread-safe logging to stderr for the bridge daemon.
    One line per call: ISO-8601 UTC time with milliseconds, level, message,
    and optional key/value fields; as text, or one JSON object per line
    (bridge.logFormat).
    Secrets never reach this module: tokens, JWTs and keys live inside
    dfb_auth and dfb_http, which expose no getter for them. */
#ifndef DFB_LOG_H
#define DFB_LOG_H

#include <stddef.h>

typedef enum { DFB_LOG_ERROR = 0, DFB_LOG_WARN, DFB_LOG_INFO, DFB_LOG_DEBUG } dfb_log_level_t;

/*  bridge.logFormat: text lines, or one JSON object per line. */
typedef enum { DFB_LOG_TEXT = 0, DFB_LOG_JSON = 1 } dfb_log_format_t;

/*  Sets / returns the most verbose level that is printed (default info). */
void dfb_log_set_level(dfb_log_level_t level);
dfb_log_level_t dfb_log_level(void);

/*  Parses "error", "warn", "info" or "debug" (case-insensitive). Returns 0,
    or -1 when the name is unknown (*level untouched). */
int dfb_log_level_parse(const char *name, dfb_log_level_t *level);

/*  Name of a level ("error" ...). */
const char *dfb_log_level_name(dfb_log_level_t level);

/*  Logs one line (a trailing newline is added; long lines are cut at 4 KiB).
    Safe to call from any thread, not from a signal handler. */
void dfb_log(dfb_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*  Sets / returns the line format (default text). */
void dfb_log_set_format(dfb_log_format_t format);
dfb_log_format_t dfb_log_format(void);

/*  One structured field: a string (str non-NULL) or an integer. Build them
    with dfb_ls / dfb_li and pass them with DFB_FIELDS. Values are shown as
    they are (escaped; control characters never reach the line): the
    caller redacts anything a peer chose, as for the message. */
typedef struct {
    const char *key;
    const char *str; /* NULL: num */
    long long num;
} dfb_logf_t;

static inline dfb_logf_t
dfb_ls(const char *key, const char *value)
{
    dfb_logf_t f = {key, value ? value : "", 0};
    return f;
}

static inline dfb_logf_t
dfb_li(const char *key, long long value)
{
    dfb_logf_t f = {key, NULL, value};
    return f;
}

/*  DFB_FIELDS(dfb_ls("call", "read_feed"), dfb_li("status", 500)):
    the array and its length, as dfb_logkv takes them. */
#define DFB_FIELDS(...)                                                                            \
    ((const dfb_logf_t[]){__VA_ARGS__}),                                                           \
        (sizeof((const dfb_logf_t[]){__VA_ARGS__}) / sizeof(dfb_logf_t))

/*  dfb_log with fields: text mode appends " key=value" (a string with a
    space, a quote or '=' in double quotes), json mode adds them as members
    (integers as JSON numbers). */
void dfb_logkv(dfb_log_level_t level, const dfb_logf_t *fields, size_t nfields, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

/*  Escapes len bytes of s as the inside of a JSON string into out (always
    NUL-terminated, cut at a whole escape when short): quotes, backslashes
    and control characters escaped, invalid UTF-8 as U+FFFD. Returns the
    length written. */
/*  Length of the valid UTF-8 sequence starting at s (n > 0 bytes left):
    2..4 for a multi-byte one (no overlongs, no surrogates, nothing above
    U+10FFFF), 0 for an ASCII byte or invalid bytes. */
size_t dfb_utf8_len(const unsigned char *s, size_t n);

size_t dfb_log_json_escape(const char *s, size_t len, char *out, size_t outlen);

/*  Self-test (escaping, both formats); returns 0 when all checks pass. */
int dfb_log_test(int verbose);

#define dfb_error(...) dfb_log(DFB_LOG_ERROR, __VA_ARGS__)
#define dfb_warn(...) dfb_log(DFB_LOG_WARN, __VA_ARGS__)
#define dfb_info(...) dfb_log(DFB_LOG_INFO, __VA_ARGS__)
#define dfb_debug(...) dfb_log(DFB_LOG_DEBUG, __VA_ARGS__)

#endif
