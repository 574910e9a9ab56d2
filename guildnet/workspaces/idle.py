"""Idle culling decisions, as pure functions of times and a Workspace dict.

A running workspace is culled (stopped, never deleted) when nothing has used it for its
idle timeout. "Used" has several witnesses, each a wall-clock time (seconds since the
epoch) or None when unknown:

* ``proxy``: the last request or WebSocket chunk this Host App proxied to it
  (``proxy.activity``);
* ``recorded``: the ``guildnet.io/last-activity`` annotation, written by every Host App
  that proxied to it (at most once a minute each), so another Host App, a restarted one or
  a new leader knows what the old one saw;
* ``app``: the app's own heartbeat (code-server ``/healthz`` ``lastHeartbeat``, Jupyter
  ``/api/status`` ``last_activity``), which sees use that bypasses the proxy (a running
  kernel, an Ingress);
* ``started``: when it last became Ready (a start or a restart gives a full timeout);
* ``watching_since``: when this culler started watching. What happened before is unknown,
  and unknown counts as "active then", so a Host App restart or a leader change can only
  make a cull later, never earlier.

The last activity is the latest of them; the workspace is due at last activity plus its
timeout (``spec.idleTimeoutSeconds``, else ``WORKSPACE_IDLE_TIMEOUT``; 0 is off).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

#: Written on the Workspace: the last activity any Host App saw (RFC 3339, UTC).
ANNOTATION_LAST_ACTIVITY: Final = "guildnet.io/last-activity"
#: A Host App writes a workspace's annotation at most this often.
RECORD_INTERVAL: Final = 60.0
#: A witness this far in the future is a broken clock or a forged value: ignored.
MAX_SKEW: Final = 300.0
#: The longest idle timeout (30 days), for the knob, the spec and the CRD alike.
MAX_IDLE_TIMEOUT: Final = 30 * 86400

Obj = Mapping[str, Any]


@attrs.frozen
class Witnesses:
    """What is known about a workspace's last use (see the module docstring)."""

    watching_since: float
    proxy: float | None = None
    recorded: float | None = None
    app: float | None = None
    started: float | None = None


@attrs.frozen
class Decision:
    """``cull``: stop it now. ``last_activity``/``source``: the latest witness and which one.
    ``due_at``: when it will be culled if nothing happens (None: culling is off)."""

    cull: bool
    last_activity: float
    source: str
    due_at: float | None
    timeout: float


def decide(w: Witnesses, timeout: float, now: float) -> Decision:
    """Whether a running workspace is idle past ``timeout`` seconds at ``now``."""
    candidates = [
        ("proxy", w.proxy),
        ("recorded", w.recorded),
        ("app", w.app),
        ("started", w.started),
        ("watching", w.watching_since),
    ]
    source, last = "watching", w.watching_since
    for name, value in candidates:
        if value is None or not math.isfinite(value) or value > now + MAX_SKEW:
            continue
        if value > last:
            source, last = name, value
    last = min(last, now)  # a clock a little ahead means "active now"
    if timeout <= 0:
        return Decision(False, last, source, None, 0.0)
    due = last + timeout
    return Decision(now >= due, last, source, due, float(timeout))


# --- reading a Workspace ---------------------------------------------------------------------


def _meta(ws: Obj) -> Obj:
    return ws.get("metadata") or {}


