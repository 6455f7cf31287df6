// Type declarations of dfconsumer (README.md has the prose).
import { AsyncLocalStorage } from 'async_hooks';

/** An integer of the wire: `number` when msgpack carried it in 32 bits or fewer,
 *  `bigint` when it carried it as int64/uint64 (every value >= 2^32 or < -2^31
 *  from a canonical producer: user ids, ms timestamps). */
export type Int = number | bigint;

// ---------------------------------------------------------------- the model
// Plain objects with the Symphony API's camelCase names as on the wire; fields
// not named here (new ones) are kept: the index signatures.

export interface V4User {
  userId?: Int;
  firstName?: string;
  lastName?: string;
  displayName?: string;
  email?: string;
  username?: string;
  [key: string]: unknown;
}
export interface V4Initiator {
  user?: V4User;
  [key: string]: unknown;
}
export interface V4Stream {
  streamId?: string;
  streamType?: string;
  roomName?: string;
  members?: V4User[];
  external?: boolean;
  crossPod?: boolean;
  recipientTenantIds?: Int[];
  [key: string]: unknown;
}
export interface V4AttachmentInfo {
  id?: string;
  name?: string;
  size?: Int;
  [key: string]: unknown;
}
export interface V4Message {
  messageId?: string;
  parentMessageId?: string;
  timestamp?: Int;
  message?: string;
  sharedMessage?: V4Message;
  data?: string;
  attachments?: V4AttachmentInfo[];
  user?: V4User;
  stream?: V4Stream;
  externalRecipients?: boolean;
  diagnostic?: string;
  userAgent?: string;
  originalFormat?: string;
  disclaimer?: string;
  sid?: string;
  replacing?: string;
  replacedBy?: string;
  initialTimestamp?: Int;
  initialMessageId?: string;
  silent?: boolean;
  [key: string]: unknown;
}
export interface V4KeyValuePair {
  key?: string;
  value?: string;
  [key: string]: unknown;
}
export interface V4RoomProperties {
  name?: string;
  description?: string;
  creatorUser?: V4User;
  createdDate?: Int;
  external?: boolean;
  crossPod?: boolean;
  public?: boolean;
  copyProtected?: boolean;
  readOnly?: boolean;
  discoverable?: boolean;
  membersCanInvite?: boolean;
  keywords?: V4KeyValuePair[];
  canViewHistory?: boolean;
  [key: string]: unknown;
}

/** The 17 payloads (`event.payload.<key>`), what each typed callback gets. */
export interface V4MessageSent { message?: V4Message; [key: string]: unknown }
export interface V4SharedPost { message?: V4Message; sharedMessage?: V4Message; [key: string]: unknown }
export interface V4InstantMessageCreated { stream?: V4Stream; [key: string]: unknown }
export interface V4RoomCreated { stream?: V4Stream; roomProperties?: V4RoomProperties; [key: string]: unknown }
export interface V4RoomUpdated { stream?: V4Stream; newRoomProperties?: V4RoomProperties; [key: string]: unknown }
export interface V4RoomDeactivated { stream?: V4Stream; [key: string]: unknown }
export interface V4RoomReactivated { stream?: V4Stream; [key: string]: unknown }
export interface V4UserRequestedToJoinRoom { stream?: V4Stream; affectedUsers?: V4User[]; [key: string]: unknown }
export interface V4UserJoinedRoom { stream?: V4Stream; affectedUser?: V4User; [key: string]: unknown }
export interface V4UserLeftRoom { stream?: V4Stream; affectedUser?: V4User; [key: string]: unknown }
export interface V4RoomMemberPromotedToOwner { stream?: V4Stream; affectedUser?: V4User; [key: string]: unknown }
export interface V4RoomMemberDemotedFromOwner { stream?: V4Stream; affectedUser?: V4User; [key: string]: unknown }
export interface V4ConnectionRequested { toUser?: V4User; [key: string]: unknown }
export interface V4ConnectionAccepted { fromUser?: V4User; [key: string]: unknown }
export interface V4MessageSuppressed { messageId?: string; stream?: V4Stream; [key: string]: unknown }
export interface V4SymphonyElementsAction {
  stream?: V4Stream;
  formMessageId?: string;
  formId?: string;
  formValues?: { [key: string]: unknown };
  [key: string]: unknown;
}
export interface V4GenericSystemEvent {
  stream?: V4Stream;
  eventTimestamp?: Int;
  sourceSystem?: string;
  eventSubtype?: string;
  parameters?: { [key: string]: unknown };
  [key: string]: unknown;
}

