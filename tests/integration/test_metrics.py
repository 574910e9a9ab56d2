"""``/metrics`` after real traffic: a real ``twistd guildnet`` and the kwok test cluster.

A workspace is launched through the API; the embedded operator and kwok bring it to
Running; the code-server-like test backend listens on the pod's IP (local inside the test
network namespace), so the proxy reaches it through the API server's pod proxy. Requests,
a WebSocket and an SSE stream go through the Host App; then both listeners are scraped
(HTTPS and ``METRICS_LISTEN``), the values are checked to have moved, the exposition is
given to ``promtool check metrics`` (built by tests/harness/build-testbin.sh), and a
second cluster's series are shown to disappear when the cluster is removed.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.backend import ws
from tests.integration.hostproc import SSE, HostProc, cluster_env, free_port, wait_for
from tests.integration.test_workspace_api import phase_is

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROMETHEUS_VERSION = os.environ.get("PROMETHEUS_VERSION", "v0.316.0")
PROMTOOL = (
    Path(os.environ.get("GUILDNET_TESTBIN_CACHE", Path.home() / ".cache/guildnet/testbin"))
    / f"promtool-{PROMETHEUS_VERSION}"
    / "promtool"
)
IMAGE = "codercom/code-server:4.139.1"  # never pulled: kwok runs no containers

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def has_cluster(samples: Samples, cluster: str) -> list[str]:
    return sorted({n for (n, ls) in samples if ("cluster", cluster) in ls})


class Metered(HostProc):
    """The Host App with ``METRICS_LISTEN`` and a plain-HTTP scraper."""

    def __init__(self, kubeconfig: str, namespace: str, work: Path) -> None:
        self.metrics_port = free_port()
        env = {
            **cluster_env(kubeconfig, namespace),
            "METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
        }
        # Patient: a cold start on a loaded 2-core machine can take over a minute.
        super().__init__(work, env, start_timeout=180)

    def scrape_plain(self, accept: str | None = None) -> tuple[str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=30)
        try:
            conn.request("GET", "/metrics", headers={"accept": accept} if accept else {})
            resp = conn.getresponse()
            body = resp.read().decode()
            assert resp.status == 200, body
            return body, resp.getheader("content-type") or ""
        finally:
            conn.close()

    def scrape(self) -> Samples:
        return parse(self.scrape_plain()[0])


@pytest.fixture(scope="module")
def app(kubeconfig: str, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    work = tmp_path_factory.mktemp("hostapp-metrics")
    with Metered(kubeconfig, ns, work).running() as host:
        yield host


@pytest.fixture(scope="module")
def backend_on_pod(app: Metered) -> Iterator[str]:
    """Launch workspace ``m1``; serve the test backend on its pod's IP; yield the name."""
    status, body, _ = app.request("POST", "/api/jobs", {"image": IMAGE, "name": "m1"})
    assert status == 202, body
    wait_for("m1 Running", lambda: phase_is(app, "m1", "Running"), timeout=90)
    (pod,) = app.get("/api/servers/m1")["pods"]
    ip = pod["podIP"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.backend", "--host", ip, "--port", "8080"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert b"listening" in proc.stdout.readline()
        yield "m1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def websocket(app: Metered, path: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", app.port), timeout=30)
    sock = app.ctx.wrap_socket(raw)
    key = ws.new_key().decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def test_metrics_move_with_real_traffic(app: Metered, backend_on_pod: str) -> None:
    name = backend_on_pod
    before = app.scrape()

    route = ""
    for path in ("/small", "/download?size=100000", "/small"):
        status, _, resp = app.request("GET", f"/proxy/server/{name}{path}")
        assert status == 200
        route = resp.getheader("x-guildnet-route") or ""
    status, _, _ = app.request("POST", f"/proxy/server/{name}/echo", raw=b"u" * 5000)
    assert status == 200
    status, _, _ = app.request("GET", "/proxy/server/no-such-workspace/")
    assert status == 404
    app.get("/api/servers")
    app.request("GET", "/api/servers/no-such-server")

    sock = websocket(app, f"/proxy/server/{name}/ws")
    sock.sendall(ws.encode(ws.OP_TEXT, b"metered", mask=True))
    assert b"metered" in sock.recv(4096)
    sse = SSE(app, "/sse/servers")  # type: ignore[arg-type]
    assert sse.status == 200
    sse.next()  # the snapshot
    during = app.scrape()
    assert value(during, "guildnet_proxy_websockets_open", cluster="default", route_kind=route) == 1
    assert value(during, "guildnet_sse_streams_open", cluster="default", kind="servers") == 1
    sock.close()
    sse.close()

    def closed() -> Samples | None:
        s = app.scrape()
        ok = (
            value(s, "guildnet_proxy_websockets_open", cluster="default", route_kind=route) == 0
            and value(s, "guildnet_sse_streams_open", cluster="default", kind="servers") == 0
        )
        return s if ok else None

    after = wait_for("the WebSocket and the stream to close", closed, timeout=30)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # HTTP, by route template (never the raw path).
    assert moved("guildnet_http_requests_total", route="/proxy/server/{id}/", code="200") >= 4
    assert moved("guildnet_http_requests_total", route="/api/servers", code="200") >= 1
    assert moved("guildnet_http_requests_total", route="/api/servers/{server_id}", code="404") == 1
    assert not [
        ls
        for (n, ls) in after
        if n == "guildnet_http_requests_total"
        and any(k == "route" and "no-such" in v for k, v in ls)
    ]
    assert moved("guildnet_http_request_duration_seconds_count", route="/api/servers") >= 1
    # The proxy: requests and bytes by route kind and status class, the WebSocket included.
    kind = {"cluster": "default", "route_kind": route}
    assert moved("guildnet_proxy_requests_total", status_class="2xx", **kind) >= 4
    assert moved("guildnet_proxy_request_bytes_total", status_class="2xx", **kind) >= 5000
    assert moved("guildnet_proxy_response_bytes_total", status_class="2xx", **kind) >= 100000
    assert moved("guildnet_proxy_requests_total", status_class="1xx", **kind) == 1
    assert moved("guildnet_proxy_response_bytes_total", **kind) > 0
    assert moved("guildnet_proxy_request_bytes_total", status_class="1xx", **kind) >= len(
        b"metered"
    )
    assert moved("guildnet_proxy_requests_total", route_kind="local", status_class="4xx") == 1
    # The operator made the workspace; kwok and the informers reported it.
    assert total(after, "guildnet_operator_reconciles_total", cluster="default", result="ok") > 0
    assert total(after, "guildnet_operator_writes_total", cluster="default", kind="Deployment") >= 1
    assert value(after, "guildnet_operator_leader", cluster="default") == 1
    assert value(after, "guildnet_workspaces", cluster="default", phase="Running") == 1
    assert value(after, "guildnet_informer_synced", cluster="default", resource="Pod") == 1
    assert total(after, "guildnet_informer_events_total", cluster="default", resource="Pod") > 0
    assert total(after, "guildnet_informer_relists_total", cluster="default") >= 6
    assert (
        total(
            after, "guildnet_kube_requests_total", verb="create", resource="workspaces", code="201"
        )
        == 1
    )
    assert total(after, "guildnet_kube_requests_total", verb="watch", code="200") >= 6
    assert total(after, "guildnet_kube_request_duration_seconds_count", verb="patch") > 0
    # Process and reactor.
    assert value(after, "process_open_fds") > 10
    assert ("guildnet_reactor_lag_seconds", frozenset()) in after
    assert (
        "guildnet_threadpool_busy_threads",
        frozenset({("cluster", "default"), ("pool", "api")}),
    ) in after
    assert value(after, "guildnet_threadpool_max_threads", cluster="default", pool="watch") == 16
    # Pooled connections come and go (the API server closes idle ones): both states exported.
    for state in ("idle", "active"):
        assert ("guildnet_proxy_upstream_connections", frozenset({("state", state)})) in after
    print("\n[metrics] one scrape after the traffic:")
    for (n, ls), v in sorted(after.items(), key=lambda kv: kv[0][0]):
        if n.startswith("guildnet_") and not n.endswith("_bucket") and v:
            print(f"  {n}{{{','.join(f'{k}={x}' for k, x in sorted(ls))}}} {v:g}")


