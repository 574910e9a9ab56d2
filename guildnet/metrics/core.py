"""The process-wide registry and the per-cluster bookkeeping every area shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

#: Families declared by GuildNet's modules, plus process_* (open fds, CPU, memory),
#: python_gc_* and python_info. State collectors are added per Host App at scrape time
#: (``exposition.Exposition``), so two Host Apps in one process never collide.
# No ``*_created`` series: they double every counter's series for a timestamp that
# process_start_time_seconds already gives.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

M = TypeVar("M", bound=MetricWrapperBase)

_PER_CLUSTER: list[MetricWrapperBase] = []
_FORGETTERS: list[Callable[[str], None]] = []


def per_cluster(metric: M) -> M:
    """Mark a family with a ``cluster`` label: its series go when the cluster is removed."""
    _PER_CLUSTER.append(metric)
    return metric


def on_forget(fn: Callable[[str], None]) -> None:
    """Also call ``fn(cluster_id)`` from ``forget_cluster`` (caches of bound children)."""
    _FORGETTERS.append(fn)


def forget_cluster(cluster_id: str) -> None:
    """Remove every series labelled ``cluster=cluster_id``."""
    for fn in _FORGETTERS:
        fn(cluster_id)
    for metric in _PER_CLUSTER:
        metric.remove_by_labels({"cluster": cluster_id})
