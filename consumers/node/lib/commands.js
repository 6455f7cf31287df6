'use strict';
// commands: the client of the bridge's command channel (schemas/CONTRACT.md
// "Commands"): one DEALER, requests matched to replies by id, resent with the
// SAME id after a timeout (the bridge runs a request once per id), `busy`
// retried after the delay the bridge suggests. The services with the BDK's
// method names (loop.messages, loop.streams, loop.users) are in services.js.

const crypto = require('crypto');
const zmq = require('zeromq');
const wire = require('./wire');
const curve = require('./curve');

const PROTOCOL_VERSION = 1;
const MAX_ID_BYTES = 128;
const DEFAULT_TIMEOUT_MS = 10000;
const DEFAULT_ATTEMPTS = 3;
const DEFAULT_MAX_REPLY = 64 << 20; // the largest reply accepted (a result is one Symphony answer)
const MIN_BUSY_WAIT_MS = 100;
const SEND_TIMEOUT_MS = 100; // the bridge's own floor for retry_after_ms
// The operations, in the contract's order (schemas/contract-v1.json "commands"; services.js
// calls them with the BDK's method names).
const OPS = ['messages.send', 'messages.update', 'messages.suppress', 'messages.get', 'streams.createIm',
  'rooms.addMember', 'rooms.removeMember', 'streams.info', 'users.lookup'];
// The codes of the protocol (D1), then the client's own: no reply in the budget, closed client.
const CODES = ['bad_request', 'not_allowed', 'rejected', 'unavailable', 'unknown_outcome', 'busy'];
const CLIENT_CODES = ['timeout', 'closed'];

/** The counters of a client (client.stats()). */
const STATS_FIELDS = ['calls', 'sent', 'resent', 'replies', 'unmatched', 'bad_replies', 'busy_retries',
  'timeouts', 'send_errors', 'auth_failures'];

/**
 * An error reply of the bridge (code one of CODES), or the client's own
 * 'timeout' (no reply after every attempt) or 'closed' (close() with the call
 * pending). status: Symphony's HTTP status for 'rejected', else 0;
 * retryAfterMs: for 'busy'; reply: the whole reply map (null for client codes).
 */
class CommandError extends Error {
  constructor(code, message, { status = 0, retryAfterMs = 0, reply = null, id = null, op = null } = {}) {
    super(message);
    this.name = 'CommandError';
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
    this.reply = reply;
    this.id = id;
    this.op = op;
  }
}

// ------------------------------------------------------------ default ids

// Set by loop.js: () => the job's store ({envelope, listener, ...}) or undefined.
let jobStore = () => undefined;
function setJobStore(fn) {
  jobStore = fn;
}

/**
 * Counts one call in the current listener job (every call, with an id or
 * without, valid or not, as the C and Python clients do, so that n does not
 * depend on them) and returns the job's default id for it:
 * "<event id>/<listener id>/<n>", n = 1, 2, ... (the listener id is its name,
 * or "L<k>" as in the C library); "" when the event has no string id; null
 * outside a job.
 */
function jobCall() {
  const s = jobStore();
  if (!s || !s.envelope || !s.listener) return null;
  s.commandSeq = (s.commandSeq || 0) + 1;
  const ev = s.envelope.event;
  return ev && typeof ev.id === 'string' ? `${ev.id}/${s.listener.id}/${s.commandSeq}` : '';
}

/**
 * The id of a call without one: inside a listener job the job's default id
 * (jobCall), so that a redelivered event handled again (by this worker or
 * another, in C, Python or Node) makes the same ids and the bridge answers with
 * the recorded outcome instead of calling Symphony twice; outside a job, or
 * when that id would be empty or invalid (an event without id, a listener name
 * too long), a random UUID v4 (with a warning in a job).
 */
function defaultId(log = () => {}, op = '') {
  const j = jobCall();
  if (j === null) return crypto.randomUUID();
  if (idProblem(j) !== null) {
    log('warn', `command ${op}: this job's default id would be empty, longer than ${MAX_ID_BYTES} bytes or not valid: ` +
      'a random id is used instead (give an explicit id for exactly-once across redeliveries)');
    return crypto.randomUUID();
  }
  return j;
}

/** Why id cannot be a request id (null when it can): 1..128 bytes of UTF-8, no control
    character (U+0000..U+001F, U+007F), as the contract says. */
