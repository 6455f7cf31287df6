/*  dfc_fill: the gap filler of one link, as ONE state (dfc_fill_state_t) and
    ONE transition function (dfc_fill_on): it asks the replay endpoint for
    what is missing, holds live events meanwhile, and on the end of the fill
    (done, error, no progress, no answer) counts what it could not get as lost
    and releases what it held in gseq order. Receiver thread only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dfc_loop_priv.h"

/*  What a transition leads to; handled by the loop at the end of
    dfc_fill_on, so that no step calls back into another. */
typedef enum { ACT_NONE, ACT_SEND, ACT_GIVE_UP } act_t;

bool
dfc_fill_busy(const link_t *L)
{
    return L->fill.state != DFC_FILL_IDLE;
}

static void
close_dealer(dfc_fill_t *f)
{
    if (f->dealer)
        dfc_monitor_close(f->dealer, &f->dealer_mon);
    if (f->dealer)
        zmq_close(f->dealer);
    f->dealer = NULL;
    free(f->dealer_ep);
    f->dealer_ep = NULL;
}

void
dfc_fill_destroy(link_t *L)
{
    dfc_fill_t *f = &L->fill;
    close_dealer(f);
    for (size_t i = 0; i < f->nheld; i++)
        dfc_event_unref(f->held[i]);
    free(f->held);
    memset(f, 0, sizeof *f);
}

static bool
dealer_open(dfc_loop_t *loop, link_t *L)
{
    dfc_fill_t *f = &L->fill;
    if (f->dealer && f->dealer_ep && strcmp(f->dealer_ep, L->replay) == 0)
        return true;
    close_dealer(f);
    f->dealer = dfc_replay_open(loop->zctx, L->replay, loop->cfg.max_frame, &loop->curve,
                                &f->dealer_mon);
    f->dealer_ep = f->dealer ? strdup(L->replay) : NULL;
    if (f->dealer && !f->dealer_ep)
        close_dealer(f); /* out of memory: like a socket error */
    return f->dealer != NULL;
}

/*  Sends the request for hw+1... Returns ACT_GIVE_UP with *why when there is
    nothing to wait for; the state is ASKED when the request went out,
    WAITING when the deadline has to ask again. */
static act_t
fill_send(dfc_loop_t *loop, link_t *L, const char **why)
{
    dfc_fill_t *f = &L->fill;
    f->state = DFC_FILL_WAITING;
    f->answer_events = 0;
    f->answer_msgs = 0;
    f->answer_dropped = false;
    f->deadline = dfc_mono_ms() + loop->cfg.replay_timeout_ms;
    if (!L->replay) {
        /* a heartbeat said the bridge has no replay: nothing to wait for;
           else the first heartbeat may name one, the deadline bounds the wait */
        *why = "the bridge has no replay endpoint";
        return L->hb_seen ? ACT_GIVE_UP : ACT_NONE;
    }
    if (!dealer_open(loop, L)) {
        *why = "cannot open the replay socket";
        return ACT_GIVE_UP;
    }
    unsigned char buf[512];
    size_t n = dfc_replay_request(buf, sizeof buf, ++f->req, L->epoch, L->epoch_len, L->hw + 1,
                                  REPLAY_LIMIT, NULL, 0);
    if (n == 0 || zmq_send(f->dealer, buf, n, ZMQ_DONTWAIT) != (int)n) {
        dfc_log(DFC_LOG_WARN, "replay %s: cannot send the request", L->replay);
        return ACT_NONE; /* the deadline retries */
    }
    f->state = DFC_FILL_ASKED;
    STAT_ADD(loop, replay_requests, 1);
    dfc_log(DFC_LOG_DEBUG, "replay %s: from gseq %llu (epoch %s)", L->replay,
            (unsigned long long)L->hw + 1, L->epoch);
    return ACT_NONE;
}

/*  How many of the gseqs in (a, b] of L's epoch are lost: all but those the
    checkpoint recorded as handled (handled before a restart; skipped when
    replayed, CONTRACT.md section 11). Every bulk count of lost goes here. */
