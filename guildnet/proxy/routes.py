"""Which route serves ``/proxy/server/{id}/``: decided by dialing, cached, kept in sync.

Per cluster Instance a :class:`ClusterRoutes` reads the WorkspaceService's informers
(never the API server per request), asks ``resolve.candidate_routes`` for the spec's
ordered candidates and tries them in order with a short dial timeout: the first that
connects wins, is cached per workspace, and its open connection serves the request
that asked. The cache entry is dropped when an informer reports a change to the
workspace, its Service or its pods, and when a dial on the cached route fails, so a
replaced pod or a new Service is picked up at the next request. Because everything is
derived from Workspace objects, a restarted Host App routes exactly as before.

Route kinds (and the ``X-GuildNet-Route`` values): ``service``, ``agent``, ``dns``
(dialed directly), ``podproxy`` (HTTPS to the API server's
``pods/<pod>:<port>/proxy/``, with the Instance's credentials) and ``portforward``
(a managed forward, see ``portforward``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from guildnet.cluster.registry import UnknownCluster
from guildnet.metrics import proxy as proxy_metrics
from guildnet.operator.constants import LABEL_WORKSPACE
from guildnet.operator.desired import path_mode
from guildnet.operator.status import is_stopped
from guildnet.proxy.activity import ActivityBook
from guildnet.proxy.engine import ProxyFailure, Resolved, Target, resolve_host
from guildnet.proxy.kubeapi import ApiServer, api_server
from guildnet.proxy.netutil import is_ip
from guildnet.proxy.origins import WorkspaceOrigins
from guildnet.proxy.pages import starting_page, stopped_elsewhere_page, stopped_page
from guildnet.proxy.paths import DEFAULT_CLUSTER, ProxyPath
from guildnet.proxy.policy import Allowlist, check_target
from guildnet.proxy.resolve import (
    Route,
    candidate_routes,
    managed_targets,
    workspace_addresses,
)
from guildnet.proxy.upstream import (
    ClientTLS,
    Endpoint,
    UpstreamConnection,
    UpstreamPool,
    describe_failure,
    is_timeout,
)

log = Logger(namespace="guildnet.proxy.routes")

SYNC_WAIT = 10.0  # how long a request waits for a cluster's first informer sync
AUTH_TTL = 30.0  # how long an API server Authorization value is reused


@attrs.frozen
class RouteOptions:
    disable_api_proxy: bool = False
    use_port_forward: bool = False
    in_cluster: bool = False
    port_forward_idle_timeout: float = 600.0
    dial_timeout: float = 3.0
    #: Upgrades with a query string go through a port-forward, not the pod proxy.
    podproxy_upgrade_fallback: bool = True
    #: Subdomain mode: the stopped page sends users to the UI instead of a start form.
    origins: WorkspaceOrigins = attrs.field(factory=WorkspaceOrigins)

    @classmethod
    def from_settings(cls, settings: Any) -> RouteOptions:
        return cls(
            disable_api_proxy=settings.disable_api_proxy,
            use_port_forward=settings.use_port_forward,
            in_cluster=settings.in_cluster,
            port_forward_idle_timeout=settings.port_forward_idle_timeout,
            origins=WorkspaceOrigins.from_settings(settings),
        )


@attrs.frozen(eq=False)
class ApiServerTLS:
    """An API server's TLS settings as a pool key (one per Instance)."""

    api: ApiServer

    def creator(self) -> Any:
        return self.api.tls


