"""Workspace lifecycle end to end on the kwok tier: stop, start and restart.

A real ``twistd -n guildnet`` (one per module, fresh namespace) against the test cluster's
real kube-apiserver, kube-controller-manager and kwok: the API sets ``spec.stopped``, the
embedded operator scales the Deployment to zero and reports phase ``Stopped`` while the
Secret and Service stay; the proxy answers a stopped workspace with a page offering to
start it (HTML for browsers, JSON for API clients); start brings back the same password.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from guildnet.operator import constants as C
from tests.integration.conftest import temporary_namespace
from tests.integration.test_workspace_api import IMAGE, HostApp, phase_is, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def ns(kube_api: Any, _deleted_namespaces: list[str]) -> Iterator[str]:
    name = f"ws-life-{uuid.uuid4().hex[:6]}"
    with temporary_namespace(kube_api, _deleted_namespaces, name) as n:
        yield n


@pytest.fixture(scope="module")
def app(kubeconfig: str, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostApp]:
    work: Path = tmp_path_factory.mktemp("hostapp")
    host = HostApp(kubeconfig, ns, work)
    try:
        host.wait_ready()
        yield host
    finally:
        host.stop()
    log = host.log_path.read_text(errors="replace")
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 2000) : at + 4000]


def send(
    app: HostApp, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", app.port, context=app.ctx, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def condition(detail: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in detail["conditions"] if c["type"] == ctype), None)


def test_stop_start_keeps_secret_service_and_password(app: HostApp, kube_api: Any, ns: str) -> None:
    apps: Any = k8s_client.AppsV1Api(kube_api)
    core: Any = k8s_client.CoreV1Api(kube_api)
    status, body, _ = app.request("POST", "/api/jobs", {"image": IMAGE, "name": "ide-stop"})
    assert status == 202, body
    wait_for("ide-stop Running", lambda: phase_is(app, "ide-stop", "Running"))
    password = app.get("/api/servers/ide-stop/password")["password"]
    secret_uid = core.read_namespaced_secret(C.password_secret_name("ide-stop"), ns).metadata.uid
    service_uid = core.read_namespaced_service("ide-stop", ns).metadata.uid

    status, body, _ = app.request("POST", "/api/servers/ide-stop/stop")
    assert status == 200, body
    assert body["id"] == "ide-stop"
    stopped = wait_for("ide-stop Stopped", lambda: phase_is(app, "ide-stop", "Stopped"))
    assert stopped["message"].startswith("stopped since "), stopped
    assert "UserRequested" in stopped["message"]
    assert apps.read_namespaced_deployment("ide-stop", ns).spec.replicas == 0
    wait_for(
        "the pod to go",
        lambda: (
            not core.list_namespaced_pod(ns, label_selector=f"{C.LABEL_WORKSPACE}=ide-stop").items
        ),
    )
    detail = app.get("/api/servers/ide-stop")
    assert detail["spec"]["stopped"] is True and detail["readyReplicas"] == 0
    cond = condition(detail, "Stopped")
    assert cond is not None and cond["status"] == "True" and cond["reason"] == "UserRequested"
    ready = condition(detail, "Ready")
    assert ready is not None and ready["reason"] == "Stopped"
    # Secret and Service are the same objects as before the stop.
    assert core.read_namespaced_secret(C.password_secret_name("ide-stop"), ns).metadata.uid == (
        secret_uid
    )
    assert core.read_namespaced_service("ide-stop", ns).metadata.uid == service_uid
    # Idempotent.
    assert app.request("POST", "/api/servers/ide-stop/stop")[0] == 200

    # The proxy: JSON for API clients, a page with a start button for browsers.
    status, headers, raw = send(app, "GET", "/proxy/server/ide-stop/", {"accept": "*/*"})
    assert status == 503 and json.loads(raw)["error"] == "workspace_stopped"
    status, headers, raw = send(
        app, "GET", "/proxy/server/ide-stop/", {"accept": "text/html,application/xhtml+xml"}
    )
    page = raw.decode()
    assert status == 503 and headers["content-type"].startswith("text/html"), (status, page)
    assert 'action="/api/servers/ide-stop/start"' in page and "is stopped" in page
    assert "form-action 'self'" in headers["content-security-policy"]

    # The page's form post: refused from another site, a redirect back from this origin.
    form = {"content-type": "application/x-www-form-urlencoded"}
    status, _, raw = send(
        app, "POST", "/api/servers/ide-stop/start", {**form, "origin": "https://evil.example"}
    )
    assert status == 403 and json.loads(raw)["error"] == "cross_origin"
    status, _, raw = send(app, "POST", "/api/servers/ide-stop/start", form)
    assert status == 403, raw  # a form post must say where it comes from
    assert app.get("/api/servers/ide-stop")["spec"].get("stopped") is True
    own = f"https://127.0.0.1:{app.port}"
    status, headers, _ = send(
        app, "POST", "/api/servers/ide-stop/start", {**form, "origin": own}, b""
    )
    assert status == 303 and headers["location"] == "/proxy/server/ide-stop/"

    wait_for("ide-stop Running again", lambda: phase_is(app, "ide-stop", "Running"))
    detail = app.get("/api/servers/ide-stop")
    assert "stopped" not in detail["spec"] and condition(detail, "Stopped") is None
    assert apps.read_namespaced_deployment("ide-stop", ns).spec.replicas == 1
    assert app.get("/api/servers/ide-stop/password")["password"] == password
    ws: Any = k8s_client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        C.GROUP, C.VERSION, ns, C.PLURAL, "ide-stop"
    )
    assert C.ANNOTATION_STOP_REASON not in (ws["metadata"].get("annotations") or {})


def test_lifecycle_requests_name_the_problem(app: HostApp) -> None:
    for action in ("stop", "start"):
        assert app.request("POST", f"/api/servers/absent/{action}")[0] == 404
        status, body, _ = app.request("POST", f"/api/servers/Bad_Id/{action}")
        assert status == 400 and body["field"] == "id"
        status, body, _ = app.request("POST", f"/api/servers/absent/{action}", raw=b"{x")
        assert status == 400 and body["error"] == "invalid_json"


def test_stop_reason_annotation_reaches_the_condition(app: HostApp, kube_api: Any, ns: str) -> None:
    """What the idle culler does: spec.stopped plus a reason in the annotation."""
    status, body, _ = app.request(
        "POST", "/api/jobs", {"image": "nginx:1.27", "name": "web-idle", "stopped": True}
    )
    assert status == 202, body
    custom: Any = k8s_client.CustomObjectsApi(kube_api)
    custom.patch_namespaced_custom_object(
        C.GROUP,
        C.VERSION,
        ns,
        C.PLURAL,
        "web-idle",
        {"metadata": {"annotations": {C.ANNOTATION_STOP_REASON: "Idle: no traffic for 30m"}}},
    )

    def idle() -> Any:
        cond = condition(app.get("/api/servers/web-idle"), "Stopped")
        return cond if cond and cond["reason"] == "Idle" else None

    cond = wait_for("the Idle condition", idle)
    assert cond["message"] == "no traffic for 30m"
    assert phase_is(app, "web-idle", "Stopped")
