"""The DB HTTP API: databases, tables, rows, query, import, export and the DB health.

Every route is under ``/api/cluster/<clusterId>/db/...`` and, for the default cluster,
``/api/db/...`` (one handler). The first DB request of a cluster creates its RDB manager
(``Instance.ensure_rdb``); requests wait a few seconds for a connection, then answer 503
with the classified reason (``reason``) and a ``Retry-After``.

Errors name the field at fault: 400 (bad input), 404 (no such database/table/row/index),
409 (exists, duplicate primary key), 413 (too large), 422 (the server refused the operation:
a query it cannot run, a primary key change), 503 (RethinkDB unavailable).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import IO, Any, Final

from rethinkdb.errors import (
    ReqlCursorEmpty,
    ReqlError,
    ReqlNonExistenceError,
    ReqlOpFailedError,
    ReqlPermissionError,
    ReqlResourceLimitError,
)
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from guildnet.cluster.ids import DEFAULT_CLUSTER_ID
from guildnet.cluster.instance import describe_error
from guildnet.cluster.registry import Registry
from guildnet.cluster.rest import KubeApiError
from guildnet.http.errors import ApiError, bad_field, error_body, write_json
from guildnet.http.jsonio import read_json, read_json_object, string_field
from guildnet.http.router import router
from guildnet.http.sse import SSEStream
from guildnet.http.workspaces import cluster_route
from guildnet.rdb import keys as K
from guildnet.rdb import ops
from guildnet.rdb import query as Q
from guildnet.rdb import transfer as X
from guildnet.rdb.driver import r
from guildnet.rdb.feeds import hub_of
from guildnet.rdb.manager import RDBManager, RDBUnavailable
from guildnet.rdb.names import NameError_, check_db, check_field, check_name

log = Logger()

MAX_ROWS_BODY: Final = 16 * 1024 * 1024
MAX_IMPORT_BYTES: Final = 1024 * 1024 * 1024
IMPORT_BATCH: Final = 500
MAX_ROW_ERRORS: Final = 100
PREVIEW_ROWS: Final = 20
#: Path words under /db/ that are routes, so no database may be called so.
ROUTE_WORDS: Final = frozenset({"health", "reconnect", "deploy"})
CONFLICT: Final = ("error", "replace", "update")


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


# -- error mapping ----------------------------------------------------------------------------

_NAMED = re.compile(r"(Database|Table|Index) `([^`]*)`")


def reql_error(e: ReqlError) -> ApiError:
    """A ReQL error as the API's error (status by kind, field by what it names)."""
    msg = getattr(e, "message", None) or str(e).splitlines()[0]
    m = _NAMED.search(msg)
    field = {"Database": "db", "Table": "table", "Index": "index"}[m.group(1)] if m else None
    low = msg.lower()
    if isinstance(e, ReqlPermissionError):
        return ApiError(403, "db_permission_denied", msg)
    if "does not exist" in low or "was not found" in low or isinstance(e, ReqlNonExistenceError):
        return ApiError(404, "not_found", msg, field=field)
    if "already exists" in low:
        return ApiError(409, "exists", msg, field=field)
    if "duplicate primary key" in low:
        return ApiError(409, "duplicate_key", msg, field="primaryKey")
    if "primary key" in low and ("cannot be changed" in low or "cannot change" in low):
        return ApiError(422, "primary_key_change", msg, field="primaryKey")
    if isinstance(e, ReqlResourceLimitError):
        return ApiError(413, "too_large", msg)
    if isinstance(e, ReqlOpFailedError):
        return ApiError(503, "db_unavailable", msg, extra={"reason": "unavailable"})
    return ApiError(422, "db_rejected", msg, field=field)


def unavailable(e: RDBUnavailable) -> ApiError:
    headers = {"retry-after": str(int(e.retry_after or 5))}
    return ApiError(
        503,
        "db_unavailable",
        f"RethinkDB is unavailable ({e.reason}): {e.message}",
        headers=headers,
        extra={"reason": e.reason},
    )


def _name(value: str, field: str) -> str:
    try:
        return check_name(value, field)
    except NameError_ as e:
        raise bad_field(e.field, e.message) from None


