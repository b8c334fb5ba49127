"""The python kind: run(ctx) builds the model's new table, which is checked and swapped;
a failing step fails with its class and traceback. DuckDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from dbluigi.project import load_project
from tests.buildkit import build_json, query, ran
from tests.test_build import write_project

STEP = """\
# description: amounts doubled, with a label from the variables
# depends: main.source
# check: unique(id)
# index: id
import logging


def run(ctx):
    assert ctx.relation == "main.doubled"
    assert ctx.table.endswith('"doubled__dbluigi_new"')
    assert set(ctx.upstream) == {"main.source"}
    ctx.log.info("building %s", ctx.table)
    label = ctx.variables["label"]
    ctx.connection.execute(
        f"create table {ctx.table} as select id, amount * 2 as {ctx.quote('Doubled Amount')}, "
        f"cast(%s as text) as label from {ctx.ref('source')}",
        [label],
    )
"""


def step_project(root: Path, step: str = STEP, **files: str) -> Path:
    return write_project(
        root,
        {
            "dbluigi.toml": '[vars]\nlabel = "x2"\n',
            "source.sql": "select 1 as id, 10 as amount union all select 2, 20",
            "doubled.py": step,
            **files,
        },
    )


def result_of(payload: dict[str, object], model: str = "main.doubled") -> dict[str, object]:
    return next(r for r in payload["tasks"] if r["model"] == model)  # type: ignore[union-attr, index]


def test_a_step_builds_its_table_which_is_checked_and_swapped(
    tmp_path: Path, target_url: str
) -> None:
    project = step_project(tmp_path)
    loaded = load_project(project)
    assert loaded.models["main.doubled"].kind == "python"
    assert set(loaded.graph.parents("main.doubled")) == {"main.source"}

    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    assert result_of(payload)["rows"] == 2 and result_of(payload)["kind"] == "python"
    rows = query(
        target_url, project, 'select id, "Doubled Amount", label from main.doubled order by id'
    )
    assert [tuple(r) for r in rows] == [(1, 20, "x2"), (2, 40, "x2")]
    assert _index_names(target_url, project) == {"doubled__id_idx"}

    code, again = build_json(project=project, target=target_url)
    assert code == 0 and ran(again) == set()
    # the fingerprint covers the file: any edit rebuilds the step
    (project / "doubled.py").write_text(STEP + "\n# an edit\n")
    code, edited = build_json(project=project, target=target_url)
    assert ran(edited) == {"main.doubled"} and result_of(edited)["reason"] == "definition changed"


def test_a_raising_step_fails_with_class_runtime_and_its_traceback(
    tmp_path: Path, target_url: str
) -> None:
    project = step_project(tmp_path)
    assert build_json(project=project, target=target_url)[0] == 0
    broken = (
        STEP.replace(
            "    label = ctx.variables",
            "    helper(ctx)\n    label = ctx.variables",
        )
        + "\n\ndef helper(ctx):\n    raise ValueError('no label for ' + ctx.relation)\n"
    )
    (project / "doubled.py").write_text(broken)
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert code == 1 and result["failure_class"] == "runtime"
    assert result["file"] == "doubled.py" and result["line"] == 23  # the raise in helper()
    error = str(result["error"])
    assert error.startswith("doubled.py:23: ValueError: no label for main.doubled\n")
    assert "Traceback (most recent call last):" in error
    assert 'doubled.py", line 13, in run' in error and "line 23, in helper" in error
    assert "pystep.py" not in error  # the step's frames, not dbluigi's
    stored = query(
        target_url,
        project,
        "select failure_class, error from dbluigi.task_runs where model = 'main.doubled' "
        "and status = 'failed'",
    )
    assert stored[0][0] == "runtime" and "line 23, in helper" in stored[0][1]
    # the published table is as it was
    assert query(target_url, project, "select count(*) from main.doubled") == [(2,)]


def test_sys_exit_in_a_step_fails_its_task_not_the_run(tmp_path: Path, target_url: str) -> None:
    step = (
        "# depends: main.source\nimport sys\n\n\ndef run(ctx):\n    helper()\n\n\n"
        "def helper():\n    sys.exit(3)\n"
    )
    project = step_project(tmp_path, step, **{"other.sql": "select * from main.source"})
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert code == 1 and result["failure_class"] == "runtime"
    assert result["file"] == "doubled.py" and result["line"] == 10  # the sys.exit in helper()
    assert "SystemExit: 3" in str(result["error"])
    assert result_of(payload, "main.other")["status"] == "success"  # the run went on

    # at import too, and sys.exit() with no code
    (project / "doubled.py").write_text("import sys\n\nsys.exit()\n\n\ndef run(ctx):\n    pass\n")
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert code == 1 and result["failure_class"] == "runtime"
    assert result["file"] == "doubled.py" and result["line"] == 3
    assert "SystemExit" in str(result["error"])


def test_a_database_error_in_a_step_has_the_database_class(tmp_path: Path, target_url: str) -> None:
    step = "# depends: main.source\ndef run(ctx):\n    ctx.execute('select * from no_such_table')\n"
    project = step_project(tmp_path, step)
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert code == 1 and result["failure_class"] == "syntax" and result["line"] == 3
    assert "no_such_table" in str(result["error"])


def test_a_step_must_create_its_table_and_define_run(tmp_path: Path, target_url: str) -> None:
    project = step_project(tmp_path, "def run(ctx):\n    ctx.log.info('nothing')\n")
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert code == 1 and result["failure_class"] == "runtime"
    assert "the step did not create its table main.doubled__dbluigi_new" in str(result["error"])

    (project / "doubled.py").write_text("def build(ctx):\n    pass\n")
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert result["failure_class"] == "config"
    assert "a Python model must define run(ctx)" in str(result["error"])

    (project / "doubled.py").write_text("def run(ctx)\n    pass\n")
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert result["failure_class"] == "syntax" and result["line"] == 1


def test_ref_refuses_a_relation_the_step_does_not_depend_on(
    tmp_path: Path, target_url: str
) -> None:
    step = "def run(ctx):\n    ctx.execute(f'create table {ctx.table} as select * from {ctx.ref(\"source\")}')\n"
    project = step_project(tmp_path, step)
    code, payload = build_json(project=project, target=target_url)
    result = result_of(payload)
    assert code == 1 and result["failure_class"] == "runtime"
    assert (
        "source is not a dependency of main.doubled (declared: none); "
        "add it to the step's '# depends:' header"
    ) in str(result["error"])


def test_a_cleanup_step_modifies_what_it_declares_and_rolls_back_with_it(
    tmp_path: Path, target_url: str
) -> None:
    """A step that changes another model's table declares it (# modifies:) and runs in
    that table's build, so a failed check leaves the published table as it was; a write
    it does not declare is refused before it changes anything."""
    step = """\
