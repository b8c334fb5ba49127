"""Incremental models and incremental source copies run on every build: new rows are
picked up without a rebuild, a run that changed nothing keeps its build id, and what
reads them builds only when they changed (``plan.runs_each_build``, ``plan.settle``);
the watermarks each run started from and reached are recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from dbluigi import cli as cli_module
from dbluigi.plan import (
    CHANGED,
    CONDITIONAL,
    NEW,
    UP_TO_DATE,
    UPSTREAM,
    UPSTREAM_UNCHANGED,
    ModelState,
    after_run,
    make_plan,
    settle,
)
from dbluigi.project import load_project
from dbluigi.targets import open_target
from tests.buildkit import build_json, cli, cli_process, query, ran, statuses
from tests.sourcekit import create_items, source_exec, source_toml
from tests.test_build import write_project
from tests.test_distributed import luigid  # noqa: F401  (a fixture)

STORE = "out.items_store"
ITEMS_STORE = """\
-- kind: incremental
-- unique_key: id
-- watermark: updated_at
select id, v, updated_at from src.items where {{ watermark }} is null or updated_at >= {{ watermark }}
"""
REPORT = "select count(*) as n, max(v) as top from out.items_store\n"
SUMMARY = "select n from out.report\n"
FIRST_MARK = "2024-01-02 00:00:00"


def target_exec(target: str, project: Path, *statements: str) -> None:
    session = open_target(target, project_dir=project).connect()
    try:
        for statement in statements:
            session.execute(statement)
    finally:
        session.close()


def items_project(root: Path, target: str, **files: str) -> Path:
    """src.items made in the target by hand (no model produces it), read by out.items_store."""
    project = write_project(root, {"out/items_store.sql": ITEMS_STORE, **files})
    target_exec(
        target,
        project,
        "create schema if not exists src",
        "create table src.items (id int primary key, v text, updated_at timestamp)",
        "insert into src.items values (1, 'a', '2024-01-01 00:00:00'), "
        "(2, 'b', '2024-01-02 00:00:00')",
    )
    return project


def new_rows(target: str, project: Path) -> None:
    """One new row, and one row changed (with a newer updated_at)."""
    target_exec(
        target,
        project,
        "insert into src.items values (3, 'c', '2024-01-03 00:00:00')",
        "update src.items set v = 'B', updated_at = '2024-01-04 00:00:00' where id = 2",
    )


def result(payload: dict[str, Any], model: str) -> dict[str, Any]:
    return next(r for r in payload["tasks"] if r["model"] == model)


def build_ids(target: str, project: Path) -> dict[str, tuple[str, int]]:
    rows = query(target, project, "select model, build_id, generation from dbluigi.models")
    return {r[0]: (r[1], r[2]) for r in rows}


def test_a_plain_build_picks_up_new_and_changed_rows(tmp_path: Path, target_url: str) -> None:
    project = items_project(tmp_path, target_url)
    code, first = build_json(project=project, target=target_url)
    assert code == 0, first
    new_rows(target_url, project)
    code, second = build_json(project=project, target=target_url)
    assert code == 0, second
    store = result(second, STORE)
    assert store["status"] == "success", second
    # src.items is an input table: its change is named, and merged as new rows
    assert store["reason"] == f"new rows since {FIRST_MARK} (input changed: src.items)"
    assert store["rows"] == 2
    assert query(target_url, project, "select id, v from out.items_store order by id") == [
        (1, "a"),
        (2, "B"),
        (3, "c"),
    ]


def test_no_new_rows_runs_the_incremental_model_alone_and_keeps_build_ids(
    tmp_path: Path, target_url: str
) -> None:
    project = items_project(tmp_path, target_url, **{"out/report.sql": REPORT})
    project = write_project(project, {"out/summary.sql": SUMMARY})
    assert build_json(project=project, target=target_url)[0] == 0
    before = build_ids(target_url, project)

    code, plan_out = cli("plan", "--json", project=project, target=target_url)
    planned = {m["model"]: m for m in json.loads(plan_out)["models"]}
    assert planned[STORE]["reason"] == f"new rows since {FIRST_MARK}"
    assert planned[STORE]["run"] and not planned[STORE]["conditional"]
    for model in ("out.report", "out.summary"):
        assert planned[model]["reason"] == CONDITIONAL and planned[model]["conditional"]
    code, text = cli("plan", project=project, target=target_url)
    assert (
        "maybe" in text
        and "1 of 3 selected models would run (2 more if their upstream changes)" in text
    )

    code, second = build_json(project=project, target=target_url)
    assert code == 0, second
    assert ran(second) == {STORE}
    assert result(second, STORE)["rows"] == 0
    for model in ("out.report", "out.summary"):
        assert result(second, model)["status"] == "up to date"
        assert result(second, model)["reason"] == UPSTREAM_UNCHANGED
    assert build_ids(target_url, project) == before  # a run that changed nothing keeps them
    recorded = query(
        target_url,
        project,
        "select model from dbluigi.task_runs where run_id = %s",
        [second["run_id"]],
    )
    assert recorded == [(STORE,)]
    artifact = json.loads(Path(second["artifact"]).read_text())
    assert artifact["counts"] == {"success": 1, "failed": 0, "skipped": 0, "up_to_date": 2}
    assert sorted(artifact["up_to_date"]) == ["out.report", "out.summary"]
    code, text = cli("build", project=project, target=target_url)
    assert code == 0 and "built 1, failed 0, skipped 0, up to date 2" in text

    # new rows: the store gets a new build id, and everything reading it builds
    new_rows(target_url, project)
    code, third = build_json(project=project, target=target_url)
    assert code == 0, third
    assert statuses(third) == {STORE: "success", "out.report": "success", "out.summary": "success"}
    assert result(third, "out.report")["reason"] == UPSTREAM
    after = build_ids(target_url, project)
    assert all(after[m] != before[m] for m in before)
    assert after[STORE][1] == before[STORE][1] + 1
    assert query(target_url, project, "select n, top from out.report") == [(3, "c")]

    # and then nothing again
    code, fourth = build_json(project=project, target=target_url)
    assert code == 0 and ran(fourth) == {STORE} and build_ids(target_url, project) == after


def test_a_model_that_also_changed_builds_on_the_parents_actual_build(
    tmp_path: Path, target_url: str
) -> None:
    """A reader with a reason of its own builds either way, with the fingerprint of the
    build its incremental parent actually published: the next build finds it up to date."""
    project = items_project(tmp_path, target_url, **{"out/report.sql": REPORT})
    assert build_json(project=project, target=target_url)[0] == 0
    new_rows(target_url, project)
    (project / "out/report.sql").write_text(REPORT.replace("max(v)", "min(v)"))
    code, second = build_json(project=project, target=target_url)
    assert code == 0 and result(second, "out.report")["reason"] == CHANGED, second
    code, third = build_json(project=project, target=target_url)
    assert code == 0 and ran(third) == {STORE}, third
    assert result(third, "out.report")["status"] == "up to date"


def test_a_failed_incremental_run_skips_its_readers(tmp_path: Path, target_url: str) -> None:
    store = ITEMS_STORE.replace(
        "-- kind: incremental\n", "-- kind: incremental\n-- check: rows <= 2\n"
    )
    project = items_project(
        tmp_path, target_url, **{"out/items_store.sql": store, "out/report.sql": REPORT}
    )
    assert build_json(project=project, target=target_url)[0] == 0
    new_rows(target_url, project)
    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    assert result(payload, STORE)["failure_class"] == "check"
    assert result(payload, "out.report")["status"] == "skipped"
    assert "upstream out.items_store failed" in result(payload, "out.report")["error"]


def test_watermarks_are_recorded_and_shown(tmp_path: Path, target_url: str) -> None:
    project = items_project(tmp_path, target_url)
    code, first = build_json(project=project, target=target_url)
    assert code == 0
    assert (result(first, STORE)["watermark_from"], result(first, STORE)["watermark_to"]) == (
        None,
        FIRST_MARK,
    )
    new_rows(target_url, project)
    code, second = build_json(project=project, target=target_url)
    marks = (FIRST_MARK, "2024-01-04 00:00:00")
    assert (result(second, STORE)["watermark_from"], result(second, STORE)["watermark_to"]) == marks
    code, third = build_json(project=project, target=target_url)  # no new rows: it stays
    assert (
        result(third, STORE)["watermark_from"] == result(third, STORE)["watermark_to"] == marks[1]
    )

    rows = query(
        target_url,
        project,
        "select run_id, watermark_from, watermark_to from dbluigi.task_runs where model = %s",
        [STORE],
    )
    assert {r[0]: r[1:] for r in rows} == {
        first["run_id"]: (None, FIRST_MARK),
        second["run_id"]: marks,
        third["run_id"]: (marks[1], marks[1]),
    }
    assert query(target_url, project, "select watermark from dbluigi.models") == [(marks[1],)]
    task = json.loads(Path(second["artifact"]).read_text())["tasks"][0]
    assert (task["watermark_from"], task["watermark_to"]) == marks

    code, text = cli("history", "--json", project=project, target=target_url)
    tasks = {t["run_id"]: t for t in json.loads(text)["tasks"]}
    assert (
        tasks[second["run_id"]]["watermark_from"],
        tasks[second["run_id"]]["watermark_to"],
    ) == marks
    wide = cli_module.console
    narrow, wide.width = wide._width, 250  # a table of many columns, unabridged
    try:
        code, text = cli("history", "--model", STORE, project=project, target=target_url)
    finally:
        wide._width = narrow
    assert code == 0 and "watermark" in text
    assert f"{FIRST_MARK} -> 2024-01-04" in " ".join(text.split())

    code, plan_out = cli("plan", project=project, target=target_url)
    assert f"new rows since {marks[1]}" in plan_out


def test_a_modifier_of_an_incremental_model_changes_nothing_twice(
    tmp_path: Path, target_url: str
) -> None:
    """Its modifiers run on each batch of new rows: the row read again at the watermark
    is modified as it was the first time, so it is no change."""
    project = items_project(
        tmp_path, target_url, **{"out/items_upper.sql": "update out.items_store set v = upper(v)\n"}
    )
    assert build_json(project=project, target=target_url)[0] == 0
    code, again = build_json(project=project, target=target_url)
    assert code == 0 and result(again, STORE)["rows"] == 0, again
    new_rows(target_url, project)
    code, third = build_json(project=project, target=target_url)
    assert code == 0 and result(third, STORE)["rows"] == 2, third
    assert query(target_url, project, "select id, v from out.items_store order by id") == [
        (1, "A"),
        (2, "B"),
        (3, "C"),
    ]


@pytest.mark.mariadb
def test_an_incremental_copy_runs_each_build_and_its_readers_follow_changes(
    tmp_path: Path, mariadb_url: str, target_url: str
) -> None:
    create_items(
        mariadb_url, [(1, "new", "2024-01-01 00:00:00"), (2, "new", "2024-01-02 00:00:00")]
    )
    tables = (
        '[sources.src.tables.items]\nmode = "incremental"\nwatermark = "updated_at"\n'
        'unique_key = "id"\n'
    )
    toml = '[project]\ndefault_schema = "main"\n\n' + source_toml(mariadb_url, tables)
    from tests.helpers import write_project as write_files

    root = write_files(
        tmp_path / "project",
        {
            "dbluigi.toml": toml,
            "report/by_status.sql": "select status, count(*) as n from src.items group by status\n",
        },
    )
    code, first = build_json(project=root, target=target_url)
    assert code == 0, first
    assert (
        result(first, "src.items")["watermark_from"],
        result(first, "src.items")["watermark_to"],
    ) == (
        None,
        FIRST_MARK,
    )
    before = build_ids(target_url, root)

    code, second = build_json(project=root, target=target_url)
    assert code == 0 and ran(second) == {"src.items"}, second
    copy = result(second, "src.items")
    assert copy["reason"] == f"new rows since {FIRST_MARK}" and copy["rows"] == 0
    assert (copy["watermark_from"], copy["watermark_to"]) == (FIRST_MARK, FIRST_MARK)
    assert result(second, "report.by_status")["status"] == "up to date"
    assert build_ids(target_url, root) == before

    # a change at the highest watermark: the version query (its max) is the same, the
    # copy finds the row changed, and the report builds
    source_exec(mariadb_url, "update items set status = 'paid' where id = 2")
    code, third = build_json(project=root, target=target_url)
    assert code == 0, third
    assert result(third, "src.items")["rows"] == 1
    assert result(third, "report.by_status")["reason"] == UPSTREAM
    assert query(target_url, root, "select status, n from report.by_status order by 1") == [
        ("new", 1),
        ("paid", 1),
    ]


@pytest.mark.postgres
def test_workers_of_a_shared_scheduler_agree_on_the_readers(
    tmp_path: Path,
    pg_url: str,
    luigid: str,  # noqa: F811
) -> None:
    """Whichever worker runs a reader reads its parents' builds from the target's state."""
    project = items_project(tmp_path, pg_url, **{"out/report.sql": REPORT})
    project = write_project(project, {"out/summary.sql": SUMMARY})
    assert build_json(project=project, target=pg_url)[0] == 0
    before = build_ids(pg_url, project)

    def two_workers() -> list[dict[str, Any]]:
        workers = [
            cli_process(
                "build", "--json", "--scheduler-url", luigid, project=project, target=pg_url
            )
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=300) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        return [json.loads(out) for out, _ in outputs]

    payloads = two_workers()
    assert build_ids(pg_url, project) == before
    readers = {r["status"] for p in payloads for r in p["tasks"] if r["model"] != STORE}
    assert readers <= {"up to date", "elsewhere"}, payloads

    new_rows(pg_url, project)
    payloads = two_workers()
    runs = [p["run_id"] for p in payloads]
    built = query(
        pg_url,
        project,
        "select model from dbluigi.task_runs where status = 'success' "
        "and reason <> 'built by another worker' and run_id in (%s, %s) and rows_affected <> 0",
        runs,
    )
    assert sorted(r[0] for r in built) == ["out.items_store", "out.report", "out.summary"]
    assert query(pg_url, project, "select n, top from out.report") == [(3, "c")]
    after = build_ids(pg_url, project)
    assert all(after[m] != before[m] for m in before)


# -- the decisions, without a database ------------------------------------------------------


@pytest.mark.unit
def test_plan_runs_incremental_models_tentatively_and_their_readers_conditionally(
    tmp_path: Path,
) -> None:
    root = write_project(
        tmp_path,
        {
            "out/items_store.sql": ITEMS_STORE,
            "out/report.sql": REPORT,
            "out/summary.sql": SUMMARY,
            "out/other.sql": "select count(*) as n from src.items\n",
        },
    )
    project = load_project(root)
    selected = tuple(project.models)
    existing = {("src", "items"), *((m.split(".")[0], m.split(".")[1]) for m in selected)}
    first = make_plan(project, selected, {}, existing)
    assert {d.reason for d in first.decisions.values()} == {NEW}
    state = {
        m: ModelState(
            m,
            d.fingerprint,
            d.content_fp,
            d.build_id,
            1,
            watermark=FIRST_MARK if m == STORE else None,
        )
        for m, d in first.decisions.items()
    }
    plan = make_plan(project, selected, state, existing)
    store, report, summary = (plan.decisions[m] for m in (STORE, "out.report", "out.summary"))
    assert (store.run, store.tentative, store.reason) == (
        True,
        True,
        f"new rows since {FIRST_MARK}",
    )
    assert (store.build_id, store.generation) == (state[STORE].build_id, 1)
    assert report.conditional and report.pending == (STORE,) and report.reason == CONDITIONAL
    assert summary.conditional and summary.pending == ("out.report",)
    assert report.build_id == state["out.report"].build_id
    assert not plan.decisions["out.other"].run
    assert plan.decisions["out.other"].reason == UP_TO_DATE

    # the store changed nothing: its build stays, and its readers do not run
    assert after_run(store, changed=False) == store
    unchanged = settle(report, {STORE: store.build_id})
    assert not unchanged.run and unchanged.reason == UPSTREAM_UNCHANGED
    # it changed rows: the next generation, and its readers build
    grown = after_run(store, changed=True)
    assert grown.generation == 2 and grown.build_id != store.build_id and not grown.tentative
    rebuilt = settle(report, {STORE: grown.build_id})
    assert rebuilt.run and rebuilt.reason == UPSTREAM and rebuilt.generation == 2
    assert rebuilt.build_id not in (report.build_id, unchanged.build_id)
    assert settle(summary, {"out.report": rebuilt.build_id}).run

    # a reader changed itself: it runs either way, its build id following the store's
    (root / "out/report.sql").write_text(REPORT.replace("max(v)", "min(v)"))
    edited = make_plan(load_project(root), selected, state, existing)
    report = edited.decisions["out.report"]
    assert report.reason == CHANGED and not report.tentative and report.pending == (STORE,)
    assert edited.decisions["out.summary"].reason == UPSTREAM
    assert edited.decisions["out.summary"].pending == ("out.report",)
    assert settle(report, {STORE: store.build_id}).build_id == report.build_id
    moved = settle(report, {STORE: grown.build_id})
    assert moved.run and moved.reason == CHANGED and moved.generation == report.generation
    assert moved.build_id != report.build_id


def test_the_readers_of_an_incremental_model_read_its_build_once(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the incremental model ran, its conditional readers (there may be hundreds)
    settle on one read of its build from the state, made after it finished: none runs
    when it changed nothing, all run on its new build when it did."""
    from dbluigi import build
    from dbluigi.state import StateStore

    readers = {f"out/reader_{i}.sql": REPORT for i in range(6)}
    project = items_project(tmp_path, target_url, **readers)
    assert build(project, target=target_url).ok
    reads: list[str] = []
    original = StateStore.model_state

    def counted(self: StateStore, model: str, partition: str = "") -> tuple[str, int] | None:
        if sys._getframe(1).f_code.co_name == "_parent_build":  # a reader settling
            reads.append(str(model))
        return original(self, model, partition)

    monkeypatch.setattr(StateStore, "model_state", counted)
    quiet = build(project, target=target_url)
    assert quiet.ok and {r.model for r in quiet.results if r.status == "success"} == {STORE}
    assert reads == [STORE]

    reads.clear()
    new_rows(target_url, project)
    changed = build(project, target=target_url)
    assert changed.ok and all(r.status == "success" for r in changed.results)
    assert reads == [STORE]
    for i in range(6):
        assert query(target_url, project, f"select n, top from out.reader_{i}") == [(3, "c")]
    again = build(project, target=target_url)
    assert {r.model for r in again.results if r.status == "success"} == {STORE}
