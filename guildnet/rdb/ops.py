"""Database, table and row operations on a cluster's RethinkDB (through its manager).

Each returns plain JSON-able values; ReQL errors pass through for the HTTP layer to map
(``guildnet.http.db``). Meta operations (creating databases, tables, indexes, GuildNet's
meta table of names and descriptions) go through ``run_meta``'s short bounded retries.
Rows come back with times and binaries in their raw JSON form, so they always serialize.
"""

from __future__ import annotations

import time
from typing import Any, Final

from rethinkdb.errors import ReqlOpFailedError

from guildnet.rdb import query as Q
from guildnet.rdb.driver import r
from guildnet.rdb.manager import RDBManager
from guildnet.rdb.names import META_DB, META_TABLE, RESERVED_DBS

RAW: Final[dict[str, Any]] = {"time_format": "raw", "binary_format": "raw", "group_format": "raw"}
MAX_PAGE: Final = 1000
QUERY_TIMEOUT: Final = 10.0
MAX_RESULT_BYTES: Final = 8 * 1024 * 1024


async def collect(
    result: Any, max_items: int, max_bytes: int = MAX_RESULT_BYTES
) -> tuple[list[Any], bool]:
    """Items of a cursor or list, bounded; (items, truncated)."""
    if isinstance(result, list):
        return result[:max_items], len(result) > max_items
    items: list[Any] = []
    size = 0
    truncated = False
    from rethinkdb.errors import ReqlCursorEmpty

    from guildnet.rdb.transfer import json_doc

    try:
        while True:
            try:
                item = await result.next()
            except ReqlCursorEmpty:
                break
            size += len(json_doc(item))
            if len(items) >= max_items or size > max_bytes:
                truncated = True
                break
            items.append(item)
    finally:
        result.close()
    return items, truncated


# -- meta -------------------------------------------------------------------------------------


async def ensure_meta(mgr: RDBManager) -> None:
    """GuildNet's own table of database names and descriptions (created once)."""
    if mgr._meta_ready:
        return
    dbs = await mgr.run_meta(lambda: r.db_list())
    if META_DB not in dbs:
        try:
            await mgr.run_meta(lambda: r.db_create(META_DB))
        except ReqlOpFailedError as e:
            if "already exists" not in str(e):
                raise
    tables = await mgr.run_meta(lambda: r.db(META_DB).table_list())
    if META_TABLE not in tables:
        try:
            await mgr.run_meta(lambda: r.db(META_DB).table_create(META_TABLE))
        except ReqlOpFailedError as e:
            if "already exists" not in str(e):
                raise
    await mgr.run_meta(lambda: r.db(META_DB).table(META_TABLE).wait(timeout=10))
    mgr._meta_ready = True


def _meta() -> Any:
    return r.db(META_DB).table(META_TABLE)


# -- databases --------------------------------------------------------------------------------


async def list_databases(mgr: RDBManager) -> list[dict[str, Any]]:
    names = await mgr.run(r.db_list())
    meta: dict[str, Any] = {}
    if META_DB in names:
        try:
            rows, _ = await collect(await mgr.run(_meta(), **RAW), 10_000)
            meta = {m["id"]: m for m in rows}
        except ReqlOpFailedError:
            meta = {}
    out = []
    for name in sorted(n for n in names if n not in RESERVED_DBS):
        m = meta.get(name) or {}
        out.append(
            {"id": name, "name": m.get("name") or name, "description": m.get("description") or ""}
        )
    return out


async def create_database(
    mgr: RDBManager, db: str, name: str | None, description: str | None
) -> dict[str, Any]:
    await ensure_meta(mgr)
    await mgr.run_meta(lambda: r.db_create(db))
    doc = {"id": db, "name": name or db, "description": description or "", "createdAt": time.time()}
    await mgr.run_meta(lambda: _meta().insert(doc, conflict="replace"))
    return {"id": db, "name": doc["name"], "description": doc["description"]}


async def database_info(mgr: RDBManager, db: str) -> dict[str, Any]:
    tables = await mgr.run(r.db(db).table_list())
    meta = None
    if META_DB in await mgr.run(r.db_list()):
        try:
            meta = await mgr.run(_meta().get(db), **RAW)
        except ReqlOpFailedError:
            meta = None
    infos = []
    for t in tables:
        infos.append(await table_summary(mgr, db, t))
    return {
        "id": db,
        "name": (meta or {}).get("name") or db,
        "description": (meta or {}).get("description") or "",
        "tables": infos,
        "documents": sum(i["documents"] or 0 for i in infos),
        "size": None,  # RethinkDB 2.4 reports no per-table size
    }


async def drop_database(mgr: RDBManager, db: str) -> dict[str, Any]:
    result = await mgr.run_meta(lambda: r.db_drop(db))
    if META_DB in await mgr.run(r.db_list()):
        await mgr.run(_meta().get(db).delete())
    return {"dropped": db, "tables": result.get("tables_dropped", 0)}


# -- tables -----------------------------------------------------------------------------------


async def table_summary(mgr: RDBManager, db: str, table: str) -> dict[str, Any]:
    t = r.db(db).table(table)
    info = await mgr.run(t.info())
    try:
        count = await mgr.run(t.count(), timeout=5.0)
    except Exception:
        count = None  # unavailable right now; the rest still helps
    return {
        "name": table,
        "primaryKey": info.get("primary_key"),
        "indexes": info.get("indexes") or [],
        "documents": count,
    }


async def list_tables(mgr: RDBManager, db: str) -> list[dict[str, Any]]:
    names = await mgr.run(r.db(db).table_list())
    return [await table_summary(mgr, db, n) for n in names]


