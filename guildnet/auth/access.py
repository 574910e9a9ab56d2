"""Authorization decisions for one request: who is calling, with which role, and
whether a route (or a proxied workspace) is theirs to use.

``decide`` is the pure decision; ``Access`` binds it to the configuration (policy file,
``LOCAL_ROLE``, trusted origins) and to a request's identity and headers. The API
router (``http.router``) and the proxy (``proxy.access``) both call it before any
handler or upstream sees the request.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any, Final
from urllib.parse import quote

import attrs

from guildnet.auth.csrf import SAFE_METHODS, cross_origin_refusal
from guildnet.auth.identity import Identity, Role, identity_of
from guildnet.auth.ownership import may_access
from guildnet.auth.roles import EMPTY_POLICY, Policy, resolve_role
from guildnet.auth.routes import Level

_CALLER_ATTR: Final = "guildnet_caller"
#: What a header value may carry literally: printable ASCII except "%" (the escape).
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


@attrs.frozen
class Caller:
    """The identity the listener attached and the role it resolves to."""

    identity: Identity | None
    role: Role

    @property
    def login(self) -> str | None:
        return self.identity.login if self.identity is not None else None


@attrs.frozen
class Refusal:
    """Why a request is refused (a 403 body's ``reason`` and ``message``)."""

    reason: str  # "unidentified" | "role" | "owner" | "cross_origin"
    message: str
    required: str | None = None

    def body(self, caller: Caller) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "role": caller.role.value}
        if self.required is not None:
            out["required"] = self.required
        return out


_MIN_ROLE: Final[Mapping[Level, Role]] = {
    Level.USER: Role.USER,
    Level.OWNER: Role.USER,
    Level.ADMIN: Role.ADMIN,
}


def decide(level: Level | None, caller: Caller) -> Refusal | None:
    """Whether ``caller`` may use a route of ``level`` (None: undeclared, refused).

    For ``owner`` routes this only checks the role: the workspace's owner is compared
    by ``owner_refusal`` once the workspace is known.
    """
    if level is Level.PUBLIC:
        return None
    if caller.identity is None:
        return Refusal("unidentified", "the caller is not identified", (level or Level.ADMIN).value)
    if level is None:
        return Refusal("role", "this route declares no required role", "undeclared")
    if level is Level.ANY:
        return None
    needed = _MIN_ROLE[level]
    if caller.role.at_least(needed):
        return None
    return Refusal(
        "role",
        f"this needs the {level.value} role; {caller.login} has role {caller.role.value}",
        level.value,
    )


def owner_refusal(caller: Caller, name: str, workspace: Mapping[str, Any] | None) -> Refusal | None:
    """Refusal when ``caller`` may not act on workspace ``name`` (None: allowed)."""
    if may_access(caller.role, caller.login, workspace):
        return None
    return Refusal(
        "owner",
        f"workspace {name!r} belongs to someone else; only its owner or an admin may use it",
        Level.OWNER.value,
    )


@functools.lru_cache(maxsize=1024)
def user_header_value(login: str) -> bytes:
    """``login`` as an ``X-GuildNet-User`` value: printable ASCII, the rest %-escaped."""
    return quote(login, safe=_HEADER_SAFE).encode("ascii")


class Access:
    """The configured authorization: policy, ``LOCAL_ROLE``, trusted origins."""

    def __init__(
        self,
        policy: Policy = EMPTY_POLICY,
        local_role: Role = Role.ADMIN,
        trusted_origins: Collection[str] = (),
    ) -> None:
        self.policy = policy
        self.local_role = local_role
        self.trusted_origins = frozenset(o.lower() for o in trusted_origins)

    @classmethod
    def from_settings(cls, settings: Any) -> Access:
        return cls(
            getattr(settings, "policy", EMPTY_POLICY),
            getattr(settings, "local_role", Role.ADMIN),
            (settings.frontend_origin,),
        )

    def caller(self, request: Any) -> Caller:
        """The request's Caller, resolved once per request."""
        cached = getattr(request, _CALLER_ATTR, None)
        if isinstance(cached, Caller):
            return cached
        identity = identity_of(request)
        caller = Caller(identity, resolve_role(identity, self.policy, self.local_role))
        setattr(request, _CALLER_ATTR, caller)
        return caller

    def cross_origin(
        self, request: Any, upgrade: bool = False, *, form: bool = False
    ) -> Refusal | None:
        """The CSRF rule (``auth.csrf``) applied to the request's headers.

        ``upgrade``: a protocol upgrade (WebSocket) is a GET that opens a channel able to
        act, and browsers let any page open one to any origin: it is judged as a POST.
        ``form``: the route acts on a form post, which must carry ``Origin``.
        """
        method = b"POST" if upgrade else request.method
        if method in SAFE_METHODS:
            return None  # the common case, without looking at headers
        headers = request.requestHeaders
        why = cross_origin_refusal(
            method,
            _first(headers.getRawHeaders(b"sec-fetch-site")),
            _first(headers.getRawHeaders(b"origin")),
            _first(headers.getRawHeaders(b"host")),
            self.trusted_origins,
            form=form,
        )
        return None if why is None else Refusal("cross_origin", why)

    def check(self, request: Any, level: Level | None) -> tuple[Caller, Refusal | None]:
        """The caller and the first refusal: cross-origin first, then the role."""
        caller = self.caller(request)
        refusal = self.cross_origin(request) or decide(level, caller)
        return caller, refusal


def caller_of(request: Any) -> Caller:
    """The Caller ``Access.check`` resolved for this request (no identity: role none)."""
    cached = getattr(request, _CALLER_ATTR, None)
    return cached if isinstance(cached, Caller) else Caller(None, Role.NONE)


def _first(values: list[bytes] | None) -> bytes | None:
    return values[0] if values else None
