#!/usr/bin/python3
"""Exactly once under faults (issue 12, schemas/CONTRACT.md section 13 "Exactly once"): the real
dfpod and the real dfbridge with its command channel and a command journal (bridge.stateDir), a
Python listener that answers every MESSAGESENT in its stream (reply_worker.py) or a plain DEALER.

Every case asserts the pod's own record (GET /admin/messages: exactly one post per request, found
by the request's mark in its data; its call log: how many creates and lookups were made) and the
content of every reply (ok, found, replayed, the result being the message the pod holds).

  no_fault        50 source messages in 5 rooms -> exactly 50 replies, one per source message, each
                  in the source's room; 50 creates, no lookup
  create_faults   msgcreate drop / 500 / slow past bridge.readTimeoutMillis AFTER the pod stored the
                  message -> ok, found, one message; drop / 500 BEFORE it -> created on the retry,
                  not found, one message
  bridge_kill     the bridge SIGKILLed while 4 creates are in flight (pod `slow`, committed), then
                  restarted; the client resends the same ids -> ok, found, 4 messages, 4 creates
  worker_restart  the worker crashes (os._exit) right after replying to 10 events, before its
                  checkpoint; restarted, it handles them again with the same ids -> 10 replies
                  replayed with the first results, 20 messages for 20 source messages
  lookup_fails    an ambiguous create (500 after commit) and the stream listing failing past the
                  retry budget -> unknown_outcome; the same id once the pod works -> found, one
                  message, one create

Usage: exactly_once_e2e.py --dfpod BIN --dfbridge BIN --case NAME. Loopback only, ports from
free_port(), every wait bounded and on a signal (a reply, the pod's record, a file's lines)."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, Pod, check, eq, free_port, wait_until  # noqa: E402

USER = 68719476737  # a user of the generator: not the bot (68719476738)
RETRY = ("retry:\n  maxAttempts: 4\n  initialIntervalMillis: 20\n  multiplier: 1\n"
         "  maxIntervalMillis: 20\n")


def mark(ident, scope=""):
    """CONTRACT.md section 13: the first 16 bytes of SHA-256("dfbridge-mark" 0 scope 0 id)."""
    return hashlib.sha256(b"dfbridge-mark\0" + scope.encode() + b"\0" + ident.encode()).hexdigest()[:32]


def stream_name(i):
    return "eoRoom%02dAbCdEfGhIjKlMnOpQrSt___dA" % i


def source_event(i, stream):
    mid = "src%04dMsgAbCdEfGhIjKlMnOpQr___dA" % i
    return {"id": "eo-%d" % i, "messageId": mid, "timestamp": 1767225600000 + i, "type": "MESSAGESENT",
            "initiator": {"user": {"userId": USER, "displayName": "Jane Doe"}},
            "payload": {"messageSent": {"message": {
                "messageId": mid, "timestamp": 1767225600000 + i,
                "message": '<div data-format="PresentationML" data-version="2.0">question %d</div>' % i,
                "user": {"userId": USER}, "stream": {"streamId": stream, "streamType": "ROOM"}}}}}


def posts(pod):
    return pod.admin("GET", "messages")


def mark_of(post):
    """The mark id in a post's data (None when absent or not JSON)."""
    try:
        return json.loads(post.get("data") or "{}").get("dfbridge.request", {}).get("id")
    except (ValueError, AttributeError):
        return None


def posts_for(pod, ident):
    return [p for p in posts(pod) if p["op"] == "create" and mark_of(p) == mark(ident)]


def ncalls(pod, endpoint):
    return len(pod.calls(endpoint))


