"""A raw bidirectional byte splice between the client and an upstream connection.

Used after a successful ``Upgrade`` (WebSocket): from then on the proxy does not
parse anything, it copies bytes both ways with flow control (a full write
buffer on one side pauses reading on the other). There is no deadline: only an
idle timeout (no bytes in either direction for ``idle_timeout`` seconds,
checked by the engine's sweeper) and TCP keepalive, so an IDE session
survives for hours. Closing either side closes the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import error as ierror
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from guildnet.proxy.activity import PING_PONG, Activity, is_keepalive
from guildnet.proxy.netutil import set_keepalive, set_nodelay, write_through
from guildnet.proxy.tlsdirect import take_over
from guildnet.proxy.upstream import UpstreamConnection


class _ClientSide(Protocol):
    """Installed on the client's transport in place of the HTTP channel."""

    def __init__(self, splice: Splice) -> None:
        self.splice = splice

    def dataReceived(self, data: bytes) -> None:
        self.splice.from_client(data)

    def connectionLost(self, reason: Failure = ierror.ConnectionDone) -> None:  # type: ignore[assignment]
        self.splice.client_lost(reason)


@implementer(IPushProducer)
class _ClientProducer:
    """Registered on the client transport: a slow client pauses the upstream."""

    def __init__(self, splice: Splice) -> None:
        self.splice = splice

    def pauseProducing(self) -> None:
        self.splice.upstream.pause_reading()

    def resumeProducing(self) -> None:
        self.splice.upstream.resume_reading()

    def stopProducing(self) -> None:
        # The client's transport is going away (the splice's own close sets closed first).
        if not self.splice.closed:
            self.splice.closed_by = "client"
        self.splice.close()


class Splice:
    """Copies bytes between ``client`` (a transport) and ``upstream`` until either closes."""

    #: ``(cluster, route kind)`` of guildnet_proxy_websockets_open (set by the engine).
    metric_labels: tuple[str, str] = ("", "direct")
    #: The workspace's activity record (set by the engine): each chunk either way that
    #: is not a lone WebSocket ping/pong writes its time.
    activity: Activity | None = None

    def __init__(
        self,
        client_transport: Any,
        upstream: UpstreamConnection,
        now: Callable[[], float],
        idle_timeout: float,
        on_closed: Callable[[Splice], None],
        description: str = "",
    ) -> None:
        self.client = client_transport
        self.upstream = upstream
        self.now = now
        self.idle_timeout = idle_timeout
        self.on_closed = on_closed
        self.description = description
        self.last_active = now()
        self.closed = False
        #: Which side ended the splice: "client", "upstream", or "proxy" (idle, shutdown).
        self.closed_by = ""
        self.client_gone = False
        self.upstream_gone = False
        self.bytes_up = 0
        self.bytes_down = 0
        self._client_paused = False
        self.client_protocol = _ClientSide(self)
        self._write_client = _direct_writer(client_transport)

    def start(self, to_client: bytes, buffered_from_client: bytes, from_upstream: bytes) -> None:
        """Switch both connections to raw mode and flush what each side already sent.

        ``to_client`` is the 101 response head; ``buffered_from_client`` are bytes
        the HTTP channel read after the request head; ``from_upstream`` are bytes
        that followed the upstream's 101 in the same read.
        """
        set_keepalive(self.client)
        set_nodelay(self.client)
        set_keepalive(self.upstream.transport)
        write_through(self.upstream.transport)
        self.upstream.become_raw(self)
        direct = take_over(self.client, self.from_client)
        if direct is not None:
            # Twisted's TLS protocol steps aside; the same TLS session carries on.
            self.client = direct
            self._write_client = direct.write
        else:
            self.client.unregisterProducer()
        write_through(self.client)
        self.client.registerProducer(_ClientProducer(self), True)
        self.client.resumeProducing()
        self._write_client(to_client)
        if from_upstream:
            self.raw_data(from_upstream)
        if buffered_from_client:
            self.from_client(buffered_from_client)
        if direct is not None:
            direct.read_pending()

    # client -> upstream --------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = t = self.now()
        self.bytes_up += len(data)
        activity = self.activity
        if activity is not None and (data[0] not in PING_PONG or not is_keepalive(data)):
            activity.at = t
        self.upstream.write_body(data)

    def client_lost(self, reason: Failure) -> None:
        self.client_gone = True
        self.closed_by = self.closed_by or "client"
        self.close()

    def raw_pause(self) -> None:
        """The upstream cannot take more: stop reading the client."""
        if not self._client_paused and not self.client_gone:
            self._client_paused = True
            self.client.pauseProducing()

    def raw_resume(self) -> None:
        if self._client_paused and not self.client_gone:
            self._client_paused = False
            self.client.resumeProducing()

    # upstream -> client ----------------------------------------------------------

    def raw_data(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = t = self.now()
        self.bytes_down += len(data)
        activity = self.activity
        if activity is not None and (data[0] not in PING_PONG or not is_keepalive(data)):
            activity.at = t
        self._write_client(data)

    def raw_lost(self, reason: Failure) -> None:
        self.upstream_gone = True
        self.closed_by = self.closed_by or "upstream"
        self.close()

    # both ------------------------------------------------------------------------

    def idle_for(self, now: float) -> float:
        return now - self.last_active

    def close(self) -> None:
        """Close both sides gracefully (pending bytes are still delivered)."""
        if self.closed:
            return
        self.closed = True
        self.closed_by = self.closed_by or "proxy"
        if not self.client_gone:
            self.client.unregisterProducer()
            self.client.loseConnection()
        if not self.upstream_gone:
            self.upstream.close()
        self.on_closed(self)

    def abort(self) -> None:
        """Drop both sides at once (shutdown)."""
        was_closed = self.closed
        self.closed = True
        self.closed_by = self.closed_by or "proxy"
        if not self.client_gone:
            self.client.abortConnection()
        if not self.upstream_gone:
            self.upstream.abort()
        if not was_closed:
            self.on_closed(self)


def _direct_writer(transport: Any) -> Callable[[bytes], None]:
    """``transport.write``, minus TLS small-write aggregation when there is any.

    Twisted's server TLS transport delays every write to the next reactor iteration
    to merge small writes into one record. Each upstream read is already a natural
    batch, so for a splice that only adds a loop iteration per message; anything
    the aggregator holds is flushed first, so ordering is kept.
    """
    aggregator = getattr(transport, "_aggregator", None)
    if isinstance(transport, BufferingTLSTransport) and aggregator is not None:
        aggregator.flush()
        return lambda data: TLSMemoryBIOProtocol.write(transport, data)
    return transport.write  # type: ignore[no-any-return]
