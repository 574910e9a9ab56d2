#!/usr/bin/env bash
# Build GuildNet's workspace images locally, without any registry, cached by version.
#
# Each image becomes a docker-archive tarball whose embedded reference is EXACTLY the one
# GuildNet uses (a preset's image, the pause image containerd's CRI config names), so a
# real kubelet+containerd runs it after `ctr -n k8s.io images import ARCHIVE` with no pull.
# Root filesystems come from one cached debootstrap base (minbase, the mirror apt uses);
# packing is umoci (OCI layout) then skopeo (docker-archive with the reference).
#
# Usage: build-images.sh [all|pause|code-server|jupyter|web-app|rethinkdb]...
#        build-images.sh paths      # print "name reference archive" per image, build nothing
# Needs root (debootstrap, chroot) and: debootstrap umoci skopeo gcc (libc6-dev) go.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${GUILDNET_IMAGE_CACHE:-$HOME/.cache/guildnet/images}
WORK=${GUILDNET_IMAGE_WORK:-$HOME/.cache/guildnet/build/images}
SUITE=${GUILDNET_IMAGE_SUITE:-bookworm}
K8S_VERSION=${K8S_VERSION:-v1.36.3}
RETHINKDB_DIR=${GUILDNET_RETHINKDB_DIR:-/work/shared/tools/rethinkdb}
PATH_IN_IMAGE=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

# The table: name, reference, archive file (a recipe revision "-rN" in the file name makes a
# changed recipe rebuild). tests/harness/images.py holds the same table; a unit test compares
# them through `build-images.sh paths`.
PAUSE_REF=localhost/pause:3.10
CODE_SERVER_VERSION=4.139.1
CODE_SERVER_REF=codercom/code-server:$CODE_SERVER_VERSION
NODE_VERSION=24.11.1
JUPYTERLAB_VERSION=4.6.6
JUPYTER_REF=quay.io/jupyter/base-notebook:lab-$JUPYTERLAB_VERSION
WHOAMI_VERSION=v1.10.3
WHOAMI_REF=traefik/whoami:$WHOAMI_VERSION
RETHINKDB_VERSION=2.4.4
RETHINKDB_REF=rethinkdb:$RETHINKDB_VERSION
ALL_IMAGES="pause code-server jupyter web-app rethinkdb"

ref_of() {
  case "$1" in
    pause) echo "$PAUSE_REF" ;;
    code-server) echo "$CODE_SERVER_REF" ;;
    jupyter) echo "$JUPYTER_REF" ;;
    web-app) echo "$WHOAMI_REF" ;;
    rethinkdb) echo "$RETHINKDB_REF" ;;
    *) return 1 ;;
  esac
}

archive_of() {
  case "$1" in
    pause) echo "$CACHE/pause-3.10-r1.tar" ;;
    code-server) echo "$CACHE/code-server-$CODE_SERVER_VERSION-r1.tar" ;;
    jupyter) echo "$CACHE/jupyter-lab-$JUPYTERLAB_VERSION-r1.tar" ;;
    web-app) echo "$CACHE/whoami-$WHOAMI_VERSION-r1.tar" ;;
    rethinkdb) echo "$CACHE/rethinkdb-$RETHINKDB_VERSION-r1.tar" ;;
    *) return 1 ;;
  esac
}

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { printf '[build-images] error: %s\n' "$*" >&2; exit 1; }

need() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null || die "$cmd not found: apt-get install $pkg"
}

# --- chroot helpers ---------------------------------------------------------------------

MOUNTS=()  # every mount this run made, unmounted in reverse order on exit

cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  MOUNTS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_chroot() {
  local root=$1
  mount -t proc proc "$root/proc"; MOUNTS+=("$root/proc")
  mount -t sysfs sysfs "$root/sys"; MOUNTS+=("$root/sys")
  mount --bind /dev "$root/dev"; MOUNTS+=("$root/dev")
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"; MOUNTS+=("$root/dev/pts")
  mount -t tmpfs tmpfs "$root/tmp"; MOUNTS+=("$root/tmp")
  # Outgoing HTTPS may pass an intercepting proxy: pip and npm in the chroot need the host's
  # CA bundle and resolver for the build; prepare_final() restores the image's own files.
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt.host"
  fi
}

