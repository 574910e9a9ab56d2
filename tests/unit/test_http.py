"""The Host App's HTTP surface over real TLS sockets, in process.

The Site is built exactly as HostApp builds it (HostAPI resource inside a
GuildNetSite, served with the generated certificate) and listens on
127.0.0.1:0; treq talks to it with the certificate pinned. Trial's janitor
fails any test that leaves a socket or timer behind, so every connection is
closed before a test ends.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import treq
from klein import Klein
from treq.client import HTTPClient
from twisted.application.service import MultiService
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS, IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer, provider

from guildnet import __version__
from guildnet.cluster.kubeclient import default_source
from guildnet.cluster.registry import Registry
from guildnet.config import Settings, load_settings
from guildnet.http.api import HostAPI
from guildnet.http.jsonio import MAX_JSON_BYTES
from guildnet.http.site import GuildNetSite, HttpPolicy
from guildnet.http.tlstransport import LeanTLSFactory
from guildnet.monitor import ReactorMonitor
from guildnet.tls import find_certificate, server_context_factory
from tests.kubeconfigs import SECRET_TOKEN, closed_port, kubeconfig_text

reactor: Any = _reactor

FRONTEND = "https://ui.example.test:8443"
GENERATED_ID = re.compile(r"\A[0-9a-f]{16}\Z")


@attrs.frozen
class Reply:
    code: int
    headers: Headers
    body: bytes
    length: int | None  # the Content-Length the server sent (Twisted hides the header)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode())
        return values[0].decode("latin-1") if values else None

    def json(self) -> Any:
        assert (self.header("content-type") or "").startswith("application/json"), self
        return json.loads(self.body)


@implementer(IPolicyForHTTPS)
class PinnedPolicy:
    """Trust exactly the server's certificate, and check it names 127.0.0.1."""

    def __init__(self, pem: bytes) -> None:
        self._options = optionsForClientTLS("127.0.0.1", trustRoot=Certificate.loadPEM(pem))

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self._options


class FakeAPIServer(Resource):
    """Answers GET /version like kube-apiserver, so a cluster can be added."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def render_GET(self, request: IRequest) -> bytes:
        path = request.path.decode()
        self.paths.append(path)
        request.setHeader(b"content-type", b"application/json")
        if path.rstrip("/") != "/version":
            request.setResponseCode(404)
            return b"{}"
        info = {
            "major": "1",
            "minor": "36",
            "gitVersion": "v1.36.0-fake",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.26",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
        return json.dumps(info).encode()


class ServingTestCase(TestCase):
    """Serves resources on loopback and guarantees every connection is gone at the end."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="guildnet-http-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pair = find_certificate(self.tmp, self.tmp / "state" / "certs")
        pool = HTTPConnectionPool(reactor, persistent=True)
        agent = Agent(reactor, contextFactory=PinnedPolicy(self.pair.cert.read_bytes()), pool=pool)
        self.client = HTTPClient(agent)
        # Cleanups run last-in first-out: close the client's pool before the listeners go.
        self._wrappers: list[WrappingFactory] = []
        self.addCleanup(self._close_listeners)
        self.addCleanup(pool.closeCachedConnections)

    def serve(self, resource: IResource, *, tls: bool = True, policy: str = FRONTEND) -> str:
        """Listen on 127.0.0.1:0; returns the base URL."""
        site: Site
        if tls:
            site = GuildNetSite(resource, HttpPolicy(policy))
        else:
            site = Site(resource)
            site.noisy = False
        wrapper = WrappingFactory(site)
        wrapper.noisy = False
        if tls:
            # As guildnet.app listens: TCP plus LeanTLSFactory.
            port = reactor.listenTCP(
                0, LeanTLSFactory(server_context_factory(self.pair), wrapper), interface="127.0.0.1"
            )
        else:
            port = reactor.listenTCP(0, wrapper, interface="127.0.0.1")
        wrapper.port = port  # type: ignore[attr-defined]
        self._wrappers.append(wrapper)
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{port.getHost().port}"

    def _close_listeners(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._close_all())

    async def _close_all(self) -> None:
        for wrapper in self._wrappers:
            await wrapper.port.stopListening()  # type: ignore[attr-defined]
            for proto in list(wrapper.protocols):
                proto.transport.abortConnection()  # type: ignore[union-attr]
            deadline = time.monotonic() + 5
            while wrapper.protocols and time.monotonic() < deadline:
                await deferLater(reactor, 0.01, lambda: None)
            assert not wrapper.protocols, "server connections did not close"

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str | bytes] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        h = Headers()
        for name, value in (headers or {}).items():
            h.addRawHeader(name.encode(), value if isinstance(value, bytes) else value.encode())
        response = await self.client.request(method, url, headers=h, data=body)
        content = await treq.content(response)
        length = response.length if isinstance(response.length, int) else None
        return Reply(response.code, response.headers, content, length)