def _db_name(value: str, field: str = "db") -> str:
    try:
        name = check_db(value, field)
    except NameError_ as e:
        if "reserved" in e.message:
            raise ApiError(404, "not_found", f"no database {value!r}", field=field) from None
        raise bad_field(e.field, e.message) from None
    return name


def _arg(request: IRequest, name: str) -> str | None:
    values = (request.args or {}).get(name.encode())
    if not values:
        return None
    if len(values) > 1:
        raise bad_field(name, "given more than once")
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise bad_field(name, "is not UTF-8") from None


def _bool_arg(request: IRequest, name: str) -> bool:
    value = _arg(request, name)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", "on", ""):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise bad_field(name, "must be true or false")


def _int_arg(request: IRequest, name: str, default: int, lo: int, hi: int) -> int:
    value = _arg(request, name)
    if value is None:
        return default
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise bad_field(name, f"must be an integer from {lo} to {hi}")
    return int(value)


def _confirm(request: IRequest, expected: str) -> None:
    if _arg(request, "confirm") != expected:
        raise bad_field("confirm", f"repeat the name to drop it: ?confirm={expected}")


def _format(request: IRequest) -> str:
    """The export's or import's ``format`` (default ``json``)."""
    fmt = _arg(request, "format") or "json"
    if fmt not in X.FORMATS:
        raise bad_field("format", f"must be one of {', '.join(X.FORMATS)}")
    return fmt


def _key(segment: str) -> Any:
    try:
        return K.parse_key(segment)
    except K.KeyError_ as e:
        raise bad_field("key", str(e)) from None


def _conflict(request: IRequest) -> str:
    value = _arg(request, "conflict") or "error"
    if value not in CONFLICT:
        raise bad_field("conflict", f"must be one of {', '.join(CONFLICT)}")
    return value


def _index_spec(item: Any, where: str) -> dict[str, Any]:
    """``"name"`` or ``{"name", "field"|"fields", "multi"}`` -> the ops form."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise bad_field(where, "must be an index name or {name, field|fields, multi}")
    name = _name(item.get("name"), f"{where}.name")  # type: ignore[arg-type]
    raw_fields = item.get("fields")
    if raw_fields is None:
        raw_fields = [item.get("field") or name]
    if not isinstance(raw_fields, list) or not 1 <= len(raw_fields) <= 8:
        raise bad_field(f"{where}.fields", "must be a list of 1-8 field names")
    fields = []
    for i, f in enumerate(raw_fields):
        try:
            check_field(f, f"{where}.fields[{i}]")
        except NameError_ as e:
            raise bad_field(e.field, e.message) from None
        fields.append(tuple(f.split(".")))
    multi = item.get("multi", False)
    if not isinstance(multi, bool) or (multi and len(fields) > 1):
        raise bad_field(f"{where}.multi", "must be a boolean (and only for one field)")
    return {"name": name, "fields": fields, "multi": multi}


# -- the shape of a DB route ------------------------------------------------------------------

#: What a DB route's ``parse`` returns: the call to make once the manager is connected.
Call = Callable[[RDBManager], Awaitable[Any]]
Parse = Callable[..., Call]


def _path_names(
    db: str | None, table: str | None, index: str | None, key: str | None
) -> dict[str, Any]:
    """The names the path gives, checked in order (400 naming the field; 404 for a
    reserved database), as keyword arguments; the row key parsed."""
    names: dict[str, Any] = {}
    if db is not None:
        names["db"] = _db_name(db)
    if table is not None:
        names["table"] = _name(table, "table")
    if index is not None:
        names["index"] = _name(index, "index")
    if key is not None:
        names["key"] = _key(key)
    return names


async def _create(op: Awaitable[Any], what: str, field: str) -> Any:
    """``op``'s result; its "already exists" as a 409 naming ``field``."""
    try:
        return await op
    except ReqlOpFailedError as e:
        if "already exists" in str(e):
            raise ApiError(409, "exists", f"{what} already exists", field=field) from None
        raise


def _created_if_inserted(result: dict[str, Any]) -> int:
    return 201 if result["inserted"] else 200


