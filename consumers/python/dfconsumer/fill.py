"""dfconsumer.fill: the gap filler of one link, as ONE state (IDLE, WAITING, ASKED)
and ONE transition function (Fill.on): it asks the replay endpoint for what is
missing, holds live events meanwhile, and at the end of the fill (done, error, no
progress, no answer) counts what it could not get as lost and releases what it held
in gseq order. The port of consumers/dfc_fill.c, rule for rule."""

import logging
import time

import zmq

from . import curve
from . import wire

log = logging.getLogger("dfconsumer")

IDLE, WAITING, ASKED = "IDLE", "WAITING", "ASKED"
# what happens to a fill
EV_MISSING = "MISSING"      # gseqs up to arg are missing: start, or raise the target
EV_HEARTBEAT = "HEARTBEAT"  # a heartbeat came: it may have named the replay endpoint
EV_TICK = "TICK"            # the timer; arg = now (monotonic ms)
EV_ANSWER = "ANSWER"        # an end marker of the request in flight
EV_EPOCH = "EPOCH"          # the link's epoch ends: what is held goes out
EV_STOP = "STOP"            # the loop stops: held events are dropped unhandled
# what a transition leads to, run at the end of on() so that no step calls another
ACT_NONE, ACT_SEND, ACT_GIVE_UP = 0, 1, 2

REPLAY_TRIES = 3
REPLAY_BACKOFF_MS = 100  # busy, io_error, internal: asked again after 100, then 200 ms
REPLAY_STALLS = 3        # answers in a row that deliver nothing, then the fill gives up
RETRY_CODES = ("busy", "io_error", "internal")


def mono_ms():
    return time.monotonic_ns() // 1_000_000


