'use strict';
// services: the operations of the command channel with the names of the
// Symphony BDK's MessageService, StreamService and UserService (Java and
// Python), promise-based; each method builds the args of one op (D2 of the
// contract, schemas/CONTRACT.md "Commands") and runs it through a
// CommandClient. Results are the Symphony answers as plain objects (camelCase,
// 1:1; 64-bit ints as BigInt, README "Integers").

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

function str(name, v) {
  if (typeof v !== 'string' || v.length === 0) throw new TypeError(`${name}: a non-empty string`);
  return v;
}

/** A user id: a safe integer number or a BigInt in int64 (a number past 2^53 has lost digits already). */
function userId(name, v) {
  if (typeof v === 'bigint') {
    if (v < I64_MIN || v > I64_MAX) throw new TypeError(`${name}: out of the int64 range`);
    return v;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  throw new TypeError(`${name}: an integer (a BigInt above 2^53)`);
}

function list(name, v, each, max = 100) {
  if (!Array.isArray(v) || v.length === 0 || v.length > max) throw new TypeError(`${name}: an array of 1..${max} values`);
  return v.map((x, i) => each(`${name}[${i}]`, x));
}

function bool(name, v) {
  if (typeof v !== 'boolean') throw new TypeError(`${name}: true or false`);
  return v;
}

function bytes(name, v) {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${name}: a Buffer (or Uint8Array)`);
  return v;
}

/** EntityJSON: an object (sent as a map) or a JSON text of an object (sent as it is). */
function data(v) {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)) return v;
  throw new TypeError('data: an object or the JSON text of one (EntityJSON)');
}

/** [{name, content, contentType?, preview?}] -> the wire's [{name, content, content_type?, preview?}]. */
function attachments(v) {
  if (!Array.isArray(v)) throw new TypeError('attachments: an array of {name, content: Buffer, contentType?, preview?}');
  const out = v.map((a, i) => {
    if (a === null || typeof a !== 'object') throw new TypeError(`attachments[${i}]: {name, content: Buffer, contentType?, preview?}`);
    const w = { name: str(`attachments[${i}].name`, a.name), content: bytes(`attachments[${i}].content`, a.content) };
    if (a.contentType !== undefined && a.contentType !== null) w.content_type = str(`attachments[${i}].contentType`, a.contentType);
    if (a.preview !== undefined && a.preview !== null) w.preview = bytes(`attachments[${i}].preview`, a.preview);
    return w;
  });
  const previews = out.filter((a) => a.preview !== undefined).length;
  if (previews !== 0 && previews !== out.length) throw new TypeError('attachments: a preview for every attachment or for none (as Symphony requires)');
  return out;
}

/** The BDKs' rule (and the bridge's): a content that neither starts with <messageML> nor ends
    with </messageML> is wrapped in them. Done here as the Python client does, so that both send
    the same bytes for the same call. */
function wrap(content) {
  return content.startsWith('<messageML>') || content.endsWith('</messageML>') ? content : `<messageML>${content}</messageML>`;
}

/**
 * The message args of send/update: message is a MessageML string, or an object
 * {content, data?, version?, attachments?} (the BDK's Message) whose fields win
 * over opts. An empty content is refused here (the BDK's Message refuses it
 * too); a bare text is wrapped in <messageML> (wrap).
 */
function messageArgs(message, opts, withAttachments) {
  let content = message;
  let o = opts || {};
  if (message !== null && typeof message === 'object') {
    content = message.content;
    o = { ...o };
    for (const k of ['data', 'version', 'attachments']) if (message[k] !== undefined && message[k] !== null) o[k] = message[k];
  }
  if (typeof content !== 'string') throw new TypeError('message: a MessageML string or {content, data?, version?, attachments?}');
  if (content.trim().length === 0) throw new TypeError('message: empty (Symphony needs content, at least one character)');
  const args = { message: wrap(content) };
  if (o.data !== undefined && o.data !== null && o.data !== '') args.data = data(o.data);
  if (o.version !== undefined && o.version !== null && o.version !== '') {
    if (typeof o.version !== 'string') throw new TypeError('version: a string such as "2.0"');
    args.version = o.version;
  }
  if (o.attachments !== undefined && o.attachments !== null) {
    if (!withAttachments) throw new TypeError('attachments: not with this operation');
    if (o.attachments.length) args.attachments = attachments(o.attachments);
  }
  return args;
}

function callOpts(o) {
  return o && o.id !== undefined ? { id: o.id } : {};
}

/** The BDK's MessageService. Every method takes a last optional {id} (the idempotency key). */
class MessageService {
  constructor(client) {
    this._c = typeof client === 'function' ? client : () => client;
  }

  /** messages.send: resolves to the V4Message. opts: {data, version, attachments, id}. */
  async sendMessage(streamId, message, opts = {}) {
    const args = { stream_id: str('streamId', streamId), ...messageArgs(message, opts, true) };
    return this._c().call('messages.send', args, callOpts(opts));
  }

  /** messages.update: resolves to the new V4Message. opts: {data, version, silent (default true, always sent), id}. */
  async updateMessage(streamId, messageId, message, opts = {}) {
    const args = { stream_id: str('streamId', streamId), message_id: str('messageId', messageId), ...messageArgs(message, opts, true) };
    // always sent, true by default (the BDKs' default; the Python client writes it so too)
    args.silent = opts.silent === undefined || opts.silent === null ? true : bool('silent', opts.silent);
    return this._c().call('messages.update', args, callOpts(opts));
  }

  /** messages.suppress: resolves to {messageId, suppressed, suppressionDate}. */
  async suppressMessage(messageId, opts = {}) {
    return this._c().call('messages.suppress', { message_id: str('messageId', messageId) }, callOpts(opts));
  }

  /** messages.get: resolves to the V4Message, or null when there is none. */
  async getMessage(messageId, opts = {}) {
    return this._c().call('messages.get', { message_id: str('messageId', messageId) }, callOpts(opts));
  }
}

/** The BDK's StreamService. */
class StreamService {
  constructor(client) {
    this._c = typeof client === 'function' ? client : () => client;
  }

  /** streams.createIm: one user id or an array of 1..100 (an IM or MIM with the bot); resolves to {id}. */
  async createIm(userIds, opts = {}) {
    const ids = Array.isArray(userIds) ? list('userIds', userIds, userId) : [userId('userIds', userIds)];
    return this._c().call('streams.createIm', { user_ids: ids }, callOpts(opts));
  }

  /** rooms.addMember: resolves to {format, message}. */
  async addMemberToRoom(userIdValue, roomId, opts = {}) {
    return this._c().call('rooms.addMember', { stream_id: str('roomId', roomId), user_id: userId('userId', userIdValue) }, callOpts(opts));
  }

  /** rooms.removeMember: resolves to {format, message}. */
  async removeMemberFromRoom(userIdValue, roomId, opts = {}) {
    return this._c().call('rooms.removeMember', { stream_id: str('roomId', roomId), user_id: userId('userId', userIdValue) }, callOpts(opts));
  }

  /** streams.info: resolves to the V2StreamAttributes. */
  async getStream(streamId, opts = {}) {
    return this._c().call('streams.info', { stream_id: str('streamId', streamId) }, callOpts(opts));
  }
}

function lookupArgs(key, values, each, opts, withLocal) {
  const args = { [key]: list(key === 'user_ids' ? 'ids' : key, values, each) };
  // local: false by default and sent (the BDKs' default; the Python client writes it so too)
  if (withLocal) args.local = opts.local === undefined || opts.local === null ? false : bool('local', opts.local);
  if (opts.active !== undefined && opts.active !== null) args.active = bool('active', opts.active);
  return args;
}

/** The BDK's UserService: each resolves to the V2UserList ({users, errors?}) or null when none is found. */
class UserService {
  constructor(client) {
    this._c = typeof client === 'function' ? client : () => client;
  }

  /** users.lookup by 1..100 ids. opts: {local (default false, always sent), active, id}. */
  async listUsersByIds(ids, opts = {}) {
    return this._c().call('users.lookup', lookupArgs('user_ids', ids, userId, opts, true), callOpts(opts));
  }

  /** users.lookup by 1..100 e-mail addresses. opts: {local (default false, always sent), active, id}. */
  async listUsersByEmails(emails, opts = {}) {
    return this._c().call('users.lookup', lookupArgs('emails', emails, str, opts, true), callOpts(opts));
  }

  /** users.lookup by 1..100 usernames (local forced, as the BDKs do). opts: {active, id}. */
  async listUsersByUsernames(usernames, opts = {}) {
    return this._c().call('users.lookup', lookupArgs('usernames', usernames, str, opts, false), callOpts(opts));
  }
}

module.exports = { MessageService, StreamService, UserService, messageArgs, wrap };
