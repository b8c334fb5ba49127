"""Damage and lost connections: a clear error and a recorded run, never a traceback.

A lost target connection, a damaged state schema, a corrupt DuckDB file, a dump's
temporary file left by a killed process, an unbounded partition range, variables that
add statements: each is reported with what is wrong and what to do, and the next build
works.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.buildkit import build_json, cli, cli_process, query, ran
from tests.test_build import write_project

# --- a corrupt DuckDB file ---------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["whole", "block"])
def test_a_corrupt_duckdb_file_is_reported_as_corrupt(
    tmp_path: Path, duckdb_url: str, damage: str
) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    assert build_json(project=tmp_path, target=duckdb_url)[0] == 0
    path = Path(duckdb_url.removeprefix("duckdb:///"))
    data = bytearray(path.read_bytes())
    if damage == "whole":
        data = bytearray(os.urandom(len(data)))
    else:
        data[4096:12288] = os.urandom(8192)  # the header blocks and the first data block
    path.write_bytes(bytes(data))
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 2, output
    assert "corrupt" in output and str(path) in output
    assert "another process" not in output
    assert "move" in output and "aside" in output
    assert "Traceback" not in output


# --- a dump's temporary file left by a killed process ----------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dump_removes_temporary_files_of_dead_processes_only(
    tmp_path: Path, duckdb_url: str
) -> None:
    write_project(
        tmp_path,
        {"items.sql": "select 1 as id", "items_csv.sql": "-- kind: dump\nselect * from main.items"},
    )
    exports = tmp_path / "exports"
    exports.mkdir()
    dead = exports / f".items_csv.csv.{_dead_pid()}-0badc0de.tmp"
    dead.write_text("half a file")
    alive = exports / f".items_csv.csv.{os.getppid()}-0a11ce00.tmp"  # a live process's
    alive.write_text("being written")
    other = exports / f".other.csv.{_dead_pid()}-0badc0de.tmp"  # not this dump's file
    other.write_text("someone else's")
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0, payload
    assert not dead.exists()
    assert alive.exists() and other.exists()
    assert (exports / "items_csv.csv").read_text().splitlines() == ["id", "1"]


@pytest.mark.postgres
def test_sigkill_during_a_dump_leaves_no_temporary_file_after_the_next_build(
    tmp_path: Path, pg_url: str
) -> None:
    from tests.test_crash import _wait_for_query

    write_project(
        tmp_path,
        {
            "items.sql": "select 1 as id",
            "items_csv.sql": "-- kind: dump\n"
            "select id, pg_sleep(30) as slept from main.items cross join generate_series(1, 2)",
        },
    )
    process = cli_process("build", project=tmp_path, target=pg_url)
    _wait_for_query(pg_url, tmp_path, "pg_sleep(30)")
    exports = tmp_path / "exports"
    deadline = time.monotonic() + 10
    while not list(exports.glob(".items_csv.csv.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert list(exports.glob(".items_csv.csv.*.tmp")), "the killed dump left its temporary file"
    (tmp_path / "items_csv.sql").write_text("-- kind: dump\nselect id from main.items")
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 0, payload
    assert [p.name for p in exports.iterdir()] == ["items_csv.csv"]


# --- a partition range too large -----------------------------------------------------------------


def test_a_huge_partition_range_is_a_project_error_without_listing_it(
    tmp_path: Path, duckdb_url: str
) -> None:
    import tracemalloc

    write_project(
        tmp_path,
        {
            "big.sql": "-- check: rows > 0\n-- partition: n in 1..100000000\nselect {{ n }} as n",
        },
    )
    tracemalloc.start()
    try:
        code, output = cli("plan", project=tmp_path, target=duckdb_url)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2, output
    assert "big.sql:2" in output and "too many partitions" in output
    assert "100000000 values" in output and "10000" in output
    assert "max_partitions" in output
    assert peak < 200 << 20  # the range was never listed


def test_max_partitions_is_configurable_and_bounds_partition_queries(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "dbluigi.toml": "max_partitions = 3\n",
            "few.sql": "-- partition: n in 1..3\nselect {{ n }} as n",
            "many.sql": "-- partition: n in 1..4\nselect {{ n }} as n",
        },
    )
    code, output = cli("build", "few", project=tmp_path, target=target_url)
    assert code == 0, output
    code, output = cli("build", "many", project=tmp_path, target=target_url)
    assert code == 2 and "many.sql:1" in output and "at most 3" in output
    (tmp_path / "many.sql").write_text(
        "-- partition: n in (select n from main.few)\nselect {{ n }} as n"
    )
    code, output = cli("build", "many", project=tmp_path, target=target_url)
    assert code == 0, output
    (tmp_path / "many.sql").write_text(
        "-- partition: n in (select n from main.few union all select 9)\nselect {{ n }} as n"
    )
    code, output = cli("build", "many", project=tmp_path, target=target_url)
    assert code == 2, output
    assert "many.sql:1" in output and "more than 3 rows" in output


def test_max_partitions_must_be_a_whole_number(tmp_path: Path, duckdb_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "dbluigi.toml": "max_partitions = 0\n"})
    code, output = cli("plan", project=tmp_path, target=duckdb_url)
    assert code == 2 and "max_partitions" in output and "dbluigi.toml" in output


# --- a header check on a column the model lacks -------------------------------------------------


def test_a_header_check_on_a_missing_column_names_the_line_and_the_model(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "staging/x.sql": "-- description: x\n-- index: id\n-- check: not_null(nope)\n"
            "select 1 as id",
            "staging/y.sql": "-- check: unique(id, Missing)\nselect 1 as id",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    x, y = results["staging.x"], results["staging.y"]
    assert (x["status"], x["failure_class"], x["file"], x["line"]) == (
        "failed",
        "config",
        "staging/x.sql",
        3,
    )
    assert x["error"].startswith(
        "staging/x.sql:3: check not_null(nope): column nope does not exist in staging.x"
    )
    assert "dbluigi_new" not in x["error"]
    assert (y["failure_class"], y["line"]) == ("config", 1)
    assert "column Missing does not exist in staging.y" in y["error"]
    code, output = cli("build", project=tmp_path, target=target_url)
    assert "staging/x.sql:3: check not_null(nope): column nope does not exist" in output
    assert query(
        target_url,
        tmp_path,
        "select failure_class, line from dbluigi.task_runs where model = %s",
        ["staging.x"],
    ) == [("config", 3), ("config", 3)]


# --- variables are SQL text within a statement ---------------------------------------------------


def test_a_variable_may_not_add_a_statement(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "other/t.sql": "select 1 as id",
            "a.sql": "-- depends: other.t\nselect 1 as id\nwhere {{ cond }}",
            "b.sql": "select '{{ text }}' as t",
        },
    )
    assert (
        cli("build", "--var", "cond=1 = 1", "--var", "text=x", project=tmp_path, target=target_url)[
            0
        ]
        == 0
    )
    code, output = cli(
        "build",
        "--var",
        "cond=1 = 1; drop table other.t",
        "--var",
        "text=a; b",  # inside a string: fine
        project=tmp_path,
        target=target_url,
    )
    assert code == 2, output
    assert "a.sql:3" in output and "'cond'" in output and "statement" in output
    assert "SQL text" in output
    assert query(target_url, tmp_path, "select id from other.t") == [(1,)]
    code, output = cli(
        "build", "--var", "cond=1 = 1", "--var", "text=a; b", project=tmp_path, target=target_url
    )
    assert code == 0, output
    assert query(target_url, tmp_path, "select t from main.b") == [("a; b",)]
    code, output = cli(
        "build",
        "--var",
        "cond=1 = 1",
        "--var",
        "text=x'; drop table other.t; --",
        project=tmp_path,
        target=target_url,
    )
    assert code == 2 and "b.sql:1" in output and "'text'" in output
    assert query(target_url, tmp_path, "select id from other.t") == [(1,)]


# --- history and check need no variables ---------------------------------------------------------


def test_history_and_check_work_without_the_variables_of_the_build(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "raw/t.sql": "select 1 as id, 2020 as year",
            "a.sql": "-- check: not_null(id)\nselect id from {{ schema }}.t where year = {{ year }}",
            "b.sql": "select id from main.a",
            "b.check.sql": "select * from main.b where id > {{ bound }}",
        },
    )
    variables = ["--var", "schema=raw", "--var", "year=2020", "--var", "bound=5"]
    assert cli("build", *variables, project=tmp_path, target=target_url)[0] == 0
    code, output = cli("history", project=tmp_path, target=target_url)
    assert code == 0, output
    assert "main.a" in output and "success" in output
    code, output = cli("history", "--model", "a", project=tmp_path, target=target_url)
    assert code == 0 and "main.a" in output, output
    code, output = cli("history", "--slow", project=tmp_path, target=target_url)
    assert code == 0, output
    code, output = cli("check", "a", project=tmp_path, target=target_url)
    assert code == 0, output
    assert "success" in output and "main.a" in output
    code, output = cli("check", project=tmp_path, target=target_url)
    assert code == 2, output
    assert "b.check.sql:1" in output and "'bound'" in output and "--var bound=" in output
    code, output = cli("check", "--var", "bound=5", project=tmp_path, target=target_url)
    assert code == 0, output
    assert "2 passed, 0 failed" in output


# --- a damaged state schema ----------------------------------------------------------------------

DAMAGE = {
    "runs dropped": ["drop table dbluigi.runs"],
    "task_runs dropped": ["drop table dbluigi.task_runs"],
    "models dropped": ["drop table dbluigi.models"],
    "column dropped": ["alter table dbluigi.task_runs drop column checks"],
    "models column dropped": ["alter table dbluigi.models drop column generation"],
    "models nulled": ["update dbluigi.models set build_id = null, generation = null"],
}


def _damage(target: str, project: Path, statements: list[str]) -> None:
    from dbluigi.targets import open_target

    session = open_target(target, project_dir=project).connect()
    try:
        for statement in statements:
            session.execute(statement)
    finally:
        session.close()


@pytest.mark.parametrize("damage", list(DAMAGE), ids=[d.replace(" ", "_") for d in DAMAGE])
def test_a_damaged_state_schema_is_a_clear_error_and_debug_repairs_it(
    tmp_path: Path, target_url: str, damage: str
) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select id + 1 as id from main.a"})
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    _damage(target_url, tmp_path, DAMAGE[damage])
    commands = [["build"], ["plan"], ["rebuild", "a"]]
    if damage != "models nulled":  # those read no models rows
        commands += [["history"], ["check"]]
    for command in commands:
        code, output = cli(*command, project=tmp_path, target=target_url)
        assert code == 2, (command, output)
        assert "state" in output and "damaged" in output, (command, output)
        assert "dbluigi debug --repair-state" in output, (command, output)
        assert "Traceback" not in output
    assert query(target_url, tmp_path, "select id from main.b") == [(2,)]  # never dropped

    code, output = cli("debug", project=tmp_path, target=target_url)
    assert code == 2 and "connection: ok" in output and "--repair-state" in output, output
    code, output = cli("debug", "--repair-state", project=tmp_path, target=target_url)
    assert code == 0, output
    assert "repaired:" in output and "state: ok" in output
    assert query(target_url, tmp_path, "select id from main.b") == [(2,)]
    code, output = cli("debug", project=tmp_path, target=target_url)
    assert code == 0 and "state: ok" in output, output

    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    forgotten = "models" in damage
    assert ran(payload) == ({"main.a", "main.b"} if forgotten else set())
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0 and ran(payload) == set()


def test_debug_on_a_fresh_target_and_a_state_folder_that_is_a_file(
    tmp_path: Path, target_url: str
) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    code, output = cli("debug", project=tmp_path, target=target_url)
    assert code == 0 and "connection: ok" in output and "state: ok" in output, output
    state_dir = tmp_path / ".dbluigi"
    if state_dir.exists():
        import shutil

        shutil.rmtree(state_dir)
    state_dir.write_text("not a folder")
    for command in ("build", "debug", "history", "plan"):
        code, output = cli(command, project=tmp_path, target=target_url)
        assert code == 2, (command, output)
        assert ".dbluigi is a file" in output and "move the file" in output
        assert "Traceback" not in output


# --- the PostgreSQL target connection lost mid-build ---------------------------------------------


def _terminate_dbluigi_backends(url: str, project: Path) -> int:
    """pg_terminate_backend of every dbluigi session on this test's database."""
    rows = query(
        url,
        project,
        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid() "
        "and application_name = 'dbluigi' and backend_type = 'client backend'",
    )
    return int(rows[0][0])


