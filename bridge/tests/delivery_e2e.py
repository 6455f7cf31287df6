#!/usr/bin/python3
"""End-to-end tests of the delivery guarantees: the real dfbridge (journal, replay, heartbeat,
dedupe) against the real dfpod on loopback, with pyzmq and msgpack from Debian.

Each case (--case NAME, one ctest each) starts its own dfpod and dfbridge with a fresh
bridge.stateDir. Waits are bounded and synchronise on signals (the pod's port file and counters,
a heartbeat received, a replay answer, the bridge's log line), never on sleeps.
Usage: delivery_e2e.py --dfpod PATH --dfbridge PATH --case NAME
"""
import os
import re
import signal
import sys
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, check, free_port, sub_socket  # noqa: E402
from dftest import recv_raw as recv, unpack as env, wait_until as wait_for  # noqa: E402

dftest.WAIT_TIMEOUT = 30.0


def new_pod(*extra):
    return dftest.Pod(*extra, timeout=60)


def new_bridge(pod, state, replay_port, extra=""):
    """A dfbridge with bridge.stateDir state and its replay endpoint on replay_port; extra: lines
    of the bridge section."""
    br = Bridge(pod, datafeed="datafeed:\n  version: v2\n  retry: {initialIntervalMillis: 50, "
                "maxIntervalMillis: 400}\n", retry="",
                bridge_extra="  stateDir: %s\n  replay: tcp://127.0.0.1:%d\n%s"
                % (state, replay_port, extra), read_timeout_ms=None, connect_timeout_ms=None)
    br.replay = "tcp://127.0.0.1:%d" % replay_port
    return br


def stop(br):
    """SIGTERM; the exit status (still running after 10 s: a failure)."""
    return br.terminate()[0]


def state_dir():
    return os.path.join(dftest.CTX.tmp, "state")


def sub(endpoints, topics=(b"",), rcvhwm=0):
    return sub_socket(endpoints, topics, rcvhwm)


def wait_heartbeat(sock, timeout_ms=20000):
    """The first _hb proves the subscription reached the bridge (no probe needed)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        m = recv(sock, 500)
        if m and m[0] == "_hb":
            return env(m[1])
    check(False, "a heartbeat within %d ms" % timeout_ms)
    return None


def drain(sock, gseq, into, timeout_ms=30000):
    """Collects messages until a heartbeat with gseq >= gseq: PUB keeps order per subscriber,
    so everything published before it has arrived by then (or was dropped). Returns the
    heartbeat."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        m = recv(sock, 1000)
        if m is None:
            continue
        if m[0] != "_hb":
            into.append(m)
        elif env(m[1])["gseq"] >= gseq:
            return env(m[1])
    check(False, "a heartbeat with gseq >= %d" % gseq)
    return None


def event(i, typ="MESSAGESENT", pad=0):
    return dftest.event(i, typ, prefix="dv", payload={"messageSent": {"message": {
        "stream": {"streamId": "s%d" % (i % 7)}, "text": "x" * pad}}})


TYPES = ["MESSAGESENT", "ROOMCREATED", "USERJOINEDROOM"]


class Replay:
    def __init__(self, endpoint):
        self.sock = dftest.CTX.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.req = 0

    def ask(self, **kw):
        """One request; returns ([(topic, body bytes)], end marker dict)."""
        self.req += 1
        req = {"v": 1, "req": self.req}
        req.update(kw)
        self.sock.send(msgpack.packb(req, use_bin_type=True))
        out = []
        while True:
            if not self.sock.poll(20000):
                check(False, "replay answer to %r" % req)
                return out, {}
            topic, body = self.sock.recv_multipart()
            if topic == b"_end":
                end = env(body)
                check(end.get("req") == self.req, "end marker carries req %d" % self.req)
                return out, end
            out.append((topic.decode(), body))

    def all_from(self, gseq=1, **kw):
        """Follows `more` to the head; returns every (topic, body)."""
        out = []
        while True:
            msgs, end = self.ask(from_gseq=gseq, **kw)
            out += msgs
            if end.get("status") != "ok" or not end.get("more"):
                return out, end
            gseq = end["last_gseq"] + 1


