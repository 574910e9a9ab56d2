"""Reading JSON request bodies with limits and field-naming errors."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

from guildnet.http.errors import ApiError, bad_field

MAX_JSON_BYTES = 1024 * 1024


def read_json_object(request: IRequest, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError (400/413/415)."""
    data = read_json(request, limit)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return data


def read_json(request: IRequest, limit: int = MAX_JSON_BYTES) -> Any:
    """The request body as any JSON value, or an ApiError (400/413/415)."""
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if ctype not in (b"application/json", b""):
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    content = request.content
    if content is None:
        raise ApiError(400, "invalid_json", "request body is required")
    content.seek(0)
    raw = content.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "body_too_large", f"request body is larger than {limit} bytes")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {e}") from None
    return data


def string_field(
    body: dict[str, Any], name: str, *, required: bool, max_len: int = 1024
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_field(name, "is required")
        return None
    if not isinstance(value, str):
        raise bad_field(name, "must be a string")
    if len(value) > max_len:
        raise bad_field(name, f"must be at most {max_len} characters")
    return value
