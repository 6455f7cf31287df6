"""The scripted fake dfbridge of the conformance suite.

An XPUB the runner publishes on (topic + v1 envelope, `_hb` heartbeats, raw
hostile frames) and a replay ROUTER served by its own thread from an
in-memory journal of what was "published", speaking schemas/CONTRACT.md
section 9: requests by gseq (optionally `topics`) or by topic + seq, `limit`,
`more`, the end marker's keys in contract order, the error codes with their
fields. Faults are set by the script: a retention floor (`gone`), a damaged
range, transient errors n times, a mute server, a closed gate that holds the
answers, answers that never advance, and hostile answers (`hostile`: more
messages than the limit, junk around the right answer, a frame above the
consumer's max_frame). Python 3 with Debian's pyzmq and msgpack.
"""

import threading
import time

import msgpack
import zmq

BOT = 68719476738  # the envelope's "bot"; events from userId 7 are not the bot's
MAX_LIMIT = 1000


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def envelope_bytes(seq, gseq, epoch, event_bytes, ts=1700000000000, bot=BOT):
    """The contract envelope {v, seq, gseq, epoch, ts, bot, event} with the
    event spliced in as the exact bytes given (so a golden vector's bytes,
    duplicate keys included, reach the wire unchanged)."""
    head = msgpack.Packer(use_bin_type=True)
    out = bytearray(b"\x87")  # fixmap of 7
    for key, val in (("v", 1), ("seq", seq), ("gseq", gseq), ("epoch", epoch), ("ts", ts), ("bot", bot)):
        out += head.pack(key) + head.pack(val)
    out += head.pack("event") + event_bytes
    return bytes(out)


class Entry:
    __slots__ = ("topic", "body", "seq", "gseq")

    def __init__(self, topic, body, seq, gseq):
        self.topic, self.body, self.seq, self.gseq = topic, body, seq, gseq


