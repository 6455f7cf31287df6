#!/usr/bin/python3
"""End-to-end tests of the command channel (schemas/CONTRACT.md "Commands", README "Replying from a
worker"): the real dfbridge against the real dfpod on 127.0.0.1, workers as raw pyzmq DEALERs.
Cases (--case NAME, one ctest each: commands_<case>):
  bad_requests  malformed msgpack, not a map, missing/wrong-typed keys, unknown op, unknown arg, v 2,
                an oversize frame, three frames: each answered bad_request (id echoed when it could
                be read), nothing posted, counted exactly
  framing       an empty delimiter then the request (REQ style, and a real REQ socket): the reply
                carries the delimiter; a plain DEALER's reply has none
  replayed      the same id twice: one post, the second reply is the first with replayed: true
                (byte for byte otherwise); the same id with other args: bad_request, nothing sent
  inflight      the same id from two DEALERs while the first is in flight (a slow pod): one post,
                two identical replies; other args meanwhile: bad_request
  busy          commandsQueue 1, one executor held by a slow pod: the third request is busy with
                retry_after_ms >= 100 and is not recorded (the same id later succeeds)
  stream_rate   commandsStreamRate 5: 4 posts into each of two streams sent at once; the pod's
                timestamps are >= 200 - 5 ms apart within a stream (the spacing counts from the end
                of the previous post), in the order sent, and the two streams go side by side
  not_allowed   CURVE + commandsAllow: an op outside a client's patterns and a client not in the
                map are answered not_allowed, counted in commands_denied and logged; scopes keep
                two clients' equal ids apart; a revoked key re-binds the ROUTER and an allowed
                client's DEALER gets answers again
  kill_resume   the bridge killed (SIGKILL) after the begin record while the pod holds its answer
                (slow fault with commit): the restarted bridge, asked again with the same id,
                finds the message by its mark: found true, one message in the pod
  stop          SIGTERM with requests waiting: they are answered unavailable "the bridge is
                stopping", nothing of them is posted; the bridge exits 0
  compaction    commandsWindowMillis 1000, 2 posts of 700 KB, then they expire: the journal is
                compacted on the keeper thread (DFB_TEST_COMPACT_DELAY_MS holds it 4 s with the
                write lock), and a request sent meanwhile is answered before the compaction ends;
                afterwards commands.log is its 12-byte header, commands_log_* say so, and a new
                post goes through
  config        --check prints the channel's line; commandsAllow without CURVE, an unknown op in
                it, a non-loopback endpoint without CURVE: exit 2 naming the key
Waits synchronise on replies, counters (the replay info answer) and the pod's admin lists.
Usage: commands_e2e.py --dfpod PATH --dfbridge PATH --case NAME
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import msgpack
import zmq
import zmq.auth

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, Pod, check, eq, free_port  # noqa: E402
from dftest import wait_until as wait_for  # noqa: E402

dftest.WAIT_TIMEOUT = 30.0
REPLY_MS = 15000


def cmd_bridge(pod, extra="", state=True, curve=None, start=True, env=None):
    """A dfbridge with the command channel (and a journal + replay for the info counters)."""
    cport, rport = free_port(), free_port()
    lines = "  commands: tcp://127.0.0.1:%d\n" % cport
    if state:
        lines += "  stateDir: %s\n  replay: tcp://127.0.0.1:%d\n" % (
            os.path.join(dftest.CTX.tmp, "state"), rport)
    if curve:
        lines += "  curve:\n    secretKey: %s\n    clientsDir: %s\n" % curve
    br = Bridge(pod, bridge_extra=lines + extra, start=start, env=env)
    br.commands = "tcp://127.0.0.1:%d" % cport
    br.replay = "tcp://127.0.0.1:%d" % rport
    return br


def dealer(endpoint, keys=None, server=None):
    s = dftest.CTX.zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if keys:
        s.curve_publickey, s.curve_secretkey = keys
        s.curve_serverkey = server
    s.connect(endpoint)
    return s


def recv(sock, timeout_ms=REPLY_MS):
    """One reply message's frames, or None after timeout_ms."""
    if not sock.poll(timeout_ms):
        return None
    return sock.recv_multipart()


def request(rid, op, args, v=None):
    m = {"id": rid, "op": op, "args": args}
    if v is not None:
        m = {"v": v, **m}
    return msgpack.packb(m)


def send_msg(sid, text):
    return {"stream_id": sid, "message": "<messageML>%s</messageML>" % text}


