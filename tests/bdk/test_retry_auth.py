#!/usr/bin/python3
"""Retry and authentication counterparts of the BDK tests (strategy_test.py, asyncio_test.py,
Resilience4jRetryWithRecoveryTest, auth_session_test.py, bot_authenticator_*_test.py): the Java
BDK's backoff measured on the pod's call log, unlimited datafeed retries by default, the global
retry for authentication, a 401 on login is fatal, simplified key delivery, certificate
authentication over mutual TLS, TLS verification with a private CA, the User-Agent.
Groups: retry, auth.
"""
import json
import sys

from bdkfw import (EXIT_AUTH, EXIT_EXHAUSTED, EXIT_FATAL, FAST_RETRY, check, eq, make_pki,
                   mk_bridge, mk_pod, mk_sub, run, summary, wait_count, wait_until)


def steady(live, pod, **kw):
    b = mk_bridge(live, pod, **kw)
    s = mk_sub(live, b)
    s.sync(pod)
    return b, s


# ---- retry -------------------------------------------------------------------------------------
def test_backoff_follows_java_formula(live):
    # waits: initial, then min(previous x multiplier, max): 200, 400, 500, 500 ms
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    pod.faults({"endpoint": "read", "action": "status", "status": 503, "count": 4})
    df = ("datafeed:\n  retry:\n    maxAttempts: 6\n    initialIntervalMillis: 200\n"
          "    multiplier: 2\n    maxIntervalMillis: 500\n")
    b, s = steady(live, pod, datafeed=df)
    rs = pod.calls("read")
    eq([r["status"] for r in rs[:5]], [503, 503, 503, 503, 200], "reads")
    gaps = [b_["ms"] - a["ms"] for a, b_ in zip(rs, rs[1:5])]
    for got, want in zip(gaps, [200, 400, 500, 500]):
        check(want - 5 <= got <= want + 600, "backoff gaps %s, want about 200 400 500 500" % gaps)


def test_datafeed_retry_unlimited_by_default(live):
    # symphony-bdk-java#464: with no datafeed.retry block, maxAttempts is -1 (unlimited) and the
    # waits 500 ms, x2; the global retry (2 attempts here) is not used for the datafeed
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    pod.faults({"endpoint": "read", "action": "status", "status": 500, "count": 3})
    b, s = steady(live, pod, datafeed="datafeed:\n  version: v2\n")
    rs = pod.calls("read")
    eq([r["status"] for r in rs[:4]], [500, 500, 500, 200], "reads")
    gaps = [y["ms"] - x["ms"] for x, y in zip(rs, rs[1:4])]
    for got, want in zip(gaps, [500, 1000, 2000]):
        check(want - 5 <= got <= want + 800, "default backoff gaps %s, want 500 1000 2000" % gaps)


def test_datafeed_retry_minus_one_is_unlimited(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.create_feed()
    pod.faults({"endpoint": "read", "action": "status", "status": 500, "count": 12})
    df = "datafeed:\n  retry:\n    maxAttempts: -1\n" + FAST_RETRY
    b, s = steady(live, pod, datafeed=df)
    eq([r["status"] for r in pod.calls("read")[:13]], [500] * 12 + [200], "reads")


def test_datafeed_retry_exhausted_exits_with_reason(live):
    pod = mk_pod(live)
    pod.create_feed()
    pod.faults({"endpoint": "read", "action": "status", "status": 500, "count": 9})
    df = "datafeed:\n  retry:\n    maxAttempts: 3\n" + FAST_RETRY
    b = mk_bridge(live, pod, datafeed=df)
    b.expect_exit(EXIT_EXHAUSTED, "read", "3 attempts|attempts")
    eq(len(pod.calls("read")), 3, "reads")


def test_auth_uses_global_retry(live):
    # authentication_retry: 5xx, 429 and network errors use the global retry (here 3 attempts),
    # whatever datafeed.retry says (1 attempt)
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "auth", "action": "status", "status": 500},
               {"endpoint": "auth", "action": "status", "status": 429})
    df = "datafeed:\n  retry:\n    maxAttempts: 1\n" + FAST_RETRY
    rt = "retry:\n  maxAttempts: 3\n" + FAST_RETRY.replace("    ", "  ")
    b, s = steady(live, pod, datafeed=df, retry=rt)
    eq([c["status"] for c in pod.calls("auth")], [500, 429, 200], "logins")


