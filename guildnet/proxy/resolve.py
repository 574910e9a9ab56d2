"""How to reach a workspace: the spec's ordered candidate routes, and the managed targets.

Pure: Workspace, Service and Pod dicts (as the API returns them) in, routes out.

``candidate_routes`` lists every way the spec allows, in its order; it does not know what
is dialable. "Directly dialable" is decided by the engine: it tries the direct candidates
(service, agent, dns) in order with a short connect timeout, uses the first that
connects, and caches that choice per workspace until the workspace's pods or Service
change. A ClusterIP only answers inside the cluster (or over a subnet route such as a
Tailscale subnet router); outside it the dial fails or times out, which is why the API
server's pod proxy, and last a port-forward, follow. In-cluster the ClusterIP comes
before a load-balancer address (one hop fewer); outside, the load balancer comes first.

``managed_targets`` is what ``policy.check_target`` treats as "belongs to a workspace";
``workspace_addresses`` is the subset that reaches a workspace's own HTTP port (what
``/proxy/server/{id}/`` reaches), so ``/proxy/{host:port}/`` to one of them redirects
to the workspace's canonical URL.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from guildnet.operator.constants import LABEL_WORKSPACE
from guildnet.operator.desired import effective_ports
from guildnet.operator.spec import parse_spec
from guildnet.proxy.paths import ProxyPathError, default_scheme, parse_target
from guildnet.proxy.policy import normalise_host

Obj = Mapping[str, Any]
WELL_KNOWN_PORTS: Final = (8080, 8443)
AGENT_HOST: Final = "AGENT_HOST"
RouteKind = Literal["service", "agent", "dns", "podproxy", "portforward"]
DIRECT_KINDS: Final = frozenset({"service", "agent", "dns"})


@attrs.frozen
class Route:
    """One way to reach a workspace's HTTP port.

    ``host``/``port`` are what to dial for the direct kinds; for ``podproxy`` and
    ``portforward`` ``pod`` is the pod to go through, ``port`` its container port and
    ``host`` the pod IP (informational: the API server does the dialling).
    """

    kind: RouteKind
    scheme: str
    host: str
    port: int
    namespace: str
    pod: str | None = None
    description: str = ""

    @property
    def direct(self) -> bool:
        return self.kind in DIRECT_KINDS

    @property
    def origin(self) -> str:
        """The upstream origin as the workspace sees itself (for Location rewriting)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def dns1123(name: str) -> str:
    """A DNS-1123 label made from ``name`` (workspace names already are one)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "x"


def well_known_port(ports: Sequence[int]) -> int | None:
    """8080 if exposed, else 8443, else the first port; None when there is none."""
    for port in WELL_KNOWN_PORTS:
        if port in ports:
            return port
    return ports[0] if ports else None


def workspace_ports(ws: Obj) -> list[int]:
    """The workspace's TCP container ports (spec or image defaults); [] for a bad spec."""
    try:
        spec = parse_spec(ws.get("spec") or {})
    except ValueError:
        return []
    return [p.container_port for p in effective_ports(spec) if p.protocol == "TCP"]


def candidate_routes(
    ws: Obj,
    service: Obj | None,
    pods: Sequence[Obj],
    *,
    disable_api_proxy: bool,
    use_port_forward: bool,
    in_cluster: bool,
) -> list[Route]:
    """Every route to ``ws`` in the spec's order (see the module docstring).

    1. the Workspace's Service: load-balancer ingress addresses and the ClusterIP;
    2. ``AGENT_HOST`` from the workspace's env (``host[:port]`` or an http(s) URL; scheme
       by port, 8443 -> https, unless the URL names one);
    3. ``<dns1123(name)>.<ns>.svc.cluster.local`` on the well-known port;
    4. the API server's pod proxy to the newest Ready pod (not with disable_api_proxy);
    5. a port-forward to that pod (only with use_port_forward).

    ``pods`` may hold other pods: only Ready pods labelled as this workspace's are used.
    """
    meta = ws.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "default")
    ports = workspace_ports(ws)
    port = well_known_port(ports)
    routes: list[Route] = []

    if service is not None:
        routes += _service_routes(service, namespace, port, in_cluster)
    agent = agent_host(ws, port)
    if agent is not None:
        host, agent_port, scheme = agent
        routes.append(
            Route("agent", scheme, host, agent_port, namespace, None, f"AGENT_HOST {host}")
        )
    if port is not None and name:
        fqdn = f"{dns1123(name)}.{namespace}.svc.cluster.local"
        routes.append(
            Route("dns", default_scheme(port), fqdn, port, namespace, None, f"DNS {fqdn}")
        )
    pod = ready_pod(pods, name, namespace)
    if pod is not None and port is not None:
        pod_name = str(pod["metadata"]["name"])
        pod_ip = str((pod.get("status") or {}).get("podIP") or "")
        scheme = default_scheme(port)
        if not disable_api_proxy:
            desc = f"API server pod proxy to {pod_name}:{port}"
            routes.append(Route("podproxy", scheme, pod_ip, port, namespace, pod_name, desc))
        if use_port_forward:
            desc = f"port-forward to {pod_name}:{port}"
            routes.append(Route("portforward", scheme, pod_ip, port, namespace, pod_name, desc))
    return routes


