'use strict';
// curve: CURVE on every socket the loop opens to a bridge (the options
// serverKey and cert), and the handshakes that fail: counted (auth_failures),
// logged rate-limited, and a denied connection connected again with a backoff,
// because libzmq 4.3 never reconnects after a ZAP denial. Port of
// consumers/dfc_curve.c; the certificate reader reads the files of czmq's zcert
// and pyzmq's zmq.auth.create_certificates.

const crypto = require('crypto');
const fs = require('fs');

const BACKOFF_FIRST_MS = 250; // after a refused handshake: 250, 500, 1000, then every 2000 ms
const BACKOFF_MAX_MS = 2000;
const LOG_EVERY_MS = 10000; // a failing handshake is logged at most this often per socket
const CERT_MAX_BYTES = 65536;

const Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

// the events zeromq.js names after libzmq's, and what a failure most likely means
const FAILED = {
  'handshake:error:auth': "refused by the bridge (this consumer's key is not in its clients directory?)",
  'handshake:error:other': 'failed (a wrong serverKey, or a bridge without CURVE?)',
  'handshake:error:protocol': 'failed: CURVE protocol error',
};

/** The 32 bytes of a 40-character Z85 key, or null. */
function z85Decode(s) {
  if (typeof s !== 'string' || s.length !== 40) return null;
  const out = Buffer.alloc(32);
  for (let i = 0; i < 40; i += 5) {
    let v = 0;
    for (let j = 0; j < 5; j++) {
      const d = Z85.indexOf(s[i + j]);
      if (d < 0) return null;
      v = v * 85 + d;
    }
    if (v > 0xffffffff) return null;
    out.writeUInt32BE(v, (i / 5) * 4);
  }
  return out;
}

// PKCS#8 and SPKI prefixes of a raw X25519 key (RFC 8410): CURVE's keys are X25519's
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** The public key (Z85) that belongs to a secret key (Z85), as zmq_curve_public. */
function publicOf(secretZ85) {
  const raw = z85Decode(secretZ85);
  const key = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(key).export({ format: 'der', type: 'spki' });
  raw.fill(0);
  return z85Encode(spki.subarray(spki.length - 32));
}

function z85Encode(buf) {
  let s = '';
  for (let i = 0; i < buf.length; i += 4) {
    let v = buf.readUInt32BE(i);
    let chunk = '';
    for (let j = 0; j < 5; j++) {
      chunk = Z85[v % 85] + chunk;
      v = Math.floor(v / 85);
    }
    s += chunk;
  }
  return s;
}

