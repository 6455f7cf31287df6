#!/usr/bin/python3
"""Runs the conformance scenarios (scenarios/*.json) against one adapter.

    run.py --adapter "CMD ..." [--lang c|python|node] [--scenario NAME ...]
    run.py --cross c,python,node,c --adapter-c CMD --adapter-python CMD --adapter-node CMD

For each scenario: fake bridge(s) on 127.0.0.1 ephemeral ports (fakebridge.py),
CONFIG.json, the adapter, the script, SIGTERM; then every `handled` line is
compared with what the runner expects from the bytes it sent (canonical JSON
computed here, README.md's rules), plus the ordering rules and the exact
counters the scenario names. One PASS/FAIL line per scenario with the first
difference; exit status 1 on any failure. Every wait is bounded.
"""

import argparse
import json
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fakebridge  # noqa: E402

VECTORS = os.path.join(HERE, "..", "golden", "vectors.json")

CONTRACT = os.path.join(HERE, "..", "contract-v1.json")


def contract_callbacks():
    """The 17 topics and the C callback each one runs (on_ + the payload key in snake case),
    read from the contract's table; any other topic runs on_unknown."""
    with open(CONTRACT) as f:
        topics = json.load(f)["topics"]
    return {t["type"]: "on_" + re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(),
                                      t["payload_key"]) for t in topics}


CALLBACKS = contract_callbacks()


class Fail(Exception):
    pass


# ------------------------------------------------------------ canonical JSON


class Pairs(list):
    """A msgpack map as its pairs, in wire order, duplicates kept."""


def decode_exact(data):
    return msgpack.unpackb(data, raw=False, object_pairs_hook=Pairs, strict_map_key=False, use_list=True)


def _canon_str(b, out):
    out += b'"'
    for c in b:
        if c == 0x22:
            out += b'\\"'
        elif c == 0x5C:
            out += b"\\\\"
        elif c < 0x20:
            out += b"\\u%04x" % c
        else:
            out.append(c)
    out += b'"'


def _canon(v, out):
    if isinstance(v, Pairs):
        last, order = {}, []
        for k, val in v:
            key = (type(k), k)
            if key not in last:
                order.append(k)
            last[key] = val
        out += b"{"
        for i, k in enumerate(order):
            if i:
                out += b","
            _canon(k, out)
            out += b":"
            _canon(last[(type(k), k)], out)
        out += b"}"
    elif isinstance(v, list):
        out += b"["
        for i, x in enumerate(v):
            if i:
                out += b","
            _canon(x, out)
        out += b"]"
    elif v is None:
        out += b"null"
    elif v is True:
        out += b"true"
    elif v is False:
        out += b"false"
    elif isinstance(v, int):
        out += str(v).encode()
    elif isinstance(v, float):
        out += b'"f64:' + struct.pack(">d", v).hex().encode() + b'"'
    elif isinstance(v, str):
        _canon_str(v.encode("utf-8", "surrogateescape"), out)
    elif isinstance(v, bytes):
        out += b'"bin:' + v.hex().encode() + b'"'
    elif isinstance(v, msgpack.ExtType):
        out += b'"ext:%d:' % v.code + v.data.hex().encode() + b'"'
    else:
        raise TypeError(type(v))


def canonical(event_bytes):
    """The canonical JSON (bytes) of an event given as msgpack bytes."""
    out = bytearray()
    _canon(decode_exact(event_bytes), out)
    return bytes(out)


def pairs_get(v, key):
    """The value of the LAST occurrence of key in a map (the canonical rule)."""
    found = None
    if isinstance(v, Pairs):
        for k, val in v:
            if k == key:
                found = val
    return found


def partition_key(ev):
    """CONTRACT.md section 10, computed here independently of the libraries."""
    payload = pairs_get(ev, "payload")
    if isinstance(payload, Pairs) and len(payload) >= 1:
        inner = payload[0][1]
        s = pairs_get(pairs_get(inner, "stream"), "streamId")
        if isinstance(s, str):
            return s
        s = pairs_get(pairs_get(pairs_get(inner, "message"), "stream"), "streamId")
        if isinstance(s, str):
            return s
    i = pairs_get(ev, "id")
    return i if isinstance(i, str) else ""


def fnv1a64(data):
    h = 14695981039346656037
    for c in data:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


# ------------------------------------------------------------------- events


