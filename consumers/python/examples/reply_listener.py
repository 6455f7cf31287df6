#!/usr/bin/python3
"""The Python BDK's "Create a Simple Bot Application" (docsrc/markdown/getting_started.md of
finos/symphony-bdk-python 2.x): a RealTimeEventListener that replies to every message in
its stream. The listener class is the BDK's, unchanged; only the imports and the loop's
construction differ: the events come from dfbridge's PUB endpoint and the reply goes
through dfbridge's command channel (the bridge holds the bot's session and posts the
reply exactly once per event, even when this worker is restarted and the event is
delivered again).

    /usr/bin/python3 examples/reply_listener.py [PUB_ENDPOINT [COMMANDS_ENDPOINT]]
    (or DFCONSUMER_ENDPOINT, DFCONSUMER_COMMANDS; defaults tcp://127.0.0.1:5556, :5558)

Stops on SIGINT/SIGTERM."""

import asyncio
import logging
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dfconsumer import DatafeedLoop, RealTimeEventListener, V4Initiator, V4MessageSent  # noqa: E402,E501

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DFCONSUMER_ENDPOINT",
                                                                 "tcp://127.0.0.1:5556")
COMMANDS = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("DFCONSUMER_COMMANDS",
                                                                 "tcp://127.0.0.1:5558")


class RealTimeEventListenerImpl(RealTimeEventListener):

    def __init__(self, message_service):
        self._message_service = message_service

    async def on_message_sent(self, initiator: V4Initiator, event: V4MessageSent):
        await self._message_service.send_message(event.message.stream.stream_id,
                                                 f"<messageML>Hello, {initiator.user.display_name}!</messageML>")


async def run():
    datafeed_loop = DatafeedLoop(ENDPOINT, commands=COMMANDS)  # bdk.datafeed()
    datafeed_loop.subscribe(RealTimeEventListenerImpl(datafeed_loop.messages))  # bdk.messages()

    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        aloop.add_signal_handler(sig, lambda: aloop.create_task(datafeed_loop.stop()))
    logging.info("replying to the messages of %s through %s", ENDPOINT, COMMANDS)
    await datafeed_loop.start()  # returns after `await datafeed_loop.stop()`


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run())
