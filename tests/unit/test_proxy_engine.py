"""The proxy engine over real sockets, in process: GuildNetSite (TLS) -> engine -> backend.

The test backend (``tests.backend``) behaves like code-server. Requests go to
``/proxy/127.0.0.1:<port>/`` (allowlisted) or to ``/proxy/server/<name>/`` resolved from
fake informers. A raw client (httptools-parsed, pausable) checks streaming: uploads
and downloads must not pile up in the proxy (its buffers are measured while the other
side is stalled), SSE events arrive one by one, WebSockets echo, and a client that
leaves takes its upstream connection with it. Trial's janitor fails any test that
leaves a socket or timer behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httptools
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from zope.interface import implementer, provider

from guildnet.http.site import GuildNetSite, HttpPolicy
from guildnet.http.tlstransport import LeanTLSFactory
from guildnet.proxy.engine import ProxyConfig, ProxyEngine
from guildnet.proxy.policy import parse_allowlist
from guildnet.proxy.routes import RouteOptions, ServerRoutes
from guildnet.proxy.tlsdirect import DirectTLS
from guildnet.tls import find_certificate, server_context_factory
from tests.backend import ws
from tests.backend.server import BackendFactory

reactor: Any = _reactor
FRONTEND = "https://hostapp.example.test"
MB = 1024 * 1024


# --- a raw HTTP client ------------------------------------------------------------------


@attrs.define
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    size: int
    sha256: str
    arrivals: list[float]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[-1] if values else None

    def all(self, name: str) -> list[str]:
        low = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == low]

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient(Protocol):
    """One keep-alive connection; one request at a time; bodies hashed, optionally kept."""

    transport: Any

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()
        self.gone = False
        self._reply: Deferred[Reply] | None = None
        self._head: Deferred[None] | None = None
        self._parser: Any = None
        self._keep = True
        self._head_only = False
        self._wsbuf = b""
        self._ws_waiter: Deferred[bytes] | None = None
        self.ws_decoder: ws.FrameDecoder | None = None
        self.ws_messages: list[tuple[int, bytes]] = []
        self._ws_message_waiter: Deferred[None] | None = None

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.gone = True
        if self._reply is not None and not self._reply.called:
            self._reply.errback(reason)
        if self._ws_waiter is not None and not self._ws_waiter.called:
            self._ws_waiter.errback(reason)
        self.lost.callback(None)

    # HTTP

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        keep_body: bool = True,
        head: Deferred[None] | None = None,
    ) -> Deferred[Reply]:
        hdrs = {"Host": "127.0.0.1", **(headers or {})}
        if body is not None and "Transfer-Encoding" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
        self._start(keep_body, method == "HEAD", head)
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        assert self._reply is not None
        return self._reply

    def _start(self, keep: bool, head_only: bool, head: Deferred[None] | None) -> None:
        self._reply = Deferred()
        self._head = head
        self._keep = keep
        self._head_only = head_only
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._hash = hashlib.sha256()
        self._arrivals: list[float] = []

    def dataReceived(self, data: bytes) -> None:
        if self.ws_decoder is not None:
            self._ws_feed(data)
            return
        if self._ws_waiter is not None:
            self._wsbuf += data
            if b"\r\n\r\n" in self._wsbuf:
                head, _, rest = self._wsbuf.partition(b"\r\n\r\n")
                waiter, self._ws_waiter = self._ws_waiter, None
                if head.startswith(b"HTTP/1.1 101"):
                    self.ws_decoder = ws.FrameDecoder()
                    waiter.callback(head)
                    if rest:
                        self._ws_feed(rest)
                else:
                    waiter.callback(head + b"\r\n\r\n" + rest)
            return
        with contextlib.suppress(httptools.HttpParserCallbackError):
            self._parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._head is not None:
            self._head.callback(None)
        if self._head_only:
            self._complete()
            raise StopIteration

    def on_body(self, body: bytes) -> None:
        self._arrivals.append(time.monotonic())
        self._size += len(body)
        self._hash.update(body)
        if self._keep:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._complete()

    def _complete(self) -> None:
        reply = Reply(
            self._parser.get_status_code(),
            self._headers,
            b"".join(self._chunks),
            self._size,
            self._hash.hexdigest(),
            self._arrivals,
        )
        d, self._reply = self._reply, None
        if d is not None and not d.called:
            d.callback(reply)

    # WebSocket

    def upgrade(
        self, target: str, then: bytes = b"", headers: dict[str, str] | None = None
    ) -> Deferred[bytes]:
        """Send an upgrade request; ``then`` follows it in the same write (pipelined)."""
        key = ws.new_key().decode()
        lines = [
            f"GET {target} HTTP/1.1",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {FRONTEND}",
        ]
        self._ws_waiter = Deferred()
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + then)
        return self._ws_waiter

    def send_ws(self, opcode: int, payload: bytes) -> None:
        self.transport.write(ws.encode(opcode, payload, mask=True))

    def _ws_feed(self, data: bytes) -> None:
        assert self.ws_decoder is not None
        self.ws_messages += self.ws_decoder.feed(data)
        if self._ws_message_waiter is not None and self.ws_messages:
            w, self._ws_message_waiter = self._ws_message_waiter, None
            w.callback(None)

    async def next_ws(self) -> tuple[int, bytes]:
        while not self.ws_messages:
            self._ws_message_waiter = Deferred()
            await self._ws_message_waiter.addTimeout(5, reactor)
        return self.ws_messages.pop(0)


@implementer(IPushProducer)
class UploadProducer:
    """Streams ``total`` bytes into a transport as fast as it accepts them."""

    def __init__(self, transport: Any, total: int) -> None:
        self.transport = transport
        self.remaining = total
        self.sent = 0
        self.hash = hashlib.sha256()
        self.paused = False
        self.block = bytes(range(256)) * 256  # 64 KiB, not all one byte

    def start(self) -> None:
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.remaining > 0:
            piece = self.block[: min(len(self.block), self.remaining)]
            self.remaining -= len(piece)
            self.sent += len(piece)
            self.hash.update(piece)
            self.transport.write(piece)
        if self.remaining == 0:
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self.paused = True


# --- a stalling upstream ------------------------------------------------------------------


class StallingUpstream(Protocol):
    """Reads nothing until released, then counts a request body and answers JSON."""

    transport: Any

    def __init__(self, owner: StallingFactory) -> None:
        self.owner = owner
        self.parser = httptools.HttpRequestParser(self)
        self.size = 0

    def connectionMade(self) -> None:
        self.owner.connections.append(self)
        self.transport.pauseProducing()

    def release(self) -> None:
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)

    def on_message_complete(self) -> None:
        body = json.dumps({"size": self.size}).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )


class StallingFactory(Factory):
    def __init__(self) -> None:
        self.connections: list[StallingUpstream] = []
        self.noisy = False

    def buildProtocol(self, addr: Any) -> StallingUpstream:
        return StallingUpstream(self)


def held_bytes(transport: Any) -> int:
    """Bytes waiting in a transport chain's user-space write buffers (TLS and TCP)."""
    total = 0
    seen = 0
    while transport is not None and seen < 6:
        attrs_ = vars(transport)
        total += len(attrs_.get("dataBuffer", b"") or b"") + attrs_.get("_tempDataLen", 0)
        total += sum(len(x) for x in attrs_.get("_appSendBuffer", []) or [])
        transport = attrs_.get("transport")
        seen += 1
    return total