def wait_acked(pod, n, timeout=60):
    return wait_for(lambda: pod.counters()["acked"] >= n and pod.counters()["pending"] == 0,
                    "the pod to see %d events acknowledged" % n, timeout)


# ---- cases -----------------------------------------------------------------------------------

def case_replay_e2e():
    """A late joiner asks from gseq 1: every event, in order, exactly the bytes published;
    topic+seq, topics filter, limit/more, wrong epoch, bad request, gone (retention)."""
    pod = new_pod("--hold-ms", "2000")
    state = state_dir()
    br = new_bridge(pod, state, free_port(),
                "  heartbeatMillis: 200\n  journal:\n    segmentBytes: 65536\n"
                "    maxBytes: 1048576\n")
    live = sub([br.endpoint])
    hb = wait_heartbeat(live)
    epoch = hb and hb["epoch"]
    n = 3000
    pod.events([event(i, TYPES[i % 3], pad=300) for i in range(n)])
    got = []
    while len(got) < n:
        m = recv(live)
        if m is None:
            break
        if m[0] != "_hb":
            got.append(m)
    check(len(got) == n, "live subscriber got %d of %d" % (len(got), n))
    rp = Replay(br.replay)
    # oldest retained: 1 MiB of ~500-byte records keeps about 2000 of 3000
    msgs, end = rp.ask(from_gseq=1)
    check(end.get("status") == "error" and end.get("code") == "gone"
          and end.get("oldest_gseq", 0) > 1 and end.get("head_gseq") == n
          and end.get("epoch") == epoch, "from_gseq 1 is gone after retention: %r" % end)
    oldest = end.get("oldest_gseq", 1)
    allm, end = rp.all_from(oldest)
    check(len(allm) == n - oldest + 1 and end.get("last_gseq") == n and not end.get("more"),
          "replay from oldest %d gives %d messages" % (oldest, len(allm)))
    check(allm == got[oldest - 1:], "replayed bytes equal the published bytes")
    check([env(b)["gseq"] for _, b in allm] == list(range(oldest, n + 1)),
          "replay in gseq order without a hole")
    msgs, end = rp.ask(from_gseq=n - 4, limit=3)
    check(len(msgs) == 3 and end["count"] == 3 and end["more"] and end["last_gseq"] == n - 2,
          "limit 3 gives 3 and more: %r" % end)
    msgs, end = rp.ask(topic="ROOMCREATED", from_seq=900)
    last = env(got[-1][1]) if got else {}
    rc_last = max(env(b)["seq"] for t, b in got if t == "ROOMCREATED")
    check([env(b)["seq"] for _, b in msgs] == list(range(900, rc_last + 1))
          and all(t == "ROOMCREATED" for t, _ in msgs) and end["last_seq"] == rc_last,
          "topic ROOMCREATED from seq 900: %d messages" % len(msgs))
    msgs, end = rp.ask(from_gseq=n - 99, topics=["USERJOINEDROOM"])
    want = [b for t, b in got[n - 100:] if t == "USERJOINEDROOM"]
    check([b for _, b in msgs] == want, "topics filter: %d USERJOINEDROOM" % len(want))
    msgs, end = rp.ask(from_gseq=1, epoch="19700101T000000Z-00000000")
    check(end.get("code") == "epoch" and not msgs, "wrong epoch refused")
    msgs, end = rp.ask(from_gseq="1")
    check(end.get("code") == "bad_request" and "error" in end, "bad request refused")
    check(last.get("epoch") == epoch, "events carry the heartbeat's epoch")
    rc = stop(br)
    check(rc == 0, "bridge exit 0 (got %r)" % rc)
    check(br.final_counter("replay requests") == rp.req,
          "replay requests counted: %r" % br.final_counter("replay requests"))


