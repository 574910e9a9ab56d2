"""Reactor liveness: a heartbeat timer that measures how late the reactor runs."""

from __future__ import annotations

import time
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

T = TypeVar("T")

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


#: How often a lag-free deadline looks at the clock, and the most one look may count.
DEADLINE_TICK = 0.1
DEADLINE_TICK_CAP = 0.25


def credited(elapsed: float, tick: float = DEADLINE_TICK, cap: float = DEADLINE_TICK_CAP) -> float:
    """How much of the ``elapsed`` seconds since the last look count toward a deadline.

    A look due every ``tick`` s that comes much later means the reactor itself was busy
    (a long turn: a large fan-out, a snapshot): that time is not the peer's, so at most
    ``cap`` of it counts. An idle reactor looks on time and the deadline runs at the
    clock's pace.
    """
    return min(max(elapsed, 0.0), max(cap, tick))


class _LagFreeDeadline:
    """The timer of :func:`lag_free_timeout`."""

    def __init__(self, d: Deferred[Any], seconds: float, reactor: Any, tick: float, cap: float):
        self._d = d
        self._seconds = seconds
        self._reactor = reactor
        self._tick = tick
        self._cap = cap
        self.spent = 0.0
        self.expired = False
        self._last = reactor.seconds()
        self._call: Any = reactor.callLater(tick, self._look)

    def _look(self) -> None:
        now = self._reactor.seconds()
        self.spent += credited(now - self._last, self._tick, self._cap)
        self._last = now
        if self.spent >= self._seconds:
            self._call = None
            self.expired = True
            self._d.cancel()
        else:
            self._call = self._reactor.callLater(self._tick, self._look)

    def settled(self, result: Any) -> Any:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self.expired and isinstance(result, Failure) and result.check(CancelledError):
            return Failure(DeferredTimeoutError(self._seconds, "lag-free deadline"))
        return result


def lag_free_timeout(
    d: Deferred[T],
    seconds: float,
    reactor: Any,
    tick: float = DEADLINE_TICK,
    cap: float = DEADLINE_TICK_CAP,
) -> Deferred[T]:
    """Like ``d.addTimeout(seconds, reactor)`` (``d`` fails with ``defer.TimeoutError``),
    but time the reactor spent lagging does not count: ``d`` is cancelled only after
    ``seconds`` of reactor time in which it could have seen the answer.

    A plain timeout runs out while the reactor is busy with a long turn, and its timer runs
    before the reactor reads the socket the answer already waits on, so a saturated Host
    App would call a healthy server dead (and reconnecting makes the load worse). Here a
    timer looks every ``tick`` s and adds :func:`credited` time; an answer read in the turn
    after a stall wins, since that turn's timers (the next look) run after the read.
    """
    deadline = _LagFreeDeadline(d, seconds, reactor, tick, cap)
    d.addBoth(deadline.settled)
    return d
