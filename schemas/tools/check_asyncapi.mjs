// schemas_asyncapi: @asyncapi/parser (v3) parses and validates schemas/asyncapi.yaml with zero errors,
// and the document lists exactly what schemas/contract-v1.json lists: one channel per topic (the 17
// event types in order, UNKNOWN, _hb) plus the replay and commands channels, each topic's message pinned
// to its type and payload key, a receive operation per topic, the replay request/reply and the command
// request/reply (its codes and ops those of contract-v1.json "commands").
// Usage: node schemas/tools/check_asyncapi.mjs   (needs `npm ci` in schemas/)
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser } from '@asyncapi/parser';

const here = dirname(fileURLToPath(import.meta.url));
const schemasDir = join(here, '..');
const docPath = join(schemasDir, 'asyncapi.yaml');
const contract = JSON.parse(readFileSync(join(schemasDir, 'contract-v1.json'), 'utf8'));
const SEVERITY = ['error', 'warning', 'info', 'hint'];

async function parse(text) {
  const parser = new Parser();
  return parser.parse(text, { source: docPath });
}

function printDiagnostics(diagnostics) {
  for (const d of diagnostics) {
    console.log(`  ${SEVERITY[d.severity] ?? d.severity}: ${d.code}: ${d.message} at /${(d.path || []).join('/')}`);
  }
  return diagnostics.filter((d) => d.severity === 0).length;
}

// What differs between the parsed document and the contract (an empty list when nothing).
function drift(document, c) {
  const out = [];
  const topics = c.topics;
  const want = [...topics.map((t) => t.type), c.unknown_topic, '_hb'];
  const channels = document.channels().all();
  const ROUTERS = ['replay', 'commands'];
  const got = channels.filter((ch) => !ROUTERS.includes(ch.id())).map((ch) => ch.id());
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    out.push(`topic channels ${JSON.stringify(got)}, contract-v1.json needs ${JSON.stringify(want)}`);
  }
  for (const ch of channels) {
    if (!ROUTERS.includes(ch.id()) && ch.address() !== ch.id()) out.push(`channel ${ch.id()}: address ${ch.address()}`);
  }
  const byId = new Map(channels.map((ch) => [ch.id(), ch]));
  for (const t of topics) {
    const ch = byId.get(t.type);
    if (!ch) continue;
    const msgs = ch.messages().all();
    if (msgs.length !== 1) {
      out.push(`channel ${t.type}: ${msgs.length} messages, want 1`);
      continue;
    }
    const p = msgs[0].payload()?.json() ?? {};
    const env = p.allOf?.[0] ?? {};
    const ev = p.allOf?.[1]?.properties?.event?.allOf ?? [];
    const pin = ev[1]?.properties ?? {};
    const payload = pin.payload ?? {};
    const payloadSchema = payload.properties?.[t.payload_key] ?? {};
    if (JSON.stringify(env.required) !== JSON.stringify(c.envelope.filter((e) => !e.optional).map((e) => e.key))) {
      out.push(`message ${t.type}: the envelope's required keys ${JSON.stringify(env.required)} are not the contract's`);
    }
    if (ev[0]?.title !== 'V4Event') out.push(`message ${t.type}: event is not jsonschema/event.json`);
    if (pin.type?.const !== t.type) out.push(`message ${t.type}: event.type is pinned to ${pin.type?.const}`);
    if (JSON.stringify(payload.required) !== JSON.stringify([t.payload_key])) {
      out.push(`message ${t.type}: payload requires ${JSON.stringify(payload.required)}, want ${t.payload_key}`);
    }
    if (payloadSchema.title !== t.payload_schema) {
      out.push(`message ${t.type}: payload.${t.payload_key} is ${payloadSchema.title}, want ${t.payload_schema}`);
    }
    const fields = Object.keys(payloadSchema.properties ?? {});
    if (JSON.stringify(fields) !== JSON.stringify(Object.keys(t.payload_fields))) {
      out.push(`message ${t.type}: payload fields ${JSON.stringify(fields)}, contract ${JSON.stringify(Object.keys(t.payload_fields))}`);
    }
  }
  const hb = byId.get('_hb')?.messages().all()[0]?.payload()?.json() ?? {};
  const hbKeys = c.bridge_topics._hb.body.map((e) => e.key);
  if (JSON.stringify(Object.keys(hb.properties ?? {})) !== JSON.stringify(hbKeys)) {
    out.push(`_hb: keys ${JSON.stringify(Object.keys(hb.properties ?? {}))}, contract ${JSON.stringify(hbKeys)}`);
  }
  const replay = byId.get('replay');
  if (!replay) {
    out.push('no replay channel');
  } else {
    const ids = replay.messages().all().map((m) => m.id()).sort();
    if (JSON.stringify(ids) !== JSON.stringify(['info', 'replayEnd', 'replayRequest', 'replayed'])) {
      out.push(`replay channel messages ${JSON.stringify(ids)}`);
    }
    const title = (id) => replay.messages().all().find((m) => m.id() === id)?.payload()?.json()?.title ?? '';
    if (!title('replayEnd').includes('_end')) out.push('replay: replayEnd is not jsonschema/replay-end.json');
    if (!title('info').includes('_info')) out.push('replay: info is not jsonschema/info.json');
    if (!title('replayRequest').includes('request')) out.push('replay: replayRequest is not jsonschema/replay-request.json');
    const end = replay.messages().all().find((m) => m.id() === 'replayEnd')?.payload()?.json() ?? {};
    const codes = c.bridge_topics._end.body.find((e) => e.key === 'code').enum;
    if (JSON.stringify(end.properties?.code?.enum) !== JSON.stringify(codes)) out.push('replay: _end codes are not the contract\'s');
  }
  const commands = byId.get('commands');
  if (!commands) {
    out.push('no commands channel');
  } else {
    const cm = (id) => commands.messages().all().find((m) => m.id() === id)?.payload()?.json() ?? {};
    const ids = commands.messages().all().map((m) => m.id()).sort();
    if (JSON.stringify(ids) !== JSON.stringify(['commandReply', 'commandRequest'])) {
      out.push(`commands channel messages ${JSON.stringify(ids)}`);
    }
    const ops = cm('commandRequest').properties?.op?.enum;
    if (JSON.stringify(ops) !== JSON.stringify(c.commands.ops.map((o) => o.op))) {
      out.push(`commands: request ops ${JSON.stringify(ops)} are not the contract's`);
    }
    const codes = cm('commandReply').properties?.error?.properties?.code?.enum;
    if (JSON.stringify(codes) !== JSON.stringify(c.commands.error_codes)) {
      out.push(`commands: reply codes ${JSON.stringify(codes)} are not the contract's`);
    }
    const keys = Object.keys(cm('commandReply').properties ?? {});
    if (JSON.stringify(keys) !== JSON.stringify(c.commands.reply.map((e) => e.key))) {
      out.push(`commands: reply keys ${JSON.stringify(keys)} are not the contract's`);
    }
  }
  const ops = document.operations().all();
  for (const name of want) {
    const op = ops.find((o) => o.id() === (name === '_hb' ? 'receive_hb' : `receive_${name}`));
    if (!op || op.action() !== 'receive' || op.channels().all()[0]?.id() !== name) {
      out.push(`no receive operation on channel ${name}`);
    }
  }
  const send = ops.filter((o) => o.action() === 'send');
  const sendOn = (ch) => send.find((o) => o.channels().all()[0]?.id() === ch);
  if (send.length !== 2 || !sendOn('replay')?.reply() || !sendOn('commands')?.reply()) {
    out.push('want exactly two send operations, each with a reply: the replay request and the command request');
  } else {
    if (sendOn('replay').reply().messages().all().length !== 3) {
      out.push(`the replay reply has ${sendOn('replay').reply().messages().all().length} messages, want 3 (replayed, _end, _info)`);
    }
    if (sendOn('commands').reply().messages().all().length !== 1) out.push('the command reply must be one message');
  }
  if (ops.length !== want.length + 2) out.push(`${ops.length} operations, want ${want.length + 2}`);
  const servers = document.servers().all().map((s) => `${s.id()}:${s.protocol()}`);
  if (JSON.stringify(servers) !== JSON.stringify(['pub:zmq', 'replay:zmq', 'commands:zmq'])) out.push(`servers ${JSON.stringify(servers)}`);
  return out;
}

