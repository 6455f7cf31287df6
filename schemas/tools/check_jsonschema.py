#!/usr/bin/python3
"""schemas_jsonschema: the JSON Schemas of schemas/jsonschema/ are valid 2020-12 schemas, accept every
golden vector and sample event they must accept, reject the broken ones, and list exactly what
schemas/contract-v1.json lists (payload fields, envelope and bridge-message keys, counters, types).
The message payloads of asyncapi.yaml (which $ref these files) accept each topic's sample event and
refuse another type's, and asyncapi.yaml is what tools/gen_asyncapi.py writes.

Run with Debian's /usr/bin/python3 (python3-jsonschema 4.10, python3-msgpack, python3-yaml).
Usage: check_jsonschema.py [SOURCE_DIR]. Prints counts and every failure; exits 1 if anything failed.

Integers: msgpack keeps int and float apart, JSON Schema's "integer" also admits 1.0. The validator
here redefines "integer" as an int (not a bool, not a float), so that a float gseq fails as it does
in every consumer."""
import copy
import json
import os
import re
import subprocess
import sys

import jsonschema
import msgpack
import yaml
from jsonschema import Draft202012Validator, RefResolver, validators

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCHEMAS = os.path.join(SRC, "schemas")
JS = os.path.join(SCHEMAS, "jsonschema")
BASE = "https://dfbridge.example/schemas/v1/jsonschema/"
META = "https://json-schema.org/draft/2020-12/schema"
U64, I64_MIN, I64_MAX = 2**64 - 1, -2**63, 2**63 - 1

errors = []
counts = {}


def fail(msg):
    errors.append(msg)


def count(what, n=1):
    counts[what] = counts.get(what, 0) + n


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


CONTRACT = load_json(os.path.join(SCHEMAS, "contract-v1.json"))
TOPICS = CONTRACT["topics"]

# ---------------------------------------------------------------- schemas

def load_schemas():
    store = {}
    for d, _, files in os.walk(JS):
        for name in sorted(files):
            path = os.path.join(d, name)
            rel = os.path.relpath(path, JS).replace(os.sep, "/")
            if not name.endswith(".json"):
                fail("jsonschema/%s: not a .json file" % rel)
                continue
            doc = load_json(path)
            if doc.get("$schema") != META:
                fail("jsonschema/%s: $schema is %r, want %s" % (rel, doc.get("$schema"), META))
            if doc.get("$id") != BASE + rel:
                fail("jsonschema/%s: $id is %r, want %s" % (rel, doc.get("$id"), BASE + rel))
            try:
                Draft202012Validator.check_schema(doc)
                count("schemas valid (2020-12 metaschema)")
            except jsonschema.exceptions.SchemaError as e:
                fail("jsonschema/%s: not a valid 2020-12 schema: %s" % (rel, e.message))
            store[BASE + rel] = doc
    return store


STORE = load_schemas()


def no_fetch(uri):
    raise RuntimeError("schema %s is not in schemas/jsonschema (no network fetch)" % uri)


STRICT = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, x: isinstance(x, int) and not isinstance(x, bool))
Strict = validators.extend(Draft202012Validator, type_checker=STRICT)


def validator(rel):
    schema = STORE[BASE + rel]
    resolver = RefResolver(BASE + rel, schema, store=STORE, handlers={"https": no_fetch, "http": no_fetch})
    return Strict(schema, resolver=resolver)


def problems(rel, instance):
    """The validation errors of instance against jsonschema/rel, as short strings."""
    return ["%s: %s" % ("/".join(map(str, e.absolute_path)) or "(root)", e.message[:200])
            for e in validator(rel).iter_errors(instance)]


def must_pass(rel, instance, what, counter):
    p = problems(rel, instance)
    if p:
        fail("%s does not validate against %s: %s" % (what, rel, "; ".join(p[:3])))
    else:
        count(counter)


def must_fail(rel, instance, what):
    if problems(rel, instance):
        count("negative cases rejected")
    else:
        fail("NEGATIVE case accepted by %s: %s" % (rel, what))


# ---------------------------------------------------------------- golden vectors

