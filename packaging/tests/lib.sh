# shellcheck shell=bash disable=SC2154  # src build work root cache: the caller's
# Shared by packages_install.sh and packages_systemd.sh (sourced, not run).
# The caller sets: src build work root cache, the arrays mounts, and the
# functions step die (its cleanup unmounts "${mounts[@]}" in reverse order).

# Commands in the root: env -i with a plain PATH. in_root_exec replaces the
# shell (a background job of a function is a subshell: `exec` makes $! the program).
in_root_exec() { exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                   LANG=C.UTF-8 "$@"; }
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
              LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# cpack -G DEB of this build into $work/debs; the three packages must be there.
pkg_build_debs() {
  step "cpack -G DEB"
  mkdir -p "$work/debs"
  (cd "$build" && cpack -G DEB -B "$work/cpack") >"$work/cpack.log" 2>&1 \
    || { cat "$work/cpack.log"; die "cpack"; }
  cp "$work"/cpack/*.deb "$work/debs/"
  local p
  for p in dfbridge libdfconsumer0 libdfconsumer-dev; do
    ls "$work/debs/${p}_"*.deb >/dev/null 2>&1 || die "no ${p}_*.deb"
  done
}

# scripts/debian-base.sh's clean Debian 12 root unpacked at $root, with the host's resolver.
pkg_unpack_base() {
  local base
  base=$("$src/scripts/debian-base.sh") || die "scripts/debian-base.sh"
  step "unpack $base"
  mkdir -p "$root"
  tar -C "$root" -xf "$base" || die "tar -x $base"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
}

# /proc in the root, and apt's archives and lists from $cache/apt-{archives,lists}
# (bind-mounted: a second run downloads nothing) under the lock $cache/.apt-lock,
# taken on fd 8 and held until the caller closes fd 8.
pkg_apt_setup() {
  mkdir -p "$cache/apt-archives/partial" "$cache/apt-lists/partial"
  exec 8>"$cache/.apt-lock"
  flock -w 300 8 || die "timed out waiting for $cache/.apt-lock"
  mount -t proc proc "$root/proc" && mounts+=("$root/proc") || die "mount proc"
  mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives" \
    && mounts+=("$root/var/cache/apt/archives") || die "bind apt archives"
  mount --bind "$cache/apt-lists" "$root/var/lib/apt/lists" \
    && mounts+=("$root/var/lib/apt/lists") || die "bind apt lists"
  echo 'APT::Sandbox::User "root";' >"$root/etc/apt/apt.conf.d/99dfb-test" # the cache dirs are root's
}
