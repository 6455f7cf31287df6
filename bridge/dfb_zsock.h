/*  dfb_zsock: creating and binding the bridge's listening ZeroMQ sockets
    (the PUB at bridge.publish, the replay ROUTER at bridge.replay) with one
    set of options: high-water mark, linger, TCP keepalive, ZMTP heartbeats,
    IPv6 for a bracketed endpoint. The socket is then owned by one thread. */
#ifndef DFB_ZSOCK_H
#define DFB_ZSOCK_H

#include <stddef.h>
#include <stdint.h>

/*  Liveness on the PUB and ROUTER sockets: TCP keepalive probes after 30 s
    idle, every 5 s, 3 times (a half-open connection is closed within ~45 s).
    ZMTP heartbeats (bridge.zmtpHeartbeatMillis) are off by default: a PUB
    that times out a subscriber stalled longer than the timeout closes its
    connection, and libzmq 4.3.4 can then abort that subscriber
    ("Assertion failed: !_io_error (src/stream_engine_base.cpp:331)", seen
    in replay_slow_subscriber). Liveness for consumers is the `_hb` topic. */
#define DFB_TCP_KEEPALIVE_IDLE_S 30

typedef struct {
    int type;             /* ZMQ_PUB or ZMQ_ROUTER */
    const char *endpoint; /* what to bind */
    const char *key;      /* the config key named in a bind error, e.g. "bridge.publish" */
    int sndhwm;
    int linger_ms;
    int zmtp_ms;          /* ZMTP PING interval; 0 = off */
    int router_mandatory; /* ROUTER: a send to a gone peer fails instead of dropping */
    int64_t maxmsgsize;   /* > 0: larger incoming messages close the connection */
    /* CURVE server (README "Security"): the bridge's 32-byte secret key,
       borrowed; NULL = plain. Every handshake then goes to the ZAP handler
       (dfb_zap) under the domain DFB_ZAP_DOMAIN. */
    const uint8_t *curve_secret;
} dfb_zsock_opts_t;

#define DFB_ZAP_DOMAIN "dfbridge"

/*  Creates a socket in ctx with the options above (the HWM before bind: it
    only applies to pipes created after it is set), binds it and writes the
    endpoint actually bound (port 0 / "*" resolved) into bound. Returns the
    socket (the caller owns it and closes it with zmq_close), or NULL with
    a message in err (a bind error names o->key). */
void *dfb_zsock_new(void *ctx, const dfb_zsock_opts_t *o, char *bound, size_t boundlen, char *err,
                    size_t errlen);

/*  Sets TCP keepalive (idle DFB_TCP_KEEPALIVE_IDLE_S) and, when zmtp_ms > 0,
    ZMTP heartbeats (interval zmtp_ms, timeout and TTL 3 x zmtp_ms) on a
    socket before bind. 0, or -1 with errno. */
int dfb_zsock_liveness(void *sock, int zmtp_ms);

#endif
