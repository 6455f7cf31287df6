"""A flooding replay endpoint (issue 9), as consumer_delivery's replay_flood: the
hostile ROUTER of consumers/tests/replay_flooder.py answers the request with the one
event asked for, its end marker and 200 unsolicited messages of 1 MiB while the loop
cannot read (two callbacks held, max_in_flight 2). The replay DEALER's RCVHWM is small
and a DEALER does not drop: libzmq stops reading the connection, the flooder gets few
of them out and this process grows by far less than 200 MiB. Then every event is
handled once, the 200 counted in replay_unexpected."""

import asyncio
import os
import subprocess
import threading
import time
import unittest

from harness import Recorder, Running, run, wait_for
from fakebridge import FakeBridge, message_event

from dfconsumer import DatafeedLoop

HERE = os.path.dirname(os.path.abspath(__file__))
FLOODER = os.path.join(HERE, "..", "..", "tests", "replay_flooder.py")
FLOOD_N = 200
MS = "MESSAGESENT"


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class FloodTest(unittest.TestCase):
    def test_replay_flood_is_held_back(self):
        b = FakeBridge(replay=False)
        fl = subprocess.Popen(["/usr/bin/python3", FLOODER, str(FLOOD_N)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
        try:
            port = int(fl.stdout.readline())
            progress = [0, time.monotonic()]  # the flooder's last count, when it came

            def read_progress():
                for line in fl.stdout:
                    progress[:] = [int(line), time.monotonic()]
            threading.Thread(target=read_progress, daemon=True).start()
            run(self.flood(b, fl, "tcp://127.0.0.1:%d" % port, progress))
        finally:
            fl.stdin.close()
            fl.wait(10)
            b.close()
        self.assertEqual(fl.returncode, 0)

    async def flood(self, b, fl, replay, progress):
        gate = asyncio.Event()

        async def hold(rec, call):
            if call["gseq"] in (1, 3):
                await gate.wait()
        dl = DatafeedLoop(b.endpoint, replay, max_in_flight=2)
        a = Recorder(accept_all=True, hook=hold)
        dl.subscribe(a)
        async with Running(dl, b):
            b.next(MS, message_event(1))
            b.next(MS, message_event(2))
            await wait_for(lambda: len(a.calls) >= 2, what="1 and 2")
            b.next(MS, message_event(3), publish=False)  # lost by PUB, asked from the flooder
            body = b.journal[2][2]
            fl.stdin.write(body.hex().encode() + b"\n")
            fl.stdin.flush()
            before = rss_kb()
            b.next(MS, message_event(4))
            # 1 and 3 held in their callbacks: the reader waits for room (the signal)
            await wait_for(lambda: dl.stats()["queue_waits"] >= 1 and len(a.calls) >= 3,
                           timeout=10, what="the reader waiting")
            # how far the flooder gets: no new line for 1 s = held back (20 s at most)
            end = time.monotonic() + 20
            while progress[0] < FLOOD_N and time.monotonic() < end and \
                    time.monotonic() - progress[1] < 1:
                await asyncio.sleep(0.05)
            sent = progress[0]
            grown = rss_kb() - before
            print("  replay_flood: the flooder sent %d of %d, RSS grew %d KiB" % (sent, FLOOD_N, grown))
            self.assertLess(sent, FLOOD_N // 2)
            self.assertLess(grown, 64 * 1024)
            gate.set()
            await wait_for(lambda: len(a.calls) >= 4, what="4 events")
            await wait_for(lambda: dl.stats()["replay_unexpected"] >= FLOOD_N, timeout=20,
                           what="the flood read and dropped")
        st = dl.stats()
        self.assertEqual(sorted(a.gseqs()), [1, 2, 3, 4])
        self.assertEqual({k: st[k] for k in ("replay_unexpected", "replayed", "lost", "bad_msgpack")},
                         {"replay_unexpected": FLOOD_N, "replayed": 1, "lost": 0, "bad_msgpack": 0})


if __name__ == "__main__":
    unittest.main()
