'use strict';
// Hostile input through the socket: every bad message is counted under its
// reason and dropped; the loop survives and handles the good ones around it.

const test = require('node:test');
const assert = require('node:assert/strict');
const { encode } = require('@msgpack/msgpack');
const { DatafeedLoop, setLogSink } = require('..');
const { FakeBridge, harness, msgEvent, until, cleanup } = require('./fakebridge');

test.after(cleanup);
const logs = [];
setLogSink((l) => logs.push(l));

const mp = (v) => Buffer.from(encode(v, { useBigInt64: true }));
const env = (over) => mp({ v: 1, seq: 1, gseq: 1, epoch: 'E1', ts: 1, bot: 1, event: { id: 'x' }, ...over });

test('hostile frames are counted per reason and survived', async () => {
  const b = await new FakeBridge().open();
  // no replay: gaps stay counted, nothing is asked
  const h = harness(DatafeedLoop, { bridges: [b], replay: false, options: { maxFrame: 16384 } });
  await b.waitSubscribed();
  let good = 0;
  const ok = async () => { good++; await b.publish('MESSAGESENT', msgEvent(`ok${good}`)); };
  await ok();
  await b.raw(['MESSAGESENT']); // 1 frame
  await b.raw(['MESSAGESENT', env({}), 'x']); // 3 frames
  await b.raw(['', env({})]); // empty topic
  await b.raw(['T'.repeat(256), env({})]); // topic over 255 bytes
  await b.raw(['MESSAGESENT', Buffer.from('dbffffffff41', 'hex')]); // str32 of 4 GiB
  await b.raw(['MESSAGESENT', Buffer.from('ddffffffff01', 'hex')]); // array32 of 4 Gi items
  await b.raw(['MESSAGESENT', Buffer.from(`${'91'.repeat(10000)}c0`, 'hex')]); // depth 10 000
  await b.raw(['MESSAGESENT', Buffer.from('c1', 'hex')]); // reserved byte
  await b.raw(['MESSAGESENT', mp([1, 2])]); // not a map
  await b.raw(['MESSAGESENT', env({ v: 2 })]); // newer version
  await b.raw(['MESSAGESENT', env({ v: 'one' })]); // version not an int
  await b.raw(['MESSAGESENT', env({ seq: 'one' })]); // wrong envelope types
  await b.raw(['MESSAGESENT', env({ gseq: 1.5 })]);
  await b.raw(['MESSAGESENT', env({ gseq: -1 })]);
  await b.raw(['MESSAGESENT', env({ bot: 'bot' })]);
  await b.raw(['MESSAGESENT', env({ epoch: 7 })]);
  await b.raw(['MESSAGESENT', env({ epoch: 'e'.repeat(128) })]); // epoch too long
  await b.raw(['MESSAGESENT', Buffer.from(`86a17601a3736571cb3ff0000000000000a467736571cb3ff0000000000000a565706f6368a24531a27473${'00'}a3626f74${'00'}`, 'hex')]); // seq/gseq as floats 1.0
  await b.raw(['MESSAGESENT', env({ event: 'not a map' })]);
  await b.raw(['MESSAGESENT', env({ event: undefined })]);
  await b.raw(['_hb', Buffer.from('c1', 'hex')]); // heartbeat not msgpack
  await b.raw(['_hb', b.hbBody({ seqs: { MESSAGESENT: 18446744073709551615n } })]); // absurd seq
  await b.raw(['_hb', b.hbBody({ gseq: 'x' })]); // mistyped
  await b.raw(['_other', 'whatever']); // reserved, ignored
  await ok();
  // an event with a __proto__ key: an ordinary key, delivered
  const pev = { id: 'proto', type: 'MESSAGESENT' };
  Object.defineProperty(pev, '__proto__', { value: { polluted: true }, enumerable: true });
  await b.raw(['MESSAGESENT', env({ seq: 15, gseq: 3, event: pev })]);
  await until(() => h.got.length === 3, 5000, 'the __proto__ event');
  assert.equal(h.got[2].id, 'proto');
  assert.equal({}.polluted, undefined);
  assert.deepEqual(Object.getOwnPropertyDescriptor(h.got[2].env.event, '__proto__').value, { polluted: true });
  // over tcp a body above maxFrame makes libzmq drop the link; the loop connects again
  const connects = h.loop.stats().connects;
  await b.raw(['MESSAGESENT', Buffer.alloc(40000, 0x41)]);
  await until(() => h.loop.stats().disconnects === 1 && h.loop.stats().connects === connects + 1, 5000, 'reconnect');
  await b.waitSubscribed(2);
  await b.publish('MESSAGESENT', msgEvent('after'));
  await until(() => h.got.length === 4, 5000, 'the event after the oversize drop');
  await h.loop.stop();
  await h.running;
  const st = h.loop.stats();
  assert.deepEqual(h.got.map((r) => r.id), ['ok1', 'ok2', 'proto', 'after']);
  assert.equal(st.bad_frames, 4);
  assert.equal(st.bad_msgpack, 5); // 4 GiB str, 4 Gi array, depth, 0xc1, the heartbeat
  assert.equal(st.not_map, 1);
  assert.equal(st.bad_version, 2);
  assert.equal(st.bad_envelope, 9); // 7 envelopes + 2 heartbeats
  assert.equal(st.bad_event, 2);
  assert.equal(st.dropped_malformed, 4 + 5 + 1 + 2 + 9 + 2);
  assert.equal(st.reserved, 4);
  assert.equal(st.heartbeats, 0);
  assert.equal(st.disconnects, 1);
  // ok1 gseq 1, ok2 gseq 2, proto gseq 3 (raw, seq 15 of MESSAGESENT: a gap of 12), after gseq 3 seq 3
  assert.equal(st.gaps, 12);
  assert.equal(st.lost, 0);
  b.close();
});