function idProblem(id) {
  if (typeof id !== 'string' || id.length === 0) return 'id: a non-empty string';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(id)) return 'id: no control characters';
  if (Buffer.from(id, 'utf8').toString('utf8') !== id) return 'id: not valid UTF-16 (a lone surrogate)';
  const n = Buffer.byteLength(id, 'utf8');
  if (n > MAX_ID_BYTES) return `id: ${n} bytes, at most ${MAX_ID_BYTES}: ${JSON.stringify(id.slice(0, 40))}...`;
  return null;
}

/** Throws TypeError unless id is a valid request id. */
function checkId(id) {
  const p = idProblem(id);
  if (p !== null) throw new TypeError(p);
}

// ------------------------------------------------------------ the wire

/** The request frame: {v, id, op, args} in this order. */
function encodeRequest(id, op, args) {
  // wire.encode writes each integer in its shortest form: the bridge fingerprints the
  // args' bytes as they come, and C and Python clients write them so
  return wire.encode({ v: PROTOCOL_VERSION, id, op, args });
}

/**
 * Checks one reply frame (D1): a map {v: 1, id: str, ok: bool, result | error
 * {code, message, status?, retry_after_ms?}, replayed: bool, found: bool}.
 * Returns the reply map, or a string saying what is wrong with it.
 */
function parseReply(frame) {
  let v;
  try {
    v = wire.decode(frame).value;
  } catch (e) {
    return `not msgpack (${e.message})`;
  }
  if (!wire.isMap(v)) return 'not a map';
  if (wire.asUint(v.v) !== PROTOCOL_VERSION) return `v: ${String(v.v)}`;
  if (typeof v.id !== 'string') return 'id: not a string';
  if (typeof v.ok !== 'boolean') return 'ok: not a bool';
  if (v.ok) {
    if (!('result' in v)) return 'ok without result';
  } else {
    const e = v.error;
    if (!wire.isMap(e) || typeof e.code !== 'string' || typeof e.message !== 'string') return 'error: not a map {code, message}';
    if (e.status !== undefined && wire.asUint(e.status) === undefined) return 'error.status: not an int';
    if (e.retry_after_ms !== undefined && wire.asUint(e.retry_after_ms) === undefined) return 'error.retry_after_ms: not an int';
  }
  for (const k of ['replayed', 'found']) if (v[k] !== undefined && typeof v[k] !== 'boolean') return `${k}: not a bool`;
  return v;
}

function errorOf(reply, op) {
  const e = reply.error;
  return new CommandError(e.code, e.message, {
    status: e.status === undefined ? 0 : wire.asUint(e.status),
    retryAfterMs: e.retry_after_ms === undefined ? 0 : wire.asUint(e.retry_after_ms),
    reply,
    id: reply.id,
    op,
  });
}

function intOption(o, name, dflt, min) {
  const v = o[name];
  if (v === undefined || v === null) return dflt;
  if (!Number.isInteger(v) || v < min) throw new TypeError(`option ${name}: an integer >= ${min}`);
  return v;
}

const OPTIONS = new Set(['endpoint', 'serverKey', 'cert', 'timeoutMs', 'attempts', 'maxReply', 'log', 'curveKeys']);

/**
 * new CommandClient({endpoint, serverKey?, cert?, timeoutMs?, attempts?, maxReply?}):
 * one DEALER connected to the bridge's `bridge.commands` endpoint. serverKey and
 * cert are the CURVE options of DatafeedLoop (same names and meaning). A call
 * waits timeoutMs (default 10000) for its reply, then sends the same request
 * (same id) again, `attempts` times in all (default 3) before failing with
 * code 'timeout'; the whole budget, busy retries included, is timeoutMs x
 * attempts. Calls from any number of async tasks may be in flight at once.
 */
