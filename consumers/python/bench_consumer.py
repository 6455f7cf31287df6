#!/usr/bin/python3
"""Bench consumer: one no-op listener that accepts every event; exits after N events
handled and prints ONE line of JSON {"lang":"python","events":N,"seconds":S,"rate":R},
measured from the first to the N-th event handled.

    /usr/bin/python3 bench_consumer.py --endpoint tcp://127.0.0.1:5556 --count 100000 \
        [--replay tcp://127.0.0.1:5557]
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dfconsumer import DatafeedLoop, RealTimeEventListener  # noqa: E402


class NoOp(RealTimeEventListener):
    def __init__(self, count, done):
        self.count = count
        self.done = done
        self.n = 0
        self.first = None
        self.last = None

    @staticmethod
    async def is_accepting_event(event, bot_info):
        return True

    async def _one(self):
        t = time.perf_counter()
        if self.first is None:
            self.first = t
        self.n += 1
        if self.n == self.count:
            self.last = t
            self.done()

    async def on_message_sent(self, initiator, event):
        await self._one()

    on_shared_post = on_instant_message_created = on_room_created = on_room_updated = \
        on_room_deactivated = on_room_reactivated = on_user_requested_to_join_room = \
        on_user_joined_room = on_user_left_room = on_room_member_promoted_to_owner = \
        on_room_demoted_from_owner = on_connection_requested = on_connection_accepted = \
        on_message_suppressed = on_symphony_elements_action = on_generic_system_event = \
        on_unknown_event = on_message_sent


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--replay")
    ap.add_argument("--rcvhwm", type=int, default=0)
    a = ap.parse_args()
    dl = DatafeedLoop(a.endpoint, a.replay, rcvhwm=a.rcvhwm or None)
    listener = NoOp(a.count, dl.request_stop)
    dl.subscribe(listener)
    await dl.start()
    secs = listener.last - listener.first if listener.count > 1 else 0.0
    print(json.dumps({"lang": "python", "events": listener.n, "seconds": round(secs, 6),
                      "rate": round((listener.n - 1) / secs, 1) if secs > 0 else 0.0}),
          flush=True)
    s = dl.stats()
    print(json.dumps({k: s[k] for k in ("received", "gaps", "replayed", "lost", "queue_waits")}),
          file=sys.stderr)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
