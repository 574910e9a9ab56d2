"""What a caller may do: roles from Tailscale grants, a policy file, or the listener.

Pure functions, no I/O except ``load_policy`` reading one file at start-up.

Resolution, first that applies (``resolve_role``):

1. no identity: ``none`` (deny);
2. the loopback listener's identity: ``LOCAL_ROLE`` (admin by default);
3. a tailnet peer whose WhoIs CapMap has ``guildnet.io/cap/hostapp`` with at least one
   valid ``{"role": ...}`` value: the highest of those (grants are the tailnet admin's
   word, so they win over the policy file);
4. the policy file (``GUILDNET_POLICY``): the login's own entry (exact, else its
   ``*@domain`` entry) and every tag of the node, highest wins;
5. otherwise ``none``: deny by default on the tailnet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import yaml

from guildnet.auth.identity import Identity, Role, Source

CAPABILITY: Final = "guildnet.io/cap/hostapp"
_ROLE_WORDS: Final = {r.value: r for r in Role}
_TAG: Final = re.compile(r"^tag:[A-Za-z0-9][-A-Za-z0-9_]{0,79}$")
_LOGIN: Final = re.compile(r"^[^\s*]{1,320}$")
_DOMAIN_WILDCARD: Final = re.compile(r"^\*@[^\s*@]{1,253}$")
_POLICY_KEYS: Final = ("logins", "tags")
MAX_POLICY_BYTES: Final = 1024 * 1024


def highest(roles: Iterable[Role]) -> Role:
    """The most capable of ``roles`` (``none`` for none)."""
    best = Role.NONE
    for role in roles:
        if role.at_least(best):
            best = role
    return best


def parse_role(value: str) -> Role:
    """``admin``, ``user`` or ``none`` (case-insensitive); ValueError otherwise."""
    word = value.strip().lower() if isinstance(value, str) else None
    role = _ROLE_WORDS.get(word) if word is not None else None
    if role is None:
        raise ValueError(f"{value!r} is not a role (use admin, user or none)")
    return role


def capability_roles(capabilities: Mapping[str, Iterable[Any]]) -> list[Role]:
    """The valid roles in the ``guildnet.io/cap/hostapp`` values of a WhoIs CapMap.

    Values that are not ``{"role": "admin"|"user"|"none"}`` are ignored: a malformed
    grant grants nothing.
    """
    out: list[Role] = []
    for value in capabilities.get(CAPABILITY) or ():
        if not isinstance(value, Mapping):
            continue
        word = value.get("role")
        if isinstance(word, str) and word.strip().lower() in _ROLE_WORDS:
            out.append(_ROLE_WORDS[word.strip().lower()])
    return out


def _login_key(login: str) -> str:
    return login.strip().casefold()


@attrs.frozen
class Policy:
    """The parsed ``GUILDNET_POLICY`` file: logins, ``*@domain`` entries and tags -> roles.

    Keys are case-folded (login names are e-mail-like and Tailscale compares them so).
    """

    logins: Mapping[str, Role] = attrs.field(factory=dict)
    tags: Mapping[str, Role] = attrs.field(factory=dict)
    #: The file it was read from (``auth.policy_watch`` re-reads it when it changes).
    source: Path | None = attrs.field(default=None, eq=False)

    def role_for(self, login: str, tags: Iterable[str] = ()) -> Role:
        """The login's entry (exact, else ``*@domain``) and the node's tags, highest wins.

        An exact entry overrides the domain's, so ``none`` can exclude one person from
        a domain-wide grant.
        """
        key = _login_key(login)
        own = self.logins.get(key)
        if own is None and "@" in key:
            own = self.logins.get("*@" + key.rsplit("@", 1)[1])
        found = [own] if own is not None else []
        found += [self.tags[t.casefold()] for t in tags if t.casefold() in self.tags]
        return highest(found)


EMPTY_POLICY: Final = Policy()


def parse_policy(data: Any) -> Policy:
    """A policy from its parsed YAML/JSON document; ValueError naming the bad entry.

    Shape::

        logins:
          alice@example.com: admin
          "*@example.com": user     # every login of the domain
          mallory@example.com: none # an exact entry overrides the domain's
        tags:
          tag:ci: user
    """
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else type(data).__name__
        raise ValueError(f"the policy must be a mapping with 'logins' and/or 'tags', not {kind}")
    unknown = [str(k) for k in data if k not in _POLICY_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (expected 'logins' and/or 'tags')")
    logins = _section(data, "logins", _valid_login)
    tags = _section(data, "tags", _valid_tag)
    return Policy(logins, tags)


def _valid_login(key: str) -> bool:
    return bool(_DOMAIN_WILDCARD.fullmatch(key) or _LOGIN.fullmatch(key))


def _valid_tag(key: str) -> bool:
    return bool(_TAG.fullmatch(key))


def _section(data: Mapping[Any, Any], name: str, valid: Any) -> dict[str, Role]:
    section = data.get(name)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{name!r} must be a mapping of names to roles")
    out: dict[str, Role] = {}
    for key, value in section.items():
        if not isinstance(key, str) or not valid(key.strip()):
            what = "a login name or *@domain" if name == "logins" else "a tag (tag:name)"
            raise ValueError(f"{name}: {str(key)[:80]!r} is not {what}")
        if not isinstance(value, str):
            raise ValueError(f"{name}.{key}: the role must be admin, user or none")
        try:
            role = parse_role(value)
        except ValueError as e:
            raise ValueError(f"{name}.{key}: {e}") from None
        folded = _login_key(key)
        if folded in out:
            raise ValueError(f"{name}: {key!r} is listed twice")
        out[folded] = role
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        try:
            duplicate = key in seen
        except TypeError:
            raise ValueError(f"line {key_node.start_mark.line + 1}: unhashable key") from None
        if duplicate:
            raise ValueError(f"line {key_node.start_mark.line + 1}: {str(key)[:80]!r} repeats")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_without_duplicates,  # type: ignore[arg-type]
)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"{key[:80]!r} repeats")
        out[key] = value
    return out


def parse_policy_text(text: str, json_format: bool) -> Policy:
    """Parse the policy document (JSON when ``json_format``, else YAML); ValueError."""
    try:
        if json_format:
            data = json.loads(text, object_pairs_hook=_json_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} at line {e.lineno}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"not valid YAML: {e.problem or e.context}{where}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"not valid YAML: {_one_line(str(e))}") from None
    except RecursionError:
        raise ValueError("the document is nested too deeply") from None
    return parse_policy(data)


def load_policy(path: Path) -> Policy:
    """Read and parse ``path`` (``.json`` is JSON, anything else YAML); ValueError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{str(path)!r}: cannot read it ({e.strerror})") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise ValueError(f"{str(path)!r}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r}: not UTF-8 text") from None
    try:
        policy = parse_policy_text(text, path.suffix.lower() == ".json")
    except ValueError as e:
        raise ValueError(f"{str(path)!r}: {_one_line(str(e))}") from None
    return attrs.evolve(policy, source=path)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def resolve_role(identity: Identity | None, policy: Policy, local_role: Role) -> Role:
    """The caller's role (see the module docstring for the order)."""
    if identity is None:
        return Role.NONE
    if identity.source is Source.LOCAL:
        return local_role
    granted = capability_roles(identity.capabilities)
    if granted:
        return highest(granted)
    return policy.role_for(identity.login, identity.tags)