def test_auth_retry_exhausted(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "auth", "action": "status", "status": 503, "count": 9})
    b = mk_bridge(live, pod)
    # README: status 3 = retries exhausted, on any call (authentication included)
    b.expect_exit(EXIT_EXHAUSTED, "auth", "attempt", "503")
    eq([c["status"] for c in pod.calls("auth")], [503, 503], "logins")


def test_auth_network_error_retried(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "auth", "action": "truncate"})
    rt = "retry:\n  maxAttempts: 3\n" + FAST_RETRY.replace("    ", "  ")
    b, s = steady(live, pod, retry=rt)
    eq([c.get("fault") for c in pod.calls("auth")][:2], ["truncate", None], "logins")


def test_auth_401_not_retried(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "auth", "action": "status", "status": 401})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq([c["status"] for c in pod.calls("auth")], [401], "logins")


def test_auth_404_not_retried(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "auth", "action": "status", "status": 404})
    b = mk_bridge(live, pod)
    rc = b.wait_exit()
    check(rc not in (0, EXIT_EXHAUSTED), "exit status %d after a 404 on login" % rc)
    eq([c["status"] for c in pod.calls("auth")], [404], "logins")


def test_relay_401_not_retried(live):
    pod = mk_pod(live)
    pod.faults({"endpoint": "relay", "action": "status", "status": 401})
    b = mk_bridge(live, pod)
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq([c["status"] for c in pod.calls("relay")], [401], "key manager logins")


def test_unknown_service_account_refused(live):
    pod = mk_pod(live)
    b = mk_bridge(live, pod, username="someone-else")
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat")
    eq([c["status"] for c in pod.calls("auth")], [401], "logins")


def test_refresh_on_401_from_list_then_success(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "list", "action": "expire_token"})
    b, s = steady(live, pod)
    eq([c["status"] for c in pod.calls("list")], [401, 200], "list calls")
    eq(len(pod.calls("auth")), 2, "logins")
    eq(len(pod.calls("relay")), 2, "key manager logins")


def test_refresh_on_401_from_create_then_success(live):
    pod = mk_pod(live, "--hold-ms", "300")
    pod.faults({"endpoint": "create", "action": "expire_token"})
    b, s = steady(live, pod)
    eq([c["status"] for c in pod.calls("create")], [401, 201], "create calls")
    eq(pod.counter("feeds_created"), 1, "feeds created")


# ---- auth ----------------------------------------------------------------------------------------
def test_rsa_jwt_login_and_headers(live):
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod)
    eq(pod.counter("auth_ok"), 2, "JWTs accepted (login, relay)")
    eq(len(pod.calls("sessioninfo")), 1, "sessioninfo calls")
    login = json.loads(pod.calls("auth")[0]["body"])
    eq(sorted(login), ["token"], "login body keys")
    rd = pod.calls("read")[0]
    h = {k.lower(): v for k, v in (rd.get("headers") or {}).items()}
    eq(h.get("sessiontoken"), "<redacted>", "sessionToken header sent")
    eq(h.get("keymanagertoken"), "<redacted>", "keyManagerToken header sent")
    check(h.get("user-agent", "").lower().startswith("dfbridge/"),
          "User-Agent names the bridge and its version: %r" % h.get("user-agent"))


def test_skd_no_key_manager_token(live):
    pod = mk_pod(live, "--hold-ms", "300", "--skd")
    b, s = steady(live, pod)
    eq(pod.calls("relay"), [], "key manager logins with simplified key delivery")
    eq(len(pod.calls("agentinfo")), 1, "agent version asked")
    h = {k.lower(): v for k, v in (pod.calls("read")[0].get("headers") or {}).items()}
    eq(h.get("keymanagertoken", ""), "", "keyManagerToken empty or absent")


