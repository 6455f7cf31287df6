#!/usr/bin/python3
"""The command channel's Symphony calls (bridge/dfb_outbound.c) against the real dfpod, driven by
dfb_outbound_drive (dfb_outbound_exec without the ROUTER and the journal), one ctest per case
(outbound_<case>). What the pod received is read back from its call log and /admin/messages:
multipart parts in order, the mark in data (the same across retries), exactly one message after
ambiguous failures, Retry-After spacing, one shared re-authentication, error mapping.

usage: outbound_e2e.py --dfpod P --dfbridge B --case NAME   (env DFB_OUTBOUND_DRIVE = the driver)
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import msgpack

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, Pod, check, eq  # noqa: E402

DRIVE = os.environ.get("DFB_OUTBOUND_DRIVE", "")
USER = 1001  # a user the tests add to the pod
BOT = 68719476738


def mark(scope, rid):
    return hashlib.sha256(b"dfbridge-mark\0" + scope.encode() + b"\0" + rid.encode()).hexdigest()[:32]


def setup_pod(*args):
    pod = Pod("--no-echo-posts", *args)
    pod.admin("POST", "users", [{"id": USER, "emailAddress": "ann+x@example.com", "username": "ann",
                                 "displayName": "Ann"}])
    room = pod.admin("POST", "rooms", {"name": "room one"})["id"]
    return pod, room


def config(pod, attempts=2, wait_ms=10, bridge_extra=""):
    retry = ("retry:\n  maxAttempts: %d\n  initialIntervalMillis: %d\n  multiplier: 1\n"
             "  maxIntervalMillis: 5000\n" % (attempts, wait_ms))
    return Bridge(pod, retry=retry, bridge_extra=bridge_extra, start=False).cfg_path


def req(rid, op, **args):
    return {"v": 1, "id": rid, "op": op, "args": args}


def drive(cfg, reqs, *opts, stdin_hook=None, timeout=60):
    """Runs requests (dicts) in parallel; returns (outcomes as dicts with attempts/definite,
    the driver's other output lines)."""
    paths = []
    for r in reqs:
        fd, p = tempfile.mkstemp(dir=dftest.CTX.tmp, suffix=".req")
        os.write(fd, msgpack.packb(r))
        os.close(fd)
        paths.append(p)
    log = open(tempfile.mktemp(dir=dftest.CTX.tmp, suffix=".drive.log"), "wb")
    p = subprocess.Popen([DRIVE, "--config", cfg, *opts, *paths], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=log)
    dftest.CTX.children.append(p)
    if stdin_hook:
        line = p.stdout.readline()
        eq(line, b"ready\n", "the driver logged in")
        stdin_hook()
        p.stdin.write(b"go\n")
        p.stdin.flush()
    out, _ = p.communicate(timeout=timeout)
    eq(p.returncode, 0, "driver exit status")
    outcomes, other = [], []
    for line in out.decode().splitlines():
        w = line.split()
        if w and w[0] == "outcome":
            o = msgpack.unpackb(bytes.fromhex(w[1]), raw=False)
            o["attempts"] = int(w[3])
            o["ms"] = int(w[5])
            o["definite"] = int(w[7])
            outcomes.append(o)
        else:
            other.append(line)
    eq(len(outcomes), len(reqs), "one outcome per request")
    return outcomes, other


def parts(call):
    return json.loads(call["body"])["parts"]


def data_of(call):
    return [x for x in parts(call) if x["name"] == "data"][0]["text"]


# ---- cases ------------------------------------------------------------------------------------

def case_multipart():
    """A send with every part, then an update: the parts as the pod received them, in order, the
    mark appended to the client's data, the result 1:1 with the pod's answer."""
    pod, room = setup_pod()
    cfg = config(pod)
    r = req("req-1", "messages.send", stream_id=room,
            message={"message": "Build <b>42</b>", "data": {"b1": {"type": "t", "n": 2 ** 62}},
                     "version": "2.0",
                     "attachments": [{"name": "a.log", "content": b"\x00\x01bytes\xff",
                                      "content_type": "text/plain", "preview": b"P1"},
                                     {"name": "b.bin", "content": b"B" * 3000, "preview": b"P2"}]})
    (o,), _ = drive(cfg, [r], "--scope", "worker-a")
    eq(o["ok"], True, "ok")
    eq(o["found"], False, "not found: created")
    eq(o["attempts"], 1, "one call")
    msgs = pod.admin("GET", "messages")
    eq(len(msgs), 1, "one message")
    m = msgs[0]
    eq(m["message"], "<messageML>Build <b>42</b></messageML>", "wrapped message")
    want_data = {"b1": {"type": "t", "n": 2 ** 62},
                 "dfbridge.request": {"type": "org.dfbridge.request", "version": "1.0",
                                      "id": mark("worker-a", "req-1")}}
    eq(json.loads(m["data"]), want_data, "data = the client's + the mark")
    eq(list(json.loads(m["data"]).keys()), ["b1", "dfbridge.request"], "mark appended last")
    eq(m["version"], "2.0", "version")
    eq([(a["name"], a["size"], a["content_type"], a["sha256"]) for a in m["attachments"]],
       [("a.log", 8, "text/plain", hashlib.sha256(b"\x00\x01bytes\xff").hexdigest()),
        ("b.bin", 3000, "application/octet-stream", hashlib.sha256(b"B" * 3000).hexdigest())],
       "attachments byte for byte")
    eq([a["sha256"] for a in m["previews"]],
       [hashlib.sha256(b"P1").hexdigest(), hashlib.sha256(b"P2").hexdigest()], "previews")
    (call,) = pod.calls("msgcreate")
    eq([(x["name"], x.get("filename")) for x in parts(call)],
       [("message", None), ("data", None), ("version", None), ("attachment", "a.log"),
        ("attachment", "b.bin"), ("preview", "a.log"), ("preview", "b.bin")], "parts in order")
    eq(call["path"], "/agent/v4/stream/%s/message/create" % room, "path")
    res = o["result"]
    eq(res["messageId"], m["messageId"], "result = the pod's V4Message")
    eq(res["data"], m["data"], "data in the result as posted (the mark not stripped)")
    eq(res["stream"]["streamId"], room, "stream")
    # update: silent false, the new version's id, the mark of its own id
    u = req("req-2", "messages.update", stream_id=room, message_id=res["messageId"],
            message="<messageML>v2</messageML>", silent=False)
    (o2,), _ = drive(cfg, [u], "--scope", "worker-a")
    eq(o2["ok"], True, "update ok")
    eq(o2["result"]["replacing"], res["messageId"], "replacing")
    check(o2["result"]["messageId"] != res["messageId"], "a new message id")
    (ucall,) = pod.calls("msgupdate")
    eq([x["name"] for x in parts(ucall)], ["message", "data", "version", "silent"], "update parts")
    eq([x.get("text") for x in parts(ucall)],
       ["<messageML>v2</messageML>",
        json.dumps({"dfbridge.request": {"type": "org.dfbridge.request", "version": "1.0",
                                         "id": mark("worker-a", "req-2")}},
                   separators=(",", ":")), "", "false"], "update part texts")


def case_ops():
    """Every other op: the call made and the result converted 1:1 (exact int64 ids)."""
    pod, room = setup_pod()
    cfg = config(pod)
    (sent,), _ = drive(cfg, [req("s", "messages.send", stream_id=room, message="hi")])
    mid = sent["result"]["messageId"]
    rs = [req("a", "rooms.addMember", stream_id=room, user_id=USER),
          req("b", "streams.createIm", user_ids=[USER]),
          req("c", "streams.createIm", user_id=USER),
          req("d", "streams.info", stream_id=room),
          req("e", "messages.get", message_id=mid),
          req("f", "messages.get", message_id="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
          req("g", "users.lookup", user_ids=[USER, BOT], active=True),
          req("h", "users.lookup", emails=["ann+x@example.com"]),
          req("i", "users.lookup", usernames=["nobody-here"]),
          req("j", "messages.suppress", message_id=mid)]
    out, _ = drive(cfg, rs)
    for o, r in zip(out, rs):
        eq(o["ok"], True, "%s ok (%r)" % (r["op"], o.get("error")))
    eq(out[0]["result"], {"format": "TEXT", "message": "Member added"}, "addMember")
    eq(out[1]["result"]["id"], out[2]["result"]["id"], "the same IM for the same member")
    eq(out[3]["result"]["id"], room, "stream info")
    eq(out[4]["result"]["messageId"], mid, "get")
    eq(out[5]["result"], None, "get of an unknown id: 204 -> nil")
    eq([u["id"] for u in out[6]["result"]["users"]], [USER, BOT], "lookup by id, int64 exact")
    eq([u["id"] for u in out[7]["result"]["users"]], [USER], "lookup by email (+ encoded)")
    eq(out[8]["result"], None, "no user: 204 -> nil")
    eq(out[9]["result"]["messageId"], mid, "suppress")
    eq(out[9]["result"]["suppressed"], True, "suppressed")
    (rm,), _ = drive(cfg, [req("k", "rooms.removeMember", stream_id=room, user_id=USER)])
    eq(rm["result"]["message"], "Member removed", "removeMember")
    eq(json.loads(pod.calls("imcreate")[0]["body"]), [USER], "IM body: a JSON array")
    eq(json.loads(pod.calls("roomadd")[0]["body"]), {"id": USER}, "membership body")


def one_message(pod, what):
    eq(len(pod.admin("GET", "messages")), 1, what + ": exactly one message in the pod")


def case_5xx_commit():
    """503 after the pod stored the message: the lookup finds it, no second create."""
    pod, room = setup_pod()
    cfg = config(pod)
    pod.faults({"endpoint": "msgcreate", "action": "status", "status": 503, "commit": True})
    (o,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")])
    eq((o["ok"], o["found"], o["definite"]), (True, True, 1), "ok, found by the mark")
    one_message(pod, "5xx with commit")
    eq(len(pod.calls("msgcreate")), 1, "one create")
    eq(len(pod.calls("msglist")), 1, "one lookup")
    eq(o["attempts"], 2, "create + lookup")
    eq(o["result"]["messageId"], pod.admin("GET", "messages")[0]["messageId"], "the found message")


def case_drop_commit():
    """Connection dropped after the pod stored the message: found by the mark, one message. The
    same executor made a call just before, so a reused keep-alive connection would be at hand:
    curl re-sends a request by itself when a reused connection dies without an answer, which
    would post twice; posts therefore go on a fresh connection."""
    pod, room = setup_pod()
    cfg = config(pod)
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 1},
               {"endpoint": "msgcreate", "action": "drop", "commit": True})
    w, o = drive(cfg, [req("w", "messages.send", stream_id=room, message="warm"),
                       req("r1", "messages.send", stream_id=room, message="x")], "--serial")[0]
    eq(w["ok"], True, "the warm-up")
    eq((o["ok"], o["found"]), (True, True), "found after the drop")
    eq(len(pod.admin("GET", "messages")), 2, "two messages: the warm-up and r1, once")
    eq([c["status"] for c in pod.calls("msgcreate")], [200, 0], "the drop was the last create")


def case_list_lag():
    """The pod lists a message 1.5 s after storing it (--list-lag-ms). A create answered 500 after
    the store: with bridge.commandsSettleMillis 2500 the lookup waits, finds the message, and
    nothing is posted again; with 0 it looks at once, misses it and posts a second time, which is
    what the wait is for."""
    pod, room = setup_pod("--list-lag-ms", "1500")
    fault = {"endpoint": "msgcreate", "action": "status", "status": 500, "commit": True}
    pod.faults(fault)
    (o,), _ = drive(config(pod, bridge_extra="  commandsSettleMillis: 2500\n"),
                    [req("r1", "messages.send", stream_id=room, message="x")])
    eq((o["ok"], o["found"]), (True, True), "found after the settle wait")
    check(o["ms"] >= 2500, "the lookup waited commandsSettleMillis: %d ms" % o["ms"])
    eq(len(pod.admin("GET", "messages")), 1, "one message")
    eq(len(pod.calls("msgcreate")), 1, "one create")
    pod.faults(fault)
    (o,), _ = drive(config(pod, bridge_extra="  commandsSettleMillis: 0\n"),
                    [req("r2", "messages.send", stream_id=room, message="y")])
    eq((o["ok"], o["found"]), (True, False), "commandsSettleMillis 0: not found, posted again")
    eq(len(pod.admin("GET", "messages")), 3, "r2 twice: the lag hid the first")


def case_drop_nocommit():
    """Dropped before anything was stored: not found, created once more with the same mark."""
    pod, room = setup_pod()
    cfg = config(pod)
    pod.faults({"endpoint": "msgcreate", "action": "drop", "commit": False})
    (o,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x",
                             data='{"k":1}')], "--scope", "s1")
    eq((o["ok"], o["found"]), (True, False), "created by the retry")
    one_message(pod, "drop without commit")
    creates = pod.calls("msgcreate")
    eq(len(creates), 2, "two creates (the first dropped)")
    eq(data_of(creates[0]), data_of(creates[1]), "the same data (mark) in both")
    eq(json.loads(data_of(creates[1]))["dfbridge.request"]["id"], mark("s1", "r1"), "mark")
    eq(data_of(creates[1])[:7], '{"k":1,', "the client's data text kept")
    eq(len(pod.calls("msglist")), 1, "one lookup between them")