def _changed(result: dict[str, Any], key: Any) -> dict[str, Any]:
    """An update's or delete's result, or the 404/422 it stands for."""
    if result["skipped"]:
        raise ApiError(404, "row_not_found", f"no row with key {key!r}", field="key")
    if result["errors"]:
        first = result.get("firstError", "")
        if "primary key" in first.lower():
            raise ApiError(422, "primary_key_change", first, field="primaryKey", extra=result)
        raise ApiError(422, "db_rejected", first, extra=result)
    return result


def db_route(
    path: str, methods: list[str], *, status: int | Callable[[Any], int] | None = 200
) -> Callable[[Parse], Callable[..., Any]]:
    """A DB route (and its per-cluster twin) in the shape they all share.

    First the path's names (``_path_names``), then the route's ``parse`` (its own input:
    400/413 naming the field) returns the call; only then the cluster's RDB manager
    (404/503), so bad input is a 400 whatever RethinkDB's state. The call's ReQL errors
    and unavailability are the router's to map (``DBRoutes._db_refused``,
    ``_db_unavailable``); its result is the JSON body, with ``status`` (or
    ``status(result)``); ``status=None``: the call writes the response itself (a
    stream). ``parse`` gets ``cluster_id`` when it names it.
    """

    def deco(parse: Parse) -> Callable[..., Any]:
        wants_cluster = "cluster_id" in inspect.signature(parse).parameters

        @functools.wraps(parse)
        async def handler(
            self: DBRoutes,
            request: IRequest,
            cluster_id: str = DEFAULT_CLUSTER_ID,
            db: str | None = None,
            table: str | None = None,
            index: str | None = None,
            key: str | None = None,
        ) -> Any:
            kwargs = _path_names(db, table, index, key)
            if wants_cluster:
                kwargs["cluster_id"] = cluster_id
            call = parse(self, request, **kwargs)
            result = await call(self._rdb(cluster_id))
            if status is None:
                return None
            return write_json(request, status(result) if callable(status) else status, result)

        return cluster_route(path, methods)(handler)

    return deco


