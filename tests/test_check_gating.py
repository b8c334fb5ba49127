"""Which swap a check query gates, and what it waits for (issue 12, item 1).

A check query that reads only its owner and the owner's upstream gates the owner; one
that also reads a model unrelated to the owner makes the owner wait for that model
(ordering only) and is reported not run when that model is not available; one that
reads a model downstream of the owner gates that model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbluigi.lineage import render_lineage
from dbluigi.project import load_project
from tests.buildkit import build_json, cli, query, statuses
from tests.helpers import write_project

WITHHELD = {
    # a fails its own check, b reads a; z's check reads b, which z does not depend on
    "m/src.csv": "id\n1\n1\n",
    "m/a.sql": "select id from src",
    "m/a.check.sql": "select id from a group by id having count(*) > 1",
    "m/b.sql": "select id from a",
    "m/y.sql": "select distinct id from src",
    "m/z.sql": "select id from y",
    "m/z.check.sql": "select z.id from z left join b on b.id = z.id where false",
}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_unrelated_failure_never_withholds_a_model(
    tmp_path: Path, target_url: str, workers: str
) -> None:
    """Case (a): z reads only y; its check reads b, whose upstream fails."""
    write_project(tmp_path, WITHHELD)
    code, payload = build_json("--workers", workers, project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload) == {
        "m.src": "success",
        "m.a": "failed",
        "m.b": "skipped",
        "m.y": "success",
        "m.z": "success",
    }
    z = next(r for r in payload["tasks"] if r["model"] == "m.z")
    assert z["failure_class"] is None
    (check,) = [c for c in _checks(tmp_path, target_url, "m.z") if c["name"] == "m/z.check.sql:1"]
    assert check["status"] == "not run"
    assert check["detail"] == "not run: reads m.b, which is not available"
    assert query(target_url, tmp_path, "select id from m.z") == [(1,)]


def test_check_reading_an_unrelated_model_gates_its_owner(tmp_path: Path, target_url: str) -> None:
    """Case (b): c's own check returns a row: c is not published, b is."""
    write_project(
        tmp_path,
        {
            "m/src.csv": "id\n1\n2\n",
            "m/a.sql": "select id from src",
            "m/b.sql": "select id from a",
            "m/c.sql": "select 1 as id",
            "m/c.check.sql": "select c.id from c where c.id = 1 and not exists "
            "(select 1 from b where b.id = -1)",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload) == {
        "m.src": "success",
        "m.a": "success",
        "m.b": "success",
        "m.c": "failed",
    }
    c = next(r for r in payload["tasks"] if r["model"] == "m.c")
    assert c["failure_class"] == "check"
    assert "c.check.sql:1 returned violating rows" in c["error"]
    relations = {r[0] for r in query(target_url, tmp_path, _TABLES)}
    assert "c" not in relations and "c__dbluigi_failed" in relations
    assert "b__dbluigi_failed" not in relations
    assert query(target_url, tmp_path, "select id from m.b order by id") == [(1,), (2,)]


def test_owner_waits_for_the_unrelated_model_it_reads(tmp_path: Path) -> None:
    """The owner runs after the model its check reads (ordering only), which it then
    reads as published: a check comparing with it sees this run's rows."""
    target = f"duckdb:///{tmp_path / 't.duckdb'}"
    project = write_project(
        tmp_path / "p",
        {
            # c sorts first by name; without the wait it would run before z
            "c.sql": "select 1 as id",
            "c.check.sql": "select id from c where id not in (select id from z)",
            "z.sql": "select {{ n }} as id",
            "dbluigi.toml": "[vars]\nn = 1\n",
        },
    )
    code, payload = build_json("--workers", "2", project=project, target=target)
    assert code == 0, payload
    code, history = build_json(project=project, target=target, command="history")
    started = {t["model"]: t["started_at"] for t in history["tasks"]}
    assert started["main.z"] < started["main.c"]
    # z rebuilt with another value: c is not stale (z is not its dependency) ...
    code, payload = build_json("--var", "n=2", project=project, target=target)
    assert code == 0 and statuses(payload) == {"main.c": "up to date", "main.z": "success"}
    # ... and a rebuild of c checks against z as now published
    code, payload = build_json(
        "--var", "n=2", "main.c", project=project, target=target, command="rebuild"
    )
    assert code == 1 and statuses(payload) == {"main.c": "failed"}


def test_unrelated_model_never_built_is_not_available(tmp_path: Path) -> None:
    target = f"duckdb:///{tmp_path / 't.duckdb'}"
    project = write_project(
        tmp_path / "p",
        {
            "c.sql": "select 1 as id",
            "c.check.sql": "select id from c where id in (select id from z)",
            "z.sql": "select 1 as id",
        },
    )
    code, payload = build_json("main.c", project=project, target=target)
    assert code == 0 and statuses(payload) == {"main.c": "success"}
    (check,) = _checks(project, target, "main.c")
    assert check["status"] == "not run"
    assert "reads main.z, which is not available" in check["detail"]
    # z built now: dbluigi check runs the query against the published tables
    assert build_json("main.z", project=project, target=target)[0] == 0
    code, output = cli("check", "main.c", project=project, target=target)
    assert code == 1 and "c.check.sql:1 returned violating rows" in output


def test_check_reading_a_downstream_model_gates_it(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "m/a.sql": "select 1 as id, 'x' as v",
            "m/b.sql": "select id, 'y' as v from a",
            "m/a.check.sql": "select * from a join b using (id) where a.v <> b.v",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload) == {"m.a": "success", "m.b": "failed"}
    b = next(r for r in payload["tasks"] if r["model"] == "m.b")
    assert b["failure_class"] == "check"
    assert "a.check.sql:1 (a check of m.a, run at m.b: it reads m.b)" in b["error"]
    (check,) = _checks(tmp_path, target_url, "m.b")
    assert check["owner"] == "m.a" and check["status"] == "failed"
    code, history = build_json(project=tmp_path, target=target_url, command="history")
    (task,) = [t for t in history["tasks"] if t["model"] == "m.b"]
    assert "a check of m.a, run at m.b" in task["error"]


def test_queries_of_one_file_are_placed_one_by_one(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "a.sql": "select 1 as id",
            "b.sql": "select id from a",
            "u.sql": "select 1 as id",
            "a.check.sql": "select id from a where id < 0;\n"
            "select id from a where id not in (select id from b);\n"
            "select id from a where id not in (select id from u);\n",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    placed = {(c.name, c.gate, c.waits) for c in project.checks}
    assert placed == {
        ("a.check.sql:1", "main.a", ()),
        ("a.check.sql:2", "main.b", ()),
        ("a.check.sql:3", "main.a", ("main.u",)),
    }
    assert all(not c.whole for c in project.checks)
    text = render_lineage(project, fmt="text")
    assert "a.check.sql:2 gates main.b's swap (it reads main.b)" in text
    assert "a.check.sql:3, reads main.u as published (waits for it)" in text
    code, output = cli(
        "plan", "--json", project=tmp_path, target=f"duckdb:///{tmp_path / 't.duckdb'}"
    )
    rows = {r["model"]: r for r in json.loads(output)["models"]}
    assert rows["main.a"]["waits_for"] == ["main.u"]
    assert (
        "a.check.sql:2 (a check of main.a, run at main.b: it reads main.b)"
        in rows["main.b"]["checks"]
    )
    # editing a query that gates b rebuilds b (and not a); one gating a rebuilds a
    target = f"duckdb:///{tmp_path / 't.duckdb'}"
    assert build_json(project=tmp_path, target=target)[0] == 0
    text = (tmp_path / "a.check.sql").read_text()
    (tmp_path / "a.check.sql").write_text(text.replace("from b)", "from b where id > -1)"))
    code, payload = build_json(project=tmp_path, target=target)
    assert code == 0
    assert {m for m, s in statuses(payload).items() if s != "up to date"} == {"main.b"}


def test_checks_waiting_on_each_other_still_load_and_run(tmp_path: Path) -> None:
    """Two unrelated models whose checks read each other: one of them cannot wait."""
    target = f"duckdb:///{tmp_path / 't.duckdb'}"
    write_project(
        tmp_path,
        {
            "a.sql": "select 1 as id",
            "b.sql": "select 1 as id",
            "a.check.sql": "select id from a where id not in (select id from b)",
            "b.check.sql": "select id from b where id not in (select id from a)",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    assert project.order == ("main.b", "main.a")
    code, payload = build_json(project=tmp_path, target=target)
    assert code == 0 and statuses(payload) == {"main.a": "success", "main.b": "success"}
    b_checks = _checks(tmp_path, target, "main.b")
    assert [c["status"] for c in b_checks] == ["not run"]
    assert [c["status"] for c in _checks(tmp_path, target, "main.a")] == ["passed"]


_TABLES = "select table_name from information_schema.tables where table_schema = 'm'"


def _checks(project: Path, target: str, model: str) -> list[dict[str, object]]:
    """The check results of ``model``'s last attempt, as ``history --json`` shows them."""
    code, payload = build_json("--model", model, project=project, target=target, command="history")
    assert code == 0
    tasks = [t for t in payload["tasks"] if t["model"] == model]
    return list(tasks[0]["checks"])
