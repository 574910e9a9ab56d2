"""Per-workspace origins (``WORKSPACE_ORIGIN=subdomain``): which origin serves what. Pure.

In single-origin mode (the default) every workspace is a sub-path of the Host App's origin
(``paths.workspace_prefix``), so a workspace page's script runs with the Host App's origin
and can call its API as whoever opened the page. In subdomain mode each workspace is served
at the root of its own origin, ``https://<label>.<WORKSPACE_ORIGIN_DOMAIN>[:port]/``, where
the label encodes cluster and workspace: ``<name>--<cluster>`` (``ws1--default``).

The label is unambiguous: it is split at its *last* ``--``, names end with a letter or
digit, and cluster ids that contain ``--`` get no subdomain (nor do pairs whose label
would exceed 63 characters; with names of at most 53 characters every cluster id of up to
8 characters fits, ``default`` included). Such workspaces have no URL in subdomain mode,
and ``label_refusal`` says why, so the API can refuse to create one.

The scheme and port of every workspace origin are the Host App's (``FRONTEND_ORIGIN``):
one listener serves them all, told apart by the ``Host`` header. What the Host App refuses
in subdomain mode (``host_app_refusal``) and what a workspace origin refuses
(``workspace_refusal``) are decided here from request headers alone.
"""

from __future__ import annotations

import re
from typing import Final, Literal
from urllib.parse import urlsplit

import attrs

from guildnet.proxy.paths import workspace_prefix

SINGLE: Final = "single"
SUBDOMAIN: Final = "subdomain"
MODES: Final = (SINGLE, SUBDOMAIN)
SEPARATOR: Final = "--"
MAX_LABEL: Final = 63
OriginMode = Literal["single", "subdomain"]

_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME: Final = re.compile(r"^[a-z]([-a-z0-9]{0,51}[a-z0-9])?$")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SAFE_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS"})


@attrs.frozen
class WorkspaceOrigins:
    """How workspaces are addressed; ``host_origin`` is the Host App's (FRONTEND_ORIGIN)."""

    mode: OriginMode = "single"
    domain: str = ""
    host_origin: str = ""

    @property
    def subdomain(self) -> bool:
        return self.mode == SUBDOMAIN

    @classmethod
    def from_settings(cls, settings: object) -> WorkspaceOrigins:
        """Single mode needs nothing else: it is the plain default then."""
        if getattr(settings, "workspace_origin", SINGLE) != SUBDOMAIN:
            return cls()
        return cls(
            mode=SUBDOMAIN,
            domain=getattr(settings, "workspace_origin_domain", None) or "",
            host_origin=normalise_origin(str(getattr(settings, "frontend_origin", ""))),
        )

    # addresses -------------------------------------------------------------------------

    def origin(self, cluster_id: str, name: str) -> str | None:
        """``https://<label>.<domain>[:port]`` of a workspace; None when it has no label."""
        label = workspace_label(cluster_id, name)
        if label is None:
            return None
        scheme, port = self._scheme_port()
        suffix = "" if port is None else f":{port}"
        return f"{scheme}://{label}.{self.domain}{suffix}"

    def url(self, cluster_id: str, name: str) -> str | None:
        """The workspace's canonical URL: its path on the Host App's origin in single
        mode, the root of its own origin in subdomain mode (None: it cannot have one)."""
        if not self.subdomain:
            return workspace_prefix(cluster_id, name) + "/"
        origin = self.origin(cluster_id, name)
        return None if origin is None else origin + "/"

    def frame_source(self) -> str:
        """The CSP source that matches every workspace origin (``frame-src``)."""
        scheme, port = self._scheme_port()
        return f"{scheme}://*.{self.domain}" + ("" if port is None else f":{port}")

    def _scheme_port(self) -> tuple[str, int | None]:
        parts = urlsplit(self.host_origin or "https://localhost")
        scheme = parts.scheme or "https"
        port = parts.port
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
        return scheme, port

    # requests ----------------------------------------------------------------------------

    def host_target(self, host: str) -> tuple[str, str] | str | None:
        """What a request's ``Host`` names in subdomain mode.

        None: not a workspace host (the Host App itself); ``(cluster_id, name)``: that
        workspace; a string: a host under the domain that names no workspace (the reason).
        """
        if not self.subdomain:
            return None
        name = host_name(host)
        suffix = "." + self.domain
        if not name.endswith(suffix):
            return None
        label = name[: -len(suffix)]
        if "." in label:
            return f"{name!r}: only one label may precede {self.domain!r}"
        parsed = parse_label(label)
        if parsed is None:
            return f"{label!r} is not <workspace>--<cluster>"
        return parsed

    def is_workspace_origin(self, origin: str) -> bool:
        """True when ``origin`` (an Origin header value) is under the workspace domain."""
        if not self.subdomain:
            return False
        try:
            host = urlsplit(origin.strip()).hostname or ""
        except ValueError:
            return False
        return host.rstrip(".").endswith("." + self.domain)


