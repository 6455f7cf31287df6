'use strict';
// metrics: the loop's counters in the Prometheus text format (0.0.4), with the
// names, types and HELP texts of consumers/metrics.json (the C library's
// dfc_stats_prometheus and the Python package print the same bytes;
// consumers/tests/metrics_check.py checks it), and an optional /metrics
// endpoint on node:http.

const http = require('http');

// [dfc_stats_t field, metric name, type, HELP], in the struct's order.
const METRICS = [
  ['listeners', 'dfconsumer_listeners', 'gauge',
    'Listeners subscribed now.'],
  ['connects', 'dfconsumer_connects_total', 'counter',
    'TCP/IPC connections made to bridges (socket monitor).'],
  ['disconnects', 'dfconsumer_disconnects_total', 'counter',
    'Connections lost: peer gone, or it sent a message above max_frame.'],
  ['received', 'dfconsumer_received_total', 'counter',
    'Messages read from the SUB sockets.'],
  ['dispatched', 'dfconsumer_dispatched_total', 'counter',
    'Jobs queued, one per event and accepting listener.'],
  ['completed', 'dfconsumer_completed_total', 'counter',
    'Jobs whose callback returned.'],
  ['skipped', 'dfconsumer_skipped_total', 'counter',
    'Queued jobs not run because their listener was unsubscribed.'],
  ['dropped_at_stop', 'dfconsumer_dropped_at_stop_total', 'counter',
    'Event and listener pairs not queued because stop came while the queue was full.'],
  ['filtered', 'dfconsumer_filtered_total', 'counter',
    'Event and listener pairs refused by is_accepting_event.'],
  ['dropped_malformed', 'dfconsumer_dropped_malformed_total', 'counter',
    'Malformed messages dropped (the sum of the per-reason counters).'],
  ['bad_frames', 'dfconsumer_bad_frames_total', 'counter',
    'Messages dropped: frame count not 2, or topic empty or above 255 bytes.'],
  ['oversize', 'dfconsumer_oversize_total', 'counter',
    'Messages dropped: body larger than max_frame.'],
  ['bad_msgpack', 'dfconsumer_bad_msgpack_total', 'counter',
    'Messages dropped: body not decodable msgpack.'],
  ['not_map', 'dfconsumer_not_map_total', 'counter',
    'Messages dropped: body not a map.'],
  ['bad_version', 'dfconsumer_bad_version_total', 'counter',
    'Messages dropped: v missing, not an integer, or above 1.'],
  ['bad_envelope', 'dfconsumer_bad_envelope_total', 'counter',
    'Messages dropped: envelope fields of the wrong type or numbers that cannot be right.'],
  ['bad_event', 'dfconsumer_bad_event_total', 'counter',
    'Messages dropped: event missing or not a map.'],
  ['unknown_type', 'dfconsumer_unknown_type_total', 'counter',
    'Valid messages whose topic is not one of the 17 event types.'],
  ['reserved', 'dfconsumer_reserved_total', 'counter',
    'Messages on reserved underscore topics (the bridge\'s own), ignored.'],
  ['gaps', 'dfconsumer_gaps_total', 'counter',
    'Messages missing in seq per epoch and topic.'],
  ['heartbeats', 'dfconsumer_heartbeats_total', 'counter',
    'Heartbeats (_hb) read.'],
  ['replayed', 'dfconsumer_replayed_total', 'counter',
    'Events taken in order from a replay endpoint.'],
  ['gaps_filled', 'dfconsumer_gaps_filled_total', 'counter',
    'Replayed events that filled a detected gap.'],
  ['lost', 'dfconsumer_lost_total', 'counter',
    'Missing messages that replay could not give.'],
  ['duplicates', 'dfconsumer_duplicates_total', 'counter',
    'Events dropped as already seen or already handled.'],
  ['not_mine', 'dfconsumer_not_mine_total', 'counter',
    'Events left to other members of the consumer group.'],
  ['reconnects', 'dfconsumer_reconnects_total', 'counter',
    'SUB sockets recreated by the staleness timer.'],
  ['auth_failures', 'dfconsumer_auth_failures_total', 'counter',
    'CURVE handshakes that failed on a bridge socket.'],
  ['replay_requests', 'dfconsumer_replay_requests_total', 'counter',
    'Requests sent to replay endpoints.'],
  ['replay_errors', 'dfconsumer_replay_errors_total', 'counter',
    'Replay error answers and timeouts.'],
  ['checkpoints', 'dfconsumer_checkpoints_total', 'counter',
    'Checkpoint files written.'],
  ['lag_ms', 'dfconsumer_lag_seconds', 'gauge',
    'Now minus the envelope ts of the last event delivered, in seconds.'],
  ['replay_stalls', 'dfconsumer_replay_stalls_total', 'counter',
    'Gap fills given up after three answers without progress.'],
  ['held_dropped', 'dfconsumer_held_dropped_total', 'counter',
    'Live messages not held during a fill (max_held reached): replay brings them.'],
  ['alloc_failures', 'dfconsumer_alloc_failures_total', 'counter',
    'Allocations that failed (the loop goes on).'],
  ['checkpoint_errors', 'dfconsumer_checkpoint_errors_total', 'counter',
    'Checkpoint saves that failed (retried; the previous file stays intact).'],
  ['queue_waits', 'dfconsumer_queue_waits_total', 'counter',
    'Times the receiver found a job queue full and waited (back-pressure).'],
  ['replay_unexpected', 'dfconsumer_replay_unexpected_total', 'counter',
    'Messages from a replay endpoint that answer nothing asked, dropped.'],
  ['replay_refused', 'dfconsumer_replay_refused_total', 'counter',
    'Heartbeats naming a replay endpoint the replay_any_host rule refuses.'],
];

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** '{a="x",b="y"}' for an object (or [name, value] pairs) of constant labels,
    '' for none. TypeError for a name that is not [a-zA-Z_][a-zA-Z0-9_]* or
    starts with '__', a repeated name, or a value that is not a well-formed string. */
