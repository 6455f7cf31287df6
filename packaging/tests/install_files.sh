#!/usr/bin/env bash
# ctest packages_files: `cmake --install` of this build tree into DESTDIR temp
# dirs, checked exactly:
#   1. prefix /usr/local: the exact list of files and links, and per component
#      (bridge / lib / dev: what each .deb holds);
#   2. prefix /usr (the .deb layout): /etc and /lib/systemd/system, the unit
#      names /usr/bin/dfbridge, the config has bridge.stateDir and refuses to
#      start until it names a bot key that exists (exit 2, no restart loop);
#   3. pkg-config --cflags --libs [--static] dfconsumer: the exact flags, and a
#      worker (the installed example_consumer.c) built with them alone, run;
#   4. the shared library: SONAME libdfconsumer.so.0, exports exactly the
#      functions dfconsumer.h declares (nothing internal);
#   5. systemd-analyze verify on the installed unit, silent; the exposure
#      score of `systemd-analyze security` stays at or below 2.0.
#   install_files.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$1 build=$2
tmp=$(mktemp -d)
worker_pid=
cleanup() {
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ver=$(sed -n 's/^project(dfbridge VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$ver" ] || { echo "no version in $src/CMakeLists.txt"; exit 1; }

# What a tree holds: files as "f PATH", links as "l PATH -> TARGET".
listing() {
  (cd "$1" && find . \( -type f -printf 'f %P\n' \) -o \( -type l -printf 'l %P -> %l\n' \) | sort)
}
install_into() { # DESTDIR PREFIX [COMPONENT]
  local comp=()
  [ $# -gt 2 ] && comp=(--component "$3")
  if ! DESTDIR=$1 cmake --install "$build" --prefix "$2" "${comp[@]}" >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"; fail "cmake --install --prefix $2 ${comp[*]}"
  fi
}

# ---- 1. /usr/local, all, then each component
bridge_files="f etc/default/dfbridge
f etc/dfbridge/dfbridge.yaml
f lib/systemd/system/dfbridge.service
f bin/dfbridge
f bin/dftail
f bin/dfsend
f lib/sysusers.d/dfbridge.conf
f share/doc/dfbridge/CONTRACT.md
f share/doc/dfbridge/README.md
f share/doc/dfbridge/dfbridge.example.yaml"
lib_files="f lib/libdfconsumer.so.$ver
l lib/libdfconsumer.so.0 -> libdfconsumer.so.$ver"
dev_files="f include/dfconsumer.h
f lib/libdfconsumer.a
f lib/pkgconfig/dfconsumer.pc
l lib/libdfconsumer.so -> libdfconsumer.so.0
f share/doc/libdfconsumer-dev/README.md
f share/doc/libdfconsumer-dev/example_consumer.c
f share/doc/libdfconsumer-dev/metrics_http.c
f share/doc/libdfconsumer-dev/metrics_http.h"
under() { sed "s|^\([fl]\) |\1 $1/|" | sort; } # prefix every path
A=$tmp/all
install_into "$A" /usr/local
expect=$(printf '%s\n%s\n%s\n' "$bridge_files" "$lib_files" "$dev_files" | under usr/local)
if [ "$(listing "$A")" != "$expect" ]; then
  fail "cmake --install --prefix /usr/local: not the expected files"
  diff <(echo "$expect") <(listing "$A") | sed 's/^/    /'
fi
for c in bridge lib dev; do
  install_into "$tmp/c_$c" /usr/local "$c"
  eval "want=\$${c}_files"
  # shellcheck disable=SC2154
  if [ "$(listing "$tmp/c_$c")" != "$(echo "$want" | under usr/local)" ]; then
    fail "component $c: not the expected files"
    diff <(echo "$want" | under usr/local) <(listing "$tmp/c_$c") | sed 's/^/    /'
  fi
done
[ -x "$A/usr/local/bin/dfbridge" ] && [ -x "$A/usr/local/bin/dftail" ] && [ -x "$A/usr/local/bin/dfsend" ] || fail "binaries not executable"
"$A/usr/local/bin/dfbridge" --version >/dev/null || fail "installed dfbridge --version"
grep -q "^ExecStart=/usr/local/bin/dfbridge --config /usr/local/etc/dfbridge/dfbridge.yaml$" \
  "$A/usr/local/lib/systemd/system/dfbridge.service" || fail "/usr/local unit: ExecStart"

# ---- 2. /usr: the .deb layout
U=$tmp/usr
install_into "$U" /usr
for f in etc/dfbridge/dfbridge.yaml etc/default/dfbridge lib/systemd/system/dfbridge.service \
         usr/bin/dfbridge usr/lib/libdfconsumer.so.0 usr/lib/pkgconfig/dfconsumer.pc \
         usr/lib/sysusers.d/dfbridge.conf; do
  [ -e "$U/$f" ] || fail "prefix /usr: no /$f"
done
unit=$U/lib/systemd/system/dfbridge.service
for line in "ExecStart=/usr/bin/dfbridge --config /etc/dfbridge/dfbridge.yaml" \
            "EnvironmentFile=-/etc/default/dfbridge" "User=dfbridge" "StateDirectory=dfbridge" \
            "ConfigurationDirectory=dfbridge" "RestartPreventExitStatus=2" "Restart=on-failure" \
            "ProtectSystem=strict" "NoNewPrivileges=yes" "CapabilityBoundingSet=" \
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" \
            "SystemCallFilter=@system-service"; do
  grep -qxF "$line" "$unit" || fail "unit: no line '$line'"
done
grep -q '^ExecReload' "$unit" && fail "unit: ExecReload, but the bridge has no reload"
conf=$U/etc/dfbridge/dfbridge.yaml
grep -qx '  stateDir: /var/lib/dfbridge' "$conf" || fail "config: bridge.stateDir not /var/lib/dfbridge"
# Everything else is the example, unchanged.
if ! diff <(grep -v '^#' "$conf" | grep -vx '  stateDir: /var/lib/dfbridge') \
          <(grep -v '^#' "$src/bridge/dfbridge.example.yaml" | grep -vx '  # stateDir: /var/lib/dfbridge') \
          >/dev/null; then
  fail "config: differs from the example beyond stateDir"
fi
# As shipped: exit 2 naming the missing key (the unit does not restart on 2).
out=$("$U/usr/bin/dfbridge" --config "$conf" --check 2>&1); rc=$?
[ $rc -eq 2 ] || fail "shipped config --check: exit $rc, not 2 ($out)"
grep -q 'bot-key.pem' <<<"$out" || fail "shipped config --check: no word of the key file: $out"
# Edited (a bot key that exists): --check passes.
openssl genrsa -out "$tmp/bot-key.pem" 2048 2>/dev/null && chmod 600 "$tmp/bot-key.pem"
sed "s|/etc/dfbridge/bot-key.pem|$tmp/bot-key.pem|" "$conf" >"$tmp/edited.yaml"
out=$("$U/usr/bin/dfbridge" --config "$tmp/edited.yaml" --check 2>&1) \
  || fail "edited config --check: $out"

# ---- 3. pkg-config, and a worker built with its flags only
P=$A/usr/local
pc() { PKG_CONFIG_PATH=$P/lib/pkgconfig pkg-config --define-variable=prefix="$P" "$@"; }
got=$(pc --cflags --libs dfconsumer | xargs)
[ "$got" = "-I$P/include -L$P/lib -ldfconsumer" ] || fail "pkg-config --cflags --libs: '$got'"
got=$(pc --static --libs dfconsumer | xargs)
[ "$got" = "-L$P/lib -ldfconsumer -lzmq -lm -pthread" ] || fail "pkg-config --static --libs: '$got'"
[ "$(pc --modversion dfconsumer)" = "$ver" ] || fail "pkg-config --modversion"
ex=$P/share/doc/libdfconsumer-dev/example_consumer.c
mh="$P/share/doc/libdfconsumer-dev/metrics_http.c $(pkg-config --cflags --libs libmicrohttpd)" # its --metrics
# shellcheck disable=SC2046,SC2086
cc -Wall -Werror -o "$tmp/worker" "$ex" $mh $(pc --cflags --libs dfconsumer) || fail "cc (shared)"
# --static: the archive itself (-l:libdfconsumer.a) with the private libraries the .pc lists.
# shellcheck disable=SC2046
# shellcheck disable=SC2086
cc -Wall -Werror -o "$tmp/worker_static" "$ex" $mh $(pc --cflags dfconsumer) \
   $(pc --static --libs dfconsumer | sed 's/-ldfconsumer/-l:libdfconsumer.a/') || fail "cc (static)"
grep -qF "libdfconsumer.so.0 => $P/lib/libdfconsumer.so.0 " <<<"$(LD_LIBRARY_PATH=$P/lib ldd "$tmp/worker")" \
  || fail "worker: ldd does not show $P/lib/libdfconsumer.so.0"
grep -q libdfconsumer <<<"$(ldd "$tmp/worker_static")" && fail "static worker still needs libdfconsumer.so"
run_worker() { # BINARY: starts, logs, stops on SIGTERM with the stop line
  local log=$tmp/worker.log port
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  LD_LIBRARY_PATH=$P/lib "$1" --endpoint "tcp://127.0.0.1:$port" >"$log" 2>&1 &
  worker_pid=$!
  for _ in $(seq 400); do grep -q 'example consumer started' "$log" && break; sleep 0.05; done # 20 s: CI's load
  grep -q 'example consumer started' "$log" || fail "$1: never started: $(cat "$log")"
  kill -TERM "$worker_pid"; wait "$worker_pid"; local rc=$?; worker_pid=
  [ $rc -eq 0 ] || fail "$1: exit $rc after SIGTERM"
  grep -q 'stopped: received 0, .*malformed 0' "$log" || fail "$1: no clean stop line: $(cat "$log")"
}
run_worker "$tmp/worker"
run_worker "$tmp/worker_static"

# ---- 4. the shared library's interface
so=$P/lib/libdfconsumer.so.$ver
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libdfconsumer.so.0 ] || fail "SONAME '$soname'"
exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRV]$/ {sub(/@.*/, "", $3); print $3}' | sort -u)
declared=$(grep -oE '(^|[ *])dfc_[a-z0-9_]+ ?\(' "$src/consumers/include/dfconsumer.h" \
           | tr -d ' *(' | sort -u)
if [ "$exported" != "$declared" ]; then
  fail "libdfconsumer.so exports other symbols than dfconsumer.h declares"
  diff <(echo "$declared") <(echo "$exported") | sed 's/^/    /'
fi
n=$(echo "$exported" | wc -l)
[ "$n" -ge 40 ] || fail "only $n exported functions"

# ---- 5. the unit: systemd-analyze verify (the binary must exist: this build's), security
sed "s|^ExecStart=/usr/bin/dfbridge|ExecStart=$build/bridge/dfbridge|" "$unit" >"$tmp/dfbridge.service"
out=$(systemd-analyze verify "$tmp/dfbridge.service" 2>&1); rc=$?
[ $rc -eq 0 ] && [ -z "$out" ] || fail "systemd-analyze verify: exit $rc: $out"
score=$(systemd-analyze security --offline=yes "$tmp/dfbridge.service" 2>&1 \
        | sed -n 's/.*Overall exposure level for dfbridge.service: \([0-9.]*\).*/\1/p')
if [ -z "$score" ] || ! awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
  fail "systemd-analyze security: exposure '$score' (want <= 2.0)"
fi

if [ $fails -ne 0 ]; then echo "packages_files: $fails failed"; exit 1; fi
echo "packages_files: $(listing "$A" | wc -l) files as expected, pkg-config ok, $n symbols exported," \
     "workers (shared, static) ran, unit verified, exposure $score"
