"""The real-node cluster's whole life in a fresh namespace: start, serve, stop, nothing left.

Each layout runs `tests/harness/realnode_selfcheck.py` under its own netns-run.sh (a new
network namespace inside this one), so the veth layout of `make dev-cluster` is exercised
without touching this machine's real host namespace, and the run is a second cluster
beside the session's `real_cluster` (concurrent clusters must not collide).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import realnode

pytestmark = [pytest.mark.integration, pytest.mark.realnode, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("network", ["shared", "veth"])
def test_start_serve_stop_leaves_nothing(network: str) -> None:
    proc = subprocess.run(
        [
            str(ROOT / "tests/harness/netns-run.sh"),
            sys.executable,
            "-m",
            "tests.harness.realnode_selfcheck",
            "--network",
            network,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n[realnode {network}] {result['startup']}; stop {result['stop_seconds']}s")
    assert result["pod_status"] == 200, result
    assert result["service_status"] == 200, result
    assert result["dns"] == [result["cluster_ip"]], result
    assert result["left"] == {}, result
    # Seconds normally (2-4 s); the bound leaves room for a machine loaded by parallel builds.
    assert result["stop_seconds"] < 60, result
    if network == "veth":
        # What dev-cluster reports changing on its host: the link and routes to 198.19/16 only.
        changes = "\n".join(result["host_changes"])
        assert realnode.HOST_VETH in changes
        assert f"route {realnode.POD_CIDR} via {realnode.NODE_IP}" in changes
        assert f"route {realnode.SERVICE_CIDR} via {realnode.NODE_IP}" in changes