def ask(sock, raw, delim=False):
    """Sends one request frame (after an empty delimiter with delim) and returns the decoded
    reply and its raw bytes; fails the case without a reply."""
    sock.send_multipart([b"", raw] if delim else [raw])
    frames = recv(sock)
    check(frames is not None, "a reply within %d ms" % REPLY_MS)
    if frames is None:
        return None, None
    eq(len(frames), 2 if delim else 1, "frames of the reply")
    if delim:
        eq(frames[0], b"", "the reply's delimiter frame")
    return msgpack.unpackb(frames[-1], raw=False), frames[-1]


def posts(pod):
    return pod.admin("GET", "messages")


def counters(br):
    info = br.info()
    check(info is not None, "an info answer")
    return info["counters"] if info else {}


def room(pod, name):
    return pod.admin("POST", "rooms", {"name": name})["id"]


def check_reply(rep, rid, ok, code=None, replayed=False, found=False):
    if rep is None:
        return
    eq(list(rep), ["v", "id", "ok", "result" if ok else "error", "replayed", "found"],
       "reply keys in order")
    eq(rep["v"], 1, "v")
    eq(rep["id"], rid, "id echoed")
    eq(rep["ok"], ok, "ok (%r)" % rep.get("error"))
    eq(rep["replayed"], replayed, "replayed")
    eq(rep["found"], found, "found")
    if not ok:
        eq(rep["error"]["code"], code, "error.code (%r)" % rep["error"].get("message"))


# ---- cases ------------------------------------------------------------------------------------
def case_bad_requests():
    pod = Pod()
    br = cmd_bridge(pod, "  commandsMaxBytes: 1024\n")
    sid = room(pod, "bad")
    d = dealer(br.commands)
    big = request("big-1", "messages.send", send_msg(sid, "x" * 2000))
    cases = [
        (b"\xc1", "", "not msgpack"),
        (msgpack.packb([1, 2]), "", "an array"),
        (msgpack.packb({"op": "messages.send", "args": send_msg(sid, "a")}), "", "no id"),
        (msgpack.packb({"id": "b-1", "args": send_msg(sid, "a")}), "b-1", "no op"),
        (request("b-2", "messages.fly", {}), "b-2", "unknown op"),
        (request("b-3", "messages.send", {"stream_id": 7, "message": "a"}), "b-3", "int stream_id"),
        (request("b-4", "messages.send", {**send_msg(sid, "a"), "colour": "red"}), "b-4",
         "unknown arg"),
        (request("b-5", "messages.send", send_msg(sid, "a"), v=2), "b-5", "v 2"),
        (request("b-6", "messages.send", {"stream_id": sid, "message": "   "}), "b-6",
         "empty message"),
        (msgpack.packb({"id": 5, "op": "messages.send", "args": send_msg(sid, "a")}), "",
         "int id"),
        (big, "", "over commandsMaxBytes"),
    ]
    for raw, rid, what in cases:
        rep, _ = ask(d, raw)
        if rep is None:
            continue
        check(rep["ok"] is False and rep["error"]["code"] == "bad_request",
              "%s: bad_request, got %r" % (what, rep))
        eq(rep["id"], rid, "%s: id echoed" % what)
        check(rep["error"]["message"], "%s: a message says why" % what)
    check(len(big) > 1024, "the big frame is over the limit")
    # three frames: the first identified as the request, answered bad_request
    d.send_multipart([request("b-7", "messages.send", send_msg(sid, "a")), b"x", b"y"])
    frames = recv(d)
    check(frames and len(frames) == 1, "one reply frame for a three-frame request")
    if frames:
        rep = msgpack.unpackb(frames[0], raw=False)
        check(rep["error"]["code"] == "bad_request" and rep["id"] == "b-7",
              "three frames: bad_request for b-7, got %r" % rep)
    n = len(cases) + 1
    c = counters(br)
    eq(c.get("commands_received"), n, "commands_received")
    eq(c.get("commands_errors_bad_request"), n, "commands_errors_bad_request")
    eq(c.get("commands_ok"), 0, "commands_ok")
    eq(posts(pod), [], "nothing posted")
    eq(len(pod.calls("msgcreate")), 0, "no create call")
    br.stop()
    br.check_clean()