# ---- the bridge with its command channel ----------------------------------------------------
def start_bridge(pod, state, read_timeout_ms=5000, concurrency=8):
    """dfbridge with a journal, replay and the command channel (no rate limits: the cases count
    calls, not spacing); returns it once its command socket answers."""
    replay, commands = free_port(), free_port()
    b = Bridge(pod, retry=RETRY, read_timeout_ms=read_timeout_ms, start=False,
               bridge_extra=("  stateDir: %s\n  replay: tcp://127.0.0.1:%d\n"
                             "  commands: tcp://127.0.0.1:%d\n  commandsRate: 0\n"
                             "  commandsStreamRate: 0\n  commandsConcurrency: %d\n"
                             % (state, replay, commands, concurrency)))
    b.replay = "tcp://127.0.0.1:%d" % replay
    b.commands = "tcp://127.0.0.1:%d" % commands
    b.start()
    wait_ready(b)
    return b


def wait_ready(bridge, timeout=20.0):
    """The command channel answers (a bad_request: nothing is sent to the pod)."""
    c = Client(bridge.commands)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            c.send("ping", "no.such.op", {})
            r = c.wait("ping", 0.5)
            if r is not None:
                eq(r["error"]["code"], "bad_request", "the readiness probe's answer")
                return
            check(bridge.running(), "dfbridge is running")
            if not bridge.running():
                return
        check(False, "the command channel did not answer within %.0f s" % timeout)
    finally:
        c.close()


class Client:
    """A DEALER speaking the command protocol: replies matched by id, others kept."""

    def __init__(self, endpoint):
        self.sock = dftest.CTX.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.got = {}

    def send(self, ident, op, args):
        self.sock.send(msgpack.packb({"v": 1, "id": ident, "op": op, "args": args},
                                     use_bin_type=True))

    def wait(self, ident, timeout):
        deadline = time.monotonic() + timeout
        while not self.got.get(ident):
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                return None
            r = msgpack.unpackb(self.sock.recv_multipart()[-1], raw=False)
            self.got.setdefault(r["id"], []).append(r)
        return self.got[ident].pop(0)

    def call(self, ident, op, args, timeout=20.0):
        self.send(ident, op, args)
        r = self.wait(ident, timeout)
        check(r is not None, "a reply to %s within %.0f s" % (ident, timeout))
        return r

    def close(self):
        self.sock.close(linger=0)


def send_args(stream, text):
    return {"stream_id": stream, "message": text}


def check_found_once(pod, ident, reply, found, what):
    """reply is ok with `found`, and the pod holds exactly one post with ident's mark: the result."""
    check(reply is not None, "%s: a reply" % what)
    if reply is None:
        return
    eq(reply.get("ok"), True, "%s: ok (reply %r)" % (what, reply.get("error")))
    eq(reply.get("found"), found, "%s: found" % what)
    eq(reply.get("replayed"), False, "%s: replayed" % what)
    mine = posts_for(pod, ident)
    eq(len(mine), 1, "%s: messages in the pod with this request's mark" % what)
    if mine and reply.get("ok"):
        eq(reply["result"]["messageId"], mine[0]["messageId"], "%s: the result is the pod's message" % what)
        eq(reply["result"]["stream"]["streamId"], mine[0]["streamId"], "%s: the result's stream" % what)
        eq(mark_of(reply["result"]), mark(ident), "%s: the result carries the mark" % what)


# ---- the worker -------------------------------------------------------------------------------
class Worker:
    def __init__(self, bridge, out, ckpt, *args):
        self.log_path = out + ".%d.worker.log" % int(time.monotonic() * 1000)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "reply_worker.py"), "--endpoint", bridge.endpoint,
             "--replay", bridge.replay, "--commands", bridge.commands, "--out", out,
             "--checkpoint-dir", ckpt, *args], stdout=self.log, stderr=self.log)
        dftest.CTX.children.append(self.proc)
        wait_until(lambda: '"ready"' in dftest.read_text(self.log_path) or self.proc.poll() is not None,
                   "the worker is ready", 20)
        check(self.proc.poll() is None, "the worker runs")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        eq(rc, 0, "worker exit status after SIGTERM")
        self.log.close()


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def wait_lines(path, n, timeout=60.0):
    wait_until(lambda: len(lines(path)) >= n, "%d replies in %s" % (n, os.path.basename(path)), timeout)
    return lines(path)


