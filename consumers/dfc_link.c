/*  dfc_link: one bridge as the receiver sees it: its SUB socket and monitor,
    reading messages, the epoch baseline, gap counting, heartbeats, the bounds
    on numbers that cannot be right, and staleness. Receiver thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_loop_priv.h"

/*  The last seq known for (epoch, topic), or NULL. */
static gap_entry_t *
gap_find(dfc_loop_t *loop, const char *epoch, size_t el, const char *topic, size_t tl)
{
    size_t kl = el + tl;
    for (size_t i = 0; i < loop->ngaps; i++) {
        gap_entry_t *g = &loop->gaps[i];
        if (g->key_len == kl && g->epoch_len == el && memcmp(g->key, epoch, el) == 0 &&
            memcmp(g->key + el, topic, tl) == 0)
            return g;
    }
    return NULL;
}

/*  Counts messages missing from seq per (epoch, topic): the first seq seen
    is the baseline. A live message's seq s follows s-1; a heartbeat's
    (announced) s is the last one published, so s itself may be missing. */
static void
count_gap(dfc_loop_t *loop, const char *epoch, size_t el, const char *topic, size_t tl,
          uint64_t seq, bool announced)
{
    gap_entry_t *g = gap_find(loop, epoch, el, topic, tl);
    if (g) {
        uint64_t next = announced ? 0 : 1;
        if (seq > g->last_seq && seq - g->last_seq > next) /* no wrap at UINT64_MAX */
            STAT_ADD(loop, gaps, seq - g->last_seq - next);
        if (seq > g->last_seq)
            g->last_seq = seq;
        return;
    }
    size_t kl = el + tl;
    if (loop->ngaps == GAP_TABLE_MAX) {
        /* many epochs seen: forget the old ones rather than grow */
        for (size_t i = 0; i < loop->ngaps; i++)
            free(loop->gaps[i].key);
        loop->ngaps = 0;
    }
    char *key = malloc(kl ? kl : 1);
    if (!key)
        return;
    memcpy(key, epoch, el);
    memcpy(key + el, topic, tl);
    loop->gaps[loop->ngaps++] = (gap_entry_t){key, el, kl, seq};
}

/*  Counts a refused message under its reason (and in dropped_malformed). */
void
dfc_drop_count(dfc_loop_t *loop, dfc_msg_status_t st)
{
    _Atomic uint64_t *reason[] = {NULL,
                                  &loop->stats.bad_frames,
                                  &loop->stats.oversize,
                                  &loop->stats.bad_msgpack,
                                  &loop->stats.not_map,
                                  &loop->stats.bad_version,
                                  &loop->stats.bad_envelope,
                                  &loop->stats.bad_event,
                                  NULL};
    if ((size_t)st < sizeof reason / sizeof reason[0] && reason[st])
        atomic_fetch_add_explicit(reason[st], 1, memory_order_relaxed);
    STAT_ADD(loop, dropped_malformed, 1);
}

void
dfc_drop(dfc_loop_t *loop, dfc_msg_status_t st, size_t size)
{
    dfc_drop_count(loop, st);
    dfc_log(DFC_LOG_WARN, "dropped a message (%zu bytes): %s", size, dfc_msg_status_str(st));
}

/*  Ordered delivery (gseq order, fills, duplicates by gseq) is on for a
    bridge once there is something to fill from or resume to: a replay
    endpoint, a checkpoint or from_gseq. Without it the loop hands every
    message out as it comes (the spine's behaviour). */
bool
dfc_link_ordered(const dfc_loop_t *loop, const link_t *L)
{
    return L->replay || loop->ckpt_path || loop->cfg.from_gseq;
}

