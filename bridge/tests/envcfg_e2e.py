#!/usr/bin/python3
"""Configuration from the environment (issue 10 §2) and JSON logs (§4), end to end.

Every config key has a variable DFBRIDGE_ + its path upper-cased with '_' between the segments;
the environment beats the file key by key; --config is optional when the environment gives what
is required; an unknown DFBRIDGE_* variable or a bad value is exit 2 naming the variable;
`--check` lists where every value came from. With bridge.logFormat: json every log line is one
JSON object with time, level, message and the call's fields.

Usage: envcfg_e2e.py --dfpod BIN --dfbridge BIN --case NAME
Loopback only; every wait is bounded and waits for a signal (a probe event, an exit)."""

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, Pod, Sub, check, eq, event  # noqa: E402

SOURCE_RE = re.compile(r"^  (\S+) = (.*)  \[(file|env|default)(?: (.+))?\]$")


def base_env():
    """The test's environment without any DFBRIDGE_* variable of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DFBRIDGE_")}


def pod_env(pod, endpoint, **extra):
    """Variables that give everything a run against pod needs (fast retries, like Bridge)."""
    env = {
        "DFBRIDGE_SCHEME": "http", "DFBRIDGE_HOST": "127.0.0.1", "DFBRIDGE_PORT": str(pod.port),
        "DFBRIDGE_BOT_USERNAME": "my-bot", "DFBRIDGE_BOT_PRIVATEKEY_PATH": dftest.CTX.key,
        "DFBRIDGE_BRIDGE_PUBLISH": endpoint, "DFBRIDGE_BRIDGE_LOGLEVEL": "debug",
        "DFBRIDGE_BRIDGE_READTIMEOUTMILLIS": "5000", "DFBRIDGE_BRIDGE_CONNECTTIMEOUTMILLIS": "2000",
        "DFBRIDGE_DATAFEED_VERSION": "v2", "DFBRIDGE_DATAFEED_RETRY_MAXATTEMPTS": "2",
        "DFBRIDGE_RETRY_MAXATTEMPTS": "2",
    }
    for block in ("DFBRIDGE_DATAFEED_RETRY_", "DFBRIDGE_RETRY_"):
        env[block + "INITIALINTERVALMILLIS"] = "10"
        env[block + "MULTIPLIER"] = "1"
        env[block + "MAXINTERVALMILLIS"] = "10"
    env.update(extra)
    return env


def run(args, env, timeout=30):
    """Runs dfbridge args with base_env() + env: (exit status, stdout + stderr)."""
    e = base_env()
    e.update(env)
    r = subprocess.run([dftest.CTX.dfbridge] + list(args), capture_output=True, text=True,
                       env=e, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def sources(out):
    """--check's source lines: key -> (value, from, where)."""
    got = {}
    for line in out.splitlines():
        m = SOURCE_RE.match(line)
        if m:
            got[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return got


def write(name, text, mode=0o600):
    path = os.path.join(dftest.CTX.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


class EnvBridge(Bridge):
    """A dfbridge configured by variables only (no --config), or by a file (cfg=True, Bridge's
    own config) with variables on top."""

    def __init__(self, pod, env, use_file=False, **kw):
        super().__init__(pod, start=False, **kw)
        self.vars = env
        self.use_file = use_file
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        e = base_env()
        e.update(self.vars)
        argv = [dftest.CTX.dfbridge] + (["--config", self.cfg_path] if self.use_file else [])
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=e)
        dftest.CTX.children.append(self.proc)
        self.rc = None


def deliver(pod, b, n=5, prefix="ev"):
    """Probe, then n events: every one arrives once, in order, on b's endpoint."""
    s = Sub(b)
    try:
        s.sync(pod)
        pod.events([event(i, prefix=prefix) for i in range(1, n + 1)])
        got = s.take(n)
        eq([m[1]["event"]["id"] for m in got], ["%s-%d" % (prefix, i) for i in range(1, n + 1)],
           "events received, in order")
        extra = s.take(1, timeout=0.3)
        eq(extra, [], "no duplicate")
    finally:
        s.close()


# ---- cases ------------------------------------------------------------------------------------


def t_rules():
    """The rule's cases through --check with no file: the issue's three examples, a nested
    bridge.curve.* key, an int, a bool, a list and a map key; an empty variable is unset."""
    keys = os.path.join(dftest.CTX.tmp, "keys")
    clients = os.path.join(dftest.CTX.tmp, "clients")
    os.makedirs(keys)
    os.makedirs(clients)
    rc, out = run(["keygen", keys, "bridge"], {})
    eq(rc, 0, "keygen: %s" % out)
    state = os.path.join(dftest.CTX.tmp, "state")
    env = {
        "DFBRIDGE_HOST": "127.0.0.1",
        "DFBRIDGE_BOT_USERNAME": "my-bot",
        "DFBRIDGE_BOT_PRIVATEKEY_PATH": dftest.CTX.key,           # bot.privateKey.path
        "DFBRIDGE_BRIDGE_STATEDIR": state,                         # bridge.stateDir
        "DFBRIDGE_DATAFEED_RETRY_MAXATTEMPTS": "7",                # datafeed.retry.maxAttempts
        "DFBRIDGE_BRIDGE_CURVE_SECRETKEY": os.path.join(keys, "bridge.key_secret"),
        "DFBRIDGE_BRIDGE_CURVE_CLIENTSDIR": clients,
        "DFBRIDGE_BRIDGE_SNDHWM": "123",                           # an int
        "DFBRIDGE_BRIDGE_INSECURE": "true",                        # a bool
        "DFBRIDGE_BRIDGE_PUBLISH": "tcp://127.0.0.1:5999",
        "DFBRIDGE_DATAHOSE_EVENTTYPES": "[MESSAGESENT, ROOMCREATED]",  # a list
        "DFBRIDGE_POD_DEFAULTHEADERS": "{X-Trace: abc, X-Other: 'two words'}",  # a map
        "DFBRIDGE_DATAFEED_TAG": "",                                # empty: not set
    }
    rc, out = run(["--check"], env)
    eq(rc, 0, "--check exit status: %s" % out)
    check(out.startswith("(environment): OK (pod https://127.0.0.1:443, agent "
                         "https://127.0.0.1:443, keyManager https://127.0.0.1:443, bot my-bot, "
                         "publish tcp://127.0.0.1:5999, CURVE)"), "the OK line: %r" % out[:300])
    src = sources(out)
    want = {
        "host": "127.0.0.1", "bot.username": "my-bot", "bot.privateKey.path": dftest.CTX.key,
        "bridge.stateDir": state, "datafeed.retry.maxAttempts": "7",
        "bridge.curve.secretKey": env["DFBRIDGE_BRIDGE_CURVE_SECRETKEY"],
        "bridge.curve.clientsDir": clients, "bridge.sndhwm": "123", "bridge.insecure": "true",
        "bridge.publish": "tcp://127.0.0.1:5999",
        "datahose.eventTypes": "[MESSAGESENT, ROOMCREATED]",
        "pod.defaultHeaders": "{X-Trace: ***, X-Other: ***}",  # header values may be API keys
    }
    for key, value in want.items():
        var = "DFBRIDGE_" + key.replace(".", "_").upper()
        eq(src.get(key), (value, "env", var), "source of %s" % key)
    check("datafeed.tag" not in src, "an empty variable leaves the key unset: %r"
          % src.get("datafeed.tag"))
    eq(src.get("bridge.heartbeatMillis"), ("1000", "default", None), "a default")
    # Every line of the listing is a source line (after the OK line and "sources:").
    lines = out.splitlines()
    eq(lines[1], "sources:", "the listing's head")
    bad = [ln for ln in lines[2:] if not SOURCE_RE.match(ln)]
    eq(bad, [], "lines that are not source lines")
    # The values take effect: the same variables with a bad int fail on that key.
    env2 = dict(env, DFBRIDGE_DATAFEED_RETRY_MAXATTEMPTS="0")
    rc, out = run(["--check"], env2)
    eq(rc, dftest.EXIT_CONFIG, "maxAttempts 0 from the environment")
    check("config: datafeed.retry.maxAttempts (from DFBRIDGE_DATAFEED_RETRY_MAXATTEMPTS): must "
          "be -1 (unlimited) or at least 1" in out, "the message names the variable: %r" % out)


def t_precedence():
    """Per key: the environment beats the file, the file beats the default."""
    cfg = write("p.yaml", "host: 127.0.0.1\nbot:\n  username: file-bot\n  privateKey:\n"
                "    path: %s\ndatafeed:\n  retry:\n    maxAttempts: 3\n"
                "bridge:\n  sndhwm: 5\n  heartbeatMillis: 250\n  journal:\n    fsync: never\n"
                % dftest.CTX.key)
    env = {"DFBRIDGE_BRIDGE_SNDHWM": "9", "DFBRIDGE_DATAFEED_RETRY_INITIALINTERVALMILLIS": "20",
           "DFBRIDGE_BRIDGE_JOURNAL_FSYNC": "always", "DFBRIDGE_BOT_USERNAME": ""}
    rc, out = run(["--config", cfg, "--check"], env)
    eq(rc, 0, "--check: %s" % out)
    check(out.startswith(cfg + ": OK ("), "the OK line names the file: %r" % out[:200])
    check(", bot file-bot, " in out, "an empty variable keeps the file's value: %r" % out[:200])
    src = sources(out)
    eq(src.get("bridge.sndhwm"), ("9", "env", "DFBRIDGE_BRIDGE_SNDHWM"), "env beats file")
    eq(src.get("bridge.journal.fsync"), ("always", "env", "DFBRIDGE_BRIDGE_JOURNAL_FSYNC"),
       "env beats file (nested)")
    eq(src.get("bridge.heartbeatMillis"), ("250", "file", cfg), "file beats default")
    eq(src.get("datafeed.retry.maxAttempts"), ("3", "file", cfg), "file, next to an env key")
    eq(src.get("datafeed.retry.initialIntervalMillis"),
       ("20", "env", "DFBRIDGE_DATAFEED_RETRY_INITIALINTERVALMILLIS"), "env in a file's block")
    eq(src.get("bot.username"), ("file-bot", "file", cfg), "empty variable: the file's value")
    eq(src.get("bridge.zmtpHeartbeatMillis"), ("0", "default", None), "default")
    # A real run: the file's publish endpoint is replaced by the variable's.
    pod = Pod("--hold-ms", "300")
    try:
        b = EnvBridge(pod, {}, use_file=True)   # Bridge's config file, publish on b.endpoint
        file_endpoint = b.endpoint
        b.kill()
        port = dftest.free_port()
        b = EnvBridge(pod, {"DFBRIDGE_BRIDGE_PUBLISH": "tcp://127.0.0.1:%d" % port},
                      use_file=True)
        b.endpoint = "tcp://127.0.0.1:%d" % port
        check(b.endpoint != file_endpoint, "two endpoints")
        deliver(pod, b)
        b.stop()
        check("publish tcp://127.0.0.1:%d" % port in b.text(), "the start line shows the "
              "variable's endpoint")
        b.check_clean()
    finally:
        pod.stop()


def t_run():
    """No --config: the environment gives everything; the bridge authenticates against dfpod,
    publishes every event once, in order, and stops cleanly."""
    pod = Pod("--hold-ms", "300")
    try:
        port = dftest.free_port()
        endpoint = "tcp://127.0.0.1:%d" % port
        b = EnvBridge(pod, pod_env(pod, endpoint))
        b.endpoint = endpoint
        deliver(pod, b, n=20)
        b.stop()
        check("dfbridge %s" % "" in b.text() and ("publish %s" % endpoint) in b.text(),
              "the start line: %r" % b.text()[-500:])
        eq(b.errors(), [], "error lines")
        b.check_clean()
    finally:
        pod.stop()


def t_errors():
    """Unknown variables and bad values: exit 2 and one message naming the variable, at --check
    and at a real start; nothing is started."""
    base = {"DFBRIDGE_HOST": "127.0.0.1", "DFBRIDGE_BOT_USERNAME": "my-bot",
            "DFBRIDGE_BOT_PRIVATEKEY_PATH": dftest.CTX.key}
    cases = [
        ({"DFBRIDGE_BRIDGE_SNDHWN": "3"}, "config: DFBRIDGE_BRIDGE_SNDHWN: unknown environment "
         "variable (no such key); did you mean DFBRIDGE_BRIDGE_SNDHWM?"),
        ({"DFBRIDGE_FROBNICATE": "1"}, "config: DFBRIDGE_FROBNICATE: unknown environment variable"),
        ({"DFBRIDGE_BRIDGE_SNDHWM": "-1"}, "config: bridge.sndhwm (from DFBRIDGE_BRIDGE_SNDHWM): "
         "must be between 0 and 2147483647"),
        ({"DFBRIDGE_BRIDGE_SNDHWM": "12x"}, "config: bridge.sndhwm (from DFBRIDGE_BRIDGE_SNDHWM): "
         "not an integer"),
        ({"DFBRIDGE_BRIDGE_INSECURE": "maybe"}, "config: bridge.insecure (from "
         "DFBRIDGE_BRIDGE_INSECURE): must be false or true, not 'maybe'"),
        ({"DFBRIDGE_DATAFEED_INCLUDEINVISIBLE": "sometimes"}, "config: datafeed.includeInvisible "
         "(from DFBRIDGE_DATAFEED_INCLUDEINVISIBLE): not a boolean"),
        ({"DFBRIDGE_PORT": "70000"}, "config: port (from DFBRIDGE_PORT): must be between 1 and "
         "65535"),
        ({"DFBRIDGE_DATAHOSE_EVENTTYPES": "[A, B"}, "config: DFBRIDGE_DATAHOSE_EVENTTYPES: "
         "invalid YAML"),
        ({"DFBRIDGE_DEFAULTHEADERS": "{'a b': x}"}, "config: defaultHeaders.a b (from "
         "DFBRIDGE_DEFAULTHEADERS): not a valid header name"),
        ({"DFBRIDGE_DEFAULTHEADERS": "{a: &a [x,x,x,x,x,x,x,x,x,x], b: &b [*a,*a,*a,*a,*a,*a,*a,"
          "*a,*a,*a], c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], d: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]}"},
         "config: DFBRIDGE_DEFAULTHEADERS: too large or nested too deep"),  # an alias bomb
        ({"DFBRIDGE_DEFAULTHEADERS": "plain"}, "config: defaultHeaders (from "
         "DFBRIDGE_DEFAULTHEADERS): not a mapping"),
        ({"DFBRIDGE_BOT_USERNAME": ""}, "config: bot.username: required (in the file, or the "
         "environment variable DFBRIDGE_BOT_USERNAME)"),
        ({"DFBRIDGE_BOT_PRIVATEKEY_PATH": ""}, "config: bot.privateKey.path: required (or "
         "bot.privateKey.content, or bot.certificate.path for certificate authentication) (in "
         "the file, or the environment variable DFBRIDGE_BOT_PRIVATEKEY_PATH)"),
    ]
    for extra, want in cases:
        env = dict(base, **extra)
        for argv in (["--check"], []):
            rc, out = run(argv, env)
            eq(rc, dftest.EXIT_CONFIG, "%r %r: exit status (%s)" % (extra, argv, out.strip()))
            check(want in out, "%r %r: %r in %r" % (extra, argv, want, out.strip()))
            eq(len([ln for ln in out.splitlines() if " error " in ln]), 1, "one error line")
    # Neither a file nor a variable: the usage error.
    rc, out = run([], {})
    eq(rc, dftest.EXIT_CONFIG, "no config at all")
    check("--config FILE (or DFBRIDGE_* environment variables) is required" in out, out)


def key_lines():
    with open(dftest.CTX.key) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("-----")]


