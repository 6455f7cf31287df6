#!/usr/bin/python3
"""Datafeed v2 counterparts of the BDK tests (DatafeedLoopV2Test, datafeed_loop_v2_test.py,
strategy_test.py): real dfpod, real dfbridge, faults scripted on the pod, assertions on the call log,
the events received and the exit status. Groups: start, errors, recreate (see MAPPING.md).
"""
import json
import sys
import time

from bdkfw import (EXIT_AUTH, EXIT_EXHAUSTED, EXIT_FATAL, FAST_RETRY, Failure, auth_ok_then, check, datafeed_calls, eq,
                   event, mk_bridge, mk_pod, mk_sub, run, summary, wait_count, wait_until)

READ0 = '{"ackId":"","updatePresence":true}'


def df(attempts=2, extra=""):
    """A datafeed section: v2, `attempts` attempts (-1 unlimited), 10 ms waits."""
    return ("datafeed:\n  version: v2\n%s  retry:\n    maxAttempts: %d\n" % (extra, attempts)
            + FAST_RETRY)


def reads(pod):
    return pod.calls("read")


def ack_in(r):
    """The ackId a read sent (from its body: faulted reads have no ackIdIn in the log)."""
    if "ackIdIn" in r:
        return r["ackIdIn"]
    return json.loads(r["body"]).get("ackId") if r.get("body") else None


def check_chain(rs):
    """Every read after a 200 read carries that read's ackId; the first carries ""."""
    eq(ack_in(rs[0]), "", "ackId of the first read")
    for prev, cur in zip(rs, rs[1:]):
        if prev["status"] == 200 and prev.get("feed") == cur.get("feed"):
            eq(ack_in(cur), prev["ackId"], "ackId sent after read #%d" % prev["seq"])


def steady(live, pod, **kw):
    """A bridge that has published a probe: the loop is in its read cycle."""
    b = mk_bridge(live, pod, **kw)
    s = mk_sub(live, b)
    s.sync(pod)
    return b, s


# ---- start ---------------------------------------------------------------------------------
def test_start_empty_list_creates_then_reads_with_empty_ackid(live):
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod)
    calls = pod.calls()
    eq(calls[0]["endpoint"], "auth", "first call")
    names = [c["endpoint"] for c in calls]
    check(names.index("relay") < names.index("list") and names.index("sessioninfo") <
          names.index("list"), "login, relay and sessioninfo come before the datafeed: " + summary(calls))
    dc = datafeed_calls(pod)
    eq([c["endpoint"] for c in dc[:3]], ["list", "create", "read"], "datafeed call sequence")
    eq(json.loads(dc[1]["body"] or "{}"), {}, "create body without tag/includeInvisible")
    eq(dc[2]["body"], READ0, "first read body")
    feed = dc[2]["feed"]
    st, feeds = pod.req("GET", "/agent/v5/datafeeds", None, pod.session())
    eq([f["id"] for f in feeds], [feed], "live feeds")
    # the ack of the probe's batch goes with the next read
    wait_until(lambda: len([r for r in reads(pod) if r["status"] == 200]) >= 3, "three reads")
    check_chain(reads(pod))
    eq({r["feed"] for r in reads(pod)}, {feed}, "every read on the created feed")
    b.stop()
    eq(pod.calls("delete"), [], "DELETE calls")
    eq(pod.counter("feeds_created"), 1, "feeds created")


def test_start_reuses_existing_fanout_feed(live):
    pod = mk_pod(live, "--hold-ms", "300")
    feed = pod.create_feed()
    pod.admin("DELETE", "calls")
    b, s = steady(live, pod)
    dc = datafeed_calls(pod)
    eq(dc[0]["endpoint"], "list", "first datafeed call")
    eq(pod.calls("create"), [], "create calls")
    eq(dc[1]["endpoint"], "read", "second datafeed call")
    eq((dc[1]["feed"], dc[1]["body"]), (feed, READ0), "first read")
    b.stop()
    # a restart reuses it again: no feed per start (symphony-bdk-python#327)
    b2, s2 = steady(live, pod)
    eq(pod.calls("create"), [], "create calls after a restart")
    eq(pod.counter("live_feeds"), 1, "live feeds")
    b2.stop()


