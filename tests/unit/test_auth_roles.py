"""Roles: grants, the policy file, LOCAL_ROLE; parsing and resolution, hypothesis-tested.

Reference implementations here are deliberately naive (loops over every entry) so that
the real ones' shortcuts (folded keys, exact-before-domain lookups) are checked against
the rule as the README states it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from guildnet.auth.identity import Identity, Role, Source
from guildnet.auth.roles import (
    CAPABILITY,
    EMPTY_POLICY,
    Policy,
    capability_roles,
    highest,
    load_policy,
    parse_policy,
    parse_policy_text,
    parse_role,
    resolve_role,
)
from guildnet.config import ConfigError, load_settings

ROLES = st.sampled_from(list(Role))
WORDS = st.sampled_from(["admin", "user", "none"])
NAME = st.text(alphabet="abcdefghij0123456789-._", min_size=1, max_size=12)
DOMAIN = st.sampled_from(["example.com", "example.test", "github", "corp.example"])
LOGIN = st.builds(lambda n, d: f"{n}@{d}", NAME, DOMAIN)
TAG = st.builds(
    lambda a, n: f"tag:{a}{n}",
    st.sampled_from("abcXYZ"),
    st.text(alphabet="abcxyz019-", max_size=8),
)
ORDER = [Role.NONE, Role.USER, Role.ADMIN]


def tailnet(
    login: str = "alice@example.com",
    tags: tuple[str, ...] = (),
    caps: dict[str, tuple[Any, ...]] | None = None,
) -> Identity:
    return Identity(Source.TAILNET, login, tags=tags, capabilities=caps or {})


# --- roles and grants -------------------------------------------------------------------


@given(st.lists(ROLES, max_size=5))
def test_highest_is_the_maximum_in_role_order(roles: list[Role]) -> None:
    expected = max(roles, key=ORDER.index) if roles else Role.NONE
    assert highest(roles) is expected


@given(WORDS, st.sampled_from(["", " ", "\t"]), st.booleans())
def test_parse_role_words(word: str, pad: str, upper: bool) -> None:
    text = pad + (word.upper() if upper else word) + pad
    assert parse_role(text) is Role(word)


@pytest.mark.parametrize("bad", ["", "root", "admins", "owner", "Admin!", "1"])
def test_parse_role_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a role"):
        parse_role(bad)


VALUE = st.one_of(
    st.builds(lambda w: {"role": w}, st.sampled_from(["admin", "user", "none", "ADMIN", "root"])),
    st.builds(lambda x: {"role": x}, st.one_of(st.integers(), st.none(), st.lists(st.text()))),
    st.just({}),
    st.text(max_size=5),
    st.integers(),
    st.none(),
)


@given(st.lists(VALUE, max_size=6))
def test_capability_roles_keep_only_valid_role_values(values: list[Any]) -> None:
    got = capability_roles({CAPABILITY: values, "other.example/cap": [{"role": "admin"}]})
    expected = [
        Role(v["role"].lower())
        for v in values
        if isinstance(v, dict)
        and isinstance(v.get("role"), str)
        and v["role"].lower() in ("admin", "user", "none")
    ]
    assert got == expected


def test_other_capabilities_grant_nothing() -> None:
    assert capability_roles({"example.com/cap/hostapp": [{"role": "admin"}]}) == []
    assert (
        resolve_role(
            tailnet(caps={"example.com/cap/x": ({"role": "admin"},)}), EMPTY_POLICY, Role.ADMIN
        )
        is Role.NONE
    )


# --- resolution order -----------------------------------------------------------------


@given(ROLES)
def test_local_identity_gets_local_role(local: Role) -> None:
    me = Identity(Source.LOCAL, "local")
    admin_policy = Policy({"local": Role.ADMIN}, {})
    assert resolve_role(me, admin_policy, local) is local
    assert resolve_role(None, admin_policy, local) is Role.NONE


@given(st.lists(WORDS, min_size=1, max_size=4), ROLES)
def test_grants_win_over_the_policy(words: list[str], policy_role: Role) -> None:
    me = tailnet(caps={CAPABILITY: tuple({"role": w} for w in words)})
    policy = Policy({"alice@example.com": policy_role}, {})
    assert resolve_role(me, policy, Role.ADMIN) is highest(Role(w) for w in words)


@given(ROLES)
def test_invalid_grants_fall_back_to_the_policy(policy_role: Role) -> None:
    me = tailnet(caps={CAPABILITY: ({"role": "superuser"}, "admin", {"level": "admin"})})
    policy = Policy({"alice@example.com": policy_role}, {})
    assert resolve_role(me, policy, Role.ADMIN) is policy_role


def test_unknown_tailnet_peer_is_denied_by_default() -> None:
    assert resolve_role(tailnet("stranger@example.org"), EMPTY_POLICY, Role.ADMIN) is Role.NONE


def naive_role(
    entries: dict[str, Role], tag_entries: dict[str, Role], login: str, tags: list[str]
) -> Role:
    """The README's rule, spelled out: exact login entry, else domain, plus tags; max."""
    found: list[Role] = []
    exact = [r for k, r in entries.items() if k.lower() == login.lower()]
    if exact:
        found += exact
    else:
        domain = login.rsplit("@", 1)[1].lower()
        found += [r for k, r in entries.items() if k.lower() == f"*@{domain}"]
    found += [r for k, r in tag_entries.items() for t in tags if k.lower() == t.lower()]
    return max(found, key=ORDER.index) if found else Role.NONE


