#!/usr/bin/python3
"""Secrets tests (issue 9 §4): no token, JWT, key, proxy password or defaultHeaders value ever
appears in what dfbridge shows - its log (stdout and stderr), `--check`, the info answer, the
SIGUSR1 dump, dftail's output - even when the pod echoes every request header back in an error
body, authentication fails, a proxy refuses, or the config is bad. And the permission rule of
secret files (bridge.strictPermissions).

Every secret is a distinctive string; the tokens and JWTs are the ones dfpod actually issued
(GET /admin/tokens) and received (its call log). Each group also checks that the secret was in
play (sent to the pod, echoed back) so that the test fails if the redaction breaks.

Usage: test_secrets.py --dfpod BIN --dfbridge BIN --group NAME [--dftail BIN] [--log-format json]
Loopback only; every wait is bounded and waits for a signal."""

import base64
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dftest  # noqa: E402
from dftest import Bridge, Pod, Sub, check, free_port, replay_info, wait_until  # noqa: E402
from test_transport import Proxy  # noqa: E402  (the CONNECT/forwarding proxy with credentials)

PROXY_USER = "px-user"
PROXY_PASS = "Pr0xyPass-7c1e9a"
HEADER_VALUE = "HdrVal-5b2f0e3d"
UA_VALUE = "UaVal-91d4c2"
DFTAIL = None  # --dftail BIN (optional)


def key_lines():
    """The base64 lines of the bot's private key PEM (any of them in the output is a leak)."""
    with open(dftest.CTX.key) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("-----")]


def pod_secrets(pod):
    """Every token the pod handed out and every JWT it received (its call log's auth bodies)."""
    toks = pod.admin("GET", "tokens")
    jwts = []
    for c in pod.calls():
        if c["endpoint"] in ("auth", "relay") and c.get("body"):
            body = c["body"]
            jwt = body.split('"token":"', 1)[-1].split('"', 1)[0] if '"token":"' in body else ""
            if jwt.count(".") == 2:
                jwts.append(jwt)
                jwts.append(jwt.rsplit(".", 1)[1])  # the signature alone
    return toks, jwts


def no_secret(texts, secrets, what):
    """Checks that no secret occurs in any text (name -> str); returns the number of checks."""
    leaks = [(name, s[:24]) for name, t in texts.items() for s in secrets if s and s in t]
    check(not leaks, "%s: no secret in %s; leaked: %r" % (what, sorted(texts), leaks))


def base_secrets():
    basic = base64.b64encode(("%s:%s" % (PROXY_USER, PROXY_PASS)).encode()).decode()
    return [PROXY_PASS, basic, HEADER_VALUE, UA_VALUE] + key_lines()


