"""The metrics export: stats_prometheus() is stats() in the text format; the metrics option
serves it on GET /metrics (404 elsewhere) while start() runs and closes it with the loop; a
taken port fails start(); bad addresses and labels are refused by the constructor. The
byte-for-byte agreement with C and Node is consumers/tests/metrics_check.py's."""

import asyncio
import http.client
import re
import unittest

from harness import Recorder, Running, run, wait_for
from fakebridge import FakeBridge, message_event

from dfconsumer import METRICS, STATS_FIELDS, DatafeedLoop, serve_metrics


def get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode("utf-8")
    finally:
        c.close()


def samples(text, labels):
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"(\w+)(\{[^}]*\})? (\S+)", line)
        assert m, line
        assert (m.group(2) or "") == labels, line
        out[m.group(1)] = float(m.group(3))
    return out


class MetricsTest(unittest.TestCase):
    def test_table_follows_the_stats(self):
        self.assertEqual([m[0] for m in METRICS], list(STATS_FIELDS))

    def test_endpoint_while_running(self):
        async def main():
            b = FakeBridge(replay=False)
            try:
                dl = DatafeedLoop(b.endpoint, metrics="127.0.0.1:0",
                                  metrics_labels={"worker": "p1"})
                a = Recorder(accept_all=True)
                dl.subscribe(a)
                self.assertIsNone(dl.metrics_server)
                async with Running(dl, b):
                    for i in range(5):
                        b.next("MESSAGESENT", message_event(i))
                    await wait_for(lambda: len(a.calls) == 5, what="5 calls")
                    await wait_for(lambda: dl.stats()["completed"] == 5, what="5 completed")
                    port = dl.metrics_server.address[1]
                    status, ctype, body = await asyncio.to_thread(get, port, "/metrics")
                    self.assertEqual(status, 200)
                    self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
                    self.assertEqual(body, dl.stats_prometheus())
                    got = samples(body, '{worker="p1"}')
                    st = dl.stats()
                    self.assertEqual(len(got), len(METRICS))
                    for field, name, _, _ in METRICS:
                        want = st[field] / 1000 if field == "lag_ms" else st[field]
                        self.assertEqual(got[name], want, name)
                    self.assertEqual(got["dfconsumer_received_total"], 5)
                    self.assertEqual(got["dfconsumer_completed_total"], 5)
                    self.assertEqual(got["dfconsumer_listeners"], 1)
                    for p in ("/", "/metricsx", "/healthz"):
                        self.assertEqual((await asyncio.to_thread(get, port, p))[0], 404, p)
                self.assertIsNone(dl.metrics_server)
                with self.assertRaises(ConnectionRefusedError):
                    get(port, "/metrics")
                self.assertRegex(dl.stats_prometheus({"a": 'x"y'}),
                                 r'(?m)^dfconsumer_received_total\{a="x\\"y"\} 5$')
            finally:
                b.close()
        run(main())

    def test_taken_port_and_bad_options(self):
        async def main():
            dl = DatafeedLoop()
            server = serve_metrics(dl, "127.0.0.1:0")
            try:
                port = server.address[1]
                taken = DatafeedLoop(metrics="127.0.0.1:%d" % port)
                with self.assertRaises(OSError):
                    await taken.start()
                self.assertFalse(taken.running)
                self.assertIsNone(taken.metrics_server)
                status, _, body = await asyncio.to_thread(get, port, "/metrics")
                self.assertEqual(status, 200)
                self.assertEqual(samples(body, "")["dfconsumer_received_total"], 0)
            finally:
                server.close()
            with self.assertRaises(ConnectionRefusedError):
                get(port, "/metrics")
            for bad in ({"metrics": "127.0.0.1"}, {"metrics": "[::1]:99999"},
                        {"metrics_labels": {"a-b": "x"}}, {"metrics_labels": {"w": 1}}):
                with self.assertRaises(ValueError, msg=repr(bad)):
                    DatafeedLoop(**bad)
        run(main())


if __name__ == "__main__":
    unittest.main()