async def create_table(
    mgr: RDBManager,
    db: str,
    table: str,
    primary_key: str,
    durability: str,
    indexes: list[dict[str, Any]],
) -> dict[str, Any]:
    await mgr.run_meta(
        lambda: r.db(db).table_create(table, primary_key=primary_key, durability=durability)
    )
    for ix in indexes:
        await create_index(mgr, db, table, ix)
    await mgr.run_meta(lambda: r.db(db).table(table).wait(timeout=10))
    return await table_info(mgr, db, table)


def _index_term(t: Any, ix: dict[str, Any]) -> Any:
    """``index_create`` for ``{"name", "fields": [path, ...], "multi"}`` (paths are tuples)."""
    name, fields, multi = ix["name"], ix["fields"], bool(ix.get("multi", False))
    if len(fields) == 1:
        if tuple(fields[0]) == (name,):
            return t.index_create(name, multi=multi)
        return t.index_create(name, _row_path(fields[0]), multi=multi)
    return t.index_create(name, [_row_path(p) for p in fields], multi=multi)


def _row_path(path: tuple[str, ...]) -> Any:
    term = r.row
    for p in path:
        term = term[p]
    return term


async def create_index(mgr: RDBManager, db: str, table: str, ix: dict[str, Any]) -> dict[str, Any]:
    t = r.db(db).table(table)
    await mgr.run_meta(lambda: _index_term(t, ix))
    await mgr.run(t.index_wait(ix["name"]), timeout=60.0)
    return {"name": ix["name"]}


async def drop_index(mgr: RDBManager, db: str, table: str, name: str) -> dict[str, Any]:
    await mgr.run_meta(lambda: r.db(db).table(table).index_drop(name))
    return {"dropped": name}


async def table_info(mgr: RDBManager, db: str, table: str) -> dict[str, Any]:
    t = r.db(db).table(table)
    summary = await table_summary(mgr, db, table)
    config = await mgr.run(t.config())
    status = await mgr.run(t.index_status())
    summary.update(
        db=db,
        durability=config.get("durability"),
        shards=len(config.get("shards") or []),
        indexes=[
            {
                "name": s["index"],
                "ready": s.get("ready", False),
                "multi": s.get("multi", False),
                "geo": s.get("geo", False),
            }
            for s in status
        ],
    )
    return summary


async def drop_table(mgr: RDBManager, db: str, table: str) -> dict[str, Any]:
    await mgr.run_meta(lambda: r.db(db).table_drop(table))
    return {"dropped": table}


# -- rows -------------------------------------------------------------------------------------


async def primary_key(mgr: RDBManager, db: str, table: str) -> str:
    return str(await mgr.run(r.db(db).table(table).info()["primary_key"]))


async def page(
    mgr: RDBManager, db: str, table: str, after: Any, has_after: bool, limit: int, desc: bool
) -> dict[str, Any]:
    """One page in primary-key order; ``next`` is the cursor of the following page."""
    pk = await primary_key(mgr, db, table)
    t = r.db(db).table(table)
    if has_after:
        if desc:
            t = t.between(r.minval, after, right_bound="open")
        else:
            t = t.between(after, r.maxval, left_bound="open")
    term = t.order_by(index=r.desc(pk) if desc else r.asc(pk)).limit(limit + 1)
    rows, _ = await collect(await mgr.run(term, **RAW), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    from guildnet.rdb.keys import encode_cursor

    return {
        "primaryKey": pk,
        "rows": rows,
        "next": encode_cursor(rows[-1][pk]) if more and rows else None,
    }


async def get_row(mgr: RDBManager, db: str, table: str, key: Any) -> Any:
    return await mgr.run(r.db(db).table(table).get(key), **RAW)


def _changes(result: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: result.get(k, 0)
        for k in ("inserted", "replaced", "unchanged", "deleted", "skipped", "errors")
    }
    if result.get("first_error"):
        out["firstError"] = result["first_error"]
    if result.get("generated_keys"):
        out["generatedKeys"] = result["generated_keys"]
    out["changes"] = [
        {"old": c.get("old_val"), "new": c.get("new_val")} for c in result.get("changes") or []
    ]
    return out


async def insert(
    mgr: RDBManager, db: str, table: str, docs: list[dict[str, Any]], conflict: str
) -> dict[str, Any]:
    term = r.db(db).table(table).insert(docs, conflict=conflict, return_changes=True)
    return _changes(await mgr.run(term, **RAW))


async def update(
    mgr: RDBManager, db: str, table: str, key: Any, patch: dict[str, Any]
) -> dict[str, Any]:
    term = r.db(db).table(table).get(key).update(patch, return_changes=True)
    return _changes(await mgr.run(term, **RAW))


async def replace(
    mgr: RDBManager, db: str, table: str, key: Any, doc: dict[str, Any]
) -> dict[str, Any]:
    term = r.db(db).table(table).get(key).replace(doc, return_changes=True)
    return _changes(await mgr.run(term, **RAW))


async def delete(mgr: RDBManager, db: str, table: str, key: Any) -> dict[str, Any]:
    term = r.db(db).table(table).get(key).delete(return_changes=True)
    return _changes(await mgr.run(term, **RAW))


async def run_query(mgr: RDBManager, db: str, table: str, q: Q.Query) -> dict[str, Any]:
    pk = await primary_key(mgr, db, table)
    term = Q.to_reql(r, r.db(db).table(table), q, pk)
    result = await mgr.run(term, timeout=QUERY_TIMEOUT, **RAW)
    rows, truncated = await collect(result, q.limit)
    return {"primaryKey": pk, "rows": rows, "count": len(rows), "truncated": truncated}
