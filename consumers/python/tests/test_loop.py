"""DatafeedLoop against an in-process fake bridge: the 17 types and the unknown ones
reach the right callbacks with the right models and exact ints; default vs custom
filter; the context var; a raising callback; stop from a callback and from signal
handlers; back-pressure; hostile frames counted and survived."""

import asyncio
import logging
import os
import signal
import time
import unittest

import msgpack

from harness import Recorder, Running, recorded, run, started, wait_for
from fakebridge import BOT, FakeBridge, envelope, message_event

from dfconsumer import DatafeedLoop, RealTimeEventListener, event_listener_context
from dfconsumer.models import EVENT_TYPES, MODELS

BIG = 2**53 + 1
USER = 68719476737


def typed_event(i, topic, key):
    payload = {"stream": {"streamId": f"s{i}"}, "message": {"messageId": f"m{i}",
               "stream": {"streamId": f"s{i}"}}, "affectedUser": {"userId": BIG + i},
               "newRoomProperties": {"name": "R"}, "formValues": {"action": "ok", "n": BIG},
               "toUser": {"userId": BIG}, "fromUser": {"userId": BIG}}
    return {"id": f"id-{i}", "timestamp": BIG + i, "type": topic,
            "initiator": {"user": {"userId": USER + i}}, "payload": {key: payload}}


