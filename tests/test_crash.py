"""Crash safety: SIGKILL at every point of a publish, and two builds at once.

The published table is always the old one or the new one, never missing or partial,
and the next build cleans up what was left and completes.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.buildkit import build_json, cli_process, copy_example, query, ran
from tests.test_build import write_project

POINTS = [
    ("after_build", 1),  # killed inside the transaction, before checks: old table stays
    ("after_checks", 1),
    ("before_commit", 1),  # swapped and recorded, but not committed: old table stays
    ("after_commit", 2),  # committed: the new table is published
]


@pytest.mark.parametrize(("point", "expected"), POINTS, ids=[p for p, _ in POINTS])
def test_sigkill_during_publish_leaves_old_or_new(
    tmp_path: Path, target_url: str, point: str, expected: int
) -> None:
    write_project(
        tmp_path,
        {
            "base.sql": "-- check: rows > 0\n-- index: id\nselect 1 as id",
            "reader.sql": "select id * 10 as ten from main.base",
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    (tmp_path / "base.sql").write_text("-- check: rows > 0\n-- index: id\nselect 2 as id")
    process = cli_process(
        "build",
        project=tmp_path,
        target=target_url,
        env={"DBLUIGI_CRASHPOINT": f"{point}:main.base"},
    )
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert query(target_url, tmp_path, "select id from main.base") == [(expected,)]

    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert any("interrupted" in note for note in payload["notes"])
    statuses = query(
        target_url, tmp_path, "select status, count(*) from dbluigi.runs group by status"
    )
    assert dict(statuses) == {"success": 2, "interrupted": 1}
    # the killed run's build of base is recorded when it committed (on DuckDB through the
    # journal, which the next build folded)
    recorded = query(
        target_url,
        tmp_path,
        "select count(*) from dbluigi.task_runs t join dbluigi.runs r on r.run_id = t.run_id "
        "where r.status = 'interrupted' and t.model = 'main.base' and t.status = 'success'",
    )
    assert recorded == [(1 if point == "after_commit" else 0,)]
    assert query(target_url, tmp_path, "select id from main.base") == [(2,)]
    assert query(target_url, tmp_path, "select ten from main.reader") == [(20,)]
    leftovers = query(
        target_url,
        tmp_path,
        "select table_name from information_schema.tables where table_name like %s",
        ["%dbluigi_new%"],
    )
    assert leftovers == []
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0 and ran(payload) == set()


@pytest.mark.postgres
def test_sigkill_while_the_query_runs(tmp_path: Path, pg_url: str) -> None:
    write_project(tmp_path, {"base.sql": "select 1 as id"})
    assert build_json(project=tmp_path, target=pg_url)[0] == 0
    (tmp_path / "base.sql").write_text("select 2 as id from (select pg_sleep(30)) as s")
    process = cli_process("build", project=tmp_path, target=pg_url)
    _wait_for_query(pg_url, tmp_path, "pg_sleep")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    _wait_until_gone(pg_url, tmp_path, "pg_sleep")  # the server notices the dead client within ~1 s
    assert query(pg_url, tmp_path, "select id from main.base") == [(1,)]
    (tmp_path / "base.sql").write_text("select 2 as id")
    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 0, payload
    assert query(pg_url, tmp_path, "select id from main.base") == [(2,)]


@pytest.mark.postgres
def test_two_builds_at_once_build_each_model_once(tmp_path: Path, pg_url: str) -> None:
    project = copy_example(tmp_path)
    builds = [cli_process("build", "--json", project=project, target=pg_url) for _ in range(2)]
    outputs = [json.loads(b.communicate(timeout=300)[0]) for b in builds]
    assert [b.returncode for b in builds] == [0, 0], outputs
    built = query(
        pg_url,
        project,
        "select model, started_at, duration_s from dbluigi.task_runs "
        "where status = 'success' and reason <> 'built by another worker' order by model",
    )
    models = [row[0] for row in built]
    assert len(models) == 12 and len(set(models)) == 12  # every model built exactly once
    # whatever one build left to the other is reported as built by it, never twice; a
    # build that planned after the other published a model finds it up to date
    for payload in outputs:
        assert {r["status"] for r in payload["tasks"]} <= {"success", "up to date"}
        assert len(payload["tasks"]) == 12
    assert query(pg_url, project, "select count(*) from dbluigi.models") == [(12,)]
    code, payload = build_json(project=project, target=pg_url)
    assert code == 0 and ran(payload) == set()


@pytest.mark.postgres
def test_a_build_never_publishes_over_a_newer_build(tmp_path: Path, pg_url: str) -> None:
    from dbluigi.project import load_project
    from dbluigi.publish import BuildRequest, publish
    from dbluigi.runner import RunOptions, prepare
    from dbluigi.targets import open_target

    write_project(tmp_path, {"a.sql": "select 1 as id"})
    project = load_project(tmp_path, target=pg_url)
    target = open_target(pg_url, project_dir=tmp_path)
    stale = prepare(project, target, RunOptions())  # planned before the other build ran
    assert build_json("a", project=tmp_path, target=pg_url, command="rebuild")[0] == 0
    assert build_json("a", project=tmp_path, target=pg_url, command="rebuild")[0] == 0
    session = stale.session
    session.ensure_schema("main")
    decision = stale.plan.decisions["main.a"]
    from dbluigi.publish import AlreadyBuilt

    with pytest.raises(AlreadyBuilt) as err:
        publish(
            session,
            BuildRequest(project, project.models["main.a"], decision, "stale", stale.catalog),
        )
    assert not err.value.same
    session.close()
    generations = query(pg_url, tmp_path, "select generation from dbluigi.models")
    assert generations == [(2,)]


def test_duckdb_file_held_by_another_process(tmp_path: Path, duckdb_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    holder = cli_process(
        "build", project=tmp_path, target=duckdb_url, env={"DBLUIGI_CRASHPOINT": ""}
    )
    holder.communicate(timeout=60)
    import subprocess
    import sys

    path = duckdb_url.removeprefix("duckdb:///")
    lock = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({path!r}); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert lock.stdout is not None and lock.stdout.readline().strip() == "ready"
        second = cli_process("build", project=tmp_path, target=duckdb_url)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert "another process" in err
    finally:
        lock.kill()
        lock.wait()


def _wait_for_query(url: str, project: Path, text: str, timeout: float = 30) -> None:
    _wait(url, project, text, running=True, timeout=timeout)


def _wait_until_gone(url: str, project: Path, text: str, timeout: float = 30) -> None:
    _wait(url, project, text, running=False, timeout=timeout)


def _wait(url: str, project: Path, text: str, *, running: bool, timeout: float) -> None:
    """Until a query containing ``text`` runs (or no longer runs) in this test's database."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(
            url,
            project,
            "select count(*) from pg_stat_activity where query like %s and pid <> pg_backend_pid() "
            "and datname = current_database()",
            [f"%{text}%"],
        )
        if bool(rows[0][0]) == running:
            return
        time.sleep(0.1)
    state = "started" if running else "finished"
    raise AssertionError(f"no query with {text!r} {state} within {timeout}s")
