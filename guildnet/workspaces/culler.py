"""The idle culler: one per cluster Instance, a LoopingCall that stops unused workspaces.

Every ``WORKSPACE_IDLE_CHECK_INTERVAL`` seconds, on every Host App:

* records activity: a workspace this Host App proxied to (or whose app heartbeat it
  read) since the recorded ``guildnet.io/last-activity`` gets that annotation updated,
  at most once a minute per workspace (a quarter of a shorter timeout) and never when
  nothing changed (``idle.should_record``), so other Host Apps and later leaders see it;

and on the Host App that holds the cluster's operator Lease only:

* reads the app heartbeat (``proxy.heartbeat``) of code-server and Jupyter workspaces
  that look idle to the proxy, at most once a minute each, and right before a cull;
* decides with ``idle.decide`` and culls: ``WorkspaceService.set_stopped(name, True,
  "Idle", message)`` (the lifecycle's stop: ``spec.stopped``, phase ``Stopped``)
  conditional on the resourceVersion it decided on (a workspace changed meanwhile, for
  example by another Host App recording activity, is left for the next check), then an
  Event ``Idle`` on the Workspace. Culling stops; it never deletes.

Everything is read from the WorkspaceService's informer caches; writes go through the
Instance's API pool. Stopping the Instance stops the loop and abandons what is in flight.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from time import monotonic
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from guildnet.cluster.rest import MERGE_PATCH, KubeApiError, object_path
from guildnet.metrics import operator as M
from guildnet.operator import constants as C
from guildnet.operator.desired import path_mode, secret_password
from guildnet.operator.images import image_kind
from guildnet.proxy.activity import ActivityBook
from guildnet.proxy.paths import workspace_prefix
from guildnet.workspaces import idle

log = Logger(namespace="guildnet.culler")

SERVICE_NAME: Final = "idle-culler"
CLOCK_STEP: Final = 5.0  # wall minus monotonic moving more than this is a clock step
HEARTBEAT_EVERY: Final = 60.0  # seconds between heartbeat reads of one idle-looking workspace
EVENT_SOURCE: Final = "guildnet-idle-culler"


class IdleCuller(Service):
    """Records activity and culls idle workspaces of one cluster (see the module docstring)."""

    name = SERVICE_NAME

    def __init__(
        self,
        workspaces: Any,
        book: ActivityBook,
        reactor: Any,
        *,
        default_timeout: float,
        interval: float,
        routes: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.workspaces = workspaces  # the Instance's WorkspaceService
        self.book = book
        self.reactor = reactor
        self.default_timeout = default_timeout
        self.interval = interval
        self.routes = routes  # proxy.routes.ServerRoutes, for heartbeats (None: proxy only)
        self.clock = clock
        self.cluster_id = str(workspaces.instance.cluster_id)
        #: Unknown activity before this counts as activity at this time (idle.Witnesses).
        self.watching_since = clock()
        self.heartbeats: dict[str, float] = {}  # workspace -> app's last activity (wall)
        self._heartbeat_read: dict[str, float] = {}  # workspace -> monotonic time of the read
        self._recorded_at: dict[str, float] = {}  # workspace -> monotonic time of our write
        self._offset: float | None = None  # wall minus monotonic at the last check
        self._led = False  # whether this Host App led at the last check
        self._loop: LoopingCall | None = None
        self._tick: Deferred[None] | None = None
        self.culled: list[str] = []  # names this culler stopped (for tests and logs)

    # life cycle -------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.watching_since = self.clock()
        loop = LoopingCall(self._scheduled)
        loop.clock = self.reactor
        self._loop = loop
        loop.start(self.interval, now=False).addErrback(
            lambda f: log.failure("idle culler of {cluster} failed", f, cluster=self.cluster_id)
        )

    def stopService(self) -> None:
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        tick, self._tick = self._tick, None
        if tick is not None and not tick.called:
            tick.cancel()

    # decisions --------------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        return str(self.workspaces.namespace)

    @property
    def leading(self) -> bool:
        elector = getattr(self.workspaces, "elector", None)
        return bool(elector is not None and elector.is_leader)

    def witnesses(self, ws: dict[str, Any]) -> idle.Witnesses:
        name = str(ws["metadata"]["name"])
        return idle.Witnesses(
            watching_since=self.watching_since,
            proxy=self.book.last_wall(self.cluster_id, self.namespace, name),
            recorded=idle.recorded_of(ws),
            app=self.heartbeats.get(name),
            started=idle.started_of(ws),
        )

    def decision(self, ws: dict[str, Any]) -> idle.Decision | None:
        """The idle decision for a running workspace now (None: not running)."""
        if not idle.cullable(ws):
            return None
        timeout = idle.timeout_of(ws, self.default_timeout)
        return idle.decide(self.witnesses(ws), timeout, self.clock())

    def view(self, ws: dict[str, Any]) -> dict[str, Any] | None:
        """``idle`` in the API's workspace JSON."""
        return idle.idle_view(ws, self.decision(ws))

    # the loop ---------------------------------------------------------------------------------

    def _scheduled(self) -> None:
        self.check()  # not returned: a slow pass must not stall or stop the loop

    def check(self) -> Deferred[None] | None:
        """One pass; a pass still running (slow API server) makes this one a no-op."""
        if self._tick is not None or not self.running:
            return None
        d = Deferred.fromCoroutine(self._check())
        self._tick = d

        def done(result: object) -> None:
            if self._tick is d:
                self._tick = None

        def failed(f: Any) -> None:
            if not f.check(CancelledError):
                log.failure("idle check of {c} failed", f, c=self.cluster_id)

        d.addErrback(failed)
        d.addBoth(done)
        return d

    def _clock_stepped(self) -> bool:
        """Whether the wall clock stepped since the last check (activity is wall time)."""
        wall = self.clock()
        offset = wall - monotonic()
        stepped = self._offset is not None and abs(offset - self._offset) > CLOCK_STEP
        self._offset = offset
        if stepped:
            log.warn("the wall clock stepped: idle times restart from now")
            self.watching_since = wall
        return stepped

    async def _check(self) -> None:
        self._clock_stepped()
        informer = self.workspaces.informers.get("Workspace")
        if informer is None or not informer.synced:
            return
        present: set[str] = set()
        leading = self.leading
        if leading and not self._led:
            # A new leader knows only what was recorded; the rest counts as "active now".
            self.watching_since = self.clock()
        self._led = leading
        for ws in list(self.workspaces.workspaces()):
            name = str(ws["metadata"]["name"])
            present.add(name)
            if leading and idle.cullable(ws):
                await self._consider(ws)
                if not self.running:
                    return
                ws = self.workspaces.workspace(name) or ws
            await self._record(ws)
            if not self.running:
                return
        self._prune(present)

    async def _consider(self, ws: dict[str, Any]) -> None:
        name = str(ws["metadata"]["name"])
        timeout = idle.timeout_of(ws, self.default_timeout)
        if timeout <= 0:
            return
        decision = idle.decide(self.witnesses(ws), timeout, self.clock())
        quiet_for = self.clock() - decision.last_activity
        if quiet_for >= min(HEARTBEAT_EVERY, timeout / 2) or decision.cull:
            last_read = self._heartbeat_read.get(name)
            if decision.cull or last_read is None or monotonic() - last_read >= HEARTBEAT_EVERY:
                await self._read_heartbeat(ws)
                decision = idle.decide(self.witnesses(ws), timeout, self.clock())
        if decision.cull:
            await self._cull(ws, decision)

    async def _read_heartbeat(self, ws: dict[str, Any]) -> None:
        from guildnet.proxy import heartbeat

        name = str(ws["metadata"]["name"])
        try:
            kind = image_kind(str((ws.get("spec") or {}).get("image") or ""))
        except ValueError:
            return
        path = idle.HEARTBEAT_PATHS.get(kind)
        if path is None or self.routes is None:
            return
        self._heartbeat_read[name] = monotonic()
        token = None
        if kind == "jupyter":
            secret = self.workspaces.informers["Secret"].get(
                self.namespace, C.password_secret_name(name)
            )
            token = idle.jupyter_token(ws, secret_password(secret))
        try:
            if path_mode(ws) == "preserve":
                path = workspace_prefix(self.cluster_id, name) + path
            resolved = await self.routes.cluster(self.cluster_id).resolve(name)
            _, body = await heartbeat.fetch(self.reactor, self.routes.pool, resolved, path, token)
        except Exception as e:
            log.debug("heartbeat of {name}: {error}", name=name, error=str(e)[:200])
            return
        seen = idle.parse_heartbeat(kind, body)
        if seen is not None:
            self.heartbeats[name] = seen

    async def _cull(self, ws: dict[str, Any], decision: idle.Decision) -> None:
        meta = ws["metadata"]
        name = str(meta["name"])
        message = idle.stop_message(decision)
        try:
            await self.workspaces.set_stopped(
                name,
                True,
                C.STOP_IDLE,
                message,
                resource_version=str(meta.get("resourceVersion") or "") or None,
            )
        except KubeApiError as e:
            if e.conflict or e.not_found:
                return  # changed (or gone) since the decision: the next check decides again
            log.warn("idle culler: stopping {name} failed: {e}", name=name, e=str(e)[:300])
            return
        except Exception as e:
            log.warn("idle culler: stopping {name} failed: {e}", name=name, e=str(e)[:300])
            return
        self.culled.append(name)
        M.IDLE_CULLS.labels(self.cluster_id).inc()
        log.info(
            "stopped idle workspace {cluster}/{name}: {message}",
            cluster=self.cluster_id,
            name=name,
            message=message,
        )
        try:
            await self.workspaces.instance.call(_event, self.workspaces, ws, message)
        except Exception as e:
            log.warn("idle culler: Event for {name} failed: {e}", name=name, e=str(e)[:300])

    async def _record(self, ws: dict[str, Any]) -> None:
        """Persist what this Host App saw (only where culling is on: no use otherwise)."""
        name = str(ws["metadata"]["name"])
        timeout = idle.timeout_of(ws, self.default_timeout)
        if timeout <= 0 or not idle.cullable(ws):
            return
        proxy = self.book.last_wall(self.cluster_id, self.namespace, name)
        app = self.heartbeats.get(name)
        seen = max((t for t in (proxy, app) if t is not None), default=None)
        if seen is not None:
            seen = min(seen, self.clock())
        now = monotonic()
        every = idle.record_every(timeout)
        if not idle.should_record(
            seen, idle.recorded_of(ws), self._recorded_at.get(name), now, every
        ):
            return
        assert seen is not None
        self._recorded_at[name] = now
        path = object_path(C.API_VERSION, C.PLURAL, name, self.namespace)
        try:
            await self.workspaces.instance.call(
                self.workspaces.rest.request,
                "PATCH",
                path,
                body=idle.record_patch(seen),
                content_type=MERGE_PATCH,
            )
        except Exception as e:
            log.debug("recording activity of {name}: {error}", name=name, error=str(e)[:200])
            return
        M.ACTIVITY_RECORDS.labels(self.cluster_id).inc()

    def _prune(self, present: set[str]) -> None:
        for table in (self.heartbeats, self._heartbeat_read, self._recorded_at):
            for name in [n for n in table if n not in present]:
                del table[name]
        for entry in list(self.book.of_cluster(self.cluster_id)):
            if entry.namespace == self.namespace and entry.name not in present:
                self.book.forget(entry.cluster, entry.namespace, entry.name)


def _event(workspaces: Any, ws: dict[str, Any], message: str) -> Any:
    """A core/v1 Event ``Idle`` about the Workspace (kubectl describe shows it)."""
    meta = ws["metadata"]
    ns = workspaces.namespace
    now = idle.format_time(time.time())
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": ns},
        "involvedObject": {
            "apiVersion": C.API_VERSION,
            "kind": C.KIND,
            "name": meta["name"],
            "namespace": ns,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": C.STOP_IDLE,
        "message": f"Stopped: {message}",
        "type": "Normal",
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    return workspaces.rest.request("POST", object_path("v1", "events", namespace=ns), body=body)


def attach(
    workspaces: Any,
    book: ActivityBook,
    reactor: Any,
    *,
    default_timeout: float,
    interval: float,
    routes: Any = None,
) -> IdleCuller:
    """The WorkspaceService's culler, created and started on first use."""
    existing = getattr(workspaces, "culler", None)
    if isinstance(existing, IdleCuller):
        return existing
    culler = IdleCuller(
        workspaces,
        book,
        reactor,
        default_timeout=default_timeout,
        interval=interval,
        routes=routes,
    )
    workspaces.culler = culler
    culler.setServiceParent(workspaces)
    return culler
