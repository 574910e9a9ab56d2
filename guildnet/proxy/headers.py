"""What crosses the proxy, in each direction. Pure: header lists in, header lists out.

Headers are ``list[tuple[bytes, bytes]]`` in wire order; names compare case-insensitively
and kept headers keep their original spelling and order.

Request (browser -> workspace), ``forward_request_headers``:

* Hop-by-hop headers go: ``Connection`` and every header it names, ``Keep-Alive``, ``TE``,
  ``Trailer``, ``Upgrade`` (kept with ``Connection: Upgrade`` for an upgrade),
  ``Proxy-*`` and ``Proxy`` (httpoxy). ``Content-Length`` and ``Transfer-Encoding`` are
  *kept*: the engine splices the body with its original framing; an engine that re-frames
  a body must replace both (and must refuse a request carrying both, per RFC 9112 6.3).
* ``Host`` stays the public host, and ``Origin`` is passed unchanged. code-server compares
  Origin with X-Forwarded-Host (else Host) and Jupyter compares it with Host, so WebSockets
  work only when both still name the Host App; and the app builds absolute URLs with the
  public host, which ``rewrite_location`` then maps into the prefix.
* ``X-Forwarded-For`` gets the client appended; ``X-Forwarded-Proto/-Host/-Prefix`` are set
  (client values dropped), as are ``Forwarded`` and ``X-Real-IP`` (spoofable, and nothing
  here vouches for them) and every ``X-GuildNet-*`` header: client headers never steer.
  ``X-GuildNet-User`` is then set to the caller's login (``auth.access.user_header_value``)
  when the listener identified one: workspace apps may trust it, no client can forge it.
* The Host App's credentials never reach a workspace: its cookies (``host_cookie_names``)
  are cut out of ``Cookie``, and ``Authorization: Basic`` (what a browser attaches to every
  request to an origin behind an auth proxy) is dropped. Other ``Authorization`` schemes
  pass: workspace pages send their own tokens (Jupyter's ``token ...``, bearer tokens).
  ``X-Request-Id`` passes for correlation.

Response (workspace -> browser), ``rewrite_response_headers``:

* ``Location``/``Content-Location``/``Refresh`` pointing at the upstream (or, since Host is
  forwarded, at the Host App) move into the prefix; other origins are left alone.
* ``Set-Cookie``: Domain dropped, Path scoped under the prefix, Secure, SameSite=None,
  Partitioned (the iframe is same-site with its parent, and CHIPS keeps the cookie working
  where third-party cookies are blocked). Cookies named like the Host App's are dropped.
* Framing: every CSP policy gets ``frame-ancestors 'self' <host origin>`` in place of the
  upstream's (one is added when there is no CSP: never framable by other sites, never
  ``*``); ``X-Frame-Options`` becomes ``SAMEORIGIN`` (the parent page is same-origin, and
  browsers without frame-ancestors still refuse other sites).
* ``Cross-Origin-Opener-Policy`` becomes ``same-origin-allow-popups`` (ignored inside an
  iframe; top-level it keeps cross-origin openers out but lets the IDE's sign-in popups
  work). ``Cross-Origin-Embedder-Policy`` is dropped: an iframe in a parent that is not
  cross-origin isolated cannot become isolated, so COEP would only block the IDE's
  cross-origin subresources (webviews, extension icons).
* ``Service-Worker-Allowed`` is scoped into the prefix, never dropped (code-server's
  service worker needs it) and never wider than the prefix: ``/`` becomes ``<prefix>/``;
  in strip mode another upstream path gets the prefix prepended, in preserve mode (and
  for a path already under the prefix) it is kept; relative values resolve against the
  request's public path; whatever lands outside ``<prefix>/`` after dot-segment removal
  (``..``, other origins, odd spellings) is clamped to ``<prefix>/``.
* Reports stay in the workspace: CSP ``report-uri`` URLs and ``Reporting-Endpoints``
  URLs that point at the upstream (or are same-origin paths) move into the prefix as
  ``Location`` does. ``Report-To`` is not forwarded (its endpoint groups are cached per
  origin for ``max_age``, so they would catch reports from every page of the Host App's
  origin); its groups become ``Reporting-Endpoints`` entries (document-scoped, what
  ``report-to`` in a CSP uses) unless the response names that endpoint itself.
* Headers that act on the whole Host App origin, not just the workspace, are dropped:
  ``Strict-Transport-Security``, ``Clear-Site-Data`` (would wipe the Host App's storage),
  ``Alt-Svc``, ``NEL``, ``Report-To`` (see above), ``Public-Key-Pins*``, ``Expect-CT``,
  ``Set-Cookie2``.
* Hop-by-hop headers go as for requests; upstream ``X-GuildNet-*`` headers are replaced by
  ``X-GuildNet-Route: <route>``.

On its own origin (``WORKSPACE_ORIGIN=subdomain``, ``own_origin=True``) a workspace is
served at the root (``prefix`` is ""), so nothing moves into a prefix and no
``X-Forwarded-Prefix`` is sent; the differences that remain are pure functions:
``set_cookie_rewriter`` (Path kept as sent, Domain still dropped) and ``frame_headers``
(frame-ancestors names the Host App, which is another origin now, and no
``X-Frame-Options``, which cannot say so).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Iterable
from typing import Final

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"trailers",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy",
    }
)
DEFAULT_HOST_COOKIES: Final = ("guildnet_session",)
ROUTE_HEADER: Final = b"X-GuildNet-Route"
USER_HEADER: Final = b"X-GuildNet-User"
_OWN_PREFIX: Final = b"x-guildnet-"
_REQUEST_DROP: Final = frozenset(
    {b"forwarded", b"x-real-ip", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix"}
)
_RESPONSE_DROP: Final = frozenset(
    {
        b"strict-transport-security",
        b"clear-site-data",
        b"alt-svc",
        b"nel",
        b"report-to",
        b"public-key-pins",
        b"public-key-pins-report-only",
        b"expect-ct",
        b"set-cookie2",
        b"x-frame-options",
        b"cross-origin-opener-policy",
        b"cross-origin-opener-policy-report-only",
        b"cross-origin-embedder-policy",
        b"cross-origin-embedder-policy-report-only",
    }
)
COOP: Final = b"same-origin-allow-popups"
_DEFAULT_PORTS: Final = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_ORIGIN: Final = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
_REFRESH: Final = re.compile(r"^(\s*[0-9.]*\s*[;,]\s*url\s*=\s*)(['\"]?)(.*?)\2\s*$", re.I)


# --- requests ---


def forward_request_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    client_ip: str,
    proto: str,
    host: bytes,
    prefix: str,
    upgrade: bool,
    host_cookie_names: Collection[str] = DEFAULT_HOST_COOKIES,
    user: bytes | None = None,
) -> Headers:
    """The headers to send upstream for a client request (see the module docstring).

    ``host`` is the client's Host header (the public host[:port]); ``proto`` the scheme
    the client used; ``upgrade`` True when the request is a protocol upgrade the engine
    will pass through (WebSocket).
    """
    headers = list(headers)
    named = _connection_tokens(headers)
    host_cookies = frozenset(host_cookie_names)
    out: Headers = [(b"Host", host)]
    upgrade_value: bytes | None = None
    forwarded_for: list[bytes] = []
    for name, value in headers:
        low = name.lower()
        if low == b"upgrade" and upgrade:
            upgrade_value = value if upgrade_value is None else upgrade_value + b", " + value
            continue
        if (
            low in HOP_BY_HOP
            or low in named
            or low.startswith(b"proxy-")
            or low.startswith(_OWN_PREFIX)
            or low in _REQUEST_DROP
            or low == b"host"
        ):
            continue
        if low == b"x-forwarded-for":
            forwarded_for.append(value.strip())
            continue
        if low == b"cookie":
            value = strip_cookies(value, host_cookies)
            if not value:
                continue
        elif low == b"authorization" and value.strip()[:6].lower() == b"basic ":
            continue
        out.append((name, value))
    if upgrade and upgrade_value is not None:
        out.append((b"Connection", b"Upgrade"))
        out.append((b"Upgrade", upgrade_value))
    chain = b", ".join([v for v in forwarded_for if v] + [client_ip.encode("ascii")])
    out.append((b"X-Forwarded-For", chain))
    out.append((b"X-Forwarded-Proto", proto.encode("ascii")))
    out.append((b"X-Forwarded-Host", host))
    if prefix:  # a workspace on its own origin is served at its root: no prefix
        out.append((b"X-Forwarded-Prefix", prefix.encode("latin-1")))
    if user is not None:
        out.append((USER_HEADER, user))
    return out


def strip_cookies(value: bytes, names: Collection[str]) -> bytes:
    """A Cookie header value without the cookies called ``names`` (b"" if none is left)."""
    if not names:
        return value
    wanted = {n.encode("latin-1") for n in names}
    kept = [
        part.strip()
        for part in value.split(b";")
        if part.strip() and part.split(b"=", 1)[0].strip() not in wanted
    ]
    return b"; ".join(kept)


_NO_TOKENS: Final[frozenset[bytes]] = frozenset()
# Never let Connection remove the headers the proxy itself sets or relies on.
_NEVER_NAMED: Final = frozenset({b"host", b"content-length", b"transfer-encoding"})


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] | None = None
    for name, value in headers:
        if name.lower() == b"connection":
            if tokens is None:
                tokens = set()
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    if tokens is None:
        return _NO_TOKENS
    return frozenset(tokens - _NEVER_NAMED)


# --- responses ---


def rewrite_response_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    prefix: str,
    host_origin: str,
    upstream_origins: Collection[str],
    route: str,
    upgrade: bool = False,
    host_cookie_names: Collection[str] = DEFAULT_HOST_COOKIES,
    preserve: bool = False,
    public_path: str | None = None,
    own_origin: bool = False,
) -> Headers:
    """The headers to send the browser for an upstream response (see the module docstring).

    ``upgrade`` True for a ``101 Switching Protocols`` the engine passes through: then
    ``Connection: Upgrade`` and ``Upgrade`` are kept. ``preserve`` True when the upstream
    was sent the full public path (path mode "preserve"); ``public_path`` is the path the
    browser requested (relative ``Service-Worker-Allowed`` values resolve against it).
    ``own_origin`` True when the workspace is served at the root of its own origin
    (subdomain mode, ``prefix`` is ""): see ``set_cookie_rewriter`` and ``frame_headers``.
    """
    headers = list(headers)
    named = _connection_tokens(headers)
    origins = [*upstream_origins, host_origin]
    host_cookies = {n.lower() for n in host_cookie_names}
    rewrite_cookie = set_cookie_rewriter(own_origin)
    out: Headers = []
    upgrade_value: bytes | None = None
    saw_csp = False
    report_to: list[str] = []
    endpoints: set[str] = set()
    for name, value in headers:
        low = name.lower()
        if low == b"upgrade" and upgrade:
            upgrade_value = value
            continue
        if low == b"report-to":
            report_to.append(value.decode("latin-1"))
            continue
        if (
            low in HOP_BY_HOP
            or low in named
            or low.startswith(b"proxy-")
            or low.startswith(_OWN_PREFIX)
            or low in _RESPONSE_DROP
        ):
            continue
        text = value.decode("latin-1")
        if low in (b"location", b"content-location"):
            value = rewrite_location(text, prefix, origins).encode("latin-1")
        elif low == b"refresh":
            value = _rewrite_refresh(text, prefix, origins).encode("latin-1")
        elif low == b"set-cookie":
            if cookie_name(text).lower() in host_cookies:
                continue
            value = rewrite_cookie(text, prefix).encode("latin-1")
        elif low == b"content-security-policy":
            saw_csp = True
            value = rewrite_csp(text, host_origin, prefix, origins).encode("latin-1")
        elif low == b"content-security-policy-report-only":
            value = rewrite_csp(text, host_origin, prefix, origins).encode("latin-1")
        elif low == b"service-worker-allowed":
            value = rewrite_service_worker_allowed(
                text, prefix, origins, preserve=preserve, public_path=public_path
            ).encode("latin-1")
        elif low == b"reporting-endpoints":
            endpoints.update(reporting_endpoint_names(text))
            value = rewrite_reporting_endpoints(text, prefix, origins).encode("latin-1")
        out.append((name, value))
    if report_to:
        converted = report_to_endpoints(report_to, prefix, origins, endpoints)
        if converted:
            out.append((b"Reporting-Endpoints", converted.encode("latin-1")))
    if upgrade and upgrade_value is not None:
        out.append((b"Connection", b"Upgrade"))
        out.append((b"Upgrade", upgrade_value))
    out.extend(frame_headers(host_origin, own_origin=own_origin, has_csp=saw_csp))
    out.append((b"Cross-Origin-Opener-Policy", COOP))
    out.append((ROUTE_HEADER, route.encode("latin-1")))
    return out


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, default port dropped (as browsers write it)."""
    scheme, sep, rest = origin.strip().partition("://")
    if not sep:
        return origin.strip().lower()
    authority = rest.split("/", 1)[0].lower()
    scheme = scheme.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and authority.endswith(":" + default) and not authority.endswith("]"):
        authority = authority[: -len(default) - 1]
    return f"{scheme}://{authority}"


