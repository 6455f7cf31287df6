#!/usr/bin/python3
"""metrics_check: the consumer metrics are one list, consumers/metrics.json, and the C library,
the Python package and the Node package print exactly it.

- The list has one entry per dfc_stats_t field, in the struct's order (the public header, the
  DFC_STATS_FIELDS macro, Python's and Node's STATS_FIELDS), names by the rule
  (dfconsumer_<field>_total for counters, dfconsumer_<field> for gauges, lag_ms in seconds) and
  no name twice; Python's and Node's METRICS tables equal it entry by entry.
- For the same sample counters (field i = (i + 1) * 1000003 + 7, lag_ms 1000042), with and
  without constant labels that need escaping, the C library (consumer_test_metrics --sample),
  Python (prometheus_text, DatafeedLoop.stats_prometheus) and Node (prometheusText,
  loop.statsPrometheus) print the same bytes as this script's own rendering of the list, and
  `promtool check metrics` accepts them (promtool is required: Debian's prometheus package).
- Python and Node refuse the label names and values the C library refuses.

Usage: metrics_check.py SOURCE_DIR C_SAMPLE_PROGRAM NODE PROMTOOL
"""
import json
import os
import re
import shutil
import subprocess
import sys

SRC, C_PROG, NODE, PROMTOOL = sys.argv[1:5]
errors = []


def fail(msg):
    errors.append(msg)
    print("FAIL: " + msg, flush=True)


def eq(got, want, what):
    if got != want:
        fail("%s: got %r, want %r" % (what, got, want))
    return got == want


