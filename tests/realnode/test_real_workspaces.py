"""Workspaces on the real node through the Host App's API, no browser.

* Every proxy route to a real pod (the web-app preset, go-httpbin): the Service's ClusterIP
  (through kube-proxy), the API server's pod proxy and a port-forward through the real
  kubelet, each forced the way a deployment would meet it and checked by
  ``X-GuildNet-Route``, the pod's answer, the request in that pod's own log and a WebSocket
  echo. The Service route is what a Host App that can reach ClusterIPs uses; to
  stand where it cannot (outside the cluster), the test rejects TCP to the ClusterIP in
  this network namespace (iptables, by original destination), then runs a Host App with
  default knobs (pod proxy) and one with ``HOSTAPP_DISABLE_API_PROXY`` and
  ``HOSTAPP_USE_PORT_FORWARD`` (port-forward).
* Real logs: the one-shot fetch has the container's start-up lines, and a follow (SSE)
  shows a line the container writes while the stream is open.
* A workspace whose image does not exist ends Failed with the kubelet's image-pull reason;
  one whose command exits ends Failed with CrashLoopBackOff and its exit code.
* Delete removes the pods for real, quickly (the images' PID 1 handles SIGTERM).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import websocket
from kubernetes import client as k8s_client

from guildnet.operator.images import PRESETS
from guildnet.operator.status import PULL_FAILURES
from tests.harness.hostapp import HostApp, insecure_context
from tests.realnode.helpers import (
    delete_and_wait_gone,
    launch,
    pod_exec,
    preset_image,
    running_pod,
    wait_for,
    wait_phase,
)

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

START_TIMEOUT = 180.0
DELETE_SECONDS_MAX = 30.0  # a proper PID 1 ends on SIGTERM; a 30 s grace would show here


def _preset_job(preset_id: str, name: str) -> dict[str, Any]:
    """The POST /api/jobs body the UI sends for a preset."""
    preset = next(p for p in PRESETS if p.id == preset_id)
    body: dict[str, Any] = {"name": name, "image": preset.image}
    if preset.ports:
        body["ports"] = [p.to_dict() for p in preset.ports]
    if preset.args:
        body["args"] = list(preset.args)
    return body


def _get(app: HostApp, path: str) -> tuple[int, dict[str, str], bytes]:
    return app.request("GET", path)


def _ws_echo(app: HostApp, path: str, message: str) -> tuple[str, dict[str, str]]:
    """A WebSocket through the Host App: send ``message``, return the echo and the 101 headers."""
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{app.port}{path}",
        sslopt={"cert_reqs": ssl.CERT_NONE, "check_hostname": False},
        origin=app.url,
        timeout=20,
    )
    try:
        headers = {k.lower(): v for k, v in (ws.getheaders() or {}).items()}
        ws.send(message)
        echoed = ws.recv()
    finally:
        ws.close()
    return str(echoed), headers


def _check_route(app: HostApp, core: Any, namespace: str, name: str, pod: str, route: str) -> None:
    """A request and a WebSocket through ``route``, answered by the workspace's real pod."""
    token = uuid.uuid4().hex
    status, headers, body = _get(app, f"/proxy/server/{name}/anything/{route}-{token}")
    assert status == 200, (status, body[:500], app.output()[-3000:])
    assert headers.get("x-guildnet-route") == route, headers
    echoed_request = json.loads(body)
    assert echoed_request["method"] == "GET", echoed_request
    assert echoed_request["url"].endswith(f"/anything/{route}-{token}"), echoed_request
    # go-httpbin logs every request: this one reached that pod (pods/log, the real kubelet)
    wait_for(
        f"the request in {pod}'s log",
        lambda: token in core.read_namespaced_pod_log(pod, namespace, container="workspace"),
        15,
    )
    message = f"through {route} {token}"
    echoed, ws_headers = _ws_echo(app, f"/proxy/server/{name}/websocket/echo", message)
    assert echoed == message
    assert ws_headers.get("x-guildnet-route") == route, ws_headers


@contextmanager
def clusterip_rejected(ip: str) -> Iterator[None]:
    """Refuse TCP to ``ip`` from this network namespace (matched on the original destination,
    so kube-proxy's DNAT cannot route around it): the Host App now stands outside the cluster."""
    rule = ["OUTPUT", "-p", "tcp", "-m", "conntrack", "--ctorigdst", f"{ip}/32"]
    rule += ["-j", "REJECT", "--reject-with", "tcp-reset"]
    subprocess.run(["iptables", "-w", "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-w", "-D", *rule], check=True)


