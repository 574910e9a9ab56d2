#!/usr/bin/env bash
# Build the test clusters' binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kwok, CoreDNS), promtool (checks /metrics'
# exposition) and the test tailnet's headscale, tailscaled and tailscale from the Go
# module proxy, cached by version.
#
# Each product is built in its own throw-away wrapper module so that Go's
# minimal version selection never mixes their dependency graphs (`product` below).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
# Prometheus publishes its Go module as v0.3MM.P for release v3.MM.P.
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
# headscale v0.29.2 lists tailscale up to v1.98 in its supported capability versions.
HEADSCALE_VERSION=${HEADSCALE_VERSION:-v0.29.2}
TAILSCALE_VERSION=${TAILSCALE_VERSION:-v1.98.10}
CACHE=${GUILDNET_TESTBIN_CACHE:-$HOME/.cache/guildnet/testbin}
WORK=${GUILDNET_TESTBIN_WORK:-$HOME/.cache/guildnet/build}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

log() { printf '[build-testbin] %s\n' "$*" >&2; }

# The shape every product shares. Its cache entry is $CACHE/NAME-VERSION: that path is the
# cache key (CI's warm caches hold exactly these paths; changing one costs a cold rebuild).
# Unless the entry holds every BIN, RECIPE runs in a fresh throw-away directory
# $WORK/NAME-VERSION (its wrapper module's home) with two arguments: the directory to build
# into and the entry it replaces (which a partial earlier build may have left). The new
# entry replaces the old in one rename, so an interrupted build never leaves a half entry.
#   product NAME VERSION RECIPE BIN... (sets $out, the entry's path)
product() {
  local name=$1 version=$2 recipe=$3 bin have=1
  shift 3
  out="$CACHE/$name-$version"
  for bin in "$@"; do [ -x "$out/$bin" ] || have=0; done
  [ "$have" = 1 ] && return 0
  log "building $name $version"
  local dir="$WORK/$name-$version"
  rm -rf "$dir"
  mkdir -p "$dir" "$out.tmp"
  (
    cd "$dir"
    "$recipe" "$out.tmp" "$out"
  )
  rm -rf "$out"
  mv "$out.tmp" "$out"
}

# tools.go importing each PKG, so that `go mod tidy` keeps what building them needs.
tools_go() {
  {
    printf '//go:build tools\npackage tools\n'
    printf 'import _ "%s"\n' "$@"
  } > tools.go
}

# A field (Dir, GoMod, ...) of `go mod download -json MODULE@VERSION`.
module_field() {
  go mod download -json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}

etcd_recipe() {
  go mod init guildnet.local/etcdwrap >/dev/null 2>&1
  tools_go go.etcd.io/etcd/server/v3
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags=-s -o "$1/etcd" go.etcd.io/etcd/server/v3
}

kwok_recipe() {
  GOBIN="$1" go install -trimpath -ldflags=-s "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_kwok() {
  product kwok "$KWOK_VERSION" kwok_recipe kwok
  # The harness installs kwok's CRDs (Logs, PortForward, ...): keep them next to the binary
  # so tests never need the Go module cache or the network.
  if [ ! -d "$out/crd" ]; then
    local moddir
    moddir=$(module_field "sigs.k8s.io/kwok@$KWOK_VERSION" Dir)
    rm -rf "$out/crd.tmp"
    cp -r "$moddir/kustomize/crd/bases" "$out/crd.tmp"
    chmod -R u+w "$out/crd.tmp"
    mv "$out/crd.tmp" "$out/crd"
  fi
}

KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