def rewrite_location(value: str, prefix: str, upstream_origins: Collection[str]) -> str:
    """Map a Location that points at the upstream into the public prefix.

    ``/x?q#f`` and ``<upstream origin>/x?q#f`` become ``<prefix>/x?q#f`` (a path that is
    already under the prefix is left as it is); ``//authority/...`` counts as that
    authority's origin. Relative references resolve under the prefix by themselves and
    other origins are not ours to touch: both are returned unchanged.
    """
    text = value.strip()
    origins = {normalise_origin(o) for o in upstream_origins}
    authorities = {o.split("://", 1)[1] for o in origins if "://" in o}
    if text[:1] in ("/", "\\") and text[1:2] in ("/", "\\"):
        # Network-path reference; browsers read "/\" and "\\" as "//" too.
        rest = text[2:]
        authority, path = _split_authority(rest)
        if authority.lower() not in authorities and _strip_default(authority) not in authorities:
            return value
        return _into_prefix(path, prefix)
    if text.startswith("/"):
        return _into_prefix(text, prefix)
    match = _SCHEME.match(text)
    if not match:
        return value
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if not rest.startswith("//"):
        return value
    authority, path = _split_authority(rest[2:])
    if normalise_origin(f"{scheme}://{authority}") not in origins:
        return value
    return _into_prefix(path, prefix)