function labelsText(labels) {
  if (labels === undefined || labels === null) return '';
  const pairs = Array.isArray(labels) ? labels : Object.entries(labels);
  if (pairs.length === 0) return '';
  const seen = new Set();
  const out = [];
  for (const [name, value] of pairs) {
    if (typeof name !== 'string' || !LABEL_NAME.test(name) || name.startsWith('__') || seen.has(name)) {
      throw new TypeError(`metrics label name ${JSON.stringify(name)}: [a-zA-Z_][a-zA-Z0-9_]*, not __..., once`);
    }
    if (typeof value !== 'string') throw new TypeError(`metrics label ${name}: the value must be a string`);
    if (!value.isWellFormed()) throw new TypeError(`metrics label ${name}: the value is not valid Unicode`);
    seen.add(name);
    out.push(`${name}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  }
  return `{${out.join(',')}}`;
}

/** The counters (an object with dfc_stats_t's names, as loop.stats() returns)
    as Prometheus text: per metric a HELP, a TYPE and a sample; lag_ms in seconds. */
function prometheusText(stats, labels) {
  const lab = labelsText(labels);
  let out = '';
  for (const [field, name, type, help] of METRICS) {
    const v = Math.trunc(Number(stats[field] || 0));
    const value = field === 'lag_ms' ? `${Math.floor(v / 1000)}.${String(v % 1000).padStart(3, '0')}` : String(v);
    out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}${lab} ${value}\n`;
  }
  return out;
}

/** 'host:port' or '[v6]:port' -> {host, port}; port 0 = any free port. */
function parseAddress(addr) {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(typeof addr === 'string' ? addr : '');
  if (!m || Number(m[3]) > 65535) throw new TypeError(`metrics address ${JSON.stringify(addr)}: host:port or [v6]:port`);
  return { host: m[1] || m[2], port: Number(m[3]) };
}

/** Serves loop's counters: GET /metrics -> 200 and the text, anything else
    -> 404. Resolves with the listening node:http server (server.address()
    gives the port when 0 was asked); server.close() stops it. */
function serveMetrics(loop, addr, labels) {
  labelsText(labels); // refuse bad labels now, not at the first scrape
  const { host, port } = parseAddress(addr);
  const server = http.createServer((req, res) => {
    const path = (req.url || '').split('?', 1)[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found: try GET /metrics\n');
      return;
    }
    const body = Buffer.from(prometheusText(loop.stats(), labels), 'utf8');
    res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': body.length });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}

/** Closes a server from serveMetrics, its idle keep-alive connections too. */
function closeMetrics(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    if (server.closeAllConnections) server.closeAllConnections();
  });
}

module.exports = { METRICS, CONTENT_TYPE, labelsText, prometheusText, parseAddress, serveMetrics, closeMetrics };
