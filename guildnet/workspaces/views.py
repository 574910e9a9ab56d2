"""JSON shapes of the workspace API, as pure functions of cached Kubernetes objects.

Kept apart from the Klein handlers so every shape (list items, the detail view, Events,
pods, the change classification behind ``/sse/servers``) is unit-tested without a reactor
or a cluster. Nothing here ever reads a Secret's data: passwords only leave through their
own endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from guildnet.auth.ownership import owner_metadata, owner_of
from guildnet.operator import constants as C
from guildnet.operator.desired import effective_ports, proxy_url, service_dns
from guildnet.operator.spec import (
    SpecError,
    WorkspaceSpec,
    generate_name,
    parse_spec,
    validate_name,
)
from guildnet.proxy.origins import WorkspaceOrigins

Obj = Mapping[str, Any]
#: ``idle`` of a workspace's JSON (``culler.IdleCuller.view``): timeout, idle since, stops at.
IdleOf = Callable[[Obj], dict[str, Any] | None]

MAX_EVENTS: Final = 50
JOB_EXTRA_KEYS: Final = frozenset({"name"})


# --- requests -----------------------------------------------------------------------------


def parse_job(body: Mapping[str, Any]) -> tuple[str | None, WorkspaceSpec]:
    """``POST /api/jobs`` body -> (name or None for a generated one, validated spec).

    Raises SpecError naming the first bad field; unknown fields are errors (the API server
    would prune them silently).
    """
    spec = parse_spec({k: v for k, v in body.items() if k not in JOB_EXTRA_KEYS})
    name = body.get("name")
    if name is None:
        return None, spec
    return validate_name(name), spec


def new_name(spec: WorkspaceSpec, suffix: str | None = None) -> str:
    return generate_name(spec.image, suffix=suffix)


def workspace_manifest(
    name: str, namespace: str, spec: WorkspaceSpec, owner: str | None = None
) -> dict[str, Any]:
    """The Workspace CR the API creates: labelled as GuildNet's, so stop-all finds it,
    and recording its creator's login (``auth.ownership``) when there is one."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {C.LABEL_MANAGED_BY: C.MANAGED_BY},
    }
    if owner:
        labels, annotations = owner_metadata(owner)
        metadata["labels"].update(labels)
        metadata["annotations"] = annotations
    return {
        "apiVersion": C.API_VERSION,
        "kind": C.KIND,
        "metadata": metadata,
        "spec": spec.to_dict(),
    }


def is_managed(obj: Obj) -> bool:
    return _labels(obj).get(C.LABEL_MANAGED_BY) == C.MANAGED_BY


# --- small accessors ----------------------------------------------------------------------


