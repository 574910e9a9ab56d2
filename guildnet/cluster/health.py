"""A cluster's health, part by part: pure summaries of what the Instance reports.

Each part is ``{"ok", "reason", "checkedAt", ...details}``; the cluster is ok when every
part is. The HTTP route (``http/health.py``) gathers the inputs; these functions decide.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

PARTS = ("kubernetes", "informers", "operator", "localdb", "portForwards")


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def part(ok: bool, reason: str, checked_at: float, **details: Any) -> dict[str, Any]:
    return {"ok": ok, "reason": reason, "checkedAt": iso(checked_at), **details}


def kubernetes_part(
    reachable: bool, version: str | None, error: str | None, server: str, checked_at: float
) -> dict[str, Any]:
    if reachable:
        return part(True, f"API server {version} answered /version", checked_at, version=version)
    return part(False, error or "the API server did not answer", checked_at, server=server)


def informers_part(synced: Mapping[str, bool] | None, now: float) -> dict[str, Any]:
    if not synced:
        return part(False, "the workspace caches are not running", now, resources={})
    waiting = sorted(kind for kind, ok in synced.items() if not ok)
    if waiting:
        return part(False, "not synced: " + ", ".join(waiting), now, resources=dict(synced))
    return part(True, f"{len(synced)} caches synced", now, resources=dict(synced))


def operator_part(embedded: bool, running: bool, leader: bool, now: float) -> dict[str, Any]:
    if not embedded:
        return part(True, "the embedded operator is disabled", now, leader=False)
    if not running:
        return part(False, "the operator's leader election is not running", now, leader=False)
    if leader:
        return part(True, "this Host App holds the Lease and reconciles", now, leader=True)
    return part(True, "standby: another Host App holds the Lease", now, leader=False)


def localdb_part(problem: str | None, checked_at: float) -> dict[str, Any]:
    if problem is None:
        return part(True, "quick_check ok, write read back", checked_at)
    return part(False, problem, checked_at)


def port_forwards_part(
    enabled: bool, open_forwards: int, streams: int, now: float
) -> dict[str, Any]:
    reason = f"{open_forwards} open, {streams} connections" if enabled else "port-forwards disabled"
    return part(True, reason, now, open=open_forwards, connections=streams)


def summary(cluster_id: str, parts: Mapping[str, dict[str, Any]], now: float) -> dict[str, Any]:
    failing = [name for name, p in parts.items() if not p["ok"]]
    return {
        "cluster": cluster_id,
        "ok": not failing,
        "failing": failing,
        "checkedAt": iso(now),
        "parts": dict(parts),
    }
