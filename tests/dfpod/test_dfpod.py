#!/usr/bin/python3
"""Tests of dfpod, the fake Symphony pod, from the client side.

Each group starts real dfpod processes on 127.0.0.1:0 (port read from --port-file), makes
RSA keys and RS512 JWTs with the openssl command line, and checks statuses, bodies (byte for
byte where the contract says so), timings, counters and the call log. Standard library only.
Usage: test_dfpod.py --dfpod PATH --group NAME
"""
import argparse
import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DFPOD = None
TMP = None
BOT_ID = 68719476738
FAILS = []
PASSES = 0
PODS = []  # every dfpod started, killed at the end if a test died half-way


def check(cond, what):
    global PASSES
    if cond:
        PASSES += 1
    else:
        FAILS.append(what)
        print("FAIL: " + what, flush=True)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def openssl(*args, inp=None):
    return subprocess.run(["openssl", *args], input=inp, capture_output=True, check=True,
                          timeout=60).stdout


def make_keys(name):
    priv = os.path.join(TMP, name + ".pem")
    pub = os.path.join(TMP, name + ".pub.pem")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", priv)
    openssl("pkey", "-in", priv, "-pubout", "-out", pub)
    return priv, pub


def make_jwt(priv, sub="my-bot", exp_in=240, alg="RS512", exp=None):
    hdr = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = {"sub": sub, "exp": int(time.time()) + exp_in if exp is None else exp}
    pay = b64url(json.dumps(claims).encode())
    signing = (hdr + "." + pay).encode()
    sig = openssl("dgst", "-sha512", "-sign", priv, inp=signing)
    return hdr + "." + pay + "." + b64url(sig)


