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
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure

try:  # OpenSSL's own count of bytes in a memory BIO, through pyOpenSSL's binding
    from OpenSSL.SSL import _ffi, _lib

    _bio_pending = _lib.BIO_get_mem_data
    _NULL = _ffi.NULL
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

    def _write(self, data: bytes) -> None:
        if self._lostTLSConnection:
            return
        conn = self._tlsConnection
        total = len(data)
        done = 0
        view = memoryview(data) if total > 16384 else data
        while done < total:
            try:
                # Partial writes are on: each call takes one record's worth.
                done += conn.send(view[done:] if done else view)
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
        size = mem_pending(conn._from_ssl)
        transport = self.transport
        if size > 0 and transport is not None:
            transport.write(conn.bio_read(size))

    def _flushReceiveBIO(self) -> None:
        conn = self._tlsConnection
        while not self._lostTLSConnection:
            try:
                data = conn.recv(READ_SIZE)
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
                if (
                    self._handshakeDone
                    and self._tlsConnection is conn
                    and not conn.pending()
                    and not mem_pending(conn._into_ssl)
                ):
                    break  # all read: skip the recv that would only raise WantReadError
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


__all__ = ["LeanTLSFactory", "LeanTLSTransport", "available", "mem_pending"]
