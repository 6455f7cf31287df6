#!/usr/bin/python3
"""Multi-host without Docker: dfpod and dfbridge in one network namespace (pb), a C consumer in
a second (c1), a Python consumer in a third (c2), joined by veth pairs on 198.18.0.0/15
(netlab.py). The bridge binds its PUB and replay ROUTER on the wildcard address of pb, so
beyond loopback: CURVE (keys by `dfbridge keygen`, a clientsDir with the consumers' keys). The
consumers connect over TCP to pb's address on their own link (198.18.1.1, 198.18.2.1) and learn
the replay endpoint from the heartbeat (a wildcard host read as the host they connected to).

Scenario, while the pod streams generated events of all 17 types (17 every 100 ms):
  1. both consumers (tests/polyglot/c_worker.c on libdfconsumer, bdk_worker.py on the Python
     package, each printing one line per event) handle events live;
  2. c1's link is cut (pb's end of the veth down): c1 logs its staleness reconnect (3 x the
     200 ms heartbeat without a message), then handles nothing more while c2 handles 150 more
     and the pod sees 200 more acknowledged; the link comes back: c1 catches up with c2;
  3. the same with c2 cut, c1 as the live one;
  4. the feed stops; the journal (read over a CURVE replay DEALER) is exactly the injected
     events, gseq 1..N, each equal (canonical JSON) to what the pod served; each consumer
     handled exactly the gseqs 1..N but those its filter refuses (the BDK rule; counted in
     `filtered`), each line equal to the journal's (live_test.check_worker: no gap, no
     duplicate, same digest); each counted a staleness reconnect, filled gaps from
     replay (gaps_filled >= 1, replayed >= the events of its cut less one read of the pod),
     lost 0, replay_refused 0; the bridge denied no CURVE handshake.
Also: nothing of the test listens in the root namespace (the bridge's and the pod's sockets are
in pb: `ss -ltnp` in both), the namespaces have no default route, and after the test the root
namespace's `ip link` is what it was before, with no namespace of the test left.

Needs root (ip netns). If the namespaces cannot be made the test fails; it never skips.
Usage: netns_test.py --dfpod P --dfbridge P --c-worker P [--source-dir DIR] [--keep]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import zmq.auth

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "polyglot"))
import netlab  # noqa: E402
import live_test as live  # noqa: E402  (Worker, canonical, check_worker; puts pylib on the path)
import dftest  # noqa: E402
from dftest import check, eq, unpack, wait_until  # noqa: E402

dftest.WAIT_TIMEOUT = 20.0
FEED_EVERY = 0.1       # seconds between two generate calls (pacing, not synchronisation)
FEED_COUNT = 17        # events per call: one of each type
CUT_ACKED = 200        # the pod must see this many more acknowledged while a link is down...
CUT_LIVE = 150         # ... and the consumer still connected this many more handled
BATCH_MAX = 50         # dfpod --batch-max: the most events one read (one ack) carries
STALE_LOG = "no message and no heartbeat for"   # the libraries' staleness reconnect (WARN)
WATCHDOG = 240         # seconds: then the test ends itself (cleanup runs), below ctest's 300


def keygen(d, name):
    out = subprocess.run([dftest.CTX.dfbridge, "keygen", d, name], capture_output=True,
                         text=True, timeout=20)
    check(out.returncode == 0, "dfbridge keygen %s: exit %d %s" % (name, out.returncode,
                                                                   out.stderr.strip()))
    pub = os.path.join(d, name + ".key")
    return pub, zmq.auth.load_certificate(pub)[0]


class Feeder(threading.Thread):
    """Asks the pod for FEED_COUNT generated events every FEED_EVERY seconds until stopped."""

    def __init__(self, pod):
        super().__init__(daemon=True)
        self.pod = pod
        self.enqueued = 0
        self.error = None
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                r = self.pod.admin("POST", "generate", {"count": FEED_COUNT, "bot_ratio": 0})
                self.enqueued += r["enqueued"]
            except Exception as e:  # reported by the main thread
                self.error = repr(e)
                return
            self.halt.wait(FEED_EVERY)

    def stop(self):
        self.halt.set()
        self.join(30)


def same_list(got, want, what):
    """got == want (lists of gseqs); a failure says how they differ, not both lists."""
    if got == want:
        return check(True, what)
    g, w = set(got), set(want)
    dups = len(got) - len(g)
    return check(False, "%s: %d, want %d: %d missing %r, %d extra %r, %d duplicates%s"
                 % (what, len(got), len(want), len(w - g), sorted(w - g)[:5], len(g - w),
                    sorted(g - w)[:5], dups, ", out of order" if g == w and not dups else ""))


def stale_count(w):
    return w.text().count(STALE_LOG)


def listeners(text):
    """`ss -Hltnp` output: [(local address:port, process part)]."""
    out = []
    for ln in text.splitlines():
        f = ln.split()
        if len(f) >= 4:
            out.append((f[3], " ".join(f[5:])))
    return out


def check_namespaces(lab):
    for k in ("pb", "c1", "c2"):
        routes = lab.ip(k, "route", "show")
        check("default" not in routes, "namespace %s has no default route: %r" % (k, routes))
        addrs = [ln.split()[3] for ln in lab.ip(k, "-o", "-4", "addr", "show").splitlines()]
        bad = [x for x in addrs if not (x.startswith("127.") or x.startswith("198.18."))]
        check(not bad, "namespace %s has only loopback and 198.18.0.0/15 addresses: %r"
              % (k, addrs))


def check_listening(lab, br, pod, ports):
    """The bridge listens on its ports in pb, and nothing of the test listens in the root
    namespace."""
    here = listeners(netlab.run("ss", "-Hltnp"))
    for port in ports:
        mine = [x for x in here if x[0].endswith(":%d" % port) and "pid=%d," % br.proc.pid in x[1]]
        check(mine, "dfbridge listens on port %d in pb: %r" % (port, here))
    root = listeners(lab.in_root("ss", "-Hltnp"))
    ours = [x for x in root if "pid=%d," % br.proc.pid in x[1] or "pid=%d," % pod.proc.pid in x[1]
            or x[0].startswith("198.18.")]
    eq(ours, [], "sockets of dfbridge or dfpod (or on 198.18.0.0/15) listening in the root "
       "namespace")
    addrs = lab.in_root(netlab.IP, "-o", "addr", "show")
    check("198.18." not in addrs, "no 198.18.0.0/15 address in the root namespace")


def cut_and_restore(lab, pod, c, w_cut, w_live):
    """Cuts consumer c's link until w_cut's library logged its staleness reconnect and the
    stream went on without it; then restores it and waits for w_cut to catch up with w_live.
    Returns the number of events the pod saw acknowledged while the link was down."""
    stale0, acked0 = stale_count(w_cut), pod.counter("acked")
    t0 = time.monotonic()
    lab.cut(c)
    if not wait_until(lambda: stale_count(w_cut) > stale0,
                      "%s (%s) to log that its link went silent" % (c, w_cut.lang)):
        lab.restore(c)
        return 0
    t_stale = time.monotonic()
    n_stale, live_stale = len(w_cut.lines), len(w_live.lines)
    wait_until(lambda: pod.counter("acked") >= acked0 + CUT_ACKED
               and len(w_live.lines) >= live_stale + CUT_LIVE,
               "the stream to go on without %s (%d more acknowledged, %d more handled by %s)"
               % (c, CUT_ACKED, CUT_LIVE, w_live.lang))
    eq(len(w_cut.lines), n_stale, "events handled by %s after its staleness reconnect while its "
       "link is down" % w_cut.lang)
    during = pod.counter("acked") - acked0
    lab.restore(c)
    t_up = time.monotonic()
    target = len(w_live.lines)
    wait_until(lambda: len(w_cut.lines) >= target,
               "%s to catch up with %s (%d events) after the link came back"
               % (w_cut.lang, w_live.lang, target), timeout=30)
    print("cut %s: stale logged after %.2f s, link down %.2f s, %d events acknowledged meanwhile;"
          " caught up %.2f s after the restore" % (c, t_stale - t0, t_up - t0, during,
                                                   time.monotonic() - t_up), flush=True)
    return during


def run(a, lab):
    tmp = dftest.CTX.tmp
    check_namespaces(lab)
    certs, clients = os.path.join(tmp, "certs"), os.path.join(tmp, "clients")
    os.mkdir(certs)
    os.mkdir(clients)
    keys = {n: keygen(certs, n) for n in ("bridge", "c1", "c2", "tester")}
    if dftest.FAILS:
        return
    for n in ("c1", "c2", "tester"):
        shutil.copy(keys[n][0], clients)

    pod = dftest.Pod("--hold-ms", "1000", "--visibility-ms", "1500", "--batch-max", str(BATCH_MAX),
                     timeout=60)
    state = os.path.join(tmp, "state")
    rport = dftest.free_port()
    br = dftest.Bridge(pod, datafeed="datafeed:\n  version: v2\n  retry: {initialIntervalMillis:"
                       " 50, maxIntervalMillis: 400}\n", retry="",
                       bridge_extra="  stateDir: %s\n  replay: tcp://0.0.0.0:%d\n"
                       "  heartbeatMillis: 200\n  curve:\n    secretKey: %s\n    clientsDir: %s\n"
                       % (state, rport, os.path.join(certs, "bridge.key_secret"), clients),
                       read_timeout_ms=None, connect_timeout_ms=None, start=False)
    # the PUB on pb's wildcard address (dftest puts it on 127.0.0.1)
    old = "  publish: %s\n" % br.endpoint
    check(old in br.config, "dftest's bridge config has %r" % old)
    br.config = br.config.replace(old, "  publish: tcp://0.0.0.0:%d\n" % br.pub_port)
    with open(br.cfg_path, "w") as f:
        f.write(br.config)
    br.start()

    tester_pub, tester_sec = zmq.auth.load_certificate(os.path.join(certs, "tester.key_secret"))
    tester = dftest.ReplayClient("tcp://127.0.0.1:%d" % rport,
                                 (tester_pub, tester_sec, keys["bridge"][1]))
    c0 = tester.info()
    if not check(c0 is not None, "an info answer over CURVE from the bridge in pb"):
        return
    eq(c0.get("auth_clients"), 3, "keys in clientsDir")
    check_listening(lab, br, pod, (br.pub_port, rport))

    def worker(k, lang, prog):
        ep = "tcp://%s:%d" % (lab.addr["p" + k[1]], br.pub_port)
        args = ["--endpoint", ep, "--from-gseq", "1", "--server-key", keys["bridge"][0],
                "--cert", os.path.join(certs, k + ".key_secret")]
        return live.Worker(lang, lab.exec_in(k, prog + args))

    w1 = worker("c1", "c", [a.c_worker])
    w2 = worker("c2", "python", ["/usr/bin/python3", os.path.join(HERE, "..", "polyglot",
                                                                  "bdk_worker.py")])
    for w in (w1, w2):
        if not wait_until(lambda: w.ready.is_set() or w.proc.poll() is not None, "%s ready"
                          % w.lang) or not w.ready.is_set():
            check(False, "%s worker ready (exit %r): %s" % (w.lang, w.proc.poll(),
                                                           w.text()[-500:]))
    if dftest.FAILS:
        return

    feeder = Feeder(pod)
    feeder.start()
    try:
        # 1. live over TCP across namespaces
        wait_until(lambda: len(w1.lines) >= 100 and len(w2.lines) >= 100,
                   "both consumers to handle 100 events live: %d, %d"
                   % (len(w1.lines), len(w2.lines)))
        # 2. + 3. one link down at a time, then back
        cut1 = cut_and_restore(lab, pod, "c1", w1, w2) if not dftest.FAILS else 0
        cut2 = cut_and_restore(lab, pod, "c2", w2, w1) if not dftest.FAILS else 0
    finally:
        feeder.stop()
    check(feeder.error is None, "the feeder's generate calls: %s" % feeder.error)
    total = feeder.enqueued
    wait_until(lambda: (lambda c: c["acked"] >= total and c["pending"] == 0)(pod.counters()),
               "the pod to see all %d events acknowledged" % total, timeout=30)

    # 4. the journal: exactly the injected events, equal to what the pod served
    journal = tester.journal()
    msgs = [(t.decode(), b) for _, (t, b) in sorted(journal.items())]
    envs = [unpack(b) for _, b in msgs]
    same_list([e["gseq"] for e in envs], list(range(1, total + 1)), "journal gseqs")
    served = {e["id"]: e for e in pod.served_events()}
    eq(len(served), total, "distinct events served by the pod")
    eq(sorted(e["event"]["id"] for e in envs), sorted(served),
       "the journal holds every served event exactly once")
    bad = [e["gseq"] for e in envs
           if live.canonical(e["event"]) != live.canonical(served.get(e["event"]["id"]))]
    check(not bad, "%d journaled events differ from the JSON the pod served, first gseq %r"
          % (len(bad), bad[:1]))
    bot = envs[0]["bot"] if envs else None
    expect = {}
    for (topic, _), e in zip(msgs, envs):
        if live.accepted(e["event"], bot):
            expect[e["gseq"]] = "%d %s %s" % (e["gseq"], live.CALLBACK.get(topic, "on_unknown"),
                                              live.canonical(e["event"]))
    refused = [e for e in envs if e["gseq"] not in expect]
    want_digest = live.digest(expect.values())
    print("journal: %d events, gseq 1..%d, digest %s; %d refused by the default filter (the BDK "
          "rule): %s" % (total, total, want_digest, len(refused),
                         [(e["gseq"], e["event"].get("type"), e["event"].get("initiator"))
                          for e in refused][:3]), flush=True)
    check(len(refused) <= total // 100, "at most 1 %% of the generated events refused by the "
          "filter (bot_ratio 0): %d" % len(refused))

    done = dftest.poll_until(lambda: all(len(w.lines) >= len(expect)
                                         or w.proc.poll() is not None for w in (w1, w2)), 30)
    check(done, "within 30 s both consumers handled %d events: %d, %d"
          % (len(expect), len(w1.lines), len(w2.lines)))
    for w, cut in ((w1, cut1), (w2, cut2)):
        rc = w.stop()
        eq(rc, 0, "%s consumer's exit status after SIGTERM" % w.lang)
        live.check_worker(w, expect, want_digest, "after the cut")
        # every gseq 1..N: handled exactly once, or refused by the filter (and counted there)
        st = w.stats or {}
        handled = sorted(int(x.split(" ", 1)[0]) for x in w.lines)
        same_list(handled, sorted(expect), "%s consumer: the gseqs handled" % w.lang)
        same_list(sorted(handled + [e["gseq"] for e in refused]), list(range(1, total + 1)),
           "%s consumer: the gseqs handled and those its filter refused" % w.lang)
        eq(st.get("filtered"), len(refused), "%s consumer: events refused by its filter" % w.lang)
        print("%s consumer: %s" % (w.lang, {k: st.get(k) for k in (
            "received", "heartbeats", "reconnects", "gaps", "gaps_filled", "replayed",
            "replay_requests", "lost", "replay_refused", "auth_failures")}), flush=True)
        check(st.get("reconnects", 0) >= 1, "%s consumer counted its staleness reconnect: %r"
              % (w.lang, st.get("reconnects")))
        check(st.get("gaps_filled", 0) >= 1, "%s consumer filled gaps from replay: %r"
              % (w.lang, st.get("gaps_filled")))
        check(st.get("replayed", 0) >= cut - BATCH_MAX,
              "%s consumer: replayed %r >= the %d events of its cut less one read (%d)"
              % (w.lang, st.get("replayed"), cut, BATCH_MAX))
        eq(st.get("lost"), 0, "%s consumer: lost" % w.lang)
        eq(st.get("replay_refused"), 0, "%s consumer: replay endpoints refused" % w.lang)
        check(dftest.log_clean(w.text()), "%s: no sanitizer report" % w.lang)

    # the TCP connections really crossed the links: the bridge saw each consumer's key from the
    # consumer's own address; the C library took its replay endpoint from the heartbeat
    for k in ("c1", "c2"):
        check("auth: allowed %s from %s " % (k, lab.addr[k]) in br.text(),
              "the bridge logged %s's CURVE handshake from %s" % (k, lab.addr[k]))
    check("replay endpoint tcp://%s:%d (from the heartbeat)" % (lab.addr["p1"], rport)
          in w1.text(), "the C consumer took the replay endpoint from the heartbeat, with pb's "
          "address on its link")
    c1 = tester.info() or {}
    eq(c1.get("auth_denied"), 0, "CURVE handshakes the bridge denied")
    check(c1.get("auth_allowed", 0) >= 5, "CURVE handshakes allowed (at least the first and the "
          "reconnects): %r" % c1.get("auth_allowed"))
    tester.close()
    rc, _ = br.terminate()
    eq(rc, 0, "dfbridge exit status after SIGTERM")
    br.check_clean()
    pod.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--dfbridge", required=True)
    ap.add_argument("--c-worker", required=True)
    ap.add_argument("--source-dir", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    dftest.soft_checks()
    t0 = time.monotonic()

    def watchdog(sig, frame):
        raise netlab.Interrupted("watchdog: still running after %d s" % WATCHDOG)
    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG)

    swept = netlab.sweep_stale()
    if swept:
        print("removed namespaces of earlier runs: %s" % swept, flush=True)
    links0 = netlab.root_links()
    lab = netlab.Lab()
    try:
        try:
            lab.up()
            lab.enter()
        except (netlab.NetlabError, netlab.Interrupted, OSError) as e:
            check(False, "network namespaces cannot be made here (the test needs root and "
                  "iproute2): %s" % e)
        if not dftest.FAILS:
            live.run_test(a, "netns-", lambda a: run(a, lab))
    finally:
        signal.alarm(0)
        errs = lab.close()
        eq(errs, [], "errors removing the namespaces")
        left = [n for n in netlab.netns_list() if n in lab.ns.values()]
        eq(left, [], "namespaces of the test left after it")
        eq(netlab.root_links(), links0, "the root namespace's links after the test")
        root = netlab.run(netlab.IP, "-o", "addr", "show") + netlab.run(netlab.IP, "route",
                                                                          "show")
        check("198.18." not in root, "no 198.18.0.0/15 address or route in the root namespace")
    print("netns: %d passed, %d failed, %.1f s" % (dftest.PASSES, len(dftest.FAILS),
                                                   time.monotonic() - t0))
    return 1 if dftest.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
