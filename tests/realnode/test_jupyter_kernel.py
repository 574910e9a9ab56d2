"""A real Jupyter kernel runs code through the proxy's WebSocket, without a browser.

The browser flow (test_real_ide.py) shows JupyterLab end to end; this one pins down the
part GuildNet is responsible for: the kernel protocol over the proxied WebSocket (token
auth, the ``channels`` upgrade, messages both ways), so a failure of the browser flow
can be told apart from one of the proxy.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import uuid
from typing import Any

import websocket
from kubernetes import client as k8s_client

from tests.harness.hostapp import HostApp
from tests.realnode.helpers import preset_image
from tests.realnode.test_real_ide import _pod_logs

NAME = "kernel-lab"


def _token(core: Any) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = re.search(r"token=([0-9a-f]{20,})", _pod_logs(core, NAME))
        if found:
            return found.group(1)
        time.sleep(1)
    raise AssertionError(f"no token in the Jupyter log:\n{_pod_logs(core, NAME)[-3000:]}")


def _execute_request(code: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    message = {
        "header": {
            "msg_id": msg_id,
            "username": "guildnet-test",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
        },
        "channel": "shell",
    }
    return msg_id, json.dumps(message)


def test_kernel_executes_through_the_proxy_websocket(ide_app: HostApp, real_kube_api: Any) -> None:
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    status, _, body = ide_app.request(
        "POST", "/api/jobs", {"name": NAME, "image": preset_image("jupyter"), "storage": "none"}
    )
    assert status == 202, body
    try:
        token = _token(core)
        base = f"/proxy/server/{NAME}"
        auth = {"Authorization": f"token {token}"}
        deadline = time.monotonic() + 60
        while True:
            status, _, body = ide_app.request(
                "POST", f"{base}/api/kernels", {"name": "python3"}, headers=auth
            )
            if status == 201 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert status == 201, body
        kernel = json.loads(body)["id"]
        url = ide_app.url.replace("https://", "wss://", 1) + f"{base}/api/kernels/{kernel}/channels"
        ws = websocket.create_connection(
            url,
            header=[f"Authorization: token {token}"],
            sslopt={"cert_reqs": ssl.CERT_NONE},  # the Host App's self-signed test certificate
            timeout=60,
        )
        try:
            msg_id, request = _execute_request("6 * 7")
            ws.send(request)
            result = reply = None
            end = time.monotonic() + 60
            while reply is None and time.monotonic() < end:
                m = json.loads(ws.recv())
                if (m.get("parent_header") or {}).get("msg_id") != msg_id:
                    continue
                kind = m["header"]["msg_type"]
                if kind == "execute_result":
                    result = m["content"]["data"]["text/plain"]
                elif kind == "execute_reply":
                    reply = m["content"]
        finally:
            ws.close()
        assert reply is not None and reply["status"] == "ok", reply
        assert result == "42"
    finally:
        ide_app.request("DELETE", f"/api/servers/{NAME}")
