'use strict';
// An in-process fake dfbridge for the tests: an XPUB (so that a test can wait
// for the subscription) and a replay ROUTER over a journal in memory, with
// heartbeats sent on demand and scripted replay answers (errors, mute).

const zmq = require('zeromq');
const { encode } = require('@msgpack/msgpack');

const BOT = 68719476737n;

// what a failed test leaves open: closed by cleanup() so that the file ends
const live = { bridges: new Set(), loops: new Set() };

async function cleanup() {
  for (const l of live.loops) await Promise.race([l.stop(), new Promise((r) => setTimeout(r, 1000))]);
  for (const b of live.bridges) b.close();
}

function u64(n) {
  return typeof n === 'bigint' ? n : BigInt(n);
}

/** A msgpack envelope (keys in the contract's order, bigints exact). */
function envelopeBytes(seq, gseq, epoch, ts, bot, event) {
  return Buffer.from(encode({ v: 1, seq, gseq, epoch, ts, bot, event }, { useBigInt64: true, forceIntegerToFloat: false }));
}

/** A MESSAGESENT-like event of one stream, from user `user`. */
function msgEvent(id, { user = 1234567890123n, stream = 's1', type = 'MESSAGESENT', text = 'hi' } = {}) {
  return {
    id,
    messageId: `m-${id}`,
    timestamp: 1700000000000n,
    type,
    initiator: { user: { userId: user, displayName: 'Someone' } },
    payload: { messageSent: { message: { messageId: `m-${id}`, message: `<div>${text}</div>`, stream: { streamId: stream } } } },
  };
}

class FakeBridge {
  constructor({ epoch = 'E1', replay = true, sndhwm } = {}) {
    this.epoch = epoch;
    this.withReplay = replay;
    this.sndhwm = sndhwm;
    this.journal = []; // {topic, seq, gseq, frames}
    this.seqs = new Map();
    this.gseq = 0;
    this.script = []; // answers for the next requests: {code, ...} | 'mute'
    this.requests = [];
    this.oldest = 1;
    this.damaged = null; // [from, to]
    this.gate = null; // a promise: the replay answers wait for it
  }

  /** Holds replay answers until the returned function is called. */
  holdReplay() {
    let open;
    this.gate = new Promise((r) => { open = r; });
    return () => { this.gate = null; open(); };
  }

  async open() {
    live.bridges.add(this);
    this.pub = new zmq.XPublisher({ linger: 0, verbosity: 'allSubsUnsubs', sendHighWaterMark: this.sndhwm ?? 0 });
    await this.pub.bind('tcp://127.0.0.1:*');
    this.endpoint = this.pub.lastEndpoint;
    this.subs = 0;
    this._subWaiters = [];
    this._readSubs();
    if (this.withReplay) {
      this.router = new zmq.Router({ linger: 0 });
      await this.router.bind('tcp://127.0.0.1:*');
      this.replay = this.router.lastEndpoint;
      this._serve();
    } else {
      this.replay = '';
    }
    return this;
  }

  async _readSubs() {
    try {
      for (;;) {
        const [m] = await this.pub.receive();
        if (m[0] === 1) {
          this.subs++;
          for (const w of this._subWaiters.splice(0)) w();
        }
      }
    } catch (_) { /* closed */ }
  }

  /** Resolves when n subscriptions arrived in all (bounded by ms). */
  async waitSubscribed(n = 1, ms = 5000) {
    const t0 = Date.now();
    while (this.subs < n) {
      if (Date.now() - t0 > ms) throw new Error(`no subscription after ${ms} ms`);
      await new Promise((r) => { this._subWaiters.push(r); setTimeout(r, 50); });
    }
  }

  /** Journals an event and publishes it unless `lose` (a PUB drop). */
  async publish(topic, event, { lose = false, body = null } = {}) {
    const seq = (this.seqs.get(topic) || 0) + 1;
    this.seqs.set(topic, seq);
    const gseq = ++this.gseq;
    const frames = [Buffer.from(topic), body || envelopeBytes(seq, gseq, this.epoch, u64(Date.now()), BOT, event)];
    this.journal.push({ topic, seq, gseq, frames });
    if (!lose) await this.pub.send(frames);
    return gseq;
  }

  /** Sends raw frames on the PUB (hostile input); nothing journaled. */
  async raw(frames) {
    await this.pub.send(frames.map((f) => (typeof f === 'string' ? Buffer.from(f) : f)));
  }

  hbBody(over = {}) {
    const seqs = {};
    for (const [t, s] of this.seqs) seqs[t] = s;
    return Buffer.from(encode({
      v: 1, epoch: this.epoch, gseq: this.gseq, seqs, ts: Date.now(), interval: 1000, replay: this.replay, ...over,
    }, { useBigInt64: true }));
  }

  async heartbeat(over = {}) {
    await this.pub.send([Buffer.from('_hb'), this.hbBody(over)]);
  }

