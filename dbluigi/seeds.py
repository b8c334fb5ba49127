"""Seeds: what a CSV or YAML file holds, typed, before a target loads it.

Pure Python, no database. ``sniff_csv`` reads a CSV once, streaming, and gives each
column the narrowest portable type that every non-empty value fits; the target then
bulk-loads the file itself with exactly those types (no auto-detection on either
side). ``read_yaml_seed`` reads a YAML list of mappings and returns its rows with
values already shaped for their column types.

Typing rules, shared by both: ``bigint`` (within int64) < ``numeric`` < ``double``,
``date`` < ``timestamp``; any other mix is ``text``. Integers written with a leading
zero (``007``, ZIP and FIPS codes) are ``text``, since loading them as numbers loses
the zeros. Booleans are ``true``/``false`` only, never ``0``/``1`` or YAML 1.1's
``yes``/``no``/``on``/``off`` (so ``country: NO`` stays the string ``"NO"``).
``column_types`` overrides (from ``dbluigi.toml``) replace the inferred type of a
column, and every value is checked against them here, with its line, rather than
failing later inside the database.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import difflib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbluigi.errors import ProjectError
from dbluigi.targets.base import PORTABLE_TYPES, Column

OVERRIDE_OPTION = "column_types"

_INT64 = (-(2**63), 2**63 - 1)
# DuckDB stores numeric as DECIMAL(38, 10): wider values are typed double, not rounded.
_NUMERIC_DIGITS = (28, 10)

_INT = re.compile(r"[+-]?(\d+)")
_DECIMAL = re.compile(r"[+-]?(\d*)\.(\d*)")
_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
_TIMESTAMPTZ = re.compile(_TIMESTAMP.pattern + r"(Z|[+-]\d{2}(:?\d{2})?)")

_WIDENS = {
    frozenset({"bigint", "numeric"}): "numeric",
    frozenset({"bigint", "double"}): "double",
    frozenset({"numeric", "double"}): "double",
    frozenset({"date", "timestamp"}): "timestamp",
}


@dataclass(frozen=True)
class SeedTable:
    """The columns of a seed, typed, and how many data rows it has."""

    columns: tuple[Column, ...]
    rows: int


# -- types ------------------------------------------------------------------------------


def _join(a: str | None, b: str) -> str:
    """The narrowest type both ``a`` and ``b`` fit (``a`` None: nothing seen yet)."""
    if a is None or a == b:
        return b
    return _WIDENS.get(frozenset({a, b}), "text")


def _text_type(value: str) -> str:
    """The narrowest portable type of one non-empty CSV value."""
    if match := _INT.fullmatch(value):
        digits = match.group(1)
        if len(digits) > 1 and digits.startswith("0"):
            return "text"
        if _INT64[0] <= int(value) <= _INT64[1]:
            return "bigint"
        return "numeric" if len(digits) <= _NUMERIC_DIGITS[0] else "text"
    if (match := _DECIMAL.fullmatch(value)) and (match.group(1) or match.group(2)):
        whole, fraction = match.groups()
        if len(whole) > 1 and whole.startswith("0"):
            return "text"
        if len(whole) > _NUMERIC_DIGITS[0] or len(fraction) > _NUMERIC_DIGITS[1]:
            return "double"
        return "numeric"
    if _EXPONENT.fullmatch(value):
        return "double"
    if value.lower() in ("true", "false"):
        return "boolean"
    if _DATE.fullmatch(value):
        return "date" if _parses(dt.date.fromisoformat, value) else "text"
    if _TIMESTAMP.fullmatch(value):
        return "timestamp" if _parses(dt.datetime.fromisoformat, value) else "text"
    if _TIMESTAMPTZ.fullmatch(value):
        normal = value[:-1] + "+00:00" if value.endswith("Z") else value
        return "timestamptz" if _parses(dt.datetime.fromisoformat, normal) else "text"
    return "text"


def _parses(parse: Any, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _text_fits(value: str, type_name: str) -> bool:
    """Whether a CSV value (or a YAML string) loads as ``type_name`` on every target."""
    if type_name == "text":
        return True
    if type_name == "json":
        return _parses(json.loads, value)
    if type_name == "bigint":
        return bool(_INT.fullmatch(value)) and _INT64[0] <= int(value) <= _INT64[1]
    natural = _text_type(value)
    if natural == "text" and _INT.fullmatch(value):  # leading zeros: a number after all
        natural = "bigint"
    if natural == "text" and _DECIMAL.fullmatch(value) and value not in (".", "+.", "-."):
        natural = "numeric"
    if type_name in ("numeric", "double"):
        return natural in ("bigint", "numeric", "double")
    if type_name == "timestamptz":
        return natural in ("date", "timestamp", "timestamptz")
    return _join(natural, type_name) == type_name


def _check_overrides(
    path: Path, names: Sequence[str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """Validated overrides, type names lower-cased."""
    checked = {}
    for column, type_name in overrides.items():
        if column not in names:
            close = difflib.get_close_matches(column, names, n=1)
            raise ProjectError(
                f"{OVERRIDE_OPTION} names column {column!r}, which the seed does not have "
                f"(columns: {', '.join(names)})",
                path=path,
                hint=f"did you mean {close[0]!r}?" if close else None,
            )
        normal = str(type_name).strip().lower()
        if normal not in PORTABLE_TYPES:
            raise ProjectError(
                f"{OVERRIDE_OPTION}: unknown type {type_name!r} for column {column!r}",
                path=path,
                hint=f"use one of {', '.join(PORTABLE_TYPES)}",
            )
        checked[column] = normal
    return checked


def _check_names(path: Path, names: Sequence[str], line: int | None, what: str) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise ProjectError(f"{what} {position} has an empty name", path=path, line=line)
        # DuckDB identifiers are case-insensitive, so "ID" and "id" would clash there.
        key = name.lower()
        if key in seen:
            raise ProjectError(
                f"column name {name!r} appears twice ({what}s {seen[key]} and {position}; "
                "names are compared case-insensitively)",
                path=path,
                line=line,
            )
        seen[key] = position


# -- CSV --------------------------------------------------------------------------------


def _decoded_lines(path: Path, stream: Any) -> Iterator[str]:
    """The file's lines as text, line endings kept (what csv wants), BOM dropped."""
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProjectError(
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                path=path,
                line=number,
                hint="save the file as UTF-8 (for example: iconv -f latin1 -t utf-8)",
            ) from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