def test_exposition_formats_and_promtool(app: Metered) -> None:
    text, ctype = app.scrape_plain()
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    om, om_type = app.scrape_plain("application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text"), om_type
    assert om.endswith("# EOF\n")
    status, body, _ = app.request("GET", "/metrics")  # the HTTPS listener serves it too
    assert status == 200 and "guildnet_http_requests_total" in body
    conn = http.client.HTTPConnection("127.0.0.1", app.metrics_port, timeout=10)
    conn.request("GET", "/api/servers")  # and the plain listener serves nothing else
    assert conn.getresponse().status == 404
    conn.close()
    assert PROMTOOL.is_file(), f"{PROMTOOL} missing: run tests/harness/build-testbin.sh promtool"
    # promtool lints the Prometheus text format (it reads OpenMetrics as text and flags
    # every _total as lacking HELP); the OpenMetrics form goes through the strict parser.
    check = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    families = {f.name for f in openmetrics_families(om)}
    assert {"guildnet_http_requests", "guildnet_proxy_requests", "guildnet_workspaces"} <= families


DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "guildnet-dashboard.json"


def test_grafana_dashboard_queries_name_exposed_metrics(app: Metered) -> None:
    """Every metric the dashboard's queries name is in a scrape taken after real traffic."""
    import json
    import re

    families = list(text_string_to_metric_families(app.scrape_plain()[0]))
    # Family names too: a gauge with nothing to count now (no open WebSocket) has no sample.
    exposed = {f.name for f in families} | {s.name for f in families for s in f.samples}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    named = {m for e in exprs for m in re.findall(r"\b(?:guildnet|process)_[a-z_]+\b", e)}
    assert named and not named - exposed, sorted(named - exposed)


