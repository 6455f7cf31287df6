#!/usr/bin/python3
"""bridge_check_keys: the bridge: key table (dfb_config_keys, the one the parser uses) against
the two places people read it: bridge/dfbridge.example.yaml and the README's bridge table.

Example: every key is documented by a comment starting "# <key>:" at its indentation with
"Default: <default>" ("Default: unset" for a key unset by default) before the next key; a key
with a default is set to exactly that value, a key without one is not set; no other key is set.
README: the rows of the bridge table name the keys in the table's order, and each default cell
starts with `<default>` (or "unset"). Usage: check_keys.py DFB_CONFIG_KEYS SOURCE_DIR
"""
import re
import subprocess
import sys

import yaml


def load_table(prog):
    out = subprocess.run([prog], check=True, capture_output=True, text=True).stdout
    keys = []
    for line in out.splitlines():
        name, typ, default, rng, helptext = line.split("\t")
        keys.append({"name": name, "type": typ, "default": default, "range": rng, "help": helptext})
    return keys


def flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def check_example(keys, path):
    errors = []
    text = open(path).read()
    doc = yaml.safe_load(text)
    active = flatten(doc.get("bridge"))
    names = [k["name"] for k in keys]
    for name in active:
        if name not in names:
            errors.append("%s: bridge.%s is set but is not a bridge key" % (path, name))
    lines = text[text.index("\nbridge:\n"):].splitlines()
    leaves = {k["name"].split(".")[-1] for k in keys} | {n.split(".")[0] for n in names if "." in n}
    for k in keys:
        leaf = k["name"].split(".")[-1]
        indent = "  " * (k["name"].count(".") + 1)
        doc_re = re.compile(r"^%s# %s: " % (indent, re.escape(leaf)))
        start = next((i for i, ln in enumerate(lines) if doc_re.match(ln)), None)
        if start is None:
            errors.append("%s: bridge.%s is not documented (no '# %s:' comment)" % (path, k["name"], leaf))
            continue
        block = []
        for ln in lines[start + 1:]:
            m = re.match(r"^\s*#?\s*([A-Za-z]+):", ln)
            if not ln.lstrip().startswith("#") or (m and m.group(1) in leaves):
                break
            block.append(ln)
        block = " ".join([lines[start]] + block)
        want = k["default"] or "unset"
        m = re.search(r"Default: (\S+)", block)
        if not m or m.group(1) != want:
            errors.append("%s: bridge.%s: comment says Default: %s, the table %s"
                          % (path, k["name"], m.group(1) if m else "(none)", want))
        value = active.get(k["name"])
        if isinstance(value, bool):  # YAML's true/false, the table's "true"/"false"
            value = str(value).lower()
        if k["default"] and str(value) != k["default"]:
            errors.append("%s: bridge.%s is set to %r, its default is %s"
                          % (path, k["name"], active.get(k["name"]), k["default"]))
        if not k["default"] and k["name"] in active:
            errors.append("%s: bridge.%s has no default but the example sets it" % (path, k["name"]))
    return errors


def check_readme(keys, path):
    errors = []
    text = open(path).read()
    rows = re.findall(r"^\| `bridge\.([A-Za-z.]+)` \| ([^|]*) \|", text, re.M)
    got = [r[0] for r in rows]
    want = [k["name"] for k in keys]
    if got != want:
        errors.append("%s: the bridge table's keys %s; missing %s, extra %s, order %s"
                      % (path, got, [n for n in want if n not in got],
                         [n for n in got if n not in want], "differs" if sorted(got) == sorted(want) else "-"))
    cells = dict(rows)
    for k in keys:
        cell = cells.get(k["name"])
        if cell is None:
            continue
        ok = cell.startswith("`%s`" % k["default"]) if k["default"] else cell.startswith("unset")
        if not ok:
            errors.append("%s: bridge.%s: default cell %r, the table says %s"
                          % (path, k["name"], cell, k["default"] or "unset"))
    return errors


def main():
    prog, src = sys.argv[1], sys.argv[2]
    keys = load_table(prog)
    errors = []
    if len(keys) < 10:
        errors.append("the key table has only %d keys" % len(keys))
    errors += check_example(keys, src + "/bridge/dfbridge.example.yaml")
    errors += check_readme(keys, src + "/README.md")
    for e in errors:
        print("FAIL: " + e)
    print("%d bridge keys checked against the example config and the README: %s"
          % (len(keys), "FAILED" if errors else "OK"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
