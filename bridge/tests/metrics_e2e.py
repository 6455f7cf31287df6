#!/usr/bin/python3
"""Metrics and health (issue 10, section 3), bridge side: the real dfbridge against the real dfpod on
loopback; /metrics is scraped over HTTP and parsed (Prometheus text format 0.0.4). One ctest per case
(--case NAME), each with its own dfpod and dfbridge; bridge.metrics is 127.0.0.1:0 and the bound port
is read back from the bridge's log line. Usage: metrics_e2e.py --dfpod PATH --dfbridge PATH --case NAME
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(SRC, "tests", "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, Pod, Sub, check, eq, free_port, wait_until  # noqa: E402

dftest.WAIT_TIMEOUT = 30.0
PROMTOOL = "/usr/bin/promtool"
TYPES = [t["type"] for t in json.load(open(os.path.join(SRC, "schemas", "contract-v1.json")))["topics"]]
DASHBOARD = os.path.join(SRC, "docker", "grafana", "dfbridge.json")
FAST = "    initialIntervalMillis: 10\n    multiplier: 1\n    maxIntervalMillis: 10\n"


# ---- helpers ---------------------------------------------------------------------------------

def start(pod, extra="", datafeed=None, **kw):
    """A dfbridge with /metrics on 127.0.0.1:0, a journal and a replay endpoint; returns it with
    .url (the metrics base URL read from its log) and .replay."""
    state = os.path.join(dftest.CTX.tmp, "state-%d" % free_port())
    rport = free_port()
    br = Bridge(pod, datafeed=datafeed,
                bridge_extra="  metrics: 127.0.0.1:0\n  stateDir: %s\n  replay: tcp://127.0.0.1:%d\n%s"
                % (state, rport, extra), **kw)
    br.replay = "tcp://127.0.0.1:%d" % rport
    m = wait_until(lambda: re.search(r"metrics: /metrics, /healthz and /readyz on (http://[^\s\"]+)",
                                     br.text()), "the metrics log line", 20)
    if not m:
        raise dftest.Failure("no metrics line in the log")
    br.url = m.group(1)
    return br


def http(br, path, method="GET", body=None):
    """(status, headers dict (lower-case names), body text) of one request."""
    req = urllib.request.Request(br.url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """The exposition as {(name, ((label, value), ...)): float} and the families {name: type};
    a line that is not a comment, a sample or empty is a failed check."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            check(name not in types, "family %s declared twice" % name)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not check(m is not None, "not a sample line: %r" % line):
            continue
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        key = (m.group(1), labels)
        check(key not in samples, "sample %r twice" % (key,))
        samples[key] = float(m.group(3))
    return samples, types


def scrape(br):
    st, hdr, text = http(br, "/metrics")
    eq(st, 200, "GET /metrics status")
    return parse(text)[0], text


def val(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def by_label(samples, name, label):
    """{label value: sample value} of a family with one label."""
    return {dict(k[1])[label]: v for k, v in samples.items() if k[0] == name}


def promtool(text):
    check(os.access(PROMTOOL, os.X_OK), "%s is missing (Debian's prometheus package: "
          "scripts/install-deps.sh)" % PROMTOOL)
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True)
    check(p.returncode == 0, "promtool check metrics: %s%s" % (p.stdout.decode(), p.stderr.decode()))


# The pod's endpoints (its call log) as the bridge's `call` labels.
POD_CALL = {"auth": "login", "sessionauth": "login", "relay": "keymanager_auth",
            "keyauth": "keymanager_auth", "agentinfo": "agent_info", "sessioninfo": "session_info",
            "list": "list_feeds", "create": "create_feed", "delete": "delete_feed",
            "read": "read_feed", "v1create": "create_feed_v1", "v1read": "read_feed_v1",
            "dhread": "datahose_read",
            # the command channel's calls (dfb_outbound)
            "msgcreate": "msg_create", "msgupdate": "msg_update", "msgsuppress": "msg_suppress",
            "msgget": "msg_get", "msglist": "msg_list", "imcreate": "im_create",
            "roomadd": "room_add", "roomremove": "room_remove", "streaminfo": "stream_info",
            "users": "users"}


