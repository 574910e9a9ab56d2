"""Gathering a cluster's health for ``GET /api/cluster/{id}/health`` (and ``/api/health``).

The decisions are in ``cluster.health``; this asks the Instance, its WorkspaceService,
its local DB and its port-forward manager, each with a bound on how long it may take.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError

from guildnet.cluster import health as H
from guildnet.cluster.instance import Instance, Reachability

LOCALDB_TIMEOUT = 5.0


async def gather(
    instance: Instance,
    reach: Reachability,
    embed_operator: bool,
    use_port_forward: bool,
    reactor: Any,
) -> dict[str, Any]:
    from guildnet.workspaces.service import SERVICE_NAME

    now = time.time()
    parts: dict[str, dict[str, Any]] = {
        "kubernetes": H.kubernetes_part(
            reach.reachable, reach.version, reach.error, reach.server, reach.checked_at
        )
    }
    try:
        svc: Any = instance.getServiceNamed(SERVICE_NAME)
    except KeyError:
        svc = None
    informers = svc.informers if svc is not None else {}
    parts["informers"] = H.informers_part(
        {kind: bool(inf.synced) for kind, inf in informers.items()}, now
    )
    elector = svc.elector if svc is not None else None
    parts["operator"] = H.operator_part(
        embed_operator,
        elector is not None and bool(elector.running),
        elector is not None and bool(elector.is_leader),
        now,
    )
    parts["localdb"] = H.localdb_part(await _localdb(instance, reactor), time.time())
    try:
        pfm: Any = instance.getServiceNamed("port-forward")
    except KeyError:
        pfm = None
    parts["portForwards"] = H.port_forwards_part(
        use_port_forward,
        pfm.open_forwards if pfm is not None else 0,
        pfm.open_streams if pfm is not None else 0,
        now,
    )
    rdb: Any = getattr(instance, "rdb", None)  # None: RethinkDB not used here (yet)
    if rdb is not None:
        h = rdb.health
        parts["rethinkdb"] = H.part(
            bool(h.ready),
            "connected" if h.ready else str(h.message or h.reason or h.state),
            time.time(),
            state=h.state,
        )
    return H.summary(instance.cluster_id, parts, time.time())


async def _localdb(instance: Instance, reactor: Any) -> str | None:
    d: Deferred[str | None] = instance.ready().addCallback(lambda _: instance.localdb.check())
    d.addTimeout(LOCALDB_TIMEOUT, reactor)
    try:
        return await d
    except DeferredTimeoutError:
        return f"no answer within {LOCALDB_TIMEOUT:.0f}s"
    except Exception as e:
        return f"{type(e).__name__}: {str(e)[:200]}"