static uint64_t
lost_in(dfc_loop_t *loop, const link_t *L, uint64_t a, uint64_t b)
{
    return b > a ? b - a - dfc_wm_done_in(loop, L->epoch, L->epoch_len, a, b) : 0;
}

static int
held_cmp(const void *a, const void *b)
{
    uint64_t x = dfc_event_gseq(*(dfc_event_t *const *)a),
             y = dfc_event_gseq(*(dfc_event_t *const *)b);
    return x < y ? -1 : x > y;
}

/*  The end of a fill: every held event goes out in gseq order, the holes
    between them counted lost (asking again for them would fail the same
    way; lost_in: not the gseqs a checkpoint recorded), then what is still
    missing up to the target is counted lost (see
    "Numbers that cannot be right" for the cap). Held events first: the
    target may have been raised past one of them (a heartbeat, a confirmed
    head that includes it), and it was received, so it is handed out, never
    counted lost (conformance scenario unconfirmed_heartbeat). */
static void
fill_give_up(dfc_loop_t *loop, link_t *L, const char *why)
{
    dfc_fill_t *f = &L->fill;
    /* Without an answer nothing confirms a heartbeat's claim: trust it only
       DFC_GSEQ_AHEAD beyond what was received. */
    uint64_t proof = L->seen > L->hw ? L->seen : L->hw;
    if (f->target > proof && f->target - proof > DFC_GSEQ_AHEAD)
        f->target = proof + DFC_GSEQ_AHEAD;
    f->state = DFC_FILL_IDLE;
    uint64_t first = L->hw + 1, missing = 0;
    if (f->nheld > 1)
        qsort(f->held, f->nheld, sizeof *f->held, held_cmp);
    for (size_t i = 0; i < f->nheld; i++) {
        dfc_event_t *ev = f->held[i];
        uint64_t g = dfc_event_gseq(ev);
        if (g > L->hw) {
            missing += lost_in(loop, L, L->hw, g - 1);
            L->hw = g;
            dfc_deliver(loop, ev);
        }
        dfc_event_unref(ev);
    }
    f->nheld = 0;
    f->held_bytes = 0;
    if (f->target > L->hw) {
        missing += lost_in(loop, L, L->hw, f->target);
        L->hw = f->target;
    }
    if (missing) {
        STAT_ADD(loop, lost, missing);
        dfc_log(DFC_LOG_WARN, "%s: %llu message(s) of epoch %s lost (gseq %llu..%llu): %s",
                L->endpoint, (unsigned long long)missing, L->epoch, (unsigned long long)first,
                (unsigned long long)L->hw, why);
    }
}

/*  Whether a gseq in (lo, seen) was neither taken nor is held: a hole
    below the highest gseq received. */
static bool
missing_beyond(const link_t *L, uint64_t lo)
{
    const dfc_fill_t *f = &L->fill;
    if (L->seen <= lo + 1)
        return false;
    uint64_t have = 0;
    for (size_t i = 0; i < f->nheld; i++) {
        uint64_t g = dfc_event_gseq(f->held[i]);
        if (g > lo && g < L->seen)
            have++;
    }
    return have < L->seen - lo - 1;
}

