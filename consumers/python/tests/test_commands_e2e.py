#!/usr/bin/python3
"""The Python command client end to end: the real dfpod -> dfbridge (bridge.commands,
stateDir) -> dfconsumer's CommandClient and services (ctest python_commands_e2e_<case>).

  services        every BDK service method against the pod, results checked field by field
                  against the pod's own record (/admin/messages, the call log); the mark in
                  data; a rejected send; a replayed id (one message); bad_request
  reply_listener  examples/reply_listener.py (the BDK's listener, unchanged) answers N
                  user messages in 3 rooms: the pod holds exactly one reply per message, in
                  its stream, with its text; the bot's own messages are not answered
  bridge_restart  the bridge killed mid-call (the pod committed, its answer slow) and
                  restarted: the client's same-id resend is settled by the mark (found), one
                  message
  busy            one executor, a queue of 1, a slow pod: 4 concurrent sends, the busy ones
                  retried after retry_after_ms: 4 ok, exactly 4 messages

Usage: test_commands_e2e.py --dfpod PATH --dfbridge PATH --case NAME"""

import asyncio
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))

import dftest  # noqa: E402
from dftest import check, eq  # noqa: E402

from dfconsumer import (BadRequest, CommandClient, Message, Rejected, V2StreamAttributes,  # noqa: E402
                        V4Message)
from dfconsumer import commands  # noqa: E402

# users the pod knows (its generator's high range) besides the bot
USER_A, USER_B = 349026222340001, 349026222340002
PRESENTATION = '<div data-format="PresentationML" data-version="2.0">%s</div>'


def mark(scope, ident):
    return hashlib.sha256(b"dfbridge-mark\0" + scope.encode() + b"\0"
                          + ident.encode()).digest()[:16].hex()


def start(pod, extra=""):
    """A bridge with the command channel (no rate limits: the test is about the client)
    and a state dir (the journal of commands); returns (bridge, commands endpoint)."""
    ep = "tcp://127.0.0.1:%d" % dftest.free_port()
    state = tempfile.mkdtemp(dir=dftest.CTX.tmp, prefix="state-")
    br = dftest.Bridge(pod, bridge_extra="  stateDir: %s\n  commands: %s\n  commandsRate: 0\n"
                       "  commandsStreamRate: 0\n%s" % (state, ep, extra))
    return br, ep


def messages(pod):
    return pod.admin("GET", "messages")


async def in_job(event_id, listener_id, coro_fn):
    """Runs coro_fn() as a listener job would: its default ids are predictable."""
    async def job():
        commands.set_job(event_id, listener_id)
        return await coro_fn()
    return await asyncio.get_running_loop().create_task(job())


