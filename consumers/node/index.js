'use strict';
// dfconsumer: receive dfbridge's datafeed (schemas/CONTRACT.md) over ZeroMQ
// and run Symphony BDK-style listeners on it, with the delivery guarantees of
// the C library (consumers/README.md). See README.md.

const loop = require('./lib/loop');
const events = require('./lib/events');
const partition = require('./lib/partition');
const checkpoint = require('./lib/checkpoint');
const wire = require('./lib/wire');
const metrics = require('./lib/metrics');
const commands = require('./lib/commands');
const services = require('./lib/services');

module.exports = {
  DatafeedLoop: loop.DatafeedLoop,
  RealTimeEventListener: loop.RealTimeEventListener,
  eventListenerContext: loop.eventListenerContext,
  listenerContext: loop.listenerContext,
  currentEnvelope: loop.currentEnvelope,
  setLogLevel: loop.setLogLevel,
  setLogSink: loop.setLogSink,
  STATS_FIELDS: loop.STATS_FIELDS,
  EVENT_TYPES: events.TYPES.map(([topic, payloadKey, callback, cName]) => ({ topic, payloadKey, callback, cName })),
  defaultIsAccepting: events.defaultIsAccepting,
  partitionKey: partition.partitionKey,
  fnv1a64: partition.fnv1a64,
  partition: partition.partition,
  loadCheckpoint: checkpoint.load,
  decode: (buf) => wire.decode(buf).value,
  SEQ_MAX: wire.SEQ_MAX,
  GSEQ_AHEAD: wire.GSEQ_AHEAD,
  METRICS: metrics.METRICS,
  prometheusText: metrics.prometheusText,
  serveMetrics: metrics.serveMetrics,
  // the command channel (bridge.commands): README.md "Replying through the bridge"
  CommandClient: commands.CommandClient,
  CommandError: commands.CommandError,
  COMMAND_OPS: commands.OPS,
  COMMAND_ERROR_CODES: [...commands.CODES, ...commands.CLIENT_CODES],
  COMMAND_STATS_FIELDS: commands.STATS_FIELDS,
  defaultCommandId: commands.defaultId,
  MessageService: services.MessageService,
  StreamService: services.StreamService,
  UserService: services.UserService,
};
