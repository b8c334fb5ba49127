"""Loading a CSV seed while it is typed: ``Session.load_csv_typing`` on both targets, and
builds of seeds large enough to be loaded with guessed types (``seeds.guess_csv``).

Whatever the guess, the table ends with the types the reference pass gives, the file's
rows, and errors that name the file and line; a failure publishes nothing.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from dbluigi.errors import ProjectError
from dbluigi.seeds import VECTORIZED_FROM_BYTES, guess_csv, sniff_csv
from dbluigi.targets import Column, Session, open_target
from tests.buildkit import ROOT, build_json, cli_process, query
from tests.helpers import TYPED_POOLS, write_big_csv

TARGET_TYPES = {  # information_schema.columns.data_type of each portable type
    "postgresql": {"bigint": "bigint", "numeric": "numeric", "date": "date", "text": "text",
                   "boolean": "boolean", "double": "double precision"},
    "duckdb": {"bigint": "BIGINT", "numeric": "DECIMAL(38,10)", "date": "DATE", "text": "VARCHAR",
               "boolean": "BOOLEAN", "double": "DOUBLE"},
}  # fmt: skip

COLUMNS_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position"
)


def loaded_types(session: Session, schema: str, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in session.query(COLUMNS_SQL, (schema, table)).rows]


def expected_types(target: str, columns: Sequence[Column]) -> list[tuple[str, str]]:
    return [(c.name, TARGET_TYPES[target][c.type]) for c in columns]


# -- Session.load_csv_typing ------------------------------------------------------------------

CODES = "id,code\n1,12\n2,007\n3,\n"


def test_a_right_guess_is_kept(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text("id,code\n1,12\n2,7\n")
    columns = (Column("id", "bigint"), Column("code", "bigint"))
    with session.transaction():
        assert session.load_csv_typing("s", "t", path, columns, lambda: columns) == 2
    assert loaded_types(session, "s", "t") == expected_types(session.target.name, columns)
    assert list(session.query("SELECT id, code FROM s.t ORDER BY id").rows) == [(1, 12), (2, 7)]


def test_a_guess_the_database_takes_but_typing_rejects_is_loaded_again(
    session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(CODES)  # PostgreSQL reads 007 into a bigint as 7
    guess = (Column("id", "bigint"), Column("code", "bigint"))
    typed = (Column("id", "bigint"), Column("code", "text"))
    with session.transaction():
        assert session.load_csv_typing("s", "t", path, guess, lambda: typed) == 3
    assert loaded_types(session, "s", "t") == expected_types(session.target.name, typed)
    rows = session.query("SELECT id, code FROM s.t ORDER BY id").rows
    assert list(rows) == [(1, "12"), (2, "007"), (3, None)]


def test_a_guess_that_fails_to_load_is_loaded_again(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text("id,code\n1,12\n2,n/a\n")
    guess = (Column("id", "bigint"), Column("code", "numeric"))
    typed = (Column("id", "bigint"), Column("code", "text"))
    with session.transaction():
        assert session.load_csv_typing("s", "t", path, guess, lambda: typed) == 2
        session.execute("CREATE TABLE s.after_the_load AS SELECT 1 AS ok")  # still usable
    assert loaded_types(session, "s", "t") == expected_types(session.target.name, typed)
    assert list(session.query("SELECT code FROM s.t ORDER BY id").rows) == [("12",), ("n/a",)]


def test_loads_one_after_another_in_one_transaction(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(CODES)
    guess = (Column("id", "bigint"), Column("code", "bigint"))
    typed = (Column("id", "bigint"), Column("code", "text"))
    with session.transaction():
        assert session.load_csv_typing("s", "t", path, guess, lambda: typed) == 3
        assert session.load_csv_typing("s", "u", path, typed, lambda: typed) == 3
        assert session.load_csv_typing("s", "v", path, guess, lambda: typed) == 3
    for table in ("t", "u", "v"):
        assert loaded_types(session, "s", table) == expected_types(session.target.name, typed)
        rows = session.query(f"SELECT id, code FROM s.{table} ORDER BY id").rows
        assert list(rows) == [(1, "12"), (2, "007"), (3, None)]


def test_without_a_transaction(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(CODES)
    guess = (Column("id", "bigint"), Column("code", "bigint"))
    typed = (Column("id", "bigint"), Column("code", "text"))
    assert session.load_csv_typing("s", "t", path, guess, lambda: typed) == 3
    assert session.query("SELECT code FROM s.t WHERE id = 2").rows == (("007",),)


def test_what_typing_raises_is_raised_and_nothing_is_left(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(CODES)

    def typing() -> Sequence[Column]:
        raise ProjectError("row has 3 values, header has 2", path="seed.csv", line=7)

    guess = (Column("id", "bigint"), Column("code", "text"))
    with pytest.raises(ProjectError) as caught, session.transaction():
        session.load_csv_typing("s", "t", path, guess, typing)
    assert caught.value.line == 7
    assert session.relation_kind("s", "t") is None


def test_a_load_that_fails_with_the_typed_columns_raises_the_database_error(
    session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "seed.csv"
    path.write_text("id\n1\nx\n")
    columns = (Column("id", "bigint"),)
    with pytest.raises(Exception) as caught, session.transaction():
        session.load_csv_typing("s", "t", path, columns, lambda: columns)
    assert session.classify(caught.value) == "runtime"
    assert session.relation_kind("s", "t") is None


# -- builds of large seeds ----------------------------------------------------------------------

ROWS = 120_000  # about 4.6 MB: loaded with guessed types


def big_seed(path: Path, surprises: dict[int, dict[str, str]] | None = None, **shape: bool) -> Path:
    """A seed past ``VECTORIZED_FROM_BYTES``; ``surprises`` replace values of some rows,
    by row number, in the middle of the file, where neither sample looks."""
    write_big_csv(
        path,
        ROWS,
        surprises,
        newline="\r\n" if shape.get("crlf") else "\n",
        bom=bool(shape.get("bom")),
        quoted="two\nlines, quoted" if shape.get("quoted") else None,
    )
    assert path.stat().st_size > VECTORIZED_FROM_BYTES
    return path


MIDDLE = ROWS // 2
CASES = {
    # PostgreSQL's COPY takes 007 into the guessed bigint, and the guessed text column
    # takes anything: only the typing pass says they are text and bigint
    "guess_loads_but_is_wrong": {MIDDLE: {"code": "007"}, MIDDLE + 1: {"sparse": "5"}},
    # n/a breaks the COPY into the guessed numeric column
    "guess_fails_to_load": {MIDDLE: {"amount": "n/a"}, MIDDLE + 2: {"day": "2024-02-30"}},
    "late_decimal_and_exponent": {MIDDLE: {"code": "2.5"}, MIDDLE + 3: {"amount": "1e5"}},
    "no_surprise": {},
}


@pytest.mark.parametrize("surprises", CASES.values(), ids=CASES.keys())
def test_a_large_seed_loads_with_the_reference_types(
    tmp_path: Path, target_url: str, surprises: dict[int, dict[str, str]]
) -> None:
    path = big_seed(tmp_path / "raw" / "events.csv", surprises)
    reference = sniff_csv(path, vectorized_from=1 << 40)
    guess = guess_csv(path)
    assert guess is not None
    assert (guess.columns != reference.columns) == bool(surprises)
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert payload["tasks"][0]["rows"] == ROWS
    name = "postgresql" if target_url.startswith("postgresql") else "duckdb"
    loaded = query(target_url, tmp_path, COLUMNS_SQL, ["raw", "events"])
    assert loaded == expected_types(name, reference.columns)
    types = {c.name: c.type for c in reference.columns}
    for row, values in surprises.items():
        for column, value in values.items():
            if types[column] in ("text", "bigint"):  # read back as written
                sql = f"SELECT CAST({column} AS TEXT) FROM raw.events WHERE id = %s"
                assert query(target_url, tmp_path, sql, [row]) == [(value,)]


@pytest.mark.parametrize(
    "shape",
    [{"bom": True, "crlf": True}, {"quoted": True}],
    ids=["bom_crlf", "quoted_line_breaks"],
)
def test_large_seeds_of_every_shape(
    tmp_path: Path, target_url: str, shape: dict[str, bool]
) -> None:
    path = big_seed(tmp_path / "raw" / "events.csv", {MIDDLE: {"code": "2.5"}}, **shape)
    reference = sniff_csv(path, vectorized_from=1 << 40)
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    name = "postgresql" if target_url.startswith("postgresql") else "duckdb"
    assert query(target_url, tmp_path, COLUMNS_SQL, ["raw", "events"]) == expected_types(
        name, reference.columns
    )
    code_, label = query(
        target_url, tmp_path, "SELECT code, label FROM raw.events WHERE id = %s", [MIDDLE]
    )[0]
    assert code_ == Decimal("2.5")
    if shape.get("quoted"):
        (label,) = query(target_url, tmp_path, "SELECT label FROM raw.events WHERE id = 0")[0]
        assert label == "two\nlines, quoted"  # the CRLF of the file is not part of a value


ERRORS = {  # values in the middle of the file, and what the error says (at row MIDDLE's line)
    "ragged_row": (
        {MIDDLE: {"label": "l1,extra"}, MIDDLE + 1: {"code": "007"}},
        "row has 8 values, header has 7",
    ),
    "nul_byte": ({MIDDLE: {"label": "l\0"}, MIDDLE + 1: {"code": "007"}}, "a NUL byte"),
    "unterminated_quote": ({MIDDLE: {"label": '"l1'}}, "never closed"),
}


@pytest.mark.parametrize(("surprises", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_an_error_in_a_large_seed_names_its_line_and_publishes_nothing(
    tmp_path: Path, target_url: str, surprises: dict[int, dict[str, str]], message: str
) -> None:
    path = big_seed(tmp_path / "raw" / "events.csv")
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    big_seed(path, surprises)
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert result["failure_class"] == "config" and result["file"] == "raw/events.csv"
    assert result["line"] == MIDDLE + 2  # the header is line 1, row 0 line 2
    assert message in result["error"]
    assert query(target_url, tmp_path, "SELECT count(*), max(code) FROM raw.events") == [
        (ROWS, 500)
    ]


def test_a_large_seed_past_its_timeout_publishes_nothing(tmp_path: Path, target_url: str) -> None:
    path = big_seed(tmp_path / "raw" / "events.csv")
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    big_seed(path, {MIDDLE: {"code": "007"}})
    (tmp_path / "dbluigi.toml").write_text('[project]\ntimeout = "30ms"\n')
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert payload["tasks"][0]["failure_class"] == "timeout", payload
    assert query(target_url, tmp_path, "SELECT max(code) FROM raw.events") == [(500,)]


@pytest.mark.postgres
def test_sigkill_after_a_second_load_leaves_the_published_seed(tmp_path: Path, pg_url: str) -> None:
    path = big_seed(tmp_path / "raw" / "events.csv")
    assert build_json(project=tmp_path, target=pg_url)[0] == 0
    big_seed(path, {MIDDLE: {"code": "007"}})  # guessed bigint, loaded again as text
    process = cli_process(
        "build",
        project=tmp_path,
        target=pg_url,
        env={"DBLUIGI_CRASHPOINT": "after_build:raw.events"},
    )
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert query(pg_url, tmp_path, "SELECT max(code) FROM raw.events") == [(500,)]
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 0, payload
    assert query(pg_url, tmp_path, "SELECT code FROM raw.events WHERE id = %s", [MIDDLE]) == [
        ("007",)
    ]


# -- every type, loaded: the DuckDB typing and the reference pass load the same rows ---------


def tricky_seed(path: Path, surprises: dict[str, str]) -> Path:
    """A large seed with a column of every type (values from ``TYPED_POOLS``, some empty),
    ``surprises`` (column -> value) written in the middle, where neither sample looks."""
    rng = random.Random(23)
    names = ["id", *(f"{kind}_col" for kind in TYPED_POOLS)]
    count = 36_000
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for i in range(count):
            row = {"id": str(i)}
            for kind, pool in TYPED_POOLS.items():
                row[f"{kind}_col"] = rng.choice(pool) if rng.random() < 0.9 else ""
            if i == count // 2:
                row.update(surprises)
            writer.writerow([row[name] for name in names])
    assert path.stat().st_size > VECTORIZED_FROM_BYTES
    return path


TRICKY_CASES = {
    "every_type": {},
    "a_date_in_a_timestamp_column": {"timestamp_col": "2024-03-31"},
    "a_timestamp_in_a_date_column": {"date_col": "2024-03-31 10:00:00.25"},
    "a_leading_zero_in_an_integer_column": {"bigint_col": "007"},
    "an_exponent_in_a_decimal_column": {"numeric_col": "1e5"},
    "no_zone_in_a_zoned_column": {"timestamptz_col": "2024-01-01 10:00"},
    "null_ish_text_in_a_boolean_column": {"boolean_col": "NULL"},
    "a_leap_day_that_is_not": {"date_col": "2023-02-29"},
}


@pytest.mark.parametrize("surprises", TRICKY_CASES.values(), ids=TRICKY_CASES.keys())
def test_every_type_loads_the_rows_the_reference_types_load(
    tmp_path: Path, target_url: str, surprises: dict[str, str]
) -> None:
    path = tricky_seed(tmp_path / "raw" / "events.csv", surprises)
    reference = sniff_csv(path, vectorized_from=1 << 40)
    assert sniff_csv(path) == reference  # typed by DuckDB
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    name = "postgresql" if target_url.startswith("postgresql") else "duckdb"
    types = {**TARGET_TYPES[name], "timestamp": "timestamp without time zone"}
    if name == "duckdb":
        types.update(timestamp="TIMESTAMP", timestamptz="TIMESTAMP WITH TIME ZONE")
    else:
        types.update(timestamptz="timestamp with time zone")
    loaded = query(target_url, tmp_path, COLUMNS_SQL, ["raw", "events"])
    assert loaded == [(c.name, types[c.type]) for c in reference.columns]
    session = open_target(target_url, project_dir=tmp_path).connect()
    try:
        session.ensure_schema("s")
        session.load_csv("s", "expected", path, reference.columns)
        for one, other in (("raw.events", "s.expected"), ("s.expected", "raw.events")):
            sql = f"SELECT count(*) FROM (SELECT * FROM {one} EXCEPT SELECT * FROM {other}) AS d"
            assert session.query(sql).rows == ((0,),)
        assert session.query("SELECT count(*) FROM raw.events").rows == ((reference.rows,),)
    finally:
        session.close()


def test_a_seed_typed_once_loads_again_without_typing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV's types depend on its content alone (with the project's overrides and
    dbluigi's version): a file typed once loads into another target, or again, without
    the typing pass; new content is typed anew."""
    from dbluigi import build

    seed = tmp_path / "raw" / "codes.csv"
    seed.parent.mkdir(parents=True)
    seed.write_text("id,code,amount\n1,007,1.5\n2,12,2\n")
    (tmp_path / "dbluigi.toml").write_text('[project]\nname = "typed"\n')

    def target(name: str) -> str:
        return f"duckdb:///{tmp_path / name}"

    assert build(tmp_path, target=target("a.duckdb")).ok
    assert (tmp_path / ".dbluigi" / "cache" / "seed-types.json").exists()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was typed again")

    monkeypatch.setattr("dbluigi.seeds.sniff_csv", refuse)
    monkeypatch.setattr("dbluigi.seeds.guess_csv", refuse)
    assert build(tmp_path, target=target("b.duckdb")).ok
    typed = query(target("b.duckdb"), tmp_path, COLUMNS_SQL, ["raw", "codes"])
    assert typed == query(target("a.duckdb"), tmp_path, COLUMNS_SQL, ["raw", "codes"])
    assert query(target("b.duckdb"), tmp_path, "select code from raw.codes order by id") == [
        ("007",),
        ("12",),
    ]

    seed.write_text("id,code,amount\n1,7,1.5\n")  # new content: typed anew
    assert not build(tmp_path, target=target("c.duckdb")).ok
    monkeypatch.undo()
    assert build(tmp_path, target=target("c.duckdb")).ok
    assert query(target("c.duckdb"), tmp_path, COLUMNS_SQL, ["raw", "codes"])[1] == (
        "code",
        TARGET_TYPES["duckdb"]["bigint"],
    )


