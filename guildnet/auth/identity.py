"""The caller's identity, attached to each request by the listener that accepted it.

Identity is a property of the connection, never of request headers: the
loopback listener attributes every request to the machine's local user, the
tailnet listener to the Tailscale peer that LocalAPI WhoIs names. Handlers and
the authorization layer read it with ``identity_of``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs


class Role(enum.Enum):
    """What a caller may do; ordered, so ``at_least`` compares them."""

    NONE = "none"
    USER = "user"
    ADMIN = "admin"

    def at_least(self, other: Role) -> bool:
        order = (Role.NONE, Role.USER, Role.ADMIN)
        return order.index(self) >= order.index(other)


class Source(enum.Enum):
    """Which kind of listener attributed the identity."""

    LOCAL = "local"
    TAILNET = "tailnet"


@attrs.frozen
class Identity:
    """A caller as the listener established it (WhoIs for tailnet peers)."""

    source: Source
    login: str
    display_name: str = ""
    node: str = ""
    tags: tuple[str, ...] = ()
    #: Peer capabilities from WhoIs CapMap: capability name -> list of JSON values.
    capabilities: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict)


LOCAL_LOGIN = "local"

_ATTR = "guildnet_identity"


def set_identity(request: Any, identity: Identity) -> None:
    """Attach ``identity`` to ``request`` (done by the listener, once per request)."""
    setattr(request, _ATTR, identity)


def identity_of(request: Any) -> Identity | None:
    """The identity the listener attached, or None when none was (deny then)."""
    value = getattr(request, _ATTR, None)
    return value if isinstance(value, Identity) else None
