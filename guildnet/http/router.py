"""The one Klein router of the Host App.

Route groups live in their own modules as mixins of HostAPI, all registering
on this router, so one Site serves them and the shared error handlers apply
to every route.

The router also names the matched route's template on the request
(``request.route_template``, e.g. ``/api/servers/{server_id}``): /metrics labels
requests by it, never by the raw path. With the template known, it asks the bound
instance's ``gate`` (authorization, ``http.access``) before every handler: the one
place where a route's required role is enforced.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable
from typing import Any

import attrs
from klein import Klein
from twisted.internet.defer import Deferred

_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def template_of(rule: str) -> str:
    """A werkzeug rule as an OpenAPI-style template: ``/a/<b>/<path:c>`` -> ``/a/{b}/{c}``."""
    return _VARIABLE.sub(r"{\1}", rule)


#: endpoint name -> template, filled from the url map on a miss (routes register at import).
_templates: dict[str, str] = {}


class GateMissing(Exception):
    """The router is used without an instance that authorizes requests (a bug)."""


class MeteredKlein(Klein):
    """Klein that records which route template served each request and authorizes it.

    The bound instance's ``gate(request, template, kwargs)`` runs before the handler:
    it raises to refuse, returns None to go on, or an awaitable the handler waits for
    (an ownership check that needs the workspace caches). No gate: every request fails.
    """

    def execute_endpoint(self, endpoint: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        template = _templates.get(endpoint)
        if template is None:
            _templates.update(
                (str(r.endpoint), template_of(r.rule)) for r in self.url_map.iter_rules()
            )
            template = _templates.setdefault(endpoint, endpoint)
        request.route_template = template
        gate = getattr(self._instance, "gate", None)
        if gate is None:
            raise GateMissing(f"no authorization gate for {template}")
        waiting = gate(request, template, kwargs)
        if waiting is None:
            return super().execute_endpoint(endpoint, request, *args, **kwargs)
        return Deferred.fromCoroutine(self._after(waiting, endpoint, request, args, kwargs))

    async def _after(
        self,
        waiting: Awaitable[None],
        endpoint: str,
        request: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        await waiting
        result = Klein.execute_endpoint(self, endpoint, request, *args, **kwargs)
        if isinstance(result, Deferred) or inspect.isawaitable(result):
            result = await result
        return result


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