void
dfc_range_add(link_t *L, uint64_t lo, uint64_t hi)
{
    if (lo > hi)
        return;
    if (L->nranges && L->ranges[L->nranges - 1].hi + 1 >= lo) {
        if (hi > L->ranges[L->nranges - 1].hi)
            L->ranges[L->nranges - 1].hi = hi;
        return;
    }
    if (L->nranges == L->ranges_cap) {
        size_t cap = L->ranges_cap ? L->ranges_cap * 2 : 16;
        range_t *grown = cap <= MAX_RANGES ? realloc(L->ranges, cap * sizeof *grown) : NULL;
        if (!grown) { /* bounded: stretch the last one (gaps_filled may over-count) */
            if (L->nranges)
                L->ranges[L->nranges - 1].hi = hi;
            return;
        }
        L->ranges = grown;
        L->ranges_cap = cap;
    }
    L->ranges[L->nranges++] = (range_t){lo, hi};
}

/*  True when gseq g was known missing; forgets ranges below g. */
bool
dfc_range_hit(link_t *L, uint64_t g)
{
    size_t k = 0;
    while (k < L->nranges && L->ranges[k].hi < g)
        k++;
    if (k) {
        memmove(L->ranges, L->ranges + k, (L->nranges - k) * sizeof(range_t));
        L->nranges -= k;
    }
    return L->nranges && L->ranges[0].lo <= g;
}

/*  A new epoch on this bridge (first message or heartbeat, or the bridge
    lost its journal): set the baseline. head is the newest gseq known to
    exist (the message's gseq - 1, or the heartbeat's gseq). The checkpoint,
    then from_gseq (first epoch only), decide where to resume; an epoch that
    follows another is new as a whole (replayed from 1); otherwise live. */
static void
link_new_epoch(dfc_loop_t *loop, link_t *L, const char *epoch, size_t el, uint64_t head)
{
    dfc_fill_on(loop, L, DFC_FILL_EV_EPOCH, 0, NULL);
    L->had_epoch = L->has_epoch;
    L->has_epoch = true;
    memcpy(L->epoch, epoch, el); /* el < DFC_EPOCH_MAX: checked on receipt */
    L->epoch[el] = '\0';
    L->epoch_len = el;
    L->nranges = 0;
    L->live_last = head;
    L->seen = 0;
    L->hb_known = false;
    bool ordered = dfc_link_ordered(loop, L);
    uint64_t base = head;
    pthread_mutex_lock(&loop->wm_mu);
    wm_t *w = loop->ckpt_path ? dfc_wm_get(loop, epoch, el, false) : NULL;
    if (w && !dfc_wm_check_head(loop, w, head))
        w = NULL; /* never trusted beyond what the bridge published */
    if (w) {
        base = w->gseq;
    } else if (ordered) {
        if (!L->had_epoch && loop->cfg.from_gseq && !L->from_used)
            base = loop->cfg.from_gseq - 1;
        else if (L->had_epoch)
            base = 0;
        if (loop->ckpt_path && (w = dfc_wm_get(loop, epoch, el, true)) != NULL) {
            w->gseq = base;
            loop->ckpt_dirty = true;
        }
    }
    pthread_mutex_unlock(&loop->wm_mu);
    L->from_used = true;
    L->hw = base;
    dfc_log(DFC_LOG_INFO, "%s: epoch %s, resuming after gseq %llu (newest %llu)", L->endpoint,
            epoch, (unsigned long long)base, (unsigned long long)head);
    if (ordered && base < head)
        dfc_fill_on(loop, L, DFC_FILL_EV_MISSING, head, NULL);
}

bool
dfc_link_same_epoch(const link_t *L, const char *epoch, size_t el)
{
    return L->has_epoch && L->epoch_len == el && memcmp(L->epoch, epoch, el) == 0;
}

/*  Whether a live message's seq and gseq can be right (consumers/README.md,
    "Numbers that cannot be right"): both at most DFC_SEQ_MAX, and, once a
    heartbeat of its epoch was accepted on this link, the gseq at most
    DFC_GSEQ_AHEAD above the highest gseq known (announced, received or
    handled) and the seq at most DFC_GSEQ_AHEAD above the last seq known for
    its topic (same sources). A message of another epoch starts that epoch:
    no bound. */
