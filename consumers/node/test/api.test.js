'use strict';
// The package surface: require and import give the same objects; options are
// checked; subscribe/unsubscribe while running, also from a callback.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const fs = require('fs');
const cjs = require('..');
const { DatafeedLoop, setLogSink, currentEnvelope } = cjs;
const { FakeBridge, msgEvent, until, cleanup } = require('./fakebridge');

test.after(cleanup);
setLogSink(() => {});

test('import and require give the same API', async () => {
  const esm = await import(path.join(__dirname, '..', 'index.mjs'));
  for (const k of Object.keys(cjs)) assert.equal(esm[k], cjs[k], k);
  assert.equal(esm.default, cjs);
  assert.equal(cjs.EVENT_TYPES.length, 17);
  assert.equal(cjs.STATS_FIELDS.length, 39);
  // index.d.ts names every export
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  for (const k of Object.keys(cjs)) assert.match(dts, new RegExp(`export (const|function|class) ${k}\\b`), k);
});

test('the 17-type table is contract-v1.json\'s (type, payload key, Java BDK name); index.d.ts declares each payload', () => {
  const contract = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'schemas', 'contract-v1.json'), 'utf8'));
  assert.deepEqual(cjs.EVENT_TYPES.map((t) => [t.topic, t.payloadKey, t.callback]),
    contract.topics.map((t) => [t.type, t.payload_key, t.bdk_java]));
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  for (const t of contract.topics) {
    assert.match(dts, new RegExp(`${t.payload_key}\\?: ${t.payload_schema};`), t.type);
    assert.match(dts, new RegExp(`${t.bdk_java}\\?: Callback<${t.payload_schema}>;`), t.type);
    for (const f of Object.keys(t.payload_fields)) {
      assert.match(dts, new RegExp(`interface ${t.payload_schema} \\{[^}]*\\b${f}\\?:`), `${t.payload_schema}.${f}`);
    }
  }
});

test('options are checked', () => {
  assert.throws(() => new DatafeedLoop(null, { nope: 1 }), /unknown option nope/);
  assert.throws(() => new DatafeedLoop(null, { ordering: 'random' }), /ordering/);
  assert.throws(() => new DatafeedLoop(null, { checkpointDir: '/tmp' }), /needs a name/);
  assert.throws(() => new DatafeedLoop(null, { group: 'g', member: 3, members: 3 }), /member/);
  assert.throws(() => new DatafeedLoop(null, { maxInFlight: 1.5 }), /maxInFlight/);
  assert.equal(new DatafeedLoop(null, { group: 'g', member: 1, members: 3, checkpointDir: '/d' }).cfg.checkpointFile, '/d/g-1-of-3.ckpt');
  assert.deepEqual(Object.keys(new DatafeedLoop().stats()), cjs.STATS_FIELDS);
});

test('stats() names are dfc_stats_t\'s, in its order (parsed from dfconsumer.h)', () => {
  const h = fs.readFileSync(path.join(__dirname, '..', '..', 'include', 'dfconsumer.h'), 'utf8');
  const body = /typedef struct \{([^}]*)\} dfc_stats_t;/.exec(h)[1];
  const names = [...body.matchAll(/uint64_t\s+(\w+);/g)].map((m) => m[1]);
  assert.equal(names.length, 39);
  assert.deepEqual(Object.keys(new DatafeedLoop().stats()), names);
});

test('subscribe while running and unsubscribe from a callback; unsubscribe waits for running callbacks', async () => {
  const b = await new FakeBridge().open();
  const loop = new DatafeedLoop(b.endpoint, b.replay);
  const seen = [];
  let release;
  const slow = {
    name: 'slow',
    isAcceptingEvent: () => true,
    onMessageSent() {
      seen.push(`slow${currentEnvelope().gseq}`);
      return new Promise((r) => { release = r; });
    },
  };
  const once = {
    name: 'once',
    isAcceptingEvent: () => true,
    async onMessageSent() {
      seen.push(`once${currentEnvelope().gseq}`);
      assert.equal(await loop.unsubscribe(once), true); // from its own callback: returns at once
    },
  };
  loop.subscribe(once);
  const running = loop.start();
  await b.waitSubscribed();
  await b.publish('MESSAGESENT', msgEvent('u1'));
  await until(() => seen.length === 1);
  loop.subscribe(slow);
  await b.publish('MESSAGESENT', msgEvent('u2'));
  await until(() => seen.length === 2);
  let done = false;
  const unsub = loop.unsubscribe(slow).then(() => { done = true; });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done, false); // its callback still runs
  release();
  await unsub;
  await b.publish('MESSAGESENT', msgEvent('u3'));
  await until(() => loop.stats().received === 3);
  await loop.stop();
  await running;
  assert.deepEqual(seen, ['once1', 'slow2']);
  assert.equal(await loop.unsubscribe(slow), false);
  assert.equal(loop.stats().listeners, 0);
  b.close();
});
