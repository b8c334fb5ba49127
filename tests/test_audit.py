"""Slow-task detection at the end of a build, and ``dbluigi history --slow``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from dbluigi.audit import ModelSpeed, detect_slow, speeds
from dbluigi.state import StateStore, TaskRecord
from dbluigi.targets import open_target
from tests.buildkit import build_json, cli
from tests.helpers import write_project

# -- detection, with synthetic durations -----------------------------------------------------


def test_detect_slow_needs_both_the_factor_and_the_seconds() -> None:
    history = {
        "a": [2.0, 2.0, 3.0, 2.0],  # median 2
        "b": [1.0, 1.0, 1.0],  # median 1
        "c": [10.0, 10.0, 10.0],  # median 10
        "d": [0.5, 0.4, 0.6],
    }
    durations = {"a": 7.0, "b": 4.0, "c": 29.0, "d": 6.5, "new": 100.0}
    slow = detect_slow(durations, history)
    # a: 3.5x and 7 s; b: 4x but only 4 s; c: 29 s but only 2.9x; new: no history
    assert [(s.model, s.median_s, s.builds) for s in slow] == [("a", 2.0, 4), ("d", 0.5, 3)]
    assert slow[0].factor == 3.5
    assert "a took 7.0s, 3.5x its median of 2.0s over its last 4 successful builds" in (
        slow[0].describe()
    )


def test_detect_slow_thresholds_and_history_length_are_parameters() -> None:
    history = {"a": [1.0, 1.0], "b": [1.0, 1.0, 1.0]}
    assert detect_slow({"a": 9.0, "b": 9.0}, history) == detect_slow({"b": 9.0}, history)
    assert [s.model for s in detect_slow({"a": 9.0}, history, min_history=2)] == ["a"]
    assert detect_slow({"b": 2.5}, history, factor=2.0, min_seconds=0) != ()
    assert detect_slow({"b": 2.5}, history, factor=3.0, min_seconds=0) == ()
    assert detect_slow({"b": 2.5}, history, factor=2.0, min_seconds=3) == ()
    assert detect_slow({}, history) == ()


def test_speeds_sort_by_median_and_flag_models_that_got_slower() -> None:
    result = speeds(
        {
            "steady": [5.0, 5.0, 5.0, 5.0, 5.0],
            "slower": [6.0, 2.0, 2.0, 2.0],  # newest first: 3x its earlier median
            "blip": [0.3, 0.1, 0.1, 0.1],  # 3x, but only 0.2 s more
            "young": [9.0, 1.0],  # too little history to say
        }
    )
    assert [s.model for s in result] == ["steady", "young", "slower", "blip"]  # by median
    by_model = {s.model: s for s in result}
    assert by_model["slower"] == ModelSpeed("slower", 4, 2.0, 6.0, 2.0)
    assert by_model["slower"].got_slower and by_model["slower"].change == 3.0
    assert not by_model["blip"].got_slower
    assert not by_model["young"].got_slower
    assert not by_model["steady"].got_slower


# -- end to end --------------------------------------------------------------------------


def _history(target: str, project: Path, durations: dict[str, list[float]]) -> None:
    """Earlier successful builds, oldest first, one run per position in the lists."""
    session = open_target(target, project_dir=project).connect()
    try:
        state = StateStore(session)
        state.ensure()
        start = datetime(2024, 1, 1)
        for i in range(max(len(d) for d in durations.values())):
            run_id = f"20240101T0000{i:02d}-old"
            state.start_run(run_id, "build", "", "test", 1)
            state.record_tasks(
                [
                    TaskRecord(
                        run_id=run_id,
                        model=model,
                        status="success",
                        started_at=start + timedelta(hours=i),
                        duration_s=values[i],
                    )
                    for model, values in durations.items()
                    if i < len(values)
                ]
            )
            state.finish_run(run_id, "success")
        # a check run's durations are not build history
        state.start_run("20240102T000000-check", "check", "", "test", 1)
        state.record_tasks(
            [
                TaskRecord(
                    run_id="20240102T000000-check",
                    model=model,
                    status="success",
                    started_at=start + timedelta(days=1),
                    duration_s=1000.0,
                )
                for model in durations
            ]
        )
    finally:
        session.close()


def test_a_build_reports_tasks_much_slower_than_their_history(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "dbluigi.toml": '[project]\ndefault_schema = "main"\n[audit]\nslow_seconds = 0\n',
            "a.sql": "select 1 as id",
            "b.sql": "select 2 as id",
        },
    )
    # main.a used to take a hundred microseconds; main.b has no history yet
    _history(target_url, tmp_path, {"main.a": [0.0001, 0.0001, 0.0001]})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0
    assert [s["model"] for s in payload["slow_tasks"]] == ["main.a"]
    slow = payload["slow_tasks"][0]
    assert slow["median_s"] == 0.0001 and slow["builds"] == 3 and slow["duration_s"] > 0.0003
    artifact = json.loads(Path(payload["artifact"]).read_text())
    assert artifact["slow_tasks"] == payload["slow_tasks"]
    (tmp_path / "a.sql").write_text("select 3 as id")
    code, output = cli("build", project=tmp_path, target=target_url)
    assert code == 0
    assert "slow: main.a took" in output and "over its last 4 successful builds" in output


def test_default_thresholds_report_nothing_for_fast_tasks(tmp_path: Path, duckdb_url: str) -> None:
    write_project(
        tmp_path,
        {"dbluigi.toml": '[project]\ndefault_schema = "main"\n', "a.sql": "select 1 as id"},
    )
    _history(duckdb_url, tmp_path, {"main.a": [0.0001, 0.0001, 0.0001]})
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0 and payload["slow_tasks"] == []  # much slower, but under 5 s


def test_history_slow_lists_the_slowest_models_and_those_that_got_slower(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "dbluigi.toml": '[project]\ndefault_schema = "main"\n',
            "a.sql": "select 1 as id",
            "b.sql": "select 2 as id",
            "c.sql": "select 3 as id",
        },
    )
    _history(
        target_url,
        tmp_path,
        {
            "main.a": [1.0, 1.0, 1.0, 1.0, 10.0],  # oldest first: the last build got slower
            "main.b": [20.0, 20.0, 21.0],
            "main.c": [0.5, 0.5, 0.5, 0.5],
        },
    )
    code, output = cli("history", "--slow", "--json", project=tmp_path, target=target_url)
    assert code == 0
    payload = json.loads(output)
    assert [m["model"] for m in payload["slowest"]] == ["main.b", "main.a", "main.c"]
    a = payload["slowest"][1]
    assert (a["builds"], a["median_s"], a["last_s"], a["earlier_median_s"]) == (5, 1.0, 10.0, 1.0)
    assert [m["model"] for m in payload["got_slower"]] == ["main.a"]
    code, output = cli("history", "--slow", "--last", "2", project=tmp_path, target=target_url)
    assert code == 0
    assert "main.b" in output and "main.c" not in output.split("got slower")[0]
    assert "got slower: main.a: last build 10.00s, 10.0x its median of 1.00s before" in output
