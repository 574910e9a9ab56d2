"""Identity headers a client sends are never believed; every request gets an identity."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.web.http_headers import Headers

from guildnet.auth.attribution import identity_headers_in, strip_identity_headers
from guildnet.auth.identity import Source
from guildnet.http.site import local_identity


def test_strip_identity_headers() -> None:
    h = Headers(
        {
            b"Tailscale-User-Login": [b"admin@example.test"],
            b"tailscale-app-capabilities": [b"{}"],
            b"X-GuildNet-User": [b"admin"],
            b"X-Forwarded-User": [b"admin"],
            b"Remote-User": [b"admin"],
            b"Content-Type": [b"application/json"],
            b"X-Forwarded-For": [b"1.2.3.4"],
        }
    )
    removed = strip_identity_headers(h)
    assert set(removed) == {
        b"tailscale-user-login",
        b"tailscale-app-capabilities",
        b"x-guildnet-user",
        b"x-forwarded-user",
        b"remote-user",
    }
    assert [n for n, _ in h.getAllRawHeaders()] == [b"Content-Type", b"X-Forwarded-For"]


@given(
    st.sampled_from([b"Tailscale-", b"X-GuildNet-", b"tailscale-", b"x-guildnet-"]),
    st.binary(min_size=1, max_size=20),
)
def test_any_tailscale_or_guildnet_header_is_identity(prefix: bytes, rest: bytes) -> None:
    name = prefix + rest
    assert identity_headers_in([name, name.upper()]) == [name.lower()]


def test_local_attribution() -> None:
    ident = local_identity(object())
    assert ident is not None and ident.source is Source.LOCAL and ident.login == "local"
