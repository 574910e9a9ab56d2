"""Mixin of HostAPI: the authorization gate every route passes, and ``/api/whoami``.

``gate`` is called by the router (``MeteredKlein.execute_endpoint``) with the matched
route's template before the handler runs. It refuses with a 403 JSON body
``{"error": "forbidden", "reason", "required", "role", ...}``: a cross-origin mutating
request, an unidentified caller, a role below the route's declared one
(``auth.routes``). For ``owner`` routes a ``user`` must also own the workspace, which
``workspace_owner_check`` (WorkspaceRoutes) looks up in the cluster's caches.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from twisted.web.iweb import IRequest

from guildnet.auth.access import Access, Caller, Refusal, caller_of
from guildnet.auth.identity import Role
from guildnet.auth.routes import Level, required_level
from guildnet.http.errors import ApiError, write_json
from guildnet.http.router import router


def forbidden(refusal: Refusal, caller: Caller) -> ApiError:
    return ApiError(403, "forbidden", refusal.message, extra=refusal.body(caller))


class AccessRoutes:
    """The gate and the caller's own view of their identity."""

    access: Access

    def workspace_owner_check(
        self, request: IRequest, caller: Caller, kwargs: dict[str, Any]
    ) -> Awaitable[None]:
        raise NotImplementedError  # WorkspaceRoutes provides it

    def gate(self, request: IRequest, template: str, kwargs: dict[str, Any]) -> Any:
        level = required_level(request.method, template)
        caller, refusal = self.access.check(request, level)
        if refusal is not None:
            raise forbidden(refusal, caller)
        if level is Level.OWNER and caller.role is not Role.ADMIN:
            return self.workspace_owner_check(request, caller, kwargs)
        return None

    @router.route("/api/whoami", methods=["GET"])
    def whoami(self, request: IRequest) -> bytes:
        """Who GuildNet thinks the caller is, and their role (``none``: no access)."""
        caller = caller_of(request)
        identity = caller.identity
        assert identity is not None  # the gate refuses unidentified callers
        return write_json(
            request,
            200,
            {
                "login": identity.login,
                "displayName": identity.display_name or identity.login,
                "node": identity.node,
                "tags": list(identity.tags),
                "source": identity.source.value,
                "role": caller.role.value,
            },
        )
