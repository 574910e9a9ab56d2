"""The API's OpenAPI 3.1 description, generated from the router's own route table.

``document()`` is what ``GET /api/openapi.json`` serves: ``route_table()`` (every
(method, template) the Klein router answers) joined with the docs table
(``operations.OPERATIONS``) and the schemas (``schemas``), plus the ``/proxy`` prefix.
``check`` holds responses to it in tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def document() -> dict[str, Any]:
    """The document for the Host App's router (every route module imported first)."""
    import guildnet.http.api  # noqa: F401  (registers every route)
    from guildnet.http.openapi.generate import build
    from guildnet.http.router import route_table

    return build(route_table())