def t_secrets():
    """The key PEM and a proxy password from the environment: --check shows ***, the bridge
    runs with the key (dfpod verifies its JWT), and no secret is in any output or log, in text
    and in json; the variable is wiped from the running process's environment."""
    with open(dftest.CTX.key) as f:
        pem = f.read()
    secrets = key_lines() + ["Pr0xyEnvPass-3e9"]
    pod = Pod("--hold-ms", "300")
    try:
        for fmt in ("text", "json"):
            port = dftest.free_port()
            endpoint = "tcp://127.0.0.1:%d" % port
            env = pod_env(pod, endpoint, DFBRIDGE_BOT_PRIVATEKEY_CONTENT=pem,
                          DFBRIDGE_BRIDGE_LOGFORMAT=fmt)
            del env["DFBRIDGE_BOT_PRIVATEKEY_PATH"]
            rc, out = run(["--check"], dict(env, DFBRIDGE_KEYMANAGER_PROXY_HOST="127.0.0.1",
                                            DFBRIDGE_KEYMANAGER_PROXY_PORT="1",
                                            DFBRIDGE_KEYMANAGER_PROXY_USERNAME="u",
                                            DFBRIDGE_KEYMANAGER_PROXY_PASSWORD=secrets[-1]))
            eq(rc, 0, "--check: %s" % out[-300:])
            src = sources(out)
            eq(src.get("bot.privateKey.content"),
               ("***", "env", "DFBRIDGE_BOT_PRIVATEKEY_CONTENT"), "the key redacted")
            eq(src.get("keyManager.proxy.password"),
               ("***", "env", "DFBRIDGE_KEYMANAGER_PROXY_PASSWORD"), "the password redacted")
            leaks = [s[:20] for s in secrets if s in out]
            eq(leaks, [], "secrets in --check's output")
            b = EnvBridge(pod, env)
            b.endpoint = endpoint
            deliver(pod, b, n=3, prefix=fmt)
            with open("/proc/%d/environ" % b.proc.pid, "rb") as f:
                environ = f.read().decode(errors="replace")
            eq([s[:20] for s in secrets if s in environ], [], "the key in /proc/PID/environ")
            # The kernel shows the process's initial environment block: the secret's bytes
            # there are wiped (the entry ends at its '='), the other variables are intact.
            entries = environ.split("\0")
            eq([e for e in entries if e.startswith("DFBRIDGE_BOT_PRIVATEKEY_CONTENT=")],
               ["DFBRIDGE_BOT_PRIVATEKEY_CONTENT="], "the secret variable's value is wiped")
            check("DFBRIDGE_BOT_USERNAME=my-bot" in entries, "the others are intact")
            b.stop()
            log = b.text()
            eq([s[:20] for s in secrets if s in log], [], "secrets in the %s log" % fmt)
            check("authenticated as my-bot" in log, "authenticated with the key from the "
                  "environment")
            b.check_clean()
    finally:
        pod.stop()


