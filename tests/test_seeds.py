"""Seed typing: CSV sniffing and YAML seeds, pure Python."""

from __future__ import annotations

import csv
import datetime as dt
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbluigi import seeds
from dbluigi.errors import ProjectError
from dbluigi.seeds import (
    SAMPLE_BYTES,
    SeedTable,
    guess_csv,
    read_yaml_seed,
    sniff_csv,
    yaml_tables,
)
from dbluigi.targets import Column
from tests.helpers import TRICKY_VALUES, TYPED_POOLS, write_big_csv


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def types(table: SeedTable) -> dict[str, str]:
    return {column.name: column.type for column in table.columns}


# -- CSV ----------------------------------------------------------------------------------------


def test_sniff_every_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "all.csv",
        "int,dec,exp,day,ts,tz,flag,word,empty,zero_one\n"
        "1,1.5,1e3,2024-02-29,2024-01-02 03:04,2024-01-02T03:04:05Z,TRUE,abc,,0\n"
        "-20,,2.5E-3,,2024-01-02T03:04:05.123456,2024-01-02 03:04+05:30,false,,,1\n"
        ",7,,1999-12-31,,2024-01-02 03:04:05-08,,x y,,\n",
    )
    table = sniff_csv(path)
    assert table.rows == 3
    assert types(table) == {
        "int": "bigint",
        "dec": "numeric",
        "exp": "double",
        "day": "date",
        "ts": "timestamp",
        "tz": "timestamptz",
        "flag": "boolean",
        "word": "text",
        "empty": "text",
        "zero_one": "bigint",  # 0/1 are numbers, not booleans
    }
    assert table.columns[0] == Column("int", "bigint")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "2.5"], "numeric"),
        (["1", "2.5", "3e2"], "double"),
        (["2024-01-01", "2024-01-01 10:00"], "timestamp"),
        (["2024-01-01", "2024-01-01 10:00+00"], "text"),
        (["2024-01-01 10:00", "2024-01-01 10:00Z"], "text"),
        (["007", "12"], "text"),  # leading zeros are kept: ZIP and FIPS codes
        (["0", "-0", "+5"], "bigint"),
        (["9223372036854775807"], "bigint"),
        (["9223372036854775808"], "numeric"),  # beyond int64
        (["1" * 40], "text"),
        (["0.12345678901"], "double"),  # more decimals than a DuckDB numeric keeps
        ([".5", "5."], "numeric"),
        (["2024-02-30"], "text"),  # not a real date
        (["2024-01-01 25:00"], "text"),
        (["true", "1"], "text"),
        (["yes", "no"], "text"),
        (["TRUE", "False"], "boolean"),
        (["1", "abc"], "text"),
        (["12:30"], "text"),
    ],
)
def test_sniff_widening(tmp_path: Path, values: list[str], expected: str) -> None:
    path = write(tmp_path, "c.csv", "c\n" + "\n".join(values) + "\n")
    assert types(sniff_csv(path)) == {"c": expected}


def test_header_only_gives_zero_text_rows(tmp_path: Path) -> None:
    table = sniff_csv(write(tmp_path, "h.csv", "a,b\n"))
    assert table == SeedTable((Column("a", "text"), Column("b", "text")), 0)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="empty") as caught:
        sniff_csv(write(tmp_path, "e.csv", ""))
    assert caught.value.path is not None and caught.value.path.endswith("e.csv")
    assert caught.value.line == 1


def test_quoted_fields_commas_newlines_and_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", b'\xef\xbb\xbfid,note\r\n1,"a, b"\r\n2,"two\r\nlines"\r\n')
    table = sniff_csv(path)
    assert types(table) == {"id": "bigint", "note": "text"}
    assert table.rows == 2


def test_blank_line_in_a_one_column_file_is_a_null(tmp_path: Path) -> None:
    table = sniff_csv(write(tmp_path, "one.csv", "n\n1\n\n3\n"))
    assert table == SeedTable((Column("n", "bigint"),), 3)


def test_ragged_row_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", 'a,b,c,d\n1,2,3,4\n5,"six\nlines",7,8\n9,10,11,12,13\n')
    with pytest.raises(ProjectError) as caught:
        sniff_csv(path)
    error = caught.value
    assert (error.path, error.line) == (str(path), 5)  # the quoted newline counts
    assert "row has 5 values, header has 4" in str(error)
    assert f"{path}:5" in str(error)


def test_blank_line_in_a_wider_file_is_a_ragged_row(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="row has 0 values, header has 2") as caught:
        sniff_csv(write(tmp_path, "b.csv", "a,b\n1,2\n\n"))
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("a,b,a", "'a' appears twice"),
        ("id,ID", "'ID' appears twice"),
        ("a,,c", "column 2 has an empty name"),
        ("a, ,c", "column 2 has an empty name"),
    ],
)
def test_bad_header(tmp_path: Path, header: str, message: str) -> None:
    path = write(tmp_path, "h.csv", header + "\n1,2,3\n")
    with pytest.raises(ProjectError, match=message) as caught:
        sniff_csv(path)
    assert (caught.value.path, caught.value.line) == (str(path), 1)


