"""The Workspace controller: level-triggered reconcile of Workspaces.

Each reconcile reads the informers' caches (never lists the API), computes
the desired objects and status with pure functions, and writes only what
differs: an object is applied (server-side apply, one field manager) when
its ``guildnet.io/desired-hash`` annotation differs from the desired one,
and status is patched only when the computed status differs. An unchanged
Workspace therefore costs zero writes on every resync.
"""

from __future__ import annotations

import datetime
import functools
import secrets
from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from guildnet.cluster.informer import Informer
from guildnet.cluster.rest import MERGE_PATCH, KubeApiError, KubeRest, object_path
from guildnet.metrics import operator as M
from guildnet.operator import constants as C
from guildnet.operator.desired import (
    OperatorConfig,
    desired_objects,
    password_required,
    secret_password,
)
from guildnet.operator.status import compute_status

log = Logger()

RESYNC_PERIOD = 30.0
CONCURRENCY = 4

# kind -> (apiVersion, plural)
KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "Secret": ("v1", "secrets"),
    "Ingress": ("networking.k8s.io/v1", "ingresses"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
}


def hash_of(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(C.ANNOTATION_DESIRED_HASH)


def workspace_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(C.LABEL_WORKSPACE)


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


class WorkspaceController:
    """Reconciles the Workspaces of one namespace while this process leads."""

    def __init__(
        self,
        call: Any,
        rest: KubeRest,
        informers: dict[str, Informer],
        cfg: OperatorConfig,
        reactor: Any,
        resync_period: float = RESYNC_PERIOD,
    ) -> None:
        self._call = call
        self._rest = rest
        self.informers = informers
        self.cfg = cfg
        self._reactor = reactor
        self.resync_period = resync_period
        self._sem = DeferredSemaphore(CONCURRENCY)
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._unsubscribe: list[Any] = []
        self._loop = LoopingCall(self.resync)
        self._loop.clock = reactor
        self._inflight: set[Deferred[Any]] = set()
        self.writes: Counter[str] = Counter()
        self._passwords: dict[str, str] = {}
        self.reconciles = 0
        self.running = False
        cluster = cfg.cluster_id
        self._m_duration = M.RECONCILE_DURATION.labels(cluster)
        self._m_results = {
            r: M.RECONCILES.labels(cluster, r)
            for r in ("ok", "not_found", "invalid", "apply_failed", "error")
        }
        self._m_writes = {k: M.WRITES.labels(cluster, k) for k in (*KINDS, "status")}

    @property
    def queue_depth(self) -> int:
        """Workspaces waiting for a reconcile or due another one (for /metrics)."""
        return len(self._queued) + len(self._again)

    @property
    def namespace(self) -> str:
        return self.cfg.namespace

    def start(self) -> None:
        self.running = True
        for kind, informer in self.informers.items():
            self._unsubscribe.append(informer.subscribe(functools.partial(self._on_event, kind)))
        self._loop.start(self.resync_period, now=True)

    def stop(self) -> Deferred[Any]:
        """Stop reacting; the Deferred fires when in-flight reconciles are done."""
        self.running = False
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._loop.running:
            self._loop.stop()
        self._queued.clear()
        from twisted.internet.defer import DeferredList

        return DeferredList(list(self._inflight), consumeErrors=True)

    # triggering ------------------------------------------------------------

    def _on_event(self, kind: str, type_: str, obj: dict[str, Any], old: object) -> None:
        if kind == "Workspace":
            name = (obj.get("metadata") or {}).get("name")
        elif kind == "Event":
            involved = obj.get("involvedObject") or {}
            pod = self.informers["Pod"].get(self.namespace, str(involved.get("name") or ""))
            name = workspace_of(pod) if pod else None
        else:
            name = workspace_of(obj)
        if name:
            self.enqueue(str(name))

    def resync(self) -> None:
        """Level-triggered: look at every Workspace again."""
        for ws in self.informers["Workspace"].items():
            self.enqueue(str(ws["metadata"]["name"]))

    def enqueue(self, name: str) -> None:
        if not self.running:
            return
        if name in self._active:
            self._again.add(name)
            return
        if name in self._queued:
            return
        self._queued.add(name)
        d = self._sem.run(self._reconcile_queued, name)
        self._inflight.add(d)
        d.addBoth(self._finished, d)

    def _finished(self, result: object, d: Deferred[Any]) -> object:
        self._inflight.discard(d)
        return result

    @inlineCallbacks
    def _reconcile_queued(self, name: str) -> Any:
        self._queued.discard(name)
        if not self.running:
            return
        self._active.add(name)
        started = self._reactor.seconds()
        try:
            result = yield self.reconcile(name)
        except Exception:
            result = "error"
            log.failure("reconcile of workspace {name} failed", name=name)
        finally:
            self._active.discard(name)
        self._m_duration.observe(max(0.0, self._reactor.seconds() - started))
        self._m_results[result or "ok"].inc()
        if name in self._again:
            self._again.discard(name)
            self.enqueue(name)

    # the reconcile ---------------------------------------------------------

    def _cached(self, kind: str, name: str) -> dict[str, Any] | None:
        informer = self.informers.get(kind)
        return informer.get(self.namespace, name) if informer else None

    @inlineCallbacks
    def reconcile(self, name: str) -> Any:
        """Bring one Workspace's objects and status in line; returns the metrics result."""
        self.reconciles += 1
        ws = self._cached("Workspace", name)
        if ws is None:
            return "not_found"  # deleted: owner references let the garbage collector clean up
        if (ws.get("metadata") or {}).get("deletionTimestamp"):
            yield self._write_status(ws, self._status(ws))
            return "ok"
        # The stored password wins; one generated here is remembered until the
        # Secret shows up in the cache, so a lagging cache never rotates it.
        try:
            password = secret_password(self._cached("Secret", C.password_secret_name(name)))
            if password is not None:
                self._passwords.pop(name, None)
            elif password_required(ws):
                password = self._passwords.setdefault(name, secrets.token_urlsafe(18))
            desired = desired_objects(ws, self.cfg, password)
        except ValueError as e:  # SpecError/DesiredError: nothing can be built
            yield self._write_status(ws, self._failed(ws, str(e)))
            return "invalid"
        for manifest in desired.objects():
            kind = manifest["kind"]
            observed = self._cached(kind, manifest["metadata"]["name"])
            if observed is not None and hash_of(observed) == hash_of(manifest):
                continue
            api_version, plural = KINDS[kind]
            path = object_path(api_version, plural, manifest["metadata"]["name"], self.namespace)
            try:
                yield self._call(self._rest.apply, path, manifest, C.FIELD_MANAGER)
            except KubeApiError as e:
                # Say why in the Workspace's status; the next resync tries again.
                log.warn(
                    "workspace {name}: applying {kind} failed: {error}",
                    name=name,
                    kind=kind,
                    error=str(e)[:300],
                )
                status = self._status(ws)
                status["message"] = f"applying the {kind} failed: {e.message}"[:1024]
                yield self._write_status(ws, status)
                return "apply_failed"
            self.writes[kind] += 1
            self._m_writes[kind].inc()
        yield self._write_status(ws, self._status(ws))
        return "ok"

    def _status(self, ws: dict[str, Any]) -> dict[str, Any]:
        name = ws["metadata"]["name"]
        pods = [p for p in self.informers["Pod"].items() if workspace_of(p) == name]
        pod_names = {p["metadata"]["name"] for p in pods}
        events = [
            e
            for e in self.informers["Event"].items()
            if (e.get("involvedObject") or {}).get("kind") == "Pod"
            and (e.get("involvedObject") or {}).get("name") in pod_names
        ]
        now = datetime.datetime.now(datetime.UTC)
        deployment = self._cached("Deployment", name)
        volume = self._cached("PersistentVolumeClaim", C.home_claim_name(name))
        status = compute_status(
            ws,
            deployment,
            pods,
            events,
            now,
            cluster_id=self.cfg.cluster_id,
            volume=volume,
            origins=self.cfg.origins,
        )
        return _strip_none(status)  # type: ignore[no-any-return]

    def _failed(self, ws: dict[str, Any], message: str) -> dict[str, Any]:
        status = self._status(ws)
        status.update(phase="Failed", message=f"invalid workspace: {message}")
        return status

    @inlineCallbacks
    def _write_status(self, ws: dict[str, Any], status: dict[str, Any]) -> Any:
        if _strip_none(ws.get("status") or {}) == status:
            return
        path = object_path(
            C.API_VERSION, C.PLURAL, ws["metadata"]["name"], self.namespace, "status"
        )
        # A merge patch keeps keys it does not mention: null the ones that went away.
        gone = {k: None for k in (ws.get("status") or {}) if k not in status}
        body = {"status": {**gone, **status}}
        try:
            yield self._call(self._rest.request, "PATCH", path, body=body, content_type=MERGE_PATCH)
        except KubeApiError as e:
            if e.not_found:
                return  # deleted meanwhile: the cache's DELETED event follows
            raise
        self.writes["status"] += 1
        self._m_writes["status"].inc()
