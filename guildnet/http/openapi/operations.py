"""The docs table: one ``Op`` per (method, template) the router answers.

Keyed like every per-route table (``guildnet.http.router.route_table``). A cluster-scoped
route (``cluster_route``) is listed once, under its default-cluster template
(``/api/servers``); its per-cluster twin (``/api/cluster/{cluster_id}/servers``) is
documented from the same entry. ``tests/unit/test_openapi.py`` walks the route table and
names any route missing here; a new route adds its entry to ``OPERATIONS`` below.
"""

from __future__ import annotations

from typing import Final

from guildnet.http.openapi.model import JSON, Body, Op, Param, Resp, SSEEvent, json_body, json_resp
from guildnet.http.openapi.schemas import ref

HTML = "text/html"

#: Path parameters, by the name the templates use.
PATH_PARAMS: Final[dict[str, tuple[str, dict[str, object]]]] = {
    "cluster_id": (
        "A registered cluster's id (a DNS label); `default` is the configured one.",
        {"type": "string", "maxLength": 63},
    ),
    "server_id": (
        "A workspace name (DNS-1035 label, at most 53 characters).",
        {"type": "string", "maxLength": 53},
    ),
    "db": ("A RethinkDB database name.", {"type": "string"}),
    "table": ("A table name.", {"type": "string"}),
    "index": ("A secondary index name.", {"type": "string"}),
    "key": (
        "A primary key: a string as is, or a JSON number/boolean/array "
        "(see guildnet/rdb/keys.py). May contain `/` (the rest of the path).",
        {"type": "string"},
    ),
    "__rest__": ("A file under the UI build's assets/.", {"type": "string"}),
}

_WS_ERRORS: Final = (503,)  # the cluster or its caches are not available
_WS_WRITE_ERRORS: Final = (502, 503)
_BODY_ERRORS: Final = (400, 413, 415)
_DB_ERRORS: Final = (400, 403, 404, 422, 503)
_DB_WRITE_ERRORS: Final = (*_DB_ERRORS, 409, 413, 415)

_CONFIRM = Param(
    "confirm", "Repeat the name being dropped (a guard against accidents).", required=True
)
_CONFLICT = Param(
    "conflict",
    "What an existing primary key means: error (default), replace or update.",
    {"type": "string", "enum": ["error", "replace", "update"], "default": "error"},
)
_TAIL = Param("tail", "Lines per pod to start from (1-10000).", {"type": "integer", "minimum": 1})
_CONTAINER = Param("container", "One container of the pods (a DNS label); default: all.")
_LAST_EVENT_ID = Param(
    "lastEventId",
    "Resume position, for clients that cannot send the Last-Event-ID header.",
)

_SSE_NOTE = (
    "A `text/event-stream`: each event's `data` is one JSON value (schemas under "
    "`x-sse-events`). Comment lines (`: heartbeat`) every 15 s keep idle streams open; the "
    "stream has no total deadline. It ends when the client leaves or the cluster is removed."
)

_UI = Resp(
    "The UI's app shell or file (HTML, JS, CSS, fonts...).",
    {HTML: {"type": "string"}, "*/*": {"type": "string", "format": "binary"}},
)


def _lifecycle(summary: str) -> Op:
    """stop, start and restart: idempotent, JSON or (from the proxy's page) a form post."""
    return Op(
        summary,
        "workspaces",
        {
            200: json_resp(ref("ServerSummary"), "Done (or already so)."),
            303: Resp(
                "A form post (the proxy's stopped page): back to the workspace.",
                headers={"Location": "The workspace's URL."},
            ),
        },
        "Idempotent. No body, an empty JSON body, or an HTML form post (which must come from "
        "this origin; other sites' requests are refused with 403).",
        body=Body(
            {
                JSON: {"type": "object", "maxProperties": 0},
                "application/x-www-form-urlencoded": {"type": "object"},
            },
            "Nothing needed.",
            required=False,
        ),
        errors=(*_BODY_ERRORS, 403, *_WS_WRITE_ERRORS),
    )


_NOT_MODIFIED = Resp("The ETag in If-None-Match still matches.")
_NOT_BUILT = Resp(
    "The UI is not built (`make ui`): an HTML page saying so.", {HTML: {"type": "string"}}
)
_UI_PAGE: Final = {200: _UI, 304: _NOT_MODIFIED, 503: _NOT_BUILT}

