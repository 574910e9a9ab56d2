"""Who owns a workspace: recorded on create, read from the Workspace object. Pure.

The exact login is the annotation ``guildnet.io/owner`` (what authorization compares);
the label of the same name carries a label-safe spelling of it so that
``kubectl get workspaces -l guildnet.io/owner=...`` works. A label value is at most 63
characters of ``[A-Za-z0-9._-]``, so logins that do not fit are rewritten and get a
short hash: two logins never share a label value by accident, but the label alone is
never trusted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from guildnet.auth.identity import Role

OWNER_KEY: Final = "guildnet.io/owner"
_LABEL_OK: Final = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_BAD_CHARS: Final = re.compile(r"[^-A-Za-z0-9_.]+")
_HASH_LEN: Final = 8


def owner_label_value(login: str) -> str:
    """A valid label value for ``login``: itself when it is one, else a readable
    rewrite (``@`` -> ``_at_``, other characters -> ``-``) with a hash of the login."""
    if _LABEL_OK.fullmatch(login):
        return login
    digest = hashlib.sha256(login.encode("utf-8")).hexdigest()[:_HASH_LEN]
    readable = _LABEL_BAD_CHARS.sub("-", login.replace("@", "_at_"))
    readable = readable[: 63 - _HASH_LEN - 1].strip("-_.")
    return f"{readable}-{digest}" if readable else f"u-{digest}"


def owner_metadata(login: str) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) to add to a new Workspace created by ``login``."""
    return {OWNER_KEY: owner_label_value(login)}, {OWNER_KEY: login}


def owner_of(obj: Mapping[str, Any] | None) -> str | None:
    """The exact login that created the workspace, None when unrecorded (only admins
    see such workspaces: those made before owners were recorded, or outside GuildNet)."""
    meta = (obj or {}).get("metadata") or {}
    value = (meta.get("annotations") or {}).get(OWNER_KEY)
    return value if isinstance(value, str) and value else None


def may_access(role: Role, login: str | None, obj: Mapping[str, Any] | None) -> bool:
    """Whether a caller with ``role`` and ``login`` may see and act on the workspace."""
    if role is Role.ADMIN:
        return True
    if role is not Role.USER or not login:
        return False
    return owner_of(obj) == login
