"""The ``rethinkdb`` driver's Twisted loop, with the bugs that make it unusable fixed.

GuildNet talks to RethinkDB only through ``connect`` here. The stock Twisted module
(``rethinkdb.twisted_net``, pinned to ``DRIVER_VERSION`` because this subclasses its
internals) has six bugs measured against a real 2.4.4 server; each is fixed below and each
has a test against the real server (tests/integration/test_rdb_driver.py):

A. ``ssl=`` is ignored: the handshake goes out in plaintext. Here the endpoint is wrapped in
   TLS, verifying the server against the configured CA (or the system roots).
B. When the server dies, pending ``next()``/``fetch_next()`` Deferreds never fire and
   ``reconnect()`` waits forever for a NOREPLY_WAIT on the dead socket. Here connection loss
   fails every query and cursor at once, and ``close`` only waits for replies on an open
   connection.
C. A change arriving after a ``fetch_next(wait=N)`` timeout raises ``AlreadyCalledError``,
   which drops the connection and silently hangs every other feed on it. Here timed-out
   waiters are removed (and timers cancelled, so nothing is left scheduled).
D. IPv6 literals break the endpoint string (``tcp:::1:28015``). Here a ``HostnameEndpoint``.
G. ``timeout=0.5`` becomes ``timeout=0`` (``%d``) and every connect fails. Here floats work,
   and the whole connect (DNS included) is bounded by the timeout.

Every function runs on the reactor thread; the driver uses the global reactor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from rethinkdb import RethinkDB
from rethinkdb.errors import (
    ReqlAuthError,
    ReqlDriverError,
    ReqlTimeoutError,
)
from rethinkdb.net import Connection as ConnectionBase
from rethinkdb.net import Cursor, Response, maybe_profile
from rethinkdb.twisted_net import net_twisted as nt
from twisted.internet import defer
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: The driver release this module was written against (it subclasses private classes).
DRIVER_VERSION: Final = "2.4.10.post1"
DEFAULT_PORT: Final = 28015

#: Builds ReQL terms; a term runs on any connection (``term.run(conn)``).
r: Any = RethinkDB()


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@attrs.frozen
class ConnectOptions:
    """Where and how to connect. ``password`` never appears in ``repr``."""

    host: str
    port: int = DEFAULT_PORT
    user: str = "admin"
    password: str = attrs.field(default="", repr=False)
    timeout: float = 3.0
    tls: bool = False
    ca_file: Path | None = None  # None with tls=True: the system's trust roots
    db: str | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# -- the protocol: B (connection loss), handshake timeout without double errback -----------


class _Protocol(nt.DatabaseProtocol):  # type: ignore[misc]
    def __init__(self, factory: Any) -> None:
        super().__init__(factory)
        self._lost_waiters: list[Deferred[None]] = []
        self.gone = False

    def when_lost(self) -> Deferred[None]:
        """Fires once the socket is really closed."""
        if self.gone:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    def connectionLost(self, reason: Failure = Failure(ReqlDriverError("lost"))) -> None:  # noqa: B008
        self._open = False
        self.gone = True
        waiters, self._lost_waiters = self._lost_waiters, []
        for w in waiters:
            w.callback(None)
        err = ReqlDriverError(f"connection lost: {reason.getErrorMessage()}")
        if not self.wait_for_handshake.called:
            timer = getattr(self, "_timeout_defer", None)
            if timer is not None and timer.active():
                timer.cancel()
            self.wait_for_handshake.errback(err)
            return
        lost = getattr(self.factory, "on_lost", None)
        if lost is not None:
            lost(self, err)

    def _handleHandshakeTimeout(self) -> None:
        self._open = False
        if not self.wait_for_handshake.called:
            self.wait_for_handshake.errback(ReqlTimeoutError())
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        # The stock version re-raises into the reactor after dropping the connection.
        try:
            if self._open:
                self._handlers[self.state](data)
        except Exception:
            log.failure("rethinkdb: bad data from the server; dropping the connection")
            self.transport.loseConnection()


class _Factory(nt.DatabaseProtoFactory):  # type: ignore[misc]
    def __init__(self, timeout: float, response_handler: Any, handshake: Any, on_lost: Any) -> None:
        super().__init__(timeout, response_handler, handshake)
        self.on_lost = on_lost

    def buildProtocol(self, addr: Any) -> _Protocol:
        return _Protocol(self)


# -- cursors: C (stale waiters), timers that never outlive their wait ----------------------


class FixedCursor(nt.TwistedCursor):  # type: ignore[misc]
    def _extend(self, res_buf: Any) -> None:
        # A waiter already fired by a timeout must not be called again (C).
        self.waiting[:] = [d for d in self.waiting if not d.called]
        nt.TwistedCursor._extend(self, res_buf)

    @inlineCallbacks
    def fetch_next(self, wait: bool | float = True) -> Any:
        """True when an item (or an error) is ready; ReqlTimeoutError after ``wait`` s."""
        timeout = Cursor._wait_to_timeout(wait)
        reactor = _reactor()
        deadline = None if timeout is None else reactor.seconds() + timeout
        while len(self.items) == 0 and self.error is None:
            self._maybe_fetch_batch()
            waiter: Deferred[None] = Deferred()
            self.waiting.append(waiter)
            timer = None
            if deadline is not None:
                left = max(0.0, deadline - reactor.seconds())
                timer = reactor.callLater(left, _time_out, waiter, self.waiting)
            try:
                yield waiter
            finally:
                if timer is not None and timer.active():
                    timer.cancel()
        return not self._is_empty() or self._has_error()

    def _get_next(self, timeout: float | None) -> Deferred[Any]:
        if len(self.items) == 0 and self.error is not None:
            return defer.fail(self.error)
        item: Deferred[Any] = self.items.get()
        if timeout is not None:
            timer = _reactor().callLater(timeout, item.cancel)

            def settle(result: Any) -> Any:
                if timer.active():
                    timer.cancel()
                if isinstance(result, Failure) and result.check(defer.CancelledError):
                    raise ReqlTimeoutError()
                return result

            item.addBoth(settle)
        self._maybe_fetch_batch()
        return item


def _time_out(waiter: Deferred[None], waiting: list[Deferred[None]]) -> None:
    if waiter in waiting:
        waiting.remove(waiter)
    if not waiter.called:
        waiter.errback(ReqlTimeoutError())


# -- the connection: A (TLS), D (IPv6), G (float timeouts), B (close/reconnect) ------------


class FixedInstance(nt.ConnectionInstance):  # type: ignore[misc]
    @inlineCallbacks
    def connect(self, timeout: float) -> Any:
        p = self._parent
        factory = _Factory(timeout, self._handleResponse, p.handshake, self._lost)
        try:
            proto = yield self._connectTimeout(factory, timeout)
        except ReqlTimeoutError:
            raise ReqlDriverError(
                f"Could not connect to {p.host}:{p.port}. Error: Operation timed out."
            ) from None
        except Exception as e:
            raise ReqlDriverError(f"Could not connect to {p.host}:{p.port}. Error: {e}") from None
        try:
            yield proto.wait_for_handshake
        except Exception as e:
            timer = getattr(proto, "_timeout_defer", None)
            if timer is not None and timer.active():
                timer.cancel()
            if not proto.gone:
                proto.transport.loseConnection()
                yield proto.when_lost()
            if isinstance(e, ReqlAuthError):
                raise
            if isinstance(e, ReqlTimeoutError):
                raise ReqlTimeoutError(p.host, p.port) from None
            raise ReqlDriverError(
                f"Connection interrupted during handshake with {p.host}:{p.port}. Error: {e}"
            ) from None
        self._connection = proto
        return p

    @inlineCallbacks
    def _connectTimeout(self, factory: _Factory, timeout: float) -> Any:
        p = self._parent
        reactor = _reactor()
        endpoint: Any = HostnameEndpoint(reactor, p.host, p.port, timeout=timeout)
        if p.ssl:
            endpoint = wrapClientTLS(_tls_options(p.host, p.ssl), endpoint)
        d = endpoint.connect(factory)
        # HostnameEndpoint has no name-resolution timeout: bound the whole attempt.
        d.addTimeout(timeout, reactor)
        try:
            proto = yield d
        except (TxTimeoutError, defer.TimeoutError):
            raise ReqlTimeoutError() from None
        return proto

    def _lost(self, proto: Any, err: ReqlDriverError) -> None:
        if self._connection is proto and not self._closing:
            self.close(exception=err)

    def _handleResponse(self, token: int, data: bytes) -> Any:
        # As stock, but sequences get a FixedCursor.
        if token not in self._cursor_cache and token in self._user_queries:
            query, d = self._user_queries[token]
            res = Response(token, data, self._parent._get_json_decoder(query))
            if res.type in (nt.pResponse.SUCCESS_SEQUENCE, nt.pResponse.SUCCESS_PARTIAL):
                del self._user_queries[token]
                return d.callback(maybe_profile(FixedCursor(self, query, res), res))
        return nt.ConnectionInstance._handleResponse(self, token, data)

    def is_open(self) -> bool:
        return self._connection is not None and bool(self._connection._open)

    def close(
        self, noreply_wait: bool = False, token: Any = None, exception: Any = None
    ) -> Deferred[Any]:
        # Waiting for NOREPLY_WAIT on a dead connection never ends (B).
        if self._connection is None:
            self._closing = True
            return defer.succeed(None)
        return nt.ConnectionInstance.close(self, noreply_wait and self.is_open(), token, exception)  # type: ignore[no-any-return]


class FixedConnection(nt.Connection):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ConnectionBase.__init__(self, FixedInstance, *args, **kwargs)


def _tls_options(host: str, ssl: Mapping[str, Any]) -> Any:
    ca_file = ssl.get("ca_certs")
    if ca_file:
        ca = Certificate.loadPEM(Path(ca_file).read_bytes())
        return optionsForClientTLS(host, trustRoot=ca)
    return optionsForClientTLS(host)


def connect(opts: ConnectOptions) -> Deferred[Any]:
    """A connected ``FixedConnection`` (errbacks with a ReqlDriverError subclass)."""
    rdb = RethinkDB()
    rdb.connection_type = FixedConnection
    ssl: dict[str, Any] = {}
    if opts.tls:
        ssl = {"ca_certs": str(opts.ca_file)} if opts.ca_file else {"system_roots": True}
    try:
        return rdb.connect(  # type: ignore[no-any-return]
            host=opts.host,
            port=opts.port,
            user=opts.user,
            password=opts.password or None,
            timeout=opts.timeout,
            ssl=ssl,
            db=opts.db,
        )
    except Exception as e:  # argument errors are raised synchronously by the driver
        return defer.fail(e)


CLOSE_GRACE: Final = 2.0


def close(conn: Any) -> Deferred[None]:
    """Close without waiting for noreply writes; fires when the socket is closed.

    Never hangs: a transport that has not closed after ``CLOSE_GRACE`` s is aborted.
    """
    if conn is None:
        return defer.succeed(None)
    inst = getattr(conn, "_instance", None)
    proto = getattr(inst, "_connection", None)
    try:
        d = conn.close(noreply_wait=False)
    except Exception:
        d = defer.succeed(None)
    d.addErrback(lambda _: None)
    if not isinstance(proto, _Protocol) or proto.gone:
        return d  # type: ignore[no-any-return]
    gone = proto.when_lost()
    timer = _reactor().callLater(CLOSE_GRACE, proto.transport.abortConnection)

    def done(_: object) -> None:
        if timer.active():
            timer.cancel()

    return d.addCallback(lambda _: gone).addBoth(done)  # type: ignore[no-any-return]
