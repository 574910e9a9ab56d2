"""Smoke tests for the test control plane, using only the official `kubernetes` client.

They prove the paths GuildNet relies on work end to end through a real kube-apiserver:
scheduling to a kwok node, `pods/log` (incl. follow), WebSocket `pods/portforward` and
`pods/proxy` to a backend listening on the pod IP.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

POD_NET = ipaddress.ip_network("198.18.16.0/20")
NODE_IP = ipaddress.ip_address("198.18.0.1")
KWOK_GROUP, KWOK_VERSION = "kwok.x-k8s.io", "v1alpha1"
# Never pulled: kwok runs no containers.
IMAGE = "registry.invalid/guildnet/fake:1"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something truthy; bounded so a broken cluster fails fast."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except ApiException as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


def is_running_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return bool(pod.status.phase == "Running" and ready and pod.status.pod_ip)


def create_pod(core: Any, namespace: str, name: str, port: int | None = None) -> Any:
    """Create a one-container pod and wait until kwok reports it Running+Ready with an IP."""
    container: dict[str, Any] = {"name": "app", "image": IMAGE}
    if port is not None:
        container["ports"] = [{"containerPort": port, "name": "http"}]
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [container]},
        },
    )

    def running() -> Any:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if is_running_ready(pod) else None

    pod = wait_for(f"pod {namespace}/{name} Running+Ready", running)
    assert ipaddress.ip_address(pod.status.pod_ip) in POD_NET
    return pod


def create_kwok_object(
    kube_api: Any, namespace: str, plural: str, kind: str, name: str, spec: dict[str, Any]
) -> None:
    custom: Any = k8s_client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        KWOK_GROUP,
        KWOK_VERSION,
        namespace,
        plural,
        {
            "apiVersion": f"{KWOK_GROUP}/{KWOK_VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        },
    )


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _ThreadingTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Run `server` in a thread for the duration of the block, then shut it down."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- 1. scheduling


def test_deployment_pod_becomes_running_and_ready(kube_api: Any, namespace: str) -> None:
    apps: Any = k8s_client.AppsV1Api(kube_api)
    core: Any = k8s_client.CoreV1Api(kube_api)
    labels = {"app": "smoke-web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "smoke-web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": IMAGE}]},
                },
            },
        },
    )

    def ready_pods() -> list[Any]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=smoke-web").items
        return [p for p in pods if is_running_ready(p)]

    (pod,) = wait_for("deployment pod Running+Ready", ready_pods)
    pod_ip = ipaddress.ip_address(pod.status.pod_ip)
    assert pod_ip in POD_NET and pod_ip != NODE_IP
    assert pod.spec.node_name == "kwok-node-0"
    deployment = wait_for(
        "deployment readyReplicas=1",
        lambda: (
            (d := apps.read_namespaced_deployment("smoke-web", namespace)).status.ready_replicas
            == 1
            and d
        ),
    )
    assert deployment.status.available_replicas == 1

    apps.delete_namespaced_deployment("smoke-web", namespace, propagation_policy="Foreground")
    wait_for(
        "deployment pods deleted",
        lambda: not core.list_namespaced_pod(namespace, label_selector="app=smoke-web").items,
    )


# --------------------------------------------------------------------------- 2. pods/log


def cri_line(message: str) -> str:
    return f"2026-01-01T00:00:00Z stdout F {message}\n"


def test_pod_logs_and_follow(kube_api: Any, namespace: str, tmp_path: Path) -> None:
    core: Any = k8s_client.CoreV1Api(kube_api)
    log_file = tmp_path / "app.log"
    log_file.write_text(cri_line("first line") + cri_line("second line"))
    create_pod(core, namespace, "logger")
    create_kwok_object(
        kube_api,
        namespace,
        "logs",
        "Logs",
        "logger",
        {"logs": [{"containers": ["app"], "logsFile": str(log_file), "follow": True}]},
    )

    # kwok picks the Logs object up asynchronously: retry until it answers.
    text = wait_for(
        "pods/log",
        lambda: core.read_namespaced_pod_log("logger", namespace, container="app"),
    )
    assert text == "first line\nsecond line\n"

    resp = core.read_namespaced_pod_log(
        "logger",
        namespace,
        container="app",
        follow=True,
        _preload_content=False,
        _request_timeout=(5, 15),
    )
    try:
        received = b""
        with log_file.open("a") as f:
            f.write(cri_line("appended one") + cri_line("appended two"))
        deadline = time.monotonic() + 20
        while b"appended two\n" not in received and time.monotonic() < deadline:
            chunk = resp.read1(65536)
            if not chunk:
                break
            received += chunk
        assert received.decode().splitlines() == [
            "first line",
            "second line",
            "appended one",
            "appended two",
        ]
    finally:
        resp.close()
        resp.release_conn()


# --------------------------------------------------------------------------- 3. port-forward


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """A TCP echo server on loopback, standing in for a process in the pod."""
    server = _ThreadingTCPServer(("127.0.0.1", 0), _EchoHandler)
    host, port = server.server_address[:2]
    with serving(server):
        yield str(host), int(port)


def forward_and_echo(
    kube_api: Any, namespace: str, pod: str, port: int, protocols: str, payload: bytes
) -> tuple[bytes, str | None]:
    """Open a WebSocket port-forward offering `protocols`; return echoed bytes and protocol."""
    core: Any = k8s_client.CoreV1Api(kube_api)
    pf = portforward(
        core.connect_get_namespaced_pod_portforward,
        pod,
        namespace,
        ports=str(port),
        _headers={"sec-websocket-protocol": protocols},
    )
    try:
        sock = pf.socket(port)
        sock.settimeout(10)
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        error = pf.error(port)
        assert error is None, f"port-forward error channel: {error}"
        # websocket-client only records a subprotocol it negotiated itself; the kubernetes
        # client sends the header directly, so read the server's answer from the handshake.
        headers = pf.websocket.getheaders() or {}
        return received, headers.get("sec-websocket-protocol")
    finally:
        pf.close()


def test_port_forward_websocket_reaches_backend(
    kube_api: Any, namespace: str, echo_server: tuple[str, int]
) -> None:
    core: Any = k8s_client.CoreV1Api(kube_api)
    host, echo_port = echo_server
    create_pod(core, namespace, "forwarded", port=8080)
    create_kwok_object(
        kube_api,
        namespace,
        "portforwards",
        "PortForward",
        "forwarded",
        {"forwards": [{"ports": [8080], "target": {"address": host, "port": echo_port}}]},
    )

    # The kubelet (kwok) port-forward speaks v4.channel.k8s.io; the client offers v5 then v4
    # by default and must negotiate v4. Both offers have to reach the backend.
    for offer in ("v4.channel.k8s.io", "v5.channel.k8s.io,v4.channel.k8s.io"):
        payload = f"hello through {offer}\n".encode() * 100

        def attempt(
            offer: str = offer, payload: bytes = payload
        ) -> tuple[bytes, str | None] | None:
            try:
                return forward_and_echo(kube_api, namespace, "forwarded", 8080, offer, payload)
            except AssertionError:
                return None  # kwok has not seen the PortForward object yet

        received, protocol = wait_for(f"port-forward via {offer}", attempt)
        assert received == payload
        assert protocol == "v4.channel.k8s.io"


# --------------------------------------------------------------------------- 4. pods/proxy


class _HelloHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # The address the connection arrived on proves the API server dialled the pod IP.
        local_ip = self.connection.getsockname()[0]
        body = f"hello from {local_ip} path={self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


def test_pod_proxy_reaches_server_on_pod_ip(kube_api: Any, namespace: str) -> None:
    core: Any = k8s_client.CoreV1Api(kube_api)
    pod = create_pod(core, namespace, "proxied", port=8080)
    pod_ip = pod.status.pod_ip
    server = http.server.ThreadingHTTPServer((pod_ip, 8080), _HelloHandler)
    server.daemon_threads = True
    with serving(server):
        body = core.connect_get_namespaced_pod_proxy_with_path(
            "proxied:8080", namespace, "greet/me"
        )
        assert body == f"hello from {pod_ip} path=/greet/me"
