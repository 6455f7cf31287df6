#!/usr/bin/env bash
# ctest packages_install (label deploy: run once, alone, never under the
# sanitizers): the three .debs of this build, installed by apt into a clean
# Debian 12 root (scripts/debian-base.sh's debootstrap minbase) in a chroot.
#   1. cpack -G DEB into a temp dir;
#   2. apt-get install ./dfbridge_*.deb ./libdfconsumer0_*.deb ./libdfconsumer-dev_*.deb
#      (apt resolves their Depends from Debian: this proves them right);
#   3. the user, the state directory, the unit, the conffiles; dfbridge --help;
#      the shipped config refuses (exit 2) until the bot key exists, then --check passes;
#   4. gcc + pkg-config: the packaged example_consumer.c built with
#      `pkg-config --cflags --libs dfconsumer` only (and --static), ldd;
#   5. end to end: this build's dfpod on the host's 127.0.0.1, the installed
#      dfbridge run in the chroot as user dfbridge with the journal in
#      /var/lib/dfbridge, the pkg-config-built worker receives every event.
# Everything runs in a private mount namespace (the /proc mount dies with it
# even on SIGKILL); the temp root is unmounted before it is removed.
# Downloads: the chroot's apt archives and lists are kept in
# $DF_BASE_CACHE/apt-{archives,lists} (bind-mounted), so a second run downloads nothing.
#   packages_install.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$1 build=$2
if [ "$(id -u)" -ne 0 ]; then echo "packages_install: needs root (chroot, mounts)"; exit 1; fi
if [ -z "${DF_PKG_IN_NS:-}" ]; then
  exec env DF_PKG_IN_NS=1 unshare --mount --propagation private -- bash "$0" "$@"
fi
t0=$(date +%s)
step() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
cache=${DF_BASE_CACHE:-/var/cache/dfbridge-ci}
# Old temp roots of runs killed before their cleanup (their mounts died with their namespace).
for old in /var/tmp/dfb-pkg.*; do
  [ -d "$old" ] || continue
  pid=$(cat "$old/pid" 2>/dev/null || echo 0)
  if ! kill -0 "$pid" 2>/dev/null \
     && ! awk -v r="$old/" 'index($5, r) == 1 {f = 1} END {exit !f}' /proc/self/mountinfo; then
    rm -rf "$old"
  fi
done
work=$(mktemp -d /var/tmp/dfb-pkg.XXXXXX)
echo $$ >"$work/pid"
root=$work/root
mounts=()
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null
  done
  # Never rm -rf through a mount point: if anything is still mounted under $root, leave it.
  local left
  left=$(awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo)
  if [ -n "$left" ]; then
    echo "packages_install: still mounted under $root, not removed: $left"
    rc=1
  else
    rm -rf "$work"
  fi
  step "done (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
die() { echo "FAIL: $*"; exit 1; }
# in_root, in_root_exec, pkg_build_debs, pkg_unpack_base, pkg_apt_setup
# shellcheck source=packaging/tests/lib.sh
. "$src/packaging/tests/lib.sh"

# ---- 1. the packages
pkg_build_debs

# ---- 2. a clean Debian 12 root, apt
pkg_unpack_base
pkg_apt_setup
mkdir -p "$root/tmp/debs" && cp "$work"/debs/*.deb "$root/tmp/debs/"
step "apt-get update"
in_root apt-get update -q >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; die "apt-get update"; }
step "apt-get install the three packages"
debs=()
for p in dfbridge libdfconsumer0 libdfconsumer-dev; do
  f=$(ls "$root/tmp/debs/${p}_"*.deb) && debs+=("/tmp/debs/${f##*/}")
done
if ! in_root apt-get install -y -q --no-install-recommends "${debs[@]}" >>"$work/apt.log" 2>&1; then
  tail -30 "$work/apt.log"; die "apt-get install of the packages"
fi
for p in dfbridge libdfconsumer0 libdfconsumer-dev; do
  st=$(in_root dpkg-query -W -f '${Status}' "$p" 2>&1)
  [ "$st" = "install ok installed" ] || fail "$p: dpkg status '$st'"
done