static bool
numbers_plausible(dfc_loop_t *loop, const link_t *L, const dfc_event_t *ev)
{
    uint64_t g = dfc_event_gseq(ev), s = dfc_event_seq(ev);
    if (g > DFC_SEQ_MAX || s > DFC_SEQ_MAX)
        return false;
    size_t el, tl;
    const char *epoch = dfc_event_epoch_n(ev, &el), *topic = dfc_event_topic_n(ev, &tl);
    if (!L->hb_known || !dfc_link_same_epoch(L, epoch, el))
        return true;
    uint64_t known = L->live_last > L->hw ? L->live_last : L->hw;
    if (g > known && g - known > DFC_GSEQ_AHEAD)
        return false;
    const gap_entry_t *t = gap_find(loop, epoch, el, topic, tl);
    return !t || s <= t->last_seq || s - t->last_seq <= DFC_GSEQ_AHEAD;
}

static void
on_live(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    uint64_t g = dfc_event_gseq(ev);
    if (!dfc_link_same_epoch(L, epoch, el))
        link_new_epoch(loop, L, epoch, el, g ? g - 1 : 0);
    if (g > L->seen)
        L->seen = g;
    if (!dfc_link_ordered(loop, L)) {
        if (g > L->hw)
            L->hw = g;
        if (g > L->live_last)
            L->live_last = g;
        dfc_deliver(loop, ev);
        return;
    }
    if (g > L->live_last + 1)
        dfc_range_add(L, (L->live_last > L->hw ? L->live_last : L->hw) + 1, g - 1);
    if (g > L->live_last)
        L->live_last = g;
    if (g <= L->hw)
        return; /* replay gave it already */
    if (dfc_fill_busy(L)) {
        dfc_fill_hold(loop, L, ev);
        return;
    }
    if (g == L->hw + 1) {
        L->hw = g;
        dfc_deliver(loop, ev);
        return;
    }
    dfc_fill_hold(loop, L, ev);
    dfc_fill_on(loop, L, DFC_FILL_EV_MISSING, g - 1, NULL);
}

/*  The replay endpoint a heartbeat names (rp: a str, or NULL when absent),
    for a link without a configured one: "" or absent = none; otherwise the
    rule of dfc_replay_advert (replay_any_host) decides. A refused one is
    counted on every heartbeat, logged once per value, and changes nothing:
    a forged heartbeat must not make the loop ask (and believe) another
    machine. */
static void
learn_replay(dfc_loop_t *loop, link_t *L, const dfc_value_t *rp)
{
    size_t rl = 0;
    const char *r = rp ? dfc_value_str(rp, &rl) : NULL;
    char ep[1100], shown[64];
    bool ok = true;
    if (rl > 1024 || (r && memchr(r, '\0', rl))) {
        snprintf(shown, sizeof shown, "(%zu bytes, or a NUL)", rl);
        r = shown;
        ok = false;
    } else if (rl) {
        ok = dfc_replay_advert(L->endpoint, r, loop->cfg.replay_any_host, ep, sizeof ep) == 0;
        if (ok)
            r = ep;
    } else {
        r = NULL; /* "" or absent: the bridge has no replay */
    }
    if (!ok) {
        STAT_ADD(loop, replay_refused, 1);
        if (!L->replay_refused || strcmp(L->replay_refused, r) != 0) {
            dfc_log(DFC_LOG_WARN,
                    "%s: the heartbeat names replay endpoint %s, not on this bridge's host: "
                    "not used (configure the replay endpoint, or set replay_any_host)",
                    L->endpoint, r);
            free(L->replay_refused);
            L->replay_refused = strdup(r);
        }
        return;
    }
    if (!r != !L->replay || (r && strcmp(r, L->replay) != 0)) {
        free(L->replay);
        L->replay = r ? strdup(r) : NULL;
        dfc_log(DFC_LOG_INFO, "%s: replay endpoint %s (from the heartbeat)", L->endpoint,
                L->replay ? L->replay : "none");
    }
}

