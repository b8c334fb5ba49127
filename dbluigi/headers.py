"""Parse and validate the header block of a model file.

A model configures itself with comments at the top of the file, one ``key: value`` per line,
before the first statement::

    -- kind: table
    -- depends: raw.offenses
    -- check: rows > 0, unique(agency_id)
    -- index: unique(agency_id)
    select ...

A ``sql`` or ``python`` model that changes relations in place can say so with
``-- modifies: staging.agencies`` (repeatable, like ``depends``), and one that writes
relations no model produces with ``-- unmanaged: true``. A model that reads files names
them with ``-- inputs: data/*.log`` (globs relative to the project folder, repeatable):
their contents become part of its fingerprint (``dbluigi.plan``).

``.py`` and ``.yml`` files use ``#`` instead of ``--``. :func:`parse_header` reads only that
block (it stops at the first line that is neither blank nor a comment) and returns a frozen
:class:`Header`. A comment of the form ``key: value`` with a lowercase key is an entry; other
comments are prose and ignored. An unknown key or a bad value raises
:class:`~dbluigi.errors.HeaderError` naming the file, the line and what is accepted.

This runs for every file of every scan, so it is a plain line loop over precompiled regexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from dbluigi.errors import HeaderError
from dbluigi.suggest import did_you_mean

KNOWN_KEYS = (
    "kind",
    "depends",
    "check",
    "index",
    "unique_key",
    "watermark",
    "partition",
    "path",
    "timeout",
    "max_cost",
    "priority",
    "retries",
    "tags",
    "description",
    "modifies",
    "unmanaged",
    "inputs",
)
ModelKind = Literal["table", "view", "incremental", "sql", "seed", "dump", "python", "extract"]
"""How a model is built (``dbluigi.kinds``); ``extract`` is a source table's, never a header's."""
KINDS: tuple[ModelKind, ...] = ("table", "view", "incremental", "sql", "seed", "dump", "python")
"""The kinds a ``-- kind:`` header may name."""

_REPEATABLE = frozenset({"depends", "modifies", "check", "index", "tags", "description", "inputs"})

_IDENT = r"[A-Za-z_][\w$]*"
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"

# `key: value`; the lookahead keeps a URL in prose (`-- https://...`) from being an entry.
_ENTRY_RE = re.compile(r"([a-z_]+):(?!//)(.*)", re.S)
# `Kind: table`, `depends : x`: a known key written almost right, rejected rather than ignored.
_NEAR_ENTRY_RE = re.compile(r"([A-Za-z_]+)\s*:(?!//)")
_IDENT_RE = re.compile(_IDENT)
_RELATION_RE = re.compile(rf"{_IDENT}(?:\.{_IDENT})?")
# what a model declares it modifies may name its schema by a variable: {{ schema }}.t
_PART = rf"(?:{_IDENT}|\{{\{{\s*{_IDENT}\s*\}}\}})"
_MODIFIED_RE = re.compile(rf"{_PART}(?:\.{_PART})?")
_TAG_RE = re.compile(r"[\w-]+")
_INT_RE = re.compile(r"[+-]?\d+")
_DRIVE_RE = re.compile(r"[A-Za-z]:")  # a Windows drive: C:\data, C:data
_BOOLEANS = {"true": True, "yes": True, "false": False, "no": False}
_COST_RE = re.compile(r"(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?")

_ROWS_RE = re.compile(r"rows\s*(>=|<=|==|!=|<>|=|>|<)\s*(.*)", re.I | re.S)
_ROWS_RHS_RE = re.compile(
    rf"(?:(?P<before>{_NUMBER})\s*\*\s*)?previous|previous\s*\*\s*(?P<after>{_NUMBER})"
    rf"|(?P<value>{_NUMBER})",
    re.I,
)
_COLUMNS_CHECK_RE = re.compile(r"(unique|not_null)\s*\((.*)\)", re.I | re.S)
_UNIQUE_INDEX_RE = re.compile(r"unique\s*\((.*)\)", re.I | re.S)
_PARENS_RE = re.compile(r"\((.*)\)", re.S)

_PARTITION_RE = re.compile(r"([A-Za-z_]\w*)\s+in(?=[\s(])\s*(.*)", re.I | re.S)
_RANGE_RE = re.compile(r"([+-]?\d+)\s*\.\.\s*([+-]?\d+)")
_QUERY_RE = re.compile(r"\(\s*((?:select|with)\b.*)\)", re.I | re.S)
_LITERAL_RE = re.compile(r"\s*(?:([+-]?\d+)|'((?:[^']|'')*)')\s*(?:(,)|$)")

_DURATION_PART_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)\s*", re.I)
_SECONDS_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "=", "==": "=", "!=": "!=", "<>": "!="}

_CHECK_FORMS = (
    "accepted checks: rows > 0, rows >= previous, rows >= 0.9 * previous, "
    "unique(col, ...), not_null(col, ...); rows compares with >, >=, <, <=, =, !="
)
_DURATION_HINT = "use a number with a unit: 30s, 10m, 2h"
_HINTS = {
    "kind": f"kinds are: {', '.join(KINDS)}",
    "depends": "list relations separated by commas, e.g. depends: raw.offenses, agencies",
    "check": _CHECK_FORMS,
    "index": "one index per line: col, (a, b) or unique(a, b)",
    "unique_key": "list columns separated by commas, e.g. unique_key: agency_id, year",
    "watermark": "name one column, e.g. watermark: updated_at",
    "partition": "use NAME in 2010..2020, NAME in (2019, 2020), NAME in ('a', 'b') "
    "or NAME in (select ...)",
    "path": "give a file inside the output folder, e.g. path: api/agencies.csv",
    "timeout": _DURATION_HINT,
    "max_cost": "use a positive number, e.g. max_cost: 1e7 or 10_000_000",
    "priority": "use a whole number, e.g. priority: 10 or priority: -1",
    "retries": "use a whole number 0 or more, e.g. retries: 2",
    "tags": "list words separated by commas, e.g. tags: nightly, api",
    "modifies": "list relations separated by commas, e.g. modifies: staging.agencies",
    "unmanaged": "write unmanaged: true or unmanaged: false (or yes, no)",
    "inputs": "list file globs relative to the project folder, separated by commas, "
    "e.g. inputs: data/*.log, lookups/codes.txt",
}


@dataclass(frozen=True)
class HeaderCheck:
    """One `-- check:` expression: a row-count comparison or a column constraint."""

    kind: str  # "rows" | "unique" | "not_null"
    text: str  # the expression as written, stripped
    line: int  # 1-based line of the file
    columns: tuple[str, ...] = ()  # for unique / not_null
    op: str | None = None  # for rows: ">", ">=", "<", "<=", "=", "!="
    value: float | None = None  # rows compared with a constant: rows > 0
    factor: float | None = None  # rows compared with factor * previous (1.0 for "previous")


@dataclass(frozen=True)
class IndexSpec:
    """One `-- index:` line: the columns of one index, unique or not."""

    columns: tuple[str, ...]
    unique: bool = False
    line: int = 0


class ValueRange(Sequence[int]):
    """The integers of a `low..high` partition range, without holding them: a range of a
    hundred million values costs nothing until they are asked for (and a project error
    bounds how many may be). Equal to the tuple of the same values."""

    __slots__ = ("_range",)

    def __init__(self, low: int, high: int) -> None:
        self._range = range(low, high + 1)

    def __len__(self) -> int:
        return len(self._range)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...

    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        return self._range[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._range)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ValueRange):
            return self._range == other._range
        if isinstance(other, tuple | range):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._range.start, self._range.stop))

    def __contains__(self, value: object) -> bool:
        return value in self._range  # without iterating

    def __repr__(self) -> str:
        return f"ValueRange({self._range.start}, {self._range.stop - 1})"


@dataclass(frozen=True)
class PartitionSpec:
    """A `-- partition:` variable and its values, listed or given by a query."""

    name: str
    values: Sequence[int | str] = ()  # a tuple, or a ValueRange for `low..high`
    query: str | None = None  # the SQL inside `(select ...)`, to run against the target
    line: int = 0

    def lists(self, value: str) -> bool:
        """Whether ``value``, as a command line writes it, is one of the listed values as
        a build spells them (``str``); a range answers without listing its values."""
        if isinstance(self.values, ValueRange):
            return (
                value.lstrip("-").isdigit()
                and str(int(value)) == value
                and int(value) in self.values
            )
        return any(str(v) == value for v in self.values)


@dataclass(frozen=True)
class Header:
    """The validated header block of one file."""

    kind: ModelKind | None = None
    depends: tuple[str, ...] = ()
    checks: tuple[HeaderCheck, ...] = ()
    indexes: tuple[IndexSpec, ...] = ()
    unique_key: tuple[str, ...] = ()
    watermark: str | None = None
    partition: PartitionSpec | None = None
    path: str | None = None
    timeout: float | None = None  # seconds
    max_cost: float | None = None
    priority: int = 0
    retries: int = 0
    tags: tuple[str, ...] = ()
    description: str | None = None
    modifies: tuple[str, ...] = ()
    """Relations the model changes in place besides those inferred from its SQL."""
    unmanaged: bool = False
    """This model writes relations no model produces; it runs once per change of its file
    and is never replayed."""
    inputs: tuple[str, ...] = ()
    """Globs, relative to the project folder, of the files the model reads: their contents
    are part of its fingerprint."""
    lines: tuple[tuple[str, int], ...] = ()  # (key, line) for every entry, in file order
    body_line: int = 1  # 1-based line where the body starts

    def line_of(self, key: str) -> int | None:
        """The line of the first `key` entry, or None when the header has none."""
        for name, line in self.lines:
            if name == key:
                return line
        return None


class _BadValue(Exception):
    """Raised by the value parsers; parse_header adds the path and line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_header(text: str, path: str | Path, *, comment: str = "--") -> Header:
    """Parse the header block at the top of `text` (the contents of the file at `path`)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    skip_shebang = comment == "#"
    size = len(text)
    pos = 0
    lineno = 0
    body_line = 0
    entries: list[tuple[str, int]] = []
    first_line: dict[str, int] = {}
    fields: dict[str, object] = {}
    depends: list[str] = []
    modifies: list[str] = []
    checks: list[HeaderCheck] = []
    indexes: list[IndexSpec] = []
    tags: list[str] = []
    inputs: list[str] = []
    description: list[str] = []

    while pos < size:
        end = text.find("\n", pos)
        if end < 0:
            end = size
        stripped = text[pos:end].strip()
        pos = end + 1
        lineno += 1
        if not stripped:
            continue
        if not stripped.startswith(comment):
            body_line = lineno
            break
        if skip_shebang and stripped.startswith("#!"):
            continue
        content = stripped[len(comment) :].lstrip()
        match = _ENTRY_RE.match(content)
        if match is None:
            _reject_near_miss(content, path, lineno)
            continue
        key, value = match.group(1), match.group(2).strip()
        if key not in KNOWN_KEYS:
            raise HeaderError(
                f"unknown header key {key!r}", path=path, line=lineno, hint=_key_hint(key)
            )
        if key in first_line and key not in _REPEATABLE:
            raise HeaderError(
                f"header key {key!r} given twice (first on line {first_line[key]})",
                path=path,
                line=lineno,
                hint=f"keep one {key!r} line",
            )
        first_line.setdefault(key, lineno)
        entries.append((key, lineno))
        if key == "description":
            if value:
                description.append(value)
            continue
        if not value:
            raise HeaderError(
                f"header key {key!r} has no value",
                path=path,
                line=lineno,
                hint=_HINTS[key],
            )
        try:
            if key == "depends":
                depends.extend(_parse_list(value, "depends", _RELATION_RE, "relation name"))
            elif key == "modifies":
                modifies.extend(_parse_list(value, "modifies", _MODIFIED_RE, "relation name"))
            elif key == "check":
                checks.extend(_parse_checks(value, lineno))
            elif key == "index":
                indexes.append(_parse_index(value, lineno))
            elif key == "tags":
                tags.extend(_parse_list(value, "tags", _TAG_RE, "tag"))
            elif key == "inputs":
                inputs.extend(_parse_inputs(value))
            else:
                fields[key] = _SINGLE_PARSERS[key](value, lineno)
        except _BadValue as exc:
            raise HeaderError(exc.message, path=path, line=lineno, hint=exc.hint) from None
    else:
        body_line = lineno + 1

    return Header(
        depends=tuple(dict.fromkeys(depends)),
        modifies=tuple(dict.fromkeys(modifies)),
        checks=tuple(checks),
        indexes=tuple(indexes),
        tags=tuple(dict.fromkeys(tags)),
        inputs=tuple(dict.fromkeys(inputs)),
        description=" ".join(description) or None,
        lines=tuple(entries),
        body_line=body_line,
        **fields,  # type: ignore[arg-type]
    )


def parse_duration(value: str) -> float:
    """Seconds in a duration like "30s", "10m", "2h", "1h30m", "500ms" or "45" (seconds)."""
    text = value.strip()
    if _SECONDS_RE.fullmatch(text):
        seconds = float(text)
    else:
        seconds = 0.0
        pos = 0
        while pos < len(text):
            match = _DURATION_PART_RE.match(text, pos)
            if match is None:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
            pos = match.end()
        if not text or pos < len(text):
            if text.startswith("-"):
                raise ValueError(f"bad duration {value!r}: must be more than zero")
            raise ValueError(f"bad duration {value!r}")
    if seconds <= 0:
        raise ValueError(f"bad duration {value!r}: must be more than zero")
    return seconds


def parse_check(expr: str, line: int) -> HeaderCheck:
    """Parse `rows OP (NUMBER | previous | NUMBER * previous)`, `unique(..)` or `not_null(..)`."""
    text = expr.strip()
    match = _ROWS_RE.fullmatch(text)
    if match is not None:
        op = _OPS[match.group(1)]
        rhs = _ROWS_RHS_RE.fullmatch(match.group(2).strip())
        if rhs is None:
            raise ValueError(f"bad check expression {text!r}")
        if rhs.group("value") is not None:
            return HeaderCheck("rows", text, line, op=op, value=float(rhs.group("value")))
        factor = float(rhs.group("before") or rhs.group("after") or 1.0)
        if factor <= 0:
            raise ValueError(f"bad check expression {text!r}: the factor must be more than zero")
        return HeaderCheck("rows", text, line, op=op, factor=factor)
    match = _COLUMNS_CHECK_RE.fullmatch(text)
    if match is not None:
        kind = match.group(1).lower()
        try:
            columns = _parse_columns(match.group(2))
        except _BadValue as exc:
            raise ValueError(f"bad check expression {text!r}: {exc.message}") from None
        return HeaderCheck(kind, text, line, columns=columns)
    raise ValueError(f"bad check expression {text!r}")


def _reject_near_miss(content: str, path: str | Path, line: int) -> None:
    """Raise on `Kind: table` or `depends : x`, which would otherwise be silently ignored."""
    match = _NEAR_ENTRY_RE.match(content)
    if match is not None and match.group(1).lower() in KNOWN_KEYS:
        key = match.group(1).lower()
        raise HeaderError(
            f"malformed header key {match.group(0)!r}",
            path=path,
            line=line,
            hint=f"write '{key}: ...' (lowercase, the colon right after the key), "
            "or reword the comment if it is prose",
        )


def _key_hint(key: str) -> str:
    return did_you_mean(key, KNOWN_KEYS) or (
        f"known keys are: {', '.join(KNOWN_KEYS)}; a prose comment must not start "
        "with a lowercase word and a colon"
    )


def _split_top_level(value: str) -> list[str]:
    """Split on commas outside parentheses and single-quoted strings."""
    items: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, char in enumerate(value):
        if quoted:
            quoted = char != "'"
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise _BadValue(f"unbalanced parentheses in {value!r}")
        elif char == "," and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
    if depth or quoted:
        raise _BadValue(f"unbalanced {'quote' if quoted else 'parentheses'} in {value!r}")
    items.append(value[start:].strip())
    return items


def _parse_list(value: str, key: str, pattern: re.Pattern[str], what: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    for item in items:
        if not item:
            raise _BadValue(f"empty item in {key} list {value!r}", _HINTS[key])
        if not pattern.fullmatch(item):
            raise _BadValue(f"bad {what} {item!r} in {key}", _HINTS[key])
    return items


def _parse_inputs(value: str) -> list[str]:
    """File globs inside the project: relative, and never climbing out of it with ``..``."""
    globs = []
    for item in (item.strip() for item in value.split(",")):
        if not item:
            raise _BadValue(f"empty item in inputs list {value!r}", _HINTS["inputs"])
        parts = re.split(r"[/\\]", item)
        if item.startswith(("/", "\\", "~")) or _DRIVE_RE.match(item) or ".." in parts:
            raise _BadValue(
                f"input {item!r} is outside the project folder",
                "name files inside the project, relative to its folder, e.g. inputs: data/*.log "
                "(copy or link outside files in)",
            )
        glob = "/".join(part for part in parts if part not in ("", "."))
        if not glob:
            raise _BadValue(f"input {item!r} names no file", _HINTS["inputs"])
        if any("**" in part and part != "**" for part in parts):
            raise _BadValue(
                f"bad input glob {item!r}: ** must be a whole folder name",
                "write data/**/*.log for .log files in data and its subfolders",
            )
        globs.append(glob)
    return globs


def _parse_columns(value: str) -> tuple[str, ...]:
    items = [item.strip() for item in value.split(",")]
    if items == [""]:
        raise _BadValue("needs at least one column")
    for item in items:
        if not item:
            raise _BadValue(f"empty column in {value.strip()!r}")
        if not _IDENT_RE.fullmatch(item):
            raise _BadValue(f"{item!r} is not a column name")
    return tuple(dict.fromkeys(items))


def _parse_checks(value: str, line: int) -> list[HeaderCheck]:
    try:
        items = _split_top_level(value)
    except _BadValue as exc:
        raise _BadValue(f"bad check: {exc.message}", _CHECK_FORMS) from None
    checks = []
    for item in items:
        if not item:
            raise _BadValue(f"empty check in {value!r}", _CHECK_FORMS)
        try:
            checks.append(parse_check(item, line))
        except ValueError as exc:
            raise _BadValue(str(exc), _CHECK_FORMS) from None
    return checks


def _parse_index(value: str, line: int) -> IndexSpec:
    unique = False
    columns = value
    match = _UNIQUE_INDEX_RE.fullmatch(value)
    if match is not None:
        unique, columns = True, match.group(1)
    elif (match := _PARENS_RE.fullmatch(value)) is not None:
        columns = match.group(1)
    try:
        return IndexSpec(_parse_columns(columns), unique=unique, line=line)
    except _BadValue as exc:
        raise _BadValue(f"bad index {value!r}: {exc.message}", _HINTS["index"]) from None


def _parse_kind(value: str, line: int) -> ModelKind:
    for kind in KINDS:
        if kind == value.lower():
            return kind
    hint = did_you_mean(value.lower(), KINDS) or f"kinds are: {', '.join(KINDS)}"
    raise _BadValue(f"unknown kind {value!r}", hint)


def _parse_unique_key(value: str, line: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_parse_list(value, "unique_key", _IDENT_RE, "column name")))


def _parse_watermark(value: str, line: int) -> str:
    if not _IDENT_RE.fullmatch(value):
        raise _BadValue(f"bad watermark {value!r}: expected one column name", _HINTS["watermark"])
    return value


def _parse_partition(value: str, line: int) -> PartitionSpec:
    bad = _BadValue(f"bad partition {value!r}", _HINTS["partition"])
    match = _PARTITION_RE.fullmatch(value)
    if match is None:
        raise bad
    name, spec = match.group(1), match.group(2).strip()
    if (found := _RANGE_RE.fullmatch(spec)) is not None:
        low, high = int(found.group(1)), int(found.group(2))
        if low > high:
            raise _BadValue(
                f"bad partition range {spec!r}: {low} is greater than {high}",
                f"write the lower bound first, e.g. {name} in {high}..{low}",
            )
        return PartitionSpec(name, ValueRange(low, high), line=line)
    if (found := _QUERY_RE.fullmatch(spec)) is not None:
        try:  # the outer parentheses must wrap the whole query, not `(...) union (...)`
            _split_top_level(found.group(1))
        except _BadValue:
            raise _BadValue(
                f"bad partition query {spec!r}: the parentheses must wrap the whole query",
                _HINTS["partition"],
            ) from None
        return PartitionSpec(name, query=found.group(1).strip(), line=line)
    if (found := _PARENS_RE.fullmatch(spec)) is not None:
        values = _parse_literals(found.group(1))
        if values is None:
            raise bad
        return PartitionSpec(name, tuple(dict.fromkeys(values)), line=line)
    raise bad


def _parse_literals(inner: str) -> list[int | str] | None:
    """Integers and single-quoted strings separated by commas, or None if that is not it."""
    values: list[int | str] = []
    pos = 0
    while True:
        match = _LITERAL_RE.match(inner, pos)
        if match is None:
            return None
        number, string, comma = match.groups()
        values.append(int(number) if number is not None else string.replace("''", "'"))
        if comma is None:
            return values
        pos = match.end()


def _parse_path(value: str, line: int) -> str:
    return value


def _parse_timeout(value: str, line: int) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _BadValue(str(exc), _DURATION_HINT) from None


def _parse_max_cost(value: str, line: int) -> float:
    if not _COST_RE.fullmatch(value) or float(value.replace("_", "")) <= 0:
        raise _BadValue(f"bad max_cost {value!r}: expected a positive number", _HINTS["max_cost"])
    return float(value.replace("_", ""))


def _parse_priority(value: str, line: int) -> int:
    if not _INT_RE.fullmatch(value):
        raise _BadValue(f"bad priority {value!r}: expected a whole number", _HINTS["priority"])
    return int(value)


def _parse_retries(value: str, line: int) -> int:
    if not _INT_RE.fullmatch(value) or int(value) < 0:
        raise _BadValue(
            f"bad retries {value!r}: expected a whole number 0 or more", _HINTS["retries"]
        )
    return int(value)


def _parse_unmanaged(value: str, line: int) -> bool:
    flag = _BOOLEANS.get(value.lower())
    if flag is None:
        raise _BadValue(f"bad unmanaged {value!r}: expected true or false", _HINTS["unmanaged"])
    return flag


_SINGLE_PARSERS = {
    "kind": _parse_kind,
    "unique_key": _parse_unique_key,
    "watermark": _parse_watermark,
    "partition": _parse_partition,
    "path": _parse_path,
    "timeout": _parse_timeout,
    "max_cost": _parse_max_cost,
    "priority": _parse_priority,
    "retries": _parse_retries,
    "unmanaged": _parse_unmanaged,
}
