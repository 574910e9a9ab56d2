"""The workspace API end to end: a real ``twistd -n guildnet`` against the test cluster.

One Host App process per module (its namespace is fresh), driven over HTTPS like a browser
would: launch, list, inspect, logs (kwok ``Logs`` objects back ``pods/log``), the two SSE
streams, delete, stop-all and the per-cluster variants. The embedded operator and kwok
bring workspaces to Running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from guildnet.operator import constants as C
from tests.integration.hostproc import SSE, HostProc, cluster_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

IMAGE = "codercom/code-server:4.139.1"  # never pulled: kwok runs no containers


@pytest.fixture(scope="module")
def app(kubeconfig: str, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProc]:
    host = HostProc(tmp_path_factory.mktemp("hostapp"), cluster_env(kubeconfig, ns))
    with host.running():
        yield host


@pytest.fixture(scope="module")
def custom(kube_api: Any) -> Any:
    return k8s_client.CustomObjectsApi(kube_api)


def phase_is(app: HostProc, name: str, phase: str, prefix: str = "") -> Any:
    for item in app.get(f"/api{prefix}/servers"):
        if item["id"] == name and item["phase"] == phase:
            return item
    return None


def cri(text: str, stamp: str = "2026-01-01T00:00:00Z") -> str:
    return f"{stamp} stdout F {text}\n"


def add_kwok_logs(custom: Any, ns: str, pod: str, path: Path) -> None:
    custom.create_namespaced_custom_object(
        "kwok.x-k8s.io",
        "v1alpha1",
        ns,
        "logs",
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": pod, "namespace": ns},
            "spec": {
                "logs": [{"containers": [C.CONTAINER_NAME], "logsFile": str(path), "follow": True}]
            },
        },
    )


# --- tests (module order matters: they share one Host App) -------------------------------


def test_images_and_defaults(app: HostProc) -> None:
    images = app.get("/api/images")["images"]
    kinds = {i["kind"] for i in images}
    assert {"code-server", "jupyter"} <= kinds and all(i["description"] for i in images)
    d = app.get("/api/image-defaults?image=quay.io/jupyter/base-notebook:lab-4.6.6")
    assert d["ports"][0]["containerPort"] == 8888 and d["kind"] == "jupyter"
    for query in ("", "?image=", "?image=has%20space"):
        status, body, _ = app.request("GET", f"/api/image-defaults{query}")
        assert status == 400 and body["field"] == "image", body


def test_bad_launch_requests_name_the_field(app: HostProc) -> None:
    cases = [
        ({}, "image"),
        ({"image": IMAGE, "ports": [{"containerPort": 70000}]}, "ports[0].containerPort"),
        ({"image": IMAGE, "name": "Not_A_Name"}, "name"),
        ({"image": IMAGE, "env": [{"value": "x"}]}, "env[0].name"),
        ({"image": IMAGE, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        status, answer, _ = app.request("POST", "/api/jobs", body)
        assert status == 400, (body, answer)
        assert answer["field"] == field and answer["error"] == "invalid_field"
        assert answer["request_id"]
    status, answer, _ = app.request("POST", "/api/jobs", raw=b"{not json")
    assert status == 400 and answer["error"] == "invalid_json"
    assert app.request("GET", "/api/servers/Bad_Id")[1]["field"] == "id"
    assert app.request("GET", "/api/servers/absent")[0] == 404
    assert app.request("DELETE", "/api/servers/absent")[0] == 404
    assert app.request("GET", "/api/servers/absent/password")[0] == 404


def test_launch_list_detail_password(app: HostProc, ns: str) -> None:
    spec = {"image": IMAGE, "name": "ide-one", "env": [{"name": "GREETING", "value": "hi"}]}
    status, body, resp = app.request("POST", "/api/jobs", spec)
    assert status == 202, body
    assert body == {"id": "ide-one", "url": "/proxy/server/ide-one/"}
    assert resp.getheader("location") == "/api/servers/ide-one"
    # Read-your-writes: the cache already has it.
    assert any(s["id"] == "ide-one" for s in app.get("/api/servers"))
    status, body, _ = app.request("POST", "/api/jobs", spec)
    assert status == 409 and body["field"] == "name"

    item = wait_for("ide-one Running", lambda: phase_is(app, "ide-one", "Running"))
    assert item["ready"] is True and item["readyReplicas"] == 1
    assert item["url"] == "/proxy/server/ide-one/" and item["image"] == IMAGE

    detail = app.get("/api/servers/ide-one")
    assert detail["spec"]["env"] == [{"name": "GREETING", "value": "hi"}]
    assert [c["type"] for c in detail["conditions"]] == [
        "Accepted",
        "Deployed",
        "PodScheduled",
        "ImagePulled",
        "ContainersStarted",
        "Ready",
    ]
    assert all(c["status"] == "True" for c in detail["conditions"])
    assert detail["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert detail["serviceDNS"] == f"ide-one.{ns}.svc.cluster.local"
    assert detail["proxyUrl"] == "/proxy/server/ide-one/"
    (pod,) = detail["pods"]
    assert pod["ready"] and pod["containers"][0]["name"] == C.CONTAINER_NAME
    assert any(e["reason"] == "Scheduled" and e["pod"] == pod["name"] for e in detail["events"])
    assert detail["hasPassword"] is True

    password = wait_for(
        "the password", lambda: app.request("GET", "/api/servers/ide-one/password")[1]
    )["password"]
    assert len(password) >= 16
    for path in ("/api/servers", "/api/servers/ide-one"):
        assert password not in json.dumps(app.get(path))
    assert password not in app.log_path.read_text(errors="replace")

    # A generic image has no password.
    status, body, _ = app.request("POST", "/api/jobs", {"image": "nginx:1.27", "name": "web-one"})
    assert status == 202
    status, body, _ = app.request("GET", "/api/servers/web-one/password")
    assert status == 404 and body["error"] == "no_password"


def test_logs_and_live_log_stream(app: HostProc, ns: str, custom: Any, tmp_path: Path) -> None:
    pod = app.get("/api/servers/ide-one")["pods"][0]["name"]
    log_file = tmp_path / "ide.log"
    log_file.write_text(cri("one") + cri("two") + cri("three", "2026-01-01T00:00:01Z"))
    add_kwok_logs(custom, ns, pod, log_file)

    def text(query: str) -> Any:
        status, body, _ = app.request("GET", f"/api/servers/ide-one/logs{query}")
        return body if status == 200 and body else None

    assert wait_for("logs", lambda: text("?tail=2")) == "two\nthree\n"
    as_json = json.loads(json.dumps(text("?format=json")))
    assert as_json["pods"] == [{"pod": pod, "lines": ["one", "two", "three"], "error": None}]
    for query, field in (
        ("?tail=0", "tail"),
        ("?tail=x", "tail"),
        ("?previous=perhaps", "previous"),
    ):
        status, body, _ = app.request("GET", f"/api/servers/ide-one/logs{query}")
        assert status == 400 and body["field"] == field
    assert app.request("GET", "/sse/logs")[1]["field"] == "server"
    assert app.request("GET", "/sse/logs?server=absent")[0] == 404

    stream = SSE(app, "/sse/logs?server=ide-one")
    try:
        assert stream.status == 200
        assert stream.resp.getheader("content-type") == "text/event-stream; charset=utf-8"
        assert stream.resp.getheader("cache-control", "").startswith("no-cache")
        assert stream.resp.getheader("x-accel-buffering") == "no"
        pods_event = stream.next()
        assert pods_event["event"] == "pods" and pods_event["data"]["pods"] == [pod]
        lines = [stream.next() for _ in range(3)]
        assert [e["data"]["line"] for e in lines] == ["one", "two", "three"]
        assert all(e["data"]["pod"] == pod and e["id"] for e in lines)
        after_two = lines[1]["id"]
        with log_file.open("a") as f:
            f.write(cri("four", "2026-01-01T00:00:02.5Z"))
        four = stream.next()
        assert four["data"]["line"] == "four"
        assert four["data"]["time"].startswith("2026-01-01T00:00:02.5")
        # Idle streams get a heartbeat comment every 15 s.
        with pytest.raises(TimeoutError):
            stream.next(timeout=16)
        assert "heartbeat" in stream.comments
    finally:
        stream.close()

    # A reconnect with Last-Event-ID resumes after "two": no replay, nothing lost.
    again = SSE(app, "/sse/logs?server=ide-one", headers={"Last-Event-ID": after_two})
    try:
        assert again.next()["event"] == "pods"
        assert [again.next()["data"]["line"] for _ in range(2)] == ["three", "four"]
    finally:
        again.close()

    # Closing a stream frees its thread: more sequential streams than the per-cluster
    # follow limit all get served.
    for _ in range(12):
        s = SSE(app, "/sse/logs?server=ide-one&tail=1")
        try:
            assert s.status == 200
            assert s.next()["event"] == "pods"
            assert s.next()["data"]["line"] == "four"
        finally:
            s.close()


def test_server_stream_shows_launch_progress(app: HostProc) -> None:
    stream = SSE(app, "/sse/servers")
    try:
        snapshot = stream.next()
        assert snapshot["event"] == "snapshot"
        assert "ide-one" in {s["id"] for s in snapshot["data"]["servers"]}
        status, _, _ = app.request("POST", "/api/jobs", {"image": IMAGE, "name": "ide-two"})
        assert status == 202
        created, _ = stream.until(
            lambda e: e["event"] == "created" and e["data"]["id"] == "ide-two"
        )
        assert created["data"]["phase"] in ("Pending", "Starting")
        running, before = stream.until(
            lambda e: (
                e["event"] == "updated"
                and e["data"]["id"] == "ide-two"
                and e["data"]["phase"] == "Running"
            )
        )
        assert running["data"]["ready"] is True
        assert len(running["data"]["conditions"]) == 6
        pod_events = [e for e in before if e["event"] == "event"]
        assert any(
            e["data"]["server"] == "ide-two" and e["data"]["reason"] == "Scheduled"
            for e in pod_events
        ), before
        status, body, _ = app.request("DELETE", "/api/servers/ide-two")
        assert status == 200 and body == {"deleted": "ide-two"}
        stream.until(lambda e: e["event"] == "deleted" and e["data"]["id"] == "ide-two")
    finally:
        stream.close()
    assert phase_is(app, "ide-two", "Running") is None


def test_stop_all_deletes_only_managed(app: HostProc, ns: str, custom: Any) -> None:
    custom.create_namespaced_custom_object(
        C.GROUP,
        C.VERSION,
        ns,
        C.PLURAL,
        {
            "apiVersion": C.API_VERSION,
            "kind": C.KIND,
            "metadata": {"name": "hand-made"},
            "spec": {"image": "nginx:1.27"},
        },
    )
    wait_for("hand-made cached", lambda: phase_is(app, "hand-made", "Running"))
    status, body, _ = app.request("POST", "/api/admin/stop-all")
    assert status == 200, body
    assert body == {"deleted": ["ide-one", "web-one"]}
    wait_for(
        "only hand-made left",
        lambda: [s["id"] for s in app.get("/api/servers")] == ["hand-made"],
    )
    assert custom.get_namespaced_custom_object(C.GROUP, C.VERSION, ns, C.PLURAL, "hand-made")
    status, body, _ = app.request("POST", "/api/admin/stop-all")
    assert status == 200 and body == {"deleted": []}


def test_cluster_scoped_routes(app: HostProc, kubeconfig: str) -> None:
    status, body, _ = app.request("GET", "/api/cluster/lab/servers")
    assert status == 404 and body["field"] == "clusterId"
    status, body, _ = app.request("GET", "/api/cluster/Not_Valid/servers")
    assert status == 400 and body["field"] == "clusterId"
    kc = Path(kubeconfig).read_text()
    status, body, _ = app.request("POST", "/api/clusters", {"id": "lab", "kubeconfig": kc})
    assert status == 201, body

    assert app.get("/api/cluster/lab/images")["images"]
    status, body, _ = app.request(
        "POST", "/api/cluster/lab/jobs", {"image": IMAGE, "name": "lab-one"}
    )
    assert status == 202, body
    assert body == {"id": "lab-one", "url": "/api/cluster/lab/proxy/server/lab-one/"}
    item = wait_for("lab-one Running", lambda: phase_is(app, "lab-one", "Running", "/cluster/lab"))
    assert item["url"] == "/api/cluster/lab/proxy/server/lab-one/"
    assert app.get("/api/cluster/lab/servers/lab-one")["proxyUrl"] == item["url"]

    stream = SSE(app, "/sse/cluster/lab/servers")
    try:
        snap = stream.next()
        assert snap["event"] == "snapshot" and snap["data"]["cluster"] == "lab"
        # Removing the cluster stops its Instance, which ends its streams.
        assert app.request("DELETE", "/api/cluster/lab/servers/lab-one")[0] == 200
        stream.until(lambda e: e["event"] == "deleted" and e["data"]["id"] == "lab-one")
        assert app.request("DELETE", "/api/clusters/lab")[0] == 200
        with pytest.raises(EOFError):
            stream.until(lambda e: False, timeout=20)
    finally:
        stream.close()
    assert app.request("GET", "/api/cluster/lab/servers")[0] == 404
