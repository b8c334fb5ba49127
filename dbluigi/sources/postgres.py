"""A PostgreSQL source: psycopg2, every transaction read-only, rows out through COPY.

The session starts with ``default_transaction_read_only = on`` and ``SET SESSION
CHARACTERISTICS AS TRANSACTION READ ONLY``, and every statement runs in a ``READ ONLY``
transaction that is rolled back afterwards. Rows stream through ``COPY (SELECT ...) TO
STDOUT`` in CSV.

Types: integers to ``bigint``, ``numeric(p,s)`` with its precision and scale (plain
``numeric`` to ``numeric``), ``real``/``double precision`` to ``double``, character
types, enums and UUIDs to ``text``, ``json``/``jsonb`` to ``json``, ``date``,
``timestamp`` to ``timestamp``, ``timestamptz`` to ``timestamptz``, ``boolean``; a
domain as its base type; arrays have no mapping.

A full copy without a version query has no version here (``SourceConnection``'s
default): the table is copied on every build. The session is read-only, so no trigger
can count changes; the statistics of ``pg_stat_user_tables`` are flushed by each backend
at most once a second and after its transaction, so the build right after a change may
not see it; ``xmin`` needs a scan of the table and misses deletes. What PostgreSQL does
offer is cluster-wide: ``pg_current_snapshot()`` changes whenever any transaction that
wrote anything ends, which a quiet source can use as its ``version_query``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO, ClassVar

from dbluigi.lazy import exp
from dbluigi.sources.base import SourceColumn, SourceConnection, source_table
from dbluigi.sources.config import SourceTable
from dbluigi.targets.base import QueryResult, ident
from dbluigi.urls import libpq_dsn, parse_url

COPY_CHUNK = 1 << 16

_PG_TYPES = {
    "smallint": "bigint",
    "integer": "bigint",
    "bigint": "bigint",
    "real": "double",
    "double precision": "double",
    "numeric": "numeric",
    "text": "text",
    "character varying": "text",
    "character": "text",
    '"char"': "text",
    "name": "text",
    "citext": "text",
    "uuid": "text",
    "date": "date",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "boolean": "boolean",
    "json": "json",
    "jsonb": "json",
}
_TYPMOD_RE = re.compile(r"\([^)]*\)")
_PG_NUMERIC_RE = re.compile(r"numeric\((\d+),(\d+)\)")

# Columns of a table or view with their types (a domain as its base type); an enum is text.
_PG_COLUMNS_SQL = """
SELECT a.attname,
       pg_catalog.format_type(
           CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
           CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END),
       COALESCE(b.typtype, t.typtype) = 'e'
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type AS b ON t.typtype = 'd' AND b.oid = t.typbasetype
WHERE a.attrelid = pg_catalog.to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_PG_TABLES_SQL = """
SELECT CASE WHEN table_schema = current_schema() THEN table_name
            ELSE table_schema || '.' || table_name END
FROM information_schema.tables
WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
"""
# Read-only, and text renderings both targets read the same way.
_PG_SESSION = (
    "-c default_transaction_read_only=on -c TimeZone=UTC -c DateStyle=ISO,YMD "
    "-c extra_float_digits=3 -c client_encoding=UTF8"
)


class PostgresSource(SourceConnection):
    """A PostgreSQL source through psycopg2, every transaction read-only."""

    engine: ClassVar[str] = "postgresql"

    def __init__(self, table: SourceTable) -> None:
        import psycopg2

        super().__init__(table)
        dsn, timeout = libpq_dsn(table.url)
        parsed = parse_url(table.url)  # its password, to keep it out of messages
        options: dict[str, Any] = {
            "application_name": "dbluigi-source",
            "options": _PG_SESSION,
            **timeout,
        }
        try:
            self._connection = psycopg2.connect(dsn, **options)
        except psycopg2.Error as exc:
            raise self._unreachable(exc, parsed.password) from None
        self._connection.set_session(readonly=True, autocommit=False)
        with self._connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        self._connection.commit()

    @contextmanager
    def _read_only(self) -> Iterator[Any]:
        """A cursor in a READ ONLY transaction, rolled back afterwards (nothing to keep)."""
        try:
            with self._connection.cursor() as cursor:
                yield cursor
        finally:
            try:
                self._connection.rollback()
            except Exception:  # e.g. a COPY broken off midway: the session is done for
                self.close()

    def transient(self, exc: BaseException) -> bool:
        """By SQLSTATE, as for a PostgreSQL target (``TRANSIENT_SQLSTATES``)."""
        from dbluigi.targets.postgres import transient_sqlstate

        return transient_sqlstate(getattr(exc, "pgcode", None))

    def _query(self, sql: str) -> QueryResult:
        with self._read_only() as cursor:
            cursor.execute(sql)
            columns = tuple(d.name for d in cursor.description or ())
            rows = tuple(tuple(row) for row in cursor.fetchall()) if cursor.description else ()
        return QueryResult(columns, rows)

    def _catalog(self, table: SourceTable) -> list[tuple[str, str, str | None]]:
        name = source_table(table).sql(dialect="postgres")
        with self._read_only() as cursor:
            cursor.execute(_PG_COLUMNS_SQL, (name,))
            rows = cursor.fetchall()
        return [
            (column, type_, "text" if enum else _pg_portable(type_)) for column, type_, enum in rows
        ]

    def _tables(self) -> list[str]:
        return [row[0] for row in self.query(_PG_TABLES_SQL).rows]

    def _column_expression(self, column: SourceColumn) -> exp.Expression:
        read = exp.column(ident(column.name))
        return exp.cast(read, "text") if column.as_text else read

    def _stream_sql(self, select: exp.Select) -> str:
        copy = exp.Copy(
            this=exp.Subquery(this=select),
            kind=False,
            files=[exp.to_identifier("STDOUT")],
            params=[exp.CopyParameter(this=exp.var("FORMAT"), expression=exp.var("csv"))],
        )
        return copy.sql(dialect="postgres")

    def _copy(self, sql: str, out: BinaryIO) -> int:
        with self._read_only() as cursor:
            cursor.copy_expert(sql, out, size=COPY_CHUNK)
            return int(cursor.rowcount)

    def close(self) -> None:
        with suppress(Exception):
            self._connection.close()


def _pg_portable(type_name: str) -> str | None:
    if type_name.endswith("]"):
        return None  # arrays
    numeric = _PG_NUMERIC_RE.fullmatch(type_name)
    if numeric:
        return f"numeric({numeric.group(1)},{numeric.group(2)})"
    return _PG_TYPES.get(_TYPMOD_RE.sub("", type_name))
