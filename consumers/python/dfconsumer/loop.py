"""dfconsumer.loop: DatafeedLoop, the API of the Python BDK's datafeed loop (subscribe,
unsubscribe, async start, async stop) over dfbridge's ZeroMQ feed, with
libdfconsumer's delivery (consumers/README.md "Delivery"): the last step of every
event (dedupe, group filter, watermark record, is_accepting_event, one asyncio task
per accepting listener), back-pressure, stop, counters. The port of dfc_loop.c and
dfc_dispatch.c."""

import asyncio
import logging
import os
import time

import zmq
import zmq.asyncio

from . import commands as commandsmod
from . import curve
from . import fill as fillmod
from . import metrics as metricsmod
from . import wire
from .dedupe import Dedupe
from .link import Link
from .listener import RealTimeEventListener, current_envelope, event_listener_context
from .models import EVENT_TYPES, MODELS, UserV2, V4Event, V4Initiator
from .partition import partition, partition_key
from .watermark import Watermarks

log = logging.getLogger("dfconsumer")

# The counters, in dfc_stats_t's order and with its names (consumers/include/dfconsumer.h).
STATS_FIELDS = (
    "listeners", "connects", "disconnects", "received", "dispatched", "completed", "skipped",
    "dropped_at_stop", "filtered", "dropped_malformed", "bad_frames", "oversize", "bad_msgpack",
    "not_map", "bad_version", "bad_envelope", "bad_event", "unknown_type", "reserved", "gaps",
    "heartbeats", "replayed", "gaps_filled", "lost", "duplicates", "not_mine", "reconnects",
    "auth_failures", "replay_requests", "replay_errors", "checkpoints", "lag_ms", "replay_stalls", "held_dropped",
    "alloc_failures", "checkpoint_errors", "queue_waits", "replay_unexpected", "replay_refused",
)

# The options, their C dfc_config_t names and defaults (0 in C means "default").
DEFAULTS = {
    "max_in_flight": 1024,   # tasks in flight (C: queue_size); more -> the reader waits
    "rcvhwm": 1000,
    "max_frame": 16 << 20,
    "ordering": "concurrent",
    "checkpoint_dir": None,
    "name": None,
    "checkpoint_ms": 1000,
    "group": None,
    "member": 0,
    "members": 0,
    "from_gseq": 0,
    "stale_ms": 0,
    "replay_timeout_ms": 5000,
    "dedupe_window": 65536,
    "max_held": 10000,
    "max_held_bytes": 64 << 20,  # bytes (as received) of the held events
    "replay_any_host": False,    # True: any replay endpoint a heartbeat names is used
    "workers": None,         # accepted for C configs; asyncio has no worker threads
    "zmq_ctx": None,
    "bot_id": None,          # the bot's user id for is_accepting_event; None: the envelope's bot
    "server_key": None,      # CURVE: the bridge's public key (40 Z85 chars) or its .key file
    "cert": None,            # CURVE: this consumer's .key_secret file (with server_key)
    "metrics": None,         # "host:port": serve /metrics (Prometheus) while start() runs
    "metrics_labels": None,  # constant labels of every sample: {"worker": "w1"}
    "commands": None,        # the bridge's bridge.commands endpoint: .messages/.streams/.users
    "commands_timeout_ms": 10000,  # per attempt (CommandClient timeout_ms)
    "commands_attempts": 3,  # sends of one request (same id) before CommandTimeout
}
ALIASES = {"queue_size": "max_in_flight"}

_KIND = {t[0]: i for i, t in enumerate(EVENT_TYPES)}
_PAYLOAD_KEY = [t[1] for t in EVENT_TYPES]
_PAYLOAD_CLS = [MODELS[t[2]] for t in EVENT_TYPES]
_METHODS = [t[3] for t in EVENT_TYPES] + ["on_unknown_event"]
_UNKNOWN = len(EVENT_TYPES)
_default_accept = RealTimeEventListener.is_accepting_event


def _sync_default_accept(event, bot_info):
    """RealTimeEventListener.is_accepting_event without a coroutine (same rule)."""
    try:
        uid = event.initiator.user.user_id
    except AttributeError:
        return False
    return type(uid) is int and wire.I64_MIN <= uid <= wire.I64_MAX and uid != bot_info.id


