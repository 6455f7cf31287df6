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
CONTRACT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas",
                        "contract-v1.json")


def new_pod(*extra):
    return dftest.Pod(*extra, timeout=60)


def new_bridge(pod, state, replay_port, extra="", env=None):
    """A dfbridge with bridge.stateDir state and its replay endpoint on replay_port; extra: lines
    of the bridge section; env: variables added to the bridge's environment."""
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    br = Bridge(pod, datafeed="datafeed:\n  version: v2\n  retry: {initialIntervalMillis: 50, "
                "maxIntervalMillis: 400}\n", retry="",
                bridge_extra="  stateDir: %s\n  replay: tcp://127.0.0.1:%d\n%s"
                % (state, replay_port, extra), read_timeout_ms=None, connect_timeout_ms=None,
                env=full_env)
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
    live = br.counter("replay_requests")  # the info request itself is one more
    check(live == rp.req + 1, "replay requests counted live: %r" % live)
    rc = stop(br)
    check(rc == 0, "bridge exit 0 (got %r)" % rc)
    check(br.final_counter("replay requests") == rp.req + 1,
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
    # The actor keeps a fixed grid (next = previous deadline + interval; reset only after
    # falling a whole interval behind, never a burst): a late beat is followed by a shorter
    # gap, so the cadence is the mean gap, and no single gap is 0 or over 1.5 s.
    mean = sum(gaps) / len(gaps)
    check(all(0 < g <= 1500 for g in gaps) and 150 <= mean <= 400 and 1.2 <= elapsed <= 10,
          "cadence ~200 ms while held (mean %.0f ms): %r" % (mean, gaps))
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
    deduped = br2.counter("deduped")  # live, from the info request
    check(stop(br2) == 0, "bridge2 exit 0")
    check(br2.final_counter("deduped") == deduped, "the exit log agrees with the live deduped")
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


# ---- hardening (issue 7) ---------------------------------------------------------------------

def fault_env(ctl):
    """The environment that preloads the disk-fault shim (DFFAULT_LIB, set by ctest) driven by
    the control file ctl (empty: no fault)."""
    lib = os.environ.get("DFFAULT_LIB")
    check(lib and os.path.exists(lib), "DFFAULT_LIB names the dffault shim (%r)" % lib)
    with open(ctl, "w"):
        pass
    return {"LD_PRELOAD": lib or "", "DFFAULT_CTL": ctl, "DFFAULT_LOG": "1"}


def set_faults(ctl, *rules):
    """Replaces the shim's rules; the shim re-reads the file when its size or mtime changes."""
    text = "".join(r + "\n" for r in rules)
    with open(ctl, "w") as f:
        f.write(text + ("#" * (len(text) % 7 + 1)) + "\n")  # a new size: noticed at once


def case_dead_actor():
    """The publisher thread stops on an error (test fault DFB_TEST_ACTOR_FAIL_AFTER=5): one
    error line, exit 5 within seconds, no hang in dfb_publish_event/_stats/_destroy, exactly the
    5 events published before it, and the batch that could not be published not acknowledged."""
    pod = new_pod("--hold-ms", "1000")
    br = new_bridge(pod, state_dir(), free_port(), "  heartbeatMillis: 200\n",
                    env={"DFB_TEST_ACTOR_FAIL_AFTER": "5"})
    s = sub([br.endpoint])
    wait_heartbeat(s)
    pod.events([event(i, TYPES[i % 3]) for i in range(50)])
    t0 = time.monotonic()
    line = br.expect_exit(dftest.EXIT_INTERNAL, "publisher thread stopped", timeout=15)
    print("exit 5 after %.2f s: %s" % (time.monotonic() - t0, line))
    got = []
    while True:
        m = recv(s, 500)
        if m is None:
            break
        if m[0] != "_hb":
            got.append(env(m[1]))
    check([e["gseq"] for e in got] == [1, 2, 3, 4, 5],
          "exactly the 5 events published before the thread stopped: %r"
          % [e["gseq"] for e in got])
    # A batch is acknowledged only once all of it reached the PUB socket: at most the 5.
    check(pod.counters()["acked"] <= 5, "the unpublished events are not acknowledged (acked %d)"
          % pod.counters()["acked"])
    check(br.final_counter("dead_threads") == 1, "dead_threads 1 in the exit log")


def case_replay_errors():
    """Replay answers every malformed request (a multi-frame one included, carrying its req), an
    unreadable journal record with code io_error (not gone: nothing was deleted), and the info
    request with the contract's keys."""
    pod = new_pod("--hold-ms", "1000")
    state = state_dir()
    br = new_bridge(pod, state, free_port(), "  heartbeatMillis: 200\n")
    s = sub([br.endpoint])
    wait_heartbeat(s)
    pod.events([event(i, TYPES[i % 3]) for i in range(20)])
    wait_acked(pod, 20)
    rp = Replay(br.replay)
    # Two frames: an answer (bad_request) that carries the first frame's req.
    rp.req += 1
    rp.sock.send_multipart([msgpack.packb({"v": 1, "req": rp.req, "from_gseq": 1}), b"extra"])
    if rp.sock.poll(10000):
        topic, body = rp.sock.recv_multipart()
        end = env(body)
        check(topic == b"_end" and end.get("code") == "bad_request" and end.get("req") == rp.req
              and "one frame" in end.get("error", ""), "a two-frame request answered: %r" % end)
    else:
        check(False, "a two-frame request gets an answer")
    msgs, end = rp.ask(from_gseq=1)
    check(len(msgs) == 20 and end.get("status") == "ok", "the journal reads fine: %r" % end)
    # A damaged record (one byte of event dv-10 flipped on disk): the answer stops before it
    # with damaged and the range that cannot be read (never gone: nothing was deleted; never
    # io_error: retrying would not help); asked again after the range: ok; repaired, it reads
    # again.
    seg = os.path.join(state, "journal", sorted(n for n in os.listdir(os.path.join(
        state, "journal")) if n.endswith(".dfj"))[0])
    with open(seg, "r+b") as f:
        data = f.read()
        at = data.find(b"dv-10")
        check(at > 0, "event dv-10 in %s" % seg)
        f.seek(at)
        f.write(b"X")
    msgs, end = rp.ask(from_gseq=1)
    check(len(msgs) == 10 and end.get("status") == "error" and end.get("code") == "damaged"
          and end.get("last_gseq") == 10 and end.get("head_gseq") == 20
          and end.get("lost_from") == 11 and end.get("lost_to") == 20,
          "a damaged record answers damaged 11..20 after the 10 before it: %d, %r"
          % (len(msgs), end))
    msgs, end = rp.ask(from_gseq=end.get("lost_to", 20) + 1)
    check(msgs == [] and end.get("status") == "ok" and end.get("last_gseq") == 20,
          "asked again after the damaged range: ok: %r" % end)
    with open(seg, "r+b") as f:
        f.seek(at)
        f.write(b"d")
    msgs, end = rp.ask(from_gseq=1)
    check(len(msgs) == 20 and end.get("status") == "ok", "readable again: %r" % end)
    info = br.info()
    keys = list(dftest.json.load(open(CONTRACT))["replay_info"]["counters"])
    check(info is not None and list(info) == ["v", "req", "epoch", "ts", "counters"]
          and info["v"] == 1 and list(info["counters"]) == keys,
          "info reply keys are the contract's, in order: %r" % (info and list(info["counters"])))
    if info:
        c = info["counters"]
        check(c["published"] == 20 and c["journal_head_gseq"] == 20 and c["reads"] >= 1
              and c["events"] == 20 and c["replay_errors"] == 2 and c["replay_requests"] == 6
              and c["info_requests"] == 1 and c["heartbeats"] >= 1
              and c["journal_failing"] == 0 and c["journal_read_errors"] == 1,
              "live counters: %r" % c)
    check(stop(br) == 0, "bridge exit 0")


def case_info_sigusr1():
    """SIGUSR1 logs the INFO table as one `info:` line while the bridge runs (no replay needed),
    with the live values; the bridge goes on (the next events are published)."""
    pod = new_pod("--hold-ms", "1000")
    br = new_bridge(pod, state_dir(), free_port(), "  heartbeatMillis: 200\n")
    s = sub([br.endpoint])
    wait_heartbeat(s)
    pod.events([event(i, TYPES[i % 3]) for i in range(10)])
    wait_acked(pod, 10)
    drain(s, 10, [])

    def info_lines():
        return [ln for ln in br.text().splitlines() if " info: " in ln]

    check(info_lines() == [], "no info line before the signal")
    br.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: info_lines(), "an info line after SIGUSR1")
    lines = info_lines()
    check(len(lines) == 1 and "published 10," in lines[0] and "events 10," in lines[0]
          and "journal_head_gseq 10," in lines[0], "one info line with the live values: %r"
          % lines)
    keys = list(dftest.json.load(open(CONTRACT))["replay_info"]["counters"])
    names = re.findall(r"(?:info: |, )(\w+) \d+", lines[0]) if lines else []
    check(names == keys, "the line lists the contract's counters in order: %r" % names)
    pod.events([event(i, TYPES[i % 3]) for i in range(10, 15)])
    wait_acked(pod, 15)
    check(br.running() and br.counter("published") == 15, "the bridge goes on after the dump")
    check(stop(br) == 0, "bridge exit 0")


