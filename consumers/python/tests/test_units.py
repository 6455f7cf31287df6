"""Socket-free pieces of dfconsumer: models, wire checks (hostile msgpack included),
partition key + FNV-1a against the golden vectors, dedupe window, checkpoint file
format (byte-identical with libdfconsumer's), watermark, default filter."""

import asyncio
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import msgpack  # noqa: E402

from dfconsumer import RealTimeEventListener, UserV2, V4Event  # noqa: E402
from dfconsumer import checkpoint, wire  # noqa: E402
from dfconsumer import partition as partition_fn  # noqa: E402

partition = sys.modules["dfconsumer.partition"]  # the module (the package exports the function)
from dfconsumer.dedupe import Dedupe  # noqa: E402
from dfconsumer.models import EVENT_TYPES, MODELS, snake_case  # noqa: E402
from dfconsumer.watermark import Watermarks  # noqa: E402

VECTORS = os.path.join(HERE, "..", "..", "..", "schemas", "golden", "vectors.json")
BIG = 2**53 + 1


class ModelTest(unittest.TestCase):
    def test_bdk_attribute_names_exact_ints_unknown_fields(self):
        ev = {"id": "e1", "type": "ROOMUPDATED", "timestamp": BIG,
              "initiator": {"user": {"userId": 2**63 - 1, "displayName": "A"}},
              "payload": {"roomUpdated": {
                  "stream": {"streamId": "s1", "crossPod": True, "members": [{"userId": BIG}],
                             "recipientTenantIds": [2**64 - 1]},
                  "newRoomProperties": {"name": "R", "creatorUser": {"userId": 5},
                                        "keywords": [{"key": "k", "value": "v"}],
                                        "membersCanInvite": True, "futureFlag": 3}}},
              "someNewField": {"x": 1}}
        e = V4Event(ev)
        self.assertEqual(e.timestamp, BIG)
        self.assertEqual(e.initiator.user.user_id, 2**63 - 1)
        p = e.payload.room_updated
        self.assertIs(type(p), MODELS["V4RoomUpdated"])
        self.assertEqual(p.stream.stream_id, "s1")
        self.assertIs(p.stream.cross_pod, True)
        self.assertEqual(p.stream.members[0].user_id, BIG)
        self.assertIs(type(p.stream.members[0]), MODELS["V4User"])
        self.assertEqual(p.stream.recipient_tenant_ids, [2**64 - 1])
        self.assertEqual(p.new_room_properties.creator_user.user_id, 5)
        self.assertEqual(p.new_room_properties.keywords[0].value, "v")
        self.assertIs(p.new_room_properties.members_can_invite, True)
        self.assertEqual(p.new_room_properties.future_flag, 3)   # unknown field kept
        self.assertEqual(e.some_new_field, {"x": 1})
        self.assertEqual(e.to_dict(), ev)
        self.assertIsNot(e.to_dict(), ev)
        with self.assertRaises(AttributeError):  # absent, as the BDK's models
            e.message_id
        self.assertIsNone(e.get("message_id"))
        self.assertEqual(list(e.to_dict()), list(ev))  # wire order
        import copy
        import pickle
        c = copy.deepcopy(e)
        self.assertEqual(c, e)
        self.assertIsNot(c._d, e._d)
        self.assertEqual(pickle.loads(pickle.dumps(e.payload.room_updated)), p)
        self.assertIn("new_room_properties", dir(p))
        with self.assertRaises(AttributeError):
            p.stream = None  # read-only views

    def test_every_type_has_its_model(self):
        self.assertEqual(len(EVENT_TYPES), 17)
        for topic, key, cls, cb in EVENT_TYPES:
            self.assertEqual(getattr(V4Event({"payload": {key: {}}}).payload, snake_case(key)).__class__,
                             MODELS[cls])
            self.assertTrue(hasattr(RealTimeEventListener, cb), cb)
        self.assertTrue(hasattr(RealTimeEventListener, "on_room_demoted_from_owner"))
        self.assertTrue(hasattr(RealTimeEventListener, "on_generic_system_event"))
        self.assertTrue(hasattr(RealTimeEventListener, "on_unknown_event"))
        self.assertEqual(snake_case("recipientTenantIds"), "recipient_tenant_ids")
        self.assertEqual(snake_case("formValues"), "form_values")

    def test_default_filter_is_the_bdks(self):
        bot = UserV2({"id": 42})

        def acc(ev):
            return asyncio.run(RealTimeEventListener.is_accepting_event(V4Event(ev), bot))
        self.assertTrue(acc({"initiator": {"user": {"userId": 43}}}))
        self.assertFalse(acc({"initiator": {"user": {"userId": 42}}}))   # the bot's own
        self.assertFalse(acc({}))                                         # no initiator
        self.assertFalse(acc({"initiator": {}}))                          # no user
        self.assertFalse(acc({"initiator": {"user": {}}}))                # no userId
        self.assertFalse(acc({"initiator": {"user": {"userId": "43"}}}))  # not an int
        self.assertFalse(acc({"initiator": {"user": {"userId": None}}}))
        self.assertFalse(acc({"initiator": "x"}))
        self.assertFalse(acc({"initiator": {"user": {"userId": 2**63}}}))  # not an int64


