'use strict';
// loop: the public API (DatafeedLoop: connect, subscribe, start, stop, stats,
// events) and the receiver: one async reader per socket (one receive() in
// flight each), the timer (staleness, replay deadlines, checkpoint), and the
// dispatch of every event to its listeners as tasks (dfc_loop.c, dfc_pool.c and
// dfc_dispatch.c of the C library, in one event loop instead of threads).

const { AsyncLocalStorage } = require('async_hooks');
const path = require('path');
const wire = require('./wire');
const curve = require('./curve');
const events = require('./events');
const { partitionKey, partition, fnvLimbs } = require('./partition');
const { Dedupe } = require('./dedupe');
const { Watermarks } = require('./watermark');
const { Link, linkReceive, openSub, closeSub, linkTimers } = require('./link');
const { fillOn, fillReceive, EV } = require('./fill');
const metrics = require('./metrics');
const commands = require('./commands');
const services = require('./services');

// The counters of dfc_stats_t, in its order, with the same names and meaning.
const STATS_FIELDS = [
  'listeners', 'connects', 'disconnects', 'received', 'dispatched', 'completed', 'skipped',
  'dropped_at_stop', 'filtered', 'dropped_malformed', 'bad_frames', 'oversize', 'bad_msgpack',
  'not_map', 'bad_version', 'bad_envelope', 'bad_event', 'unknown_type', 'reserved', 'gaps',
  'heartbeats', 'replayed', 'gaps_filled', 'lost', 'duplicates', 'not_mine', 'reconnects',
  'auth_failures', 'replay_requests', 'replay_errors', 'checkpoints', 'lag_ms', 'replay_stalls', 'held_dropped',
  'alloc_failures', 'checkpoint_errors', 'queue_waits', 'replay_unexpected', 'replay_refused',
];

const POLL_MS = 100;
const SKIPPED = Symbol('skipped'); // an events() task whose item was never taken
const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 };

/** The listener context, as the BDK's event_listener_context: inside a
    task its store is the string "<task>/<event id>/<listener id>". */
const eventListenerContext = new AsyncLocalStorage();
/** The rest of a task's context: {envelope, listener, loop}. */
const taskStorage = new AsyncLocalStorage();
commands.setJobStore(() => taskStorage.getStore()); // the default ids of command calls (lib/commands.js)

function listenerContext() {
  const s = eventListenerContext.getStore();
  return s === undefined ? 'main' : s;
}

function currentEnvelope() {
  const s = taskStorage.getStore();
  return s ? s.envelope : null;
}

let logLevel = LEVELS.info;
let logSink = (line) => process.stderr.write(line);

/** "<UTC time> <LEVEL> <context> - <message>" on stderr, as dfc_log. */
function log(level, msg) {
  if (LEVELS[level] < logLevel) return;
  logSink(`${new Date().toISOString()} ${level.toUpperCase()} ${listenerContext()} - ${msg}\n`);
}

function setLogLevel(level) {
  if (!(level in LEVELS)) throw new TypeError(`log level: one of ${Object.keys(LEVELS).join(', ')}`);
  logLevel = LEVELS[level];
}

function setLogSink(fn) {
  logSink = fn;
}

function intOption(o, name, dflt, { min = -Infinity } = {}) {
  const v = o[name];
  if (v === undefined || v === null) return dflt;
  if (!Number.isInteger(v) || v < min) throw new TypeError(`option ${name}: an integer >= ${min}`);
  return v;
}

const OPTIONS = new Set(['maxInFlight', 'queueSize', 'workers', 'rcvhwm', 'maxFrame', 'ordering', 'checkpointDir', 'name',
  'checkpointMs', 'group', 'member', 'members', 'fromGseq', 'staleMs', 'replayTimeoutMs', 'dedupeWindow', 'maxHeld',
  'maxHeldBytes', 'replayAnyHost', 'serverKey', 'cert', 'metrics', 'metricsLabels', 'commands', 'commandsTimeoutMs',
  'commandsAttempts']);

