#!/usr/bin/env bash
# ctest packages_systemd (label deploy: run once, alone, never under the
# sanitizers): the packaged dfbridge.service started for real under systemd as
# PID 1, in a Debian 12 container booted with systemd-nspawn.
#   1. cpack -G DEB; the scripts/debian-base.sh root unpacked, systemd and dbus
#      apt-installed in it (chroot, apt's archives and lists cached);
#   2. systemd-nspawn --boot on the host's network (no private network: the
#      container reaches the host's dfpod on 127.0.0.1), in a cgroup of its own;
#   3. in the booted container: apt-get install of the three .debs (the postinst
#      runs with systemd up), the shipped config refused (exit 2, no restart);
#   4. the operator's config and key, `systemctl start dfbridge`: active,
#      MainPID runs as dfbridge under the sandbox (seccomp, no capabilities,
#      read-only /), the journal in /var/lib/dfbridge; the installed dftail
#      receives every event the pod generated;
#   5. kill -9 of MainPID: systemd restarts it, the events go on in the same
#      epoch with gseq 1..N and no gap or duplicate;
#   6. systemctl stop: inactive, exit status 0, "stopped by SIGTERM"; the unit's
#      journal has no seccomp/EPERM/SIGSYS trace; a broken config: exit 2,
#      failed and not restarted, the error in `systemctl status`.
# Cleanup on every path: the container is halted (killed after 10 s), its
# cgroups and the temp root removed. If this script is SIGKILLed, nspawn and
# dfpod die with it (PR_SET_PDEATHSIG) and a detached watchdog kills the
# container's cgroup and removes the rest; a later run also removes what a
# killed run left.
#   packages_systemd.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "packages_systemd: needs root (nspawn, mounts)"; exit 1; fi
if [ -z "${DF_SD_IN_NS:-}" ]; then
  exec env DF_SD_IN_NS=1 unshare --mount --propagation private -- bash "$0" "$@"
fi
cg_roots=()
for h in systemd unified; do
  [ -d "/sys/fs/cgroup/$h" ] && cg_roots+=("/sys/fs/cgroup/$h")