def test_start_ignores_non_fanout_ids(live):
    pod = mk_pod(live, "--hold-ms", "300")
    bad = [{"id": "abc", "type": "fanout"}, {"id": "abc_def"}, {"id": "abc_p_def", "type": "datahose"},
           {"id": "abc_f_"}, {"id": "BAD_ID_FORMAT"}, {"id": "a b_f"}]
    pod.faults({"endpoint": "list", "action": "status", "status": 200, "body": bad})
    b, s = steady(live, pod)
    dc = datafeed_calls(pod)
    eq([c["endpoint"] for c in dc[:3]], ["list", "create", "read"], "datafeed calls")
    eq(pod.counter("feeds_created"), 1, "feeds created")
    check(dc[2]["feed"] not in [x["id"] for x in bad], "read on the created feed")
    eq(dc[2]["body"], READ0, "first read body")


def _first_read_on(live, listed, want, datafeed=None):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "list", "action": "status", "status": 200, "body": listed})
    b = mk_bridge(live, pod, datafeed=datafeed)
    wait_until(lambda: reads(pod), "a read")
    b.stop()
    dc = datafeed_calls(pod)
    eq(dc[0]["endpoint"], "list", "first datafeed call")
    eq((dc[1]["endpoint"], dc[1]["feed"], dc[1]["body"]), ("read", want, READ0),
       "first call after the list")


def test_start_picks_first_fanout_old_format(live):
    _first_read_on(live, [{"id": "abc_p_def"}, {"id": "abc_f"}, {"id": "xyz_f_def"}], "abc_f")


def test_start_picks_first_fanout_new_format(live):
    _first_read_on(live, [{"id": "abc_f_"}, {"id": "abc_f_def"}, {"id": "abc_f"}], "abc_f_def")


def test_start_with_tag_picks_feed_named_by_tag(live):
    _first_read_on(live, [{"id": "abc_f", "type": "fanout"}, {"id": "my-tag", "type": "fanout"}],
                   "my-tag", datafeed=df(extra="  tag: my-tag\n"))


def test_create_body_tag_and_include_invisible(live):
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod, datafeed=df(extra="  tag: my-tag\n  includeInvisible: true\n"))
    eq(json.loads(pod.calls("create")[0]["body"]), {"tag": "my-tag", "includeInvisible": True},
       "create body")


def test_create_body_include_invisible_false_omitted(live):
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod, datafeed=df(extra="  includeInvisible: false\n"))
    eq(json.loads(pod.calls("create")[0]["body"] or "{}"), {}, "create body")


def test_empty_null_and_missing_events_advance_ackid(live):
    pod = mk_pod(live, "--hold-ms", "200")
    b, s = steady(live, pod)
    g0 = s.last_probe_gseq
    acks = ["Tm9uZQ==-11", "RW1wdHk=-12", "TWlzcw==-13"]
    n0 = len(reads(pod))
    pod.faults({"endpoint": "read", "action": "status", "status": 200,
                "body": {"events": None, "ackId": acks[0]}},
               {"endpoint": "read", "action": "status", "status": 200,
                "body": {"events": [], "ackId": acks[1]}},
               {"endpoint": "read", "action": "status", "status": 200, "body": {"ackId": acks[2]}})
    wait_until(lambda: [r for r in reads(pod) if ack_in(r) == acks[2]], "the third ackId sent")
    rs = reads(pod)
    faulted = [r for r in rs if r.get("fault")]
    eq(len(faulted), 3, "faulted reads")
    for i, r in enumerate(faulted):
        nxt = rs[rs.index(r) + 1]
        eq(ack_in(nxt), acks[i], "ackId after the empty batch #%d" % (i + 1))
    # nothing was published for them: the next probe's gseq follows the first one's
    p1 = s.sync(pod)
    eq(p1[1]["gseq"], g0 + 1, "gseq of the next probe (no message for empty batches)")
    eq(s.got, [], "messages other than probes")
    check(b.running(), "dfbridge running")


def test_ack_chain_over_batches(live):
    pod = mk_pod(live, "--hold-ms", "300", "--batch-max", "2")
    b, s = steady(live, pod)
    evs = [event(i) for i in range(7)]
    pod.events(evs)
    s.wait_ids(["ev-%d" % i for i in range(7)])
    wait_until(lambda: pod.counter("pending") == 0, "every batch acknowledged")
    rs = reads(pod)
    check_chain(rs)
    served = [r for r in rs if r.get("events")]
    check(len(served) >= 5, "7 events + probe in batches of 2: %d batches" % len(served))
    eq(sorted(m[1]["event"]["id"] for m in s.got), sorted(e["id"] for e in evs),
       "each event once")
    eq(pod.counter("redelivered"), 0, "redelivered")


