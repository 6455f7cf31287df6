/*  Fuzz target consumer_link: libdfconsumer's receive path for one bridge,
    unchanged and with its state kept across the messages of one input:
    dfc_link_receive (frame rule, envelope, "_hb" heartbeats, gap counting,
    epochs, the live/replay ordering) and dfc_fill_receive (replayed
    messages and "_end" answers of the gap filler), over real inproc
    sockets. A loop is made with dfc_loop_new but never run: no thread of
    the library starts, events reach dfc_deliver with no listener.

    Input: byte 0 = flags (bit 0: a replay endpoint is configured), then up
    to 64 operations, each
      u8 op | u8 topic length | topic | u16 body length (LE) | body
    op % 8: 0-2 a live message (topic, body); 3 a live message of 1 or 3
    frames (op bit 3); 4-5 a replayed message; 6 an "_end" answer whose
    map is {"req": <the request in flight>} followed by the body's bytes as
    ((op >> 4) & 7) more key/value pairs; 7 the fill's deadline passes. */
#include "fuzz_util.h"

#include <zmq.h>

#include "dfc_loop_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIVE_EP "inproc://dffuzz-live"
#define REPLAY_EP "inproc://dffuzz-replay"

static void *s_ctx, *s_live_tx, *s_live_rx, *s_router;
static uint8_t s_id[256];
static size_t s_id_len;

static void
setup(void)
{
    if (s_ctx)
        return;
    int linger = 0;
    s_ctx = zmq_ctx_new();
    s_live_tx = zmq_socket(s_ctx, ZMQ_PAIR);
    s_live_rx = zmq_socket(s_ctx, ZMQ_PAIR);
    s_router = zmq_socket(s_ctx, ZMQ_ROUTER);
    if (!s_ctx || !s_live_tx || !s_live_rx || !s_router || zmq_bind(s_live_tx, LIVE_EP) ||
        zmq_connect(s_live_rx, LIVE_EP) || zmq_bind(s_router, REPLAY_EP))
        abort();
    zmq_setsockopt(s_live_tx, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s_router, ZMQ_LINGER, &linger, sizeof linger);
}

/*  Reads what the filler sent to the replay endpoint; keeps the last
    routing id (the DEALER of the request in flight). */
static void
drain_router(void)
{
    for (int i = 0; i < 1000; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s_router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (zmq_msg_size(&m) <= sizeof s_id) {
            s_id_len = zmq_msg_size(&m);
            memcpy(s_id, zmq_msg_data(&m), s_id_len);
        }
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* the request itself */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s_router, 0) < 0) {
                zmq_msg_close(&m);
                return;
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
    }
}

/*  What holds whatever came in: at most max_held events held (in any
    order: the filler sorts them when it lets them go), and every message
    read from the SUB counted as received. */
static void
check(const dfc_loop_t *loop, const link_t *L, uint64_t received)
{
    const dfc_fill_t *f = &L->fill;
    if (f->nheld > loop->cfg.max_held)
        abort();
    if (atomic_load(&loop->stats.received) != received)
        abort();
}

/*  One operation's topic and body; NULL when the input is over. */
static const uint8_t *
take(const uint8_t **p, const uint8_t *end, size_t *len)
{
    if (*p >= end)
        return NULL;
    size_t n = **p;
    (*p)++;
    if (n > (size_t)(end - *p))
        n = (size_t)(end - *p);
    const uint8_t *s = *p;
    *p += n;
    *len = n;
    return s;
}

