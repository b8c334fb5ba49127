"""Gating checks: header expressions, ``.check.sql`` queries and ``.check.py`` functions.

Each check runs against the freshly built relation (``<name>__dbluigi_new`` for
tables) before it is published. A header check compiles to a query built with
sqlglot; a check file's queries have their references to the gated model
pointed at the new relation. Any row a check query returns is a violation.
"""

from __future__ import annotations

import importlib.util
import operator
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbluigi.errors import TaskError, Violation
from dbluigi.headers import HeaderCheck
from dbluigi.lazy import exp
from dbluigi.project import CheckFile, Model, Project
from dbluigi.pystep import line_in
from dbluigi.relation import Relation
from dbluigi.sqltypes import TableRef
from dbluigi.state import CheckResult, check_digest
from dbluigi.targets.base import Session, table_expr

SAMPLE_ROWS = 5
_QUOTED = re.compile(r'"([^"]+)"')  # names in a database's error message
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class CheckOutcome:
    results: tuple[CheckResult, ...] = ()
    violations: tuple[Violation, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class CheckTarget:
    """What the checks look at: the relation being published, under the name it has right now."""

    model: Model
    schema: str
    name: str  # e.g. "agencies__dbluigi_new"
    previous_rows: int | None  # rows of the published relation, None when there is none
    # models a check query reads without depending on them that are not available now
    # (failed or skipped in this run, never built): such a query is reported not run
    unavailable: frozenset[str] = frozenset()


def run_checks(session: Session, project: Project, target: CheckTarget) -> CheckOutcome:
    """Run every check that gates ``target.model``; returns results and violations, raises on errors."""
    results: list[CheckResult] = []
    violations: list[Violation] = []
    for check in target.model.header.checks:
        violation = _header_check(session, project, target, check)
        results.append(
            CheckResult(
                check.text,
                violation is None,
                violation.message if violation else "",
                digest=check_digest(check.text),
            )
        )
        if violation:
            violations.append(violation)
    for check_file in project.gated_checks(target.model.relation):
        missing = [w for w in check_file.waits if w in target.unavailable]
        if missing:
            detail = f"not run: reads {', '.join(missing)}, which is not available"
            results.append(_result(check_file, check_file.name, None, detail))
            continue
        runner = _check_sql if check_file.format == "sql" else _check_py
        for name, violation in runner(session, project, target, check_file):
            results.append(_result(check_file, name, violation))
            if violation:
                violations.append(violation)
    return CheckOutcome(tuple(results), tuple(violations))


def _result(
    check: CheckFile, name: str, violation: Violation | None, not_run: str | None = None
) -> CheckResult:
    owner = check.owner if check.moved else ""
    digest = check_digest(check.sql)
    if not_run is not None:
        return CheckResult(name, True, not_run, status="not run", owner=owner, digest=digest)
    if violation is None:
        return CheckResult(name, True, owner=owner, digest=digest)
    return CheckResult(name, False, violation.message, owner=owner, digest=digest)


def _table(target: CheckTarget) -> exp.Table:
    return table_expr(target.schema, target.name)


def header_violation(
    session: Session, project: Project, target: CheckTarget, check: HeaderCheck
) -> Violation | None:
    """Run one header check on ``target``; its violation, or None when it holds."""
    return _header_check(session, project, target, check)


def _header_check(
    session: Session, project: Project, target: CheckTarget, check: HeaderCheck
) -> Violation | None:
    dialect = project.dialect
    path, line = target.model.path, check.line
    if check.kind == "rows":
        query = exp.select(exp.Count(this=exp.Star()).as_("n")).from_(_table(target))
        rows = int(session.query(query.sql(dialect=dialect)).rows[0][0])
        if check.factor is not None:
            if target.previous_rows is None:
                return None  # nothing published yet to compare with
            bound = check.factor * target.previous_rows
            against = f"{bound:g} ({check.factor:g} x {target.previous_rows} previous rows)"
        else:
            bound = float(check.value or 0)
            against = f"{bound:g}"
        assert check.op is not None
        if _OPS[check.op](rows, bound):
            return None
        return Violation(
            check.text,
            f"check '{check.text}' failed: {rows} rows, expected {check.op} {against}",
            path=path,
            line=line,
        )
    columns = [exp.column(c) for c in check.columns]
    if check.kind == "unique":
        query = (
            exp.select(*columns, exp.Count(this=exp.Star()).as_("duplicates"))
            .from_(_table(target))
            .group_by(*columns)
            .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
        )
        what = "duplicate keys"
    else:
        condition = exp.or_(*(exp.Is(this=c.copy(), expression=exp.Null()) for c in columns))
        query = exp.select(exp.Star()).from_(_table(target)).where(condition)
        what = "rows with nulls"
    sql = query.sql(dialect=dialect)
    try:
        result = session.query(sql, limit=SAMPLE_ROWS)
    except Exception as exc:
        raise _header_check_error(session, target, check, exc) from exc
    if not result.rows:
        return None
    return Violation(
        check.text,
        f"check '{check.text}' failed: {what} found",
        sql=sql,
        columns=result.columns,
        rows=result.rows,
        path=path,
        line=line,
    )


def _header_check_error(
    session: Session, target: CheckTarget, check: HeaderCheck, exc: Exception
) -> TaskError:
    """A header check that could not run, at its header line and in the model's words (the
    database names the table it ran on, such as ``x__dbluigi_new``). A column the table
    lacks is a ``config`` failure: the header does not fit the model's query, whatever the
    data (``check`` is for rows that break a rule)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    relation = target.model.relation
    named = {c.lower(): c for c in check.columns}
    missing = [named[m.lower()] for m in _QUOTED.findall(message) if m.lower() in named]
    if session.classify(exc) == "syntax" and missing:
        return TaskError(
            f"check {check.text}: column {missing[0]} does not exist in {relation}",
            failure_class="config",
            path=target.model.path,
            line=check.line,
            hint=f"name a column {relation} has in the -- check: line, or add it to the query",
        )
    aside = f"{target.schema}.{target.name}"
    return TaskError(
        f"check {check.text}: {message.replace(aside, relation).replace(target.name, relation)}",
        failure_class=session.classify(exc),
        path=target.model.path,
        line=check.line,
    )


def retarget(project: Project, model: Model, sql: str, name: str) -> str:
    """Point references to ``model`` in ``sql`` at ``model.schema.name`` (its new table)."""
    if name == model.name:
        return sql
    return point_at(project, sql, {model.relation: name})


def point_at(project: Project, sql: str, aside: Mapping[str, str]) -> str:
    """``sql`` with its references to each relation of ``aside`` (``schema.name`` -> the
    name of its new table in the same schema) pointed at the new table.

    Both ``schema.name`` and a bare ``name`` are pointed there, when a bare name resolves
    to that relation (default schema first, then a unique model name)."""
    mapping: dict[TableRef, TableRef] = {}
    for relation, new in aside.items():
        written = Relation(relation)
        target = TableRef(written.schema, new)
        mapping[TableRef(written.schema, written.name)] = target
        default = f"{project.config.schema}.{written.name}"
        same_name = [m for m in project.models if Relation(m).name == written.name]
        if default == relation or (default not in project.models and same_name == [relation]):
            mapping[TableRef(None, written.name)] = target
    if not mapping:
        return sql
    from dbluigi.sqlinfo import replace_relations  # sqlglot, only when SQL is rewritten

    return replace_relations(sql, mapping, dialect=project.dialect)


def _check_sql(
    session: Session, project: Project, target: CheckTarget, check: CheckFile
) -> list[tuple[str, Violation | None]]:
    out: list[tuple[str, Violation | None]] = []
    for statement in check.statements:
        sql = retarget(project, target.model, statement.sql, target.name)
        name = f"{check.path}:{statement.line}"
        where = (
            f" (a check of {check.owner}, run at {check.gate}: it reads {check.gate})"
            if check.moved
            else ""
        )
        try:
            result = session.query(sql, limit=SAMPLE_ROWS)
        except Exception as exc:
            raise TaskError(
                f"check query {name}{where} failed: {str(exc).strip()}",
                failure_class=session.classify(exc),
                path=check.path,
                line=statement.line,
            ) from exc
        violation = None
        if result.rows:
            violation = Violation(
                name,
                f"check {name}{where} returned violating rows",
                path=check.path,
                line=statement.line,
                sql=statement.sql,
                columns=result.columns,
                rows=result.rows,
            )
        out.append((name, violation))
    return out


class CheckContext:
    """What a ``.check.py``'s ``check(ctx)`` gets: a way to query and the names it checks."""

    def __init__(self, session: Session, project: Project, target: CheckTarget) -> None:
        self._session = session
        self.relation = target.model.relation
        self.table = _table(target).sql(dialect=project.dialect)
        self.previous_rows = target.previous_rows
        self.variables = dict(project.config.variables)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self._session.query(sql, params).rows)


