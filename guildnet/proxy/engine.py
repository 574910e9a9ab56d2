"""The streaming proxy engine: one :class:`ProxyExchange` per proxied request.

twisted.web owns the client connection. For a ``/proxy`` URI the Site's
request hands control to the engine as soon as the request *head* is parsed
(``Request.gotLength``), so the upstream request starts before the body has
arrived; body pieces are then written upstream as the channel decodes them
(``handleContentChunk``) and the response is written back as it arrives.
Nothing is buffered beyond one socket read per direction:

* request body: a full upstream write buffer pauses reading from the client;
* response body: a full client write buffer pauses reading from the upstream
  (the exchange is the Request's push producer).

A 101 answer to an ``Upgrade`` request turns both connections into a raw
:class:`~guildnet.proxy.splice.Splice`. No exchange has a deadline: connects
have a short dial timeout, and exchanges, splices and pooled connections have
idle timeouts enforced by one sweeper (a single timer for everything).

Where to send a request is decided by ``paths`` (which target the URI names),
``policy`` (whether an explicit target may be reached) and, for workspaces, a
:class:`ServerResolver` (``routes``); what crosses is decided by ``headers``.
"""

from __future__ import annotations

import contextlib
import gc
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IResolutionReceiver
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.http_headers import Headers
from zope.interface import implementer

from guildnet.http.errors import error_body
from guildnet.http.site import accept_request_id, new_request_id
from guildnet.metrics import http as http_metrics
from guildnet.metrics import proxy as proxy_metrics
from guildnet.proxy import headers as H
from guildnet.proxy.activity import Activity
from guildnet.proxy.netutil import (
    flush_tls,
    is_ip,
    mark_direct_dispatch,
    set_nodelay,
    write_through,
)
from guildnet.proxy.origins import WorkspaceOrigins, label_refusal, workspace_refusal
from guildnet.proxy.pages import PAGE_CSP, own_origin_csp, wants_html
from guildnet.proxy.paths import (
    DEFAULT_CLUSTER,
    ProxyPath,
    ProxyPathError,
    format_target,
    parse_proxy_uri,
    parse_target,
    workspace_prefix,
)
from guildnet.proxy.policy import Allowlist, check_target, parse_allowlist
from guildnet.proxy.splice import Splice
from guildnet.proxy.upstream import (
    ClientTLS,
    Endpoint,
    UpstreamConnection,
    UpstreamPool,
    describe_failure,
    is_timeout,
)

log = Logger(namespace="guildnet.proxy")

#: Request-body bytes held while the upstream connection is being opened.
PENDING_BODY_LIMIT = 256 * 1024
_WS = b"websocket"
#: What may not appear in a header name (token characters only) or value (no line
#: breaks or NUL) written without twisted.web's sanitising.
_BAD_NAME = re.compile(rb"[\x00-\x20:\x7f-\xff]")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_NO_TARGETS: frozenset[tuple[str, int]] = frozenset()
_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


