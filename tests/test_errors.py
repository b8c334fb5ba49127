"""The exception tree: common attributes, located copies, UsageError through the CLI,
and no caller reading an error's attributes with getattr."""

from __future__ import annotations

import ast
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dbluigi import errors
from dbluigi.checks import Violation
from dbluigi.cli import _errors, _scheduler, app
from dbluigi.config import parse_var_options
from dbluigi.errors import (
    FAILURE_CLASSES,
    REPAIR_HINT,
    CheckFailed,
    CycleError,
    DbluigiError,
    DuplicateRelationError,
    HeaderError,
    ProjectError,
    SelectorError,
    SqlParseError,
    StateError,
    TargetError,
    TaskError,
    UsageError,
    VariableError,
    as_dbluigi,
)
from dbluigi.runner import RunOptions, _check_partition_option
from tests.helpers import write_project

pytestmark = pytest.mark.unit

PACKAGE = Path(errors.__file__).resolve().parent
EXAMPLE = PACKAGE.parent / "project"

# each class, made the way its raisers make it, and its default failure class
MAKERS: list[tuple[Callable[[], DbluigiError], str | None]] = [
    (lambda: DbluigiError("boom"), None),
    (lambda: ProjectError("boom"), "config"),
    (lambda: HeaderError("boom"), "config"),
    (lambda: SqlParseError("boom"), "syntax"),
    (lambda: DuplicateRelationError("boom"), "config"),
    (lambda: VariableError("boom", variable="year"), "config"),
    (lambda: UsageError("boom"), None),
    (lambda: SelectorError("boom"), None),
    (lambda: TargetError("boom"), None),
    (lambda: StateError("boom", hint=None), None),
    (lambda: TaskError("boom", failure_class="runtime"), "runtime"),
    (lambda: CheckFailed("boom", check_sql=None), "check"),
]


@pytest.mark.parametrize(("make", "failure_class"), MAKERS)
def test_every_error_has_the_common_attributes(
    make: Callable[[], DbluigiError], failure_class: str | None
) -> None:
    error = make()
    assert (error.path, error.line, error.hint, error.explain_cost) == (None, None, None, None)
    assert error.failure_class == failure_class
    assert error.message == "boom" and error.location == "" and str(error) == "boom"


@pytest.mark.parametrize(
    "cls", [DbluigiError, ProjectError, UsageError, SelectorError, TargetError]
)
def test_str_says_where_and_what_to_do_next(cls: type[DbluigiError]) -> None:
    error = cls("bad value", path=Path("models/a.sql"), line=3, hint="fix it")
    assert error.path == "models/a.sql" and error.location == "models/a.sql:3"
    assert str(error) == "models/a.sql:3: bad value\n  hint: fix it"
    assert str(cls("bad value", path="dbluigi.toml")) == "dbluigi.toml: bad value"
    assert str(cls("bad value", line=3)) == "bad value"  # a line without a file says nothing


def test_task_errors_require_a_known_failure_class() -> None:
    error = TaskError("slow", failure_class="timeout", path="a.sql", line=2, hint="faster")
    assert str(error) == "a.sql:2: slow\n  hint: faster"
    assert ProjectError("x", failure_class="syntax").failure_class == "syntax"
    assert ProjectError("x").failure_class == "config"  # the instance did not change the class
    with pytest.raises(AssertionError):
        TaskError("x", failure_class="nope")
    defaults = {make().failure_class for make, _ in MAKERS}
    assert defaults - {None} <= set(FAILURE_CLASSES)


def test_state_errors_say_how_to_repair_and_cycles_name_their_files() -> None:
    assert StateError("dbluigi.models has no column rows").hint == REPAIR_HINT
    cycle = CycleError(["a.x", "a.y", "a.x"], ["a/x.sql", "a/y.sql"])
    assert "dependency cycle: a.x -> a.y -> a.x" in str(cycle) and "hint:" in str(cycle)
    assert cycle.failure_class == "config" and cycle.files == ("a/x.sql", "a/y.sql")


def test_at_returns_a_located_copy_and_leaves_the_original_alone() -> None:
    original = VariableError("no value", path="/abs/models/a.sql", line=4, variable="year")
    moved = original.at(path="models/a.sql")
    assert type(moved) is VariableError and moved is not original
    assert (moved.path, moved.line, moved.variable) == ("models/a.sql", 4, "year")
    assert str(moved) == "models/a.sql:4: no value"
    assert (original.path, original.line) == ("/abs/models/a.sql", 4)
    assert moved.args == original.args
    relined = original.at(line=9)
    assert (relined.path, relined.line) == ("/abs/models/a.sql", 9)
    assert (original.at().path, original.at().line) == (original.path, original.line)


def test_with_cost_and_at_keep_what_a_check_failure_carries() -> None:
    failed = CheckFailed(
        "check 'unique id' failed",
        check_sql="select id from t group by id having count(*) > 1",
        columns=["id"],
        rows=[[1]],
    )
    costly = failed.with_cost(12.5).at(path="m/t.sql", line=2)
    assert isinstance(costly, CheckFailed) and costly.failure_class == "check"
    assert (costly.explain_cost, costly.rows, costly.columns) == (12.5, ((1,),), ("id",))
    assert costly.check_sql == failed.check_sql and costly.location == "m/t.sql:2"
    assert failed.explain_cost is None and failed.path is None
    assert failed.with_cost(None).explain_cost is None


def test_a_copy_is_raised_from_the_original() -> None:
    original = TaskError("lost", failure_class="runtime")
    with pytest.raises(TaskError) as info:
        try:
            raise original
        except TaskError as exc:
            raise exc.at(path="s/t.sql", line=1) from exc
    assert info.value is not original and info.value.__cause__ is original
    assert original.path is None and info.value.path == "s/t.sql"