def json_pairs(text):
    """A JSON text as Pairs (key order and duplicates kept) for packing."""
    return json.loads(text, object_pairs_hook=Pairs)


def pack_exact(v):
    """msgpack bytes of a value with Pairs for maps (duplicate keys kept)."""
    if isinstance(v, Pairs) or isinstance(v, dict):
        items = list(v) if isinstance(v, Pairs) else list(v.items())
        n = len(items)
        head = bytes([0x80 | n]) if n < 16 else (b"\xde" + struct.pack(">H", n) if n < 65536
                                                 else b"\xdf" + struct.pack(">I", n))
        return head + b"".join(pack_exact(k) + pack_exact(x) for k, x in items)
    if isinstance(v, list):
        n = len(v)
        head = bytes([0x90 | n]) if n < 16 else (b"\xdc" + struct.pack(">H", n) if n < 65536
                                                 else b"\xdd" + struct.pack(">I", n))
        return head + b"".join(pack_exact(x) for x in v)
    return msgpack.packb(v, use_bin_type=True)


def template_event(name, ident, stream="s1", user=7, **kw):
    """The events the scenarios publish by name: (topic, event value)."""
    init = Pairs([("user", Pairs([("userId", user), ("displayName", "User %s" % user)]))])
    if name == "message":
        ev = Pairs([("id", ident), ("messageId", "m-" + ident), ("timestamp", 1700000000000),
                    ("type", "MESSAGESENT"), ("initiator", init),
                    ("payload", Pairs([("messageSent", Pairs([("message", Pairs([
                        ("messageId", "m-" + ident), ("message", "<div>hello " + ident + "</div>"),
                        ("stream", Pairs([("streamId", stream), ("streamType", "ROOM")]))]))]))]))])
        return "MESSAGESENT", ev
    if name == "room_created":
        ev = Pairs([("id", ident), ("timestamp", 1700000000000), ("type", "ROOMCREATED"), ("initiator", init),
                    ("payload", Pairs([("roomCreated", Pairs([
                        ("stream", Pairs([("streamId", stream)])),
                        ("roomProperties", Pairs([("name", "room " + stream)]))]))]))])
        return "ROOMCREATED", ev
    if name == "raw":  # kw["event"]: a JSON object text, kw["topic"]
        return kw["topic"], json_pairs(kw["event"])
    raise Fail("unknown template %r" % name)


def golden_events():
    """Every valid golden vector as (name, topic, event bytes): a vector that
    is a map is the event itself (its exact bytes); any other value is
    wrapped as {"id": "gv-<name>", "value": <its exact bytes>}; an envelope
    vector gives its event's bytes."""
    with open(VECTORS) as f:
        doc = json.load(f)
    out = []
    for v in doc["valid"]:
        hexs = v["msgpack_hex"]
        for r in v.get("repeat") or []:
            if r.get("msgpack_hex_unit") is not None:
                hexs = hexs.replace(r["placeholder"], r["msgpack_hex_unit"] * r["times"])
        data = bytes.fromhex(hexs)
        if v["envelope"] is not None:
            up = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1)
            up.feed(data)
            ev = None
            for _ in range(up.read_map_header()):
                k = up.unpack()
                start = up.tell()
                up.skip()
                if k == "event":
                    ev = data[start:up.tell()]
            data = ev
        if data[0] in (0xDE, 0xDF) or 0x80 <= data[0] <= 0x8F:
            out.append((v["name"], v["topic"], data))
        else:
            name = "gv-" + v["name"]
            out.append((v["name"], v["topic"],
                        b"\x82" + pack_exact("id") + pack_exact(name) + pack_exact("value") + data))
    return out


# ------------------------------------------------------------------ adapter


