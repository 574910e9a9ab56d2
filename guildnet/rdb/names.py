"""Names checked before they reach the server (RethinkDB's own rule, and GuildNet's limits)."""

from __future__ import annotations

import re
from typing import Final

_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SYSTEM_DB: Final = "rethinkdb"
META_DB: Final = "guildnet"
META_TABLE: Final = "databases"
#: Databases the API neither lists nor lets anyone create or drop.
RESERVED_DBS: Final = frozenset({SYSTEM_DB, META_DB})
MAX_FIELD: Final = 127


class NameError_(ValueError):
    """``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_name(value: object, field: str) -> str:
    """A database, table or index name: letters, digits, ``_`` and ``-``, 1-64 chars."""
    if not isinstance(value, str):
        raise NameError_(field, "must be a string")
    if not _NAME.fullmatch(value):
        raise NameError_(field, "use 1-64 letters, digits, '_' or '-'")
    return value


def check_db(value: object, field: str = "db") -> str:
    name = check_name(value, field)
    if name in RESERVED_DBS:
        raise NameError_(field, f"{name!r} is reserved")
    return name


def check_field(value: object, field: str) -> str:
    """A document field name (a primary key, an index field)."""
    if not isinstance(value, str) or not value:
        raise NameError_(field, "must be a non-empty string")
    if len(value) > MAX_FIELD:
        raise NameError_(field, f"must be at most {MAX_FIELD} characters")
    return value