# Values that certainly keep a column at its type, checked before the full rules: a
# column of a million ids or dates is typed at C regex speed.
_FAST_FITS_SQL = {
    "bigint": r"-?(0|[1-9][0-9]{0,17})",
    "numeric": r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,9})?",
    "date": r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])",
}
_FAST_FITS = {kind: re.compile(pattern).fullmatch for kind, pattern in _FAST_FITS_SQL.items()}


VECTORIZED_FROM_BYTES = 4 << 20  # files this large are typed by DuckDB first

# Anything that is not text matches this (numbers, booleans, dates and timestamps); a value
# that does not is text, and so is its column.
_MAYBE_TYPED = (
    r"[+-]?[0-9]*\.?[0-9]*([eE][+-]?[0-9]+)?|[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|[0-9]{4}-.*"
)


def sniff_csv(
    path: Path, *, overrides: Mapping[str, str] = {}, vectorized_from: int = VECTORIZED_FROM_BYTES
) -> SeedTable:
    """Type each column of a CSV file (see the module docstring).

    Large files are typed by DuckDB's vectorized CSV reader where the answer is certain
    (a column of fast-fitting integers, decimals or dates, or one holding a value that can
    only be text); anything else, any override, and any malformed file go through the
    one-pass Python reader, which is the reference and says where a file is wrong."""
    path = Path(path)
    if not overrides and path.stat().st_size >= vectorized_from:
        table = _sniff_vectorized(path)
        if table is not None:
            return table
    try:
        return _sniff_csv(path, overrides, path.open(encoding="utf-8-sig", newline=""))
    except UnicodeDecodeError:
        with path.open("rb") as stream:  # again, line by line, to say where
            return _sniff_csv(path, overrides, _decoded_lines(path, stream))


