/*  dfb_log: leveled, thread-safe logging to stderr for the bridge daemon.
    One line per call: ISO-8601 UTC time with milliseconds, level, message.
    Secrets never reach this module: tokens, JWTs and keys live inside
    dfb_auth and dfb_http, which expose no getter for them. */
#ifndef DFB_LOG_H
#define DFB_LOG_H

typedef enum { DFB_LOG_ERROR = 0, DFB_LOG_WARN, DFB_LOG_INFO, DFB_LOG_DEBUG } dfb_log_level_t;

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

#define dfb_error(...) dfb_log(DFB_LOG_ERROR, __VA_ARGS__)
#define dfb_warn(...) dfb_log(DFB_LOG_WARN, __VA_ARGS__)
#define dfb_info(...) dfb_log(DFB_LOG_INFO, __VA_ARGS__)
#define dfb_debug(...) dfb_log(DFB_LOG_DEBUG, __VA_ARGS__)

#endif
