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
//                       [--server-key K --cert F]   (CURVE, curve_live_test.py)

const path = require('path');
// Run from a checkout: the port is consumers/node.
const { DatafeedLoop, RealTimeEventListener, currentEnvelope } =
  require(path.join(__dirname, '..', '..', 'consumers', 'node'));
// The canonical JSON printer of the Node conformance adapter: one for both.
const { canonicalEvent } =
  require(path.join(__dirname, '..', '..', 'consumers', 'node', 'conformance', 'canonical'));

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
  if (arg('server-key')) Object.assign(options, { serverKey: arg('server-key'), cert: arg('cert') });
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
