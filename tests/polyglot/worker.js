#!/usr/bin/env node
'use strict';
// The Node worker of the polyglot live test (live_test.py), in the Java BDK's style: a
// RealTimeEventListener subclass with the Java callback names, subscribed to a DatafeedLoop
// of the dfconsumer port, then start().
//
// Every callback prints one line "E <gseq> <callback> <canonical event>" on stdout: the C
// name of the callback and the event map in the canonical JSON of
// schemas/conformance/README.md, as the C (c_worker.c) and Python (bdk_worker.py) workers
// do. JavaScript numbers cannot tell the float 12.0 from the int 12, so the canonical text is
// written from the bytes of the envelope the loop handed to the callback
// (currentEnvelope().body), and its id is checked against the event the loop decoded.
// {"ready":true} before start(), {"stats":...} after it returned (SIGTERM stops the loop).
//
// Usage: node worker.js --endpoint EP [--replay EP] [--from-gseq N]
//                       [--checkpoint-dir D --name N]

const path = require('path');
// Run from a checkout: the port is consumers/node.
const { DatafeedLoop, RealTimeEventListener, currentEnvelope } =
  require(path.join(__dirname, '..', '..', 'consumers', 'node'));

// ---- canonical JSON from msgpack bytes ------------------------------------------------------

