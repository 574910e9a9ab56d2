"""SSE fan-out over real TLS connections: many streams get the same ``Frames`` in one
reactor turn, as a changefeed's subscribers do, through the direct chunk writer
(``LeanTLSTransport.write_now``); every client must read every event, in order, in a
well-formed chunked response. Run on both reactors (``make unit``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from guildnet.http.sse import Frames, SSEStream
from guildnet.http.tlstransport import LeanTLSFactory
from guildnet.tls import find_certificate, server_context_factory
from tests.unit.test_tlstransport import until

reactor: Any = _reactor


class Streams(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.open: list[SSEStream] = []

    def render_GET(self, request: Any) -> Any:
        stream = SSEStream(request, reactor, heartbeat=3600)
        stream.start()
        self.open.append(stream)
        stream.on_close(lambda: self.open.remove(stream))
        return NOT_DONE_YET


class Reader(Protocol):
    def __init__(self) -> None:
        self.data = bytearray()

    def connectionMade(self) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"GET /changes HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def body(self) -> bytes:
        """The response body, chunk framing removed (it must be well formed)."""
        head, sep, rest = bytes(self.data).partition(b"\r\n\r\n")
        assert sep and b"transfer-encoding: chunked" in head.lower(), head
        out = bytearray()
        while rest:
            size_line, sep, rest = rest.partition(b"\r\n")
            assert sep, "a cut chunk header"
            size = int(size_line, 16)
            assert rest[size : size + 2] == b"\r\n", "a chunk without its CRLF"
            out += rest[:size]
            rest = rest[size + 2 :]
        return bytes(out)


class FanOutOverTLSTests(TestCase):
    def setUp(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="guildnet-sse-tls-"))
        cert = find_certificate(tmp, tmp / "certs")
        self.streams = Streams()
        site = Site(self.streams)
        site.noisy = False
        self.port = reactor.listenTCP(
            0, LeanTLSFactory(server_context_factory(cert), site), interface="127.0.0.1"
        )
        self.addCleanup(self.port.stopListening)

    async def test_every_client_reads_every_event_in_order(self) -> None:
        readers = []
        for _ in range(20):
            endpoint = wrapClientTLS(
                CertificateOptions(verify=False),
                TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port),
            )
            reader = Reader()
            await connectProtocol(endpoint, reader)
            self.addCleanup(reader.transport.abortConnection)  # type: ignore[union-attr]
            readers.append(reader)
        await until(lambda: len(self.streams.open) == 20, "streams did not open")
        await until(lambda: all(b"stream open" in r.data for r in readers), "no first comment")
        for stream in self.streams.open:
            direct = stream._direct
            assert direct is not None
            self.assertEqual(direct.__name__, "write_now")
        expected = bytearray()
        for turn in range(50):
            # One turn: the same bytes to every stream, as a changefeed's ring writes them.
            frames = Frames.event({"n": turn, "pad": "x" * (turn * 97)}, "change", str(turn))
            if turn % 10 == 9:  # now and then a piece larger than a TLS record
                frames = Frames(frames.data * 200, 200)
            for stream in self.streams.open:
                stream.send_frames(frames)
            expected += frames.data
            await deferLater(reactor, 0, lambda: None)
        for reader in readers:
            await until(
                lambda r=reader: len(r.data) > len(expected) and r.body().endswith(expected),
                "events missing",
            )
            body = reader.body()
            first = b": stream open\n\n"
            self.assertEqual(body[body.index(first) + len(first) :], bytes(expected))
