"""JSON errors: one shape for every failure the Host App itself reports."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.web.iweb import IRequest

VALIDATE_ENV = "GUILDNET_VALIDATE_RESPONSES"
#: Tests only (tests/conftest.py sets the variable before anything imports this): hold every
#: JSON body to the OpenAPI document (guildnet.http.openapi.check). Read once: no per-response cost.
CHECK_RESPONSES = os.environ.get(VALIDATE_ENV, "") not in ("", "0")


class ApiError(Exception):
    """Raise from a handler to answer ``{"error", "message", "request_id"[, "field"]}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}  # more members of the error body (e.g. a DB ``reason``)


def bad_field(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{field}: {message}", field=field)


def request_id_of(request: IRequest) -> str:
    return str(getattr(request, "request_id", "") or "")


def json_body(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode() + b"\n"


def write_json(request: IRequest, status: int, obj: Any) -> bytes:
    """Set status and JSON headers; return the body for the caller to write."""
    if CHECK_RESPONSES:
        from guildnet.http.openapi.check import check_response

        status, obj = check_response(request, status, obj)
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json_body(obj)


def error_body(
    request: IRequest,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {"error": code, "message": message, "request_id": request_id_of(request)}
    if field is not None:
        body["field"] = field
    for k, v in (extra or {}).items():
        body.setdefault(k, v)
    return write_json(request, status, body)
