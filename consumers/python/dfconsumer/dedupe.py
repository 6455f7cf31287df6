"""dfconsumer.dedupe: the window of the last N (event id, type) keys
(consumers/dfc_delivery.c). Python keeps the keys themselves, not hashes, so there
is no collision at all; ids and types are compared exactly (NUL bytes included)."""

from collections import deque


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
        key = (event_id, event_type if type(event_type) is str else "")
        s = self._set
        if key in s:
            return True
        if len(self._ring) >= self.window:
            s.discard(self._ring.popleft())
        self._ring.append(key)
        s.add(key)
        return False