/*  "_hb": {v, epoch, gseq, seqs{topic: seq}, ts, interval, replay}. */
static void
on_heartbeat(dfc_loop_t *loop, link_t *L, const void *body, size_t len)
{
    dfc_doc_t *doc = NULL;
    if (dfc_doc_parse(body, len, &doc) != DFC_OK) {
        dfc_drop(loop, DFC_MSG_BAD_MSGPACK, len);
        return;
    }
    const dfc_value_t *root = dfc_doc_root(doc);
    const dfc_value_t *ep = dfc_value_find(root, "epoch"), *seqs = dfc_value_find(root, "seqs");
    const dfc_value_t *rp = dfc_value_find(root, "replay");
    uint64_t gseq = 0, interval = 0, v = 0;
    if (dfc_value_type(root) != DFC_MAP || dfc_value_uint64(dfc_value_find(root, "v"), &v) ||
        v > DFC_WIRE_VERSION || dfc_value_type(ep) != DFC_STR ||
        dfc_value_uint64(dfc_value_find(root, "gseq"), &gseq)) {
        dfc_doc_destroy(&doc);
        dfc_drop(loop, DFC_MSG_BAD_ENVELOPE, len);
        return;
    }
    dfc_value_uint64(dfc_value_find(root, "interval"), &interval);
    size_t el = 0;
    const char *epoch = dfc_value_str(ep, &el);
    bool absurd = gseq > DFC_SEQ_MAX;
    for (size_t i = 0; dfc_value_type(seqs) == DFC_MAP && i < dfc_value_size(seqs); i++) {
        uint64_t s;
        if (dfc_value_uint64(dfc_value_item_at(seqs, i), &s) == 0 && s > DFC_SEQ_MAX)
            absurd = true;
    }
    if (el >= DFC_EPOCH_MAX || absurd) {
        dfc_doc_destroy(&doc);
        dfc_drop(loop, DFC_MSG_BAD_ENVELOPE, len);
        return;
    }
    STAT_ADD(loop, heartbeats, 1);
    L->hb_seen = true;
    L->hb_interval = interval;
    if (!L->replay_cfg && (rp == NULL || dfc_value_type(rp) == DFC_STR))
        learn_replay(loop, L, rp);
    /* the last messages of each topic: a higher seq means we missed them. At
       most GAP_TABLE_MAX topics (the table holds no more): gap_find is
       linear, and a forged heartbeat of a million topics must not cost a
       million table scans */
    for (size_t i = 0;
         dfc_value_type(seqs) == DFC_MAP && i < dfc_value_size(seqs) && i < GAP_TABLE_MAX; i++) {
        size_t tl;
        const char *t = dfc_value_str(dfc_value_key_at(seqs, i), &tl);
        uint64_t s;
        if (t && tl <= DFC_MAX_TOPIC && dfc_value_uint64(dfc_value_item_at(seqs, i), &s) == 0)
            count_gap(loop, epoch, el, t, tl, s, true);
    }
    if (!dfc_link_same_epoch(L, epoch, el)) {
        link_new_epoch(loop, L, epoch, el, gseq);
        L->hb_known = true;
    } else if (dfc_link_ordered(loop, L)) {
        if (gseq > L->live_last) {
            dfc_range_add(L, (L->live_last > L->hw ? L->live_last : L->hw) + 1, gseq);
            L->live_last = gseq;
        }
        if (dfc_fill_busy(L)) {
            dfc_fill_on(loop, L, DFC_FILL_EV_MISSING, gseq, NULL); /* raises the target */
            dfc_fill_on(loop, L, DFC_FILL_EV_HEARTBEAT, 0, NULL);
        } else if (gseq > L->hw) {
            dfc_log(DFC_LOG_INFO, "%s: heartbeat at gseq %llu, last seen %llu: filling",
                    L->endpoint, (unsigned long long)gseq, (unsigned long long)L->hw);
            dfc_fill_on(loop, L, DFC_FILL_EV_MISSING, gseq, NULL);
        }
    }
    L->hb_known = true;
    dfc_doc_destroy(&doc);
}

