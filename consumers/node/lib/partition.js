'use strict';
// partition: the partition key of an event and FNV-1a 64 (schemas/CONTRACT.md
// section 10), exactly as dfc_delivery.c: the first string at
// payload.<key>.stream.streamId, then payload.<key>.message.stream.streamId
// (<key> the single key of payload), else the event id, else "".

const { isMap } = require('./events');

function partitionKey(event) {
  const p = event.payload;
  if (isMap(p)) {
    const keys = Object.keys(p);
    if (keys.length === 1) {
      const inner = p[keys[0]];
      if (isMap(inner)) {
        const s = inner.stream;
        if (isMap(s) && typeof s.streamId === 'string') return s.streamId;
        const m = inner.message;
        if (isMap(m) && isMap(m.stream) && typeof m.stream.streamId === 'string') return m.stream.streamId;
      }
    }
  }
  return typeof event.id === 'string' ? event.id : '';
}

// 64-bit arithmetic in four 16-bit limbs (BigInt per byte is slow).
// prime 1099511628211 = 0x100000001b3: limbs (lo..hi) 0x01b3, 0, 0x0100, 0
function fnvLimbs(bytes) {
  // offset basis 14695981039346656037 = 0xcbf29ce484222325
  let h0 = 0x2325, h1 = 0x8422, h2 = 0x9ce4, h3 = 0xcbf2;
  for (let i = 0; i < bytes.length; i++) {
    h0 ^= bytes[i];
    // h * p mod 2^64, p = 0x01b3 + 0x0100 << 32
    const a0 = h0 * 0x1b3;
    const a1 = h1 * 0x1b3;
    const a2 = h2 * 0x1b3 + h0 * 0x100;
    const a3 = h3 * 0x1b3 + h1 * 0x100;
    let c = a0;
    h0 = c & 0xffff;
    c = a1 + Math.floor(c / 65536);
    h1 = c & 0xffff;
    c = a2 + Math.floor(c / 65536);
    h2 = c & 0xffff;
    c = a3 + Math.floor(c / 65536);
    h3 = c & 0xffff;
  }
  return [h0, h1, h2, h3];
}

function toBytes(key) {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
}

/** FNV-1a 64 of a string's UTF-8 bytes (or of a Buffer), as a BigInt. */
function fnv1a64(key) {
  const [h0, h1, h2, h3] = fnvLimbs(toBytes(key));
  return (BigInt(h3) << 48n) | (BigInt(h2) << 32n) | (BigInt(h1) << 16n) | BigInt(h0);
}

/** The member of a group of n that handles key: fnv1a64(key) mod n (0 when n is 0). */
function partition(key, n) {
  if (!n) return 0;
  const [h0, h1, h2, h3] = fnvLimbs(toBytes(key));
  // mod n by Horner over 16-bit limbs (n < 2^31 keeps every step exact)
  let r = h3 % n;
  r = (r * 65536 + h2) % n;
  r = (r * 65536 + h1) % n;
  r = (r * 65536 + h0) % n;
  return r;
}

module.exports = { partitionKey, fnv1a64, partition, fnvLimbs };
