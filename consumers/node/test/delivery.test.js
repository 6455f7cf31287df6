'use strict';
// Delivery against the fake bridge: gap fill with held live events, replay
// errors (gone, damaged, busy, internal, mute, stalls), the heartbeat's view,
// epochs, dedupe across bridges, stream order, groups, checkpoints, staleness,
// numbers that cannot be right, max_held.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { DatafeedLoop, setLogSink, partition, loadCheckpoint } = require('..');
const { FakeBridge, harness, msgEvent, until, cleanup } = require('./fakebridge');

test.after(cleanup);

setLogSink(() => {});

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

async function setup(options = {}, bridgeOpts = {}, listeners) {
  const b = await new FakeBridge(bridgeOpts).open();
  const h = harness(DatafeedLoop, { bridges: [b], options: { replayTimeoutMs: 300, ...options }, listeners });
  await b.waitSubscribed();
  return { b, h };
}

async function finish(b, h) {
  await h.loop.stop();
  await h.running;
  b.close();
  return h.loop.stats();
}

async function publishN(b, from, to, lose = () => false) {
  for (let i = from; i <= to; i++) await b.publish('MESSAGESENT', msgEvent(`${b.epoch}-g${i}`), { lose: lose(i) });
}

test('a gap of 3 filled in order while 3 live messages are held', async () => {
  const { b, h } = await setup();
  await publishN(b, 1, 2);
  await until(() => h.got.length === 2);
  const release = b.holdReplay();
  await publishN(b, 3, 8, (i) => i <= 5);
  await until(() => h.loop.stats().received === 5 && b.requests.length === 1);
  assert.deepEqual(h.gseqs(), [1, 2]); // 6..8 are held
  release();
  await until(() => h.got.length === 8);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), range(1, 8));
  assert.equal(st.gaps, 3);
  assert.equal(st.gaps_filled, 3);
  assert.equal(st.replayed, 6);
  assert.equal(st.replay_requests, 1);
  assert.equal(st.lost, 0);
  assert.equal(b.requests[0].from_gseq, 3);
  assert.equal(b.requests[0].epoch, 'E1');
});

test('gone: the range below oldest_gseq is lost, the fill goes on from there', async () => {
  const { b, h } = await setup();
  b.oldest = 4;
  await publishN(b, 1, 6, (i) => i >= 2 && i <= 5);
  await until(() => h.got.length === 4);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), [1, 4, 5, 6]);
  assert.equal(st.lost, 2);
  assert.equal(st.replay_errors, 1);
  assert.equal(st.replay_requests, 2);
  assert.equal(st.gaps_filled, 2);
});

test('damaged 4..5: exactly lost_from..lost_to lost, 6 filled by a second request', async () => {
  const { b, h } = await setup();
  b.damaged = [4, 5];
  await publishN(b, 1, 7, (i) => i >= 4 && i <= 6);
  await until(() => h.got.length === 5);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), [1, 2, 3, 6, 7]);
  assert.equal(st.lost, 2);
  assert.equal(st.replay_requests, 2);
  assert.equal(st.replay_errors, 1);
  assert.deepEqual(b.requests.map((r) => r.from_gseq), [4, 6]);
});

test('busy and io_error are asked again with a backoff; internal 3 times gives up', async () => {
  {
    const { b, h } = await setup();
    b.script = [{ code: 'busy' }, { code: 'io_error' }];
    await publishN(b, 1, 4, (i) => i === 2);
    await until(() => h.got.length === 4);
    const st = await finish(b, h);
    assert.deepEqual(h.gseqs(), [1, 2, 3, 4]);
    assert.equal(st.replay_requests, 3);
    assert.equal(st.replay_errors, 2);
    assert.equal(st.lost, 0);
  }
  {
    const { b, h } = await setup();
    b.script = [{ code: 'internal' }, { code: 'internal' }, { code: 'internal' }];
    await publishN(b, 1, 3, (i) => i === 2);
    await until(() => h.got.length === 2, 3000);
    const st = await finish(b, h);
    assert.deepEqual(h.gseqs(), [1, 3]); // the held one released
    assert.equal(st.replay_requests, 3);
    assert.equal(st.replay_errors, 3);
    assert.equal(st.lost, 1);
  }
});

