// ESM entry: the same objects as the CommonJS one (index.js).
import cjs from './index.js';

export const {
  DatafeedLoop, RealTimeEventListener, eventListenerContext, listenerContext, currentEnvelope,
  setLogLevel, setLogSink, STATS_FIELDS, EVENT_TYPES, defaultIsAccepting, partitionKey, fnv1a64,
  partition, loadCheckpoint, decode, SEQ_MAX, GSEQ_AHEAD, METRICS, prometheusText, serveMetrics,
  CommandClient, CommandError, COMMAND_OPS, COMMAND_ERROR_CODES, COMMAND_STATS_FIELDS, defaultCommandId, MessageService,
  StreamService, UserService,
} = cjs;
export default cjs;
