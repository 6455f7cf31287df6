"""dfconsumer.commands: CommandClient, the client of dfbridge's command channel
(schemas/CONTRACT.md "Commands"): one DEALER, replies matched to calls by id, the SAME
request sent again after a timeout, `busy` retried, and the default ids that make a
redelivered event's calls get the bridge's recorded outcome instead of a second post."""

import asyncio
import logging
import time
import uuid
from contextvars import ContextVar

import msgpack
import zmq
import zmq.asyncio

from . import curve
from . import wire

log = logging.getLogger("dfconsumer")

PROTOCOL_VERSION = 1
ID_MAX_BYTES = 128

# The operations and the error codes of the protocol (schemas/CONTRACT.md "Commands").
OPS = ("messages.send", "messages.update", "messages.suppress", "messages.get",
       "streams.createIm", "rooms.addMember", "rooms.removeMember", "streams.info",
       "users.lookup")
ERROR_CODES = ("bad_request", "not_allowed", "rejected", "unavailable", "unknown_outcome",
               "busy")

# The client's counters (CommandClient.stats()).
CLIENT_STATS = (
    "calls",          # call() invocations that sent a request
    "sent",           # request frames sent, first sends and resends
    "resent",         # sends of a request again after a timeout or a busy reply (same id)
    "timeouts",       # attempts that got no reply in time
    "busy_retries",   # busy replies waited out and retried
    "replies",        # replies matched to a waiting call
    "unmatched",      # replies whose id no call waits for (late, duplicate): dropped
    "bad_replies",    # frames that are not a reply (bad msgpack, not a map, no id/ok): dropped
    "auth_failures",  # CURVE handshakes refused or failed
)

BUSY_MIN_WAIT_MS = 100  # a busy reply without a usable retry_after_ms waits this long


# ---------------------------------------------------------------- errors

class CommandError(Exception):
    """A call that did not succeed. code: one of ERROR_CODES (the bridge's answer), or
    "timeout" / "closed" (decided by the client); message: human-readable; status: the
    Symphony HTTP status for "rejected", else None; reply: the whole reply map (None when
    no reply came). Catch the subclasses to handle one case."""

    code = None

    def __init__(self, code, message, status=None, reply=None):
        text = f"{code}: {message}" if message else str(code)
        if status is not None:
            text += f" (HTTP {status})"
        super().__init__(text)
        self.code = code
        self.message = message
        self.status = status
        self.reply = reply

    @property
    def retry_after_ms(self):
        """For busy: the bridge's hint (ms), else None."""
        e = self.reply.get("error") if isinstance(self.reply, dict) else None
        v = e.get("retry_after_ms") if isinstance(e, dict) else None
        return v if type(v) is int else None


class BadRequest(CommandError):
    """bad_request: the request was malformed, or its id was used for another request.
    Nothing was sent to Symphony."""
    code = "bad_request"


class NotAllowed(CommandError):
    """not_allowed: this client's certificate may not call the operation
    (bridge.commandsAllow). Nothing was sent."""
    code = "not_allowed"


class Rejected(CommandError):
    """rejected: Symphony answered 4xx (status); message is Symphony's. Nothing was sent
    or changed (Symphony's 40X rule)."""
    code = "rejected"


class Unavailable(CommandError):
    """unavailable: the bridge could not make the call (retries exhausted, re-login failed,
    stopping). The message was not posted."""
    code = "unavailable"


class UnknownOutcome(CommandError):
    """unknown_outcome: a create/update may have been committed and Symphony could not be
    asked. Calling again with the same id later lets the bridge settle it."""
    code = "unknown_outcome"


class Busy(CommandError):
    """busy: the bridge's queue stayed full for the whole budget of the call. Nothing was
    sent; calling again with the same id is correct."""
    code = "busy"


class CommandTimeout(CommandError, TimeoutError):
    """timeout: no reply after `attempts` sends of the request (same id), each waited
    `timeout`. The outcome is unknown to the client: call again with the same id (the
    bridge replies with the recorded outcome, or finishes the call once)."""
    code = "timeout"


class ClientClosed(CommandError):
    """closed: the client was closed while the call waited."""
    code = "closed"


ERRORS = {c.code: c for c in (BadRequest, NotAllowed, Rejected, Unavailable, UnknownOutcome,
                              Busy, CommandTimeout, ClientClosed)}


