'use strict';
// The command client's mechanics against a tiny fake ROUTER in this process
// (what the real bridge cannot show on demand): a timeout and the resend with
// the same id and the same bytes, late and foreign replies dropped and counted,
// busy retried after retry_after_ms within the budget, error replies as
// CommandError, close() with calls pending, many calls at once matched by id,
// the default ids inside listener jobs, and the args every service method
// builds.

const test = require('node:test');
const assert = require('node:assert/strict');
const zmq = require('zeromq');
const wire = require('../lib/wire');
const {
  CommandClient, CommandError, DatafeedLoop, MessageService, StreamService, UserService, setLogSink,
} = require('..');
const { FakeBridge, msgEvent, until, cleanup, harness } = require('./fakebridge');

test.after(cleanup);
setLogSink(() => {});

/** A ROUTER on 127.0.0.1:<any>; every request goes to onRequest(req) where req =
    {rid, frames, frame, msg (decoded), reply(map), raw(frames)}; reqs keeps them all. */
async function fakeRouter(onRequest) {
  const r = new zmq.Router({ linger: 0 });
  await r.bind('tcp://127.0.0.1:*');
  const reqs = [];
  let closed = false;
  (async () => {
    while (!closed) {
      let frames;
      try {
        frames = await r.receive();
      } catch (_) {
        return;
      }
      const [rid, ...rest] = frames;
      const frame = rest[rest.length - 1];
      const req = {
        rid, frames: rest, frame, msg: wire.decode(frame).value,
        reply: (m) => r.send([rid, wire.encode(m)]),
        raw: (fs) => r.send([rid, ...fs]),
      };
      reqs.push(req);
      if (onRequest) await onRequest(req, reqs.length);
    }
  })();
  return { endpoint: r.lastEndpoint, reqs, close: () => { closed = true; r.close(); } };
}

const ok = (id, result, extra = {}) => ({ v: 1, id, ok: true, result, replayed: false, found: false, ...extra });
const err = (id, error) => ({ v: 1, id, ok: false, error, replayed: false, found: false });

test('no reply within timeoutMs: the same request (same id, same bytes) is sent again; the answer resolves the call', async () => {
  const f = await fakeRouter((req, n) => (n === 2 ? req.reply(ok(req.msg.id, { id: 'IM1' })) : undefined));
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 300, attempts: 3 });
  const t0 = performance.now();
  const res = await c.call('streams.createIm', { user_ids: [7215545058313n] }, { id: 'job-1' });
  const dt = performance.now() - t0;
  assert.deepEqual(res, { id: 'IM1' });
  assert.equal(f.reqs.length, 2);
  assert.ok(f.reqs[0].frame.equals(f.reqs[1].frame), 'the resend is byte-identical');
  assert.deepEqual(f.reqs[0].msg, { v: 1, id: 'job-1', op: 'streams.createIm', args: { user_ids: [7215545058313n] } });
  assert.equal(f.reqs[0].frame.toString('hex'), '84a17601a26964a56a6f622d31a26f70b073747265616d732e637265617465496da46172677381a8757365725f69647391cf0000069000000409');
  assert.equal(f.reqs[0].frames.length, 1, 'one frame, no delimiter');
  assert.ok(dt >= 290, `answered after the resend (${dt} ms)`);
  const s = c.stats();
  assert.deepEqual([s.calls, s.sent, s.resent, s.timeouts, s.replies, s.unmatched], [1, 2, 1, 1, 1, 0]);
  c.close();
  f.close();
});

test('no reply at all: code timeout after `attempts` sends of the same id', async () => {
  const f = await fakeRouter();
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 150, attempts: 3 });
  await assert.rejects(c.call('messages.get', { message_id: 'M1' }, { id: 'x' }), (e) => {
    assert.ok(e instanceof CommandError);
    assert.equal(e.code, 'timeout');
    assert.equal(e.id, 'x');
    assert.equal(e.reply, null);
    assert.match(e.message, /after 3 attempt\(s\) of 150 ms/);
    return true;
  });
  assert.equal(f.reqs.length, 3);
  assert.deepEqual(new Set(f.reqs.map((r) => r.msg.id)), new Set(['x']));
  assert.equal(c.stats().timeouts, 3);
  assert.equal(c.pending, 0);
  c.close();
  f.close();
});