def _check_py(
    session: Session, project: Project, target: CheckTarget, check: CheckFile
) -> list[tuple[str, Violation | None]]:
    spec = importlib.util.spec_from_file_location(
        f"dbluigi_check_{abs(hash(check.path))}", project.root / check.path
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        func = getattr(module, "check", None)
        if not callable(func):
            raise TaskError(
                "a .check.py must define check(ctx)",
                failure_class="config",
                path=check.path,
                hint="def check(ctx): return a list of violations (empty when all is well)",
            )
        found = func(CheckContext(session, project, target))
    except AssertionError as exc:
        found = [str(exc) or "assertion failed"]
    except TaskError:
        raise
    except (Exception, SystemExit) as exc:  # sys.exit() in a check ends its task, not the run
        raise TaskError(
            f"check raised {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-3)}",
            failure_class="runtime",
            path=check.path,
            line=line_in(str(project.root / check.path), exc.__traceback__),
        ) from exc
    rows = tuple(tuple(r) if isinstance(r, (tuple, list)) else (r,) for r in (found or ()))
    if not rows:
        return [(check.path, None)]
    return [
        (
            check.path,
            Violation(
                check.path,
                f"check {check.path} reported violations",
                path=check.path,
                columns=("violation",),
                rows=rows[:SAMPLE_ROWS],
            ),
        )
    ]