# ---- 3. what the dfbridge package made
in_root dfbridge --help >/dev/null || fail "dfbridge --help"
[ -f "$root/lib/systemd/system/dfbridge.service" ] || fail "no /lib/systemd/system/dfbridge.service"
grep -qx 'ExecStart=/usr/bin/dfbridge --config /etc/dfbridge/dfbridge.yaml' \
  "$root/lib/systemd/system/dfbridge.service" || fail "unit: ExecStart"
[ -f "$root/usr/lib/sysusers.d/dfbridge.conf" ] || fail "no sysusers.d/dfbridge.conf"
pw=$(in_root getent passwd dfbridge) || fail "no user dfbridge"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/dfbridge ] && [ "$shell" = /usr/sbin/nologin ] \
  || fail "user dfbridge: '$pw' (want a system uid, home /var/lib/dfbridge, nologin)"
st=$(stat -c '%u:%g %a' "$root/var/lib/dfbridge" 2>&1) # numeric: the host's names differ
[ "$st" = "$uid:$gid 750" ] || fail "/var/lib/dfbridge: '$st'"
cf=$(in_root dpkg-query -W -f '${Conffiles}' dfbridge | awk '{print $1}' | sort | xargs)
[ "$cf" = "/etc/default/dfbridge /etc/dfbridge/dfbridge.yaml" ] || fail "conffiles: '$cf'"
out=$(in_root chroot --userspec=dfbridge:dfbridge / dfbridge --config /etc/dfbridge/dfbridge.yaml --check 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q /etc/dfbridge/bot-key.pem <<<"$out" \
  || fail "shipped config before the key exists: exit $rc (want 2 naming the key): $out"
openssl genrsa -out "$work/bot-key.pem" 2048 2>/dev/null && openssl rsa -in "$work/bot-key.pem" \
  -pubout -out "$work/bot-pub.pem" 2>/dev/null || die "openssl"
install -m 0600 -o "$uid" -g "$gid" "$work/bot-key.pem" "$root/etc/dfbridge/bot-key.pem"
out=$(in_root chroot --userspec=dfbridge:dfbridge / dfbridge --config /etc/dfbridge/dfbridge.yaml --check 2>&1) \
  || fail "shipped config with the key in place: --check: $out"

# ---- 4. a worker built with pkg-config only
# (libmicrohttpd-dev: the example's --metrics endpoint, metrics_http.c beside it)
step "apt-get install gcc pkg-config libmicrohttpd-dev"
in_root apt-get install -y -q --no-install-recommends gcc pkg-config libmicrohttpd-dev >>"$work/apt.log" 2>&1 \
  || { tail -30 "$work/apt.log"; die "apt-get install gcc pkg-config libmicrohttpd-dev"; }
ex=/usr/share/doc/libdfconsumer-dev/example_consumer.c
[ -f "$root$ex" ] || fail "no $ex"
mh="/usr/share/doc/libdfconsumer-dev/metrics_http.c \$(pkg-config --cflags --libs libmicrohttpd)"
in_root sh -c "gcc -Wall -Werror -o /tmp/worker $ex $mh \$(pkg-config --cflags --libs dfconsumer)" \
  || fail "gcc with pkg-config --cflags --libs dfconsumer"
in_root sh -c "gcc -Wall -Werror -o /tmp/worker_static $ex $mh \$(pkg-config --cflags dfconsumer) \
                 \$(pkg-config --static --libs dfconsumer | sed 's/-ldfconsumer/-l:libdfconsumer.a/')" \
  || fail "gcc with pkg-config --static (libdfconsumer.a)"
l=$(in_root ldd /tmp/worker)
grep -Eq 'libdfconsumer\.so\.0 => (/usr)?/lib/libdfconsumer\.so\.0 ' <<<"$l" \
  || fail "worker: ldd shows no libdfconsumer.so.0 from /usr/lib: $l"
l=$(in_root ldd /tmp/worker_static)
grep -q libdfconsumer <<<"$l" && fail "static worker needs libdfconsumer.so: $l"

exec 8>&- # the apt lock: not inherited by the processes below

# ---- 5. end to end: dfpod (host) -> installed dfbridge (chroot, user dfbridge) -> worker
step "end to end"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pub=$(port) rep=$(port)
"$build/tests/dfpod/dfpod" --public-key "$work/bot-pub.pem" --listen 127.0.0.1:0 \
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
# The operator's edit: the pod, the bot, the endpoints; the journal where the unit keeps it.
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
  replay: tcp://127.0.0.1:$rep
  heartbeatMillis: 200
YAML
in_root_exec chroot --userspec=dfbridge:dfbridge / sh -c \
  'cd /var/lib/dfbridge && exec dfbridge --config /etc/dfbridge/dfbridge.yaml' >"$work/bridge.log" 2>&1 &
bridge_pid=$!; pids+=("$bridge_pid")
in_root_exec /tmp/worker --endpoint "tcp://127.0.0.1:$pub" >"$work/worker.log" 2>&1 &
worker_pid=$!; pids+=("$worker_pid")
# The worker has the bridge's heartbeat (so its subscription is live) and the pod has a feed.
for _ in $(seq 300); do
  grep -q 'from the heartbeat' "$work/worker.log" && [ "$(admin GET feeds | tr -d ' \n')" != "[]" ] && break
  sleep 0.05
done
grep -q 'from the heartbeat' "$work/worker.log" \
  || die "the worker got no heartbeat: $(tail -5 "$work/worker.log"; tail -5 "$work/bridge.log")"
n=60
admin POST generate "{\"count\": $n, \"seed\": 7, \"bot_ratio\": 0}" >/dev/null || die "pod: generate"
for _ in $(seq 400); do
  [ "$(grep -c '/printer - ' "$work/worker.log")" -ge $n ] && break
  sleep 0.05
done
kill -TERM "$worker_pid"; wait "$worker_pid"; wrc=$?
kill -TERM "$bridge_pid"; wait "$bridge_pid"; brc=$?
got=$(grep -c '/printer - ' "$work/worker.log")
[ "$got" -eq $n ] || fail "worker: $got events printed, want $n"
# The same events: the pod's served types, one for one, against the worker's lines.
want_types=$(admin GET events | /usr/bin/python3 -c 'import json,sys; [print(e["type"]) for e in json.load(sys.stdin)]' | sort)
got_types=$(grep -o '/printer - [A-Z]*' "$work/worker.log" | sed 's|/printer - ||' | sort)
[ "$(wc -l <<<"$want_types")" -eq $n ] || fail "pod served $(wc -l <<<"$want_types") events, want $n"
[ "$want_types" = "$got_types" ] || fail "worker's event types differ from the pod's"
grep -q "stopped: received .*malformed 0, gaps 0" "$work/worker.log" \
  || fail "worker: no 'stopped: ... malformed 0, gaps 0': $(grep stopped "$work/worker.log")"
grep -q "events $n, published $n," "$work/bridge.log" || fail "bridge: not 'events $n, published $n'"
grep -q "journaled $n, journal errors 0" "$work/bridge.log" || fail "bridge: not 'journaled $n'"
[ $wrc -eq 0 ] || fail "worker exit $wrc"
[ $brc -eq 0 ] || fail "bridge exit $brc after SIGTERM: $(tail -5 "$work/bridge.log")"
ls "$root/var/lib/dfbridge/journal/"* >/dev/null 2>&1 || fail "no journal in /var/lib/dfbridge/journal"
jst=$(stat -c '%u' "$root/var/lib/dfbridge/journal")
[ "$jst" = "$uid" ] || fail "journal owned by '$jst', not dfbridge"

# ---- removal
step "apt-get purge"
in_root apt-get purge -y -q dfbridge libdfconsumer-dev libdfconsumer0 >>"$work/apt.log" 2>&1 \
  || fail "apt-get purge"
for f in /usr/bin/dfbridge /usr/lib/libdfconsumer.so.0 /etc/dfbridge/dfbridge.yaml \
         /lib/systemd/system/dfbridge.service /var/lib/dfbridge; do
  [ -e "$root$f" ] && fail "$f still there after purge"
done

if [ $fails -ne 0 ]; then
  echo "----- worker.log (tail)"; tail -5 "$work/worker.log"
  echo "----- bridge.log (tail)"; tail -10 "$work/bridge.log"
  echo "packages_install: $fails failed"; exit 1
fi
step "packages_install: 3 packages installed by apt in Debian 12, worker built with pkg-config (shared and static), $n/$n events end to end, purged"