@implementer(IPushProducer)
class _Body:
    """Writes a streamed response with the transport's flow control."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.gone = False
        self._paused: Deferred[None] | None = None
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(self._finished)

    def _finished(self, _: object) -> None:
        self.gone = True
        self.resumeProducing()

    async def write(self, data: bytes) -> None:
        if self.gone:
            raise ConnectionError("the client went away")
        self.request.write(data)
        if self._paused is not None:
            await self._paused

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        d, self._paused = self._paused, None
        if d is not None and not d.called:
            d.callback(None)

    def stopProducing(self) -> None:
        self.gone = True
        self.resumeProducing()

    def done(self) -> None:
        if self.request.producer is self:
            self.request.unregisterProducer()


class DBRoutes:
    """Mixin of HostAPI: the DB routes (see the module docstring)."""

    registry: Registry

    # plumbing ---------------------------------------------------------------------------------

    @router.handle_errors(RDBUnavailable)
    def _db_unavailable(self, request: IRequest, failure: Failure) -> bytes:
        e = failure.value
        assert isinstance(e, RDBUnavailable)
        api = unavailable(e)
        for k, v in api.headers.items():
            request.setHeader(k.encode(), v.encode())
        return error_body(request, api.status, api.code, api.message, None, api.extra)

    @router.handle_errors(ReqlError)
    def _db_refused(self, request: IRequest, failure: Failure) -> bytes:
        e = failure.value
        assert isinstance(e, ReqlError)
        api = reql_error(e)
        return error_body(request, api.status, api.code, api.message, api.field, api.extra)

    def _rdb(self, cluster_id: str) -> RDBManager:
        instance = self._instance(cluster_id)  # type: ignore[attr-defined]
        try:
            manager = instance.ensure_rdb()
        except RuntimeError as e:
            raise ApiError(503, "cluster_unavailable", str(e)) from None
        assert isinstance(manager, RDBManager)
        return manager

    # health -----------------------------------------------------------------------------------

    @cluster_route("/api/db/health", ["GET"])
    def db_health(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> bytes:
        import time

        mgr = self._rdb(cluster_id)
        body = {"cluster": cluster_id, **mgr.health.to_json(time.time())}
        body["feeds"] = hub_of(mgr).stats() if mgr.hub is not None else []
        return write_json(request, 200 if mgr.health.ready else 503, body)

    @cluster_route("/api/db/reconnect", ["POST"])
    def db_reconnect(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> bytes:
        import time

        mgr = self._rdb(cluster_id)
        mgr.reconnect()
        return write_json(request, 202, mgr.health.to_json(time.time()))

    @cluster_route("/api/db/deploy", ["POST"])
    async def db_deploy(self, request: IRequest, cluster_id: str = DEFAULT_CLUSTER_ID) -> Any:
        """Server-side apply RethinkDB's StatefulSet and Service (idempotent), then reconnect."""
        from guildnet.rdb import deploy as D

        data = read_json(request)  # an empty body: the defaults
        if data is not None and not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "request body must be a JSON object")
        body: dict[str, Any] = data or {}
        storage = body.get("storage", "pvc")
        size = body.get("size", "1Gi")
        storage_class = string_field(body, "storageClass", required=False, max_len=253)
        settings: Any = self.settings  # type: ignore[attr-defined]
        try:
            objects = D.manifests(
                settings.rethinkdb_service_name,
                settings.rethinkdb_namespace,
                storage if isinstance(storage, str) else "",
                size if isinstance(size, str) else "",
                storage_class=storage_class,
            )
        except D.DeployError as e:
            raise bad_field(e.field, e.message) from None
        mgr = self._rdb(cluster_id)
        instance = self.registry.get(cluster_id)
        if instance.rest is None:
            raise ApiError(503, "cluster_unavailable", f"cluster {cluster_id!r} is stopping")
        try:
            applied = await instance.call(D.apply_all, instance.rest, objects)
        except KubeApiError as e:
            if e.status in (401, 403):
                raise ApiError(502, "cluster_forbidden", e.message[:300]) from None
            raise ApiError(
                422 if e.status in (400, 422) else 502, "rejected_by_cluster", e.message[:300]
            ) from None
        except Exception as e:
            raise ApiError(503, "cluster_unreachable", describe_error(e)) from None
        mgr.reconnect()
        return write_json(request, 200, {"applied": applied, "image": D.IMAGE})

    # databases --------------------------------------------------------------------------------

    @db_route("/api/db", ["GET"])
    def list_dbs(self, request: IRequest) -> Call:
        async def call(mgr: RDBManager) -> Any:
            return {"databases": await ops.list_databases(mgr)}

        return call

    @db_route("/api/db", ["POST"], status=201)
    def create_db(self, request: IRequest, cluster_id: str) -> Call:
        body = read_json_object(request)
        db_id = string_field(body, "id", required=True, max_len=64)
        assert db_id is not None
        if db_id in ROUTE_WORDS:
            raise bad_field("id", f"{db_id!r} is reserved")
        try:
            check_db(db_id, "id")
        except NameError_ as e:
            raise bad_field(e.field, e.message) from None
        name = string_field(body, "name", required=False, max_len=200)
        description = string_field(body, "description", required=False, max_len=2000)

        async def call(mgr: RDBManager) -> Any:
            created = await _create(
                ops.create_database(mgr, db_id, name, description), f"database {db_id!r}", "id"
            )
            request.setHeader(b"location", self._db_url(cluster_id, db_id).encode())
            return created

        return call

    @staticmethod
    def _db_url(cluster_id: str, db: str, *rest: str) -> str:
        prefix = "/api/db" if cluster_id == DEFAULT_CLUSTER_ID else f"/api/cluster/{cluster_id}/db"
        return "/".join([prefix, db, *rest])

    @db_route("/api/db/<db>", ["GET"])
    def db_info(self, request: IRequest, db: str) -> Call:
        return lambda mgr: ops.database_info(mgr, db)

    @db_route("/api/db/<db>", ["DELETE"])
    def drop_db(self, request: IRequest, db: str) -> Call:
        _confirm(request, db)
        return lambda mgr: ops.drop_database(mgr, db)

    # tables -----------------------------------------------------------------------------------

    @db_route("/api/db/<db>/tables", ["GET"])
    def list_tables(self, request: IRequest, db: str) -> Call:
        async def call(mgr: RDBManager) -> Any:
            return {"db": db, "tables": await ops.list_tables(mgr, db)}

        return call

    @db_route("/api/db/<db>/tables", ["POST"], status=201)
    def create_table(self, request: IRequest, db: str, cluster_id: str) -> Call:
        body = read_json_object(request)
        table = _name(body.get("name"), "name")  # type: ignore[arg-type]
        pk = body.get("primaryKey", "id")
        try:
            check_field(pk, "primaryKey")
        except NameError_ as e:
            raise bad_field(e.field, e.message) from None
        durability = body.get("durability", "hard")
        if durability not in ("hard", "soft"):
            raise bad_field("durability", "must be 'hard' or 'soft'")
        raw_indexes = body.get("indexes") or []
        if not isinstance(raw_indexes, list) or len(raw_indexes) > 32:
            raise bad_field("indexes", "must be a list of at most 32 indexes")
        indexes = [_index_spec(ix, f"indexes[{i}]") for i, ix in enumerate(raw_indexes)]
        if len({ix["name"] for ix in indexes}) != len(indexes):
            raise bad_field("indexes", "index names must be unique")

        async def call(mgr: RDBManager) -> Any:
            info = await _create(
                ops.create_table(mgr, db, table, pk, durability, indexes),
                f"table {db}.{table}",
                "name",
            )
            request.setHeader(b"location", self._db_url(cluster_id, db, "tables", table).encode())
            return info

        return call

    @db_route("/api/db/<db>/tables/<table>", ["GET"])
    def table_info(self, request: IRequest, db: str, table: str) -> Call:
        return lambda mgr: ops.table_info(mgr, db, table)

    @db_route("/api/db/<db>/tables/<table>", ["DELETE"])
    def drop_table(self, request: IRequest, db: str, table: str) -> Call:
        _confirm(request, table)
        return lambda mgr: ops.drop_table(mgr, db, table)

    @db_route("/api/db/<db>/tables/<table>/indexes", ["POST"], status=201)
    def create_index(self, request: IRequest, db: str, table: str) -> Call:
        spec = _index_spec(read_json_object(request), "index")

        async def call(mgr: RDBManager) -> Any:
            await ops.create_index(mgr, db, table, spec)
            return await ops.table_info(mgr, db, table)

        return call

    @db_route("/api/db/<db>/tables/<table>/indexes/<index>", ["DELETE"])
    def drop_index(self, request: IRequest, db: str, table: str, index: str) -> Call:
        return lambda mgr: ops.drop_index(mgr, db, table, index)

    # rows -------------------------------------------------------------------------------------

    @db_route("/api/db/<db>/tables/<table>/rows", ["GET"])
    def list_rows(self, request: IRequest, db: str, table: str) -> Call:
        limit = _int_arg(request, "limit", 50, 1, ops.MAX_PAGE)
        order = _arg(request, "order") or "asc"
        if order not in ("asc", "desc"):
            raise bad_field("order", "must be asc or desc")
        cursor = _arg(request, "after")
        after = None
        if cursor:
            try:
                after = K.decode_cursor(cursor)
            except K.KeyError_ as e:
                raise bad_field("after", str(e)) from None
        return lambda mgr: ops.page(mgr, db, table, after, bool(cursor), limit, order == "desc")

    @db_route("/api/db/<db>/tables/<table>/rows", ["POST"], status=_created_if_inserted)
    def insert_rows(self, request: IRequest, db: str, table: str) -> Call:
        conflict = _conflict(request)
        body = read_json(request, MAX_ROWS_BODY)
        docs = body if isinstance(body, list) else [body]
        if not docs or len(docs) > 10_000:
            raise bad_field("body", "send one document or a list of 1-10000 documents")
        for i, d in enumerate(docs):
            if not isinstance(d, dict):
                raise bad_field(
                    f"body[{i}]" if isinstance(body, list) else "body", "must be an object"
                )

        async def call(mgr: RDBManager) -> Any:
            result = await ops.insert(mgr, db, table, docs, conflict)
            written = result["inserted"] + result["replaced"] + result["unchanged"]
            if result["errors"] and not written:
                first = result.get("firstError", "")
                if "Duplicate primary key" in first:
                    raise ApiError(409, "duplicate_key", first, field="primaryKey", extra=result)
                raise ApiError(422, "db_rejected", first, extra=result)
            return result

        return call

    @db_route("/api/db/<db>/tables/<table>/rows/<path:key>", ["GET"])
    def get_row(self, request: IRequest, db: str, table: str, key: Any) -> Call:
        async def call(mgr: RDBManager) -> Any:
            row = await ops.get_row(mgr, db, table, key)
            if row is None:
                raise ApiError(404, "row_not_found", f"no row with key {key!r}", field="key")
            return row

        return call

    @db_route("/api/db/<db>/tables/<table>/rows/<path:key>", ["PATCH"])
    def update_row(self, request: IRequest, db: str, table: str, key: Any) -> Call:
        patch = read_json_object(request, MAX_ROWS_BODY)

        async def call(mgr: RDBManager) -> Any:
            return _changed(await ops.update(mgr, db, table, key, patch), key)

        return call

    @db_route("/api/db/<db>/tables/<table>/rows/<path:key>", ["PUT"], status=_created_if_inserted)
    def replace_row(self, request: IRequest, db: str, table: str, key: Any) -> Call:
        doc = read_json_object(request, MAX_ROWS_BODY)

        async def call(mgr: RDBManager) -> Any:
            pk = await ops.primary_key(mgr, db, table)
            if pk in doc and doc[pk] != key:
                raise ApiError(
                    422, "primary_key_change", f"{pk} in the body differs from the key", field=pk
                )
            result = await ops.replace(mgr, db, table, key, {**doc, pk: key})
            if result["errors"]:
                raise ApiError(422, "db_rejected", result.get("firstError", ""), extra=result)
            return result

        return call

    @db_route("/api/db/<db>/tables/<table>/rows/<path:key>", ["DELETE"])
    def delete_row(self, request: IRequest, db: str, table: str, key: Any) -> Call:
        async def call(mgr: RDBManager) -> Any:
            return _changed(await ops.delete(mgr, db, table, key), key)

        return call

    # query ------------------------------------------------------------------------------------

    @db_route("/api/db/<db>/tables/<table>/query", ["POST"])
    def query(self, request: IRequest, db: str, table: str) -> Call:
        try:
            q = Q.parse_query(read_json_object(request))
        except Q.QueryError as e:
            raise bad_field(e.field, e.message) from None

        async def call(mgr: RDBManager) -> Any:
            try:
                return await ops.run_query(mgr, db, table, q)
            except RDBUnavailable as e:
                if e.reason == "timeout":
                    raise ApiError(
                        422,
                        "query_timeout",
                        f"the query ran longer than {ops.QUERY_TIMEOUT:.0f}s; narrow it "
                        "(an index with 'between', a smaller limit)",
                        field="query",
                    ) from None
                raise
            except ReqlError as e:
                api = reql_error(e)
                if api.status == 422:
                    api.field = api.field or "query"
                raise api from None

        return call

    # export -----------------------------------------------------------------------------------

    @db_route("/api/db/<db>/tables/<table>/export", ["GET"], status=None)
    def export(self, request: IRequest, db: str, table: str) -> Call:
        fmt = _format(request)
        columns_arg = _arg(request, "columns")
        return lambda mgr: self._export(request, mgr, db, table, fmt, columns_arg)

    async def _export(
        self,
        request: IRequest,
        mgr: RDBManager,
        db: str,
        table: str,
        fmt: str,
        columns_arg: str | None,
    ) -> None:
        """Stream the table in key order (the CSV's columns: those asked, else every key)."""
        pk = await ops.primary_key(mgr, db, table)
        t = r.db(db).table(table)
        columns: list[str] = []
        if fmt == "csv":
            if columns_arg:
                columns = [c for c in (x.strip() for x in columns_arg.split(",")) if c]
            else:
                keys = await mgr.run(t.concat_map(lambda d: d.keys()).distinct(), timeout=60.0)
                columns = X.column_order(keys, pk)
        cursor = await mgr.run(t.order_by(index=pk), timeout=60.0, **ops.RAW)
        req: Any = request
        req.setResponseCode(200)
        ctype = {"csv": "text/csv", "json": "application/json", "ndjson": "application/x-ndjson"}
        req.setHeader(b"content-type", f"{ctype[fmt]}; charset=utf-8".encode())
        req.setHeader(b"cache-control", b"no-store")
        req.setHeader(b"content-disposition", f'attachment; filename="{db}.{table}.{fmt}"'.encode())
        req.responseHeaders.removeHeader(b"content-length")
        body = _Body(req)
        count = 0
        try:
            if fmt == "csv":
                await body.write(X.csv_line(columns))
            elif fmt == "json":
                await body.write(b"[")
            while True:
                try:
                    doc = await cursor.next()
                except ReqlCursorEmpty:
                    break
                if fmt == "csv":
                    chunk = X.csv_row(doc, columns)
                elif fmt == "json":
                    chunk = (b",\n" if count else b"\n") + X.json_doc(doc)
                else:
                    chunk = X.json_doc(doc) + b"\n"
                await body.write(chunk)
                count += 1
            if fmt == "json":
                await body.write(b"\n]\n" if count else b"]\n")
        except (ConnectionError, ReqlError) as e:
            # Headers are out: an incomplete body is all that can say "failed".
            log.warn("export of {db}.{table} stopped: {e}", db=db, table=table, e=str(e)[:200])
            cursor.close()
            body.done()
            if not body.gone and req.channel is not None:
                req.channel.transport.abortConnection()
            return None
        body.done()
        return None

    # import -----------------------------------------------------------------------------------

    @db_route("/api/db/<db>/tables/<table>/import", ["POST"])
    def import_rows(self, request: IRequest, db: str, table: str) -> Call:
        fmt = _format(request)
        dry_run = _bool_arg(request, "dryRun")
        conflict = _conflict(request)
        try:
            types = X.parse_types(_arg(request, "types"))
        except ValueError as e:
            raise bad_field("types", str(e)) from None
        if types and fmt != "csv":
            raise bad_field("types", "column types apply to CSV only")
        length = request.getHeader(b"content-length")
        if length and length.isdigit() and int(length) > MAX_IMPORT_BYTES:
            raise ApiError(
                413, "body_too_large", f"imports are limited to {MAX_IMPORT_BYTES} bytes"
            )
        content = request.content
        if content is None:
            raise bad_field("body", "send the file as the request body")
        content.seek(0)
        return lambda mgr: self._import(mgr, db, table, content, fmt, types, dry_run, conflict)

    async def _import(
        self,
        mgr: RDBManager,
        db: str,
        table: str,
        content: IO[bytes],
        fmt: str,
        types: dict[str, str],
        dry_run: bool,
        conflict: str,
    ) -> dict[str, Any]:
        """Import the file in batches of IMPORT_BATCH rows (checked only, for a dry run);
        the report, or a 422 carrying it."""
        pk = await ops.primary_key(mgr, db, table)
        rows = X.rows(fmt, content, types)

        def next_batch(
            it: Iterator[tuple[int, Any]] = rows,
        ) -> tuple[list[tuple[int, Any]], X.ImportFormatError | None]:
            """Up to IMPORT_BATCH rows, and the file's error if reading stopped at one
            (the rows before it are still imported; the report says where it stopped)."""
            out: list[tuple[int, Any]] = []
            try:
                for item in it:
                    out.append(item)
                    if len(out) >= IMPORT_BATCH:
                        break
            except X.ImportFormatError as e:
                return out, e
            return out, None

        report: dict[str, Any] = {
            "format": fmt,
            "dryRun": dry_run,
            "rows": 0,
            "valid": 0,
            "inserted": 0,
            "replaced": 0,
            "unchanged": 0,
            "errors": 0,
            "rowErrors": [],
            "preview": [],
        }

        def row_error(row: int, message: str) -> None:
            report["errors"] += 1
            if len(report["rowErrors"]) < MAX_ROW_ERRORS:
                report["rowErrors"].append({"row": row, "message": message})

        t = r.db(db).table(table)

        async def process(batch: list[tuple[int, Any]]) -> None:
            good: list[tuple[int, dict[str, Any]]] = []
            for row_no, doc in batch:
                report["rows"] += 1
                if isinstance(doc, X.RowError):
                    row_error(row_no, doc.message)
                    continue
                key = doc.get(pk)
                if key is not None and not _valid_key(key):
                    row_error(row_no, f"{pk}: a key is a string, number, boolean or array")
                    continue
                good.append((row_no, doc))
                if len(report["preview"]) < PREVIEW_ROWS:
                    report["preview"].append(doc)
            report["valid"] += len(good)
            if not good:
                return
            if dry_run:
                if conflict == "error":
                    keys = [d[pk] for _, d in good if pk in d]
                    if keys:
                        existing = await mgr.run(
                            r.expr(keys).filter(lambda k: t.get(k).ne(None)), timeout=30.0
                        )
                        taken = {_hashable(k) for k in existing}
                        for row_no, d in good:
                            if pk in d and _hashable(d[pk]) in taken:
                                row_error(row_no, f"{pk} {d[pk]!r} already exists")
                                report["valid"] -= 1
                return
            result = await mgr.run(
                t.insert([d for _, d in good], conflict=conflict, return_changes="always"),
                timeout=60.0,
            )
            for k in ("inserted", "replaced", "unchanged"):
                report[k] += result.get(k, 0)
            for (row_no, _), change in zip(good, result.get("changes") or [], strict=False):
                if change.get("error"):
                    row_error(row_no, str(change["error"])[:300])

        file_error: X.ImportFormatError | None = None
        while True:
            batch, file_error = await deferToThread(next_batch)
            if batch:
                await process(batch)
            if file_error is not None or not batch:
                break
        if file_error is not None:
            raise ApiError(422, "bad_file", str(file_error), field="body", extra=report)

        written = report["inserted"] + report["replaced"] + report["unchanged"]
        if not dry_run and report["errors"] and not written:
            raise ApiError(
                422, "import_failed", "no row could be imported", field="body", extra=report
            )
        return report


