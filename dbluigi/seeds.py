"""Seeds: what a CSV or YAML file holds, typed, before a target loads it.

No target database. ``sniff_csv`` gives each column the narrowest portable type that
every non-empty value fits; the target then bulk-loads the file itself with exactly
those types (no auto-detection on either side). The reference is a one-pass Python
reader; a large file is typed by one in-memory DuckDB aggregate that spells the same
rules in SQL (``_kind_sql``), wherever DuckDB reads the file as Python's csv does.
``guess_csv`` predicts a large file's types from its head and tail, so that a target can
start loading it while ``sniff_csv`` checks the prediction against every value.
``read_yaml_seed`` reads a YAML list of mappings and returns its rows with values already
shaped for their column types. A YAML file whose top level is a mapping of table name to
such a list holds one seed per key: ``yaml_tables`` lists them (each with its own part of
the file, which is what its fingerprint hashes) and ``read_yaml_seed(path, table=key)``
reads one.

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
import functools
import io
import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbluigi import yamlstrict
from dbluigi.errors import ProjectError
from dbluigi.lazy import yaml
from dbluigi.scan import utf8_text
from dbluigi.suggest import did_you_mean
from dbluigi.targets.base import NOT_LITERAL, PORTABLE_TYPES, Column, quote_name

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
    # whether the file is literal (``Session.load_csv``), where the typing pass read every
    # byte of it anyway (a large file); None: not looked for. Not part of the typing's
    # answer, which the reference pass and the vectorized one agree on.
    literal: bool | None = field(default=None, compare=False)


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
            raise ProjectError(
                f"{OVERRIDE_OPTION} names column {column!r}, which the seed does not have "
                f"(columns: {', '.join(names)})",
                path=path,
                hint=did_you_mean(column, names),
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


def _check_names(
    path: Path, names: Sequence[str], line: int | Sequence[int] | None, what: str
) -> None:
    """Refuse an empty name or one given twice; ``line``: of the names, or of each name."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        at = line[position - 1] if isinstance(line, Sequence) else line
        if not name.strip():
            raise ProjectError(f"{what} {position} has an empty name", path=path, line=at)
        # DuckDB identifiers are case-insensitive, so "ID" and "id" would clash there.
        key = name.lower()
        if key in seen:
            raise ProjectError(
                f"column name {name!r} appears twice ({what}s {seen[key]} and {position}; "
                "names are compared case-insensitively)",
                path=path,
                line=at,
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


# Values that certainly keep a column at its type (a date in a timestamp column, an
# integer in a numeric one), checked before the full rules: a column of a million ids,
# amounts or timestamps is typed at C regex speed, by Python or by DuckDB. A fast date is
# a day that every year has (the 29th of February is left to the full rules).
_YMD = (
    r"[12][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
)
_HMS = r"[ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
_FAST_FITS_SQL = {
    "bigint": r"-?(0|[1-9][0-9]{0,17})",
    "numeric": r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,9})?",
    "double": r"-?(0|[1-9][0-9]{0,17})(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    "boolean": r"[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]",
    "date": _YMD,
    "timestamp": f"{_YMD}({_HMS})?",
    "timestamptz": f"{_YMD}{_HMS}(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)",
}
_FAST_FITS = {kind: re.compile(pattern).fullmatch for kind, pattern in _FAST_FITS_SQL.items()}


VECTORIZED_FROM_BYTES = 4 << 20  # files this large are typed by DuckDB first
SAMPLE_BYTES = 1 << 18  # the head (and the tail) of a large file that predict its types

# -- the reference rules as one DuckDB expression ---------------------------------------
# ``_kind_sql(v)`` is the bit of ``_text_type(v)`` for a non-NULL value, the same answer
# for every value, spelled with RE2 (where \d is [0-9]) and string comparisons; the bits
# of a column are OR-ed together and joined (``_join``) in Python. A value holding a
# non-ASCII decimal digit (which Python's \d matches, and int() reads) is left to Python.
_KINDS = ("bigint", "numeric", "double", "boolean", "date", "timestamp", "timestamptz", "text")
_BIT = {kind: 1 << i for i, kind in enumerate(_KINDS)}
_UNSURE = 1 << len(_KINDS)


@functools.cache
def _non_ascii_digits() -> str:
    """An RE2 class of the decimal digits beyond ASCII (Unicode category Nd)."""
    ranges: list[list[int]] = []
    for code in range(0x80, 0x110000):
        if chr(code).isdecimal():
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "[" + "".join(rf"\x{{{a:x}}}-\x{{{b:x}}}" for a, b in ranges) + "]"


_DATE_SQL = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIMESTAMP_SQL = _DATE_SQL + r"[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
_OFFSET_SQL = r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)"