def test_a_csv_seed_builds_without_sqlglot_yaml_or_rich(tmp_path: Path, target_url: str) -> None:
    """A build of CSV seeds writes its SQL as text: neither sqlglot nor YAML's parser is
    imported (a fifth of a second a command), nor rich when the output is ``--json``;
    the seed loads as ever, first typed, then with its types known."""
    big_seed(tmp_path / "raw" / "events.csv")
    (tmp_path / "raw" / "codes.csv").write_text("id,code,amount\n1,007,1.5\n2,12,\n")
    (tmp_path / "dbluigi.toml").write_text('[project]\nname = "lean"\n')
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted(n for n in ('sqlglot', 'yaml', 'rich') "
        "if n in sys.modules), file=sys.stderr))\n"
        "from dbluigi.cli import main\n"
        "sys.argv = ['dbluigi', *sys.argv[1:]]\n"
        "main()\n"
    )
    for attempt in ("typed", "types known"):
        command = ["build"] if attempt == "typed" else ["rebuild", "raw.events", "raw.codes"]
        args = [*command, "--json", "--project", str(tmp_path), "--target", target_url]
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip().splitlines()[-1] == "[]", (attempt, done.stderr)
        statuses = {task["model"]: task["status"] for task in json.loads(done.stdout)["tasks"]}
        assert statuses == {"raw.codes": "success", "raw.events": "success"}, attempt
    assert query(target_url, tmp_path, "select id, code, amount from raw.codes order by id") == [
        (1, "007", Decimal("1.5")),
        (2, "12", None),
    ]
    assert query(target_url, tmp_path, "select count(*) from raw.events") == [(ROWS,)]


