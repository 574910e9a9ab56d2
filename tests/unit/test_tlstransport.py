"""LeanTLSTransport over real sockets: the Host App's TLS layer, against Twisted's
own TLS client (a different code path on the other end)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from guildnet.http.tlstransport import LeanTLSFactory, LeanTLSTransport
from guildnet.tls import find_certificate, server_context_factory

reactor: Any = _reactor


async def until(cond: Any, what: str, seconds: float = 10.0) -> None:
    """Poll ``cond`` on the reactor until it holds; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await deferLater(reactor, 0.01, lambda: None)


class Echo(Protocol):
    def __init__(self, owner: EchoFactory) -> None:
        self.owner = owner

    def connectionMade(self) -> None:
        self.owner.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.owner.lost.append(reason)


class EchoFactory(Factory):
    def __init__(self) -> None:
        self.connections: list[Echo] = []
        self.lost: list[Failure] = []

    def buildProtocol(self, addr: Any) -> Echo:
        return Echo(self)


class Client(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.reason = reason
        self.closed.callback(None)


class LeanTLSTests(TestCase):
    def setUp(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="guildnet-tls-"))
        cert = find_certificate(tmp, tmp / "certs")
        self.echo = EchoFactory()
        self.factory = LeanTLSFactory(server_context_factory(cert), self.echo)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    async def connect(self) -> Client:
        endpoint = wrapClientTLS(
            CertificateOptions(verify=False),
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port),
        )
        client = Client()
        await connectProtocol(endpoint, client)
        self.addCleanup(self._abort, client)
        return client

    def _abort(self, client: Client) -> Deferred[None]:
        if not client.closed.called:
            client.transport.abortConnection()  # type: ignore[union-attr]
        return client.closed

    async def test_echo_of_every_size_keeps_bytes_and_order(self) -> None:
        client = await self.connect()
        sent = bytearray()
        for size in (1, 100, 16383, 16384, 16385, 65536, 300_001, 0, 7):
            piece = bytes((size + i) % 251 for i in range(size))
            sent += piece
            client.transport.write(piece)  # type: ignore[union-attr]
        await until(lambda: len(client.received) >= len(sent), "echo incomplete")
        self.assertEqual(bytes(client.received), bytes(sent))
        (server,) = self.echo.connections
        self.assertIsInstance(server.transport, LeanTLSTransport)
        self.assertIsNotNone(server.transport._raw, "the raw path was used")  # type: ignore[union-attr]

    async def test_many_small_records_in_one_read(self) -> None:
        client = await self.connect()
        await until(lambda: bool(self.echo.connections), "no server connection")
        tls = client.transport
        # Many writes in one reactor turn: Twisted's client sends them as many records
        # that arrive together.
        for i in range(200):
            tls.write(b"%04d" % i)  # type: ignore[union-attr]
        expected = b"".join(b"%04d" % i for i in range(200))
        await until(lambda: len(client.received) >= len(expected), "echo incomplete")
        self.assertEqual(bytes(client.received), expected)

    async def test_close_notify_ends_cleanly(self) -> None:
        client = await self.connect()
        client.transport.write(b"x")  # type: ignore[union-attr]
        await until(lambda: client.received == b"x", "no echo")
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.closed
        await until(lambda: bool(self.echo.lost), "server side not closed")
        await until(lambda: not self.factory.protocols, "factory still tracks it")

    async def test_garbage_after_the_handshake_fails_the_connection(self) -> None:
        client = await self.connect()
        client.transport.write(b"x")  # type: ignore[union-attr]
        await until(lambda: client.received == b"x", "no echo")
        raw_tcp = client.transport.transport  # type: ignore[union-attr]
        raw_tcp.write(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # a record that cannot decrypt
        await until(lambda: bool(self.echo.lost), "server kept a broken connection")
        await client.closed
        self.assertIn("bad record mac", str(client.reason.value))  # type: ignore[union-attr]

    async def test_write_now_keeps_order_behind_held_writes_and_sends_at_once(self) -> None:
        """The SSE fan-out's path: ``write_now`` (optionally through the socket's immediate
        send, as ``guildnet.http.sse`` sets it up) after writes the aggregator holds, and
        sizes on both sides of one record."""
        from guildnet.proxy.netutil import send_at_once, write_through

        client = await self.connect()
        client.transport.write(b"x")  # type: ignore[union-attr]
        await until(lambda: client.received == b"x", "no echo")
        (server,) = self.echo.connections
        tls: Any = server.transport
        expected = bytearray(b"x")
        for immediate in (False, True):
            if immediate:
                write_through(tls)
                tls._send_at_once = send_at_once(tls)
                self.assertIsNotNone(tls._send_at_once)
            for size in (5, 16384, 16385, 70_000, 1):
                held = b"held-%d;" % size
                tls.write(held)  # into the aggregator, for the next turn
                now = bytes((size + i) % 251 for i in range(size))
                tls.write_now(now)  # must follow ``held``
                expected += held + now
        await until(lambda: len(client.received) >= len(expected), "data incomplete")
        self.assertEqual(bytes(client.received), bytes(expected))
        tls.loseConnection()
        await client.closed
        tls.write_now(b"after the end")  # ignored, as Twisted's write is