def test_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", "id,city\n1,Paris\n2,Montr\xe9al\n".encode("latin-1"))
    with pytest.raises(ProjectError, match="not UTF-8") as caught:
        sniff_csv(path)
    assert (caught.value.path, caught.value.line) == (str(path), 3)


def test_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "zip,amount,when,flag\n02134,12,2024-01-01,true\n")
    table = sniff_csv(path, overrides={"zip": "text", "amount": "DOUBLE", "when": "timestamptz"})
    assert types(table) == {
        "zip": "text",
        "amount": "double",
        "when": "timestamptz",
        "flag": "boolean",
    }
    assert types(sniff_csv(path, overrides={"zip": "bigint"}))["zip"] == "bigint"


def test_override_with_an_unknown_type(tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "amount\n12\n")
    with pytest.raises(ProjectError) as caught:
        sniff_csv(path, overrides={"amount": "money"})
    text = str(caught.value)
    assert str(path) in text and "column_types" in text and "'money'" in text
    assert "bigint" in text  # lists the types it accepts


def test_override_of_an_unknown_column(tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "amount\n12\n")
    with pytest.raises(ProjectError) as caught:
        sniff_csv(path, overrides={"amont": "bigint"})
    text = str(caught.value)
    assert str(path) in text and "column_types" in text and "'amont'" in text
    assert "did you mean 'amount'" in text


def test_value_that_does_not_fit_its_override(tmp_path: Path) -> None:
    path = write(tmp_path, "o.csv", "n\n1\n2\nthree\n")
    with pytest.raises(ProjectError, match="'three', which is not a bigint") as caught:
        sniff_csv(path, overrides={"n": "bigint"})
    assert caught.value.line == 4


NUL_BYTES = {  # the file, the line of its NUL byte, the column types it is read with
    "in_a_text_value": (b"id,name\n1,a\n2,b\0c\n3,d\n", 3, {}),
    "in_a_number_column": (b"id,name\n1,a\n2\0,b\n3,d\n", 3, {}),
    "on_the_second_line_of_a_quoted_value": (b'id,name\n1,"a\r\nb\0c"\n2,d\n', 3, {}),
    "after_a_quoted_line_break": (b'id,name\n1,"a\nb"\n2,c\0\n', 4, {}),
    "in_the_header": (b"id,na\0me\n1,a\n", 1, {}),
    "in_a_column_of_an_override": (b"id,name\n1,a\n2,b\0\n", 3, {"name": "text"}),
    "in_the_last_line_without_a_line_break": (b"id,name\n1,a\n2,\0", 3, {}),
}


@pytest.mark.parametrize(("content", "line", "overrides"), NUL_BYTES.values(), ids=NUL_BYTES.keys())
@pytest.mark.parametrize("vectorized_from", [0, 1 << 40], ids=["duckdb", "python"])
def test_a_nul_byte_is_an_error_at_its_line(
    tmp_path: Path, content: bytes, line: int, overrides: dict[str, str], vectorized_from: int
) -> None:
    path = write(tmp_path, "nul.csv", content)
    with pytest.raises(ProjectError, match="a NUL byte") as caught:
        sniff_csv(path, vectorized_from=vectorized_from, overrides=overrides)
    assert (caught.value.path, caught.value.line) == (str(path), line)


UNTERMINATED_QUOTES = {  # the file, and the line where its quoted value that never ends starts
    "in_the_middle": (b'id,name\n1,a\n2,"b\n3,d\n4,e\n', 3),
    "swallowing_rows_of_the_right_width": (b'id,name\n1,a\n2,"b\n3,d\n', 3),
    "on_the_last_line": (b'id,name\n1,a\n2,"b\n', 3),
    "without_a_final_line_break": (b'id,name\n1,a\n2,"b', 3),
    "after_a_quoted_line_break_in_its_row": (b'id,a,b\n1,"x\ny",c\n2,"x\ny","open\n3,d,e\n', 5),
    "with_escaped_quotes": (b'id,name\n1,"say ""hi""\n2,b\n', 2),
    "crlf": (b'id,name\r\n1,a\r\n2,"b\r\n3,d\r\n', 3),
    "in_a_one_column_file": (b'id\n1\n"2\n3\n', 3),
    "in_the_header": (b'id,"name\n1,a\n', 1),
}


