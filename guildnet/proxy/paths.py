"""Which proxy target a request URI names, parsed strictly and without I/O.

Routes (the request-target is bytes, decoded as latin-1 so every byte round-trips):

* ``/proxy/server/{id}/{rest}`` and ``/api/cluster/{cid}/proxy/server/{id}/{rest}``: a
  workspace by name (``id`` and ``cid`` are DNS-1123 labels). Each workspace has ONE
  canonical URL, :func:`workspace_prefix`: ``/proxy/server/{id}/`` in the default cluster,
  ``/api/cluster/{cid}/proxy/server/{id}/`` in any other. The per-cluster spelling of a
  default-cluster workspace (``/api/cluster/default/proxy/server/{id}/...``) redirects to
  the short one: a preserve-mode app (Jupyter) is told its base URL once, and cookies,
  service workers and storage are scoped per path, so two spellings would be two apps.
* ``/proxy/{to}/{rest}``: a ``host:port`` or ``[v6]:port`` target; an explicit scheme is
  written ``/proxy/https://host:port/{rest}`` (otherwise 8443 means https, else http).
* ``/proxy?to=host:port&path=/p`` (the spec's query form): parsed, then always redirected
  to the path form ``/proxy/host:port/p``. Under a query URL a page's relative links,
  ``Location`` rewriting and cookie ``Path`` scoping have no sub-path to live in, so the
  query form gets the same prefix as the path form and a redirect that puts the browser
  there. Parameters other than ``to`` and ``path`` are kept, appended to the path's query.

Every non-canonical spelling gets ``redirect_to`` (the engine answers 307/308 so the method
and body survive): the missing trailing slash after an id or target, percent-encoded ids,
upper-case host names, ``.``/``..`` segments (RFC 3986 removal; browsers never send them).
So ``prefix`` is always exactly what the browser's address shows, which cookie paths and
rewritten Locations rely on.

Refused with ProxyPathError (-> 400): a bad id/cluster id/target, an encoded ``/`` in an
id or target, ``..`` that would climb above the prefix or hides in an encoded segment
(``..%2f``, ``%2e%2e%5c``), control characters or spaces anywhere in the URI.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Literal
from urllib.parse import quote, unquote, unquote_plus

import attrs

PROXY = "/proxy"
DEFAULT_CLUSTER = "default"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_NUMERIC_LABEL = re.compile(r"^([0-9]+|0x[0-9a-f]*)$")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_TRAVERSAL_SPLIT = re.compile(r"[/\\]")
# What may stay literal in a request-target built from a decoded ``path`` parameter:
# RFC 3986 pchar plus "/", "?" and "%" (the parameter is itself an encoded target).
_TARGET_SAFE = "!$&'()*+,;=:@/?%-._~"


class ProxyPathError(ValueError):
    """A proxy URI that cannot be served; ``field`` names the bad part (for the 400 body)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@attrs.frozen
class ProxyPath:
    """A parsed proxy URI.

    For ``kind == "server"`` the target is found by the resolver, so ``target_host`` and
    ``target_port`` are None and ``scheme`` is only the default ("http"). ``upstream_path``
    is the request-target to send upstream (``upstream_path.encode("latin-1")`` gives the
    exact bytes): it starts with "/" and keeps the query string exactly as received.
    ``prefix`` is the public sub-path without trailing slash; ``redirect_to``, when set,
    is the canonical URL the client must be redirected to instead of being proxied.
    """

    kind: Literal["server", "to"]
    cluster_id: str
    server: str | None
    target_host: str | None
    target_port: int | None
    scheme: str
    upstream_path: str
    prefix: str
    redirect_to: str | None = None


#: Parsed request-targets (ProxyPath is immutable): an IDE asks for the same URIs over
#: and over. Bounded in entries and in key length; errors are never cached.
_PARSED: dict[bytes, ProxyPath | None] = {}
_PARSED_MAX = 2048
_PARSED_KEY_MAX = 512


def parse_proxy_uri(uri: bytes) -> ProxyPath | None:
    """Parse a request-target; None when it is not a proxy URI at all.

    Raises ProxyPathError when it is a proxy URI but malformed.
    """
    try:
        return _PARSED[uri]
    except KeyError:
        pass
    parsed = _parse_proxy_uri(uri)
    if len(uri) <= _PARSED_KEY_MAX:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[uri] = parsed
    return parsed


