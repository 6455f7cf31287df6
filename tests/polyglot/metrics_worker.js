'use strict';
// The Node worker of polyglot_metrics (metrics_test.py): a DatafeedLoop with the
// metrics option (/metrics on a free loopback port, worker="node" label) and a
// listener on every message. Prints {"metrics_port": P} once the endpoint
// listens and {"stats": {...}, "metrics_closed": true} after start() resolved (SIGTERM stops the loop,
// which closes the endpoint). Usage: node metrics_worker.js --endpoint EP

const net = require('net');
const path = require('path');
const { DatafeedLoop } = require(path.join(__dirname, '..', '..', 'consumers', 'node'));

async function main() {
  const i = process.argv.indexOf('--endpoint');
  if (i < 0 || !process.argv[i + 1]) throw new Error('usage: metrics_worker.js --endpoint EP');
  const loop = new DatafeedLoop(process.argv[i + 1], { metrics: '127.0.0.1:0', metricsLabels: { worker: 'node' } });
  loop.subscribe({ onMessageSent() {}, onRoomCreated() {} });
  process.on('SIGTERM', () => { loop.stop(); });
  const started = loop.start();
  for (let k = 0; k < 500 && !loop.metricsServer; k++) { // listening once start() began (bounded: 5 s)
    await Promise.race([started, new Promise((r) => setTimeout(r, 10))]);
  }
  if (!loop.metricsServer) {
    await started;
    throw new Error('no metrics server');
  }
  process.stdout.write(`${JSON.stringify({ metrics_port: loop.metricsServer.address().port })}\n`);
  const { port } = loop.metricsServer.address();
  await started;
  // the endpoint closes with the loop: nothing listens on its port any more
  const closed = await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(false); });
    s.on('error', () => resolve(true));
  });
  process.stdout.write(`${JSON.stringify({ stats: loop.stats(), metrics_closed: closed })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
