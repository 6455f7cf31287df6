'use strict';
// checkpoint: the checkpoint file, byte-compatible with consumers/dfc_delivery.c
// (README "Checkpoint"):
//     dfc-checkpoint 1
//     e <epoch> <watermark>    per bridge epoch, oldest first
//     d <gseq>                 ...gseqs above it already handled, ascending
// Saved atomically: temp file, fsync, rename, fsync of the folder. A failed save
// never touches the previous file.

const fs = require('fs');
const path = require('path');

const CKPT_MAX = 16; // epochs kept
const DONE_MAX = 65536; // done gseqs per epoch
const EPOCH_MAX = 128;
const LINE_MAX = 190; // bytes of a line before its LF (C: its fgets buffer)
// The largest file a writer produces: 16 epochs x (an e line + 65536 d lines of
// up to 20 digits) is about 24 MB. A loader reads at most this much: a longer
// file is malformed from there on (the entries read before are kept).
const FILE_MAX = 32 * 2 ** 20;

function parseU64(s) {
  if (!/^[0-9]+$/.test(s)) return null;
  const v = BigInt(s);
  if (v > (1n << 64n) - 1n) return null;
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(v);
}

/**
 * Reads a checkpoint: {entries: [{epoch, gseq, done: number[]}], ok}. A missing
 * file is no entries (ok). A malformed file keeps the entries read before the
 * bad line (ok false), as the C loader does.
 */
function load(file) {
  let data;
  let fd = null;
  try {
    fd = fs.openSync(file, 'r');
    const buf = Buffer.alloc(Math.min(FILE_MAX + 1, Math.max(0, fs.fstatSync(fd).size) + 1));
    let n = 0;
    while (n < buf.length) {
      const r = fs.readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
    }
    data = buf.subarray(0, n);
  } catch (e) {
    return { entries: [], ok: e.code === 'ENOENT' };
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
  const tooBig = data.length > FILE_MAX;
  if (tooBig) data = data.subarray(0, data.lastIndexOf(0x0a, FILE_MAX - 1) + 1); // whole lines only
  const raws = [];
  for (let at = 0; at <= data.length;) {
    let nl = data.indexOf(0x0a, at);
    if (nl < 0) nl = data.length;
    raws.push(data.subarray(at, nl));
    at = nl + 1;
  }
  const lines = raws.map((b) => b.toString('utf8'));
  if (lines[0] !== 'dfc-checkpoint 1') return { entries: [], ok: false };
  const entries = [];
  let ok = !tooBig;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === '' && i === lines.length - 1) break;
    if (raws[i].length > LINE_MAX) {
      ok = false;
      break;
    }
    if (line.startsWith('d ') && entries.length > 0) {
      const g = parseU64(line.slice(2));
      if (g !== null) {
        const e = entries[entries.length - 1];
        if (e.done.length < DONE_MAX && (e.done.length === 0 || g > e.done[e.done.length - 1])) e.done.push(g);
        continue;
      }
    }
    const sp = line.lastIndexOf(' ');
    const g = sp > 2 ? parseU64(line.slice(sp + 1)) : null;
    if (!line.startsWith('e ') || sp <= 2 || Buffer.byteLength(line.slice(2, sp)) >= EPOCH_MAX || g === null) {
      ok = false;
      break;
    }
    if (entries.length === CKPT_MAX) entries.shift(); // keep the newest
    entries.push({ epoch: line.slice(2, sp), gseq: g, done: [] });
  }
  return { entries, ok };
}

function format(entries) {
  let s = 'dfc-checkpoint 1\n';
  for (const e of entries) {
    if (e.epoch === '' || /[ \n\0]/.test(e.epoch)) continue; // the text cannot carry them
    s += `e ${e.epoch} ${e.gseq}\n`;
    for (const d of e.done) s += `d ${d}\n`;
  }
  return s;
}

/**
 * Writes the file atomically; throws (with .step) on failure after removing
 * the temp file. Synchronous: a checkpoint is small and this keeps the order of
 * saves simple.
 */
function save(file, entries) {
  const tmp = `${file}.tmp`;
  const data = format(entries);
  let fd;
  let step = 'open';
  try {
    fd = fs.openSync(tmp, 'w', 0o644);
    step = 'write';
    fs.writeSync(fd, data);
    step = 'fsync';
    fs.fsyncSync(fd);
    step = 'close';
    fs.closeSync(fd);
    fd = undefined;
    step = 'rename to';
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) try { fs.closeSync(fd); } catch (_) { /* already failing */ }
    try { fs.unlinkSync(tmp); } catch (_) { /* may not exist */ }
    e.step = step;
    throw e;
  }
  step = 'fsync the folder of';
  try {
    const dfd = fs.openSync(path.dirname(file), 'r');
    try { fs.fsyncSync(dfd); } finally { fs.closeSync(dfd); }
  } catch (e) {
    e.step = step;
    throw e;
  }
}

module.exports = { load, save, format, CKPT_MAX, DONE_MAX, EPOCH_MAX };