def check_replies_to_sources(pod, sources, rows, what):
    """Every source event got exactly one post, in its stream, and the rows' results are them."""
    by_text = {}
    for p in posts(pod):
        if p["op"] == "create":
            by_text.setdefault(p["message"], []).append(p)
    for ev in sources:
        msg = ev["payload"]["messageSent"]["message"]
        text = "<messageML>reply to %s</messageML>" % msg["messageId"]
        got = by_text.get(text, [])
        eq(len(got), 1, "%s: posts replying to %s" % (what, ev["id"]))
        if got:
            eq(got[0]["streamId"], msg["stream"]["streamId"], "%s: the reply to %s is in its stream"
               % (what, ev["id"]))
            eq(mark_of(got[0]), mark("%s/reply/1" % ev["id"]), "%s: mark of the reply to %s" % (what, ev["id"]))
            for r in (r for r in rows if r["event"] == ev["id"]):
                eq(r["reply"]["result"]["messageId"], got[0]["messageId"],
                   "%s: the worker's result for %s is the pod's post" % (what, ev["id"]))


# ---- cases -------------------------------------------------------------------------------------
def new_pod():
    return Pod("--hold-ms", "500")


def case_no_fault():
    pod = new_pod()
    b = start_bridge(pod, os.path.join(dftest.CTX.tmp, "state"))
    out = os.path.join(dftest.CTX.tmp, "replies.jsonl")
    w = Worker(b, out, os.path.join(dftest.CTX.tmp, "ckpt"))  # send_message when the package has it
    sources = [source_event(i, stream_name(i % 5)) for i in range(1, 51)]
    pod.events(sources)
    rows = wait_lines(out, 50)
    w.stop()
    rows = lines(out)
    eq(len(rows), 50, "replies recorded by the worker")
    eq(sorted(r["event"] for r in rows), sorted(e["id"] for e in sources), "one reply per source event")
    for r in rows:
        rep = r["reply"]
        if "v" in rep:  # the whole reply (the plain DEALER): every key
            eq((rep["v"], rep["id"], rep["ok"], rep["replayed"], rep["found"]), (1, r["id"], True, False, False),
               "reply to %s" % r["event"])
            eq(list(rep), ["v", "id", "ok", "result", "replayed", "found"], "reply keys in wire order")
        eq(rep["ok"], True, "reply to %s" % r["event"])
        eq(rep["result"]["stream"]["streamId"], r["stream"], "the result's stream is the source's")
    check_replies_to_sources(pod, sources, rows, "no_fault")
    eq(len([p for p in posts(pod) if p["op"] == "create"]), 50, "posts in the pod")
    eq(ncalls(pod, "msgcreate"), 50, "creates made (no retry)")
    eq(ncalls(pod, "msglist"), 0, "lookups made (none: nothing was ambiguous)")
    b.stop()
    b.check_clean()


