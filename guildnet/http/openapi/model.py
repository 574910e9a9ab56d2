"""What the docs table says about one route: parameters, body, responses, SSE events.

Plain frozen values; ``document`` turns them into OpenAPI objects, ``check`` reads the
response schemas from the finished document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

Schema = dict[str, Any]

JSON = "application/json"


@attrs.frozen
class Param:
    """A query parameter (path parameters come from the template, see ``PATH_PARAMS``)."""

    name: str
    description: str
    schema: Schema = attrs.field(factory=lambda: {"type": "string"})
    required: bool = False


@attrs.frozen
class Body:
    """A request body: one schema per media type."""

    content: Mapping[str, Schema]
    description: str = ""
    required: bool = True


@attrs.frozen
class Resp:
    """A success response: one schema per media type; no content for bodiless answers."""

    description: str
    content: Mapping[str, Schema] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)  # name -> description


@attrs.frozen
class SSEEvent:
    """One ``event:`` type of a stream and the schema of its JSON ``data``."""

    description: str
    schema: Schema


@attrs.frozen
class Op:
    """One (method, template) of the docs table (and its per-cluster twin, if any).

    ``errors`` lists the statuses answered with the JSON error shape; 500 is added to
    every operation, and 400/404 for the cluster id to cluster-scoped ones.
    """

    summary: str
    tag: str
    responses: Mapping[int, Resp]
    description: str = ""
    query: tuple[Param, ...] = ()
    body: Body | None = None
    errors: tuple[int, ...] = ()
    sse: Mapping[str, SSEEvent] | None = None


def json_body(schema: Schema, description: str = "", required: bool = True) -> Body:
    return Body({JSON: schema}, description, required)


def json_resp(schema: Schema, description: str, **headers: str) -> Resp:
    return Resp(description, {JSON: schema}, headers)
