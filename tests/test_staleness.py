"""Nothing goes silently stale (issue 15): input tables and published relations changed
outside dbluigi are noticed by the next build, on both targets.

"Outside dbluigi" is another system writing the target: on PostgreSQL another
connection; on DuckDB another DuckDB connection of its own (as another process would
hold it), never a dbluigi session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import psycopg2
import pytest

from tests.buildkit import build_json, cli, query, ran
from tests.helpers import write_project

Write = Callable[[str], None]

PROJECT = {
    "out/items_copy.sql": "select id, v from src.items\n",
    "out/items_view.sql": "-- kind: view\nselect id, v from src.items where id > 0\n",
    "out/other.sql": "select 1 as one\n",
    "api/items_api.sql": "select count(*) as n from out.items_copy\n",
}


@pytest.fixture
def outside(target_url: str, tmp_path: Path) -> Iterator[Write]:
    """Run SQL on the target as another system would (committed at once)."""
    if target_url.startswith("duckdb"):
        yield _duckdb_outside(target_url.split(":///", 1)[1])
        return
    connection = psycopg2.connect(target_url)
    connection.autocommit = True

    def write_pg(sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql)

    yield write_pg
    connection.close()


def _project(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    return write_project(tmp_path / "project", {**PROJECT, **(extra or {})})


def _reasons(payload: dict[str, object]) -> dict[str, str]:
    results = payload["tasks"]
    assert isinstance(results, list)
    return {r["model"]: r["reason"] for r in results if r["status"] != "up to date"}


def _start(
    outside: Write, project: Path, target: str, *, always: frozenset[str] = frozenset()
) -> None:
    """The input table, a first build, and a build with no change: it runs nothing but
    ``always`` (incremental models run on every build)."""
    outside("create schema src")
    outside("create table src.items (id integer primary key, v varchar)")
    outside("insert into src.items values (1, 'a'), (2, 'b')")
    code, first = build_json(project=project, target=target)
    assert code == 0, first
    code, second = build_json(project=project, target=target)
    assert code == 0 and ran(second) == always, "a build with no change runs nothing else"


CHANGES = {
    "insert": ["insert into src.items values (3, 'c')"],
    "update": ["update src.items set v = 'B' where id = 2"],
    "delete": ["delete from src.items where id = 1"],
    "truncate": ["truncate src.items"],
    "alter": ["alter table src.items add column w integer"],
    "recreate": [
        "drop view if exists out.items_view",
        "drop table src.items",
        "create table src.items (id integer primary key, v varchar)",
        # the same rows again would be no change to DuckDB (no identity survives a
        # reload of its catalog); PostgreSQL tells by the table's oid all the same
        "insert into src.items values (1, 'a'), (2, 'z')",
    ],
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_of_an_input_table_rebuilds_its_readers_on_the_next_build(
    tmp_path: Path, target_url: str, outside: Write, change: str
) -> None:
    project = _project(tmp_path)
    _start(outside, project, target_url)
    for sql in CHANGES[change]:
        outside(sql)
    code, after = build_json(project=project, target=target_url)
    assert code == 0, after
    reasons = _reasons(after)
    assert reasons["out.items_copy"] == "input changed: src.items"
    assert "out.other" not in reasons  # reads no input
    assert reasons["api.items_api"] == "upstream rebuilt"
    rows = query(target_url, project, "select count(*) from out.items_copy")
    expected = query(target_url, project, "select count(*) from src.items")
    assert rows == expected
    code, again = build_json(project=project, target=target_url)
    assert code == 0 and ran(again) == set(), _reasons(again)


def test_plan_names_the_input_that_changed(tmp_path: Path, target_url: str, outside: Write) -> None:
    project = _project(tmp_path)
    _start(outside, project, target_url)
    outside("insert into src.items values (3, 'c')")
    code, out = cli("plan", "--json", project=project, target=target_url)
    assert code == 0
    plan = {m["model"]: m for m in json.loads(out)["models"]}
    assert plan["out.items_copy"]["reason"] == "input changed: src.items"
    assert plan["out.items_view"]["reason"] == "input changed: src.items"
    assert not plan["out.other"]["run"]


def test_a_published_table_changed_by_hand_is_rebuilt_and_reported_by_check(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = _project(
        tmp_path, {"out/items_copy.check.sql": "select * from out.items_copy where id is null\n"}
    )
    _start(outside, project, target_url)
    outside("delete from out.items_copy where id = 1")
    code, out = cli("check", project=project, target=target_url)
    assert code == 1 and "changed outside dbluigi" in out, out
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(after)["out.items_copy"] == "changed outside dbluigi"
    assert query(target_url, project, "select count(*) from out.items_copy") == [(2,)]
    code, again = build_json(project=project, target=target_url)
    assert ran(again) == set()
    code, out = cli("check", project=project, target=target_url)
    assert code == 0, out


@pytest.mark.parametrize(
    "change",
    [
        "truncate out.items_copy",
        "update out.items_copy set v = 'x'",
        "alter table out.items_copy add column extra integer",
        "drop table out.items_copy",
    ],
)
def test_every_hand_change_of_a_published_table_is_noticed(
    tmp_path: Path, target_url: str, outside: Write, change: str
) -> None:
    project = _project(tmp_path)
    _start(outside, project, target_url)
    outside(change)
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    reason = _reasons(after)["out.items_copy"]
    assert reason == (
        "relation missing" if change.startswith("drop") else "changed outside dbluigi"
    )
    assert query(target_url, project, "select count(*) from out.items_copy") == [(2,)]


def test_a_view_redefined_by_hand_is_noticed(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = _project(tmp_path)
    _start(outside, project, target_url)
    outside("create or replace view out.items_view as select id, v from src.items")
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(after)["out.items_view"] == "changed outside dbluigi"


def test_a_version_query_replaces_the_signal(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = _project(
        tmp_path,
        {
            "dbluigi.toml": '[inputs."src.items"]\nversion_query = "select count(*) from src.items"\n'
        },
    )
    _start(outside, project, target_url)
    outside("update src.items set v = 'B' where id = 2")  # the count stays: not a change
    code, after = build_json(project=project, target=target_url)
    assert ran(after) == set()
    outside("insert into src.items values (3, 'c')")
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(after)["out.items_copy"] == "input changed: src.items"


def test_an_unknown_input_in_the_config_is_an_error_naming_the_line(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = _project(
        tmp_path,
        {"dbluigi.toml": '\n[inputs."src.itemz"]\nversion_query = "select 1"\n'},
    )
    outside("create schema src")
    outside("create table src.items (id integer primary key, v varchar)")
    code, out = cli("build", project=project, target=target_url)
    assert code == 2
    assert "src.itemz" in out and "dbluigi.toml" in out and "src.items" in out


def test_a_reader_left_out_of_a_build_still_sees_the_change_later(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = _project(tmp_path)
    _start(outside, project, target_url)
    outside("update src.items set v = 'B' where id = 2")
    code, only = build_json("out.other", project=project, target=target_url)
    assert ran(only) == set()
    code, later = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(later)["out.items_copy"] == "input changed: src.items"


def test_a_table_changed_by_hand_while_another_was_built_is_rebuilt_when_selected(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = _project(tmp_path)
    _start(outside, project, target_url)
    outside("delete from out.items_copy where id = 2")
    build_json("out.other", "--full-refresh", project=project, target=target_url)
    code, later = build_json("out.items_copy", project=project, target=target_url)
    assert code == 0
    assert _reasons(later)["out.items_copy"] == "changed outside dbluigi"


@pytest.mark.postgres
def test_an_input_without_a_signal_runs_its_readers_every_build(
    tmp_path: Path, pg_url: str
) -> None:
    project = write_project(
        tmp_path / "project", {"out/from_mv.sql": "select id from src.items_mv\n"}
    )
    connection = psycopg2.connect(pg_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("create schema src")
        cursor.execute("create materialized view src.items_mv as select 1 as id")
    connection.close()
    build_json(project=project, target=pg_url)
    code, again = build_json(project=project, target=pg_url)
    assert code == 0
    assert _reasons(again)["out.from_mv"] == (
        "no change signal for input: src.items_mv (a materialized view has no change signal)"
    )


def test_an_input_view_changes_with_the_tables_it_reads(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = write_project(
        tmp_path / "project", {"out/from_view.sql": "select id from src.items_v\n"}
    )
    outside("create schema src")
    outside("create table src.items (id integer primary key, v varchar)")
    outside("create view src.inner_v as select id from src.items where id > 0")
    outside("create view src.items_v as select id from src.inner_v")
    outside("insert into src.items values (1, 'a')")
    assert build_json(project=project, target=target_url)[0] == 0
    code, again = build_json(project=project, target=target_url)
    assert code == 0 and ran(again) == set()
    outside("insert into src.items values (2, 'b')")
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(after)["out.from_view"] == "input changed: src.items_v"
    assert query(target_url, project, "select count(*) from out.from_view") == [(2,)]


INCREMENTAL = {
    "out/items_store.sql": (
        "-- kind: incremental\n-- unique_key: id\n-- watermark: id\n"
        "select id, v from src.items\n"
        "where v <> 'skip' and ({{ watermark }} is null or id >= {{ watermark }})\n"
    ),
    "api/store_count.sql": "select count(*) as n from out.items_store\n",
}


def test_an_incremental_model_merges_input_changes_and_its_reader_follows_only_new_rows(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = write_project(tmp_path / "project", INCREMENTAL)
    _start(outside, project, target_url, always=frozenset({"out.items_store"}))
    for _ in range(2):  # its own upserts are no change outside dbluigi
        code, again = build_json(project=project, target=target_url)
        assert code == 0 and ran(again) == {"out.items_store"}, _reasons(again)
        assert _reasons(again)["out.items_store"] == "new rows since 2"
    outside("insert into src.items values (3, 'skip')")  # a change that merges no row
    code, skipped = build_json(project=project, target=target_url)
    assert _reasons(skipped) == {"out.items_store": "new rows since 2 (input changed: src.items)"}
    outside("insert into src.items values (4, 'd')")
    code, merged = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(merged)["api.store_count"] == "upstream rebuilt"
    assert query(target_url, project, "select n from api.store_count") == [(3,)]


def test_an_incremental_table_changed_by_hand_is_rebuilt_from_scratch(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = write_project(tmp_path / "project", INCREMENTAL)
    _start(outside, project, target_url, always=frozenset({"out.items_store"}))
    outside("delete from out.items_store where id = 1")
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(after)["out.items_store"] == "changed outside dbluigi"
    assert query(target_url, project, "select id from out.items_store order by id") == [(1,), (2,)]


# -- what a review found ----------------------------------------------------------------


@pytest.mark.postgres
def test_rows_written_straight_into_a_partition_or_a_child_table_are_seen(
    tmp_path: Path, pg_url: str
) -> None:
    project = write_project(
        tmp_path / "project",
        {
            "out/ev.sql": "select count(*) as n from src.ev\n",
            "out/inh.sql": "select count(*) as n from src.inh_parent\n",
        },
    )
    connection = psycopg2.connect(pg_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("create schema src")
        cursor.execute("create table src.ev (y int) partition by range (y)")
        cursor.execute(
            "create table src.ev_2014 partition of src.ev for values from (2014) to (2015)"
        )
        cursor.execute("create table src.inh_parent (y int)")
        cursor.execute("create table src.inh_child () inherits (src.inh_parent)")
        assert build_json(project=project, target=pg_url)[0] == 0
        cursor.execute("insert into src.ev_2014 values (2014)")
        cursor.execute("insert into src.inh_child values (1)")
    connection.close()
    code, after = build_json(project=project, target=pg_url)
    assert code == 0
    assert _reasons(after) == {
        "out.ev": "input changed: src.ev",
        "out.inh": "input changed: src.inh_parent",
    }
    assert query(pg_url, project, "select n from out.ev") == [(1,)]


def test_a_commit_left_in_the_write_ahead_log_is_seen(tmp_path: Path, duckdb_url: str) -> None:
    project = _project(tmp_path)
    path = duckdb_url.split(":///", 1)[1]
    outside = _duckdb_outside(path)
    _start(outside, project, duckdb_url)
    writer = (
        "import duckdb, os, sys; c = duckdb.connect(sys.argv[1]); "
        "c.execute(\"insert into src.items values (3, 'c')\"); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", writer, path], check=True)
    code, after = build_json(project=project, target=duckdb_url)
    assert code == 0
    assert _reasons(after)["out.items_copy"] == "input changed: src.items"


def test_two_updates_that_leave_the_storage_layout_as_it_was_are_seen(
    tmp_path: Path, duckdb_url: str
) -> None:
    project = _project(tmp_path)
    outside = _duckdb_outside(duckdb_url.split(":///", 1)[1])
    _start(outside, project, duckdb_url)
    outside("update src.items set v = 'x' where id = 1")
    outside("update src.items set v = 'y' where id = 2")
    code, after = build_json(project=project, target=duckdb_url)
    assert code == 0
    assert _reasons(after)["out.items_copy"] == "input changed: src.items"


def test_a_duckdb_view_over_an_unqualified_name_follows_its_table(
    tmp_path: Path, duckdb_url: str
) -> None:
    project = write_project(tmp_path / "project", {"out/from_v.sql": "select id from src.v\n"})
    outside = _duckdb_outside(duckdb_url.split(":///", 1)[1])
    outside("create schema src")
    outside("create table src.items (id integer)")
    outside("use src; create view src.v as select id from items")
    assert build_json(project=project, target=duckdb_url)[0] == 0
    outside("insert into src.items values (1)")
    code, after = build_json(project=project, target=duckdb_url)
    assert code == 0
    assert _reasons(after)["out.from_v"] == "input changed: src.v"


def test_an_input_view_over_a_model_follows_its_rebuilds(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = write_project(
        tmp_path / "project",
        {"out/t.sql": "select 1 as id\n", "rep/r.sql": "select count(*) as n from src.vm\n"},
    )
    outside("create schema out")
    outside("create table out.t as select 0 as id")  # built over by the model
    outside("create schema src")
    outside("create view src.vm as select id from out.t")
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "out/t.sql").write_text("select 1 as id union all select 2\n")
    # one worker: rep.r reads out.t through a view dbluigi does not manage, which orders
    # nothing; with several workers rep.r may run before out.t is rebuilt
    code, after = build_json("--workers", "1", project=project, target=target_url)
    assert code == 0
    assert _reasons(after)["rep.r"] == "input changed: src.vm"
    assert query(target_url, project, "select n from rep.r") == [(2,)]


def test_a_build_that_died_before_reading_back_what_it_published_rebuilds_it(
    tmp_path: Path, duckdb_url: str
) -> None:
    project = _project(tmp_path)
    outside = _duckdb_outside(duckdb_url.split(":///", 1)[1])
    _start(outside, project, duckdb_url)
    outside("update dbluigi.models set output_version = 'pending' where model = 'out.other'")
    code, after = build_json(project=project, target=duckdb_url)
    assert code == 0
    assert _reasons(after) == {"out.other": "changed outside dbluigi"}


@pytest.mark.postgres
def test_a_dropped_change_log_is_made_again(tmp_path: Path, pg_url: str) -> None:
    project = _project(tmp_path)
    connection = psycopg2.connect(pg_url)
    connection.autocommit = True
    cursor = connection.cursor()
    cursor.execute("create schema src")
    cursor.execute("create table src.items (id integer primary key, v varchar)")
    assert build_json(project=project, target=pg_url)[0] == 0
    cursor.execute("drop table dbluigi.changes")
    cursor.execute("insert into src.items values (1, 'a')")  # the writer is not hindered
    connection.close()
    code, after = build_json(project=project, target=pg_url)
    assert code == 0, after
    # a new log cannot vouch for the old versions: everything it watched rebuilds once
    assert set(_reasons(after)) == {
        "out.items_copy",
        "out.items_view",
        "out.other",
        "api.items_api",
    }
    code, again = build_json(project=project, target=pg_url)
    assert code == 0 and ran(again) == set()


@pytest.mark.postgres
def test_a_view_recreated_over_its_rebuilt_table_is_no_change(tmp_path: Path, pg_url: str) -> None:
    project = write_project(
        tmp_path / "project",
        {"out/t.sql": "select 1 as id\n", "out/v.sql": "-- kind: view\nselect id from out.t\n"},
    )
    assert build_json(project=project, target=pg_url)[0] == 0
    code, _ = build_json("out.t", project=project, target=pg_url, command="rebuild")
    assert code == 0  # out.v was dropped and made again over the new out.t, as it was
    code, out = cli("check", project=project, target=pg_url)
    assert code == 0, out
    code, after = build_json("out.v", project=project, target=pg_url)
    assert _reasons(after) == {"out.v": "upstream rebuilt"}


def test_a_table_published_before_versions_were_kept_is_watched_after_a_build(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = _project(tmp_path)
    _start(outside, project, target_url)
    outside("update dbluigi.models set output_version = null")  # as version 1 left them
    outside("insert into src.items values (3, 'c')")
    assert build_json(project=project, target=target_url)[0] == 0
    outside("update out.other set one = 42")
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    assert _reasons(after)["out.other"] == "changed outside dbluigi"


def _duckdb_outside(path: str) -> Write:
    def write(sql: str) -> None:
        connection = duckdb.connect(path)
        try:
            connection.execute(sql)
        finally:
            connection.close()

    return write


PARTITIONED = {
    "out/t.sql": (
        "-- partition: year in 2014..2015\n"
        "select {{ year }} as year, count(*) as n from src.events where y = {{ year }}\n"
    ),
}


def _partition_runs(payload: dict[str, object]) -> dict[str, str]:
    """The reason of each partition value that ran."""
    results = payload["tasks"]
    assert isinstance(results, list)
    return {
        r["partition"]: r["reason"]
        for r in results
        if r["partition"] and r["status"] != "up to date"
    }


def test_an_input_change_rebuilds_every_partition_of_its_reader(
    tmp_path: Path, target_url: str, outside: Write
) -> None:
    project = write_project(tmp_path / "project", PARTITIONED)
    outside("create schema src")
    outside("create table src.events (y integer)")
    outside("insert into src.events values (2014)")
    assert build_json(project=project, target=target_url)[0] == 0
    code, again = build_json(project=project, target=target_url)
    assert code == 0 and ran(again) == set(), _reasons(again)
    outside("insert into src.events values (2014), (2014)")
    code, after = build_json(project=project, target=target_url)
    assert code == 0, after
    assert _reasons(after)["out.t"] == "input changed: src.events"
    # the change could be in any year: every value is built again
    assert set(_partition_runs(after)) == {"2014", "2015"}
    rows = query(target_url, project, "select year, n from out.t order by year")
    assert rows == [(2014, 3), (2015, 0)]
    code, settled = build_json(project=project, target=target_url)
    assert code == 0 and ran(settled) == set(), _reasons(settled)


@pytest.mark.postgres
def test_an_input_without_a_signal_rebuilds_every_partition_every_build(
    tmp_path: Path, pg_url: str
) -> None:
    project = write_project(
        tmp_path / "project",
        {"out/t.sql": PARTITIONED["out/t.sql"].replace("src.events", "src.events_mv")},
    )
    connection = psycopg2.connect(pg_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("create schema src")
        cursor.execute("create table src.events (y integer)")
        cursor.execute("insert into src.events values (2014)")
        cursor.execute("create materialized view src.events_mv as select y from src.events")
    assert build_json(project=project, target=pg_url)[0] == 0
    with connection.cursor() as cursor:
        cursor.execute("insert into src.events values (2015)")
        cursor.execute("refresh materialized view src.events_mv")
    connection.close()
    code, again = build_json(project=project, target=pg_url)
    assert code == 0
    why = "no change signal for input: src.events_mv (a materialized view has no change signal)"
    assert _reasons(again)["out.t"] == why
    assert _partition_runs(again) == {"2014": why, "2015": why}
    rows = query(pg_url, project, "select year, n from out.t order by year")
    assert rows == [(2014, 1), (2015, 1)]


@pytest.mark.postgres
def test_the_change_log_folded_keeps_every_version(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbluigi.targets import pgchanges

    project = _project(tmp_path)
    connection = psycopg2.connect(pg_url)
    connection.autocommit = True
    cursor = connection.cursor()
    cursor.execute("create schema src")
    cursor.execute("create table src.items (id integer primary key, v varchar)")
    assert build_json(project=project, target=pg_url)[0] == 0
    for i in range(5):  # five transactions: five rows in the log
        cursor.execute("insert into src.items values (%s, 'x')", (i,))
    monkeypatch.setattr(pgchanges, "COMPACT_ABOVE", 2)
    code, after = build_json(project=project, target=pg_url)
    assert code == 0 and _reasons(after)["out.items_copy"] == "input changed: src.items"
    cursor.execute("select count(*) from dbluigi.changes where xid <> 0")
    assert cursor.fetchone() == (0,)  # folded before the versions were read
    code, again = build_json(project=project, target=pg_url)
    assert code == 0 and ran(again) == set()
    cursor.execute("insert into src.items values (9, 'y')")
    code, later = build_json(project=project, target=pg_url)
    assert _reasons(later)["out.items_copy"] == "input changed: src.items"
    connection.close()
