"""Registry and Instance life cycle without a cluster.

The API server here is a closed loopback port, which is exactly what an
unreachable cluster looks like; tests with a real cluster are in
tests/integration/test_registry_cluster.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from guildnet.cluster.ids import InvalidClusterId
from guildnet.cluster.kubeclient import ClusterSource, KubeconfigError
from guildnet.cluster.registry import ClusterExists, ClusterUnreachable, Registry, UnknownCluster
from tests.kubeconfigs import SECRET_TOKEN, closed_port, kubeconfig_text
from tests.leaks import open_files_under, socket_inodes, threads_named

reactor: Any = _reactor


class RegistryLifecycleTests(TestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp())
        self.base.mkdir()
        self.server = f"https://127.0.0.1:{closed_port()}"
        default_kc = self.base / "kubeconfig"
        default_kc.write_text(kubeconfig_text(self.server))
        self.registry = Registry(
            self.base / "clusters",
            ClusterSource("kubeconfig", kubeconfig=default_kc),
            {},
            reactor,
        )
        self.registry.startService()
        self.addCleanup(self.registry.stopService)

    @inlineCallbacks
    def test_instance_owns_and_releases_everything(self) -> Any:
        sockets_before = socket_inodes()
        instance = self.registry.get("default")
        self.assertIs(self.registry.get("default"), instance)
        yield instance.ready()
        yield instance.localdb.put("k", "v")
        self.assertEqual((yield instance.localdb.get("k")), "v")
        self.assertTrue((yield instance.localdb.health()))

        reach = yield instance.check_reachable(timeout=2)
        self.assertFalse(reach.reachable)
        self.assertIn("cannot reach the API server", reach.error)
        self.assertEqual(reach.server, self.server)
        self.assertNotIn(SECRET_TOKEN, reach.error)

        ticks: list[int] = []
        instance.start_looping("tick", 0.01, lambda: ticks.append(1))
        cancelled: list[bool] = []
        forever: Deferred[None] = Deferred(lambda d: cancelled.append(True))
        instance.start_worker("forever", lambda: forever)
        self.assertEqual(instance.worker_names, ["forever"])
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertGreater(len(ticks), 1)
        self.assertTrue(threads_named("guildnet-default-"))
        self.assertTrue(open_files_under(instance.state_dir))

        yield self.registry.close("default")

        self.assertNotIn("default", self.registry.instances())
        self.assertEqual(cancelled, [True], "the worker was not cancelled")
        self.assertEqual(instance.worker_names, [])
        self.assertEqual(threads_named("guildnet-default-"), [])
        self.assertEqual(open_files_under(instance.state_dir), [])
        self.assertEqual(socket_inodes() - sockets_before, set())
        count = len(ticks)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(ticks), count, "the looping call kept running after close")
        with self.assertRaises(RuntimeError):
            instance.call(lambda: None)
        # A later get() starts a fresh Instance.
        again = self.registry.get("default")
        self.assertIsNot(again, instance)
        yield self.registry.close("default")

    def test_unknown_and_invalid_ids(self) -> None:
        with self.assertRaises(UnknownCluster):
            self.registry.get("nope")
        for bad in ("Bad", "-x", "x" * 64, "a_b", ""):
            with self.assertRaises(InvalidClusterId):
                self.registry.get(bad)

    @inlineCallbacks
    def test_add_unreachable_is_refused_and_leaves_nothing(self) -> Any:
        d = self.registry.add("other", "Other", kubeconfig_text(self.server))
        with self.assertRaises(ClusterUnreachable) as cm:
            yield d
        self.assertIn("cannot reach", str(cm.exception))
        clusters = self.base / "clusters"
        self.assertEqual([p.name for p in clusters.iterdir()], [])
        self.assertEqual([r.id for r in self.registry.records()], ["default"])

    def test_add_rejects_bad_input_synchronously(self) -> None:
        with self.assertRaises(ClusterExists):
            self.registry.add("default", None, kubeconfig_text(self.server))
        with self.assertRaises(KubeconfigError):
            self.registry.add("x", None, "{{{ not yaml")
        with self.assertRaises(KubeconfigError):
            self.registry.add("x", None, "apiVersion: v1\nkind: Config\n")
        with self.assertRaises(InvalidClusterId):
            self.registry.add("X", None, kubeconfig_text(self.server))
        self.assertEqual(list((self.base / "clusters").iterdir()), [])

    @inlineCallbacks
    def test_stored_cluster_survives_restart_and_is_lazy(self) -> Any:
        # Store a cluster the way add() does after validation, then restart.
        target = self.base / "clusters" / "stored"
        target.mkdir(parents=True)
        (target / "kubeconfig").write_text(kubeconfig_text(self.server))
        (target / "kubeconfig").chmod(0o600)
        (target / "cluster.json").write_text(json.dumps({"name": "Stored", "server": self.server}))
        yield self.registry.stopService()
        registry = Registry(self.base / "clusters", None, {}, reactor)
        registry.startService()
        self.addCleanup(registry.stopService)
        self.assertEqual(registry.instances(), {})
        self.assertEqual(
            [(r.id, r.name, r.stored) for r in registry.records()], [("stored", "Stored", True)]
        )
        instance = registry.get("stored")
        yield instance.ready()
        self.assertEqual(instance.server, self.server)
        yield registry.remove("stored")
        self.assertFalse(target.exists())
        self.assertEqual(threads_named("guildnet-stored-"), [])
        with self.assertRaises(UnknownCluster):
            registry.record("stored")

    def test_default_cannot_be_removed(self) -> None:
        with self.assertRaises(ValueError):
            self.registry.remove("default")


def test_private_write_mode(tmp_path: Path) -> None:
    from guildnet.cluster.registry import _write_private

    p = tmp_path / "a" / "kubeconfig"
    _write_private(p, "x")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700


def test_cluster_ids_are_whole_labels() -> None:
    from guildnet.cluster.ids import validate_cluster_id

    assert validate_cluster_id("lab-1") == "lab-1"
    for bad in ("abc\n", "abc\nxyz", "ab c", "a" * 64, "é"):
        try:
            validate_cluster_id(bad)
        except InvalidClusterId:
            continue
        raise AssertionError(f"{bad!r} accepted")
