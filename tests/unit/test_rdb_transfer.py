"""Import parsing, export formatting and key/cursor encoding (pure; property-tested)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.rdb import keys as K
from guildnet.rdb import transfer as X

JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.text(max_size=30)
)
DOC = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.recursive(
        JSON_SCALAR,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=6,
    ),
    max_size=6,
)
KEY = st.recursive(
    st.one_of(st.integers(-1000, 1000), st.text(max_size=12), st.booleans()),
    lambda c: st.lists(c, min_size=1, max_size=3),
    max_leaves=5,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(DOC, max_size=30), st.sampled_from([1, 7, 4096]))
def test_json_array_is_read_element_by_element(docs: list[dict[str, Any]], chunk: int) -> None:
    raw = json.dumps(docs, indent=1).encode()
    old = X._READ
    X._READ = chunk  # type: ignore[misc]
    try:
        got = list(X.json_array_rows(io.BytesIO(raw)))
    finally:
        X._READ = old  # type: ignore[misc]
    assert [doc for _, doc in got] == docs
    assert [n for n, _ in got] == list(range(1, len(docs) + 1))


def test_json_array_errors() -> None:
    for raw, message in (
        (b'{"a": 1}', "one array"),
        (b'[{"a": 1}, ', "ends early"),
        (b'[{"a": 1} {"b": 2}]', "',' or ']'"),
        (b"[1, {", "element 2"),
    ):
        with pytest.raises(X.ImportFormatError, match=message):
            list(X.json_array_rows(io.BytesIO(raw)))
    rows = list(X.json_array_rows(io.BytesIO(b'[{"a":1}, 2, "x"]')))
    assert isinstance(rows[1][1], X.RowError) and isinstance(rows[2][1], X.RowError)
    assert list(X.json_array_rows(io.BytesIO(b" [ ] "))) == []


def test_ndjson_rows() -> None:
    raw = b'{"a":1}\n\n{"b":2}\nnope\n[1]\n'
    got = list(X.ndjson_rows(io.BytesIO(raw)))
    assert got[0] == (1, {"a": 1}) and got[1] == (2, {"b": 2})
    assert [n for n, d in got if isinstance(d, X.RowError)] == [3, 4]


def test_csv_rows_with_types() -> None:
    raw = '\ufeffid,n,ok,meta,note\n1,2.5,yes,"{""a"": [1]}",\n2,x,no,,hi\n3,1\n'.encode()
    types = X.parse_types("id:integer,n:number,ok:boolean,meta:json")
    got = list(X.csv_rows(io.BytesIO(raw), types))
    assert got[0] == (1, {"id": 1, "n": 2.5, "ok": True, "meta": {"a": [1]}})
    assert isinstance(got[1][1], X.RowError) and "'n'" in got[1][1].message
    assert isinstance(got[2][1], X.RowError) and "cells" in got[2][1].message
    with pytest.raises(X.ImportFormatError, match="unique"):
        list(X.csv_rows(io.BytesIO(b"a,a\n1,2\n"), {}))
    with pytest.raises(X.ImportFormatError, match="not in the header"):
        list(X.csv_rows(io.BytesIO(b"a\n1\n"), {"b": "integer"}))
    with pytest.raises(ValueError, match="one of"):
        X.parse_types("a:float")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["b", "a", "c,d", "é"]), JSON_SCALAR, max_size=4),
        max_size=20,
    )
)
def test_csv_export_has_a_stable_order_and_reads_back(docs: list[dict[str, Any]]) -> None:
    rows = [{"id": i, **d} for i, d in enumerate(docs)]
    columns = X.column_order((k for d in rows for k in d), "id")
    assert columns[0] == "id" and columns[1:] == sorted(columns[1:])
    text = (X.csv_line(columns) + b"".join(X.csv_row(d, columns) for d in rows)).decode()
    back = list(csv.reader(io.StringIO(text)))
    assert back[0] == columns and len(back) == len(rows) + 1
    for d, line in zip(rows, back[1:], strict=True):
        assert line == [X.csv_cell(d.get(c)) for c in columns]


@settings(max_examples=200, deadline=None)
@given(KEY)
def test_cursor_round_trip(key: Any) -> None:
    assert K.decode_cursor(K.encode_cursor(key)) == key


def test_path_keys() -> None:
    assert K.parse_key("alice") == "alice"
    assert K.parse_key("42") == 42 and K.parse_key("-1.5") == -1.5
    assert K.parse_key('"42"') == "42"
    assert K.parse_key('[1,"a"]') == [1, "a"]
    assert K.parse_key("007") == "007"
    assert K.parse_key("[not json") == "[not json"
    with pytest.raises(K.KeyError_):
        K.decode_cursor("!!!")
    with pytest.raises(K.KeyError_):
        K.decode_cursor(K.encode_cursor({"a": 1}))
