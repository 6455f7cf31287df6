'use strict';
// wire: what comes off the socket, checked before anything trusts it (the
// counterpart of consumers/dfc_value.c + the frame rule and envelope check of
// dfc_event.c). msgpack goes through @msgpack/msgpack with every declared length
// bounded by the bytes received, after a structural scan that the library does
// not do: nesting depth (DFC_MAX_DEPTH), str keys only, and `__proto__` keys.

const { Decoder, Encoder } = require('@msgpack/msgpack');

const WIRE_VERSION = 1;
const MAX_TOPIC = 255;
const MAX_DEPTH = 520; // the bridge accepts JSON 512 deep; the envelope adds one
const EPOCH_BYTES = 128; // epochs are at most 127 bytes
const SEQ_MAX = 2 ** 53 - 1; // DFC_SEQ_MAX
const GSEQ_AHEAD = 2 ** 20; // DFC_GSEQ_AHEAD
const DEFAULT_MAX_FRAME = 16 << 20;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

// Status of a refused message, in dfc_msg_status_t order; each names its counter.
const ST = {
  OK: null,
  BAD_FRAMES: 'bad_frames',
  OVERSIZE: 'oversize',
  BAD_MSGPACK: 'bad_msgpack',
  NOT_MAP: 'not_map',
  BAD_VERSION: 'bad_version',
  BAD_ENVELOPE: 'bad_envelope',
  BAD_EVENT: 'bad_event',
};

class WireError extends Error {}

const PROTO_SENTINEL = '\u0000_proto__'; // same UTF-8 length as "__proto__" (9 bytes)
const PROTO_BYTES = Buffer.from('__proto__');

/**
 * Walks one msgpack object that must fill buf exactly, without building
 * anything: every declared length against the bytes left, depth <= MAX_DEPTH,
 * map keys strings, no reserved byte. Returns {protoKeys: [offsets of
 * "__proto__" key strings], floats: Set of top-level keys whose value is a
 * float (the envelope check refuses those), sentinel: whether a key equal to
 * PROTO_SENTINEL exists}. Throws WireError.
 */
// preallocated: the scan runs on one thread, never re-entered
const LEFT = new Float64Array(MAX_DEPTH + 2); // items left per open container (maps: 2 per pair)
const ISMAP = new Uint8Array(MAX_DEPTH + 2);

function scan(buf) {
  const n = buf.length;
  let pos = 0;
  let protoKeys = null;
  let floats = null;
  let sentinel = false;
  let depth = 0; // open containers
  let keyPos = -1; // the last depth-1 key: where and how long (decoded only when needed)
  let keyLen = 0;
  if (n === 0) throw new WireError('empty');
  for (;;) {
    if (pos >= n) throw new WireError('truncated');
    const isKey = depth > 0 && ISMAP[depth] === 1 && LEFT[depth] % 2 === 0;
    const b = buf[pos++];
    let skip = 0;
    let container = -1;
    let count = 0;
    let strLen = -1;
    if (b <= 0x7f || b >= 0xe0) {
      // fixint
    } else if (b <= 0x8f) {
      container = 1; count = b & 0x0f;
    } else if (b <= 0x9f) {
      container = 0; count = b & 0x0f;
    } else if (b <= 0xbf) {
      strLen = b & 0x1f;
    } else {
      switch (b) {
        case 0xc0: case 0xc2: case 0xc3: break;
        case 0xc1: throw new WireError('reserved byte 0xc1');
        case 0xc4: case 0xc7: case 0xd9: { // bin8, ext8, str8
          if (pos + 1 > n) throw new WireError('truncated');
          const l = buf[pos++];
          if (b === 0xd9) strLen = l; else skip = l + (b === 0xc7 ? 1 : 0);
          break;
        }
        case 0xc5: case 0xc8: case 0xda: {
          if (pos + 2 > n) throw new WireError('truncated');
          const l = (buf[pos] << 8) | buf[pos + 1];
          pos += 2;
          if (b === 0xda) strLen = l; else skip = l + (b === 0xc8 ? 1 : 0);
          break;
        }
        case 0xc6: case 0xc9: case 0xdb: {
          if (pos + 4 > n) throw new WireError('truncated');
          const l = buf.readUInt32BE(pos);
          pos += 4;
          if (b === 0xdb) strLen = l; else skip = l + (b === 0xc9 ? 1 : 0);
          break;
        }
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break;
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: case 0xde: {
          if (pos + 2 > n) throw new WireError('truncated');
          count = (buf[pos] << 8) | buf[pos + 1];
          pos += 2;
          container = b === 0xde ? 1 : 0;
          break;
        }
        case 0xdd: case 0xdf: {
          if (pos + 4 > n) throw new WireError('truncated');
          count = buf.readUInt32BE(pos);
          pos += 4;
          container = b === 0xdf ? 1 : 0;
          break;
        }
        default: throw new WireError('bad byte');
      }
    }
    if (strLen >= 0) skip = strLen;
    if (skip > n - pos) throw new WireError('declared length beyond the data');
    if (isKey) {
      if (strLen < 0) throw new WireError('map key is not a string');
      if (strLen === 9) {
        if (buf[pos] === 0x5f && buf.compare(PROTO_BYTES, 0, 9, pos, pos + 9) === 0) (protoKeys || (protoKeys = [])).push(pos);
        else if (buf[pos] === 0 && buf.toString('utf8', pos, pos + 9) === PROTO_SENTINEL) sentinel = true;
      }
      if (depth === 1) { keyPos = pos; keyLen = strLen; }
    } else if (depth === 1 && (b === 0xca || b === 0xcb) && keyPos >= 0 && keyLen < 32) {
      (floats || (floats = new Set())).add(buf.toString('utf8', keyPos, keyPos + keyLen));
    }
    pos += skip;
    if (container >= 0) {
      const items = container === 1 ? count * 2 : count;
      if (items > n - pos) throw new WireError('declared length beyond the data'); // >= 1 byte each
      if (items > 0) {
        if (depth + 1 > MAX_DEPTH) throw new WireError('nested too deep');
        depth++;
        LEFT[depth] = items;
        ISMAP[depth] = container;
        continue;
      }
    }
    // one item done: close finished containers
    while (depth > 0 && --LEFT[depth] === 0) depth--;
    if (depth === 0) break;
  }
  if (pos !== n) throw new WireError('trailing bytes');
  return { protoKeys: protoKeys || NO_KEYS, floats, sentinel };
}

