'use strict';
// The command channel's golden vectors (schemas/golden/vectors.json "commands",
// written by schemas/golden/generate.py, independently of this package): every
// request's JSON view encoded here gives the golden bytes and fingerprint; the
// service methods give the golden bytes for the same call; every golden reply
// decodes to its view, and error replies become the CommandError they say.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const wire = require('../lib/wire');
const commands = require('../lib/commands');
const { MessageService, StreamService, UserService, CommandError } = require('..');
const { parseExact } = require('./helpers');

const FILE = process.env.DFC_GOLDEN || path.join(__dirname, '..', '..', '..', 'schemas', 'golden', 'vectors.json');
const V = JSON.parse(fs.readFileSync(FILE, 'utf8')).commands;
// the vectors come with the contract's "commands" section: one without the other is an error, not a skip
const CONTRACT = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'schemas', 'contract-v1.json'), 'utf8')).commands;

/** The view's JSON with {"$bin": hex} as bytes and exact ints (parseExact). */
function fromView(text) {
  const bins = (v) => {
    if (Array.isArray(v)) return v.map(bins);
    if (v === null || typeof v !== 'object') return v;
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === '$bin') return Buffer.from(v.$bin, 'hex');
    for (const k of keys) v[k] = bins(v[k]);
    return v;
  };
  return bins(parseExact(text));
}

const fingerprint = (op, argsBytes) => crypto.createHash('sha256').update(Buffer.concat([Buffer.from(op), Buffer.from([0]), argsBytes])).digest('hex');

test('the op names and error codes are contract-v1.json\'s, in its order; every service op is one', () => {
  const contract = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'schemas', 'contract-v1.json'), 'utf8')).commands;
  if (contract) {
    assert.deepEqual(commands.OPS, contract.ops.map((o) => o.op));
    assert.deepEqual(commands.CODES, [...contract.error_codes]);
  }
  const src = fs.readFileSync(path.join(__dirname, '..', 'lib', 'services.js'), 'utf8');
  const used = [...src.matchAll(/\.call\('([a-zA-Z.]+)'/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(used)].sort(), [...commands.OPS].sort());
});

test('the golden vectors are there: 15 requests, 43 bad requests, 16 replies', { skip: V === undefined && CONTRACT === undefined && `no "commands" in ${FILE} (nor in contract-v1.json)` }, () => {
  assert.ok(V, `contract-v1.json has "commands" and ${FILE} has none`);
  assert.equal(V.requests.length, 15);
  assert.equal(V.bad_requests.length, 43);
  assert.equal(V.replies.length, 16);
});

test('every golden request: its view encoded here is the golden bytes; its args give the golden fingerprint', { skip: V === undefined }, () => {
  let exact = 0;
  for (const vec of V.requests) {
    const value = fromView(vec.view);
    const keys = Object.keys(value);
    const hex = keys.join(',') === 'v,id,op,args' && value.v === 1
      ? commands.encodeRequest(value.id, value.op, value.args).toString('hex') // the client's own request form
      : wire.encode(value).toString('hex'); // without v, or with a key of a later version
    if (keys.join(',') === 'v,id,op,args') exact++;
    assert.equal(hex, vec.msgpack_hex, vec.name);
    assert.equal(fingerprint(vec.op, wire.encode(value.args)), vec.fingerprint, `${vec.name}: fingerprint`);
  }
  assert.equal(exact, 13);
});

test('the bad requests the client can write: the same bytes (the bridge, not the client, refuses them)', { skip: V === undefined }, () => {
  let n = 0;
  for (const vec of V.bad_requests) {
    if (vec.view === undefined || vec.name === 'bad_user_id_float' || vec.name === 'bad_trailing_bytes') continue;
    assert.equal(wire.encode(fromView(vec.view)).toString('hex'), vec.msgpack_hex, vec.name);
    n++;
  }
  assert.ok(n >= 35, `${n} checked`);
});

