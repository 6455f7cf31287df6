"""dfconsumer.watermark: per bridge epoch, the gseq below which every event was
handled by every listener (tracked in hand-out order, moved over the finished
prefix), and the checkpoint it becomes (consumers/dfc_watermark.c). One event loop
thread: no locks."""

import logging
from bisect import bisect_right
from collections import deque

from . import checkpoint

log = logging.getLogger("dfconsumer")


class Track:
    """An event handed out (or skipped): pending jobs, + 1 while being dispatched."""
    __slots__ = ("wm", "gseq", "pending", "failed")

    def __init__(self, wm, gseq):
        self.wm = wm
        self.gseq = gseq
        self.pending = 1
        self.failed = False


class WM:
    __slots__ = ("epoch", "gseq", "blocked", "stamp", "tracks", "done", "done_set")

    def __init__(self, epoch):
        self.epoch = epoch
        self.gseq = 0
        self.blocked = False
        self.stamp = 0
        self.tracks = deque()
        self.done = []        # from the checkpoint: handled above gseq, ascending
        self.done_set = frozenset()


class Watermarks:
    def __init__(self, path, checkpoint_ms, stats):
        self.path = path          # None: no checkpoint
        self.checkpoint_ms = checkpoint_ms
        self.stats = stats
        self.wms = {}
        self.clock = 0
        self.dirty = False
        self.loaded = False
        self.failing = 0

    def get(self, epoch, create):
        """The watermark of an epoch; with create, made (a full table forgets the least
        recently used epoch that has nothing in flight)."""
        w = self.wms.get(epoch)
        self.clock += 1
        if w is not None:
            w.stamp = self.clock
            return w
        if not create or len(epoch.encode("utf-8", "surrogateescape")) >= checkpoint.EPOCH_MAX:
            return None
        if len(self.wms) >= checkpoint.CKPT_MAX:
            idle = [x for x in self.wms.values() if not x.tracks]
            if not idle:
                return None
            del self.wms[min(idle, key=lambda x: x.stamp).epoch]
        w = WM(epoch)
        w.stamp = self.clock
        self.wms[epoch] = w
        return w

    def is_done(self, epoch, gseq):
        w = self.wms.get(epoch)
        return w is not None and gseq in w.done_set

    def check_head(self, w, head):
        """A checkpoint entry meets the bridge's head (the newest gseq it says it
        published in that epoch): a watermark above it cannot be right (a file edited
        or damaged, or a bridge whose journal lost its tail) and is not used (False,
        its handled gseqs forgotten); handled gseqs above it are forgotten. Logged at
        ERROR (dfc_watermark.c dfc_wm_check_head)."""
        if w.gseq > head:
            log.error("checkpoint: epoch %s: watermark %d is beyond the bridge's head %d: not "
                      "used (the epoch starts as without a checkpoint)", w.epoch, w.gseq, head)
            w.done, w.done_set = [], frozenset()
            self.dirty = True
            return False
        keep = bisect_right(w.done, head)
        if keep < len(w.done):
            log.error("checkpoint: epoch %s: %d handled gseq(s) beyond the bridge's head %d: "
                      "not used", w.epoch, len(w.done) - keep, head)
            w.done = w.done[:keep]
            w.done_set = frozenset(w.done)
            self.dirty = True
        return True

    def done_in(self, epoch, a, b):
        """How many gseqs of the epoch in (a, b] the checkpoint recorded as handled (its
        "d" lines: skipped when replayed, so never counted lost)."""
        w = self.wms.get(epoch)
        if w is None or not w.done or b <= a:
            return 0
        return bisect_right(w.done, b) - bisect_right(w.done, a)

    def track(self, epoch, gseq):
        """A record for an event about to be handed out; None without a checkpoint."""
        if self.path is None:
            return None
        w = self.get(epoch, True)
        if w is None:
            return None
        t = Track(w, gseq)
        w.tracks.append(t)
        return t

    def release(self, t):
        """One pending count less; a finished prefix moves the watermark."""
        t.pending -= 1
        if t.pending > 0:
            return
        w = t.wm
        self.dirty = True
        q = w.tracks
        while q and q[0].pending == 0:
            h = q.popleft()
            if h.failed:
                w.blocked = True  # until a restart replays it
            if not w.blocked and h.gseq > w.gseq:
                w.gseq = h.gseq

    def _done_above(self, w):
        out = {g for g in w.done if g > w.gseq}
        out.update(t.gseq for t in w.tracks if t.pending == 0 and not t.failed and t.gseq > w.gseq)
        return sorted(out)[:checkpoint.CKPT_DONE_MAX]

    def entries(self):
        order = sorted(self.wms.values(), key=lambda w: w.stamp)  # oldest first
        return [checkpoint.Entry(w.epoch, w.gseq, self._done_above(w)) for w in order]

    def save(self):
        if self.path is None or not self.dirty:
            return
        entries = self.entries()
        self.dirty = False
        ok = checkpoint.save(self.path, entries,
                             logging.DEBUG if self.failing else logging.ERROR)
        if not ok:
            if self.failing == 0:
                log.warning("cannot write the checkpoint %s: the previous one is kept; "
                            "retrying every %d ms", self.path, self.checkpoint_ms)
            self.failing += 1
            self.dirty = True
            self.stats["checkpoint_errors"] += 1
            return
        if self.failing:
            log.info("checkpoint %s written again after %d failed attempt(s)", self.path,
                     self.failing)
        self.failing = 0
        self.stats["checkpoints"] += 1

    def restore(self):
        if self.path is None or self.loaded:
            return
        entries, ok = checkpoint.load(self.path)
        if not ok:
            log.error("checkpoint %s is malformed: %d entries used", self.path, len(entries))
        for e in entries:
            w = self.get(e.epoch, True)
            if w is not None:
                w.gseq = e.gseq
                w.done = list(e.done)
                w.done_set = frozenset(e.done)
        self.loaded = True
        if entries:
            log.info("checkpoint %s: %d epoch(s), resuming", self.path, len(entries))
