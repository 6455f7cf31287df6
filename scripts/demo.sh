#!/usr/bin/env bash
# The demo in one command: installs what is missing, builds, generates a fresh
# bot key, starts the fake pod (dfpod) with a realistic stream of events of all
# 17 types, starts dfbridge against it, and runs two example consumers: the C
# one, whose listeners print what they receive with their logging context, and
# the Python BDK documentation's logging example on the dfconsumer package;
# and the Python BDK's getting-started bot, which answers every message through
# the bridge's command channel (the bridge posts each reply once).
# Ctrl-C stops everything cleanly.
#   scripts/demo.sh [--rate EVENTS_PER_S] [--duration SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

rate=5
duration=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    *) echo "usage: scripts/demo.sh [--rate N] [--duration SECONDS]" >&2; exit 2 ;;
  esac
done

"$top/scripts/install-deps.sh"
# DF_BUILD_DIR: use binaries already built there (the demo's own ctest does).
build="${DF_BUILD_DIR:-$top/build}"
# (never with DF_BUILD_DIR: a build in the middle of a parallel ctest run
# relinks binaries other tests are starting)
if [ -z "${DF_BUILD_DIR:-}" ] && { [ ! -x "$build/bridge/dfbridge" ] || [ -n "$(find bridge consumers tests schemas CMakeLists.txt -newer "$build/bridge/dfbridge" -print -quit 2>/dev/null)" ]; }; then
  echo "demo: building (first run takes a minute)" >&2
  cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
fi

run=$(mktemp -d "${TMPDIR:-/tmp}/dfbridge-demo.XXXXXX")
pids=()
# What the bot posted through the bridge, from the fake pod's record.
replies() {
  /usr/bin/python3 - "$port" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
c = json.load(urllib.request.urlopen("http://127.0.0.1:%s/admin/counters" % sys.argv[1], timeout=2))
print("demo: the bot posted %d replies through the command channel (dfpod's messages_posted)"
      % c.get("messages_posted", 0))
PY
}
cleanup() {
  trap - INT TERM EXIT
  [ -n "${port:-}" ] && replies >&2
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
  echo "demo: stopped" >&2
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# A fresh bot key for every demo run: dfpod gets the public half.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$run/bot.pem" 2>/dev/null
openssl pkey -in "$run/bot.pem" -pubout -out "$run/bot.pub.pem"

"$build/tests/dfpod/dfpod" --listen 127.0.0.1:0 --port-file "$run/pod.port" \
  --public-key "$run/bot.pub.pem" --bot-username demo-bot \
  --generate 20 --rate "$rate" --hold-ms 30000 2> "$run/dfpod.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$run/pod.port" ] && break; sleep 0.05; done
[ -s "$run/pod.port" ] || { echo "demo: dfpod did not start:" >&2; cat "$run/dfpod.log" >&2; exit 1; }
port=$(cat "$run/pod.port")

# Free loopback ports for the PUB socket and the command channel.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pub=$(free_port)
cmd=$(free_port)
while [ "$cmd" = "$pub" ]; do cmd=$(free_port); done
mkdir -m 0700 "$run/state"
cat > "$run/bridge.yaml" <<YAML
# The BDK's own config format: the bridge reads it unchanged.
scheme: http
host: 127.0.0.1
port: $port
bot:
  username: demo-bot
  privateKey:
    path: $run/bot.pem
datafeed:
  version: v2
bridge:
  publish: tcp://127.0.0.1:$pub
  stateDir: $run/state          # the journal, and the command channel's record of requests
  commands: tcp://127.0.0.1:$cmd   # workers' replies go out through the bridge's session
YAML

echo "demo: fake pod on http://127.0.0.1:$port, bridge publishing on tcp://127.0.0.1:$pub," \
     "commands on tcp://127.0.0.1:$cmd" >&2
echo "demo: logs in $run (dfpod.log, dfbridge.log); Ctrl-C stops" >&2
"$build/consumers/example_consumer" --endpoint "tcp://127.0.0.1:$pub" &
pids+=($!)
# The Python BDK's documented logging example, unchanged but for its import:
# each MESSAGESENT line carries "<task>/<event id>/<listener id>".
/usr/bin/python3 "$top/consumers/python/examples/logging_filter.py" "tcp://127.0.0.1:$pub" &
pids+=($!)
# The Python BDK's getting-started bot, unchanged but for its imports: it answers
# every MESSAGESENT in its stream through the command channel; the replies come
# back on the datafeed as the bot's own MESSAGESENT (the printer shows them).
/usr/bin/python3 "$top/consumers/python/examples/reply_listener.py" "tcp://127.0.0.1:$pub" \
  "tcp://127.0.0.1:$cmd" 2> "$run/replier.log" &
pids+=($!)
"$build/bridge/dfbridge" --config "$run/bridge.yaml" 2> "$run/dfbridge.log" &
pids+=($!)

if [ "$duration" -gt 0 ]; then
  sleep "$duration"
else
  wait "${pids[@]}"
fi
