'use strict';
// The metrics export: statsPrometheus() is the stats in the text format, the
// metrics option serves it on GET /metrics (404 elsewhere) while start() runs
// and closes with the loop; a taken port rejects start(). The byte-for-byte
// agreement with C and Python is consumers/tests/metrics_check.py's.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('http');
const { DatafeedLoop, serveMetrics, METRICS, STATS_FIELDS, setLogSink } = require('..');
const { FakeBridge, msgEvent, until, cleanup } = require('./fakebridge');

test.after(cleanup);
setLogSink(() => {});

function get(port, path, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** {name: value} of the samples, labels checked to be `labels`. */
function samples(text, labels) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
    assert.ok(m, line);
    assert.equal(m[2] || '', labels, line);
    out[m[1]] = Number(m[3]);
  }
  return out;
}

test('METRICS has one entry per stats field, in order', () => {
  assert.deepEqual(METRICS.map((m) => m[0]), STATS_FIELDS);
});

test('the metrics option serves the loop\'s counters on /metrics while start() runs', async () => {
  const b = await new FakeBridge().open();
  const loop = new DatafeedLoop(b.endpoint, b.replay, { metrics: '127.0.0.1:0', metricsLabels: { worker: 'n1' } });
  let handled = 0;
  loop.subscribe({ isAcceptingEvent: () => true, onMessageSent() { handled++; } });
  assert.equal(loop.metricsServer, null);
  const running = loop.start();
  await b.waitSubscribed();
  for (let i = 0; i < 5; i++) await b.publish('MESSAGESENT', msgEvent(`m${i}`));
  await until(() => handled === 5);
  const { port } = loop.metricsServer.address();
  const r = await get(port, '/metrics');
  assert.equal(r.status, 200);
  assert.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8');
  assert.equal(r.body, loop.statsPrometheus());
  const got = samples(r.body, '{worker="n1"}');
  const st = loop.stats();
  assert.equal(Object.keys(got).length, METRICS.length);
  for (const [field, name] of METRICS) {
    assert.equal(got[name], field === 'lag_ms' ? st[field] / 1000 : st[field], name);
  }
  assert.equal(got.dfconsumer_received_total, 5);
  assert.equal(got.dfconsumer_completed_total, 5);
  assert.equal(got.dfconsumer_listeners, 1);
  for (const p of ['/', '/metricsx', '/healthz']) assert.equal((await get(port, p)).status, 404, p);
  assert.equal((await get(port, '/metrics', 'POST')).status, 404);
  await loop.stop();
  await running;
  assert.equal(loop.metricsServer, null);
  await assert.rejects(get(port, '/metrics'), /ECONNREFUSED/);
  // other labels on demand
  assert.match(loop.statsPrometheus({ a: 'x"y' }), /^dfconsumer_received_total\{a="x\\"y"\} 5$/m);
  b.close();
});

test('a taken port rejects start(); serveMetrics works on its own', async () => {
  const loop = new DatafeedLoop(null);
  const server = await serveMetrics(loop, '127.0.0.1:0');
  const { port } = server.address();
  const taken = new DatafeedLoop(null, { metrics: `127.0.0.1:${port}` });
  await assert.rejects(taken.start(), /EADDRINUSE/);
  assert.equal(taken.metricsServer, null);
  const r = await get(port, '/metrics');
  assert.equal(r.status, 200);
  assert.equal(samples(r.body, '').dfconsumer_received_total, 0);
  await new Promise((resolve) => server.close(resolve));
  assert.throws(() => new DatafeedLoop(null, { metrics: '127.0.0.1' }), /host:port/);
  assert.throws(() => new DatafeedLoop(null, { metricsLabels: { 'a-b': 'x' } }), /label name/);
});
