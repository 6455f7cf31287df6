#!/usr/bin/python3
"""polyglot_metrics: the consumers' /metrics endpoints after a real run, in C, Python and Node.

dfpod -> dfbridge (heartbeats every 200 ms) -> four workers, each serving /metrics on a free
loopback port with a constant label worker="<name>": the example consumer (libdfconsumer,
--metrics), dftail (--metrics), the Python package (metrics option, metrics_worker.py) and the
Node package (metrics option, metrics_worker.js). Once every worker's scrape shows a heartbeat
(its subscription works), dfpod serves N events; when every scrape counts them all and, for the
loops, every job completed:
- GET /metrics answers 200 with the Prometheus content type, the text passes `promtool check
  metrics` (required), its metric names are exactly consumers/metrics.json's (HELP and TYPE
  included) and every sample carries worker="<name>"; GET of any other path answers 404;
- each loop is stopped (SIGTERM) and its final counters (Python/Node: stats(); C: the counters
  the example consumer prints at exit) equal the scrape, metric by metric: exactly, except the
  heartbeat counters (received, reserved, heartbeats), which may only have grown, while received
  minus reserved is N in both; dftail's scrape counts N events and as many printed lines;
- the Python and Node endpoints are closed once start() returned;
- the tools refuse a bad address, a taken port and bad labels with exit 2 and a clear line.

Usage: metrics_test.py --dfpod P --dfbridge P --example P --dftail P --node P --source-dir DIR
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
import dftest  # noqa: E402
from dftest import check, eq, wait_until  # noqa: E402

N = 300
HB_FIELDS = ("received", "reserved", "heartbeats")


class Worker:
    def __init__(self, name, cmd, port_re, port_stream):
        self.name = name
        self.out_path = os.path.join(dftest.CTX.tmp, "worker-%s.out" % name)
        self.log_path = os.path.join(dftest.CTX.tmp, "worker-%s.log" % name)
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        dftest.CTX.children.append(self.proc)
        self.port_re = port_re
        self.port_path = self.out_path if port_stream == "stdout" else self.log_path
        self.port = None

    def find_port(self):
        m = re.search(self.port_re, dftest.read_text(self.port_path))
        if m:
            self.port = int(m.group(1))
        return self.port

    def out(self):
        return dftest.read_text(self.out_path)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def get(port, path):
    """(status, content type, body text) of GET http://127.0.0.1:port/path."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode("utf-8")
    finally:
        c.close()


def parse(text):
    """{name: (labels text, value)}, {name: HELP}, {name: TYPE} of a Prometheus text page."""
    samples, helps, types = {}, {}, {}
    for line in text.splitlines():
        m = re.match(r"# (HELP|TYPE) (\S+) (.*)$", line)
        if m:
            (helps if m.group(1) == "HELP" else types)[m.group(2)] = m.group(3)
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", line)
        if m:
            samples[m.group(1)] = (m.group(2) or "", float(m.group(3)))
    return samples, helps, types


def values(samples, metrics):
    """The scrape as dfc_stats_t field -> integer (lag back in milliseconds)."""
    out = {}
    for m in metrics:
        v = samples.get(m["name"], ("", -1.0))[1]
        out[m["field"]] = int(round(v * 1000)) if m.get("scale") == "ms" else int(v)
    return out