test('a C-written and a JS-written envelope with every int width arrive exact', async () => {
  const b = await new FakeBridge().open();
  const h = harness(DatafeedLoop, { bridges: [b] });
  await b.waitSubscribed();
  const ev = {
    id: 'ints', type: 'MESSAGESENT', initiator: { user: { userId: 9223372036854775807n } },
    payload: { messageSent: { message: { a: -9223372036854775808n, b: 18446744073709551615n, c: 4294967295, d: -2147483648, e: 9007199254740993n, f: 1.5 } } },
  };
  await b.publish('MESSAGESENT', ev);
  await until(() => h.got.length === 1);
  await h.loop.stop();
  await h.running;
  const m = h.got[0].payload.message;
  assert.equal(h.got[0].initiator.user.userId, 9223372036854775807n);
  assert.equal(m.a, -9223372036854775808n);
  assert.equal(m.b, 18446744073709551615n);
  assert.equal(m.c, 4294967295);
  assert.equal(m.d, -2147483648);
  assert.equal(m.e, 9007199254740993n);
  assert.equal(m.f, 1.5);
  b.close();
});

// A flooding replay endpoint (issue 9), as consumer_delivery's replay_flood and
// python_hostile: consumers/tests/replay_flooder.py answers the request with the
// one event asked for, its end marker and 200 unsolicited messages of 1 MiB
// while the loop cannot read (callbacks of 1 and 3 held, maxInFlight 2). The
// replay DEALER's receiveHighWaterMark is small and a DEALER does not drop:
// libzmq stops reading the connection, the flooder gets few out and this
// process grows by far less than 200 MiB. Then every event is handled once,
// the 200 counted in replay_unexpected.
test('a flooding replay endpoint is held back by TCP, its flood dropped and counted', async () => {
  const { spawn } = require('child_process');
  const path = require('path');
  const FLOOD_N = 200;
  const fl = spawn('/usr/bin/python3', [path.join(__dirname, '..', '..', 'tests', 'replay_flooder.py'), String(FLOOD_N)],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  let lastAt = Date.now();
  let buf = '';
  fl.stdout.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(Number(buf.slice(0, i)));
      buf = buf.slice(i + 1);
      lastAt = Date.now();
    }
  });
  const exited = new Promise((r) => fl.on('exit', (code) => r(code)));
  try {
    await until(() => lines.length >= 1, 10000, 'the flooder port');
    const rep = `tcp://127.0.0.1:${lines[0]}`;
    const b = await new FakeBridge({ replay: false }).open();
    let open;
    const gate = new Promise((r) => { open = r; });
    const h = harness(DatafeedLoop, {
      bridges: [], options: { maxInFlight: 2 },
      listeners: [{ name: 'A', accept: 'all', cb: (rec) => (rec.gseq === 1 || rec.gseq === 3 ? gate : undefined) }],
    });
    h.loop.connect(b.endpoint, rep);
    await b.waitSubscribed();
    await b.publish('MESSAGESENT', msgEvent('f1'));
    await b.publish('MESSAGESENT', msgEvent('f2'));
    await until(() => h.got.length >= 2, 5000, '1 and 2');
    await b.publish('MESSAGESENT', msgEvent('f3'), { lose: true }); // asked from the flooder
    fl.stdin.write(`${b.journal[2].frames[1].toString('hex')}\n`);
    global.gc && global.gc();
    const before = process.memoryUsage().rss;
    await b.publish('MESSAGESENT', msgEvent('f4'));
    await until(() => h.loop.stats().queue_waits >= 1 && h.got.length >= 3, 10000, 'the reader waiting');
    // how far the flooder gets: no new line for 1 s = held back (20 s at most)
    const end = Date.now() + 20000;
    lastAt = Date.now();
    while (lines.length - 1 < FLOOD_N && Date.now() < end && Date.now() - lastAt < 1000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const sent = lines.length - 1;
    const grown = Math.round((process.memoryUsage().rss - before) / 1024);
    process.stderr.write(`  replay_flood: the flooder sent ${sent} of ${FLOOD_N}, RSS grew ${grown} KiB\n`);
    assert.ok(sent < FLOOD_N / 2, `the flooder sent ${sent}`);
    assert.ok(grown < 64 * 1024, `RSS grew ${grown} KiB`);
    open();
    await until(() => h.got.length >= 4, 5000, '4 events');
    await until(() => h.loop.stats().replay_unexpected >= FLOOD_N, 20000, 'the flood read and dropped');
    await h.loop.stop();
    await h.running;
    const st = h.loop.stats();
    assert.deepEqual(h.gseqs().sort((x, y) => x - y), [1, 2, 3, 4]);
    assert.deepEqual([st.replay_unexpected, st.replayed, st.lost, st.bad_msgpack], [FLOOD_N, 1, 0, 0]);
    b.close();
  } finally {
    fl.stdin.end();
    assert.equal(await exited, 0);
  }
});