def case_services():
    pod = dftest.Pod()
    br, ep = start(pod)
    room = pod.admin("POST", "rooms", {"name": "py-e2e", "members": [USER_A]})["id"]

    async def go():
        c = CommandClient(ep, timeout_ms=10000)
        try:
            await body(c)
        finally:
            c.close()

    async def body(c):
        # ---- users: the bot by username, id and email; a known user; nobody (204)
        bots = await c.users.list_users_by_usernames(["my-bot"])
        eq(len(bots.users), 1, "users by username")
        bot = bots.users[0]
        eq((bot.username, bot.display_name, bot.email_address), ("my-bot", "My Bot",
                                                                 "bot@example.com"), "the bot")
        bot_id = bot.id
        check(type(bot_id) is int and bot_id > 0, "bot id %r" % bot_id)
        by_id = await c.users.list_users_by_ids([bot_id, USER_A])
        eq(sorted(u.id for u in by_id.users), sorted([bot_id, USER_A]), "users by ids")
        ua = next(u for u in by_id.users if u.id == USER_A)
        check(ua.display_name and ua.email_address.endswith("@example.com"), "user A %r" % ua)
        by_mail = await c.users.list_users_by_emails([ua.email_address], local=True, active=True)
        eq([u.to_dict() for u in by_mail.users], [ua.to_dict()], "users by email")
        eq(await c.users.list_users_by_emails(["nobody@nowhere.example"]), None, "nobody: 204")

        # ---- send: the answer is the pod's message, field by field, with the mark
        async def send():
            return await c.messages.send_message(
                room, "Hello <b>world</b>", data={"k": {"type": "org.example", "version": "1.0",
                                                        "n": 2**62 + 1}})
        sent = await in_job("ev-s", "L1", send)
        check(isinstance(sent, V4Message), "send_message gives a V4Message")
        recs = messages(pod)
        eq(len(recs), 1, "one message posted")
        rec = recs[0]
        eq((rec["op"], rec["streamId"], rec["messageId"]), ("create", room, sent.message_id),
           "the pod's record")
        eq(rec["message"], "<messageML>Hello <b>world</b></messageML>", "MessageML as posted")
        eq(len(sent.message_id), 34, "a 34-character message id")
        eq(sent.message, PRESENTATION % "Hello <b>world</b>", "PresentationML")
        eq((sent.stream.stream_id, sent.stream.stream_type), (room, "ROOM"), "stream")
        eq((sent.user.user_id, sent.user.display_name), (bot_id, "My Bot"), "user = the bot")
        eq(sent.timestamp, rec["timestamp"], "timestamp")
        eq(sent.data, rec["data"], "data as posted")
        data = json.loads(sent.data)
        eq(data["k"], {"type": "org.example", "version": "1.0", "n": 2**62 + 1}, "our entity")
        eq(data["dfbridge.request"], {"type": "org.dfbridge.request", "version": "1.0",
                                      "id": mark("", "ev-s/L1/1")}, "the mark of ev-s/L1/1")
        eq(sorted(data), ["dfbridge.request", "k"], "two entities")
        eq(sent.to_dict()["messageId"], sent.message_id, "to_dict is camelCase")

        # ---- attachments with previews (a Message), the pod's sha256 of each part
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "report.txt")
            blob = bytes(range(256)) * 40
            with open(path, "wb") as f:
                f.write(blob)
            with open(path, "rb") as f:
                m = Message("see the report", attachments=[(f, io.BytesIO(b"PREVIEW"))])
                att = await c.messages.send_message(room, m)
        eq([(a.name, a.size) for a in att.attachments], [("report.txt", len(blob))], "attachment")
        rec = messages(pod)[-1]
        eq([(a["name"], a["size"], a["content_type"], a["sha256"]) for a in rec["attachments"]],
           [("report.txt", len(blob), "text/plain", hashlib.sha256(blob).hexdigest())],
           "the attachment as the pod received it")
        eq([(p["size"], p["sha256"]) for p in rec["previews"]],
           [(7, hashlib.sha256(b"PREVIEW").hexdigest())], "its preview")

        # ---- update, get, suppress
        upd = await c.messages.update_message(room, sent.message_id, "Hello again", silent=False)
        check(upd.message_id != sent.message_id and len(upd.message_id) == 34, "a new id")
        eq((upd.replacing, upd.initial_message_id, upd.silent), (sent.message_id,
                                                                 sent.message_id, False),
           "update lineage")
        eq(upd.message, PRESENTATION % "Hello again", "updated PresentationML")
        rec = messages(pod)[-1]
        eq((rec["op"], rec["messageId"], rec["replacing"], rec["silent"]),
           ("update", upd.message_id, sent.message_id, False), "the pod's update record")
        got = await c.messages.get_message(upd.message_id)
        eq(got.to_dict(), upd.to_dict(), "get_message gives the updated message")
        eq(await c.messages.get_message("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), None,
           "an unknown message: 204 -> None")
        sup = await c.messages.suppress_message(upd.message_id)
        eq((sup.message_id, sup.suppressed), (upd.message_id, True), "suppressed")
        check(type(sup.suppression_date) is int and sup.suppression_date > 0, "suppression date")

        # ---- streams: IM (the same one twice), info, room membership
        im = await c.streams.create_im(USER_A)
        im2 = await c.streams.create_im_or_mim([USER_A])
        eq(im2.id, im.id, "the same members: the same IM")
        info = await c.streams.get_stream(im.id)
        check(isinstance(info, V2StreamAttributes), "get_stream gives V2StreamAttributes")
        eq((info.id, info.stream_type.type, info.active, info.origin), (im.id, "IM", True,
                                                                        "INTERNAL"), "IM info")
        eq(info.stream_attributes.members, sorted([bot_id, USER_A]), "IM members")
        eq(await c.streams.add_member_to_room(USER_B, room), None, "add: None as the BDK")
        eq(await c.streams.remove_member_from_room(USER_B, room), None, "remove: None")
        adds, rms = pod.calls("roomadd"), pod.calls("roomremove")
        eq((len(adds), len(rms)), (1, 1), "one add, one remove call")
        rinfo = await c.streams.get_stream(room)
        eq((rinfo.id, rinfo.stream_type.type, rinfo.room_attributes.name),
           (room, "ROOM", "py-e2e"), "room info")

        # ---- errors: Symphony's 400; a bad request; nothing posted for either
        n_before = len(messages(pod))
        try:
            await c.messages.send_message("NoSuchStream", "x")
            check(False, "a send to an unknown stream must raise Rejected")
        except Rejected as e:
            eq((e.code, e.status, e.message), ("rejected", 400, "Stream NoSuchStream not found"),
               "rejected")
        try:
            await c.call("messages.send", {"stream_id": room, "message": "x", "bogus": 1})
            check(False, "an unknown arg must raise BadRequest")
        except BadRequest as e:
            eq(e.code, "bad_request", "bad_request")
        eq(len(messages(pod)), n_before, "nothing posted by the errors")

        # ---- the same id twice: one message, the second reply replayed
        r1 = await c.call_reply("messages.send", {"stream_id": room, "message": "once"},
                                id="py-e2e-once")
        r2 = await c.call_reply("messages.send", {"stream_id": room, "message": "once"},
                                id="py-e2e-once")
        eq((r1["ok"], r1["replayed"], r1["found"]), (True, False, False), "first reply")
        eq((r2["ok"], r2["replayed"]), (True, True), "second reply: replayed")
        eq(r2["result"], r1["result"], "the recorded result")
        eq(len([m for m in messages(pod) if m["message"] == "<messageML>once</messageML>"]), 1,
           "one message for the id")
        try:
            await c.call("messages.send", {"stream_id": room, "message": "other"},
                         id="py-e2e-once")
            check(False, "an id reused for another request must raise BadRequest")
        except BadRequest:
            pass
        st = c.stats()
        eq((st["timeouts"], st["unmatched"], st["bad_replies"]), (0, 0, 0), "client counters")

    asyncio.run(asyncio.wait_for(go(), 120))
    br.stop()
    pod.stop()


def case_reply_listener():
    pod = dftest.Pod()
    br, ep = start(pod)
    rooms = [pod.admin("POST", "rooms", {"name": "r%d" % k, "members": [USER_A]})["id"]
             for k in range(3)]
    n = 12

    def ev(i):
        sid = rooms[i % 3]
        return {"id": "py-ev-%d" % i, "messageId": "src-%d" % i, "timestamp": 1767225600000 + i,
                "type": "MESSAGESENT",
                "initiator": {"user": {"userId": USER_A, "displayName": "Person %d" % i}},
                "payload": {"messageSent": {"message": {
                    "messageId": "src-%d" % i, "timestamp": 1767225600000 + i,
                    "message": PRESENTATION % ("question %d" % i), "data": "{}",
                    "user": {"userId": USER_A, "displayName": "Person %d" % i},
                    "stream": {"streamId": sid, "streamType": "ROOM"}}}}}

    env = dict(os.environ, DFCONSUMER_ENDPOINT=br.endpoint, DFCONSUMER_COMMANDS=ep,
               PYTHONDONTWRITEBYTECODE="1")
    log_path = os.path.join(dftest.CTX.tmp, "reply_listener.worker.log")
    with open(log_path, "wb") as log:
        w = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "examples",
                                                           "reply_listener.py")],
                             env=env, stdout=log, stderr=log)
    dftest.CTX.children.append(w)
    # A fresh worker takes the live stream from its first message on: probes (in a room of
    # their own) until one is answered, then the worker is subscribed.
    probe_room = pod.admin("POST", "rooms", {"name": "probes", "members": [USER_A]})["id"]
    k = 0
    while not messages(pod):
        k += 1
        check(k <= 30, "the worker answers a probe within 30 s")
        if k > 30 or w.poll() is not None:
            break
        p = ev(0)
        p["id"] = "py-probe-%d" % k
        p["initiator"]["user"]["displayName"] = "Probe %d" % k
        p["payload"]["messageSent"]["message"]["stream"]["streamId"] = probe_room
        pod.events([p])
        dftest.poll_until(lambda: messages(pod), 1.0)
    pod.events([ev(i) for i in range(1, n + 1)])
    dftest.wait_until(lambda: len([m for m in messages(pod) if m["streamId"] != probe_room])
                      >= n, "%d replies" % n, 30)
    # a last message: once it is answered, every echo of the bot's replies (enqueued before
    # it) went through the worker's filter, and any late probe too
    pod.events([ev(n + 1)])
    dftest.wait_until(lambda: any(m["message"] == "<messageML>Hello, Person %d!</messageML>"
                                  % (n + 1) for m in messages(pod)), "the last reply", 30)
    w.send_signal(signal.SIGTERM)
    eq(w.wait(15), 0, "the worker exits 0 on SIGTERM")
    recs = [r for r in messages(pod) if r["streamId"] != probe_room]
    probes = [r["message"] for r in messages(pod) if r["streamId"] == probe_room]
    check(1 <= len(probes) == len(set(probes)) <= k, "each probe answered at most once: %r"
          % probes)
    got = sorted((r["streamId"], r["message"]) for r in recs)
    want = sorted((rooms[i % 3], "<messageML>Hello, Person %d!</messageML>" % i)
                  for i in range(1, n + 2))
    eq(got, want, "exactly one reply per message, in its stream")
    eq([r["op"] for r in recs], ["create"] * (n + 1), "creates only")
    marks = {json.loads(r["data"])["dfbridge.request"]["id"] for r in recs}
    want_marks = {mark("", "py-ev-%d/L1/1" % i) for i in range(1, n + 2)}
    eq(marks, want_marks, "the default ids <event id>/L1/1 (their marks)")
    br.stop()
    pod.stop()


