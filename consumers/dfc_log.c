/*  dfc_log: the per-thread listener context ("worker-2/ulPr8a/printer") and a
    tiny logger that prefixes it, so a worker's log lines say which event and
    which listener they belong to. */
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "dfc_internal.h"

static _Thread_local char tl_context[DFC_CONTEXT_MAX];
static _Thread_local bool tl_in_job;
/*  The parts, borrowed for the job's duration: the string is made only when
    someone asks for it (most callbacks never do), not once per job. */
static _Thread_local const char *tl_worker, *tl_event_id, *tl_listener_id;
static _Thread_local bool tl_formatted;
/*  Command-channel calls made in the current job (dfc_context_call_id). */
static _Thread_local unsigned long tl_calls;

static _Atomic int log_level = DFC_LOG_INFO;
static _Atomic(FILE *) log_stream;

void
dfc_context_set(const char *worker, const char *event_id, const char *listener_id)
{
    tl_worker = worker;
    tl_event_id = event_id;
    tl_listener_id = listener_id;
    tl_formatted = false;
    tl_calls = 0;
    tl_in_job = true;
}

int
dfc_context_call_id(char *buf, size_t size)
{
    if (!tl_in_job)
        return 0;
    unsigned long n = ++tl_calls;
    if (!buf)
        return 0;
    if (!tl_event_id || !*tl_event_id)
        return -1;
    int len = snprintf(buf, size, "%s/%s/%lu", tl_event_id, tl_listener_id, n);
    return len > 0 && (size_t)len < size ? 1 : -1;
}

void
dfc_context_clear(void)
{
    tl_in_job = false;
}

const char *
dfc_listener_context(void)
{
    if (!tl_in_job)
        return "main";
    if (!tl_formatted) {
        snprintf(tl_context, sizeof tl_context, "%s/%s/%s", tl_worker,
                 tl_event_id ? tl_event_id : "None", tl_listener_id);
        tl_formatted = true;
    }
    return tl_context;
}

void
dfc_log_set_level(dfc_log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

void
dfc_log_set_stream(FILE *stream)
{
    atomic_store(&log_stream, stream);
}

void
dfc_log(dfc_log_level_t level, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if ((int)level < atomic_load(&log_level))
        return;
    FILE *out = atomic_load(&log_stream);
    if (!out)
        out = stderr;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s - ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level & 3], dfc_listener_context());
    if (n < 0)
        return;
    if ((size_t)n < sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* one fputs per line: stdio locks the stream, lines never interleave */
    size_t len = strlen(line);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, out);
    fflush(out);
}
