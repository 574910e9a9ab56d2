"""Fixtures for the real-node suite: the real-node cluster with the IDE images, one namespace
and one Host App.

Its own pytest session (``make realnode``): the IDE images are large, and nothing here needs
the kwok cluster. The real-node fixtures come from tests/integration/conftest.py; like the
integration tests, this suite must run inside tests/harness/netns-run.sh.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.hostapp import HostApp
from tests.harness.realnode import RealNodeCluster
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    _real_deleted_namespaces,
    real_cluster,
    real_kube_api,
    real_kubeconfig,
    temporary_namespace,
)

#: Imported into the node's containerd once per session (web-app and pause come with it).
IDE_IMAGES = ("code-server", "jupyter")


@pytest.fixture(scope="session")
def ide_cluster(real_cluster: RealNodeCluster) -> RealNodeCluster:  # noqa: F811
    """The real-node cluster with the IDE presets' images imported."""
    real_cluster.ensure_images(IDE_IMAGES)
    return real_cluster


@pytest.fixture(scope="session")
def ide_namespace(
    ide_cluster: RealNodeCluster,
    real_kube_api: Any,  # noqa: F811
    _real_deleted_namespaces: list[str],  # noqa: F811
) -> Iterator[str]:
    """One namespace for the whole suite (each test names its own workspaces)."""
    name = f"real-ide-{uuid.uuid4().hex[:6]}"
    with temporary_namespace(real_kube_api, _real_deleted_namespaces, name) as n:
        yield n


@pytest.fixture(scope="session")
def ide_subdomain(
    real_kubeconfig: str,  # noqa: F811
    ide_cluster: RealNodeCluster,
    real_kube_api: Any,  # noqa: F811
    _real_deleted_namespaces: list[str],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HostApp, str]]:
    """A second Host App in subdomain mode, with its own namespace and operator (which gives
    preserve-mode apps no base path there), laid out as the README recommends for local
    use: the UI at ``https://ws.localhost:<port>``, workspaces at
    ``https://<id>--default.ws.localhost:<port>`` (one site, so the IDE in the UI's frame
    keeps its storage)."""
    name = f"real-sub-{uuid.uuid4().hex[:6]}"
    with temporary_namespace(real_kube_api, _real_deleted_namespaces, name) as namespace:
        workdir: Path = tmp_path_factory.mktemp("hostapp-subdomain")
        env = {
            "KUBECONFIG": real_kubeconfig,
            "K8S_NAMESPACE": namespace,
            "WORKSPACE_ORIGIN": "subdomain",
            "WORKSPACE_ORIGIN_DOMAIN": "ws.localhost",
        }
        app = HostApp(workdir, env)
        app.env["FRONTEND_ORIGIN"] = f"https://ws.localhost:{app.port}"
        with app.running(clean_log=False):
            yield app, namespace


@pytest.fixture(scope="session")
def ide_app(
    real_kubeconfig: str,  # noqa: F811
    ide_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HostApp]:
    """The real daemon with the real-node cluster as its default cluster, operator embedded."""
    workdir: Path = tmp_path_factory.mktemp("hostapp")
    app = HostApp(workdir, {"KUBECONFIG": real_kubeconfig, "K8S_NAMESPACE": ide_namespace})
    with app.running(clean_log=False):
        yield app
