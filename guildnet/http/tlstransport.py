"""The HTTPS listener's TLS layer: Twisted's, with fewer copies, calls and exceptions.

Twisted's ``TLSMemoryBIOProtocol`` is correct but written for the general case:
every write is cut into 16 KiB slices (a copy each), every record's ciphertext is
read out of OpenSSL and handed to the socket separately (a system call each with
write-through), and every read ends in an OpenSSL "want read" exception, raised and
caught in Python, as does every check for ciphertext to send. For a proxy those are
most of the per-request and per-chunk cost. :class:`LeanTLSTransport` keeps all of
Twisted's state handling (handshake, buffering before it, shutdown, errors) and only
changes the three hot loops: write all records then send their ciphertext in one
piece, and ask OpenSSL how much is buffered instead of waiting for the exception.

Nothing here is new cryptography or protocol: the same pyOpenSSL ``Connection`` does
all the TLS work.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

try:  # OpenSSL itself, through the cffi binding pyOpenSSL is built on
    from OpenSSL.SSL import _ffi, _lib

    _bio_pending = _lib.BIO_get_mem_data
    _NULL = _ffi.NULL
    _SSL_read = _lib.SSL_read
    _SSL_write = _lib.SSL_write
    _SSL_pending = _lib.SSL_pending
    _BIO_read = _lib.BIO_read
    _BIO_write = _lib.BIO_write
    _from_buffer = _ffi.from_buffer
    _buffer = _ffi.buffer
    _new = _ffi.new_allocator(should_clear_after_alloc=False)
except (ImportError, AttributeError):  # pragma: no cover - another pyOpenSSL layout
    _bio_pending = None
    _NULL = None

#: Plaintext asked for per ``recv``: a TLS record carries at most 16 KiB, and the
#: buffer pyOpenSSL allocates for each call stays below malloc's mmap threshold.
READ_SIZE = 2**15


def mem_pending(bio: Any) -> int:
    """Bytes waiting in an OpenSSL memory BIO."""
    return int(_bio_pending(bio, _NULL))


def available() -> bool:
    """Whether this pyOpenSSL exposes what the lean paths need."""
    return _bio_pending is not None


_read_buffer: Any = None


class RawTLS:
    """The hot calls of an established pyOpenSSL ``Connection``, made straight to
    OpenSSL through the same cffi binding.

    pyOpenSSL wraps each call in Python (a buffer allocated per read, error
    checks meant for the handshake's callbacks); after the handshake only the
    calls remain. Errors go through the ``Connection``'s own error translation,
    so callers see pyOpenSSL's exceptions exactly as before.
    """

    __slots__ = ("_conn", "_from", "_into", "_ssl")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._ssl = conn._ssl
        self._into = conn._into_ssl
        self._from = conn._from_ssl
        global _read_buffer
        if _read_buffer is None:
            # One buffer for every connection: all calls happen on the reactor thread
            # and each read is copied out at once.
            _read_buffer = _new("char[]", READ_SIZE)

    @staticmethod
    def usable(conn: Any) -> bool:
        return available() and all(
            hasattr(conn, a) for a in ("_ssl", "_into_ssl", "_from_ssl", "_raise_ssl_error")
        )

    def feed(self, data: bytes) -> None:
        """Ciphertext from the network into OpenSSL (a memory BIO takes it all)."""
        if data:
            _BIO_write(self._into, _from_buffer(data), len(data))

    def read(self) -> bytes:
        """One record's plaintext; pyOpenSSL's exceptions (WantReadError, ...) otherwise."""
        buf = _read_buffer
        n = _SSL_read(self._ssl, buf, READ_SIZE)
        if n <= 0:
            self._conn._raise_ssl_error(self._ssl, n)
            return b""  # pragma: no cover - _raise_ssl_error raises for n <= 0
        return _buffer(buf, n)[:]

    def more_to_read(self) -> bool:
        return bool(_SSL_pending(self._ssl) or _bio_pending(self._into, _NULL))

    def write(self, data: Any) -> int:
        """Encrypt up to one record of ``data``; how much was taken."""
        n = _SSL_write(self._ssl, _from_buffer(data), len(data))
        if n <= 0:
            self._conn._raise_ssl_error(self._ssl, n)
        return int(n)

    def drain(self) -> bytes:
        """All ciphertext waiting to be sent, or b""."""
        size = _bio_pending(self._from, _NULL)
        if size <= 0:
            return b""
        # Small amounts (an event or a few) through the shared buffer: no allocation.
        buf = _read_buffer if size <= READ_SIZE else _new("char[]", size)
        n = _BIO_read(self._from, buf, size)
        return _buffer(buf, n)[:] if n > 0 else b""


class LeanTLSTransport(BufferingTLSTransport):
    """A server TLS transport with cheaper reads and writes (see the module doc)."""

    _host: Any = None

    def getHost(self) -> Any:
        # twisted.web asks on every request; the TCP transport makes a system call
        # each time for an address that cannot change.
        host = self._host
        if host is None:
            host = self._host = super().getHost()
        return host

    _raw: RawTLS | None = None

    def _established(self) -> RawTLS | None:
        """Raw calls for the connection once its handshake is done (before that,
        Twisted's and pyOpenSSL's paths run the handshake and its callbacks)."""
        raw = self._raw
        conn = self._tlsConnection
        if raw is not None and raw._conn is conn:
            return raw
        if conn is None or not self._handshakeDone:
            return None
        raw = self._raw = RawTLS(conn)
        return raw

    def write_now(self, data: bytes) -> None:
        """Encrypt ``data`` now, behind what the small-write aggregator holds, and hand
        the ciphertext to ``send`` (the socket's immediate send, ``send_at_once``) or to
        the TCP transport.

        For a writer that already gathers a whole reactor turn's output into one write
        per connection (a changefeed fanned out to many streams): the aggregator would
        only add a timer per connection and a turn of delay. The common case (handshake
        done, one record, nothing held back) is a straight line of OpenSSL calls.
        """
        aggregator = self._aggregator
        held = getattr(aggregator, "_buffer", None)
        if held is None:
            return  # the connection is gone (Twisted swapped in its null aggregator)
        if held:
            aggregator.flush()
        raw = self._raw
        if (
            raw is None
            or raw._conn is not self._tlsConnection
            or self._lostTLSConnection
            or self.disconnecting
            or self._appSendBuffer
            or len(data) > 16384
        ):
            TLSMemoryBIOProtocol.write(self, data)
            return
        try:
            raw.write(data)  # all of it: one record's worth at most
        except Error:
            TLSMemoryBIOProtocol.write(self, data)  # Twisted's path buffers or fails it
            return
        out = raw.drain()
        if out:
            send = self._send_at_once
            if send is not None:
                send(out)
            elif self.transport is not None:
                self.transport.write(out)

    #: Set by the SSE layer: the socket's immediate send (``netutil.send_at_once``).
    _send_at_once: Any = None

    def _write(self, data: bytes) -> None:
        if self._lostTLSConnection:
            return
        raw = self._established()
        if raw is None:
            super()._write(data)
            return
        total = len(data)
        done = 0
        view = memoryview(data) if total > 16384 else data
        while done < total:
            try:
                # Partial writes are on: each call takes one record's worth.
                done += raw.write(view[done:] if done else view)
            except WantReadError:
                self._bufferedWrite(bytes(view[done:]))
                break
            except Error:
                # As Twisted does: the failure reaches the application's connectionLost.
                self._tlsShutdownFinished(Failure())
                return
        self._flushSendBIO()

    def _flushSendBIO(self) -> None:
        conn = self._tlsConnection
        if conn is None:
            return
        raw = self._established()
        if raw is not None:
            out = raw.drain()
        else:
            size = mem_pending(conn._from_ssl)
            out = conn.bio_read(size) if size > 0 else b""
        transport = self.transport
        if out and transport is not None:
            transport.write(out)

    def _flushReceiveBIO(self) -> None:
        raw = self._established()
        if raw is None:
            super()._flushReceiveBIO()
            return
        conn = self._tlsConnection
        while not self._lostTLSConnection:
            try:
                data = raw.read()
            except WantReadError:
                break
            except ZeroReturnError:
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except Error:
                self._tlsShutdownFinished(Failure())
            else:
                if not self._aborted:
                    ProtocolWrapper.dataReceived(self, data)
                if self._tlsConnection is conn and not raw.more_to_read():
                    break  # all read: skip the call that would only say "want read"
        self._flushSendBIO()


class LeanTLSFactory(TLSMemoryBIOFactory):
    """``TLSMemoryBIOFactory`` for servers, making :class:`LeanTLSTransport`s when the
    installed pyOpenSSL allows (else Twisted's own transport)."""

    def __init__(
        self, contextFactory: Any, wrappedFactory: Any, clock: IReactorTime | None = None
    ) -> None:
        super().__init__(contextFactory, False, wrappedFactory, clock)
        if available():
            self.protocol = LeanTLSTransport


__all__ = ["LeanTLSFactory", "LeanTLSTransport", "RawTLS", "available", "mem_pending"]
