"""Socket options for proxied connections, reached through TLS wrappers."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import BufferingTLSTransport

from guildnet.reactor import mark_direct

try:
    from twisted.internet._newtls import _BypassTLS
except ImportError:  # pragma: no cover - a Twisted without it: no write-through there
    _BypassTLS = None  # type: ignore[assignment,misc]

#: TCP keepalive for long-lived connections: probe after 60 s idle, every 15 s, 4 times,
#: so a dead peer (laptop suspended, NAT dropped) is noticed in about two minutes while a
#: quiet but healthy IDE WebSocket is never cut.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 15
KEEPALIVE_COUNT = 4


@functools.lru_cache(maxsize=1024)
def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tcp(transport: Any) -> Any:
    """The TCP transport under any number of protocol wrappers (TLS)."""
    seen = 0
    while transport is not None and seen < 8:
        if hasattr(transport, "getHandle") and hasattr(transport, "setTcpNoDelay"):
            return transport
        transport = getattr(transport, "transport", None)
        seen += 1
    return None


def set_nodelay(transport: Any) -> None:
    tcp = _tcp(transport)
    if tcp is not None:
        with contextlib.suppress(OSError):
            tcp.setTcpNoDelay(True)


def set_keepalive(transport: Any) -> None:
    """Enable TCP keepalive with short probes (dead-peer detection, not a deadline)."""
    tcp = _tcp(transport)
    if tcp is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        tcp.setTcpKeepAlive(True)
        sock = tcp.getHandle()
        for name, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            opt = getattr(socket, name, None)
            if opt is not None:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)


def _raw_writer(transport: Any) -> tuple[Any, FileDescriptor, Callable[[bytes], None]] | None:
    """Under any protocol wrappers: the object whose ``write`` puts bytes on the socket
    as they are, the socket's transport, and that ``write``.

    Not ``_tcp``: a TLS wrapper answers ``getHandle`` by delegation, and replacing *its*
    ``write`` would put plaintext on the wire. A connection TLS was started on (a TLS
    listening port) is reached through the bypass its TLS layer writes to.
    """
    seen = 0
    while transport is not None and seen < 8:
        if _BypassTLS is not None and isinstance(transport, _BypassTLS):
            fd = transport._connection
            base = transport._base
            if not isinstance(fd, FileDescriptor) or base is not FileDescriptor:
                return None
            return transport, fd, functools.partial(FileDescriptor.write, fd)
        if isinstance(transport, FileDescriptor):
            if getattr(transport, "TLS", False):
                return None
            return transport, transport, functools.partial(type(transport).write, transport)
        transport = getattr(transport, "__dict__", {}).get("transport")
        seen += 1
    return None


def mark_direct_dispatch(transport: Any) -> None:
    """Let the socket under ``transport`` take ``guildnet.reactor``'s short dispatch path."""
    found = _raw_writer(transport)
    if found is not None:
        mark_direct(found[1])


def write_through(transport: Any) -> None:
    """Make the TCP connection under ``transport`` send without a wait for writability.

    Twisted queues every write and sends it when the reactor next reports the socket
    writable: two ``epoll_ctl`` calls and a loop iteration per write. For a ping-pong
    (a WebSocket, a small request/response) the socket is nearly always writable, so
    this tries ``send`` first and queues only what the kernel did not take (with
    Twisted's own buffering, producer pausing and error reporting). Ordering is kept:
    anything already queued makes every later write queue behind it.
    """
    found = _raw_writer(transport)
    if found is None:
        return
    target, tcp, queued = found
    sock = tcp.__dict__.get("socket")
    if sock is None or target.__dict__.get("_guildnet_write_through", False):
        return

    def send_now(data: bytes) -> None:
        if (
            data
            and tcp.connected
            and not tcp.disconnecting
            and not tcp._writeDisconnected
            and not tcp._tempDataBuffer
            and tcp.offset == len(tcp.dataBuffer)
        ):
            try:
                sent = sock.send(data)
            except OSError:
                sent = 0  # EAGAIN, or an error the reactor's doWrite will report
            if sent == len(data):
                return
            data = data[sent:]
        queued(data)

    at_end_of_turn = getattr(getattr(tcp, "reactor", None), "at_end_of_turn", None)
    write: Callable[[bytes], None]
    at_once: Callable[[bytes], None]
    if at_end_of_turn is None:
        write = at_once = send_now
    else:
        # With guildnet.reactor: what is written during a reactor turn leaves in one
        # send at its end (Twisted's own write path would wait a whole turn more).
        pending: list[bytes] = []

        def flush() -> None:
            if not pending:
                return
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            send_now(data)

        def write(data: bytes) -> None:
            if data:
                if not pending:
                    at_end_of_turn(flush)
                pending.append(data)

        def at_once(data: bytes) -> None:
            if pending:
                flush()
            send_now(data)

    target.__dict__["_guildnet_write_through"] = True
    #: For a writer that gathered a whole turn already (``send_at_once``).
    target.__dict__["_guildnet_send_at_once"] = at_once
    target.__dict__["write"] = write  # as BufferingTLSTransport does with its aggregator
    target.__dict__["writeSequence"] = lambda seq: write(b"".join(seq))


def send_at_once(transport: Any) -> Callable[[bytes], None] | None:
    """After ``write_through(transport)``: a write that leaves now rather than at the end
    of the turn (behind anything written before it), for a writer whose one write per
    connection is already the whole turn's output; else None."""
    found = _raw_writer(transport)
    if found is None:
        return None
    fn: Callable[[bytes], None] | None = found[0].__dict__.get("_guildnet_send_at_once")
    return fn


def flush_tls(transport: Any) -> None:
    """Send what a server TLS transport holds back to merge small writes, now."""
    if isinstance(transport, BufferingTLSTransport):
        # After connectionLost the aggregator is a null one, without ``flush``.
        flush = getattr(getattr(transport, "_aggregator", None), "flush", None)
        if flush is not None:
            flush()