export interface V4Payload {
  messageSent?: V4MessageSent;
  sharedPost?: V4SharedPost;
  instantMessageCreated?: V4InstantMessageCreated;
  roomCreated?: V4RoomCreated;
  roomUpdated?: V4RoomUpdated;
  roomDeactivated?: V4RoomDeactivated;
  roomReactivated?: V4RoomReactivated;
  userRequestedToJoinRoom?: V4UserRequestedToJoinRoom;
  userJoinedRoom?: V4UserJoinedRoom;
  userLeftRoom?: V4UserLeftRoom;
  roomMemberPromotedToOwner?: V4RoomMemberPromotedToOwner;
  roomMemberDemotedFromOwner?: V4RoomMemberDemotedFromOwner;
  connectionRequested?: V4ConnectionRequested;
  connectionAccepted?: V4ConnectionAccepted;
  messageSuppressed?: V4MessageSuppressed;
  symphonyElementsAction?: V4SymphonyElementsAction;
  genericSystemEvent?: V4GenericSystemEvent;
  [key: string]: unknown;
}

/** The envelope's `event`: a Symphony V4Event. */
export interface V4Event {
  id?: string;
  messageId?: string;
  timestamp?: Int;
  type?: string;
  initiator?: V4Initiator;
  payload?: V4Payload;
  diagnostic?: string;
  [key: string]: unknown;
}

/** The bot, as isAcceptingEvent sees it (the envelope's `bot`). */
export interface BotInfo {
  id: bigint;
}

/** One received message (frame 1 + the checked envelope). */
export interface Envelope {
  topic: string;
  seq: number;
  gseq: number;
  epoch: string;
  /** publish time, ms since the Unix epoch */
  ts: number;
  bot: bigint;
  event: V4Event;
  /** frame 2 exactly as received */
  body: Buffer;
}

type Callback<P> = (initiator: V4Initiator, event: P) => void | Promise<void>;

/** A listener: any object with some of these methods (the Java BDK's names). */
export interface RealTimeEventListenerLike {
  /** listener id in the context string; default `L<n>` (n = subscribe order) */
  name?: string;
  /** default: the BDK rule (initiator.user.userId present and != botInfo.id) */
  isAcceptingEvent?(event: V4Event, botInfo: BotInfo): boolean;
  onMessageSent?: Callback<V4MessageSent>;
  onSharedPost?: Callback<V4SharedPost>;
  onInstantMessageCreated?: Callback<V4InstantMessageCreated>;
  onRoomCreated?: Callback<V4RoomCreated>;
  onRoomUpdated?: Callback<V4RoomUpdated>;
  onRoomDeactivated?: Callback<V4RoomDeactivated>;
  onRoomReactivated?: Callback<V4RoomReactivated>;
  onUserRequestedToJoinRoom?: Callback<V4UserRequestedToJoinRoom>;
  onUserJoinedRoom?: Callback<V4UserJoinedRoom>;
  onUserLeftRoom?: Callback<V4UserLeftRoom>;
  onRoomMemberPromotedToOwner?: Callback<V4RoomMemberPromotedToOwner>;
  onRoomMemberDemotedFromOwner?: Callback<V4RoomMemberDemotedFromOwner>;
  onConnectionRequested?: Callback<V4ConnectionRequested>;
  onConnectionAccepted?: Callback<V4ConnectionAccepted>;
  onMessageSuppressed?: Callback<V4MessageSuppressed>;
  onSymphonyElementsAction?: Callback<V4SymphonyElementsAction>;
  onGenericSystemEvent?: Callback<V4GenericSystemEvent>;
  /** any topic that is not one of the 17 (UNKNOWN, a future type): the whole event */
  onUnknownEvent?: Callback<V4Event>;
}

