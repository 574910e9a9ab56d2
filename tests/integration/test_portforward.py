"""PortForwardManager against the real test cluster (kube-apiserver + kwok).

kwok answers ``pods/portforward`` for a pod by dialling the address its PortForward object
names; here that is a Twisted echo server in this process, standing in for the pod's
process. Everything runs on the one reactor, so the tests can count sockets and threads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from guildnet.cluster.kubeclient import ClusterSource
from guildnet.cluster.registry import Registry
from guildnet.proxy.portforward import PortForwardError, PortForwardManager
from tests.integration.test_cluster_smoke import create_kwok_object, create_pod
from tests.leaks import socket_inodes, socket_peers, threads_named

pytestmark = pytest.mark.integration
reactor: Any = _reactor
POD_PORT = 8080


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """Echoes everything; never closes on its own (like a server waiting for more)."""

    def connectionMade(self) -> None:
        self.factory.conns.add(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.factory.half_closed += 1  # type: ignore[attr-defined]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.conns.discard(self)  # type: ignore[attr-defined]


class EchoFactory(Factory):
    protocol = Echo
    noisy = False

    def __init__(self) -> None:
        self.conns: set[Echo] = set()
        self.half_closed = 0


@implementer(IHalfCloseableProtocol)
class Collector(Protocol):
    """A client that records what it receives and when the server side ends."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: Deferred[None] = Deferred()
        self.waiting: tuple[int, Deferred[bytes]] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.waiting and len(self.received) >= self.waiting[0]:
            _, d = self.waiting
            self.waiting = None
            d.callback(bytes(self.received))

    def wait_for(self, n: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        if len(self.received) >= n:
            d.callback(bytes(self.received))
        else:
            self.waiting = (n, d)
        return d

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class Source(Protocol):
    """Sends ``factory.total`` bytes as fast as the connection takes them (a pull producer)."""

    def connectionMade(self) -> None:
        self.factory.conns.append(self)  # type: ignore[attr-defined]
        self.sent = 0
        self.chunk = os.urandom(64 * 1024)
        self.transport.registerProducer(self, False)  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        total = self.factory.total  # type: ignore[attr-defined]
        if self.sent >= total:
            self.transport.unregisterProducer()  # type: ignore[union-attr]
            return
        piece = self.chunk[: total - self.sent]
        self.sent += len(piece)
        self.transport.write(piece)  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        pass


class Relay(Protocol):
    """The proxy's upstream leg: whatever arrives goes back to the client leg."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def dataReceived(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.client.transport.loseConnection()


class ConnectProxy(Protocol):
    """A minimal HTTP CONNECT proxy (what HTTPS_PROXY points at), recording its targets."""

    transport: Any

    def __init__(self) -> None:
        self.buf = b""
        self.peer: Relay | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.transport.write(data)  # type: ignore[union-attr]
            return
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            return
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n")[0].split(b" ", 2)
        assert method == b"CONNECT", method
        self.factory.targets.append(target.decode())  # type: ignore[attr-defined]
        host, port = target.decode().rsplit(":", 1)
        self.transport.pauseProducing()
        upstream = Relay(self)

        def connected(_: object) -> None:
            self.peer = upstream
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.transport.write(rest)  # type: ignore[union-attr]
            self.transport.resumeProducing()

        def failed(_: object) -> None:
            self.transport.loseConnection()

        endpoint = TCP4ClientEndpoint(reactor, host, int(port))
        connectProtocol(endpoint, upstream).addCallbacks(connected, failed)

    def connectionLost(self, reason: Any = None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PortForwardTests(TestCase):
    timeout = 120

    @pytest.fixture(autouse=True)
    def _cluster(self, kubeconfig: str, namespace: str, kube_api: Any) -> None:
        self.kubeconfig = kubeconfig
        self.ns = namespace
        self.kube_api = kube_api

    def setUp(self) -> Any:
        self.echo = EchoFactory()
        self.echo_port = reactor.listenTCP(0, self.echo, interface="127.0.0.1")
        self.addCleanup(self.echo_port.stopListening)
        self.addCleanup(self._close_pod_side)
        core: Any = k8s_client.CoreV1Api(self.kube_api)
        create_pod(core, self.ns, "ide", port=POD_PORT)
        target = {"address": "127.0.0.1", "port": self.echo_port.getHost().port}
        create_kwok_object(
            self.kube_api,
            self.ns,
            "portforwards",
            "PortForward",
            "ide",
            {"forwards": [{"ports": [POD_PORT], "target": target}]},
        )
        base = Path(self.mktemp())
        base.mkdir()
        source = ClusterSource("kubeconfig", kubeconfig=Path(self.kubeconfig))
        self.registry = Registry(base / "clusters", source, {}, reactor)
        self.registry.startService()
        self.instance = self.registry.get("default")
        self.addCleanup(self._stop_registry)
        # Everything this process holds now is not ours to account for.
        self.sockets_before = socket_inodes()
        return self.instance.ready()

    @inlineCallbacks
    def _stop_registry(self) -> Any:
        yield self.registry.stopService()
        self.assertEqual(threads_named("guildnet-default-"), [])
        # Closing transports finish on a later reactor turn: poll briefly.
        deadline = time.monotonic() + 5.0
        while True:
            fds = [c.transport.fileno() for c in self.echo.conns]  # type: ignore[union-attr]
            pod_side = {os.readlink(f"/proc/self/fd/{fd}") for fd in fds}
            left = socket_inodes() - self.sockets_before - pod_side
            if not left or time.monotonic() > deadline:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(
            left, set(), f"{socket_peers(left)}; apiserver {self.kube_api.configuration.host}"
        )

    @inlineCallbacks
    def assert_no_sockets_left(self) -> Any:
        """No socket opened since setUp survives, except the echo server's (the pod's side:
        kwok keeps its connection to the target open after the session ends) and the
        Instance's own API connections (its client's pool may grow while the machine is
        loaded; they are the Registry's, and ``_stop_registry`` proves they close).

        A socket being closed may outlive the last callback by a moment: poll briefly."""
        deadline = time.monotonic() + 5.0
        while True:
            fds = [c.transport.fileno() for c in self.echo.conns]  # type: ignore[union-attr]
            pod_side = {os.readlink(f"/proc/self/fd/{fd}") for fd in fds}
            left = socket_inodes() - self.sockets_before - pod_side - self._api_pool()
            if not left or time.monotonic() > deadline:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(left, set(), socket_peers(left))

    def _api_pool(self) -> set[str]:
        """Sockets of the Instance's kubernetes client pool (idle keep-alive connections)."""
        api_client = self.instance.api_client
        if api_client is None:
            return set()
        pool = api_client.rest_client.pool_manager
        out: set[str] = set()
        for key in list(pool.pools.keys()):
            conn_pool = pool.pools.get(key)
            for conn in list(getattr(conn_pool.pool, "queue", [])) if conn_pool else []:
                sock = getattr(conn, "sock", None) if conn is not None else None
                if sock is not None and sock.fileno() >= 0:
                    out.add(os.readlink(f"/proc/self/fd/{sock.fileno()}"))
        return out

    def _close_pod_side(self) -> None:
        for conn in list(self.echo.conns):
            conn.transport.abortConnection()  # type: ignore[union-attr]

    def manager(self, idle_timeout: float = 60.0, **kw: Any) -> PortForwardManager:
        pf = PortForwardManager(self.instance, reactor, idle_timeout, **kw)
        pf.startService()
        self.addCleanup(lambda: pf.stopService() if pf.running else None)
        return pf

    @inlineCallbacks
    def forward(self, pf: PortForwardManager, pod: str = "ide", timeout: float = 30.0) -> Any:
        """forward(), retried while kwok has not yet seen the PortForward object."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                address = yield pf.forward(self.ns, pod, POD_PORT)
                return address
            except PortForwardError:
                if time.monotonic() > deadline:
                    raise
                yield deferLater(reactor, 0.2, lambda: None)

    @inlineCallbacks
    def connect(self, address: tuple[str, int]) -> Any:
        proto = Collector()
        yield connectProtocol(TCP4ClientEndpoint(reactor, address[0], address[1]), proto)
        return proto

    @inlineCallbacks
    def echo_through(self, address: tuple[str, int], payload: bytes) -> Any:
        client = yield self.connect(address)
        client.transport.write(payload)
        got = yield client.wait_for(len(payload))
        client.transport.loseConnection()
        yield client.lost
        return got

    @inlineCallbacks
    def assert_refused(self, address: tuple[str, int]) -> Any:
        endpoint = TCP4ClientEndpoint(reactor, address[0], address[1])
        with self.assertRaises(ConnectionRefusedError):
            yield connectProtocol(endpoint, Protocol())

    @inlineCallbacks
    def wait_until(self, what: str, check: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                self.fail(f"timed out waiting for {what}")
            yield deferLater(reactor, 0.05, lambda: None)

    # ------------------------------------------------------------------ tests

    @inlineCallbacks
    def test_echo_dedup_concurrency_and_clean_stop(self) -> Any:
        pf = self.manager()
        address = yield self.forward(pf)
        self.assertEqual(address[0], "127.0.0.1")

        # De-duplicated: the same local port, also for concurrent callers.
        again = yield gatherResults([pf.forward(self.ns, "ide", POD_PORT) for _ in range(3)])
        self.assertEqual(set(again), {address})
        self.assertEqual(list(pf.forwards()), [(self.ns, "ide", POD_PORT)])

        # A few MB both ways, several connections at once, through one forward.
        payloads = [os.urandom(512 * 1024) * (i + 1) for i in range(4)]
        echoed = yield gatherResults([self.echo_through(address, p) for p in payloads])
        for sent, got in zip(payloads, echoed, strict=True):
            self.assertEqual(got, sent)

        yield self.wait_until("connections closed", lambda: pf.connection_count() == 0)
        yield pf.stopService()
        yield self.assert_refused(address)
        yield self.assert_no_sockets_left()
        self.assertEqual(threads_named("port"), [])

    @inlineCallbacks
    def test_stop_with_open_connections_leaves_nothing(self) -> Any:
        pf = self.manager()
        address = yield self.forward(pf)
        clients = []
        for _ in range(3):
            c = yield self.connect(address)
            c.transport.write(b"ping")
            yield c.wait_for(4)
            clients.append(c)
        self.assertEqual(pf.connection_count(), 3)
        yield pf.stopService()
        for c in clients:
            yield c.lost
        yield self.assert_no_sockets_left()
        with self.assertRaises(PortForwardError):
            yield pf.forward(self.ns, "ide", POD_PORT)

    @inlineCallbacks
    def test_idle_forward_closes(self) -> Any:
        # A client's close arrives as EOF (it may be a half-close): the session lingers.
        pf = self.manager(idle_timeout=0.5, check_interval=0.1, half_close_linger=0.2)
        address = yield self.forward(pf)
        got = yield self.echo_through(address, b"hello")
        self.assertEqual(got, b"hello")
        # Open connections keep a forward alive however long they last.
        client = yield self.connect(address)
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertIn((self.ns, "ide", POD_PORT), pf.forwards())
        client.transport.loseConnection()
        yield client.lost
        yield self.wait_until("idle close", lambda: not pf.forwards(), timeout=5)
        yield self.assert_refused(address)
        # A later forward() opens a fresh one.
        fresh = yield self.forward(pf)
        got = yield self.echo_through(fresh, b"again")
        self.assertEqual(got, b"again")

    @inlineCallbacks
    def test_invalidate_closes_forward_and_connections(self) -> Any:
        pf = self.manager()
        address = yield self.forward(pf)
        client = yield self.connect(address)
        client.transport.write(b"x")
        yield client.wait_for(1)
        yield pf.invalidate(self.ns, "other-pod")  # unrelated: nothing happens
        self.assertEqual(pf.connection_count(), 1)
        yield pf.invalidate(self.ns, "ide")
        yield client.lost
        self.assertEqual(pf.forwards(), {})
        yield self.assert_refused(address)
        fresh = yield self.forward(pf)
        got = yield self.echo_through(fresh, b"new pod")
        self.assertEqual(got, b"new pod")

    @inlineCallbacks
    def test_half_close_delivers_pending_data_then_closes(self) -> Any:
        pf = self.manager(half_close_linger=0.5)
        address = yield self.forward(pf)
        client = yield self.connect(address)
        payload = os.urandom(256 * 1024)
        client.transport.write(payload)
        client.transport.loseWriteConnection()
        yield client.lost  # the echo arrives, then the linger closes the session
        self.assertEqual(bytes(client.received), payload)

    @inlineCallbacks
    def test_slow_reader_keeps_memory_bounded(self) -> Any:
        total = 96 * 1024 * 1024
        source = Factory.forProtocol(Source)
        source.noisy = False
        source.total = total  # type: ignore[attr-defined]
        source.conns = []  # type: ignore[attr-defined]
        listener = reactor.listenTCP(0, source, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in source.conns])  # type: ignore[attr-defined]
        core: Any = k8s_client.CoreV1Api(self.kube_api)
        yield self.instance.call(create_pod, core, self.ns, "src", port=POD_PORT)
        target = {"address": "127.0.0.1", "port": listener.getHost().port}
        spec = {"forwards": [{"ports": [POD_PORT], "target": target}]}
        yield self.instance.call(
            create_kwok_object, self.kube_api, self.ns, "portforwards", "PortForward", "src", spec
        )
        pf = self.manager()
        address = yield self.forward(pf, pod="src")
        client = yield self.connect(address)
        client.transport.pauseProducing()  # a client that does not read
        before = rss_bytes()
        yield deferLater(reactor, 3.0, lambda: None)
        grown = rss_bytes() - before
        self.assertLess(len(client.received), total)
        print(f"\n[slow reader] RSS grew {grown / 1e6:.1f} MB while the client stalled")
        self.assertLess(grown, 24 * 1024 * 1024, f"RSS grew {grown} bytes for a stalled client")
        client.transport.resumeProducing()
        got = yield client.wait_for(total)
        self.assertEqual(len(got), total)
        client.transport.loseConnection()
        yield client.lost

    @inlineCallbacks
    def test_through_an_http_connect_proxy(self) -> Any:
        proxy = Factory.forProtocol(ConnectProxy)
        proxy.noisy = False
        proxy.targets = []  # type: ignore[attr-defined]
        listener = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        base = Path(self.mktemp())
        base.mkdir()
        source = ClusterSource("kubeconfig", kubeconfig=Path(self.kubeconfig))
        environ = {"HTTPS_PROXY": f"http://127.0.0.1:{listener.getHost().port}"}
        registry = Registry(base / "clusters", source, environ, reactor)
        registry.startService()
        self.addCleanup(registry.stopService)
        instance = registry.get("default")
        yield instance.ready()
        pf = PortForwardManager(instance, reactor, 60.0)
        pf.startService()
        self.addCleanup(pf.stopService)
        address = yield self.forward(pf)
        got = yield self.echo_through(address, b"via proxy" * 1000)
        self.assertEqual(got, b"via proxy" * 1000)
        api_port = instance.server.rsplit(":", 1)[1]
        self.assertIn(f"127.0.0.1:{api_port}", proxy.targets)  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_missing_pod_fails_with_the_api_servers_reason(self) -> Any:
        pf = self.manager()
        with self.assertRaises(PortForwardError) as caught:
            yield pf.forward(self.ns, "no-such-pod", POD_PORT)
        self.assertEqual(caught.exception.status, 404)
        self.assertIn("not found", str(caught.exception))
        self.assertEqual(pf.forwards(), {})
