#!/usr/bin/env node
'use strict';
// The Node adapter of the conformance suite (schemas/conformance/README.md):
//   node adapter.js CONFIG.json
// runs dfconsumer's DatafeedLoop with the configured bridges, options and
// listeners and prints one JSON line per callback ({"handled": ...}), then the
// counters after SIGTERM. The event is printed in the suite's canonical JSON,
// written from the envelope's bytes (a JavaScript object cannot tell 1.0 from 1).

const fs = require('fs');
const { DatafeedLoop, EVENT_TYPES, listenerContext, currentEnvelope, setLogSink } = require('..');
const { canonicalEvent } = require('./canonical');

function fail(msg) {
  process.stderr.write(`adapter: ${msg}\n`);
  process.exit(2);
}

if (process.argv.length !== 3) fail('usage: adapter.js CONFIG.json');
let cfg;
try {
  cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
} catch (e) {
  fail(`cannot read ${process.argv[2]}: ${e.message}`);
}

// the C dfc_config_t names -> ours
const NAMES = {
  workers: null, // Node has no worker threads (ignored, as in Python)
  queue_size: 'maxInFlight', // the bound on callbacks in flight, as in Python
  rcvhwm: 'rcvhwm', max_frame: 'maxFrame', ordering: 'ordering', checkpoint_dir: 'checkpointDir', name: 'name',
  checkpoint_ms: 'checkpointMs', group: 'group', member: 'member', members: 'members', from_gseq: 'fromGseq',
  stale_ms: 'staleMs', replay_timeout_ms: 'replayTimeoutMs', dedupe_window: 'dedupeWindow', max_held: 'maxHeld',
  max_held_bytes: 'maxHeldBytes', replay_any_host: 'replayAnyHost',
};
const options = {};
for (const [k, v] of Object.entries(cfg.options || {})) {
  if (!(k in NAMES)) fail(`unknown option ${k}`);
  if (NAMES[k]) options[NAMES[k]] = v;
}

const out = (s) => fs.writeSync(1, `${s}\n`); // flushed at once, in order

setLogSink((line) => process.stderr.write(line));
let loop;
try {
  loop = new DatafeedLoop(null, options);
  for (const b of cfg.bridges || []) loop.connect(b.endpoint, b.replay || null);
} catch (e) {
  fail(e.message);
}

const C_NAME = Object.fromEntries(EVENT_TYPES.map((t) => [t.callback, t.cName]));
C_NAME.onUnknownEvent = 'on_unknown';
const block = cfg.block_gseq;

for (const spec of cfg.listeners || []) {
  const l = { name: spec.id };
  if (spec.accept === 'all') l.isAcceptingEvent = () => true;
  else if (spec.accept !== 'default') fail(`listener ${spec.id}: accept ${spec.accept}`);
  const make = (cb) => function handled() {
    const env = currentEnvelope();
    const id = env.event.id;
    const head = JSON.stringify({
      listener: spec.id, callback: C_NAME[cb], topic: env.topic, gseq: env.gseq, epoch: env.epoch,
      id: typeof id === 'string' ? id : null, context: listenerContext(),
    });
    out(`{"handled":${head.slice(0, -1)},"event":${canonicalEvent(env.body)}}}`);
    if (block !== undefined && block !== null && env.gseq === block) {
      out(JSON.stringify({ blocked: env.gseq }));
      return new Promise(() => {}); // forever: the runner kills us
    }
    return undefined;
  };
  for (const t of EVENT_TYPES) l[t.callback] = make(t.callback);
  l.onUnknownEvent = make('onUnknownEvent');
  loop.subscribe(l);
}

process.on('SIGTERM', () => { loop.stop(); });
process.on('SIGINT', () => { loop.stop(); });
out(JSON.stringify({ ready: true }));
loop.start().then(() => {
  out(JSON.stringify({ stats: loop.stats() }));
  process.exit(0);
}, (e) => {
  process.stderr.write(`adapter: ${e.stack}\n`);
  process.exit(1);
});
