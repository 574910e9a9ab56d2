"""TLS records for an upgraded (spliced) client connection, without the protocol stack.

Once a WebSocket is spliced the proxy only copies bytes, and Twisted's TLS protocol
(``TLSMemoryBIOProtocol``) becomes most of the per-message cost: each read and write
runs through its generic state handling, ends in an OpenSSL "want read" exception
(two per message, raised and caught in Python), and a write can be held for a reactor
turn to be merged with others. :class:`DirectTLS` takes the connection's own
pyOpenSSL ``Connection`` and TCP transport over from it and does only what a splice
needs: decrypt what arrives (asking OpenSSL how much is buffered rather than waiting
for the exception), encrypt what is written, and pass flow control and closing to
the TCP transport. The TLS session, its keys and its sequence numbers are the same
objects, so nothing changes on the wire.

It is used only when the takeover is safe (handshake done, nothing queued in the TLS
layer, the TLS protocol still owns the TCP transport); otherwise the splice keeps
Twisted's TLS protocol, which is always correct.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet import error as ierror
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from guildnet.http.tlstransport import RawTLS


class DirectTLS:
    """The client side of a splice: a TLS connection driven directly.

    Offers the transport calls :class:`~guildnet.proxy.splice.Splice` makes
    (``write``, producer registration, pausing, closing) and receives the TCP
    transport's ``dataReceived``/``connectionLost`` in place of the TLS protocol.
    """

    def __init__(
        self, tls: TLSMemoryBIOProtocol, deliver: Callable[[bytes], None], connection: Any
    ) -> None:
        self._tls = tls
        self._conn = connection
        self._raw = RawTLS(connection)
        self.transport: Any = tls.transport  # the TCP connection (``netutil`` walks this)
        self._deliver = deliver
        self._closing = False
        self._lost = False

    def read_pending(self) -> None:
        """Deliver what OpenSSL already holds (Twisted's TLS layer drains it on every
        read, so normally nothing): no byte is left behind at the switch."""
        if not self._lost and self._raw.more_to_read():
            self._read_available()

    # from the TCP transport ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._lost:
            return
        self._raw.feed(data)
        self._read_available()

    def _read_available(self) -> None:
        raw = self._raw
        chunks: list[bytes] = []
        peer_closed = False
        failure: Failure | None = None
        while True:
            try:
                chunks.append(raw.read())
            except SSL.WantReadError:
                break  # a partial record: the rest is on its way
            except SSL.ZeroReturnError:
                peer_closed = True  # close_notify
                break
            except SSL.Error as e:
                failure = Failure(ierror.ConnectionLost(f"TLS error: {e}"))
                break
            if not raw.more_to_read():
                break
        self._flush()  # TLS 1.3 post-handshake answers (key update) or alerts, if any
        if chunks:
            self._deliver(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if failure is not None:
            self.abortConnection()
        elif peer_closed:
            self.loseConnection()

    def connectionLost(self, reason: Failure = ierror.ConnectionDone) -> None:  # type: ignore[assignment]
        """Let the TLS protocol finish as it would have: factory bookkeeping, then the
        wrapped (HTTP) protocol's ``connectionLost``, which the splice has replaced."""
        self._lost = True
        tls = self._tls
        tls._lostTLSConnection = True
        tls.connectionLost(reason)

    # to the TCP transport --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing or self._lost or not data:
            return
        raw = self._raw
        try:
            sent = raw.write(data)
            if sent < len(data):  # partial writes are enabled: one record at a time
                view = memoryview(data)[sent:]
                while view:
                    view = view[raw.write(view) :]
        except SSL.Error:
            self.abortConnection()
            return
        self._flush()

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def _flush(self) -> None:
        out = self._raw.drain()
        if out:
            self.transport.write(out)

    def loseConnection(self) -> None:
        """close_notify, then close once what is queued has been sent."""
        if self._closing or self._lost:
            return
        self._closing = True
        with contextlib.suppress(SSL.Error):
            self._conn.shutdown()
        self._flush()
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self._closing = True
        if not self._lost:
            self.transport.abortConnection()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()


def take_over(transport: Any, deliver: Callable[[bytes], None]) -> DirectTLS | None:
    """Drive ``transport`` (a server-side TLS protocol) directly from now on, or None.

    ``transport`` may be the TLS protocol or plain ``ProtocolWrapper``s around it.
    ``deliver`` receives every decrypted byte. The wrapped protocol stops seeing data
    but still gets ``connectionLost``. Anything the TLS layer still held back (small
    writes being merged) is sent first, so ordering is kept; the caller then calls
    :meth:`DirectTLS.read_pending` once it has passed on what the HTTP layer buffered.
    """
    outer = transport
    tls: Any = transport
    while type(tls) is ProtocolWrapper:  # pass-through wrappers (connection tracking)
        tls = tls.transport
    if not isinstance(tls, TLSMemoryBIOProtocol):
        return None
    tcp = getattr(tls, "transport", None)
    conn = getattr(tls, "_tlsConnection", None)
    if (
        tcp is None
        or conn is None
        or getattr(tcp, "protocol", None) is not tls
        or not getattr(tls, "_handshakeDone", False)
        or getattr(tls, "_lostTLSConnection", True)
        or getattr(tls, "disconnecting", True)
        or getattr(tls, "_appSendBuffer", None)
        or not RawTLS.usable(conn)
    ):
        return None
    if isinstance(tls, BufferingTLSTransport):
        flush = getattr(getattr(tls, "_aggregator", None), "flush", None)
        if flush is None:
            return None
        flush()
    outer.unregisterProducer()
    direct = DirectTLS(cast(TLSMemoryBIOProtocol, tls), deliver, conn)
    tcp.protocol = direct
    return direct


__all__ = ["DirectTLS", "take_over"]
