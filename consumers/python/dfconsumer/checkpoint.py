"""dfconsumer.checkpoint: the checkpoint file, byte-compatible with libdfconsumer's
(consumers/dfc_delivery.c), so a worker can move between C and Python:

    dfc-checkpoint 1
    e <epoch> <gseq>      the watermark of a bridge epoch, oldest epoch first
    d <gseq>              ...then gseqs above it already handled, ascending

Saved atomically: temp file, fsync, rename, fsync of the folder."""

import logging
import os

log = logging.getLogger("dfconsumer")

CKPT_MAX = 16          # epochs kept (the newest)
CKPT_DONE_MAX = 65536  # "d" lines per epoch
EPOCH_MAX = 128
LINE_MAX = 190         # bytes of a line before its LF (C: its fgets buffer)
# The largest file a writer produces: 16 epochs x (an e line + 65536 d lines of up to
# 20 digits) is about 24 MB. A loader reads at most this much: a longer file is
# malformed from there on (the entries read before are kept), never read whole.
FILE_MAX = 32 << 20
HEADER = "dfc-checkpoint 1\n"


class Entry:
    __slots__ = ("epoch", "gseq", "done")

    def __init__(self, epoch, gseq, done=None):
        self.epoch = epoch
        self.gseq = gseq
        self.done = done if done is not None else []

    def __eq__(self, other):
        return (self.epoch, self.gseq, self.done) == (other.epoch, other.gseq, other.done)

    def __repr__(self):
        return f"Entry({self.epoch!r}, {self.gseq}, {self.done!r})"


def _u64(s):
    # strtoull as the C reader uses it: decimal digits, no sign, fits 64 bits
    if not s or not s.isascii() or not s.isdigit():
        raise ValueError(s)
    v = int(s)
    if v > (1 << 64) - 1:
        raise ValueError(s)
    return v


def load(path, max_entries=CKPT_MAX):
    """Reads the checkpoint -> (entries, ok). A missing file is ([], True); a malformed
    one keeps the entries read before the bad line and returns ok False (like C)."""
    try:
        with open(path, "rb") as f:
            data = f.read(FILE_MAX + 1)
    except FileNotFoundError:
        return [], True
    except OSError as e:
        log.error("checkpoint %s: %s", path, e)
        return [], False
    too_big = len(data) > FILE_MAX
    if too_big:
        data = data[:data.rfind(b"\n", 0, FILE_MAX) + 1]  # whole lines only
    raw_lines = data.split(b"\n")
    if not data.endswith(b"\n"):
        pass  # the last line has no newline: C's fgets reads it the same way
    else:
        raw_lines.pop()
    out = []
    if not raw_lines or raw_lines[0] + b"\n" != HEADER.encode():
        return out, False
    for raw in raw_lines[1:]:
        if len(raw) > LINE_MAX:
            return out, False
        line = raw.decode("utf-8", "surrogateescape")
        try:
            if line.startswith("d ") and out:
                g = _u64(line[2:])
                e = out[-1]
                if len(e.done) < CKPT_DONE_MAX and (not e.done or g > e.done[-1]):
                    e.done.append(g)
                continue
            sp = line.rfind(" ")
            if not line.startswith("e ") or sp <= 2:
                raise ValueError(line)
            epoch = line[2:sp]
            if len(epoch.encode("utf-8", "surrogateescape")) >= EPOCH_MAX:
                raise ValueError(line)
            g = _u64(line[sp + 1:])
        except ValueError:
            return out, False
        if len(out) == max_entries:
            out.pop(0)  # keep the newest
        out.append(Entry(epoch, g))
    if too_big:
        log.error("checkpoint %s: over %d bytes: the rest is not read", path, FILE_MAX)
        return out, False
    return out, True


def format_entries(entries):
    parts = [HEADER]
    for e in entries:
        if not e.epoch or " " in e.epoch or "\n" in e.epoch or "\0" in e.epoch:
            continue  # never written (the text format cannot hold them)
        parts.append(f"e {e.epoch} {e.gseq}\n")
        parts.extend(f"d {g}\n" for g in e.done)
    return "".join(parts).encode("utf-8", "surrogateescape")


def save(path, entries, level=logging.ERROR):
    """Writes path atomically. Returns True, or False after logging the failed step
    at `level` (the previous file is never touched before the rename)."""
    tmp = path + ".tmp"
    data = format_entries(entries)
    step, target = "open", tmp
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            step = "write"
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            step = "fsync"
            os.fsync(fd)
        finally:
            os.close(fd)
        step, target = "rename to", path
        os.rename(tmp, path)
    except OSError as e:
        log.log(level, "checkpoint: %s %s: %s", step, target, e.strerror or e)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    folder = os.path.dirname(path) or "."
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        log.log(level, "checkpoint: fsync the folder of %s: %s", path, e.strerror or e)
        return False
    return True
