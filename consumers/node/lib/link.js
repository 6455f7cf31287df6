'use strict';
// link: one bridge as the receiver sees it: its SUB socket and socket events,
// reading messages, the epoch baseline, gap counting, heartbeats, the bounds on
// numbers that cannot be right, and staleness. Port of consumers/dfc_link.c.

const zmq = require('zeromq');
const wire = require('./wire');
const curve = require('./curve');
const { EV, newFill, fillOn, fillHold } = require('./fill');

const GAP_TABLE_MAX = 512;
const MAX_RANGES = 65536;
const GAVE_UP_MS = 500; // libzmq's reconnect_ivl is 100 ms

class Link {
  constructor(endpoint, replay) {
    this.endpoint = endpoint;
    this.replay = replay || null; // configured, or learnt from "_hb"
    this.replayCfg = !!replay;
    this.sub = null;
    this.epoch = '';
    this.hasEpoch = false;
    this.hadEpoch = false;
    this.fromUsed = false;
    this.hw = 0; // highest gseq of the epoch delivered (or given up as lost)
    this.liveLast = 0; // highest gseq seen live or announced by "_hb"
    this.seen = 0; // highest gseq received in a message (live or replayed)
    this.hbKnown = false; // a heartbeat of this epoch was accepted: live gseqs are bounded
    this.ranges = []; // [lo, hi] gseqs known missing, ascending
    this.fill = newFill();
    this.lastRx = 0;
    this.strikes = 0;
    this.hbInterval = 0;
    this.hbSeen = false;
    this.replayRefused = null; // the last endpoint a heartbeat named and the rule refused
    this.hs = null; // CURVE handshakes of the SUB (curve.Handshakes), set by openSub
  }

  rangeAdd(lo, hi) {
    if (lo > hi) return;
    const r = this.ranges;
    if (r.length && r[r.length - 1][1] + 1 >= lo) {
      if (hi > r[r.length - 1][1]) r[r.length - 1][1] = hi;
      return;
    }
    if (r.length >= MAX_RANGES) { // bounded: stretch the last one
      r[r.length - 1][1] = hi;
      return;
    }
    r.push([lo, hi]);
  }

  /** True when gseq g was known missing; forgets ranges below g. */
  rangeHit(g) {
    const r = this.ranges;
    let k = 0;
    while (k < r.length && r[k][1] < g) k++;
    if (k) r.splice(0, k);
    return r.length > 0 && r[0][0] <= g;
  }
}

/** The last seq known for (epoch, topic), or undefined. loop.gaps is
    epoch -> Map(topic -> last seq). */
function lastSeq(loop, epoch, topic) {
  const t = loop.gaps.get(epoch);
  return t === undefined ? undefined : t.get(topic);
}

/** Counts messages missing from seq per (epoch, topic); the first seq seen is
    the baseline. A heartbeat's (announced) seq is the last one published. */
function countGap(loop, epoch, topic, seq, announced) {
  let t = loop.gaps.get(epoch);
  const last = t === undefined ? undefined : t.get(topic);
  if (last !== undefined) {
    const next = announced ? 0 : 1;
    if (seq > last && seq - last > next) loop.stat.gaps += seq - last - next;
    if (seq > last) t.set(topic, seq);
    return;
  }
  if (t === undefined) {
    t = new Map();
    loop.gaps.set(epoch, t);
  }
  if (++loop.gapEntries > GAP_TABLE_MAX) { // many epochs: forget the old ones
    loop.gaps.clear();
    loop.gapEntries = 1;
    loop.gaps.set(epoch, t);
    t.clear();
  }
  t.set(topic, seq);
}

/** Ordered delivery is on once there is something to fill from or resume to. */
function ordered(loop, L) {
  return !!(L.replay || loop.wm.file || loop.cfg.fromGseq);
}