class Adapter:
    """One adapter process: stdout lines collected by a thread."""

    def __init__(self, cmd, config_path, log_path, lines, cond):
        self.lines, self.cond = lines, cond  # shared across restarts
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(shlex.split(cmd) + [config_path], stdout=subprocess.PIPE,
                                     stderr=self.log, stdin=subprocess.DEVNULL)
        self.ready = False
        self.blocked = None
        self.stats = None
        self.garbage = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            raw = raw.rstrip(b"\n")
            try:
                obj = json.loads(raw.decode("utf-8"))
            except ValueError:
                obj = None
            with self.cond:
                if isinstance(obj, dict) and "handled" in obj:
                    self.lines.append((raw, obj["handled"]))
                elif obj == {"ready": True}:
                    self.ready = True
                elif isinstance(obj, dict) and "blocked" in obj:
                    self.blocked = obj["blocked"]
                elif isinstance(obj, dict) and "stats" in obj:
                    self.stats = obj["stats"]
                else:
                    self.garbage.append(raw[:200])
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait(self, pred, timeout_s, what):
        end = time.monotonic() + timeout_s
        with self.cond:
            while not pred():
                left = end - time.monotonic()
                if left <= 0:
                    raise Fail("timeout (%.1f s) waiting for %s" % (timeout_s, what))
                if self.proc.poll() is not None and not pred():
                    self.cond.wait(0.2)  # the reader may still hold lines
                    if not pred():
                        raise Fail("adapter exited (status %s) while waiting for %s" % (self.proc.returncode, what))
                    break
                self.cond.wait(min(left, 0.1))

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)
        self.thread.join(10)
        self.log.close()

    def terminate(self, timeout_s):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise Fail("adapter did not exit within %.1f s of SIGTERM" % timeout_s)
        self.thread.join(10)
        self.log.close()
        if self.proc.returncode != 0:
            raise Fail("adapter exit status %s after SIGTERM" % self.proc.returncode)
        if self.stats is None:
            raise Fail("no stats line after SIGTERM")


# ------------------------------------------------------------------- runner


