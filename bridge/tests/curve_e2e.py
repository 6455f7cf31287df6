#!/usr/bin/python3
"""End-to-end tests of CURVE and the allow-list (README "Security"): the real dfbridge against the
real dfpod over TCP on 127.0.0.1, consumers in pyzmq with CURVE keys (Debian's python3-zmq).

Cases (--case NAME, one ctest each):
  allowed        an allowed consumer gets every event (exact ids, gseq 1..n, no duplicate) and
                 replay answers; a consumer with valid keys not in clientsDir, a plain one and
                 one with a wrong server key get nothing and no replay answer; denials are
                 counted and logged (rate-limited) with the address and the key's fingerprint;
                 a broken certificate in clientsDir is skipped
  revoke_ipc     the same re-bind on ipc:// endpoints; a clientsDir that disappears lets nobody
                 in until it is back
  grant_revoke   copying a consumer's .key into clientsDir lets it in within 5 s; deleting it
                 cuts its connection within 5 s while events flow; the allowed consumer loses
                 nothing (it fills any gap from replay) and the heartbeat keeps its numbering
  config         bad curve config exits 2 naming the key; the loopback rule (exit 2 naming
                 bridge.insecure before binding; insecure: true warns)
  keygen         `dfbridge keygen`: modes, pyzmq reads the files, never overwrites
Waits synchronise on signals (heartbeats, replay and info answers, counters, log lines).
Usage: curve_e2e.py --dfpod PATH --dfbridge PATH --case NAME
"""
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time

import msgpack
import zmq
import zmq.auth

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, check, eq, free_port  # noqa: E402
from dftest import unpack as env, wait_until as wait_for  # noqa: E402

dftest.WAIT_TIMEOUT = 30.0
HB_MS = 200


# ---- keys ------------------------------------------------------------------------------------
class Keys:
    """A certificate pair on disk: .pub/.sec (Z85 bytes) and the public file's path."""

    def __init__(self, d, name, tool="pyzmq"):
        if tool == "pyzmq":
            self.pub_path, self.sec_path = zmq.auth.create_certificates(d, name)
        else:
            out = subprocess.run([dftest.CTX.dfbridge, "keygen", d, name], capture_output=True,
                                 text=True, timeout=10)
            check(out.returncode == 0, "keygen %s: %s" % (name, out.stderr))
            self.pub_path = os.path.join(d, name + ".key")
            self.sec_path = self.pub_path + "_secret"
        self.pub, self.sec = zmq.auth.load_certificate(self.sec_path)
        self.name = name

    def fingerprint(self):
        return self.pub.decode()[:12]


def setup_keys():
    """The bridge's pair (written by dfbridge keygen), the allowed consumer alice (pyzmq), bob
    and eve (not allowed), a clientsDir holding alice.key only."""
    tmp = dftest.CTX.tmp
    certs = os.path.join(tmp, "certs")
    clients = os.path.join(tmp, "clients")
    os.mkdir(certs)
    os.mkdir(clients)
    k = {"bridge": Keys(certs, "bridge", tool="dfbridge"), "alice": Keys(certs, "alice"),
         "bob": Keys(certs, "bob", tool="dfbridge"), "eve": Keys(certs, "eve")}
    shutil.copy(k["alice"].pub_path, clients)
    return k, clients


def curve_bridge(pod, k, clients, extra="", env=None):
    """A dfbridge with journal, replay, 200 ms heartbeats and CURVE; env: variables added."""
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    replay_port = free_port()
    br = Bridge(pod, datafeed="datafeed:\n  version: v2\n  retry: {initialIntervalMillis: 50, "
                "maxIntervalMillis: 400}\n", retry="",
                bridge_extra="  stateDir: %s\n  replay: tcp://127.0.0.1:%d\n"
                "  heartbeatMillis: %d\n  curve:\n    secretKey: %s\n    clientsDir: %s\n%s"
                % (os.path.join(dftest.CTX.tmp, "state"), replay_port, HB_MS,
                   k["bridge"].sec_path, clients, extra),
                read_timeout_ms=None, connect_timeout_ms=None, env=full_env)
    br.replay = "tcp://127.0.0.1:%d" % replay_port
    return br


