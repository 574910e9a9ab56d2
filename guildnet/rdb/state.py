"""The RDB manager's decisions, pure: error classification, backoff and the health value.

Transient failures (refused, reset, timeout, no primary replica, Service missing or without
an address) are retried with exponential backoff and jitter; fatal ones (authentication,
TLS verification, an incompatible protocol) stop reconnecting until someone changes the
configuration, because retrying cannot help and would only hammer the server.
"""

from __future__ import annotations

import random
from typing import Any, Final

import attrs
from rethinkdb.errors import (
    ReqlAuthError,
    ReqlAvailabilityError,
    ReqlDriverError,
    ReqlPermissionError,
    ReqlTimeoutError,
)

from guildnet.rdb.discovery import DiscoveryError

BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0

#: The states the health route shows.
IDLE: Final = "idle"
CONNECTING: Final = "connecting"
READY: Final = "ready"
BACKOFF: Final = "backoff"
FAILED: Final = "failed"
CLOSED: Final = "closed"


@attrs.frozen
class Classified:
    reason: str  # a short code: refused, timeout, auth_failed, not_found, ...
    message: str  # one line for people, no secrets
    fatal: bool


def _first_line(e: BaseException) -> str:
    # ReqlError.message is the server's text without the query printout str() adds.
    raw = getattr(e, "message", None)
    if not isinstance(raw, str) or not raw:
        try:
            raw = str(e)
        except Exception:
            raw = type(e).__name__
    text = raw.strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def classify(e: BaseException) -> Classified:
    """Transient or fatal, with a reason code; never leaks credentials (they are not in
    driver messages, and the message is cut to one line)."""
    msg = _first_line(e)
    low = msg.lower()
    if isinstance(e, DiscoveryError):
        return Classified(e.reason, e.message, fatal=False)
    if isinstance(e, ReqlAuthError) or "authentication" in low or "wrong password" in low:
        return Classified("auth_failed", msg, fatal=True)
    if isinstance(e, ReqlPermissionError):
        return Classified("permission_denied", msg, fatal=True)
    if "certificate verify failed" in low or ("certificate" in low and "verif" in low):
        return Classified("tls_verify_failed", msg, fatal=True)
    if "unsupported protocol" in low or "incompatible" in low or "protocol version" in low:
        return Classified("incompatible_protocol", msg, fatal=True)
    if "wrong version number" in low or "ssl routines" in low or "packet length" in low:
        return Classified("tls_error", msg, fatal=True)
    if isinstance(e, ReqlTimeoutError) or "timed out" in low or "timeout" in low:
        return Classified("timeout", msg, fatal=False)
    if "no route" in low or "unreachable" in low:
        return Classified("unreachable", msg, fatal=False)
    if "refused" in low:
        return Classified("refused", msg, fatal=False)
    if "primary replica" in low or "not available" in low or "unavailable" in low:
        return Classified("unavailable", msg, fatal=False)
    if isinstance(e, ReqlAvailabilityError):
        return Classified("op_failed", msg, fatal=False)
    if "reset" in low or "connection lost" in low or "closed" in low:
        return Classified("connection_lost", msg, fatal=False)
    if "dns" in low or "resolve" in low or "no such host" in low or "address" in low:
        return Classified("unresolvable", msg, fatal=False)
    if isinstance(e, ReqlDriverError):
        return Classified("driver_error", msg, fatal=False)
    return Classified("error", f"{type(e).__name__}: {msg}", fatal=False)


def backoff_delay(
    attempt: int,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry ``attempt`` (1-based): "equal jitter", in [d/2, d] with
    d = min(cap, base * 2**(attempt-1)), so retries spread out but never come at once."""
    exp = min(cap, base * (2 ** max(0, min(attempt - 1, 30))))
    rand = (rng or random).random()
    return exp / 2 + rand * exp / 2


@attrs.frozen
class Health:
    """What ``GET /api/cluster/{id}/db/health`` and ``/readyz`` show."""

    state: str = IDLE
    reason: str | None = None
    message: str | None = None
    address: str | None = None
    source: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    since: float = 0.0
    last_ok_at: float | None = None
    server: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return self.state == READY

    def to_json(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "ready": self.ready, "since": self.since}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.message is not None:
            out["message"] = self.message
        if self.address is not None:
            out["address"] = self.address
            out["source"] = self.source
        out["attempts"] = self.attempts
        if self.next_attempt_at is not None:
            out["nextAttemptAt"] = self.next_attempt_at
            out["nextAttemptIn"] = round(max(0.0, self.next_attempt_at - now), 3)
        if self.last_ok_at is not None:
            out["lastOkAt"] = self.last_ok_at
        if self.server is not None:
            out["server"] = self.server
        return out
