#!/usr/bin/python3
"""compose_test: docker/compose.yaml run for real (ctest compose_deploy, label deploy).

Starts its own dockerd in a temp dir (--bridge=none --iptables=false: no container network can
exist), imports the debootstrap'd Debian 12 base (scripts/debian-base.sh) as the offline base image,
builds every target of docker/Dockerfile from it, and runs the SHIPPED compose file plus
compose.test.yaml (network_mode: host for every service) with loopback endpoints on free ports,
two C workers, two Python workers and two repliers (the command channel). Then:
  - the compose `keys` service made the bot key, the pod and the bridge turn healthy, the workers
    start only after (depends_on: service_healthy) and turn healthy;
  - once each worker has seen the bridge's epoch (its "resuming after gseq 0" log line), the pod
    generates N events; every C worker's printer logs each event not initiated by the bot exactly
    once (its log line carries the event id), every Python worker (the BDK documentation's
    listener) each MESSAGESENT not from the bot exactly once (by message id): exact sets, no
    duplicate, nothing else;
  - the two repliers (the Python BDK's getting-started bot, same listener: the same request ids)
    both get every MESSAGESENT and send its reply; the bridge posts it once: the pod's
    /admin/messages holds exactly one "Hello, <display name>!" per MESSAGESENT not from the bot,
    in its stream, and nothing else; the bridge counts 2 requests per reply, all ok; the pod's
    echo of each post (a MESSAGESENT from the bot) is published but handled by no worker;
  - /healthz and /readyz answer 200 (the bridge's healthcheck reads /healthz), /metrics counts
    exactly N events + the echoes of the replies published over the 17 topics;
  - the bridge's journal is on its volume; `docker-compose stop bridge` ends it with SIGTERM,
    exit 0 and "stopped by SIGTERM"; then every worker's healthcheck fails ("not linked");
  - no docker network was created;
then `docker-compose down -v`, dockerd stopped (SIGTERM, then SIGKILL), mounts left under the temp
dir unmounted, the dir removed — on every exit path. Fails loudly (with the daemon's log) when the
engine does not answer; never skips. Prints the wall time of each phase.
"""
import calendar
import collections
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "pylib"))
from dftest import free_port  # noqa: E402

DOCKER = "/usr/bin/docker"  # /usr/local/bin/docker (a newer client) shadows it on some machines
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
BASE_IMAGE = "dfbridge-ci-base:bookworm"
TAG = "ci"
TARGETS = [("dfbridge", "dfbridge"), ("dfpod", "dfpod"), ("worker-c", "dfbridge-worker-c"),
           ("worker-python", "dfbridge-worker-python")]
N_EVENTS = 340          # 20 of each of the 17 types
BOT_ID = 68719476738    # dfpod's default --bot-id
WORKERS = {"worker-c": 2, "worker-python": 2, "worker-replier": 2}
PML = '<div data-format="PresentationML" data-version="2.0">%s</div>'


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


T0 = time.monotonic()
PHASES = []


def phase(name, t_start):
    dt = time.monotonic() - t_start
    PHASES.append((name, dt))
    print("phase %-28s %6.1f s" % (name, dt), flush=True)


def run(cmd, timeout, env=None, check_rc=True, quiet=False):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise Failure("%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout[-4000:],
                                             p.stderr[-4000:]))
    if not quiet and p.stderr.strip() and p.returncode != 0:
        print(p.stderr[-2000:], file=sys.stderr)
    return p


def poll(pred, timeout, step=0.25):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            return v
        time.sleep(step)


def die_with_parent():
    """In the child before exec: SIGTERM when this test process dies, however it dies (ctest's
    timeout kills it with SIGKILL, and no finally runs then), so no dockerd is left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Engine:
    """A dockerd of our own: data and exec roots, pid file and socket in the temp dir."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "docker.sock")
        self.log_path = os.path.join(tmp, "dockerd.log")
        self.env = dict(os.environ, DOCKER_HOST="unix://" + self.sock)
        self.env.pop("DOCKER_CONTEXT", None)
        self.proc = None

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(self.tmp, "data"),
             "--exec-root", os.path.join(self.tmp, "exec"),
             "--pidfile", os.path.join(self.tmp, "docker.pid"),
             "--host", "unix://" + self.sock, "--bridge=none", "--iptables=false",
             "--ip6tables=false"], stdout=log, stderr=log, start_new_session=True,
            preexec_fn=die_with_parent)
        log.close()
        ok = poll(lambda: self.proc.poll() is None and subprocess.run(
            [DOCKER, "info"], env=self.env, capture_output=True, timeout=10).returncode == 0, 30,
            step=0.5)
        if not ok:
            raise Failure("dockerd did not answer within 30 s (exit %s); its log:\n%s"
                          % (self.proc.poll(), self.log_tail()))

    def log_tail(self, n=60):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def docker(self, *args, timeout=120, check_rc=True):
        return run([DOCKER, *args], timeout, env=self.env, check_rc=check_rc)

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("dockerd ignored SIGTERM for 30 s: killed", file=sys.stderr)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def unmount_under(path):
    """Unmounts (lazily, deepest first) whatever is still mounted under path."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    points = [p.replace("\\040", " ") for p in points if p == path or p.startswith(path + "/")]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def rfc3339(s):
    """Docker's UTC times ("2026-12-05T00:26:46.67513446Z") as epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$", s)
    check(m, "time %r" % s)
    whole = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return whole + float(m.group(2) or 0)


