"""bdkfw: a small framework for the BDK counterpart tests (tests/bdk/).

Runs the real dfpod and the real dfbridge as child processes on loopback, subscribes with pyzmq,
scripts faults through dfpod's control interface and asserts on its call log, counters, the events
received, the bridge's exit status and its log. Debian's python3, python3-zmq and python3-msgpack.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import msgpack
import zmq

# Exit statuses documented in the README ("Exit statuses").
EXIT_STOPPED = 0
EXIT_FATAL = 1
EXIT_CONFIG = 2
EXIT_EXHAUSTED = 3  # retries exhausted (maxAttempts reached)
EXIT_AUTH = 4       # authentication refused (401 on login or re-login)

FAST_RETRY = "    initialIntervalMillis: 10\n    multiplier: 1\n    maxIntervalMillis: 10\n"


class Failure(Exception):
    pass


class Ctx:
    """Process-wide state: binaries, temporary folder, the bot key, results."""

    def __init__(self, dfpod, dfbridge):
        self.dfpod = dfpod
        self.dfbridge = dfbridge
        self.tmp = tempfile.mkdtemp(prefix="bdk-")
        self.key = os.path.join(self.tmp, "bot.pem")
        self.pub = os.path.join(self.tmp, "bot.pub.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", self.key)
        openssl("pkey", "-in", self.key, "-pubout", "-out", self.pub)
        self.children = []
        self.passed = []
        self.failed = []
        self.zctx = zmq.Context()

    def cleanup(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.zctx.destroy(linger=0)
        if not self.failed:
            shutil.rmtree(self.tmp, ignore_errors=True)


CTX = None


def openssl(*args, inp=None):
    return subprocess.run(["openssl", *args], input=inp, capture_output=True, check=True,
                          timeout=60).stdout


def make_pki():
    """A private CA, a server certificate for 127.0.0.1 and a client certificate whose CN is the
    bot's username (PEM files in the temporary folder); returns their paths."""
    d = os.path.join(CTX.tmp, "pki")
    if os.path.exists(os.path.join(d, "bot.pem")):
        return CTX.pki
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, k + ".pem") for k in ("ca", "ca_key", "cert", "key", "client_cert",
                                                 "client_key", "bot")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca_key"], "-out",
            p["ca"], "-days", "2", "-subj", "/CN=bdk test CA")
    for who, cn, ext in (("", "127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                         ("client_", "my-bot", "extendedKeyUsage=clientAuth")):
        csr = os.path.join(d, who + "req.csr")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p[who + "key"], "-out", csr,
                "-subj", "/CN=" + cn)
        extf = os.path.join(d, who + "ext.cnf")
        with open(extf, "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"],
                "-CAcreateserial", "-out", p[who + "cert"], "-days", "2", "-extfile", extf)
    with open(p["bot"], "w") as f:  # the Python BDK's certificate.path: certificate + key
        f.write(open(p["client_cert"]).read() + open(p["client_key"]).read())
    CTX.pki = p
    return p


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_jwt(sub="my-bot", exp_in=240):
    """An RS512 JWT signed with the bot key, as the BDKs make it."""
    hdr = b64url(json.dumps({"alg": "RS512", "typ": "JWT"}).encode())
    pay = b64url(json.dumps({"sub": sub, "exp": int(time.time()) + exp_in}).encode())
    sig = openssl("dgst", "-sha512", "-sign", CTX.key, inp=(hdr + "." + pay).encode())
    return hdr + "." + pay + "." + b64url(sig)


def check(cond, what):
    if not cond:
        raise Failure(what)


def eq(got, want, what):
    if got != want:
        raise Failure("%s: got %r, want %r" % (what, got, want))


