#!/usr/bin/python3
"""schemas_lists: every place that lists the event types (and the command channel's ops and error
codes) agrees with the contract table.

schemas/contract-v1.json ("topics") is the one source of the 17 event types: their order, payload
keys and BDK callback names. The places below restate the list (C tables, a public header,
tests, docs, scripts); each is described as data - a file, an optional region (a regex around the
list), a pattern that finds its entries by content (string literals, identifiers), never by line
number - and checked for the same names, count and, where the list is ordered, order. A failure
names the file and the missing, extra or misplaced type. Usage: schemas_lists.py [SOURCE_DIR]
"""
import json
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# what: "type" (the type name), "type+key" (type and payload key), "callback" (the consumer
# library's on_<payload key in snake case>), "java" (the Java BDK's callback), "python" (the Python
# BDK's, on_generic_system_event added). order: the list must be in the contract's order. region: a regex whose group 1
# holds the list (re.S). pattern: finds the entries in the region (re.S). ignore: entries that are
# not event types (on_unknown).
PLACES = [
    {"file": "consumers/dfc_event.c", "what": "type+key", "order": True,
     "pattern": r'X\(\s*"([A-Z_]+)",\s*"(\w+)"'},
    {"file": "consumers/include/dfconsumer.h", "what": "callback", "order": True,
     "pattern": r"DFC_CALLBACK\(\s*(on_\w+)\s*,"},
    {"file": "consumers/examples/example_consumer.c", "what": "callback", "order": True,
     "region": r"(\{[^{}]*\.on_shared_post\s*=[^{}]*\})", "pattern": r"\.(on_\w+)\s*=",
     "ignore": ["on_unknown"]},
    {"file": "consumers/tests/test_loop.c", "what": "type+key", "order": True,
     "region": r"\btypes\[\d*\]\s*=\s*\{(.*?)\n\};",
     "pattern": r'\{\s*"([A-Z_]+)",\s*"\{\\"(\w+)\\"'},
    {"file": "consumers/tests/test_loop.c", "what": "callback", "order": True, "each": True,
     "region": r"(\{[^{}]*\.on_shared_post\s*=[^{}]*\})", "pattern": r"\.(on_\w+)\s*=",
     "ignore": ["on_unknown"]},
    {"file": "bridge/dfb_topics.c", "what": "type", "order": True,
     "region": r"\bdfb_event_types\[DFB_EVENT_TYPES\]\s*=\s*\{(.*?)\n\};", "pattern": r'"([A-Z_]+)"'},
    {"file": "tests/dfpod/pod_gen.c", "what": "type+key", "order": True,
     "region": r"\bkinds\[\]\s*=\s*\{(.*?)\n\};",
     "pattern": r'\{\s*"([A-Z_]+)",\s*"(\w+)"'},
    {"file": "tests/dfpod/README.md", "what": "type", "order": True,
     "region": r"in this order:(.*?)\. ", "pattern": r"\b([A-Z]{4,})\b"},
    {"file": "tests/integration/e2e_stream_test.c", "what": "type", "order": True,
     "region": r"\bKNOWN\[\d*\]\s*=\s*\{(.*?)\};", "pattern": r'"([A-Z_]+)"'},
    {"file": "tests/integration/e2e_common.c", "what": "callback", "order": True, "each": True,
     "region": r"(\{[^{}]*\.on_shared_post\s*=[^{}]*\})", "pattern": r"\.(on_\w+)\s*=",
     "ignore": ["on_unknown"]},
    {"file": "tests/demo_smoke.sh", "what": "type", "order": True,
     "region": r"for t in (.*?); do", "pattern": r"\b([A-Z]{4,})\b"},
    {"file": "schemas/CONTRACT.md", "what": "type+key", "order": True,
     "pattern": r"^\| ([A-Z_]+) \| `(\w+)` "},
    {"file": "schemas/CONTRACT.md", "what": "java", "order": True,
     "pattern": r"^\| [A-Z_]+ \| `\w+` [^\n]*\| `(on[A-Z]\w+)` \|$"},
    # the Python package: its one type table, the listener's callbacks (the Python BDK's names)
    {"file": "consumers/python/dfconsumer/models.py", "what": "type+key", "order": True,
     "pattern": r'^\s*\(\s*"([A-Z_]+)",\s*"(\w+)",\s*"V4\w+",'},
    {"file": "consumers/python/dfconsumer/models.py", "what": "python", "order": True,
     "pattern": r'^\s*\(\s*"[A-Z_]+",\s*"\w+",\s*"V4\w+",\s*"(on_\w+)"\)'},
    {"file": "consumers/python/dfconsumer/listener.py", "what": "python", "order": True,
     "pattern": r"async def (on_\w+)\(self, initiator, event\)", "ignore": ["on_unknown_event"]},
    # the Node package: its type table, the TypeScript listener interface
    {"file": "consumers/node/lib/events.js", "what": "type+key", "order": True,
     "pattern": r"\['([A-Z_]+)', '(\w+)', 'on[A-Z]\w+'"},
    {"file": "consumers/node/lib/events.js", "what": "java", "order": True,
     "pattern": r"\['[A-Z_]+', '\w+', '(on[A-Z]\w+)'"},
    {"file": "consumers/node/index.d.ts", "what": "java", "order": True,
     "pattern": r"^\s*(on[A-Z]\w+)\?: Callback<", "ignore": ["onUnknownEvent"]},
    # the conformance suite and the live polyglot test (their runners read contract-v1.json)
    {"file": "schemas/conformance/canonical.h", "what": "callback", "order": True,
     "pattern": r"X\((on_\w+), dfc_\w+_t\)"},
    {"file": "tests/polyglot/bdk_worker.py", "what": "python", "order": True,
     "pattern": r"async def (on_\w+)\(self, initiator, event\)", "ignore": ["on_unknown_event"]},
    {"file": "tests/polyglot/worker.js", "what": "java", "order": True,
     "pattern": r"^\s*(on[A-Z]\w+)\(initiator, event\)", "ignore": ["onUnknownEvent"]},
]


