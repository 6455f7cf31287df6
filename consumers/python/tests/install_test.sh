#!/usr/bin/env bash
# ctest python_install: the README's offline install, exactly: a venv that sees
# Debian's python3-zmq and python3-msgpack, `pip install --no-build-isolation
# --no-index` of consumers/python (no PyPI), then the installed package (not the
# source tree) is imported from another folder and its API is there.
#   install_test.sh SOURCE_DIR
set -u
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "python_install: $*"; exit 1; }
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv" || fail "venv could not be made"
# a copy: pip's build writes build/ and *.egg-info next to the sources
cp -r "$src/consumers/python" "$tmp/pkg"
rm -rf "$tmp/pkg/build" "$tmp/pkg"/*.egg-info
"$tmp/venv/bin/pip" install --quiet --no-build-isolation --no-index "$tmp/pkg" \
  > "$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; fail "pip install failed"; }
cd "$tmp" || exit 1
out=$("$tmp/venv/bin/python" - <<'PY'
import os, dfconsumer
from dfconsumer import DatafeedLoop, RealTimeEventListener, event_listener_context
assert "site-packages" in dfconsumer.__file__, dfconsumer.__file__
loop = DatafeedLoop("tcp://127.0.0.1:5556")
assert sorted(loop.stats())[:3] and "gaps" in loop.stats()
print(dfconsumer.__version__, event_listener_context.get())
PY
) || fail "the installed package does not import"
[ "$out" = "0.1.0 main-task" ] || fail "unexpected: $out"
echo "python_install: installed offline and imported: $out"
