"""The test clusters' storage: a default StorageClass and a static hostPath provisioner.

Both tiers need PersistentVolumeClaims to bind (every workspace has a home volume). The
harness provisions them itself rather than running rancher's local-path-provisioner: that
one needs a helper pod image to create directories (another image to build without a
registry) and a Go build on 2 cores, while a thread here can create the directory on the
node's filesystem directly (the harness is root on the node's host), chown it to the
workspace uid/gid 1000 (the kubelet applies no fsGroup to hostPath volumes) and create a
PersistentVolume pre-bound to the claim, exactly as an external provisioner does. The
PersistentVolume controller in kube-controller-manager then binds the pair; on the kwok tier
nothing mounts it, on the real node the kubelet bind-mounts the directory.

Claims of the class ``guildnet-hostpath`` (the default class, so a claim without one gets
it through the DefaultStorageClass admission plugin) are provisioned within a poll period;
Released volumes are deleted with their directory (reclaim policy Delete).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final

STORAGE_CLASS: Final = "guildnet-hostpath"
PROVISIONER: Final = "harness.guildnet.io/hostpath"
OWNER_UID: Final = 1000
POLL_S: Final = 0.5

Request = Callable[..., tuple[int, bytes]]


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def volume_for(claim: dict[str, Any], path: Path) -> dict[str, Any]:
    """A hostPath PersistentVolume pre-bound to ``claim`` (name ``pvc-<claim uid>``)."""
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


class HostPathProvisioner(threading.Thread):
    """Polls claims of the harness class and provisions/deletes volumes (see module doc)."""

    def __init__(self, request: Request, root: Path) -> None:
        super().__init__(name="hostpath-provisioner", daemon=True)
        self._request = request
        self.root = root
        self._halt = threading.Event()
        self.provisioned = 0
        self.deleted = 0
        self.error: str | None = None

    def install(self) -> None:
        """Create the default StorageClass (idempotent)."""
        status, data = self._request(
            "POST",
            "/apis/storage.k8s.io/v1/storageclasses",
            json.dumps(storage_class()).encode(),
        )
        if status not in (HTTPStatus.CREATED, HTTPStatus.CONFLICT):
            raise RuntimeError(f"creating the StorageClass: HTTP {status}: {data[:300]!r}")
        self.root.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        while not self._halt.wait(POLL_S):
            try:
                self.sync()
            except Exception as e:  # the API server may be stopping; try again next tick
                self.error = str(e)[:300]

    def _list(self, path: str) -> list[dict[str, Any]]:
        status, data = self._request("GET", path, timeout=5.0)
        if status != HTTPStatus.OK:
            return []
        items: list[dict[str, Any]] = json.loads(data).get("items") or []
        return items

    def sync(self) -> None:
        volumes = self._list("/api/v1/persistentvolumes")
        bound_claims = {
            ((v["spec"].get("claimRef") or {}).get("uid")) for v in volumes if v.get("spec")
        }
        for claim in self._list("/api/v1/persistentvolumeclaims"):
            spec = claim.get("spec") or {}
            if spec.get("storageClassName") != STORAGE_CLASS or spec.get("volumeName"):
                continue
            if claim["metadata"]["uid"] in bound_claims:
                continue
            if claim["metadata"].get("deletionTimestamp"):
                continue
            self._provision(claim)
        for volume in volumes:
            annotations = volume["metadata"].get("annotations") or {}
            if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
                continue
            if (volume.get("status") or {}).get("phase") in ("Released", "Failed"):
                self._remove_volume(volume)

    def _provision(self, claim: dict[str, Any]) -> None:
        meta = claim["metadata"]
        path = self.root / f"{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}"
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, OWNER_UID, OWNER_UID)
        path.chmod(0o2775)
        status, data = self._request(
            "POST", "/api/v1/persistentvolumes", json.dumps(volume_for(claim, path)).encode()
        )
        if status == HTTPStatus.CREATED:
            self.provisioned += 1
        elif status != HTTPStatus.CONFLICT:
            self.error = f"creating a volume for {meta['name']}: HTTP {status}: {data[:200]!r}"

    def _remove_volume(self, volume: dict[str, Any]) -> None:
        name = volume["metadata"]["name"]
        status, _ = self._request("DELETE", f"/api/v1/persistentvolumes/{name}")
        if status in (HTTPStatus.OK, HTTPStatus.ACCEPTED, HTTPStatus.NOT_FOUND):
            path = (volume["spec"].get("hostPath") or {}).get("path")
            if path and Path(path).is_relative_to(self.root):
                shutil.rmtree(path, ignore_errors=True)
            self.deleted += 1