test('late and foreign replies are dropped and counted; the right one resolves the call', async () => {
  let first = null;
  const f = await fakeRouter(async (req, n) => {
    if (n === 1) { first = req; return; } // answered late, after the resend
    await req.reply(ok('someone-else', 1)); // no call waits for it
    await req.reply(ok(req.msg.id, { n: 2 }));
    await first.reply(ok(req.msg.id, { n: 1 })); // the first send's answer, late
  });
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 200, attempts: 2 });
  const res = await c.call('messages.get', { message_id: 'M1' }, { id: 'late' });
  assert.deepEqual(res, { n: 2 });
  await until(() => c.stats().unmatched === 2, 2000, 'two unmatched replies');
  const s = c.stats();
  assert.deepEqual([s.replies, s.unmatched, s.bad_replies], [1, 2, 0]);
  c.close();
  f.close();
});

test('busy: sent again after retry_after_ms (same id); busy past the budget rejects with code busy', async () => {
  const times = [];
  const f = await fakeRouter((req, n) => {
    times.push(performance.now());
    if (req.msg.id === 'b1') {
      return n === 1 ? req.reply(err('b1', { code: 'busy', message: 'queue full', retry_after_ms: 250 })) : req.reply(ok('b1', null));
    }
    return req.reply(err(req.msg.id, { code: 'busy', message: 'queue full', retry_after_ms: 5000 }));
  });
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 1000, attempts: 2 });
  assert.equal(await c.call('messages.get', { message_id: 'M' }, { id: 'b1' }), null);
  assert.equal(f.reqs.length, 2);
  assert.ok(times[1] - times[0] >= 245, `waited ${times[1] - times[0]} ms`);
  assert.ok(f.reqs[0].frame.equals(f.reqs[1].frame));
  assert.equal(c.stats().busy_retries, 1);
  // 5 s suggested, 2 s of budget: no wait, the busy reply is the answer
  await assert.rejects(c.call('messages.get', { message_id: 'M' }, { id: 'b2' }), (e) => {
    assert.equal(e.code, 'busy');
    assert.equal(e.retryAfterMs, 5000);
    assert.equal(e.reply.error.message, 'queue full');
    return true;
  });
  assert.equal(f.reqs.length, 3);
  assert.equal(c.stats().busy_retries, 1);
  c.close();
  f.close();
});

test('error replies reject with CommandError: code, message, status, reply', async () => {
  const f = await fakeRouter((req) => req.reply(err(req.msg.id, { code: 'rejected', message: 'Invalid messageML: x', status: 400 })));
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 2000 });
  await assert.rejects(c.call('messages.send', { stream_id: 's', message: '<b>' }, { id: 'r1' }), (e) => {
    assert.ok(e instanceof CommandError);
    assert.deepEqual([e.code, e.message, e.status, e.id, e.op], ['rejected', 'Invalid messageML: x', 400, 'r1', 'messages.send']);
    assert.equal(e.reply.ok, false);
    return true;
  });
  // request() hands the reply over as it is
  const r = await c.request('messages.send', { stream_id: 's', message: '<b>' }, { id: 'r2' });
  assert.deepEqual(r, err('r2', { code: 'rejected', message: 'Invalid messageML: x', status: 400 }));
  c.close();
  f.close();
});

test('replayed and found are in the reply; a REQ-style delimiter before the reply is accepted', async () => {
  const f = await fakeRouter((req) => req.raw([Buffer.alloc(0), wire.encode(ok(req.msg.id, { messageId: 'M' }, { replayed: true, found: true }))]));
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 2000 });
  const r = await c.request('messages.get', { message_id: 'M' }, { id: 'q' });
  assert.deepEqual(r, ok('q', { messageId: 'M' }, { replayed: true, found: true }));
  c.close();
  f.close();
});