@pytest.mark.parametrize(
    ("content", "line"), UNTERMINATED_QUOTES.values(), ids=UNTERMINATED_QUOTES.keys()
)
@pytest.mark.parametrize("vectorized_from", [0, 1 << 40], ids=["duckdb", "python"])
def test_an_unterminated_quote_is_an_error_where_its_value_starts(
    tmp_path: Path, content: bytes, line: int, vectorized_from: int
) -> None:
    path = write(tmp_path, "quote.csv", content)
    with pytest.raises(ProjectError, match="never closed") as caught:
        sniff_csv(path, vectorized_from=vectorized_from)
    assert (caught.value.path, caught.value.line) == (str(path), line)


@pytest.mark.parametrize("vectorized_from", [0, 1 << 40], ids=["duckdb", "python"])
def test_quotes_that_close_are_no_error(tmp_path: Path, vectorized_from: int) -> None:
    content = b'id,name\n1,"a\nb"\n2,"x"y\n3, "z\n4,""\n5,"say ""hi"""'
    table = sniff_csv(write(tmp_path, "q.csv", content), vectorized_from=vectorized_from)
    assert table == SeedTable((Column("id", "bigint"), Column("name", "text")), 5)


# -- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"\nid,name\n1,a\n", b"\r\nid\r\n1\r\n", b" \nid\n1\n", b"\xef\xbb\xbf\nid\n1\n", b"\n"],
    ids=["blank", "crlf", "spaces", "bom", "only_a_blank_line"],
)
@pytest.mark.parametrize("vectorized_from", [0, 1 << 40], ids=["duckdb", "python"])
def test_a_blank_header_line_is_an_error_at_line_1(
    tmp_path: Path, content: bytes, vectorized_from: int
) -> None:
    path = write(tmp_path, "blank.csv", content)
    with pytest.raises(ProjectError, match=r"the header \(line 1\) is blank") as caught:
        sniff_csv(path, vectorized_from=vectorized_from)
    assert (caught.value.path, caught.value.line) == (str(path), 1)


def test_yaml_types_and_missing_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "agency_types.yml",
        """\
# description: agency types
# unique: code
- code: 1
  name: City
  ratio: 0.5
  active: true
  since: 2020-01-01
  at: 2020-01-01 10:00:00
  at_tz: 2020-01-01 10:00:00+02:00
  meta: {a: 1}
  country: NO
  zip: 012
- code: 2
  name: County
  ratio: 2
  tags: [x, y]
  active: False
  since: 2021-06-30
  country: yes
  zip: 345
""",
    )
    table, rows = read_yaml_seed(path)
    assert table.rows == 2
    assert types(table) == {
        "code": "bigint",
        "name": "text",
        "ratio": "double",  # 0.5 and 2 mixed
        "active": "boolean",
        "since": "date",
        "at": "timestamp",
        "at_tz": "timestamptz",
        "meta": "json",
        "country": "text",  # YAML 1.1 would read NO/yes as booleans
        "zip": "text",  # and 012 as an octal 10
        "tags": "json",
    }
    first, second = rows
    assert first[:6] == (1, "City", 0.5, True, dt.date(2020, 1, 1), dt.datetime(2020, 1, 1, 10))
    assert first[6] == dt.datetime(2020, 1, 1, 8, tzinfo=dt.UTC)
    assert first[7:] == ('{"a": 1}', "NO", "012", None)  # tags missing: NULL
    assert second[2] == 2.0 and isinstance(second[2], float)
    assert second[5:8] == (None, None, None)
    assert second[8:] == ("yes", "345", '["x", "y"]')


def test_yaml_mixed_with_text_becomes_text(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yml", "- {v: 1}\n- {v: abc}\n- {v: true}\n- {v: 2024-01-01}\n")
    table, rows = read_yaml_seed(path)
    assert types(table) == {"v": "text"}
    assert rows == [("1",), ("abc",), ("true",), ("2024-01-01",)]


def test_yaml_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "o.yml", "- {id: 1, amount: 3, day: 2024-01-01}\n")
    table, rows = read_yaml_seed(
        path, overrides={"id": "text", "amount": "numeric", "day": "timestamp"}
    )
    assert types(table) == {"id": "text", "amount": "numeric", "day": "timestamp"}
    assert rows == [("1", Decimal(3), dt.datetime(2024, 1, 1))]
    with pytest.raises(ProjectError, match="unknown type 'int4'"):
        read_yaml_seed(path, overrides={"id": "int4"})
    with pytest.raises(ProjectError, match="which is not a boolean") as caught:
        read_yaml_seed(path, overrides={"amount": "boolean"})
    assert caught.value.line == 1


