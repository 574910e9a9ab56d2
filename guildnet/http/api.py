"""The Host App's JSON API: health, UI config and cluster management.

Later capabilities (workspaces, proxy, DB) add their own Klein routes; the
shared request handling (ids, CORS, errors, access log) is in ``site``.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from guildnet import __version__
from guildnet.auth.access import Access, caller_of
from guildnet.auth.identity import Role
from guildnet.cluster.ids import DEFAULT_CLUSTER_ID, InvalidClusterId, validate_cluster_id
from guildnet.cluster.instance import Reachability
from guildnet.cluster.kubeclient import KubeconfigError
from guildnet.cluster.registry import (
    ClusterExists,
    ClusterRecord,
    ClusterUnreachable,
    Registry,
    UnknownCluster,
)
from guildnet.config import Settings
from guildnet.http.access import AccessRoutes
from guildnet.http.db import DBFeedRoutes, DBRoutes
from guildnet.http.docs_routes import DocsRoutes
from guildnet.http.errors import ApiError, bad_field, error_body, write_json
from guildnet.http.health import gather
from guildnet.http.jsonio import read_json_object, string_field
from guildnet.http.router import router
from guildnet.http.ui_routes import UIRoutes
from guildnet.http.workspaces import WorkspaceRoutes, cluster_route
from guildnet.metrics.exposition import Exposition
from guildnet.monitor import ReactorMonitor

REACHABILITY_TTL = 10.0


class HostAPI(WorkspaceRoutes, AccessRoutes, UIRoutes, DBRoutes, DBFeedRoutes, DocsRoutes):
    app = router

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        monitor: ReactorMonitor,
        exposition: Exposition | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.monitor = monitor
        self.exposition = exposition or Exposition()
        #: The tailnet listener (TAILNET_LISTEN), reported by /readyz.
        self.tailnet: Any = None
        self.access = Access.from_settings(settings)

    # errors ---------------------------------------------------------------

    @app.handle_errors(ApiError)
    def api_error(self, request: IRequest, failure: Failure) -> bytes:
        e = failure.value
        assert isinstance(e, ApiError)
        for k, v in e.headers.items():
            request.setHeader(k.encode(), v.encode())
        return error_body(request, e.status, e.code, e.message, e.field, e.extra)

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        return error_body(
            request, 404, "not_found", f"no route for {request.path.decode('latin-1')}"
        )

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        e = failure.value
        assert isinstance(e, MethodNotAllowed)
        allowed = sorted(set(e.valid_methods or []))
        request.setHeader(b"allow", ", ".join(allowed).encode())
        return error_body(
            request,
            405,
            "method_not_allowed",
            f"{request.method.decode('latin-1')} is not allowed here; use {', '.join(allowed)}",
        )

    # health ---------------------------------------------------------------

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request: IRequest) -> bytes:
        return write_json(request, 200, {"status": "ok", "version": __version__})

    @app.route("/readyz", methods=["GET"])
    @inlineCallbacks
    def readyz(self, request: IRequest) -> Any:
        checks: dict[str, Any] = {
            "reactor": self.monitor.status(),
            "registry": {
                "ok": bool(self.registry.running),
                "instances": sorted(self.registry.instances()),
            },
        }
        try:
            self.registry.record(DEFAULT_CLUSTER_ID)
        except UnknownCluster:
            checks["cluster"] = {
                "ok": False,
                "error": f"no default cluster: {self.settings.kubeconfig} does not exist and "
                "neither HOSTAPP_API_PROXY_URL nor in-cluster config is available",
            }
        else:
            reach = yield self._reachability(DEFAULT_CLUSTER_ID)
            checks["cluster"] = _reach_json(reach)
        if self.tailnet is not None:
            checks["tailnet"] = self.tailnet.report()
        ok = all(c["ok"] for c in checks.values())
        # Non-fatal: the Host App serves workspaces without RethinkDB.
        checks["rethinkdb"] = self._rdb_check()
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable"}
        # The details (paths, cluster errors) only for people with a role; a probe
        # needs the status code, and /readyz answers anyone who reaches the listener.
        if caller_of(request).role.at_least(Role.USER):
            body["checks"] = checks
        return write_json(request, 200 if ok else 503, body)

    def _rdb_check(self) -> dict[str, Any]:
        instance = self.registry.running_instance(DEFAULT_CLUSTER_ID)
        manager = instance.rdb if instance is not None else None
        if manager is None:
            return {"ok": True, "fatal": False, "state": "idle", "message": "not used yet"}
        out = manager.health.to_json(time.time())
        return {"ok": manager.health.ready, "fatal": False, **out}

    def _reachability(self, cluster_id: str) -> Deferred[Reachability]:
        """A recent reachability result, probing when the cached one is stale."""
        try:
            instance = self.registry.get(cluster_id)
        except KubeconfigError as e:
            return succeed(Reachability(False, "", None, str(e), time.time()))
        last = instance.last_reachability
        if last is not None and time.time() - last.checked_at < REACHABILITY_TTL:
            return succeed(last)
        return instance.check_reachable()

    @cluster_route("/api/health", ["GET"])
    async def cluster_health(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        """Each part of one cluster with ok, reason and when it was checked; 503 if any fails.

        ``?probe=false`` answers 200 whatever the parts say (the report is in the body): for
        the UI, whose browser would log every 503 as a console error, while a just-added
        cluster's caches are still syncing.
        """
        from twisted.internet import reactor

        probe_arg = (request.args or {}).get(b"probe", [b"true"])[-1]
        if probe_arg not in (b"true", b"false"):
            raise ApiError(400, "invalid_query", "probe must be true or false", field="probe")
        record = self._cluster_record(cluster_id)
        try:
            instance = self.registry.get(record.id)
        except KubeconfigError as e:
            raise ApiError(503, "cluster_unavailable", str(e)) from None
        reach = await self._reachability(record.id)
        body = await gather(
            instance,
            reach,
            self.settings.embed_operator,
            self.settings.use_port_forward,
            reactor,
        )
        failing_status = 503 if probe_arg == b"true" else 200
        return write_json(request, 200 if body["ok"] else failing_status, body)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        """Prometheus text format, or OpenMetrics when the scraper's Accept asks for it."""
        return metrics_response(request, self.exposition)

    @app.route("/api/ui-config", methods=["GET"])
    def ui_config(self, request: IRequest) -> bytes:
        s = self.settings
        has_default = any(not r.stored for r in self.registry.records())
        return write_json(
            request,
            200,
            {
                "version": __version__,
                "origin": s.frontend_origin,
                "defaultCluster": DEFAULT_CLUSTER_ID if has_default else None,
                "namespace": s.namespace,
                "features": {
                    "embeddedOperator": s.embed_operator,
                    "portForward": s.use_port_forward,
                    "apiServerPodProxy": not s.disable_api_proxy,
                    "workspaceLoadBalancer": s.workspace_lb,
                    "workspaceDomain": s.workspace_domain,
                },
            },
        )

    # clusters -------------------------------------------------------------

    @app.route("/api/clusters", methods=["GET"])
    @inlineCallbacks
    def list_clusters(self, request: IRequest) -> Any:
        records = self.registry.records()
        results = yield DeferredList(
            [self._reachability(r.id) for r in records], consumeErrors=True
        )
        items = []
        for record, (ok, reach) in zip(records, results, strict=True):
            items.append(_cluster_json(record, reach if ok else None))
        return write_json(request, 200, {"clusters": items})

    @app.route("/api/clusters", methods=["POST"])
    @inlineCallbacks
    def add_cluster(self, request: IRequest) -> Any:
        body = read_json_object(request)
        cluster_id = string_field(body, "id", required=True, max_len=63)
        assert cluster_id is not None
        _cluster_id_or_400(cluster_id, "id")
        name = string_field(body, "name", required=False, max_len=100)
        kubeconfig = string_field(body, "kubeconfig", required=True, max_len=256 * 1024)
        assert kubeconfig is not None
        try:
            record = yield self.registry.add(cluster_id, name, kubeconfig)
        except ClusterExists:
            raise ApiError(
                409, "cluster_exists", f"cluster {cluster_id!r} already exists", field="id"
            ) from None
        except KubeconfigError as e:
            raise bad_field("kubeconfig", str(e)) from None
        except ClusterUnreachable as e:
            raise ApiError(
                422, "cluster_unreachable", f"cannot validate the cluster: {e}", field="kubeconfig"
            ) from None
        reach = yield self._reachability(record.id)
        return write_json(request, 201, _cluster_json(record, reach))

    @app.route("/api/clusters/<cluster_id>", methods=["GET"])
    @inlineCallbacks
    def get_cluster(self, request: IRequest, cluster_id: str) -> Any:
        record = self._cluster_record(cluster_id)
        reach = yield self._reachability(record.id)
        return write_json(request, 200, _cluster_json(record, reach))

    @app.route("/api/clusters/<cluster_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_cluster(self, request: IRequest, cluster_id: str) -> Any:
        record = self._cluster_record(cluster_id)
        if not record.stored:
            raise ApiError(
                409,
                "cluster_not_deletable",
                "the default cluster comes from configuration and cannot be deleted",
            )
        yield self.registry.remove(record.id)
        return write_json(request, 200, {"deleted": record.id})


def metrics_response(request: IRequest, exposition: Exposition) -> bytes:
    body, content_type = exposition.render(request.getHeader(b"accept"))
    request.setResponseCode(200)
    request.setHeader(b"content-type", content_type.encode("latin-1"))
    request.setHeader(b"cache-control", b"no-store")
    return body


def _cluster_id_or_400(cluster_id: str, field: str) -> None:
    try:
        validate_cluster_id(cluster_id)
    except InvalidClusterId as e:
        raise bad_field(field, str(e)) from None


def _reach_json(reach: Reachability) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": reach.reachable, "server": reach.server}
    if reach.version:
        out["version"] = reach.version
    if reach.error:
        out["error"] = reach.error
    return out


def _cluster_json(record: ClusterRecord, reach: Reachability | None) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "server": record.server,
        "reachable": bool(reach and reach.reachable),
        "version": reach.version if reach else None,
        "error": reach.error if reach else "not checked",
        "deletable": record.stored,
    }
