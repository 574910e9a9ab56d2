"""Identity from ``tailscale serve``'s headers, on a listener only tailscaled can reach.

With ``TAILNET_SERVE_SOCKET`` the Host App also listens on a unix socket (mode 0600,
so only its own user and root, where tailscaled runs, can connect), for

    tailscale serve --bg --https=443 --accept-app-caps=guildnet.io/cap/hostapp \\
        unix:/run/guildnet/serve.sock

tailscaled terminates TLS with the tailnet's certificate and removes any client-sent
``Tailscale-User-*`` and ``Tailscale-App-Capabilities`` before it sets its own (tailscale
``ipn/ipnlocal/serve.go``), so on that socket, and only there, these headers are the
caller's identity. tailscaled sets none for tagged nodes or local traffic, and marks
Funnel (public internet) requests: those are refused.
"""

from __future__ import annotations

import email.header
import json
from collections.abc import Callable
from typing import Any

from guildnet.auth.attribution import Refusal
from guildnet.auth.identity import Identity, Source

LOGIN = b"tailscale-user-login"
NAME = b"tailscale-user-name"
CAPS = b"tailscale-app-capabilities"
FUNNEL = b"tailscale-funnel-request"

NO_IDENTITY = Refusal(
    403,
    "no_tailnet_identity",
    "tailscale serve named no user (a tagged node or local traffic); use a user's device",
)
FUNNEL_REFUSED = Refusal(403, "funnel_refused", "requests from the public internet are refused")


def decode_value(raw: bytes) -> str:
    """A serve header value: ASCII as is, else RFC 2047 Q-encoded UTF-8 (as serve sends)."""
    text = raw.decode("latin-1").strip()
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return ""


def parse_capabilities(raw: bytes | None) -> dict[str, tuple[Any, ...]]:
    """``Tailscale-App-Capabilities`` (JSON: capability -> list of values) -> CapMap."""
    if not raw:
        return {}
    try:
        data = json.loads(decode_value(raw))
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(name): tuple(values) if isinstance(values, list) else ()
        for name, values in data.items()
    }


def identity_from_headers(header: Callable[[bytes], bytes | None]) -> Identity | Refusal:
    """The caller as ``tailscale serve`` named them (``header`` reads one request header)."""
    if header(FUNNEL) is not None:
        return FUNNEL_REFUSED
    raw_login = header(LOGIN)
    login = decode_value(raw_login) if raw_login is not None else ""
    if not login:
        return NO_IDENTITY
    raw_name = header(NAME)
    return Identity(
        source=Source.TAILNET,
        login=login,
        display_name=decode_value(raw_name) if raw_name is not None else "",
        capabilities=parse_capabilities(header(CAPS)),
    )


def serve_identity(request: Any) -> Identity | Refusal:
    """The serve Site's ``identify`` (runs before client identity headers are stripped).

    A header tailscaled sets appears once; more than one copy is not believed."""
    headers = request.requestHeaders

    def one(name: bytes) -> bytes | None:
        values = headers.getRawHeaders(name)
        return values[0] if values is not None and len(values) == 1 else None

    return identity_from_headers(one)
