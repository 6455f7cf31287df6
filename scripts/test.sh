#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds everything with
# -Werror, runs every ctest test twice in a row (a flaky test fails the run),
# then runs the deployment tests once (ctest label `deploy`: Docker images and
# compose with a dockerd of their own, .deb packages in a clean Debian root,
# network namespaces; one at a time, they are heavy), then rebuilds with
# ASan/UBSan and runs the suite again, then rebuilds with
# ThreadSanitizer and runs every test that starts threads (ctest label
# `threads`), then runs every fuzz target for about 20 s (scripts/fuzz.sh,
# clang). Exits non-zero on any failure. Used by .ci/run.
#   scripts/test.sh [--no-sanitize] [--once] [--no-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

sanitize=1
rounds=2
fuzz=1
for a in "$@"; do
  case "$a" in
    --no-sanitize) sanitize=0 ;;
    --once) rounds=1 ;;
    --no-fuzz) fuzz=0 ;;
    *) echo "usage: scripts/test.sh [--no-sanitize] [--once] [--no-fuzz]" >&2; exit 2 ;;
  esac
done

"$top/scripts/install-deps.sh"

jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (RelWithDebInfo, -Werror)"
cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$top/build" -j"$jobs"

for round in $(seq 1 "$rounds"); do
  echo "== tests (round $round of $rounds)"
  ctest --test-dir "$top/build" --output-on-failure -j"$jobs" --timeout 600 -LE deploy
done

echo "== deployment tests (label deploy, once, one at a time)"
ctest --test-dir "$top/build" --output-on-failure -j1 --timeout 1500 -L deploy --no-tests=ignore

if [ "$sanitize" = 1 ]; then
  echo "== build (ASan + UBSan)"
  cmake -S "$top" -B "$top/build-asan" -DCMAKE_BUILD_TYPE=Debug -DDF_SANITIZE=ON >/dev/null
  cmake --build "$top/build-asan" -j"$jobs"
  echo "== tests under ASan + UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$top/build-asan" --output-on-failure -j"$jobs" --timeout 900 -LE 'no_sanitize|deploy'
  echo "== build (ThreadSanitizer)"
  cmake -S "$top" -B "$top/build-tsan" -DCMAKE_BUILD_TYPE=Debug -DDF_TSAN=ON >/dev/null
  cmake --build "$top/build-tsan" -j"$jobs"
  echo "== tests that start threads, under ThreadSanitizer (label threads)"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=$top/tests/tsan.supp" \
    ctest --test-dir "$top/build-tsan" --output-on-failure -j"$jobs" --timeout 900 -L threads \
          -LE 'no_sanitize|deploy' --no-tests=error
fi
if [ "$fuzz" = 1 ]; then
  echo "== fuzz smoke: every target for 20 s (scripts/fuzz.sh)"
  "$top/scripts/fuzz.sh" "" 20
fi
echo "== all tests passed"