def _meta(obj: Obj | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def _labels(obj: Obj | None) -> Mapping[str, Any]:
    return _meta(obj).get("labels") or {}


def name_of(obj: Obj) -> str:
    return str(_meta(obj).get("name") or "")


def created_of(obj: Obj) -> str | None:
    value = _meta(obj).get("creationTimestamp")
    return str(value) if value else None


def server_url(cluster_id: str, name: str, origins: WorkspaceOrigins | None = None) -> str | None:
    """The workspace's canonical URL: ``/proxy/server/{id}/`` in the default cluster,
    per-cluster paths for the others (``paths.workspace_prefix``); in subdomain mode
    the absolute URL of its own origin (None when it cannot have one, see ``origins``)."""
    if origins is None:
        return proxy_url(name, cluster_id)
    return origins.url(cluster_id, name)


def _status(ws: Obj) -> Mapping[str, Any]:
    return ws.get("status") or {}


def _spec(ws: Obj) -> Mapping[str, Any]:
    return ws.get("spec") or {}


def phase_of(ws: Obj) -> str:
    """The operator's phase; Terminating as soon as deletion starts, Pending before status."""
    if _meta(ws).get("deletionTimestamp"):
        return "Terminating"
    return str(_status(ws).get("phase") or "Pending")


def conditions_of(ws: Obj) -> list[dict[str, Any]]:
    return [dict(c) for c in _status(ws).get("conditions") or [] if isinstance(c, Mapping)]


def is_ready(ws: Obj) -> bool:
    return phase_of(ws) == "Running"


# --- servers ------------------------------------------------------------------------------


def server_summary(
    ws: Obj,
    cluster_id: str,
    origins: WorkspaceOrigins | None = None,
    idle: IdleOf | None = None,
) -> dict[str, Any]:
    """One ``GET /api/servers`` item (``url`` as ``server_url`` gives it); ``idle`` (the
    culler's view) is null unless the workspace is running."""
    name = name_of(ws)
    status = _status(ws)
    return {
        "id": name,
        "name": name,
        "image": _spec(ws).get("image"),
        "phase": phase_of(ws),
        "ready": is_ready(ws),
        "readyReplicas": int(status.get("readyReplicas") or 0),
        "url": server_url(cluster_id, name, origins),
        "created": created_of(ws),
        "message": status.get("message") or "",
        "managed": is_managed(ws),
        # The wish (spec), ahead of the phase while the operator catches up.
        "stopped": _spec(ws).get("stopped") is True,
        "owner": owner_of(ws),
        "idle": idle(ws) if idle is not None else None,
    }


def server_list(
    workspaces: Iterable[Obj],
    cluster_id: str,
    origins: WorkspaceOrigins | None = None,
    idle: IdleOf | None = None,
) -> list[dict[str, Any]]:
    """Oldest first, then by name: a stable order for UIs and tests."""
    items = sorted(workspaces, key=lambda w: (created_of(w) or "", name_of(w)))
    return [server_summary(w, cluster_id, origins, idle) for w in items]


def server_state(
    ws: Obj,
    cluster_id: str,
    origins: WorkspaceOrigins | None = None,
    idle: IdleOf | None = None,
) -> dict[str, Any]:
    """What ``/sse/servers`` sends for a workspace: the summary plus its conditions."""
    return {**server_summary(ws, cluster_id, origins, idle), "conditions": conditions_of(ws)}


def workspace_ports(ws: Obj) -> list[dict[str, Any]]:
    """The ports the operator exposes: the spec's, else the image's defaults."""
    try:
        spec = parse_spec(_spec(ws))
    except SpecError:
        return [dict(p) for p in _spec(ws).get("ports") or [] if isinstance(p, Mapping)]
    return [p.to_dict() for p in effective_ports(spec)]


def server_detail(
    ws: Obj,
    cluster_id: str,
    namespace: str,
    pods: Sequence[Obj],
    events: Sequence[Obj],
    has_password: bool,
    origins: WorkspaceOrigins | None = None,
    idle: IdleOf | None = None,
) -> dict[str, Any]:
    """``GET /api/servers/{id}``: everything a server page shows, never the password."""
    status = _status(ws)
    return {
        **server_summary(ws, cluster_id, origins, idle),
        "namespace": _meta(ws).get("namespace") or namespace,
        "cluster": cluster_id,
        "labels": dict(_labels(ws)),
        "spec": dict(_spec(ws)),
        "status": dict(status),
        "conditions": conditions_of(ws),
        "ports": workspace_ports(ws),
        "proxyUrl": server_url(cluster_id, name_of(ws), origins),
        "serviceDNS": status.get("serviceDNS") or service_dns(ws, namespace),
        "hasPassword": has_password,
        "pods": [pod_summary(p) for p in sort_pods(pods)],
        "events": recent_events(events),
    }


# --- pods ---------------------------------------------------------------------------------


def sort_pods(pods: Iterable[Obj]) -> list[Obj]:
    return sorted(pods, key=lambda p: (created_of(p) or "", name_of(p)))


def _container_state(cs: Mapping[str, Any]) -> tuple[str, str, str]:
    state = cs.get("state") or {}
    for key in ("running", "waiting", "terminated"):
        if state.get(key) is not None:
            detail = state[key] or {}
            return key, str(detail.get("reason") or ""), str(detail.get("message") or "")
    return "unknown", "", ""


def pod_summary(pod: Obj) -> dict[str, Any]:
    status = pod.get("status") or {}
    containers = []
    for cs in status.get("containerStatuses") or []:
        state, reason, message = _container_state(cs)
        containers.append(
            {
                "name": cs.get("name"),
                "ready": bool(cs.get("ready")),
                "restarts": int(cs.get("restartCount") or 0),
                "state": state,
                "reason": reason,
                "message": message,
            }
        )
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return {
        "name": name_of(pod),
        "phase": status.get("phase") or "Pending",
        "ready": ready,
        "terminating": bool(_meta(pod).get("deletionTimestamp")),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "podIP": status.get("podIP"),
        "created": created_of(pod),
        "containers": containers,
    }


def workspace_of_pod(
    pod_name: str, pods: Mapping[str, Obj], workspaces: Iterable[str]
) -> str | None:
    """The workspace a pod belongs to: its label when the pod is cached, else its name.

    Events can outlive their pod, so a Deployment pod name ``<workspace>-<hash>-<suffix>``
    is matched against known workspaces too.
    """
    pod = pods.get(pod_name)
    if pod is not None:
        label = _labels(pod).get(C.LABEL_WORKSPACE)
        return str(label) if label else None
    parts = pod_name.rsplit("-", 2)
    if len(parts) == 3 and parts[0] in set(workspaces):
        return parts[0]
    return None


def loggable(pod: Obj, container: str | None = None) -> bool:
    """Whether ``pods/log`` can answer: the container has run (running or terminated)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if container and cs.get("name") != container:
            continue
        state = cs.get("state") or {}
        last = cs.get("lastState") or {}
        if state.get("running") or state.get("terminated") or last.get("terminated"):
            return True
    return False


# --- events -------------------------------------------------------------------------------


def event_time(ev: Obj) -> str:
    """The latest time an Event happened, across core/v1 and events.k8s.io fields."""
    series = ev.get("series") or {}
    for value in (
        series.get("lastObservedTime"),
        ev.get("lastTimestamp"),
        ev.get("eventTime"),
        ev.get("firstTimestamp"),
        created_of(ev),
    ):
        if value:
            return str(value)
    return ""


def event_pod(ev: Obj) -> str:
    about = ev.get("involvedObject") or ev.get("regarding") or {}
    return str(about.get("name") or "") if about.get("kind", "Pod") == "Pod" else ""


def event_view(ev: Obj) -> dict[str, Any]:
    source = ev.get("source") or {}
    return {
        "type": ev.get("type") or "Normal",
        "reason": ev.get("reason") or "",
        "message": ev.get("message") or ev.get("note") or "",
        "pod": event_pod(ev),
        "count": int(ev.get("count") or (ev.get("series") or {}).get("count") or 1),
        "firstTime": ev.get("firstTimestamp") or ev.get("eventTime") or created_of(ev),
        "lastTime": event_time(ev),
        "source": source.get("component") or ev.get("reportingComponent") or "",
    }


def recent_events(events: Iterable[Obj], limit: int = MAX_EVENTS) -> list[dict[str, Any]]:
    """The ``limit`` latest Events, oldest first (the order a progress log reads)."""
    ordered = sorted(events, key=lambda e: (event_time(e), name_of(e)))
    return [event_view(e) for e in ordered[-limit:]]


def events_of(
    events: Iterable[Obj], workspace: str, pods: Mapping[str, Obj], workspaces: Iterable[str]
) -> list[Obj]:
    """The Events about ``workspace``'s pods, including pods already gone."""
    known = set(workspaces) | {workspace}
    return [e for e in events if workspace_of_pod(event_pod(e), pods, known) == workspace]


# --- /sse/servers -------------------------------------------------------------------------


def server_change(
    type_: str, new: Mapping[str, Any] | None, old: Mapping[str, Any] | None
) -> str | None:
    """The ``/sse/servers`` event for an informer event, given old and new ``server_state``.

    ``updated`` only when something a UI shows changed (phase, readiness, conditions,
    message...); a resourceVersion bump alone sends nothing.
    """
    if type_ == "DELETED":
        return "deleted"
    if old is None:
        return "created"
    if new != old:
        return "updated"
    return None