def promtool(text, what):
    r = subprocess.run([A.promtool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          "%s: promtool check metrics: exit %d %r %r" % (what, r.returncode, r.stdout[-300:],
                                                        r.stderr[-300:]))


def run():
    with open(os.path.join(A.source_dir, "consumers", "metrics.json")) as f:
        metrics = json.load(f)["metrics"]
    for tool in (A.promtool, A.node):
        if not check(os.path.isfile(tool), "%s exists (Debian's prometheus package / nodejs)"
                     % tool):
            return
    pod = dftest.Pod("--hold-ms", "1000", "--batch-max", "50")
    br = dftest.Bridge(pod, datafeed="datafeed:\n  version: v2\n  retry: {initialIntervalMillis:"
                       " 50, maxIntervalMillis: 400}\n", retry="",
                       bridge_extra="  heartbeatMillis: 200\n", read_timeout_ms=None,
                       connect_timeout_ms=None)
    ep = br.endpoint
    any_port = ["--metrics", "127.0.0.1:0"]
    workers = [
        Worker("c", [A.example, "--endpoint", ep] + any_port + ["--metrics-label", "worker=c"],
               r"metrics on port (\d+)", "stdout"),
        Worker("dftail", [A.dftail, "--endpoint", ep] + any_port +
               ["--metrics-label", "worker=dftail"], r"metrics on port (\d+)", "stderr"),
        Worker("python", ["/usr/bin/python3", os.path.join(HERE, "metrics_worker.py"),
                          "--endpoint", ep], r'"metrics_port": ?(\d+)', "stdout"),
        Worker("node", [A.node, os.path.join(HERE, "metrics_worker.js"), "--endpoint", ep],
               r'"metrics_port": ?(\d+)', "stdout"),
    ]
    for w in workers:
        if not wait_until(w.find_port, "%s worker's metrics port (exit %r)"
                          % (w.name, w.proc.poll())):
            return

    # bad options and a taken port: exit 2 with a line naming the problem, before anything runs
    taken = "127.0.0.1:%d" % workers[0].port
    for tool in (A.example, A.dftail):
        for args, words in ((["--metrics", "nohost"], "host:port"),
                            (["--metrics", "[::1]"], "host:port"),
                            (["--metrics", taken], "cannot listen"),
                            (["--metrics", "127.0.0.1:0", "--metrics-label", "9x=y"],
                             "invalid --metrics-label"),
                            (["--metrics", "127.0.0.1:0", "--metrics-label", "w=a",
                              "--metrics-label", "w=b"], "invalid --metrics-label")):
            r = subprocess.run([tool, "--endpoint", ep] + args, capture_output=True, timeout=20)
            check(r.returncode == 2 and words in r.stderr.decode(errors="replace"),
                  "%s %s: exit 2 saying %r (got %d, %r)" % (os.path.basename(tool), " ".join(args),
                                                           words, r.returncode, r.stderr[-200:]))

    def scrape(w):
        st, _, body = get(w.port, "/metrics")
        return values(parse(body)[0], metrics) if st == 200 else {}

    for w in workers:
        wait_until(lambda: scrape(w).get("heartbeats", 0) >= 1,
                   "%s worker's scrape counts a heartbeat" % w.name)
    pod.generate(N, seed=7)

    # A worker's scrape once it is idle: every event counted, every job done, and the same
    # counters (the heartbeat ones aside) as the scrape before it. The counters are read one by
    # one while the worker runs, so a single scrape may catch a message half counted.
    settled = {}

    def idle(w, prev):
        reply = get(w.port, "/metrics")
        if reply[0] != 200:
            return False
        v = values(parse(reply[2])[0], metrics)
        ok = v["received"] - v["reserved"] == N and v["reserved"] == v["heartbeats"]
        if w.name != "dftail":
            ok = ok and v["dispatched"] == v["completed"] + v["skipped"] and v["dispatched"] > 0
        now = {k: x for k, x in v.items() if k not in HB_FIELDS}
        same = now == prev.get("v")
        prev["v"] = now
        if ok and same:
            settled[w.name] = reply
        return ok and same

    for w in workers:
        prev = {}
        wait_until(lambda: idle(w, prev), "%s worker's scrape counts the %d events, idle"
                   % (w.name, N))

    names = [m["name"] for m in metrics]
    scraped = {}
    for w in workers:
        if not check(w.name in settled, "%s: a settled scrape" % w.name):
            continue
        status, ctype, body = settled[w.name]
        eq(status, 200, "%s: GET /metrics status" % w.name)
        eq(ctype, "text/plain; version=0.0.4; charset=utf-8", "%s: Content-Type" % w.name)
        promtool(body, w.name)
        samples, helps, types = parse(body)
        eq(list(samples), names, "%s: the metrics, in the order of consumers/metrics.json" % w.name)
        eq(helps, {m["name"]: m["help"] for m in metrics}, "%s: HELP texts" % w.name)
        eq(types, {m["name"]: m["type"] for m in metrics}, "%s: TYPE lines" % w.name)
        bad = [n for n, (lab, _) in samples.items() if lab != '{worker="%s"}' % w.name]
        check(not bad, "%s: every sample labelled worker=%s (not: %r)" % (w.name, w.name, bad[:3]))
        for path in ("/", "/metrics/x", "/healthz"):
            eq(get(w.port, path)[0], 404, "%s: GET %s status" % (w.name, path))
        scraped[w.name] = values(samples, metrics)
        v = scraped[w.name]
        eq(v["received"] - v["reserved"], N, "%s: events received (received - reserved)" % w.name)
        check(v["heartbeats"] >= 1 and v["reserved"] == v["heartbeats"],
              "%s: heartbeats %d counted in reserved %d" % (w.name, v["heartbeats"],
                                                            v["reserved"]))
        eq(v["dropped_malformed"], 0, "%s: nothing malformed" % w.name)

    # dftail: its printed lines are the events it counted
    w = workers[1]
    wait_until(lambda: len(w.out().splitlines()) >= N, "dftail to print %d lines" % N)
    lines = [x for x in w.out().splitlines() if x.strip()]
    eq(len(lines), N, "dftail: lines printed")
    eq(sum(1 for x in lines if json.loads(x).get("topic", "_").startswith("_")), 0,
       "dftail: no heartbeat printed")
    eq(scraped["dftail"]["listeners"], 0, "dftail: no listeners (it runs no loop)")
    eq(scraped["c"]["listeners"], 2, "example consumer: listeners")
    eq(scraped["python"]["listeners"], 1, "python: listeners")
    eq(scraped["node"]["listeners"], 1, "node: listeners")

    for w in workers:
        if w.name not in scraped:
            continue
        eq(w.stop(), 0, "%s worker's exit status after SIGTERM" % w.name)
        check(dftest.log_clean(dftest.read_text(w.log_path) + w.out()),
              "%s: no sanitizer report in its output" % w.name)
        if w.name == "dftail":
            continue
        out = w.out()
        if w.name == "c":
            tail = out.split("counters:\n", 1)
            final = {k: int(v) for k, v in re.findall(r"^(\w+):(\d+)$", tail[-1], re.M)} \
                if len(tail) == 2 else {}
        else:
            objs = [json.loads(x) for x in out.splitlines() if x.startswith('{"stats"')]
            final = objs[0]["stats"] if objs else {}
            check(bool(objs) and objs[0]["metrics_closed"],
                  "%s: the /metrics endpoint closed with the loop" % w.name)
        if not check(bool(final), "%s: final counters printed" % w.name):
            continue
        v = scraped[w.name]
        eq(sorted(final), sorted(m["field"] for m in metrics), "%s: final counter names" % w.name)
        diff = {f: (v[f], final.get(f)) for f in v if f not in HB_FIELDS and v[f] != final.get(f)}
        check(not diff, "%s: scrape == final counters (scrape, final): %r" % (w.name, diff))
        grew = {f: (v[f], final.get(f, -1)) for f in HB_FIELDS if v[f] > final.get(f, -1)}
        check(not grew, "%s: heartbeat counters only grow after the scrape: %r" % (w.name, grew))
        eq(final["received"] - final["reserved"], N, "%s: final received - reserved" % w.name)
        print("%-7s scrape: received %d (heartbeats %d), dispatched %d, completed %d, filtered %d,"
              " lag %.3f s" % (w.name, v["received"], v["heartbeats"], v["dispatched"],
                               v["completed"], v["filtered"], v["lag_ms"] / 1000), flush=True)
    br.terminate()
    pod.stop()


def main():
    global A
    ap = argparse.ArgumentParser()
    for o in ("--dfpod", "--dfbridge", "--example", "--dftail"):
        ap.add_argument(o, required=True)
    ap.add_argument("--node", default="/usr/bin/node")
    ap.add_argument("--promtool", default="/usr/bin/promtool")
    ap.add_argument("--source-dir", default=os.path.join(HERE, "..", ".."))
    A = ap.parse_args()
    dftest.soft_checks()
    ctx = dftest.setup(A.dfpod, A.dfbridge, "polyglot-metrics-")
    t0 = time.monotonic()
    try:
        run()
    except Exception as e:  # a crash is a failure with its reason, then the logs
        import traceback
        traceback.print_exc()
        check(False, "exception: %r" % e)
    finally:
        ctx.kill_children()
        if dftest.FAILS:
            for n in sorted(os.listdir(ctx.tmp)):
                if n.endswith((".log", ".out")):
                    sys.stdout.write("---- %s (last 2000 chars)\n%s\n"
                                     % (n, dftest.read_text(os.path.join(ctx.tmp, n))[-2000:]))
        ctx.cleanup()
    print("polyglot_metrics: %d passed, %d failed, %.1f s"
          % (dftest.PASSES, len(dftest.FAILS), time.monotonic() - t0))
    return 1 if dftest.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
