"""Authorization enforced over real TLS sockets, with constructed identities.

The loopback listener attributes everything to the local user; tailnet identities come
from the tailnet listener (WhoIs), which these tests do not run. Instead the Site's
``identify`` hook returns an ``Identity`` each test constructs (tailnet peers with and
without grants, policy entries, an unidentified connection): the same hook the real
listeners use, so the gate, the proxy's checks and the 403 bodies are the real ones.
Ownership against real Workspaces is in tests/integration/test_access.py.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application.service import MultiService
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import IResource, Resource

from guildnet.auth.access import Access
from guildnet.auth.identity import Identity, Role, Source
from guildnet.auth.ownership import OWNER_KEY
from guildnet.auth.roles import CAPABILITY, parse_policy
from guildnet.cluster.registry import Registry
from guildnet.config import load_settings
from guildnet.http.api import HostAPI
from guildnet.http.site import GuildNetSite, HttpPolicy
from guildnet.http.tlstransport import LeanTLSFactory
from guildnet.monitor import ReactorMonitor
from guildnet.proxy.access import ProxyAccess
from guildnet.proxy.engine import ProxyConfig, ProxyEngine
from guildnet.proxy.policy import parse_allowlist
from guildnet.tls import server_context_factory
from tests.unit.test_http import FRONTEND, Reply, ServingTestCase
from tests.unit.test_proxy_engine import (
    FRONTEND as PROXY_FRONTEND,
)
from tests.unit.test_proxy_engine import (
    FakeWorkspaces,
    ProxyStackCase,
    workspace,
)
from tests.unit.test_proxy_engine import (
    reactor as _reactor,
)

reactor: Any = _reactor

ADMIN = Identity(
    Source.TAILNET,
    "ada@example.com",
    display_name="Ada",
    node="ada-laptop",
    capabilities={CAPABILITY: ({"role": "admin"},)},
)
ALICE = Identity(Source.TAILNET, "alice@example.com", display_name="Alice", node="a1")
BOB = Identity(Source.TAILNET, "bob@example.com", node="b1")
STRANGER = Identity(Source.TAILNET, "eve@example.org", node="e1")
CI = Identity(Source.TAILNET, "tagged-devices", node="ci-1", tags=("tag:ci",))
POLICY = parse_policy(
    {
        "logins": {"*@example.com": "user", "bob@example.com": "user"},
        "tags": {"tag:ci": "user"},
    }
)


class GateTests(ServingTestCase):
    """HostAPI behind GuildNetSite whose ``identify`` answers ``self.identity``."""

    identity: Identity | None = ALICE

    def setUp(self) -> None:
        super().setUp()
        self.settings = load_settings(
            {
                "GUILDNET_STATE_DIR": str(self.tmp / "state"),
                "KUBECONFIG": str(self.tmp / "missing"),
                "FRONTEND_ORIGIN": FRONTEND,
            }
        )
        registry = Registry(self.settings.clusters_dir, None, {}, reactor)
        services = MultiService()
        registry.setServiceParent(services)
        ReactorMonitor(reactor).setServiceParent(services)
        services.startService()
        self.addCleanup(services.stopService)
        self.api = HostAPI(self.settings, registry, ReactorMonitor(reactor))
        self.api.access = Access(POLICY, Role.ADMIN, (FRONTEND,))
        self.base = self.serve_as(self.api.app.resource())

    def serve_as(self, resource: IResource) -> str:
        site = GuildNetSite(resource, HttpPolicy(FRONTEND), identify=lambda r: self.identity)
        wrapper = WrappingFactory(site)
        wrapper.noisy = False
        port = reactor.listenTCP(
            0, LeanTLSFactory(server_context_factory(self.pair), wrapper), interface="127.0.0.1"
        )
        wrapper.port = port  # type: ignore[attr-defined]
        self._wrappers.append(wrapper)
        return f"https://127.0.0.1:{port.getHost().port}"

    async def as_(self, who: Identity | None, method: str, path: str, **kw: Any) -> Reply:
        self.identity = who
        return await self.request(method, self.base + path, **kw)

    def assert_forbidden(self, reply: Reply, reason: str, required: str | None = None) -> Any:
        self.assertEqual(reply.code, 403, reply.body)
        body = reply.json()
        self.assertEqual(body["error"], "forbidden")
        self.assertEqual(body["reason"], reason)
        self.assertEqual(body["request_id"], reply.header("x-request-id"))
        if required is not None:
            self.assertEqual(body["required"], required)
            self.assertIn(required, body["message"])
        return body

    async def test_whoami_for_each_kind_of_caller(self) -> None:
        cases = [
            (ADMIN, "admin", "Ada"),
            (ALICE, "user", "Alice"),
            (CI, "user", "tagged-devices"),
            (STRANGER, "none", "eve@example.org"),
            (Identity(Source.LOCAL, "local"), "admin", "local"),
        ]
        for who, role, name in cases:
            r = await self.as_(who, "GET", "/api/whoami")
            self.assertEqual(r.code, 200, (who, r.body))
            body = r.json()
            self.assertEqual(body["role"], role, who)
            self.assertEqual(body["login"], who.login)
            self.assertEqual(body["displayName"], name)
            self.assertEqual(body["source"], who.source.value)
        r = await self.as_(None, "GET", "/api/whoami")
        self.assert_forbidden(r, "unidentified")

    async def test_public_routes_need_no_identity(self) -> None:
        for path in ("/healthz", "/readyz"):
            r = await self.as_(None, "GET", path)
            self.assertIn(r.code, (200, 503), path)
        r = await self.as_(STRANGER, "GET", "/metrics")
        self.assert_forbidden(r, "role", "user")
        # /readyz: the status for anyone, the details for people with a role.
        for who, detailed in ((None, False), (STRANGER, False), (ALICE, True), (ADMIN, True)):
            r = await self.as_(who, "GET", "/readyz")
            self.assertEqual(r.json()["status"], "unavailable")  # no cluster here
            self.assertEqual("checks" in r.json(), detailed, who)

    async def test_role_none_is_denied_everything_but_whoami(self) -> None:
        for method, path, required in [
            ("GET", "/api/ui-config", "user"),
            ("GET", "/api/servers", "user"),
            ("GET", "/api/clusters", "user"),
            ("GET", "/sse/servers", "user"),
            ("POST", "/api/jobs", "user"),
            ("GET", "/api/servers/ws1/password", "owner"),
            ("DELETE", "/api/servers/ws1", "owner"),
            ("POST", "/api/admin/stop-all", "admin"),
            ("DELETE", "/api/db/test", "admin"),
        ]:
            r = await self.as_(STRANGER, method, path)
            body = self.assert_forbidden(r, "role", required)
            self.assertEqual(body["role"], "none")
            r = await self.as_(None, method, path)
            self.assert_forbidden(r, "unidentified")

    async def test_users_are_refused_admin_routes_before_any_work(self) -> None:
        for method, path in [
            ("POST", "/api/clusters"),
            ("DELETE", "/api/clusters/lab"),
            ("POST", "/api/admin/stop-all"),
            ("POST", "/api/cluster/lab/admin/stop-all"),
            ("DELETE", "/api/db/test"),
            ("DELETE", "/api/db/test/tables/t"),
            ("DELETE", "/api/db/test/tables/t/indexes/i"),
            ("POST", "/api/db/deploy"),
            ("POST", "/api/db/reconnect"),
        ]:
            r = await self.as_(ALICE, method, path, body=b"{}")
            body = self.assert_forbidden(r, "role", "admin")
            self.assertEqual(body["role"], "user")
        # An admin gets past the gate to the handler's own validation.
        r = await self.as_(ADMIN, "POST", "/api/clusters", body=b"{}")
        self.assertEqual((r.code, r.json()["field"]), (400, "id"))

    async def test_users_reach_user_routes(self) -> None:
        r = await self.as_(ALICE, "GET", "/api/ui-config")
        self.assertEqual(r.code, 200)
        r = await self.as_(ALICE, "GET", "/api/clusters")
        self.assertEqual(r.code, 200)
        # Owner routes check the workspace after the role: no cluster here, so 404.
        r = await self.as_(ALICE, "GET", "/api/cluster/nope/servers/ws1")
        self.assertEqual((r.code, r.json()["error"]), (404, "cluster_not_found"))
        r = await self.as_(ALICE, "GET", "/sse/logs")
        self.assertEqual((r.code, r.json()["field"]), (400, "server"))

    async def test_local_role_applies_to_the_loopback_identity(self) -> None:
        local = Identity(Source.LOCAL, "local")
        for role, ui_code, admin_code in [
            ("admin", 200, 400),
            ("user", 200, 403),
            ("none", 403, 403),
        ]:
            self.api.access = Access(POLICY, Role(role), (FRONTEND,))
            r = await self.as_(local, "GET", "/api/ui-config")
            self.assertEqual(r.code, ui_code, role)
            r = await self.as_(local, "POST", "/api/clusters", body=b"{}")
            self.assertEqual(r.code, admin_code, role)

    async def test_cross_site_mutations_are_refused(self) -> None:
        for headers in [
            {"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
            {"sec-fetch-site": "same-site", "origin": "https://other.127.0.0.1.nip.io"},
            {"origin": "https://evil.example"},
            {"origin": "null"},
        ]:
            r = await self.as_(ADMIN, "POST", "/api/admin/stop-all", headers=headers)
            self.assert_forbidden(r, "cross_origin")
            r = await self.as_(ADMIN, "DELETE", "/api/servers/ws1", headers=headers)
            self.assert_forbidden(r, "cross_origin")
        # Same origin, a typed URL, the trusted FRONTEND_ORIGIN and non-browsers pass
        # the CSRF rule (and get the handler's answer: no such cluster here).
        host = self.base.removeprefix("https://")
        for headers in [
            {"sec-fetch-site": "same-origin", "origin": self.base},
            {"sec-fetch-site": "none"},
            {"origin": self.base, "host": host},
            {"sec-fetch-site": "cross-site", "origin": FRONTEND},
            {},
        ]:
            r = await self.as_(ADMIN, "POST", "/api/clusters", headers=headers, body=b"{}")
            self.assertEqual(r.code, 400, (headers, r.body))
        # Reads are never refused for their origin.
        r = await self.as_(ALICE, "GET", "/api/ui-config", headers={"sec-fetch-site": "cross-site"})
        self.assertEqual(r.code, 200)

    async def test_lifecycle_form_posts_must_carry_origin(self) -> None:
        """The stopped page's form posts to the lifecycle routes: one without Origin is
        refused even where the plain rule lets it by (no headers, or a typed URL)."""
        form = {"content-type": "application/x-www-form-urlencoded"}
        for path in ("/api/servers/ws1/start", "/api/servers/ws1/stop", "/api/servers/ws1/restart"):
            for headers in [{}, {"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"}]:
                r = await self.as_(ADMIN, "POST", path, headers={**form, **headers})
                body = self.assert_forbidden(r, "cross_origin")
                self.assertIn("Origin", body["message"])
        # With this origin, or as a script's JSON post, the handler answers (no cluster).
        for headers in [{**form, "origin": self.base}, {}]:
            r = await self.as_(ADMIN, "POST", "/api/servers/ws1/start", headers=headers)
            self.assertNotEqual(r.code, 403, (headers, r.body))
            self.assertEqual(r.json()["error"], "cluster_not_found", r.body)

    async def test_client_headers_cannot_claim_an_identity(self) -> None:
        for name in ("X-GuildNet-User", "Tailscale-User-Login", "X-Forwarded-User"):
            r = await self.as_(STRANGER, "GET", "/api/whoami", headers={name: "ada@example.com"})
            self.assertEqual(r.json()["login"], "eve@example.org")
            self.assertEqual(r.json()["role"], "none")


class ProxyGateTests(ProxyStackCase):
    """The proxy's checks: owners open their workspaces, others get 403; X-GuildNet-User."""

    timeout = 30

    def setUp(self) -> None:
        self.start_backend()
        config = ProxyConfig(
            allowlist=parse_allowlist((f"127.0.0.1:{self.bport}",)), frontend_origin=FRONTEND
        )
        self.engine = ProxyEngine(reactor, config)
        mine = workspace("ide", f"127.0.0.1:{self.bport}", self.bport)
        mine["metadata"]["annotations"] = {OWNER_KEY: "alice@example.com"}
        other = workspace("lab", f"127.0.0.1:{self.bport}", self.bport)
        other["metadata"]["annotations"] = {OWNER_KEY: "bob@example.com"}
        self.workspaces = FakeWorkspaces([mine, other])
        routes = self.fake_routes(config)
        self.engine.servers = routes
        # The raw client's WebSocket handshakes carry Origin: PROXY_FRONTEND.
        self.engine.gate = ProxyAccess(
            Access(POLICY, Role.ADMIN, (PROXY_FRONTEND,)), routes, self.engine.owner
        )
        self.identity: Identity | None = ALICE
        site = GuildNetSite(
            Resource(),
            HttpPolicy(FRONTEND),
            interceptor=self.engine,
            identify=lambda r: self.identity,
        )
        self.serve_tls(site)

    async def fetch(
        self, who: Identity | None, method: str, path: str, headers: dict[str, str] | None = None
    ) -> Any:
        self.identity = who
        client = await self.connect()
        body = b"" if method in ("POST", "PUT") else None
        return await client.request(method, path, headers=headers, body=body)

    async def test_owner_opens_own_workspace_with_identity_header(self) -> None:
        r = await self.fetch(
            ALICE, "GET", "/proxy/server/ide/echo", {"X-GuildNet-User": "ada@example.com"}
        )
        self.assertEqual(r.status, 200, r.body)
        headers = [(n.lower(), v) for n, v in r.json()["headers"]]
        self.assertEqual([v for n, v in headers if n == "x-guildnet-user"], ["alice@example.com"])

    async def test_others_workspace_is_forbidden(self) -> None:
        r = await self.fetch(ALICE, "GET", "/proxy/server/lab/echo")
        self.assertEqual(r.status, 403)
        body = r.json()
        self.assertEqual((body["error"], body["reason"]), ("forbidden", "owner"))
        r = await self.fetch(ALICE, "GET", "/proxy/server/ghost/")
        self.assertEqual(r.status, 404)
        r = await self.fetch(BOB, "GET", "/proxy/server/lab/echo")
        self.assertEqual(r.status, 200)

    async def test_admin_opens_every_workspace_and_target(self) -> None:
        for path in (
            "/proxy/server/ide/echo",
            "/proxy/server/lab/echo",
            f"/proxy/127.0.0.1:{self.bport}/echo",
        ):
            r = await self.fetch(ADMIN, "GET", path)
            self.assertEqual(r.status, 200, (path, r.body))
            users = [v for n, v in r.json()["headers"] if n.lower() == "x-guildnet-user"]
            self.assertEqual(users, ["ada@example.com"])

    async def test_explicit_targets_are_the_admins(self) -> None:
        r = await self.fetch(ALICE, "GET", f"/proxy/127.0.0.1:{self.bport}/echo")
        self.assertEqual(r.status, 403)
        self.assertEqual(json.loads(r.body)["required"], "admin")

    async def test_unknown_and_unidentified_callers_are_refused(self) -> None:
        for who, reason in ((STRANGER, "role"), (None, "unidentified")):
            r = await self.fetch(who, "GET", "/proxy/server/ide/echo")
            self.assertEqual(r.status, 403)
            self.assertEqual(r.json()["reason"], reason)

    async def test_cross_site_posts_through_the_proxy_are_refused(self) -> None:
        r = await self.fetch(
            ALICE,
            "POST",
            "/proxy/server/ide/echo",
            {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        )
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["reason"], "cross_origin")
        r = await self.fetch(
            ALICE, "POST", "/proxy/server/ide/echo", {"Sec-Fetch-Site": "same-origin"}
        )
        self.assertEqual(r.status, 200)

    async def test_cross_site_websockets_are_refused(self) -> None:
        """A page on any site may open a WebSocket anywhere: the handshake is judged as a
        POST, so a workspace app that forgets to check Origin is still protected."""
        for extra in (
            {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
            {"Origin": "https://evil.example"},
        ):
            r = await self.fetch(
                ALICE,
                "GET",
                "/proxy/server/ide/ws",
                {"Upgrade": "websocket", "Connection": "Upgrade", **extra},
            )
            self.assertEqual(r.status, 403, extra)
            self.assertEqual(r.json()["reason"], "cross_origin")
        client = await self.connect()
        head = await client.upgrade("/proxy/server/ide/ws?hello=1")  # Origin: FRONTEND
        self.assertIn(b"101", head.split(b"\r\n")[0], head)