def case_heartbeat_held():
    """Heartbeats every 200 ms while the read is held (no event), then exact gseq/seqs."""
    pod = new_pod("--hold-ms", "30000")
    br = new_bridge(pod, state_dir(), free_port(), "  heartbeatMillis: 200\n")
    s = sub([br.endpoint], topics=(b"_hb",))
    first = wait_heartbeat(s)
    wait_for(lambda: pod.counters()["held"] >= 1, "a held read")
    beats = []
    t0 = time.monotonic()
    while len(beats) < 8:
        m = recv(s, 3000)
        if m is None:
            break
        beats.append(env(m[1]))
    elapsed = time.monotonic() - t0
    check(len(beats) == 8, "8 heartbeats during the held read (got %d)" % len(beats))
    check(pod.counters()["held"] >= 1 and pod.counters()["served"] == 0,
          "the read was held the whole time, no event served")
    gaps = [b["ts"] - a["ts"] for a, b in zip(beats, beats[1:])]
    check(all(150 <= g <= 1500 for g in gaps) and 1.2 <= elapsed <= 10,
          "cadence ~200 ms while held: %r" % gaps)
    check(all(b["gseq"] == 0 and b["seqs"] == {} and b["interval"] == 200
              and b["replay"] == br.replay and b["v"] == 1 for b in beats + [first]),
          "idle heartbeats: gseq 0, no seqs, interval, replay endpoint")
    check(set(beats[0]) == {"v", "epoch", "gseq", "seqs", "ts", "interval", "replay"},
          "heartbeat keys: %r" % sorted(beats[0]))
    pod.events([event(i, TYPES[i % 3]) for i in range(10)])  # 4 MS, 3 RC, 3 UJR
    wait_for(lambda: pod.counters()["acked"] >= 10, "10 events acknowledged")
    want = {"MESSAGESENT": 4, "ROOMCREATED": 3, "USERJOINEDROOM": 3}
    ok = None
    for _ in range(20):
        m = recv(s, 3000)
        if m and env(m[1])["gseq"] == 10:
            ok = env(m[1])
            break
    check(ok is not None and ok["seqs"] == want and ok["epoch"] == first["epoch"],
          "heartbeat after the events: gseq 10, seqs %r (got %r)" % (want, ok))
    wait_for(lambda: pod.counters()["held"] >= 1, "held again")
    more = [env(recv(s, 3000)[1]) for _ in range(3)]
    check(all(b["gseq"] == 10 and b["seqs"] == want for b in more),
          "later heartbeats keep gseq 10 and the seqs (no seq consumed by a heartbeat)")
    check(stop(br) == 0, "bridge exit 0")