class FakeBridge:
    """One bridge: bind(), then publish()/heartbeat()/raw() from the runner's
    thread (it owns the XPUB); the replay thread owns the ROUTER. The journal
    and the fault settings are shared under `mu`."""

    def __init__(self, ctx, name, epoch, advertise=True, interval=60000, sndhwm=0):
        self.ctx, self.name, self.epoch = ctx, name, epoch
        self.advertise, self.interval = advertise, interval
        self.mu = threading.Condition()
        self.journal = []  # Entry, in gseq order (the current epoch only)
        self.gseq = 0
        self.seqs = {}  # topic -> last seq, in first-published order
        self.requests = []  # every decoded request (dict or None), in order
        # faults
        self.oldest = 0  # gseqs below are gone (0: none)
        self.damaged = None  # (from, to)
        self.transient, self.transient_n = None, 0
        self.mute = False
        self.gate_closed = False
        self.hold_computed = False
        self.end_fault, self.end_fault_n, self.end_last = None, 0, 0
        # hostile answers for the next hostile_n requests: "ignore_limit" (every match, the
        # request's limit ignored), "junk" (see _junk), "huge" (first a frame of huge_bytes)
        self.hostile, self.hostile_n, self.huge_bytes = None, 0, 0
        self.subscriptions = 0  # subscription messages read from the XPUB
        self.stop = threading.Event()
        self.xpub = ctx.socket(zmq.XPUB)
        self.xpub.setsockopt(zmq.LINGER, 0)
        self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
        if sndhwm:
            self.xpub.setsockopt(zmq.SNDHWM, sndhwm)
        self.xpub.bind("tcp://127.0.0.1:*")
        self.pub_ep = self.xpub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._ready = threading.Event()
        self.rep_ep = None
        self.thread = threading.Thread(target=self._serve, name="replay-" + name, daemon=True)
        self.thread.start()
        self._ready.wait(10)
        if not self.rep_ep:
            raise RuntimeError("fake bridge %s: replay ROUTER did not bind" % name)

    # ------------------------------------------------------------ publishing

    def wait_subscription(self, timeout_s):
        """Waits for a new subscription message on the XPUB (a SUB that
        connected and subscribed): the only sign that publishing now reaches
        it. Returns False on timeout."""
        poller = zmq.Poller()
        poller.register(self.xpub, zmq.POLLIN)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if not poller.poll(max(1, int((end - time.monotonic()) * 1000))):
                continue
            msg = self.xpub.recv()
            if msg[:1] == b"\x01":
                self.subscriptions += 1
                return True
        return False

    def drain_subscriptions(self):
        """Reads pending (un)subscription messages without waiting."""
        while True:
            try:
                msg = self.xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscriptions += 1

    def next_numbers(self, topic):
        with self.mu:
            return self.seqs.get(topic, 0) + 1, self.gseq + 1

    def publish(self, topic, event_bytes, send=True, journal=True, seq=None, gseq=None, ts=1700000000000):
        """Journals one event with the next seq of its topic and the next
        gseq (or the explicit ones) and publishes it unless send is False
        (lost by PUB: a gap). Returns (seq, gseq, body)."""
        with self.mu:
            s = seq if seq is not None else self.seqs.get(topic, 0) + 1
            g = gseq if gseq is not None else self.gseq + 1
            body = envelope_bytes(s, g, self.epoch, event_bytes, ts=ts)
            if journal:
                self.seqs[topic] = max(self.seqs.get(topic, 0), s)
                self.gseq = max(self.gseq, g)
                self.journal.append(Entry(topic, body, s, g))
                self.journal.sort(key=lambda e: e.gseq)
        if send:
            self.xpub.send_multipart([topic.encode(), body])
        return s, g, body

    def heartbeat(self, gseq=None, seqs=None, epoch=None, replay=None, raw_values=None):
        """A `_hb` in contract form; the claims default to the truth."""
        with self.mu:
            body = {
                "v": 1,
                "epoch": epoch if epoch is not None else self.epoch,
                "gseq": gseq if gseq is not None else self.gseq,
                "seqs": seqs if seqs is not None else dict(self.seqs),
                "ts": 1700000000000,
                "interval": self.interval,
                "replay": replay if replay is not None else (self.rep_ep if self.advertise else ""),
            }
        if raw_values:
            body.update(raw_values)
        self.xpub.send_multipart([b"_hb", pack(body)])

    def raw(self, frames):
        self.xpub.send_multipart(frames)

    def new_epoch(self, epoch):
        """The bridge restarted with a new journal: counters from 0."""
        with self.mu:
            self.epoch = epoch
            self.journal = []
            self.gseq = 0
            self.seqs = {}
            self.oldest = 0
            self.damaged = None

    def set_faults(self, **kw):
        with self.mu:
            for k, v in kw.items():
                if not hasattr(self, k):
                    raise KeyError(k)
                setattr(self, k, v)
            self.mu.notify_all()

    def request_count(self):
        with self.mu:
            return len(self.requests)

    def close(self):
        self.stop.set()
        with self.mu:
            self.mu.notify_all()
        self.thread.join(10)
        self.xpub.close(0)

    # ---------------------------------------------------------------- replay

    def _serve(self):
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, 0)
        router.setsockopt(zmq.MAXMSGSIZE, 65536)
        router.bind("tcp://127.0.0.1:*")
        self.rep_ep = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._ready.set()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        try:
            while not self.stop.is_set():
                if not poller.poll(20):
                    continue
                frames = router.recv_multipart()
                ident, body = frames[0], frames[1:]
                with self.mu:
                    req = self._decode(body)
                    self.requests.append(req)
                    self.mu.notify_all()
                    # the gate holds the answer back; computed before (hold_computed: it
                    # describes the journal as it was when the request came) or after
                    answer = self._answer(req, len(body)) if self.hold_computed else None
                    while self.gate_closed and not self.stop.is_set():
                        self.mu.wait(0.02)
                    if self.mute or self.stop.is_set():
                        continue
                    hostile = None
                    if self.hostile and self.hostile_n > 0:
                        self.hostile_n -= 1
                        hostile = self.hostile
                    msgs = answer or self._answer(req, len(body), ignore_limit=hostile == "ignore_limit")
                    if hostile == "junk":
                        msgs = self._junk(req, msgs)
                    elif hostile == "huge":
                        msgs = [[b"MESSAGESENT", b"\x00" * self.huge_bytes]] + msgs
                    for msg in msgs:
                        try:
                            router.send_multipart([ident] + msg)
                        except zmq.ZMQError:
                            break  # the client went away: abandon the answer
        finally:
            router.close(0)

    @staticmethod
    def _decode(body):
        try:
            obj = msgpack.unpackb(body[0], raw=False, strict_map_key=False)
        except Exception:
            return None
        return obj if isinstance(obj, dict) else None

    def _end(self, req, code=None, error=None, count=0, last=0, more=False, topic_req=False, last_seq=0):
        """The end marker, keys in contract order (section 9)."""
        end = {"v": 1, "req": req, "status": "error" if code else "ok", "count": count, "last_gseq": last}
        if topic_req:
            end["last_seq"] = last_seq
        end["more"] = more
        end["head_gseq"] = self.gseq
        end["oldest_gseq"] = self.oldest if self.oldest else (self.journal[0].gseq if self.journal else 1)
        end["epoch"] = self.epoch
        if code:
            end["code"] = code
            end["error"] = error or code
            if code == "damaged":
                end["lost_from"], end["lost_to"] = self.damaged
        return [b"_end", pack(end)]

    def _junk(self, r, msgs):
        """The right answer with junk around it, each piece something a consumer must
        drop and count (replay_unexpected): an end marker of another req first, a
        message of another epoch, one below the gseq asked, the first message twice,
        one far beyond the head (2^21 above), then the right end marker; after it a
        copy of the last message and the same end marker again (no request in flight
        any more). 7 pieces; none may be handed out."""
        req = r.get("req", 0) if isinstance(r, dict) else 0
        frm = max(1, r.get("from_gseq", 1)) if isinstance(r, dict) else 1

        def fake(gseq, epoch, ident):
            ev = pack({"id": ident, "type": "MESSAGESENT"})
            return [b"MESSAGESENT", envelope_bytes(1, gseq, epoch, ev)]
        wrong = pack({"v": 1, "req": req + 1000, "status": "ok", "count": 0, "last_gseq": self.gseq,
                      "more": False, "head_gseq": self.gseq, "oldest_gseq": 1, "epoch": self.epoch})
        body, end = msgs[:-1], msgs[-1]
        out = [[b"_end", wrong], fake(frm, "EVIL-" + self.epoch, "evil-epoch"),
               fake(max(frm - 1, 1) if frm > 1 else 0, self.epoch, "evil-below")]
        if body:
            out += [body[0], body[0]] + body[1:]
        out.append(fake(self.gseq + (1 << 21), self.epoch, "evil-far"))
        out.append(end)
        if body:
            out.append(body[-1])
        out.append(end)
        return out

    def _answer(self, r, nframes, ignore_limit=False):
        """The answer to one request (under mu): a list of frame lists."""
        req = r.get("req", 0) if isinstance(r, dict) else 0
        if not isinstance(req, int) or req < 0:
            req = 0
        if nframes != 1 or r is None:
            return [self._end(req, "bad_request", "a request is one frame, a msgpack map")]
        if r.get("v") != 1:
            return [self._end(req, "bad_request", "v must be 1")]
        by_topic = "topic" in r or "from_seq" in r
        if r.get("info") is True and (by_topic or "from_gseq" in r or "topics" in r):
            return [self._end(req, "bad_request", "an info request has no from_gseq, topic, from_seq or topics")]
        if by_topic and "topics" in r:
            return [self._end(req, "bad_request", "topics filters a from_gseq request only")]
        if r.get("info") is True:
            return [[b"_info", pack({"v": 1, "req": req, "epoch": self.epoch, "ts": 1700000000000, "counters": {}})]]
        if by_topic == ("from_gseq" in r):
            return [self._end(req, "bad_request", "exactly one of from_gseq and topic + from_seq")]
        limit = r.get("limit", MAX_LIMIT)
        if not isinstance(limit, int) or limit <= 0:
            return [self._end(req, "bad_request", "limit must be a positive integer")]
        limit = min(limit, MAX_LIMIT) if not ignore_limit else float("inf")
        if by_topic:
            topic, frm = r.get("topic"), r.get("from_seq")
            if not isinstance(topic, str) or not isinstance(frm, int) or frm < 0:
                return [self._end(req, "bad_request", "topic must be a str and from_seq a uint", topic_req=True)]
            frm = max(frm, 1)
            first_gseq = 0
        else:
            frm = r.get("from_gseq")
            topics = r.get("topics")
            if not isinstance(frm, int) or frm < 0:
                return [self._end(req, "bad_request", "from_gseq must be a uint")]
            if topics is not None and (not isinstance(topics, list) or len(topics) > 64
                                       or not all(isinstance(t, str) for t in topics)):
                return [self._end(req, "bad_request", "topics must be at most 64 str")]
            frm = max(frm, 1)
            first_gseq = frm
        none_last = frm - 1 if not by_topic else 0
        epoch = r.get("epoch")
        if epoch is not None and epoch != self.epoch:
            # refused while parsing, as dfbridge does: last_gseq (and last_seq) 0, not from - 1 (which
            # would exceed the new epoch's head_gseq)
            return [self._end(req, "epoch", "the bridge's epoch is " + self.epoch, topic_req=by_topic)]
        # faults that answer before reading
        if self.transient and self.transient_n > 0:
            self.transient_n -= 1
            return [self._end(req, self.transient, "scripted fault", last=none_last, topic_req=by_topic,
                              last_seq=frm - 1)]
        if self.end_fault == "stall_more":
            return [self._end(req, None, count=0, last=none_last, more=True)]
        if self.end_fault == "walk_gone":
            self.oldest = frm + 1
            return [self._end(req, "gone", "scripted: retention moves on", last=none_last)]
        if not by_topic and self.oldest and first_gseq < self.oldest:
            return [self._end(req, "gone", "older than the retention", last=none_last)]
        if by_topic and self.oldest:
            olds = [e for e in self.journal if e.topic == topic and e.seq >= frm]
            if olds and olds[0].gseq < self.oldest:
                return [self._end(req, "gone", "older than the retention", topic_req=True, last_seq=frm - 1)]
        out, count, last, last_seq = [], 0, none_last, frm - 1
        match = []
        for e in self.journal:
            if by_topic:
                if e.topic == topic and e.seq >= frm:
                    match.append(e)
            elif e.gseq >= frm and (topics is None or e.topic in topics):
                match.append(e)
        for e in match:
            if count == limit:
                break
            if self.damaged and self.damaged[0] <= e.gseq <= self.damaged[1]:
                out.append(self._end(req, "damaged", "scripted: damaged on disk", count=count, last=last,
                                     topic_req=by_topic, last_seq=last_seq))
                return out
            out.append([e.topic.encode(), e.body])
            count += 1
            last, last_seq = e.gseq, e.seq
        more = count < len(match)  # the limit cut the answer
        if self.end_fault == "end_last" and self.end_fault_n > 0:
            self.end_fault_n -= 1
            last = self.end_last
        out.append(self._end(req, None, count=count, last=last, more=more, topic_req=by_topic, last_seq=last_seq))
        return out