class ContractTest(unittest.TestCase):
    """The tables against the repository's own sources of truth."""

    def test_types_and_models_follow_contract_v1(self):
        with open(os.path.join(HERE, "..", "..", "..", "schemas", "contract-v1.json")) as f:
            c = json.load(f)
        ours = {t[0]: t for t in EVENT_TYPES}
        self.assertEqual(list(ours), [t["type"] for t in c["topics"]])
        for t in c["topics"]:
            topic, key, cls, cb = ours[t["type"]]
            self.assertEqual((key, cls), (t["payload_key"], t["payload_schema"]))
            self.assertEqual(cb, t["bdk_python"] or "on_generic_system_event")
            self.assertEqual(set(MODELS[cls]._camel), set(t["payload_fields"]), cls)
        for name, fields in c["schemas"].items():
            self.assertEqual(set(MODELS[name]._camel), set(fields), name)

    def test_stats_names_are_dfc_stats_t(self):
        import re
        from dfconsumer import STATS_FIELDS, DatafeedLoop
        with open(os.path.join(HERE, "..", "..", "include", "dfconsumer.h")) as f:
            h = f.read()
        body = h[h.index("typedef struct {\n    uint64_t listeners;"):]
        body = body[:body.index("} dfc_stats_t;")]
        names = re.findall(r"uint64_t (\w+);", body)
        self.assertEqual(len(names), 39)
        self.assertEqual(list(STATS_FIELDS), names)
        self.assertEqual(list(DatafeedLoop("tcp://127.0.0.1:1").stats()), names)


def env_bytes(**kw):
    m = {"v": 1, "seq": 1, "gseq": 1, "epoch": "E", "ts": 1, "bot": 2, "event": {}}
    m.update(kw)
    for k in [k for k, v in kw.items() if v is KeyError]:
        del m[k]
    return msgpack.packb(m, use_bin_type=True)


