'use strict';
// fill: the gap filler of one link, as ONE state (IDLE, WAITING, ASKED) and ONE
// transition function (fillOn): it asks the replay endpoint for what is
// missing, holds live events meanwhile, and at the end of the fill (done,
// error, no progress, no answer) counts what it could not get as lost and
// releases what it held in gseq order. Port of consumers/dfc_fill.c.

const zmq = require('zeromq');
const wire = require('./wire');
const curve = require('./curve');

const IDLE = 'IDLE'; // nothing missing
const WAITING = 'WAITING'; // something missing, no request out (no endpoint yet, send failed, backoff)
const ASKED = 'ASKED'; // a request is out: its answer is due by the deadline

// events of fillOn
const EV = { MISSING: 'MISSING', HEARTBEAT: 'HEARTBEAT', TICK: 'TICK', ANSWER: 'ANSWER', EPOCH: 'EPOCH', STOP: 'STOP' };

const REPLAY_LIMIT = 1000;
const REPLAY_TRIES = 3;
const REPLAY_BACKOFF_MS = 100; // busy, io_error, internal: again after 100, then 200 ms
const REPLAY_STALLS = 3;

const ACT_NONE = 0;
const ACT_SEND = 1;
const ACT_GIVE_UP = 2;

function newFill() {
  return {
    state: IDLE, target: 0, req: 0, tries: 0, stalls: 0, answerEvents: 0, deadline: 0,
    dealer: null, dealerEp: null, held: [], hs: null, // hs: CURVE handshakes of the dealer (lib/curve.js)
    heldBytes: 0, // sizes (as received) of the held events: <= maxHeldBytes
    answerMsgs: 0, // messages read for the request in flight (REPLAY_LIMIT taken)
    answerDropped: false, // ...some dropped as unexpected: its last_gseq is not believed
  };
}

const now = () => performance.now();

function closeDealer(f) {
  if (f.dealer) {
    try { f.dealer.close(); } catch (_) { /* closing twice is fine */ }
  }
  f.dealer = null;
  f.dealerEp = null;
}

function dealerOpen(loop, L) {
  const f = L.fill;
  if (f.dealer && f.dealerEp === L.replay) return true;
  closeDealer(f);
  try {
    const d = new zmq.Dealer({
      linger: 0,
      // a DEALER never drops what it receives: at the HWM libzmq stops reading the
      // connection, so a peer that sends more than asked is held back by TCP
      receiveHighWaterMark: wire.replayRcvhwm(loop.cfg.maxFrame),
      maxMessageSize: loop.cfg.maxFrame + wire.MAX_TOPIC,
      ...curve.socketOptions(loop.cfg.curve),
    });
    if (loop.cfg.curve) {
      if (!f.hs || f.hs.what !== `replay ${L.replay}`) f.hs = new curve.Handshakes(loop, `replay ${L.replay}`);
      curve.watchDealer(loop, f.hs, d, L.replay, () => f.dealer === d);
    }
    d.connect(L.replay);
    f.dealer = d;
    f.dealerEp = L.replay;
    loop._readDealer(L, d);
    return true;
  } catch (e) {
    loop.log('error', `replay ${L.replay}: ${e.message}`);
    return false;
  }
}

/** Sends the request for hw+1...; returns an action (and sets ctx.why). */
function fillSend(loop, L, ctx) {
  const f = L.fill;
  f.state = WAITING;
  f.answerEvents = 0;
  f.answerMsgs = 0;
  f.answerDropped = false;
  f.deadline = now() + loop.cfg.replayTimeoutMs;
  if (!L.replay) {
    ctx.why = 'the bridge has no replay endpoint';
    return L.hbSeen ? ACT_GIVE_UP : ACT_NONE;
  }
  if (!dealerOpen(loop, L)) {
    ctx.why = 'cannot open the replay socket';
    return ACT_GIVE_UP;
  }
  const req = ++f.req;
  const body = wire.encode({ v: 1, req, epoch: L.epoch, from_gseq: L.hw + 1, limit: REPLAY_LIMIT });
  const d = f.dealer;
  // one request in flight per DEALER; zeromq.js allows one send at a time:
  // the send is queued at once (HWM is far), a failure lets the deadline retry
  d.send(body).catch((e) => {
    if (f.dealer === d) loop.log('warn', `replay ${L.replay}: cannot send the request: ${e.message}`);
  });
  f.state = ASKED;
  loop.stat.replay_requests++;
  loop.log('debug', `replay ${L.replay}: from gseq ${L.hw + 1} (epoch ${L.epoch})`);
  return ACT_NONE;
}