@given(
    st.dictionaries(st.one_of(LOGIN, st.builds(lambda d: f"*@{d}", DOMAIN)), WORDS, max_size=6),
    st.dictionaries(TAG, WORDS, max_size=4),
    LOGIN,
    st.lists(TAG, max_size=3),
    st.booleans(),
)
def test_policy_resolution_matches_the_stated_rule(
    logins: dict[str, str], tags: dict[str, str], login: str, node_tags: list[str], shout: bool
) -> None:
    # Case differences in the file must not matter: keys are folded.
    if len({k.casefold() for k in logins}) != len(logins):
        return
    if len({k.casefold() for k in tags}) != len(tags):
        return
    doc = {"logins": logins, "tags": tags}
    policy = parse_policy_text(json.dumps(doc), json_format=True)
    asked = login.upper() if shout else login
    want = naive_role(
        {k: Role(v) for k, v in logins.items()},
        {k: Role(v) for k, v in tags.items()},
        login,
        node_tags,
    )
    assert policy.role_for(asked, node_tags) is want
    assert resolve_role(tailnet(asked, tuple(node_tags)), policy, Role.NONE) is want


def test_an_exact_entry_overrides_the_domain() -> None:
    policy = parse_policy({"logins": {"*@example.com": "admin", "mallory@example.com": "none"}})
    assert policy.role_for("alice@example.com") is Role.ADMIN
    assert policy.role_for("mallory@example.com") is Role.NONE
    assert policy.role_for("bob@example.org") is Role.NONE


def test_tags_add_to_the_login() -> None:
    policy = parse_policy({"logins": {"ci@example.com": "none"}, "tags": {"tag:ops": "admin"}})
    assert policy.role_for("ci@example.com", ["tag:build", "tag:ops"]) is Role.ADMIN
    assert policy.role_for("tagged-devices", ["tag:ci"]) is Role.NONE


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "not empty"),
        ([], "not list"),
        ("admin", "not str"),
        ({"users": {}}, "unknown key 'users'"),
        ({"logins": ["a@b.c"]}, "'logins' must be a mapping"),
        ({"logins": {"a@b.c": "root"}}, "logins.a@b.c: 'root' is not a role"),
        ({"logins": {"a@b.c": 1}}, "logins.a@b.c: the role must be"),
        ({"logins": {"has space@b.c": "user"}}, "is not a login name"),
        ({"logins": {"*": "user"}}, "is not a login name"),
        ({"logins": {"a*@b.c": "user"}}, "is not a login name"),
        ({"logins": {"A@b.c": "user", "a@B.c": "admin"}}, "listed twice"),
        ({"tags": {"ops": "admin"}}, "is not a tag"),
        ({"tags": {"tag:": "admin"}}, "is not a tag"),
        ({"logins": {1: "user"}}, "is not a login name"),
    ],
)
def test_policy_errors_name_the_entry(doc: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_policy(doc)
    text = str(info.value)
    assert message.replace("not ", "") in text or message in text
    assert "\n" not in text


def test_yaml_and_json_files(tmp_path: Path) -> None:
    doc = {
        "logins": {"alice@example.com": "admin", "*@example.com": "user"},
        "tags": {"tag:ci": "user"},
    }
    y = tmp_path / "policy.yaml"
    y.write_text(yaml.safe_dump(doc))
    j = tmp_path / "policy.json"
    j.write_text(json.dumps(doc))
    assert load_policy(y) == load_policy(j)
    assert load_policy(y).role_for("alice@example.com") is Role.ADMIN


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.yaml", "logins:\n  a@b.c: user\n  a@b.c: admin\n", "line 3: 'a@b.c' repeats"),
        ("p.json", '{"logins": {"a@b.c": "user", "a@b.c": "admin"}}', "'a@b.c' repeats"),
        ("p.yaml", "logins: [unclosed\n", "not valid YAML"),
        ("p.json", "{logins: 1}", "not valid JSON"),
        ("p.yaml", "", "not empty"),
        ("p.yaml", "!!python/object:os.system {}\n", "not valid YAML"),
        ("p.yaml", "a: &x [*x]\n", "unknown key 'a'"),
    ],
)
def test_malformed_policy_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_policy(path)
    got = str(info.value)
    assert str(path) in got and "\n" not in got
    assert message.replace("not ", "") in got or message in got


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_policy(path)


@given(st.text(max_size=200))
def test_any_document_parses_or_gives_one_line(text: str) -> None:
    for json_format in (True, False):
        try:
            parse_policy_text(text, json_format)
        except ValueError as e:
            assert "\n" not in str(e).strip() or str(e).count("\n") == 0


# --- the knobs ------------------------------------------------------------------------------


def test_knobs_default_to_admin_and_no_policy() -> None:
    s = load_settings({})
    assert s.local_role is Role.ADMIN and s.policy == EMPTY_POLICY


def test_knobs_parse(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("logins:\n  bob@example.com: user\n")
    s = load_settings({"LOCAL_ROLE": "none", "GUILDNET_POLICY": str(path)})
    assert s.local_role is Role.NONE
    assert s.policy.role_for("bob@example.com") is Role.USER


def test_malformed_policy_stops_start_up_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("logins:\n  bob@example.com: owner\n")
    with pytest.raises(ConfigError) as info:
        load_settings({"GUILDNET_POLICY": str(path)})
    assert info.value.variable == "GUILDNET_POLICY"
    assert str(info.value) == (
        f"GUILDNET_POLICY: '{path}': logins.bob@example.com: 'owner' is not a role "
        "(use admin, user or none)"
    )
    with pytest.raises(ConfigError, match="LOCAL_ROLE"):
        load_settings({"LOCAL_ROLE": "root"})
    with pytest.raises(ConfigError, match="is not a readable file"):
        load_settings({"GUILDNET_POLICY": str(tmp_path / "missing.yaml")})
