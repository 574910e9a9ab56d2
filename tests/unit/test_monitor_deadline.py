"""The lag-free deadline of the RethinkDB monitor's ping (``guildnet.monitor``): reactor
lag does not count, an idle reactor's time does. Driven by a ``Clock``, whose ``advance``
in one step is exactly a reactor turn that ran long. The same against a real server and a
really blocked reactor: tests/integration/test_rdb_manager.py."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.task import Clock

from guildnet.monitor import credited, lag_free_timeout


def test_credited_counts_a_late_look_only_up_to_the_cap() -> None:
    assert credited(0.1) == pytest.approx(0.1)
    assert credited(0.2) == pytest.approx(0.2)
    assert credited(3.0) == pytest.approx(0.25)  # a 3 s stall is the reactor's, not the peer's
    assert credited(-1.0) == 0.0  # a clock stepping back never shortens the wait
    assert credited(5.0, tick=0.5, cap=0.1) == pytest.approx(0.5)  # never below one tick


def outcome(d: Deferred[Any]) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_an_idle_reactor_times_out_on_the_clock() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    got = outcome(lag_free_timeout(d, 2.0, clock))
    clock.pump([0.1] * 19)
    assert got == []
    clock.pump([0.1] * 2)
    assert len(got) == 1 and got[0].check(DeferredTimeoutError)
    assert not clock.getDelayedCalls()


def test_a_stalled_reactor_does_not_run_the_deadline_out() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    got = outcome(lag_free_timeout(d, 2.0, clock))
    clock.advance(0.1)
    clock.advance(10.0)  # one turn of 10 s: a plain addTimeout(2) would have fired
    clock.advance(5.0)
    assert got == []
    d.callback(1)  # the answer, read in the turn after the stall
    assert got == [1] and not clock.getDelayedCalls()


def test_other_failures_pass_unchanged() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    got = outcome(lag_free_timeout(d, 2.0, clock))
    d.errback(ValueError("x"))
    assert got[0].check(ValueError) and not clock.getDelayedCalls()
    got[0].trap(ValueError)
