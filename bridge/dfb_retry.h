/*  dfb_retry: the BDK retry policy (Java BDK backoff: initial, then
    min(previous x multiplier, max)) and an interruptible wait, so that a
    stop request cuts a backoff sleep at once. */
#ifndef DFB_RETRY_H
#define DFB_RETRY_H

/*  One `retry` block of the BDK config. max_attempts counts the first call;
    -1 means unlimited. */
typedef struct {
    int max_attempts;
    long initial_ms;
    double multiplier;
    long max_ms;
} dfb_retry_cfg_t;

/*  Backoff state for one retried operation. */
typedef struct {
    dfb_retry_cfg_t cfg;
    int attempts; /* failed calls so far */
    long last_ms; /* previous wait, 0 before the first */
} dfb_backoff_t;

void dfb_backoff_init(dfb_backoff_t *self, const dfb_retry_cfg_t *cfg);

/*  Starts over (after a success). */
void dfb_backoff_reset(dfb_backoff_t *self);

/*  Records one failed call and returns how long to wait before the next
    attempt, in ms, or -1 when max_attempts calls have now been made. */
long dfb_backoff_next(dfb_backoff_t *self);

/*  Waits ms milliseconds or until stop_fd becomes readable (stop_fd < 0:
    plain wait). Returns 1 when stopped, 0 when the time elapsed. EINTR is
    handled (the remaining time is recomputed). */
int dfb_wait(int stop_fd, long ms);

/*  Monotonic clock in ms. */
long long dfb_now_ms(void);

/*  Self-test; returns 0 when all checks pass. */
int dfb_retry_test(int verbose);

#endif