# ---- cases -----------------------------------------------------------------------------------

def case_counters():
    """A scripted run with faults: 34 events (2 of each type), then on the reads a reply that
    is not HTTP, 2 x 503, one 401 (re-authentication) and one 400 (the feed is replaced); the first
    login gets a 503, the first key manager login a 502. Every counter equals the known number:
    requests per call and status equal the pod's own call log, retries, re-auths, feeds created,
    events received and published per topic, the lag histogram, replay results, subscribers.
    The run logs JSON: every `call` in it is a label of the exposition, the failed requests'
    lines join the requests counted per (call, code), the retry lines the retries per call."""
    pod = Pod()  # reads held 30 s: between answers nothing moves, so the two views agree
    # the first login and key manager login fail once each (retried by dfb_auth)
    pod.faults({"endpoint": "auth", "action": "status", "status": 503},
               {"endpoint": "relay", "action": "status", "status": 502})
    t0 = time.time()
    br = start(pod, extra="  logFormat: json\n",
               datafeed="datafeed:\n  version: v2\n  retry:\n    maxAttempts: 10\n" + FAST,
               read_timeout_ms=None)  # the default 60 s: over the 30 s hold
    wait_until(lambda: http(br, "/readyz")[0] == 200, "/readyz 200")
    s = Sub(br)
    s.sync(pod)
    wait_until(lambda: val(scrape(br)[0], "dfbridge_subscribers") == 1, "dfbridge_subscribers 1")
    n = 2 * len(TYPES)
    now = int(time.time() * 1000)
    evs = [dftest.event(i, etype=TYPES[i % len(TYPES)], prefix="m") for i in range(n)]
    for e in evs:
        e["timestamp"] = now
    pod.wait_held()
    # The held read answers with the events; the reads after it take the faults in order.
    pod.faults({"endpoint": "read", "action": "not_http"},
               {"endpoint": "read", "action": "status", "status": 503, "count": 2},
               {"endpoint": "read", "action": "status", "status": 401},
               {"endpoint": "read", "action": "status", "status": 400})
    pod.events(evs)
    got = s.take(n)
    eq(len(got), n, "events received by the subscriber")
    eq(sorted(m[1]["event"]["id"] for m in got), sorted(e["id"] for e in evs), "the event ids")
    wait_until(lambda: pod.counter("feeds_created") == 2 and pod.counter("faults_applied") == 7
               and pod.counter("held") >= 1, "the replaced feed's read held")
    # one replay answer (ok) and one info answer
    rc = dftest.ReplayClient(br.replay)
    r = rc.ask(from_gseq=1, limit=1)
    check(r is not None and r[1].get("status") == "ok", "a replay answer: %r" % (r,))
    check(rc.info() is not None, "an info answer")
    rc.close()
    wait_until(lambda: val(scrape(br)[0], "dfbridge_replay_requests_total", result="info") == 1,
               "the info request counted")
    m, text = scrape(br)
    calls = pod.calls()
    promtool(text)

    # Requests: exactly the pod's call log, per call and status.
    want = {}
    for c in calls:
        # a reply that is not HTTP (status 0 in the log) is the transport class "bad_reply" (a
        # dropped connection is not used: libcurl itself retries a request whose kept-alive
        # connection closed without a byte, so the pod would see one call more than the bridge)
        code = "bad_reply" if c["status"] == 0 and c.get("fault") == "not_http" else str(c["status"])
        key = (POD_CALL[c["endpoint"]], code)
        want[key] = want.get(key, 0) + 1
    got_req = {(dict(k[1])["call"], dict(k[1])["code"]): v for k, v in m.items()
               if k[0] == "dfbridge_upstream_requests_total"}
    eq(got_req, want, "dfbridge_upstream_requests_total against the pod's call log")
    for code, k in (("bad_reply", 1), ("503", 2), ("401", 1), ("400", 1)):
        eq(got_req.get(("read_feed", code)), k, "read_feed requests with %s" % code)
    eq(got_req.get(("login", "200")), 2, "logins (start + re-authentication)")
    eq(got_req.get(("keymanager_auth", "200")), 2, "key manager logins")
    eq(got_req.get(("create_feed", "201")), 2, "creates")
    eq(got_req.get(("delete_feed", "204")), 1, "the replaced feed deleted")
    # The histogram counts every request once.
    for call in {k[0] for k in got_req}:
        total = sum(v for k, v in got_req.items() if k[0] == call)
        eq(val(m, "dfbridge_upstream_request_duration_seconds_count", call=call), total,
           "duration count of %s" % call)
        eq(val(m, "dfbridge_upstream_request_duration_seconds_bucket", call=call, le="+Inf"), total,
           "+Inf bucket of %s" % call)
    retries = by_label(m, "dfbridge_retries_total", "call")
    eq(retries, {**{c: 0 for c in set(POD_CALL.values())}, "read_feed": 5, "login": 1,
                 "keymanager_auth": 1},
       "retries per call (not HTTP, 503, 503, 401, 400 on read; 503 on login, 502 on relay)")
    eq(got_req.get(("login", "503")), 1, "the failed login")
    eq(got_req.get(("keymanager_auth", "502")), 1, "the failed key manager login")
    eq(val(m, "dfbridge_reauthentications_total"), 1, "re-authentications")
    eq(val(m, "dfbridge_feeds_created_total"), 2, "feeds created")
    eq(val(m, "dfbridge_feed_recreates_total"), 1, "feeds replaced")
    eq(val(m, "dfbridge_reads_total"), got_req[("read_feed", "200")], "reads = read_feed 200s")

    # Events: received = served by the pod; published per topic.
    served = pod.counter("served")
    probes = served - n
    check(probes >= 1, "at least the probe was served")
    eq(val(m, "dfbridge_events_received_total"), served, "events received = served by the pod")
    pub = by_label(m, "dfbridge_events_published_total", "topic")
    eq({t: pub.get(t) for t in TYPES}, {t: 2 for t in TYPES}, "published per event type")
    eq(pub.get("unknown"), probes, "probes (type PROBE) under unknown")
    check("_hb" in pub, "heartbeats under _hb")
    eq(len(pub), len(TYPES) + 2, "topic labels: the 17 types, unknown, _hb")
    eq(val(m, "dfbridge_dedupe_dropped_total"), 0, "deduped")
    # Lag: our events carry now (well under an hour), the probes a 1970 timestamp (over).
    eq(val(m, "dfbridge_publish_lag_seconds_count"), served, "lag observations")
    eq(val(m, "dfbridge_publish_lag_seconds_bucket", le="3600"), n, "lags under an hour")
    eq(val(m, "dfbridge_publish_lag_seconds_bucket", le="+Inf"), served, "lag +Inf bucket")
    # Journal, replay, subscribers, health.
    eq(val(m, "dfbridge_journal_appended_total"), served, "journaled")
    eq(val(m, "dfbridge_journal_oldest_gseq"), 1, "oldest gseq")
    check(val(m, "dfbridge_journal_bytes") > 0, "journal bytes > 0")
    eq(by_label(m, "dfbridge_replay_requests_total", "result"),
       {"ok": 1, "error": 0, "abandoned": 0, "info": 1}, "replay requests by result")
    eq(val(m, "dfbridge_subscribers"), 1, "subscribers")
    eq(val(m, "dfbridge_healthy"), 1, "healthy")
    eq(val(m, "dfbridge_ready"), 1, "ready")
    last = val(m, "dfbridge_last_read_timestamp_seconds")
    check(t0 <= last <= time.time() + 1, "last read timestamp %r in [%r, now]" % (last, t0))
    eq(val(m, "dfbridge_build_info", version=re.search(r"dfbridge (\S+)", subprocess.run(
        [dftest.CTX.dfbridge, "--version"], capture_output=True, text=True).stdout).group(1)), 1,
       "build info")
    check_log_joins(br, m, got_req, retries)
    s.close()
    br.stop()