# -- COPY in text format (PostgreSQL 15 and later) -------------------------------------------------

COPY_FILES = {
    # COPY's text format reads a backslash as an escape (``\N`` as ``N``); csv keeps it
    "backslashes": (
        b"id,path,marker\n1,C:\\temp\\new,\\N\n2,a\\,b\n",
        [(1, "C:\\temp\\new", "\\N"), (2, "a\\", "b")],
    ),
    "quotes": (b'id,path,marker\n1,"a, b",""\n2,x,"y"\n', [(1, "a, b", None), (2, "x", "y")]),
    "carriage_returns": (b"id,path,marker\r\n1,a,\r\n2,,b\r\n", [(1, "a", None), (2, None, "b")]),
    "plain": (
        b"id,path,marker\n1, spaced ,\xc3\xa9t\xc3\xa9\n2,,\n3,x,",
        [(1, " spaced ", "\u00e9t\u00e9"), (2, None, None), (3, "x", None)],
    ),
}


@pytest.mark.parametrize("content, rows", COPY_FILES.values(), ids=COPY_FILES.keys())
def test_a_csv_file_loads_as_written_whatever_copy_format_reads_it(
    session: Session, tmp_path: Path, content: bytes, rows: list[tuple[object, ...]]
) -> None:
    """An empty value is NULL, every other value is the text written, on both targets."""
    path = tmp_path / "seed.csv"
    path.write_bytes(content)
    columns = (Column("id", "bigint"), Column("path", "text"), Column("marker", "text"))
    with session.transaction():
        assert session.load_csv("s", "t", path, columns) == len(rows)
    assert list(session.query("SELECT id, path, marker FROM s.t ORDER BY id").rows) == rows


