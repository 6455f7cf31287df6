"""dftest: the shared framework of the Python end-to-end tests (tests/bdk, tests/integration,
tests/transport, bridge/tests).

Runs the real dfpod and the real dfbridge as child processes on loopback, subscribes with pyzmq,
scripts faults through dfpod's control interface and asserts on its call log, counters, the events
received, the bridge's exit status and its log. Debian's python3, python3-zmq and python3-msgpack.

A driver imports it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "<rel>/pylib"))

Checks: check()/eq() raise Failure (fail fast, the BDK runner's way) unless soft_checks() was
called, after which a failed check is recorded in FAILS, printed ("FAIL: ...") and the test goes
on (the --case drivers run by run_cases()).
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
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
EXIT_INTERNAL = 5   # internal error (out of memory, a publisher or replay thread stopped)

FAST_RETRY = "    initialIntervalMillis: 10\n    multiplier: 1\n    maxIntervalMillis: 10\n"

# A child's log with one of these holds a sanitizer report (the ASan/UBSan CI runs): a failure.
SANITIZER_MARKS = ("Sanitizer", "runtime error")


class Failure(Exception):
    pass


# ---- checks ----------------------------------------------------------------------------------
SOFT = False      # soft_checks(): a failed check is recorded and the test goes on
FAILS = []        # failed checks (soft mode)
PASSES = 0        # passed checks
WAIT_TIMEOUT = 15.0  # wait_until's default, seconds (a driver may change it)


def soft_checks():
    global SOFT
    SOFT = True


def check(cond, what):
    """cond is returned. A false cond raises Failure(what), or in soft mode is recorded in FAILS
    and printed."""
    global PASSES
    if cond:
        PASSES += 1
        return cond
    if not SOFT:
        raise Failure(what)
    FAILS.append(what)
    print("FAIL: " + what, flush=True)
    return cond


def eq(got, want, what):
    return check(got == want, "%s: got %r, want %r" % (what, got, want))


def poll_until(pred, timeout, step=0.02):
    """Polls pred() (an HTTP question to the pod, a file, a process state) until it is true or
    timeout seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def wait_until(pred, what, timeout=None):
    """poll_until, and a failed check when pred is still false after timeout seconds."""
    timeout = WAIT_TIMEOUT if timeout is None else timeout
    v = poll_until(pred, timeout)
    if not v:
        check(False, "timed out (%.0f s) waiting for %s" % (timeout, what))
    return v


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS = __import__("random").Random(os.getpid() ^ time.monotonic_ns())


def free_port():
    """A loopback port for a server the test starts later. Taken BELOW the kernel's ephemeral
    range: a port that bind(0) hands out can be given, before our server binds it, to any other
    process's bind(0) or outgoing connection (every test runs beside others, ctest -j2), and the
    server then fails with EADDRINUSE (seen under ThreadSanitizer, where a bridge takes long to
    start). Random in [10000, low end of the range), checked free by binding it."""
    hi = max(_ephemeral_low(), 10001)
    for _ in range(200):
        port = _PORTS.randrange(10000, hi)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log_clean(text):
    return not any(m in text for m in SANITIZER_MARKS)


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


