"""Proxy URI parsing: the routes, canonical redirects, refusals, and properties."""

from __future__ import annotations

import ipaddress
import string
from urllib.parse import unquote

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from guildnet.proxy.paths import (
    ProxyPath,
    ProxyPathError,
    format_target,
    parse_proxy_uri,
    workspace_prefix,
)


def parse(uri: str) -> ProxyPath | None:
    return parse_proxy_uri(uri.encode("latin-1"))


# --- examples ---------------------------------------------------------------------------


def test_server_route() -> None:
    p = parse("/proxy/server/ide/static/app.js?v=1&x=%2F")
    assert p == ProxyPath(
        kind="server",
        cluster_id="default",
        server="ide",
        target_host=None,
        target_port=None,
        scheme="http",
        upstream_path="/static/app.js?v=1&x=%2F",
        prefix="/proxy/server/ide",
        redirect_to=None,
    )


def test_server_route_under_a_cluster() -> None:
    p = parse("/api/cluster/lab/proxy/server/ide/")
    assert p is not None
    assert (p.cluster_id, p.server, p.prefix, p.upstream_path, p.redirect_to) == (
        "lab",
        "ide",
        "/api/cluster/lab/proxy/server/ide",
        "/",
        None,
    )


@pytest.mark.parametrize(
    ("uri", "redirect"),
    [
        ("/proxy/server/ide", "/proxy/server/ide/"),
        ("/proxy/server/ide?folder=/home", "/proxy/server/ide/?folder=/home"),
        ("/api/cluster/lab/proxy/server/ide", "/api/cluster/lab/proxy/server/ide/"),
        # One canonical URL per workspace: the default cluster's is the short form.
        ("/api/cluster/default/proxy/server/ide/lab?x=1", "/proxy/server/ide/lab?x=1"),
        ("/api/cluster/default/proxy/server/ide", "/proxy/server/ide/"),
        ("/api/cluster/%64efault/proxy/server/ide/", "/proxy/server/ide/"),
        ("/proxy/server/%69de/x", "/proxy/server/ide/x"),
        ("/proxy/server/ide/a/./b/../c", "/proxy/server/ide/a/c"),
        ("/proxy/server/ide/a/%2e%2E/c", "/proxy/server/ide/c"),
        ("/proxy/10.1.2.3:8080", "/proxy/10.1.2.3:8080/"),
        ("/proxy/Host.Example:80/x", "/proxy/host.example:80/x"),
        ("/proxy/[0:0::1]:8443/x", "/proxy/[::1]:8443/x"),
        ("/proxy?to=10.0.0.5:8080&path=/lab/tree", "/proxy/10.0.0.5:8080/lab/tree"),
        ("/proxy?to=h.svc:80", "/proxy/h.svc:80/"),
        ("/proxy?path=%2Fa%3Fb%3D1&to=h:80&c=2", "/proxy/h:80/a?b=1&c=2"),
        ("/proxy?to=https://h:9000&path=/x", "/proxy/https://h:9000/x"),
    ],
)
def test_non_canonical_uris_redirect(uri: str, redirect: str) -> None:
    p = parse(uri)
    assert p is not None
    assert p.redirect_to == redirect
    again = parse(redirect)
    assert again is not None and again.redirect_to is None
    assert (again.server, again.target_host, again.target_port, again.upstream_path) == (
        p.server,
        p.target_host,
        p.target_port,
        p.upstream_path,
    )


@pytest.mark.parametrize(
    ("uri", "host", "port", "scheme", "prefix"),
    [
        ("/proxy/10.1.2.3:8080/", "10.1.2.3", 8080, "http", "/proxy/10.1.2.3:8080"),
        ("/proxy/ws.ns.svc.cluster.local:8443/", "ws.ns.svc.cluster.local", 8443, "https", None),
        ("/proxy/[fd00::5]:80/", "fd00::5", 80, "http", "/proxy/[fd00::5]:80"),
        ("/proxy/https://10.0.0.1:9000/", "10.0.0.1", 9000, "https", None),
        ("/proxy/http://10.0.0.1:8443/", "10.0.0.1", 8443, "http", None),
    ],
)
def test_to_route(uri: str, host: str, port: int, scheme: str, prefix: str | None) -> None:
    p = parse(uri)
    assert p is not None and p.kind == "to" and p.redirect_to is None
    assert (p.target_host, p.target_port, p.scheme) == (host, port, scheme)
    assert p.prefix == (prefix or uri.rstrip("/"))


