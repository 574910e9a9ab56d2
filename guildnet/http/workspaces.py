"""The workspace API: launch, list, inspect, delete, logs and live progress.

Every route exists for the default cluster and for each registered cluster:
``/api/<rest>`` is also ``/api/cluster/<clusterId>/<rest>`` and ``/sse/<rest>`` is also
``/sse/cluster/<clusterId>/<rest>`` (one handler, ``cluster_id`` defaults to "default").

Reads come from the WorkspaceService's informer caches (never an API list per request);
writes go to the API server on the Instance's API pool. Streams (``/sse/servers``,
``/sse/logs``) are ``SSEStream``s registered as Instance workers, so a cluster that
stops or is removed closes them.

Passwords leave only through ``GET /api/servers/{id}/password``; no other response and no
log line carries them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, Final, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from guildnet.auth.access import Access, Caller, caller_of, owner_refusal
from guildnet.auth.csrf import is_form
from guildnet.auth.ownership import may_access
from guildnet.cluster.ids import DEFAULT_CLUSTER_ID, InvalidClusterId, validate_cluster_id
from guildnet.cluster.instance import Instance, describe_error
from guildnet.cluster.kubeclient import KubeconfigError
from guildnet.cluster.registry import ClusterRecord, Registry, UnknownCluster
from guildnet.cluster.rest import MERGE_PATCH, KubeApiError, object_path
from guildnet.config import Settings
from guildnet.http.access import forbidden
from guildnet.http.errors import ApiError, bad_field, write_json
from guildnet.http.jsonio import read_json, read_json_object
from guildnet.http.router import router
from guildnet.http.sse import SSEStream
from guildnet.operator import constants as C
from guildnet.operator.desired import OperatorConfig, secret_password
from guildnet.operator.images import defaults_json, image_kind, preset_json
from guildnet.operator.spec import SpecError, parse_spec, validate_name
from guildnet.proxy.origins import WorkspaceOrigins, label_refusal
from guildnet.workspaces import logs as L
from guildnet.workspaces import views
from guildnet.workspaces.lifecycle import (
    JSON_PATCH,
    changed_spec,
    keep_volume_patch,
    replace_spec_patch,
    restart_patch,
)
from guildnet.workspaces.service import WorkspaceService, attach

F = TypeVar("F", bound=Callable[..., Any])

READY_WAIT: Final = 15.0  # seconds a request waits for the CRD and the caches
SETTLE_WAIT: Final = 3.0  # seconds a write waits for the cache to show it
NAME_ATTEMPTS: Final = 3  # generated names that collide are retried


def cluster_route(path: str, methods: list[str]) -> Callable[[F], F]:
    """Register ``path`` and its per-cluster twin on the shared router."""

    def deco(f: F) -> F:
        head, rest = path.lstrip("/").split("/", 1)
        router.route(path, methods=methods, endpoint=f.__name__)(f)
        router.route(
            f"/{head}/cluster/<cluster_id>/{rest}",
            methods=methods,
            endpoint=f"{f.__name__}__cluster",
        )(f)
        return f

    return deco


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _observe(d: Deferred[Any]) -> Deferred[None]:
    """A Deferred that fires with ``d`` but can be cancelled without touching ``d``."""
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if not out.called:
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(None)
        return result

    d.addBoth(fire)
    return out


async def _within(d: Deferred[Any], what: str, seconds: float = READY_WAIT) -> None:
    d.addTimeout(seconds, _reactor())
    try:
        await d
    except (DeferredTimeoutError, CancelledError):
        raise ApiError(
            503,
            "workspaces_unavailable",
            f"{what} is not ready after {seconds:.0f}s; try again shortly",
            headers={"retry-after": "5"},
        ) from None


async def _settle(svc: WorkspaceService, name: str, present: bool) -> None:
    """Wait (briefly, best effort) until the Workspace cache shows a create or delete.

    So a client that reads right after a 202/200 sees its own write in list and get.
    """
    informer = svc.informers.get("Workspace")
    if informer is None or not informer.synced:
        return

    def shown() -> bool:
        obj = informer.get(svc.namespace, name)
        if present:
            return obj is not None
        return obj is None or bool((obj.get("metadata") or {}).get("deletionTimestamp"))

    if shown():
        return
    d: Deferred[None] = Deferred()

    def on_change(type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if views.name_of(obj) == name and shown() and not d.called:
            d.callback(None)

    unsubscribe = informer.subscribe(on_change)
    d.addTimeout(SETTLE_WAIT, _reactor())
    try:
        await d
    except (DeferredTimeoutError, CancelledError):
        pass
    finally:
        unsubscribe()


def _kube_error(e: KubeApiError) -> ApiError:
    """An API-server refusal as a Host App error (the cluster's message, no secrets)."""
    if e.status in (400, 422):
        causes = (e.body.get("details") or {}).get("causes") or []
        field = next((str(c.get("field")) for c in causes if c.get("field")), None)
        if field and field.startswith("spec."):
            field = field[len("spec.") :]
        return ApiError(400, "rejected_by_cluster", e.message[:500], field=field)
    if e.status in (401, 403):
        return ApiError(502, "cluster_forbidden", f"the cluster refused: {e.message[:300]}")
    if e.status == 404:
        return ApiError(404, "not_found", e.message[:300])
    if e.status == 409:
        return ApiError(409, "conflict", e.message[:300])
    return ApiError(
        502, "cluster_error", f"the Kubernetes API answered {e.status}: {e.message[:300]}"
    )


async def _kube(d: Deferred[Any]) -> Any:
    """Await a blocking Kubernetes call; connection problems become 503s."""
    try:
        return await d
    except KubeApiError:
        raise
    except ApiError:
        raise
    except Exception as e:
        raise ApiError(503, "cluster_unreachable", describe_error(e)) from None


def _arg(request: IRequest, name: str) -> str | None:
    try:
        return L.query_arg(request.args or {}, name)
    except L.BadQuery as e:
        raise bad_field(e.field, e.message) from None


def _server_id(value: str, field: str = "id") -> str:
    try:
        return validate_name(value)
    except SpecError as e:
        raise bad_field(field, e.message) from None


def _idle_of(svc: WorkspaceService) -> views.IdleOf | None:
    """The cluster's idle culler's view of a workspace (``idle`` in its JSON), if any."""
    culler = getattr(svc, "culler", None)
    return None if culler is None else culler.view  # type: ignore[no-any-return]


def _cluster_not_found(cluster_id: str) -> ApiError:
    return ApiError(404, "cluster_not_found", f"no cluster {cluster_id!r}", field="clusterId")


def _not_found(name: str) -> ApiError:
    return ApiError(404, "server_not_found", f"no server {name!r}", field="id")


def _visible_to(caller: Caller) -> Callable[[dict[str, Any] | None], bool]:
    """Whether a workspace shows in the caller's lists and streams (their own; all for
    admins)."""
    return lambda ws: ws is not None and may_access(caller.role, caller.login, ws)


class _SSELogSink:
    """Log follower output as SSE: lines as ``message`` events with a resume id."""

    def __init__(self, stream: SSEStream) -> None:
        self.stream = stream

    def log_line(self, pod: str, line: L.LogLine, cursor: str) -> None:
        self.stream.send_json(
            {"pod": pod, "time": line.time, "line": line.text}, event_id=cursor or None
        )

    def log_notice(self, kind: str, data: dict[str, Any]) -> None:
        self.stream.send_json(data, event=kind)

    def log_end(self, reason: str) -> None:
        self.stream.send_json({"reason": reason}, event="end")


class WorkspaceRoutes:
    """Mixin of HostAPI: the workspace routes (see the module docstring)."""

    settings: Settings
    registry: Registry
    access: Access

    # plumbing -----------------------------------------------------------------------------

    @property
    def _origins(self) -> WorkspaceOrigins | None:
        """Subdomain mode's addressing (URLs are absolute there); None: single origin."""
        origins = WorkspaceOrigins.from_settings(self.settings)
        return origins if origins.subdomain else None

    def _cluster_record(self, cluster_id: str) -> ClusterRecord:
        """The cluster's record: 400 for a bad id, 404 for an unknown cluster."""
        try:
            validate_cluster_id(cluster_id)
        except InvalidClusterId as e:
            raise bad_field("clusterId", str(e)) from None
        try:
            return self.registry.record(cluster_id)
        except UnknownCluster:
            raise _cluster_not_found(cluster_id) from None

    def _instance(self, cluster_id: str) -> Instance:
        """The cluster's Instance: 400 for a bad id, 404 for an unknown cluster, 503 when its
        kubeconfig cannot be used."""
        self._cluster_record(cluster_id)
        try:
            return self.registry.get(cluster_id)
        except UnknownCluster:
            raise _cluster_not_found(cluster_id) from None
        except KubeconfigError as e:
            raise ApiError(503, "cluster_unavailable", str(e)) from None

    async def _workspaces(
        self, cluster_id: str, synced: bool = True
    ) -> tuple[Instance, WorkspaceService]:
        """The cluster's Instance and WorkspaceService, CRD installed and caches filled."""
        instance = self._instance(cluster_id)
        svc = attach(
            instance,
            OperatorConfig.from_settings(self.settings),
            self.settings.embed_operator,
            _reactor(),
        )
        if not svc.running or svc.crd_ready is None:
            raise ApiError(503, "cluster_unavailable", f"cluster {cluster_id!r} is stopping")
        await _within(_observe(svc.crd_ready), "the Workspace resource")
        if synced:
            if "Workspace" not in svc.informers:
                raise ApiError(
                    503,
                    "workspaces_unavailable",
                    "the workspace caches are not running",
                    headers={"retry-after": "5"},
                )
            for kind, informer in list(svc.informers.items()):
                await _within(informer.wait_synced(), f"the {kind} cache")
        return instance, svc

    async def workspace_owner_check(
        self, request: IRequest, caller: Caller, kwargs: dict[str, Any]
    ) -> None:
        """For ``owner`` routes (``http.access.gate``): the named workspace must exist in
        the caches and be the caller's. Unknown ones are 404 here, before the handler:
        a user never acts on a workspace the caches have not shown to be theirs."""
        cluster_id = kwargs.get("cluster_id", DEFAULT_CLUSTER_ID)
        name = kwargs.get("server_id")
        field = "id"
        if name is None:
            name, field = _arg(request, "server"), "server"
            if not name:
                raise bad_field("server", "is required")
        _server_id(name, field)
        _, svc = await self._workspaces(cluster_id)
        ws = svc.workspace(name)
        if ws is None:
            raise _not_found(name)
        refusal = owner_refusal(caller, name, ws)
        if refusal is not None:
            raise forbidden(refusal, caller)

    def _cached_workspace(self, svc: WorkspaceService, name: str) -> dict[str, Any]:
        ws = svc.workspace(name)
        if ws is None:
            raise _not_found(name)
        return ws

    # launch -------------------------------------------------------------------------------

    @cluster_route("/api/jobs", ["POST"])
    async def create_job(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        """Create a Workspace CR; 202 because the operator brings it up asynchronously."""
        body = read_json_object(request)
        if "resources" not in body and isinstance(body.get("image"), str):
            # Never BestEffort by accident: an explicit "resources": {} is the way to ask.
            body = {**body, "resources": self._default_resources(body["image"])}
        try:
            name, spec = views.parse_job(body)
        except SpecError as e:
            raise bad_field(e.field, e.message) from None
        origins = self._origins
        if origins is not None and name is not None:
            refusal = label_refusal(cluster_id, name)
            if refusal is not None:  # it could not be opened: it would have no origin
                field = "clusterId" if refusal.startswith("cluster") else "name"
                raise bad_field(field, f"WORKSPACE_ORIGIN=subdomain: {refusal}")
        owner = caller_of(request).login
        instance, svc = await self._workspaces(cluster_id, synced=False)
        collection = object_path(C.API_VERSION, C.PLURAL, namespace=svc.namespace)
        attempts = NAME_ATTEMPTS if name is None else 1
        for attempt in range(attempts):
            ws_name = name or views.new_name(spec)
            refusal = None if origins is None else label_refusal(cluster_id, ws_name)
            if refusal is not None:
                raise bad_field("clusterId", f"WORKSPACE_ORIGIN=subdomain: {refusal}")
            manifest = views.workspace_manifest(ws_name, svc.namespace, spec, owner)
            try:
                await _kube(instance.call(svc.rest.request, "POST", collection, body=manifest))
                break
            except KubeApiError as e:
                if e.conflict:
                    if attempt + 1 < attempts:
                        continue
                    raise ApiError(
                        409,
                        "server_exists",
                        f"a server named {ws_name!r} already exists",
                        field="name",
                    ) from None
                if e.not_found:
                    raise ApiError(
                        503,
                        "workspaces_unavailable",
                        "the Workspace resource is not installed on this cluster",
                    ) from None
                raise _kube_error(e) from None
        await _settle(svc, ws_name, present=True)
        prefix = "" if cluster_id == DEFAULT_CLUSTER_ID else f"/cluster/{cluster_id}"
        request.setHeader(b"location", f"/api{prefix}/servers/{ws_name}".encode())
        return write_json(
            request, 202, {"id": ws_name, "url": views.server_url(cluster_id, ws_name, origins)}
        )

    # read ---------------------------------------------------------------------------------

    @cluster_route("/api/servers", ["GET"])
    async def list_servers(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        _, svc = await self._workspaces(cluster_id)
        visible = _visible_to(caller_of(request))
        shown = [w for w in svc.workspaces() if visible(w)]
        return write_json(
            request, 200, views.server_list(shown, cluster_id, self._origins, _idle_of(svc))
        )

    @cluster_route("/api/servers/<server_id>", ["GET"])
    async def get_server(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        _server_id(server_id)
        _, svc = await self._workspaces(cluster_id)
        ws = self._cached_workspace(svc, server_id)
        pods = svc.pods_of(server_id)
        events_inf = svc.informers["Event"]
        pod_map = {views.name_of(p): p for p in svc.informers["Pod"].items()}
        names = [views.name_of(w) for w in svc.workspaces()]
        events = views.events_of(events_inf.items(), server_id, pod_map, names)
        secret = svc.informers["Secret"].get(svc.namespace, C.password_secret_name(server_id))
        has_password = secret_password(secret) is not None
        detail = views.server_detail(
            ws, cluster_id, svc.namespace, pods, events, has_password, self._origins, _idle_of(svc)
        )
        return write_json(request, 200, detail)

    @cluster_route("/api/servers/<server_id>/password", ["GET"])
    async def get_password(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        _server_id(server_id)
        _, svc = await self._workspaces(cluster_id)
        self._cached_workspace(svc, server_id)
        secret = svc.informers["Secret"].get(svc.namespace, C.password_secret_name(server_id))
        password = secret_password(secret)
        if password is None:
            raise ApiError(
                404, "no_password", f"server {server_id!r} has no generated password", field="id"
            )
        return write_json(request, 200, {"password": password})

    # delete -------------------------------------------------------------------------------

    @cluster_route("/api/servers/<server_id>", ["DELETE"])
    async def delete_server(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        _server_id(server_id)
        keep = _arg(request, "keep_volume")
        if keep not in (None, "true", "false"):
            raise bad_field("keep_volume", "must be true or false")
        instance, svc = await self._workspaces(cluster_id, synced=False)
        path = object_path(C.API_VERSION, C.PLURAL, server_id, svc.namespace)
        volume: str | None = None
        if keep == "true":
            # Out of the Workspace's ownership first, so the garbage collector leaves it;
            # a new workspace of the same name adopts it again (same claim name).
            claim = C.home_claim_name(server_id)
            claim_path = object_path("v1", "persistentvolumeclaims", claim, svc.namespace)
            try:
                await _kube(
                    instance.call(
                        svc.rest.request,
                        "PATCH",
                        claim_path,
                        body=keep_volume_patch(),
                        content_type=MERGE_PATCH,
                    )
                )
                volume = claim
            except KubeApiError as e:
                if not e.not_found:
                    raise _kube_error(e) from None
                if svc.workspace(server_id) is None:
                    raise _not_found(server_id) from None
        try:
            await _kube(instance.call(svc.rest.delete, path))
        except KubeApiError as e:
            if e.not_found:
                raise _not_found(server_id) from None
            raise _kube_error(e) from None
        await _settle(svc, server_id, present=False)
        body: dict[str, Any] = {"deleted": server_id}
        if keep == "true":
            body["keptVolume"] = volume  # None: it had no home volume to keep
        return write_json(request, 200, body)

    @cluster_route("/api/servers/<server_id>", ["PATCH"])
    async def change_server(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        """Change image, env, args, command, resources, ports, labels or proxy settings.

        Each key given replaces that field (null removes it; ``resources: null`` means the
        image kind's defaults again); the operator rolls the pod with the home volume kept.
        409 if the workspace changed meanwhile.
        """
        _server_id(server_id)
        change = read_json_object(request)
        instance, svc = await self._workspaces(cluster_id)
        ws = self._cached_workspace(svc, server_id)
        try:
            new = changed_spec(ws.get("spec") or {}, change)
            if "resources" in change and change["resources"] is None:
                # null: back to the image kind's defaults ({} asks for BestEffort).
                image = new.get("image")
                new["resources"] = self._default_resources(image if isinstance(image, str) else "")
            spec = parse_spec(new)
        except SpecError as e:
            raise bad_field(e.field, e.message) from None
        path = object_path(C.API_VERSION, C.PLURAL, server_id, svc.namespace)
        rv = str((ws.get("metadata") or {}).get("resourceVersion") or "")
        body = replace_spec_patch(spec.to_dict(), rv)
        try:
            patched = await _kube(
                instance.call(svc.rest.request, "PATCH", path, body=body, content_type=JSON_PATCH)
            )
        except KubeApiError as e:
            if e.not_found:
                raise _not_found(server_id) from None
            if e.status in (409, 422) and "test" in e.message.lower():
                raise ApiError(
                    409, "conflict", f"server {server_id!r} changed meanwhile; read it again"
                ) from None
            raise _kube_error(e) from None
        return write_json(
            request, 200, views.server_summary(patched, cluster_id, self._origins, _idle_of(svc))
        )

    @cluster_route("/api/admin/stop-all", ["POST"])
    async def stop_all(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        """Delete every GuildNet-managed Workspace (labelled so), and nothing else."""
        instance, svc = await self._workspaces(cluster_id, synced=False)
        collection = object_path(C.API_VERSION, C.PLURAL, namespace=svc.namespace)
        selector = f"{C.LABEL_MANAGED_BY}={C.MANAGED_BY}"
        try:
            # An authoritative list: a deliberate admin action must not act on a stale cache.
            listing = await _kube(instance.call(svc.rest.get, collection, labelSelector=selector))
        except KubeApiError as e:
            raise _kube_error(e) from None
        names = sorted(views.name_of(w) for w in listing.get("items") or [] if views.is_managed(w))
        deleted: list[str] = []
        failed: list[dict[str, str]] = []
        for name in names:
            path = object_path(C.API_VERSION, C.PLURAL, name, svc.namespace)
            try:
                await _kube(instance.call(svc.rest.delete, path))
                deleted.append(name)
            except KubeApiError as e:
                if not e.not_found:
                    failed.append({"id": name, "error": e.message[:300]})
            except ApiError as e:
                failed.append({"id": name, "error": e.message})
        body: dict[str, Any] = {"deleted": deleted}
        if failed:
            body["failed"] = failed
        return write_json(request, 200, body)

    # lifecycle ----------------------------------------------------------------------------

    async def _lifecycle(
        self, request: IRequest, server_id: str, cluster_id: str, write: Callable[..., Any]
    ) -> Any:
        """Run a lifecycle write (stop/start/restart) and answer JSON, or 303 for a form.

        The proxy's "workspace stopped" page posts an HTML form here; it gets a redirect
        back to the workspace. The gate has refused cross-site requests (``auth.csrf``);
        a form post must also carry Origin: these routes need no body, so a plain form on
        another site, in a browser that sends neither header, could otherwise stop
        anybody's workspace.
        """
        _server_id(server_id)
        form = is_form(request.getHeader(b"content-type"))
        if form:
            refusal = self.access.cross_origin(request, form=True)
            if refusal is not None:
                raise forbidden(refusal, caller_of(request))
        else:
            read_json(request)  # empty or JSON; anything else is a 415/400
        _, svc = await self._workspaces(cluster_id, synced=False)
        try:
            ws = await _kube(write(svc))
        except KubeApiError as e:
            if e.not_found:
                raise _not_found(server_id) from None
            raise _kube_error(e) from None
        if form:
            request.setResponseCode(303)
            url = views.server_url(cluster_id, server_id, self._origins) or "/"
            request.setHeader(b"location", url.encode())
            request.setHeader(b"cache-control", b"no-store")
            return b""
        return write_json(
            request, 200, views.server_summary(ws, cluster_id, self._origins, _idle_of(svc))
        )

    @cluster_route("/api/servers/<server_id>/stop", ["POST"])
    async def stop_server(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        """Scale to zero and keep volume, Secret and Service (phase Stopped); idempotent."""
        return await self._lifecycle(
            request, server_id, cluster_id, lambda svc: svc.set_stopped(server_id, True)
        )

    @cluster_route("/api/servers/<server_id>/start", ["POST"])
    async def start_server(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        """Start a stopped workspace again (same volume and password); idempotent."""
        return await self._lifecycle(
            request, server_id, cluster_id, lambda svc: svc.set_stopped(server_id, False)
        )

    @cluster_route("/api/servers/<server_id>/restart", ["POST"])
    async def restart_server(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        """Roll the pod (a new pod, same volume and password), as kubectl rollout restart."""
        now = datetime.datetime.now(datetime.UTC)
        return await self._lifecycle(
            request,
            server_id,
            cluster_id,
            lambda svc: svc.patch_workspace(server_id, restart_patch(now)),
        )

    # logs ---------------------------------------------------------------------------------

    @cluster_route("/api/servers/<server_id>/logs", ["GET"])
    async def server_logs(
        self, request: IRequest, server_id: str, cluster_id: str = DEFAULT_CLUSTER_ID
    ) -> Any:
        """The last ``tail`` lines of each pod: text/plain, or JSON with ``format=json``."""
        _server_id(server_id)
        try:
            query = L.parse_log_query(request.args or {})
        except L.BadQuery as e:
            raise bad_field(e.field, e.message) from None
        instance, svc = await self._workspaces(cluster_id)
        self._cached_workspace(svc, server_id)
        pods = svc.pods_of(server_id)
        result = await L.fetch_logs(instance, svc.namespace, pods, query)
        if query.as_json:
            return write_json(request, 200, L.render_json(server_id, result))
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-guildnet-pods", ",".join(p.pod for p in result).encode())
        return L.render_text(result).encode("utf-8")

    @cluster_route("/sse/logs", ["GET"])
    async def sse_logs(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        """Follow the logs of a workspace's pods; resumable with ``Last-Event-ID``."""
        server = _arg(request, "server")
        if not server:
            raise bad_field("server", "is required")
        _server_id(server, "server")
        try:
            tail = L.parse_tail(_arg(request, "tail"))
            container = L.parse_container(_arg(request, "container"))
        except L.BadQuery as e:
            raise bad_field(e.field, e.message) from None
        instance, svc = await self._workspaces(cluster_id)
        self._cached_workspace(svc, server)
        last_id = request.getHeader(b"last-event-id")
        resume = last_id.decode("utf-8", "replace") if last_id else _arg(request, "lastEventId")
        if L.follow_slots(instance).available() < 1:
            raise ApiError(
                503,
                "too_many_streams",
                "too many log streams on this cluster; try again later",
                headers={"retry-after": "10"},
            )
        reactor = _reactor()
        stream = SSEStream(request, reactor, cluster=instance.cluster_id, kind="logs")
        follower = L.LogFollower(
            instance,
            svc.informers,
            svc.namespace,
            server,
            container,
            tail,
            L.decode_cursor(resume),
            _SSELogSink(stream),
            reactor,
            stream.flow,
        )
        stream.start()
        stream.on_close(follower.stop)
        follower.start().addBoth(lambda _: stream.close())
        self._bind(instance, f"log stream {server}", stream)
        await stream.done
        return None

    # live changes -------------------------------------------------------------------------

    @cluster_route("/sse/servers", ["GET"])
    async def sse_servers(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        """A snapshot, then ``created``/``updated``/``deleted`` and pod ``event``s."""
        _, svc = await self._workspaces(cluster_id)
        instance = svc.instance
        ns = svc.namespace
        ws_inf = svc.informers["Workspace"]
        pod_inf = svc.informers["Pod"]
        stream = SSEStream(request, _reactor(), cluster=instance.cluster_id, kind="servers")
        visible = _visible_to(caller_of(request))
        origins = self._origins
        idle = _idle_of(svc)

        def on_workspace(type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            # Another's workspace is not there at all; one whose owner changed appears
            # or disappears as if created or deleted.
            shown_before = old is not None and visible(old)
            if type_ == "DELETED" or not visible(obj):
                if visible(obj) or shown_before:
                    stream.send_json({"id": views.name_of(obj)}, event="deleted")
                return
            new_state = views.server_state(obj, cluster_id, origins, idle)
            old_state = (
                views.server_state(old, cluster_id, origins, idle) if shown_before and old else None
            )
            change = views.server_change(type_, new_state, old_state)
            if change is not None:
                stream.send_json(new_state, event=change)

        def on_event(type_: str, ev: dict[str, Any], old: dict[str, Any] | None) -> None:
            if type_ == "DELETED":
                return
            view = views.event_view(ev)
            if old is not None and views.event_view(old) == view:
                return
            pod_name = view["pod"]
            if not pod_name:
                return
            pod = pod_inf.get(ns, pod_name)
            candidate = pod_name.rsplit("-", 2)[0]
            known = [candidate] if ws_inf.get(ns, candidate) is not None else []
            server = views.workspace_of_pod(pod_name, {pod_name: pod} if pod else {}, known)
            if server is not None and visible(ws_inf.get(ns, server)):
                stream.send_json({"server": server, **view}, event="event")

        stream.start()
        stream.send_json(
            {
                "cluster": cluster_id,
                "servers": views.server_list(
                    [w for w in svc.workspaces() if visible(w)], cluster_id, origins, idle
                ),
            },
            event="snapshot",
        )
        stream.on_close(ws_inf.subscribe(on_workspace))
        stream.on_close(svc.informers["Event"].subscribe(on_event))
        self._bind(instance, "servers stream", stream)
        await stream.done
        return None

    @staticmethod
    def _bind(instance: Instance, name: str, stream: SSEStream) -> None:
        """Make the stream an Instance worker: stopping the cluster closes it."""
        try:
            instance.start_worker(name, stream.worker)
        except RuntimeError:
            stream.close()

    # images -------------------------------------------------------------------------------

    @cluster_route("/api/images", ["GET"])
    def list_images(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        self._cluster_record(cluster_id)
        return write_json(request, 200, {"images": preset_json()})

    @cluster_route("/api/image-defaults", ["GET"])
    def image_defaults(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        self._cluster_record(cluster_id)
        image = _arg(request, "image")
        if not image:
            raise bad_field("image", "is required")
        try:
            parse_spec({"image": image})
        except SpecError as e:
            raise bad_field("image", e.message) from None
        body = defaults_json(image)
        body["resources"] = self._default_resources(image)
        cfg = OperatorConfig.from_settings(self.settings)
        body["storage"] = {
            "size": cfg.storage_size,
            "storageClassName": cfg.storage_class,
            "mountPath": body["homePath"],
        }
        return write_json(request, 200, body)

    def _default_resources(self, image: str) -> dict[str, Any]:
        """WORKSPACE_IDE_RESOURCES for code-server and Jupyter, else WORKSPACE_APP_RESOURCES."""
        if image_kind(image) in ("code-server", "jupyter"):
            return dict(self.settings.workspace_ide_resources)
        return dict(self.settings.workspace_app_resources)
