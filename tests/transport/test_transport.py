#!/usr/bin/python3
"""Transport tests: dfpod over HTTPS (a test CA made with the openssl command line) -> dfbridge
-> a ZeroMQ SUB socket. TLS verification, trust store, mutual-TLS certificate authentication,
simplified key delivery, HTTP proxies (a CONNECT/forward proxy run here, with and without
credentials), defaultHeaders and User-Agent, and a 401 on re-authentication.

Usage: test_transport.py --dfpod BIN --dfbridge BIN --group NAME
Loopback only; every wait is bounded and waits for a signal (port file, a pod counter, an event
received, a process exit), never a fixed sleep."""

import base64
import os
import select
import socket
import socketserver
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, Pod, Sub, check, free_port, make_pki  # noqa: E402
from dftest import poll_until as wait_for  # noqa: E402

BOT = "tt-bot"


# ---- a small HTTP proxy: CONNECT tunnels and absolute-URI forwarding ------------------------


class Proxy:
    """Records every request line and its Proxy-Authorization; with credentials, anything
    without the right Basic credentials gets 407."""

    def __init__(self, user=None, password=None):
        self.seen = []  # (method, target, proxy_authorization or None)
        self.lock = threading.Lock()
        self.want = None
        if user is not None:
            self.want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy.handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self):
        with self.lock:
            return list(self.seen)

    @staticmethod
    def read_head(sock, buf=b""):
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return None, b""
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        return head.decode("latin-1"), rest

    def handle(self, client):
        client.settimeout(120)
        buf = b""
        while True:  # keep-alive: one forwarded request after another
            head, buf = self.read_head(client, buf)
            if head is None:
                return
            lines = head.split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            auth = headers.get("proxy-authorization")
            with self.lock:
                self.seen.append((method, target, auth))
            if self.want is not None and auth != self.want:
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                               b"Content-Length: 0\r\n\r\n")
                continue
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up = socket.create_connection((host.strip("[]"), int(port)))
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.pipe(client, up, buf)
                return
            # Forward an absolute-URI request, minus the hop-by-hop proxy headers.
            length = int(headers.get("content-length", "0"))
            while len(buf) < length:
                chunk = client.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            u = urllib.parse.urlsplit(target)
            up = socket.create_connection((u.hostname, u.port))
            path = u.path + ("?" + u.query if u.query else "")
            out = [f"{method} {path} HTTP/1.1"]
            for line in lines[1:]:
                k = line.partition(":")[0].strip().lower()
                if k not in ("proxy-authorization", "proxy-connection", "connection"):
                    out.append(line)
            out.append("Connection: close")
            up.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            reply = b""
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                reply += chunk
            up.close()
            # The reply had Connection: close; tell the client the same and end.
            client.sendall(reply)
            return

    @staticmethod
    def pipe(a, b, pending):
        if pending:
            b.sendall(pending)
        socks = [a, b]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 120)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            b.close()


import urllib.parse  # noqa: E402  (used by Proxy.handle)


# ---- the environment: pod, bridge, subscriber ---------------------------------------------