def case_framing():
    pod = Pod()
    br = cmd_bridge(pod)
    sid = room(pod, "framing")
    d = dealer(br.commands)
    rep, _ = ask(d, request("f-1", "streams.info", {"stream_id": sid}), delim=True)
    check_reply(rep, "f-1", True)
    if rep:
        eq(rep["result"]["id"], sid, "streams.info result id")
    rep, _ = ask(d, request("f-2", "messages.send", send_msg(sid, "plain")))
    check_reply(rep, "f-2", True)
    req = dftest.CTX.zctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(br.commands)
    req.send(request("f-3", "messages.send", send_msg(sid, "from REQ")))
    check(req.poll(REPLY_MS), "a REQ socket gets its reply")
    rep = msgpack.unpackb(req.recv(), raw=False)
    check_reply(rep, "f-3", True)
    p = posts(pod)
    eq([m["message"] for m in p], ["<messageML>plain</messageML>",
                                   "<messageML>from REQ</messageML>"], "the two posts")
    br.stop()
    br.check_clean()


def case_replayed():
    pod = Pod()
    br = cmd_bridge(pod)
    sid = room(pod, "replayed")
    d = dealer(br.commands)
    raw = request("r-1", "messages.send", send_msg(sid, "once"))
    rep1, b1 = ask(d, raw)
    check_reply(rep1, "r-1", True)
    rep2, b2 = ask(d, raw)
    check_reply(rep2, "r-1", True, replayed=True)
    if b1 and b2:
        # v, id, ok, result, replayed, found: only the replayed flag differs
        eq(b2, b1.replace(b"\xa8replayed\xc2", b"\xa8replayed\xc3"), "the recorded reply")
    p = posts(pod)
    eq(len(p), 1, "one post for one id")
    if rep1 and p:
        eq(rep1["result"]["messageId"], p[0]["messageId"], "the result is the posted message")
        check("dfbridge.request" in p[0]["data"], "the mark is in the message's data")
    rep3, _ = ask(d, request("r-1", "messages.send", send_msg(sid, "other text")))
    check_reply(rep3, "r-1", False, code="bad_request")
    if rep3:
        check("already used" in rep3["error"]["message"], "why: %r" % rep3["error"])
    eq(len(posts(pod)), 1, "still one post")
    c = counters(br)
    eq((c.get("commands_ok"), c.get("commands_replayed"), c.get("commands_errors_bad_request")),
       (2, 1, 1), "ok, replayed, bad_request")
    br.stop()
    br.check_clean()


def case_inflight():
    pod = Pod()
    br = cmd_bridge(pod)
    sid = room(pod, "inflight")
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 1500, "commit": True})
    d1, d2, d3 = dealer(br.commands), dealer(br.commands), dealer(br.commands)
    raw = request("i-1", "messages.send", send_msg(sid, "one"))
    d1.send(raw)
    wait_for(lambda: counters(br).get("commands_inflight") == 1, "the request in flight")
    d2.send(raw)
    rep3, _ = ask(d3, request("i-1", "messages.send", send_msg(sid, "two")))
    check_reply(rep3, "i-1", False, code="bad_request")
    f1, f2 = recv(d1), recv(d2)
    check(f1 and f2, "both requesters answered")
    if f1 and f2:
        eq(f2, f1, "two identical replies")
        check_reply(msgpack.unpackb(f1[0], raw=False), "i-1", True)
    eq(len(posts(pod)), 1, "one post")
    eq(len(pod.calls("msgcreate")), 1, "one create call")
    br.stop()
    br.check_clean()


def case_busy():
    pod = Pod()
    br = cmd_bridge(pod, "  commandsQueue: 1\n  commandsConcurrency: 1\n")
    sid = room(pod, "busy")
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 1500, "commit": True})
    d = dealer(br.commands)
    d.send(request("q-1", "messages.send", send_msg(sid, "1")))
    wait_for(lambda: counters(br).get("commands_inflight") == 1, "q-1 with the executor")
    d.send(request("q-2", "streams.info", {"stream_id": sid}))
    wait_for(lambda: counters(br).get("commands_queued") == 1, "q-2 waiting")
    rep, _ = ask(d, request("q-3", "streams.info", {"stream_id": sid}))
    check_reply(rep, "q-3", False, code="busy")
    if rep:
        check(rep["error"].get("retry_after_ms", 0) >= 100, "retry_after_ms: %r" % rep["error"])
    got = {}
    for _ in range(2):
        f = recv(d)
        if f:
            r = msgpack.unpackb(f[0], raw=False)
            got[r["id"]] = r
    eq(sorted(got), ["q-1", "q-2"], "the two others answered")
    check(all(r["ok"] for r in got.values()), "both ok: %r" % got)
    rep, _ = ask(d, request("q-3", "streams.info", {"stream_id": sid}))
    check_reply(rep, "q-3", True)  # busy recorded nothing: the same id is executed now
    eq(counters(br).get("commands_errors_busy"), 1, "commands_errors_busy")
    br.stop()
    br.check_clean()


