'use strict';
// watermark: per bridge epoch, the gseq below which every event was handled by
// every listener (events tracked in hand-out order, the mark moved over the
// finished prefix), and the checkpoint it becomes. Port of dfc_watermark.c.

const ckpt = require('./checkpoint');

/** How many of the ascending gseqs in done are <= g. */
function upto(done, g) {
  let lo = 0;
  let hi = done.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (done[mid] <= g) lo = mid + 1; else hi = mid;
  }
  return lo;
}

class Watermarks {
  /** file: the checkpoint path, or null (then nothing is tracked). */
  constructor(file, log) {
    this.file = file;
    this.log = log;
    this.wms = new Map(); // epoch -> wm
    this.clock = 0;
    this.dirty = false;
    this.loaded = false;
    this.failing = 0;
  }

  /** The watermark of an epoch (created with create), or null. A full table
      forgets the least recently used epoch with nothing in flight. */
  get(epoch, create) {
    let w = this.wms.get(epoch);
    if (w) {
      w.stamp = ++this.clock;
      return w;
    }
    if (!create || Buffer.byteLength(epoch) >= ckpt.EPOCH_MAX) return null;
    if (this.wms.size >= ckpt.CKPT_MAX) {
      let oldest = null;
      for (const x of this.wms.values()) {
        if (x.head === x.tracks.length && (!oldest || x.stamp < oldest.stamp)) oldest = x;
      }
      if (!oldest) return null;
      this.wms.delete(oldest.epoch);
    }
    w = { epoch, gseq: 0, blocked: false, stamp: ++this.clock, tracks: [], head: 0, done: [] };
    this.wms.set(epoch, w);
    return w;
  }

  /** True when gseq was recorded as handled by the checkpoint (above its mark). */
  isDone(epoch, gseq) {
    const w = this.wms.get(epoch);
    if (!w || w.done.length === 0) return false;
    let lo = 0;
    let hi = w.done.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = w.done[mid];
      if (v === gseq) return true;
      if (v < gseq) lo = mid + 1; else hi = mid - 1;
    }
    return false;
  }

  /** How many gseqs of the epoch in (a, b] the checkpoint recorded as handled
      (its "d" lines: skipped when replayed, so never counted lost). */
  /** A checkpoint entry meets the bridge's head (the newest gseq it says it
      published in that epoch): a watermark above it cannot be right (a file
      edited or damaged, or a bridge whose journal lost its tail) and is not
      used (false, its handled gseqs forgotten); handled gseqs above it are
      forgotten. Logged at error (dfc_watermark.c dfc_wm_check_head). */
  checkHead(w, head) {
    if (w.gseq > head) {
      this.log('error', `checkpoint: epoch ${w.epoch}: watermark ${w.gseq} is beyond the bridge's head ${head}: not used (the epoch starts as without a checkpoint)`);
      w.done = [];
      this.dirty = true;
      return false;
    }
    const keep = upto(w.done, head);
    if (keep < w.done.length) {
      this.log('error', `checkpoint: epoch ${w.epoch}: ${w.done.length - keep} handled gseq(s) beyond the bridge's head ${head}: not used`);
      w.done = w.done.slice(0, keep);
      this.dirty = true;
    }
    return true;
  }

  doneIn(epoch, a, b) {
    const w = this.wms.get(epoch);
    if (!w || w.done.length === 0 || b <= a) return 0;
    return upto(w.done, b) - upto(w.done, a);
  }

  /** A tracking record for an event about to be handed out (or skipped), with
      the receiver's own pending count; null without a checkpoint. */
  track(epoch, gseq) {
    if (!this.file) return null;
    const w = this.get(epoch, true);
    if (!w) return null;
    const t = { wm: w, gseq, pending: 1, failed: false };
    w.tracks.push(t);
    return t;
  }

  /** One pending count less; a finished prefix moves the watermark. */
  release(t) {
    if (--t.pending > 0) return;
    const w = t.wm;
    this.dirty = true;
    const tr = w.tracks;
    while (w.head < tr.length && tr[w.head].pending === 0) {
      const h = tr[w.head];
      tr[w.head++] = undefined;
      if (h.failed) w.blocked = true; // until a restart replays it
      if (!w.blocked && h.gseq > w.gseq) w.gseq = h.gseq;
    }
    if (w.head === tr.length) {
      tr.length = 0;
      w.head = 0;
    } else if (w.head > 4096 && w.head * 2 > tr.length) {
      w.tracks = tr.slice(w.head);
      w.head = 0;
    }
  }

  doneAbove(w) {
    const out = w.done.filter((g) => g > w.gseq);
    for (let i = w.head; i < w.tracks.length; i++) {
      const t = w.tracks[i];
      if (t.pending === 0 && !t.failed && t.gseq > w.gseq) out.push(t.gseq);
    }
    out.sort((a, b) => a - b);
    const u = [];
    for (const g of out) if (u.length === 0 || u[u.length - 1] !== g) u.push(g);
    return u.length > ckpt.DONE_MAX ? u.slice(0, ckpt.DONE_MAX) : u;
  }

  /** Writes the checkpoint when it moved. Returns 'saved', 'failed' or null. */
  save() {
    if (!this.file || !this.dirty) return null;
    const order = [...this.wms.values()].filter((w) => !w.epoch.includes('\0')).sort((a, b) => a.stamp - b.stamp);
    const entries = order.map((w) => ({ epoch: w.epoch, gseq: w.gseq, done: this.doneAbove(w) }));
    this.dirty = false;
    try {
      ckpt.save(this.file, entries);
    } catch (e) {
      this.dirty = true; // try again next period
      this.log(this.failing ? 'debug' : 'error', `checkpoint: ${e.step} ${this.file}: ${e.message}`);
      if (this.failing++ === 0) {
        this.log('warn', `cannot write the checkpoint ${this.file}: the previous one is kept; retrying`);
      }
      return 'failed';
    }
    if (this.failing) this.log('info', `checkpoint ${this.file} written again after ${this.failing} failed attempt(s)`);
    this.failing = 0;
    return 'saved';
  }

  restore() {
    if (!this.file || this.loaded) return;
    const { entries, ok } = ckpt.load(this.file);
    if (!ok) this.log('error', `checkpoint ${this.file} is malformed: ${entries.length} entries used`);
    for (const e of entries) {
      const w = this.get(e.epoch, true);
      if (w) {
        w.gseq = e.gseq;
        w.done = e.done;
      }
    }
    this.loaded = true;
    if (entries.length) this.log('info', `checkpoint ${this.file}: ${entries.length} epoch(s), resuming`);
  }
}

module.exports = { Watermarks };