function newEpoch(loop, L, epoch, head) {
  fillOn(loop, L, EV.EPOCH, 0, null);
  L.hadEpoch = L.hasEpoch;
  L.hasEpoch = true;
  L.epoch = epoch;
  L.ranges = [];
  L.liveLast = head;
  L.seen = 0;
  L.hbKnown = false;
  const ord = ordered(loop, L);
  let base = head;
  let w = loop.wm.file ? loop.wm.get(epoch, false) : null;
  if (w && !loop.wm.checkHead(w, head)) w = null; // never trusted beyond what the bridge published
  if (w) {
    base = w.gseq;
  } else if (ord) {
    if (!L.hadEpoch && loop.cfg.fromGseq && !L.fromUsed) base = loop.cfg.fromGseq - 1;
    else if (L.hadEpoch) base = 0;
    if (loop.wm.file && (w = loop.wm.get(epoch, true)) !== null) {
      w.gseq = base;
      loop.wm.dirty = true;
    }
  }
  L.fromUsed = true;
  L.hw = base;
  loop.log('info', `${L.endpoint}: epoch ${epoch}, resuming after gseq ${base} (newest ${head})`);
  if (ord && base < head) fillOn(loop, L, EV.MISSING, head, null);
}

function numbersPlausible(loop, L, m) {
  const g = m.gseq;
  const s = m.seq;
  if (g > wire.SEQ_MAX || s > wire.SEQ_MAX) return false;
  if (!L.hbKnown || !(L.hasEpoch && L.epoch === m.epoch)) return true;
  const known = L.liveLast > L.hw ? L.liveLast : L.hw;
  if (g > known && g - known > wire.GSEQ_AHEAD) return false;
  const last = lastSeq(loop, m.epoch, m.topic);
  return last === undefined || s <= last || s - last <= wire.GSEQ_AHEAD;
}

function onLive(loop, L, m) {
  const g = m.gseq;
  if (!(L.hasEpoch && L.epoch === m.epoch)) newEpoch(loop, L, m.epoch, g ? g - 1 : 0);
  if (g > L.seen) L.seen = g;
  if (!ordered(loop, L)) {
    if (g > L.hw) L.hw = g;
    if (g > L.liveLast) L.liveLast = g;
    loop._deliver(m);
    return;
  }
  if (g > L.liveLast + 1) L.rangeAdd((L.liveLast > L.hw ? L.liveLast : L.hw) + 1, g - 1);
  if (g > L.liveLast) L.liveLast = g;
  if (g <= L.hw) return; // replay gave it already
  if (L.fill.state !== 'IDLE') {
    fillHold(loop, L, m);
    return;
  }
  if (g === L.hw + 1) {
    L.hw = g;
    loop._deliver(m);
    return;
  }
  fillHold(loop, L, m);
  fillOn(loop, L, EV.MISSING, g - 1, null);
}

/** The replay endpoint a heartbeat names (rp: a string, or undefined), for a
    link without a configured one: "" or absent = none; otherwise
    wire.replayAdvert (replayAnyHost) decides. A refused one is counted on every
    heartbeat, logged once per value, and changes nothing: a forged heartbeat
    must not make the loop ask (and believe) another machine (dfc_link.c
    learn_replay). */
function learnReplay(loop, L, rp) {
  let ep = null;
  let shown = null;
  if (typeof rp === 'string' && rp.length > 0) {
    if (Buffer.byteLength(rp) > 1024 || rp.includes('\0')) {
      shown = '(over 1024 bytes, or a NUL)';
    } else {
      shown = rp;
      ep = wire.replayAdvert(L.endpoint, rp, loop.cfg.replayAnyHost);
    }
  }
  if (shown !== null && ep === null) {
    loop.stat.replay_refused++;
    if (L.replayRefused !== shown) {
      loop.log('warn', `${L.endpoint}: the heartbeat names replay endpoint ${shown}, not on this bridge's host: not used (configure the replay endpoint, or set replayAnyHost)`);
      L.replayRefused = shown;
    }
    return;
  }
  if (ep !== L.replay) {
    L.replay = ep;
    loop.log('info', `${L.endpoint}: replay endpoint ${ep || 'none'} (from the heartbeat)`);
  }
}