class CommandClient {
  constructor(options = {}) {
    if (typeof options === 'string') options = { endpoint: options };
    for (const k of Object.keys(options)) if (!OPTIONS.has(k)) throw new TypeError(`unknown option ${k}`);
    if (typeof options.endpoint !== 'string' || !options.endpoint) throw new TypeError('option endpoint: the bridge.commands endpoint, e.g. tcp://127.0.0.1:5558');
    this.endpoint = options.endpoint;
    this.timeoutMs = intOption(options, 'timeoutMs', DEFAULT_TIMEOUT_MS, 1);
    this.attempts = intOption(options, 'attempts', DEFAULT_ATTEMPTS, 1);
    this.maxReply = intOption(options, 'maxReply', DEFAULT_MAX_REPLY, 1024);
    this._log = typeof options.log === 'function' ? options.log : () => {};
    // curveKeys: keys already loaded (the loop's): not documented
    this._curve = options.curveKeys || curve.load(options.serverKey, options.cert);
    this.stat = Object.fromEntries(STATS_FIELDS.map((f) => [f, 0]));
    this._pending = new Map(); // id -> call
    this._sock = null;
    this._sending = Promise.resolve();
    this._closed = false;
    this._stopping = false; // for curve.watchDealer
  }

  /** The counters (STATS_FIELDS). */
  stats() {
    return { ...this.stat };
  }

  /** Requests whose reply is awaited. */
  get pending() {
    return this._pending.size;
  }

  _open() {
    if (this._sock) return this._sock;
    const d = new zmq.Dealer({
      linger: 0,
      // replies of ours only, each at most maxReply: a bigger frame is a broken
      // or hostile peer (libzmq drops the connection; the call is resent later)
      maxMessageSize: this.maxReply,
      // a send waits at most this long for room in the pipe (1000 messages: a bridge down or
      // slow); then it fails (send_errors) and the call sends again after its timeout
      sendTimeout: SEND_TIMEOUT_MS,
      ...curve.socketOptions(this._curve),
    });
    if (this._curve) {
      // `loop`-like for the handshake watcher: its counter and its log
      const self = this;
      const shim = { stat: this.stat, log: (level, msg) => this._log(level, msg), get _stopping() { return self._closed; } };
      const hs = new curve.Handshakes(shim, `commands ${this.endpoint}`);
      curve.watchDealer(shim, hs, d, this.endpoint, () => this._sock === d);
    }
    d.connect(this.endpoint);
    this._sock = d;
    this._read(d);
    return d;
  }

