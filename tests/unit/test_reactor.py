"""guildnet.reactor: marked descriptors skip the legacy log context, others do not.

A real GuildNetReactor (its own epoll instance) polled by hand over real sockets;
the global reactor running the test suite is not touched.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.python import context, log

from guildnet.reactor import GuildNetReactor, mark_direct


class Reader:
    """A minimal IReadDescriptor over one end of a socketpair."""

    def __init__(self, sock: socket.socket, fail: bool = False) -> None:
        self.sock = sock
        self.fail = fail
        self.systems: list[Any] = []
        self.lost: list[Any] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "TestReader"

    def doRead(self) -> None:
        self.systems.append((context.get(log.ILogContext) or {}).get("system"))
        self.sock.recv(100)
        if self.fail:
            raise RuntimeError("boom")

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)


@pytest.fixture
def reactor() -> Iterator[GuildNetReactor]:
    r = GuildNetReactor()
    yield r
    r.removeAll()
    r.waker.connectionLost(None)
    r._poller.close()


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    return a, b


def test_unmarked_descriptor_runs_in_the_legacy_log_context(reactor: GuildNetReactor) -> None:
    a, b = pair()
    with a, b:
        reader = Reader(a)
        reactor.addReader(reader)
        b.send(b"x")
        reactor.doPoll(1)
        assert reader.systems == ["TestReader"]
        reactor.removeReader(reader)


def test_marked_descriptor_is_dispatched_without_it(reactor: GuildNetReactor) -> None:
    a, b = pair()
    with a, b:
        reader = Reader(a)
        mark_direct(reader)
        reactor.addReader(reader)
        b.send(b"x")
        reactor.doPoll(1)
        assert reader.systems == ["-"], "no per-event context for a marked descriptor"
        reactor.removeReader(reader)


def test_error_in_a_marked_descriptor_is_logged_and_drops_it(
    reactor: GuildNetReactor,
) -> None:
    errors: list[dict[str, Any]] = []
    log.addObserver(errors.append)
    a, b = pair()
    try:
        with a, b:
            reader = Reader(a, fail=True)
            mark_direct(reader)
            reactor.addReader(reader)
            b.send(b"x")
            reactor.doPoll(1)
            assert len(reader.lost) == 1, "the failing descriptor was disconnected"
            assert reader not in reactor.getReaders()
    finally:
        log.removeObserver(errors.append)
    assert any(e.get("isError") and "boom" in str(e.get("failure", "")) for e in errors)


def test_the_suite_runs_on_the_reactor_guildnet_ships_with() -> None:
    import os

    from twisted.internet import reactor as global_reactor

    if os.environ.get("GUILDNET_TEST_REACTOR", "guildnet") == "guildnet":
        assert isinstance(global_reactor, GuildNetReactor)
    else:
        assert not isinstance(global_reactor, GuildNetReactor)


def test_end_of_turn_callbacks_run_after_the_turns_events(reactor: GuildNetReactor) -> None:
    a, b = pair()
    order: list[str] = []
    with a, b:
        reader = Reader(a)
        original = reader.doRead

        def do_read() -> None:
            original()
            order.append("read")
            reactor.at_end_of_turn(lambda: order.append("end of turn"))

        reader.doRead = do_read  # type: ignore[method-assign]
        reactor.addReader(reader)
        b.send(b"x")
        reactor.doPoll(1)
        assert order == ["read", "end of turn"]
        reactor.at_end_of_turn(lambda: order.append("before blocking"))
        reactor.doPoll(0)  # a timer's write goes out before the reactor waits
        assert order[-1] == "before blocking"
        reactor.removeReader(reader)
