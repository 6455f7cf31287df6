#!/usr/bin/python3
"""curvebridge: a fake dfbridge with CURVE, for the consumer tests of the three languages
(issue 9). The fake bridge of the Python tests (consumers/python/tests/fakebridge.py:
envelopes, heartbeats, journal, replay answers) with its XPUB and replay ROUTER made
CURVE servers, and pyzmq's ThreadAuthenticator as the ZAP handler, allowing the public
certificates (*.key) of a clients directory per socket (ZAP domain "global" for the PUB:
clients/, "replay" for the ROUTER: clients_replay/); allow/revoke copy or remove a
certificate there and reconfigure the authenticator. Its key directory holds the
bridge's pair and three consumers': "allowed" (allowed on both at start), "denied"
(valid keys, allowed nowhere) and "other".

In-process (Python tests): CurveBridge(keydir). As a program (C and Node tests):
/usr/bin/python3 curvebridge.py KEYDIR prints one JSON line {"pub", "replay",
"server_key", "dir"}, then answers each command line on stdin with one JSON line:
  publish N          N events (MESSAGESENT, ids ev-<gseq>)  -> {"gseq": last}
  heartbeat          one "_hb"                               -> {"ok": true}
  allow NAME [pub|replay]   NAME.key into the allow-list(s) -> {"ok": true}
  revoke NAME [pub|replay]  NAME.key out of them            -> {"ok": true}
  subscribed MS      waits for a subscription on the XPUB    -> {"ok": true|false}
  rebind             unbinds and binds the XPUB again (same port): every SUB
                     connection is cut, as the real bridge does on a revocation;
                     the allowed reconnect, the revoked are refused -> {"ok": true}
  stats              -> {"denied": n, "allowed": n, "requests": n}
  quit               exits.
Loopback only, ports chosen by the system. Ends when stdin closes."""

import json
import os
import shutil
import sys
import threading
import time

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python", "tests"))

from fakebridge import FakeBridge, message_event  # noqa: E402

CONSUMERS = ("allowed", "denied", "other")


DOMAINS = {"pub": ("global", "clients"), "replay": ("replay", "clients_replay")}


def make_keys(keydir):
    """bridge.key(_secret), <consumer>.key(_secret) in keydir/keys, and the allow-lists
    (clients/, clients_replay/) with allowed.key. Returns keydir."""
    keys = os.path.join(keydir, "keys")
    os.makedirs(keys, exist_ok=True)
    for name in ("bridge",) + CONSUMERS:
        if not os.path.exists(os.path.join(keys, name + ".key")):
            zmq.auth.create_certificates(keys, name)
    for _, sub in DOMAINS.values():
        os.makedirs(os.path.join(keydir, sub), exist_ok=True)
        shutil.copy(os.path.join(keys, "allowed.key"), os.path.join(keydir, sub))
    return keydir


class CurveBridge(FakeBridge):
    def __init__(self, keydir, epoch="E1", interval=1000):
        # FakeBridge binds at once: build its sockets here instead, CURVE before bind
        self.keydir = make_keys(keydir)
        self.keys = os.path.join(keydir, "keys")
        self.server_public, secret = zmq.auth.load_certificate(
            os.path.join(self.keys, "bridge.key_secret"))
        self.ctx = zmq.Context()
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.denied = self.allowed = 0
        self._count_lock = threading.Lock()
        self._count_zap()
        for which in DOMAINS:
            self._configure(which)
        self.pub = self._socket(zmq.XPUB, secret, DOMAINS["pub"][0])
        self.pub.setsockopt(zmq.SNDHWM, 0)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.bind("tcp://127.0.0.1:*")
        self.endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router = self._socket(zmq.ROUTER, secret, DOMAINS["replay"][0])
        self.router.bind("tcp://127.0.0.1:*")
        self.replay_endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.epoch = epoch
        self.interval = interval
        self.gseq = 0
        self.seqs = {}
        self.journal = []
        self.lock = threading.Lock()
        self.requests = []
        self.script = []
        self.mute = False
        self.limit = 1000
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _socket(self, kind, secret, domain):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_server = True
        s.curve_secretkey = secret
        s.zap_domain = domain.encode()
        return s

    def _configure(self, which):
        domain, sub = DOMAINS[which]
        self.auth.configure_curve(domain=domain, location=os.path.join(self.keydir, sub))

    def _count_zap(self):
        """Counts the ZAP handler's answers (200 allowed, others denied)."""
        a = self.auth.thread.authenticator
        send = a._send_zap_reply

        def counting(request_id, status_code, *rest, **kw):
            with self._count_lock:
                if status_code == b"200":
                    self.allowed += 1
                else:
                    self.denied += 1
            return send(request_id, status_code, *rest, **kw)
        a._send_zap_reply = counting

    def key_path(self, name, secret=False):
        return os.path.join(self.keys, name + (".key_secret" if secret else ".key"))

    def allow(self, name, which=None):
        """NAME.key into the allow-list of the PUB, the ROUTER (which) or both."""
        for w in [which] if which else DOMAINS:
            shutil.copy(self.key_path(name), os.path.join(self.keydir, DOMAINS[w][1]))
            self._configure(w)

    def revoke(self, name, which=None):
        for w in [which] if which else DOMAINS:
            os.remove(os.path.join(self.keydir, DOMAINS[w][1], name + ".key"))
            self._configure(w)

    def rebind(self):
        """Cuts every connection to the XPUB (the ROUTER belongs to the replay thread)."""
        self.pub.unbind(self.endpoint)
        end = time.monotonic() + 5
        while True:  # the unbind completes in libzmq's I/O thread: the port frees shortly
            try:
                self.pub.bind(self.endpoint)
                return
            except zmq.ZMQError as e:
                if e.errno != zmq.EADDRINUSE or time.monotonic() > end:
                    raise
                time.sleep(0.01)

    def stats(self):
        with self._count_lock:
            return {"denied": self.denied, "allowed": self.allowed,
                    "requests": len(self.requests)}

    def publish(self, n):
        for _ in range(n):
            g = self.gseq + 1
            self.next("MESSAGESENT", message_event(g))
        return self.gseq

    def close(self):
        self.auth.stop()  # first: FakeBridge.close terminates the context
        super().close()


def main():
    b = CurveBridge(sys.argv[1])
    out = sys.stdout

    def say(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()
    say({"pub": b.endpoint, "replay": b.replay_endpoint,
         "server_key": b.server_public.decode(), "dir": b.keydir})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        try:
            if cmd[0] == "publish":
                say({"gseq": b.publish(int(cmd[1]))})
            elif cmd[0] == "heartbeat":
                b.heartbeat()
                say({"ok": True})
            elif cmd[0] == "allow":
                b.allow(*cmd[1:3])
                say({"ok": True})
            elif cmd[0] == "revoke":
                b.revoke(*cmd[1:3])
                say({"ok": True})
            elif cmd[0] == "subscribed":
                try:
                    b.wait_subscribed(int(cmd[1]) / 1000)
                    say({"ok": True})
                except TimeoutError:
                    say({"ok": False})
            elif cmd[0] == "rebind":
                b.rebind()
                say({"ok": True})
            elif cmd[0] == "stats":
                say(b.stats())
            elif cmd[0] == "quit":
                break
            else:
                say({"error": f"unknown command {cmd[0]}"})
        except Exception as e:  # a test's mistake: answer, do not die
            say({"error": repr(e)})
    b.close()


if __name__ == "__main__":
    main()