def unhex(case):
    h = case["msgpack_hex"]
    for r in case.get("repeat", []):
        if r["msgpack_hex_unit"] is not None:
            h = h.replace(r["placeholder"], r["msgpack_hex_unit"] * r["times"])
    return bytes.fromhex(h)


def unpack(raw):
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def exact(v):
    """A value from vectors.json, integers written as decimal strings there, as it is on the wire."""
    return int(v) if isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v) else v


KNOWN = {t["type"] for t in TOPICS}
# Enveloped or bare golden values that are not Symphony events by event.json, and why: the vectors
# fix the transcoder's bytes with minimal inputs; the bridge publishes them all the same.
NOT_V4EVENTS = {
    "envelope_b_small_event": "payload {} has no key",
    "envelope_c_extremes": "no id, timestamp nor payload",
    "topic_generic_system_event": "no id nor timestamp",
    "topic_first_duplicate_type_wins": "no payload (and a duplicate type key)",
}


def check_golden():
    vec = load_json(os.path.join(SCHEMAS, "golden", "vectors.json"))
    seen_not = set()
    for case in vec["valid"]:
        value = unpack(unhex(case))
        env = case["envelope"]
        if env is not None:
            want = {"v": 1, **{k: exact(v) for k, v in env.items()}}
            got = {k: value.get(k) for k in want}
            if got != want or any(type(got[k]) is not type(want[k]) for k in want):
                fail("golden %s: decoded envelope %r is not the file's %r" % (case["name"], got, want))
            must_pass("envelope.json", value, "golden %s" % case["name"], "golden enveloped vectors valid")
            event = value.get("event")
        else:
            event = value
        if case["topic"] not in KNOWN or not isinstance(event, dict):
            continue
        p = problems("event.json", event)
        if case["name"] in NOT_V4EVENTS:
            seen_not.add(case["name"])
            if not p:
                fail("golden %s: expected not to be a V4Event (%s) but event.json accepts it"
                     % (case["name"], NOT_V4EVENTS[case["name"]]))
            else:
                count("golden minimal events rejected by event.json as expected")
        elif p:
            fail("golden %s: event does not validate against event.json: %s" % (case["name"], "; ".join(p[:3])))
        else:
            count("golden events valid against event.json")
    for name in sorted(set(NOT_V4EVENTS) - seen_not):
        fail("golden %s: listed in NOT_V4EVENTS but not met (renamed?)" % name)

    kinds = {"heartbeat": "heartbeat.json", "end": "replay-end.json", "info": "info.json",
             "request": "replay-request.json"}
    topics = {"heartbeat": "_hb", "end": "_end", "info": "_info", "request": None}
    for m in vec["bridge_messages"]:
        rel = kinds.get(m["kind"])
        if rel is None:
            fail("golden bridge message %s: unknown kind %r" % (m["name"], m["kind"]))
            continue
        if m["topic"] != topics[m["kind"]]:
            fail("golden bridge message %s: topic %r, want %r" % (m["name"], m["topic"], topics[m["kind"]]))
        value = unpack(bytes.fromhex(m["msgpack_hex"]))
        want = {k: ({a: exact(b) for a, b in v.items()} if isinstance(v, dict) else exact(v))
                for k, v in m["value"].items()}
        if value != want or list(value) != list(want):
            fail("golden bridge message %s: bytes decode to %r, not the file's value" % (m["name"], value))
        must_pass(rel, value, "golden bridge message %s" % m["name"], "golden bridge messages valid")
        if m["kind"] == "end" and "lost_from" in value and not value["lost_from"] <= value["lost_to"]:
            fail("golden %s: lost_from > lost_to" % m["name"])
    return vec


# ---------------------------------------------------------------- sample events

