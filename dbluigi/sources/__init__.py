"""Source databases: read-only sessions that describe a table and stream it as CSV.

A table declared in ``[sources]`` (parsed by ``dbluigi.sources.config`` into a
``SourceTable``) is copied into the target by ``dbluigi.kinds.extract``. Everything that
differs between the engines a source can be sits behind ``SourceConnection``
(``base.py``): PostgreSQL in ``postgres.py``, MariaDB and MySQL in ``mysql.py``.
``connect(table)`` is the only place that picks one.

A source's url may name environment variables unset when the project was loaded
(``dbluigi.sources.config.resolve``): ``ready`` fills them in before anything reads the
source, and a task reading it fails (class ``config``) while they are still unset.

The session is read-only on the server's side, whatever the user's grants; dbluigi
itself only sends the SELECTs it builds and version queries checked to be one query.
"""

from __future__ import annotations

import json

from dbluigi.errors import ProjectError, TaskError
from dbluigi.lazy import exp
from dbluigi.sources.base import NoVersion, SourceColumn, SourceConnection, source_select
from dbluigi.sources.config import SourceTable, resolve
from dbluigi.targets.base import QueryResult, ident

__all__ = [
    "NoVersion",
    "SourceColumn",
    "SourceConnection",
    "SourceTable",
    "connect",
    "ready",
    "version_of",
    "version_sql",
]


def ready(table: SourceTable) -> SourceTable:
    """``table`` with its url filled in from the environment, to connect with; a variable
    still unset (or a url then invalid) is a ``config`` TaskError naming dbluigi.toml and
    the line of the url, as loading the project would have said."""
    try:
        return resolve(table)
    except ProjectError as exc:
        raise TaskError(
            exc.message, failure_class="config", path=exc.path, line=exc.line, hint=exc.hint
        ) from None


def connect(table: SourceTable) -> SourceConnection:
    """A read-only session on the source ``table`` belongs to (a ``ready`` one); a
    connection failure is a ``runtime`` TaskError showing the masked URL."""
    table = ready(table)
    # an engine's module (its driver, its SQL dialect) is imported when a source uses it:
    # every command reads [sources], few connect to one
    if table.engine == "postgresql":
        from dbluigi.sources.postgres import PostgresSource

        return PostgresSource(table)
    from dbluigi.sources.mysql import MariaDBSource

    return MariaDBSource(table)


def version_sql(table: SourceTable) -> str | None:
    """The table's version query: its own, or for an incremental copy its highest
    watermark (so new rows make it stale); None for a full copy without one."""
    if table.version_query is not None:
        return table.version_query
    if table.watermark is None:
        return None
    highest = exp.func("MAX", exp.column(ident(table.watermark)))
    return source_select(table, [highest], None).sql(dialect=table.dialect)


def version_of(result: QueryResult) -> str:
    """A version query's answer as the string that goes into a fingerprint."""
    return json.dumps([list(row) for row in result.rows], default=str)