class _Rec:
    """A subscribed listener: its callbacks by kind (None when not overridden: no task,
    like a NULL callback in C) and whether it keeps the default filter."""
    __slots__ = ("listener", "methods", "default_filter", "removed", "lid")

    def __init__(self, listener, lid):
        self.listener = listener
        self.lid = lid  # the listener id of the default command ids, as C's lr->id
        self.removed = False
        base = RealTimeEventListener
        self.methods = []
        for name in _METHODS:
            m = getattr(listener, name, None)
            if m is None or getattr(m, "__func__", None) is getattr(base, name, None):
                m = None
            self.methods.append(m)
        f = getattr(type(listener), "is_accepting_event", None)
        self.default_filter = f is _default_accept and "is_accepting_event" not in getattr(
            listener, "__dict__", {})


class DatafeedLoop:
    """DatafeedLoop(endpoint, replay=None, **options): a datafeed loop on dfbridge's
    PUB endpoint (`replay`: its replay endpoint, else the one its heartbeats name).
    See consumers/python/README.md for the options and counters."""

    def __init__(self, endpoint=None, replay=None, **options):
        for k in list(options):
            if k in ALIASES:
                options[ALIASES[k]] = options.pop(k)
        bad = sorted(set(options) - set(DEFAULTS))
        if bad:
            raise TypeError(f"unknown option(s): {', '.join(bad)}")
        o = dict(DEFAULTS)
        o.update({k: v for k, v in options.items() if v is not None})
        self.options = o
        self.max_in_flight = int(o["max_in_flight"]) if o["max_in_flight"] > 0 else 1024
        self.rcvhwm = int(o["rcvhwm"]) if o["rcvhwm"] > 0 else 1000
        self.max_frame = int(o["max_frame"]) if o["max_frame"] > 0 else 16 << 20
        if o["ordering"] not in ("concurrent", "stream"):
            raise ValueError("ordering is 'concurrent' or 'stream'")
        self.stream_order = o["ordering"] == "stream"
        self.checkpoint_ms = int(o["checkpoint_ms"]) if o["checkpoint_ms"] > 0 else 1000
        self.replay_timeout_ms = (int(o["replay_timeout_ms"]) if o["replay_timeout_ms"] > 0
                                  else 5000)
        self.max_held = int(o["max_held"]) if o["max_held"] > 0 else 10000
        self.max_held_bytes = (int(o["max_held_bytes"]) if o["max_held_bytes"] > 0
                               else 64 << 20)
        self.replay_any_host = bool(o["replay_any_host"])
        self.stale_ms = int(o["stale_ms"])
        self.from_gseq = int(o["from_gseq"])
        self.member, self.members = int(o["member"]), int(o["members"])
        if self.members > 1 and not 0 <= self.member < self.members:
            raise ValueError(f"member {self.member} is not in 0..{self.members - 1}")
        grouped = bool(o["group"]) and self.members > 1
        path = None
        if o["checkpoint_dir"]:
            if grouped:
                name = f"{o['group']}-{self.member}-of-{self.members}"
            elif o["name"]:
                name = o["name"]
            else:
                raise ValueError("invalid argument: checkpoint_dir needs a name (or a group): "
                                 "the file is <checkpoint_dir>/<name>.ckpt")
            path = os.path.join(o["checkpoint_dir"], name + ".ckpt")
        self.curve = curve.load(o["server_key"], o["cert"])  # ValueError when invalid
        if o["metrics"] is not None:
            metricsmod.parse_address(o["metrics"])  # ValueError when invalid
        metricsmod.labels_text(o["metrics_labels"])  # likewise
        self.metrics_server = None  # the /metrics endpoint while start() runs
        dw = int(o["dedupe_window"])
        self.dedupe = Dedupe(dw if dw > 0 else 65536) if dw >= 0 else None
        self.counters = dict.fromkeys(STATS_FIELDS, 0)
        self.wm = Watermarks(path, self.checkpoint_ms, self.counters)
        self.gaps = {}
        self.links = []
        self._listeners = []
        self._out = []         # (envelope, track) handed out, waiting for dispatch
        self._out_head = 0
        self._inflight = 0
        self._tasks = set()
        self._chains = {}      # stream order: partition key -> its last task
        self._bot_infos = {}
        self._room = None
        self._stop_req = False
        self.stopping = False
        self.running = False
        self._aloop = None
        self._flush_lock = None
        self._hard_kill = False
        self._timeout = None
        self.bot_id = int(o["bot_id"]) if o["bot_id"] is not None else None
        self._next_lid = 0
        self.commands = None   # the CommandClient of the `commands` option
        if o["commands"]:
            self.commands = commandsmod.CommandClient(
                o["commands"], timeout_ms=int(o["commands_timeout_ms"]),
                attempts=int(o["commands_attempts"]), server_key=o["server_key"],
                cert=o["cert"], zmq_ctx=o["zmq_ctx"])
        self._own_ctx = o["zmq_ctx"] is None
        self.zctx = o["zmq_ctx"] if o["zmq_ctx"] is not None else None
        self._ckpt_next = 0
        if endpoint:
            self.connect(endpoint, replay)

    # ---------------------------------------------------------------- API

    def connect(self, endpoint, replay=None):
        """Adds a bridge (its PUB endpoint, and its replay endpoint or None to learn it
        from the heartbeats). Two calls = an HA pair: each bridge keeps its own epoch,
        gaps and replay; dedupe keeps one copy of each event. Allowed while running."""
        if not endpoint:
            raise ValueError("empty endpoint")
        L = Link(self, endpoint, replay)
        self.links.append(L)
        if self.running and not self.stopping:
            L.task = self._aloop.create_task(L.run(), name=f"dfconsumer-link-{len(self.links)}")
        return L

    @property
    def messages(self):
        """The BDK's MessageService (send_message, update_message, suppress_message,
        get_message) over the bridge's command channel (the `commands` option)."""
        return self._commands().messages

    @property
    def streams(self):
        """The BDK's StreamService (create_im, add_member_to_room, remove_member_from_room,
        get_stream) over the command channel."""
        return self._commands().streams

    @property
    def users(self):
        """The BDK's UserService (list_users_by_ids, _by_emails, _by_usernames) over the
        command channel."""
        return self._commands().users

    def _commands(self):
        if self.commands is None:
            raise RuntimeError("no command channel: give DatafeedLoop(..., "
                               "commands='tcp://<bridge>:5558') (the bridge's bridge.commands)")
        return self.commands

    def subscribe(self, listener):
        """Adds a listener (at any time, also from a callback). Its id in the default
        command ids is its `name` attribute when that is a non-empty str, else "L<n>",
        n counting the subscribe calls from 1 (as libdfconsumer)."""
        self._next_lid += 1
        name = getattr(listener, "name", None)
        lid = name if type(name) is str and name else f"L{self._next_lid}"
        self._listeners.append(_Rec(listener, lid))
        self.counters["listeners"] += 1

    def unsubscribe(self, listener):
        """Removes a listener: no new task starts for it (its tasks not started yet are
        skipped). Raises ValueError when it is not subscribed (like list.remove)."""
        for i, r in enumerate(self._listeners):
            if r.listener is listener:
                r.removed = True
                del self._listeners[i]
                self.counters["listeners"] -= 1
                return
        raise ValueError("listener not subscribed")

    def stats(self):
        """The counters, a dict with the names of libdfconsumer's dfc_stats_t."""
        return dict(self.counters)

    def stats_prometheus(self, labels=None):
        """The counters in the Prometheus text format (consumers/metrics.json's names);
        labels: constant labels (a dict), default the metrics_labels option."""
        return metricsmod.prometheus_text(
            self.stats(), self.options["metrics_labels"] if labels is None else labels)

    def request_stop(self):
        """Asks start() to return; callable from anywhere (a callback, another thread, a
        signal.signal handler). Sticky: a stop before start makes the next start return
        at once."""
        self._stop_req = True
        al = self._aloop
        if al is None or not self.running:
            return
        # Always through the loop's thread-safe queue: a signal.signal handler runs
        # between any two bytecodes of the loop thread (even inside asyncio's own
        # bookkeeping), so it must not touch events or tasks itself; asyncio's signal
        # handling does the same (append + a byte on the self-pipe).
        try:
            al.call_soon_threadsafe(self._do_stop)
        except RuntimeError:
            pass  # the loop is closed

    async def stop(self, hard_kill=False, timeout=None):
        """Stops the loop (the BDK's signature): start() returns after the tasks in
        flight ran (hard_kill: they are cancelled; timeout: waited for at most that many
        seconds). Works from a callback and from a signal handler (loop.add_signal_handler
        + create_task(datafeed_loop.stop()), or request_stop() from signal.signal)."""
        self._hard_kill = hard_kill
        self._timeout = timeout
        self.request_stop()

    async def start(self):
        """Runs until stop(): connects the bridges, reads, dispatches. Returns after the
        tasks in flight ran and the checkpoint was written."""
        if self.running:
            raise RuntimeError("the datafeed loop is already started")
        if self._stop_req:
            self._stop_req = False  # a stop that came before start: consume it
            return
        if self.options["metrics"] is not None:
            # OSError (address in use...) is raised from start(), before anything runs
            self.metrics_server = metricsmod.serve_metrics(self, self.options["metrics"],
                                                           self.options["metrics_labels"])
        self.running = True
        self.stopping = False
        self._aloop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self._stopped = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        if self._own_ctx:
            self.zctx = zmq.asyncio.Context()
        self.wm.restore()
        self._ckpt_next = fillmod.mono_ms() + self.checkpoint_ms
        try:
            for i, L in enumerate(self.links):
                L.task = self._aloop.create_task(L.run(), name=f"dfconsumer-link-{i + 1}")
            if self._stop_req:
                self._do_stop()
            await self._stopped.wait()
            for L in self.links:
                if L.task is not None:
                    try:
                        await L.task
                    except asyncio.CancelledError:
                        pass
                    except Exception:
                        log.exception("link %s failed", L.endpoint)
                    L.task = None
            for L in self.links:
                L.close_sub()
                L.fill.on(fillmod.EV_STOP)
            await self.flush()          # what was handed out: dispatched while there is room
            self._drop_pending()
            await self._wait_tasks()
            self.wm.save()              # every task ran: the final watermark
        finally:
            if self.commands is not None:
                self.commands.close()   # a later call (or start) opens it again
            for L in self.links:
                L.close_sub()
                L.fill.close_dealer()
            if self._own_ctx and self.zctx is not None:
                self.zctx.destroy(linger=0)  # closes anything left open, never blocks
                self.zctx = None
            self._stop_req = False
            self.running = False
            self.stopping = False
            if self.metrics_server is not None:
                self.metrics_server.close()
                self.metrics_server = None

    # ------------------------------------------------------------ internals

    def _do_stop(self):
        if not self.running or self.stopping:
            return
        self.stopping = True
        self._room.set()
        self._stopped.set()
        for L in self.links:
            if L.task is not None and L.polling:
                L.task.cancel()

    async def _wait_tasks(self):
        if self._hard_kill:
            for t in list(self._tasks):
                t.cancel()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                log.debug("task completion timed out")
                break
            await asyncio.wait(list(self._tasks), timeout=left)

    def drop_count(self, reason):
        self.counters[reason] += 1
        self.counters["dropped_malformed"] += 1

    def drop(self, reason, size):
        self.drop_count(reason)
        log.warning("dropped a message (%d bytes): %s", size, wire.REASON_TEXT[reason])

    def tick(self, now):
        if now >= self._ckpt_next:
            self.wm.save()
            self._ckpt_next = now + self.checkpoint_ms

    def deliver(self, env):
        """The last step for every event, live or replayed, in hand-out order: lag,
        dedupe, group filter, the watermark record; then it waits for dispatch."""
        st = self.counters
        ev = env.event
        wm = self.wm
        done = wm.path is not None and wm.is_done(env.epoch, env.gseq)
        dup = self.dedupe is not None and self.dedupe.seen(ev.get("id"), ev.get("type"))
        dup = dup or done
        mine = True
        if not dup and self.members > 1:
            mine = partition(partition_key(ev), self.members) == self.member
        now = time.time_ns() // 1_000_000
        st["lag_ms"] = now - env.ts if now > env.ts else 0
        if dup:
            st["duplicates"] += 1
        elif not mine:
            st["not_mine"] += 1
        trk = wm.track(env.epoch, env.gseq) if wm.path is not None else None
        if dup or not mine:
            if trk is not None:
                wm.release(trk)
            return
        self._out.append((env, trk))

    def pending_out(self):
        return len(self._out) > self._out_head

    async def flush(self):
        """Dispatches what was handed out, in order; one flusher at a time (a second
        reader waits here too: back-pressure holds every socket)."""
        async with self._flush_lock:
            out = self._out
            while self._out_head < len(out):
                env, trk = out[self._out_head]
                self._out_head += 1
                await self._dispatch(env, trk)
            out.clear()
            self._out_head = 0

    def _drop_pending(self):
        """At stop: events handed out but not dispatched (stop while full)."""
        n = len(self._listeners)
        for env, trk in self._out[self._out_head:]:
            self.counters["dropped_at_stop"] += n
            if trk is not None:
                trk.failed = True
                self.wm.release(trk)
        self._out.clear()
        self._out_head = 0

    def _bot_info(self, bot):
        b = self._bot_infos.get(bot)
        if b is None:
            if len(self._bot_infos) > 64:
                self._bot_infos.clear()
            b = self._bot_infos[bot] = UserV2({"id": bot})
        return b

    async def _dispatch(self, env, trk):
        """One task per accepting listener with a callback for this type, its
        is_accepting_event awaited here in subscription order (as the BDK does)."""
        st = self.counters
        ev = env.event
        kind = _KIND.get(env.topic, _UNKNOWN)
        if kind == _UNKNOWN:
            st["unknown_type"] += 1
        event = V4Event(ev)
        ini = ev.get("initiator")
        initiator = V4Initiator(ini if type(ini) is dict else {})
        if kind == _UNKNOWN:
            payload = event
        else:
            p = ev.get("payload")
            p = p.get(_PAYLOAD_KEY[kind]) if type(p) is dict else None
            payload = _PAYLOAD_CLS[kind](p if type(p) is dict else {})
        bot_info = self._bot_info(env.bot if self.bot_id is None else self.bot_id)
        key = None
        stopping = False
        for rec in list(self._listeners):
            if stopping:
                st["dropped_at_stop"] += 1
                continue
            if rec.removed:
                continue
            if rec.default_filter:
                accept = _sync_default_accept(event, bot_info)
            else:
                try:
                    accept = await rec.listener.is_accepting_event(event, bot_info)
                except Exception:
                    log.exception("is_accepting_event of %r failed: event not accepted",
                                  rec.listener)
                    accept = False
            if not accept:
                st["filtered"] += 1
                continue
            method = rec.methods[kind]
            if method is None or rec.removed:
                continue
            while self._inflight >= self.max_in_flight and not self.stopping:
                st["queue_waits"] += 1
                self._room.clear()
                await self._room.wait()
            if self._inflight >= self.max_in_flight:  # stop while full
                stopping = True
                st["dropped_at_stop"] += 1
                if trk is not None:
                    trk.failed = True
                continue
            prev = None
            if self.stream_order:
                if key is None:
                    key = partition_key(ev)
                prev = self._chains.get(key)
            if trk is not None:
                trk.pending += 1
            self._inflight += 1
            st["dispatched"] += 1
            t = self._aloop.create_task(self._job(rec, method, initiator, payload, event, env,
                                                  trk, prev, key))
            self._tasks.add(t)
            if self.stream_order:
                self._chains[key] = t
        if trk is not None:
            self.wm.release(trk)

    async def _job(self, rec, method, initiator, payload, event, env, trk, prev, key):
        task = asyncio.current_task()
        ran = False
        try:
            if prev is not None and not prev.done():
                try:
                    await asyncio.shield(prev)  # stream order: the stream's previous job
                except BaseException:
                    if not prev.done():
                        raise
            event_listener_context.set(
                f"{task.get_name()}/{event.get('id', 'None')}/{id(rec.listener)}")
            current_envelope.set(env)
            commandsmod.set_job(event.get("id"), rec.lid)  # the default command ids
            if rec.removed:
                return
            ran = True
            await method(initiator, payload)
        except asyncio.CancelledError:
            if trk is not None:
                trk.failed = True
            ran = False
            raise
        except Exception:
            log.exception("listener %r raised on %s (gseq %d)", rec.listener, env.topic,
                          env.gseq)
        finally:
            self.counters["completed" if ran else "skipped"] += 1
            self._inflight -= 1
            self._tasks.discard(task)
            if key is not None and self._chains.get(key) is task:
                del self._chains[key]
            if trk is not None:
                self.wm.release(trk)
            room = self._room
            if room is not None and not room.is_set():
                room.set()