static const uint8_t *
take16(const uint8_t **p, const uint8_t *end, size_t *len)
{
    if (end - *p < 2) {
        *len = 0;
        *p = end;
        return end;
    }
    size_t n = (size_t)(*p)[0] | (size_t)(*p)[1] << 8;
    *p += 2;
    if (n > (size_t)(end - *p))
        n = (size_t)(end - *p);
    const uint8_t *s = *p;
    *p += n;
    *len = n;
    return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    dfc_log_set_level((dfc_log_level_t)(getenv("DF_FUZZ_LOG") ? DFC_LOG_DEBUG : DFC_LOG_ERROR + 1));
    setup();
    if (size < 1)
        return 0;
    dfc_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.zmq_ctx = s_ctx;
    cfg.max_held = 16;
    cfg.max_frame = 1 << 16;
    cfg.dedupe_window = 64;
    cfg.queue_size = 16;
    cfg.workers = 1;
    dfc_loop_t *loop = dfc_loop_new(&cfg);
    link_t *L = calloc(1, sizeof *L);
    if (!loop || !L || !(L->endpoint = strdup(LIVE_EP)))
        abort();
    L->replay_cfg = true; /* heartbeats never point the filler at another endpoint */
    if (data[0] & 1)
        L->replay = strdup(REPLAY_EP);
    L->sub = s_live_rx;
    loop->links = L;
    loop->nlinks = 1;
    s_id_len = 0;
    uint64_t received = 0;

    const uint8_t *p = data + 1, *end = data + size;
    for (int n = 0; n < 64 && p < end; n++) {
        uint8_t op = *p++;
        size_t tl = 0, bl = 0;
        const uint8_t *topic = take(&p, end, &tl);
        if (!topic)
            break;
        const uint8_t *body = take16(&p, end, &bl);
        switch (op % 8) {
        case 0:
        case 1:
        case 2:
        case 3: {
            int frames = op % 8 != 3 ? 2 : (op & 8) ? 3 : 1;
            zmq_send(s_live_tx, topic, tl, frames > 1 ? ZMQ_SNDMORE : 0);
            if (frames > 1)
                zmq_send(s_live_tx, body, bl, frames > 2 ? ZMQ_SNDMORE : 0);
            if (frames > 2)
                zmq_send(s_live_tx, "x", 1, 0);
            for (int i = 0; i < 8 && dfc_link_receive(loop, L) > 0; i++)
                received++;
            break;
        }
        case 4:
        case 5:
        case 6: {
            drain_router();
            if (!L->fill.dealer || !s_id_len)
                break;
            uint8_t head[32];
            size_t hl = 0;
            if (op % 8 == 6) { /* {"req": <in flight>, ...the body's pairs} */
                head[hl++] = (uint8_t)(0x80 | (1 + ((op >> 4) & 7)));
                head[hl++] = 0xa3;
                memcpy(head + hl, "req", 3);
                hl += 3;
                head[hl++] = 0xcf;
                for (int b = 7; b >= 0; b--)
                    head[hl++] = (uint8_t)(L->fill.req >> (8 * b));
                topic = (const uint8_t *)"_end";
                tl = 4;
            }
            uint8_t *msg = malloc(hl + bl + 1);
            if (!msg)
                abort();
            memcpy(msg, head, hl);
            if (bl)
                memcpy(msg + hl, body, bl);
            zmq_send(s_router, s_id, s_id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send(s_router, topic, tl, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send(s_router, msg, hl + bl, ZMQ_DONTWAIT);
            free(msg);
            for (int i = 0; i < 8 && L->fill.dealer && dfc_fill_receive(loop, L) > 0; i++)
                ;
            break;
        }
        default:
            dfc_fill_on(loop, L, DFC_FILL_EV_TICK, (uint64_t)(L->fill.deadline + 1), NULL);
            break;
        }
        check(loop, L, received);
    }
    /* leave nothing for the next input */
    for (int i = 0; i < 1000 && dfc_link_receive(loop, L) > 0; i++)
        received++;
    check(loop, L, received);
    if (getenv("DF_FUZZ_LOG"))
        fprintf(stderr,
                "fuzz: received %llu, heartbeats %llu, gaps %llu, replay requests %llu, replayed "
                "%llu, lost %llu, bad envelopes %llu\n",
                (unsigned long long)loop->stats.received, (unsigned long long)loop->stats.heartbeats,
                (unsigned long long)loop->stats.gaps, (unsigned long long)loop->stats.replay_requests,
                (unsigned long long)loop->stats.replayed, (unsigned long long)loop->stats.lost,
                (unsigned long long)loop->stats.bad_envelope);
    dfc_fill_on(loop, L, DFC_FILL_EV_STOP, 0, NULL);
    drain_router();
    L->sub = NULL; /* ours */
    dfc_loop_destroy(&loop);
    if (loop)
        abort();
    return 0;
}