/** "_hb": {v, epoch, gseq, seqs{topic: seq}, ts, interval, replay}. */
function onHeartbeat(loop, L, body) {
  let d;
  try {
    d = wire.decode(body);
  } catch (e) {
    loop._drop('bad_msgpack', body.length, e.message);
    return;
  }
  const root = d.value;
  const v = wire.isMap(root) ? wire.asUint(root.v) : undefined;
  const gseq = wire.isMap(root) ? wire.asUint(root.gseq) : undefined;
  if (v === undefined || v > wire.WIRE_VERSION || typeof root.epoch !== 'string' || gseq === undefined) {
    loop._drop('bad_envelope', body.length);
    return;
  }
  const epoch = root.epoch;
  const seqs = wire.isMap(root.seqs) ? root.seqs : null;
  let absurd = gseq > wire.SEQ_MAX;
  if (seqs) {
    for (const k of Object.keys(seqs)) {
      const s = wire.asUint(seqs[k]);
      if (s !== undefined && s > wire.SEQ_MAX) absurd = true;
    }
  }
  if (Buffer.byteLength(epoch) >= wire.EPOCH_BYTES || absurd) {
    loop._drop('bad_envelope', body.length);
    return;
  }
  loop.stat.heartbeats++;
  L.hbSeen = true;
  const interval = wire.asUint(root.interval);
  L.hbInterval = interval !== undefined && interval !== Infinity ? interval : 0;
  const rp = root.replay;
  if (!L.replayCfg && (rp === undefined || typeof rp === 'string')) learnReplay(loop, L, rp);
  if (seqs) {
    for (const t of Object.keys(seqs)) {
      const s = wire.asUint(seqs[t]);
      if (Buffer.byteLength(t) <= wire.MAX_TOPIC && s !== undefined) countGap(loop, epoch, t, s, true);
    }
  }
  if (!(L.hasEpoch && L.epoch === epoch)) {
    newEpoch(loop, L, epoch, gseq);
    L.hbKnown = true;
  } else if (ordered(loop, L)) {
    if (gseq > L.liveLast) {
      L.rangeAdd((L.liveLast > L.hw ? L.liveLast : L.hw) + 1, gseq);
      L.liveLast = gseq;
    }
    if (L.fill.state !== 'IDLE') {
      fillOn(loop, L, EV.MISSING, gseq, null); // raises the target
      fillOn(loop, L, EV.HEARTBEAT, 0, null);
    } else if (gseq > L.hw) {
      loop.log('info', `${L.endpoint}: heartbeat at gseq ${gseq}, last seen ${L.hw}: filling`);
      fillOn(loop, L, EV.MISSING, gseq, null);
    }
  }
  L.hbKnown = true;
}

/** One message from a bridge's SUB socket. */
function linkReceive(loop, L, frames) {
  L.lastRx = performance.now();
  L.strikes = 0;
  loop.stat.received++;
  const t = frames[0];
  if (t.length > 0 && t[0] === 0x5f) { // "_": the bridge's own messages
    loop.stat.reserved++;
    if (frames.length === 2 && t.length === 3 && t[1] === 0x68 && t[2] === 0x62) onHeartbeat(loop, L, frames[1]);
    return;
  }
  const m = wire.parseMessage(frames, loop.cfg.maxFrame);
  if (m.status !== wire.ST.OK) {
    let size = 0;
    for (const f of frames) size += f.length;
    loop._drop(m.status, size, m.why);
    return;
  }
  if (Buffer.byteLength(m.epoch) >= wire.EPOCH_BYTES || !numbersPlausible(loop, L, m)) {
    loop._drop('bad_envelope', m.body.length + t.length);
    return;
  }
  countGap(loop, m.epoch, m.topic, m.seq, false);
  onLive(loop, L, m);
}

