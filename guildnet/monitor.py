"""Reactor liveness: a heartbeat timer that measures how late the reactor runs."""

from __future__ import annotations

import time
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall

INTERVAL = 0.5
MAX_LAG = 2.0


class ReactorMonitor(Service):
    """Records the worst scheduling lag of recent heartbeats for /readyz."""

    def __init__(self, reactor: Any, interval: float = INTERVAL) -> None:
        self._reactor = reactor
        self.interval = interval
        self.last_beat: float | None = None
        self.lag = 0.0
        self._expected: float | None = None
        self._loop = LoopingCall(self._beat)
        self._loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        self._expected = time.monotonic()
        self._loop.start(self.interval, now=True)

    def stopService(self) -> None:
        if self._loop.running:
            self._loop.stop()
        super().stopService()

    def _beat(self) -> None:
        now = time.monotonic()
        if self._expected is not None:
            self.lag = max(0.0, now - self._expected)
        self._expected = now + self.interval
        self.last_beat = now

    def status(self) -> dict[str, Any]:
        """``ok`` while heartbeats arrive on time."""
        if not self.running or self.last_beat is None:
            return {"ok": False, "error": "reactor monitor not running"}
        since = time.monotonic() - self.last_beat
        ok = since < self.interval + MAX_LAG and self.lag < MAX_LAG
        return {
            "ok": ok,
            "lag_ms": round(self.lag * 1000, 1),
            "since_beat_ms": round(since * 1000, 1),
        }
