"""Prometheus metrics (``GET /metrics``), built on prometheus-client.

One module per area declares its families (``http``, ``proxy``, ``operator``, ``kube``,
``rdb``); the code where an event happens increments them. State that already lives in
objects (open WebSockets, pooled connections, thread pools, workspaces by phase, leader
status, queue depth) is read at scrape time by ``state.AppCollector`` instead of being
mirrored into gauges. Per-cluster series carry a ``cluster`` label; ``forget_cluster``
drops a removed cluster's series (the Registry calls it when the Instance has closed).
"""

from guildnet.metrics.core import REGISTRY, forget_cluster, per_cluster

__all__ = ["REGISTRY", "forget_cluster", "per_cluster"]