class WireTest(unittest.TestCase):
    def parse(self, body, topic=b"MESSAGESENT", max_frame=1 << 20):
        return wire.parse_message(topic, body, max_frame)[1]

    def test_envelope_check_one_reason_each(self):
        self.assertIsNone(self.parse(env_bytes()))
        self.assertEqual(self.parse(env_bytes(seq=2**64 - 1, gseq=2**64 - 1, bot=-2**63)), None)
        cases = [
            (msgpack.packb([1, 2]), wire.NOT_MAP),
            (env_bytes(v=KeyError), wire.BAD_VERSION),
            (env_bytes(v=2), wire.BAD_VERSION),
            (env_bytes(v=True), wire.BAD_VERSION),
            (env_bytes(v=-1), wire.BAD_VERSION),
            (env_bytes(seq=-1), wire.BAD_ENVELOPE),
            (env_bytes(seq="1"), wire.BAD_ENVELOPE),
            (env_bytes(gseq=1.0), wire.BAD_ENVELOPE),
            (env_bytes(ts=None), wire.BAD_ENVELOPE),
            (env_bytes(bot=2**63), wire.BAD_ENVELOPE),
            (env_bytes(bot=True), wire.BAD_ENVELOPE),
            (env_bytes(epoch=b"E"), wire.BAD_ENVELOPE),
            (env_bytes(epoch=KeyError), wire.BAD_ENVELOPE),
            (env_bytes(event=KeyError), wire.BAD_EVENT),
            (env_bytes(event=[1]), wire.BAD_EVENT),
        ]
        for body, why in cases:
            self.assertEqual(self.parse(body), why, msgpack.unpackb(body, strict_map_key=False))

    def test_hostile_msgpack(self):
        self.assertEqual(self.parse(b"\xdd\xff\xff\xff\xff"), wire.BAD_MSGPACK)    # array32 4 G
        self.assertEqual(self.parse(b"\xdf\xff\xff\xff\xff"), wire.BAD_MSGPACK)    # map32 4 G
        self.assertEqual(self.parse(b"\xdb\xff\xff\xff\xffab"), wire.BAD_MSGPACK)  # str32 4 GB
        self.assertEqual(self.parse(b"\xc6\xff\xff\xff\xffab"), wire.BAD_MSGPACK)  # bin32 4 GB
        self.assertEqual(self.parse(b"\x91" * 10000 + b"\xc0"), wire.BAD_MSGPACK)  # depth 10000
        self.assertEqual(self.parse(b"\xc1"), wire.BAD_MSGPACK)                    # reserved byte
        self.assertEqual(self.parse(env_bytes() + b"\x00"), wire.BAD_MSGPACK)      # trailing
        self.assertEqual(self.parse(b"\x81\x01\x02"), wire.BAD_MSGPACK)            # int key
        self.assertEqual(self.parse(b""), wire.BAD_MSGPACK)
        good = env_bytes()
        for n in range(len(good)):  # every prefix refused
            self.assertEqual(self.parse(good[:n]), wire.BAD_MSGPACK)
        self.assertEqual(self.parse(good, max_frame=len(good) - 1), wire.OVERSIZE)
        self.assertEqual(wire.parse_message(b"", good, 99)[1], wire.BAD_FRAMES)
        self.assertEqual(wire.parse_message(b"x" * 256, good, 99)[1], wire.BAD_FRAMES)
        self.assertIsNone(wire.parse_message(b"x" * 255, good, 99)[1])

    def test_heartbeat_and_end_bounds(self):
        hb = {"v": 1, "epoch": "E", "gseq": 5, "seqs": {"A": 3}, "ts": 1, "interval": 100,
              "replay": "tcp://127.0.0.1:1"}
        h, st = wire.parse_heartbeat(msgpack.packb(hb))
        self.assertIsNone(st)
        self.assertEqual((h.gseq, h.seqs, h.interval, h.replay), (5, [("A", 3)], 100, hb["replay"]))
        for bad in ({"gseq": 2**53}, {"seqs": {"A": 2**64 - 1}}, {"epoch": "e" * 128},
                    {"v": 2}, {"gseq": -1}):
            self.assertEqual(wire.parse_heartbeat(msgpack.packb(dict(hb, **bad)))[1],
                             wire.BAD_ENVELOPE, bad)
        self.assertIsNone(wire.parse_heartbeat(msgpack.packb(dict(hb, gseq=2**53 - 1)))[1])
        end = {"v": 1, "req": 3, "status": "ok", "count": 0, "last_gseq": 4, "more": False,
               "head_gseq": 9, "oldest_gseq": 1}
        e = wire.parse_end(msgpack.packb(end))
        self.assertTrue(e.ok and e.has_req and e.req == 3 and not e.impossible)
        self.assertTrue(wire.parse_end(msgpack.packb(dict(end, last_gseq=10))).impossible)
        self.assertTrue(wire.parse_end(msgpack.packb(dict(end, last_gseq=2**64 - 1))).impossible)
        self.assertTrue(wire.parse_end(msgpack.packb(dict(end, lost_from=5, lost_to=4))).impossible)
        self.assertIsNone(wire.parse_end(b"\xc1"))