# --- fake cluster state for /proxy/server/ -----------------------------------------------------


class FakeInformer:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.cache = {
            ((i["metadata"].get("namespace") or ""), i["metadata"]["name"]): i for i in items
        }
        self.handlers: list[Callable[..., None]] = []

    def items(self) -> list[dict[str, Any]]:
        return list(self.cache.values())

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cache.get((namespace, name))

    def subscribe(self, handler: Callable[..., None]) -> Callable[[], None]:
        self.handlers.append(handler)
        return lambda: self.handlers.remove(handler)

    def wait_synced(self) -> Deferred[None]:
        return succeed(None)

    def emit(self, event: str, obj: dict[str, Any]) -> None:
        for h in list(self.handlers):
            h(event, obj, None)


class FakeWorkspaces:
    namespace = "ws"
    crd_ready = None

    def __init__(self, workspaces: list[dict[str, Any]]) -> None:
        self.informers = {
            "Workspace": FakeInformer(workspaces),
            "Service": FakeInformer([]),
            "Pod": FakeInformer([]),
        }

    def workspace(self, name: str) -> dict[str, Any] | None:
        return self.informers["Workspace"].get(self.namespace, name)

    def pods_of(self, name: str) -> list[dict[str, Any]]:
        return []


class FakeRegistry:
    def __init__(self) -> None:
        self.instance = object()

    def get(self, cluster_id: str) -> Any:
        from guildnet.cluster.registry import UnknownCluster

        if cluster_id != "default":
            raise UnknownCluster(cluster_id)
        return self.instance


