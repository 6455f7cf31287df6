"""dfconsumer.dedupe: the window of the last N (event id, type) keys
(consumers/dfc_delivery.c). Python keeps the keys themselves, not hashes, so there
is no collision at all; ids and types are compared exactly (NUL bytes included).
An id or type longer than KEY_MAX characters is kept as its SHA-256 instead, so
that the window is bounded in bytes too (65536 keys of a few hundred bytes at
most), not only in count: a peer sending megabyte ids must not make it grow."""

import hashlib
from collections import deque

KEY_MAX = 256


def _bounded(s):
    if len(s) <= KEY_MAX:
        return s
    return "\0sha256:" + hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()


class Dedupe:
    def __init__(self, window):
        self.window = window
        self._ring = deque()
        self._set = set()

    def seen(self, event_id, event_type):
        """True when (id, type) is in the window (nothing changes then); otherwise
        remembers it, forgetting the oldest when full, and returns False. An event
        without a str id is never a duplicate."""
        if type(event_id) is not str or self.window <= 0:
            return False
        key = (_bounded(event_id), _bounded(event_type) if type(event_type) is str else "")
        s = self._set
        if key in s:
            return True
        if len(self._ring) >= self.window:
            s.discard(self._ring.popleft())
        self._ring.append(key)
        s.add(key)
        return False
