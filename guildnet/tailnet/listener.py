"""The tailnet listener: HTTPS for tailnet peers, each connection attributed by WhoIs.

``TAILNET_LISTEN=auto`` binds port 443 on this node's Tailscale addresses, which it
learns from LocalAPI status; an explicit ``host:port`` binds there (e.g. the loopback
port a userspace-networking tailscaled forwards the tailnet's connections to).

Addresses and the certificate are re-read by polling LocalAPI status every
``POLL_INTERVAL`` seconds rather than by following ``watch-ipn-bus``: a restarted
tailscaled ends the bus stream anyway, so a watcher would need this same re-read path
to recover, and one status call on a local socket every few seconds costs nothing.
A bind that failed (tailscaled not up yet, an address not yet configured) is retried
on the next poll. The certificate is tailscaled's for the node's MagicDNS name when the
tailnet issues them (asked again every 12 hours, at once when it has under 14 days
left; tailscaled renews it itself), else the Host App's own.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.application.service import Service
from twisted.internet import ssl
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IListeningPort, IOpenSSLServerConnectionCreator
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from guildnet.config import ListenAddress, Settings
from guildnet.http.site import GuildNetSite
from guildnet.tailnet.gate import Gate, GatedTLSFactory, WhoIsCache
from guildnet.tailnet.localapi import LocalAPI, LocalAPIError
from guildnet.tailnet.parse import (
    BadAnswer,
    NodeStatus,
    cert_domain,
    cert_needs_refresh,
    listen_addresses,
    split_pair,
)
from guildnet.tls import server_context_from_pem

log = Logger(namespace="guildnet.tailnet")

POLL_INTERVAL = 5.0
#: Seconds before a failed certificate request is tried again.
CERT_RETRY = 300.0


@implementer(IOpenSSLServerConnectionCreator)
class SwappableCreator:
    """TLS for new connections from whichever certificate is current."""

    def __init__(self, options: ssl.CertificateOptions) -> None:
        self.current = options

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        return self.current.serverConnectionForTLS(tlsProtocol)


class TailnetListener(Service):
    """Binds, re-binds and reports the tailnet HTTPS listener (see the module doc)."""

    name = "tailnet-listener"

    def __init__(
        self,
        settings: Settings,
        site: GuildNetSite,
        fallback: ssl.CertificateOptions,
        reactor: Any,
        api: LocalAPI | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        assert settings.tailnet_listen is not None
        self.mode: ListenAddress | str = settings.tailnet_listen
        self.reactor = reactor
        self.api = api or LocalAPI(reactor, settings.tailscale_socket)
        self.gate = Gate(WhoIsCache(self.api, settings.tailnet_whois_ttl), reactor)
        self._fallback = fallback
        self.creator = SwappableCreator(fallback)
        self.factory = GatedTLSFactory(self.creator, site, self.gate, clock=reactor)
        self.ports: dict[ListenAddress, IListeningPort] = {}
        self.bind_errors: dict[ListenAddress, str] = {}
        self.status: NodeStatus | None = None
        self.status_error: str | None = None
        self.checked_at: float | None = None
        self.cert_source = "hostapp"
        self.cert_domain: str | None = None
        self.cert_error: str | None = None
        self._cert_fetched_at: float | None = None
        self._cert_not_after: float | None = None
        self._cert_retry_at = 0.0
        self.polls = 0
        self._loop = LoopingCall(self.poll)
        self._loop.clock = reactor
        self._poll_interval = poll_interval

    # lifecycle -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.gate.start()
        # The first poll binds; later ones re-read. Errors are reported, never raised:
        # the loopback listener serves on while tailscaled is away.
        self._loop.start(self._poll_interval, now=True).addErrback(
            lambda f: log.failure("tailnet listener poll loop ended", f)
        )

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self.gate.stop()
        ports, self.ports = list(self.ports.values()), {}
        stops = [Deferred.fromCoroutine(_stop(p)) for p in ports]
        for conn in list(self.gate.connections):
            transport: Any = conn.transport
            if transport is not None:
                transport.abortConnection()
        d: Deferred[Any] = DeferredList(stops)
        d.addBoth(lambda _: self.api.close())
        return d

    # one poll ---------------------------------------------------------------

    def poll(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._poll())

    async def _poll(self) -> None:
        self.polls += 1
        previous = self.status
        try:
            self.status = await self.api.status()
            self.status_error = None
        except (LocalAPIError, BadAnswer) as e:
            self.status = None
            self.status_error = str(e)
        self.checked_at = time.time()
        if previous is not None and self.status is not None and previous != self.status:
            log.info(
                "tailscaled status changed: {state} {addresses}",
                state=self.status.backend_state,
                addresses=" ".join(self.status.addresses),
            )
        if self.status is None or previous is None or not self.status.running:
            # tailscaled restarted or is away: what it said about peers may be stale.
            self.gate.whois.forget()
        if self.running:
            self._rebind(listen_addresses(self.mode, self.status))
        if self.status is not None and self.status.running:
            await self._refresh_cert(self.status)

    def _rebind(self, wanted: tuple[ListenAddress, ...]) -> None:
        for addr in list(self.ports):
            if addr not in wanted:
                port = self.ports.pop(addr)
                log.info("tailnet listener: no longer on {addr}", addr=str(addr))
                Deferred.fromCoroutine(_stop(port))
        for addr in list(self.bind_errors):
            if addr not in wanted:
                del self.bind_errors[addr]
        for addr in wanted:
            if addr in self.ports:
                continue
            try:
                self.ports[addr] = self.reactor.listenTCP(
                    addr.port, self.factory, interface=addr.host
                )
            except Exception as e:  # CannotListenError and friends: retried next poll
                message = f"cannot listen on {addr}: {getattr(e, 'socketError', None) or e}"
                if self.bind_errors.get(addr) != message:
                    log.warn("tailnet listener: {message}", message=message)
                self.bind_errors[addr] = message
            else:
                self.bind_errors.pop(addr, None)
                log.info("tailnet listener on https://{addr}", addr=str(addr))

    async def _refresh_cert(self, status: NodeStatus) -> None:
        domain = cert_domain(status)
        if domain is None:
            if self.cert_source != "hostapp":
                self.creator.current = self._fallback
                self.cert_source, self.cert_domain = "hostapp", None
            self.cert_error = None
            return
        now = time.time()
        if self.cert_error is not None and domain == self.cert_domain and now < self._cert_retry_at:
            return
        if domain == self.cert_domain and not cert_needs_refresh(
            self._cert_fetched_at, self._cert_not_after, now
        ):
            return
        try:
            chain, key = split_pair(await self.api.cert_pair(domain))
            options = server_context_from_pem(chain, key, f"tailscaled certificate for {domain}")
            not_after = _not_after(chain)
        except Exception as e:
            # Keep serving what was served (the Host App's own certificate at first).
            self.cert_error = f"{type(e).__name__}: {e}"[:300]
            self._cert_retry_at = now + CERT_RETRY  # not every poll
            self.cert_domain = domain
            log.warn(
                "tailnet certificate for {domain}: {error}", domain=domain, error=self.cert_error
            )
            return
        self.creator.current = options
        self.cert_source, self.cert_domain, self.cert_error = "tailscale", domain, None
        self._cert_fetched_at, self._cert_not_after = now, not_after
        log.info("tailnet listener serves tailscaled's certificate for {domain}", domain=domain)

    # reporting -------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The ``tailnet`` part of /readyz: ok while it listens somewhere."""
        out: dict[str, Any] = {
            "ok": bool(self.ports),
            "mode": self.mode if isinstance(self.mode, str) else "explicit",
            "listening": sorted(str(a) for a in self.ports),
            "tailscaled": self.status.backend_state if self.status is not None else None,
            "addresses": list(self.status.addresses) if self.status is not None else [],
            "certificate": self.cert_source,
            "connections": len(self.gate.connections),
        }
        if self.status is not None and self.status.dns_name:
            out["dnsName"] = self.status.dns_name
        errors = [self.status_error] if self.status_error else []
        errors += [self.bind_errors[a] for a in sorted(self.bind_errors, key=str)]
        if self.cert_error:
            errors.append(f"certificate: {self.cert_error}")
        if errors:
            out["errors"] = errors
        if not self.ports:
            out["error"] = errors[0] if errors else "not listening yet"
        return out


async def _stop(port: IListeningPort) -> None:
    await maybeDeferred(port.stopListening)


def _not_after(chain_pem: bytes) -> float:
    cert = x509.load_pem_x509_certificate(chain_pem)
    at = cert.not_valid_after_utc
    return at.replace(tzinfo=datetime.UTC).timestamp()


class ServeSocketService(Service):
    """The unix socket ``tailscale serve`` forwards to (``TAILNET_SERVE_SOCKET``).

    Mode 0600: only the Host App's user and root (tailscaled) can connect, which is
    what makes the identity headers on it trustworthy (see ``tailnet.serve``).
    A stale socket file from an earlier run is replaced; nothing else is.
    """

    name = "tailnet-serve-socket"

    def __init__(self, path: Path, site: GuildNetSite, reactor: Any) -> None:
        self.path = path
        self.site = site
        self.reactor = reactor
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.is_socket():
            self.path.unlink()
        self.port = self.reactor.listenUNIX(str(self.path), self.site, mode=0o600)
        os.chmod(self.path, 0o600)
        super().startService()
        log.info("tailscale serve socket at {path}", path=str(self.path))

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        return maybeDeferred(port.stopListening)
