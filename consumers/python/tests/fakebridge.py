"""An in-process fake dfbridge for the tests: an XPUB (events and heartbeats, with
seq/gseq/epoch numbering and an in-memory journal) and a replay ROUTER served by a
thread, whose answers can be scripted (errors, mute, stalls). Loopback tcp only, ports
chosen by the system."""

import threading
import time

import msgpack
import zmq

BOT = 7000000000001


def envelope(seq, gseq, epoch, event, ts=None, bot=BOT):
    return msgpack.packb({"v": 1, "seq": seq, "gseq": gseq, "epoch": epoch,
                          "ts": ts if ts is not None else int(time.time() * 1000), "bot": bot,
                          "event": event}, use_bin_type=True)


def message_event(i, stream="s1", user=68719476737 + 1, etype="MESSAGESENT"):
    return {"id": f"ev-{i}", "messageId": f"m-{i}", "timestamp": 1700000000000 + i,
            "type": etype, "initiator": {"user": {"userId": user, "displayName": "Alice"}},
            "payload": {"messageSent": {"message": {
                "messageId": f"m-{i}", "timestamp": 1700000000000 + i,
                "message": "<div>hello</div>", "data": "{}",
                "user": {"userId": user}, "stream": {"streamId": stream, "streamType": "ROOM"}}}}}


class FakeBridge:
    def __init__(self, epoch="E1", replay=True, interval=1000, sndhwm=0):
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.SNDHWM, sndhwm)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription is a sync point
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind("tcp://127.0.0.1:*")
        self.endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.epoch = epoch
        self.interval = interval
        self.gseq = 0
        self.seqs = {}
        self.journal = []       # (gseq, topic bytes, body bytes, epoch)
        self.lock = threading.Lock()
        self.requests = []      # decoded replay requests, in order
        self.script = []        # per request: None (serve) or a callable(req) -> action
        self.mute = False
        self.limit = 1000
        self.replay_endpoint = None
        self._stop = threading.Event()
        if replay:
            self.router = self.ctx.socket(zmq.ROUTER)
            self.router.setsockopt(zmq.LINGER, 0)
            self.router.bind("tcp://127.0.0.1:*")
            self.replay_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
            self.thread = threading.Thread(target=self._serve, daemon=True)
            self.thread.start()

    # ------------------------------------------------------------ publish

    def wait_subscribed(self, timeout=5.0):
        """Blocks until a SUB's subscription message reaches the XPUB."""
        end = time.monotonic() + timeout
        while True:  # unsubscriptions (\x00, a closed SUB) are skipped
            left = end - time.monotonic()
            if left <= 0 or not self.pub.poll(int(left * 1000) + 1):
                raise TimeoutError("no subscriber")
            msg = self.pub.recv()
            if msg[:1] == b"\x01":
                return msg

    def next(self, topic, event, publish=True, epoch=None):
        """Numbers, journals and (unless publish is False: a PUB drop) publishes."""
        with self.lock:
            if epoch is not None and epoch != self.epoch:
                self.epoch = epoch
                self.gseq = 0
                self.seqs = {}
            self.gseq += 1
            seq = self.seqs.get(topic, 0) + 1
            self.seqs[topic] = seq
            body = envelope(seq, self.gseq, self.epoch, event)
            t = topic.encode() if isinstance(topic, str) else topic
            self.journal.append((self.gseq, t, body, self.epoch))
        if publish:
            self.pub.send_multipart([t, body])
        return self.gseq

    def send_raw(self, frames):
        self.pub.send_multipart(frames)

    def heartbeat(self, gseq=None, seqs=None, replay=None, epoch=None, interval=None):
        hb = {"v": 1, "epoch": epoch or self.epoch, "gseq": self.gseq if gseq is None else gseq,
              "seqs": dict(self.seqs) if seqs is None else seqs,
              "ts": int(time.time() * 1000),
              "interval": self.interval if interval is None else interval,
              "replay": (self.replay_endpoint or "") if replay is None else replay}
        self.pub.send_multipart([b"_hb", msgpack.packb(hb, use_bin_type=True)])

    # ------------------------------------------------------------- replay

    def _end(self, req, status="ok", count=0, last=0, more=False, code=None, error=None,
             **extra):
        with self.lock:
            head = self.journal[-1][0] if self.journal else 0
            oldest = self.journal[0][0] if self.journal else 0
        m = {"v": 1, "req": req, "status": status, "count": count, "last_gseq": last,
             "more": more, "head_gseq": head, "oldest_gseq": oldest, "epoch": self.epoch}
        if code:
            m["code"] = code
            m["error"] = error or code
        m.update(extra)
        return [b"_end", msgpack.packb(m, use_bin_type=True)]

    def serve_request(self, r):
        """The default answer to a gseq request: the journal from from_gseq."""
        req = r.get("req", 0)
        if r.get("epoch") not in (None, self.epoch):
            return [self._end(req, "error", code="epoch", last=r["from_gseq"] - 1)]
        frm = max(1, r.get("from_gseq", 1))
        limit = min(r.get("limit", 1000), self.limit)
        with self.lock:
            recs = [x for x in self.journal if x[0] >= frm and x[3] == self.epoch]
        out = [[t, b] for (_, t, b, _) in recs[:limit]]
        last = recs[:limit][-1][0] if recs else frm - 1
        return out + [self._end(req, count=len(out), last=last, more=len(recs) > limit)]

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            try:
                ident, body = self.router.recv_multipart(zmq.NOBLOCK)[:2]
            except (zmq.Again, ValueError):
                continue
            except zmq.ZMQError:
                return
            r = msgpack.unpackb(body, raw=False)
            with self.lock:
                self.requests.append(r)
                action = self.script.pop(0) if self.script else None
                mute = self.mute
            if mute:
                continue
            msgs = action(self, r) if action else self.serve_request(r)
            if msgs is None:
                continue
            for m in msgs:
                self.router.send_multipart([ident] + m)

    def close(self):
        self._stop.set()
        if self.replay_endpoint:
            self.thread.join(2)
            self.router.close(0)
        self.pub.close(0)
        self.ctx.term()
