"""Metrics: the label decisions (pure) and the exposition, without a cluster.

The end-to-end scrape after real traffic (and promtool) is tests/integration/test_metrics.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import error as ierror
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

import guildnet.http.api  # noqa: F401  (registers the routes on the router)
from guildnet.http.router import router, template_of
from guildnet.metrics import forget_cluster
from guildnet.metrics import http as http_metrics
from guildnet.metrics import kube as kube_metrics
from guildnet.metrics import proxy as proxy_metrics
from guildnet.metrics.exposition import Exposition
from guildnet.metrics.state import pool_stats, workspace_phases
from guildnet.proxy.engine import ProxyFailure


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/apis/apps/v1/namespaces/ns/deployments/x", None, ("get", "deployments")),
        ("GET", "/apis/apps/v1/namespaces/ns/deployments", {"limit": 500}, ("list", "deployments")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": True}, ("watch", "pods")),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", {"follow": True}, ("get", "pods/log")),
        (
            "PATCH",
            "/apis/guildnet.io/v1alpha1/namespaces/ns/workspaces/w/status",
            None,
            ("patch", "workspaces/status"),
        ),
        (
            "POST",
            "/apis/guildnet.io/v1alpha1/namespaces/ns/workspaces",
            None,
            ("create", "workspaces"),
        ),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", None, ("update", "leases")),
        ("DELETE", "/api/v1/namespaces/ns/secrets/s", None, ("delete", "secrets")),
        ("DELETE", "/api/v1/namespaces/ns/secrets", None, ("deletecollection", "secrets")),
        ("GET", "/api/v1/namespaces/ns", None, ("get", "namespaces")),
        ("GET", "/api/v1/namespaces", None, ("list", "namespaces")),
        (
            "PATCH",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/workspaces.guildnet.io",
            {"fieldManager": "x"},
            ("patch", "customresourcedefinitions"),
        ),
        ("GET", "/version", None, ("get", "version")),
        ("GET", "/apis/apps/v1", None, ("get", "discovery")),
    ],
)
def test_verb_and_resource(method: str, path: str, query: Any, expected: tuple[str, str]) -> None:
    assert kube_metrics.verb_and_resource(method, path, query) == expected


def test_route_templates_never_hold_raw_paths() -> None:
    assert template_of("/api/servers/<server_id>") == "/api/servers/{server_id}"
    assert template_of("/api/cluster/<cluster_id>/servers") == "/api/cluster/{cluster_id}/servers"
    assert template_of("/x/<path:rest>") == "/x/{rest}"
    templates = {template_of(r.rule) for r in router.url_map.iter_rules()}
    assert "/metrics" in templates and "/api/servers/{server_id}/logs" in templates
    assert all("<" not in t for t in templates)


def test_status_classes_and_connect_error_reasons() -> None:
    assert [proxy_metrics.status_class(c) for c in (101, 200, 307, 404, 502, 999)] == [
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "5xx",
    ]
    reason = proxy_metrics.connect_error_reason
    assert reason(Failure(ierror.ConnectionRefusedError())) == "refused"
    assert reason(Failure(ierror.TimeoutError())) == "timeout"
    assert reason(ierror.DNSLookupError()) == "unresolved"
    assert reason(ProxyFailure(403, "proxy_target_refused", "no")) == "policy"
    assert reason(ProxyFailure(502, "unsupported", "no")) == "other"
    assert reason(ValueError("x")) == "other"


def test_workspace_phases_counts_every_phase() -> None:
    items: list[dict[str, Any]] = [
        {"status": {"phase": "Running"}},
        {"status": {"phase": "Running"}},
        {"status": {}},
        {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}},
    ]
    assert workspace_phases(items) == {
        "Pending": 1,
        "Starting": 0,
        "Running": 2,
        "Failed": 0,
        "Terminating": 1,
    }


def test_pool_stats_of_a_real_pool() -> None:
    pool = ThreadPool(0, 3, name="test-metrics")
    assert pool_stats(pool) == (0, 0, 0)
    pool.start()
    try:
        assert pool_stats(pool) == (0, 0, 0)
    finally:
        pool.stop()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_exposition_negotiates_and_forgets_clusters() -> None:
    proxy_metrics.record("unit-a", "podproxy", 200, 10, 2000)
    proxy_metrics.record("unit-a", "podproxy", 204, 0, 0)
    proxy_metrics.record("unit-b", "service", 502, 0, 50)
    kube_metrics.observe("unit-a", "get", "pods", "200", 0.01)
    http_metrics.started()
    http_metrics.finished("/unit/{x}", b"BREW", 418, 0.002)
    exposition = Exposition()
    text, ctype = exposition.render(None)
    assert ctype.startswith("text/plain; version=0.0.4")
    got = samples(text.decode())
    key = frozenset({("cluster", "unit-a"), ("route_kind", "podproxy"), ("status_class", "2xx")})
    assert got[("guildnet_proxy_requests_total", key)] == 2
    assert got[("guildnet_proxy_request_bytes_total", key)] == 10
    assert got[("guildnet_proxy_response_bytes_total", key)] == 2000
    teapot = frozenset({("route", "/unit/{x}"), ("method", "other"), ("code", "418")})
    assert got[("guildnet_http_requests_total", teapot)] == 1
    om, om_type = exposition.render(b"application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")

    forget_cluster("unit-a")
    left = samples(exposition.render(None)[0].decode())
    assert not [k for k in left if ("cluster", "unit-a") in k[1]]
    assert [k for k in left if ("cluster", "unit-b") in k[1]]
    proxy_metrics.record("unit-a", "podproxy", 200, 1, 1)  # counts again from zero
    again = samples(exposition.render(None)[0].decode())
    assert again[("guildnet_proxy_requests_total", key)] == 1
    forget_cluster("unit-a")
    forget_cluster("unit-b")