def case_stream_rate():
    pod = Pod()
    br = cmd_bridge(pod, "  commandsStreamRate: 5\n  commandsRate: 0\n")
    a, b = room(pod, "A"), room(pod, "B")
    d = dealer(br.commands)
    for i in range(4):
        d.send(request("a-%d" % i, "messages.send", send_msg(a, "A%d" % i)))
        d.send(request("b-%d" % i, "messages.send", send_msg(b, "B%d" % i)))
    got = []
    for _ in range(8):
        f = recv(d)
        check(f is not None, "8 replies")
        if f is None:
            break
        got.append(msgpack.unpackb(f[0], raw=False))
    check(all(r["ok"] for r in got), "all ok: %r" % [r.get("error") for r in got])
    p = posts(pod)
    eq(len(p), 8, "8 posts")
    ts = {}
    for m in p:
        ts.setdefault(m["streamId"], []).append((m["timestamp"], m["message"]))
    for sid, name in ((a, "A"), (b, "B")):
        lst = sorted(ts.get(sid, []))
        eq([t[1] for t in lst], ["<messageML>%s%d</messageML>" % (name, i) for i in range(4)],
           "stream %s in the order sent" % name)
        gaps = [lst[i + 1][0] - lst[i][0] for i in range(len(lst) - 1)]
        check(all(g >= 200 - 5 for g in gaps), "stream %s spacing >= 195 ms: %r" % (name, gaps))
    ta, tb = sorted(t for t, _ in ts.get(a, [])), sorted(t for t, _ in ts.get(b, []))
    if len(ta) == 4 and len(tb) == 4:
        # side by side: B's posts are not after A's (serialised, B0 would come after A3, 600+ ms
        # later, and the 8 posts would take 1400+ ms)
        check(all(abs(x - y) < 400 for x, y in zip(ta, tb)), "the streams in parallel: %r %r"
              % (ta, tb))
        check(max(ta[-1], tb[-1]) - min(ta[0], tb[0]) < 1200, "8 posts within ~600-900 ms: %r %r"
              % (ta, tb))
    br.stop()
    br.check_clean()


def case_not_allowed():
    tmp = dftest.CTX.tmp
    certs, clients = os.path.join(tmp, "certs"), os.path.join(tmp, "clients")
    os.mkdir(certs)
    os.mkdir(clients)
    keys = {}
    for name in ("bridge", "alice", "bob", "carol"):
        pub_path, sec_path = zmq.auth.create_certificates(certs, name)
        keys[name] = zmq.auth.load_certificate(sec_path)
        if name != "bridge":
            shutil.copy(pub_path, clients)
    pod = Pod()
    br = cmd_bridge(pod, "  commandsAllow:\n    alice: ['streams.*']\n    bob: ['*']\n",
                    curve=(os.path.join(certs, "bridge.key_secret"), clients))
    sid = room(pod, "acl")
    server = keys["bridge"][0]
    da = dealer(br.commands, keys["alice"], server)
    db = dealer(br.commands, keys["bob"], server)
    dc = dealer(br.commands, keys["carol"], server)
    rep, _ = ask(da, request("x", "messages.send", send_msg(sid, "alice")))
    check_reply(rep, "x", False, code="not_allowed")
    rep, _ = ask(da, request("x", "streams.info", {"stream_id": sid}))
    check_reply(rep, "x", True)
    rep, _ = ask(dc, request("c", "streams.info", {"stream_id": sid}))
    check_reply(rep, "c", False, code="not_allowed")
    # bob's "x" is not alice's "x": another scope, executed
    rep, _ = ask(db, request("x", "messages.send", send_msg(sid, "bob")))
    check_reply(rep, "x", True)
    eq([m["message"] for m in posts(pod)], ["<messageML>bob</messageML>"], "only bob's post")
    rc = dftest.ReplayClient(br.replay, curve=keys["alice"] + (server,))
    c = rc.info() or {}
    rc.sock.close()
    eq((c.get("commands_denied"), c.get("commands_errors_not_allowed"), c.get("commands_ok")),
       (2, 2, 2), "denied, not_allowed, ok")
    wait_for(lambda: "client 'alice' may not call messages.send" in br.text(), "a warn line")
    # a revoked key re-binds the ROUTER (as PUB and replay); alice's DEALER reconnects and asks
    # again with the same id until answered (a request lost with the old socket is harmless)
    os.remove(os.path.join(clients, "carol.key"))
    rc = dftest.ReplayClient(br.replay, curve=keys["alice"] + (server,))
    wait_for(lambda: (rc.info() or {}).get("auth_rebinds") == 1, "a re-bind after the revocation")
    wait_for(lambda: "commands: ROUTER re-bound at" in br.text(), "the ROUTER re-bound")
    raw = request("after", "streams.info", {"stream_id": sid})
    rep, deadline = None, time.monotonic() + 20
    while rep is None and time.monotonic() < deadline:
        da.send(raw)
        f = recv(da, 1000)
        rep = msgpack.unpackb(f[0], raw=False) if f else None
    check(rep is not None and rep["ok"] and rep["id"] == "after", "alice after the re-bind: %r" % rep)
    rc.sock.close()
    br.stop()
    br.check_clean()