def _sniff_vectorized(path: Path) -> SeedTable | None:
    """Column types from one DuckDB aggregate over the file, or None when not certain."""
    import duckdb

    with path.open(encoding="utf-8", newline="") as f:
        try:
            header = next(csv.reader(f), None)
        except (csv.Error, UnicodeDecodeError):
            return None
    if not header or len(set(h.lower() for h in header)) != len(header) or not all(header):
        return None
    with path.open("rb") as f:
        data = f.read()
    if b"\n\n" in data or b"\n\r\n" in data or data.startswith(b"\xef\xbb\xbf"):
        return None  # blank lines (DuckDB skips them) and BOMs: the reference pass decides
    columns = ", ".join(f"{_quote(h)}: 'VARCHAR'" for h in header)
    checks = []
    for h in header:
        c = _quote(h)
        checks += [
            f"count({c})",
            f"bool_and(regexp_full_match({c}, '{_FAST_FITS_SQL['bigint']}'))",
            f"bool_and(regexp_full_match({c}, '{_FAST_FITS_SQL['numeric']}'))",
            f"bool_and(regexp_full_match({c}, '{_FAST_FITS_SQL['date']}'))",
            f"bool_or(NOT regexp_full_match({c}, '{_MAYBE_TYPED}'))",
        ]
    sql = (
        f"SELECT count(*), {', '.join(checks)} FROM read_csv(?, header = true, auto_detect = false, "
        f"columns = {{{columns}}}, delim = ',', quote = '\"', escape = '\"', nullstr = '', "
        "strict_mode = true, encoding = 'utf-8')"
    )
    try:
        with duckdb.connect() as con:
            row = con.execute(sql, [str(path)]).fetchone()
    except duckdb.Error:
        return None
    assert row is not None
    types = []
    for i in range(len(header)):
        present, bigint, numeric, date, text = row[1 + 5 * i : 6 + 5 * i]
        if not present or text:
            types.append("text")
        elif bigint:
            types.append("bigint")
        elif numeric:
            types.append("numeric")
        elif date:
            types.append("date")
        else:
            return None
    return SeedTable(tuple(Column(h, t) for h, t in zip(header, types, strict=True)), int(row[0]))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_BATCH = 8192


def _sniff_csv(path: Path, overrides: Mapping[str, str], lines: Any) -> SeedTable:
    with contextlib.closing(lines) if hasattr(lines, "close") else contextlib.nullcontext():
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
            if header is None:
                raise ProjectError(
                    "the file is empty; a CSV seed needs a header row naming its columns",
                    path=path,
                )
            _check_names(path, header, 1, "column")
            forced = _check_overrides(path, header, overrides)
            found: list[str | None] = [None] * len(header)
            rows = 0
            first_line = reader.line_num + 1  # where the next record starts
            batch: list[list[str]] = []
            starts: list[int] = []
            for record in reader:
                batch.append(record)
                starts.append(first_line)
                first_line = reader.line_num + 1
                if len(batch) == _BATCH:
                    _sniff_batch(path, header, forced, found, batch, starts)
                    rows += len(batch)
                    batch, starts = [], []
            _sniff_batch(path, header, forced, found, batch, starts)
            rows += len(batch)
        except csv.Error as exc:
            raise ProjectError(f"not valid CSV: {exc}", path=path, line=reader.line_num) from None
    columns = tuple(
        Column(name, forced.get(name) or found[index] or "text")
        for index, name in enumerate(header)
    )
    return SeedTable(columns, rows)


def _sniff_batch(
    path: Path,
    header: list[str],
    forced: Mapping[str, str],
    found: list[str | None],
    batch: list[list[str]],
    starts: list[int],
) -> None:
    """Type a batch of records column by column; a column whose values all fit its type
    by the fast check costs one C-level pass."""
    width = len(header)
    for record, line in zip(batch, starts, strict=True):
        if len(record) != width and not (width == 1 and not record):
            raise ProjectError(
                f"row has {len(record)} values, header has {width}",
                path=path,
                line=line,
                hint="an empty line counts as a row; quote values that contain commas",
            )
    if width == 1:
        batch = [record or [""] for record in batch]
    for index, column in enumerate(header):
        values = [record[index] for record in batch]
        if column in forced:
            for value, line in zip(values, starts, strict=True):
                if value and not _text_fits(value, forced[column]):
                    raise ProjectError(
                        f"column {column!r} has {value!r}, which is not a "
                        f"{forced[column]} (set by {OVERRIDE_OPTION})",
                        path=path,
                        line=line,
                    )
            continue
        if found[index] == "text":
            continue
        fast = _FAST_FITS.get(found[index])  # type: ignore[arg-type]
        if fast is not None and all(map(fast, filter(None, values))):
            continue
        kind = found[index]
        for value in filter(None, values):
            if kind == "text":
                break
            if fast is None or not fast(value):
                kind = _join(kind, _text_type(value))
                fast = _FAST_FITS.get(kind)
        found[index] = kind