/** Base class: every callback a no-op, isAcceptingEvent the BDK default. */
export class RealTimeEventListener implements RealTimeEventListenerLike {
  name?: string;
  isAcceptingEvent(event: V4Event, botInfo: BotInfo): boolean;
  onMessageSent(initiator: V4Initiator, event: V4MessageSent): void | Promise<void>;
  onSharedPost(initiator: V4Initiator, event: V4SharedPost): void | Promise<void>;
  onInstantMessageCreated(initiator: V4Initiator, event: V4InstantMessageCreated): void | Promise<void>;
  onRoomCreated(initiator: V4Initiator, event: V4RoomCreated): void | Promise<void>;
  onRoomUpdated(initiator: V4Initiator, event: V4RoomUpdated): void | Promise<void>;
  onRoomDeactivated(initiator: V4Initiator, event: V4RoomDeactivated): void | Promise<void>;
  onRoomReactivated(initiator: V4Initiator, event: V4RoomReactivated): void | Promise<void>;
  onUserRequestedToJoinRoom(initiator: V4Initiator, event: V4UserRequestedToJoinRoom): void | Promise<void>;
  onUserJoinedRoom(initiator: V4Initiator, event: V4UserJoinedRoom): void | Promise<void>;
  onUserLeftRoom(initiator: V4Initiator, event: V4UserLeftRoom): void | Promise<void>;
  onRoomMemberPromotedToOwner(initiator: V4Initiator, event: V4RoomMemberPromotedToOwner): void | Promise<void>;
  onRoomMemberDemotedFromOwner(initiator: V4Initiator, event: V4RoomMemberDemotedFromOwner): void | Promise<void>;
  onConnectionRequested(initiator: V4Initiator, event: V4ConnectionRequested): void | Promise<void>;
  onConnectionAccepted(initiator: V4Initiator, event: V4ConnectionAccepted): void | Promise<void>;
  onMessageSuppressed(initiator: V4Initiator, event: V4MessageSuppressed): void | Promise<void>;
  onSymphonyElementsAction(initiator: V4Initiator, event: V4SymphonyElementsAction): void | Promise<void>;
  onGenericSystemEvent(initiator: V4Initiator, event: V4GenericSystemEvent): void | Promise<void>;
  onUnknownEvent(initiator: V4Initiator, event: V4Event): void | Promise<void>;
}