def case_kill_resume():
    pod = Pod()
    br = cmd_bridge(pod)
    sid = room(pod, "resume")
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 4000, "commit": True})
    d = dealer(br.commands)
    raw = request("k-1", "messages.send", send_msg(sid, "exactly once"))
    d.send(raw)
    # the pod stored it and holds the answer: the begin record was durable before the call
    wait_for(lambda: len(posts(pod)) == 1, "the post stored by the pod")
    br.kill()
    eq(recv(d, 300), None, "no reply from a killed bridge")
    br.start()
    d2 = dealer(br.commands)
    rep, _ = ask(d2, raw)
    check_reply(rep, "k-1", True, found=True)
    p = posts(pod)
    eq(len(p), 1, "one message in the pod")
    if rep and p:
        eq(rep["result"]["messageId"], p[0]["messageId"], "the found message is the result")
    eq(pod.counter("messages_posted"), 1, "one create stored over both runs")
    check(len(pod.calls("msglist")) >= 1, "the restarted bridge looked for the mark")
    rep, _ = ask(d2, raw)
    check_reply(rep, "k-1", True, replayed=True, found=True)
    eq(counters(br).get("commands_found"), 2, "commands_found (the resumed one, its replay)")
    br.stop()
    br.check_clean()


def case_stop():
    pod = Pod()
    br = cmd_bridge(pod, "  commandsConcurrency: 1\n")
    sid = room(pod, "stop")
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 800, "commit": True})
    d = dealer(br.commands)
    d.send(request("s-0", "messages.send", send_msg(sid, "first")))
    wait_for(lambda: counters(br).get("commands_inflight") == 1, "s-0 with the executor")
    for i in range(1, 4):
        d.send(request("s-%d" % i, "streams.info", {"stream_id": sid}))
    wait_for(lambda: counters(br).get("commands_queued") == 3, "3 waiting")
    br.proc.send_signal(signal.SIGTERM)
    got = {}
    for _ in range(4):
        f = recv(d, 10000)
        if f:
            r = msgpack.unpackb(f[0], raw=False)
            got[r["id"]] = r
    eq(sorted(got), ["s-0", "s-1", "s-2", "s-3"], "every requester answered")
    for i in range(1, 4):
        r = got.get("s-%d" % i)
        if r:
            check(r["ok"] is False and r["error"]["code"] == "unavailable" and
                  r["error"]["message"] == "the bridge is stopping", "s-%d: %r" % (i, r))
    eq(br.wait_exit(15), 0, "exit status after SIGTERM")
    eq(len(pod.calls("streaminfo")), 0, "no call for the waiting requests")
    br.check_clean()


