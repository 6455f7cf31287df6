'use strict';
// The command channel end to end: the real dfpod and dfbridge (test/podbridge.py
// starts them with tests/pylib/dftest.py; ctest gives the binaries in DFPOD and
// DFBRIDGE), this package's services over tcp on 127.0.0.1. Every operation
// against the pod, its answer checked field by field and against the pod's own
// record (GET /admin/messages); the same id again is replayed with no second
// post; then examples/reply_listener.js answers N source messages: exactly one
// reply per message in its stream, and a second run of the example that handles
// every event again (replay from gseq 1, no checkpoint) posts nothing more and
// gets the first run's messages back (the default ids are the same).

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const crypto = require('crypto');
const path = require('path');
const readline = require('readline');
const { CommandClient, CommandError, DatafeedLoop, MessageService, StreamService, UserService, setLogSink } = require('..');

setLogSink(() => {});
const { DFPOD, DFBRIDGE } = process.env;
const skip = !DFPOD || !DFBRIDGE ? 'DFPOD and DFBRIDGE (the binaries) are not set: run it with ctest -R node_commands_e2e' : false;

const U1 = 68719476740; // users of the pod's generator (the bot is 68719476738)
const U2 = 68719476742;

/** podbridge.py as a child: resolves to {pod, publish, replay, commands, stop()}. */
async function podBridge(...mode) {
  const child = spawn('/usr/bin/python3', [path.join(__dirname, 'podbridge.py'), DFPOD, DFBRIDGE, ...mode], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  const waiting = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    const v = JSON.parse(l);
    if (waiting.length) waiting.shift()(v);
    else lines.push(v);
  });
  const exited = new Promise((r) => child.on('exit', r));
  const next = (ms) => new Promise((resolve, reject) => {
    if (lines.length) return resolve(lines.shift());
    const t = setTimeout(() => reject(new Error(`podbridge.py: no line in ${ms} ms`)), ms);
    waiting.push((v) => { clearTimeout(t); resolve(v); });
  });
  const hello = await next(60000);
  if (hello.error) throw new Error(`podbridge.py: ${hello.error}`);
  return {
    ...hello,
    async stop() {
      child.stdin.end('stop\n');
      const end = await next(30000);
      await exited;
      assert.deepEqual(end, { ok: true, fails: [] }, 'the bridge stopped cleanly (exit 0, no sanitizer report)');
    },
    async killBridge() {
      child.stdin.write('kill\n');
      assert.deepEqual(await next(60000), { restarted: true });
    },
    kill() { if (child.exitCode === null) child.kill('SIGKILL'); },
  };
}

