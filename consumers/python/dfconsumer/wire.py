"""dfconsumer.wire: the wire contract as the consumer reads it (schemas/CONTRACT.md):
the frame rule, the bounded msgpack decoding, the envelope check, heartbeats, replay
requests and end markers. The Python twin of consumers/dfc_event.c and dfc_replay.c.
No sockets here."""

import msgpack

WIRE_VERSION = 1
MAX_TOPIC = 255
# Numbers that cannot be right (consumers/README.md): 2^53 - 1 is the largest
# integer every port, JavaScript included, holds exactly.
SEQ_MAX = (1 << 53) - 1
GSEQ_AHEAD = 1 << 20
EPOCH_BYTES = 128  # epochs are at most 127 bytes
U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
REPLAY_LIMIT = 1000

# Why a message was refused: the names are the dfc_stats_t per-reason counters.
OK = None
BAD_FRAMES = "bad_frames"
OVERSIZE = "oversize"
BAD_MSGPACK = "bad_msgpack"
NOT_MAP = "not_map"
BAD_VERSION = "bad_version"
BAD_ENVELOPE = "bad_envelope"
BAD_EVENT = "bad_event"
REASONS = (BAD_FRAMES, OVERSIZE, BAD_MSGPACK, NOT_MAP, BAD_VERSION, BAD_ENVELOPE, BAD_EVENT)
REASON_TEXT = {
    BAD_FRAMES: "frame count is not 2, or topic empty or over 255 bytes",
    OVERSIZE: "oversize",
    BAD_MSGPACK: "bad msgpack",
    NOT_MAP: "not a map",
    BAD_VERSION: "bad or newer version",
    BAD_ENVELOPE: "bad envelope field",
    BAD_EVENT: "event missing or not a map",
}

# Strings are UTF-8 on the wire; a peer that sends invalid bytes anyway loses
# nothing: they are kept as surrogate escapes (and written back as the same bytes).
_UNICODE_ERRORS = "surrogateescape"
_unpackb = msgpack.unpackb
_packer = msgpack.Packer(use_bin_type=True, unicode_errors=_UNICODE_ERRORS)


def decode(body):
    """Decodes one msgpack object that must fill body exactly. msgpack-python bounds
    every declared length by the input's length before allocating (a 5-byte array32
    header claiming 4 G items is refused at once) and nesting at 1024; map keys must
    be str (strict_map_key). Raises ValueError (or a subclass) on malformed input."""
    return _unpackb(body, raw=False, strict_map_key=True, unicode_errors=_UNICODE_ERRORS,
                    use_list=True)


def is_u64(x):
    return type(x) is int and 0 <= x <= U64_MAX


def is_i64(x):
    return type(x) is int and I64_MIN <= x <= I64_MAX


def text_bytes(s):
    """The wire bytes of a decoded str (exact, invalid bytes included)."""
    return s.encode("utf-8", _UNICODE_ERRORS)


def topic_text(frame):
    return frame.decode("utf-8", _UNICODE_ERRORS)


def frames_check(nparts, topic_len):
    """The frame rule shared with dftail: exactly 2 frames, a topic of 1..255 bytes."""
    return OK if nparts == 2 and 0 < topic_len <= MAX_TOPIC else BAD_FRAMES


def epoch_too_long(epoch):
    # a char is at most 4 bytes: only long strings need encoding
    return len(epoch) >= EPOCH_BYTES or (len(epoch) * 4 >= EPOCH_BYTES
                                         and len(text_bytes(epoch)) >= EPOCH_BYTES)


class Envelope:
    """One received message: frame 1 (topic) and the checked frame-2 map.
    `event` is the V4Event map as decoded (a dict, keys in wire order)."""

    __slots__ = ("topic", "v", "seq", "gseq", "epoch", "ts", "bot", "event", "root", "replayed",
                 "size")

    def __repr__(self):
        return (f"Envelope(topic={self.topic!r}, seq={self.seq}, gseq={self.gseq}, "
                f"epoch={self.epoch!r}, ts={self.ts}, bot={self.bot})")