test('malformed replies are dropped and counted (bad_replies); the call still gets its answer', async () => {
  const f = await fakeRouter(async (req) => {
    await req.raw([Buffer.from([0xc1])]); // not msgpack
    await req.raw([wire.encode([1, 2])]); // not a map
    await req.raw([wire.encode({ v: 2, id: req.msg.id, ok: true, result: 1 })]); // another version
    await req.raw([wire.encode({ v: 1, id: req.msg.id, ok: false, error: 'x' })]); // error not a map
    await req.raw([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]); // 3 frames
    await req.reply(ok(req.msg.id, 'fine'));
  });
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 2000 });
  assert.equal(await c.call('messages.get', { message_id: 'M' }), 'fine');
  assert.equal(c.stats().bad_replies, 5);
  assert.equal(c.stats().replies, 1);
  c.close();
  f.close();
});

test('close() with calls pending: each rejects with code closed; later calls too', async () => {
  const f = await fakeRouter();
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 10000 });
  const calls = [1, 2, 3].map((i) => c.call('messages.get', { message_id: `M${i}` }, { id: `c${i}` }));
  await until(() => f.reqs.length === 3, 2000, 'three requests');
  const t0 = performance.now();
  c.close();
  const res = await Promise.allSettled(calls);
  assert.ok(performance.now() - t0 < 500);
  assert.deepEqual(res.map((r) => [r.status, r.reason.code, r.reason.id]), [['rejected', 'closed', 'c1'], ['rejected', 'closed', 'c2'], ['rejected', 'closed', 'c3']]);
  await assert.rejects(c.call('messages.get', { message_id: 'M' }), { code: 'closed' });
  c.close(); // idempotent
  f.close();
});

test('200 calls at once, answered in reverse order: each gets its own result', async () => {
  const held = [];
  const f = await fakeRouter(async (req) => {
    held.push(req);
    if (held.length === 200) for (const r of held.reverse()) await r.reply(ok(r.msg.id, { echo: r.msg.args.n }));
  });
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 5000 });
  const res = await Promise.all(Array.from({ length: 200 }, (_, n) => c.call('messages.get', { message_id: 'M', n })));
  assert.deepEqual(res.map((r) => r.echo), Array.from({ length: 200 }, (_, n) => n));
  assert.equal(new Set(f.reqs.map((r) => r.msg.id)).size, 200);
  for (const r of f.reqs) assert.match(r.msg.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'outside a job: a UUID v4');
  assert.equal(c.stats().resent, 0);
  c.close();
  f.close();
});

test('a bridge that is down: 3000 calls fill the DEALER\'s pipe, a send past it fails after 100 ms (send_errors), those of answered calls are skipped, every call ends in timeout in time', async () => {
  const net = require('net');
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r)); // nothing listens there now: connection refused
  const c = new CommandClient({ endpoint: `tcp://127.0.0.1:${port}`, timeoutMs: 400, attempts: 1 });
  const t0 = performance.now();
  const res = await Promise.allSettled(Array.from({ length: 3000 }, (_, n) => c.call('messages.get', { message_id: 'M', n })));
  const dt = performance.now() - t0;
  assert.deepEqual([...new Set(res.map((r) => r.reason.code))], ['timeout']);
  const st = c.stats();
  assert.ok(st.send_errors >= 1 && st.send_errors <= 20, JSON.stringify(st)); // ~400 ms of 100 ms waits
  assert.equal(st.timeouts, 3000);
  assert.equal(c.pending, 0);
  assert.ok(dt < 3000, `${dt} ms`);
  c.close();
});

test('ids: the same id twice at once is refused; bad ids are TypeErrors, nothing sent', async () => {
  const f = await fakeRouter();
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 10000 });
  const p = c.call('messages.get', { message_id: 'M' }, { id: 'dup' });
  await assert.rejects(c.call('messages.get', { message_id: 'M' }, { id: 'dup' }), TypeError);
  await assert.rejects(c.call('messages.get', {}, { id: '' }), TypeError);
  await assert.rejects(c.call('messages.get', {}, { id: 'a\nb' }), /control/);
  await assert.rejects(c.call('messages.get', {}, { id: 'a\u007fb' }), /control/);
  await assert.rejects(c.call('messages.get', {}, { id: 'a\ud800' }), /lone surrogate/);
  await assert.rejects(c.call('messages.get', {}, { id: 'é'.repeat(65) }), /130 bytes/);
  const ok128 = c.call('messages.get', {}, { id: 'é'.repeat(64) }); // 128 bytes: fine
  await until(() => f.reqs.length === 2, 2000, 'two requests');
  c.close();
  await assert.rejects(p, { code: 'closed' });
  await assert.rejects(ok128, { code: 'closed' });
  assert.deepEqual(f.reqs.map((r) => r.msg.id), ['dup', 'é'.repeat(64)]);
  f.close();
});

