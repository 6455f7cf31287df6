"""Test helpers: a recording listener, bounded waits, a running loop."""

import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from dfconsumer import (DatafeedLoop, RealTimeEventListener, current_envelope,  # noqa: E402
                        event_listener_context)
from dfconsumer.models import EVENT_TYPES  # noqa: E402

CALLBACKS = [t[3] for t in EVENT_TYPES] + ["on_unknown_event"]


class Recorder(RealTimeEventListener):
    """Records every callback: (callback, topic, gseq, epoch, id, payload, initiator,
    context). accept_all overrides the filter; hook(rec, record) runs in the callback."""

    def __init__(self, accept_all=False, hook=None):
        self.calls = []
        self.accept_all = accept_all
        self.hook = hook
        self.running = 0
        self.max_running = 0

    async def is_accepting_event(self, event, bot_info):
        if self.accept_all:
            return True
        return await RealTimeEventListener.is_accepting_event(event, bot_info)

    def gseqs(self):
        return [c["gseq"] for c in self.calls]


def _make(name):
    async def cb(self, initiator, event):
        env = current_envelope.get()
        rec = {"callback": name, "topic": env.topic, "gseq": env.gseq, "epoch": env.epoch,
               "id": env.event.get("id"), "payload": event, "initiator": initiator,
               "context": event_listener_context.get(), "replayed": env.replayed}
        self.calls.append(rec)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.hook is not None:
                await self.hook(self, rec)
        finally:
            self.running -= 1
    cb.__name__ = name
    return cb


for _n in CALLBACKS:
    setattr(Recorder, _n, _make(_n))


async def wait_for(pred, timeout=5.0, what="condition"):
    """Polls pred (a state the test waits for) every 5 ms, at most timeout seconds."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def recorded(*args, **opts):
    """DatafeedLoop(*args, **opts) with one Recorder(accept_all=True) subscribed: (loop,
    recorder), the start of most tests."""
    dl = DatafeedLoop(*args, **opts)
    a = Recorder(accept_all=True)
    dl.subscribe(a)
    return dl, a


async def started(dl, *bridges):
    """Runs dl.start() as a task and waits (5 s at most each) for every bridge's XPUB to see
    the subscription; returns the task."""
    task = asyncio.get_running_loop().create_task(dl.start())
    for b in bridges:
        await asyncio.wait_for(asyncio.to_thread(b.wait_subscribed), 5)
    return task


class Running:
    """async with Running(dl, bridge, ...): starts the loop, waits for each bridge's
    XPUB to see the subscription; at exit stops it and waits for start to return."""

    def __init__(self, dl, *bridges):
        self.dl = dl
        self.bridges = bridges

    async def __aenter__(self):
        self.task = await started(self.dl, *self.bridges)
        return self

    async def __aexit__(self, *exc):
        await self.dl.stop()
        await asyncio.wait_for(self.task, 5)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))
