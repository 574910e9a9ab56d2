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
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from guildnet.operator import constants as C
from tests.integration.hostproc import HostProc, cluster_env, wait_for
from tests.integration.test_workspace_api import IMAGE, phase_is

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def app(kubeconfig: str, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProc]:
    host = HostProc(tmp_path_factory.mktemp("hostapp"), cluster_env(kubeconfig, ns))
    with host.running():
        yield host


def send(
    app: HostProc, method: str, path: str, headers: dict[str, str], body: bytes = b""
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


def test_stop_start_keeps_secret_service_and_password(
    app: HostProc, kube_api: Any, ns: str
) -> None:
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

    def all_stopped() -> Any:
        item = phase_is(app, "ide-stop", "Stopped")
        # "stopping: waiting for 1 pod(s) to exit" first, then "stopped since ...".
        return item if item and item["message"].startswith("stopped since ") else None

    stopped = wait_for("ide-stop Stopped", all_stopped)
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
    refused = {"error": "forbidden", "reason": "cross_origin"}
    assert status == 403 and json.loads(raw).items() >= refused.items(), raw
    # A form post must say where it comes from (auth.csrf's form rule).
    status, _, raw = send(app, "POST", "/api/servers/ide-stop/start", form)
    assert status == 403 and json.loads(raw).items() >= refused.items(), raw
    assert "Origin" in json.loads(raw)["message"], raw
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


def test_lifecycle_requests_name_the_problem(app: HostProc) -> None:
    for action in ("stop", "start"):
        assert app.request("POST", f"/api/servers/absent/{action}")[0] == 404
        status, body, _ = app.request("POST", f"/api/servers/Bad_Id/{action}")
        assert status == 400 and body["field"] == "id"
        status, body, _ = app.request("POST", f"/api/servers/absent/{action}", raw=b"{x")
        assert status == 400 and body["error"] == "invalid_json"


def test_stop_reason_annotation_reaches_the_condition(
    app: HostProc, kube_api: Any, ns: str
) -> None:
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


def claim_of(core: Any, ns: str, name: str) -> Any:
    try:
        return core.read_namespaced_persistent_volume_claim(C.home_claim_name(name), ns)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def test_home_volume_is_owned_bound_mounted_and_kept_on_request(
    app: HostProc, kube_api: Any, ns: str
) -> None:
    apps: Any = k8s_client.AppsV1Api(kube_api)
    core: Any = k8s_client.CoreV1Api(kube_api)
    for name in ("vol-a", "vol-b"):
        status, body, _ = app.request("POST", "/api/jobs", {"image": IMAGE, "name": name})
        assert status == 202, body
    for name in ("vol-a", "vol-b"):
        wait_for(f"{name} Running", lambda n=name: phase_is(app, n, "Running"))  # type: ignore[misc]
        claim = claim_of(core, ns, name)
        assert claim.status.phase == "Bound"
        assert claim.spec.resources.requests["storage"] == "10Gi"
        assert claim.spec.storage_class_name == "guildnet-hostpath"  # the default class
        (owner,) = claim.metadata.owner_references
        assert (owner.kind, owner.name, owner.controller) == ("Workspace", name, True)
        assert claim.metadata.labels[C.LABEL_WORKSPACE] == name
        pod_spec = apps.read_namespaced_deployment(name, ns).spec.template.spec
        (container,) = pod_spec.containers
        mounts = {m.name: m.mount_path for m in container.volume_mounts}
        assert mounts["home"] == "/home/coder"
        volumes = {v.name: v for v in pod_spec.volumes}
        assert volumes["home"].persistent_volume_claim.claim_name == f"{name}-home"
        assert pod_spec.security_context.fs_group == 1000
        # Per-kind defaults: an IDE is Burstable, never BestEffort.
        assert container.resources.requests == {"cpu": "250m", "memory": "512Mi"}
        assert container.resources.limits == {"cpu": "2", "memory": "2Gi"}

    status, body, _ = app.request("DELETE", "/api/servers/vol-a?keep_volume=true")
    assert status == 200 and body == {"deleted": "vol-a", "keptVolume": "vol-a-home"}, body
    status, body, _ = app.request("DELETE", "/api/servers/vol-b")
    assert status == 200 and body == {"deleted": "vol-b"}, body
    wait_for("vol-b's claim to be collected", lambda: claim_of(core, ns, "vol-b") is None)
    wait_for("the workspaces to go", lambda: not phase_is(app, "vol-a", "Running"))
    kept = claim_of(core, ns, "vol-a")
    assert kept is not None and not kept.metadata.owner_references
    assert kept.metadata.labels[C.LABEL_KEPT] == "true" and kept.status.phase == "Bound"
    assert app.request("DELETE", "/api/servers/vol-a?keep_volume=maybe")[1]["field"] == (
        "keep_volume"
    )
    # A new workspace of the same name adopts the kept volume (its files come back).
    status, body, _ = app.request("POST", "/api/jobs", {"image": IMAGE, "name": "vol-a"})
    assert status == 202, body
    wait_for("vol-a Running again", lambda: phase_is(app, "vol-a", "Running"))
    adopted = claim_of(core, ns, "vol-a")
    assert adopted.metadata.uid == kept.metadata.uid
    assert [o.name for o in adopted.metadata.owner_references] == ["vol-a"]


def test_storage_none_explicit_best_effort_and_pending_volume(
    app: HostProc, kube_api: Any, ns: str
) -> None:
    apps: Any = k8s_client.AppsV1Api(kube_api)
    core: Any = k8s_client.CoreV1Api(kube_api)
    status, body, _ = app.request(
        "POST",
        "/api/jobs",
        {"image": "nginx:1.27", "name": "eph", "storage": "none", "resources": {}},
    )
    assert status == 202, body
    wait_for("eph Running", lambda: phase_is(app, "eph", "Running"))
    assert claim_of(core, ns, "eph") is None
    (container,) = apps.read_namespaced_deployment("eph", ns).spec.template.spec.containers
    assert [m.mount_path for m in container.volume_mounts] == ["/tmp"]
    assert not container.resources.requests and not container.resources.limits
    assert app.get("/api/servers/eph")["spec"]["storage"] == {"ephemeral": True}

    # A class nobody provisions: the status says why the workspace waits, it is not stuck
    # silently (and not Failed: a provisioner may still come).
    status, body, _ = app.request(
        "POST",
        "/api/jobs",
        {"image": "nginx:1.27", "name": "pending", "storage": {"storageClassName": "absent"}},
    )
    assert status == 202, body

    def volume_pending() -> Any:
        item = phase_is(app, "pending", "Starting")
        return item if item and item["message"].startswith("VolumePending") else None

    item = wait_for("the VolumePending message", volume_pending)
    assert "pending-home" in item["message"] and "'absent'" in item["message"]
    status, body, _ = app.request("POST", "/api/jobs", {"image": IMAGE, "storage": "lots"})
    assert status == 400 and body["field"] == "storage"
    status, body, _ = app.request(
        "POST", "/api/jobs", {"image": IMAGE, "storage": {"mountPath": "/a/../etc"}}
    )
    assert status == 400 and body["field"] == "storage.mountPath"


def test_restart_rolls_the_pod_and_keeps_the_volume(app: HostProc, kube_api: Any, ns: str) -> None:
    core: Any = k8s_client.CoreV1Api(kube_api)
    status, body, _ = app.request("POST", "/api/jobs", {"image": "nginx:1.27", "name": "rolly"})
    assert status == 202, body
    wait_for("rolly Running", lambda: phase_is(app, "rolly", "Running"))
    (before,) = app.get("/api/servers/rolly")["pods"]
    claim_uid = claim_of(core, ns, "rolly").metadata.uid
    status, body, _ = app.request("POST", "/api/servers/rolly/restart")
    assert status == 200 and body["id"] == "rolly", body

    def new_pod_running() -> Any:
        pods = app.get("/api/servers/rolly")["pods"]
        fresh = [p for p in pods if p["name"] != before["name"] and p["ready"]]
        return fresh if fresh and phase_is(app, "rolly", "Running") else None

    wait_for("a new pod", new_pod_running)
    assert claim_of(core, ns, "rolly").metadata.uid == claim_uid
    assert app.request("POST", "/api/servers/absent/restart")[0] == 404


def test_patch_changes_roll_and_a_quota_names_itself(app: HostProc, kube_api: Any, ns: str) -> None:
    apps: Any = k8s_client.AppsV1Api(kube_api)
    core: Any = k8s_client.CoreV1Api(kube_api)
    status, body, _ = app.request("POST", "/api/jobs", {"image": "nginx:1.27", "name": "chg"})
    assert status == 202, body
    wait_for("chg Running", lambda: phase_is(app, "chg", "Running"))
    claim_uid = claim_of(core, ns, "chg").metadata.uid

    status, body, _ = app.request(
        "PATCH", "/api/servers/chg", {"env": [{"name": "MODE", "value": "two"}], "args": ["-x"]}
    )
    assert status == 200, body
    spec = app.get("/api/servers/chg")["spec"]
    assert spec["env"] == [{"name": "MODE", "value": "two"}] and spec["args"] == ["-x"]
    assert spec["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}  # kept

    def rolled() -> bool:
        dep = apps.read_namespaced_deployment("chg", ns)
        (c,) = dep.spec.template.spec.containers
        env = {e.name: e.value for e in c.env or []}
        return env.get("MODE") == "two" and c.args == ["-x"]

    wait_for("the Deployment to roll", rolled)
    wait_for("chg Running after the change", lambda: phase_is(app, "chg", "Running"))
    assert claim_of(core, ns, "chg").metadata.uid == claim_uid

    for change, field in (
        ({"storage": {"size": "1Gi"}}, "storage"),
        ({"stopped": True}, "stopped"),
        ({"colour": "red"}, "colour"),
        ({"env": [{"value": "x"}]}, "env[0].name"),
        ({"image": None}, "image"),
    ):
        status, body, _ = app.request("PATCH", "/api/servers/chg", change)
        assert status == 400 and body["field"] == field, (change, body)
    assert app.request("PATCH", "/api/servers/absent", {"args": []})[0] == 404

    # A real ResourceQuota (admission in kube-apiserver, usage from kcm's quota controller).
    core.create_namespaced_resource_quota(
        ns,
        {"metadata": {"name": "team-cpu"}, "spec": {"hard": {"requests.cpu": "1"}}},
    )
    wait_for(
        "the quota's usage",
        lambda: (core.read_namespaced_resource_quota("team-cpu", ns).status.used or {}).get(
            "requests.cpu"
        ),
    )
    status, body, _ = app.request(
        "PATCH",
        "/api/servers/chg",
        {"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "4"}}},
    )
    assert status == 200, body

    def failed_on_quota() -> Any:
        item = phase_is(app, "chg", "Failed")
        return item if item and "team-cpu" in item["message"] else None

    item = wait_for("a Failed status naming the quota", failed_on_quota, timeout=90)
    detail = app.get("/api/servers/chg")
    assert detail["status"]["reason"] == "QuotaExceeded", detail["status"]
    assert "exceeded quota: team-cpu" in item["message"]
    # Undo: null means the defaults again (50m: within the quota), so it runs again with
    # the same volume.
    status, body, _ = app.request("PATCH", "/api/servers/chg", {"resources": None})
    assert status == 200, body
    assert app.get("/api/servers/chg")["spec"]["resources"]["requests"]["cpu"] == "50m"
    wait_for("chg Running within the quota", lambda: phase_is(app, "chg", "Running"), timeout=90)
    assert claim_of(core, ns, "chg").metadata.uid == claim_uid
    core.delete_namespaced_resource_quota("team-cpu", ns)