def envelope_check(root, env):
    """Checks the frame-2 map of contract v1 like dfc_envelope_check: v (uint <= 1),
    seq, gseq, ts (uint64), bot (int64), epoch (str), event (map); unknown keys
    ignored. Fills env; returns OK or the reason."""
    if type(root) is not dict:
        return NOT_MAP
    g = root.get
    v = g("v")
    if type(v) is not int or v < 0 or v > WIRE_VERSION:
        return BAD_VERSION
    seq, gseq, ts, bot, epoch = g("seq"), g("gseq"), g("ts"), g("bot"), g("epoch")
    if (type(seq) is not int or type(gseq) is not int or type(ts) is not int or type(bot) is not int
            or type(epoch) is not str or seq < 0 or gseq < 0 or ts < 0 or seq > U64_MAX
            or gseq > U64_MAX or ts > U64_MAX or bot < I64_MIN or bot > I64_MAX):
        return BAD_ENVELOPE
    event = g("event")
    if type(event) is not dict:
        return BAD_EVENT
    env.v = v
    env.seq = seq
    env.gseq = gseq
    env.ts = ts
    env.bot = bot
    env.epoch = epoch
    env.event = event
    env.root = root
    return OK


def parse_message(topic, body, max_frame):
    """Frame 1 and frame 2 of a 2-frame message -> (Envelope, None) or (None, reason)."""
    if not 0 < len(topic) <= MAX_TOPIC:
        return None, BAD_FRAMES
    if len(body) > max_frame:
        return None, OVERSIZE
    try:
        root = _unpackb(body, raw=False, strict_map_key=True, unicode_errors=_UNICODE_ERRORS)
    except Exception:  # ValueError and its subclasses, TypeError: all peer input
        return None, BAD_MSGPACK
    env = Envelope()
    st = envelope_check(root, env)
    if st is not OK:
        return None, st
    env.topic = topic.decode("utf-8", _UNICODE_ERRORS)
    env.replayed = False
    env.size = len(topic) + len(body)  # as received: what max_held_bytes counts
    return env, OK


class Heartbeat:
    __slots__ = ("epoch", "gseq", "seqs", "interval", "replay", "has_replay", "replay_bad")


def parse_heartbeat(body):
    """"_hb": {v, epoch, gseq, seqs{topic: seq}, ts, interval, replay} ->
    (Heartbeat, None) or (None, reason), with dfc_link.c's checks: v <= 1, epoch str
    < 128 bytes, gseq uint64, and no gseq or seq above SEQ_MAX (the heartbeat is
    dropped whole)."""
    try:
        root = decode(body)
    except Exception:
        return None, BAD_MSGPACK
    if type(root) is not dict:
        return None, BAD_ENVELOPE
    v, epoch, gseq = root.get("v"), root.get("epoch"), root.get("gseq")
    if not is_u64(v) or v > WIRE_VERSION or type(epoch) is not str or not is_u64(gseq):
        return None, BAD_ENVELOPE
    seqs = root.get("seqs")
    good = []
    absurd = gseq > SEQ_MAX
    if type(seqs) is dict:
        for t, s in seqs.items():
            if is_u64(s):
                if s > SEQ_MAX:
                    absurd = True
                elif len(text_bytes(t)) <= MAX_TOPIC:
                    good.append((t, s))
    if epoch_too_long(epoch) or absurd:
        return None, BAD_ENVELOPE
    hb = Heartbeat()
    hb.epoch = epoch
    hb.gseq = gseq
    hb.seqs = good
    interval = root.get("interval")
    hb.interval = interval if is_u64(interval) else 0
    # a replay key that is not a str leaves what we know alone (C: same)
    rp = root.get("replay", None)
    hb.has_replay = "replay" not in root or type(rp) is str
    hb.replay_bad = False
    if type(rp) is str and 0 < len(rp) and len(text_bytes(rp)) <= 1024 and "\0" not in rp:
        hb.replay = rp
    else:
        hb.replay = None
        hb.replay_bad = type(rp) is str and len(rp) > 0  # refused like any other (C: same)
    return hb, OK


REPLAY_QUEUE_BYTES = 64 << 20


