"""The Host App's service tree, built from Settings.

    HostApp (MultiService)
    ├── ReactorMonitor
    ├── Registry (MultiService) -> Instance per cluster
    ├── ProxyService (the /proxy engine: pooled upstreams, WebSocket splices)
    ├── HTTPS listener (one Site; Klein inside; the proxy intercepts /proxy heads)
    ├── tailnet HTTPS listener (only with TAILNET_LISTEN: a second Site on the same
    │   resource, each connection attributed by tailscaled's WhoIs)
    ├── tailscale serve's unix socket (only with TAILNET_SERVE_SOCKET)
    └── plain-HTTP /metrics listener (only with METRICS_LISTEN)

Children stop in reverse order, so the listener closes before the Registry
tears the clusters down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import ILogObserver, Logger
from twisted.python.components import Componentized

from guildnet.auth.policy_watch import PolicyWatcher
from guildnet.cluster.ids import DEFAULT_CLUSTER_ID
from guildnet.cluster.kubeclient import default_source
from guildnet.cluster.registry import Registry
from guildnet.config import Settings
from guildnet.http.api import HostAPI
from guildnet.http.metrics_listener import MetricsSite
from guildnet.http.site import GuildNetSite, HttpPolicy
from guildnet.http.tlstransport import LeanTLSFactory
from guildnet.metrics.exposition import Exposition
from guildnet.metrics.state import AppCollector
from guildnet.monitor import ReactorMonitor
from guildnet.operator.desired import OperatorConfig
from guildnet.proxy.access import ProxyAccess
from guildnet.proxy.activity import ActivityBook
from guildnet.proxy.engine import ProxyConfig, ProxyEngine, ProxyService
from guildnet.proxy.routes import RouteOptions, ServerRoutes
from guildnet.rdb.manager import RDBConfig, manager_factory
from guildnet.tailnet.gate import tailnet_identity
from guildnet.tailnet.listener import ServeSocketService, TailnetListener
from guildnet.tailnet.serve import serve_identity
from guildnet.tls import find_certificate, server_context_factory, wildcard_names
from guildnet.workspaces import culler
from guildnet.workspaces.service import attach

log = Logger()


class HostApp(MultiService):
    """The whole Host App; its attributes are the parts tests reach into."""

    #: Set by the twistd plugin: the log observer twistd should use (see ``logformat``).
    log_observer: ILogObserver | None = None

    def __init__(
        self, settings: Settings, environ: Mapping[str, str], reactor: Any, cwd: Path | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.monitor = ReactorMonitor(reactor)
        self.monitor.setServiceParent(self)
        source = default_source(settings.kubeconfig, settings.api_proxy_url, settings.in_cluster)
        if source is None:
            log.warn(
                "no default cluster: {kubeconfig} not found and no API proxy or in-cluster "
                "config; add clusters through the API",
                kubeconfig=str(settings.kubeconfig),
            )
        self.registry = Registry(settings.clusters_dir, source, environ, reactor)
        self.registry.setServiceParent(self)
        operator_cfg = OperatorConfig.from_settings(settings)
        self.registry.instance_hooks.append(
            lambda instance: attach(instance, operator_cfg, settings.embed_operator, reactor)
        )
        rdb_factory = manager_factory(RDBConfig.from_settings(settings), environ, reactor)
        self.registry.instance_hooks.append(
            lambda instance: setattr(instance, "rdb_factory", rdb_factory)
        )
        self._has_default = source is not None
        # /metrics: the shared families plus this Host App's live state.
        self.exposition = Exposition([AppCollector(self, reactor)])
        self.api = HostAPI(settings, self.registry, self.monitor, self.exposition)
        # The proxy sees each request head before Klein does (see GuildNetRequest).
        proxy_cfg = ProxyConfig.from_settings(settings)
        self.proxy = ProxyEngine(reactor, proxy_cfg)
        self.activity = ActivityBook()
        routes = ServerRoutes(
            self.registry,
            lambda instance: attach(instance, operator_cfg, settings.embed_operator, reactor),
            self.proxy.pool,
            reactor,
            RouteOptions.from_settings(settings),
            proxy_cfg.allowlist,
            activity=self.activity,
        )
        # Idle culling: the proxy records activity per workspace; a culler per cluster.
        self.registry.instance_hooks.append(
            lambda instance: culler.attach(
                attach(instance, operator_cfg, settings.embed_operator, reactor),
                self.activity,
                reactor,
                default_timeout=settings.workspace_idle_timeout,
                interval=settings.workspace_idle_check_interval,
                routes=routes,
            )
        )
        self.proxy.servers = routes
        self.proxy.managed = routes.managed
        self.proxy.owner = routes.owner
        self.proxy.gate = ProxyAccess(self.api.access, routes)
        if settings.policy.source is not None:
            PolicyWatcher(self.api.access, settings.policy.source, reactor).setServiceParent(self)
        ProxyService(self.proxy).setServiceParent(self)
        self.site = GuildNetSite(
            self.api.app.resource(),
            HttpPolicy.from_settings(settings),
            interceptor=self.proxy,
        )
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        wildcard = wildcard_names(
            settings.workspace_origin_domain if settings.workspace_origin == "subdomain" else None
        )
        self.cert = find_certificate(
            cwd or Path(os.getcwd()), settings.certs_dir, extra_names=wildcard
        )
        # TCP plus the lean TLS wrapper: what SSL4ServerEndpoint does, with cheaper
        # record handling (see guildnet.http.tlstransport).
        endpoint = TCP4ServerEndpoint(reactor, settings.listen.port, interface=settings.listen.host)
        tls = LeanTLSFactory(server_context_factory(self.cert), self.site, clock=reactor)
        self.listener = StreamServerEndpointService(endpoint, tls)
        self.listener._raiseSynchronously = True
        self.listener.setServiceParent(self)
        self.tailnet: TailnetListener | None = None
        if settings.tailnet_listen is not None:
            tailnet_site = GuildNetSite(
                self.api.app.resource(),
                HttpPolicy(settings.frontend_origin),
                interceptor=self.proxy,
                identify=tailnet_identity,
            )
            self.tailnet = TailnetListener(
                settings, tailnet_site, server_context_factory(self.cert), reactor
            )
            self.tailnet.setServiceParent(self)
            self.api.tailnet = self.tailnet
        self.serve_listener: ServeSocketService | None = None
        if settings.tailnet_serve_socket is not None:
            serve_site = GuildNetSite(
                self.api.app.resource(),
                HttpPolicy(settings.frontend_origin),
                interceptor=self.proxy,
                identify=serve_identity,
            )
            self.serve_listener = ServeSocketService(
                settings.tailnet_serve_socket, serve_site, reactor
            )
            self.serve_listener.setServiceParent(self)
        self.metrics_listener: StreamServerEndpointService | None = None
        if settings.metrics_listen is not None:
            where = settings.metrics_listen
            metrics_endpoint = (
                TCP6ServerEndpoint(reactor, where.port, interface=where.host)
                if ":" in where.host
                else TCP4ServerEndpoint(reactor, where.port, interface=where.host)
            )
            self.metrics_listener = StreamServerEndpointService(
                metrics_endpoint, MetricsSite(self.exposition)
            )
            self.metrics_listener._raiseSynchronously = True
            self.metrics_listener.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        """twistd makes the application, parents us to it, then starts logging with the
        application's ``ILogObserver`` if it has one: this is where ours is offered."""
        observer = self.log_observer
        if (
            observer is not None
            and isinstance(parent, Componentized)
            and parent.getComponent(ILogObserver, None) is None
        ):
            parent.setComponent(ILogObserver, observer)
        super().setServiceParent(parent)

    def startService(self) -> None:
        log.info(
            "GuildNet listening on https://{listen} (certificate {cert})",
            listen=str(self.settings.listen),
            cert=str(self.cert.cert),
        )
        if self.settings.tailnet_listen is not None:
            log.info(
                "tailnet listener: {mode} (tailscaled at {socket})",
                mode=str(self.settings.tailnet_listen),
                socket=str(self.settings.tailscale_socket),
            )
        if self.settings.metrics_listen is not None:
            log.info("metrics on http://{listen}/metrics", listen=str(self.settings.metrics_listen))
        super().startService()
        if self._has_default:
            # The default cluster starts at once, so its operator runs without
            # waiting for a first request.
            try:
                self.registry.get(DEFAULT_CLUSTER_ID)
            except Exception as e:
                log.error("default cluster cannot start: {error}", error=str(e))