int
dfc_msg_read(void *s, zmq_msg_t parts[2], size_t *nparts, size_t *total)
{
    zmq_msg_init(&parts[0]);
    zmq_msg_init(&parts[1]);
    *nparts = 0;
    *total = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp, *m = *nparts < 2 ? &parts[*nparts] : &tmp;
        if (m == &tmp)
            zmq_msg_init(&tmp);
        if (zmq_msg_recv(m, s, *nparts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int err = errno;
            if (m == &tmp)
                zmq_msg_close(&tmp);
            zmq_msg_close(&parts[0]);
            zmq_msg_close(&parts[1]);
            if (*nparts == 0 && (err == EAGAIN || err == EINTR))
                return 0;
            errno = err;
            return -1;
        }
        more = zmq_msg_more(m);
        *total += zmq_msg_size(m);
        (*nparts)++;
        if (m == &tmp)
            zmq_msg_close(&tmp); /* extra frames are only counted */
    }
    return 1;
}

bool
dfc_msg_is(const zmq_msg_t *m, const char *name)
{
    size_t n = strlen(name);
    return zmq_msg_size((zmq_msg_t *)m) == n && memcmp(zmq_msg_data((zmq_msg_t *)m), name, n) == 0;
}

/*  One message from a bridge's SUB socket. Returns like dfc_msg_read. */
int
dfc_link_receive(dfc_loop_t *loop, link_t *L)
{
    zmq_msg_t parts[2];
    size_t nparts, total;
    int r = dfc_msg_read(L->sub, parts, &nparts, &total);
    if (r <= 0)
        return r;
    L->last_rx = dfc_mono_ms();
    L->strikes = 0;
    /* "_" topics are the bridge's own (heartbeat, status...): the contract
       says readers that do not know them ignore them */
    bool reserved =
        zmq_msg_size(&parts[0]) > 0 && ((const char *)zmq_msg_data(&parts[0]))[0] == '_';
    STAT_ADD(loop, received, 1);
    if (reserved)
        STAT_ADD(loop, reserved, 1);
    if (reserved) {
        if (nparts == 2 && dfc_msg_is(&parts[0], "_hb"))
            on_heartbeat(loop, L, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]));
        zmq_msg_close(&parts[0]);
        zmq_msg_close(&parts[1]);
        return 1;
    }
    dfc_msg_status_t st = DFC_MSG_BAD_FRAMES;
    dfc_event_t *ev = NULL;
    if (dfc_frames_check(nparts, zmq_msg_size(&parts[0])) == DFC_MSG_OK)
        ev = dfc_event_new_in(loop->blocks, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
                              zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), loop->cfg.max_frame,
                              &st);
    /* the event copied what it needs: the frames can go now */
    zmq_msg_close(&parts[0]);
    zmq_msg_close(&parts[1]);
    if (!ev) {
        dfc_drop(loop, st, total);
        return 1;
    }
    size_t tl, el;
    const char *topic = dfc_event_topic_n(ev, &tl), *epoch = dfc_event_epoch_n(ev, &el);
    /* an epoch that cannot be tracked, or a seq/gseq that cannot be right */
    if (el >= DFC_EPOCH_MAX || !numbers_plausible(loop, L, ev)) {
        dfc_event_unref(ev);
        dfc_drop(loop, DFC_MSG_BAD_ENVELOPE, total);
        return 1;
    }
    count_gap(loop, epoch, el, topic, tl, dfc_event_seq(ev), false);
    on_live(loop, L, ev);
    dfc_event_unref(ev);
    return 1;
}

/*  A socket monitor on a SUB: connects and disconnects become counters and
    log lines, so a dead link or a peer dropped by ZMQ_MAXMSGSIZE is visible;
    failed CURVE handshakes are retried (dfc_monitor.c). Returns the PAIR end
    to poll, or NULL (then we run without it). */
static void *
open_monitor(dfc_loop_t *loop, void *sub)
{
    void *pair = dfc_monitor_open(loop->zctx, sub,
                                  ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED |
                                      ZMQ_EVENT_CONNECT_RETRIED | DFC_HS_EVENTS);
    if (!pair)
        dfc_log(DFC_LOG_WARN, "no socket monitor: connects/disconnects not counted");
    return pair;
}