@pytest.mark.parametrize(
    ("content", "found", "line"),
    [
        ("a: 1\nb: 2\n", "found a mapping", 1),
        ("just text\n", "found a str", 1),
        ("", "the file is empty", 1),
        ("# tags: api\n# no rows yet\n", "the file has only comments", 1),
        ("[]\n", "the list is empty", 1),
        ("# tags: api\n[]\n", "the list is empty", 2),
        ("{}\n", "an empty mapping", 1),
        ("# tags: api\n{}\n", "an empty mapping", 2),
        ("- {a: 1}\n- 2\n", "this item is a int", 2),
        ("- {a: 1}\n- [1, 2]\n", "this item is a list", 2),
        ("- {1: x}\n", "column names must be text", 1),
        ("- {a: 1}\n- {a: [\n", "not valid YAML", 3),
        ("- {a: 1, A: 2}\n", "'A' appears twice", 1),
        ("- {a: 1}\n- {b: 2}\n- {B: 3}\n", "'B' appears twice", 3),
        ('- {a: 1, " ": 2}\n', "key 2 has an empty name", 1),
        ("- id: 1\n  name: a\n  name: b\n", r"'name' appears twice .*\(lines 2 and 3\)", 3),
        ("- {id: 1}\n- {id: 2, id: 3}\n", "'id' appears twice", 2),
        ("- id: 1\n  name: a\0b\n", "a NUL byte is not allowed in YAML", 2),
        ('- id: 1\n  name: "a\0b"\n', "a NUL byte is not allowed in YAML", 2),
        ('- id: 1\n- id: 2\n  name: "a\\0b"\n', "column 'name' has .*, with a NUL character", 2),
        ('- id: 1\n- {id: 2, note: "\\x00"}\n', "with a NUL character", 2),
        ('- id: 1\n- {id: 2, "a\\0": 1}\n', "column name .* has a NUL character", 2),
    ],
)
def test_yaml_bad_shape(tmp_path: Path, content: str, found: str, line: int | None) -> None:
    path = write(tmp_path, "bad.yml", content)
    with pytest.raises(ProjectError, match=found) as caught:
        read_yaml_seed(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line


def test_yaml_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "l.yml", "- {city: Paris}\n- {city: Montr\xe9al}\n".encode("latin-1"))
    with pytest.raises(ProjectError, match="not UTF-8") as caught:
        read_yaml_seed(path)
    assert caught.value.line == 2


# -- multi-table YAML -----------------------------------------------------------------------

LOOKUPS = """\
# description: lookups
# tags: api
Agency_Types:
  - {code: 1, name: City}
  - {code: 2, name: County, since: 2020-01-01}
states:
  - abbr: OR
    fips: 041
  - abbr: WA
    fips: 053
"""


@pytest.mark.unit
def test_yaml_tables_one_per_key(tmp_path: Path) -> None:
    path = write(tmp_path, "lookup_tables.yaml", LOOKUPS)
    tables = yaml_tables(path, LOOKUPS)
    assert tables is not None
    assert [(t.key, t.name, t.line) for t in tables] == [
        ("Agency_Types", "agency_types", 3),
        ("states", "states", 6),
    ]
    head = "# description: lookups\n# tags: api\n"
    agency_types, states = tables
    assert agency_types.text.startswith(head) and states.text.startswith(head)
    assert "County" in agency_types.text and "OR" not in agency_types.text
    assert "OR" in states.text and "County" not in states.text
    table, rows = read_yaml_seed(path, table="Agency_Types")
    assert types(table) == {"code": "bigint", "name": "text", "since": "date"}
    assert rows == [(1, "City", None), (2, "County", dt.date(2020, 1, 1))]
    table, rows = read_yaml_seed(path, table="states", overrides={"abbr": "text"})
    assert types(table) == {"abbr": "text", "fips": "text"}  # a leading zero keeps it text
    assert rows == [("OR", "041"), ("WA", "053")]


@pytest.mark.unit
@pytest.mark.parametrize("content", ["- {a: 1}\n", "", "just text\n", "[]\n", "{}\n", "- {a: [\n"])
def test_yaml_tables_none_for_a_single_table(content: str) -> None:
    """Anything but a top-level mapping is a single-table seed (read_yaml_seed judges it)."""
    assert yaml_tables("t.yml", content) is None


