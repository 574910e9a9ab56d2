"""Install or update the Workspace CRD from ``crds/`` (shipped in the package)."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import yaml

from guildnet.cluster.rest import KubeRest
from guildnet.operator import constants as C

CRD_NAME = C.CRD_NAME
CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"


def crd_manifest() -> dict[str, Any]:
    """The CRD, from the package data."""
    # guildnet/data/crds links to crds/, so a wheel carries the same file.
    data = resources.files("guildnet").joinpath("data/crds/workspaces.guildnet.io.yaml").read_text()
    manifest = yaml.safe_load(data)
    assert isinstance(manifest, dict)
    return manifest


def install_crd(rest: KubeRest, timeout: float = 30.0) -> None:
    """Server-side apply the CRD and wait until it is Established. Blocking."""
    rest.apply(CRD_PATH, crd_manifest(), C.FIELD_MANAGER)
    deadline = time.monotonic() + timeout
    while True:
        crd = rest.get(CRD_PATH)
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {CRD_NAME} not Established after {timeout}s")
        time.sleep(0.2)
