"""Operator families: reconciles, their duration, writes, informer events and re-lists.

Queue depth, leader status and informer sync state are read at scrape time (``state``).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from guildnet.metrics.core import REGISTRY, per_cluster

RECONCILES = per_cluster(
    Counter(
        "guildnet_operator_reconciles",
        "Workspace reconciles, by result: ok, not_found (deleted meanwhile), invalid (the "
        "spec cannot be built), apply_failed (the API server refused an object), error.",
        ["cluster", "result"],
        registry=REGISTRY,
    )
)
RECONCILE_DURATION = per_cluster(
    Histogram(
        "guildnet_operator_reconcile_duration_seconds",
        "Time one Workspace reconcile took, writes included.",
        ["cluster"],
        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=REGISTRY,
    )
)
WRITES = per_cluster(
    Counter(
        "guildnet_operator_writes",
        "Writes the operator made, by kind (Deployment, Service, Secret, Ingress, status).",
        ["cluster", "kind"],
        registry=REGISTRY,
    )
)
INFORMER_EVENTS = per_cluster(
    Counter(
        "guildnet_informer_events",
        "Watch events applied to an informer cache, by resource kind and type.",
        ["cluster", "resource", "type"],
        registry=REGISTRY,
    )
)
INFORMER_RELISTS = per_cluster(
    Counter(
        "guildnet_informer_relists",
        "Full lists of an informer (the first, periodic resyncs, and after 410 Gone).",
        ["cluster", "resource"],
        registry=REGISTRY,
    )
)
IDLE_CULLS = per_cluster(
    Counter(
        "guildnet_workspaces_idle_culled",
        "Workspaces the idle culler stopped (spec.stopped with reason Idle).",
        ["cluster"],
        registry=REGISTRY,
    )
)
ACTIVITY_RECORDS = per_cluster(
    Counter(
        "guildnet_workspace_activity_records",
        "Writes of the guildnet.io/last-activity annotation by this Host App.",
        ["cluster"],
        registry=REGISTRY,
    )
)
