"""The role every route requires, keyed by ``(method, template)`` of ``route_table()``.

Levels, from least to most:

* ``public``: anyone who reaches the listener, identified or not (health probes, the
  UI's static files: the UI then asks ``/api/whoami``);
* ``any``: any identified caller, even with role ``none`` (``/api/whoami``, so a person
  without access learns who GuildNet thinks they are);
* ``user``: role user or admin;
* ``owner``: role user on a workspace they created, or admin (the route names the
  workspace: ``{server_id}`` in the path, ``?server=`` for ``/sse/logs``);
* ``admin``: clusters, stop-all, database drops, deploy and reconnect.

Lists and streams of workspaces (``user``) are filtered to the caller's own in their
handlers. A route missing from this table is refused (and a unit test walks
``route_table()`` so that none is).
"""

from __future__ import annotations

import enum
from typing import Final


class Level(enum.Enum):
    PUBLIC = "public"
    ANY = "any"
    USER = "user"
    OWNER = "owner"
    ADMIN = "admin"


P, A, U, OWN, ADM = Level.PUBLIC, Level.ANY, Level.USER, Level.OWNER, Level.ADMIN


def _both(method: str, rest: str, level: Level, head: str = "api") -> dict[tuple[str, str], Level]:
    """A route and its per-cluster twin (see ``workspaces.cluster_route``)."""
    return {
        (method, f"/{head}/{rest}"): level,
        (method, f"/{head}/cluster/{{cluster_id}}/{rest}"): level,
    }


REQUIRED: Final[dict[tuple[str, str], Level]] = {
    # health, metrics and the UI shell
    ("GET", "/healthz"): P,
    ("GET", "/readyz"): P,
    ("GET", "/"): P,
    ("GET", "/index.html"): P,
    ("GET", "/assets/"): P,
    ("GET", "/assets/{__rest__}"): P,
    # the API's description and its page: static, the same for everyone (like the UI's JS)
    ("GET", "/api/openapi.json"): P,
    ("GET", "/api/docs"): P,
    # Per-route counters and cluster names: for people of the tailnet, not for any
    # device on it (a scraper gets a tag in the policy, or uses METRICS_LISTEN).
    ("GET", "/metrics"): U,
    ("GET", "/api/whoami"): A,
    ("GET", "/api/ui-config"): U,
    # clusters
    ("GET", "/api/clusters"): U,
    ("GET", "/api/clusters/{cluster_id}"): U,
    ("POST", "/api/clusters"): ADM,
    ("DELETE", "/api/clusters/{cluster_id}"): ADM,
    **_both("GET", "health", U),
    # workspaces
    **_both("GET", "images", U),
    **_both("GET", "image-defaults", U),
    **_both("POST", "jobs", U),
    **_both("GET", "servers", U),  # filtered to the caller's own
    **_both("GET", "servers", U, head="sse"),  # filtered to the caller's own
    **_both("GET", "servers/{server_id}", OWN),
    **_both("DELETE", "servers/{server_id}", OWN),
    **_both("GET", "servers/{server_id}/password", OWN),
    **_both("GET", "servers/{server_id}/logs", OWN),
    **_both("GET", "logs", OWN, head="sse"),
    **_both("PATCH", "servers/{server_id}", OWN),
    **_both("POST", "servers/{server_id}/stop", OWN),
    **_both("POST", "servers/{server_id}/start", OWN),
    **_both("POST", "servers/{server_id}/restart", OWN),
    **_both("POST", "admin/stop-all", ADM),
    # the cluster's RethinkDB: a shared team database; schema drops are the admin's
    **_both("GET", "db", U),
    **_both("POST", "db", U),
    **_both("GET", "db/health", U),
    **_both("POST", "db/deploy", ADM),
    **_both("POST", "db/reconnect", ADM),
    **_both("GET", "db/{db}", U),
    **_both("DELETE", "db/{db}", ADM),
    **_both("GET", "db/{db}/tables", U),
    **_both("POST", "db/{db}/tables", U),
    **_both("GET", "db/{db}/tables/{table}", U),
    **_both("DELETE", "db/{db}/tables/{table}", ADM),
    **_both("GET", "db/{db}/tables/{table}/export", U),
    **_both("POST", "db/{db}/tables/{table}/import", U),
    **_both("POST", "db/{db}/tables/{table}/indexes", U),
    **_both("DELETE", "db/{db}/tables/{table}/indexes/{index}", ADM),
    **_both("POST", "db/{db}/tables/{table}/query", U),
    **_both("GET", "db/{db}/tables/{table}/rows", U),
    **_both("POST", "db/{db}/tables/{table}/rows", U),
    **_both("GET", "db/{db}/tables/{table}/rows/{key}", U),
    **_both("PUT", "db/{db}/tables/{table}/rows/{key}", U),
    **_both("PATCH", "db/{db}/tables/{table}/rows/{key}", U),
    **_both("DELETE", "db/{db}/tables/{table}/rows/{key}", U),
    **_both("GET", "db/{db}/tables/{table}/changes", U, head="sse"),
}


def required_level(method: bytes | str, template: str) -> Level | None:
    """The level ``method template`` requires; None when undeclared (then: refused).

    HEAD is GET's (twisted.web answers HEAD with the GET handler).
    """
    name = method.decode("latin-1") if isinstance(method, bytes) else method
    name = name.upper()
    if name == "HEAD":
        name = "GET"
    return REQUIRED.get((name, template))
