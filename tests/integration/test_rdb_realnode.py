"""RethinkDB as a real pod on the real node, reached the way a user's cluster reaches it.

A real ``twistd guildnet`` whose default cluster is the real-node cluster (its kubeconfig,
``RETHINKDB_NAMESPACE`` = a fresh namespace, no ``RETHINKDB_ADDR``) deploys RethinkDB with
``POST /api/db/deploy`` (emptyDir: the node has no storage provisioner). The kubelet runs the
StatefulSet's pod from the locally built ``rethinkdb:2.4.4`` image as uid 1000; discovery
reads the real Service and connects to its ClusterIP through kube-proxy's rules. Then the DB
API and an SSE changefeed work end to end, and deleting the pod shows what emptyDir means:
the health leaves ``ready``, the feed says ``resync``, the StatefulSet's new pod is found at
the same ClusterIP, and the data is gone (the feed ends with ``gone``; the table is 404).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from guildnet.rdb import deploy as D
from tests.harness.realnode import RealNodeCluster
from tests.integration.hostproc import SSE, HostProc, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.realnode, pytest.mark.timeout(300)]
T = TypeVar("T")
SELECTOR = "app.kubernetes.io/name=rethinkdb,app.kubernetes.io/instance=rethinkdb"


def poll(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """`wait_for` that also counts Kubernetes API errors as "not yet"."""

    def safe() -> T | None:
        try:
            return probe()
        except ApiException:
            return None

    return wait_for(what, safe, timeout=timeout)


def ready_pod(core: Any, namespace: str, not_uid: str | None = None) -> Any:
    """The StatefulSet's Running and Ready pod (a different one than `not_uid`), or None."""
    for pod in core.list_namespaced_pod(namespace, label_selector=SELECTOR).items:
        if pod.metadata.deletion_timestamp or pod.metadata.uid == not_uid:
            continue
        conds = pod.status.conditions or []
        if pod.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in conds
        ):
            return pod
    return None


def health(app: HostProc) -> dict[str, Any]:
    body: dict[str, Any] = app.request("GET", "/api/db/health")[1]
    return body


