"""The Registry: per-cluster Instances keyed by id, created on demand.

Only the reactor thread touches the map, which is what makes it safe.
Stored clusters live under ``<state>/clusters/<id>/`` (a mode-0600 kubeconfig
and ``cluster.json``) and survive restarts; their Instances are recreated
lazily on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from kubernetes import client
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from guildnet.cluster.ids import DEFAULT_CLUSTER_ID, validate_cluster_id
from guildnet.cluster.instance import Instance, describe_error
from guildnet.cluster.kubeclient import (
    ClusterSource,
    KubeconfigError,
    build_configuration,
    parse_kubeconfig,
    server_of,
)
from guildnet.cluster.threads import stop_pools
from guildnet.metrics import forget_cluster

log = Logger()
VALIDATE_TIMEOUT = 5.0
MAX_KUBECONFIG_BYTES = 256 * 1024


class UnknownCluster(KeyError):
    def __init__(self, cluster_id: str) -> None:
        super().__init__(cluster_id)
        self.cluster_id = cluster_id


class ClusterExists(ValueError):
    pass


class ClusterUnreachable(Exception):
    """The kubeconfig parsed, but its API server's /version did not answer."""


@attrs.frozen
class ClusterRecord:
    """What the Registry knows about a cluster without starting it."""

    id: str
    name: str
    source: ClusterSource
    server: str
    stored: bool  # added through the API (deletable), as opposed to the default