done
# A cgroup v2-only host has no systemd/unified subfolders: the root itself.
[ ${#cg_roots[@]} -eq 0 ] && cg_roots=(/sys/fs/cgroup)

# Kills every process in the cgroup trees named $1 (all hierarchies), then removes them.
cg_remove() {
  local name=$1 r i
  for i in $(seq 50); do
    local left=0
    for r in "${cg_roots[@]}"; do
      [ -d "$r/$name" ] || continue
      while read -r f; do
        while read -r p; do kill -KILL "$p" 2>/dev/null; left=1; done <"$f"
      done < <(find "$r/$name" -name cgroup.procs)
    done
    [ $left -eq 0 ] && break
    sleep 0.1 # killed processes leave their cgroup asynchronously: no signal to wait on
  done
  for r in "${cg_roots[@]}"; do
    [ -d "$r/$name" ] && find "$r/$name" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  for r in "${cg_roots[@]}"; do [ -d "$r/$name" ] && return 1; done
  return 0
}

# What a killed nspawn leaves in /run (a disk folder on hosts without systemd):
# its propagation folder and the lock of the root folder ($1: the temp folder).
nspawn_leftovers() {
  local n=${1##*/}
  rmdir "/run/systemd/nspawn/propagate/dfbsd-${n#dfb-sd.}" 2>/dev/null
  [ -d "$1/root" ] && rm -f "/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$1/root")"
  return 0
}

# What runs killed before their cleanup left: the container (its cgroup), mounts of
# this mount namespace, the temp root.
reap_stale() {
  local old pid m
  for old in /var/tmp/dfb-sd.*; do
    [ -d "$old" ] || continue
    pid=$(cat "$old/pid" 2>/dev/null || echo 0)
    kill -0 "$pid" 2>/dev/null && continue
    cg_remove "${old##*/}" || { echo "packages_systemd: cannot remove the cgroup of $old"; continue; }
    for m in $(awk -v r="$old/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    nspawn_leftovers "$old"
    awk -v r="$old/" 'index($5, r) == 1 {f = 1} END {exit !f}' /proc/self/mountinfo || rm -rf "$old"
  done
}

# The watchdog (started below, detached): when the test dies without its cleanup
# (SIGKILL), it kills the container and removes what the test left.
if [ "${1:-}" = --reap-after ]; then
  tail --pid="$2" -f /dev/null
  reap_stale
  exit 0
fi

src=$1 build=$2
t0=$(date +%s)
step() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
command -v systemd-nspawn >/dev/null \
  || { echo "FAIL: no systemd-nspawn (Debian package systemd-container: scripts/install-deps.sh)"; exit 1; }
cache=${DF_BASE_CACHE:-/var/cache/dfbridge-ci}
reap_stale

work=$(mktemp -d /var/tmp/dfb-sd.XXXXXX)
echo $$ >"$work/pid"
setsid bash "$0" --reap-after $$ </dev/null >/dev/null 2>&1 &
watchdog=$!
name=${work##*/}            # the cgroup's name
machine=dfbsd-${name#dfb-sd.} # the container's name and hostname
root=$work/root
mounts=()
pids=()
nspawn_pid=
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null; done
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    step "halting the container"
    kill -TERM "$nspawn_pid" # nspawn asks the container's systemd to power off
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$nspawn_pid" 2>/dev/null; then
      echo "packages_systemd: the container did not halt in 10 s: killed"
      rc=1
      kill -KILL "$nspawn_pid"
    fi
  fi
  nspawn_leftovers "$work"
  step "removing cgroup $name"
  cg_remove "$name" || { echo "packages_systemd: cgroup $name not removed"; rc=1; }
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null
  done
  # Never rm -rf through a mount point: if anything is still mounted under $root, leave it.
  local left
  left=$(awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo)
  if [ -n "$left" ]; then
    echo "packages_systemd: still mounted under $root, not removed: $left"
    rc=1
  else
    rm -rf "$work"
  fi
  kill "$watchdog" 2>/dev/null # its work is done
  step "done (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*"; exit 1; }
# in_root, pkg_build_debs, pkg_unpack_base, pkg_apt_setup (the apt lock on fd 8 is
# held until the packages are installed in the container)
# shellcheck source=packaging/tests/lib.sh
. "$src/packaging/tests/lib.sh"

# ---- 1. the packages; a Debian 12 root with systemd
pkg_build_debs
pkg_unpack_base
step "apt-get install systemd dbus (chroot)"
pkg_apt_setup
in_root apt-get update -q >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; die "apt-get update"; }
in_root apt-get install -y -q --no-install-recommends systemd systemd-sysv dbus >>"$work/apt.log" 2>&1 \
  || { tail -30 "$work/apt.log"; die "apt-get install systemd dbus"; }
for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" || die "umount ${mounts[i]}"; done
mounts=()
# Only the console's getty is of no use here (nspawn's console is a pipe).
ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"
echo "$machine" >"$root/etc/hostname"

# ---- 2. boot
step "systemd-nspawn --boot"
for r in "${cg_roots[@]}"; do mkdir "$r/$name" || die "mkdir $r/$name"; done
# A cgroup of the test's own (nspawn puts the container under it): everything the
# container runs can be found and killed, even after a SIGKILL of this script.
# PR_SET_PDEATHSIG: nspawn dies with this script (the container it leaves is the
# watchdog's, by its cgroup). No fd 8: the apt lock is not the container's to hold.
# --keep-unit --register=no: there is no systemd (no machined) on the host.
DF_SD_CG="${cg_roots[*]/%//$name}" \
sh -c 'for r in $DF_SD_CG; do echo $$ >"$r/cgroup.procs" || exit 1; done; exec "$@" </dev/null' sh \
  setpriv --pdeathsig KILL -- \
  systemd-nspawn --quiet --boot --directory="$root" --machine="$machine" \
  --register=no --keep-unit --console=pipe \
  --bind="$cache/apt-archives:/var/cache/apt/archives" --bind="$cache/apt-lists:/var/lib/apt/lists" \
  --bind-ro="$work/debs:/dfb-debs" >"$work/nspawn.log" 2>&1 8>&- &
nspawn_pid=$!
# The container's PID 1 is nspawn's child once it runs systemd.
leader=
for _ in $(seq 300); do
  kill -0 "$nspawn_pid" 2>/dev/null || break
  for c in $(pgrep -P "$nspawn_pid"); do
    [ "$(cat /proc/"$c"/comm 2>/dev/null)" = systemd ] && leader=$c
  done
  [ -n "$leader" ] && break
  sleep 0.05 # a process appearing has no other signal
done
[ -n "$leader" ] || die "systemd-nspawn did not start the container's systemd: $(cat "$work/nspawn.log")"
ct() { nsenter --target "$leader" --all -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
         HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= "$@"; }
# systemctl talks to PID 1 on /run/systemd/private (a tmpfs of the container's): poll for it.
for _ in $(seq 300); do ct test -S /run/systemd/private && break; sleep 0.05; done
state=$(ct timeout 60 systemctl is-system-running --wait 2>&1)
case "$state" in
  running) ;;
  degraded) echo "note: the container is degraded: $(ct systemctl --failed --no-legend --plain)" ;;
  *) die "the container's systemd did not come up: '$state' $(cat "$work/nspawn.log")" ;;