class ProxyFailure(Exception):
    """A proxied request cannot be served; becomes a JSON error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        html: bytes | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        #: A page for browsers (``pages``), sent instead of the JSON when Accept asks HTML.
        self.html = html
        self.extra = extra  # more members of the error body (authorization's reason)


@attrs.frozen
class Target:
    """A decided upstream for one request."""

    endpoint: Endpoint
    route: str  # the X-GuildNet-Route value
    description: str  # what was dialed, for errors and logs (no secrets)
    path_prefix: str = ""  # prepended to the upstream path (API server pod proxy)
    upstream_origins: tuple[str, ...] = ()
    authorization: Callable[[], bytes | None] | None = None
    #: Path mode "preserve": the upstream gets the full public path (``/proxy/server/
    #: ws1/lab``), for apps told their base URL (Jupyter); else the path below the prefix.
    preserve_path: bool = False
    #: The workspace's activity record (``activity``): requests and chunks through this
    #: target write its time. None for explicit ``/proxy/{host:port}`` targets.
    activity: Activity | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Resolved:
    """A target and, when the resolver had to dial to decide, the open connection."""

    target: Target
    connection: UpstreamConnection | None = None


class ServerResolver(Protocol):
    """Decides the target of ``/proxy/server/{id}/`` requests (see ``routes``)."""

    def resolve(self, path: ProxyPath) -> Deferred[Resolved]: ...

    def failed(self, path: ProxyPath, target: Target) -> None: ...

    def upgrade_fallback(self, path: ProxyPath, target: Target) -> Deferred[Resolved] | None:
        """Another route for an upgrade the ``target`` route cannot carry, or None."""

    def close(self) -> Deferred[None]: ...


@attrs.frozen
class ProxyConfig:
    """Engine knobs; everything has a default that suits an IDE behind the proxy."""

    allowlist: Allowlist = attrs.field(factory=Allowlist)
    frontend_origin: str = ""
    dial_timeout: float = 3.0
    #: A proxied HTTP exchange with no bytes in either direction for this long is dropped.
    http_idle_timeout: float = 3600.0
    #: A WebSocket (or other upgraded) connection idle this long is closed.
    ws_idle_timeout: float = 3600.0
    pool_idle_timeout: float = 60.0
    sweep_interval: float = 5.0
    #: ``(host, port)`` targets of ``/proxy/{host:port}/`` served in preserve mode
    #: (HOSTAPP_PROXY_PRESERVE_PATH), canonical as ``paths.parse_target`` gives them.
    preserve_path: frozenset[tuple[str, int]] = frozenset()
    #: Single origin (workspaces under ``/proxy/server/``) or one origin per workspace.
    origins: WorkspaceOrigins = attrs.field(factory=WorkspaceOrigins)

    @classmethod
    def from_settings(cls, settings: Any) -> ProxyConfig:
        return cls(
            allowlist=parse_allowlist(tuple(settings.proxy_allowlist)),
            frontend_origin=settings.frontend_origin,
            origins=WorkspaceOrigins.from_settings(settings),
            preserve_path=frozenset(
                parse_target(entry) for entry in getattr(settings, "proxy_preserve_path", ())
            ),
        )


class ProxyGate(Protocol):
    """Authorization of proxied requests (``proxy.access``), asked before any dial."""

    def check(self, request: Any, path: ProxyPath) -> Deferred[None] | None:
        """Raise ProxyFailure to refuse; None to go on, or a Deferred to wait for."""

    def user_header(self, request: Any) -> bytes | None:
        """The ``X-GuildNet-User`` value for the upstream request, if any."""


class ProxyEngine:
    """Owns the upstream pool, live exchanges and splices, and the sweeper."""

    def __init__(
        self,
        reactor: Any,
        config: ProxyConfig,
        servers: ServerResolver | None = None,
        *,
        managed: Callable[[], frozenset[tuple[str, int]]] | None = None,
        owner: Callable[[str, int], str | None] | None = None,
        pool: UpstreamPool | None = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.servers = servers
        self.managed = managed or (lambda: _NO_TARGETS)
        #: The default-cluster workspace whose HTTP port a ``host:port`` is, if any:
        #: ``/proxy/{host:port}/`` to it redirects to the workspace's canonical URL.
        self.owner = owner or (lambda host, port: None)
        #: Who may use which proxy path; None only in tests of the engine itself.
        self.gate: ProxyGate | None = None
        self.pool = pool or UpstreamPool(reactor, idle_timeout=config.pool_idle_timeout)
        self.exchanges: set[ProxyExchange] = set()
        self.splices: set[Splice] = set()
        self._sweeper: LoopingCall | None = None
        self._closed = False
        # Policy decisions per (host, port, addresses), valid while ``managed()`` returns
        # the same object (the allowlist never changes).
        self._decided: dict[tuple[str, str, int, tuple[str, ...]], Resolved | ProxyFailure] = {}
        self._decided_for: object = None
        self.stats = {"requests": 0, "upgrades": 0, "errors": 0, "retries": 0}

    # mounting -------------------------------------------------------------------

    def intercept(self, request: Any, length: int | None) -> ProxyExchange | None:
        """Called at the request head: an exchange for proxy URIs, else None.

        In subdomain mode a request whose Host is a workspace origin is the workspace's,
        whatever its path: the Host App's own routes are never served there.
        """
        uri: bytes = request.channel._path
        workspace_host: tuple[str, str] | str | None = None
        if self.config.origins.subdomain:
            host = request.requestHeaders.getRawHeaders(b"host", [b""])[0]
            workspace_host = self.config.origins.host_target(host.decode("latin-1"))
        if workspace_host is None and not (
            uri.startswith(b"/proxy") or uri.startswith(b"/api/cluster/")
        ):
            return None
        channel = request.channel
        if not getattr(channel, "_guildnet_nodelay", False):
            # HTTPChannel sets TCP_NODELAY only on plain TCP; behind TLS Nagle stays on,
            # and a streamed response (head, then body later) then waits for the
            # client's delayed ACK, ~40 ms a time.
            channel._guildnet_nodelay = True
            set_nodelay(channel.transport)
            write_through(channel.transport)
            mark_direct_dispatch(channel.transport)
        request.method = channel._command
        request.uri = uri
        request.path = uri.split(b"?", 1)[0]
        request.clientproto = channel._version
        request.args = {}
        if workspace_host is not None:
            return self._own_origin(request, length, uri, workspace_host)
        try:
            path = parse_proxy_uri(uri)
        except ProxyPathError as e:
            _metered(request, "/proxy")
            exchange = ProxyExchange(self, request, length, None)
            exchange.local_error(ProxyFailure(400, "bad_proxy_path", e.message, e.field))
            return exchange
        if path is None:
            return None
        _metered(request, _route_template(uri, path))
        self.stats["requests"] += 1
        self._ensure_sweeper()
        exchange = ProxyExchange(self, request, length, path)
        exchange.begin()
        return exchange

    def _own_origin(
        self, request: Any, length: int | None, uri: bytes, target: tuple[str, str] | str
    ) -> ProxyExchange:
        """The exchange for a request on a workspace's own origin (subdomain mode)."""
        _metered(request, "{workspace origin}")
        if isinstance(target, str):
            exchange = ProxyExchange(self, request, length, None)
            exchange.local_error(ProxyFailure(404, "workspace_origin_unknown", target, "host"))
            return exchange
        text = uri.decode("latin-1")
        absolute = _ABSOLUTE_FORM.match(text)
        if absolute:
            text = text[absolute.end() :] or "/"
        cluster_id, name = target
        path = ProxyPath(
            kind="server",
            cluster_id=cluster_id,
            server=name,
            target_host=None,
            target_port=None,
            scheme="http",
            upstream_path=text,
            prefix="",
        )
        exchange = ProxyExchange(self, request, length, path)
        if not text.startswith("/"):
            exchange.local_error(
                ProxyFailure(400, "bad_proxy_path", "the request-target must be a path", "uri")
            )
            return exchange
        self.stats["requests"] += 1
        self._ensure_sweeper()
        exchange.begin()
        return exchange

    # decisions --------------------------------------------------------------------

    def target_now(self, path: ProxyPath) -> Resolved | None:
        """The decision for an address target, synchronously; None when it needs waiting."""
        host = path.target_host
        if path.kind == "server" or host is None or not is_ip(host):
            return None
        assert path.target_port is not None
        return self._checked(path, host, path.target_port, [host])

    def target_for(self, path: ProxyPath) -> Deferred[Resolved]:
        if path.kind == "server":
            if self.servers is None:
                raise ProxyFailure(
                    404, "workspace_not_found", "no cluster is configured for workspaces"
                )
            return self.servers.resolve(path)
        assert path.target_host is not None and path.target_port is not None
        host, port = path.target_host, path.target_port
        if is_ip(host):
            return succeed(self._checked(path, host, port, [host]))
        d = resolve_host(self.reactor, host, port)
        return d.addCallback(lambda addresses: self._checked(path, host, port, addresses))

    def _checked(self, path: ProxyPath, host: str, port: int, addresses: list[str]) -> Resolved:
        """The policy decision for an explicit target, cached while ``managed()`` holds."""
        managed = self.managed()
        if managed is not self._decided_for:
            self._decided.clear()
            self._decided_for = managed
        key = (path.scheme, host, port, tuple(addresses))
        decided = self._decided.get(key)
        if decided is None:
            decided = self._decide(path, host, port, addresses, managed)
            if len(self._decided) >= 4096:
                self._decided.clear()
            self._decided[key] = decided
        if isinstance(decided, ProxyFailure):
            # A fresh exception each time: re-raising one object would grow its traceback.
            raise ProxyFailure(decided.status, decided.code, decided.message, decided.field)
        return decided

    def _decide(
        self,
        path: ProxyPath,
        host: str,
        port: int,
        addresses: list[str],
        managed: frozenset[tuple[str, int]],
    ) -> Resolved | ProxyFailure:
        refusal = check_target(host, port, addresses, self.config.allowlist, managed)
        to = format_target(host, port)
        if refusal is not None:
            return ProxyFailure(
                403, "proxy_target_refused", f"{to}: {refusal.message} ({refusal.reason})"
            )
        # Dial the address that was checked, never the name again (DNS rebinding).
        tls = ClientTLS(server_name=host) if path.scheme == "https" else None
        endpoint = Endpoint(addresses[0], port, tls)
        return Resolved(
            Target(
                endpoint=endpoint,
                route="direct",
                description=f"{path.scheme}://{to}",
                upstream_origins=(f"{path.scheme}://{to}",),
                preserve_path=(host, port) in self.config.preserve_path,
            )
        )

    # bookkeeping ---------------------------------------------------------------------

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None and not self._closed:
            loop = LoopingCall(self.sweep)
            loop.clock = self.reactor
            self._sweeper = loop
            loop.start(self.config.sweep_interval, now=False).addErrback(
                lambda f: log.failure("proxy sweeper failed", f)
            )

    def sweep(self) -> None:
        """Idle timeouts for pooled connections, exchanges and splices."""
        self.pool.sweep()
        now = self.now()
        for exchange in list(self.exchanges):
            if now - exchange.last_active > self.config.http_idle_timeout:
                exchange.idle_out()
        for splice in list(self.splices):
            if splice.idle_for(now) > self.config.ws_idle_timeout:
                log.info("closing idle upgraded connection: {what}", what=splice.description)
                splice.close()
        if not self.exchanges and not self.splices and not self.pool.open_connections:
            self._stop_sweeper()

    def _stop_sweeper(self) -> None:
        loop, self._sweeper = self._sweeper, None
        if loop is not None and loop.running:
            loop.stop()

    def now(self) -> float:
        return float(self.reactor.seconds())

    def close(self) -> Deferred[None]:
        """Stop everything the engine started: sweeper, exchanges, splices, pool."""
        self._closed = True
        self._stop_sweeper()
        for exchange in list(self.exchanges):
            exchange.abort()
        for splice in list(self.splices):
            splice.abort()
        d = self.pool.close()
        if self.servers is not None:
            servers = self.servers
            d.addCallback(lambda _: servers.close())
        return d


