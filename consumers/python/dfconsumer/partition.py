"""dfconsumer.partition: the partition key of an event and FNV-1a 64, exactly as
schemas/CONTRACT.md section 10 (and consumers/dfc_delivery.c) compute them."""

from .wire import text_bytes

FNV_OFFSET = 14695981039346656037
FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1


def fnv1a64(data):
    """FNV-1a 64 over bytes."""
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & _MASK
    return h


def partition_key(event):
    """The first str at payload.<key>.stream.streamId, then
    payload.<key>.message.stream.streamId (<key> the single key of payload), else the
    event id, else "". `event` is the V4Event map."""
    payload = event.get("payload")
    if type(payload) is dict and len(payload) == 1:
        inner = next(iter(payload.values()))
        if type(inner) is dict:
            s = inner.get("stream")
            if type(s) is dict and type(s.get("streamId")) is str:
                return s["streamId"]
            m = inner.get("message")
            if type(m) is dict:
                s = m.get("stream")
                if type(s) is dict and type(s.get("streamId")) is str:
                    return s["streamId"]
    i = event.get("id")
    return i if type(i) is str else ""


def partition(key, n):
    """The member of a group of n that handles key (0 when n is 0)."""
    if n <= 0:
        return 0
    return fnv1a64(text_bytes(key)) % n
