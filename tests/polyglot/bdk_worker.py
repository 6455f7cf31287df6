#!/usr/bin/python3
"""The Python worker of the polyglot live test (live_test.py), written as the Python BDK's
datafeed documentation's example (RealTimeEventListenerImpl, DatafeedLoop, subscribe, await
start()), on the dfconsumer port instead of SymphonyBdk.datafeed().

Every callback prints one line "E <gseq> <callback> <canonical event>" on stdout: the C name of
the callback and the event map in the canonical JSON of schemas/conformance/README.md (printed by
the Python conformance adapter's canonical()), as the C (c_worker.c) and Node (worker.js) workers
do. "{"ready":true}" before start(), "{"stats":...}" after it returned (SIGTERM stops the loop).

Usage: bdk_worker.py --endpoint EP [--replay EP] [--from-gseq N] [--checkpoint-dir D --name N]
                     [--server-key K --cert F]   (CURVE, curve_live_test.py)
"""
import argparse
import asyncio
import json
import os
import signal
import sys

# Run from a checkout: the port is consumers/python/dfconsumer.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "consumers", "python"))
from dfconsumer import DatafeedLoop, RealTimeEventListener, current_envelope  # noqa: E402
from conformance_adapter import canonical  # noqa: E402  (the Python adapter's printer)


def handled(callback):
    env = current_envelope.get()
    text = canonical(env.event).decode("utf-8", "surrogateescape")
    sys.stdout.write("E %d %s %s\n" % (env.gseq, callback, text))
    sys.stdout.flush()


class RealTimeEventListenerImpl(RealTimeEventListener):

    async def on_message_sent(self, initiator, event):
        handled("on_message_sent")

    async def on_shared_post(self, initiator, event):
        handled("on_shared_post")

    async def on_instant_message_created(self, initiator, event):
        handled("on_instant_message_created")

    async def on_room_created(self, initiator, event):
        handled("on_room_created")

    async def on_room_updated(self, initiator, event):
        handled("on_room_updated")

    async def on_room_deactivated(self, initiator, event):
        handled("on_room_deactivated")

    async def on_room_reactivated(self, initiator, event):
        handled("on_room_reactivated")

    async def on_user_requested_to_join_room(self, initiator, event):
        handled("on_user_requested_to_join_room")

    async def on_user_joined_room(self, initiator, event):
        handled("on_user_joined_room")

    async def on_user_left_room(self, initiator, event):
        handled("on_user_left_room")

    async def on_room_member_promoted_to_owner(self, initiator, event):
        handled("on_room_member_promoted_to_owner")

    async def on_room_demoted_from_owner(self, initiator, event):  # the BDK's name (sic)
        handled("on_room_member_demoted_from_owner")

    async def on_connection_requested(self, initiator, event):
        handled("on_connection_requested")

    async def on_connection_accepted(self, initiator, event):
        handled("on_connection_accepted")

    async def on_message_suppressed(self, initiator, event):
        handled("on_message_suppressed")

    async def on_symphony_elements_action(self, initiator, event):
        handled("on_symphony_elements_action")

    async def on_generic_system_event(self, initiator, event):
        handled("on_generic_system_event")

    async def on_unknown_event(self, initiator, event):
        handled("on_unknown")


async def run(args):
    datafeed_loop = DatafeedLoop(args.endpoint, args.replay, from_gseq=args.from_gseq,
                                 checkpoint_dir=args.checkpoint_dir, name=args.name,
                                 server_key=args.server_key, cert=args.cert)
    datafeed_loop.subscribe(RealTimeEventListenerImpl())
    stop = lambda: asyncio.ensure_future(datafeed_loop.stop())  # noqa: E731
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop)
    print(json.dumps({"ready": True}), flush=True)

    await datafeed_loop.start()
    print(json.dumps({"stats": datafeed_loop.stats()}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--replay")
    ap.add_argument("--from-gseq", type=int, default=0)
    ap.add_argument("--checkpoint-dir")
    ap.add_argument("--name")
    ap.add_argument("--server-key")
    ap.add_argument("--cert")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
