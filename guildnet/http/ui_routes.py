"""Mixin of HostAPI: the browser UI at ``/`` (see ``guildnet.http.static``).

Only ``/``, ``/index.html`` and ``/assets/...`` are routed here: the UI uses hash routes
(``/#/c/<cluster>/...``), so no other path needs the app shell, and unknown paths keep
the router's JSON 404/405 answers. Specific routes such as ``/api/...`` never reach these.

The routes register on the shared router when this module is imported, and the handlers
keep no state on ``self``: one ``StaticUI`` per process serves every site.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from twisted.web.iweb import IRequest

from guildnet.http.router import router
from guildnet.http.static import WEB_DIR, StaticUI


@cache
def ui_resource() -> StaticUI:
    return StaticUI(WEB_DIR)


class UIRoutes:
    """Serves the built UI from ``guildnet/web/``."""

    @router.route("/", methods=["GET", "HEAD"])
    def ui_index(self, request: IRequest) -> Any:
        return ui_resource()

    @router.route("/index.html", methods=["GET", "HEAD"])
    def ui_index_html(self, request: IRequest) -> Any:
        return ui_resource()

    @router.route("/assets/", branch=True, methods=["GET", "HEAD"])
    def ui_assets(self, request: IRequest) -> Any:
        return ui_resource()
