#!/usr/bin/python3
"""bdk_storm: 5000 generated events while the pod answers 500, 429 and 503, drops connections,
truncates bodies, expires the session token and expires the feed, at random (seeded), in waves
injected through the control interface while events flow.

What is exact, and why: Symphony drops the pending events of a feed that expires (the BDKs lose
them too). The test therefore expires the feed only when the pod's `pending` counter is 0 and
generates nothing until that fault was taken; every other fault loses nothing upstream (a
truncated or dropped batch is redelivered after the visibility timeout). So the set of event ids
the subscriber saw must EQUAL the set the pod enqueued (GET /admin/events, ids are unique), every
event must be acknowledged upstream (acked == enqueued, pending == 0), the bridge never exits, and
it creates at most one feed per 400 answered to a read (counted in the call log).
"""
import random
import sys
import threading
import time

import bdkfw
from bdkfw import check, eq, mk_bridge, mk_pod, run, summary, wait_until

SEED = 20260501
WAVES = 10
PER_WAVE = 500


class Collector(threading.Thread):
    """Receives on its own SUB socket (sockets stay in one thread) and keeps every event id."""

    def __init__(self, bridge):
        super().__init__(daemon=True)
        self.sub = bdkfw.Sub(bridge)
        self.ids = []
        self.lock = threading.Lock()
        self.stop = False

    def run(self):
        while not self.stop:
            m = self.sub.recv(100)
            if m is not None:
                with self.lock:
                    self.ids.append(m[1]["event"].get("id"))

    def seen(self):
        with self.lock:
            return set(self.ids), len(self.ids)


def random_faults(rng):
    """A wave of 3 to 6 faults on the reads and, now and then, on list/create/delete."""
    out = []
    for _ in range(rng.randint(3, 6)):
        kind = rng.choice(["500", "429", "503", "drop", "truncate", "truncate", "expire_token",
                           "list", "create", "delete"])
        if kind in ("500", "429", "503"):
            out.append({"endpoint": "read", "action": "status", "status": int(kind),
                        "count": rng.randint(1, 3)})
        elif kind in ("drop", "truncate", "expire_token"):
            out.append({"endpoint": "read", "action": kind})
        else:  # taken only when the bridge lists/creates/deletes (after an expired feed)
            out.append({"endpoint": kind, "action": "status", "status": rng.choice([500, 503])})
    return out


def test_storm(live):
    rng = random.Random(SEED)
    pod = mk_pod(live, "--hold-ms", "200", "--visibility-ms", "1500", "--batch-max", "50")
    pod.create_feed()
    df = ("datafeed:\n  retry:\n    maxAttempts: -1\n    initialIntervalMillis: 10\n"
          "    multiplier: 2\n    maxIntervalMillis: 100\n")
    rt = "retry:\n  maxAttempts: -1\n  initialIntervalMillis: 10\n  maxIntervalMillis: 100\n"
    b = mk_bridge(live, pod, datafeed=df, retry=rt)
    col = Collector(b)
    live.append(col.sub)
    col.start()
    try:
        t0 = time.monotonic()
        # the whole path works (our subscription reached PUB) once one probe came through
        for i in range(1, 60):
            pod.events([{"id": "probe-%d" % i, "timestamp": i, "type": "PROBE", "payload": {}}])
            try:
                wait_until(lambda: any(x.startswith("probe-") for x in col.seen()[0]),
                           "a probe", 0.5)
                break
            except bdkfw.Failure:
                check(b.running(), "dfbridge exited before the storm")
        expires = 0
        for w in range(WAVES):
            if w % 3 == 2:
                # expire the feed only when nothing is pending: no event can be lost upstream
                wait_until(lambda: pod.counter("pending") == 0, "nothing pending", 30)
                applied = pod.counter("faults_applied")
                pod.faults({"endpoint": "read", "action": "expire_feed"})
                wait_until(lambda: pod.counter("faults_applied") > applied, "the feed expired", 30)
                expires += 1
            pod.faults(*random_faults(rng))
            pod.admin("POST", "generate", {"count": PER_WAVE, "seed": SEED + w})
            check(b.running(), "dfbridge exited during wave %d" % w)
        enq = pod.admin("GET", "events")
        want = {e["id"] for e in enq if not str(e["id"]).startswith("probe-")}
        eq(len(want), WAVES * PER_WAVE, "distinct events enqueued")

        def all_seen():
            got, _ = col.seen()
            return want <= got or not b.running()
        wait_until(all_seen, "every event at the subscriber", 60)
        got, n = col.seen()
        probes = {x for x in got if str(x).startswith("probe-")}
        n -= len(probes)
        got -= probes
        missing = want - got
        check(not missing, "%d events never reached the subscriber (e.g. %s)"
              % (len(missing), sorted(missing)[:3]))
        eq(got, want, "ids received")
        check(b.running(), "dfbridge running after the storm")
        wait_until(lambda: pod.counter("pending") == 0, "every event acknowledged upstream", 30)
        c = pod.counters()
        eq(c["acked"], c["enqueued"], "acked == enqueued")
        calls = pod.calls()
        reads = [x for x in calls if x["endpoint"] == "read"]
        r400 = len([x for x in reads if x["status"] == 400])
        creates = len([x for x in calls if x["endpoint"] == "create" and x["status"] == 201])
        check(expires >= 1 and r400 >= expires, "reads answered 400: %d (%d expiries)" % (r400, expires))
        check(1 <= creates <= r400, "feeds created %d for %d reads answered 400" % (creates, r400))
        eq(c["live_feeds"], 1, "live feeds at the end")
        faults = {}
        for x in calls:
            if x.get("fault"):
                faults[x["fault"]] = faults.get(x["fault"], 0) + 1
        for kind in ("status", "drop", "truncate", "expire_token", "expire_feed"):
            check(faults.get(kind, 0) > 0, "no %s fault was taken: %s" % (kind, faults))
        print("  storm: %d events, %d messages received (%d duplicates), %d reads, faults %s, "
              "%d x 400 -> %d creates, redelivered %d, %.1f s"
              % (len(want), n, n - len(want), len(reads), faults, r400, creates,
                 c["redelivered"], time.monotonic() - t0), flush=True)
        b.stop()
    finally:
        col.stop = True
        col.join(5)


GROUPS = {"storm": [test_storm]}

if __name__ == "__main__":
    sys.exit(run(GROUPS, sys.argv[1:]))