# ---- process-wide state, keys and certificates ----------------------------------------------
class Ctx:
    """Process-wide state: binaries, temporary folder, the bot's RSA key pair, children."""

    def __init__(self, dfpod, dfbridge, prefix="dftest-"):
        self.dfpod = dfpod
        self.dfbridge = dfbridge
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.key = os.path.join(self.tmp, "bot.pem")
        self.pub = os.path.join(self.tmp, "bot.pub.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                self.key)
        openssl("pkey", "-in", self.key, "-pubout", "-out", self.pub)
        self.children = []
        self.passed = []
        self.failed = []
        self.pki = {}
        self.zctx = zmq.Context()

    def kill_children(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()

    def cleanup(self, keep=False):
        self.kill_children()
        self.zctx.destroy(linger=0)
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


CTX = None


def setup(dfpod, dfbridge, prefix="dftest-"):
    global CTX
    CTX = Ctx(dfpod, dfbridge, prefix)
    return CTX


def openssl(*args, inp=None, cwd=None):
    return subprocess.run(["openssl", *args], input=inp, capture_output=True, check=True,
                          timeout=60, cwd=cwd).stdout


def make_pki(bot="my-bot", extra=False):
    """A private CA, a server certificate for 127.0.0.1/::1/localhost and a client certificate
    whose CN is the bot's username (PEM files in CTX.tmp/pki-<bot>); returns their paths: ca,
    ca_key, cert, key, client_cert, client_key, bot (certificate + key: the Python BDK's
    certificate.path). extra adds other_ca (an unrelated CA), wrongname_cert/wrongname_key (the
    CA's certificate for other.example), intruder (certificate + key, CN intruder) and p12 (the
    bot's PKCS#12, the Java BDK's format, password p12-secret)."""
    d = os.path.join(CTX.tmp, "pki-" + bot)
    if (d, extra) in CTX.pki:
        return CTX.pki[(d, extra)]
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, v) for k, v in (
        ("ca", "ca.pem"), ("ca_key", "ca.key"), ("cert", "server.crt"), ("key", "server.key"),
        ("client_cert", "bot.crt"), ("client_key", "bot.key"), ("bot", "bot.pem"),
        ("other_ca", "other-ca.pem"), ("wrongname_cert", "wrongname.crt"),
        ("wrongname_key", "wrongname.key"), ("intruder", "intruder.pem"), ("p12", "bot.p12"))}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p["ca_key"], "-out",
            p["ca"], "-days", "2", "-subj", "/CN=dftest CA")

    def signed(name, cn, ext):
        csr = os.path.join(d, name + ".csr")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", os.path.join(d, name + ".key"),
                "-out", csr, "-subj", "/CN=" + cn)
        extf = os.path.join(d, name + ".ext")
        with open(extf, "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"],
                "-CAcreateserial", "-out", os.path.join(d, name + ".crt"), "-days", "2",
                "-extfile", extf)
        with open(os.path.join(d, name + ".pem"), "w") as f:  # certificate + key in one PEM
            f.write(read_text(os.path.join(d, name + ".crt")) +
                    read_text(os.path.join(d, name + ".key")))

    signed("server", "localhost", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost")
    signed("bot", bot, "extendedKeyUsage=clientAuth")
    if extra:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                os.path.join(d, "other-ca.key"), "-out", p["other_ca"], "-days", "2", "-subj",
                "/CN=some other CA")
        signed("wrongname", "other.example", "subjectAltName=DNS:other.example")
        signed("intruder", "intruder", "extendedKeyUsage=clientAuth")
        openssl("pkcs12", "-export", "-in", p["client_cert"], "-inkey", p["client_key"],
                "-passout", "pass:p12-secret", "-out", p["p12"])
    CTX.pki[(d, extra)] = p
    return p


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_jwt(sub="my-bot", exp_in=240):
    """An RS512 JWT signed with the bot key, as the BDKs make it."""
    hdr = b64url(json.dumps({"alg": "RS512", "typ": "JWT"}).encode())
    pay = b64url(json.dumps({"sub": sub, "exp": int(time.time()) + exp_in}).encode())
    sig = openssl("dgst", "-sha512", "-sign", CTX.key, inp=(hdr + "." + pay).encode())
    return hdr + "." + pay + "." + b64url(sig)