test('a mute replay endpoint: 3 requests, 3 timeouts, the held event released', async () => {
  const { b, h } = await setup({ replayTimeoutMs: 150 });
  b.script = ['mute', 'mute', 'mute'];
  await publishN(b, 1, 3, (i) => i === 2);
  await until(() => h.got.length === 2, 5000);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), [1, 3]);
  assert.equal(st.replay_requests, 3);
  assert.equal(st.replay_errors, 3);
  assert.equal(st.lost, 1);
});

test('the last message lost is seen by the heartbeat (endpoint learnt from it) and filled', async () => {
  const b = await new FakeBridge().open();
  const h = harness(DatafeedLoop, { bridges: [b], replay: false });
  await b.waitSubscribed();
  await b.heartbeat(); // names the replay endpoint: ordered mode from here
  await publishN(b, 1, 3, (i) => i === 3);
  await until(() => h.got.length === 2);
  await b.heartbeat(); // gseq 3, seqs MESSAGESENT 3
  await until(() => h.got.length === 3);
  await b.heartbeat(); // quiet: no request
  await until(() => h.loop.stats().heartbeats === 3);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), [1, 2, 3]);
  assert.equal(st.replay_requests, 1);
  assert.equal(st.gaps, 1);
  assert.equal(st.gaps_filled, 1);
});

test('a new epoch is a new baseline, not a gap', async () => {
  const { b, h } = await setup();
  await publishN(b, 1, 3);
  await until(() => h.got.length === 3);
  b.newEpoch('E2');
  await publishN(b, 1, 2);
  await until(() => h.got.length === 5);
  const st = await finish(b, h);
  assert.deepEqual(h.got.map((r) => `${r.epoch}:${r.gseq}`), ['E1:1', 'E1:2', 'E1:3', 'E2:1', 'E2:2']);
  assert.equal(st.gaps, 0);
  assert.equal(st.lost, 0);
  assert.equal(st.replay_requests, 0);
});

test('dedupe: 20 events from two bridges and one redelivery are handled once', async () => {
  const b1 = await new FakeBridge({ epoch: 'A' }).open();
  const b2 = await new FakeBridge({ epoch: 'B' }).open();
  const h = harness(DatafeedLoop, { bridges: [b1, b2], options: { replayTimeoutMs: 300 } });
  await b1.waitSubscribed();
  await b2.waitSubscribed();
  for (let i = 1; i <= 20; i++) {
    await b1.publish('MESSAGESENT', msgEvent(`d${i}`));
    await b2.publish('MESSAGESENT', msgEvent(`d${i}`));
  }
  await b1.publish('MESSAGESENT', msgEvent('d7')); // a redelivery, new gseq
  // a ROOMCREATED sharing an id with a message is not a duplicate
  await b1.publish('ROOMCREATED', { ...msgEvent('d7'), type: 'ROOMCREATED' });
  await until(() => h.loop.stats().duplicates === 21 && h.got.length === 21);
  await h.loop.stop();
  await h.running;
  assert.deepEqual(h.got.map((r) => r.id).slice(0, 20), range(1, 20).map((i) => `d${i}`));
  assert.equal(h.got[20].topic, 'ROOMCREATED');
  b1.close();
  b2.close();
});

test('stream ordering: per stream one after the other, A then B, streams concurrent', async () => {
  let now = 0;
  let max = 0;
  const cb = async () => {
    now++;
    max = Math.max(max, now);
    await new Promise((r) => setTimeout(r, Math.random() * 3));
    now--;
  };
  const { b, h } = await setup({ ordering: 'stream' }, {}, [{ name: 'A', accept: 'all', cb }, { name: 'B', accept: 'all', cb }]);
  for (let i = 1; i <= 60; i++) await b.publish('MESSAGESENT', msgEvent(`o${i}`, { stream: `s${i % 3}` }));
  await until(() => h.got.length === 120, 10000);
  await finish(b, h);
  for (let s = 0; s < 3; s++) {
    const seq = h.got.filter((r) => r.payload.message.stream.streamId === `s${s}`).map((r) => `${r.gseq}${r.listener}`);
    const want = range(1, 60).filter((i) => i % 3 === s).flatMap((g) => [`${g}A`, `${g}B`]);
    assert.deepEqual(seq, want);
  }
  assert.ok(max >= 2, `streams ran concurrently (max ${max})`);
  assert.ok(max <= 3, `one task per stream at a time (max ${max})`);
});