class Pod:
    """A dfpod process on 127.0.0.1:0."""

    def __init__(self, pub, *extra, listen="127.0.0.1:0"):
        self.port_file = tempfile.mktemp(dir=TMP, suffix=".port")
        self.host = "127.0.0.1" if not listen.startswith("[") else "::1"
        wrap = os.environ.get("DFPOD_WRAP", "").split()
        self.proc = subprocess.Popen(
            wrap + [DFPOD, "--public-key", pub, "--listen", listen, "--port-file", self.port_file,
             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        PODS.append(self.proc)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dfpod did not start: " + self.proc.stderr.read().decode())
            time.sleep(0.02)  # polling a file: no signal exists for "file written"
        with open(self.port_file) as f:
            text = f.read()
        check(re.fullmatch(r"[0-9]+\n", text) is not None, "port file is digits and newline")
        self.port = int(text)

    def req(self, method, path, body=None, headers=None, timeout=30):
        """Returns (status, body bytes, headers dict); raises on connection errors."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
            h = {"Content-Type": "application/json"} if body is not None else {}
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, data, {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None, timeout=30):
        st, data, _ = self.req(method, path, body, headers, timeout)
        return st, (json.loads(data) if data else None)

    def admin(self, method, path, body=None):
        st, data = self.json(method, "/admin/" + path, body)
        if st != 200:
            raise RuntimeError("admin %s %s -> %d %r" % (method, path, st, data))
        return data

    def counters(self):
        return self.admin("GET", "counters")

    def calls(self):
        return self.admin("GET", "calls")

    def stop(self, sig=signal.SIGTERM):
        """Stops dfpod; returns (exit code, seconds it took)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        dt = time.monotonic() - t0
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        check("Sanitizer" not in err and "runtime error" not in err,
              "no sanitizer report from dfpod: " + err[-2000:])
        return rc, dt


def login(pod, priv):
    st, body = pod.json("POST", "/login/pubkey/authenticate", {"token": make_jwt(priv)})
    assert st == 200, (st, body)
    return {"sessionToken": body["token"]}


def create_feed(pod, h, body=None):
    st, b = pod.json("POST", "/agent/v5/datafeeds", body if body is not None else {}, h)
    assert st == 201, (st, b)
    return b["id"]


def read(pod, h, feed, ack="", timeout=30):
    st, data, _ = pod.req("POST", "/agent/v5/datafeeds/%s/read" % feed,
                          {"ackId": ack, "updatePresence": True}, h, timeout)
    return st, data


def event(i, extra=""):
    # Raw text with spacing, escapes and a 64-bit id: must come back byte for byte.
    return ('{ "id" : "ev-%d", "timestamp": %d, "type":"MESSAGESENT", "initiator":'
            '{"user":{"userId":68719476737}}, "payload":{"messageSent":{"message":'
            '{"message":"<p>caf\\u00e9 \\"%d\\" \u2603%s</p>"}}} }' % (i, 1700000000000 + i, i, extra))


def wait_for(pred, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    check(False, "timed out waiting for " + what)
    return False


# ---------------------------------------------------------------------------------------
def group_jwt(priv, pub):
    other_priv, _ = make_keys("other")
    pod = Pod(pub)
    ok = make_jwt(priv)
    st, b = pod.json("POST", "/login/pubkey/authenticate", {"token": ok})
    check(st == 200 and b["name"] == "sessionToken" and re.fullmatch("[0-9a-f]{32}", b["token"]),
          "login with a valid JWT gives a 32-hex sessionToken")
    st, b2 = pod.json("POST", "/relay/pubkey/authenticate", {"token": ok})
    check(st == 200 and b2["name"] == "keyManagerToken" and b2["token"] != b["token"],
          "relay gives a distinct keyManagerToken")
    st, _ = pod.json("POST", "/login/pubkey/authenticate",
                     {"token": make_jwt(priv, exp_in=290)})
    check(st == 200, "exp 290 s ahead is accepted")
    bad = [
        ("bad signature", make_jwt(other_priv), "signature"),
        ("wrong sub", make_jwt(priv, sub="someone-else"), "sub"),
        ("exp in the past", make_jwt(priv, exp_in=-5), "expired"),
        ("exp > 5 min ahead", make_jwt(priv, exp_in=400), "5 minutes"),
        ("alg HS512", make_jwt(priv, alg="HS512"), "RS512"),
        ("alg none", make_jwt(priv, alg="none"), "RS512"),
        ("garbage", "not-a-jwt", "JWS"),
        ("garbage parts", "a.b.c", ""),
        ("tampered claims", ok.split(".")[0] + "." + b64url(
            json.dumps({"sub": "my-bot", "exp": int(time.time()) + 100}).encode()) + "."
         + ok.split(".")[2], "signature"),
    ]
    for what, tok, word in bad:
        st, b = pod.json("POST", "/login/pubkey/authenticate", {"token": tok})
        check(st == 401 and b["code"] == 401 and word in b["message"],
              "JWT rejected (%s): got %d %r" % (what, st, b))
    st, b = pod.json("POST", "/relay/pubkey/authenticate", {"token": make_jwt(other_priv)})
    check(st == 401, "relay rejects a bad signature too")
    st, b = pod.json("POST", "/login/pubkey/authenticate", {})
    check(st == 401, "login without token is 401")
    st, data, _ = pod.req("POST", "/login/pubkey/authenticate", "{not json")
    check(st == 400 and json.loads(data)["code"] == 400, "malformed login body is 400 V2Error")
    c = pod.counters()
    check(c["auth_ok"] == 3 and c["auth_failed"] == 11,
          "auth counters exact (ok 3, failed 11): %r" % ((c["auth_ok"], c["auth_failed"]),))
    check(pod.stop()[0] == 0, "clean exit")

    # A PKCS#1 ("RSA PUBLIC KEY") file is accepted as well as SPKI.
    pkcs1 = os.path.join(TMP, "pkcs1.pem")
    openssl("rsa", "-in", priv, "-RSAPublicKey_out", "-out", pkcs1)
    with open(pkcs1) as f:
        check("BEGIN RSA PUBLIC KEY" in f.read(), "openssl wrote a PKCS#1 key")
    pod = Pod(pkcs1, "--bot-username", "other.bot")
    st, _ = pod.json("POST", "/login/pubkey/authenticate", {"token": make_jwt(priv, sub="other.bot")})
    check(st == 200, "PKCS#1 public key and --bot-username work")
    st, _ = pod.json("POST", "/login/pubkey/authenticate", {"token": make_jwt(priv)})
    check(st == 401, "sub must match --bot-username")
    check(pod.stop()[0] == 0, "clean exit")


def group_feeds(priv, pub):
    pod = Pod(pub, "--max-feeds", "3", "--hold-ms", "400", "--bot-id", "349026222344891")
    # Tokens required everywhere but login/relay.
    for m, p in [("GET", "/pod/v2/sessioninfo"), ("GET", "/agent/v5/datafeeds"),
                 ("POST", "/agent/v5/datafeeds"), ("POST", "/agent/v5/datafeeds/x_f/read"),
                 ("DELETE", "/agent/v5/datafeeds/x_f"), ("POST", "/agent/v4/datafeed/create"),
                 ("GET", "/agent/v4/datafeed/x/read")]:
        st, b = pod.json(m, p, headers={})
        check(st == 401 and b == {"code": 401, "message": "Invalid session"},
              "%s %s without token -> 401 V2Error" % (m, p))
        st, _ = pod.json(m, p, headers={"sessionToken": "0" * 32})
        check(st == 401, "%s %s with an unknown token -> 401" % (m, p))
    h = login(pod, priv)
    st, km = pod.json("POST", "/relay/pubkey/authenticate", {"token": make_jwt(priv)})
    st, info = pod.json("GET", "/pod/v2/sessioninfo", headers=h)
    check(st == 200 and info["id"] == 349026222344891 and info["username"] == "my-bot"
          and "emailAddress" in info and "displayName" in info, "sessioninfo UserV2: %r" % info)
    st, _ = pod.json("GET", "/pod/v2/sessioninfo", headers=dict(h, keyManagerToken=""))
    check(st == 200, "empty keyManagerToken accepted")
    st, _ = pod.json("GET", "/pod/v2/sessioninfo", headers=dict(h, keyManagerToken=km["token"]))
    check(st == 200, "valid keyManagerToken accepted")
    st, _ = pod.json("GET", "/pod/v2/sessioninfo", headers=dict(h, keyManagerToken="f" * 32))
    check(st == 401, "stale keyManagerToken -> 401")
    st, _ = pod.json("GET", "/pod/v2/sessioninfo", headers={"sessionToken": km["token"]})
    check(st == 401, "a KM token is not a session token")

    st, lst = pod.json("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 200 and lst == [], "no feeds at first")
    ids = []
    for body in ({}, {"tag": None}, {"tag": "my-tag", "includeInvisible": True}):
        st, b = pod.json("POST", "/agent/v5/datafeeds", body, h)
        check(st == 201 and re.fullmatch("[0-9a-f]{32}_f", b["id"]) and b["type"] == "fanout",
              "create %r -> 201 fanout id: %r" % (body, b))
        ids.append(b["id"])
    st, b = pod.json("POST", "/agent/v5/datafeeds", {}, h)
    check(st == 403 and b["code"] == 403, "create beyond --max-feeds -> 403")
    st, lst = pod.json("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 200 and [f["id"] for f in lst] == ids
          and all(f["type"] == "fanout" and isinstance(f["createdAt"], int) for f in lst),
          "list returns the 3 feeds in creation order: %r" % lst)
    st, data, _ = pod.req("DELETE", "/agent/v5/datafeeds/" + ids[1], headers=h)
    check(st == 204 and data == b"", "delete -> 204 no body")
    st, _ = pod.json("DELETE", "/agent/v5/datafeeds/" + ids[1], headers=h)
    check(st == 400, "delete again -> 400")
    st, _ = pod.json("DELETE", "/agent/v5/datafeeds/ffff_f", headers=h)
    check(st == 400, "delete unknown -> 400")
    st, _ = read(pod, h, ids[1])
    check(st == 400, "read a deleted feed -> 400")
    st, lst = pod.json("GET", "/agent/v5/datafeeds", headers=h)
    check([f["id"] for f in lst] == [ids[0], ids[2]], "list after delete")
    st, b = pod.json("POST", "/agent/v5/datafeeds", {}, h)
    check(st == 201, "create again after a delete")
    st, b = pod.json("POST", "/agent/v5/datafeeds", "[1,2", h)
    check(st == 400 and b["code"] == 400, "malformed create body -> 400")
    st, b = pod.json("POST", "/agent/v5/datafeeds", {"tag": "x" * 101}, h)
    check(st == 400, "tag over 100 chars -> 400")

    # v1
    st, data, hd = pod.req("POST", "/agent/v4/datafeed/create", headers=h)
    v1 = json.loads(data)["id"]
    check(st == 200 and re.fullmatch("[0-9a-f]{32}", v1) and "x-warning" in hd,
          "v1 create -> 200 {id} with X-Warning")
    t0 = time.monotonic()
    st, data, _ = pod.req("GET", "/agent/v4/datafeed/%s/read" % v1, headers=h)
    dt = time.monotonic() - t0
    check(st == 204 and data == b"" and 0.35 <= dt < 1.5, "idle v1 read -> 204 after the hold (%.2fs)" % dt)
    raws = [event(1), event(2)]
    pod.admin("POST", "events", "[" + ",".join(raws) + "]")
    st, data, _ = pod.req("GET", "/agent/v4/datafeed/%s/read" % v1, headers=h)
    check(st == 200 and data.decode() == "[" + ",".join(raws) + "]", "v1 read returns raw events")
    st, data, _ = pod.req("GET", "/agent/v4/datafeed/%s/read" % v1, headers=h)
    check(st == 204, "v1 has no ack: events were removed at once")
    st, _ = pod.json("GET", "/agent/v4/datafeed/deadbeef/read", headers=h)
    check(st == 400, "unknown v1 feed -> 400")
    st, _ = pod.json("GET", "/agent/v4/datafeed/%s/read" % ids[0], headers=h)
    check(st == 400, "a v2 feed is not readable as v1")
    st, _ = pod.json("GET", "/nope", headers=h)
    check(st == 404, "unknown path -> 404")
    check(pod.stop()[0] == 0, "clean exit")


def group_read(priv, pub):
    pod = Pod(pub, "--hold-ms", "600", "--visibility-ms", "800", "--batch-max", "3")
    h = login(pod, priv)
    # Backlog: events enqueued with no feed go to the first feed created.
    pod.admin("POST", "events", "[" + event(100) + "]")
    f = create_feed(pod, h)
    st, data = read(pod, h, f)
    body = data.decode()
    m = re.fullmatch(r'\{"events":\[(.*)\],"ackId":"([^"]+)"\}', body, re.S)
    check(st == 200 and m and m.group(1) == event(100), "backlog reaches the first feed")
    ack0 = m.group(2) if m else ""
    # Idle read: held, then an empty answer with an ackId (acking the backlog batch).
    t0 = time.monotonic()
    st, data = read(pod, h, f, ack0)
    dt = time.monotonic() - t0
    b = json.loads(data)
    check(st == 200 and b["events"] == [] and b["ackId"] and 0.55 <= dt < 1.6,
          "idle read held %.2fs then {events:[],ackId}" % dt)
    check(pod.counters()["acked"] == 1, "ack of the backlog batch counted")

    # Byte-for-byte: the response is the concatenation of the raw texts.
    raws = [event(1, " 🚀"), event(2, "\\n\\t\\\\"), event(3)]
    check(pod.admin("POST", "events", "[ " + " ,\n".join(raws) + " ]") == {"enqueued": 3},
          "enqueue 3 events")
    st, data = read(pod, h, f)
    body = data.decode()
    ack1 = json.loads(body)["ackId"]
    check(body == '{"events":[' + ",".join(raws) + '],"ackId":"' + ack1 + '"}',
          "read returns the enqueued bytes exactly")
    # Ack removes: next read with the ackId holds and comes back empty.
    st, data = read(pod, h, f, ack1)
    check(json.loads(data)["events"] == [], "acked batch is gone")
    c = pod.counters()
    check(c["acked"] == 4 and c["pending"] == 0 and c["served"] == 4 and c["redelivered"] == 0,
          "counters after acks: %r" % c)

    # A read held while events arrive answers at once. On a pod holding reads 10 s, an answer
    # carrying the event within 5 s of its arrival can only be the wake-up (a margin no loaded
    # machine eats, unlike a bound just under this pod's 600 ms hold).
    long_pod = Pod(pub, "--hold-ms", "10000")
    lh = login(long_pod, priv)
    lf = create_feed(long_pod, lh)
    res = {}

    def held():
        res["st"], res["data"] = read(long_pod, lh, lf)
        res["end"] = time.monotonic()
    th = threading.Thread(target=held)
    th.start()
    wait_for(lambda: long_pod.counters()["reads_held"] == 1, "the read to be held")
    t_post = time.monotonic()
    long_pod.admin("POST", "events", "[" + event(4) + "]")
    th.join(10)
    dt = res.get("end", t_post + 99) - t_post
    check(res.get("st") == 200 and json.loads(res["data"])["events"][0]["id"] == "ev-4"
          and dt < 5.0, "held read answers when an event arrives (%.2fs after it, hold 10 s)" % dt)
    # The events of one POST /admin/events arrive at once: a held read gets all of them (here
    # --batch-max, 100), never only the first few (hostile_batch_stop needs one batch).
    ack = json.loads(res["data"])["ackId"] if res.get("data") else ""
    res.clear()

    def held_acked():
        res["st"], res["data"] = read(long_pod, lh, lf, ack)
    th = threading.Thread(target=held_acked)
    th.start()
    wait_for(lambda: long_pod.counters()["reads_held"] == 1, "the second read to be held")
    check(long_pod.admin("POST", "events", "[" + ",".join(event(i) for i in range(1000, 1100))
                         + "]") == {"enqueued": 100}, "enqueue 100 events")
    th.join(10)
    got = [e["id"] for e in json.loads(res["data"])["events"]] if res.get("st") == 200 else []
    check(got == ["ev-%d" % i for i in range(1000, 1100)],
          "the held read gets the 100 events of one POST in one batch (got %d)" % len(got))
    check(long_pod.stop()[0] == 0, "clean exit (10 s hold pod)")
    # The unacknowledged batch of the visibility check below.
    pod.admin("POST", "events", "[" + event(4) + "]")
    st, data = read(pod, h, f)
    res["end"] = time.monotonic()
    check(st == 200 and [e["id"] for e in json.loads(data)["events"]] == ["ev-4"], "ev-4 read")
    ack4 = json.loads(data)["ackId"]

    # No ack: the batch comes back after --visibility-ms, same events, new ackId. Reads
    # without an ackId come back empty until then (how many depends on timing).
    t0 = res.get("end", time.monotonic())
    for _ in range(8):
        st, data2 = read(pod, h, f, "")
        b2 = json.loads(data2)
        if b2["events"]:
            break
    dt = time.monotonic() - t0
    check([e["id"] for e in b2["events"]] == ["ev-4"] and b2["ackId"] != ack4 and 0.75 <= dt < 3,
          "unacked batch redelivered after visibility (%.2fs)" % dt)
    check(data2.decode().startswith('{"events":[' + event(4) + "]"), "redelivery is byte-exact")
    check(pod.counters()["redelivered"] == 1, "redelivered counted")
    acked0 = pod.counters()["acked"]
    st, data = read(pod, h, f, ack4)
    check(st == 200 and pod.counters()["acked"] == acked0,
          "old ackId of a redelivered batch is accepted (acks nothing)")
    # That read holds 600 ms: on a loaded machine the batch may come due again (800 ms) and
    # be redelivered by it, under yet another ackId, which is then the one that acknowledges.
    b3 = json.loads(data) if st == 200 else {"events": []}
    st, data = read(pod, h, f, b3["ackId"] if b3["events"] else b2["ackId"])
    check(st == 200 and json.loads(data)["events"] == [] and pod.counters()["pending"] == 0,
          "the redelivery's ackId acknowledges it")

    # ackId formats.
    st, data = read(pod, h, f, "AAECAwQFBgcICQ==-99999")
    check(st == 200, "unknown ackId of a valid format -> 200")
    st, data = read(pod, h, f, "not an ack id")
    check(st == 400 and json.loads(data)["code"] == 400, "ackId of a bad format -> 400")
    st, data, _ = pod.req("POST", "/agent/v5/datafeeds/%s/read" % f, "", h)
    check(st == 200, "read without a body is fine")
    st, data, _ = pod.req("POST", "/agent/v5/datafeeds/%s/read" % f, '{"ackId":', h)
    check(st == 400 and json.loads(data)["code"] == 400, "malformed read body -> 400 V2Error")
    st, data, _ = pod.req("POST", "/agent/v5/datafeeds/%s/read" % f, '{"ackId":5}', h)
    check(st == 400, "non-string ackId -> 400")

    # batch-max 3: 7 events come as 3, 3, 1; and a second feed gets its own copy (fanout).
    f2 = create_feed(pod, h)
    pod.admin("POST", "events", "[" + ",".join(event(10 + i) for i in range(7)) + "]")
    sizes, ack = [], ""
    for _ in range(3):
        st, data = read(pod, h, f, ack)
        b = json.loads(data)
        sizes.append(len(b["events"]))
        ack = b["ackId"]
    check(sizes == [3, 3, 1], "batch-max splits 7 into %r" % sizes)
    st, data = read(pod, h, f2)
    check([e["id"] for e in json.loads(data)["events"]] == ["ev-10", "ev-11", "ev-12"],
          "fanout: the second feed receives the same events")

    # Bodies over 1 MiB on Symphony endpoints -> 413; admin takes more.
    st, data, _ = pod.req("POST", "/agent/v5/datafeeds/%s/read" % f,
                          '{"ackId":"' + "A" * (1 << 20) + '"}', h)
    check(st == 413, "read body > 1 MiB -> 413")
    big = [event(50, "x" * (2 << 20))]
    check(pod.admin("POST", "events", "[" + big[0] + "]") == {"enqueued": 1},
          "admin accepts a 2 MiB body")
    check(pod.stop()[0] == 0, "clean exit")

    # TTL: a feed not read for --ttl-ms expires.
    pod = Pod(pub, "--hold-ms", "300", "--ttl-ms", "500")
    h = login(pod, priv)
    f = create_feed(pod, h)
    st, _ = read(pod, h, f)
    check(st == 200, "read within the TTL")
    t0 = time.monotonic()
    wait_for(lambda: pod.counters()["live_feeds"] == 0, "the feed to expire", 3)
    check(time.monotonic() - t0 >= 0.4, "feed lived at least its TTL after the last read")
    st, data = read(pod, h, f)
    check(st == 400, "expired feed -> 400")
    st, lst = pod.json("GET", "/agent/v5/datafeeds", headers=h)
    check(lst == [], "expired feed is not listed")
    check(pod.stop()[0] == 0, "clean exit")
    # A held read of a feed expired by /admin/expire-feed answers 400 at once.
    pod = Pod(pub, "--hold-ms", "10000")
    h = login(pod, priv)
    f = create_feed(pod, h)
    res = {}
    th = threading.Thread(target=lambda: res.update(r=read(pod, h, f)))
    pod2_t = time.monotonic()
    th.start()
    wait_for(lambda: pod.counters()["reads_held"] == 1, "the read to be held")
    check(pod.admin("POST", "expire-feed", {"id": f}) == {"expired": 1}, "expire-feed by id")
    th.join(5)
    check(res.get("r", (0,))[0] == 400 and time.monotonic() - pod2_t < 3,
          "held read of an expired feed -> 400")
    # A held read whose client goes away stops counting at once and takes no events.
    f = create_feed(pod, h)
    body = b'{"ackId":""}'
    s = socket.create_connection(("127.0.0.1", pod.port), timeout=10)
    s.sendall(b"POST /agent/v5/datafeeds/%s/read HTTP/1.1\r\nHost: x\r\nsessionToken: %s\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (f.encode(), h["sessionToken"].encode(),
                                                   len(body), body))
    wait_for(lambda: pod.counters()["held"] == 1, "the raw read to be held")
    s.close()
    check(pod.counters()["held"] == 0, "a closed client is not counted as held")
    wait_for(lambda: any(c.get("gone") for c in pod.calls()), "the gone read to be logged")
    gone = [c for c in pod.calls() if c.get("gone")]
    check(len(gone) == 1 and gone[0]["status"] == 0 and gone[0]["endpoint"] == "read",
          "gone read logged with status 0: %r" % gone)
    pod.admin("POST", "events", "[" + event(7) + "]")
    c = pod.counters()
    check(c["served"] == 0 and c["pending"] == 1, "the gone read took no event: %r" % c)
    st, data = read(pod, h, f)
    check(st == 200 and json.loads(data)["events"][0]["id"] == "ev-7", "a new read gets it")
    check(pod.stop()[0] == 0, "clean exit")


def raw_http(port, req, half_close=False):
    """Sends REQ bytes and returns everything received until the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(req)
    if half_close:  # the server sees the end of an incomplete request
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    s.close()
    return out


def group_faults(priv, pub):
    pod = Pod(pub, "--hold-ms", "300")
    h = login(pod, priv)
    f = create_feed(pod, h)
    pod.admin("POST", "faults", {"endpoint": "read", "action": "status", "status": 503, "count": 2})
    for i in range(2):
        st, data = read(pod, h, f)
        check(st == 503 and json.loads(data) == {"code": 503, "message": "Injected fault"},
              "status fault %d -> 503 V2Error" % i)
    st, _ = read(pod, h, f)
    check(st == 200, "fault consumed after count calls")
    # Custom body, and order of queued faults.
    pod.admin("POST", "faults", [{"endpoint": "list", "action": "status", "status": 429,
                                  "body": {"x": 1}},
                                 {"endpoint": "list", "action": "status", "status": 502}])
    st, data, _ = pod.req("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 429 and data == b'{"x":1}', "status fault with a custom body")
    st, _, _ = pod.req("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 502, "faults consumed in order")
    # any
    pod.admin("POST", "faults", {"endpoint": "any", "action": "status", "status": 500})
    st, _, _ = pod.req("GET", "/pod/v2/sessioninfo", headers=h)
    check(st == 500, "'any' fault hits sessioninfo")
    st, _, _ = pod.req("GET", "/pod/v2/sessioninfo", headers=h)
    check(st == 200, "'any' fault consumed")
    # auth endpoint
    pod.admin("POST", "faults", {"endpoint": "auth", "action": "status", "status": 500})
    st, _ = pod.json("POST", "/login/pubkey/authenticate", {"token": make_jwt(priv)})
    check(st == 500, "auth fault")
    # echo (secrets tests): the request's headers, unredacted and last first, and its body.
    pod.admin("POST", "faults", {"endpoint": "list", "action": "echo", "status": 403})
    st, data, _ = pod.req("GET", "/agent/v5/datafeeds", headers=dict(h, **{"X-Secret": "s3"}))
    echo = json.loads(data)
    check(st == 403 and echo["code"] == 403 and echo["message"] == "echo" and echo["body"] == "",
          "echo fault: status and shape")
    check(echo["headers"].get("sessionToken") == h["sessionToken"] and
          echo["headers"].get("X-Secret") == "s3", "echo fault: header values as sent")
    check(list(echo["headers"])[-1] == "Host", "echo fault: headers last first (Host last)")
    toks = pod.admin("GET", "tokens")
    check(h["sessionToken"] in toks,
          "GET /admin/tokens lists the tokens handed out")
    # drop: the connection closes with no reply.
    pod.admin("POST", "faults", {"endpoint": "create", "action": "drop"})
    try:
        pod.req("POST", "/agent/v5/datafeeds", {}, h)
        check(False, "drop gives no reply")
    except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
        check(True, "drop")
    check(pod.counters()["live_feeds"] == 1, "dropped create created nothing")
    # truncate: Content-Length announced, half the body sent, then closed.
    raws = [event(i) for i in range(4)]
    pod.admin("POST", "events", "[" + ",".join(raws) + "]")
    pod.admin("POST", "faults", {"endpoint": "read", "action": "truncate"})
    body = b'{"ackId":""}'
    out = raw_http(pod.port, b"POST /agent/v5/datafeeds/%s/read HTTP/1.1\r\nHost: x\r\n"
                   b"sessionToken: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                   b"\r\n%s" % (f.encode(), h["sessionToken"].encode(), len(body), body))
    head, _, got = out.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: *(\d+)", head, re.I)
    cl = int(m.group(1)) if m else -1
    check(head.startswith(b"HTTP/1.1 200") and cl > 100 and len(got) == cl // 2,
          "truncate: announced %d, received %d" % (cl, len(got)))
    check(got and b'{"events":[' + raws[0].encode()[:20] == got[:31], "truncated body is a prefix")
    try:
        pod.admin("POST", "faults", {"endpoint": "read", "action": "truncate"})
        read(pod, h, f, "")
        check(False, "http.client sees a truncated body")
    except http.client.IncompleteRead:
        check(True, "IncompleteRead")
    # slow
    pod.admin("POST", "faults", {"endpoint": "sessioninfo", "action": "slow", "delay_ms": 700})
    t0 = time.monotonic()
    st, _, _ = pod.req("GET", "/pod/v2/sessioninfo", headers=h)
    dt = time.monotonic() - t0
    check(st == 200 and 0.68 <= dt < 2.0, "slow fault delays %.2fs then replies" % dt)
    # expire_token
    pod.admin("POST", "faults", {"endpoint": "list", "action": "expire_token"})
    st, _, _ = pod.req("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 401, "expire_token -> 401")
    st, _, _ = pod.req("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 401, "the old token stays invalid")
    h = login(pod, priv)
    st, _, _ = pod.req("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 200, "a new login works")
    # expire_feed
    pod.admin("POST", "faults", {"endpoint": "read", "action": "expire_feed"})
    st, data = read(pod, h, f)
    check(st == 400, "expire_feed -> 400")
    st, data = read(pod, h, f)
    check(st == 400, "the feed stays gone")
    # clearing faults; bad fault specs
    pod.admin("POST", "faults", {"endpoint": "list", "action": "status", "status": 500})
    pod.admin("DELETE", "faults")
    st, _, _ = pod.req("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 200, "DELETE /admin/faults clears them")
    for bad in ({"endpoint": "nope", "action": "drop"}, {"endpoint": "read", "action": "x"},
                {"endpoint": "read", "action": "status", "status": 9}, [1]):
        st, _ = pod.json("POST", "/admin/faults", bad)
        check(st == 400, "bad fault spec %r -> 400" % (bad,))
    c = pod.counters()
    check(c["faults_applied"] == 13, "faults_applied == 13: %r" % c["faults_applied"])
    calls = pod.calls()
    faults = [x.get("fault") for x in calls if "fault" in x]
    check(faults == ["status", "status", "status", "status", "status", "status", "echo", "drop",
                     "truncate", "truncate", "slow", "expire_token", "expire_feed"],
          "call log names the faults: %r" % faults)
    drop = [x for x in calls if x.get("fault") == "drop"][0]
    check(drop["status"] == 0 and drop["endpoint"] == "create", "dropped call logged as status 0")
    # huge_header and not_http: raw bytes instead of the call (count 2: two calls each), the
    # call itself is not made (nothing read, nothing in flight), logged with status 0.
    pod.admin("DELETE", "calls")
    served = pod.counters()["served"]
    pod.admin("POST", "faults", [{"endpoint": "read", "action": "huge_header", "count": 2},
                                 {"endpoint": "read", "action": "not_http", "count": 2}])
    req = (b"POST /agent/v5/datafeeds/%s/read HTTP/1.1\r\nHost: x\r\nsessionToken: %s\r\n"
           b"Content-Length: 2\r\n\r\n{}" % (f.encode(), h["sessionToken"].encode()))
    for i in range(2):
        out = raw_http(pod.port, req)
        head, _, rest = out.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        huge = [x for x in lines if x.startswith(b"X-Huge: ")]
        check(lines[0] == b"HTTP/1.1 200 OK" and len(huge) == 1
              and huge[0] == b"X-Huge: " + b"h" * (120 * 1024) and rest == b"{}",
              "huge_header %d: a 120 KiB header line, then {} (%d bytes)" % (i, len(out)))
    for i in range(2):
        out = raw_http(pod.port, req)
        check(out == b"SSH-2.0-OpenSSH_9.2 dfpod not_http fault\r\n",
              "not_http %d: not HTTP: %r" % (i, out[:60]))
    calls = pod.calls()
    check([(x["endpoint"], x["status"], x.get("fault")) for x in calls] ==
          [("read", 0, "huge_header")] * 2 + [("read", 0, "not_http")] * 2,
          "call log: %r" % [(x["endpoint"], x["status"], x.get("fault")) for x in calls])
    check(pod.counters()["served"] == served and pod.counters()["faults_applied"] == 17,
          "nothing served by the faulted reads, 4 more faults applied")
    check(pod.stop()[0] == 0, "clean exit")


# The 17 types, their payload keys and fields, in the contract's order: the one source
# (schemas/contract-v1.json); the generator's table must match it.
CONTRACT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas",
                        "contract-v1.json")
with open(CONTRACT) as _f:
    TYPES = {t["type"]: (t["payload_key"], list(t["payload_fields"]))
             for t in json.load(_f)["topics"]}


def split_raw(text):
    """Splits a JSON array text into its elements' raw texts (elements are objects)."""
    out, depth, start, in_str, esc = [], 0, None, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
            if depth == 2 and ch == "{":
                start = i
        elif ch in "}]":
            depth -= 1
            if depth == 1 and ch == "}":
                out.append(text[start:i + 1])
    return out


def check_event(e, what):
    ok = True
    key, fields = TYPES.get(e.get("type"), (None, None))
    ok &= key is not None and list(e["payload"].keys()) == [key]
    pl = e["payload"].get(key, {})
    ok &= all(f in pl for f in fields)
    ok &= isinstance(e["timestamp"], int) and e["timestamp"] > 1600000000000
    ok &= isinstance(e["initiator"]["user"]["userId"], int) and e["initiator"]["user"]["userId"] > 2 ** 32
    for m in [pl.get("message"), pl.get("sharedMessage")]:
        if m is not None:
            ok &= m["message"].startswith('<div data-format="PresentationML"')
            ok &= isinstance(json.loads(m["data"]), dict) and isinstance(m["attachments"], list)
            ok &= m["user"]["userId"] > 2 ** 32 and "streamId" in m["stream"]
            ok &= e.get("messageId") == pl["message"]["messageId"]
    if "roomProperties" in pl or "newRoomProperties" in pl:
        rp = pl.get("roomProperties") or pl.get("newRoomProperties")
        ok &= isinstance(rp["keywords"], list) and rp["creatorUser"]["userId"] > 2 ** 32
    if "affectedUsers" in pl:
        ok &= isinstance(pl["affectedUsers"], list) and len(pl["affectedUsers"]) >= 1
    if "formValues" in pl:
        ok &= isinstance(pl["formValues"], dict)
    if "parameters" in pl:
        ok &= isinstance(pl["parameters"], dict) and isinstance(pl["eventTimestamp"], int)
    if "stream" in pl:
        ok &= pl["stream"]["streamType"] in ("IM", "MIM", "ROOM", "POST")
    check(ok, "event shape (%s): %s" % (what, json.dumps(e)[:300]))


def group_generator(priv, pub):
    pod = Pod(pub, "--hold-ms", "200", "--batch-max", "1000")
    r = pod.admin("POST", "generate", {"count": 340, "seed": 7, "bot_ratio": 0.1})
    check(r["enqueued"] == 340 and r["first_id"], "generate 340: %r" % r)
    st, data, _ = pod.req("GET", "/admin/events")
    text = data.decode()
    evs = json.loads(text)
    raws = split_raw(text)
    check(len(evs) == 340 and len(raws) == 340, "340 events listed")
    check(evs[0]["id"] == r["first_id"], "first_id is the first event's id")
    for e in evs:
        check_event(e, e.get("type"))
    counts = {}
    for e in evs:
        counts[e["type"]] = counts.get(e["type"], 0) + 1
    check(sorted(counts) == sorted(TYPES) and set(counts.values()) == {20},
          "all 17 types, 20 each: %r" % counts)
    check([e["type"] for e in evs[:17]] == list(TYPES), "types cycle in table order")
    check(len({e["id"] for e in evs}) == 340, "event ids unique")
    bots = [e for e in evs if e["initiator"]["user"]["userId"] == BOT_ID]
    check(len(bots) == 34 and all(e["initiator"]["user"]["username"] == "my-bot" for e in bots),
          "exactly 10%% bot-initiated: %d" % len(bots))
    sizes = [len(x.encode()) for x in raws]
    check(min(sizes) < 1000 and max(sizes) > 8000, "sizes vary %d..%d" % (min(sizes), max(sizes)))
    check(any(re.search(r"\\u[dD]83[dDcC]", x) for x in raws) and any("🚀" in x or "📈" in x or "👍" in x for x in raws),
          "emoji both raw and as \\u surrogate escapes")
    check(any(ord(ch) > 127 for ch in text), "non-ASCII text present")
    check(any(u["userId"] > 2 ** 40 for e in evs for u in [e["initiator"]["user"]]),
          "some user ids above 2^40")
    # Default bot ratio 0.05; the continuous id sequence stays unique across calls.
    r2 = pod.admin("POST", "generate", {"count": 100})
    st, data, _ = pod.req("GET", "/admin/events")
    evs2 = json.loads(data)[340:]
    check(len(evs2) == 100 and sum(e["initiator"]["user"]["userId"] == BOT_ID for e in evs2) == 5,
          "default bot_ratio 0.05 -> 5 of 100")
    check(len({e["id"] for e in evs + evs2}) == 440, "ids unique across generate calls")
    # bot_ratio 0: no event at all is the bot's, although random people draw from ids that
    # include the bot's (68719476738 is the first of them).
    r3 = pod.admin("POST", "generate", {"count": 3000, "seed": 11, "bot_ratio": 0})
    st, data, _ = pod.req("GET", "/admin/events")
    evs3 = json.loads(data)[440:]
    check(r3["enqueued"] == 3000 and len(evs3) == 3000, "generate 3000 more")
    check(sum(e["initiator"]["user"]["userId"] == BOT_ID for e in evs3) == 0,
          "bot_ratio 0 -> no bot-initiated event: %d" %
          sum(e["initiator"]["user"]["userId"] == BOT_ID for e in evs3))
    # A reader gets them byte for byte.
    h = login(pod, priv)
    f = create_feed(pod, h)
    st, data = read(pod, h, f)
    b = data.decode()
    check(b.startswith('{"events":[' + ",".join(raws) + ","), "generated events served raw")
    for bad in ({"count": -1}, {"count": "x"}, {"count": 1, "bot_ratio": 2}, [1]):
        st, _ = pod.json("POST", "/admin/generate", bad)
        check(st == 400, "bad generate body %r -> 400" % (bad,))
    check(pod.stop()[0] == 0, "clean exit")

    pod = Pod(pub, "--generate", "34", "--seed", "5")
    check(pod.counters()["enqueued"] == 34, "--generate 34 at start-up")
    pod.stop()
    pod = Pod(pub, "--rate", "200")
    wait_for(lambda: pod.counters()["enqueued"] >= 40, "--rate to generate events", 5)
    st, data, _ = pod.req("GET", "/admin/events")
    evs = json.loads(data)
    check(len({e["type"] for e in evs}) == 17 or len(evs) < 17, "--rate cycles the types")
    for e in evs[:20]:
        check_event(e, "rate")
    check(pod.stop()[0] == 0, "clean exit with --rate")


def group_benchgen(priv, pub):
    """The benchmark options of /admin/generate (kind, bytes, at_once, rate) and --gen-kind."""
    pod = Pod(pub, "--hold-ms", "10000", "--batch-max", "100")
    r = pod.admin("POST", "generate", {"count": 30, "kind": "messagesent"})
    st, data, _ = pod.req("GET", "/admin/events")
    raws = split_raw(data.decode())
    evs = json.loads(data)
    check(r["enqueued"] == 30 and len(evs) == 30 and evs[0]["id"] == r["first_id"],
          "30 messagesent generated")
    check(all(e["type"] == "MESSAGESENT" for e in evs), "all MESSAGESENT")
    check([len(x.encode()) for x in raws] == [1200] * 30, "each exactly 1200 bytes of JSON")
    for e in evs:
        check_event(e, "messagesent")
    check(len({e["id"] for e in evs}) == 30 and len({e["messageId"] for e in evs}) == 30,
          "ids and messageIds unique")
    m = evs[0]["payload"]["messageSent"]["message"]
    check(m["user"]["userId"] == 68719476737 and "Zoë" in m["user"]["firstName"]
          and json.loads(m["data"])["0"]["type"] == "com.symphony.user.mention",
          "64-bit user id, raw UTF-8, EntityJSON string")
    pod.admin("POST", "generate", {"count": 2, "kind": "messagesent", "bytes": 5000})
    st, data, _ = pod.req("GET", "/admin/events")
    check([len(x.encode()) for x in split_raw(data.decode())[30:]] == [5000, 5000], "bytes 5000")
    # at_once: a read held before the call wakes up to a full batch, not to the first event.
    h = login(pod, priv)
    f = create_feed(pod, h)
    st, data = read(pod, h, f)  # takes the 32 above
    ack = json.loads(data)["ackId"]
    res = {}

    def held():
        res["st"], res["data"] = read(pod, h, f, ack)
    th = threading.Thread(target=held)
    th.start()
    wait_for(lambda: pod.counters()["reads_held"] == 1, "the read to be held")
    r = pod.admin("POST", "generate", {"count": 250, "kind": "mix", "at_once": True})
    th.join(10)
    check(r["enqueued"] == 250 and res.get("st") == 200 and
          len(json.loads(res["data"])["events"]) == 100, "at_once: the held read got 100 at once")
    # rate: paced release; the answer lists every id and its monotonic release time.
    t0 = time.monotonic_ns()
    r = pod.admin("POST", "generate", {"count": 50, "kind": "messagesent", "rate": 1000})
    t1 = time.monotonic_ns()
    ids, ns = r.get("ids", []), r.get("release_ns", [])
    check(r["enqueued"] == 50 and len(ids) == 50 and len(set(ids)) == 50 and len(ns) == 50,
          "rate: 50 ids and release times")
    check(ids[0] == r["first_id"] and all(t0 <= x <= t1 for x in ns) and ns == sorted(ns),
          "release times on this machine's monotonic clock, in order")
    check(all(ns[i] - ns[0] >= i * 1000000 - 1000000 for i in range(50)),
          "paced: event i not before i ms (less one tick)")
    st, data, _ = pod.req("GET", "/admin/events")
    check([e["id"] for e in json.loads(data)[-50:]] == ids, "ids in release order")
    for bad in ({"count": 1, "kind": "x"}, {"count": 1, "bytes": 10}, {"count": 1, "rate": 0},
                {"count": 1, "at_once": "yes"}, {"count": 1, "kind": 3}):
        st, _ = pod.json("POST", "/admin/generate", bad)
        check(st == 400, "bad generate body %r -> 400" % (bad,))
    check(pod.stop()[0] == 0, "clean exit")
    pod = Pod(pub, "--gen-kind", "messagesent", "--gen-bytes", "1300", "--generate", "5")
    st, data, _ = pod.req("GET", "/admin/events")
    check([len(x.encode()) for x in split_raw(data.decode())] == [1300] * 5 and
          all(e["type"] == "MESSAGESENT" for e in json.loads(data)), "--gen-kind/--gen-bytes")
    check(pod.stop()[0] == 0, "clean exit")
    p = subprocess.run([DFPOD, "--public-key", pub, "--gen-kind", "nope"], capture_output=True)
    check(p.returncode == 2 and b"--gen-kind" in p.stderr, "bad --gen-kind exits 2")


def group_admin(priv, pub):
    pod = Pod(pub, "--hold-ms", "200")
    for bad in ('{"a":1}', "[1,2]", "[{}, 3]", "[{", "", '[{"a":1}] x'):
        st, _, _ = pod.req("POST", "/admin/events", bad)
        check(st == 400, "bad events body %r -> 400" % bad)
    raws = [event(1), '{"id":"x","big":123456789012345678901234567890,"s":"\\ud83d\\ude00"}',
            '{"nested":{"a":[1,{"b":"}]\\"["}]}}', '{"nul":"a\\u0000b"}']
    st, data, _ = pod.req("POST", "/admin/events", "[\n" + " ,".join(raws) + "\n]")
    check(st == 200 and json.loads(data) == {"enqueued": 4}, "enqueue odd but valid objects")
    st, data, _ = pod.req("GET", "/admin/events")
    check(data.decode() == "[" + ",".join(raws) + "]", "GET /admin/events returns raw texts")

    h = login(pod, priv)
    f = create_feed(pod, h)
    st, data = read(pod, h, f)
    ack = json.loads(data)["ackId"]
    st, data = read(pod, h, f, ack)
    ack2 = json.loads(data)["ackId"]
    st, _ = pod.json("GET", "/agent/v5/datafeeds", headers=h)
    st, _ = pod.json("GET", "/agent/v5/datafeeds", headers={})
    c = pod.counters()
    exp_calls = {"auth": 1, "relay": 0, "sessioninfo": 0, "list": 2, "create": 1, "delete": 0,
                 "read": 2, "v1create": 0, "v1read": 0, "dhread": 0, "sessionauth": 0,
                 "keyauth": 0, "agentinfo": 0, "msgcreate": 0, "msgupdate": 0, "msgsuppress": 0,
                 "msgget": 0, "msglist": 0, "imcreate": 0, "roomadd": 0, "roomremove": 0,
                 "streaminfo": 0, "users": 0, "unknown": 0}
    check(c["calls"] == exp_calls, "calls per endpoint: %r" % c["calls"])
    check(c["status"] == {"200": 4, "201": 1, "401": 1}, "status counts: %r" % c["status"])
    check(c["enqueued"] == 4 and c["served"] == 4 and c["acked"] == 4 and c["pending"] == 0
          and c["feeds_created"] == 1 and c["live_feeds"] == 1 and c["auth_ok"] == 1,
          "counters: %r" % c)
    calls = pod.calls()
    check([x["seq"] for x in calls] == [1, 2, 3, 4, 5, 6], "call log seq")
    check([x["endpoint"] for x in calls] == ["auth", "create", "read", "read", "list", "list"],
          "call log endpoints")
    check([x["status"] for x in calls] == [200, 201, 200, 200, 200, 401], "call log statuses")
    r1, r2 = calls[2], calls[3]
    check(r1["method"] == "POST" and r1["path"] == "/agent/v5/datafeeds/%s/read" % f
          and r1["feed"] == f and r1["ackId"] == ack and r1["events"] == 4
          and r1["body"] == '{"ackId": "", "updatePresence": true}',
          "read log entry: %r" % r1)
    check(r2["ackIdIn"] == ack and r2["ackId"] == ack2 and r2["events"] == 0,
          "second read logs the ackId received and sent")
    check("token" in json.loads(calls[0]["body"]), "auth request body logged")
    check(all(isinstance(x["ms"], int) for x in calls), "calls carry a wall-clock ms")
    # expire-tokens
    pod.admin("POST", "expire-tokens")
    st, _ = pod.json("GET", "/agent/v5/datafeeds", headers=h)
    check(st == 401, "/admin/expire-tokens invalidates tokens")
    # expire-feed {} expires all
    h = login(pod, priv)
    create_feed(pod, h)
    check(pod.admin("POST", "expire-feed", {}) == {"expired": 2}, "expire-feed {} expires all")
    check(pod.counters()["live_feeds"] == 0, "no live feeds")
    pod.admin("DELETE", "calls")
    check(pod.calls() == [], "DELETE /admin/calls clears the log")
    st, _ = pod.json("GET", "/admin/nope")
    check(st == 404, "unknown admin path -> 404")
    check(pod.stop()[0] == 0, "clean exit")

    # --no-history: an event's text is kept only while some feed still holds it.
    pod = Pod(pub, "--hold-ms", "100", "--no-history")
    h = login(pod, priv)
    f1, f2 = create_feed(pod, h), create_feed(pod, h)
    raws = [event(1), event(2)]
    pod.admin("POST", "events", "[" + ",".join(raws) + "]")
    st, data, _ = pod.req("GET", "/admin/events")
    check(data.decode() == "[" + ",".join(raws) + "]", "--no-history lists pending events")
    st, data = read(pod, h, f1)
    read(pod, h, f1, json.loads(data)["ackId"])
    st, data, _ = pod.req("GET", "/admin/events")
    check(json.loads(data) == json.loads("[" + ",".join(raws) + "]"),
          "still held by the second feed")
    st, data = read(pod, h, f2)
    check(data.decode().startswith('{"events":[' + ",".join(raws) + "]"), "second feed served")
    read(pod, h, f2, json.loads(data)["ackId"])
    st, data, _ = pod.req("GET", "/admin/events")
    check(data == b"[]", "--no-history frees events acknowledged everywhere")
    check(pod.counters()["enqueued"] == 2, "enqueued still counts them")
    check(pod.stop()[0] == 0, "clean exit")

    # --token-ttl-ms
    pod = Pod(pub, "--token-ttl-ms", "300")
    h = login(pod, priv)
    st, _ = pod.json("GET", "/pod/v2/sessioninfo", headers=h)
    check(st == 200, "token valid before its TTL")
    wait_for(lambda: pod.json("GET", "/pod/v2/sessioninfo", headers=h)[0] == 401,
             "the token to expire", 3)
    check(pod.stop()[0] == 0, "clean exit")


def group_lifecycle(priv, pub):
    for sig in (signal.SIGTERM, signal.SIGINT):
        pod = Pod(pub, "--hold-ms", "20000")
        h = login(pod, priv)
        f = create_feed(pod, h)
        res = {}

        def held():
            try:
                res["r"] = read(pod, h, f)
            except Exception as ex:  # the connection may close instead
                res["r"] = ex
        th = threading.Thread(target=held)
        th.start()
        # Idle keep-alive connections must not delay the stop either.
        idle = []
        for _ in range(3):
            c = http.client.HTTPConnection("127.0.0.1", pod.port, timeout=10)
            c.request("GET", "/admin/counters")
            c.getresponse().read()
            idle.append(c)
        wait_for(lambda: pod.counters()["reads_held"] == 1 and pod.counters()["held"] == 1,
                 "the read to be held")
        rc, dt = pod.stop(sig)
        for c in idle:
            c.close()
        th.join(5)
        check(rc == 0 and dt < 1.0, "signal %d with a held read: exit %d in %.2fs" % (sig, rc, dt))
        check(not th.is_alive(), "the held read ended")
    # IPv6 loopback when the machine has it.
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
        has6 = True
    except OSError:
        has6 = False
    if has6:
        pod = Pod(pub, listen="[::1]:0")
        st, _ = pod.json("POST", "/login/pubkey/authenticate", {"token": make_jwt(priv)})
        check(st == 200, "listens on [::1]")
        check(pod.stop()[0] == 0, "clean exit (IPv6)")
    # Bad command lines.
    for args in ([], ["--public-key", "/nonexistent"], ["--public-key", pub, "--listen", "nope"],
                 ["--public-key", pub, "--hold-ms", "-1"], ["--public-key", pub, "--bogus"]):
        p = subprocess.run([DFPOD, *args], capture_output=True, timeout=10)
        check(p.returncode != 0 and p.stderr, "bad command line %r fails with a message" % args)


def group_robust(priv, pub):
    """Seeded random and hostile inputs: dfpod must answer 4xx, never crash or hang."""
    import random
    rnd = random.Random(1234)
    pod = Pod(pub, "--hold-ms", "50", "--visibility-ms", "50", "--batch-max", "7")
    h = login(pod, priv)
    f = create_feed(pod, h)
    pod.admin("POST", "generate", {"count": 40, "seed": 9})
    paths = [("POST", "/login/pubkey/authenticate"), ("POST", "/relay/pubkey/authenticate"),
             ("GET", "/pod/v2/sessioninfo"), ("GET", "/agent/v5/datafeeds"),
             ("POST", "/agent/v5/datafeeds"), ("DELETE", "/agent/v5/datafeeds/%s" % f),
             ("POST", "/agent/v5/datafeeds/%s/read" % f), ("POST", "/agent/v5/datafeeds/%s/read" % f),
             ("POST", "/agent/v4/datafeed/create"), ("GET", "/agent/v4/datafeed/x/read"),
             ("POST", "/admin/events"), ("POST", "/admin/generate"), ("POST", "/admin/faults"),
             ("POST", "/admin/expire-feed"), ("POST", "/agent/v5/datafeeds//read"),
             ("POST", "/agent/v5/datafeeds/" + "a" * 300 + "/read"), ("GET", "/%00"),
             ("GET", "/admin/"), ("GET", "/")]
    pieces = ['{', '}', '[', ']', '"', '\\', ':', ',', 'null', 'true', '1e999', '-0',
              '"ackId"', '"token"', '"count"', '"\\ud800"', '\xff', '\x00', '"é"', ' ',
              '{"ackId":"AAAA-1"}', '[{}]', '{"count":1}', '{"endpoint":"any"}']
    statuses = {}
    for i in range(400):
        method, path = rnd.choice(paths)
        if rnd.random() < 0.15:
            method = rnd.choice(["GET", "POST", "DELETE", "PUT", "HEAD"])
        body = "".join(rnd.choice(pieces) for _ in range(rnd.randrange(0, 12)))
        hdr = h if rnd.random() < 0.8 else {"sessionToken": rnd.choice(["", "x" * 32, "\t"])}
        try:
            st, _, _ = pod.req(method, path, body.encode("utf-8", "surrogatepass"), hdr, timeout=10)
        except (http.client.HTTPException, ConnectionError) as ex:
            st = type(ex).__name__  # faults queued by the random bodies may drop or cut
        statuses[st] = statuses.get(st, 0) + 1
    print("robust: statuses %r" % statuses)
    check(all(isinstance(k, int) and k < 500 for k in statuses),
          "random inputs get HTTP answers below 500: %r" % statuses)
    # Raw protocol garbage on fresh connections.
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                 b"POST /admin/events HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"POST /admin/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"):
        raw_http(pod.port, junk, half_close=True)
    st, _, _ = pod.req("POST", "/admin/events", b"[" + b" " * (64 << 20) + b"]")
    check(st == 413, "admin body over 64 MiB -> 413")
    st, _ = pod.json("GET", "/pod/v2/sessioninfo", headers=h)
    check(st == 200, "still serving after garbage")
    c = pod.counters()
    check(c["calls"]["unknown"] > 0 and pod.proc.poll() is None, "alive, unknown calls counted")
    check(pod.stop()[0] == 0, "clean exit after random inputs")


def event_of(i, typ):
    return ('{"id":"dh-%d","timestamp":%d,"type":"%s","initiator":{"user":{"userId":1}},'
            '"payload":{}}' % (i, 1700000000000 + i, typ))


def dh_read(pod, h, body, timeout=30):
    st, data, _ = pod.req("POST", "/agent/v5/events/read", body, h, timeout)
    return st, (json.loads(data) if data and st == 200 else data)


def group_datahose(priv, pub):
    """POST /agent/v5/events/read: validation, (tag, eventTypes) keying, type filter, ack and
    redelivery like v2; /admin/feeds creates a fanout feed as another instance would."""
    pod = Pod(pub, "--hold-ms", "300", "--visibility-ms", "400", "--max-feeds", "2")
    h = login(pod, priv)
    good = {"type": "datahose", "tag": "t1", "eventTypes": ["ROOMCREATED", "MESSAGESENT"],
            "ackId": "", "updatePresence": True}
    bad = [dict(good, type="fanout"), dict(good, tag=""), dict(good, tag="x" * 81),
           dict(good, eventTypes=[]), dict(good, eventTypes=["A", 3]), dict(good, ackId=5),
           {k: v for k, v in good.items() if k != "tag"},
           {k: v for k, v in good.items() if k != "eventTypes"}]
    for b in bad:
        st, _ = dh_read(pod, h, b)
        check(st == 400, "datahose body %r -> 400, got %d" % (b, st))
    st, _ = dh_read(pod, h, dict(good, tag="x" * 80), timeout=5)
    check(st == 200, "an 80-character tag is accepted")
    st, _, _ = pod.req("POST", "/agent/v5/events/read", good, {})
    check(st == 401, "datahose read without a session token -> 401")
    # First read creates the feed; only events enqueued afterwards, of the listed types.
    st, r = dh_read(pod, h, good)
    check(st == 200 and r["events"] == [], "first datahose read: empty after the hold")
    evs = [event_of(i, t) for i, t in enumerate(["ROOMCREATED", "USERJOINEDROOM", "MESSAGESENT",
                                                 "ROOMUPDATED", "MESSAGESENT"])]
    pod.admin("POST", "events", "[" + ",".join(evs) + "]")
    st, r = dh_read(pod, h, dict(good, eventTypes=["MESSAGESENT", "ROOMCREATED"]))
    check(st == 200 and [e["id"] for e in r["events"]] == ["dh-0", "dh-2", "dh-4"],
          "same feed for the same types in another order; filtered: %r" % (r,))
    ack1 = r["ackId"]
    # Another tag is another feed, created now: it has none of these events.
    st, r2 = dh_read(pod, h, dict(good, tag="t2"))
    check(st == 200 and r2["events"] == [], "another tag: another, empty feed")
    # Unacknowledged: redelivered after the visibility timeout, byte for byte.
    time.sleep(0.45)  # the visibility timeout itself is what is tested
    st, r3 = dh_read(pod, h, good)
    check(st == 200 and [e["id"] for e in r3["events"]] == ["dh-0", "dh-2", "dh-4"]
          and r3["ackId"] != ack1, "unacknowledged datahose batch redelivered under a new ackId")
    st, r4 = dh_read(pod, h, dict(good, ackId=r3["ackId"]))
    check(st == 200 and r4["events"] == [], "acknowledged: gone")
    c = pod.counters()
    check(c["acked"] == 3 and c["redelivered"] == 3 and c["calls"]["dhread"] >= 13,
          "datahose counters: %r" % c)
    # Listed with type datahose and a _p_ id; not counted towards --max-feeds; no backlog taken.
    st, feeds = pod.json("GET", "/agent/v5/datafeeds", None, h)
    dh = [f for f in feeds if f["type"] == "datahose"]
    check(len(dh) == 3 and all(re.fullmatch(r"[0-9a-f]{32}_p_[0-9a-f]{5}", f["id"]) for f in dh),
          "datahose feeds listed: %r" % feeds)
    calls = [x for x in pod.calls() if x["endpoint"] == "dhread" and x["status"] == 200]
    check(all(x.get("feed") in [f["id"] for f in dh] for x in calls), "call log names the feed")
    st, a = pod.json("POST", "/admin/feeds")
    check(st == 201 and re.fullmatch(r"[0-9a-f]{32}_f", a["id"]), "admin feed created: %r" % a)
    check(create_feed(pod, h).endswith("_f"), "second fanout feed (datahose feeds not counted)")
    st, _ = pod.json("POST", "/admin/feeds")
    check(st == 403, "admin feed beyond --max-feeds -> 403")
    st, listed = pod.json("GET", "/admin/feeds")
    check(st == 200 and [f["type"] for f in listed].count("fanout") == 2, "GET /admin/feeds")
    # A fault on the datahose endpoint.
    pod.admin("POST", "faults", {"endpoint": "dhread", "action": "status", "status": 400})
    st, _ = dh_read(pod, h, good)
    check(st == 400, "datahose fault 400")
    check(pod.stop()[0] == 0, "clean exit")


# ---- outbound endpoints (pod_outbound.c) ----

BOUNDARY = "dfpodB0undary7MA4YWxk"
MML_WRAP = '<div data-format="PresentationML" data-version="2.0">%s</div>'
# Every byte value, CRLFs, and near-delimiters: the parser must keep them all.
BINARY = (bytes(range(256)) + b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n\r\n--\r\n" +
          b"\r\n--" + BOUNDARY.encode() + b"X (the boundary, then more: still content)" +
          bytes(range(255, -1, -1)) * 40)


def multipart(parts, boundary=BOUNDARY):
    """parts: (name, value str|bytes, filename|None, content_type|None). Real CRLF bytes."""
    out = b""
    for name, value, fn, ct in parts:
        if isinstance(value, str):
            value = value.encode()
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % fn if fn else "")
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n"
        if ct:
            out += b"Content-Type: " + ct.encode() + b"\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


def post(pod, h, path, parts, boundary=BOUNDARY, timeout=30):
    body = multipart(parts, boundary)
    hh = dict(h, **{"Content-Type": "multipart/form-data; boundary=" + boundary})
    st, data, hdr = pod.req("POST", path, body, hh, timeout)
    return st, (json.loads(data) if data else None), hdr


def send(pod, h, sid, message, data="", version="", atts=(), extra=(), timeout=30):
    parts = [("message", message, None, None), ("data", data, None, None),
             ("version", version, None, None)]
    parts += [("attachment", b, n, ct) for n, b, ct in atts]
    parts += list(extra)
    return post(pod, h, "/agent/v4/stream/%s/message/create" % sid, parts, timeout=timeout)


def update(pod, h, sid, mid, message, silent=None, data=""):
    parts = [("message", message, None, None), ("data", data, None, None),
             ("version", "", None, None)]
    if silent is not None:
        parts.append(("silent", silent, None, None))
    return post(pod, h, "/agent/v4/stream/%s/message/%s/update" % (sid, mid), parts)


def new_room(pod, members=None, name=None):
    body = {}
    if members is not None:
        body["members"] = members
    if name is not None:
        body["name"] = name
    return pod.admin("POST", "rooms", body)["id"]


def out_pod(pub, priv, *extra):
    pod = Pod(pub, *extra)
    h = login(pod, priv)
    h["keyManagerToken"] = pod.json("POST", "/relay/pubkey/authenticate",
                                     {"token": make_jwt(priv)})[1]["token"]
    return pod, h


def group_msgcreate(priv, pub):
    pod, h = out_pod(pub, priv, "--no-echo-posts")
    room = new_room(pod, name="Build room")
    check(re.fullmatch(r"[A-Za-z0-9_-]{34}", room) is not None, "room id: 34 URL-safe chars")
    mark = '{"dfbridge.request":{"type":"org.dfbridge.request","version":"1.0","id":"%s"}}' % (
        "ab" * 16)
    st, m, _ = send(pod, h, room, "<messageML>Build <b>42</b> caf\u00e9 &amp; co</messageML>",
                    data=mark, version="2.0",
                    atts=[("build.log", BINARY, "application/octet-stream"),
                          ("empty.txt", b"", "text/plain")])
    check(st == 200, "create -> 200 (%s)" % st)
    m = m or {}
    check(m.get("message") == MML_WRAP % "Build <b>42</b> caf\u00e9 &amp; co",
          "PresentationML: %r" % m.get("message"))
    check(re.fullmatch(r"[A-Za-z0-9_-]{34}", m.get("messageId", "")) is not None,
          "messageId 34 URL-safe chars")
    check(m.get("data") == mark, "data as given (string)")
    check(m.get("stream") == {"streamId": room, "streamType": "ROOM"}, "stream of the answer")
    check(m.get("user", {}).get("userId") == BOT_ID and m["user"].get("username") == "my-bot",
          "user = the bot")
    check(m.get("originalFormat") == "com.symphony.messageml.v2", "originalFormat")
    check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                       m.get("sid", "")) is not None, "sid is a UUID")
    check(abs(m.get("timestamp", 0) - time.time() * 1000) < 5000, "timestamp = now (ms)")
    atts = m.get("attachments", [])
    check([(a["name"], a["size"]) for a in atts] == [("build.log", len(BINARY)),
                                                     ("empty.txt", 0)], "attachments answered")
    check(len({a["id"] for a in atts}) == 2, "attachment ids distinct")
    recs = pod.admin("GET", "messages")
    check(len(recs) == 1, "one message recorded")
    r = recs[0] if recs else {}
    import hashlib
    check(r.get("op") == "create" and r.get("seq") == 1 and r.get("streamId") == room and
          r.get("messageId") == m.get("messageId") and r.get("timestamp") == m.get("timestamp"),
          "record: op, seq, stream, id, timestamp")
    check(r.get("message") == "<messageML>Build <b>42</b> caf\u00e9 &amp; co</messageML>" and
          r.get("presentationML") == m.get("message") and r.get("data") == mark and
          r.get("version") == "2.0", "record: message as posted, PresentationML, data, version")
    check(r.get("attachments") == [
        {"name": "build.log", "size": len(BINARY), "content_type": "application/octet-stream",
         "sha256": hashlib.sha256(BINARY).hexdigest()},
        {"name": "empty.txt", "size": 0, "content_type": "text/plain",
         "sha256": hashlib.sha256(b"").hexdigest()}], "record: attachment bytes round-trip (sha256)")
    # the call log shows the part list
    calls = [c for c in pod.calls() if c["endpoint"] == "msgcreate"]
    parts = json.loads(calls[-1]["body"])["parts"] if calls else []
    check([(p["name"], p.get("filename"), p["size"]) for p in parts] ==
          [("message", None, len("<messageML>Build <b>42</b> caf\u00e9 &amp; co</messageML>".encode())),
           ("data", None, len(mark)), ("version", None, 3), ("attachment", "build.log", len(BINARY)),
           ("attachment", "empty.txt", 0)], "call log: the part list")
    check(parts and parts[1].get("text") == mark and "text" not in parts[3] and
          parts[3].get("content_type") == "application/octet-stream", "call log: text of fields")
    # previews, extra parts (silent on create, sids), PresentationML as input, quoted boundary
    st, m2, _ = send(pod, h, room, MML_WRAP % "hi", atts=[("a.png", b"\x89PNG", "image/png")],
                     extra=[("preview", b"pv", "a-small.png", "image/png"),
                            ("silent", "true", None, None), ("sids", "x,y", None, None)])
    check(st == 200 and m2["message"] == MML_WRAP % "hi", "PresentationML in, extra parts ok")
    recs = pod.admin("GET", "messages")
    check(recs[-1]["previews"] == [{"name": "a-small.png", "size": 2, "content_type": "image/png",
                                    "sha256": hashlib.sha256(b"pv").hexdigest()}],
          "preview recorded")
    body = multipart([("message", "<messageML/>", None, None)], "b1")
    st, data, _ = pod.req("POST", "/agent/v4/stream/%s/message/create" % room, body,
                          dict(h, **{"Content-Type": 'multipart/form-data; boundary="b1"'}))
    check(st == 200 and json.loads(data)["message"] == MML_WRAP % "", "quoted boundary, <messageML/>")
    # bare message, no data part at all: only the message part is required
    st, m3, _ = post(pod, h, "/agent/v4/stream/%s/message/create" % room,
                     [("message", "<messageML> </messageML>", None, None)])
    check(st == 200 and m3["data"] == "", "only a message part (one space) -> 200")
    n_before = len(pod.admin("GET", "messages"))
    # 400s: nothing stored
    cases = [
        ([("data", "{}", None, None)], "Error parsing message: the message cannot be null or empty"),
        ([("message", "   ", None, None)], "Error parsing message: the message cannot be null or empty"),
        ([("message", "hello", None, None)], "Invalid messageML: text outside the root element at byte 0"),
        ([("message", "<p>x</p>", None, None)], "Invalid messageML: Root tag must be <messageML> or <div>"),
        ([("message", "<messageML><b>x</messageML>", None, None)],
         "Invalid messageML: end tag </messageML> does not match the open element"),
        ([("message", "<messageML>a & b</messageML>", None, None)],
         "Invalid messageML: malformed entity at byte 13"),
        ([("message", "<messageML><a href=x>y</a></messageML>", None, None)],
         "Invalid messageML: attribute value not quoted at byte 19"),
        ([("message", "<messageML>x</messageML><b/>", None, None)],
         "Invalid messageML: content after the root element"),
        ([("message", "<messageML>x", None, None)], "Invalid messageML: unclosed element <messageML>"),
        ([("message", "<messageML>x</messageML>", None, None), ("data", "[1]", None, None)],
         "Invalid EntityJSON: not a JSON object"),
        ([("message", "<messageML>x</messageML>", None, None), ("attachment", "x", "a", None),
          ("attachment", "y", "b", None), ("preview", "p", "pa", None)],
         "previews must be given for all attachments or none (1 for 2)"),
    ]
    for parts, msg in cases:
        st, e, _ = post(pod, h, "/agent/v4/stream/%s/message/create" % room, parts)
        check(st == 400 and e == {"code": 400, "message": msg}, "400 %r: %r" % (msg, e))
    st, e, _ = send(pod, h, "NoSuchStream", "<messageML>x</messageML>")
    check(st == 400 and e == {"code": 400, "message": "Stream NoSuchStream not found"},
          "unknown stream -> 400")
    st, data, _ = pod.req("POST", "/agent/v4/stream/%s/message/create" % room, b"--b1\r\nx",
                          dict(h, **{"Content-Type": "multipart/form-data; boundary=b1"}))
    check(st == 400 and json.loads(data)["message"].startswith("Malformed multipart body: "),
          "malformed multipart -> 400")
    st, data, _ = pod.req("POST", "/agent/v4/stream/%s/message/create" % room, b"{}",
                          dict(h, **{"Content-Type": "application/json"}))
    check(st == 400, "not multipart -> 400")
    check(len(pod.admin("GET", "messages")) == n_before, "no 400 stored anything")
    st, _, _ = send(pod, {"sessionToken": "nope"}, room, "<messageML>x</messageML>")
    check(st == 401, "no valid sessionToken -> 401")
    st, _, _ = send(pod, dict(h, keyManagerToken="stale"), room, "<messageML>x</messageML>")
    check(st == 401, "a stale keyManagerToken -> 401")
    st, _, _ = send(pod, dict(h, keyManagerToken=""), room, "<messageML>x</messageML>")
    check(st == 200, "an empty keyManagerToken is fine (simplified key delivery)")
    # a stream known from an enqueued event
    pod.admin("POST", "events", [{"id": "e1", "type": "MESSAGESENT", "payload": {"messageSent": {
        "message": {"stream": {"streamId": "EvStream_IM", "streamType": "IM"}}}}}])
    st, m4, _ = send(pod, h, "EvStream_IM", "<messageML>to an event's IM</messageML>")
    check(st == 200 and m4["stream"] == {"streamId": "EvStream_IM", "streamType": "IM"},
          "a stream seen in an event is known, with its type")
    # a big attachment (over the 1 MiB limit of other endpoints)
    big = os.urandom(3 << 20)
    st, m5, _ = send(pod, h, room, "<messageML>big</messageML>", atts=[("big.bin", big, None)])
    check(st == 200 and m5["attachments"][0]["size"] == len(big), "3 MiB attachment accepted")
    c = pod.counters()
    check(c["messages_posted"] == 7 and c["messages_updated"] == 0, "messages_posted = 7: %r" %
          c.get("messages_posted"))
    check(c["calls"]["msgcreate"] == len([x for x in pod.calls() if x["endpoint"] == "msgcreate"]),
          "calls.msgcreate counted")
    check(pod.stop()[0] == 0, "clean exit")


