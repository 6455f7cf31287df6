'use strict';
// Test helpers: a JSON reader that keeps integers exact the way the decoder
// hands them out (number when the canonical msgpack form is 32-bit or less,
// BigInt for the uint64/int64 forms), and the golden vectors file.

const fs = require('fs');
const path = require('path');

const GOLDEN = path.join(__dirname, '..', '..', '..', 'schemas', 'golden', 'vectors.json');

function golden() {
  return JSON.parse(fs.readFileSync(GOLDEN, 'utf8'));
}

function intValue(tok) {
  const b = BigInt(tok);
  if (b < -(1n << 63n) || b > (1n << 64n) - 1n) return Number(tok); // the bridge makes it a float
  if (b >= -(1n << 31n) && b < (1n << 32n)) return Number(b);
  return b;
}

/** JSON text -> value, ints as above, duplicate keys: last value at the first position. */
function parseExact(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  function value() {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = {};
      ws();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        ws();
        const k = str();
        ws();
        i++; // :
        const v = value();
        Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i++] === '}') return o;
      }
    }
    if (c === '[') {
      i++;
      const a = [];
      ws();
      if (text[i] === ']') { i++; return a; }
      for (;;) {
        a.push(value());
        ws();
        if (text[i++] === ']') return a;
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    i += m[0].length;
    if (m[1] || m[2]) return Number(m[0]);
    const v = intValue(m[0]);
    return v === 0 ? 0 : v; // -0 is the int 0
  }
  function str() {
    let j = i + 1;
    while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
    const s = JSON.parse(text.slice(i, j + 1));
    i = j + 1;
    return s;
  }
  const v = value();
  return v;
}

/** Expands the `repeat` rule of a vector: [json, hex]. */
function expand(vec) {
  let json = vec.json;
  let hex = vec.msgpack_hex;
  for (const r of vec.repeat || []) {
    json = json.replace(r.placeholder, r.json_unit.repeat(r.times));
    if (r.msgpack_hex_unit !== null && r.msgpack_hex_unit !== undefined) hex = hex.replace(r.placeholder, r.msgpack_hex_unit.repeat(r.times));
  }
  return [json, hex];
}

module.exports = { golden, parseExact, intValue, expand };
