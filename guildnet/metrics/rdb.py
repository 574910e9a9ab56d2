"""RethinkDB families (the per-cluster DB part, ``guildnet.rdb``).

Connection state, open changefeeds and SSE subscribers are read at scrape time from the
cluster's ``RDBManager`` and feed hub (``state``: guildnet_rdb_connected,
guildnet_rdb_changefeeds_active, guildnet_rdb_sse_subscribers). The event families below
are declared for the DB code to increment where its events happen (reconnect, subscriber
drop or resync, query); not all of those call sites are wired yet.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from guildnet.metrics.core import REGISTRY, per_cluster

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
