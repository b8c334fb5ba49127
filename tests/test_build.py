"""The build engine end to end on DuckDB and PostgreSQL: publish, staleness, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbluigi.targets import open_target
from tests.buildkit import build_json, cli, copy_example, query, ran, statuses
from tests.helpers import write_project as _write_project

MAIN = '[project]\ndefault_schema = "main"\n'


def write_project(root: Path, files: dict[str, str]) -> Path:
    """A test project whose top-level models live in schema main on both targets."""
    files = dict(files)
    files["dbluigi.toml"] = MAIN + files.get("dbluigi.toml", "")
    return _write_project(root, files)


EXAMPLE_MODELS = 12


def test_example_builds_then_nothing_then_exactly_the_edited_closure(
    tmp_path: Path, target_url: str
) -> None:
    project = copy_example(tmp_path)
    code, first = build_json(project=project, target=target_url)
    assert code == 0, first
    assert set(statuses(first).values()) == {"success"} and len(first["tasks"]) == EXAMPLE_MODELS
    assert {r["reason"] for r in first["tasks"]} == {"new"}
    # the patch ran: every county agency now carries "County" in its name
    bad = query(
        target_url,
        project,
        "select count(*) from staging.agencies where agency_type_name = 'County' and agency_name not like '%County%'",
    )
    assert bad == [(0,)]
    assert query(target_url, project, "select count(*) from api.cde_agencies")[0][0] == 300

    code, second = build_json(project=project, target=target_url)
    assert code == 0 and ran(second) == set()
    runs = query(
        target_url,
        project,
        "select count(*) from dbluigi.task_runs where run_id = %s",
        [second["run_id"]],
    )
    assert runs == [(0,)]  # no model SQL ran at all

    sql = project / "reporting" / "agency_reporting.sql"
    sql.write_text(sql.read_text() + "\n-- an edit\n")
    code, third = build_json(project=project, target=target_url)
    assert code == 0
    assert ran(third) == {"reporting.agency_reporting", "api.cde_agencies", "api.offense_annual"}
    reasons = {r["model"]: r["reason"] for r in third["tasks"] if r["status"] != "up to date"}
    assert reasons == {
        "reporting.agency_reporting": "definition changed",
        "api.cde_agencies": "upstream rebuilt",
        "api.offense_annual": "upstream rebuilt",
    }


def test_rebuild_makes_downstream_stale_and_plus_rebuilds_it_now(
    tmp_path: Path, target_url: str
) -> None:
    project = copy_example(tmp_path)
    assert build_json(project=project, target=target_url)[0] == 0
    code, rebuilt = build_json(
        "agency_reporting", project=project, target=target_url, command="rebuild"
    )
    assert code == 0 and ran(rebuilt) == {"reporting.agency_reporting"}
    assert statuses(rebuilt)["reporting.agency_reporting"] == "success"
    code, plan_out = cli("plan", "--json", project=project, target=target_url)
    import json

    plan = {m["model"]: m for m in json.loads(plan_out)["models"]}
    assert (
        plan["api.cde_agencies"]["run"] and plan["api.cde_agencies"]["reason"] == "upstream rebuilt"
    )
    assert (
        not plan["staging.agencies"]["run"] and plan["staging.agencies"]["reason"] == "up to date"
    )
    code, plus = build_json(
        "agency_reporting+", project=project, target=target_url, command="rebuild"
    )
    assert code == 0
    assert ran(plus) == {"reporting.agency_reporting", "api.cde_agencies", "api.offense_annual"}
    assert {r["reason"] for r in plus["tasks"] if r["status"] != "up to date"} == {"forced"}
    code, after = build_json(project=project, target=target_url)
    assert code == 0 and ran(after) == set()


def test_failing_check_keeps_published_table_and_skips_downstream(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "raw/people.csv": "id,name\n1,ann\n2,bob\n",
            "staging/people.sql": "-- check: unique(id)\nselect id, name from raw.people",
            "api/people.sql": "select * from staging.people",
            "api/other.sql": "select 1 as x",
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    (tmp_path / "raw" / "people.csv").write_text("id,name\n1,ann\n2,bob\n2,bobby\n")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    failed = results["staging.people"]
    assert failed["status"] == "failed" and failed["failure_class"] == "check"
    assert "unique(id)" in failed["error"] and "first violating rows" in failed["error"]
    assert "2 | 2" in failed["error"]  # the duplicate key and its count
    assert failed["file"] == "staging/people.sql" and failed["line"] == 1
    assert results["api.people"]["status"] == "skipped"
    assert results["api.people"]["failure_class"] == "upstream"
    assert "staging.people failed" in results["api.people"]["error"]
    assert sorted(query(target_url, tmp_path, "select id, name from staging.people")) == [
        (1, "ann"),
        (2, "bob"),
    ]
    assert query(target_url, tmp_path, "select count(*) from staging.people__dbluigi_failed") == [
        (3,)
    ]
    stored = query(
        target_url,
        tmp_path,
        "select status, failure_class from dbluigi.task_runs where run_id = %s order by model",
        [payload["run_id"]],
    )
    assert sorted(stored) == [
        ("failed", "check"),
        ("skipped", "upstream"),
        ("success", None),
    ] or sorted(stored) == [
        ("failed", "check"),
        ("skipped", "upstream"),
    ]


def test_check_file_violation_shows_sql_and_rows(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "t.sql": "select 1 as id, -5 as amount union all select 2, 7",
            "t.check.sql": "-- amounts are never negative\nselect id, amount from main.t where amount < 0",
        },
    )
    target_project = tmp_path
    code, payload = build_json(project=target_project, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert result["failure_class"] == "check"
    assert result["file"] == "t.check.sql" and result["line"] == 1
    assert "select id, amount from main.t where amount < 0" in result["error"]
    assert "id | amount" in result["error"] and "1 | -5" in result["error"]


def test_sql_error_in_a_model_has_class_file_and_line(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "good.sql": "select 1 as id",
            "bad.sql": "-- description: refers to a column that does not exist\nselect id,\n  no_such_column\nfrom main.good",
            "runtime.sql": "select cast('abc' as integer) as n",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    assert results["main.good"]["status"] == "success"
    bad = results["main.bad"]
    assert bad["failure_class"] == "syntax" and bad["file"] == "bad.sql"
    assert bad["line"] == 3  # the line of no_such_column
    assert "no_such_column" in bad["error"]
    assert results["main.runtime"]["failure_class"] == "runtime"


def test_selection_never_builds_unselected_parents(tmp_path: Path, target_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select * from main.a"})
    code, payload = build_json("b", project=tmp_path, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert result["status"] == "skipped" and result["failure_class"] == "upstream"
    assert "main.a does not exist (not selected and never built)" in result["error"]
    code, payload = build_json("+b", project=tmp_path, target=target_url)
    assert code == 0 and ran(payload) == {"main.a", "main.b"}
    code, payload = build_json("b", project=tmp_path, target=target_url)
    assert code == 0 and ran(payload) == set()


def test_missing_source_is_reported(tmp_path: Path, target_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select * from raw.nowhere"})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert "raw.nowhere does not exist" in payload["tasks"][0]["error"]


def test_a_misspelt_relation_fails_naming_the_model_or_table_meant(
    tmp_path: Path, target_url: str
) -> None:
    project = copy_example(tmp_path)
    (project / "reporting/typo.sql").write_text("select * from staging.agencys\n")
    (project / "reporting/outside.sql").write_text("select * from ext.lookup_code\n")
    session = open_target(target_url, project_dir=project).connect()
    session.ensure_schema("ext")
    session.execute("create table ext.lookup_codes (code integer)")
    session.close()
    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    typo, outside = results["reporting.typo"], results["reporting.outside"]
    assert typo["status"] == "failed" and typo["failure_class"] == "config"
    assert typo["error"] == (
        "staging.agencys does not exist: no model produces it and the target has no such "
        "relation; did you mean staging.agencies?"
    )
    assert outside["error"].endswith("did you mean ext.lookup_codes?")  # a table, not a model
    assert statuses(payload)["staging.agencies"] == "success"  # the rest is built


def test_independent_branches_carry_on_unless_fail_fast(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "a_bad.sql": "select cast('x' as integer) as n",
            "b_after_bad.sql": "select * from main.a_bad",
            "c_fine.sql": "select 1 as n",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload) == {
        "main.a_bad": "failed",
        "main.b_after_bad": "skipped",
        "main.c_fine": "success",
    }
    (tmp_path / "c_fine.sql").write_text("select 2 as n")
    # one worker: with more, c_fine may start alongside a_bad, before anything has failed
    code, payload = build_json("--fail-fast", "--workers", "1", project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload)["main.c_fine"] == "skipped"


def test_view_and_sql_kinds(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "base.sql": "select 1 as id, 'open' as status union all select 2, 'open'",
            "fixes/close_one.sql": "update main.base set status = 'closed' where id = 2",
            "fixes/close_one.check.sql": "select * from main.base where status not in ('open', 'closed')",
            "v_open.sql": "-- kind: view\n-- check: rows > 0\nselect * from main.base where status = 'open'",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select id from main.v_open") == [(1,)]
    # a sql model whose check fails rolls its statements back
    (tmp_path / "fixes" / "close_one.sql").write_text(
        "update main.base set status = 'weird' where id = 1"
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload)["fixes.close_one"] == "failed"
    assert sorted(query(target_url, tmp_path, "select id, status from main.base")) == [
        (1, "open"),
        (2, "closed"),
    ]


def test_views_over_a_swapped_table_stay_correct(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "base.sql": "select 1 as id",
            "v.sql": "-- kind: view\nselect id * 10 as ten from main.base",
            "vv.sql": "-- kind: view\nselect ten + 1 as eleven from main.v",
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    (tmp_path / "base.sql").write_text("select 2 as id")
    code, _ = build_json(project=tmp_path, target=target_url)
    assert code == 0
    assert query(target_url, tmp_path, "select eleven from main.vv") == [(21,)]


def test_history_and_check_commands(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "a.sql": "-- check: rows > 0\nselect 1 as id",
            "b.sql": "-- check: unique(id)\nselect * from main.a",
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    code, output = cli("history", "--last", "5", project=tmp_path, target=target_url)
    assert code == 0 and "main.a" in output and "success" in output
    code, output = cli("history", "--model", "b", project=tmp_path, target=target_url)
    assert code == 0 and "main.b" in output
    code, output = cli("check", project=tmp_path, target=target_url)
    assert code == 0 and "2 passed, 0 failed" in output


def test_seed_types_and_bad_csv(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "raw/things.csv": "id,price,day,flag,label\n1,1.50,2024-01-02,true,a\n2,,2024-02-03,false,\n",
            "dbluigi.toml": '[seeds."raw.things"]\ncolumn_types = { label = "text", id = "bigint" }\n',
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    rows = query(
        target_url, tmp_path, "select id, price, day, flag, label from raw.things order by id"
    )
    assert [r[0] for r in rows] == [1, 2] and rows[1][1] is None and rows[1][4] is None
    assert str(rows[0][2]) == "2024-01-02" and rows[0][3] is True
    (tmp_path / "raw" / "things.csv").write_text(
        "id,price,day,flag,label\n1,2,2024-01-01,true,x\n3\n"
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert (
        result["failure_class"] == "config"
        and result["file"] == "raw/things.csv"
        and result["line"] == 3
    )
    assert "row has 1 values, header has 5" in result["error"]


def test_retries_only_transient_failures(
    tmp_path: Path, target_url: str, retry_waits: list[float]
) -> None:
    write_project(
        tmp_path,
        {
            "converted.sql": "-- retries: 3\nselect cast('x' as integer) as n",
            "broken.sql": "-- retries: 3\nselect nope from main.ok",
            "ok.sql": "select 1 as n",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    assert {m: (r["failure_class"], len(r["attempts"])) for m, r in results.items()} == {
        "main.converted": ("runtime", 1),
        "main.broken": ("syntax", 1),
        "main.ok": (None, 1),
    }
    rows = query(
        target_url,
        tmp_path,
        "select model, attempt, error from dbluigi.task_runs where run_id = %s "
        "and status = 'failed' order by model",
        [payload["run_id"]],
    )
    assert [(m, a) for m, a, _ in rows] == [("main.broken", 1), ("main.converted", 1)]
    for _, _, error in rows:  # the record says why the retries were not used
        assert "not retried (retries: 3): the error is not transient" in error
    assert retry_waits == []


def test_a_transient_failure_is_retried_until_it_passes(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session holds a row the model updates: a write-write conflict on DuckDB,
    a lock timeout on PostgreSQL. It lets go during the wait after the first attempt."""
    postgres = target_url.startswith("postgresql")
    holder = open_target(target_url, project_dir=tmp_path).connect()
    holder.ensure_schema("main")
    holder.execute("create table main.counter (id integer, n integer)")
    holder.execute("insert into main.counter values (1, 0)")
    holder.execute("begin")
    holder.execute("update main.counter set n = 100 where id = 1")  # not committed
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        holder.execute("rollback")

    monkeypatch.setattr("dbluigi.runner._sleep", wait)
    lock_timeout = "set local lock_timeout = '100ms';\n" if postgres else ""
    write_project(
        tmp_path,
        {
            "bump.sql": "-- kind: sql\n-- unmanaged: true\n-- retries: 3\n"
            f"{lock_timeout}update main.counter set n = n + 1 where id = 1"
        },
    )
    try:
        code, payload = build_json(project=tmp_path, target=target_url)
    finally:
        holder.close()
    assert code == 0, payload
    (result,) = payload["tasks"]
    assert result["status"] == "success" and len(result["attempts"]) == 2
    rows = query(
        target_url,
        tmp_path,
        "select attempt, status, failure_class, error from dbluigi.task_runs "
        "where run_id = %s order by attempt",
        [payload["run_id"]],
    )
    assert [r[:3] for r in rows] == [(1, "failed", "runtime"), (2, "success", None)]
    conflict = "lock timeout" if postgres else "Conflict on update"
    assert conflict in rows[0][3] and "not retried" not in rows[0][3]
    assert len(waits) == 1 and 0.5 <= waits[0] <= 1.0  # the first wait, jittered
    assert query(target_url, tmp_path, "select n from main.counter") == [(1,)]