/** How many of the gseqs in (a, b] of L's epoch are lost: all but those the
    checkpoint recorded as handled (handled before a restart; skipped when
    replayed, CONTRACT.md section 11). Every bulk count of lost goes here
    (dfc_fill.c lost_in). */
function lostIn(loop, L, a, b) {
  return b > a ? b - a - loop.wm.doneIn(L.epoch, a, b) : 0;
}

/** The end of a fill: what is still missing is lost, then every held event
    goes out in gseq order, holes between them counted lost (lostIn: not the
    gseqs a checkpoint recorded). */
function fillGiveUp(loop, L, why) {
  const f = L.fill;
  const proof = L.seen > L.hw ? L.seen : L.hw;
  if (f.target > proof && f.target - proof > wire.GSEQ_AHEAD) f.target = proof + wire.GSEQ_AHEAD;
  // What is missing is (hw, target] minus the held events: those were
  // received and go out now (dfc_fill.c fill_give_up, the same rule;
  // conformance scenario unconfirmed_heartbeat).
  const from = L.hw + 1;
  let missing = 0;
  f.state = IDLE;
  const held = f.held;
  f.held = [];
  f.heldBytes = 0;
  for (const ev of held) {
    const g = ev.gseq;
    if (g > L.hw) {
      missing += lostIn(loop, L, L.hw, g - 1);
      L.hw = g;
      loop._deliver(ev);
    }
  }
  if (f.target > L.hw) {
    missing += lostIn(loop, L, L.hw, f.target);
    L.hw = f.target;
  }
  if (missing) {
    loop.stat.lost += missing;
    loop.log('warn', `${L.endpoint}: ${missing} message(s) of epoch ${L.epoch} lost (in gseq ${from}..${L.hw}): ${why}`);
  }
}

/** Whether a gseq in (lo, seen) was neither taken nor is held: a hole
    below the highest gseq received. */
function missingBeyond(L, lo) {
  if (L.seen <= lo + 1) return false;
  let have = 0;
  for (const ev of L.fill.held) if (ev.gseq > lo && ev.gseq < L.seen) have++;
  return have < L.seen - lo - 1;
}

function onAnswer(loop, L, end, ctx) {
  const f = L.fill;
  f.state = WAITING;
  const progress = f.answerEvents > 0;
  if (progress) f.stalls = 0;
  if (end.ok) {
    let more = end.more;
    if (end.lastGseq > L.hw) {
      if (f.answerDropped) {
        more = true; // it sent more than we took (replay_unexpected): ask for the rest
      } else { // what it sent and we could not use is lost
        loop.stat.lost += lostIn(loop, L, L.hw, end.lastGseq);
        L.hw = end.lastGseq;
      }
    }
    if (more && !progress && ++f.stalls >= REPLAY_STALLS) {
      loop.stat.replay_stalls++;
      ctx.why = 'the replay answers make no progress';
      return ACT_GIVE_UP;
    }
    if (more) {
      f.tries = 0;
      return ACT_SEND;
    }
    // the answer describes the journal when the request was read: up to
    // headGseq (else lastGseq). Events received live beyond it (held) show
    // that the journal moved on during the fill: a gseq missing below the
    // highest received and beyond what the answer covered is asked again
    // from hw + 1, not counted lost (conformance scenario fill_moved_head);
    // an answer without events counts a stall, as above
    const covered = end.hasHead ? end.headGseq : end.lastGseq;
    if (missingBeyond(L, covered > L.hw ? covered : L.hw)) {
      if (!progress && ++f.stalls >= REPLAY_STALLS) {
        loop.stat.replay_stalls++;
        ctx.why = 'the replay answers make no progress';
        return ACT_GIVE_UP;
      }
      f.tries = 0;
      return ACT_SEND;
    }
    // the answer runs to the journal's head: a target above both the head
    // and every gseq received was claimed by a heartbeat and cannot be right
    let confirmed = end.hasHead && end.headGseq > L.seen ? end.headGseq : L.seen;
    if (confirmed < L.hw) confirmed = L.hw;
    if (f.target > confirmed) {
      loop.log('warn', `${L.endpoint}: gseq ${f.target} was announced but replay's head is ${end.headGseq}: dropped as a bad envelope`);
      loop._dropCount('bad_envelope');
      f.target = confirmed;
      if (L.liveLast > confirmed) L.liveLast = confirmed;
    }
    ctx.why = 'not in the journal';
    return ACT_GIVE_UP;
  }
  loop.stat.replay_errors++;
  let resume = 0;
  if (end.code === 'gone') resume = end.oldestGseq;
  else if (end.code === 'damaged' && end.hasLost) resume = end.lostTo + 1;
  if (resume > L.hw + 1) {
    const upto = resume - 1 < f.target ? resume - 1 : f.target;
    const missing = lostIn(loop, L, L.hw, upto); // not the gseqs a checkpoint recorded
    loop.stat.lost += missing;
    loop.log('warn', `${L.endpoint}: ${missing} message(s) lost: ${end.code} (readable again from ${resume})`);
    if (upto > L.hw) L.hw = upto;
    f.tries = 0;
    if (!progress && ++f.stalls >= REPLAY_STALLS) {
      loop.stat.replay_stalls++;
      ctx.why = 'the replay answers make no progress';
      return ACT_GIVE_UP;
    }
    return ACT_SEND;
  }
  // busy, io_error, internal: not known to be lost; the same request after a
  // backoff (the TICK past the deadline sends it from WAITING)
  if ((end.code === 'busy' || end.code === 'io_error' || end.code === 'internal') && ++f.tries < REPLAY_TRIES) {
    const wait = REPLAY_BACKOFF_MS << (f.tries - 1);
    f.deadline = now() + wait;
    loop.log('warn', `replay ${L.replay}: ${end.code} (${end.error}): asking again in ${wait} ms`);
    return ACT_NONE;
  }
  ctx.why = `replay error ${end.code || '?'}: ${end.error}`;
  return ACT_GIVE_UP;
}

