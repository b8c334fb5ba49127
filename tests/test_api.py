"""The Python API used as an Airflow or Dagster task would: build, read the result, no CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dbluigi
from tests.buildkit import ROOT, copy_example, query
from tests.helpers import write_project

CHECK = "reporting/agency_reporting.check.sql"


def test_a_task_builds_reads_a_failed_check_and_builds_again(
    tmp_path: Path, target_url: str
) -> None:
    from dbluigi import build

    project = copy_example(tmp_path)
    result = build(project, target=target_url)
    assert result.ok and result.exit_code == 0 and result.failed_models == ()
    assert len(result.built) == 12 and "api.cde_agencies" in result.built
    assert result.run_id and result.artifact is not None and result.artifact.is_file()
    assert result.run_id in result.artifact.name
    assert query(target_url, project, "select count(*) from api.cde_agencies") == [(300,)]
    published = query(target_url, project, "select count(*) from reporting.agency_reporting")

    # a failing check is a result, not an exception; the published table stays as it was
    (project / CHECK).write_text("select * from reporting.agency_reporting\n")
    failed = build(project, target=target_url)
    assert not failed.ok and failed.exit_code == 1
    assert {r.model: r.status for r in failed.failed} == {
        "reporting.agency_reporting": "failed",
        "api.cde_agencies": "skipped",  # downstream of it: not run, and so not ok
        "api.offense_annual": "skipped",
    }
    assert failed.failed_models[0] == "reporting.agency_reporting"
    task = failed.failed[0]
    assert task.failure_class == "check"
    assert task.error is not None and CHECK in task.error
    assert (
        query(target_url, project, "select count(*) from reporting.agency_reporting") == published
    )

    # the same process builds again after a failure (luigi's state is per process)
    (project / CHECK).write_text("select * from reporting.agency_reporting where 1 = 0\n")
    again = build(project, target=target_url)
    assert again.ok and set(again.built) == set(failed.failed_models)
    assert again.run_id != failed.run_id != result.run_id


def test_errors_that_stop_a_build_raise_dbluigi_errors(tmp_path: Path, target_url: str) -> None:
    from dbluigi import DbluigiError, SelectorError, UsageError, build, load, rebuild

    project = copy_example(tmp_path)
    with pytest.raises(SelectorError, match=r"closest matches: staging\.agencies") as raised:
        build(project, ["staging.agencys"], target=target_url)
    assert isinstance(raised.value, DbluigiError)
    with pytest.raises(UsageError, match="rebuild needs a selector"):
        rebuild(project, [], target=target_url)
    with pytest.raises(UsageError, match="fixed when a project is loaded"):
        build(load(project, target=target_url), target=target_url)
    # after errors, the same process builds; a string is one selector
    built = build(project, "+staging.agencies", target=target_url)
    assert built.ok and built.built[-1] == "staging.agencies" and len(built.built) == 5


def test_load_plan_build_check_and_a_second_project_in_one_process(
    tmp_path: Path, target_url: str
) -> None:
    from dbluigi import build, check, load, plan_build, rebuild

    example = load(copy_example(tmp_path), target=target_url)
    plan = plan_build(example, ["+staging.agencies"])
    assert plan.to_run == plan.selected and "staging.agencies" in plan.to_run
    assert plan.decisions["staging.agencies"].reason == "new"
    assert build(example, ["+staging.agencies"]).ok
    assert plan_build(example, ["+staging.agencies"]).to_run == ()
    checked = check(example, ["staging.agencies"])
    assert checked.ok and [r.model for r in checked.results] == ["staging.agencies"]

    other = write_project(
        tmp_path / "other",
        {
            "tally/counts.sql": "select 1 as n",
            "tally/doubled.sql": "select n * 2 as n from tally.counts",
        },
    )
    built = build(other, target=target_url, vars={"unused": 1}, workers=2)
    assert built.ok and set(built.built) == {"tally.counts", "tally.doubled"}
    assert query(target_url, other, "select n from tally.doubled") == [(2,)]
    assert rebuild(example, ["staging.agencies"]).built == ("staging.agencies",)


@pytest.mark.unit
def test_import_dbluigi_is_cheap_and_every_public_name_resolves() -> None:
    probe = (
        "import sys, dbluigi; print(sorted(n for n in ('typer', 'rich', 'sqlglot', 'luigi', "
        "'duckdb', 'dbluigi.api') if n in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    assert set(dbluigi.__all__) == {"__version__", *dbluigi._EXPORTS}
    for name in dbluigi.__all__:
        assert getattr(dbluigi, name) is not None
    assert dbluigi.RunResult.__doc__ and dbluigi.build.__doc__ and dbluigi.Plan is not None
    with pytest.raises(AttributeError):
        dbluigi.no_such_name  # noqa: B018
