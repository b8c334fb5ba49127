"""Selectors on both targets through the command line: ``--select/-s``, ``stale`` (what a
build would run now) and ``result:`` (how the last run ended)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.buildkit import build_json, cli, ran, statuses
from tests.helpers import write_project

PROJECT = {
    "raw/people.csv": "id,name\n1,ann\n2,bob\n",
    "staging/people.sql": "select id, name from raw.people",
    "staging/people_count.sql": "select count(*) as n from staging.people",
    "api/ok.sql": "-- tags: api\nselect name from staging.people",
}
FAILING = {
    "staging/bad.sql": "select cast('x' as integer) as x",  # fails as it runs
    "staging/bad_child.sql": "select x from staging.bad",
    "api/checked.sql": "-- check: rows > 0\nselect id from staging.people where id < 0",
    "api/checked_child.sql": "select id from api.checked",
}


def _planned(project: Path, target: str, *selectors: str) -> set[str]:
    """The models ``plan`` selects with these arguments."""
    code, payload = build_json(*selectors, project=project, target=target, command="plan")
    assert code == 0, payload
    return {row["model"] for row in payload["models"]}


def _would_run(payload: dict[str, Any]) -> set[str]:
    return {row["model"] for row in payload["models"] if row["run"]}


def test_select_option_unions_arguments_and_intersections(target_url: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", PROJECT)
    assert _planned(project, target_url, "-s", "+ok", "--exclude", "kind:seed") == {
        "staging.people",
        "api.ok",
    }
    code, payload = build_json(
        "-s", "+ok", "--select", "people_count", project=project, target=target_url
    )
    assert code == 0, payload
    assert ran(payload) == {"raw.people", "staging.people", "staging.people_count", "api.ok"}
    code, payload = build_json("raw", "-s", "tag:api,path:api/", project=project, target=target_url)
    assert code == 0, payload
    assert statuses(payload) == {"raw.people": "up to date", "api.ok": "up to date"}
    code, out = cli("plan", "-s", "tag:api,staging", project=project, target=target_url)
    assert code == 0 and "0 of 0 selected models would run" in out


def test_stale_picks_the_edited_model_and_its_downstream(target_url: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", PROJECT)
    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    assert _planned(project, target_url, "-s", "stale") == set()
    (project / "staging" / "people.sql").write_text("select id, name from raw.people where id > 0")
    downstream = {"staging.people", "staging.people_count", "api.ok"}
    code, plan = build_json("-s", "stale", project=project, target=target_url, command="plan")
    assert code == 0, plan
    assert {row["model"] for row in plan["models"]} == _would_run(plan) == downstream
    assert _planned(project, target_url, "stale,tag:api") == {"api.ok"}
    assert _planned(project, target_url, "2+stale", "--exclude", "stale") == {"raw.people"}
    code, payload = build_json("--select", "stale+", project=project, target=target_url)
    assert code == 0, payload
    assert ran(payload) == set(statuses(payload)) == downstream
    assert _planned(project, target_url, "stale+") == set()
    code, out = cli("check", "-s", "stale", project=project, target=target_url)
    assert code == 0 and "0 passed, 0 failed" in out


def test_result_selects_by_the_last_run(target_url: str, tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", {**PROJECT, **FAILING})
    code, out = cli("plan", "-s", "result:error", project=project, target=target_url)
    assert code == 2 and "no run recorded yet" in out
    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    assert statuses(payload)["staging.bad"] == "failed"
    assert statuses(payload)["api.checked"] == "failed"
    assert _planned(project, target_url, "-s", "result:error") == {"staging.bad"}
    assert _planned(project, target_url, "--select", "result:fail") == {"api.checked"}
    assert _planned(project, target_url, "result:skipped") == {
        "staging.bad_child",
        "api.checked_child",
    }
    assert _planned(project, target_url, "result:success") == {
        "raw.people",
        "staging.people",
        "staging.people_count",
        "api.ok",
    }
    assert _planned(project, target_url, "result:fail result:error") == {
        "staging.bad",
        "api.checked",
    }
    code, out = cli("lineage", "-s", "result:eror", project=project, target=target_url)
    assert code == 2 and "'eror' is not a result" in out and "error" in out
    # mend the erroring model and build what errored and its downstream, as dbt retries
    (project / "staging" / "bad.sql").write_text("select 1 as x")
    code, payload = build_json("-s", "result:error+", project=project, target=target_url)
    assert code == 0, payload
    assert ran(payload) == {"staging.bad", "staging.bad_child"}
    assert _planned(project, target_url, "result:success") == {"staging.bad", "staging.bad_child"}
    assert _planned(project, target_url, "result:fail") == set()  # the last run is the one