/** {publicKey, secretKey|null} of a certificate file; TypeError naming the option and file. */
function readCert(option, path) {
  let text;
  try {
    const st = fs.statSync(path);
    if (!st.isFile()) throw new TypeError(`option ${option}: ${path}: not a regular file`);
    if (st.size > CERT_MAX_BYTES) throw new TypeError(`option ${option}: ${path}: larger than ${CERT_MAX_BYTES} bytes`);
    text = fs.readFileSync(path, 'latin1');
  } catch (e) {
    if (e instanceof TypeError) throw e;
    throw new TypeError(`option ${option}: ${path}: cannot read: ${e.code || e.message}`);
  }
  let section = null;
  const keys = {};
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s*(#|$)/.test(raw)) continue;
    const indent = /^ */.exec(raw)[0].length;
    const m = /^\s*([A-Za-z0-9_.-]+)\s*(?:=\s*(.*?))?\s*$/.exec(raw);
    if (!m) continue;
    if (indent === 0) {
      section = m[1];
      continue;
    }
    if (section === 'curve' && (m[1] === 'public-key' || m[1] === 'secret-key') && m[2] !== undefined) {
      const v = m[2].replace(/^["']|["']$/g, '');
      if (!z85Decode(v)) throw new TypeError(`option ${option}: ${path}: its ${m[1]} is not a 40-character Z85 key`);
      keys[m[1]] = v;
    }
  }
  text = null;
  if (!keys['public-key']) throw new TypeError(`option ${option}: ${path}: no public-key in a curve section: not a ZeroMQ certificate file`);
  return { publicKey: keys['public-key'], secretKey: keys['secret-key'] || null };
}

/**
 * The client keys for the options, or null when neither is set. serverKey: the
 * bridge's public key, 40 Z85 characters, or the path of its public certificate
 * (.key; an existing file wins over the Z85 reading); cert: the path of this
 * consumer's secret certificate (.key_secret). Throws TypeError.
 */
function load(serverKey, cert) {
  if (!serverKey && !cert) return null;
  if (!cert) throw new TypeError("option serverKey needs cert: the path of this consumer's .key_secret file");
  if (!serverKey) throw new TypeError("option cert needs serverKey: the bridge's public key (40 Z85 characters) or its .key file");
  if (typeof serverKey !== 'string' || typeof cert !== 'string') throw new TypeError('options serverKey and cert: strings');
  let server;
  if (fs.existsSync(serverKey)) {
    const c = readCert('serverKey', serverKey);
    if (c.secretKey) {
      throw new TypeError(`option serverKey: ${serverKey} holds a secret-key: give the bridge's public certificate (.key), never its secret`);
    }
    server = c.publicKey;
  } else if (z85Decode(serverKey)) {
    server = serverKey;
  } else {
    // the value itself is not repeated: it might be a mistyped secret
    throw new TypeError(`option serverKey: neither a certificate file nor a 40-character Z85 key (${serverKey.length} characters)`);
  }
  const c = readCert('cert', cert);
  if (!c.secretKey) {
    throw new TypeError(`option cert: ${cert} has no secret-key: give this consumer's .key_secret file (a public certificate was given?)`);
  }
  if (publicOf(c.secretKey) !== c.publicKey) throw new TypeError(`option cert: ${cert}: its public-key does not belong to its secret-key`);
  // not enumerable: a console.log of the loop's config never shows the secret
  const keys = { serverKey: server, publicKey: c.publicKey };
  Object.defineProperty(keys, 'secretKey', { value: c.secretKey, enumerable: false });
  return keys;
}

/** The socket options of a CURVE client (zeromq v6 names). */
function socketOptions(keys) {
  return keys ? { curveServerKey: keys.serverKey, curvePublicKey: keys.publicKey, curveSecretKey: keys.secretKey } : {};
}

/**
 * The handshake failures of one link's socket (SUB or replay DEALER): each counts
 * in auth_failures; the first is logged at once, the next ones at most every
 * LOG_EVERY_MS; a failure sets the backoff (250 ms doubling to 2 s; a success
 * resets it) and `pending`: the owner connects again itself after `backoff` ms
 * unless libzmq says it retries on its own ('connect:retry': a wrong key).
 */
class Handshakes {
  constructor(loop, what) {
    this.loop = loop;
    this.what = what;
    this.backoff = 0;
    this.pending = 0; // the token of the failure to retry: 0 = nothing pending
    this.seq = 0;
    this.failed = 0;
    this.loggedAt = -Infinity;
    this.unlogged = 0;
  }

  /** A zeromq.js event type; true when it was a handshake event. */
  onEvent(type, now) {
    if (type === 'handshake') {
      if (this.failed) this.loop.log('info', `${this.what}: handshake succeeded after ${this.failed} failure(s)`);
      this.backoff = this.pending = this.failed = this.unlogged = 0;
      this.loggedAt = -Infinity;
      return true;
    }
    const why = FAILED[type];
    if (why === undefined) return false;
    this.loop.stat.auth_failures++;
    this.failed++;
    this.backoff = Math.min(Math.max(this.backoff * 2, BACKOFF_FIRST_MS), BACKOFF_MAX_MS);
    this.pending = ++this.seq;
    if (now - this.loggedAt >= LOG_EVERY_MS) {
      const more = this.unlogged ? ` (${this.unlogged} more since the last line)` : '';
      this.loop.log('warn', `${this.what}: CURVE handshake ${why}; retrying every ${BACKOFF_MAX_MS} ms at most${more}`);
      this.loggedAt = now;
      this.unlogged = 0;
    } else {
      this.unlogged++;
    }
    return true;
  }

  /** Runs fn after the backoff if this failure is still the pending one then. */
  schedule(fn) {
    const token = this.pending;
    setTimeout(() => {
      if (this.pending !== token || token === 0) return;
      this.pending = 0;
      fn();
    }, this.backoff).unref();
  }

  retriedByLibzmq() {
    this.pending = 0;
  }
}

/**
 * Watches a replay DEALER: a refused handshake is counted, and the endpoint
 * connected again after the backoff (disconnect + connect: no message of the
 * refused connection is in its pipe). The request that got no answer is asked
 * again under the fill's replayTimeoutMs rules.
 */
function watchDealer(loop, hs, dealer, endpoint, current) {
  const events = dealer.events;
  const on = (type) => events.on(type, () => {
    if (!current() || loop._stopping) return;
    if (!hs.onEvent(type, performance.now()) || !hs.pending) return;
    hs.schedule(() => {
      if (!current() || loop._stopping) return;
      try {
        dealer.disconnect(endpoint);
      } catch (_) { /* libzmq forgot it already */ }
      try {
        dealer.connect(endpoint);
      } catch (e) {
        loop.log('error', `replay ${endpoint}: cannot reconnect: ${e.message}`);
      }
    });
  });
  for (const t of ['handshake', ...Object.keys(FAILED)]) on(t);
  events.on('connect:retry', () => hs.retriedByLibzmq());
}

module.exports = {
  load, socketOptions, Handshakes, watchDealer, FAILED, z85Decode, z85Encode, publicOf,
  BACKOFF_FIRST_MS, BACKOFF_MAX_MS, LOG_EVERY_MS,
};
