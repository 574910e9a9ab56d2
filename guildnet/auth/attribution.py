"""What a listener's attribution may answer besides an identity, and the request
headers that are never believed.

Each Site has an ``identify`` function (``guildnet.http.site``): the loopback
listener's names every request the local user; the tailnet listener's
(``guildnet.tailnet.gate``) names the Tailscale peer of the connection, or refuses the
request with a :class:`Refusal`. Either way, identity-looking request headers sent by
the client are removed first: identity is never taken from what a client says.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from twisted.web.http_headers import Headers

#: Request headers that carry identity in some deployment (Tailscale serve, auth proxies,
#: GuildNet's own upstream header): a client must never be able to send them to us.
IDENTITY_HEADERS = frozenset(
    {
        b"remote-user",
        b"x-remote-user",
        b"x-forwarded-user",
        b"x-forwarded-email",
        b"x-forwarded-preferred-username",
        b"x-forwarded-groups",
        b"x-auth-request-user",
        b"x-auth-request-email",
        b"x-auth-request-preferred-username",
        b"x-auth-request-groups",
        b"x-webauth-user",
    }
)
IDENTITY_PREFIXES = (b"tailscale-", b"x-guildnet-")


def is_identity_header(name: bytes) -> bool:
    lower = name.lower()
    return lower in IDENTITY_HEADERS or lower.startswith(IDENTITY_PREFIXES)


def identity_headers_in(names: Iterable[bytes]) -> list[bytes]:
    """The names among ``names`` that must be stripped (in order, once each)."""
    out: list[bytes] = []
    for name in names:
        if is_identity_header(name) and name.lower() not in out:
            out.append(name.lower())
    return out


def strip_identity_headers(headers: Headers) -> list[bytes]:
    """Remove every identity header from ``headers``; returns the names removed."""
    names = identity_headers_in(name for name, _ in headers.getAllRawHeaders())
    for name in names:
        headers.removeHeader(name)
    return names


@attrs.frozen
class Refusal:
    """A request the listener will not attribute: answered with this JSON error, unrouted."""

    status: int
    code: str
    message: str
