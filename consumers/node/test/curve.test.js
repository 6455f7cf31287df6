'use strict';
// CURVE on the Node port (issue 9): real tcp on 127.0.0.1 against the fake
// bridge of consumers/tests/curvebridge.py (XPUB and replay ROUTER as CURVE
// servers, pyzmq's ThreadAuthenticator as the ZAP handler), driven over its
// stdin/stdout: an allowed consumer gets every event, live and replayed; a valid
// key not allowed gets nothing and counts auth_failures, then gets in within 5 s
// of being allowed, without a restart; a refused replay DEALER likewise; a wrong
// server key gets nothing and does not crash; bad options fail precisely.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const { DatafeedLoop, setLogSink } = require('..');
const { harness, until, cleanup } = require('./fakebridge');

test.after(cleanup);
setLogSink(() => {});

const SERVER = path.join(__dirname, '..', '..', 'tests', 'curvebridge.py');
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** curvebridge.py as a child: cmd('publish 3') resolves to its JSON answer. */
async function curveBridge() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-curve-'));
  const child = spawn('/usr/bin/python3', [SERVER, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const waiting = [];
  const queued = [];
  lines.on('line', (l) => {
    const v = JSON.parse(l);
    if (waiting.length) waiting.shift()(v);
    else queued.push(v);
  });
  const next = () => new Promise((resolve, reject) => {
    if (queued.length) return resolve(queued.shift());
    const t = setTimeout(() => reject(new Error('curvebridge.py: no answer in 10 s')), 10000);
    waiting.push((v) => { clearTimeout(t); resolve(v); });
  });
  const hello = await next();
  const b = {
    endpoint: hello.pub,
    replay: hello.replay,
    serverKey: hello.server_key,
    key: (name, secret = false) => path.join(dir, 'keys', `${name}.key${secret ? '_secret' : ''}`),
    cmd: async (line) => {
      child.stdin.write(`${line}\n`);
      const v = await next();
      if (v.error) throw new Error(`curvebridge.py: ${line}: ${v.error}`);
      return v;
    },
    close: async () => {
      const done = new Promise((r) => child.once('exit', r));
      child.stdin.end('quit\n');
      await done;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return b;
}

async function stopped(h) {
  await h.loop.stop();
  await h.running;
  return h.loop.stats();
}

test('an allowed consumer gets every event, replayed and live', async () => {
  const b = await curveBridge();
  try {
    await b.cmd('publish 5'); // before the consumer: only replay has them
    const h = harness(DatafeedLoop, { bridges: [b], options: { fromGseq: 1, serverKey: b.key('bridge'), cert: b.key('allowed', true) } });
    assert.equal((await b.cmd('subscribed 5000')).ok, true);
    await b.cmd('heartbeat');
    await until(() => h.got.length === 5, 5000, '5 replayed');
    await b.cmd('publish 15');
    await until(() => h.got.length === 20, 5000, '20 events');
    const st = await stopped(h);
    assert.deepEqual(h.gseqs(), range(1, 20));
    assert.deepEqual(h.got.map((r) => r.id), range(1, 20).map((g) => `ev-${g}`));
    assert.deepEqual([st.replayed, st.lost, st.gaps, st.auth_failures], [5, 0, 0, 0]);
    assert.equal((await b.cmd('stats')).denied, 0);
  } finally {
    await b.close();
  }
});

test('a key not allowed gets nothing, backs off, and gets in within 5 s of the grant', async () => {
  const b = await curveBridge();
  try {
    // the Z85 form of the server key this time
    const h = harness(DatafeedLoop, { bridges: [b], replay: false, options: { serverKey: b.serverKey, cert: b.key('denied', true) } });
    await until(() => h.loop.stats().auth_failures >= 1, 5000, 'a refusal');
    const t1 = performance.now();
    await until(() => h.loop.stats().auth_failures >= 4, 5000, '4 refusals');
    // connected again after 250, 500, 1000 ms (a fixed 250 ms would take 0.75 s)
    assert.ok(performance.now() - t1 >= 1600, `4th refusal after ${performance.now() - t1} ms`);
    await b.cmd('publish 3');
    assert.ok((await b.cmd('stats')).denied >= 4);
    const t0 = performance.now();
    await b.cmd('allow denied');
    assert.equal((await b.cmd('subscribed 5000')).ok, true);
    assert.ok(performance.now() - t0 < 5000);
    await b.cmd('publish 4');
    await until(() => h.got.length === 4, 5000, '4 events after the grant');
    const st = await stopped(h);
    assert.deepEqual(h.gseqs(), [4, 5, 6, 7]); // 1..3 went out while it was refused
    assert.equal(st.received, 4);
    assert.ok(st.auth_failures >= 4);
  } finally {
    await b.close();
  }
});

test('a refused replay DEALER is connected again, then its request answered', async () => {
  const b = await curveBridge();
  try {
    await b.cmd('allow denied pub');
    await b.cmd('publish 6');
    const h = harness(DatafeedLoop, { bridges: [b], options: { fromGseq: 1, replayTimeoutMs: 3000, serverKey: b.key('bridge'), cert: b.key('denied', true) } });
    assert.equal((await b.cmd('subscribed 5000')).ok, true);
    await b.cmd('heartbeat');
    // 3 refusals before the request's timeout: 2 of them reconnects of ours
    await until(() => h.loop.stats().auth_failures >= 3, 5000, '3 refusals');
    assert.equal(h.loop.stats().replay_errors, 0);
    assert.equal(h.got.length, 0);
    await b.cmd('allow denied replay');
    await until(() => h.got.length === 6, 5000, '6 replayed');
    await b.cmd('publish 2');
    await until(() => h.got.length === 8, 5000, '8 events');
    const st = await stopped(h);
    assert.deepEqual(h.gseqs(), range(1, 8));
    assert.deepEqual([st.replayed, st.lost], [6, 0]);
  } finally {
    await b.close();
  }
});

test('a revoked key is cut off, the allowed consumer reconnects and loses nothing', async () => {
  const b = await curveBridge();
  try {
    await b.cmd('allow other');
    const a = harness(DatafeedLoop, { bridges: [b], options: { serverKey: b.key('bridge'), cert: b.key('allowed', true) } });
    assert.equal((await b.cmd('subscribed 5000')).ok, true);
    const o = harness(DatafeedLoop, { bridges: [b], options: { serverKey: b.key('bridge'), cert: b.key('other', true) } });
    assert.equal((await b.cmd('subscribed 5000')).ok, true);
    await b.cmd('publish 5');
    await until(() => a.got.length === 5 && o.got.length === 5, 5000, '5 + 5');
    await b.cmd('revoke other');
    await b.cmd('rebind'); // every connection cut, as the bridge does on a revocation
    await b.cmd('publish 3'); // during the cut
    const t0 = performance.now();
    assert.equal((await b.cmd('subscribed 5000')).ok, true); // the allowed one is back
    await until(() => o.loop.stats().auth_failures >= 1, 5000, 'the refusal');
    assert.ok(performance.now() - t0 < 5000);
    await b.cmd('publish 2');
    await b.cmd('heartbeat');
    await until(() => a.got.length === 10, 5000, '10 for the allowed one');
    await new Promise((r) => setTimeout(r, 300)); // the revoked one gets nothing more
    const sa = await stopped(a);
    const so = await stopped(o);
    assert.deepEqual(a.gseqs(), range(1, 10));
    assert.deepEqual([sa.lost, sa.auth_failures], [0, 0]);
    assert.ok(sa.replayed >= 3);
    assert.deepEqual(o.gseqs(), range(1, 5));
    assert.ok(so.auth_failures >= 1);
  } finally {
    await b.close();
  }
});

test('a wrong server key gets nothing and does not crash', async () => {
  const b = await curveBridge();
  try {
    const h = harness(DatafeedLoop, { bridges: [b], options: { fromGseq: 1, serverKey: b.key('other'), cert: b.key('allowed', true) } });
    await until(() => h.loop.stats().auth_failures >= 2, 5000, '2 failures');
    await b.cmd('publish 3');
    await b.cmd('heartbeat');
    await new Promise((r) => setTimeout(r, 300));
    const st = await stopped(h);
    assert.deepEqual([h.got.length, st.received], [0, 0]);
    assert.ok(st.connects > 0);
    assert.deepEqual(await b.cmd('stats'), { allowed: 0, denied: 0, requests: 0 }); // ZAP never asked
  } finally {
    await b.close();
  }
});

test('bad CURVE options throw a TypeError naming the option and the file', async () => {
  const b = await curveBridge();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-curve-opt-'));
  try {
    const garbage = path.join(dir, 'garbage.key');
    fs.writeFileSync(garbage, 'this is not a certificate\n');
    const read = (f) => fs.readFileSync(f, 'utf8');
    const pub = /public-key = "(.{40})"/.exec(read(b.key('allowed', true)))[1];
    const sec = /secret-key = "(.{40})"/.exec(read(b.key('other', true)))[1];
    const mixed = path.join(dir, 'mixed.key_secret');
    fs.writeFileSync(mixed, `metadata\ncurve\n    public-key = "${pub}"\n    secret-key = "${sec}"\n`);
    const server = b.key('bridge');
    const cert = b.key('allowed', true);
    const missing = path.join(dir, 'nope.key_secret');
    const fails = (opts, ...words) => assert.throws(() => new DatafeedLoop(null, opts), (e) => {
      assert.ok(e instanceof TypeError, e);
      for (const w of words) assert.ok(e.message.includes(w), `${e.message} lacks ${w}`);
      return true;
    });
    fails({ serverKey: server }, 'serverKey needs cert');
    fails({ cert }, 'cert needs serverKey');
    fails({ serverKey: server, cert: missing }, 'cert:', missing, 'cannot read');
    fails({ serverKey: path.join(dir, 'nope.key'), cert }, 'serverKey:', 'neither a certificate file nor a 40-character Z85 key');
    fails({ serverKey: 'x'.repeat(39), cert }, 'serverKey:', 'neither');
    fails({ serverKey: garbage, cert }, 'serverKey:', garbage, 'not a ZeroMQ certificate');
    fails({ serverKey: b.key('bridge', true), cert }, 'serverKey:', 'bridge.key_secret', 'holds a secret-key');
    fails({ serverKey: server, cert: b.key('allowed') }, 'cert:', 'allowed.key', 'has no secret-key');
    fails({ serverKey: server, cert: garbage }, 'cert:', garbage, 'not a ZeroMQ certificate');
    fails({ serverKey: server, cert: mixed }, 'cert:', 'mixed.key_secret', 'does not belong');
    for (const s of [server, b.serverKey]) {
      const l = new DatafeedLoop(null, { serverKey: s, cert });
      assert.equal(l.cfg.curve.serverKey, b.serverKey);
      assert.ok(!JSON.stringify(l.cfg).includes('secretKey'));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await b.close();
  }
});
