#!/usr/bin/python3
"""bench_consumers: each consumer library's rate with one no-op listener, on 1.2 KB MESSAGESENT
events, side by side (figures, not a timed test).

A publisher of our own (pyzmq, an XPUB with SNDHWM 0 and bodies encoded before the clock starts)
plays the bridge: it sends N envelopes of the wire contract (topic frame MESSAGESENT + the msgpack
envelope v/seq/gseq/epoch/ts/bot/event, schemas/CONTRACT.md) to one consumer at a time (so they
do not compete for the cores), after that consumer's subscription reached it. Each consumer
(C: bench_consumer_c; Python: consumers/python/bench_consumer.py; Node:
consumers/node/bench/consumer.js) handles them with one listener that accepts all and does
nothing, and prints {"lang":..,"events":N,"seconds":S,"rate":R}, S from its first callback to its
N-th. The table shows each rate, its ratio to C's and the issue's target.

Usage: bench_consumers.py --c-consumer PATH [--source-dir DIR] [--node PATH] [--count N]
                          [--langs c,python,node] [--runs K] [--c-workers W]
                          [--smoke]
--smoke: exit 1 unless every consumer reported exactly N events (the ctest bench_consumers_smoke);
a consumer whose port is missing is then a failure too.
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import threading
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"c": None, "python": 10000, "node": 30000}  # events/s on the 2-core machine
BOT = 68719476738
EVENT_BYTES = 1200  # the envelope's size

# A MESSAGESENT as the agent sends it (shaped like /work/shared/reference/data's
# java-test-read_datafeed_v4_eventlist.json, with 64-bit user ids and a longer message).
EVENT = {
    "id": "",
    "messageId": "CszQa6uPAA9V3Ff8Q1xpTn___oqRzCcQbQ",
    "timestamp": 1764800000000,
    "type": "MESSAGESENT",
    "initiator": {"user": {"userId": 68719476737, "firstName": "Zoë", "lastName": "Ångström",
                           "displayName": "Zoë Ångström", "email": "zoe.angstrom@example.com",
                           "username": "zoe.angstrom"}},
    "payload": {"messageSent": {"message": {
        "messageId": "CszQa6uPAA9V3Ff8Q1xpTn___oqRzCcQbQ",
        "timestamp": 1764800000000,
        "message": "",
        "data": "{\"0\":{\"id\":[{\"type\":\"com.symphony.user.userId\",\"value\":\"349026222"
                "344891\"}],\"type\":\"com.symphony.user.mention\",\"version\":\"1.0\"},\"1\":{"
                "\"id\":[{\"type\":\"org.symphonyoss.fin.security.id.ticker\",\"value\":\"AAPL\"}"
                "],\"type\":\"org.symphonyoss.fin.security\",\"version\":\"1.0\"}}",
        "user": {"userId": 68719476737, "firstName": "Zoë", "lastName": "Ångström",
                 "displayName": "Zoë Ångström", "email": "zoe.angstrom@example.com",
                 "username": "zoe.angstrom"},
        "stream": {"streamId": "wTmSDJSNPXgB4a8r1Xr6UX___oqRzCcbdA", "streamType": "ROOM"},
        "externalRecipients": False,
        "userAgent": "DESKTOP-40.0.0-10665-MacOSX-10.15.7-Chrome-90.0",
        "originalFormat": "com.symphony.messageml.v2",
        "sid": "a4d08d18-0729-4b54-9c45-68da1c3e7f02"}}},
}


def sized_event(epoch, ts):
    """EVENT with its message sized so that its envelope (seq = gseq = 1, id bench-00000001,
    this epoch and ts) is EVENT_BYTES bytes; its id is "bench-00000000"."""
    head = ("<div data-format=\"PresentationML\" data-version=\"2.0\"><p>Hi <span class=\""
            "entity\" data-entity-id=\"0\">@Ravi</span>, ")
    tail = "</p></div>"
    filler = "Numbers below, see the deck. " * 40
    ev = copy.deepcopy(EVENT)
    msg = ev["payload"]["messageSent"]["message"]
    ev["id"] = "bench-00000001"
    for k in range(len(filler)):
        msg["message"] = head + filler[:k] + tail
        if len(envelope(ev, 1, epoch, ts)) >= EVENT_BYTES:
            break
    ev["id"] = "bench-00000000"
    return ev


def envelope(ev, i, epoch, ts):
    return msgpack.packb({"v": 1, "seq": i, "gseq": i, "epoch": epoch, "ts": ts, "bot": BOT,
                          "event": ev}, use_bin_type=True)


def bodies(n, epoch):
    """N envelopes of EVENT_BYTES bytes (with seq = gseq = 1; a few bytes more for larger
    numbers), ids bench-00000001..., seq = gseq = 1..N."""
    ts = int(time.time() * 1000)
    ev = sized_event(epoch, ts)

    def one(i):
        ev["id"] = "bench-%08d" % i
        return envelope(ev, i, epoch, ts)
    return [one(i) for i in range(1, n + 1)]


def consumer_command(lang, a, endpoint):
    """(command, what is missing or None)."""
    args = ["--endpoint", endpoint, "--count", str(a.count)]
    if lang == "c":
        ok = os.path.isfile(a.c_consumer)
        if a.c_workers:
            args += ["--workers", str(a.c_workers)]
        return [a.c_consumer] + args, None if ok else "bench_consumer_c (%s)" % a.c_consumer
    if lang == "python":
        p = os.path.join(a.source_dir, "consumers", "python", "bench_consumer.py")
        return (["/usr/bin/python3", p] + args,
                None if os.path.isfile(p) else "the Python bench consumer (%s)" % p)
    p = os.path.join(a.source_dir, "consumers", "node", "bench", "consumer.js")
    mods = os.path.join(a.source_dir, "consumers", "node", "node_modules", "zeromq")
    missing = None
    if not os.path.isfile(p):
        missing = "the Node bench consumer (%s)" % p
    elif not os.path.isdir(mods):
        missing = "the Node port's dependencies (npm ci in consumers/node)"
    return [a.node, p] + args, missing


def run_one(lang, a, zctx, payload):
    """Starts the consumer, waits for its subscription, publishes; returns its result dict
    (plus "publish_s", the publisher's own time) or {"error": why}."""
    pub = zctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    cmd, missing = consumer_command(lang, a, endpoint)
    if missing:
        pub.close()
        return {"error": "missing " + missing}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        pub.close()
        return {"error": "cannot run %s: %s" % (cmd[0], e)}
    out = {}
    try:
        # The subscription (XPUB: b"\x01" + prefix) that covers MESSAGESENT.
        deadline = time.monotonic() + 30
        subscribed = False
        while not subscribed and time.monotonic() < deadline and proc.poll() is None:
            if pub.poll(200):
                m = pub.recv()
                subscribed = m[:1] == b"\x01" and b"MESSAGESENT".startswith(m[1:])
        if not subscribed:
            return {"error": "no subscription within 30 s (exit %r): %s"
                    % (proc.poll(), proc.stderr.read().decode(errors="replace")[-800:]
                       if proc.poll() is not None else "")}
        t0 = time.perf_counter()
        for body in payload:
            pub.send(b"MESSAGESENT", zmq.SNDMORE)
            pub.send(body, copy=False)
        publish_s = time.perf_counter() - t0
        try:
            stdout, stderr = proc.communicate(timeout=a.count / 1000.0 + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            return {"error": "no result within %.0f s" % (a.count / 1000.0 + 60)}
        lines = [x for x in stdout.decode(errors="replace").splitlines() if x.strip()]
        if proc.returncode != 0 or not lines:
            return {"error": "exit %r: %s" % (proc.returncode,
                                               stderr.decode(errors="replace")[-800:])}
        out = json.loads(lines[-1])
        out["publish_s"] = publish_s
        # the consumer's own remarks (counters, warnings), not its info log
        out["stderr"] = " ".join(x for x in stderr.decode(errors="replace").splitlines()
                                 if x.startswith("{") or re.search(r"WARN|ERROR|gaps", x))[-300:]
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c-consumer", required=True)
    ap.add_argument("--source-dir", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--node", default="/usr/bin/node")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--langs", default="c,python,node")
    ap.add_argument("--c-workers", type=int, default=0,
                    help="the C loop's worker threads (default: the library's, 4)")
    ap.add_argument("--runs", type=int, default=3, help="runs per consumer; the median counts")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    langs = [x for x in a.langs.split(",") if x]
    t = time.perf_counter()
    payload = bodies(a.count, "bench-%d" % os.getpid())
    print("%d MESSAGESENT envelopes of %d bytes encoded in %.2f s" %
          (a.count, len(payload[0]), time.perf_counter() - t), flush=True)
    zctx = zmq.Context()
    results = {}
    for lang in langs:
        runs = []
        for i in range(a.runs):
            r = run_one(lang, a, zctx, payload)
            if "error" in r:
                print("%s: %s" % (lang, r["error"]), flush=True)
                runs = [r]
                break
            print("%s run %d: %d events in %.3f s, %.0f events/s (publisher: %.3f s, %.0f "
                  "events/s)%s" % (lang, i + 1, r["events"], r["seconds"], r["rate"],
                                   r["publish_s"], a.count / r["publish_s"],
                                   " " + r["stderr"] if r["stderr"] else ""), flush=True)
            runs.append(r)
        runs.sort(key=lambda r: r.get("rate", 0))
        results[lang] = runs[len(runs) // 2]  # the median run
    zctx.destroy(linger=0)

    c_rate = results.get("c", {}).get("rate")
    print()
    print("median of %d runs, %d MESSAGESENT events of %d bytes each" % (a.runs, a.count,
                                                                       len(payload[0])))
    print("%-8s %9s %9s %12s %9s %9s  %s"
          % ("language", "events", "seconds", "events/s", "vs C", "target", ""))
    ok = True
    for lang in langs:
        r = results[lang]
        target = TARGETS[lang]
        if "error" in r:
            print("%-8s %9s %9s %12s %9s %9s  %s" % (lang, "-", "-", "-", "-",
                                                      target or "-", "not run"))
            ok = False
            continue
        ratio = "%.2f" % (r["rate"] / c_rate) if c_rate else "-"
        verdict = "" if target is None else ("met" if r["rate"] >= target else "missed")
        print("%-8s %9d %9.3f %12.0f %9s %9s  %s" % (lang, r["events"], r["seconds"], r["rate"],
                                                     ratio, target or "-", verdict))
        if r["events"] != a.count:
            print("%s reported %d events, %d were sent" % (lang, r["events"], a.count))
            ok = False
    if a.smoke:
        print("smoke: %s" % ("every consumer reported exactly %d events" % a.count if ok
                             else "FAILED"))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
