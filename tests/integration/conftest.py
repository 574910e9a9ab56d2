"""Fixtures for integration tests against a real kube-apiserver (see tests/harness/cluster.py).

The suite must run inside the private network namespace made by tests/harness/netns-run.sh:
pod IPs (198.18.0.x) are only local there, and nothing outside it may be contacted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.harness.cluster import TestCluster, netns_prepared

RUN_HINT = (
    "integration tests must run inside the test network namespace:\n"
    "    tests/harness/netns-run.sh .venv/bin/python -m pytest tests/integration"
)


@pytest.fixture(scope="session")
def test_cluster() -> Iterator[TestCluster]:
    """One control plane per session; starting it costs seconds, tests isolate by namespace."""
    if not netns_prepared():
        pytest.fail(
            "198.18.0.1 is not local, so this is not the prepared network namespace.\n" + RUN_HINT,
            pytrace=False,
        )
    cluster = TestCluster(netns=True)
    cluster.start()
    print(f"\n[test_cluster] started in {cluster.startup_seconds:.1f}s at {cluster.server}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kubeconfig(test_cluster: TestCluster) -> str:
    """Path of the admin kubeconfig file."""
    return str(test_cluster.kubeconfig_path)


@pytest.fixture(scope="session")
def kube_api(kubeconfig: str) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` authenticated as cluster admin."""
    new_client: Any = k8s_config.new_client_from_config  # untyped in the client library
    api = new_client(config_file=kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube_api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted (and waited for) afterwards."""
    core: Any = k8s_client.CoreV1Api(kube_api)
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        delete_namespace(core, name)


def delete_namespace(core: Any, name: str, timeout: float = 60.0) -> None:
    """Delete a namespace and wait until it is gone, so tests prove they leave nothing behind."""
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.2)
    raise AssertionError(f"namespace {name} still present {timeout}s after deletion")