/*  An end marker of the request in flight: what to do next. */
static act_t
on_answer(dfc_loop_t *loop, link_t *L, const dfc_replay_end_t *end, const char **why, char *whybuf,
          size_t whysize)
{
    dfc_fill_t *f = &L->fill;
    f->state = DFC_FILL_WAITING;
    /* progress = the answer delivered events: a last_gseq or oldest_gseq
       that moves without any (a peer can move them forever) is not */
    bool progress = f->answer_events > 0;
    if (progress)
        f->stalls = 0;
    if (end->ok) {
        bool more = end->more;
        if (end->last_gseq > L->hw) {
            if (f->answer_dropped)
                more = true; /* it sent more than we took (replay_unexpected): ask for the
                                rest rather than believe its last_gseq */
            else {
                /* whatever it sent and we could not use (malformed) is lost */
                STAT_ADD(loop, lost, lost_in(loop, L, L->hw, end->last_gseq));
                L->hw = end->last_gseq;
            }
        }
        if (more && !progress && ++f->stalls >= REPLAY_STALLS) {
            STAT_ADD(loop, replay_stalls, 1);
            *why = "the replay answers make no progress";
            return ACT_GIVE_UP;
        }
        if (more) {
            f->tries = 0;
            return ACT_SEND;
        }
        /* The answer describes the journal when the request was read: up to
           head_gseq (else last_gseq). Events received live beyond it (held)
           show that the journal moved on during the fill: a gseq missing
           below the highest received and beyond what the answer covered is
           asked again from hw + 1, not counted lost (conformance scenario
           fill_moved_head); an answer without events counts a stall, as
           above. */
        uint64_t covered = end->has_head ? end->head_gseq : end->last_gseq;
        if (missing_beyond(L, covered > L->hw ? covered : L->hw)) {
            if (!progress && ++f->stalls >= REPLAY_STALLS) {
                STAT_ADD(loop, replay_stalls, 1);
                *why = "the replay answers make no progress";
                return ACT_GIVE_UP;
            }
            f->tries = 0;
            return ACT_SEND;
        }
        /* The answer runs to the journal's head: a target above both the
           head and every gseq received was claimed (by a heartbeat) and
           cannot be right. Not a loss; the mark stays below it. */
        uint64_t confirmed = end->has_head && end->head_gseq > L->seen ? end->head_gseq : L->seen;
        if (confirmed < L->hw)
            confirmed = L->hw;
        if (f->target > confirmed) {
            dfc_log(DFC_LOG_WARN,
                    "%s: gseq %llu was announced but replay's head is %llu: dropped as a bad "
                    "envelope",
                    L->endpoint, (unsigned long long)f->target, (unsigned long long)end->head_gseq);
            dfc_drop_count(loop, DFC_MSG_BAD_ENVELOPE);
            f->target = confirmed;
            if (L->live_last > confirmed)
                L->live_last = confirmed;
        }
        *why = "not in the journal";
        return ACT_GIVE_UP;
    }
    STAT_ADD(loop, replay_errors, 1);
    /* gone: older than retention, readable again from oldest_gseq; damaged:
       lost_from..lost_to cannot be read, what follows can. Either way the
       range is counted lost (but for the gseqs a checkpoint recorded as
       handled) and the fill goes on after it. */
    uint64_t resume = 0;
    if (strcmp(end->code, "gone") == 0)
        resume = end->oldest_gseq;
    else if (strcmp(end->code, "damaged") == 0 && end->has_lost)
        resume = end->lost_to + 1;
    if (resume > L->hw + 1) {
        uint64_t upto = resume - 1 < f->target ? resume - 1 : f->target;
        uint64_t missing = lost_in(loop, L, L->hw, upto);
        STAT_ADD(loop, lost, missing);
        dfc_log(DFC_LOG_WARN, "%s: %llu message(s) lost: %s (readable again from %llu)",
                L->endpoint, (unsigned long long)missing, end->code, (unsigned long long)resume);
        if (upto > L->hw)
            L->hw = upto;
        f->tries = 0;
        if (!progress && ++f->stalls >= REPLAY_STALLS) {
            STAT_ADD(loop, replay_stalls, 1);
            *why = "the replay answers make no progress";
            return ACT_GIVE_UP;
        }
        return ACT_SEND;
    }
    /* busy, io_error, internal: the bridge cannot answer now, the data is
       not known to be lost (CONTRACT.md §9): the same request again after
       a backoff (the TICK past the deadline sends it from WAITING), at most
       REPLAY_TRIES in all, then give up like for a mute endpoint. */
    if ((strcmp(end->code, "busy") == 0 || strcmp(end->code, "io_error") == 0 ||
         strcmp(end->code, "internal") == 0) &&
        ++f->tries < REPLAY_TRIES) {
        int64_t wait = (int64_t)REPLAY_BACKOFF_MS << (f->tries - 1);
        f->deadline = dfc_mono_ms() + wait;
        dfc_log(DFC_LOG_WARN, "replay %s: %s (%s): asking again in %lld ms", L->replay, end->code,
                end->error, (long long)wait);
        return ACT_NONE;
    }
    snprintf(whybuf, whysize, "replay error %s: %s", end->code[0] ? end->code : "?", end->error);
    *why = whybuf;
    return ACT_GIVE_UP;
}

