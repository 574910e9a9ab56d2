"""Who is on the other end of a tailnet connection: LocalAPI WhoIs, per connection.

The tailnet listener's TLS transport (:class:`GatedTLSTransport`) asks WhoIs for its
peer address as soon as the TCP connection is accepted and holds the connection's
bytes (the TLS handshake included) until the answer is in, so no request on it is
parsed before its caller is known. The answer is then the identity of every request on
that connection, asked again once it is older than the TTL: when more bytes arrive
(the next request of a keep-alive connection), and by a sweep for connections that
only receive (SSE, a quiet WebSocket). A changed or vanished identity ends the
connection; its next connection is attributed afresh.

A peer WhoIs does not know (a local process that dialled the listener directly, not
through tailscaled) gets 403 on every request; when tailscaled cannot be asked, 503.

The address a request comes from is only worth caching across connections when it is
a Tailscale address (kernel networking): see ``parse.whois_cache_key``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport

from guildnet.auth.attribution import Refusal
from guildnet.auth.identity import Identity
from guildnet.http.tlstransport import LeanTLSFactory, LeanTLSTransport, available
from guildnet.tailnet.localapi import LocalAPI, LocalAPIError
from guildnet.tailnet.parse import PeerIdentity, whois_addr, whois_cache_key

log = Logger(namespace="guildnet.tailnet")

#: Bytes a connection may send while its WhoIs is in flight before reading pauses.
MAX_HELD = 256 * 1024
#: Per-address cache entries kept at most (expired ones are dropped first).
MAX_CACHED = 4096

NOT_A_PEER = Refusal(
    403,
    "not_a_tailnet_peer",
    "this listener serves tailnet peers only, and tailscaled does not know this connection",
)


def unavailable(reason: str) -> Refusal:
    return Refusal(
        503, "tailnet_identity_unavailable", f"cannot ask tailscaled who this is: {reason}"
    )


class WhoIsCache:
    """WhoIs through LocalAPI, with answers for Tailscale addresses kept for ``ttl`` seconds."""

    def __init__(
        self, api: LocalAPI, ttl: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = api
        self.ttl = ttl
        self._now = now
        self._cache: dict[str, tuple[float, PeerIdentity]] = {}
        self.lookups = 0

    def forget(self) -> None:
        self._cache.clear()

    async def lookup(self, host: str, port: int) -> PeerIdentity | None:
        """The peer at host:port, or None when tailscaled does not know it."""
        key = whois_cache_key(host, port)
        now = self._now()
        if key is not None:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        self.lookups += 1
        peer = await self.api.whois(whois_addr(host, port))
        if key is not None and peer is not None:
            if len(self._cache) >= MAX_CACHED:
                self._prune(now)
            self._cache[key] = (now, peer)
        return peer

    def _prune(self, now: float) -> None:
        for k, (at, _) in list(self._cache.items()):
            if now - at >= self.ttl:
                del self._cache[k]
        while len(self._cache) >= MAX_CACHED:
            del self._cache[next(iter(self._cache))]


class Gate:
    """The per-connection identity state shared by a tailnet listener's connections."""

    def __init__(self, whois: WhoIsCache, reactor: Any) -> None:
        self.whois = whois
        self.reactor = reactor
        self.connections: set[_GateMixin] = set()
        self._sweep = LoopingCall(self.sweep)
        self._sweep.clock = reactor

    @property
    def ttl(self) -> float:
        return self.whois.ttl

    def start(self) -> None:
        if not self._sweep.running:
            self._sweep.start(max(0.5, self.ttl / 2), now=False)

    def stop(self) -> None:
        if self._sweep.running:
            self._sweep.stop()

    def sweep(self) -> None:
        """Re-ask WhoIs for connections whose answer is older than the TTL."""
        now = self.whois._now()
        for conn in list(self.connections):
            conn.recheck_if_stale(now)