def check_log_joins(br, m, got_req, retries):
    """The JSON log of case_counters against its scrape m: an operator who alerts on a series
    finds its lines by the same `call` value. Every line is JSON; every `call` is a label of
    dfbridge_upstream_requests_total (the bridge's own exposition, every call listed); the lines
    of the failed requests (warn, with call and status: one per failure, status 0 with `error`
    for a transport error) are exactly the non-2xx requests per (call, code); the lines with
    delayMs (the loop's "retrying in" at debug level, dfb_auth's "attempt N" at warn) are exactly
    dfbridge_retries_total{call} (no call gives up here, so no retry line is missing)."""
    objs = []
    for ln in br.text().splitlines():
        try:
            objs.append(json.loads(ln))
        except ValueError:
            check(False, "a log line that is not JSON: %r" % ln)
    labels = {dict(k[1])["call"] for k in m if k[0] == "dfbridge_retries_total"}
    eq(labels, set(POD_CALL.values()), "the call labels of the exposition")
    logged = {o["call"] for o in objs if "call" in o}
    check(logged and logged <= labels, "log calls %r not all metric labels" % sorted(logged - labels))
    eq(logged, {"read_feed", "login", "keymanager_auth"}, "the calls named in the log of this run")
    eq([o for o in objs if o.get("level") == "error"], [], "error lines")
    failed = {}
    for o in objs:
        if o.get("level") == "warn" and "call" in o and "status" in o:
            code = str(o["status"]) if o["status"] else ("bad_reply" if o.get("error") else "?")
            failed[(o["call"], code)] = failed.get((o["call"], code), 0) + 1
    eq(failed, {k: v for k, v in got_req.items() if not k[1].startswith("2")},
       "failed-request lines per (call, code) = the non-2xx requests counted")
    logged_retries = {}
    for o in objs:
        if "delayMs" in o:
            logged_retries[o["call"]] = logged_retries.get(o["call"], 0) + 1
    eq({c: logged_retries.get(c, 0) for c in labels}, retries,
       "retry lines per call = dfbridge_retries_total{call}")
    human = sorted(o["message"] for o in objs if o.get("call") == "read_feed"
                   and o.get("status") == 503)
    eq(human, ["read datafeed: HTTP 503"] * 2, "the 503 lines keep the human name in the message")


