"""``twistd --reactor=guildnet``: the epoll reactor, with a shorter path for proxy sockets.

For every ready descriptor Twisted's reactor calls ``log.callWithLogger``: it asks the
descriptor for its log prefix and runs the callback inside a fresh copy of the legacy
logging context, so that old-style ``log.msg`` calls made during it carry a "system".
For a proxied WebSocket message or small request that wrapping is a measurable share
of the whole cost, and nothing GuildNet runs there uses the legacy context.

:class:`GuildNetReactor` skips it for descriptors the proxy marks
(:func:`mark_direct`): its client connections once they carry proxied traffic, and
its upstream connections. Every other descriptor is dispatched exactly as by
``EPollReactor``, and errors from a marked one are logged and handled as before
(``_doReadOrWrite`` catches what a callback raises and drops that connection).

Without ``--reactor=guildnet`` GuildNet runs on Twisted's default reactor unchanged,
only slower; ``make run``, the systemd unit and the benchmarks pass it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.python import log

#: The attribute set on a transport (the TCP connection) to take the short path.
DIRECT = "_guildnet_direct"


class GuildNetReactor(EPollReactor):
    """``EPollReactor`` whose marked descriptors skip the legacy log context, with
    an end-of-turn hook (:meth:`at_end_of_turn`)."""

    def __init__(self) -> None:
        super().__init__()
        self._end_of_turn: list[Callable[[], object]] = []

    def at_end_of_turn(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` once the events of the current turn have all been handled
        (before the reactor next blocks). Writes gathered this way leave together,
        so peers reading many connections wake once for many messages, as they
        would behind an event loop that writes at the end of its tick."""
        self._end_of_turn.append(fn)

    def _run_end_of_turn(self) -> None:
        while self._end_of_turn:
            todo, self._end_of_turn = self._end_of_turn, []
            for fn in todo:
                try:
                    fn()
                except BaseException:
                    log.err(system="guildnet.reactor")

    def doPoll(self, timeout: float | None) -> None:
        if self._end_of_turn:  # writes made by timers and thread callbacks
            self._run_end_of_turn()
        if timeout is None:
            timeout = -1  # wait indefinitely
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        drdw = self._doReadOrWrite
        selectables = self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if getattr(selectable, DIRECT, False):
                try:
                    drdw(selectable, fd, event)
                except BaseException:  # as callWithLogger does, minus the context
                    log.err(system=getattr(selectable, "logstr", "-"))
            else:
                log.callWithLogger(selectable, drdw, selectable, fd, event)
        if self._end_of_turn:
            self._run_end_of_turn()

    doIteration = doPoll


def mark_direct(tcp: Any) -> None:
    """Let ``tcp`` (a TCP transport) take the short dispatch path; harmless on any
    other reactor, where the attribute means nothing."""
    if tcp is not None:
        tcp.__dict__[DIRECT] = True


def install() -> None:
    """Install :class:`GuildNetReactor` as the global reactor (twistd calls this)."""
    from twisted.internet.main import installReactor

    installReactor(GuildNetReactor())


__all__ = ["DIRECT", "GuildNetReactor", "install", "mark_direct"]
