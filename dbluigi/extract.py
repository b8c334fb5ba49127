"""The ``extract`` kind: a table of a source database copied into the target.

Each table declared in ``[sources]`` (``dbluigi.sources.config``) is a model of kind
``extract``: relation ``<schema>.<table>``, file dbluigi.toml, gated by
``<schema>/<table>.check.sql`` when there is one. It is one task of the graph like any
model, and the models reading the table are downstream of it.

- A full copy (``mode = "full"``; and for an incremental one, its first build, a change
  of its definition, a rebuild or ``--full-refresh``) is published like a ``table``
  (``publish._table``): the rows stream into ``<table>__dbluigi_new``, the checks run,
  and the table is swapped in and its build recorded in one transaction.
- An incremental copy, once published, reads the rows whose watermark is at or past
  the highest one published (at, not past: rows sharing the last value may have arrived
  since, and the upsert makes reading one twice harmless) into ``<table>__dbluigi_new``
  and upserts them by ``unique_key`` (``Session.upsert``); the checks run on the
  merged table, all in one transaction. Rows deleted in the source stay; a full
  refresh drops them.

The transfer streams: a thread has the source write CSV into a named pipe while the
target bulk-loads from it (``Session.load_csv_stream``: COPY FROM STDIN, DuckDB's CSV
reader). The pipe holds 64 KiB, so memory does not grow with the table.

``read_versions`` answers the version queries once per run, for the plan
(``plan.make_plan``): a reloaded source makes its table, and so its readers, stale.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO

from dbluigi import sources
from dbluigi.checks import CheckTarget, run_checks
from dbluigi.errors import TaskError
from dbluigi.incremental import column_change
from dbluigi.plan import CHANGED, FORCED, FULL_REFRESH, MISSING, NEW
from dbluigi.project import Model, Project
from dbluigi.publish import (
    BuildRequest,
    Published,
    _check_failed,
    _record,
    _table,
    _transaction,
    located,
    prepare_aside,
)
from dbluigi.sources import SourceTable
from dbluigi.targets.base import Column, Session, table_expr

_FULL_REASONS = (NEW, CHANGED, FORCED, MISSING, FULL_REFRESH)


def publish_extract(session: Session, request: BuildRequest) -> Published:
    """Copy one source table: in full, or the new rows of an incremental one."""
    table = source_table(request.project, request.model)
    if table.mode == "full" or _full_copy(session, request):
        return _table(session, request)  # its new table is built by load_new
    return _upsert(session, request, table)


def source_table(project: Project, model: Model) -> SourceTable:
    return project.config.source_tables[model.relation]


def load_new(
    session: Session, project: Project, model: Model, new: str, *, since: Any = None
) -> int:
    """Create ``new`` and stream the source table's rows into it (those at or past
    ``since`` on the watermark, when given); returns the number of rows."""
    table = source_table(project, model)
    with sources.connect(table) as source:
        columns = source.describe(table)
        created = [Column(c.target_name, c.type) for c in columns]

        def produce(out: BinaryIO) -> int:
            return source.copy_csv(table, columns, out, since=since)

        try:
            with located(session, model.path, table.line or 1, ""):
                return transfer(session, model.schema, new, created, produce)
        except TaskError as exc:
            if exc.path is None:  # raised by the target or the source: say which table
                exc.path, exc.line = model.path, table.line
            raise


def transfer(
    session: Session,
    schema: str,
    name: str,
    columns: list[Column],
    produce: Callable[[BinaryIO], int],
) -> int:
    """Create ``schema.name`` and load what ``produce`` writes, through a named pipe.

    ``produce`` runs in a thread, writing CSV; the target reads the pipe as it fills.
    When either side fails the other is stopped (the writer by a broken pipe, the
    reader by the end of the stream) and the first cause is raised."""
    with tempfile.TemporaryDirectory(prefix="dbluigi-extract-") as folder:
        pipe = Path(folder) / "rows.csv"
        os.mkfifo(pipe, 0o600)
        outcome: dict[str, Any] = {}

        def write() -> None:
            try:
                with pipe.open("wb") as out:  # first: the reader waits for this open
                    outcome["rows"] = produce(out)
            except BaseException as exc:
                outcome["error"] = exc

        writer = threading.Thread(target=write, name=f"dbluigi-extract-{name}", daemon=True)
        writer.start()
        try:
            loaded = session.load_csv_stream(schema, name, columns, pipe)
        except BaseException:
            _stop_writer(pipe, writer)
            error = outcome.get("error")
            if error is not None and not isinstance(error, BrokenPipeError):
                raise error from None  # the source failed first; the load only saw it end
            raise
        writer.join()
        if "error" in outcome:
            raise outcome["error"]
        return loaded


def _stop_writer(pipe: Path, writer: threading.Thread) -> None:
    """Let a writer still waiting to open the pipe (or writing to it) fail and end."""
    while writer.is_alive():
        with suppress(OSError):
            os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(0.1)


def _full_copy(session: Session, request: BuildRequest) -> bool:
    """Whether an incremental copy must be made in full this time."""
    if request.decision.full_refresh or request.decision.reason in _FULL_REASONS:
        return True
    model = request.model
    if request.attempt > 1:  # an earlier attempt may have changed things
        return session.relation_kind(model.schema, model.name) != "table"
    return request.catalog.kinds.get(model.relation) != "table"


def _upsert(session: Session, request: BuildRequest, table: SourceTable) -> Published:
    model, project = request.model, request.project
    schema, name = model.schema, model.name
    new, previous = prepare_aside(session, request)
    since = _highest_watermark(session, model, table)
    with _transaction(session, request):
        published = session.columns(schema, name)
        rows = load_new(session, project, model, new, since=since)
        _require_same_columns(table, published, session.columns(schema, new))
        with located(session, model.path, table.line or 1, ""):
            session.upsert(schema, name, new, [k.lower() for k in table.unique_key])
            session.drop_relation(schema, new)
        outcome = run_checks(
            session, project, CheckTarget(model, schema, name, previous, request.unavailable)
        )
        if not outcome.passed:  # rolls the upsert back: the published table is as it was
            raise _check_failed(outcome, outcome.violations[0], kept=None)
        _record(session, request, rows, outcome.results)
    return Published(rows, outcome.results)


def _highest_watermark(session: Session, model: Model, table: SourceTable) -> Any:
    """The highest watermark published (read before the transaction: an older value
    only re-reads rows, which the upsert makes harmless); None for an empty table."""
    assert table.watermark is not None
    column = table.watermark.lower()
    if column not in session.columns(model.schema, model.name):
        raise TaskError(
            f"watermark column {column!r} is not a column of the published {model.relation}",
            failure_class="config",
            path=model.path,
            line=table.line,
            hint=f"copy it in full again: dbluigi build --full-refresh source:{table.selector}",
        )
    from sqlglot import exp

    select = exp.select(exp.func("max", exp.column(column, quoted=True))).from_(
        table_expr(model.schema, model.name)
    )
    return session.query(select.sql(dialect=session.target.dialect)).rows[0][0]


def _require_same_columns(
    table: SourceTable, published: tuple[str, ...], loaded: tuple[str, ...]
) -> None:
    change = column_change(published, loaded)
    if change is None:
        return
    raise TaskError(
        f"the columns of {table.table} in source {table.source} changed since "
        f"{table.relation} was copied ({change}); new rows cannot be upserted into it",
        failure_class="config",
        path="dbluigi.toml",
        line=table.line,
        hint=f"copy it in full again: dbluigi build --full-refresh source:{table.selector}",
    )


def read_versions(project: Project, selected: Collection[str]) -> Mapping[str, str | None]:
    """What the version query of each selected source table answers now (None when it
    cannot be read: the table then runs, and its task says why). One session per source."""
    by_source: dict[str, list[SourceTable]] = defaultdict(list)
    for relation in selected:
        table = project.config.source_tables.get(relation)
        if table is not None and sources.version_sql(table) is not None:
            by_source[table.source].append(table)
    versions: dict[str, str | None] = {}
    for tables in by_source.values():
        try:
            with sources.connect(tables[0]) as source:
                for table in tables:
                    try:
                        versions[table.relation] = sources.version_of(
                            source.query(sources.version_sql(table) or "")
                        )
                    except Exception:
                        versions[table.relation] = None
        except TaskError:  # unreachable
            versions.update((table.relation, None) for table in tables)
    return versions
