"""Per-workspace origins, the pure parts: labels, hosts, refusals, per-mode header rewrites."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guildnet.proxy import headers as H
from guildnet.proxy.origins import (
    WorkspaceOrigins,
    host_app_refusal,
    host_name,
    label_refusal,
    normalise_origin,
    parse_label,
    workspace_label,
    workspace_refusal,
)
from guildnet.proxy.pages import PAGE_CSP, own_origin_csp, stopped_elsewhere_page

HOST = "https://127.0.0.1:8090"
SUB = WorkspaceOrigins("subdomain", "localhost", HOST)
SINGLE = WorkspaceOrigins()

_alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,51}[a-z0-9])?\Z")
clusters = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
prefixes = st.sampled_from(["/proxy/server/ide", "/api/cluster/c1/proxy/server/x-y"])


# --- labels -----------------------------------------------------------------------------------


@given(names, clusters)
def test_a_label_names_exactly_one_workspace(name: str, cluster: str) -> None:
    label = workspace_label(cluster, name)
    if label is None:
        assert label_refusal(cluster, name) is not None
        assert "--" in cluster or len(name) + 2 + len(cluster) > 63
        return
    assert len(label) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", label)
    assert parse_label(label) == (cluster, name)


@given(names, clusters, names, clusters)
def test_labels_never_collide(n1: str, c1: str, n2: str, c2: str) -> None:
    l1, l2 = workspace_label(c1, n1), workspace_label(c2, n2)
    if l1 is not None and l1 == l2:
        assert (n1, c1) == (n2, c2)


@given(st.text(alphabet=_alnum + "-.", max_size=80))
def test_parse_label_accepts_only_what_workspace_label_makes(text: str) -> None:
    parsed = parse_label(text)
    if parsed is not None:
        assert workspace_label(*parsed) == text


def test_label_examples() -> None:
    assert workspace_label("default", "ide") == "ide--default"
    assert parse_label("a--b--prod") == ("prod", "a--b")  # names may hold "--"
    assert workspace_label("a--b", "ide") is None  # cluster ids may not
    assert "contains '--'" in (label_refusal("a--b", "ide") or "")
    assert workspace_label("default", "x" * 53) is not None  # every name fits "default"
    long_cluster = "c" * 20
    assert "at most 41 characters" in (label_refusal(long_cluster, "n" * 50) or "")
    for bad in ("ide", "ide--", "--default", "Ide--default", "1ide--default", "ide---default"):
        assert parse_label(bad) is None, bad


# --- addresses and hosts ----------------------------------------------------------------------


def test_urls_per_mode() -> None:
    assert SINGLE.url("default", "ide") == "/proxy/server/ide/"
    assert SINGLE.url("c1", "ide") == "/api/cluster/c1/proxy/server/ide/"
    assert SUB.url("default", "ide") == "https://ide--default.localhost:8090/"
    assert SUB.url("a--b", "ide") is None
    assert SUB.frame_source() == "https://*.localhost:8090"
    tailnet = WorkspaceOrigins("subdomain", "ws.example.com", "https://host.example.com")
    assert tailnet.url("c1", "ide") == "https://ide--c1.ws.example.com/"
    assert tailnet.frame_source() == "https://*.ws.example.com"


def test_host_targets() -> None:
    assert SUB.host_target("ide--default.localhost:8090") == ("default", "ide")
    assert SUB.host_target("IDE--Default.LOCALHOST.:8090") == ("default", "ide")
    assert SUB.host_target("ide--default.localhost") == ("default", "ide")
    assert SUB.host_target("127.0.0.1:8090") is None  # the Host App
    assert SUB.host_target("localhost:8090") is None  # the domain itself: the Host App
    assert SUB.host_target("[::1]:8090") is None
    assert SUB.host_target("evil-localhost:8090") is None
    assert isinstance(SUB.host_target("a.b.localhost"), str)
    assert isinstance(SUB.host_target("nolabel.localhost"), str)
    assert SINGLE.host_target("ide--default.localhost") is None
    assert host_name("[::1]:8090") == "[::1]"


@given(names, clusters)
def test_every_workspace_url_routes_back_to_its_workspace(name: str, cluster: str) -> None:
    url = SUB.url(cluster, name)
    if url is None:
        return
    host = url.split("://", 1)[1].rstrip("/")
    assert SUB.host_target(host) == (cluster, name)
    assert SUB.is_workspace_origin(url[:-1])
    assert host_app_refusal(SUB, origin=url[:-1], fetch_site=None, fetch_mode=None)


def test_normalise_origin() -> None:
    assert normalise_origin("HTTPS://Example.COM:443") == "https://example.com"
    assert normalise_origin("https://[::1]:8090") == "https://[::1]:8090"
    assert normalise_origin("null") == "null"


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "site", "mode", "refused"),
    [
        (None, None, None, False),  # curl, scripts
        (HOST, "same-origin", "cors", False),  # the UI
        ("https://127.0.0.1:8090", "same-origin", "cors", False),
        ("https://ide--default.localhost:8090", "cross-site", "cors", True),
        ("https://ide--default.localhost", None, None, True),  # any port or scheme
        ("http://x.localhost:1", None, None, True),
        ("null", "cross-site", "cors", True),
        (None, "cross-site", "no-cors", True),  # <img>/<script> from another page
        (None, "same-site", "cors", True),
        (None, "cross-site", "navigate", False),  # following a link to the UI
        (None, "none", "navigate", False),  # typed in the address bar
    ],
)
def test_host_app_refusal(origin: str | None, site: str | None, mode: str | None, refused: bool):
    got = host_app_refusal(SUB, origin=origin, fetch_site=site, fetch_mode=mode)
    assert (got is not None) is refused, got
    assert host_app_refusal(SINGLE, origin=origin, fetch_site=site, fetch_mode=mode) is None


OWN = "https://ide--default.localhost:8090"


@pytest.mark.parametrize(
    ("method", "origin", "upgrade", "refused"),
    [
        (b"GET", None, False, False),
        (b"POST", None, False, False),
        (b"POST", OWN, False, False),
        (b"GET", OWN, True, False),
        (b"POST", "null", False, False),  # sandboxed frames of the app itself
        (b"GET", "https://other--default.localhost:8090", False, True),
        (b"GET", "https://other--default.localhost:8090", True, True),
        (b"POST", HOST, False, False),  # the Host App's own origin
        (b"GET", "https://evil.example", False, False),  # CORS is the app's to decide
        (b"POST", "https://evil.example", False, True),
        (b"PUT", "https://evil.example", False, True),
        (b"GET", "https://evil.example", True, True),  # WebSocket hijacking
    ],
)
def test_workspace_refusal(method: bytes, origin: str | None, upgrade: bool, refused: bool):
    got = workspace_refusal(SUB, OWN, method=method, origin=origin, upgrade=upgrade)
    assert (got is not None) is refused, got


# --- per-mode header rewrites ------------------------------------------------------------------

_token = st.text(alphabet=_alnum + "_", min_size=1, max_size=8)
_path = st.lists(_token, max_size=3).map(lambda parts: "/" + "/".join(parts))
_attr = st.one_of(
    _path.map(lambda p: f"Path={p}"),
    st.sampled_from(
        [
            "Domain=localhost",
            "Domain=.example.com",
            "Secure",
            "SameSite=Lax",
            "SameSite=Strict",
            "HttpOnly",
            "Max-Age=60",
            "Partitioned",
            "Expires=Wed, 21 Oct 2037 07:28:00 GMT",
        ]
    ),
)
cookies = st.tuples(_token, _token, st.lists(_attr, max_size=5)).map(
    lambda t: "; ".join([f"{t[0]}={t[1]}", *t[2]])
)


def _attrs(cookie: str) -> list[tuple[str, str]]:
    out = []
    for part in cookie.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        out.append((key.lower(), value))
    return out


@given(cookies, prefixes)
def test_cookies_never_leave_their_workspace(cookie: str, prefix: str) -> None:
    for own_origin in (False, True):
        out = H.set_cookie_rewriter(own_origin)(cookie, prefix)
        attrs = _attrs(out)
        keys = [k for k, _ in attrs]
        assert "domain" not in keys  # never shared with other workspaces or the Host App
        assert out.split(";")[0] == cookie.split(";")[0]
        assert keys.count("secure") == 1 and ("samesite", "None") in attrs
        assert keys.count("partitioned") == 1
        paths = [v for k, v in attrs if k == "path"]
        original = [v for k, v in _attrs(cookie) if k == "path"]
        if own_origin:  # the origin is the workspace's: its Path is its own business
            assert paths == original
        else:  # the shared origin: always inside the workspace's sub-path
            assert len(paths) == 1 and paths[0].startswith(prefix + "/")


@given(_path, st.sampled_from(["", "?q=1", "#f"]), prefixes)
def test_locations_per_mode(path: str, tail: str, prefix: str) -> None:
    location = path + tail
    upstream = ["http://10.0.0.1:8080"]
    assert H.rewrite_location(location, "", upstream) == location
    assert H.rewrite_location("http://10.0.0.1:8080" + location, "", upstream) == location
    shared = H.rewrite_location(location, prefix, upstream)
    assert shared == prefix + location or (path.startswith(prefix) and shared == location)


@given(st.booleans(), st.booleans())
def test_frame_headers_per_mode(own_origin: bool, has_csp: bool) -> None:
    out = dict(H.frame_headers(HOST, own_origin=own_origin, has_csp=has_csp))
    if has_csp:
        assert b"Content-Security-Policy" not in out
    else:
        assert out[b"Content-Security-Policy"] == f"frame-ancestors 'self' {HOST}".encode()
    assert (b"X-Frame-Options" in out) is not own_origin


@given(cookies)
def test_own_origin_response_headers(cookie: str) -> None:
    upstream = [
        (b"Set-Cookie", cookie.encode()),
        (b"Location", b"/next"),
        (b"Content-Security-Policy", b"default-src 'self'; frame-ancestors *"),
        (b"Service-Worker-Allowed", b"/"),
        (b"X-Frame-Options", b"DENY"),
        (b"Clear-Site-Data", b'"cookies"'),
    ]
    out = H.rewrite_response_headers(
        upstream,
        prefix="",
        host_origin=HOST,
        upstream_origins=["http://10.0.0.1:8080"],
        route="service",
        own_origin=True,
    )
    got = {n.lower().decode(): v.decode() for n, v in out}
    assert got["location"] == "/next"
    assert got["content-security-policy"] == f"default-src 'self'; frame-ancestors 'self' {HOST}"
    assert got["service-worker-allowed"] == "/"
    assert "x-frame-options" not in got
    assert "clear-site-data" not in got  # "cookies" clears the whole site's, Host App's too
    assert "domain=" not in got["set-cookie"].lower()


def test_pages_on_a_workspace_origin() -> None:
    """The proxy's own pages there: framable by the Host App, and no cross-origin form."""
    page = stopped_elsewhere_page(
        "ide", "https://ws.localhost:8090/#/c/default/servers/ide", "idle"
    )
    text = page.decode()
    assert "<form" not in text
    assert 'href="https://ws.localhost:8090/#/c/default/servers/ide" target="_top"' in text
    csp = own_origin_csp(H.frame_ancestors(HOST))
    assert f"frame-ancestors 'self' {HOST}" in csp
    assert csp.replace(f"frame-ancestors 'self' {HOST}", "frame-ancestors 'self'") == PAGE_CSP
