"""RethinkDB families (the per-cluster DB part, ``guildnet.rdb``).

Connection state, open changefeeds and SSE subscribers are read at scrape time from the
cluster's ``RDBManager`` and feed hub (``state``: guildnet_rdb_connected,
guildnet_rdb_changefeeds_active, guildnet_rdb_sse_subscribers). The event families below
are incremented where their events happen: reconnects by the manager, when an established
connection is lost or its ping fails; subscriber resets and fan-out writes by the feed
hub; query latency by ``RDBManager.run`` (every query the API, the feeds and the monitor
make).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from guildnet.metrics.core import REGISTRY, per_cluster

RECONNECTS = per_cluster(
    Counter(
        "guildnet_rdb_reconnects",
        "Established RethinkDB connections lost (dropped, or a failed ping) and reconnected.",
        ["cluster"],
        registry=REGISTRY,
    )
)
SUBSCRIBER_RESETS = per_cluster(
    Counter(
        "guildnet_rdb_subscriber_resets",
        "Changefeed subscribers resynced, by action: slow_client (its bounded buffer "
        "overflowed), feed_lost (the server feed failed or restarted), reconnected "
        "(Last-Event-ID), gone (the table was dropped and the stream ended).",
        ["cluster", "action"],
        registry=REGISTRY,
    )
)
FANOUT_WRITES = per_cluster(
    Counter(
        "guildnet_rdb_fanout_writes",
        "Writes of changefeed changes to SSE subscribers; each carries every change the "
        "subscriber had not had yet, so the changes sent divided by this is the batching.",
        ["cluster"],
        registry=REGISTRY,
    )
)
QUERY_DURATION = per_cluster(
    Histogram(
        "guildnet_rdb_query_duration_seconds",
        "RethinkDB query latency, by operation (the outermost ReQL term, e.g. insert, "
        "changes; ping for the monitor's).",
        ["cluster", "op"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        registry=REGISTRY,
    )
)