def case_health():
    """/healthz turns 503 (with the reason) when the pod stops answering reads for longer than
    bridge.health.maxReadAgeMillis, and 200 again once a read succeeds; /readyz stays 200."""
    pod = Pod("--hold-ms", "200")
    br = start(pod, extra="  health:\n    maxReadAgeMillis: 1500\n", read_timeout_ms=15000)
    st = wait_until(lambda: (lambda r: r if r[2].startswith("ok: ") else None)(http(br, "/healthz")),
                    "/healthz 200 after a read")
    check(st and st[0] == 200 and re.fullmatch(
        r"ok: last successful read \d+\.\d s ago \(limit 1\.5 s\)\n", st[2]), "healthy: %r" % (st,))
    eq(st[1].get("cache-control"), "no-store", "Cache-Control of /healthz")
    pod.faults({"endpoint": "read", "action": "slow", "delay_ms": 4500})
    bad = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(http(br, "/healthz")),
                     "/healthz 503 while reads hang", 10)
    if bad:
        check(re.fullmatch(r"no successful read for \d+\.\d s \(limit 1\.5 s\)\n", bad[2]),
              "503 body: %r" % bad[2])
        eq(http(br, "/readyz")[0], 200, "/readyz while reads hang")
        eq(val(scrape(br)[0], "dfbridge_healthy"), 0, "dfbridge_healthy while reads hang")
    good = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(http(br, "/healthz")),
                      "/healthz 200 again", 10)
    check(good and good[2].startswith("ok: "), "healthy again: %r" % (good,))
    eq(val(scrape(br)[0], "dfbridge_healthy"), 1, "dfbridge_healthy again")
    br.stop()