export interface DatafeedOptions {
  /** callbacks in flight at most (also accepted as `queueSize`, the C name); default 1024 */
  maxInFlight?: number;
  queueSize?: number;
  /** accepted for C configs and ignored: Node has no worker threads */
  workers?: number;
  /** SUB receive high-water mark; default 1000 */
  rcvhwm?: number;
  /** bigger bodies are dropped (and libzmq drops the connection: reconnected); default 16 MiB */
  maxFrame?: number;
  /** 'stream': one stream's events one after the other; default 'concurrent' */
  ordering?: 'concurrent' | 'stream';
  checkpointDir?: string;
  name?: string;
  /** default 1000 */
  checkpointMs?: number;
  group?: string;
  member?: number;
  members?: number;
  /** first start without a checkpoint: replay from this gseq (1 = all retained); default 0 = live */
  fromGseq?: number;
  /** default 0 = 3 x the heartbeat interval; < 0 off */
  staleMs?: number;
  /** default 5000 */
  replayTimeoutMs?: number;
  /** default 0 = 65536 keys; < 0 off */
  dedupeWindow?: number;
  /** default 10000 */
  maxHeld?: number;
  /** Bytes (topic + envelope as received) of the live events held during a fill; beyond, they are
      dropped and fetched by replay (held_dropped). Default 64 MiB. */
  maxHeldBytes?: number;
  /** Use any replay endpoint a heartbeat names; by default only one on the bridge endpoint's host
      (tcp), or of the same transport (ipc, inproc), is used (others: replay_refused). */
  replayAnyHost?: boolean;
  /** CURVE: the bridge's public key, 40 Z85 characters, or the path of its public certificate (.key); needs cert */
  serverKey?: string;
  /** CURVE: the path of this consumer's secret certificate (.key_secret); needs serverKey */
  cert?: string;
  /** 'host:port' ('[::1]:port'; port 0 = any free one): serve GET /metrics (Prometheus text, the
      names of consumers/metrics.json) while start() runs; loop.metricsServer.address() tells the port */
  metrics?: string;
  /** constant labels of every sample, e.g. {worker: 'w1'} */
  metricsLabels?: Record<string, string>;
  /** The bridge's command channel (bridge.commands, e.g. 'tcp://127.0.0.1:5558'): gives the loop
      messages, streams, users (and commands, its CommandClient; CURVE with serverKey and cert). */
  commands?: string;
  /** per attempt; default 10000 */
  commandsTimeoutMs?: number;
  /** sends of one request (same id) before code 'timeout'; default 3 */
  commandsAttempts?: number;
}

/** The counters, named and meant exactly as the C dfc_stats_t. */
export interface Stats {
  listeners: number; connects: number; disconnects: number; received: number; dispatched: number;
  completed: number; skipped: number; dropped_at_stop: number; filtered: number; dropped_malformed: number;
  bad_frames: number; oversize: number; bad_msgpack: number; not_map: number; bad_version: number;
  bad_envelope: number; bad_event: number; unknown_type: number; reserved: number; gaps: number;
  heartbeats: number; replayed: number; gaps_filled: number; lost: number; duplicates: number;
  not_mine: number; reconnects: number; auth_failures: number; replay_requests: number; replay_errors: number;
  checkpoints: number;
  lag_ms: number; replay_stalls: number; held_dropped: number; alloc_failures: number;
  checkpoint_errors: number; queue_waits: number; replay_unexpected: number; replay_refused: number;
}

export type CallbackName =
  | 'onMessageSent' | 'onSharedPost' | 'onInstantMessageCreated' | 'onRoomCreated' | 'onRoomUpdated'
  | 'onRoomDeactivated' | 'onRoomReactivated' | 'onUserRequestedToJoinRoom' | 'onUserJoinedRoom'
  | 'onUserLeftRoom' | 'onRoomMemberPromotedToOwner' | 'onRoomMemberDemotedFromOwner'
  | 'onConnectionRequested' | 'onConnectionAccepted' | 'onMessageSuppressed' | 'onSymphonyElementsAction'
  | 'onGenericSystemEvent' | 'onUnknownEvent';

/** One item of loop.events(). */
export interface EventItem {
  topic: string;
  callback: CallbackName;
  initiator: V4Initiator;
  /** the typed payload (the whole event for onUnknownEvent) */
  payload: unknown;
  event: V4Event;
  envelope: Envelope;
  context: string;
}

export class DatafeedLoop {
  constructor(endpoint?: string | null, replay?: string | null, options?: DatafeedOptions);
  constructor(endpoint: string | null, options: DatafeedOptions);
  connect(endpoint: string, replay?: string | null): void;
  subscribe(listener: RealTimeEventListenerLike): void;
  unsubscribe(listener: RealTimeEventListenerLike): Promise<boolean>;
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): Stats;
  /** The counters in the Prometheus text format; labels default to the metricsLabels option. */
  statsPrometheus(labels?: Record<string, string>): string;
  /** The /metrics server while start() runs with the metrics option, else null. */
  readonly metricsServer: import('http').Server | null;
  events(options?: { acceptAll?: boolean; name?: string }): AsyncIterableIterator<EventItem>;
  /** The command channel's services (option commands; without it their calls reject). */
  readonly messages: MessageService;
  readonly streams: StreamService;
  readonly users: UserService;
  /** The CommandClient of the option commands (opened at first use; closed when start() returns). Throws without the option. */
  readonly commands: CommandClient;
}