/** The transition function: the only place a fill's state changes. */
function fillOn(loop, L, ev, arg, end) {
  const f = L.fill;
  let act = ACT_NONE;
  const ctx = { why: '' };
  switch (ev) {
    case EV.MISSING:
      if (f.state === IDLE) {
        f.target = arg;
        f.tries = 0;
        f.stalls = 0;
        act = ACT_SEND;
      } else if (arg > f.target) {
        f.target = arg;
      }
      break;
    case EV.HEARTBEAT:
      if (f.state === WAITING) act = ACT_SEND; // it may have been waiting for the endpoint
      break;
    case EV.TICK:
      if (f.state === IDLE || arg <= f.deadline) break;
      if (f.state === WAITING) {
        act = L.replay ? ACT_SEND : ACT_GIVE_UP;
        ctx.why = 'no replay endpoint known';
        break;
      }
      loop.stat.replay_errors++;
      closeDealer(f); // a late answer to the old request must not mix in
      if (++f.tries < REPLAY_TRIES) {
        loop.log('warn', `replay ${L.replay}: no answer in ${loop.cfg.replayTimeoutMs} ms, asking again`);
        act = ACT_SEND;
      } else {
        act = ACT_GIVE_UP;
        ctx.why = 'the replay endpoint does not answer';
      }
      break;
    case EV.ANSWER:
      if (f.state === ASKED) act = onAnswer(loop, L, end, ctx);
      break;
    case EV.EPOCH:
      if (f.state !== IDLE || f.held.length) {
        f.target = L.hw;
        act = ACT_GIVE_UP;
        ctx.why = 'new epoch';
      }
      closeDealer(f);
      break;
    case EV.STOP:
      f.held = []; // not handled: the checkpoint stays below them
      f.heldBytes = 0;
      closeDealer(f);
      f.state = IDLE;
      break;
    default:
      throw new Error(`fillOn: unknown event ${ev}`);
  }
  while (act !== ACT_NONE) {
    if (act === ACT_SEND) {
      act = fillSend(loop, L, ctx);
    } else {
      fillGiveUp(loop, L, ctx.why);
      act = ACT_NONE;
    }
  }
}

/** Keeps a live event until the fill ends (beyond maxHeld events or
    maxHeldBytes: counted in held_dropped and left to replay). */
function fillHold(loop, L, ev) {
  const f = L.fill;
  if (f.held.length >= loop.cfg.maxHeld || ev.size > loop.cfg.maxHeldBytes - f.heldBytes) {
    if (ev.gseq > f.target) f.target = ev.gseq;
    loop.stat.held_dropped++;
    return;
  }
  f.held.push(ev);
  f.heldBytes += ev.size;
}

/** A message from the replay socket that answers nothing asked: dropped
    unread, counted; the first since the last request sent logged at warn. */