class Registry(MultiService):
    def __init__(
        self,
        clusters_dir: Path,
        default_source: ClusterSource | None,
        environ: Mapping[str, str],
        reactor: Any,
    ) -> None:
        super().__init__()
        self.setName("registry")
        self.clusters_dir = clusters_dir
        self._default = default_source
        self._environ = environ
        self._reactor = reactor
        self._instances: dict[str, Instance] = {}
        # Called with each Instance right after it starts: how capabilities
        # (workspaces, the operator, ...) attach their per-cluster services.
        self.instance_hooks: list[Callable[[Instance], object]] = []
        # Validating a new kubeconfig is blocking I/O that belongs to no
        # Instance yet: it gets a small pool of its own.
        self._validate_pool = ThreadPool(0, 2, name="guildnet-registry-validate")

    def startService(self) -> None:
        self.clusters_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._validate_pool.start()
        super().startService()

    def stopService(self) -> Deferred[None]:
        d = super().stopService() or succeed(None)
        d.addCallback(lambda _: self._instances.clear())
        d.addCallback(lambda _: stop_pools(self._reactor, [self._validate_pool]))
        return d  # type: ignore[return-value]

    # what is known --------------------------------------------------------

    def records(self) -> list[ClusterRecord]:
        """The default cluster (if configured) and every stored cluster, by id."""
        out: list[ClusterRecord] = []
        if self._default is not None:
            out.append(self._default_record())
        if self.clusters_dir.is_dir():
            for d in sorted(self.clusters_dir.iterdir()):
                if d.name != DEFAULT_CLUSTER_ID and (d / "cluster.json").is_file():
                    record = self._stored_record(d.name)
                    if record is not None:
                        out.append(record)
        return out

    def record(self, cluster_id: str) -> ClusterRecord:
        validate_cluster_id(cluster_id)
        if cluster_id == DEFAULT_CLUSTER_ID and self._default is not None:
            return self._default_record()
        record = self._stored_record(cluster_id)
        if record is None:
            raise UnknownCluster(cluster_id)
        return record

    def _default_record(self) -> ClusterRecord:
        assert self._default is not None
        server = self._default.api_proxy_url or ""
        if self._default.kubeconfig is not None:
            try:
                server = server_of(parse_kubeconfig(self._default.kubeconfig.read_text())) or ""
            except (OSError, KubeconfigError):
                server = ""
        elif self._default.kind == "in-cluster":
            server = "https://kubernetes.default.svc"
        return ClusterRecord(DEFAULT_CLUSTER_ID, "default", self._default, server, stored=False)

    def _stored_record(self, cluster_id: str) -> ClusterRecord | None:
        base = self.clusters_dir / cluster_id
        try:
            meta = json.loads((base / "cluster.json").read_text())
        except (OSError, ValueError):
            return None
        source = ClusterSource("kubeconfig", kubeconfig=base / "kubeconfig")
        return ClusterRecord(
            cluster_id,
            str(meta.get("name") or cluster_id),
            source,
            str(meta.get("server") or ""),
            stored=True,
        )

    # instances ------------------------------------------------------------

    def get(self, cluster_id: str) -> Instance:
        """The running Instance for ``cluster_id``, started on first use."""
        instance = self._instances.get(cluster_id)
        if instance is not None:
            return instance
        record = self.record(cluster_id)
        instance = Instance(
            record.id,
            record.source,
            self.clusters_dir / record.id,
            self._environ,
            self._reactor,
            display_name=record.name,
        )
        self._instances[cluster_id] = instance
        try:
            instance.setServiceParent(self)
            for hook in self.instance_hooks:
                hook(instance)
        except Exception:
            self._instances.pop(cluster_id, None)
            if instance.parent is self:
                self.removeService(instance)
            raise
        return instance

    def instances(self) -> dict[str, Instance]:
        return dict(self._instances)

    def running_instance(self, cluster_id: str) -> Instance | None:
        """The cluster's Instance if it is running now (never starts one); cheap."""
        return self._instances.get(cluster_id)

    def close(self, cluster_id: str) -> Deferred[None]:
        """Stop the cluster's Instance and everything it owns (no-op if not running).

        Its /metrics series go too, once nothing of it can count any more.
        """
        instance = self._instances.pop(cluster_id, None)
        if instance is None:
            return succeed(None)
        d = self.removeService(instance)  # stops it when we are running
        d = d if d is not None else succeed(None)
        return d.addCallback(lambda _: forget_cluster(cluster_id))

    # stored clusters ------------------------------------------------------

    def add(self, cluster_id: str, name: str | None, kubeconfig: str) -> Deferred[ClusterRecord]:
        """Validate by reaching ``/version``, then store; errbacks with the reason."""
        validate_cluster_id(cluster_id)
        if cluster_id == DEFAULT_CLUSTER_ID or (self.clusters_dir / cluster_id).exists():
            raise ClusterExists(cluster_id)
        if len(kubeconfig.encode()) > MAX_KUBECONFIG_BYTES:
            raise KubeconfigError(f"larger than {MAX_KUBECONFIG_BYTES} bytes")
        data = parse_kubeconfig(kubeconfig)
        server = server_of(data) or ""
        staging = self.clusters_dir / f".staging-{cluster_id}-{os.getpid()}-{time.monotonic_ns()}"
        _write_private(staging / "kubeconfig", kubeconfig)
        source = ClusterSource("kubeconfig", kubeconfig=staging / "kubeconfig")
        try:
            cfg = build_configuration(source, self._environ, staging / "tmp")
        except KubeconfigError:
            shutil.rmtree(staging, ignore_errors=True)
            raise

        def probe() -> str:
            api = client.ApiClient(cfg)
            try:
                return str(
                    client.VersionApi(api).get_code(_request_timeout=VALIDATE_TIMEOUT).git_version
                )
            except Exception as e:
                raise ClusterUnreachable(describe_error(e)) from None
            finally:
                api.close()

        def store(version: str) -> ClusterRecord:
            if (self.clusters_dir / cluster_id).exists():
                raise ClusterExists(cluster_id)
            shutil.rmtree(staging / "tmp", ignore_errors=True)
            meta = {
                "id": cluster_id,
                "name": name or cluster_id,
                "server": server,
                "version": version,
                "added": time.time(),
            }
            (staging / "cluster.json").write_text(json.dumps(meta, indent=2))
            os.replace(staging, self.clusters_dir / cluster_id)
            log.info(
                "cluster {cluster} added ({server}, {version})",
                cluster=cluster_id,
                server=server,
                version=version,
            )
            return self.record(cluster_id)

        def cleanup(f: Any) -> Any:
            shutil.rmtree(staging, ignore_errors=True)
            return f

        d: Deferred[str] = deferToThreadPool(self._reactor, self._validate_pool, probe)
        d.addCallback(store)
        d.addErrback(cleanup)
        return d  # type: ignore[return-value]

    def remove(self, cluster_id: str) -> Deferred[None]:
        """Close the Instance and delete the stored cluster's state."""
        record = self.record(cluster_id)
        if not record.stored:
            raise ValueError("the default cluster comes from configuration and cannot be deleted")

        def delete(_: object) -> None:
            shutil.rmtree(self.clusters_dir / cluster_id, ignore_errors=True)
            log.info("cluster {cluster} removed", cluster=cluster_id)

        return self.close(cluster_id).addCallback(delete)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