def _kind_sql(v: str, *, ascii_only: bool) -> str:
    """The SQL of the bit of a non-NULL value's type (``_text_type``); ``v`` is the
    value's expression, ``ascii_only`` whether the file has only ASCII bytes."""
    b = _BIT
    unsigned = f"ltrim({v}, '+-')"  # the regex that holds lets at most one sign through
    # date.fromisoformat: a real day of years 1 to 9999 (DuckDB also has a year 0)
    real_day = f"(try_cast(left({v}, 10) AS DATE) IS NOT NULL AND left({v}, 4) <> '0000')"
    # datetime.fromisoformat: hours to 23, minutes and seconds to 59 (no leap second)
    real_time = (
        f"substr({v}, 12, 2) <= '23' AND substr({v}, 15, 2) <= '59' "
        f"AND (substr({v}, 17, 1) <> ':' OR substr({v}, 18, 2) <= '59')"
    )
    # an offset is real below 24 hours; its minutes may pass 59 (+05:60 is +06:00)
    offset = f"regexp_extract({v}, '[+-]([0-9]{{2}}):?([0-9]{{2}})?$', ['h', 'm'])"
    real_offset = (
        f"(right({v}, 1) = 'Z' OR (try_cast({offset}.h AS INTEGER) * 60 "
        f"+ coalesce(try_cast({offset}.m AS INTEGER), 0)) < 1440)"
    )
    unsure = (
        "" if ascii_only else f"WHEN regexp_matches({v}, '{_non_ascii_digits()}') THEN {_UNSURE} "
    )
    return (
        f"CASE WHEN {v} IS NULL THEN 0 {unsure}"
        f"WHEN regexp_full_match({v}, '[+-]?[0-9]+') THEN CASE "
        f"WHEN regexp_full_match({v}, '[+-]?0[0-9]+') THEN {b['text']} "
        f"WHEN length({unsigned}) < 19 THEN {b['bigint']} "
        f"WHEN length({unsigned}) = 19 AND {unsigned} <= CASE WHEN left({v}, 1) = '-' "
        f"THEN '{-_INT64[0]}' ELSE '{_INT64[1]}' END THEN {b['bigint']} "
        f"WHEN length({unsigned}) <= {_NUMERIC_DIGITS[0]} THEN {b['numeric']} "
        f"ELSE {b['text']} END "
        rf"WHEN regexp_full_match({v}, '[+-]?[0-9]*\.[0-9]*') THEN CASE "
        rf"WHEN regexp_full_match({v}, '[+-]?\.') THEN {b['text']} "
        rf"WHEN regexp_full_match({v}, '[+-]?0[0-9]+\.[0-9]*') THEN {b['text']} "
        rf"WHEN regexp_full_match({v}, '[+-]?[0-9]{{0,{_NUMERIC_DIGITS[0]}}}"
        rf"\.[0-9]{{0,{_NUMERIC_DIGITS[1]}}}') THEN {b['numeric']} "
        f"ELSE {b['double']} END "
        f"WHEN regexp_full_match({v}, '{_EXPONENT.pattern.replace(chr(92) + 'd', '[0-9]')}') "
        f"THEN {b['double']} "
        f"WHEN regexp_full_match({v}, '{_FAST_FITS_SQL['boolean']}') THEN {b['boolean']} "
        f"WHEN regexp_full_match({v}, '{_DATE_SQL}') "
        f"THEN CASE WHEN {real_day} THEN {b['date']} ELSE {b['text']} END "
        f"WHEN regexp_full_match({v}, '{_TIMESTAMP_SQL}') "
        f"THEN CASE WHEN {real_day} AND {real_time} THEN {b['timestamp']} ELSE {b['text']} END "
        f"WHEN regexp_full_match({v}, '{_TIMESTAMP_SQL}{_OFFSET_SQL}') THEN CASE "
        f"WHEN {real_day} AND {real_time} AND {real_offset} THEN {b['timestamptz']} "
        f"ELSE {b['text']} END "
        f"ELSE {b['text']} END"
    )


def _kinds_sql(v: str, known: str | None, *, ascii_only: bool) -> str | None:
    """The aggregate of a column's type bits (v: its values, NULL where empty), given
    the type its head has (None: empty there); None when there is nothing to ask."""
    if known == "text":
        return None  # every mix with text is text
    bits = _kind_sql(v, ascii_only=ascii_only)
    if known is not None:  # a value that certainly keeps the head's type counts as it
        fast = f"regexp_full_match({v}, '{_FAST_FITS_SQL[known]}')"
        bits = f"CASE WHEN {fast} THEN {_BIT[known]} ELSE {bits} END"
    return f"bit_or({bits})"