/** Opens the link's SUB, its socket events, and connects it. */
function openSub(loop, L) {
  const sub = new zmq.Subscriber({
    linger: 0,
    receiveHighWaterMark: loop.cfg.rcvhwm,
    // libzmq drops bigger frames on tcp before we see them (inproc: checked again)
    maxMessageSize: loop.cfg.maxFrame + wire.MAX_TOPIC,
    ...curve.socketOptions(loop.cfg.curve),
  });
  sub.subscribe(); // before connect
  L.sub = sub;
  L.lastRx = performance.now();
  // libzmq 4.3 drops a peer that sent a message above maxMessageSize (a
  // protocol error) and never reconnects it: the SUB would stay deaf. After a
  // normal connection loss libzmq schedules a reconnect at once
  // ("connect:retry"); when neither that nor a new connection follows a
  // disconnect within GAVE_UP_MS, this SUB is replaced by a new one. (Calling
  // disconnect() + connect() on the socket, as the C library does, can hit
  // libzmq's `!_more` assertion in fq.cpp while a message is half read.)
  const events = sub.events;
  let lost = 0; // disconnects not yet followed by a retry or a connection
  events.on('connect', (e) => {
    loop.stat.connects++;
    lost = 0;
    loop.log('info', `connected to ${e.address}`);
  });
  events.on('connect:retry', () => {
    lost = 0;
    L.hs.retriedByLibzmq();
  });
  watchSubHandshakes(loop, L, sub);
  events.on('disconnect', (e) => {
    loop.stat.disconnects++;
    if (L.sub !== sub || loop._stopping || L.hs.pending) return; // a refused handshake: its own retry
    const mine = ++lost;
    setTimeout(() => {
      if (L.sub !== sub || loop._stopping || lost !== mine) return;
      loop.log('warn', `disconnected from ${e.address} and not reconnected by libzmq (a message above maxFrame?): new SUB socket`);
      closeSub(L);
      openSub(loop, L);
    }, GAVE_UP_MS).unref();
  });
  try {
    sub.connect(L.endpoint);
  } catch (e) {
    loop.log('error', `cannot connect ${L.endpoint}: ${e.message}`); // stays silent: a dead link
  }
  loop._readSub(L, sub);
}

/** A refused handshake (curve.Handshakes): libzmq 4.3 never reconnects after a
    ZAP denial, so after the backoff this SUB is replaced by a new one (as for a
    link libzmq gave up, above); a 'connect:retry' cancels that (a wrong key is
    retried by libzmq itself). */
function watchSubHandshakes(loop, L, sub) {
  if (!L.hs) L.hs = new curve.Handshakes(loop, L.endpoint); // kept across SUBs: the backoff goes on
  for (const type of ['handshake', ...Object.keys(curve.FAILED)]) {
    sub.events.on(type, () => {
      if (L.sub !== sub || loop._stopping) return;
      if (!L.hs.onEvent(type, performance.now()) || !L.hs.pending) return;
      L.hs.schedule(() => {
        if (L.sub !== sub || loop._stopping) return;
        loop.log('debug', `${L.endpoint}: handshake failed: new SUB socket`);
        closeSub(L);
        openSub(loop, L);
      });
    });
  }
}

function closeSub(L) {
  const s = L.sub;
  L.sub = null;
  if (s) {
    try { s.events.removeAllListeners(); } catch (_) { /* no observer */ }
    try { s.close(); } catch (_) { /* closed */ }
  }
}

/** Staleness and replay deadlines. */
function linkTimers(loop, L, now) {
  const cfg = loop.cfg.staleMs;
  const stale = cfg > 0 ? cfg : cfg === 0 && L.hbInterval ? 3 * Math.min(L.hbInterval, 2 ** 31 - 1) : 0;
  // a bridge that stays silent is retried less and less often: x2 per attempt up to x32
  if (stale && L.sub && now - L.lastRx > stale * 2 ** Math.min(L.strikes, 5)) {
    loop.log(L.strikes ? 'debug' : 'warn', `${L.endpoint}: no message and no heartbeat for ${Math.round(now - L.lastRx)} ms: new SUB socket`);
    closeSub(L);
    openSub(loop, L);
    L.strikes++;
    loop.stat.reconnects++;
  }
  fillOn(loop, L, EV.TICK, now, null);
}

module.exports = { Link, linkReceive, openSub, closeSub, linkTimers, ordered };
