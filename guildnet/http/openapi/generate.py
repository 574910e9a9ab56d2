"""The OpenAPI 3.1 document, built from ``route_table()`` and the docs table.

Pure: ``build(routes)`` takes the routes the router answers and returns the document, so
what is documented is exactly what is served (``GET /api/openapi.json`` builds it once
per process from the live router). A route with no docs entry raises ``Undocumented``;
the tests also prove the reverse (no entry without a route).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from guildnet import __version__
from guildnet.auth.routes import Level, required_level
from guildnet.http.openapi.model import JSON, Op, Resp, Schema
from guildnet.http.openapi.operations import OPERATIONS, PATH_PARAMS
from guildnet.http.openapi.schemas import components, ref
from guildnet.http.router import RouteEntry

OPERATIONS_MODULE: Final = "guildnet/http/openapi/operations.py"
_TWIN: Final = re.compile(r"\A/(api|sse)/cluster/\{cluster_id\}/(.+)\Z")
_PARAM: Final = re.compile(r"\{([^{}]+)\}")

ERROR_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "Bad input; `field` names the parameter or body member at fault.",
    403: "Refused: `forbidden` (the caller's role, ownership, a cross-site request; "
    "`reason`, `role` and `required` say which) or RethinkDB permissions.",
    404: "No such cluster, workspace, database, table, row or file (`field` says which).",
    409: "Conflict: it exists already, or cannot be deleted.",
    413: "The request body is too large.",
    415: "The body must be application/json.",
    422: "Understood but refused (the cluster or RethinkDB said no; a query timed out).",
    500: "Internal error; the request id finds it in the log.",
    502: "The cluster refused or failed (its message, without secrets).",
    503: "Not available right now (cluster, caches or RethinkDB); Retry-After may say when.",
}

TAGS: Final = [
    {"name": "health", "description": "Liveness, readiness, per-cluster health, metrics."},
    {"name": "clusters", "description": "The clusters the Host App manages."},
    {"name": "workspaces", "description": "IDE workspaces: launch, inspect, logs, live changes."},
    {"name": "db", "description": "RethinkDB: databases, tables, rows, queries, changefeeds."},
    {"name": "proxy", "description": "The reverse proxy to workspaces and allowed targets."},
    {"name": "access", "description": "Who is asking, and what their role allows."},
    {"name": "ui", "description": "The browser UI and its configuration."},
    {"name": "docs", "description": "This description and its page."},
]

PROXY_PATH: Final = "/proxy/{proxy_path}"
PROXY_DESCRIPTION: Final = """\
Not a JSON API route: the reverse proxy, which takes a request over at its head and streams
it (any method, any body, WebSocket upgrades) to its target. Its forms:

* `/proxy/server/{id}/...`: a workspace of the default cluster, by name (its one canonical
  URL); `/api/cluster/{cluster_id}/proxy/server/{id}/...` for another cluster's.
* `/proxy/{host}:{port}/...` (or `/proxy/https://{host}:{port}/...`): an explicit target,
  allowed only when it is a managed workspace Service or on the allowlist
  (`HOSTAPP_PROXY_ALLOWLIST`).
* `/proxy?to={host}:{port}&path=/p`: redirected to the path form.

