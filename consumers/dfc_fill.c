/*  dfc_fill: the gap filler of one link: asks the replay endpoint for what is
    missing, holds live events meanwhile and releases them in gseq order, and
    gives up (counted lost) when replay cannot give it. Receiver thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_loop_priv.h"

void
dfc_fill_close_dealer(link_t *L)
{
    if (L->dealer)
        zmq_close(L->dealer);
    L->dealer = NULL;
    free(L->dealer_ep);
    L->dealer_ep = NULL;
}

static bool
dealer_open(dfc_loop_t *loop, link_t *L)
{
    if (L->dealer && L->dealer_ep && strcmp(L->dealer_ep, L->replay) == 0)
        return true;
    dfc_fill_close_dealer(L);
    L->dealer = zmq_socket(loop->zctx, ZMQ_DEALER);
    int linger = 0, hwm = 0; /* replies are bounded by the limit: never drop them */
    int64_t maxsize = (int64_t)loop->cfg.max_frame + DFC_MAX_TOPIC;
    if (!L->dealer || zmq_setsockopt(L->dealer, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(L->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(L->dealer, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize) ||
        zmq_connect(L->dealer, L->replay) != 0) {
        dfc_log(DFC_LOG_ERROR, "replay %s: %s", L->replay, zmq_strerror(errno));
        if (L->dealer)
            zmq_close(L->dealer);
        L->dealer = NULL;
        return false;
    }
    L->dealer_ep = strdup(L->replay);
    return true;
}

/*  Gives up on what the fill still misses: counted lost, then the held live
    events go out. */
void
dfc_fill_give_up(dfc_loop_t *loop, link_t *L, const char *why)
{
    /* Without an answer nothing confirms a heartbeat's claim: trust it only
       DFC_GSEQ_AHEAD beyond what was received (see gseq_plausible). */
    uint64_t proof = (L->seen > L->hw ? L->seen : L->hw);
    if (L->target > proof && L->target - proof > DFC_GSEQ_AHEAD)
        L->target = proof + DFC_GSEQ_AHEAD;
    uint64_t missing = L->target > L->hw ? L->target - L->hw : 0;
    if (missing) {
        dfc_stat_add(loop, &loop->stats.lost, missing);
        dfc_log(DFC_LOG_WARN, "%s: %llu message(s) of epoch %s lost (gseq %llu..%llu): %s",
                L->endpoint, (unsigned long long)missing, L->epoch, (unsigned long long)L->hw + 1,
                (unsigned long long)L->target, why);
        L->hw = L->target;
    }
    /* everything held goes out now, holes counted lost: asking again for
       them would fail the same way (and recurse) */
    dfc_fill_release(loop, L, true);
}

/*  Answers keep asking for more without delivering anything (a "more"
    that does not advance, a "gone" whose oldest walks forward): asking
    again would never end. */
static void
fill_stalled(dfc_loop_t *loop, link_t *L)
{
    dfc_stat_add(loop, &loop->stats.replay_stalls, 1);
    dfc_fill_give_up(loop, L, "the replay answers make no progress");
}

void
dfc_fill_send(dfc_loop_t *loop, link_t *L)
{
    L->sent = false;
    L->answer_events = 0;
    L->deadline = dfc_mono_ms() + loop->cfg.replay_timeout_ms;
    if (!L->replay) {
        /* a heartbeat said the bridge has no replay: nothing to wait for */
        if (L->hb_seen)
            dfc_fill_give_up(loop, L, "the bridge has no replay endpoint");
        return; /* else the first heartbeat may name one; the deadline bounds the wait */
    }
    if (!dealer_open(loop, L)) {
        dfc_fill_give_up(loop, L, "cannot open the replay socket");
        return;
    }
    unsigned char buf[512];
    size_t n = dfc_replay_request(buf, sizeof buf, ++L->req, L->epoch, L->epoch_len, L->hw + 1,
                                  REPLAY_LIMIT, NULL, 0);
    if (n == 0 || zmq_send(L->dealer, buf, n, ZMQ_DONTWAIT) != (int)n) {
        dfc_log(DFC_LOG_WARN, "replay %s: cannot send the request", L->replay);
        return; /* the deadline retries */
    }
    L->sent = true;
    dfc_stat_add(loop, &loop->stats.replay_requests, 1);
    dfc_log(DFC_LOG_DEBUG, "replay %s: from gseq %llu (epoch %s)", L->replay,
            (unsigned long long)L->hw + 1, L->epoch);
}

void
dfc_fill_start(dfc_loop_t *loop, link_t *L, uint64_t target)
{
    if (L->filling) {
        if (target > L->target)
            L->target = target;
        return;
    }
    L->filling = true;
    L->target = target;
    L->tries = 0;
    L->stalls = 0;
    dfc_fill_send(loop, L);
}

/*  Releases held events in gseq order: older ones are dropped (replay gave
    them), the next one goes out, a hole starts another fill (force: hand
    everything out, holes counted lost). */
void
dfc_fill_release(dfc_loop_t *loop, link_t *L, bool force)
{
    L->filling = false;
    size_t i = 0;
    for (; i < L->nheld; i++) {
        dfc_event_t *ev = L->held[i];
        uint64_t g = dfc_event_gseq(ev);
        if (g > L->hw + 1 && !force)
            break;
        if (g > L->hw) {
            if (g > L->hw + 1)
                dfc_stat_add(loop, &loop->stats.lost, g - L->hw - 1);
            L->hw = g;
            dfc_deliver(loop, ev);
        }
        dfc_event_unref(ev);
    }
    if (i && i < L->nheld)
        memmove(L->held, L->held + i, (L->nheld - i) * sizeof *L->held);
    L->nheld -= i;
    if (L->nheld)
        dfc_fill_start(loop, L, dfc_event_gseq(L->held[0]) - 1);
}

void
dfc_fill_hold(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    uint64_t g = dfc_event_gseq(ev);
    if (L->nheld == loop->cfg.max_held) {
        /* too many: let replay bring it (the journal has it) */
        if (g > L->target)
            L->target = g;
        dfc_stat_add(loop, &loop->stats.held_dropped, 1);
        return;
    }
    if (L->nheld == L->held_cap) {
        size_t cap = L->held_cap ? L->held_cap * 2 : 64;
        if (cap > loop->cfg.max_held)
            cap = loop->cfg.max_held;
        dfc_event_t **grown = dfc_realloc(L->held, cap * sizeof *grown);
        if (!grown) {
            if (g > L->target)
                L->target = g;
            pthread_mutex_lock(&loop->mu);
            loop->stats.held_dropped++;
            loop->stats.alloc_failures++;
            pthread_mutex_unlock(&loop->mu);
            dfc_log(DFC_LOG_ERROR, "out of memory: live gseq %llu not held (replay brings it)",
                    (unsigned long long)g);
            return;
        }
        L->held = grown;
        L->held_cap = cap;
    }
    dfc_event_ref(ev);
    L->held[L->nheld++] = ev;
}

/*  "_end": {v, req, status, count, last_gseq, more, head_gseq, oldest_gseq,
    epoch, code, error}. */
static void
on_replay_end(dfc_loop_t *loop, link_t *L, const void *body, size_t len)
{
    dfc_doc_t *doc = NULL;
    if (dfc_doc_parse(body, len, &doc) != DFC_OK) {
        dfc_log(DFC_LOG_WARN, "replay %s: malformed end marker", L->replay);
        return;
    }
    const dfc_value_t *root = dfc_doc_root(doc);
    uint64_t req = 0, last = 0, oldest = 0;
    const char *status = dfc_value_cstr(dfc_value_find(root, "status"));
    const char *code = dfc_value_cstr(dfc_value_find(root, "code"));
    const char *err = dfc_value_cstr(dfc_value_find(root, "error"));
    bool more = dfc_value_bool(dfc_value_find(root, "more"));
    uint64_t head = 0;
    bool has_head = dfc_value_uint64(dfc_value_find(root, "head_gseq"), &head) == 0;
    dfc_value_uint64(dfc_value_find(root, "last_gseq"), &last);
    dfc_value_uint64(dfc_value_find(root, "oldest_gseq"), &oldest);
    if (dfc_value_uint64(dfc_value_find(root, "req"), &req) || req != L->req || !L->filling) {
        dfc_doc_destroy(&doc); /* an answer to a request we gave up */
        return;
    }
    /* A marker that contradicts itself cannot be right: ignored, so the
       deadline asks again (and gives up after REPLAY_TRIES). */
    if (last > DFC_SEQ_MAX || head > DFC_SEQ_MAX || oldest > DFC_SEQ_MAX ||
        (has_head && last > head)) {
        dfc_doc_destroy(&doc);
        dfc_drop(loop, DFC_MSG_BAD_ENVELOPE, len);
        return;
    }
    L->sent = false;
    bool progress = L->answer_events > 0;
    if (progress)
        L->stalls = 0;
    if (status && strcmp(status, "ok") == 0) {
        /* whatever it sent and we could not use (malformed) is lost */
        if (last > L->hw) {
            dfc_stat_add(loop, &loop->stats.lost, last - L->hw);
            L->hw = last;
        }
        if (more && !progress && ++L->stalls >= REPLAY_STALLS) {
            fill_stalled(loop, L);
        } else if (more) {
            L->tries = 0;
            dfc_fill_send(loop, L);
        } else {
            /* The answer runs to the journal's head: a target above both
               the head and every gseq received was claimed (by a heartbeat)
               and cannot be right. Not a loss; the mark stays below it. */
            uint64_t confirmed = has_head && head > L->seen ? head : L->seen;
            if (confirmed < L->hw)
                confirmed = L->hw;
            if (L->target > confirmed) {
                dfc_log(DFC_LOG_WARN,
                        "%s: gseq %llu was announced but replay's head is %llu: dropped as a "
                        "bad envelope",
                        L->endpoint, (unsigned long long)L->target, (unsigned long long)head);
                dfc_drop_count(loop, DFC_MSG_BAD_ENVELOPE);
                L->target = confirmed;
                if (L->live_last > confirmed)
                    L->live_last = confirmed;
            }
            dfc_fill_give_up(loop, L, "not in the journal");
        }
    } else {
        dfc_stat_add(loop, &loop->stats.replay_errors, 1);
        if (code && strcmp(code, "gone") == 0 && oldest > L->hw + 1) {
            uint64_t upto = oldest - 1 < L->target ? oldest - 1 : L->target;
            uint64_t target = L->target;
            L->target = upto;
            char why[64];
            snprintf(why, sizeof why, "gone (oldest retained %llu)", (unsigned long long)oldest);
            /* counted lost up to oldest-1, then go on from there */
            uint64_t missing = upto - L->hw;
            dfc_stat_add(loop, &loop->stats.lost, missing);
            dfc_log(DFC_LOG_WARN, "%s: %llu message(s) lost: %s", L->endpoint,
                    (unsigned long long)missing, why);
            L->hw = upto;
            L->target = target;
            L->tries = 0;
            if (!progress && ++L->stalls >= REPLAY_STALLS)
                fill_stalled(loop, L);
            else
                dfc_fill_send(loop, L);
        } else {
            char why[256];
            snprintf(why, sizeof why, "replay error %s: %s", code ? code : "?", err ? err : "");
            dfc_fill_give_up(loop, L, why);
        }
    }
    dfc_doc_destroy(&doc);
}

/*  One replayed message (same framing as published). */
static void
on_replayed(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    uint64_t g = dfc_event_gseq(ev);
    L->deadline = dfc_mono_ms() + loop->cfg.replay_timeout_ms; /* it is answering */
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    if (!L->filling || !dfc_link_same_epoch(L, epoch, el) || g <= L->hw)
        return;
    if (g > L->hw + 1)
        dfc_stat_add(loop, &loop->stats.lost, g - L->hw - 1); /* the journal has a hole */
    L->hw = g;
    if (g > L->seen)
        L->seen = g;
    L->answer_events++;
    pthread_mutex_lock(&loop->mu);
    loop->stats.replayed++;
    pthread_mutex_unlock(&loop->mu);
    if (dfc_range_hit(L, g))
        dfc_stat_add(loop, &loop->stats.gaps_filled, 1);
    dfc_deliver(loop, ev);
}

/*  One message from a bridge's replay DEALER. */
int
dfc_fill_receive(dfc_loop_t *loop, link_t *L)
{
    zmq_msg_t parts[2];
    size_t nparts, total;
    int r = dfc_msg_read(L->dealer, parts, &nparts, &total);
    if (r <= 0)
        return r;
    if (nparts == 2 && dfc_msg_is(&parts[0], "_end")) {
        on_replay_end(loop, L, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]));
    } else {
        dfc_msg_status_t st = DFC_MSG_BAD_FRAMES;
        dfc_event_t *ev = NULL;
        if (dfc_frames_check(nparts, zmq_msg_size(&parts[0])) == DFC_MSG_OK)
            ev = dfc_event_new(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
                               zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]),
                               loop->cfg.max_frame, &st);
        if (ev && (dfc_event_seq(ev) > DFC_SEQ_MAX || dfc_event_gseq(ev) > DFC_SEQ_MAX)) {
            dfc_event_unref(ev);
            ev = NULL;
            st = DFC_MSG_BAD_ENVELOPE;
        }
        if (ev) {
            on_replayed(loop, L, ev);
            dfc_event_unref(ev);
        } else {
            dfc_drop(loop, st, total);
        }
    }
    zmq_msg_close(&parts[0]);
    zmq_msg_close(&parts[1]);
    return 1;
}
