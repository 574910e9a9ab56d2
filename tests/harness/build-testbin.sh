#!/usr/bin/env bash
# Build the test clusters' binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kwok, CoreDNS), promtool (checks /metrics'
# exposition) and the test tailnet's headscale, tailscaled and tailscale from the Go
# module proxy, cached by version.
#
# Each product is built in its own throw-away wrapper module so that Go's
# minimal version selection never mixes their dependency graphs.
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

build_etcd() {
  local out="$CACHE/etcd-$ETCD_VERSION"
  [ -x "$out/etcd" ] && return 0
  log "building etcd $ETCD_VERSION"
  local dir="$WORK/etcd-$ETCD_VERSION"
  rm -rf "$dir"; mkdir -p "$dir" "$out.tmp"
  cd "$dir"
  go mod init guildnet.local/etcdwrap >/dev/null 2>&1
  cat > tools.go <<GO
//go:build tools
package tools
import _ "go.etcd.io/etcd/server/v3"
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags=-s -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_kwok() {
  local out="$CACHE/kwok-$KWOK_VERSION"
  if [ ! -x "$out/kwok" ]; then
    log "building kwok $KWOK_VERSION"
    rm -rf "$out.tmp"; mkdir -p "$out.tmp"
    GOBIN="$out.tmp" go install -trimpath -ldflags=-s "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    rm -rf "$out"; mv "$out.tmp" "$out"
  fi
  # The harness installs kwok's CRDs (Logs, PortForward, ...): keep them next to the binary
  # so tests never need the Go module cache or the network.
  if [ ! -d "$out/crd" ]; then
    local moddir
    moddir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$out/crd.tmp"
    cp -r "$moddir/kustomize/crd/bases" "$out/crd.tmp"
    chmod -R u+w "$out/crd.tmp"
    mv "$out/crd.tmp" "$out/crd"
  fi
}

build_kube() {
  local out="$CACHE/kube-$K8S_VERSION"
  local cmds="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy" have=1 c
  for c in $cmds; do [ -x "$out/$c" ] || have=0; done
  [ "$have" = 1 ] && return 0
  log "building kubernetes $K8S_VERSION (slow when cold)"
  local dir="$WORK/kube-$K8S_VERSION"
  rm -rf "$dir"; mkdir -p "$dir" "$out.tmp"
  # Keep what an earlier, smaller build produced: only the missing commands are built.
  for c in $cmds; do [ -x "$out/$c" ] && cp "$out/$c" "$out.tmp/$c"; done
  cd "$dir"
  local gomod goline staging minor
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
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
  cat > tools.go <<GO
//go:build tools
package tools
import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  go mod tidy
  local major=1 kminor
  kminor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$kminor -X $pkg.gitTreeState=clean"
  done
  for cmd in $cmds; do
    [ -x "$out.tmp/$cmd" ] && continue
    log "  go build $cmd"
    go build -trimpath -ldflags="$ld" -o "$out.tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_promtool() {
  local out="$CACHE/promtool-$PROMETHEUS_VERSION"
  [ -x "$out/promtool" ] && return 0
  log "building promtool (prometheus $PROMETHEUS_VERSION)"
  local dir="$WORK/promtool-$PROMETHEUS_VERSION"
  rm -rf "$dir"; mkdir -p "$dir" "$out.tmp"
  cd "$dir"
  go mod init guildnet.local/promtoolwrap >/dev/null 2>&1
  cat > tools.go <<GO
//go:build tools
package tools
import _ "github.com/prometheus/prometheus/cmd/promtool"
GO
  go get "github.com/prometheus/prometheus@$PROMETHEUS_VERSION"
  go mod tidy
  local mp="${PROMETHEUS_VERSION#v0.3}"  # "16.0" for v0.316.0 -> release 3.16.0
  local rel="3.$((10#${mp%%.*})).${mp#*.}"
  # remove_all_sd: no service-discovery plugins (every cloud SDK), which `check metrics`
  # never needs; the build is much smaller and faster.
  go build -trimpath -tags remove_all_sd \
    -ldflags="-s -X github.com/prometheus/common/version.Version=$rel" \
    -o "$out.tmp/promtool" github.com/prometheus/prometheus/cmd/promtool
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# CoreDNS for the real-node tier's cluster DNS: a small main package with only the plugins
# its Corefile uses (the stock build links every cloud provider's SDK).
build_coredns() {
  local out="$CACHE/coredns-$COREDNS_VERSION"
  [ -x "$out/coredns" ] && return 0
  log "building coredns $COREDNS_VERSION"
  local dir="$WORK/coredns-$COREDNS_VERSION"
  rm -rf "$dir"; mkdir -p "$dir" "$out.tmp"
  cd "$dir"
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
  go build -trimpath -ldflags=-s -o "$out.tmp/coredns" .
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# The test tailnet's control server. The module proxy refuses headscale's version list
# (403), which `go install pkg@version` asks for, so it builds through a wrapper module
# that requires the exact version.
build_headscale() {
  local out="$CACHE/headscale-$HEADSCALE_VERSION"
  [ -x "$out/headscale" ] && return 0
  log "building headscale $HEADSCALE_VERSION"
  local dir="$WORK/headscale-$HEADSCALE_VERSION"
  rm -rf "$dir"; mkdir -p "$dir" "$out.tmp"
  cd "$dir"
  local goline
  goline=$(go mod download -json "github.com/juanfont/headscale@$HEADSCALE_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' | xargs grep -m1 -E '^go [0-9]')
  printf 'module guildnet.local/hswrap\n\n%s\n\nrequire github.com/juanfont/headscale %s\n' \
    "$goline" "$HEADSCALE_VERSION" > go.mod
  cat > tools.go <<GO
//go:build tools
package tools
import _ "github.com/juanfont/headscale/cmd/headscale"
GO
  go mod tidy
  go build -trimpath -ldflags=-s -o "$out.tmp/headscale" github.com/juanfont/headscale/cmd/headscale
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# The test tailnet's nodes: tailscaled (userspace networking) and its CLI.
build_tailscale() {
  local out="$CACHE/tailscale-$TAILSCALE_VERSION"
  [ -x "$out/tailscaled" ] && [ -x "$out/tailscale" ] && return 0
  log "building tailscale $TAILSCALE_VERSION"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  GOBIN="$out.tmp" GOFLAGS="$GOFLAGS -mod=mod" go install -trimpath -ldflags=-s \
    "tailscale.com/cmd/tailscaled@$TAILSCALE_VERSION" "tailscale.com/cmd/tailscale@$TAILSCALE_VERSION"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

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