Non-canonical spellings (missing trailing slash, encoded ids, upper-case hosts) are redirected
(307/308). The upstream's answers pass through unchanged apart from rewritten `Location` and
cookie paths; the proxy's own failures use the JSON error shape: 400 (a malformed proxy
path), 403 (a target the policy refuses), 404 (no such workspace), 502 (the upstream could
not be reached or failed), 503 (not ready yet), 504 (no answer in time). Exchanges have idle
timeouts, never whole-exchange deadlines.
"""


#: What each level of ``guildnet.auth.routes.REQUIRED`` means, for the descriptions.
ROLE_TEXT: Final[dict[Level | None, str]] = {
    Level.PUBLIC: "anyone who reaches the listener",
    Level.ANY: "any identified caller, even with role none",
    Level.USER: "role user or admin",
    Level.OWNER: "the workspace's owner (role user) or an admin",
    Level.ADMIN: "role admin",
}


class Undocumented(LookupError):
    """A route the router answers has no entry in the docs table."""


def docs_key(method: str, template: str, routes: set[tuple[str, str]]) -> tuple[str, str]:
    """The docs-table key of a route: a per-cluster twin maps to its default form."""
    m = _TWIN.match(template)
    if m is not None:
        default = f"/{m.group(1)}/{m.group(2)}"
        if (method, default) in routes:
            return method, default
    return method, template


def is_twin(method: str, template: str, routes: set[tuple[str, str]]) -> bool:
    return docs_key(method, template, routes) != (method, template)


def cluster_scoped(method: str, template: str, routes: set[tuple[str, str]]) -> bool:
    """A route that has (or is) a per-cluster twin: its cluster id may be 400/404."""
    if is_twin(method, template, routes):
        return True
    head, _, rest = template.lstrip("/").partition("/")
    return (method, f"/{head}/cluster/{{cluster_id}}/{rest}") in routes


def error_statuses(op: Op, scoped: bool, level: Level | None = None) -> list[int]:
    """The op's error statuses, plus 500 always, 400/404 for a cluster id, 403 unless public."""
    extra = (400, 404) if scoped else ()
    refused = (403,) if level is not Level.PUBLIC else ()
    return sorted({*op.errors, *extra, *refused, 500})


def build(
    routes: Iterable[RouteEntry], server_url: str = "/", *, strict: bool = False
) -> dict[str, Any]:
    """The document for ``routes``.

    A route without a docs entry raises Undocumented when ``strict`` (the completeness
    test); otherwise it is listed with ``x-undocumented`` saying what to add, so one new
    route does not take /api/openapi.json down, and the response check fails exactly that
    route's responses with the same message.
    """
    entries = list(routes)
    keys = {(r.method, r.template) for r in entries}
    paths: dict[str, dict[str, Any]] = {}
    for route in entries:
        key = docs_key(route.method, route.template, keys)
        op = OPERATIONS.get(key)
        item = paths.setdefault(route.template, {})
        if op is None:
            message = missing_message(route.method, route.template, route.endpoint)
            if strict:
                raise Undocumented(message)
            item[route.method.lower()] = {
                "operationId": route.endpoint,
                "summary": "(not documented yet)",
                "x-undocumented": message,
                "responses": {"default": {"description": "Not documented yet."}},
            }
        else:
            scoped = cluster_scoped(route.method, route.template, keys)
            item[route.method.lower()] = _operation(route, op, scoped)
        params = _path_params(route.template)
        if params:
            item["parameters"] = params
    paths[PROXY_PATH] = _proxy_item()
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "GuildNet Host App API",
            "version": __version__,
            "description": (
                "One HTTPS origin: this JSON API, Server-Sent Events streams, the reverse "
                "proxy under /proxy and the browser UI. Cluster-scoped routes exist twice: "
                "`/api/...` for the default cluster and `/api/cluster/{cluster_id}/...` (and "
                "`/sse/cluster/{cluster_id}/...`) for any registered one. Every error is "
                "JSON: `{error, message, request_id[, field]}`."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": server_url}],
        "tags": TAGS,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components(),
            "responses": {
                str(status): {
                    "description": text,
                    "content": {"application/json": {"schema": ref("Error")}},
                }
                for status, text in ERROR_DESCRIPTIONS.items()
            },
        },
    }


def missing_message(method: str, template: str, endpoint: str) -> str:
    twin = _TWIN.match(template)
    where = (
        f"(its per-cluster twin is documented from the default form's entry: add "
        f"/{twin.group(1)}/{twin.group(2)})"
        if twin
        else ""
    )
    return (
        f"{method} {template} (endpoint {endpoint}) has no OpenAPI entry: add "
        f'("{method}", "{template}"): Op(...) to OPERATIONS in {OPERATIONS_MODULE} {where}'
    ).rstrip()


def _path_params(template: str) -> list[dict[str, Any]]:
    out = []
    for name in _PARAM.findall(template):
        description, schema = PATH_PARAMS.get(name, ("", {"type": "string"}))
        out.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": schema,
            }
        )
    return out