# ---- dfpod -----------------------------------------------------------------------------------
class Pod:
    """A dfpod on 127.0.0.1:0; args are extra command-line options."""

    def __init__(self, *args, username="my-bot", tls=None, timeout=30):
        """tls: None, or a dict of PEM paths {ca, client_cert?, client_key?, check_hostname?}: the
        pod serves HTTPS (its control interface too; args carry --tls-cert/--tls-key).
        timeout: of each HTTP request of the test to the pod, seconds."""
        self.tls = tls
        self.timeout = timeout
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

    def req(self, method, path, body=None, headers=None, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        if self.tls:
            sc = ssl.create_default_context(cafile=self.tls["ca"])
            sc.check_hostname = self.tls.get("check_hostname", True)
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

    def admin(self, method, path, body=None, ok=(200,)):
        st, data = self.req(method, "/admin/" + path, body)
        if st not in ok:
            raise Failure("admin %s %s -> %d %r" % (method, path, st, data))
        return data

    def faults(self, *faults):
        """Queues faults (dicts) in order."""
        return self.admin("POST", "faults", list(faults))

    def calls(self, endpoint=None):
        """The call log (endpoint: one name or several joined by '|'), the test's own hidden."""
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

    def wait_held(self, n=1, timeout=None):
        return wait_until(lambda: self.counter("held") >= n, "a held read", timeout)

    def feeds(self):
        return [f["id"] for f in self.admin("GET", "feeds")]

    def events(self, evs):
        return self.admin("POST", "events", evs)

    def served_events(self):
        return self.admin("GET", "events")

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

    def text(self):
        return read_text(self.log_path)

    def stop(self):
        """SIGTERM (a kill after 10 s); a sanitizer report in its log is a failed check."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
            check(log_clean(self.text()), "sanitizer report from dfpod")


# ---- dfbridge --------------------------------------------------------------------------------
class Bridge:
    """A dfbridge with a BDK-style config pointing at pod.

    datafeed/retry/extra are YAML fragments (top-level sections, extra after the bridge section),
    bridge_extra lines of the bridge section. Defaults keep every test fast: datafeed.retry and
    retry with 2 attempts and 10 ms waits, as the BDK tests' minimal configs. read_timeout_ms or
    connect_timeout_ms None leaves that key out; env: the bridge's environment.
    """

    def __init__(self, pod, datafeed=None, retry=None, extra="", bridge_extra="", username="my-bot",
                 agent_port=None, read_timeout_ms=5000, connect_timeout_ms=2000, bot=None,
                 scheme="http", start=True, env=None):
        self.pod = pod
        self.env = env
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
        timeouts = ""
        if read_timeout_ms is not None:
            timeouts += "  readTimeoutMillis: %d\n" % read_timeout_ms
        if connect_timeout_ms is not None:
            timeouts += "  connectTimeoutMillis: %d\n" % connect_timeout_ms
        self.config = ("scheme: %s\nhost: 127.0.0.1\nport: %d\n%s"
                       "bot:\n  username: %s\n%s%s%s"
                       "bridge:\n  publish: %s\n  logLevel: debug\n%s%s%s"
                       % (scheme, pod.port, agent, username, bot, datafeed, retry,
                          self.endpoint, timeouts, bridge_extra, extra))
        with open(self.cfg_path, "w") as f:
            f.write(self.config)
        self.proc = None
        self.rc = None
        if start:
            self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([CTX.dfbridge, "--config", self.cfg_path],
                                     stdout=self.log, stderr=self.log, env=self.env)
        CTX.children.append(self.proc)
        self.rc = None

    def running(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=15.0):
        """Waits for the bridge to end by itself; returns its exit status. Still running after
        timeout: a failed check, and it is killed."""
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = self.proc.returncode
            check(False, "dfbridge still running after %.0f s" % timeout)
        self.log.close()
        return self.rc

    def terminate(self, sig=signal.SIGTERM, timeout=10.0, must=True):
        """Signals the bridge and waits for its end: (exit status, seconds). Still running after
        timeout: killed (exit status None), and with must a failed check."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.rc = None
            check(not must, "dfbridge ignored the signal for %.0f s" % timeout)
        dt = time.monotonic() - t0
        self.log.close()
        return self.rc, dt

    def stop(self, sig=signal.SIGTERM, within=5.0):
        """Signals the bridge; checks it exits 0 within `within` seconds (5 s: far below the
        30 s hold or the backoff a stop must cut short, a margin loaded ASan runs keep)."""
        if self.proc.poll() is not None:
            raise Failure("dfbridge had already exited with %d" % self.proc.returncode)
        rc, dt = self.terminate(sig, max(within, 10))
        eq(rc, EXIT_STOPPED, "exit status after a signal")
        check(dt <= within, "dfbridge took %.2f s to stop (max %.1f)" % (dt, within))
        return dt

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "log", None) and not self.log.closed:
            self.log.close()

    def text(self):
        return read_text(self.log_path)

    def errors(self):
        """The log's error lines (level 'error'), without their timestamps."""
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):  # bridge.logFormat: json
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if o.get("level") == "error":
                    out.append(o.get("message", ""))
                continue
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

    def info(self, timeout_ms=10000):
        """The live counters: the replay socket's info request (schemas/CONTRACT.md, "Replay");
        needs self.replay (the replay endpoint). Returns the reply (keys v, req, epoch, ts,
        counters) or None after timeout_ms without an answer."""
        return replay_info(self.replay, timeout_ms)

    def counter(self, name, timeout_ms=10000):
        """One live counter by its info name (e.g. "deduped"), read while the bridge runs."""
        reply = self.info(timeout_ms)
        check(reply is not None, "an info answer from %s" % self.replay)
        return reply["counters"][name] if reply else None

    def final_counter(self, name):
        """The last 'name N' in the log (the counters logged at exit), or None."""
        m = re.findall(r"\b%s (\d+)" % re.escape(name), self.text())
        return int(m[-1]) if m else None

    def check_clean(self):
        check(log_clean(self.text()), "sanitizer report from dfbridge")


