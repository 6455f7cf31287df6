#!/usr/bin/python3
"""Live under CURVE: the real dfpod -> the real dfbridge with CURVE on 127.0.0.1 (keys written by
`dfbridge keygen`, journal + replay on) -> the real C, Python and Node consumer libraries, through
the polyglot workers (c_worker.c, bdk_worker.py, worker.js with --server-key/--cert).

Workers (each a process; "allowed" = its .key is in bridge.curve.clientsDir at start):
  c, python, node   allowed: each ends with EVERY event exactly once (exact gseqs and ids, no
                    duplicate, the canonical lines of live_test.py), although the re-bind below
                    cut them while the pod streamed: they fill that gap from replay
  late (Node)       not allowed: receives nothing, its library counts auth_failures and logs the
                    failed handshake; the bridge counts auth_denied (info answer over a CURVE
                    DEALER) and logs the denial with the key's fingerprint. Then its .key is
                    copied into clientsDir: within 5 s, without a restart, it receives events,
                    and it ends with every event exactly once too
  revoked (Python)  allowed, receiving while the pod streams; its .key is deleted: its last
                    event arrives at most 5 s after the delete, it gets none of the events
                    injected after the bridge logged the re-bind, never a duplicate, and counts
                    auth_failures (denied when it reconnects)
  wrongkey (C)      its own key is allowed, but it is given another key as the bridge's: never
                    receives anything, counts auth_failures, does not crash
and a plain pyzmq SUB (no CURVE) that receives nothing, and a plain DEALER whose info request
never gets an answer.

Events: 200 (A) before the grant, 600 (B) streamed slowly (about 5 s: reads of at most 10 events,
each held 80 ms by dfpod) during which one key is deleted, 100 (C) after the bridge logged that
both sockets re-bound. At the end (the pod has every event acknowledged) the journal is read back
over a CURVE replay DEALER and is exactly the 900 injected events, gseq 1..900; each worker's lines
are compared with it. Waits use signals (worker lines, pod counters, info answers, log lines).

Usage: curve_live_test.py --dfpod P --dfbridge P --c-worker P --node P --source-dir DIR [--keep]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import msgpack
import zmq
import zmq.auth

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import live_test as live  # noqa: E402  (Worker, canonical, digest, check_worker)
import dftest  # noqa: E402  (live_test put tests/pylib on the path)
from dftest import check, eq, unpack  # noqa: E402

dftest.WAIT_TIMEOUT = 30.0
USER = 68719476737            # an initiator that is not the bot: every event is accepted
N_A, N_B, N_C = 200, 600, 100
TOTAL = N_A + N_B + N_C
REVOKE_AT = N_A + 150         # the key is deleted when the revoked worker handled this many
WITHIN = 5.0                  # seconds: a grant lets in, a removal cuts off (issue 9)


# ---- keys ------------------------------------------------------------------------------------
def keygen(d, name):
    """`dfbridge keygen d name`: (path of name.key, public key Z85 bytes)."""
    out = subprocess.run([dftest.CTX.dfbridge, "keygen", d, name], capture_output=True,
                         text=True, timeout=20)
    check(out.returncode == 0, "dfbridge keygen %s: exit %d %s" % (name, out.returncode,
                                                                   out.stderr.strip()))
    pub = os.path.join(d, name + ".key")
    return pub, zmq.auth.load_certificate(pub)[0]


def curve_dealer(endpoint, sec_path, server_pub):
    """The test's replay client with an allowed key (dftest.ReplayClient)."""
    pub, sec = zmq.auth.load_certificate(sec_path)
    return dftest.ReplayClient(endpoint, (pub, sec, server_pub))


def counters(dealer):
    c = dealer.info()
    check(c is not None, "an info answer over CURVE")
    return c or {}


def events(prefix, n):
    return [dftest.event(i, prefix=prefix, user=USER) for i in range(n)]


def acked(pod, n):
    c = pod.counters()
    return c["acked"] >= n and c["pending"] == 0


def lines_with_gseq_over(w, g):
    return [x for x in list(w.lines) if int(x.split(" ", 1)[0]) > g]


