#!/usr/bin/python3
"""Proves schemas/golden/vectors.json from the reader's side: every msgpack
body decodes (python3-msgpack, strict UTF-8, no bin) to exactly the JSON
input (types, exact ints, -0.0, key order, duplicate keys), envelope values
are as stated, and topics follow the contract. Run by ctest as
schemas_golden_python with Debian's /usr/bin/python3."""
import json
import math
import os
import struct
import sys

import msgpack

sys.setrecursionlimit(20000)

INT64_MIN, UINT64_MAX = -2**63, 2**64 - 1
ENVELOPE_KEYS = ["v", "seq", "gseq", "epoch", "ts", "bot", "event"]

# Invalid inputs that Python's own json module accepts: contract v1 is
# stricter on purpose (the wire carries valid UTF-8 only; bounded depth).
PYTHON_LAX = {"lone_high_surrogate", "lone_low_surrogate", "high_surrogate_then_letter",
              "high_surrogate_then_non_low_escape", "two_high_surrogates", "surrogate_in_key",
              "depth_513"}


class Obj(list):
    pass


def no_constants(name):
    raise ValueError("not JSON: " + name)


def parse_int(text):
    v = int(text)
    return v if INT64_MIN <= v <= UINT64_MAX else float(text)


def load_json(text):
    return json.loads(text, object_pairs_hook=Obj, parse_int=parse_int,
                      parse_constant=no_constants)


def load_msgpack(raw):
    # object_pairs_hook keeps order and duplicates; raw=False insists on
    # valid UTF-8 str; bin would come back as bytes and fail the compare.
    return msgpack.unpackb(raw, raw=False, object_pairs_hook=Obj, strict_map_key=True,
                           max_str_len=2**31, max_array_len=2**31, max_map_len=2**31)


def same(a, b, path="$"):
    """Exact equality: same Python types, float bits, order."""
    # Obj (object) and list (array) are distinct types, as are bool and int.
    if type(a) is not type(b):
        return "%s: type %s vs %s" % (path, type(a).__name__, type(b).__name__)
    if isinstance(a, list):
        if len(a) != len(b):
            return "%s: length %d vs %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            if isinstance(a, Obj):
                if x[0] != y[0] or type(y[0]) is not str:
                    return "%s: key %r vs %r at %d" % (path, x[0], y[0], i)
                err = same(x[1], y[1], "%s.%s" % (path, x[0]))
            else:
                err = same(x, y, "%s[%d]" % (path, i))
            if err:
                return err
        return None
    if isinstance(a, float):
        if struct.pack(">d", a) != struct.pack(">d", b):
            return "%s: float %r vs %r" % (path, a, b)
        return None
    return None if a == b else "%s: %r vs %r" % (path, a, b)


def expand(template, repeats, field):
    for r in repeats or []:
        unit = r["json_unit"] if field == "json" else r["msgpack_hex_unit"]
        if unit is not None:
            assert template.count(r["placeholder"]) == 1, "placeholder must occur once"
            template = template.replace(r["placeholder"], unit * r["times"])
    return template


def topic(value):
    if isinstance(value, Obj):
        for k, v in value:
            if k == "type":
                return v if isinstance(v, str) and v and not v.startswith("_") else "UNKNOWN"
    return "UNKNOWN"


# ---- the command channel ----------------------------------------------------
# Written apart from generate.py: the rules of CONTRACT.md section 13 again.
import hashlib


def view_load(text):
    """A view: JSON text with exact ints and key order, {"$bin": hex} = bytes."""
    def fix(v):
        if isinstance(v, Obj):
            if len(v) == 1 and v[0][0] == "$bin":
                return bytes.fromhex(v[0][1])
            return Obj((k, fix(x)) for k, x in v)
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(load_json(text))


def load_bin_msgpack(raw):
    """As load_msgpack, bin allowed (attachments): bytes."""
    return msgpack.unpackb(raw, raw=False, object_pairs_hook=Obj, strict_map_key=True)


def field(obj, key, default=None):
    for k, v in obj:
        if k == key:
            return v
    return default


