#!/usr/bin/python3
"""End-to-end tests of the datafeed loop: the real dfbridge against the real dfpod on loopback.

Each case (--case NAME, one ctest each: loop_NAME) starts its own dfpod and dfbridge, scripts
faults through dfpod's control interface, and checks the pod's call log (which calls, in which
order, with which bodies), the bridge's exit status and its single "why" error line, and, where
events flow, what a ZeroMQ subscriber received. Waits are bounded and synchronise on signals
(the port file, the pod's "held" gauge, the call log, a probe event received), never on sleeps.
Usage: loop_test.py --dfpod PATH --dfbridge PATH --case NAME
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

DFPOD = DFBRIDGE = TMP = None
FAILS = []
PASSES = 0
PROCS = []
BOT = "my-bot"


def check(cond, what):
    global PASSES
    if cond:
        PASSES += 1
    else:
        FAILS.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def wait_for(pred, what, timeout=20.0):
    """Polls pred (a pod counter, the call log, a file, a process) until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    check(False, "timed out waiting for " + what)
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Pod:
    def __init__(self, *extra):
        self.port_file = tempfile.mktemp(dir=TMP, suffix=".port")
        self.log = open(os.path.join(TMP, "dfpod.log"), "ab")
        self.proc = subprocess.Popen(
            [DFPOD, "--public-key", PUB, "--listen", "127.0.0.1:0", "--port-file",
             self.port_file, "--bot-username", BOT, "--hold-ms", "2000", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log)
        PROCS.append(self.proc)
        wait_for(lambda: os.path.exists(self.port_file) or self.proc.poll() is not None,
                 "dfpod port file", 10)
        with open(self.port_file) as f:
            self.port = int(f.read())

    def req(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = json.dumps(body) if isinstance(body, (dict, list)) else body
            c.request(method, path, body=data,
                      headers={"Content-Type": "application/json"} if data else {})
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            c.close()

    def admin(self, method, path, body=None):
        st, data = self.req(method, "/admin/" + path, body)
        if st not in (200, 201):
            raise RuntimeError("admin %s %s -> %d %r" % (method, path, st, data))
        return data

    def calls(self, endpoint=None):
        return [c for c in self.admin("GET", "calls")
                if endpoint is None or c["endpoint"] == endpoint]

    def counter(self, name):
        return self.admin("GET", "counters")[name]

    def feeds(self):
        return [f["id"] for f in self.admin("GET", "feeds")]

    def wait_held(self, n=1, timeout=20):
        return wait_for(lambda: self.counter("held") >= n, "a held read", timeout)

    def events(self, evs):
        return self.admin("POST", "events", evs)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Bridge:
    def __init__(self, pod, yaml_extra="", retry="initialIntervalMillis: 50, maxIntervalMillis: 400",
                 version="v2", name="bridge", bridge_extra=""):
        self.pub_port = free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % self.pub_port
        self.cfg = os.path.join(TMP, name + ".yaml")
        self.log_path = os.path.join(TMP, name + ".log")
        with open(self.cfg, "w") as f:
            f.write("scheme: http\nhost: 127.0.0.1\nport: %d\n"
                    "bot:\n  username: %s\n  privateKey:\n    path: %s\n"
                    "datafeed:\n  version: %s\n  retry: {%s}\n"
                    "retry: {maxAttempts: 3, initialIntervalMillis: 50}\n"
                    "bridge:\n  publish: %s\n  logLevel: debug\n%s%s"
                    % (pod.port, BOT, PRIV, version, retry, self.endpoint, bridge_extra,
                       yaml_extra))
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DFBRIDGE, "--config", self.cfg],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        PROCS.append(self.proc)

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            check(False, "dfbridge did not exit within %d s" % timeout)
            self.proc.kill()
            return self.proc.wait()

    def stop(self, timeout=5):
        """SIGTERM; returns (exit status, seconds)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        return rc, time.monotonic() - t0

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def errors(self):
        return [l for l in self.text().splitlines() if re.match(r"\S+Z error ", l)]


def sub_socket(bridge):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.setsockopt(zmq.RCVTIMEO, 20000)
    s.connect(bridge.endpoint)
    return s


def event(i, typ="MESSAGESENT"):
    return {"id": "lt-%d" % i, "timestamp": 1700000000000 + i, "type": typ,
            "initiator": {"user": {"userId": 68719476737}}, "payload": {}}


def sync(pod, sock, timeout=20):
    """Enqueues probe events until one reaches the subscriber: the subscription is live."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        pod.events([event(900000 + n, "PROBE")])
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if poller.poll(500):
            while poller.poll(200):
                topic, body = sock.recv_multipart()
            return True
    return check(False, "probe event received")


def receive(sock, n, timeout=20):
    """Receives n messages; returns [(topic, envelope)]."""
    out = []
    deadline = time.monotonic() + timeout
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while len(out) < n and time.monotonic() < deadline:
        if poller.poll(200):
            topic, body = sock.recv_multipart()
            # PROBE: sync's extra probes; "_..." topics are reserved (heartbeats).
            if topic != b"PROBE" and not topic.startswith(b"_"):
                out.append((topic.decode(), msgpack.unpackb(body, raw=False)))
    return out


def quiet(sock, ms=300):
    """True when no event arrives within ms (used only after the expected ones came)."""
    return receive(sock, 1, ms / 1000.0) == []


def bodies(calls):
    return [json.loads(c["body"]) if c["body"] else None for c in calls]


# ---- cases -----------------------------------------------------------------------------------

def case_reuse_restart():
    """Feed reuse: the first start creates one feed (body {}) and reads it from ackId "", a
    restart lists and reuses it (no create, no delete); SIGTERM in the hold exits 0 at once."""
    pod = Pod()
    b = Bridge(pod)
    pod.wait_held()
    feed = pod.feeds()
    rc, dt = b.stop()
    check(rc == 0 and dt < 1.0, "SIGTERM during the hold: exit 0 in %.2f s (rc %d)" % (dt, rc))
    wait_for(lambda: pod.calls("read"), "the held read logged")
    eps = [c["endpoint"] for c in pod.calls()]
    check(eps == ["auth", "relay", "sessioninfo", "list", "create", "read"],
          "start: auth, relay, sessioninfo, list, create, read: %r" % eps)
    check(bodies(pod.calls("create")) == [{}], "create body {}")
    first = pod.calls("read")
    check(len(feed) == 1 and first[0]["feed"] == feed[0] and first[0]["ackIdIn"] == "",
          "first read on the new feed with ackId \"\": %r" % first)
    pod.admin("DELETE", "calls")
    b2 = Bridge(pod, name="bridge2")
    pod.wait_held()
    rc, dt = b2.stop()
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
    pod = Pod()
    b = Bridge(pod)
    sock = sub_socket(b)
    pod.wait_held()
    dead = pod.feeds()[0]
    other = pod.admin("POST", "feeds")["id"]  # "another instance" creates its feed
    pod.admin("DELETE", "calls")
    pod.admin("POST", "expire-feed", {"id": dead})
    wait_for(lambda: pod.calls("list") and pod.counter("held") >= 1, "list, then a held read")
    sync(pod, sock)
    pod.events([event(i) for i in range(5)])
    got = receive(sock, 5)
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
    check(b.stop()[0] == 0, "exit 0")
    pod.stop()


def case_one_create_per_400():
    """A 400 with no other feed: delete the dead one (its 400 ignored), create exactly one.
    Then a 400 whose create answer is lost (truncated body: the pod did create the feed): the
    bridge lists again before any second create and adopts that feed, so the pod counts
    exactly one feed created per 400."""
    pod = Pod()
    b = Bridge(pod)
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
    check(b.stop()[0] == 0, "exit 0")
    wait_for(lambda: pod.calls("read")[-1]["feed"] == third[0], "the held read on the third")
    pod.stop()


def case_create_403():
    """403 on create (the 20-feed limit): one error line that says so, exit 1, one create."""
    pod = Pod()
    pod.admin("POST", "faults", {"endpoint": "create", "action": "status", "status": 403})
    b = Bridge(pod)
    rc = b.wait_exit()
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
    pod = Pod()
    pod.admin("POST", "faults", [{"endpoint": "read", "action": "status", "status": 503},
                                 {"endpoint": "read", "action": "truncate"},
                                 {"endpoint": "read", "action": "status", "status": 429},
                                 {"endpoint": "read", "action": "status", "status": 500}])
    b = Bridge(pod, retry="maxAttempts: 3, initialIntervalMillis: 20, maxIntervalMillis: 50")
    rc = b.wait_exit()
    check(rc == 3, "exit status 3, got %r" % rc)
    errs = b.errors()
    check(len(errs) == 1 and "read datafeed: giving up after 3 attempts "
          "(datafeed.retry.maxAttempts), last error HTTP 429" in errs[0]
          and "exiting (status 3)" in errs[0], "one line: %r" % errs)
    check(len(pod.calls("read")) == 3, "3 reads: %d" % len(pod.calls("read")))
    pod.stop()


def case_auth_refused():
    """A 401 on read, then the re-login gets 401: exit 4 with one line; a 401 at start too."""
    pod = Pod()
    b = Bridge(pod)
    pod.wait_held()
    pod.admin("POST", "faults", [{"endpoint": "auth", "action": "status", "status": 401}])
    pod.admin("POST", "expire-tokens")
    pod.events([event(1)])  # the held read answers; the next call gets 401
    rc = b.wait_exit()
    check(rc == 4, "exit status 4, got %r" % rc)
    errs = b.errors()
    check(len(errs) == 1 and "401" in errs[0], "one line about the 401: %r" % errs)
    auth = pod.calls("auth")
    check(len(auth) == 2 and auth[-1]["status"] == 401, "one re-login, refused")
    pod.admin("POST", "faults", [{"endpoint": "auth", "action": "status", "status": 401}])
    b2 = Bridge(pod, name="bridge2")
    check(b2.wait_exit() == 4 and len(b2.errors()) == 1, "401 at start: exit 4, one line")
    pod.stop()


def read_idfile(path):
    with open(path) as f:
        return f.read()


def case_v1_idfile():
    """v1: the id file <id>@<agent URL> in datafeed.idFilePath (a folder), reused after a
    restart, rewritten on recreate; missing, empty or malformed means create; a file path."""
    pod = Pod()
    d = os.path.join(TMP, "ids")
    os.mkdir(d)
    idf = os.path.join(d, "datafeed.id")
    extra = "  idFilePath: %s\n" % d
    agent = "http://127.0.0.1:%d" % pod.port

    def start(name):
        pod.admin("DELETE", "calls")
        b = Bridge(pod, version="v1\n" + extra, name=name)
        pod.wait_held()
        return b

    b = start("v1a")
    creates = pod.calls("v1create")
    check(len(creates) == 1, "missing file: one create")
    text = read_idfile(idf)
    fid = text.split("@")[0]
    check(text == "%s@%s\n" % (fid, agent) and re.fullmatch(r"[0-9a-f]{32}", fid),
          "id file written: %r" % text)
    check(b.stop()[0] == 0, "stop exit 0")
    wait_for(lambda: pod.calls("v1read"), "the held read logged")
    check(all(c["feed"] == fid for c in pod.calls("v1read")), "reads the created feed")
    # Restart: reused, nothing created.
    b = start("v1b")
    check(pod.calls("v1create") == [], "restart: no create")
    b.stop()
    wait_for(lambda: pod.calls("v1read"), "the held read logged")
    check(all(c["feed"] == fid for c in pod.calls("v1read")),
          "restart reads the saved id")
    # Recreate on 400: a new feed and the file rewritten.
    b = start("v1c")
    pod.admin("POST", "expire-feed", {"id": fid})
    wait_for(lambda: len(pod.calls("v1create")) == 1 and pod.counter("held") >= 1
             and read_idfile(idf).split("@")[0] != fid, "recreate and rewrite")
    fid2 = read_idfile(idf).split("@")[0]
    check(fid2 != fid and read_idfile(idf) == "%s@%s\n" % (fid2, agent), "file rewritten")
    b.stop()
    check(len(pod.calls("v1create")) == 1, "exactly one create for the 400")
    # Missing, empty, malformed: each means create.
    for content in (None, "", "\n", "no-at-sign", "@%s" % agent, "a/b@%s" % agent):
        if content is None:
            os.unlink(idf)
        else:
            with open(idf, "w") as f:
                f.write(content)
        b = start("v1x")
        check(len(pod.calls("v1create")) == 1, "file %r: one create" % content)
        b.stop()
        check(re.fullmatch(r"[0-9a-f]{32}@" + re.escape(agent) + "\n", read_idfile(idf)),
              "file %r replaced by a good one" % content)
    # A file path, used as is; no temp file left in the folder.
    custom = os.path.join(d, "custom.id")
    extra = "  idFilePath: %s\n" % custom
    b = start("v1y")
    b.stop()
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
    pod = Pod()
    b = Bridge(pod, "datahose:\n  eventTypes: [MESSAGESENT, ROOMCREATED, PROBE]\n"
               "  retry: {initialIntervalMillis: 50}\n", name="dh",
               bridge_extra="  source: datahose\n")
    sock = sub_socket(b)
    pod.wait_held()
    want_tag = ("datahose-" + BOT)[:80]
    sync(pod, sock)  # PROBE is listed: the subscription is live once one arrives
    evs = [event(1, "MESSAGESENT"), event(2, "USERJOINEDROOM"), event(3, "ROOMCREATED"),
           event(4, "ROOMUPDATED"), event(5, "MESSAGESENT")]
    pod.events(evs)
    got = receive(sock, 3)
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
    rc = b.wait_exit()
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
    exit 0 within 1 s; nothing deleted."""
    pod = Pod()
    pod.admin("POST", "faults", {"endpoint": "read", "action": "status", "status": 503})
    b = Bridge(pod, retry="initialIntervalMillis: 60000, maxIntervalMillis: 60000")
    wait_for(lambda: pod.calls("read"), "the 503")
    wait_for(lambda: "retrying in 60000 ms" in b.text(), "the backoff wait")
    rc, dt = b.stop()
    check(rc == 0 and dt < 1.0, "stop in backoff: exit 0 in %.2f s" % dt)
    check(pod.calls("delete") == [], "nothing deleted")
    pod.stop()
    # A held datahose read (the pod holds it 30 s) is cut at once too.
    pod = Pod("--hold-ms", "30000")
    b = Bridge(pod, "datahose:\n  eventTypes: [MESSAGESENT]\n", name="dh",
               bridge_extra="  source: datahose\n")
    pod.wait_held()
    rc, dt = b.stop()
    check(rc == 0 and dt < 1.0, "stop in a held datahose read: exit 0 in %.2f s" % dt)
    pod.stop()


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}


def main():
    global DFPOD, DFBRIDGE, TMP, PRIV, PUB
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--dfbridge", required=True)
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    a = ap.parse_args()
    DFPOD, DFBRIDGE = a.dfpod, a.dfbridge
    with tempfile.TemporaryDirectory(prefix="loop-test-") as tmp:
        TMP = tmp
        PRIV, PUB = os.path.join(tmp, "bot.pem"), os.path.join(tmp, "bot.pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", PRIV], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", PRIV, "-pubout", "-out", PUB], check=True,
                       capture_output=True)
        try:
            CASES[a.case]()
        except Exception as e:  # a crash is a failure with its reason, then the logs
            check(False, "exception: %r" % e)
            raise
        finally:
            for p in PROCS:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if FAILS:
                for name in sorted(os.listdir(tmp)):
                    if name.endswith(".log"):
                        with open(os.path.join(tmp, name), errors="replace") as f:
                            text = f.read()
                        sys.stdout.write("---- %s (last 4000 chars)\n%s\n" % (name, text[-4000:]))
            else:
                # Sanitizer reports fail a test even when it passed otherwise.
                for name in sorted(os.listdir(tmp)):
                    if name.endswith(".log"):
                        with open(os.path.join(tmp, name), errors="replace") as f:
                            text = f.read()
                        check("Sanitizer" not in text and "runtime error" not in text,
                              "no sanitizer report in " + name)
    print("%s: %d passed, %d failed" % (a.case, PASSES, len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