@pytest.mark.parametrize(
    "last_row, as_text",
    [
        (b"", True),
        (b"3,\n", True),
        (b'3,"a"\n', False),
        (b"3,a\\b\n", False),
        (b"3,a\r\n", False),
        (b"3,a\x00\n", False),
    ],
    ids=["plain", "empty_value", "quote", "backslash", "carriage_return", "nul"],
)
def test_a_file_is_literal_only_without_quote_backslash_carriage_return_or_nul(
    tmp_path: Path, last_row: bytes, as_text: bool
) -> None:
    """Text format parses faster on the server; it reads a file as csv does (an empty
    value NULL) only without quotes, backslashes, carriage returns and NUL bytes. The
    search leaves the stream where it found it, for the COPY to send."""
    from dbluigi.targets.base import is_literal

    path = tmp_path / "seed.csv"
    head = b"id,name\n" + b"1,a\n" * (1 << 18)  # 1 MiB: the last row is past the first block
    path.write_bytes(head + last_row)
    with path.open("rb") as stream:
        stream.read(3)
        assert is_literal(stream) is as_text
        assert stream.read(5) == b"name\n"


@pytest.mark.parametrize(
    "surprise, literal",
    [({}, True), ({"label": "C:\\new\\N"}, False), ({"label": '"a, b"'}, False), (None, False)],
    ids=["literal", "backslash", "quote", "crlf"],
)
def test_the_typing_pass_says_whether_a_large_file_is_literal(
    tmp_path: Path, surprise: dict[str, str] | None, literal: bool
) -> None:
    """Read anyway to be typed, a large file is searched for what makes COPY's text
    format read it otherwise (``Session.load_csv``'s ``literal``); a small one is not."""
    surprises = {MIDDLE: surprise or {}}
    path = big_seed(tmp_path / "big.csv", surprises, crlf=surprise is None)
    assert sniff_csv(path).literal is literal
    (tmp_path / "small.csv").write_text("id,name\n1,a\n")
    assert sniff_csv(tmp_path / "small.csv").literal is None


