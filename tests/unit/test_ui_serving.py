"""Serving the built UI (guildnet/http/static.py, guildnet/http/ui_routes.py) over real sockets.

No cluster and no browser: a StaticUI over a temporary directory shaped like a Vite build,
alone and mounted on the Host App's router next to the API, served by GuildNetSite over
TLS exactly as the daemon does. Runs anywhere (no network namespace needed).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import reactor as _reactor
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

import guildnet.http.ui_routes as ui_routes
from guildnet.cluster.registry import Registry
from guildnet.config import load_settings
from guildnet.http.api import HostAPI
from guildnet.http.static import NOT_BUILT_PAGE, StaticUI
from guildnet.monitor import ReactorMonitor
from tests.unit.test_http import PinnedPolicy, Reply, ServingTestCase

reactor: Any = _reactor

INDEX = b'<!doctype html><html><head><script type="module" src="/assets/app-1a2b.js"></script>'
JS = b"console.log('guildnet');\n" * 200  # big enough to be compressed
CSS = b"body{margin:0}"


def make_build(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "app-1a2b.js").write_bytes(JS)
    (root / "assets" / "app-3c4d.css").write_bytes(CSS)
    (root / "assets" / "logo-5e6f.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "assets" / ".hidden").write_bytes(b"hidden")
    (root / ".gitignore").write_bytes(b"*\n")
    return root


class StaticUITests(ServingTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.web = make_build(self.tmp / "web")
        (self.tmp / "secret.txt").write_bytes(b"top secret")
        self.base = self.serve(StaticUI(self.web))

    async def get(self, path: str, **headers: str) -> Reply:
        return await self.request("GET", f"{self.base}{path}", headers)

    def assert_json_404(self, reply: Reply) -> None:
        self.assertEqual(reply.code, 404, reply)
        body = reply.json()
        self.assertEqual(body["error"], "not_found")
        self.assertTrue(body["request_id"])

    async def test_index_is_never_cached_and_carries_the_csp(self) -> None:
        for path in ("/", "/index.html"):
            reply = await self.get(path)
            self.assertEqual(reply.code, 200)
            self.assertEqual(reply.body, INDEX)
            self.assertEqual(reply.header("content-type"), "text/html; charset=utf-8")
            self.assertEqual(reply.header("cache-control"), "no-cache")
            csp = reply.header("content-security-policy") or ""
            self.assertIn("script-src 'self'", csp)
            self.assertNotIn("unsafe-inline", csp)
            self.assertEqual(reply.header("x-content-type-options"), "nosniff")

    async def test_hashed_assets_are_immutable_with_their_types(self) -> None:
        cases = {
            "/assets/app-1a2b.js": "text/javascript; charset=utf-8",
            "/assets/app-3c4d.css": "text/css; charset=utf-8",
            "/assets/logo-5e6f.svg": "image/svg+xml",
        }
        for path, ctype in cases.items():
            reply = await self.get(path)
            self.assertEqual(reply.code, 200, path)
            self.assertEqual(reply.header("content-type"), ctype)
            self.assertEqual(reply.header("cache-control"), "public, max-age=31536000, immutable")
            self.assertEqual(reply.body, (self.web / path.lstrip("/")).read_bytes())

    async def raw_get(self, path: str, **headers: str) -> Reply:
        """A GET without treq, which would decode gzip and drop Content-Encoding."""
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, contextFactory=PinnedPolicy(self.pair.cert.read_bytes()), pool=pool)
        h = Headers({k.encode(): [v.encode()] for k, v in headers.items()})
        response = await agent.request(b"GET", f"{self.base}{path}".encode(), h)
        body = await readBody(response)
        await pool.closeCachedConnections()
        return Reply(response.code, response.headers, body, None)

    async def test_gzip_when_accepted(self) -> None:
        plain = await self.raw_get("/assets/app-1a2b.js")
        self.assertIsNone(plain.header("content-encoding"))
        self.assertEqual(plain.body, JS)
        zipped = await self.raw_get("/assets/app-1a2b.js", **{"accept-encoding": "gzip, br"})
        self.assertEqual(zipped.header("content-encoding"), "gzip")
        self.assertLess(len(zipped.body), len(JS) // 10)
        self.assertEqual(gzip.decompress(zipped.body), JS)
        self.assertIn("Accept-Encoding", zipped.header("vary") or "")
        refused = await self.raw_get("/assets/app-1a2b.js", **{"accept-encoding": "gzip;q=0"})
        self.assertIsNone(refused.header("content-encoding"))
        tiny = await self.raw_get("/assets/app-3c4d.css", **{"accept-encoding": "gzip"})
        self.assertIsNone(tiny.header("content-encoding"))  # not worth it

    async def test_etag_revalidation(self) -> None:
        first = await self.get("/assets/app-1a2b.js")
        etag = first.header("etag")
        assert etag is not None
        again = await self.get("/assets/app-1a2b.js", **{"if-none-match": etag})
        self.assertEqual(again.code, 304)
        self.assertEqual(again.body, b"")
        other = await self.get("/assets/app-1a2b.js", **{"if-none-match": '"nope"'})
        self.assertEqual(other.code, 200)

    async def test_a_rebuilt_file_is_served_fresh(self) -> None:
        first = await self.get("/")
        index = self.web / "index.html"
        index.write_bytes(INDEX + b"<!-- v2 -->")
        st = index.stat()
        os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        second = await self.get("/")
        self.assertNotEqual(first.header("etag"), second.header("etag"))
        self.assertTrue(second.body.endswith(b"<!-- v2 -->"))

    async def test_missing_files_are_json_404s(self) -> None:
        for path in ("/assets/nope.js", "/assets/", "/nope.txt", "/clusters"):
            self.assert_json_404(await self.get(path))

    async def test_never_outside_the_directory(self) -> None:
        os.symlink(self.tmp / "secret.txt", self.web / "assets" / "link.txt")
        for path in (
            "/assets/../../secret.txt",
            "/assets/%2e%2e/%2e%2e/secret.txt",
            "/assets/..%2f..%2fsecret.txt",
            "/%2e%2e/secret.txt",
            "/assets/link.txt",
            "/assets/.hidden",
            "/.gitignore",
            "/assets/app-1a2b.js%00.png",
            "/assets/%5c..%5csecret.txt",
        ):
            reply = await self.request("GET", f"{self.base}{path}")
            self.assert_json_404(reply)
            self.assertNotIn(b"top secret", reply.body)

    async def test_head(self) -> None:
        reply = await self.request("HEAD", f"{self.base}/")
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.body, b"")
        self.assertEqual(reply.header("content-type"), "text/html; charset=utf-8")

    async def test_not_built(self) -> None:
        base = self.serve(StaticUI(self.tmp / "empty"))
        reply = await self.request("GET", f"{base}/")
        self.assertEqual(reply.code, 503)
        self.assertEqual(reply.body, NOT_BUILT_PAGE)
        self.assertIn(b"make ui", reply.body)
        self.assertEqual(reply.header("content-type"), "text/html; charset=utf-8")
        self.assert_json_404(await self.request("GET", f"{base}/assets/app.js"))

    async def test_spa_fallback(self) -> None:
        base = self.serve(StaticUI(self.web, spa_fallback=True))
        for path in ("/clusters", "/c/default/servers/x"):
            reply = await self.request("GET", f"{base}{path}")
            self.assertEqual((reply.code, reply.body), (200, INDEX), path)
        for path in ("/api/x", "/sse/servers", "/proxy/x", "/assets/nope", "/nope.js"):
            self.assert_json_404(await self.request("GET", f"{base}{path}"))


class MountedUITests(ServingTestCase):
    """The UI routes on the Host App's router: API routes keep their own answers."""

    def setUp(self) -> None:
        super().setUp()
        web = make_build(self.tmp / "web")
        saved = ui_routes.WEB_DIR
        ui_routes.WEB_DIR = web  # type: ignore[misc]
        ui_routes.ui_resource.cache_clear()

        def restore() -> None:
            ui_routes.WEB_DIR = saved  # type: ignore[misc]
            ui_routes.ui_resource.cache_clear()

        self.addCleanup(restore)
        settings = load_settings(
            {"GUILDNET_STATE_DIR": str(self.tmp / "state"), "KUBECONFIG": str(self.tmp / "none")}
        )
        registry = Registry(settings.clusters_dir, None, {}, reactor)
        services = MultiService()
        registry.setServiceParent(services)
        ReactorMonitor(reactor).setServiceParent(services)
        services.startService()
        self.addCleanup(services.stopService)
        self.base = self.serve(HostAPI(settings, registry, ReactorMonitor(reactor)).app.resource())

    async def test_ui_and_api_side_by_side(self) -> None:
        index = await self.request("GET", f"{self.base}/")
        self.assertEqual((index.code, index.body), (200, INDEX))
        asset = await self.request("GET", f"{self.base}/assets/app-1a2b.js")
        self.assertEqual((asset.code, asset.body), (200, JS))
        health = await self.request("GET", f"{self.base}/healthz")
        self.assertEqual(health.json()["status"], "ok")
        clusters = await self.request("GET", f"{self.base}/api/clusters")
        self.assertEqual(clusters.json(), {"clusters": []})

    async def test_unknown_paths_keep_the_routers_errors(self) -> None:
        nope = await self.request("GET", f"{self.base}/api/nope")
        self.assertEqual(nope.code, 404)
        self.assertIn("no route", json.loads(nope.body)["message"])
        elsewhere = await self.request("GET", f"{self.base}/clusters")
        self.assertEqual(elsewhere.code, 404)
        post = await self.request("POST", f"{self.base}/")
        self.assertEqual(post.code, 405)
        self.assertIn("GET", post.header("allow") or "")
        missing = await self.request("GET", f"{self.base}/assets/gone.js")
        self.assertEqual(missing.code, 404)
        self.assertEqual(json.loads(missing.body)["error"], "not_found")