class Env:
    """One dfpod and one dfbridge at a time (each start replaces the previous one), the PKI of
    dftest.make_pki (BOT's client certificate and the extras) and a subscriber per bridge."""

    def __init__(self):
        self.pki = make_pki(BOT, extra=True)
        self.dir = os.path.dirname(self.pki["ca"])
        self.pod = None
        self.bridge = None
        self.bridge_rc = None
        self.bridge_log_path = None
        self.pod_port = None
        self.tls = True
        self.sub = None

    def path(self, name):
        """A file of the PKI (ca.pem, other-ca.pem, bot.pem, bot.p12, intruder.pem, ...)."""
        return os.path.join(self.dir, name)

    # -- pod --
    def pod_start(self, *extra, tls=True, client_ca=False, server="server"):
        self.pod_stop()
        self.tls = tls
        argv = ["--hold-ms", "300"]
        if tls:
            argv += ["--tls-cert", self.path(server + ".crt"),
                     "--tls-key", self.path(server + ".key")]
        if client_ca:
            argv += ["--tls-client-ca", self.path("ca.pem")]
        argv += list(extra)
        # the test's own calls check the host name unless the pod has the wrong-name certificate
        t = {"ca": self.path("ca.pem"), "check_hostname": server == "server"} if tls else None
        self.pod = Pod(*argv, username=BOT, tls=t, timeout=10)
        self.pod_port = self.pod.port

    def pod_stop(self):
        if self.pod:
            self.pod.stop()
            self.pod = None

    def admin(self, method, path, body=None):
        return self.pod.admin(method, path[len("/admin/"):], body, ok=(200, 201))

    def calls(self):
        return self.pod.calls()

    def counters(self):
        return self.pod.counters()

    # -- bridge --
    def bridge_start(self, yaml, auth="rsa"):
        """Writes a config (base + yaml) and starts dfbridge. auth: rsa, cert (PEM), none."""
        self.bridge_stop()
        bot = {"rsa": None,
               "cert": f"  certificate:\n    path: {self.path('bot.pem')}\n",
               "none": ""}[auth]
        env = dict(os.environ)
        # Environment proxies must be ignored: point them at a dead port.
        dead = f"http://127.0.0.1:{free_port()}"
        env.update(http_proxy=dead, https_proxy=dead, HTTPS_PROXY=dead, ALL_PROXY=dead)
        self.bridge = Bridge(
            self.pod, scheme="https" if self.tls else "http", username=BOT, bot=bot,
            datafeed="datafeed:\n  retry:\n    initialIntervalMillis: 50\n"
                     "    maxIntervalMillis: 400\n",
            retry="retry:\n  maxAttempts: 3\n  initialIntervalMillis: 50\n"
                  "  maxIntervalMillis: 100\n",
            extra=yaml, read_timeout_ms=None, connect_timeout_ms=None, env=env)
        self.bridge_log_path = self.bridge.log_path
        self.bridge_rc = None
        if self.sub:
            self.sub.close()
        self.sub = Sub(self.bridge)

    def bridge_wait(self, timeout):
        """Exit status of the bridge; still running after timeout seconds is a failure."""
        self.bridge_rc = self.bridge.wait_exit(timeout)
        return self.bridge_rc

    def bridge_stop(self):
        if self.bridge:
            if self.bridge.running():
                rc, _ = self.bridge.terminate(timeout=10, must=False)
                self.bridge_rc = -9 if rc is None else rc
            else:
                self.bridge.kill()  # closes its log
                self.bridge_rc = self.bridge.proc.returncode
            self.bridge.check_clean()
            self.bridge = None

    def log(self):
        return dftest.read_text(self.bridge_log_path)

    # -- events --
    def flow(self, n=34):
        """Generates n events and checks each reaches the subscriber exactly once."""
        self.sub.sync(self.pod, timeout=30)
        first = self.admin("POST", "/admin/generate", {"count": n, "seed": 7})
        every = [e["id"] for e in self.admin("GET", "/admin/events")]
        want = set(every[every.index(first["first_id"]):])
        self.sub.wait_ids(want, timeout=30)
        ids = [m[1]["event"].get("id") for m in self.sub.got]
        ids = [i for i in ids if i in want]
        check(len(want) == n, f"the pod generated {n} events ({len(want)})")
        return check(sorted(ids) == sorted(want), f"{n} events received once each (got {len(ids)})")

    def close(self):
        self.bridge_stop()
        self.pod_stop()
        if self.sub:
            self.sub.close()


def header(call, name):
    for k, v in (call.get("headers") or {}).items():
        if k.lower() == name.lower():
            return v
    return None


def endpoints(calls):
    return [c["endpoint"] for c in calls]


# ---- the tests -----------------------------------------------------------------------------


