"""Proxy families: proxied requests and bytes by route kind, upstream connect errors.

``route_kind`` is the ``X-GuildNet-Route`` value (``service``, ``agent``, ``dns``,
``podproxy``, ``portforward``, ``direct`` for ``/proxy/{host:port}`` targets, which
are managed workspace ports or ``HOSTAPP_PROXY_ALLOWLIST`` entries) or ``local`` when
the proxy answered itself before choosing a route (bad path, unknown workspace, redirect
to a canonical URL). ``cluster`` is the workspace's cluster, empty for address targets.

The proxy is on every IDE keystroke: each (cluster, kind, status class) gets its three
bound counters once (``slot``), so a request costs one dict lookup and three increments.
Open WebSockets, port-forwards and pooled connections are read at scrape time
(``state``).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter
from twisted.internet import error as ierror
from twisted.python.failure import Failure

from guildnet.metrics.core import REGISTRY, on_forget, per_cluster

LOCAL: Final = "local"
STATUS_CLASSES: Final = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")

REQUESTS = per_cluster(
    Counter(
        "guildnet_proxy_requests",
        "Proxied requests (a WebSocket counts once, when it closes), by cluster, route "
        "kind and status class.",
        ["cluster", "route_kind", "status_class"],
        registry=REGISTRY,
    )
)
BYTES_IN = per_cluster(
    Counter(
        "guildnet_proxy_request_bytes",
        "Body bytes received from clients and sent upstream (WebSocket bytes included).",
        ["cluster", "route_kind", "status_class"],
        registry=REGISTRY,
    )
)
BYTES_OUT = per_cluster(
    Counter(
        "guildnet_proxy_response_bytes",
        "Body bytes sent to clients (WebSocket bytes included).",
        ["cluster", "route_kind", "status_class"],
        registry=REGISTRY,
    )
)
CONNECT_ERRORS = per_cluster(
    Counter(
        "guildnet_proxy_upstream_connect_errors",
        "Failed upstream dials, by cluster, route kind and reason (refused, timeout, "
        "unresolved, tls, closed, policy, other).",
        ["cluster", "route_kind", "reason"],
        registry=REGISTRY,
    )
)


class Slot:
    """The three bound counters of one (cluster, route kind, status class)."""

    __slots__ = ("bytes_in", "bytes_out", "requests")

    def __init__(self, cluster: str, kind: str, status_class: str) -> None:
        self.requests = REQUESTS.labels(cluster, kind, status_class)
        self.bytes_in = BYTES_IN.labels(cluster, kind, status_class)
        self.bytes_out = BYTES_OUT.labels(cluster, kind, status_class)


_slots: dict[tuple[str, str, int], Slot] = {}


def status_class(code: int) -> str:
    return STATUS_CLASSES[code // 100] if 100 <= code < 600 else "5xx"


def record(cluster: str, kind: str, code: int, bytes_in: int, bytes_out: int) -> None:
    """One proxied exchange ended (called from the access log, reactor thread)."""
    key = (cluster, kind, code // 100)
    slot = _slots.get(key)
    if slot is None:
        slot = _slots[key] = Slot(cluster, kind, status_class(code))
    slot.requests.inc()
    if bytes_in:
        slot.bytes_in.inc(bytes_in)
    if bytes_out:
        slot.bytes_out.inc(bytes_out)


def connect_error_reason(error: BaseException | Failure) -> str:
    """A bounded reason for a failed dial."""
    from OpenSSL import SSL

    from guildnet.proxy.engine import ProxyFailure

    e = error.value if isinstance(error, Failure) else error
    if isinstance(e, ierror.ConnectionRefusedError):
        return "refused"
    if isinstance(e, ierror.TimeoutError | ierror.ConnectingCancelledError | TimeoutError):
        return "timeout"
    if isinstance(e, ierror.DNSLookupError):
        return "unresolved"
    if isinstance(e, ierror.ConnectionDone | ierror.ConnectionLost):
        return "closed"
    if isinstance(e, SSL.Error):
        return "tls"
    if isinstance(e, ProxyFailure):
        if e.code == "proxy_target_refused":
            return "policy"
        if e.code == "upstream_unresolved":
            return "unresolved"
        if e.code == "upstream_timeout":
            return "timeout"
    if type(e).__name__ == "TimeoutError":  # twisted.internet.defer.TimeoutError
        return "timeout"
    return "other"


def connect_error(cluster: str, kind: str, error: BaseException | Failure) -> None:
    CONNECT_ERRORS.labels(cluster, kind, connect_error_reason(error)).inc()


def _forget(cluster: str) -> None:
    for key in [k for k in _slots if k[0] == cluster]:
        del _slots[key]


on_forget(_forget)

__all__ = ["LOCAL", "Slot", "connect_error", "connect_error_reason", "record", "status_class"]
