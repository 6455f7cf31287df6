#!/usr/bin/python3
"""The logging example of the BDK's datafeed documentation
(/work/shared/reference/bdk-datafeed-service.md): the filter class and the dictConfig
are the document's, unchanged except for the import of event_listener_context (ours)
and two fixes the document's snippet needs to run at all: `import logging.config`, and
the filter named "__main__.EventListenerLoggingFilter" (dictConfig imports the name it
is given). Each log line of a callback carries "<task name>/<event id>/<listener id>".

    /usr/bin/python3 examples/logging_filter.py [tcp://127.0.0.1:5556]   (or DFCONSUMER_ENDPOINT)
"""

import asyncio
import logging
import logging.config
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dfconsumer import DatafeedLoop, RealTimeEventListener  # noqa: E402
from dfconsumer import event_listener_context  # noqa: E402


class EventListenerLoggingFilter(logging.Filter):
    def filter(self, record):
        record.context_id = event_listener_context.get("")
        return True


logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"contextFilter": {"()": "__main__.EventListenerLoggingFilter"}},
    "formatters": {
        "standard": {
            "format": "%(asctime)s - %(name)s - %(levelname)s - %(context_id)s - %(message)s"
        },
    },
    "handlers": {
        "default": {
            "level": "DEBUG",
            "formatter": "standard",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",  # Default is stderr
            "filters": ["contextFilter"]
        },
    },
    "loggers": {
        "": {  # root logger
            "handlers": ["default"],
            "level": "DEBUG",
            "propagate": False
        }
    }
})

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DFCONSUMER_ENDPOINT",
                                                                 "tcp://127.0.0.1:5556")
logger = logging.getLogger("bot")


class RealTimeEventListenerImpl(RealTimeEventListener):

    async def on_message_sent(self, initiator, event):
        logger.info("message %s in %s", event.message.message_id,
                    event.message.stream.stream_id)


async def run():
    datafeed_loop = DatafeedLoop(ENDPOINT)
    datafeed_loop.subscribe(RealTimeEventListenerImpl())
    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        aloop.add_signal_handler(sig, lambda: aloop.create_task(datafeed_loop.stop()))
    logger.info("listening on %s", ENDPOINT)  # outside a callback: get("") gives ""
    await datafeed_loop.start()


if __name__ == "__main__":
    asyncio.run(run())