def csock(kind, endpoint, me=None, server=None):
    """A pyzmq socket with CURVE client options (me: Keys; server: the server's public key as
    Z85) or plain (me None), connected to endpoint; a SUB subscribes to everything."""
    s = dftest.CTX.zctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if me is not None:
        s.curve_publickey = me.pub
        s.curve_secretkey = me.sec
        s.curve_serverkey = server
    if kind == zmq.SUB:
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(endpoint)
    return s


def recv(sock, timeout_ms):
    if not sock.poll(timeout_ms):
        return None
    return sock.recv_multipart()


def wait_hb(sock, timeout_ms=10000):
    """The first heartbeat (proves the handshake and the subscription): its envelope, or None."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        m = recv(sock, 100)
        if m and m[0] == b"_hb":
            return env(m[1])
    return None


def Replay(endpoint, me, server):
    """The replay client with me's CURVE keys (dftest.ReplayClient)."""
    return dftest.ReplayClient(endpoint, (me.pub, me.sec, server))


def events(prefix, n):
    return [dftest.event(i, prefix=prefix) for i in range(n)]


def collect(sock, into, until_gseq, timeout=30.0):
    """Receives into `into` (list of (topic, body)) until a heartbeat says gseq >= until_gseq:
    PUB keeps order, so every event published before it has arrived (or was lost)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = recv(sock, 200)
        if m is None:
            continue
        if m[0] == b"_hb":
            if env(m[1])["gseq"] >= until_gseq:
                return True
        else:
            into.append((m[0], m[1]))
    check(False, "a heartbeat with gseq >= %d within %.0f s" % (until_gseq, timeout))
    return False


def nothing_while(sock, ref, beats=3):
    """Receives on ref until it saw `beats` heartbeats, meanwhile everything that arrives on
    sock; returns what sock got (must be [])."""
    got = []
    seen = 0
    deadline = time.monotonic() + 15
    while seen < beats and time.monotonic() < deadline:
        m = recv(ref, 50)
        if m and m[0] == b"_hb":
            seen += 1
        while True:
            x = recv(sock, 0)
            if x is None:
                break
            got.append(x)
    check(seen == beats, "the reference consumer saw %d heartbeats" % seen)
    return got


# ---- cases -----------------------------------------------------------------------------------
def case_allowed():
    k, clients = setup_keys()
    with open(os.path.join(clients, "broken.key"), "w") as f:
        f.write("curve\n    public-key = \"tooshort\"\n")
    pod = dftest.Pod("--hold-ms", "1000")
    br = curve_bridge(pod, k, clients)
    server = k["bridge"].pub
    alice = csock(zmq.SUB, br.endpoint, k["alice"], server)
    hb = wait_hb(alice)
    if not check(hb is not None, "alice (allowed) gets a heartbeat"):
        return
    n = 200
    pod.events(events("ok", n))
    got = []
    collect(alice, got, n)
    ids = [env(b)["event"]["id"] for _, b in got]
    eq(ids, ["ok-%d" % i for i in range(n)], "alice's events, in order")
    eq([env(b)["gseq"] for _, b in got], list(range(1, n + 1)), "gseq 1..n, no gap, no duplicate")
    rp = Replay(br.replay, k["alice"], server)
    r = rp.ask(from_gseq=1)
    check(r is not None and [x for x in r[0]] == got and r[1].get("status") == "ok",
          "alice's replay answers the same bytes")
    c = rp.info()
    check(c is not None and c["auth_clients"] == 1 and c["auth_bad_files"] == 1
          and c["auth_reloads"] == 1 and c["auth_rebinds"] == 0 and c["auth_allowed"] >= 2,
          "auth counters after start: %r" % (c and {x: c[x] for x in c if x.startswith("auth")}))
    check(re.search(r"auth: bridge.curve.clientsDir: \S*broken.key: line 2: public-key is not 40 "
                    r"Z85 characters: skipped", br.text()), "the broken certificate is logged")

    # Denied: valid keys not in clientsDir (SUB and DEALER), plain, and a wrong server key.
    eve = csock(zmq.SUB, br.endpoint, k["eve"], server)
    eve_rp = csock(zmq.DEALER, br.replay, k["eve"], server)
    plain = csock(zmq.SUB, br.endpoint)
    plain_rp = csock(zmq.DEALER, br.replay)
    wrong = csock(zmq.SUB, br.endpoint, k["alice"], k["bob"].pub)
    wrong_rp = csock(zmq.DEALER, br.replay, k["alice"], k["bob"].pub)
    for d in (eve_rp, plain_rp, wrong_rp):
        d.send(msgpack.packb({"v": 1, "req": 1, "from_gseq": 1}), zmq.DONTWAIT)
    wait_for(lambda: (rp.info() or {}).get("auth_denied", 0) >= 2, "eve's two denials counted")
    pod.events(events("more", 10))
    more = []
    collect(alice, more, n + 10)
    eq([env(b)["event"]["id"] for _, b in more], ["more-%d" % i for i in range(10)],
       "alice gets the next events")
    for name, s in (("eve", eve), ("plain", plain), ("wrong server key", wrong),
                    ("eve's replay", eve_rp), ("plain replay", plain_rp),
                    ("wrong server key replay", wrong_rp)):
        eq(nothing_while(s, alice, beats=2), [], "%s receives nothing" % name)
    text = br.text()
    check(re.search(r"auth: denied a CURVE client from 127\.0\.0\.1, key %s: not in "
                    r"bridge\.curve\.clientsDir" % re.escape(k["eve"].fingerprint()), text),
          "a denial is logged with the address and the key's fingerprint")
    check(k["eve"].pub.decode() not in text and k["alice"].sec.decode() not in text
          and k["bridge"].sec.decode() not in text, "no whole key in the log")
    # Rate limit: 30 more denials within a second give at most 2 lines and a summary.
    before = len(re.findall(r"auth: denied", text))
    burst = [csock(zmq.SUB, br.endpoint, k["eve"], server) for i in range(30)]
    wait_for(lambda: (rp.info() or {}).get("auth_denied", 0) >= 32, "32 denials counted")
    for s in burst:
        s.close()
    wait_for(lambda: "denial(s) in the last second, not logged one by one" in br.text(),
             "the summary of the denials not logged")
    lines = len(re.findall(r"auth: denied", br.text())) - before
    check(lines <= 3, "%d denial lines for 30 denials within about a second" % lines)
    c = rp.info()
    check(c and c["auth_clients"] == 1 and c["auth_rebinds"] == 0, "nothing re-bound: %r" % c)
    for s in (alice, eve, eve_rp, plain, plain_rp, wrong, wrong_rp):
        s.close()
    rp.close()
    rc = br.terminate()[0]
    eq(rc, 0, "bridge exit status")


def case_grant_revoke():
    k, clients = setup_keys()
    pod = dftest.Pod("--hold-ms", "1000")
    br = curve_bridge(pod, k, clients)
    server = k["bridge"].pub
    alice = csock(zmq.SUB, br.endpoint, k["alice"], server)
    if not check(wait_hb(alice) is not None, "alice gets a heartbeat"):
        return
    rp = Replay(br.replay, k["alice"], server)

    # bob is denied; libzmq does not retry a denied handshake, so bob retries with a new
    # socket every 300 ms, as the project's consumers do.
    bob = csock(zmq.SUB, br.endpoint, k["bob"], server)
    eq(nothing_while(bob, alice, beats=2), [], "bob (not allowed) receives nothing")
    bob.close()
    t0 = time.monotonic()
    shutil.copy(k["bob"].pub_path, clients)
    bob = None
    while time.monotonic() - t0 < 10:
        s = csock(zmq.SUB, br.endpoint, k["bob"], server)
        if wait_hb(s, 300) is not None:
            bob = s
            break
        s.close()
    granted = time.monotonic() - t0
    check(bob is not None and granted <= 5.0, "bob let in %.2f s after his .key was copied"
          % granted)
    if bob is None:
        return
    c = rp.info()
    check(c and c["auth_clients"] == 2 and c["auth_reloads"] == 2, "2 clients: %r" % c)

    # Events flow while bob's certificate is deleted: bob is cut within 5 s, alice loses
    # nothing (a gap from the re-bind is filled from replay).
    first = 100
    pod.events(events("a", first))
    got_a, got_b = [], []
    collect(alice, got_a, first)
    collect(bob, got_b, first)
    eq(len(got_b), first, "bob got the first %d events" % first)
    stop = threading.Event()
    sent = [first]

    def feed():
        i = 0
        while not stop.is_set() and i < 400:
            pod.events(events("f%d" % i, 5))
            sent[0] += 5
            i += 1
            stop.wait(0.02)

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(0.3)  # not a synchronisation: lets events flow before the removal
    t_rm = time.monotonic()
    os.remove(os.path.join(clients, "bob.key"))
    bob_last = time.monotonic()
    rebound = None
    while time.monotonic() - t_rm < 10:
        m = recv(bob, 20)
        if m is not None:
            bob_last = time.monotonic()
        m = recv(alice, 0)
        if m is not None:
            if m[0] != b"_hb":
                got_a.append((m[0], m[1]))
        if rebound is None and "publish: PUB re-bound at" in br.text():
            rebound = time.monotonic() - t_rm
        if rebound is not None and time.monotonic() - bob_last > 2.0:
            break  # bob has been silent for 2 s (heartbeats every 200 ms)
    cut = bob_last - t_rm
    check(rebound is not None and rebound <= 5.0, "PUB re-bound %r s after the removal" % rebound)
    check(cut <= 5.0, "bob's last message %.2f s after the removal" % cut)
    stop.set()
    feeder.join()
    total = sent[0]
    bob_tail = nothing_while(bob, alice, beats=3)
    eq([m for m in bob_tail if m[0] != b"_hb"][:1], [], "bob receives no event any more")
    eq([m for m in bob_tail if m[0] == b"_hb"][:1], [], "bob receives no heartbeat any more")
    # alice: everything up to `total`, live or from replay.
    collect(alice, got_a, total)
    live = {}
    dups = 0
    for t, b in got_a:
        g = env(b)["gseq"]
        dups += g in live
        live[g] = (t, b)
    eq(dups, 0, "alice got no duplicate")
    missing = [g for g in range(1, total + 1) if g not in live]
    print("alice: %d live, %d missed during the re-bind (filled from replay)"
          % (len(live), len(missing)))
    filled = rp.journal(missing[0], missing[-1]) if missing else {}
    for g in missing:
        if g in filled:
            live[g] = filled[g]
    eq(sorted(live), list(range(1, total + 1)), "alice has gseq 1..%d" % total)
    want_ids = (["a-%d" % i for i in range(first)]
                + ["f%d-%d" % (i, j) for i in range((total - first) // 5) for j in range(5)])
    eq([env(live[g][1])["event"]["id"] for g in range(1, total + 1)], want_ids,
       "alice's events are every event sent, in order")
    allr = rp.journal(1, total)
    eq([allr.get(g) for g in range(1, total + 1)], [live[g] for g in range(1, total + 1)],
       "byte for byte what replay holds")
    c = rp.info()
    check(c and c["auth_rebinds"] == 1 and c["auth_clients"] == 1 and c["auth_reloads"] == 3,
          "one re-bind, alice alone: %r" % c)
    hb = wait_hb(alice)
    check(hb and hb["gseq"] == total, "the heartbeat goes on with gseq %d: %r" % (total, hb))
    check("replay: ROUTER re-bound at" in br.text(), "the replay ROUTER re-bound")
    # The connection guard (dfb_fdguard) watches the new sockets: alice's SUB and
    # this DEALER are the live connections (bob's denied ones come and go). With
    # the old sockets' monitors kept, the gauge would stay at the count from before
    # the re-bind and the new sockets would be uncapped.
    conns = [None]
    dftest.poll_until(lambda: conns.__setitem__(0, (rp.info() or {}).get("connections"))
                      or conns[0] == 2, 5)
    eq(conns[0], 2, "connections after the re-bind (alice's SUB, the replay DEALER)")
    for s in (alice, bob):
        s.close()
    rp.close()
    eq(br.terminate()[0], 0, "bridge exit status")


def case_revoke_ipc():
    """Revocation over ipc:// (loopback by nature), each re-bind failing 3 times first (a
    test hook): retried, logged once, never fatal; after it the socket files exist again,
    alice reconnects, bob does not. Then clientsDir disappears: nobody gets in (fail
    closed, every connection cut) until it is back."""
    k, clients = setup_keys()
    shutil.copy(k["bob"].pub_path, clients)
    pod = dftest.Pod("--hold-ms", "1000")
    # every re-bind fails 3 times first: retried every 100 ms, logged once, never fatal
    br = curve_bridge(pod, k, clients, env={"DFB_TEST_REBIND_FAILS": "3"})
    br.terminate()  # restarted below on ipc endpoints
    pub_ep = "ipc://%s/pub.sock" % dftest.CTX.tmp
    rep_ep = "ipc://%s/replay.sock" % dftest.CTX.tmp
    br.config = br.config.replace("publish: %s" % br.endpoint, "publish: %s" % pub_ep) \
        .replace("replay: %s" % br.replay, "replay: %s" % rep_ep)
    with open(br.cfg_path, "w") as f:
        f.write(br.config)
    br.endpoint, br.replay = pub_ep, rep_ep
    br.start()
    server = k["bridge"].pub
    wait_for(lambda: os.path.exists(pub_ep[6:]) and os.path.exists(rep_ep[6:]), "the ipc files")
    alice = csock(zmq.SUB, pub_ep, k["alice"], server)
    bob = csock(zmq.SUB, pub_ep, k["bob"], server)
    check(wait_hb(alice) is not None and wait_hb(bob) is not None, "alice and bob get heartbeats")
    os.remove(os.path.join(clients, "bob.key"))
    wait_for(lambda: "replay: ROUTER re-bound at" in br.text()
             and "publish: PUB re-bound at" in br.text(), "both sockets re-bound", timeout=5)
    for ep in (pub_ep, rep_ep):
        check(os.path.exists(ep[6:]), "%s exists after the re-bind" % ep)
    text = br.text()
    for who in ("publish", "replay"):
        eq(text.count("%s: re-bind after an allow-list change failed (test fault "
                      "(DFB_TEST_REBIND_FAILS)): retrying every 100 ms" % who), 1,
           "%s: the failed re-bind attempts logged once" % who)
    while recv(alice, 0) is not None:  # what arrived before the re-bind
        pass
    check(wait_hb(alice, 5000) is not None, "alice gets heartbeats after the re-bind")
    while recv(bob, 300) is not None:  # what was queued before the cut
        pass
    eq(nothing_while(bob, alice, beats=3), [], "bob gets nothing after the re-bind")
    late = csock(zmq.SUB, pub_ep, k["alice"], server)
    check(wait_hb(late) is not None, "a new connection to the re-bound ipc socket works")
    rp = Replay(rep_ep, k["alice"], server)
    c = rp.info()
    check(c and c["auth_rebinds"] == 1 and c["auth_clients"] == 1, "replay over ipc: %r" % c)
    for s in (alice, bob, late):
        s.close()
    rp.close()
    # A clientsDir that cannot be read allows nobody (fail closed), and back again.
    os.rename(clients, clients + ".moved")
    wait_for(lambda: "nobody is allowed in until it can be read again" in br.text()
             and br.text().count("publish: PUB re-bound at") == 2, "the folder gone: re-bound",
             timeout=5)
    s = csock(zmq.SUB, pub_ep, k["alice"], server)
    check(wait_hb(s, 1500) is None, "alice is not let in while clientsDir is gone")
    s.close()
    os.rename(clients + ".moved", clients)
    t0 = time.monotonic()
    back = None
    while back is None and time.monotonic() - t0 < 10:
        s = csock(zmq.SUB, pub_ep, k["alice"], server)
        if wait_hb(s, 300) is not None:
            back = time.monotonic() - t0
        s.close()
    check(back is not None and back <= 5.0, "alice let in %r s after clientsDir is back" % back)
    eq(br.terminate()[0], 0, "bridge exit status")


def check_config(cfg_text, want_rc, *words, absent=()):
    """`dfbridge --check` on a config: exit status and the words in its output."""
    path = os.path.join(dftest.CTX.tmp, "check-%d.yaml" % free_port())
    with open(path, "w") as f:
        f.write(cfg_text)
    out = subprocess.run([dftest.CTX.dfbridge, "--config", path, "--check"], capture_output=True,
                         text=True, timeout=30)
    text = out.stdout + out.stderr
    ok = check(out.returncode == want_rc, "--check exit %d, want %d: %s"
               % (out.returncode, want_rc, text.strip()))
    for w in words:
        ok = check(re.search(w, text), "%r in %r" % (w, text.strip())) and ok
    for w in absent:
        ok = check(not re.search(w, text), "%r not in %r" % (w, text.strip())) and ok
    return text


def case_config():
    k, clients = setup_keys()
    tmp = dftest.CTX.tmp
    base = ("host: 127.0.0.1\nbot:\n  username: my-bot\n  privateKey:\n    path: %s\n"
            "bridge:\n" % dftest.CTX.key)
    port = free_port()
    lo = "  publish: tcp://127.0.0.1:%d\n" % port

    def curve(sec, cdir):
        return "  curve:\n" + ("    secretKey: %s\n" % sec if sec else "") + \
            ("    clientsDir: %s\n" % cdir if cdir else "")

    garbage = os.path.join(tmp, "garbage.key_secret")
    with open(garbage, "w") as f:
        f.write("this is not a certificate\n")
    a_file = os.path.join(tmp, "a-file")
    open(a_file, "w").close()
    check_config(base + lo + curve(k["bridge"].sec_path, clients), 0, r"OK \(.*CURVE\)")
    cases = [
        (curve(os.path.join(tmp, "nope.key_secret"), clients),
         r"config: bridge\.curve\.secretKey: cannot read '\S*nope\.key_secret': No such file or directory"),
        (curve(garbage, clients), r"config: bridge\.curve\.secretKey: \S*garbage\.key_secret: "
         r"line 1: expected '=' or the end of the line"),
        (curve(k["bridge"].pub_path, clients), r"config: bridge\.curve\.secretKey: \S*bridge\.key: "
         r"holds a public certificate where a secret one is needed"),
        (curve(k["bridge"].sec_path, os.path.join(tmp, "nodir")),
         r"config: bridge\.curve\.clientsDir: \S*nodir: No such file or directory"),
        (curve(k["bridge"].sec_path, a_file),
         r"config: bridge\.curve\.clientsDir: \S*a-file: not a directory"),
        (curve(k["bridge"].sec_path, None),
         r"config: bridge\.curve\.clientsDir: required when bridge\.curve\.secretKey is set"),
        (curve(None, clients),
         r"config: bridge\.curve\.secretKey: required when bridge\.curve\.clientsDir is set"),
        ("  curve:\n    secretKey: \"\"\n    clientsDir: %s\n" % clients,
         r"config: bridge\.curve\.secretKey: must not be empty"),
        ("  curve:\n    secretkey: x\n", r"config: bridge\.curve\.secretkey: unknown key"),
        ("  insecure: maybe\n", r"config: bridge\.insecure: must be false or true, not 'maybe'"),
    ]
    for frag, want in cases:
        check_config(base + lo + frag, 2, want)
    # The secret certificate's mode (dfb_secret): group/other access is a
    # warning, refused under bridge.strictPermissions; 0600 is accepted.
    loose = os.path.join(tmp, "loose.key_secret")
    with open(k["bridge"].sec_path) as src, open(loose, "w") as dst:
        dst.write(src.read())
    os.chmod(loose, 0o644)
    check_config(base + lo + curve(loose, clients), 0,
                 r"bridge\.curve\.secretKey: \S*loose\.key_secret is .*\(mode 0644\): run chmod 600")
    check_config(base + lo + "  strictPermissions: true\n" + curve(loose, clients), 2,
                 r"bridge\.curve\.secretKey: \S*loose\.key_secret is .*\(mode 0644\)")
    os.chmod(loose, 0o600)
    check_config(base + lo + "  strictPermissions: true\n" + curve(loose, clients), 0,
                 r"OK \(.*CURVE\)", absent=("chmod 600",))
    # A garbage file with an empty curve section: the parser's own words.
    with open(garbage, "w") as f:
        f.write("metadata\ncurve\n")
    check_config(base + lo + curve(garbage, clients), 2,
                 r"bridge\.curve\.secretKey: \S*garbage\.key_secret: no public-key in the curve")

    # The loopback rule, without curve.
    insecure = r"config: %s: '%s' listens beyond loopback without CURVE; .*bridge\.insecure: true"
    for ep in ("tcp://0.0.0.0:%d" % port, "tcp://*:%d" % port, "tcp://[::]:%d" % port,
               "tcp://eth0:%d" % port, "tcp://[::ffff:10.0.0.1]:%d" % port,
               "tcp://10.1.2.3:%d" % port, "tcp://example.com:%d" % port):
        check_config(base + "  publish: %s\n" % ep, 2,
                     insecure % (r"bridge\.publish", re.escape(ep)))
    for ep in ("tcp://127.0.0.1:%d" % port, "tcp://127.1.2.3:%d" % port,
               "tcp://[::1]:%d" % port, "tcp://localhost:%d" % port,
               "tcp://[::ffff:127.0.0.1]:%d" % port, "ipc://%s/x.sock" % tmp, "inproc://x"):
        check_config(base + "  publish: %s\n" % ep, 0, "OK", absent=("beyond loopback",))
    state = "  stateDir: %s\n" % os.path.join(tmp, "state")
    check_config(base + lo + state + "  replay: tcp://*:%d\n" % free_port(), 2,
                 r"config: bridge\.replay: 'tcp://\*:\d+' listens beyond loopback")
    # the default publish endpoint is loopback: a config without one passes
    check_config(base, 0, r"publish tcp://127\.0\.0\.1:5556")
    # insecure: true: a warning per endpoint, and OK (--check binds nothing)
    check_config(base + "  publish: tcp://0.0.0.0:%d\n  insecure: true\n" % port + state
                 + "  replay: tcp://*:%d\n" % free_port(), 0,
                 r"warn\s+config: bridge\.insecure: true: bridge\.publish 'tcp://0\.0\.0\.0:\d+' "
                 r"listens beyond loopback without CURVE",
                 r"warn\s+config: bridge\.insecure: true: bridge\.replay 'tcp://\*:\d+'", "OK")
    # curve on: a non-loopback endpoint is fine (checked only: nothing is bound)
    check_config(base + "  publish: tcp://0.0.0.0:%d\n" % port + curve(k["bridge"].sec_path,
                                                                           clients),
                 0, "OK", absent=("beyond loopback",))

    # A real start refuses before binding: we hold the port on 127.0.0.1, so a bind of
    # 0.0.0.0 would fail with "cannot bind" instead of the rule's message.
    held = socket.socket()
    held.bind(("127.0.0.1", port))
    held.listen(1)
    pod = dftest.Pod()
    br = Bridge(pod, bridge_extra="", start=False)
    br.config = br.config.replace("publish: %s" % br.endpoint, "publish: tcp://0.0.0.0:%d" % port)
    with open(br.cfg_path, "w") as f:
        f.write(br.config)
    br.start()
    br.expect_exit(dftest.EXIT_CONFIG, r"bridge\.publish: 'tcp://0\.0\.0\.0:\d+' listens beyond "
                   r"loopback without CURVE", r"bridge\.insecure")
    check("cannot bind" not in br.text(), "refused before binding")
    eq(pod.calls(), [], "refused before calling the pod")
    held.close()
    # A real start with insecure: true on a loopback endpoint: no warning, it runs.
    br = Bridge(pod, bridge_extra="  insecure: true\n")
    sub = dftest.Sub(br)
    sub.sync(pod)
    check("beyond loopback" not in br.text(), "no warning for a loopback endpoint")
    sub.close()
    eq(br.terminate()[0], 0, "bridge exit status")


def case_keygen():
    d = os.path.join(dftest.CTX.tmp, "kg")
    os.mkdir(d)
    old = os.umask(0)  # the modes must not depend on the umask
    try:
        out = subprocess.run([dftest.CTX.dfbridge, "keygen", d, "worker-1"], capture_output=True,
                             text=True, timeout=10)
    finally:
        os.umask(old)
    eq(out.returncode, 0, "keygen exit status")
    pub_path = os.path.join(d, "worker-1.key")
    sec_path = pub_path + "_secret"
    m = re.search(r"^public key: (\S{40})$", out.stdout, re.M)
    check(("public certificate: %s" % pub_path) in out.stdout
          and ("secret certificate: %s" % sec_path) in out.stdout and m,
          "keygen prints the paths and the public key: %r" % out.stdout)
    eq(oct(stat.S_IMODE(os.stat(sec_path).st_mode)), "0o600", "secret file mode")
    eq(oct(stat.S_IMODE(os.stat(pub_path).st_mode)), "0o644", "public file mode")
    pub, sec = zmq.auth.load_certificate(sec_path)
    pub2, none = zmq.auth.load_certificate(pub_path)
    check(pub == pub2 and none is None and sec and zmq.curve_public(sec) == pub,
          "pyzmq loads both files: a matching pair")
    check(m and m.group(1).encode() == pub, "the printed public key is the file's")
    check(sec.decode() not in out.stdout + out.stderr, "the secret key is not printed")
    check(zmq.auth.load_certificates(d) == {pub: True}, "pyzmq's clientsDir loader reads it")
    before = (open(pub_path, "rb").read(), open(sec_path, "rb").read())
    for args, want in (([d, "worker-1"], r"worker-1\.key: already exists \(refusing to overwrite\)"),
                       ([d, "../x"], r"certificate name '\.\./x' is not"),
                       ([os.path.join(d, "nope"), "w"], r"nope: No such file or directory"),
                       ([d], r"keygen takes DIR NAME")):
        out = subprocess.run([dftest.CTX.dfbridge, "keygen"] + args, capture_output=True,
                             text=True, timeout=10)
        eq(out.returncode, 2, "keygen %r exit status" % args)
        check(re.search(want, out.stderr), "keygen %r: %r in %r" % (args, want, out.stderr))
    eq((open(pub_path, "rb").read(), open(sec_path, "rb").read()), before,
       "the existing pair is unchanged")
    eq(sorted(os.listdir(d)), ["worker-1.key", "worker-1.key_secret"], "no other file was left")


CASES = {"allowed": case_allowed, "grant_revoke": case_grant_revoke, "revoke_ipc": case_revoke_ipc,
         "config": case_config, "keygen": case_keygen}

if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="dfcurve-"))