@pytest.mark.parametrize(
    "uri", ["/", "/api/servers", "/proxyfoo", "/api/cluster/lab/db", "proxy/x", "*", ""]
)
def test_not_proxy_uris(uri: str) -> None:
    assert parse(uri) is None


def test_absolute_form_is_accepted() -> None:
    p = parse("http://127.0.0.1:8090/proxy/server/ide/x?y")
    assert p is not None and p.upstream_path == "/x?y" and p.server == "ide"


@pytest.mark.parametrize(
    ("uri", "field"),
    [
        ("/proxy/server/", "server"),
        ("/proxy/server", "server"),
        ("/proxy/server/IDE/", "server"),
        ("/proxy/server/-ide/", "server"),
        ("/proxy/server/a%2Fb/", "server"),
        ("/proxy/server/" + "a" * 64 + "/", "server"),
        ("/api/cluster/Lab/proxy/server/ide/", "cluster"),
        ("/api/cluster/lab/proxy/10.0.0.1:80/", "route"),
        ("/api/cluster/lab/proxy", "route"),
        ("/proxy/server/ide/../x", "path"),
        ("/proxy/server/ide/a/../../x", "path"),
        ("/proxy/server/ide/%2e%2e/x", "path"),
        ("/proxy/server/ide/..%2Fx", "path"),
        ("/proxy/server/ide/a%5C..%5C..%5Cx", "path"),
        ("/proxy/server/ide/a b", "uri"),
        ("/proxy/server/ide/a\r\nX-Injected: 1", "uri"),
        ("/proxy/10.0.0.1/", "to"),
        ("/proxy/10.0.0.1:0/", "to"),
        ("/proxy/10.0.0.1:65536/", "to"),
        ("/proxy/10.0.0.1:+80/", "to"),
        ("/proxy/::1:80/", "to"),
        ("/proxy/[fe80::1%25eth0]:80/", "to"),
        ("/proxy/2130706433:80/", "to"),
        ("/proxy/0x7f000001:80/", "to"),
        ("/proxy/127.1:80/", "to"),
        ("/proxy/a%2Fb:80/", "to"),
        ("/proxy/user@h:80/", "to"),
        ("/proxy?path=/x", "to"),
        ("/proxy?to=a:1&to=b:2", "to"),
        ("/proxy?to=h:80&path=/a&path=/b", "path"),
        ("/proxy?to=h:80&path=/../etc", "path"),
        ("/proxy?to=h:80/x", "to"),
    ],
)
def test_malformed_proxy_uris(uri: str, field: str) -> None:
    with pytest.raises(ProxyPathError) as caught:
        parse(uri)
    assert caught.value.field == field


def test_query_form_decodes_and_reencodes_its_path() -> None:
    p = parse("/proxy?to=h:80&path=/my%20file%0d%0a")
    assert p is not None
    assert p.upstream_path == "/my%20file%0D%0A"
    assert p.redirect_to == "/proxy/h:80/my%20file%0D%0A"


# --- properties -------------------------------------------------------------------------

LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%"
SEGMENT = st.text(PCHAR, min_size=0, max_size=12).filter(
    lambda s: unquote(s) not in (".", "..") and ".." not in unquote(s).replace("\\", "/").split("/")
)
QUERY = st.text(PCHAR + "/?", max_size=30)
PREFIXES = [b"", b"/proxy", b"/proxy/", b"/proxy/server/", b"/proxy/server/ide/", b"/proxy?"]
PREFIXES += [b"/api/cluster/c/proxy/server/", b"/proxy/10.0.0.1:80/", b"/proxy/https://"]


