#!/usr/bin/python3
"""Publishes N 1.2 KB MESSAGESENT envelopes from a PUB (SNDHWM 0) once a subscriber is
there (XPUB subscription), for bench_consumer.py: bench_publish.py N [RATE]."""
import sys
import time

import msgpack
import zmq

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fakebridge import message_event  # noqa: E402


def body(i, pad):
    ev = message_event(i, stream=f"s{i % 16}")
    ev["payload"]["messageSent"]["message"]["message"] = "<div>" + "x" * pad + "</div>"
    return msgpack.packb({"v": 1, "seq": i, "gseq": i, "epoch": "BENCH", "ts": int(time.time() * 1000),
                          "bot": 1, "event": ev}, use_bin_type=True)


def main():
    n = int(sys.argv[1])
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind("tcp://127.0.0.1:*")
    print(pub.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    pad = 1200 - len(body(1, 0))
    bodies = [body(i, pad) for i in range(1, n + 1)]
    sys.stderr.write(f"envelope {len(bodies[0])} bytes\n")
    pub.recv()  # the subscription
    for b in bodies:
        pub.send_multipart([b"MESSAGESENT", b])
    time.sleep(30)


main()