class LoopTest(unittest.TestCase):
    def setUp(self):
        self.bridge = FakeBridge(replay=False)

    def tearDown(self):
        self.bridge.close()

    def test_all_types_filters_context(self):
        async def main():
            b = self.bridge
            dl = DatafeedLoop(b.endpoint)
            a, c = Recorder(), Recorder(accept_all=True)
            dl.subscribe(a)
            dl.subscribe(c)
            async with Running(dl, b):
                for i, (topic, key, cls, cb) in enumerate(EVENT_TYPES):
                    b.next(topic, typed_event(i, topic, key))
                b.next("UNKNOWN", {"id": "u1", "initiator": {"user": {"userId": 5}}})
                b.next("SOMETHINGNEW", {"id": "u2", "type": "SOMETHINGNEW",
                                        "initiator": {"user": {"userId": 6}}})
                own = message_event(99, user=BOT)       # the bot's own message
                b.next("MESSAGESENT", own)
                b.next("MESSAGESENT", {"id": "noinit"})  # no initiator
                await wait_for(lambda: len(c.calls) == 21, what="21 calls of the accept-all")
                await wait_for(lambda: len(a.calls) == 19, what="19 calls of the default")
            st = dl.stats()
            self.assertEqual([r["gseq"] for r in a.calls], list(range(1, 20)))  # one task each
            for i, (topic, key, cls, cb) in enumerate(EVENT_TYPES):
                r = a.calls[i]
                self.assertEqual((r["callback"], r["topic"]), (cb, topic))
                self.assertIs(type(r["payload"]), MODELS[cls])
                self.assertEqual(r["initiator"].user.user_id, USER + i)
                self.assertEqual(r["id"], f"id-{i}")
                p = r["payload"]
                if topic == "MESSAGESENT":
                    self.assertEqual(p.message.stream.stream_id, f"s{i}")
                    self.assertEqual(p.message.message_id, f"m{i}")
                if topic.startswith("ROOMMEMBER") or topic in ("USERJOINEDROOM", "USERLEFTROOM"):
                    self.assertEqual(p.affected_user.user_id, BIG + i)
                if topic == "ROOMUPDATED":
                    self.assertEqual(p.new_room_properties.name, "R")
                if topic == "SYMPHONYELEMENTSACTION":
                    self.assertEqual(p.form_values, {"action": "ok", "n": BIG})
                if topic == "CONNECTIONREQUESTED":
                    self.assertEqual(p.to_user.user_id, BIG)
                self.assertEqual(p.to_dict(), typed_event(i, topic, key)["payload"][key])
                task, eid, lid = r["context"].split("/")
                self.assertTrue(task.startswith("Task-"), r["context"])
                self.assertEqual((eid, lid), (f"id-{i}", str(id(a))))
            self.assertEqual(a.calls[15]["callback"], "on_symphony_elements_action")
            self.assertEqual(a.calls[11]["callback"], "on_room_demoted_from_owner")
            self.assertEqual([r["callback"] for r in a.calls[17:]], ["on_unknown_event"] * 2)
            self.assertIs(type(a.calls[17]["payload"]), MODELS["V4Event"])
            self.assertEqual(a.calls[18]["payload"].type, "SOMETHINGNEW")
            self.assertEqual([r["gseq"] for r in c.calls], list(range(1, 22)))
            self.assertEqual(c.calls[20]["context"].split("/")[1], "noinit")
            self.assertEqual(st["received"], 21)
            self.assertEqual(st["unknown_type"], 2)
            self.assertEqual(st["filtered"], 2)
            self.assertEqual(st["dispatched"], 40)
            self.assertEqual(st["completed"], 40)
            self.assertEqual(st["listeners"], 2)
            self.assertEqual(st["dropped_malformed"], 0)
            self.assertEqual(event_listener_context.get(), "main-task")
        run(main())

    def test_exception_logged_loop_goes_on_and_stop_from_callback(self):
        async def main():
            b = self.bridge
            dl = DatafeedLoop(b.endpoint)

            async def hook(rec, r):
                if r["gseq"] == 2:
                    raise RuntimeError("boom")
                if r["gseq"] == 4:
                    await dl.stop()  # from a callback
            a = Recorder(hook=hook)
            dl.subscribe(a)
            task = await started(dl, b)
            with self.assertLogs("dfconsumer", logging.ERROR) as logs:
                for i in range(1, 5):
                    b.next("MESSAGESENT", message_event(i))
                await asyncio.wait_for(task, 5)
            self.assertEqual(a.gseqs(), [1, 2, 3, 4])
            self.assertTrue(any("boom" in x for x in logs.output))
            st = dl.stats()
            self.assertEqual((st["dispatched"], st["completed"]), (4, 4))
        run(main())

    def test_stop_from_signal_handlers(self):
        async def main():
            b = self.bridge
            aloop = asyncio.get_running_loop()
            # asyncio's signal handler + the coroutine stop()
            dl = DatafeedLoop(b.endpoint)
            dl.subscribe(Recorder())
            aloop.add_signal_handler(signal.SIGUSR1, lambda: aloop.create_task(dl.stop()))
            task = await started(dl, b)
            t0 = time.monotonic()
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(task, 3)
            self.assertLess(time.monotonic() - t0, 1.0)
            aloop.remove_signal_handler(signal.SIGUSR1)
            # a plain signal.signal handler: request_stop()
            dl2 = DatafeedLoop(b.endpoint)
            old = signal.signal(signal.SIGUSR2, lambda *a: dl2.request_stop())
            try:
                task = await started(dl2, b)
                t0 = time.monotonic()
                os.kill(os.getpid(), signal.SIGUSR2)
                await asyncio.wait_for(task, 3)
                self.assertLess(time.monotonic() - t0, 1.0)
            finally:
                signal.signal(signal.SIGUSR2, old)
            # sticky: a stop before start makes start return at once
            dl3 = DatafeedLoop(b.endpoint)
            await dl3.stop()
            await asyncio.wait_for(dl3.start(), 1)
        run(main())

    def test_backpressure_bound(self):
        async def main():
            b = self.bridge
            dl = DatafeedLoop(b.endpoint, max_in_flight=2)
            gate = asyncio.Event()

            async def hook(rec, r):
                await gate.wait()
            a = Recorder(hook=hook)
            dl.subscribe(a)
            async with Running(dl, b):
                for i in range(1, 11):
                    b.next("MESSAGESENT", message_event(i))
                await wait_for(lambda: dl.stats()["queue_waits"] == 1, what="a full bound")
                st = dl.stats()
                # two tasks run, the third event waits in the reader: nothing more is read
                self.assertEqual((st["dispatched"], st["received"]), (2, 3))
                self.assertEqual(a.running, 2)
                gate.set()
                await wait_for(lambda: len(a.calls) == 10, what="all 10")
            self.assertEqual(a.gseqs(), list(range(1, 11)))
            self.assertEqual(a.max_running, 2)
            st = dl.stats()
            self.assertEqual((st["received"], st["completed"], st["gaps"]), (10, 10, 0))
        run(main())

    def test_stop_awaits_tasks_in_flight(self):
        async def main():
            b = self.bridge
            dl = DatafeedLoop(b.endpoint)
            gate = asyncio.Event()
            done = []

            async def hook(rec, r):
                await gate.wait()
                done.append(r["gseq"])
            dl.subscribe(Recorder(hook=hook))
            task = await started(dl, b)
            for i in range(1, 4):
                b.next("MESSAGESENT", message_event(i))
            await wait_for(lambda: dl.stats()["dispatched"] == 3)
            await dl.stop()
            await asyncio.sleep(0.05)
            self.assertFalse(task.done())  # waits for the three tasks
            gate.set()
            await asyncio.wait_for(task, 3)
            self.assertEqual(sorted(done), [1, 2, 3])
        run(main())

    def test_hard_kill_cancels_tasks_in_flight(self):
        async def main():
            b = self.bridge
            dl = DatafeedLoop(b.endpoint)

            async def hook(rec, r):
                await asyncio.Event().wait()  # never returns by itself
            dl.subscribe(Recorder(hook=hook))
            task = await started(dl, b)
            for i in range(1, 3):
                b.next("MESSAGESENT", message_event(i))
            await wait_for(lambda: dl.stats()["dispatched"] == 2)
            await dl.stop(hard_kill=True)
            await asyncio.wait_for(task, 3)
            st = dl.stats()
            self.assertEqual((st["dispatched"], st["completed"], st["skipped"]), (2, 0, 2))
        run(main())

    def test_hostile_frames_counted_and_survived(self):
        async def main():
            b = self.bridge
            dl, a = recorded(b.endpoint, max_frame=20000)
            good = envelope(1, 1, "E1", message_event(1))
            async with Running(dl, b):
                b.send_raw([b"MESSAGESENT"])                              # 1 frame
                b.send_raw([b"MESSAGESENT", good, b"extra"])              # 3 frames
                b.send_raw([b"x" * 256, good])                            # topic too long
                b.send_raw([b"MESSAGESENT", b"\xdd\xff\xff\xff\xff"])     # array32 of 4 G
                b.send_raw([b"MESSAGESENT", b"\xdb\xff\xff\xff\xff" + b"a" * 10])  # str32 4 GB
                b.send_raw([b"MESSAGESENT", b"\x91" * 10000 + b"\xc0"])   # depth 10000
                b.send_raw([b"MESSAGESENT", b"\xc0" * 20010])             # over max_frame
                b.send_raw([b"MESSAGESENT", msgpack.packb([1])])          # not a map
                b.send_raw([b"MESSAGESENT", msgpack.packb({"v": 9})])     # newer version
                for bad in ({"seq": "1"}, {"bot": 1.5}, {"epoch": 7}, {"gseq": 2**53},
                            {"epoch": "e" * 128}):
                    m = msgpack.unpackb(good)
                    m.update(bad)
                    b.send_raw([b"MESSAGESENT", msgpack.packb(m)])       # bad envelope x5
                m = msgpack.unpackb(good)
                m["event"] = "x"
                b.send_raw([b"MESSAGESENT", msgpack.packb(m)])           # bad event
                hb = {"v": 1, "epoch": "E1", "gseq": 0, "seqs": {"MESSAGESENT": 2**64 - 1},
                      "ts": 1, "interval": 1000, "replay": ""}
                b.send_raw([b"_hb", msgpack.packb(hb)])                  # absurd seqs
                b.send_raw([b"_other", b"whatever", b"x"])              # reserved, ignored
                b.send_raw([b"MESSAGESENT", good])                      # still alive
                await wait_for(lambda: len(a.calls) == 1, what="the good message")
            st = dl.stats()
            self.assertEqual(a.gseqs(), [1])
            expect = {"bad_frames": 3, "oversize": 1, "bad_msgpack": 3, "not_map": 1,
                      "bad_version": 1, "bad_envelope": 6, "bad_event": 1,
                      "dropped_malformed": 16, "reserved": 2, "heartbeats": 0, "received": 18,
                      "disconnects": 0}
            self.assertEqual({k: st[k] for k in expect}, expect)
        run(main())

    def test_oversize_over_tcp_reconnects(self):
        async def main():
            b = self.bridge
            dl, a = recorded(b.endpoint, max_frame=2000)
            async with Running(dl, b):
                b.next("MESSAGESENT", message_event(1))
                await wait_for(lambda: len(a.calls) == 1)
                big = message_event(2)
                big["payload"]["messageSent"]["message"]["message"] = "x" * 5000
                b.next("MESSAGESENT", big)   # libzmq drops the connection (MAXMSGSIZE)
                await asyncio.wait_for(asyncio.to_thread(b.wait_subscribed), 5)  # we came back
                b.next("MESSAGESENT", message_event(3))
                await wait_for(lambda: len(a.calls) == 2, what="the message after")
            st = dl.stats()
            self.assertEqual(a.gseqs(), [1, 3])
            self.assertEqual(st["gaps"], 1)
            self.assertGreaterEqual(st["disconnects"], 1)
            self.assertGreaterEqual(st["connects"], 2)
        run(main())

    def test_unsubscribe_and_options(self):
        with self.assertRaises(TypeError):
            DatafeedLoop("tcp://127.0.0.1:1", nonsense=1)
        with self.assertRaises(ValueError):
            DatafeedLoop("tcp://127.0.0.1:1", checkpoint_dir="/tmp")  # needs a name
        with self.assertRaises(ValueError):
            DatafeedLoop("tcp://127.0.0.1:1", group="g", member=3, members=3)
        dl = DatafeedLoop("tcp://127.0.0.1:1", queue_size=7, workers=4)
        self.assertEqual(dl.max_in_flight, 7)
        x = RealTimeEventListener()
        dl.subscribe(x)
        dl.unsubscribe(x)
        with self.assertRaises(ValueError):
            dl.unsubscribe(x)
        self.assertEqual(dl.stats()["listeners"], 0)


if __name__ == "__main__":
    unittest.main()
