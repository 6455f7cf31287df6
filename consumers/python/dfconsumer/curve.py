"""dfconsumer.curve: CURVE on every socket the loop opens to a bridge (the options
server_key and cert), and the handshakes that fail: counted (auth_failures), logged
rate-limited, and a denied connection connected again with a backoff, because libzmq
4.3 never reconnects after a ZAP denial (HANDSHAKE_FAILED_AUTH, DISCONNECTED, then
nothing). The port of consumers/dfc_curve.c."""

import logging
import os

import zmq
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("dfconsumer")

BACKOFF_FIRST_MS = 250  # after a refused handshake: 250, 500, 1000, then every 2000 ms
BACKOFF_MAX_MS = 2000
LOG_EVERY_MS = 10000    # a failing handshake is logged at most this often per socket

# the monitor events of a handshake, and what a failure most likely means
HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused by the bridge (this consumer's key is not in its "
                                     "clients directory?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed (a wrong server_key, or a bridge without "
                                          "CURVE?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "failed: CURVE protocol error",
}


class Keys:
    """The three Z85 keys of a CURVE client (bytes). The secret cannot be wiped from
    memory in Python (bytes are immutable): it lives as long as the loop."""
    __slots__ = ("server", "public", "secret")

    def __init__(self, server, public, secret):
        self.server, self.public, self.secret = server, public, secret

    def __repr__(self):  # never the secret
        return f"Keys(server={self.server.decode()}, public={self.public.decode()})"

    def apply(self, sock):
        """Makes sock a CURVE client of the bridge (before connect)."""
        sock.curve_serverkey = self.server
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def _z85_key(s):
    """The 40-character Z85 form of a 32-byte key as bytes, or None."""
    if isinstance(s, str):
        try:
            s = s.encode("ascii")
        except UnicodeEncodeError:
            return None
    if not isinstance(s, (bytes, bytearray)) or len(s) != 40:
        return None
    try:
        return bytes(s) if len(z85.decode(bytes(s))) == 32 else None
    except (ValueError, KeyError, TypeError):
        return None


def _read_cert(option, path):
    """(public, secret or None) of a ZeroMQ certificate file (czmq's zcert / pyzmq's
    create_certificates format); ValueError naming the option and the file."""
    try:
        with open(path, "rb"):
            pass
        public, secret = zmq.auth.load_certificate(path)
    except ValueError:
        raise ValueError(f"{option}: {path}: no public-key: not a ZeroMQ certificate file") from None
    except OSError as e:
        raise ValueError(f"{option}: {path}: cannot read: {e.strerror or e}") from None
    pk = _z85_key(public)
    if pk is None:
        raise ValueError(f"{option}: {path}: its public-key is not a 40-character Z85 key")
    sk = None
    if secret is not None:
        sk = _z85_key(secret)
        if sk is None:
            raise ValueError(f"{option}: {path}: its secret-key is not a 40-character Z85 key")
    return pk, sk


def load(server_key, cert):
    """The client keys for the options, or None when neither is set. server_key: the
    bridge's public key, 40 Z85 characters or the path of its public certificate (.key;
    a file of that name wins over the Z85 reading); cert: the path of this consumer's
    secret certificate (.key_secret). Raises ValueError with a precise message."""
    if not server_key and not cert:
        return None
    if not cert:
        raise ValueError("server_key needs cert: the path of this consumer's .key_secret file")
    if not server_key:
        raise ValueError("cert needs server_key: the bridge's public key (40 Z85 characters) "
                         "or its .key file")
    if not zmq.has("curve"):
        raise ValueError("server_key/cert: this libzmq has no CURVE support")
    server_key = os.fspath(server_key) if isinstance(server_key, os.PathLike) else server_key
    if isinstance(server_key, str) and os.path.exists(server_key):
        server, secret = _read_cert("server_key", server_key)
        if secret is not None:
            raise ValueError(f"server_key: {server_key} holds a secret-key: give the bridge's "
                             "public certificate (.key), never its secret")
    else:
        server = _z85_key(server_key)
        if server is None:
            # the value itself is not repeated: it might be a mistyped secret
            n = len(server_key) if isinstance(server_key, (str, bytes, bytearray)) else 0
            raise ValueError("server_key: neither a certificate file nor a 40-character Z85 key "
                             f"({n} characters)")
    public, secret = _read_cert("cert", os.fspath(cert))
    if secret is None:
        raise ValueError(f"cert: {cert} has no secret-key: give this consumer's .key_secret "
                         "file (a public certificate was given?)")
    if zmq.curve_public(secret) != public:
        raise ValueError(f"cert: {cert}: its public-key does not belong to its secret-key")
    return Keys(server, public, secret)


