'use strict';
// Listeners against the fake bridge: the 17 types to the right callbacks with
// exact BigInts, filters, the context, failing callbacks, the iterator, stop,
// back-pressure.

const test = require('node:test');
const assert = require('node:assert/strict');
const { DatafeedLoop, RealTimeEventListener, EVENT_TYPES, listenerContext, setLogSink, currentEnvelope, eventListenerContext } = require('..');
const { FakeBridge, harness, msgEvent, until, BOT, cleanup } = require('./fakebridge');

test.after(cleanup);

const logs = [];
setLogSink((line) => logs.push(line));

function typedEvent(t, i) {
  return {
    id: `ev-${t.topic}`,
    timestamp: 1700000000000n + BigInt(i),
    type: t.topic,
    initiator: { user: { userId: 68719476739n + BigInt(i), displayName: `U${i}` } },
    payload: { [t.payloadKey]: { stream: { streamId: `st-${i}` }, message: { stream: { streamId: `ms-${i}` } }, big: 18446744073709551615n } },
    somethingNew: { kept: true },
  };
}

test('all 17 types, an unknown topic and UNKNOWN reach the right callbacks with exact ints', async () => {
  const b = await new FakeBridge().open();
  const h = harness(DatafeedLoop, { bridges: [b], listeners: [{ name: 'A', accept: 'all' }] });
  await b.waitSubscribed();
  for (let i = 0; i < EVENT_TYPES.length; i++) await b.publish(EVENT_TYPES[i].topic, typedEvent(EVENT_TYPES[i], i));
  await b.publish('SOMETHINGNEW', { id: 'ev-new', type: 'SOMETHINGNEW', initiator: { user: { userId: 1n } } });
  await b.publish('UNKNOWN', { id: 'ev-unk' });
  await until(() => h.got.length === 19, 5000, '19 callbacks');
  for (let i = 0; i < EVENT_TYPES.length; i++) {
    const t = EVENT_TYPES[i];
    const r = h.got[i];
    assert.equal(r.callback, t.callback);
    assert.equal(r.topic, t.topic);
    assert.equal(r.gseq, i + 1);
    assert.equal(r.initiator.user.userId, 68719476739n + BigInt(i)); // BigInt, exact
    assert.equal(r.payload.stream.streamId, `st-${i}`); // the payload, camelCase as on the wire
    assert.equal(r.payload.big, 18446744073709551615n);
    assert.equal(r.env.event.timestamp, 1700000000000n + BigInt(i));
    assert.deepEqual(r.env.event.somethingNew, { kept: true }); // unknown fields kept
    assert.equal(r.env.bot, BOT);
  }
  assert.equal(h.got[17].callback, 'onUnknownEvent');
  assert.equal(h.got[17].payload.id, 'ev-new'); // the whole event
  assert.equal(h.got[18].callback, 'onUnknownEvent');
  assert.equal(h.got[18].topic, 'UNKNOWN');
  await h.loop.stop();
  await h.running;
  const st = h.loop.stats();
  assert.equal(st.received, 19);
  assert.equal(st.dispatched, 19);
  assert.equal(st.completed, 19);
  assert.equal(st.unknown_type, 2);
  assert.equal(st.dropped_malformed, 0);
  b.close();
});

test('default filter (BDK rule) vs a custom one; RealTimeEventListener base class', async () => {
  const b = await new FakeBridge().open();
  const seen = { def: [], all: [], base: [] };
  const loop = new DatafeedLoop(b.endpoint, b.replay);
  loop.subscribe({ name: 'def', onMessageSent: (i, e) => { seen.def.push(currentEnvelope().event.id); } });
  loop.subscribe({ name: 'all', isAcceptingEvent: () => true, onMessageSent: () => { seen.all.push(currentEnvelope().event.id); } });
  class Bot extends RealTimeEventListener {
    onMessageSent() { seen.base.push(currentEnvelope().event.id); }
  }
  loop.subscribe(new Bot());
  const running = loop.start();
  await b.waitSubscribed();
  const ev = (id, initiator) => ({ ...msgEvent(id), initiator });
  await b.publish('MESSAGESENT', ev('own', { user: { userId: BOT } })); // the bot's own
  await b.publish('MESSAGESENT', ev('none', undefined)); // no initiator
  await b.publish('MESSAGESENT', ev('nouser', {})); // no user
  await b.publish('MESSAGESENT', ev('strid', { user: { userId: '123' } })); // not an int
  await b.publish('MESSAGESENT', ev('small', { user: { userId: 7 } })); // a number, not the bot
  await b.publish('MESSAGESENT', ev('other', { user: { userId: BOT + 1n } }));
  await until(() => seen.all.length === 6 && seen.def.length === 2 && seen.base.length === 2);
  await loop.stop();
  await running;
  assert.deepEqual(seen.def, ['small', 'other']);
  assert.deepEqual(seen.base, ['small', 'other']);
  assert.deepEqual(seen.all, ['own', 'none', 'nouser', 'strid', 'small', 'other']);
  assert.equal(loop.stats().filtered, 8);
  b.close();
});

