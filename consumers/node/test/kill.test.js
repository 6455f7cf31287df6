'use strict';
// kill -9 of a consumer blocked in event 30 while 31..50 were handled: the
// checkpoint says so (e E1 29, d 31..50); the restart handles 30 and what was
// published while it was dead, each event exactly once over both runs.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const { FakeBridge, msgEvent, until, cleanup } = require('./fakebridge');

test.after(cleanup);

function child(b, dir, block) {
  const args = [path.join(__dirname, 'fixtures', 'worker.js'), b.endpoint, b.replay, dir];
  if (block) args.push(String(block));
  const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = [];
  readline.createInterface({ input: p.stdout }).on('line', (l) => lines.push(JSON.parse(l)));
  const exited = new Promise((r) => p.on('exit', (code, sig) => r({ code, sig })));
  return { p, lines, exited, handled: () => lines.filter((l) => 'handled' in l).map((l) => l.handled) };
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('kill -9 in the middle, restart from the checkpoint: each event exactly once', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfc-node-kill-'));
  const file = path.join(dir, 'killed.ckpt');
  const b = await new FakeBridge().open();
  const c1 = child(b, dir, 30);
  await b.waitSubscribed(1, 10000);
  for (let i = 1; i <= 50; i++) await b.publish('MESSAGESENT', msgEvent(`k${i}`));
  await until(() => c1.handled().length === 49 && c1.lines.some((l) => l.blocked === 30), 10000, 'run 1');
  const want = `dfc-checkpoint 1\ne E1 29\n${range(31, 50).map((g) => `d ${g}\n`).join('')}`;
  await until(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8') === want, 5000, 'the checkpoint');
  c1.p.kill('SIGKILL');
  assert.equal((await c1.exited).sig, 'SIGKILL');
  for (let i = 51; i <= 70; i++) await b.publish('MESSAGESENT', msgEvent(`k${i}`), { lose: true });
  const c2 = child(b, dir);
  await b.waitSubscribed(2, 10000);
  await b.heartbeat(); // the epoch and its head: resume from the checkpoint
  await until(() => c2.handled().length === 21, 10000, 'run 2');
  c2.p.kill('SIGTERM');
  const end = await c2.exited;
  assert.equal(end.code, 0);
  const stats = c2.lines.find((l) => l.stats).stats;
  assert.deepEqual(c1.handled(), range(1, 50).filter((g) => g !== 30));
  assert.deepEqual(c2.handled(), [30, ...range(51, 70)]);
  assert.equal(stats.duplicates, 20); // 31..50, recorded as handled
  assert.equal(stats.lost, 0);
  assert.equal(fs.readFileSync(file, 'utf8'), 'dfc-checkpoint 1\ne E1 70\n');
  b.close();
  fs.rmSync(dir, { recursive: true });
});