def case_ready():
    """/readyz answers 503 while the bridge authenticates (a login held 3 s by the pod) and 200 once
    the feed is obtained; /healthz is 200 in the start-up grace; the slow login is in the latency
    histogram's right bucket."""
    pod = Pod()
    pod.faults({"endpoint": "auth", "action": "slow", "delay_ms": 3000})
    br = start(pod)
    st, hdr, body = http(br, "/readyz")
    eq(st, 503, "/readyz while authenticating")
    eq(body, "not ready: authenticating or obtaining a feed\n", "/readyz body")
    eq(hdr.get("cache-control"), "no-store", "Cache-Control of /readyz")
    eq(hdr.get("content-type"), "text/plain; charset=utf-8", "Content-Type of /readyz")
    st, _, body = http(br, "/healthz")
    eq(st, 200, "/healthz in the start-up grace")
    check(body.startswith("starting: no successful read yet"), "grace body: %r" % body)
    eq(val(scrape(br)[0], "dfbridge_ready"), 0, "dfbridge_ready while authenticating")
    ok = wait_until(lambda: (lambda r: r if r[0] == 200 else None)(http(br, "/readyz")),
                    "/readyz 200", 20)
    check(ok and ok[2] == "ready: authenticated, feed obtained\n", "ready body: %r" % (ok,))
    m = scrape(br)[0]
    eq(val(m, "dfbridge_ready"), 1, "dfbridge_ready")
    eq(val(m, "dfbridge_upstream_request_duration_seconds_bucket", call="login", le="2.5"), 0,
       "the 3 s login is not under 2.5 s")
    eq(val(m, "dfbridge_upstream_request_duration_seconds_bucket", call="login", le="5"), 1,
       "the 3 s login is under 5 s")
    check(val(m, "dfbridge_upstream_request_duration_seconds_sum", call="login") >= 3.0,
          "login duration sum >= 3 s")
    br.stop()