def test_unknown_and_untyped_events_forwarded_and_acked(live):
    pod = mk_pod(live, "--hold-ms", "200")
    b, s = steady(live, pod)
    body = {"events": [{"id": "u1", "type": "unknown-type", "payload": {}},
                       {"id": "u2", "type": None},
                       {"id": "u3"},
                       {"id": "u4", "type": "GENERICSYSTEMEVENT", "payload": {"genericSystemEvent": {}}}],
            "ackId": "VW5rbm93bg==-21"}
    pod.faults({"endpoint": "read", "action": "status", "status": 200, "body": body})
    s.wait_ids(["u1", "u2", "u3", "u4"])
    topics = {m[1]["event"]["id"]: m[0] for m in s.got}
    eq(topics, {"u1": "unknown-type", "u2": "UNKNOWN", "u3": "UNKNOWN", "u4": "GENERICSYSTEMEVENT"},
       "topics")
    wait_until(lambda: [r for r in reads(pod) if ack_in(r) == body["ackId"]], "the batch acked")


def test_stop_during_held_read(live):
    pod = mk_pod(live, "--hold-ms", "30000")
    b, s = steady(live, pod)
    wait_until(lambda: pod.counter("reads_held") == 1, "a held read")
    b.stop()  # within 5 s: the 30 s hold was cut short
    eq(pod.calls("delete"), [], "DELETE calls")
    # a second instance of the same config cannot run beside a first one: it says so, exit 2
    b2 = mk_bridge(live, pod)
    s2 = mk_sub(live, b2)
    s2.sync(pod)
    b3 = mk_bridge(live, pod, start=False)
    with open(b3.cfg_path, "w") as f:
        f.write(b2.config)  # the same bridge.publish endpoint
    b3.start()
    b3.expect_exit(2, "tcp://127.0.0.1:%d" % b2.pub_port)


# ---- errors (classification and attempts; maxAttempts 2 as J's ofMinimalInterval(2)) --------
def _read_fault_then_exit(live, faults, want_reads, words, attempts=2, **kw):
    status = EXIT_EXHAUSTED if "attempt" in words else EXIT_FATAL
    pod = mk_pod(live, "--hold-ms", "300")
    feed = pod.create_feed()
    pod.faults(*faults)
    b = mk_bridge(live, pod, datafeed=df(attempts), **kw)
    line = b.expect_exit(status, *words)
    rs = wait_count(pod, "read", want_reads)
    eq(len(pod.calls("list")), 1, "list calls")
    eq(pod.calls("create"), [], "create calls")
    for r in rs:
        eq((r["feed"], r["body"]), (feed, READ0), "read #%d" % r["seq"])
    return b, pod


def test_read_502_retried_then_fatal(live):
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "status", "status": 502, "count": 2}],
                          2, ["read", "attempt"])


def test_read_429_retried_then_fatal(live):
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "status", "status": 429, "count": 2}],
                          2, ["read", "attempt"])


def test_read_404_not_retried(live):
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "status", "status": 404}], 1,
                          ["read", "404"])


def test_read_403_not_retried(live):
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "status", "status": 403}], 1,
                          ["read", "403"])


def test_read_409_other_4xx_not_retried(live):
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "status", "status": 409}], 1,
                          ["read", "409"])


def test_read_dropped_connection_retried_then_fatal(live):
    # libcurl re-sends a request once, on a fresh connection, when a reused keep-alive connection
    # turns out dead before any byte of the reply: one attempt can be two dropped calls here
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    pod.faults({"endpoint": "read", "action": "drop", "count": 4})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_EXHAUSTED, "read", "attempt")
    wait_until(lambda: len(reads(pod)) >= 2, "two reads")
    n = len(reads(pod))
    check(2 <= n <= 4, "2 attempts are 2 to 4 dropped calls: %s" % summary(reads(pod)))
    eq({r["status"] for r in reads(pod)}, {0}, "every read dropped")


def test_read_truncated_body_retried_then_fatal(live):
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "truncate", "count": 2}], 2,
                          ["read", "attempt"])


def test_read_timeout_retried_then_fatal(live):
    # bridge.readTimeoutMillis 1000: a 2.5 s answer is a client timeout
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "slow", "delay_ms": 2500, "count": 2}],
                          2, ["read", "attempt"], read_timeout_ms=1000)


