"""The ``extract`` kind: a table of a source database copied into the target.

Each table declared in ``[sources]`` (``dbluigi.sources.config``) is a model of kind
``extract``: relation ``<schema>.<table>``, file dbluigi.toml, gated by
``<schema>/<table>.check.sql`` when there is one. It is one task of the graph like any
model, and the models reading the table are downstream of it.

- A full copy (``mode = "full"``; and for an incremental one, its first build, a change
  of its definition, a rebuild or ``--full-refresh``) is published like a ``table``
  (``kinds.base.build_aside``): the rows stream into ``<table>__dbluigi_new``, the checks run,
  and the table is swapped in and its build recorded in one transaction.
- An incremental copy, once published, reads the rows whose watermark is at or past
  the highest one published (at, not past: rows sharing the last value may have arrived
  since, and the upsert makes reading one twice harmless) into ``<table>__dbluigi_new``
  and upserts them by ``unique_key`` (``Session.upsert``); the checks run on the
  merged table, all in one transaction. Rows deleted in the source stay; a full
  refresh drops them. It runs on every build, like an incremental model: a copy that
  upserted no new or changed row keeps its build id, and its readers stay up to date.

The transfer streams: a thread has the source write CSV into a named pipe while the
target bulk-loads from it (``Session.load_csv_stream``: COPY FROM STDIN, DuckDB's CSV
reader). The pipe holds 64 KiB, so memory does not grow with the table.

``read_versions`` reads the versions of source tables once per run, for the plan
(``plan.make_plan``): a reloaded source makes its table, and so its readers, stale. A
version query, when declared, gives it; otherwise a full copy's comes from its source's
own change signal (``SourceConnection.change_versions``), and a source without one has
the table copied on every build: a copy is never silently stale.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from dbluigi import sources
from dbluigi.errors import TaskError
from dbluigi.kinds.base import (
    BuildRequest,
    Filled,
    Kind,
    Published,
    build_aside,
    column_change,
    highest_value,
    located,
    needs_full_build,
    upsert_aside,
)
from dbluigi.plan import CHANGED, FORCED, FULL_REFRESH, MISSING, NEW, Unversioned
from dbluigi.project import Model, Project
from dbluigi.sources import SourceTable
from dbluigi.targets.base import Column, Session

_FULL_REASONS = (NEW, CHANGED, FORCED, MISSING, FULL_REFRESH)


def build(session: Session, request: BuildRequest) -> Published:
    """Copy one source table: in full, or the new rows of an incremental one."""
    table = source_table(request.project, request.model)
    watermark = table.watermark.lower() if table.watermark is not None else None
    if table.mode == "full" or _full_copy(session, request):
        return build_aside(session, request, fill, watermark=watermark)
    since = _highest_watermark(session, request.model, table)
    key = [k.lower() for k in table.unique_key]
    return upsert_aside(
        session,
        replace(request, watermark=since),
        lambda s, r, new: Filled(load_new(s, r.project, r.model, new, since=since)),
        key=key,
        line=table.line or 1,
        compare_columns=lambda published, loaded: _require_same_columns(table, published, loaded),
        watermark=watermark,
    )


def fill(session: Session, request: BuildRequest, new: str) -> Filled:
    """Every row of the source table into ``new``."""
    return Filled(load_new(session, request.project, request.model, new))


def source_table(project: Project, model: Model) -> SourceTable:
    """The table ``model`` copies, its url filled in (``sources.ready``): before anything
    is built aside, a source whose credentials are unset fails the task (``config``)."""
    return sources.ready(project.config.source_tables[model.relation])


def load_new(
    session: Session, project: Project, model: Model, new: str, *, since: Any = None
) -> int:
    """Create ``new`` and stream the source table's rows into it (those at or past
    ``since`` on the watermark, when given); returns the number of rows."""
    table = source_table(project, model)
    with sources.connect(table) as source:
        with source.reading():
            columns = source.describe(table)
        created = [Column(c.target_name, c.type) for c in columns]

        def produce(out: BinaryIO) -> int:
            with source.reading():
                return source.copy_csv(table, columns, out, since=since)

        try:
            with located(session, model.path, table.line or 1, ""):
                return transfer(session, model.schema, new, created, produce)
        except TaskError as exc:
            if exc.path is None:  # raised by the target or the source: say which table
                raise exc.at(path=model.path, line=table.line) from exc
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
    """The version of each selected source table now, one session per source: what its
    version query answers, or for a full copy without one what its source tells of its
    changes (``SourceConnection.change_versions``); an ``Unversioned`` one when the
    source cannot tell (the table is copied again, and plan says why), None when it
    cannot be read (the table then runs, and its task says why). A source whose url
    names an unset variable is not read: plan says so (``plan.unknown_source``)."""
    by_source: dict[str, list[SourceTable]] = defaultdict(list)
    for relation in selected:
        table = project.config.source_tables.get(relation)
        if table is None:
            continue
        try:
            table = sources.ready(table)
        except TaskError:
            continue
        by_source[table.source].append(table)
    versions: dict[str, str | None] = {}
    for tables in by_source.values():
        unread = [t for t in tables if sources.version_sql(t) is None]
        try:
            with sources.connect(tables[0]) as source:
                for table in tables:
                    query = sources.version_sql(table)
                    if query is None:
                        continue
                    try:  # the table's own version query takes precedence
                        versions[table.relation] = sources.version_of(source.query(query))
                    except Exception:
                        versions[table.relation] = None
                try:
                    found = source.change_versions(unread) if unread else {}
                except Exception:
                    found = {}
                for table in unread:
                    version = found.get(table.relation)
                    versions[table.relation] = (
                        Unversioned(version.reason)
                        if isinstance(version, sources.NoVersion)
                        else version
                    )
        except TaskError:  # unreachable
            versions.update((table.relation, None) for table in tables)
    return versions


def _full_copy(session: Session, request: BuildRequest) -> bool:
    """Whether an incremental copy must be made in full this time."""
    return request.decision.reason in _FULL_REASONS or needs_full_build(session, request)


def _highest_watermark(session: Session, model: Model, table: SourceTable) -> Any:
    """The highest watermark published; None for an empty table."""
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
    return highest_value(session, model, column)


KIND = Kind("extract", build)
