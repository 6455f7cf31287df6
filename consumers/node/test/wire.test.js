'use strict';
// The decoder against the golden vectors (exact ints), the partition keys, the
// structural checks on hostile bodies, and the checkpoint file format.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const wire = require('../lib/wire');
const { partitionKey, fnv1a64, partition } = require('../lib/partition');
const ckpt = require('../lib/checkpoint');
const { golden, parseExact, intValue, expand } = require('./helpers');

const G = golden();

test('every golden valid vector decodes to its JSON value, ints exact', () => {
  let n = 0;
  let envelopes = 0;
  for (const vec of G.valid) {
    const [json, hex] = expand(vec);
    const value = wire.decode(Buffer.from(hex, 'hex')).value;
    const expected = parseExact(json);
    if (vec.envelope) {
      const e = vec.envelope;
      assert.deepStrictEqual(value, {
        v: 1, seq: intValue(e.seq), gseq: intValue(e.gseq), epoch: e.epoch, ts: intValue(e.ts), bot: intValue(e.bot), event: expected,
      }, vec.name);
      const m = wire.parseMessage([Buffer.from(vec.topic), Buffer.from(hex, 'hex')], 16 << 20);
      assert.equal(m.status, null, vec.name);
      assert.equal(m.bot, BigInt(e.bot));
      envelopes++;
    } else {
      assert.deepStrictEqual(value, expected, vec.name);
    }
    n++;
  }
  assert.equal(n, G.valid.length);
  assert.ok(envelopes >= 9);
  // the exact ones that matter
  const by = Object.fromEntries(G.valid.map((v) => [v.name, wire.decode(Buffer.from(expand(v)[1], 'hex')).value]));
  assert.equal(by.uint64_max, 18446744073709551615n);
  assert.equal(by.int64_min, -9223372036854775808n);
  assert.equal(by.int_2p53_plus_1, 9007199254740993n);
  assert.ok(Object.is(by.float_minus_0, -0));
});

test('golden keys: partition key, FNV-1a 64, member of 3 and of 7', () => {
  for (const k of G.keys) {
    const ev = parseExact(k.json);
    const pk = partitionKey(ev);
    assert.equal(pk, k.partition_key, k.name);
    assert.equal(fnv1a64(pk), BigInt(k.fnv1a64), k.name);
    assert.equal(partition(pk, 3), k.partition_of_3, k.name);
    assert.equal(partition(pk, 7), k.partition_of_7, k.name);
  }
  assert.equal(G.keys.length, 6);
});

test('golden bridge messages decode (heartbeats, end markers)', () => {
  for (const m of G.bridge_messages) {
    const v = wire.decode(Buffer.from(m.msgpack_hex, 'hex')).value;
    assert.ok(wire.isMap(v), m.name);
    for (const k of Object.keys(m.value)) assert.ok(k in v, `${m.name}: ${k}`);
  }
});

function refused(hex, why) {
  assert.throws(() => wire.decode(Buffer.from(hex, 'hex')), wire.WireError, why);
}

test('hostile bodies are refused before any allocation', () => {
  refused('dbffffffff41', 'str32 declaring 4 GiB');
  refused('c6ffffffff00', 'bin32 declaring 4 GiB');
  refused('ddffffffff01', 'array32 declaring 4 Gi items');
  refused('dfffffffffa16101', 'map32 declaring 4 Gi pairs');
  refused('c9ffffffff0100', 'ext32 declaring 4 GiB');
  refused('81a16191', 'truncated array');
  refused('8101a1', 'int key');
  refused('c1', 'reserved byte');
  refused('0101', 'trailing byte');
  refused('', 'empty');
  refused('91'.repeat(10000) + 'c0', 'depth 10 000');
  // the exact depth limit: 520 containers nest, 521 do not
  wire.decode(Buffer.from('91'.repeat(520) + 'c0', 'hex'));
  refused('91'.repeat(521) + 'c0', 'depth 521');
  // every proper prefix of a valid envelope is refused
  const vec = G.valid.find((v) => v.envelope);
  const buf = Buffer.from(vec.msgpack_hex, 'hex');
  for (let i = 0; i < buf.length; i++) assert.throws(() => wire.decode(buf.subarray(0, i)), wire.WireError);
});

test('a __proto__ key is an ordinary own key, in place, and pollutes nothing', () => {
  // {"a":1,"__proto__":{"polluted":true},"b":2}
  const hex = '83a16101a95f5f70726f746f5f5f81a8706f6c6c75746564c3a16202';
  const v = wire.decode(Buffer.from(hex, 'hex')).value;
  assert.deepEqual(Object.keys(v), ['a', '__proto__', 'b']);
  assert.deepEqual(Object.getOwnPropertyDescriptor(v, '__proto__').value, { polluted: true });
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
  assert.equal({}.polluted, undefined);
  assert.equal(v.b, 2);
});

test('checkpoint: format, atomic save, a C-written file loads, round trip', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-ckpt-'));
  const file = path.join(dir, 'w.ckpt');
  // the exact text libdfconsumer writes (consumers/README.md "Checkpoint")
  fs.writeFileSync(file, 'dfc-checkpoint 1\ne 20261127T084425Z-5aac0631 29\nd 31\nd 32\ne E2 9007199254740991\n');
  const { entries, ok } = ckpt.load(file);
  assert.ok(ok);
  assert.deepEqual(entries, [
    { epoch: '20261127T084425Z-5aac0631', gseq: 29, done: [31, 32] },
    { epoch: 'E2', gseq: 9007199254740991, done: [] },
  ]);
  ckpt.save(file, entries);
  assert.equal(fs.readFileSync(file, 'utf8'), 'dfc-checkpoint 1\ne 20261127T084425Z-5aac0631 29\nd 31\nd 32\ne E2 9007199254740991\n');
  assert.deepEqual(fs.readdirSync(dir), ['w.ckpt']); // no temp file left
  // missing file: nothing, fine; bad header: refused
  assert.deepEqual(ckpt.load(path.join(dir, 'none.ckpt')), { entries: [], ok: true });
  fs.writeFileSync(file, 'dfc-checkpoint 2\n');
  assert.equal(ckpt.load(file).ok, false);
  // a failed save (folder gone) leaves nothing and throws with the step
  assert.throws(() => ckpt.save(path.join(dir, 'no', 'x.ckpt'), entries), (e) => e.step === 'open');
  fs.rmSync(dir, { recursive: true });
});

test('dedupe window: (id, type) keys, eviction of the oldest, no id never deduplicated', () => {
  const { Dedupe } = require('../lib/dedupe');
  const d = new Dedupe(3);
  const r = [['a', 'X'], ['a', 'Y'], ['a', 'X'], ['b', 'X'], ['c', 'X'], ['a', 'X'], ['c', 'X'], [undefined, 'X'], [undefined, 'X'], ['a\u0000b', 'c'], ['a', '\u0000bc']]
    .map(([id, t]) => d.seen(id, t));
  assert.deepEqual(r, [false, false, true, false, false, false, true, false, false, false, false]);
  assert.equal(new Dedupe(0).seen('a', 'X'), false);
});
