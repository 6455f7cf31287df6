#!/usr/bin/python3
"""bench_bridge: the bridge's benchmark with same-run ceilings (bench/README.md, issue 11).

Drives the real dfpod and dfbridge on loopback; the measuring side is the C program
bench_bridge (libdfconsumer with a no-op listener; the ceilings). Sections:
  end to end   a pre-loaded backlog (MESSAGESENT ~1.2 KB, and the mix of all 17 types) released
               by the pod in one go once the consumer is synced -> dfbridge (journal off,
               interval, always) -> libdfconsumer: events/s, bridge CPU us/event, VmHWM, VmRSS
  latency      paced release at 1 000 and 20 000 events/s: pod enqueue -> listener start
  replay       a late joiner from gseq 1 over the replay endpoint
  consumers    C (and Python, Node with --langs) dispatch with a raw PUB (bench/consumers)
  ceilings     (a) raw PUB->SUB, (b) libcurl + dfb_json, (c) dfb_transcode, (d) file append
  stalled      a SUB that never reads while events flow: the bridge's RSS
  soak         --soak SECONDS at 20 000 events/s: RSS and open fds over time
  commands     (--only commands) messages.send through the command channel to dfpod: requests/s
               with a window of outstanding requests, the latency the channel adds to a direct
               HTTP create, journal on disk vs memory-only
Every section must count exactly (every gseq once, no gap) or the run fails (exit 1).

Usage: /usr/bin/python3 bench/bench_bridge.py [--build-dir build] [--quick] [--json]
           [--bridge PATH] [--pod PATH] [--bench PATH] [--langs c,python,node]
           [--events N] [--replay-events N] [--soak SECONDS] [--only latency [--repeat K]]
           [--only commands [--commands N] [--window W]]
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import types

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "pylib"))
sys.path.insert(0, os.path.join(HERE, "consumers"))
import dftest  # noqa: E402
import bench_consumers  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def cpu_s(pid):
    """utime + stime of a process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Run:
    """One pod + bridge pair for a section."""

    def __init__(self, a, kind="messagesent", journal="off", replay=False, pod_args=(),
                 retention=False):
        """retention: the journal keeps its default retention (1 GiB); otherwise none
        (maxBytes 0), so that a measured replay is never cut."""
        self.pod = dftest.Pod("--no-history", "--batch-max", "100", "--hold-ms", "1000",
                              "--gen-kind", kind, *pod_args)
        extra = "  heartbeatMillis: 200\n"
        if a.sndhwm is not None:
            extra += "  sndhwm: %d\n" % a.sndhwm
        if journal != "off":
            self.state = os.path.join(dftest.CTX.tmp, "state-%d" % self.pod.port)
            extra += ("  stateDir: %s\n  journal:\n    fsync: %s\n%s"
                      % (self.state, journal, "" if retention else "    maxBytes: 0\n"))
        self.replay = None
        if replay:
            self.replay = "tcp://127.0.0.1:%d" % dftest.free_port()
            extra += "  replay: %s\n" % self.replay
        self.bridge = dftest.Bridge(self.pod, bridge_extra=extra, start=False)
        # The benchmark measures the bridge as deployed: info log, not the tests' debug log.
        with open(self.bridge.cfg_path, "w") as f:
            f.write(self.bridge.config.replace("  logLevel: debug\n", "  logLevel: info\n"))
        self.bridge.replay = self.replay
        self.bridge.start()
        self.pid = self.bridge.proc.pid

    def consumer(self, a, count, lat_file=None, replay=False, idle_ms=30000, fill=False):
        cmd = [a.bench, "consume", "--endpoint", self.bridge.endpoint, "--count", str(count),
               "--idle-ms", str(idle_ms)]
        if replay or fill:
            cmd += ["--replay", self.replay]
        if fill:
            cmd += ["--fill"]
        if lat_file:
            cmd += ["--lat-file", lat_file]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        dftest.CTX.children.append(p)
        return p

    def wait_ready(self, proc, timeout=30):
        """The consumer saw a heartbeat (connected and subscribed) and the bridge holds a
        read at the pod (authenticated, feed created): start-up is over."""
        line = read_line(proc, timeout)
        if line != "ready":
            raise BenchError("consumer not ready (%r): %s" % (line, finish(proc, 1)[1]))
        dftest.wait_until(lambda: self.pod.counter("held") >= 1, "a held read", timeout)

    def release(self, count, kind, **kw):
        body = {"count": count, "seed": 1, "kind": kind}
        body.update(kw)
        return self.pod.admin("POST", "generate", body)

    def stop(self):
        if self.bridge.running():
            self.bridge.stop()
        self.pod.stop()


def read_line(proc, timeout):
    """One stdout line of proc within timeout, else None."""
    out = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0].strip() if out else None