def _metered(request: Any, template: str) -> None:
    """Count the request in flight under its route template (the access log ends it)."""
    request.route_template = template
    request.metered = True
    http_metrics.started()


def _route_template(uri: bytes, path: ProxyPath) -> str:
    if path.kind == "server":
        if uri.startswith(b"/api/cluster/"):
            return "/api/cluster/{cluster_id}/proxy/server/{id}/"
        return "/proxy/server/{id}/"
    return "/proxy?to=" if uri.startswith(b"/proxy?") else "/proxy/{target}/"


class ProxyService(Service):
    """Ties the engine to the service tree: stopping it closes every proxied connection."""

    name = "proxy"

    def __init__(self, engine: ProxyEngine) -> None:
        self.engine = engine

    def startService(self) -> None:
        super().startService()
        _freeze_startup_heap()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.engine.close()


_heap_frozen = False


def _freeze_startup_heap() -> None:
    """Move what exists at startup (modules, settings, the resource tree) out of the
    cyclic collector's reach, once per process.

    Those objects live as long as the process; left in the oldest generation, every
    full collection walks all of them, tens of milliseconds that land on whichever
    proxied requests are in flight (seen as the p99 of small GETs under load).
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.freeze()


def resolve_host(reactor: Any, host: str, port: int) -> Deferred[list[str]]:
    """All addresses of ``host`` (A and AAAA), via the reactor's resolver."""
    d: Deferred[list[str]] = Deferred()
    found: list[str] = []

    @implementer(IResolutionReceiver)
    class Receiver:
        def resolutionBegan(self, resolution: Any) -> None:
            pass

        def addressResolved(self, address: Any) -> None:
            if address.host not in found:
                found.append(address.host)

        def resolutionComplete(self) -> None:
            if not d.called:  # it may have been cancelled (a timeout)
                d.callback(found)

    reactor.nameResolver.resolveHostName(Receiver(), host, portNumber=port)
    return d


