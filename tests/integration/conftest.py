"""Fixtures for integration tests against a real kube-apiserver.

Two tiers: `test_cluster` (tests/harness/cluster.py: kwok simulates the node) and
`real_cluster` (tests/harness/realnode.py: a real kubelet, containerd and kube-proxy; tests
using it are marked `realnode`). The suite must run inside the private network namespace made
by tests/harness/netns-run.sh: pod IPs are only reachable there, and nothing outside it may be
contacted.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.harness.cluster import TestCluster, netns_prepared
from tests.harness.images import IMAGES
from tests.harness.realnode import RealNodeCluster
from tests.harness.rethinkdb import RethinkServer

RUN_HINT = (
    "integration tests must run inside the test network namespace:\n"
    "    tests/harness/netns-run.sh .venv/bin/python -m pytest tests/integration"
)


def _require_netns() -> None:
    if not netns_prepared():
        pytest.fail(
            "198.18.0.1 is not local, so this is not the prepared network namespace.\n" + RUN_HINT,
            pytrace=False,
        )


@pytest.fixture(scope="session")
def test_cluster() -> Iterator[TestCluster]:
    """One control plane per session; starting it costs seconds, tests isolate by namespace."""
    _require_netns()
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


#: Images the real node has at start: all of `make images`, so that every session (and
#: `make dev-cluster`) shares one cached containerd store (tests/harness/realnode.py clones it
#: in seconds; only the first run on a machine imports). `real_cluster.ensure_images()`
#: imports more later.
REAL_NODE_IMAGES = tuple(IMAGES)


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[RealNodeCluster]:
    """A real single-node cluster (kubelet, containerd, kube-proxy, CoreDNS), one per session.

    Its node shares this namespace: pod IPs (198.19.64.0/20) are reachable over cni0 and
    Service ClusterIPs (198.19.0.0/20) through kube-proxy's rules.
    """
    _require_netns()
    cluster = RealNodeCluster(images=REAL_NODE_IMAGES)
    cluster.start()
    print(
        f"\n[real_cluster] started in {cluster.startup_seconds:.1f}s at {cluster.server} "
        f"({cluster.timings.line()})"
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def real_kubeconfig(real_cluster: RealNodeCluster) -> str:
    """Path of the real-node cluster's admin kubeconfig file."""
    return str(real_cluster.kubeconfig_path)


@pytest.fixture(scope="session")
def real_kube_api(real_kubeconfig: str) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` for the real-node cluster, as cluster admin."""
    new_client: Any = k8s_config.new_client_from_config
    api = new_client(config_file=real_kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def _real_deleted_namespaces(real_kube_api: Any) -> Iterator[list[str]]:
    """`_deleted_namespaces` for the real-node cluster."""
    names: list[str] = []
    yield names
    _assert_namespaces_gone(real_kube_api, names)


@pytest.fixture
def real_namespace(
    real_kube_api: Any, _real_deleted_namespaces: list[str], request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace per test in the real-node cluster."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    with temporary_namespace(real_kube_api, _real_deleted_namespaces, name) as n:
        yield n


@pytest.fixture(scope="session")
def _deleted_namespaces(kube_api: Any) -> Iterator[list[str]]:
    """Collects namespaces tests deleted; at session end, checks they are really gone.

    kube-controller-manager's namespace controller waits a fixed 5 s before it acts on a
    deletion, so waiting per test would add 5 s each; waiting once for all costs 5 s total.
    """
    names: list[str] = []
    yield names
    _assert_namespaces_gone(kube_api, names)


def _assert_namespaces_gone(kube_api: Any, names: list[str]) -> None:
    core: Any = k8s_client.CoreV1Api(kube_api)
    deadline = time.monotonic() + 60.0
    remaining = list(names)
    while remaining and time.monotonic() < deadline:
        remaining = [n for n in remaining if _namespace_exists(core, n)]
        if remaining:
            time.sleep(0.2)
    assert not remaining, f"namespaces not removed 60s after deletion: {remaining}"


def _namespace_exists(core: Any, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return False
        raise
    return True


@contextlib.contextmanager
def temporary_namespace(kube_api: Any, deleted: list[str], name: str) -> Iterator[str]:
    """Create namespace ``name``; delete it on exit (removal verified at session end)."""
    core: Any = k8s_client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != HTTPStatus.NOT_FOUND:
                raise
        deleted.append(name)


@pytest.fixture
def namespace(
    kube_api: Any, _deleted_namespaces: list[str], request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace per test."""
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    with temporary_namespace(kube_api, _deleted_namespaces, f"{base}-{uuid.uuid4().hex[:6]}") as n:
        yield n


@pytest.fixture(scope="module")
def ns(
    kube_api: Any, _deleted_namespaces: list[str], request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace the module's tests share (its Host App's), named after the module."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    base = module.removeprefix("test_").replace("_", "-")[:40]
    with temporary_namespace(kube_api, _deleted_namespaces, f"{base}-{uuid.uuid4().hex[:6]}") as n:
        yield n


# --------------------------------------------------------------------------- RethinkDB


@pytest.fixture(scope="session")
def rdb_server() -> Iterator[RethinkServer]:
    """One plain RethinkDB server for the session (tests use their own databases)."""
    server = RethinkServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def rdb_tls_server() -> Iterator[RethinkServer]:
    """A server whose driver port speaks only TLS (certificate from a test CA)."""
    server = RethinkServer(tls=True).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def rdb_password_server() -> Iterator[RethinkServer]:
    """A server whose admin account has a password."""
    server = RethinkServer(password="s3cret-Pa55").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def rdb_private() -> Iterator[RethinkServer]:
    """A server of this test's own, for tests that kill, stop or pause it."""
    server = RethinkServer().start()
    try:
        yield server
    finally:
        server.close()
