#!/usr/bin/env bash
# Run a command inside a fresh, private network namespace prepared for the
# GuildNet test cluster.
#
# Why: kube-apiserver refuses to proxy to loopback pod IPs, and tests may only
# send traffic to loopback or to addresses inside a namespace the run created.
# Inside the namespace there is nothing but `lo`, with 198.18.0.1 assigned
# (kube-apiserver --advertise-address, kwok node IP) and every 198.18.0.0/16
# address treated as local ("any-IP" route), so fake pod backends can listen on
# their pod IP. Nothing outside the namespace is reachable.
#
# Usage: tests/harness/netns-run.sh CMD [ARGS...]
# Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN) and util-linux `unshare`.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

if [ "${GUILDNET_NETNS_INNER:-}" != "1" ]; then
  # Re-exec ourselves inside a new network namespace; the namespace dies with
  # its last process, so no cleanup is needed.
  exec env GUILDNET_NETNS_INNER=1 unshare --net -- "$0" "$@"
fi

ip link set lo up
ip addr add 198.18.0.1/32 dev lo
ip route add local 198.18.0.0/16 dev lo table local
export GUILDNET_NETNS=1
# Nothing outside this namespace is reachable: make sure no tool tries a proxy.
unset http_proxy https_proxy all_proxy no_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY NO_PROXY
unset GUILDNET_NETNS_INNER
exec "$@"