function config(o) {
  for (const k of Object.keys(o)) if (!OPTIONS.has(k)) throw new TypeError(`unknown option ${k}`);
  const cfg = {
    // as in Python: the C library's queue bound (queueSize) is the bound on callbacks in flight;
    // `workers` is accepted for C configs and ignored (no worker threads here)
    maxInFlight: intOption(o, 'maxInFlight', 0, { min: 0 }) || intOption(o, 'queueSize', 0, { min: 0 }) || 1024,
    rcvhwm: intOption(o, 'rcvhwm', 0, { min: 0 }) || 1000,
    maxFrame: intOption(o, 'maxFrame', 0, { min: 0 }) || wire.DEFAULT_MAX_FRAME,
    ordering: o.ordering === undefined ? 'concurrent' : o.ordering,
    checkpointMs: intOption(o, 'checkpointMs', 0) || 1000,
    member: intOption(o, 'member', 0),
    members: intOption(o, 'members', 0),
    group: o.group || null,
    fromGseq: intOption(o, 'fromGseq', 0, { min: 0 }),
    staleMs: intOption(o, 'staleMs', 0),
    replayTimeoutMs: intOption(o, 'replayTimeoutMs', 0) || 5000,
    dedupeWindow: intOption(o, 'dedupeWindow', 0),
    maxHeld: intOption(o, 'maxHeld', 0, { min: 0 }) || 10000,
    maxHeldBytes: intOption(o, 'maxHeldBytes', 0, { min: 0 }) || 64 * 2 ** 20,
    replayAnyHost: o.replayAnyHost === true,
    checkpointFile: null,
    curve: curve.load(o.serverKey, o.cert), // CURVE client keys or null (lib/curve.js)
    // 'host:port': serve /metrics (Prometheus) while start() runs; constant labels of every sample
    metrics: o.metrics === undefined || o.metrics === null ? null : o.metrics,
    metricsLabels: o.metricsLabels === undefined ? null : o.metricsLabels,
    // the bridge's command channel (bridge.commands): loop.messages, loop.streams, loop.users
    commands: o.commands === undefined || o.commands === null ? null : o.commands,
    commandsTimeoutMs: intOption(o, 'commandsTimeoutMs', 0, { min: 0 }) || undefined,
    commandsAttempts: intOption(o, 'commandsAttempts', 0, { min: 0 }) || undefined,
  };
  if (cfg.commands !== null && (typeof cfg.commands !== 'string' || !cfg.commands)) {
    throw new TypeError('option commands: the bridge.commands endpoint, e.g. tcp://127.0.0.1:5558');
  }
  if (cfg.metrics !== null) metrics.parseAddress(cfg.metrics); // TypeError when invalid
  metrics.labelsText(cfg.metricsLabels); // likewise
  if (cfg.ordering !== 'concurrent' && cfg.ordering !== 'stream') throw new TypeError("option ordering: 'concurrent' or 'stream'");
  if (cfg.checkpointMs < 0) cfg.checkpointMs = 1000;
  if (cfg.replayTimeoutMs < 0) cfg.replayTimeoutMs = 5000;
  if (cfg.fromGseq > wire.SEQ_MAX) throw new TypeError('option fromGseq: at most 2^53-1');
  if (cfg.maxFrame > 2 ** 31) throw new TypeError('option maxFrame: at most 2 GiB');
  const grouped = !!(cfg.group && cfg.members > 1);
  if (cfg.members > 1 && (cfg.member < 0 || cfg.member >= cfg.members)) {
    throw new TypeError(`option member: ${cfg.member} is not in 0..${cfg.members - 1}`);
  }
  if (o.checkpointDir) {
    if (!grouped && !o.name) {
      throw new TypeError('invalid argument: checkpointDir needs a name (or a group): the file is <checkpointDir>/<name>.ckpt');
    }
    const name = grouped ? `${cfg.group}-${cfg.member}-of-${cfg.members}` : String(o.name);
    cfg.checkpointFile = path.join(o.checkpointDir, `${name}.ckpt`);
  }
  return cfg;
}

/**
 * The datafeed loop: new DatafeedLoop(endpoint, replay?, options?) (endpoint
 * may be null: connect() later; replay may be left out: options second).
 */