test('a group of 3 with checkpoints: union all, intersection none, owner = FNV partition', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-group-'));
  const b = await new FakeBridge().open();
  const hs = [0, 1, 2].map((m) => harness(DatafeedLoop, {
    bridges: [b], options: { group: 'g', member: m, members: 3, checkpointDir: dir, checkpointMs: 50, replayTimeoutMs: 300 },
  }));
  await b.waitSubscribed(3);
  for (let i = 1; i <= 90; i++) await b.publish('MESSAGESENT', msgEvent(`p${i}`, { stream: `room-${i % 12}` }));
  await until(() => hs.reduce((a, h) => a + h.got.length, 0) === 90 && hs.every((h) => h.loop.stats().received === 90), 10000);
  for (const h of hs) { await h.loop.stop(); await h.running; }
  const owner = new Map();
  hs.forEach((h, m) => h.got.forEach((r) => {
    assert.ok(!owner.has(r.gseq), `gseq ${r.gseq} handled twice`);
    owner.set(r.gseq, m);
    assert.equal(partition(r.payload.message.stream.streamId, 3), m);
  }));
  assert.deepEqual([...owner.keys()].sort((x, y) => x - y), range(1, 90));
  hs.forEach((h, m) => assert.equal(h.loop.stats().not_mine, 90 - h.got.length, `member ${m}`));
  // each member's own checkpoint: every gseq below the mark handled or skipped
  for (let m = 0; m < 3; m++) {
    const { entries } = loadCheckpoint(path.join(dir, `g-${m}-of-3.ckpt`));
    assert.deepEqual(entries, [{ epoch: 'E1', gseq: 90, done: [] }]);
  }
  b.close();
  fs.rmSync(dir, { recursive: true });
});

test('checkpoint: a restart resumes from the watermark through replay; a C-written file is honoured', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-ckpt-'));
  const b = await new FakeBridge().open();
  const opts = { checkpointDir: dir, name: 'w', checkpointMs: 50, replayTimeoutMs: 300 };
  let h = harness(DatafeedLoop, { bridges: [b], options: opts });
  await b.waitSubscribed();
  await publishN(b, 1, 10);
  await until(() => h.got.length === 10);
  await h.loop.stop();
  await h.running;
  const file = path.join(dir, 'w.ckpt');
  assert.equal(fs.readFileSync(file, 'utf8'), 'dfc-checkpoint 1\ne E1 10\n');
  await publishN(b, 11, 15); // nobody listens: only the journal has them
  h = harness(DatafeedLoop, { bridges: [b], options: opts });
  await b.waitSubscribed(2);
  await publishN(b, 16, 16);
  await until(() => h.got.length === 6);
  await h.loop.stop();
  await h.running;
  assert.deepEqual(h.gseqs(), range(11, 16));
  assert.equal(h.loop.stats().replayed, 6);
  assert.equal(h.loop.stats().gaps_filled, 0); // catch-up, not a gap
  assert.equal(fs.readFileSync(file, 'utf8'), 'dfc-checkpoint 1\ne E1 16\n');
  // a checkpoint as libdfconsumer writes it: 12 is the mark, 14 handled above it
  fs.writeFileSync(file, 'dfc-checkpoint 1\ne E1 12\nd 14\n');
  h = harness(DatafeedLoop, { bridges: [b], options: opts });
  await b.waitSubscribed(3);
  await publishN(b, 17, 17);
  await until(() => h.got.length === 4);
  await h.loop.stop();
  await h.running;
  assert.deepEqual(h.gseqs(), [13, 15, 16, 17]);
  assert.equal(h.loop.stats().duplicates, 1);
  assert.equal(fs.readFileSync(file, 'utf8'), 'dfc-checkpoint 1\ne E1 17\n');
  b.close();
  fs.rmSync(dir, { recursive: true });
});

