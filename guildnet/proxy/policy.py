"""Which targets the proxy may dial: no open proxy, no SSRF into the Host App's host.

A target is allowed when (1) none of its addresses is special, or every special one is
explicitly unlocked, and (2) it belongs to a managed workspace or matches the allowlist.

* Managed: ``(host, port)`` is one of the workspaces' targets (Service DNS names,
  ClusterIPs, load-balancer addresses, AGENT_HOST, pod IPs, with their ports; see
  ``resolve.managed_targets``), or every resolved address is, with that port.
* Allowlist (HOSTAPP_PROXY_ALLOWLIST): an exact ``host:port`` entry matches that host name
  or literal and port (or every resolved address, with that port); a CIDR or bare IP
  matches when it contains *every* resolved address (any port).
* Special addresses (loopback 127/8 and ::1, link-local 169.254/16 and fe80::/10,
  unspecified 0/8 and ::, cloud metadata 169.254.169.254, fd00:ec2::254 and the name
  ``metadata.google.internal``) are refused even for managed targets: AGENT_HOST is user
  input, and a workspace must not be a way to reach the Host App's own host. They are
  unlocked only by an exact ``host:port`` entry for the target, or by a CIDR that lies
  *inside* the special block (``127.0.0.0/8``, ``127.0.0.1``, ``169.254.169.254/32``), so a
  broad entry such as ``0.0.0.0/0`` or ``10.0.0.0/8`` never opens loopback or metadata, and
  ``169.254.0.0/16`` opens link-local but not the metadata address inside it.
  IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) are judged as the IPv4 they map to.

DNS rebinding: the caller resolves once, passes *all* addresses, and must connect only to
those it passed; every one of them has to pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from typing import Final

import attrs

from guildnet.proxy.paths import ProxyPathError, parse_target

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_NAMES: Final = frozenset({"metadata.google.internal", "metadata"})
# Most specific first: an address is classified by the first block that contains it.
SPECIAL_BLOCKS: Final[tuple[tuple[str, IPNetwork], ...]] = (
    ("metadata", ipaddress.ip_network("169.254.169.254/32")),
    ("metadata", ipaddress.ip_network("fd00:ec2::254/128")),
    ("loopback", ipaddress.ip_network("127.0.0.0/8")),
    ("loopback", ipaddress.ip_network("::1/128")),
    ("link_local", ipaddress.ip_network("169.254.0.0/16")),
    ("link_local", ipaddress.ip_network("fe80::/10")),
    ("unspecified", ipaddress.ip_network("0.0.0.0/8")),
    ("unspecified", ipaddress.ip_network("::/128")),
)
_MESSAGES: Final = {
    "not_allowlisted": "the target is not a managed workspace and not in the proxy allowlist",
    "loopback": "loopback addresses of the Host App's host are not proxied",
    "link_local": "link-local addresses are not proxied",
    "metadata": "cloud metadata endpoints are not proxied",
    "unspecified": "the unspecified address is not proxied",
    "unresolved": "the target did not resolve to any address",
    "bad_address": "the target resolved to something that is not an IP address",
}


@attrs.frozen
class Allowlist:
    """Parsed HOSTAPP_PROXY_ALLOWLIST: networks (bare IPs are /32 or /128) and host:ports."""

    networks: tuple[IPNetwork, ...] = ()
    hostports: frozenset[tuple[str, int]] = frozenset()

    def has_hostport(self, host: str, port: int) -> bool:
        return (normalise_host(host), port) in self.hostports

    def covers(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def unlocks(self, address: IPAddress, block: IPNetwork) -> bool:
        """True when an entry inside ``block`` contains ``address`` (see module docstring)."""
        return any(
            n.version == block.version and address in n and n.subnet_of(block)  # type: ignore[arg-type]
            for n in self.networks
        )


@attrs.frozen
class Refusal:
    """Why a target is refused; ``reason`` is a stable code for the 403 JSON body."""

    reason: str
    message: str


def parse_allowlist(entries: tuple[str, ...]) -> Allowlist:
    """Entries are CIDRs, bare IPs or ``host:port``; ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    hostports: set[tuple[str, int]] = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            try:
                host, port = parse_target(entry)
            except ProxyPathError:
                raise ValueError(
                    f"allowlist entry {entry!r} is neither CIDR/IP nor host:port"
                ) from None
            hostports.add((host, port))
        else:
            if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
                mapped = net.network_address.ipv4_mapped
                if mapped is not None:  # ::ffff:a.b.c.d/1xx written for an IPv4 range
                    net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
            networks.append(net)
    return Allowlist(tuple(networks), frozenset(hostports))


def normalise_host(host: str) -> str:
    """Lower-case, no trailing dot, IP literals (bracketed or not) in canonical form."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.endswith("."):
        text = text[:-1]
    try:
        return str(_unmap(ipaddress.ip_address(text)))
    except ValueError:
        return text


def classify(address: IPAddress) -> tuple[str, IPNetwork] | None:
    """The special category of an address and the block it falls in, or None."""
    address = _unmap(address)
    for reason, block in SPECIAL_BLOCKS:
        if address.version == block.version and address in block:
            return reason, block
    return None


def check_target(
    host: str,
    port: int,
    addresses: Sequence[str],
    allowlist: Allowlist,
    managed: Collection[tuple[str, int]],
) -> Refusal | None:
    """None when the proxy may dial ``host:port`` at ``addresses``; else the Refusal.

    ``addresses`` are all the addresses ``host`` resolved to (for an IP literal, the
    literal itself is used when the list is empty). ``managed`` holds normalised
    ``(host, port)`` pairs (``resolve.managed_targets``).
    """
    name = normalise_host(host)
    literal = _ip(name)
    raw = list(addresses) or ([name] if literal is not None else [])
    if not raw:
        return _refuse("unresolved")
    parsed: list[IPAddress] = []
    for text in raw:
        ip = _ip(normalise_host(text))
        if ip is None:
            return _refuse("bad_address")
        parsed.append(_unmap(ip))
    if literal is not None and _unmap(literal) not in parsed:
        parsed.append(_unmap(literal))

    # An exact host:port entry names the target as written or every address it resolved to.
    exact = allowlist.has_hostport(name, port) or all(
        allowlist.has_hostport(str(ip), port) for ip in parsed
    )
    if name in METADATA_NAMES and not exact:
        return _refuse("metadata")
    for ip in parsed:
        special = classify(ip)
        if special is not None and not (exact or allowlist.unlocks(ip, special[1])):
            return _refuse(special[0])

    if exact or (name, port) in managed:
        return None
    if all((str(ip), port) in managed for ip in parsed):
        return None
    if all(allowlist.covers(ip) for ip in parsed):
        return None
    return _refuse("not_allowlisted")


def _refuse(reason: str) -> Refusal:
    return Refusal(reason, _MESSAGES[reason])


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
