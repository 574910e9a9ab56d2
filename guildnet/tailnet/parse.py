"""Pure decisions about LocalAPI answers: what a status or WhoIs says, what to listen on.

Kept apart from the I/O (``localapi``, ``listener``, ``gate``) so that each rule is a
function of its inputs and tested as one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

import attrs

from guildnet.auth.identity import Identity, Source
from guildnet.config import ListenAddress

#: Tailscale's address ranges: CGNAT IPv4 and its ULA IPv6 prefix.
TAILSCALE_V4 = ipaddress.ip_network("100.64.0.0/10")
TAILSCALE_V6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")
#: Port of ``TAILNET_LISTEN=auto``.
AUTO_PORT = 443


class BadAnswer(ValueError):
    """A LocalAPI answer without the fields every tailscaled version sends."""


@attrs.frozen
class NodeStatus:
    """What LocalAPI status says about this node."""

    backend_state: str
    addresses: tuple[str, ...]
    dns_name: str
    cert_domains: tuple[str, ...]

    @property
    def running(self) -> bool:
        return self.backend_state == "Running"


@attrs.frozen
class PeerIdentity:
    """A WhoIs answer: the peer's user, node and capabilities."""

    login: str
    display_name: str
    node: str
    tags: tuple[str, ...]
    capabilities: Mapping[str, tuple[Any, ...]]

    def identity(self) -> Identity:
        return Identity(
            source=Source.TAILNET,
            login=self.login,
            display_name=self.display_name,
            node=self.node,
            tags=self.tags,
            capabilities=self.capabilities,
        )


def _strs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def parse_status(data: Any) -> NodeStatus:
    """``GET /localapi/v0/status`` -> NodeStatus."""
    if not isinstance(data, dict) or not isinstance(data.get("BackendState"), str):
        raise BadAnswer("status without BackendState")
    me = data.get("Self") if isinstance(data.get("Self"), dict) else {}
    assert isinstance(me, dict)
    dns = me.get("DNSName") if isinstance(me.get("DNSName"), str) else ""
    assert isinstance(dns, str)
    return NodeStatus(
        backend_state=data["BackendState"],
        addresses=_strs(me.get("TailscaleIPs")),
        dns_name=dns.rstrip("."),
        cert_domains=_strs(data.get("CertDomains")),
    )


def parse_whois(data: Any) -> PeerIdentity:
    """``GET /localapi/v0/whois`` -> PeerIdentity (the node name without its trailing dot)."""
    if not isinstance(data, dict):
        raise BadAnswer("whois answer is not an object")
    node = data.get("Node")
    profile = data.get("UserProfile")
    if not isinstance(node, dict) or not isinstance(profile, dict):
        raise BadAnswer("whois answer without Node or UserProfile")
    login = profile.get("LoginName")
    if not isinstance(login, str) or not login:
        raise BadAnswer("whois answer without a LoginName")
    caps: dict[str, tuple[Any, ...]] = {}
    raw_caps = data.get("CapMap")
    if isinstance(raw_caps, dict):
        for name, values in raw_caps.items():
            if isinstance(name, str):
                caps[name] = tuple(values) if isinstance(values, list) else ()
    name = node.get("Name") if isinstance(node.get("Name"), str) else ""
    assert isinstance(name, str)
    display = profile.get("DisplayName")
    return PeerIdentity(
        login=login,
        display_name=display if isinstance(display, str) else "",
        node=name.rstrip("."),
        tags=_strs(node.get("Tags")),
        capabilities=caps,
    )


def is_tailscale_ip(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip in TAILSCALE_V4 or ip in TAILSCALE_V6


def whois_cache_key(host: str, port: int) -> str | None:
    """The per-address cache key for a peer, or None when only this connection may know.

    A Tailscale address names one peer node, so its answer may serve later connections
    for a while. Any other address (127.0.0.1 from a userspace-networking tailscaled, which
    maps each forwarded connection's ephemeral port to a peer only while it is open) must
    be asked per connection: a later connection from the same ip:port can be anyone.
    """
    return host if is_tailscale_ip(host) else None


def whois_addr(host: str, port: int) -> str:
    """The ``addr`` WhoIs is asked with: ip:port (bracketed IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_addresses(
    mode: ListenAddress | str, status: NodeStatus | None
) -> tuple[ListenAddress, ...]:
    """Where the tailnet listener should be bound, given ``TAILNET_LISTEN`` and the status.

    ``auto``: port 443 on each of this node's Tailscale addresses while the node is
    running (none before, or when tailscaled cannot be asked); an explicit address always.
    """
    if isinstance(mode, ListenAddress):
        return (mode,)
    if status is None or not status.running:
        return ()
    out = []
    for addr in status.addresses:
        if is_tailscale_ip(addr):
            out.append(ListenAddress(str(ipaddress.ip_address(addr)), AUTO_PORT))
    return tuple(sorted(set(out), key=lambda a: (":" in a.host, a.host)))


def cert_domain(status: NodeStatus) -> str | None:
    """The domain to ask LocalAPI for a certificate: this node's MagicDNS name if the
    tailnet issues certificates for it, else its first certificate domain, else None."""
    if not status.cert_domains:
        return None
    if status.dns_name in status.cert_domains:
        return status.dns_name
    return status.cert_domains[0]


#: Ask tailscaled again this often (it renews its certificates itself, ~30 days before expiry).
CERT_REFRESH = 12 * 3600.0
#: ... and at once when the one served has less than this left.
CERT_MIN_REMAINING = 14 * 86400.0


def cert_needs_refresh(fetched_at: float | None, not_after: float | None, now: float) -> bool:
    if fetched_at is None or not_after is None:
        return True
    return now - fetched_at >= CERT_REFRESH or not_after - now < CERT_MIN_REMAINING


_KEY_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.+?-----END \1-----", re.S)
_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def split_pair(pem: bytes) -> tuple[bytes, bytes]:
    """LocalAPI ``cert?type=pair`` (a key and a certificate chain, PEM) -> (chain, key)."""
    key = _KEY_BLOCK.search(pem)
    certs = _CERT_BLOCK.findall(pem)
    if key is None or not certs:
        raise BadAnswer("certificate pair without a private key and a certificate")
    return b"\n".join(certs) + b"\n", key.group(0) + b"\n"
