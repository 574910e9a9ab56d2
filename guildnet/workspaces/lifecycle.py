"""Lifecycle writes on a Workspace (stop, start, restart) as pure merge-patch bodies.

The API and the idle culler change a workspace's lifecycle only through the Workspace
itself (never its Deployment): the operator renders what the Workspace says, so a stop or
a restart survives every later reconcile, a Host App restart and a leader change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from guildnet.operator.constants import (
    ANNOTATION_RESTARTED_AT,
    ANNOTATION_STOP_REASON,
    LABEL_KEPT,
    STOP_USER_REQUESTED,
)

JSON_PATCH: Final = "application/json-patch+json"
#: What ``PATCH /api/servers/{id}`` may change; each key given replaces that field (null
#: removes it). Storage is fixed at launch (a claim's class cannot change, nor its size
#: shrink), ``stopped`` has its own routes.
CHANGEABLE: Final = frozenset(
    {"image", "env", "args", "command", "resources", "ports", "labels", "proxy"}
)

REASON_PATTERN: Final = r"^[A-Z][A-Za-z0-9]{0,63}$"
MAX_STOP_MESSAGE: Final = 512


def stop_patch(
    stopped: bool,
    reason: str = STOP_USER_REQUESTED,
    message: str = "",
    resource_version: str | None = None,
) -> dict[str, Any]:
    """The merge patch that stops (or starts) a workspace.

    Stopping sets ``spec.stopped`` and the ``guildnet.io/stop-reason`` annotation
    (``<Reason>`` or ``<Reason>: <message>``); starting removes both (null deletes in a
    merge patch, and ``to_dict`` omits a false ``stopped``). ``resource_version`` makes the
    write conditional (409 if the Workspace changed since it was read): the culler's guard
    against stopping a workspace someone has just started.
    """
    if not re.fullmatch(REASON_PATTERN, reason):
        raise ValueError(f"stop reason {reason!r} must be a CamelCase word")
    annotation: str | None = None
    if stopped:
        text = " ".join(message.split())[:MAX_STOP_MESSAGE]
        annotation = f"{reason}: {text}" if text else reason
    meta: dict[str, Any] = {"annotations": {ANNOTATION_STOP_REASON: annotation}}
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    return {"metadata": meta, "spec": {"stopped": True if stopped else None}}


def restart_patch(now: datetime) -> dict[str, Any]:
    """The merge patch that rolls the pod: a new ``guildnet.io/restarted-at`` time.

    The operator copies it into the pod template (as ``kubectl rollout restart`` does with
    ``kubectl.kubernetes.io/restartedAt``), so the Deployment replaces the pod once.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"annotations": {ANNOTATION_RESTARTED_AT: stamp}}}


def keep_volume_patch() -> dict[str, Any]:
    """The merge patch that takes a home claim out of its Workspace's ownership.

    Sent before ``DELETE ...?keep_volume=true`` deletes the Workspace, so the garbage
    collector keeps the claim (and its data); the label says it was kept on purpose.
    """
    return {"metadata": {"ownerReferences": None, "labels": {LABEL_KEPT: "true"}}}


def changed_spec(current: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """The whole new spec for a ``PATCH /api/servers/{id}`` body (not yet validated).

    Raises SpecError for a key that cannot change; the caller validates the result with
    ``parse_spec`` (so a bad value gets a 400 naming the field) and writes it with
    ``replace_spec_patch``.
    """
    from guildnet.operator.spec import SpecError

    for key in change:
        if key in ("storage", "stopped", "name"):
            how = {
                "storage": "is fixed at launch",
                "stopped": "changes through /stop and /start",
                "name": "cannot change",
            }[key]
            raise SpecError(key, how)
        if key not in CHANGEABLE:
            raise SpecError(key, "unknown field")
    out = {k: v for k, v in current.items()}
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def replace_spec_patch(spec: Mapping[str, Any], resource_version: str) -> list[dict[str, Any]]:
    """A JSON patch replacing the whole spec if the Workspace is still at ``resource_version``.

    Not a merge patch: merging would keep keys of nested objects (``resources.limits``)
    that the user meant to drop.
    """
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "replace", "path": "/spec", "value": dict(spec)},
    ]
