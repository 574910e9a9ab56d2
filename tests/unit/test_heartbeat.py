"""Reading an app's heartbeat through a route (``proxy.heartbeat``), over real sockets.

A twisted.web server on loopback stands in for the workspace app (the real code-server
and JupyterLab answer on the real-node tier, ``tests/realnode/test_idle_culling.py``).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from guildnet.proxy.engine import Resolved, Target
from guildnet.proxy.heartbeat import HeartbeatError, fetch, request_head
from guildnet.proxy.upstream import Endpoint, UpstreamPool
from guildnet.workspaces.idle import parse_heartbeat

reactor: Any = _reactor


class _App(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def render_GET(self, request: Any) -> bytes:
        self.seen.append(
            {
                "path": request.uri.decode(),
                "connection": request.getHeader(b"connection"),
                "authorization": request.getHeader(b"authorization"),
                "host": request.getHeader(b"host"),
            }
        )
        if request.path == b"/healthz":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"status": "alive", "lastHeartbeat": 1780000000500}).encode()
        request.setResponseCode(403)
        return b"{}"


class HeartbeatTests(TestCase):
    def setUp(self) -> None:
        self.app = _App()
        self.site = Site(self.app)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.pool = UpstreamPool(reactor)
        self.addCleanup(self.pool.close)
        endpoint = Endpoint("127.0.0.1", self.port.getHost().port)
        self.target = Target(endpoint=endpoint, route="service", description="test app")

    async def test_reads_code_server_heartbeat_on_a_closed_connection(self) -> None:
        status, body = await fetch(reactor, self.pool, Resolved(self.target), "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(parse_heartbeat("code-server", body), 1780000000.5)
        (seen,) = self.app.seen
        self.assertEqual(seen["connection"], b"close")
        self.assertEqual(seen["host"], b"localhost")
        self.assertIsNone(seen["authorization"])
        # Nothing is kept open (code-server counts open connections as use).
        await _later(0.2)
        self.assertEqual(self.pool.open_connections, 0)
        self.assertEqual(self.pool.idle_count(), 0)

    async def test_token_and_refusal(self) -> None:
        with self.assertRaises(HeartbeatError):
            await fetch(reactor, self.pool, Resolved(self.target), "/api/status", token="t0k")
        self.assertEqual(self.app.seen[-1]["authorization"], b"token t0k")

    def test_pod_proxy_takes_authorization_so_the_token_goes_in_the_query(self) -> None:
        target = Target(
            endpoint=Endpoint("198.18.0.1", 6443),
            route="podproxy",
            description="pod proxy",
            path_prefix="/api/v1/namespaces/ns/pods/p:8888/proxy",
            authorization=lambda: b"Bearer api",
        )
        head = request_head(target, "/lab/api/status", "a b").decode()
        self.assertTrue(
            head.startswith(
                "GET /api/v1/namespaces/ns/pods/p:8888/proxy/lab/api/status?token=a%20b HTTP/1.1"
            ),
            head,
        )
        self.assertIn("\r\nAuthorization: Bearer api\r\n", head)
        self.assertIn("\r\nHost: 198.18.0.1:6443\r\n", head)
        self.assertIn("\r\nConnection: close\r\n", head)


def _later(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
