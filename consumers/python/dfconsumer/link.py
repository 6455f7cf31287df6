"""dfconsumer.link: one bridge as the loop sees it: its SUB socket and monitor (and
the fill's replay DEALER), reading messages, the epoch baseline, gap counting,
heartbeats, the bounds on numbers that cannot be right, and staleness. The port of
consumers/dfc_link.c; one asyncio task per link owns its sockets."""

import asyncio
import logging

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from . import curve
from . import fill as fillmod
from . import wire
from .fill import Fill, mono_ms

log = logging.getLogger("dfconsumer")

GAP_TABLE_MAX = 512  # (epoch, topic) pairs remembered for gap counting
MAX_RANGES = 65536   # missing gseq ranges remembered, for gaps_filled
RELINK_GRACE_MS = 250  # a disconnect not followed by libzmq's own retry (see read_monitor)
RECV_BATCH = 256     # messages read per poll before the timers and other tasks run
POLL_MS = 100        # timers (staleness, replay, checkpoint) are checked this often
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)


def recv_frames(s):
    """One whole multipart message without waiting (zmq.Again when none): pyzmq's
    recv_multipart with plain ints instead of its enum conversions (~30% faster).
    At most 3 frames are kept (a message of more is malformed either way, as in
    dfc_msg_read): a peer sending one message of a million frames must not become a
    list of a million objects here."""
    frames = [s.recv(_NOBLOCK)]
    while s.get(_RCVMORE):
        f = s.recv(_NOBLOCK)
        if len(frames) < 3:
            frames.append(f)
    return frames


