"""Import parsing and export formatting, streamed and pure (no I/O beyond the file given).

Import reads a binary file object (twisted.web spools a large request body to a temporary
file, so it never sits in memory) and yields ``(row_number, document | RowError)`` one at a
time: CSV (``csv`` module; a header row; column types), a JSON array (decoded element by
element) or NDJSON. Export turns documents into JSON-array, NDJSON or CSV chunks with a
stable column order (the primary key first, then the others sorted).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, Final

import attrs

FORMATS: Final = ("csv", "json", "ndjson")
CSV_TYPES: Final = ("string", "number", "integer", "boolean", "json")
MAX_DOC_BYTES: Final = 16 * 1024 * 1024
_READ: Final = 64 * 1024
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class ImportFormatError(ValueError):
    """The file as a whole cannot be read (bad header, not a JSON array, ...)."""


@attrs.frozen
class RowError:
    message: str


def parse_types(spec: str | None) -> dict[str, str]:
    """``age:integer,active:boolean`` -> ``{"age": "integer", ...}``."""
    out: dict[str, str] = {}
    if not spec:
        return out
    for item in spec.split(","):
        if not item.strip():
            continue
        col, sep, kind = item.rpartition(":")
        col, kind = col.strip(), kind.strip()
        if not sep or not col:
            raise ValueError(f"{item.strip()!r} is not column:type")
        if kind not in CSV_TYPES:
            raise ValueError(f"type of {col!r} must be one of {', '.join(CSV_TYPES)}")
        out[col] = kind
    return out


def convert_cell(value: str, kind: str) -> Any:
    """One CSV cell as ``kind``; raises ValueError with a short reason."""
    if kind == "string":
        return value
    text = value.strip()
    if kind == "integer":
        return int(text)
    if kind == "number":
        number = float(text)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return (
            int(number)
            if number.is_integer() and "." not in text and "e" not in text.lower()
            else number
        )
    if kind == "boolean":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return json.loads(text)


def csv_rows(
    fp: IO[bytes], types: Mapping[str, str]
) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Rows after the header as documents; an empty cell leaves its field out."""
    text = io.TextIOWrapper(fp, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except (csv.Error, UnicodeDecodeError) as e:
        raise ImportFormatError(f"cannot read the CSV header: {e}") from None
    names = [h.strip() for h in header]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise ImportFormatError("the CSV header needs unique, non-empty column names")
    unknown = set(types) - set(names)
    if unknown:
        raise ImportFormatError(f"types name columns not in the header: {sorted(unknown)}")
    row_no = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as e:
            row_no += 1
            yield row_no, RowError(f"unreadable: {e}")
            continue
        row_no += 1
        if not cells or cells == [""]:
            row_no -= 1
            continue
        if len(cells) != len(names):
            yield row_no, RowError(f"has {len(cells)} cells, the header has {len(names)}")
            continue
        doc: dict[str, Any] = {}
        error = None
        for name, cell in zip(names, cells, strict=True):
            if cell == "":
                continue
            kind = types.get(name, "string")
            try:
                doc[name] = convert_cell(cell, kind)
            except ValueError as e:
                error = RowError(f"column {name!r}: {kind} expected ({e})")
                break
        yield row_no, error or doc


def ndjson_rows(fp: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    row_no = 0
    for raw in fp:
        if len(raw) > MAX_DOC_BYTES:
            row_no += 1
            yield row_no, RowError(f"line longer than {MAX_DOC_BYTES} bytes")
            continue
        if not raw.strip():
            continue
        row_no += 1
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            yield row_no, RowError(f"not JSON: {e}")
            continue
        yield row_no, value if isinstance(value, dict) else RowError("not a JSON object")


def json_array_rows(fp: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Elements of one top-level JSON array, decoded one at a time."""
    decoder = json.JSONDecoder()
    reader = io.TextIOWrapper(fp, encoding="utf-8-sig")
    buf = ""
    pos = 0
    eof = False

    def fill() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        chunk = reader.read(_READ)
        if not chunk:
            eof = True
            return False
        buf = buf[pos:] + chunk
        pos = 0
        return True

    def skip_ws() -> str | None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if not fill():
                return None

    try:
        first = skip_ws()
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"not UTF-8: {e}") from None
    if first != "[":
        raise ImportFormatError("a JSON import must be one array of objects")
    pos += 1
    row_no = 0
    expect_value = True
    while True:
        c = skip_ws()
        if c is None:
            raise ImportFormatError(f"the JSON array ends early (after element {row_no})")
        if c == "]" and (row_no == 0 or not expect_value):
            return
        if not expect_value:
            if c != ",":
                raise ImportFormatError(f"',' or ']' expected after element {row_no}")
            pos += 1
            expect_value = True
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                break
            except ValueError as e:
                if len(buf) - pos > MAX_DOC_BYTES:
                    raise ImportFormatError(f"element {row_no + 1} is too large") from None
                if not fill():
                    raise ImportFormatError(f"element {row_no + 1} is not JSON: {e}") from None
        pos = end
        row_no += 1
        expect_value = False
        yield row_no, value if isinstance(value, dict) else RowError("not a JSON object")


def rows(fmt: str, fp: IO[bytes], types: Mapping[str, str]) -> Iterator[tuple[int, Any]]:
    if fmt == "csv":
        return csv_rows(fp, types)
    if fmt == "ndjson":
        return ndjson_rows(fp)
    return json_array_rows(fp)


# -- export -----------------------------------------------------------------------------------


def column_order(keys: Iterable[str], primary_key: str) -> list[str]:
    """The primary key first, then every other column sorted: the same every time."""
    rest = sorted({k for k in keys if k != primary_key})
    return [primary_key, *rest]


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def csv_line(values: Sequence[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue().encode("utf-8")


def csv_row(doc: Mapping[str, Any], columns: Sequence[str]) -> bytes:
    return csv_line([csv_cell(doc.get(c)) for c in columns])


def json_doc(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