async function admin(pb, method, what, body) {
  const r = await fetch(`${pb.pod}/admin/${what}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.status >= 200 && r.status < 300, `${method} /admin/${what}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The mark the bridge puts in a message's data (CONTRACT.md "Commands"): scope "" without CURVE. */
const mark = (id, scope = '') => crypto.createHash('sha256').update(`dfbridge-mark\0${scope}\0${id}`).digest('hex').slice(0, 32);
const markOf = (data) => JSON.parse(data)['dfbridge.request'];
const PML = (inner) => `<div data-format="PresentationML" data-version="2.0">${inner}</div>`;

async function until(cond, ms, what) {
  const end = performance.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out (${ms} ms) waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('every operation against the real bridge and pod', { skip, timeout: 90000 }, async () => {
  const pb = await podBridge();
  const c = new CommandClient({ endpoint: pb.commands, timeoutMs: 10000 });
  try {
    const m = new MessageService(c);
    const s = new StreamService(c);
    const u = new UserService(c);
    const room = (await admin(pb, 'POST', 'rooms', { name: 'node-e2e', members: [U1] })).id;
    assert.match(room, /^[A-Za-z0-9_-]{34}$/);

    // messages.send: a bare string, wrapped by the bridge; the mark in data
    const r1 = await c.request('messages.send', { stream_id: room, message: 'Hello <b>world</b>' }, { id: 'node-send-1' });
    assert.equal(r1.ok, true);
    assert.equal(r1.replayed, false);
    assert.equal(r1.found, false);
    const m1 = r1.result;
    assert.match(m1.messageId, /^[A-Za-z0-9_-]{34}$/);
    assert.equal(m1.message, PML('Hello <b>world</b>'));
    assert.equal(m1.stream.streamId, room);
    assert.equal(typeof m1.timestamp, 'bigint');
    assert.deepEqual(markOf(m1.data), { type: 'org.dfbridge.request', version: '1.0', id: mark('node-send-1') });
    let posts = await admin(pb, 'GET', 'messages');
    assert.equal(posts.length, 1);
    assert.deepEqual([posts[0].op, posts[0].streamId, posts[0].messageId, posts[0].message],
      ['create', room, m1.messageId, '<messageML>Hello <b>world</b></messageML>']);

    // the same id again: the recorded reply, no second post
    const again = await c.request('messages.send', { stream_id: room, message: 'Hello <b>world</b>' }, { id: 'node-send-1' });
    assert.deepEqual(again, { ...r1, replayed: true });
    // the same id with other args: bad_request, nothing posted
    await assert.rejects(m.sendMessage(room, 'Hello <b>moon</b>', { id: 'node-send-1' }), (e) => {
      assert.ok(e instanceof CommandError);
      assert.equal(e.code, 'bad_request');
      assert.match(e.message, /already used/);
      return true;
    });
    assert.equal((await admin(pb, 'GET', 'messages')).length, 1);

    // messages.send: the BDK Message form, EntityJSON with a 64-bit int, an attachment
    const big = 2n ** 60n + 1n;
    const m2 = await m.sendMessage(room, {
      content: '<messageML>See <span class="entity" data-entity-id="b1">build</span></messageML>',
      data: { b1: { type: 'org.example.build', version: '1.0', id: big } },
      attachments: [{ name: 'build.log', content: Buffer.from('ok\n'), contentType: 'text/plain' }],
    });
    assert.equal(m2.message, PML('See <span class="entity" data-entity-id="b1">build</span>'));
    assert.match(m2.data, /"id":1152921504606846977\b/, 'the 64-bit int is exact in the EntityJSON text');
    assert.equal(JSON.parse(m2.data).b1.type, 'org.example.build');
    assert.equal(markOf(m2.data).type, 'org.dfbridge.request');
    assert.deepEqual(m2.attachments.map((a) => [a.name, Number(a.size)]), [['build.log', 3]]);
    posts = await admin(pb, 'GET', 'messages');
    assert.equal(posts.length, 2);
    const att = posts[1].attachments;
    assert.equal(att.length, 1);
    assert.equal(att[0].name, 'build.log');
    assert.equal(att[0].sha256, crypto.createHash('sha256').update('ok\n').digest('hex'));

    // messages.update: a new id, replacing the old one
    const m3 = await m.updateMessage(room, m1.messageId, 'edited', { silent: false });
    assert.notEqual(m3.messageId, m1.messageId);
    assert.equal(m3.replacing, m1.messageId);
    assert.equal(m3.message, PML('edited'));
    posts = await admin(pb, 'GET', 'messages');
    assert.deepEqual([posts[2].op, posts[2].silent, posts[2].messageId], ['update', false, m3.messageId]);

    // messages.get: the message; an unknown id: null (Symphony's 204)
    const got = await m.getMessage(m3.messageId);
    assert.equal(got.messageId, m3.messageId);
    assert.equal(got.message, PML('edited'));
    assert.equal(await m.getMessage('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), null);

    // messages.suppress
    const sup = await m.suppressMessage(m3.messageId);
    assert.equal(sup.messageId, m3.messageId);
    assert.equal(sup.suppressed, true);

    // streams.createIm: the same members, the same IM
    const im1 = await s.createIm([U1]);
    const im2 = await s.createIm(U1);
    assert.match(im1.id, /^[A-Za-z0-9_-]{34}$/);
    assert.equal(im2.id, im1.id);

    // rooms.addMember / removeMember
    assert.deepEqual(await s.addMemberToRoom(U2, room), { format: 'TEXT', message: 'Member added' });
    assert.deepEqual(await s.removeMemberFromRoom(BigInt(U2), room), { format: 'TEXT', message: 'Member removed' });

    // streams.info
    const info = await s.getStream(room);
    assert.equal(info.id, room);
    assert.deepEqual(info.streamType, { type: 'ROOM' });
    assert.equal(info.roomAttributes.name, 'node-e2e');
    const imInfo = await s.getStream(im1.id);
    assert.deepEqual(imInfo.streamType, { type: 'IM' });
    assert.deepEqual(imInfo.streamAttributes.members.map(BigInt).sort(), [BigInt(U1), 68719476738n].sort());

    // users.lookup by ids, e-mails, usernames
    const byId = await u.listUsersByIds([U1], { local: true });
    assert.equal(byId.users.length, 1);
    assert.equal(byId.users[0].id, BigInt(U1)); // past 32 bits: BigInt, exact
    const { emailAddress, username } = byId.users[0];
    assert.ok(emailAddress && username);
    const byEmail = await u.listUsersByEmails([emailAddress]);
    assert.deepEqual(byEmail.users.map((x) => x.emailAddress), [emailAddress]);
    const byName = await u.listUsersByUsernames([username], { active: true });
    assert.deepEqual(byName.users.map((x) => x.username), [username]);
    assert.equal(await u.listUsersByIds([68719476739]), null, 'nobody: null (204)');

    // errors: Symphony's 400 as rejected (status and message), nothing posted
    const before = (await admin(pb, 'GET', 'messages')).length;
    await assert.rejects(m.sendMessage('NoSuchStreamAAAAAAAAAAAAAAAAAAAAAA', 'x'), (e) => {
      assert.deepEqual([e.code, e.status], ['rejected', 400]);
      assert.match(e.message, /Stream NoSuchStreamAAAAAAAAAAAAAAAAAAAAAA not found/);
      return true;
    });
    await assert.rejects(m.sendMessage(room, '<messageML><b>open</messageML>'), (e) => {
      assert.deepEqual([e.code, e.status], ['rejected', 400]);
      assert.match(e.message, /^Invalid messageML/);
      return true;
    });
    // a request the client lets through and the bridge refuses: bad_request
    await assert.rejects(c.call('messages.send', { stream_id: room }), { code: 'bad_request' });
    await assert.rejects(c.call('messages.blast', { stream_id: room, message: 'x' }), { code: 'bad_request' });
    assert.equal((await admin(pb, 'GET', 'messages')).length, before);
    assert.equal(c.stats().resent, 0);
    assert.equal(c.stats().unmatched, 0);
  } finally {
    c.close();
    try {
      await pb.stop();
    } finally {
      pb.kill();
    }
  }
});

/** examples/reply_listener.js as a child; lines: its stdout. */
function example(pb, fromGseq) {
  const env = { ...process.env, DFCONSUMER_ENDPOINT: pb.publish, DFCONSUMER_COMMANDS: pb.commands, DFCONSUMER_FROM_GSEQ: String(fromGseq) };
  const p = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'reply_listener.js')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  readline.createInterface({ input: p.stdout }).on('line', (l) => lines.push(l));
  const exited = new Promise((r) => p.on('exit', (code, sig) => r({ code, sig })));
  const replied = () => {
    const map = new Map();
    for (const l of lines) {
      const mm = / replied (\S+) to (\S+)$/.exec(l);
      if (mm) map.set(mm[2], mm[1]);
    }
    return map;
  };
  return { p, lines, exited, replied };
}

function sourceEvent(i, stream) {
  const mid = `nodeSrc${String(i).padStart(4, '0')}AbCdEfGhIjKlMnOpQ___dA`;
  return {
    id: `node-ev-${i}`, messageId: mid, timestamp: 1767225600000 + i, type: 'MESSAGESENT',
    initiator: { user: { userId: U1, displayName: 'Jane Doe' } },
    payload: { messageSent: { message: { messageId: mid, timestamp: 1767225600000 + i, message: PML(`question ${i}`), user: { userId: U1 }, stream: { streamId: stream, streamType: 'ROOM' } } } },
  };
}

test('examples/reply_listener.js: exactly one reply per message, and none more when every event is handled again', { skip, timeout: 120000 }, async () => {
  const N = 20;
  const pb = await podBridge();
  const kids = [];
  try {
    const rooms = [];
    for (let r = 0; r < 4; r++) rooms.push((await admin(pb, 'POST', 'rooms', { name: `replies-${r}`, members: [U1] })).id);
    const sources = Array.from({ length: N + 1 }, (_, i) => sourceEvent(i + 1, rooms[i % 4]));
    // fromGseq 1: the worker asks the bridge's replay for what came before it subscribed
    const run1 = example(pb, 1);
    kids.push(run1);
    await admin(pb, 'POST', 'events', sources.slice(0, N));
    const creates = async () => (await admin(pb, 'GET', 'messages')).filter((p) => p.op === 'create');
    await until(async () => (await creates()).length >= N, 30000, `${N} replies`);
    // one more after them: once it is answered, every echo of the N replies (the bot's own
    // MESSAGESENT, enqueued before it) has reached the worker, and the BDK filter left them alone
    await admin(pb, 'POST', 'events', sources.slice(N));
    await until(async () => run1.replied().size === N + 1, 30000, 'the last reply');
    run1.p.kill('SIGTERM');
    assert.deepEqual(await run1.exited, { code: 0, sig: null });
    const posts = await creates();
    assert.equal(posts.length, N + 1, 'exactly one reply per source message');
    const first = run1.replied();
    for (let i = 1; i <= N + 1; i++) {
      const src = sources[i - 1];
      const srcMid = src.messageId;
      const mine = posts.filter((p) => p.message.includes(srcMid));
      assert.equal(mine.length, 1, `one reply to ${srcMid}`);
      assert.equal(mine[0].streamId, src.payload.messageSent.message.stream.streamId, 'in the source stream');
      assert.equal(markOf(mine[0].data).id, mark(`node-ev-${i}/replier/1`), 'the default id: <event id>/<listener id>/1');
      assert.equal(first.get(srcMid), mine[0].messageId);
    }

    // a second worker handles every event again (no checkpoint, replay from gseq 1): the same
    // ids, so the bridge answers from its record: the same messages, nothing posted
    const run2 = example(pb, 1);
    kids.push(run2);
    await until(() => run2.replied().size === N + 1, 30000, 'the replayed replies');
    run2.p.kill('SIGTERM');
    assert.deepEqual(await run2.exited, { code: 0, sig: null });
    assert.deepEqual([...run2.replied()].sort(), [...first].sort());
    assert.equal((await creates()).length, N + 1, 'nothing more posted');
    await pb.stop();
  } finally {
    for (const k of kids) if (k.p.exitCode === null) k.p.kill('SIGKILL');
    pb.kill();
  }
});

test('the bridge killed (SIGKILL) while a create is on the wire: the client resends the same id to the restarted bridge, which finds the message (found), one post', { skip, timeout: 90000 }, async () => {
  const pb = await podBridge();
  const c = new CommandClient({ endpoint: pb.commands, timeoutMs: 1000, attempts: 15 });
  try {
    const room = (await admin(pb, 'POST', 'rooms', { name: 'node-kill', members: [U1] })).id;
    // the pod stores the message, then holds its answer 4 s: the bridge dies meanwhile
    await admin(pb, 'POST', 'faults', [{ endpoint: 'msgcreate', action: 'slow', delay_ms: 4000, commit: true }]);
    const t0 = performance.now();
    const pending = c.request('messages.send', { stream_id: room, message: 'once only' }, { id: 'node-kill-1' });
    await until(async () => (await admin(pb, 'GET', 'messages')).length === 1, 10000, 'the message stored by the pod');
    await pb.killBridge();
    const r = await pending;
    const dt = performance.now() - t0;
    const posts = await admin(pb, 'GET', 'messages');
    assert.equal(posts.length, 1, 'one message');
    assert.equal(r.ok, true, JSON.stringify(r.error));
    assert.equal(r.found, true, 'settled by finding the mark');
    assert.equal(r.replayed, false);
    assert.equal(r.result.messageId, posts[0].messageId);
    assert.equal(markOf(r.result.data).id, mark('node-kill-1'));
    assert.ok(c.stats().resent >= 1, 'sent again after the restart');
    assert.ok(dt < 30000, `${dt} ms`);
    // and the same id once more: the recorded outcome
    const again = await c.request('messages.send', { stream_id: room, message: 'once only' }, { id: 'node-kill-1' });
    assert.deepEqual(again, { ...r, replayed: true });
    assert.equal((await admin(pb, 'GET', 'messages')).length, 1);
    await pb.stop();
  } finally {
    c.close();
    pb.kill();
  }
});

test('CURVE and bridge.commandsAllow: each client certificate calls what its entry lists; the scope of the ids is its name', { skip, timeout: 90000 }, async () => {
  const pb = await podBridge('curve');
  const key = (name, secret = false) => path.join(pb.certs, `${name}.key${secret ? '_secret' : ''}`);
  const client = (name, o = {}) => new CommandClient({ endpoint: pb.commands, serverKey: key('bridge'), cert: key(name, true), timeoutMs: 3000, ...o });
  const alice = client('alice');
  const bob = client('bob');
  const carol = client('carol', { timeoutMs: 500, attempts: 2 });
  // the loop's client takes the loop's CURVE options
  const loop = new DatafeedLoop(null, { commands: pb.commands, serverKey: key('bridge'), cert: key('bob', true) });
  try {
    const room = (await admin(pb, 'POST', 'rooms', { name: 'node-curve', members: [U1] })).id;
    assert.equal((await new StreamService(alice).getStream(room)).id, room, "alice: streams.* allowed");
    await assert.rejects(new MessageService(alice).sendMessage(room, 'from alice', { id: 'same-id' }), (e) => {
      assert.equal(e.code, 'not_allowed');
      assert.match(e.message, /alice/);
      return true;
    });
    // bob's "same-id" is not alice's: another scope; the mark is made with bob's name
    const sent = await new MessageService(bob).sendMessage(room, 'from bob', { id: 'same-id' });
    assert.equal(markOf(sent.data).id, mark('same-id', 'bob'));
    const viaLoop = await loop.messages.sendMessage(room, 'from the loop', { id: 'loop-1' });
    assert.equal(markOf(viaLoop.data).id, mark('loop-1', 'bob'));
    assert.deepEqual((await admin(pb, 'GET', 'messages')).map((p) => p.message),
      ['<messageML>from bob</messageML>', '<messageML>from the loop</messageML>']);
    // carol's key is not in the clients directory: refused handshakes, counted; no reply ever
    await assert.rejects(new StreamService(carol).getStream(room), { code: 'timeout' });
    assert.ok(carol.stats().auth_failures >= 1, JSON.stringify(carol.stats()));
    assert.equal(alice.stats().auth_failures, 0);
    await pb.stop();
  } finally {
    for (const c of [alice, bob, carol]) c.close();
    loop._closeCommands();
    pb.kill();
  }
});
