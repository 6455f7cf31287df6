#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz (README "Fuzzing").
#   scripts/fuzz.sh [options] [TARGET] [SECONDS]
# TARGET: one name of tests/fuzz/CMakeLists.txt (bridge_json ...), "" or
# "all" = every target in turn; SECONDS per target (default 25).
# Builds build-fuzz/ with clang (-DDF_FUZZ=ON), then runs each target on a
# COPY of its seed corpus and regression inputs (build-fuzz/fuzz-work/T/),
# with -max_len per target, -timeout=10, -rss_limit_mb=2048. A crash, leak,
# timeout or out-of-memory stops the run: the input is saved under
# build-fuzz/fuzz-work/T/artifacts/ (the path is printed) and the script
# exits 1. Copy it to tests/fuzz/regressions/T/ once fixed.
# Each run appends one line to the run log (build-fuzz/fuzz-runs.tsv, or
# --log FILE): date, target, seconds, execs, exec/s, coverage at start and
# end, result.
# Options:
#   --update-corpus  merge what the run found into tests/fuzz/corpus/T
#                    (minimised with -merge=1; the only way this script
#                    writes into the committed corpus)
#   --summary        print the totals per target from the run log and exit
#   --log FILE       the run log to append to / summarise
#   --no-build       use build-fuzz as it is
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
bdir="$top/build-fuzz"
log="$bdir/fuzz-runs.tsv"
update=0
summary=0
build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --update-corpus) update=1 ;;
    --summary) summary=1 ;;
    --no-build) build=0 ;;
    --log) shift; log="$1" ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) args+=("$1") ;;
  esac
  shift
done
target="${args[0]:-}"
seconds="${args[1]:-25}"
[ "$target" = all ] && target=""

if [ "$summary" = 1 ]; then
  [ -f "$log" ] || { echo "fuzz.sh: no run log $log" >&2; exit 1; }
  awk -F'\t' '
    $1 !~ /^#/ && NF >= 8 { s[$2] += $3; e[$2] += $4; n[$2]++; if ($8 != "ok") bad[$2]++ }
    END {
      printf "| target | runs | total seconds | total execs | exec/s | findings |\n"
      printf "|---|---|---|---|---|---|\n"
      for (t in s) printf "| %s | %d | %d | %d | %d | %d |\n", t, n[t], s[t], e[t], s[t] ? e[t] / s[t] : 0, bad[t]
    }' "$log" | { read -r h1; read -r h2; echo "$h1"; echo "$h2"; sort; }
  exit 0
fi

case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a number" >&2; exit 2 ;; esac

# Longest input per target: what a decoder meets in practice, small enough
# to keep executions fast.
max_len() {
  case "$1" in
    bridge_replay_request|consumer_replay_end) echo 4096 ;;
    bridge_cmdreq) echo 65536 ;; # attachments and data maps
    bridge_config|consumer_checkpoint|common_cert) echo 8192 ;;
    *) echo 16384 ;;
  esac
}

if [ "$build" = 1 ]; then
  command -v clang >/dev/null || { echo "fuzz.sh: clang is missing (scripts/install-deps.sh)" >&2; exit 2; }
  cmake -S "$top" -B "$bdir" -DCMAKE_C_COMPILER=clang -DDF_FUZZ=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
list="$bdir/tests/fuzz/targets.txt"
[ -f "$list" ] || { echo "fuzz.sh: $list missing: configure build-fuzz first" >&2; exit 2; }
mapfile -t all < <(grep -v '^$' "$list")
if [ -n "$target" ]; then
  printf '%s\n' "${all[@]}" | grep -qx "$target" ||
    { echo "fuzz.sh: unknown target '$target' (one of: ${all[*]})" >&2; exit 2; }
  run=("$target")
else
  run=("${all[@]}")
fi
if [ "$build" = 1 ]; then
  cmake --build "$bdir" -j"$(nproc 2>/dev/null || echo 2)" --target "${run[@]/#/fuzz_}" >/dev/null
fi

[ -f "$log" ] || printf '# date\ttarget\tseconds\texecs\texec/s\tcov_start\tcov_end\tresult\n' >"$log"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for t in "${run[@]}"; do
  work="$bdir/fuzz-work/$t"
  # the work copy keeps what earlier runs found; the committed files are copied in anew
  mkdir -p "$work/corpus" "$work/artifacts"
  for d in "$top/tests/fuzz/corpus/$t" "$top/tests/fuzz/regressions/$t"; do
    [ -d "$d" ] && find "$d" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$work/corpus/" \;
  done
  out="$work/last.log"
  start=$(date +%s)
  set +e
  "$bdir/tests/fuzz/fuzz_$t" "$work/corpus" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
      >"$out" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$out" | tail -1)
  execs=${execs:-0}
  cov0=$(sed -n 's/^#[0-9]*[[:space:]]*INITED cov: \([0-9]*\).*/\1/p' "$out" | head -1)
  cov1=$(sed -n 's/^#[0-9]*[[:space:]]*[A-Z]*[[:space:]]*cov: \([0-9]*\).*/\1/p' "$out" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
  [ -n "$rate" ] || rate=$(( took > 0 ? execs / took : execs ))
  result=ok
  if [ "$rc" != 0 ]; then
    result="finding(rc=$rc)"
    status=1
    echo "== fuzz $t: FINDING (exit $rc) after $took s; the log: $out"
    grep -E '^==[0-9]+==ERROR|^SUMMARY|Test unit written to|ALARM|out-of-memory|runtime error' "$out" | head -8
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -1)
    [ -n "$art" ] && echo "   input: $art  (reproduce: $bdir/tests/fuzz/fuzz_$t $art)"
  else
    echo "== fuzz $t: ok, $took s, $execs execs ($rate/s), coverage ${cov0:-?} -> ${cov1:-?}"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$took" "$execs" "$rate" \
    "${cov0:-0}" "${cov1:-0}" "$result" >>"$log"
  if [ "$update" = 1 ] && [ "$rc" = 0 ]; then
    dest="$top/tests/fuzz/corpus/$t"
    mkdir -p "$dest"
    merged="$work/merged"
    rm -rf "$merged"
    mkdir -p "$merged"
    "$bdir/tests/fuzz/fuzz_$t" -merge=1 -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 "$merged" "$dest" "$work/corpus" >"$work/merge.log" 2>&1
    rm -f "$dest"/*
    cp "$merged"/* "$dest"/ 2>/dev/null || true
    echo "   corpus $dest: $(ls "$dest" | wc -l) files, $(du -sk "$dest" | cut -f1) KiB"
  fi
done
exit "$status"
