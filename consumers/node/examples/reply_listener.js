'use strict';
// A listener that answers every message with a reply in the same stream,
// through the bridge's command channel (the bridge holds the bot's session):
// the Node form of the BDK's RealTimeEventListener that replies in
// onMessageSent. Exactly once: each reply's id is the default one,
// "<event id>/replier/1", so an event delivered again (replayed after a crash,
// handled by another worker of the group) is answered from the bridge's record
// instead of being posted twice.
//
//   DFCONSUMER_ENDPOINT=tcp://127.0.0.1:5556 DFCONSUMER_COMMANDS=tcp://127.0.0.1:5558 \
//     node examples/reply_listener.js
// Optional: DFCONSUMER_CHECKPOINT_DIR (resume after a restart), DFCONSUMER_SERVER_KEY and
// DFCONSUMER_CERT (CURVE). Stops on SIGTERM/SIGINT after the replies in flight.

const { DatafeedLoop, RealTimeEventListener, CommandError, listenerContext } = require('..');

class Replier extends RealTimeEventListener {
  constructor(loop) {
    super();
    this.name = 'replier'; // the listener id in the default command ids: keep it stable
    this.loop = loop;
  }

  // the BDK filter (inherited isAcceptingEvent) leaves out the bot's own messages:
  // the replies themselves come back as MESSAGESENT events and are not answered
  async onMessageSent(initiator, event) {
    const msg = event.message;
    const who = initiator.user.displayName || String(initiator.user.userId);
    try {
      const sent = await this.loop.messages.sendMessage(msg.stream.streamId,
        `<messageML>Thanks ${escapeXml(who)}, got your message ${escapeXml(msg.messageId)}</messageML>`);
      console.log(`${listenerContext()} replied ${sent.messageId} to ${msg.messageId}`);
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      // rejected (4xx: nothing was posted), unavailable, unknown_outcome, timeout...
      console.log(`${listenerContext()} no reply to ${msg.messageId}: ${e.code} ${e.message}`);
    }
  }
}

function escapeXml(s) {
  return String(s).replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const env = process.env;
const options = { commands: env.DFCONSUMER_COMMANDS || 'tcp://127.0.0.1:5558' };
if (env.DFCONSUMER_CHECKPOINT_DIR) Object.assign(options, { checkpointDir: env.DFCONSUMER_CHECKPOINT_DIR, name: 'replier' });
if (env.DFCONSUMER_SERVER_KEY) Object.assign(options, { serverKey: env.DFCONSUMER_SERVER_KEY, cert: env.DFCONSUMER_CERT });
if (env.DFCONSUMER_FROM_GSEQ) options.fromGseq = Number(env.DFCONSUMER_FROM_GSEQ);

const loop = new DatafeedLoop(env.DFCONSUMER_ENDPOINT || 'tcp://127.0.0.1:5556', options);
loop.subscribe(new Replier(loop));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => loop.stop());
loop.start().then(() => console.log('stopped'));