def case_lookup_fails():
    """The create may have been stored and the stream cannot be searched: unknown_outcome,
    not definite (the id is not recorded)."""
    pod, room = setup_pod()
    cfg = config(pod)
    pod.faults({"endpoint": "msgcreate", "action": "status", "status": 500, "commit": True},
               {"endpoint": "msglist", "action": "status", "status": 502, "count": 2})
    (o,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")])
    eq(o["ok"], False, "not ok")
    eq(o["error"]["code"], "unknown_outcome", "unknown_outcome")
    eq(o["definite"], 0, "not recorded")
    check("502" in o["error"]["message"], "the message says why: %r" % o["error"]["message"])
    eq(len(pod.calls("msgcreate")), 1, "no second create while the outcome is unknown")
    # the same id again, resumed (the journal's PENDING): the lookup now works and finds it
    (o2,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")], "--resumed")
    eq((o2["ok"], o2["found"]), (True, True), "resumed: found")
    eq(len(pod.calls("msgcreate")), 1, "still one create")
    one_message(pod, "after the resume")


def case_unavailable():
    """5xx without commit until the retries are spent: every create followed by a lookup that
    finds nothing; unavailable, nothing posted."""
    pod, room = setup_pod()
    cfg = config(pod, attempts=3)
    pod.faults({"endpoint": "msgcreate", "action": "status", "status": 503, "count": 3})
    (o,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")])
    eq(o["error"]["code"], "unavailable", "unavailable")
    eq(o["definite"], 0, "not recorded")
    eq(len(pod.calls("msgcreate")), 3, "retry.maxAttempts creates")
    eq(len(pod.calls("msglist")), 3, "a lookup after each")
    eq(len(pod.admin("GET", "messages")), 0, "nothing posted")
    # a read op: 503s retried, no lookup
    pod.faults({"endpoint": "streaminfo", "action": "status", "status": 503, "count": 2})
    (o2,), _ = drive(cfg, [req("r2", "streams.info", stream_id=room)])
    eq(o2["ok"], True, "third attempt ok")
    eq(o2["attempts"], 3, "three calls")


def case_retry_after():
    """429 with Retry-After: 1 s honoured (the backoff is 10 ms); a 429 without it is retried at
    the backoff."""
    pod, room = setup_pod()
    cfg = config(pod)
    pod.faults({"endpoint": "msgcreate", "action": "retry_after", "retry_after": 1})
    (o,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")])
    eq(o["ok"], True, "ok after the 429")
    c = pod.calls("msgcreate")
    eq([x["status"] for x in c], [429, 200], "429 then 200")
    gap = c[1]["ms"] - c[0]["ms"]
    check(gap >= 990, "Retry-After honoured: %d ms between the calls" % gap)
    eq(len(pod.calls("msglist")), 0, "429 is not ambiguous: no lookup")
    one_message(pod, "after 429")
    pod.admin("DELETE", "calls")
    pod.faults({"endpoint": "msgcreate", "action": "status", "status": 429})
    (o,), _ = drive(cfg, [req("r2", "messages.send", stream_id=room, message="y")])
    c = pod.calls("msgcreate")
    eq([x["status"] for x in c], [429, 200], "429 then 200")
    check(c[1]["ms"] - c[0]["ms"] < 700, "no Retry-After: the backoff (%d ms)"
          % (c[1]["ms"] - c[0]["ms"]))


def case_auth_shared():
    """Tokens expire; three executors and a loop-like caller get 401s at once: one login between
    them (pod auth calls: the first login + one), all calls succeed."""
    pod, room = setup_pod()
    cfg = config(pod)
    rs = [req("r%d" % i, "messages.send", stream_id=room, message="m%d" % i) for i in range(3)]
    out, other = drive(cfg, rs, "--login-first", "--loop-like",
                       stdin_hook=lambda: pod.admin("POST", "expire-tokens"))
    for o in out:
        eq(o["ok"], True, "ok after the re-authentication")
    check("loop ok bot %d" % BOT in other, "the loop-like caller got through: %r" % other)
    check("logins 2" in other, "two logins in the process: %r" % other)
    eq(len(pod.calls("auth")), 2, "the pod saw two logins")
    eq(len(pod.admin("GET", "messages")), 3, "three messages")
    eq(sum(1 for c in pod.calls("msgcreate") if c["status"] == 401) <= 3, True, "401s")


def case_rejected():
    """4xx: rejected with Symphony's status and message, definite, nothing posted; a second 401
    right after re-authenticating is rejected 401."""
    pod, room = setup_pod()
    cfg = config(pod)
    rs = [req("a", "messages.send", stream_id="NoSuchStream", message="x"),
          req("b", "messages.send", stream_id=room, message="<messageML>x</b></messageML>")]
    out, _ = drive(cfg, rs)
    eq(out[0]["error"], {"code": "rejected", "message": "Stream NoSuchStream not found",
                         "status": 400}, "unknown stream")
    eq(out[0]["definite"], 1, "recorded")
    eq(out[1]["error"]["code"], "rejected", "invalid MessageML rejected")
    check(out[1]["error"]["message"].startswith("Invalid messageML"), out[1]["error"]["message"])
    pod.faults({"endpoint": "msgcreate", "action": "status", "status": 403,
                "body": {"code": 403, "message": "The user lacks the required entitlement"}},
               {"endpoint": "users", "action": "status", "status": 401, "count": 2})
    out, _ = drive(cfg, [req("c", "messages.send", stream_id=room, message="x"),
                         req("d", "users.lookup", user_ids=[USER])])
    eq(out[0]["error"], {"code": "rejected", "status": 403,
                         "message": "The user lacks the required entitlement"}, "403")
    eq(out[1]["error"]["code"], "rejected", "second 401")
    eq(out[1]["error"]["status"], 401, "status 401")
    eq(len(pod.admin("GET", "messages")), 0, "nothing posted")
    eq(len(pod.calls("msglist")), 0, "4xx are not ambiguous: no lookup")


def case_resumed():
    """A resumed request (begin without done in the journal): the lookup first; found -> no
    create; not found -> created once."""
    pod, room = setup_pod()
    cfg = config(pod)
    t0 = int(time.time() * 1000)
    (o,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")],
                    "--scope", "w")
    eq(o["ok"], True, "first run posted")
    (o2,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")],
                     "--scope", "w", "--resumed", "--begin-ms", str(t0))
    eq((o2["ok"], o2["found"], o2["attempts"]), (True, True, 1), "found by the lookup alone")
    eq(o2["result"]["messageId"], o["result"]["messageId"], "the same message")
    # another scope: another mark, not found, created
    (o3,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")],
                     "--scope", "other", "--resumed", "--begin-ms", str(t0))
    eq((o3["ok"], o3["found"], o3["attempts"]), (True, False, 2), "not found: created")
    eq(len(pod.admin("GET", "messages")), 2, "two messages (two scopes)")
    # a message older than the lookback window is not searched for
    (o4,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="x")],
                     "--scope", "w", "--resumed", "--begin-ms", str(int(time.time() * 1000) + 60000),
                     "--lookback", "1000")
    eq(o4["found"], False, "outside the window: not found")


def case_busy_room():
    """The lookup reads the stream oldest first from `since`, in pages: a mark on the first pages
    is found; when every page allowed is full without it, the newest messages (where it would
    be) were not read, and the outcome is unknown_outcome, never a second post; once the pages
    reach the end of the stream, not found means not posted, and the create is made.
    (--paging 1,3: pages of 1 message, at most 3, instead of 500 and 20.)"""
    pod, room = setup_pod()
    cfg = config(pod)
    t0 = int(time.time() * 1000)
    first = drive(cfg, [req(r, "messages.send", stream_id=room, message=r)
                        for r in ("r1", "w1", "w2", "w3", "w4")], "--scope", "w", "--serial")[0]
    eq([o["ok"] for o in first], [True] * 5, "five messages posted")
    (o,), _ = drive(cfg, [req("r1", "messages.send", stream_id=room, message="r1")],
                    "--scope", "w", "--resumed", "--begin-ms", str(t0), "--paging", "1,3")
    eq((o["ok"], o["found"]), (True, True), "the oldest: found on the first page")
    eq(o["result"]["messageId"], first[0]["result"]["messageId"], "the same message")
    (o,), _ = drive(cfg, [req("r9", "messages.send", stream_id=room, message="r9")],
                    "--scope", "w", "--resumed", "--begin-ms", str(t0), "--paging", "1,3")
    eq((o["ok"], o["definite"]), (False, 0), "three full pages without the mark: not settled")
    eq(o["error"]["code"], "unknown_outcome", "unknown_outcome, not a second post")
    check("more than 3 messages" in o["error"]["message"], "says why: %r" % o["error"]["message"])
    eq(len(pod.admin("GET", "messages")), 5, "nothing posted")
    (o,), _ = drive(cfg, [req("r9", "messages.send", stream_id=room, message="r9")],
                    "--scope", "w", "--resumed", "--begin-ms", str(t0), "--paging", "2,3")
    eq((o["ok"], o["found"]), (True, False), "the pages reach the end: not found, created")
    eq(len(pod.admin("GET", "messages")), 6, "one more message")
    eq([c["status"] for c in pod.calls("msglist")][-3:], [200, 200, 200],
       "the last lookup read 2 + 2 + 1 messages")


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    if not DRIVE:
        print("DFB_OUTBOUND_DRIVE is not set")
        sys.exit(2)
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="dfoutbound-"))
