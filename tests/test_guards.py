"""Guards and the failure taxonomy: timeouts, the cost guard, and one example of each class."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dbluigi.config import load_config
from dbluigi.errors import FAILURE_CLASSES, ProjectError
from dbluigi.guards import format_seconds
from dbluigi.targets import open_target
from tests.buildkit import build_json, cli, query
from tests.helpers import write_project as _write_project


def write_project(root: Path, files: dict[str, str], *, project: str = "", extra: str = "") -> Path:
    """A project with top-level models in schema main; ``project`` adds [project] keys."""
    toml = '[project]\ndefault_schema = "main"\n' + project + extra
    return _write_project(root, {**files, "dbluigi.toml": toml})


def task_runs(url: str, project: Path, run_id: str) -> list[tuple[str, int, str, str | None]]:
    return sorted(
        query(
            url,
            project,
            "select model, attempt, status, failure_class from dbluigi.task_runs where run_id = %s",
            [run_id],
        )
    )


# -- timeouts ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_timeout_stops_a_sleeping_query_and_leaves_the_published_table(
    tmp_path: Path, pg_url: str
) -> None:
    write_project(
        tmp_path,
        {"slow.sql": "select 1 as id", "after.sql": "select * from main.slow"},
    )
    assert build_json(project=tmp_path, target=pg_url)[0] == 0
    (tmp_path / "slow.sql").write_text(
        "-- description: sleeps past its timeout\n-- timeout: 1s\nselect 2 as id from pg_sleep(5)\n"
    )
    started = time.perf_counter()
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert time.perf_counter() - started < 4.5  # stopped at 1 s, not after the 5 s sleep
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    slow = results["main.slow"]
    assert slow["status"] == "failed" and slow["failure_class"] == "timeout"
    assert slow["file"] == "slow.sql" and slow["line"] == 1  # the statement that was stopped
    assert "ran longer than its timeout of 1s (set by -- timeout: on line 2)" in slow["error"]
    assert "nothing was published" in slow["error"]
    assert results["main.after"]["failure_class"] == "upstream"
    assert query(pg_url, tmp_path, "select id from main.slow") == [(1,)]  # untouched
    relations = query(
        pg_url, tmp_path, "select tablename from pg_tables where schemaname = 'main' order by 1"
    )
    assert relations == [("after",), ("slow",)]  # the new table was rolled back
    assert ("main.slow", 1, "failed", "timeout") in task_runs(pg_url, tmp_path, payload["run_id"])


@pytest.mark.postgres
def test_project_default_timeout_on_postgres_and_header_wins(tmp_path: Path, pg_url: str) -> None:
    write_project(
        tmp_path,
        {
            "slow.sql": "select 1 as id from pg_sleep(3)",
            "patient.sql": "-- timeout: 10s\nselect 1 as id from pg_sleep(1.5)",
        },
        project='timeout = "1s"\n',
    )
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    assert results["main.slow"]["failure_class"] == "timeout"
    assert "[project] timeout in dbluigi.toml" in results["main.slow"]["error"]
    assert results["main.patient"]["status"] == "success"


def test_timeout_interrupts_duckdb_and_leaves_the_published_table(
    tmp_path: Path, duckdb_url: str
) -> None:
    write_project(tmp_path, {"big.sql": "select 1 as n"})
    assert build_json(project=tmp_path, target=duckdb_url)[0] == 0
    (tmp_path / "big.sql").write_text(
        "-- timeout: 1s\nselect count(*) as n from range(100000000) as a, range(100000) as b\n"
    )
    started = time.perf_counter()
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert time.perf_counter() - started < 10
    assert code == 1
    (result,) = payload["tasks"]
    assert result["failure_class"] == "timeout" and result["file"] == "big.sql"
    assert "ran longer than its timeout of 1s" in result["error"]
    assert query(duckdb_url, tmp_path, "select n from main.big") == [(1,)]
    # the session is still usable after the interrupt: the next build publishes
    (tmp_path / "big.sql").write_text("-- timeout: 1s\nselect 2 as n\n")
    assert build_json(project=tmp_path, target=duckdb_url)[0] == 0
    assert query(duckdb_url, tmp_path, "select n from main.big") == [(2,)]


def test_timeout_config_is_validated(tmp_path: Path) -> None:
    (tmp_path / "dbluigi.toml").write_text('[project]\nname = "x"\ntimeout = "soon"\n')
    with pytest.raises(ProjectError) as caught:
        load_config(tmp_path)
    assert caught.value.path == "dbluigi.toml" and caught.value.line == 3
    assert "[project] timeout" in str(caught.value) and "bad duration" in str(caught.value)
    (tmp_path / "dbluigi.toml").write_text('[project]\ntimeout = "1h30m"\nmax_cost = "1e7"\n')
    config = load_config(tmp_path)
    assert config.timeout == 5400 and config.max_cost == 1e7
    (tmp_path / "dbluigi.toml").write_text("[project]\ntimeout = 90\nmax_cost = -1\n")
    with pytest.raises(ProjectError, match=r"\[project\] max_cost = -1: expected a positive"):
        load_config(tmp_path)
    (tmp_path / "dbluigi.toml").write_text("[audit]\nslow_factor = 2\nslow_secs = 1\n")
    with pytest.raises(ProjectError, match="did you mean 'slow_seconds'"):
        load_config(tmp_path)


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (1, 1.5, 90, 600, 3600, 5400)] == [
        "1s",
        "1.5s",
        "90s",
        "10m",
        "1h",
        "1h30m",
    ]


# -- cost guard ---------------------------------------------------------------------------

CROSS_JOIN = (
    "select a.x, b.y from generate_series(1, 100000) as a(x)\n"
    "cross join generate_series(1, 100000) as b(y)\n"
)


@pytest.mark.postgres
def test_cost_guard_refuses_a_cross_join_before_it_runs(tmp_path: Path, pg_url: str) -> None:
    write_project(
        tmp_path,
        {
            "raw/ids.csv": "id\n1\n2\n",
            "small.sql": "-- max_cost: 1e6\nselect id from raw.ids",
            "pairs.sql": "-- description: a join condition went missing\n-- max_cost: 1e6\n"
            + CROSS_JOIN,
            "fix.sql": "update main.small set id = id + 0",
        },
    )
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    pairs = results["main.pairs"]
    assert pairs["failure_class"] == "guard" and pairs["file"] == "pairs.sql"
    assert pairs["line"] == 2  # the max_cost header
    assert "estimated cost 2.00001e+08 is above max_cost 1e+06" in pairs["error"]
    assert "the query was not run" in pairs["error"]
    assert results["main.small"]["status"] == "success"
    assert query(
        pg_url, tmp_path, "select count(*) from pg_tables where tablename like 'pairs%'"
    ) == [(0,)]
    costs = dict(
        query(
            pg_url,
            tmp_path,
            "select model, explain_cost from dbluigi.task_runs where run_id = %s",
            [payload["run_id"]],
        )
    )
    assert costs["main.pairs"] == pytest.approx(200001000.0)  # recorded with the failure
    assert costs["main.small"] is not None and 0 < costs["main.small"] < 1e6
    assert costs["raw.ids"] is None and costs["main.fix"] is None  # seeds and sql: no query
    code, history = cli("history", "--model", "pairs", "--json", project=tmp_path, target=pg_url)
    (attempt,) = json.loads(history)["tasks"]
    assert attempt["failure_class"] == "guard" and attempt["explain_cost"] == costs["main.pairs"]


@pytest.mark.postgres
def test_project_default_max_cost_applies_to_table_and_view_models(
    tmp_path: Path, pg_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "pairs.sql": "-- kind: view\n" + CROSS_JOIN,
            "fine.sql": "-- max_cost: 1e9\n" + CROSS_JOIN.replace("100000", "10"),
            "update.sql": "update main.fine set x = x",
        },
        project="max_cost = 1000\n",
    )
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    assert results["main.pairs"]["failure_class"] == "guard"
    assert "[project] max_cost in dbluigi.toml" in results["main.pairs"]["error"]
    assert results["main.fine"]["status"] == "success"  # its header raises the bound
    assert results["main.update"]["status"] == "success"  # sql models are not EXPLAINed


def test_max_cost_is_refused_on_duckdb_before_anything_runs(
    tmp_path: Path, duckdb_url: str
) -> None:
    write_project(
        tmp_path, {"a.sql": "select 1 as id", "b.sql": "-- max_cost: 1e6\nselect 2 as id"}
    )
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 2
    assert "b.sql:1: max_cost: the duckdb target has no query cost estimate" in output
    assert "-- timeout: works on every target" in output
    assert not Path(duckdb_url.removeprefix("duckdb:///")).exists()  # nothing ran
    write_project(tmp_path, {"b.sql": "select 2 as id"}, project="max_cost = 1e6\n")
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 2 and "dbluigi.toml: [project] max_cost: the duckdb target" in output


def test_max_cost_on_a_kind_without_a_query_is_a_project_error(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {"a.sql": "select 1 as id", "fix.sql": "-- max_cost: 10\nupdate main.a set id = 2"},
    )
    code, output = cli("plan", project=tmp_path, target=f"duckdb:///{tmp_path / 't.duckdb'}")
    assert code == 2
    assert "fix.sql:1: max_cost bounds the estimated cost of a query" in output
    assert "kind sql" in output


# -- every failure class, reported the same way everywhere ----------------------------------

TAXONOMY = {
    "raw/people.csv": "id,name\n1,ann\n2,bob\n3\n",  # config: a row with too few fields
    "syntax_error.sql": "-- retries: 2\nselect id,\n  no_such_column\nfrom main.ok",
    "runtime_error.sql": "-- retries: 1\nselect cast('abc' as integer) as n",
    "timed_out.sql": "-- retries: 2\n-- timeout: 1s\nselect 1 as n from pg_sleep(5)",
    "too_costly.sql": "-- retries: 2\n-- max_cost: 1e6\n" + CROSS_JOIN,
    "checked.sql": "-- retries: 2\n-- check: unique(id)\nselect 1 as id union all select 1",
    "downstream.sql": "select * from main.checked",
    "ok.sql": "select 1 as id",
    "tested.sql": "select 1 as id",  # test: its unit test expects 2 (test_before_build)
    "tested.test.yml": "wrong:\n  model: main.tested\n  expect: [{id: 2}]\n",
}
TAXONOMY_PROJECT = "test_before_build = true\n"
EXPECTED = {
    "raw.people": ("failed", "config"),
    "main.syntax_error": ("failed", "syntax"),
    "main.runtime_error": ("failed", "runtime"),
    "main.timed_out": ("failed", "timeout"),
    "main.too_costly": ("failed", "guard"),
    "main.checked": ("failed", "check"),
    "main.downstream": ("skipped", "upstream"),
    "main.tested": ("failed", "test"),
    "main.ok": ("success", None),
}


@pytest.mark.postgres
def test_every_failure_class_in_summary_history_task_runs_and_artifact(
    tmp_path: Path, pg_url: str
) -> None:
    write_project(tmp_path, TAXONOMY, project=TAXONOMY_PROJECT)
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 1
    got = {r["model"]: (r["status"], r["failure_class"]) for r in payload["tasks"]}
    assert got == EXPECTED
    assert {c for _, c in EXPECTED.values() if c} == set(FAILURE_CLASSES)

    # task_runs: one class per failed attempt; none is transient, so none was retried
    rows = task_runs(pg_url, tmp_path, payload["run_id"])
    attempts: dict[str, list[tuple[int, str, str | None]]] = {}
    for model, attempt, status, failure_class in rows:
        attempts.setdefault(model, []).append((attempt, status, failure_class))
    for model, (status, failure_class) in EXPECTED.items():
        assert attempts[model] == [(1, status, failure_class)], model

    # the artifact says the same
    artifact = json.loads(Path(payload["artifact"]).read_text())
    tasks = {t["model"]: t for t in artifact["tasks"]}
    assert {m: (t["status"], t["failure_class"]) for m, t in tasks.items()} == EXPECTED
    assert artifact["failure_classes"] == {c: 1 for c in FAILURE_CLASSES}
    assert [a["attempt"] for a in tasks["main.runtime_error"]["attempts"]] == [1]
    assert tasks["main.syntax_error"]["line"] == 3
    assert tasks["raw.people"]["file"] == "raw/people.csv" and tasks["raw.people"]["line"] == 4

    # history shows each class
    code, history = cli("history", "--json", project=tmp_path, target=pg_url)
    assert code == 0
    classes = {t["model"]: t["failure_class"] for t in json.loads(history)["tasks"]}
    assert {m: classes[m] for m in EXPECTED} == {m: c for m, (_, c) in EXPECTED.items()}

    # and the text summary prints each with its file and line
    write_project(tmp_path, {"ok.sql": "select 2 as id"}, project=TAXONOMY_PROJECT)
    code, summary = cli("build", project=tmp_path, target=pg_url)
    assert code == 1
    for model, (_, failure_class) in EXPECTED.items():
        if failure_class:
            assert f"{failure_class} error in {model}" in summary
    for where in ("syntax_error.sql:3:", "too_costly.sql:2:", "timed_out.sql:1:", "people.csv:4:"):
        assert where in summary


@pytest.mark.postgres
def test_a_bad_header_is_a_config_error_before_anything_runs(tmp_path: Path, pg_url: str) -> None:
    write_project(
        tmp_path, {"ok.sql": "select 1 as id", "bad.sql": "-- timeout: forever\nselect 1 as id"}
    )
    code, output = cli("build", project=tmp_path, target=pg_url)
    assert code == 2
    assert "bad.sql:1" in output and "bad duration 'forever'" in output
    assert query(
        pg_url, tmp_path, "select count(*) from pg_namespace where nspname = 'dbluigi'"
    ) == [(0,)]


@pytest.mark.postgres
def test_transient_retries_are_recorded_per_attempt_on_postgres(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flaky times out on a row lock another session holds (55P03, transient) until the
    second wait; hopeless fails on a conversion (22P02, not transient) once."""
    holder = open_target(pg_url, project_dir=tmp_path).connect()
    holder.ensure_schema("main")
    holder.execute("create table main.counter (id integer, n integer)")
    holder.execute("insert into main.counter values (1, 0)")
    holder.execute("begin")
    holder.execute("update main.counter set n = 100 where id = 1")  # not committed
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            holder.execute("rollback")

    monkeypatch.setattr("dbluigi.runner._sleep", wait)
    write_project(
        tmp_path,
        {
            "flaky.sql": "-- kind: sql\n-- unmanaged: true\n-- retries: 2\n"
            "set local lock_timeout = '100ms';\n"
            "update main.counter set n = n + 1 where id = 1\n",
            "hopeless.sql": "-- retries: 1\nselect cast('x' as integer) as n",
            "checked.sql": "-- retries: 2\n-- check: rows > 5\nselect 1 as n",
        },
    )
    try:
        code, payload = build_json("--workers", "1", project=tmp_path, target=pg_url)
    finally:
        holder.close()
    assert code == 1
    rows = query(
        pg_url,
        tmp_path,
        "select model, attempt, status, failure_class, error from dbluigi.task_runs "
        "where run_id = %s order by model, attempt",
        [payload["run_id"]],
    )
    attempts: dict[str, list[tuple[int, str, str | None]]] = {}
    for model, attempt, status, failure_class, _ in rows:
        attempts.setdefault(model, []).append((attempt, status, failure_class))
    assert attempts["main.flaky"] == [
        (1, "failed", "runtime"),
        (2, "failed", "runtime"),
        (3, "success", None),
    ]
    assert attempts["main.hopeless"] == [(1, "failed", "runtime")]
    assert attempts["main.checked"] == [(1, "failed", "check")]  # checks are never retried
    errors = {(m, a): e for m, a, _, _, e in rows}
    assert "lock timeout" in errors["main.flaky", 1]
    assert "not retried (retries: 1)" in errors["main.hopeless", 1]
    # the wait doubles, jittered over its upper half: 0.5-1 s, then 1-2 s
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 <= waits[1] <= 2.0
    assert query(pg_url, tmp_path, "select n from main.counter") == [(1,)]
    results = {r["model"]: r for r in payload["tasks"]}
    assert (
        results["main.flaky"]["status"] == "success" and len(results["main.flaky"]["attempts"]) == 3
    )