def dftail_output(bridge):
    """What dftail prints for two heartbeats of this bridge ("" without --dftail)."""
    if not DFTAIL:
        return ""
    r = subprocess.run([DFTAIL, "--endpoint", bridge.endpoint, "--heartbeats", "--count", "2",
                        "--timeout", "10000"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "_hb" in r.stdout, "dftail printed heartbeats: %r" % r.stdout[-300:])
    return r.stdout + r.stderr


# ---- the groups ---------------------------------------------------------------------------


def t_echo(_):
    """A pod that echoes every request header (tokens, defaultHeaders) in its error bodies:
    retried 500s, a re-authentication (new tokens), then a fatal 403 whose body start the
    bridge logs: the line shows the echo with *** for each secret; nothing else anywhere."""
    pod = Pod("--hold-ms", "300")
    proxy = Proxy(PROXY_USER, PROXY_PASS)
    replay = "tcp://127.0.0.1:%d" % free_port()
    state = os.path.join(dftest.CTX.tmp, "state-echo")
    try:
        b = Bridge(pod, extra="proxy:\n  host: 127.0.0.1\n  port: %d\n  username: %s\n"
                              "  password: %s\ndefaultHeaders:\n  X-Api-Key: %s\n"
                              "  User-Agent: %s\n" % (proxy.port, PROXY_USER, PROXY_PASS,
                                                      HEADER_VALUE, UA_VALUE),
                   bridge_extra="  stateDir: %s\n  replay: %s\n" % (state, replay),
                   datafeed="datafeed:\n  version: v2\n  retry:\n    maxAttempts: 10\n"
                            + dftest.FAST_RETRY)
        b.replay = replay
        sub = Sub(b)
        sub.sync(pod)
        info = replay_info(replay)
        check(info is not None, "an info answer")
        # The SIGUSR1 dump goes to the log.
        b.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: " info: " in b.text() or "\"message\":\"info: " in b.text(),
                   "the SIGUSR1 info dump in the log")
        tail = dftail_output(b)
        # Two echoed 500s (retried), a 401 (re-authentication: new tokens), events again.
        pod.admin("POST", "faults", [{"endpoint": "read", "action": "echo", "status": 500,
                                      "count": 2},
                                     {"endpoint": "read", "action": "expire_token"}])
        sub.sync(pod)
        reads = [c for c in pod.calls() if c["endpoint"] == "read"]
        check(any((c.get("headers") or {}).get("X-Api-Key") == HEADER_VALUE for c in reads),
              "the defaultHeaders value reached the pod (in play)")
        # The fatal one: the bridge logs the start of the body, redacted.
        pod.admin("POST", "faults", {"endpoint": "read", "action": "echo", "status": 403})
        rc = b.wait_exit(30)
        check(rc == dftest.EXIT_FATAL, "exit 1 after a 403, got %r" % rc)
        log = b.text()
        errs = b.errors()
        line = next((e for e in errs if "HTTP 403" in e), "")
        print("  the 403 line:", line)
        check('"message":"echo"' in line, "the 403 line shows the body's start")
        check('"sessionToken":"***"' in line and '"keyManagerToken":"***"' in line
              and '"X-Api-Key":"***"' in line,
              "the echoed tokens and header value are masked in the line")
        toks, jwts = pod_secrets(pod)
        check(len(toks) >= 4, "two logins, each a session and a key manager token: %d" % len(toks))
        check(len(jwts) >= 4, "the JWTs received by the pod: %d" % (len(jwts) // 2))
        texts = {"log": log, "info": repr(info), "dftail": tail}
        no_secret(texts, base_secrets() + toks + jwts, "echo")
        b.check_clean()
    finally:
        proxy.close()
        pod.stop()


def t_auth(_):
    """Authentication failures with echoing bodies (retried 500s until maxAttempts, a 400 on
    the key manager, a 401 on login) and a proxy refusing the credentials: each ends the
    bridge with its status and one error line; no JWT, token, password or header value shows."""
    cases = [
        ("login 500s, retries exhausted", [{"endpoint": "auth", "action": "echo", "status": 500,
                                            "count": 5}], dftest.EXIT_EXHAUSTED),
        ("relay 400", [{"endpoint": "relay", "action": "echo", "status": 400}], dftest.EXIT_FATAL),
        ("login 401", [{"endpoint": "auth", "action": "echo", "status": 401}], dftest.EXIT_AUTH),
    ]
    pod = Pod("--hold-ms", "300")
    try:
        for label, faults, want in cases:
            pod.admin("DELETE", "faults")
            pod.admin("POST", "faults", faults)
            b = Bridge(pod, extra="defaultHeaders:\n  X-Api-Key: %s\n" % HEADER_VALUE)
            rc = b.wait_exit(30)
            check(rc == want, "%s: exit %d, got %r" % (label, want, rc))
            check(len(b.errors()) == 1, "%s: one error line: %r" % (label, b.errors()))
            print("  %s: %s" % (label, b.errors()[-1] if b.errors() else "(none)"))
            toks, jwts = pod_secrets(pod)
            check(jwts, "%s: the pod received JWTs (in play)" % label)
            no_secret({"log": b.text()}, base_secrets() + toks + jwts, label)
            b.check_clean()
        # A proxy that refuses the credentials: 407, exit 1, the password never shown.
        proxy = Proxy(PROXY_USER, "the-right-one")
        try:
            pod.admin("DELETE", "faults")
            b = Bridge(pod, extra="proxy:\n  host: 127.0.0.1\n  port: %d\n  username: %s\n"
                                  "  password: %s\n" % (proxy.port, PROXY_USER, PROXY_PASS))
            rc = b.wait_exit(30)
            check(rc == dftest.EXIT_FATAL, "proxy 407: exit 1, got %r" % rc)
            check(any("407" in e and "proxy.password" in e for e in b.errors()),
                  "proxy 407: the line says 407 and names proxy.password: %r" % b.errors())
            basic = base64.b64encode(("%s:%s" % (PROXY_USER, PROXY_PASS)).encode()).decode()
            check(any(a == "Basic " + basic for _, _, a in proxy.requests()),
                  "the credentials reached the proxy (in play)")
            no_secret({"log": b.text()}, base_secrets(), "proxy 407")
            b.check_clean()
        finally:
            proxy.close()
    finally:
        pod.stop()


def run_bridge(cfg_text, name, mode=0o600, check_only=True):
    """Writes a config (mode) and runs dfbridge --config [--check]: (exit status, output)."""
    path = os.path.join(dftest.CTX.tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(cfg_text)
    os.chmod(path, mode)
    argv = [dftest.CTX.dfbridge, "--config", path] + (["--check"] if check_only else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def t_config(_):
    """Config files that hold secrets, good and bad: --check's output and every config error
    show none; the permission rule for the key file and for a config holding a key inline."""
    key = dftest.CTX.key
    with open(key) as f:
        pem = f.read()
    pem_yaml = "    content: |\n" + "".join("      " + ln + "\n" for ln in pem.splitlines())
    base = ("host: 127.0.0.1\nport: 1\nbot:\n  username: my-bot\n  privateKey:\n    path: %s\n"
            % key)
    full = (base + "proxy:\n  host: 127.0.0.1\n  port: 3128\n  username: %s\n  password: %s\n"
            "defaultHeaders:\n  X-Api-Key: %s\n  User-Agent: %s\n"
            % (PROXY_USER, PROXY_PASS, HEADER_VALUE, UA_VALUE))
    secrets = base_secrets()
    outputs = {}
    # Good: --check prints its OK line.
    rc, out = run_bridge(full, "good")
    check(rc == 0 and "OK" in out, "good config: --check OK: %r" % out)
    outputs["good"] = out
    # Bad configs next to the secrets: one message naming the key, no value.
    bad = {
        "password not a string": (full.replace("password: %s" % PROXY_PASS,
                                               "password: [%s]" % PROXY_PASS), "proxy.password"),
        "header with a line break": (base + "defaultHeaders:\n  X-Api-Key: \"%s\\nX: y\"\n"
                                     % HEADER_VALUE, "defaultHeaders.X-Api-Key"),
        "reserved header": (base + "defaultHeaders:\n  sessionToken: %s\n" % HEADER_VALUE,
                            "defaultHeaders.sessionToken"),
        "username without password": (base + "proxy:\n  host: h\n  port: 1\n  username: %s\n"
                                      % PROXY_PASS, "proxy.password: required"),
        "unclosed quote": (base + "defaultHeaders:\n  X-Api-Key: \"%s\n" % HEADER_VALUE,
                           "invalid YAML"),
        "proxy URL with credentials": (base + "proxy:\n  host: %s:%s@127.0.0.1\n  port: 1\n"
                                       % (PROXY_USER, PROXY_PASS), "proxy.host: a host name"),
        "host with credentials": (full.replace("host: 127.0.0.1\nport: 1",
                                               "host: %s:%s@127.0.0.1\nport: 1"
                                               % (PROXY_USER, PROXY_PASS), 1),
                                  "config: host: a host name"),
        "key and content": (base + pem_yaml, "bot.privateKey: set path or content, not both"),
        "bad bridge value": (full + "bridge:\n  strictPermissions: maybe\n",
                             "bridge.strictPermissions: must be false or true"),
    }
    for label, (text, want) in bad.items():
        rc, out = run_bridge(text, "bad")
        check(rc == dftest.EXIT_CONFIG and want in out,
              "%s: exit 2 naming %s: %r" % (label, want, out))
        outputs[label] = out
    # Permissions: the key file group-readable: a warning with the fix, --check still OK;
    # under strictPermissions: refused, exit 2.
    os.chmod(key, 0o640)
    try:
        rc, out = run_bridge(full, "open-key")
        check(rc == 0 and "config: bot.privateKey.path: %s is group-readable (mode 0640): run "
              "chmod 600 %s" % (key, key) in out, "0640 key: warned with the fix: %r" % out)
        outputs["open key"] = out
        rc, out = run_bridge(full + "bridge:\n  strictPermissions: true\n", "open-key-strict")
        check(rc == dftest.EXIT_CONFIG and "refused (bridge.strictPermissions is true)" in out,
              "0640 key, strict: exit 2: %r" % out)
        outputs["open key strict"] = out
        # Not only --check: the daemon itself refuses before anything else.
        rc, out = run_bridge(full + "bridge:\n  strictPermissions: true\n", "open-key-run",
                             check_only=False)
        check(rc == dftest.EXIT_CONFIG and "refused (bridge.strictPermissions is true)" in out,
              "0640 key, strict, started: exit 2: %r" % out)
    finally:
        os.chmod(key, 0o600)
    # The key inline: the config file is the secret file.
    inline = "host: 127.0.0.1\nport: 1\nbot:\n  username: my-bot\n  privateKey:\n" + pem_yaml
    rc, out = run_bridge(inline + "bridge:\n  strictPermissions: true\n", "inline", mode=0o644)
    check(rc == dftest.EXIT_CONFIG and "config: bot.privateKey.content: " in out
          and "(mode 0644): refused" in out, "inline key, 0644, strict: exit 2: %r" % out)
    outputs["inline strict"] = out
    rc, out = run_bridge(inline + "bridge:\n  strictPermissions: true\n", "inline", mode=0o600)
    check(rc == 0 and "OK" in out, "inline key, 0600, strict: OK: %r" % out)
    outputs["inline private"] = out
    for label, out in outputs.items():
        print("  %-26s %s" % (label + ":", out.strip().splitlines()[-1][:150] if out.strip() else ""))
    no_secret(outputs, secrets, "config")


GROUPS = {"echo": t_echo, "auth": t_auth, "config": t_config}


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--log-format" in argv:
        # bridge.logFormat for every bridge of the group, through the environment (issue 10):
        # the same checks must hold for json lines.
        i = argv.index("--log-format")
        os.environ["DFBRIDGE_BRIDGE_LOGFORMAT"] = argv[i + 1]
        del argv[i:i + 2]
    if "--dftail" in argv:
        i = argv.index("--dftail")
        DFTAIL = argv[i + 1]
        del argv[i:i + 2]
    sys.exit(dftest.run_cases({k: (lambda f=v: f(None)) for k, v in GROUPS.items()}, argv,
                              option="group", prefix="dfb_secrets_"))
