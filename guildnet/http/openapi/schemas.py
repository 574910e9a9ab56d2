"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of the API's bodies: ``components/schemas``.

Objects the Host App builds itself list every member (``additionalProperties: false``),
so a member added to a response without being documented fails the response check
(``guildnet.http.openapi.check``). Objects that carry someone else's data (Kubernetes
objects, RethinkDB rows, health parts with per-part details) stay open.

The Workspace spec is not repeated here: it comes from the CRD's ``openAPIV3Schema``
(``crds/workspaces.guildnet.io.yaml``), which is what the API server and ``parse_spec``
enforce.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

Schema = dict[str, Any]

STR: Final[Schema] = {"type": "string"}
INT: Final[Schema] = {"type": "integer"}
NUM: Final[Schema] = {"type": "number"}
BOOL: Final[Schema] = {"type": "boolean"}
ANY: Final[Schema] = {}
OPEN: Final[Schema] = {"type": "object"}
TIME: Final[Schema] = {"type": "string", "format": "date-time"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (3.1 spells it as a type list, not ``nullable``)."""
    t = schema.get("type")
    if isinstance(t, str):
        return {**schema, "type": [t, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def obj(
    props: dict[str, Schema],
    required: list[str] | None = None,
    *,
    closed: bool = True,
    description: str | None = None,
) -> Schema:
    """An object; every member required unless ``required`` says which."""
    out: Schema = {"type": "object", "properties": props}
    out["required"] = list(props) if required is None else required
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


def arr(items: Schema, description: str | None = None) -> Schema:
    out: Schema = {"type": "array", "items": items}
    if description:
        out["description"] = description
    return out


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# -- the Workspace spec, from the CRD ----------------------------------------------------------


def _from_crd(node: Any) -> Any:
    """A CRD structural schema as JSON Schema: CEL rules dropped, int-or-string typed."""
    if isinstance(node, list):
        return [_from_crd(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in (
            "x-kubernetes-validations",
            "x-kubernetes-list-type",
            "x-kubernetes-list-map-keys",
        ):
            continue
        if k == "x-kubernetes-int-or-string":
            out["type"] = ["integer", "string"]
            continue
        if k == "x-kubernetes-preserve-unknown-fields":
            continue
        out[k] = _from_crd(v)
    return out


@cache
def workspace_spec() -> Schema:
    from guildnet.workspaces.crd import crd_manifest

    version = crd_manifest()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    out = _from_crd(spec)
    assert isinstance(out, dict)
    return out


@cache
def workspace_phases() -> tuple[str, ...]:
    """The CRD's ``status.phase`` values (what the operator may write)."""
    from guildnet.workspaces.crd import crd_manifest

    version = crd_manifest()["spec"]["versions"][0]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return tuple(status["properties"]["phase"]["enum"])


def _server_change() -> Schema:
    """``PATCH /api/servers/{id}``: the changeable spec fields; null removes one."""
    from guildnet.workspaces.lifecycle import CHANGEABLE

    props = workspace_spec()["properties"]
    return {
        "type": "object",
        "description": "Each member given replaces that spec field (null removes it); the "
        "operator rolls the pod, the home volume kept. storage, stopped and name cannot "
        "change here (400 naming the field).",
        "properties": {k: {"anyOf": [props[k], {"type": "null"}]} for k in sorted(CHANGEABLE)},
        "additionalProperties": False,
    }


def _job_request() -> Schema:
    spec = workspace_spec()
    return {
        "type": "object",
        "description": "A Workspace spec (the CRD's, see WorkspaceSpec) plus an optional name. "
        "Unknown members are refused with 400 naming the field.",
        "required": ["image"],
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 53,
                "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$",
                "description": "The workspace name (DNS-1035 label); generated from the "
                "image when absent.",
            },
            **spec["properties"],
        },
        "additionalProperties": False,
    }


# -- shared pieces -----------------------------------------------------------------------------

ERROR: Final = obj(
    {
        "error": {**STR, "description": "A stable, machine-readable code, e.g. invalid_field."},
        "message": {**STR, "description": "What went wrong, for people."},
        "request_id": {**STR, "description": "The X-Request-Id; the log lines carry it too."},
        "field": {
            **STR,
            "description": "The request field at fault (body member, query "
            "parameter or path part), when one is.",
        },
        "reason": {
            **STR,
            "description": "A classified cause: RethinkDB errors; for 403 forbidden "
            "unidentified, role, owner or cross_origin.",
        },
        "role": {**STR, "description": "403 forbidden: the caller's role."},
        "required": {**STR, "description": "403 forbidden: the role the route needs."},
    },
    ["error", "message", "request_id"],
    closed=False,
    description="Every error the Host App itself reports. DB errors may add the write or "
    "import report's members.",
)

