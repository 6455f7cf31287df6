'use strict';
// dedupe: the window of the last `window` (event id, type) keys (a FIFO ring
// plus one Set of ids per type), as dfc_delivery.c. Ids alone are not unique
// (ROOMCREATED and USERJOINEDROOM of one action share one); events without a
// string id are never deduplicated. Keys are kept whole (no hash, so no
// collision) and never concatenated (no allocation per event). An id or type
// longer than KEY_MAX characters is kept as its SHA-256 instead, so that the
// window is bounded in bytes too, not only in count: a peer sending megabyte ids
// must not make it grow.
const crypto = require('crypto');

const KEY_MAX = 256;

function bounded(s) {
  return s.length <= KEY_MAX ? s : `\0sha256:${crypto.createHash('sha256').update(s).digest('hex')}`;
}


class Dedupe {
  constructor(window) {
    this.window = window;
    this.ids = new Array(window);
    this.types = new Array(window);
    this.head = 0;
    this.len = 0;
    this.byType = new Map(); // type -> Set of ids
  }

  /** True when (id, type) is in the window; else remembers it. */
  seen(id, type) {
    if (typeof id !== 'string' || this.window <= 0) return false;
    id = bounded(id);
    const t = typeof type === 'string' ? bounded(type) : '';
    let set = this.byType.get(t);
    if (set === undefined) {
      set = new Set();
      this.byType.set(t, set);
    } else if (set.has(id)) {
      return true;
    }
    if (this.len === this.window) { // forget the oldest
      const h = this.head;
      const old = this.byType.get(this.types[h]);
      old.delete(this.ids[h]);
      if (old.size === 0 && old !== set) this.byType.delete(this.types[h]);
      this.head = (h + 1) % this.window;
      this.len--;
    }
    set.add(id);
    const tail = (this.head + this.len) % this.window;
    this.ids[tail] = id;
    this.types[tail] = t;
    this.len++;
    return false;
  }
}

module.exports = { Dedupe };