// A restart from a checkpoint (watermark 20, done 23, 25, 32) over 35
// journaled events: a range counted lost in bulk leaves out the recorded
// gseqs (handled before the restart). gone below 30: 7, not 9; damaged
// 21..27: 5, not 7; 21..29 missing from the journal (a hole before 30): 7;
// an ok answer whose last_gseq is 29 with nothing sent, then the fill gives
// up short of 35: 7 + 5. 32 is skipped when replayed.
for (const [name, fault, handled, lost] of [
  ['gone', (b) => { b.oldest = 30; }, [30, 31, 33, 34, 35], 7],
  ['damaged', (b) => { b.damaged = [21, 27]; }, [28, 29, 30, 31, 33, 34, 35], 5],
  ['a hole', (b) => { b.journal = b.journal.filter((m) => m.gseq < 21 || m.gseq > 29); }, [30, 31, 33, 34, 35], 7],
  ['an ok last_gseq', (b) => { b.script = [{ raw: { last_gseq: 29 } }]; }, [], 12],
]) {
  test(`checkpoint: ${name} does not count the gseqs the checkpoint recorded as lost`, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-ckpt-lost-'));
    fs.writeFileSync(path.join(dir, 'w.ckpt'), 'dfc-checkpoint 1\ne E1 20\nd 23\nd 25\nd 32\n');
    const b = await new FakeBridge().open();
    await publishN(b, 1, 35, () => true); // journaled before the consumer exists
    fault(b);
    const h = harness(DatafeedLoop, { bridges: [b], options: { checkpointDir: dir, name: 'w', replayTimeoutMs: 300 } });
    await b.waitSubscribed();
    await b.heartbeat(); // 35 is the head: the catch-up from 21
    await until(() => h.got.length >= handled.length && h.loop.stats().lost >= lost);
    const st = await finish(b, h);
    assert.deepEqual(h.gseqs(), handled);
    assert.equal(st.lost, lost);
    assert.equal(st.duplicates, handled.length ? 1 : 0);
    fs.rmSync(dir, { recursive: true });
  });
}

test('late joiner from gseq 1 gets the journal before live messages', async () => {
  const b = await new FakeBridge().open();
  await publishN(b, 1, 5, () => true);
  const h = harness(DatafeedLoop, { bridges: [b], options: { fromGseq: 1, replayTimeoutMs: 300 } });
  await b.waitSubscribed();
  await publishN(b, 6, 7);
  await until(() => h.got.length === 7);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), range(1, 7));
  assert.equal(st.lost, 0);
});

test('staleness: a silent bridge gets a new SUB socket, then delivery again', async () => {
  const { b, h } = await setup({ staleMs: 300 });
  await b.heartbeat();
  for (let i = 0; i < 6; i++) { // heartbeats every 100 ms: no reconnect
    await new Promise((r) => setTimeout(r, 100));
    await b.heartbeat();
  }
  assert.equal(h.loop.stats().reconnects, 0);
  await until(() => h.loop.stats().reconnects === 1, 3000);
  await b.waitSubscribed(2);
  await publishN(b, 1, 1);
  await until(() => h.got.length === 1);
  const st = await finish(b, h);
  assert.equal(st.reconnects, 1);
});

test('numbers that cannot be right never move the mark', async () => {
  const { b, h } = await setup();
  const { envelopeBytes } = require('./fakebridge');
  await publishN(b, 1, 3);
  await b.heartbeat();
  await until(() => h.got.length === 3 && h.loop.stats().heartbeats === 1);
  const ev = msgEvent('evil');
  // live gseq 2^64-1, live gseq GSEQ_AHEAD+1 beyond the heartbeat's head
  await b.raw(['MESSAGESENT', envelopeBytes(4, 18446744073709551615n, 'E1', 1n, 1n, ev)]);
  await b.raw(['MESSAGESENT', envelopeBytes(4, 3 + 2 ** 20 + 1, 'E1', 1n, 1n, ev)]);
  // a heartbeat claiming a seq of 2^64-1: dropped whole
  await b.raw(['_hb', b.hbBody({ seqs: { MESSAGESENT: 18446744073709551615n } })]);
  await b.raw(['_hb', b.hbBody({ gseq: 2 ** 53 })]);
  await publishN(b, 4, 6);
  await until(() => h.got.length === 6);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), range(1, 6));
  assert.equal(st.bad_envelope, 4);
  assert.equal(st.lost, 0);
  assert.equal(st.replay_requests, 0);
});