PORT: Final = obj(
    {
        "name": STR,
        "containerPort": {"type": "integer", "minimum": 1, "maximum": 65535},
        "protocol": {"type": "string", "enum": ["TCP", "UDP", "SCTP"]},
    },
    ["containerPort"],
)

HEALTH_PART: Final = obj(
    {"ok": BOOL, "reason": STR, "checkedAt": TIME},
    ["ok", "reason", "checkedAt"],
    closed=False,
    description="One part of a cluster's health; parts add their details (version, leader, "
    "resources, state...).",
)

RDB_HEALTH_MEMBERS: Final[dict[str, Schema]] = {
    "state": {**STR, "description": "idle, connecting, ready, backoff, closed..."},
    "ready": BOOL,
    "since": NUM,
    "reason": STR,
    "message": STR,
    "address": STR,
    "source": STR,
    "attempts": INT,
    "nextAttemptAt": NUM,
    "nextAttemptIn": NUM,
    "lastOkAt": NUM,
    "server": OPEN,
}

SERVER_SUMMARY_MEMBERS: Final[dict[str, Schema]] = {
    "id": STR,
    "name": STR,
    "image": nullable(STR),
    "phase": {"type": "string", "enum": list(workspace_phases())},
    "ready": BOOL,
    "readyReplicas": INT,
    "url": {**STR, "description": "The workspace's canonical proxy URL (a path)."},
    "created": nullable(TIME),
    "message": STR,
    "managed": {**BOOL, "description": "Labelled as created by GuildNet (stop-all deletes it)."},
    "owner": {
        **nullable(STR),
        "description": "Login of the person who launched it (null: unrecorded).",
    },
    "idle": {
        **nullable(
            obj(
                {
                    "timeoutSeconds": {**INT, "description": "0: idle culling is off for it."},
                    "lastActivity": TIME,
                    "idleSince": TIME,
                    "stopsAt": nullable(TIME),
                }
            )
        ),
        "description": "Idle culling of a running workspace (null otherwise): when it was "
        "last used and when the culler stops it (null: never).",
    },
    "stopped": {
        **BOOL,
        "description": "spec.stopped: asked to stop (phase Stopped once its pod is gone).",
    },
}

CONDITION: Final = obj(
    {
        "type": STR,
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": STR,
        "message": STR,
        "lastTransitionTime": TIME,
        "observedGeneration": INT,
    },
    ["type", "status"],
)

EVENT_VIEW_MEMBERS: Final[dict[str, Schema]] = {
    "type": STR,
    "reason": STR,
    "message": STR,
    "pod": STR,
    "count": INT,
    "firstTime": nullable(STR),
    "lastTime": STR,
    "source": STR,
}

CONTAINER: Final = obj(
    {
        "name": STR,
        "ready": BOOL,
        "restarts": INT,
        "state": STR,
        "reason": STR,
        "message": STR,
    }
)

POD_SUMMARY: Final = obj(
    {
        "name": STR,
        "phase": STR,
        "ready": BOOL,
        "terminating": BOOL,
        "node": nullable(STR),
        "podIP": nullable(STR),
        "created": nullable(TIME),
        "containers": arr(CONTAINER),
    }
)

CHANGES: Final = obj(
    {
        "inserted": INT,
        "replaced": INT,
        "unchanged": INT,
        "deleted": INT,
        "skipped": INT,
        "errors": INT,
        "firstError": STR,
        "generatedKeys": arr(ANY),
        "changes": arr(obj({"old": ANY, "new": ANY})),
    },
    ["inserted", "replaced", "unchanged", "deleted", "skipped", "errors", "changes"],
    description="A RethinkDB write's result: counts, and each row's old and new value.",
)

INDEX_STATUS: Final = obj({"name": STR, "ready": BOOL, "multi": BOOL, "geo": BOOL})

TABLE_SUMMARY_MEMBERS: Final[dict[str, Schema]] = {
    "name": STR,
    "primaryKey": STR,
    "indexes": arr(ANY, "Index names (list) or their status (table info)."),
    "documents": nullable(INT),
}

