"""HTTP families: every request the HTTPS listener serves, by route template.

Labels are bounded: ``route`` is the template that matched (``/api/servers/{server_id}``,
``/proxy/server/{id}/``), never the raw path; ``method`` is one of the HTTP methods the
Host App knows or ``other``. Children are bound once per label set and kept, so a
request costs a dict lookup and a few increments (all on the reactor thread).
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram

from guildnet.metrics.core import REGISTRY, per_cluster

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"  # no route: 404/405 answers, unparseable requests

REQUESTS = Counter(
    "guildnet_http_requests",
    "Requests served, by route template, method and status code.",
    ["route", "method", "code"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "guildnet_http_request_duration_seconds",
    "Time from the request head to the end of the response (WebSockets and SSE streams "
    "excluded: their life is in guildnet_proxy_websockets_open and guildnet_sse_streams_open).",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "guildnet_http_requests_in_flight",
    "Requests started and not yet logged (open SSE streams and WebSockets included).",
    registry=REGISTRY,
)
SSE_OPEN = per_cluster(
    Gauge(
        "guildnet_sse_streams_open",
        "Open Server-Sent Events streams, by kind (servers, logs, db).",
        ["cluster", "kind"],
        registry=REGISTRY,
    )
)

_in_flight_inc = IN_FLIGHT.inc
_in_flight_dec = IN_FLIGHT.dec
_requests: dict[tuple[str, bytes, int], Any] = {}
_durations: dict[str, Any] = {}


def method_label(method: bytes) -> str:
    text = method.decode("latin-1", "replace")
    return text if text in METHODS else "other"


def started() -> None:
    """A request head was accepted (paired with ``finished`` by the access log)."""
    _in_flight_inc()


def finished(route: str, method: bytes, code: int, seconds: float | None) -> None:
    """A request ended: count it; ``seconds`` is None for streams (no latency sample)."""
    _in_flight_dec()
    key = (route, method, code)
    child = _requests.get(key)
    if child is None:
        child = REQUESTS.labels(route, method_label(method), str(code))
        if len(_requests) < 4096:  # odd methods map to "other": keep the cache bounded
            _requests[key] = child
    child.inc()
    if seconds is not None:
        hist = _durations.get(route)
        if hist is None:
            hist = _durations[route] = DURATION.labels(route)
        hist.observe(seconds)


def sse_gauge(cluster: str, kind: str) -> Any:
    """The bound gauge of open ``kind`` streams of ``cluster``."""
    return SSE_OPEN.labels(cluster, kind)
