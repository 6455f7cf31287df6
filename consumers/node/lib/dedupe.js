'use strict';
// dedupe: the window of the last `window` (event id, type) keys (a FIFO ring
// plus a Set), as dfc_delivery.c. Ids alone are not unique (ROOMCREATED and
// USERJOINEDROOM of one action share one); events without a string id are
// never deduplicated. Keys are kept whole (no hash, so no collision).

class Dedupe {
  constructor(window) {
    this.window = window;
    this.ring = new Array(window);
    this.head = 0;
    this.len = 0;
    this.set = new Set();
  }

  /** True when (id, type) is in the window; else remembers it. */
  seen(id, type) {
    if (typeof id !== 'string' || this.window <= 0) return false;
    const key = `${id.length}:${id}${typeof type === 'string' ? type : ''}`;
    if (this.set.has(key)) return true;
    if (this.len === this.window) {
      this.set.delete(this.ring[this.head]);
      this.head = (this.head + 1) % this.window;
      this.len--;
    }
    this.set.add(key);
    this.ring[(this.head + this.len) % this.window] = key;
    this.len++;
    return false;
  }
}

module.exports = { Dedupe };