def test_read_malformed_body_retried_then_fatal(live):
    _read_fault_then_exit(live, [{"endpoint": "read", "action": "status", "status": 200,
                                  "body": "{\"events\":[", "count": 2}], 2, ["read", "attempt"])


def test_read_401_refresh_fails_fatal(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    pod.faults({"endpoint": "read", "action": "status", "status": 401},
               *auth_ok_then({"endpoint": "auth", "action": "status", "status": 401}))
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq(len(reads(pod)), 1, "reads")
    eq([c["status"] for c in pod.calls("auth")], [200, 401], "logins")


def test_read_401_refreshes_session_and_continues(live):
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod)
    auth0, relay0 = len(pod.calls("auth")), len(pod.calls("relay"))
    # every token becomes invalid, the read gets 401: the old token would be refused from now on
    pod.faults({"endpoint": "read", "action": "expire_token"})
    wait_until(lambda: pod.counter("faults_applied") == 1, "the fault taken")
    s.sync(pod)
    eq(len(pod.calls("auth")), auth0 + 1, "logins after the 401")
    eq(len(pod.calls("relay")), relay0 + 1, "key manager logins after the 401")
    rs = reads(pod)
    i = [k for k, r in enumerate(rs) if r["status"] == 401][0]
    eq(ack_in(rs[i + 1]), ack_in(rs[i]), "the read after the refresh repeats the ackId")
    eq(rs[i + 1]["feed"], rs[i]["feed"], "same feed after a refresh")
    eq(pod.counter("feeds_created"), 1, "feeds created")


def test_read_204_retried_with_the_same_ackid(live):
    # not in the BDKs (Py would crash on None.events, J on a NullPointerException): a 204 has no
    # content, so no ackId; the bridge retries the read with the ackId it sent and goes on. (Bytes
    # after a 204's head never reach the loop over HTTP; that the loop ignores them even then is
    # the fuzz regression tests/fuzz/regressions/bridge_body/read-204-with-a-body.)
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod)
    pod.faults({"endpoint": "read", "action": "status", "status": 204})
    wait_until(lambda: pod.counter("faults_applied") == 1, "the fault taken")
    s.sync(pod)
    rs = reads(pod)
    i = [k for k, r in enumerate(rs) if r["status"] == 204][0]
    eq(ack_in(rs[i + 1]), ack_in(rs[i]), "the read after the 204 repeats the ackId")
    eq(rs[i + 1]["feed"], rs[i]["feed"], "same feed")
    eq(pod.counter("feeds_created"), 1, "feeds created")
    check(b.running(), "dfbridge running")


def test_read_transients_then_success(live):
    # strategy_test.test_should_retry: 429, 500, connection error, timeout, then success (5 attempts)
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod, datafeed=df(5), read_timeout_ms=1000)
    pod.faults({"endpoint": "read", "action": "status", "status": 429},
               {"endpoint": "read", "action": "status", "status": 500},
               {"endpoint": "read", "action": "drop"},
               {"endpoint": "read", "action": "slow", "delay_ms": 2500})
    wait_until(lambda: len([r for r in reads(pod) if r.get("fault")]) == 4, "the faults taken")
    s.sync(pod)
    faulted = [r.get("fault") for r in reads(pod) if r.get("fault")]
    eq(faulted, ["status", "status", "drop", "slow"], "faults taken")
    check(b.running(), "dfbridge running")


def test_list_400_not_retried(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "list", "action": "status", "status": 400})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_FATAL, "list", "400")
    eq([c["status"] for c in datafeed_calls(pod)], [400], "datafeed calls")


def test_list_502_retried_then_fatal(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "list", "action": "status", "status": 502, "count": 2})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_EXHAUSTED, "list", "attempt")
    eq([c["status"] for c in datafeed_calls(pod)], [502, 502], "datafeed calls")


def test_list_502_then_success(live):
    pod = mk_pod(live, "--hold-ms", "300")
    feed = pod.create_feed()
    pod.admin("DELETE", "calls")
    pod.faults({"endpoint": "list", "action": "status", "status": 502})
    b, s = steady(live, pod)
    dc = datafeed_calls(pod)
    eq([(c["endpoint"], c["status"]) for c in dc[:3]], [("list", 502), ("list", 200), ("read", 200)],
       "datafeed calls")
    eq(dc[2]["feed"], feed, "read feed")


def test_list_401_refresh_fails_fatal(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "list", "action": "status", "status": 401},
               *auth_ok_then({"endpoint": "auth", "action": "status", "status": 401}))
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq(len(pod.calls("list")), 1, "list calls")