def group_msgupdate(priv, pub):
    pod, h = out_pod(pub, priv, "--no-echo-posts")
    room = new_room(pod)
    other = new_room(pod)
    st, m1, _ = send(pod, h, room, "<messageML>v1</messageML>")
    st, m2, _ = update(pod, h, room, m1["messageId"], "<messageML>v2</messageML>")
    check(st == 200 and m2["messageId"] != m1["messageId"], "update -> new messageId")
    check(m2["replacing"] == m1["messageId"] and m2["initialMessageId"] == m1["messageId"] and
          m2["initialTimestamp"] == m1["timestamp"] and m2["silent"] is True,
          "lineage of the first update, silent default true")
    check(m2["message"] == MML_WRAP % "v2" and m2["timestamp"] > m1["timestamp"],
          "new content, later timestamp")
    st, m3, _ = update(pod, h, room, m2["messageId"], "<messageML>v3</messageML>", silent="False")
    check(st == 200 and m3["replacing"] == m2["messageId"] and
          m3["initialMessageId"] == m1["messageId"] and m3["initialTimestamp"] == m1["timestamp"]
          and m3["silent"] is False, "chained update keeps the first version; silent False")
    st, m4, _ = update(pod, h, room, m3["messageId"], "<messageML>v4</messageML>", silent="true")
    check(st == 200 and m4["silent"] is True, "silent 'true'")
    recs = pod.admin("GET", "messages")
    check([r["op"] for r in recs] == ["create", "update", "update", "update"], "ops recorded")
    check(recs[0].get("replacedBy") == m2["messageId"] and recs[1].get("replacing") ==
          m1["messageId"] and recs[2].get("silent") is False and "silent" not in recs[0],
          "records: replacedBy, replacing, silent")
    st, g, _ = pod.req("GET", "/agent/v1/message/" + m1["messageId"], headers=h)
    check(st == 200 and json.loads(g)["replacedBy"] == m2["messageId"], "old version: replacedBy")
    for mid, sid, msg, sil in [("NoSuchMessage", room, "Message not found", None),
                               (m1["messageId"], other, "Message not found", None),
                               (m1["messageId"], room, "silent must be true or false", "yes")]:
        st, e, _ = update(pod, h, sid, mid, "<messageML>x</messageML>", silent=sil)
        check(st == 400 and e["message"] == msg, "update 400: " + msg)
    st, e, _ = update(pod, h, room, m1["messageId"], "<messageML>x")
    check(st == 400 and e["message"].startswith("Invalid messageML"), "update: invalid MessageML")
    c = pod.counters()
    check(c["messages_posted"] == 1 and c["messages_updated"] == 3, "counters posted 1 updated 3")
    check(len(pod.admin("GET", "messages")) == 4, "no failed update stored")
    check(pod.stop()[0] == 0, "clean exit")


