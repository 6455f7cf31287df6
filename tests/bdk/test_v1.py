#!/usr/bin/python3
"""Datafeed v1 counterparts of the BDK tests (DatafeedLoopV1Test, OnDiskDatafeedIdRepositoryTest,
datafeed_loop_v1_test.py): create/read, 204 on idle, the datafeed.id file (<id>@<agent base URL>)
in datafeed.idFilePath (a folder or a file), reuse after restart, rewrite on recreate.
"""
import os
import sys
import tempfile

import bdkfw
from bdkfw import (EXIT_AUTH, EXIT_EXHAUSTED, EXIT_FATAL, FAST_RETRY, auth_ok_then, check, eq, event, mk_bridge, mk_pod,
                   mk_sub, run, summary, wait_count, wait_until)


def df1(path=None, attempts=2):
    s = "datafeed:\n  version: v1\n"
    if path is not None:
        s += "  idFilePath: %s\n" % path
    return s + "  retry:\n    maxAttempts: %d\n" % attempts + FAST_RETRY


def tmpdir():
    return tempfile.mkdtemp(dir=bdkfw.CTX.tmp)


def read_file(p):
    with open(p) as f:
        return f.read().strip()


def write_file(p, text):
    with open(p, "w") as f:
        f.write(text)


def started(live, pod, path):
    b = mk_bridge(live, pod, datafeed=df1(path))
    s = mk_sub(live, b)
    s.sync(pod)
    return b, s


def test_v1_start_creates_and_writes_id_file(live):
    pod = mk_pod(live, "--hold-ms", "300")
    d = tmpdir()
    b, s = started(live, pod, d)
    eq([c["endpoint"] for c in pod.calls("v1create|v1read")][:2], ["v1create", "v1read"], "v1 calls")
    feed = pod.calls("v1read")[0]["feed"]
    eq(read_file(os.path.join(d, "datafeed.id")), "%s@%s" % (feed, pod.url), "datafeed.id")
    pod.events([event(1), event(2)])
    s.wait_ids(["ev-1", "ev-2"])
    b.stop()
    # restart: the id is reused, no new feed (testDatafeedIdIsReused)
    b2, s2 = started(live, pod, d)
    eq(len(pod.calls("v1create")), 1, "v1 creates after a restart")
    eq({c["feed"] for c in pod.calls("v1read")}, {feed}, "v1 reads")


def test_v1_reuses_id_from_file_path(live):
    pod = mk_pod(live, "--hold-ms", "300")
    fid = pod.create_v1_feed()
    p = os.path.join(tmpdir(), "custom.id")
    write_file(p, "%s@%s\n" % (fid, pod.url))
    b, s = started(live, pod, p)
    eq(pod.calls("v1create"), [], "v1 creates")
    eq(pod.calls("v1read")[0]["feed"], fid, "first v1 read")


def test_v1_id_file_with_agent_suffix_only_text_before_at_counts(live):
    pod = mk_pod(live, "--hold-ms", "300")
    fid = pod.create_v1_feed()
    d = tmpdir()
    write_file(os.path.join(d, "datafeed.id"), "%s@https://agent-lb:7443/path/agent" % fid)
    b, s = started(live, pod, d)
    eq(pod.calls("v1create"), [], "v1 creates")
    eq(pod.calls("v1read")[0]["feed"], fid, "first v1 read")


def _creates_with_file(live, content):
    pod = mk_pod(live, "--hold-ms", "300")
    d = tmpdir()
    if content is not None:
        write_file(os.path.join(d, "datafeed.id"), content)
    b, s = started(live, pod, d)
    eq(len(pod.calls("v1create")), 1, "v1 creates (file %r)" % content)
    feed = pod.calls("v1read")[0]["feed"]
    eq(read_file(os.path.join(d, "datafeed.id")), "%s@%s" % (feed, pod.url), "datafeed.id rewritten")


def test_v1_missing_empty_or_malformed_file_means_create(live):
    for content in (None, "", "8e7c8672-220", "@http://x"):
        _creates_with_file(live, content)


def test_v1_unknown_path_means_create(live):
    pod = mk_pod(live, "--hold-ms", "300")
    p = os.path.join(tmpdir(), "unknown_path")
    b, s = started(live, pod, p)
    eq(len(pod.calls("v1create")), 1, "v1 creates")


def test_v1_stale_id_recreated_and_file_rewritten(live):
    pod = mk_pod(live, "--hold-ms", "300")
    d = tmpdir()
    write_file(os.path.join(d, "datafeed.id"), "persisted-id@%s" % pod.url)
    b, s = started(live, pod, d)
    calls = pod.calls("v1create|v1read")
    eq([(c["endpoint"], c["status"]) for c in calls[:3]],
       [("v1read", 400), ("v1create", 200), ("v1read", 200)], "v1 calls")
    eq(calls[0]["feed"], "persisted-id", "first read")
    new = calls[2]["feed"]
    eq(read_file(os.path.join(d, "datafeed.id")), "%s@%s" % (new, pod.url), "datafeed.id rewritten")