function unexpected(loop, L, why) {
  const f = L.fill;
  loop.stat.replay_unexpected++;
  const first = !f.answerDropped; // reset by each request sent
  f.answerDropped = true;
  loop.log(first ? 'warn' : 'debug', `replay ${L.replay}: dropped a message: ${why}`);
}

/** One replayed message of the request in flight: taken only from the epoch
    asked, with a gseq above the last one taken and at most GSEQ_AHEAD beyond
    anything known on this link (dfc_fill.c on_replayed). */
function onReplayed(loop, L, ev) {
  const f = L.fill;
  const g = ev.gseq;
  const known = Math.max(L.liveLast, L.hw, L.seen, f.target);
  if (!(L.hasEpoch && L.epoch === ev.epoch)) return unexpected(loop, L, 'another epoch');
  if (g <= L.hw) return unexpected(loop, L, 'a gseq not above the last one taken');
  if (g > known && g - known > wire.GSEQ_AHEAD) return unexpected(loop, L, 'a gseq far beyond anything known');
  f.deadline = now() + loop.cfg.replayTimeoutMs; // it is answering
  if (g > L.hw + 1) loop.stat.lost += lostIn(loop, L, L.hw, g - 1); // the journal has a hole
  L.hw = g;
  if (g > L.seen) L.seen = g;
  f.answerEvents++;
  loop.stat.replayed++;
  if (L.rangeHit(g)) loop.stat.gaps_filled++;
  loop._deliver(ev);
}

/** "_end" -> the fields the fill uses, or null when malformed. */
function parseEnd(body) {
  let root;
  try {
    root = wire.decode(body).value;
  } catch (_) {
    return null;
  }
  if (!wire.isMap(root)) return null;
  const str = (v) => (typeof v === 'string' ? v : '');
  const u = (v) => wire.asUint(v);
  const end = {
    ok: root.status === 'ok',
    code: str(root.code),
    error: str(root.error),
    more: root.more === true,
    req: u(root.req),
    headGseq: u(root.head_gseq),
    lastGseq: u(root.last_gseq) || 0,
    oldestGseq: u(root.oldest_gseq) || 0,
    lostFrom: u(root.lost_from),
    lostTo: u(root.lost_to),
  };
  end.hasReq = end.req !== undefined;
  end.hasHead = end.headGseq !== undefined;
  if (!end.hasHead) end.headGseq = 0;
  end.hasLost = end.lostFrom !== undefined && end.lostTo !== undefined;
  const S = wire.SEQ_MAX;
  end.impossible = end.lastGseq > S || end.headGseq > S || end.oldestGseq > S ||
    (end.hasHead && end.lastGseq > end.headGseq) ||
    (end.hasLost && (end.lostFrom > end.lostTo || end.lostTo > S || (end.hasHead && end.lostTo > end.headGseq)));
  return end;
}

function onEnd(loop, L, body) {
  const end = parseEnd(body);
  if (!end) return unexpected(loop, L, 'a malformed end marker');
  if (L.fill.state !== ASKED || !end.hasReq || end.req !== L.fill.req) {
    // no request in flight (a late answer never reaches us: a request given up
    // closes its socket), or another req: not ours
    return unexpected(loop, L, 'an end marker of no request in flight');
  }
  if (end.impossible) {
    loop._drop('bad_envelope', body.length);
    return;
  }
  fillOn(loop, L, EV.ANSWER, 0, end);
}

/** One message from the link's replay DEALER. */
function fillReceive(loop, L, frames) {
  if (frames.length === 2 && frames[0].length === 4 && frames[0].toString() === '_end') {
    onEnd(loop, L, frames[1]);
    return;
  }
  const f = L.fill;
  if (f.state !== ASKED) return unexpected(loop, L, 'no request in flight');
  if (++f.answerMsgs > REPLAY_LIMIT) return unexpected(loop, L, "more messages than the request's limit");
  const m = wire.parseMessage(frames, loop.cfg.maxFrame);
  let status = m.status;
  if (status === wire.ST.OK && (m.seq > wire.SEQ_MAX || m.gseq > wire.SEQ_MAX)) status = wire.ST.BAD_ENVELOPE;
  if (status !== wire.ST.OK) {
    loop._drop(status, frames.reduce((a, b) => a + b.length, 0), m.why);
    return;
  }
  onReplayed(loop, L, m);
}

module.exports = { IDLE, WAITING, ASKED, EV, newFill, fillOn, fillHold, fillReceive, closeDealer, parseEnd, REPLAY_LIMIT };