def collect(sock, seconds, into):
    """Every message for `seconds`; heartbeats as (arrival time, envelope) in into["hb"], events
    in into["ev"]."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = recv(sock, max(1, int((end - time.monotonic()) * 1000)))
        if m is None:
            continue
        if m[0] == "_hb":
            into["hb"].append((time.monotonic(), env(m[1])))
        else:
            into["ev"].append(m)


def journal_full(start, fail, clear):
    """The journal's appends fail with ENOSPC (fail(br) makes the disk full, clear(br) frees
    it; start(pod, state) starts the bridge): the bridge stops acknowledging, says so once, keeps
    heartbeats and replay running, and resumes by itself when space returns: every event received
    exactly once, gseq 1..N, the pod's events unchanged."""
    pod = new_pod("--hold-ms", "1000", "--visibility-ms", "3000")
    state = state_dir()
    br = start(pod, state)
    s = sub([br.endpoint])
    wait_heartbeat(s)
    evs = [event(i, TYPES[i % 3], pad=300) for i in range(60)]
    pod.events(evs[:20])
    wait_acked(pod, 20)
    fail(br)
    pod.events(evs[20:])
    wait_for(lambda: "the journal cannot append" in br.text(), "the bridge says the journal fails")
    acked = pod.counters()["acked"]
    journaled = br.counter("journaled")
    seen = {"hb": [], "ev": []}
    collect(s, 3.0, seen)  # failing for 3 s
    info = br.info()
    check(info is not None and info["counters"]["journal_failing"] == 1
          and info["counters"]["journal_errors"] >= 2,
          "info while failing: %r" % (info and info["counters"]))
    check(pod.counters()["acked"] == acked == 20,
          "nothing acknowledged while the journal fails (%d, then %d)"
          % (acked, pod.counters()["acked"]))
    gaps = [b[0] - a[0] for a, b in zip(seen["hb"], seen["hb"][1:])]
    check(len(seen["hb"]) >= 10 and max(gaps or [9]) < 1.0,
          "heartbeats go on while failing: %d, gaps %r" % (len(seen["hb"]), gaps))
    rp = Replay(br.replay)
    msgs, end = rp.ask(from_gseq=1)
    check(len(msgs) == journaled and end.get("status") == "ok"
          and end.get("head_gseq") == journaled >= 20,
          "replay serves the %r journaled events while failing: %r" % (journaled, end))
    clear(br)  # space returns
    wait_acked(pod, 60, 60)
    drain(s, 60, seen["ev"])
    got = [env(b) for _, b in seen["ev"]]
    check([e["gseq"] for e in got] == list(range(1, 61)),
          "gseq 1..60 received once each: %r" % [e["gseq"] for e in got])
    check([e["event"] for e in got] == evs, "every event as the pod sent it, in order")
    errs = br.errors()
    check(len(errs) == 1 and errs[0].startswith("publish:") and "cannot append" in errs[0],
          "said once: one error line in the whole log: %r" % errs)
    jwarn = [ln for ln in br.text().splitlines() if re.search(r"Z warn\s+journal: ", ln)]
    check(len(jwarn) <= 1, "the journal's own detail at most once (a warning): %r" % jwarn)
    back = [ln for ln in br.text().splitlines() if "the journal works again" in ln]
    check(len(back) == 1, "one line when it recovers: %r" % back)
    check(br.counter("journal_failing") == 0, "journal_failing back to 0")
    check(stop(br) == 0, "bridge exit 0")