kube_recipe() {
  local tmp=$1 prev=$2 c
  # Keep what an earlier, smaller build produced: only the missing commands are built.
  for c in "${KUBE_CMDS[@]}"; do
    if [ -x "$prev/$c" ]; then cp "$prev/$c" "$tmp/$c"; fi
  done
  local gomod goline staging minor
  gomod=$(module_field "k8s.io/kubernetes@$K8S_VERSION" GoMod)
  goline=$(grep -m1 -E '^go [0-9]' "$gomod")
  minor=${K8S_VERSION#v1.}
  # Every staging module required at the v0.0.0 placeholder gets v0.<minor>.<patch>.
  staging=$(grep -oE '^\s*k8s\.io/[A-Za-z0-9._/-]+ v0\.0\.0' "$gomod" | awk '{print $1}' | sort -u)
  {
    echo "module guildnet.local/kubewrap"
    echo
    echo "$goline"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m v0.0.0 => $m v0.$minor"; done
    echo ")"
  } > go.mod
  tools_go "${KUBE_CMDS[@]/#/k8s.io/kubernetes/cmd/}"
  go mod tidy
  local major=1 kminor
  kminor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$kminor -X $pkg.gitTreeState=clean"
  done
  for c in "${KUBE_CMDS[@]}"; do
    [ -x "$tmp/$c" ] && continue
    log "  go build $c"
    go build -trimpath -ldflags="$ld" -o "$tmp/$c" "k8s.io/kubernetes/cmd/$c"
  done
}

promtool_recipe() {
  go mod init guildnet.local/promtoolwrap >/dev/null 2>&1
  tools_go github.com/prometheus/prometheus/cmd/promtool
  go get "github.com/prometheus/prometheus@$PROMETHEUS_VERSION"
  go mod tidy
  local mp="${PROMETHEUS_VERSION#v0.3}"  # "16.0" for v0.316.0 -> release 3.16.0
  local rel="3.$((10#${mp%%.*})).${mp#*.}"
  # remove_all_sd: no service-discovery plugins (every cloud SDK), which `check metrics`
  # never needs; the build is much smaller and faster.
  go build -trimpath -tags remove_all_sd \
    -ldflags="-s -X github.com/prometheus/common/version.Version=$rel" \
    -o "$1/promtool" github.com/prometheus/prometheus/cmd/promtool
}

# CoreDNS for the real-node tier's cluster DNS: a small main package with only the plugins
# its Corefile uses (the stock build links every cloud provider's SDK).
coredns_recipe() {
  go mod init guildnet.local/corednswrap >/dev/null 2>&1
  cat > main.go <<GO
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
GO
  go get "github.com/coredns/coredns@$COREDNS_VERSION"
  go mod tidy
  go build -trimpath -ldflags=-s -o "$1/coredns" .
}

# The test tailnet's control server. The module proxy refuses headscale's version list
# (403), which `go install pkg@version` asks for, so it builds through a wrapper module
# that requires the exact version.
headscale_recipe() {
  local goline
  goline=$(grep -m1 -E '^go [0-9]' "$(module_field "github.com/juanfont/headscale@$HEADSCALE_VERSION" GoMod)")
  printf 'module guildnet.local/hswrap\n\n%s\n\nrequire github.com/juanfont/headscale %s\n' \
    "$goline" "$HEADSCALE_VERSION" > go.mod
  tools_go github.com/juanfont/headscale/cmd/headscale
  go mod tidy
  go build -trimpath -ldflags=-s -o "$1/headscale" github.com/juanfont/headscale/cmd/headscale
}

# The test tailnet's nodes: tailscaled (userspace networking) and its CLI.
tailscale_recipe() {
  GOBIN="$1" GOFLAGS="$GOFLAGS -mod=mod" go install -trimpath -ldflags=-s \
    "tailscale.com/cmd/tailscaled@$TAILSCALE_VERSION" "tailscale.com/cmd/tailscale@$TAILSCALE_VERSION"
}

build_etcd() { product etcd "$ETCD_VERSION" etcd_recipe etcd; }
build_kube() { product kube "$K8S_VERSION" kube_recipe "${KUBE_CMDS[@]}"; }  # slow when cold
build_promtool() { product promtool "$PROMETHEUS_VERSION" promtool_recipe promtool; }
build_coredns() { product coredns "$COREDNS_VERSION" coredns_recipe coredns; }
build_headscale() { product headscale "$HEADSCALE_VERSION" headscale_recipe headscale; }
build_tailscale() { product tailscale "$TAILSCALE_VERSION" tailscale_recipe tailscaled tailscale; }

what=${1:-all}
case "$what" in
  etcd) build_etcd ;;
  kwok) build_kwok ;;
  kube) build_kube ;;
  coredns) build_coredns ;;
  promtool) build_promtool ;;
  headscale) build_headscale ;;
  tailscale) build_tailscale ;;
  tailnet) build_headscale; build_tailscale ;;
  all) build_etcd; build_kwok; build_kube; build_coredns; build_promtool; build_headscale; build_tailscale ;;
  *) echo "usage: $0 [all|etcd|kwok|kube|coredns|promtool|headscale|tailscale|tailnet]" >&2; exit 2 ;;
esac
log "ok: $CACHE"