def _split_authority(rest: str) -> tuple[str, str]:
    """("authority", "path?query#fragment") of what follows ``//``."""
    match = re.search(r"[/\\?#]", rest)
    if not match:
        return rest, ""
    return rest[: match.start()], rest[match.start() :]


def _strip_default(authority: str) -> str:
    low = authority.lower()
    for port in ("80", "443"):
        if low.endswith(":" + port):
            return low[: -len(port) - 1]
    return low


def _into_prefix(path: str, prefix: str) -> str:
    if not path or path[0] in "?#":
        path = "/" + path
    elif path[0] == "\\":
        path = "/" + path[1:]
    bare = re.split(r"[?#]", path, maxsplit=1)[0]
    if bare == prefix or bare.startswith(prefix + "/"):
        return path
    return prefix + path


def _rewrite_refresh(value: str, prefix: str, origins: Collection[str]) -> str:
    match = _REFRESH.match(value)
    if not match:
        return value
    head, quote, target = match.groups()
    return f"{head}{quote}{rewrite_location(target, prefix, origins)}{quote}"


def cookie_name(value: str) -> str:
    """The name of the cookie a Set-Cookie value sets ("" for a nameless cookie)."""
    pair = value.split(";", 1)[0]
    return pair.split("=", 1)[0].strip() if "=" in pair else ""