class Fill:
    def __init__(self, loop, link):
        self.loop = loop
        self.link = link
        self.state = IDLE
        self.target = 0        # fill up to this gseq
        self.req = 0           # the id of the last request
        self.tries = 0         # timeouts (or retryable errors) of the request in flight
        self.stalls = 0        # answers in a row that asked for more and delivered nothing
        self.answer_events = 0
        self.deadline = 0
        self.dealer = None     # zmq.asyncio DEALER
        self.dealer_sync = None
        self.dealer_ep = None
        self.watch = None      # curve.DealerWatch of the dealer (CURVE only)
        self.held = []         # live envelopes held meanwhile, gseq increasing
        self.held_bytes = 0    # their sizes as received: <= max_held_bytes
        self.answer_msgs = 0   # messages read for the request in flight (REPLAY_LIMIT taken)
        self.answer_dropped = False  # ...some dropped as unexpected: last_gseq not believed

    def busy(self):
        return self.state != IDLE

    # ------------------------------------------------------------ socket

    def watch_mon(self):
        return self.watch.mon if self.watch is not None else None

    def close_dealer(self):
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self.dealer is not None:
            self.dealer.close(linger=0)
        self.dealer = self.dealer_sync = self.dealer_ep = None
        self.link.sockets_changed = True

    def _dealer_open(self):
        L = self.link
        if self.dealer is not None and self.dealer_ep == L.replay:
            return True
        self.close_dealer()
        d = None
        try:
            d = self.loop.zctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            # a DEALER never drops what it receives: at the HWM libzmq stops reading the
            # connection, so a peer that sends more than asked is held back by TCP
            d.setsockopt(zmq.RCVHWM, wire.replay_rcvhwm(self.loop.max_frame))
            d.setsockopt(zmq.MAXMSGSIZE, self.loop.max_frame + wire.MAX_TOPIC)
            if self.loop.curve is not None:
                self.loop.curve.apply(d)
                self.watch = curve.DealerWatch(self.loop.counters, d, L.replay)
            d.connect(L.replay)
        except zmq.ZMQError as e:
            log.error("replay %s: %s", L.replay, e)
            if self.watch is not None:
                self.watch.close()
                self.watch = None
            if d is not None:
                d.close(linger=0)
            return False
        self.dealer = d
        self.dealer_sync = zmq.Socket.shadow(d.underlying)
        self.dealer_ep = L.replay
        L.sockets_changed = True
        return True

    # ------------------------------------------------------- transitions

    def _send(self):
        """Sends the request for hw+1... Returns (act, why): the state is ASKED when the
        request went out, WAITING when the deadline has to ask again."""
        L, loop = self.link, self.loop
        self.state = WAITING
        self.answer_events = 0
        self.answer_msgs = 0
        self.answer_dropped = False
        self.deadline = mono_ms() + loop.replay_timeout_ms
        if not L.replay:
            # a heartbeat said the bridge has no replay: nothing to wait for; else the
            # first heartbeat may name one, the deadline bounds the wait
            return (ACT_GIVE_UP if L.hb_seen else ACT_NONE), "the bridge has no replay endpoint"
        if not self._dealer_open():
            return ACT_GIVE_UP, "cannot open the replay socket"
        self.req += 1
        try:
            self.dealer_sync.send(wire.replay_request(self.req, L.epoch, L.hw + 1), zmq.NOBLOCK)
        except (zmq.ZMQError, ValueError) as e:
            log.warning("replay %s: cannot send the request: %s", L.replay, e)
            return ACT_NONE, ""  # the deadline retries
        self.state = ASKED
        loop.counters["replay_requests"] += 1
        log.debug("replay %s: from gseq %d (epoch %s)", L.replay, L.hw + 1, L.epoch)
        return ACT_NONE, ""

    def _lost_in(self, a, b):
        """How many of the gseqs in (a, b] of the link's epoch are lost: all but those the
        checkpoint recorded as handled (handled before a restart; skipped when replayed,
        CONTRACT.md section 11). Every bulk count of lost goes here (dfc_fill.c lost_in)."""
        if b <= a:
            return 0
        return b - a - self.loop.wm.done_in(self.link.epoch, a, b)

    def _give_up(self, why):
        """The end of a fill: every held event goes out in gseq order (holes between them
        counted lost: asking again would fail the same way; _lost_in: not the gseqs a
        checkpoint recorded), then what is still missing up to the target is counted lost.

        Held events first, as dfc_fill.c fill_give_up: a held event at or below the
        target is handed out, not counted lost and dropped: the target may have been
        raised past it by a heartbeat (or clipped to a confirmed head that includes
        it). Conformance scenario unconfirmed_heartbeat."""
        L, st = self.link, self.loop.counters
        # without an answer nothing confirms a heartbeat's claim: trust it only
        # GSEQ_AHEAD beyond what was received
        proof = max(L.seen, L.hw)
        if self.target > proof and self.target - proof > wire.GSEQ_AHEAD:
            self.target = proof + wire.GSEQ_AHEAD
        self.state = IDLE
        held, self.held = self.held, []
        self.held_bytes = 0
        held.sort(key=lambda e: e.gseq)
        first = L.hw + 1
        lost = 0
        for env in held:
            g = env.gseq
            if g > L.hw:
                lost += self._lost_in(L.hw, g - 1)
                L.hw = g
                self.loop.deliver(env)
        if self.target > L.hw:
            lost += self._lost_in(L.hw, self.target)
            L.hw = self.target
        if lost:
            st["lost"] += lost
            log.warning("%s: %d message(s) of epoch %s lost (gseq %d..%d): %s", L.endpoint, lost,
                        L.epoch, first, L.hw, why)

    def _missing_beyond(self, lo):
        """Whether a gseq in (lo, seen) was neither taken nor is held: a hole below
        the highest gseq received."""
        seen = self.link.seen
        if seen <= lo + 1:
            return False
        have = sum(1 for env in self.held if lo < env.gseq < seen)
        return have < seen - lo - 1

    def _on_answer(self, end):
        L, st = self.link, self.loop.counters
        self.state = WAITING
        # progress = the answer delivered events: a last_gseq or oldest_gseq that moves
        # without any (a peer can move them forever) is not
        progress = self.answer_events > 0
        if progress:
            self.stalls = 0
        if end.ok:
            more = end.more
            if end.last_gseq > L.hw:
                if self.answer_dropped:
                    # it sent more than we took (replay_unexpected): ask for the rest
                    # rather than believe its last_gseq
                    more = True
                else:  # what it sent and we could not use is lost
                    st["lost"] += self._lost_in(L.hw, end.last_gseq)
                    L.hw = end.last_gseq
            if more and not progress:
                self.stalls += 1
                if self.stalls >= REPLAY_STALLS:
                    st["replay_stalls"] += 1
                    return ACT_GIVE_UP, "the replay answers make no progress"
            if more:
                self.tries = 0
                return ACT_SEND, ""
            # the answer describes the journal when the request was read: up to head_gseq
            # (else last_gseq). Events received live beyond it (held) show that the
            # journal moved on during the fill: a gseq missing below the highest received
            # and beyond what the answer covered is asked again from hw + 1, not counted
            # lost (conformance scenario fill_moved_head); an answer without events
            # counts a stall, as above
            covered = end.head_gseq if end.has_head else end.last_gseq
            if self._missing_beyond(max(covered, L.hw)):
                if not progress:
                    self.stalls += 1
                    if self.stalls >= REPLAY_STALLS:
                        st["replay_stalls"] += 1
                        return ACT_GIVE_UP, "the replay answers make no progress"
                self.tries = 0
                return ACT_SEND, ""
            # the answer runs to the journal's head: a target above both the head and
            # every gseq received was claimed (by a heartbeat) and cannot be right
            confirmed = end.head_gseq if end.has_head and end.head_gseq > L.seen else L.seen
            confirmed = max(confirmed, L.hw)
            if self.target > confirmed:
                log.warning("%s: gseq %d was announced but replay's head is %d: dropped as a "
                            "bad envelope", L.endpoint, self.target, end.head_gseq)
                self.loop.drop_count(wire.BAD_ENVELOPE)
                self.target = confirmed
                if L.live_last > confirmed:
                    L.live_last = confirmed
            return ACT_GIVE_UP, "not in the journal"
        st["replay_errors"] += 1
        # gone: older than retention, readable again from oldest_gseq; damaged:
        # lost_from..lost_to cannot be read, what follows can; either way the range is
        # counted lost (but for the gseqs a checkpoint recorded as handled)
        resume = 0
        if end.code == "gone":
            resume = end.oldest_gseq
        elif end.code == "damaged" and end.has_lost:
            resume = end.lost_to + 1
        if resume > L.hw + 1:
            upto = min(resume - 1, self.target)
            missing = self._lost_in(L.hw, upto)
            st["lost"] += missing
            log.warning("%s: %d message(s) lost: %s (readable again from %d)", L.endpoint,
                        missing, end.code, resume)
            if upto > L.hw:
                L.hw = upto
            self.tries = 0
            if not progress:
                self.stalls += 1
                if self.stalls >= REPLAY_STALLS:
                    st["replay_stalls"] += 1
                    return ACT_GIVE_UP, "the replay answers make no progress"
            return ACT_SEND, ""
        # busy, io_error, internal: the data is not known to be lost: the same request
        # again after a backoff (the TICK past the deadline sends it from WAITING), at
        # most REPLAY_TRIES in all, then give up like for a mute endpoint
        if end.code in RETRY_CODES:
            self.tries += 1
            if self.tries < REPLAY_TRIES:
                wait = REPLAY_BACKOFF_MS << (self.tries - 1)
                self.deadline = mono_ms() + wait
                log.warning("replay %s: %s (%s): asking again in %d ms", L.replay, end.code,
                            end.error, wait)
                return ACT_NONE, ""
        return ACT_GIVE_UP, f"replay error {end.code or '?'}: {end.error}"

    def on(self, ev, arg=0, end=None):
        """The transition function: the only place the state changes."""
        L = self.link
        act, why = ACT_NONE, ""
        if ev == EV_MISSING:
            if self.state == IDLE:
                self.target = arg
                self.tries = 0
                self.stalls = 0
                act = ACT_SEND
            elif arg > self.target:
                self.target = arg
        elif ev == EV_HEARTBEAT:
            if self.state == WAITING:
                act = ACT_SEND  # it may have been waiting for the endpoint
        elif ev == EV_TICK:
            if self.state == IDLE or arg <= self.deadline:
                pass
            elif self.state == WAITING:
                act = ACT_SEND if L.replay else ACT_GIVE_UP
                why = "no replay endpoint known"
            else:
                self.loop.counters["replay_errors"] += 1
                self.close_dealer()  # a late answer to the old request must not mix in
                self.tries += 1
                if self.tries < REPLAY_TRIES:
                    log.warning("replay %s: no answer in %d ms, asking again", L.replay,
                                self.loop.replay_timeout_ms)
                    act = ACT_SEND
                else:
                    act, why = ACT_GIVE_UP, "the replay endpoint does not answer"
        elif ev == EV_ANSWER:
            if self.state == ASKED:
                act, why = self._on_answer(end)
        elif ev == EV_EPOCH:
            # what the old epoch still missed stays counted in gaps
            if self.state != IDLE or self.held:
                self.target = L.hw
                act, why = ACT_GIVE_UP, "new epoch"
            self.close_dealer()  # stale replies of the old epoch must not reach the new one
        elif ev == EV_STOP:
            # held events are not handled: the checkpoint stays below them
            self.held = []
            self.held_bytes = 0
            self.close_dealer()
            self.state = IDLE
        while act != ACT_NONE:
            if act == ACT_SEND:
                act, why = self._send()
            else:
                self._give_up(why)
                act = ACT_NONE

    def hold(self, env):
        """Keeps a live event until the fill ends (beyond max_held events or
        max_held_bytes: counted in held_dropped and left to replay)."""
        lp = self.loop
        if len(self.held) >= lp.max_held or env.size > lp.max_held_bytes - self.held_bytes:
            if env.gseq > self.target:
                self.target = env.gseq
            lp.counters["held_dropped"] += 1
            return
        self.held.append(env)
        self.held_bytes += env.size

    # ----------------------------------------------------------- reading

    def _unexpected(self, why):
        """A message from the replay socket that answers nothing asked: dropped unread,
        counted; the first since the last request sent logged at WARNING."""
        self.loop.counters["replay_unexpected"] += 1
        first = not self.answer_dropped  # reset by each request sent
        self.answer_dropped = True
        log.log(logging.WARNING if first else logging.DEBUG, "replay %s: dropped a message: %s",
                self.link.replay, why)

    def _on_replayed(self, env):
        """One replayed message of the request in flight: taken only from the epoch
        asked, with a gseq above the last one taken and at most GSEQ_AHEAD beyond
        anything known on this link (dfc_fill.c on_replayed)."""
        L, st = self.link, self.loop.counters
        g = env.gseq
        known = max(L.live_last, L.hw, L.seen, self.target)
        if not L.same_epoch(env.epoch):
            return self._unexpected("another epoch")
        if g <= L.hw:
            return self._unexpected("a gseq not above the last one taken")
        if g > known and g - known > wire.GSEQ_AHEAD:
            return self._unexpected("a gseq far beyond anything known")
        self.deadline = mono_ms() + self.loop.replay_timeout_ms  # it is answering
        if g > L.hw + 1:
            st["lost"] += self._lost_in(L.hw, g - 1)  # the journal has a hole
        L.hw = g
        if g > L.seen:
            L.seen = g
        self.answer_events += 1
        st["replayed"] += 1
        if L.range_hit(g):
            st["gaps_filled"] += 1
        env.replayed = True
        self.loop.deliver(env)

    def _on_end(self, body):
        end = wire.parse_end(body)
        if end is None:
            return self._unexpected("a malformed end marker")
        if self.state != ASKED or not end.has_req or end.req != self.req:
            # no request in flight (a late answer never reaches us: a request given up
            # closes its socket), or another req: not ours
            return self._unexpected("an end marker of no request in flight")
        if end.impossible:
            self.loop.drop(wire.BAD_ENVELOPE, len(body))
            return
        self.on(EV_ANSWER, 0, end)

    def receive(self, frames):
        """One message from the replay socket (the published framing, or `_end`)."""
        if len(frames) == 2 and frames[0] == b"_end":
            self._on_end(frames[1])
            return
        if self.state != ASKED:
            return self._unexpected("no request in flight")
        self.answer_msgs += 1
        if self.answer_msgs > wire.REPLAY_LIMIT:
            return self._unexpected("more messages than the request's limit")
        total = sum(len(f) for f in frames)
        if len(frames) != 2:
            self.loop.drop(wire.BAD_FRAMES, total)
            return
        env, st = wire.parse_message(frames[0], frames[1], self.loop.max_frame)
        if env is not None and (env.seq > wire.SEQ_MAX or env.gseq > wire.SEQ_MAX):
            env, st = None, wire.BAD_ENVELOPE
        if env is None:
            self.loop.drop(st, total)
            return
        self._on_replayed(env)