class Link:
    def __init__(self, loop, endpoint, replay=None):
        self.loop = loop
        self.endpoint = endpoint
        self.replay = replay or None   # configured, or learnt from "_hb"; None = none
        self.replay_cfg = bool(replay)  # configured: heartbeats do not change it
        self.sub = self.sub_sync = self.mon = None
        self.sockets_changed = True
        self.epoch = None
        self.has_epoch = self.had_epoch = self.from_used = False
        self.hw = 0          # highest gseq of the epoch delivered (or given up as lost)
        self.live_last = 0   # highest gseq of the epoch seen live or announced by "_hb"
        self.seen = 0        # highest gseq of the epoch received in a message
        self.hb_known = False  # a heartbeat of this epoch was accepted: live gseqs bounded
        self.ranges = []     # [lo, hi] gseqs known missing (not seen live), ascending
        self.fill = Fill(loop, self)
        self.last_rx = 0
        self.strikes = 0     # staleness reconnects since the last message: backs off
        self.relink_at = 0   # disconnected and libzmq is not reconnecting: connect again then
        self.hs = curve.Handshakes(loop.counters, endpoint)  # CURVE handshakes (curve.py)
        self.hb_interval = 0
        self.hb_seen = False
        self.replay_refused = None  # the last endpoint a heartbeat named and the rule refused
        self.task = None
        self.polling = False

    # -------------------------------------------------------------- state

    def ordered(self):
        """Ordered delivery (gseq order, fills, duplicates by gseq) is on once there is
        something to fill from or resume to: a replay endpoint, a checkpoint or
        from_gseq. Without it every message is handed out as it comes."""
        lp = self.loop
        return bool(self.replay) or lp.wm.path is not None or lp.from_gseq > 0

    def same_epoch(self, epoch):
        return self.has_epoch and self.epoch == epoch

    def range_add(self, lo, hi):
        if lo > hi:
            return
        r = self.ranges
        if r and r[-1][1] + 1 >= lo:
            if hi > r[-1][1]:
                r[-1][1] = hi
            return
        if len(r) >= MAX_RANGES:  # bounded: stretch the last one (gaps_filled may over-count)
            r[-1][1] = hi
            return
        r.append([lo, hi])

    def range_hit(self, g):
        """True when gseq g was known missing; forgets ranges below g."""
        r = self.ranges
        k = 0
        while k < len(r) and r[k][1] < g:
            k += 1
        if k:
            del r[:k]
        return bool(r) and r[0][0] <= g

    def count_gap(self, epoch, topic, seq, announced):
        """Counts messages missing from seq per (epoch, topic): the first seq seen is
        the baseline. A live seq s follows s-1; a heartbeat's (announced) s is the last
        one published, so s itself may be missing."""
        gaps = self.loop.gaps
        key = (epoch, topic)
        last = gaps.get(key)
        if last is not None:
            nxt = 0 if announced else 1
            if seq > last and seq - last > nxt:
                self.loop.counters["gaps"] += seq - last - nxt
            if seq > last:
                gaps[key] = seq
            return
        if len(gaps) >= GAP_TABLE_MAX:
            gaps.clear()  # many epochs seen: forget the old ones rather than grow
        gaps[key] = seq

    def new_epoch(self, epoch, head):
        """A new epoch on this bridge: set the baseline. head is the newest gseq known
        to exist. The checkpoint, then from_gseq (first epoch only), decide where to
        resume; an epoch that follows another is new as a whole; otherwise live."""
        lp = self.loop
        self.fill.on(fillmod.EV_EPOCH)
        self.had_epoch = self.has_epoch
        self.has_epoch = True
        self.epoch = epoch
        self.ranges = []
        self.live_last = head
        self.seen = 0
        self.hb_known = False
        ordered = self.ordered()
        base = head
        w = lp.wm.get(epoch, False) if lp.wm.path is not None else None
        if w is not None and not lp.wm.check_head(w, head):
            w = None  # never trusted beyond what the bridge published
        if w is not None:
            base = w.gseq
        elif ordered:
            if not self.had_epoch and lp.from_gseq and not self.from_used:
                base = lp.from_gseq - 1
            elif self.had_epoch:
                base = 0
            if lp.wm.path is not None:
                w = lp.wm.get(epoch, True)
                if w is not None:
                    w.gseq = base
                    lp.wm.dirty = True
        self.from_used = True
        self.hw = base
        log.info("%s: epoch %s, resuming after gseq %d (newest %d)", self.endpoint, epoch, base,
                 head)
        if ordered and base < head:
            self.fill.on(fillmod.EV_MISSING, head)

    def plausible(self, env):
        """Whether a live message's seq and gseq can be right: both at most SEQ_MAX, and
        once a heartbeat of its epoch was accepted, the gseq at most GSEQ_AHEAD above
        the highest gseq known and the seq at most GSEQ_AHEAD above the last seq known
        for its topic. A message of another epoch starts that epoch: no bound."""
        g, s = env.gseq, env.seq
        if g > wire.SEQ_MAX or s > wire.SEQ_MAX:
            return False
        if not self.hb_known or not self.same_epoch(env.epoch):
            return True
        known = max(self.live_last, self.hw)
        if g > known and g - known > wire.GSEQ_AHEAD:
            return False
        last = self.loop.gaps.get((env.epoch, env.topic))
        return last is None or s <= last or s - last <= wire.GSEQ_AHEAD

    def on_live(self, env):
        g = env.gseq
        if not self.same_epoch(env.epoch):
            self.new_epoch(env.epoch, g - 1 if g else 0)
        if g > self.seen:
            self.seen = g
        if not self.ordered():
            if g > self.hw:
                self.hw = g
            if g > self.live_last:
                self.live_last = g
            self.loop.deliver(env)
            return
        if g > self.live_last + 1:
            self.range_add(max(self.live_last, self.hw) + 1, g - 1)
        if g > self.live_last:
            self.live_last = g
        if g <= self.hw:
            return  # replay gave it already
        f = self.fill
        if f.state != fillmod.IDLE:
            f.hold(env)
            return
        if g == self.hw + 1:
            self.hw = g
            self.loop.deliver(env)
            return
        f.hold(env)
        f.on(fillmod.EV_MISSING, g - 1)

    def learn_replay(self, hb):
        """The replay endpoint a heartbeat names, for a link without a configured one:
        "" or absent = none; otherwise wire.replay_advert (replay_any_host) decides. A
        refused one is counted on every heartbeat, logged once per value, and changes
        nothing: a forged heartbeat must not make the loop ask (and believe) another
        machine (dfc_link.c learn_replay)."""
        lp = self.loop
        if hb.replay_bad:
            ep, shown = None, "(over 1024 bytes, or a NUL)"
        elif hb.replay:
            ep = wire.replay_advert(self.endpoint, hb.replay, lp.replay_any_host)
            shown = hb.replay
        else:
            ep = shown = None  # the bridge has no replay
        if shown is not None and ep is None:
            lp.counters["replay_refused"] += 1
            if self.replay_refused != shown:
                log.warning("%s: the heartbeat names replay endpoint %s, not on this bridge's "
                            "host: not used (configure the replay endpoint, or set "
                            "replay_any_host)", self.endpoint, shown)
                self.replay_refused = shown
            return
        if ep != self.replay:
            self.replay = ep
            log.info("%s: replay endpoint %s (from the heartbeat)", self.endpoint,
                     self.replay or "none")

    def on_heartbeat(self, body):
        hb, st = wire.parse_heartbeat(body)
        if hb is None:
            self.loop.drop(st, len(body))
            return
        lp = self.loop
        lp.counters["heartbeats"] += 1
        self.hb_seen = True
        self.hb_interval = hb.interval
        if not self.replay_cfg and hb.has_replay:
            self.learn_replay(hb)
        # the last messages of each topic: a higher seq means we missed them
        for t, s in hb.seqs:
            self.count_gap(hb.epoch, t, s, True)
        if not self.same_epoch(hb.epoch):
            self.new_epoch(hb.epoch, hb.gseq)
        elif self.ordered():
            if hb.gseq > self.live_last:
                self.range_add(max(self.live_last, self.hw) + 1, hb.gseq)
                self.live_last = hb.gseq
            if self.fill.busy():
                self.fill.on(fillmod.EV_MISSING, hb.gseq)  # raises the target
                self.fill.on(fillmod.EV_HEARTBEAT)
            elif hb.gseq > self.hw:
                log.info("%s: heartbeat at gseq %d, last seen %d: filling", self.endpoint,
                         hb.gseq, self.hw)
                self.fill.on(fillmod.EV_MISSING, hb.gseq)
        self.hb_known = True

    def receive(self, frames):
        """One message from the SUB socket."""
        lp = self.loop
        self.last_rx = mono_ms()
        self.strikes = 0
        st = lp.counters
        st["received"] += 1
        topic = frames[0]
        if topic[:1] == b"_":
            # the bridge's own messages: readers that do not know them ignore them
            st["reserved"] += 1
            if len(frames) == 2 and topic == b"_hb":
                self.on_heartbeat(frames[1])
            return
        if len(frames) != 2:
            lp.drop(wire.BAD_FRAMES, sum(len(f) for f in frames))
            return
        env, why = wire.parse_message(topic, frames[1], lp.max_frame)
        if env is None:
            lp.drop(why, len(topic) + len(frames[1]))
            return
        # an epoch that cannot be tracked, or a seq/gseq that cannot be right
        if wire.epoch_too_long(env.epoch) or not self.plausible(env):
            lp.drop(wire.BAD_ENVELOPE, len(topic) + len(frames[1]))
            return
        self.count_gap(env.epoch, env.topic, env.seq, False)
        self.on_live(env)

    # ------------------------------------------------------------ sockets

    def open_sub(self):
        lp = self.loop
        sub = lp.zctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, lp.rcvhwm)
        sub.setsockopt(zmq.LINGER, 0)
        # libzmq drops bigger frames on tcp before we see them; inproc is checked again
        sub.setsockopt(zmq.MAXMSGSIZE, lp.max_frame + wire.MAX_TOPIC)
        sub.setsockopt(zmq.SUBSCRIBE, b"")  # before connect
        if lp.curve is not None:
            lp.curve.apply(sub)
        try:
            self.mon = sub.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
                                              | zmq.EVENT_CONNECT_RETRIED
                                              | curve.HANDSHAKE_EVENTS)
        except zmq.ZMQError as e:
            self.mon = None
            log.warning("no socket monitor (%s): connects/disconnects not counted", e)
        self.sub = sub
        self.sub_sync = zmq.Socket.shadow(sub.underlying)
        self.sockets_changed = True
        self.last_rx = mono_ms()
        self.relink_at = self.hs.retry_at = 0  # a new socket: nothing to connect again
        try:
            sub.connect(self.endpoint)
        except zmq.ZMQError as e:
            log.error("cannot connect %s: %s", self.endpoint, e)  # a dead link: stays silent

    def close_sub(self):
        if self.mon is not None:
            try:
                self.sub.disable_monitor()
            except zmq.ZMQError:
                pass
            self.mon.close(linger=0)
            self.mon = None
        if self.sub is not None:
            self.sub.close(linger=0)
        self.sub = self.sub_sync = None
        self.sockets_changed = True

    def read_monitor(self):
        """Connects and disconnects become counters. libzmq 4.3 drops a peer that sent a
        message above MAXMSGSIZE and never reconnects it, which would leave the SUB deaf;
        after an ordinary connection loss it reconnects by itself and says so at once
        (EVENT_CONNECT_RETRIED). So a disconnect of our endpoint arms RELINK_GRACE_MS, a
        retry or a connect disarms it, and only a link libzmq gave up is disconnected and
        connected again by us (timers). Never on a live pipe: disconnecting a SUB whose pipe
        still holds the dead peer's messages makes the next multipart read abort inside
        libzmq (`!_more` in fq.cpp, libzmq #2163/#3663; seen after a kill -9 of the
        bridge). Same rule as dfc_link.c."""
        mon = zmq.Socket.shadow(self.mon.underlying)
        for _ in range(64):
            try:
                msg = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                m = parse_monitor_message(msg)
            except Exception:
                continue
            ep = m.get("endpoint", b"")
            ep = ep.decode("utf-8", "replace") if isinstance(ep, bytes) else str(ep)
            if self._on_handshake(m["event"], ep):
                continue
            if m["event"] == zmq.EVENT_CONNECTED:
                self.loop.counters["connects"] += 1
                log.info("connected to %s", ep)
            if m["event"] == zmq.EVENT_DISCONNECTED:
                self.loop.counters["disconnects"] += 1
                if ep != self.endpoint:
                    log.warning("disconnected from %s: not reconnected by us (connect it by "
                                "its numeric address for that)", ep)
                    continue
                # a refused handshake's backoff (already armed) is kept
                self.relink_at = max(self.relink_at, mono_ms() + RELINK_GRACE_MS)
            elif ep == self.endpoint:
                self.relink_at = 0  # CONNECTED or CONNECT_RETRIED: libzmq is on it
                self.hs.retried_by_libzmq()

    def _on_handshake(self, event, ep):
        """A handshake event (curve.Handshakes): a failure arms the reconnect after the
        backoff; a CONNECT_RETRIED that follows disarms it as for any disconnect (libzmq
        retries a wrong key by itself, never a denial). True when it was one."""
        if ep != self.endpoint:
            return False
        now = mono_ms()
        if not self.hs.on_event(event, now):
            return False
        if self.hs.retry_at:
            self.relink_at = self.hs.retry_at
        return True

    def relink(self):
        self.relink_at = 0
        denied = self.hs.retry_at != 0
        self.hs.retry_at = 0
        try:
            self.sub.disconnect(self.endpoint)
        except zmq.ZMQError:
            pass  # may already be gone
        try:
            self.sub.connect(self.endpoint)
            if denied:  # rate-limited by Handshakes: one line per failure would flood
                log.debug("%s: handshake failed: connecting again", self.endpoint)
            else:
                log.warning("disconnected from %s and not reconnected by ZeroMQ: reconnecting",
                            self.endpoint)
        except zmq.ZMQError as e:
            log.error("cannot reconnect %s: %s", self.endpoint, e)

    def timers(self, now):
        """Staleness and the replay deadline."""
        lp = self.loop
        if lp.stale_ms > 0:
            stale = lp.stale_ms
        elif lp.stale_ms == 0 and self.hb_interval:
            stale = 3 * min(self.hb_interval, 2**31 - 1)
        else:
            stale = 0
        # a bridge that stays silent is retried less and less often: x2 up to x32
        if stale and self.sub is not None and now - self.last_rx > stale << min(self.strikes, 5):
            log.log(logging.DEBUG if self.strikes else logging.WARNING,
                    "%s: no message and no heartbeat for %d ms: new SUB socket", self.endpoint,
                    now - self.last_rx)
            self.close_sub()
            self.open_sub()
            self.strikes += 1
            lp.counters["reconnects"] += 1
        if self.relink_at and self.sub is not None and now >= self.relink_at:
            self.relink()
        if self.fill.watch is not None:
            self.fill.watch.tick(now)
        self.fill.on(fillmod.EV_TICK, now)

    # --------------------------------------------------------------- task

    async def run(self):
        """The link's task: polls its sockets, reads in batches, runs its timers,
        hands events to the loop's dispatcher (which applies back-pressure)."""
        lp = self.loop
        self.open_sub()
        poller = None
        next_tick = mono_ms() + POLL_MS
        try:
            while not lp.stopping:
                if self.sockets_changed:
                    poller = zmq.asyncio.Poller()
                    for s in (self.sub, self.mon, self.fill.dealer, self.fill.watch_mon()):
                        if s is not None:
                            poller.register(s, zmq.POLLIN)
                    self.sockets_changed = False
                # at least 1 ms: a zero timeout would return a finished future and never
                # yield to the callbacks' tasks
                wait = max(1, next_tick - mono_ms())
                self.polling = True
                try:
                    ready = dict(await poller.poll(wait))
                finally:
                    self.polling = False
                if lp.stopping:
                    break
                try:
                    if self.mon is not None and self.mon in ready:
                        self.read_monitor()
                    if self.fill.watch is not None and self.fill.watch.mon in ready:
                        self.fill.watch.read(mono_ms())
                    # read whether or not poll said so: ZeroMQ's readiness is edge-like
                    await self._drain_sub()
                    await self._drain_dealer()
                    now = mono_ms()
                    if now >= next_tick:
                        self.timers(now)
                        lp.tick(now)
                        next_tick = now + POLL_MS
                    if lp.pending_out():
                        await lp.flush()
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception:
                    # a bug of ours must not make the link deaf: logged, the link goes on
                    log.exception("%s: internal error (the link goes on)", self.endpoint)
                    await asyncio.sleep(POLL_MS / 1000)
        except asyncio.CancelledError:
            if not lp.stopping:
                raise

    async def _drain_sub(self):
        lp = self.loop
        for _ in range(RECV_BATCH):
            s = self.sub_sync
            if s is None or lp.stopping:
                return
            try:
                frames = recv_frames(s)
            except zmq.Again:
                return
            except zmq.ZMQError as e:
                log.error("recv %s: %s", self.endpoint, e)
                return
            self.receive(frames)
            if lp.pending_out():
                await lp.flush()

    async def _drain_dealer(self):
        lp = self.loop
        for _ in range(RECV_BATCH * 4):
            d = self.fill.dealer_sync
            if d is None or lp.stopping:
                return
            try:
                frames = recv_frames(d)
            except zmq.Again:
                return
            except zmq.ZMQError as e:
                log.error("recv %s: %s", self.replay, e)
                return
            self.fill.receive(frames)
            if lp.pending_out():
                await lp.flush()