def read(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


LIST = json.loads(read("consumers/metrics.json"))["metrics"]
FIELDS = [m["field"] for m in LIST]
LABELS = [("worker", 'w "1"\\\n'), ("group", "gr\u00fcppe")]


def sample():
    st = {f: (i + 1) * 1000003 + 7 for i, f in enumerate(FIELDS)}
    st["lag_ms"] = 1000042
    return st


def render(stats, labels):
    """The text the three must print, from the list alone."""
    lab = ""
    if labels:
        esc = [(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
               for k, v in labels]
        lab = "{" + ",".join('%s="%s"' % kv for kv in esc) + "}"
    out = ""
    for m in LIST:
        v = stats[m["field"]]
        value = ("%d.%03d" % (v // 1000, v % 1000)) if m.get("scale") == "ms" else str(v)
        out += "# HELP %s %s\n# TYPE %s %s\n%s%s %s\n" % (m["name"], m["help"], m["name"],
                                                         m["type"], m["name"], lab, value)
    return out


def check_list():
    header = read("consumers/include/dfconsumer.h")
    body = re.search(r"typedef struct \{\n(\s+uint64_t listeners;.*?)\} dfc_stats_t;", header, re.S)
    got = re.findall(r"^\s+uint64_t (\w+);", body.group(1), re.M) if body else []
    eq(got, FIELDS, "dfc_stats_t fields (dfconsumer.h) vs consumers/metrics.json")
    priv = read("consumers/dfc_loop_priv.h")
    macro = re.search(r"#define DFC_STATS_FIELDS\(X\)(.*?)\n\n", priv, re.S)
    eq(re.findall(r"X\((\w+)\)", macro.group(1)) if macro else [], FIELDS,
       "DFC_STATS_FIELDS (dfc_loop_priv.h)")
    names = [m["name"] for m in LIST]
    eq(len(set(names)), len(names), "distinct metric names")
    for m in LIST:
        want = ("dfconsumer_lag_seconds" if m["field"] == "lag_ms" else
                "dfconsumer_%s%s" % (m["field"], "_total" if m["type"] == "counter" else ""))
        eq(m["name"], want, "name of %s" % m["field"])
        if m["type"] not in ("counter", "gauge"):
            fail("%s: type %r" % (m["field"], m["type"]))
        if "\\" in m["help"] or "\n" in m["help"] or not m["help"]:
            fail("%s: HELP must be one plain line" % m["field"])
    eq([m["field"] for m in LIST if m["type"] == "gauge"], ["listeners", "lag_ms"], "the gauges")


def check_promtool(text, what):
    if not shutil.which(PROMTOOL) and not os.path.isfile(PROMTOOL):
        fail("promtool (%s) not found: install Debian's prometheus package "
             "(scripts/install-deps.sh)" % PROMTOOL)
        return
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
        fail("promtool check metrics on %s: exit %d %s %s" % (what, r.returncode, r.stdout[-500:],
                                                             r.stderr[-500:]))


def check_c(want_plain, want_labels):
    for args, want in (([], want_plain), (["--labels"], want_labels)):
        r = subprocess.run([C_PROG, "--sample"] + args, capture_output=True, timeout=30)
        eq(r.returncode, 0, "C sample exit")
        got = r.stdout.decode("utf-8")
        if got != want:
            fail("C dfc_stats_prometheus %s differs: first line %r" % (args, first_diff(got, want)))


def first_diff(got, want):
    for a, b in zip(got.splitlines(), want.splitlines()):
        if a != b:
            return (a, b)
    return ("%d lines" % len(got.splitlines()), "%d lines" % len(want.splitlines()))


BAD_NAMES = ["9lives", "__name__", "a-b", ""]


def check_python(want_plain, want_labels):
    sys.path.insert(0, os.path.join(SRC, "consumers", "python"))
    import dfconsumer
    from dfconsumer import metrics
    eq([list(t) for t in dfconsumer.METRICS],
       [[m["field"], m["name"], m["type"], m["help"]] for m in LIST], "Python METRICS")
    eq(list(dfconsumer.STATS_FIELDS), FIELDS, "Python STATS_FIELDS")
    st = sample()
    for got, want, what in ((dfconsumer.prometheus_text(st), want_plain, "plain"),
                            (dfconsumer.prometheus_text(st, dict(LABELS)), want_labels, "labels")):
        if got != want:
            fail("Python prometheus_text (%s) differs: %r" % (what, first_diff(got, want)))
    loop = dfconsumer.DatafeedLoop(metrics_labels=dict(LABELS))
    loop.counters.update(st)
    if loop.stats_prometheus() != want_labels:
        fail("Python DatafeedLoop.stats_prometheus() differs from the rendering")
    refused = 0
    cases = [{n: "x"} for n in BAD_NAMES] + [[("worker", "a"), ("worker", "b")],
                                             {"worker": None}, {"worker": "\ud800"}]
    for c in cases:
        try:
            metrics.prometheus_text(st, c)
        except ValueError:
            refused += 1
    eq(refused, len(cases), "Python: bad labels refused")
    for bad in ({"metrics": "nohostport"}, {"metrics_labels": {"__x": "y"}}):
        try:
            dfconsumer.DatafeedLoop(**bad)
            fail("Python DatafeedLoop(%r) accepted" % bad)
        except ValueError:
            pass


NODE_SCRIPT = r"""
const d = require(process.argv[1]);
const m = require(process.argv[1] + '/lib/metrics');
const st = JSON.parse(process.argv[2]);
const labels = Object.fromEntries(JSON.parse(process.argv[3]));
const loop = new d.DatafeedLoop(null, { metricsLabels: labels });
Object.assign(loop.stat, st);
const bad = JSON.parse(process.argv[4]).map((n) => ({ [n]: 'x' }))
  .concat([[['worker', 'a'], ['worker', 'b']], { worker: null }, { worker: '\ud800' }]);
let refused = 0;
for (const c of bad) { try { m.prometheusText(st, c); } catch (e) { if (e instanceof TypeError) refused++; } }
let ctor = 0;
for (const o of [{ metrics: 'nohostport' }, { metricsLabels: { __x: 'y' } }]) {
  try { new d.DatafeedLoop(null, o); } catch (e) { if (e instanceof TypeError) ctor++; }
}
process.stdout.write(JSON.stringify({
  metrics: d.METRICS, fields: d.STATS_FIELDS, plain: d.prometheusText(st),
  labels: d.prometheusText(st, labels), loop: loop.statsPrometheus(), refused, bad: bad.length, ctor,
}));
"""


def check_node(want_plain, want_labels):
    pkg = os.path.join(SRC, "consumers", "node")
    if not os.path.isdir(os.path.join(pkg, "node_modules", "zeromq")):
        fail("the Node package's dependencies are missing (npm ci in %s)" % pkg)
        return
    r = subprocess.run([NODE, "-e", NODE_SCRIPT, pkg, json.dumps(sample()), json.dumps(LABELS),
                        json.dumps(BAD_NAMES)], capture_output=True, timeout=60)
    if not eq(r.returncode, 0, "node exit (%s)" % r.stderr.decode(errors="replace")[-800:]):
        return
    o = json.loads(r.stdout)
    eq(o["metrics"], [[m["field"], m["name"], m["type"], m["help"]] for m in LIST], "Node METRICS")
    eq(o["fields"], FIELDS, "Node STATS_FIELDS")
    for what, want in (("plain", want_plain), ("labels", want_labels), ("loop", want_labels)):
        if o[what] != want:
            fail("Node prometheusText (%s) differs: %r" % (what, first_diff(o[what], want)))
    eq(o["refused"], o["bad"], "Node: bad labels refused")
    eq(o["ctor"], 2, "Node: bad metrics options refused by the constructor")


def main():
    check_list()
    want_plain = render(sample(), None)
    want_labels = render(sample(), LABELS)
    eq(len(want_plain.splitlines()), 3 * len(LIST), "lines of the rendering")
    check_promtool(want_plain, "the rendering without labels")
    check_promtool(want_labels, "the rendering with labels")
    check_c(want_plain, want_labels)
    check_python(want_plain, want_labels)
    check_node(want_plain, want_labels)
    print("%d metrics; C, Python and Node checked against consumers/metrics.json: %s"
          % (len(LIST), "FAILED" if errors else "OK"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