@implementer(IPushProducer)
class ProxyExchange:
    """One proxied request, from its head to the end of its response or its splice."""

    def __init__(
        self, engine: ProxyEngine, request: Any, length: int | None, path: ProxyPath | None
    ) -> None:
        self.engine = engine
        self.request = request
        self.channel = request.channel
        self.length = length
        self.path = path
        self.target: Target | None = None
        self.conn: UpstreamConnection | None = None
        self.last_active = engine.now()
        self.started = time.monotonic()
        self.request_complete = False  # the channel called requestReceived
        self.responded = False  # the response head went to the client
        self.done = False
        self.client_gone = False
        self.reused = False
        self.retried = False
        self.sent_body = False
        self.bytes_in = 0  # request body bytes from the client (for /metrics)
        self.head_only = request.method == b"HEAD"
        #: Served at the root of the workspace's own origin (subdomain mode).
        self.own_origin = path is not None and path.kind == "server" and path.prefix == ""
        secure = self.channel.__dict__.get("_guildnet_secure")
        if secure is None:  # a property of the connection: asked once per channel
            secure = self.channel.__dict__["_guildnet_secure"] = bool(request.isSecure())
        self.secure = secure
        self.upgrade = _wants_websocket(request)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._client_paused = False
        self._producing = False
        self._upgrade_headers: list[tuple[bytes, bytes]] | None = None
        self._waiting: Deferred[Any] | None = None
        self._finish_pending = False
        self._fallback_tried = False
        self.activity: Activity | None = None
        # Request fields the access log and Request.write rely on.
        request.defaultContentType = None
        request.request_id = _request_id(request)
        engine.exchanges.add(self)
        request.notifyFinish().addErrback(self._client_lost)

    # start ---------------------------------------------------------------------------

    def begin(self) -> None:
        path = self.path
        assert path is not None
        origins = self.engine.config.origins
        if self.own_origin:
            refusal = workspace_refusal(
                origins,
                self._public_origin(),
                method=self.request.method,
                origin=_header(self.request, b"origin"),
                upgrade=self.upgrade,
            )
            if refusal is not None:
                self.local_error(ProxyFailure(403, "cross_origin_refused", refusal, "origin"))
                return
        elif origins.subdomain:
            self._leave_host_origin(path)
            return
        gate = self.engine.gate
        if gate is not None:
            try:
                waiting = gate.check(self.request, path)
            except ProxyFailure as e:
                self.local_error(e)
                return
            except Exception:
                log.failure("proxy authorization failed")
                self.local_error(ProxyFailure(500, "internal_error", "authorization failed"))
                return
            if waiting is not None:
                self._waiting = waiting
                waiting.addCallbacks(self._allowed, self._resolve_failed)
                return
        self._allowed(None)

    def _allowed(self, _: object) -> None:
        self._waiting = None
        if self.client_gone:
            return
        path = self.path
        assert path is not None
        if path.redirect_to is not None:
            self.local_redirect(path.redirect_to)
            return
        if path.kind == "to":
            assert path.target_host is not None and path.target_port is not None
            owner = self.engine.owner(path.target_host, path.target_port)
            if owner is not None:
                # One canonical URL per workspace (its path mode, cookies and storage
                # live there): an address of its HTTP port is another spelling of it.
                self.local_redirect(workspace_prefix(DEFAULT_CLUSTER, owner) + path.upstream_path)
                return
        self._route()

    def _leave_host_origin(self, path: ProxyPath) -> None:
        """Subdomain mode: nothing proxied is served on the Host App's origin.

        A workspace's path URL redirects to its own origin (old links keep working, and
        the page never runs with the Host App's origin); so does an address of a
        workspace's HTTP port. Any other explicit ``/proxy/{host:port}/`` target is
        refused: it would run on the Host App's origin, which this mode rules out.
        """
        origins = self.engine.config.origins
        server, cluster_id = path.server, path.cluster_id
        if path.kind == "to":
            assert path.target_host is not None and path.target_port is not None
            server = self.engine.owner(path.target_host, path.target_port)
            cluster_id = DEFAULT_CLUSTER
        if server is None:
            self.local_error(
                ProxyFailure(
                    403,
                    "proxy_target_refused",
                    "WORKSPACE_ORIGIN=subdomain serves only workspaces, each on its own "
                    "origin; explicit /proxy targets would run on the Host App's origin",
                    "to",
                )
            )
            return
        url = origins.url(cluster_id, server)
        if url is None:
            self.local_error(
                ProxyFailure(
                    404,
                    "workspace_origin_unavailable",
                    f"workspace {server!r} of cluster {cluster_id!r} has no origin: "
                    f"{label_refusal(cluster_id, server)}",
                    "server",
                )
            )
            return
        self.local_redirect(url[:-1] + path.upstream_path)

    def _route(self) -> None:
        path = self.path
        assert path is not None
        try:
            resolved = self.engine.target_now(path)
            d = None if resolved is not None else self.engine.target_for(path)
        except ProxyFailure as e:
            self.local_error(e)
            return
        if d is None:
            assert resolved is not None
            self._got_target(resolved)  # an address target: decided without a Deferred
            return
        self._waiting = d
        d.addCallbacks(self._got_target, self._resolve_failed)

    def _got_target(self, resolved: Resolved) -> None:
        self._waiting = None
        self.target = resolved.target
        activity = self.activity = resolved.target.activity
        if activity is not None:
            activity.at = self.engine.now()
        if self.client_gone:
            if resolved.connection is not None:
                self.engine.pool._release(resolved.connection)
            return
        servers = self.engine.servers
        path = self.path
        assert path is not None
        if (
            self.upgrade
            and resolved.target.route == "podproxy"
            and "?" in path.upstream_path
            and servers is not None
            and not self._fallback_tried
        ):
            # kube-apiserver drops the query string of upgraded pod-proxy requests
            # (kubernetes#77142): code-server's WebSocket URL needs it, so such a
            # request goes through a port-forward to the same pod instead.
            self._fallback_tried = True
            if resolved.connection is not None:
                self.engine.pool._release(resolved.connection)
            d = servers.upgrade_fallback(path, resolved.target)
            if d is not None:
                self._waiting = d
                d.addCallbacks(self._got_target, self._resolve_failed)
                return
        conn = resolved.connection or self.engine.pool.take_idle(resolved.target.endpoint)
        if conn is not None:
            self.reused = resolved.connection is None
            self._send(conn)
            return
        self._dial()

    def _dial(self) -> None:
        assert self.target is not None
        d = self.engine.pool.connect(self.target.endpoint, self.engine.config.dial_timeout)
        self._waiting = d
        d.addCallbacks(self._connected, self._dial_failed)

    def _connected(self, conn: UpstreamConnection) -> None:
        self._waiting = None
        if self.client_gone:
            self.engine.pool._release(conn)
            return
        self.reused = False
        self._send(conn)

    def _resolve_failed(self, reason: Failure) -> None:
        self._waiting = None
        if reason.check(CancelledError) or self.client_gone:
            return
        if reason.check(ProxyFailure):
            self.local_error(reason.value)  # type: ignore[arg-type]
            return
        log.failure("proxy target resolution failed", reason)
        self.local_error(ProxyFailure(502, "upstream_unresolved", describe_failure(reason)))

    def _dial_failed(self, reason: Failure) -> None:
        self._waiting = None
        if reason.check(CancelledError) or self.client_gone:
            return
        assert self.target is not None and self.path is not None
        proxy_metrics.connect_error(self._metric_cluster(), self.target.route, reason)
        if self.engine.servers is not None and self.path.kind == "server":
            self.engine.servers.failed(self.path, self.target)
        what = f"{self.target.description} (route {self.target.route})"
        if is_timeout(reason):
            self.local_error(
                ProxyFailure(504, "upstream_timeout", f"{what}: {describe_failure(reason)}")
            )
        else:
            self.local_error(
                ProxyFailure(502, "upstream_unreachable", f"{what}: {describe_failure(reason)}")
            )

    def _send(self, conn: UpstreamConnection) -> None:
        target = self.target
        assert target is not None and self.path is not None
        self.conn = conn
        head = self._request_head(target)
        conn.start(self, head, head_only=self.head_only, has_body=self._has_body())
        self.sent_body = bool(self._pending)
        for piece in self._pending:
            conn.write_body(piece)
        self._pending = []
        self._pending_size = 0
        if self.request_complete:
            conn.end_body(self._trailer())
        if self._client_paused and not conn.lost:
            self._resume_client()

    def _has_body(self) -> bool:
        return self.length is None or self.length > 0

    def _trailer(self) -> bytes:
        return b"0\r\n\r\n" if self.length is None else b""

    def _request_head(self, target: Target) -> bytes:
        request = self.request
        path = self.path
        assert path is not None
        raw: list[tuple[bytes, bytes]] = []
        had_length = False
        for name, values in request.requestHeaders.getAllRawHeaders():
            low = name.lower()
            if low in (b"content-length", b"transfer-encoding", b"expect"):
                had_length = had_length or low == b"content-length"
                continue
            for value in values:
                raw.append((name, value))
        host = request.requestHeaders.getRawHeaders(b"host", [b""])[0]
        forwarded = H.forward_request_headers(
            raw,
            client_ip=_client_ip(request),
            proto="https" if self.secure else "http",
            host=host,
            prefix=path.prefix,
            upgrade=self.upgrade,
            user=self.engine.gate.user_header(request) if self.engine.gate is not None else None,
        )
        if self.length is None:
            forwarded.append((b"Transfer-Encoding", b"chunked"))
        elif self.length > 0 or had_length:
            forwarded.append((b"Content-Length", b"%d" % self.length))
        if target.authorization is not None:
            token = target.authorization()
            if token:
                forwarded = [(n, v) for n, v in forwarded if n.lower() != b"authorization"]
                forwarded.append((b"Authorization", token))
        upstream_path = path.upstream_path
        if target.preserve_path:
            upstream_path = path.prefix + upstream_path
        lines = [
            request.method,
            b" ",
            (target.path_prefix + upstream_path).encode("latin-1"),
            b" HTTP/1.1\r\n",
        ]
        for name, value in forwarded:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        return b"".join(lines)

    # request body (from the channel) -----------------------------------------------------

    def body_chunk(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.done or self.client_gone:
            return
        self.last_active = t = self.engine.now()
        if self.activity is not None:
            self.activity.at = t
        if self.length is None:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        conn = self.conn
        if conn is not None:
            self.sent_body = True
            conn.write_body(data)
            if self._client_paused:
                # The channel resumed reading on its own; keep the upload paused.
                self.channel.transport.pauseProducing()
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > PENDING_BODY_LIMIT:
            self._pause_client()

    def body_end(self) -> None:
        """The whole request (head and body) has arrived."""
        self.request_complete = True
        if self._finish_pending:
            self._finish_pending = False
            if not self.client_gone:
                self.request.finish()
            return
        if self.done:
            return
        if self.conn is not None:
            self.conn.end_body(self._trailer())

    def pause_body(self) -> None:
        """The upstream's write buffer is full: stop reading the client."""
        if not self.request_complete:
            self._pause_client()

    def resume_body(self) -> None:
        if self._client_paused:
            self._resume_client()

    def _pause_client(self) -> None:
        if not self._client_paused and not self.client_gone:
            self._client_paused = True
            self.channel.transport.pauseProducing()

    def _resume_client(self) -> None:
        if self._client_paused and not self.client_gone:
            self._client_paused = False
            self.channel.transport.resumeProducing()

    # response (from the upstream) ----------------------------------------------------------

    def upstream_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.last_active = self.engine.now()
        target = self.target
        assert target is not None and self.path is not None
        if status == 101:
            self._upgrade_headers = headers  # upstream_upgraded follows
            return
        request = self.request
        if self.client_gone:
            return
        framed_by_te = False
        upstream: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            low = name.lower()
            if low == b"transfer-encoding":
                framed_by_te = True
                continue
            if low == b"location" and target.path_prefix:
                value = _strip_prefix(value, target.path_prefix)
            upstream.append((name, value))
        if framed_by_te:
            upstream = [(n, v) for n, v in upstream if n.lower() != b"content-length"]
        out = H.rewrite_response_headers(
            upstream,
            prefix=self.path.prefix,
            host_origin=self._host_origin(),
            upstream_origins=self._upstream_origins(),
            route=target.route,
            preserve=target.preserve_path,
            public_path=request.path.decode("latin-1"),
            own_origin=self.own_origin,
        )
        out.append((b"x-request-id", request.request_id.encode()))
        if not self.request_complete and self.length != 0:
            out = [(n, v) for n, v in out if n.lower() != b"connection"]
            out.append((b"connection", b"close"))
        request.setResponseCode(status)
        self.responded = True
        request.registerProducer(self, True)
        self._producing = True
        self._write_head(out)  # the head goes out now: SSE clients see it at once

    def _write_head(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the response head and leave the Request as its own first write would.

        ``Request.write`` builds a ``Headers`` object and re-encodes every name and
        value; these came from httptools' parser and ``headers``' rewrites, so they are
        written as they are, after one check that no value could break the framing
        (else twisted.web's sanitising path is used).
        """
        request = self.request
        version = request.clientproto
        code = request.code
        has_length = False
        for name, _ in headers:
            if name.lower() == b"content-length":
                has_length = True
                break
        no_body = request.method == b"HEAD" or code in NO_BODY_CODES
        chunked = version == b"HTTP/1.1" and not has_length and not no_body
        if chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        lines = [version, b" %d " % code, request.code_message, b"\r\n"]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        names = [n for n, _ in headers]
        if (
            not all(names)
            or _BAD_NAME.search(b"".join(names)) is not None
            or _BAD_VALUE.search(b"".join([v for _, v in headers])) is not None
        ):
            response = Headers()
            for name, value in headers:
                if name != b"Transfer-Encoding":
                    with contextlib.suppress(ValueError):  # an invalid name is dropped
                        response.addRawHeader(name, value)
            request.responseHeaders = response
            request.write(b"")
            return
        request.startedWriting = 1
        request.chunked = 1 if chunked else 0
        if no_body:
            request.write = _discard  # as Request.write does for HEAD and 204/304
        self.channel.write(b"".join(lines))

    def upstream_body(self, data: bytes) -> None:
        self.last_active = t = self.engine.now()
        if self.activity is not None:
            self.activity.at = t
        if not self.client_gone:
            self.request.write(data)

    def upstream_done(self) -> None:
        self.conn = None
        if self.client_gone or self.done:
            self._forget()
            return
        self._finish()

    def upstream_failed(self, reason: Failure) -> None:
        conn, self.conn = self.conn, None
        if self.client_gone or self.done:
            self._forget()
            return
        if (
            not self.responded
            and conn is not None
            and self.reused
            and not self.retried
            and not self.sent_body
            and not self._has_body()
        ):
            # A pooled connection the upstream had already closed: try a fresh one.
            self.retried = True
            self.engine.stats["retries"] += 1
            self._dial()
            return
        what = self.target.description if self.target else "upstream"
        if not self.responded:
            self.local_error(
                ProxyFailure(502, "upstream_failed", f"{what}: {describe_failure(reason)}")
            )
            return
        # The response is under way: the only honest signal left is a truncated response.
        log.info(
            "upstream failed mid-response ({what}): {why}",
            what=what,
            why=describe_failure(reason),
        )
        self.done = True
        self._unregister()
        self._forget()
        self.channel.loseConnection()

    def upstream_upgraded(self, rest: bytes) -> None:
        conn, self.conn = self.conn, None
        assert conn is not None and self.target is not None and self.path is not None
        if self.client_gone or self.done or not self.upgrade or not self.request_complete:
            conn.abort()
            if not (self.client_gone or self.done):
                self.local_error(
                    ProxyFailure(502, "upstream_failed", "upstream switched protocols unasked")
                )
            return
        headers = H.rewrite_response_headers(
            self._upgrade_headers or [],
            prefix=self.path.prefix,
            host_origin=self._host_origin(),
            upstream_origins=self._upstream_origins(),
            route=self.target.route,
            upgrade=True,
            preserve=self.target.preserve_path,
            own_origin=self.own_origin,
        )
        lines = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        lines += [b"%s: %s\r\n" % (n, v) for n, v in headers]
        lines.append(b"x-request-id: %s\r\n\r\n" % self.request.request_id.encode())
        channel = self.channel
        transport = channel.transport
        buffered = b"".join(channel._dataBuffer)
        channel._dataBuffer = []
        splice = Splice(
            transport,
            conn,
            self.engine.reactor.seconds,
            self.engine.config.ws_idle_timeout,
            self._splice_closed,
            description=f"{self.path.prefix} via {self.target.route}",
        )
        splice.metric_labels = (self._metric_cluster(), self.target.route)
        splice.activity = self.activity
        self.engine.splices.add(splice)
        self.engine.stats["upgrades"] += 1
        # Hand the client connection over: the channel stops parsing HTTP.
        proto = splice.client_protocol
        channel.dataReceived = proto.dataReceived
        channel.connectionLost = proto.connectionLost
        channel.setTimeout(None)
        proto.makeConnection(transport)
        self.done = True
        self._forget()
        self.request.code = 101
        splice.start(b"".join(lines), buffered, rest)

    def _splice_closed(self, splice: Splice) -> None:
        """The WebSocket ended: its access-log line, with bytes both ways and duration."""
        self.engine.splices.discard(splice)
        request = self.request
        request.sentLength = splice.bytes_down
        request.receivedLength = splice.bytes_up
        request.outcome = _SPLICE_OUTCOMES[splice.closed_by]
        site = getattr(self.channel, "site", None)
        if site is not None:
            site.log(request)

    # IPushProducer: the client's write buffer paces the upstream ---------------------------

    def pauseProducing(self) -> None:
        if self.conn is not None:
            self.conn.pause_reading()

    def resumeProducing(self) -> None:
        if self.conn is not None:
            self.conn.resume_reading()

    def stopProducing(self) -> None:
        self.abort()

    # endings --------------------------------------------------------------------------------

    def local_redirect(self, location: str) -> None:
        request = self.request
        request.setResponseCode(307)
        request.setHeader(b"location", location.encode("latin-1"))
        request.setHeader(b"cache-control", b"no-store")
        self._local_body(b"")

    def local_error(self, failure: ProxyFailure) -> None:
        self.engine.stats["errors"] += 1
        request = self.request
        request.responseHeaders = Headers()
        if failure.html is not None and wants_html(request.getHeader(b"accept")):
            request.setResponseCode(failure.status)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            csp = (
                own_origin_csp(H.frame_ancestors(self._host_origin()))
                if self.own_origin
                else PAGE_CSP
            )
            request.setHeader(b"content-security-policy", csp.encode())
            request.setHeader(b"x-content-type-options", b"nosniff")
            request.setHeader(b"x-guildnet-error", failure.code.encode())
            self._local_body(failure.html)
            return
        body = error_body(
            request, failure.status, failure.code, failure.message, failure.field, failure.extra
        )
        if self.target is not None:
            request.setHeader(b"x-guildnet-route", self.target.route.encode())
        self._local_body(body)

    def _local_body(self, body: bytes) -> None:
        if self.client_gone or self.done:
            return
        request = self.request
        request.setHeader(b"x-request-id", request.request_id.encode())
        request.setHeader(b"content-length", b"%d" % len(body))
        if not self.request_complete and self.length != 0:
            request.setHeader(b"connection", b"close")
        self.responded = True
        request.write(body)
        self._finish()

    def _finish(self) -> None:
        """The response is complete; end the client exchange without breaking the channel.

        ``Request.finish`` may only run once the channel has the whole request: it
        makes the channel parse the next one. For a bodiless request that happens
        right after the head (``body_end`` follows synchronously); when a body is
        still arriving, the response is ended by hand and the connection closed.
        """
        self.done = True
        self._unregister()
        self._forget()
        if self.client_gone:
            return
        if self.request_complete:
            self.request.finish()
            # The response is whole: send it now rather than on the next loop turn
            # (Twisted's TLS transport holds small writes back to merge them; head,
            # body and end were all written above, so there is nothing left to merge).
            flush_tls(self.channel.transport)
            return
        if self.length == 0:
            self._finish_pending = True
            return
        request = self.request
        channel = self.channel
        channel.persistent = False
        channel.dataReceived = lambda data: None
        if request.chunked:
            channel.write(b"0\r\n\r\n")
        site = getattr(channel, "site", None)
        if site is not None:
            site.log(request)
        request.finished = 1
        channel.loseConnection()

    def _unregister(self) -> None:
        if self._producing:
            self._producing = False
            if not self.client_gone:
                self.request.unregisterProducer()

    def _forget(self) -> None:
        self.engine.exchanges.discard(self)

    def _client_lost(self, reason: Failure) -> None:
        """The client went away: whatever is in flight upstream is abandoned."""
        self.client_gone = True
        self._producing = False
        self.abort()

    def abort(self) -> None:
        self.done = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.called:
            waiting.cancel()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self._forget()
        if not self.client_gone and not self.request.finished:
            self.client_gone = True
            self.channel.transport.abortConnection()

    def idle_out(self) -> None:
        log.info(
            "closing proxied request idle for {seconds:.0f}s: {path}",
            seconds=self.engine.now() - self.last_active,
            path=self.request.path.decode("latin-1", "replace")[:200],
        )
        self.abort()

    # metrics ------------------------------------------------------------------------------

    def _metric_cluster(self) -> str:
        path = self.path
        return path.cluster_id if path is not None and path.kind == "server" else ""

    def record_metrics(self, code: int) -> None:
        """Count the ended exchange (called once, from the access log)."""
        target = self.target
        request = self.request
        if target is None:
            kind, cluster = proxy_metrics.LOCAL, ""
        else:
            kind, cluster = target.route, self._metric_cluster()
        received = getattr(request, "receivedLength", None)
        proxy_metrics.record(
            cluster,
            kind,
            code,
            self.bytes_in if received is None else received,
            request.sentLength,
        )

    # helpers ------------------------------------------------------------------------------

    def _host_origin(self) -> str:
        """The origin allowed to frame workspace pages: the Host App's."""
        config = self.engine.config
        return config.origins.host_origin or config.frontend_origin or self._public_origin()

    def _public_origin(self) -> str:
        host = self.request.requestHeaders.getRawHeaders(b"host", [b""])[0]
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{host.decode('latin-1')}"

    def _upstream_origins(self) -> list[str]:
        assert self.target is not None
        host = self.request.requestHeaders.getRawHeaders(b"host", [b""])[0].decode("latin-1")
        # Host is forwarded, so an app builds absolute URLs with the public host; it
        # may believe it is served over http (few read X-Forwarded-Proto).
        return [*self.target.upstream_origins, f"http://{host}", f"https://{host}"]


#: The access log's ``outcome`` of a WebSocket, by which side ended it.
_SPLICE_OUTCOMES = {"client": "client_closed", "upstream": "complete", "proxy": "proxy_closed"}


def _discard(data: bytes) -> None:
    pass


def _header(request: Any, name: bytes) -> str | None:
    values = request.requestHeaders.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None


def _wants_websocket(request: Any) -> bool:
    upgrade = request.requestHeaders.getRawHeaders(b"upgrade")
    if not upgrade:
        return False
    return any(_WS in v.lower() for v in upgrade)


def _request_id(request: Any) -> str:
    return accept_request_id(request.getHeader(b"x-request-id")) or new_request_id()


def _client_ip(request: Any) -> str:
    addr = request.getClientAddress()
    return str(getattr(addr, "host", "") or "unknown")


def _strip_prefix(location: bytes, prefix: str) -> bytes:
    """Undo the API server's pod-proxy prefix in a Location it rewrote."""
    p = prefix.encode("latin-1")
    if location.startswith(p):
        rest = location[len(p) :]
        return rest if rest.startswith(b"/") else b"/" + rest
    return location


__all__ = [
    "ProxyConfig",
    "ProxyEngine",
    "ProxyExchange",
    "ProxyFailure",
    "ProxyService",
    "Resolved",
    "ServerResolver",
    "Target",
]