class DatafeedLoop {
  constructor(endpoint = null, replay = null, options = undefined) {
    if (replay !== null && typeof replay === 'object' && options === undefined) {
      options = replay;
      replay = null;
    }
    this.cfg = config(options || {});
    this.log = log;
    this.stat = Object.fromEntries(STATS_FIELDS.map((f) => [f, 0]));
    this.links = [];
    this.gaps = new Map(); // epoch -> Map(topic -> last seq), for gaps (lib/link.js)
    this.gapEntries = 0;
    this.wm = new Watermarks(this.cfg.checkpointFile, log);
    this.dedupe = this.cfg.dedupeWindow >= 0 ? new Dedupe(this.cfg.dedupeWindow || 65536) : null;
    this._listeners = [];
    this._nextLid = 0;
    this._taskSeq = 0;
    this._inFlight = 0;
    this._roomWaiters = [];
    this._idleWaiters = [];
    this._streams = new Map();
    this._readers = new Set();
    this._running = false;
    this._stopping = false;
    this._stopReq = false;
    this._stopResolve = null;
    this._done = null;
    this._iterators = new Set();
    this.metricsServer = null; // the /metrics endpoint (a node:http server) while start() runs
    this._commands = null; // the CommandClient, made at first use (option commands)
    this.messages = new services.MessageService(() => this.commands);
    this.streams = new services.StreamService(() => this.commands);
    this.users = new services.UserService(() => this.commands);
    if (endpoint) this.connect(endpoint, replay);
  }

  /** The CommandClient of the option commands (opened at first use, closed when
      start() returns after its tasks ended, or by its close(); the next use opens
      a new one); Error without the option. */
  get commands() {
    if (this._commands && !this._commands._closed) return this._commands; // closed: a new one
    if (!this.cfg.commands) {
      throw new Error('this DatafeedLoop has no command channel: give it the option commands (the bridge.commands endpoint)');
    }
    this._commands = new commands.CommandClient({
      endpoint: this.cfg.commands,
      timeoutMs: this.cfg.commandsTimeoutMs,
      attempts: this.cfg.commandsAttempts,
      log: (level, msg) => log(level, msg),
      curveKeys: this.cfg.curve, // the loop's CURVE keys (serverKey, cert)
    });
    return this._commands;
  }

  _closeCommands() {
    if (this._commands) this._commands.close();
    this._commands = null;
  }

  /** Adds a bridge (and its replay endpoint; null = learnt from heartbeats);
      also while running. Each bridge gets its own SUB socket. */
  connect(endpoint, replay = null) {
    if (typeof endpoint !== 'string' || !endpoint) throw new TypeError('connect: an endpoint string');
    const L = new Link(endpoint, replay || null);
    this.links.push(L);
    if (this._running && !this._stopping) openSub(this, L);
  }

  /** Adds a listener (a RealTimeEventListener-like object); also from a callback. */
  subscribe(listener) {
    if (!listener || typeof listener !== 'object') throw new TypeError('subscribe: a listener object');
    this._nextLid++;
    const rec = {
      l: listener,
      id: typeof listener.name === 'string' && listener.name ? listener.name : `L${this._nextLid}`,
      running: 0,
      removed: false,
      idle: [],
    };
    this._listeners = [...this._listeners, rec];
    this.stat.listeners++;
  }

  /** Removes a listener: no new task starts for it (queued ones are skipped);
      resolves when none of its callbacks runs any more, except when called from
      one of its own callbacks (it would wait for itself). False if unknown. */
  async unsubscribe(listener) {
    const rec = this._listeners.find((r) => r.l === listener);
    if (!rec) return false;
    this._listeners = this._listeners.filter((r) => r !== rec);
    rec.removed = true;
    this.stat.listeners--;
    const s = taskStorage.getStore();
    if (s && s.listener === rec) return true;
    while (rec.running > 0) await new Promise((r) => rec.idle.push(r));
    return true;
  }

  stats() {
    return { ...this.stat };
  }

  /** The counters in the Prometheus text format (consumers/metrics.json's names);
      labels: constant labels ({worker: 'w1'}), default the metricsLabels option. */
  statsPrometheus(labels) {
    return metrics.prometheusText(this.stat, labels === undefined ? this.cfg.metricsLabels : labels);
  }