def error_from_reply(reply):
    """The CommandError (subclass by code) for a reply with ok false."""
    e = reply.get("error")
    if not isinstance(e, dict):
        e = {}
    code = e.get("code") if isinstance(e.get("code"), str) else "unknown"
    msg = e.get("message") if isinstance(e.get("message"), str) else ""
    status = e.get("status") if type(e.get("status")) is int else None
    return ERRORS.get(code, CommandError)(code, msg, status, reply)


# ---------------------------------------------------------------- ids

class _JobIds:
    """The default ids of one listener job: "<event id>/<listener id>/<n>"."""
    __slots__ = ("prefix", "n")

    def __init__(self, prefix):
        self.prefix = prefix
        self.n = 0


# Set by DatafeedLoop for each listener job (a task per event and listener); the tasks a
# callback starts inherit it, so their calls count on in the same job.
_job_ids = ContextVar("dfconsumer_command_job", default=None)


def set_job(event_id, listener_id):
    """Starts the default ids of a listener job (called by the loop in the job's task).
    An event without a string id gets random ids."""
    _job_ids.set(_JobIds(f"{event_id}/{listener_id}" if type(event_id) is str else None))


def id_problem(cid):
    """Why cid cannot be a request id (None when it can): a str of 1..128 UTF-8 bytes
    without control characters."""
    if not isinstance(cid, str):
        return f"id must be a str, not {type(cid).__name__}"
    try:
        n = len(cid.encode("utf-8"))
    except UnicodeEncodeError:
        return "id is not valid UTF-8 (lone surrogates)"
    if not 1 <= n <= ID_MAX_BYTES:
        return f"id must be 1..{ID_MAX_BYTES} bytes of UTF-8, not {n}"
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in cid):
        return "id contains a control character"
    return None


def _job_call():
    """Counts one call in the current listener job (every call, with or without an id,
    valid or not, as libdfconsumer) and returns the job's default id for it; None outside
    a job, "" when the job's event has no id."""
    j = _job_ids.get()
    if j is None:
        return None
    j.n += 1
    return "" if j.prefix is None else f"{j.prefix}/{j.n}"


def _default_id(job_id, op):
    if job_id is None:
        return str(uuid.uuid4())
    if not job_id or id_problem(job_id) is not None:
        log.warning("command %s: this job's default id would be empty, longer than %d bytes or "
                    "not valid: a random id is used instead (give an explicit id for "
                    "exactly-once across redeliveries)", op, ID_MAX_BYTES)
        return str(uuid.uuid4())
    return job_id


def next_default_id():
    """The id a call without one gets (and counts the call in the job): inside a listener
    job "<event id>/<listener id>/<n>", n = 1, 2, ... counting the job's calls in the order
    they are made; outside a job, or when the job's id would not be valid (an event without
    id, over 128 bytes, control characters), a random UUID4. The same rule as
    libdfconsumer's dfc_client, so a redelivered event handled again, by this worker or
    another (C, Python or Node), makes the same ids."""
    return _default_id(_job_call(), "?")


_packer = msgpack.Packer(use_bin_type=True)


def encode_request(cid, op, args):
    """The request frame: the map {v, id, op, args} in that order. bytes/bytearray become
    msgpack bin, str becomes str, ints stay exact. TypeError for values msgpack cannot
    encode."""
    return _packer.pack({"v": PROTOCOL_VERSION, "id": cid, "op": op, "args": args})


def decode_reply(frame):
    """The reply map of one frame, or None when it is not a reply (bad msgpack, not a
    map, no str id, no bool ok)."""
    try:
        r = wire.decode(frame)
    except Exception:
        return None
    if type(r) is not dict or type(r.get("id")) is not str or type(r.get("ok")) is not bool:
        return None
    return r


# ---------------------------------------------------------------- client

