"""A client for tailscaled's LocalAPI over its unix socket.

Requests run on the reactor (a UNIX client endpoint under twisted.web's Agent), never
in the reactor's thread pool: WhoIs is asked for every tailnet connection, and a pool
thread per lookup would let a burst of connections starve everything else that uses it.

tailscaled answers only requests whose Host is ``local-tailscaled.sock`` (others get
403), so every URL is ``http://local-tailscaled.sock/localapi/v0/...``. Each call has a
bound on its whole exchange: LocalAPI calls are short, and a hung tailscaled must not
hold a connection's identity (or the listener's poll) forever.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from guildnet.tailnet.parse import NodeStatus, PeerIdentity, parse_status, parse_whois

HOST = b"local-tailscaled.sock"
BASE = b"http://" + HOST + b"/localapi/v0/"
#: Seconds any one LocalAPI exchange may take (connect, request, whole body).
TIMEOUT = 5.0
#: LocalAPI answers here are small (status of a big tailnet is the largest).
MAX_BODY = 8 * 1024 * 1024


class LocalAPIError(Exception):
    """tailscaled could not be asked, or answered with an error."""


class NotFound(LocalAPIError):
    """LocalAPI answered 404 (WhoIs: not a tailnet peer, or no longer connected)."""


@implementer(IAgentEndpointFactory)
@attrs.define
class _SocketEndpoints:
    reactor: Any
    path: Path

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(self.reactor, str(self.path), timeout=TIMEOUT)


class LocalAPI:
    """tailscaled's LocalAPI: ``status()``, ``whois(addr)`` and ``cert_pair(domain)``."""

    def __init__(self, reactor: Any, socket_path: Path, timeout: float = TIMEOUT) -> None:
        self.reactor = reactor
        self.socket_path = socket_path
        self.timeout = timeout
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 4
        self._pool.retryAutomatically = True
        self._agent = Agent.usingEndpointFactory(
            reactor, _SocketEndpoints(reactor, socket_path), pool=self._pool
        )

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET ``/localapi/v0/<path>``: (status, body); transport failures raise LocalAPIError."""
        d: Deferred[tuple[int, bytes]] = Deferred.fromCoroutine(self._get(path))
        d.addTimeout(self.timeout, self.reactor)
        try:
            return await d
        except DeferredTimeoutError:
            raise LocalAPIError(
                f"tailscaled at {self.socket_path} did not answer {path.split('?')[0]} "
                f"within {self.timeout:g}s"
            ) from None
        except LocalAPIError:
            raise
        except Exception as e:
            raise LocalAPIError(f"tailscaled at {self.socket_path}: {_describe(e)}") from None

    async def _get(self, path: str) -> tuple[int, bytes]:
        response = await self._agent.request(
            b"GET", BASE + path.encode("ascii"), Headers({b"host": [HOST]})
        )
        length = response.length
        if isinstance(length, int) and length > MAX_BODY:
            response.deliverBody(_Discard())
            raise LocalAPIError(f"LocalAPI {path} answered {length} bytes (limit {MAX_BODY})")
        body = await readBody(response)
        return int(response.code), body

    async def get_json(self, path: str) -> Any:
        code, body = await self.get(path)
        if code == 404:
            raise NotFound(_text(body))
        if code != 200:
            raise LocalAPIError(f"LocalAPI {path.split('?')[0]} answered {code}: {_text(body)}")
        try:
            return json.loads(body)
        except ValueError:
            raise LocalAPIError(f"LocalAPI {path.split('?')[0]} answered non-JSON") from None

    async def status(self) -> NodeStatus:
        """This node's state, addresses, MagicDNS name and certificate domains."""
        return parse_status(await self.get_json("status?peers=false"))

    async def whois(self, addr: str) -> PeerIdentity | None:
        """Who is at ``addr`` (``ip`` or ``ip:port``); None when LocalAPI does not know."""
        try:
            data = await self.get_json("whois?addr=" + quote(addr, safe=""))
        except NotFound:
            return None
        return parse_whois(data)

    async def cert_pair(self, domain: str) -> bytes:
        """PEM private key and certificate chain for ``domain`` (the tailnet's HTTPS cert)."""
        code, body = await self.get(f"cert/{quote(domain, safe='')}?type=pair")
        if code != 200:
            raise LocalAPIError(f"LocalAPI cert for {domain} answered {code}: {_text(body)}")
        return body

    def close(self) -> Deferred[None]:
        """Close the pooled unix connections (on shutdown)."""
        d: Deferred[Any] = self._pool.closeCachedConnections()
        return d


class _Discard(Protocol):
    """Drops an oversized body: stops the transport at once."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.stopProducing()  # type: ignore[attr-defined]


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip()[:300]


def _describe(e: BaseException) -> str:
    """One line for an Agent failure (which often wraps the real reason in a list)."""
    reasons = getattr(e, "reasons", None)
    if reasons:
        inner = reasons[0]
        value = getattr(inner, "value", inner)
        return f"{type(value).__name__}: {value}"
    return f"{type(e).__name__}: {e}"