// ---------------------------------------------------------------- the command channel
// schemas/CONTRACT.md "Commands"; README.md "Replying through the bridge".

/** The protocol's error codes, then the client's own ('timeout': no reply after every attempt;
    'closed': the client was closed with the call pending). */
export type CommandErrorCode =
  | 'bad_request' | 'not_allowed' | 'rejected' | 'unavailable' | 'unknown_outcome' | 'busy'
  | 'timeout' | 'closed';
export const COMMAND_ERROR_CODES: ReadonlyArray<CommandErrorCode>;
/** The operations, in the contract's order. */
export const COMMAND_OPS: ReadonlyArray<string>;

export interface CommandReply {
  v: number;
  id: string;
  ok: boolean;
  /** ok: the Symphony answer, 1:1 (null when Symphony answered 204) */
  result?: unknown;
  error?: { code: string; message: string; status?: Int; retry_after_ms?: Int; [key: string]: unknown };
  /** the recorded outcome of an earlier request with this id: no Symphony call now */
  replayed: boolean;
  /** settled by finding the message's mark after an ambiguous failure: no second create */
  found: boolean;
  [key: string]: unknown;
}

export class CommandError extends Error {
  readonly code: CommandErrorCode;
  /** 'rejected': Symphony's HTTP status; else 0 */
  readonly status: number;
  /** 'busy': the bridge's suggested wait */
  readonly retryAfterMs: number;
  /** the error reply; null for 'timeout' and 'closed' */
  readonly reply: CommandReply | null;
  readonly id: string | null;
  readonly op: string | null;
}

export interface CommandClientOptions {
  /** the bridge.commands endpoint */
  endpoint: string;
  /** CURVE, as DatafeedOptions.serverKey / cert */
  serverKey?: string;
  cert?: string;
  /** per attempt; default 10000 */
  timeoutMs?: number;
  /** sends of one request (same id) before code 'timeout'; default 3. The whole budget, busy
      retries included, is timeoutMs x attempts. */
  attempts?: number;
  /** the largest reply accepted; default 64 MiB */
  maxReply?: number;
  /** log lines: (level, message) */
  log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
}

export interface CallOptions {
  /** the idempotency key, 1..128 bytes of UTF-8 without control characters; default
      defaultCommandId() */
  id?: string;
}

export interface CommandStats {
  calls: number; sent: number; resent: number; replies: number; unmatched: number; bad_replies: number;
  busy_retries: number; timeouts: number; send_errors: number; auth_failures: number;
}
export const COMMAND_STATS_FIELDS: ReadonlyArray<keyof CommandStats>;

export class CommandClient {
  constructor(options: CommandClientOptions | string);
  /** the result (null for 204) or a rejection with CommandError */
  call(op: string, args?: Record<string, unknown>, options?: CallOptions): Promise<unknown>;
  /** the reply as it came, error replies included; rejects only with 'timeout' / 'closed' */
  request(op: string, args?: Record<string, unknown>, options?: CallOptions): Promise<CommandReply>;
  stats(): CommandStats;
  readonly pending: number;
  close(): void;
}

/** The id a call without one gets: inside a listener job "<event id>/<listener id>/<n>" (counts as
    one of the job's calls: n = 1, 2, ...), elsewhere (or when that id would be invalid) a UUID v4. */
export function defaultCommandId(): string;

export interface Attachment {
  name: string;
  content: Uint8Array;
  contentType?: string;
  /** all attachments have one or none */
  preview?: Uint8Array;
}
/** EntityJSON: an object (sent as a map) or its JSON text */
export type EntityData = Record<string, unknown> | string;
/** The BDK's Message: its fields win over the options of sendMessage/updateMessage. */
export interface Message {
  content: string;
  data?: EntityData;
  version?: string;
  attachments?: Attachment[];
}
export type UserId = number | bigint;