def check_samples():
    d = os.path.join(SCHEMAS, "tools", "samples")
    ref = load_json(os.path.join(d, "reference-events.json"))
    for ev in ref["constructed"] + ref["java_bdk"]:
        must_pass("event.json", ev, "reference sample %s" % ev.get("id"), "reference sample events valid")
    events = load_json(os.path.join(d, "events-17.json"))["events"]
    if [e["type"] for e in events] != [t["type"] for t in TOPICS]:
        fail("samples/events-17.json: the types are not the 17 of contract-v1.json in order")
    for i, ev in enumerate(events):
        t = TOPICS[i]
        must_pass("event.json", ev, "sample %s" % ev["type"], "17-type sample events valid")
        must_pass("payloads/%s.json" % t["payload_key"], ev["payload"][t["payload_key"]],
                  "sample %s payload" % ev["type"], "17-type sample payloads valid")
        if list(ev["payload"][t["payload_key"]]) != list(t["payload_fields"]):
            fail("sample %s: payload fields %s, the contract lists %s"
                 % (ev["type"], list(ev["payload"][t["payload_key"]]), list(t["payload_fields"])))
        other = TOPICS[(i + 1) % len(TOPICS)]
        bad = copy.deepcopy(ev)
        bad["payload"] = {other["payload_key"]: bad["payload"][t["payload_key"]]}
        must_fail("event.json", bad, "%s with the payload key %s" % (t["type"], other["payload_key"]))
        bad = copy.deepcopy(ev)
        bad["type"] = other["type"]
        must_fail("event.json", bad, "%s payload under type %s" % (t["payload_key"], other["type"]))
        bad = copy.deepcopy(ev)
        bad["payload"][other["payload_key"]] = {}
        must_fail("event.json", bad, "%s with two payload keys" % t["type"])
        # each field of the payload, given a value of a type it cannot have
        for field, ftype in t["payload_fields"].items():
            bad = copy.deepcopy(ev)
            bad["payload"][t["payload_key"]][field] = [] if ftype in ("string", "int") else "x"
            must_fail("event.json", bad, "%s.%s of the wrong type" % (t["payload_key"], field))
    return events


# ---------------------------------------------------------------- negative cases