def test_removed_cluster_series_disappear(app: Metered, kubeconfig: str) -> None:
    import json

    body = {"id": "second", "name": "Second", "kubeconfig": Path(kubeconfig).read_text()}
    status, answer, _ = app.request("POST", "/api/clusters", body)
    assert status == 201, answer
    app.get("/api/cluster/second/servers")  # starts its Instance, informers and operator

    def synced() -> list[str] | None:
        s = app.scrape()
        ok = value(s, "guildnet_informer_synced", cluster="second", resource="Workspace") == 1
        return has_cluster(s, "second") if ok else None

    names = wait_for("the second cluster's series", synced)
    assert "guildnet_kube_requests_total" in names and "guildnet_threadpool_threads" in names
    status, answer, _ = app.request("DELETE", "/api/clusters/second")
    assert status == 200, json.dumps(answer)
    left = has_cluster(app.scrape(), "second")
    assert left == [], left
    assert has_cluster(app.scrape(), "default")


def test_cluster_health_reports_each_part(app: Metered) -> None:
    # A just-started Host App is unhealthy (503) until its caches sync and it leads.
    deadline = time.monotonic() + 60.0
    status, body, _ = app.request("GET", "/api/health")
    while status != 200 and time.monotonic() < deadline:
        assert status == 503 and body["failing"], body
        time.sleep(0.5)
        status, body, _ = app.request("GET", "/api/health")
    assert status == 200, body
    assert body["cluster"] == "default" and body["ok"] is True and body["failing"] == []
    parts = body["parts"]
    assert set(parts) == {"kubernetes", "informers", "operator", "localdb", "portForwards"}
    assert all(p["ok"] and p["reason"] and p["checkedAt"].endswith("Z") for p in parts.values())
    assert parts["kubernetes"]["version"].startswith("v1.")
    assert parts["informers"]["resources"]["Workspace"] is True
    assert parts["operator"]["leader"] is True
    assert parts["localdb"]["reason"] == "quick_check ok, write read back"
    status, same, _ = app.request("GET", "/api/cluster/default/health")
    assert status == 200 and same["parts"].keys() == parts.keys()
    status, missing, _ = app.request("GET", "/api/cluster/nope/health")
    assert status == 404 and missing["field"] == "clusterId"
    status, report, _ = app.request("GET", "/api/health?probe=false")
    assert status == 200 and report["parts"].keys() == parts.keys()
    status, bad, _ = app.request("GET", "/api/health?probe=maybe")
    assert status == 400 and bad["field"] == "probe"