def case_bridge_restart():
    """The bridge is SIGKILLed after the pod committed a send whose answer it had not yet
    got, and restarted: the client's resend (same id, after its timeout) reaches the new
    bridge through the same DEALER, which settles it by the mark: ok, found, one message."""
    pod = dftest.Pod()
    br, ep = start(pod)
    room = pod.admin("POST", "rooms", {"name": "restart", "members": [USER_A]})["id"]
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 5000, "commit": True})

    async def go():
        c = CommandClient(ep, timeout_ms=1500, attempts=8)
        try:
            aloop = asyncio.get_running_loop()
            t = aloop.create_task(c.call_reply("messages.send", {"stream_id": room,
                                                                 "message": "restart-proof"},
                                               id="py-restart-1"))
            ok = await aloop.run_in_executor(None, dftest.poll_until,
                                             lambda: messages(pod), 10)
            check(bool(ok), "the pod committed the create")
            check(not t.done(), "no reply yet (the pod's answer is slow)")
            br.kill()
            br.start()
            rep = await t
            return rep, c.stats()
        finally:
            c.close()

    rep, st = asyncio.run(asyncio.wait_for(go(), 60))
    recs = messages(pod)
    eq(len(recs), 1, "exactly one message")
    eq((rep["ok"], rep["found"], rep["replayed"]), (True, True, False),
       "settled by the mark after the restart: %r" % rep.get("error"))
    eq(rep["result"]["messageId"], recs[0]["messageId"], "the committed message is the result")
    eq(json.loads(rep["result"]["data"])["dfbridge.request"]["id"], mark("", "py-restart-1"),
       "its mark")
    check(st["resent"] >= 1 and st["timeouts"] >= 1, "the client resent after a timeout: %r" % st)
    eq((st["replies"], st["bad_replies"]), (1, 0), "one reply")
    br.stop()
    pod.stop()