def finish(proc, timeout):
    """(result dict or None, stderr tail) once proc exits."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    lines = [x for x in stdout.splitlines() if x.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), stderr[-600:]


def checked(res, err, what):
    if not res or not res.get("ok"):
        raise BenchError("%s: not exact: %s %s" % (what, res, err))
    return res


# ---- sections -----------------------------------------------------------------------------------
def end_to_end(a, kind, journal, n):
    # The bridge's defaults, bridge.sndhwm 10000 included: a consumer more than that behind
    # loses live messages at the PUB and, with a journal, fills them from the replay endpoint
    # (counted in "filled"; every gseq still exactly once). Journal off has nothing to fill
    # from: a gap there fails the run.
    r = Run(a, kind, journal, replay=journal != "off")
    try:
        c = r.consumer(a, n, fill=journal != "off")
        r.wait_ready(c)
        c0 = cpu_s(r.pid)
        r.release(n, kind, at_once=True)
        res, err = finish(c, n / 2000.0 + 120)
        c1 = cpu_s(r.pid)
        checked(res, err, "end to end %s/%s" % (kind, journal))
        return {"kind": kind, "journal": journal, "events": res["events"],
                "rate": res["rate"], "seconds": res["seconds"], "filled": res["gaps_filled"],
                "cpu_us": round((c1 - c0) * 1e6 / n, 2),
                "hwm_kb": status_kb(r.pid, "VmHWM"), "rss_kb": status_kb(r.pid, "VmRSS")}
    finally:
        r.stop()


def pct(sorted_v, p):
    if not sorted_v:
        return 0
    k = min(len(sorted_v) - 1, max(0, int(round(p / 100.0 * len(sorted_v) + 0.5)) - 1))
    return sorted_v[k]


def latency(a, rate, n, journal="interval"):
    r = Run(a, "messagesent", journal)
    try:
        lat_file = os.path.join(dftest.CTX.tmp, "lat-%d.txt" % rate)
        c = r.consumer(a, n, lat_file=lat_file)
        r.wait_ready(c)
        ans = r.release(n, "messagesent", rate=rate)
        res, err = finish(c, 60)
        checked(res, err, "latency at %d/s" % rate)
        rel = dict(zip(ans["ids"], ans["release_ns"]))
        lats = []
        with open(lat_file) as f:
            for line in f:
                i, t = line.split()
                if i in rel:
                    lats.append((int(t) - rel[i]) / 1e6)
        if len(lats) != n:
            raise BenchError("latency at %d/s: %d of %d ids joined" % (rate, len(lats), n))
        lats.sort()
        return {"rate": rate, "journal": journal, "events": n, "p50_ms": round(pct(lats, 50), 3),
                "p99_ms": round(pct(lats, 99), 3), "p999_ms": round(pct(lats, 99.9), 3),
                "max_ms": round(lats[-1], 3)}
    finally:
        r.stop()


# ---- the command channel (issue 12) -----------------------------------------------------------
def _multipart(fields, boundary="dfbench0b0undary"):
    body = b""
    for name, value in fields:
        body += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                 % (boundary.encode(), name.encode(), value.encode()))
    return body + b"--%s--\r\n" % boundary.encode(), "multipart/form-data; boundary=" + boundary


def commands_bench(a, n, window, journal):
    """messages.send through the command channel to 64 rooms of dfpod, rates unlimited
    (commandsRate/StreamRate 0), bridge.commandsConcurrency 4 (its default). Three measures:
      direct     the same create made by this script over one keep-alive HTTP connection to the
                 pod, one at a time: the pod's own time plus Python's HTTP client
      sequential one request in flight through a DEALER: the channel's latency; added = sequential
                 minus direct, percentile by percentile
      windowed   `window` requests outstanding: requests/s and the latency under load
    journal: the command journal in bridge.stateDir on this machine's disk (fdatasync per begin and
    per done), else memory-only (no stateDir). Every reply must be ok and the pod must hold every
    message exactly once (counted from its messages_posted)."""
    import http.client
    import msgpack
    pod = dftest.Pod("--no-history", "--hold-ms", "1000", "--no-echo-posts")
    rooms = [pod.admin("POST", "rooms", {"name": "bench-%d" % i})["id"] for i in range(64)]
    cmd_ep = "tcp://127.0.0.1:%d" % dftest.free_port()
    extra = ("  commands: %s\n  commandsRate: 0\n  commandsStreamRate: 0\n  commandsQueue: %d\n"
             % (cmd_ep, max(1000, 2 * window)))
    if journal:
        state = os.path.join(dftest.CTX.tmp, "cmd-state-%d" % pod.port)
        extra += "  stateDir: %s\n" % state
    bridge = dftest.Bridge(pod, bridge_extra=extra, start=False)
    with open(bridge.cfg_path, "w") as f:
        f.write(bridge.config.replace("  logLevel: debug\n", "  logLevel: info\n"))
    bridge.start()
    sock = dftest.CTX.zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cmd_ep)
    tag = "j" if journal else "m"

    def req(ident, i):
        return msgpack.packb({"v": 1, "id": ident, "op": "messages.send",
                              "args": {"stream_id": rooms[i % len(rooms)],
                                       "message": "<messageML>bench %s</messageML>" % ident}},
                             use_bin_type=True)

    def recv(timeout_ms=30000):
        if not sock.poll(timeout_ms):
            raise BenchError("commands: no reply within %d ms" % timeout_ms)
        r = msgpack.unpackb(sock.recv(), raw=False)
        return r

    try:
        t_end = time.monotonic() + 20
        while True:  # ready: the channel answers (a bad_request, nothing sent)
            sock.send(msgpack.packb({"v": 1, "id": "ping", "op": "no.such", "args": {}}))
            if sock.poll(500):
                sock.recv()
                break
            if time.monotonic() > t_end or not bridge.running():
                raise BenchError("commands: the channel did not answer")
        k = min(n, 300 if a.quick else 2000)
        # direct HTTP, sequential
        tok = pod.session()
        conn = http.client.HTTPConnection("127.0.0.1", pod.port, timeout=30)
        direct = []
        for i in range(k):
            mark = '{"dfbridge.request":{"type":"org.dfbridge.request","version":"1.0","id":"%032x"}}' % i
            body, ctype = _multipart([("message", "<messageML>bench d%d</messageML>" % i),
                                      ("data", mark), ("version", "")])
            t0 = time.perf_counter()
            conn.request("POST", "/agent/v4/stream/%s/message/create" % rooms[i % len(rooms)], body,
                         dict(tok, **{"Content-Type": ctype}))
            r = conn.getresponse()
            r.read()
            direct.append((time.perf_counter() - t0) * 1000)
            if r.status != 200:
                raise BenchError("commands: direct create answered %d" % r.status)
        conn.close()
        # through the channel, one at a time
        seq = []
        for i in range(k):
            ident = "%s-s-%d" % (tag, i)
            t0 = time.perf_counter()
            sock.send(req(ident, i))
            r = recv()
            seq.append((time.perf_counter() - t0) * 1000)
            if not r.get("ok") or r.get("id") != ident:
                raise BenchError("commands: %s answered %r" % (ident, r.get("error")))
        # through the channel, `window` outstanding
        sent, lat, t_sent = 0, [], {}
        t_start = time.perf_counter()
        while len(lat) < n:
            while sent < n and sent - len(lat) < window:
                ident = "%s-w-%d" % (tag, sent)
                t_sent[ident] = time.perf_counter()
                sock.send(req(ident, sent))
                sent += 1
            r = recv()
            t1 = t_sent.pop(r.get("id"), None)
            if t1 is None or not r.get("ok"):
                raise BenchError("commands: unexpected reply %r %r" % (r.get("id"), r.get("error")))
            lat.append((time.perf_counter() - t1) * 1000)
        elapsed = time.perf_counter() - t_start
        posted = pod.counter("messages_posted")
        if posted != 2 * k + n:
            raise BenchError("commands: the pod holds %d messages, want %d" % (posted, 2 * k + n))
        direct.sort()
        seq.sort()
        lat.sort()
        return {"journal": "disk" if journal else "memory", "requests": n, "window": window,
                "rate": round(n / elapsed), "direct_p50_ms": round(pct(direct, 50), 3),
                "direct_p99_ms": round(pct(direct, 99), 3), "seq_p50_ms": round(pct(seq, 50), 3),
                "seq_p99_ms": round(pct(seq, 99), 3),
                "added_p50_ms": round(pct(seq, 50) - pct(direct, 50), 3),
                "added_p99_ms": round(pct(seq, 99) - pct(direct, 99), 3),
                "window_p50_ms": round(pct(lat, 50), 3), "window_p99_ms": round(pct(lat, 99), 3),
                "sequential": k}
    finally:
        sock.close(linger=0)
        if bridge.running():
            bridge.stop()
        pod.stop()


def commands_line(x):
    return ("commands %-6s %6d req  window %3d: %6d req/s  p50 %7.3f p99 %7.3f ms | one at a time "
            "p50 %6.3f p99 %6.3f ms, direct HTTP p50 %6.3f p99 %6.3f ms, added p50 %6.3f p99 %6.3f ms"
            % (x["journal"], x["requests"], x["window"], x["rate"], x["window_p50_ms"],
               x["window_p99_ms"], x["seq_p50_ms"], x["seq_p99_ms"], x["direct_p50_ms"],
               x["direct_p99_ms"], x["added_p50_ms"], x["added_p99_ms"]))


def replay(a, n):
    r = Run(a, "messagesent", "interval", replay=True)
    try:
        r.release(n, "messagesent", at_once=True)
        deadline = time.monotonic() + n / 2000.0 + 120
        while True:
            # A counter polled (no signal exists for "journaled N"); a busy bridge may leave
            # one info request unanswered: ask again.
            info = dftest.replay_info(r.replay, timeout_ms=2000)
            if info and info["counters"]["journaled"] >= n:
                break
            if time.monotonic() > deadline or not r.bridge.running():
                raise BenchError("replay: the journal did not reach %d events" % n)
            time.sleep(0.2)
        c = r.consumer(a, n, replay=True)
        res, err = finish(c, n / 2000.0 + 120)
        checked(res, err, "replay")
        if res["replayed"] < n:
            raise BenchError("replay: only %d of %d came by replay" % (res["replayed"], n))
        return {"events": n, "rate": res["rate"], "seconds": res["seconds"]}
    finally:
        r.stop()


def consumer_c(a, n, workers=0):
    """The C consumer fed by a C publisher (bench_bridge publish): N pre-encoded 1.2 KB
    MESSAGESENT frames, ceiling (a) on the same frames in the same process first, then sent
    once bench_consumer_c subscribed. Its events/s, its process's CPU us/event (all threads,
    first to last callback), exactness, and the ratio to (a)."""
    epoch = "bench-%d" % os.getpid()
    ev_path = os.path.join(dftest.CTX.tmp, "bench-event.json")
    with open(ev_path, "w", encoding="utf-8") as f:
        json.dump(bench_consumers.sized_event(epoch, int(time.time() * 1000)), f,
                  ensure_ascii=False, separators=(",", ":"))
    pub = subprocess.Popen([a.bench, "publish", "--event", ev_path, "--count", str(n),
                            "--epoch", epoch, "--idle-ms", str(int(n / 1000.0 + 60) * 1000)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    dftest.CTX.children.append(pub)
    what = "consumer c (%s workers)" % (workers or "default")
    line = read_line(pub, n / 20000.0 + 60)  # frames built and (a) measured first
    if not line or not line.startswith("endpoint "):
        raise BenchError("%s: publisher: %r %s" % (what, line, finish(pub, 1)[1]))
    cmd = [a.c_consumer, "--endpoint", line.split()[1], "--count", str(n)]
    if workers:
        cmd += ["--workers", str(workers)]
    c = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dftest.CTX.children.append(c)
    res, err = finish(c, n / 1000.0 + 60)
    pub.stdin.write("done\n")
    pub.stdin.flush()
    pres, perr = finish(pub, 30)
    checked(pres if pub.returncode == 0 else None, perr, what + ": publisher")
    if (not res or c.returncode != 0 or res.get("events") != n or res.get("missing")
            or res.get("repeated") or res.get("gaps") or res.get("lost")
            or res.get("duplicates")):
        raise BenchError("%s: not exact: %s %s" % (what, res, err))
    return {"events": n, "workers": res["workers"], "rate": res["rate"],
            "seconds": res["seconds"], "cpu_us": res["cpu_us"], "bytes": pres["frame_bytes"],
            "zmq_rate": pres["zmq_rate"], "publish_rate": pres["publish_rate"],
            "over_zmq": round(res["rate"] / pres["zmq_rate"], 3)}


def consumers(a, n):
    """C from the C publisher (default workers, then 1 worker); Python and Node (--langs) from
    bench_consumers.py's pyzmq publisher."""
    out = {}
    langs = a.langs.split(",")
    if "c" in langs:
        out["c"] = consumer_c(a, n)
        out["c_workers1"] = consumer_c(a, n, workers=1)
    others = [x for x in langs if x and x != "c"]
    if not others:
        return out
    ns = types.SimpleNamespace(c_consumer=a.c_consumer, c_workers=0, source_dir=SRC,
                               node="/usr/bin/node", count=n)
    payload = bench_consumers.bodies(n, "bench-%d" % os.getpid())
    zctx = zmq.Context()
    try:
        for lang in others:
            res = bench_consumers.run_one(lang, ns, zctx, payload)
            if "error" in res or res.get("events") != n:
                raise BenchError("consumer %s: %s" % (lang, res.get("error", res)))
            out[lang] = {"events": n, "rate": res["rate"], "bytes": len(payload[0]),
                         "publish_rate": round(n / res["publish_s"])}
    finally:
        zctx.destroy(linger=0)
    return out


