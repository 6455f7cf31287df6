"""bdkfw: the BDK-specific layer of the BDK counterpart tests (tests/bdk/) on top of the shared
framework tests/pylib/dftest.py (dfpod, dfbridge, subscriber, checks): call-log helpers, and the
runner of the test functions of one group, each with fresh daemons.
"""
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import dftest  # noqa: E402
# Re-exported for the test_*.py files.
from dftest import (EXIT_AUTH, EXIT_EXHAUSTED, EXIT_FATAL, FAST_RETRY,  # noqa: E402,F401
                    Bridge, Failure, Pod, Sub, check, eq, event, make_pki, wait_until)

CTX = None  # dftest.CTX once run() started


def wait_count(pod, endpoint, n, timeout=12.0):
    """The call log has exactly n calls of endpoint once the pod finished them all (a dropped or
    slow call is logged when the pod is done with it, possibly after the bridge moved on)."""
    try:
        wait_until(lambda: len(pod.calls(endpoint)) >= n, "%d %s calls" % (n, endpoint), timeout)
    except Failure:
        pass
    c = pod.calls(endpoint)
    eq(len(c), n, "%s calls (%s)" % (endpoint, summary(c)))
    return c


def auth_ok_then(*faults):
    """Auth faults that let the first login through (a 1 ms 'slow' replies normally), then apply."""
    return [{"endpoint": "auth", "action": "slow", "delay_ms": 1}] + list(faults)


def datafeed_calls(pod):
    """The call log without the auth calls: (endpoint, method, feed) tuples."""
    return [c for c in pod.calls() if c["endpoint"] not in ("auth", "relay", "sessioninfo")]


def summary(calls):
    """A compact call sequence for messages: endpoint:status."""
    return " ".join("%s:%s" % (c["endpoint"], c["status"]) for c in calls)


# --------------------------------------------------------------------------------------------
def mk_pod(live, *args, **kw):
    p = Pod(*args, **kw)
    live.append(p)
    return p


def mk_bridge(live, pod, **kw):
    b = Bridge(pod, **kw)
    live.append(b)
    return b


def mk_sub(live, bridge):
    s = Sub(bridge)
    live.append(s)
    return s


def run(groups, argv):
    """Runs the test functions of one group (groups: name -> list), each with fresh daemons
    registered in its `live` list (killed and checked afterwards); prints PASS/FAIL lines."""
    import argparse
    global CTX
    ap = argparse.ArgumentParser()
    ap.add_argument("--dfpod", required=True)
    ap.add_argument("--dfbridge", required=True)
    ap.add_argument("--group", required=True, choices=sorted(groups))
    ap.add_argument("--only", help="run only the tests whose name contains this")
    a = ap.parse_args(argv)
    tests = groups[a.group]
    CTX = dftest.setup(a.dfpod, a.dfbridge, "bdk-")
    try:
        for t in tests:
            if a.only and a.only not in t.__name__:
                continue
            t0 = time.monotonic()
            live = []
            try:
                t(live)
                CTX.passed.append(t.__name__)
                print("PASS %-55s %.2f s" % (t.__name__, time.monotonic() - t0), flush=True)
            except Exception as e:  # Failure or an unexpected error: both fail the test
                CTX.failed.append(t.__name__)
                print("FAIL %-55s %s" % (t.__name__, e), flush=True)
                if not isinstance(e, Failure):
                    traceback.print_exc()
                for obj in live:
                    if isinstance(obj, Bridge):
                        print("---- dfbridge log (%s)\n%s" % (obj.cfg_path, obj.text()[-6000:]))
            finally:
                for obj in reversed(live):
                    try:
                        if isinstance(obj, Bridge):
                            obj.kill()
                            obj.check_clean()
                        elif isinstance(obj, Sub):
                            obj.close()
                        elif isinstance(obj, Pod):
                            obj.stop()
                    except Failure as e:
                        if t.__name__ not in CTX.failed:
                            CTX.failed.append(t.__name__)
                        print("FAIL %s: %s" % (t.__name__, e), flush=True)
    finally:
        CTX.cleanup(keep=bool(CTX.failed))
    print("%d passed, %d failed%s" % (len(CTX.passed), len(CTX.failed),
                                       (": " + ", ".join(CTX.failed)) if CTX.failed else ""))
    return 1 if CTX.failed else 0