class HostAPITests(ServingTestCase):
    """HostAPI behind GuildNetSite, with no default cluster (KUBECONFIG is missing)."""

    def setUp(self) -> None:
        super().setUp()
        self.settings: Settings = load_settings(
            {
                "GUILDNET_STATE_DIR": str(self.tmp / "state"),
                "KUBECONFIG": str(self.tmp / "missing"),
                "FRONTEND_ORIGIN": FRONTEND,
                "K8S_NAMESPACE": "team-a",
                "HOSTAPP_USE_PORT_FORWARD": "yes",
            }
        )
        self.registry = Registry(self.settings.clusters_dir, None, {}, reactor)
        self.monitor = ReactorMonitor(reactor)
        services = MultiService()
        self.registry.setServiceParent(services)
        self.monitor.setServiceParent(services)
        services.startService()
        # Runs after the client pool is closed and before the listeners stop.
        self.addCleanup(services.stopService)
        api = HostAPI(self.settings, self.registry, self.monitor)
        self.base = self.serve(api.app.resource())

    async def post_cluster(self, body: Any, content_type: str = "application/json") -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.request(
            "POST", f"{self.base}/api/clusters", {"content-type": content_type}, raw
        )

    def assert_error(self, reply: Reply, code: int, error: str, field: str | None = None) -> Any:
        self.assertEqual(reply.code, code, reply.body)
        body = reply.json()
        self.assertEqual(body["error"], error)
        self.assertIsInstance(body["message"], str)
        self.assertTrue(body["message"])
        self.assertEqual(body["request_id"], reply.header("x-request-id"))
        self.assertEqual(body.get("field"), field)
        return body

    # health and configuration -------------------------------------------

    async def test_healthz_and_security_headers(self) -> None:
        r = await self.request("GET", f"{self.base}/healthz")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.json(), {"status": "ok", "version": __version__})
        self.assertRegex(r.header("x-request-id") or "", GENERATED_ID)
        csp = r.header("content-security-policy") or ""
        self.assertIn("frame-ancestors 'self'", csp)
        self.assertIn("default-src 'self'", csp)
        self.assertNotIn("*", csp)
        self.assertEqual(r.header("x-content-type-options"), "nosniff")
        self.assertIn(r.header("referrer-policy"), ("same-origin", "strict-origin", "no-referrer"))
        hsts = re.fullmatch(r"max-age=(\d+).*", r.header("strict-transport-security") or "")
        assert hsts is not None
        self.assertGreaterEqual(int(hsts.group(1)), 86400)
        self.assertEqual(r.header("cache-control"), "no-store")

    async def test_every_response_gets_a_fresh_request_id(self) -> None:
        ids = {
            (await self.request("GET", f"{self.base}/healthz")).header("x-request-id")
            for _ in range(3)
        }
        self.assertEqual(len(ids), 3)

    async def test_readyz_without_default_cluster(self) -> None:
        r = await self.request("GET", f"{self.base}/readyz")
        self.assertEqual(r.code, 503)
        body = r.json()
        self.assertEqual(body["status"], "unavailable")
        checks = body["checks"]
        self.assertEqual(set(checks), {"reactor", "registry", "cluster", "rethinkdb"})
        # RethinkDB is a non-fatal part, idle until a DB route first needs it.
        self.assertEqual(checks["rethinkdb"]["state"], "idle")
        self.assertIs(checks["rethinkdb"]["fatal"], False)
        self.assertTrue(checks["reactor"]["ok"], checks["reactor"])
        self.assertTrue(checks["registry"]["ok"])
        self.assertIs(checks["cluster"]["ok"], False)
        self.assertIn(str(self.settings.kubeconfig), checks["cluster"]["error"])

    async def test_ui_config(self) -> None:
        r = await self.request("GET", f"{self.base}/api/ui-config")
        self.assertEqual(r.code, 200)
        self.assertEqual(
            r.json(),
            {
                "version": __version__,
                "origin": FRONTEND,
                "defaultCluster": None,
                "namespace": "team-a",
                "features": {
                    "embeddedOperator": True,
                    "portForward": True,
                    "apiServerPodProxy": True,
                    "workspaceLoadBalancer": False,
                    "workspaceDomain": None,
                },
            },
        )

    async def test_openapi_json_is_the_generated_document(self) -> None:
        from guildnet.http.openapi import document

        r = await self.request("GET", f"{self.base}/api/openapi.json")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("content-type"), "application/json; charset=utf-8")
        self.assertIn("default-src 'self'", r.header("content-security-policy") or "")
        self.assertEqual(r.json(), document())
        self.assertEqual(r.json()["info"]["version"], __version__)

    # request ids ----------------------------------------------------------

    async def test_short_printable_request_id_is_echoed(self) -> None:
        for rid in ("abc-123", "x" * 128, "trace:ID/with+punct~!"):
            r = await self.request("GET", f"{self.base}/healthz", {"x-request-id": rid})
            self.assertEqual(r.header("x-request-id"), rid)
        r = await self.request("GET", f"{self.base}/nope", {"x-request-id": "err-7"})
        self.assertEqual(self.assert_error(r, 404, "not_found")["request_id"], "err-7")

    async def test_unacceptable_request_id_is_replaced(self) -> None:
        for rid in (b"x" * 129, b"has space", b"caf\xc3\xa9", b"tab\there", b"ctl\x01x"):
            r = await self.request("GET", f"{self.base}/healthz", {"x-request-id": rid})
            self.assertEqual(r.code, 200, rid)
            self.assertRegex(r.header("x-request-id") or "", GENERATED_ID, rid)

    # CORS -----------------------------------------------------------------

    async def test_cors_allows_exactly_the_frontend_origin(self) -> None:
        r = await self.request("GET", f"{self.base}/healthz", {"origin": FRONTEND})
        self.assertEqual(r.header("access-control-allow-origin"), FRONTEND)
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        self.assertIn("Origin", r.header("vary") or "")
        self.assertIn("X-Request-Id", r.header("access-control-expose-headers") or "")

    async def test_cors_ignores_other_origins(self) -> None:
        others = (
            "https://evil.example",
            "https://ui.example.test",
            "http://ui.example.test:8443",
            FRONTEND + "/",
            "null",
        )
        for origin in others:
            r = await self.request("GET", f"{self.base}/healthz", {"origin": origin})
            self.assertEqual(r.code, 200)
            self.assertIsNone(r.header("access-control-allow-origin"), origin)
            self.assertIsNone(r.header("access-control-allow-credentials"), origin)

    async def test_preflight_for_the_frontend_origin(self) -> None:
        r = await self.request(
            "OPTIONS",
            f"{self.base}/api/clusters",
            {
                "origin": FRONTEND,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        self.assertEqual(r.code, 204)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("access-control-allow-origin"), FRONTEND)
        self.assertEqual(r.header("access-control-allow-credentials"), "true")
        methods = (r.header("access-control-allow-methods") or "").replace(" ", "").split(",")
        self.assertIn("POST", methods)
        self.assertIn("DELETE", methods)
        self.assertIn("content-type", (r.header("access-control-allow-headers") or "").lower())
        self.assertRegex(r.header("x-request-id") or "", GENERATED_ID)

    async def test_preflight_for_another_origin_is_denied(self) -> None:
        for headers in (
            {"origin": "https://evil.example", "access-control-request-method": "DELETE"},
            {"access-control-request-method": "DELETE"},
        ):
            r = await self.request("OPTIONS", f"{self.base}/api/clusters/x", headers)
            self.assert_error(r, 403, "cors_origin_denied")
            self.assertIsNone(r.header("access-control-allow-origin"))
            self.assertIsNone(r.header("access-control-allow-methods"))

    # routing errors ----------------------------------------------------------

    async def test_unknown_route_is_json_404(self) -> None:
        r = await self.request("GET", f"{self.base}/no/such/route")
        body = self.assert_error(r, 404, "not_found")
        self.assertIn("/no/such/route", body["message"])
        self.assertIn("frame-ancestors", r.header("content-security-policy") or "")

    async def test_wrong_method_is_json_405_with_allow(self) -> None:
        for method, path, allowed in (
            ("POST", "/healthz", {"GET"}),
            ("DELETE", "/api/clusters", {"GET", "POST"}),
            ("PUT", "/api/clusters/abc", {"GET", "DELETE"}),
        ):
            r = await self.request(method, f"{self.base}{path}")
            self.assert_error(r, 405, "method_not_allowed")
            allow = {m.strip() for m in (r.header("allow") or "").split(",")}
            self.assertTrue(allowed <= allow, (path, allow))
            self.assertNotIn(method, allow)

    # POST /api/clusters validation -----------------------------------------------

    async def test_add_cluster_rejects_bad_ids(self) -> None:
        kc = kubeconfig_text(f"https://127.0.0.1:{closed_port()}")
        for bad in ("UPPER", "-lead", "trail-", "a_b", "a.b", "", "x" * 64, "é"):
            r = await self.post_cluster({"id": bad, "kubeconfig": kc})
            self.assert_error(r, 400, "invalid_field", "id")
        r = await self.post_cluster({"id": 7, "kubeconfig": kc})
        self.assertIn("string", self.assert_error(r, 400, "invalid_field", "id")["message"])
        r = await self.post_cluster({"kubeconfig": kc})
        self.assertIn("required", self.assert_error(r, 400, "invalid_field", "id")["message"])
        self.assertEqual(list(self.settings.clusters_dir.iterdir()), [])

    async def test_add_cluster_rejects_bad_kubeconfigs(self) -> None:
        r = await self.post_cluster({"id": "dev"})
        self.assertIn(
            "required", self.assert_error(r, 400, "invalid_field", "kubeconfig")["message"]
        )
        r = await self.post_cluster({"id": "dev", "kubeconfig": "clusters: [unclosed"})
        body = self.assert_error(r, 400, "invalid_field", "kubeconfig")
        self.assertIn("YAML", body["message"])
        r = await self.post_cluster({"id": "dev", "kubeconfig": "just: a mapping\n"})
        self.assert_error(r, 400, "invalid_field", "kubeconfig")
        r = await self.post_cluster({"id": "dev", "kubeconfig": ["not", "a", "string"]})
        self.assert_error(r, 400, "invalid_field", "kubeconfig")
        r = await self.post_cluster({"id": "dev", "name": 5, "kubeconfig": "x"})
        self.assert_error(r, 400, "invalid_field", "name")
        self.assertEqual(list(self.settings.clusters_dir.iterdir()), [])

    async def test_body_must_be_a_json_object(self) -> None:
        for raw in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
            r = await self.post_cluster(raw)
            self.assert_error(r, 400, "invalid_json")

    async def test_non_json_content_type_is_415(self) -> None:
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            r = await self.post_cluster({"id": "dev", "kubeconfig": "x"}, content_type=ctype)
            self.assert_error(r, 415, "unsupported_media_type")
        r = await self.post_cluster({"id": "-bad"}, content_type="Application/JSON; charset=utf-8")
        self.assert_error(r, 400, "invalid_field", "id")

    async def test_body_over_one_mebibyte_is_413(self) -> None:
        r = await self.post_cluster(b"{" + b" " * MAX_JSON_BYTES + b"}")
        self.assert_error(r, 413, "body_too_large")
        # exactly the limit is still read, and fails on its content instead
        exact = b'{"id": "-bad"' + b" " * (MAX_JSON_BYTES - 14) + b"}"
        self.assertEqual(len(exact), MAX_JSON_BYTES)
        self.assert_error(await self.post_cluster(exact), 400, "invalid_field", "id")

    async def test_unreachable_cluster_is_422_and_leaves_nothing(self) -> None:
        server = f"https://127.0.0.1:{closed_port()}"
        r = await self.post_cluster({"id": "far", "kubeconfig": kubeconfig_text(server)})
        body = self.assert_error(r, 422, "cluster_unreachable", "kubeconfig")
        self.assertIn("cannot validate the cluster", body["message"])
        self.assertIn("refused", body["message"].lower())
        self.assertNotIn(SECRET_TOKEN, r.body.decode())
        self.assertEqual(list(self.settings.clusters_dir.iterdir()), [])
        listing = await self.request("GET", f"{self.base}/api/clusters")
        self.assertEqual(listing.json(), {"clusters": []})

    # cluster paths ---------------------------------------------------------

    async def test_cluster_paths_validate_the_id(self) -> None:
        for method in ("GET", "DELETE"):
            r = await self.request(method, f"{self.base}/api/clusters/nope")
            self.assert_error(r, 404, "cluster_not_found", "clusterId")
            r = await self.request(method, f"{self.base}/api/clusters/Bad_Id")
            self.assert_error(r, 400, "invalid_field", "clusterId")
        # no default cluster is configured here, so "default" is just unknown
        r = await self.request("DELETE", f"{self.base}/api/clusters/default")
        self.assert_error(r, 404, "cluster_not_found", "clusterId")

    async def test_cluster_life_cycle(self) -> None:
        fake = FakeAPIServer()
        server = self.serve(fake, tls=False)
        kc = kubeconfig_text(server)
        r = await self.post_cluster({"id": "dev", "name": "Dev box", "kubeconfig": kc})
        self.assertEqual(r.code, 201, r.body)
        added = r.json()
        self.assertEqual(
            added,
            {
                "id": "dev",
                "name": "Dev box",
                "server": server,
                "reachable": True,
                "version": "v1.36.0-fake",
                "error": None,
                "deletable": True,
            },
        )
        self.assertTrue(all(p.rstrip("/") == "/version" for p in fake.paths), fake.paths)
        stored = self.settings.clusters_dir / "dev" / "kubeconfig"
        self.assertEqual(stored.read_text(), kc)
        self.assertEqual(stat.S_IMODE(stored.stat().st_mode), 0o600)

        r = await self.post_cluster({"id": "dev", "kubeconfig": kc})
        self.assert_error(r, 409, "cluster_exists", "id")

        listing = await self.request("GET", f"{self.base}/api/clusters")
        self.assertEqual(listing.json(), {"clusters": [added]})
        self.assertNotIn(SECRET_TOKEN, listing.body.decode())
        self.assertNotIn("kubeconfig", listing.body.decode())
        one = await self.request("GET", f"{self.base}/api/clusters/dev")
        self.assertEqual(one.json(), added)
        ui = await self.request("GET", f"{self.base}/api/ui-config")
        self.assertIsNone(ui.json()["defaultCluster"])

        r = await self.request("DELETE", f"{self.base}/api/clusters/dev")
        self.assertEqual((r.code, r.json()), (200, {"deleted": "dev"}))
        self.assertFalse((self.settings.clusters_dir / "dev").exists())
        self.assertNotIn("dev", self.registry.instances())
        r = await self.request("GET", f"{self.base}/api/clusters/dev")
        self.assert_error(r, 404, "cluster_not_found", "clusterId")

    # access log -------------------------------------------------------------

    async def test_access_log_has_one_event_per_request(self) -> None:
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("log_namespace") == "guildnet.access":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        ok = await self.request("GET", f"{self.base}/healthz", {"x-request-id": "log-ok"})
        missing = await self.request("GET", f"{self.base}/missing", {"x-request-id": "log-404"})
        pre = await self.request(
            "OPTIONS",
            f"{self.base}/healthz",
            {"x-request-id": "log-pre", "origin": FRONTEND, "access-control-request-method": "GET"},
        )
        seen = {e["request_id"]: e for e in events}
        self.assertEqual(len(events), 3, events)
        for rid, reply, method, path in (
            ("log-ok", ok, "GET", "/healthz"),
            ("log-404", missing, "GET", "/missing"),
            ("log-pre", pre, "OPTIONS", "/healthz"),
        ):
            event = seen[rid]
            self.assertEqual(event["method"], method)
            self.assertEqual(event["path"], path)
            self.assertEqual(event["status"], reply.code)
            self.assertEqual(event["bytes"], len(reply.body))
            self.assertIsInstance(event["duration_ms"], float)
            self.assertGreaterEqual(event["duration_ms"], 0.0)
            self.assertLess(event["duration_ms"], 10_000.0)
            self.assertEqual(event["client"], "127.0.0.1")
            self.assertEqual(event["user"], "local")  # the loopback listener's identity
            self.assertIn(" user=local ", event["guildnet_text"])


class AbortedRequestLogTests(ServingTestCase):
    """A client that goes away mid-response (an SSE tab closed) still gets its log line."""

    async def test_client_disconnect_is_logged(self) -> None:
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            if event.get("log_namespace") == "guildnet.access":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

        class Forever(Resource):
            isLeaf = True

            def render_GET(self, request: IRequest) -> Any:
                request.write(b"first chunk")
                return NOT_DONE_YET

        base = self.serve(Forever())
        response = await self.client.get(
            f"{base}/stream", headers=Headers({"x-request-id": ["gone"]}), unbuffered=True
        )
        reader = _Discard()
        response.deliverBody(reader)
        assert reader.transport is not None
        # The documented way to abandon a body: it aborts the connection.
        reader.transport.stopProducing()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while not events and time.monotonic() < deadline:
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(events), 1, events)
        self.assertEqual(events[0]["request_id"], "gone")
        self.assertEqual(events[0]["outcome"], "client_closed")
        self.assertEqual(events[0]["bytes"], len(b"first chunk"))