def http_text(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read().decode()


def http_status(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def http_json(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def alive(pid_file):
    try:
        with open(pid_file) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def sweep_stale():
    """What a run killed by SIGKILL left (its dockerd ended with it: die_with_parent): a temp dir
    whose test and daemon are both gone is unmounted and removed."""
    for d in os.listdir("/tmp"):
        path = os.path.join("/tmp", d)
        if (d.startswith("dfbci.") and os.path.isdir(path) and
                not alive(os.path.join(path, "test.pid")) and
                not alive(os.path.join(path, "docker.pid"))):
            print("removing %s, left by a killed run" % path)
            unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)


def main():
    sweep_stale()
    tmp = tempfile.mkdtemp(prefix="dfbci.", dir="/tmp")
    with open(os.path.join(tmp, "test.pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    engine = Engine(tmp)
    project = "dfbci%d" % os.getpid()
    keys = os.path.join(tmp, "keys")
    os.mkdir(keys)
    ports = {"pod": free_port(), "pub": free_port(), "replay": free_port(), "metrics": free_port(),
             "cmd": free_port()}
    while len(set(ports.values())) < len(ports):
        ports = {k: free_port() for k in ports}
    cenv = dict(engine.env, COMPOSE_PROJECT_NAME=project, DFB_TAG=TAG, DFB_KEYS_DIR=keys,
                DFB_BOT_KEY=os.path.join(keys, "bot-key.pem"),
                DFB_POD_LISTEN="127.0.0.1:%d" % ports["pod"], DFB_POD_HOST="127.0.0.1",
                DFB_POD_PORT=str(ports["pod"]), DFB_POD_RATE="0", DFB_BIND="127.0.0.1",
                DFB_BRIDGE_HOST="127.0.0.1", DFB_PUB_PORT=str(ports["pub"]),
                DFB_REPLAY_PORT=str(ports["replay"]), DFB_CMD_PORT=str(ports["cmd"]),
                DFB_PUBLISH_IP="127.0.0.1",
                DFB_INSECURE="false", DFB_HEARTBEAT_MS="200",
                DFB_METRICS="127.0.0.1:%d" % ports["metrics"], COMPOSE_HTTP_TIMEOUT="300")
    compose = [COMPOSE, "--ansi", "never", "-f", os.path.join(TOP, "docker", "compose.yaml"),
               "-f", os.path.join(HERE, "compose.test.yaml")]
    composed = False

    def dc(*args, timeout=300, check_rc=True):
        return run([*compose, *args], timeout, env=cenv, check_rc=check_rc)

    def on_signal(sig, frame):
        raise Failure("signal %d" % sig)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    ok = False
    try:
        t = time.monotonic()
        engine.start()
        phase("dockerd up", t)

        # the shipped overrides are valid compose files (they are not run here: a real pod, and
        # published ports, which need a container network)
        denv = dict(cenv, DFB_POD_HOST="pod.example.com", DFB_BOT_KEY="/dev/null")
        for extra in ("compose.realpod.yaml", "compose.expose.yaml"):
            run([COMPOSE, "-f", os.path.join(TOP, "docker", "compose.yaml"),
                 "-f", os.path.join(TOP, "docker", extra), "config", "-q"], 60, env=denv)

        t = time.monotonic()
        tarball = run([os.path.join(TOP, "scripts", "debian-base.sh")], 900).stdout.strip()
        check(os.path.isfile(tarball), "debian-base.sh printed %r" % tarball)
        engine.docker("import", tarball, BASE_IMAGE, timeout=300)
        phase("base image imported", t)

        t = time.monotonic()
        for target, image in TARGETS:
            t1 = time.monotonic()
            engine.docker("build", "--network", "host", "--build-arg", "BASE_IMAGE=" + BASE_IMAGE,
                          "-f", os.path.join(TOP, "docker", "Dockerfile"), "--target", target,
                          "-t", "%s:%s" % (image, TAG), TOP, timeout=900)
            phase("build " + target, t1)
        phase("builds (all)", t)

        t = time.monotonic()
        composed = True
        scale = []
        for svc, n in WORKERS.items():
            scale += ["--scale", "%s=%d" % (svc, n)]
        # the README's first run: the key pair made by the one-shot service, then `up` (which runs
        # it again: the key is kept)
        dc("run", "--rm", "keys", timeout=120)
        with open(os.path.join(keys, "bot-key.pem"), "rb") as f:
            key_before = f.read()
        check(b"PRIVATE KEY" in key_before, "run --rm keys made no private key")
        # `up -d` returns once every container started, the workers only after the bridge is
        # healthy and the bridge after the pod (depends_on: service_healthy)
        dc("up", "-d", "--no-build", *scale, timeout=300)
        phase("compose up", t)

        def cids(svc):
            out = dc("ps", "-q", svc).stdout.split()
            return out

        def inspect(cid):
            return json.loads(engine.docker("inspect", cid).stdout)[0]

        def logs(cid):
            p = engine.docker("logs", cid, check_rc=False)
            return p.stdout + p.stderr

        # the one-shot keys service made the key pair and ended 0
        kc = cids("keys")
        check(len(kc) == 1, "one keys container, got %r" % kc)
        check(inspect(kc[0])["State"]["ExitCode"] == 0, "keys exited %r: %s"
              % (inspect(kc[0])["State"]["ExitCode"], logs(kc[0])))
        with open(os.path.join(keys, "bot-key.pem"), "rb") as f:
            check(f.read() == key_before, "bot-key.pem changed by the second keys run")
        check(os.stat(os.path.join(keys, "bot-key.pem")).st_mode & 0o077 == 0,
              "bot-key.pem is 0600")

        workers = {svc: cids(svc) for svc in WORKERS}
        for svc, n in WORKERS.items():
            check(len(workers[svc]) == n, "%s: %d containers, want %d" % (svc, len(workers[svc]), n))
        all_workers = [c for svc in WORKERS for c in workers[svc]]

        # health: the workers started after the bridge was healthy, the bridge after the pod
        bridge = cids("bridge")[0]
        pod = cids("pod")[0]

        def health(cid):
            st = inspect(cid)["State"]
            return st.get("Health", {}).get("Status"), st

        for name, cid in (("pod", pod), ("bridge", bridge)):
            h, st = health(cid)
            check(h == "healthy", "%s health %r after up (workers depend on it)" % (name, h))
        # read at once after `up`: the health log keeps the last 5 results (10 s at 2 s)
        started = {c: rfc3339(inspect(c)["State"]["StartedAt"]) for c in all_workers}
        oks = [rfc3339(e["End"]) for e in inspect(bridge)["State"]["Health"]["Log"]
               if e["ExitCode"] == 0]
        check(oks, "no successful bridge healthcheck in its log")
        for c, s in started.items():
            check(s >= min(oks), "worker %s started %.3f s before the bridge was first healthy"
                  % (c[:12], min(oks) - s))

        # every worker has seen the bridge's epoch at gseq 0: events published from now on are
        # either received live or filled from replay
        t = time.monotonic()
        resumed = re.compile(r"resuming after gseq 0 \(newest 0\)")
        waiting = poll(lambda: all(resumed.search(logs(c)) for c in all_workers), 60, step=0.5)
        if not waiting:
            raise Failure("workers without the epoch line after 60 s:\n" + "\n".join(
                "%s:\n%s" % (c[:12], logs(c)[-1500:]) for c in all_workers
                if not resumed.search(logs(c))))
        phase("workers subscribed", t)

        t = time.monotonic()
        # at_once: the N events enqueued together, so that the pod's echoes of the replies (made
        # while they are delivered) come after them in its event list
        r = http_json(ports["pod"], "POST", "/admin/generate",
                      {"count": N_EVENTS, "seed": 10, "at_once": True})
        check(r.get("enqueued") == N_EVENTS, "pod generated %r" % r)
        # the generated events first; the pod's echoes of the replies may already follow them
        events = http_json(ports["pod"], "GET", "/admin/events")
        check(len(events) >= N_EVENTS, "pod lists %d events" % len(events))
        events = events[:N_EVENTS]

        def from_bot(ev):
            return ((ev.get("initiator") or {}).get("user") or {}).get("userId") == BOT_ID

        want_c = sorted(ev["id"] for ev in events if not from_bot(ev))
        want_py = sorted(ev["payload"]["messageSent"]["message"]["messageId"] for ev in events
                         if ev["type"] == "MESSAGESENT" and not from_bot(ev))
        n_bot = sum(1 for ev in events if from_bot(ev))
        check(n_bot == N_EVENTS * 5 // 100, "%d events from the bot (bot_ratio 0.05)" % n_bot)
        check(len(set(want_c)) == len(want_c), "event ids unique")
        check(len(want_py) == N_EVENTS // 17 - sum(
            1 for ev in events if ev["type"] == "MESSAGESENT" and from_bot(ev)),
              "MESSAGESENT count: %d not from the bot, types %r"
              % (len(want_py), sorted(collections.Counter(ev["type"] for ev in events).items())))

        c_line = re.compile(r"^\S+ INFO  worker-\d+/(\S+)/printer - ", re.M)
        py_line = re.compile(r"^INFO:root:message (\S+) from user \d+$", re.M)

        replied = [c for c in all_workers if c in workers["worker-replier"]]
        all_workers = [c for c in all_workers if c not in replied]  # the repliers: by the pod

        def handled(c):
            text = logs(c)
            if c in workers["worker-c"]:
                return sorted(c_line.findall(text))
            return sorted(py_line.findall(text))

        def want(c):
            return want_c if c in workers["worker-c"] else want_py

        poll(lambda: all(len(handled(c)) >= len(want(c)) for c in all_workers), 90, step=0.5)
        # a last look a moment later would show a late duplicate
        time.sleep(0.5)
        for c in all_workers:
            got = handled(c)
            svc = "worker-c" if c in workers["worker-c"] else "worker-python"
            if got != want(c):
                missing = sorted(set(want(c)) - set(got))
                extra = sorted(set(got) - set(want(c)))
                dups = len(got) - len(set(got))
                raise Failure("%s %s handled %d, want %d: missing %r, extra %r, duplicates %d\n%s"
                              % (svc, c[:12], len(got), len(want(c)), missing[:5], extra[:5], dups,
                                 logs(c)[-3000:]))
            print("%s %s: handled exactly the %d expected events" % (svc, c[:12], len(got)))
        phase("events delivered", t)

        # the replies: the pod's post log holds exactly one per MESSAGESENT not from the bot, in
        # its stream, "Hello, <display name>!" as PresentationML; nothing else
        t = time.monotonic()
        want_replies = sorted(
            (ev["payload"]["messageSent"]["message"]["stream"]["streamId"],
             PML % ("Hello, %s!" % ev["initiator"]["user"]["displayName"]))
            for ev in events if ev["type"] == "MESSAGESENT" and not from_bot(ev))
        check(len(want_replies) == len(want_py), "one reply per message")

        def posts():
            return http_json(ports["pod"], "GET", "/admin/messages")

        def metrics():
            text = http_text(ports["metrics"], "/metrics")
            pub = {m.group(1): float(m.group(2)) for m in re.finditer(
                r'^dfbridge_events_published_total\{topic="([^"]+)"\} (\S+)$', text, re.M)}
            cmd = {m.group(1): float(m.group(2)) for m in re.finditer(
                r'^dfbridge_commands_total\{result="([^"]+)"\} (\S+)$', text, re.M)}
            m = re.search(r'^dfbridge_commands_received_total (\S+)$', text, re.M)
            return pub, cmd, float(m.group(1)) if m else None

        def settled():
            pub, cmd, received = metrics()
            return (len(posts()) >= n_rep and received is not None and received >= 2 * n_rep and
                    sum(cmd.values()) >= 2 * n_rep and
                    sum(v for k, v in pub.items() if k != "_hb") >= N_EVENTS + n_rep)

        n_rep = len(want_replies)
        poll(settled, 60, step=0.5)
        time.sleep(0.5)  # a late second post would show
        got = posts()
        check(all(p["op"] == "create" for p in got), "posts other than creates: %r"
              % [p for p in got if p["op"] != "create"][:3])
        got_replies = sorted((p["streamId"], p["presentationML"]) for p in got)
        if got_replies != want_replies:
            missing = [r for r in want_replies if r not in got_replies]
            extra = [r for r in got_replies if r not in want_replies]
            raise Failure("pod posts: %d, want %d: missing %r, extra %r\n%s"
                          % (len(got_replies), n_rep, missing[:5], extra[:5],
                             "\n".join(logs(c)[-2000:] for c in replied)))
        pub, cmd, received = metrics()
        check(received == 2 * n_rep, "commands received %r, want 2 x %d (two repliers)"
              % (received, n_rep))
        check(cmd.get("ok") == 2 * n_rep and sum(cmd.values()) == 2 * n_rep,
              "command replies %r, want %d ok" % (cmd, 2 * n_rep))
        print("worker-replier x2: %d requests, exactly the %d expected posts" % (received, n_rep))
        # the echoes are published now: still no worker handled one (nor anything else)
        for c in all_workers:
            check(handled(c) == want(c), "worker %s handled %d events after the echoes, want %d"
                  % (c[:12], len(handled(c)), len(want(c))))
        phase("replies posted", t)
        all_workers += replied

        # every container healthy (the workers' first healthcheck comes after its interval)
        t = time.monotonic()
        for c in [pod, bridge] + all_workers:
            h = poll(lambda: health(c)[0] == "healthy" and "healthy", 40, step=0.5)
            check(h == "healthy", "container %s health %r" % (c[:12], health(c)[0]))
        phase("all healthy", t)

        # the health endpoints the healthcheck reads, and the counters: every event published
        check(http_status(ports["metrics"], "/healthz") == 200, "/healthz not 200")
        check(http_status(ports["metrics"], "/readyz") == 200, "/readyz not 200")
        text = http_text(ports["metrics"], "/metrics")
        pub = {m.group(1): float(m.group(2)) for m in re.finditer(
            r'^dfbridge_events_published_total\{topic="([^"]+)"\} (\S+)$', text, re.M)}
        n_pub = sum(v for k, v in pub.items() if k != "_hb")
        check(n_pub == N_EVENTS + n_rep, "dfbridge_events_published_total without _hb: %r, want "
              "%d events + %d echoed replies" % (n_pub, N_EVENTS, n_rep))
        check(len([k for k in pub if k not in ("_hb", "unknown")]) == 17,
              "17 topics published: %r" % sorted(pub))

        # seconds later: still one post per message (no reply to an echo, no late second post)
        check(len(posts()) == n_rep, "pod posts now %d, want %d" % (len(posts()), n_rep))

        # the journal is on the bridge's volume
        mounts = inspect(bridge)["Mounts"]
        vol = [m for m in mounts if m.get("Destination") == "/var/lib/dfbridge"]
        check(len(vol) == 1 and vol[0]["Type"] == "volume", "state volume: %r" % mounts)
        jdir = os.path.join(vol[0]["Source"], "journal")
        check(os.path.isdir(jdir) and any(os.path.getsize(os.path.join(jdir, f)) > 0
                                          for f in os.listdir(jdir)),
              "journal segments in the volume (%s)" % jdir)
        user = inspect(bridge)["Config"]["User"]
        check(user == "dfbridge", "bridge runs as %r" % user)

        # no container network was made: only dockerd's own host and none
        nets = sorted(engine.docker("network", "ls", "--format", "{{.Name}}").stdout.split())
        check(nets == ["host", "none"], "docker networks: %r" % nets)

        # STOPSIGNAL: the bridge ends on SIGTERM, cleanly
        t = time.monotonic()
        dc("stop", "-t", "20", "bridge", timeout=60)
        st = inspect(bridge)["State"]
        check(st["ExitCode"] == 0, "bridge exit %r after stop" % st["ExitCode"])
        check("stopped by SIGTERM" in logs(bridge), "no 'stopped by SIGTERM' in the bridge's log")
        phase("bridge stopped", t)

        # the workers' healthcheck sees the link gone: its next run fails (interval 10 s)
        t = time.monotonic()

        def failing(c):
            log = inspect(c)["State"]["Health"]["Log"]
            return bool(log) and log[-1]["ExitCode"] == 1 and "not linked" in log[-1]["Output"]

        for c in all_workers:
            check(poll(lambda: failing(c), 30, step=0.5),
                  "worker %s healthcheck still passes without the bridge: %r"
                  % (c[:12], inspect(c)["State"]["Health"]["Log"][-1:]))
        phase("worker checks fail", t)
        ok = True
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        if engine.proc and composed:
            try:
                p = dc("logs", "--no-color", "--tail", "40", timeout=60, check_rc=False)
                print(p.stdout[-8000:], file=sys.stderr)
            except Exception as e2:  # noqa: BLE001 - best effort while failing
                print("(no compose logs: %s)" % e2, file=sys.stderr)
    finally:
        t = time.monotonic()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if composed and engine.proc and engine.proc.poll() is None:
            try:
                dc("down", "-v", "-t", "10", timeout=120, check_rc=False)
            except Exception as e:  # noqa: BLE001
                print("compose down: %s" % e, file=sys.stderr)
        try:
            engine.stop()
        finally:
            unmount_under(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
        phase("teardown", t)
        print("total %.1f s" % (time.monotonic() - T0))
    print("compose_deploy: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