def rewrite_set_cookie(value: str, prefix: str) -> str:
    """Scope a Set-Cookie to the workspace's sub-path and make it work in the iframe.

    The name=value pair and attributes other than Domain, Path, Secure, SameSite and
    Partitioned (Expires, Max-Age, HttpOnly, Priority, ...) are kept as they are.
    ``Path=/x`` becomes ``<prefix>/x``; a missing, empty or relative Path becomes
    ``<prefix>/``. ``__Host-`` cookies need ``Path=/``, so browsers will refuse them here:
    scoping wins over that one cookie kind.
    """
    parts = value.split(";")
    pair = parts[0].strip()
    path: str | None = None
    kept: list[str] = []
    for attr in parts[1:]:
        attr = attr.strip()
        if not attr:
            continue
        key, _, val = attr.partition("=")
        low = key.strip().lower()
        if low == "path":
            path = val.strip()
        elif low in ("domain", "secure", "samesite", "partitioned"):
            continue
        else:
            kept.append(attr)
    return "; ".join([pair, f"Path={_cookie_path(path, prefix)}", *kept, *_COOKIE_FLAGS])


_COOKIE_FLAGS: Final = ["Secure", "SameSite=None", "Partitioned"]


def rewrite_own_origin_cookie(value: str) -> str:
    """A Set-Cookie of a workspace served at the root of its own origin (subdomain mode).

    The origin is the workspace's alone, so its Path (and a missing one, which the
    browser defaults) is kept as sent; Domain is still dropped, since it would share the
    cookie with every workspace under the domain (and the Host App beneath it). Secure,
    SameSite=None and Partitioned make it work inside the Host App's iframe.
    """
    parts = value.split(";")
    kept: list[str] = []
    for attr in parts[1:]:
        attr = attr.strip()
        if not attr:
            continue
        low = attr.partition("=")[0].strip().lower()
        if low in ("domain", "secure", "samesite", "partitioned"):
            continue
        kept.append(attr)
    return "; ".join([parts[0].strip(), *kept, *_COOKIE_FLAGS])