class CommandClient:
    """CommandClient(endpoint, timeout_ms=10000, attempts=3, server_key=None, cert=None,
    zmq_ctx=None): a client of dfbridge's command channel (bridge.commands).

    `await call(op, args, id=None, timeout=None, attempts=None)` sends the request and
    returns the reply's result (a dict, or None), or raises a CommandError subclass.
    Without a reply after `timeout` (seconds; default timeout_ms) the SAME request (same
    id) is sent again, `attempts` sends in all, then CommandTimeout. A busy reply is
    waited out (its retry_after_ms) and retried while the call's budget
    (attempts x timeout from its start) lasts, then Busy.

    One client per asyncio event loop: its socket belongs to the loop of its first call
    (another loop gets RuntimeError); use it from that loop's thread only. Any number of
    concurrent calls on that loop; two calls in flight with the same id are refused
    (ValueError). server_key / cert: CURVE, as DatafeedLoop's options."""

    def __init__(self, endpoint, *, timeout_ms=10000, attempts=3, server_key=None, cert=None,
                 zmq_ctx=None):
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError("endpoint: the bridge's bridge.commands endpoint, e.g. "
                             "tcp://127.0.0.1:5558")
        if type(timeout_ms) is not int or timeout_ms <= 0:
            raise ValueError("timeout_ms must be a positive int")
        if type(attempts) is not int or attempts < 1:
            raise ValueError("attempts must be an int >= 1")
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.attempts = attempts
        self.curve = curve.load(server_key, cert)  # ValueError when invalid
        self._zctx_given = zmq_ctx
        self.counters = dict.fromkeys(CLIENT_STATS, 0)
        self._ctx = None
        self._sock = None
        self._loop = None
        self._reader = None
        self._watch = None
        self._waiters = {}     # id -> the future of the call waiting for its reply
        self._gen = 0          # bumped by close(): a call that slept notices it
        self._services = None

    # ------------------------------------------------------------ API

    def stats(self):
        """The counters (CLIENT_STATS), a dict."""
        return dict(self.counters)

    @property
    def messages(self):
        """The MessageService over this client (BDK names)."""
        return self._service(0)

    @property
    def streams(self):
        """The StreamService over this client (BDK names)."""
        return self._service(1)

    @property
    def users(self):
        """The UserService over this client (BDK names)."""
        return self._service(2)

    def _service(self, i):
        if self._services is None:
            from .services import MessageService, StreamService, UserService
            self._services = (MessageService(self), StreamService(self), UserService(self))
        return self._services[i]

    async def call(self, op, args=None, id=None, timeout=None, attempts=None):
        """Sends the request {v: 1, id, op, args} and returns the reply's `result` (the
        Symphony answer converted 1:1: dicts, lists, exact ints; None for 204). id: the
        idempotency key; None -> the default id (see next_default_id). Raises
        CommandError subclasses (the reply's error, CommandTimeout, ClientClosed),
        ValueError for an invalid id, TypeError for args msgpack cannot encode. A
        cancelled call stops waiting; its reply, if one comes, is dropped (unmatched); a
        request the bridge received is still made (the same id again gets its outcome)."""
        reply = await self.call_reply(op, args, id, timeout, attempts)
        if reply["ok"]:
            return reply.get("result")
        raise error_from_reply(reply)

    async def call_reply(self, op, args=None, id=None, timeout=None, attempts=None):
        """As call(), but returns the whole reply map, ok or not (v, id, ok, result or
        error, replayed, found): for code that wants `replayed`/`found`. Busy is retried
        as by call() (the last busy reply is returned when the budget is spent);
        CommandTimeout and ClientClosed are still raised."""
        job_id = _job_call()  # first: a job's n does not depend on this call's validity
        if not isinstance(op, str) or not op:
            raise TypeError("op must be a non-empty str (one of dfconsumer.commands.OPS)")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise TypeError("args must be a dict")
        cid = _default_id(job_id, op) if id is None else id
        why = id_problem(cid)
        if why is not None:
            raise ValueError(why)
        per = self.timeout_ms / 1000 if timeout is None else float(timeout)
        if not per > 0:
            raise ValueError("timeout must be > 0 (seconds)")
        n_attempts = self.attempts if attempts is None else int(attempts)
        if n_attempts < 1:
            raise ValueError("attempts must be >= 1")
        frame = encode_request(cid, op, args)  # TypeError before anything is sent
        aloop = self._open()
        if cid in self._waiters:
            raise ValueError(f"id {cid!r} is already in flight in this client")
        self.counters["calls"] += 1
        gen = self._gen
        deadline = time.monotonic() + n_attempts * per
        fut = aloop.create_future()
        self._waiters[cid] = fut
        sends = timeouts = 0
        try:
            while True:
                if gen != self._gen:
                    raise ClientClosed("closed", "the client was closed")
                await self._send(frame, sends, per)
                sends += 1
                try:
                    reply = await asyncio.wait_for(asyncio.shield(fut), per)
                except asyncio.TimeoutError:
                    self.counters["timeouts"] += 1
                    timeouts += 1
                    if timeouts >= n_attempts:
                        raise CommandTimeout(
                            "timeout", f"no reply from {self.endpoint} to {op} id {cid!r} after "
                            f"{sends} send(s) of {per:g} s") from None
                    continue
                if reply["ok"]:
                    return reply
                err = error_from_reply(reply)
                if err.code != "busy":
                    return reply
                wait = err.retry_after_ms
                wait = max(wait if wait is not None else 0, BUSY_MIN_WAIT_MS) / 1000
                if time.monotonic() + wait >= deadline:
                    return reply
                self.counters["busy_retries"] += 1
                fut = aloop.create_future()   # the next reply to this id is the next one
                self._waiters[cid] = fut
                await asyncio.sleep(wait)
        finally:
            if self._waiters.get(cid) is fut:
                del self._waiters[cid]

    def close(self):
        """Closes the socket; calls waiting fail with ClientClosed. The client can be used
        again (a new socket is made by the next call, in the loop that makes it)."""
        self._gen += 1
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(ClientClosed("closed", "the client was closed"))
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._ctx is not None and self._zctx_given is None:
            self._ctx.destroy(linger=0)
        self._ctx = None
        self._loop = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ internals

    def _open(self):
        aloop = asyncio.get_running_loop()
        if self._sock is not None:
            if aloop is not self._loop:
                raise RuntimeError("this CommandClient belongs to another event loop: make one "
                                   "client per loop")
            return aloop
        given = self._zctx_given
        if given is None:
            ctx = zmq.asyncio.Context()
        elif isinstance(given, zmq.asyncio.Context):
            ctx = given
        else:
            ctx = zmq.asyncio.Context.shadow(given.underlying)
        sock = ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            if self.curve is not None:
                self.curve.apply(sock)
            if self.curve is not None:
                self._watch = curve.DealerWatch(self.counters, sock, self.endpoint)
                self._watch.hs.what = f"commands {self.endpoint}"  # for the log lines
            sock.connect(self.endpoint)
        except zmq.ZMQError as e:
            sock.close(linger=0)
            if given is None:
                ctx.destroy(linger=0)
            raise ValueError(f"commands endpoint {self.endpoint}: {e}") from None
        self._ctx, self._sock, self._loop = ctx, sock, aloop
        self._reader = aloop.create_task(self._read(sock), name="dfconsumer-commands")
        return aloop

    async def _send(self, frame, sends, per):
        # Without ZMQ_IMMEDIATE the DEALER queues the frame while it (re)connects: a
        # bridge that restarts gets the resend. The wait is bounded by the attempt time.
        try:
            await asyncio.wait_for(self._sock.send(frame, copy=False), per)
        except asyncio.TimeoutError:
            return  # not even queued (HWM): counts as an attempt without a reply
        except zmq.ZMQError as e:
            if self._sock is None:
                raise ClientClosed("closed", "the client was closed") from None
            raise CommandError("closed", f"cannot send: {e}") from None
        self.counters["sent"] += 1
        if sends:
            self.counters["resent"] += 1

    async def _read(self, sock):
        """The reader: every reply to the future of the call waiting for its id."""
        raw = zmq.Socket.shadow(sock.underlying)  # plain reads, drained after each wake-up
        poller = zmq.asyncio.Poller()
        poller.register(sock, zmq.POLLIN)
        w = self._watch
        if w is not None and w.mon is not None:
            poller.register(w.mon, zmq.POLLIN)
        while True:
            try:
                ready = dict(await poller.poll(250 if w is not None else None))
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError:
                return  # closed
            if w is not None:
                now = time.monotonic_ns() // 1_000_000
                if w.mon is not None and w.mon in ready:
                    w.read(now)
                w.tick(now)
            if sock not in ready:
                continue
            for _ in range(256):
                try:
                    frames = raw.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError:
                    return
                try:
                    self._deliver(frames)
                except Exception:  # never let the reader die: calls would wait for nothing
                    self.counters["bad_replies"] += 1
                    log.exception("commands %s: a reply could not be handled", self.endpoint)

    def _deliver(self, frames):
        # a reply is one frame (we never send the REQ-style empty delimiter)
        reply = decode_reply(frames[-1]) if len(frames) == 1 else None
        if reply is None:
            self.counters["bad_replies"] += 1
            log.warning("commands %s: dropped a frame that is not a reply (%d part(s))",
                        self.endpoint, len(frames))
            return
        fut = self._waiters.get(reply["id"])
        if fut is None or fut.done():
            self.counters["unmatched"] += 1
            log.debug("commands %s: dropped a reply nobody waits for (id %r)", self.endpoint,
                      reply["id"])
            return
        self.counters["replies"] += 1
        fut.set_result(reply)
