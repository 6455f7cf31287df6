#!/usr/bin/env node
'use strict';
// Bench consumer: one no-op listener accepting every event; exits after N
// events handled and prints one JSON line {"lang","events","seconds","rate"},
// timed from the first to the N-th event.
//   node bench/consumer.js --endpoint tcp://127.0.0.1:5556 --count 100000

const { DatafeedLoop, EVENT_TYPES } = require('..');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const endpoint = arg('endpoint', 'tcp://127.0.0.1:5556');
const count = Number(arg('count', '100000'));
if (!Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: consumer.js --endpoint EP --count N\n');
  process.exit(2);
}

const loop = new DatafeedLoop(endpoint, { rcvhwm: 100000 });
let n = 0;
let t0 = 0;
function handled() {
  n++;
  if (n === 1) t0 = process.hrtime.bigint();
  if (n === count) {
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(`${JSON.stringify({ lang: 'node', events: n, seconds, rate: seconds > 0 ? Math.round((n - 1) / seconds) : null })}\n`);
    loop.stop();
  }
}
const listener = { name: 'bench', isAcceptingEvent: () => true, onUnknownEvent: handled };
for (const t of EVENT_TYPES) listener[t.callback] = handled;
loop.subscribe(listener);
process.on('SIGINT', () => loop.stop());
process.on('SIGTERM', () => loop.stop());
loop.start().then(() => process.exit(0), (e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