def negatives(vec, events):
    """Each negative case is one change to an instance that validates (checked first), so that
    it fails for that change and nothing else."""
    env = next(unpack(unhex(c)) for c in vec["valid"] if c["name"] == "constructed_messagesent_ulPr8a_envelope_a")
    msgs = {m["name"]: unpack(bytes.fromhex(m["msgpack_hex"])) for m in vec["bridge_messages"]}
    hb, end, gone, dmg = msgs["heartbeat_one_topic"], msgs["end_gseq_ok_more"], msgs["end_error_gone"], msgs["end_error_damaged"]
    info, rq_g, rq_t, rq_i = msgs["info_reply"], msgs["request_from_gseq_topics"], msgs["request_topic_seq"], msgs["request_info"]
    ev = events[0]
    bases = [("envelope.json", env), ("heartbeat.json", hb), ("replay-end.json", end), ("replay-end.json", gone),
             ("replay-end.json", dmg), ("info.json", info), ("replay-request.json", rq_g),
             ("replay-request.json", rq_t), ("replay-request.json", rq_i), ("event.json", ev)]
    for rel, b in bases:
        must_pass(rel, b, "negative base for %s" % rel, "negative bases valid")

    def with_(base, **kv):
        out = copy.deepcopy(base)
        for k, v in kv.items():
            if v is DEL:
                del out[k]
            else:
                out[k] = v
        return out

    cases = [
        ("envelope.json", with_(env, gseq="5"), "gseq as a string"),
        ("envelope.json", with_(env, gseq=5.0), "gseq as a float (5.0)"),
        ("envelope.json", with_(env, gseq=True), "gseq as a bool"),
        ("envelope.json", with_(env, seq=0), "seq 0 (counters start at 1)"),
        ("envelope.json", with_(env, seq=U64 + 1), "seq 2^64"),
        ("envelope.json", with_(env, ts=-1), "ts negative"),
        ("envelope.json", with_(env, bot=I64_MAX + 1), "bot above int64"),
        ("envelope.json", with_(env, v=2), "v 2"),
        ("envelope.json", with_(env, epoch="e" * 128), "epoch of 128 characters"),
        ("envelope.json", with_(env, epoch=b"E1"), "epoch as bytes (msgpack bin)"),
        ("envelope.json", with_(env, event=DEL), "no event"),
        ("envelope.json", with_(env, event=["MESSAGESENT"]), "event not a map"),
        ("envelope.json", with_(env, bot=DEL), "no bot"),
        ("event.json", with_(ev, payload={"roomCreated": ev["payload"]["messageSent"]}), "MESSAGESENT with payload roomCreated"),
        ("event.json", with_(ev, payload={}), "empty payload"),
        ("event.json", with_(ev, type="_hb"), "type starting with _"),
        ("event.json", with_(ev, type=""), "empty type"),
        ("event.json", with_(ev, timestamp="1700000000000"), "timestamp as a string"),
        ("event.json", with_(ev, id=DEL), "no id"),
        ("event.json", with_(ev, initiator={"user": {"userId": "68719476737"}}), "initiator userId as a string"),
        ("event.json", with_(ev, initiator={"user": {"userId": 2**63}}), "initiator userId above int64"),
        ("heartbeat.json", with_(hb, epoch=DEL), "heartbeat without epoch"),
        ("heartbeat.json", with_(hb, seqs={"MESSAGESENT": 0}), "heartbeat seqs value 0"),
        ("heartbeat.json", with_(hb, seqs={"MESSAGESENT": "1"}), "heartbeat seqs value a string"),
        ("heartbeat.json", with_(hb, seqs=[]), "heartbeat seqs an array"),
        ("heartbeat.json", with_(hb, gseq=-1), "heartbeat gseq -1"),
        ("heartbeat.json", with_(hb, replay=None), "heartbeat replay nil"),
        ("heartbeat.json", with_(hb, interval=DEL), "heartbeat without interval"),
        ("replay-end.json", with_(gone, code="nope"), "end marker with a bad code"),
        ("replay-end.json", with_(gone, code=DEL), "status error without code"),
        ("replay-end.json", with_(gone, error=DEL), "status error without error"),
        ("replay-end.json", with_(end, code="busy"), "status ok with a code"),
        ("replay-end.json", with_(end, status="maybe"), "status not ok/error"),
        ("replay-end.json", with_(dmg, lost_to=DEL), "damaged without lost_to"),
        ("replay-end.json", with_(gone, lost_from=1, lost_to=2), "gone with lost_from/lost_to"),
        ("replay-end.json", with_(end, count=1.0), "count as a float"),
        ("replay-end.json", with_(end, more=1), "more as an int"),
        ("replay-end.json", with_(end, epoch=DEL), "end marker without epoch"),
        ("info.json", with_(info, counters={"reads": -1}), "counter negative"),
        ("info.json", with_(info, counters={"reads": "3"}), "counter as a string"),
        ("info.json", with_(info, counters=DEL), "info without counters"),
        ("info.json", with_(info, req=DEL), "info without req"),
        ("replay-request.json", with_(rq_g, topic="MESSAGESENT"), "from_gseq with topic"),
        ("replay-request.json", with_(rq_t, from_seq=DEL), "topic without from_seq"),
        ("replay-request.json", with_(rq_t, topics=["A"]), "topics with a topic request"),
        ("replay-request.json", with_(rq_i, from_gseq=1), "info with from_gseq"),
        ("replay-request.json", with_(rq_i, info=False), "info false and nothing else"),
        ("replay-request.json", with_(rq_g, limit=0), "limit 0"),
        ("replay-request.json", with_(rq_g, v=2), "v 2"),
        ("replay-request.json", with_(rq_g, v=DEL), "no v"),
        ("replay-request.json", with_(rq_g, topics=["T%d" % i for i in range(65)]), "65 topics"),
        ("replay-request.json", with_(rq_g, topics=[1]), "topics holding an int"),
        ("replay-request.json", with_(rq_g, from_gseq=-1), "from_gseq negative"),
    ]
    for rel, inst, what in cases:
        must_fail(rel, inst, what)


class _Del:
    pass


DEL = _Del()


# ---------------------------------------------------------------- drift vs contract-v1.json

def expected_field(ctype, defs_prefix):
    """The schema a contract-v1.json field type must have (written apart from the schema files)."""
    if ctype == "int":
        return {"$ref": defs_prefix + "#/$defs/int64"}
    if ctype in ("string", "string(MessageMLV2)", "string(JSON)"):
        return {"type": "string"}
    if ctype == "bool":
        return {"type": "boolean"}
    if ctype == "object":
        return {"type": "object"}
    m = re.fullmatch(r"array<(.+)>", ctype)
    if m:
        return {"type": "array", "items": expected_field(m.group(1), defs_prefix)}
    if re.fullmatch(r"V4\w+", ctype):
        return {"$ref": defs_prefix + "#/$defs/" + ctype}
    raise ValueError(ctype)


