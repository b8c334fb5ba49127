"""The commands of issue 18, item 3: retry, render (compile), show, ls (list), debug, clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlglot
from typer.testing import CliRunner

from dbluigi.cli import app
from dbluigi.targets import open_target
from tests.buildkit import build_json, cli, query, statuses, validate
from tests.helpers import write_project

PROJECT = {
    "dbluigi.toml": "[vars]\nmin_id = 1\n",
    "m/src.csv": "id\n1\n1\n2\n",
    # a fails its own check (src has id 1 twice); b and c read it, y does not
    "m/a.sql": "select id from src",
    "m/a.check.sql": "select id from a group by id having count(*) > 1",
    "m/b.sql": "select id from a",
    "m/c.sql": "-- tags: api\nselect id from b where id >= {{ min_id }}",
    "m/y.sql": "select distinct id from src",
}


def _project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "p", PROJECT)


def _same_sql(left: str, right: str, dialect: str) -> None:
    """Two SQL texts as one syntax tree."""
    assert sqlglot.parse(left, read=dialect) == sqlglot.parse(right, read=dialect), left


def _dialect(target_url: str) -> str:
    return "duckdb" if target_url.startswith("duckdb") else "postgres"


# -- retry ------------------------------------------------------------------------------


def test_retry_builds_exactly_what_failed_and_was_skipped(tmp_path: Path, target_url: str) -> None:
    project = _project(tmp_path)
    code, output = cli("retry", project=project, target=target_url)
    assert (code, output.strip()) == (0, "nothing to retry: no build has run")

    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    assert statuses(payload) == {
        "m.src": "success",
        "m.a": "failed",
        "m.b": "skipped",
        "m.c": "skipped",
        "m.y": "success",
    }
    # not fixed yet: the retry fails the same way, and builds nothing else
    code, payload = build_json(project=project, target=target_url, command="retry")
    assert code == 1
    assert statuses(payload) == {"m.a": "failed", "m.b": "skipped", "m.c": "skipped"}

    (project / "m/a.sql").write_text("select distinct id from src")
    code, output = cli("retry", project=project, target=target_url)
    assert code == 0, output
    assert "retrying 3 models of retry run" in output and "m.a, m.b, m.c" in output
    code, payload = build_json("m.a+", project=project, target=target_url, command="plan")
    assert code == 0
    assert [m["model"] for m in payload["models"] if m["run"]] == []
    assert query(target_url, project, "select id from m.c order by id") == [(1,), (2,)]
    history = query(
        target_url,
        project,
        "select model from dbluigi.task_runs where run_id = "
        "(select run_id from dbluigi.runs order by started_at desc limit 1) order by model",
    )
    assert history == [("m.a",), ("m.b",), ("m.c",)]

    code, payload = build_json(project=project, target=target_url, command="retry")
    assert (code, payload["tasks"]) == (0, [])
    code, output = cli("retry", project=project, target=target_url)
    assert code == 0 and "nothing to retry: nothing failed in run" in output


# -- render / compile -------------------------------------------------------------------


def test_render_fills_variables_and_partition_and_transpiles(
    tmp_path: Path, target_url: str
) -> None:
    project = write_project(
        tmp_path / "p",
        {
            **PROJECT,
            "m/part.sql": "-- partition: yr in 2019..2020\n"
            "select id, {{ yr }} as yr from src where id >= {{ min_id }}",
            "m/fix.sql": "update y set id = id + {{ min_id }};\ndelete from y where id > 10",
            "m/lim.sql": "select id from y order by id limit 1",
        },
    )
    dialect = _dialect(target_url)
    code, output = cli("render", "c", "--var", "min_id=2", project=project, target=target_url)
    assert code == 0, output
    _same_sql(output, "select id from m.b where id >= 2", dialect)

    for command in ("render", "compile"):
        code, output = cli(
            command, "m.part", "--partition", "2020", project=project, target=target_url
        )
        assert code == 0, output
        _same_sql(output, "select id, 2020 as yr from m.src where id >= 1", dialect)

    code, output = cli("render", "fix", project=project, target=target_url)
    assert code == 0, output
    _same_sql(output, "update m.y set id = id + 1; delete from m.y where id > 10", dialect)

    code, output = cli("render", "lim", "--dialect", "tsql", project=project, target=target_url)
    assert code == 0, output
    assert "TOP 1" in output and "LIMIT" not in output
    expected = sqlglot.transpile(
        "select id from m.y order by id limit 1", read=dialect, write="tsql"
    )
    _same_sql(output, expected[0], "tsql")

    code, output = cli("render", "part", project=project, target=target_url)
    assert code == 2 and "partitioned by yr" in output and "--partition" in output
    code, output = cli("render", "part", "--partition", "2021", project=project, target=target_url)
    assert code == 2 and "--partition 2021: not a value of yr in m.part" in output
    assert "2019, 2020" in output
    code, output = cli("render", "src", project=project, target=target_url)
    assert code == 2 and "m.src is a seed (a data file): it has no SQL to render" in output
    code, output = cli("render", "m.bb", project=project, target=target_url)
    assert code == 2 and "m.bb" in output and "m.b" in output.replace("m.bb", "")
    code, output = cli("render", "lim", "--dialect", "nosuch", project=project, target=target_url)
    assert code == 2 and "--dialect 'nosuch'" in output


# -- show -------------------------------------------------------------------------------


def _show(project: Path, target: str, *args: str) -> tuple[int, dict[str, object]]:
    code, payload = build_json(*args, project=project, target=target, command="show")
    return code, payload


def test_show_previews_a_query_a_published_table_and_sql(tmp_path: Path, target_url: str) -> None:
    project = _project(tmp_path)
    (project / "m/a.check.sql").unlink()
    code, output = cli("show", "src", project=project, target=target_url)
    assert code == 2
    assert "m.src is not published" in output and "dbluigi build m.src" in output

    code, _ = build_json("--exclude", "m.c", project=project, target=target_url)
    assert code == 0
    # a query model: its query runs (as dbt show), nothing is published
    code, payload = _show(project, target_url, "c")
    assert code == 0
    assert payload["columns"] == ["id"]
    assert sorted(r["id"] for r in payload["rows"]) == [1, 1, 2]  # type: ignore[index, union-attr]
    assert ("m", "c") not in open_target(target_url, project_dir=project).connect().relations("m")

    code, payload = _show(project, target_url, "c", "--limit", "1")
    assert code == 0 and len(payload["rows"]) == 1  # type: ignore[arg-type]
    code, payload = _show(project, target_url, "src", "--limit", "10")  # a seed: published
    assert code == 0
    assert sorted(r["id"] for r in payload["rows"]) == [1, 1, 2]  # type: ignore[index, union-attr]
    code, output = cli("show", "c", "--published", project=project, target=target_url)
    assert code == 2 and "m.c is not published" in output and "dbluigi build m.c" in output
    code, payload = _show(project, target_url, "--sql", "select 42 as answer")
    assert (code, payload) == (
        0,
        {"schema": "dbluigi/show/v1", "columns": ["answer"], "rows": [{"answer": 42}]},
    )

    # a name given twice keeps both values (PostgreSQL's kept the last), named as DuckDB
    # names them
    code, payload = _show(project, target_url, "--sql", "select 1 as a, 2 as a, 3 as a_2")
    assert (code, payload["columns"], payload["rows"]) == (
        0,
        ["a", "a_1", "a_2"],
        [{"a": 1, "a_1": 2, "a_2": 3}],
    )

    code, output = cli(
        "show", "--sql", "select '[red]x[/]' as v", project=project, target=target_url
    )
    assert code == 0 and "[red]x[/]" in output and "1 rows (at most 5)" in output
    code, output = cli(
        "show", "--sql", "select * from m.nothing", project=project, target=target_url
    )
    assert code == 2 and "--sql: the query failed" in output
    code, output = cli("show", "--sql", "delete from m.y", project=project, target=target_url)
    assert code == 2 and "expected one SELECT" in output
    code, output = cli("show", project=project, target=target_url)
    assert code == 2 and "a model or --sql" in output
    assert query(target_url, project, "select count(*) from m.y") == [(2,)]


def test_show_of_a_script_reads_the_table_it_creates(tmp_path: Path, target_url: str) -> None:
    """A ``sql`` script's own name is no table: show reads the one table it creates, and
    says why it cannot when it creates none or several (it said "not published")."""
    project = write_project(
        tmp_path / "p",
        {
            "m/src.csv": "id\n1\n2\n",
            "m/script.sql": "-- kind: sql\ncreate table m.made as select id from m.src;\n"
            "insert into m.made values (3)",
            "m/two.sql": "-- kind: sql\ncreate table m.a1 as select 1 as x;\n"
            "create table m.a2 as select 2 as x",
            "m/fix.sql": "-- kind: sql\nupdate m.made set id = id * 10 where id = 3",
        },
    )
    code, output = cli("show", "script", project=project, target=target_url)
    assert code == 2 and "m.made is not published" in output and "build m.script" in output
    code, _ = build_json(project=project, target=target_url)
    assert code == 0
    code, payload = _show(project, target_url, "script")
    assert code == 0
    assert sorted(r["id"] for r in payload["rows"]) == [1, 2, 30]  # type: ignore[index, union-attr]
    code, output = cli("show", "two", project=project, target=target_url)
    assert code == 2 and "m.two is a script that creates m.a1, m.a2" in output
    assert 'dbluigi show --sql "select * from m.a1"' in output
    code, output = cli("show", "fix", project=project, target=target_url)
    assert code == 2 and "m.fix is a script (m/fix.sql) that creates no table" in output
    assert 'dbluigi show --sql "select * from m.made"' in output


def test_show_json_of_a_model_whose_query_fails_names_its_file(
    tmp_path: Path, target_url: str
) -> None:
    project = write_project(
        tmp_path,
        {
            "dbluigi.toml": '[project]\ndefault_schema = "m"\n',
            "bad.sql": "-- description: a cast that fails\nselect cast('x' as integer) as id\n",
        },
    )
    code, payload = _show(project, target_url, "bad")
    assert code == 2 and payload["schema"] == "dbluigi/error/v1"
    error = payload["error"]
    assert isinstance(error, dict)
    assert (error["file"], error["line"]) == ("bad.sql", 2)
    assert error["message"].startswith("the query failed: ")
    code, output = cli("show", "bad", project=project, target=target_url)
    assert code == 2 and "bad.sql:2: the query failed: " in " ".join(output.split())
    # --sql is no file
    code, payload = _show(project, target_url, "--sql", "select cast('x' as integer)")
    assert code == 2 and payload["error"]["file"] is None  # type: ignore[index]


# -- ls / list --------------------------------------------------------------------------


def test_ls_lists_the_selection_in_run_order(tmp_path: Path, target_url: str) -> None:
    project = _project(tmp_path)
    code, output = cli("ls", project=project, target=target_url)
    assert code == 0
    lines = output.splitlines()
    assert sorted(lines) == ["m.a", "m.b", "m.c", "m.src", "m.y"]
    assert lines.index("m.src") < lines.index("m.a") < lines.index("m.b") < lines.index("m.c")
    code, output = cli("list", "a+", "--exclude", "c", project=project, target=target_url)
    assert (code, output.splitlines()) == (0, ["m.a", "m.b"])
    code, output = cli("ls", "tag:api", "--output", "path", project=project, target=target_url)
    assert (code, output.splitlines()) == (0, ["m/c.sql"])
    code, output = cli("ls", "+b", "-o", "json", project=project, target=target_url)
    assert code == 0
    lines = [validate(json.loads(line)) for line in output.splitlines()]  # a document a line
    assert {line.pop("schema") for line in lines} == {"dbluigi/ls/v1"}
    assert lines == [
        {"relation": "m.src", "kind": "seed", "file": "m/src.csv", "tags": [], "depends": []},
        {"relation": "m.a", "kind": "table", "file": "m/a.sql", "tags": [], "depends": ["m.src"]},
        {"relation": "m.b", "kind": "table", "file": "m/b.sql", "tags": [], "depends": ["m.a"]},
    ]
    code, output = cli("ls", "--output", "yaml", project=project, target=target_url)
    assert code == 2 and "--output 'yaml'" in output
    code, output = cli("ls", "m.bb", project=project, target=target_url)
    assert code == 2 and "m.bb" in output


# -- debug ------------------------------------------------------------------------------


def test_debug_reports_configuration_target_and_each_source(
    tmp_path: Path, target_url: str, pg_source_url: str
) -> None:
    project = _project(tmp_path)
    code, output = cli("debug", project=project, target=target_url)
    assert code == 0, output
    for expected in (
        f"project: {project.resolve()}",
        f"config file: {(project / 'dbluigi.toml').resolve()}",
        "versions: dbluigi ",
        "sqlglot ",
        "luigi ",
        "duckdb ",
        "default schema: ",
        "vars: min_id",
        "connection: ok",
        "state: ok",
    ):
        assert expected in output, (expected, output)

    bad = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    (project / "dbluigi.toml").write_text(
        "[vars]\nmin_id = 1\n"
        f'[sources.good]\nurl = "{pg_source_url}"\ntables = ["t"]\n'
        f'[sources.bad]\nurl = "{bad}"\ntables = ["t"]\n'
    )
    code, output = cli("debug", project=project, target=target_url)
    assert code == 2, output
    assert "s3cret" not in output
    assert "source good (" in output and ": ok" in output
    assert "source bad (postgresql://someone:***@127.0.0.1:1/nowhere):" in output
    assert "connection: ok" in output


def test_debug_exits_2_when_the_target_is_unreachable(tmp_path: Path) -> None:
    project = _project(tmp_path)
    code, output = cli(
        "debug", project=project, target="postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    )
    assert code == 2 and "s3cret" not in output and "someone:***@" in output


# -- clean ------------------------------------------------------------------------------


def test_clean_removes_caches_and_leftovers_only(tmp_path: Path, target_url: str) -> None:
    project = _project(tmp_path)
    if target_url.startswith("duckdb"):  # the target file under .dbluigi/ must stay
        target_url = f"duckdb:///{project / '.dbluigi' / 'target.duckdb'}"
    code, payload = build_json(project=project, target=target_url)
    assert code == 1 and statuses(payload)["m.a"] == "failed"
    session = open_target(target_url, project_dir=project).connect()
    try:
        session.execute("create table m.y__dbluigi_new as select 1 as id")
        session.execute("create table m.keep_me as select 1 as id")  # not dbluigi's: stays
    finally:
        session.close()
    (project / ".dbluigi" / "docs").mkdir(parents=True, exist_ok=True)
    (project / ".dbluigi" / "docs" / "index.html").write_text("<html/>")
    assert (project / ".dbluigi" / "cache").is_dir()

    runner = CliRunner()
    args = ["clean", "--project", str(project), "--target", target_url]
    result = runner.invoke(app, args, input="n\n")
    assert result.exit_code == 0, result.output
    listed = [line.strip() for line in result.output.splitlines() if line.startswith("  ")]
    assert listed == [
        f"folder {project / '.dbluigi' / 'cache'}",
        f"folder {project / '.dbluigi' / 'docs'}",
        "table m.a__dbluigi_failed",
        "table m.y__dbluigi_new",
    ]
    assert "nothing removed" in result.output
    assert (project / ".dbluigi" / "docs").is_dir()

    if target_url.startswith("postgresql"):  # a running build holds its run lock
        from dbluigi.runner import RUN_LOCK
        from dbluigi.state import StateStore

        holder = open_target(target_url, project_dir=project).connect()
        try:
            StateStore(holder).start_run("r-live", "build", "", target_url, 1)
            assert holder.try_lock(RUN_LOCK.format(run_id="r-live"))
            code, output = cli("clean", "--yes", project=project, target=target_url)
            assert code == 2 and "a build is running on the target (run r-live)" in output
            StateStore(holder).finish_run("r-live", "success")
        finally:
            holder.close()

    code, output = cli("clean", "--yes", project=project, target=target_url)
    assert code == 0 and "removed 4" in output, output
    assert not (project / ".dbluigi" / "cache").exists()
    assert not (project / ".dbluigi" / "docs").exists()
    assert (project / ".dbluigi" / "runs").is_dir()
    if target_url.startswith("duckdb"):
        assert (project / ".dbluigi" / "target.duckdb").is_file()
    session = open_target(target_url, project_dir=project).connect()
    try:
        left = sorted(name for schema, name in session.relations("m"))
    finally:
        session.close()
    assert left == ["keep_me", "src", "y"]
    code, output = cli("clean", "--yes", project=project, target=target_url)
    assert (code, output.strip()) == (0, "nothing to clean")


@pytest.mark.parametrize("command", ["render", "show"])
def test_python_model_has_no_sql(tmp_path: Path, target_url: str, command: str) -> None:
    project = write_project(
        tmp_path / "p",
        {**PROJECT, "m/step.py": "def run(ctx):\n    pass\n"},
    )
    code, output = cli(command, "m.step", project=project, target=target_url)
    assert code == 2
    if command == "render":
        assert "m.step is a Python step: it has no SQL to render" in output
    else:
        assert "m.step is not published" in output


def test_debug_reports_a_source_whose_env_is_unset_without_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source is read on its own: one whose ``${ENV}`` is unset is "not set", the
    next one is still tried (here: unreachable, its password masked)."""
    from dbluigi.diagnostics import check_sources

    monkeypatch.delenv("DBLUIGI_TEST_UNSET_URL", raising=False)
    write_project(
        tmp_path,
        {
            "dbluigi.toml": '[sources.lazy]\nurl = "${DBLUIGI_TEST_UNSET_URL}"\ntables = ["t"]\n'
            '[sources.gone]\nurl = "postgresql://u:pw9@127.0.0.1:1/x"\ntables = ["t"]\n'
        },
    )
    lazy, gone = check_sources(tmp_path)
    assert lazy.name == "lazy" and lazy.error is not None
    assert "DBLUIGI_TEST_UNSET_URL is not set" in lazy.error
    assert (gone.name, gone.url) == ("gone", "postgresql://u:***@127.0.0.1:1/x")
    assert gone.error is not None and "pw9" not in gone.error
