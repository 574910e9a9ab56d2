"""GuildNet's small JSON query language, validated and translated to ReQL (pure).

A query is a JSON object; every key is optional::

    {"filter":  <expr>,
     "between": {"index": "age", "lower": 18, "upper": 65,
                 "leftBound": "closed", "rightBound": "open"},
     "orderBy": [{"field": "name", "dir": "asc"}]   or   {"index": "age", "dir": "desc"},
     "pluck":   ["id", "name", "address.city"],
     "skip": 0, "limit": 100}

    <expr> := {"field": "a.b", "op": "eq"|"ne"|"lt"|"le"|"gt"|"ge", "value": <json>}
            | {"field": "tags", "op": "contains", "value": <json>}   (array element, or substring)
            | {"field": "name", "op": "match", "value": "<RE2 regex>"}
            | {"field": "x", "op": "in", "value": [<json>, ...]}
            | {"field": "x", "op": "exists"}
            | {"and": [<expr>, ...]} | {"or": [<expr>, ...]} | {"not": <expr>}

Semantics: a leaf on a missing field is false (``ne`` too; ``not`` inverts it), ``match`` on a
non-string is false, comparisons use ReQL's order. Nothing else reaches the server: no
``r.js``, no arbitrary ReQL, bounded depth, size and result count. ``evaluate`` is the same
filter in Python: the reference the tests compare the server's answers with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

MAX_DEPTH: Final = 8
MAX_NODES: Final = 64
MAX_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100
MAX_SKIP: Final = 100_000
MAX_REGEX: Final = 256
MAX_IN: Final = 256
MAX_VALUE_CHARS: Final = 4096
MAX_PLUCK: Final = 64
COMPARISONS: Final = ("eq", "ne", "lt", "le", "gt", "ge")
OPS: Final = (*COMPARISONS, "contains", "match", "in", "exists")
_QUERY_KEYS: Final = frozenset({"filter", "between", "orderBy", "pluck", "skip", "limit"})
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class QueryError(ValueError):
    """Invalid query; ``field`` is the JSON path of the fault (``filter.and[1].op``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- the validated form -----------------------------------------------------------------------


@attrs.frozen
class Leaf:
    path: tuple[str, ...]
    op: str
    value: Any = None


@attrs.frozen
class And:
    items: tuple[Expr, ...]


@attrs.frozen
class Or:
    items: tuple[Expr, ...]


@attrs.frozen
class Not:
    item: Expr


Expr = Leaf | And | Or | Not


@attrs.frozen
class Between:
    index: str
    lower: Any  # None: unbounded
    upper: Any
    left_bound: str = "closed"
    right_bound: str = "open"


@attrs.frozen
class Order:
    field: tuple[str, ...] | None  # a field path, or None with ``index``
    index: str | None
    desc: bool


@attrs.frozen
class Query:
    filter: Expr | None = None
    between: Between | None = None
    order: tuple[Order, ...] = ()
    pluck: tuple[tuple[str, ...], ...] | None = None
    skip: int = 0
    limit: int = DEFAULT_LIMIT


# -- parsing ----------------------------------------------------------------------------------


def _path(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = value.split(".")
    elif isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        parts = list(value)
    else:
        raise QueryError(where, "must be a field name, 'a.b' or a list of names")
    if not parts or any(not p or len(p) > 127 for p in parts) or len(parts) > 8:
        raise QueryError(where, "field names must be 1-127 characters, at most 8 levels")
    return tuple(parts)


def _value(value: Any, where: str) -> Any:
    """A JSON value, bounded in size (it becomes a ReQL datum, never code)."""
    if len(repr(value)) > MAX_VALUE_CHARS:
        raise QueryError(where, f"value is larger than {MAX_VALUE_CHARS} characters")
    _check_json(value, where, 0)
    return value


def _check_json(value: Any, where: str, depth: int) -> None:
    if depth > 16:
        raise QueryError(where, "value is nested too deeply")
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and value != value:  # NaN
            raise QueryError(where, "NaN is not a JSON value")
        return
    if isinstance(value, list):
        for v in value:
            _check_json(v, where, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise QueryError(where, "object keys must be strings")
            if k == "$reql_type$":
                raise QueryError(where, "'$reql_type$' objects are not allowed")
            _check_json(v, where, depth + 1)
        return
    raise QueryError(where, f"{type(value).__name__} is not a JSON value")


def parse_filter(expr: Any, where: str = "filter") -> Expr:
    counter = [0]
    return _parse_expr(expr, where, 0, counter)


def _parse_expr(expr: Any, where: str, depth: int, counter: list[int]) -> Expr:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise QueryError(where, f"the filter has more than {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise QueryError(where, f"the filter is nested deeper than {MAX_DEPTH}")
    if not isinstance(expr, dict):
        raise QueryError(where, "must be an object")
    for combinator in ("and", "or"):
        if combinator in expr:
            if len(expr) != 1:
                raise QueryError(where, f"'{combinator}' must be the only key")
            items = expr[combinator]
            if not isinstance(items, list) or not items:
                raise QueryError(f"{where}.{combinator}", "must be a non-empty list")
            parsed = tuple(
                _parse_expr(e, f"{where}.{combinator}[{i}]", depth + 1, counter)
                for i, e in enumerate(items)
            )
            return And(parsed) if combinator == "and" else Or(parsed)
    if "not" in expr:
        if len(expr) != 1:
            raise QueryError(where, "'not' must be the only key")
        return Not(_parse_expr(expr["not"], f"{where}.not", depth + 1, counter))
    unknown = set(expr) - {"field", "op", "value"}
    if unknown:
        key = sorted(unknown)[0]
        raise QueryError(f"{where}.{key}" if key else where, f"unknown key {key!r}")
    if "field" not in expr:
        raise QueryError(f"{where}.field", "is required (or use and/or/not)")
    path = _path(expr["field"], f"{where}.field")
    op = expr.get("op", "eq")
    if op not in OPS:
        raise QueryError(f"{where}.op", f"must be one of {', '.join(OPS)}")
    if op == "exists":
        if "value" in expr:
            raise QueryError(f"{where}.value", "'exists' takes no value")
        return Leaf(path, op)
    if "value" not in expr:
        raise QueryError(f"{where}.value", "is required")
    value = _value(expr["value"], f"{where}.value")
    if op == "match":
        if not isinstance(value, str) or len(value) > MAX_REGEX:
            raise QueryError(f"{where}.value", f"must be a regex of at most {MAX_REGEX} chars")
        try:
            re.compile(value)
        except re.error as e:
            raise QueryError(f"{where}.value", f"invalid regex: {e}") from None
    if op == "in" and (not isinstance(value, list) or len(value) > MAX_IN):
        raise QueryError(f"{where}.value", f"'in' takes a list of at most {MAX_IN} values")
    return Leaf(path, op, value)


def _int(body: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise QueryError(key, f"must be an integer from {lo} to {hi}")
    return value


def _index_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise QueryError(where, "must be an index name (letters, digits, '_', '-')")
    return value


def _dir(value: Any, where: str) -> bool:
    if value in (None, "asc"):
        return False
    if value == "desc":
        return True
    raise QueryError(where, "must be 'asc' or 'desc'")


def parse_query(body: Any) -> Query:
    """Validate a query object; raises QueryError naming the field."""
    if not isinstance(body, dict):
        raise QueryError("query", "must be a JSON object")
    unknown = set(body) - _QUERY_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise QueryError(key or "query", f"unknown key {key!r}")
    filt = parse_filter(body["filter"]) if body.get("filter") is not None else None
    between = None
    if body.get("between") is not None:
        b = body["between"]
        if not isinstance(b, dict):
            raise QueryError("between", "must be an object")
        unknown = set(b) - {"index", "lower", "upper", "leftBound", "rightBound"}
        if unknown:
            raise QueryError("between", f"unknown key {sorted(unknown)[0]!r}")
        bounds = []
        for key in ("leftBound", "rightBound"):
            v = b.get(key, "closed" if key == "leftBound" else "open")
            if v not in ("open", "closed"):
                raise QueryError(f"between.{key}", "must be 'open' or 'closed'")
            bounds.append(v)
        between = Between(
            _index_name(b.get("index"), "between.index"),
            _value(b.get("lower"), "between.lower"),
            _value(b.get("upper"), "between.upper"),
            bounds[0],
            bounds[1],
        )
    order: list[Order] = []
    raw_order = body.get("orderBy")
    if raw_order is not None:
        items = raw_order if isinstance(raw_order, list) else [raw_order]
        if len(items) > 8:
            raise QueryError("orderBy", "at most 8 sort keys")
        for i, item in enumerate(items):
            where = f"orderBy[{i}]" if isinstance(raw_order, list) else "orderBy"
            if isinstance(item, str):
                item = {"field": item}
            if not isinstance(item, dict) or ("field" in item) == ("index" in item):
                raise QueryError(where, "must be {field, dir} or {index, dir}")
            unknown = set(item) - {"field", "index", "dir"}
            if unknown:
                raise QueryError(where, f"unknown key {sorted(unknown)[0]!r}")
            desc = _dir(item.get("dir"), f"{where}.dir")
            if "index" in item:
                if i != 0:
                    raise QueryError(where, "an index order must come first")
                order.append(Order(None, _index_name(item["index"], f"{where}.index"), desc))
            else:
                order.append(Order(_path(item["field"], f"{where}.field"), None, desc))
    if between is not None and order and order[0].index and order[0].index != between.index:
        raise QueryError("orderBy", "an index order must use the index of 'between'")
    pluck = None
    if body.get("pluck") is not None:
        raw = body["pluck"]
        if not isinstance(raw, list) or not raw or len(raw) > MAX_PLUCK:
            raise QueryError("pluck", f"must be a list of 1-{MAX_PLUCK} field names")
        pluck = tuple(_path(p, f"pluck[{i}]") for i, p in enumerate(raw))
    return Query(
        filter=filt,
        between=between,
        order=tuple(order),
        pluck=pluck,
        skip=_int(body, "skip", 0, 0, MAX_SKIP),
        limit=_int(body, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
    )


# -- ReQL -------------------------------------------------------------------------------------


def _get(r: Any, doc: Any, path: tuple[str, ...]) -> Any:
    term = doc
    for p in path:
        term = term[p]
    return term


def _nested(path: tuple[str, ...]) -> Any:
    """``("a","b")`` -> ``{"a": {"b": True}}`` (has_fields / pluck form)."""
    out: Any = True
    for p in reversed(path):
        out = {p: out}
    return out


def _leaf_term(r: Any, doc: Any, leaf: Leaf) -> Any:
    if leaf.op == "exists":
        return doc.has_fields(_nested(leaf.path))
    field = _get(r, doc, leaf.path)
    v = leaf.value
    if leaf.op in COMPARISONS:
        term = getattr(field, leaf.op)(r.expr(v))
    elif leaf.op == "in":
        term = r.expr(v).contains(field)
    elif leaf.op == "match":
        term = r.branch(field.type_of().eq("STRING"), field.match(v).ne(None), False)
    else:  # contains: an array element, or a substring of a string
        sub = re.escape(v) if isinstance(v, str) else None
        term = r.branch(
            field.type_of().eq("ARRAY"),
            field.contains(r.expr(v)),
            field.type_of().eq("STRING") if sub is not None else False,
            field.match(sub).ne(None) if sub is not None else False,
            False,
        )
    # A missing field (anywhere on the path) makes the leaf false, never an error.
    return term.default(False)


def filter_term(r: Any, expr: Expr) -> Any:
    """A ReQL function ``doc -> bool`` for ``expr``."""

    def build(doc: Any, e: Expr) -> Any:
        if isinstance(e, Leaf):
            return _leaf_term(r, doc, e)
        if isinstance(e, And):
            return (
                r.and_(*(build(doc, i) for i in e.items))
                if len(e.items) > 1
                else build(doc, e.items[0])
            )
        if isinstance(e, Or):
            return (
                r.or_(*(build(doc, i) for i in e.items))
                if len(e.items) > 1
                else build(doc, e.items[0])
            )
        return r.not_(build(doc, e.item))

    return lambda doc: build(doc, expr)


def _getter(r: Any, path: tuple[str, ...]) -> Any:
    return lambda doc: _get(r, doc, path).default(None)


def _bound(r: Any, value: Any, low: bool) -> Any:
    if value is None:
        return r.minval if low else r.maxval
    return r.expr(value)


def to_reql(r: Any, table: Any, q: Query, primary_key: str = "id") -> Any:
    """The ReQL term for ``q`` on ``table`` (a ``r.db(..).table(..)`` term)."""
    term = table
    index_order = q.order[0] if q.order and q.order[0].index else None
    if q.between is not None:
        b = q.between
        term = term.between(
            _bound(r, b.lower, True),
            _bound(r, b.upper, False),
            index=b.index,
            left_bound=b.left_bound,
            right_bound=b.right_bound,
        )
    if index_order is not None:
        assert index_order.index is not None
        key = r.desc(index_order.index) if index_order.desc else r.asc(index_order.index)
        term = term.order_by(index=key)
    if q.filter is not None:
        term = term.filter(filter_term(r, q.filter))
    field_order = [o for o in q.order if o.index is None]
    if field_order:
        keys = []
        for o in field_order:
            assert o.field is not None
            getter = _getter(r, o.field)  # ReQL counts a lambda's parameters: one only
            keys.append(r.desc(getter) if o.desc else r.asc(getter))
        term = term.order_by(*keys)
    if q.skip:
        term = term.skip(q.skip)
    term = term.limit(q.limit)
    if q.pluck is not None:
        term = term.pluck(*(_nested(p) if len(p) > 1 else p[0] for p in q.pluck))
    return term


# -- the reference evaluator ------------------------------------------------------------------


class _Missing(Exception):
    pass


def _lookup(doc: Any, path: Sequence[str]) -> Any:
    cur = doc
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            raise _Missing
        cur = cur[p]
    return cur


def evaluate(expr: Expr, doc: Mapping[str, Any]) -> bool:
    """``expr`` on one document in Python, with the semantics of ``filter_term``.

    Comparisons here are defined for values of one JSON type (numbers, strings, booleans);
    the tests compare with the server on such data.
    """
    if isinstance(expr, And):
        return all(evaluate(e, doc) for e in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(e, doc) for e in expr.items)
    if isinstance(expr, Not):
        return not evaluate(expr.item, doc)
    try:
        value = _lookup(doc, expr.path)
    except _Missing:
        return False
    op, v = expr.op, expr.value
    if op == "exists":
        return True
    if op == "eq":
        return _same(value, v)
    if op == "ne":
        return not _same(value, v)
    if op in ("lt", "le", "gt", "ge"):
        try:
            return bool({"lt": value < v, "le": value <= v, "gt": value > v, "ge": value >= v}[op])
        except TypeError:
            return False
    if op == "in":
        return any(_same(value, x) for x in v)
    if op == "match":
        return isinstance(value, str) and re.search(v, value) is not None
    if isinstance(value, list):
        return any(_same(x, v) for x in value)
    if isinstance(value, str) and isinstance(v, str):
        return v in value
    return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)