def wait_until(pred, what, timeout=15.0):
    """Polls pred (an HTTP question to the pod, a process state) until true."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure("timed out (%.0f s) waiting for %s" % (timeout, what))
        time.sleep(0.02)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------------------------
class Pod:
    """A dfpod on 127.0.0.1:0; args are extra command-line options."""

    def __init__(self, *args, username="my-bot", tls=None):
        """tls: None, or a dict of PEM paths {ca, cert, key, client_cert?, client_key?}: the pod
        serves HTTPS (and its control interface too)."""
        self.tls = tls
        self.port_file = tempfile.mktemp(dir=CTX.tmp, suffix=".port")
        self.log_path = tempfile.mktemp(dir=CTX.tmp, suffix=".pod.log")
        self.log = open(self.log_path, "wb")
        cmd = [CTX.dfpod, "--public-key", CTX.pub, "--listen", "127.0.0.1:0", "--port-file",
               self.port_file, "--bot-username", username, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        CTX.children.append(self.proc)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failure("dfpod did not start")
            time.sleep(0.02)  # a file appearing has no other signal
        with open(self.port_file) as f:
            self.port = int(f.read())
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.own = set()  # call-log seqs of the test's own calls (a second instance), hidden

    def req(self, method, path, body=None, headers=None, timeout=30):
        if self.tls:
            import ssl
            sc = ssl.create_default_context(cafile=self.tls["ca"])
            if self.tls.get("client_cert"):
                sc.load_cert_chain(self.tls["client_cert"], self.tls["client_key"])
            c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=sc)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            h = {"Content-Type": "application/json"} if body is not None else {}
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data else None)
        finally:
            c.close()

    def admin(self, method, path, body=None):
        st, data = self.req(method, "/admin/" + path, body)
        if st != 200:
            raise Failure("admin %s %s -> %d %r" % (method, path, st, data))
        return data

    def faults(self, *faults):
        """Queues faults (dicts) in order."""
        return self.admin("POST", "faults", list(faults))

    def calls(self, endpoint=None):
        c = self.admin("GET", "calls")
        return [x for x in c if (endpoint is None or x["endpoint"] in endpoint.split("|"))
                and x["seq"] not in self.own]

    def _own_last(self, *endpoints):
        """Hides the newest log entries of these endpoints: the test client just made them."""
        c = self.admin("GET", "calls")
        for ep in endpoints:
            mine = [x["seq"] for x in c if x["endpoint"] == ep and x["seq"] not in self.own]
            if mine:
                self.own.add(mine[-1])

    def counters(self):
        return self.admin("GET", "counters")

    def counter(self, name):
        return self.counters().get(name, 0)

    def events(self, evs):
        return self.admin("POST", "events", evs)

    def generate(self, count, seed=1):
        return self.admin("POST", "generate", {"count": count, "seed": seed})

    def session(self):
        """Logs in like a second instance of the bot: headers for direct API calls."""
        st, b = self.req("POST", "/login/pubkey/authenticate", {"token": make_jwt()})
        eq(st, 200, "login of the test client")
        self._own_last("auth")
        return {"sessionToken": b["token"]}

    def create_feed(self, body=None):
        """Creates a v2 feed as another instance would; returns its id."""
        if body is None:  # the control interface: no call-log entry
            st, b = self.req("POST", "/admin/feeds")
            eq(st, 201, "POST /admin/feeds")
            return b["id"]
        st, b = self.req("POST", "/agent/v5/datafeeds", body, self.session())
        eq(st, 201, "create by the test client")
        self._own_last("create")
        return b["id"]

    def create_v1_feed(self):
        st, b = self.req("POST", "/agent/v4/datafeed/create", None, self.session())
        eq(st, 200, "v1 create by the test client")
        self._own_last("v1create")
        return b["id"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        with open(self.log_path, "rb") as f:
            err = f.read().decode(errors="replace")
        check("Sanitizer" not in err and "runtime error" not in err, "sanitizer report from dfpod")


# --------------------------------------------------------------------------------------------
class Bridge:
    """A dfbridge with a BDK-style config pointing at pod.

    datafeed/retry/extra are YAML fragments (top-level sections). Defaults keep every test fast:
    datafeed.retry and retry with 2 attempts and 10 ms waits, as the BDK tests' minimal configs.
    """

    def __init__(self, pod, datafeed=None, retry=None, extra="", bridge_extra="", username="my-bot",
                 agent_port=None, read_timeout_ms=5000, bot=None, scheme="http", start=True):
        self.pod = pod
        self.pub_port = free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % self.pub_port
        self.cfg_path = tempfile.mktemp(dir=CTX.tmp, suffix=".yaml")
        self.log_path = self.cfg_path[:-5] + ".bridge.log"
        if datafeed is None:
            datafeed = "datafeed:\n  version: v2\n  retry:\n    maxAttempts: 2\n" + FAST_RETRY
        if retry is None:
            retry = "retry:\n  maxAttempts: 2\n" + FAST_RETRY[2:].replace("\n    ", "\n  ")
        agent = ""
        if agent_port is not None:
            agent = "agent:\n  port: %d\n" % agent_port
        if bot is None:
            bot = "  privateKey:\n    path: %s\n" % CTX.key
        self.config = ("scheme: %s\nhost: 127.0.0.1\nport: %d\n%s"
                       "bot:\n  username: %s\n%s%s%s%s"
                       "bridge:\n  publish: %s\n  logLevel: debug\n  readTimeoutMillis: %d\n"
                       "  connectTimeoutMillis: 2000\n%s"
                       % (scheme, pod.port, agent, username, bot, datafeed, retry, extra,
                          self.endpoint, read_timeout_ms, bridge_extra))
        with open(self.cfg_path, "w") as f:
            f.write(self.config)
        self.proc = None
        self.rc = None
        if start:
            self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([CTX.dfbridge, "--config", self.cfg_path],
                                     stdout=self.log, stderr=self.log)
        CTX.children.append(self.proc)
        self.rc = None

    def running(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=15.0):
        """Waits for the bridge to end by itself; returns its exit status."""
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("dfbridge still running after %.0f s" % timeout)
        self.log.close()
        return self.rc

    def stop(self, sig=signal.SIGTERM, within=1.0):
        """Signals the bridge; checks it exits 0 within `within` seconds."""
        if self.proc.poll() is not None:
            raise Failure("dfbridge had already exited with %d" % self.proc.returncode)
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.rc = self.proc.wait(timeout=max(within, 10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("dfbridge ignored the signal for 10 s")
        dt = time.monotonic() - t0
        self.log.close()
        eq(self.rc, EXIT_STOPPED, "exit status after a signal")
        check(dt <= within, "dfbridge took %.2f s to stop (max %.1f)" % (dt, within))
        return dt

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "log", None) and not self.log.closed:
            self.log.close()

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def errors(self):
        """The log's error lines (level 'error'), without their timestamps."""
        out = []
        for line in self.text().splitlines():
            m = re.match(r"\S+Z (\S+)\s+(.*)", line)
            if m and m.group(1) == "error":
                out.append(m.group(2))
        return out

    def expect_exit(self, status, *words, timeout=15.0):
        """The bridge ends by itself with `status`, and an error line has all `words`."""
        rc = self.wait_exit(timeout)
        eq(rc, status, "exit status")
        errs = self.errors()
        check(errs, "no error line says why the bridge ended")
        # README "Exit statuses": exactly one error line before a non-zero exit
        check(len(errs) == 1 or status == 0, "%d error lines: %r" % (len(errs), errs))
        for line in errs:
            if all(re.search(w, line, re.I) for w in words):
                return line
        raise Failure("no error line matches %r: %r" % (words, errs))

    def check_clean(self):
        t = self.text()
        check("Sanitizer" not in t and "runtime error" not in t, "sanitizer report from dfbridge")