def test_unreachable_target_masks_password(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    code, output = cli(
        "build", project=tmp_path, target="postgresql://etl:s3cret@127.0.0.1:1/nowhere"
    )
    assert code == 2
    assert "s3cret" not in output and "***" in output


@pytest.mark.postgres
def test_password_never_reaches_the_audit_tables(tmp_path: Path, pg_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    url = pg_url.replace("root@", "root:hunter2@")
    assert build_json(project=tmp_path, target=url)[0] == 0
    targets = query(pg_url, tmp_path, "select target from dbluigi.runs")
    assert targets and all("hunter2" not in t[0] for t in targets)
    for command in ("build", "plan", "history"):
        code, output = cli(command, project=tmp_path, target=url)
        assert code == 0
        assert "hunter2" not in output


@pytest.mark.postgres
def test_two_workers_on_postgres(tmp_path: Path, pg_url: str) -> None:
    project = copy_example(tmp_path)
    code, payload = build_json("--workers", "2", project=project, target=pg_url)
    assert code == 0, payload
    assert set(statuses(payload).values()) == {"success"}
    # two independent models that each hold their session for a moment run side by side,
    # each in its own session
    write_project(
        tmp_path / "wide",
        {
            f"w{i}.sql": "select pg_backend_pid() as pid from (select pg_sleep(0.3)) as s"
            for i in range(4)
        },
    )
    code, payload = build_json("--workers", "2", project=tmp_path / "wide", target=pg_url)
    assert code == 0, payload
    pids = query(
        pg_url,
        project,
        "select pid from main.w0 union select pid from main.w1 union "
        "select pid from main.w2 union select pid from main.w3",
    )
    assert len(pids) == 2  # a pool of two sessions, reused


@pytest.mark.postgres
def test_target_workers_from_dbluigi_toml_and_the_option_wins(tmp_path: Path, pg_url: str) -> None:
    files = {
        f"w{i}.sql": "select pg_backend_pid() as pid from (select pg_sleep(0.3)) as s"
        for i in range(6)
    }
    write_project(tmp_path, {**files, "dbluigi.toml": "[target]\nworkers = 3\n"})
    sessions = " union ".join(f"select pid from main.w{i}" for i in range(6))
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 0, payload
    assert len(query(pg_url, tmp_path, sessions)) == 3  # three sessions at once
    everything = [f"w{i}" for i in range(6)]
    code, payload = build_json(
        *everything, "--workers", "1", project=tmp_path, target=pg_url, command="rebuild"
    )
    assert code == 0, payload
    assert len(query(pg_url, tmp_path, sessions)) == 1


def test_target_workers_is_validated(tmp_path: Path) -> None:
    from dbluigi.config import load_config
    from dbluigi.errors import ProjectError

    for bad in ("0", '"4"', "2.5", "true"):
        (tmp_path / "dbluigi.toml").write_text(f'[target]\nurl = "duckdb:///x"\nworkers = {bad}\n')
        with pytest.raises(ProjectError, match=r"\[target\] workers") as caught:
            load_config(tmp_path)
        assert caught.value.path == "dbluigi.toml" and caught.value.line == 3
    (tmp_path / "dbluigi.toml").write_text("[target]\nworkers = 4\n")
    assert load_config(tmp_path).workers == 4
    (tmp_path / "dbluigi.toml").write_text("")
    assert load_config(tmp_path).workers is None  # the target's default


def test_human_summary_and_errors(tmp_path: Path, target_url: str) -> None:
    write_project(tmp_path, {"ok.sql": "select 1 as id", "bad.sql": "select nope from main.ok"})
    code, output = cli("build", project=tmp_path, target=target_url)
    assert code == 1
    assert "built 1, failed 1, skipped 0, up to date 0" in output
    assert "syntax error in main.bad:" in output and "bad.sql:" in output
    code, output = cli("build", project=tmp_path, target=target_url)
    assert "up to date 1" in output


def test_human_summary_of_a_large_run_lists_failures_and_the_slowest(
    tmp_path: Path, duckdb_url: str
) -> None:
    files = {f"m{i:02d}.sql": f"select {i} as id" for i in range(60)}
    files["bad.sql"] = "select nope from main.m00"
    write_project(tmp_path, files)
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 1
    assert "built 60, failed 1, skipped 0, up to date 0" in output
    table_rows = [line for line in output.splitlines() if "│" in line and "main." in line]
    assert len(table_rows) == 21  # the failure and the 20 slowest successes
    assert any("main.bad" in line and "failed" in line for line in table_rows)
    assert "40 more tasks" in output
    assert sum(1 for line in output.splitlines() if line.startswith("success main.")) == 60


def test_human_summary_when_a_root_fails_lists_the_first_skipped_only(
    tmp_path: Path, duckdb_url: str
) -> None:
    files = {f"m{i:02d}.sql": "select id from main.root" for i in range(60)}
    files["root.sql"] = "select nope as id"
    write_project(tmp_path, files)
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 1
    assert "built 0, failed 1, skipped 60" in output
    table_rows = [line for line in output.splitlines() if "│" in line and "main." in line]
    assert len(table_rows) == 11  # the failure and the first ten skipped
    assert "50 more tasks" in output


def test_default_workers_are_four_per_core_from_four_to_sixteen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dbluigi.targets import base

    for cores, workers in ((1, 4), (2, 8), (3, 12), (4, 16), (64, 16)):
        monkeypatch.setattr(base.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert base.machine_workers() == workers


@pytest.mark.postgres
def test_default_workers_on_postgres_come_from_the_machine(tmp_path: Path, pg_url: str) -> None:
    from dbluigi.targets.base import machine_workers

    count = 2 * machine_workers()
    files = {
        f"w{i}.sql": "select pg_backend_pid() as pid from (select pg_sleep(0.2)) as s"
        for i in range(count)
    }
    write_project(tmp_path, files)
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 0, payload
    assert not payload["notes"]
    (workers,) = query(
        pg_url, tmp_path, "select workers from dbluigi.runs where run_id = %s", [payload["run_id"]]
    )[0]
    # the machine's default, unless the server has few connections left (not so here)
    assert workers == machine_workers()
    sessions = " union ".join(f"select pid from main.w{i}" for i in range(count))
    assert len(query(pg_url, tmp_path, sessions)) == workers  # that many sessions at once


def test_duckdb_builds_with_two_sessions_a_core_by_default(tmp_path: Path, duckdb_url: str) -> None:
    from dbluigi.targets.base import usable_cores

    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select 2 as id"})
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0 and not payload["notes"]
    (workers,) = query(
        duckdb_url,
        tmp_path,
        "select workers from dbluigi.runs where run_id = %s",
        [payload["run_id"]],
    )[0]
    assert workers == max(2, min(8, 2 * usable_cores()))


def test_duckdb_sessions_of_one_process_build_at_once(tmp_path: Path, duckdb_url: str) -> None:
    """One process writes the file, but its sessions build models side by side: every
    model is built, recorded once, and the attempts name more than one worker."""
    heavy = "select count(*) as n from range(3000000) as t(x) where x % {k} = 0"
    models = {f"m{k}.sql": heavy.format(k=k) for k in range(2, 10)}
    models["top.sql"] = " union all ".join(f"select n from main.m{k}" for k in range(2, 10))
    write_project(tmp_path, models)
    code, payload = build_json("--workers", "4", project=tmp_path, target=duckdb_url)
    assert code == 0 and not payload["notes"], payload
    assert ran(payload) == {f"main.m{k}" for k in range(2, 10)} | {"main.top"}
    workers = query(
        duckdb_url,
        tmp_path,
        "select count(distinct worker), count(*) from dbluigi.task_runs where run_id = %s",
        [payload["run_id"]],
    )
    assert workers[0][0] > 1 and workers[0][1] == 9
    assert query(duckdb_url, tmp_path, "select count(*) from main.top") == [(8,)]
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0 and ran(payload) == set()


def test_unmanaged_updates_of_one_outside_table_never_collide(
    tmp_path: Path, target_url: str
) -> None:
    """Nothing orders two unmanaged files updating one outside table: PostgreSQL makes the
    second wait for the first's row locks, and on DuckDB (whose sessions of one process
    build at once) they take turns rather than fail with a write-write conflict."""
    session = open_target(target_url, project_dir=tmp_path).connect()
    try:
        session.execute("create schema if not exists raw")
        session.execute(
            "create table raw.ext as select i as id, 0 as a from generate_series(1, 200000) as t(i)"
        )
    finally:
        session.close()
    write_project(
        tmp_path,
        {
            f"fix/u{k}.sql": "-- kind: sql\n-- unmanaged: true\n"
            f"update raw.ext set a = a + {k} where id % 2 = 0"
            for k in range(1, 5)
        },
    )
    code, payload = build_json("--workers", "4", project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select sum(a) from raw.ext") == [(10 * 100000,)]
