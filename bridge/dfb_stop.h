/*  dfb_stop: the daemon's stop request, shared by every wait. SIGINT and
    SIGTERM write one byte to a self-pipe (async-signal-safe); the read end
    is polled by curl_multi_poll and by backoff waits, so a stop cuts a
    30 s long-poll within milliseconds. The byte is never read: once
    requested, stop stays requested (a sticky, race-free flag). */
#ifndef DFB_STOP_H
#define DFB_STOP_H

/*  Creates the pipe and installs the SIGINT/SIGTERM handlers (SIGPIPE is
    ignored too: a peer closing a socket must not kill the daemon).
    Returns 0, or -1 with errno set. Call once, before any thread starts. */
int dfb_stop_init(void);

/*  The read end to poll for POLLIN; -1 before dfb_stop_init. */
int dfb_stop_fd(void);

/*  Requests a stop. Async-signal-safe. */
void dfb_stop_request(void);

/*  1 once a stop was requested, else 0. */
int dfb_stop_requested(void);

/*  The signal that caused the stop, or 0. */
int dfb_stop_signal(void);

/*  Self-test (installs the handlers and raises SIGTERM); returns 0 when all
    checks pass. */
int dfb_stop_test(int verbose);

#endif
