#!/usr/bin/python3
"""Datahose counterparts of the BDK tests (DatahoseLoopTest, datahose_loop_test.py, the datahose
part of strategy_test.py): POST /agent/v5/events/read with type, tag (default datahose-<username>,
cut to 80), eventTypes and the ackId chain; 400/404 end the loop; 401 refreshes; 429, 5xx and
network errors are retried with datahose.retry (never datafeed.retry).
"""
import json
import sys

from bdkfw import (EXIT_AUTH, EXIT_EXHAUSTED, EXIT_FATAL, FAST_RETRY, auth_ok_then, check, eq,
                   event, mk_bridge, mk_pod, mk_sub, run, wait_count, wait_until)


def dh(tag=None, types=("TYPE_A", "TYPE_B"), attempts=2, df_attempts=2):
    s = "datahose:\n"
    if tag is not None:
        s += "  tag: %s\n" % json.dumps(tag)
    s += "  eventTypes: [%s]\n" % ", ".join(types)
    s += "  retry:\n    maxAttempts: %d\n" % attempts + FAST_RETRY
    s += "datafeed:\n  retry:\n    maxAttempts: %d\n" % df_attempts + FAST_RETRY
    return s


def bridge(live, pod, **kw):
    return mk_bridge(live, pod, datafeed="", extra=dh(**kw), bridge_extra="  source: datahose\n")


def reads(pod):
    return pod.calls("dhread")


def body(c):
    return json.loads(c["body"])


def _first_body(live, want_tag, **kw):
    pod = mk_pod(live, "--hold-ms", "300")
    b = bridge(live, pod, **kw)
    s = mk_sub(live, b)
    s.sync(pod, ptype=kw.get("types", ("TYPE_A",))[0])
    bd = body(reads(pod)[0])
    eq((bd.get("type"), bd.get("tag"), bd.get("eventTypes"), bd.get("ackId")),
       ("datahose", want_tag, list(kw.get("types", ("TYPE_A", "TYPE_B"))), ""), "first read body")
    eq([c["endpoint"] for c in pod.calls() if c["endpoint"] in ("list", "create", "delete")], [],
       "no list/create/delete with the datahose")
    return pod, b, s


def test_datahose_start_body(live):
    _first_body(live, "mytag", tag="mytag")


def test_datahose_default_tag(live):
    _first_body(live, "datahose-my-bot")


def test_datahose_tag_of_80_kept(live):
    _first_body(live, "a" * 80, tag="a" * 80)


def test_datahose_long_tag_cut_to_80(live):
    _first_body(live, "a" * 80, tag="a" * 100)


def test_datahose_single_event_type(live):
    _first_body(live, "TEST_TAG", tag="TEST_TAG", types=("SOCIALMESSAGE",))


def test_datahose_ackid_chain_and_events(live):
    pod, b, s = _first_body(live, "mytag", tag="mytag")
    pod.events([event(i, "TYPE_B") for i in range(3)] + [event(9, "OTHER")])
    s.wait_ids(["ev-0", "ev-1", "ev-2"])
    def acked():
        rs = reads(pod)
        last = [r for r in rs if r.get("events")][-1]
        return [r for r in rs if r.get("ackIdIn") == last["ackId"]]
    wait_until(acked, "the last batch acknowledged")
    rs = reads(pod)
    for prev, cur in zip(rs, rs[1:]):
        if prev["status"] == 200:
            eq(body(cur).get("ackId"), prev["ackId"], "ackId after read #%d" % prev["seq"])
            eq(body(cur).get("tag"), "mytag", "tag on every read")
    check("ev-9" not in {m[1]["event"]["id"] for m in s.got}, "a type outside eventTypes")


def _fatal(live, status, n_reads, exit_status, *words, **kw):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults(*status)
    b = bridge(live, pod, **kw)
    b.expect_exit(exit_status, *words)
    wait_count(pod, "dhread", n_reads)
    return pod


def test_datahose_400_not_retried(live):
    _fatal(live, [{"endpoint": "dhread", "action": "status", "status": 400}], 1, EXIT_FATAL, "400")


def test_datahose_404_not_retried(live):
    _fatal(live, [{"endpoint": "dhread", "action": "status", "status": 404}], 1, EXIT_FATAL, "404")


def test_datahose_403_not_entitled(live):
    _fatal(live, [{"endpoint": "dhread", "action": "status", "status": 403}], 1, EXIT_FATAL, "403")


def test_datahose_401_refreshes(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "dhread", "action": "expire_token"})
    b = bridge(live, pod)
    s = mk_sub(live, b)
    s.sync(pod, ptype="TYPE_A")
    eq([c["status"] for c in reads(pod)[:2]], [401, 200], "reads")
    eq(len(pod.calls("auth")), 2, "logins (start + refresh)")


def test_datahose_401_refresh_fails(live):
    _fatal(live, [{"endpoint": "dhread", "action": "status", "status": 401},
                  *auth_ok_then({"endpoint": "auth", "action": "status", "status": 401})],
           1, EXIT_AUTH, "401|unauthori|authenticat")


def test_datahose_http_errors_retried(live):
    for st in (429, 500, 501, 502, 503):
        pod = mk_pod(live, "--hold-ms", "300")
        pod.faults({"endpoint": "dhread", "action": "status", "status": st})
        b = bridge(live, pod)
        s = mk_sub(live, b)
        s.sync(pod, ptype="TYPE_A")
        eq([c["status"] for c in reads(pod)[:2]], [st, 200], "reads after a %d" % st)
        b.stop()


def test_datahose_network_errors_retried(live):
    for f in ({"action": "drop"}, {"action": "truncate"}, {"action": "slow", "delay_ms": 2500}):
        pod = mk_pod(live, "--hold-ms", "300")
        pod.faults(dict(f, endpoint="dhread"))
        b = mk_bridge(live, pod, datafeed="", extra=dh(attempts=3), read_timeout_ms=1000,
                      bridge_extra="  source: datahose\n")
        s = mk_sub(live, b)
        s.sync(pod, ptype="TYPE_A")
        wait_until(lambda: [r for r in reads(pod) if r.get("fault") == f["action"]],
                   "the %s read in the log" % f["action"])
        b.stop()


def test_datahose_uses_datahose_retry_not_datafeed_retry(live):
    # the Python BDK reads datafeed.retry for the datahose; the bridge must not
    _fatal(live, [{"endpoint": "dhread", "action": "status", "status": 503, "count": 9}], 2,
           EXIT_EXHAUSTED, "attempt", attempts=2, df_attempts=6)
    _fatal(live, [{"endpoint": "dhread", "action": "status", "status": 503, "count": 9}], 4,
           EXIT_EXHAUSTED, "attempt", attempts=4, df_attempts=1)


GROUPS = {
    "datahose": [test_datahose_start_body, test_datahose_default_tag, test_datahose_tag_of_80_kept,
                 test_datahose_long_tag_cut_to_80, test_datahose_single_event_type,
                 test_datahose_ackid_chain_and_events, test_datahose_400_not_retried,
                 test_datahose_404_not_retried, test_datahose_403_not_entitled,
                 test_datahose_401_refreshes, test_datahose_401_refresh_fails,
                 test_datahose_http_errors_retried, test_datahose_network_errors_retried,
                 test_datahose_uses_datahose_retry_not_datafeed_retry],
}

if __name__ == "__main__":
    sys.exit(run(GROUPS, sys.argv[1:]))