@pytest.mark.postgres
def test_unbounded_table_models_record_their_estimate_from_the_build_itself(
    tmp_path: Path, pg_url: str
) -> None:
    """Without a max_cost the estimate comes with the CREATE TABLE AS (one statement
    less); it is the same estimate EXPLAIN gives, and failed builds still record it."""
    queries = {
        "many.sql": "select g as n, g % 7 as k from generate_series(1, 25000) as g",
        "grouped.sql": "select k, count(*) as c from main.many group by k",
        "limited.sql": "select n from main.many order by n desc limit 10",
        "broken.sql": "select cast('abc' || n as integer) as n from main.many",
        "checked.sql": "-- check: rows > 0\nselect n from main.many where n < 0",
    }
    write_project(tmp_path, queries)
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 1
    runs = {
        model: (rows, cost, status)
        for model, rows, cost, status in query(
            pg_url,
            tmp_path,
            "select model, rows_affected, explain_cost, status from dbluigi.task_runs "
            "where run_id = %s",
            [payload["run_id"]],
        )
    }
    assert runs["main.many"][0] == 25000
    assert runs["main.grouped"][0] == 7 and runs["main.limited"][0] == 10
    assert runs["main.broken"][2] == "failed" and runs["main.checked"][2] == "failed"
    for model, sql in queries.items():
        body = sql.split("\n", 1)[-1] if sql.startswith("--") else sql
        ((plan,),) = query(pg_url, tmp_path, "explain (format json) " + body.replace("%", "%%"), [])
        expected = plan[0]["Plan"]["Total Cost"]
        assert runs[f"main.{model[:-4]}"][1] == pytest.approx(expected), model