def set_cookie_rewriter(own_origin: bool) -> Callable[[str, str], str]:
    """``(value, prefix) -> value``: scoped under the prefix on the shared origin, kept
    as the workspace wrote it (minus Domain) on its own origin."""
    if own_origin:
        return lambda value, prefix: rewrite_own_origin_cookie(value)
    return rewrite_set_cookie


def frame_headers(host_origin: str, *, own_origin: bool, has_csp: bool) -> Headers:
    """The framing headers added to every workspace response.

    A CSP with ``frame-ancestors`` when the response had none (``rewrite_csp`` put one
    into every policy it had). On the shared origin also ``X-Frame-Options: SAMEORIGIN``
    for browsers without frame-ancestors; on its own origin the Host App that frames the
    workspace is another origin, which X-Frame-Options cannot name, so it is left out
    (frame-ancestors, present on every response, is what browsers obey).
    """
    out: Headers = []
    if not has_csp:
        out.append((b"Content-Security-Policy", frame_ancestors(host_origin).encode("latin-1")))
    if not own_origin:
        out.append((b"X-Frame-Options", b"SAMEORIGIN"))
    return out


def _cookie_path(path: str | None, prefix: str) -> str:
    if not path or not path.startswith("/") or path == prefix:
        return prefix + "/"
    if path.startswith(prefix + "/"):
        return path
    return prefix + path


@functools.lru_cache(maxsize=256)
def frame_ancestors(host_origin: str) -> str:
    """``frame-ancestors 'self' <origin>``; 'self' keeps every name the Host App is reached
    by (loopback, tailnet) working, the origin covers a UI served from FRONTEND_ORIGIN."""
    origin = normalise_origin(host_origin)
    if not _ORIGIN.fullmatch(origin):
        return "frame-ancestors 'self'"
    return f"frame-ancestors 'self' {origin}"


def rewrite_csp(
    value: str,
    host_origin: str,
    prefix: str | None = None,
    upstream_origins: Collection[str] = (),
) -> str:
    """Replace every policy's ``frame-ancestors`` with the Host App's own origin.

    A header may hold several comma-separated policies (all are enforced); each loses its
    own frame-ancestors and gets ``frame-ancestors 'self' <host origin>``. With a
    ``prefix``, ``report-uri`` URLs move into it as ``rewrite_location`` moves a Location
    (``report-to`` names an endpoint, see ``rewrite_reporting_endpoints``).
    """
    policies: list[str] = []
    for policy in value.split(","):
        directives = [d.strip() for d in policy.split(";")]
        kept = [d for d in directives if d and d.split(None, 1)[0].lower() != "frame-ancestors"]
        if prefix is not None:
            kept = [_report_uri(d, prefix, upstream_origins) for d in kept]
        if not kept and not policy.strip() and policies:
            continue
        policies.append("; ".join([*kept, frame_ancestors(host_origin)]))
    return ", ".join(policies)


def _report_uri(directive: str, prefix: str, origins: Collection[str]) -> str:
    parts = directive.split()
    if parts[0].lower() != "report-uri":
        return directive
    return " ".join([parts[0], *(rewrite_location(u, prefix, origins) for u in parts[1:])])


# --- service workers ---


