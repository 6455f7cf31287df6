/*  dfb_infodump: the SIGUSR1 dump of the INFO table (see dfb_infodump.h). */
#include "dfb_infodump.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dfb_clock.h"
#include "dfb_log.h"

struct dfb_infodump {
    dfb_info_sources_t src;
    int pipe[2];
    pthread_t thread;
};

static volatile sig_atomic_t s_fd = -1; /* write end for the handler */

static void
on_usr1(int sig)
{
    (void)sig;
    int saved = errno;
    if (s_fd >= 0) {
        ssize_t rc = write(s_fd, "u", 1); /* a full pipe already has a dump pending */
        (void)rc;
    }
    errno = saved;
}

void
dfb_infodump_log(const dfb_info_sources_t *src)
{
    uint64_t values[128];
    char line[4096];
    if (dfb_info_nrows > 128)
        return;
    dfb_info_values(src, dfb_mono_ms(), values);
    dfb_info_line(values, line, sizeof line);
    dfb_info("info: %s", line);
}

static void *
run(void *arg)
{
    dfb_infodump_t *self = arg;
    for (;;) {
        char buf[64];
        ssize_t n = read(self->pipe[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || memchr(buf, 'q', (size_t)n))
            return NULL;
        dfb_infodump_log(&self->src);
    }
}

dfb_infodump_t *
dfb_infodump_new(const dfb_info_sources_t *src)
{
    dfb_infodump_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->src = *src;
    if (pipe(self->pipe) != 0) {
        free(self);
        return NULL;
    }
    for (int i = 0; i < 2; i++)
        fcntl(self->pipe[i], F_SETFD, FD_CLOEXEC);
    fcntl(self->pipe[1], F_SETFL, fcntl(self->pipe[1], F_GETFL) | O_NONBLOCK);
    if (pthread_create(&self->thread, NULL, run, self) != 0) {
        close(self->pipe[0]);
        close(self->pipe[1]);
        free(self);
        errno = EAGAIN;
        return NULL;
    }
    s_fd = self->pipe[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    return self;
}

void
dfb_infodump_destroy(dfb_infodump_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_infodump_t *self = *self_p;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGUSR1, &sa, NULL);
    s_fd = -1;
    /* Blocking write of the quit byte: the thread drains the pipe. */
    int flags = fcntl(self->pipe[1], F_GETFL);
    fcntl(self->pipe[1], F_SETFL, flags & ~O_NONBLOCK);
    ssize_t rc = write(self->pipe[1], "q", 1);
    (void)rc;
    pthread_join(self->thread, NULL);
    close(self->pipe[0]);
    close(self->pipe[1]);
    free(self);
    *self_p = NULL;
}