class _GateMixin(BufferingTLSTransport):
    """Holds a connection's bytes until WhoIs names its peer (see the module doc)."""

    gate: Gate
    #: The identity of requests on this connection, or why they are refused.
    guildnet_peer: Identity | Refusal = NOT_A_PEER
    _checked_at = 0.0
    _lookup: Deferred[Any] | None = None
    _held: list[bytes]
    _held_size = 0
    _paused_by_gate = False
    _first = True

    def makeConnection(self, transport: Any) -> None:
        self.gate = self.factory.gate  # type: ignore[attr-defined]
        self._held = []
        self.gate.connections.add(self)
        super().makeConnection(transport)
        self._check()

    def _check(self) -> None:
        peer = self.transport.getPeer() if self.transport is not None else None
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        if not isinstance(host, str) or not isinstance(port, int):
            self._settle(NOT_A_PEER)
            return
        d = Deferred.fromCoroutine(self._resolve(host, port))
        if not d.called:  # a cached answer has already settled
            self._lookup = d

    async def _resolve(self, host: str, port: int) -> None:
        result: Identity | Refusal
        try:
            peer = await self.gate.whois.lookup(host, port)
        except CancelledError:
            return  # the connection closed first
        except LocalAPIError as e:
            result = unavailable(str(e))
        except Exception:
            log.failure("WhoIs lookup failed")
            result = unavailable("internal error")
        else:
            result = peer.identity() if peer is not None else NOT_A_PEER
        self._settle(result)

    def _settle(self, result: Identity | Refusal) -> None:
        self._lookup = None
        self._checked_at = self.gate.whois._now()
        first, self._first = self._first, False
        if not first and result != self.guildnet_peer:
            # Another peer, other capabilities, or gone: nothing already allowed on this
            # connection may continue; the client reconnects and is attributed afresh.
            log.info(
                "tailnet connection from {peer} ended: its identity changed",
                peer=_peer_text(self),
            )
            self.guildnet_peer = result if isinstance(result, Refusal) else NOT_A_PEER
            self._drop_held()
            if self.transport is not None:
                transport: Any = self.transport
                transport.abortConnection()
            return
        self.guildnet_peer = result
        self._release()

    def recheck_if_stale(self, now: float) -> None:
        if self._lookup is None and now - self._checked_at >= self.gate.ttl and not self._first:
            self._check()

    def dataReceived(self, data: bytes) -> None:
        if self._lookup is None and not self._first:
            if self.gate.whois._now() - self._checked_at < self.gate.ttl:
                super().dataReceived(data)
                return
            self._hold(data)
            self._check()  # releases what is held when answered
            return
        self._hold(data)

    def _hold(self, data: bytes) -> None:
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > MAX_HELD and not self._paused_by_gate and self.transport is not None:
            self._paused_by_gate = True
            transport: Any = self.transport
            transport.pauseProducing()

    def _release(self) -> None:
        held, self._held, self._held_size = self._held, [], 0
        if self._paused_by_gate and self.transport is not None:
            self._paused_by_gate = False
            transport: Any = self.transport
            transport.resumeProducing()
        for chunk in held:
            if self._lookup is not None or self.transport is None:
                self._hold(chunk)
                continue
            super().dataReceived(chunk)

    def _drop_held(self) -> None:
        self._held, self._held_size = [], 0

    def connectionLost(self, reason: Any = None) -> None:
        self.gate.connections.discard(self)
        lookup, self._lookup = self._lookup, None
        if lookup is not None:
            lookup.cancel()
        self._drop_held()
        super().connectionLost(reason)


class GatedLeanTLSTransport(_GateMixin, LeanTLSTransport):
    """The gate over GuildNet's lean TLS transport."""


class GatedTLSTransport(_GateMixin, BufferingTLSTransport):
    """The gate over Twisted's own TLS transport (a pyOpenSSL without the lean paths)."""


class GatedTLSFactory(LeanTLSFactory):
    """TLS for the tailnet listener: every connection gated by WhoIs."""

    def __init__(self, contextFactory: Any, wrappedFactory: Any, gate: Gate, clock: Any) -> None:
        super().__init__(contextFactory, wrappedFactory, clock)
        self.gate = gate
        self.protocol = GatedLeanTLSTransport if available() else GatedTLSTransport


def tailnet_identity(request: Any) -> Identity | Refusal:
    """The tailnet Site's ``identify``: what its connection's WhoIs gave."""
    transport = getattr(request.channel, "transport", None)
    peer = getattr(transport, "guildnet_peer", None)
    if isinstance(peer, (Identity, Refusal)):
        return peer
    return NOT_A_PEER


def _peer_text(conn: Any) -> str:
    try:
        peer = conn.transport.getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:
        return "?"