void
dfc_fill_on(dfc_loop_t *loop, link_t *L, dfc_fill_ev_t ev, uint64_t arg,
            const dfc_replay_end_t *end)
{
    dfc_fill_t *f = &L->fill;
    act_t act = ACT_NONE;
    const char *why = "";
    char whybuf[320];
    switch (ev) {
    case DFC_FILL_EV_MISSING:
        if (f->state == DFC_FILL_IDLE) {
            f->target = arg;
            f->tries = 0;
            f->stalls = 0;
            act = ACT_SEND;
        } else if (arg > f->target) {
            f->target = arg;
        }
        break;
    case DFC_FILL_EV_HEARTBEAT:
        if (f->state == DFC_FILL_WAITING)
            act = ACT_SEND; /* it may have been waiting for the endpoint */
        break;
    case DFC_FILL_EV_TICK:
        if (f->state == DFC_FILL_IDLE || (int64_t)arg <= f->deadline)
            break;
        if (f->state == DFC_FILL_WAITING) {
            act = L->replay ? ACT_SEND : ACT_GIVE_UP;
            why = "no replay endpoint known";
            break;
        }
        STAT_ADD(loop, replay_errors, 1);
        close_dealer(f); /* a late answer to the old request must not mix in */
        if (++f->tries < REPLAY_TRIES) {
            dfc_log(DFC_LOG_WARN, "replay %s: no answer in %d ms, asking again", L->replay,
                    loop->cfg.replay_timeout_ms);
            act = ACT_SEND;
        } else {
            act = ACT_GIVE_UP;
            why = "the replay endpoint does not answer";
        }
        break;
    case DFC_FILL_EV_ANSWER:
        if (f->state == DFC_FILL_ASKED)
            act = on_answer(loop, L, end, &why, whybuf, sizeof whybuf);
        break;
    case DFC_FILL_EV_EPOCH:
        /* what the old epoch still missed stays counted in gaps */
        if (f->state != DFC_FILL_IDLE || f->nheld) {
            f->target = L->hw;
            act = ACT_GIVE_UP;
            why = "new epoch";
        }
        close_dealer(f); /* stale replies of the old epoch must not reach the new one */
        break;
    case DFC_FILL_EV_STOP:
        /* held events are not handled: the checkpoint stays below them */
        for (size_t i = 0; i < f->nheld; i++)
            dfc_event_unref(f->held[i]);
        f->nheld = 0;
        f->held_bytes = 0;
        close_dealer(f);
        f->state = DFC_FILL_IDLE;
        break;
    }
    while (act != ACT_NONE) {
        if (act == ACT_SEND) {
            act = fill_send(loop, L, &why);
        } else {
            fill_give_up(loop, L, why);
            act = ACT_NONE;
        }
    }
}

void
dfc_fill_hold(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    dfc_fill_t *f = &L->fill;
    uint64_t g = dfc_event_gseq(ev);
    size_t size = dfc_event_wire_size(ev);
    if (f->nheld == loop->cfg.max_held || size > loop->cfg.max_held_bytes - f->held_bytes) {
        /* too many or too big: let replay bring it (the journal has it) */
        if (g > f->target)
            f->target = g;
        STAT_ADD(loop, held_dropped, 1);
        return;
    }
    if (f->nheld == f->held_cap) {
        size_t cap = f->held_cap ? f->held_cap * 2 : 64;
        if (cap > loop->cfg.max_held)
            cap = loop->cfg.max_held;
        dfc_event_t **grown = dfc_realloc(f->held, cap * sizeof *grown);
        if (!grown) {
            if (g > f->target)
                f->target = g;
            STAT_ADD(loop, held_dropped, 1);
            STAT_ADD(loop, alloc_failures, 1);
            dfc_log(DFC_LOG_ERROR, "out of memory: live gseq %llu not held (replay brings it)",
                    (unsigned long long)g);
            return;
        }
        f->held = grown;
        f->held_cap = cap;
    }
    dfc_event_ref(ev);
    f->held[f->nheld++] = ev;
    f->held_bytes += size;
}