class _Discard(Protocol):
    def dataReceived(self, data: bytes) -> None:
        pass


class DefaultClusterTests(ServingTestCase):
    """A default cluster from KUBECONFIG, served by a fake API server on loopback."""

    def setUp(self) -> None:
        super().setUp()
        self.fake = FakeAPIServer()
        self.server = self.serve(self.fake, tls=False)
        kubeconfig = self.tmp / "kubeconfig"
        kubeconfig.write_text(kubeconfig_text(self.server))
        settings = load_settings(
            {"GUILDNET_STATE_DIR": str(self.tmp / "state"), "KUBECONFIG": str(kubeconfig)}
        )
        source = default_source(settings.kubeconfig, None, in_cluster=False)
        self.registry = Registry(settings.clusters_dir, source, {}, reactor)
        monitor = ReactorMonitor(reactor)
        services = MultiService()
        self.registry.setServiceParent(services)
        monitor.setServiceParent(services)
        services.startService()
        self.addCleanup(services.stopService)
        self.base = self.serve(HostAPI(settings, self.registry, monitor).app.resource())

    async def test_readyz_ok_when_the_default_cluster_answers(self) -> None:
        r = await self.request("GET", f"{self.base}/readyz")
        self.assertEqual(r.code, 200, r.body)
        body = r.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(
            body["checks"]["cluster"],
            {"ok": True, "server": self.server, "version": "v1.36.0-fake"},
        )
        self.assertIn("default", self.registry.instances())  # started on demand
        self.assertIn("/version", [p.rstrip("/") for p in self.fake.paths])

    async def test_readyz_reports_only_the_default_cluster(self) -> None:
        """Another cluster going down shows in its own health, never in /readyz."""
        import guildnet.http.api as api_module

        self.patch(api_module, "REACHABILITY_TTL", 0.0)  # probe on every request
        other = FakeAPIServer()
        other_url = self.serve(other, tls=False)
        body = json.dumps({"id": "other", "kubeconfig": kubeconfig_text(other_url)})
        r = await self.request(
            "POST", f"{self.base}/api/clusters", {"content-type": "application/json"}, body.encode()
        )
        self.assertEqual(r.code, 201, r.body)
        # The other cluster's API server goes away.
        wrapper = self._wrappers.pop()
        await wrapper.port.stopListening()  # type: ignore[attr-defined]
        for proto in list(wrapper.protocols):
            proto.transport.abortConnection()  # type: ignore[union-attr]
        r = await self.request("GET", f"{self.base}/api/clusters/other")
        self.assertIs(r.json()["reachable"], False, r.body)
        health = await self.request("GET", f"{self.base}/api/cluster/other/health")
        self.assertEqual(health.code, 503, health.body)
        self.assertIs(health.json()["parts"]["kubernetes"]["ok"], False)
        r = await self.request("GET", f"{self.base}/readyz")
        self.assertEqual(r.code, 200, r.body)
        checks = r.json()["checks"]
        self.assertEqual(checks["cluster"]["server"], self.server)
        self.assertTrue(checks["cluster"]["ok"])
        self.assertNotIn(other_url, r.body.decode())

    async def test_default_cluster_is_listed_but_not_deletable(self) -> None:
        ui = await self.request("GET", f"{self.base}/api/ui-config")
        self.assertEqual(ui.json()["defaultCluster"], "default")
        listing = (await self.request("GET", f"{self.base}/api/clusters")).json()["clusters"]
        self.assertEqual([(c["id"], c["deletable"]) for c in listing], [("default", False)])
        self.assertNotIn(SECRET_TOKEN, json.dumps(listing))
        r = await self.request("DELETE", f"{self.base}/api/clusters/default")
        self.assertEqual(r.code, 409, r.body)
        self.assertEqual(r.json()["error"], "cluster_not_deletable")
        r = await self.post_default()
        self.assertEqual((r.code, r.json()["error"]), (409, "cluster_exists"))

    async def post_default(self) -> Reply:
        body = json.dumps({"id": "default", "kubeconfig": kubeconfig_text(self.server)})
        return await self.request(
            "POST", f"{self.base}/api/clusters", {"content-type": "application/json"}, body.encode()
        )