  async _read(d) {
    while (!this._closed && this._sock === d) {
      let frames;
      try {
        frames = await d.receive(); // the one receive in flight on this socket
      } catch (e) {
        if (this._closed || d.closed) return;
        this._log('error', `commands ${this.endpoint}: receive: ${e.message}`);
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      try {
        this._onFrames(frames);
      } catch (e) { // a bug here must not end the reader (every later call would time out)
        this._log('error', `commands ${this.endpoint}: internal error on a reply (dropped): ${e.stack || e}`);
      }
    }
  }

  _onFrames(frames) {
    // one frame; an empty delimiter first is tolerated (a REQ-style peer's form)
    const f = frames.length === 2 && frames[0].length === 0 ? frames.slice(1) : frames;
    if (f.length !== 1) {
      this.stat.bad_replies++;
      this._log('warn', `commands ${this.endpoint}: a reply of ${frames.length} frames dropped`);
      return;
    }
    const r = parseReply(f[0]);
    if (typeof r === 'string') {
      this.stat.bad_replies++;
      this._log('warn', `commands ${this.endpoint}: a malformed reply dropped (${r})`);
      return;
    }
    const call = this._pending.get(r.id);
    if (!call) {
      // a late reply to a call already answered (the answer to an earlier send),
      // timed out or closed, or someone else's: nobody waits for it
      this.stat.unmatched++;
      this._log('debug', `commands ${this.endpoint}: a reply for id ${JSON.stringify(r.id)} matches no call (dropped)`);
      return;
    }
    this.stat.replies++;
    if (!r.ok && r.error.code === 'busy') {
      const wait = Math.max(MIN_BUSY_WAIT_MS, wire.asUint(r.error.retry_after_ms) || 0);
      if (performance.now() + wait < call.deadline) {
        this.stat.busy_retries++;
        clearTimeout(call.timer);
        call.timer = setTimeout(() => this._send(call, true), wait);
        return;
      }
    }
    this._settle(call, r, null);
  }

  _settle(call, reply, err) {
    clearTimeout(call.timer);
    this._pending.delete(call.id);
    if (err) call.reject(err);
    else call.resolve(reply);
  }

  _send(call, again) {
    if (this._closed || this._pending.get(call.id) !== call) return;
    let d;
    try {
      d = this._open();
    } catch (e) {
      this._settle(call, null, new CommandError('closed', `commands ${this.endpoint}: ${e.message}`, { id: call.id, op: call.op }));
      return;
    }
    call.sends++;
    if (again) this.stat.resent++;
    this.stat.sent++;
    clearTimeout(call.timer);
    call.timer = setTimeout(() => this._timedOut(call), this.timeoutMs);
    // zeromq.js allows one send in flight per socket: sends go in a chain. A send
    // that fails (closed, HWM past sendTimeout) is an attempt without answer.
    // A send whose call was answered, or sent again meanwhile, is skipped.
    const attempt = call.sends;
    this._sending = this._sending.then(() => (this._sock === d && !this._closed && this._pending.get(call.id) === call &&
      call.sends === attempt ? d.send(call.frame) : undefined))
      .catch((e) => {
        if (this._closed) return;
        this.stat.send_errors++;
        this._log('warn', `commands ${this.endpoint}: send of ${JSON.stringify(call.id)}: ${e.message}`);
      });
  }

  _timedOut(call) {
    if (this._pending.get(call.id) !== call) return;
    this.stat.timeouts++;
    if (call.sends < this.attempts && performance.now() < call.deadline) {
      this._log('warn', `commands ${this.endpoint}: no reply to ${call.op} ${JSON.stringify(call.id)} in ${this.timeoutMs} ms: sent again (same id)`);
      this._send(call, true);
      return;
    }
    this._settle(call, null, new CommandError('timeout',
      `no reply from ${this.endpoint} to ${call.op} ${JSON.stringify(call.id)} after ${call.sends} attempt(s) of ${this.timeoutMs} ms`,
      { id: call.id, op: call.op }));
  }

  /**
   * Sends one request and resolves to the bridge's reply map as it came
   * ({v, id, ok, result | error, replayed, found}), an error reply included;
   * rejects only with the client's codes ('timeout', 'closed'), or a TypeError
   * for a bad op/args/id. options.id: the idempotency key (default: defaultId()).
   */
  request(op, args = {}, options = {}) {
    const given = options && options.id !== undefined && options.id !== null;
    // counted first in the job (as the C and Python clients): n does not depend on what follows
    const id = given ? (jobCall(), options.id) : defaultId(this._log, op);
    if (typeof op !== 'string' || !op) return Promise.reject(new TypeError('op: a string such as "messages.send"'));
    if (!wire.isMap(args)) return Promise.reject(new TypeError('args: an object'));
    let frame;
    try {
      checkId(id);
      frame = encodeRequest(id, op, args);
    } catch (e) {
      return Promise.reject(e instanceof TypeError ? e : new TypeError(`args: ${e.message}`));
    }
    if (this._closed) return Promise.reject(new CommandError('closed', 'the command client is closed', { id, op }));
    if (this._pending.has(id)) {
      // its reply could not be told apart from the other call's
      return Promise.reject(new TypeError(`id ${JSON.stringify(id)} is already in flight on this client`));
    }
    this.stat.calls++;
    return new Promise((resolve, reject) => {
      const call = {
        id, op, frame, resolve, reject, sends: 0, timer: null,
        deadline: performance.now() + this.timeoutMs * this.attempts,
      };
      this._pending.set(id, call);
      this._send(call, false);
    });
  }

  /**
   * Runs one operation: resolves to its result (the Symphony answer as a plain
   * object, camelCase as on the wire; null when Symphony answered 204), or
   * rejects with a CommandError (code, message, status, reply).
   */
  async call(op, args = {}, options = {}) {
    const r = await this.request(op, args, options);
    if (!r.ok) throw errorOf(r, op);
    return r.result === undefined ? null : r.result;
  }

  /** Closes the socket; calls still waiting reject with code 'closed'. Idempotent. */
  close() {
    if (this._closed) return;
    this._closed = true;
    for (const call of [...this._pending.values()]) {
      this._settle(call, null, new CommandError('closed', `the command client was closed before ${call.op} ${JSON.stringify(call.id)} got a reply`,
        { id: call.id, op: call.op }));
    }
    if (this._sock) {
      try { this._sock.close(); } catch (_) { /* already closed */ }
      this._sock = null;
    }
  }
}

module.exports = {
  CommandClient, CommandError, OPS, CODES, CLIENT_CODES, STATS_FIELDS, PROTOCOL_VERSION, MAX_ID_BYTES,
  defaultId, jobCall, checkId, idProblem, encodeRequest, parseReply, setJobStore,
};