def list_msgs(pod, h, sid, **q):
    qs = "&".join("%s=%s" % kv for kv in q.items())
    st, data, _ = pod.req("GET", "/agent/v4/stream/%s/message?%s" % (sid, qs), headers=h)
    return st, (json.loads(data) if data else None)


def group_msglist(priv, pub):
    pod, h = out_pod(pub, priv, "--no-echo-posts")
    room, other = new_room(pod), new_room(pod)
    t0 = int(time.time() * 1000) - 1
    st, _ = list_msgs(pod, h, room, since=t0)
    check(st == 204, "empty stream -> 204")
    ids, ts = [], []
    for i in range(7):
        st, m, _ = send(pod, h, room, "<messageML>m%d</messageML>" % i)
        ids.append(m["messageId"])
        ts.append(m["timestamp"])
        send(pod, h, other, "<messageML>other %d</messageML>" % i)
    check(all(a < b for a, b in zip(ts, ts[1:])), "timestamps strictly increasing per stream")
    st, u, _ = update(pod, h, room, ids[2], "<messageML>m2 edited</messageML>")
    st, lst = list_msgs(pod, h, room, since=t0)
    check(st == 200 and [m["messageId"] for m in lst] == ids + [u["messageId"]],
          "every version listed, in timestamp order, only this stream")
    st, lst = list_msgs(pod, h, room, since=ts[3])
    check([m["messageId"] for m in lst] == ids[3:] + [u["messageId"]], "since is inclusive")
    st, lst = list_msgs(pod, h, room, since=t0, until=ts[3])
    check([m["messageId"] for m in lst] == ids[:3], "until is exclusive")
    st, lst = list_msgs(pod, h, room, since=t0, skip=2, limit=3)
    check([m["messageId"] for m in lst] == ids[2:5], "skip then limit")
    st, lst = list_msgs(pod, h, room, since=t0, skip=8)
    check(st == 204, "skip past the end -> 204")
    st, lst = list_msgs(pod, h, room, since=u["timestamp"] + 1)
    check(st == 204, "since after the last -> 204")
    # default limit 50
    for i in range(50):
        send(pod, h, other, "<messageML>o%d</messageML>" % i)
    st, lst = list_msgs(pod, h, other, since=t0)
    check(len(lst) == 50, "default limit 50")
    st, lst = list_msgs(pod, h, other, since=t0, limit=500)
    check(len(lst) == 57, "limit 500 gives all 57")
    for q, what in [({}, "since missing"), ({"since": "abc"}, "since not a number"),
                    ({"since": t0, "limit": 501}, "limit > 500"),
                    ({"since": t0, "limit": 0}, "limit 0"),
                    ({"since": t0, "skip": -1}, "skip < 0")]:
        st, e = list_msgs(pod, h, room, **q)
        check(st == 400 and e["code"] == 400, "list 400: " + what)
    st, e = list_msgs(pod, h, "NoSuchStream", since=t0)
    check(st == 400 and e["message"] == "Stream NoSuchStream not found", "list unknown stream")
    check(pod.counters()["calls"]["msglist"] == 15, "calls.msglist")
    # DELETE /admin/messages forgets them; ids and seq keep counting
    check(pod.admin("DELETE", "messages") == {"deleted": 65}, "DELETE /admin/messages")
    st, _ = list_msgs(pod, h, room, since=t0)
    check(st == 204 and pod.admin("GET", "messages") == [], "forgotten")
    send(pod, h, room, "<messageML>after</messageML>")
    check(pod.admin("GET", "messages")[0]["seq"] == 66, "seq keeps counting")
    # concurrent posts into one stream (one thread per connection in the pod): all stored,
    # timestamps strictly increasing in list order, every id distinct
    t1 = int(time.time() * 1000) - 1
    results = []

    def poster(k):
        for i in range(10):
            st, m, _ = send(pod, h, other, "<messageML>t%d-%d</messageML>" % (k, i))
            results.append((st, m and m["messageId"]))

    threads = [threading.Thread(target=poster, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    check(sorted(st for st, _ in results) == [200] * 60, "60 concurrent posts -> 200")
    st, lst = list_msgs(pod, h, other, since=t1, limit=500)
    tss = [m["timestamp"] for m in lst or []]
    check(len(lst or []) == 60 and all(x < y for x, y in zip(tss, tss[1:])) and
          {m["messageId"] for m in lst} == {mid for _, mid in results},
          "concurrent posts: all listed, timestamps strictly increasing")
    check(pod.stop()[0] == 0, "clean exit")


def group_msgget(priv, pub):
    pod, h = out_pod(pub, priv, "--no-echo-posts")
    room = new_room(pod)
    st, m, _ = send(pod, h, room, "<messageML>get me</messageML>")
    st, data, _ = pod.req("GET", "/agent/v1/message/" + m["messageId"], headers=h)
    check(st == 200 and json.loads(data) == m, "get -> the V4Message as created")
    st, data, _ = pod.req("GET", "/agent/v1/message/NoSuchMessage", headers=h)
    check(st == 204 and data == b"", "get unknown -> 204, no body")
    path = "/pod/v1/admin/messagesuppression/%s/suppress" % m["messageId"]
    t = int(time.time() * 1000)
    st, s1 = pod.json("POST", path, None, h)
    check(st == 200 and s1["messageId"] == m["messageId"] and s1["suppressed"] is True and
          abs(s1["suppressionDate"] - t) < 5000, "suppress -> suppressionDate now")
    st, s2 = pod.json("POST", path, None, h)
    check(st == 200 and s2 == {"messageId": m["messageId"], "suppressed": True,
                               "suppressionDate": 0}, "repeat suppress -> suppressionDate 0")
    st, e = pod.json("POST", "/pod/v1/admin/messagesuppression/NoSuch/suppress", None, h)
    check(st == 400 and e == {"code": 400, "message": "Message not found"}, "suppress unknown")
    check(pod.admin("GET", "messages")[0].get("suppressed") is True, "record: suppressed")
    c = pod.counters()
    check(c["messages_suppressed"] == 1 and c["calls"]["msgsuppress"] == 3 and
          c["calls"]["msgget"] == 2, "counters: suppressed 1, calls")
    st, _ = pod.json("GET", "/agent/v1/message/" + m["messageId"], None, {"sessionToken": "x"})
    check(st == 401, "get without a valid token -> 401")
    check(pod.stop()[0] == 0, "clean exit")


def group_streams(priv, pub):
    pod, h = out_pod(pub, priv, "--no-echo-posts")
    U1, U2 = 349026222340001, 68719476740  # generator users
    pod.admin("POST", "users", [{"id": 7215545058313, "emailAddress": "ann@corp.example",
                                 "username": "ann", "displayName": "Ann"}])
    st, a = pod.json("POST", "/pod/v1/im/create", [U1], h)
    check(st == 200 and re.fullmatch(r"[A-Za-z0-9_-]{34}", a["id"]) is not None, "IM created")
    st, b = pod.json("POST", "/pod/v1/im/create", [U1, U1, BOT_ID], h)
    check(st == 200 and b == a, "same member set (duplicates, the bot) -> same IM")
    st, mim = pod.json("POST", "/pod/v1/im/create", [U2, 7215545058313, U1], h)
    st2, mim2 = pod.json("POST", "/pod/v1/im/create", [U1, 7215545058313, U2], h)
    check(st == 200 and mim != a and mim2 == mim, "MIM: another id, order does not matter")
    st, info = pod.json("GET", "/pod/v2/streams/%s/info" % mim["id"], None, h)
    check(st == 200 and info["streamType"] == {"type": "MIM"} and
          info["streamAttributes"]["members"] == sorted([BOT_ID, U1, U2, 7215545058313]) and
          info["id"] == mim["id"] and info["origin"] == "INTERNAL" and info["active"] is True,
          "MIM info: members filled")
    st, info = pod.json("GET", "/pod/v2/streams/%s/info" % a["id"], None, h)
    check(info["streamType"] == {"type": "IM"}, "IM info type")
    for body, what in [([], "empty"), ([BOT_ID], "only the bot"), (["x"], "not ints"),
                       ({"id": 1}, "not an array"), ([12345], "unknown user"),
                       (list(range(349026222340000, 349026222340100)), "100 others")]:
        st, e = pod.json("POST", "/pod/v1/im/create", body, h)
        check(st == 400 and e["code"] == 400, "IM 400: " + what)
    check(pod.counters()["ims_created"] == 2, "ims_created 2")
    # rooms and membership
    room = new_room(pod, members=[U1], name="Ops")
    st, info = pod.json("GET", "/pod/v2/streams/%s/info" % room, None, h)
    check(st == 200 and info["streamType"] == {"type": "ROOM"} and
          info["streamAttributes"]["members"] == [] and info["roomAttributes"]["name"] == "Ops",
          "room info: no members listed, name")
    add = "/pod/v1/room/%s/membership/add" % room
    rem = "/pod/v1/room/%s/membership/remove" % room
    st, r = pod.json("POST", add, {"id": U2}, h)
    check(st == 200 and r == {"format": "TEXT", "message": "Member added"}, "add member")
    st, r = pod.json("POST", add, {"id": U2}, h)
    check(st == 200 and r == {"format": "TEXT", "message": "Member added"},
          "add an existing member -> 200 Member added")
    st, r = pod.json("POST", rem, {"id": U2}, h)
    check(st == 200 and r == {"format": "TEXT", "message": "Member removed"}, "remove member")
    c = pod.counters()
    check(c["members_added"] == 1 and c["members_removed"] == 1 and c["rooms_created"] == 1,
          "membership counters")
    for path, body, msg in [(add, {"id": 99}, "User 99 not found"),
                            (add, {"id": "x"}, 'body must be {"id": <user id>}'),
                            ("/pod/v1/room/NoRoom/membership/add", {"id": U1},
                             "Stream NoRoom not found"),
                            ("/pod/v1/room/%s/membership/add" % a["id"], {"id": U2},
                             "Stream %s is not a room" % a["id"])]:
        st, e = pod.json("POST", path, body, h)
        check(st == 400 and e == {"code": 400, "message": msg}, "membership 400: " + msg)
    st, e = pod.json("GET", "/pod/v2/streams/NoStream/info", None, h)
    check(st == 400 and e["message"] == "Stream NoStream not found", "info unknown stream")
    # a room known from a generated event
    pod.admin("POST", "generate", {"count": 17, "seed": 3})
    evs = json.loads(pod.req("GET", "/admin/events")[1])
    rc = [e for e in evs if e["type"] == "ROOMCREATED"][0]
    sid = rc["payload"]["roomCreated"]["stream"]["streamId"]
    st, info = pod.json("GET", "/pod/v2/streams/%s/info" % sid, None, h)
    check(st == 200 and info["id"] == sid, "a generated room is known")
    st, r = pod.json("POST", "/pod/v1/room/%s/membership/add" % sid, {"id": U1}, h)
    check(st == 200, "membership on a generated room")
    imc = [e for e in evs if e["type"] == "INSTANTMESSAGECREATED"][0]
    ims = imc["payload"]["instantMessageCreated"]["stream"]
    st, info = pod.json("GET", "/pod/v2/streams/%s/info" % ims["streamId"], None, h)
    check(st == 200 and info["streamType"] == {"type": ims["streamType"]} and
          info["streamAttributes"]["members"] ==
          sorted({BOT_ID} | {m["userId"] for m in ims["members"]}),
          "a generated IM is known with its type and the members of its event")
    check(pod.stop()[0] == 0, "clean exit")


def users(pod, h, q):
    st, data, _ = pod.req("GET", "/pod/v3/users?" + q, headers=h)
    return st, (json.loads(data) if data else None)


def group_users(priv, pub):
    pod, h = out_pod(pub, priv)
    pod.admin("POST", "users", [{"id": 7215545058313, "emailAddress": "ann@corp.example",
                                 "username": "ann", "displayName": "Ann"},
                                {"id": 7215545058315, "emailAddress": "old@corp.example",
                                 "username": "old", "active": False}])
    st, r = users(pod, h, "uid=%d,7215545058313,349026222340003" % BOT_ID)
    check(st == 200 and [u["id"] for u in r["users"]] == [BOT_ID, 7215545058313, 349026222340003]
          and r["errors"] == [], "uid lookup: bot, admin user, generator user")
    check(r["users"][0]["username"] == "my-bot" and r["users"][1]["displayName"] == "Ann" and
          r["users"][2]["emailAddress"].endswith("@example.com"), "user fields")
    st, r = users(pod, h, "uid=7215545058313,12,abc&local=true")
    check(st == 200 and [u["id"] for u in r["users"]] == [7215545058313] and
          r["errors"] == [{"error": "invalid.format", "id": "12"},
                          {"error": "invalid.format", "id": "abc"}], "unknown/malformed ids -> errors")
    st, r = users(pod, h, "email=ann%40corp.example,bot%40example.com,nobody%40x.y")
    check(st == 200 and [u["id"] for u in r["users"]] == [7215545058313, BOT_ID] and
          r["errors"] == [{"error": "invalid.format", "email": "nobody@x.y"}], "email lookup")
    st, r = users(pod, h, "username=my-bot,jane.doe&local=true")
    check(st == 200 and r["users"][0]["id"] == BOT_ID and r["users"][1]["username"] == "jane.doe",
          "username lookup incl. a generator person")
    st, r = users(pod, h, "uid=12,13")
    check(st == 204 and r is None, "nobody found -> 204")
    st, r = users(pod, h, "uid=7215545058313,7215545058315&active=true")
    check(st == 200 and [u["id"] for u in r["users"]] == [7215545058313], "active=true filters")
    st, r = users(pod, h, "uid=7215545058313,7215545058315&active=false")
    check(st == 200 and [u["id"] for u in r["users"]] == [7215545058315], "active=false filters")
    for q, what in [("", "none"), ("uid=1&email=a@b.c", "two kinds"),
                    ("uid=" + ",".join(str(i) for i in range(101)), "101 values"),
                    ("uid=1&local=yes", "local not a boolean"), ("uid=,", "no values")]:
        st, e = users(pod, h, q)
        check(st == 400 and e["code"] == 400, "users 400: " + what)
    st, r = users(pod, h, "uid=" + ",".join(str(349026222340000 + i) for i in range(100)))
    check(st == 200 and len(r["users"]) == 100, "100 values accepted")
    st, e = pod.json("POST", "/admin/users", {"id": 1})
    check(st == 400, "/admin/users wants an array")
    check(pod.counters()["calls"]["users"] == 13, "calls.users")
    check(pod.stop()[0] == 0, "clean exit")


def group_outfaults(priv, pub):
    pod, h = out_pod(pub, priv, "--no-echo-posts")
    room = new_room(pod)
    n = lambda: len(pod.admin("GET", "messages"))
    path = "/agent/v4/stream/%s/message/create" % room

    def fault(**f):
        f.setdefault("endpoint", "msgcreate")
        pod.admin("POST", "faults", f)

    # status without commit: nothing stored; with commit: stored, the fault's answer
    fault(action="status", status=503)
    st, e, _ = send(pod, h, room, "<messageML>a</messageML>")
    check(st == 503 and e == {"code": 503, "message": "Injected fault"} and n() == 0,
          "status: 503, nothing stored")
    fault(action="status", status=500, commit=True, body={"code": 500, "message": "boom"})
    st, e, _ = send(pod, h, room, "<messageML>b</messageML>")
    check(st == 500 and e == {"code": 500, "message": "boom"} and n() == 1,
          "status commit: 500 with the body, message stored")
    # drop
    for commit, want in [(False, 1), (True, 2)]:
        fault(action="drop", commit=commit)
        try:
            send(pod, h, room, "<messageML>c</messageML>")
            check(False, "drop gives no reply")
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
            check(True, "drop: connection closed without a byte")
        check(n() == want, "drop commit=%s: %d stored" % (commit, want))
    calls = [c for c in pod.calls() if c["endpoint"] == "msgcreate"]
    check([c["status"] for c in calls[-2:]] == [0, 0] and calls[-1]["fault"] == "drop",
          "drops logged with status 0")
    # truncate: default commit (stored, half the real answer); commit false: nothing stored
    for commit, want in [(None, 3), (False, 3)]:
        f = dict(action="truncate")
        if commit is not None:
            f["commit"] = commit
        fault(**f)
        try:
            send(pod, h, room, "<messageML>d</messageML>")
            check(False, "truncate gives a short body")
        except http.client.IncompleteRead:
            check(True, "truncate: short body")
        check(n() == want, "truncate commit=%s: %d stored" % (commit, want))
    # slow (default commit): stored before the answer; a client timing out still finds it
    fault(action="slow", delay_ms=1500)
    t0 = time.monotonic()
    try:
        send(pod, h, room, "<messageML>e</messageML>", timeout=0.5)
        check(False, "slow answer past the client's timeout")
    except socket.timeout:
        check(True, "slow: client timed out")
    wait_for(lambda: n() == 4, "the slow (commit) create stored", 3)
    # slow commit false: waits, then makes the call if the client is still there
    fault(action="slow", delay_ms=300, commit=False)
    st, m, _ = send(pod, h, room, "<messageML>f</messageML>")
    check(st == 200 and n() == 5 and time.monotonic() - t0 >= 0.3, "slow no-commit: answered")
    fault(action="slow", delay_ms=800, commit=False)
    try:
        send(pod, h, room, "<messageML>g</messageML>", timeout=0.2)
    except socket.timeout:
        pass
    wait_for(lambda: [c for c in pod.calls() if c["endpoint"] == "msgcreate"][-1].get("gone"),
             "slow no-commit with the client gone logged as gone", 3)
    check(n() == 5, "slow no-commit, client gone: nothing stored")
    # retry_after: 429 with the header; status 429: no header
    fault(action="retry_after", retry_after=3)
    st, e, hdr = send(pod, h, room, "<messageML>h</messageML>")
    check(st == 429 and hdr.get("retry-after") == "3" and e["code"] == 429 and n() == 5,
          "retry_after: 429, Retry-After: 3, nothing stored")
    fault(action="retry_after")
    st, e, hdr = send(pod, h, room, "<messageML>h</messageML>")
    check(st == 429 and hdr.get("retry-after") == "1", "retry_after default 1")
    fault(action="status", status=429)
    st, e, hdr = send(pod, h, room, "<messageML>h</messageML>")
    check(st == 429 and "retry-after" not in hdr, "status 429: no Retry-After")
    fault(action="retry_after", retry_after=2, commit=True)
    st, e, hdr = send(pod, h, room, "<messageML>i</messageML>")
    check(st == 429 and hdr.get("retry-after") == "2" and n() == 6, "retry_after commit: stored")
    # every outbound endpoint name takes faults; 'any' too
    m = pod.admin("GET", "messages")[0]
    sup = "/pod/v1/admin/messagesuppression/%s/suppress" % m["messageId"]
    calls = [("msgupdate", lambda: update(pod, h, room, m["messageId"], "<messageML>u</messageML>")[0]),
             ("msgsuppress", lambda: pod.req("POST", sup, None, h)[0]),
             ("msgget", lambda: pod.req("GET", "/agent/v1/message/" + m["messageId"], None, h)[0]),
             ("msglist", lambda: pod.req("GET", "/agent/v4/stream/%s/message?since=0" % room,
                                         None, h)[0]),
             ("imcreate", lambda: pod.req("POST", "/pod/v1/im/create", [349026222340001], h)[0]),
             ("roomadd", lambda: pod.req("POST", "/pod/v1/room/%s/membership/add" % room,
                                         {"id": 349026222340001}, h)[0]),
             ("roomremove", lambda: pod.req("POST", "/pod/v1/room/%s/membership/remove" % room,
                                            {"id": 349026222340001}, h)[0]),
             ("streaminfo", lambda: pod.req("GET", "/pod/v2/streams/%s/info" % room, None, h)[0]),
             ("users", lambda: pod.req("GET", "/pod/v3/users?uid=%d" % BOT_ID, None, h)[0])]
    for ep, call in calls:
        fault(endpoint=ep, action="status", status=502)
        check(call() == 502, "fault on " + ep)
        check(call() in (200, 204), "then the real answer on " + ep)
    c0 = pod.counters()
    check(c0["messages_updated"] == 1 and c0["messages_suppressed"] == 1 and
          c0["ims_created"] == 1, "faulted (no commit) calls changed nothing")
    fault(endpoint="imcreate", action="status", status=500, commit=True)
    st, _, _ = pod.req("POST", "/pod/v1/im/create", [349026222340003], h)
    check(st == 500 and pod.counters()["ims_created"] == 2, "commit on another endpoint")
    fault(endpoint="any", action="status", status=504)
    check(pod.req("GET", "/pod/v3/users?uid=%d" % BOT_ID, None, h)[0] == 504, "'any' on users")
    st, e = pod.json("POST", "/admin/faults", {"endpoint": "msgcreate", "action": "drop",
                                               "commit": "yes"})
    check(st == 400, "commit must be a boolean")
    st, e = pod.json("POST", "/admin/faults", {"endpoint": "msgcreate", "action": "retry_after",
                                               "retry_after": -1})
    check(st == 400, "retry_after >= 0")
    check(pod.stop()[0] == 0, "clean exit")


def group_echo(priv, pub):
    pod, h = out_pod(pub, priv)
    f = create_feed(pod, h)
    room = new_room(pod)
    st, m, _ = send(pod, h, room, "<messageML>echo me</messageML>", data="{}")
    st, u, _ = update(pod, h, room, m["messageId"], "<messageML>echo me again</messageML>")
    got = []
    ack = ""
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        st, data = read(pod, h, f, ack)
        body = json.loads(data)
        ack = body["ackId"]
        got += body["events"]
    check(len(got) == 2, "two MESSAGESENT events on the feed")
    for ev, msg in zip(got, [m, u]):
        check(ev["type"] == "MESSAGESENT" and ev["messageId"] == msg["messageId"] and
              ev["timestamp"] == msg["timestamp"] and
              ev["initiator"]["user"]["userId"] == BOT_ID and
              ev["payload"]["messageSent"]["message"] == msg, "echo event = the V4Message")
    check(got and re.fullmatch(r"[A-Za-z0-9_-]{6}:out[0-9]+", got[0]["id"]) is not None,
          "event id")
    check(pod.stop()[0] == 0, "clean exit")
    pod2, h2 = out_pod(pub, priv, "--no-echo-posts", "--hold-ms", "200")
    f2 = create_feed(pod2, h2)
    send(pod2, h2, new_room(pod2), "<messageML>quiet</messageML>")
    st, data = read(pod2, h2, f2)
    check(st == 200 and json.loads(data)["events"] == [] and pod2.counters()["enqueued"] == 0,
          "--no-echo-posts: no event")
    check(pod2.stop()[0] == 0, "clean exit")


def group_outrobust(priv, pub):
    """Seeded random multipart bodies, MessageML, JSON and queries on the outbound endpoints:
    answers below 500, never a crash; what was stored is exactly what was answered 200."""
    import random
    rnd = random.Random(4321)
    pod, h = out_pod(pub, priv, "--no-echo-posts")
    room = new_room(pod)
    st, m, _ = send(pod, h, room, "<messageML>seed</messageML>")
    b = "--" + BOUNDARY
    mp_pieces = [b, b + "--", "\r\n", "\r\n\r\n", "Content-Disposition: form-data; name=\"message\"",
                 "Content-Disposition: form-data; name=\"attachment\"; filename=\"a\"",
                 "Content-Disposition: form-data; name=", "Content-Type: x/y", ";", "\"", "\\",
                 "<messageML>", "</messageML>", "<b>", "</b>", "&amp;", "&", "&#x41;", "<",
                 "<!--", "-->", "<![CDATA[", "]]>", "\x00", "\xff", "é", " ", "a=\"1\"", "/>",
                 "<div data-format=\"PresentationML\">", "</div>", "{", "}"]
    msg_pieces = ["<messageML>", "</messageML>", "<b>", "</b>", "<br/>", "&amp;", "&", "&#x;",
                  "<a href='x'>", "</a>", "<!-- c -->", "<?pi?>", "x", " ", "é", "<", ">", "\"",
                  "<div data-format=\"PresentationML\">", "</div>", "<![CDATA[<]]>"]
    json_pieces = ["[", "]", "{", "}", ",", "1", "-1", "349026222340001", "\"x\"", "null",
                   "\"id\"", ":", "1e999", str(BOT_ID)]
    statuses = {}
    ok_posts = 1
    for i in range(500):
        kind = rnd.randrange(5)
        try:
            if kind == 0:  # raw multipart garbage
                body = "".join(rnd.choice(mp_pieces) for _ in range(rnd.randrange(0, 20)))
                st, _, _ = pod.req("POST", "/agent/v4/stream/%s/message/create" % room,
                                   body.encode("utf-8", "surrogatepass"),
                                   dict(h, **{"Content-Type": "multipart/form-data; boundary=" +
                                              BOUNDARY}), timeout=10)
            elif kind == 1:  # well-framed multipart, random MessageML
                msg = "".join(rnd.choice(msg_pieces) for _ in range(rnd.randrange(0, 12)))
                if rnd.random() < 0.5:
                    st, _, _ = send(pod, h, room, msg, timeout=10)
                else:
                    st, _, _ = update(pod, h, room, m["messageId"], msg)
            elif kind == 2:
                body = "".join(rnd.choice(json_pieces) for _ in range(rnd.randrange(0, 10)))
                path = rnd.choice(["/pod/v1/im/create", "/pod/v1/room/%s/membership/add" % room,
                                   "/pod/v1/room/%s/membership/remove" % room])
                st, _, _ = pod.req("POST", path, body, h, timeout=10)
            elif kind == 3:
                q = "&".join(rnd.choice(["uid=", "email=", "username=", "local=", "active="]) +
                             rnd.choice(["", "1", ",", "x", "true", "%00", "a%2Cb", "9" * 30])
                             for _ in range(rnd.randrange(0, 4)))
                st, _, _ = pod.req("GET", "/pod/v3/users?" + q, None, h, timeout=10)
            else:
                q = "&".join(rnd.choice(["since=", "until=", "skip=", "limit="]) +
                             rnd.choice(["", "0", "-1", "500", "501", "x", "9" * 30])
                             for _ in range(rnd.randrange(0, 4)))
                st, _, _ = pod.req("GET", "/agent/v4/stream/%s/message?%s" % (room, q), None, h,
                                   timeout=10)
        except (http.client.HTTPException, ConnectionError) as ex:
            st = type(ex).__name__
        if kind in (0, 1) and st == 200:
            ok_posts += 1
        statuses[st] = statuses.get(st, 0) + 1
    print("outrobust: statuses %r" % statuses)
    check(all(isinstance(k, int) and k < 500 for k in statuses),
          "random outbound inputs get answers below 500: %r" % statuses)
    check(len(pod.admin("GET", "messages")) == ok_posts,
          "messages stored = posts answered 200 (%d)" % ok_posts)
    check(pod.stop()[0] == 0, "clean exit after random inputs")


def main():
    global DFPOD, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--group", required=True)
    a = ap.parse_args()
    DFPOD = a.dfpod
    with tempfile.TemporaryDirectory(prefix="dfpod-test-") as tmp:
        TMP = tmp
        priv, pub = make_keys("bot")
        try:
            globals()["group_" + a.group](priv, pub)
        finally:
            for p in PODS:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    print("%d passed, %d failed" % (PASSES, len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