def case_busy():
    """A bridge with one executor and a queue of 1, the pod slow: of 4 concurrent sends
    some are answered busy; the client waits retry_after_ms and sends them again (same
    ids) until each is made: 4 ok replies, exactly 4 messages."""
    pod = dftest.Pod()
    br, ep = start(pod, "  commandsConcurrency: 1\n  commandsQueue: 1\n")
    room = pod.admin("POST", "rooms", {"name": "busy", "members": [USER_A]})["id"]
    pod.faults({"endpoint": "msgcreate", "action": "slow", "delay_ms": 400, "count": 4})

    async def go():
        c = CommandClient(ep, timeout_ms=8000, attempts=2)
        try:
            await c.users.list_users_by_usernames(["my-bot"])  # connected and answered
            reps = await asyncio.gather(*(c.call_reply(
                "messages.send", {"stream_id": room, "message": "busy %d" % i}, id="busy-%d" % i)
                for i in range(4)))
            return reps, c.stats()
        finally:
            c.close()

    reps, st = asyncio.run(asyncio.wait_for(go(), 60))
    eq([(r["id"], r["ok"]) for r in reps], [("busy-%d" % i, True) for i in range(4)], "all made")
    check(st["busy_retries"] >= 1, "busy replies were retried: %r" % st)
    print("client counters: %r" % st)
    eq(st["timeouts"], 0, "no timeout")
    eq(sorted(m["message"] for m in messages(pod)),
       ["<messageML>busy %d</messageML>" % i for i in range(4)], "exactly one message each")
    br.stop()
    pod.stop()


CASES = {"services": case_services, "reply_listener": case_reply_listener,
         "bridge_restart": case_bridge_restart, "busy": case_busy}

if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="dfc-py-cmd-"))