def _service_routes(
    service: Obj, namespace: str, container_port: int | None, in_cluster: bool
) -> list[Route]:
    spec = service.get("spec") or {}
    port = _service_port(spec.get("ports") or [], container_port)
    if port is None:
        return []
    scheme = default_scheme(port)
    cluster = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if _is_ip(ip)]
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    balancers = [
        str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")
    ]
    name = (service.get("metadata") or {}).get("name", "")
    internal = [
        Route("service", scheme, h, port, namespace, None, f"Service {name} ClusterIP {h}")
        for h in cluster
    ]
    external = [
        Route("service", scheme, h, port, namespace, None, f"Service {name} load balancer {h}")
        for h in balancers
    ]
    return internal + external if in_cluster else external + internal


def _service_port(ports: Sequence[Obj], container_port: int | None) -> int | None:
    """The Service port that leads to the workspace's well-known container port."""
    tcp = [p for p in ports if (p.get("protocol") or "TCP") == "TCP" and p.get("port")]
    for p in tcp:
        if container_port is not None and container_port in (p.get("targetPort"), p.get("port")):
            return int(p["port"])
    return well_known_port([int(p["port"]) for p in tcp])


def agent_host(ws: Obj, default_port: int | None) -> tuple[str, int, str] | None:
    """``(host, port, scheme)`` from the workspace's AGENT_HOST env, or None.

    Accepts ``host``, ``host:port``, ``[v6]:port`` and ``http(s)://host[:port][/...]``; a
    missing port is the workspace's well-known port. Malformed values are ignored.
    """
    value = None
    for var in (ws.get("spec") or {}).get("env") or []:
        if isinstance(var, Mapping) and var.get("name") == AGENT_HOST:
            value = var.get("value")
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    scheme: str | None = None
    match = re.match(r"^(https?)://", text, re.I)
    if match:
        scheme = match.group(1).lower()
        text = re.split(r"[/?#]", text[match.end() :], maxsplit=1)[0]
    if text.rsplit("]", 1)[-1].count(":") == 0:
        port = default_port or (443 if scheme == "https" else 80 if scheme == "http" else None)
        if port is None:
            return None
        text = f"{text}:{port}"
    try:
        host, port = parse_target(text)
    except ProxyPathError:
        return None
    return host, port, scheme or default_scheme(port)


def is_ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and bool(status.get("podIP"))


def _belongs(obj: Obj, name: str, namespace: str) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return labels.get(LABEL_WORKSPACE) == name and (meta.get("namespace") or namespace) == namespace


def ready_pod(pods: Iterable[Obj], name: str, namespace: str) -> Obj | None:
    """The newest Ready, not-terminating pod of workspace ``name`` (None if there is none)."""
    ready = [p for p in pods if _belongs(p, name, namespace) and is_ready(p)]
    if not ready:
        return None
    return max(ready, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))


