"""A small HTTP/1.1 client for the proxy: heads parsed by httptools, bodies streamed.

Twisted's ``Agent`` costs a Deferred chain, a ``Response`` object and a body
protocol per request and cannot hand a connection over to a WebSocket splice.
This client writes the request head as bytes the engine built, feeds response
bytes to httptools (a C parser) and passes body pieces straight to a sink, so
the proxy's per-request cost is one dict of headers and a few calls.

Connections are kept in a pool per :class:`Endpoint` (host, port, TLS) and
closed when idle for ``idle_timeout``. Flow control runs both ways: the sink
pauses this connection's reading when the client is slow, and a full upstream
write buffer pauses the request-body source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
import httptools
from OpenSSL import SSL
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from guildnet.proxy.netutil import (
    is_ip,
    mark_direct_dispatch,
    set_keepalive,
    set_nodelay,
    write_through,
)

log = Logger()

NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamError(Exception):
    """The upstream broke the exchange (closed early, sent garbage)."""


@attrs.frozen
class ClientTLS:
    """How to speak TLS to an upstream; part of the pool key, so it is hashable.

    ``verify=False`` is for workspace servers, which run with self-signed
    certificates the Host App cannot know; the target itself was chosen by the
    Host App from cluster state, never by the client.
    """

    server_name: str
    verify: bool = False
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def creator(self) -> IOpenSSLClientConnectionCreator:
        client_cert = None
        if self.cert_pem and self.key_pem:
            client_cert = PrivateCertificate.loadPEM(self.cert_pem + b"\n" + self.key_pem)
        if self.verify:
            trust = Certificate.loadPEM(self.ca_pem) if self.ca_pem else None
            return optionsForClientTLS(
                self.server_name,
                trustRoot=trust,  # type: ignore[arg-type]
                clientCertificate=client_cert,
            )
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        if client_cert is not None:
            ctx.use_certificate(client_cert.original)
            ctx.use_privatekey(client_cert.privateKey.original)
        name = self.server_name
        sni = None if not name or is_ip(name) else name.encode("idna")
        return _UnverifiedCreator(ctx, sni)


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedCreator:
    def __init__(self, ctx: SSL.Context, sni: bytes | None) -> None:
        self._ctx = ctx
        self._sni = sni

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        conn = SSL.Connection(self._ctx, None)
        conn.set_app_data(tlsProtocol)
        if self._sni:
            conn.set_tlsext_host_name(self._sni)
        conn.set_connect_state()
        return conn


class TLSKey(Protocol):
    """TLS settings usable as (part of) a pool key: hashable, and make a creator."""

    def __hash__(self) -> int: ...

    def creator(self) -> Any: ...


@attrs.frozen
class Endpoint:
    """Where to connect: the pool key. ``host`` should be an address already checked."""

    host: str
    port: int
    tls: TLSKey | None = None

    def __str__(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


class ResponseSink(Protocol):
    """What an exchange receives from its upstream connection (reactor thread only)."""

    def upstream_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None: ...

    def upstream_body(self, data: bytes) -> None: ...

    def upstream_done(self) -> None: ...

    def upstream_failed(self, reason: Failure) -> None: ...

    def upstream_upgraded(self, rest: bytes) -> None: ...

    def pause_body(self) -> None: ...

    def resume_body(self) -> None: ...


class RawSink(Protocol):
    """Receives a connection's bytes after an upgrade (a splice)."""

    def raw_data(self, data: bytes) -> None: ...

    def raw_lost(self, reason: Failure) -> None: ...

    def raw_pause(self) -> None: ...

    def raw_resume(self) -> None: ...


