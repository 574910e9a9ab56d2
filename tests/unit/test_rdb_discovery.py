"""Discovery order and failure classification (pure); the real-Service test is in
tests/integration/test_rdb_manager.py."""

from __future__ import annotations

import random
from typing import Any

import pytest
from rethinkdb.errors import ReqlAuthError, ReqlDriverError, ReqlOpFailedError, ReqlTimeoutError

from guildnet.rdb.discovery import (
    DiscoveryConfig,
    DiscoveryError,
    Target,
    driver_port,
    service_targets,
    static_targets,
)
from guildnet.rdb.state import BACKOFF_CAP, backoff_delay, classify

CFG = DiscoveryConfig(service_name="rethinkdb", namespace="data")


def svc(kind: str = "ClusterIP", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": kind,
        "clusterIP": "198.19.0.10",
        "ports": [
            {"name": "cluster", "port": 29015},
            {"name": "driver", "port": 28015, "nodePort": 30015},
        ],
    }
    spec.update(extra.pop("spec", {}))
    return {"metadata": {"name": "rethinkdb"}, "spec": spec, **extra}


def node(ip: str, ready: bool = True, external: str | None = None) -> dict[str, Any]:
    addresses = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": "n"}]
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    return {
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }
    }


def test_override_wins_for_the_default_cluster_only() -> None:
    cfg = DiscoveryConfig(override=("db.example", 1234), in_cluster=True)
    assert static_targets(cfg, {}, True) == [Target("db.example", 1234, "override")]
    assert static_targets(cfg, {}, False) is None


def test_in_cluster_env_then_dns() -> None:
    cfg = DiscoveryConfig(service_name="my-db", namespace="data", in_cluster=True)
    env = {"MY_DB_SERVICE_HOST": "198.19.0.5", "MY_DB_SERVICE_PORT": "28015"}
    assert static_targets(cfg, env, True) == [Target("198.19.0.5", 28015, "env")]
    env["MY_DB_SERVICE_PORT_DRIVER"] = "28016"
    assert static_targets(cfg, env, True) == [Target("198.19.0.5", 28016, "env")]
    assert static_targets(cfg, {}, True) == [Target("my-db.data.svc.cluster.local", 28015, "dns")]
    assert static_targets(DiscoveryConfig(), {}, True) is None  # kubeconfig: ask the API


def test_load_balancer_then_node_port_then_cluster_ip() -> None:
    s = svc("LoadBalancer", status={"loadBalancer": {"ingress": [{"ip": "198.18.0.70"}]}})
    nodes = [
        node("198.18.0.1"),
        node("198.18.0.2", ready=False),
        node("198.18.0.3", external="203.0.113.9"),
    ]
    assert service_targets(s, nodes, CFG) == [
        Target("198.18.0.70", 28015, "loadbalancer"),
        Target("203.0.113.9", 30015, "nodeport"),
        Target("198.18.0.1", 30015, "nodeport"),
        Target("198.18.0.3", 30015, "nodeport"),
        Target("198.19.0.10", 28015, "clusterip"),
    ]


def test_port_choice() -> None:
    assert driver_port(svc())["port"] == 28015  # type: ignore[index]
    unnamed = svc(spec={"ports": [{"port": 8080}, {"port": 28015}]})
    assert driver_port(unnamed)["port"] == 28015  # type: ignore[index]
    assert driver_port(svc(spec={"ports": [{"port": 9}]}))["port"] == 9  # type: ignore[index]


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        (None, "not_found"),
        (svc(spec={"clusterIP": "None"}), "unreachable"),
        (svc(spec={"ports": []}), "unreachable"),
    ],
)
def test_classified_discovery_errors(service: Any, reason: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        service_targets(service, [], CFG)
    assert info.value.reason == reason
    assert "data/rethinkdb" in info.value.message


@pytest.mark.parametrize(
    ("error", "reason", "fatal"),
    [
        (ReqlAuthError("Wrong password", "h", 1), "auth_failed", True),
        (ReqlDriverError("... certificate verify failed"), "tls_verify_failed", True),
        (
            ReqlDriverError("Received an unsupported protocol version"),
            "incompatible_protocol",
            True,
        ),
        (
            ReqlDriverError("Could not connect ... Connection was refused by other side: 111"),
            "refused",
            False,
        ),
        (ReqlTimeoutError("h", 1), "timeout", False),
        (
            ReqlOpFailedError("primary replica for shard not available", None, []),
            "unavailable",
            False,
        ),
        (
            ReqlDriverError("Connection is closed (reason: connection lost: reset)"),
            "connection_lost",
            False,
        ),
        (DiscoveryError("not_found", "Service x/y does not exist"), "not_found", False),
    ],
)
def test_classify(error: BaseException, reason: str, fatal: bool) -> None:
    c = classify(error)
    assert (c.reason, c.fatal) == (reason, fatal)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, rng=rng) for a in range(1, 12)]
    for a, d in enumerate(delays, start=1):
        full = min(BACKOFF_CAP, 0.5 * 2 ** (a - 1))
        assert full / 2 <= d <= full
    assert max(delays) <= BACKOFF_CAP
    assert len({round(d, 6) for d in delays}) == len(delays)