def t_json_log():
    """bridge.logFormat: json (from the environment): every line of a run with two retried 500s
    on read is one JSON object with time, level and message; the retry lines carry call and
    status (and attempt, delayMs) with the right values, `call` being the metric's label
    (read_feed); a login that gives up logs call login, delayMs only where a retry follows."""
    pod = Pod("--hold-ms", "300")
    try:
        pod.create_feed()
        pod.faults({"endpoint": "read", "action": "status", "status": 500, "count": 2})
        port = dftest.free_port()
        endpoint = "tcp://127.0.0.1:%d" % port
        b = EnvBridge(pod, pod_env(pod, endpoint, DFBRIDGE_BRIDGE_LOGFORMAT="json",
                                   DFBRIDGE_DATAFEED_RETRY_MAXATTEMPTS="5"))
        b.endpoint = endpoint
        deliver(pod, b, n=3)
        b.stop()
        lines = b.text().splitlines()
        check(len(lines) >= 10, "%d log lines" % len(lines))
        objs = []
        for ln in lines:
            try:
                o = json.loads(ln)
            except ValueError:
                check(False, "not JSON: %r" % ln)
                continue
            check(isinstance(o, dict) and {"time", "level", "message"} <= set(o),
                  "time, level, message: %r" % ln)
            check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o.get("time", "")),
                  "ISO-8601 UTC with ms: %r" % o.get("time"))
            check(o.get("level") in ("error", "warn", "info", "debug"), "level %r" % o.get("level"))
            objs.append(o)
        # `call` is the metric's label (dfbridge_upstream_requests_total{call="read_feed"}); the
        # message keeps the human name
        warns = [o for o in objs if o.get("call") == "read_feed" and o["level"] == "warn"]
        eq([(o["status"], o["message"]) for o in warns],
           [(500, "read datafeed: HTTP 500")] * 2, "the two 500s on read")
        eq({o["call"] for o in objs if "call" in o}, {"read_feed"}, "the calls named in the log")
        retries = [o for o in objs if o.get("call") == "read_feed" and "delayMs" in o]
        eq([(o["attempt"], o["delayMs"]) for o in retries], [(1, 10), (2, 10)],
           "the two retries: attempt and delay")
        created = [o for o in objs if o["message"].startswith("created datafeed ") or
                   o["message"].startswith("reusing datafeed ")]
        check(len(created) == 1 and created[0].get("feed") and
              created[0]["message"].endswith(created[0]["feed"]), "the feed line: %r" % created)
        eq([o for o in objs if o["level"] == "error"], [], "error lines")
        b.check_clean()
        # Giving up: the login answers 503 twice (retry.maxAttempts 2). Every line names the
        # request `login` (its metric label): the first attempt with delayMs (a retry follows),
        # the last without (none follows), then the one line that gives up; exit 3.
        pod.faults({"endpoint": "auth", "action": "status", "status": 503, "count": 2})
        g = EnvBridge(pod, pod_env(pod, "tcp://127.0.0.1:%d" % dftest.free_port(),
                                   DFBRIDGE_BRIDGE_LOGFORMAT="json"))
        eq(g.wait_exit(15), 3, "exit status when the login gives up")
        objs = []
        for ln in g.text().splitlines():
            try:
                objs.append(json.loads(ln))
            except ValueError:
                check(False, "not JSON: %r" % ln)
        eq([(o["level"], o.get("status"), o.get("attempt"), o.get("delayMs"), o["message"])
            for o in objs if "call" in o],
           [("warn", 503, 1, 10, "pod authentication: HTTP 503, attempt 1"),
            ("warn", 503, 2, None, "pod authentication: HTTP 503, attempt 2"),
            ("error", 503, 2, None, "pod authentication: giving up after 2 attempts "
             "(retry.maxAttempts), last error HTTP 503")],
           "the login's lines: call login, the retry with delayMs, giving up")
        eq({o["call"] for o in objs if "call" in o}, {"login"}, "the call named")
        g.check_clean()
    finally:
        pod.stop()


CASES = {"rules": t_rules, "precedence": t_precedence, "run": t_run, "errors": t_errors,
         "secrets": t_secrets, "json_log": t_json_log}

if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], option="case", prefix="dfb_envcfg_"))
