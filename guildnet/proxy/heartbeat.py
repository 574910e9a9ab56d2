"""Reading a workspace app's own heartbeat through the workspace's proxy route.

The idle culler asks code-server's ``/healthz`` and Jupyter's ``/api/status`` how long
ago they were used. It goes exactly where the proxy would (``routes.ClusterRoutes``
decides: Service, DNS, the API server's pod proxy or a port-forward), on a fresh
connection that it closes at once (``Connection: close``): code-server counts open
connections as activity, so a pooled heartbeat connection would keep it "alive". The
request never counts as proxy activity and carries nothing of the browser's.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from guildnet.proxy.engine import Resolved, Target
from guildnet.proxy.upstream import UpstreamConnection, UpstreamError, UpstreamPool

TIMEOUT: Final = 5.0
MAX_BODY: Final = 64 * 1024


class HeartbeatError(Exception):
    """The app did not answer its heartbeat usefully."""


class _Collect:
    """A ResponseSink that keeps a small body and fires ``done`` with (status, body)."""

    def __init__(self) -> None:
        self.done: Deferred[tuple[int, bytes]] = Deferred()
        self.status = 0
        self.parts: list[bytes] = []
        self.size = 0

    def upstream_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status

    def upstream_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size <= MAX_BODY:
            self.parts.append(data)

    def upstream_done(self) -> None:
        if not self.done.called:
            self.done.callback((self.status, b"".join(self.parts)))

    def upstream_failed(self, reason: Failure) -> None:
        if not self.done.called:
            self.done.errback(reason)

    def upstream_upgraded(self, rest: bytes) -> None:
        self.upstream_failed(Failure(HeartbeatError("the app switched protocols")))

    def pause_body(self) -> None:
        pass

    def resume_body(self) -> None:
        pass


def request_head(target: Target, path: str, token: str | None) -> bytes:
    """The GET for ``path`` (already under the app's base path) on ``target``'s route.

    A Jupyter token goes in ``Authorization: token`` on direct routes; through the API
    server's pod proxy, which takes ``Authorization`` for itself, in the query.
    """
    headers = [("Accept", "application/json"), ("Connection", "close")]
    if target.authorization is not None:
        if token:
            path += ("&" if "?" in path else "?") + "token=" + quote(token, safe="")
        credential = target.authorization()
        if credential:
            headers.append(("Authorization", credential.decode("latin-1")))
        host = f"{target.endpoint.host}:{target.endpoint.port}"
    else:
        if token:
            headers.append(("Authorization", f"token {token}"))
        host = "localhost"  # an app that checks Host (Jupyter) allows its own name
    lines = [f"GET {target.path_prefix}{path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def fetch(
    reactor: Any,
    pool: UpstreamPool,
    resolved: Resolved,
    path: str,
    token: str | None = None,
    timeout: float = TIMEOUT,
) -> tuple[int, bytes]:
    """GET ``path`` through ``resolved``'s route; (status, body up to 64 KiB)."""
    target = resolved.target
    conn: UpstreamConnection
    if resolved.connection is not None:
        conn = resolved.connection
    else:
        conn = await pool.connect(target.endpoint, timeout)
    sink = _Collect()
    timer = reactor.callLater(
        timeout, lambda: sink.upstream_failed(Failure(HeartbeatError("no answer in time")))
    )
    try:
        conn.start(sink, request_head(target, path, token), head_only=False, has_body=False)
        status, body = await sink.done
    except BaseException:
        conn.abort()
        raise
    finally:
        if timer.active():
            timer.cancel()
    if sink.size > MAX_BODY:
        raise HeartbeatError("the answer is too large")
    if status != 200:
        raise HeartbeatError(f"the app answered {status}")
    return status, body


__all__ = ["HeartbeatError", "UpstreamError", "fetch", "request_head"]
