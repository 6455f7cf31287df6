#!/usr/bin/python3
"""The Python worker of polyglot_metrics (metrics_test.py): a DatafeedLoop with the metrics
option (/metrics on a free loopback port, worker="python" label) and a listener on every
message. Prints {"metrics_port": P} once the endpoint listens and {"stats": {...}} after
start() returned (SIGTERM stops the loop, which closes the endpoint).

Usage: metrics_worker.py --endpoint EP
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "consumers", "python"))
from dfconsumer import DatafeedLoop, RealTimeEventListener  # noqa: E402


class Listener(RealTimeEventListener):
    async def on_message_sent(self, initiator, event):
        pass

    async def on_room_created(self, initiator, event):
        pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    a = ap.parse_args()
    loop = DatafeedLoop(a.endpoint, metrics="127.0.0.1:0", metrics_labels={"worker": "python"})
    loop.subscribe(Listener())
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: asyncio.ensure_future(loop.stop()))
    task = asyncio.ensure_future(loop.start())
    for _ in range(500):  # the endpoint listens when start() began (bounded: 5 s)
        if loop.metrics_server is not None or task.done():
            break
        await asyncio.sleep(0.01)
    if loop.metrics_server is None:
        await task  # start() failed: its exception
        return 1
    print(json.dumps({"metrics_port": loop.metrics_server.address[1]}), flush=True)
    port = loop.metrics_server.address[1]
    await task
    # the endpoint closes with the loop: nothing listens on its port any more
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        closed = False
    except OSError:
        closed = True
    print(json.dumps({"stats": loop.stats(), "metrics_closed": closed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