def check_commands(doc, contract):
    """Returns (checks, failures)."""
    cmd = contract["commands"]
    ops = {o["op"]: o for o in cmd["ops"]}
    codes = list(cmd["error_codes"])
    reply_keys = [e["key"] for e in cmd["reply"]]
    checks = failures = 0

    def bad(name, msg):
        nonlocal failures
        failures += 1
        print("FAIL commands %s: %s" % (name, msg))

    sec = doc["commands"]
    seen_ops = set()
    for case in sec["requests"]:
        checks += 1
        name = case["name"]
        value = view_load(case["view"])
        got = load_bin_msgpack(bytes.fromhex(case["msgpack_hex"]))
        err = same(value, got)
        if err:
            bad(name, "bytes are not the view: " + err)
            continue
        op, ident, args = field(got, "op"), field(got, "id"), field(got, "args")
        if op not in ops or op != case["op"] or ident != case["id"]:
            bad(name, "op/id %r %r" % (op, ident))
            continue
        seen_ops.add(op)
        names = [a["name"] for a in ops[op]["args"]]
        if any(k not in names for k, _ in args):
            bad(name, "an arg the contract does not list for %s" % op)
        if any(a["required"] and field(args, a["name"]) is None for a in ops[op]["args"]):
            bad(name, "a required arg is missing")
        if not (1 <= len(ident.encode()) <= 128) or any(ord(c) < 32 or ord(c) == 127 for c in ident):
            bad(name, "id is not 1..128 bytes without control characters")
        # the args' bytes as received: the value of "args" in the frame
        raw = bytes.fromhex(case["msgpack_hex"])
        argbytes = msgpack.packb(args_plain(args), use_bin_type=True)
        if raw.find(argbytes) < 0:
            bad(name, "args bytes not found in the frame")
        fp = hashlib.sha256(op.encode() + b"\0" + argbytes).hexdigest()
        if fp != case["fingerprint"]:
            bad(name, "fingerprint %s, want %s" % (case["fingerprint"], fp))
        sid = field(args, "stream_id", "")
        want_stream = sid.replace("+", "-").replace("/", "_").rstrip("=") \
            if any(c in sid for c in "+/=") else sid
        if case["stream"] != want_stream:
            bad(name, "stream %r, want %r" % (case["stream"], want_stream))
        if case["mark"] != hashlib.sha256(b"dfbridge-mark\0\0" + ident.encode()).hexdigest()[:32]:
            bad(name, "mark")
    if seen_ops != set(ops):
        bad("requests", "no vector for %s" % sorted(set(ops) - seen_ops))
    for case in sec["bad_requests"]:
        checks += 1
        if "view" in case and view_load(case["view"]) is not None:
            got = None
            try:
                got = load_bin_msgpack(bytes.fromhex(case["msgpack_hex"]))
            except Exception as e:  # noqa: BLE001 - reported
                bad(case["name"], "view given but the bytes do not decode: %s" % e)
            if got is not None:
                err = same(view_load(case["view"]), got)
                if err:
                    bad(case["name"], "bytes are not the view: " + err)
    for case in sec["replies"]:
        checks += 1
        name = case["name"]
        got = load_bin_msgpack(bytes.fromhex(case["msgpack_hex"]))
        err = same(view_load(case["view"]), got)
        if err:
            bad(name, "bytes are not the view: " + err)
            continue
        keys = [k for k, _ in got]
        ok = field(got, "ok")
        want_keys = [k for k in reply_keys if k != ("error" if ok else "result")]
        if keys != want_keys:
            bad(name, "keys %s, want %s" % (keys, want_keys))
            continue
        if field(got, "v") != 1 or field(got, "replayed") is not case["replayed"]:
            bad(name, "v or replayed")
        if case["from"] == "outcome":
            outcome = load_bin_msgpack(bytes.fromhex(case["outcome_hex"]))
            err = same(view_load(case["outcome_view"]), outcome)
            key = "result" if ok else "error"
            if err or [k for k, _ in outcome] != ["ok", key, "found"]:
                bad(name, "outcome bytes: %s" % (err or [k for k, _ in outcome]))
            elif same(field(outcome, key), field(got, key)) or field(outcome, "ok") is not ok or \
                    field(outcome, "found") is not field(got, "found"):
                bad(name, "the reply is not its outcome")
        else:
            if same(view_load(case["error_view"]), field(got, "error")) or ok or field(got, "found"):
                bad(name, "the reply is not its error")
        if not ok:
            e = field(got, "error")
            code = field(e, "code")
            ekeys = [k for k, _ in e]
            want = ["code", "message"] + (["status"] if code == "rejected" else []) + \
                   (["retry_after_ms"] if code == "busy" else [])
            if code not in codes or ekeys != want or field(got, "found"):
                bad(name, "error %s keys %s, want %s" % (code, ekeys, want))
    seen_codes = {field(field(view_load(c["view"]), "error") or Obj(), "code")
                  for c in sec["replies"]} - {None}
    if seen_codes != set(codes):
        bad("replies", "codes without a vector: %s" % sorted(set(codes) - seen_codes))
    for m in sec["marks"]:
        checks += 1
        want = hashlib.sha256(b"dfbridge-mark\0" + m["scope"].encode() + b"\0"
                              + m["id"].encode()).digest()[:16].hex()
        if m["mark"] != want:
            bad("mark %r %r" % (m["scope"], m["id"]), "%s, want %s" % (m["mark"], want))
    return checks, failures


def args_plain(v):
    """Obj -> dict (no duplicate keys here) for packb, order kept."""
    if isinstance(v, Obj):
        return {k: args_plain(x) for k, x in v}
    if isinstance(v, list):
        return [args_plain(x) for x in v]
    return v