def managed_targets(
    workspaces: Iterable[Obj], services: Iterable[Obj], pods: Iterable[Obj]
) -> set[tuple[str, int]]:
    """Every normalised ``(host, port)`` that belongs to a workspace.

    Per workspace: its Service DNS names (``name.ns.svc.cluster.local``, ``name.ns.svc``,
    ``name.ns``) and ClusterIPs/load-balancer addresses with the Service's ports and the
    workspace's ports, its AGENT_HOST, and its pods' IPs with their container ports.
    Services and pods count only when labelled as a workspace that exists.
    """
    out: set[tuple[str, int]] = set()
    known: dict[tuple[str, str], list[int]] = {}
    for ws in workspaces:
        meta = ws.get("metadata") or {}
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "default")
        if not name:
            continue
        ports = workspace_ports(ws)
        known[(namespace, name)] = ports
        agent = agent_host(ws, well_known_port(ports))
        if agent is not None:
            out.add((normalise_host(agent[0]), agent[1]))

    for svc in services:
        meta = svc.get("metadata") or {}
        key = (
            str(meta.get("namespace") or "default"),
            str((meta.get("labels") or {}).get(LABEL_WORKSPACE) or ""),
        )
        if key not in known:
            continue
        spec = svc.get("spec") or {}
        svc_ports = {int(p["port"]) for p in spec.get("ports") or [] if p.get("port")}
        svc_ports |= set(known[key])
        hosts = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if _is_ip(ip)]
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        hosts += [
            str(i.get("ip") or i.get("hostname"))
            for i in ingress
            if i.get("ip") or i.get("hostname")
        ]
        out |= {(normalise_host(h), p) for h in hosts for p in svc_ports}

    for (namespace, name), ports in known.items():
        for n in {name, dns1123(name)}:
            for fqdn in (
                f"{n}.{namespace}.svc.cluster.local",
                f"{n}.{namespace}.svc",
                f"{n}.{namespace}",
            ):
                out |= {(fqdn, p) for p in ports}

    for pod in pods:
        meta = pod.get("metadata") or {}
        key = (
            str(meta.get("namespace") or "default"),
            str((meta.get("labels") or {}).get(LABEL_WORKSPACE) or ""),
        )
        if key not in known:
            continue
        status = pod.get("status") or {}
        ips = [i.get("ip") for i in status.get("podIPs") or []] or [status.get("podIP")]
        pod_ports = set(known[key])
        for c in (pod.get("spec") or {}).get("containers") or []:
            pod_ports |= {
                int(p["containerPort"])
                for p in c.get("ports") or []
                if p.get("containerPort") and (p.get("protocol") or "TCP") == "TCP"
            }
        out |= {(normalise_host(ip), p) for ip in ips if _is_ip(ip) for p in pod_ports}
    return out


def _is_ip(value: object) -> bool:
    if not isinstance(value, str) or not value or value == "None":
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def workspace_addresses(
    workspaces: Iterable[Obj], services: Iterable[Obj], pods: Iterable[Obj]
) -> dict[tuple[str, int], str]:
    """``(host, port)`` -> workspace name, for the addresses of each workspace's HTTP port.

    The port is the one the server route uses (``well_known_port``): on the workspace's
    pod IPs, its Service's DNS names, ClusterIPs and load-balancer addresses (with the
    Service port that leads there) and its AGENT_HOST. An address claimed by two
    workspaces belongs to neither (no guessing).
    """
    owners: dict[tuple[str, int], str] = {}
    shared: set[tuple[str, int]] = set()

    def claim(host: str, port: int, name: str) -> None:
        key = (normalise_host(host), port)
        if owners.setdefault(key, name) != name:
            shared.add(key)

    known: dict[tuple[str, str], int] = {}
    for ws in workspaces:
        meta = ws.get("metadata") or {}
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "default")
        port = well_known_port(workspace_ports(ws))
        if not name or port is None:
            continue
        known[(namespace, name)] = port
        agent = agent_host(ws, port)
        if agent is not None:
            claim(agent[0], agent[1], name)
        for n in {name, dns1123(name)}:
            for fqdn in (f"{n}.{namespace}.svc.cluster.local", f"{n}.{namespace}.svc"):
                claim(fqdn, port, name)
    for svc in services:
        key = _owner_key(svc)
        if key not in known:
            continue
        for route in _service_routes(svc, key[0], known[key], in_cluster=True):
            claim(route.host, route.port, key[1])
    for pod in pods:
        key = _owner_key(pod)
        if key not in known:
            continue
        status = pod.get("status") or {}
        ips = [i.get("ip") for i in status.get("podIPs") or []] or [status.get("podIP")]
        for ip in ips:
            if _is_ip(ip):
                claim(str(ip), known[key], key[1])
    return {k: v for k, v in owners.items() if k not in shared}


def _owner_key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("namespace") or "default"),
        str((meta.get("labels") or {}).get(LABEL_WORKSPACE) or ""),
    )