esac
[ "$(ct cat /proc/1/comm)" = systemd ] || die "PID 1 of the container is not systemd"
step "booted: $(ct systemctl --version | head -1), $state"

# ---- 3. the packages, installed with systemd running
step "apt-get install the three packages (in the container)"
debs=()
for p in dfbridge libdfconsumer0 libdfconsumer-dev; do
  f=$(ls "$work/debs/${p}_"*.deb) && debs+=("/dfb-debs/${f##*/}")
done
ct apt-get install -y -q --no-install-recommends "${debs[@]}" >>"$work/apt.log" 2>&1 \
  || { tail -30 "$work/apt.log"; die "apt-get install of the packages"; }
exec 8>&- # the apt lock
pw=$(ct getent passwd dfbridge) || die "no user dfbridge"
IFS=: read -r _ _ uid gid _ home _ <<<"$pw"
[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/dfbridge ] || fail "user dfbridge: '$pw'"
st=$(ct systemctl is-enabled dfbridge 2>&1)
[ "$st" = disabled ] || fail "is-enabled after install: '$st' (the package must not enable it)"
st=$(ct systemctl is-active dfbridge 2>&1)
[ "$st" = inactive ] || fail "is-active after install: '$st' (the package must not start it)"
show() { ct systemctl show dfbridge --value -p "$1"; }
# Waits (10 s at most) until the unit is in state $1 (ActiveState/SubState); prints the last state.
wait_state() {
  local s
  for _ in $(seq 200); do
    s=$(show ActiveState)/$(show SubState)
    [ "$s" = "$1" ] && break
    sleep 0.05 # systemd's state: no event to wait on from here
  done
  echo "$s"
}
# The shipped config names /etc/dfbridge/bot-key.pem, which does not exist: exit 2, no restart.
step "the shipped config: exit 2, failed, not restarted"
ct systemctl start dfbridge || fail "systemctl start (shipped config)"
s=$(wait_state failed/failed)
[ "$s" = failed/failed ] || fail "shipped config: state '$s', want failed/failed"
[ "$(show ExecMainStatus)" = 2 ] || fail "shipped config: ExecMainStatus $(show ExecMainStatus), want 2"
[ "$(show NRestarts)" = 0 ] || fail "shipped config: NRestarts $(show NRestarts), want 0"
status=$(ct systemctl status dfbridge --no-pager -l -n 20 2>&1)
grep -q '/etc/dfbridge/bot-key.pem' <<<"$status" \
  || fail "systemctl status does not show the error naming the key: $status"
ct systemctl reset-failed dfbridge

# ---- 4. the operator's config and key; start
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
openssl genrsa -out "$work/bot-key.pem" 2048 2>/dev/null && openssl rsa -in "$work/bot-key.pem" \
  -pubout -out "$work/bot-pub.pem" 2>/dev/null || die "openssl"
install -m 0600 -o "$uid" -g "$gid" "$work/bot-key.pem" "$root/etc/dfbridge/bot-key.pem"
setpriv --pdeathsig KILL -- "$build/tests/dfpod/dfpod" --public-key "$work/bot-pub.pem" --listen 127.0.0.1:0 \
  --port-file "$work/pod.port" --bot-username my-bot >/dev/null 2>"$work/pod.log" &