def replay_rcvhwm(max_frame):
    """The replay DEALER's RCVHWM (dfc_replay_rcvhwm): REPLAY_QUEUE_BYTES / max_frame
    within 4..256 messages, so that libzmq queues at most about max(64 MiB, 4 x
    max_frame) for it; a peer that sends more is held back by TCP."""
    n = REPLAY_QUEUE_BYTES // ((max_frame or 16 << 20) + MAX_TOPIC)
    return max(4, min(256, n))


_WILDCARD_HOSTS = ("*", "0.0.0.0", "::", "[::]", "[*]")


def _split_ep(ep):
    """"transport://host:port" -> (transport, host, ":port"), the host after a ';'
    source address; None when there is no "://"."""
    tr, sep, rest = ep.partition("://")
    if not sep:
        return None
    h = rest.split(";", 1)[1] if ";" in rest else rest
    colon = h.rfind(":")
    if colon < 0 or ("]" in h and colon < h.index("]")):
        colon = len(h)
    return tr, h[:colon], h[colon:]


def replay_advert(pub, adv, any_host):
    """The rule for a replay endpoint a heartbeat names (dfc_replay_advert): over tcp
    the host must be the bridge endpoint's (without case; a wildcard host is replaced
    by it), ipc and inproc need a bridge of the same transport; any_host takes it as
    it is. Returns the endpoint to use, or None when refused."""
    if any_host:
        return adv
    p, a = _split_ep(pub), _split_ep(adv)
    if p is None or a is None or p[0] != a[0]:
        return None
    if a[0] == "tcp":
        if ";" in adv[6:]:
            return None  # a source address of its own choosing
        if a[1] not in _WILDCARD_HOSTS and a[1].lower() != p[1].lower():
            return None
        return "tcp://" + p[1] + a[2]
    if a[0] in ("ipc", "inproc"):
        return adv
    return None


class End:
    """A replay end marker ("_end"), read like dfc_replay_end_parse."""
    __slots__ = ("ok", "more", "has_req", "has_head", "impossible", "req", "count", "last_gseq",
                 "head_gseq", "oldest_gseq", "has_lost", "lost_from", "lost_to", "code", "error")


def _u(root, key):
    x = root.get(key)
    return x if is_u64(x) else None


def parse_end(body):
    """Returns an End, or None when the body is not msgpack or not a map. `impossible`
    is set when a number cannot be right (a gseq above SEQ_MAX, last_gseq above
    head_gseq, a damaged range that cannot be): the marker must not be acted on."""
    try:
        root = decode(body)
    except Exception:
        return None
    if type(root) is not dict:
        return None
    e = End()
    status, code, error = root.get("status"), root.get("code"), root.get("error")
    e.ok = status == "ok"
    e.code = code if type(code) is str else ""
    e.error = error[:255] if type(error) is str else ""
    e.more = root.get("more") is True
    req, head = _u(root, "req"), _u(root, "head_gseq")
    e.has_req, e.req = req is not None, req or 0
    e.has_head, e.head_gseq = head is not None, head or 0
    e.count = _u(root, "count") or 0
    e.last_gseq = _u(root, "last_gseq") or 0
    e.oldest_gseq = _u(root, "oldest_gseq") or 0
    lf, lt = _u(root, "lost_from"), _u(root, "lost_to")
    e.has_lost = lf is not None and lt is not None
    e.lost_from, e.lost_to = lf or 0, lt or 0
    e.impossible = (e.last_gseq > SEQ_MAX or e.head_gseq > SEQ_MAX or e.oldest_gseq > SEQ_MAX
                    or (e.has_head and e.last_gseq > e.head_gseq))
    if e.has_lost and (e.lost_from > e.lost_to or e.lost_to > SEQ_MAX
                       or (e.has_head and e.lost_to > e.head_gseq)):
        e.impossible = True
    return e


def replay_request(req, epoch, from_gseq, limit=REPLAY_LIMIT):
    """A replay request by gseq (CONTRACT.md section 9), one frame."""
    m = {"v": 1, "req": req}
    if epoch:
        m["epoch"] = epoch
    m["from_gseq"] = from_gseq
    m["limit"] = limit
    return _packer.pack(m)
