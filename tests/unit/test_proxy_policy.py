"""Target policy: no open proxy, no loopback/link-local/metadata unless explicitly allowed."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from guildnet.proxy.policy import (
    SPECIAL_BLOCKS,
    Allowlist,
    check_target,
    classify,
    parse_allowlist,
)

NONE: frozenset[tuple[str, int]] = frozenset()


def reason(
    host: str,
    port: int,
    addresses: list[str],
    allow: tuple[str, ...] = (),
    managed: frozenset[tuple[str, int]] | set[tuple[str, int]] = NONE,
) -> str | None:
    refusal = check_target(host, port, addresses, parse_allowlist(allow), managed)
    return None if refusal is None else refusal.reason


# --- examples ---------------------------------------------------------------------------


def test_parse_allowlist() -> None:
    allow = parse_allowlist(("10.0.0.0/8", " 192.168.1.5 ", "db.internal:5432", "[::1]:80", ""))
    assert [str(n) for n in allow.networks] == ["10.0.0.0/8", "192.168.1.5/32"]
    assert allow.hostports == {("db.internal", 5432), ("::1", 80)}
    with pytest.raises(ValueError, match="neither"):
        parse_allowlist(("not a thing",))
    with pytest.raises(ValueError):
        parse_allowlist(("host-without-port",))


def test_unknown_targets_are_refused() -> None:
    assert reason("10.1.2.3", 8080, []) == "not_allowlisted"
    assert reason("example.com", 80, ["93.184.216.34"]) == "not_allowlisted"


def test_managed_targets_are_allowed() -> None:
    managed = {("ide.default.svc.cluster.local", 8080), ("10.96.0.10", 8080)}
    assert reason("ide.default.svc.cluster.local", 8080, ["10.96.0.10"], managed=managed) is None
    assert reason("IDE.default.svc.cluster.local.", 8080, ["10.96.0.10"], managed=managed) is None
    assert reason("10.96.0.10", 8080, [], managed=managed) is None
    assert reason("10.96.0.10", 8081, [], managed=managed) == "not_allowlisted"
    # A name that is not managed but resolves only to managed addresses reaches a workspace.
    assert reason("alias.example", 8080, ["10.96.0.10"], managed=managed) is None


def test_allowlist_cidr_must_cover_every_address() -> None:
    allow = ("10.0.0.0/8",)
    assert reason("svc.example", 80, ["10.0.0.1", "10.9.9.9"], allow) is None
    # DNS rebinding: one address outside the allowlist refuses the whole target.
    assert reason("svc.example", 80, ["10.0.0.1", "192.168.0.1"], allow) == "not_allowlisted"


def test_exact_hostport_entries() -> None:
    allow = ("db.internal:5432", "127.0.0.1:9000")
    assert reason("db.internal", 5432, ["192.168.0.9"], allow) is None
    assert reason("db.internal", 5433, ["192.168.0.9"], allow) == "not_allowlisted"
    assert reason("127.0.0.1", 9000, [], allow) is None
    assert reason("localhost", 9000, ["127.0.0.1"], allow) is None  # every address allowed
    assert reason("127.0.0.1", 9001, [], allow) == "loopback"


@pytest.mark.parametrize(
    ("host", "addresses", "why"),
    [
        ("127.0.0.1", [], "loopback"),
        ("127.8.9.10", [], "loopback"),
        ("localhost", ["127.0.0.1", "::1"], "loopback"),
        ("::1", [], "loopback"),
        ("::ffff:127.0.0.1", [], "loopback"),
        ("rebind.example", ["10.0.0.1", "127.0.0.1"], "loopback"),
        ("169.254.1.1", [], "link_local"),
        ("fe80::1", [], "link_local"),
        ("169.254.169.254", [], "metadata"),
        ("fd00:ec2::254", [], "metadata"),
        ("metadata.google.internal", ["169.254.169.254"], "metadata"),
        ("metadata.google.internal", ["10.0.0.1"], "metadata"),
        ("0.0.0.0", [], "unspecified"),
        ("::", [], "unspecified"),
    ],
)
def test_special_addresses_are_refused(host: str, addresses: list[str], why: str) -> None:
    assert reason(host, 80, addresses) == why
    # ... even when a workspace claims them (AGENT_HOST is user input) ...
    managed = {(host, 80), *((a, 80) for a in addresses)}
    assert reason(host, 80, addresses, managed=managed) == why
    # ... and even with the broadest allowlist.
    assert reason(host, 80, addresses, ("0.0.0.0/0", "::/0")) == why


def test_special_addresses_unlocked_only_from_inside_their_block() -> None:
    assert reason("127.0.0.1", 8080, [], ("127.0.0.0/8",)) is None
    assert reason("127.0.0.1", 8080, [], ("127.0.0.1",)) is None
    assert reason("127.0.0.2", 8080, [], ("127.0.0.1",)) == "loopback"
    assert reason("127.0.0.1", 8080, [], ("120.0.0.0/5",)) == "loopback"
    assert reason("169.254.1.1", 80, [], ("169.254.0.0/16",)) is None
    assert reason("169.254.169.254", 80, [], ("169.254.0.0/16",)) == "metadata"
    assert reason("169.254.169.254", 80, [], ("169.254.169.254/32",)) is None
    assert reason("169.254.169.254", 80, [], ("169.254.169.254:80",)) is None
    assert reason("::ffff:127.0.0.1", 80, [], ("::ffff:127.0.0.0/104",)) is None
    assert reason("metadata.google.internal", 80, ["169.254.169.254"], ("0.0.0.0/0",)) == (
        "metadata"
    )
    assert reason("metadata.google.internal", 80, ["169.254.169.254"], ("metadata:80",)) == (
        "metadata"
    )
    allow = ("metadata.google.internal:80",)
    assert reason("metadata.google.internal", 80, ["169.254.169.254"], allow) is None


def test_unresolved_and_garbage_addresses() -> None:
    assert reason("nowhere.example", 80, []) == "unresolved"
    assert reason("x.example", 80, ["not-an-ip"]) == "bad_address"


def test_refusals_have_messages() -> None:
    refusal = check_target("127.0.0.1", 80, [], Allowlist(), set())
    assert refusal is not None and "loopback" in refusal.message


# --- properties -------------------------------------------------------------------------

ADDRESSES = st.ip_addresses().map(str)
NETWORKS = st.builds(
    lambda ip, bits: ipaddress.ip_network(
        f"{ip}/{bits % (33 if isinstance(ip, ipaddress.IPv4Address) else 129)}", strict=False
    ),
    st.ip_addresses(),
    st.integers(0, 128),
)


def special_addresses() -> st.SearchStrategy[tuple[str, str]]:
    def pick(block_index: int, offset: int) -> tuple[str, str]:
        _, block = SPECIAL_BLOCKS[block_index]
        address = block.network_address + offset % block.num_addresses
        return str(address), str(classify(address)[0])  # type: ignore[index]

    return st.builds(pick, st.integers(0, len(SPECIAL_BLOCKS) - 1), st.integers(0, 2**64))


@given(special_addresses(), st.lists(NETWORKS, max_size=5), st.integers(1, 65535))
def test_special_addresses_need_an_entry_inside_their_block(
    special: tuple[str, str], networks: list[ipaddress.IPv4Network], port: int
) -> None:
    address, why = special
    ip = ipaddress.ip_address(address)
    block = next(b for w, b in SPECIAL_BLOCKS if w == why and ip in b)
    allow = parse_allowlist(tuple(str(n) for n in networks))
    result = check_target("name.example", port, [address], allow, {("name.example", port)})
    unlocking = [n for n in networks if n.version == ip.version and ip in n and n.subnet_of(block)]  # type: ignore[arg-type]
    if unlocking:
        assert result is None
    else:
        assert result is not None and result.reason == why


@given(st.lists(ADDRESSES, min_size=1, max_size=4), ADDRESSES, st.lists(NETWORKS, max_size=4))
def test_one_bad_address_refuses_the_whole_target(
    addresses: list[str], extra: str, networks: list[ipaddress.IPv4Network]
) -> None:
    allow = parse_allowlist(tuple(str(n) for n in networks))
    alone = check_target("name.example", 443, [extra], allow, set())
    together = check_target("name.example", 443, [*addresses, extra], allow, set())
    if alone is not None:
        assert together is not None
    if together is None:
        assert all(check_target("name.example", 443, [a], allow, set()) is None for a in addresses)


@given(st.text(max_size=40), st.integers(1, 65535), st.lists(st.text(max_size=20), max_size=3))
def test_never_crashes(host: str, port: int, addresses: list[str]) -> None:
    assume(host.strip())
    result = check_target(host, port, addresses, parse_allowlist(("10.0.0.0/8",)), set())
    assert result is None or result.reason
