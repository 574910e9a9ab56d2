"""Idle culling of a real code-server on the real node.

A Host App of its own (its own namespace, so it holds that namespace's operator Lease and
culls there; a check every 2 s) launches the code-server preset with
``spec.idleTimeoutSeconds: 30``. Then:

* busy: a WebSocket to the real code-server through the proxy (``/proxy/server/<id>/healthz``,
  code-server's own WebSocket endpoint, which answers every message) carries a message
  every 3 s for 75 s, more than twice the timeout: the workspace keeps running;
* idle: the socket closes and nothing else is sent. The workspace is stopped (never
  deleted) no sooner than the timeout after the last message and within the timeout plus
  the two minutes code-server's own heartbeat may lag (it beats once a minute while any
  connection is open): its pod goes away, the Workspace says ``Idle``, an ``Idle`` Event;
* start: ``POST /api/servers/<id>/start`` brings it back to Running with the file written
  before the cull still in its home volume, and with a full timeout ahead of it.

The Workspace's conditions and phase (``Stopped``, reason ``Idle``) come from the lifecycle
operator (spec.stopped); this test is the culler's side of that contract.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from guildnet.operator import constants as C
from guildnet.proxy import wsframes
from guildnet.workspaces.idle import parse_time
from tests.harness.hostapp import HostApp
from tests.integration.conftest import temporary_namespace
from tests.realnode.helpers import (
    launch,
    pod_exec,
    preset_image,
    running_pod,
    wait_for,
    wait_phase,
    workspace_pods,
)

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

TIMEOUT = 30
HEARTBEAT_LAG = 120  # code-server's heart beats once a minute; our pooled connections idle 60 s
FILE = "/home/coder/culled-but-kept.txt"


@pytest.fixture(scope="module")
def idle_ns(
    ide_cluster: Any, real_kube_api: Any, _real_deleted_namespaces: list[str]
) -> Iterator[str]:
    name = f"real-idle-{uuid.uuid4().hex[:6]}"
    with temporary_namespace(real_kube_api, _real_deleted_namespaces, name) as n:
        yield n


@pytest.fixture(scope="module")
def idle_app(
    real_kubeconfig: str, idle_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostApp]:
    workdir: Path = tmp_path_factory.mktemp("idle-hostapp")
    app = HostApp(
        workdir,
        {
            "KUBECONFIG": real_kubeconfig,
            "K8S_NAMESPACE": idle_ns,
            "WORKSPACE_IDLE_CHECK_INTERVAL": "2",
        },
        name="idle-hostapp",
    )
    with app.running():
        yield app


class WebSocket:
    """A WebSocket through the Host App (TLS, masked client frames), as a browser opens one."""

    def __init__(self, app: HostApp, path: str) -> None:
        raw = socket.create_connection(("127.0.0.1", app.port), timeout=15)
        self.sock = app.ctx.wrap_socket(raw, server_hostname="localhost")
        key = wsframes.new_key().decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n"
            f"Origin: https://127.0.0.1:{app.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, self.buf
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def ask(self, text: str) -> dict[str, Any]:
        """Send a text message; the next text message back, decoded."""
        self.sock.sendall(wsframes.encode_frame(text.encode(), wsframes.OP_TEXT))
        while True:
            frame = self._frame()
            if frame is not None:
                return json.loads(frame)  # type: ignore[no-any-return]
            self.buf += self.sock.recv(65536)

    def _frame(self) -> bytes | None:
        b = self.buf
        if len(b) < 2:
            return None
        n, at = b[1] & 0x7F, 2
        if n == 126:
            n, at = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(b[2:10], "big"), 10
        if len(b) < at + n:
            return None
        self.buf = b[at + n :]
        if b[0] & 0x0F != wsframes.OP_TEXT:
            return self._frame() if self.buf else None
        return b[at : at + n]

    def close(self) -> None:
        self.sock.close()


def spec_of(custom: Any, ns: str, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(C.GROUP, C.VERSION, ns, C.PLURAL, name)
    return obj  # type: ignore[no-any-return]


def test_code_server_is_culled_when_idle_not_while_busy(
    idle_app: HostApp, idle_ns: str, real_kube_api: Any
) -> None:
    core = k8s_client.CoreV1Api(real_kube_api)
    custom = k8s_client.CustomObjectsApi(real_kube_api)
    name = launch(
        idle_app,
        {"image": preset_image("code-server"), "name": "idle-cs", "idleTimeoutSeconds": TIMEOUT},
    )
    wait_phase(idle_app, name, "Running", 180)
    pod = running_pod(core, idle_ns, name)
    pod_exec(core, idle_ns, pod.metadata.name, ["sh", "-c", f"echo kept > {FILE}"])

    # Busy: a message every 3 s through the proxy to code-server's own WebSocket.
    sock = WebSocket(idle_app, f"/proxy/server/{name}/healthz")
    started = time.monotonic()
    answers = 0
    last_message = started
    while time.monotonic() - started < 2.5 * TIMEOUT:
        answer = sock.ask("ping?")
        last_message = time.monotonic()
        assert answer["event"] == "health", answer
        answers += 1
        assert not spec_of(custom, idle_ns, name)["spec"].get("stopped"), "culled while busy"
        time.sleep(3)
    status, detail = idle_app.json("GET", f"/api/servers/{name}")
    assert status == 200 and detail["phase"] == "Running"
    idle = detail["idle"]
    assert idle["timeoutSeconds"] == TIMEOUT
    stops_at = parse_time(idle["stopsAt"])
    assert stops_at is not None and stops_at > time.time() + TIMEOUT - 10, idle

    # Idle: nothing crosses the proxy any more.
    sock.close()
    wait_for(
        "the idle workspace to be stopped",
        lambda: spec_of(custom, idle_ns, name)["spec"].get("stopped"),
        TIMEOUT + HEARTBEAT_LAG + 30,
        every=1,
    )
    took = time.monotonic() - last_message
    assert took >= TIMEOUT - 1, f"stopped {took:.0f}s after the last message (timeout {TIMEOUT})"
    assert answers >= 20
    print(
        f"culled {took:.1f}s after the last message (timeout {TIMEOUT}s, busy for {answers} x 3s)"
    )
    ws = spec_of(custom, idle_ns, name)
    assert ws["metadata"]["annotations"]["guildnet.io/stop-reason"].startswith("Idle: ")
    wait_for("its pod to go", lambda: not workspace_pods(core, idle_ns, name), 90)
    events = core.list_namespaced_event(
        idle_ns, field_selector=f"involvedObject.kind=Workspace,involvedObject.name={name}"
    ).items
    assert any(e.reason == "Idle" for e in events), [e.reason for e in events]
    assert f"stopped idle workspace default/{name}" in idle_app.output()
    status, _ = idle_app.json("GET", f"/api/servers/{name}")
    assert status == 200, "culling stops, never deletes"

    # Start again: Running, the file still there, a full timeout ahead.
    status, reply = idle_app.json("POST", f"/api/servers/{name}/start")
    assert status in (200, 202), (status, reply)
    detail = wait_phase(idle_app, name, "Running", 180)
    pod = running_pod(core, idle_ns, name)
    assert pod_exec(core, idle_ns, pod.metadata.name, ["cat", FILE]).strip() == "kept"
    stops_at = parse_time((detail.get("idle") or {}).get("stopsAt"))
    assert stops_at is not None and stops_at > time.time() + TIMEOUT / 2, detail.get("idle")