def test_create_401_refresh_fails_fatal(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "create", "action": "status", "status": 401},
               *auth_ok_then({"endpoint": "auth", "action": "status", "status": 401}))
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq(len(pod.calls("create")), 1, "create calls")
    eq(len(pod.calls("list")), 1, "list calls")


def test_create_400_retried_then_fatal(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "create", "action": "status", "status": 400, "count": 2})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_EXHAUSTED, "create", "attempt")
    eq([c["status"] for c in pod.calls("create")], [400, 400], "create calls")


def test_create_502_retried_then_fatal(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "create", "action": "status", "status": 502, "count": 2})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_EXHAUSTED, "create", "attempt")
    eq([c["status"] for c in pod.calls("create")], [502, 502], "create calls")


def test_create_403_feed_limit_reported(live):
    pod = mk_pod(live, "--max-feeds", "0")
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_FATAL, "create", "403", "20|too many|limit")
    eq([c["status"] for c in pod.calls("create")], [403], "create calls")


# ---- recreate (400 on read) -------------------------------------------------------------------
def _after_400(pod, old):
    """The calls after the first 400 read of feed old."""
    dc = datafeed_calls(pod)
    i = [k for k, c in enumerate(dc) if c["endpoint"] == "read" and c["status"] == 400][0]
    eq(dc[i]["feed"], old, "the 400 read's feed")
    return dc[i + 1:]


def test_400_recreates_one_feed_and_reads_it_with_empty_ackid(live):
    pod = mk_pod(live, "--hold-ms", "300")
    old = pod.create_feed()
    b, s = steady(live, pod)
    pod.faults({"endpoint": "read", "action": "expire_feed"})
    wait_until(lambda: pod.counter("feeds_created") == 2, "a new feed")
    s.sync(pod)
    after = _after_400(pod, old)
    seq = [c["endpoint"] for c in after]
    cut = seq.index("read")
    check("list" in seq[:cut], "a list before creating: %s" % seq[:cut])
    check(seq[:cut].index("list") < seq[:cut].index("create"), "list before create: %s" % seq[:cut])
    eq(seq[:cut].count("create"), 1, "creates for one 400")
    check(seq[:cut].count("delete") <= 1, "at most one delete of the old feed")
    new = after[cut]["feed"]
    check(new != old, "the read after the 400 goes to the new feed")
    eq(after[cut]["body"], READ0, "first read on the new feed")
    eq(pod.counter("live_feeds"), 1, "live feeds")
    check(b.running(), "dfbridge running")


def test_400_adopts_feed_created_by_another_instance(live):
    # symphony-bdk-java#782: after a 400, list again and adopt a valid feed; create only if none
    pod = mk_pod(live, "--hold-ms", "300")
    old = pod.create_feed()
    b, s = steady(live, pod)
    other = pod.create_feed()  # another instance made a feed (listed after old)
    pod.admin("POST", "expire-feed", {"id": old})
    s.sync(pod)
    after = _after_400(pod, old)
    eq(pod.calls("create"), [], "create calls by the bridge")
    rd = [c for c in after if c["endpoint"] == "read"][0]
    eq((rd["feed"], rd["body"]), (other, READ0), "first read after the 400")
    check("list" in [c["endpoint"] for c in after[:after.index(rd)]], "a list before adopting")


def test_400_create_fails_once_with_load_balancer_400(live):
    pod = mk_pod(live, "--hold-ms", "300")
    old = pod.create_feed()
    b, s = steady(live, pod)
    pod.faults({"endpoint": "create", "action": "status", "status": 400,
                "body": {"code": 400, "message": "ALB: No matching rule found"}})
    pod.faults({"endpoint": "read", "action": "expire_feed"})
    wait_until(lambda: pod.counter("feeds_created") == 2, "a new feed")
    s.sync(pod)
    eq([c["status"] for c in pod.calls("create")], [400, 201], "create calls")
    check(b.running(), "dfbridge running")


