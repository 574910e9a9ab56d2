"""Smoke tests for the real-node test cluster (tests/harness/realnode.py).

A real kubelet runs the web-app preset's image (go-httpbin, built by `make images`) with
containerd and runc; everything below reaches that real process: the pod IP over cni0,
`pods/log`, `pods/exec`, the API server's pod proxy, GuildNet's own port-forward manager
through the kubelet, a Service ClusterIP through kube-proxy's rules, the cluster DNS
(CoreDNS) and a pod deletion that completes quickly.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from twisted.internet import reactor as _reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from guildnet.cluster.kubeclient import ClusterSource
from guildnet.cluster.registry import Registry
from guildnet.proxy.portforward import PortForwardManager
from tests.harness import realnode
from tests.harness.images import IMAGES
from tests.harness.realnode import RealNodeCluster

pytestmark = [pytest.mark.integration, pytest.mark.realnode, pytest.mark.timeout(300)]
reactor: Any = _reactor
T = TypeVar("T")

#: The web-app preset's image (go-httpbin: `/get` echoes, `-help` prints its flags).
WEB_APP_IMAGE = IMAGES["web-app"].reference
PORT = 8080
POD_NET = ipaddress.ip_network(realnode.POD_CIDR)
SERVICE_NET = ipaddress.ip_network(realnode.SERVICE_CIDR)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll `probe` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (ApiException, OSError) as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """A direct GET (no proxy: the test namespace reaches nothing else)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def web_app_deployment(name: str) -> dict[str, Any]:
    """The web-app preset's container, hardened like the operator's workspaces."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "app",
                            "image": WEB_APP_IMAGE,
                            "imagePullPolicy": "Never",
                            "args": ["--port", str(PORT)],
                            "ports": [{"containerPort": PORT, "name": "http"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/status/200", "port": PORT},
                                "periodSeconds": 1,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def ready_pod(core: Any, namespace: str, selector: str) -> Any:
    def probe() -> Any:
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
            conds = pod.status.conditions or []
            ready = any(c.type == "Ready" and c.status == "True" for c in conds)
            if pod.status.phase == "Running" and ready and not pod.metadata.deletion_timestamp:
                return pod
        return None

    return wait_for(f"a Ready pod for {selector} in {namespace}", probe, timeout=90.0)


class WebApp:
    """One web-app Deployment and Service shared by the module's tests."""

    def __init__(self, namespace: str, pod: Any, service_ip: str) -> None:
        self.namespace = namespace
        self.pod = pod
        self.name = pod.metadata.name
        self.ip = pod.status.pod_ip
        self.service_ip = service_ip


@pytest.fixture(scope="module")
def web_app(real_kube_api: Any, _real_deleted_namespaces: list[str]) -> Iterator[WebApp]:
    from tests.integration.conftest import temporary_namespace

    core: Any = k8s_client.CoreV1Api(real_kube_api)
    apps: Any = k8s_client.AppsV1Api(real_kube_api)
    with temporary_namespace(real_kube_api, _real_deleted_namespaces, "realnode-smoke") as ns:
        t0 = time.monotonic()
        apps.create_namespaced_deployment(ns, web_app_deployment("web"))
        svc = core.create_namespaced_service(
            ns,
            {
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": PORT}],
                },
            },
        )

        def available() -> bool:
            dep = apps.read_namespaced_deployment("web", ns)
            return bool(dep.status.available_replicas == 1)

        wait_for("Deployment web available", available, timeout=90.0)
        pod = ready_pod(core, ns, "app=web")
        print(f"\n[realnode smoke] Deployment available {time.monotonic() - t0:.1f}s after create")
        yield WebApp(ns, pod, svc.spec.cluster_ip)


def test_deployment_runs_a_real_container(web_app: WebApp, real_cluster: RealNodeCluster) -> None:
    assert ipaddress.ip_address(web_app.ip) in POD_NET
    assert web_app.pod.spec.node_name == real_cluster.node_name
    status = web_app.pod.status.container_statuses[0]
    assert status.ready and status.container_id.startswith("containerd://")
    code, body = http_get(f"http://{web_app.ip}:{PORT}/get?hello=pod")
    assert code == 200
    assert json.loads(body)["args"] == {"hello": ["pod"]}


def test_pod_log_streams_the_container_output(web_app: WebApp, real_kube_api: Any) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    marker = f"logmarker{random.randrange(10**9)}"
    http_get(f"http://{web_app.ip}:{PORT}/get?{marker}=1")

    def logged() -> bool:
        return marker in core.read_namespaced_pod_log(web_app.name, web_app.namespace)

    wait_for("the request in the pod's log", logged, timeout=20.0)