class Handshakes:
    """The handshake failures of one socket: each counts in auth_failures; the first is
    logged at once, the next ones at most every LOG_EVERY_MS (with how many there were).
    A failure sets the backoff (250 ms doubling to 2 s; a success resets it) and
    retry_at: when the owner connects the socket again itself, unless libzmq says it is
    retrying on its own (CONNECT_RETRIED: a wrong key is retried by libzmq)."""

    def __init__(self, counters, what):
        self.counters = counters
        self.what = what          # "tcp://... (SUB)" for the log
        self.backoff = 0
        self.retry_at = 0         # monotonic ms; 0 = nothing pending
        self.failed = 0           # failures since the last success
        self.logged_at = None
        self.unlogged = 0

    def on_event(self, event, now):
        """A monitor event of the socket; True when it was a handshake event."""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self.failed:
                log.info("%s: handshake succeeded after %d failure(s)", self.what, self.failed)
            self.backoff = self.retry_at = self.failed = self.unlogged = 0
            self.logged_at = None
            return True
        why = FAILED.get(event)
        if why is None:
            return False
        self.counters["auth_failures"] += 1
        self.failed += 1
        self.backoff = min(max(self.backoff * 2, BACKOFF_FIRST_MS), BACKOFF_MAX_MS)
        self.retry_at = now + self.backoff
        if self.logged_at is None or now - self.logged_at >= LOG_EVERY_MS:
            more = f" ({self.unlogged} more since the last line)" if self.unlogged else ""
            log.warning("%s: CURVE handshake %s; retrying every %d ms at most%s", self.what, why,
                        BACKOFF_MAX_MS, more)
            self.logged_at = now
            self.unlogged = 0
        else:
            self.unlogged += 1
        return True

    def retried_by_libzmq(self):
        self.retry_at = 0


class DealerWatch:
    """The socket monitor of a replay DEALER: its handshake failures (Handshakes) and
    the reconnect after a denial (disconnect + connect of the endpoint: no message of
    the refused connection can be in its pipe). The request that got no answer is
    asked again by the fill's replay_timeout rules."""

    def __init__(self, counters, dealer, endpoint):
        self.dealer = dealer
        self.endpoint = endpoint
        self.hs = Handshakes(counters, f"replay {endpoint}")
        try:
            self.mon = dealer.get_monitor_socket(HANDSHAKE_EVENTS | zmq.EVENT_CONNECT_RETRIED)
        except zmq.ZMQError as e:
            self.mon = None
            log.warning("replay %s: no socket monitor (%s): a refused handshake is not retried",
                        endpoint, e)

    def read(self, now):
        mon = zmq.Socket.shadow(self.mon.underlying)
        for _ in range(64):
            try:
                m = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            except Exception:
                continue
            if m["event"] == zmq.EVENT_CONNECT_RETRIED:
                self.hs.retried_by_libzmq()
            else:
                self.hs.on_event(m["event"], now)

    def tick(self, now):
        if self.hs.retry_at and now >= self.hs.retry_at:
            self.hs.retry_at = 0
            try:
                self.dealer.disconnect(self.endpoint)
            except zmq.ZMQError:
                pass  # libzmq forgot it already
            try:
                self.dealer.connect(self.endpoint)
            except zmq.ZMQError as e:
                log.error("replay %s: cannot reconnect: %s", self.endpoint, e)

    def close(self):
        if self.mon is not None:
            try:
                self.dealer.disable_monitor()
            except zmq.ZMQError:
                pass
            self.mon.close(linger=0)
            self.mon = None
