#!/usr/bin/python3
"""Live, together: the real dfpod -> the real dfbridge (journal + replay) -> a C, a Python and a
Node worker at once, with a kill -9 of the bridge in the middle of the stream.

2000 mixed events of all 17 types go through one bridge, in two parts of 1000: dfpod's generator
(5 % of them the bot's own), 17 events without an initiator user and 3 of unknown types each.
The first part flows undisturbed and every worker is checked; during the second, the bridge is
killed with SIGKILL when a subscriber of the test has seen 350 of its events, and restarted on the
same journal and endpoints; every worker is checked again on all 2000. Each worker
(tests/polyglot/c_worker.c on libdfconsumer, bdk_worker.py on the Python port written as the
BDK documentation's example, worker.js on the Node port in the Java BDK's style) subscribes one
listener with the default filter, from gseq 1 (so it fills what it missed from replay), and
prints one line "E <gseq> <callback> <canonical event>" per callback (canonical JSON as in
schemas/conformance/README.md).

The test computes what every worker must print by itself: the journal read back from gseq 1
over replay with pyzmq (every injected event exactly once, each equal to the JSON the pod
served), filtered by the BDK rule (initiator user id present and not the bot's), in canonical
form with python3-msgpack. Each worker must print exactly those lines: every accepted event
(by id+type and gseq) once, with the right callback, and the sha256 of the sorted lines equal
to the test's.

Usage: live_test.py --dfpod P --dfbridge P --c-worker P --node P --source-dir DIR
                    [--langs c,python,node] [--keep]
All three languages are required unless --langs says otherwise (while developing a port).
"""
import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "schemas", "conformance"))
import dftest  # noqa: E402
from dftest import check, eq, recv_raw, unpack, wait_until  # noqa: E402
import run as conformance  # noqa: E402  (the conformance runner: its canonical JSON)

dftest.WAIT_TIMEOUT = 60.0
BOT_ID = 68719476738          # dfpod's default --bot-id
GENERATED = 980               # two parts, each: this many from dfpod's generator ...
NO_INITIATOR = 17             # ... then this many without an initiator user ...
UNKNOWN = 3                   # ... and this many of types none of the 17 (on_unknown)
PART = GENERATED + NO_INITIATOR + UNKNOWN   # 1000
TOTAL = 2 * PART                            # 2000
KILL_AT = PART + 350          # the bridge is killed when the test's subscriber saw this many

# The 17 types, their payload keys and the C callback names, from the contract's table (the
# conformance runner reads it).
CALLBACK = conformance.CALLBACKS
with open(conformance.CONTRACT) as _f:
    TYPES = [(t["type"], t["payload_key"], CALLBACK[t["type"]])
             for t in json.load(_f)["topics"]]


# ---- canonical JSON (schemas/conformance/README.md) -------------------------------------------
def canonical(v):
    """The canonical JSON text of a decoded value, by the conformance runner's printer (run.py,
    python3-msgpack, independent of the three libraries), which reads msgpack bytes."""
    return conformance.canonical(msgpack.packb(v, use_bin_type=True)).decode("utf-8")


def digest(lines):
    return hashlib.sha256("".join(x + "\n" for x in sorted(lines)).encode()).hexdigest()


def accepted(ev, bot):
    """The BDK's default filter: an initiator user id that is not the bot's."""
    uid = ((ev.get("initiator") or {}).get("user") or {}).get("userId")
    return isinstance(uid, int) and not isinstance(uid, bool) and uid != bot


# ---- events ----------------------------------------------------------------------------------
def no_initiator_events(part):
    """One event of each of the 17 types without an initiator user id (no initiator, an empty
    one, a user without userId): the default filter of every port drops them."""
    out = []
    for k, (etype, key, _) in enumerate(TYPES):
        ev = {"id": "noinit-%d-%d" % (part, k), "timestamp": 1764800000000 + 100 * part + k,
              "type": etype,
              "payload": {key: {"stream": {"streamId": "noinit-stream-%d" % k,
                                           "streamType": "ROOM"}}}}
        if k % 3 == 1:
            ev["initiator"] = {}
        elif k % 3 == 2:
            ev["initiator"] = {"user": {"username": "system", "displayName": "System"}}
        out.append(ev)
    return out


