"""RethinkDB families (the per-cluster DB part, ``guildnet.rdb``).

Declared here so dashboards and alerts can be written against them; the DB code
increments them where its events happen (connect, reconnect, feed start/stop,
subscriber drop or resync, query).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from guildnet.metrics.core import REGISTRY, per_cluster

CONNECTED = per_cluster(
    Gauge(
        "guildnet_rdb_connected",
        "1 while the cluster's RethinkDB connection is up, else 0.",
        ["cluster"],
        registry=REGISTRY,
    )
)
RECONNECTS = per_cluster(
    Counter(
        "guildnet_rdb_reconnects",
        "RethinkDB connections re-established after a loss.",
        ["cluster"],
        registry=REGISTRY,
    )
)
CHANGEFEEDS = per_cluster(
    Gauge(
        "guildnet_rdb_changefeeds_active",
        "Open RethinkDB changefeeds (one per watched table, shared by subscribers).",
        ["cluster"],
        registry=REGISTRY,
    )
)
SUBSCRIBERS = per_cluster(
    Gauge(
        "guildnet_rdb_sse_subscribers",
        "SSE clients subscribed to changefeeds.",
        ["cluster"],
        registry=REGISTRY,
    )
)
SUBSCRIBER_RESETS = per_cluster(
    Counter(
        "guildnet_rdb_subscriber_resets",
        "Subscribers dropped (too slow) or resynced (feed error or reconnect), by action.",
        ["cluster", "action"],
        registry=REGISTRY,
    )
)
QUERY_DURATION = per_cluster(
    Histogram(
        "guildnet_rdb_query_duration_seconds",
        "RethinkDB query latency, by operation.",
        ["cluster", "op"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        registry=REGISTRY,
    )
)