def ceilings(a, n, fsync):
    """The ceilings, on the same MESSAGESENT batches the end-to-end run reads."""
    pod = dftest.Pod("--no-history", "--batch-max", "100", "--hold-ms", "1000",
                     "--gen-kind", "messagesent")
    try:
        token = pod.session()["sessionToken"]
        feed = pod.create_feed()
        pod.admin("POST", "generate", {"count": n, "seed": 1, "kind": "messagesent",
                                       "at_once": True})
        d = os.path.join(dftest.CTX.tmp, "append")
        os.makedirs(d, exist_ok=True)
        p = subprocess.run([a.bench, "ceilings", "--url", pod.url, "--feed", feed, "--token",
                            token, "--count", str(n), "--dir", d, "--fsync", fsync],
                           capture_output=True, text=True, timeout=n / 1000.0 + 120)
        lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
        return checked(json.loads(lines[-1]) if lines else None, p.stderr[-600:],
                       "ceilings (%s)" % fsync)
    finally:
        pod.stop()


def stalled(a, n):
    """A SUB that connects, takes one heartbeat and never reads again, while n events flow to
    a live consumer: the bridge's RSS before and after."""
    r = Run(a, "messagesent", "interval")
    stall = dftest.sub_socket([r.bridge.endpoint])
    try:
        if not stall.poll(10000):
            raise BenchError("stalled subscriber: no heartbeat")
        stall.recv_multipart()  # subscribed: from now on it never reads
        c = r.consumer(a, n)
        r.wait_ready(c)
        rss0 = status_kb(r.pid, "VmRSS")
        r.release(n, "messagesent", at_once=True)
        res, err = finish(c, n / 2000.0 + 120)
        checked(res, err, "stalled subscriber's companion")
        return {"events": n, "rss_before_kb": rss0, "rss_after_kb": status_kb(r.pid, "VmRSS"),
                "hwm_kb": status_kb(r.pid, "VmHWM")}
    finally:
        stall.close(linger=0)
        r.stop()


