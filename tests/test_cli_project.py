"""The project-model commands through typer's CliRunner: init, lineage, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dbluigi.cli import app
from tests.helpers import write_project

pytestmark = pytest.mark.unit

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parent.parent / "project"


def test_lineage_text_and_json_on_the_example() -> None:
    result = runner.invoke(app, ["lineage", "--project", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "staging.agencies [table]" in result.output
    result = runner.invoke(
        app, ["lineage", "agency_reporting", "--project", str(EXAMPLE), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    ids = {n["id"] for n in json.loads(result.output)["nodes"]}
    # a bare selector shows the whole lineage: upstream and downstream
    assert {
        "staging.agencies",
        "reporting.agency_reporting",
        "api.cde_agencies",
        "raw.offense_monthly",
    } <= ids
    assert "api.offender_age_histogram" not in ids


def test_lineage_formats_and_bad_format() -> None:
    for fmt, start in (("mermaid", "flowchart LR"), ("dot", "digraph dbluigi {")):
        result = runner.invoke(app, ["lineage", "--project", str(EXAMPLE), "--format", fmt])
        assert result.exit_code == 0 and result.output.startswith(start)
    result = runner.invoke(app, ["lineage", "--project", str(EXAMPLE), "--format", "svg"])
    assert result.exit_code == 2
    assert "--format 'svg' is not one of text, mermaid, dot, json" in result.output


def test_project_errors_exit_2_with_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "-- kindd: table\nselect 1"})
    result = runner.invoke(app, ["lineage", "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert "a.sql:1: unknown header key 'kindd'" in result.output
    assert "did you mean 'kind'" in result.output


def test_unknown_selector_exits_2_with_closest_match() -> None:
    result = runner.invoke(app, ["lineage", "cde_agency", "--project", str(EXAMPLE)])
    assert result.exit_code == 2
    assert "matches no model" in result.output and "cde_agencies" in result.output
    # the selector as typed, not the +cde_agency+ that lineage shows of it
    assert "selector 'cde_agency' matches" in result.output and "+cde_agency" not in result.output
    result = runner.invoke(app, ["lineage", "-s", "tag:api,path:apx/", "--project", str(EXAMPLE)])
    assert result.exit_code == 2
    assert "selector 'path:apx/' (in 'tag:api,path:apx/')" in result.output
    assert "closest matches: api/" in result.output


def test_lineage_takes_select_options_intersections_and_wildcards() -> None:
    def ids(*args: str) -> set[str]:
        result = runner.invoke(
            app, ["lineage", *args, "--project", str(EXAMPLE), "--format", "json"]
        )
        assert result.exit_code == 0, result.output
        return {n["id"] for n in json.loads(result.output)["nodes"]}

    assert ids("-s", "offense_annual+") == {"api.offense_annual"}
    assert ids("--select", "cde_agencies+", "-s", "offense_annual+") == {
        "api.cde_agencies",
        "api.offense_annual",
    }
    assert ids("-s", "tag:api,path:api/cde*+") == {"api.cde_agencies"}
    assert ids("api.*+", "--exclude", "api.cde_agencies") == {
        "api.offense_annual",
        "api.offender_age_histogram",
    }


def test_help_lists_every_selector_form_unescaped() -> None:
    for command in ("build", "rebuild", "plan", "lineage", "check"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        text = " ".join(result.output.replace("│", " ").split())
        for form in ("schema.name", "raw.*", "tag:x", "path:dir/", "source:x", "kind:view"):
            assert form in text, (command, form)
        for form in ("stale", "result:error|fail|skipped|success", "N+x", "x+N", "@x", "a,b"):
            assert form in text, (command, form)
        assert "--select" in text and " -s " in text and "--exclude" in text


def test_rebuild_needs_a_selector() -> None:
    result = runner.invoke(app, ["rebuild", "--project", str(EXAMPLE)])
    assert result.exit_code == 2
    assert "rebuild needs a selector" in result.output


def test_empty_project_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lineage", "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert "no models found" in result.output


def test_init_scaffolds_a_project_that_loads(tmp_path: Path) -> None:
    folder = tmp_path / "starter"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "dbluigi.toml").exists()
    result = runner.invoke(app, ["lineage", "--project", str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    kinds = {n["id"]: n["kind"] for n in json.loads(result.output)["nodes"]}
    assert kinds == {
        "raw.customers": "seed",
        "raw.countries": "seed",
        "staging.customers": "table",
        "reporting.customers_by_country": "table",
    }
    again = runner.invoke(app, ["init", str(folder)])
    assert again.exit_code == 2 and "is not empty" in again.output


def test_init_into_a_file_or_a_folder_it_cannot_make_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("kept\n")
    for folder, says in (
        (tmp_path / "file", "is a file"),
        (tmp_path / "file" / "starter", "cannot create"),
        (Path("/proc/no_such_folder"), "cannot create"),
    ):
        result = runner.invoke(app, ["init", str(folder)])
        assert result.exit_code == 2, result.output
        assert f"{folder}" in result.output and says in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (tmp_path / "file").read_text() == "kept\n"


@pytest.mark.parametrize("command", ["lineage", "build", "history", "debug", "test", "clean"])
def test_project_naming_a_file_exits_2_naming_the_option(tmp_path: Path, command: str) -> None:
    (tmp_path / "dbluigi.toml").write_text("")
    result = runner.invoke(app, [command, "--project", str(tmp_path / "dbluigi.toml")])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert "--project" in out and "is a file" in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_project_naming_a_file_says_so_in_json_too(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("select 1")
    result = runner.invoke(app, ["ls", "--output", "json", "--project", str(tmp_path / "a.sql")])
    assert result.exit_code == 2
    error = json.loads(result.stdout.splitlines()[-1])["error"]
    assert "--project" in error["message"] and "is a file" in error["message"]