function escape(s) {
  return s.replace(/["\\\u0000-\u001f]/g, (c) =>
    (c === '"' || c === '\\' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/** Reads one msgpack value of buf at pos; returns [canonical text, next pos]. */
function canon(buf, pos) {
  const b = buf[pos++];
  const str = (n) => [`"${escape(buf.toString('utf8', pos, pos + n))}"`, pos + n];
  const bin = (n) => [`"bin:${buf.toString('hex', pos, pos + n)}"`, pos + n];
  const seq = (n, isMap) => {
    if (!isMap) {
      const items = [];
      for (let i = 0; i < n; i++) {
        const [t, p] = canon(buf, pos);
        items.push(t);
        pos = p;
      }
      return [`[${items.join(',')}]`, pos];
    }
    const pairs = new Map(); // a repeated key keeps its first place and takes its last value
    for (let i = 0; i < n; i++) {
      const [k, p] = canon(buf, pos);
      const [v, q] = canon(buf, p);
      pairs.set(k, v);
      pos = q;
    }
    return [`{${[...pairs].map(([k, v]) => `${k}:${v}`).join(',')}}`, pos];
  };
  if (b <= 0x7f) return [String(b), pos];
  if (b >= 0xe0) return [String(b - 0x100), pos];
  if (b <= 0x8f) return seq(b & 0x0f, true);
  if (b <= 0x9f) return seq(b & 0x0f, false);
  if (b <= 0xbf) return str(b & 0x1f);
  switch (b) {
    case 0xc0: return ['null', pos];
    case 0xc2: return ['false', pos];
    case 0xc3: return ['true', pos];
    case 0xc4: return bin(buf[pos++]);
    case 0xc5: pos += 2; return bin(buf.readUInt16BE(pos - 2));
    case 0xc6: pos += 4; return bin(buf.readUInt32BE(pos - 4));
    case 0xca: { // float32, widened
      const d = Buffer.alloc(8);
      d.writeDoubleBE(buf.readFloatBE(pos));
      return [`"f64:${d.toString('hex')}"`, pos + 4];
    }
    case 0xcb: return [`"f64:${buf.toString('hex', pos, pos + 8)}"`, pos + 8];
    case 0xcc: return [String(buf.readUInt8(pos)), pos + 1];
    case 0xcd: return [String(buf.readUInt16BE(pos)), pos + 2];
    case 0xce: return [String(buf.readUInt32BE(pos)), pos + 4];
    case 0xcf: return [String(buf.readBigUInt64BE(pos)), pos + 8];
    case 0xd0: return [String(buf.readInt8(pos)), pos + 1];
    case 0xd1: return [String(buf.readInt16BE(pos)), pos + 2];
    case 0xd2: return [String(buf.readInt32BE(pos)), pos + 4];
    case 0xd3: return [String(buf.readBigInt64BE(pos)), pos + 8];
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: // fixext: as the C worker, null
      return ['null', pos + 1 + (1 << (b - 0xd4))];
    case 0xc7: return ['null', pos + 2 + buf[pos]];
    case 0xc8: return ['null', pos + 3 + buf.readUInt16BE(pos)];
    case 0xc9: return ['null', pos + 5 + buf.readUInt32BE(pos)];
    case 0xd9: pos += 1; return str(buf[pos - 1]);
    case 0xda: pos += 2; return str(buf.readUInt16BE(pos - 2));
    case 0xdb: pos += 4; return str(buf.readUInt32BE(pos - 4));
    case 0xdc: pos += 2; return seq(buf.readUInt16BE(pos - 2), false);
    case 0xdd: pos += 4; return seq(buf.readUInt32BE(pos - 4), false);
    case 0xde: pos += 2; return seq(buf.readUInt16BE(pos - 2), true);
    case 0xdf: pos += 4; return seq(buf.readUInt32BE(pos - 4), true);
    default: throw new Error(`msgpack byte 0x${b.toString(16)}`);
  }
}

/** The canonical text of the "event" value of an envelope body (a map; the last "event" key
    counts, as in the decoded envelope). */
function canonicalEvent(body) {
  let pos = 1;
  let n;
  if (body[0] >= 0x80 && body[0] <= 0x8f) n = body[0] & 0x0f;
  else if (body[0] === 0xde) { n = body.readUInt16BE(1); pos = 3; }
  else if (body[0] === 0xdf) { n = body.readUInt32BE(1); pos = 5; }
  else throw new Error('the envelope is not a map');
  let event = null;
  for (let i = 0; i < n; i++) {
    const [k, p] = canon(body, pos);
    const [v, q] = canon(body, p);
    if (k === '"event"') event = v;
    pos = q;
  }
  if (event === null) throw new Error('envelope without an event');
  return event;
}

function handled(callback) {
  const env = currentEnvelope();
  let line;
  try {
    const text = canonicalEvent(env.body);
    const id = env.event.id === undefined ? null : env.event.id;
    if (JSON.parse(text).id !== id) throw new Error(`decoded id ${id} is not the body's`);
    line = `E ${env.gseq} ${callback} ${text}\n`;
  } catch (e) {
    line = `{"error":${JSON.stringify(String(e && e.stack))}}\n`;
  }
  process.stdout.write(line);
}

// ---- the listener, Java BDK names -----------------------------------------------------------

class RealTimeEventListenerImpl extends RealTimeEventListener {
  onMessageSent(initiator, event) { handled('on_message_sent'); }
  onSharedPost(initiator, event) { handled('on_shared_post'); }
  onInstantMessageCreated(initiator, event) { handled('on_instant_message_created'); }
  onRoomCreated(initiator, event) { handled('on_room_created'); }
  onRoomUpdated(initiator, event) { handled('on_room_updated'); }
  onRoomDeactivated(initiator, event) { handled('on_room_deactivated'); }
  onRoomReactivated(initiator, event) { handled('on_room_reactivated'); }
  onUserRequestedToJoinRoom(initiator, event) { handled('on_user_requested_to_join_room'); }
  onUserJoinedRoom(initiator, event) { handled('on_user_joined_room'); }
  onUserLeftRoom(initiator, event) { handled('on_user_left_room'); }
  onRoomMemberPromotedToOwner(initiator, event) { handled('on_room_member_promoted_to_owner'); }
  onRoomMemberDemotedFromOwner(initiator, event) { handled('on_room_member_demoted_from_owner'); }
  onConnectionRequested(initiator, event) { handled('on_connection_requested'); }
  onConnectionAccepted(initiator, event) { handled('on_connection_accepted'); }
  onMessageSuppressed(initiator, event) { handled('on_message_suppressed'); }
  onSymphonyElementsAction(initiator, event) { handled('on_symphony_elements_action'); }
  onGenericSystemEvent(initiator, event) { handled('on_generic_system_event'); }
  onUnknownEvent(initiator, event) { handled('on_unknown'); }
}

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 1 && i + 1 < process.argv.length ? process.argv[i + 1] : undefined;
}

async function main() {
  const options = { fromGseq: Number(arg('from-gseq') || 0) };
  if (arg('checkpoint-dir')) Object.assign(options, { checkpointDir: arg('checkpoint-dir'), name: arg('name') });
  const datafeedLoop = new DatafeedLoop(arg('endpoint'), arg('replay') || null, options);
  datafeedLoop.subscribe(new RealTimeEventListenerImpl());
  const stop = () => datafeedLoop.stop();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write('{"ready":true}\n');

  await datafeedLoop.start();
  process.stdout.write(`${JSON.stringify({ stats: datafeedLoop.stats() })}\n`);
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`${e && e.stack}\n`);
  process.exit(1);
});
