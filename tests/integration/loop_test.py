#!/usr/bin/python3
"""End-to-end tests of the datafeed loop: the real dfbridge against the real dfpod on loopback.

Each case (--case NAME, one ctest each: loop_NAME) starts its own dfpod and dfbridge, scripts
faults through dfpod's control interface, and checks the pod's call log (which calls, in which
order, with which bodies), the bridge's exit status and its single "why" error line, and, where
events flow, what a ZeroMQ subscriber received. Waits are bounded and synchronise on signals
(the port file, the pod's "held" gauge, the call log, a probe event received), never on sleeps.
Usage: loop_test.py --dfpod PATH --dfbridge PATH --case NAME
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import dftest  # noqa: E402
from dftest import Pod, Bridge, Sub, check, wait_until as wait_for  # noqa: E402

dftest.WAIT_TIMEOUT = 20.0
BOT = "my-bot"


# A stop must cut a 30 s hold or a 60 s backoff short: exiting within 5 s proves it, with a
# margin an ASan build on a loaded machine does not eat (1 s did).
STOP_BOUND = 5.0


def new_pod(*extra):
    """A dfpod for BOT holding each read 2 s (extra options after: a later --hold-ms wins)."""
    return Pod("--hold-ms", "2000", *extra, username=BOT)


def new_bridge(pod, yaml_extra="", retry="initialIntervalMillis: 50, maxIntervalMillis: 400",
               version="v2", bridge_extra=""):
    """A dfbridge for BOT: datafeed.version and datafeed.retry (flow style) as given, retry with
    3 attempts, yaml_extra after the bridge section."""
    return Bridge(pod, datafeed="datafeed:\n  version: %s\n  retry: {%s}\n" % (version, retry),
                  retry="retry: {maxAttempts: 3, initialIntervalMillis: 50}\n",
                  extra=yaml_extra, bridge_extra=bridge_extra, username=BOT,
                  read_timeout_ms=None, connect_timeout_ms=None)


def stop(b):
    """SIGTERM; returns (exit status, seconds); still running after 5 s is a failure."""
    return b.terminate(timeout=5)


def event(i, typ="MESSAGESENT"):
    return dftest.event(i, typ, prefix="lt", payload={})


def quiet(sub, ms=300):
    """True when no event arrives within ms (used only after the expected ones came)."""
    return sub.take(1, ms / 1000.0) == []


def bodies(calls):
    return [json.loads(c["body"]) if c["body"] else None for c in calls]


# ---- cases -----------------------------------------------------------------------------------

def case_reuse_restart():
    """Feed reuse: the first start creates one feed (body {}) and reads it from ackId "", a
    restart lists and reuses it (no create, no delete); SIGTERM in the (30 s) hold exits 0 at
    once."""
    pod = new_pod("--hold-ms", "30000")
    b = new_bridge(pod)
    pod.wait_held()
    feed = pod.feeds()
    rc, dt = stop(b)
    check(rc == 0 and dt < STOP_BOUND, "SIGTERM during the hold: exit 0 in %.2f s (rc %d)" % (dt, rc))
    wait_for(lambda: pod.calls("read"), "the held read logged")
    eps = [c["endpoint"] for c in pod.calls()]
    check(eps == ["auth", "relay", "sessioninfo", "list", "create", "read"],
          "start: auth, relay, sessioninfo, list, create, read: %r" % eps)
    check(bodies(pod.calls("create")) == [{}], "create body {}")
    first = pod.calls("read")
    check(len(feed) == 1 and first[0]["feed"] == feed[0] and first[0]["ackIdIn"] == "",
          "first read on the new feed with ackId \"\": %r" % first)
    pod.admin("DELETE", "calls")
    b2 = new_bridge(pod)
    pod.wait_held()
    rc, dt = stop(b2)
    check(rc == 0, "second stop exit 0")
    wait_for(lambda: pod.calls("read"), "the held read logged")
    eps = [c["endpoint"] for c in pod.calls()]
    check(eps == ["auth", "relay", "sessioninfo", "list", "read"],
          "restart: list, read; no create, no delete: %r" % eps)
    r2 = pod.calls("read")
    check(pod.feeds() == feed and r2[0]["feed"] == feed[0] and r2[0]["ackIdIn"] == "",
          "restart reads the same feed from ackId \"\": %r" % r2)
    pod.stop()


def case_adopt_after_400():
    """symphony-bdk-java#782: on a 400 the bridge lists again and adopts the feed another
    instance created meanwhile (no delete, no create), with ackId ""; events flow."""
    pod = new_pod()
    b = new_bridge(pod)
    sock = Sub(b)
    pod.wait_held()
    dead = pod.feeds()[0]
    other = pod.admin("POST", "feeds", ok=(201,))["id"]  # "another instance" creates its feed
    pod.admin("DELETE", "calls")
    pod.admin("POST", "expire-feed", {"id": dead})
    wait_for(lambda: pod.calls("list") and pod.counter("held") >= 1, "list, then a held read")
    sock.sync(pod)
    pod.events([event(i) for i in range(5)])
    got = sock.take(5)
    check([e["event"]["id"] for _, e in got] == ["lt-%d" % i for i in range(5)],
          "the 5 events arrive through the adopted feed: %r" % [e["event"]["id"] for _, e in got])
    calls = pod.calls()
    eps = [c["endpoint"] for c in calls]
    check(eps[:3] == ["read", "list", "read"], "400, list, read: %r" % eps)
    check(calls[0]["status"] == 400 and calls[0]["feed"] == dead, "the 400 on the dead feed")
    check("create" not in eps and "delete" not in eps, "no create, no delete: %r" % eps)
    check(all(c["feed"] == other for c in calls[2:] if c["endpoint"] == "read")
          and calls[2]["ackIdIn"] == "", "adopted with ackId \"\": %r" % calls[2:])
    check("adopting datafeed %s" % other in b.text(), "the log says it adopted the feed")
    check(stop(b)[0] == 0, "exit 0")
    pod.stop()


def case_one_create_per_400():
    """A 400 with no other feed: delete the dead one (its 400 ignored), create exactly one.
    Then a 400 whose create answer is lost (truncated body: the pod did create the feed): the
    bridge lists again before any second create and adopts that feed, so the pod counts
    exactly one feed created per 400."""
    pod = new_pod()
    b = new_bridge(pod)
    pod.wait_held()
    dead = pod.feeds()[0]
    created0 = pod.counter("feeds_created")
    pod.admin("DELETE", "calls")
    pod.admin("POST", "expire-feed", {"id": dead})
    wait_for(lambda: pod.calls("create") and pod.counter("held") >= 1, "create, then a hold")
    eps = [c["endpoint"] for c in pod.calls()]
    check(eps == ["read", "list", "delete", "create"], "400, list, delete, create: %r" % eps)
    check(pod.calls("delete")[0]["status"] == 400, "delete of the expired feed: 400, ignored")
    check(pod.counter("feeds_created") == created0 + 1, "exactly one feed created")
    second = pod.feeds()
    check(len(second) == 1 and second[0] != dead, "one live feed, a new one: %r" % second)
    pod.admin("POST", "faults", {"endpoint": "create", "action": "truncate"})
    pod.admin("DELETE", "calls")
    pod.admin("POST", "expire-feed", {"id": second[0]})
    wait_for(lambda: len(pod.calls("list")) >= 2 and pod.counter("held") >= 1,
             "create, list again, then a hold")
    eps = [c["endpoint"] for c in pod.calls()]
    check(eps == ["read", "list", "delete", "create", "list"],
          "400, list, delete, create (truncated), list: %r" % eps)
    check(pod.counter("feeds_created") == created0 + 2, "one feed per 400 despite the lost "
          "answer: %d" % (pod.counter("feeds_created") - created0))
    third = pod.feeds()
    check(len(third) == 1 and third[0] not in (dead, second[0]), "one live feed: %r" % third)
    check(stop(b)[0] == 0, "exit 0")
    wait_for(lambda: pod.calls("read")[-1]["feed"] == third[0], "the held read on the third")
    pod.stop()


def case_create_403():
    """403 on create (the 20-feed limit): one error line that says so, exit 1, one create."""
    pod = new_pod()
    pod.admin("POST", "faults", {"endpoint": "create", "action": "status", "status": 403})
    b = new_bridge(pod)
    rc = b.wait_exit(20)
    check(rc == 1, "exit status 1, got %r" % rc)
    errs = b.errors()
    check(len(errs) == 1 and "create datafeed: HTTP 403" in errs[0]
          and "20 datafeeds already exist for this account: delete unused ones" in errs[0]
          and "exiting (status 1)" in errs[0], "one clear error line: %r" % errs)
    check(len(pod.calls("create")) == 1, "one create call")
    pod.stop()


def case_retries_exhausted():
    """datafeed.retry.maxAttempts 3 and the read fails 3 times (503, truncated, 429): exactly 3
    reads, one line naming the call, the attempts and the last error, exit 3."""
    pod = new_pod()
    pod.admin("POST", "faults", [{"endpoint": "read", "action": "status", "status": 503},
                                 {"endpoint": "read", "action": "truncate"},
                                 {"endpoint": "read", "action": "status", "status": 429},
                                 {"endpoint": "read", "action": "status", "status": 500}])
    b = new_bridge(pod, retry="maxAttempts: 3, initialIntervalMillis: 20, maxIntervalMillis: 50")
    rc = b.wait_exit(20)
    check(rc == 3, "exit status 3, got %r" % rc)
    errs = b.errors()
    check(len(errs) == 1 and "read datafeed: giving up after 3 attempts "
          "(datafeed.retry.maxAttempts), last error HTTP 429" in errs[0]
          and "exiting (status 3)" in errs[0], "one line: %r" % errs)
    check(len(pod.calls("read")) == 3, "3 reads: %d" % len(pod.calls("read")))
    pod.stop()


def case_auth_refused():
    """A 401 on read, then the re-login gets 401: exit 4 with one line; a 401 at start too."""
    pod = new_pod()
    b = new_bridge(pod)
    pod.wait_held()
    pod.admin("POST", "faults", [{"endpoint": "auth", "action": "status", "status": 401}])
    pod.admin("POST", "expire-tokens")
    pod.events([event(1)])  # the held read answers; the next call gets 401
    rc = b.wait_exit(20)
    check(rc == 4, "exit status 4, got %r" % rc)
    errs = b.errors()
    check(len(errs) == 1 and "401" in errs[0], "one line about the 401: %r" % errs)
    auth = pod.calls("auth")
    check(len(auth) == 2 and auth[-1]["status"] == 401, "one re-login, refused")
    pod.admin("POST", "faults", [{"endpoint": "auth", "action": "status", "status": 401}])
    b2 = new_bridge(pod)
    check(b2.wait_exit(20) == 4 and len(b2.errors()) == 1, "401 at start: exit 4, one line")
    pod.stop()


def read_idfile(path):
    with open(path) as f:
        return f.read()


def case_v1_idfile():
    """v1: the id file <id>@<agent URL> in datafeed.idFilePath (a folder), reused after a
    restart, rewritten on recreate; missing, empty or malformed means create; a file path."""
    pod = new_pod()
    d = os.path.join(dftest.CTX.tmp, "ids")
    os.mkdir(d)
    idf = os.path.join(d, "datafeed.id")
    extra = "  idFilePath: %s\n" % d
    agent = "http://127.0.0.1:%d" % pod.port

    def start():
        pod.admin("DELETE", "calls")
        b = new_bridge(pod, version="v1\n" + extra)
        pod.wait_held()
        return b

    b = start()
    creates = pod.calls("v1create")
    check(len(creates) == 1, "missing file: one create")
    text = read_idfile(idf)
    fid = text.split("@")[0]
    check(text == "%s@%s\n" % (fid, agent) and re.fullmatch(r"[0-9a-f]{32}", fid),
          "id file written: %r" % text)
    check(stop(b)[0] == 0, "stop exit 0")
    wait_for(lambda: pod.calls("v1read"), "the held read logged")
    check(all(c["feed"] == fid for c in pod.calls("v1read")), "reads the created feed")
    # Restart: reused, nothing created.
    b = start()
    check(pod.calls("v1create") == [], "restart: no create")
    stop(b)
    wait_for(lambda: pod.calls("v1read"), "the held read logged")
    check(all(c["feed"] == fid for c in pod.calls("v1read")),
          "restart reads the saved id")
    # Recreate on 400: a new feed and the file rewritten.
    b = start()
    pod.admin("POST", "expire-feed", {"id": fid})
    wait_for(lambda: len(pod.calls("v1create")) == 1 and pod.counter("held") >= 1
             and read_idfile(idf).split("@")[0] != fid, "recreate and rewrite")
    fid2 = read_idfile(idf).split("@")[0]
    check(fid2 != fid and read_idfile(idf) == "%s@%s\n" % (fid2, agent), "file rewritten")
    stop(b)
    check(len(pod.calls("v1create")) == 1, "exactly one create for the 400")
    # Missing, empty, malformed: each means create.
    for content in (None, "", "\n", "no-at-sign", "@%s" % agent, "a/b@%s" % agent):
        if content is None:
            os.unlink(idf)
        else:
            with open(idf, "w") as f:
                f.write(content)
        b = start()
        check(len(pod.calls("v1create")) == 1, "file %r: one create" % content)
        stop(b)
        check(re.fullmatch(r"[0-9a-f]{32}@" + re.escape(agent) + "\n", read_idfile(idf)),
              "file %r replaced by a good one" % content)
    # A file path, used as is; no temp file left in the folder.
    custom = os.path.join(d, "custom.id")
    extra = "  idFilePath: %s\n" % custom
    b = start()
    stop(b)
    check(os.path.exists(custom) and len(pod.calls("v1create")) == 1, "file path used as is")
    check(sorted(os.listdir(d)) == ["custom.id", "datafeed.id"], "no temp files: %r"
          % os.listdir(d))
    pod.stop()


def case_datahose():
    """bridge.source datahose: body {type, tag, eventTypes, ackId, updatePresence}, the tag
    defaults to datahose-<username> cut to 80 characters, only the listed types arrive, the
    batch is acknowledged by the next read; a 400 is fatal (exit 1, one line, no retry)."""
    global BOT
    BOT = "u" * 75 + "-long"  # 80 characters: datahose-<it> must be cut to 80
    pod = new_pod()
    b = new_bridge(pod, "datahose:\n  eventTypes: [MESSAGESENT, ROOMCREATED, PROBE]\n"
               "  retry: {initialIntervalMillis: 50}\n",
               bridge_extra="  source: datahose\n")
    sock = Sub(b)
    pod.wait_held()
    want_tag = ("datahose-" + BOT)[:80]
    sock.sync(pod)  # PROBE is listed: the subscription is live once one arrives
    evs = [event(1, "MESSAGESENT"), event(2, "USERJOINEDROOM"), event(3, "ROOMCREATED"),
           event(4, "ROOMUPDATED"), event(5, "MESSAGESENT")]
    pod.events(evs)
    got = sock.take(3)
    body = json.loads(pod.calls("dhread")[0]["body"])
    check(body == {"type": "datahose", "tag": want_tag,
                   "eventTypes": ["MESSAGESENT", "ROOMCREATED", "PROBE"], "ackId": "",
                   "updatePresence": True}, "datahose body: %r" % body)
    check(len(want_tag) == 80, "tag cut to 80")
    check(pod.calls("list") == [] and pod.calls("create") == [], "no list, no create")
    check([(t, e["event"]["id"]) for t, e in got] ==
          [("MESSAGESENT", "lt-1"), ("ROOMCREATED", "lt-3"), ("MESSAGESENT", "lt-5")],
          "only the listed types arrive: %r" % [(t, e["event"]["id"]) for t, e in got])
    check(quiet(sock), "nothing else arrives")
    # The next read (held now) carries the batch's ackId: nothing in flight, all acknowledged.
    wait_for(lambda: (lambda c: c["inflight"] == 0 and c["acked"] == c["served"] and
                      c["served"] >= 3)(pod.admin("GET", "counters")), "the batch acknowledged")
    # A 400 is not recovered.
    n = len(pod.calls("dhread"))
    pod.admin("POST", "faults", {"endpoint": "dhread", "action": "status", "status": 400})
    pod.events([event(6, "MESSAGESENT")])  # wakes the held read; the next one takes the 400
    rc = b.wait_exit(20)
    check(rc == 1, "datahose 400: exit 1, got %r" % rc)
    errs = b.errors()
    check(len(errs) == 1 and "read datahose: HTTP 400" in errs[0], "one line: %r" % errs)
    after = pod.calls("dhread")[n:]
    check([c["status"] for c in after][-1:] == [400] and
          len([c for c in after if c["status"] == 400]) == 1, "one 400, no retry")
    reads = pod.calls("dhread")
    check(all(reads[i + 1]["ackIdIn"] == reads[i]["ackId"] for i in range(len(reads) - 2)),
          "each read acknowledges the previous batch: %r" % reads)
    pod.stop()


def case_stop_in_backoff():
    """SIGTERM during a 60 s backoff wait after a 503, and during a held 30 s datahose read:
    exit 0 at once (within STOP_BOUND); nothing deleted."""
    pod = new_pod()
    pod.admin("POST", "faults", {"endpoint": "read", "action": "status", "status": 503})
    b = new_bridge(pod, retry="initialIntervalMillis: 60000, maxIntervalMillis: 60000")
    wait_for(lambda: pod.calls("read"), "the 503")
    wait_for(lambda: "retrying in 60000 ms" in b.text(), "the backoff wait")
    rc, dt = stop(b)
    check(rc == 0 and dt < STOP_BOUND, "stop in backoff: exit 0 in %.2f s" % dt)
    check(pod.calls("delete") == [], "nothing deleted")
    pod.stop()
    # A held datahose read (the pod holds it 30 s) is cut at once too.
    pod = new_pod("--hold-ms", "30000")
    b = new_bridge(pod, "datahose:\n  eventTypes: [MESSAGESENT]\n",
               bridge_extra="  source: datahose\n")
    pod.wait_held()
    rc, dt = stop(b)
    check(rc == 0 and dt < STOP_BOUND, "stop in a held datahose read: exit 0 in %.2f s" % dt)
    pod.stop()


def case_bad_reply():
    """A glitching proxy (issue 7): a read answered with a header over curl's 100 KB limit, then
    with bytes that are not HTTP, is retried like any transport error (one warning each), never
    the end of the bridge; the 10 events enqueued after arrive exactly once, in order, and the
    batch is acknowledged by the next read. The login gets the same treatment."""
    pod = new_pod()
    pod.admin("POST", "faults", {"endpoint": "auth", "action": "not_http"})
    b = new_bridge(pod)
    sock = Sub(b)
    pod.wait_held()
    sock.sync(pod)
    auth = [(c["status"], c.get("fault")) for c in pod.calls("auth")]
    check(auth == [(0, "not_http"), (200, None)], "the login retried after a reply that is not "
          "HTTP: %r" % auth)
    pod.admin("DELETE", "calls")
    pod.admin("POST", "faults", [{"endpoint": "read", "action": "huge_header"},
                                 {"endpoint": "read", "action": "not_http"}])
    # The held read ends (2 s hold); the next two reads take the faults, the third is held.
    wait_for(lambda: not b.running() or
             ([c.get("fault") for c in pod.calls("read")][-2:] == ["huge_header", "not_http"]
              and pod.counter("held") >= 1), "two faulted reads, then a held read")
    if not b.running():
        raise dftest.Failure("the bridge ended on a bad reply: %r" % b.errors())
    pod.events([event(i) for i in range(10)])
    got = sock.take(10)
    ids = [e["event"]["id"] for _, e in got]
    check(ids == ["lt-%d" % i for i in range(10)], "the 10 events, in order: %r" % ids)
    check(quiet(sock), "nothing else arrives (no duplicate)")
    wait_for(lambda: (lambda c: c["inflight"] == 0 and c["pending"] == 0)(pod.counters()),
             "every batch acknowledged")
    log = b.text()
    check("read datafeed: malformed HTTP reply (Out of memory: a response header over curl's "
          "limit)" in log, "one warning names the oversized header")
    check("read datafeed: malformed HTTP reply (Received HTTP/0.9 when not allowed)" in log,
          "one warning names the reply that is not HTTP")
    check(b.errors() == [], "no error line: %r" % b.errors())
    check(stop(b)[0] == 0, "exit 0")
    pod.stop()


def case_ackid_nul():
    """An ackId holding U+0000 (issue 7) goes back byte for byte: the pod hands out
    "Qk3\\u0000tail-1" for the batch of 3 events (or its first part), the next read carries exactly those bytes and
    acknowledges the batch (nothing in flight, nothing redelivered, no 400)."""
    pod = new_pod()
    b = new_bridge(pod)
    sock = Sub(b)
    pod.wait_held()
    sock.sync(pod)
    wait_for(lambda: pod.counter("inflight") == 0 and pod.counter("held") >= 1,
             "the probe's batch acknowledged, a read held")
    ack = "Qk3\x00tail-1"
    pod.admin("POST", "next-ackid", {"ackId": ack})
    pod.admin("DELETE", "calls")
    pod.events([event(i) for i in range(3)])
    got = sock.take(3)
    check([e["event"]["id"] for _, e in got] == ["lt-0", "lt-1", "lt-2"], "the 3 events")
    wait_for(lambda: len(pod.calls("read")) >= 2, "the read after the batch")
    reads = pod.calls("read")
    # The held read may answer with the first event alone: the forced ackId names that batch.
    check(reads[0]["ackId"] == ack and reads[0]["events"] >= 1,
          "the batch went out under the NUL ackId: %r" % reads[0])
    check(reads[1]["ackIdIn"] == ack and reads[1]["status"] in (0, 200),
          "the next read sends the exact bytes back: %r" % reads[1].get("ackIdIn"))
    c = pod.counters()
    check(c["inflight"] == 0 and c["pending"] == 0 and c["redelivered"] == 0
          and c["status"].get("400", 0) == 0,
          "acknowledged, not redelivered, no 400: %r" % c)
    check(quiet(sock), "nothing else arrives")
    check(stop(b)[0] == 0, "exit 0")
    pod.stop()


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}


if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="loop-test-"))
