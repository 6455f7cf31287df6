/*  dfb_stop: self-pipe stop request (see dfb_stop.h). */
#include "dfb_stop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static int s_pipe[2] = {-1, -1};
/*  Set by any thread (the actor, the replay and command threads, main
    after the loop) and by the signal handler: a lock-free atomic, which is
    async-signal-safe and race-free between threads. */
static atomic_int s_requested = 0;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a lock-free int for the signal handler");
static volatile sig_atomic_t s_signal = 0;

void
dfb_stop_request(void)
{
    int saved = errno;
    atomic_store(&s_requested, 1);
    if (s_pipe[1] >= 0) {
        ssize_t rc = write(s_pipe[1], "s", 1); /* a full pipe is fine: it is readable */
        (void)rc;
    }
    errno = saved;
}

static void
on_signal(int sig)
{
    s_signal = sig;
    dfb_stop_request();
}

int
dfb_stop_init(void)
{
    if (s_pipe[0] >= 0)
        return 0;
    if (pipe(s_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(s_pipe[i], F_SETFD, FD_CLOEXEC);
        fcntl(s_pipe[i], F_SETFL, fcntl(s_pipe[i], F_GETFL) | O_NONBLOCK);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

int
dfb_stop_fd(void)
{
    return s_pipe[0];
}

int
dfb_stop_requested(void)
{
    return atomic_load(&s_requested) ? 1 : 0;
}

int
dfb_stop_signal(void)
{
    return (int)s_signal;
}

/* ---- self-test ------------------------------------------------------------ */

#include <poll.h>
#include <stdio.h>

int
dfb_stop_test(int verbose)
{
    int fails = 0;
    if (dfb_stop_init() != 0 || dfb_stop_fd() < 0) {
        printf("FAIL dfb_stop_init\n");
        return 1;
    }
    struct pollfd pfd = {.fd = dfb_stop_fd(), .events = POLLIN};
    if (dfb_stop_requested() || poll(&pfd, 1, 0) != 0) {
        printf("FAIL stop requested before any signal\n");
        fails++;
    }
    /* SIGPIPE must not kill the daemon. */
    raise(SIGPIPE);
    /* A real SIGTERM goes through the handler to the pipe. */
    raise(SIGTERM);
    if (!dfb_stop_requested() || dfb_stop_signal() != SIGTERM) {
        printf("FAIL SIGTERM not recorded\n");
        fails++;
    }
    /* Sticky: readable now and still readable on a second look. */
    for (int i = 0; i < 2; i++) {
        if (poll(&pfd, 1, 1000) != 1 || !(pfd.revents & POLLIN)) {
            printf("FAIL stop fd not readable (look %d)\n", i + 1);
            fails++;
        }
    }
    /* Many signals never block the handler (the pipe is non-blocking). */
    for (int i = 0; i < 100000; i++)
        dfb_stop_request();
    if (verbose)
        printf("  stop fd %d, signal %d\n", dfb_stop_fd(), dfb_stop_signal());
    return fails;
}