def _valid_key(key: Any) -> bool:
    if isinstance(key, bool | int | float | str):
        return True
    return isinstance(key, list) and all(_valid_key(k) for k in key)


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


class DBFeedRoutes:
    """Mixin of HostAPI: the changefeed SSE route."""

    registry: Registry

    @db_route("/sse/db/<db>/tables/<table>/changes", ["GET"], status=None)
    def table_changes(self, request: IRequest, db: str, table: str, cluster_id: str) -> Call:
        """snapshot, ready, change..., resync (then snapshot again), gone; see rdb.feeds."""
        raw_filter = _arg(request, "filter")
        filt = None
        if raw_filter:
            try:
                filt = json.loads(raw_filter)
                Q.parse_filter(filt)
            except ValueError as e:
                field = e.field if isinstance(e, Q.QueryError) else "filter"
                message = e.message if isinstance(e, Q.QueryError) else "is not JSON"
                raise bad_field(field, message) from None
        return lambda mgr: self._follow(request, mgr, db, table, filt, cluster_id)

    async def _follow(
        self, request: IRequest, mgr: RDBManager, db: str, table: str, filt: Any, cluster_id: str
    ) -> None:
        """Stream the table's changes until the client or the Host App goes."""
        await ops.primary_key(mgr, db, table)  # 404/503 now, before the stream starts
        instance = self.registry.get(cluster_id)
        last_id = request.getHeader(b"last-event-id") or (_arg(request, "lastEventId") or "")
        stream = SSEStream(request, _reactor(), cluster=instance.cluster_id, kind="db")
        stream.start()
        sub, unsubscribe = hub_of(mgr).subscribe(db, table, filt, stream, resume=bool(last_id))
        stream.on_drain(sub.drained)
        stream.on_close(unsubscribe)
        try:
            instance.start_worker(f"changefeed {db}.{table}", stream.worker)
        except RuntimeError:
            stream.close()
        await stream.done
        return None