def case_create_faults():
    pod = new_pod()
    stream = stream_name(1)
    pod.events([source_event(1, stream)])  # makes the room known to the pod
    # slow: 2.5 s, past a 1.5 s read timeout (the long-poll hold is 0.5 s)
    b = start_bridge(pod, os.path.join(dftest.CTX.tmp, "state"), read_timeout_ms=1500)
    c = Client(b.commands)
    plans = [
        ("drop_after_commit", {"action": "drop", "commit": True}, True),
        ("500_after_commit", {"action": "status", "status": 500, "commit": True}, True),
        ("slow_past_timeout", {"action": "slow", "delay_ms": 2500}, True),
        ("drop_before_commit", {"action": "drop"}, False),
        ("500_before_commit", {"action": "status", "status": 500}, False),
        ("503_before_commit", {"action": "status", "status": 503, "commit": False}, False),
    ]
    for name, fault, found in plans:
        creates0, lists0 = ncalls(pod, "msgcreate"), ncalls(pod, "msglist")
        pod.faults(dict(fault, endpoint="msgcreate"))
        ident = "faults/%s" % name
        r = c.call(ident, "messages.send", send_args(stream, "<messageML>%s</messageML>" % name), 30)
        check_found_once(pod, ident, r, found, name)
        # found: the create that timed out or failed was the only one; else a second create made it.
        # The pod logs a call when it answers: a slow create after the bridge's lookup.
        want = 1 if found else 2
        wait_until(lambda: ncalls(pod, "msgcreate") - creates0 >= want, "%s: the pod logged the creates" % name, 10)
        eq(ncalls(pod, "msgcreate") - creates0, want, "%s: creates" % name)
        check(ncalls(pod, "msglist") - lists0 >= 1, "%s: the bridge looked for the mark" % name)
    # the same ids again: the recorded outcomes, no call
    creates0 = ncalls(pod, "msgcreate")
    for name, _, found in plans:
        ident = "faults/%s" % name
        r = c.call(ident, "messages.send", send_args(stream, "<messageML>%s</messageML>" % name))
        eq((r["ok"], r["replayed"], r["found"]), (True, True, found), "%s again: replayed" % name)
        eq(r["result"]["messageId"], posts_for(pod, ident)[0]["messageId"], "%s again: same result" % name)
    eq(ncalls(pod, "msgcreate"), creates0, "no create for replayed requests")
    eq(len([p for p in posts(pod) if p["op"] == "create"]), len(plans), "posts in the pod")
    c.close()
    b.stop()
    b.check_clean()


def case_bridge_kill():
    pod = new_pod()
    streams = [stream_name(i) for i in range(4)]
    pod.events([source_event(i, s) for i, s in enumerate(streams)])
    state = os.path.join(dftest.CTX.tmp, "state")
    b = start_bridge(pod, state)
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 4000, "count": 4})
    c = Client(b.commands)
    ids = ["kill/%d" % i for i in range(4)]
    for ident, s in zip(ids, streams):
        c.send(ident, "messages.send", send_args(s, "<messageML>%s</messageML>" % ident))
    # the pod has stored all 4 (commit comes before the delay): the answers are still to come
    wait_until(lambda: len(posts(pod)) >= 4, "4 messages stored by the pod", 20)
    b.kill()  # SIGKILL, the 4 calls in flight
    check(all(c.wait(i, 0.05) is None for i in ids), "no reply before the kill")
    b.start()
    wait_ready(b)
    for ident, s in zip(ids, streams):  # the client's retry: same id, same args
        c.send(ident, "messages.send", send_args(s, "<messageML>%s</messageML>" % ident))
    for ident in ids:
        check_found_once(pod, ident, c.wait(ident, 30), True, ident)
    # the pod logs a call when it answers: the 4 slow creates once their 4 s are over
    wait_until(lambda: ncalls(pod, "msgcreate") >= 4, "the pod logged the 4 creates", 15)
    eq(ncalls(pod, "msgcreate"), 4, "creates in all: none after the restart")
    check(ncalls(pod, "msglist") >= 4, "the restarted bridge looked for each mark")
    eq(len([p for p in posts(pod) if p["op"] == "create"]), 4, "posts in the pod")
    c.close()
    b.stop()
    b.check_clean()