def main(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["contract_version"] == 1
    failures = 0
    names = set()
    for case in doc["valid"]:
        name = case["name"]
        assert name not in names, "duplicate name " + name
        names.add(name)
        text = expand(case["json"], case.get("repeat"), "json")
        raw = bytes.fromhex(expand(case["msgpack_hex"], case.get("repeat"), "msgpack_hex"))
        value = load_json(text)
        decoded = load_msgpack(raw)
        env = case["envelope"]
        err = None
        if env is not None:
            keys = [k for k, _ in decoded] if isinstance(decoded, Obj) else None
            if keys != ENVELOPE_KEYS:
                err = "envelope keys %r" % (keys,)
            else:
                d = dict(decoded)
                want = Obj([("v", 1)] + [(k, env[k] if k == "epoch" else int(env[k]))
                                         for k in ENVELOPE_KEYS[1:6]]
                           + [("event", value)])
                err = same(want, decoded)
                if not err and not isinstance(d["bot"], int):
                    err = "bot not an int"
        else:
            err = same(value, decoded)
        if not err and case["topic"] != topic(value):
            err = "topic %r, rule gives %r" % (case["topic"], topic(value))
        if not err and isinstance(value, float) and math.isnan(value):
            err = "NaN is not JSON"
        if err:
            failures += 1
            print("FAIL %s: %s" % (name, err))
    for case in doc["invalid"]:
        name = case["name"]
        if "json_hex" in case:
            data = bytes.fromhex(case["json_hex"])
        else:
            data = expand(case["json"], case.get("repeat"), "json").encode("utf-8")
        try:
            load_json(data.decode("utf-8"))
            accepted = True
        except (ValueError, UnicodeDecodeError, RecursionError):
            accepted = False
        if accepted != (name in PYTHON_LAX):
            failures += 1
            print("FAIL invalid %s: python json %s it" % (name, "accepts" if accepted else
                                                         "rejects"))
    # Lenient mode: the bytes decode to Python's own lenient reading.
    for case in doc["lenient"]:
        raw = bytes.fromhex(case["json_hex"])
        text = raw.decode("utf-8", "replace")
        count = text.count("\ufffd") - raw.decode("utf-8", "ignore").count("\ufffd")
        value = load_json(text)

        def fix(v):
            nonlocal count
            if isinstance(v, str):
                lone = sum(1 for ch in v if 0xD800 <= ord(ch) <= 0xDFFF)
                count += lone
                return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in v)
            if isinstance(v, Obj):
                return Obj((fix(k), fix(x)) for k, x in v)
            if isinstance(v, list):
                return [fix(x) for x in v]
            return v
        value = fix(value)
        err = same(value, load_msgpack(bytes.fromhex(case["msgpack_hex"])))
        if not err and count != case["replacements"]:
            err = "replacements %d, vector says %d" % (count, case["replacements"])
        if not err and case["topic"] != topic(value):
            err = "topic"
        if err:
            failures += 1
            print("FAIL lenient %s: %s" % (case["name"], err))
    lenient_names = {c["name"] for c in doc["lenient"]}
    for case in doc["invalid"]:
        if case["strict_only"] != (case["name"] in lenient_names):
            failures += 1
            print("FAIL invalid %s: strict_only disagrees with the lenient list" % case["name"])

    # The machine-readable contract agrees with the vectors and this checker.
    contract_path = os.path.join(os.path.dirname(os.path.abspath(path)), "..", "contract-v1.json")
    with open(contract_path, encoding="utf-8") as f:
        contract = json.load(f)
    checks = 3
    if [e["key"] for e in contract["envelope"] if not e.get("optional")] != ENVELOPE_KEYS or \
            contract["version"] != 1:
        failures += 1
        print("FAIL contract-v1.json: envelope keys or version")
    known = {t["type"]: t["payload_key"] for t in contract["topics"]}
    if len(known) != 17 or contract["unknown_topic"] != "UNKNOWN":
        failures += 1
        print("FAIL contract-v1.json: %d topics" % len(known))
    for case in doc["valid"]:
        value = load_json(expand(case["json"], case.get("repeat"), "json"))
        t = topic(value)
        if case["name"].startswith(("constructed_", "java_")) and isinstance(value, Obj) and \
                t in known and [k for k, _ in dict(value)["payload"]] != [known[t]]:
            failures += 1
            print("FAIL %s: payload key is not %s" % (case["name"], known[t]))
    cmd_checks, cmd_failures = check_commands(doc, contract)
    checks += cmd_checks
    failures += cmd_failures
    total = len(doc["valid"]) + 2 * len(doc["invalid"]) + len(doc["lenient"]) + checks
    print("%d passed, %d failed" % (total - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "vectors.json"))