# -- YAML -------------------------------------------------------------------------------


class _SeedLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars: only true/false are booleans, only plain
    decimal digits are integers (no octal ``012``, no base-60 ``1:20``)."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_SeedLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SeedLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_SeedLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_SeedLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _python_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if _INT64[0] <= value <= _INT64[1] else "numeric"
    if isinstance(value, float):
        return "double"
    if isinstance(value, decimal.Decimal):
        return "numeric"
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, (dict, list)):
        return "json"
    return "text"


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _shape(value: Any, type_name: str) -> Any:
    """``value`` as its column's type wants it; raises ValueError when it cannot be."""
    if value is None:
        return None
    natural = _python_type(value)
    if type_name == "text":
        return _as_text(value)
    if type_name == "json":
        if isinstance(value, str):
            json.loads(value)
            return value
        return json.dumps(value, default=str)
    if isinstance(value, str):
        if not _text_fits(value, type_name):
            raise ValueError
        return value
    if natural == type_name:
        # An integer beyond int64 travels as Decimal, which every driver binds as numeric.
        return decimal.Decimal(value) if type_name == "numeric" else value
    if type_name == "double" and natural in ("bigint", "numeric"):
        return float(value)
    if type_name == "numeric" and natural in ("bigint", "double"):
        return decimal.Decimal(str(value))
    if type_name in ("timestamp", "timestamptz") and natural == "date":
        return dt.datetime.combine(value, dt.time())
    raise ValueError


def read_yaml_seed(
    path: Path, *, overrides: Mapping[str, str] = {}
) -> tuple[SeedTable, list[tuple[Any, ...]]]:
    """Read a YAML list of mappings: typed columns (union of keys, first-seen order;
    a missing key is NULL) and the rows, values shaped for those types."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProjectError(
            "not UTF-8 text",
            path=path,
            line=raw.count(b"\n", 0, exc.start) + 1,
            hint="save the file as UTF-8",
        ) from None
    loader = _SeedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProjectError(
            f"not valid YAML: {problem}", path=path, line=mark.line + 1 if mark else None
        ) from None
    finally:
        loader.dispose()
    shape_hint = "write one mapping per row, e.g.\n- {id: 1, name: Ada}\n- {id: 2, name: Grace}"
    if data is None:
        raise ProjectError("the file is empty", path=path, hint=shape_hint)
    if not isinstance(data, list):
        raise ProjectError(
            f"a YAML seed must be a list of mappings (rows); found {_describe(data)}",
            path=path,
            hint=shape_hint,
        )
    if not data:
        raise ProjectError(
            "the list is empty; a YAML seed needs at least one row to know its columns",
            path=path,
        )
    lines = [item.start_mark.line + 1 for item in node.value]
    names: list[str] = []
    for item, line in zip(data, lines, strict=True):
        if not isinstance(item, dict):
            raise ProjectError(
                f"a YAML seed must be a list of mappings (rows); this item is {_describe(item)}",
                path=path,
                line=line,
                hint=shape_hint,
            )
        for key in item:
            if not isinstance(key, str):
                raise ProjectError(
                    f"column names must be text; found {_describe(key)} {key!r}",
                    path=path,
                    line=line,
                )
            if key not in names:
                names.append(key)
    _check_names(path, names, None, "key")
    forced = _check_overrides(path, names, overrides)
    found: dict[str, str | None] = dict.fromkeys(names)
    for item in data:
        for key, value in item.items():
            if value is not None and key not in forced and found[key] != "text":
                found[key] = _join(found[key], _python_type(value))
    types = {name: forced.get(name) or found[name] or "text" for name in names}
    rows = []
    for item, line in zip(data, lines, strict=True):
        row = []
        for name in names:
            value = item.get(name)
            try:
                row.append(_shape(value, types[name]))
            except ValueError:
                origin = f" (set by {OVERRIDE_OPTION})" if name in forced else ""
                raise ProjectError(
                    f"column {name!r} has {value!r}, which is not a {types[name]}{origin}",
                    path=path,
                    line=line,
                ) from None
        rows.append(tuple(row))
    columns = tuple(Column(name, types[name]) for name in names)
    return SeedTable(columns, len(rows)), rows


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