# modifies: main.people
def run(ctx):
    people = ctx.ref("people")
    ctx.execute(f"update {people} set name = upper(name) where name <> upper(name)")
"""
    project = write_project(
        tmp_path,
        {
            "people.sql": "select 1 as id, 'ann' as name union all select 2, 'bob'",
            "cleanup.py": step.replace("# modifies: main.people", "# depends: main.people"),
            "cleanup.check.sql": "select id from main.people where name = 'BOB'",
        },
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 1 and result_of(payload, "main.cleanup")["failure_class"] == "config"
    (project / "cleanup.py").write_text(step)
    code, payload = build_json(project=project, target=target_url)
    assert code == 1 and result_of(payload, "main.cleanup")["failure_class"] == "check"
    assert query(target_url, project, "select name from main.people order by id") == [
        ("ann",),
        ("bob",),
    ]  # the update rolled back with the build of main.people
    (project / "cleanup.check.sql").write_text(
        "select id from main.people where name <> upper(name)"
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    assert query(target_url, project, "select name from main.people order by id") == [
        ("ANN",),
        ("BOB",),
    ]


def _index_names(target: str, project: Path) -> set[str]:
    if target.startswith("duckdb"):
        sql = "select index_name from duckdb_indexes() where table_name = 'doubled'"
    else:
        sql = "select indexname from pg_indexes where tablename = 'doubled'"
    return {r[0] for r in query(target, project, sql)}
