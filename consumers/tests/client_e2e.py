#!/usr/bin/python3
"""The C command client end to end: the real dfbridge (bridge.commands) in front of dfpod.

--case replies: client_replier (a libdfconsumer loop whose listener answers every MESSAGESENT in
  its stream through dfc_client with the DEFAULT ids) over 20 events in 5 streams: the pod holds
  exactly one answer per event, in the event's stream, and every reply says ok with the id
  "<event id>/replier/1". Then the worker runs again from gseq 1 (a worker restarted without a
  checkpoint handles every event again): the same 20 ids, every reply replayed with the same
  posted message id, and the pod still holds exactly 20.
--case restart: dfsend's call is in flight (the pod stored the message and holds its answer) when
  the bridge is killed with SIGKILL and started again on the same state: dfsend's resend (same id,
  no new id) reaches the new bridge, which finds the message's mark instead of posting again: exit 0,
  found, exactly one message in the pod.
--case curve: the commands ROUTER as a CURVE server with clientsDir and commandsAllow
  {worker: [messages.*, streams.info]}: dfsend with worker's certificate may send and ask for
  info, gets not_allowed for rooms.addMember (nothing done in the pod); "other" (in clientsDir, not
  in the map) gets not_allowed for everything; a certificate not in clientsDir and a plain client
  get no reply at all (exit 3).
--case dfsend: dfsend for every operation against the pod (exit status, the printed reply, the
  pod's own record), the same --id again (replayed, nothing posted), a rejected call (exit 1 and
  "rejected 400" on stderr), a bad request (exit 1, nothing posted), no bridge (exit 3).
"""
import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "pylib"))
import dftest  # noqa: E402
from dftest import check, eq  # noqa: E402

ARGS = {}
STREAMS = ["cclientRoomA", "cclientRoomB", "cclientRoomC", "cclientRoomD", "cclientRoomE"]
BOT = 68719476738  # dfpod's default --bot-id
USER = 68719476740  # a user the pod knows (its generator's)


def start(extra=""):
    pod = dftest.Pod()
    state = os.path.join(dftest.CTX.tmp, "state")
    replay = "tcp://127.0.0.1:%d" % dftest.free_port()
    commands = "tcp://127.0.0.1:%d" % dftest.free_port()
    br = dftest.Bridge(pod, bridge_extra="  stateDir: %s\n  replay: %s\n  commands: %s\n"
                       "  heartbeatMillis: 200\n  commandsStreamRate: 20\n%s"
                       % (state, replay, commands, extra))
    return pod, br, replay, commands


def source_events(n):
    evs = []
    for i in range(n):
        sid = STREAMS[i % len(STREAMS)]
        evs.append(dftest.event(i, payload={"messageSent": {"message": {
            "messageId": "src-%d" % i, "timestamp": 1700000000000 + i,
            "message": "<div data-format=\"PresentationML\" data-version=\"2.0\">hello %d</div>" % i,
            "stream": {"streamId": sid, "streamType": "ROOM"}}}}))
    return evs


