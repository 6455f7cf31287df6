/*  dfb_log: leveled logging to stderr (see dfb_log.h). Each line is built in
    a local buffer and written with one fwrite under a mutex, so lines from
    several threads never interleave. */
#include "dfb_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

static volatile int s_level = DFB_LOG_INFO;
static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;
static const char *const s_names[] = {"error", "warn", "info", "debug"};

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

void
dfb_log(dfb_log_level_t level, const char *fmt, ...)
{
    if ((int)level > s_level)
        return;
    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, dfb_log_level_name(level));
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    pthread_mutex_lock(&s_mutex);
    fwrite(line, 1, len, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&s_mutex);
}
