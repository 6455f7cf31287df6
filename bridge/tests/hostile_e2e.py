#!/usr/bin/python3
"""Hostile input, bounded (issue 9, section 2), bridge side: the real dfbridge against the real dfpod
on loopback, with pyzmq and msgpack from Debian. One ctest per case (--case NAME), each with its
own dfpod, dfbridge and bridge.stateDir. Scaled down from the issue's reproductions so each case
runs in seconds; the bounds asserted are derived from the caps, not from timings of this machine.
Usage: hostile_e2e.py --dfpod PATH --dfbridge PATH --case NAME
"""
import glob
import os
import resource
import socket
import sys
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "pylib"))
sys.path.insert(0, HERE)
import dftest  # noqa: E402
from dftest import check, eq, free_port  # noqa: E402
from dftest import recv_raw as recv, unpack as env, wait_until as wait_for  # noqa: E402
from delivery_e2e import Replay, event, new_bridge, new_pod, state_dir, stop, sub  # noqa: E402
from delivery_e2e import wait_heartbeat  # noqa: E402

dftest.WAIT_TIMEOUT = 30.0


def segments(state):
    return sorted(glob.glob(os.path.join(state, "journal", "*.dfj")))


def next_event(sock, timeout_ms=20000):
    """The next non-heartbeat message (topic, envelope dict) and the largest heartbeat frame
    seen meanwhile, or (None, size)."""
    biggest = 0
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        m = recv(sock, 500)
        if m is None:
            continue
        if m[0] == "_hb":
            biggest = max(biggest, len(m[1]))
            continue
        return (m[0], env(m[1])), biggest
    return None, biggest


# ---- 3. event types of any length ----------------------------------------------------------------

def case_topic_too_long():
    """A type over 255 bytes (a few KB, and exactly 256) is published under UNKNOWN with its type
    in the event; the topic table, the heartbeats and the journal's segment headers stay small;
    the journal does not roll per event; after a restart the same holds and the counters go on."""
    pod = new_pod("--hold-ms", "1000")
    state = state_dir()
    port = free_port()
    cfg = "  heartbeatMillis: 100\n  journal:\n    segmentBytes: 65536\n"
    br = new_bridge(pod, state, port, cfg)
    live = sub([br.endpoint])
    wait_heartbeat(live)
    long_a, long_b, edge = "A" * 6000, "B" * 300000, "C" * 256
    ok_255 = "D" * 255
    types = ["MESSAGESENT", long_a, "ROOMCREATED", long_b, edge, ok_255, long_a]
    pod.events([event(i, t) for i, t in enumerate(types)])
    got = []
    hb_max = 0
    for _ in types:
        m, size = next_event(live)
        hb_max = max(hb_max, size)
        if m is None:
            break
        got.append(m)
    eq(len(got), len(types), "events received")
    eq([t for t, _ in got], ["MESSAGESENT", "UNKNOWN", "ROOMCREATED", "UNKNOWN", "UNKNOWN",
                             ok_255, "UNKNOWN"], "topics (over 255 bytes -> UNKNOWN)")
    eq([e["event"]["type"] for _, e in got], types, "every event keeps its real type")
    eq([e["seq"] for t, e in got if t == "UNKNOWN"], [1, 2, 3, 4], "UNKNOWN seqs")
    eq([e["gseq"] for _, e in got], list(range(1, len(types) + 1)), "gseqs")
    # A heartbeat after the last event: its seqs name only the short topics.
    hb = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = recv(live, 500)
        if m and m[0] == "_hb" and env(m[1])["gseq"] == len(types):
            hb = m[1]
            break
    check(hb is not None, "a heartbeat with gseq %d" % len(types))
    if hb:
        check(len(hb) < 1024, "heartbeat of %d bytes (< 1 KiB)" % len(hb))
        eq(env(hb)["seqs"], {"MESSAGESENT": 1, "ROOMCREATED": 1, "UNKNOWN": 4, ok_255: 1},
           "heartbeat seqs")
    check(hb_max < 1024, "largest heartbeat %d bytes" % hb_max)
    eq(br.counter("topics_too_long"), 4, "topics_too_long")
    eq(br.counter("topics"), 4, "topics (UNKNOWN, MESSAGESENT, ROOMCREATED, 255 D)")
    # ~320 KB of events in 64 KiB segments: a handful of segments, not one per event.
    segs = segments(state)
    check(1 <= len(segs) <= 4, "%d journal segments" % len(segs))
    rp = Replay(br.replay)
    msgs, end = rp.ask(from_gseq=1)
    eq([t for t, _ in msgs], [t for t, _ in got], "replay: the same topics")
    eq([env(b)["event"]["type"] for _, b in msgs], types, "replay: the same types")
    eq(stop(br), 0, "exit status")
    # Restart: the topic table from the segment headers holds no long name.
    br = new_bridge(pod, state, port, cfg)
    live = sub([br.endpoint])
    hb = wait_heartbeat(live)
    check(hb is not None and hb["gseq"] == len(types) and
          hb["seqs"] == {"MESSAGESENT": 1, "ROOMCREATED": 1, "UNKNOWN": 4, ok_255: 1},
          "heartbeat after the restart: %r" % (hb and hb["seqs"]))
    pod.events([event(100, long_b), event(101, "MESSAGESENT")])
    m1, s1 = next_event(live)
    m2, s2 = next_event(live)
    check(m1 is not None and m1[0] == "UNKNOWN" and m1[1]["seq"] == 5 and
          m1[1]["event"]["type"] == long_b, "after the restart: UNKNOWN seq 5")
    check(m2 is not None and m2[0] == "MESSAGESENT" and m2[1]["seq"] == 2 and
          m2[1]["gseq"] == len(types) + 2, "after the restart: MESSAGESENT seq 2")
    check(max(s1, s2) < 1024, "heartbeats after the restart stay small")
    segs2 = segments(state)
    check(len(segs2) <= len(segs) + 2, "%d segments after the restart" % len(segs2))
    eq(stop(br), 0, "exit status")


CASES = {
    "hostile_topic_too_long": case_topic_too_long,
}


if __name__ == "__main__":
    sys.exit(dftest.run_cases(CASES, sys.argv[1:], prefix="hostile-e2e-"))
