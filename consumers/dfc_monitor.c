/*  dfc_monitor: socket monitors of the sockets a consumer connects to a bridge,
    and what a failed CURVE handshake does: counted, logged rate-limited, and
    (libzmq 4.3 never reconnects after a ZAP denial: HANDSHAKE_FAILED_AUTH,
    DISCONNECTED, then nothing) the endpoint connected again after a backoff.
    The SUB's monitor is read by dfc_link.c; the replay DEALER's here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_loop_priv.h"

void *
dfc_monitor_open(void *zctx, void *sock, int events)
{
    static atomic_uint serial;
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://dfc-monitor-%p-%u", sock, atomic_fetch_add(&serial, 1));
    if (zmq_socket_monitor(sock, ep, events) != 0)
        return NULL;
    void *pair = zmq_socket(zctx, ZMQ_PAIR);
    int linger = 0;
    if (pair &&
        (zmq_setsockopt(pair, ZMQ_LINGER, &linger, sizeof linger) || zmq_connect(pair, ep) != 0)) {
        zmq_close(pair);
        pair = NULL;
    }
    if (!pair)
        zmq_socket_monitor(sock, NULL, 0);
    return pair;
}

void
dfc_monitor_close(void *sock, void **mon_p)
{
    if (*mon_p) {
        zmq_socket_monitor(sock, NULL, 0);
        zmq_close(*mon_p);
        *mon_p = NULL;
    }
}

int
dfc_monitor_next(void *mon, uint16_t *id, char *ep, size_t size)
{
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&ev);
        return 0;
    }
    *id = 0;
    if (zmq_msg_size(&ev) >= 2)
        memcpy(id, zmq_msg_data(&ev), 2);
    bool more = zmq_msg_more(&ev);
    zmq_msg_close(&ev);
    ep[0] = '\0';
    if (more) {
        zmq_msg_init(&addr);
        if (zmq_msg_recv(&addr, mon, 0) >= 0) {
            size_t n = zmq_msg_size(&addr) < size - 1 ? zmq_msg_size(&addr) : size - 1;
            memcpy(ep, zmq_msg_data(&addr), n);
            ep[n] = '\0';
        }
        zmq_msg_close(&addr);
    }
    return 1;
}

/*  What a failed handshake most likely means (the log line). */
static const char *
hs_why(uint16_t id)
{
    switch (id) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        return "refused by the bridge (this consumer's key is not in its clients directory?)";
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "failed (a wrong server_key, or a bridge without CURVE?)";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return "failed: CURVE protocol error";
    default:
        return NULL;
    }
}

dfc_hs_result_t
dfc_hs_event(dfc_hs_t *h, uint16_t id, const char *what, int64_t now)
{
    if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        if (h->failed)
            dfc_log(DFC_LOG_INFO, "%s: handshake succeeded after %llu failure(s)", what,
                    (unsigned long long)h->failed);
        memset(h, 0, sizeof *h);
        return DFC_HS_OK;
    }
    const char *why = hs_why(id);
    if (!why)
        return DFC_HS_NONE;
    h->failed++;
    h->backoff_ms = h->backoff_ms ? h->backoff_ms * 2 : DFC_HS_BACKOFF_FIRST_MS;
    if (h->backoff_ms > DFC_HS_BACKOFF_MAX_MS)
        h->backoff_ms = DFC_HS_BACKOFF_MAX_MS;
    h->retry_at = now + h->backoff_ms;
    if (!h->logged || now - h->logged_at >= DFC_HS_LOG_EVERY_MS) {
        char more[64] = "";
        if (h->unlogged)
            snprintf(more, sizeof more, " (%llu more since the last line)",
                     (unsigned long long)h->unlogged);
        dfc_log(DFC_LOG_WARN, "%s: CURVE handshake %s; retrying every %d ms at most%s", what, why,
                DFC_HS_BACKOFF_MAX_MS, more);
        h->logged = true;
        h->logged_at = now;
        h->unlogged = 0;
    } else {
        h->unlogged++;
    }
    return DFC_HS_FAILED;
}

/*  The replay DEALER's monitor (opened by dfc_replay_open when CURVE is on):
    its handshake failures, and CONNECT_RETRIED (libzmq reconnects by itself:
    nothing for us to do). */
void
dfc_dealer_read_monitor(dfc_loop_t *loop, link_t *L)
{
    dfc_fill_t *f = &L->fill;
    char what[300];
    snprintf(what, sizeof what, "replay %s", f->dealer_ep ? f->dealer_ep : "?");
    for (int i = 0; i < 64 && f->dealer_mon; i++) {
        uint16_t id;
        char ep[256];
        if (!dfc_monitor_next(f->dealer_mon, &id, ep, sizeof ep))
            return;
        if (id == ZMQ_EVENT_CONNECT_RETRIED)
            f->hs.retry_at = 0;
        else if (dfc_hs_event(&f->hs, id, what, dfc_mono_ms()) == DFC_HS_FAILED)
            STAT_ADD(loop, auth_failures, 1);
    }
}

/*  After the backoff, a refused DEALER is connected again: zmq_disconnect +
    zmq_connect of its endpoint (no message of the refused connection can be
    in its pipe). The request that got no answer is asked again under the
    fill's replay_timeout rules. */
void
dfc_dealer_tick(dfc_loop_t *loop, link_t *L, int64_t now)
{
    (void)loop;
    dfc_fill_t *f = &L->fill;
    if (!f->dealer || !f->hs.retry_at || now < f->hs.retry_at)
        return;
    f->hs.retry_at = 0;
    zmq_disconnect(f->dealer, f->dealer_ep); /* libzmq may have forgotten it: ignore */
    if (zmq_connect(f->dealer, f->dealer_ep) != 0)
        dfc_log(DFC_LOG_ERROR, "replay %s: cannot reconnect: %s", f->dealer_ep,
                zmq_strerror(errno));
}
