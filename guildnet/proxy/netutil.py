"""Socket options for proxied connections, reached through TLS wrappers."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Any

#: TCP keepalive for long-lived connections: probe after 60 s idle, every 15 s, 4 times,
#: so a dead peer (laptop suspended, NAT dropped) is noticed in about two minutes while a
#: quiet but healthy IDE WebSocket is never cut.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 15
KEEPALIVE_COUNT = 4


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


def send_now(transport: Any) -> None:
    """Try to send what ``transport`` buffered now instead of on the next loop turn.

    Twisted writes only when the reactor next reports the socket writable; for a
    request/response ping-pong (WebSocket echo) that is an extra loop iteration per
    hop. An error is left for the reactor's own ``doWrite`` to find and report.
    """
    tcp = _tcp(transport)
    if tcp is None or not getattr(tcp, "connected", False) or tcp.disconnecting:
        return
    if tcp.dataBuffer or tcp._tempDataBuffer:
        with contextlib.suppress(Exception):
            tcp.doWrite()