def test_every_proxy_route_to_a_real_pod(
    ide_app: HostApp,
    real_kube_api: Any,
    ide_namespace: str,
    real_kubeconfig: str,
    tmp_path: Path,
) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    name = launch(ide_app, _preset_job("web-app", "real-routes"))
    try:
        wait_phase(ide_app, name, "Running", START_TIMEOUT)
        pod = running_pod(core, ide_namespace, name).metadata.name
        service = core.read_namespaced_service(name, ide_namespace)
        cluster_ip = service.spec.cluster_ip
        _check_route(ide_app, core, ide_namespace, name, pod, "service")

        # The ClusterIP answers through kube-proxy from here, so reject it to go further.
        with clusterip_rejected(cluster_ip):
            base = {"KUBECONFIG": real_kubeconfig, "K8S_NAMESPACE": ide_namespace}
            base["HOSTAPP_EMBED_OPERATOR"] = "false"
            with HostApp(tmp_path, base, "hostapp-podproxy") as app:
                _check_route(app, core, ide_namespace, name, pod, "podproxy")
            pf = {**base, "HOSTAPP_DISABLE_API_PROXY": "true", "HOSTAPP_USE_PORT_FORWARD": "true"}
            with HostApp(tmp_path, pf, "hostapp-portforward") as app:
                _check_route(app, core, ide_namespace, name, pod, "portforward")
        seconds = delete_and_wait_gone(ide_app, core, ide_namespace, name)
        assert seconds < DELETE_SECONDS_MAX, f"deleting took {seconds:.1f}s"
    finally:
        ide_app.request("DELETE", f"/api/servers/{name}")


class _SSEReader:
    """Reads an SSE response in a thread and keeps the raw text."""

    def __init__(self, app: HostApp, path: str) -> None:
        self.conn = http.client.HTTPSConnection(
            "127.0.0.1", app.port, context=insecure_context(), timeout=60
        )
        self.conn.request("GET", path, headers={"accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()[:500]
        self.text = ""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="sse-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    return
                with self.lock:
                    self.text += chunk.decode(errors="replace")
        except (OSError, ValueError, http.client.HTTPException):
            return

    def has(self, needle: str) -> bool:
        with self.lock:
            return needle in self.text

    def close(self) -> None:
        """Shut the socket down (the reader sees the end), let the reader finish, then close:
        closing under a reading thread races with http.client's own cleanup."""
        sock = self.conn.sock
        if sock is not None:
            sock.shutdown(2)
        self.thread.join(5)
        self.conn.close()


def test_real_container_logs_stream(
    ide_app: HostApp, real_kube_api: Any, ide_namespace: str
) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    name = launch(ide_app, {"name": "real-logs", "image": preset_image("code-server")})
    try:
        wait_phase(ide_app, name, "Running", START_TIMEOUT)
        pod = running_pod(core, ide_namespace, name).metadata.name

        def startup_logged() -> bool:
            status, _, body = _get(ide_app, f"/api/servers/{name}/logs?tail=100")
            assert status == 200, body[:500]
            return "HTTP server listening on" in body.decode(errors="replace")

        wait_for("code-server's start-up line in the logs", startup_logged, 30)

        reader = _SSEReader(ide_app, f"/sse/logs?server={name}&tail=5")
        try:
            wait_for("the log stream's first lines", lambda: "data:" in reader.text, 30)
            marker = f"guildnet-log-marker-{uuid.uuid4().hex}"
            # Written to PID 1's stdout: the container's own log, as the kubelet records it.
            b64 = base64.b64encode(f"{marker}\n".encode()).decode()
            pod_exec(
                core, ide_namespace, pod, ["sh", "-c", f"echo {b64} | base64 -d > /proc/1/fd/1"]
            )
            wait_for("the new line in the followed stream", lambda: reader.has(marker), 30)
        finally:
            reader.close()
    finally:
        ide_app.request("DELETE", f"/api/servers/{name}")


def test_missing_image_fails_with_the_pull_reason(
    ide_app: HostApp, real_kube_api: Any, ide_namespace: str
) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    image = "localhost/guildnet-e2e/no-such-image:1"
    name = launch(ide_app, {"name": "real-noimage", "image": image})
    try:
        detail = wait_phase(ide_app, name, "Failed", 120)
        status = detail["status"]
        assert status["reason"] in PULL_FAILURES, status
        conditions = {c["type"]: c for c in detail["conditions"]}
        assert conditions["ImagePulled"]["status"] == "False", conditions
        assert conditions["ImagePulled"]["reason"] in PULL_FAILURES
        assert image in status["message"], status["message"]
        seconds = delete_and_wait_gone(ide_app, core, ide_namespace, name)
        assert seconds < DELETE_SECONDS_MAX, f"deleting took {seconds:.1f}s"
    finally:
        ide_app.request("DELETE", f"/api/servers/{name}")


def test_exiting_command_fails_with_crashloopbackoff(
    ide_app: HostApp, real_kube_api: Any, ide_namespace: str
) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    body = {
        "name": "real-crash",
        "image": preset_image("code-server"),
        "command": ["sh", "-c", "echo about to exit; exit 3"],
    }
    name = launch(ide_app, body)
    try:
        detail = wait_phase(ide_app, name, "Failed", 120)
        status = detail["status"]
        assert status["reason"] == "CrashLoopBackOff", status
        assert "last exit code 3" in status["message"], status["message"]
        conditions = {c["type"]: c for c in detail["conditions"]}
        assert conditions["ImagePulled"]["status"] == "True", conditions
        assert conditions["ContainersStarted"]["reason"] == "CrashLoopBackOff", conditions
        seconds = delete_and_wait_gone(ide_app, core, ide_namespace, name)
        assert seconds < DELETE_SECONDS_MAX, f"deleting took {seconds:.1f}s"
    finally:
        ide_app.request("DELETE", f"/api/servers/{name}")