/*  libzmq 4.3 treats a message above ZMQ_MAXMSGSIZE as a protocol error and
    then drops the connection WITHOUT reconnecting: the SUB would go deaf for
    good. After an ordinary connection loss libzmq reconnects by itself and
    says so at once (ZMQ_EVENT_CONNECT_RETRIED right after the disconnect).
    So a disconnect of the bridge's endpoint arms RELINK_GRACE_MS; a retry or
    a connect event disarms it, and only a link libzmq gave up gets
    zmq_disconnect + zmq_connect from us. Never on a live pipe: disconnecting
    a SUB whose pipe still holds messages of the dead peer makes the next
    multipart read abort inside libzmq (`!_more` in fq.cpp, libzmq #2163 and
    #3663; seen in the polyglot test after a kill -9 of the bridge). The
    monitor reports the address as connected, so this works for endpoints
    given in that form (tcp://127.0.0.1:5556). */
#define RELINK_GRACE_MS 250

static void
relink_arm(link_t *L, const char *addr)
{
    if (strcmp(L->endpoint, addr) != 0) {
        dfc_log(DFC_LOG_WARN,
                "disconnected from %s: not reconnected by us (connect it by "
                "its numeric address for that)",
                addr);
        return;
    }
    /* a refused handshake's backoff (armed just before) is kept */
    int64_t at = dfc_mono_ms() + RELINK_GRACE_MS;
    if (at > L->relink_at)
        L->relink_at = at;
}

static void
relink(link_t *L)
{
    bool refused = L->hs.retry_at != 0; /* logged by dfc_hs_event, rate-limited */
    L->relink_at = 0;
    L->hs.retry_at = 0;
    zmq_disconnect(L->sub, L->endpoint); /* may already be gone: ignore */
    if (zmq_connect(L->sub, L->endpoint) != 0)
        dfc_log(DFC_LOG_ERROR, "cannot reconnect %s: %s", L->endpoint, zmq_strerror(errno));
    else
        dfc_log(refused ? DFC_LOG_DEBUG : DFC_LOG_WARN,
                "disconnected from %s and not reconnected by ZeroMQ: reconnecting", L->endpoint);
}

/*  A handshake event of the SUB's endpoint: a failure counts in
    auth_failures and arms the reconnect after the backoff (libzmq never
    reconnects after a denial; a CONNECT_RETRIED that follows disarms it, as
    for any disconnect: libzmq retries a wrong key by itself). True when it
    was one. */
static bool
on_handshake(dfc_loop_t *loop, link_t *L, uint16_t id, const char *ep)
{
    if (strcmp(L->endpoint, ep) != 0)
        return false;
    dfc_hs_result_t r = dfc_hs_event(&L->hs, id, L->endpoint, dfc_mono_ms());
    if (r == DFC_HS_FAILED) {
        STAT_ADD(loop, auth_failures, 1);
        L->relink_at = L->hs.retry_at;
    }
    return r != DFC_HS_NONE;
}

/*  Reads the monitor's events: frame 1 = uint16 event + uint32 value,
    frame 2 = the endpoint. */
void
dfc_link_read_monitor(dfc_loop_t *loop, link_t *L)
{
    for (int i = 0; i < 64; i++) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, L->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t id = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&id, zmq_msg_data(&ev), 2);
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        char ep[256] = "";
        if (more) {
            zmq_msg_init(&addr);
            if (zmq_msg_recv(&addr, L->mon, 0) >= 0) {
                size_t n =
                    zmq_msg_size(&addr) < sizeof ep - 1 ? zmq_msg_size(&addr) : sizeof ep - 1;
                memcpy(ep, zmq_msg_data(&addr), n);
                ep[n] = '\0';
            }
            zmq_msg_close(&addr);
        }
        if (on_handshake(loop, L, id, ep))
            continue;
        if (id == ZMQ_EVENT_CONNECTED)
            STAT_ADD(loop, connects, 1);
        else if (id == ZMQ_EVENT_DISCONNECTED)
            STAT_ADD(loop, disconnects, 1);
        if (id == ZMQ_EVENT_CONNECTED)
            dfc_log(DFC_LOG_INFO, "connected to %s", ep);
        if (id == ZMQ_EVENT_DISCONNECTED)
            relink_arm(L, ep);
        else if ((id == ZMQ_EVENT_CONNECTED || id == ZMQ_EVENT_CONNECT_RETRIED) &&
                 strcmp(L->endpoint, ep) == 0)
            L->relink_at = L->hs.retry_at = 0; /* libzmq is on it */
    }
}

