"""A code-server-like backend on plain Twisted, for proxy tests and the benchmark.

Routes (all relative to where the proxy mounts it):

``/``            302 to ``./login`` without the ``session`` cookie, else a small page
``/login``       sets ``session`` (``Path=/; Domain=<host>``), 302 to ``/?folder=x``
``/redirect-abs`` 302 to ``http://<host>/?folder=abs`` (its own origin, absolute)
``/redirect-away`` 302 to ``https://elsewhere.example/`` (another origin)
``/small``       a 2-byte body (benchmark)
``/echo``        JSON of the method, target and request headers it received
``/download?size=N[&chunked=1]`` N bytes, streamed with backpressure
``/upload``      counts and hashes the request body, answers JSON size + sha256
``/sse?count=N&interval=S`` an event every S (0.1) seconds, N events (default: forever)
``/slow?delay=S`` answers after S seconds
``/ws[?hello=1]`` WebSocket echo (text, binary, ping; ``hello`` sends a greeting first)

A raw httptools server rather than twisted.web: it needs to hijack the
connection for WebSockets and to stay fast enough to be the benchmark's
baseline ("direct").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
from typing import Any
from urllib.parse import parse_qs

import httptools
from twisted.internet import error as ierror
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.backend import ws

CHUNK = 64 * 1024
_BLOCK = b"x" * CHUNK


@implementer(IPushProducer)
class BackendProtocol(Protocol):
    """One client connection; requests are answered one at a time, in order."""

    transport: Any

    def __init__(self, factory: BackendFactory) -> None:
        self.factory = factory
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_size = 0
        self.body_hash: Any = None
        self.busy = False
        self.pending: list[bytes] = []
        self.keep_alive = True
        self.ws_decoder: ws.FrameDecoder | None = None
        self.paused = False
        self.producer_step: Any = None
        self.timer: Any = None
        self.gone = False

    # connection ----------------------------------------------------------------

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason: Failure = ierror.ConnectionDone) -> None:  # type: ignore[assignment]
        self.gone = True
        self.factory.connections.discard(self)
        self._stop_timer()

    def dataReceived(self, data: bytes) -> None:
        if self.ws_decoder is not None:
            self._ws_data(data)
            return
        if self.busy:
            self.pending.append(data)
            self.transport.pauseProducing()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            rest = data[int(e.args[0]) :] if e.args else b""
            if self.ws_decoder is not None and rest:
                self._ws_data(rest)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.loseConnection()

    # IPushProducer (download backpressure) ----------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.producer_step is not None:
            self.producer_step()

    def stopProducing(self) -> None:
        self.paused = True

    # httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body_size = 0
        self.body_hash = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.url.split(b"?")[0] == b"/upload":
            self.body_hash = hashlib.sha256()

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_hash is not None:
            self.body_hash.update(body)

    def on_message_complete(self) -> None:
        self.busy = True
        method = self.parser.get_method()
        path, _, query = self.url.partition(b"?")
        args = {k: v[-1] for k, v in parse_qs(query.decode("latin-1")).items()}
        route = path.decode("latin-1")
        base = self.factory.base_path
        if base:  # an app told its base URL (preserve mode) serves only under it
            route = route[len(base) :] if route.startswith(base + "/") else ""
        handler = ROUTES.get(route)
        if handler is None:
            self.respond(404, [(b"content-type", b"text/plain")], b"not found\n")
            return
        handler(self, method, args)

    # responses -------------------------------------------------------------------

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def host(self) -> str:
        return (self.header(b"host") or b"localhost").decode("latin-1")

    def respond(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, head: bool = False
    ) -> None:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"OK"))]
        lines += [b"%s: %s\r\n" % (n, v) for n, v in headers]
        lines.append(b"content-length: %d\r\n" % len(body))
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        if self.parser.get_method() != b"HEAD" and not head:
            lines.append(body)
        self.transport.write(b"".join(lines))
        self.done()

    def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"OK"))]
        lines += [b"%s: %s\r\n" % (n, v) for n, v in headers]
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        self.transport.write(b"".join(lines))

    def done(self) -> None:
        """The response is complete: take the next request (or close)."""
        self.producer_step = None
        self._stop_timer()
        if not self.keep_alive:
            self.transport.loseConnection()
            return
        self.busy = False
        if self.pending:
            data = b"".join(self.pending)
            self.pending = []
            self.transport.resumeProducing()
            self.dataReceived(data)

    def _stop_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is None:
            return
        if isinstance(timer, LoopingCall):
            if timer.running:
                timer.stop()
        elif timer.active():
            timer.cancel()

    # WebSocket ---------------------------------------------------------------------

    def upgrade_ws(self, hello: bool) -> None:
        key = self.header(b"sec-websocket-key")
        if key is None or (self.header(b"upgrade") or b"").lower() != b"websocket":
            self.respond(400, [(b"content-type", b"text/plain")], b"not a websocket request\n")
            return
        self.ws_decoder = ws.FrameDecoder()
        head = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + ws.accept_key(key) + b"\r\n\r\n"
        )
        if hello:
            head += ws.encode(ws.OP_TEXT, b"hello", mask=False)
        self.transport.write(head)

    def _ws_data(self, data: bytes) -> None:
        assert self.ws_decoder is not None
        out = []
        for opcode, payload in self.ws_decoder.feed(data):
            if opcode in (ws.OP_TEXT, ws.OP_BINARY):
                out.append(ws.encode(opcode, payload, mask=False))
            elif opcode == ws.OP_PING:
                out.append(ws.encode(ws.OP_PONG, payload, mask=False))
            elif opcode == ws.OP_CLOSE:
                out.append(ws.encode(ws.OP_CLOSE, payload[:2], mask=False))
                self.transport.write(b"".join(out))
                self.transport.loseConnection()
                return
        if out:
            self.transport.write(b"".join(out))


REASONS = {
    101: b"Switching Protocols",
    200: b"OK",
    302: b"Found",
    400: b"Bad Request",
    404: b"Not Found",
}


def _root(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    cookie = p.header(b"cookie") or b""
    if b"session=" not in cookie:
        p.respond(302, [(b"location", b"./login")], b"")
        return
    body = b"<!doctype html><title>ide</title><p>folder=%s</p>\n" % args.get("folder", "").encode()
    p.respond(200, [(b"content-type", b"text/html; charset=utf-8")], body)


def _login(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    host = p.host().rsplit(":", 1)[0].strip("[]")
    cookie = b"session=s3cr3t; Path=/; Domain=%s; HttpOnly" % host.encode("latin-1")
    p.respond(302, [(b"set-cookie", cookie), (b"location", b"/?folder=x")], b"")


def _redirect_abs(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    location = f"http://{p.host()}/?folder=abs#frag".encode("latin-1")
    p.respond(302, [(b"location", location)], b"")


def _redirect_away(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    p.respond(302, [(b"location", b"https://elsewhere.example/path?q=1")], b"")


def _small(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    p.respond(200, [(b"content-type", b"text/plain")], b"ok")


def _echo(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    body = json.dumps(
        {
            "method": method.decode("latin-1"),
            "target": p.url.decode("latin-1"),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in p.headers],
            "body_size": p.body_size,
        }
    ).encode()
    p.respond(200, [(b"content-type", b"application/json")], body)


def _upload(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    digest = p.body_hash.hexdigest() if p.body_hash is not None else hashlib.sha256().hexdigest()
    body = json.dumps({"size": p.body_size, "sha256": digest}).encode()
    p.respond(200, [(b"content-type", b"application/json")], body)


def _download(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    size = int(args.get("size", "0"))
    chunked = args.get("chunked") == "1"
    headers = [(b"content-type", b"application/octet-stream")]
    headers.append(
        (b"transfer-encoding", b"chunked") if chunked else (b"content-length", b"%d" % size)
    )
    p.start_response(200, headers)
    if method == b"HEAD":
        p.done()
        return
    remaining = [size]

    def step() -> None:
        while not p.paused and not p.gone:
            n = min(CHUNK, remaining[0])
            if n == 0:
                if chunked:
                    p.transport.write(b"0\r\n\r\n")
                p.done()
                return
            remaining[0] -= n
            block = _BLOCK if n == CHUNK else _BLOCK[:n]
            p.transport.write(b"%x\r\n%s\r\n" % (n, block) if chunked else block)

    p.producer_step = step
    step()


def _sse(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    count = int(args.get("count", "0")) or None
    interval = float(args.get("interval", "0.1"))
    p.start_response(
        200,
        [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"transfer-encoding", b"chunked"),
        ],
    )
    sent = [0]

    def tick() -> None:
        if p.gone:
            return
        sent[0] += 1
        event = b"id: %d\ndata: tick %d\n\n" % (sent[0], sent[0])
        p.transport.write(b"%x\r\n%s\r\n" % (len(event), event))
        if count is not None and sent[0] >= count:
            p.transport.write(b"0\r\n\r\n")
            p.done()

    loop = LoopingCall(tick)
    loop.clock = p.factory.reactor
    p.timer = loop
    loop.start(interval, now=True)


def _slow(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    delay = float(args.get("delay", "1"))
    p.timer = p.factory.reactor.callLater(
        delay, lambda: p.respond(200, [(b"content-type", b"text/plain")], b"slow\n")
    )


def _ws(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    p.upgrade_ws(args.get("hello") == "1")


def _healthz(p: BackendProtocol, method: bytes, args: dict[str, str]) -> None:
    p.respond(200, [(b"content-type", b"text/plain")], b"ok\n")


ROUTES = {
    "/": _root,
    "/login": _login,
    "/redirect-abs": _redirect_abs,
    "/redirect-away": _redirect_away,
    "/small": _small,
    "/echo": _echo,
    "/upload": _upload,
    "/download": _download,
    "/sse": _sse,
    "/slow": _slow,
    "/ws": _ws,
    "/healthz": _healthz,
}


class BackendFactory(Factory):
    """Tracks its connections so a test can close them all (reactor cleanliness)."""

    def __init__(self, reactor: Any, base_path: str = "") -> None:
        self.reactor = reactor
        #: Serve every route under this path only (as Jupyter with its base_url does).
        self.base_path = base_path.rstrip("/")
        self.connections: set[BackendProtocol] = set()
        self.noisy = False

    def buildProtocol(self, addr: Any) -> BackendProtocol:
        return BackendProtocol(self)

    def close_all(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abortConnection()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.backend", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    opts = parser.parse_args(argv)
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    factory: Any = BackendFactory(reactor)
    port = reactor.listenTCP(opts.port, factory, interface=opts.host)
    addr: Any = port.getHost()
    print(f"test backend listening on http://{opts.host}:{addr.port}", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