  /** Runs until stop(); resolves after every task in flight finished and the
      final checkpoint was written. Rejects when already running. */
  async start() {
    if (this._running) throw new Error('the datafeed loop is already started');
    if (this._stopReq) { // a stop that came before start: consume it
      this._stopReq = false;
      return;
    }
    this._running = true;
    this._stopping = false;
    let finish;
    this._done = new Promise((r) => { finish = r; });
    const stopped = new Promise((r) => { this._stopResolve = r; });
    try {
      // a listen error (address in use...) rejects start() before anything runs
      if (this.cfg.metrics !== null) {
        this.metricsServer = await metrics.serveMetrics(this, this.cfg.metrics, this.cfg.metricsLabels);
      }
      this.wm.restore();
      for (const L of this.links) openSub(this, L);
      let ckptNext = performance.now() + this.cfg.checkpointMs;
      const timer = setInterval(() => {
        const now = performance.now();
        for (const L of this.links) if (L.sub) linkTimers(this, L, now);
        if (now >= ckptNext) {
          this._save();
          ckptNext = now + this.cfg.checkpointMs;
        }
      }, POLL_MS);
      await stopped;
      clearInterval(timer);
      this._stopping = true;
      for (const L of this.links) {
        closeSub(L);
        fillOn(this, L, EV.STOP, 0, null);
      }
      this._wakeRoom(true);
      await Promise.allSettled([...this._readers]);
      for (const it of this._iterators) it._end();
      while (this._inFlight > 0) await new Promise((r) => this._idleWaiters.push(r));
      this._save(); // every task ran: the final watermark
    } finally {
      if (this.metricsServer) {
        await metrics.closeMetrics(this.metricsServer);
        this.metricsServer = null;
      }
      this._closeCommands(); // every task ended: no call is waiting any more
      this._running = false;
      this._stopping = false;
      this._stopResolve = null;
      finish();
    }
  }

  /** Asks start() to return and resolves when it did (at once when not
      running; a stop before start makes the next start return at once). Safe
      from a callback: it does not wait for that callback there. */
  stop() {
    if (!this._running) {
      this._stopReq = true;
      return Promise.resolve();
    }
    if (this._stopResolve) this._stopResolve();
    const s = taskStorage.getStore();
    if (s && s.loop === this) return Promise.resolve(); // awaiting it would wait for ourselves
    return this._done;
  }

  // ------------------------------------------------------------ receivers

  _reader(p) {
    this._readers.add(p);
    p.finally(() => this._readers.delete(p));
  }

  _readSub(L, sub) {
    this._reader(this._readLoop(sub, () => L.sub === sub, (frames) => linkReceive(this, L, frames)));
  }

  _readDealer(L, d) {
    this._reader(this._readLoop(d, () => L.fill.dealer === d, (frames) => fillReceive(this, L, frames)));
  }