  /** A new life of the counters (bridge restart with a new journal). */
  newEpoch(epoch) {
    this.epoch = epoch;
    this.seqs = new Map();
    this.gseq = 0;
    this.journal = [];
  }

  async _serve() {
    try {
      for (;;) {
        const [id, ...frames] = await this.router.receive();
        const { decode } = require('@msgpack/msgpack');
        const req = decode(frames[0], { useBigInt64: true });
        this.requests.push(req);
        // holdComputed: the answer is what the journal held when the request came
        const view = this.holdComputed ? { journal: this.journal.slice(), head: this.gseq } : null;
        if (this.gate) await this.gate;
        const act = this.script.length ? this.script.shift() : null;
        if (act === 'mute') continue;
        await this._answer(id, req, act, view);
      }
    } catch (_) { /* closed */ }
  }

  async _answer(id, req, act, view) {
    const num = (v) => (v === undefined ? undefined : Number(v));
    const reqId = num(req.req) || 0;
    const head = view ? view.head : this.gseq;
    const journal = view ? view.journal : this.journal;
    const end = (o) => this.router.send([id, Buffer.from('_end'), Buffer.from(encode({
      v: 1, req: reqId, status: 'ok', count: 0, last_gseq: 0, more: false, head_gseq: head,
      oldest_gseq: this.oldest, epoch: this.epoch, ...o,
    }, { useBigInt64: true }))]);
    if (req.epoch !== undefined && req.epoch !== this.epoch) {
      await end({ status: 'error', code: 'epoch', error: 'other epoch' });
      return;
    }
    const from = Math.max(1, num(req.from_gseq) || 1);
    if (act && act.code && act.code !== 'gone' && act.code !== 'damaged') {
      await end({ status: 'error', code: act.code, error: act.code, last_gseq: from - 1 });
      return;
    }
    if (act && act.raw) {
      await end(act.raw);
      return;
    }
    if (from < this.oldest) {
      await end({ status: 'error', code: 'gone', error: 'gone', last_gseq: from - 1, oldest_gseq: act && act.oldest ? act.oldest : this.oldest });
      return;
    }
    const limit = Math.min(num(req.limit) || 1000, (act && act.limit) || 1000);
    let count = 0;
    let last = from - 1;
    for (const m of journal) {
      if (m.gseq < from) continue;
      if (this.damaged && m.gseq >= this.damaged[0] && m.gseq <= this.damaged[1]) {
        if (count > 0) break;
        await end({ status: 'error', code: 'damaged', error: 'damaged', last_gseq: last, lost_from: this.damaged[0], lost_to: this.damaged[1] });
        this.damaged = null;
        return;
      }
      if (count === limit) {
        await end({ count, last_gseq: last, more: true });
        return;
      }
      await this.router.send([id, ...m.frames]);
      count++;
      last = m.gseq;
    }
    await end({ count, last_gseq: last });
  }

  close() {
    try { this.pub.close(); } catch (_) { /* closed */ }
    if (this.router) try { this.router.close(); } catch (_) { /* closed */ }
  }
}

/** Resolves when cond() holds, polling every 5 ms; rejects after ms. */
async function until(cond, ms = 5000, what = 'condition') {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A loop on the given bridges with recording listeners. listeners: [{name,
 * accept: 'default'|'all', cb?: async (rec) => {}}]; every callback records
 * {listener, callback, topic, gseq, epoch, id, context, initiator, payload}.
 */
function harness(DatafeedLoop, { bridges, options = {}, listeners = [{ name: 'A', accept: 'all' }], replay = true }) {
  const { EVENT_TYPES, listenerContext, currentEnvelope } = require('..');
  const loop = new DatafeedLoop(null, options);
  for (const b of bridges) loop.connect(b.endpoint, replay ? b.replay || null : null);
  const got = [];
  for (const spec of listeners) {
    const l = { name: spec.name };
    if (spec.accept === 'all') l.isAcceptingEvent = () => true;
    const make = (cb) => function (initiator, payload) {
      const env = currentEnvelope();
      const rec = { listener: spec.name, callback: cb, topic: env.topic, gseq: env.gseq, epoch: env.epoch, id: env.event.id, context: listenerContext(), initiator, payload, env };
      got.push(rec);
      return spec.cb ? spec.cb(rec) : undefined;
    };
    for (const t of EVENT_TYPES) l[t.callback] = make(t.callback);
    l.onUnknownEvent = make('onUnknownEvent');
    loop.subscribe(l);
  }
  const running = loop.start();
  live.loops.add(loop);
  return { loop, got, running, gseqs: (name = listeners[0].name) => got.filter((r) => r.listener === name).map((r) => r.gseq) };
}

module.exports = { cleanup, harness, FakeBridge, envelopeBytes, msgEvent, until, BOT };