OPERATIONS: Final[dict[tuple[str, str], Op]] = {
    # -- health and process ----------------------------------------------------------------
    ("GET", "/healthz"): Op(
        "Liveness: the process answers",
        "health",
        {200: json_resp(ref("Healthz"), "The process is up.")},
    ),
    ("GET", "/readyz"): Op(
        "Readiness of the default cluster",
        "health",
        {
            200: json_resp(ref("Ready"), "Ready: reactor, registry and the default cluster ok."),
            503: json_resp(ref("Ready"), "Not ready; `checks` says which part failed."),
        },
        "Reports the reactor, the cluster registry and the DEFAULT cluster's API only; "
        "clusters added at run time never change it (see GET /api/cluster/{cluster_id}/health). "
        "RethinkDB is reported but not fatal.",
    ),
    ("GET", "/metrics"): Op(
        "Prometheus metrics",
        "health",
        {
            200: Resp(
                "The Prometheus text format, or OpenMetrics when Accept asks for it.",
                {
                    "text/plain": {"type": "string"},
                    "application/openmetrics-text": {"type": "string"},
                },
            )
        },
    ),
    ("GET", "/api/health"): Op(
        "A cluster's health, part by part",
        "health",
        {
            200: json_resp(ref("ClusterHealth"), "Every part is ok (or probe=false)."),
            503: json_resp(ref("ClusterHealth"), "A part failed; `failing` names it."),
        },
        "Kubernetes API, informers, operator leadership, localdb, port-forwards and RethinkDB "
        "(when used), each with ok, a reason and when it was checked.",
        query=(
            Param(
                "probe",
                "false: answer 200 whatever the parts say (the body tells).",
                {"type": "string", "enum": ["true", "false"], "default": "true"},
            ),
        ),
        errors=(503,),
    ),
    ("GET", "/api/whoami"): Op(
        "Who the Host App thinks the caller is, and their role",
        "access",
        {200: json_resp(ref("WhoAmI"), "The caller (role none: identified, no access).")},
    ),
    ("GET", "/api/ui-config"): Op(
        "What the UI needs to start",
        "ui",
        {200: json_resp(ref("UIConfig"), "Version, origin, default cluster and features.")},
    ),
    ("GET", "/api/openapi.json"): Op(
        "This OpenAPI description",
        "docs",
        {200: json_resp({"type": "object"}, "The OpenAPI 3.1 document.")},
    ),
    ("GET", "/api/docs"): Op(
        "The API reference page (Swagger UI over /api/openapi.json)",
        "docs",
        _UI_PAGE,
    ),
    # -- clusters --------------------------------------------------------------------------
    ("GET", "/api/clusters"): Op(
        "List clusters",
        "clusters",
        {200: json_resp(ref("ClusterList"), "Every cluster with its reachability.")},
    ),
    ("POST", "/api/clusters"): Op(
        "Add a cluster from a kubeconfig",
        "clusters",
        {201: json_resp(ref("Cluster"), "Added; the cluster answered.")},
        body=json_body(ref("AddCluster")),
        errors=(*_BODY_ERRORS, 409, 422),
    ),
    ("GET", "/api/clusters/{cluster_id}"): Op(
        "One cluster",
        "clusters",
        {200: json_resp(ref("Cluster"), "The cluster and its reachability.")},
        errors=(400, 404),
    ),
    ("DELETE", "/api/clusters/{cluster_id}"): Op(
        "Remove a cluster",
        "clusters",
        {200: json_resp(ref("Deleted"), "Removed; its streams and workers are stopped.")},
        errors=(400, 404, 409),
    ),
    # -- workspaces --------------------------------------------------------------------------
    ("POST", "/api/jobs"): Op(
        "Launch a workspace",
        "workspaces",
        {
            202: json_resp(
                ref("JobAccepted"),
                "The Workspace exists; the operator brings it up.",
                Location="The server's API URL.",
            )
        },
        body=json_body(ref("JobRequest")),
        errors=(*_BODY_ERRORS, 409, *_WS_WRITE_ERRORS),
    ),
    ("GET", "/api/servers"): Op(
        "List workspaces",
        "workspaces",
        {200: json_resp(ref("ServerList"), "From the informer cache.")},
        errors=_WS_ERRORS,
    ),
    ("GET", "/api/servers/{server_id}"): Op(
        "One workspace: spec, status, pods and events",
        "workspaces",
        {200: json_resp(ref("ServerDetail"), "The workspace.")},
        errors=(*_WS_ERRORS,),
    ),
    ("DELETE", "/api/servers/{server_id}"): Op(
        "Delete a workspace",
        "workspaces",
        {200: json_resp(ref("ServerDeletedResult"), "Deleted (pods terminate asynchronously).")},
        query=(
            Param(
                "keep_volume",
                "true: keep the home volume (a new workspace of the same name adopts it).",
                {"type": "string", "enum": ["true", "false"]},
            ),
        ),
        errors=_WS_WRITE_ERRORS,
    ),
    ("PATCH", "/api/servers/{server_id}"): Op(
        "Change a workspace's image, env, args, command, resources, ports, labels or proxy",
        "workspaces",
        {200: json_resp(ref("ServerSummary"), "Changed; the operator rolls the pod.")},
        "409 when the workspace changed meanwhile (read it again). A request from another "
        "site (an Origin that is neither this origin nor FRONTEND_ORIGIN) is refused (403).",
        body=json_body(ref("ServerChange")),
        errors=(*_BODY_ERRORS, 403, 409, *_WS_WRITE_ERRORS),
    ),
    ("POST", "/api/servers/{server_id}/stop"): _lifecycle(
        "Stop a workspace: scale to zero, keep volume, Secret and Service (phase Stopped)"
    ),
    ("POST", "/api/servers/{server_id}/start"): _lifecycle(
        "Start a stopped workspace again (same volume and password)"
    ),
    ("POST", "/api/servers/{server_id}/restart"): _lifecycle(
        "Restart a workspace: a new pod, same volume and password (like rollout restart)"
    ),
    ("GET", "/api/servers/{server_id}/password"): Op(
        "A workspace's generated password",
        "workspaces",
        {200: json_resp(ref("Password"), "The only response that carries it.")},
        errors=_WS_ERRORS,
    ),
    ("GET", "/api/servers/{server_id}/logs"): Op(
        "Recent log lines of a workspace's pods",
        "workspaces",
        {
            200: Resp(
                "Plain text (pod headers and lines), or JSON with format=json.",
                {"text/plain": {"type": "string"}, JSON: ref("ServerLogs")},
                {"X-GuildNet-Pods": "The pods read, comma-separated."},
            )
        },
        query=(
            _TAIL,
            _CONTAINER,
            Param(
                "previous",
                "The previous (crashed) container's logs.",
                {"type": "boolean", "default": False},
            ),
            Param(
                "format",
                "text (default) or json.",
                {"type": "string", "enum": ["text", "json"], "default": "text"},
            ),
        ),
        errors=(*_WS_ERRORS, 502),
    ),
    ("POST", "/api/admin/stop-all"): Op(
        "Delete every GuildNet-managed workspace",
        "workspaces",
        {200: json_resp(ref("StopAll"), "What was deleted, and what failed.")},
        "Only Workspaces labelled as created by GuildNet; an authoritative list, not the cache.",
        errors=_WS_WRITE_ERRORS,
    ),
    ("GET", "/api/images"): Op(
        "Image presets for the launch form",
        "workspaces",
        {200: json_resp(ref("ImageList"), "The presets.")},
    ),
    ("GET", "/api/image-defaults"): Op(
        "The operator's defaults for an image",
        "workspaces",
        {200: json_resp(ref("ImageDefaults"), "Ports, env, args and path mode it would use.")},
        query=(Param("image", "An image reference.", required=True),),
    ),
    ("GET", "/sse/servers"): Op(
        "Live workspace changes",
        "workspaces",
        {200: Resp("The stream.", {"text/event-stream": {"type": "string"}})},
        _SSE_NOTE,
        errors=_WS_ERRORS,
        sse={
            "snapshot": SSEEvent("First: every workspace.", ref("ServersSnapshot")),
            "created": SSEEvent("A workspace appeared.", ref("ServerState")),
            "updated": SSEEvent("Something a UI shows changed.", ref("ServerState")),
            "deleted": SSEEvent("A workspace is gone.", ref("ServerDeleted")),
            "event": SSEEvent("A Kubernetes event about a workspace's pod.", ref("ServerEvent")),
        },
    ),
    ("GET", "/sse/logs"): Op(
        "Follow a workspace's logs",
        "workspaces",
        {200: Resp("The stream.", {"text/event-stream": {"type": "string"}})},
        _SSE_NOTE + " Each line has an `id:` (a cursor): reconnecting with Last-Event-ID "
        "resumes after it.",
        query=(
            Param("server", "The workspace name.", required=True),
            _TAIL,
            _CONTAINER,
            _LAST_EVENT_ID,
        ),
        errors=_WS_ERRORS,
        sse={
            "message": SSEEvent("One log line (the default event type).", ref("LogLine")),
            "pods": SSEEvent("The pods being followed changed.", ref("LogPods")),
            "notice": SSEEvent(
                "Something worth showing (a pod's stream ended...).", ref("LogNotice")
            ),
            "end": SSEEvent("The follow ended; the stream closes.", ref("LogEnd")),
        },
    ),
    # -- RethinkDB ---------------------------------------------------------------------------
    ("GET", "/api/db/health"): Op(
        "RethinkDB connection state and changefeeds",
        "db",
        {
            200: json_resp(ref("DBHealth"), "Connected."),
            503: json_resp(ref("DBHealth"), "Not connected; `reason` classifies why."),
        },
        errors=(503,),
    ),
    ("POST", "/api/db/reconnect"): Op(
        "Reconnect to RethinkDB now",
        "db",
        {202: json_resp(ref("DBState"), "A new attempt started.")},
        errors=(503,),
    ),
    ("POST", "/api/db/deploy"): Op(
        "Deploy RethinkDB into the cluster (server-side apply)",
        "db",
        {200: json_resp(ref("DeployResult"), "Applied; the manager reconnects.")},
        body=json_body(ref("DeployRequest"), "Empty: the defaults.", required=False),
        errors=(*_BODY_ERRORS, 422, 502, 503),
    ),
    ("GET", "/api/db"): Op(
        "List databases",
        "db",
        {200: json_resp(ref("DatabaseList"), "The databases (system ones hidden).")},
        errors=_DB_ERRORS,
    ),
    ("POST", "/api/db"): Op(
        "Create a database",
        "db",
        {201: json_resp(ref("Database"), "Created.", Location="The database's URL.")},
        body=json_body(ref("CreateDatabase")),
        errors=_DB_WRITE_ERRORS,
    ),
    ("GET", "/api/db/{db}"): Op(
        "A database and its tables",
        "db",
        {200: json_resp(ref("DatabaseInfo"), "The database.")},
        errors=_DB_ERRORS,
    ),
    ("DELETE", "/api/db/{db}"): Op(
        "Drop a database",
        "db",
        {200: json_resp(ref("Dropped"), "Dropped.")},
        query=(_CONFIRM,),
        errors=_DB_ERRORS,
    ),
    ("GET", "/api/db/{db}/tables"): Op(
        "List tables",
        "db",
        {200: json_resp(ref("TableList"), "The tables with counts.")},
        errors=_DB_ERRORS,
    ),
    ("POST", "/api/db/{db}/tables"): Op(
        "Create a table",
        "db",
        {201: json_resp(ref("TableInfo"), "Created.", Location="The table's URL.")},
        body=json_body(ref("CreateTable")),
        errors=_DB_WRITE_ERRORS,
    ),
    ("GET", "/api/db/{db}/tables/{table}"): Op(
        "A table: key, indexes, count",
        "db",
        {200: json_resp(ref("TableInfo"), "The table.")},
        errors=_DB_ERRORS,
    ),
    ("DELETE", "/api/db/{db}/tables/{table}"): Op(
        "Drop a table",
        "db",
        {200: json_resp(ref("Dropped"), "Dropped.")},
        query=(_CONFIRM,),
        errors=_DB_ERRORS,
    ),
    ("POST", "/api/db/{db}/tables/{table}/indexes"): Op(
        "Create a secondary index (and wait for it)",
        "db",
        {201: json_resp(ref("TableInfo"), "Created; the table with its indexes.")},
        body=json_body(ref("IndexRequest")),
        errors=_DB_WRITE_ERRORS,
    ),
    ("DELETE", "/api/db/{db}/tables/{table}/indexes/{index}"): Op(
        "Drop a secondary index",
        "db",
        {200: json_resp(ref("Dropped"), "Dropped.")},
        errors=_DB_ERRORS,
    ),
    ("GET", "/api/db/{db}/tables/{table}/rows"): Op(
        "A page of rows in primary-key order",
        "db",
        {200: json_resp(ref("RowPage"), "The page and the next page's cursor.")},
        query=(
            Param(
                "limit",
                "Rows per page (1-1000, default 50).",
                {"type": "integer", "minimum": 1, "default": 50},
            ),
            Param("order", "asc or desc.", {"type": "string", "enum": ["asc", "desc"]}),
            Param("after", "The `next` cursor of the previous page."),
        ),
        errors=_DB_ERRORS,
    ),
    ("POST", "/api/db/{db}/tables/{table}/rows"): Op(
        "Insert rows",
        "db",
        {
            201: json_resp(ref("Changes"), "At least one row inserted."),
            200: json_resp(ref("Changes"), "Rows replaced or updated, none inserted."),
        },
        query=(_CONFLICT,),
        body=json_body(ref("RowsInsert")),
        errors=_DB_WRITE_ERRORS,
    ),
    ("GET", "/api/db/{db}/tables/{table}/rows/{key}"): Op(
        "One row",
        "db",
        {200: json_resp(ref("Row"), "The row.")},
        errors=_DB_ERRORS,
    ),
    ("PATCH", "/api/db/{db}/tables/{table}/rows/{key}"): Op(
        "Update a row (merge)",
        "db",
        {200: json_resp(ref("Changes"), "Updated.")},
        body=json_body(ref("Row")),
        errors=_DB_WRITE_ERRORS,
    ),
    ("PUT", "/api/db/{db}/tables/{table}/rows/{key}"): Op(
        "Replace (or create) a row",
        "db",
        {201: json_resp(ref("Changes"), "Created."), 200: json_resp(ref("Changes"), "Replaced.")},
        body=json_body(ref("Row")),
        errors=_DB_WRITE_ERRORS,
    ),
    ("DELETE", "/api/db/{db}/tables/{table}/rows/{key}"): Op(
        "Delete a row",
        "db",
        {200: json_resp(ref("Changes"), "Deleted.")},
        errors=_DB_ERRORS,
    ),
    ("POST", "/api/db/{db}/tables/{table}/query"): Op(
        "Query a table (filter, between, order, pluck, skip, limit)",
        "db",
        {200: json_resp(ref("QueryResult"), "The rows.")},
        body=json_body(ref("Query")),
        errors=_DB_WRITE_ERRORS,
    ),
    ("GET", "/api/db/{db}/tables/{table}/export"): Op(
        "Export a table, streamed",
        "db",
        {
            200: Resp(
                "The rows in primary-key order, as an attachment. A failure after the headers "
                "cuts the connection (an incomplete body).",
                {
                    JSON: {"type": "array", "items": {"type": "object"}},
                    "application/x-ndjson": {"type": "string"},
                    "text/csv": {"type": "string"},
                },
            )
        },
        query=(
            Param(
                "format",
                "json (default), ndjson or csv.",
                {"type": "string", "enum": ["json", "ndjson", "csv"]},
            ),
            Param("columns", "CSV columns, comma-separated (default: every field)."),
        ),
        errors=_DB_ERRORS,
    ),
    ("POST", "/api/db/{db}/tables/{table}/import"): Op(
        "Import rows from a file (JSON, NDJSON or CSV)",
        "db",
        {200: json_resp(ref("ImportReport"), "What was read, written and refused.")},
        query=(
            Param(
                "format",
                "json (default), ndjson or csv.",
                {"type": "string", "enum": ["json", "ndjson", "csv"]},
            ),
            Param("dryRun", "Validate only; write nothing.", {"type": "boolean"}),
            _CONFLICT,
            Param("types", "CSV column types, e.g. age:number,ok:boolean."),
        ),
        body=Body(
            {
                JSON: {"type": "array", "items": {"type": "object"}},
                "application/x-ndjson": {"type": "string"},
                "text/csv": {"type": "string"},
            },
            "The file, streamed (up to 1 GiB).",
        ),
        errors=_DB_WRITE_ERRORS,
    ),
    ("GET", "/sse/db/{db}/tables/{table}/changes"): Op(
        "Follow a table's changes",
        "db",
        {200: Resp("The stream.", {"text/event-stream": {"type": "string"}})},
        _SSE_NOTE + " Subscribers of one (table, filter) share one RethinkDB changefeed.",
        query=(
            Param("filter", "A filter (JSON text, the query body's `filter` form)."),
            _LAST_EVENT_ID,
        ),
        errors=_DB_ERRORS,
        sse={
            "snapshot": SSEEvent(
                "The current rows (bounded; `truncated` says so).", ref("FeedSnapshot")
            ),
            "ready": SSEEvent("The snapshot is complete; changes follow.", ref("FeedReady")),
            "change": SSEEvent("A row was added, changed or removed.", ref("FeedChange")),
            "resync": SSEEvent(
                "Continuity was lost; a new snapshot and ready follow.", ref("FeedResync")
            ),
            "gone": SSEEvent("The table was dropped; the stream ends.", ref("FeedGone")),
        },
    ),
    # -- the browser UI ------------------------------------------------------------------------
    ("GET", "/"): Op("The browser UI", "ui", _UI_PAGE),
    ("GET", "/index.html"): Op("The browser UI", "ui", _UI_PAGE),
    ("GET", "/assets/"): Op("The UI's assets (no listing)", "ui", {200: _UI}, errors=(404,)),
    ("GET", "/assets/{__rest__}"): Op(
        "A UI asset (content-hashed, cached for a year)",
        "ui",
        {200: _UI, 304: _NOT_MODIFIED},
        errors=(404,),
    ),
}