def case_kill9():
    """kill -9 in the middle of a stream, restart: same epoch, counters continue, Symphony's
    redelivery is deduplicated (exact count), no event published twice, every event in the
    journal exactly once."""
    pod = new_pod("--hold-ms", "1000", "--visibility-ms", "1500", "--batch-max", "50")
    state = state_dir()
    replay_port = free_port()
    br = new_bridge(pod, state, replay_port,
                    "  heartbeatMillis: 200\n  journal:\n    fsync: always\n")
    s1 = sub([br.endpoint])
    hb = wait_heartbeat(s1)
    epoch = hb and hb["epoch"]
    n = 4000
    pod.events([event(i, TYPES[i % 3], pad=200) for i in range(n)])
    received = []
    while len(received) < 1500:
        m = recv(s1)
        if m is None:
            break
        if m[0] != "_hb":
            received.append(m)
    br.proc.send_signal(signal.SIGKILL)
    br.proc.wait()
    # A read the dead bridge had sent acknowledges on arrival; once the pod has noticed the
    # departed client (no read held), the count of acknowledged events is final.
    wait_for(lambda: pod.counters()["held"] == 0, "the pod to notice the dead bridge")
    acked_at_kill = pod.counters()["acked"]
    while True:  # what had left the socket before the kill
        m = recv(s1, 300)
        if m is None:
            break
        if m[0] != "_hb":
            received.append(m)
    br2 = new_bridge(pod, state, replay_port,
                     "  heartbeatMillis: 200\n  journal:\n    fsync: always\n")
    s2 = sub([br2.endpoint])
    hb2 = wait_heartbeat(s2)
    check(hb2 and hb2["epoch"] == epoch, "same epoch after kill -9 (%r, %r)" %
          (epoch, hb2 and hb2["epoch"]))
    m = wait_for(lambda: re.search(r"continues at gseq (\d+)", br2.text()), "recovery log line")
    journaled_before = int(m.group(1)) - 1 if m else -1
    check(hb2 and hb2["gseq"] >= journaled_before, "heartbeat gseq continues")
    wait_acked(pod, n, 90)
    drain(s2, n, received)
    check(stop(br2) == 0, "bridge2 exit 0")
    deduped = br2.final_counter("deduped")
    print("kill -9 after %d journaled, %d acknowledged; deduped %r after restart"
          % (journaled_before, acked_at_kill, deduped))
    check(deduped == journaled_before - acked_at_kill,
          "deduped %r == journaled %d - acked %d" % (deduped, journaled_before, acked_at_kill))
    ids = [env(b)["event"]["id"] for _, b in received]
    check(len(ids) == len(set(ids)), "no event published twice (%d received, %d distinct)"
          % (len(ids), len(set(ids))))
    # Every event in the journal exactly once, gseq 1..n, per-topic seq 1..k.
    br3 = new_bridge(pod, state, replay_port, "  heartbeatMillis: 0\n")
    rp = Replay(br3.replay)
    allm, end = rp.all_from(1)
    envs = [env(b) for _, b in allm]
    check([e["gseq"] for e in envs] == list(range(1, n + 1)), "journal gseq 1..%d" % n)
    check(end.get("head_gseq") == n and end.get("epoch") == epoch,
          "after restarts the end marker says head %d: %r" % (n, end))
    check(sorted(e["event"]["id"] for e in envs) == sorted("dv-%d" % i for i in range(n)),
          "every event in the journal exactly once")
    check(all(e["epoch"] == epoch for e in envs), "one epoch across the restart")
    for t in TYPES:
        seqs = [e["seq"] for (tt, _), e in zip(allm, envs) if tt == t]
        check(seqs == list(range(1, len(seqs) + 1)), "seq of %s contiguous" % t)
    pubd = {env(b)["gseq"]: b for _, b in received}
    check(all(pubd[e["gseq"]] == b for (_, b), e in zip(allm, envs) if e["gseq"] in pubd),
          "published bytes equal journaled bytes")
    check(stop(br3) == 0, "bridge3 exit 0")


def case_feed_expiry():
    """A 400 (feed expired) in the middle: a new feed, the same epoch, counters continue."""
    pod = new_pod("--hold-ms", "1000")
    br = new_bridge(pod, state_dir(), free_port(), "  heartbeatMillis: 200\n")
    s = sub([br.endpoint])
    hb = wait_heartbeat(s)
    pod.events([event(i, TYPES[i % 3]) for i in range(100)])
    wait_acked(pod, 100)
    pod.admin("POST", "expire-feed", {})
    pod.events([event(i, TYPES[i % 3]) for i in range(100, 200)])
    wait_for(lambda: pod.counters()["feeds_created"] >= 2, "a new feed")
    wait_acked(pod, 200)
    got = []
    while len(got) < 200:
        m = recv(s, 5000)
        if m is None:
            break
        if m[0] != "_hb":
            got.append(env(m[1]))
    check([e["gseq"] for e in got] == list(range(1, 201)), "gseq 1..200 across the new feed")
    check(all(e["epoch"] == hb["epoch"] for e in got), "same epoch across the new feed")
    check([e["event"]["id"] for e in got] == ["dv-%d" % i for i in range(200)], "all in order")
    rp = Replay(br.replay)
    allm, end = rp.all_from(1)
    check(len(allm) == 200 and end["head_gseq"] == 200, "journal has the 200")
    check(stop(br) == 0, "bridge exit 0")