test('the service methods write the golden requests byte for byte', { skip: V === undefined }, async () => {
  const frames = [];
  const fake = { call: (op, args, o) => { frames.push(commands.encodeRequest(o.id, op, args).toString('hex')); return Promise.resolve(null); } };
  const m = new MessageService(fake);
  const s = new StreamService(fake);
  const u = new UserService(fake);
  const want = {};
  for (const vec of V.requests) want[vec.name] = vec.msgpack_hex;
  const SID = 'wTmSDJSNPXgB4iJ2Ou1B7n___oZxZ4O1dA';
  const MID = 'CszQa6uPAA9V2ZvK0dCl4X___oWnF5B8dA';
  const ROOM = 'aBcD1234efGH5678ijKL___oZxZ4O1dA';
  const calls = [
    ['cmd_update', () => m.updateMessage(SID, MID, '<messageML>Build <b>42</b> passed (edited)</messageML>', { data: {}, silent: false, id: 'upd-1' })],
    ['cmd_suppress', () => m.suppressMessage(MID, { id: 'sup-1' })],
    ['cmd_get', () => m.getMessage(MID, { id: 'get-1' })],
    ['cmd_create_im', () => s.createIm([68719476737, 9223372036854775807n], { id: 'im-1' })],
    ['cmd_add_member', () => s.addMemberToRoom(68719476737n, ROOM, { id: 'add-1' })],
    ['cmd_remove_member', () => s.removeMemberFromRoom(68719476737, ROOM, { id: 'rm-1' })],
    ['cmd_stream_info', () => s.getStream('lX1hwfmQ+AK/k/a/BB0y2n///q2+0KfbdA==', { id: 'info-1' })],
    ['cmd_users_by_ids', () => u.listUsersByIds([68719476737, 68719476738], { local: true, active: true, id: 'users-1' })],
  ];
  for (const [name, fn] of calls) {
    frames.length = 0;
    await fn();
    assert.equal(frames[0], want[name], name);
  }
});

test('every golden reply decodes to its view; error replies are the CommandError they say', { skip: V === undefined }, () => {
  const codes = new Set();
  for (const vec of V.replies) {
    const r = commands.parseReply(Buffer.from(vec.msgpack_hex, 'hex'));
    assert.equal(typeof r, 'object', `${vec.name}: ${r}`);
    assert.deepEqual(r, parseExact(vec.view), vec.name);
    assert.equal(r.replayed, vec.replayed, vec.name);
    if (!r.ok) {
      const e = new CommandError(r.error.code, r.error.message, { status: r.error.status === undefined ? 0 : Number(r.error.status), reply: r });
      assert.ok(commands.CODES.includes(e.code), `${vec.name}: ${e.code}`);
      codes.add(e.code);
      if (e.code === 'rejected') assert.ok(e.status >= 400 && e.status < 500, vec.name);
      if (e.code === 'busy') assert.ok(wire.asUint(r.error.retry_after_ms) > 0, vec.name);
    }
  }
  assert.deepEqual([...codes].sort(), [...commands.CODES].sort(), 'every error code has a golden reply');
});

test('the client decodes the golden replies through its socket path (request() hands back the view)', { skip: V === undefined }, async () => {
  // the frame handler of a client, fed directly: no socket needed
  const c = new commands.CommandClient({ endpoint: 'tcp://127.0.0.1:9', timeoutMs: 10000 });
  c._send = () => {}; // nothing goes out: the test feeds the replies
  for (const vec of V.replies) {
    const want = parseExact(vec.view);
    if (want.id === '') { // a reply to a request without a usable id matches no call
      c._onFrames([Buffer.from(vec.msgpack_hex, 'hex')]);
      continue;
    }
    if (!want.ok && want.error.code === 'busy') continue; // retried, not handed back (commands.test.js)
    const p = c.request('x.y', {}, { id: want.id });
    c._onFrames([Buffer.from(vec.msgpack_hex, 'hex')]);
    assert.deepEqual(await p, want, vec.name);
  }
  assert.equal(c.stats().unmatched, 1);
  c.close();
});
