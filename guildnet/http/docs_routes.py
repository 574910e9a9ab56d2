"""Mixin of HostAPI: the API's description (``/api/openapi.json``) and its page (``/api/docs``).

The document is generated once per process from the live router (``guildnet.http.openapi``)
and served as cached bytes. The page is ``docs.html`` of the UI build: Swagger UI from
npm (swagger-ui-dist), bundled by Vite into ``guildnet/web/`` like the UI itself, so it
is served from this origin under the same CSP (no CDN, nothing inline).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from twisted.web.iweb import IRequest

from guildnet.http.router import router
from guildnet.http.ui_routes import ui_resource

DOCS_PAGE = "docs.html"


@cache
def openapi_bytes() -> bytes:
    from guildnet.http.openapi import document

    return json.dumps(document(), separators=(",", ":")).encode() + b"\n"


class DocsRoutes:
    """``GET /api/openapi.json`` and ``GET /api/docs``."""

    @router.route("/api/openapi.json", methods=["GET"])
    def openapi_json(self, request: IRequest) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        return openapi_bytes()

    @router.route("/api/docs", methods=["GET"])
    def api_docs(self, request: IRequest) -> Any:
        return ui_resource().page(request, DOCS_PAGE)
