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

test('checkpoint: truncated, damaged or hand-edited files are cut, never trusted (issue 9)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-ckpt-hostile-'));
  const file = path.join(dir, 'w.ckpt');
  try {
    // a line over 190 bytes: malformed from there, what came before kept
    fs.writeFileSync(file, `dfc-checkpoint 1\ne a 7\nd ${'0'.repeat(189)}8\nd 9\n`);
    assert.deepEqual(ckpt.load(file), { entries: [{ epoch: 'a', gseq: 7, done: [] }], ok: false });
    // an epoch of 128 bytes
    fs.writeFileSync(file, `dfc-checkpoint 1\ne a 7\ne ${'x'.repeat(128)} 3\n`);
    assert.deepEqual(ckpt.load(file), { entries: [{ epoch: 'a', gseq: 7, done: [] }], ok: false });
    // bigger than any writer makes (~24 MB): read up to 32 MiB, then malformed; d list bounded
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, 'dfc-checkpoint 1\ne a 7\n');
    const n = Math.floor((32 * 2 ** 20) / 19) + 1000; // 19 bytes a line (exact Numbers: below 2^53)
    const base = 1e15;
    for (let at = 0; at < n; at += 65536) {
      let chunk = '';
      for (let g = at; g < Math.min(n, at + 65536); g++) chunk += `d ${base + g}\n`;
      fs.writeSync(fd, chunk);
    }
    fs.writeSync(fd, 'e b 3\n');
    fs.closeSync(fd);
    const r = ckpt.load(file);
    assert.equal(r.ok, false);
    assert.equal(r.entries.length, 1);
    assert.equal(r.entries[0].epoch, 'a');
    assert.equal(r.entries[0].done.length, 65536);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a watermark beyond the bridge head is not trusted; handled gseqs beyond it forgotten', () => {
  const { Watermarks } = require('../lib/watermark');
  const logs = [];
  const wm = new Watermarks('/nonexistent/w.ckpt', (lvl, m) => logs.push([lvl, m]));
  const w = wm.get('E', true);
  w.gseq = Infinity; // what the loader makes of a number above 2^53
  w.done = [Infinity];
  assert.equal(wm.checkHead(w, 5), false);
  assert.deepEqual(w.done, []);
  w.gseq = 3;
  w.done = [4, 9];
  assert.equal(wm.checkHead(w, 5), true);
  assert.deepEqual(w.done, [4]);
  assert.equal(logs.filter(([lvl]) => lvl === 'error').length, 2);
});

test('dedupe: ids over 256 characters are kept as SHA-256 (bounded in bytes)', () => {
  const { Dedupe } = require('../lib/dedupe');
  const d = new Dedupe(2);
  assert.equal(d.seen('x'.repeat(1e6), 'T'), false);
  assert.equal(d.seen('x'.repeat(1e6), 'T'), true);
  assert.equal(d.seen(`${'x'.repeat(999999)}y`, 'T'), false);
  assert.ok(d.ids.every((k) => k === undefined || k.length < 300));
});

test('the heartbeat replay endpoint rule: the table all three libraries check', () => {
  const { cases } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'tests', 'replay_advert.json'), 'utf8'));
  assert.ok(cases.length >= 17);
  for (const c of cases) assert.equal(wire.replayAdvert(c.pub, c.adv, c.any_host), c.want, JSON.stringify(c));
  assert.deepEqual([0, 16 << 20, 1 << 20, 65536].map(wire.replayRcvhwm), [4, 4, 63, 256]);
});
