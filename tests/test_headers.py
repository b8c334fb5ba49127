"""Tests for dbluigi.headers: the `-- key: value` block at the top of a model file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dbluigi.errors import HeaderError, ProjectError
from dbluigi.headers import (
    KINDS,
    KNOWN_KEYS,
    Header,
    HeaderCheck,
    IndexSpec,
    PartitionSpec,
    parse_check,
    parse_duration,
    parse_header,
)

pytestmark = pytest.mark.unit

PATH = "staging/agencies.sql"


def parse(text: str, *, comment: str = "--") -> Header:
    return parse_header(text, PATH, comment=comment)


def error(text: str, *, comment: str = "--") -> HeaderError:
    with pytest.raises(HeaderError) as info:
        parse_header(text, PATH, comment=comment)
    assert info.value.path == PATH
    return info.value


# --- the block ---------------------------------------------------------------------------


def test_full_header() -> None:
    header = parse(
        "-- kind: table\n"
        "-- depends: raw.offenses, raw.agencies\n"
        "-- check: rows > 0, unique(agency_id)\n"
        "-- index: unique(agency_id)\n"
        "-- index: state, county\n"
        "-- unique_key: agency_id\n"
        "-- watermark: updated_at\n"
        "-- partition: year in 2010..2012\n"
        "-- path: exports/agencies.csv\n"
        "-- timeout: 10m\n"
        "-- max_cost: 1e7\n"
        "-- priority: 5\n"
        "-- retries: 2\n"
        "-- tags: nightly, api\n"
        "-- description: One row per agency.\n"
        "-- modifies: raw.agencies, audit.log\n"
        "-- unmanaged: true\n"
        "-- inputs: data/agencies/*.csv\n"
        "select * from raw.agencies\n"
    )
    assert header == Header(
        kind="table",
        depends=("raw.offenses", "raw.agencies"),
        checks=(
            HeaderCheck("rows", "rows > 0", 3, op=">", value=0.0),
            HeaderCheck("unique", "unique(agency_id)", 3, columns=("agency_id",)),
        ),
        indexes=(
            IndexSpec(("agency_id",), unique=True, line=4),
            IndexSpec(("state", "county"), line=5),
        ),
        unique_key=("agency_id",),
        watermark="updated_at",
        partition=PartitionSpec("year", (2010, 2011, 2012), line=8),
        path="exports/agencies.csv",
        timeout=600.0,
        max_cost=1e7,
        priority=5,
        retries=2,
        tags=("nightly", "api"),
        description="One row per agency.",
        modifies=("raw.agencies", "audit.log"),
        unmanaged=True,
        inputs=("data/agencies/*.csv",),
        lines=tuple((key, i) for i, key in enumerate(KNOWN_KEYS[:4] + KNOWN_KEYS[3:], 1)),
        body_line=19,
    )


def test_empty_file_and_no_header() -> None:
    assert parse("") == Header(body_line=1)
    assert parse("select 1\n") == Header(body_line=1)


def test_defaults() -> None:
    header = parse("select 1")
    assert header.modifies == () and header.unmanaged is False
    assert header.kind is None
    assert header.priority == 0 and header.retries == 0
    assert header.timeout is None and header.max_cost is None and header.partition is None
    assert header.lines == ()


def test_header_is_frozen_and_hashable() -> None:
    header = parse("-- kind: view\n-- tags: a\nselect 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.kind = "table"  # type: ignore[misc]
    assert hash(header) == hash(parse("-- kind: view\n-- tags: a\nselect 1"))


@pytest.mark.parametrize(
    ("text", "body_line"),
    [
        ("select 1", 1),
        ("-- kind: table\nselect 1", 2),
        ("\n\n-- kind: table\n\n  \nselect 1\n-- kind: view\n", 6),
        ("-- kind: table\n-- tags: a\n", 3),
        ("-- kind: table\n-- tags: a", 3),
        ("-- kind: table\n\n", 3),
        ("\n", 2),
        ("-- kind: table\r\n-- tags: a\r\nselect 1\r\n", 3),
        ("   -- kind: table\n\tselect 1", 2),
        ("-- kind: table\n/* block */\nselect 1", 2),
    ],
)
def test_body_line(text: str, body_line: int) -> None:
    assert parse(text).body_line == body_line


def test_block_ends_at_first_statement() -> None:
    # Comments after the first statement are not headers, even bad ones.
    header = parse("-- kind: table\nselect 1\n-- kind: nonsense\n-- dependz: x\n")
    assert header.kind == "table"
    assert header.lines == (("kind", 1),)


def test_byte_order_mark_is_ignored() -> None:
    header = parse("\ufeff-- kind: view\nselect 1")
    assert header.kind == "view"
    assert header.body_line == 2


def test_lines_and_line_of() -> None:
    header = parse(
        "-- A model.\n-- depends: a\n\n-- kind: view\n-- depends: b\n-- description:\nselect 1"
    )
    assert header.lines == (("depends", 2), ("kind", 4), ("depends", 5), ("description", 6))
    assert header.line_of("depends") == 2
    assert header.line_of("kind") == 4
    assert header.line_of("check") is None


@pytest.mark.parametrize(
    "comment_line",
    [
        "-- This model joins agencies to offenses.",
        "-- TODO: speed this up",
        "-- Note: slow on big years",
        "-- the reason is: history",
        "-- e.g.: see below",
        "--",
        "--   ",
        "-----------------",
        "-- see https://example.com/docs",
        "-- https://example.com/docs",
        "-- kind2: table",
        "-- 2020: a good year",
    ],
)
def test_prose_comments_are_ignored(comment_line: str) -> None:
    header = parse(f"{comment_line}\n-- kind: view\nselect 1")
    assert header.kind == "view"
    assert header.lines == (("kind", 2),)
    assert header.body_line == 3


def test_whitespace_around_marker_and_value() -> None:
    header = parse("  --kind:view  \n\t--   tags:   a ,b  \nselect 1")
    assert header.kind == "view"
    assert header.tags == ("a", "b")


# --- # comments for python and yaml ---------------------------------------------------------


def test_hash_comments_for_python() -> None:
    text = (
        "#!/usr/bin/env python\n"
        "# Pivot offenses by year.\n"
        "# kind: python\n"
        "# depends: staging.offenses\n"
        "\n"
        "def run(ctx):\n"
        "    # kind: nonsense, not a header\n"
        "    pass\n"
    )
    header = parse(text, comment="#")
    assert header.kind == "python"
    assert header.depends == ("staging.offenses",)
    assert header.lines == (("kind", 3), ("depends", 4))
    assert header.body_line == 6


def test_hash_comments_for_yaml() -> None:
    header = parse("# kind: seed\n#tags: lookup\n- code: 1\n  name: city\n", comment="#")
    assert header.kind == "seed"
    assert header.tags == ("lookup",)
    assert header.body_line == 3


def test_dash_comment_is_body_in_hash_file() -> None:
    header = parse("-- kind: table\n# kind: seed\n", comment="#")
    assert header.kind is None
    assert header.body_line == 1


def test_hash_comment_is_body_in_sql_file() -> None:
    assert parse("# kind: table\n-- kind: view\n").body_line == 1


def test_shebang_only_ignored_for_hash() -> None:
    header = parse("#!/usr/bin/env python\n# kind: python\n", comment="#")
    assert header.kind == "python"
    assert header.body_line == 3


def test_hash_error_carries_line() -> None:
    exc = error("#!/usr/bin/env python\n# kind: pyton\n", comment="#")
    assert exc.line == 2
    assert exc.message == "unknown kind 'pyton'"
    assert exc.hint == "did you mean 'python'?"


# --- keys ------------------------------------------------------------------------------------


def test_unknown_key_with_close_match() -> None:
    exc = error("-- kind: table\n-- dependz: raw.x\nselect 1")
    assert exc.message == "unknown header key 'dependz'"
    assert exc.line == 2
    assert exc.hint == "did you mean 'depends'?"
    assert str(exc) == (
        "staging/agencies.sql:2: unknown header key 'dependz'\n  hint: did you mean 'depends'?"
    )
    assert isinstance(exc, ProjectError)
    assert exc.failure_class == "config"


@pytest.mark.parametrize(("key", "close"), [("chek", "check"), ("tag", "tags"), ("indx", "index")])
def test_unknown_key_suggestions(key: str, close: str) -> None:
    assert error(f"-- {key}: x").hint == f"did you mean {close!r}?"


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    exc = error("-- todo: speed this up\nselect 1")
    assert exc.message == "unknown header key 'todo'"
    assert exc.line == 1
    assert exc.hint is not None
    assert exc.hint.startswith("known keys are: kind, depends, check, index,")
    assert "description" in exc.hint
    assert "prose comment" in exc.hint


def test_unknown_key_raised_even_with_empty_value() -> None:
    assert error("-- owner:").message == "unknown header key 'owner'"


@pytest.mark.parametrize(
    "line", ["-- Kind: table", "-- KIND: table", "-- kind : table", "-- Depends: raw.x"]
)
def test_near_miss_of_known_key_is_an_error(line: str) -> None:
    # Silently ignoring `-- Depends: raw.x` would build in the wrong order.
    exc = error(f"-- a model\n{line}\nselect 1")
    assert exc.line == 2
    written = line.removeprefix("-- ").split(":")[0] + ":"
    assert exc.message == f"malformed header key {written!r}"
    key = written.rstrip(" :").lower()
    assert exc.hint == (
        f"write '{key}: ...' (lowercase, the colon right after the key), "
        "or reword the comment if it is prose"
    )


@pytest.mark.parametrize(
    "key",
    [
        "kind",
        "unique_key",
        "watermark",
        "partition",
        "path",
        "timeout",
        "max_cost",
        "priority",
        "retries",
    ],
)
def test_non_repeatable_key_given_twice(key: str) -> None:
    values = {
        "kind": "table",
        "unique_key": "id",
        "watermark": "ts",
        "partition": "y in 1..2",
        "path": "a.csv",
        "timeout": "1m",
        "max_cost": "10",
        "priority": "1",
        "retries": "1",
    }
    text = f"-- {key}: {values[key]}\n-- a comment\n-- {key}: {values[key]}\nselect 1"
    exc = error(text)
    assert exc.line == 3
    assert exc.message == f"header key {key!r} given twice (first on line 1)"
    assert exc.hint == f"keep one {key!r} line"


def test_repeatable_keys_accumulate() -> None:
    header = parse(
        "-- depends: a, b\n"
        "-- depends: b, c\n"
        "-- check: rows > 0\n"
        "-- check: not_null(id)\n"
        "-- index: a\n"
        "-- index: b\n"
        "-- tags: x, y\n"
        "-- tags: y, z\n"
        "-- description: First part,\n"
        "-- description: second part.\n"
    )
    assert header.depends == ("a", "b", "c")
    assert [c.kind for c in header.checks] == ["rows", "not_null"]
    assert [c.line for c in header.checks] == [3, 4]
    assert header.indexes == (IndexSpec(("a",), line=5), IndexSpec(("b",), line=6))
    assert header.tags == ("x", "y", "z")
    assert header.description == "First part, second part."


@pytest.mark.parametrize("key", [k for k in KNOWN_KEYS if k != "description"])
def test_empty_value_is_an_error(key: str) -> None:
    exc = error(f"-- kind: table\n-- {key}:   \nselect 1" if key != "kind" else "-- kind:")
    assert exc.message == f"header key {key!r} has no value"
    assert exc.line == (1 if key == "kind" else 2)
    assert exc.hint


def test_empty_description_is_allowed() -> None:
    header = parse("-- description:\n-- description: Text.\n")
    assert header.description == "Text."
    assert parse("-- description:\n").description is None


def test_description_is_free_text() -> None:
    header = parse("-- description: Rates: per 100k, by year (see docs) -- really.\n")
    assert header.description == "Rates: per 100k, by year (see docs) -- really."


# --- kind ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind(kind: str) -> None:
    assert parse(f"-- kind: {kind}\n").kind == kind


def test_kind_is_case_insensitive() -> None:
    assert parse("-- kind: Table\n").kind == "table"


def test_bad_kind_with_suggestion() -> None:
    exc = error("-- kind: tabel\nselect 1")
    assert exc.message == "unknown kind 'tabel'"
    assert exc.line == 1
    assert exc.hint == "did you mean 'table'?"


def test_bad_kind_without_suggestion() -> None:
    exc = error("-- description: x\n-- kind: materialized\n")
    assert exc.message == "unknown kind 'materialized'"
    assert exc.line == 2
    assert exc.hint == "kinds are: table, view, incremental, sql, seed, dump, python"


# --- depends, tags, unique_key -----------------------------------------------------------------


def test_depends_forms() -> None:
    header = parse("-- depends: raw.offenses,agencies , _tmp.x$1, Raw.Mixed\n")
    assert header.depends == ("raw.offenses", "agencies", "_tmp.x$1", "Raw.Mixed")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a, , b", "empty item in depends list 'a, , b'"),
        ("a,", "empty item in depends list 'a,'"),
        (",a", "empty item in depends list ',a'"),
        ("raw.x y", "bad relation name 'raw.x y' in depends"),
        ("db.raw.x", "bad relation name 'db.raw.x' in depends"),
        ("1abc", "bad relation name '1abc' in depends"),
        ('"Quoted"', "bad relation name '\"Quoted\"' in depends"),
    ],
)
def test_bad_depends(value: str, message: str) -> None:
    exc = error(f"-- kind: table\n-- depends: {value}\n")
    assert exc.message == message
    assert exc.line == 2
    assert exc.hint == "list relations separated by commas, e.g. depends: raw.offenses, agencies"


def test_tags() -> None:
    assert parse("-- tags: nightly, api-v2, daily_1, nightly\n").tags == (
        "nightly",
        "api-v2",
        "daily_1",
    )


def test_inputs_are_globs_relative_to_the_project() -> None:
    header = parse(
        "-- inputs: data/*.log, ./lookups/codes.txt\n-- inputs: data/*.log, raw\\x.csv\n",
    )
    assert header.inputs == ("data/*.log", "lookups/codes.txt", "raw/x.csv")
    assert header.line_of("inputs") == 1
    assert parse("# inputs: **/*.json\n", comment="#").inputs == ("**/*.json",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../shared/x.log", "input '../shared/x.log' is outside the project folder"),
        ("data/../../x", "input 'data/../../x' is outside the project folder"),
        ("/var/log/*.log", "input '/var/log/*.log' is outside the project folder"),
        ("~/x.log", "input '~/x.log' is outside the project folder"),
        ("C:\\logs\\x.log", "input 'C:\\\\logs\\\\x.log' is outside the project folder"),
        ("a.log,,b.log", "empty item in inputs list 'a.log,,b.log'"),
        ("./", "input './' names no file"),
        ("data/**.log", "bad input glob 'data/**.log': ** must be a whole folder name"),
    ],
)
def test_bad_inputs(value: str, message: str) -> None:
    exc = error(f"-- kind: sql\n-- inputs: {value}\n")
    assert exc.message == message
    assert exc.line == 2
    assert exc.hint


def test_inputs_misspelled_gets_a_suggestion() -> None:
    assert error("-- input: data/*.log\n").hint == "did you mean 'inputs'?"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a,,b", "empty item in tags list 'a,,b'"),
        ("a b", "bad tag 'a b' in tags"),
        ("tag:x", "bad tag 'tag:x' in tags"),
    ],
)
def test_bad_tags(value: str, message: str) -> None:
    exc = error(f"-- tags: {value}\n")
    assert exc.message == message
    assert exc.line == 1
    assert exc.hint == "list words separated by commas, e.g. tags: nightly, api"


def test_unique_key() -> None:
    assert parse("-- unique_key: agency_id, year, agency_id\n").unique_key == ("agency_id", "year")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a,", "empty item in unique_key list 'a,'"),
        ("a.b", "bad column name 'a.b' in unique_key"),
        ("(a, b)", "bad column name '(a' in unique_key"),
    ],
)
def test_bad_unique_key(value: str, message: str) -> None:
    exc = error(f"-- unique_key: {value}\n")
    assert exc.message == message
    assert exc.hint == "list columns separated by commas, e.g. unique_key: agency_id, year"


# --- check ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "op", "value", "factor"),
    [
        ("rows > 0", ">", 0.0, None),
        ("rows>0", ">", 0.0, None),
        ("ROWS >= 100", ">=", 100.0, None),
        ("rows < 1e6", "<", 1e6, None),
        ("rows <= 2.5", "<=", 2.5, None),
        ("rows = 52", "=", 52.0, None),
        ("rows == 52", "=", 52.0, None),
        ("rows != 0", "!=", 0.0, None),
        ("rows <> 0", "!=", 0.0, None),
        ("rows >= previous", ">=", None, 1.0),
        ("Rows >= PREVIOUS", ">=", None, 1.0),
        ("rows >= 0.9 * previous", ">=", None, 0.9),
        ("rows>=0.9*previous", ">=", None, 0.9),
        ("rows <= previous * 1.5", "<=", None, 1.5),
        ("rows <= previous*2", "<=", None, 2.0),
    ],
)
def test_parse_check_rows(expr: str, op: str, value: float | None, factor: float | None) -> None:
    check = parse_check(f"  {expr} ", 7)
    assert check == HeaderCheck("rows", expr, 7, op=op, value=value, factor=factor)


@pytest.mark.parametrize(
    ("expr", "kind", "columns"),
    [
        ("unique(a)", "unique", ("a",)),
        ("unique(a, b)", "unique", ("a", "b")),
        ("UNIQUE ( a ,b )", "unique", ("a", "b")),
        ("not_null(agency_id)", "not_null", ("agency_id",)),
        ("Not_Null(a,b,a)", "not_null", ("a", "b")),
    ],
)
def test_parse_check_columns(expr: str, kind: str, columns: tuple[str, ...]) -> None:
    assert parse_check(expr, 3) == HeaderCheck(kind, expr, 3, columns=columns)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("rows > abc", "bad check expression 'rows > abc'"),
        ("rows >", "bad check expression 'rows >'"),
        ("rows => 0", "bad check expression 'rows => 0'"),
        ("rows > -1", "bad check expression 'rows > -1'"),
        ("rows >= 0.9 previous", "bad check expression 'rows >= 0.9 previous'"),
        (
            "rows >= 0 * previous",
            "bad check expression 'rows >= 0 * previous': the factor must be more than zero",
        ),
        ("count(*) > 0", "bad check expression 'count(*) > 0'"),
        ("unique()", "bad check expression 'unique()': needs at least one column"),
        ("unique(a,)", "bad check expression 'unique(a,)': empty column in 'a,'"),
        ("unique(a b)", "bad check expression 'unique(a b)': 'a b' is not a column name"),
        ("unique(a", "bad check expression 'unique(a'"),
        ("primary_key(a)", "bad check expression 'primary_key(a)'"),
        ("", "bad check expression ''"),
    ],
)
def test_parse_check_errors(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_check(expr, 1)
    assert str(info.value) == message


def test_several_checks_on_one_line_with_commas_in_parentheses() -> None:
    header = parse(
        "-- kind: table\n-- check: rows > 0, unique(a, b), not_null(a, c),rows >= previous\n"
    )
    assert header.checks == (
        HeaderCheck("rows", "rows > 0", 2, op=">", value=0.0),
        HeaderCheck("unique", "unique(a, b)", 2, columns=("a", "b")),
        HeaderCheck("not_null", "not_null(a, c)", 2, columns=("a", "c")),
        HeaderCheck("rows", "rows >= previous", 2, op=">=", factor=1.0),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("rows > 0, rows > abc", "bad check expression 'rows > abc'"),
        ("rows > 0,", "empty check in 'rows > 0,'"),
        ("rows > 0,, unique(a)", "empty check in 'rows > 0,, unique(a)'"),
        ("unique(a, b", "bad check: unbalanced parentheses in 'unique(a, b'"),
        ("unique(a), b)", "bad check: unbalanced parentheses in 'unique(a), b)'"),
        ("rows is positive", "bad check expression 'rows is positive'"),
    ],
)
def test_bad_check_in_header(value: str, message: str) -> None:
    exc = error(f"-- kind: table\n-- check: rows > 0\n-- check: {value}\nselect 1")
    assert exc.message == message
    assert exc.line == 3
    assert exc.hint == (
        "accepted checks: rows > 0, rows >= previous, rows >= 0.9 * previous, "
        "unique(col, ...), not_null(col, ...); rows compares with >, >=, <, <=, =, !="
    )


# --- index ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "columns", "unique"),
    [
        ("agency_id", ("agency_id",), False),
        ("a, b", ("a", "b"), False),
        ("(a, b)", ("a", "b"), False),
        ("( a )", ("a",), False),
        ("unique(a, b)", ("a", "b"), True),
        ("unique (a)", ("a",), True),
        ("UNIQUE(a)", ("a",), True),
    ],
)
def test_index(value: str, columns: tuple[str, ...], unique: bool) -> None:
    header = parse(f"-- kind: table\n-- index: {value}\n")
    assert header.indexes == (IndexSpec(columns, unique=unique, line=2),)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("()", "bad index '()': needs at least one column"),
        ("unique()", "bad index 'unique()': needs at least one column"),
        ("a,,b", "bad index 'a,,b': empty column in 'a,,b'"),
        ("unique a", "bad index 'unique a': 'unique a' is not a column name"),
        ("lower(name)", "bad index 'lower(name)': 'lower(name)' is not a column name"),
    ],
)
def test_bad_index(value: str, message: str) -> None:
    exc = error(f"-- index: {value}\n")
    assert exc.message == message
    assert exc.line == 1
    assert exc.hint == "one index per line: col, (a, b) or unique(a, b)"


# --- watermark, path -------------------------------------------------------------------------


def test_watermark() -> None:
    assert parse("-- watermark: updated_at\n").watermark == "updated_at"


@pytest.mark.parametrize("value", ["a, b", "t.updated_at", "max(updated_at)"])
def test_bad_watermark(value: str) -> None:
    exc = error(f"-- watermark: {value}\n")
    assert exc.message == f"bad watermark {value!r}: expected one column name"
    assert exc.hint == "name one column, e.g. watermark: updated_at"


def test_path_kept_as_written() -> None:
    assert parse("-- path:  exports/agency reporting.csv \n").path == "exports/agency reporting.csv"


# --- partition -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("year in 2010..2013", PartitionSpec("year", (2010, 2011, 2012, 2013), line=1)),
        ("year IN 2010 .. 2010", PartitionSpec("year", (2010,), line=1)),
        ("n in -1..1", PartitionSpec("n", (-1, 0, 1), line=1)),
        ("year in (2019, 2020)", PartitionSpec("year", (2019, 2020), line=1)),
        ("year in(2020,2019,2020)", PartitionSpec("year", (2020, 2019), line=1)),
        ("state in ('ca', 'ny')", PartitionSpec("state", ("ca", "ny"), line=1)),
        ("name in ('o''hare', 'a,b', 3)", PartitionSpec("name", ("o'hare", "a,b", 3), line=1)),
        (
            "year in (select distinct data_year from raw.x)",
            PartitionSpec("year", query="select distinct data_year from raw.x", line=1),
        ),
        (
            "year in ( SELECT y FROM t WHERE s IN ('a', ')') )",
            PartitionSpec("year", query="SELECT y FROM t WHERE s IN ('a', ')')", line=1),
        ),
        (
            "year in (with t as (select 1 as y) select y from t)",
            PartitionSpec("year", query="with t as (select 1 as y) select y from t", line=1),
        ),
    ],
)
def test_partition(value: str, expected: PartitionSpec) -> None:
    assert parse(f"-- partition: {value}\n").partition == expected


PARTITION_HINT = (
    "use NAME in 2010..2020, NAME in (2019, 2020), NAME in ('a', 'b') or NAME in (select ...)"
)


@pytest.mark.parametrize(
    "value",
    [
        "year",
        "year 2010..2020",
        "year in",
        "year in 2010",
        "year in 2010..",
        "year in 2010...2020",
        "year in a..b",
        "year in ()",
        "year in (2019, )",
        "year in (2019 2020)",
        "year in (a, b)",
        'year in ("a", "b")',
        "year in (delete from t)",
        "1year in (1)",
        "year in [2019, 2020]",
    ],
)
def test_bad_partition(value: str) -> None:
    exc = error(f"-- kind: table\n-- partition: {value}\n")
    assert exc.message == f"bad partition {value!r}"
    assert exc.line == 2
    assert exc.hint == PARTITION_HINT


def test_partition_range_reversed() -> None:
    exc = error("-- partition: year in 2020..2010\n")
    assert exc.message == "bad partition range '2020..2010': 2020 is greater than 2010"
    assert exc.line == 1
    assert exc.hint == "write the lower bound first, e.g. year in 2010..2020"


def test_partition_query_must_be_wrapped_whole() -> None:
    value = "(select 1) union (select 2)"
    exc = error(f"-- partition: year in {value}\n")
    assert exc.message == (
        f"bad partition query {value!r}: the parentheses must wrap the whole query"
    )
    assert exc.hint == PARTITION_HINT


# --- timeout and parse_duration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("500ms", 0.5),
        ("1m30s500ms", 90.5),
        ("45", 45.0),
        ("1.5", 1.5),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("10M", 600.0),
        (" 5 s ", 5.0),
    ],
)
def test_parse_duration(value: str, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 minutes", "bad duration '10 minutes'"),
        ("", "bad duration ''"),
        ("abc", "bad duration 'abc'"),
        ("m", "bad duration 'm'"),
        ("10x", "bad duration '10x'"),
        ("1e3", "bad duration '1e3'"),
        ("0", "bad duration '0': must be more than zero"),
        ("0s", "bad duration '0s': must be more than zero"),
        ("0h0m", "bad duration '0h0m': must be more than zero"),
        ("-5", "bad duration '-5': must be more than zero"),
        ("-5s", "bad duration '-5s': must be more than zero"),
    ],
)
def test_parse_duration_errors(value: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


def test_timeout_header() -> None:
    assert parse("-- timeout: 1h30m\n").timeout == 5400.0
    assert parse("-- timeout: 45\n").timeout == 45.0


def test_bad_timeout() -> None:
    exc = error("-- kind: table\n-- timeout: 10 minutes\nselect 1")
    assert exc.message == "bad duration '10 minutes'"
    assert exc.line == 2
    assert exc.hint == "use a number with a unit: 30s, 10m, 2h"


def test_zero_timeout() -> None:
    exc = error("-- timeout: 0s\n")
    assert exc.message == "bad duration '0s': must be more than zero"
    assert exc.hint == "use a number with a unit: 30s, 10m, 2h"


# --- max_cost, priority, retries -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cost"),
    [
        ("1e7", 1e7),
        ("10000000", 1e7),
        ("2.5e6", 2.5e6),
        ("1_000_000", 1e6),
        ("0.5", 0.5),
        ("1E+3", 1000.0),
    ],
)
def test_max_cost(value: str, cost: float) -> None:
    assert parse(f"-- max_cost: {value}\n").max_cost == cost


@pytest.mark.parametrize("value", ["0", "-5", "0e3", "inf", "nan", "lots", "1__000", "_1", "1e"])
def test_bad_max_cost(value: str) -> None:
    exc = error(f"-- max_cost: {value}\n")
    assert exc.message == f"bad max_cost {value!r}: expected a positive number"
    assert exc.line == 1
    assert exc.hint == "use a positive number, e.g. max_cost: 1e7 or 10_000_000"


@pytest.mark.parametrize(("value", "priority"), [("10", 10), ("-1", -1), ("+3", 3), ("0", 0)])
def test_priority(value: str, priority: int) -> None:
    assert parse(f"-- priority: {value}\n").priority == priority


@pytest.mark.parametrize("value", ["high", "1.5", "1e3"])
def test_bad_priority(value: str) -> None:
    exc = error(f"-- priority: {value}\n")
    assert exc.message == f"bad priority {value!r}: expected a whole number"
    assert exc.hint == "use a whole number, e.g. priority: 10 or priority: -1"


@pytest.mark.parametrize(("value", "retries"), [("0", 0), ("3", 3)])
def test_retries(value: str, retries: int) -> None:
    assert parse(f"-- retries: {value}\n").retries == retries


@pytest.mark.parametrize("value", ["-1", "two", "1.0"])
def test_bad_retries(value: str) -> None:
    exc = error(f"-- kind: sql\n-- retries: {value}\n")
    assert exc.message == f"bad retries {value!r}: expected a whole number 0 or more"
    assert exc.line == 2
    assert exc.hint == "use a whole number 0 or more, e.g. retries: 2"


# --- errors in general -----------------------------------------------------------------------


def test_first_error_wins_and_names_its_line() -> None:
    exc = error("-- A model.\n\n-- kind: table\n-- timeout: soon\n-- kind: view\n")
    assert exc.line == 4
    assert exc.message == "bad duration 'soon'"


def test_path_may_be_a_pathlib_path(tmp_path: Path) -> None:
    file = tmp_path / "m.sql"
    with pytest.raises(HeaderError) as info:
        parse_header("-- kinds: table\n", file)
    assert info.value.path == str(file)
    assert info.value.location == f"{file}:1"


# --- modifies, unmanaged -----------------------------------------------------------------


def test_modifies_is_a_repeatable_list_of_relations_with_its_line() -> None:
    header = parse(
        "-- kind: sql\n-- modifies: staging.agencies,raw.x\n-- depends: raw.y\n"
        "-- modifies: raw.x, Audit.Log\nupdate staging.agencies set a = 1\n"
    )
    assert header.modifies == ("staging.agencies", "raw.x", "Audit.Log")
    assert header.depends == ("raw.y",)
    assert header.line_of("modifies") == 2


def test_modifies_in_a_python_file() -> None:
    header = parse(
        "#!/usr/bin/env python\n# kind: python\n# modifies: staging.agencies\ndef run(ctx): ...\n",
        comment="#",
    )
    assert header.modifies == ("staging.agencies",)
    assert header.line_of("modifies") == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a, , b", "empty item in modifies list 'a, , b'"),
        ("db.raw.x", "bad relation name 'db.raw.x' in modifies"),
        ("raw.x y", "bad relation name 'raw.x y' in modifies"),
    ],
)
def test_bad_modifies(value: str, message: str) -> None:
    exc = error(f"-- kind: sql\n-- modifies: {value}\n")
    assert exc.message == message
    assert exc.line == 2
    assert exc.hint == "list relations separated by commas, e.g. modifies: staging.agencies"
    assert str(exc).startswith(f"{PATH}:2: {message}")


@pytest.mark.parametrize(
    ("value", "unmanaged"),
    [("true", True), ("yes", True), ("True", True), ("YES", True), ("false", False), ("no", False)],
)
def test_unmanaged(value: str, unmanaged: bool) -> None:
    header = parse(f"-- kind: sql\n-- unmanaged: {value}\ndelete from raw.x\n")
    assert header.unmanaged is unmanaged
    assert header.line_of("unmanaged") == 2


@pytest.mark.parametrize("value", ["1", "on", "y", "maybe", "true, false"])
def test_bad_unmanaged(value: str) -> None:
    exc = error(f"-- unmanaged: {value}\n")
    assert exc.message == f"bad unmanaged {value!r}: expected true or false"
    assert exc.line == 1
    assert exc.hint == "write unmanaged: true or unmanaged: false (or yes, no)"


def test_unmanaged_given_twice() -> None:
    exc = error("-- unmanaged: true\n-- unmanaged: false\n")
    assert (exc.message, exc.line) == ("header key 'unmanaged' given twice (first on line 1)", 2)


@pytest.mark.parametrize(("key", "close"), [("modify", "modifies"), ("unmanage", "unmanaged")])
def test_new_keys_are_suggested(key: str, close: str) -> None:
    assert error(f"-- {key}: x").hint == f"did you mean {close!r}?"
