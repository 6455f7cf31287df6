/*  dfb_fdguard: connection caps on the listening sockets through socket
    monitors, and the descriptor limit raised at start (see dfb_fdguard.h). */
#include "dfb_fdguard.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "dfb_log.h"

typedef struct {
    void *mon; /* PAIR connected to the socket's monitor endpoint */
    char name[64];
    uint64_t live; /* accepted and not yet disconnected, refused ones included */
    /* dfb_fdguard_rewatch (the socket's owner thread): the monitor of the
       socket that replaced this one, taken by the polling thread */
    void *_Atomic pending;
    _Atomic unsigned gen; /* monitors started for this name (endpoint names) */
} watch_t;

struct dfb_fdguard {
    void *ctx;
    uint64_t cap;
    dfb_pub_counters_t *c;
    watch_t w[DFB_FDGUARD_MAX_SOCKETS];
    size_t n;
    int64_t said_ms; /* a refusal is logged at most once per episode */
};

static uint64_t s_limit;

uint64_t
dfb_fdguard_raise_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        dfb_warn("descriptors: getrlimit: %s", strerror(errno));
        return s_limit = 1024;
    }
    rlim_t soft = rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = rl.rlim_max;
        else
            dfb_warn("descriptors: cannot raise the soft limit: %s", strerror(errno));
    }
    dfb_info("descriptors: soft limit %llu (was %llu), hard limit %llu",
             (unsigned long long)rl.rlim_cur, (unsigned long long)soft,
             (unsigned long long)rl.rlim_max);
    s_limit = rl.rlim_cur == RLIM_INFINITY ? (uint64_t)1 << 20 : (uint64_t)rl.rlim_cur;
    return s_limit;
}

uint64_t
dfb_fdguard_default_cap(uint64_t max_connections)
{
    if (max_connections > 0)
        return max_connections;
    if (!s_limit) {
        struct rlimit rl;
        s_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                      ? (uint64_t)rl.rlim_cur
                      : 1024;
    }
    return s_limit / 4 ? s_limit / 4 : 1;
}

dfb_fdguard_t *
dfb_fdguard_new(void *ctx, uint64_t cap, dfb_pub_counters_t *c)
{
    dfb_fdguard_t *self = calloc(1, sizeof *self);
    if (self) {
        self->ctx = ctx;
        self->cap = cap;
        self->c = c;
    }
    return self;
}

/*  A PAIR that reads sock's monitor at endpoint ep: connected first (inproc
    connect before bind), so that no event is lost, then the monitor started.
    NULL (logged) on error. */
static void *
monitor_open(dfb_fdguard_t *self, void *sock, const char *ep, const char *name)
{
    int zero = 0, hwm = 0;
    void *mon = zmq_socket(self->ctx, ZMQ_PAIR);
    /* Unlimited: a lost event would skew the count. */
    if (!mon || zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(mon, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 || zmq_connect(mon, ep) != 0) {
        dfb_warn("%s: cannot read the socket monitor (%s): connections are not capped", name,
                 zmq_strerror(errno));
        if (mon)
            zmq_close(mon);
        return NULL;
    }
    if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
        dfb_warn("%s: no socket monitor (%s): connections are not capped", name,
                 zmq_strerror(errno));
        zmq_close(mon);
        return NULL;
    }
    return mon;
}

int
dfb_fdguard_watch(dfb_fdguard_t *self, void *sock, const char *name)
{
    if (self->n == DFB_FDGUARD_MAX_SOCKETS)
        return -1;
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://dfb-fdguard-%p-%zu-0", (void *)self, self->n);
    watch_t *w = &self->w[self->n];
    if (!(w->mon = monitor_open(self, sock, ep, name)))
        return -1;
    snprintf(w->name, sizeof w->name, "%s", name);
    self->n++;
    return 0;
}

int
dfb_fdguard_rewatch(dfb_fdguard_t *self, void *sock, const char *name)
{
    for (size_t i = 0; self && sock && i < self->n; i++) {
        watch_t *w = &self->w[i];
        if (strcmp(w->name, name) != 0)
            continue;
        char ep[96];
        snprintf(ep, sizeof ep, "inproc://dfb-fdguard-%p-%zu-%u", (void *)self, i,
                 atomic_fetch_add(&w->gen, 1) + 1);
        void *mon = monitor_open(self, sock, ep, name);
        if (!mon)
            return -1;
        void *old = atomic_exchange(&w->pending, mon);
        if (old) /* never taken by the polling thread: still this thread's */
            zmq_close(old);
        return 0;
    }
    return -1;
}

static void
total_live(dfb_fdguard_t *self)
{
    uint64_t t = 0, subs = 0;
    for (size_t i = 0; i < self->n; i++) {
        t += self->w[i].live;
        if (strcmp(self->w[i].name, "bridge.publish") == 0)
            subs = self->w[i].live;
    }
    self->c->connections = t;
    self->c->subscribers = subs;
}

size_t
dfb_fdguard_items(dfb_fdguard_t *self, zmq_pollitem_t *items, size_t max)
{
    size_t k = 0;
    int swapped = 0;
    for (size_t i = 0; self && i < self->n && k < max; i++) {
        watch_t *w = &self->w[i];
        void *p = atomic_exchange(&w->pending, NULL);
        if (p) {
            /* the socket was replaced (a CURVE re-bind): its connections went
               with it, the new monitor counts from zero */
            zmq_close(w->mon);
            w->mon = p;
            w->live = 0;
            swapped = 1;
        }
        items[k++] = (zmq_pollitem_t){w->mon, 0, ZMQ_POLLIN, 0};
    }
    if (swapped)
        total_live(self);
    return k;
}

void
dfb_fdguard_handle(dfb_fdguard_t *self)
{
    for (size_t i = 0; self && i < self->n; i++) {
        watch_t *w = &self->w[i];
        for (int k = 0; k < 4096; k++) {
            zmq_msg_t ev, addr;
            zmq_msg_init(&ev);
            if (zmq_msg_recv(&ev, w->mon, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&ev);
                break;
            }
            zmq_msg_init(&addr);
            if (zmq_msg_more(&ev))
                zmq_msg_recv(&addr, w->mon, 0);
            if (zmq_msg_size(&ev) == 6) {
                const uint8_t *p = zmq_msg_data(&ev);
                uint16_t type;
                uint32_t value;
                memcpy(&type, p, 2);
                memcpy(&value, p + 2, 4);
                if (type == ZMQ_EVENT_ACCEPTED) {
                    w->live++;
                    if (w->live > self->cap) {
                        /* libzmq sees end of file and closes the
                           connection (a DISCONNECTED follows). */
                        shutdown((int)value, SHUT_RDWR);
                        if (self->c->connections_refused++ == 0 || w->live == self->cap + 1)
                            dfb_warn("%s: more than %" PRIu64 " connections: new ones are closed "
                                     "at once (counted in connections_refused)",
                                     w->name, self->cap);
                    }
                } else if (type == ZMQ_EVENT_DISCONNECTED && w->live > 0) {
                    w->live--;
                }
            }
            zmq_msg_close(&ev);
            zmq_msg_close(&addr);
        }
    }
    if (self)
        total_live(self);
}

void
dfb_fdguard_destroy(dfb_fdguard_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dfb_fdguard_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        zmq_close(self->w[i].mon);
        void *p = atomic_exchange(&self->w[i].pending, NULL);
        if (p)
            zmq_close(p);
    }
    free(self);
    *self_p = NULL;
}
