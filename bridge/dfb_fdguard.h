/*  dfb_fdguard: keeps the bridge's file descriptors from running out when
    peers open many TCP connections. libzmq has no per-socket connection
    limit and, at EMFILE, its listener spins on accept while the journal
    cannot open a segment. The guard watches the listening sockets with a
    socket monitor (ACCEPTED / DISCONNECTED carry the connection's fd),
    counts their live connections, and shuts down (shutdown(2), libzmq then
    closes it) any connection accepted beyond the per-socket cap, so the
    process stays below its descriptor limit and the journal, the replay
    readers and HTTP always find one. Also raises the soft RLIMIT_NOFILE
    to the hard limit at start. One thread polls it (the replay thread). */
#ifndef DFB_FDGUARD_H
#define DFB_FDGUARD_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "dfb_info.h"

#define DFB_FDGUARD_MAX_SOCKETS 4

typedef struct dfb_fdguard dfb_fdguard_t;

/*  Raises the soft RLIMIT_NOFILE to the hard limit (logs both) and returns
    the soft limit now in force. Process-wide: call once at start. */
uint64_t dfb_fdguard_raise_limit(void);

/*  The per-socket cap: max_connections when > 0, else a quarter of the
    descriptor limit (two listening sockets then take at most half). */
uint64_t dfb_fdguard_default_cap(uint64_t max_connections);

/*  A guard with a cap of live connections per watched socket, counting
    into c->connections (gauge) and c->connections_refused (borrowed).
    NULL when out of memory. */
dfb_fdguard_t *dfb_fdguard_new(void *ctx, uint64_t cap, dfb_pub_counters_t *c);

/*  Starts watching sock (a bound PUB or ROUTER): must be called before
    another thread uses sock (it calls zmq_socket_monitor on it). name is
    for the log ("bridge.publish"). 0, or -1 (logged: the socket is then
    unguarded). */
int dfb_fdguard_watch(dfb_fdguard_t *self, void *sock, const char *name);

/*  The socket watched under name was replaced by sock (a CURVE re-bind
    closed the old one): from the thread that owns sock, before it uses it,
    starts its monitor and hands it to the polling thread, which takes it at
    its next dfb_fdguard_items (the count of that socket starts again at
    zero: the old connections went with the old socket). Any thread, one
    per name. 0, or -1 (no such name, or logged: unguarded). */
int dfb_fdguard_rewatch(dfb_fdguard_t *self, void *sock, const char *name);

/*  Fills up to max poll items (ZMQ_POLLIN on each monitor); returns how
    many. */
size_t dfb_fdguard_items(dfb_fdguard_t *self, zmq_pollitem_t *items, size_t max);

/*  Reads every pending monitor event (never blocks) and refuses what is
    over the cap. On the polling thread. */
void dfb_fdguard_handle(dfb_fdguard_t *self);

/*  Closes the monitors; NULLs *self_p; accepts NULL. The watched sockets
    must be closed after this (or the context terminated). */
void dfb_fdguard_destroy(dfb_fdguard_t **self_p);

#endif