def replay_info(endpoint, timeout_ms=10000, req=1):
    """Asks a bridge's replay endpoint for its info (the live counters): the reply dict, or None
    after timeout_ms. A DEALER of its own, closed after the answer."""
    d = CTX.zctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(endpoint)
    try:
        d.send(msgpack.packb({"v": 1, "req": req, "info": True}, use_bin_type=True))
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            if not d.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            frames = d.recv_multipart()
            if len(frames) == 2 and frames[0] == b"_info":
                return unpack(frames[1])
        return None
    finally:
        d.close()


class ReplayClient:
    """A replay DEALER kept open, plain or CURVE (curve = (public, secret, server's public), Z85
    bytes). ask() sends its request again when 1 s passes without a message (a CURVE re-bind
    abandons the request in flight; the DEALER reconnects by itself) and skips answers to earlier
    requests."""

    def __init__(self, endpoint, curve=None):
        self.sock = CTX.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.connect(endpoint)
        self.req = 0

    def ask(self, timeout=15.0, **kw):
        """One request: the info dict, or ([(topic bytes, body bytes)], end dict); None after
        timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.req += 1
            req = {"v": 1, "req": self.req}
            req.update(kw)
            self.sock.send(msgpack.packb(req, use_bin_type=True))
            out = []
            quiet_until = time.monotonic() + 1.0
            while time.monotonic() < quiet_until:
                if not self.sock.poll(100):
                    continue
                topic, body = self.sock.recv_multipart()
                if topic in (b"_end", b"_info"):
                    ans = unpack(body)
                    if ans.get("req") != self.req:
                        continue  # the answer to an earlier, abandoned request
                    return ans if topic == b"_info" else (out, ans)
                out.append((topic, body))
                quiet_until = time.monotonic() + 1.0
        return None

    def info(self):
        """The bridge's counters, or None."""
        r = self.ask(info=True)
        return r["counters"] if r else None

    def journal(self, frm=1, to=None):
        """Every message from gseq frm (to gseq to, or the head), following `more`:
        {gseq: (topic bytes, body bytes)}. A failed answer is a check failure."""
        got, gseq = {}, frm
        while to is None or gseq <= to:
            r = self.ask(from_gseq=gseq)
            if not check(r is not None and r[1].get("status") == "ok",
                         "replay answer from gseq %d: %r" % (gseq, r and r[1])):
                break
            for topic, body in r[0]:
                g = unpack(body)["gseq"]
                if to is None or g <= to:
                    check(g not in got, "gseq %d comes once from replay" % g)
                    got[g] = (topic, body)
            if not r[1].get("more"):
                break
            gseq = r[1]["last_gseq"] + 1
        return got

    def close(self):
        self.sock.close(linger=0)