def _joined(bits: int | None, known: str | None) -> str | None:
    """A column's type from the bits of its values and its head's type; None when a
    value is left to Python (and no text settles the column anyway)."""
    bits = bits or 0
    if bits & _BIT["text"] or known == "text":
        return "text"
    if bits & _UNSURE:
        return None
    kind = known
    for name in _KINDS:
        if bits & _BIT[name]:
            kind = _join(kind, name)
    return kind or "text"


@dataclass(frozen=True)
class SeedGuess:
    """Column types of a large CSV file predicted from its head and tail, to start loading
    it with while ``sniff_csv(path, guess=...)`` works out the real ones."""

    columns: tuple[Column, ...]  # the predicted types
    head: tuple[str | None, ...]  # each column's type in the head (None: empty there)
    stamp: tuple[int, int]  # the file's size and modification time when it was read


def guess_csv(
    path: Path, *, overrides: Mapping[str, str] = {}, vectorized_from: int = VECTORIZED_FROM_BYTES
) -> SeedGuess | None:
    """Predict the column types of a file large enough to be typed by DuckDB (see
    ``sniff_csv``) from its first and last ``SAMPLE_BYTES``: what the head holds, widened
    by what the tail holds (a guess only: the tail is read from a line break, which may
    fall inside a quoted value). None when there is nothing to predict from: a small file,
    overrides (every value is checked against them), or a head that is not plain CSV."""
    path = Path(path)
    stat = path.stat()
    size = stat.st_size
    if overrides or size < vectorized_from:
        return None
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES)
        f.seek(max(len(head), size - SAMPLE_BYTES))
        tail = f.read()
    whole = len(head) < SAMPLE_BYTES
    records = _sample(head if whole else head[: head.rfind(b"\n") + 1], "utf-8-sig")
    if not records:
        return None
    header, body = records[0], records[1:] if whole else records[1:-1]  # the last: cut short?
    try:
        _check_names(path, header, 1, "column")
        head_types = _sample_types(path, header, body)
    except ProjectError:
        return None  # the reference pass says what is wrong, and where
    try:
        tail_types = _sample_types(path, header, _sample(tail[tail.find(b"\n") + 1 :]) or [])
    except ProjectError:  # the first line break fell inside a quoted value
        tail_types = [None] * len(header)
    predicted = [
        _join(h, t) if h is not None and t is not None else h or t or "text"
        for h, t in zip(head_types, tail_types, strict=True)
    ]
    return SeedGuess(
        tuple(Column(name, kind) for name, kind in zip(header, predicted, strict=True)),
        tuple(head_types),
        (size, stat.st_mtime_ns),
    )


