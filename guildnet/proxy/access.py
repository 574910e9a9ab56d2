"""Authorization of ``/proxy/...`` requests, decided before anything is dialed.

* Mutating requests pass the CSRF rule (``auth.csrf``), as API requests do, and so do
  WebSocket handshakes: any page may open a WebSocket to any origin, and a workspace
  app that does not check ``Origin`` itself (a terminal, say) would then take orders
  from every site its owner visits.
* Admins may use every proxy path.
* Users may open their own workspaces (``/proxy/server/{id}/`` and the per-cluster
  spelling): the Workspace comes from the cluster's caches, synchronously when they are
  synced. ``/proxy/{host:port}/`` naming a workspace's address redirects to that
  workspace's canonical URL (checked there); any other explicit target is the admin's.
* Everyone else gets 403 (or 404 for a workspace the caches do not know).

The upstream request carries ``X-GuildNet-User`` (the caller's login): see
``proxy.headers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from guildnet.auth.access import Access, Caller, Refusal, decide, owner_refusal, user_header_value
from guildnet.auth.identity import Role
from guildnet.auth.routes import Level
from guildnet.proxy.engine import ProxyFailure
from guildnet.proxy.paths import ProxyPath
from guildnet.proxy.routes import ServerRoutes


def _refused(refusal: Refusal, caller: Caller) -> ProxyFailure:
    return ProxyFailure(403, "forbidden", refusal.message, extra=refusal.body(caller))


class ProxyAccess:
    """The engine's ProxyGate: ``Access`` plus the workspace owners ``routes`` know."""

    def __init__(
        self,
        access: Access,
        routes: ServerRoutes,
        owner: Callable[[str, int], str | None] | None = None,
    ) -> None:
        self.access = access
        self.routes = routes
        #: The workspace a ``host:port`` belongs to (the engine's ``owner``).
        self.owner = owner or routes.owner

    def check(self, request: Any, path: ProxyPath) -> Deferred[None] | None:
        caller = self.access.caller(request)
        upgrade = bool(request.requestHeaders.getRawHeaders(b"upgrade"))
        refusal = self.access.cross_origin(request, upgrade) or decide(Level.USER, caller)
        if refusal is not None:
            raise _refused(refusal, caller)
        if caller.role is Role.ADMIN or path.redirect_to is not None:
            return None  # a redirect to the canonical URL, which is checked in turn
        if path.kind == "to":
            assert path.target_host is not None and path.target_port is not None
            if self.owner(path.target_host, path.target_port) is not None:
                return None  # redirected to that workspace's own URL
            raise _refused(
                Refusal("role", "explicit proxy targets need the admin role", Level.ADMIN.value),
                caller,
            )
        assert path.server is not None
        cluster = self.routes.cluster(path.cluster_id)  # ProxyFailure 404 when unknown
        synced, ws = cluster.workspace_now(path.server)
        if synced:
            self._owned(caller, path.server, ws)
            return None

        async def later() -> None:
            self._owned(caller, path.server or "", await cluster.workspace(path.server or ""))

        return Deferred.fromCoroutine(later())

    @staticmethod
    def _owned(caller: Caller, name: str, ws: dict[str, Any] | None) -> None:
        if ws is None:
            raise ProxyFailure(404, "workspace_not_found", f"no workspace {name!r}", "server")
        refusal = owner_refusal(caller, name, ws)
        if refusal is not None:
            raise _refused(refusal, caller)

    def user_header(self, request: Any) -> bytes | None:
        login = self.access.caller(request).login
        return user_header_value(login) if login else None