# ---- subscribers -----------------------------------------------------------------------------
def unpack(body):
    """An envelope (msgpack) as a dict."""
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def sub_socket(endpoints, topics=(b"",), rcvhwm=None):
    """A raw SUB socket connected to every endpoint, subscribed to topics."""
    s = CTX.zctx.socket(zmq.SUB)
    if rcvhwm is not None:
        s.setsockopt(zmq.RCVHWM, rcvhwm)
    s.setsockopt(zmq.LINGER, 0)
    for t in topics:
        s.setsockopt(zmq.SUBSCRIBE, t)
    for e in endpoints:
        s.connect(e)
    return s


def recv_raw(sock, timeout_ms=20000):
    """One two-frame message (topic str, body bytes), reserved '_' topics included, or None."""
    if not sock.poll(timeout_ms):
        return None
    topic, body = sock.recv_multipart()
    return topic.decode(), body


class Sub:
    """A SUB socket on the bridge's endpoint, subscribed to every topic."""

    def __init__(self, bridge):
        self.sock = sub_socket([bridge.endpoint])
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
        return frames[0].decode(), unpack(frames[1])

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

    def take(self, n, timeout=20.0):
        """Receives up to n further event messages (probes are counted apart), in order, within
        timeout seconds; returns them as [(topic, envelope)] (also kept in got)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left < 0:
                break
            m = self.recv(min(200, int(left * 1000)))
            if m is None:
                continue
            if self.is_probe(m):
                self.probes += 1
            else:
                self.got.append(m)
                out.append(m)
        return out

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


def event(i, etype="MESSAGESENT", user=68719476737, prefix="ev", payload=None):
    """A datafeed event with id <prefix>-<i>; payload defaults to a messageSent."""
    if payload is None:
        payload = {"messageSent": {"message": {"message": "<p>%d</p>" % i}}}
    return {"id": "%s-%d" % (prefix, i), "timestamp": 1700000000000 + i, "type": etype,
            "initiator": {"user": {"userId": user}}, "payload": payload}


# ---- the --case/--group drivers (soft checks) -----------------------------------------------
def run_cases(cases, argv, option="case", prefix="dftest-"):
    """Runs one case (cases: name -> function of no argument), chosen by --<option>, with soft
    checks; afterwards every child is killed and every log in the temporary folder must be free
    of sanitizer reports; on a failure the logs are printed. Returns the exit status."""
    import argparse
    soft_checks()
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--dfbridge", required=True)
    ap.add_argument("--" + option, required=True, choices=sorted(cases))
    a = ap.parse_args(argv)
    name = getattr(a, option)
    ctx = setup(a.dfpod, a.dfbridge, prefix)
    t0 = time.monotonic()
    try:
        cases[name]()
    except Exception as e:  # a crash is a failure with its reason, then the logs
        traceback.print_exc()
        check(False, "exception: %r" % e)
    finally:
        ctx.kill_children()
        logs = sorted(n for n in os.listdir(ctx.tmp) if n.endswith(".log"))
        for n in logs:
            check(log_clean(read_text(os.path.join(ctx.tmp, n))), "no sanitizer report in " + n)
        if FAILS:
            for n in sorted(logs + [n for n in os.listdir(ctx.tmp) if n.endswith(".yaml")]):
                sys.stdout.write("---- %s (last 4000 chars)\n%s\n"
                                 % (n, read_text(os.path.join(ctx.tmp, n))[-4000:]))
        ctx.cleanup()
    print("%s: %d passed, %d failed, %.1f s" % (name, PASSES, len(FAILS), time.monotonic() - t0))
    return 1 if FAILS else 0
