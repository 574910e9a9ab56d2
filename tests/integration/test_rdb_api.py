"""The DB HTTP API end to end: a real ``twistd guildnet`` against a real RethinkDB server.

The default cluster's database is given by ``RETHINKDB_ADDR`` (discovery through a real
Service is in test_rdb_manager.py). Module order matters little: each test makes its own
database.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guildnet.rdb import query as Q
from tests.harness.rethinkdb import RethinkServer
from tests.integration.hostproc import HostProc, closed_url, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def app(rdb_server: RethinkServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProc]:
    work = tmp_path_factory.mktemp("db-api")
    host = HostProc(
        work, {"HOSTAPP_API_PROXY_URL": closed_url(), "RETHINKDB_ADDR": rdb_server.addr}
    )
    with host.running():
        yield host


def new_db(app: HostProc, **extra: Any) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    app.ok("POST", "/api/db", {"id": name, **extra}, 201)
    return name


def new_table(app: HostProc, db: str, name: str = "t", **extra: Any) -> str:
    app.ok("POST", f"/api/db/{db}/tables", {"name": name, **extra}, 201)
    return name


def test_health_is_ready_with_its_address(app: HostProc, rdb_server: RethinkServer) -> None:
    health = wait_for(
        "ready",
        lambda: (b := app.request("GET", "/api/db/health")[1]) and b["state"] == "ready" and b,
    )
    assert health["address"] == rdb_server.addr and health["source"] == "override"
    assert health["server"]["name"] == "guildnet_test"
    ready = app.request("GET", "/readyz")[1]
    assert ready["checks"]["rethinkdb"]["state"] == "ready"
    assert ready["checks"]["rethinkdb"]["fatal"] is False
    # The per-cluster form is the same handler.
    assert app.get("/api/cluster/default/db/health")["state"] == "ready"


def test_databases(app: HostProc) -> None:
    db = new_db(app, name="Sales data", description="orders and invoices")
    listed = {d["id"]: d for d in app.get("/api/db")["databases"]}
    assert listed[db] == {"id": db, "name": "Sales data", "description": "orders and invoices"}
    assert "rethinkdb" not in listed and "guildnet" not in listed
    status, body, _ = app.request("POST", "/api/db", {"id": db})
    assert status == 409 and body["field"] == "id"
    for bad, field in (({"id": "has space"}, "id"), ({}, "id"), ({"id": "rethinkdb"}, "id")):
        status, body, _ = app.request("POST", "/api/db", bad)
        assert status == 400 and body["field"] == field, body
    status, body, _ = app.request("POST", "/api/db", {"id": "health"})
    assert status == 400 and body["field"] == "id"
    info = app.get(f"/api/db/{db}")
    assert info["name"] == "Sales data" and info["tables"] == [] and info["documents"] == 0
    status, body, _ = app.request("GET", "/api/db/nope_missing_db")
    assert status == 404 and body["field"] == "db", body
    status, body, _ = app.request("DELETE", f"/api/db/{db}")
    assert status == 400 and body["field"] == "confirm"
    status, body, _ = app.request("DELETE", f"/api/db/{db}?confirm=other")
    assert status == 400 and body["field"] == "confirm"
    assert app.ok("DELETE", f"/api/db/{db}?confirm={db}")["dropped"] == db
    assert db not in {d["id"] for d in app.get("/api/db")["databases"]}


def test_tables(app: HostProc) -> None:
    db = new_db(app)
    info = app.ok(
        "POST",
        f"/api/db/{db}/tables",
        {
            "name": "people",
            "primaryKey": "email",
            "durability": "soft",
            "indexes": [
                "age",
                {"name": "city", "field": "address.city"},
                {"name": "tags", "multi": True},
                {"name": "name_age", "fields": ["name", "age"]},
            ],
        },
        201,
    )
    assert info["primaryKey"] == "email" and info["durability"] == "soft"
    assert sorted(i["name"] for i in info["indexes"]) == ["age", "city", "name_age", "tags"]
    assert all(i["ready"] for i in info["indexes"])
    assert next(i for i in info["indexes"] if i["name"] == "tags")["multi"] is True
    status, body, _ = app.request("POST", f"/api/db/{db}/tables", {"name": "people"})
    assert status == 409 and body["field"] == "name"
    for bad, field in (
        ({"name": "x y"}, "name"),
        ({"name": "ok", "durability": "maybe"}, "durability"),
        ({"name": "ok", "primaryKey": ""}, "primaryKey"),
        ({"name": "ok", "indexes": [{"name": "a b"}]}, "indexes[0].name"),
    ):
        status, body, _ = app.request("POST", f"/api/db/{db}/tables", bad)
        assert status == 400 and body["field"] == field, body
    status, body, _ = app.request("POST", "/api/db/missing_db_x/tables", {"name": "t"})
    assert status == 404 and body["field"] == "db", body
    tables = app.get(f"/api/db/{db}/tables")["tables"]
    assert [(t["name"], t["documents"]) for t in tables] == [("people", 0)]
    status, body, _ = app.request("GET", f"/api/db/{db}/tables/nope")
    assert status == 404 and body["field"] == "table", body
    app.ok(
        "POST", f"/api/db/{db}/tables/people/indexes", {"name": "zip", "field": "address.zip"}, 201
    )
    app.ok("DELETE", f"/api/db/{db}/tables/people/indexes/zip")
    status, body, _ = app.request("DELETE", f"/api/db/{db}/tables/people/indexes/zip")
    assert status == 404 and body["field"] == "index", body
    status, body, _ = app.request("DELETE", f"/api/db/{db}/tables/people")
    assert status == 400 and body["field"] == "confirm"
    app.ok("DELETE", f"/api/db/{db}/tables/people?confirm=people")
    assert app.get(f"/api/db/{db}/tables")["tables"] == []


KEYS = {
    "string": lambda i: f"k{i:03d}-{random.choice('abc')}",
    "number": lambda i: i * 1.5 - 10,
    "compound": lambda i: [i % 3, f"x{i}"],
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_pagination_is_stable_for_every_key_type(app: HostProc, kind: str) -> None:
    db = new_db(app)
    new_table(app, db)
    keys = [KEYS[kind](i) for i in range(37)]
    random.shuffle(keys)
    result = app.ok("POST", f"/api/db/{db}/tables/t/rows", [{"id": k, "v": 1} for k in keys], 201)
    assert result["inserted"] == 37
    for order in ("asc", "desc"):
        seen: list[Any] = []
        cursor = None
        pages = 0
        while True:
            path = f"/api/db/{db}/tables/t/rows?limit=8&order={order}"
            if cursor:
                path += f"&after={cursor}"
            page = app.get(path)
            assert page["primaryKey"] == "id"
            seen += [row["id"] for row in page["rows"]]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert pages == 5
        assert len(seen) == 37
        expected = sorted(keys, reverse=order == "desc")
        assert seen == expected
    status, body, _ = app.request("GET", f"/api/db/{db}/tables/t/rows?after=!!!")
    assert status == 400 and body["field"] == "after"
    status, body, _ = app.request("GET", f"/api/db/{db}/tables/t/rows?limit=0")
    assert status == 400 and body["field"] == "limit"


def test_rows_crud_and_conflicts(app: HostProc) -> None:
    db = new_db(app)
    new_table(app, db)
    base = f"/api/db/{db}/tables/t/rows"
    created = app.ok("POST", base, {"id": "a", "n": 1}, 201)
    assert created["changes"] == [{"old": None, "new": {"id": "a", "n": 1}}]
    status, body, _ = app.request("POST", base, {"id": "a", "n": 2})
    assert status == 409 and body["field"] == "primaryKey" and body["errors"] == 1
    replaced = app.ok("POST", base + "?conflict=replace", {"id": "a", "n": 2})
    assert replaced["replaced"] == 1 and replaced["changes"][0]["old"]["n"] == 1
    updated = app.ok("POST", base + "?conflict=update", {"id": "a", "m": 3})
    assert updated["changes"][0]["new"] == {"id": "a", "n": 2, "m": 3}
    generated = app.ok("POST", base, [{"n": 10}, {"n": 11}], 201)
    assert len(generated["generatedKeys"]) == 2
    mixed = app.ok("POST", base, [{"id": "a"}, {"id": "b"}], 201)
    assert (mixed["inserted"], mixed["errors"]) == (1, 1)
    status, body, _ = app.request("POST", base + "?conflict=merge", {"id": "z"})
    assert status == 400 and body["field"] == "conflict"
    status, body, _ = app.request("POST", base, [{"id": "q"}, 3])
    assert status == 400 and body["field"] == "body[1]"

    assert app.get(f"{base}/a")["m"] == 3
    status, body, _ = app.request("GET", f"{base}/nope")
    assert status == 404 and body["field"] == "key"
    patched = app.ok("PATCH", f"{base}/a", {"n": 5, "sub": {"x": 1}})
    assert patched["changes"][0]["new"]["n"] == 5 and patched["replaced"] == 1
    status, body, _ = app.request("PATCH", f"{base}/a", {"id": "other"})
    assert status == 422 and body["field"] == "primaryKey", body
    status, body, _ = app.request("PATCH", f"{base}/missing", {"n": 1})
    assert status == 404 and body["field"] == "key"
    put = app.ok("PUT", f"{base}/a", {"only": True})
    assert put["changes"][0]["new"] == {"id": "a", "only": True}
    status, body, _ = app.request("PUT", f"{base}/a", {"id": "b"})
    assert status == 422 and body["field"] == "id"
    assert app.ok("PUT", f"{base}/fresh", {"v": 1}, 201)["inserted"] == 1
    deleted = app.ok("DELETE", f"{base}/a")
    assert deleted["deleted"] == 1 and deleted["changes"][0]["old"]["only"] is True
    status, body, _ = app.request("DELETE", f"{base}/a")
    assert status == 404

    # Typed keys in the path: 7 is a number, "7" (quoted) a string, [1,"x"] compound.
    app.ok(
        "POST",
        base,
        [{"id": 7, "t": "num"}, {"id": "7", "t": "str"}, {"id": [1, "x"], "t": "arr"}],
        201,
    )
    assert app.get(f"{base}/7")["t"] == "num"
    assert app.get(f"{base}/{quote(json.dumps('7'))}")["t"] == "str"
    assert app.get(f"{base}/{quote(json.dumps([1, 'x']))}")["t"] == "arr"
    app.ok("POST", base, {"id": "a/b c", "t": "slash"}, 201)
    assert app.get(f"{base}/{quote('a/b c', safe='/')}")["t"] == "slash"


DOCS: list[dict[str, Any]] = [
    {
        "id": i,
        "n": (i * 7) % 23,
        "name": random.Random(i).choice(["alice", "bob", "carol", "dave", "Eve", "frank"])
        + str(i % 4),
        "tags": random.Random(i + 100).sample(["a", "b", "c", "d"], k=i % 3),
        "flag": i % 2 == 0,
        **({"sub": {"x": i % 5}} if i % 3 else {}),
    }
    for i in range(60)
]
FIELDS = st.sampled_from(["n", "name", "tags", "flag", "sub.x", "missing"])
LEAF_VALUES = {
    "n": st.integers(-2, 25),
    "name": st.sampled_from(["alice0", "bob1", "carol", "x", "e"]),
    "tags": st.sampled_from(["a", "b", "z"]),
    "flag": st.booleans(),
    "sub.x": st.integers(0, 5),
    "missing": st.integers(0, 3),
}


@st.composite
def leaf(draw: Any) -> dict[str, Any]:
    field = draw(FIELDS)
    op = draw(
        st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge", "contains", "in", "exists", "match"])
    )
    if op == "exists":
        return {"field": field, "op": op}
    if op == "match":
        return {
            "field": field,
            "op": op,
            "value": draw(st.sampled_from(["^a", "[0-9]$", "(?i)^e", "o"])),
        }
    if op == "in":
        return {"field": field, "op": op, "value": draw(st.lists(LEAF_VALUES[field], max_size=3))}
    if op in ("lt", "le", "gt", "ge") and field in ("tags", "flag"):
        op = "eq"
    return {"field": field, "op": op, "value": draw(LEAF_VALUES[field])}


FILTERS = st.recursive(
    leaf(),
    lambda c: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(c, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(c, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, c),
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def query_table(app: HostProc) -> str:
    db = new_db(app)
    new_table(app, db, indexes=["n"])
    app.ok("POST", f"/api/db/{db}/tables/t/rows", DOCS, 201)
    return f"/api/db/{db}/tables/t/query"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(FILTERS)
def test_query_filters_match_the_reference(app: HostProc, query_table: str, filt: Any) -> None:
    got = app.ok("POST", query_table, {"filter": filt, "orderBy": "id", "limit": 1000})
    expected = [d["id"] for d in DOCS if Q.evaluate(Q.parse_filter(filt), d)]
    assert [row["id"] for row in got["rows"]] == expected, filt


def test_query_order_between_pluck_skip_limit(app: HostProc, query_table: str) -> None:
    got = app.ok(
        "POST",
        query_table,
        {
            "between": {"index": "n", "lower": 5, "upper": 10},
            "orderBy": {"index": "n", "dir": "desc"},
            "pluck": ["id", "n"],
            "skip": 1,
            "limit": 4,
        },
    )
    expected = sorted((d for d in DOCS if 5 <= d["n"] < 10), key=lambda d: -d["n"])[1:5]
    assert [r["n"] for r in got["rows"]] == [d["n"] for d in expected]
    assert all(set(r) == {"id", "n"} for r in got["rows"])
    by_name = app.ok(
        "POST",
        query_table,
        {"orderBy": [{"field": "name"}, {"field": "id", "dir": "desc"}], "limit": 5},
    )
    expected_names = sorted(DOCS, key=lambda d: (d["name"], -d["id"]))[:5]
    assert [r["id"] for r in by_name["rows"]] == [d["id"] for d in expected_names]
    for bad, field in (
        ({"filter": {"field": "n", "op": "js", "value": "1"}}, "filter.op"),
        ({"limit": 100000}, "limit"),
        ({"r.js": "x"}, "r.js"),
    ):
        status, body, _ = app.request("POST", query_table, bad)
        assert status == 400 and body["field"] == field, body
    status, body, _ = app.request("POST", query_table, {"between": {"index": "nope", "lower": 1}})
    assert status in (404, 422) and body["field"] in ("index", "query"), body


def test_import_csv_with_types_dry_run_then_real(app: HostProc) -> None:
    db = new_db(app)
    new_table(app, db)
    base = f"/api/db/{db}/tables/t"
    app.ok("POST", f"{base}/rows", {"id": 2, "taken": True}, 201)
    text = (
        'id,name,age,active,meta\n1,Ann,31,yes,{"a":1}\n2,Bob,40,no,\n'
        "3,Cy,old,true,\n4,Di,22,false,[1]\n"
    )
    status, body, _ = app.request(
        "POST",
        f"{base}/import?format=csv&dryRun=true&types=id:integer,age:integer,active:boolean,meta:json",
        raw=text.encode(),
        headers={"content-type": "text/csv"},
    )
    assert status == 200, body
    assert body["dryRun"] and body["rows"] == 4 and body["inserted"] == 0
    errors = {e["row"]: e["message"] for e in body["rowErrors"]}
    assert set(errors) == {2, 3}, errors
    assert "already exists" in errors[2] and "age" in errors[3]
    assert body["preview"][0] == {
        "id": 1,
        "name": "Ann",
        "age": 31,
        "active": True,
        "meta": {"a": 1},
    }
    assert app.get(f"{base}/rows")["rows"] == [{"id": 2, "taken": True}]
    status, body, _ = app.request(
        "POST",
        f"{base}/import?format=csv&types=id:integer,age:integer,active:boolean,meta:json",
        raw=text.encode(),
    )
    assert status == 200 and body["inserted"] == 2 and body["errors"] == 2, body
    assert app.get(f"{base}/rows/4") == {
        "id": 4,
        "name": "Di",
        "age": 22,
        "active": False,
        "meta": [1],
    }
    status, body, _ = app.request("POST", f"{base}/import?format=csv&types=age:float", raw=b"")
    assert status == 400 and body["field"] == "types"


def test_import_json_and_ndjson_stream(app: HostProc) -> None:
    db = new_db(app)
    new_table(app, db)
    base = f"/api/db/{db}/tables/t"
    docs = [{"id": i, "text": "x" * 200, "nested": {"i": i}} for i in range(3000)]
    raw = json.dumps(docs).encode()
    status, body, _ = app.request("POST", f"{base}/import?format=json", raw=raw)
    assert status == 200 and body["inserted"] == 3000 and body["errors"] == 0, body
    nd = "\n".join(json.dumps({"id": 5000 + i}) for i in range(10)) + "\nnot json\n[1]\n"
    status, body, _ = app.request("POST", f"{base}/import?format=ndjson", raw=nd.encode())
    assert status == 200 and body["inserted"] == 10 and body["errors"] == 2
    assert [e["row"] for e in body["rowErrors"]] == [11, 12]
    status, body, _ = app.request("POST", f"{base}/import?format=json", raw=b'{"id": 1}')
    assert status == 422 and body["field"] == "body"
    status, body, _ = app.request(
        "POST", f"{base}/import?format=json", raw=b'[{"id": 9999}, {"id": '
    )
    assert status == 422 and "element 2" in body["message"]
    status, body, _ = app.request("POST", f"{base}/import?format=xml", raw=b"")
    assert status == 400 and body["field"] == "format"
    assert app.get(f"/api/db/{db}/tables/t")["documents"] == 3011


def test_export_formats_stream_in_a_stable_order(app: HostProc) -> None:
    db = new_db(app)
    new_table(app, db, primaryKey="code")
    docs: list[dict[str, Any]] = [
        {"code": f"c{i:04d}", "b": i, **({"a": {"x": i}} if i % 2 else {"z": 'q,"r"'})}
        for i in range(1500)
    ]
    app.ok("POST", f"/api/db/{db}/tables/t/rows", docs, 201)
    base = f"/api/db/{db}/tables/t/export"
    status, text, resp = app.request("GET", f"{base}?format=json")
    assert status == 200 and resp.getheader("content-disposition")
    assert json.loads(text) == sorted(docs, key=lambda d: d["code"])
    status, text, _ = app.request("GET", f"{base}?format=ndjson")
    assert [json.loads(line) for line in text.splitlines()] == sorted(docs, key=lambda d: d["code"])
    status, text, _ = app.request("GET", f"{base}?format=csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["code", "a", "b", "z"]
    assert rows[1] == ["c0000", "", "0", 'q,"r"'] and rows[2] == ["c0001", '{"x":1}', "1", ""]
    assert len(rows) == 1501
    _, again, _ = app.request("GET", f"{base}?format=csv")
    assert again == text
    status, body, _ = app.request("GET", f"{base}?format=xls")
    assert status == 400 and body["field"] == "format"


def test_unreachable_database_is_a_503_with_the_reason(tmp_path: Path) -> None:
    port = free_port()
    host = HostProc(
        tmp_path, {"HOSTAPP_API_PROXY_URL": closed_url(), "RETHINKDB_ADDR": f"127.0.0.1:{port}"}
    )
    try:
        started = time.monotonic()
        status, body, resp = host.request("GET", "/api/db")
        assert time.monotonic() - started < 10
        assert status == 503 and body["error"] == "db_unavailable" and body["reason"] == "refused"
        assert int(resp.getheader("retry-after") or 0) >= 1
        health = host.request("GET", "/api/db/health")[1]
        assert health["state"] in ("backoff", "connecting") and health["reason"] == "refused"
        assert health["attempts"] >= 1
        ready = host.request("GET", "/readyz")[1]
        assert ready["checks"]["rethinkdb"]["ok"] is False
        assert ready["checks"]["rethinkdb"]["fatal"] is False
    finally:
        host.stop()