class UpstreamConnection(TwistedProtocol):
    """One upstream HTTP/1.1 connection running one exchange at a time."""

    def __init__(self, pool: UpstreamPool, endpoint: Endpoint) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.sink: ResponseSink | None = None
        self.raw: RawSink | None = None
        self.exchanges = 0
        self.last_active = 0.0
        self.lost = False
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._head_only = False
        self._head_seen = False
        self._complete = False
        self._request_sent = True
        self._keep_alive = True
        self._until_close = False
        self._got_bytes = False
        self._paused = False

    # life cycle -------------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None
        wrapper = getattr(self.transport, "protocol", None)
        if getattr(wrapper, "_wrappedProtocol", None) is self:
            # The endpoint's wrapper only forwards calls: take the TCP connection's
            # callbacks directly (one Python call less per read, a splice's hot path).
            self.transport.protocol = self  # type: ignore[attr-defined]
        set_nodelay(self.transport)
        set_keepalive(self.transport)
        write_through(self.transport)
        mark_direct_dispatch(self.transport)
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self.last_active = self.pool.now()

    def connectionLost(self, reason: Failure = ierror.ConnectionDone) -> None:  # type: ignore[assignment]
        self.lost = True
        self.pool._forget(self)
        if self.raw is not None:
            raw, self.raw = self.raw, None
            raw.raw_lost(reason)
            return
        sink, self.sink = self.sink, None
        if sink is None:
            return
        if self._head_seen and self._until_close and not self._complete:
            # An HTTP/1.0-style body ends with the connection.
            sink.upstream_done()
            return
        sink.upstream_failed(reason)

    # exchange ----------------------------------------------------------------

    def start(self, sink: ResponseSink, head: bytes, *, head_only: bool, has_body: bool) -> None:
        """Send a request head; the response goes to ``sink``."""
        assert self.transport is not None
        self.sink = sink
        self.exchanges += 1
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._status = 0
        self._head_only = head_only
        self._head_seen = False
        self._complete = False
        self._request_sent = not has_body
        self._keep_alive = True
        self._until_close = False
        self._got_bytes = False
        self.last_active = self.pool.now()
        self.resume_reading()  # a slow client of the previous exchange may have paused us
        self.transport.write(head)

    def write_body(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    def end_body(self, trailer: bytes = b"") -> None:
        """The request body is complete (``trailer`` ends a chunked body)."""
        self._request_sent = True
        if trailer and self.transport is not None and not self.lost:
            self.transport.write(trailer)

    def abort(self) -> None:
        """Drop the connection at once (the client went away mid-exchange)."""
        self.sink = None
        self.raw = None
        if self.transport is not None and not self.lost:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.loseConnection()

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self.lost:
            self._paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self.lost:
            self._paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def become_raw(self, raw: RawSink) -> None:
        """After a 101: every further byte goes to ``raw``; the pool forgets us."""
        self.sink = None
        self.raw = raw
        self.pool._forget(self)

    # IPushProducer towards our transport: the request body is the producer.

    def pauseProducing(self) -> None:
        if self.raw is not None:
            self.raw.raw_pause()
        elif self.sink is not None:
            self.sink.pause_body()

    def resumeProducing(self) -> None:
        if self.raw is not None:
            self.raw.raw_resume()
        elif self.sink is not None:
            self.sink.resume_body()

    def stopProducing(self) -> None:
        pass

    # parsing ------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw.raw_data(data)
            return
        parser = self._parser
        if parser is None or self.sink is None:
            # Bytes nobody asked for (on an idle connection): it cannot be reused.
            self.close()
            return
        self._got_bytes = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = int(e.args[0]) if e.args else len(data)
            sink = self.sink
            if sink is not None and self._status == 101:
                sink.upstream_upgraded(data[offset:])
                return
            self._complete_now()
            return
        except httptools.HttpParserCallbackError:
            if self._head_only and self._head_seen:
                self._keep_alive = False  # unknown bytes may follow; do not reuse
                self._complete_now()
                return
            self._protocol_error("callback failed")
            return
        except httptools.HttpParserError as e:
            self._protocol_error(str(e))
            return
        if self._complete:
            self._complete_now()

    def _protocol_error(self, what: str) -> None:
        sink, self.sink = self.sink, None
        self._parser = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        if sink is not None:
            sink.upstream_failed(Failure(UpstreamError(f"bad response from upstream: {what}")))

    def _complete_now(self) -> None:
        self._complete = True
        sink, self.sink = self.sink, None
        self._parser = None
        if sink is not None:
            sink.upstream_done()
        self._after_complete()

    def _after_complete(self) -> None:
        if self.lost or self.raw is not None:
            return
        if self._keep_alive and self._request_sent and not self._until_close:
            self.pool._release(self)
        else:
            # Not reusable, or the request body was cut short by an early answer.
            self.close()

    # httptools callbacks -------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._headers = []  # interim response (100 Continue): not forwarded
            return
        self._status = status
        self._head_seen = True
        version = parser.get_http_version()
        connection = b""
        framed = False
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"connection":
                connection += b"," + value.lower()
            elif lname in (b"content-length", b"transfer-encoding"):
                framed = True
        if version == "1.1":
            self._keep_alive = b"close" not in connection
        else:
            self._keep_alive = b"keep-alive" in connection
        no_body = self._head_only or status in NO_BODY_STATUSES or status == 101
        self._until_close = not framed and not no_body
        sink = self.sink
        assert sink is not None
        reason = b""
        sink.upstream_head(status, reason, self._headers)
        if self._head_only:
            raise _HeadDone()

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.upstream_body(body)

    def on_message_complete(self) -> None:
        if self._status == 0:
            return  # end of an interim 1xx message
        self._complete = True


class _HeadDone(Exception):
    """Raised inside httptools to stop after the head of a HEAD response."""


class _ConnFactory(Factory):
    def __init__(self, pool: UpstreamPool, endpoint: Endpoint) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.noisy = False

    def buildProtocol(self, addr: Any) -> UpstreamConnection:
        conn = UpstreamConnection(self.pool, self.endpoint)
        self.pool._connections.add(conn)
        return conn


class UpstreamPool:
    """Keep-alive connections per :class:`Endpoint`, closed after ``idle_timeout``."""

    def __init__(
        self,
        reactor: Any,
        *,
        idle_timeout: float = 60.0,
        max_idle_per_endpoint: int = 128,
        endpoint_factory: Callable[[Endpoint, float], IStreamClientEndpoint] | None = None,
    ) -> None:
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle_per_endpoint
        self._idle: dict[Endpoint, list[UpstreamConnection]] = {}
        self._connections: set[UpstreamConnection] = set()
        self._creators: dict[TLSKey, Any] = {}
        self._endpoint_factory = endpoint_factory or self._endpoint
        self._closed = False
        self.connects = 0
        self.reuses = 0

    def now(self) -> float:
        return float(self.reactor.seconds())

    def _endpoint(self, ep: Endpoint, timeout: float) -> IStreamClientEndpoint:
        base: IStreamClientEndpoint
        if is_ip(ep.host):
            cls = TCP6ClientEndpoint if ":" in ep.host else TCP4ClientEndpoint
            base = cls(self.reactor, ep.host, ep.port, timeout=timeout)
        else:
            base = HostnameEndpoint(self.reactor, ep.host, ep.port, timeout=timeout)
        if ep.tls is None:
            return base
        creator = self._creators.get(ep.tls)
        if creator is None:
            creator = self._creators[ep.tls] = ep.tls.creator()
        return wrapClientTLS(creator, base)

    def idle_count(self, ep: Endpoint | None = None) -> int:
        if ep is not None:
            return len(self._idle.get(ep, ()))
        return sum(len(v) for v in self._idle.values())

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def take_idle(self, ep: Endpoint) -> UpstreamConnection | None:
        """A pooled connection for ``ep``, or None (synchronous fast path)."""
        idle = self._idle.get(ep)
        while idle:
            conn = idle.pop()
            if not conn.lost:
                self.reuses += 1
                return conn
        return None

    def connect(self, ep: Endpoint, timeout: float) -> Deferred[UpstreamConnection]:
        """A new connection to ``ep``; errbacks on refusal or after ``timeout`` seconds."""
        if self._closed:
            return fail(UpstreamError("the proxy is shutting down"))
        self.connects += 1
        factory = _ConnFactory(self, ep)
        d = self._endpoint_factory(ep, timeout).connect(factory)
        # For TLS endpoints the protocol handed back is ours (wrapped); wait for it.
        return d.addCallback(_unwrap)

    def acquire(self, ep: Endpoint, timeout: float) -> Deferred[UpstreamConnection]:
        conn = self.take_idle(ep)
        if conn is not None:
            return succeed(conn)
        return self.connect(ep, timeout)

    def _release(self, conn: UpstreamConnection) -> None:
        if self._closed or conn.lost:
            conn.close()
            return
        idle = self._idle.setdefault(conn.endpoint, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.last_active = self.now()
        conn.resume_reading()  # notice the upstream closing it while idle
        idle.append(conn)

    def _forget(self, conn: UpstreamConnection) -> None:
        self._connections.discard(conn)
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.endpoint]

    def sweep(self) -> None:
        """Close connections idle in the pool for longer than ``idle_timeout``."""
        cutoff = self.now() - self.idle_timeout
        for ep, idle in list(self._idle.items()):
            stale = [c for c in idle if c.last_active <= cutoff]
            for conn in stale:
                idle.remove(conn)
                conn.close()
            if not idle:
                self._idle.pop(ep, None)

    def close(self) -> Deferred[None]:
        """Abort every connection (idle and active); fires when all are gone."""
        self._closed = True
        self._idle.clear()
        waits: list[Deferred[Any]] = []
        for conn in list(self._connections):
            if conn.lost or conn.transport is None:
                continue
            d: Deferred[None] = Deferred()
            waits.append(d)
            _notify_lost(conn, d)
            conn.transport.abortConnection()  # type: ignore[attr-defined]
        return DeferredList(waits).addCallback(lambda _: None)


def _notify_lost(conn: UpstreamConnection, d: Deferred[None]) -> None:
    original = conn.connectionLost

    def lost(reason: Failure = ierror.ConnectionDone) -> None:  # type: ignore[assignment]
        try:
            original(reason)
        finally:
            if not d.called:
                d.callback(None)

    conn.connectionLost = lost  # type: ignore[method-assign]


def _unwrap(proto: Any) -> UpstreamConnection:
    """The UpstreamConnection inside a TLS wrapper (or the protocol itself)."""
    inner = getattr(proto, "wrappedProtocol", proto)
    assert isinstance(inner, UpstreamConnection)
    return inner


def describe_failure(reason: Failure) -> str:
    """A short, address-free description of why a dial or exchange failed."""
    e = reason.value
    if isinstance(e, ierror.ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ierror.TimeoutError | ierror.ConnectingCancelledError):
        return "connect timed out"
    if isinstance(e, ierror.DNSLookupError):
        return "name does not resolve"
    if isinstance(e, ierror.ConnectionDone | ierror.ConnectionLost):
        return "connection closed by upstream"
    if isinstance(e, SSL.Error):
        return "TLS handshake failed"
    if isinstance(e, UpstreamError):
        return str(e)
    return f"{type(e).__name__}: {str(e)[:200]}"


def is_timeout(reason: Failure) -> bool:
    return reason.check(ierror.TimeoutError, ierror.ConnectingCancelledError) is not None


__all__ = [
    "ClientTLS",
    "Endpoint",
    "RawSink",
    "ResponseSink",
    "UpstreamConnection",
    "UpstreamError",
    "UpstreamPool",
    "describe_failure",
    "is_timeout",
]