def case_publish_disk_full():
    """journal_full with the dffault shim: ENOSPC on every writev under stateDir."""
    ctl = os.path.join(dftest.CTX.tmp, "faults.ctl")
    journal_full(lambda pod, state: new_bridge(pod, state, free_port(), "  heartbeatMillis: 200\n",
                                               env=fault_env(ctl)),
                 lambda br: set_faults(ctl, "writev ENOSPC %s" % state_dir()),
                 lambda br: set_faults(ctl))


def case_publish_tmpfs_full():
    """journal_full on a real full filesystem: stateDir is a 4 MiB tmpfs mounted in the bridge's
    own mount namespace (unshare -m: nothing leaks); the test fills it with a file, seen through
    /proc/<pid>/root, then deletes that file. Needs root (CI runs as root)."""
    check(os.geteuid() == 0, "publish_tmpfs_full needs root (mount -t tmpfs in unshare -m)")
    if os.geteuid() != 0:
        return
    wrapper = os.path.join(dftest.CTX.tmp, "dfbridge-tmpfs.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n# dfbridge with its stateDir on a 4 MiB tmpfs of its own\n"
                "exec unshare -m --propagation private /bin/sh -c "
                "'mount -t tmpfs -o size=4m tmpfs \"$0\" && exec \"$@\"' %s %s \"$@\"\n"
                % (state_dir(), dftest.CTX.dfbridge))
    os.chmod(wrapper, 0o755)
    real = dftest.CTX.dfbridge

    def start(pod, state):
        os.makedirs(state, exist_ok=True)
        dftest.CTX.dfbridge = wrapper
        try:
            br = new_bridge(pod, state, free_port(), "  heartbeatMillis: 200\n")
        finally:
            dftest.CTX.dfbridge = real
        wait_for(lambda: "journal " in br.text() or not br.running(), "the bridge started")
        return br

    def filler(br):
        return "/proc/%d/root%s/filler" % (br.proc.pid, state_dir())

    def fail(br):
        check(os.path.ismount("/proc/%d/root%s" % (br.proc.pid, state_dir())),
              "stateDir is a mount point in the bridge's namespace")
        with open(filler(br), "wb", buffering=0) as f:
            for size in (65536, 4096, 1):
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError as e:
                    check(e.errno == 28, "the tmpfs is full (ENOSPC): %r" % e)
        print("tmpfs full: filler of %d bytes" % os.path.getsize(filler(br)))

    journal_full(start, fail, lambda br: os.unlink(filler(br)))


