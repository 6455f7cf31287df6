#!/usr/bin/python3
"""The worker of the exactly-once tests (exactly_once_e2e.py): a Python BDK-style listener on the
dfconsumer port that answers every MESSAGESENT (not the bot's own) with a message in the same
stream, through the bridge's command channel (schemas/CONTRACT.md section 13).

The call goes through the package's own command client when it has one (DatafeedLoop(commands=…):
`datafeed_loop.messages.send_message(stream_id, text)` as a BDK bot writes it, or with --flags
`datafeed_loop.commands.call_reply("messages.send", …)`, which also gives `replayed` and `found`),
with the default id "<event id>/<listener id>/<n>" (the listener's name "reply", n = 1: one call per
event); without it, through a plain pyzmq DEALER with the same ids, resent with the SAME id after a
timeout, a busy, an unavailable or an unknown_outcome (bounded). Every final reply is appended to
--out as one JSON line {"event", "stream", "source", "id", "reply"} (with send_message, "reply" is
{"ok": true, "result": <the V4Message as a dict>}) and fsync'ed before the listener returns, so a
SIGKILL loses none of them.

Usage: reply_worker.py --endpoint PUB --replay ROUTER --commands ROUTER --out FILE
                       [--checkpoint-dir D --name N] [--from-gseq G] [--checkpoint-ms MS]
                       [--exit-after K]   (os._exit(9) right after the K-th reply: a crash, no
                                           checkpoint written at stop)
SIGTERM stops the loop cleanly (the checkpoint is written)."""
import argparse
import asyncio
import json
import os
import signal
import sys

import msgpack
import zmq
import zmq.asyncio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "consumers", "python"))
import dfconsumer  # noqa: E402
from dfconsumer import DatafeedLoop, RealTimeEventListener, current_envelope  # noqa: E402

HAS_CLIENT = hasattr(dfconsumer, "CommandClient")  # the package's command client (issue 12)

LISTENER_ID = "reply"
RETRY_CODES = ("busy", "unavailable", "unknown_outcome")


class Commands:
    """One DEALER, many calls in flight, replies matched by id."""

    def __init__(self, endpoint, timeout_ms=3000, attempts=20):
        self.ctx = zmq.asyncio.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.timeout = timeout_ms / 1000.0
        self.attempts = attempts
        self.pending = {}
        self.unmatched = 0
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        while True:
            frames = await self.sock.recv_multipart()
            try:
                reply = msgpack.unpackb(frames[-1], raw=False)
                fut = self.pending.pop(reply.get("id"), None)
            except Exception:  # noqa: BLE001 - a broken reply is counted, not fatal
                fut = None
            if fut is None or fut.done():
                self.unmatched += 1
            else:
                fut.set_result(reply)

    async def call(self, op, args, ident):
        frame = msgpack.packb({"v": 1, "id": ident, "op": op, "args": args}, use_bin_type=True)
        reply = None
        for _ in range(self.attempts):
            fut = asyncio.get_running_loop().create_future()
            self.pending[ident] = fut
            await self.sock.send(frame)
            try:
                reply = await asyncio.wait_for(fut, self.timeout)
            except asyncio.TimeoutError:
                self.pending.pop(ident, None)
                continue  # the same id again: the bridge answers it once
            err = reply.get("error") or {}
            if reply.get("ok") or err.get("code") not in RETRY_CODES:
                return reply
            await asyncio.sleep(max(err.get("retry_after_ms", 200), 50) / 1000.0)
        return reply


class Replier(RealTimeEventListener):
    name = LISTENER_ID  # the listener id of the package's default command ids

    def __init__(self, loop, commands, out, exit_after, flags):
        self.loop = loop
        self.commands = commands
        self.out = out
        self.exit_after = exit_after
        self.flags = flags
        self.done = 0

    async def on_message_sent(self, initiator, event):
        ev = current_envelope.get().event
        msg = ev["payload"]["messageSent"]["message"]
        stream, source = msg["stream"]["streamId"], msg.get("messageId", "")
        ident = "%s/%s/1" % (ev["id"], LISTENER_ID)
        text = "reply to %s" % source
        if self.commands is not None:  # no client in the package: the plain DEALER
            reply = await self.commands.call("messages.send", {"stream_id": stream, "message": text},
                                             ident)
        elif self.flags:  # the package's client, the whole reply (default id)
            reply = await self.loop.commands.call_reply("messages.send",
                                                        {"stream_id": stream, "message": text})
        else:  # as a BDK bot: the MessageService (default id)
            result = await self.loop.messages.send_message(event.message.stream.stream_id, text)
            reply = {"ok": True, "result": result.to_dict()}
        line = json.dumps({"event": ev["id"], "stream": stream, "source": source, "id": ident,
                           "reply": reply}, default=lambda b: {"$bin": bytes(b).hex()})
        self.out.write(line + "\n")
        self.out.flush()
        os.fsync(self.out.fileno())
        self.done += 1
        if self.exit_after and self.done >= self.exit_after:
            os._exit(9)  # a crash: nothing more is written, no checkpoint at stop


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--replay", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint-dir")
    ap.add_argument("--name", default="replier")
    ap.add_argument("--from-gseq", type=int, default=1)
    ap.add_argument("--checkpoint-ms", type=int, default=200)
    ap.add_argument("--exit-after", type=int, default=0)
    ap.add_argument("--flags", action="store_true",
                    help="with the package's client: call_reply (replayed, found) not send_message")
    ap.add_argument("--raw", action="store_true", help="the plain DEALER even if the package has a client")
    a = ap.parse_args()
    opts = {"from_gseq": a.from_gseq, "checkpoint_ms": a.checkpoint_ms}
    if a.checkpoint_dir:
        opts.update(checkpoint_dir=a.checkpoint_dir, name=a.name)
    raw = a.raw or not HAS_CLIENT
    if not raw:
        opts.update(commands=a.commands)
    loop = DatafeedLoop(a.endpoint, a.replay, **opts)
    commands = Commands(a.commands) if raw else None
    with open(a.out, "a") as out:
        loop.subscribe(Replier(loop, commands, out, a.exit_after, a.flags))
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, loop.request_stop)
        print(json.dumps({"ready": True}), flush=True)
        await loop.start()
    if commands is not None:
        commands.reader.cancel()
    print(json.dumps({"stats": loop.stats(), "client": "raw DEALER" if raw else "dfconsumer",
                      "unmatched": commands.unmatched if commands else None}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