def rewrite_service_worker_allowed(
    value: str,
    prefix: str,
    upstream_origins: Collection[str],
    *,
    preserve: bool = False,
    public_path: str | None = None,
) -> str:
    """The maximum service-worker scope, inside ``<prefix>/`` (see the module docstring).

    The result is always a path that starts with ``<prefix>/``: a worker registered
    under it can only control the workspace's own pages, never the Host App's or another
    workspace's (scopes match by string prefix, hence the trailing slash).
    """
    root = prefix + "/"
    text = value.strip().replace("\\", "/")
    origins = {normalise_origin(o) for o in upstream_origins}
    authorities = {o.split("://", 1)[1] for o in origins if "://" in o}
    match = _SCHEME.match(text)
    if text.startswith("//"):
        authority, text = _split_authority(text[2:])
        if authority.lower() not in authorities and _strip_default(authority) not in authorities:
            return root
        text = text or "/"
    elif match:
        rest = text[match.end() :]
        if not rest.startswith("//"):
            return root
        authority, text = _split_authority(rest[2:])
        if normalise_origin(f"{match.group(1)}://{authority}") not in origins:
            return root
        text = text or "/"
    path = re.split(r"[?#]", text, maxsplit=1)[0]
    if not path.startswith("/"):
        # Relative: resolved against the script's URL, which is already public.
        base = public_path if public_path and public_path.startswith(root) else root
        path = base[: base.rfind("/") + 1] + path
    elif not preserve and not (path == prefix or path.startswith(root)):
        path = prefix + path  # strip mode: the upstream's root is the prefix
    path = remove_dot_segments(path)
    return path if path.startswith(root) else root


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path, with ``%2e`` read as ``.`` as browsers do."""
    out: list[str] = []
    segments = path.split("/")[1:]
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        dots = seg.lower().replace("%2e", ".")
        if dots in (".", ".."):
            if dots == ".." and out:
                out.pop()
            if i == last:
                out.append("")
            continue
        out.append(seg)
    return "/" + "/".join(out)


# --- reporting ---

_SF_STRING: Final = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SF_KEY: Final = re.compile(r"^[a-z*][a-z0-9_\-.*]*$")
_ENDPOINT_NAME: Final = re.compile(r"(?:^|,)\s*([a-z*][a-z0-9_\-.*]*)\s*=")


def rewrite_reporting_endpoints(value: str, prefix: str, origins: Collection[str]) -> str:
    """Each quoted endpoint URL of a ``Reporting-Endpoints`` dictionary, moved into the
    prefix like a Location (other origins are left alone)."""

    def one(match: re.Match[str]) -> str:
        url = re.sub(r"\\(.)", r"\1", match.group(1))
        moved = rewrite_location(url, prefix, origins)
        return '"' + moved.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return _SF_STRING.sub(one, value)


def reporting_endpoint_names(value: str) -> set[str]:
    """The endpoint names a ``Reporting-Endpoints`` value defines."""
    return set(_ENDPOINT_NAME.findall(_SF_STRING.sub('""', value)))


def report_to_endpoints(
    values: Iterable[str], prefix: str, origins: Collection[str], taken: Collection[str]
) -> str:
    """``Reporting-Endpoints`` entries for the groups of ``Report-To`` values.

    Each group's first endpoint URL, moved into the prefix; groups whose name is not a
    structured-field key, or that the response already defines, are skipped; values
    that are not JSON are ignored (as browsers ignore them).
    """
    entries: list[str] = []
    seen = set(taken)
    for value in values:
        try:
            groups = json.loads("[" + value + "]")
        except ValueError:
            continue
        for group in groups:
            if not isinstance(group, dict):
                continue
            name = group.get("group", "default")
            endpoints = group.get("endpoints")
            if not isinstance(name, str) or not _SF_KEY.match(name) or name in seen:
                continue
            if not isinstance(endpoints, list) or not endpoints:
                continue
            first = endpoints[0]
            url = first.get("url") if isinstance(first, dict) else None
            if not isinstance(url, str) or not url or _CONTROL_OR_QUOTE.search(url):
                continue
            seen.add(name)
            moved = rewrite_location(url, prefix, origins)
            entries.append(f'{name}="{moved}"')
    return ", ".join(entries)


_CONTROL_OR_QUOTE: Final = re.compile(r'[\x00-\x1f\x7f"\\]')