failing = Klein()


@failing.route("/boom")
def boom(request: IRequest) -> bytes:
    raise RuntimeError("secret-detail-in-exception")


@failing.route("/later")
def later(request: IRequest) -> Deferred[bytes]:
    def fail() -> bytes:
        raise ValueError("secret-detail-in-deferred")

    return deferLater(reactor, 0, fail)


@failing.route("/partial")
def partial(request: IRequest) -> Deferred[bytes]:
    request.write(b'{"items": [')

    def fail() -> bytes:
        raise KeyError("secret-detail-after-headers")

    return deferLater(reactor, 0, fail)


class InternalErrorTests(ServingTestCase):
    """Unhandled handler failures become JSON 500s; details go only to the log."""

    async def test_sync_and_async_failures_are_json_500(self) -> None:
        base = self.serve(failing.resource())
        for path, exc in (("/boom", RuntimeError), ("/later", ValueError)):
            r = await self.request("GET", f"{base}{path}", {"x-request-id": f"rid{path}"})
            self.assertEqual(r.code, 500)
            body = r.json()
            self.assertEqual(
                body,
                {
                    "error": "internal_error",
                    "message": body["message"],
                    "request_id": f"rid{path}",
                },
            )
            text = r.body.decode()
            for leak in ("Traceback", "secret-detail", 'File "', exc.__name__):
                self.assertNotIn(leak, text)
            self.assertEqual(r.length, len(r.body))
            self.assertEqual(r.header("x-content-type-options"), "nosniff")
            logged = self.flushLoggedErrors(exc)
            self.assertEqual(len(logged), 1)

    async def test_failure_after_headers_were_sent_drops_the_connection(self) -> None:
        """A half-written body must not look complete: the client sees data loss."""
        base = self.serve(failing.resource())
        response = await self.client.get(f"{base}/partial")
        self.assertEqual(response.code, 200)
        with self.assertRaises(ResponseFailed):
            await treq.content(response)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