export interface V2UserList {
  users?: Record<string, unknown>[];
  errors?: Record<string, unknown>[];
  [key: string]: unknown;
}

export class MessageService {
  constructor(client: CommandClient | (() => CommandClient));
  sendMessage(streamId: string, message: string | Message,
    options?: { data?: EntityData; version?: string; attachments?: Attachment[] } & CallOptions): Promise<V4Message>;
  updateMessage(streamId: string, messageId: string, message: string | Message,
    options?: { data?: EntityData; version?: string; silent?: boolean } & CallOptions): Promise<V4Message>;
  suppressMessage(messageId: string, options?: CallOptions): Promise<{ messageId?: string; suppressed?: boolean; suppressionDate?: Int; [key: string]: unknown }>;
  getMessage(messageId: string, options?: CallOptions): Promise<V4Message | null>;
}

export class StreamService {
  constructor(client: CommandClient | (() => CommandClient));
  createIm(userIds: UserId | UserId[], options?: CallOptions): Promise<{ id: string }>;
  addMemberToRoom(userId: UserId, roomId: string, options?: CallOptions): Promise<{ format?: string; message?: string }>;
  removeMemberFromRoom(userId: UserId, roomId: string, options?: CallOptions): Promise<{ format?: string; message?: string }>;
  getStream(streamId: string, options?: CallOptions): Promise<Record<string, unknown>>;
}

export class UserService {
  constructor(client: CommandClient | (() => CommandClient));
  listUsersByIds(ids: UserId[], options?: { local?: boolean; active?: boolean } & CallOptions): Promise<V2UserList | null>;
  listUsersByEmails(emails: string[], options?: { local?: boolean; active?: boolean } & CallOptions): Promise<V2UserList | null>;
  listUsersByUsernames(usernames: string[], options?: { active?: boolean } & CallOptions): Promise<V2UserList | null>;
}

/** Inside a callback its store is the context string (as listenerContext()). */
export const eventListenerContext: AsyncLocalStorage<string>;
/** "<task>/<event id>/<listener id>" inside a callback, "main" elsewhere. */
export function listenerContext(): string;
/** The envelope of the event whose callback runs, or null. */
export function currentEnvelope(): Envelope | null;
export function setLogLevel(level: 'debug' | 'info' | 'warn' | 'error'): void;
export function setLogSink(sink: (line: string) => void): void;

export const STATS_FIELDS: ReadonlyArray<keyof Stats>;
export const EVENT_TYPES: ReadonlyArray<{ topic: string; payloadKey: string; callback: CallbackName; cName: string }>;
export function defaultIsAccepting(event: V4Event, botInfo: BotInfo): boolean;
export function partitionKey(event: V4Event): string;
export function fnv1a64(key: string | Uint8Array): bigint;
export function partition(key: string | Uint8Array, members: number): number;
export function loadCheckpoint(file: string): { entries: { epoch: string; gseq: number; done: number[] }[]; ok: boolean };
export function decode(body: Uint8Array): unknown;
export const SEQ_MAX: number;
/** [dfc_stats_t field, metric name, 'counter' | 'gauge', HELP] for each counter (consumers/metrics.json). */
export const METRICS: ReadonlyArray<readonly [keyof Stats, string, 'counter' | 'gauge', string]>;
/** Stats (as loop.stats() returns) as Prometheus text, with optional constant labels. */
export function prometheusText(stats: Stats, labels?: Record<string, string>): string;
/** Serves loop.stats() on GET http://addr/metrics (404 elsewhere) until server.close(). */
export function serveMetrics(loop: DatafeedLoop, addr: string, labels?: Record<string, string>): Promise<import('http').Server>;
export const GSEQ_AHEAD: number;
