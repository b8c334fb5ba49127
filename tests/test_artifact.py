"""The run artifact: one JSON file per build, rebuild and check run, with a versioned schema,
the same document ``build --json`` prints."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from dbluigi.artifact import build_artifact
from dbluigi.runner import TaskResult
from dbluigi.state import CheckResult, TaskRecord
from dbluigi.targets.base import machine_workers, usable_cores
from tests.buildkit import build_json, cli, validate
from tests.helpers import write_project

RUN_KEYS = {
    "schema",
    "artifact",
    "other_workers",
    "run_id",
    "command",
    "selector",
    "target",
    "target_name",
    "target_schemas",
    "status",
    "exit_code",
    "started_at",
    "finished_at",
    "duration_s",
    "dbluigi_version",
    "hostname",
    "pid",
    "workers",
    "counts",
    "failure_classes",
    "tasks",
    "up_to_date",
    "slow_tasks",
    "notes",
}
TASK_KEYS = {
    "model",
    "kind",
    "partition",
    "status",
    "reason",
    "failure_class",
    "error",
    "file",
    "line",
    "started_at",
    "duration_s",
    "rows",
    "fingerprint",
    "build_id",
    "explain_cost",
    "watermark_from",
    "watermark_to",
    "checks",
    "attempts",
}
ATTEMPT_KEYS = {"attempt", "status", "failure_class", "error", "started_at", "duration_s"}

PROJECT = {
    "dbluigi.toml": '[project]\ndefault_schema = "main"\n',
    "raw/people.csv": "id,name\n1,ann\n2,bob\n",
    "people.sql": "-- check: rows > 0\n-- check: unique(id)\nselect id, name from raw.people",
    "broken.sql": "select cast('x' as integer) as n",
}


def test_every_build_writes_its_artifact_and_latest(tmp_path: Path, target_url: str) -> None:
    write_project(tmp_path, PROJECT)
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    path = Path(payload["artifact"])
    assert path == tmp_path / ".dbluigi" / "runs" / f"{payload['run_id']}.json"
    latest = path.parent / "latest.json"
    assert latest.read_text() == path.read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, "latest.json"])

    artifact = validate(json.loads(path.read_text()))
    assert artifact == payload  # build --json prints the run's artifact
    assert set(artifact) == RUN_KEYS
    assert artifact["schema"] == "dbluigi/run/v1"
    assert artifact["run_id"] == payload["run_id"] and artifact["command"] == "build"
    assert artifact["status"] == "failed" and artifact["exit_code"] == 1
    assert artifact["started_at"].endswith("Z") and artifact["finished_at"].endswith("Z")
    # the target's default: one on DuckDB, the machine's on PostgreSQL
    duckdb_default = max(2, min(8, 2 * usable_cores()))  # DuckDBSession.default_workers
    default = machine_workers() if target_url.startswith("postgresql") else duckdb_default
    assert artifact["duration_s"] >= 0 and artifact["workers"] == default
    assert artifact["counts"] == {"success": 2, "failed": 1, "skipped": 0, "up_to_date": 0}
    assert artifact["failure_classes"] == {"runtime": 1}

    tasks = {t["model"]: t for t in artifact["tasks"]}
    assert set(tasks) == {"raw.people", "main.people", "main.broken"}
    assert all(set(t) == TASK_KEYS for t in tasks.values())
    people = tasks["main.people"]
    assert people["kind"] == "table" and people["status"] == "success"
    assert people["rows"] == 2 and people["file"] is None and people["error"] is None
    assert people["fingerprint"] and people["build_id"] and people["reason"] == "new"
    assert people["checks"] == [
        {"name": "rows > 0", "passed": True, "detail": "", "status": "passed"},
        {"name": "unique(id)", "passed": True, "detail": "", "status": "passed"},
    ]
    assert [set(a) for a in people["attempts"]] == [ATTEMPT_KEYS]
    broken = tasks["main.broken"]
    assert broken["status"] == "failed" and broken["failure_class"] == "runtime"
    assert broken["file"] == "broken.sql" and broken["line"] == 1 and "integer" in broken["error"]
    assert broken["started_at"].endswith("Z") and broken["duration_s"] >= 0

    # a run that builds nothing still leaves its artifact
    (tmp_path / "broken.sql").unlink()
    code, output = cli("build", project=tmp_path, target=target_url)
    assert code == 0
    line = next(x for x in output.splitlines() if x.startswith("run artifact: "))
    second = validate(json.loads(Path(line.removeprefix("run artifact: ")).read_text()))
    assert sorted((t["model"], t["status"], t["attempts"]) for t in second["tasks"]) == [
        ("main.people", "up to date", []),
        ("raw.people", "up to date", []),
    ]
    assert sorted(second["up_to_date"]) == ["main.people", "raw.people"]
    assert second["counts"] == {"success": 0, "failed": 0, "skipped": 0, "up_to_date": 2}
    assert second["status"] == "success" and second["exit_code"] == 0
    assert json.loads(latest.read_text())["run_id"] == second["run_id"]


def test_rebuild_and_check_runs_write_artifacts(tmp_path: Path, duckdb_url: str) -> None:
    write_project(tmp_path, {k: v for k, v in PROJECT.items() if k != "broken.sql"})
    assert build_json(project=tmp_path, target=duckdb_url)[0] == 0
    code, payload = build_json(
        "main.people", project=tmp_path, target=duckdb_url, command="rebuild"
    )
    assert code == 0
    artifact = json.loads(Path(payload["artifact"]).read_text())
    assert artifact["command"] == "rebuild" and artifact["selector"] == "main.people"
    assert [t["reason"] for t in artifact["tasks"]] == ["forced"]
    code, output = cli("check", "--json", project=tmp_path, target=duckdb_url)
    assert code == 0
    checked = validate(json.loads(output))
    artifact = json.loads(Path(checked["artifact"]).read_text())
    assert artifact == checked  # check --json prints its run's artifact too
    assert artifact["command"] == "check" and artifact["run_id"] == checked["run_id"]
    (task,) = artifact["tasks"]
    assert task["model"] == "main.people" and task["reason"] == "check"
    assert [c["name"] for c in task["checks"]] == ["rows > 0", "unique(id)"]


def test_the_newest_artifacts_are_kept(
    tmp_path: Path, duckdb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build every minute (`--watch --interval 1m`) wrote a file a minute for ever: the
    newest KEPT_ARTIFACTS stay (the runs themselves stay in the state), other files too."""
    monkeypatch.setattr("dbluigi.artifact.KEPT_ARTIFACTS", 2)
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    runs = tmp_path / ".dbluigi" / "runs"
    runs.mkdir(parents=True)
    (runs / "notes.txt").write_text("mine")
    (runs / "19990101T000000-abcdef.json").write_text("{}")  # the oldest run
    ids = [build_json(project=tmp_path, target=duckdb_url)[1]["run_id"] for _ in range(3)]
    assert sorted(p.name for p in runs.iterdir()) == sorted(
        [f"{ids[1]}.json", f"{ids[2]}.json", "latest.json", "notes.txt"]
    )