def workspace_label(cluster_id: str, name: str) -> str | None:
    """``<name>--<cluster>``, or None when that would not be a unique DNS label."""
    if label_refusal(cluster_id, name) is not None:
        return None
    return f"{name}{SEPARATOR}{cluster_id}"


def label_refusal(cluster_id: str, name: str) -> str | None:
    """Why (cluster, name) has no subdomain label, or None when it has one."""
    if not _NAME.fullmatch(name):
        return f"workspace name {name!r} is not a DNS-1035 label of at most 53 characters"
    if not _LABEL.fullmatch(cluster_id):
        return f"cluster id {cluster_id!r} is not a DNS label"
    if SEPARATOR in cluster_id:
        return f"cluster id {cluster_id!r} contains '--', which separates name and cluster"
    length = len(name) + len(SEPARATOR) + len(cluster_id)
    if length > MAX_LABEL:
        return (
            f"'{name}--{cluster_id}' would be {length} characters; a DNS label holds "
            f"{MAX_LABEL}: use a name of at most {MAX_LABEL - 2 - len(cluster_id)} characters"
        )
    return None


def parse_label(label: str) -> tuple[str, str] | None:
    """``(cluster_id, name)`` of a label ``workspace_label`` made, else None."""
    name, sep, cluster_id = label.rpartition(SEPARATOR)
    if not sep or workspace_label(cluster_id, name) != label:
        return None
    return cluster_id, name


def host_name(host: str) -> str:
    """A Host header's name: lower case, without port or trailing dot."""
    text = host.strip().lower()
    if text.startswith("["):
        return text.split("]", 1)[0] + "]"
    return text.rsplit(":", 1)[0].rstrip(".") if ":" in text else text.rstrip(".")


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, the scheme's default port dropped."""
    text = origin.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text.lower()
    if not parts.scheme or not parts.hostname:
        return text.lower()
    host = parts.hostname.rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    if port == _DEFAULT_PORTS.get(parts.scheme):
        port = None
    return f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")


def host_app_refusal(
    origins: WorkspaceOrigins,
    *,
    origin: str | None,
    fetch_site: str | None,
    fetch_mode: str | None,
) -> str | None:
    """Why a request to the Host App's own routes (API, UI, SSE) is refused, or None.

    Only in subdomain mode, where the point is that workspace pages cannot act as the
    user: a request whose ``Origin`` is a workspace origin or opaque (``null``, what a
    sandboxed frame sends), and one the browser marks as sent by another site's or
    origin's page (``Sec-Fetch-Site`` same-site/cross-site) for anything but a
    navigation, unless its Origin is FRONTEND_ORIGIN. Clients that are not browsers
    send neither header and pass.
    """
    if not origins.subdomain:
        return None
    if origin is not None:
        value = normalise_origin(origin)
        if value == origins.host_origin:
            return None
        if value == "null":
            return "requests from pages with an opaque origin (null) are refused"
        if origins.is_workspace_origin(value):
            return f"requests from workspace origin {value} are refused"
    site = (fetch_site or "").strip().lower()
    if site in ("same-site", "cross-site") and (fetch_mode or "").strip().lower() != "navigate":
        return f"a {site} request from another origin's page is refused"
    return None


def workspace_refusal(
    origins: WorkspaceOrigins,
    own_origin: str,
    *,
    method: bytes,
    origin: str | None,
    upgrade: bool,
) -> str | None:
    """Why a request on a workspace's own origin is refused, or None.

    A workspace never acts for another: a request whose Origin is a *different*
    workspace origin is refused whatever its method. Mutating requests and WebSocket
    upgrades (which CORS does not protect) from any other origin are refused too
    (cross-site request forgery, WebSocket hijacking), except from the Host App's own
    origin and from opaque origins (sandboxed frames inside the workspace's own pages).
    """
    if origin is None:
        return None
    value = normalise_origin(origin)
    if value == normalise_origin(own_origin) or value == "null":
        return None
    if origins.is_workspace_origin(value):
        return f"requests from another workspace's origin ({value}) are refused"
    if value == origins.host_origin:
        return None
    if upgrade or method.upper() not in _SAFE_METHODS:
        return f"a cross-origin {'upgrade' if upgrade else 'request'} from {value} is refused"
    return None