class Run:
    def __init__(self, sc, adapters, scale, tmp, max_golden=None):
        self.sc, self.adapters, self.scale, self.tmp = sc, adapters, scale, tmp
        self.max_golden = max_golden if max_golden is not None else float("inf")
        self.ctx = zmq.Context()
        self.bridges = {}
        self.expected = []  # dicts: listener, callback, topic, gseq, epoch, id, event (bytes), stream
        self.published = {}  # (bridge, epoch, gseq) -> (topic, event bytes)
        self.lines, self.cond = [], threading.Condition()
        self.adapter = None
        self.starts = 0
        self.listeners = [lst["id"] for lst in sc["config"].get("listeners", [])]
        self.default_to = sc.get("to", self.listeners)

    def t(self, seconds):
        return seconds * self.scale

    # ---------------------------------------------------------------- setup

    def config(self, overrides):
        cfg = json.loads(json.dumps(self.sc["config"]))
        cfg.update(overrides)
        opts = cfg.get("options", {})
        for k, v in list(opts.items()):
            if v == "$DIR":
                opts[k] = self.tmp
        cfg["bridges"] = []
        for b in self.sc["bridges"]:
            if not b.get("connect", True):
                continue  # only a replay ROUTER for heartbeats to name (forged_heartbeat)
            fb = self.bridges[b["name"]]
            cfg["bridges"].append({"endpoint": fb.pub_ep,
                                   "replay": fb.rep_ep if b.get("replay", "given") == "given" else None})
        if cfg.get("block_gseq") is None:
            cfg.pop("block_gseq", None)
        path = os.path.join(self.tmp, "CONFIG-%d.json" % self.starts)
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        return path

    def start(self, lang=None, overrides=None):
        if self.adapter:
            raise Fail("script error: start while an adapter runs")
        lang = lang or self.adapters["default"]
        path = self.config(overrides or {})
        self.starts += 1
        self.adapter = Adapter(self.adapters[lang], path, os.path.join(self.tmp, "adapter.log"),
                               self.lines, self.cond)
        self.adapter.wait(lambda: self.adapter.ready, self.t(10), "the ready line")
        for name in self.connected():
            if not self.bridges[name].wait_subscription(self.t(10)):
                raise Fail("no subscription from the adapter on %s" % name)
        time.sleep(0.05)  # the other subscriptions of the same SUB follow at once
        for fb in self.bridges.values():
            fb.drain_subscriptions()

    def connected(self):
        return [b["name"] for b in self.sc["bridges"] if b.get("connect", True)]

    # ------------------------------------------------------------ expecting

    def expect(self, bridge, topic, gseq, event_bytes, to, alt=None):
        fb = self.bridges[bridge]
        ev = decode_exact(event_bytes)
        ident = pairs_get(ev, "id")
        for lst in to:
            if lst not in self.listeners:
                raise Fail("script error: unknown listener %r" % lst)
            self.expected.append({"listener": lst, "callback": CALLBACKS.get(topic, "on_unknown"),
                                  "topic": topic, "gseq": gseq, "epoch": fb.epoch,
                                  "id": ident if isinstance(ident, str) else None,
                                  "event": event_bytes, "stream": partition_key(ev), "alt": alt})

    def expected_count(self):
        """Lines to wait for: each plain entry, and one per (alternative group, listener)."""
        plain = sum(1 for e in self.expected if e["alt"] is None)
        return plain + len({(e["alt"], e["listener"]) for e in self.expected if e["alt"] is not None})

    def publish_one(self, step, topic, event_bytes, to, bridge=None, alt=None):
        fb = self.bridges[bridge or step.get("bridge", "B1")]
        send = not step.get("drop", False)
        _, g, _ = fb.publish(topic, event_bytes, send=send, journal=step.get("journal", True),
                             seq=step.get("seq"), gseq=step.get("gseq"))
        self.published[(fb.name, fb.epoch, g)] = (topic, event_bytes)
        self.expect(fb.name, topic, g, event_bytes, to, alt)
        return g

    def next_id(self, bridge):
        fb = self.bridges[bridge]
        return "%s-%s-%d" % (bridge, fb.epoch, fb.gseq + 1)

    # ---------------------------------------------------------------- steps

    def step(self, s):
        op = s["op"]
        bridge = s.get("bridge", "B1")
        fb = self.bridges.get(bridge)
        if op == "publish":
            for i in range(s.get("n", 1)):
                stream = s.get("stream", "s1")
                if "streams" in s:
                    stream = s["streams"][i % len(s["streams"])]
                ident = s.get("id") or self.next_id(bridge)
                topic, ev = template_event(s.get("template", "message"), ident, stream=stream,
                                           user=s.get("user", 7), topic=s.get("topic"), event=s.get("event"))
                if s.get("pad"):  # a big event: a "pad" string of that many bytes
                    ev.append(("pad", "x" * s["pad"]))
                self.publish_one(s, topic, pack_exact(ev), s.get("to", self.default_to))
        elif op == "publish_both":
            # the same event (same id and type) on several bridges at once: each listener must
            # handle exactly one of the copies, whichever arrives first
            for i in range(s.get("n", 1)):
                ident = "%s-%d" % (s.get("prefix", "both"), i + 1)
                topic, ev = template_event("message", ident)
                for b in s["bridges"]:
                    self.publish_one(s, topic, pack_exact(ev), s.get("to", self.default_to), bridge=b,
                                     alt=ident)
        elif op == "publish_golden":
            for name, topic, data in golden_events():
                if len(data) <= self.max_golden:
                    self.publish_one(s, topic, data, s.get("to", self.default_to))
        elif op == "publish_keys":
            self.publish_keys(s)
        elif op == "heartbeat":
            for i in range(s.get("n", 1)):
                if i:
                    time.sleep(s["every_ms"] / 1000.0)  # the bridge's heartbeat period
                    fb.drain_subscriptions()
                    if s.get("forbid_subscription") and fb.subscriptions > subs:
                        raise Fail("the adapter subscribed again on %s while heartbeats flowed" % bridge)
                subs = fb.subscriptions
                fb.heartbeat(gseq=s.get("gseq"), seqs=s.get("seqs"), replay=self.named_replay(s))
        elif op == "raw":
            fb.raw(self.frames(s))
        elif op == "replay":
            kw = dict(s)
            for k in ("op", "bridge"):
                kw.pop(k, None)
            if "damaged" in kw:
                kw["damaged"] = tuple(kw["damaged"]) if kw["damaged"] else None
            fb.set_faults(**kw)
        elif op == "epoch":
            fb.new_epoch(s["epoch"])
        elif op == "wait_handled":
            n = s["n"]
            limit = s.get("timeout_s", 10) if s.get("unscaled") else self.t(s.get("timeout_s", 10))
            self.adapter.wait(lambda: len(self.lines) >= n, limit,
                              "%d handled lines (have %d)" % (n, len(self.lines)))
        elif op == "wait_requests":
            end = time.monotonic() + self.t(s.get("timeout_s", 10))
            with fb.mu:
                while len(fb.requests) < s["n"]:
                    if time.monotonic() > end:
                        raise Fail("timeout waiting for %d replay requests on %s (have %d)"
                                   % (s["n"], bridge, len(fb.requests)))
                    fb.mu.wait(0.05)
        elif op == "wait_subscription":
            if not fb.wait_subscription(self.t(s.get("timeout_s", 10))):
                raise Fail("no new subscription on %s" % bridge)
        elif op == "wait_blocked":
            self.adapter.wait(lambda: self.adapter.blocked is not None, self.t(10), "the blocked line")
        elif op == "wait_checkpoint":
            self.wait_checkpoint(s)
        elif op == "write_file":
            self.write_file(s)
        elif op == "kill":
            self.adapter.kill()
            self.adapter = None
        elif op == "start":
            self.start(lang=s.get("lang"), overrides=s.get("config", {}))
        elif op == "expect_again":
            topic, data = self.published[(bridge, fb.epoch, s["gseq"])]
            self.expect(bridge, topic, s["gseq"], data, s.get("to", self.default_to))
        elif op == "sleep_ms":  # only where no signal exists (e.g. a silence)
            time.sleep(self.t(s["ms"] / 1000.0))
        else:
            raise Fail("script error: unknown op %r" % op)

    def named_replay(self, s):
        """A heartbeat's replay claim: `replay` as given, or `replay_of` (another fake bridge's
        ROUTER) with its host replaced by `replay_host` (forged_heartbeat); None = the truth."""
        if "replay_of" in s:
            ep = self.bridges[s["replay_of"]].rep_ep  # tcp://127.0.0.1:PORT
            port = ep[ep.rindex(":"):]
            return "tcp://" + s.get("replay_host", "127.0.0.1") + port
        return s.get("replay")

    def publish_keys(self, s):
        """Group partitioning: one event per key (a streamId, or an id when
        the key is "id:..."), handled by the listeners only when the scenario
        says this member owns it; the runner's own FNV-1a checks the file."""
        members, member = s["members"], s["member"]
        keys = []
        if s.get("golden_keys"):
            with open(VECTORS) as f:
                for k in json.load(f)["keys"]:
                    keys.append({"event": k["json"], "member_of_3": k["partition_of_3"],
                                 "partition_key": k["partition_key"]})
        keys += s.get("keys", [])
        for k in keys:
            if "event" in k:
                ev = json_pairs(k["event"])
                topic = pairs_get(ev, "type") if isinstance(pairs_get(ev, "type"), str) else "UNKNOWN"
                key = k["partition_key"]
            elif k["key"].startswith("id:"):
                ident = k["key"][3:]
                topic, ev = template_event("raw", ident, topic="CONNECTIONREQUESTED",
                                           event=json.dumps({"id": ident, "type": "CONNECTIONREQUESTED",
                                                             "initiator": {"user": {"userId": 7}},
                                                             "payload": {"connectionRequested": {}}}))
                key = ident
            else:
                key = k["key"]
                topic, ev = template_event("message", self.next_id(s.get("bridge", "B1")), stream=key)
            if partition_key(ev) != key:
                raise Fail("script error: partition key of %r is %r" % (k, partition_key(ev)))
            want = k["member_of_%d" % members]
            if fnv1a64(key.encode()) % members != want:
                raise Fail("script error: %r is member %d of %d, not %d"
                           % (key, fnv1a64(key.encode()) % members, members, want))
            to = s.get("to", self.default_to) if want == member else []
            self.publish_one(s, topic, pack_exact(ev), to)

    def frames(self, s):
        out = []
        for f in s["frames"]:
            if "text" in f:
                out.append(f["text"].encode())
            elif "hex" in f:
                out.append(bytes.fromhex(f["hex"]))
            elif "repeat_hex" in f:
                out.append(bytes.fromhex(f.get("prefix_hex", "")) + bytes.fromhex(f["repeat_hex"]) * f["times"]
                           + bytes.fromhex(f.get("suffix_hex", "")))
            elif "map" in f:  # a msgpack map from JSON (ints exact), "$EPOCH" -> the bridge's epoch
                fb = self.bridges[s.get("bridge", "B1")]
                m = json.loads(json.dumps(f["map"]).replace('"$EPOCH"', json.dumps(fb.epoch)),
                               object_pairs_hook=Pairs)
                out.append(pack_exact(m))
            else:
                raise Fail("script error: frame %r" % f)
        return out

    def write_file(self, s):
        """A file in $DIR (a checkpoint left by an earlier run), "$EPOCH" -> the bridge's epoch;
        written whole, then renamed, as the libraries write theirs."""
        fb = self.bridges[s.get("bridge", "B1")]
        path = os.path.join(self.tmp, s["file"])
        with open(path + ".tmp", "w") as f:
            f.write(s["text"].replace("$EPOCH", fb.epoch))
        os.rename(path + ".tmp", path)

    def wait_checkpoint(self, s):
        path = os.path.join(self.tmp, s["file"])
        end = time.monotonic() + self.t(s.get("timeout_s", 10))
        text = ""
        while time.monotonic() < end:
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                text = ""
            fb = self.bridges[s.get("bridge", "B1")]
            if all(c.replace("$EPOCH", fb.epoch) in text for c in s["contains"]):
                return
            time.sleep(0.01)  # the file's contents are the signal
        raise Fail("checkpoint %s never contained %r (last: %r)" % (s["file"], s["contains"], text[-200:]))

    # -------------------------------------------------------------- compare

    def compare(self):
        exp = self.sc.get("expect", {})
        by_key = {}
        for e in self.expected:
            by_key.setdefault((e["listener"], e["epoch"], e["gseq"]), []).append(e)
        seen, alts = {}, {}
        for raw, h in self.lines:
            key = (h.get("listener"), h.get("epoch"), h.get("gseq"))
            seen[key] = seen.get(key, 0) + 1
            want = by_key.get(key)
            if not want:
                raise Fail("unexpected handled line: %s" % raw[:300].decode("utf-8", "replace"))
            if seen[key] > len(want):
                raise Fail("handled %d times (want %d): %s" % (seen[key], len(want),
                                                               raw[:300].decode("utf-8", "replace")))
            e = want[0]
            if e["alt"] is not None:
                g = (e["alt"], e["listener"])
                alts[g] = alts.get(g, 0) + 1
                if alts[g] > 1:
                    raise Fail("listener %s handled two copies of %s (the second from epoch %s)"
                               % (e["listener"], e["alt"], e["epoch"]))
            for f in ("callback", "topic", "id"):
                if h.get(f) != e[f]:
                    raise Fail("listener %s gseq %s: %s is %r, want %r" % (key[0], key[2], f, h.get(f), e[f]))
            ctx = h.get("context")
            mid = e["id"] if e["id"] is not None else "None"
            if (not isinstance(ctx, str) or ctx.count("/") < 2 or ctx.index("/") == 0 or ctx.endswith("/")
                    or ctx[ctx.index("/") + 1:ctx.rindex("/")] != mid):
                raise Fail("listener %s gseq %s: context %r, want <worker>/%s/<listener>" % (key[0], key[2], ctx, mid))
            tail = b',"event":' + canonical(e["event"]) + b"}}"
            if not raw.endswith(tail):
                got = raw[raw.find(b',"event":'):]
                n = next((i for i in range(min(len(got), len(tail))) if got[i] != tail[i]), min(len(got), len(tail)))
                raise Fail("listener %s gseq %s: event differs at byte %d: got %r, want %r"
                           % (key[0], key[2], n, got[max(0, n - 40):n + 40], tail[max(0, n - 40):n + 40]))
        missing = [k for k, v in by_key.items() if v[0]["alt"] is None and seen.get(k, 0) < len(v)]
        missing += [(g[1], "either", g[0]) for g in {(e["alt"], e["listener"]) for e in self.expected
                                                     if e["alt"] is not None} if alts.get(g) != 1]
        if missing:
            missing.sort(key=lambda k: (str(k[0]), str(k[1]), k[2]))
            raise Fail("%d expected handled line(s) missing, first: listener %s epoch %s gseq %s (handled %d of %d)"
                       % (len(missing), missing[0][0], missing[0][1], missing[0][2], len(self.lines),
                          self.expected_count()))
        for rule in exp.get("order", []) + exp.get("order_by_lang", {}).get(self.adapters.get("default"), []):
            self.check_order(rule)
        stats = self.adapter_stats
        for k, v in exp.get("stats", {}).items():
            if k not in stats:
                raise Fail("stats: no counter %r" % k)
            if stats[k] != v:
                raise Fail("stats: %s is %s, want %s" % (k, stats[k], v))
        # counters equal to a count of the expected lines (they follow --max-golden-bytes)
        derived = {"handled": len(self.expected),
                   "handled_unknown": sum(e["callback"] == "on_unknown" for e in self.expected)}
        for k, v in exp.get("stats_derived", {}).items():
            if stats.get(k) != derived[v]:
                raise Fail("stats: %s is %s, want %s (%s)" % (k, stats.get(k), derived[v], v))
        for k, v in exp.get("stats_min", {}).items():
            if stats.get(k, -1) < v:
                raise Fail("stats: %s is %s, want at least %s" % (k, stats.get(k), v))
        for name, n in exp.get("bridge_requests", {}).items():
            if self.bridges[name].request_count() != n:
                raise Fail("bridge %s read %d replay requests, want %d" % (name, self.bridges[name].request_count(), n))
        for fname in exp.get("files", []):
            if not os.path.exists(os.path.join(self.tmp, fname)):
                raise Fail("no file %s in the checkpoint folder (have %s)" % (fname, os.listdir(self.tmp)))

    def check_order(self, rule):
        order = {lst: i for i, lst in enumerate(self.listeners)}
        streams = {}
        for e in self.expected:
            streams[(e["epoch"], e["gseq"])] = e["stream"]
        if rule == "gseq":
            # per (listener, epoch): gseqs strictly increasing
            last = {}
            for raw, h in self.lines:
                k = (h["listener"], h["epoch"])
                if k in last and h["gseq"] <= last[k]:
                    raise Fail("order: listener %s handled gseq %s after %s (epoch %s)"
                               % (k[0], h["gseq"], last[k], k[1]))
                last[k] = h["gseq"]
        elif rule == "epochs":
            # per listener: an epoch left is never seen again (a bridge's epochs in turn)
            cur, done = {}, {}
            for raw, h in self.lines:
                lst, ep = h["listener"], h["epoch"]
                if cur.get(lst) != ep:
                    if ep in done.setdefault(lst, set()):
                        raise Fail("order: listener %s went back to epoch %s" % (lst, ep))
                    if lst in cur:
                        done[lst].add(cur[lst])
                    cur[lst] = ep
        elif rule == "stream":
            # per stream: (gseq, listener in subscription order) strictly increasing
            last = {}
            for raw, h in self.lines:
                s = (h["epoch"], streams[(h["epoch"], h["gseq"])])
                cur = (h["gseq"], order[h["listener"]])
                if s in last and cur <= last[s]:
                    raise Fail("order: stream %s: gseq %s listener %s after gseq %s listener %s"
                               % (s[1], cur[0], h["listener"], last[s][0], self.listeners[last[s][1]]))
                last[s] = cur
        elif rule == "stream_worker":
            # per stream: one worker (the context's first part), never round-robin
            worker = {}
            for raw, h in self.lines:
                s = (h["epoch"], streams[(h["epoch"], h["gseq"])])
                w = h["context"].split("/", 1)[0]
                if worker.setdefault(s, w) != w:
                    raise Fail("order: stream %s ran on %s and on %s" % (s[1], worker[s], w))
        else:
            raise Fail("script error: order rule %r" % rule)

    # ------------------------------------------------------------------ run

    def run(self):
        try:
            for b in self.sc["bridges"]:
                self.bridges[b["name"]] = fakebridge.FakeBridge(
                    self.ctx, b["name"], b.get("epoch", "E1"), advertise=b.get("advertise", True),
                    interval=b.get("interval", 60000), sndhwm=b.get("sndhwm", 0))
            if self.sc.get("autostart", True):
                self.start()
            for s in self.sc["steps"]:
                self.step(s)
            if not self.adapter:
                raise Fail("script error: no adapter running at the end")
            n = self.expected_count()
            self.adapter.wait(lambda: len(self.lines) >= n, self.t(self.sc.get("final_timeout_s", 10)),
                              "all %d expected handled lines (have %d)" % (n, len(self.lines)))
            self.adapter.terminate(self.t(10))
            self.adapter_stats = self.adapter.stats
            if self.adapter.garbage:
                raise Fail("stdout lines that are not the protocol's: %r" % self.adapter.garbage[:3])
            self.compare()
        finally:
            if self.adapter:
                try:
                    self.adapter.kill()
                except Exception:
                    pass
            for fb in self.bridges.values():
                fb.close()
            self.ctx.destroy(0)


