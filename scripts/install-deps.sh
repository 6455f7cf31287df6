#!/usr/bin/env bash
# Installs every Debian package the build, the demo and the tests need.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates openssl curl
  libzmq3-dev libczmq-dev libmsgpack-dev libcurl4-openssl-dev libssl-dev
  libyaml-dev libyajl-dev libmicrohttpd-dev libjansson-dev libgnutls28-dev
  libjson-c-dev libcjson-dev
  python3 python3-zmq python3-msgpack python3-yaml
  valgrind procps libtsan2 util-linux mount
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