def test_v1_recreate_error_is_fatal(live):
    pod = mk_pod(live, "--hold-ms", "300")
    d = tmpdir()
    write_file(os.path.join(d, "datafeed.id"), "persisted-id@%s" % pod.url)
    pod.faults({"endpoint": "v1create", "action": "status", "status": 404})
    b = mk_bridge(live, pod, datafeed=df1(d))
    b.expect_exit(EXIT_FATAL, "v1|create", "404")
    eq([c["status"] for c in pod.calls("v1read")], [400], "v1 reads")
    eq([c["status"] for c in pod.calls("v1create")], [404], "v1 creates")


def test_v1_create_400_not_retried(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "v1create", "action": "status", "status": 400})
    b = mk_bridge(live, pod, datafeed=df1(tmpdir()))
    b.expect_exit(EXIT_FATAL, "create", "400")
    eq([c["status"] for c in pod.calls("v1create")], [400], "v1 creates")


def test_v1_create_401_twice_refresh_ok_then_attempts_run_out(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "v1create", "action": "status", "status": 401, "count": 2})
    b = mk_bridge(live, pod, datafeed=df1(tmpdir()))
    b.expect_exit(EXIT_EXHAUSTED, "create", "attempt")
    eq([c["status"] for c in pod.calls("v1create")], [401, 401], "v1 creates")
    check(len(pod.calls("auth")) >= 2, "a refresh after the 401")


def test_v1_create_401_refresh_fails_fatal(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "v1create", "action": "status", "status": 401},
               *auth_ok_then({"endpoint": "auth", "action": "status", "status": 401}))
    b = mk_bridge(live, pod, datafeed=df1(tmpdir()))
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq([c["status"] for c in pod.calls("v1create")], [401], "v1 creates")


def test_v1_read_401_refresh_fails_fatal(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "v1read", "action": "status", "status": 401},
               *auth_ok_then({"endpoint": "auth", "action": "status", "status": 401}))
    b = mk_bridge(live, pod, datafeed=df1(tmpdir()))
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq([c["status"] for c in pod.calls("v1read")], [401], "v1 reads")


def test_v1_read_timeout_retried_then_fatal(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "v1read", "action": "slow", "delay_ms": 2500, "count": 2})
    b = mk_bridge(live, pod, datafeed=df1(tmpdir()), read_timeout_ms=1000)
    b.expect_exit(EXIT_EXHAUSTED, "read", "attempt")
    wait_count(pod, "v1read", 2)


def test_v1_read_400_twice_two_attempts(live):
    # startTestWithRetryClientRead: create, read 400, create, read 400, create -> raised
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "v1read", "action": "status", "status": 400, "count": 5})
    b = mk_bridge(live, pod, datafeed=df1(tmpdir()))
    b.expect_exit(EXIT_EXHAUSTED, "read|creat", "attempt")
    eq(len(pod.calls("v1read")), 2, "v1 reads")
    check(len(pod.calls("v1create")) in (2, 3), "v1 creates: %s" % summary(pod.calls("v1create")))


def test_v1_idle_204_null_and_empty_bodies(live):
    pod = mk_pod(live, "--hold-ms", "200")
    b, s = started(live, pod, tmpdir())
    g0 = s.last_probe_gseq
    wait_until(lambda: [c for c in pod.calls("v1read") if c["status"] == 204], "an idle 204")
    pod.faults({"endpoint": "v1read", "action": "status", "status": 200, "body": "null"},
               {"endpoint": "v1read", "action": "status", "status": 200, "body": []})
    wait_until(lambda: len([c for c in pod.calls("v1read") if c.get("fault")]) == 2, "faults taken")
    p = s.sync(pod)
    eq(p[1]["gseq"], g0 + 1, "no message for null or empty v1 bodies")
    eq(s.got, [], "messages other than probes")
    check(b.running(), "dfbridge running")


GROUPS = {
    "v1": [test_v1_start_creates_and_writes_id_file, test_v1_reuses_id_from_file_path,
           test_v1_id_file_with_agent_suffix_only_text_before_at_counts,
           test_v1_missing_empty_or_malformed_file_means_create, test_v1_unknown_path_means_create,
           test_v1_stale_id_recreated_and_file_rewritten, test_v1_recreate_error_is_fatal,
           test_v1_create_400_not_retried, test_v1_create_401_twice_refresh_ok_then_attempts_run_out,
           test_v1_create_401_refresh_fails_fatal, test_v1_read_401_refresh_fails_fatal,
           test_v1_read_timeout_retried_then_fatal, test_v1_read_400_twice_two_attempts,
           test_v1_idle_204_null_and_empty_bodies],
}

if __name__ == "__main__":
    sys.exit(run(GROUPS, sys.argv[1:]))