def parse_time(value: Any) -> float | None:
    """An RFC 3339 time (``...Z`` or with an offset) as epoch seconds; None if not one."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def format_time(when: float) -> str:
    """Epoch seconds as RFC 3339 UTC with whole seconds (what the annotation and API show)."""
    return datetime.fromtimestamp(math.floor(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timeout_of(ws: Obj, default: float) -> float:
    """The workspace's idle timeout: ``spec.idleTimeoutSeconds`` if set, else ``default``.

    The default never applies to an ephemeral workspace (``spec.storage.ephemeral``): a
    stop loses its files, so only its own ``idleTimeoutSeconds`` can ask for that.
    """
    spec = ws.get("spec") or {}
    value = spec.get("idleTimeoutSeconds")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_IDLE_TIMEOUT:
        return float(value)
    storage = spec.get("storage")
    if isinstance(storage, Mapping) and storage.get("ephemeral") is True:
        return 0.0
    return default


def recorded_of(ws: Obj) -> float | None:
    return parse_time((_meta(ws).get("annotations") or {}).get(ANNOTATION_LAST_ACTIVITY))


def started_of(ws: Obj) -> float | None:
    """When the workspace became Ready (its Ready condition's transition time)."""
    for c in (ws.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def is_stopped(ws: Obj) -> bool:
    return bool((ws.get("spec") or {}).get("stopped"))


def cullable(ws: Obj) -> bool:
    """Running (ready on its current spec), not stopped, not being deleted."""
    if _meta(ws).get("deletionTimestamp") or is_stopped(ws):
        return False
    return (ws.get("status") or {}).get("phase") == "Running"


def record_patch(when: float) -> dict[str, Any]:
    """The merge patch that records ``when`` as the last activity."""
    return {"metadata": {"annotations": {ANNOTATION_LAST_ACTIVITY: format_time(when)}}}


def record_every(timeout: float) -> float:
    """How often a Host App may write a workspace's annotation: once a minute, or a
    quarter of a shorter timeout (so another Host App's leader never lags by more)."""
    return max(1.0, min(RECORD_INTERVAL, timeout / 4))


def should_record(
    seen: float | None,
    recorded: float | None,
    last_write: float | None,
    now: float,
    every: float = RECORD_INTERVAL,
) -> bool:
    """Whether a Host App that saw activity at ``seen`` writes the annotation now.

    Only when it saw something newer than what is recorded (by a second or more: the
    annotation has whole seconds) and its own last write for this workspace is at least
    ``every`` seconds old (``last_write`` and ``now`` on one clock).
    """
    if seen is None:
        return False
    if recorded is not None and seen < recorded + 1:
        return False
    return last_write is None or now - last_write >= every


def stop_message(decision: Decision) -> str:
    """The stop reason's message (status condition and Event)."""
    minutes = decision.timeout / 60
    span = f"{minutes:g} min" if decision.timeout >= 60 else f"{decision.timeout:g} s"
    return f"no activity for {span} (last activity {format_time(decision.last_activity)})"


# --- app heartbeats ----------------------------------------------------------------------------

HEARTBEAT_PATHS: Final = {"code-server": "/healthz", "jupyter": "/api/status"}
_MAX_BODY: Final = 64 * 1024


def parse_heartbeat(kind: str, body: bytes) -> float | None:
    """The app's last activity from its heartbeat answer, as epoch seconds (None: unknown).

    code-server ``/healthz``: ``{"status": "alive"|"expired", "lastHeartbeat": <ms>}`` (0
    before any use). Jupyter ``/api/status``: ``{"last_activity": "<RFC 3339>", ...}``.
    """
    if len(body) > _MAX_BODY:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    if kind == "code-server":
        ms = doc.get("lastHeartbeat")
        if isinstance(ms, int | float) and not isinstance(ms, bool) and ms > 0:
            return float(ms) / 1000.0
        return None
    if kind == "jupyter":
        return parse_time(doc.get("last_activity"))
    return None


_TOKEN_RE: Final = re.compile(r"^[\x21-\x7e]{1,512}$")


def jupyter_token(ws: Obj, secret_password: str | None) -> str | None:
    """The token Jupyter accepts: ``JUPYTER_TOKEN`` from the spec's env, else the Secret's."""
    for var in (ws.get("spec") or {}).get("env") or []:
        if isinstance(var, Mapping) and var.get("name") == "JUPYTER_TOKEN":
            value = var.get("value")
            return value if isinstance(value, str) and _TOKEN_RE.match(value) else None
    if secret_password and _TOKEN_RE.match(secret_password):
        return secret_password
    return None


# --- the API's view ----------------------------------------------------------------------------


def idle_view(ws: Obj, decision: Decision | None) -> dict[str, Any] | None:
    """``idle`` in the workspace JSON: timeout, last activity, idle since, stops at.

    None when the workspace is not running or nothing is known.
    """
    if decision is None:
        return None
    return {
        "timeoutSeconds": int(decision.timeout),
        "lastActivity": format_time(decision.last_activity),
        "idleSince": format_time(decision.last_activity),
        "stopsAt": format_time(decision.due_at) if decision.due_at is not None else None,
    }


__all__ = [
    "ANNOTATION_LAST_ACTIVITY",
    "Decision",
    "Witnesses",
    "cullable",
    "decide",
    "idle_view",
    "parse_heartbeat",
    "record_patch",
    "should_record",
    "timeout_of",
]
