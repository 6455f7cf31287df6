/*  dfb_zsock: the one place where the bridge's listening sockets get their
    options and are bound (see dfb_zsock.h), so the PUB and the replay ROUTER
    cannot drift apart. */
#include "dfb_zsock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

int
dfb_zsock_liveness(void *sock, int zmtp_ms)
{
    int one = 1, idle = DFB_TCP_KEEPALIVE_IDLE_S, intvl = 5, cnt = 3;
    if (zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof idle) != 0 ||
        zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_INTVL, &intvl, sizeof intvl) != 0 ||
        zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_CNT, &cnt, sizeof cnt) != 0)
        return -1;
    if (zmtp_ms <= 0)
        return 0;
    int timeout = zmtp_ms > 2184533 ? 6553599 : zmtp_ms * 3; /* TTL max 6553599 ms */
    return zmq_setsockopt(sock, ZMQ_HEARTBEAT_IVL, &zmtp_ms, sizeof zmtp_ms) != 0 ||
                   zmq_setsockopt(sock, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout) != 0 ||
                   zmq_setsockopt(sock, ZMQ_HEARTBEAT_TTL, &timeout, sizeof timeout) != 0
               ? -1
               : 0;
}

/*  CURVE server options, before bind: the handshake of every connection
    is then encrypted and checked by the ZAP handler (dfb_zap). */
static int
dfb_zsock_curve_server(void *sock, const uint8_t *secret)
{
    int one = 1;
    return zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
                   zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 32) != 0 ||
                   zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, DFB_ZAP_DOMAIN, strlen(DFB_ZAP_DOMAIN)) != 0
               ? -1
               : 0;
}

void *
dfb_zsock_new(void *ctx, const dfb_zsock_opts_t *o, char *bound, size_t boundlen, char *err,
              size_t errlen)
{
    const char *what = o->type == ZMQ_ROUTER ? "replay" : "publish";
    void *sock = zmq_socket(ctx, o->type);
    if (!sock) {
        snprintf(err, errlen, "%s: cannot create the socket: %s", what, zmq_strerror(errno));
        return NULL;
    }
    int ipv6 = strchr(o->endpoint, '[') != NULL, one = 1;
    int sndhwm = o->sndhwm, linger = o->linger_ms;
    int64_t maxmsg = o->maxmsgsize;
    if (zmq_setsockopt(sock, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm) != 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        (o->router_mandatory &&
         zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) != 0) ||
        (maxmsg > 0 && zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0) ||
        dfb_zsock_liveness(sock, o->zmtp_ms) != 0 ||
        zmq_setsockopt(sock, ZMQ_IPV6, &ipv6, sizeof ipv6) != 0 ||
        (o->curve_secret && dfb_zsock_curve_server(sock, o->curve_secret) != 0)) {
        snprintf(err, errlen, "%s: setsockopt: %s", what, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    if (zmq_bind(sock, o->endpoint) != 0) {
        snprintf(err, errlen, "config: %s: cannot bind '%s': %s", o->key, o->endpoint,
                 zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    size_t sz = boundlen;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, bound, &sz) != 0)
        snprintf(bound, boundlen, "%s", o->endpoint);
    return sock;
}