class ServerRoutes:
    """The engine's ServerResolver: one ClusterRoutes per running Instance."""

    def __init__(
        self,
        registry: Any,
        workspaces: Callable[[Any], Any],
        pool: UpstreamPool,
        reactor: Any,
        options: RouteOptions,
        allowlist: Allowlist,
        activity: ActivityBook | None = None,
    ) -> None:
        self.registry = registry
        #: Where resolved targets get their workspace's activity record (the culler reads it).
        self.activity = activity
        self.workspaces = workspaces
        self.pool = pool
        self.reactor = reactor
        self.options = options
        self.allowlist = allowlist
        self._clusters: dict[str, ClusterRoutes] = {}

    def cluster(self, cluster_id: str) -> ClusterRoutes:
        try:
            instance = self.registry.get(cluster_id)
        except UnknownCluster:
            raise ProxyFailure(
                404, "cluster_not_found", f"no cluster {cluster_id!r}", "clusterId"
            ) from None
        except Exception as e:
            raise ProxyFailure(502, "cluster_unavailable", f"cluster {cluster_id}: {e}") from None
        routes = self._clusters.get(cluster_id)
        if routes is None or routes.instance is not instance or routes.closed:
            if routes is not None:
                routes.close()
            routes = ClusterRoutes(self, instance, self.workspaces(instance))
            self._clusters[cluster_id] = routes
        return routes

    def resolve(self, path: ProxyPath) -> Deferred[Resolved]:
        assert path.server is not None
        return self.cluster(path.cluster_id).resolve(path.server)

    def failed(self, path: ProxyPath, target: Target) -> None:
        routes = self._clusters.get(path.cluster_id)
        if routes is not None and path.server is not None:
            routes.forget(path.server, target)

    def upgrade_fallback(self, path: ProxyPath, target: Target) -> Deferred[Resolved] | None:
        """A port-forward for a WebSocket whose query the API server's pod proxy would drop.

        kube-apiserver strips the query string from upgraded ``pods/proxy`` requests
        (kubernetes#77142, still open), and code-server's WebSocket URL carries its
        reconnection token there. A port-forward reaches the same pod port with the
        request untouched; it goes through the same API server, needing the
        ``pods/portforward`` permission instead of ``pods/proxy``.
        """
        if not self.options.podproxy_upgrade_fallback or path.server is None:
            return None
        routes = self._clusters.get(path.cluster_id)
        if routes is None:
            return None
        return routes.upgrade_fallback(path.server, target)

    def managed(self) -> frozenset[tuple[str, int]]:
        """Targets of the default cluster's workspaces (for ``/proxy/{to}/``).

        Called per request: it only looks at running Instances (no disk, no start-up)
        and returns the same object while nothing changed (the engine caches on it).
        """
        if self.registry.running_instance("default") is None:
            return _NONE
        try:
            return self.cluster("default").managed()
        except ProxyFailure:
            return _NONE

    def owner(self, host: str, port: int) -> str | None:
        """The default-cluster workspace whose HTTP port ``host:port`` is, if any (so
        ``/proxy/{host:port}/`` redirects to that workspace's canonical URL)."""
        if self.registry.running_instance("default") is None:
            return None
        try:
            routes = self.cluster("default")
        except ProxyFailure:
            return None
        return routes.owners().get((host, port))

    def close(self) -> Deferred[None]:
        for routes in self._clusters.values():
            routes.close()
        self._clusters.clear()
        return succeed(None)