def slow_subscriber(sndhwm, fast_gets_all):
    """50 000 events of ~1.2 KB; a subscriber stalled (RCVHWM 20, small RCVBUF) during the
    flood shows seq gaps and replay returns every missing message, byte for byte; the bridge is
    not slowed (every event acknowledged upstream before the stalled one reads a byte); a
    reading subscriber gets every message directly when sndhwm covers a batch burst, else
    fills its gaps from replay too."""
    pod = new_pod("--hold-ms", "1000", "--batch-max", "500")
    n = 50000
    br = new_bridge(pod, state_dir(), free_port(),
                "  sndhwm: %d\n  heartbeatMillis: 500\n  journal:\n    fsync: never\n" % sndhwm)
    fast = sub([br.endpoint])
    slow = sub([br.endpoint], rcvhwm=20)
    slow.setsockopt(zmq.RCVBUF, 65536)
    wait_heartbeat(fast)
    wait_heartbeat(slow)  # joined; from now on it reads nothing until the flood is over
    t0 = time.monotonic()
    for k in range(0, n, 5000):
        pod.events([event(i, TYPES[i % 3], pad=1000) for i in range(k, k + 5000)])
    fast_msgs = []
    drain(fast, n, fast_msgs, 120000)
    wait_acked(pod, n, 120)
    print("sndhwm %d: %d events acknowledged upstream in %.1f s while a subscriber was stalled"
          % (sndhwm, n, time.monotonic() - t0))
    rp = Replay(br.replay)

    def fill(msgs, who):
        have = {env(b)["gseq"]: (t, b) for t, b in msgs}
        missing = sorted(set(range(1, n + 1)) - set(have))
        gaps = 0
        for t in TYPES:
            seqs = sorted(env(b)["seq"] for (tt, b) in have.values() if tt == t)
            gaps += sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1)
        print("%s subscriber: %d received, %d missing, %d seq gaps" %
              (who, len(have), len(missing), gaps))
        filled, i = 0, 0
        while i < len(missing):
            got, end = rp.ask(from_gseq=missing[i], limit=1000)
            if end.get("status") != "ok" or not got:
                check(False, "replay from %d: %r" % (missing[i], end))
                break
            for t, b in got:
                g = env(b)["gseq"]
                if g not in have:
                    have[g] = (t, b)
                    filled += 1
            while i < len(missing) and missing[i] in have:
                i += 1
        check(filled == len(missing), "%s: replay filled every missing message (%d of %d)"
              % (who, filled, len(missing)))
        return have, len(missing), gaps

    fast_all, fast_missing, _ = fill(fast_msgs, "reading")
    if fast_gets_all:
        check(fast_missing == 0, "the reading subscriber got every message directly")
    slow_msgs = []
    hb = drain(slow, n, slow_msgs, 60000) or {}
    last = {}
    for t, b in slow_msgs:
        last[t] = max(last.get(t, 0), env(b)["seq"])
    # A loss is visible as a seq gap, or (the last messages lost) as a heartbeat whose seqs are
    # ahead of what arrived.
    behind = sum(1 for t in TYPES if hb.get("seqs", {}).get(t, 0) > last.get(t, 0))
    slow_all, slow_missing, gaps = fill(slow_msgs, "stalled")
    check(slow_missing > 0 and (gaps > 0 or behind > 0),
          "the stalled subscriber sees its loss (%d seq gaps, %d topics behind the heartbeat)"
          % (gaps, behind))
    check(sorted(slow_all) == list(range(1, n + 1)) and
          all(slow_all[g] == fast_all[g] for g in slow_all),
          "after replay both hold the same %d messages, byte for byte" % n)
    check(stop(br) == 0, "bridge exit 0")


def case_slow_subscriber():
    slow_subscriber(20, False)


def case_slow_subscriber_burst():
    # 10000 of slack: the reading subscriber keeps up even on a loaded machine; the stalled one
    # still falls ~35 000 messages behind.
    slow_subscriber(10000, True)


CASES = {
    "replay_e2e": case_replay_e2e,
    "heartbeat_held": case_heartbeat_held,
    "journal_kill9": case_kill9,
    "journal_feed_expiry": case_feed_expiry,
    "replay_slow_subscriber": case_slow_subscriber,
    "replay_slow_subscriber_hwm10000": case_slow_subscriber_burst,
}


if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="delivery-e2e-"))
