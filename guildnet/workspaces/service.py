"""Per-Instance workspace service: informers, the embedded operator, CRUD.

Attached to every cluster Instance. The informers feed the API (list, get,
SSE) and the operator; the operator runs only while this process holds the
cluster's Lease, so several Host Apps can share one cluster.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from guildnet.cluster.informer import Informer
from guildnet.cluster.instance import Instance
from guildnet.cluster.rest import MERGE_PATCH, KubeRest, object_path
from guildnet.operator import constants as C
from guildnet.operator.controller import WorkspaceController
from guildnet.operator.desired import OperatorConfig
from guildnet.operator.leader import LeaderElector
from guildnet.workspaces.crd import install_crd
from guildnet.workspaces.lifecycle import stop_patch

log = Logger()

SERVICE_NAME = "workspaces"
LEASE_NAME = "guildnet-operator"


class WorkspaceService(MultiService):
    def __init__(
        self,
        instance: Instance,
        cfg: OperatorConfig,
        embed_operator: bool,
        reactor: Any,
        resync_period: float = 30.0,
    ) -> None:
        super().__init__()
        self.setName(SERVICE_NAME)
        self.instance = instance
        # The operator names this cluster as the Host App does: it decides canonical URLs.
        self.cfg = attrs.evolve(cfg, cluster_id=instance.cluster_id)
        self.embed_operator = embed_operator
        self._reactor = reactor
        self.resync_period = resync_period
        self.informers: dict[str, Informer] = {}
        self.controller: WorkspaceController | None = None
        self.elector: LeaderElector | None = None
        self.crd_ready: Deferred[None] | None = None

    @property
    def namespace(self) -> str:
        return self.cfg.namespace

    @property
    def rest(self) -> KubeRest:
        assert self.instance.rest is not None
        return self.instance.rest

    def startService(self) -> None:
        super().startService()
        self.crd_ready = self._start()

    @inlineCallbacks
    def _start(self) -> Any:
        if self.embed_operator:
            try:
                yield self.instance.call(install_crd, self.rest)
            except Exception as e:
                log.error(
                    "cluster {cluster}: cannot install the Workspace CRD: {error}",
                    cluster=self.instance.cluster_id,
                    error=str(e)[:300],
                )
        if not self.running:
            return
        ns = self.namespace
        managed = f"{C.LABEL_MANAGED_BY}={C.MANAGED_BY}"
        specs: dict[str, tuple[str, dict[str, Any]]] = {
            "Workspace": (object_path(C.API_VERSION, C.PLURAL, namespace=ns), {}),
            "Deployment": (
                object_path("apps/v1", "deployments", namespace=ns),
                {"label_selector": managed},
            ),
            "Service": (object_path("v1", "services", namespace=ns), {"label_selector": managed}),
            "Secret": (object_path("v1", "secrets", namespace=ns), {"label_selector": managed}),
            "PersistentVolumeClaim": (
                object_path("v1", "persistentvolumeclaims", namespace=ns),
                {"label_selector": managed},
            ),
            "Pod": (object_path("v1", "pods", namespace=ns), {"label_selector": C.LABEL_WORKSPACE}),
            "Event": (
                object_path("v1", "events", namespace=ns),
                {"field_selector": "involvedObject.kind=Pod"},
            ),
        }
        if self.cfg.workspace_domain:
            specs["Ingress"] = (
                object_path("networking.k8s.io/v1", "ingresses", namespace=ns),
                {"label_selector": managed},
            )
        for kind, (path, options) in specs.items():
            self.informers[kind] = self.instance.informer(path, kind, **options)
        if self.embed_operator:
            self.elector = LeaderElector(
                self.instance.call,
                lambda: self.rest,
                ns,
                LEASE_NAME,
                self._became_leader,
                self._stopped_leading,
                self._reactor,
            )
            self.elector.setServiceParent(self)

    def _became_leader(self) -> None:
        controller = WorkspaceController(
            self.instance.call,
            self.rest,
            self.informers,
            self.cfg,
            self._reactor,
            self.resync_period,
        )
        self.controller = controller
        # Reconcile from complete caches only.
        d = Deferred.fromCoroutine(self._wait_synced())
        d.addCallback(lambda _: controller.start() if self.controller is controller else None)

    async def _wait_synced(self) -> None:
        for informer in list(self.informers.values()):
            await informer.wait_synced()

    def _stopped_leading(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            controller.stop()

    def stopService(self) -> Deferred[None]:
        d = super().stopService()
        controller, self.controller = self.controller, None
        if controller is not None:
            stopped = controller.stop()
            if d is not None:
                d.addCallback(lambda _: stopped)
            else:
                d = stopped
        return d  # type: ignore[return-value]

    # lifecycle writes --------------------------------------------------------

    def patch_workspace(self, name: str, body: dict[str, Any]) -> Deferred[Any]:
        """Merge-patch Workspace ``name``; fires with the patched object (KubeApiError: 404/409)."""
        path = object_path(C.API_VERSION, C.PLURAL, name, self.namespace)
        return self.instance.call(
            self.rest.request, "PATCH", path, body=body, content_type=MERGE_PATCH
        )

    def set_stopped(
        self,
        name: str,
        stopped: bool,
        reason: str = C.STOP_USER_REQUESTED,
        message: str = "",
        resource_version: str | None = None,
    ) -> Deferred[Any]:
        """Stop (``spec.stopped``, replicas 0, volume/Secret/Service kept) or start ``name``.

        ``reason`` (``UserRequested``, ``Idle``) and ``message`` end up in the status'
        Stopped condition; ``resource_version`` makes the write conditional (a 409
        KubeApiError if the Workspace changed since it was read). Fires with the patched
        Workspace. The API's stop/start routes and the idle culler both call this.
        """
        return self.patch_workspace(
            name, stop_patch(stopped, reason, message, resource_version=resource_version)
        )

    # reads (from caches) -----------------------------------------------------

    def workspaces(self) -> list[dict[str, Any]]:
        informer = self.informers.get("Workspace")
        return informer.items() if informer else []

    def workspace(self, name: str) -> dict[str, Any] | None:
        informer = self.informers.get("Workspace")
        return informer.get(self.namespace, name) if informer else None

    def pods_of(self, name: str) -> list[dict[str, Any]]:
        informer = self.informers.get("Pod")
        if informer is None:
            return []
        return [
            p
            for p in informer.items()
            if ((p.get("metadata") or {}).get("labels") or {}).get(C.LABEL_WORKSPACE) == name
        ]


def attach(
    instance: Instance, cfg: OperatorConfig, embed_operator: bool, reactor: Any
) -> WorkspaceService:
    """The Instance's WorkspaceService, created and started on first use."""
    try:
        existing = instance.getServiceNamed(SERVICE_NAME)
    except KeyError:
        svc = WorkspaceService(instance, cfg, embed_operator, reactor)
        svc.setServiceParent(instance)
        return svc
    assert isinstance(existing, WorkspaceService)
    return existing