test('default ids in listener jobs: "<event id>/<listener id>/<n>", n counting every call of the job', async () => {
  const f = await fakeRouter((req) => req.reply(ok(req.msg.id, { messageId: `reply-${req.msg.id}` })));
  const b = await new FakeBridge().open();
  const results = [];
  const warnings = [];
  setLogSink((line) => { if (/ WARN .*default id/.test(line)) warnings.push(line); });
  const long = 'x'.repeat(130);
  const h = harness(DatafeedLoop, {
    bridges: [b],
    options: { commands: f.endpoint, commandsTimeoutMs: 3000 },
    listeners: [
      {
        name: 'replier',
        accept: 'all',
        cb: async (rec) => {
          results.push(await h.loop.messages.sendMessage('s1', 'hi'));
          await h.loop.messages.getMessage('m', { id: `explicit-${rec.id || 'none'}` }); // counts as call 2
          await assert.rejects(h.loop.commands.call('', {}), TypeError); // counts as call 3, nothing sent
          results.push(await h.loop.messages.sendMessage('s1', 'again')); // call 4
        },
      },
      { accept: 'all', cb: async () => { await h.loop.streams.getStream('s1'); } }, // no name: L2
      { name: long, accept: 'all', cb: async () => { await h.loop.streams.getStream('s1'); } }, // id > 128 bytes
    ],
  });
  await b.waitSubscribed(1, 5000);
  await b.publish('MESSAGESENT', msgEvent('ev1'));
  await b.publish('MESSAGESENT', msgEvent('ev2'));
  const noId = msgEvent('x');
  delete noId.id;
  await b.publish('MESSAGESENT', noId); // no event id: random ids
  await until(() => f.reqs.length === 15, 5000, '15 requests');
  await h.loop.stop();
  await h.running;
  setLogSink(() => {});
  const ids = f.reqs.map((r) => r.msg.id);
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  assert.deepEqual(ids.filter((i) => !uuid.test(i)).sort(), [
    'ev1/L2/1', 'ev1/replier/1', 'ev1/replier/4', 'ev2/L2/1', 'ev2/replier/1', 'ev2/replier/4',
    'explicit-ev1', 'explicit-ev2', 'explicit-none',
  ]);
  assert.equal(ids.filter((i) => uuid.test(i)).length, 6, 'the long listener x 3 events, the event without id x 3 calls');
  assert.equal(warnings.length, 7); // and the refused call of the event without id
  assert.match(warnings[0], /default id would be empty, longer than 128 bytes or not valid: a random id is used instead/);
  assert.equal(results.length, 6);
  const resIds = results.map((r) => r.messageId.slice(6));
  assert.deepEqual(resIds.filter((i) => !uuid.test(i)).sort(), ['ev1/replier/1', 'ev1/replier/4', 'ev2/replier/1', 'ev2/replier/4']);
  assert.equal(resIds.filter((i) => uuid.test(i)).length, 2);
  // the loop closed its client when start() returned
  assert.equal(h.loop._commands, null);
  b.close();
  f.close();
});

test('a loop without the commands option: the services reject with a clear Error', async () => {
  const loop = new DatafeedLoop(null, {});
  await assert.rejects(loop.messages.sendMessage('s', 'hi'), /no command channel: give it the option commands/);
  assert.throws(() => new DatafeedLoop(null, { commands: 5 }), /option commands/);
});

