"""Authorization's pure parts: the route table's completeness, the level decisions, the
CSRF rule, owner labels and the X-GuildNet-User value."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import guildnet.http.api  # noqa: F401  (every route module registers on the router)
from guildnet.auth.access import Caller, decide, owner_refusal, user_header_value
from guildnet.auth.csrf import cross_origin_refusal, is_form
from guildnet.auth.identity import Identity, Role, Source
from guildnet.auth.ownership import OWNER_KEY, may_access, owner_label_value, owner_of
from guildnet.auth.routes import REQUIRED, Level, required_level
from guildnet.http.router import route_table
from guildnet.proxy.headers import forward_request_headers

LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

# --- the table --------------------------------------------------------------------------


def test_every_route_declares_its_required_role() -> None:
    served = {(r.method, r.template) for r in route_table()}
    undeclared = sorted(served - set(REQUIRED))
    assert undeclared == [], f"declare these in guildnet/auth/routes.py: {undeclared}"
    stale = sorted(set(REQUIRED) - served)
    assert stale == [], f"no longer served, remove from guildnet/auth/routes.py: {stale}"


def test_owner_routes_name_the_workspace() -> None:
    """The gate finds the workspace in ``{server_id}`` or ``?server=`` (``/sse/logs``)."""
    for (_method, template), level in REQUIRED.items():
        if level is Level.OWNER:
            assert "{server_id}" in template or template.endswith("/logs"), template


def test_admin_only_actions() -> None:
    admin = {t for (m, t), lvl in REQUIRED.items() if lvl is Level.ADMIN}
    for template in (
        "/api/admin/stop-all",
        "/api/clusters",
        "/api/clusters/{cluster_id}",
        "/api/db/{db}",
        "/api/db/{db}/tables/{table}",
        "/api/db/deploy",
        "/api/cluster/{cluster_id}/db/{db}",
    ):
        assert template in admin, template
    public = sorted(t for (m, t), lvl in REQUIRED.items() if lvl is Level.PUBLIC)
    assert public == [
        "/",
        "/api/docs",
        "/api/openapi.json",
        "/assets/",
        "/assets/{__rest__}",
        "/healthz",
        "/index.html",
        "/readyz",
    ]
    # Nothing that changes anything is public or "any".
    for (method, template), lvl in REQUIRED.items():
        if method != "GET":
            assert lvl in (Level.USER, Level.OWNER, Level.ADMIN), (method, template)


def test_head_is_get_and_unknown_is_none() -> None:
    assert required_level(b"HEAD", "/") is Level.PUBLIC
    assert required_level(b"get", "/api/servers") is Level.USER
    assert required_level("POST", "/healthz") is None


# --- decisions --------------------------------------------------------------------------

LEVELS = st.sampled_from([*Level, None])
ROLES = st.sampled_from(list(Role))
ORDER = [Role.NONE, Role.USER, Role.ADMIN]


def caller(role: Role, login: str = "alice@example.com") -> Caller:
    return Caller(Identity(Source.TAILNET, login), role)


@given(LEVELS, ROLES, st.booleans())
def test_decide_matches_the_table_of_levels(level: Level | None, role: Role, known: bool) -> None:
    who = caller(role) if known else Caller(None, role)
    refusal = decide(level, who)
    if level is Level.PUBLIC:
        expected = True
    elif not known or level is None:
        expected = False
    elif level is Level.ANY:
        expected = True
    else:
        need = {Level.USER: Role.USER, Level.OWNER: Role.USER, Level.ADMIN: Role.ADMIN}[level]
        expected = ORDER.index(role) >= ORDER.index(need)
    assert (refusal is None) is expected
    if refusal is not None:
        assert refusal.reason == ("unidentified" if not known else "role")
        assert refusal.required


def ws(owner: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "w"}
    if owner is not None:
        meta["annotations"] = {OWNER_KEY: owner}
    return {"metadata": meta}


@given(ROLES, st.sampled_from(["alice@example.com", "bob@example.com", None]))
def test_ownership(role: Role, owner: str | None) -> None:
    me = caller(role)
    allowed = role is Role.ADMIN or (role is Role.USER and owner == "alice@example.com")
    assert may_access(role, me.login, ws(owner)) is allowed
    assert (owner_refusal(me, "w", ws(owner)) is None) is allowed


def test_owner_is_the_annotation_never_the_label() -> None:
    forged = {"metadata": {"labels": {OWNER_KEY: "alice@example.com"}}}
    assert owner_of(forged) is None
    assert not may_access(Role.USER, "alice@example.com", forged)
    assert not may_access(Role.USER, "", ws(""))


@given(st.text(min_size=1, max_size=300))
def test_owner_label_is_always_a_valid_label_value(login: str) -> None:
    value = owner_label_value(login)
    assert LABEL_VALUE.fullmatch(value) and value, value
    if LABEL_VALUE.fullmatch(login) and len(login) <= 63:
        assert value == login


def test_owner_labels_of_different_logins_differ() -> None:
    a, b = owner_label_value("a@b.c"), owner_label_value("a_at_b.c")
    assert a != b and a.startswith("a_at_b.c-")
    assert owner_label_value("x" * 100) != owner_label_value("x" * 101)


# --- CSRF ---------------------------------------------------------------------------------

HOST = b"127.0.0.1:8090"
TRUSTED = ("https://ui.example.test:8443",)
MUTATING = st.sampled_from([b"POST", b"PUT", b"PATCH", b"DELETE"])
SITES = st.one_of(
    st.none(), st.sampled_from([b"cross-site", b"same-site", b"same-origin", b"none"])
)
ORIGINS = st.one_of(
    st.none(), st.sampled_from([b"https://127.0.0.1:8090", b"https://evil.example", b"null"])
)


@pytest.mark.parametrize(
    ("method", "site", "origin", "allowed"),
    [
        (b"GET", b"cross-site", b"https://evil.example", True),
        (b"HEAD", b"cross-site", None, True),
        (b"OPTIONS", b"cross-site", b"https://evil.example", True),
        (b"POST", b"cross-site", b"https://evil.example", False),
        (b"DELETE", b"cross-site", None, False),
        (b"POST", b"same-site", b"https://127.0.0.1:9999", False),
        (b"POST", b"same-origin", b"https://127.0.0.1:8090", True),
        (b"POST", b"none", None, True),
        (b"POST", None, None, True),  # curl, scripts
        (b"POST", None, b"https://127.0.0.1:8090", True),
        (b"PUT", None, b"https://127.0.0.1:9999", False),
        (b"PATCH", None, b"null", False),
        (b"POST", None, b"https://evil.example", False),
        # FRONTEND_ORIGIN (a dev UI elsewhere) is trusted whatever the site says.
        (b"POST", b"cross-site", b"https://ui.example.test:8443", True),
        (b"POST", None, b"https://UI.example.test:8443", True),
    ],
)
def test_cross_origin_rule(
    method: bytes, site: bytes | None, origin: bytes | None, allowed: bool
) -> None:
    refusal = cross_origin_refusal(method, site, origin, HOST, TRUSTED)
    assert (refusal is None) is allowed, refusal


@given(MUTATING, SITES, ORIGINS)
def test_mutating_requests_pass_only_from_the_same_origin_or_non_browsers(
    method: bytes, site: bytes | None, origin: bytes | None
) -> None:
    refusal = cross_origin_refusal(method, site, origin, HOST, ())
    if site is not None:
        assert (refusal is None) is (site in (b"same-origin", b"none"))
    else:
        assert (refusal is None) is (origin in (None, b"https://127.0.0.1:8090"))


@pytest.mark.parametrize(
    ("content_type", "form"),
    [
        (b"application/x-www-form-urlencoded", True),
        (b"Application/X-WWW-Form-URLEncoded; charset=UTF-8", True),
        (b"application/json", False),
        (b"multipart/form-data; boundary=x", False),
        (None, False),
        (b"", False),
    ],
)
def test_is_form(content_type: bytes | None, form: bool) -> None:
    assert is_form(content_type) is form


@pytest.mark.parametrize(
    ("site", "origin", "allowed"),
    [
        # A form post must carry Origin, whatever Sec-Fetch-Site says...
        (None, None, False),
        (b"same-origin", None, False),
        (b"none", None, False),
        # ...and then passes or not as any other request.
        (b"same-origin", b"https://127.0.0.1:8090", True),
        (None, b"https://127.0.0.1:8090", True),
        (b"cross-site", b"https://ui.example.test:8443", True),
        (b"cross-site", b"https://evil.example", False),
        (None, b"https://evil.example", False),
    ],
)
def test_a_form_post_must_say_where_it_comes_from(
    site: bytes | None, origin: bytes | None, allowed: bool
) -> None:
    refusal = cross_origin_refusal(b"POST", site, origin, HOST, TRUSTED, form=True)
    assert (refusal is None) is allowed, refusal
    # Reads are never refused, form or not.
    assert cross_origin_refusal(b"GET", site, origin, HOST, TRUSTED, form=True) is None


@given(MUTATING, SITES, ORIGINS)
def test_form_rule_only_adds_refusals_of_posts_without_origin(
    method: bytes, site: bytes | None, origin: bytes | None
) -> None:
    """``form`` never lets through what the plain rule refuses, and refuses on top of it
    exactly the requests that carry no Origin."""
    plain = cross_origin_refusal(method, site, origin, HOST, ())
    form = cross_origin_refusal(method, site, origin, HOST, (), form=True)
    if origin is None:
        assert form is not None
    else:
        assert (form is None) is (plain is None)


# --- X-GuildNet-User --------------------------------------------------------------------------


@given(st.text(max_size=60))
def test_user_header_value_is_printable_ascii_and_reversible(login: str) -> None:
    from urllib.parse import unquote

    value = user_header_value(login)
    assert all(0x21 <= b <= 0x7E for b in value)
    assert unquote(value.decode("ascii")) == login


def test_proxy_overwrites_client_identity_headers() -> None:
    client = [
        (b"X-GuildNet-User", b"admin@example.com"),
        (b"x-guildnet-user", b"root"),
        (b"Accept", b"*/*"),
    ]
    out = forward_request_headers(
        client,
        client_ip="127.0.0.1",
        proto="https",
        host=b"h",
        prefix="/proxy/server/w",
        upgrade=False,
        user=b"bob@example.com",
    )
    users = [v for n, v in out if n.lower() == b"x-guildnet-user"]
    assert users == [b"bob@example.com"]
    out = forward_request_headers(
        client, client_ip="127.0.0.1", proto="https", host=b"h", prefix="/p", upgrade=False
    )
    assert not [v for n, v in out if n.lower() == b"x-guildnet-user"]
