"""Copying source tables into the target, end to end: every source/target pair, full and
incremental, version queries, checks and bad inputs."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.buildkit import build_json, cli, query, ran, statuses
from tests.helpers import write_project
from tests.sourcekit import create_items, is_mariadb, source_exec, source_rows, source_toml

MAIN = '[project]\ndefault_schema = "main"\n'

SOURCES = [
    pytest.param("mariadb_url", id="mariadb", marks=pytest.mark.mariadb),
    pytest.param("pg_source_url", id="pgsource", marks=pytest.mark.postgres),
]


@pytest.fixture(params=SOURCES)
def source_url(request: pytest.FixtureRequest) -> str:
    """A fresh source database: MariaDB, then PostgreSQL."""
    return request.getfixturevalue(request.param)


def project(
    tmp_path: Path, source_url: str, tables: str, files: dict[str, str] | None = None
) -> Path:
    toml = MAIN + "\n" + source_toml(source_url, tables)
    return write_project(tmp_path / "project", {"dbluigi.toml": toml, **(files or {})})


# -- every type, every pair ------------------------------------------------------------

# (column, MariaDB type, PostgreSQL type, PostgreSQL target type, DuckDB target type)
TYPES = [
    ("id", "integer primary key", "integer primary key", "bigint", "BIGINT"),
    ("small_int", "smallint", "smallint", "bigint", "BIGINT"),
    ("big_int", "bigint", "bigint", "bigint", "BIGINT"),
    ("huge_int", "bigint unsigned", "numeric(20,0)", "numeric(20,0)", "DECIMAL(20,0)"),
    ("amount", "decimal(12,2)", "numeric(12,2)", "numeric(12,2)", "DECIMAL(12,2)"),
    ("precise", "decimal(30,10)", "numeric(30,10)", "numeric(30,10)", "DECIMAL(30,10)"),
    ("ratio", "double", "double precision", "double precision", "DOUBLE"),
    ("label", "varchar(40)", "varchar(40)", "text", "VARCHAR"),
    ("body", "text", "text", "text", "VARCHAR"),
    ("day", "date", "date", "date", "DATE"),
    ("at_local", "datetime(6)", "timestamp", "timestamp without time zone", "TIMESTAMP"),
    (
        "at_utc",
        "timestamp(6) null",
        "timestamptz",
        "timestamp with time zone",
        "TIMESTAMP WITH TIME ZONE",
    ),
    ("flag", "boolean", "boolean", "boolean", "BOOLEAN"),
    ("doc", "json", "jsonb", "jsonb", "JSON"),
]
UTC = dt.UTC
ROWS: list[tuple[Any, ...]] = [
    (
        1,
        32767,
        9223372036854775807,
        Decimal("18446744073709551615"),
        Decimal("12345678.90"),
        Decimal("12345678901234567890.0123456789"),
        0.1,
        "plain",
        'two\nlines, "quoted", commas; unicode ✓ é 🚀 and a \\ backslash',
        dt.date(2024, 2, 29),
        dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        dt.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
        True,
        {"a": [1, 2], "b": "x"},
    ),
    (
        2,
        -32768,
        -9223372036854775808,
        Decimal("0"),
        Decimal("-0.01"),
        Decimal("-0.0000000001"),
        -1.5e300,
        "",
        "NULL",
        dt.date(1970, 1, 1),
        dt.datetime(1000, 1, 1, 0, 0, 0),
        dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        False,
        [],
    ),
    (3, *([None] * (len(TYPES) - 1))),
]


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, Decimal)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    if isinstance(value, dt.datetime):
        value = value.replace(tzinfo=None).isoformat(sep=" ")
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def _create_types(url: str) -> None:
    mariadb = is_mariadb(url)
    columns = ", ".join(f"{c[0]} {c[1] if mariadb else c[2]}" for c in TYPES)
    inserts = []
    for row in ROWS:
        values = [_literal(v) for v in row]
        if not mariadb:  # PostgreSQL reads backslashes literally in standard strings
            values = [v.replace("\\\\", "\\") for v in values]
        inserts.append(f"insert into types values ({', '.join(values)})")
    source_exec(url, f"create table types ({columns})", *inserts)


def _normal(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, str) and value[:1] in ("[", "{"):  # DuckDB's JSON is text
        return json.loads(value)
    return value


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("duckdb_url", id="duckdb"),
        pytest.param("pg_url", id="postgres", marks=pytest.mark.postgres),
    ],
)
def test_every_type_round_trips_for_each_source_and_target(
    tmp_path: Path, source_url: str, target: str, request: pytest.FixtureRequest
) -> None:
    target_url = request.getfixturevalue(target)
    _create_types(source_url)
    root = project(tmp_path, source_url, 'tables = ["types"]')
    code, payload = build_json(project=root, target=target_url)
    assert code == 0, payload
    assert statuses(payload) == {"src.types": "success"}
    assert payload["tasks"][0]["rows"] == len(ROWS)

    rows = query(target_url, root, "select * from src.types order by id")
    assert [tuple(_normal(v) for v in row) for row in rows] == ROWS
    if target == "pg_url":
        described = query(
            target_url,
            root,
            "select column_name, format_type(atttypid, atttypmod) from information_schema.columns "
            "join pg_attribute on attrelid = 'src.types'::regclass and attname = column_name "
            "where table_schema = 'src' and table_name = 'types' order by ordinal_position",
        )
        assert described == [(c[0], c[3]) for c in TYPES]
    else:
        described = query(
            target_url, root, "select column_name, column_type from (describe src.types)"
        )
        assert described == [(c[0], c[4]) for c in TYPES]


# -- full and incremental, versions, checks --------------------------------------------


def test_full_copy_feeds_its_readers_and_a_version_query_makes_them_stale(
    tmp_path: Path, source_url: str, duckdb_url: str
) -> None:
    create_items(
        source_url, [(1, "new", "2024-01-01 00:00:00"), (2, "paid", "2024-01-02 00:00:00")]
    )
    tables = '[sources.src.tables.items]\nversion_query = "select count(*), max(updated_at) from items"\n'
    root = project(
        tmp_path,
        source_url,
        tables,
        {"report/by_status.sql": "select status, count(*) as n from src.items group by status\n"},
    )
    code, first = build_json(project=root, target=duckdb_url)
    assert code == 0 and statuses(first) == {"src.items": "success", "report.by_status": "success"}
    assert query(duckdb_url, root, "select status, n from report.by_status order by 1") == [
        ("new", 1),
        ("paid", 1),
    ]

    code, plan_out = cli("plan", "--json", project=root, target=duckdb_url)
    assert {m["model"]: m["reason"] for m in json.loads(plan_out)["models"]} == {
        "src.items": "up to date",
        "report.by_status": "up to date",
    }
    assert ran(build_json(project=root, target=duckdb_url)[1]) == set()

    source_exec(source_url, "insert into items values (3, 'paid', '2024-01-03 00:00:00')")
    code, plan_out = cli("plan", project=root, target=duckdb_url)
    assert "src.items" in plan_out and "source changed" in plan_out
    planned = {
        m["model"]: m
        for m in json.loads(cli("plan", "--json", project=root, target=duckdb_url)[1])["models"]
    }
    assert planned["src.items"]["reason"] == "source changed" and planned["src.items"]["run"]
    assert planned["report.by_status"]["reason"] == "upstream rebuilt"
    code, second = build_json(project=root, target=duckdb_url)
    assert code == 0 and ran(second) == {"src.items", "report.by_status"}
    assert query(duckdb_url, root, "select status, n from report.by_status order by 1") == [
        ("new", 1),
        ("paid", 2),
    ]


def test_incremental_copy_upserts_new_and_changed_rows(
    tmp_path: Path, source_url: str, target_url: str
) -> None:
    create_items(
        source_url,
        [
            (1, "new", "2024-01-01 00:00:00"),
            (2, "new", "2024-01-02 00:00:00"),
            (3, "new", "2024-01-03 00:00:00"),
        ],
    )
    tables = (
        '[sources.src.tables.items]\nmode = "incremental"\nwatermark = "updated_at"\n'
        'unique_key = "id"\n'
    )
    root = project(
        tmp_path, source_url, tables, {"report/counts.sql": "select count(*) as n from src.items\n"}
    )
    code, first = build_json(project=root, target=target_url)
    assert code == 0 and first["tasks"][0]["rows"] == 3

    # nothing new in the source: the copy runs, changes nothing, and its reader stays
    code, again = build_json(project=root, target=target_url)
    assert code == 0 and ran(again) == {"src.items"}
    assert again["tasks"][0]["reason"] == "new rows since 2024-01-03 00:00:00"
    assert again["tasks"][0]["rows"] == 0

    source_exec(
        source_url,
        "update items set status = 'paid', updated_at = '2024-01-05 00:00:00' where id = 1",
        "insert into items values (4, 'new', '2024-01-04 00:00:00')",
        "delete from items where id = 2",  # an upsert keeps rows deleted in the source
    )
    code, second = build_json(project=root, target=target_url)
    assert code == 0, second
    results = {r["model"]: r for r in second["tasks"]}
    assert results["src.items"]["reason"] == "source changed"
    # only rows at or past the published watermark (2024-01-03) were read: 3, 4 and 1;
    # 3 was as published, so 2 rows changed
    assert results["src.items"]["rows"] == 2
    assert query(target_url, root, "select id, status from src.items order by id") == [
        (1, "paid"),
        (2, "new"),
        (3, "new"),
        (4, "new"),
    ]
    assert query(target_url, root, "select n from report.counts") == [(4,)]

    # a full refresh copies it again in full: the deleted row goes
    code, third = build_json("--full-refresh", "source:src.items", project=root, target=target_url)
    assert code == 0, third
    assert {r["model"]: r["reason"] for r in third["tasks"]} == {"src.items": "full refresh"}
    assert query(target_url, root, "select id from src.items order by id") == [(1,), (3,), (4,)]


def test_a_check_file_gates_the_copy(tmp_path: Path, source_url: str, target_url: str) -> None:
    create_items(source_url, [(1, "new", "2024-01-01 00:00:00")])
    root = project(
        tmp_path,
        source_url,
        '[sources.src.tables.items]\nversion_query = "select count(*) from items"\n',
        {
            "src/items.check.sql": "select id, status from src.items where status = 'bad'\n",
            "report/ids.sql": "select id from src.items\n",
        },
    )
    assert build_json(project=root, target=target_url)[0] == 0
    source_exec(source_url, "insert into items values (2, 'bad', '2024-01-02 00:00:00')")
    code, payload = build_json(project=root, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    assert results["src.items"]["failure_class"] == "check"
    assert "src/items.check.sql" in results["src.items"]["error"]
    assert results["report.ids"]["status"] == "skipped"
    # the published copy is as it was
    assert query(target_url, root, "select id from src.items") == [(1,)]


def test_source_selectors_build_one_table_or_a_whole_source(
    tmp_path: Path, source_url: str, duckdb_url: str
) -> None:
    create_items(source_url, [(1, "new", "2024-01-01 00:00:00")])
    source_exec(source_url, "create table tags (id integer primary key, tag varchar(10))")
    # version queries: a copy is up to date while they answer the same (without one, a
    # table just changed is copied again on every build)
    tables = "".join(
        f'[sources.src.tables.{t}]\nversion_query = "select count(*) from {t}"\n'
        for t in ("items", "tags")
    )
    root = project(
        tmp_path, source_url, tables, {"report/n.sql": "select count(*) as n from src.items\n"}
    )
    code, payload = build_json("source:src.items", project=root, target=duckdb_url)
    assert code == 0 and ran(payload) == {"src.items"}
    code, payload = build_json("source:src", project=root, target=duckdb_url)
    assert ran(payload) == {"src.tags"}
    code, payload = build_json("source:src.items+", project=root, target=duckdb_url)
    assert ran(payload) == {"report.n"}


# -- bad inputs -------------------------------------------------------------------------


def test_an_unreachable_source_fails_its_task_with_the_url_masked(
    tmp_path: Path, duckdb_url: str
) -> None:
    url = "mysql+pymysql://reader:Sup3rSecret@127.0.0.1:1/shop?connect_timeout=2"
    root = project(
        tmp_path,
        url,
        'tables = ["items"]',
        {"report/n.sql": "select count(*) as n from src.items\n"},
    )
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    failed = results["src.items"]
    assert failed["failure_class"] == "runtime"
    assert (
        "cannot connect to source src (mysql+pymysql://reader:***@127.0.0.1:1/shop"
        in failed["error"]
    )
    assert results["report.n"]["status"] == "skipped"
    code, text = cli("build", project=root, target=duckdb_url)
    assert "Sup3rSecret" not in text and "Sup3rSecret" not in json.dumps(payload)
    stored = query(
        duckdb_url,
        root,
        "select error, path, line from dbluigi.task_runs where model = 'src.items'",
    )
    assert all("Sup3rSecret" not in row[0] for row in stored)
    assert stored[0][1:] == ("dbluigi.toml", 6)  # the tables = line


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ('tables = ["itemz"]', "table itemz not found in source src"),
        (
            '[sources.src.tables.items]\nmode = "incremental"\nwatermark = "changed_at"\nunique_key = "id"\n',
            "watermark column 'changed_at' is not a column of items in source src",
        ),
    ],
)
def test_a_missing_table_or_watermark_column_is_a_config_failure(
    tmp_path: Path, source_url: str, duckdb_url: str, tables: str, message: str
) -> None:
    create_items(source_url)
    root = project(tmp_path, source_url, tables)
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 1
    failed = payload["tasks"][0]
    assert failed["failure_class"] == "config"
    assert message in failed["error"]


def test_a_column_with_no_mapping_is_named(
    tmp_path: Path, source_url: str, duckdb_url: str
) -> None:
    odd = "time" if is_mariadb(source_url) else "interval"
    source_exec(source_url, f"create table items (id integer primary key, took {odd})")
    root = project(tmp_path, source_url, 'tables = ["items"]')
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 1
    assert (
        f"column 'took' of items in source src has type {odd}, which has no mapping"
        in payload["tasks"][0]["error"]
    )
    assert source_rows(source_url, "select count(*) from items") == [(0,)]


def test_a_row_of_several_megabytes_loads(tmp_path: Path, source_url: str, target_url: str) -> None:
    body = "longtext" if is_mariadb(source_url) else "text"
    source_exec(
        source_url,
        f"create table items (id integer primary key, body {body})",
        "insert into items values (1, repeat('x', 3000000)), (2, 'small')",
    )
    root = project(tmp_path, source_url, 'tables = ["items"]')
    code, payload = build_json(project=root, target=target_url)
    assert code == 0, payload
    assert query(target_url, root, "select id, length(body) from src.items order by id") == [
        (1, 3000000),
        (2, 5),
    ]


def test_a_row_too_long_for_duckdb_fails_with_the_targets_reason(
    tmp_path: Path, source_url: str, duckdb_url: str
) -> None:
    body = "longtext" if is_mariadb(source_url) else "text"
    source_exec(
        source_url,
        f"create table items (id integer primary key, body {body})",
        "insert into items values (1, 'small'), (2, repeat('y', 9000000)), (3, 'small')",
    )
    root = project(tmp_path, source_url, 'tables = ["items"]')
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 1
    failed = payload["tasks"][0]
    assert failed["failure_class"] == "runtime"
    assert (
        "is 9,000,00" in failed["error"]
        and "bytes the DuckDB target reads as one row" in failed["error"]
    )
    assert len(failed["error"]) < 1000


def test_mixed_case_columns_arrive_lowercased_and_keys_follow(
    tmp_path: Path, source_url: str, target_url: str
) -> None:
    quote = "`" if is_mariadb(source_url) else '"'
    stamp = "datetime" if is_mariadb(source_url) else "timestamp"
    columns = [f"{quote}ID{quote}", f"{quote}Status{quote}", f"{quote}UpdatedAt{quote}"]
    source_exec(
        source_url,
        f"create table items ({columns[0]} integer primary key, {columns[1]} varchar(9), "
        f"{columns[2]} {stamp})",
        "insert into items values (1, 'new', '2024-01-01 00:00:00')",
    )
    tables = (
        '[sources.src.tables.items]\nmode = "incremental"\nwatermark = "UpdatedAt"\n'
        'unique_key = "ID"\n'
    )
    root = project(tmp_path, source_url, tables)
    assert build_json(project=root, target=target_url)[0] == 0
    source_exec(
        source_url,
        f"update items set {columns[1]} = 'paid', {columns[2]} = '2024-01-02 00:00:00'",
        "insert into items values (2, 'new', '2024-01-03 00:00:00')",
    )
    code, payload = build_json(project=root, target=target_url)
    assert code == 0, payload
    assert query(target_url, root, "select id, status from src.items order by id") == [
        (1, "paid"),
        (2, "new"),
    ]