test('a heartbeat claiming a head replay does not confirm: one bad_envelope, the held event handed out, nothing lost', async () => {
  const { b, h } = await setup();
  await publishN(b, 1, 5);
  await until(() => h.got.length === 5);
  b.holdComputed = true;
  const release = b.holdReplay();
  await b.raw(['_hb', b.hbBody({ gseq: 1000000000000 })]);
  await until(() => b.requests.length === 1);
  await publishN(b, 6, 6); // held: the answer (head 5) comes after it
  await until(() => h.loop.stats().received === 7);
  release();
  await until(() => h.got.length === 6);
  await publishN(b, 7, 10);
  await until(() => h.got.length === 10);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), range(1, 10));
  assert.equal(st.bad_envelope, 1);
  assert.equal(st.lost, 0);
  assert.equal(st.replayed, 0);
  assert.equal(st.replay_requests, 1);
});

test('a more that never advances: 3 requests, one stall, the held events delivered', async () => {
  const { b, h } = await setup();
  b.script = [{ raw: { more: true, last_gseq: 1 } }, { raw: { more: true, last_gseq: 1 } }, { raw: { more: true, last_gseq: 1 } }];
  await publishN(b, 1, 4, (i) => i === 2);
  await until(() => h.got.length === 3);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), [1, 3, 4]);
  assert.equal(st.replay_requests, 3);
  assert.equal(st.replay_stalls, 1);
  assert.equal(st.lost, 1);
});

test('max_held 2 with 5 live messages during a fill: 3 left to replay, all 9 in order', async () => {
  const { b, h } = await setup({ maxHeld: 2 });
  await publishN(b, 1, 2);
  await until(() => h.got.length === 2);
  const release = b.holdReplay();
  await publishN(b, 3, 9, (i) => i <= 4);
  await until(() => h.loop.stats().received === 7);
  release();
  await until(() => h.got.length === 9);
  const st = await finish(b, h);
  assert.deepEqual(h.gseqs(), range(1, 9));
  assert.equal(st.held_dropped, 3);
  assert.equal(st.lost, 0);
});

test('a checkpoint save that fails is counted, keeps nothing half-written, and recovers', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-ckerr-'));
  const dir = path.join(root, 'ck');
  fs.mkdirSync(dir);
  const { b, h } = await setup({ checkpointDir: dir, name: 'w', checkpointMs: 50 });
  await publishN(b, 1, 2);
  await until(() => h.got.length === 2 && h.loop.stats().checkpoints >= 1);
  fs.rmSync(dir, { recursive: true }); // every save fails at open now
  await publishN(b, 3, 3);
  await until(() => h.loop.stats().checkpoint_errors >= 2, 3000, 'failed saves');
  fs.mkdirSync(dir);
  await until(() => fs.existsSync(path.join(dir, 'w.ckpt')), 3000, 'the save after the recovery');
  const st = await finish(b, h);
  assert.equal(fs.readFileSync(path.join(dir, 'w.ckpt'), 'utf8'), 'dfc-checkpoint 1\ne E1 3\n');
  assert.deepEqual(fs.readdirSync(dir), ['w.ckpt']);
  assert.ok(st.checkpoint_errors >= 2);
  fs.rmSync(root, { recursive: true });
});

test('HA pair: one bridge goes away, the other one delivers the rest, each event once', async () => {
  const b1 = await new FakeBridge({ epoch: 'A' }).open();
  const b2 = await new FakeBridge({ epoch: 'B' }).open();
  const h = harness(DatafeedLoop, { bridges: [b1, b2], options: { replayTimeoutMs: 300 } });
  await b1.waitSubscribed();
  await b2.waitSubscribed();
  for (let i = 1; i <= 10; i++) {
    await b1.publish('MESSAGESENT', msgEvent(`ha${i}`));
    await b2.publish('MESSAGESENT', msgEvent(`ha${i}`));
  }
  await until(() => h.loop.stats().received === 20);
  b1.close(); // killed
  await until(() => h.loop.stats().disconnects >= 1);
  for (let i = 11; i <= 20; i++) await b2.publish('MESSAGESENT', msgEvent(`ha${i}`));
  await until(() => h.got.length === 20);
  await h.loop.stop();
  await h.running;
  assert.deepEqual(h.got.map((r) => r.id), range(1, 20).map((i) => `ha${i}`));
  assert.equal(h.loop.stats().duplicates, 10);
  assert.equal(h.loop.stats().lost, 0);
  b2.close();
});