def test_skd_old_agent_uses_key_manager(live):
    pod = mk_pod(live, "--hold-ms", "300", "--skd", "--agent-version", "Agent-24.6.2")
    b, s = steady(live, pod)
    eq(len(pod.calls("relay")), 1, "key manager logins with an agent before 24.12")


def test_skd_claim_missing_uses_key_manager(live):
    pod = mk_pod(live, "--hold-ms", "300")
    b, s = steady(live, pod)
    eq(len(pod.calls("relay")), 1, "key manager logins without the claim")
    eq(pod.calls("agentinfo"), [], "no agent version asked without the claim")


def _tls_pod(live, *args, client=False, username="my-bot"):
    p = make_pki()
    tls = {"ca": p["ca"]}
    if client:
        tls.update(client_cert=p["client_cert"], client_key=p["client_key"])
    extra = ["--tls-cert", p["cert"], "--tls-key", p["key"]]
    if client:
        extra += ["--tls-client-ca", p["ca"]]
    return p, mk_pod(live, "--hold-ms", "300", *extra, *args, tls=tls, username=username)


def test_tls_private_ca_trust_store(live):
    p, pod = _tls_pod(live)
    b, s = steady(live, pod, scheme="https", extra="ssl:\n  trustStore:\n    path: %s\n" % p["ca"])
    eq(pod.counter("auth_ok"), 2, "logins over TLS")


def test_tls_verification_on_by_default(live):
    p, pod = _tls_pod(live)
    b = mk_bridge(live, pod, scheme="https")
    rc = b.wait_exit(30)
    check(rc != 0, "exit status %d with an unknown CA" % rc)
    check(any("certif" in l.lower() or "tls" in l.lower() or "ssl" in l.lower()
              for l in b.errors()), "the reason names TLS/certificates: %r" % b.errors())
    eq(pod.counter("auth_ok"), 0, "no login over an unverified connection")


def test_certificate_auth_mutual_tls(live):
    p, pod = _tls_pod(live, client=True)
    bot = "  certificate:\n    path: %s\n" % p["bot"]
    b, s = steady(live, pod, scheme="https", bot=bot,
                  extra="ssl:\n  trustStore:\n    path: %s\n" % p["ca"])
    eq([c["status"] for c in pod.calls("sessionauth")], [200], "session cert auth")
    eq([c["status"] for c in pod.calls("keyauth")], [200], "key manager cert auth")
    eq(pod.calls("auth") + pod.calls("relay"), [], "no RSA login")


def test_certificate_auth_refused(live):
    p, pod = _tls_pod(live, client=True, username="other-bot")
    bot = "  certificate:\n    path: %s\n" % p["bot"]
    b = mk_bridge(live, pod, scheme="https", bot=bot, username="other-bot",
                  extra="ssl:\n  trustStore:\n    path: %s\n" % p["ca"])
    b.expect_exit(EXIT_AUTH, "401|unauthori|authenticat|certif")
    eq([c["status"] for c in pod.calls("sessionauth")], [401], "session cert auth")


GROUPS = {
    "retry": [test_backoff_follows_java_formula, test_datafeed_retry_unlimited_by_default,
              test_datafeed_retry_minus_one_is_unlimited,
              test_datafeed_retry_exhausted_exits_with_reason, test_auth_uses_global_retry,
              test_auth_retry_exhausted, test_auth_network_error_retried, test_auth_401_not_retried,
              test_auth_404_not_retried, test_relay_401_not_retried,
              test_unknown_service_account_refused, test_refresh_on_401_from_list_then_success,
              test_refresh_on_401_from_create_then_success],
    "auth": [test_rsa_jwt_login_and_headers, test_skd_no_key_manager_token,
             test_skd_old_agent_uses_key_manager, test_skd_claim_missing_uses_key_manager,
             test_tls_private_ca_trust_store, test_tls_verification_on_by_default,
             test_certificate_auth_mutual_tls, test_certificate_auth_refused],
}

if __name__ == "__main__":
    sys.exit(run(GROUPS, sys.argv[1:]))
