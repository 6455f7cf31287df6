#!/usr/bin/env bash
# Makes (once) a clean Debian 12 root file system from Debian's own packages,
# with debootstrap, and prints the path of its tarball. The deployment tests
# use it: `docker import` makes the offline base image of docker/Dockerfile
# from it (no registry is reachable here), and the package test unpacks it
# into a chroot to install the .deb packages on a clean system.
#
#   scripts/debian-base.sh            # prints the tarball's path, making it if missing
#   scripts/debian-base.sh --rebuild  # makes it again
#
# Environment:
#   DF_BASE_CACHE    folder of the tarball (default /var/cache/dfbridge-ci)
#   DF_DEBIAN_MIRROR the mirror debootstrap reads (default: the first
#                    deb.debian.org-style URI in this machine's apt sources,
#                    else http://deb.debian.org/debian)
# Needs root (debootstrap). Safe to run from several tests at once: a lock
# makes the second wait for the first and reuse its tarball.
set -euo pipefail

cache=${DF_BASE_CACHE:-/var/cache/dfbridge-ci}
tarball="$cache/bookworm-minbase.v2.tar" # .vN: bump when what is made changes
rebuild=0
for a in "$@"; do
  case "$a" in
    --rebuild) rebuild=1 ;;
    *) echo "usage: scripts/debian-base.sh [--rebuild]" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "debian-base: debootstrap needs root" >&2
  exit 1
fi

mirror=${DF_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # The machine's own Debian mirror (deb822 or one-line sources), so that the
  # base is made from where this machine already gets its packages.
  mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list.d/*.list 2>/dev/null \
           | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 900 9 || { echo "debian-base: timed out waiting for $cache/.lock" >&2; exit 1; }

if [ "$rebuild" = 0 ] && [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "debian-base: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y --no-install-recommends debootstrap >&2; }
fi

root=$(mktemp -d "$cache/rootfs.XXXXXX")
chmod 755 "$root" # mktemp made it 0700: the image's / must be 0755 for non-root users
trap 'rm -rf "$root" "$tarball.tmp"' EXIT
echo "debian-base: debootstrap --variant=minbase bookworm from $mirror" >&2
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1; then
  echo "debian-base: debootstrap failed; the end of $cache/debootstrap.log:" >&2
  tail -n 30 "$cache/debootstrap.log" >&2
  exit 1
fi
# The security and updates suites too, as a stock image has them; no
# downloaded .debs or package lists kept in the image.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian*}/debian-security bookworm-security main
EOF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* || true
tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
