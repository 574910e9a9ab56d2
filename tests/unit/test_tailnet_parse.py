"""The pure rules of the tailnet listener: LocalAPI answers, cache keys, bind addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guildnet.auth.identity import Source
from guildnet.config import ConfigError, ListenAddress, load_settings
from guildnet.tailnet.parse import (
    BadAnswer,
    NodeStatus,
    cert_domain,
    cert_needs_refresh,
    is_tailscale_ip,
    listen_addresses,
    parse_status,
    parse_whois,
    split_pair,
    whois_addr,
    whois_cache_key,
)

# Shapes as tailscaled v1.98 sends them (abridged from a live node in the test tailnet).
STATUS = {
    "Version": "1.98.10-ERR-BuildInfo",
    "BackendState": "Running",
    "Self": {
        "HostName": "host",
        "DNSName": "host.tailnet.test.",
        "TailscaleIPs": ["100.64.0.1", "fd7a:115c:a1e0::1"],
    },
    "CertDomains": None,
}
WHOIS = {
    "Node": {"ID": 3, "Name": "user-a.tailnet.test.", "Tags": None},
    "UserProfile": {"ID": 2, "LoginName": "user-a@example.test", "DisplayName": "user-a"},
    "CapMap": {"guildnet.io/cap/hostapp": [{"role": "admin"}]},
}


def test_status() -> None:
    s = parse_status(STATUS)
    assert s.running and s.dns_name == "host.tailnet.test"
    assert s.addresses == ("100.64.0.1", "fd7a:115c:a1e0::1") and s.cert_domains == ()


def test_status_without_backend_state_is_refused() -> None:
    with pytest.raises(BadAnswer):
        parse_status({"Self": {}})


def test_whois() -> None:
    p = parse_whois(WHOIS)
    ident = p.identity()
    assert ident.source is Source.TAILNET and ident.login == "user-a@example.test"
    assert ident.node == "user-a.tailnet.test" and ident.tags == ()
    assert ident.capabilities == {"guildnet.io/cap/hostapp": ({"role": "admin"},)}


def test_whois_tagged_node_and_no_caps() -> None:
    data = {
        "Node": {"Name": "ci.tailnet.test.", "Tags": ["tag:ci"]},
        "UserProfile": {"LoginName": "tagged-devices", "DisplayName": "Tagged Devices"},
    }
    p = parse_whois(data)
    assert p.tags == ("tag:ci",) and p.capabilities == {}


@pytest.mark.parametrize(
    "bad", [None, [], {"Node": {}}, {"Node": {}, "UserProfile": {"LoginName": ""}}]
)
def test_whois_without_a_login_is_refused(bad: object) -> None:
    with pytest.raises(BadAnswer):
        parse_whois(bad)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("100.64.0.1", True),
        ("100.127.255.254", True),
        ("100.128.0.1", False),
        ("127.0.0.1", False),
        ("fd7a:115c:a1e0::5", True),
        ("fd7a:115c:a1e1::5", False),
        ("not-an-ip", False),
    ],
)
def test_is_tailscale_ip(host: str, expected: bool) -> None:
    assert is_tailscale_ip(host) is expected


@given(st.integers(1, 65535))
def test_only_tailscale_addresses_are_cached_across_connections(port: int) -> None:
    # 127.0.0.1 is what a userspace tailscaled's forwarded connections come from: each
    # ephemeral port is one peer only while that connection is open.
    assert whois_cache_key("127.0.0.1", port) is None
    assert whois_cache_key("::1", port) is None
    assert whois_cache_key("100.64.0.7", port) == "100.64.0.7"


def test_whois_addr_brackets_ipv6() -> None:
    assert whois_addr("127.0.0.1", 5) == "127.0.0.1:5"
    assert whois_addr("fd7a:115c:a1e0::1", 5) == "[fd7a:115c:a1e0::1]:5"


def test_listen_addresses() -> None:
    s = parse_status(STATUS)
    assert listen_addresses("auto", s) == (
        ListenAddress("100.64.0.1", 443),
        ListenAddress("fd7a:115c:a1e0::1", 443),
    )
    assert listen_addresses("auto", None) == ()
    stopped = NodeStatus("Stopped", s.addresses, s.dns_name, ())
    assert listen_addresses("auto", stopped) == ()
    explicit = ListenAddress("127.0.0.1", 8443)
    assert listen_addresses(explicit, None) == (explicit,)


def test_cert_domain() -> None:
    s = NodeStatus("Running", (), "host.x.ts.net", ("other.x.ts.net", "host.x.ts.net"))
    assert cert_domain(s) == "host.x.ts.net"
    assert cert_domain(NodeStatus("Running", (), "host", ("a.ts.net",))) == "a.ts.net"
    assert cert_domain(NodeStatus("Running", (), "host", ())) is None


def test_cert_refresh() -> None:
    day = 86400.0
    assert cert_needs_refresh(None, None, 0)
    assert not cert_needs_refresh(0, 80 * day, 3600)
    assert cert_needs_refresh(0, 80 * day, 13 * 3600)  # asked every 12 hours
    assert cert_needs_refresh(0, 10 * day, 60)  # under 14 days left


def test_split_pair() -> None:
    key = b"-----BEGIN EC PRIVATE KEY-----\nAAA\n-----END EC PRIVATE KEY-----\n"
    c1 = b"-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----"
    c2 = b"-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----"
    chain, k = split_pair(key + c1 + b"\n" + c2 + b"\n")
    assert chain == c1 + b"\n" + c2 + b"\n" and k == key
    with pytest.raises(BadAnswer):
        split_pair(c1)


def test_tailnet_knobs() -> None:
    s = load_settings({})
    assert s.tailnet_listen is None and s.tailnet_whois_ttl == 15.0
    assert load_settings({"TAILNET_LISTEN": "auto"}).tailnet_listen == "auto"
    assert load_settings({"TAILNET_LISTEN": "127.0.0.1:9443"}).tailnet_listen == ListenAddress(
        "127.0.0.1", 9443
    )
    with pytest.raises(ConfigError, match="TAILNET_LISTEN"):
        load_settings({"TAILNET_LISTEN": "everywhere"})
    with pytest.raises(ConfigError, match="TAILNET_WHOIS_TTL"):
        load_settings({"TAILNET_WHOIS_TTL": "0"})
