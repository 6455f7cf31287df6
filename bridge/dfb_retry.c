/*  dfb_retry: backoff arithmetic and the interruptible wait (see dfb_retry.h).
    The wait polls the stop fd, never sleeps blindly: stop is a pipe that the
    signal handler writes, and it stays readable once written. */
#include "dfb_retry.h"

#include "dfb_clock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

void
dfb_backoff_init(dfb_backoff_t *self, const dfb_retry_cfg_t *cfg)
{
    self->cfg = *cfg;
    dfb_backoff_reset(self);
}

void
dfb_backoff_reset(dfb_backoff_t *self)
{
    self->attempts = 0;
    self->last_ms = 0;
}

long
dfb_backoff_next(dfb_backoff_t *self)
{
    if (self->attempts < 2147483647)
        self->attempts++;
    if (self->cfg.max_attempts >= 0 && self->attempts >= self->cfg.max_attempts)
        return -1;
    double next;
    if (self->last_ms == 0)
        next = (double)self->cfg.initial_ms;
    else
        next = (double)self->last_ms * self->cfg.multiplier;
    if (next > (double)self->cfg.max_ms)
        next = (double)self->cfg.max_ms;
    if (next < 0)
        next = 0;
    self->last_ms = (long)(next + 0.5);
    if (self->last_ms == 0)
        self->last_ms = 1; /* keep "0 = first" unambiguous */
    return self->last_ms;
}

long long
dfb_now_ms(void)
{
    return dfb_mono_ms();
}

int
dfb_wait(int stop_fd, long ms)
{
    long long deadline = dfb_now_ms() + ms;
    for (;;) {
        long long left = deadline - dfb_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd pfd = {.fd = stop_fd, .events = POLLIN};
        int rc = poll(&pfd, stop_fd >= 0 ? 1 : 0, (int)(left > 2000000000 ? 2000000000 : left));
        if (rc > 0)
            return 1;
        if (rc == 0 && dfb_now_ms() >= deadline)
            return 0;
        if (rc < 0 && errno != EINTR)
            return 0;
    }
}

static int
check_seq(const dfb_retry_cfg_t *cfg, const long *want, int n, int verbose)
{
    dfb_backoff_t b;
    dfb_backoff_init(&b, cfg);
    for (int i = 0; i < n; i++) {
        long got = dfb_backoff_next(&b);
        if (verbose)
            printf("  wait %d: %ld ms (want %ld)\n", i + 1, got, want[i]);
        if (got != want[i]) {
            printf("FAIL backoff wait %d: got %ld want %ld\n", i + 1, got, want[i]);
            return 1;
        }
    }
    return 0;
}

int
dfb_retry_test(int verbose)
{
    int fails = 0;
    /* Datafeed defaults: unlimited, 0.5, 1, 2, 4 ... capped at 300 s. */
    dfb_retry_cfg_t df = {-1, 500, 2.0, 300000};
    long want_df[] = {500,   1000,   2000,   4000,   8000,   16000, 32000,
                      64000, 128000, 256000, 300000, 300000, 300000};
    fails += check_seq(&df, want_df, 13, verbose);
    /* Unlimited really is unlimited. */
    dfb_backoff_t b;
    dfb_backoff_init(&b, &df);
    for (int i = 0; i < 100000; i++) {
        if (dfb_backoff_next(&b) != (i < 10 ? want_df[i] : 300000)) {
            printf("FAIL unlimited backoff ended at %d\n", i);
            fails++;
            break;
        }
    }
    /* The docs example: 2000 ms, x1.5, max 10000, 6 attempts = 5 waits. */
    dfb_retry_cfg_t doc = {6, 2000, 1.5, 10000};
    long want_doc[] = {2000, 3000, 4500, 6750, 10000, -1};
    fails += check_seq(&doc, want_doc, 6, verbose);
    /* Global defaults: 10 attempts = 9 waits, then give up. */
    dfb_retry_cfg_t glob = {10, 500, 2.0, 300000};
    long want_glob[] = {500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, -1};
    fails += check_seq(&glob, want_glob, 10, verbose);
    /* maxAttempts 1: no retry at all. */
    dfb_retry_cfg_t one = {1, 500, 2.0, 300000};
    long want_one[] = {-1};
    fails += check_seq(&one, want_one, 1, verbose);
    /* reset starts again at initial. */
    dfb_backoff_init(&b, &glob);
    dfb_backoff_next(&b);
    dfb_backoff_next(&b);
    dfb_backoff_reset(&b);
    if (dfb_backoff_next(&b) != 500) {
        printf("FAIL reset\n");
        fails++;
    }
    /* Wait: elapses without a stop fd; returns 1 at once with a readable fd. */
    long long t0 = dfb_now_ms();
    if (dfb_wait(-1, 30) != 0 || dfb_now_ms() - t0 < 30) {
        printf("FAIL plain wait\n");
        fails++;
    }
    int p[2];
    if (pipe(p) == 0) {
        if (write(p[1], "x", 1) != 1)
            fails++;
        t0 = dfb_now_ms();
        if (dfb_wait(p[0], 10000) != 1 || dfb_now_ms() - t0 > 100) {
            printf("FAIL stopped wait\n");
            fails++;
        }
        close(p[0]);
        close(p[1]);
    }
    return fails;
}
