#!/usr/bin/python3
"""The real dfpod and the real dfbridge (with its journal, replay and command channel) for the Node
tests, started with tests/pylib/dftest.py, driven over stdin/stdout (one JSON object a line):

  -> {"pod": "http://127.0.0.1:P", "publish": EP, "replay": EP, "commands": EP}   once both run
  <- "kill"   SIGKILL to the bridge, then it starts again (same config, ports and stateDir)
  -> {"restarted": bool}  once its command channel answers again
  <- "stop"   SIGTERM to the bridge (it must exit 0 within 5 s), then the pod; then
  -> {"ok": bool, "fails": [...]}  and exit; the daemons' logs go to stderr when not ok

Usage: podbridge.py DFPOD DFBRIDGE [curve]. With curve the bridge is a CURVE server (its keys and
those of alice, bob and carol made in <tmp>/certs; alice and bob in bridge.curve.clientsDir, carol
not) with bridge.commandsAllow {alice: ['streams.*'], bob: ['*']}; the first line adds "certs". The bridge's command channel has no rate limits (the Node tests
count calls; the spacing is the bridge's own tests'); its retry budget is small and fast."""
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tests", "pylib"))
import dftest  # noqa: E402
from dftest import Bridge, Pod, free_port  # noqa: E402

import msgpack  # noqa: E402
import zmq  # noqa: E402
import zmq.auth  # noqa: E402

RETRY = ("retry:\n  maxAttempts: 3\n  initialIntervalMillis: 20\n  multiplier: 1\n"
         "  maxIntervalMillis: 20\n")


def wait_commands(endpoint, bridge, keys=None, timeout=20.0):
    """True once the command channel answers (a probe with an unknown op: bad_request, nothing is
    sent to the pod). keys: (public, secret, server's public) for CURVE."""
    s = dftest.CTX.zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if keys:
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = keys
    s.connect(endpoint)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and bridge.running():
            s.send(msgpack.packb({"v": 1, "id": "probe", "op": "no.such.op", "args": {}}))
            if s.poll(500):
                r = msgpack.unpackb(s.recv(), raw=False)
                return r.get("id") == "probe" and r.get("error", {}).get("code") == "bad_request"
        return False
    finally:
        s.close()


def main():
    dftest.soft_checks()
    ctx = dftest.setup(sys.argv[1], sys.argv[2], prefix="dfc-node-cmd-")
    ok = False
    try:
        pod = Pod()
        state = os.path.join(ctx.tmp, "state")
        os.mkdir(state)
        replay, commands = free_port(), free_port()
        extra, certs, keys = "", None, None
        if sys.argv[3:] == ["curve"]:
            certs, clients = os.path.join(ctx.tmp, "certs"), os.path.join(ctx.tmp, "clients")
            os.mkdir(certs)
            os.mkdir(clients)
            for name in ("bridge", "alice", "bob", "carol"):
                pub, _ = zmq.auth.create_certificates(certs, name)
                if name in ("alice", "bob"):
                    shutil.copy(pub, clients)
            keys = zmq.auth.load_certificate(os.path.join(certs, "bob.key_secret"))
            keys = keys + (zmq.auth.load_certificate(os.path.join(certs, "bridge.key"))[0],)
            extra = ("  curve:\n    secretKey: %s\n    clientsDir: %s\n"
                     "  commandsAllow:\n    alice: ['streams.*']\n    bob: ['*']\n"
                     % (os.path.join(certs, "bridge.key_secret"), clients))
        b = Bridge(pod, retry=RETRY, start=False,
                   bridge_extra=("  stateDir: %s\n  replay: tcp://127.0.0.1:%d\n"
                                 "  heartbeatMillis: 200\n  commands: tcp://127.0.0.1:%d\n"
                                 "  commandsRate: 0\n  commandsStreamRate: 0\n%s"
                                 % (state, replay, commands, extra)))
        b.start()
        ep = "tcp://127.0.0.1:%d" % commands
        if not dftest.check(wait_commands(ep, b, keys), "the command channel answers"):
            print(json.dumps({"error": "the bridge's command channel did not answer"}), flush=True)
            return 1
        print(json.dumps({"pod": pod.url, "publish": b.endpoint, "replay": "tcp://127.0.0.1:%d" % replay,
                          "commands": ep, "certs": certs}), flush=True)
        for line in sys.stdin:
            if line.strip() == "stop":
                break
            if line.strip() == "kill":  # SIGKILL, then the same bridge (config, ports, state) again
                b.kill()
                b.start()
                print(json.dumps({"restarted": wait_commands(ep, b, keys)}), flush=True)
        b.stop()
        b.check_clean()
        pod.stop()
        ok = not dftest.FAILS
    except Exception as e:  # a crash is a failure with its reason
        dftest.check(False, "podbridge.py: %r" % e)
    finally:
        ctx.kill_children()
        if dftest.FAILS:
            for n in sorted(os.listdir(ctx.tmp)):
                if n.endswith(".log") or n.endswith(".yaml"):
                    sys.stderr.write("---- %s (last 6000 chars)\n%s\n"
                                     % (n, dftest.read_text(os.path.join(ctx.tmp, n))[-6000:]))
        ctx.cleanup()
        print(json.dumps({"ok": ok and not dftest.FAILS, "fails": dftest.FAILS}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
