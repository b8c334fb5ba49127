"""Full source copies are never silently stale: without a version query, a MariaDB
table's version is InnoDB's own change signal, and a PostgreSQL table (no signal) is
copied on every build. Real MariaDB and PostgreSQL."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import replace
from pathlib import Path

import pymysql
import pytest

from dbluigi import sources
from dbluigi.sources import NoVersion, SourceTable
from dbluigi.sources.mysql import SETTLED_S
from dbluigi.urls import parse_url
from tests.buildkit import build_json, cli, query, ran
from tests.helpers import write_project
from tests.sourcekit import create_items, declared, source_exec, source_rows, source_toml

MAIN = '[project]\ndefault_schema = "main"\n'
READER = {"report/n.sql": "select count(*) as n from src.items\n"}

# each change a source table may see, as the statements that make it
CHANGES = {
    "insert": ["insert into items values (9, 'new', '2024-01-09 00:00:00')"],
    "update": ["update items set status = 'paid' where id = 1"],
    "delete": ["delete from items where id = 2"],
    "truncate": ["truncate table items"],
    "alter": ["alter table items add column note varchar(10)"],
    "drop and create": [
        "drop table items",
        "create table items (id integer primary key, status varchar(20), updated_at datetime)",
        "insert into items values (1, 'new', '2024-01-01 00:00:00')",
    ],
}


def settle() -> None:
    """Wait until the last change is old enough for its change time to be trusted."""
    time.sleep(SETTLED_S + 1.1)


def project(tmp_path: Path, url: str, tables: str = 'tables = ["items"]') -> Path:
    return write_project(
        tmp_path / "project", {"dbluigi.toml": MAIN + source_toml(url, tables), **READER}
    )


def version(table: SourceTable) -> str | NoVersion | None:
    with sources.connect(table) as source:
        return source.change_versions([table])[table.relation]


def reasons(root: Path, target: str) -> dict[str, str]:
    planned = json.loads(cli("plan", "--json", project=root, target=target)[1])["models"]
    return {m["model"]: m["reason"] for m in planned}


@pytest.mark.mariadb
@pytest.mark.parametrize(
    "target",
    [
        pytest.param("duckdb_url", id="duckdb"),
        pytest.param("pg_url", id="postgres", marks=pytest.mark.postgres),
    ],
)
def test_a_mariadb_copy_is_copied_again_on_the_build_right_after_any_change(
    tmp_path: Path, mariadb_url: str, target: str, request: pytest.FixtureRequest
) -> None:
    target_url = request.getfixturevalue(target)
    create_items(
        mariadb_url, [(1, "new", "2024-01-01 00:00:00"), (2, "new", "2024-01-02 00:00:00")]
    )
    root = project(tmp_path, mariadb_url)
    settle()
    code, first = build_json(project=root, target=target_url)
    assert code == 0 and ran(first) == {"src.items", "report.n"}
    # nothing changed: nothing is copied
    assert reasons(root, target_url) == {"src.items": "up to date", "report.n": "up to date"}
    assert ran(build_json(project=root, target=target_url)[1]) == set()

    for change, statements in CHANGES.items():
        source_exec(mariadb_url, *statements)
        assert reasons(root, target_url)["src.items"] == (
            "source changed in the last seconds: copied again"
        )
        code, built = build_json(project=root, target=target_url)  # at once
        assert code == 0, (change, built)
        assert ran(built) == {"src.items", "report.n"}, change
        assert same_rows(mariadb_url, target_url, root), change

    # once the change time is trusted: copied once more, then not until a change
    settle()
    assert reasons(root, target_url)["src.items"] == "source changed"
    assert ran(build_json(project=root, target=target_url)[1]) == {"src.items", "report.n"}
    assert ran(build_json(project=root, target=target_url)[1]) == set()
    source_exec(mariadb_url, "update items set status = 'paid'")
    settle()
    assert reasons(root, target_url)["src.items"] == "source changed"
    assert ran(build_json(project=root, target=target_url)[1]) == {"src.items", "report.n"}
    assert same_rows(mariadb_url, target_url, root)


def same_rows(source_url: str, target_url: str, root: Path) -> bool:
    return source_rows(source_url, "select * from items order by id") == query(
        target_url, root, "select * from src.items order by id"
    )


@pytest.mark.mariadb
def test_the_mariadb_signal_changes_with_every_kind_of_change(
    tmp_path: Path, mariadb_url: str
) -> None:
    """Each change, read once its change time is trusted (not merely recent)."""
    create_items(
        mariadb_url, [(1, "new", "2024-01-01 00:00:00"), (2, "new", "2024-01-02 00:00:00")]
    )
    table = declared(project(tmp_path, mariadb_url), "src.items")
    assert version(table) == NoVersion("source changed in the last seconds: copied again")
    settle()
    before = version(table)
    assert isinstance(before, str) and version(table) == before  # stable while nothing changes
    for change, statements in CHANGES.items():
        source_exec(mariadb_url, *statements)
        settle()
        after = version(table)
        assert isinstance(after, str) and after != before, change
        before = after
    # a table made and never changed since has no change time: copied until it changes
    source_exec(mariadb_url, "drop table items", "create table items (id integer primary key)")
    settle()
    assert version(table) == NoVersion(
        "source change time unknown (not changed since the server started or the table was "
        "made): copied again"
    )


@pytest.mark.mariadb
def test_a_transaction_open_across_the_read_is_seen_when_it_commits(
    tmp_path: Path, mariadb_url: str
) -> None:
    """UPDATE_TIME is the start of the last transaction that committed a change, not its
    commit: one that began in the same second as the change read, and commits after the
    read, leaves it as it was. The transactions still open are part of the version."""
    create_items(mariadb_url, [(1, "new", "2024-01-01 00:00:00")])
    table = declared(project(tmp_path, mariadb_url), "src.items")
    url = parse_url(mariadb_url)
    late = pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
    )
    try:
        with late.cursor() as cursor:
            cursor.execute("start transaction")
            cursor.execute("select count(*) from items")  # it begins now
            source_exec(mariadb_url, "update items set status = 'paid' where id = 1")
            settle()
            before = version(table)
            assert isinstance(before, str)
            cursor.execute("insert into items values (2, 'late', null)")
        late.commit()
    finally:
        late.close()
    after = version(table)
    assert after != before


@pytest.mark.mariadb
def test_a_mariadb_table_without_a_signal_is_copied_every_build(
    tmp_path: Path, mariadb_url: str, duckdb_url: str
) -> None:
    create_items(mariadb_url, [(1, "new", "2024-01-01 00:00:00")])
    source_exec(
        mariadb_url,
        "create table logged (id integer primary key) engine=Aria",
        "create view open_items as select * from items where status = 'new'",
    )
    root = project(tmp_path, mariadb_url, 'tables = ["items", "logged", "open_items"]')
    settle()
    assert build_json(project=root, target=duckdb_url)[0] == 0
    assert reasons(root, duckdb_url) == {
        "src.items": "up to date",
        "report.n": "up to date",
        "src.logged": "source has no version signal (a Aria table, not InnoDB): copied every build",
        "src.open_items": "source has no version signal (a view): copied every build",
    }


@pytest.mark.postgres
def test_a_postgresql_full_copy_without_a_version_query_is_copied_every_build(
    tmp_path: Path, pg_source_url: str, duckdb_url: str
) -> None:
    create_items(pg_source_url, [(1, "new", "2024-01-01 00:00:00")])
    root = project(tmp_path, pg_source_url)
    assert build_json(project=root, target=duckdb_url)[0] == 0
    assert reasons(root, duckdb_url) == {
        "src.items": "source has no version signal: copied every build",
        "report.n": "upstream rebuilt",
    }
    code, out = cli("plan", project=root, target=duckdb_url)
    assert "source has no version signal: copied every build" in out
    source_exec(pg_source_url, "update items set status = 'paid'")
    code, again = build_json(project=root, target=duckdb_url)
    assert code == 0 and ran(again) == {"src.items", "report.n"}
    assert query(duckdb_url, root, "select status from src.items") == [("paid",)]

    # a version query still decides, as before
    tables = '[sources.src.tables.items]\nversion_query = "select count(*) from items"\n'
    root = project(tmp_path, pg_source_url, tables)
    assert build_json(project=root, target=duckdb_url)[0] == 0
    assert ran(build_json(project=root, target=duckdb_url)[1]) == set()


@pytest.mark.mariadb
def test_a_reader_without_the_process_privilege_has_its_tables_copied_every_build(
    tmp_path: Path, mariadb_url: str
) -> None:
    create_items(mariadb_url, [(1, "new", "2024-01-01 00:00:00")])
    url = parse_url(mariadb_url)
    user = f"dbluigi_{secrets.token_hex(4)}"
    source_exec(
        mariadb_url,
        f"create user '{user}'@'%' identified by 'pw'",
        f"grant select on `{url.database}`.* to '{user}'@'%'",
    )
    try:
        reader = replace(url, username=user, password="pw").render()
        table = declared(project(tmp_path, reader), "src.items")
        settle()
        assert version(table) == NoVersion(
            "source has no version signal (its user lacks the PROCESS privilege, which "
            "reading InnoDB's table ids and open transactions needs): copied every build"
        )
    finally:
        source_exec(mariadb_url, f"drop user '{user}'@'%'")
