"""Partitioned models: one task per value, each with its own state; the table is checked
and published once every value is in; reruns redo only what failed or is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbluigi.targets import open_target
from tests.buildkit import build_json, query
from tests.test_build import write_project

MODEL = """\
-- partition: year in 2014..2016
-- check: unique(year, id)
-- check: rows > 0
select cast({{ year }} as integer) as year, c.id,
       cast(case when c.ok then '1' else 'not a number' end as integer) as v
from ext.control as c
where c.year = {{ year }}
"""


# the input's fix below is declared no change (a version query that always answers the
# same), so the rerun shows resuming alone; a changed input rebuilds every value
# (tests/test_staleness.py)
PINNED = '\n[inputs."ext.control"]\nversion_query = "select 1"\n'


def _control(target: str, project: Path, rows: list[tuple[int, int, bool]]) -> None:
    """An input table the model reads (not a model)."""
    session = open_target(target, project_dir=project).connect()
    try:
        session.ensure_schema("ext")
        session.execute("drop table if exists ext.control")
        session.execute("create table ext.control (year integer, id integer, ok boolean)")
        session.executemany("insert into ext.control values (%s, %s, %s)", rows)
    finally:
        session.close()


def _runs(target: str, project: Path, run_id: str) -> list[tuple[str, str]]:
    rows = query(
        target,
        project,
        "select partition_key, status from dbluigi.task_runs where run_id = %s and model = 'main.t' "
        "order by partition_key",
        [run_id],
    )
    return [(r[0], r[1]) for r in rows]


def test_partitions_build_resume_and_rebuild_one(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {"t.sql": MODEL, "reader.sql": "select count(*) as n from main.t", "dbluigi.toml": PINNED},
    )
    _control(
        target_url, tmp_path, [(2014, 1, True), (2015, 1, False), (2016, 1, True), (2016, 2, True)]
    )

    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    results = {(r["model"], r["partition"]): r for r in payload["tasks"]}
    assert results[("main.t", "2015")]["status"] == "failed"
    assert results[("main.t", "2015")]["failure_class"] in ("runtime", "syntax")
    assert results[("main.t", None)]["status"] == "skipped"
    assert "partition 2015 failed" in results[("main.t", None)]["error"]
    assert results[("main.reader", None)]["status"] == "skipped"
    assert _runs(target_url, tmp_path, payload["run_id"]) == [
        ("", "skipped"),
        ("2014", "success"),
        ("2015", "failed"),
        ("2016", "success"),
    ]
    assert query(
        target_url,
        tmp_path,
        "select count(*) from information_schema.tables where table_name = 't'",
    ) == [(0,)]

    # the data is fixed: a rerun redoes only the failed value, then publishes the table
    _control(
        target_url, tmp_path, [(2014, 1, True), (2015, 1, True), (2016, 1, True), (2016, 2, True)]
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert _runs(target_url, tmp_path, payload["run_id"]) == [("", "success"), ("2015", "success")]
    assert query(target_url, tmp_path, "select year, id from main.t order by year, id") == [
        (2014, 1),
        (2015, 1),
        (2016, 1),
        (2016, 2),
    ]
    assert query(target_url, tmp_path, "select n from main.reader") == [(4,)]
    states = query(
        target_url,
        tmp_path,
        "select partition_key from dbluigi.models where model = 'main.t' order by 1",
    )
    assert [s[0] for s in states] == ["", "2014", "2015", "2016"]

    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0 and all(r["status"] == "up to date" for r in payload["tasks"])

    # one value again, on request
    code, payload = build_json(
        "t", "--partition", "2016", project=tmp_path, target=target_url, command="rebuild"
    )
    assert code == 0, payload
    assert _runs(target_url, tmp_path, payload["run_id"]) == [("", "success"), ("2016", "success")]

    # an edit redoes every value
    (tmp_path / "t.sql").write_text(MODEL + "-- edited\n")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0
    assert _runs(target_url, tmp_path, payload["run_id"]) == [
        ("", "success"),
        ("2014", "success"),
        ("2015", "success"),
        ("2016", "success"),
    ]


def test_partition_values_from_a_query_and_a_failing_check(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "raw/years.csv": "data_year,amount\n2020,1\n2021,2\n2021,3\n",
            "t.sql": "-- partition: year in (select distinct data_year from raw.years)\n"
            "-- check: rows >= 0.9 * previous\n"
            "select data_year, sum(amount) as total from raw.years where data_year = {{ year }} group by data_year",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select data_year, total from main.t order by 1") == [
        (2020, 1),
        (2021, 5),
    ]
    # fewer values: the stale partition is dropped, and the check on the gathered table fails
    (tmp_path / "raw" / "years.csv").write_text("data_year,amount\n2020,1\n")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    failed = [r for r in payload["tasks"] if r["status"] == "failed"]
    assert [(r["model"], r["partition"], r["failure_class"]) for r in failed] == [
        ("main.t", None, "check")
    ]
    assert query(target_url, tmp_path, "select count(*) from main.t") == [
        (2,)
    ]  # published table kept


def test_partition_specification_that_yields_no_values(tmp_path: Path, duckdb_url: str) -> None:
    from tests.buildkit import cli

    write_project(
        tmp_path,
        {
            "raw/years.csv": "data_year\n2020\n",
            "t.sql": "-- partition: year in (select data_year from raw.years where data_year > 3000)\n"
            "select {{ year }} as year",
        },
    )
    assert build_json("raw.years", project=tmp_path, target=duckdb_url)[0] == 0
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 2
    assert "t.sql:1: the partition specification of main.t yields no values" in output


def test_unknown_partition_value_is_a_usage_error(tmp_path: Path, duckdb_url: str) -> None:
    from tests.buildkit import cli

    write_project(
        tmp_path, {"t.sql": "-- partition: year in 2014..2015\nselect {{ year }} as year"}
    )
    code, output = cli("rebuild", "t", "--partition", "1999", project=tmp_path, target=duckdb_url)
    assert code == 2 and "--partition 1999: no selected model has that partition value" in output


def test_a_partitioned_model_that_never_uses_its_value_is_an_error(
    tmp_path: Path, duckdb_url: str
) -> None:
    """Each value's task would build the same rows: the table held them once per value."""
    from tests.buildkit import cli

    write_project(
        tmp_path,
        {
            "x.csv": "id\n1\n",
            "t.sql": "-- check: rows > 0\n-- partition: year in 2014..2015\nselect id from x",
        },
    )
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 2
    assert "t.sql:2: -- partition: year: the file never uses {{ year }}" in output
    assert "where year = {{ year }}" in output
    tables = "select count(*) from information_schema.tables where table_name = 't'"
    assert query(duckdb_url, tmp_path, tables) == [(0,)]