def case_config():
    pod = Pod()
    br = cmd_bridge(pod, "  commandsRate: 0.5\n", start=False)
    out = subprocess.run([dftest.CTX.dfbridge, "--config", br.cfg_path, "--check"],
                         capture_output=True, text=True, timeout=30)
    eq(out.returncode, 0, "--check exit status (%s)" % out.stderr)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("commands ")]
    check(line and line[0].startswith("commands %s (no CURVE" % br.commands) and
          "rate 0.5/s, per stream 2/s, queue 1000, 4 executor(s)" in line[0] and
          "commands.log" in line[0], "--check's commands line: %r" % out.stdout)

    def bad(extra, *words):
        b = cmd_bridge(pod, extra, start=False)
        o = subprocess.run([dftest.CTX.dfbridge, "--config", b.cfg_path, "--check"],
                           capture_output=True, text=True, timeout=30)
        eq(o.returncode, 2, "exit status for %r" % extra)
        for w in words:
            check(w in o.stderr, "%r in %r" % (w, o.stderr))

    bad("  commandsAllow: {w: ['*']}\n", "bridge.commandsAllow: needs CURVE")
    bad("  commandsConcurrency: 0\n", "bridge.commandsConcurrency: must be between 1 and 64")
    b = cmd_bridge(pod, "  commandsRate: 1\n", start=False)
    cfg = open(b.cfg_path).read().replace(b.commands, "tcp://0.0.0.0:%d" % free_port())
    open(b.cfg_path, "w").write(cfg)
    o = subprocess.run([dftest.CTX.dfbridge, "--config", b.cfg_path, "--check"],
                       capture_output=True, text=True, timeout=30)
    eq(o.returncode, 2, "a non-loopback bridge.commands without CURVE")
    check("bridge.commands" in o.stderr and "beyond loopback" in o.stderr, o.stderr)
    # an unknown op in the allow-list (CURVE on): named
    tmp = dftest.CTX.tmp
    certs, clients = os.path.join(tmp, "ccerts"), os.path.join(tmp, "cclients")
    os.mkdir(certs)
    os.mkdir(clients)
    zmq.auth.create_certificates(certs, "bridge")
    bad_br = cmd_bridge(pod, "  commandsAllow: {w: [messages.sned]}\n", start=False,
                        curve=(os.path.join(certs, "bridge.key_secret"), clients))
    o = subprocess.run([dftest.CTX.dfbridge, "--config", bad_br.cfg_path, "--check"],
                       capture_output=True, text=True, timeout=30)
    eq(o.returncode, 2, "an unknown op in commandsAllow")
    check("bridge.commandsAllow.w: 'messages.sned' names no operation" in o.stderr, o.stderr)


def case_compaction():
    pod = Pod()
    env = dict(os.environ, DFB_TEST_COMPACT_DELAY_MS="4000")
    br = cmd_bridge(pod, "  commandsWindowMillis: 1000\n  commandsRate: 0\n"
                    "  commandsStreamRate: 0\n", env=env)
    path = os.path.join(dftest.CTX.tmp, "state", "commands.log")
    sid = room(pod, "compaction")
    d = dealer(br.commands)
    # Two outcomes of 700 KB: the dead bytes pass 1 MiB only once both have expired, and an entry
    # expires only once done, so the compaction cannot start before the second reply.
    n = 2
    for i in range(n):
        rep, _ = ask(d, request("big-%d" % i, "messages.send", send_msg(sid, "%d%s" % (i, "x" * 700000))))
        check_reply(rep, "big-%d" % i, True)
    size = os.path.getsize(path)
    check(size > n * 700000, "commands.log holds the %d outcomes: %d bytes" % (n, size))
    wait_for(lambda: "compaction under way" in br.text(), "the compaction started (the window is 1 s)")
    rep, _ = ask(d, request("during-1", "messages.fly", {}))
    check(rep is not None and rep["error"]["code"] == "bad_request", "a reply during the compaction")
    check("compacted:" not in br.text(), "answered before the compaction ended (it holds 4 s)")
    wait_for(lambda: "compacted:" in br.text(), "the compaction ended")
    eq(os.path.getsize(path), 12, "commands.log after the compaction: its header alone")
    wait_for(lambda: counters(br).get("commands_log_compactions") == 1, "commands_log_compactions 1")
    c = counters(br)
    eq((c.get("commands_log_entries"), c.get("commands_log_bytes"), c.get("commands_log_write_errors")),
       (0, 12, 0), "commands_log_entries, _bytes, _write_errors")
    rep, _ = ask(d, request("after-1", "messages.send", send_msg(sid, "after")))
    check_reply(rep, "after-1", True)
    eq(len(posts(pod)), n + 1, "every post made once")
    br.stop()
    br.check_clean()


CASES = {"bad_requests": case_bad_requests, "framing": case_framing, "replayed": case_replayed,
         "inflight": case_inflight, "busy": case_busy, "stream_rate": case_stream_rate,
         "not_allowed": case_not_allowed, "kill_resume": case_kill_resume, "stop": case_stop,
         "compaction": case_compaction, "config": case_config}

if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="dfcmd-"))
