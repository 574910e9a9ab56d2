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
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.python import log

#: The attribute set on a transport (the TCP connection) to take the short path.
DIRECT = "_guildnet_direct"


class GuildNetReactor(EPollReactor):
    """``EPollReactor`` whose marked descriptors skip the legacy log context."""

    def doPoll(self, timeout: float | None) -> None:
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
