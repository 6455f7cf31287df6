'use strict';
// The canonical JSON of the conformance suite (schemas/conformance/README.md),
// written from msgpack bytes: maps in wire order, a repeated key once at its
// first position with its last value; ints exact; floats "f64:<16 hex>"; str
// with " \ and 0x00-0x1F escaped; bin "bin:<hex>"; ext "ext:<type>:<hex>".

/** Reads one value at pos: [node, next]. Nodes: {t, v} / {t:'map', pairs} / {t:'arr', items}. */
function read(buf, pos) {
  const b = buf[pos++];
  const str = (n) => [{ t: 'str', v: buf.subarray(pos, pos + n) }, pos + n];
  const bin = (n) => [{ t: 'bin', v: buf.subarray(pos, pos + n) }, pos + n];
  const ext = (n) => [{ t: 'ext', type: buf.readInt8(pos), v: buf.subarray(pos + 1, pos + 1 + n) }, pos + 1 + n];
  const int = (v, n) => [{ t: 'int', v }, pos + n];
  const items = (n, map) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      let k;
      if (map) [k, pos] = read(buf, pos);
      let v;
      [v, pos] = read(buf, pos);
      out.push(map ? [k, v] : v);
    }
    return [map ? { t: 'map', pairs: out } : { t: 'arr', items: out }, pos];
  };
  if (b <= 0x7f) return [{ t: 'int', v: BigInt(b) }, pos];
  if (b >= 0xe0) return [{ t: 'int', v: BigInt(b - 256) }, pos];
  if (b <= 0x8f) return items(b & 0x0f, true);
  if (b <= 0x9f) return items(b & 0x0f, false);
  if (b <= 0xbf) return str(b & 0x1f);
  switch (b) {
    case 0xc0: return [{ t: 'nil' }, pos];
    case 0xc2: return [{ t: 'bool', v: false }, pos];
    case 0xc3: return [{ t: 'bool', v: true }, pos];
    case 0xc4: pos += 1; return bin(buf[pos - 1]);
    case 0xc5: pos += 2; return bin(buf.readUInt16BE(pos - 2));
    case 0xc6: pos += 4; return bin(buf.readUInt32BE(pos - 4));
    case 0xc7: pos += 1; return ext(buf[pos - 1]);
    case 0xc8: pos += 2; return ext(buf.readUInt16BE(pos - 2));
    case 0xc9: pos += 4; return ext(buf.readUInt32BE(pos - 4));
    case 0xca: return [{ t: 'f64', v: buf.readFloatBE(pos) }, pos + 4];
    case 0xcb: return [{ t: 'f64', v: buf.readDoubleBE(pos) }, pos + 8];
    case 0xcc: return int(BigInt(buf[pos]), 1);
    case 0xcd: return int(BigInt(buf.readUInt16BE(pos)), 2);
    case 0xce: return int(BigInt(buf.readUInt32BE(pos)), 4);
    case 0xcf: return int(buf.readBigUInt64BE(pos), 8);
    case 0xd0: return int(BigInt(buf.readInt8(pos)), 1);
    case 0xd1: return int(BigInt(buf.readInt16BE(pos)), 2);
    case 0xd2: return int(BigInt(buf.readInt32BE(pos)), 4);
    case 0xd3: return int(buf.readBigInt64BE(pos), 8);
    case 0xd4: return ext(1);
    case 0xd5: return ext(2);
    case 0xd6: return ext(4);
    case 0xd7: return ext(8);
    case 0xd8: return ext(16);
    case 0xd9: pos += 1; return str(buf[pos - 1]);
    case 0xda: pos += 2; return str(buf.readUInt16BE(pos - 2));
    case 0xdb: pos += 4; return str(buf.readUInt32BE(pos - 4));
    case 0xdc: pos += 2; return items(buf.readUInt16BE(pos - 2), false);
    case 0xdd: pos += 4; return items(buf.readUInt32BE(pos - 4), false);
    case 0xde: pos += 2; return items(buf.readUInt16BE(pos - 2), true);
    case 0xdf: pos += 4; return items(buf.readUInt32BE(pos - 4), true);
    default: throw new Error(`bad msgpack byte ${b}`);
  }
}

function quote(bytes) {
  // bytes are UTF-8: escape ", \ and the control bytes, keep everything else
  const parts = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === 0x22 || c === 0x5c || c < 0x20) {
      parts.push(bytes.subarray(start, i));
      parts.push(Buffer.from(c === 0x22 ? '\\"' : c === 0x5c ? '\\\\' : `\\u00${c.toString(16).padStart(2, '0')}`));
      start = i + 1;
    }
  }
  parts.push(bytes.subarray(start));
  return `"${Buffer.concat(parts).toString('utf8')}"`;
}

function text(n) {
  switch (n.t) {
    case 'nil': return 'null';
    case 'bool': return n.v ? 'true' : 'false';
    case 'int': return n.v.toString();
    case 'f64': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(n.v);
      return `"f64:${b.toString('hex')}"`;
    }
    case 'str': return quote(n.v);
    case 'bin': return `"bin:${n.v.toString('hex')}"`;
    case 'ext': return `"ext:${n.type}:${n.v.toString('hex')}"`;
    case 'arr': return `[${n.items.map(text).join(',')}]`;
    case 'map': {
      const order = [];
      const last = new Map();
      for (const [k, v] of n.pairs) {
        const key = k.t === 'str' ? quote(k.v) : text(k);
        if (!last.has(key)) order.push(key);
        last.set(key, v);
      }
      return `{${order.map((k) => `${k}:${text(last.get(k))}`).join(',')}}`;
    }
    default: throw new Error(`node ${n.t}`);
  }
}

/** The canonical text of the "event" value (its last occurrence) of an envelope body. */
function canonicalEvent(body) {
  const [root] = read(body, 0);
  let ev = null;
  for (const [k, v] of root.pairs) if (k.t === 'str' && k.v.toString() === 'event') ev = v;
  return text(ev);
}

function canonical(buf) {
  return text(read(buf, 0)[0]);
}

module.exports = { canonicalEvent, canonical };