def _sample(data: bytes, encoding: str = "utf-8") -> list[list[str]] | None:
    """The CSV records of a piece of a file, or None when it does not decode or parse."""
    try:
        return list(csv.reader(io.StringIO(data.decode(encoding), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return None


def _sample_types(path: Path, header: list[str], records: list[list[str]]) -> list[str | None]:
    found: list[str | None] = [None] * len(header)
    _sniff_batch(path, header, {}, found, records, [0] * len(records))
    return found


def sniff_csv(
    path: Path,
    *,
    overrides: Mapping[str, str] = {},
    vectorized_from: int = VECTORIZED_FROM_BYTES,
    guess: SeedGuess | None = None,
) -> SeedTable:
    """Type each column of a CSV file (see the module docstring).

    Large files are typed by DuckDB's vectorized CSV reader: one aggregate gives every
    column the type the reference rules give it (a value that certainly keeps the type
    the column has in the head of the file costs one regular expression). Any override,
    any malformed file and any value with a non-ASCII digit go through the one-pass
    Python reader, which is the reference and says where a file is wrong. ``guess``: the
    prediction ``guess_csv`` made, if the caller has it already."""
    path = Path(path)
    if not overrides and path.stat().st_size >= vectorized_from:
        if guess is None:
            guess = guess_csv(path, vectorized_from=vectorized_from)
        table = _sniff_vectorized(path, guess)
        if table is not None:
            return table
    try:
        return _sniff_csv(path, overrides, path.open(encoding="utf-8-sig", newline=""))
    except UnicodeDecodeError:
        with path.open("rb") as stream:  # again, line by line, to say where
            return _sniff_csv(path, overrides, _decoded_lines(path, stream))


def _sniff_vectorized(path: Path, guess: SeedGuess | None) -> SeedTable | None:
    """Column types from one DuckDB aggregate over the file, or None when not certain."""
    plain = _plain_header(path)
    if plain is None:
        return None
    header = plain.header
    names = [column.name for column in guess.columns] if guess else None
    if guess is None or names != header or guess.stamp != _stamp(path):  # changed since?
        known: list[str | None] = [None] * len(header)
    else:  # a column keeps its head's type unless the tail said otherwise
        known = [
            head if head == column.type else None
            for head, column in zip(guess.head, guess.columns, strict=True)
        ]
    typed = _vectorized(path, plain, known)
    if typed is None:
        return None
    rows, types = typed
    if any(kind is None for kind in types):
        return None  # a value with a digit beyond ASCII: the reference pass types it
    columns = tuple(Column(h, t or "text") for h, t in zip(header, types, strict=True))
    return SeedTable(columns, rows, plain.literal)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


# DuckDB drops spaces between a quote and the delimiter or line end ("5" for ` "5"`),
# where the reference pass keeps them (` "5"` is text): see _spaced_quote.
_QUOTE_SPACED = re.compile(rb'" +(?:[,\r\n]|\Z)')
_ESCAPED_QUOTE_AND_WORD = re.compile(rb'""[^", \t\r\n]')
# Read with one more column than the header names and no value read as NULL, a row with
# too few values has a NULL last column (DuckDB pads it) and one with too many a non-NULL
# extra column (DuckDB's strict mode lets a row end with extra empty values). DuckDB's
# parallel reader cannot pad rows around a quoted line break; where no line ends with a
# comma, no row can have extra empty values, and the file is read unpadded.
_EXTRA = "__dbluigi_extra"
_NEVER = "\x01"  # the null string: no value is it (a file holding the byte is not read)


@dataclass(frozen=True)
class _Plain:
    header: list[str]
    records: int | None  # counted as lines where no quote can make a record span lines
    ascii: bool  # whether every byte of the file is ASCII
    literal: bool  # none of ``NOT_LITERAL`` (``Session.load_csv``)


def _plain_header(path: Path) -> _Plain | None:
    """The header of a file DuckDB reads exactly as the reference pass does, else None:
    valid distinct names, UTF-8 throughout (DuckDB checks only the columns a query
    reads), no NUL or \x01 bytes, no blank lines (DuckDB skips them: a file without
    quotes has as many records as lines, one with quotes is searched for them) and no
    spaces around a quoted value."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        try:
            header = next(csv.reader(itertools.chain(f, [_END])), None)
        except (csv.Error, UnicodeDecodeError):
            return None
    if header and header[-1].endswith("\0"):  # a NUL byte, or a quote the file never closes
        return None
    names = {h.lower() for h in header or ()}
    blank = not all(name.strip() for name in header or ())  # the reference pass refuses it
    if not header or len(names) != len(header) or blank or _EXTRA in names:
        return None
    quoted, literal, breaks, end, ascii = False, True, 0, b"", True
    for block in _blocks(path):
        if b"\0" in block or b"\x01" in block:
            return None
        if not block.isascii():
            ascii = False
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                return None
        quoted = quoted or b'"' in block
        literal = literal and not any(byte in block for byte in NOT_LITERAL)
        breaks += block.count(b"\n")
        end = block[-1:]
    if not quoted:
        return _Plain(header, breaks - 1 if end == b"\n" else breaks, ascii, literal)
    end = b""
    for block in _blocks(path):
        if b"\n\n" in block or b"\n\r\n" in block or (end == b"\n" and block[:1] in b"\r\n"):
            return None
        if _spaced_quote(block) or _QUOTE_SPACED.search(block):
            return None
        end = block[-1:]
    return _Plain(header, None, ascii, False)


def _spaced_quote(block: bytes) -> bool:
    """Whether spaces open a value before a quote in these whole lines. Not such: spaces
    before an escaped quote and a letter, as in a quoted ``He said, ""hi""`` (where a
    value does start so, DuckDB's strict mode stops at it, or keeps the spaces)."""
    at = block.find(b' "')
    while at >= 0:
        start = at
        while start > 0 and block[start - 1] == 32:
            start -= 1
        opens = block[start - 1 : start] in (b"", b",", b"\r", b"\n")  # a value's start
        if opens and not _ESCAPED_QUOTE_AND_WORD.match(block, at + 1):
            return True
        at = block.find(b' "', at + 2)
    return False


def _blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of whole lines: no pattern within a line spans two blocks."""
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            yield block + f.readline()


def _comma_ends_a_line(path: Path) -> bool:
    """Whether a row may end with extra empty values (a search of the whole file)."""
    end = b""
    for block in _blocks(path):
        if b",\n" in block or b",\r\n" in block:
            return True
        end = block[-1:]
    return end == b","


def _vectorized(
    path: Path, plain: _Plain, known: Sequence[str | None]
) -> tuple[int, list[str | None]] | None:
    """One DuckDB aggregate over the file: its rows, and each column's type (None where
    a value is left to Python), given the type each column has in the head of the file
    (None: unknown); None when DuckDB cannot read it, or when a row has more or fewer
    values than the header."""
    import duckdb

    header = plain.header
    checks: list[str] = []
    asked: list[bool] = []
    for h, kind in zip(header, known, strict=True):
        check = _kinds_sql(f"NULLIF({quote_name(h)}, '')", kind, ascii_only=plain.ascii)
        asked.append(check is not None)
        if check is not None:
            checks.append(check)

    def query(checks: list[str], *, padded: bool, parallel: bool = True) -> str:
        names = [*header, _EXTRA] if padded else header
        columns = ", ".join(f"{quote_name(h)}: 'VARCHAR'" for h in names)
        shape = [f"bool_or({quote_name(header[-1])} IS NULL)", f"count({quote_name(_EXTRA)})"]
        return (
            f"SELECT {', '.join(['count(*)', *(shape if padded else ['false', '0']), *checks])} "
            f"FROM read_csv(?, header = true, auto_detect = false, columns = {{{columns}}}, "
            f"delim = ',', quote = '\"', escape = '\"', nullstr = '{_NEVER}', "
            f"null_padding = {str(padded).lower()}, parallel = {str(parallel).lower()}, "
            "strict_mode = true, encoding = 'utf-8')"
        )

    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        try:
            row = con.execute(query(checks, padded=True), [str(path)]).fetchone()
        except duckdb.Error as exc:
            if "null_padding" not in str(exc):
                return None
            # A quoted line break. Unpadded, the parallel reader also stops at a row with
            # too few values or an unterminated quote; the serial one, padded, tells rows
            # with extra empty values (but passes an unterminated quote at the very end).
            try:
                row = con.execute(query(checks, padded=False), [str(path)]).fetchone()
                if row is not None and _comma_ends_a_line(path):
                    sql = query([], padded=True, parallel=False)
                    shape = con.execute(sql, [str(path)]).fetchone()
                    if shape is None or shape[1] or shape[2] or shape[0] != row[0]:
                        return None
            except duckdb.Error:
                return None
    assert row is not None
    if row[1] or row[2] or plain.records not in (None, row[0]):
        return None  # a row of the wrong width, or a blank line: the reference pass says where
    results = iter(row[3:])
    types = [
        _joined(next(results) if ask else 0, kind) for ask, kind in zip(asked, known, strict=True)
    ]
    return int(row[0]), types


_BATCH = 8192
# A line the reader reads after the file: a record of its own, unless the file ends inside
# a quoted value, which then takes it in (and no file holds a NUL byte).
_END = '\0"'


def _sniff_csv(path: Path, overrides: Mapping[str, str], lines: Any) -> SeedTable:
    with contextlib.closing(lines) if hasattr(lines, "close") else contextlib.nullcontext():
        reader = csv.reader(itertools.chain(lines, [_END]))
        first_line = 1  # where the record read next starts
        try:
            header = next(reader)
            if header == [_END]:
                raise ProjectError(
                    "the file is empty; a CSV seed needs a header row naming its columns",
                    path=path,
                    line=1,
                )
            if header and header[-1].endswith("\0") and next(reader, None) is None:
                _refuse_open_quote(path, header, 1)
            if not any(name.strip() for name in header) and len(header) <= 1:
                # csv reads a blank line as no values: the rows would have no columns
                raise ProjectError(
                    "the header (line 1) is blank; a CSV seed's first line names its columns",
                    path=path,
                    line=1,
                    hint="remove the blank line(s) above the header",
                )
            _check_names(path, header, 1, "column")
            _refuse_nul(path, None, [header], [1])
            forced = _check_overrides(path, header, overrides)
            found: list[str | None] = [None] * len(header)
            rows = 0
            first_line = reader.line_num + 1
            batch: list[list[str]] = []
            starts: list[int] = []
            for record in reader:
                if len(batch) == _BATCH:  # before the next record: the last one is _END's
                    _sniff_batch(path, header, forced, found, batch, starts)
                    rows += len(batch)
                    batch, starts = [], []
                batch.append(record)
                starts.append(first_line)
                first_line = reader.line_num + 1
            if batch[-1] != [_END]:
                _refuse_open_quote(path, batch[-1], starts[-1])
            del batch[-1], starts[-1]
            _sniff_batch(path, header, forced, found, batch, starts)
            rows += len(batch)
        except csv.Error as exc:  # a value past csv's size limit, maybe all the file's rest
            opened = _open_quote_line(path, first_line)
            if opened is not None:
                _refuse_open_quote(path, [], opened)
            raise ProjectError(f"not valid CSV: {exc}", path=path, line=reader.line_num) from None
    columns = tuple(
        Column(name, forced.get(name) or found[index] or "text")
        for index, name in enumerate(header)
    )
    return SeedTable(columns, rows)


def _refuse_open_quote(path: Path, record: Sequence[str], line: int) -> None:
    """Raise at the quoted last value of a record (starting at ``line``) that the file
    ends in."""
    raise ProjectError(
        'a quoted value starts here and is never closed (a " is missing)',
        path=path,
        line=line + sum(_breaks(value) for value in record[:-1]),
        hint='close it with a "; a " inside a quoted value is written twice ("")',
    )


def _open_quote_line(path: Path, start: int) -> int | None:
    """The line where a quoted value of the record at line ``start`` opens, when the file
    ends before it closes (read as csv reads it), else None."""
    opened = None  # the line of the quote that opened the value being read
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        for number, text in enumerate(itertools.islice(f, start - 1, None), start):
            at = 0
            while at < len(text):
                if opened is not None:
                    close = text.find('"', at)
                    if close < 0:
                        break  # the value goes on on the next line
                    if text.startswith('"', close + 1):  # an escaped quote
                        at = close + 2
                    else:  # what follows, up to a comma, is the value's too
                        opened, at = None, close + 1
                elif text.startswith('"', at):  # a quote opening a value
                    opened, at = number, at + 1
                else:
                    comma = text.find(",", at)
                    if comma < 0:
                        return None  # the record ends with the line
                    at = comma + 1
            if opened is None:
                return None
    return opened


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
        # a value another column's type takes matched its pattern, which has no NUL byte
        if (column in forced or found[index] == "text") and "\0" in "".join(values):
            _refuse_nul(path, header, batch, starts)
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
        if kind == "text" and "\0" in "".join(values):
            _refuse_nul(path, header, batch, starts)


def _breaks(text: str) -> int:
    """The line breaks in ``text``, counted as the reader counts lines."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _refuse_nul(
    path: Path,
    header: Sequence[str] | None,
    records: Sequence[Sequence[str]],
    starts: Sequence[int],
) -> None:
    """Raise at the first NUL byte of these records (each starting at its line; the header
    itself when ``header`` is None), if any: PostgreSQL refuses one in text, DuckDB keeps it."""
    for record, line in zip(records, starts, strict=True):
        for position, value in enumerate(record):
            if "\0" in value:
                where = "the header" if header is None else f"column {header[position]!r}"
                raise ProjectError(
                    f"a NUL byte (0x00) in {where}; a CSV seed cannot hold one "
                    "(PostgreSQL refuses it in text)",
                    path=path,
                    line=line + _breaks(value[: value.index("\0")]),
                    hint="remove it, for example with: tr -d '\\000' < in.csv > out.csv",
                )
            line += _breaks(value)


# -- YAML -------------------------------------------------------------------------------


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


@functools.cache
def _seed_loader() -> type[yaml.SafeLoader]:
    """SafeLoader with YAML 1.2 core scalars: only true/false are booleans, only plain
    decimal digits are integers (no octal ``012``, no base-60 ``1:20``). Made on first use:
    YAML's parser loads with the first YAML seed, not with every CSV one."""

    class SeedLoader(yamlstrict.loader()):  # type: ignore[misc]  # made on first use
        pass

    SeedLoader.yaml_implicit_resolvers = {
        first: [
            (tag, regexp)
            for tag, regexp in resolvers
            if tag not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    SeedLoader.add_implicit_resolver(
        _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    SeedLoader.add_implicit_resolver(
        _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
    )
    SeedLoader.add_implicit_resolver(
        _FLOAT_TAG,
        re.compile(
            r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+0123456789."),
    )
    return SeedLoader


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


def _types_of(
    items: Sequence[Mapping[str, Any]], names: Sequence[str], forced: Mapping[str, str]
) -> dict[str, str]:
    """Each column's type, as a YAML seed's: ``forced`` where it says, else the narrowest
    type its values fit (``text`` when all are NULL)."""
    found: dict[str, str | None] = dict.fromkeys(names)
    for item in items:
        for key, value in item.items():
            if value is not None and key not in forced and found[key] != "text":
                found[key] = _join(found[key], _python_type(value))
    return {name: forced.get(name) or found[name] or "text" for name in names}


def typed_rows(
    items: Sequence[Mapping[str, Any]], types: Mapping[str, str] = {}
) -> tuple[tuple[Column, ...], list[tuple[Any, ...]]]:
    """Columns and rows of a list of mappings, typed as a YAML seed's are: a column in
    ``types`` has that type, any other the narrowest type its values fit (``text`` when
    all are NULL); a missing key is NULL. Raises ValueError naming a value that does not
    fit its column's type."""
    names = [*types]
    for item in items:
        names.extend(key for key in item if key not in names)
    final = _types_of(items, names, types)
    rows = []
    for number, item in enumerate(items, 1):
        row = []
        for name in names:
            try:
                row.append(_shape(item.get(name), final[name]))
            except ValueError:
                raise ValueError(
                    f"row {number}: column {name!r} has {item.get(name)!r}, "
                    f"which is not a {final[name]}"
                ) from None
        rows.append(tuple(row))
    return tuple(Column(name, final[name]) for name in names), rows


@dataclass(frozen=True)
class YamlTable:
    """One table of a multi-table YAML seed (``{name: [row, ...], ...}``)."""

    key: str  # as written in the file
    line: int  # of the key
    text: str  # the file's head (its header comments) and this table's part, as written

    @property
    def name(self) -> str:
        """The table's name: its key folded to lower case."""
        return self.key.lower()


_STR_TAG = "tag:yaml.org,2002:str"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROWS_HINT = "write one mapping per row, e.g.\n- {id: 1, name: Ada}\n- {id: 2, name: Grace}"
_TABLES_HINT = (
    "a YAML seed is a list of rows, or a mapping of table name to a list of rows, e.g.\n"
    "agency_types:\n  - {code: 1, name: City}\nstates:\n  - {abbr: OR, name: Oregon}"
)


def yaml_tables(path: str | Path, text: str) -> tuple[YamlTable, ...] | None:
    """The tables of a YAML seed whose top level is a mapping (one per key, in file order),
    or None when it is not one: then it is a single table, and ``read_yaml_seed`` reads it
    (and says what is wrong with it). Checks that every key is a table name, given once,
    and every value a non-empty list of mappings; the rows' columns and values are
    ``read_yaml_seed``'s to check."""
    text = text.removeprefix("\ufeff")
    if not _starts_with_mapping(text):
        return None
    node = _compose(path, text)
    assert isinstance(node, yaml.MappingNode)
    if not node.value:  # names no table: a seed with nothing in it, read_yaml_seed says so
        return None
    head = text[: node.start_mark.index]
    tables: list[YamlTable] = []
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if key_node.tag == _STR_TAG else None
        if not isinstance(key, str) or not _TABLE_NAME.fullmatch(key):
            shown = (
                repr(key_node.value)
                if isinstance(key_node, yaml.ScalarNode)
                else _describe_node(key_node)
            )
            raise ProjectError(
                f"key {shown} is not a table name",
                path=path,
                line=line,
                hint="a table name is letters, digits and _, not starting with a digit; "
                + _TABLES_HINT,
            )
        name = key.lower()
        if name in seen:
            raise ProjectError(
                f"table {name} appears twice (lines {seen[name]} and {line}; "
                "names are compared case-insensitively)",
                path=path,
                line=line,
            )
        seen[name] = line
        if not isinstance(value_node, yaml.SequenceNode):
            raise ProjectError(
                f"table {key} must be a list of mappings (rows); found "
                f"{_describe_node(value_node)}",
                path=path,
                line=line,
                hint=_TABLES_HINT,
            )
        if not value_node.value:
            raise ProjectError(
                f"table {key} has no rows; a YAML seed needs at least one row to know its columns",
                path=path,
                line=line,
            )
        for item in value_node.value:
            if not isinstance(item, yaml.MappingNode):
                raise ProjectError(
                    f"table {key} must be a list of mappings (rows); this item is "
                    f"{_describe_node(item)}",
                    path=path,
                    line=item.start_mark.line + 1,
                    hint=_ROWS_HINT,
                )
        start, end = key_node.start_mark.index, value_node.end_mark.index
        # An alias to an anchor elsewhere in the file makes that part this table's too.
        part = text if _reaches_outside(value_node, start, end) else text[start:end]
        tables.append(YamlTable(key, line, head + part))
    return tuple(tables)


def _starts_with_mapping(text: str) -> bool:
    """Whether the document's top level is a mapping, read no further than its start."""
    try:
        for event in yaml.parse(text, Loader=_seed_loader()):
            if isinstance(event, yaml.NodeEvent):
                return isinstance(event, yaml.MappingStartEvent)
    except yaml.YAMLError:
        pass  # read_yaml_seed reports it
    return False


def _reaches_outside(node: yaml.Node, start: int, end: int) -> bool:
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if not start <= current.start_mark.index < end:
            return True
        if isinstance(current, yaml.MappingNode):
            stack.extend(n for pair in current.value for n in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return False


def _compose(path: str | Path, text: str) -> yaml.Node | None:
    """The node tree of the file's one document (None: the file is empty)."""
    try:
        loader = _seed_loader()(text)  # refuses a NUL byte already
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    try:
        return loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    finally:
        loader.dispose()


def _yaml_error(path: str | Path, text: str, exc: yaml.YAMLError) -> ProjectError:
    return ProjectError(
        f"not valid YAML: {yamlstrict.problem(exc)}",
        path=path,
        line=yamlstrict.error_line(text, exc),
    )


def read_yaml_seed(
    path: Path, *, overrides: Mapping[str, str] = {}, table: str | None = None
) -> tuple[SeedTable, list[tuple[Any, ...]]]:
    """Read a YAML list of mappings: typed columns (union of keys, first-seen order;
    a missing key is NULL) and the rows, values shaped for those types. ``table`` names
    the key whose list to read in a multi-table file (see ``yaml_tables``)."""
    path = Path(path)
    text = utf8_text(path.read_bytes(), path)
    # of a multi-table file, that table alone: another's problem is the other's
    part = None if table is None else functools.partial(_table_node, path, table=table)
    try:  # a column given twice in a row is refused
        node, data = yamlstrict.read(text, _seed_loader(), part)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    if node is None:
        what = "the file has only comments" if text.strip() else "the file is empty"
        raise ProjectError(
            f"{what}; a YAML seed needs at least one row to know its columns",
            path=path,
            line=1,
            hint=_ROWS_HINT,
        )
    line = node.start_mark.line + 1
    if data == {}:
        raise ProjectError(
            "the file is an empty mapping, which names no table and no rows; a YAML seed "
            "needs at least one row to know its columns",
            path=path,
            line=line,
            hint=_TABLES_HINT,
        )
    if not isinstance(data, list):
        raise ProjectError(
            f"a YAML seed must be a list of mappings (rows); found {_describe(data)}",
            path=path,
            line=line,
            hint=_ROWS_HINT,
        )
    if not data:
        raise ProjectError(
            "the list is empty; a YAML seed needs at least one row to know its columns",
            path=path,
            line=line,
            hint=_ROWS_HINT,
        )
    lines = [item.start_mark.line + 1 for item in node.value]
    names: list[str] = []
    first_lines: list[int] = []  # of the row each name first appears in
    for item, line in zip(data, lines, strict=True):
        if not isinstance(item, dict):
            raise ProjectError(
                f"a YAML seed must be a list of mappings (rows); this item is {_describe(item)}",
                path=path,
                line=line,
                hint=_ROWS_HINT,
            )
        for key in item:
            if not isinstance(key, str):
                raise ProjectError(
                    f"column names must be text; found {_describe(key)} {key!r}",
                    path=path,
                    line=line,
                )
            if "\0" in key:
                raise ProjectError(
                    f"column name {key!r} has a NUL character; a seed cannot hold one",
                    path=path,
                    line=line,
                )
            if key not in names:
                names.append(key)
                first_lines.append(line)
    _check_names(path, names, first_lines, "key")
    forced = _check_overrides(path, names, overrides)
    types = _types_of(data, names, forced)
    rows = []
    for item, line in zip(data, lines, strict=True):
        row = []
        for name in names:
            value = item.get(name)
            try:
                shaped = _shape(value, types[name])
            except ValueError:
                origin = f" (set by {OVERRIDE_OPTION})" if name in forced else ""
                raise ProjectError(
                    f"column {name!r} has {value!r}, which is not a {types[name]}{origin}",
                    path=path,
                    line=line,
                ) from None
            if isinstance(shaped, str) and "\0" in shaped:  # written as "\0" or "\x00"
                raise ProjectError(
                    f"column {name!r} has {value!r}, with a NUL character; a seed cannot "
                    "hold one (PostgreSQL refuses it in text)",
                    path=path,
                    line=line,
                )
            row.append(shaped)
        rows.append(tuple(row))
    columns = tuple(Column(name, types[name]) for name in names)
    return SeedTable(columns, len(rows)), rows


def _table_node(path: Path, node: yaml.Node | None, table: str) -> yaml.Node:
    """The node of ``table``'s list in a multi-table file."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in reversed(node.value):  # the last of a key, as PyYAML reads
            if key_node.tag == _STR_TAG and key_node.value == table:
                return value_node
    raise ProjectError(
        f"the file has no table {table} (it changed since the project was loaded?)",
        path=path,
        hint="run the command again",
    )


def _describe_node(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "null"
    return f"the value {node.value!r}"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