def _content(content: Mapping[str, Schema]) -> dict[str, Any]:
    return {media: {"schema": schema} for media, schema in content.items()}


def _response(resp: Resp) -> dict[str, Any]:
    out: dict[str, Any] = {"description": resp.description}
    if resp.content:
        out["content"] = _content(resp.content)
    if resp.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in resp.headers.items()
        }
    return out


def _operation(route: RouteEntry, op: Op, scoped: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": route.endpoint,
        "summary": op.summary,
        "tags": [op.tag],
    }
    description = op.description
    if scoped:
        twin = _TWIN.match(route.template)
        description = (
            description
            + ("\n\n" if description else "")
            + (
                "For the cluster named by `cluster_id`; the same route without "
                "`/cluster/{cluster_id}` is the default cluster's."
                if twin
                else "For the default cluster; `/{api|sse}/cluster/{cluster_id}/...` is "
                "the same for another cluster."
            )
        )
    if description:
        out["description"] = description
    if op.query:
        out["parameters"] = [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": p.description,
                "schema": p.schema,
            }
            for p in op.query
        ]
    if op.body is not None:
        body: dict[str, Any] = {"required": op.body.required, "content": _content(op.body.content)}
        if op.body.description:
            body["description"] = op.body.description
        out["requestBody"] = body
    level = required_level(route.method, route.template)
    out["x-required-role"] = level.value if level is not None else "undeclared"
    out["description"] = (
        out.get("description", "")
        + ("\n\n" if out.get("description") else "")
        + f"Requires: **{out['x-required-role']}** ({ROLE_TEXT.get(level, 'refused')})."
    )
    responses: dict[str, Any] = {str(s): _response(r) for s, r in sorted(op.responses.items())}
    for status in error_statuses(op, scoped, level):
        if status not in op.responses:
            responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
            continue
        # The same status with the route's own body (a 503 health report) or an error.
        content = responses[str(status)].setdefault("content", {})
        own = content.get(JSON, {}).get("schema")
        content[JSON] = {"schema": {"oneOf": [own, ref("Error")]} if own else ref("Error")}
        responses[str(status)]["description"] += " Or an error: " + ERROR_DESCRIPTIONS[status]
    out["responses"] = responses
    if op.sse is not None:
        out["x-sse-events"] = {
            name: {"description": e.description, "schema": e.schema} for name, e in op.sse.items()
        }
        events = "\n".join(
            f"- `{name}`: {e.description} Data: {_schema_name(e.schema)}."
            for name, e in op.sse.items()
        )
        out["description"] = out.get("description", "") + f"\n\nEvents:\n\n{events}"
    return out


def _schema_name(schema: Schema) -> str:
    target = str(schema.get("$ref", ""))
    return f"`{target.rsplit('/', 1)[-1]}`" if target else "JSON"


def _proxy_item() -> dict[str, Any]:
    param = {
        "name": "proxy_path",
        "in": "path",
        "required": True,
        "description": "server/{id}/..., {host}:{port}/... or https://{host}:{port}/... "
        "(the rest of the path, slashes included).",
        "schema": {"type": "string"},
    }
    errors = {
        str(s): {"$ref": f"#/components/responses/{s}"} for s in (400, 403, 404, 500, 502, 503)
    }
    op = {
        "tags": ["proxy"],
        "summary": "Reverse proxy to a workspace or an allowed target",
        "description": PROXY_DESCRIPTION,
        "responses": {
            "default": {"description": "Whatever the upstream answered, streamed."},
            "307": {"description": "Redirect to the canonical spelling (method kept)."},
            "308": {"description": "Permanent redirect to the canonical spelling."},
            **errors,
            "504": {
                "description": "The upstream did not answer in time.",
                "content": {"application/json": {"schema": ref("Error")}},
            },
        },
    }
    methods = ("get", "put", "post", "delete", "options", "head", "patch")
    return {
        "parameters": [param],
        **{m: {**op, "operationId": f"proxy_{m}"} for m in methods},
    }