const NO_KEYS = [];

function keyConverter(key) {
  if (typeof key !== 'string') throw new WireError('map key is not a string');
  return key;
}

const decoder = new Decoder({
  useBigInt64: true,
  maxStrLength: DEFAULT_MAX_FRAME,
  maxBinLength: DEFAULT_MAX_FRAME,
  maxArrayLength: DEFAULT_MAX_FRAME,
  maxMapLength: DEFAULT_MAX_FRAME,
  maxExtLength: DEFAULT_MAX_FRAME,
  mapKeyConverter: keyConverter,
});

// Rebuilds the objects that carried a "__proto__" key (renamed to the
// sentinel for the decoder): the key becomes an own data property, in place.
function restoreProto(v) {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = restoreProto(v[i]);
    return v;
  }
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
  const keys = Object.keys(v);
  const has = keys.includes(PROTO_SENTINEL);
  const out = has ? {} : v;
  for (const k of keys) {
    const val = restoreProto(v[k]);
    if (k === PROTO_SENTINEL) {
      Object.defineProperty(out, '__proto__', { value: val, enumerable: true, writable: true, configurable: true });
    } else {
      out[k] = val;
    }
  }
  return out;
}

/**
 * Decodes one msgpack body (Buffer). Integers in the uint64/int64 forms are
 * BigInt, every other integer a number; floats numbers; str strings; bin
 * Uint8Array. Throws WireError for anything malformed (the caller counts it as
 * bad_msgpack). Returns {value, floats}.
 */
function decode(buf) {
  const info = scan(buf);
  // every declared length is already checked against the bytes left; these
  // bound the decoder as well (its defaults accept 4 GiB)
  const lim = buf.length;
  decoder.maxStrLength = lim;
  decoder.maxBinLength = lim;
  decoder.maxArrayLength = lim;
  decoder.maxMapLength = lim;
  decoder.maxExtLength = lim;
  let value;
  if (info.protoKeys.length === 0) {
    try {
      value = decoder.decode(buf);
    } catch (e) {
      throw new WireError(e.message);
    }
  } else {
    if (info.sentinel) throw new WireError('both "__proto__" and its placeholder as keys');
    const copy = Buffer.from(buf);
    for (const off of info.protoKeys) copy.write(PROTO_SENTINEL, off, 'utf8');
    try {
      value = restoreProto(decoder.decode(copy));
    } catch (e) {
      throw new WireError(e.message);
    }
  }
  return { value, floats: info.floats };
}

const encoder = new Encoder({ useBigInt64: true });
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** v with every integer in the form that makes @msgpack/msgpack write it in
    its shortest msgpack form, as the C and Python encoders do: with useBigInt64
    it writes a number >= 2^32 (or < -2^31) as a float64 and any BigInt in 9
    bytes, so safe integers past 32 bits become BigInt and BigInts that fit a
    double become numbers. An undefined member is left out (as JSON does). */
