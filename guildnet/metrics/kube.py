"""Kubernetes client families: API calls by verb, resource and code; latency; watches.

Calls run on an Instance's thread pools, so children are bound through
prometheus-client's thread-safe ``labels`` and cached per label set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Histogram

from guildnet.metrics.core import REGISTRY, on_forget, per_cluster

CALLS = per_cluster(
    Counter(
        "guildnet_kube_requests",
        "Kubernetes API calls, by cluster, verb, resource and status code ('error' when "
        "no answer arrived).",
        ["cluster", "verb", "resource", "code"],
        registry=REGISTRY,
    )
)
LATENCY = per_cluster(
    Histogram(
        "guildnet_kube_request_duration_seconds",
        "Time until the API server's response head (for watches: until the stream opened).",
        ["cluster", "verb", "resource"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        registry=REGISTRY,
    )
)
WATCH_RESTARTS = per_cluster(
    Counter(
        "guildnet_kube_watch_restarts",
        "Informer watches that ended and were restarted, by reason: expired (the server's "
        "timeoutSeconds, routine), gone (410: a re-list follows), error.",
        ["cluster", "resource", "reason"],
        registry=REGISTRY,
    )
)

_calls: dict[tuple[str, str, str, str], Any] = {}
_latency: dict[tuple[str, str, str], Any] = {}

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def verb_and_resource(method: str, path: str, query: Mapping[str, Any] | None) -> tuple[str, str]:
    """Kubernetes' verb and ``resource[/subresource]`` of an API path.

    ``/apis/apps/v1/namespaces/ns/deployments/x`` with GET is ``("get", "deployments")``;
    ``.../workspaces/x/status`` with PATCH is ``("patch", "workspaces/status")``;
    a collection GET with ``watch`` is ``("watch", ...)``; ``/version`` is ``("get", "version")``.
    """
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return method.lower() if method != "GET" else "get", (parts[0] if parts else "root")
    if not rest:
        return "get", "discovery"  # /api, /apis/<group>/<version>: API discovery
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "watch" if query and query.get("watch") else ("get" if named else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return verb, resource


def observe(cluster: str, verb: str, resource: str, code: str, seconds: float) -> None:
    key = (cluster, verb, resource, code)
    child = _calls.get(key)
    if child is None:
        child = _calls[key] = CALLS.labels(cluster, verb, resource, code)
    child.inc()
    lkey = (cluster, verb, resource)
    hist = _latency.get(lkey)
    if hist is None:
        hist = _latency[lkey] = LATENCY.labels(cluster, verb, resource)
    hist.observe(seconds)


def watch_restarted(cluster: str, resource: str, reason: str) -> None:
    WATCH_RESTARTS.labels(cluster, resource, reason).inc()


def _forget(cluster: str) -> None:
    for key in [k for k in _calls if k[0] == cluster]:
        _calls.pop(key, None)
    for lkey in [k for k in _latency if k[0] == cluster]:
        _latency.pop(lkey, None)


on_forget(_forget)