@pytest.mark.postgres
def test_partitions_run_in_parallel_workers(tmp_path: Path, pg_url: str) -> None:
    write_project(
        tmp_path,
        {
            "t.sql": "-- partition: n in (1, 2, 3, 4)\nselect {{ n }} as n, pg_backend_pid() as pid from (select pg_sleep(0.3)) as s",
        },
    )
    code, payload = build_json("--workers", "2", project=tmp_path, target=pg_url)
    assert code == 0, payload
    assert query(pg_url, tmp_path, "select count(distinct pid) from main.t") == [(2,)]


def test_adding_a_value_builds_that_value_alone_and_shrinking_forgets_the_rest(
    tmp_path: Path, duckdb_url: str
) -> None:
    body = "-- check: rows > 0\nselect cast({{ year }} as integer) as year"
    write_project(tmp_path, {"t.sql": f"-- partition: year in 2015..2016\n{body}"})
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0
    (tmp_path / "t.sql").write_text(f"-- partition: year in 2015..2017\n{body}")
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0
    assert _runs(duckdb_url, tmp_path, payload["run_id"]) == [("", "success"), ("2017", "success")]
    (tmp_path / "t.sql").write_text(f"-- partition: year in 2016..2017\n{body}")
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0
    assert _runs(duckdb_url, tmp_path, payload["run_id"]) == [("", "success")]
    assert query(duckdb_url, tmp_path, "select year from main.t order by 1") == [(2016,), (2017,)]
    keys = query(
        duckdb_url,
        tmp_path,
        "select partition_key from dbluigi.models where model = 'main.t' order by 1",
    )
    assert [k[0] for k in keys] == ["", "2016", "2017"]
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0 and all(r["status"] == "up to date" for r in payload["tasks"])


def test_tables_a_partition_query_reads_are_dependencies(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "zz/years.csv": "y\n2020\n2021\n",
            "t.sql": "-- partition: year in (select y from zz.years)\nselect cast({{ year }} as integer) as year",
        },
    )
    from dbluigi.project import load_project

    assert "zz.years" in load_project(tmp_path, target=target_url).graph.parents("main.t")
    code, payload = build_json("--workers", "4", project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select year from main.t order by 1") == [(2020,), (2021,)]


def test_retry_of_a_partition_rebuild_rebuilds_that_partition(
    tmp_path: Path, target_url: str
) -> None:
    """`retry` after a failed `rebuild t --partition V` rebuilds V again, not every value."""
    write_project(tmp_path, {"t.sql": MODEL, "dbluigi.toml": PINNED})
    good = [(2014, 1, True), (2015, 1, True), (2016, 1, True)]
    _control(target_url, tmp_path, good)
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    _control(target_url, tmp_path, [*good[:2], (2016, 1, False)])
    code, payload = build_json(
        "t", "--partition", "2016", project=tmp_path, target=target_url, command="rebuild"
    )
    assert code == 1
    assert _runs(target_url, tmp_path, payload["run_id"]) == [("", "skipped"), ("2016", "failed")]

    _control(target_url, tmp_path, good)
    code, payload = build_json(project=tmp_path, target=target_url, command="retry")
    assert code == 0, payload
    assert _runs(target_url, tmp_path, payload["run_id"]) == [("", "success"), ("2016", "success")]


def test_retry_of_a_partition_rebuild_whose_reader_failed(tmp_path: Path, target_url: str) -> None:
    """`rebuild t+ --partition V` whose partitions built but whose reader failed: `retry`
    rebuilds the reader, without --partition (no model it selects is partitioned; a build
    refuses the option then, which made the retry fail with a usage error)."""
    write_project(
        tmp_path,
        {"t.sql": MODEL, "reader.sql": "select count(*) as n from main.t", "dbluigi.toml": PINNED},
    )
    _control(target_url, tmp_path, [(2014, 1, True), (2015, 1, True), (2016, 1, True)])
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    check = tmp_path / "reader.check.sql"
    check.write_text("select * from main.reader where n > 0\n")
    code, payload = build_json(
        "t+", "--partition", "2016", project=tmp_path, target=target_url, command="rebuild"
    )
    assert code == 1
    failed = [(t["model"], t["status"]) for t in payload["tasks"] if t["status"] != "success"]
    assert failed == [("main.reader", "failed")]

    check.write_text("select * from main.reader where n < 0\n")
    code, payload = build_json(project=tmp_path, target=target_url, command="retry")
    assert code == 0, payload
    assert [(t["model"], t["status"]) for t in payload["tasks"]] == [("main.reader", "success")]
