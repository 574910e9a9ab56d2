"""Header policy in both directions, with examples and properties."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guildnet.proxy.headers import (
    HOP_BY_HOP,
    Headers,
    forward_request_headers,
    remove_dot_segments,
    report_to_endpoints,
    reporting_endpoint_names,
    rewrite_csp,
    rewrite_location,
    rewrite_reporting_endpoints,
    rewrite_response_headers,
    rewrite_service_worker_allowed,
    rewrite_set_cookie,
)

PREFIX = "/proxy/server/ide"
HOST = "https://127.0.0.1:8090"
UPSTREAM = "http://10.1.2.3:8080"


def names(headers: Headers) -> list[bytes]:
    return [n.lower() for n, _ in headers]


def values(headers: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


def forward(headers: Headers, upgrade: bool = False) -> Headers:
    return forward_request_headers(
        headers,
        client_ip="192.0.2.7",
        proto="https",
        host=b"127.0.0.1:8090",
        prefix=PREFIX,
        upgrade=upgrade,
    )


def respond(headers: Headers, upgrade: bool = False, preserve: bool = False) -> Headers:
    return rewrite_response_headers(
        headers,
        prefix=PREFIX,
        host_origin=HOST,
        upstream_origins=(UPSTREAM,),
        route="podproxy",
        upgrade=upgrade,
        preserve=preserve,
        public_path=f"{PREFIX}/static/sw.js",
    )


# --- requests ---------------------------------------------------------------------------


def test_request_hop_by_hop_and_forwarding_headers() -> None:
    out = forward(
        [
            (b"Host", b"127.0.0.1:8090"),
            (b"Connection", b"keep-alive, X-Secret-Hop"),
            (b"X-Secret-Hop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"TE", b"trailers"),
            (b"Proxy-Authorization", b"Basic eA=="),
            (b"Proxy", b"http://evil"),
            (b"Upgrade", b"websocket"),
            (b"Content-Length", b"3"),
            (b"X-Forwarded-For", b"203.0.113.1"),
            (b"X-Forwarded-Host", b"evil.example"),
            (b"X-Forwarded-Prefix", b"/evil"),
            (b"Forwarded", b"for=1.2.3.4"),
            (b"X-GuildNet-Route", b"portforward"),
            (b"x-guildnet-target", b"169.254.169.254:80"),
            (b"Origin", b"https://127.0.0.1:8090"),
            (b"X-Request-Id", b"abc"),
            (b"Accept", b"*/*"),
        ]
    )
    assert out[0] == (b"Host", b"127.0.0.1:8090")
    assert names(out) == [
        b"host",
        b"content-length",
        b"origin",
        b"x-request-id",
        b"accept",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    ]
    assert values(out, b"x-forwarded-for") == [b"203.0.113.1, 192.0.2.7"]
    assert values(out, b"x-forwarded-proto") == [b"https"]
    assert values(out, b"x-forwarded-host") == [b"127.0.0.1:8090"]
    assert values(out, b"x-forwarded-prefix") == [PREFIX.encode()]


def test_websocket_upgrade_keeps_upgrade_headers() -> None:
    out = forward(
        [
            (b"Connection", b"Upgrade"),
            (b"Upgrade", b"websocket"),
            (b"Sec-WebSocket-Key", b"k"),
            (b"Sec-WebSocket-Version", b"13"),
        ],
        upgrade=True,
    )
    assert values(out, b"connection") == [b"Upgrade"]
    assert values(out, b"upgrade") == [b"websocket"]
    assert values(out, b"sec-websocket-key") == [b"k"]


def test_host_app_credentials_are_not_forwarded() -> None:
    out = forward(
        [
            (b"Cookie", b"guildnet_session=s3cret; code-server-session=abc; _xsrf=1"),
            (b"Cookie", b"guildnet_session=again"),
            (b"Authorization", b"Basic dXNlcjpwdw=="),
        ]
    )
    assert values(out, b"cookie") == [b"code-server-session=abc; _xsrf=1"]
    assert values(out, b"authorization") == []
    kept = forward([(b"Authorization", b"token jupyter-token")])
    assert values(kept, b"authorization") == [b"token jupyter-token"]


HEADER_NAMES = st.sampled_from(
    [
        b"Connection",
        b"Keep-Alive",
        b"TE",
        b"Trailer",
        b"Upgrade",
        b"Proxy-Connection",
        b"Proxy-Authorization",
        b"X-GuildNet-Route",
        b"X-Forwarded-Host",
        b"X-Forwarded-Proto",
        b"X-Forwarded-For",
        b"Cookie",
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Accept",
    ]
) | st.text(string.ascii_letters + "-", min_size=1, max_size=12).map(str.encode)
HEADER_VALUES = st.text(string.ascii_letters + string.digits + " ,;=-_", max_size=40).map(
    str.encode
)


@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12), st.booleans())
def test_forwarded_headers_properties(headers: Headers, upgrade: bool) -> None:
    out = forward(headers, upgrade=upgrade)
    out_names = names(out)
    for name in out_names:
        assert not name.startswith(b"x-guildnet-")
        assert not name.startswith(b"proxy")
        if name in HOP_BY_HOP:
            assert upgrade and name in (b"connection", b"upgrade")
    for single in (b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"):
        assert out_names.count(single) == 1
    assert values(out, b"x-forwarded-host") == [b"127.0.0.1:8090"]
    assert values(out, b"x-forwarded-for")[0].endswith(b"192.0.2.7")
    for cookie in values(out, b"cookie"):
        assert b"guildnet_session=" not in cookie
    # End-to-end framing headers survive for the body splice, unless Connection named them.
    for name, value in headers:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            assert (name, value) in out


# --- Location ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/login?to=%2F#top", f"{PREFIX}/login?to=%2F#top"),
        ("/", f"{PREFIX}/"),
        (f"{UPSTREAM}/login?x=1", f"{PREFIX}/login?x=1"),
        ("http://10.1.2.3:8080", f"{PREFIX}/"),
        ("http://10.1.2.3:8080?q#f", f"{PREFIX}/?q#f"),
        ("HTTP://10.1.2.3:8080/A", f"{PREFIX}/A"),
        ("https://127.0.0.1:8090/login", f"{PREFIX}/login"),
        (f"{PREFIX}/already", f"{PREFIX}/already"),
        (f"https://127.0.0.1:8090{PREFIX}/x?y", f"{PREFIX}/x?y"),
        ("//10.1.2.3:8080/x", f"{PREFIX}/x"),
        ("/\\evil.example/x", "/\\evil.example/x"),
        ("https://github.com/login/oauth", "https://github.com/login/oauth"),
        ("//github.com/x", "//github.com/x"),
        ("login", "login"),
        ("../up", "../up"),
        ("?page=2", "?page=2"),
        ("http://10.1.2.3:9999/x", "http://10.1.2.3:9999/x"),
        ("http://10.1.2.3:8080@evil.example/x", "http://10.1.2.3:8080@evil.example/x"),
    ],
)
def test_rewrite_location(location: str, expected: str) -> None:
    origins = (UPSTREAM, HOST)
    assert rewrite_location(location, PREFIX, origins) == expected


def test_default_ports_compare_equal() -> None:
    assert rewrite_location("https://h/x", PREFIX, ("https://h:443",)) == f"{PREFIX}/x"
    assert rewrite_location("http://h:80/x", PREFIX, ("http://h",)) == f"{PREFIX}/x"
    assert rewrite_location("//h:80/x", PREFIX, ("http://h",)) == f"{PREFIX}/x"


PATHS = st.text(string.ascii_letters + string.digits + "-._~%/", max_size=20).map(
    lambda s: "/" + s.lstrip("/")
)
QUERIES = st.just("") | st.text(string.ascii_letters + "=&/?%", max_size=15).map(lambda s: "?" + s)
FRAGMENTS = st.just("") | st.text(string.ascii_letters + "/?#", max_size=10).map(lambda s: "#" + s)


@given(PATHS, QUERIES, FRAGMENTS, st.sampled_from(["", UPSTREAM, HOST, "//10.1.2.3:8080"]))
def test_same_origin_locations_land_in_the_prefix(
    path: str, query: str, fragment: str, origin: str
) -> None:
    out = rewrite_location(origin + path + query + fragment, PREFIX, (UPSTREAM, HOST))
    assert out.startswith(PREFIX + "/") or out.split("?")[0].split("#")[0] == PREFIX
    assert out.endswith(path + query + fragment)


@given(PATHS, QUERIES, st.sampled_from(["https://example.com", "http://10.1.2.3:81"]))
def test_other_origins_are_untouched(path: str, query: str, origin: str) -> None:
    value = origin + path + query
    assert rewrite_location(value, PREFIX, (UPSTREAM, HOST)) == value


# --- Set-Cookie -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        (
            "sid=abc; Domain=10.1.2.3; Path=/; HttpOnly; SameSite=Strict",
            f"sid=abc; Path={PREFIX}/; HttpOnly; Secure; SameSite=None; Partitioned",
        ),
        ("a=b", f"a=b; Path={PREFIX}/; Secure; SameSite=None; Partitioned"),
        ("a=b; path=/lab/tree", f"a=b; Path={PREFIX}/lab/tree; Secure; SameSite=None; Partitioned"),
        (f"a=b; Path={PREFIX}/x", f"a=b; Path={PREFIX}/x; Secure; SameSite=None; Partitioned"),
        (
            "a=b; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=60; secure; partitioned",
            f"a=b; Path={PREFIX}/; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Max-Age=60; "
            "Secure; SameSite=None; Partitioned",
        ),
        ("a=b; Path=relative", f"a=b; Path={PREFIX}/; Secure; SameSite=None; Partitioned"),
        (
            "a=b; Path=/proxy/server/ide-evil",
            f"a=b; Path={PREFIX}/proxy/server/ide-evil; Secure; SameSite=None; Partitioned",
        ),
    ],
)
def test_rewrite_set_cookie(cookie: str, expected: str) -> None:
    assert rewrite_set_cookie(cookie, PREFIX) == expected


COOKIE_TEXT = st.text(string.printable.replace(";", "").replace("\r", "").replace("\n", ""))


@given(
    st.text(string.ascii_letters + "_-", min_size=1, max_size=10),
    st.lists(
        st.tuples(
            st.sampled_from(["Domain", "Path", "path", "SameSite", "Secure", "Max-Age", "X"]),
            st.none() | COOKIE_TEXT,
        ),
        max_size=6,
    ),
)
def test_set_cookie_properties(name: str, attrs: list[tuple[str, str | None]]) -> None:
    value = "; ".join([f"{name}=v", *(k if v is None else f"{k}={v}" for k, v in attrs)])
    out = rewrite_set_cookie(value, PREFIX)
    parts = [p.strip() for p in out.split(";")]
    keys = [p.split("=", 1)[0].strip().lower() for p in parts[1:]]
    assert "domain" not in keys
    assert keys.count("secure") == 1 and keys.count("partitioned") == 1
    assert [p for p in parts[1:] if p.lower().startswith("samesite")] == ["SameSite=None"]
    paths = [p.split("=", 1)[1] for p in parts[1:] if p.lower().startswith("path=")]
    assert len(paths) == 1 and paths[0].startswith(PREFIX + "/")


# --- CSP and the whole response ---------------------------------------------------------


def test_rewrite_csp() -> None:
    csp = "default-src 'self'; frame-ancestors *; script-src 'unsafe-eval'"
    assert rewrite_csp(csp, HOST) == (
        f"default-src 'self'; script-src 'unsafe-eval'; frame-ancestors 'self' {HOST}"
    )
    two = rewrite_csp("frame-ancestors 'none', img-src *", HOST)
    assert two == f"frame-ancestors 'self' {HOST}, img-src *; frame-ancestors 'self' {HOST}"
    assert rewrite_csp("", HOST) == f"frame-ancestors 'self' {HOST}"
    assert rewrite_csp("a", "https://x; script-src *") == "a; frame-ancestors 'self'"


DIRECTIVES = st.sampled_from(
    ["default-src", "frame-ancestors", "FRAME-ANCESTORS", "script-src", "img-src", "sandbox"]
)
SOURCES = st.sampled_from(["*", "'self'", "'none'", "https:", "https://evil.example", "data:"])


@given(
    st.lists(
        st.lists(st.tuples(DIRECTIVES, st.lists(SOURCES, max_size=3)), max_size=4),
        min_size=1,
        max_size=3,
    )
)
def test_csp_frame_ancestors_is_only_the_host(policies: list[list[tuple[str, list[str]]]]) -> None:
    value = ", ".join("; ".join(" ".join([d, *s]) for d, s in p) for p in policies)
    out = rewrite_csp(value, HOST)
    for policy in out.split(","):
        ancestors = [
            d.strip() for d in policy.split(";") if d.strip().lower().startswith("frame-ancestors")
        ]
        assert ancestors == [f"frame-ancestors 'self' {HOST}"]
    assert "frame-ancestors *" not in out.lower()


def test_response_headers() -> None:
    out = respond(
        [
            (b"Connection", b"close, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Location", b"/login?next=%2F#x"),
            (b"Set-Cookie", b"code-server-session=s; Path=/; HttpOnly"),
            (b"Set-Cookie", b"guildnet_session=stolen; Path=/"),
            (b"X-Frame-Options", b"DENY"),
            (b"Cross-Origin-Opener-Policy", b"same-origin"),
            (b"Cross-Origin-Embedder-Policy", b"require-corp"),
            (b"Strict-Transport-Security", b"max-age=99999999; includeSubDomains"),
            (b"Clear-Site-Data", b'"*"'),
            (b"Service-Worker-Allowed", b"/"),
            (b"Alt-Svc", b'h2="evil.example:443"'),
            (b"X-GuildNet-Route", b"spoofed"),
            (b"Content-Type", b"text/html"),
            (b"Refresh", b"5; url=/home"),
        ]
    )
    assert out == [
        (b"Transfer-Encoding", b"chunked"),
        (b"Location", PREFIX.encode() + b"/login?next=%2F#x"),
        (
            b"Set-Cookie",
            b"code-server-session=s; Path=/proxy/server/ide/; HttpOnly; Secure; SameSite=None; "
            b"Partitioned",
        ),
        (b"Service-Worker-Allowed", b"/proxy/server/ide/"),
        (b"Content-Type", b"text/html"),
        (b"Refresh", b"5; url=/proxy/server/ide/home"),
        (b"Content-Security-Policy", b"frame-ancestors 'self' https://127.0.0.1:8090"),
        (b"X-Frame-Options", b"SAMEORIGIN"),
        (b"Cross-Origin-Opener-Policy", b"same-origin-allow-popups"),
        (b"X-GuildNet-Route", b"podproxy"),
    ]


def test_switching_protocols_keeps_upgrade() -> None:
    out = respond(
        [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Accept", b"a")],
        upgrade=True,
    )
    assert values(out, b"upgrade") == [b"websocket"]
    assert values(out, b"connection") == [b"Upgrade"]
    assert values(out, b"sec-websocket-accept") == [b"a"]


def test_existing_csp_is_rewritten_not_duplicated() -> None:
    out = respond([(b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'")])
    assert values(out, b"content-security-policy") == [
        b"default-src 'self'; frame-ancestors 'self' https://127.0.0.1:8090"
    ]


@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12))
def test_response_properties(headers: Headers) -> None:
    out = respond(headers)
    out_names = names(out)
    assert all(n not in HOP_BY_HOP for n in out_names)
    assert values(out, b"x-guildnet-route") == [b"podproxy"]
    assert values(out, b"x-frame-options") == [b"SAMEORIGIN"]
    assert b"cross-origin-embedder-policy" not in out_names
    assert len(values(out, b"content-security-policy")) >= 1


# --- Location and Set-Cookie: stable under a second pass (preserve mode sends them so) ------


@given(PATHS, QUERIES, FRAGMENTS, st.sampled_from(["", UPSTREAM, HOST, "//10.1.2.3:8080"]))
def test_location_rewrite_is_idempotent(path: str, query: str, fragment: str, origin: str) -> None:
    """A preserve-mode app already answers with public paths: they pass unchanged."""
    origins = (UPSTREAM, HOST)
    once = rewrite_location(origin + path + query + fragment, PREFIX, origins)
    assert rewrite_location(once, PREFIX, origins) == once
    assert rewrite_location(PREFIX + path + query, PREFIX, origins) == PREFIX + path + query


@given(PATHS)
def test_cookie_path_under_the_prefix_is_kept(path: str) -> None:
    out = rewrite_set_cookie(f"_xsrf=t; Path={PREFIX}{path}", PREFIX)
    assert f"Path={PREFIX}{path};" in out
    assert rewrite_set_cookie(out, PREFIX) == out


# --- Service-Worker-Allowed --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "preserve", "expected"),
    [
        ("/", False, f"{PREFIX}/"),
        ("/", True, f"{PREFIX}/"),
        ("/static/", False, f"{PREFIX}/static/"),
        ("/static/", True, f"{PREFIX}/"),
        (f"{PREFIX}/static/", True, f"{PREFIX}/static/"),
        (f"{PREFIX}/static/", False, f"{PREFIX}/static/"),
        (PREFIX, True, f"{PREFIX}/"),
        ("/proxy/server/ide-evil/", True, f"{PREFIX}/"),
        (f"{PREFIX}/../other/", True, f"{PREFIX}/"),
        (f"{PREFIX}/%2e%2E/other/", True, f"{PREFIX}/"),
        ("/a/../../..", False, f"{PREFIX}/"),
        ("/a/./b/../c/", False, f"{PREFIX}/a/c/"),
        ("./", False, f"{PREFIX}/static/"),
        ("../", True, f"{PREFIX}/"),
        ("../../../", True, f"{PREFIX}/"),
        (f"{UPSTREAM}/x/", False, f"{PREFIX}/x/"),
        (f"{HOST}{PREFIX}/x/", True, f"{PREFIX}/x/"),
        ("https://evil.example/", False, f"{PREFIX}/"),
        ("//evil.example/", False, f"{PREFIX}/"),
        ("\\\\evil.example/", False, f"{PREFIX}/"),
        ("/x?y#z", False, f"{PREFIX}/x"),
        ("javascript:alert(1)", False, f"{PREFIX}/"),
        ("", False, f"{PREFIX}/static/"),
    ],
)
def test_service_worker_allowed(value: str, preserve: bool, expected: str) -> None:
    out = rewrite_service_worker_allowed(
        value, PREFIX, (UPSTREAM, HOST), preserve=preserve, public_path=f"{PREFIX}/static/sw.js"
    )
    assert out == expected


SW_TEXT = st.text(string.ascii_letters + string.digits + "./%\\:?#-", max_size=30)
SW_VALUES = st.one_of(
    SW_TEXT,
    st.tuples(st.sampled_from(["", "/", PREFIX, PREFIX + "/", UPSTREAM, HOST, "//x"]), SW_TEXT).map(
        "".join
    ),
)


@given(SW_VALUES, st.booleans(), st.none() | PATHS)
def test_service_worker_scope_never_leaves_the_prefix(
    value: str, preserve: bool, public: str | None
) -> None:
    out = rewrite_service_worker_allowed(
        value, PREFIX, (UPSTREAM, HOST), preserve=preserve, public_path=public
    )
    assert out.startswith(PREFIX + "/")
    segments = [seg.lower().replace("%2e", ".") for seg in out.split("/")]
    assert "." not in segments and ".." not in segments
    assert "?" not in out and "#" not in out
    # Stable: a rewritten value passes through a second proxy pass unchanged.
    assert rewrite_service_worker_allowed(out, PREFIX, (), preserve=True) == out


SAFE_SEGMENTS = st.lists(
    st.text(string.ascii_letters + string.digits + "-_", min_size=1), max_size=4
)


@given(SAFE_SEGMENTS, st.booleans())
def test_service_worker_paths_map_by_mode(segments: list[str], slash: bool) -> None:
    path = "/" + "/".join(segments) + ("/" if slash and segments else "")
    strip = rewrite_service_worker_allowed(path, PREFIX, (UPSTREAM,), preserve=False)
    preserved = rewrite_service_worker_allowed(PREFIX + path, PREFIX, (UPSTREAM,), preserve=True)
    assert strip == preserved == PREFIX + path


def test_service_worker_allowed_is_rewritten_not_dropped() -> None:
    out = respond([(b"Service-Worker-Allowed", b"/")])
    assert values(out, b"service-worker-allowed") == [f"{PREFIX}/".encode()]
    out = respond([(b"Service-Worker-Allowed", f"{PREFIX}/lab/".encode())], preserve=True)
    assert values(out, b"service-worker-allowed") == [f"{PREFIX}/lab/".encode()]


def test_remove_dot_segments() -> None:
    assert remove_dot_segments("/a/b/../c/./d") == "/a/c/d"
    assert remove_dot_segments("/a/..") == "/"
    assert remove_dot_segments("/../../x") == "/x"
    assert remove_dot_segments("/a/%2E%2e/b/.") == "/b/"


# --- reports ------------------------------------------------------------------------------


def test_csp_report_uri_moves_into_the_prefix() -> None:
    csp = "default-src 'self'; report-uri /csp /r2 https://sentry.example/r; report-to main"
    assert rewrite_csp(csp, HOST, PREFIX, (UPSTREAM, HOST)) == (
        f"default-src 'self'; report-uri {PREFIX}/csp {PREFIX}/r2 https://sentry.example/r; "
        f"report-to main; frame-ancestors 'self' {HOST}"
    )
    kept = f"report-uri {PREFIX}/csp"
    assert rewrite_csp(kept, HOST, PREFIX, ()) == f"{kept}; frame-ancestors 'self' {HOST}"
    out = respond([(b"Content-Security-Policy-Report-Only", b"REPORT-URI http://10.1.2.3:8080/r")])
    assert values(out, b"content-security-policy-report-only") == [
        f"REPORT-URI {PREFIX}/r; frame-ancestors 'self' {HOST}".encode()
    ]


@given(
    st.lists(st.tuples(PATHS, st.sampled_from(["", UPSTREAM, HOST])), min_size=1, max_size=3),
    st.sampled_from(["https://sentry.example", "http://10.1.2.3:81"]),
)
def test_csp_reports_stay_in_the_workspace(reports: list[tuple[str, str]], other: str) -> None:
    urls = [origin + path.replace(";", "").replace(",", "") for path, origin in reports]
    csp = f"script-src 'self'; report-uri {' '.join(urls)} {other}/r"
    out = rewrite_csp(csp, HOST, PREFIX, (UPSTREAM, HOST))
    (policy,) = out.split(",")
    (directive,) = [d.strip() for d in policy.split(";") if d.strip().startswith("report-uri")]
    *moved, untouched = directive.split()[1:]
    assert untouched == f"{other}/r"
    assert all(u == PREFIX or u.startswith(PREFIX + "/") for u in moved)
    assert rewrite_csp(out, HOST, PREFIX, (UPSTREAM, HOST)) == out


def test_reporting_endpoints() -> None:
    value = 'main="/reports", csp-ep="https://127.0.0.1:8090/c", ext="https://sentry.example/x"'
    assert rewrite_reporting_endpoints(value, PREFIX, (UPSTREAM, HOST)) == (
        f'main="{PREFIX}/reports", csp-ep="{PREFIX}/c", ext="https://sentry.example/x"'
    )
    assert reporting_endpoint_names(value) == {"main", "csp-ep", "ext"}
    out = respond([(b"Reporting-Endpoints", b'default="/r"')])
    assert values(out, b"reporting-endpoints") == [f'default="{PREFIX}/r"'.encode()]


def test_report_to_becomes_document_scoped_endpoints() -> None:
    report_to = (
        b'{"group":"csp","max_age":10886400,"endpoints":[{"url":"/csp-reports"}]}, '
        b'{"max_age":1,"endpoints":[{"url":"https://sentry.example/r"}]}, '
        b'{"group":"taken","endpoints":[{"url":"/t"}]}, {"group":"Bad Name","endpoints":[]}'
    )
    out = respond(
        [(b"Report-To", report_to), (b"Reporting-Endpoints", b'taken="/mine"'), (b"NEL", b"{}")]
    )
    assert b"report-to" not in names(out) and b"nel" not in names(out)
    assert values(out, b"reporting-endpoints") == [
        f'taken="{PREFIX}/mine"'.encode(),
        f'csp="{PREFIX}/csp-reports", default="https://sentry.example/r"'.encode(),
    ]
    assert respond([(b"Report-To", b"not json")]) == respond([])


@given(
    st.lists(
        st.fixed_dictionaries(
            {"endpoints": st.lists(st.fixed_dictionaries({"url": PATHS}), max_size=2)},
            optional={"group": st.text(string.ascii_lowercase + "-", min_size=1, max_size=8)},
        ),
        max_size=4,
    )
)
def test_report_to_endpoints_land_in_the_prefix(groups: list[dict[str, object]]) -> None:
    import json

    value = ", ".join(json.dumps(g) for g in groups)
    out = report_to_endpoints([value], PREFIX, (UPSTREAM, HOST), ())
    names_seen = reporting_endpoint_names(out)
    assert len(names_seen) == len(out.split(", ")) if out else names_seen == set()
    for entry in filter(None, out.split(", ")):
        url = entry.split("=", 1)[1].strip('"')
        assert url == PREFIX or url.startswith(PREFIX + "/")


@given(st.text(max_size=60))
def test_reporting_rewrites_accept_any_text(value: str) -> None:
    rewrite_reporting_endpoints(value, PREFIX, (UPSTREAM,))
    report_to_endpoints([value], PREFIX, (UPSTREAM,), ())