def test_exec_runs_in_the_container(web_app: WebApp, real_kube_api: Any) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    # The image is distroless-like (no shell): run its one binary's help.
    out = stream(
        core.connect_get_namespaced_pod_exec,
        web_app.name,
        web_app.namespace,
        command=["/usr/bin/go-httpbin", "-help"],
        stderr=True,
        stdout=True,
        stdin=False,
        tty=False,
    )
    assert "-port" in out


def test_api_server_pod_proxy(web_app: WebApp, real_kube_api: Any) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    body = core.connect_get_namespaced_pod_proxy_with_path(
        f"{web_app.name}:{PORT}", web_app.namespace, "get", _preload_content=False
    ).data
    assert json.loads(body)["url"].endswith("/get")


def test_service_cluster_ip_through_kube_proxy(web_app: WebApp) -> None:
    assert ipaddress.ip_address(web_app.service_ip) in SERVICE_NET

    def answered() -> bytes | None:
        code, body = http_get(f"http://{web_app.service_ip}/get?via=service", timeout=2.0)
        return body if code == 200 else None

    body = wait_for("the ClusterIP to answer", answered, timeout=30.0)
    assert json.loads(body)["args"] == {"via": ["service"]}


def test_cluster_dns_resolves_the_service(web_app: WebApp, real_cluster: RealNodeCluster) -> None:
    if not real_cluster.dns:
        pytest.fail("the real-node cluster runs without CoreDNS")
    name = f"web.{web_app.namespace}.svc.cluster.local"

    def resolved() -> list[str]:
        return realnode.dns_query(real_cluster.dns_service_ip, name)

    assert wait_for(f"{name} to resolve", resolved, timeout=30.0) == [web_app.service_ip]
    # And the pods are told to use it: the resolv.conf containerd wrote for the pod's sandbox.
    assert web_app.pod.spec.dns_policy == "ClusterFirst"
    sandboxes = real_cluster.work_dir / "containerd" / "root" / "io.containerd.grpc.v1.cri"
    confs = [p.read_text() for p in sandboxes.glob("sandboxes/*/resolv.conf")]
    assert any(f"nameserver {real_cluster.dns_service_ip}" in c for c in confs), confs
    assert any(f"search {web_app.namespace}.svc.cluster.local" in c for c in confs), confs


def test_pod_deletion_is_fast(real_kube_api: Any, real_namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    apps: Any = k8s_client.AppsV1Api(real_kube_api)
    apps.create_namespaced_deployment(real_namespace, web_app_deployment("quick"))
    pod = ready_pod(core, real_namespace, "app=quick")
    t0 = time.monotonic()
    core.delete_namespaced_pod(pod.metadata.name, real_namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod(pod.metadata.name, real_namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the pod to be gone", gone, timeout=30.0)
    took = time.monotonic() - t0
    print(f"\n[realnode smoke] pod deleted in {took:.1f}s")
    # A container that ignores SIGTERM holds deletion for the whole 30 s grace period; a proper
    # PID 1 exits at once (2-4 s end to end here, 13 s seen on a machine saturated with I/O).
    assert took < 25.0, f"deletion took {took:.1f}s: the container ignored SIGTERM?"


class PortForwardThroughKubelet(TestCase):
    """GuildNet's own port-forward manager (guildnet/proxy/portforward.py) to the real pod."""

    timeout = 120

    @pytest.fixture(autouse=True)
    def _cluster(self, real_kubeconfig: str, web_app: WebApp) -> None:
        self.kubeconfig = Path(real_kubeconfig)
        self.web_app = web_app

    @inlineCallbacks
    def test_http_through_a_managed_forward(self) -> Any:
        base = Path(self.mktemp())
        base.mkdir()
        registry = Registry(
            base / "clusters", ClusterSource("kubeconfig", kubeconfig=self.kubeconfig), {}, reactor
        )
        registry.startService()
        self.addCleanup(registry.stopService)
        instance = registry.get("default")
        yield instance.ready()
        pf = PortForwardManager(instance, reactor, 60.0)
        pf.startService()
        self.addCleanup(lambda: pf.stopService() if pf.running else None)
        host, port = yield pf.forward(self.web_app.namespace, self.web_app.name, PORT)
        self.assertEqual(host, "127.0.0.1")
        code, body = yield deferToThread(http_get, f"http://{host}:{port}/get?via=forward")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["args"], {"via": ["forward"]})