def core(schema):
    """The structural part of a property schema: description-like annotations dropped."""
    if not isinstance(schema, dict):
        return schema
    return {k: core(v) for k, v in schema.items()
            if k not in ("description", "title", "examples", "contentMediaType", "default")}


def drift():
    pdir = os.path.join(JS, "payloads")
    want_files = sorted(t["payload_key"] + ".json" for t in TOPICS)
    got_files = sorted(os.listdir(pdir))
    if got_files != want_files:
        fail("jsonschema/payloads: files %s, contract-v1.json topics need %s" % (got_files, want_files))
    for t in TOPICS:
        rel = "payloads/%s.json" % t["payload_key"]
        s = STORE.get(BASE + rel)
        if s is None:
            continue
        if s.get("title") != t["payload_schema"]:
            fail("%s: title %r, the contract's payload_schema is %r" % (rel, s.get("title"), t["payload_schema"]))
        props = s.get("properties", {})
        if list(props) != list(t["payload_fields"]):
            fail("%s: fields %s, contract-v1.json lists %s" % (rel, list(props), list(t["payload_fields"])))
        for k, ct in t["payload_fields"].items():
            if k in props and core(props[k]) != expected_field(ct, "../defs.json"):
                fail("%s: %s is %s, the contract's %s needs %s" % (rel, k, core(props[k]), ct, expected_field(ct, "../defs.json")))
        count("payload schemas matching contract-v1.json")
    defs = STORE[BASE + "defs.json"]["$defs"]
    want_defs = [n for n in CONTRACT["schemas"] if n != "V4Event"]
    got_defs = [n for n in defs if n.startswith("V4")]
    if sorted(got_defs) != sorted(want_defs):
        fail("defs.json: V4 definitions %s, contract-v1.json schemas has %s" % (got_defs, want_defs))
    for n in want_defs:
        props = defs.get(n, {}).get("properties", {})
        if list(props) != list(CONTRACT["schemas"][n]):
            fail("defs.json %s: fields %s, contract-v1.json lists %s" % (n, list(props), list(CONTRACT["schemas"][n])))
        for k, ct in CONTRACT["schemas"][n].items():
            if k in props and core(props[k]) != expected_field(ct, ""):
                fail("defs.json %s.%s is %s, the contract's %s needs %s" % (n, k, core(props[k]), ct, expected_field(ct, "")))
        count("shared definitions matching contract-v1.json")
    ev = STORE[BASE + "event.json"]
    if list(ev["properties"]) != list(CONTRACT["schemas"]["V4Event"]):
        fail("event.json: fields %s, contract-v1.json V4Event lists %s" % (list(ev["properties"]), list(CONTRACT["schemas"]["V4Event"])))
    links = [(b["if"]["properties"]["type"]["const"], b["then"]["properties"]["payload"]["required"],
              b["then"]["properties"]["payload"]["properties"]) for b in ev.get("allOf", [])]
    want_links = [(t["type"], [t["payload_key"]], {t["payload_key"]: {"$ref": "payloads/%s.json" % t["payload_key"]}})
                  for t in TOPICS]
    if links != want_links:
        fail("event.json: the type -> payload key links are not contract-v1.json's topics (in order)")
    else:
        count("event.json type -> payload links", len(links))

    # Bridge messages: keys in wire order, types, required = not optional.
    ctype = {"int": ("integer",), "uint": ("integer",), "uint64": ("uint64", "counter"), "int64": ("int64",),
             "string": ("string", "epoch"), "bool": ("boolean",), "map<string,uint64>": ("object",),
             "array<string>": ("array",), "V4Event": ("object",)}

    def kind(p):
        if "$ref" in p:
            return p["$ref"].rsplit("/", 1)[1]
        return p.get("type")

    def same_keys(rel, table, optional_known=True):
        s = STORE[BASE + rel]
        props = s["properties"]
        keys = [e["key"] for e in table]
        if list(props) != keys:
            fail("%s: keys %s, contract-v1.json lists %s (in wire order)" % (rel, list(props), keys))
            return
        for e in table:
            if kind(props[e["key"]]) not in ctype[e["type"]]:
                fail("%s: %s is %s, the contract says %s" % (rel, e["key"], kind(props[e["key"]]), e["type"]))
            if "enum" in e and props[e["key"]].get("enum") != e["enum"]:
                fail("%s: %s enum %s, the contract has %s" % (rel, e["key"], props[e["key"]].get("enum"), e["enum"]))
        if optional_known:
            req = [e["key"] for e in table if not e.get("optional")]
            if s.get("required") != req:
                fail("%s: required %s, contract-v1.json has %s" % (rel, s.get("required"), req))
        count("bridge schemas matching contract-v1.json")

    same_keys("envelope.json", CONTRACT["envelope"])
    same_keys("heartbeat.json", CONTRACT["bridge_topics"]["_hb"]["body"])
    same_keys("replay-end.json", CONTRACT["bridge_topics"]["_end"]["body"])
    same_keys("info.json", CONTRACT["bridge_topics"]["_info"]["body"])
    same_keys("replay-request.json", CONTRACT["replay_request"]["keys"], optional_known=False)
    counters = list(STORE[BASE + "info.json"]["properties"]["counters"]["properties"])
    if counters != list(CONTRACT["replay_info"]["counters"]):
        fail("info.json counters %s are not contract-v1.json replay_info.counters" % counters)
    want_bridge = set(CONTRACT["bridge_topics"])
    if want_bridge != {"_hb", "_end", "_info"}:
        fail("contract-v1.json bridge_topics %s: this check knows _hb, _end, _info; add schemas" % sorted(want_bridge))


