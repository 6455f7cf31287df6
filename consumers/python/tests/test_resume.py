"""kill -9 of a consumer process (conformance_adapter.py, the real library) blocked in
the callback of gseq 30 while 31..50 finished, then a restart on the same checkpoint:
every event handled exactly once across both runs, except 30 (its callback never
returned: handled again), as libdfconsumer's consumer_delivery asserts."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from fakebridge import FakeBridge, message_event

HERE = os.path.dirname(os.path.abspath(__file__))
ADAPTER = os.path.join(os.path.dirname(HERE), "conformance_adapter.py")


class Adapter:
    def __init__(self, cfg, tmp):
        path = os.path.join(tmp, f"cfg-{time.monotonic_ns()}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.lines = []
        self.cv = threading.Condition()
        self.p = subprocess.Popen([sys.executable, ADAPTER, path], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.p.stdout:
            with self.cv:
                self.lines.append(json.loads(raw))
                self.cv.notify_all()

    def wait(self, pred, timeout=10):
        with self.cv:
            if not self.cv.wait_for(lambda: pred(self.lines), timeout):
                raise AssertionError(f"timed out; lines: {self.lines[-3:]}")

    def handled(self):
        return [x["handled"]["gseq"] for x in self.lines if "handled" in x]

    def publish_when_ready(self, bridge, gseqs):
        """Waits for {"ready": true} and the bridge's subscriber, then publishes gseqs."""
        self.wait(lambda ls: ls and ls[0] == {"ready": True})
        bridge.wait_subscribed()
        for g in gseqs:
            bridge.next("MESSAGESENT", message_event(g))


class ResumeTest(unittest.TestCase):
    def test_kill9_resume_exactly_once(self):
        b = FakeBridge()
        with tempfile.TemporaryDirectory() as tmp:
            cfg = {"bridges": [{"endpoint": b.endpoint, "replay": b.replay_endpoint}],
                   "options": {"checkpoint_dir": tmp, "name": "w", "checkpoint_ms": 50},
                   "listeners": [{"id": "A", "accept": "all"}], "block_gseq": 30}
            ckpt = os.path.join(tmp, "w.ckpt")
            a = Adapter(cfg, tmp)
            try:
                a.publish_when_ready(b, range(1, 51))
                a.wait(lambda ls: {"blocked": 30} in ls and len(a.handled()) == 50)
                want = b"dfc-checkpoint 1\ne E1 29\n" + b"".join(
                    b"d %d\n" % g for g in range(31, 51))
                end = time.monotonic() + 10
                while True:  # the 50 ms checkpoint timer catches up with the callbacks
                    if os.path.exists(ckpt) and open(ckpt, "rb").read() == want:
                        break
                    self.assertLess(time.monotonic(), end, "checkpoint never reached e 29, d 31..50")
                    time.sleep(0.01)
            finally:
                a.p.send_signal(signal.SIGKILL)
                a.p.wait(5)
            first = a.handled()
            self.assertEqual(sorted(first), list(range(1, 51)))
            del cfg["block_gseq"]
            a2 = Adapter(cfg, tmp)
            try:
                a2.publish_when_ready(b, range(51, 71))
                a2.wait(lambda ls: len(a2.handled()) == 21)
                time.sleep(0.05)  # nothing more may come
                a2.p.send_signal(signal.SIGTERM)
                a2.wait(lambda ls: "stats" in ls[-1])
                self.assertEqual(a2.p.wait(5), 0)
            finally:
                if a2.p.poll() is None:
                    a2.p.kill()
                    a2.p.wait(5)
            second = a2.handled()
            self.assertEqual(second, [30] + list(range(51, 71)))  # 30 first: replayed, in order
            st = a2.lines[-1]["stats"]
            # 30..50 come from replay (31..50 skipped as handled), 51..70 from replay or
            # live depending on when the journal was read
            self.assertEqual((st["duplicates"], st["lost"], st["completed"]), (20, 0, 21))
            self.assertGreaterEqual(st["replayed"], 21)
            self.assertEqual(open(ckpt, "rb").read(), b"dfc-checkpoint 1\ne E1 70\n")
        b.close()


if __name__ == "__main__":
    unittest.main()
