#!/usr/bin/python3
"""A hostile replay endpoint for the flood tests (C consumer_delivery replay_flood,
Python test_hostile, Node hostile.test.js): a ROUTER on 127.0.0.1 (an ephemeral port,
printed first), in its own process so that its memory is not the consumer's.

    replay_flooder.py N

reads the body of the one event to answer (hex) from stdin, then answers the first
request with that event, its end marker and N unsolicited messages of 1 MiB, printing
after each how many it could send so far. ROUTER_MANDATORY and SNDHWM 1: a send waits
while the consumer does not read, so the count shows how much the consumer let in.
Exits when stdin closes."""

import sys

import msgpack
import zmq

ctx = zmq.Context()
r = ctx.socket(zmq.ROUTER)
r.setsockopt(zmq.ROUTER_MANDATORY, 1)
r.setsockopt(zmq.SNDHWM, 1)
r.setsockopt(zmq.LINGER, 0)
print(r.bind_to_random_port("tcp://127.0.0.1"), flush=True)
body = bytes.fromhex(sys.stdin.readline().strip())
ident, req = r.recv_multipart()
q = msgpack.unpackb(req)
end = msgpack.packb({"v": 1, "req": q["req"], "status": "ok", "count": 1, "last_gseq": q["from_gseq"],
                     "more": False, "head_gseq": q["from_gseq"] + 1, "oldest_gseq": 1,
                     "epoch": q["epoch"]})
r.send_multipart([ident, b"MESSAGESENT", body])
r.send_multipart([ident, b"_end", end])
junk = b"\0" * (1 << 20)
for i in range(int(sys.argv[1])):
    r.send_multipart([ident, b"MESSAGESENT", junk])
    print(i + 1, flush=True)
sys.stdin.read()