def case_worker_restart():
    pod = new_pod()
    b = start_bridge(pod, os.path.join(dftest.CTX.tmp, "state"))
    out, ckpt = os.path.join(dftest.CTX.tmp, "replies.jsonl"), os.path.join(dftest.CTX.tmp, "ckpt")
    os.makedirs(ckpt)
    slow_ckpt = ("--checkpoint-ms", "3600000")  # written at a clean stop only
    batch_a = [source_event(i, stream_name(i % 3)) for i in range(1, 11)]
    batch_b = [source_event(i, stream_name(i % 3)) for i in range(11, 21)]
    # run 1: batch A, clean stop (checkpoint after A)
    w = Worker(b, out, ckpt, "--flags", *slow_ckpt)
    pod.events(batch_a)
    wait_lines(out, 10)
    w.stop()
    # run 2: batch B, a crash right after its 10th reply, before any checkpoint of B
    w = Worker(b, out, ckpt, "--flags", "--from-gseq", "0", "--exit-after", "10", *slow_ckpt)
    pod.events(batch_b)
    wait_until(lambda: w.proc.poll() is not None, "the worker's crash after 10 replies", 60)
    eq(w.proc.returncode, 9, "the worker crashed on purpose")
    w.log.close()
    eq(len(lines(out)), 20, "replies before the crash")
    # run 3: resumes after A's checkpoint: handles B again, same ids
    w = Worker(b, out, ckpt, "--flags", "--from-gseq", "0", *slow_ckpt)
    rows = wait_lines(out, 30)
    w.stop()
    rows = lines(out)
    eq(len(rows), 30, "replies over the 3 runs (B's twice)")
    first = {r["event"]: r for r in rows[:20]}
    again = rows[20:]
    eq(sorted(r["event"] for r in again), sorted(e["id"] for e in batch_b), "run 3 re-handled exactly B")
    for r in again:
        rep, before = r["reply"], first[r["event"]]["reply"]
        eq((rep["ok"], rep["replayed"], rep["found"]), (True, True, False), "replayed reply to %s" % r["event"])
        eq(rep["result"], before["result"], "the replayed result of %s is the first one" % r["event"])
    for r in rows[:20]:
        eq(r["reply"]["replayed"], False, "first reply to %s not replayed" % r["event"])
    check_replies_to_sources(pod, batch_a + batch_b, rows, "worker_restart")
    eq(len([p for p in posts(pod) if p["op"] == "create"]), 20, "posts in the pod: one per source")
    eq(ncalls(pod, "msgcreate"), 20, "creates made")
    b.stop()
    b.check_clean()


def case_lookup_fails():
    pod = new_pod()
    stream = stream_name(1)
    pod.events([source_event(1, stream)])
    b = start_bridge(pod, os.path.join(dftest.CTX.tmp, "state"))
    c = Client(b.commands)
    ident = "lookup/1"
    args = send_args(stream, "<messageML>%s</messageML>" % ident)
    pod.faults({"endpoint": "msgcreate", "action": "status", "status": 500, "commit": True},
               {"endpoint": "msglist", "action": "status", "status": 500, "count": 50})
    r = c.call(ident, "messages.send", args, 30)
    eq((r["ok"], r["replayed"], r["found"]), (False, False, False), "reply while Symphony cannot be asked")
    eq(list(r), ["v", "id", "ok", "error", "replayed", "found"], "reply keys in wire order")
    eq(r["error"]["code"], "unknown_outcome", "error code")
    check(isinstance(r["error"].get("message"), str) and r["error"]["message"], "a message says why")
    eq(len(posts_for(pod, ident)), 1, "the ambiguous create was committed")
    check(ncalls(pod, "msglist") >= 2, "the lookup was retried (%d calls)" % ncalls(pod, "msglist"))
    pod.admin("DELETE", "faults")
    r = c.call(ident, "messages.send", args, 30)  # the same id once the pod works
    check_found_once(pod, ident, r, True, "retry after unknown_outcome")
    eq(ncalls(pod, "msgcreate"), 1, "one create in all")
    c.close()
    b.stop()
    b.check_clean()


CASES = {"no_fault": case_no_fault, "create_faults": case_create_faults, "bridge_kill": case_bridge_kill,
         "worker_restart": case_worker_restart, "lookup_fails": case_lookup_fails}

if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="dfeo-"))