static void *
open_sub(dfc_loop_t *loop)
{
    void *sub = zmq_socket(loop->zctx, ZMQ_SUB);
    if (!sub)
        return NULL;
    int hwm = loop->cfg.rcvhwm, linger = 0;
    /* libzmq drops bigger frames on tcp before we see them; inproc is
       checked again in dfc_event_new */
    int64_t maxsize = loop->cfg.max_frame > (size_t)INT64_MAX - 4096
                          ? -1
                          : (int64_t)loop->cfg.max_frame + DFC_MAX_TOPIC;
    if (zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(sub, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize) ||
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0) || dfc_curve_apply(&loop->curve, sub)) {
        zmq_close(sub);
        return NULL;
    }
    return sub;
}

void
dfc_link_close_sub(link_t *L)
{
    if (L->mon) {
        zmq_socket_monitor(L->sub, NULL, 0);
        zmq_close(L->mon);
        L->mon = NULL;
    }
    if (L->sub)
        zmq_close(L->sub);
    L->sub = NULL;
}

/*  Opens the link's SUB (and monitor) and connects it. */
int
dfc_link_open_sub(dfc_loop_t *loop, link_t *L)
{
    L->sub = open_sub(loop);
    if (!L->sub) {
        dfc_log(DFC_LOG_ERROR, "cannot open a SUB socket: %s", zmq_strerror(errno));
        return DFC_EZMQ;
    }
    L->mon = open_monitor(loop, L->sub);
    L->last_rx = dfc_mono_ms();
    L->relink_at = L->hs.retry_at = 0; /* a new socket: nothing to connect again */
    if (zmq_connect(L->sub, L->endpoint) != 0) {
        dfc_log(DFC_LOG_ERROR, "cannot connect %s: %s", L->endpoint, zmq_strerror(errno));
        return DFC_OK; /* counted as a dead link: stays silent */
    }
    dfc_log(DFC_LOG_DEBUG, "connected %s", L->endpoint);
    return DFC_OK;
}

/*  Staleness and replay deadlines, for every bridge. */
void
dfc_link_timers(dfc_loop_t *loop, link_t *L, int64_t now)
{
    int64_t stale = loop->cfg.stale_ms > 0 ? loop->cfg.stale_ms
                    : loop->cfg.stale_ms == 0 && L->hb_interval
                        ? 3 * (int64_t)(L->hb_interval < INT32_MAX ? L->hb_interval : INT32_MAX)
                        : 0;
    /* a bridge that stays silent (dead) is retried less and less often:
       3 x interval, then x2 per attempt up to x32 */
    if (stale && L->sub && now - L->last_rx > stale << (L->strikes < 5 ? L->strikes : 5)) {
        dfc_log(L->strikes ? DFC_LOG_DEBUG : DFC_LOG_WARN,
                "%s: no message and no heartbeat for %lld ms: new SUB socket", L->endpoint,
                (long long)(now - L->last_rx));
        dfc_link_close_sub(L);
        dfc_link_open_sub(loop, L);
        L->strikes++;
        STAT_ADD(loop, reconnects, 1);
    }
    if (L->relink_at && L->sub && now >= L->relink_at)
        relink(L);
    dfc_dealer_tick(loop, L, now);
    dfc_fill_on(loop, L, DFC_FILL_EV_TICK, (uint64_t)now, NULL);
}