function canonicalInts(v, depth = 0) {
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) && (v >= 2 ** 32 || v < -(2 ** 31)) ? BigInt(v) : v;
  }
  if (typeof v === 'bigint') {
    return v >= SAFE_MIN && v <= SAFE_MAX && v < 2n ** 32n && v >= -(2n ** 31n) ? Number(v) : v;
  }
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
  if (depth > MAX_DEPTH) throw new WireError('nested too deep');
  if (Array.isArray(v)) return v.map((x) => canonicalInts(x, depth + 1));
  const out = {};
  for (const k of Object.keys(v)) {
    if (v[k] === undefined) continue;
    Object.defineProperty(out, k, { value: canonicalInts(v[k], depth + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** msgpack of v (a Buffer), every integer in its shortest form (canonicalInts). */
function encode(v) {
  const u = encoder.encode(canonicalInts(v));
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function isMap(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

// uint64 as a number (exact up to SEQ_MAX; larger become Infinity: "cannot be
// right" downstream), or undefined when v is not a non-negative integer.
function asUint(v) {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : undefined;
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) return undefined;
    return v > BigInt(SEQ_MAX) ? Infinity : Number(v);
  }
  return undefined;
}

function asInt64(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : undefined;
  if (typeof v === 'bigint') return v >= I64_MIN && v <= I64_MAX ? v : undefined;
  return undefined;
}

/** The frame rule: exactly 2 frames, topic 1..255 bytes. */
function framesCheck(frames) {
  return frames.length === 2 && frames[0].length > 0 && frames[0].length <= MAX_TOPIC;
}

/**
 * One message: frames -> {topic, seq, gseq, epoch, ts, bot, event, body} or
 * {status} (a counter name, see ST). seq/gseq are numbers (Infinity above
 * 2^53-1), ts a number, bot a BigInt.
 */
const REPLAY_QUEUE_BYTES = 64 << 20;

/** The replay DEALER's receiveHighWaterMark (dfc_replay_rcvhwm): REPLAY_QUEUE_BYTES /
    maxFrame within 4..256 messages, so that libzmq queues at most about
    max(64 MiB, 4 x maxFrame) for it; a peer that sends more is held back by TCP. */
function replayRcvhwm(maxFrame) {
  const n = Math.floor(REPLAY_QUEUE_BYTES / ((maxFrame || DEFAULT_MAX_FRAME) + MAX_TOPIC));
  return Math.max(4, Math.min(256, n));
}

const WILDCARD_HOSTS = new Set(['*', '0.0.0.0', '::', '[::]', '[*]']);

/** "transport://host:port" -> [transport, host, ":port"] (the host after a ';'
    source address), or null when there is no "://". */
function splitEp(ep) {
  const i = ep.indexOf('://');
  if (i < 0) return null;
  const rest = ep.slice(i + 3);
  const semi = rest.indexOf(';');
  const h = semi >= 0 ? rest.slice(semi + 1) : rest;
  let colon = h.lastIndexOf(':');
  if (colon < 0 || (h.includes(']') && colon < h.indexOf(']'))) colon = h.length;
  return [ep.slice(0, i), h.slice(0, colon), h.slice(colon)];
}

/** The rule for a replay endpoint a heartbeat names (dfc_replay_advert): over tcp
    the host must be the bridge endpoint's (without case; a wildcard host is
    replaced by it), ipc and inproc need a bridge of the same transport; anyHost
    takes it as it is. Returns the endpoint to use, or null when refused. */
function replayAdvert(pub, adv, anyHost) {
  if (anyHost) return adv;
  const p = splitEp(pub);
  const a = splitEp(adv);
  if (!p || !a || p[0] !== a[0]) return null;
  if (a[0] === 'tcp') {
    if (adv.slice(6).includes(';')) return null; // a source address of its own choosing
    if (!WILDCARD_HOSTS.has(a[1]) && a[1].toLowerCase() !== p[1].toLowerCase()) return null;
    return `tcp://${p[1]}${a[2]}`;
  }
  if (a[0] === 'ipc' || a[0] === 'inproc') return adv;
  return null;
}

function parseMessage(frames, maxFrame) {
  if (!framesCheck(frames)) return { status: ST.BAD_FRAMES };
  const body = frames[1];
  if (body.length > maxFrame) return { status: ST.OVERSIZE };
  let d;
  try {
    d = decode(body);
  } catch (e) {
    return { status: ST.BAD_MSGPACK, why: e.message };
  }
  const root = d.value;
  if (!isMap(root)) return { status: ST.NOT_MAP };
  const fl = d.floats;
  const v = fl && fl.has('v') ? undefined : asUint(root.v);
  if (v === undefined || v > WIRE_VERSION) return { status: ST.BAD_VERSION };
  const seq = asUint(root.seq);
  const gseq = asUint(root.gseq);
  const ts = asUint(root.ts);
  const bot = asInt64(root.bot);
  const epoch = root.epoch;
  if (seq === undefined || gseq === undefined || ts === undefined || bot === undefined ||
      typeof epoch !== 'string' ||
      (fl && (fl.has('seq') || fl.has('gseq') || fl.has('ts') || fl.has('bot')))) {
    return { status: ST.BAD_ENVELOPE };
  }
  const event = root.event;
  if (!isMap(event)) return { status: ST.BAD_EVENT };
  return {
    status: ST.OK,
    topic: frames[0].toString('utf8'),
    topicBytes: frames[0],
    seq, gseq, epoch, ts, bot, event, body, root,
    size: frames[0].length + body.length, // as received: what maxHeldBytes counts
  };
}

module.exports = {
  WIRE_VERSION, MAX_TOPIC, MAX_DEPTH, EPOCH_BYTES, SEQ_MAX, GSEQ_AHEAD, DEFAULT_MAX_FRAME,
  ST, WireError, scan, decode, encode, isMap, asUint, asInt64, framesCheck, parseMessage,
  replayRcvhwm, replayAdvert,
};
