"""The embedded operator against the real test cluster (kube-apiserver + kwok).

In-process: a Registry with the test cluster as its default cluster, and the
WorkspaceService the app attaches to every Instance, with a short resync so
"unchanged means zero writes" is observed over several resyncs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from guildnet.cluster.kubeclient import ClusterSource
from guildnet.cluster.registry import Registry
from guildnet.cluster.rest import KubeApiError, object_path
from guildnet.operator import constants as C
from guildnet.operator.desired import OperatorConfig
from guildnet.workspaces.service import WorkspaceService
from tests.leaks import threads_named

reactor: Any = _reactor
RESYNC = 0.5


def ws_manifest(name: str, ns: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND,
        "metadata": {"name": name, "namespace": ns},
        "spec": {"image": image, **spec},
    }


class OperatorTests(TestCase):
    timeout = 120

    @pytest.fixture(autouse=True)
    def _cluster(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.ns = namespace

    def setUp(self) -> Any:
        base = Path(self.mktemp())
        base.mkdir()
        self.registry = Registry(
            base / "clusters",
            ClusterSource("kubeconfig", kubeconfig=Path(self.kubeconfig)),
            {},
            reactor,
        )
        self.registry.startService()
        self.instance = self.registry.get("default")
        self.service = WorkspaceService(
            self.instance, OperatorConfig(namespace=self.ns), True, reactor, resync_period=RESYNC
        )
        self.service.setServiceParent(self.instance)
        self.addCleanup(self._shutdown)
        return self.service.crd_ready

    @inlineCallbacks
    def _shutdown(self) -> Any:
        yield self.registry.stopService()
        self.assertEqual(threads_named("guildnet-default-"), [])

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.instance.call(fn, *args, **kwargs)

    @property
    def rest(self) -> Any:
        return self.instance.rest

    def path(
        self, api_version: str, plural: str, name: str | None = None, sub: str | None = None
    ) -> str:
        return object_path(api_version, plural, name, self.ns, sub)

    @inlineCallbacks
    def wait_for(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        """Poll ``check()`` (blocking, on the API pool) until it returns a truthy value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = yield self.call(check)
            except KubeApiError as e:
                last = e
            if last and not isinstance(last, Exception):
                return last
            yield deferLater(reactor, 0.2, lambda: None)
        self.fail(f"timed out waiting for {what}; last: {last!r}")

    def get(self, api_version: str, plural: str, name: str, sub: str | None = None) -> Any:
        try:
            return self.rest.get(self.path(api_version, plural, name, sub))
        except KubeApiError as e:
            if e.not_found:
                return None
            raise

    def phase(self, name: str, wanted: str) -> Any:
        ws = self.get(C.API_VERSION, C.PLURAL, name)
        return ws if ws and (ws.get("status") or {}).get("phase") == wanted else None

    @inlineCallbacks
    def leader(self) -> Any:
        yield self.wait_for(
            "leadership",
            lambda: self.service.controller is not None and self.service.controller.running,
        )

    @inlineCallbacks
    def test_code_server_workspace_runs_hardened_and_idles_without_writes(self) -> Any:
        yield self.leader()
        yield self.call(
            self.rest.request,
            "POST",
            self.path(C.API_VERSION, C.PLURAL),
            body=ws_manifest(
                "ide",
                self.ns,
                "codercom/code-server:4.139.1",
                env=[{"name": "FOO", "value": "bar"}],
            ),
        )
        ws = yield self.wait_for("Running", lambda: self.phase("ide", "Running"))
        status = ws["status"]
        self.assertEqual(status["readyReplicas"], 1)
        self.assertEqual(status["url"], "/proxy/server/ide/")
        self.assertEqual(status["serviceDNS"], f"ide.{self.ns}.svc.cluster.local")
        self.assertEqual(status["observedGeneration"], ws["metadata"]["generation"])
        self.assertTrue(all(c["status"] == "True" for c in status["conditions"]), status)

        dep = yield self.call(self.get, "apps/v1", "deployments", "ide")
        svc = yield self.call(self.get, "v1", "services", "ide")
        secret = yield self.call(self.get, "v1", "secrets", C.password_secret_name("ide"))
        for obj in (dep, svc, secret):
            self.assertIsNotNone(obj)
            meta = obj["metadata"]
            self.assertEqual(meta["labels"][C.LABEL_MANAGED_BY], C.MANAGED_BY)
            self.assertEqual(meta["ownerReferences"][0]["uid"], ws["metadata"]["uid"])
            self.assertTrue(meta["ownerReferences"][0]["controller"])
        pod_spec = dep["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        self.assertTrue(pod_spec["securityContext"]["runAsNonRoot"])
        self.assertEqual(pod_spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        self.assertFalse(container["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual(container["securityContext"]["capabilities"]["drop"], ["ALL"])
        self.assertEqual(container["readinessProbe"]["httpGet"]["port"], 8080)
        self.assertNotIn("startupProbe", container)
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["FOO"]["value"], "bar")
        self.assertEqual(env["PORT"]["value"], "8080")
        self.assertEqual(env["PASSWORD"]["valueFrom"]["secretKeyRef"]["name"], "ide-password")
        self.assertGreaterEqual(len(secret["data"]["password"]), 16)
        self.assertEqual([p["port"] for p in svc["spec"]["ports"]], [8080])

        # Steady state: several resyncs, not one write, not one resourceVersion change.
        controller = self.service.controller
        assert controller is not None
        writes, reconciles = dict(controller.writes), controller.reconciles
        before = yield self.call(
            lambda: [
                self.get(*k)["metadata"]["resourceVersion"]
                for k in (
                    (C.API_VERSION, C.PLURAL, "ide"),
                    ("apps/v1", "deployments", "ide"),
                    ("v1", "services", "ide"),
                    ("v1", "secrets", "ide-password"),
                )
            ]
        )
        yield deferLater(reactor, RESYNC * 6, lambda: None)
        after = yield self.call(
            lambda: [
                self.get(*k)["metadata"]["resourceVersion"]
                for k in (
                    (C.API_VERSION, C.PLURAL, "ide"),
                    ("apps/v1", "deployments", "ide"),
                    ("v1", "services", "ide"),
                    ("v1", "secrets", "ide-password"),
                )
            ]
        )
        self.assertGreaterEqual(controller.reconciles - reconciles, 4, "no resyncs happened")
        self.assertEqual(dict(controller.writes), writes)
        self.assertEqual(after, before)

    @inlineCallbacks
    def test_spec_change_rolls_and_delete_cleans_up(self) -> Any:
        yield self.leader()
        yield self.call(
            self.rest.request,
            "POST",
            self.path(C.API_VERSION, C.PLURAL),
            body=ws_manifest(
                "app", self.ns, "nginx:1.27", ports=[{"name": "http", "containerPort": 8000}]
            ),
        )
        yield self.wait_for("Running", lambda: self.phase("app", "Running"))
        dep = yield self.call(self.get, "apps/v1", "deployments", "app")
        self.assertEqual(
            dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 8000
        )
        self.assertIsNone((yield self.call(self.get, "v1", "secrets", "app-password")))
        yield self.call(
            self.rest.request,
            "PATCH",
            self.path(C.API_VERSION, C.PLURAL, "app"),
            body={"spec": {"args": ["--verbose"]}},
            content_type="application/merge-patch+json",
        )

        def rolled() -> Any:
            d = self.get("apps/v1", "deployments", "app")
            args = d["spec"]["template"]["spec"]["containers"][0].get("args")
            return d if args == ["--verbose"] else None

        new = yield self.wait_for("the Deployment to roll", rolled)
        self.assertGreater(new["metadata"]["generation"], dep["metadata"]["generation"])

        def running_current() -> Any:
            # Until the operator has seen the new generation, the stored status is the old one.
            ws = self.phase("app", "Running")
            current = ws and ws["status"].get("observedGeneration") == ws["metadata"]["generation"]
            return ws if current else None

        ws = yield self.wait_for("Running on the new generation", running_current)
        self.assertEqual(ws["metadata"]["generation"], 2)

        yield self.call(self.rest.delete, self.path(C.API_VERSION, C.PLURAL, "app"))
        yield self.wait_for(
            "the Deployment to be collected",
            lambda: self.get("apps/v1", "deployments", "app") is None,
        )
        yield self.wait_for(
            "the Service to be collected", lambda: self.get("v1", "services", "app") is None
        )

    @inlineCallbacks
    def test_invalid_image_is_failed_with_reason(self) -> Any:
        """kwok has no image registry: a pod status that a kubelet would write is set here."""
        yield self.leader()
        yield self.call(
            self.rest.request,
            "POST",
            self.path(C.API_VERSION, C.PLURAL),
            body=ws_manifest(
                "bad",
                self.ns,
                "example.invalid/none:1",
                labels={"guildnet.test/simulate": "ErrImagePull"},
            ),
        )
        ws = yield self.wait_for("Failed", lambda: self.phase("bad", "Failed"), timeout=60)
        self.assertIn("ErrImagePull", str(ws["status"]))

    @inlineCallbacks
    def test_every_spec_field_survives_the_api_server(self) -> Any:
        """Pruning would silently drop undeclared fields (lessons.md): nothing may vanish."""
        from guildnet.operator.spec import parse_spec

        created = yield self.call(
            self.rest.request,
            "POST",
            self.path(C.API_VERSION, C.PLURAL),
            body=ws_manifest("full", self.ns, **FULL_SPEC),
        )
        self.assertEqual(parse_spec(created["spec"]), parse_spec(FULL_SPEC))
        self.assertEqual(created["spec"], {**FULL_SPEC})
        # ...and the operator turns it into a crash-looping pod that it reports as Failed.
        yield self.leader()
        ws = yield self.wait_for("Failed", lambda: self.phase("full", "Failed"))
        self.assertIn("CrashLoopBackOff", str(ws["status"]))
        dep = yield self.call(self.get, "apps/v1", "deployments", "full")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["args"], FULL_SPEC["args"])
        self.assertEqual(c["command"], FULL_SPEC["command"])
        self.assertEqual(c["resources"]["limits"]["memory"], "1Gi")
        self.assertEqual(dep["spec"]["template"]["metadata"]["labels"]["team"], "blue")


FULL_SPEC: dict[str, Any] = {
    "image": "registry.example/team/app:1.2.3",
    "env": [
        {"name": "PLAIN", "value": "v \u00e9 \U0001f600"},
        {
            "name": "FROM_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}},
        },
    ],
    "ports": [
        {"name": "http", "containerPort": 9000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
    ],
    "args": ["--flag", "value with spaces"],
    "command": ["/bin/app"],
    "resources": {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    },
    "labels": {"team": "blue", "guildnet.test/simulate": "CrashLoopBackOff"},
    "exposure": {"type": "ClusterIP"},
}


class LeaderElectionTests(TestCase):
    """Two Host Apps on one cluster: one reconciles; the other takes over when it dies."""

    timeout = 120

    @pytest.fixture(autouse=True)
    def _cluster(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.ns = namespace

    def make_app(self, tag: str) -> tuple[Registry, WorkspaceService]:
        base = Path(self.mktemp())
        base.mkdir()
        registry = Registry(
            base / "clusters",
            ClusterSource("kubeconfig", kubeconfig=Path(self.kubeconfig)),
            {},
            reactor,
        )
        registry.startService()
        self.addCleanup(registry.stopService)
        service = WorkspaceService(
            registry.get("default"), OperatorConfig(namespace=self.ns), True, reactor
        )
        service.setServiceParent(registry.get("default"))
        return registry, service

    @inlineCallbacks
    def wait(self, what: str, check: Any, timeout: float) -> Any:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if check():
                return time.monotonic() - start
            yield deferLater(reactor, 0.1, lambda: None)
        self.fail(f"timed out after {timeout}s waiting for {what}")

    @inlineCallbacks
    def test_one_leader_and_failover(self) -> Any:
        _, a = self.make_app("a")
        _, b = self.make_app("b")
        yield a.crd_ready
        yield b.crd_ready

        def leaders() -> list[WorkspaceService]:
            return [s for s in (a, b) if s.elector is not None and s.elector.is_leader]

        yield self.wait("a leader", lambda: len(leaders()) == 1, 30)
        # Stays exactly one over several renewals.
        for _ in range(10):
            yield deferLater(reactor, 0.5, lambda: None)
            self.assertEqual(len(leaders()), 1)
        leader = leaders()[0]
        follower = b if leader is a else a
        self.assertIsNone(follower.controller)

        # The leader "dies": it stops renewing without releasing the Lease.
        assert leader.elector is not None
        leader.elector._loop.stop()
        leader.elector.is_leader = False
        took = yield self.wait(
            "the follower to take over",
            lambda: follower.elector is not None and follower.elector.is_leader,
            30,
        )
        self.assertLessEqual(took, 15 + 2 * 2 + 1)
        self.assertIsNotNone(follower.controller)