def unknown_events(part):
    """Events of no known type, from a user: a future type published under its own name, and
    one without a type, published under UNKNOWN (schemas/CONTRACT.md section 1)."""
    out = []
    for k in range(UNKNOWN):
        ev = {"id": "unknown-%d-%d" % (part, k), "timestamp": 1764800000500 + 10 * part + k,
              "type": "SOMETHINGNEW", "initiator": {"user": {"userId": 349026222344891 + k}},
              "payload": {"somethingNew": {"answer": 42, "ratio": 0.5, "list": [1, None, "x"]}}}
        if k == UNKNOWN - 1:
            del ev["type"]
        out.append(ev)
    return out


# ---- workers ---------------------------------------------------------------------------------
class Worker:
    """A worker process; a thread collects its stdout lines."""

    def __init__(self, lang, cmd, env=None, cwd=None):
        self.lang = lang
        self.log_path = os.path.join(dftest.CTX.tmp, "worker-%s.log" % lang)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     cwd=cwd)
        dftest.CTX.children.append(self.proc)
        self.lines = []     # "<gseq> <callback> <canonical>" of each E line, in arrival order
        self.times = []     # time.monotonic() when each of those lines was read
        self.other = []     # any other stdout line (JSON control lines)
        self.ready = threading.Event()
        self.stats = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith("E "):
                self.times.append(time.monotonic())
                self.lines.append(line[2:])
                continue
            self.other.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("ready"):
                self.ready.set()
            if isinstance(obj, dict) and "stats" in obj:
                self.stats = obj["stats"]

    def stop(self, timeout=20):
        """SIGTERM; waits for the exit and the last line read; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.thread.join(10)
        self.log.close()
        return rc

    def text(self):
        return dftest.read_text(self.log_path)


def node_works(node):
    try:
        return subprocess.run([node, "--version"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def worker_commands(a, endpoint, replay):
    """lang -> (command, env, what is missing or None)."""
    src = a.source_dir
    common = ["--endpoint", endpoint, "--replay", replay, "--from-gseq", "1"]
    py_pkg = os.path.join(src, "consumers", "python", "dfconsumer")
    node_pkg = os.path.join(src, "consumers", "node")
    out = {}
    missing = None if os.path.isfile(a.c_worker) else "the C worker %s" % a.c_worker
    out["c"] = ([a.c_worker] + common, None, missing)
    missing = None
    if not os.path.isdir(py_pkg):
        missing = "the Python port (%s)" % py_pkg
    out["python"] = (["/usr/bin/python3", os.path.join(HERE, "bdk_worker.py")] + common,
                     None, missing)
    missing = None
    if not os.path.isfile(os.path.join(node_pkg, "package.json")):
        missing = "the Node port (%s)" % node_pkg
    elif not os.path.isdir(os.path.join(node_pkg, "node_modules", "zeromq")):
        missing = ("the Node port's dependencies (run `npm ci` in %s)" % node_pkg)
    elif not node_works(a.node):
        missing = "node (%s)" % a.node
    out["node"] = ([a.node, os.path.join(HERE, "worker.js")] + common, None, missing)
    return out


# ---- replay ----------------------------------------------------------------------------------
def replay_all(endpoint):
    """The journal from gseq 1 to its head, following `more`: ([(topic, body)], last end)."""
    sock = dftest.CTX.zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    out, gseq, req, end = [], 1, 0, {}
    try:
        while True:
            req += 1
            sock.send(msgpack.packb({"v": 1, "req": req, "from_gseq": gseq}, use_bin_type=True))
            while True:
                if not sock.poll(20000):
                    check(False, "a replay answer from %s" % endpoint)
                    return out, end
                topic, body = sock.recv_multipart()
                if topic == b"_end":
                    end = unpack(body)
                    break
                out.append((topic.decode(), body))
            if end.get("status") != "ok" or not end.get("more"):
                return out, end
            gseq = end["last_gseq"] + 1
    finally:
        sock.close()


# ---- the test --------------------------------------------------------------------------------
def run(a):
    langs = [x for x in a.langs.split(",") if x]
    pod = dftest.Pod("--hold-ms", "1000", "--visibility-ms", "1500", "--batch-max", "50",
                     timeout=60)
    state = os.path.join(dftest.CTX.tmp, "state")
    replay = "tcp://127.0.0.1:%d" % dftest.free_port()
    br = dftest.Bridge(pod, datafeed="datafeed:\n  version: v2\n  retry: {initialIntervalMillis:"
                       " 50, maxIntervalMillis: 400}\n", retry="",
                       bridge_extra="  stateDir: %s\n  replay: %s\n  heartbeatMillis: 200\n"
                       % (state, replay), read_timeout_ms=None, connect_timeout_ms=None)
    sub = dftest.sub_socket([br.endpoint], rcvhwm=0)
    epoch = None
    deadline = time.monotonic() + 20
    while epoch is None and time.monotonic() < deadline:
        m = recv_raw(sub, 500)
        if m and m[0] == "_hb":
            epoch = unpack(m[1])["epoch"]
    if not check(epoch is not None, "a heartbeat from the bridge"):
        return

    cmds = worker_commands(a, br.endpoint, replay)
    workers = []
    for lang in langs:
        cmd, env, missing = cmds[lang]
        if not check(missing is None, "%s worker: missing %s" % (lang, missing)):
            continue
        workers.append(Worker(lang, cmd, env))
    for w in workers:
        if not w.ready.wait(30):
            check(False, "%s worker ready within 30 s (exit %r)" % (w.lang, w.proc.poll()))
    workers = [w for w in workers if w.ready.is_set()]
    if not workers:
        return

    # Phase 1, live: 1000 events; every worker handles each accepted one.
    inject(pod, 0)
    expect, want_digest = published(pod, replay, epoch, 1)
    wait_workers(workers, expect)
    for w in workers:
        check_worker(w, expect, want_digest, "live")

    # Phase 2, kill -9: 1000 more, slow reads (40 ms each, 50 events at most) keep the stream
    # going for about a second; the bridge is killed when the test's subscriber saw a third of
    # them, and restarted on the same journal and endpoints.
    pod.faults({"endpoint": "read", "action": "slow", "delay_ms": 40, "count": 200})
    inject(pod, 1)
    seen = 0
    deadline = time.monotonic() + 30
    while seen < KILL_AT and time.monotonic() < deadline:
        m = recv_raw(sub, 1000)
        if m and m[0] != "_hb":
            seen += 1
    check(seen >= KILL_AT, "the test's subscriber saw %d events before the kill" % seen)
    at_kill = {w.lang: len(w.lines) for w in workers}
    sub.close(linger=0)
    br.proc.send_signal(signal.SIGKILL)
    br.proc.wait()
    br.log.close()
    print("kill -9 of the bridge after the test's subscriber saw %d events; handled so far: %s"
          % (seen, at_kill), flush=True)
    wait_until(lambda: pod.counter("held") == 0, "the pod to notice the dead bridge")
    br.start()  # the same config: same journal, PUB and replay endpoints
    m = wait_until(lambda: re.search(r"continues at gseq (\d+)", br.text()),
                   "the restarted bridge's recovery line")
    journaled_at_kill = int(m.group(1)) - 1 if m else -1
    check(PART < journaled_at_kill < TOTAL, "the kill came in the middle of the second part: %d "
          "of %d events journaled before it" % (journaled_at_kill, TOTAL))

    expect, want_digest = published(pod, replay, epoch, 2)
    wait_workers(workers, expect)
    for w in workers:
        rc = w.stop()
        eq(rc, 0, "%s worker exit status after SIGTERM" % w.lang)
        check(w.stats is not None, "%s worker printed its stats" % w.lang)
        check_worker(w, expect, want_digest, "after the kill")
    br.terminate()
    br.check_clean()
    pod.stop()


def inject(pod, part):
    """The part-th 1000 events: the generator's (all 17 types, 5 % by the bot), then 17 without
    an initiator user and 3 of unknown types."""
    pod.generate(GENERATED, seed=11 + part)
    pod.events(no_initiator_events(part) + unknown_events(part))


def published(pod, replay, epoch, parts):
    """Once the pod saw the first `parts` parts acknowledged: what the bridge published (the
    journal from gseq 1 over replay), checked against the JSON the pod served. Returns the
    lines every worker must print, by gseq, and their digest."""
    n = parts * PART
    wait_until(lambda: (lambda c: c["acked"] >= n and c["pending"] == 0)(pod.counters()),
               "the pod to see %d events acknowledged" % n)
    msgs, end = replay_all(replay)
    eq(end.get("head_gseq"), n, "journal head")
    envs = [unpack(b) for _, b in msgs]
    eq([e["gseq"] for e in envs], list(range(1, n + 1)), "journal gseqs")
    check(all(e["epoch"] == epoch for e in envs), "one epoch in the journal")
    served = {(e["id"], e.get("type")): e for e in pod.served_events()}
    eq(len(served), n, "distinct events served by the pod")
    keys = [(e["event"].get("id"), e["event"].get("type")) for e in envs]
    eq(sorted(keys), sorted(served), "the journal holds every injected event exactly once")
    bad = [k for k, e in zip(keys, envs) if canonical(e["event"]) != canonical(served.get(k))]
    check(not bad, "%d journaled events differ from the JSON the pod served, first %r"
          % (len(bad), bad[:1]))
    bot = envs[0]["bot"] if envs else None
    eq(bot, BOT_ID, "the envelope's bot")
    topics = {t for t, _ in msgs}
    eq(topics - set(CALLBACK), {"SOMETHINGNEW", "UNKNOWN"}, "unknown topics in the stream")
    check(set(CALLBACK) <= topics, "all 17 types in the stream")
    expect = {}
    for (topic, _), e in zip(msgs, envs):
        if accepted(e["event"], bot):
            expect[e["gseq"]] = "%d %s %s" % (e["gseq"], CALLBACK.get(topic, "on_unknown"),
                                              canonical(e["event"]))
    by_bot = sum(1 for e in envs if ((e["event"].get("initiator") or {}).get("user") or {})
                 .get("userId") == bot)
    want_bot = parts * int(GENERATED * 0.05)  # dfpod: floor(N x bot_ratio) per call
    eq(by_bot, want_bot, "events of the bot itself")
    eq(len(expect), n - want_bot - parts * NO_INITIATOR, "accepted events")
    eq(sum(1 for x in expect.values() if " on_unknown " in x), parts * UNKNOWN,
       "accepted events for on_unknown")
    want_digest = digest(expect.values())
    print("expected: %d accepted of %d events (%d by the bot and %d without initiator refused; "
          "%d of unknown types), digest %s" % (len(expect), n, by_bot, parts * NO_INITIATOR,
                                               parts * UNKNOWN, want_digest), flush=True)
    return expect, want_digest


def wait_workers(workers, expect):
    """One deadline for all: each worker printed as many lines as there are accepted events (or
    exited); check_worker then finds any missing, extra or duplicate line."""
    done = dftest.poll_until(lambda: all(len(w.lines) >= len(expect) or w.proc.poll() is not None
                                         for w in workers), 60)
    check(done, "within 60 s every worker handled %d events: %s"
          % (len(expect), {w.lang: len(w.lines) for w in workers}))
    for w in workers:
        rc = w.proc.poll()
        check(rc is None, "%s worker still running (it exited with %r; its log ends with %r)"
              % (w.lang, rc, w.text()[-300:]))


def dedupe_key(line):
    """(id, type) of the event of a line "<gseq> <callback> <canonical>"."""
    try:
        ev = json.loads(line.split(" ", 2)[2])
        return ev.get("id"), ev.get("type")
    except (ValueError, IndexError, AttributeError):
        return ("unreadable line", line[:80])


def check_worker(w, expect, want_digest, when):
    """The worker's lines are exactly the expected ones: each accepted gseq once, with the
    right callback and canonical event, and the same digest."""
    lines = list(w.lines)
    got = {}
    dups = []
    for line in lines:
        g = int(line.split(" ", 1)[0])
        if g in got:
            dups.append(g)
        got[g] = line
    what = "%s worker (%s)" % (w.lang, when)
    st = ""
    if w.stats:
        st = "; " + ", ".join("%s %s" % (k, w.stats.get(k)) for k in (
            "received", "replayed", "gaps", "gaps_filled", "duplicates", "lost", "filtered"))
    print("%-6s %-14s %d lines, %d gseqs, digest %s%s"
          % (w.lang, when, len(lines), len(got), digest(lines), st), flush=True)
    check(not dups, "%s: %d events handled more than once (gseqs %r...)"
          % (what, len(dups), dups[:5]))
    missing = sorted(set(expect) - set(got))
    extra = sorted(set(got) - set(expect))
    check(not missing, "%s: %d accepted events never handled (gseqs %r...)"
          % (what, len(missing), missing[:5]))
    check(not extra, "%s: %d events handled that the filter refuses or that were never sent "
          "(gseqs %r...)" % (what, len(extra), extra[:5]))
    keys = [dedupe_key(x) for x in lines]
    want_keys = {dedupe_key(x) for x in expect.values()}
    check(len(keys) == len(set(keys)) and set(keys) == want_keys,
          "%s: by (id, type): %d handled, %d distinct, %d accepted, %d missing, %d extra"
          % (what, len(keys), len(set(keys)), len(want_keys), len(want_keys - set(keys)),
             len(set(keys) - want_keys)))
    wrong = [g for g in sorted(set(got) & set(expect)) if got[g] != expect[g]]
    if not check(not wrong, "%s: %d events printed differently from the test's canonical form"
                 % (what, len(wrong))):
        g = wrong[0]
        print("  first, gseq %d:\n  want %s\n  got  %s" % (g, expect[g][:600], got[g][:600]))
    eq(digest(lines), want_digest, "%s: digest of the sorted lines" % what)
    odd = [x for x in w.other if not re.match(r'\{"(ready|stats)"', x)]
    check(not odd, "%s: %d unexpected lines on stdout, first %r" % (what, len(odd), odd[:1]))
    check(dftest.log_clean(w.text()), "%s: no sanitizer report in its log" % what)


def run_test(a, prefix, run_fn):
    """Runs run_fn(a) in a fresh dftest context (prefix names its folder): an exception is a
    failure with its reason; on any failure the tail of every log is printed; the children are
    killed and the folder removed (kept with --keep). Returns the seconds it took."""
    dftest.soft_checks()
    ctx = dftest.setup(a.dfpod, a.dfbridge, prefix)
    t0 = time.monotonic()
    try:
        run_fn(a)
    except Exception as e:  # a crash is a failure with its reason, then the logs
        import traceback
        traceback.print_exc()
        check(False, "exception: %r" % e)
    finally:
        ctx.kill_children()
        if dftest.FAILS:
            for n in sorted(os.listdir(ctx.tmp)):
                if n.endswith(".log"):
                    sys.stdout.write("---- %s (last 3000 chars)\n%s\n"
                                     % (n, dftest.read_text(os.path.join(ctx.tmp, n))[-3000:]))
        if a.keep:
            print("kept", ctx.tmp)
        ctx.cleanup(keep=a.keep)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--dfbridge", required=True)
    ap.add_argument("--c-worker", required=True)
    ap.add_argument("--node", default="/usr/bin/node")
    ap.add_argument("--source-dir", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--langs", default="c,python,node",
                    help="the workers to run (all three unless developing a port)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    took = run_test(a, "polyglot-live-", run)
    print("polyglot_live (%s): %d passed, %d failed, %.1f s"
          % (a.langs, dftest.PASSES, len(dftest.FAILS), took))
    return 1 if dftest.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