test('service methods build the args of D2', async () => {
  const f = await fakeRouter((req) => req.reply(ok(req.msg.id, null)));
  const c = new CommandClient({ endpoint: f.endpoint, timeoutMs: 3000 });
  const m = new MessageService(c);
  const s = new StreamService(c);
  const u = new UserService(c);
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
  await m.sendMessage('s1', '<messageML>hi</messageML>', { id: 'i1' });
  await m.sendMessage('s1', 'x</messageML>'); // ends with the tag: as it is
  await m.sendMessage('s1', 'plain', { data: { a: { type: 'x', n: 2n ** 60n } }, version: '2.0', attachments: [{ name: 'a.png', content: png, contentType: 'image/png', preview: png }] });
  await m.sendMessage('s1', { content: 'obj', data: '{"k":{}}', attachments: [{ name: 'b.txt', content: Buffer.from('B') }] }, { data: { ignored: 1 }, version: '1.0' });
  await m.updateMessage('s1', 'm1', 'new', { silent: false });
  await m.updateMessage('s1', 'm1', 'newer', { version: '', data: '' });
  await m.suppressMessage('m1');
  await m.getMessage('m1');
  await s.createIm(7215545058313);
  await s.createIm([1, 2n ** 62n]);
  await s.addMemberToRoom(12, 'r1');
  await s.removeMemberFromRoom(12n, 'r1');
  await s.getStream('s1');
  await u.listUsersByIds([1, 2], { local: true, active: false });
  await u.listUsersByEmails(['a@b.c']);
  await u.listUsersByUsernames(['bob'], { local: false, active: true });
  const got = f.reqs.map((r) => [r.msg.op, r.msg.args]);
  assert.deepEqual(got, [
    ['messages.send', { stream_id: 's1', message: '<messageML>hi</messageML>' }],
    ['messages.send', { stream_id: 's1', message: 'x</messageML>' }],
    ['messages.send', { stream_id: 's1', message: '<messageML>plain</messageML>', data: { a: { type: 'x', n: 2n ** 60n } }, version: '2.0', attachments: [{ name: 'a.png', content: png, content_type: 'image/png', preview: png }] }],
    ['messages.send', { stream_id: 's1', message: '<messageML>obj</messageML>', data: '{"k":{}}', version: '1.0', attachments: [{ name: 'b.txt', content: Buffer.from('B') }] }],
    ['messages.update', { stream_id: 's1', message_id: 'm1', message: '<messageML>new</messageML>', silent: false }],
    ['messages.update', { stream_id: 's1', message_id: 'm1', message: '<messageML>newer</messageML>', silent: true }], // "" data/version: left out
    ['messages.suppress', { message_id: 'm1' }],
    ['messages.get', { message_id: 'm1' }],
    ['streams.createIm', { user_ids: [7215545058313n] }],
    ['streams.createIm', { user_ids: [1, 2n ** 62n] }],
    ['rooms.addMember', { stream_id: 'r1', user_id: 12 }],
    ['rooms.removeMember', { stream_id: 'r1', user_id: 12 }], // 12n: the shortest form too
    ['streams.info', { stream_id: 's1' }],
    ['users.lookup', { user_ids: [1, 2], local: true, active: false }],
    ['users.lookup', { emails: ['a@b.c'], local: false }],
    ['users.lookup', { usernames: ['bob'], active: true }],
  ]);
  assert.equal(f.reqs[0].msg.id, 'i1');
  // 64-bit ints go out as int64/uint64 (never a float): 2^62 is cf 40 00 00 00 00 00 00 00
  assert.ok(f.reqs[9].frame.includes(Buffer.from('cf4000000000000000', 'hex')));
  const n = f.reqs.length;
  // refused before anything is sent
  await assert.rejects(m.sendMessage('s1', '   '), /empty/);
  await assert.rejects(m.sendMessage('', 'x'), /streamId/);
  await assert.rejects(m.sendMessage('s1', 'x', { attachments: [{ name: 'a', content: png, preview: png }, { name: 'b', content: png }] }), /preview for every attachment or for none/);
  await assert.rejects(m.sendMessage('s1', 'x', { attachments: [{ name: 'a', content: 'text' }] }), /Buffer/);
  await assert.rejects(m.sendMessage('s1', 'x', { data: [1] }), /EntityJSON/);
  await assert.rejects(s.createIm(2 ** 60), /BigInt above 2\^53/);
  await assert.rejects(s.createIm([]), /1\.\.100/);
  await assert.rejects(u.listUsersByIds(Array.from({ length: 101 }, (_, i) => i)), /1\.\.100/);
  await assert.rejects(s.addMemberToRoom(1n << 63n, 'r'), /int64/);
  await assert.rejects(u.listUsersByEmails(['a'], { active: 'yes' }), /active/);
  assert.equal(f.reqs.length, n);
  c.close();
  f.close();
});