def load(name):
    path = name if name.endswith(".json") else os.path.join(HERE, "scenarios", name + ".json")
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", help="the adapter command (CONFIG.json is appended)")
    ap.add_argument("--lang", default="c", choices=["c", "python", "node"])
    ap.add_argument("--scenario", action="append", help="scenario name (default: all)")
    ap.add_argument("--cross", help="cross-language checkpoint resume: e.g. c,python,node,c")
    ap.add_argument("--adapter-c")
    ap.add_argument("--adapter-python")
    ap.add_argument("--adapter-node")
    ap.add_argument("--time-scale", type=float, default=float(os.environ.get("CONFORMANCE_TIME_SCALE", "1")),
                    help="multiply every timeout (sanitizer builds)")
    ap.add_argument("--max-golden-bytes", type=int,
                    help="publish only the golden vectors whose event is at most this big (ThreadSanitizer builds: "
                         "TSan takes every byte the library reads from a libzmq buffer for a suppressed race, and "
                         "slows to minutes on the 64 KiB..300 KiB vectors)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the adapter's final counters")
    args = ap.parse_args()

    adapters = {"c": args.adapter_c, "python": args.adapter_python, "node": args.adapter_node}
    if args.cross:
        chain = args.cross.split(",")
        for lang in chain:
            if not adapters.get(lang):
                ap.error("--cross needs --adapter-%s" % lang)
        names = args.scenario or ["cross_checkpoint"]
        jobs = [(n, dict(adapters, default=chain[0], chain=chain)) for n in names]
    else:
        if not args.adapter:
            ap.error("--adapter is required")
        adapters[args.lang] = args.adapter
        adapters["default"] = args.lang
        names = args.scenario or sorted(f[:-5] for f in os.listdir(os.path.join(HERE, "scenarios"))
                                        if f.endswith(".json"))
        jobs = []
        for n in names:
            jobs.append((n, adapters))
    failed = 0
    t_all = time.monotonic()
    for name, ad in jobs:
        sc = load(name)
        if sc.get("cross"):  # alone: every restart is the same library
            sc = cross_script(sc, ad.get("chain") or [ad["default"]] * 16)
        tmp = tempfile.mkdtemp(prefix="conformance-%s-" % os.path.basename(name).replace(".json", ""))
        t0 = time.monotonic()
        try:
            r = Run(sc, ad, args.time_scale, tmp, args.max_golden_bytes)
            try:
                r.run()
            finally:
                if args.verbose and getattr(r, "adapter_stats", None):
                    print("  stats: " + json.dumps({k: v for k, v in r.adapter_stats.items() if v}), flush=True)
            known = sc.get("known_failures", {}).get(lang_of(ad))
            print("%s %s (%.2f s)" % ("XPASS" if known else "PASS", name, time.monotonic() - t0), flush=True)
            ok = True
        except Fail as e:
            ok = False
            known = sc.get("known_failures", {}).get(lang_of(ad))
            if known:
                print("XFAIL %s (%.2f s): %s\n  known defect: %s" % (name, time.monotonic() - t0, e, known), flush=True)
                ok = True  # expected: no log tail, no folder kept
            else:
                failed += 1
                print("FAIL %s (%.2f s): %s" % (name, time.monotonic() - t0, e), flush=True)
            log = os.path.join(tmp, "adapter.log")
            if not ok and os.path.exists(log):
                with open(log, "rb") as f:
                    tail = f.read()[-1500:].decode("utf-8", "replace")
                print("  adapter stderr (tail):\n    " + tail.replace("\n", "\n    "), flush=True)
        if ok and not args.keep:
            subprocess.run(["rm", "-rf", tmp])
        elif not ok:
            print("  files kept in %s" % tmp, flush=True)
    print("%d scenario(s), %d failed, %.1f s" % (len(jobs), failed, time.monotonic() - t_all), flush=True)
    return 1 if failed else 0


def lang_of(adapters):
    return "cross" if "chain" in adapters else adapters["default"]


def cross_script(sc, chain):
    """A cross scenario names its restarts {"op": "start", "lang": "$NEXT"}:
    the first start is chain[0], each later one the next of the chain."""
    sc = json.loads(json.dumps(sc))
    k = 1
    for s in sc["steps"]:
        if s.get("op") == "start" and s.get("lang") == "$NEXT":
            if k >= len(chain):
                raise SystemExit("the chain is shorter than the scenario's restarts")
            s["lang"] = chain[k]
            k += 1
    return sc


if __name__ == "__main__":
    sys.exit(main())