test('the context string through AsyncLocalStorage, also across awaits', async () => {
  const b = await new FakeBridge().open();
  const ctx = [];
  const loop = new DatafeedLoop(b.endpoint, b.replay);
  loop.subscribe({
    name: 'A',
    isAcceptingEvent: () => true,
    async onMessageSent() {
      const before = listenerContext();
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(eventListenerContext.getStore(), before); // the store is the string itself
      ctx.push([before, listenerContext()]);
    },
  });
  loop.subscribe({ isAcceptingEvent: () => true, onMessageSent() { ctx.push([listenerContext(), null]); } }); // unnamed: L2
  const running = loop.start();
  await b.waitSubscribed();
  await b.publish('MESSAGESENT', msgEvent('e1'));
  const noId = msgEvent('x');
  delete noId.id;
  await b.publish('MESSAGESENT', noId);
  await until(() => ctx.length === 4);
  await loop.stop();
  await running;
  const named = ctx.filter(([, after]) => after !== null);
  assert.match(named[0][0], /^task-\d+\/e1\/A$/);
  assert.equal(named[0][0], named[0][1]);
  assert.match(named[1][0], /^task-\d+\/None\/A$/);
  const unnamed = ctx.filter(([, after]) => after === null).map(([c]) => c);
  assert.match(unnamed[0], /^task-\d+\/e1\/L2$/);
  assert.match(unnamed[1], /^task-\d+\/None\/L2$/);
  assert.equal(listenerContext(), 'main');
  assert.equal(eventListenerContext.getStore(), undefined);
  b.close();
});

test('a failing callback (throw or rejection) is logged and the loop goes on', async () => {
  const b = await new FakeBridge().open();
  logs.length = 0;
  const h = harness(DatafeedLoop, {
    bridges: [b],
    listeners: [{
      name: 'A',
      accept: 'all',
      cb: (r) => {
        if (r.id === 'boom') throw new Error('sync boom');
        if (r.id === 'reject') return Promise.reject(new Error('async boom'));
        return undefined;
      },
    }],
  });
  await b.waitSubscribed();
  for (const id of ['a', 'boom', 'b', 'reject', 'c']) await b.publish('MESSAGESENT', msgEvent(id));
  await until(() => h.got.length === 5 && h.loop.stats().completed === 5);
  await h.loop.stop();
  await h.running;
  assert.deepEqual(h.got.map((r) => r.id), ['a', 'boom', 'b', 'reject', 'c']);
  const errs = logs.filter((l) => l.includes('ERROR'));
  assert.equal(errs.length, 2);
  assert.match(errs[0], /ERROR task-\d+\/boom\/A - callback failed: Error: sync boom/);
  assert.match(errs[1], /ERROR task-\d+\/reject\/A - callback failed: Error: async boom/);
  b.close();
});

test('events() async iterator: every event, in order, then break unsubscribes', async () => {
  const b = await new FakeBridge().open();
  const loop = new DatafeedLoop(b.endpoint, b.replay);
  const running = loop.start();
  const items = [];
  const reader = (async () => {
    for await (const ev of loop.events({ acceptAll: true })) {
      items.push(ev);
      await new Promise((r) => setTimeout(r, 1));
      if (items.length === 5) break;
    }
  })();
  await b.waitSubscribed();
  for (let i = 1; i <= 5; i++) await b.publish('MESSAGESENT', msgEvent(`i${i}`));
  await reader;
  assert.deepEqual(items.map((e) => e.event.id), ['i1', 'i2', 'i3', 'i4', 'i5']);
  assert.deepEqual(items.map((e) => e.envelope.gseq), [1, 2, 3, 4, 5]);
  assert.equal(items[0].callback, 'onMessageSent');
  assert.equal(items[0].payload.message.stream.streamId, 's1');
  assert.equal(items[0].initiator.user.userId, 1234567890123n);
  assert.match(items[0].context, /^task-\d+\/i1\/events$/);
  assert.equal(loop.stats().listeners, 0);
  await loop.stop();
  await running;
  assert.equal(loop.stats().completed, 5);
  b.close();
});

