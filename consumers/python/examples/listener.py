#!/usr/bin/python3
"""The first example of the BDK's datafeed documentation
(/work/shared/reference/bdk-datafeed-service.md, "How to use"), with only the imports and
the loop's construction changed: the events come from dfbridge instead of the pod.

    /usr/bin/python3 examples/listener.py [tcp://127.0.0.1:5556]   (or DFCONSUMER_ENDPOINT)

Stops on SIGINT/SIGTERM."""

import asyncio
import logging
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dfconsumer import DatafeedLoop, RealTimeEventListener  # noqa: E402

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DFCONSUMER_ENDPOINT",
                                                                 "tcp://127.0.0.1:5556")


class RealTimeEventListenerImpl(RealTimeEventListener):

    async def on_message_sent(self, initiator, event):
        # message received, interact with it
        logging.info("message %s from user %s", event.message.message_id,
                     initiator.user.user_id)


async def run():
    datafeed_loop = DatafeedLoop(ENDPOINT)  # the replay endpoint is learnt from heartbeats
    datafeed_loop.subscribe(RealTimeEventListenerImpl())

    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        aloop.add_signal_handler(sig, lambda: aloop.create_task(datafeed_loop.stop()))
    await datafeed_loop.start()  # returns after `await datafeed_loop.stop()`


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run())