umount_chroot() {
  local root=$1 i keep=()
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    case "${MOUNTS[$i]}" in
      "$root"/*) umount -l "${MOUNTS[$i]}" ;;
    esac
  done
  for i in "${MOUNTS[@]}"; do
    case "$i" in "$root"/*) ;; *) keep+=("$i") ;; esac
  done
  MOUNTS=("${keep[@]}")
}

in_root() {
  local root=$1; shift
  chroot "$root" /usr/bin/env -i PATH="$PATH_IN_IMAGE" HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"
}

apt_in() {
  local root=$1; shift
  in_root "$root" apt-get -o Acquire::Check-Valid-Until=false -qq update
  in_root "$root" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Strip what a container never needs: apt lists and caches, docs, man pages, locales, logs.
slim_root() {
  local root=$1
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/log/apt/* \
    "$root"/root/.cache "$root"/root/.npm "$root"/etc/ssl/certs/ca-certificates.crt.host \
    "$root"/tmp/* 2>/dev/null || true
  : > "$root/etc/resolv.conf"
}

debian_mirror() {
  # The mirror apt uses for the main archive (deb822 or one-line sources), else deb.debian.org.
  if [ -n "${GUILDNET_DEBIAN_MIRROR:-}" ]; then echo "$GUILDNET_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
      2>/dev/null | awk -v suite="$SUITE" '
    /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { if ($(i+1) == suite) { print $i; exit } } }
    /^URIs:/ { u = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite && u != "") { print u; exit } }
  ')
  echo "${uri:-http://deb.debian.org/debian}"
}

# The shared base: debootstrap minbase of $SUITE, cached as a tarball by suite.
base_tarball() {
  local out="$CACHE/base/debian-$SUITE-minbase.tar"
  if [ ! -f "$out" ]; then
    need debootstrap debootstrap
    local mirror dir="$WORK/base-$SUITE"
    mirror=$(debian_mirror)
    log "debootstrap $SUITE minbase from $mirror (about 2-3 min)"
    rm -rf "$dir"; mkdir -p "$dir" "$CACHE/base"
    debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" >"$WORK/debootstrap-$SUITE.log" 2>&1 \
      || die "debootstrap failed, see $WORK/debootstrap-$SUITE.log"
    echo "deb $mirror $SUITE main" > "$dir/etc/apt/sources.list"
    # Containers never start services while packages install.
    printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"; chmod 755 "$dir/usr/sbin/policy-rc.d"
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n' \
      > "$dir/etc/dpkg/dpkg.cfg.d/01-container-slim"
    slim_root "$dir"
    tar --numeric-owner -C "$dir" -cf "$out.tmp" .
    mv "$out.tmp" "$out"
    rm -rf "$dir"
  fi
  echo "$out"
}

# A fresh root filesystem in $2 from the base tarball, ready for chroot.
new_root() {
  local name=$1 root=$2 base
  base=$(base_tarball)
  rm -rf "$root"; mkdir -p "$root"
  tar --numeric-owner -C "$root" -xf "$base"
  log "$name: root filesystem from $(basename "$base")"
}

# --- packing ----------------------------------------------------------------------------

# pack NAME ROOTFS [umoci config options...]: one-layer image, written atomically to the archive.
pack() {
  local name=$1 root=$2; shift 2
  local ref out oci tag=img
  ref=$(ref_of "$name"); out=$(archive_of "$name")
  oci="$WORK/$name.oci"
  rm -rf "$oci" "$WORK/$name.layer.tar"
  umoci init --layout "$oci"
  umoci new --image "$oci:$tag"
  tar --numeric-owner --xattrs -C "$root" -cf "$WORK/$name.layer.tar" .
  umoci raw add-layer --image "$oci:$tag" --history.created_by "guildnet build-images.sh $name" \
    "$WORK/$name.layer.tar"
  rm -f "$WORK/$name.layer.tar"
  umoci config --image "$oci:$tag" --no-history --os linux --architecture amd64 "$@"
  mkdir -p "$CACHE"
  rm -f "$out.tmp"
  skopeo copy --quiet "oci:$oci:$tag" "docker-archive:$out.tmp:$ref"
  mv "$out.tmp" "$out"
  rm -rf "$oci"
  log "$name: $ref -> $out ($(du -h "$out" | cut -f1))"
}

# --- the images -------------------------------------------------------------------------

# pause: the sandbox image containerd's CRI config names (sandbox_image), from the pause.c
# of the Kubernetes release the test tier runs; static, nothing else in the image.
build_pause() {
  need gcc "gcc libc6-dev"
  need go "Go 1.26+"
  local moddir dir="$WORK/pause"
  moddir=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$dir"; mkdir -p "$dir/rootfs"
  gcc -Os -Wall -Werror -static -DVERSION="v3.10-guildnet-$K8S_VERSION" \
    -o "$dir/rootfs/pause" "$moddir/build/pause/linux/pause.c"
  strip "$dir/rootfs/pause"
  pack pause "$dir/rootfs" --config.user 65535:65535 --config.entrypoint /pause \
    --config.env "PATH=$PATH_IN_IMAGE"
  rm -rf "$dir"
}

build_one() {
  local name=$1 out start
  out=$(archive_of "$name") || die "unknown image $name (one of: $ALL_IMAGES)"
  if [ -f "$out" ]; then
    log "$name: cached $out"
    return 0
  fi
  need umoci umoci
  need skopeo skopeo
  [ "$(id -u)" = 0 ] || die "building images needs root (debootstrap, chroot, file ownership)"
  mkdir -p "$WORK" "$CACHE"
  start=$(date +%s)
  log "$name: building $(ref_of "$name")"
  "build_${name//-/_}"
  log "$name: built in $(( $(date +%s) - start ))s"
}

if [ "$#" -eq 0 ]; then set -- all; fi
if [ "$1" = paths ]; then
  for n in $ALL_IMAGES; do printf '%s %s %s\n' "$n" "$(ref_of "$n")" "$(archive_of "$n")"; done
  exit 0
fi
targets=()
for arg in "$@"; do
  case "$arg" in
    all) for n in $ALL_IMAGES; do targets+=("$n"); done ;;
    pause|code-server|jupyter|web-app|rethinkdb) targets+=("$arg") ;;
    *) echo "usage: $0 [all|pause|code-server|jupyter|web-app|rethinkdb]... | paths" >&2; exit 2 ;;
  esac
done
for n in "${targets[@]}"; do build_one "$n"; done
log "ok: $CACHE"