def test_a_large_seed_with_a_backslash_deep_inside_loads_as_written_with_its_types_known(
    tmp_path: Path, target_url: str
) -> None:
    """Typed once, a file loads again from the cache of its types, and with what the
    typing pass found of its bytes: a backslash far into the file stays a backslash."""
    surprises = {MIDDLE: {"label": "C:\\new\\N"}, MIDDLE + 1: {"label": "\\N"}}
    big_seed(tmp_path / "raw" / "events.csv", surprises)
    (tmp_path / "dbluigi.toml").write_text('[project]\nname = "literal"\n')
    for command, args in (("build", ()), ("rebuild", ("raw.events",))):
        code, payload = build_json(*args, project=tmp_path, target=target_url, command=command)
        assert code == 0 and [task["status"] for task in payload["tasks"]] == ["success"]
        labels = query(
            target_url,
            tmp_path,
            f"select label from raw.events where id in ({MIDDLE}, {MIDDLE + 1}) order by id",
        )
        assert labels == [("C:\\new\\N",), ("\\N",)], command


def test_a_seed_saved_while_it_is_typed_keeps_no_types_for_what_it_held_before(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The types (and whether the file is literal) are kept by the content hashed when
    the build started; a file saved while it is typed was typed as it is now, so
    nothing is kept, and the old content, back again, is typed anew: its backslashes
    stay backslashes."""
    import dbluigi.seeds

    seed = tmp_path / "raw" / "events.csv"
    old = big_seed(seed, {MIDDLE: {"label": "C:\\new\\N"}}).read_bytes()
    (tmp_path / "dbluigi.toml").write_text('[project]\nname = "saved"\n')
    sniff = dbluigi.seeds.sniff_csv

    def saved_meanwhile(path: Path, **options: object) -> object:
        # an editor saves a literal file (a new one, renamed over the old) while the
        # build loads and types the old one
        os.replace(big_seed(tmp_path / "saved.csv"), seed)
        return sniff(path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr("dbluigi.seeds.sniff_csv", saved_meanwhile)
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload["tasks"][0]["error"]
    monkeypatch.undo()
    seed.write_bytes(old)  # undone: the old content is back
    code, payload = build_json("raw.events", project=tmp_path, target=target_url, command="rebuild")
    assert code == 0, payload["tasks"][0]["error"]
    label = query(target_url, tmp_path, f"select label from raw.events where id = {MIDDLE}")
    assert label == [("C:\\new\\N",)]