@pytest.mark.parametrize(("make", "failure_class"), MAKERS)
def test_errors_survive_pickling(
    make: Callable[[], DbluigiError], failure_class: str | None
) -> None:
    error = make().at(path="a.sql", line=2).with_cost(3.0)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and back.__dict__ == error.__dict__ and str(back) == str(error)


def test_as_dbluigi_wraps_foreign_exceptions_only() -> None:
    own = SelectorError("no model 'x'")
    assert as_dbluigi(own) is own
    wrapped = as_dbluigi(ValueError("  division by zero\n"))
    assert isinstance(wrapped, TaskError) and wrapped.failure_class == "runtime"
    assert wrapped.message == "division by zero" and wrapped.path is None
    assert as_dbluigi(KeyError(), failure_class="timeout").message == "KeyError"
    assert as_dbluigi(KeyError(), failure_class="timeout").failure_class == "timeout"


def test_check_failed_from_a_violation() -> None:
    violation = Violation(
        "not_null id",
        "check 'not_null id' failed: rows with nulls found",
        path="m/t.sql",
        line=2,
        sql="select * from t where id is null",
        columns=("id", "name"),
        rows=((None, "x"),),
    )
    error = CheckFailed.from_violation(violation)
    assert error.message == violation.message and error.location == "m/t.sql:2"
    assert (error.check_sql, error.columns, error.rows) == (
        violation.sql,
        violation.columns,
        violation.rows,
    )
    assert error.results == () and error.failure_class == "check"
    other = CheckFailed.from_violation(violation, message="more", results=())
    assert other.message == "more"


# -- the CLI: bad options are UsageErrors, every error exits 2 -------------------------

runner = CliRunner()


def test_a_bad_format_is_a_usage_error_exiting_2() -> None:
    result = runner.invoke(app, ["lineage", "--project", str(EXAMPLE), "--format", "nope"])
    assert result.exit_code == 2, result.output
    assert "--format 'nope' is not one of text, mermaid, dot, json" in result.output
    assert "hint: for example --format mermaid" in result.output


def test_a_bad_scheduler_url_is_a_usage_error_exiting_2(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not an http\\(s\\) URL"):
        _scheduler("luigid:8082")
    assert _scheduler("http://luigid:8082") == "http://luigid:8082"
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    result = runner.invoke(
        app,
        ["build", "-p", str(tmp_path), "-t", "duckdb", "--scheduler-url", "ftp://luigid"],
    )
    assert result.exit_code == 2, result.output
    assert "--scheduler-url 'ftp://luigid' is not an http(s) URL" in result.output
    assert "hint: for example --scheduler-url http://scheduler-host:8082" in result.output


def test_a_bad_var_is_a_usage_error_exiting_2() -> None:
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse_var_options(["year"])
    result = runner.invoke(app, ["lineage", "--project", str(EXAMPLE), "--var", "2020"])
    assert result.exit_code == 2 and "--var '2020': expected NAME=VALUE" in result.output


def test_a_bad_partition_is_a_usage_error() -> None:
    options = RunOptions(command="rebuild", partitions=("1999",))
    with pytest.raises(UsageError, match="none of the selected models is partitioned") as info:
        _check_partition_option(options, {})
    assert info.value.hint and "-- partition:" in info.value.hint
    values = {"a.t": tuple(str(y) for y in range(2000, 2012))}
    with pytest.raises(UsageError, match="--partition 1999: no selected model") as info:
        _check_partition_option(options, values)
    assert info.value.hint and "2000, 2001" in info.value.hint and "(and 2 more)" in info.value.hint
    _check_partition_option(RunOptions(partitions=("2003",)), values)


@pytest.mark.parametrize(("make", "failure_class"), MAKERS)
def test_every_error_reaching_the_cli_is_printed_and_exits_2(
    make: Callable[[], DbluigiError], failure_class: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as info, _errors():
        raise make().at(path="m/a.sql", line=7)
    assert info.value.exit_code == 2
    assert "error: m/a.sql:7: boom" in capsys.readouterr().err


# -- callers read attributes, never getattr on a caught exception ----------------------

ERROR_ATTRIBUTES = {"path", "line", "failure_class", "hint", "results", "explain_cost"}


def _getattr_on_caught_exceptions(tree: ast.Module) -> list[tuple[int, str, str]]:
    """(line, name, attribute) of each ``getattr(<name>, "<attr>", ...)`` on a name some
    ``except ... as <name>`` of the module binds (or ``exc``, ``error``, ``err``, ``e``: the
    names a caught error is passed on under) for an attribute every error has."""
    caught = {h.name for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.name}
    caught |= {"exc", "error", "err", "e"}
    return [
        (node.lineno, node.args[0].id, node.args[1].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) >= 2
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id in caught
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value in ERROR_ATTRIBUTES
    ]


def test_the_walk_finds_a_getattr_on_a_caught_exception() -> None:
    source = (
        "def f():\n"
        "    try:\n"
        "        g()\n"
        "    except Exception as boom:\n"
        "        return getattr(boom, 'path', None)\n"
    )
    assert _getattr_on_caught_exceptions(ast.parse(source)) == [(5, "boom", "path")]
    foreign = "def f(exc):\n    return getattr(exc, 'pgcode', None)\n"
    assert _getattr_on_caught_exceptions(ast.parse(foreign)) == []


def test_no_module_reads_error_attributes_with_getattr() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: getattr({name}, {attribute!r})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name, attribute in _getattr_on_caught_exceptions(
            ast.parse(path.read_text(encoding="utf-8"))
        )
    ]
    assert offenders == [], "wrap foreign exceptions with errors.as_dbluigi instead"