class KeysTest(unittest.TestCase):
    def test_golden_keys(self):
        with open(VECTORS) as f:
            keys = json.load(f)["keys"]
        self.assertGreaterEqual(len(keys), 5)
        for k in keys:
            ev = json.loads(k["json"])
            key = partition.partition_key(ev)
            self.assertEqual(key, k["partition_key"], k["name"])
            self.assertEqual(partition.fnv1a64(key.encode()), int(k["fnv1a64"]), k["name"])
            self.assertEqual(partition.partition(key, 3), k["partition_of_3"], k["name"])
            self.assertEqual(partition.partition(key, 7), k["partition_of_7"], k["name"])
            dk = k["dedupe_key"]
            d = Dedupe(4)
            self.assertFalse(d.seen(ev.get("id"), ev.get("type")))
            self.assertEqual(d.seen(ev.get("id"), ev.get("type")), dk is not None, k["name"])
        self.assertEqual(partition.fnv1a64(b""), 14695981039346656037)
        self.assertEqual(partition.fnv1a64(b"a"), 0xaf63dc4c8601ec8c)
        self.assertIs(partition_fn, partition.partition)

    def test_dedupe_window(self):
        d = Dedupe(3)
        self.assertFalse(d.seen("a", "ROOMCREATED"))
        self.assertFalse(d.seen("a", "USERJOINEDROOM"))  # ids alone are not unique
        self.assertTrue(d.seen("a", "ROOMCREATED"))
        self.assertFalse(d.seen("a\0b", "X"))
        self.assertFalse(d.seen("a", "\0bX"))
        self.assertFalse(d.seen("a", "ROOMCREATED"))     # evicted by the window of 3
        self.assertFalse(d.seen(None, "X"))
        self.assertFalse(d.seen(None, "X"))              # no id: never a duplicate
        # ids (and types) over 256 characters are kept as their SHA-256: the window is
        # bounded in bytes, and they still compare exactly enough
        big = Dedupe(2)
        self.assertFalse(big.seen("x" * 1_000_000, "T"))
        self.assertTrue(big.seen("x" * 1_000_000, "T"))
        self.assertFalse(big.seen("x" * 999_999 + "y", "T"))
        self.assertTrue(all(len(k[0]) < 300 for k in big._ring))

    def test_replay_advert_rule(self):
        """The heartbeat replay endpoint rule, from the table all three libraries check."""
        with open(os.path.join(HERE, "..", "..", "tests", "replay_advert.json")) as f:
            cases = json.load(f)["cases"]
        self.assertGreaterEqual(len(cases), 17)
        for c in cases:
            self.assertEqual(wire.replay_advert(c["pub"], c["adv"], c["any_host"]), c["want"], c)
        self.assertEqual([wire.replay_rcvhwm(m) for m in (0, 16 << 20, 1 << 20, 65536)],
                         [4, 4, 63, 256])


C_FILE = b"dfc-checkpoint 1\ne 20261127T084425Z-5aac0631 29\nd 31\nd 32\ne E2 7\n"