def test_rethinkdb_pod_deployed_discovered_used_and_recreated(
    real_cluster: RealNodeCluster, real_kube_api: Any, real_namespace: str, tmp_path: Path
) -> None:
    ns = real_namespace
    core: Any = k8s_client.CoreV1Api(real_kube_api)
    app = HostProc(
        tmp_path,
        {
            "KUBECONFIG": str(real_cluster.kubeconfig_path),
            "RETHINKDB_NAMESPACE": ns,
            "RETHINKDB_PING_INTERVAL": "1",
        },
    )
    timings: dict[str, float] = {}
    try:
        # Before the deploy: no Service, a transient `not_found` (never fatal).
        before = poll("a first health", lambda: health(app).get("reason") and health(app), 20)
        assert before["state"] != "ready" and before["reason"] == "not_found", before

        t0 = time.monotonic()
        deployed = app.ok("POST", "/api/db/deploy", {"storage": "emptyDir", "size": "256Mi"})
        assert [(a["kind"], a["name"], a["namespace"]) for a in deployed["applied"]] == [
            ("Service", "rethinkdb", ns),
            ("StatefulSet", "rethinkdb", ns),
        ]
        assert deployed["image"] == D.IMAGE

        pod = poll("the RethinkDB pod Ready", lambda: ready_pod(core, ns), 120)
        timings["pod_ready"] = time.monotonic() - t0
        assert pod.spec.node_name == real_cluster.node_name
        assert pod.spec.containers[0].image == D.IMAGE
        status = pod.status.container_statuses[0]
        assert status.ready and status.container_id.startswith("containerd://")
        assert status.restart_count == 0, "the server must not crash-loop (e.g. /data unwritable)"
        assert pod.spec.security_context.run_as_non_root is True
        assert pod.spec.security_context.run_as_user == 1000
        assert pod.spec.volumes[-1].empty_dir is not None  # `data`, as asked

        svc = core.read_namespaced_service("rethinkdb", ns)
        cluster_ip = svc.spec.cluster_ip
        ready = poll("DB health ready", lambda: (h := health(app))["state"] == "ready" and h, 90)
        timings["db_ready"] = time.monotonic() - t0
        assert ready["source"] == "clusterip"
        assert ready["address"] == f"{cluster_ip}:{D.DRIVER_PORT}"
        assert ready["server"]["name"] == "rethinkdb"

        # Every process in the container runs as uid/gid 1000: tini (the image's entrypoint,
        # PID 1), the server it started, and this exec's own shell.
        out = stream(
            core.connect_get_namespaced_pod_exec,
            pod.metadata.name,
            ns,
            command=["sh", "-c", "grep -H -E '^(Name|Uid|Gid):' /proc/[0-9]*/status"],
            stderr=True,
            stdout=True,
            stdin=False,
            tty=False,
        )
        procs: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            path, _, rest = line.partition(":")
            key, _, value = rest.partition(":")
            procs.setdefault(path, {})[key] = value.strip()
        by_name = {p.get("Name"): p for p in procs.values()}
        assert by_name["tini"] is procs["/proc/1/status"], out
        assert "rethinkdb" in by_name, out
        for p in procs.values():
            assert p["Uid"].split() == ["1000"] * 4 and p["Gid"].split() == ["1000"] * 4, out

        # The DB API through the Host App.
        db = f"rn_{uuid.uuid4().hex[:8]}"
        app.ok("POST", "/api/db", {"id": db}, 201)
        base = f"/api/db/{db}/tables/t"
        app.ok("POST", f"/api/db/{db}/tables", {"name": "t"}, 201)
        app.ok("POST", f"{base}/rows", {"id": "a", "n": 1}, 201)
        assert app.get(f"{base}/rows/a") == {"id": "a", "n": 1}

        # A changefeed sees a row inserted through the API.
        sse = SSE(app, base.replace("/api/", "/sse/", 1) + "/changes")
        try:
            assert sse.status == 200
            snap, _ = sse.until(lambda e: e["event"] == "snapshot", timeout=20)
            assert [r["id"] for r in snap["data"]["rows"]] == ["a"]
            assert sse.next(timeout=10)["event"] == "ready"
            app.ok("POST", f"{base}/rows", {"id": "b", "n": 2}, 201)
            ev, _ = sse.until(lambda e: e["event"] == "change", timeout=10)
            assert ev["data"] == {"type": "add", "old": None, "new": {"id": "b", "n": 2}}

            # Delete the pod: the server goes (SIGTERM, then its emptyDir with it).
            t1 = time.monotonic()
            core.delete_namespaced_pod(pod.metadata.name, ns)
            ev = sse.next(timeout=30)
            assert ev["event"] == "resync", ev
            timings["resync"] = time.monotonic() - t1
            poll("health to leave ready", lambda: health(app)["state"] != "ready", 30)
            wait_for("the old pod gone", lambda: _replaced(core, ns, pod), timeout=60)
            timings["old_pod_gone"] = time.monotonic() - t1
            down = health(app)
            assert down["state"] in ("backoff", "connecting"), down  # never fatal
            print(f"\n[rdb realnode] health while no pod: {down['state']} ({down.get('reason')})")

            new_pod = poll(
                "the recreated pod Ready",
                lambda: ready_pod(core, ns, not_uid=pod.metadata.uid),
                120,
            )
            timings["pod_recreated"] = time.monotonic() - t1
            assert new_pod.metadata.name == pod.metadata.name  # a StatefulSet: same identity
            assert new_pod.status.pod_ip  # (a new pod IP is likely; the ClusterIP stays)
            again = poll(
                "DB health ready again",
                lambda: (h := health(app))["state"] == "ready" and h,
                90,
            )
            timings["db_ready_again"] = time.monotonic() - t1
            assert again["address"] == ready["address"] and again["source"] == "clusterip"

            # emptyDir: the new pod started with an empty /data, so the table is gone. The
            # feed, after its resyncs, says so and ends instead of serving stale rows.
            ev, seen = sse.until(lambda e: e["event"] in ("gone", "snapshot"), timeout=60)
            assert all(e["event"] == "resync" for e in seen), seen
            assert ev["event"] == "gone", ev
        finally:
            sse.close()
        status, body, _ = app.request("GET", f"/api/db/{db}")
        assert status == 404 and body["field"] == "db", body

        # And the new server works: the same steps succeed on it, and a new feed follows.
        app.ok("POST", "/api/db", {"id": db}, 201)
        app.ok("POST", f"/api/db/{db}/tables", {"name": "t"}, 201)
        sse = SSE(app, base.replace("/api/", "/sse/", 1) + "/changes")
        try:
            snap, _ = sse.until(lambda e: e["event"] == "snapshot", timeout=20)
            assert snap["data"]["rows"] == []
            assert sse.next(timeout=10)["event"] == "ready"
            app.ok("POST", f"{base}/rows", {"id": "c"}, 201)
            ev, _ = sse.until(lambda e: e["event"] == "change", timeout=10)
            assert ev["data"]["new"] == {"id": "c"}
        finally:
            sse.close()
    finally:
        app.stop()
        print(
            "\n[rdb realnode] "
            + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
            + f" (server {real_cluster.server})"
        )
    app.assert_no_traceback()


def _replaced(core: Any, namespace: str, pod: Any) -> bool:
    """Whether `pod` is gone (deleted, or already replaced by a pod of the same name)."""
    try:
        now = core.read_namespaced_pod(pod.metadata.name, namespace)
    except ApiException as e:
        return e.status == 404
    return bool(now.metadata.uid != pod.metadata.uid)