# The command channel (issue 12): its 9 op names and 6 error codes, from contract-v1.json "commands",
# restated by the bridge's parser, the clients and the prose. what: "op" or "code".
COMMAND_PLACES = [
    {"file": "schemas/CONTRACT.md", "what": "op", "order": True,
     "region": r"\n### Operations\n(.*?)\n\n[^|]", "pattern": r"^\| `([a-z]+\.[A-Za-z]+)` \|"},
    {"file": "schemas/CONTRACT.md", "what": "code", "order": True,
     "region": r"\n### Error codes\n(.*?)\n\n[^|]", "pattern": r"^\| `([a-z_]+)` \|", "ignore": ["code"]},
    # the bridge's parser and error codes, the Python and Node clients (issue 12)
    {"file": "bridge/dfb_cmdproto.c", "what": "op", "order": True,
     "region": r"\bs_ops\[DFB_OP_COUNT\]\s*=\s*\{(.*?)\n\};", "pattern": r'\[DFB_OP_\w+\]\s*=\s*\{\s*"([\w.]+)"'},
    {"file": "bridge/dfb_cmdproto.h", "what": "code", "order": True,
     "pattern": r'^#define DFB_CMD_[A-Z_]+ "([a-z_]+)"'},
    {"file": "consumers/python/dfconsumer/commands.py", "what": "op", "order": True,
     "region": r"\nOPS = \((.*?)\)", "pattern": r'"([\w.]+)"'},
    {"file": "consumers/python/dfconsumer/commands.py", "what": "code", "order": True,
     "region": r"\nERROR_CODES = \((.*?)\)", "pattern": r'"(\w+)"'},
    {"file": "consumers/python/dfconsumer/services.py", "what": "op", "order": False, "dedupe": True,
     "pattern": r'\.call\(\s*"([a-z]+\.[A-Za-z]+)"'},
    {"file": "consumers/node/lib/commands.js", "what": "code", "order": True,
     "region": r"\bconst CODES = \[(.*?)\];", "pattern": r"'(\w+)'"},
    {"file": "consumers/node/lib/services.js", "what": "op", "order": False, "dedupe": True,
     "pattern": r"\.call\('([a-z]+\.[A-Za-z]+)'"},
]


