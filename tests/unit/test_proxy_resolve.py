"""Candidate routes to a workspace and the managed-target set, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from guildnet.operator.constants import LABEL_WORKSPACE
from guildnet.proxy.resolve import (
    Route,
    agent_host,
    candidate_routes,
    dns1123,
    managed_targets,
    well_known_port,
    workspace_addresses,
)

NS = "team"


def workspace(name: str = "ide", *, ports: list[int] | None = None, env: Any = None) -> Any:
    spec: dict[str, Any] = {"image": "codercom/code-server:4"}
    if ports is not None:
        spec["ports"] = [{"containerPort": p} for p in ports]
    if env is not None:
        spec["env"] = env
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def service(
    name: str = "ide",
    ports: list[int] | None = None,
    cluster_ip: str = "10.96.0.10",
    lb: list[dict[str, str]] | None = None,
) -> Any:
    return {
        "metadata": {"name": name, "namespace": NS, "labels": {LABEL_WORKSPACE: name}},
        "spec": {
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [{"port": p, "targetPort": p, "protocol": "TCP"} for p in ports or [8080]],
        },
        "status": {"loadBalancer": {"ingress": lb or []}},
    }


def pod(
    name: str,
    ws: str = "ide",
    *,
    ready: bool = True,
    ip: str = "10.244.0.7",
    created: str = "2026-01-01T00:00:00Z",
    deleting: bool = False,
) -> Any:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "labels": {LABEL_WORKSPACE: ws},
        "creationTimestamp": created,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "workspace", "ports": [{"containerPort": 8080}]}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def kinds(routes: list[Route]) -> list[tuple[str, str, int]]:
    return [(r.kind, r.host, r.port) for r in routes]


def routes(ws: Any, svc: Any, pods: list[Any], **kw: Any) -> list[Route]:
    options = {"disable_api_proxy": False, "use_port_forward": False, "in_cluster": False}
    return candidate_routes(ws, svc, pods, **{**options, **kw})


def test_spec_order_with_everything() -> None:
    ws = workspace(env=[{"name": "AGENT_HOST", "value": "10.0.0.9:8443"}])
    svc = service(lb=[{"ip": "192.168.1.240"}])
    got = routes(ws, svc, [pod("ide-1")], use_port_forward=True)
    assert kinds(got) == [
        ("service", "192.168.1.240", 8080),
        ("service", "10.96.0.10", 8080),
        ("agent", "10.0.0.9", 8443),
        ("dns", "ide.team.svc.cluster.local", 8080),
        ("podproxy", "10.244.0.7", 8080),
        ("portforward", "10.244.0.7", 8080),
    ]
    assert [r.scheme for r in got] == ["http", "http", "https", "http", "http", "http"]
    assert got[4].pod == got[5].pod == "ide-1"
    assert {r.namespace for r in got} == {NS}
    assert all(r.description for r in got)
    assert got[2].origin == "https://10.0.0.9:8443"


def test_in_cluster_prefers_the_cluster_ip() -> None:
    svc = service(lb=[{"hostname": "ide.lb.example"}])
    got = routes(workspace(), svc, [], in_cluster=True)
    assert kinds(got)[:2] == [("service", "10.96.0.10", 8080), ("service", "ide.lb.example", 8080)]


def test_switches() -> None:
    assert [r.kind for r in routes(workspace(), service(), [pod("p")])] == [
        "service",
        "dns",
        "podproxy",
    ]
    got = routes(workspace(), service(), [pod("p")], disable_api_proxy=True, use_port_forward=True)
    assert [r.kind for r in got] == ["service", "dns", "portforward"]


def test_no_service_headless_service_and_no_ready_pod() -> None:
    assert [r.kind for r in routes(workspace(), None, [])] == ["dns"]
    headless = service(cluster_ip="None")
    assert [r.kind for r in routes(workspace(), headless, [])] == ["dns"]
    not_ready = [pod("a", ready=False), pod("b", deleting=True), pod("c", ws="other")]
    assert [r.kind for r in routes(workspace(), None, not_ready)] == ["dns"]


def test_newest_ready_pod_wins() -> None:
    pods = [
        pod("old", ip="10.244.0.1", created="2026-01-01T00:00:00Z"),
        pod("new", ip="10.244.0.2", created="2026-01-02T00:00:00Z"),
        pod("newest-but-terminating", created="2026-01-03T00:00:00Z", deleting=True),
    ]
    (proxy,) = [r for r in routes(workspace(), None, pods) if r.kind == "podproxy"]
    assert (proxy.pod, proxy.host) == ("new", "10.244.0.2")


@pytest.mark.parametrize(
    ("ports", "expected"),
    [([8080, 8443], 8080), ([8443, 3000], 8443), ([3000, 8888], 3000), ([], None)],
)
def test_well_known_port(ports: list[int], expected: int | None) -> None:
    assert well_known_port(ports) == expected


def test_workspace_ports_choose_the_routes_port() -> None:
    ws = workspace(ports=[8888, 8443])
    got = routes(ws, service(ports=[8888, 8443]), [pod("p")])
    assert {(r.port, r.scheme) for r in got} == {(8443, "https")}
    jupyter = workspace(ports=[8888])
    assert {r.port for r in routes(jupyter, service(ports=[8888]), [pod("p")])} == {8888}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.9:8443", ("10.0.0.9", 8443, "https")),
        ("10.0.0.9:9000", ("10.0.0.9", 9000, "http")),
        ("agent.example", ("agent.example", 8080, "http")),
        ("https://agent.example/ignored/path", ("agent.example", 8080, "https")),
        ("https://agent.example:9443", ("agent.example", 9443, "https")),
        ("http://10.0.0.9:8443", ("10.0.0.9", 8443, "http")),
        ("[fd00::9]:8080", ("fd00::9", 8080, "http")),
        ("  ", None),
        ("not a host", None),
        ("10.0.0.9:99999", None),
    ],
)
def test_agent_host(value: str, expected: tuple[str, int, str] | None) -> None:
    ws = workspace(env=[{"name": "AGENT_HOST", "value": value}])
    assert agent_host(ws, 8080) == expected


def test_agent_host_from_a_secret_is_ignored() -> None:
    env = [{"name": "AGENT_HOST", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    assert agent_host(workspace(env=env), 8080) is None


def test_dns1123() -> None:
    assert dns1123("ide") == "ide"
    assert dns1123("My_IDE.v2") == "my-ide-v2"
    assert dns1123("-x-") == "x"
    assert len(dns1123("a" * 100)) == 63


def test_managed_targets() -> None:
    ws = workspace(env=[{"name": "AGENT_HOST", "value": "Agent.Example:9000"}])
    other_ns = {**service(), "metadata": {**service()["metadata"], "namespace": "elsewhere"}}
    stray = service(name="stray")  # labelled as a workspace that does not exist
    svc = service(ports=[8080], lb=[{"ip": "192.168.1.240"}])
    pods = [pod("ide-1", ip="10.244.0.7"), pod("x", ws="stray", ip="10.244.0.99")]
    got = managed_targets([ws], [svc, other_ns, stray], pods)
    assert got >= {
        ("ide.team.svc.cluster.local", 8080),
        ("ide.team.svc", 8080),
        ("ide.team", 8080),
        ("10.96.0.10", 8080),
        ("192.168.1.240", 8080),
        ("agent.example", 9000),
        ("10.244.0.7", 8080),
    }
    assert not any(host == "10.244.0.99" for host, _ in got)
    assert managed_targets([], [svc], pods) == set()


def test_workspace_addresses_are_the_http_port_of_one_workspace() -> None:
    """What ``/proxy/{host:port}/`` redirects to ``/proxy/server/{id}/``: the addresses of
    the port the server route reaches, never another port, never a shared address."""
    ws = workspace(ports=[8080, 3000], env=[{"name": "AGENT_HOST", "value": "Agent.Example"}])
    svc = service(ports=[8080, 3000], lb=[{"ip": "192.168.1.240"}])
    pods = [pod("ide-1", ip="10.244.0.7"), pod("x", ws="stray", ip="10.244.0.99")]
    got = workspace_addresses([ws], [svc], pods)
    assert got == {
        ("ide.team.svc.cluster.local", 8080): "ide",
        ("ide.team.svc", 8080): "ide",
        ("10.96.0.10", 8080): "ide",
        ("192.168.1.240", 8080): "ide",
        ("agent.example", 8080): "ide",
        ("10.244.0.7", 8080): "ide",
    }
    assert set(got) <= managed_targets([ws], [svc], pods)
    # Two workspaces claiming one AGENT_HOST: it belongs to neither.
    twin = workspace("twin", ports=[8080], env=[{"name": "AGENT_HOST", "value": "agent.example"}])
    shared = workspace_addresses([ws, twin], [svc], pods)
    assert ("agent.example", 8080) not in shared and shared[("10.244.0.7", 8080)] == "ide"