def soak(a, seconds, rate=20000, every=5.0):
    # The deployed steady state: the journal's default retention (1 GiB), so its segments
    # (and their in-memory index) come and go instead of piling up for the whole soak.
    r = Run(a, "messagesent", "interval", pod_args=("--rate", str(rate)), retention=True)
    sub = dftest.sub_socket([r.bridge.endpoint])
    got = [0]
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            if sub.poll(200):
                f = sub.recv_multipart()
                if not f[0].startswith(b"_"):
                    got[0] += 1
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    samples = []
    try:
        # Sampling starts once events flow (start-up is not the steady state).
        dftest.wait_until(lambda: got[0] > 0, "soak: a first event", 30)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not r.bridge.running():
                raise BenchError("soak: the bridge exited")
            samples.append((round(time.monotonic() - end + seconds, 1),
                            status_kb(r.pid, "VmRSS"), fd_count(r.pid)))
            time.sleep(every)  # sampling period, not synchronisation
        stop.set()
        t.join(5)
        rss = [s[1] for s in samples]
        fds = [s[2] for s in samples]
        # flat: after the first third (warm-up), RSS grows by < 2 MB and fds not at all
        warm = rss[len(rss) // 3:] or rss
        return {"seconds": seconds, "rate": rate, "received": got[0],
                "rss_first_kb": rss[0], "rss_last_kb": rss[-1], "rss_max_kb": max(rss),
                "fd_first": fds[0], "fd_last": fds[-1], "fd_max": max(fds),
                "flat": max(warm) - warm[0] < 2048 and fds[-1] <= fds[len(fds) // 3],
                "samples": samples}
    finally:
        stop.set()
        sub.close(linger=0)
        r.stop()


# ---- report -------------------------------------------------------------------------------------
def machine():
    model, cores = "?", os.cpu_count()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"cpu": model, "cores": cores, "load": load}


def ratios(res):
    e2e = {(x["kind"], x["journal"]): x for x in res["end_to_end"]}
    out = {}
    for mode, ck in (("off", "interval"), ("interval", "interval"), ("always", "always")):
        x = e2e.get(("messagesent", mode))
        c = res["ceilings"][ck]
        floor = min(c["zmq_rate"], c["fetch_parse_rate"], c["append_rate"]) if mode != "off" \
            else min(c["zmq_rate"], c["fetch_parse_rate"])
        out["e2e_%s_over_min_ceiling" % mode] = round(x["rate"] / floor, 3)
        out["cpu_%s_over_transcode" % mode] = round(x["cpu_us"] / c["transcode_us"], 2)
    out["replay_over_zmq"] = round(res["replay"]["rate"] / res["ceilings"]["interval"]["zmq_rate"],
                                   3)
    if "c" in res["consumers"]:
        out["consumer_c_over_zmq"] = res["consumers"]["c"]["over_zmq"]
    return out


def table(res):
    L = []
    m = res["machine"]
    L.append("machine: %s, %d cores, load average %s (start) / %s (end)"
             % (m["cpu"], m["cores"], m["load"], res["machine_end"]["load"]))
    L.append("")
    L.append("ratios (1.0 = at the ceiling)")
    for k, v in res["ratios"].items():
        L.append("  %-34s %8.3f" % (k, v))
    L.append("")
    L.append("end to end (pod backlog -> dfbridge -> libdfconsumer, no-op listener)")
    L.append("  %-12s %-9s %9s %12s %10s %10s %10s %8s" % ("events", "journal", "N",
                                                           "events/s", "cpu us/ev", "VmHWM MB",
                                                           "VmRSS MB", "filled"))
    for x in res["end_to_end"]:
        L.append("  %-12s %-9s %9d %12.0f %10.2f %10.1f %10.1f %8d"
                 % (x["kind"], x["journal"], x["events"], x["rate"], x["cpu_us"],
                    x["hwm_kb"] / 1024, x["rss_kb"] / 1024, x.get("filled", 0)))
    L.append("  (filled: events the consumer missed live, more than bridge.sndhwm behind, and "
             "took from replay)")
    L.append("")
    L.append("latency (pod release -> listener start), ms")
    L.append("  %-10s %-9s %8s %9s %9s %9s %9s" % ("events/s", "journal", "N", "p50", "p99",
                                                  "p99.9", "max"))
    for x in res["latency"]:
        L.append("  %-10d %-9s %8d %9.3f %9.3f %9.3f %9.3f"
                 % (x["rate"], x.get("journal", "interval"), x["events"], x["p50_ms"],
                    x["p99_ms"], x["p999_ms"], x["max_ms"]))
    L.append("")
    rp = res["replay"]
    L.append("replay (late joiner from gseq 1): %d events, %.0f events/s" % (rp["events"],
                                                                          rp["rate"]))
    L.append("")
    L.append("consumers (raw PUB of pre-encoded 1.2 KB MESSAGESENT, no-op listener; C from a C"
             " publisher, with (a) on the same frames)")
    for lang, x in res["consumers"].items():
        if "cpu_us" in x:
            L.append("  %-11s %9d events %10.0f events/s  %6.2f cpu us/ev  %5.2f x (a) = %.0f/s"
                     "  (sent at %.0f/s)" % ("c, %d wk" % x["workers"], x["events"], x["rate"],
                                             x["cpu_us"], x["over_zmq"], x["zmq_rate"],
                                             x["publish_rate"]))
        else:
            L.append("  %-11s %9d events %10.0f events/s  (pyzmq publisher: sent at %.0f/s)"
                     % (lang, x["events"], x["rate"], x.get("publish_rate", 0)))
    L.append("")
    L.append("ceilings (same MESSAGESENT events, same run)")
    c = res["ceilings"]["interval"]
    L.append("  (a) raw libzmq PUB->SUB, loopback TCP     %12.0f events/s" % c["zmq_rate"])
    L.append("  (b) libcurl keep-alive + dfb_json parse   %12.0f events/s" % c["fetch_parse_rate"])
    L.append("  (c) JSON -> msgpack, one core             %12.3f us/event (%.0f events/s)"
             % (c["transcode_us"], c["transcode_rate"]))
    for ck in ("interval", "always"):
        x = res["ceilings"][ck]
        L.append("  (d) append, fsync %-8s                %12.0f events/s (%d syncs)"
                 % (ck, x["append_rate"], x["append_syncs"]))
    L.append("  frame 2 size: %.0f bytes" % c["frame_bytes"])
    L.append("")
    s = res["stalled"]
    L.append("stalled subscriber: %d events flowed; bridge VmRSS %.1f MB before, %.1f MB after, "
             "VmHWM %.1f MB" % (s["events"], s["rss_before_kb"] / 1024, s["rss_after_kb"] / 1024,
                                s["hwm_kb"] / 1024))
    if "soak" in res:
        k = res["soak"]
        L.append("soak: %d s at %d events/s (%d received): VmRSS first %.1f, last %.1f, max %.1f MB;"
                 " fds first %d, last %d, max %d; %s"
                 % (k["seconds"], k["rate"], k["received"], k["rss_first_kb"] / 1024,
                    k["rss_last_kb"] / 1024, k["rss_max_kb"] / 1024, k["fd_first"], k["fd_last"],
                    k["fd_max"], "flat" if k["flat"] else "NOT flat"))
    return "\n".join(L)


def markdown(res):
    """The README's Performance table: one row per figure (ratios first), one value column."""
    rows = [("**ratios** (1.0 = at the ceiling)", "")]
    names = {"off": "journal off", "interval": "journal interval", "always": "journal always"}
    for mode in ("off", "interval", "always"):
        rows.append(("end to end ÷ min ceiling, MESSAGESENT, %s" % names[mode],
                     "%.2f" % res["ratios"]["e2e_%s_over_min_ceiling" % mode]))
    for mode in ("off", "interval", "always"):
        rows.append(("bridge CPU/event ÷ (c), %s" % names[mode],
                     "%.1f" % res["ratios"]["cpu_%s_over_transcode" % mode]))
    rows.append(("replay ÷ (a)", "%.2f" % res["ratios"]["replay_over_zmq"]))
    rows.append(("**end to end** (events/s · bridge CPU µs/event · VmHWM MB)", ""))
    for x in res["end_to_end"]:
        rows.append(("%s, %s" % ("MESSAGESENT 1.2 KB" if x["kind"] == "messagesent"
                                 else "mix of 17 types", names[x["journal"]]),
                     "%.0f · %.1f · %.1f" % (x["rate"], x["cpu_us"], x["hwm_kb"] / 1024)))
    rows.append(("**latency** pod → listener, ms (p50 · p99 · p99.9 · max)", ""))
    for x in res["latency"]:
        rows.append(("at %d events/s, %s" % (x["rate"], names[x.get("journal", "interval")]),
                     "%.2f · %.2f · %.2f · %.2f"
                     % (x["p50_ms"], x["p99_ms"], x["p999_ms"], x["max_ms"])))
    rows.append(("**replay**, late joiner from gseq 1 (%d events), events/s"
                 % res["replay"]["events"], "%.0f" % res["replay"]["rate"]))
    if "consumer_c_over_zmq" in res["ratios"]:
        rows.insert(rows.index(("**end to end** (events/s · bridge CPU µs/event · VmHWM MB)", "")),
                    ("C consumer dispatch ÷ (a) on the same frames",
                     "%.2f" % res["ratios"]["consumer_c_over_zmq"]))
    for lang, x in res["consumers"].items():
        if "cpu_us" in x:
            rows.append(("**consumer** dispatch, C, %d worker%s, no-op listener, C publisher: "
                         "events/s · CPU µs/event · (a) same frames, events/s"
                         % (x["workers"], "" if x["workers"] == 1 else "s"),
                         "%.0f · %.2f · %.0f" % (x["rate"], x["cpu_us"], x["zmq_rate"])))
        else:
            rows.append(("**consumer** dispatch, %s, no-op listener, pyzmq publisher, events/s"
                         % lang, "%.0f" % x["rate"]))
    c, ca = res["ceilings"]["interval"], res["ceilings"]["always"]
    rows.append(("**ceilings** (same run, best of %d)" % c.get("tries", 1), ""))
    rows.append(("(a) raw libzmq PUB→SUB, events/s", "%.0f" % c["zmq_rate"]))
    rows.append(("(b) libcurl keep-alive + dfb_json parse, events/s", "%.0f"
                 % c["fetch_parse_rate"]))
    rows.append(("(c) JSON → msgpack, one core, µs/event", "%.2f" % c["transcode_us"]))
    rows.append(("(d) file append, fsync interval · always, events/s", "%.0f · %.0f"
                 % (c["append_rate"], ca["append_rate"])))
    s = res["stalled"]
    rows.append(("**stalled subscriber** (%d events past it): bridge VmRSS before → after, MB"
                 % s["events"], "%.1f → %.1f" % (s["rss_before_kb"] / 1024,
                                                 s["rss_after_kb"] / 1024)))
    if "soak" in res:
        k = res["soak"]
        rows.append(("**soak** %d s at %d/s: VmRSS first · last · max MB, fds first · last"
                     % (k["seconds"], k["rate"]), "%.1f · %.1f · %.1f, %d · %d (%s)"
                     % (k["rss_first_kb"] / 1024, k["rss_last_kb"] / 1024,
                        k["rss_max_kb"] / 1024, k["fd_first"], k["fd_last"],
                        "flat" if k["flat"] else "not flat")))
    return "\n".join("| %s | %s |" % r for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(SRC, "build"))
    ap.add_argument("--bridge", help="dfbridge binary (default: BUILD/bridge/dfbridge)")
    ap.add_argument("--pod", help="dfpod binary (default: BUILD/tests/dfpod/dfpod)")
    ap.add_argument("--bench", help="bench_bridge binary (default: BUILD/bench/bench_bridge)")
    ap.add_argument("--c-consumer", help="default: BUILD/bench/consumers/bench_consumer_c")
    ap.add_argument("--langs", default="c", help="consumers: c,python,node")
    ap.add_argument("--quick", action="store_true", help="small N: the smoke test")
    ap.add_argument("--json", action="store_true", help="print the JSON document, not the table")
    ap.add_argument("--json-file", help="also write the JSON document to this file")
    ap.add_argument("--markdown", metavar="JSON_FILE",
                    help="print the README's table rows from a saved --json-file, then exit")
    ap.add_argument("--events", type=int, help="end-to-end backlog (default 100000, quick 2000)")
    ap.add_argument("--replay-events", type=int, help="default 1000000, quick 3000")
    ap.add_argument("--soak", type=int, default=0, metavar="SECONDS")
    ap.add_argument("--sndhwm", type=int, metavar="N",
                    help="the bridge's bridge.sndhwm in every section (default: its default)")
    ap.add_argument("--commands", type=int, help="--only commands: requests (default 20000, quick 500)")
    ap.add_argument("--window", type=int, default=64, help="--only commands: requests outstanding")
    ap.add_argument("--only", choices=["latency", "soak", "commands"],
                    help="run this section alone (latency: --repeat times; soak: --soak seconds)")
    ap.add_argument("--repeat", type=int, default=1, help="with --only: runs of each row")
    a = ap.parse_args()
    if a.markdown:
        with open(a.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    b = a.build_dir
    a.bridge = a.bridge or os.path.join(b, "bridge", "dfbridge")
    a.pod = a.pod or os.path.join(b, "tests", "dfpod", "dfpod")
    a.bench = a.bench or os.path.join(b, "bench", "bench_bridge")
    a.c_consumer = a.c_consumer or os.path.join(b, "bench", "consumers", "bench_consumer_c")
    for p in ((a.bridge, a.pod) if a.only == "commands" else (a.bridge, a.pod, a.bench, a.c_consumer)):
        if not os.access(p, os.X_OK):
            print("bench_bridge: %s is missing (build it: cmake --build BUILD --target dfbridge "
                  "dfpod bench_bridge bench_consumer_c)" % p, file=sys.stderr)
            return 2
    n = a.events or (2000 if a.quick else 100000)
    nr = a.replay_events or (3000 if a.quick else 1000000)
    # The two rates with the default journal; and 1 000/s without the journal, which
    # shows what the journal's fsync does to the tail.
    lat = [(1000, 500 if a.quick else 10000, "interval"),
           (20000, 2000 if a.quick else 100000, "interval"),
           (1000, 500 if a.quick else 10000, "off")]
    def alone(body):
        """An --only run: body() in one dftest context; its exit status, 1 on a failure."""
        ctx = dftest.setup(a.pod, a.bridge, "bench-bridge-")
        try:
            return body()
        except (BenchError, dftest.Failure) as e:
            print("bench_bridge: FAILED: %s" % e, file=sys.stderr)
            return 1
        finally:
            ctx.cleanup()

    def soak_alone():
        x = soak(a, a.soak or 600)
        x["load"] = machine()["load"]
        if a.json_file:
            with open(a.json_file, "w") as f:
                json.dump({"soak": x}, f, indent=1)
        print(json.dumps(x) if a.json else
              "soak: %d s at %d events/s (%d received): VmRSS first %.1f, last %.1f, max %.1f MB;"
              " fds first %d, last %d, max %d; %s (load %s)"
              % (x["seconds"], x["rate"], x["received"], x["rss_first_kb"] / 1024,
                 x["rss_last_kb"] / 1024, x["rss_max_kb"] / 1024, x["fd_first"], x["fd_last"],
                 x["fd_max"], "flat" if x["flat"] else "NOT flat", x["load"]))
        return 0 if x["flat"] else 1

    def commands_alone():
        nreq = a.commands or (500 if a.quick else 20000)
        for k in range(max(1, a.repeat)):
            for journal in (True, False):
                x = commands_bench(a, nreq, a.window, journal)
                x["load"] = machine()["load"]
                print(json.dumps(x) if a.json else commands_line(x) + "  (load %s)" % x["load"],
                      flush=True)
        return 0

    def latency_alone():
        for k in range(max(1, a.repeat)):
            for rate, count, journal in lat:
                x = latency(a, rate, count, journal)
                x["load"] = machine()["load"]
                print(json.dumps(x) if a.json else
                      "%-6d %-9s %7d  p50 %7.3f  p99 %7.3f  p99.9 %7.3f  max %7.3f ms  (load %s)"
                      % (rate, journal, count, x["p50_ms"], x["p99_ms"], x["p999_ms"],
                         x["max_ms"], x["load"]), flush=True)
        return 0

    if a.only == "soak":  # the soak alone (it takes --soak seconds, 600 if not given)
        return alone(soak_alone)
    if a.only == "commands":  # the command channel, journal on disk and memory-only
        return alone(commands_alone)
    if a.only == "latency":  # the latency rows alone, repeated: the tail is noisy
        return alone(latency_alone)
    nc = 2000 if a.quick else 200000
    ns = 2000 if a.quick else 200000

    ctx = dftest.setup(a.pod, a.bridge, "bench-bridge-")
    res = {"machine": machine(), "quick": a.quick, "bridge": a.bridge}
    ok = True
    t0 = time.monotonic()
    try:
        res["ceilings"] = {}
        for fs in ("interval", "always"):
            # A ceiling is the best the machine can do: the best of several tries (the
            # machine is shared), each counted exactly.
            tries = []
            for k in range(1 if a.quick else 3):
                log("ceilings (%s), try %d" % (fs, k + 1))
                tries.append(ceilings(a, n, fs))
            best = dict(tries[0])
            for t in tries[1:]:
                for key in ("fetch_parse_rate", "transcode_rate", "zmq_rate", "append_rate"):
                    best[key] = max(best[key], t[key])
                best["transcode_us"] = min(best["transcode_us"], t["transcode_us"])
            best["tries"] = len(tries)
            res["ceilings"][fs] = best
        res["end_to_end"] = []
        for kind in ("messagesent", "mix"):
            for journal in ("off", "interval", "always"):
                log("end to end %s, journal %s, %d events" % (kind, journal, n))
                res["end_to_end"].append(end_to_end(a, kind, journal, n))
        res["latency"] = []
        for rate, count, journal in lat:
            log("latency at %d events/s, %d events, journal %s" % (rate, count, journal))
            res["latency"].append(latency(a, rate, count, journal))
        log("replay of %d events" % nr)
        res["replay"] = replay(a, nr)
        log("consumers (%s), %d events" % (a.langs, nc))
        res["consumers"] = consumers(a, nc)
        log("stalled subscriber, %d events" % ns)
        res["stalled"] = stalled(a, ns)
        if a.soak:
            log("soak, %d s" % a.soak)
            res["soak"] = soak(a, a.soak)
        res["ratios"] = ratios(res)
    except (BenchError, dftest.Failure) as e:
        ok = False
        res["error"] = str(e)
        print("bench_bridge: FAILED: %s" % e, file=sys.stderr)
    finally:
        ctx.cleanup()
    res["machine_end"] = machine()
    res["wall_s"] = round(time.monotonic() - t0, 1)
    if a.json_file:
        with open(a.json_file, "w") as f:
            json.dump(res, f, indent=1)
    if a.json:
        print(json.dumps(res, indent=1))
    elif ok:
        print(table(res))
        print("\n(%.0f s; every section counted exactly)" % res["wall_s"])
    if a.quick:
        print("smoke: %s" % ("every section ran and counted exactly" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
