"""The OpenAPI description against the router: complete both ways, valid, served.

The document is generated from ``route_table()`` (what the Klein router answers) and the
docs table (``guildnet/http/openapi/operations.py``); these tests prove neither can drift
from the other, that openapi-spec-validator accepts the result, and that the response
check (``guildnet.http.openapi.check``, on for the whole test suite) catches a body that
disagrees.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from openapi_spec_validator import validate

import guildnet.http.api  # noqa: F401  (registers every route)
from guildnet.http.errors import VALIDATE_ENV, write_json
from guildnet.http.openapi import check, document
from guildnet.http.openapi.generate import (
    OPERATIONS_MODULE,
    PROXY_PATH,
    Undocumented,
    build,
    docs_key,
)
from guildnet.http.openapi.operations import OPERATIONS, PATH_PARAMS
from guildnet.http.router import RouteEntry, route_table

ROUTES = route_table()
KEYS = {(r.method, r.template) for r in ROUTES}


def test_every_route_the_server_answers_is_documented() -> None:
    missing = [
        f"{r.method} {r.template} (endpoint {r.endpoint}): add "
        f'("{r.method}", "{docs_key(r.method, r.template, KEYS)[1]}"): Op(...) to OPERATIONS '
        f"in {OPERATIONS_MODULE}"
        for r in ROUTES
        if docs_key(r.method, r.template, KEYS) not in OPERATIONS
    ]
    assert not missing, "routes without an OpenAPI entry:\n" + "\n".join(missing)
    paths = document()["paths"]
    for r in ROUTES:
        assert r.method.lower() in paths.get(r.template, {}), (r, "not in the document")
        assert "x-undocumented" not in paths[r.template][r.method.lower()], r
    build(ROUTES, strict=True)


def test_every_documented_route_exists() -> None:
    stale = [f"{m} {t}" for (m, t) in OPERATIONS if (m, t) not in KEYS]
    assert not stale, (
        f"entries in OPERATIONS ({OPERATIONS_MODULE}) for routes the router does not "
        "answer (remove them, or fix the template):\n" + "\n".join(stale)
    )
    # And the document holds nothing else but the /proxy prefix.
    documented = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        if path != PROXY_PATH
        for method in item
        if method != "parameters"
    }
    assert documented == KEYS


def test_a_missing_entry_names_itself_and_where_to_add_it() -> None:
    extra = RouteEntry("GET", "/api/whatever/{server_id}", "whatever")
    with pytest.raises(Undocumented) as e:
        build([extra], strict=True)
    message = str(e.value)
    assert 'add ("GET", "/api/whatever/{server_id}"): Op(...) to OPERATIONS' in message
    assert OPERATIONS_MODULE in message
    twin = RouteEntry("GET", "/api/cluster/{cluster_id}/whatever", "whatever__cluster")
    with pytest.raises(Undocumented, match="add /api/whatever"):
        build([twin], strict=True)
    # Served (not strict), the route is listed as undocumented and the document stays valid.
    doc = build([*ROUTES, extra])
    assert doc["paths"]["/api/whatever/{server_id}"]["get"]["x-undocumented"] == message
    validate(doc)


def test_the_document_validates() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises OpenAPIValidationError with the path of the first problem
    # What is served is the same document, as JSON.
    from guildnet.http.docs_routes import openapi_bytes

    assert json.loads(openapi_bytes()) == doc


def test_both_cluster_forms_are_documented_with_their_parameters() -> None:
    paths = document()["paths"]
    twins = [r for r in ROUTES if docs_key(r.method, r.template, KEYS) != (r.method, r.template)]
    assert len(twins) >= 30  # every workspace and DB route has one
    for r in twins:
        default = docs_key(r.method, r.template, KEYS)[1]
        op = paths[r.template][r.method.lower()]
        params = [p["name"] for p in paths[r.template]["parameters"]]
        assert params[0] == "cluster_id", r
        assert op["operationId"] == r.endpoint
        assert op["summary"] == paths[default][r.method.lower()]["summary"]
        for status in ("400", "404", "500"):
            assert status in op["responses"], (r, status)
    # Every path parameter of every template is declared and described.
    for path, item in paths.items():
        names = [p["name"] for p in item.get("parameters", [])]
        assert names == [n.strip("{}") for n in path.split("/") if n.startswith("{")], path
        for name in names:
            if path != PROXY_PATH:
                assert name in PATH_PARAMS, (path, name)


def test_errors_share_one_shape_and_every_operation_may_fail_with_500() -> None:
    doc = document()
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message", "request_id"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op["responses"]["500"] == {"$ref": "#/components/responses/500"}, path
            for status, resp in op["responses"].items():
                if "$ref" in resp:
                    assert resp["$ref"] == f"#/components/responses/{status}", (path, status)
    for resp in doc["components"]["responses"].values():
        assert resp["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    # A route's own failing report (a 503 health body) may also be an error, when both are.
    health = doc["paths"]["/api/health"]["get"]["responses"]["503"]
    assert health["content"]["application/json"]["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/ClusterHealth"},
        {"$ref": "#/components/schemas/Error"},
    ]


def test_sse_routes_are_event_streams_with_their_events() -> None:
    paths = document()["paths"]
    sse = [r for r in ROUTES if r.template.startswith("/sse/")]
    assert len(sse) == 6
    for r in sse:
        op = paths[r.template]["get"]
        assert list(op["responses"]["200"]["content"]) == ["text/event-stream"]
        events = op["x-sse-events"]
        assert events and all("schema" in e and e["description"] for e in events.values())
        for name in events:
            assert f"`{name}`" in op["description"]
    assert set(paths["/sse/servers"]["get"]["x-sse-events"]) == {
        "snapshot",
        "created",
        "updated",
        "deleted",
        "event",
    }
    changes = paths["/sse/db/{db}/tables/{table}/changes"]["get"]["x-sse-events"]
    assert set(changes) == {"snapshot", "ready", "change", "resync", "gone"}


def test_the_proxy_prefix_is_one_path_item() -> None:
    item = document()["paths"][PROXY_PATH]
    assert item["get"]["tags"] == ["proxy"]
    text = item["get"]["description"]
    for form in ("/proxy/server/{id}/", "/api/cluster/{cluster_id}/proxy/server/{id}/", "?to="):
        assert form in text
    assert not [p for p in document()["paths"] if p.startswith("/proxy") and p != PROXY_PATH]


def test_the_job_body_is_the_crds_workspace_spec() -> None:
    from guildnet.workspaces.crd import crd_manifest

    schemas = document()["components"]["schemas"]
    crd_spec = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    assert set(schemas["WorkspaceSpec"]["properties"]) == set(crd_spec["properties"])
    job = schemas["JobRequest"]
    assert set(job["properties"]) == {"name", *crd_spec["properties"]}
    assert job["additionalProperties"] is False


# -- the response check ---------------------------------------------------------------------


@attrs.define
class _Req:
    """What check_response reads of a twisted.web request (a plain value, no I/O)."""

    route_template: str
    method: bytes = b"GET"
    path: bytes = b"/"
    request_id: str = "rid-1"
    code: int = 0
    headers: dict[bytes, bytes] = attrs.Factory(dict)

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value


def test_the_check_is_on_for_the_test_suite() -> None:
    assert os.environ.get(VALIDATE_ENV) == "1"
    assert check.enabled()


def test_a_body_that_disagrees_becomes_a_500_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        monkeypatch.setenv(check.REPORT_ENV, str(report))
        req = _Req("/api/servers/{server_id}", path=b"/api/servers/a")
        body = write_json(req, 200, {"id": "a"})  # type: ignore[arg-type]
        assert req.code == 500
        out = json.loads(body)
        assert out["error"] == check.MISMATCH
        assert out["request_id"] == "rid-1"
        assert "GET /api/servers/{server_id} 200" in out["message"]
        assert "'name' is a required property" in out["message"]
        lines = [json.loads(x) for x in report.read_text().splitlines()]
        assert lines == [
            {"method": "GET", "path": "/api/servers/a", "status": 200, "problem": out["message"]}
        ]


def test_the_check_accepts_what_the_document_promises() -> None:
    ok: dict[str, Any] = {"error": "server_not_found", "message": "no", "request_id": "r"}
    assert check.response_problem("GET", "/api/servers/{server_id}", 404, ok) is None
    assert check.response_problem("GET", "/api/cluster/{cluster_id}/servers", 200, []) is None
    assert check.response_problem("GET", "/healthz", 200, {"status": "ok", "version": "1"}) is None
    # No route matched: the error shape still holds.
    assert check.response_problem("GET", "unmatched", 404, ok) is None
    assert "message" in (check.response_problem("GET", "unmatched", 404, {"error": "x"}) or "")


def test_the_check_refuses_undocumented_statuses_members_and_events() -> None:
    ok = {"error": "x", "message": "m", "request_id": "r"}
    assert check.response_problem("GET", "/healthz", 418, ok) == (
        "status 418 is not documented for GET /healthz"
    )
    extra = {"status": "ok", "version": "1", "secret": "no"}
    assert "'secret' was unexpected" in (
        check.response_problem("GET", "/healthz", 200, extra) or ""
    )
    assert check.event_problem("/sse/servers", "deleted", {"id": "a"}) is None
    assert check.event_problem("/sse/servers", "zap", {}) == (
        "SSE event 'zap' is not documented for GET /sse/servers"
    )
    assert check.event_problem("/sse/cluster/{cluster_id}/logs", None, {"pod": "p"}) is not None
