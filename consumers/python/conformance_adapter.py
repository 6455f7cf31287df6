#!/usr/bin/python3
"""The conformance adapter of dfconsumer (schemas/conformance/README.md):

    conformance_adapter.py CONFIG.json

runs the real library with the bridges, options and listeners of CONFIG.json and
writes one JSON object per line on stdout: {"ready": true}, one {"handled": ...} per
callback, {"blocked": g} for block_gseq, and {"stats": ...} after SIGTERM stopped the
loop. Logs go to stderr."""

import asyncio
import json
import logging
import os
import re
import signal
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dfconsumer import (DatafeedLoop, RealTimeEventListener, current_envelope,  # noqa: E402
                        event_listener_context)
from dfconsumer.loop import ALIASES, DEFAULTS  # noqa: E402
from dfconsumer.models import EVENT_TYPES  # noqa: E402

# Python callback name -> the C name the protocol reports: on_ + the payload key in snake case
# (the package's one type table; the BDK's on_room_demoted_from_owner differs), on_unknown.
C_NAMES = {py: "on_" + re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)
           for _, key, _, py in EVENT_TYPES}
C_NAMES["on_unknown_event"] = "on_unknown"

_ESC = {0x22: b'\\"', 0x5C: b"\\\\"}
_ESC.update({c: b"\\u%04x" % c for c in range(0x20)})


def _str(b):
    """A JSON string of raw bytes: '"' and '\\' escaped, 0x00-0x1F as \\u00xx, the rest
    as its bytes."""
    if not any(c < 0x20 or c in (0x22, 0x5C) for c in b):
        return b'"' + b + b'"'
    return b'"' + b"".join(_ESC.get(c, bytes((c,))) for c in b) + b'"'


def canonical(v):
    """The canonical JSON text (bytes) of a decoded msgpack value."""
    if v is None:
        return b"null"
    if v is True:
        return b"true"
    if v is False:
        return b"false"
    t = type(v)
    if t is int:
        return str(v).encode()
    if t is float:
        return b'"f64:' + struct.pack(">d", v).hex().encode() + b'"'
    if t is str:
        return _str(v.encode("utf-8", "surrogateescape"))
    if t is bytes:
        return b'"bin:' + v.hex().encode() + b'"'
    if t is dict:
        return b"{" + b",".join(canonical(k) + b":" + canonical(x) for k, x in v.items()) + b"}"
    if t is list or t is tuple:
        return b"[" + b",".join(canonical(x) for x in v) + b"]"
    return b"null"  # ext types: not produced by the bridge


_out = sys.stdout.buffer


def emit(obj_bytes):
    _out.write(obj_bytes + b"\n")
    _out.flush()


def emit_json(obj):
    emit(json.dumps(obj, separators=(",", ":")).encode())


def make_listener(spec, block_gseq):
    lid = spec["id"]
    accept_all = spec.get("accept", "default") == "all"

    class Adapter(RealTimeEventListener):
        pass

    def make(pyname):
        cname = C_NAMES[pyname]

        async def cb(self, initiator, event):
            env = current_envelope.get()
            ev = env.event
            eid = ev.get("id")
            head = json.dumps({"listener": lid, "callback": cname, "topic": env.topic,
                               "gseq": env.gseq, "epoch": env.epoch,
                               "id": eid if type(eid) is str else None,
                               "context": event_listener_context.get()},
                              separators=(",", ":"), ensure_ascii=False)
            line = (b'{"handled":' + head[:-1].encode("utf-8", "surrogateescape")
                    + b',"event":' + canonical(ev) + b"}}")
            emit(line)
            if block_gseq is not None and env.gseq == block_gseq:
                emit_json({"blocked": env.gseq})
                await asyncio.Event().wait()  # forever: the runner kills us
        cb.__name__ = pyname
        return cb

    for pyname in C_NAMES:
        setattr(Adapter, pyname, make(pyname))
    if accept_all:
        async def accept(event, bot_info):
            return True
        Adapter.is_accepting_event = staticmethod(accept)
    return Adapter()


async def run(cfg):
    opts = {k: v for k, v in (cfg.get("options") or {}).items() if v is not None}
    for k in sorted(set(opts) - set(DEFAULTS) - set(ALIASES)):
        logging.warning("option %s is not known to dfconsumer: ignored", k)
        del opts[k]
    dl = DatafeedLoop(**opts)
    for b in cfg.get("bridges") or []:
        dl.connect(b["endpoint"], b.get("replay"))
    block = cfg.get("block_gseq")
    for spec in cfg.get("listeners") or []:
        dl.subscribe(make_listener(spec, block))
    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        aloop.add_signal_handler(sig, lambda: aloop.create_task(dl.stop()))
    emit_json({"ready": True})
    await dl.start()
    emit_json({"stats": dl.stats()})


def main():
    sys.setrecursionlimit(10000)  # canonical() recurses: msgpack nests up to 1024 deep
    logging.basicConfig(level=os.environ.get("DFC_LOG", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s - %(message)s")
    if len(sys.argv) != 2:
        sys.stderr.write("usage: conformance_adapter.py CONFIG.json\n")
        return 2
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    asyncio.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
