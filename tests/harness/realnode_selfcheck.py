"""Start a real-node cluster, run a web app, reach it, stop, and list whatever was left behind.

Run inside a fresh namespace from tests/harness/netns-run.sh (tests/integration/
test_realnode_teardown.py does) so that even the veth layout of `make dev-cluster` changes
only that namespace::

    tests/harness/netns-run.sh .venv/bin/python -m tests.harness.realnode_selfcheck --network veth

Prints one JSON object: timings, what answered, and `left` (processes, mounts, cgroup dirs,
links and iptables chains that outlived `stop()`; empty when teardown is complete).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness import realnode
from tests.harness.images import IMAGES
from tests.harness.realnode import RealNodeCluster

#: The web-app preset's image (go-httpbin: `/get` echoes, `-help` prints its flags).
WEB_IMAGE = IMAGES["web-app"].reference


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=3) as resp:
        return int(resp.status)


def _poll(fn: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
            if value:
                return value
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def _workload(cluster: RealNodeCluster) -> dict[str, Any]:
    """A web-app Deployment and Service; returns the pod IP and ClusterIP."""
    labels = {"app": "check"}
    cluster._create(
        "/apis/apps/v1/namespaces/default/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "check"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": WEB_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["--port", "8080"],
                            }
                        ]
                    },
                },
            },
        },
    )
    cluster._create(
        "/api/v1/namespaces/default/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "check"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )

    def pod_ip() -> str | None:
        pods = cluster._get_json("/api/v1/namespaces/default/pods?labelSelector=app%3Dcheck")
        for pod in (pods or {}).get("items", []):
            conds = pod.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                return str(pod["status"]["podIP"])
        return None

    ip = _poll(pod_ip, 90.0)
    svc = cluster._get_json("/api/v1/namespaces/default/services/check") or {}
    return {"pod_ip": ip, "cluster_ip": svc.get("spec", {}).get("clusterIP")}


def leftovers(cluster: RealNodeCluster) -> dict[str, list[str]]:
    """What of `cluster` is still there after stop()."""
    work = str(cluster.work_dir)
    mounts = [
        line.split(" ")[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split(" ")[4].startswith(work)
    ]
    links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=False
    ).stdout
    link_names = [ln.split(": ")[1].split("@")[0] for ln in links.splitlines() if ": " in ln]
    ours = {realnode.BRIDGE, realnode.SERVICE_DEV, realnode.HOST_VETH}
    veths = [
        ln.split(": ")[1].split("@")[0] for ln in links.splitlines() if "veth" in ln or "@if" in ln
    ]
    rules = [
        line
        for cmd in ("iptables-save", "ip6tables-save")
        for line in subprocess.run(
            [cmd], capture_output=True, text=True, check=False
        ).stdout.splitlines()
    ]
    routes = subprocess.run(
        ["ip", "route", "show"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "processes": [str(p) for p in realnode._pids_mentioning(f"{work}/")],
        "mounts": mounts,
        "cgroups": [str(d) for d in realnode.cgroup_dirs(cluster.cgroup_root) if d.exists()],
        "links": sorted({n for n in link_names if n in ours} | set(veths)),
        "routes": [r for r in routes if r.startswith("198.19.")],
        "iptables": [r for r in rules if "KUBE-" in r],
        "work_dir": [work] if Path(work).exists() else [],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.realnode_selfcheck")
    parser.add_argument("--network", choices=("shared", "veth"), default="shared")
    parser.add_argument("--no-dns", action="store_true")
    args = parser.parse_args(argv)
    cluster = RealNodeCluster(images=["web-app"], network=args.network, dns=not args.no_dns)
    result: dict[str, Any] = {"network": args.network}
    try:
        cluster.start()
        result["startup"] = cluster.timings.line()
        result["host_changes"] = cluster.host_changes
        work = _workload(cluster)
        result.update(work)
        if work["pod_ip"]:
            result["pod_status"] = _poll(lambda: _get(f"http://{work['pod_ip']}:8080/get"), 10)
        if work["cluster_ip"]:
            result["service_status"] = _poll(lambda: _get(f"http://{work['cluster_ip']}/get"), 30)
        if cluster.dns:
            name = "check.default.svc.cluster.local"
            result["dns"] = _poll(lambda: realnode.dns_query(cluster.dns_service_ip, name), 20)
    finally:
        t0 = time.monotonic()
        cluster.stop()
        result["stop_seconds"] = round(time.monotonic() - t0, 1)
        time.sleep(0.5)  # network namespaces are destroyed asynchronously
        result["left"] = {k: v for k, v in leftovers(cluster).items() if v}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