def _parse_proxy_uri(uri: bytes) -> ProxyPath | None:
    text = uri.decode("latin-1")
    absolute = _ABSOLUTE_FORM.match(text)
    if absolute:  # RFC 9112 3.2.2: servers must accept absolute-form too
        text = text[absolute.end() :] or "/"
    if not text.startswith("/"):
        return None
    raw_path, qmark, query = text.partition("?")
    segments = raw_path.split("/")[1:]
    if segments[0] == "proxy":
        cluster_id, base, rest, cluster_changed = DEFAULT_CLUSTER, PROXY, segments[1:], False
    elif len(segments) >= 4 and segments[:2] == ["api", "cluster"] and segments[3] == "proxy":
        cluster_id, cluster_changed = _label(segments[2], "cluster")
        base, rest = cluster_base(cluster_id), segments[4:]
        # The default cluster's canonical spelling is the short one.
        cluster_changed = cluster_changed or cluster_id == DEFAULT_CLUSTER
        if not rest or rest[0] != "server":
            raise ProxyPathError("route", "only /proxy/server/{id}/ is served per cluster")
    else:
        return None
    if _CONTROL.search(text):
        raise ProxyPathError("uri", "control characters or spaces in the URI")

    if not rest or rest == [""]:
        return _query_form(query)
    if rest[0] == "server":
        return _server_form(cluster_id, cluster_changed, base, rest[1:], qmark, query)
    return _to_form(rest, qmark, query)


def _server_form(
    cluster_id: str, changed: bool, base: str, rest: list[str], qmark: str, query: str
) -> ProxyPath:
    if not rest or rest[0] == "":
        raise ProxyPathError("server", "missing server id after /proxy/server/")
    server, id_changed = _label(rest[0], "server")
    prefix = f"{base}/server/{server}"
    path, path_changed = _tail_path(rest[1:])
    return ProxyPath(
        kind="server",
        cluster_id=cluster_id,
        server=server,
        target_host=None,
        target_port=None,
        scheme="http",
        upstream_path=path + qmark + query,
        prefix=prefix,
        redirect_to=_redirect(prefix, path, qmark + query, changed or id_changed or path_changed),
    )


def _to_form(rest: list[str], qmark: str, query: str) -> ProxyPath:
    explicit: str | None = None
    if len(rest) >= 3 and rest[0] in ("http:", "https:") and rest[1] == "":
        explicit, rest = rest[0][:-1], rest[2:]
    if not rest[0]:
        raise ProxyPathError("to", "missing host:port after /proxy/")
    decoded = unquote(rest[0], encoding="latin-1")
    if "/" in decoded:
        raise ProxyPathError("to", "encoded '/' in the target")
    host, port = parse_target(decoded)
    scheme = explicit or default_scheme(port)
    to = format_target(host, port)
    prefix = f"{PROXY}/{explicit}://{to}" if explicit else f"{PROXY}/{to}"
    path, path_changed = _tail_path(rest[1:])
    return ProxyPath(
        kind="to",
        cluster_id=DEFAULT_CLUSTER,
        server=None,
        target_host=host,
        target_port=port,
        scheme=scheme,
        upstream_path=path + qmark + query,
        prefix=prefix,
        redirect_to=_redirect(prefix, path, qmark + query, rest[0] != to or path_changed),
    )


def _query_form(query: str) -> ProxyPath:
    to_values: list[str] = []
    path_values: list[str] = []
    kept: list[str] = []
    for piece in query.split("&") if query else []:
        key, _, value = piece.partition("=")
        name = unquote_plus(key, encoding="latin-1")
        if name == "to":
            to_values.append(unquote_plus(value, encoding="latin-1"))
        elif name == "path":
            path_values.append(unquote_plus(value, encoding="latin-1"))
        else:
            kept.append(piece)
    if len(to_values) != 1 or not to_values[0]:
        raise ProxyPathError("to", "the query form needs exactly one to=host:port")
    if len(path_values) > 1:
        raise ProxyPathError("path", "path= given more than once")
    explicit: str | None = None
    to_text = to_values[0]
    for scheme in ("http", "https"):
        if to_text.lower().startswith(f"{scheme}://"):
            explicit, to_text = scheme, to_text[len(scheme) + 3 :].rstrip("/")
    if "/" in to_text:
        raise ProxyPathError("to", "to= must be host:port")
    host, port = parse_target(to_text)
    to = format_target(host, port)
    prefix = f"{PROXY}/{explicit}://{to}" if explicit else f"{PROXY}/{to}"

    target = quote(path_values[0] if path_values else "/", safe=_TARGET_SAFE, encoding="latin-1")
    if not target.startswith("/"):
        target = "/" + target
    raw_path, qmark, own_query = target.partition("?")
    path, _ = _tail_path(raw_path.split("/")[1:])
    full_query = "&".join(q for q in (own_query, *kept) if q)
    suffix = ("?" + full_query) if (qmark or kept) else ""
    return ProxyPath(
        kind="to",
        cluster_id=DEFAULT_CLUSTER,
        server=None,
        target_host=host,
        target_port=port,
        scheme=explicit or default_scheme(port),
        upstream_path=path + suffix,
        prefix=prefix,
        redirect_to=prefix + path + suffix,
    )


