/*  dfb_clock: the bridge's two clocks in milliseconds. Monotonic for
    timeouts and intervals; wall time (ms since the Unix epoch) for what is
    stored or sent (journal ts, envelope ts). Header-only. */
#ifndef DFB_CLOCK_H
#define DFB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t
dfb_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t
dfb_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