@pytest.mark.unit
def test_a_table_reading_an_anchor_elsewhere_hashes_the_whole_file() -> None:
    content = "a:\n  - &row {x: 1}\nb:\n  - *row\nc:\n  - {x: 2}\n"
    tables = yaml_tables("t.yml", content)
    assert tables is not None
    a, b, c = (t.text for t in tables)
    assert a == "a:\n  - &row {x: 1}\n" and c == "c:\n  - {x: 2}\n"
    assert b == content  # an edit of a's row changes b's rows too


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        ("a:\n  - {x: 1}\n1st:\n  - {x: 2}\n", "key '1st' is not a table name", 3),
        ("a b:\n  - {x: 1}\n", "key 'a b' is not a table name", 1),
        ("true:\n  - {x: 1}\n", "key 'true' is not a table name", 1),
        ("[a]:\n  - {x: 1}\n", "key a list is not a table name", 1),
        ("a:\n  - {x: 1}\nb: []\n", "table b has no rows", 3),
        ("a:\n  - {x: 1}\nb: 1\n", "table b must be a list of mappings", 3),
        ("a:\n  - {x: 1}\nb:\n", "found null", 3),
        ("a:\n  x: 1\n", "found a mapping", 1),
        ("a:\n  - {x: 1}\n  - [1, 2]\n", "this item is a list", 3),
        ("a:\n  - {x: 1}\nA:\n  - {x: 2}\n", "table a appears twice (lines 1 and 3", 3),
        ("a:\n  - {x: 1}\nb:\n  - {x: [\n", "not valid YAML", 5),
    ],
)
def test_yaml_tables_bad_input_names_file_and_line(content: str, message: str, line: int) -> None:
    with pytest.raises(ProjectError) as caught:
        yaml_tables("lookups/t.yml", content)
    assert message in str(caught.value)
    assert caught.value.path == "lookups/t.yml" and caught.value.line == line


@pytest.mark.unit
def test_a_table_of_a_multi_table_file_is_typed_with_lines_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yml", "a:\n  - {x: 1}\nb:\n  - {y: true}\n  - {y: 2}\n")
    with pytest.raises(ProjectError, match="'y' has 2, which is not a boolean") as caught:
        read_yaml_seed(path, table="b", overrides={"y": "boolean"})
    assert caught.value.line == 5
    with pytest.raises(ProjectError, match="no table c"):
        read_yaml_seed(path, table="c")


@pytest.mark.parametrize("day", ["2024-02-30", "2024-13-01", "2024-01-01 25:00:00"])
def test_yaml_a_date_that_is_no_day_is_text_as_in_a_csv_seed(tmp_path: Path, day: str) -> None:
    path = write(tmp_path, "d.yml", f"- {{id: 1, day: {day}}}\n- {{id: 2, day: 2024-01-31}}\n")
    table, rows = read_yaml_seed(path)
    assert types(table) == {"id": "bigint", "day": "text"}
    assert rows == [(1, day), (2, "2024-01-31")]
    csv_path = write(tmp_path, "d.csv", f"id,day\n1,{day}\n2,2024-01-31\n")
    assert types(sniff_csv(csv_path)) == types(table)


@pytest.mark.unit
def test_a_column_twice_in_one_table_fails_that_table_only(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yml", "a:\n  - {x: 1}\nb:\n  - {y: 1}\n  - {y: 2, y: 3}\n")
    assert read_yaml_seed(path, table="a") == (SeedTable((Column("x", "bigint"),), 1), [(1,)])
    with pytest.raises(ProjectError, match="key 'y' appears twice") as caught:
        read_yaml_seed(path, table="b")
    assert caught.value.line == 5


# -- the vectorized (DuckDB) typing of large files agrees with the reference pass ------------

VECTORIZED_CASES = {
    "ints_decimals_dates_text": 'id,amount,day,label,empty\n1,1.50,2024-01-02,a,\n-7,3,2023-12-28,"b, c",\n',
    "quoted_newline": 'id,note\n1,"two\nlines"\n2,x\n',
    "leading_zeros": "code,n\n007,1\n010,2\n",
    "mixed_needing_reference": "v\n1\n1e5\n2024-02-30\ntrue\n",
    "timestamps": "t\n2024-01-01 10:00\n2024-01-02T11:30:00\n",
    # where DuckDB's reader and Python's csv part ways, the reference pass decides:
    "trailing_empty_values": "a,b\n1,2,\n3,4,,\n",
    "empty_last_values": "a,b\n1,\n3,4\n",
    "spaces_around_quotes": 'a,b\n1, "5"\n2,"5" \n',
    "spaces_before_an_empty_quoted_value": 'a,b\n1, ""\n2,3\n',
    "escaped_quote_after_a_comma": 'n,note\n1,"He said, ""hi"" to me"\n2,x\n',
    "unterminated_quote_at_the_end": 'a,b\n1,2\n"3',
    "unterminated_quote_after_a_quoted_line_break": 'a,b\n1,"x\ny"\n2,"3\n',
    "quoted_line_break_and_an_empty_last_value": 'a,b\n1,"x\ny"\n2,\n',
    "quoted_line_break_and_extra_empty_values": 'a,b\n1,"x\ny"\n2,,\n',
    "quoted_line_break_and_a_short_row": 'a,b\n1,"x\ny"\n2\n',
    "control_byte_as_a_value": "a,b\n1,\x01\n",
    "nul_byte": "a,b\n1,x\x00y\n",
}


@pytest.mark.parametrize("content", VECTORIZED_CASES.values(), ids=VECTORIZED_CASES.keys())
def test_vectorized_typing_agrees_with_the_reference(tmp_path: Path, content: str) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(content, newline="")
    assert outcome(path, vectorized_from=0) == outcome(path, vectorized_from=1 << 40)


def outcome(path: Path, **options: Any) -> SeedTable | tuple[str, int | None]:
    """The typed table, or the error's message and line."""
    try:
        return sniff_csv(path, **options)
    except ProjectError as exc:
        return exc.message, exc.line


def test_vectorized_typing_reads_every_column_as_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "seed.csv", b"a,b\n1,x\n2,\xe9\n")  # b: never checked, still read
    with pytest.raises(ProjectError, match="not UTF-8") as caught:
        sniff_csv(path, vectorized_from=0)
    assert caught.value.line == 3