# --------------------------------------------------------------------------------------------
class Sub:
    """A SUB socket on the bridge's endpoint, subscribed to every topic."""

    def __init__(self, bridge):
        self.sock = CTX.zctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(bridge.endpoint)
        self.bridge = bridge
        self.got = []      # (topic, envelope dict) of every non-probe message
        self.probes = 0

    def recv(self, timeout_ms):
        """One event message (topic, envelope), or None after timeout_ms. Reserved '_' topics
        (the bridge's own messages, CONTRACT.md) are skipped."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            if left < 0 or not self.sock.poll(max(left, 0)):
                return None
            frames = self.sock.recv_multipart()
            if not frames[0].startswith(b"_"):
                break
        check(len(frames) == 2, "a message has %d frames" % len(frames))
        env = msgpack.unpackb(frames[1], raw=False, strict_map_key=False)
        return frames[0].decode(), env

    @staticmethod
    def is_probe(m):
        ev = m[1].get("event")
        return isinstance(ev, dict) and str(ev.get("id", "")).startswith("probe-")

    def sync(self, pod, timeout=20.0, ptype="PROBE"):
        """Sends probe events (id probe-N, type ptype) through the pod until one arrives: then
        the whole path works."""
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline:
            i += 1
            pod.events([{"id": "probe-%d" % i, "timestamp": i, "type": ptype, "payload": {}}])
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                m = self.recv(100)
                if m is None:
                    if not self.bridge.running():
                        raise Failure("dfbridge exited (%d) before a probe came through"
                                      % self.bridge.proc.returncode)
                    continue
                if self.is_probe(m):
                    self.probes += 1
                    self.last_probe_gseq = m[1]["gseq"]
                    return m
                self.got.append(m)
        raise Failure("no probe came through the bridge in %.0f s" % timeout)

    def wait_ids(self, ids, timeout=20.0):
        """Receives until every event id in ids was seen (probes are kept apart)."""
        want = set(ids)
        seen = {m[1]["event"].get("id") for m in self.got}
        deadline = time.monotonic() + timeout
        while not want <= seen:
            if time.monotonic() > deadline:
                raise Failure("%d of %d events arrived" % (len(want & seen), len(want)))
            m = self.recv(200)
            if m is None:
                continue
            if self.is_probe(m):
                self.probes += 1
            else:
                self.got.append(m)
                seen.add(m[1]["event"].get("id"))
        return seen

    def close(self):
        self.sock.close(linger=0)


def event(i, etype="MESSAGESENT", user=68719476737):
    return {"id": "ev-%d" % i, "timestamp": 1700000000000 + i, "type": etype,
            "initiator": {"user": {"userId": user}},
            "payload": {"messageSent": {"message": {"message": "<p>%d</p>" % i}}}}


def wait_count(pod, endpoint, n, timeout=12.0):
    """The call log has exactly n calls of endpoint once the pod finished them all (a dropped or
    slow call is logged when the pod is done with it, possibly after the bridge moved on)."""
    try:
        wait_until(lambda: len(pod.calls(endpoint)) >= n, "%d %s calls" % (n, endpoint), timeout)
    except Failure:
        pass
    c = pod.calls(endpoint)
    eq(len(c), n, "%s calls (%s)" % (endpoint, summary(c)))
    return c


def auth_ok_then(*faults):
    """Auth faults that let the first login through (a 1 ms 'slow' replies normally), then apply."""
    return [{"endpoint": "auth", "action": "slow", "delay_ms": 1}] + list(faults)


def datafeed_calls(pod):
    """The call log without the auth calls: (endpoint, method, feed) tuples."""
    return [c for c in pod.calls() if c["endpoint"] not in ("auth", "relay", "sessioninfo")]


def summary(calls):
    """A compact call sequence for messages: endpoint:status."""
    return " ".join("%s:%s" % (c["endpoint"], c["status"]) for c in calls)


# --------------------------------------------------------------------------------------------
def mk_pod(live, *args, **kw):
    p = Pod(*args, **kw)
    live.append(p)
    return p


def mk_bridge(live, pod, **kw):
    b = Bridge(pod, **kw)
    live.append(b)
    return b


def mk_sub(live, bridge):
    s = Sub(bridge)
    live.append(s)
    return s


def run(groups, argv):
    """Runs the test functions of one group (groups: name -> list), each with fresh daemons
    registered in its `live` list (killed and checked afterwards); prints PASS/FAIL lines."""
    import argparse
    global CTX
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--dfbridge", required=True)
    ap.add_argument("--group", required=True, choices=sorted(groups))
    ap.add_argument("--only", help="run only the tests whose name contains this")
    a = ap.parse_args(argv)
    tests = groups[a.group]
    CTX = Ctx(a.dfpod, a.dfbridge)
    try:
        for t in tests:
            if a.only and a.only not in t.__name__:
                continue
            t0 = time.monotonic()
            live = []
            try:
                t(live)
                CTX.passed.append(t.__name__)
                print("PASS %-55s %.2f s" % (t.__name__, time.monotonic() - t0), flush=True)
            except Exception as e:  # Failure or an unexpected error: both fail the test
                CTX.failed.append(t.__name__)
                print("FAIL %-55s %s" % (t.__name__, e), flush=True)
                if not isinstance(e, Failure):
                    traceback.print_exc()
                for obj in live:
                    if isinstance(obj, Bridge):
                        print("---- dfbridge log (%s)\n%s" % (obj.cfg_path, obj.text()[-6000:]))
            finally:
                for obj in reversed(live):
                    try:
                        if isinstance(obj, Bridge):
                            obj.kill()
                            obj.check_clean()
                        elif isinstance(obj, Sub):
                            obj.close()
                        elif isinstance(obj, Pod):
                            obj.stop()
                    except Failure as e:
                        if t.__name__ not in CTX.failed:
                            CTX.failed.append(t.__name__)
                        print("FAIL %s: %s" % (t.__name__, e), flush=True)
    finally:
        CTX.cleanup()
    print("%d passed, %d failed%s" % (len(CTX.passed), len(CTX.failed),
                                       (": " + ", ".join(CTX.failed)) if CTX.failed else ""))
    return 1 if CTX.failed else 0
