"""Where a cluster's RethinkDB is: the spec's order, as pure functions plus one thin reader.

1. ``RETHINKDB_ADDR`` (the default cluster only: one address cannot serve every cluster);
2. in the cluster (the Host App runs in a pod, default cluster): the Service's injected
   ``<SVC>_SERVICE_HOST``/``<SVC>_SERVICE_PORT`` variables, else the DNS name
   ``<svc>.<ns>.svc.cluster.local:28015``;
3. with a kubeconfig: the Service ``RETHINKDB_SERVICE_NAME`` in ``RETHINKDB_NAMESPACE`` read
   through the Kubernetes API, giving its LoadBalancer ingress, then a NodePort on a node
   address, then the ClusterIP, in that order (the manager tries them in order).

Never a port-forward. A missing Service is ``not_found``; a Service with no address a client
outside the pod network could use (headless, no ports, no ingress/nodes/ClusterIP) is
``unreachable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
from twisted.internet.defer import Deferred

from guildnet.cluster.rest import KubeApiError, object_path

DRIVER_PORT: Final = 28015
_DRIVER_PORT_NAMES: Final = ("driver", "client-driver", "client", "rethinkdb", "db")


@attrs.frozen
class Target:
    """One address to try, and how it was found (shown in the health state)."""

    host: str
    port: int
    source: str  # override | env | dns | loadbalancer | nodeport | clusterip

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class DiscoveryError(Exception):
    """No address: ``reason`` is ``not_found`` or ``unreachable`` (or ``cluster_error``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@attrs.frozen
class DiscoveryConfig:
    service_name: str = "rethinkdb"
    namespace: str = "default"
    override: tuple[str, int] | None = None
    in_cluster: bool = False


def env_prefix(service_name: str) -> str:
    """Kubernetes' variable prefix for a Service: ``my-db`` -> ``MY_DB``."""
    return service_name.upper().replace("-", "_")


def static_targets(
    cfg: DiscoveryConfig, environ: Mapping[str, str], default_cluster: bool
) -> list[Target] | None:
    """Steps 1 and 2: addresses known without asking the API server, or None."""
    if not default_cluster:
        return None
    if cfg.override is not None:
        return [Target(cfg.override[0], cfg.override[1], "override")]
    if not cfg.in_cluster:
        return None
    prefix = env_prefix(cfg.service_name)
    host = (environ.get(f"{prefix}_SERVICE_HOST") or "").strip()
    port_text = (
        environ.get(f"{prefix}_SERVICE_PORT_DRIVER") or environ.get(f"{prefix}_SERVICE_PORT") or ""
    ).strip()
    if host and port_text.isdigit():
        return [Target(host, int(port_text), "env")]
    dns = f"{cfg.service_name}.{cfg.namespace}.svc.cluster.local"
    return [Target(dns, DRIVER_PORT, "dns")]


def driver_port(service: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Service port for drivers: named so, or 28015, or the only/first port."""
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    if not ports:
        return None
    for p in ports:
        if str(p.get("name") or "") in _DRIVER_PORT_NAMES:
            return p
    for p in ports:
        if p.get("port") == DRIVER_PORT or p.get("targetPort") == DRIVER_PORT:
            return p
    return ports[0]


def node_addresses(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Addresses of Ready nodes, ExternalIP before InternalIP, each once."""
    ready = []
    for node in nodes:
        conditions = (node.get("status") or {}).get("conditions") or []
        is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if is_ready:
            ready.append(node)
    out: list[str] = []
    for kind in ("ExternalIP", "InternalIP"):
        for node in ready:
            for a in (node.get("status") or {}).get("addresses") or []:
                addr = str(a.get("address") or "")
                if a.get("type") == kind and addr and addr not in out:
                    out.append(addr)
    return out


def service_targets(
    service: Mapping[str, Any] | None,
    nodes: Sequence[Mapping[str, Any]],
    cfg: DiscoveryConfig,
) -> list[Target]:
    """Step 3: LoadBalancer ingress, then NodePort on node addresses, then the ClusterIP."""
    where = f"Service {cfg.namespace}/{cfg.service_name}"
    if service is None:
        raise DiscoveryError(
            "not_found",
            f"{where} does not exist (deploy RethinkDB or set RETHINKDB_SERVICE_NAME/"
            "RETHINKDB_NAMESPACE)",
        )
    port = driver_port(service)
    if port is None or not isinstance(port.get("port"), int):
        raise DiscoveryError("unreachable", f"{where} has no ports")
    spec = service.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    out: list[Target] = []
    if kind == "LoadBalancer":
        for ing in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            host = ing.get("ip") or ing.get("hostname")
            if host:
                out.append(Target(str(host), int(port["port"]), "loadbalancer"))
    if kind in ("NodePort", "LoadBalancer") and isinstance(port.get("nodePort"), int):
        out += [Target(a, int(port["nodePort"]), "nodeport") for a in node_addresses(nodes)]
    cluster_ip = spec.get("clusterIP")
    if kind != "ExternalName" and cluster_ip and cluster_ip != "None":
        out.append(Target(str(cluster_ip), int(port["port"]), "clusterip"))
    if kind == "ExternalName" and spec.get("externalName"):
        out.append(Target(str(spec["externalName"]), int(port["port"]), "externalname"))
    if not out:
        raise DiscoveryError(
            "unreachable",
            f"{where} has no address reachable from outside its pods (headless, no "
            "LoadBalancer ingress and no NodePort)",
        )
    return out


def discover(
    cfg: DiscoveryConfig,
    environ: Mapping[str, str],
    default_cluster: bool,
    call: Callable[..., Deferred[Any]] | None,
    rest: Any,
) -> Deferred[list[Target]]:
    """All candidate targets in order; errbacks with DiscoveryError.

    ``call`` runs a blocking function on the Instance's API pool; ``rest`` is its KubeRest.
    """
    from twisted.internet.defer import ensureDeferred, succeed

    static = static_targets(cfg, environ, default_cluster)
    if static is not None:
        return succeed(static)

    async def read() -> list[Target]:
        if call is None or rest is None:
            raise DiscoveryError("cluster_error", "the cluster is not running")
        path = object_path("v1", "services", cfg.service_name, cfg.namespace)
        try:
            service = await call(rest.get, path)
        except KubeApiError as e:
            if e.not_found:
                service = None
            else:
                raise DiscoveryError(
                    "cluster_error", f"reading the Service failed: {e.status} {e.message[:200]}"
                ) from None
        except Exception as e:
            raise DiscoveryError(
                "cluster_error", f"cannot reach the cluster: {type(e).__name__}"
            ) from None
        nodes: list[Any] = []
        if service is not None and (service.get("spec") or {}).get("type") in (
            "NodePort",
            "LoadBalancer",
        ):
            try:
                nodes = (await call(rest.get, "/api/v1/nodes")).get("items") or []
            except Exception:
                nodes = []  # no right to list nodes: fall through to the ClusterIP
        return service_targets(service, nodes, cfg)

    return ensureDeferred(read())
