"""Primary keys in URLs and page cursors (pure).

RethinkDB keys may be strings, numbers, booleans or arrays (compound keys), and ReQL orders
all of them in one total order, so paging by ``between(last, maxval, left_bound="open")`` on
the primary index is stable for every key type. A cursor is the last key, JSON, base64url.

A key in a path segment is JSON when it parses as a number, an array or a quoted string
(``42``, ``[1,"a"]``, ``"42"``), and otherwise the raw text (``alice``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

MAX_CURSOR: Final = 4096


class KeyError_(ValueError):
    pass


def _check_key(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, list) and all(_check_key(v) is v for v in value):
        return value
    raise KeyError_("a key is a string, number, boolean or array of those")


def parse_key(segment: str) -> Any:
    text = segment.strip()
    if text[:1] in ('"', "[", "-") or text[:1].isdigit():
        try:
            value = json.loads(text)
        except ValueError:
            return segment
        if isinstance(value, int | float | str | list) and not isinstance(value, bool):
            return _check_key(value)
    if not segment:
        raise KeyError_("the key is empty")
    return segment


def encode_cursor(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    if len(cursor) > MAX_CURSOR:
        raise KeyError_("the cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return _check_key(json.loads(raw))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise KeyError_("not a cursor this API gave out") from None