def check_invariants(p: ProxyPath) -> None:
    assert p.upstream_path.startswith("/")
    path = p.upstream_path.split("?", 1)[0]
    decoded = [unquote(s, encoding="latin-1") for s in path.split("/")]
    assert ".." not in decoded and "." not in decoded
    assert p.prefix.startswith(("/proxy/", "/api/cluster/")) and not p.prefix.endswith("/")
    assert (p.server is None) == (p.kind == "to") == (p.target_host is not None)
    if p.redirect_to is not None:
        assert p.redirect_to.startswith(p.prefix + "/")
        again = parse(p.redirect_to)
        assert again is not None and again.redirect_to is None
        assert again.upstream_path == p.upstream_path
        assert (again.server, again.target_host, again.target_port, again.scheme) == (
            p.server,
            p.target_host,
            p.target_port,
            p.scheme,
        )


@given(st.sampled_from(PREFIXES), st.binary(max_size=80))
@example(b"/proxy/server/", b"a/%2e%2e/%2e%2e/x")
@example(b"/proxy?", b"to=h:1&path=%2F%252e%252e%2Fx")
@example(b"/proxy/", b"h.:80/.")
def test_never_crashes_and_results_are_sound(head: bytes, tail: bytes) -> None:
    try:
        p = parse_proxy_uri(head + tail)
    except ProxyPathError as e:
        assert e.field and e.message
        return
    if p is not None:
        check_invariants(p)


@given(LABEL, st.lists(SEGMENT, max_size=5), st.none() | QUERY)
def test_server_round_trip(server: str, segments: list[str], query: str | None) -> None:
    rest = "/".join(segments)
    tail = "" if query is None else "?" + query
    p = parse(f"/proxy/server/{server}/{rest}{tail}")
    assert p is not None
    assert (p.kind, p.server, p.prefix) == ("server", server, f"/proxy/server/{server}")
    assert p.upstream_path == f"/{rest}{tail}"
    assert p.redirect_to is None


@given(
    st.sampled_from(["default", "lab", "c-2"]),
    LABEL,
    st.lists(SEGMENT, max_size=4),
    st.none() | QUERY,
)
def test_every_server_spelling_leads_to_the_canonical_url(
    cluster: str, server: str, segments: list[str], query: str | None
) -> None:
    """Both spellings of a workspace URL end at ``workspace_prefix``: the canonical one is
    served as it is, the other redirects there with the same upstream path."""
    tail = "/" + "/".join(segments) + ("" if query is None else "?" + query)
    canonical = workspace_prefix(cluster, server)
    spellings = [f"/api/cluster/{cluster}/proxy/server/{server}{tail}"]
    if cluster == "default":
        spellings.append(f"/proxy/server/{server}{tail}")
    for uri in spellings:
        p = parse(uri)
        assert p is not None and p.prefix == canonical and p.cluster_id == cluster
        assert p.upstream_path == tail
        if uri.startswith(canonical + "/"):
            assert p.redirect_to is None
        else:
            assert p.redirect_to == canonical + tail


@given(
    st.ip_addresses(),
    st.integers(1, 65535),
    st.lists(SEGMENT, max_size=4),
    st.none() | QUERY,
)
def test_to_round_trip(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    segments: list[str],
    query: str | None,
) -> None:
    assume(not (isinstance(address, ipaddress.IPv6Address) and address.scope_id))
    to = format_target(str(address), port)
    tail = "" if query is None else "?" + query
    p = parse(f"/proxy/{to}/{'/'.join(segments)}{tail}")
    assert p is not None and p.redirect_to is None
    assert (p.target_host, p.target_port) == (str(address), port)
    assert p.upstream_path == "/" + "/".join(segments) + tail
    assert p.scheme == ("https" if port == 8443 else "http")
    q = parse(f"/proxy?to={to}&path=/{'/'.join(segments)}")
    assert q is not None and q.redirect_to is not None
    assert q.prefix == p.prefix and (q.target_host, q.target_port) == (str(address), port)