def asyncapi_messages(vec, events):
    """The message payloads of asyncapi.yaml, as a JSON Schema validator reads them (their $refs point
    into jsonschema/): each topic's message accepts an enveloped event of its type and refuses one of
    another type; the bridge messages accept the golden ones."""
    with open(os.path.join(SCHEMAS, "asyncapi.yaml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    root = BASE.rsplit("jsonschema/", 1)[0]

    def check(name, instance):
        schema = dict(doc["components"]["messages"][name]["payload"])
        schema["$id"] = root + "asyncapi.yaml"
        resolver = RefResolver(schema["$id"], schema, store=STORE, handlers={"https": no_fetch, "http": no_fetch})
        return [e.message[:200] for e in Strict(schema, resolver=resolver).iter_errors(instance)]

    env = next(unpack(unhex(c)) for c in vec["valid"] if c["name"] == "constructed_messagesent_ulPr8a_envelope_a")
    for i, ev in enumerate(events):
        t, other = TOPICS[i], TOPICS[(i + 1) % len(TOPICS)]
        inst = dict(env, event=ev)
        p = check(t["type"], inst)
        if p:
            fail("asyncapi.yaml message %s refuses the sample %s event: %s" % (t["type"], t["type"], "; ".join(p[:3])))
        else:
            count("asyncapi.yaml topic messages accepting their sample event")
        if check(other["type"], inst):
            count("negative cases rejected")
        else:
            fail("NEGATIVE case accepted by asyncapi.yaml message %s: a %s event" % (other["type"], t["type"]))
    untyped = next(unpack(unhex(c)) for c in vec["valid"] if c["name"] == "envelope_untyped_event")
    pairs = [("UNKNOWN", untyped)] + [
        ({"heartbeat": "heartbeat", "end": "replayEnd", "info": "info", "request": "replayRequest"}[m["kind"]],
         unpack(bytes.fromhex(m["msgpack_hex"]))) for m in vec["bridge_messages"]]
    pairs += [("commandRequest", unpack(bytes.fromhex(c["msgpack_hex"]))) for c in vec["commands"]["requests"]]
    pairs += [("commandReply", unpack(bytes.fromhex(c["msgpack_hex"]))) for c in vec["commands"]["replies"]]
    for name, inst in pairs:
        p = check(name, inst)
        if p:
            fail("asyncapi.yaml message %s refuses a golden instance: %s" % (name, "; ".join(p[:3])))
        else:
            count("asyncapi.yaml other messages accepting golden instances")
    bad_op = dict(unpack(bytes.fromhex(vec["commands"]["requests"][0]["msgpack_hex"])), op="messages.blast")
    if check("commandRequest", bad_op):
        count("negative cases rejected")
    else:
        fail("NEGATIVE case accepted by asyncapi.yaml message commandRequest: op messages.blast")


# ---------------------------------------------------------------- the command channel

def view(text):
    """A golden view (JSON text; {"$bin": hex} = msgpack bin) as a msgpack reader gives it."""
    def fix(v):
        if isinstance(v, dict):
            if list(v) == ["$bin"]:
                return bytes.fromhex(v["$bin"])
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(json.loads(text))


def commands(vec):
    """command-request.json accepts every golden request and refuses every bad request it can see;
    command-reply.json accepts every golden reply; broken copies fail; both list what contract-v1.json
    lists (ops and their args, reply and error keys, codes)."""
    sec = vec["commands"]
    reqs = {}
    for c in sec["requests"]:
        inst = unpack(bytes.fromhex(c["msgpack_hex"]))
        if inst != view(c["view"]):
            fail("golden %s: bytes and view differ" % c["name"])
        reqs[c["name"]] = inst
        must_pass("command-request.json", inst, "golden %s" % c["name"], "golden command requests valid")
    for c in sec["bad_requests"]:
        try:
            inst = unpack(bytes.fromhex(c["msgpack_hex"]))
        except Exception:  # noqa: BLE001 - not msgpack: nothing for a schema to see
            inst = None
        if c["schema_sees_it"]:
            must_fail("command-request.json", inst, "golden bad request %s" % c["name"])
        elif inst is not None and isinstance(inst, dict) and problems("command-request.json", inst):
            fail("golden bad request %s: schema_sees_it is false but command-request.json refuses it (%s): "
                 "set it true" % (c["name"], "; ".join(problems("command-request.json", inst)[:2])))
        else:
            count("golden bad requests only the bridge can see (bytes, JSON in a string)")
    reps = {}
    for c in sec["replies"]:
        inst = unpack(bytes.fromhex(c["msgpack_hex"]))
        reps[c["name"]] = inst
        must_pass("command-reply.json", inst, "golden %s" % c["name"], "golden command replies valid")
    send, ok, rej, busy = reqs["cmd_send_full"], reps["reply_ok_send"], reps["reply_rejected_400"], reps["reply_busy"]

    def edited(base, under, **kv):
        """A copy of base with kv set (DEL: removed) in base[under], or at its top with None."""
        out = copy.deepcopy(base)
        where = out if under is None else out[under]
        for k, v in kv.items():
            if v is DEL:
                del where[k]
            else:
                where[k] = v
        return out

    def args_(base, **kv):
        return edited(base, "args", **kv)

    def err_(base, **kv):
        return edited(base, "error", **kv)

    def with_(base, **kv):
        return edited(base, None, **kv)
    cases = [
        ("command-request.json", with_(send, op="messages.update"), "send args under op messages.update (no message_id)"),
        ("command-request.json", with_(send, id="x" * 129), "id of 129 characters"),
        ("command-request.json", args_(send, attachments=[{"name": "a", "content": b"1", "preview": b"2"},
                                                          {"name": "b", "content": b"3"}]), "previews for some files"),
        ("command-request.json", args_(send, attachments=[{"name": "a", "content": "text"}]), "content as str"),
        ("command-request.json", args_(send, message={"message": "x", "attachments": [], "silent": True}), "message map with silent"),
        ("command-request.json", args_(send, data={"dfbridge.request": {}}), "data with the mark's key"),
        ("command-request.json", args_(send, stream_id=b"abc"), "stream_id as bin"),
        ("command-request.json", with_(reqs["cmd_users_by_ids"], args={"user_ids": [1], "usernames": ["a"]}), "two selectors"),
        ("command-request.json", with_(reqs["cmd_create_im"], args={"user_ids": [0]}), "user id 0"),
        ("command-request.json", with_(reqs["cmd_create_im"], args={"user_ids": [2**63]}), "user id above int64"),
        ("command-reply.json", with_(ok, error={"code": "busy", "message": "m", "retry_after_ms": 100}), "ok with an error"),
        ("command-reply.json", with_(ok, result=DEL), "ok without result"),
        ("command-reply.json", with_(ok, found=DEL), "no found"),
        ("command-reply.json", with_(ok, v=2), "v 2"),
        ("command-reply.json", err_(rej, status=DEL), "rejected without status"),
        ("command-reply.json", err_(rej, code="nope"), "an unknown code"),
        ("command-reply.json", err_(busy, retry_after_ms=DEL), "busy without retry_after_ms"),
        ("command-reply.json", err_(busy, status=503), "busy with a status"),
        ("command-reply.json", with_(rej, result={}), "error with a result"),
    ]
    for rel, inst, what in cases:
        must_fail(rel, inst, what)

    # drift: the schemas against contract-v1.json "commands"
    cmd = CONTRACT["commands"]
    rq, rp = STORE[BASE + "command-request.json"], STORE[BASE + "command-reply.json"]
    if list(rq["properties"]) != [e["key"] for e in cmd["request"]] or \
            rq["required"] != [e["key"] for e in cmd["request"] if not e.get("optional")]:
        fail("command-request.json: keys/required are not contract-v1.json commands.request")
    if rq["properties"]["op"]["enum"] != [o["op"] for o in cmd["ops"]]:
        fail("command-request.json: op enum %s, contract-v1.json ops %s"
             % (rq["properties"]["op"]["enum"], [o["op"] for o in cmd["ops"]]))
    branches = [(b["properties"]["op"]["const"], list(b["properties"]["args"]["properties"]),
                 b["properties"]["args"].get("required", [])) for b in rq["oneOf"]]
    want = [(o["op"], [a["name"] for a in o["args"]], [a["name"] for a in o["args"] if a["required"]])
            for o in cmd["ops"]]
    if branches != want:
        fail("command-request.json: the per-op args %s are not contract-v1.json's %s" % (branches, want))
    else:
        count("command ops matching contract-v1.json", len(want))
    if list(rp["properties"]) != [e["key"] for e in cmd["reply"]] or \
            rp["required"] != [e["key"] for e in cmd["reply"] if not e.get("optional")]:
        fail("command-reply.json: keys/required are not contract-v1.json commands.reply")
    e = rp["properties"]["error"]
    if list(e["properties"]) != [k["key"] for k in cmd["error"]] or \
            e["required"] != [k["key"] for k in cmd["error"] if not k.get("optional")]:
        fail("command-reply.json: error keys are not contract-v1.json commands.error")
    if list(cmd["error_code_meanings"]) != cmd["error_codes"]:
        fail("contract-v1.json commands: error_code_meanings %s are not error_codes %s"
             % (list(cmd["error_code_meanings"]), cmd["error_codes"]))
    if e["properties"]["code"]["enum"] != list(cmd["error_codes"]):
        fail("command-reply.json: codes %s, contract-v1.json %s" % (e["properties"]["code"]["enum"], list(cmd["error_codes"])))
    else:
        count("command schemas matching contract-v1.json")


def asyncapi_fresh():
    gen = os.path.join(SCHEMAS, "tools", "gen_asyncapi.py")
    r = subprocess.run([sys.executable, gen, "--check", os.path.join(SCHEMAS, "asyncapi.yaml")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("asyncapi.yaml is not what tools/gen_asyncapi.py writes from contract-v1.json: %s"
             % (r.stdout + r.stderr).strip())
    else:
        count("asyncapi.yaml fresh from contract-v1.json")


def main():
    vec = check_golden()
    events = check_samples()
    negatives(vec, events)
    drift()
    commands(vec)
    asyncapi_messages(vec, events)
    asyncapi_fresh()
    for what in sorted(counts):
        print("%5d %s" % (counts[what], what))
    for e in errors:
        print("FAIL: " + e)
    print("schemas_jsonschema: %s (%d schema files, %d failures)"
          % ("FAILED" if errors else "OK", len(STORE), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
