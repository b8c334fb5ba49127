"""Publishing strategies, one per kind: build aside, check, swap.

- ``table`` and ``seed``: build ``<name>__dbluigi_new``, create indexes, apply the
  patch, run the checks, then swap it in and record the build, all in one
  transaction. A failed check keeps the new table as ``<name>__dbluigi_failed``
  and leaves the published table exactly as it was.
- ``view``: replace the view, check it and record it in one transaction.
- ``sql``: run the statements, the checks and the record in one transaction.

Every database error becomes a TaskError with a failure class and the file and
line of the statement that failed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dbluigi.checks import CheckOutcome, CheckTarget, Violation, run_checks
from dbluigi.errors import CheckFailed, DbluigiError, ProjectError, TaskError
from dbluigi.plan import Decision
from dbluigi.project import Model, Project
from dbluigi.seeds import read_yaml_seed, sniff_csv
from dbluigi.sqlinfo import TableRef, replace_relations
from dbluigi.state import CheckResult, StateStore
from dbluigi.targets.base import Session

NEW_SUFFIX = "__dbluigi_new"
FAILED_SUFFIX = "__dbluigi_failed"
CRASHPOINT_ENV = "DBLUIGI_CRASHPOINT"  # test hook: "<point>:<model>" kills the process there


@dataclass(frozen=True)
class Published:
    rows: int | None
    checks: tuple[CheckResult, ...]


@dataclass(frozen=True)
class BuildRequest:
    project: Project
    model: Model
    decision: Decision
    run_id: str


def publish(session: Session, request: BuildRequest) -> Published:
    """Build, check and publish one model; raises TaskError (or CheckFailed) on failure."""
    strategy = {"table": _table, "seed": _table, "view": _view, "sql": _sql}.get(request.model.kind)
    if strategy is None:
        raise TaskError(
            f"kind {request.model.kind} cannot be built by this version of dbluigi yet",
            failure_class="config",
            path=request.model.path,
            line=request.model.header.line_of("kind"),
        )
    try:
        return strategy(session, request)
    except DbluigiError:
        raise
    except Exception as exc:  # an error the database raised outside a located statement
        raise TaskError(
            str(exc).strip(), failure_class=session.classify(exc), path=request.model.path
        ) from exc


def crashpoint(point: str, model: str) -> None:
    """Kill the process here when the test hook asks for it (crash-safety tests)."""
    if os.environ.get(CRASHPOINT_ENV) == f"{point}:{model}":
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def located(session: Session, path: str, line: int, sql: str) -> Iterator[None]:
    """Turn a database error raised by ``sql`` into a TaskError at its file and line."""
    try:
        yield
    except DbluigiError:
        raise
    except Exception as exc:
        offset = session.error_line(exc, sql)
        raise TaskError(
            _first_lines(str(exc)),
            failure_class=session.classify(exc),
            path=path,
            line=line + (offset - 1 if offset else 0),
        ) from exc


def _table(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    schema, name = model.schema, model.name
    new, failed = name + NEW_SUFFIX, name + FAILED_SUFFIX
    session.ensure_schema(schema)
    session.drop_relation(schema, new)  # a crashed run may have left it
    previous = session.row_count(schema, name) if session.relation_kind(schema, name) else None
    violation: Violation | None = None
    with session.transaction():
        rows = _build_new(session, project, model, new)
        session.prepare_indexes(schema, new, model.header.indexes)
        crashpoint("after_build", model.relation)
        if model.patch is not None:
            mapping = {TableRef(schema, name): TableRef(schema, new)}
            if schema == project.config.schema:
                mapping[TableRef(None, name)] = TableRef(schema, new)
            for statement in model.patch.statements:
                sql = replace_relations(statement.sql, mapping, dialect=project.dialect)
                with located(session, model.patch.path, statement.line, sql):
                    session.execute(sql)
            rows = session.row_count(schema, new)
        outcome = run_checks(session, project, CheckTarget(model, schema, new, previous))
        crashpoint("after_checks", model.relation)
        if outcome.passed:
            with located(session, model.path, 1, ""):
                session.swap(schema, new, name, model.header.indexes)
            _record(session, request, rows)
            crashpoint("before_commit", model.relation)
        else:
            session.rename(schema, new, failed)
            violation = outcome.violations[0]
    crashpoint("after_commit", model.relation)
    if violation is not None:
        raise _check_failed(outcome, violation, kept=f"{schema}.{failed}")
    return Published(rows, outcome.results)


def _build_new(session: Session, project: Project, model: Model, new: str) -> int:
    if model.kind == "table":
        statement = model.statements[0]
        with located(session, model.path, statement.line, statement.sql):
            return session.create_table_as(model.schema, new, statement.sql)
    path = project.root / model.path
    overrides = project.config.seed_types.get(model.relation, {})
    try:
        if model.format == "csv":
            table = sniff_csv(path, overrides=overrides)
        else:
            table, rows = read_yaml_seed(path, overrides=overrides)
    except ProjectError as exc:
        exc.path = model.path  # as the user knows it, relative to the project
        raise
    with located(session, model.path, 1, ""):
        if model.format == "csv":
            return session.load_csv(model.schema, new, path, table.columns)
        return session.load_rows(model.schema, new, table.columns, rows)


def _view(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    session.ensure_schema(model.schema)
    previous = (
        session.row_count(model.schema, model.name)
        if session.relation_kind(model.schema, model.name)
        else None
    )
    statement = model.statements[0]
    with session.transaction():
        with located(session, model.path, statement.line, statement.sql):
            session.replace_view(model.schema, model.name, statement.sql)
        outcome = run_checks(
            session, project, CheckTarget(model, model.schema, model.name, previous)
        )
        if not outcome.passed:
            raise _check_failed(outcome, outcome.violations[0], kept=None)  # rolls the view back
        rows = session.row_count(model.schema, model.name) if model.header.checks else None
        _record(session, request, rows)
    return Published(rows, outcome.results)


def _sql(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    for schema in {w.split(".", 1)[0] for w in model.writes}:
        session.ensure_schema(schema)
    affected = 0
    with session.transaction():
        for statement in model.statements:
            with located(session, model.path, statement.line, statement.sql):
                count = session.execute(statement.sql)
            affected += max(count, 0)
        outcome = run_checks(session, project, CheckTarget(model, model.schema, model.name, None))
        if not outcome.passed:
            raise _check_failed(outcome, outcome.violations[0], kept=None)  # rolls everything back
        _record(session, request, affected)
    return Published(affected, outcome.results)


def _record(session: Session, request: BuildRequest, rows: int | None) -> None:
    d = request.decision
    StateStore(session).save_model(
        model=request.model.relation,
        kind=request.model.kind,
        fingerprint=d.fingerprint,
        content_fp=d.content_fp,
        build_id=d.build_id,
        generation=d.generation,
        rows=rows,
        run_id=request.run_id,
    )


def _check_failed(outcome: CheckOutcome, first: Violation, *, kept: str | None) -> CheckFailed:
    failed = [v.name for v in outcome.violations]
    message = first.message
    if len(failed) > 1:
        message += f" (and {len(failed) - 1} more failed: {', '.join(failed[1:])})"
    message += (
        f"; the failed table is kept as {kept} for inspection"
        if kept
        else "; nothing was published"
    )
    return CheckFailed(
        message,
        check_sql=first.sql,
        columns=first.columns,
        rows=first.rows,
        path=first.path,
        line=first.line,
        results=outcome.results,
    )


def _first_lines(text: str, limit: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[:limit])
