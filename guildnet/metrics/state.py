"""Gauges read from live objects at scrape time: nothing to update on the hot paths,
and a closed cluster's series vanish with its Instance.

Reactor lag, thread pools (queue length, busy and total threads per pool), workspaces
by phase, informer sync, operator leadership and queue depth, open WebSockets,
port-forwards and pooled upstream connections.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

#: Every phase a Workspace can report (``operator.status``), exported even when zero.
PHASES: Final = ("Pending", "Starting", "Running", "Failed", "Terminating")


def workspace_phases(workspaces: list[dict[str, Any]]) -> dict[str, int]:
    """Workspaces per phase; one without a status yet is Pending."""
    counts = dict.fromkeys(PHASES, 0)
    for ws in workspaces:
        if (ws.get("metadata") or {}).get("deletionTimestamp"):
            phase = "Terminating"
        else:
            phase = str((ws.get("status") or {}).get("phase") or "Pending")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def pool_stats(pool: Any) -> tuple[int, int, int]:
    """(queued work, busy threads, threads) of a twisted ThreadPool."""
    if pool is None or not getattr(pool, "started", False):
        return 0, 0, 0
    busy = len(pool.working)
    return int(pool.q.qsize()), busy, busy + len(pool.waiters)


class AppCollector:
    """The live state of one Host App (``guildnet.app.HostApp``)."""

    def __init__(self, app: Any, reactor: Any) -> None:
        self.app = app
        self.reactor = reactor

    def collect(self) -> Iterator[Metric]:
        app = self.app
        lag = GaugeMetricFamily(
            "guildnet_reactor_lag_seconds",
            "How late the last reactor heartbeat (every 0.5 s) ran.",
        )
        lag.add_metric([], float(app.monitor.lag))
        yield lag
        yield from self._pools()
        yield from self._clusters()
        yield from self._proxy()

    # thread pools ------------------------------------------------------------------

    def _pool_list(self) -> list[tuple[str, str, Any]]:
        app = self.app
        pools: list[tuple[str, str, Any]] = [
            ("", "reactor", getattr(self.reactor, "threadpool", None)),
            ("", "registry", getattr(app.registry, "_validate_pool", None)),
        ]
        for cid, inst in sorted(app.registry.instances().items()):
            pools += [
                (cid, "api", inst.api_pool),
                (cid, "watch", inst.watch_pool),
                (cid, "stream", inst.stream_pool),
                (cid, "localdb", inst.localdb.pool),
            ]
        return pools

    def _pools(self) -> Iterator[Metric]:
        labels = ["cluster", "pool"]
        queue = GaugeMetricFamily(
            "guildnet_threadpool_queue_length",
            "Work waiting for a thread, per pool (api, watch, stream, localdb per cluster; "
            "registry and reactor process-wide).",
            labels=labels,
        )
        busy = GaugeMetricFamily(
            "guildnet_threadpool_busy_threads", "Threads running work, per pool.", labels=labels
        )
        threads = GaugeMetricFamily(
            "guildnet_threadpool_threads", "Threads alive (busy or idle), per pool.", labels=labels
        )
        size = GaugeMetricFamily(
            "guildnet_threadpool_max_threads", "The most threads a pool starts.", labels=labels
        )
        for cluster, name, pool in self._pool_list():
            if pool is None:
                continue
            q, b, t = pool_stats(pool)
            queue.add_metric([cluster, name], q)
            busy.add_metric([cluster, name], b)
            threads.add_metric([cluster, name], t)
            size.add_metric([cluster, name], int(getattr(pool, "max", 0)))
        yield from (queue, busy, threads, size)

    # clusters ---------------------------------------------------------------------

    def _clusters(self) -> Iterator[Metric]:
        from guildnet.workspaces.service import SERVICE_NAME

        phases = GaugeMetricFamily(
            "guildnet_workspaces",
            "Workspaces by phase (from the informer cache), per cluster.",
            labels=["cluster", "phase"],
        )
        synced = GaugeMetricFamily(
            "guildnet_informer_synced",
            "1 when an informer's cache holds a complete list, per resource kind.",
            labels=["cluster", "resource"],
        )
        leader = GaugeMetricFamily(
            "guildnet_operator_leader",
            "1 while this Host App holds the cluster's operator Lease (reconciles), else 0.",
            labels=["cluster"],
        )
        queue = GaugeMetricFamily(
            "guildnet_operator_queue_depth",
            "Workspaces queued for a reconcile (waiting or due again).",
            labels=["cluster"],
        )
        forwards = GaugeMetricFamily(
            "guildnet_proxy_port_forwards_open",
            "Managed port-forwards listening (one per pod port), per cluster.",
            labels=["cluster"],
        )
        streams = GaugeMetricFamily(
            "guildnet_proxy_port_forward_streams_open",
            "Connections carried by port-forwards right now, per cluster.",
            labels=["cluster"],
        )
        rdb_up = GaugeMetricFamily(
            "guildnet_rdb_connected",
            "1 while the cluster's RethinkDB connection is ready, else 0 (clusters using it).",
            labels=["cluster"],
        )
        rdb_feeds = GaugeMetricFamily(
            "guildnet_rdb_changefeeds_active",
            "Open RethinkDB changefeeds (one per watched table and filter, shared).",
            labels=["cluster"],
        )
        rdb_subs = GaugeMetricFamily(
            "guildnet_rdb_sse_subscribers",
            "SSE clients subscribed to changefeeds.",
            labels=["cluster"],
        )
        for cid, inst in sorted(self.app.registry.instances().items()):
            rdb: Any = getattr(inst, "rdb", None)
            if rdb is not None:
                rdb_up.add_metric([cid], 1 if rdb.health.ready else 0)
                feeds = list(getattr(rdb.hub, "feeds", {}).values())
                rdb_feeds.add_metric([cid], len(feeds))
                rdb_subs.add_metric([cid], sum(len(f.subscribers) for f in feeds))
            try:
                svc = inst.getServiceNamed(SERVICE_NAME)
            except KeyError:
                svc = None
            if svc is not None:
                ws_inf = svc.informers.get("Workspace")
                if ws_inf is not None and ws_inf.synced:
                    for phase, n in workspace_phases(ws_inf.items()).items():
                        phases.add_metric([cid, phase], n)
                for kind, informer in sorted(svc.informers.items()):
                    synced.add_metric([cid, kind], 1 if informer.synced else 0)
                elector = svc.elector
                leader.add_metric([cid], 1 if elector is not None and elector.is_leader else 0)
                controller = svc.controller
                queue.add_metric([cid], controller.queue_depth if controller is not None else 0)
            try:
                pfm = inst.getServiceNamed("port-forward")
            except KeyError:
                pfm = None
            forwards.add_metric([cid], pfm.open_forwards if pfm is not None else 0)
            streams.add_metric([cid], pfm.open_streams if pfm is not None else 0)
        yield from (phases, synced, leader, queue, forwards, streams, rdb_up, rdb_feeds, rdb_subs)

    # proxy -------------------------------------------------------------------------

    def _proxy(self) -> Iterator[Metric]:
        engine = self.app.proxy
        websockets = GaugeMetricFamily(
            "guildnet_proxy_websockets_open",
            "Proxied WebSockets (and other upgraded connections) open, by route kind.",
            labels=["cluster", "route_kind"],
        )
        by_labels: Counter[tuple[str, str]] = Counter(
            getattr(s, "metric_labels", ("", "direct")) for s in engine.splices
        )
        for (cluster, kind), n in sorted(by_labels.items()):
            websockets.add_metric([cluster, kind], n)
        conns = GaugeMetricFamily(
            "guildnet_proxy_upstream_connections",
            "Upstream connections of the proxy's pool, by state (idle: pooled for reuse).",
            labels=["state"],
        )
        pool = engine.pool
        idle = pool.idle_count()
        conns.add_metric(["idle"], idle)
        conns.add_metric(["active"], max(0, pool.open_connections - idle))
        in_flight = GaugeMetricFamily(
            "guildnet_proxy_exchanges_in_flight",
            "Proxied HTTP exchanges under way (WebSockets not included).",
        )
        in_flight.add_metric([], len(engine.exchanges))
        yield from (websockets, conns, in_flight)
