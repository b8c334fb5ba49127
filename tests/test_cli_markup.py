"""What the CLI prints is printed literally: names, partition values, paths, errors,
check SQL and violating rows holding brackets that rich would read as markup
(``[gb]``, ``[bold]x[/bold]``, ``[/]``) are shown as written, never eaten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dbluigi import cli as cli_module
from tests.buildkit import cli
from tests.test_build import write_project

MARKUP = ("[gb]", "[bold]x[/bold]", "[/]")


@pytest.fixture
def wide() -> Iterator[None]:
    """A console wide enough for the tables' cells to be printed whole."""
    console = cli_module.console
    narrow, console.width = console._width, 250
    try:
        yield
    finally:
        console._width = narrow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(
        tmp_path / "project",
        {
            "staging/sales.sql": "-- partition: region in ('[gb]', '[bold]x[/bold]', '[/]')\n"
            "select '{{ region }}' as region",
            "staging/[gb]m.sql": "select 1 as id",
            "staging/reader.sql": 'select id from staging."[gb]m"',
            "staging/checked.sql": "select '[bold]x[/bold] [/]' as v",
            "staging/checked.check.sql": "select v from staging.checked where v like '%[/]%'",
            "staging/flagged.sql": "select '[bold]x[/bold] [/]' as v",
            "staging/broken.sql": "select cast('[red]oops[/red]' as integer) as n",
        },
    )


def test_build_summary_errors_plan_history_check_and_lineage_print_brackets_as_written(
    project: Path, duckdb_url: str, wide: None
) -> None:
    code, out = cli("build", project=project, target=duckdb_url)
    assert code == 1, out
    summary = out[out.index("┏") :]  # the summary table, after the per-task log lines
    for value in MARKUP:
        assert f"staging.sales [{value}]" in summary, summary
    assert "staging.[gb]m" in summary
    # the errors: the database's message, the check's SQL and its violating rows
    assert "runtime error in staging.broken:" in out
    assert "Could not convert string '[red]oops[/red]' to INT32" in out
    assert "check error in staging.checked:" in out
    assert "select v from staging.checked where v like '%[/]%'" in out
    assert "first violating rows:\nv\n[bold]x[/bold] [/]\n" in out

    code, out = cli("plan", project=project, target=duckdb_url)
    assert code == 0, out
    assert "staging.[gb]m" in out and "<- staging.[gb]m" in out

    code, out = cli("history", project=project, target=duckdb_url)
    assert code == 0, out
    for value in MARKUP:
        assert f"staging.sales [{value}]" in out, out
    assert "'[red]oops" in out  # the error's first line, cut at 80 characters

    code, out = cli("history", "--model", "staging.[gb]m", project=project, target=duckdb_url)
    assert code == 0 and "task attempts of staging.[gb]m" in out, out

    # a check added once the table is published: ``check`` finds its violating rows
    check_sql = "select v from staging.flagged where v like '%[/]%'"
    (project / "staging" / "flagged.check.sql").write_text(check_sql)
    code, out = cli("check", "staging.flagged", project=project, target=duckdb_url)
    assert code == 1, out
    assert "failed staging.flagged (check)" in out
    assert check_sql in out and "\n[bold]x[/bold] [/]\n" in out

    code, out = cli("lineage", project=project, target=duckdb_url)
    assert code == 0 and "staging.[gb]m [table]" in out, out


def test_a_project_error_prints_its_brackets(tmp_path: Path, duckdb_url: str) -> None:
    project = write_project(tmp_path, {"a.sql": "-- kind: [bold]table[/bold]\nselect 1 as id"})
    code, out = cli("build", project=project, target=duckdb_url)
    assert code == 2 and "[bold]table[/bold]" in out, out


def test_a_run_artifact_path_prints_its_brackets(tmp_path: Path, duckdb_url: str) -> None:
    project = write_project(tmp_path / "[bold]p[/]", {"a.sql": "select 1 as id"})
    code, out = cli("build", project=project, target=duckdb_url)
    assert code == 0, out
    assert f"run artifact: {project / '.dbluigi' / 'runs'}" in out, out


def test_help_texts_print_their_brackets() -> None:
    from typer.testing import CliRunner

    from dbluigi.cli import app

    result = CliRunner().invoke(app, ["build", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert "[target] workers in dbluigi.toml" in result.output
    assert "[watch] interval in dbluigi.toml" in result.output


def test_target_help_names_its_environment_variable() -> None:
    from typer.testing import CliRunner

    from dbluigi.cli import app

    result = CliRunner().invoke(app, ["plan", "--help"], env={"COLUMNS": "300"})
    assert "$DBLUIGI_TARGET" in result.output and "[targets.NAME]" in result.output


def test_in_a_log_the_summary_prints_a_long_model_name_whole(
    tmp_path: Path, duckdb_url: str
) -> None:
    name = "main." + "long_model_name_" * 6 + "x" * 95
    name = name[:100]  # PostgreSQL cuts names at 63 bytes: DuckDB keeps all 100
    project = write_project(tmp_path / "project", {f"{name[5:]}.sql": "select 1 as id"})
    assert not cli_module.console.is_terminal  # CliRunner's output is a log, not a terminal
    code, output = cli("build", project=project, target=duckdb_url)
    assert code == 0, output
    (row,) = [line for line in output.splitlines() if "│" in line and name in line]
    assert "success" in row and len(name) == 100