test('stop from a callback, and from a signal handler', async () => {
  const b = await new FakeBridge().open();
  const loop = new DatafeedLoop(b.endpoint, b.replay);
  const seen = [];
  loop.subscribe({
    isAcceptingEvent: () => true,
    async onMessageSent() {
      seen.push(currentEnvelope().gseq);
      if (seen.length === 3) await loop.stop(); // does not wait for itself
    },
  });
  const running = loop.start();
  await b.waitSubscribed();
  for (let i = 1; i <= 3; i++) await b.publish('MESSAGESENT', msgEvent(`s${i}`));
  await running;
  assert.deepEqual(seen, [1, 2, 3]);
  // a stop before start is sticky: the next start returns at once
  await loop.stop();
  await loop.start();
  // from a signal
  const again = loop.start();
  process.once('SIGUSR2', () => loop.stop());
  const t0 = Date.now();
  process.kill(process.pid, 'SIGUSR2');
  await again;
  assert.ok(Date.now() - t0 < 1000);
  await assert.rejects(async () => { const p = loop.start(); const q = loop.start(); await q.finally(() => loop.stop()); await p; }, /already started/);
  b.close();
});

test('back-pressure: at most maxInFlight callbacks, nothing lost, in order', async () => {
  const b = await new FakeBridge().open();
  let open;
  const gate = new Promise((r) => { open = r; });
  let now = 0;
  let max = 0;
  const h = harness(DatafeedLoop, {
    bridges: [b],
    options: { maxInFlight: 4, rcvhwm: 5 },
    listeners: [{ name: 'A', accept: 'all', cb: async () => { now++; max = Math.max(max, now); await gate; now--; } }],
  });
  await b.waitSubscribed();
  for (let i = 1; i <= 200; i++) await b.publish('MESSAGESENT', msgEvent(`b${i}`));
  await until(() => h.got.length === 4 && h.loop.stats().queue_waits >= 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.got.length, 4); // the socket holds the rest
  open();
  await until(() => h.got.length === 200, 10000, '200 events');
  await h.loop.stop();
  await h.running;
  assert.equal(max, 4);
  assert.deepEqual(h.gseqs(), Array.from({ length: 200 }, (_, i) => i + 1));
  assert.equal(h.loop.stats().lost, 0);
  b.close();
});

test('events() at stop: items not taken are skipped, the checkpoint stays below them', async () => {
  const fs = require('fs');
  const os = require('os');
  const path = require('path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-iter-'));
  const b = await new FakeBridge().open();
  const loop = new DatafeedLoop(b.endpoint, b.replay, { checkpointDir: dir, name: 'it' });
  const running = loop.start();
  const taken = [];
  const it = loop.events({ acceptAll: true });
  await b.waitSubscribed();
  for (let i = 1; i <= 5; i++) await b.publish('MESSAGESENT', msgEvent(`t${i}`));
  for (let i = 0; i < 2; i++) taken.push((await it.next()).value.envelope.gseq);
  await until(() => loop.stats().dispatched === 5);
  await loop.stop(); // gseq 2 is being handled by the loop body: done; 3..5 never taken
  await running;
  assert.deepEqual(taken, [1, 2]);
  assert.deepEqual(await it.next(), { done: true, value: undefined });
  const st = loop.stats();
  assert.equal(st.completed, 2);
  assert.equal(st.skipped, 3);
  assert.equal(st.dispatched, st.completed + st.skipped);
  assert.equal(fs.readFileSync(path.join(dir, 'it.ckpt'), 'utf8'), 'dfc-checkpoint 1\ne E1 2\n');
  b.close();
  fs.rmSync(dir, { recursive: true });
});
