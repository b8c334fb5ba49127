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
step's own frames on is the error kept in ``task_runs``. ``sys.exit()`` in a step (or
as it is imported) fails its task with class ``runtime`` at its line; the run goes on.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType, TracebackType
from typing import Any

from dbluigi.errors import DbluigiError, TaskError
from dbluigi.lazy import exp
from dbluigi.project import Model, Project
from dbluigi.relation import Relation
from dbluigi.targets.base import Session, table_expr


class StepContext:
    """What ``run(ctx)`` gets: a connection in the model's transaction and the names it may touch.

    - ``ctx.table``: the new table to create, as SQL (``"lab"."pivot__dbluigi_new"``);
    - ``ctx.relation``: the model's published relation, ``schema.name``;
    - ``ctx.upstream``: each relation the step depends on, mapped to its SQL name;
      ``ctx.ref(name)`` looks one up (by the project's name on every target, or as
      built) and refuses a relation not declared in ``# depends:``;
    - ``ctx.execute / query / executemany``: statements with ``%s`` parameters on every
      target, run in the model's transaction (never commit or roll back yourself);
    - ``ctx.quote(name)``: an identifier quoted for the target (for dynamic columns);
    - ``ctx.variables``, ``ctx.dialect`` (``postgres`` or ``duckdb``), ``ctx.log``;
    - ``ctx.project_dir``: the project folder (a ``Path``); ``ctx.inputs``: the files its
      ``# inputs:`` globs match, as ``Path``s, sorted (their contents are part of the
      step's fingerprint, so a change to one rebuilds it).

    A step that modifies relations (``# modifies: a.b``) runs in the build of each, on
    its new table: ``ctx.ref("a.b")`` names that table, and ``ctx.table`` is the first
    of them. A statement writing a relation the step did not declare fails (``config``).
    """

    def __init__(
        self,
        session: Session,
        project: Project,
        model: Model,
        new: str | None,
        aside: Mapping[str, str] | None = None,
    ) -> None:
        self._session = session
        self.dialect = project.dialect
        self.relation = model.relation
        self.schema = model.schema
        aside = aside or {}
        upstream = {*model.depends, *model.reads, *model.modifies}
        names: dict[str, str] = {
            r: self._name(r.schema, aside.get(r, r.name)) for r in sorted(upstream, key=str)
        }
        self.upstream: Mapping[str, str] = MappingProxyType(names)
        modified = [names[r] for r in model.modifies if r in names]
        self.table = self._name(model.schema, new) if new else (modified[0] if modified else "")
        # what its statements may write: its own table, or the new tables it modifies
        self._writable = {
            (model.schema, new) if new else None,
            *((r.schema, aside.get(r, r.name)) for r in model.modifies),
        }
        self._model = model
        self._schema_map = project.config.schema_map
        self.variables: Mapping[str, object] = MappingProxyType(dict(project.config.variables))
        self.project_dir: Path = project.root.resolve()
        self.inputs: tuple[Path, ...] = tuple(
            self.project_dir / path for path in project.input_files(model)
        )
        self.log = logging.getLogger(f"dbluigi.step.{model.relation}")

    @property
    def connection(self) -> StepContext:
        """The connection, for code written as ``ctx.connection.execute(...)``."""
        return self

    def ref(self, relation: str) -> str:
        """The SQL name of an upstream relation (``schema.name``, or a bare name if unique).
        On a target that builds schemas elsewhere (``schema_suffix``, ``schemas``), the
        project's name of a relation names it as the target builds it, as the name as built
        does."""
        wanted = relation.lower()
        for name in (wanted, self._schema_map.relation(wanted)):
            if name in self.upstream:
                return self.upstream[name]
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
        self._refuse_undeclared(sql)
        return self._session.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        self._refuse_undeclared(sql)
        self._session.executemany(sql, rows)

    def _refuse_undeclared(self, sql: str) -> None:
        """A write to a relation that is neither the step's table nor one it declared is
        not in the graph: nothing would order or replay it."""
        try:
            from dbluigi.sqlinfo import analyze_sql  # sqlglot, only for a script's SQL

            info = analyze_sql(sql.replace("%s", "NULL"), dialect=self.dialect, path=self.relation)
        except DbluigiError:
            return  # SQL sqlglot cannot read: the database says what it thinks of it
        for written in info.writes:
            schema = written.schema or self.schema
            if (schema, written.name) in self._writable:
                continue
            if f"{schema}.{written.name}" in self._model.modifies:  # declared: not its new table
                raise TaskError(
                    f"the step writes {schema}.{written.name} by its published name; in this "
                    "build the change goes to its new table",
                    failure_class="config",
                    path=self._model.path,
                    line=self._model.header.line_of("modifies"),
                    hint=f"write to ctx.ref('{schema}.{written.name}') (or ctx.table), which "
                    "names the new table",
                )
            raise TaskError(
                f"the step writes {schema}.{written.name}, which it does not declare",
                failure_class="config",
                path=self._model.path,
                line=self._model.header.line_of("modifies"),
                hint=f"add '# modifies: {schema}.{written.name}' to its header, so the write "
                "is in the graph and replayed with that relation's build",
            )

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""
        return list(self._session.query(sql, params).rows)

    def _name(self, schema: str, name: str) -> str:
        return table_expr(schema, name).sql(dialect=self.dialect)


def run_step(session: Session, project: Project, model: Model, new: str) -> int:
    """Run the model's ``run(ctx)``; returns the rows of the table it created."""
    _run(session, project, model, StepContext(session, project, model, new), "create table")
    if session.relation_kind(model.schema, new) != "table":
        raise TaskError(
            f"the step did not create its table {model.schema}.{new}",
            failure_class="runtime",
            path=model.path,
            hint="create ctx.table in run(ctx), e.g. ctx.execute(f'create table {ctx.table} as ...')",
        )
    return session.row_count(model.schema, new)


def run_modifier(
    session: Session, project: Project, model: Model, aside: Mapping[str, str]
) -> None:
    """Run a modifying step's ``run(ctx)`` on the new tables of the relations it modifies."""
    context = StepContext(session, project, model, None, aside)
    _run(session, project, model, context, "update")


def _run(
    session: Session, project: Project, model: Model, context: StepContext, example: str
) -> None:
    """Call the step's ``run(ctx)``; what it raises fails the task at its line."""
    step = getattr(_load(project, model), "run", None)
    if not callable(step):
        raise TaskError(
            "a Python model must define run(ctx)",
            failure_class="config",
            path=model.path,
            hint=f"def run(ctx): ctx.execute(f'{example} {{ctx.table}} ...')",
        )
    try:
        step(context)
    except TaskError:
        raise
    except (Exception, SystemExit) as exc:  # sys.exit() in a step ends its task, not the run
        raise TaskError(
            _describe(exc),
            failure_class=session.classify(exc),
            path=model.path,
            line=line_in(str(project.root / model.path), exc.__traceback__),
        ) from exc


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
    except (Exception, SystemExit) as exc:
        raise TaskError(
            f"importing the step failed: {_describe(exc)}",
            failure_class="runtime",
            path=model.path,
            line=line_in(str(path), exc.__traceback__),
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


def line_in(filename: str, tb: TracebackType | None) -> int | None:
    """The last line of the file `filename` (a step or a check) the exception went through."""
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line
