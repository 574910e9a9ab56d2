"""Subdomain mode over real sockets: GuildNetSite (TLS) -> engine -> the test backend.

The same in-process stack as ``test_proxy_engine`` with ``WORKSPACE_ORIGIN=subdomain``:
a request whose Host is ``ide--default.localhost`` is the workspace's at the root of its
own origin, path URLs on the Host App's origin redirect there, and the Host App's own
routes refuse requests that come from workspace origins.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.web.resource import Resource

from guildnet.http.site import GuildNetSite, HttpPolicy, host_csp
from guildnet.proxy.engine import ProxyConfig, ProxyEngine
from guildnet.proxy.origins import WorkspaceOrigins
from guildnet.proxy.policy import parse_allowlist
from tests.unit.test_proxy_engine import (
    FakeWorkspaces,
    ProxyStackCase,
    Reply,
    workspace,
)

reactor: Any = _reactor
FRONTEND = "https://127.0.0.1:8090"
IDE = "ide--default.localhost:8090"
IDE_ORIGIN = "https://" + IDE


class SubdomainModeTests(ProxyStackCase):
    timeout = 60

    def setUp(self) -> None:
        self.start_backend()
        origins = WorkspaceOrigins("subdomain", "localhost", FRONTEND)
        allow = parse_allowlist((f"127.0.0.1:{self.bport}",))
        config = ProxyConfig(allowlist=allow, frontend_origin=FRONTEND, origins=origins)
        self.engine = ProxyEngine(reactor, config)
        self.workspaces = FakeWorkspaces([workspace("ide", f"127.0.0.1:{self.bport}", self.bport)])
        self.engine.servers = self.fake_routes(config)
        policy = HttpPolicy(FRONTEND, csp=host_csp(origins), origins=origins)
        self.serve_tls(GuildNetSite(Resource(), policy, interceptor=self.engine))

    async def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> Reply:
        client = await self.connect()
        return await client.request(method, target, headers=headers, **kw)

    # the workspace on its own origin ------------------------------------------------------

    async def test_workspace_is_served_at_the_root_of_its_origin(self) -> None:
        login = await self.request("GET", "/login", {"Host": IDE})
        self.assertEqual(login.status, 302)
        self.assertEqual(login.header("x-guildnet-route"), "agent")
        self.assertEqual(login.header("location"), "/?folder=x")  # no prefix to add
        cookie = login.header("set-cookie") or ""
        self.assertTrue(cookie.startswith("session=s3cr3t; Path=/;"), cookie)
        self.assertNotIn("Domain", cookie)  # never shared with the other workspaces
        self.assertIn("Secure", cookie)
        self.assertIn("SameSite=None", cookie)
        csp = login.header("content-security-policy") or ""
        self.assertIn("frame-ancestors 'self' " + FRONTEND, csp)
        self.assertIsNone(login.header("x-frame-options"))  # would forbid the Host App

        page = await self.request("GET", "/?folder=x", {"Host": IDE, "Cookie": "session=1"})
        self.assertEqual(page.status, 200)
        self.assertIn(b"folder=x", page.body)

    async def test_host_app_paths_on_a_workspace_origin_belong_to_the_workspace(self) -> None:
        echo = await self.request("GET", "/api/servers/echo", {"Host": IDE})
        self.assertEqual(echo.status, 404)  # the backend's answer, not the Host App's API
        self.assertEqual(echo.header("x-guildnet-route"), "agent")
        reply = await self.request("GET", "/echo?q=1", {"Host": IDE})
        got = dict(reply.json()["headers"])
        self.assertEqual(reply.json()["target"], "/echo?q=1")
        self.assertEqual(got["host"], IDE)
        self.assertEqual(got["x-forwarded-host"], IDE)
        self.assertNotIn("x-forwarded-prefix", got)

    async def test_unknown_workspace_hosts(self) -> None:
        missing = await self.request("GET", "/", {"Host": "nope--default.localhost:8090"})
        self.assertEqual(missing.status, 404)
        self.assertEqual(missing.json()["error"], "workspace_not_found")
        cluster = await self.request("GET", "/", {"Host": "ide--other.localhost:8090"})
        self.assertEqual(cluster.status, 404)
        self.assertEqual(cluster.json()["error"], "cluster_not_found")
        for host in ("ide.localhost", "a.ide--default.localhost", "ide--.localhost"):
            bad = await self.request("GET", "/", {"Host": host})
            self.assertEqual(bad.status, 404, host)
            self.assertEqual(bad.json()["error"], "workspace_origin_unknown")
            self.assertEqual(bad.json()["field"], "host")

    async def test_another_workspace_origin_is_refused(self) -> None:
        other = "https://evil--default.localhost:8090"
        for method in ("GET", "POST"):
            reply = await self.request(method, "/echo", {"Host": IDE, "Origin": other})
            self.assertEqual(reply.status, 403, method)
            self.assertEqual(reply.json()["error"], "cross_origin_refused")
        evil = await self.request("POST", "/echo", {"Host": IDE, "Origin": "https://e.example"})
        self.assertEqual(evil.status, 403)
        read = await self.request("GET", "/echo", {"Host": IDE, "Origin": "https://e.example"})
        self.assertEqual(read.status, 200)  # the app's own CORS decides what a page reads
        own = await self.request("POST", "/echo", {"Host": IDE, "Origin": IDE_ORIGIN}, body=b"x")
        self.assertEqual(own.status, 200)

    # the Host App's origin ---------------------------------------------------------------

    async def test_path_urls_redirect_to_the_workspace_origin(self) -> None:
        reply = await self.request("GET", "/proxy/server/ide/lab?x=1")
        self.assertEqual(reply.status, 307)
        self.assertEqual(reply.header("location"), IDE_ORIGIN + "/lab?x=1")
        spelled = await self.request("GET", "/api/cluster/default/proxy/server/ide")
        self.assertEqual(spelled.header("location"), IDE_ORIGIN + "/")
        self.engine.owner = lambda host, port: (
            "ide" if (host, port) == ("127.0.0.1", self.bport) else None
        )
        owned = await self.request("GET", f"/proxy/127.0.0.1:{self.bport}/small")
        self.assertEqual(owned.status, 307)
        self.assertEqual(owned.header("location"), IDE_ORIGIN + "/small")

    async def test_explicit_targets_are_refused(self) -> None:
        reply = await self.request("GET", f"/proxy/127.0.0.1:{self.bport}/small")
        self.assertEqual(reply.status, 403)
        self.assertEqual(reply.json()["error"], "proxy_target_refused")

    async def test_host_app_refuses_workspace_origins(self) -> None:
        cases = [
            ({"Origin": IDE_ORIGIN}, 403),
            ({"Origin": "null"}, 403),
            ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}, 403),
            ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"}, 403),
            ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, 404),
            ({"Origin": FRONTEND, "Sec-Fetch-Site": "same-origin"}, 404),
            ({}, 404),  # curl: no browser headers
        ]
        for headers, status in cases:
            reply = await self.request("GET", "/api/servers", headers)
            self.assertEqual(reply.status, status, headers)
            if status == 403:
                self.assertEqual(reply.json()["error"], "workspace_origin_refused")
                self.assertIsNone(reply.header("access-control-allow-origin"))
        home = await self.request("GET", "/")
        self.assertIn(
            "frame-src 'self' https://*.localhost:8090;", home.header("content-security-policy")
        )
