"""Fixtures for the real-node suite: the real-node cluster, one namespace and one Host App.

Its own pytest session (``make realnode``): it starts the real-node cluster (real kubelet,
containerd, CNI, kube-proxy, the locally built images) instead of the kwok one. It must run
inside tests/harness/netns-run.sh, like the integration tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.hostapp import HostApp
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    _deleted_namespaces,
    real_cluster,
    temporary_namespace,
)


@pytest.fixture(scope="session")
def real_kubeconfig(real_cluster: Any) -> str:  # noqa: F811
    return str(real_cluster.kubeconfig_path)


@pytest.fixture(scope="session")
def kube_api(real_kubeconfig: str) -> Iterator[Any]:
    from kubernetes import config as k8s_config

    new_client: Any = k8s_config.new_client_from_config
    api = new_client(config_file=real_kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def ide_namespace(kube_api: Any, _deleted_namespaces: list[str]) -> Iterator[str]:  # noqa: F811
    """One namespace for the whole suite (workspaces are named per test)."""
    with temporary_namespace(
        kube_api, _deleted_namespaces, f"real-ide-{uuid.uuid4().hex[:6]}"
    ) as n:
        yield n


@pytest.fixture(scope="session")
def ide_app(
    real_kubeconfig: str, ide_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostApp]:
    """The real daemon with the real-node cluster as its default cluster, operator embedded."""
    workdir: Path = tmp_path_factory.mktemp("hostapp")
    app = HostApp(workdir, {"KUBECONFIG": real_kubeconfig, "K8S_NAMESPACE": ide_namespace})
    app.start()
    try:
        yield app
    finally:
        app.stop()
