"""The ``python`` kind: a ``.py`` model whose ``run(ctx)`` builds the model's new table.

::

    # depends: raw.samples, raw.sample_measurements
    # check: unique(sample_id)
    # index: sample_id

    def run(ctx):
        types = [t for (t,) in ctx.query(f"select distinct kind from {ctx.ref('raw.sample_measurements')}")]
        ...
        ctx.execute(f"create table {ctx.table} as select ...")

The step runs inside the model's transaction, under its timeout, and must create
``ctx.table`` (``<schema>.<name>__dbluigi_new``); that table is then indexed, checked
and swapped in like a ``table`` model's (see ``dbluigi.publish``). It may also change
the relations it depends on (a cleanup step); everything commits or rolls back
together, so a failed check keeps no ``__dbluigi_failed`` table. Whatever the step raises fails the task: an error of the database with the
database's class, anything else with class ``runtime``, and the traceback from the
step's own frames on is the error kept in ``task_runs``.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType, ModuleType, TracebackType
from typing import Any

from sqlglot import exp

from dbluigi.errors import TaskError
from dbluigi.project import Model, Project
from dbluigi.relation import Relation
from dbluigi.targets.base import Session, table_expr


class StepContext:
    """What ``run(ctx)`` gets: a connection in the model's transaction and the names it may touch.

    - ``ctx.table``: the new table to create, as SQL (``"lab"."pivot__dbluigi_new"``);
    - ``ctx.relation``: the model's published relation, ``schema.name``;
    - ``ctx.upstream``: each relation the step depends on, mapped to its SQL name;
      ``ctx.ref(name)`` looks one up and refuses a relation not declared in ``# depends:``;
    - ``ctx.execute / query / executemany``: statements with ``%s`` parameters on every
      target, run in the model's transaction (never commit or roll back yourself);
    - ``ctx.quote(name)``: an identifier quoted for the target (for dynamic columns);
    - ``ctx.variables``, ``ctx.dialect`` (``postgres`` or ``duckdb``), ``ctx.log``.
    """

    def __init__(self, session: Session, project: Project, model: Model, new: str) -> None:
        self._session = session
        self.dialect = project.dialect
        self.relation = model.relation
        self.schema = model.schema
        self.table = self._name(model.schema, new)
        upstream = {*model.depends, *model.reads}
        self.upstream: Mapping[str, str] = MappingProxyType(
            {r: self._name(r.schema, r.name) for r in sorted(upstream)}
        )
        self.variables: Mapping[str, object] = MappingProxyType(dict(project.config.variables))
        self.log = logging.getLogger(f"dbluigi.step.{model.relation}")

    @property
    def connection(self) -> StepContext:
        """The connection, for code written as ``ctx.connection.execute(...)``."""
        return self

    def ref(self, relation: str) -> str:
        """The SQL name of an upstream relation (``schema.name``, or a bare name if unique)."""
        wanted = relation.lower()
        if wanted in self.upstream:
            return self.upstream[wanted]
        bare = [r for r in self.upstream if Relation(r).name == wanted]
        if len(bare) == 1:
            return self.upstream[bare[0]]
        declared = ", ".join(self.upstream) or "none"
        raise LookupError(
            f"{relation} is not a dependency of {self.relation} (declared: {declared}); "
            f"add it to the step's '# depends:' header"
        )

    def quote(self, identifier: str) -> str:
        """``identifier`` as a quoted SQL identifier of the target."""
        return exp.to_identifier(identifier, quoted=True).sql(dialect=self.dialect)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run a statement; returns its row count (-1 when the database gives none)."""
        return self._session.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        self._session.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""
        return list(self._session.query(sql, params).rows)

    def _name(self, schema: str, name: str) -> str:
        return table_expr(schema, name).sql(dialect=self.dialect)


def run_step(session: Session, project: Project, model: Model, new: str) -> int:
    """Run the model's ``run(ctx)``; returns the rows of the table it created."""
    module = _load(project, model)
    step = getattr(module, "run", None)
    if not callable(step):
        raise TaskError(
            "a Python model must define run(ctx)",
            failure_class="config",
            path=model.path,
            hint="def run(ctx): ctx.execute(f'create table {ctx.table} as ...')",
        )
    try:
        step(StepContext(session, project, model, new))
    except TaskError:
        raise
    except Exception as exc:
        raise TaskError(
            _describe(exc),
            failure_class=session.classify(exc),
            path=model.path,
            line=_line_in(str(project.root / model.path), exc.__traceback__),
        ) from exc
    if session.relation_kind(model.schema, new) != "table":
        raise TaskError(
            f"the step did not create its table {model.schema}.{new}",
            failure_class="runtime",
            path=model.path,
            hint="create ctx.table in run(ctx), e.g. ctx.execute(f'create table {ctx.table} as ...')",
        )
    return session.row_count(model.schema, new)


def _load(project: Project, model: Model) -> ModuleType:
    path = project.root / model.path
    name = f"dbluigi_step_{model.relation.replace('.', '__')}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise TaskError(
            f"{type(exc).__name__}: {exc.msg}",
            failure_class="syntax",
            path=model.path,
            line=exc.lineno,
        ) from exc
    except Exception as exc:
        raise TaskError(
            f"importing the step failed: {_describe(exc)}",
            failure_class="runtime",
            path=model.path,
            line=_line_in(str(path), exc.__traceback__),
        ) from exc
    finally:
        sys.modules.pop(name, None)
    return module


def _describe(exc: BaseException) -> str:
    """What the step raised, then its traceback from the step's frames on (not dbluigi's)."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    trace = "".join(traceback.format_exception(type(exc), exc, tb)).strip()
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}\n{trace}" if first else trace


def _line_in(filename: str, tb: TracebackType | None) -> int | None:
    """The last line of the step's file the exception went through."""
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line