INDEX_REQUEST: Final = obj(
    {
        "name": {**STR, "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "field": {**STR, "description": "A field path (a.b.c); default: the name."},
        "fields": arr(STR, "1-8 field paths: a compound index."),
        "multi": {**BOOL, "description": "A multi index (one field only)."},
    },
    ["name"],
)

FILTER: Final[Schema] = {
    "type": "object",
    "description": "{field, op, value} or {and: [...]}, {or: [...]}, {not: {...}} "
    "(see guildnet/rdb/query.py).",
}

IMPORT_REPORT: Final = obj(
    {
        "format": {"type": "string", "enum": ["json", "ndjson", "csv"]},
        "dryRun": BOOL,
        "rows": INT,
        "valid": INT,
        "inserted": INT,
        "replaced": INT,
        "unchanged": INT,
        "errors": INT,
        "rowErrors": arr(obj({"row": INT, "message": STR})),
        "preview": arr(OPEN),
    }
)

CLUSTER: Final = obj(
    {
        "id": STR,
        "name": STR,
        "server": STR,
        "reachable": BOOL,
        "version": nullable(STR),
        "error": nullable(STR),
        "deletable": {**BOOL, "description": "False for the default cluster (from config)."},
    }
)

REACH: Final = obj(
    {"ok": BOOL, "server": STR, "version": STR, "error": STR}, ["ok", "server"], closed=True
)


def _sse_event_schemas() -> dict[str, Schema]:
    """The ``data`` of each SSE event type (documented under the SSE operations)."""
    summary = ref("ServerSummary")
    return {
        "ServerState": obj(
            {**SERVER_SUMMARY_MEMBERS, "conditions": arr(ref("Condition"))},
            description="A server summary plus its conditions.",
        ),
        "ServersSnapshot": obj({"cluster": STR, "servers": arr(summary)}),
        "ServerDeleted": obj({"id": STR}),
        "ServerEvent": obj({"server": STR, **EVENT_VIEW_MEMBERS}),
        "LogLine": obj({"pod": STR, "time": nullable(STR), "line": STR}),
        "LogPods": obj({"server": STR, "pods": arr(STR)}),
        "LogNotice": obj({"pod": STR, "message": STR}, ["message"]),
        "LogEnd": obj({"reason": STR}),
        "FeedSnapshot": obj(
            {
                "db": STR,
                "table": STR,
                "primaryKey": STR,
                "rows": arr(OPEN),
                "truncated": BOOL,
            }
        ),
        "FeedReady": obj({"epoch": INT}),
        "FeedChange": obj(
            {
                "type": {**STR, "description": "add, remove, change (RethinkDB's change types)"},
                "old": nullable(OPEN),
                "new": nullable(OPEN),
            }
        ),
        "FeedResync": obj({"reason": STR, "at": NUM}),
        "FeedGone": obj({"reason": STR, "message": STR}),
    }


@cache
def components() -> dict[str, Schema]:
    """Every named schema of the document."""
    return {
        "Error": ERROR,
        "Healthz": obj({"status": {"const": "ok"}, "version": STR}),
        "WhoAmI": obj(
            {
                "login": STR,
                "displayName": STR,
                "node": STR,
                "tags": arr(STR),
                "source": {"type": "string", "enum": ["local", "tailnet"]},
                "role": {"type": "string", "enum": ["none", "user", "admin"]},
            }
        ),
        "Ready": obj(
            {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "checks": obj(
                    {
                        "reactor": obj(
                            {"ok": BOOL, "lag_ms": NUM, "since_beat_ms": NUM, "error": STR},
                            ["ok"],
                        ),
                        "registry": obj({"ok": BOOL, "instances": arr(STR)}),
                        "cluster": obj(
                            {"ok": BOOL, "server": STR, "version": STR, "error": STR}, ["ok"]
                        ),
                        "rethinkdb": obj(
                            {"ok": BOOL, "fatal": {"const": False}, **RDB_HEALTH_MEMBERS},
                            ["ok", "fatal", "state"],
                        ),
                        "tailnet": obj(
                            {
                                "ok": BOOL,
                                "mode": {"type": "string", "enum": ["auto", "explicit"]},
                                "listening": arr(STR),
                                "tailscaled": nullable(STR),
                                "addresses": arr(STR),
                                "certificate": nullable(STR),
                                "connections": INT,
                                "dnsName": STR,
                                "errors": arr(STR),
                                "error": STR,
                            },
                            ["ok", "mode", "listening"],
                        ),
                    },
                    ["reactor", "registry", "cluster", "rethinkdb"],
                ),
            },
            ["status"],
            description="The default cluster only: other clusters' health never changes it. "
            "``checks`` only for callers with a role (a probe sees the status); ``tailnet`` "
            "only with TAILNET_LISTEN.",
        ),
        "HealthPart": HEALTH_PART,
        "ClusterHealth": obj(
            {
                "cluster": STR,
                "ok": BOOL,
                "failing": arr(STR, "Names of the parts that are not ok."),
                "checkedAt": TIME,
                "parts": {
                    "type": "object",
                    "description": "kubernetes, informers, operator, localdb, portForwards and "
                    "rethinkdb (when used).",
                    "additionalProperties": ref("HealthPart"),
                },
            }
        ),
        "UIConfig": obj(
            {
                "version": STR,
                "origin": STR,
                "defaultCluster": nullable(STR),
                "namespace": STR,
                "features": obj(
                    {
                        "embeddedOperator": BOOL,
                        "portForward": BOOL,
                        "apiServerPodProxy": BOOL,
                        "workspaceLoadBalancer": BOOL,
                        "workspaceDomain": nullable(STR),
                    }
                ),
            }
        ),
        "Cluster": CLUSTER,
        "ClusterList": obj({"clusters": arr(ref("Cluster"))}),
        "AddCluster": obj(
            {
                "id": {**STR, "maxLength": 63, "description": "A DNS label."},
                "name": {**STR, "maxLength": 100},
                "kubeconfig": {**STR, "description": "The kubeconfig's YAML text."},
            },
            ["id", "kubeconfig"],
        ),
        "Deleted": obj({"deleted": STR}),
        "WorkspaceSpec": workspace_spec(),
        "JobRequest": _job_request(),
        "JobAccepted": obj({"id": STR, "url": STR}),
        "ServerSummary": obj(SERVER_SUMMARY_MEMBERS),
        "ServerList": arr(ref("ServerSummary"), "Oldest first, then by name."),
        "Condition": CONDITION,
        "Port": PORT,
        "Pod": POD_SUMMARY,
        "Event": obj(EVENT_VIEW_MEMBERS),
        "ServerDetail": obj(
            {
                **SERVER_SUMMARY_MEMBERS,
                "namespace": STR,
                "cluster": STR,
                "labels": {"type": "object", "additionalProperties": STR},
                "spec": ref("WorkspaceSpec"),
                "status": OPEN,
                "conditions": arr(ref("Condition")),
                "ports": arr(ref("Port")),
                "proxyUrl": STR,
                "serviceDNS": STR,
                "hasPassword": BOOL,
                "pods": arr(ref("Pod")),
                "events": arr(ref("Event")),
            },
            description="Everything a server page shows; never the password.",
        ),
        "Password": obj({"password": STR}),
        "ServerChange": _server_change(),
        "ServerDeletedResult": obj(
            {
                "deleted": STR,
                "keptVolume": nullable(
                    {**STR, "description": "The kept home volume's claim (keep_volume=true)."}
                ),
            },
            ["deleted"],
        ),
        "StopAll": obj(
            {"deleted": arr(STR), "failed": arr(obj({"id": STR, "error": STR}))}, ["deleted"]
        ),
        "ServerLogs": obj(
            {
                "server": STR,
                "pods": arr(obj({"pod": STR, "lines": arr(STR), "error": nullable(STR)})),
            }
        ),
        "ImagePreset": obj(
            {
                "id": STR,
                "name": STR,
                "image": STR,
                "description": STR,
                "kind": STR,
                "ports": arr(ref("Port")),
                "args": arr(STR),
            },
            ["id", "name", "image", "description", "kind"],
        ),
        "ImageList": obj({"images": arr(ref("ImagePreset"))}),
        "ImageDefaults": obj(
            {
                "image": STR,
                "kind": {**STR, "description": "code-server, jupyter or generic"},
                "ports": arr(ref("Port")),
                "env": arr(obj({"name": STR, "value": STR})),
                "args": arr(STR),
                "command": arr(STR),
                "passwordEnv": nullable(STR),
                "pathMode": {"type": "string", "enum": ["strip", "preserve"]},
                "homePath": {**STR, "description": "The home volume's default mount path."},
                "resources": {
                    **workspace_spec()["properties"]["resources"],
                    "description": "WORKSPACE_IDE_RESOURCES (code-server, Jupyter) or "
                    "WORKSPACE_APP_RESOURCES.",
                },
                "storage": obj(
                    {
                        "size": nullable(STR),
                        "storageClassName": nullable(STR),
                        "mountPath": STR,
                    },
                    description="The home volume a launch gets by default.",
                ),
            }
        ),
        # -- RethinkDB ----------------------------------------------------------------------
        "DBHealth": obj(
            {
                "cluster": STR,
                **RDB_HEALTH_MEMBERS,
                "feeds": arr(
                    obj(
                        {
                            "db": STR,
                            "table": STR,
                            "filtered": BOOL,
                            "state": STR,
                            "reason": nullable(STR),
                            "subscribers": INT,
                            "rows": INT,
                        }
                    )
                ),
            },
            ["cluster", "state", "ready", "since", "attempts", "feeds"],
        ),
        "DBState": obj(RDB_HEALTH_MEMBERS, ["state", "ready", "since", "attempts"]),
        "DeployRequest": obj(
            {
                "storage": {"type": "string", "enum": ["pvc", "emptyDir"]},
                "size": {**STR, "description": "A quantity, e.g. 1Gi (pvc only)."},
                "storageClass": STR,
            },
            [],
        ),
        "DeployResult": obj(
            {
                "applied": arr(
                    obj(
                        {
                            "kind": STR,
                            "name": nullable(STR),
                            "namespace": nullable(STR),
                            "resourceVersion": nullable(STR),
                            "generation": nullable(INT),
                        }
                    )
                ),
                "image": STR,
            }
        ),
        "Database": obj({"id": STR, "name": STR, "description": STR}),
        "DatabaseList": obj({"databases": arr(ref("Database"))}),
        "CreateDatabase": obj(
            {
                "id": {**STR, "maxLength": 64, "description": "The database name."},
                "name": {**STR, "maxLength": 200, "description": "A display name."},
                "description": {**STR, "maxLength": 2000},
            },
            ["id"],
        ),
        "TableSummary": obj(TABLE_SUMMARY_MEMBERS),
        "DatabaseInfo": obj(
            {
                "id": STR,
                "name": STR,
                "description": STR,
                "tables": arr(ref("TableSummary")),
                "documents": INT,
                "size": {"type": "null", "description": "RethinkDB 2.4 reports no size."},
            }
        ),
        "Dropped": obj({"dropped": STR, "tables": INT}, ["dropped"]),
        "TableList": obj({"db": STR, "tables": arr(ref("TableSummary"))}),
        "TableInfo": obj(
            {
                **TABLE_SUMMARY_MEMBERS,
                "indexes": arr(INDEX_STATUS),
                "db": STR,
                "durability": nullable(STR),
                "shards": INT,
            }
        ),
        "CreateTable": obj(
            {
                "name": {**STR, "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "primaryKey": {**STR, "default": "id"},
                "durability": {"type": "string", "enum": ["hard", "soft"], "default": "hard"},
                "indexes": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {"oneOf": [STR, ref("IndexRequest")]},
                },
            },
            ["name"],
        ),
        "IndexRequest": INDEX_REQUEST,
        "RowPage": obj(
            {
                "primaryKey": STR,
                "rows": arr(OPEN),
                "next": nullable({**STR, "description": "The cursor of the next page (after=)."}),
            }
        ),
        "Row": {"type": "object", "description": "A document, as RethinkDB stores it."},
        "RowsInsert": {
            "oneOf": [OPEN, {"type": "array", "items": OPEN, "minItems": 1, "maxItems": 10000}],
            "description": "One document or a list of 1-10000.",
        },
        "Changes": CHANGES,
        "Query": obj(
            {
                "filter": FILTER,
                "between": obj(
                    {
                        "index": STR,
                        "lower": ANY,
                        "upper": ANY,
                        "leftBound": {"type": "string", "enum": ["open", "closed"]},
                        "rightBound": {"type": "string", "enum": ["open", "closed"]},
                    },
                    ["index"],
                ),
                "orderBy": {
                    "description": "A field name, {field|index, desc}, or a list of up to 8.",
                },
                "pluck": arr(STR),
                "skip": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1},
            },
            [],
        ),
        "QueryResult": obj({"primaryKey": STR, "rows": arr(ANY), "count": INT, "truncated": BOOL}),
        "ImportReport": IMPORT_REPORT,
        **_sse_event_schemas(),
    }