class ClusterRoutes:
    """Route decisions for one cluster Instance."""

    def __init__(self, parent: ServerRoutes, instance: Any, workspaces: Any) -> None:
        self.parent = parent
        self.instance = instance
        #: The ``cluster`` label of this cluster's proxy metrics.
        self.cluster_id = str(getattr(instance, "cluster_id", ""))
        self.workspaces = workspaces
        self.cache: dict[str, Target] = {}
        self.pods: dict[str, str] = {}  # workspace -> pod of a cached pod-bound route
        self._inflight: dict[str, Deferred[Resolved]] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._subscribed_to: set[str] = set()
        self._managed: frozenset[tuple[str, int]] | None = None
        self._owners: dict[tuple[str, int], str] | None = None
        self._api: ApiServer | None = None
        self._auth: tuple[float, bytes | None] | None = None
        self._auth_refreshing = False
        self.closed = False
        self.dials = 0

    # informers ---------------------------------------------------------------------------

    def _subscribe(self) -> None:
        for kind in ("Workspace", "Service", "Pod"):
            informer = self.workspaces.informers.get(kind)
            if informer is None or kind in self._subscribed_to:
                continue
            self._subscribed_to.add(kind)
            self._unsubscribe.append(informer.subscribe(self._changed(kind)))

    def _changed(self, kind: str) -> Callable[[str, dict[str, Any], dict[str, Any] | None], None]:
        def handler(event: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            self._managed = None
            self._owners = None
            meta = obj.get("metadata") or {}
            if kind == "Workspace":
                name = str(meta.get("name") or "")
            else:
                name = str((meta.get("labels") or {}).get(LABEL_WORKSPACE) or "")
            if not name:
                return
            if kind == "Pod" and event == "MODIFIED" and not _pod_changed(obj, old):
                return
            self.drop(name)
            if kind == "Pod" and (event == "DELETED" or meta.get("deletionTimestamp")):
                self._invalidate_forward(str(meta.get("namespace") or ""), str(meta["name"]))

        return handler

    def _invalidate_forward(self, namespace: str, pod: str) -> None:
        pfm = self._port_forwards(create=False)
        if pfm is not None:
            pfm.invalidate(namespace, pod)

    def drop(self, name: str) -> None:
        self.cache.pop(name, None)
        self.pods.pop(name, None)

    def forget(self, name: str, target: Target) -> None:
        if self.cache.get(name) == target:
            self.drop(name)

    def _items(self, kind: str) -> list[dict[str, Any]]:
        informer = self.workspaces.informers.get(kind)
        return informer.items() if informer is not None else []

    def managed(self) -> frozenset[tuple[str, int]]:
        if self._managed is None:
            self._subscribe()
            managed = frozenset(
                managed_targets(
                    self._items("Workspace"), self._items("Service"), self._items("Pod")
                )
            )
            if len(self._subscribed_to) < len(_KINDS):
                return managed  # not kept current by events yet: do not cache
            self._managed = managed
        return self._managed

    def owners(self) -> dict[tuple[str, int], str]:
        """``resolve.workspace_addresses`` of this cluster, cached like ``managed``."""
        if self._owners is None:
            self._subscribe()
            owners = workspace_addresses(
                self._items("Workspace"), self._items("Service"), self._items("Pod")
            )
            if len(self._subscribed_to) < len(_KINDS):
                return owners
            self._owners = owners
        return self._owners

    def close(self) -> None:
        self.closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for d in list(self._inflight.values()):
            d.cancel()
        self.cache.clear()

    # resolution --------------------------------------------------------------------------

    def upgrade_fallback(self, name: str, target: Target) -> Deferred[Resolved] | None:
        pod = self.pods.get(name)
        if pod is None or target.route != "podproxy":
            return None
        ns = self.workspaces.namespace
        port = int(target.path_prefix.rsplit(":", 1)[1].split("/", 1)[0])
        scheme = "https" if "/pods/https:" in target.path_prefix else "http"
        route = Route("portforward", scheme, "", port, ns, pod, f"port-forward to {pod}:{port}")

        async def forward() -> Resolved:
            resolved = await self._try_portforward(route)
            return Resolved(
                attrs.evolve(
                    resolved.target,
                    upstream_origins=target.upstream_origins,
                    preserve_path=target.preserve_path,
                    activity=target.activity,
                ),
                resolved.connection,
            )

        return Deferred.fromCoroutine(forward())

    def resolve(self, name: str) -> Deferred[Resolved]:
        target = self.cache.get(name)
        if target is not None:
            return succeed(Resolved(target))
        # Concurrent first requests share one decision (their own connections follow).
        waiter: Deferred[Resolved] = Deferred()
        inflight = self._inflight.get(name)
        if inflight is not None:
            inflight.addBoth(self._relay(waiter, share_connection=False))
            return waiter
        d = Deferred.fromCoroutine(self._decide(name))
        self._inflight[name] = d
        d.addBoth(_passthrough(lambda: self._inflight.pop(name, None)))
        d.addBoth(self._relay(waiter, share_connection=True))
        d.addErrback(lambda f: None)  # every waiter got the failure
        return waiter

    def _relay(self, waiter: Deferred[Resolved], share_connection: bool) -> Callable[[Any], Any]:
        """Hand a decision to one waiter; only the first gets the connection it opened."""

        def relay(result: Any) -> Any:
            if waiter.called:  # the waiter was cancelled (its client left)
                if share_connection and isinstance(result, Resolved) and result.connection:
                    self.parent.pool._release(result.connection)
                return result
            if isinstance(result, Failure):
                waiter.errback(result)
            elif share_connection:
                waiter.callback(result)
            else:
                waiter.callback(Resolved(result.target))
            return result

        return relay

    async def _decide(self, name: str) -> Resolved:
        await self._synced()
        ws = self.workspaces.workspace(name)
        if ws is None:
            raise ProxyFailure(404, "workspace_not_found", f"no workspace {name!r}", "server")
        status = ws.get("status") or {}
        if is_stopped(ws):
            message = str(status.get("message") or "the workspace is stopped")
            if status.get("phase") != "Stopped":
                message = "the workspace is stopping"
            raise ProxyFailure(
                503,
                "workspace_stopped",
                f"workspace {name!r} is stopped; POST {self._start_url(name)} to start it",
                "server",
                html=self._stopped_page(name, message),
            )
        starting = starting_page(
            name, str(status.get("phase") or "Pending"), str(status.get("message") or "")
        )
        service = self._service_of(name)
        pods = self.workspaces.pods_of(name)
        opts = self.parent.options
        routes = candidate_routes(
            ws,
            service,
            pods,
            disable_api_proxy=opts.disable_api_proxy,
            use_port_forward=opts.use_port_forward,
            in_cluster=opts.in_cluster,
        )
        if not routes:
            raise ProxyFailure(
                503,
                "workspace_not_reachable",
                f"workspace {name!r} has no route yet (no Service, AGENT_HOST or Ready pod)",
                "server",
                html=starting,
            )
        preserve = _preserves_path(ws)
        tried: list[str] = []
        timeouts = 0
        for route in routes:
            try:
                resolved = await self._try(route)
            except CancelledError:
                raise
            except ProxyFailure as e:
                proxy_metrics.connect_error(self.cluster_id, route.kind, e)
                tried.append(f"{route.description or route.kind}: {e.message}")
                continue
            except Exception as e:
                failure = Failure(e)
                proxy_metrics.connect_error(self.cluster_id, route.kind, failure)
                timeouts += is_timeout(failure)
                tried.append(f"{route.description or route.kind}: {describe_failure(failure)}")
                continue
            if preserve:
                resolved = Resolved(
                    attrs.evolve(resolved.target, preserve_path=True), resolved.connection
                )
            book = self.parent.activity
            if book is not None:
                entry = book.entry(self.cluster_id, self.workspaces.namespace, name)
                resolved = Resolved(
                    attrs.evolve(resolved.target, activity=entry), resolved.connection
                )
            if not self.closed:
                self.cache[name] = resolved.target
                if route.pod:
                    self.pods[name] = route.pod
            return resolved
        code, reason = (504, "upstream_timeout") if timeouts == len(tried) else (502, "")
        raise ProxyFailure(
            code,
            reason or "upstream_unreachable",
            f"workspace {name!r} is unreachable; tried " + "; ".join(tried),
            # A workspace that is coming up gets the self-reloading page, not an error.
            html=starting if status.get("phase") in ("Pending", "Starting") else None,
        )

    def _stopped_page(self, name: str, message: str) -> bytes:
        origins = self.parent.options.origins
        if not origins.subdomain:
            return stopped_page(name, self._start_url(name), message)
        cluster = quote(self.cluster_id or DEFAULT_CLUSTER, safe="")
        ui = f"{origins.host_origin}/#/c/{cluster}/servers/{quote(name, safe='')}"
        return stopped_elsewhere_page(name, ui, message)

    def _start_url(self, name: str) -> str:
        quoted = quote(name, safe="")
        if self.cluster_id in ("", DEFAULT_CLUSTER):
            return f"/api/servers/{quoted}/start"
        return f"/api/cluster/{quote(self.cluster_id, safe='')}/servers/{quoted}/start"

    def workspace_now(self, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(caches synced, the Workspace or None) without waiting."""
        informer = self.workspaces.informers.get("Workspace")
        if informer is None or not getattr(informer, "synced", False):
            return False, None
        return True, self.workspaces.workspace(name)

    async def workspace(self, name: str) -> dict[str, Any] | None:
        """The Workspace from complete caches (waits for the first sync, bounded)."""
        await self._synced()
        ws: dict[str, Any] | None = self.workspaces.workspace(name)
        return ws

    async def _synced(self) -> None:
        ws = self.workspaces
        if "Pod" not in ws.informers and ws.crd_ready is not None:
            await _bounded(_observe(ws.crd_ready), self.parent.reactor, SYNC_WAIT)
        waits = [i.wait_synced() for k, i in ws.informers.items() if k in _KINDS]
        if len(waits) < len(_KINDS):
            raise ProxyFailure(503, "cluster_not_ready", "the cluster's caches are not running")
        self._subscribe()
        await _bounded(DeferredList(waits), self.parent.reactor, SYNC_WAIT)

    def _service_of(self, name: str) -> dict[str, Any] | None:
        informer = self.workspaces.informers.get("Service")
        if informer is None:
            return None
        ns = self.workspaces.namespace
        for svc in informer.items():
            meta = svc.get("metadata") or {}
            labels = meta.get("labels") or {}
            if meta.get("namespace") == ns and labels.get(LABEL_WORKSPACE) == name:
                return dict(svc)
        return None

    async def _try(self, route: Route) -> Resolved:
        if route.kind == "podproxy":
            return await self._try_podproxy(route)
        if route.kind == "portforward":
            return await self._try_portforward(route)
        return await self._try_direct(route)

    async def _try_direct(self, route: Route) -> Resolved:
        host, port = route.host, route.port
        if is_ip(host):
            addresses = [host]
        else:
            timeout = self.parent.options.dial_timeout
            addresses = await resolve_host(self.parent.reactor, host, port).addTimeout(
                timeout, self.parent.reactor
            )
            if not addresses:
                raise ProxyFailure(502, "upstream_unresolved", "the name does not resolve")
        # AGENT_HOST is user input: a workspace must not reach the Host App's own host.
        refusal = check_target(host, port, addresses, self.parent.allowlist, self.managed())
        if refusal is not None:
            raise ProxyFailure(403, "proxy_target_refused", refusal.message)
        tls = ClientTLS(server_name=host) if route.scheme == "https" else None
        endpoint = Endpoint(addresses[0], port, tls)
        conn = await self._dial(endpoint)
        target = Target(
            endpoint=endpoint,
            route=route.kind,
            description=route.description or f"{route.kind} {host}:{port}",
            upstream_origins=(route.origin,),
        )
        return Resolved(target, conn)

    async def _try_podproxy(self, route: Route) -> Resolved:
        api = await self._api_server()
        if api.proxy is not None:
            raise ProxyFailure(502, "unsupported", "API server behind an HTTP proxy")
        await self._refresh_auth(force=self._auth is None)
        tls = ApiServerTLS(api) if api.scheme == "https" else None
        endpoint = Endpoint(api.host, api.port, tls)  # type: ignore[arg-type]
        conn = await self._dial(endpoint)
        pod = quote(route.pod or "", safe="")
        ns = quote(route.namespace, safe="")
        scheme = "https:" if route.scheme == "https" else ""
        prefix = f"{api.base_path}/api/v1/namespaces/{ns}/pods/{scheme}{pod}:{route.port}/proxy"
        target = Target(
            endpoint=endpoint,
            route="podproxy",
            description=route.description,
            path_prefix=prefix,
            upstream_origins=(route.origin, f"{api.scheme}://{api.authority}"),
            authorization=self._authorization,
        )
        return Resolved(target, conn)

    async def _try_portforward(self, route: Route) -> Resolved:
        pfm = self._port_forwards(create=True)
        assert pfm is not None and route.pod is not None
        host, port = await pfm.forward(route.namespace, route.pod, route.port)
        tls = ClientTLS(server_name=route.host) if route.scheme == "https" else None
        endpoint = Endpoint(host, port, tls)
        conn = await self._dial(endpoint)
        target = Target(
            endpoint=endpoint,
            route="portforward",
            description=route.description,
            upstream_origins=(route.origin,),
        )
        return Resolved(target, conn)

    async def _dial(self, endpoint: Endpoint) -> UpstreamConnection:
        self.dials += 1
        return await self.parent.pool.connect(endpoint, self.parent.options.dial_timeout)

    # API server access -----------------------------------------------------------------------

    async def _api_server(self) -> ApiServer:
        if self._api is None:
            cfg = self.instance.api_client.configuration
            self._api = await self.instance.call(api_server, cfg)
        return self._api

    async def _refresh_auth(self, force: bool = False) -> None:
        api = self._api
        if api is None or self._auth_refreshing:
            return
        now = self.parent.reactor.seconds()
        if not force and self._auth is not None and now - self._auth[0] < AUTH_TTL:
            return
        self._auth_refreshing = True
        try:
            value = await self.instance.call(api.authorization)
            self._auth = (self.parent.reactor.seconds(), value)
        finally:
            self._auth_refreshing = False

    def _authorization(self) -> bytes | None:
        """The cached Authorization value; refreshed in the background when old."""
        auth = self._auth
        if auth is None:
            return None
        if self.parent.reactor.seconds() - auth[0] >= AUTH_TTL and not self.closed:
            Deferred.fromCoroutine(self._refresh_auth()).addErrback(
                lambda f: log.failure("API server credentials refresh failed", f)
            )
        return auth[1]

    def _port_forwards(self, create: bool) -> Any:
        from guildnet.proxy.portforward import PortForwardManager

        try:
            return self.instance.getServiceNamed(PortForwardManager.name)
        except KeyError:
            if not create:
                return None
        pfm = PortForwardManager(
            self.instance, self.parent.reactor, self.parent.options.port_forward_idle_timeout
        )
        pfm.setServiceParent(self.instance)
        return pfm


_KINDS = ("Workspace", "Service", "Pod")
_NONE: frozenset[tuple[str, int]] = frozenset()


def _preserves_path(ws: dict[str, Any]) -> bool:
    """The workspace's path mode (``desired.path_mode``); strip for an invalid spec."""
    try:
        return path_mode(ws) == "preserve"
    except ValueError:
        return False


def _pod_changed(obj: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Only readiness, IP and deletion matter to routing (not every status heartbeat)."""
    if old is None:
        return True

    def key(pod: dict[str, Any]) -> tuple[Any, ...]:
        status = pod.get("status") or {}
        ready = [
            c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"
        ]
        meta = pod.get("metadata") or {}
        return (status.get("podIP"), status.get("phase"), ready, meta.get("deletionTimestamp"))

    return key(obj) != key(old)


def _observe(d: Deferred[Any]) -> Deferred[None]:
    """A Deferred that fires when ``d`` does, without touching ``d``'s result."""
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if not out.called:
            out.callback(None)
        return result

    d.addBoth(fire)
    return out


async def _bounded(d: Deferred[Any], reactor: Any, seconds: float) -> None:
    try:
        await d.addTimeout(seconds, reactor)
    except CancelledError:
        raise ProxyFailure(
            503, "cluster_not_ready", f"the cluster's workspace caches did not sync in {seconds}s"
        ) from None


def _passthrough(fn: Callable[[], object]) -> Callable[[Any], Any]:
    def run(result: Any) -> Any:
        fn()
        return result

    return run
