"""Idle culling end to end on the kwok tier: a real ``twistd guildnet``, real proxy traffic.

One Host App process (embedded operator, so it holds the Lease and culls) with culling off
by default (``WORKSPACE_IDLE_TIMEOUT=0``) and a check every second. Three generic
workspaces reach Running through kwok; each one's ``AGENT_HOST`` names a real test backend
(``tests.backend``, a subprocess) inside the test network namespace, which is where the
proxy sends their traffic (the Service's ClusterIP is not routed on this tier):

* ``quiet`` (``spec.idleTimeoutSeconds: 8``, never used) is stopped: ``spec.stopped``,
  the ``guildnet.io/stop-reason`` ``Idle: ...``, an ``Idle`` Event on the Workspace;
* ``busy`` (8 s too) carries a WebSocket through the proxy sending a frame every second:
  it is not stopped for twice its timeout, and its ``guildnet.io/last-activity`` is
  recorded; then the socket stays open but only pings cross it, and it is stopped;
* ``never`` (no override, so the knob's 0) is never stopped.

The API shows ``idle`` (timeout, idle since, stops at) for running workspaces.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from guildnet.operator import constants as C
from guildnet.proxy import wsframes
from guildnet.workspaces.idle import ANNOTATION_LAST_ACTIVITY, parse_time
from tests.harness.processes import set_pdeathsig
from tests.integration.hostproc import HostProc, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BACKEND = "198.18.0.61"  # local inside the test network namespace (kwok tier)
PORT = 8080
TIMEOUT = 8


@pytest.fixture(scope="module")
def backend() -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.backend", "--host", BACKEND, "--port", str(PORT)],
        preexec_fn=set_pdeathsig,
    )
    try:

        def up() -> bool:
            with socket.create_connection((BACKEND, PORT), timeout=1):
                return True

        wait_for("the backend", up)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def app(
    kubeconfig: str, ns: str, backend: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProc]:
    work = tmp_path_factory.mktemp("idle-hostapp")
    host = HostProc(
        work,
        {
            "KUBECONFIG": kubeconfig,
            "K8S_NAMESPACE": ns,
            "HOSTAPP_EMBED_OPERATOR": "true",
            "WORKSPACE_IDLE_TIMEOUT": "0",
            "WORKSPACE_IDLE_CHECK_INTERVAL": "1",
            "NO_PROXY": "*",
        },
    )
    with host.running():
        yield host


class WebSocket:
    """A browser-like WebSocket through the Host App's proxy (TLS, masked frames)."""

    def __init__(self, app: HostProc, path: str) -> None:
        raw = socket.create_connection(("127.0.0.1", app.port), timeout=10)
        self.sock = app.ctx.wrap_socket(raw, server_hostname="localhost")
        key = wsframes.new_key()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, payload: bytes, opcode: int = wsframes.OP_TEXT) -> None:
        self.sock.sendall(wsframes.encode_frame(payload, opcode))
        self.sock.settimeout(5)
        with contextlib.suppress(TimeoutError, ssl.SSLError):
            self.sock.recv(65536)  # drain the echo (or pong) so nothing backs up

    def close(self) -> None:
        self.sock.close()


def workspace(custom: Any, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        C.GROUP, C.VERSION, ns, C.PLURAL, name
    )
    return obj


def stopped(custom: Any, ns: str, name: str) -> bool:
    return bool((workspace(custom, ns, name).get("spec") or {}).get("stopped"))


def launch(app: HostProc, name: str, timeout: int | None) -> None:
    spec: dict[str, Any] = {
        "image": "example/app:1",
        "name": name,
        "ports": [{"containerPort": PORT}],
        "env": [{"name": "AGENT_HOST", "value": f"{BACKEND}:{PORT}"}],
    }
    if timeout is not None:
        spec["idleTimeoutSeconds"] = timeout
    status, body, _ = app.request("POST", "/api/jobs", spec)
    assert status == 202, body


def running(app: HostProc, name: str) -> Any:
    item = next((s for s in app.get("/api/servers") if s["id"] == name), None)
    return item if item and item["phase"] == "Running" else None


def test_idle_workspaces_are_stopped_busy_ones_are_not(
    app: HostProc, ns: str, kube_api: Any
) -> None:
    custom = k8s_client.CustomObjectsApi(kube_api)
    launch(app, "busy", TIMEOUT)
    launch(app, "quiet", TIMEOUT)
    launch(app, "never", None)
    for name in ("busy", "quiet", "never"):
        wait_for(f"{name} Running", functools.partial(running, app, name), timeout=90)

    # The busy workspace's IDE: a WebSocket with a frame every second.
    sock = WebSocket(app, "/proxy/server/busy/ws")
    item = running(app, "busy")
    assert item["idle"]["timeoutSeconds"] == TIMEOUT and item["idle"]["stopsAt"]
    assert running(app, "never")["idle"]["stopsAt"] is None  # culling off for it
    started = time.monotonic()
    while time.monotonic() - started < 2 * TIMEOUT + 4:
        sock.send(b"typing")
        time.sleep(1)
        if stopped(custom, ns, "quiet"):
            break
    wait_for("quiet to be stopped", lambda: stopped(custom, ns, "quiet"), timeout=2 * TIMEOUT)
    while time.monotonic() - started < 2 * TIMEOUT + 4:
        sock.send(b"typing")
        time.sleep(1)
    assert not stopped(custom, ns, "busy"), "a workspace with WebSocket traffic was culled"
    busy = workspace(custom, ns, "busy")
    recorded = parse_time(busy["metadata"]["annotations"][ANNOTATION_LAST_ACTIVITY])
    # Written at most every quarter of the timeout (2 s) while the socket was busy.
    assert recorded is not None and time.time() - recorded < TIMEOUT / 2 + 2, recorded

    quiet = workspace(custom, ns, "quiet")
    reason = quiet["metadata"]["annotations"]["guildnet.io/stop-reason"]
    assert reason.startswith("Idle: no activity for 8 s"), reason
    core = k8s_client.CoreV1Api(kube_api)

    def idle_event() -> Any:
        events = core.list_namespaced_event(
            ns, field_selector="involvedObject.kind=Workspace,involvedObject.name=quiet"
        ).items
        return [e for e in events if e.reason == "Idle"]

    (event,) = wait_for("the Idle Event", idle_event)
    assert event.involved_object.uid == quiet["metadata"]["uid"]
    assert event.message.startswith("Stopped: no activity")

    # Open but silent (only pings): idle.
    silent = time.monotonic()
    while not stopped(custom, ns, "busy"):
        assert time.monotonic() - silent < 3 * TIMEOUT, "an open but silent socket kept it"
        sock.send(b"", wsframes.OP_PING)
        time.sleep(1)
    assert time.monotonic() - silent >= TIMEOUT - 1
    sock.close()
    assert not stopped(custom, ns, "never")
    assert workspace(custom, ns, "never")["spec"].get("idleTimeoutSeconds") is None
    assert os.path.exists(app.log_path)
    assert "stopped idle workspace default/quiet" in Path(app.log_path).read_text()
