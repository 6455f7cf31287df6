"""The two examples of examples/ run as processes against the fake bridge: the BDK
document's listener receives a message, the document's logging filter prints the
callback's context "<task>/<event id>/<listener id>"; both stop on SIGTERM."""

import os
import re
import signal
import subprocess
import sys
import threading
import unittest

from fakebridge import FakeBridge, message_event

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")


def run_example(name, b, n_events):
    env = dict(os.environ, DFCONSUMER_ENDPOINT=b.endpoint, PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, name)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, seen = [], threading.Event()

    def read():
        for line in p.stdout:
            lines.append(line)
            if sum("message m-" in x for x in lines) >= n_events:
                seen.set()
    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        b.wait_subscribed(10)
        for i in range(1, n_events + 1):
            b.next("MESSAGESENT", message_event(i))
        assert seen.wait(10), lines
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    t.join(5)
    return lines


class ExamplesTest(unittest.TestCase):
    def test_listener_example(self):
        b = FakeBridge()
        try:
            lines = run_example("listener.py", b, 2)
        finally:
            b.close()
        self.assertEqual([x.strip() for x in lines if "message m-" in x],
                         ["INFO:root:message m-1 from user 68719476738",
                          "INFO:root:message m-2 from user 68719476738"])

    def test_logging_filter_example(self):
        b = FakeBridge()
        try:
            lines = run_example("logging_filter.py", b, 1)
        finally:
            b.close()
        # the document's filter reads event_listener_context.get(""): "" outside callbacks
        self.assertTrue(any(re.search(r" - bot - INFO -  - listening on ", x)
                            for x in lines), lines)
        msg = [x for x in lines if "message m-1" in x]
        self.assertEqual(len(msg), 1, lines)
        self.assertRegex(msg[0], r" - bot - INFO - Task-\d+/ev-1/\d+ - message m-1 in s1$")


if __name__ == "__main__":
    unittest.main()
