#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets (tests/fuzz/corpus/<target>/)
from the project's own data: the golden vectors (schemas/golden), the
reference configs and pod responses (bridge/tests/data,
/work/shared/reference/data when present, bridge/dfbridge.example.yaml),
and journal segments, checkpoints, replay requests and answers, heartbeats
and response scripts built here after the formats in
bridge/dfb_journal_priv.h, consumers/dfc_delivery.c, schemas/CONTRACT.md.
Then minimise with scripts/fuzz.sh --update-corpus (libFuzzer -merge=1).
    /usr/bin/python3 tests/fuzz/make_seeds.py [OUTDIR]   (default tests/fuzz/corpus)
Needs python3-msgpack (Debian)."""
import json
import os
import struct
import sys
import zlib

import msgpack

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "tests", "fuzz", "corpus")
REF = "/work/shared/reference/data"
EPOCH = "20261127T075500Z-4f2a"


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


vectors = json.load(open(os.path.join(TOP, "schemas", "golden", "vectors.json")))


def expand(v):
    if "json_hex" in v:
        return bytes.fromhex(v["json_hex"])
    text = v["json"]
    for r in v.get("repeat", []) or []:
        text = text.replace(r["placeholder"], r["json_unit"] * int(r["times"]))
    return text.encode()


# ---- bridge_json: every golden vector's text, valid and invalid, and pod bodies
for v in vectors["valid"] + vectors["invalid"]:
    t = expand(v)
    if len(t) <= 16384:
        write("bridge_json", "golden_" + v["name"], t)
fixtures = {}
if os.path.exists(os.path.join(REF, "constructed-v5-fixtures.json")):
    fixtures = json.load(open(os.path.join(REF, "constructed-v5-fixtures.json")))
    for k, val in fixtures.items():
        if not k.startswith("_"):
            write("bridge_json", "pod_" + k, json.dumps(val))
for f in ["java-test-read_datafeed_v4_eventlist.json"]:
    if os.path.exists(os.path.join(REF, f)):
        write("bridge_json", "pod_" + f, read(os.path.join(REF, f)))

# ---- bridge_config: the reference and example configs
for d in [os.path.join(TOP, "bridge", "tests", "data"), REF]:
    if os.path.isdir(d):
        for f in sorted(os.listdir(d)):
            if f.endswith((".yaml", ".yml")) and "excerpt" not in f:
                write("bridge_config", f, read(os.path.join(d, f)))
write("bridge_config", "example.yaml", read(os.path.join(TOP, "bridge", "dfbridge.example.yaml")))
write("bridge_config", "minimal.yaml",
      "host: pod.example.com\nbot:\n  username: bot\n  privateKey:\n    path: /k.pem\n")
write("bridge_config", "datahose.yaml",
      "host: pod.example.com\nbot:\n  username: bot\n  privateKey:\n    path: /k.pem\n"
      "datahose:\n  tag: t\n  eventTypes: [MESSAGESENT, ROOMCREATED]\n"
      "bridge:\n  source: datahose\n  stateDir: /tmp/s\n  replay: tcp://127.0.0.1:5557\n"
      "  journal:\n    fsync: always\n    segmentBytes: 1048576\n")
write("bridge_config", "anchors.yaml",
      "a: &x [1, 2, {b: *x}]\nhost: *x\nbot: {username: 'u', privateKey: {content: \"-----BEGIN\"}}\n")

# ---- bridge_body: response scripts (mode byte, then kind | u16 len | body)
# kind % 12: 0-2 -> 200, 3 -> 204, 4 -> 400, 5 -> 401, 6 -> 403, 7 -> 404,
# 8 -> 429, 9 -> 500, 10 -> 503, 11 -> 502; 12-14 transport errors.
def resp(kind, body):
    b = body.encode() if isinstance(body, str) else body
    return bytes([kind]) + struct.pack("<H", len(b)) + b


events = fixtures.get("read_datafeed_200", {}).get("events") or [
    {"id": "e1", "type": "MESSAGESENT", "timestamp": 1, "payload": {"messageSent": {"message": {}}}}]
read_body = json.dumps({"events": events, "ackId": "ack-1"})
write("bridge_body", "v2_list_read",
      bytes([0]) + resp(0, '[{"id":"e766c498eece0d113f035270ad6c3c63_f","type":"fanout"}]') +
      resp(0, read_body) + resp(0, '{"events":[],"ackId":"ack-2"}') + resp(4, "{}") +
      resp(0, "[]") + resp(0, '{"id":"abc_f"}') + resp(0, read_body))
write("bridge_body", "v2_create_errors",
      bytes([0x10]) + resp(0, "[]") + resp(9, "oops") + resp(0, "[]") + resp(0, '{"id":"new_f"}') +
      resp(5, "{}") + resp(0, '{"events":null,"ackId":"a\\u0000b\\ud800"}') + resp(12, "") +
      resp(0, '{"events":[{"type":"_x"},{"type":7},[1]],"ackId":"z"}'))
write("bridge_body", "v1",
      bytes([1]) + resp(0, '{"id":"v1feed"}') + resp(0, json.dumps(events)) + resp(3, "") +
      resp(4, "") + resp(0, '{"id":"v1feed2"}') + resp(0, "null"))
write("bridge_body", "datahose",
      bytes([2]) + resp(0, read_body) + resp(0, '{"events":[],"ackId":"h2"}') + resp(8, "") +
      resp(0, '{"ackId":"h3"}'))

# ---- bridge_replay_request: request frames (schemas/CONTRACT.md "Replay")
reqs = {
    "gseq": {"v": 1, "req": 1, "from_gseq": 1},
    "gseq_topics": {"v": 1, "req": 2, "from_gseq": 5, "limit": 10, "topics": ["MESSAGESENT", "ROOMCREATED"]},
    "topic": {"v": 1, "req": 3, "topic": "MESSAGESENT", "from_seq": 2, "epoch": "0123456789abcdef"},
    "info": {"v": 1, "req": 4, "info": True},
    "bad_epoch": {"v": 1, "req": 5, "from_gseq": 1, "epoch": "other"},
    "bad_both": {"v": 1, "from_gseq": 1, "topic": "X", "from_seq": 1},
    "unknown_keys": {"v": 1, "from_gseq": 0, "x": [1, {"y": None}], "limit": 0},
}
for k, r in reqs.items():
    write("bridge_replay_request", k, msgpack.packb(r))
write("bridge_replay_request", "not_a_map", msgpack.packb([1, 2]))

# ---- bridge_cmdreq: command channel requests (schemas/CONTRACT.md "Commands"), every op + hostile
cmd_reqs = {
    "send": ("messages.send", {"stream_id": "lX1hwfmQ+AK/k/a/BB0y2n///q2+0KfbdA==", "message": "hi"}),
    "send_map": ("messages.send", {"stream_id": "s", "message": {
        "message": "<messageML>x</messageML>", "data": {"e": {"type": "t", "n": [1, -2, 1.5, None]}},
        "version": "2.0", "attachments": [{"name": "a.txt", "content": b"\x00xyz",
                                           "content_type": "text/plain", "preview": b"p"}]}}),
    "send_data_str": ("messages.send", {"stream_id": "s", "message": "m", "data": '{"a":{"b":[1]}}',
                                        "version": ""}),
    "update": ("messages.update", {"stream_id": "s", "message_id": "m_1-", "message": "x",
                                   "silent": False}),
    "suppress": ("messages.suppress", {"message_id": "m1"}),
    "get": ("messages.get", {"message_id": "m1"}),
    "im": ("streams.createIm", {"user_ids": [1, 9223372036854775807]}),
    "im_one": ("streams.createIm", {"user_id": 7215545058313}),
    "add": ("rooms.addMember", {"stream_id": "r", "user_id": 5}),
    "remove": ("rooms.removeMember", {"stream_id": "r", "user_id": 5}),
    "info": ("streams.info", {"stream_id": "r"}),
    "users_ids": ("users.lookup", {"user_ids": [1, 2], "local": True, "active": False}),
    "users_emails": ("users.lookup", {"emails": ["a+b@c.d"]}),
    "users_names": ("users.lookup", {"usernames": ["bob"]}),
    "bad_arg": ("streams.info", {"stream_id": 5, "colour": 1}),
    "bad_data": ("messages.send", {"stream_id": "s", "message": "x", "data": {"a": b"bin"}}),
    "bad_previews": ("messages.send", {"stream_id": "s", "message": "x", "attachments": [
        {"name": "a", "content": b"1", "preview": b"p"}, {"name": "b", "content": b"2"}]}),
}
for k, (op, args) in cmd_reqs.items():
    write("bridge_cmdreq", k, msgpack.packb({"v": 1, "id": "req-" + k, "op": op, "args": args}))
write("bridge_cmdreq", "not_a_map", msgpack.packb([1, 2]))
write("bridge_cmdreq", "deep", msgpack.packb({"id": "x", "op": "streams.info",
                                              "args": {"stream_id": "r"}}) + b"\x91" * 200)
write("bridge_cmdreq", "huge_count", b"\x81\xa2id\xdd\xff\xff\xff\xff")
write("bridge_cmdreq", "v2", msgpack.packb({"v": 2, "id": "x", "op": "messages.get",
                                            "args": {"message_id": "m"}}))

# ---- frames of the wire contract (consumer side)
frames = []  # (topic, body) of the golden envelopes
for v in vectors["valid"]:
    if v.get("envelope"):
        frames.append((v["topic"], bytes.fromhex(v["msgpack_hex"])))
for v in vectors["valid"]:
    if v.get("envelope") is None and not v.get("repeat") and len(v["msgpack_hex"]) <= 32768:
        write("consumer_value", "value_" + v["name"], bytes.fromhex(v["msgpack_hex"]))
for i, (topic, body) in enumerate(frames):
    if len(body) <= 16384:
        write("consumer_value", "golden_%d_%s" % (i, topic), body)


def envelope(topic, seq, gseq, event=None, epoch=EPOCH):
    ev = event if event is not None else {"id": "id%d" % gseq, "type": topic, "timestamp": 1}
    return msgpack.packb({"v": 1, "seq": seq, "gseq": gseq, "epoch": epoch, "ts": 1764230100123,
                          "bot": 68719476738, "event": ev})


def end(**kw):
    m = {"v": 1, "status": "ok", "count": 0, "last_gseq": 0, "head_gseq": 0, "oldest_gseq": 1,
         "epoch": EPOCH, "more": False}
    m.update(kw)
    return msgpack.packb(m)


# ---- consumer_replay_end: end markers
write("consumer_replay_end", "ok", end(req=1, count=3, last_gseq=3, head_gseq=3))
write("consumer_replay_end", "more", end(req=2, count=1000, last_gseq=1000, head_gseq=5000, more=True))
write("consumer_replay_end", "gone", end(req=3, status="error", code="gone", error="older than the journal"))
write("consumer_replay_end", "damaged", end(req=4, status="error", code="damaged", error="crc",
                                            lost_from=5, lost_to=9, head_gseq=20))
write("consumer_replay_end", "impossible", end(req=5, last_gseq=9, head_gseq=3))
write("consumer_replay_end", "not_map", msgpack.packb("x"))


# ---- consumer_link: scripts (flags, then op | u8 topic len | topic | u16 len | body)
def op(code, topic, body):
    t = topic.encode() if isinstance(topic, str) else topic
    return bytes([code, len(t)]) + t + struct.pack("<H", len(body)) + body


def hb(gseq, seqs, replay=None):
    m = {"v": 1, "epoch": EPOCH, "gseq": gseq, "seqs": seqs, "ts": 1, "interval": 500}
    if replay:
        m["replay"] = replay
    return msgpack.packb(m)


# in order; a gap filled by replay and an _end; a heartbeat ahead; a new epoch
s = bytes([1])
s += op(0, "MESSAGESENT", envelope("MESSAGESENT", 1, 1))
s += op(0, "_hb", hb(1, {"MESSAGESENT": 1}))
s += op(0, "MESSAGESENT", envelope("MESSAGESENT", 3, 3))
s += op(4, "MESSAGESENT", envelope("MESSAGESENT", 2, 2))
s += op(6 | 0x10, "", msgpack.packb("status") + msgpack.packb("ok"))
s += op(0, "_hb", hb(9, {"MESSAGESENT": 9}))
s += op(7, "", b"")
s += op(0, "ROOMCREATED", envelope("ROOMCREATED", 1, 1, epoch="other-epoch"))
s += op(3 | 8, "MESSAGESENT", envelope("MESSAGESENT", 4, 4))
write("consumer_link", "ordered_fill", s)
s = bytes([0])
for i, (topic, body) in enumerate(frames[:6]):
    s += op(0, topic, body)
s += op(0, "_hb", hb(100, {"X" * 300: 5}, replay="tcp://127.0.0.1:1"))
write("consumer_link", "golden_live", s)

# ---- consumer_checkpoint (consumers/dfc_delivery.c format)
write("consumer_checkpoint", "two_epochs",
      "dfc-checkpoint 1\ne %s 41\nd 43\nd 47\ne 20261128T000000Z-aaaa 7\n" % EPOCH)
write("consumer_checkpoint", "bad_lines",
      "dfc-checkpoint 1\nd 5\ne x -1\ne y 18446744073709551616\n")
write("consumer_checkpoint", "many", "dfc-checkpoint 1\n" +
      "".join("e ep%d %d\nd %d\n" % (i, i, i + 2) for i in range(20)))


# ---- bridge_journal: segments (bridge/dfb_journal_priv.h), in the target's framed form
def header(epoch, first, topics):
    p = b"H\x01" + struct.pack("<I", len(epoch)) + epoch.encode() + struct.pack("<QQI", first, 1700000000000, len(topics))
    for t, seq in topics:
        p += struct.pack("<I", len(t)) + t.encode() + struct.pack("<Q", seq)
    return p


def event(gseq, seq, topic, body, typ=None, eid="id"):
    typ = topic if typ is None else typ
    return (b"E" + struct.pack("<QQQIIII", gseq, seq, 1700000000001, len(topic), len(typ), len(eid), len(body)) +
            topic.encode() + typ.encode() + eid.encode() + body)


def framed(payloads):
    return b"".join(struct.pack("<H", len(p)) + p for p in payloads)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def raw(payloads):
    return b"".join(struct.pack("<II", len(p), crc32c(p)) + p for p in payloads)


seg1 = [header("fuzz-epoch", 1, [])] + [event(g, g, "MESSAGESENT", envelope("MESSAGESENT", g, g)) for g in (1, 2, 3)]
seg2 = [header("fuzz-epoch", 4, [("MESSAGESENT", 3)])] + [event(4, 1, "ROOMCREATED", b"\x80"), event(5, 4, "MESSAGESENT", b"\x80")]
write("bridge_journal", "two_segments", bytes([1]) + framed(seg1) + b"SEG!" + framed(seg2))
write("bridge_journal", "torn_tail", bytes([1]) + framed(seg1) + struct.pack("<H", 200) + b"E\x05")
write("bridge_journal", "no_epoch_file", bytes([0]) + framed(seg2))
write("bridge_journal", "raw", bytes([3]) + raw(seg1) + b"SEG!" + raw(seg2)[:-3])
write("bridge_journal", "bad_header", bytes([1]) + framed([b"H\x01garbage"] + seg1[1:]))

# ---- bridge_cmdlog: commands.log files (bridge/dfb_cmdlog.c), in the target's form
CMD_NOW = 1764900000000


def cmd_begin(key, fp, ms, op=b"messages.send", stream=b"sid"):
    return (b"B" + fp + struct.pack("<qHBH", ms, len(key), len(op), len(stream)) + key + op + stream)


def cmd_done(key, outcome):
    return b"D" + struct.pack("<H", len(key)) + key + outcome


cmd_ok = [cmd_begin(b"\x00a", b"\x01" * 32, CMD_NOW - 10), cmd_done(b"\x00a", b"\x83\xa2ok\xc3\xa6result\xc0\xa5found\xc2"),
          cmd_begin(b"alice\x00b", b"\x02" * 32, CMD_NOW - 5, b"streams.info", b""),
          cmd_begin(b"\x00old", b"\x03" * 32, CMD_NOW - 200000000), cmd_done(b"\x00old", b"\x80"),
          cmd_begin(b"\x00a", b"\x04" * 32, CMD_NOW - 1), cmd_done(b"\x00a", b"\x81\xa2ok\xc2"),
          cmd_done(b"\x00nobegin", b"")]
cmd_head = b"DFBCMD1\n" + struct.pack("<I", 1)
write("bridge_cmdlog", "framed", bytes([0]) + framed(cmd_ok))
write("bridge_cmdlog", "framed_window_1s", bytes([4]) + framed(cmd_ok))
write("bridge_cmdlog", "torn_tail", bytes([0]) + framed(cmd_ok) + struct.pack("<H", 300) + b"D\x01\x00")
write("bridge_cmdlog", "raw", bytes([1]) + cmd_head + raw(cmd_ok))
bad = bytearray(cmd_head + raw(cmd_ok))
bad[40] ^= 0x10
write("bridge_cmdlog", "raw_crc_flip", bytes([1]) + bytes(bad))
write("bridge_cmdlog", "raw_bad_magic", bytes([1]) + b"DFBCMD2\n" + raw(cmd_ok))
write("bridge_cmdlog", "raw_torn_header", bytes([1]) + cmd_head[:7])
write("bridge_cmdlog", "malformed", bytes([0]) + framed([cmd_begin(b"", b"\x01" * 32, CMD_NOW), b"X", b"D\xff\xff"]))
print("seeds written to", OUT)