def test_an_artifact_that_cannot_be_written_is_a_note_not_a_failure(
    tmp_path: Path, duckdb_url: str
) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    (tmp_path / ".dbluigi").mkdir()
    (tmp_path / ".dbluigi" / "runs").write_text("a file where the folder should be")
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0 and payload["artifact"] is None
    assert any("could not write the run artifact" in note for note in payload["notes"])


def test_build_artifact_groups_attempts_under_their_task() -> None:
    at = datetime(2024, 5, 1, 12, 0, 0)
    records = [
        TaskRecord("r1", "main.a", "failed", at, 0.5, 1, failure_class="runtime", error="boom"),
        TaskRecord(
            "r1",
            "main.a",
            "success",
            at,
            0.25,
            2,
            rows=3,
            fingerprint="f",
            build_id="b",
            explain_cost=12.5,
            checks=(CheckResult("rows > 0", True),),
        ),
        TaskRecord("r1", "main.b", "skipped", at, failure_class="upstream", error="skipped"),
    ]
    results = [
        TaskResult("main.a", "table", "success", "new"),
        TaskResult("main.b", "view", "skipped", "new"),
        TaskResult("main.c", "table", "up to date", "up to date"),
    ]
    run = {"run_id": "r1", "command": "build", "started_at": at, "finished_at": at}
    artifact = build_artifact(run, records, results, notes=["a note"])
    assert artifact["counts"] == {"success": 1, "failed": 0, "skipped": 1, "up_to_date": 1}
    assert artifact["failure_classes"] == {"upstream": 1} and artifact["exit_code"] == 1
    assert artifact["started_at"] == "2024-05-01T12:00:00.000000Z" and artifact["duration_s"] == 0
    a, b, c = artifact["tasks"]
    assert (a["model"], a["status"], a["explain_cost"], a["rows"]) == ("main.a", "success", 12.5, 3)
    assert [(x["attempt"], x["status"], x["error"]) for x in a["attempts"]] == [
        (1, "failed", "boom"),
        (2, "success", None),
    ]
    assert b["kind"] == "view" and b["failure_class"] == "upstream"
    assert (c["status"], c["reason"], c["attempts"]) == ("up to date", "up to date", [])
    assert artifact["up_to_date"] == ["main.c"] and artifact["notes"] == ["a note"]


def test_json_text_round_trips_with_one_task_a_line() -> None:
    from datetime import datetime

    from dbluigi.artifact import json_text

    payload = {
        "run_id": "r1",
        "started_at": datetime(2026, 1, 2, 3, 4, 5),
        "tasks": [{"model": "main.a", "checks": [{"name": "rows > 0"}]}, {"model": 'm."b"'}],
        "notes": [],
        "counts": {"success": 2},
    }
    text = json_text(payload)
    assert json.loads(text) == {**payload, "started_at": "2026-01-02 03:04:05"}
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert sum(1 for line in lines if '"model"' in line) == 2  # one line per task