@pytest.mark.postgres
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_lost_target_connection_fails_the_task_and_closes_the_run(
    tmp_path: Path, pg_url: str, workers: str
) -> None:
    from tests.test_crash import _wait_for_query

    write_project(
        tmp_path,
        {
            "a.sql": "select 1 as id",
            "slow.sql": "select id + 1 as id from main.a cross join (select pg_sleep(5)) as s",
            "after.sql": "select id from main.slow",
        },
    )
    process = cli_process("build", "--json", "--workers", workers, project=tmp_path, target=pg_url)
    _wait_for_query(pg_url, tmp_path, "pg_sleep(5)")
    assert _terminate_dbluigi_backends(pg_url, tmp_path) >= 1
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (out, err)
    assert "Traceback" not in err and "InterfaceError" not in err, err
    import json

    payload = json.loads(out)
    results = {r["model"]: r for r in payload["tasks"]}
    slow = results["main.slow"]
    assert (slow["status"], slow["failure_class"]) == ("failed", "runtime")
    assert "connection to the target lost" in slow["error"]
    assert results["main.after"]["status"] == "skipped"
    assert payload["artifact"] and Path(payload["artifact"]).exists()
    artifact = json.loads(Path(payload["artifact"]).read_text())
    assert artifact["status"] == "failed"
    assert {t["model"]: t["failure_class"] for t in artifact["tasks"]}["main.slow"] == "runtime"
    assert query(pg_url, tmp_path, "select status from dbluigi.runs") == [("failed",)]
    rows = query(
        pg_url,
        tmp_path,
        "select status, failure_class from dbluigi.task_runs where model = 'main.slow'",
    )
    assert rows == [("failed", "runtime")]

    code, again = build_json(project=tmp_path, target=pg_url)
    assert code == 0, again
    assert {r["model"] for r in again["tasks"] if r["status"] == "success"} == {
        "main.slow",
        "main.after",
    }
    assert query(pg_url, tmp_path, "select id from main.after") == [(2,)]


@pytest.mark.postgres
def test_a_lost_target_connection_without_json_prints_a_clear_message(
    tmp_path: Path, pg_url: str
) -> None:
    from tests.test_crash import _wait_for_query

    write_project(tmp_path, {"slow.sql": "select 1 as id from (select pg_sleep(5)) as s"})
    process = cli_process("build", project=tmp_path, target=pg_url)
    _wait_for_query(pg_url, tmp_path, "pg_sleep(5)")
    _terminate_dbluigi_backends(pg_url, tmp_path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (out, err)
    assert "Traceback" not in out + err
    assert "connection to the target lost" in err
    assert "run artifact:" in out
