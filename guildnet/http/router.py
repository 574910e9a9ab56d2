"""The one Klein router of the Host App.

Route groups live in their own modules as mixins of HostAPI, all registering
on this router, so one Site serves them and the shared error handlers apply
to every route.

The router also names the matched route's template on the request
(``request.route_template``, e.g. ``/api/servers/{server_id}``): /metrics labels
requests by it, never by the raw path.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from klein import Klein

_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def template_of(rule: str) -> str:
    """A werkzeug rule as an OpenAPI-style template: ``/a/<b>/<path:c>`` -> ``/a/{b}/{c}``."""
    return _VARIABLE.sub(r"{\1}", rule)


#: endpoint name -> template, filled from the url map on a miss (routes register at import).
_templates: dict[str, str] = {}


class MeteredKlein(Klein):
    """Klein that records which route template served each request."""

    def execute_endpoint(self, endpoint: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        template = _templates.get(endpoint)
        if template is None:
            _templates.update(
                (str(r.endpoint), template_of(r.rule)) for r in self.url_map.iter_rules()
            )
            template = _templates.setdefault(endpoint, endpoint)
        request.route_template = template
        return super().execute_endpoint(endpoint, request, *args, **kwargs)


router = MeteredKlein()


@attrs.frozen(order=True)
class RouteEntry:
    """One (method, template) the router answers: the key of every per-route table.

    Authorization (required role) and the OpenAPI description are tables keyed by
    ``(method, template)``; tests walk ``route_table()`` to prove no route is missing
    from either, so the tables cannot drift from what the server answers.
    """

    method: str
    template: str
    endpoint: str


def route_table(app: Klein | None = None) -> list[RouteEntry]:
    """Every (method, template) registered on ``app`` (default: the Host App's router).

    HEAD and OPTIONS that werkzeug adds implicitly are left out; import
    ``guildnet.http.api`` first so that every route module has registered.
    """
    url_map = (app or router).url_map
    out: set[RouteEntry] = set()
    for rule in url_map.iter_rules():
        template = template_of(rule.rule)
        for method in rule.methods or ():
            if method == "OPTIONS" or (method == "HEAD" and "GET" in (rule.methods or ())):
                continue
            out.add(RouteEntry(method, template, str(rule.endpoint)))
    return sorted(out)