def heartbeat_slow_disk(fsync):
    """A slow disk (every fdatasync takes 1.5 s) while events flow, with journal.fsync `fsync`
    (always: the loop's flush; interval: the journal's periodic sync): the publisher actor never
    waits on it, so every heartbeat gap stays under twice the interval."""
    pod = new_pod("--hold-ms", "500", "--batch-max", "10")
    ctl = os.path.join(dftest.CTX.tmp, "faults.ctl")
    state = state_dir()
    br = new_bridge(pod, state, free_port(),
                    "  heartbeatMillis: 200\n  journal:\n    fsync: %s\n    fsyncMillis: 300\n"
                    % fsync, env=fault_env(ctl))
    s = sub([br.endpoint], topics=(b"_hb",))
    wait_heartbeat(s)
    set_faults(ctl, "fdatasync DELAY:1500")
    pod.events([event(i, TYPES[i % 3]) for i in range(40)])
    seen = {"hb": [], "ev": []}
    collect(s, 6.0, seen)
    # The bridge's own send times (ts): the actor's cadence, without this reader's scheduling.
    gaps = [(b[1]["ts"] - a[1]["ts"]) / 1000 for a, b in zip(seen["hb"], seen["hb"][1:])]
    if fsync == "always":
        check(pod.counters()["acked"] < 40, "the disk was slow during the test (acked %d of 40)"
              % pod.counters()["acked"])
    check(len(seen["hb"]) >= 20 and max(gaps or [9]) < 0.4,
          "every heartbeat gap < 2 x 200 ms while fdatasync takes 1.5 s: %r" % gaps)
    set_faults(ctl)
    wait_acked(pod, 40, 60)
    check(stop(br) == 0, "bridge exit 0")


def case_heartbeat_slow_disk():
    heartbeat_slow_disk("always")


def case_heartbeat_slow_disk_interval():
    heartbeat_slow_disk("interval")


CASES = {
    "replay_e2e": case_replay_e2e,
    "heartbeat_held": case_heartbeat_held,
    "journal_kill9": case_kill9,
    "journal_feed_expiry": case_feed_expiry,
    "replay_slow_subscriber": case_slow_subscriber,
    "replay_slow_subscriber_hwm10000": case_slow_subscriber_burst,
    "publish_dead_actor": case_dead_actor,
    "replay_errors": case_replay_errors,
    "publish_disk_full": case_publish_disk_full,
    "publish_tmpfs_full": case_publish_tmpfs_full,
    "info_sigusr1": case_info_sigusr1,
    "heartbeat_slow_disk": case_heartbeat_slow_disk,
    "heartbeat_slow_disk_interval": case_heartbeat_slow_disk_interval,
}


if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="delivery-e2e-"))