def run_replier(br, replay, commands, n, timeout=60):
    """Runs client_replier until it answered n events; returns its JSON lines (ready excluded)."""
    p = subprocess.run([ARGS["replier"], "--endpoint", br.endpoint, "--replay", replay,
                        "--commands", commands, "--expect", str(n)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    lines = [json.loads(x) for x in p.stdout.decode().splitlines() if x.strip()]
    check(p.returncode == 0, "client_replier exit 0 (got %d): %s"
          % (p.returncode, p.stderr.decode()[-2000:]))
    print(p.stderr.decode().strip().splitlines()[-1] if p.stderr else "", flush=True)
    return [x for x in lines if "ready" not in x]


def case_replies():
    n = 20
    pod, br, replay, commands = start()
    pod.events(source_events(n))
    first = run_replier(br, replay, commands, n)
    eq(len(first), n, "answers of the first run")
    by_event = {x["event"]: x for x in first}
    eq(sorted(by_event), sorted("ev-%d" % i for i in range(n)), "each event answered once")
    for i in range(n):
        x = by_event.get("ev-%d" % i, {})
        eq(x.get("id"), "ev-%d/replier/1" % i, "default id of ev-%d" % i)
        check(x.get("ok") is True and x.get("rc") == 0 and x.get("code") == "",
              "ev-%d answered ok: %r" % (i, x))
        check(x.get("replayed") is False and x.get("found") is False,
              "ev-%d: a first call (not replayed, not found): %r" % (i, x))
        eq(x.get("stream"), STREAMS[i % len(STREAMS)], "ev-%d stream" % i)
    posts = pod.admin("GET", "messages")
    eq(len(posts), n, "posts in the pod after the first run")
    want = {(STREAMS[i % len(STREAMS)], "<messageML>re src-%d</messageML>" % i) for i in range(n)}
    got = [(p["streamId"], p["message"]) for p in posts]
    eq(sorted(got), sorted(want), "one answer per event, in its stream, with its content")
    check(all(p["op"] == "create" for p in posts), "every post a create")
    posted = {p["messageId"] for p in posts}
    eq({x["posted"] for x in first}, posted, "the replies name the pod's messages")

    # The worker again from gseq 1, no checkpoint: every event handled a second time.
    second = run_replier(br, replay, commands, n)
    eq(len(second), n, "answers of the second run")
    for x in second:
        y = by_event.get(x["event"], {})
        eq(x.get("id"), y.get("id"), "%s: the same default id" % x["event"])
        check(x.get("ok") is True and x.get("replayed") is True,
              "%s: the recorded outcome (replayed): %r" % (x["event"], x))
        eq(x.get("posted"), y.get("posted"), "%s: the same message" % x["event"])
    eq(len(pod.admin("GET", "messages")), n, "still exactly one answer per event in the pod")
    eq(len(pod.calls("msgcreate")), n, "message creates the pod saw")
    br.stop()
    br.check_clean()
    pod.stop()


def dfsend(commands, *args, timeout=30):
    p = subprocess.run([ARGS["dfsend"], "--endpoint", commands, *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    out = p.stdout.decode().strip()
    return p.returncode, (json.loads(out) if out else None), p.stderr.decode()


def ok_result(commands, what, *args):
    rc, rep, err = dfsend(commands, *args)
    eq(rc, 0, "%s: exit status (stderr %r)" % (what, err))
    check(rep is not None and rep.get("ok") is True and rep.get("v") == 1,
          "%s: an ok reply: %r" % (what, rep))
    return (rep or {}).get("result"), rep or {}


def case_dfsend():
    pod, br, replay, commands = start()
    room = pod.admin("POST", "rooms", {"name": "cclient room"})["id"]
    att = os.path.join(dftest.CTX.tmp, "report.txt")
    content = b"\x00\x01payload\xff\r\n--"  # binary, and what a multipart boundary starts with
    with open(att, "wb") as f:
        f.write(content)

    # messages.send with data and an attachment; then the same --id again
    res, rep = ok_result(commands, "messages.send", "--id", "op-send-1", "--attach", att,
                         "messages.send", "stream_id=" + room,
                         "message=<messageML>hello <b>there</b></messageML>",
                         "data:={\"x\": {\"type\": \"org.example\", \"version\": \"1.0\"}}")
    mid = (res or {}).get("messageId", "")
    eq(len(mid), 34, "a new message id")
    eq((res or {}).get("stream", {}).get("streamId"), room, "the message's stream")
    eq(rep.get("id"), "op-send-1", "the id echoed")
    check(rep.get("replayed") is False and rep.get("found") is False, "a first call")
    posts = pod.admin("GET", "messages")
    eq(len(posts), 1, "one post")
    p0 = posts[0] if posts else {}
    eq(p0.get("message"), "<messageML>hello <b>there</b></messageML>", "the posted MessageML")
    eq([(a["name"], a["size"], a["sha256"]) for a in p0.get("attachments", [])],
       [("report.txt", len(content), hashlib.sha256(content).hexdigest())],
       "the attachment, byte for byte")
    data = json.loads(p0.get("data") or "{}")
    check("x" in data and "dfbridge.request" in data, "data: the caller's entity and the mark: %r"
          % data)
    res2, rep2 = ok_result(commands, "messages.send again", "--id", "op-send-1", "--attach", att,
                           "messages.send", "stream_id=" + room,
                           "message=<messageML>hello <b>there</b></messageML>",
                           "data:={\"x\": {\"type\": \"org.example\", \"version\": \"1.0\"}}")
    check(rep2.get("replayed") is True, "the same id: replayed")
    eq((res2 or {}).get("messageId"), mid, "the same id: the recorded message")
    eq(len(pod.admin("GET", "messages")), 1, "the same id: nothing posted")

    res, _ = ok_result(commands, "messages.update", "messages.update", "stream_id=" + room,
                       "message_id=" + mid, "message=<messageML>edited</messageML>",
                       "silent:=false")
    mid2 = (res or {}).get("messageId", "")
    check(len(mid2) == 34 and mid2 != mid, "update: a new message id")
    eq((res or {}).get("replacing"), mid, "update: replacing the first")
    posts = pod.admin("GET", "messages")
    eq([(p["op"], p.get("silent")) for p in posts], [("create", None), ("update", False)],
       "the pod's record: a create then an update, not silent")

    res, _ = ok_result(commands, "messages.get", "messages.get", "message_id=" + mid2)
    eq((res or {}).get("messageId"), mid2, "get: the message")
    check("edited" in (res or {}).get("message", ""), "get: its PresentationML")
    res, rep = ok_result(commands, "messages.get unknown", "messages.get",
                         "message_id=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    check("result" in rep and res is None, "get of an unknown id: result nil (204)")

    res, _ = ok_result(commands, "messages.suppress", "messages.suppress", "message_id=" + mid2)
    check((res or {}).get("suppressed") is True, "suppress: suppressed")

    res, _ = ok_result(commands, "streams.createIm", "streams.createIm",
                       "user_ids:=[%d]" % USER)
    im = (res or {}).get("id", "")
    eq(len(im), 34, "createIm: an IM id")
    res, _ = ok_result(commands, "streams.createIm single", "streams.createIm",
                       "user_id:=%d" % USER)
    eq((res or {}).get("id"), im, "createIm: the same member set, the same IM")

    res, _ = ok_result(commands, "rooms.addMember", "rooms.addMember", "stream_id=" + room,
                       "user_id:=%d" % USER)
    eq(res, {"format": "TEXT", "message": "Member added"}, "addMember")
    res, _ = ok_result(commands, "rooms.removeMember", "rooms.removeMember",
                       "stream_id=" + room, "user_id:=%d" % USER)
    eq(res, {"format": "TEXT", "message": "Member removed"}, "removeMember")

    res, _ = ok_result(commands, "streams.info", "streams.info", "stream_id=" + im)
    eq((res or {}).get("id"), im, "info: the IM")
    eq((res or {}).get("streamType", {}).get("type"), "IM", "info: its type")
    eq((res or {}).get("streamAttributes", {}).get("members"), sorted([BOT, USER]),
       "info: its members")

    res, _ = ok_result(commands, "users.lookup", "--json",
                       json.dumps({"user_ids": [BOT], "local": True}), "users.lookup")
    eq([u.get("id") for u in (res or {}).get("users", [])], [BOT], "lookup by id: the bot")
    res, _ = ok_result(commands, "users.lookup email", "users.lookup",
                       "emails:=[\"bot@example.com\"]")
    eq([u.get("id") for u in (res or {}).get("users", [])], [BOT], "lookup by email: the bot")

    # errors: rejected by the pod (exit 1, code and status on stderr), bad requests (nothing sent)
    before = len(pod.calls("msgcreate"))
    rc, rep, err = dfsend(commands, "messages.send", "stream_id=noSuchStream",
                          "message=<messageML>x</messageML>")
    eq(rc, 1, "unknown stream: exit 1")
    eq((rep or {}).get("error", {}).get("code"), "rejected", "unknown stream: rejected")
    eq((rep or {}).get("error", {}).get("status"), 400, "unknown stream: status 400")
    check(err.startswith("rejected 400: ") and "not found" in err,
          "unknown stream: stderr %r" % err)
    for words, what in ((["messages.send", "stream_id=" + room], "no message"),
                        (["messages.send", "stream_id=" + room, "message=x", "colour=red"],
                         "unknown arg"),
                        (["rooms.addMember", "stream_id=" + room, "user_id=12"], "user_id a str"),
                        (["messages.fly", "stream_id=" + room], "unknown op")):
        rc, rep, err = dfsend(commands, *words)
        eq(rc, 1, "%s: exit 1" % what)
        eq((rep or {}).get("error", {}).get("code"), "bad_request", "%s: bad_request" % what)
        check(err.startswith("bad_request: "), "%s: stderr %r" % (what, err))
    eq(len(pod.calls("msgcreate")), before + 1, "only the rejected create reached the pod")
    eq(len(pod.admin("GET", "messages")), 2, "nothing else posted")

    # no bridge there: every attempt, then exit 3
    rc, rep, err = dfsend("tcp://127.0.0.1:%d" % dftest.free_port(), "--timeout", "200",
                          "--attempts", "2", "streams.info", "stream_id=" + room)
    eq(rc, 3, "no bridge: exit 3")
    check(rep is None and "no reply" in err, "no bridge: nothing on stdout, why on stderr")
    br.stop()
    br.check_clean()
    pod.stop()


def case_restart():
    pod, br, replay, commands = start()
    room = pod.admin("POST", "rooms", {"name": "restart room"})["id"]
    # the pod stores the message, then holds its answer for 4 s (commit: true is slow's default)
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 4000})
    p = subprocess.Popen([ARGS["dfsend"], "--endpoint", commands, "--id", "restart-1",
                          "--timeout", "1500", "--attempts", "8", "messages.send",
                          "stream_id=" + room, "message=<messageML>once</messageML>"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dftest.wait_until(lambda: len(pod.admin("GET", "messages")) == 1,
                      "the pod stored the message (its answer held)")
    br.kill()
    br.start()  # the same config: the same stateDir, the same endpoints
    out, err = p.communicate(timeout=60)
    eq(p.returncode, 0, "dfsend exit status (stderr %r)" % err.decode())
    rep = json.loads(out.decode() or "null") or {}
    posts = pod.admin("GET", "messages")
    eq(len(posts), 1, "exactly one message in the pod")
    check(rep.get("ok") is True and rep.get("found") is True,
          "the reply: ok, settled by the mark (found): %r" % rep)
    eq(rep.get("id"), "restart-1", "the same id")
    eq((rep.get("result") or {}).get("messageId"), posts[0]["messageId"] if posts else None,
       "the result is the stored message")
    # (the held create is logged when its answer goes out, 4 s later: count what the pod stored)
    eq(pod.counter("messages_posted"), 1, "one create stored: none after the restart")
    check(len(pod.calls("msglist")) >= 1, "the restarted bridge looked for the mark")
    br.stop()
    br.check_clean()
    pod.stop()


def case_curve():
    tmp = dftest.CTX.tmp
    certs, clients = os.path.join(tmp, "certs"), os.path.join(tmp, "clients")
    os.mkdir(certs)
    os.mkdir(clients)
    for n in ("bridge", "worker", "other", "outsider"):
        out = subprocess.run([dftest.CTX.dfbridge, "keygen", certs, n], capture_output=True,
                             text=True, timeout=20)
        eq(out.returncode, 0, "dfbridge keygen %s (%s)" % (n, out.stderr.strip()))
    for n in ("worker", "other"):
        with open(os.path.join(certs, n + ".key"), "rb") as f, \
                open(os.path.join(clients, n + ".key"), "wb") as g:
            g.write(f.read())
    pod, br, replay, commands = start(
        "  curve:\n    secretKey: %s\n    clientsDir: %s\n"
        "  commandsAllow:\n    worker: [\"messages.*\", streams.info]\n"
        % (os.path.join(certs, "bridge.key_secret"), clients))
    room = pod.admin("POST", "rooms", {"name": "curve room"})["id"]

    def as_(name, *words, timeout="5000"):
        return dfsend(commands, "--curve-server-key", os.path.join(certs, "bridge.key"),
                      "--curve-cert", os.path.join(certs, name + ".key_secret"),
                      "--timeout", timeout, "--attempts", "2", *words)

    rc, rep, err = as_("worker", "messages.send", "stream_id=" + room,
                       "message=<messageML>over CURVE</messageML>")
    eq(rc, 0, "worker: messages.send allowed (stderr %r)" % err)
    check((rep or {}).get("ok") is True, "worker: sent: %r" % rep)
    rc, rep, err = as_("worker", "streams.info", "stream_id=" + room)
    eq(rc, 0, "worker: streams.info allowed (stderr %r)" % err)
    rc, rep, err = as_("worker", "rooms.addMember", "stream_id=" + room, "user_id:=%d" % USER)
    eq(rc, 1, "worker: rooms.addMember refused")
    eq((rep or {}).get("error", {}).get("code"), "not_allowed", "worker: not_allowed")
    check(err.startswith("not_allowed: "), "worker: stderr %r" % err)
    rc, rep, err = as_("other", "streams.info", "stream_id=" + room)
    eq(rc, 1, "other (not in commandsAllow): refused")
    eq((rep or {}).get("error", {}).get("code"), "not_allowed", "other: not_allowed")
    eq(pod.calls("roomadd"), [], "nothing refused reached the pod")
    eq(len(pod.calls("streaminfo")), 1, "one info call (the worker's)")
    eq(len(pod.admin("GET", "messages")), 1, "one message (the worker's)")
    rc, rep, err = as_("outsider", "streams.info", "stream_id=" + room, timeout="300")
    eq(rc, 3, "a certificate not in clientsDir: no reply (exit 3)")
    rc, rep, err = dfsend(commands, "--timeout", "300", "--attempts", "2", "streams.info",
                          "stream_id=" + room)
    eq(rc, 3, "a plain client: no reply (exit 3)")
    rc, rep, err = dfsend(commands, "--curve-cert", os.path.join(certs, "worker.key_secret"),
                          "streams.info", "stream_id=" + room)
    eq(rc, 2, "a certificate without the server key: usage (exit 2)")
    br.stop()
    br.check_clean()
    pod.stop()


def main():
    argv = []
    it = iter(sys.argv[1:])
    for a in it:
        if a in ("--replier", "--dfsend"):
            ARGS[a[2:]] = next(it)
        else:
            argv.append(a)
    return dftest.run_cases({"replies": case_replies, "dfsend": case_dfsend,
                             "restart": case_restart, "curve": case_curve}, argv,
                            prefix="cclient-e2e-")


if __name__ == "__main__":
    sys.exit(main())
