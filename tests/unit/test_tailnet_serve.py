"""``tailscale serve``'s identity headers, as the serve socket reads them."""

from __future__ import annotations

import json
from email.header import Header

from hypothesis import given
from hypothesis import strategies as st

from guildnet.auth.attribution import Refusal
from guildnet.auth.identity import Identity, Source
from guildnet.tailnet.serve import (
    FUNNEL_REFUSED,
    NO_IDENTITY,
    decode_value,
    identity_from_headers,
    parse_capabilities,
)


def _headers(**values: str) -> dict[bytes, bytes]:
    return {k.replace("_", "-").encode(): v.encode("latin-1") for k, v in values.items()}


def test_user_and_capabilities() -> None:
    caps = json.dumps({"guildnet.io/cap/hostapp": [{"role": "admin"}]})
    h = _headers(
        tailscale_user_login="ada@example.test",
        tailscale_user_name="Ada",
        tailscale_app_capabilities=caps,
    )
    got = identity_from_headers(lambda n: h.get(n))
    assert got == Identity(
        source=Source.TAILNET,
        login="ada@example.test",
        display_name="Ada",
        capabilities={"guildnet.io/cap/hostapp": ({"role": "admin"},)},
    )


def test_no_login_is_refused_and_funnel_is_refused() -> None:
    assert identity_from_headers(lambda n: None) == NO_IDENTITY
    h = _headers(tailscale_user_login="ada@example.test", tailscale_funnel_request="?1")
    assert identity_from_headers(lambda n: h.get(n)) == FUNNEL_REFUSED
    assert isinstance(NO_IDENTITY, Refusal) and NO_IDENTITY.status == 403


@given(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() == t and t.isprintable()))
def test_rfc2047_values_round_trip(name: str) -> None:
    # serve Q-encodes non-ASCII UTF-8 (mime.QEncoding.Encode); ASCII goes as is.
    encoded = name if name.isascii() else Header(name, "utf-8").encode()
    if name.isascii() and "=?" in name:
        return  # an ASCII value that looks encoded is decoded; serve never sends one
    assert decode_value(encoded.encode("latin-1")) == name


def test_bad_capabilities_grant_nothing() -> None:
    assert parse_capabilities(b"not json") == {}
    assert parse_capabilities(b"[1, 2]") == {}
    assert parse_capabilities(None) == {}