def test_vectorized_typing_agrees_with_the_reference_on_generated_files(tmp_path: Path) -> None:
    rng = random.Random(7)
    values = ["1", "007", "-5", "+5", "1.5", ".5", "1e5", "true", "FALSE", "yes", "2024-01-02",
              "2024-02-30", "2024-01-02 03:04", "abc", "", '""', '"x,y"', '"a\nb"', ' "5"',
              '"5" ', 'x"y', "9223372036854775808", "1.12345678901", " 5", '"1"']  # fmt: skip
    path = tmp_path / "seed.csv"
    for _ in range(150):
        width = rng.randrange(1, 4)
        lines = [",".join(f"c{i}" for i in range(width))]
        for _ in range(rng.randrange(0, 10)):
            count = width if rng.random() < 0.9 else rng.choice([width - 1, width + 1])
            lines.append(",".join(rng.choice(values) for _ in range(count)))
        newline = rng.choice(["\n", "\r\n"])
        path.write_text(newline.join(lines) + newline * (rng.random() < 0.8), newline="")
        expected = outcome(path, vectorized_from=1 << 40)
        assert outcome(path, vectorized_from=0) == expected, path.read_bytes()


def test_vectorized_typing_falls_back_for_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ProjectError, match="row has 1 values, header has 2") as err:
        sniff_csv(path, vectorized_from=0)
    assert err.value.line == 3
    path.write_text("a,b\n1,2\n\n3,4\n")
    with pytest.raises(ProjectError, match="row has 0 values") as err:
        sniff_csv(path, vectorized_from=0)
    assert err.value.line == 3


@pytest.mark.parametrize("ascii_only", [True, False], ids=["ascii_file", "utf8_file"])
def test_the_duckdb_rules_type_every_value_as_the_reference_does(ascii_only: bool) -> None:
    values = [v for v in TRICKY_VALUES if v.isascii() or not ascii_only]
    sql = seeds._kind_sql("v", ascii_only=ascii_only)
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
        con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
        bits = dict(con.execute(f"SELECT i, {sql} FROM t").fetchall())
    unsure = []
    for i, value in enumerate(values):
        if bits[i] == seeds._UNSURE:  # a digit beyond ASCII: left to Python
            unsure.append(value)
        else:
            assert bits[i] == seeds._BIT[seeds._text_type(value)], value
    assert all(not value.isascii() for value in unsure)
    assert len(unsure) == (0 if ascii_only else 7)


def test_a_value_that_passes_a_fast_check_keeps_the_column_at_its_type() -> None:
    with duckdb.connect() as con:
        for kind, pattern in seeds._FAST_FITS_SQL.items():
            for value in TRICKY_VALUES:
                fits = bool(seeds._FAST_FITS[kind](value))
                (in_duckdb,) = con.execute(  # type: ignore[misc]
                    f"SELECT regexp_full_match(?, '{pattern}')", [value]
                ).fetchone()
                assert fits == in_duckdb, (kind, value)
                assert not fits or seeds._join(kind, seeds._text_type(value)) == kind, value