pids+=("$!")
for _ in $(seq 200); do [ -s "$work/pod.port" ] && break; sleep 0.05; done # a file appearing has no other signal
[ -s "$work/pod.port" ] || die "dfpod did not start: $(cat "$work/pod.log")"
podport=$(cat "$work/pod.port")
admin() { /usr/bin/python3 - "$podport" "$@" <<'PY'
import json, sys, urllib.request
port, method, path = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request("http://127.0.0.1:%s/admin/%s" % (port, path), data=body, method=method,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}
pub=$(port) mport=$(port)
cat >"$root/etc/dfbridge/dfbridge.yaml" <<YAML
scheme: http
host: 127.0.0.1
port: $podport
bot:
  username: my-bot
  privateKey:
    path: /etc/dfbridge/bot-key.pem
bridge:
  publish: tcp://127.0.0.1:$pub
  stateDir: /var/lib/dfbridge
  replay: ipc:///run/dfbridge/replay.sock
  metrics: 127.0.0.1:$mport
  heartbeatMillis: 200
YAML
# The installed dftail prints every message (heartbeats too) as a JSON line; a transient
# unit of the container's systemd (not a child of nsenter: a process of the container
# with a parent outside it would hold the container's shutdown).
ct systemd-run --quiet --unit=dfb-tail --property=StandardOutput=file:/root/tail.jsonl \
   --property=StandardError=file:/root/tail.err \
   /usr/bin/dftail --heartbeats --endpoint "tcp://127.0.0.1:$pub" || die "systemd-run dftail"
tail_out=$root/root/tail.jsonl
step "systemctl start dfbridge"
ct systemctl start dfbridge || fail "systemctl start"
s=$(wait_state active/running)
[ "$s" = active/running ] || die "dfbridge: state '$s': $(ct systemctl status dfbridge --no-pager -l -n 20)"
# Heartbeats with a time after $1 (ms): the subscription is live, to the bridge started after $1.
hb_after() { /usr/bin/python3 - "$tail_out" "$1" <<'PY'
import json, sys
n = 0
try:
    for line in open(sys.argv[1]):
        try:
            m = json.loads(line)
        except ValueError:
            continue  # the line dftail is writing
        if m["topic"] == "_hb" and m["body"]["ts"] > int(sys.argv[2]):
            n += 1
except FileNotFoundError:
    pass
print(n)
PY
}
# Event lines (a heartbeat's line is {"topic":"_hb",...}; no event topic starts with _).
events() { grep -c '^{"topic":"[^_]' "$tail_out" 2>/dev/null || true; }
wait_for() { # wait_for WHAT CMD...: CMD true within 20 s
  local what=$1; shift
  for _ in $(seq 400); do "$@" && return 0; sleep 0.05; done # polls a file dftail writes
  fail "timed out: $what"; return 1
}
hb_seen() { [ "$(hb_after "$1")" -ge 1 ]; }
nev() { [ "$(events)" -ge "$1" ]; }
wait_for "a heartbeat in dftail" hb_seen 0 || die "$(tail -5 "$root/root/tail.err"; ct journalctl -u dfbridge --no-pager | tail -20)"

pid1=$(show MainPID)
ps_status=$(ct cat "/proc/$pid1/status")
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' <<<"$ps_status")
gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' <<<"$ps_status")
[ "$uids" = "$uid $uid $uid $uid" ] && [ "$gids" = "$gid $gid $gid $gid" ] \
  || fail "MainPID $pid1 runs as uids '$uids' gids '$gids', want dfbridge ($uid:$gid)"
# The sandbox is really applied (not only declared): seccomp filter, no privileges, no capabilities.
grep -qx 'Seccomp:[[:space:]]*2' <<<"$ps_status" || fail "MainPID: no seccomp filter"
grep -qx 'NoNewPrivs:[[:space:]]*1' <<<"$ps_status" || fail "MainPID: NoNewPrivs not set"
grep -qx 'CapBnd:[[:space:]]*0000000000000000' <<<"$ps_status" || fail "MainPID: capability bounding set not empty"
mi=$(ct cat "/proc/$pid1/mountinfo")
awk '$5 == "/" {print $6}' <<<"$mi" | grep -q '^ro' || fail "MainPID: / is not read-only (ProtectSystem=strict)"
awk '$5 == "/var/lib/dfbridge" {print $6}' <<<"$mi" | grep -q '^rw' \
  || fail "MainPID: /var/lib/dfbridge is not a writable mount (StateDirectory=)"
st=$(stat -c '%u:%g %a' "$root/var/lib/dfbridge")
[ "$st" = "$uid:$gid 750" ] || fail "/var/lib/dfbridge: '$st', want $uid:$gid 750"
[ "$(stat -c %u "$root/var/lib/dfbridge/journal" 2>&1)" = "$uid" ] \
  || fail "no /var/lib/dfbridge/journal owned by dfbridge: $(ls -ln "$root/var/lib/dfbridge")"

# The metrics server (libmicrohttpd's thread) under the sandbox.
http() { /usr/bin/python3 - "$mport" "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=10)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError as e:
    print("error", e)
PY
}
h=$(http /readyz)
[ "$(head -1 <<<"$h")" = 200 ] || fail "GET /readyz: $h"
h=$(http /metrics)
grep -q '^dfbridge_build_info{' <<<"$h" || fail "GET /metrics: no dfbridge_build_info: $(head -5 <<<"$h")"

n=50
step "events: $n"
admin POST generate "{\"count\": $n, \"bot_ratio\": 0}" >/dev/null || die "pod: generate"
wait_for "$n events in dftail (got $(events))" nev $n

# ---- 5. kill -9: systemd restarts it, the journal goes on
step "kill -9 MainPID $pid1"
kill_ms=$(date +%s%3N)
ct sh -c "kill -KILL $pid1" || fail "kill -9 $pid1" # dash's kill: minbase has no procps
for _ in $(seq 300); do # RestartSec=5s
  [ "$(show NRestarts)" = 1 ] && [ "$(show ActiveState)/$(show SubState)" = active/running ] && break
  sleep 0.05
done
pid2=$(show MainPID)
[ "$(show NRestarts)" = 1 ] && [ "$pid2" != 0 ] && [ "$pid2" != "$pid1" ] \
  || die "no restart after kill -9: NRestarts $(show NRestarts), MainPID $pid2, $(show ActiveState)/$(show SubState)"
step "restarted by systemd: MainPID $pid2"
wait_for "a heartbeat of the restarted bridge" hb_seen "$kill_ms"
admin POST generate "{\"count\": $n, \"bot_ratio\": 0}" >/dev/null || die "pod: generate"
wait_for "$((2 * n)) events in dftail (got $(events))" nev $((2 * n))

# The journal, across the restart, from the replay endpoint: ipc:// in /run/dfbridge
# (RuntimeDirectory=, the one place ProtectSystem=strict leaves for a socket).
ct timeout 30 dftail --endpoint "tcp://127.0.0.1:$pub" --from-gseq 1 \
   --replay ipc:///run/dfbridge/replay.sock --count $((2 * n)) >"$work/replayed.jsonl" 2>"$work/replayed.err" \
  || fail "dftail --from-gseq 1 over ipc:///run/dfbridge/replay.sock: $(tail -3 "$work/replayed.err")"
h=$(http /healthz)
[ "$(head -1 <<<"$h")" = 200 ] || fail "GET /healthz after the restart: $h"
h=$(http /metrics)
got=$(awk '/^dfbridge_events_published_total\{/ && !/topic="_hb"/ {s += $2} END {print s + 0}' <<<"$h")
[ "$got" = "$n" ] || fail "restarted bridge's /metrics: dfbridge_events_published_total sums to '$got', want $n: $(grep -E "^dfbridge_(events|dedupe)" <<<"$h")"

# SIGUSR1: the counters dumped to the log (the dump thread's pipe under the sandbox).
ct systemctl kill --kill-whom=main --signal=SIGUSR1 dfbridge || fail "systemctl kill -s USR1"
usr1_logged() { ct journalctl -u dfbridge --no-pager -o cat _PID="$pid2" | grep -q 'info: '; }
wait_for "the SIGUSR1 dump in the unit's journal" usr1_logged
[ "$(show ActiveState)/$(show MainPID)" = "active/$pid2" ] || fail "SIGUSR1 stopped the bridge"

# ---- 6. stop; the journal; a broken config
step "systemctl stop dfbridge"
ct systemctl stop dfbridge || fail "systemctl stop"
s=$(wait_state inactive/dead)
[ "$s" = inactive/dead ] || fail "after stop: '$s', want inactive/dead"
[ "$(show ExecMainStatus)" = 0 ] && [ "$(show Result)" = success ] \
  || fail "after stop: ExecMainStatus $(show ExecMainStatus), Result $(show Result)"
ct journalctl -u dfbridge --no-pager -o cat >"$work/unit.log" 2>&1
starts=$(grep -c 'dfbridge [0-9][0-9.]*: pod ' "$work/unit.log" || true)
[ "$starts" -eq 2 ] || fail "unit journal: $starts start lines, want 2"
grep -q 'stopped by SIGTERM' "$work/unit.log" || fail "unit journal: no 'stopped by SIGTERM'"
grep -q 'status=9/KILL' "$work/unit.log" || fail "unit journal: no 'status=9/KILL' (the kill -9)"
bad=$(grep -Ei 'seccomp|SIGSYS|status=31|EPERM|Operation not permitted|Permission denied|Read-only file system' "$work/unit.log")
[ -z "$bad" ] || fail "unit journal has sandbox errors: $bad"

ct systemctl stop dfb-tail
# Every event once, in order, one epoch: gseq 1..2n, per-topic seq 1..k, the pod's ids.
admin GET events >"$work/pod-events.json" || die "pod: events"
/usr/bin/python3 - "$tail_out" "$work/pod-events.json" $((2 * n)) "$work/replayed.jsonl" <<'PY' || fails=$((fails + 1))
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
ev = [m for m in msgs if m["topic"] != "_hb"]
pod = json.load(open(sys.argv[2]))
n = int(sys.argv[3])
replayed = [json.loads(l) for l in open(sys.argv[4])]
errs = []
if replayed != ev:
    errs.append("the replay from gseq 1 (%d messages) differs from the live ones (%d)"
                % (len(replayed), len(ev)))
if len(ev) != n:
    errs.append("dftail printed %d events, want %d" % (len(ev), n))
g = [m["gseq"] for m in ev]
if g != list(range(1, n + 1)):
    errs.append("gseq not 1..%d: %s" % (n, g))
epochs = {m["epoch"] for m in ev} | {m["body"]["epoch"] for m in msgs if m["topic"] == "_hb"}
if len(epochs) != 1:
    errs.append("epochs: %s (want one: the journal survives the restart)" % sorted(epochs))
seqs = {}
for m in ev:
    seqs.setdefault(m["topic"], []).append(m["seq"])
for t, s in seqs.items():
    if s != list(range(1, len(s) + 1)):
        errs.append("topic %s: seq %s" % (t, s))
ids = [m["event"]["id"] for m in ev]
want = [e["id"] for e in pod]
if ids != want:
    errs.append("event ids differ from the pod's (%d vs %d)" % (len(ids), len(want)))
for e in errs:
    print("FAIL:", e)
sys.exit(1 if errs else 0)
PY

step "a broken config: exit 2, not restarted"
cp "$root/etc/dfbridge/dfbridge.yaml" "$work/good.yaml"
printf '  noSuchKey: 1\n' >>"$root/etc/dfbridge/dfbridge.yaml"
ct systemctl start dfbridge || fail "systemctl start (broken config)"
s=$(wait_state failed/failed)
[ "$s" = failed/failed ] || fail "broken config: state '$s', want failed/failed"
[ "$(show ExecMainStatus)" = 2 ] || fail "broken config: ExecMainStatus $(show ExecMainStatus), want 2"
[ "$(show NRestarts)" = 0 ] || fail "broken config: NRestarts $(show NRestarts), want 0"
status=$(ct systemctl status dfbridge --no-pager -l -n 20 2>&1)
grep -q 'noSuchKey' <<<"$status" || fail "systemctl status does not show the error naming the key: $status"

if [ $fails -ne 0 ]; then
  echo "----- unit journal (tail)"; ct journalctl -u dfbridge --no-pager | tail -40
  echo "----- dftail stderr (tail)"; tail -5 "$root/root/tail.err"
  echo "packages_systemd: $fails failed"; exit 1
fi
step "packages_systemd: dfbridge.service under systemd $(ct systemctl --version | awk 'NR==1 {print $2}') (PID 1 of a booted Debian 12 container): started as dfbridge under its sandbox, $((2 * n))/$((2 * n)) events across a kill -9 and a restart (one epoch, gseq 1..$((2 * n))), stopped with exit 0, broken configs exit 2 without restart"