  async _readLoop(sock, current, handle) {
    while (!this._stopping && current()) {
      let frames;
      try {
        frames = await sock.receive(); // the one receive in flight on this socket
      } catch (e) {
        if (this._stopping || !current() || sock.closed) return;
        this.log('error', `receive: ${e.message}`);
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      if (this._stopping || !current()) return;
      try {
        handle(frames);
      } catch (e) {
        this.log('error', `internal error on a message (dropped): ${e.stack || e}`);
      }
      if (this._inFlight >= this.cfg.maxInFlight) {
        // back-pressure: stop reading; the socket fills to rcvhwm, then the
        // bridge drops for us (a gap, filled later from replay)
        this.stat.queue_waits++;
        while (this._inFlight >= this.cfg.maxInFlight && !this._stopping) {
          await new Promise((r) => this._roomWaiters.push(r));
        }
      }
    }
  }

  _wakeRoom(all) {
    if (this._roomWaiters.length === 0) return;
    if (!all && this._inFlight >= this.cfg.maxInFlight) return;
    const w = this._roomWaiters;
    this._roomWaiters = [];
    for (const r of w) r();
  }

  _save() {
    const r = this.wm.save();
    if (r === 'saved') this.stat.checkpoints++;
    else if (r === 'failed') this.stat.checkpoint_errors++;
  }

  _dropCount(counter) {
    this.stat[counter]++;
    this.stat.dropped_malformed++;
  }

  _drop(counter, size, why) {
    this._dropCount(counter);
    this.log('warn', `dropped a message (${size} bytes): ${counter}${why ? ` (${why})` : ''}`);
  }

  // ------------------------------------------------------------ dispatch

  /** The last step for every event, live or replayed: lag, dedupe, group
      filter, then one task per accepting listener. */
  _deliver(ev) {
    const now = Date.now();
    this.stat.lag_ms = now > ev.ts ? now - ev.ts : 0;
    const e = ev.event;
    const done = this.wm.file !== null && this.wm.isDone(ev.epoch, ev.gseq);
    const dup = done || (this.dedupe !== null && this.dedupe.seen(e.id, e.type));
    let mine = true;
    if (!dup && this.cfg.members > 1) mine = partition(partitionKey(e), this.cfg.members) === this.cfg.member;
    if (dup) this.stat.duplicates++;
    else if (!mine) this.stat.not_mine++;
    const trk = this.wm.track(ev.epoch, ev.gseq);
    if (!dup && mine) this._dispatch(ev, trk);
    if (trk) this.wm.release(trk);
  }

  _dispatch(ev, trk) {
    const kind = events.kindOf(ev.topic);
    if (!kind) this.stat.unknown_type++;
    const e = ev.event;
    const cbName = kind ? kind.cb : events.UNKNOWN_CALLBACK;
    let botInfo = null;
    let initiator = null;
    let payload = null;
    let stream = null;
    const list = this._listeners;
    for (let i = 0; i < list.length; i++) {
      const rec = list[i];
      if (rec.removed) continue;
      const l = rec.l;
      let accept;
      try {
        if (typeof l.isAcceptingEvent === 'function') {
          if (botInfo === null) botInfo = { id: ev.bot };
          accept = !!l.isAcceptingEvent(e, botInfo);
        } else {
          const id = events.userIdOf(events.initiatorOf(e));
          accept = id !== null && id !== ev.bot;
        }
      } catch (err) {
        this.log('error', `listener ${rec.id}: isAcceptingEvent threw (event not accepted): ${err && err.stack ? err.stack : err}`);
        accept = false;
      }
      if (!accept) {
        this.stat.filtered++;
        continue;
      }
      const fn = l[cbName];
      if (typeof fn !== 'function' || rec.removed) continue;
      if (initiator === null) {
        initiator = events.initiatorOf(e);
        payload = kind ? events.payloadOf(e, kind) : e;
      }
      const task = { rec, fn, a: initiator, b: payload, ev, trk };
      this._inFlight++;
      this.stat.dispatched++;
      if (trk) trk.pending++;
      if (this.cfg.ordering === 'stream') {
        if (stream === null) stream = this._streamOf(e);
        stream.q.push(task);
        if (!stream.running) this._pump(stream);
      } else {
        this._run(task, null);
      }
    }
  }

  _streamOf(e) {
    const key = partitionKey(e);
    let s = this._streams.get(key);
    if (!s) {
      s = { key, q: [], head: 0, running: false };
      this._streams.set(key, s);
    }
    return s;
  }

  _pump(s) {
    while (s.head < s.q.length) {
      const t = s.q[s.head];
      s.q[s.head++] = undefined;
      if (t.rec.removed) {
        this.stat.skipped++;
        this._finish(t, false);
        continue;
      }
      s.running = true;
      if (this._run(t, s)) return; // async: its end pumps again
      s.running = false;
    }
    s.q = [];
    s.head = 0;
    s.running = false;
    this._streams.delete(s.key);
  }

  /** Runs one task; true when it went async (finish comes later). */
  _run(t, stream) {
    const rec = t.rec;
    rec.running++;
    const ev = t.ev;
    const id = typeof ev.event.id === 'string' ? ev.event.id : 'None';
    const store = { context: `task-${++this._taskSeq}/${id}/${rec.id}`, envelope: ev, listener: rec, loop: this };
    let r;
    try {
      r = taskStorage.run(store, () => eventListenerContext.run(store.context, () => t.fn.call(rec.l, t.a, t.b)));
    } catch (err) {
      this._failed(store, err);
      r = undefined;
    }
    if (r !== null && r !== undefined && typeof r.then === 'function') {
      r.then((v) => this._end(t, stream, v === SKIPPED), (err) => {
        this._failed(store, err);
        this._end(t, stream);
      });
      return true;
    }
    this._finish(t, true);
    return false;
  }

  _failed(store, err) {
    eventListenerContext.run(store.context, () => this.log('error', `callback failed: ${err && err.stack ? err.stack : err}`));
  }

  _end(t, stream, skipped = false) {
    if (skipped) { // an events() item the loop body never took
      this.stat.skipped++;
      if (t.trk) t.trk.failed = true;
    }
    this._finish(t, true, skipped);
    if (stream) {
      stream.running = false;
      this._pump(stream);
    }
  }

  _finish(t, ran, skipped = false) {
    if (ran) {
      if (!skipped) this.stat.completed++;
      const rec = t.rec;
      if (--rec.running === 0 && rec.idle.length) {
        const w = rec.idle;
        rec.idle = [];
        for (const r of w) r();
      }
    }
    if (t.trk) this.wm.release(t.trk);
    this._inFlight--;
    if (this._roomWaiters.length) this._wakeRoom(false);
    if (this._inFlight === 0 && this._idleWaiters.length) {
      const w = this._idleWaiters;
      this._idleWaiters = [];
      for (const r of w) r();
    }
  }

  // ------------------------------------------------------------ iterator

  /**
   * The events as an async iterator, a second style next to listeners:
   * for await (const ev of loop.events()) { ... }. Each item is {topic,
   * callback, initiator, payload, event, envelope, context}. An item is a task
   * in flight until the loop body asks for the next one (back-pressure and
   * checkpoint as for a callback). options.acceptAll: true accepts every
   * event (default: the BDK filter). Ends when the loop stops: the item the
   * loop body holds counts as handled, those it never took as skipped (the
   * checkpoint stays below them, so a restart delivers them again).
   */
  events(options = {}) {
    const loop = this;
    const buf = [];
    let pull = null; // resolves a waiting next()
    let current = null; // finishes the task of the item last returned
    let ended = false;
    const l = { name: options.name || 'events' };
    if (options.acceptAll) l.isAcceptingEvent = () => true;
    const push = (cb) => function (initiator, payload) {
      const s = taskStorage.getStore();
      return new Promise((resolve) => {
        const item = { topic: s.envelope.topic, callback: cb, initiator, payload, event: s.envelope.event, envelope: s.envelope, context: s.context, resolve };
        if (ended) { resolve(SKIPPED); return; }
        if (pull) { const p = pull; pull = null; p(item); } else buf.push(item);
      });
    };
    for (const [, , cb] of events.TYPES) l[cb] = push(cb);
    l[events.UNKNOWN_CALLBACK] = push(events.UNKNOWN_CALLBACK);
    const it = {
      _end() {
        // the loop stopped (or the loop body left): the listener leaves the loop
        ended = true;
        loop._iterators.delete(it);
        loop.unsubscribe(l);
        if (current) { current(); current = null; }
        // not taken by the loop body: not handled (skipped; the checkpoint
        // stays below them, a restart delivers them again)
        for (const item of buf) item.resolve(SKIPPED);
        buf.length = 0;
        if (pull) { const p = pull; pull = null; p(null); }
      },
      async next() {
        if (current) { current(); current = null; }
        let item = buf.length ? buf.shift() : null;
        if (!item && !ended) item = await new Promise((r) => { pull = r; });
        if (!item) return { done: true, value: undefined };
        current = item.resolve;
        const { resolve, ...value } = item;
        return { done: false, value };
      },
      async return() {
        it._end();
        await loop.unsubscribe(l); // resolves when its tasks ended
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]() { return it; },
    };
    this._iterators.add(it);
    this.subscribe(l);
    return it;
  }
}

/**
 * A base class with the Java BDK's names: every callback a no-op and
 * isAcceptingEvent the BDK default. Extending it is optional: any object with
 * some of these methods is a listener.
 */
class RealTimeEventListener {
  isAcceptingEvent(event, botInfo) {
    return events.defaultIsAccepting(event, botInfo);
  }
}
for (const [, , cb] of events.TYPES) {
  RealTimeEventListener.prototype[cb] = function noop() {};
}
RealTimeEventListener.prototype[events.UNKNOWN_CALLBACK] = function noop() {};

module.exports = {
  DatafeedLoop, RealTimeEventListener, eventListenerContext, listenerContext, currentEnvelope,
  STATS_FIELDS, log, setLogLevel, setLogSink, fnvLimbs,
};
