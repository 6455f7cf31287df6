"""netlab: three network namespaces for the multi-host test (netns_test.py), made and removed
with iproute2, never touching the machine's own namespace.

    pb  (pod + bridge)  <-veth->  c1  (198.18.1.1/24 in pb, 198.18.1.2/24 in c1)
                        <-veth->  c2  (198.18.2.1/24 in pb, 198.18.2.2/24 in c2)

Addresses are from 198.18.0.0/15 (RFC 2544, benchmarking: never routed on the Internet, never
a private network someone uses). No namespace has a default route. Each veth is created with
both ends already inside their namespaces (`ip -n pb link add ... peer ... netns c1`), so not
even a transient interface appears in the root namespace. Names carry the test's pid
(`dfbnt-<pid>-pb`, veths `nt<pid>p1`...); namespaces of runs whose pid is gone (a SIGKILL) are
swept at the next start.

The test process itself moves into pb (setns on its main thread, before any other thread
exists: threads and children inherit it), so dftest's Pod/Bridge/replay helpers reach the pod
and the bridge on 127.0.0.1 as in every other test; `in_root(cmd)` runs a command in the
namespace the test started in (nsenter on a kept descriptor of it).
"""
import atexit
import ctypes
import os
import re
import signal
import subprocess

CLONE_NEWNET = 0x40000000
PREFIX = "dfbnt-"
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
NSENTER = "/usr/bin/nsenter" if os.path.exists("/usr/bin/nsenter") else "nsenter"

_libc = ctypes.CDLL(None, use_errno=True)


class NetlabError(Exception):
    pass


class Interrupted(Exception):
    """Raised in the main thread by SIGTERM, SIGINT or SIGHUP (ctest's stop, ^C): the test
    unwinds as after any failure (children killed, logs printed), then the lab is removed."""


def run(*args, check=True, timeout=20):
    """An iproute2 (or other) command: its stdout. A failure (exit status, timeout, missing
    program) with check raises NetlabError with the command and its stderr; without check
    the output, "" if there is none."""
    try:
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        if check:
            raise NetlabError("%s: %s" % (" ".join(args), e))
        return ""
    if check and p.returncode != 0:
        raise NetlabError("%s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.strip()))
    return p.stdout


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise NetlabError("setns: %s" % os.strerror(e))


def netns_list():
    """Names from `ip netns list` (each line "NAME" or "NAME (id: N)")."""
    return [ln.split()[0] for ln in run(IP, "netns", "list").splitlines() if ln.strip()]


def root_links():
    """The root namespace's links as a sorted list of "index: name" (`ip -o link`)."""
    out = []
    for ln in run(IP, "-o", "link", "show").splitlines():
        m = re.match(r"(\d+): ([^:@ ]+)", ln)
        if m:
            out.append("%s: %s" % (m.group(1), m.group(2)))
    return sorted(out)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Removes the namespaces (and kills the processes in them) of earlier runs whose test
    process is gone. Returns their names."""
    gone = []
    for name in netns_list():
        m = re.match(re.escape(PREFIX) + r"(\d+)-", name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        for pid in run(IP, "netns", "pids", name, check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(IP, "netns", "del", name, check=False)
        gone.append(name)
    return gone


class Lab:
    """The three namespaces and two veth pairs. up() builds them, enter() moves the calling
    thread into pb, close() (idempotent; also at exit and on SIGTERM/SIGINT/SIGHUP) moves it
    back and removes everything."""

    def __init__(self):
        pid = os.getpid()
        self.ns = {k: "%s%d-%s" % (PREFIX, pid, k) for k in ("pb", "c1", "c2")}
        # interface names: at most 15 characters (pid_max 4194304: 7 digits)
        self.dev = {k: "nt%d%s" % (pid, k) for k in ("p1", "c1", "p2", "c2")}
        self.addr = {"p1": "198.18.1.1", "c1": "198.18.1.2", "p2": "198.18.2.1",
                     "c2": "198.18.2.2"}
        self.root_fd = None
        self.entered = False
        self.closed = False
        self.made = []   # namespaces created so far
        self._old = {}

    # ---- build ------------------------------------------------------------------------------
    def up(self):
        self.root_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        atexit.register(self.close)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old[s] = signal.signal(s, self._on_signal)
        for k in ("pb", "c1", "c2"):
            run(IP, "netns", "add", self.ns[k])
            self.made.append(self.ns[k])
            run(IP, "-n", self.ns[k], "link", "set", "lo", "up")
        for p, c in (("p1", "c1"), ("p2", "c2")):
            # both ends created inside their namespaces: nothing in the root namespace
            run(IP, "-n", self.ns["pb"], "link", "add", self.dev[p], "type", "veth", "peer",
                "name", self.dev[c], "netns", self.ns[c])
            run(IP, "-n", self.ns["pb"], "addr", "add", self.addr[p] + "/24", "dev", self.dev[p])
            run(IP, "-n", self.ns[c], "addr", "add", self.addr[c] + "/24", "dev", self.dev[c])
            run(IP, "-n", self.ns["pb"], "link", "set", self.dev[p], "up")
            run(IP, "-n", self.ns[c], "link", "set", self.dev[c], "up")

    def _on_signal(self, sig, frame):
        raise Interrupted("stopped by signal %d" % sig)

    def enter(self):
        """Moves the calling (main) thread into pb."""
        fd = os.open("/run/netns/" + self.ns["pb"], os.O_RDONLY)
        try:
            setns(fd)
        finally:
            os.close(fd)
        self.entered = True

    def leave(self):
        if self.entered:
            setns(self.root_fd)
            self.entered = False

    # ---- use --------------------------------------------------------------------------------
    def exec_in(self, k, cmd):
        """cmd (a list) run in namespace k ("c1", "c2"): the command line for Popen."""
        return [IP, "netns", "exec", self.ns[k]] + list(cmd)

    def ip(self, k, *args, check=True):
        return run(IP, "-n", self.ns[k], *args, check=check)

    def cut(self, c):
        """Takes the pb side of consumer c's link down ("c1" or "c2")."""
        self.ip("pb", "link", "set", self.dev["p" + c[1]], "down")

    def restore(self, c):
        self.ip("pb", "link", "set", self.dev["p" + c[1]], "up")

    def in_root(self, *cmd):
        """A command run in the namespace the test started in: its stdout."""
        return run(NSENTER, "--net=/proc/%d/fd/%d" % (os.getpid(), self.root_fd), *cmd)

    # ---- remove -----------------------------------------------------------------------------
    def close(self):
        """Removes the veths and namespaces (each step tried, errors collected); returns the
        list of errors. The caller must have stopped the processes in them."""
        if self.closed:
            return []
        self.closed = True
        for s in self._old:  # a second signal must not cut the removal short
            signal.signal(s, signal.SIG_IGN)
        errs = []
        try:
            self.leave()
        except NetlabError as e:
            errs.append(str(e))
        if self.made:
            for p in ("p1", "p2"):  # deleting one end deletes its pair
                self.ip("pb", "link", "del", self.dev[p], check=False)
            for name in self.made:
                for pid in run(IP, "netns", "pids", name, check=False).split():
                    if pid.isdigit() and int(pid) != os.getpid():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                try:
                    run(IP, "netns", "del", name)
                except NetlabError as e:
                    errs.append(str(e))
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None
        for s, h in self._old.items():
            signal.signal(s, h)
        return errs
