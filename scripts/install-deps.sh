#!/usr/bin/env bash
# Installs every Debian package the build, the demo and the tests need.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates openssl curl
  libzmq3-dev libczmq-dev libmsgpack-dev libcurl4-openssl-dev libssl-dev
  libyaml-dev libyajl-dev libmicrohttpd-dev libjansson-dev libgnutls28-dev
  libjson-c-dev libcjson-dev
  python3 python3-zmq python3-msgpack python3-yaml python3-jsonschema
  python3-venv python3-pip python3-setuptools python3-wheel
  valgrind procps libtsan2 util-linux mount
  clang libclang-rt-14-dev
  docker.io docker-compose debootstrap prometheus iproute2 systemd systemd-container
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Node 20 (the Node package and the AsyncAPI check): the machine's own, else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing nodejs npm (Debian's)" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y --no-install-recommends nodejs npm
fi

# npm packages, from each package-lock.json: `npm ci` only when node_modules is
# missing or older than the lock file (so a second run needs no network).
top=$(cd "$(dirname "$0")/.." && pwd)
for dir in consumers/node schemas; do
  d="$top/$dir"
  [ -f "$d/package-lock.json" ] || continue
  stamp="$d/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$d/package-lock.json" -nt "$stamp" ]; then
    echo "install-deps: npm ci in $dir" >&2
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