def case_http():
    """GET and HEAD only (405 with Allow otherwise), 404 for other paths, the content types, a real
    scrape passes promtool; a port in use is exit 2; [::1]:0 binds IPv6 loopback; a bad address is
    refused by --check."""
    pod = Pod()
    br = start(pod)
    st, hdr, text = http(br, "/metrics")
    eq(st, 200, "GET /metrics")
    eq(hdr.get("content-type"), "text/plain; version=0.0.4; charset=utf-8", "/metrics type")
    promtool(text)
    samples, types = parse(text)
    for name in ("dfbridge_events_published_total", "dfbridge_events_received_total",
                 "dfbridge_upstream_requests_total", "dfbridge_upstream_request_duration_seconds",
                 "dfbridge_retries_total", "dfbridge_reauthentications_total",
                 "dfbridge_feeds_created_total", "dfbridge_last_read_timestamp_seconds",
                 "dfbridge_publish_lag_seconds", "dfbridge_journal_bytes",
                 "dfbridge_journal_oldest_gseq", "dfbridge_replay_requests_total",
                 "dfbridge_subscribers", "dfbridge_dedupe_dropped_total", "dfbridge_build_info"):
        check(name in types, "family %s exported" % name)
    eq(types.get("dfbridge_upstream_request_duration_seconds"), "histogram", "latency type")
    eq(types.get("dfbridge_publish_lag_seconds"), "histogram", "lag type")
    st, hdr, body = http(br, "/metrics", method="HEAD")
    eq((st, body), (200, ""), "HEAD /metrics")
    for method, path in (("POST", "/metrics"), ("PUT", "/healthz"), ("DELETE", "/readyz")):
        st, hdr, body = http(br, path, method=method, body=b"x" if method != "DELETE" else None)
        eq(st, 405, "%s %s" % (method, path))
        eq(hdr.get("allow"), "GET, HEAD", "Allow of a 405")
    for path in ("/", "/metric", "/metrics/x", "/healthzz", "/admin/counters"):
        eq(http(br, path)[0], 404, "GET %s" % path)
    # The same port again: the second bridge cannot listen, says so once and exits 2.
    port = int(br.url.rsplit(":", 1)[1])
    twin = Bridge(pod, bridge_extra="  metrics: 127.0.0.1:%d\n" % port)
    twin.expect_exit(2, r"bridge\.metrics: cannot listen on 127\.0\.0\.1:%d" % port)
    check(dftest.log_clean(br.text()), "no sanitizer report")
    br.stop()
    # IPv6 loopback
    try:
        import socket
        socket.socket(socket.AF_INET6).bind(("::1", 0))
        v6 = True
    except OSError:
        v6 = False
        print("no IPv6 loopback here: the [::1] part skipped")
    if v6:
        br6 = Bridge(pod, bridge_extra="  metrics: '[::1]:0'\n")
        m = wait_until(lambda: re.search(r"on (http://\[::1\]:\d+)", br6.text()), "the [::1] line")
        if m:
            br6.url = m.group(1)
            eq(http(br6, "/healthz")[0], 200, "/healthz over [::1]")
        br6.stop()
    # A bad address: refused by --check with the key's name.
    bad = Bridge(pod, bridge_extra="  metrics: localhost:9464\n", start=False)
    p = subprocess.run([dftest.CTX.dfbridge, "--config", bad.cfg_path, "--check"],
                       capture_output=True, text=True)
    eq(p.returncode, 2, "--check exit status with metrics: localhost:9464")
    check("bridge.metrics: not an address" in p.stdout + p.stderr, "the message: %r" % p.stderr)


def case_dashboard():
    """docker/grafana/dfbridge.json is JSON, and every metric its PromQL uses (panels and
    template variables) is one a running bridge exports (families from a real scrape; _bucket/_sum/_count of its histograms)."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    check(len(exprs) >= 10, "%d PromQL expressions" % len(exprs))
    pod = Pod()
    br = start(pod)
    _, text = scrape(br)
    br.stop()
    _, types = parse(text)
    known = set(types)
    for name, typ in types.items():
        if typ == "histogram":
            known |= {name + "_bucket", name + "_sum", name + "_count"}
    used = set()
    for e in exprs:
        for name in re.findall(r"\bdfbridge_[a-z0-9_]+", e):
            used.add(name)
            check(name in known, "the dashboard uses %s, which the bridge does not export (%s)"
                  % (name, e))
    for name in ("dfbridge_events_published_total", "dfbridge_upstream_requests_total",
                 "dfbridge_upstream_request_duration_seconds_bucket", "dfbridge_retries_total",
                 "dfbridge_reauthentications_total", "dfbridge_publish_lag_seconds_bucket",
                 "dfbridge_journal_bytes", "dfbridge_subscribers",
                 "dfbridge_last_read_timestamp_seconds", "dfbridge_healthy"):
        check(name in used, "the dashboard shows %s" % name)
    eq(dash.get("title"), "dfbridge", "dashboard title")
    check(dash.get("uid"), "a dashboard uid")


CASES = {"counters": case_counters, "health": case_health, "ready": case_ready,
         "http": case_http, "dashboard": case_dashboard}

if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="metrics-e2e-"))