let failures = 0;
const fail = (msg) => { console.log(`FAIL: ${msg}`); failures++; };

const text = readFileSync(docPath, 'utf8');
const { document, diagnostics } = await parse(text);
console.log(`@asyncapi/parser: ${diagnostics.length} diagnostic(s) on schemas/asyncapi.yaml`);
const nerr = printDiagnostics(diagnostics);
if (nerr || !document) fail(`${nerr} error(s): the document is not valid AsyncAPI`);

if (document) {
  const problems = drift(document, contract);
  problems.forEach((p) => fail(`drift from contract-v1.json: ${p}`));
  const chans = document.channels().all().length;
  const msgs = document.messages().all().length;
  console.log(`${chans} channels (${contract.topics.length} event types + UNKNOWN + _hb + replay + commands), ` +
              `${msgs} messages, ${document.operations().all().length} operations: ` +
              `${problems.length} difference(s) from contract-v1.json`);

  // The drift check must see a contract that differs: one topic more, one payload key renamed.
  const extra = structuredClone(contract);
  extra.topics.push({ ...contract.topics[0], type: 'SOMETHINGNEW' });
  const renamed = structuredClone(contract);
  renamed.topics[3].payload_key = 'roomMade';
  const missing = structuredClone(contract);
  missing.topics.pop();
  const newOp = structuredClone(contract);
  newOp.commands.ops.push({ ...contract.commands.ops[0], op: 'messages.blast' });
  const newCode = structuredClone(contract);
  newCode.commands.error_codes.push('throttled');
  let caught = 0;
  for (const [what, c] of [['an extra topic', extra], ['a renamed payload key', renamed], ['a missing topic', missing],
    ['an extra command op', newOp], ['an extra error code', newCode]]) {
    if (drift(document, c).length) caught++;
    else fail(`the drift check does not see ${what}`);
  }
  console.log(`drift self-test: ${caught} of 5 altered contracts detected`);
}

// The parser must refuse a broken document (a check that cannot fail is not a check).
const broken = [
  ['an operation with action "listen"', text.replace('action: receive', 'action: listen')],
  ['a message $ref to nowhere', text.replace("$ref: '#/components/messages/MESSAGESENT'", "$ref: '#/components/messages/NOPE'")],
  ['a schema with type 5', text.replace('type: object\n          properties:\n            event:', 'type: 5\n          properties:\n            event:')],
];
let refused = 0;
for (const [what, t] of broken) {
  if (t === text) { fail(`negative case "${what}": the replacement did not apply`); continue; }
  const r = await parse(t);
  if (r.diagnostics.some((d) => d.severity === 0)) refused++;
  else fail(`@asyncapi/parser accepts ${what}`);
}
console.log(`negative documents refused: ${refused} of ${broken.length}`);
console.log(`schemas_asyncapi: ${failures ? 'FAILED' : 'OK'} (${failures} failure(s))`);
process.exit(failures ? 1 : 0);
