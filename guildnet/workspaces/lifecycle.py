"""Lifecycle writes on a Workspace (stop, start, restart) as pure merge-patch bodies.

The API and the idle culler change a workspace's lifecycle only through the Workspace
itself (never its Deployment): the operator renders what the Workspace says, so a stop or
a restart survives every later reconcile, a Host App restart and a leader change.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from guildnet.operator.constants import (
    ANNOTATION_RESTARTED_AT,
    ANNOTATION_STOP_REASON,
    STOP_USER_REQUESTED,
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