def cluster_base(cluster_id: str) -> str:
    """``/proxy`` for the default cluster, ``/api/cluster/{cid}/proxy`` for the others."""
    return PROXY if cluster_id == DEFAULT_CLUSTER else f"/api/cluster/{cluster_id}{PROXY}"


def workspace_prefix(cluster_id: str, name: str) -> str:
    """The canonical public prefix of a workspace, without trailing slash.

    ``/proxy/server/{name}`` in the default cluster, else
    ``/api/cluster/{cluster_id}/proxy/server/{name}``. The operator gives it to apps in
    preserve mode (Jupyter's ``base_url``), status and the API show it, and every other
    spelling of the same workspace redirects to it.
    """
    return f"{cluster_base(cluster_id)}/server/{name}"


def _redirect(prefix: str, path: str, query: str, changed: bool) -> str | None:
    return prefix + path + query if changed else None


def _label(raw: str, field: str) -> tuple[str, bool]:
    """A DNS-1123 label from a raw segment; True when the raw spelling was not canonical."""
    decoded = unquote(raw, encoding="latin-1")
    if "/" in decoded or "\\" in decoded:
        raise ProxyPathError(field, "encoded '/' in the id")
    if not _LABEL.fullmatch(decoded):
        raise ProxyPathError(
            field, "must be a DNS-1123 label (a-z, 0-9, '-', at most 63, alphanumeric ends)"
        )
    return decoded, decoded != raw


def _tail_path(tail: list[str]) -> tuple[str, bool]:
    """The upstream path for the segments after the prefix: ``("/" + ..., changed)``.

    Dot segments are removed (RFC 3986 5.2.4, with ``%2e`` counted as ``.`` as browsers
    do); a ``..`` that would leave the prefix, or one hidden inside an encoded segment, is
    an error rather than something to guess about. An empty tail means the trailing slash
    is missing: the path is "/" and the caller redirects.
    """
    if not tail:
        return "/", True
    out: list[str] = []
    changed = False
    last = len(tail) - 1
    for i, seg in enumerate(tail):
        decoded = unquote(seg, encoding="latin-1")
        if decoded in (".", ".."):
            changed = True
            if decoded == "..":
                if not out:
                    raise ProxyPathError("path", "'..' climbs above the proxy prefix")
                out.pop()
            if i == last:
                out.append("")
            continue
        if ".." in _TRAVERSAL_SPLIT.split(decoded):
            raise ProxyPathError("path", "encoded '..' traversal in the path")
        out.append(seg)
    return "/" + "/".join(out), changed


def default_scheme(port: int) -> str:
    """The spec's rule for targets without an explicit scheme: 8443 is TLS."""
    return "https" if port == 8443 else "http"


@functools.lru_cache(maxsize=1024)
def parse_target(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (canonical host, port); ProxyPathError if bad.

    Hosts are IP literals or DNS names. Names whose last label is numeric (``2130706433``,
    ``1.2.3.0x7f``) are refused: resolvers read them as IPv4 in ways that differ.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ProxyPathError("to", "IPv6 targets are written [address]:port")
        host_text, port_text = text[1:end], text[end + 2 :]
        if "%" in host_text:
            raise ProxyPathError("to", "IPv6 zone ids are not allowed")
        try:
            host = str(ipaddress.IPv6Address(host_text))
        except ValueError:
            raise ProxyPathError("to", f"{host_text!r} is not an IPv6 address") from None
    else:
        host_text, sep, port_text = text.rpartition(":")
        if not sep or not host_text:
            raise ProxyPathError("to", "the target must be host:port")
        if ":" in host_text:
            raise ProxyPathError("to", "put an IPv6 address in brackets: [address]:port")
        host = _host(host_text)
    return host, _port(port_text)


def _host(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if (
        not name.isascii()
        or len(name) > 253
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
    ):
        raise ProxyPathError("to", f"{text!r} is not a DNS name or IP address")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise ProxyPathError("to", f"{text!r} looks like a numeric address; write a.b.c.d")
    return name


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise ProxyPathError("to", f"port {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ProxyPathError("to", f"port {port} out of range (1-65535)")
    return port


def format_target(host: str, port: int) -> str:
    """``host:port`` with IPv6 hosts bracketed: the canonical ``to`` segment."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