def tricky_file(path: Path, rng: random.Random, columns: list[list[str]], rows: int) -> Path:
    """A CSV whose columns draw from the given value pools (some values empty)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator=rng.choice(["\n", "\r\n"]))
        writer.writerow([f"c{i}" for i in range(len(columns))])
        for _ in range(rows):
            writer.writerow([rng.choice(pool) if rng.random() < 0.9 else "" for pool in columns])
    return path


def test_files_of_every_type_are_typed_as_the_reference_types_them(tmp_path: Path) -> None:
    rng = random.Random(16)
    pools = list(TYPED_POOLS.values())
    path = tricky_file(tmp_path / "typed.csv", rng, pools, 400)
    expected = outcome(path, vectorized_from=1 << 40)
    assert isinstance(expected, SeedTable)
    assert [c.type for c in expected.columns] == list(TYPED_POOLS)
    assert outcome(path, vectorized_from=0) == expected
    guess = guess_csv(path, vectorized_from=0)
    assert guess is not None and outcome(path, vectorized_from=0, guess=guess) == expected
    for kind, pool in TYPED_POOLS.items():  # one odd value in a column of each type
        for odd in rng.sample(TRICKY_VALUES, 12):
            path = tricky_file(tmp_path / "odd.csv", rng, [pool], 50)
            with path.open("a", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow([odd])
            expected = outcome(path, vectorized_from=1 << 40)
            assert outcome(path, vectorized_from=0) == expected, (kind, odd)
            guess = guess_csv(path, vectorized_from=0)
            if guess is not None:
                assert outcome(path, vectorized_from=0, guess=guess) == expected, (kind, odd)


def test_mixed_columns_of_tricky_values_are_typed_as_the_reference_types_them(
    tmp_path: Path,
) -> None:
    rng = random.Random(4)
    path = tmp_path / "mixed.csv"
    for _ in range(60):
        pools = []
        for _ in range(rng.randrange(1, 5)):
            pool = rng.choice(list(TYPED_POOLS.values()))
            pools.append(pool + rng.sample(TRICKY_VALUES, rng.randrange(0, 3)))
        tricky_file(path, rng, pools, rng.randrange(0, 30))
        expected = outcome(path, vectorized_from=1 << 40)
        assert outcome(path, vectorized_from=0) == expected, path.read_bytes()[:2000]
        guess = guess_csv(path, vectorized_from=0)
        if guess is not None:
            assert outcome(path, vectorized_from=0, guess=guess) == expected


# -- large files: types guessed from the head and tail, then checked in full ----------------

SURPRISES = {  # a value in the middle of the file that the head and tail do not predict
    "late_decimal_in_int": ("code", "2.5", "numeric"),
    "late_leading_zero": ("code", "007", "text"),
    "late_text_in_decimal": ("amount", "n/a", "text"),
    "late_non_date": ("day", "2024-02-30", "text"),
    "late_yes_in_boolean": ("flag", "yes", "text"),
    "late_exponent_in_int": ("code", "1e5", "double"),
    "late_bigint_beyond_fast_check": ("code", "9223372036854775807", "bigint"),
    "late_integer_beyond_int64": ("code", "9223372036854775808", "numeric"),
    "late_timestamp_in_date": ("day", "2024-01-02 03:04", "timestamp"),
    "sparse_integer": ("sparse", "5", "bigint"),
    "sparse_date": ("sparse", "2024-01-31", "date"),
    "sparse_decimal": ("sparse", "1.25", "numeric"),
    "sparse_boolean": ("sparse", "TRUE", "boolean"),
    "sparse_text": ("sparse", "x", "text"),
    "no_surprise": ("label", "l1", "text"),
}


def big_csv(
    path: Path,
    rows: int,
    surprise: tuple[str, str] | None = None,
    *,
    newline: str = "\n",
    bom: bool = False,
    quoted_newline: bool = False,
) -> Path:
    """A CSV of ``rows`` regular rows; ``surprise`` (column, value) replaces one value in
    the middle, far from the head and the tail that predict the types."""
    return write_big_csv(
        path,
        rows,
        {rows // 2: dict([surprise])} if surprise is not None else None,
        newline=newline,
        bom=bom,
        quoted=f"line one{newline}line two" if quoted_newline else None,
    )


def reference(path: Path) -> SeedTable:
    """The one-pass Python reader's answer, whatever the file's size."""
    return sniff_csv(path, vectorized_from=1 << 40)


@pytest.mark.parametrize("surprise", SURPRISES.values(), ids=SURPRISES.keys())
def test_a_surprise_the_samples_miss_is_typed_as_the_reference_types_it(
    tmp_path: Path, surprise: tuple[str, str, str]
) -> None:
    column, value, expected = surprise
    path = big_csv(tmp_path / "big.csv", 25_000, (column, value))
    assert path.stat().st_size > 3 * SAMPLE_BYTES
    guess = guess_csv(path, vectorized_from=0)
    assert guess is not None
    expected_table = reference(path)
    assert types(expected_table)[column] == expected
    at = path.read_bytes().index(f"\n{25_000 // 2},".encode())
    assert SAMPLE_BYTES < at < path.stat().st_size - SAMPLE_BYTES  # the samples miss it
    assert sniff_csv(path, vectorized_from=0, guess=guess) == expected_table
    assert sniff_csv(path, vectorized_from=0) == expected_table


@pytest.mark.parametrize(
    "shape",
    [
        {"bom": True},
        {"newline": "\r\n"},
        {"quoted_newline": True},
        {"bom": True, "newline": "\r\n"},
    ],
    ids=["bom", "crlf", "quoted_newlines", "bom_crlf"],
)
def test_large_files_of_every_shape_are_typed_as_the_reference_types_them(
    tmp_path: Path, shape: dict[str, Any]
) -> None:
    for surprise in (None, ("code", "2.5"), ("sparse", "7")):
        path = big_csv(tmp_path / "big.csv", 25_000, surprise, **shape)
        expected = reference(path)
        assert expected.columns[0].name == "id"  # the BOM is not part of the name
        assert sniff_csv(path, vectorized_from=0) == expected
        guess = guess_csv(path, vectorized_from=0)
        assert guess is not None and sniff_csv(path, vectorized_from=0, guess=guess) == expected


def test_the_tail_widens_the_guess(tmp_path: Path) -> None:
    path = big_csv(tmp_path / "big.csv", 25_000)
    with path.open("a") as f:
        f.write("25000,1.5,2024-01-01 10:00,true,3.25,,l0\n")
    guess = guess_csv(path, vectorized_from=0)
    assert guess is not None
    assert types(SeedTable(guess.columns, 0)) == {
        "id": "bigint",
        "amount": "numeric",
        "day": "timestamp",
        "flag": "boolean",
        "code": "numeric",
        "sparse": "text",
        "label": "text",
    }
    assert guess.head[4] == "bigint" and guess.head[5] is None
    assert sniff_csv(path, vectorized_from=0, guess=guess) == reference(path)


def test_no_guess_for_small_files_overrides_or_a_malformed_head(tmp_path: Path) -> None:
    path = big_csv(tmp_path / "big.csv", 25_000)
    assert guess_csv(path) is None  # under VECTORIZED_FROM_BYTES
    assert guess_csv(path, vectorized_from=0, overrides={"code": "text"}) is None
    assert guess_csv(write(tmp_path, "ragged.csv", "a,b\n1,2\n3\n4,5\n"), vectorized_from=0) is None
    assert guess_csv(write(tmp_path, "dup.csv", "a,A\n1,2\n"), vectorized_from=0) is None
    assert guess_csv(write(tmp_path, "latin1.csv", b"a\n\xe9\n"), vectorized_from=0) is None


def test_a_guess_for_another_header_is_ignored(tmp_path: Path) -> None:
    path = big_csv(tmp_path / "big.csv", 25_000, ("code", "2.5"))
    guess = guess_csv(path, vectorized_from=0)
    assert guess is not None
    other = replace(guess, columns=tuple(Column(c.name.upper(), c.type) for c in guess.columns))
    assert sniff_csv(path, vectorized_from=0, guess=other) == reference(path)


def test_a_guess_for_an_earlier_version_of_the_file_is_ignored(tmp_path: Path) -> None:
    path = big_csv(tmp_path / "big.csv", 25_000)
    guess = guess_csv(path, vectorized_from=0)
    assert guess is not None and guess.head[6] == "text"
    header, rows = path.read_text().split("\n", 1)
    path.write_text(header + "\n" + rows.replace(",l", ",1"))  # the labels are numbers now
    assert types(sniff_csv(path, vectorized_from=0, guess=guess))["label"] == "bigint"
    assert sniff_csv(path, vectorized_from=0, guess=guess) == reference(path)


def test_errors_in_a_large_file_name_its_line(tmp_path: Path) -> None:
    path = big_csv(tmp_path / "big.csv", 25_000, ("code", "1,2"))  # one value too many
    guess = guess_csv(path, vectorized_from=0)
    assert guess is not None  # the head is fine
    with pytest.raises(ProjectError, match="row has 8 values, header has 7") as caught:
        sniff_csv(path, vectorized_from=0, guess=guess)
    assert caught.value.line == 12_502  # the header, then row 12,500 counted from 0
    path = big_csv(tmp_path / "big.csv", 25_000, ("label", "a\0b"))  # DuckDB is not asked
    for vectorized_from in (0, 1 << 40):
        with pytest.raises(ProjectError, match="a NUL byte") as caught:
            sniff_csv(path, vectorized_from=vectorized_from)
        assert caught.value.line == 12_502
    path = big_csv(tmp_path / "big.csv", 25_000, ("label", '"open'))  # far beyond csv's limit
    for vectorized_from in (0, 1 << 40):
        with pytest.raises(ProjectError, match="never closed") as caught:
            sniff_csv(path, vectorized_from=vectorized_from)
        assert caught.value.line == 12_502
    path = big_csv(tmp_path / "big.csv", 25_000)
    with path.open("ab") as f:  # and one in the last value of the last row
        f.write(b'1,2,2024-01-01,true,3,,"open\n')
    for vectorized_from in (0, 1 << 40):
        with pytest.raises(ProjectError, match="never closed") as caught:
            sniff_csv(path, vectorized_from=vectorized_from)
        assert caught.value.line == 25_002
    path = big_csv(tmp_path / "big.csv", 25_000)
    with path.open("ab") as f:
        f.write(b"1,2,2024-01-01,true,3,,\xe9\n")
    with pytest.raises(ProjectError, match="not UTF-8") as caught:
        sniff_csv(path, vectorized_from=0)
    assert caught.value.line == 25_002