def t_tls_verify(env):
    """HTTPS pod with a private CA: verification is on by default, so an unknown CA is a clear
    configuration error, not retried: one error line naming ssl.trustStore.path and curl's
    reason, exit 1; a trust store of another CA fails the same way."""
    env.pod_start()
    for label, yaml in (("no trust store", ""),
                        ("another CA", f"ssl:\n  trustStore:\n    path: {env.path('other-ca.pem')}\n")):
        env.bridge_start(yaml)
        rc = env.bridge_wait(30)
        log = env.log()
        check(rc == 1, f"{label}: bridge exits 1 (fatal), got {rc}")
        errs = [l for l in log.splitlines() if " error " in l and "pod authentication" in l
                and "TLS certificate problem" in l]
        check(len(errs) == 1, f"{label}: one error line, got {len(errs)}")
        check(errs and "ssl.trustStore.path" in errs[0] and "not retried" in errs[0]
              and "certificate" in errs[0].split("(", 2)[-1].lower(),
              f"{label}: the line names ssl.trustStore.path and says why: {errs}")
        check(" warn " not in log or "pod authentication" not in
              "".join(l for l in log.splitlines() if " warn " in l), f"{label}: no retry")
        print("  ", errs[0] if errs else "(no line)")
    c = env.counters()
    check(c["calls"].get("auth", 0) == 0, "no HTTP request reached the pod (handshake refused)")
    # The right CA but a certificate for another host name: refused the same way.
    env.pod_start(server="wrongname")
    env.bridge_start(f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n")
    rc = env.bridge_wait(30)
    log = env.log()
    check(rc == 1, f"wrong host name: exit 1, got {rc}")
    check("TLS certificate problem" in log and "127.0.0.1" in log.split("TLS certificate problem")[1]
          .splitlines()[0], "wrong host name: the line says which name did not match")
    check(env.counters()["calls"].get("auth", 0) == 0, "wrong host name: no request reached the pod")


def t_truststore(env):
    """ssl.trustStore.path with the private CA: events flow over HTTPS; the pod saw the usual
    RSA calls; a trust store that is not PEM is a config error (exit 2) naming the key."""
    env.pod_start()
    env.bridge_start(f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n")
    env.flow()
    eps = endpoints(env.calls())
    check(eps[:3] == ["auth", "relay", "sessioninfo"], f"login, relay, sessioninfo first: {eps[:3]}")
    check("trusting the 1 certificate of" in env.log(), "start-up log names the trust store")
    env.bridge_stop()
    check(env.bridge_rc == 0, f"SIGTERM: exit 0, got {env.bridge_rc}")
    env.bridge_start(f"ssl:\n  trustStore:\n    path: {env.path('bot.p12')}\n")
    rc = env.bridge_wait(10)
    check(rc == 2, f"PKCS#12 trust store: exit 2, got {rc}")
    check("config: ssl.trustStore.path: '" in env.log() and "holds no PEM certificate" in env.log(),
          "the message names ssl.trustStore.path")


def t_mtls(env):
    """Certificate authentication: no private key, bot.certificate.path (PEM, then PKCS#12 with
    password); /sessionauth and /keyauth over mutual TLS with CN = the bot; no /login or /relay;
    events flow. A certificate for another CN gets 401: exit 4 with a clear line."""
    env.pod_start(client_ca=True)
    ts = f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n"
    for label, bot_yaml in (("PEM", None),
                            ("PKCS#12", f"  certificate:\n    path: {env.path('bot.p12')}\n"
                                        "    password: p12-secret\n")):
        env.admin("DELETE", "/admin/calls")
        if bot_yaml is None:
            env.bridge_start(ts, auth="cert")
        else:
            env.bridge_start(ts + "bot:\n  username: " + BOT + "\n" + bot_yaml, auth="none")
        env.flow()
        calls = env.calls()
        eps = endpoints(calls)
        check(eps[:3] == ["sessionauth", "keyauth", "sessioninfo"],
              f"{label}: sessionauth, keyauth, sessioninfo first: {eps[:4]}")
        check("auth" not in eps and "relay" not in eps, f"{label}: no RSA endpoint called")
        sa = [c for c in calls if c["endpoint"] in ("sessionauth", "keyauth")]
        check(len(sa) == 2 and all(c["status"] == 200 and c.get("clientCn") == BOT and c["body"] == ""
                                   for c in sa),
              f"{label}: both certificate calls 200 with CN {BOT} and no body")
        reads = [c for c in calls if c["endpoint"] == "read"]
        check(reads and all(c.get("clientCn") is None for c in reads),
              f"{label}: the certificate is presented to /sessionauth and /keyauth only")
        check(env.admin("GET", "/admin/counters")["auth_ok"] >= 2, f"{label}: auth_ok counted")
        env.bridge_stop()
        check(env.bridge_rc == 0, f"{label}: exit 0 on SIGTERM, got {env.bridge_rc}")
        # The held read ends (and is logged) once the pod sees the client gone.
        check(wait_for(lambda: env.counters()["reads_held"] == 0, 10, 0.1), "no read held")
        if "p12-secret" in env.log():
            check(False, f"{label}: the certificate password is not logged")
    # The pod refuses a certificate whose CN is not the bot.
    env.bridge_start(ts + "bot:\n  username: " + BOT + "\n  certificate:\n    path: "
                     + env.path("intruder.pem") + "\n", auth="none")
    rc = env.bridge_wait(20)
    log = env.log()
    check(rc == 4, f"wrong CN: exit 4 (authentication refused), got {rc}")
    check("session authentication: 401" in log and "CN must be the username" in log,
          "wrong CN: the 401 line names the certificate")
    check("the certificate's CN is 'intruder', not bot.username" in log, "wrong CN: start-up warning")


def t_skd(env):
    """Simplified key delivery: the session token is a JWT with canUseSimplifiedKeyDelivery and
    the agent says 24.12.1: no /relay (RSA) or /keyauth (certificate) call, reads without a
    keyManagerToken, events flow. With an agent 24.11 the key manager is used again."""
    ts = f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n"
    for auth, km_ep in (("rsa", "relay"), ("cert", "keyauth")):
        env.pod_start("--skd", client_ca=True)
        env.bridge_start(ts, auth=auth)
        env.flow()
        calls = env.calls()
        eps = endpoints(calls)
        first = "auth" if auth == "rsa" else "sessionauth"
        check(eps[:3] == [first, "agentinfo", "sessioninfo"],
              f"{auth}: login, agent info, sessioninfo: {eps[:3]}")
        check(km_ep not in eps and "relay" not in eps and "keyauth" not in eps,
              f"{auth}: no key manager call: {sorted(set(eps))}")
        data = [c for c in calls if c["endpoint"] in ("read", "list", "create", "sessioninfo")]
        check(data and all(header(c, "keyManagerToken") is None for c in data),
              f"{auth}: no keyManagerToken header on pod/agent calls")
        check(all(header(c, "sessionToken") == "<redacted>" for c in data),
              f"{auth}: sessionToken sent (redacted in the pod's log)")
        check("no key manager token needed" in env.log(), f"{auth}: the log says SKD is used")
        env.bridge_stop()
    env.pod_start("--skd", "--agent-version", "Agent-24.11.3")
    env.bridge_start(ts)
    env.flow(17)
    eps = endpoints(env.calls())
    check(eps[:4] == ["auth", "agentinfo", "relay", "sessioninfo"],
          f"agent 24.11: the key manager is called: {eps[:4]}")
    reads = [c for c in env.calls() if c["endpoint"] == "read"]
    check(reads and all(header(c, "keyManagerToken") == "<redacted>" for c in reads),
          "agent 24.11: reads carry a keyManagerToken")


def t_proxy(env):
    """proxy: HTTPS through a CONNECT proxy (every connection of the bridge tunnels through
    it); then plain HTTP with a global proxy and agent.proxy: the global proxy forwards exactly
    the pod and key-manager calls, the agent proxy exactly the agent calls."""
    env.pod_start()
    p = Proxy()
    try:
        env.bridge_start(f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n"
                         f"proxy:\n  host: 127.0.0.1\n  port: {p.port}\n")
        env.flow()
        seen = p.requests()
        check(seen and all(m == "CONNECT" and t == f"127.0.0.1:{env.pod_port}" for m, t, _ in seen),
              f"only CONNECT 127.0.0.1:{env.pod_port} at the proxy: {seen[:3]}")
        check(all(a is None for _, _, a in seen), "no Proxy-Authorization without credentials")
        check(env.counters()["calls"].get("read", 0) >= 1, "reads reached the pod")
        check("through proxy 127.0.0.1:%d" % p.port in env.log(), "start-up log names the proxy")
        env.bridge_stop()
    finally:
        p.close()
    # Plain HTTP: forwarded requests show their URLs.
    env.pod_start(tls=False)
    g, a = Proxy(), Proxy()
    try:
        env.bridge_start(f"proxy:\n  host: 127.0.0.1\n  port: {g.port}\n"
                         f"agent:\n  proxy:\n    host: 127.0.0.1\n    port: {a.port}\n")
        env.flow()
        base = f"http://127.0.0.1:{env.pod_port}"
        gp = [t for _, t, _ in g.requests()]
        ap = [t for _, t, _ in a.requests()]
        check(gp[:3] == [base + "/login/pubkey/authenticate", base + "/relay/pubkey/authenticate",
                         base + "/pod/v2/sessioninfo"],
              f"global proxy: login, relay, sessioninfo: {gp[:3]}")
        check(all(not t.startswith(base + "/agent") for t in gp), "global proxy: no agent call")
        check(ap and all(t.startswith(base + "/agent/v5/datafeeds") for t in ap),
              f"agent proxy: only datafeed calls ({len(ap)})")
        # Stopped first: a held read is in the pod's log once it ends.
        env.bridge_stop()
        ap = [t for _, t, _ in a.requests()]

        def agent_calls():
            return sum(1 for c in env.calls() if c["path"].startswith("/agent/"))
        wait_for(lambda: agent_calls() == len(ap), 10, 0.1)
        n_agent = agent_calls()
        check(len(ap) == n_agent, f"every agent call went through the agent proxy ({len(ap)} vs {n_agent})")
    finally:
        g.close()
        a.close()


def t_proxy_auth(env):
    """Proxy credentials: every request at the proxy carries Proxy-Authorization: Basic
    user:password, the pod never sees it, the password is never logged; wrong credentials are
    a clear failure (407) that ends the bridge. HTTPS through CONNECT with credentials too."""
    env.pod_start(tls=False)
    p = Proxy("proxy-user", "pr0xy-s3cret")
    try:
        env.bridge_start(f"proxy:\n  host: 127.0.0.1\n  port: {p.port}\n"
                         "  username: proxy-user\n  password: pr0xy-s3cret\n")
        env.flow()
        want = "Basic " + base64.b64encode(b"proxy-user:pr0xy-s3cret").decode()
        seen = p.requests()
        check(seen and all(auth == want for _, _, auth in seen),
              f"every proxied request has the credentials ({len(seen)})")
        check(all(header(c, "Proxy-Authorization") is None for c in env.calls()),
              "the pod never sees Proxy-Authorization")
        check("pr0xy-s3cret" not in env.log(), "the proxy password is not logged")
        check("(with credentials)" in env.log(), "the log says credentials are used")
        env.bridge_stop()
        env.bridge_start(f"proxy:\n  host: 127.0.0.1\n  port: {p.port}\n"
                         "  username: proxy-user\n  password: wrong\n")
        rc = env.bridge_wait(20)
        check(rc == 1, f"wrong proxy password: exit 1, got {rc}")
        check("407" in env.log() and "proxy.password" in env.log(),
              "wrong proxy password: the message says 407 and names proxy.password")
    finally:
        p.close()
    env.pod_start()
    p = Proxy("u2", "p2")
    try:
        env.bridge_start(f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n"
                         f"proxy:\n  host: 127.0.0.1\n  port: {p.port}\n  username: u2\n  password: p2\n")
        env.flow(17)
        want = "Basic " + base64.b64encode(b"u2:p2").decode()
        seen = p.requests()
        check(seen and all(m == "CONNECT" and a == want for m, _, a in seen),
              "HTTPS: CONNECT with credentials")
    finally:
        p.close()


def t_headers(env):
    """defaultHeaders and User-Agent as the pod sees them: the global headers on pod and key
    manager calls, agent.defaultHeaders replacing them on agent calls, a User-Agent in
    keyManager.defaultHeaders replacing the bridge's there; everywhere else
    User-Agent: dfbridge/<version>."""
    version = subprocess.run([dftest.CTX.dfbridge, "--version"], capture_output=True,
                             text=True).stdout.split()[1]
    env.pod_start()
    env.bridge_start(f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n"
                     "defaultHeaders:\n  X-Team: bots\n  X-Api-Key: k-123-secret\n"
                     "agent:\n  defaultHeaders:\n    X-Agent-Only: 'yes'\n"
                     "keyManager:\n  defaultHeaders:\n    User-Agent: custom-ua/1.0\n    X-Km: km\n")
    env.flow()
    calls = env.calls()
    by = {}
    for c in calls:
        by.setdefault(c["endpoint"], []).append(c)
    ua = f"dfbridge/{version}"
    for ep in ("auth", "sessioninfo"):
        for c in by.get(ep, []):
            check(header(c, "X-Team") == "bots" and header(c, "X-Api-Key") == "k-123-secret",
                  f"{ep}: global defaultHeaders")
            check(header(c, "User-Agent") == ua, f"{ep}: User-Agent {ua}: {header(c, 'User-Agent')}")
            check(header(c, "X-Agent-Only") is None, f"{ep}: no agent header")
    for ep in ("list", "create", "read"):
        for c in by.get(ep, []):
            check(header(c, "X-Agent-Only") == "yes", f"{ep}: agent.defaultHeaders")
            check(header(c, "X-Team") is None, f"{ep}: the agent's headers replace the global ones")
            check(header(c, "User-Agent") == ua, f"{ep}: User-Agent")
    check(len(by.get("read", [])) >= 1 and len(by.get("relay", [])) == 1, "calls were made")
    for c in by.get("relay", []):
        check(header(c, "User-Agent") == "custom-ua/1.0", "relay: User-Agent from defaultHeaders")
        check(header(c, "X-Km") == "km" and header(c, "X-Team") is None, "relay: its own headers")
    check(all(len(header(c, "X-Trace-Id") or "") == 6 for c in calls), "X-Trace-Id on every call")
    check("k-123-secret" not in env.log(), "header values are not logged")


def t_reauth_401(env):
    """A 401 from a call makes the bridge re-authenticate (events keep flowing); when the
    re-authentication itself gets 401 the bridge ends with status 4 and says why."""
    env.pod_start()
    env.bridge_start(f"ssl:\n  trustStore:\n    path: {env.path('ca.pem')}\n")
    env.flow(17)
    env.admin("POST", "/admin/faults", {"endpoint": "read", "action": "expire_token"})
    env.flow(17)  # re-authenticated
    n_auth = endpoints(env.calls()).count("auth")
    check(n_auth == 2, f"one re-authentication after the 401 ({n_auth} logins)")
    env.admin("POST", "/admin/faults", [{"endpoint": "read", "action": "expire_token"},
                                        {"endpoint": "auth", "action": "status", "status": 401}])
    rc = env.bridge_wait(20)
    log = env.log()
    check(rc == 4, f"401 on re-authentication: exit 4, got {rc}")
    check("pod authentication: 401" in log, "the 401 line names the call")
    tail = [l for l in log.splitlines() if " error " in l]
    check(tail, "an error line says why")
    print("  last error lines:", *tail[-2:], sep="\n    ")


GROUPS = {
    "tls_verify": t_tls_verify,
    "truststore": t_truststore,
    "mtls": t_mtls,
    "skd": t_skd,
    "proxy": t_proxy,
    "proxy_auth": t_proxy_auth,
    "headers": t_headers,
    "reauth_401": t_reauth_401,
}


def with_env(group):
    def run():
        env = Env()
        try:
            group(env)
        finally:
            env.close()
    return run


if __name__ == "__main__":
    sys.exit(dftest.run_cases({k: with_env(v) for k, v in GROUPS.items()}, sys.argv[1:],
                              option="group", prefix="dfb_transport_"))
