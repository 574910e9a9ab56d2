"""The RDB manager against real servers: states, recovery, the monitor, credentials, TLS,
discovery through real Service objects, and shutdown through ``Registry.close``.

In-process (trial): the reactor is the test's, so trial itself fails a test that leaves a
socket or timer behind.
"""

from __future__ import annotations

import base64
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from guildnet.cluster.kubeclient import ClusterSource
from guildnet.cluster.registry import Registry
from guildnet.metrics.core import REGISTRY
from guildnet.rdb.discovery import DiscoveryConfig
from guildnet.rdb.driver import r
from guildnet.rdb.manager import RDBConfig, RDBManager, RDBUnavailable, manager_factory
from tests.harness.cluster import NETNS_NODE_IP, TestCluster
from tests.harness.rethinkdb import RethinkServer
from tests.kubeconfigs import closed_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
reactor: Any = _reactor


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def until(what: str, probe: Any, timeout: float = 10.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        yield sleep(step)


class Stall:
    """A descriptor whose read blocks the reactor thread for ``seconds``: a reactor turn
    that runs long while answers wait on other sockets (as a big fan-out's turn does)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stalls = 0
        self._a, self._b = socket.socketpair()
        self._a.setblocking(False)

    def fileno(self) -> int:
        return self._a.fileno()

    def logPrefix(self) -> str:
        return "stall"

    def doRead(self) -> None:
        self._a.recv(64)
        self.stalls += 1
        time.sleep(self.seconds)

    def connectionLost(self, reason: object) -> None:
        pass

    def trigger(self) -> None:
        self._b.send(b"x")

    def close(self) -> None:
        reactor.removeReader(self)
        self._a.close()
        self._b.close()


def reconnects(cluster: str = "default") -> float:
    value = REGISTRY.get_sample_value("guildnet_rdb_reconnects_total", {"cluster": cluster})
    return value or 0.0


def resets(action: str, cluster: str = "default") -> float:
    labels = {"cluster": cluster, "action": action}
    return REGISTRY.get_sample_value("guildnet_rdb_subscriber_resets_total", labels) or 0.0


def queries(op: str, cluster: str = "default") -> float:
    labels = {"cluster": cluster, "op": op}
    return REGISTRY.get_sample_value("guildnet_rdb_query_duration_seconds_count", labels) or 0.0


def manager_for(server: RethinkServer | None, port: int | None = None, **cfg: Any) -> RDBManager:
    host, p = (server.host, server.port) if server else ("127.0.0.1", port or closed_port())
    base: dict[str, Any] = {"discovery": DiscoveryConfig(override=(host, p)), "ping_interval": 0.5}
    if server is not None and server.password is not None:
        base["password"] = server.password
    if server is not None and server.ca_file is not None:
        base.update(tls=True, ca_file=server.ca_file)
    base.update(cfg)
    mgr = RDBManager("default", RDBConfig(**base), {}, True, None, lambda: None, reactor)
    return mgr


class ManagerCase(TestCase):
    def start(self, mgr: RDBManager) -> RDBManager:
        mgr.startService()
        self.addCleanup(mgr.stopService)
        return mgr


class RecoveryTests(ManagerCase):
    @pytest.fixture(autouse=True)
    def _server(self, rdb_private: RethinkServer) -> None:
        self.server = rdb_private

    @inlineCallbacks
    def test_ready_then_lost_then_ready_again(self) -> Any:
        mgr = self.start(manager_for(self.server))
        conn = yield mgr.connection()
        self.assertEqual(mgr.health.state, "ready")
        self.assertEqual(mgr.health.address, self.server.addr)
        self.assertEqual(mgr.health.source, "override")
        self.assertEqual((yield mgr.run(r.expr(1))), 1)
        states: list[str] = []
        mgr.on_change(lambda h: states.append(h.state))
        self.server.kill()
        killed = time.monotonic()
        yield until("not ready", lambda: mgr.health.state != "ready", timeout=2)
        self.assertLess(time.monotonic() - killed, 1.0)
        self.assertFalse(conn.is_open())
        yield until("backoff", lambda: mgr.health.state == "backoff", timeout=5)
        self.assertIn(mgr.health.reason, ("refused", "connection_lost"))
        self.assertIsNotNone(mgr.health.next_attempt_at)
        with self.assertRaises(RDBUnavailable) as cm:
            yield mgr.run(r.expr(1))
        self.assertIn(cm.exception.reason, ("refused", "connection_lost"))
        self.server.start()
        yield until("ready again", lambda: mgr.health.state == "ready", timeout=20)
        self.assertEqual((yield mgr.run(r.expr(2))), 2)
        self.assertIn("backoff", states)

    @inlineCallbacks
    def test_meta_operations_ride_out_a_restart(self) -> Any:
        self.server.run(lambda q: q.db_create("m"))
        self.server.run(lambda q: q.db("m").table_create("t"))
        mgr = self.start(manager_for(self.server))
        yield mgr.connection()
        self.server.stop()
        self.server.start()
        mgr.reconnect()  # now, not at the next backoff step (which may be seconds away)
        # Right after a restart the table has no primary replica for ~2 s; the meta
        # operation's short retries carry it through (a plain run would fail).
        yield until("ready", lambda: mgr.health.state == "ready", timeout=20)
        result = yield mgr.run_meta(lambda: r.db("m").table("t").index_create("x"))
        self.assertEqual(result["created"], 1)
        print(f"meta retries after the restart: {mgr.meta_retries}")
        self.assertGreater(mgr.meta_retries, 0, "the table was available at once: no proof")

    @inlineCallbacks
    def test_monitor_notices_a_hung_server(self) -> Any:
        mgr = self.start(manager_for(self.server, ping_interval=0.5, ping_timeout=0.5))
        yield mgr.connection()
        self.server.pause()
        try:
            yield until("ping timeout", lambda: mgr.health.state != "ready", timeout=5)
            self.assertEqual(mgr.health.reason, "timeout")
        finally:
            self.server.resume()
        yield until("ready again", lambda: mgr.health.state == "ready", timeout=20)

    @inlineCallbacks
    def test_monitor_does_not_count_the_reactors_own_lag(self) -> Any:
        """A Host App too busy to read the answer in time (a 1.5 s reactor turn, as a large
        fan-out makes) must not call a healthy server dead: its ping deadline excludes the
        reactor's lag. The control shows a plain ``addTimeout`` fails the same way."""
        mgr = self.start(manager_for(self.server, ping_interval=60, ping_timeout=0.5))
        conn = yield mgr.connection()
        before = reconnects()
        stall = Stall(1.5)
        reactor.addReader(stall)
        self.addCleanup(stall.close)

        plain = r.expr(1).run(conn).addTimeout(0.5, reactor)
        stall.trigger()
        with self.assertRaises(DeferredTimeout):
            yield plain
        for _ in range(3):
            mgr._monitor()
            self.assertTrue(mgr._pinging)
            stall.trigger()
            yield until("the ping answered", lambda: not mgr._pinging, timeout=5)
            self.assertEqual(mgr.health.state, "ready")
        self.assertEqual(stall.stalls, 4)
        self.assertEqual(reconnects(), before)
        self.assertIs(mgr._conn, conn)

    @inlineCallbacks
    def test_rdb_metrics_move_with_real_events(self) -> Any:
        """Query latency, reconnects and subscriber resets (every action) against the
        real server: queries, a feed's subscribers, a slow one, a kill, a table drop."""
        from guildnet.rdb.feeds import SUBSCRIBER_QUEUE, hub_of
        from tests.unit.test_rdb_feeds_queue import RecordingSink

        mgr = self.start(manager_for(self.server, ping_interval=0.2))
        yield mgr.connection()
        inserts = queries("insert")
        yield mgr.run(r.db_create("mx"))
        yield mgr.run_meta(lambda: r.db("mx").table_create("t"))
        yield mgr.run(r.db("mx").table("t").insert({"id": 1}))
        self.assertEqual(queries("insert"), inserts + 1)
        yield until("a ping observed", lambda: queries("ping") > 0, timeout=5)

        hub = hub_of(mgr)
        resets0 = {a: resets(a) for a in ("slow_client", "feed_lost", "reconnected", "gone")}
        fast, slow, back = RecordingSink(), RecordingSink(), RecordingSink()
        hub.subscribe("mx", "t", None, fast, resume=False)
        slow_sub, _ = hub.subscribe("mx", "t", None, slow, resume=False)
        yield until("snapshots", lambda: "ready" in fast.kinds() and "ready" in slow.kinds())
        hub.subscribe("mx", "t", None, back, resume=True)  # Last-Event-ID
        self.assertEqual(resets("reconnected"), resets0["reconnected"] + 1)

        slow.writable = False
        rows = [{"id": 100 + i} for i in range(SUBSCRIBER_QUEUE + 100)]
        yield mgr.run(r.db("mx").table("t").insert(rows))
        yield until("the slow one overflowed", lambda: slow_sub.overflowed, timeout=10)
        slow.writable = True
        slow_sub.drained()
        self.assertEqual(resets("slow_client"), resets0["slow_client"] + 1)

        reconnects0 = reconnects()
        self.server.kill()
        yield until("feed lost", lambda: resets("feed_lost") >= resets0["feed_lost"] + 3)
        self.assertEqual(reconnects(), reconnects0 + 1)
        self.server.start()
        yield until("ready", lambda: fast.kinds().count("ready") >= 2, timeout=30)

        yield mgr.run_meta(lambda: r.db("mx").table_drop("t"))
        yield until("gone", lambda: resets("gone") >= resets0["gone"] + 3, timeout=15)
        self.assertIn("gone", fast.kinds())


class FailureTests(ManagerCase):
    @inlineCallbacks
    def test_refused_backs_off_with_growing_delays(self) -> Any:
        mgr = self.start(manager_for(None, request_wait=1.5))
        started = time.monotonic()
        with self.assertRaises(RDBUnavailable) as cm:
            yield mgr.connection()
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertEqual(cm.exception.reason, "refused")
        yield until("three attempts", lambda: mgr.health.attempts >= 3, timeout=10)
        h = mgr.health
        self.assertEqual(h.state, "backoff")
        self.assertGreater(h.next_attempt_at or 0.0, time.time())

    @inlineCallbacks
    def test_wrong_password_is_fatal_and_stops_retrying(self) -> Any:
        server = RethinkServer(password="right-one").start()
        self.addCleanup(server.close)
        mgr = self.start(manager_for(server, password="wrong-one"))
        with self.assertRaises(RDBUnavailable) as cm:
            yield mgr.connection()
        self.assertEqual(cm.exception.reason, "auth_failed")
        self.assertEqual(mgr.health.state, "failed")
        attempts = mgr.health.attempts
        yield sleep(2.0)
        self.assertEqual(mgr.health.attempts, attempts, "a fatal failure must not be retried")
        self.assertNotIn("wrong-one", repr(mgr.cfg))
        self.assertNotIn("wrong-one", str(mgr.health.to_json(time.time())))


class TLSManagerTests(ManagerCase):
    @pytest.fixture(autouse=True)
    def _server(self, rdb_tls_server: RethinkServer) -> None:
        self.server = rdb_tls_server

    @inlineCallbacks
    def test_tls_with_the_ca(self) -> Any:
        mgr = self.start(manager_for(self.server))
        conn = yield mgr.connection()
        self.assertIsNotNone(conn._instance._connection.transport.getPeerCertificate())

    @inlineCallbacks
    def test_wrong_ca_is_fatal(self) -> Any:
        mgr = self.start(manager_for(self.server, ca_file=self.server.other_ca_file))
        with self.assertRaises(RDBUnavailable) as cm:
            yield mgr.connection()
        self.assertEqual(cm.exception.reason, "tls_verify_failed")
        self.assertEqual(mgr.health.state, "failed")

    @inlineCallbacks
    def test_plaintext_client_to_a_tls_server_is_refused_transiently(self) -> Any:
        # The server drops a connection whose first bytes are no TLS ClientHello; from the
        # client that looks like any connection lost mid-handshake, so it is retried.
        mgr = self.start(manager_for(self.server, tls=False, ca_file=None, connect_timeout=0.5))
        with self.assertRaises(RDBUnavailable):
            yield mgr.connection(wait=1.0)
        self.assertIn(mgr.health.reason, ("timeout", "connection_lost"))
        self.assertIn(mgr.health.state, ("backoff", "connecting"))


# -- through the Kubernetes API of the test cluster -----------------------------------------


class ServiceDiscoveryTests(TestCase):
    """Real Service (and Secret) objects in the test cluster; real servers at the addresses
    they name (inside the test network namespace nothing else answers there)."""

    @pytest.fixture(autouse=True)
    def _cluster(self, test_cluster: TestCluster, kube_api: Any, namespace: str) -> None:
        self.cluster = test_cluster
        self.core: Any = k8s_client.CoreV1Api(kube_api)
        self.ns = namespace

    def registry(self, **cfg: Any) -> Registry:
        base = Path(self.mktemp())
        base.mkdir()
        registry = Registry(
            base / "clusters",
            ClusterSource("kubeconfig", kubeconfig=Path(self.cluster.kubeconfig_path)),
            {},
            reactor,
        )
        config = RDBConfig(
            discovery=DiscoveryConfig(service_name="rethinkdb", namespace=self.ns),
            ping_interval=1.0,
            request_wait=8.0,
            **cfg,
        )
        factory = manager_factory(config, {}, reactor)
        registry.instance_hooks.append(lambda i: setattr(i, "rdb_factory", factory))
        registry.startService()
        self.addCleanup(registry.stopService)
        return registry

    def service(self, kind: str, port: int, node_port: int | None = None, **spec: Any) -> Any:
        ports: dict[str, Any] = {"name": "driver", "port": port, "targetPort": 28015}
        if node_port is not None:
            ports["nodePort"] = node_port
        body = {
            "metadata": {"name": "rethinkdb"},
            "spec": {"type": kind, "selector": {"app": "rethinkdb"}, "ports": [ports], **spec},
        }
        return self.core.create_namespaced_service(self.ns, body)

    @inlineCallbacks
    def test_missing_service_is_not_found(self) -> Any:
        mgr = self.registry().get("default").ensure_rdb()
        with self.assertRaises(RDBUnavailable) as cm:
            yield mgr.connection(wait=3.0)
        self.assertEqual(cm.exception.reason, "not_found")
        self.assertIn(f"{self.ns}/rethinkdb", mgr.health.message)

    @inlineCallbacks
    def test_headless_service_is_unreachable(self) -> Any:
        self.service("ClusterIP", 28015, clusterIP="None")
        mgr = self.registry().get("default").ensure_rdb()
        with self.assertRaises(RDBUnavailable) as cm:
            yield mgr.connection(wait=3.0)
        self.assertEqual(cm.exception.reason, "unreachable")

    @inlineCallbacks
    def test_node_port_on_the_node_address(self) -> Any:
        node_port = 30000 + uuid.uuid4().int % 2000
        self.service("NodePort", 28015, node_port)
        # The node's InternalIP is 198.18.0.1: a server there on the nodePort is what
        # kube-proxy would make reachable in a real cluster.
        server = RethinkServer(host=NETNS_NODE_IP, port=node_port).start()
        self.addCleanup(server.close)
        registry = self.registry()
        mgr = registry.get("default").ensure_rdb()
        yield mgr.connection()
        self.assertEqual((mgr.health.source, mgr.health.address), ("nodeport", server.addr))

    @inlineCallbacks
    def test_load_balancer_first_then_cluster_ip(self) -> Any:
        svc = self.service("LoadBalancer", 28300 + uuid.uuid4().int % 500)
        port = svc.spec.ports[0].port
        lb_ip = "198.18.0.90"
        self.core.patch_namespaced_service_status(
            "rethinkdb", self.ns, {"status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}}
        )
        lb = RethinkServer(host=lb_ip, port=port).start()
        self.addCleanup(lb.close)
        registry = self.registry()
        mgr = registry.get("default").ensure_rdb()
        yield mgr.connection()
        self.assertEqual((mgr.health.source, mgr.health.address), ("loadbalancer", lb.addr))
        # Without the LB address (and no node port answering), the ClusterIP is next.
        lb.close()
        cluster_ip = svc.spec.cluster_ip
        cip = RethinkServer(host=cluster_ip, port=port).start()
        self.addCleanup(cip.close)
        yield until(
            "the ClusterIP",
            lambda: mgr.health.source == "clusterip" and mgr.health.ready,
            timeout=30,
        )

    @inlineCallbacks
    def test_credentials_from_a_secret_and_close_releases_everything(self) -> Any:
        server = RethinkServer(password="from-the-secret").start()
        self.addCleanup(server.close)
        self.core.create_namespaced_secret(
            self.ns,
            {
                "metadata": {"name": "rdb-creds"},
                "data": {
                    "username": base64.b64encode(b"admin").decode(),
                    "password": base64.b64encode(b"from-the-secret").decode(),
                },
            },
        )
        base = Path(self.mktemp())
        base.mkdir()
        registry = Registry(
            base / "clusters",
            ClusterSource("kubeconfig", kubeconfig=Path(self.cluster.kubeconfig_path)),
            {},
            reactor,
        )
        config = RDBConfig(
            discovery=DiscoveryConfig(override=(server.host, server.port), namespace=self.ns),
            secret_name="rdb-creds",
            password="not-this-one",
        )
        factory = manager_factory(config, {}, reactor)
        registry.instance_hooks.append(lambda i: setattr(i, "rdb_factory", factory))
        registry.startService()
        instance = registry.get("default")
        mgr = instance.ensure_rdb()
        self.assertIs(instance.ensure_rdb(), mgr)
        conn = yield mgr.connection()
        proto = conn._instance._connection
        yield registry.close("default")
        self.assertTrue(proto.gone, "the connection is closed when the cluster closes")
        self.assertEqual(mgr.health.state, "closed")
        self.assertIsNone(instance.rdb)
        yield registry.stopService()


def test_deploy_applies_idempotently_through_the_api(
    test_cluster: TestCluster, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    from tests.integration.hostproc import HostProc, wait_for

    host = HostProc(
        tmp_path,
        {"KUBECONFIG": str(test_cluster.kubeconfig_path), "RETHINKDB_NAMESPACE": namespace},
    )
    try:
        first = host.ok("POST", "/api/db/deploy", {"storage": "emptyDir"})
        assert [(a["kind"], a["name"]) for a in first["applied"]] == [
            ("Service", "rethinkdb"),
            ("StatefulSet", "rethinkdb"),
        ]
        again = host.ok("POST", "/api/db/deploy", {"storage": "emptyDir"})
        # (resourceVersion moves with the controllers' status writes; the spec must not.)
        assert [a["generation"] for a in again["applied"]] == [
            a["generation"] for a in first["applied"]
        ], "a second apply of the same objects must change nothing"
        assert again["applied"][1]["generation"] == 1
        apps: Any = k8s_client.AppsV1Api(kube_api)
        sts = apps.read_namespaced_stateful_set("rethinkdb", namespace)
        assert sts.spec.template.spec.containers[0].image == "rethinkdb:2.4.4"
        core: Any = k8s_client.CoreV1Api(kube_api)
        svc = core.read_namespaced_service("rethinkdb", namespace)
        assert [p.port for p in svc.spec.ports] == [28015]
        status, body, _ = host.request("POST", "/api/db/deploy", {"storage": "disk"})
        assert status == 400 and body["field"] == "storage"
        # Discovery now finds the Service (its ClusterIP answers nothing here: transient).
        wait_for(
            "discovery to find the Service",
            lambda: host.request("GET", "/api/db/health")[1].get("source") == "clusterip",
            timeout=20,
        )
    finally:
        host.stop()


def test_removing_a_cluster_closes_its_feeds_and_connection(
    test_cluster: TestCluster, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    """A stored cluster's DB (found through its NodePort Service), a live changefeed, then
    ``DELETE /api/clusters/<id>``: the stream ends and the server sees the feed go."""
    from tests.integration.hostproc import SSE, HostProc, wait_for

    core: Any = k8s_client.CoreV1Api(kube_api)
    node_port = 30000 + uuid.uuid4().int % 2000
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "rethinkdb"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "rethinkdb"},
                "ports": [{"name": "driver", "port": 28015, "nodePort": node_port}],
            },
        },
    )
    server = RethinkServer(host=NETNS_NODE_IP, port=node_port).start()
    host = HostProc(
        tmp_path,
        {"KUBECONFIG": str(test_cluster.kubeconfig_path), "RETHINKDB_NAMESPACE": namespace},
    )

    def feeds_on_server() -> int:
        jobs = server.run(lambda q: q.db("rethinkdb").table("jobs").filter({"type": "query"}))
        return sum(1 for j in jobs if ".changes(" in str((j.get("info") or {}).get("query", "")))

    try:
        kubeconfig = Path(test_cluster.kubeconfig_path).read_text()
        host.ok("POST", "/api/clusters", {"id": "lab", "kubeconfig": kubeconfig}, 201)
        base = "/api/cluster/lab/db"
        host.ok("POST", base, {"id": "labdb"}, 201)
        assert host.get(f"{base}/health")["source"] == "nodeport"
        host.ok("POST", f"{base}/labdb/tables", {"name": "t"}, 201)
        sse = SSE(host, "/sse/cluster/lab/db/labdb/tables/t/changes")
        sse.until(lambda e: e["event"] == "ready")
        assert feeds_on_server() == 1
        host.ok("DELETE", "/api/clusters/lab")
        with pytest.raises(EOFError):
            sse.next(timeout=10)
        sse.close()
        wait_for("the server feed to close", lambda: feeds_on_server() == 0, timeout=10)
        status, body, _ = host.request("GET", f"{base}/health")
        assert status == 404 and body["field"] == "clusterId"
    finally:
        host.stop()
        server.close()