/*  A message from the replay socket that answers nothing asked: dropped
    unread, counted; the first since the last request sent logged at WARN. */
static void
unexpected(dfc_loop_t *loop, link_t *L, const char *why)
{
    dfc_fill_t *f = &L->fill;
    STAT_ADD(loop, replay_unexpected, 1);
    bool first = !f->answer_dropped; /* reset by each request sent */
    f->answer_dropped = true;
    dfc_log(first ? DFC_LOG_WARN : DFC_LOG_DEBUG, "replay %s: dropped a message: %s",
            f->dealer_ep ? f->dealer_ep : "?", why);
}

/*  One replayed message (same framing as published) of the request in
    flight: taken only from the epoch asked, with a gseq above the last one
    taken (the request asked from hw + 1, answers come in gseq order) and
    at most DFC_GSEQ_AHEAD beyond anything known on this link (a hostile
    endpoint must not move the mark). */
static void
on_replayed(dfc_loop_t *loop, link_t *L, dfc_event_t *ev)
{
    dfc_fill_t *f = &L->fill;
    uint64_t g = dfc_event_gseq(ev);
    size_t el;
    const char *epoch = dfc_event_epoch_n(ev, &el);
    uint64_t known = L->live_last > L->hw ? L->live_last : L->hw;
    if (L->seen > known)
        known = L->seen;
    if (f->target > known)
        known = f->target;
    if (!dfc_link_same_epoch(L, epoch, el)) {
        unexpected(loop, L, "another epoch");
        return;
    }
    if (g <= L->hw) {
        unexpected(loop, L, "a gseq not above the last one taken");
        return;
    }
    if (g - known > DFC_GSEQ_AHEAD && g > known) {
        unexpected(loop, L, "a gseq far beyond anything known");
        return;
    }
    /* it is answering */
    f->deadline = dfc_mono_ms() + loop->cfg.replay_timeout_ms;
    if (g > L->hw + 1) /* the journal has a hole */
        STAT_ADD(loop, lost, lost_in(loop, L, L->hw, g - 1));
    L->hw = g;
    if (g > L->seen)
        L->seen = g;
    f->answer_events++;
    STAT_ADD(loop, replayed, 1);
    if (dfc_range_hit(L, g))
        STAT_ADD(loop, gaps_filled, 1);
    dfc_deliver(loop, ev);
}

/*  "_end": only the answer to the request in flight counts; one that cannot
    be right is dropped (bad_envelope) and the deadline asks again. */
static void
on_end(dfc_loop_t *loop, link_t *L, const void *body, size_t len)
{
    dfc_replay_end_t end;
    int rc = dfc_replay_end_parse(body, len, &end);
    if (rc == DFC_EINVAL) {
        unexpected(loop, L, "a malformed end marker");
        return;
    }
    if (L->fill.state != DFC_FILL_ASKED || !end.has_req || end.req != L->fill.req) {
        /* no request in flight (a late answer never reaches us: a request given up
           closes its socket), or another req: not ours */
        unexpected(loop, L, "an end marker of no request in flight");
        return;
    }
    if (end.impossible) {
        dfc_drop(loop, DFC_MSG_BAD_ENVELOPE, len);
        return;
    }
    dfc_fill_on(loop, L, DFC_FILL_EV_ANSWER, 0, &end);
}

int
dfc_fill_receive(dfc_loop_t *loop, link_t *L)
{
    zmq_msg_t parts[2];
    size_t nparts, total;
    int r = dfc_msg_read(L->fill.dealer, parts, &nparts, &total);
    if (r <= 0)
        return r;
    dfc_fill_t *f = &L->fill;
    if (nparts == 2 && dfc_msg_is(&parts[0], "_end")) {
        on_end(loop, L, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]));
    } else if (f->state != DFC_FILL_ASKED) {
        unexpected(loop, L, "no request in flight");
    } else if (++f->answer_msgs > REPLAY_LIMIT) {
        unexpected(loop, L, "more messages than the request's limit");
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
