"""Holding the server to its description: every JSON body checked against the document.

Test-only, off unless ``GUILDNET_VALIDATE_RESPONSES=1`` (tests/conftest.py sets it, and
every Host App a test starts inherits it). Checked server-side, in ``write_json`` and
``SSEStream.send_json``, because that one place sees every JSON body whichever client
asked: in-process treq tests, the urllib/http.client clients of the integration tests,
Chromium in the e2e tests, SSE readers. A body that disagrees with the document

* is replaced by a 500 ``response_schema_mismatch`` naming the problem (an SSE event,
  whose headers are already out, is sent anyway),
* is logged (``response schema mismatch: ...``), and
* is appended as a JSON line to ``GUILDNET_VALIDATE_RESPONSES_REPORT`` when set, which
  tests/conftest.py reads at the end of the session and fails it, so a test that
  tolerates a 500 still cannot hide a mismatch.

Needs ``jsonschema`` (installed with openapi-spec-validator, a test dependency).
"""

from __future__ import annotations

import json
import os
import threading
from functools import cache
from typing import Any, Final

from twisted.logger import Logger

REPORT_ENV: Final = "GUILDNET_VALIDATE_RESPONSES_REPORT"
MISMATCH: Final = "response_schema_mismatch"

log = Logger(namespace="guildnet.openapi")
_lock = threading.Lock()


def enabled() -> bool:
    """Whether this process checks (decided once, when guildnet.http.errors was imported)."""
    from guildnet.http import errors

    return errors.CHECK_RESPONSES


@cache
def _document() -> dict[str, Any]:
    from guildnet.http.openapi import document

    return document()


@cache
def _validator(pointer: str) -> Any:
    """A 2020-12 validator for the schema at ``pointer`` (a JSON pointer into the doc)."""
    from jsonschema import Draft202012Validator

    doc = _document()
    return Draft202012Validator(
        {"$ref": pointer, "components": doc["components"], "paths": doc["paths"]}
    )


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _resolve(node: Any) -> Any:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if not isinstance(ref, str):
        return node
    out: Any = _document()
    for part in ref.removeprefix("#/").split("/"):
        out = out[part.replace("~1", "/").replace("~0", "~")]
    return out


def _error_pointer() -> str:
    return "#/components/schemas/Error"


def schema_pointer(method: str, template: str, status: int) -> tuple[str | None, str | None]:
    """(pointer to the JSON schema of this response, None) or (None, why there is none).

    Templates that are not in the document (no route matched, the proxy's own errors, a
    test's private Klein app) are held to the error shape when they fail, else unchecked.
    """
    paths = _document()["paths"]
    item = paths.get(template)
    operation = item.get(method.lower()) if isinstance(item, dict) else None
    if operation is None:
        return (_error_pointer(), None) if status >= 400 else (None, None)
    if "x-undocumented" in operation:
        return None, str(operation["x-undocumented"])
    responses = operation["responses"]
    if str(status) not in responses:
        return None, f"status {status} is not documented for {method} {template}"
    response = _resolve(responses[str(status)])
    if "application/json" not in (response.get("content") or {}):
        return None, f"{method} {template} {status} is not documented as application/json"
    ptr = "/".join(["#/paths", _escape(template), method.lower(), "responses", str(status)])
    if "$ref" in responses[str(status)]:
        ptr = responses[str(status)]["$ref"]
    return f"{ptr}/content/application~1json/schema", None


def response_problem(method: str, template: str, status: int, body: Any) -> str | None:
    """Why ``body`` is not what the document promises for this response, or None."""
    pointer, problem = schema_pointer(method, template, status)
    if problem is not None:
        return problem
    if pointer is None:
        return None
    return _first_error(pointer, body, f"{method} {template} {status}")


def event_problem(template: str, event: str | None, data: Any) -> str | None:
    """Why an SSE event's ``data`` disagrees with the documented ``x-sse-events``, or None."""
    item = _document()["paths"].get(template) or {}
    operation = item.get("get")
    if operation is None:
        return None  # a test's private stream
    events = operation.get("x-sse-events") or {}
    name = event or "message"
    if name not in events:
        return f"SSE event {name!r} is not documented for GET {template}"
    pointer = "/".join(["#/paths", _escape(template), "get", "x-sse-events", name, "schema"])
    return _first_error(pointer, data, f"GET {template} event {name}")


def _first_error(pointer: str, body: Any, what: str) -> str | None:
    errors = sorted(_validator(pointer).iter_errors(body), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.absolute_path) or "(the body)"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{what}: at {where}: {e.message[:300]}{more}"


def report(request: Any, status: int, problem: str) -> None:
    """Log the mismatch and append it to the session's report file."""
    method = request.method.decode("latin-1") if isinstance(request.method, bytes) else "?"
    path = request.path.decode("latin-1")[:300] if isinstance(request.path, bytes) else "?"
    log.error(
        "response schema mismatch: {method} {path} -> {status}: {problem}",
        method=method,
        path=path,
        status=status,
        problem=problem,
    )
    target = os.environ.get(REPORT_ENV)
    if target:
        line = json.dumps({"method": method, "path": path, "status": status, "problem": problem})
        with _lock, open(target, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def check_response(request: Any, status: int, obj: Any) -> tuple[int, Any]:
    """The (status, body) to send: unchanged, or a 500 naming the mismatch."""
    template = str(getattr(request, "route_template", "") or "")
    method = request.method.decode("latin-1") if isinstance(request.method, bytes) else "GET"
    if isinstance(obj, dict) and obj.get("error") == MISMATCH:
        return status, obj
    problem = response_problem(method, template, status, obj)
    if problem is None:
        return status, obj
    report(request, status, problem)
    request_id = str(getattr(request, "request_id", "") or "")
    return 500, {"error": MISMATCH, "message": problem, "request_id": request_id}


def check_event(request: Any, event: str | None, data: Any) -> None:
    template = str(getattr(request, "route_template", "") or "")
    problem = event_problem(template, event, data)
    if problem is not None:
        report(request, 200, problem)
