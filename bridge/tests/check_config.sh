#!/bin/sh
# Runs `dfbridge --check` on one good or bad config and checks the exit
# status and the one message naming the key. Usage: check_config.sh DFBRIDGE CASE [BRIDGE_SOURCE_DIR]
set -u
bin=$1
case_name=$2
srcdir=${3:-}
dir=$(mktemp -d /tmp/dfb_check.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem 2>/dev/null || exit 1

base='host: 127.0.0.1
bot:
  username: my-bot
  privateKey:
    path: key.pem
'
want_status=2
want_msg=
cfg=config.yaml
case "$case_name" in
ok)
  printf '%s' "$base" > $cfg; want_status=0; want_msg='OK' ;;
unknown_key)
  printf '%sfrobnicate: 3\n' "$base" > $cfg; want_status=0
  want_msg='frobnicate: unknown key, ignored' ;;
bridge_unknown_key)
  # bridge: is the bridge's own section: a typo must not leave a default in force.
  printf '%sbridge:\n  journal:\n    fsync: always\n  stateDirr: /var/lib/dfbridge\n' "$base" > $cfg
  want_msg='config: bridge.stateDirr: unknown key' ;;
missing_username)
  printf 'host: h\nbot:\n  privateKey:\n    path: key.pem\n' > $cfg
  want_msg='config: bot.username: required' ;;
missing_key_path)
  printf 'host: h\nbot:\n  username: u\n' > $cfg
  want_msg='config: bot.privateKey.path: required' ;;
both_path_content)
  printf 'host: h\nbot:\n  username: u\n  privateKey:\n    path: key.pem\n    content: xyz\n' > $cfg
  want_msg='config: bot.privateKey: set path or content, not both' ;;
bad_version)
  printf '%sdatafeed:\n  version: v3\n' "$base" > $cfg
  want_msg='config: datafeed.version: must be v2 (or v1), not '"'v3'" ;;
v1_accepted)
  printf '%sdatafeed:\n  version: V1\n' "$base" > $cfg; want_status=0
  want_msg='config: datafeed.version: v1 is deprecated' ;;
non_numeric_port)
  printf '%sagent:\n  port: eighty\n' "$base" > $cfg
  want_msg='config: agent.port: not an integer' ;;
max_attempts_zero)
  printf '%sdatafeed:\n  retry:\n    maxAttempts: 0\n' "$base" > $cfg
  want_msg='config: datafeed.retry.maxAttempts: must be -1 (unlimited) or at least 1' ;;
bad_multiplier)
  printf '%sdatafeed:\n  retry:\n    multiplier: fast\n' "$base" > $cfg
  want_msg='config: datafeed.retry.multiplier: not a number' ;;
invalid_yaml)
  printf 'host: [unclosed\nbot: {\n' > $cfg
  want_msg='invalid YAML at line' ;;
missing_file)
  cfg=does-not-exist.yaml
  want_msg='does-not-exist.yaml: cannot open' ;;
unreadable_key)
  printf 'host: h\nbot:\n  username: u\n  privateKey:\n    path: /nonexistent/key.pem\n' > $cfg
  want_msg="config: bot.privateKey.path: cannot read '/nonexistent/key.pem'" ;;
bad_log_level)
  printf '%sbridge:\n  logLevel: loud\n' "$base" > $cfg
  want_msg='config: bridge.logLevel: must be error, warn, info or debug' ;;
datahose_no_event_types)
  printf '%sbridge:\n  source: datahose\n' "$base" > $cfg
  want_msg='config: datahose.eventTypes: required (a non-empty list) when bridge.source is datahose' ;;
datahose_empty_event_types)
  printf '%sbridge:\n  source: datahose\ndatahose:\n  eventTypes: []\n' "$base" > $cfg
  want_msg='config: datahose.eventTypes: required (a non-empty list)' ;;
datahose_bad_event_type)
  printf '%sdatahose:\n  eventTypes: [MESSAGESENT, ""]\n' "$base" > $cfg
  want_msg='config: datahose.eventTypes: item 2 is not a non-empty string' ;;
datahose_bad_retry)
  printf '%sdatahose:\n  retry:\n    maxAttempts: 0\n' "$base" > $cfg
  want_msg='config: datahose.retry.maxAttempts: must be -1 (unlimited) or at least 1' ;;
datahose_ok)
  printf '%sbridge:\n  source: DataHose\ndatahose:\n  tag: t\n  eventTypes: [MESSAGESENT]\n' "$base" > $cfg
  want_status=0; want_msg='OK' ;;
bad_source)
  printf '%sbridge:\n  source: firehose\n' "$base" > $cfg
  want_msg="config: bridge.source: must be datafeed or datahose, not 'firehose'" ;;
bad_include_invisible)
  printf '%sdatafeed:\n  includeInvisible: maybe\n' "$base" > $cfg
  want_msg='config: datafeed.includeInvisible: not a boolean' ;;
long_datafeed_tag)
  printf '%sdatafeed:\n  tag: %s\n' "$base" "$(printf 'x%.0s' $(seq 101))" > $cfg
  want_msg='config: datafeed.tag: at most 100 characters' ;;
key_open)
  # secrets: a group/world-readable key is warned about (the fix named), not refused
  chmod 644 key.pem
  printf '%s' "$base" > $cfg; want_status=0
  want_msg="config: bot.privateKey.path: key.pem is group-readable, world-readable (mode 0644): run chmod 600 key.pem; with bridge.strictPermissions: true the bridge refuses to start" ;;
key_open_strict)
  chmod 640 key.pem
  printf '%sbridge:\n  strictPermissions: true\n' "$base" > $cfg
  want_msg="config: bot.privateKey.path: key.pem is group-readable (mode 0640): refused (bridge.strictPermissions is true); run chmod 600 key.pem" ;;
key_private_strict)
  chmod 600 key.pem
  printf '%sbridge:\n  strictPermissions: true\n' "$base" > $cfg
  want_status=0; want_msg='OK' ;;
example)
  # The documented example, with the key path pointed at the test key.
  sed 's|/etc/dfbridge/bot-key.pem|key.pem|' "$srcdir/dfbridge.example.yaml" > $cfg 2>/dev/null ||
    exit 1
  want_status=0; want_msg='OK (pod https://acme.symphony.com:443, agent https://acme-agent.symphony.com:8443, keyManager https://acme-km.symphony.com:8444' ;;
*)
  echo "unknown case $case_name"; exit 1 ;;
esac

out=$("$bin" --config "$cfg" --check 2>&1)
status=$?
echo "$out"
if [ "$status" -ne "$want_status" ]; then
  echo "FAIL: exit status $status, want $want_status"; exit 1
fi
if ! printf '%s' "$out" | grep -qF -- "$want_msg"; then
  echo "FAIL: output lacks: $want_msg"; exit 1
fi
if [ "$want_status" -eq 2 ]; then
  # One message: exactly one line of output.
  lines=$(printf '%s\n' "$out" | wc -l)
  if [ "$lines" -ne 1 ]; then echo "FAIL: $lines lines, want 1"; exit 1; fi
fi
echo "PASS"
