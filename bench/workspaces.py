"""Benchmark: 500 workspaces through the API, steady-state cost, list latency.

Run inside the test network namespace (it starts its own test cluster):

    tests/harness/netns-run.sh .venv/bin/python -m bench.workspaces [--count 500] [--steady 300]

It measures, against a real kube-apiserver + kwok and a real ``twistd guildnet``:

1. time from the first POST /api/jobs until every workspace is Running;
2. during ``--steady`` seconds with all workspaces Running: the Host App's CPU
   seconds and the API server's write requests by resource (from its /metrics);
3. GET /api/servers latency (p50/p99) with all workspaces present.

Not a test: it asserts nothing, it prints figures. Traffic stays on loopback
and inside the namespace.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.harness.cluster import TestCluster, netns_prepared
from tests.harness.hostapp import HostProcess

ROOT = Path(__file__).resolve().parents[1]
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}


class HostApp(HostProcess):
    """The Host App (``tests.harness.hostapp``'s launcher) on the bench cluster, with a tiny
    HTTPS client."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        env = {"KUBECONFIG": str(kubeconfig), "K8S_NAMESPACE": namespace}
        super().__init__(Path(tempfile.mkdtemp(prefix="guildnet-bench-")), env)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=60)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(
                method,
                path,
                body=data,
                headers={"Content-Type": "application/json"} if data else {},
            )
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 60) -> None:
        """Started, then ``/readyz`` (the default cluster answers)."""
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"Host App not ready; log in {self.log_path}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def api_writes(cluster: TestCluster) -> Counter[str]:
    """Write requests served by the API server so far, by resource."""
    status, data = cluster.request("GET", "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out: Counter[str] = Counter()
    pattern = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
    for line in data.decode().splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("verb") in WRITE_VERBS:
            key = labels.get("resource", "?")
            if labels.get("subresource"):
                key += "/" + labels["subresource"]
            out[key] += int(float(m.group(2)))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--steady", type=float, default=300.0, help="steady-state seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--list-requests", type=int, default=200)
    args = parser.parse_args()
    if not netns_prepared():
        print(
            "run inside the test network namespace: tests/harness/netns-run.sh "
            ".venv/bin/python -m bench.workspaces",
            file=sys.stderr,
        )
        return 2
    namespace = "bench"
    with TestCluster(netns=True) as cluster:
        cluster.request(
            "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": namespace}}).encode()
        )
        app = HostApp(cluster.kubeconfig_path, namespace)
        try:
            app.wait_ready()
            print(f"cluster up in {cluster.startup_seconds:.1f}s; Host App ready", flush=True)
            names = [f"bench-{i:04d}" for i in range(args.count)]
            t0 = time.monotonic()

            def create(name: str) -> int:
                status, body = app.request(
                    "POST", "/api/jobs", {"image": "nginx:1.27", "name": name}
                )
                if status != 202:
                    raise RuntimeError(f"POST /api/jobs {name}: {status} {body}")
                return status

            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(create, names))
            created = time.monotonic() - t0
            print(f"created {args.count} workspaces in {created:.1f}s", flush=True)
            phases: Counter[str] = Counter()
            while True:
                _, body = app.request("GET", "/api/servers")
                items = body.get("servers", body) if isinstance(body, dict) else body
                phases = Counter(str(s.get("phase")) for s in items)
                if phases.get("Running", 0) >= args.count:
                    break
                if time.monotonic() - t0 > 1800:
                    raise RuntimeError(f"not all Running after 30 min: {dict(phases)}")
                time.sleep(1.0)
            all_running = time.monotonic() - t0
            print(f"all {args.count} Running after {all_running:.1f}s", flush=True)

            time.sleep(5)  # let status writes of the last workspaces settle
            cpu0, writes0, s0 = app.cpu_seconds(), api_writes(cluster), time.monotonic()
            time.sleep(args.steady)
            cpu1, writes1, s1 = app.cpu_seconds(), api_writes(cluster), time.monotonic()
            delta = writes1 - writes0
            print(
                f"steady state {s1 - s0:.0f}s: Host App CPU {cpu1 - cpu0:.2f}s "
                f"({100 * (cpu1 - cpu0) / (s1 - s0):.2f}% of one core)"
            )
            print("  API writes during steady state, by resource (all clients):")
            for resource, n in sorted(delta.items()):
                print(f"    {resource:32s} {n}")

            latencies = []
            for _ in range(args.list_requests):
                t = time.perf_counter()
                _status, _ = app.request("GET", "/api/servers")
                latencies.append((time.perf_counter() - t) * 1000)
            print(
                f"GET /api/servers with {args.count} workspaces: p50 "
                f"{statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
                f" ({args.list_requests} sequential requests, new TLS connection each)"
            )
        finally:
            app.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
