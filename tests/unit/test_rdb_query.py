"""The JSON query language: validation and translation to ReQL (pure; no server here).

The server's answers are compared with ``evaluate`` in tests/integration/test_rdb_api.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rethinkdb import ql2_pb2

from guildnet.rdb import query as Q
from guildnet.rdb.driver import r

TERM = ql2_pb2.Term.TermType
FIELDS = st.sampled_from(["a", "b", "n", "tags", "name", "sub.x"])
SCALARS = st.one_of(
    st.integers(-100, 100), st.text(max_size=8), st.booleans(), st.none(), st.floats(-5, 5)
)
JSONISH = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3)
)


def leaves() -> st.SearchStrategy[dict[str, Any]]:
    cmp = st.builds(
        lambda f, op, v: {"field": f, "op": op, "value": v},
        FIELDS,
        st.sampled_from((*Q.COMPARISONS, "contains")),
        SCALARS,
    )
    match = st.builds(
        lambda f, v: {"field": f, "op": "match", "value": v},
        FIELDS,
        st.sampled_from(["^a", "b$", "[0-9]+", "x.*y", "(?i)NAME"]),
    )
    inn = st.builds(
        lambda f, v: {"field": f, "op": "in", "value": v}, FIELDS, st.lists(SCALARS, max_size=4)
    )
    exists = st.builds(lambda f: {"field": f, "op": "exists"}, FIELDS)
    return st.one_of(cmp, match, inn, exists)


EXPRS = st.recursive(
    leaves(),
    lambda c: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(c, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(c, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, c),
    ),
    max_leaves=12,
)


def term_types(term: Any) -> set[int]:
    """Every ReQL term type in a built query (walks the driver's AST)."""
    seen: set[int] = set()
    stack = [term]
    while stack:
        t = stack.pop()
        tt = getattr(t, "term_type", None)
        if tt is not None:
            seen.add(tt)
        stack.extend(getattr(t, "_args", []) or [])
        stack.extend((getattr(t, "optargs", {}) or {}).values())
    return seen


@settings(max_examples=200, deadline=None)
@given(EXPRS)
def test_every_valid_filter_translates_without_code(expr: dict[str, Any]) -> None:
    q = Q.parse_query(
        {"filter": expr, "orderBy": [{"field": "a.b", "dir": "desc"}, "n"], "limit": 10}
    )
    term = Q.to_reql(r, r.db("d").table("t"), q)
    types = term_types(term)
    assert TERM.JAVASCRIPT not in types
    assert TERM.HTTP not in types
    assert TERM.LIMIT in types and TERM.FILTER in types
    # The driver can serialize it (what would go on the wire).
    assert term.build()


@settings(max_examples=200, deadline=None)
@given(JSONISH)
def test_junk_is_a_query_error_never_a_crash(body: Any) -> None:
    try:
        Q.parse_query(body if isinstance(body, dict) else {"filter": body})
    except Q.QueryError as e:
        assert e.field
        assert e.message


@settings(max_examples=200, deadline=None)
@given(EXPRS, st.dictionaries(st.sampled_from(["a", "b", "n", "name"]), SCALARS, max_size=4))
def test_evaluate_is_total(expr: dict[str, Any], doc: dict[str, Any]) -> None:
    assert isinstance(Q.evaluate(Q.parse_filter(expr), doc), bool)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filter": {"field": "a", "op": "js", "value": 1}}, "filter.op"),
        ({"filter": {"and": []}}, "filter.and"),
        ({"filter": {"and": [{"field": "a", "value": 1}, {"op": "eq"}]}}, "filter.and[1].field"),
        ({"filter": {"field": "a", "op": "match", "value": "("}}, "filter.value"),
        ({"filter": {"field": "a", "op": "in", "value": 3}}, "filter.value"),
        ({"filter": {"field": "a", "value": {"$reql_type$": "BINARY"}}}, "filter.value"),
        ({"limit": 5000}, "limit"),
        ({"limit": True}, "limit"),
        ({"skip": -1}, "skip"),
        ({"orderBy": {"field": "a", "dir": "up"}}, "orderBy.dir"),
        ({"orderBy": [{"field": "a"}, {"index": "b"}]}, "orderBy[1]"),
        ({"between": {"index": "x"}, "orderBy": {"index": "y"}}, "orderBy"),
        ({"between": {"index": "bad name"}}, "between.index"),
        ({"pluck": []}, "pluck"),
        ({"js": "1"}, "js"),
    ],
)
def test_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(Q.QueryError) as info:
        Q.parse_query(body)
    assert info.value.field == field


def test_depth_and_size_are_bounded() -> None:
    deep: dict[str, Any] = {"field": "a", "op": "eq", "value": 1}
    for _ in range(Q.MAX_DEPTH + 1):
        deep = {"not": deep}
    with pytest.raises(Q.QueryError, match="deeper"):
        Q.parse_filter(deep)
    wide = {"or": [{"field": "a", "op": "eq", "value": i} for i in range(Q.MAX_NODES + 1)]}
    with pytest.raises(Q.QueryError, match="nodes"):
        Q.parse_filter(wide)


def test_translation_shape() -> None:
    q = Q.parse_query(
        {
            "between": {"index": "age", "lower": 18, "upper": None},
            "orderBy": {"index": "age", "dir": "desc"},
            "filter": {"field": "name", "op": "match", "value": "^A"},
            "pluck": ["id", "address.city"],
            "skip": 5,
            "limit": 7,
        }
    )
    text = str(Q.to_reql(r, r.db("d").table("t"), q))
    assert "between(18, r.maxval" in text
    assert "order_by(index=r.desc('age'))" in text
    assert ".skip(5).limit(7)" in text
    assert "pluck('id', r.expr({'address': r.expr({'city': True})}))" in text


def test_evaluate_semantics() -> None:
    f = Q.parse_filter
    doc = {"a": 3, "name": "Alice", "tags": ["x", "y"], "sub": {"x": 1}}
    assert Q.evaluate(f({"field": "a", "op": "gt", "value": 2}), doc)
    assert not Q.evaluate(f({"field": "missing", "op": "ne", "value": 1}), doc)
    assert Q.evaluate(f({"not": {"field": "missing", "op": "eq", "value": 1}}), doc)
    assert Q.evaluate(f({"field": "tags", "op": "contains", "value": "y"}), doc)
    assert Q.evaluate(f({"field": "name", "op": "contains", "value": "lic"}), doc)
    assert Q.evaluate(f({"field": "sub.x", "op": "in", "value": [1, 2]}), doc)
    assert not Q.evaluate(f({"field": "a", "op": "match", "value": "3"}), doc)