class CheckpointTest(unittest.TestCase):
    def test_c_format_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "w.ckpt")
            with open(p, "wb") as f:
                f.write(C_FILE)  # as libdfconsumer writes it (consumers/README.md)
            entries, ok = checkpoint.load(p)
            self.assertTrue(ok)
            self.assertEqual(entries, [checkpoint.Entry("20261127T084425Z-5aac0631", 29, [31, 32]),
                                       checkpoint.Entry("E2", 7, [])])
            self.assertTrue(checkpoint.save(p, entries))
            with open(p, "rb") as f:
                self.assertEqual(f.read(), C_FILE)  # byte-identical
            self.assertFalse(os.path.exists(p + ".tmp"))
            self.assertEqual(checkpoint.load(os.path.join(d, "none.ckpt")), ([], True))
            with open(p, "wb") as f:
                f.write(b"dfc-checkpoint 1\ne A 3\nd 5\nd 4\nd x\ne B 1\n")
            entries, ok = checkpoint.load(p)
            self.assertFalse(ok)  # "d x": malformed, what came before kept; 4 < 5 ignored
            self.assertEqual(entries, [checkpoint.Entry("A", 3, [5])])
            with open(p, "wb") as f:
                f.write(b"dfc-checkpoint 2\n")
            self.assertEqual(checkpoint.load(p), ([], False))
            # epochs the text cannot hold are never written
            self.assertEqual(checkpoint.format_entries([checkpoint.Entry("a b", 1),
                                                        checkpoint.Entry("", 2),
                                                        checkpoint.Entry("ok", 3, [5])]),
                             b"dfc-checkpoint 1\ne ok 3\nd 5\n")

    def test_hostile_files(self):
        """Truncated, damaged or hand-edited files are refused or cut, never trusted
        (CONTRACT section 11, issue 9): the same outcomes as dfc_ckpt_load."""
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "w.ckpt")
            with open(p, "wb") as f:  # a line over 190 bytes: malformed from there
                f.write(b"dfc-checkpoint 1\ne a 7\nd " + b"0" * 189 + b"8\nd 9\n")
            self.assertEqual(checkpoint.load(p), ([checkpoint.Entry("a", 7)], False))
            with open(p, "wb") as f:  # an epoch of 128 bytes
                f.write(b"dfc-checkpoint 1\ne a 7\ne " + b"x" * 128 + b" 3\n")
            self.assertEqual(checkpoint.load(p), ([checkpoint.Entry("a", 7)], False))
            with open(p, "wb") as f:  # bigger than any writer makes: read up to FILE_MAX
                f.write(b"dfc-checkpoint 1\ne a 7\n")
                n = checkpoint.FILE_MAX // 23 + 1000  # 23 bytes a line
                f.write(b"".join(b"d %d\n" % (10**19 + g) for g in range(n)))
                f.write(b"e b 3\n")
            entries, ok = checkpoint.load(p)
            self.assertFalse(ok)
            self.assertEqual([(e.epoch, e.gseq, len(e.done)) for e in entries],
                             [("a", 7, checkpoint.CKPT_DONE_MAX)])
            self.assertEqual(entries[0].done[-1], 10**19 + checkpoint.CKPT_DONE_MAX - 1)

    def test_watermark_beyond_the_head_is_not_trusted(self):
        wm = Watermarks("/nonexistent/w.ckpt", 1000, None)
        w = wm.get("E", True)
        w.gseq, w.done = 10**12, [10**12 + 5]
        w.done_set = frozenset(w.done)
        self.assertFalse(wm.check_head(w, 5))
        self.assertEqual(w.done, [])
        w.gseq, w.done = 3, [4, 9]
        w.done_set = frozenset(w.done)
        self.assertTrue(wm.check_head(w, 5))
        self.assertEqual((w.done, w.done_set), ([4], frozenset([4])))

    def test_save_failure_keeps_the_previous_file(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "w.ckpt")
            self.assertTrue(checkpoint.save(p, [checkpoint.Entry("E", 1)]))
            os.mkdir(p + ".tmp")  # the temp file cannot be opened
            self.assertFalse(checkpoint.save(p, [checkpoint.Entry("E", 2)]))
            self.assertEqual(checkpoint.load(p), ([checkpoint.Entry("E", 1)], True))

    def test_watermark_moves_over_the_finished_prefix(self):
        with tempfile.TemporaryDirectory() as d:
            stats = {"checkpoints": 0, "checkpoint_errors": 0}
            wm = Watermarks(os.path.join(d, "w.ckpt"), 1000, stats)
            ts = [wm.track("E", g) for g in (1, 2, 3, 4)]
            for t in ts:
                t.pending += 1  # one job each
                wm.release(t)   # the dispatcher's own count
            wm.release(ts[0])
            wm.release(ts[2])
            self.assertEqual(wm.wms["E"].gseq, 1)
            wm.save()
            self.assertEqual(checkpoint.load(wm.path)[0], [checkpoint.Entry("E", 1, [3])])
            ts[1].failed = True  # not handled (stop while full): the mark stops there
            wm.release(ts[1])
            wm.release(ts[3])
            self.assertEqual(wm.wms["E"].gseq, 1)
            wm.save()
            self.assertEqual(stats["checkpoints"], 2)
            # as in C: the records behind the failed one are gone, a restart replays
            # 2..4 again (at least once for them)
            self.assertEqual(checkpoint.load(wm.path)[0], [checkpoint.Entry("E", 1, [])])
            self.assertTrue(wm.wms["E"].blocked)


if __name__ == "__main__":
    unittest.main()