def workspace(name: str, agent_host: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ws"},
        "spec": {
            "image": "example/ide:1",
            "ports": [{"containerPort": port}],
            "env": [{"name": "AGENT_HOST", "value": agent_host}],
        },
    }


# --- the stack under test ----------------------------------------------------------------------


class ProxyStackCase(TestCase):
    """The Host App's proxy stack in process, shared by the proxy tests over real sockets.

    A subclass's setUp calls ``start_backend``, builds ``self.engine`` (with
    ``fake_routes`` for /proxy/server/), then ``serve_tls`` with its GuildNetSite.
    Shutdown closes every client, listener and connection so trial's janitor finds
    nothing; ``stop_upstreams`` is the hook for a subclass's own listeners.
    """

    engine: ProxyEngine
    workspaces: FakeWorkspaces

    def start_backend(self) -> None:
        self.backend_factory = BackendFactory(reactor)
        self.backend = reactor.listenTCP(0, self.backend_factory, interface="127.0.0.1")
        self.bport = self.backend.getHost().port

    def fake_routes(self, config: ProxyConfig) -> ServerRoutes:
        """/proxy/server/ routes resolved from ``self.workspaces`` on cluster ``default``."""
        return ServerRoutes(
            FakeRegistry(),
            lambda instance: self.workspaces,
            self.engine.pool,
            reactor,
            RouteOptions(),
            config.allowlist,
        )

    def serve_tls(self, site: GuildNetSite) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="guildnet-proxy-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        cert = find_certificate(tmp, tmp / "certs")
        self.wrapper = WrappingFactory(site)
        self.wrapper.noisy = False
        # The Host App's own TLS stack (guildnet.app): TCP plus LeanTLSFactory.
        self.listener = reactor.listenTCP(
            0, LeanTLSFactory(server_context_factory(cert), self.wrapper), interface="127.0.0.1"
        )
        self.port = self.listener.getHost().port
        self.clients: list[RawClient] = []
        self.addCleanup(self._shutdown)

    async def stop_upstreams(self) -> None:
        """Close a subclass's own upstream listeners and connections (none here)."""

    async def _shutdown(self) -> None:
        for c in self.clients:
            if not c.gone:
                c.transport.abortConnection()
        await self.engine.close()
        await self.listener.stopListening()
        await self.backend.stopListening()
        self.backend_factory.close_all()
        await self.stop_upstreams()
        for proto in list(self.wrapper.protocols):
            proto.transport.abortConnection()  # type: ignore[union-attr]
        await self.until(
            lambda: (
                not self.wrapper.protocols
                and not self.backend_factory.connections
                and all(c.gone for c in self.clients)
            ),
            "connections did not close",
        )
        await deferLater(reactor, 0, lambda: None)

    async def until(self, cond: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(what)
            await deferLater(reactor, 0.01, lambda: None)

    async def connect(self) -> RawClient:
        """A raw client on a new TLS connection to the Host App (certificate not checked)."""
        endpoint = wrapClientTLS(
            CertificateOptions(verify=False), TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        )
        client = RawClient()
        await connectProtocol(endpoint, client)
        self.clients.append(client)
        return client


# --- the tests -----------------------------------------------------------------------------------


class ProxyEngineTests(ProxyStackCase):
    timeout = 60

    def setUp(self) -> None:
        self.start_backend()
        self.stall_factory = StallingFactory()
        self.stall = reactor.listenTCP(0, self.stall_factory, interface="127.0.0.1")
        self.sport = self.stall.getHost().port
        closed = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.closed_port = closed.getHost().port
        closed.stopListening()

        allow = (
            f"127.0.0.1:{self.bport}",
            f"127.0.0.1:{self.sport}",
            f"127.0.0.1:{self.closed_port}",
        )
        config = ProxyConfig(allowlist=parse_allowlist(allow), frontend_origin=FRONTEND)
        self.engine = ProxyEngine(reactor, config)
        self.workspaces = FakeWorkspaces([workspace("ide", f"127.0.0.1:{self.bport}", self.bport)])
        self.engine.servers = self.fake_routes(config)
        self.serve_tls(GuildNetSite(Resource(), HttpPolicy(FRONTEND), interceptor=self.engine))

    async def stop_upstreams(self) -> None:
        await self.stall.stopListening()
        for s in self.stall_factory.connections:
            s.transport.abortConnection()

    @property
    def prefix(self) -> str:
        return f"/proxy/127.0.0.1:{self.bport}"

    async def get(self, path: str, **kw: Any) -> Reply:
        client = await self.connect()
        return await client.request("GET", path, **kw)

    # routes and headers ------------------------------------------

    async def test_login_flow_redirects_and_cookies(self) -> None:
        client = await self.connect()
        first = await client.request("GET", self.prefix + "/")
        self.assertEqual(first.status, 302)
        self.assertEqual(first.header("location"), "./login")  # relative: already in prefix
        self.assertEqual(first.header("x-guildnet-route"), "direct")
        self.assertTrue(first.header("x-request-id"))

        login = await client.request("GET", self.prefix + "/login")
        self.assertEqual(login.status, 302)
        self.assertEqual(login.header("location"), self.prefix + "/?folder=x")
        cookie = login.header("set-cookie") or ""
        self.assertIn(f"Path={self.prefix}/", cookie)
        self.assertNotIn("Domain", cookie)
        self.assertIn("Secure", cookie)
        self.assertIn("SameSite=None", cookie)

        page = await client.request(
            "GET", self.prefix + "/?folder=x", headers={"Cookie": "session=s3cr3t"}
        )
        self.assertEqual(page.status, 200)
        self.assertIn(b"folder=x", page.body)
        self.assertIn("frame-ancestors 'self' " + FRONTEND, page.header("content-security-policy"))
        self.assertEqual(self.engine.pool.connects, 1, "one upstream connection, kept alive")

    async def test_absolute_redirects(self) -> None:
        own = await self.get(self.prefix + "/redirect-abs")
        self.assertEqual(own.header("location"), self.prefix + "/?folder=abs#frag")
        away = await self.get(self.prefix + "/redirect-away")
        self.assertEqual(away.header("location"), "https://elsewhere.example/path?q=1")

    async def test_no_slash_redirects_to_slash_form(self) -> None:
        client = await self.connect()
        reply = await client.request("GET", self.prefix)
        self.assertEqual(reply.status, 307)
        self.assertEqual(reply.header("location"), self.prefix + "/")
        again = await client.request("GET", "/proxy/server/ide?x=1")  # same connection
        self.assertEqual(again.status, 307)
        self.assertEqual(again.header("location"), "/proxy/server/ide/?x=1")

    async def test_request_headers_forwarded(self) -> None:
        reply = await self.get(
            self.prefix + "/echo?q=1",
            headers={
                "Cookie": "guildnet_session=host-secret; theme=dark",
                "X-Forwarded-Host": "evil.example",
                "X-GuildNet-Route": "podproxy",
                "Authorization": "Basic aG9zdDpzZWNyZXQ=",
            },
        )
        echo = reply.json()
        got = {n: v for n, v in echo["headers"]}
        self.assertEqual(echo["target"], "/echo?q=1")
        self.assertEqual(got["cookie"], "theme=dark")
        self.assertNotIn("authorization", got)
        self.assertNotIn("x-guildnet-route", got)
        self.assertEqual(got["x-forwarded-host"], "127.0.0.1")
        self.assertEqual(got["x-forwarded-proto"], "https")
        self.assertEqual(got["x-forwarded-prefix"], self.prefix)
        self.assertEqual(got["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(reply.header("x-guildnet-route"), "direct")

    async def test_head(self) -> None:
        client = await self.connect()
        reply = await client.request("HEAD", self.prefix + "/download?size=12345")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.header("content-length"), "12345")
        after = await client.request("GET", self.prefix + "/small")
        self.assertEqual(after.body, b"ok")

    # refusals and errors ------------------------------------------

    async def test_loopback_target_not_allowlisted_is_403(self) -> None:
        reply = await self.get("/proxy/127.0.0.1:1/")
        self.assertEqual(reply.status, 403)
        body = reply.json()
        self.assertEqual(body["error"], "proxy_target_refused")
        self.assertIn("loopback", body["message"])
        self.assertTrue(body["request_id"])

    async def test_unknown_workspace_is_404(self) -> None:
        reply = await self.get("/proxy/server/nope/")
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.json()["error"], "workspace_not_found")

    async def test_unknown_cluster_is_404(self) -> None:
        reply = await self.get("/api/cluster/other/proxy/server/ide/")
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.json()["error"], "cluster_not_found")

    async def test_bad_path_is_400(self) -> None:
        reply = await self.get("/proxy/server/Not_A_Label/")
        self.assertEqual(reply.status, 400)
        self.assertEqual(reply.json()["error"], "bad_proxy_path")

    async def test_unreachable_upstream_is_502_naming_target(self) -> None:
        reply = await self.get(f"/proxy/127.0.0.1:{self.closed_port}/")
        self.assertEqual(reply.status, 502)
        body = reply.json()
        self.assertEqual(body["error"], "upstream_unreachable")
        self.assertIn(f"127.0.0.1:{self.closed_port}", body["message"])
        self.assertIn("refused", body["message"])

    async def test_not_a_proxy_uri_falls_through(self) -> None:
        reply = await self.get("/proxyless")
        self.assertEqual(reply.status, 404)  # the (empty) Resource tree answered

    # workspaces by name ------------------------------------------

    async def test_server_route_via_agent_host(self) -> None:
        client = await self.connect()
        reply = await client.request("GET", "/proxy/server/ide/login")
        self.assertEqual(reply.status, 302)
        self.assertEqual(reply.header("x-guildnet-route"), "agent")
        self.assertEqual(reply.header("location"), "/proxy/server/ide/?folder=x")
        self.assertIn("Path=/proxy/server/ide/", reply.header("set-cookie") or "")
        again = await client.request("GET", "/proxy/server/ide/small")
        self.assertEqual(again.body, b"ok")
        routes = self.engine.servers.cluster("default")  # type: ignore[union-attr]
        self.assertEqual(routes.dials, 1, "the route decision is cached")
        # A change to the workspace drops the cached decision.
        self.workspaces.informers["Workspace"].emit(
            "MODIFIED", workspace("ide", f"127.0.0.1:{self.bport}", self.bport)
        )
        self.assertNotIn("ide", routes.cache)
        third = await client.request("GET", "/proxy/server/ide/small")
        self.assertEqual(third.status, 200)
        self.assertEqual(routes.dials, 2)

    async def test_server_route_refuses_loopback_agent_host(self) -> None:
        self.workspaces.informers["Workspace"].cache[("ws", "evil")] = workspace(
            "evil", "127.0.0.1:22", 22
        )
        reply = await self.get("/proxy/server/evil/")
        self.assertEqual(reply.status, 502)
        self.assertIn("loopback", reply.json()["message"])

    # streaming ------------------------------------------

    async def test_upload_streams_with_bounded_buffers(self) -> None:
        client = await self.connect()
        total = 48 * MB
        head = (
            f"POST /proxy/127.0.0.1:{self.sport}/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {total}\r\n\r\n"
        ).encode()
        client._start(True, False, None)
        reply = client._reply
        assert reply is not None
        client.transport.write(head)
        producer = UploadProducer(client.transport, total)
        producer.start()
        await self.until(lambda: bool(self.stall_factory.connections), "no upstream connection")
        await deferLater(reactor, 1.0, lambda: None)  # the upstream reads nothing meanwhile
        (exchange,) = self.engine.exchanges
        assert exchange.conn is not None
        held = held_bytes(exchange.conn.transport) + sum(map(len, exchange.channel._dataBuffer))
        self.assertLess(held, 2 * MB, "the proxy must not buffer a stalled upload")
        self.assertLess(producer.sent, total, "the client must have been slowed down")
        self.stall_factory.connections[0].release()
        result = await reply
        self.assertEqual(result.status, 200)
        self.assertEqual(result.json()["size"], total)

    async def test_upload_hash_through_backend(self) -> None:
        client = await self.connect()
        total = 8 * MB + 123
        head = (
            f"POST {self.prefix}/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {total}\r\n\r\n"
        ).encode()
        client._start(True, False, None)
        reply = client._reply
        assert reply is not None
        client.transport.write(head)
        producer = UploadProducer(client.transport, total)
        producer.start()
        result = (await reply).json()
        self.assertEqual(result, {"size": total, "sha256": producer.hash.hexdigest()})

    async def test_chunked_upload(self) -> None:
        client = await self.connect()
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"abc", b"x" * 70000, b"z"))
        reply = await client.request(
            "POST",
            self.prefix + "/upload",
            headers={"Transfer-Encoding": "chunked"},
            body=body + b"0\r\n\r\n",
        )
        expected = hashlib.sha256(b"abc" + b"x" * 70000 + b"z").hexdigest()
        self.assertEqual(reply.json(), {"size": 70004, "sha256": expected})

    async def test_download_to_slow_reader_is_bounded(self) -> None:
        client = await self.connect()
        size = 64 * MB
        head: Deferred[None] = Deferred()
        reply = client.request(
            "GET", self.prefix + f"/download?size={size}", keep_body=False, head=head
        )
        await head
        client.transport.pauseProducing()  # a slow reader: stop reading for a while
        await deferLater(reactor, 1.0, lambda: None)
        (exchange,) = self.engine.exchanges
        assert exchange.conn is not None
        self.assertTrue(exchange.conn._paused, "the upstream is paused while the client is slow")
        held = held_bytes(exchange.channel.transport) + held_bytes(exchange.conn.transport)
        self.assertLess(held, 2 * MB, "the proxy must not buffer for a slow reader")
        client.transport.resumeProducing()
        result = await reply
        self.assertEqual(result.size, size)

    async def test_chunked_download(self) -> None:
        reply = await self.get(self.prefix + "/download?size=300000&chunked=1", keep_body=False)
        self.assertEqual(reply.size, 300000)

    async def test_sse_events_arrive_incrementally(self) -> None:
        reply = await self.get(self.prefix + "/sse?count=5&interval=0.1")
        self.assertEqual(reply.header("content-type"), "text/event-stream")
        self.assertEqual(reply.body.count(b"data: tick"), 5)
        self.assertGreaterEqual(len(reply.arrivals), 5, "each event is flushed on its own")
        self.assertGreater(reply.arrivals[-1] - reply.arrivals[0], 0.3)

    async def test_client_disconnect_closes_upstream(self) -> None:
        client = await self.connect()
        client.request("GET", self.prefix + "/slow?delay=30").addErrback(lambda f: None)
        await self.until(lambda: bool(self.backend_factory.connections), "no upstream")
        await self.until(lambda: bool(self.engine.exchanges), "no exchange")
        client.transport.abortConnection()
        await self.until(
            lambda: not self.backend_factory.connections, "the upstream request was not cancelled"
        )
        self.assertFalse(self.engine.exchanges)

    # WebSockets ------------------------------------------

    async def test_websocket_echo(self) -> None:
        client = await self.connect()
        head = await client.upgrade(self.prefix + "/ws?hello=1")
        self.assertIn(b"101", head.split(b"\r\n")[0])
        self.assertIn(b"x-guildnet-route: direct", head.lower())
        self.assertEqual(await client.next_ws(), (ws.OP_TEXT, b"hello"))
        client.send_ws(ws.OP_TEXT, b"ping one")
        self.assertEqual(await client.next_ws(), (ws.OP_TEXT, b"ping one"))
        big = bytes(range(256)) * 4096  # 1 MiB binary
        client.send_ws(ws.OP_BINARY, big)
        self.assertEqual(await client.next_ws(), (ws.OP_BINARY, big))
        self.assertEqual(len(self.engine.splices), 1)
        (splice,) = self.engine.splices
        self.assertIsInstance(splice.client, DirectTLS, "the TLS protocol was not taken over")
        # close_notify from the client ends the splice and the upstream connection.
        client.transport.loseConnection()
        await self.until(lambda: not self.backend_factory.connections, "upstream not closed")
        self.assertFalse(self.engine.splices)

    async def test_websocket_frames_pipelined_with_the_upgrade_keep_their_order(self) -> None:
        client = await self.connect()
        frames = b"".join(ws.encode(ws.OP_TEXT, b"early %d" % i, mask=True) for i in range(3))
        head = await client.upgrade(self.prefix + "/ws", then=frames)
        self.assertIn(b"101", head.split(b"\r\n")[0])
        got = [await client.next_ws() for _ in range(3)]
        self.assertEqual(got, [(ws.OP_TEXT, b"early %d" % i) for i in range(3)])
        client.send_ws(ws.OP_TEXT, b"after")
        self.assertEqual(await client.next_ws(), (ws.OP_TEXT, b"after"))

    async def test_websocket_many_messages_in_both_directions(self) -> None:
        """Many small records in one TCP read, and replies that span several records."""
        client = await self.connect()
        await client.upgrade(self.prefix + "/ws")
        sizes = [1, 125, 126, 65535, 65536, 16384 * 3 + 7, 0, 300_000]
        for size in sizes:
            client.send_ws(ws.OP_BINARY, bytes([size % 251]) * size)
        for size in sizes:
            self.assertEqual(await client.next_ws(), (ws.OP_BINARY, bytes([size % 251]) * size))

    async def test_websocket_upstream_close_closes_client(self) -> None:
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("log_namespace") == "guildnet.access":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        client = await self.connect()
        await client.upgrade("/proxy/server/ide/ws", headers={"X-Request-Id": "ws-up"})
        client.send_ws(ws.OP_CLOSE, b"\x03\xe8")
        await client.lost
        self.assertFalse(self.engine.splices)
        (event,) = [e for e in events if e["request_id"] == "ws-up"]
        self.assertEqual((event["status"], event["outcome"]), (101, "complete"))

    async def test_websocket_is_logged_when_it_closes(self) -> None:
        """One access-log line per WebSocket, written at the close with bytes both ways
        and the whole duration (not at the upgrade with bytes=0)."""
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("log_namespace") == "guildnet.access":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        client = await self.connect()
        head = await client.upgrade(self.prefix + "/ws?hello=1", headers={"X-Request-Id": "ws-log"})
        self.assertIn(b"101", head.split(b"\r\n")[0])
        self.assertEqual(await client.next_ws(), (ws.OP_TEXT, b"hello"))
        payload = b"x" * 10_000
        client.send_ws(ws.OP_BINARY, payload)
        self.assertEqual(await client.next_ws(), (ws.OP_BINARY, payload))
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([e for e in events if e["request_id"] == "ws-log"], [], "logged early")
        client.transport.loseConnection()
        await self.until(lambda: not self.engine.splices, "splice not closed")
        (event,) = [e for e in events if e["request_id"] == "ws-log"]
        self.assertEqual(event["status"], 101)
        self.assertEqual(event["path"], self.prefix + "/ws")
        # Frames both ways: the hello and the echo down, the masked payload up.
        self.assertGreaterEqual(event["bytes"], len(payload) + len(b"hello"))
        self.assertGreaterEqual(event["bytes_in"], len(payload))
        self.assertGreaterEqual(event["duration_ms"], 200.0)
        self.assertEqual(event["outcome"], "client_closed")
        self.assertIn(f"bytes_in={event['bytes_in']} ", event["guildnet_text"])

    async def test_preserve_path_target_gets_the_full_path(self) -> None:
        """HOSTAPP_PROXY_PRESERVE_PATH: an app told its base URL gets the public path."""
        to = f"127.0.0.1:{self.bport}"
        self.engine.config = attrs.evolve(
            self.engine.config, preserve_path=frozenset({("127.0.0.1", self.bport)})
        )
        self.backend_factory.base_path = f"/proxy/{to}"
        client = await self.connect()
        reply = await client.request("GET", f"/proxy/{to}/echo?a=1")
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(json.loads(reply.body)["target"], f"/proxy/{to}/echo?a=1")
        login = await client.request("GET", f"/proxy/{to}/login")
        self.assertEqual(login.header("location"), f"/proxy/{to}/?folder=x")
        wsc = await self.connect()
        head = await wsc.upgrade(f"/proxy/{to}/ws?hello=1")
        self.assertIn(b"101", head.split(b"\r\n")[0])
        self.assertEqual(await wsc.next_ws(), (ws.OP_TEXT, b"hello"))

    async def test_default_cluster_spelling_redirects_to_the_canonical_url(self) -> None:
        client = await self.connect()
        reply = await client.request("GET", "/api/cluster/default/proxy/server/ide/lab?x=1")
        self.assertEqual(reply.status, 307)
        self.assertEqual(reply.header("location"), "/proxy/server/ide/lab?x=1")

    async def test_an_address_of_a_workspace_redirects_to_its_canonical_url(self) -> None:
        to = f"127.0.0.1:{self.bport}"
        self.engine.owner = lambda host, port: (
            "ide" if (host, port) == ("127.0.0.1", self.bport) else None
        )
        client = await self.connect()
        reply = await client.request("GET", f"/proxy/{to}/lab?x=1")
        self.assertEqual(reply.status, 307)
        self.assertEqual(reply.header("location"), "/proxy/server/ide/lab?x=1")
        other = await client.request("GET", f"/proxy/127.0.0.1:{self.closed_port}/")
        self.assertEqual(other.status, 502)  # not a workspace's: proxied (nothing listens)

    async def test_websocket_idle_timeout(self) -> None:
        self.engine.config = attrs.evolve(self.engine.config, ws_idle_timeout=0.2)
        client = await self.connect()
        await client.upgrade(self.prefix + "/ws")
        self.engine.sweep()
        self.assertEqual(len(self.engine.splices), 1, "not idle yet")
        await deferLater(reactor, 0.3, lambda: None)
        self.engine.sweep()
        await client.lost
        self.assertFalse(self.engine.splices)