def test_400_delete_400_ignored(live):
    pod = mk_pod(live, "--hold-ms", "300")
    old = pod.create_feed()
    b, s = steady(live, pod)
    # the read gets 400 but the feed stays alive, and its DELETE fails with 400: the bridge
    # goes on (J ignores a 400 on delete) and never adopts the feed that just answered 400
    pod.faults({"endpoint": "delete", "action": "status", "status": 400})
    pod.faults({"endpoint": "read", "action": "status", "status": 400})
    wait_until(lambda: pod.counter("feeds_created") == 2, "a new feed")
    s.sync(pod)
    after = _after_400(pod, old)
    eq([c["status"] for c in pod.calls("delete")], [400], "delete calls")
    rd = [c for c in after if c["endpoint"] == "read"]
    check(rd and all(c["feed"] != old for c in rd), "reads after the 400 avoid the old feed")
    eq(rd[0]["body"], READ0, "first read on the new feed")
    check(b.running(), "dfbridge running")


def test_400_delete_502_retried_then_fatal(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    b, s = steady(live, pod)
    pod.faults({"endpoint": "delete", "action": "status", "status": 502, "count": 5},
               {"endpoint": "read", "action": "status", "status": 400})
    b.expect_exit(EXIT_EXHAUSTED, "delete", "attempt")
    eq([c["status"] for c in pod.calls("delete")], [502, 502], "delete calls")
    eq(pod.calls("create"), [], "create calls")


def test_400_delete_401_refresh_fails_fatal(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    b, s = steady(live, pod)
    pod.faults({"endpoint": "delete", "action": "status", "status": 401},
               {"endpoint": "auth", "action": "status", "status": 401},
               {"endpoint": "read", "action": "status", "status": 400})
    # (the bridge's own login is done: the next auth call is the refresh)
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq([c["status"] for c in pod.calls("delete")], [401], "delete calls")


def test_400_then_500_one_recreate_two_reads(live):
    # test_400_should_call_recreate_df_and_retry: 2 attempts: read 400, recreate, read 500, raised
    pod = mk_pod(live, "--hold-ms", "300")
    old = pod.create_feed()
    pod.faults({"endpoint": "read", "action": "status", "status": 400},
               {"endpoint": "read", "action": "status", "status": 500, "count": 5})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_EXHAUSTED, "read", "attempt")
    eq([r["status"] for r in reads(pod)], [400, 500], "reads")
    eq(len(pod.calls("create")), 1, "creates")


def test_400_twice_with_two_attempts(live):
    # J startTestWithRetryClientRead (v2 form): each 400 recreates; attempts still run out
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    pod.faults({"endpoint": "read", "action": "status", "status": 400, "count": 5})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_EXHAUSTED, "read|recreat", "attempt")
    eq([r["status"] for r in reads(pod)], [400, 400], "reads")
    eq(len(pod.calls("create")), 2, "one create per 400")


GROUPS = {
    "start": [test_start_empty_list_creates_then_reads_with_empty_ackid,
              test_start_reuses_existing_fanout_feed, test_start_ignores_non_fanout_ids,
              test_start_picks_first_fanout_old_format, test_start_picks_first_fanout_new_format,
              test_start_with_tag_picks_feed_named_by_tag, test_create_body_tag_and_include_invisible,
              test_create_body_include_invisible_false_omitted,
              test_empty_null_and_missing_events_advance_ackid, test_ack_chain_over_batches,
              test_unknown_and_untyped_events_forwarded_and_acked, test_stop_during_held_read],
    "errors": [test_read_502_retried_then_fatal, test_read_429_retried_then_fatal,
               test_read_404_not_retried, test_read_403_not_retried,
               test_read_409_other_4xx_not_retried, test_read_dropped_connection_retried_then_fatal,
               test_read_truncated_body_retried_then_fatal, test_read_timeout_retried_then_fatal,
               test_read_malformed_body_retried_then_fatal, test_read_401_refresh_fails_fatal,
               test_read_401_refreshes_session_and_continues, test_read_204_retried_with_the_same_ackid,
               test_read_transients_then_success,
               test_list_400_not_retried, test_list_502_retried_then_fatal, test_list_502_then_success,
               test_list_401_refresh_fails_fatal, test_create_401_refresh_fails_fatal,
               test_create_400_retried_then_fatal, test_create_502_retried_then_fatal,
               test_create_403_feed_limit_reported],
    "recreate": [test_400_recreates_one_feed_and_reads_it_with_empty_ackid,
                 test_400_adopts_feed_created_by_another_instance,
                 test_400_create_fails_once_with_load_balancer_400, test_400_delete_400_ignored,
                 test_400_delete_502_retried_then_fatal, test_400_delete_401_refresh_fails_fatal,
                 test_400_then_500_one_recreate_two_reads, test_400_twice_with_two_attempts],
}

if __name__ == "__main__":
    sys.exit(run(GROUPS, sys.argv[1:]))