def command_lists():
    with open(os.path.join(SRC, "schemas", "contract-v1.json")) as f:
        cmd = json.load(f)["commands"]
    return {"op": [o["op"] for o in cmd["ops"]], "code": list(cmd["error_codes"])}


def contract():
    with open(os.path.join(SRC, "schemas", "contract-v1.json")) as f:
        topics = json.load(f)["topics"]
    snake = [re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), t["payload_key"]) for t in topics]
    # the Python BDK has no callback for GENERICSYSTEMEVENT; our package adds the regular name
    python = [t["bdk_python"] or "on_" + s for t, s in zip(topics, snake)]
    return ([t["type"] for t in topics], [(t["type"], t["payload_key"]) for t in topics],
            ["on_" + s for s in snake], [t["bdk_java"] for t in topics], python)


def compare(where, got, want, order):
    """Messages naming what differs between got and want (lists of names or pairs)."""
    out = []
    missing = [w for w in want if w not in got]
    extra = [g for g in got if g not in want]
    dups = sorted({g for g in got if got.count(g) > 1}, key=str)
    if missing:
        out.append("%s: missing %s" % (where, ", ".join(map(str, missing))))
    if extra:
        out.append("%s: extra (not in schemas/contract-v1.json) %s" % (where, ", ".join(map(str, extra))))
    if dups:
        out.append("%s: listed twice %s" % (where, ", ".join(map(str, dups))))
    if order and not missing and not extra and not dups and got != want:
        i = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        out.append("%s: order differs from the contract at position %d: %s where the contract has %s"
                   % (where, i + 1, got[i], want[i]))
    if not out and len(got) != len(want):
        out.append("%s: %d entries, the contract has %d" % (where, len(got), len(want)))
    return out


def main():
    types, pairs, callbacks, java, python = contract()
    errors = []
    if len(types) != 17 or len(set(types)) != 17:
        errors.append("schemas/contract-v1.json: %d topics (%d distinct), want 17" % (len(types), len(set(types))))
    want = {"type": types, "type+key": pairs, "callback": callbacks, "java": java, "python": python}
    want.update(command_lists())
    if len(want["op"]) != 9 or len(want["code"]) != 6:
        errors.append("schemas/contract-v1.json commands: %d ops and %d codes, want 9 and 6"
                      % (len(want["op"]), len(want["code"])))
    for p in PLACES + COMMAND_PLACES:
        path = os.path.join(SRC, p["file"])
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            errors.append("%s: cannot read: %s" % (p["file"], e))
            continue
        regions = [text]
        if "region" in p:
            regions = re.findall(p["region"], text, re.S)
            if not regions:
                errors.append("%s: the list (%s) is not found: update schemas_lists.py if it moved"
                              % (p["file"], p["region"]))
                continue
            if not p.get("each"):
                regions = regions[:1]
        for n, region in enumerate(regions):
            got = re.findall(p["pattern"], region, re.S | re.M)
            got = [g for g in got if g not in p.get("ignore", [])]
            if p.get("dedupe"):  # calls, not a table: each name at least once
                got = [g for i, g in enumerate(got) if g not in got[:i]]
            if not got:
                errors.append("%s: no %s entries found by %s" % (p["file"], p["what"], p["pattern"]))
                continue
            where = p["file"] + ("" if len(regions) == 1 else " (list %d)" % (n + 1))
            where += " [%s]" % p["what"]
            errors += compare(where, got, want[p["what"]], p["order"])
    for e in errors:
        print("FAIL: " + e)
    print("%d places checked against the contract's %d event types, %d against its %d command ops and %d "
          "error codes: %s" % (len(PLACES), len(types), len(COMMAND_PLACES), len(want["op"]),
                               len(want["code"]), "FAILED" if errors else "OK"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