# ---- the test --------------------------------------------------------------------------------
def run(a):
    tmp = dftest.CTX.tmp
    certs, clients = os.path.join(tmp, "certs"), os.path.join(tmp, "clients")
    os.mkdir(certs)
    os.mkdir(clients)
    names = ["bridge", "c", "python", "node", "late", "revoked", "wrongkey", "tester", "other"]
    keys = {n: keygen(certs, n) for n in names}
    if dftest.FAILS:
        return
    for n in ("c", "python", "node", "revoked", "wrongkey", "tester"):
        shutil.copy(keys[n][0], clients)
    server_pub = keys["bridge"][1]

    pod = dftest.Pod("--hold-ms", "1000", "--visibility-ms", "1500", "--batch-max", "10",
                     timeout=60)
    state = os.path.join(tmp, "state")
    replay = "tcp://127.0.0.1:%d" % dftest.free_port()
    br = dftest.Bridge(pod, datafeed="datafeed:\n  version: v2\n  retry: {initialIntervalMillis:"
                       " 50, maxIntervalMillis: 400}\n", retry="",
                       bridge_extra="  stateDir: %s\n  replay: %s\n  heartbeatMillis: 200\n"
                       "  curve:\n    secretKey: %s\n    clientsDir: %s\n"
                       % (state, replay, os.path.join(certs, "bridge.key_secret"), clients),
                       read_timeout_ms=None, connect_timeout_ms=None)

    # The test's own CURVE DEALER (info, journal) answers once the bridge is up.
    tester = curve_dealer(replay, os.path.join(certs, "tester.key_secret"), server_pub)
    c0 = counters(tester)
    if not check(c0.get("auth_clients") == 6, "the bridge allows the 6 keys of clientsDir: %r"
                 % c0.get("auth_clients")):
        return
    # 6. plain sockets: a SUB and a DEALER asking for info; looked at the end.
    plain_sub = dftest.sub_socket([br.endpoint], rcvhwm=0)
    plain_dealer = dftest.CTX.zctx.socket(zmq.DEALER)
    plain_dealer.setsockopt(zmq.LINGER, 0)
    plain_dealer.connect(replay)
    plain_dealer.send(msgpack.packb({"v": 1, "req": 1, "info": True}, use_bin_type=True))

    src = a.source_dir
    def cmd(lang, name, server=None):
        common = ["--endpoint", br.endpoint, "--replay", replay, "--from-gseq", "1",
                  "--server-key", server or keys["bridge"][0],
                  "--cert", os.path.join(certs, name + ".key_secret")]
        if lang == "c":
            return [a.c_worker] + common
        if lang == "python":
            return ["/usr/bin/python3", os.path.join(HERE, "bdk_worker.py")] + common
        return [a.node, os.path.join(HERE, "worker.js")] + common

    check(os.path.isdir(os.path.join(src, "consumers", "node", "node_modules", "zeromq")),
          "the Node port's dependencies (npm ci in consumers/node)")
    check(live.node_works(a.node), "node (%s) runs" % a.node)
    spec = [("c", "c", "c", None), ("python", "python", "python", None),
            ("node", "node", "node", None), ("late", "node", "late", None),
            ("revoked", "python", "revoked", None),
            # the server key given as a .key file of another pair: the handshake fails
            ("wrongkey", "c", "wrongkey", keys["other"][0])]
    W = {}
    for label, lang, name, server in spec:
        W[label] = live.Worker(label, cmd(lang, name, server))
    for w in W.values():
        if not dftest.poll_until(lambda: w.ready.is_set() or w.proc.poll() is not None, 30) \
                or not w.ready.is_set():
            check(False, "%s worker ready within 30 s (exit %r): %s"
                  % (w.lang, w.proc.poll(), w.text()[-500:]))
    if dftest.FAILS:
        return
    allowed = [W["c"], W["python"], W["node"]]

    # 1. + 2. part A: the allowed workers (and revoked, still allowed) handle all of it; late
    # and wrongkey nothing. late's library logs its failed handshake, the bridge its denial.
    pod.events(events("a", N_A))
    dftest.wait_until(lambda: acked(pod, N_A), "the pod to see part A acknowledged")
    dftest.wait_until(lambda: all(len(w.lines) >= N_A for w in allowed + [W["revoked"]]),
                      "every allowed worker to handle part A: %r"
                      % {w.lang: len(w.lines) for w in W.values()})
    dftest.wait_until(lambda: "CURVE handshake refused by the bridge" in W["late"].text(),
                      "late's library to log that the bridge refused its CURVE handshake")
    fp = keys["late"][1].decode()[:12]
    dftest.wait_until(lambda: re.search(r"auth: denied a CURVE client from \S+, key %s"
                                        % re.escape(fp), br.text()),
                      "the bridge to log the denial of late's key %s" % fp)
    c1 = counters(tester)
    check(c1.get("auth_denied", 0) > c0.get("auth_denied", 0),
          "the bridge counted late's denials: auth_denied %r -> %r"
          % (c0.get("auth_denied"), c1.get("auth_denied")))
    eq(len(W["late"].lines), 0, "events handled by late before its key is allowed")
    eq(len(W["wrongkey"].lines), 0, "events handled by wrongkey")

    # 3. grant: late's .key copied into clientsDir; within 5 s it handles events (it fills
    # part A from replay) without a restart, then all of part A.
    t_grant = time.monotonic()
    shutil.copy(keys["late"][0], clients)
    got = dftest.poll_until(lambda: W["late"].times, WITHIN + 10)
    if check(got, "late handles events after the grant"):
        dt = W["late"].times[0] - t_grant
        print("grant: late's first event %.2f s after its .key was copied" % dt, flush=True)
        check(dt <= WITHIN, "late's first event %.2f s after the grant (max %.0f s)"
              % (dt, WITHIN))
    dftest.wait_until(lambda: len(W["late"].lines) >= N_A, "late to handle part A")

    # 4. revoke while the pod streams part B slowly (reads of 10 events, each held 80 ms).
    pod.faults({"endpoint": "read", "action": "slow", "delay_ms": 80, "count": N_B // 10 + 5})
    pod.events(events("b", N_B))
    dftest.wait_until(lambda: len(W["revoked"].lines) >= REVOKE_AT,
                      "revoked to handle %d events" % REVOKE_AT)
    t_revoke = time.monotonic()
    os.unlink(os.path.join(clients, "revoked.key"))
    rebound = dftest.wait_until(
        lambda: ("PUB re-bound" in br.text() and "ROUTER re-bound" in br.text()),
        "the bridge to log that the PUB and the ROUTER re-bound", timeout=WITHIN + 5)
    t_rebound = time.monotonic()
    print("revoke: both sockets re-bound %.2f s after the delete; revoked had %d events then; "
          "the pod has %d acknowledged" % (t_rebound - t_revoke, len(W["revoked"].lines),
                                           pod.counters()["acked"]), flush=True)
    check(rebound and t_rebound - t_revoke <= WITHIN, "re-bound within %.0f s of the delete"
          % WITHIN)
    dftest.wait_until(lambda: acked(pod, N_A + N_B), "the pod to see part B acknowledged")
    # C: after the re-bind, so revoked must get none of it.
    pod.events(events("c", N_C))
    dftest.wait_until(lambda: acked(pod, TOTAL), "the pod to see every event acknowledged")

    # The journal, read back over CURVE: exactly the injected events, gseq 1..TOTAL.
    journal = tester.journal()
    msgs = [(t.decode(), b) for _, (t, b) in sorted(journal.items())]
    envs = [unpack(b) for _, b in msgs]
    eq([e["gseq"] for e in envs], list(range(1, TOTAL + 1)), "journal gseqs")
    want_ids = (["a-%d" % i for i in range(N_A)] + ["b-%d" % i for i in range(N_B)]
                + ["c-%d" % i for i in range(N_C)])
    eq(sorted(e["event"]["id"] for e in envs), sorted(want_ids),
       "the journal holds every injected event exactly once")
    expect = {}
    for (topic, _), e in zip(msgs, envs):
        expect[e["gseq"]] = "%d %s %s" % (e["gseq"], live.CALLBACK.get(topic, "on_unknown"),
                                          live.canonical(e["event"]))
    eq(len(expect), TOTAL, "accepted events (all: the initiator is not the bot)")
    want_digest = live.digest(expect.values())
    first_c = min(e["gseq"] for e in envs if e["event"]["id"].startswith("c-"))

    everyone = allowed + [W["late"]]
    done = dftest.poll_until(lambda: all(len(w.lines) >= TOTAL or w.proc.poll() is not None
                                         for w in everyone), 30)
    check(done, "within 30 s c, python, node and late handled %d events: %r"
          % (TOTAL, {w.lang: len(w.lines) for w in W.values()}))

    # revoked: stopped within 5 s of the delete, none of part C, never a duplicate.
    r = W["revoked"]
    r_lines, r_times = list(r.lines), list(r.times)
    gseqs = [int(x.split(" ", 1)[0]) for x in r_lines]
    last = r_times[-1] - t_revoke if r_times else None
    print("revoked: %d events, the last %.2f s after the delete (gseq %s); part C starts at "
          "gseq %d" % (len(r_lines), last or 0, gseqs[-1] if gseqs else None, first_c),
          flush=True)
    check(last is not None and last <= WITHIN, "revoked's last event %.2f s after the delete "
          "(max %.0f s)" % (last or -1, WITHIN))
    eq(len(gseqs), len(set(gseqs)), "revoked handled no event twice")
    check(gseqs and set(gseqs) < set(expect) and max(gseqs) < first_c,
          "revoked handled a proper subset of the journal and nothing of part C (its highest "
          "gseq %r, part C from %d)" % (max(gseqs or [None]), first_c))
    wrong = [g for g, x in zip(gseqs, r_lines) if expect.get(g) != x]
    check(not wrong, "revoked printed %d events differently, first gseq %r" % (len(wrong),
                                                                               wrong[:1]))
    eq(len(W["wrongkey"].lines), 0, "events handled by wrongkey (a wrong server key)")
    check(W["wrongkey"].proc.poll() is None, "wrongkey still running")

    # 6. the plain sockets got nothing (no event, no heartbeat, no info answer).
    plain_got = []
    while plain_sub.poll(0):
        plain_got.append(plain_sub.recv_multipart())
    while plain_dealer.poll(0):
        plain_got.append(plain_dealer.recv_multipart())
    eq(len(plain_got), 0, "messages received by the plain SUB and DEALER")

    c2 = counters(tester)
    print("bridge counters: %s" % {k: v for k, v in c2.items() if k.startswith("auth_")},
          flush=True)
    eq(c2.get("auth_rebinds"), 1, "auth_rebinds (one key removed)")
    eq(c2.get("auth_clients"), 6, "auth_clients after late added and revoked removed")
    check(c2.get("auth_denied", 0) > c1.get("auth_denied", 0),
          "auth_denied grew after the revoke (revoked refused when it reconnects): %r -> %r"
          % (c1.get("auth_denied"), c2.get("auth_denied")))

    # Every worker stops on SIGTERM with exit 0 and prints its counters.
    for label, w in W.items():
        rc = w.stop()
        eq(rc, 0, "%s worker's exit status after SIGTERM" % label)
        check(w.stats is not None, "%s worker printed its stats" % label)
    st = {label: (w.stats or {}) for label, w in W.items()}
    for label in ("late", "revoked", "wrongkey"):
        check(st[label].get("auth_failures", 0) >= 1, "%s counted auth_failures: %r"
              % (label, st[label].get("auth_failures")))
    # An allowed key is never refused by the bridge's ZAP handler. (auth_failures of an allowed
    # worker may still count one: a connection the re-bind closes in the middle of its
    # handshake is reported by libzmq as HANDSHAKE_FAILED_NO_DETAIL, like a wrong server key;
    # the library retries it like one.)
    for w in allowed:
        check("refused by the bridge" not in w.text(),
              "%s (always allowed) was never refused by the bridge" % w.lang)
    for w in everyone:
        eq(st[w.lang].get("lost"), 0, "%s: lost" % w.lang)
        live.check_worker(w, expect, want_digest, "at the end")
    check("CURVE handshake refused by the bridge" in W["revoked"].text(),
          "revoked's library logged that the bridge refused it after the delete")
    check("CURVE handshake failed" in W["wrongkey"].text(),
          "wrongkey's library logged its failed handshakes")
    for label in ("revoked", "wrongkey"):
        w = W[label]
        odd = [x for x in w.other if not re.match(r'\{"(ready|stats)"', x)]
        check(not odd, "%s: unexpected stdout lines %r" % (label, odd[:1]))
        check(dftest.log_clean(w.text()), "%s: no sanitizer report in its log" % label)
    print("workers: %s" % json.dumps({k: {n: v.get(n) for n in (
        "received", "replayed", "gaps", "gaps_filled", "duplicates", "lost", "auth_failures")}
        for k, v in st.items()}), flush=True)
    check(sum(st[w.lang].get("gaps_filled", 0) for w in allowed) >= 1,
          "the re-bind made at least one allowed worker fill a gap from replay")

    tester.close()
    plain_sub.close(linger=0)
    plain_dealer.close(linger=0)
    rc, _ = br.terminate()
    eq(rc, 0, "dfbridge exit status after SIGTERM")
    br.check_clean()
    pod.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--dfbridge", required=True)
    ap.add_argument("--c-worker", required=True)
    ap.add_argument("--node", default="/usr/bin/node")
    ap.add_argument("--source-dir", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()
    took = live.run_test(a, "polyglot-curve-", run)
    print("polyglot_curve: %d passed, %d failed, %.1f s"
          % (dftest.PASSES, len(dftest.FAILS), took))
    return 1 if dftest.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
