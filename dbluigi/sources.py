"""Source databases: read-only sessions that describe a table and stream it as CSV.

A table declared in ``[sources]`` (``dbluigi.source_config``) is copied into the
target by ``dbluigi.extract``. Everything that differs between the engines a source
can be (PostgreSQL; MariaDB and MySQL) sits here, behind ``SourceConnection``;
``connect(table)`` is the only place that picks one.

- The session is read-only on the server's side. PostgreSQL: the session starts with
  ``default_transaction_read_only = on`` and ``SET SESSION CHARACTERISTICS AS
  TRANSACTION READ ONLY``, and every statement runs in a ``READ ONLY`` transaction.
  MariaDB: ``SET SESSION TRANSACTION READ ONLY`` and ``START TRANSACTION READ ONLY``
  around every statement (which also refuses DDL). dbluigi itself only sends the
  SELECTs it builds and version queries checked to be one query.
- ``describe`` reads the catalog once: the columns to copy with the target type each
  maps to (``SourceColumn``); a missing table, a missing key or watermark column, or a
  column type with no mapping is a ``config`` failure that names it.
- ``copy_csv`` streams the rows as CSV into a binary file (a named pipe the target is
  reading): PostgreSQL through ``COPY (SELECT ...) TO STDOUT``, MariaDB through an
  unbuffered cursor over a query that has the server render each row as one CSV line.
  Nothing holds more than a batch of rows.

The CSV both ends agree on: comma separated, every text value quoted with ``"``
(doubled inside), NULL an unquoted empty field, an empty string ``""``, timestamps with
a time zone in UTC with an offset, one row per line (newlines stay inside quotes).

Types map to the portable types of ``dbluigi.targets``: integers to ``bigint`` (an
unsigned MariaDB ``bigint`` to ``numeric(20,0)``), decimals to ``numeric(p,s)`` with
their precision and scale, floating point to ``double``, character types, enums and
UUIDs to ``text``, ``json``/``jsonb`` (and MariaDB's JSON columns) to ``json``,
``date``, timestamps without time zone (MariaDB ``DATETIME``) to ``timestamp``, with
time zone (MariaDB ``TIMESTAMP``) to ``timestamptz``, ``boolean`` (MariaDB
``tinyint(1)``, what ``BOOLEAN`` is there) to ``boolean``. Column names are lowercased.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

import sqlglot
from sqlglot import exp

from dbluigi.errors import TaskError
from dbluigi.source_config import CONFIG_FILE, SourceTable
from dbluigi.targets.base import QueryResult
from dbluigi.urls import libpq_dsn, parse_url

FETCH_ROWS = 10_000  # rows per fetch from an unbuffered MariaDB cursor
COPY_CHUNK = 1 << 16

_CONNECT_HINT = (
    "check that the source database is running and reachable, and that [sources.{source}] "
    "url names the right host, port, database, user and password"
)


@dataclass(frozen=True)
class SourceColumn:
    """A column to copy: its name and type in the source, and its type in the target."""

    name: str  # as the source spells it
    source_type: str
    type: str  # a portable type or numeric(p,s)
    as_text: bool = False  # read through a cast to text (column_types on an unmapped type)

    @property
    def target_name(self) -> str:
        return self.name.lower()


class SourceConnection(ABC):
    """One read-only session on a source database; use it as a context manager."""

    engine: ClassVar[str]

    def __init__(self, table: SourceTable) -> None:
        self.source = table.source
        self.display_url = table.display_url
        self.line = table.line
        self.dialect = table.dialect

    # -- what each engine provides ------------------------------------------------------

    @abstractmethod
    def _query(self, sql: str) -> QueryResult:
        """Run one statement in a read-only transaction and fetch its rows."""

    @abstractmethod
    def _catalog(self, table: SourceTable) -> list[tuple[str, str, str | None]]:
        """(name, source type, portable type or None) of every column; [] when no such table."""

    @abstractmethod
    def _tables(self) -> list[str]:
        """The tables and views a user could mean, for a did-you-mean."""

    @abstractmethod
    def _stream_sql(self, select: exp.Select) -> str:
        """The statement that streams the rows of ``select`` as CSV."""

    @abstractmethod
    def _copy(self, sql: str, out: BinaryIO) -> int:
        """Run ``_stream_sql``'s statement, writing its CSV to ``out``; returns the rows."""

    @abstractmethod
    def _column_expression(self, column: SourceColumn) -> exp.Expression:
        """What the SELECT reads for ``column``."""

    @abstractmethod
    def _literal(self, value: Any) -> exp.Expression:
        """A watermark value as a SQL literal of this engine."""

    @abstractmethod
    def close(self) -> None:
        """Close the session; a statement still streaming is abandoned."""

    # -- shared -----------------------------------------------------------------------

    def __enter__(self) -> SourceConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str) -> QueryResult:
        """Run one statement in a read-only transaction and fetch its rows.

        A string of several statements is refused before it is sent: PostgreSQL would
        run them all, and one that ends the transaction (COMMIT) would let the next ones
        start a read-write transaction."""
        if not _one_statement(sql, self.dialect):
            raise self._error(
                "a source query must be one statement; this holds several (or does not parse)",
                failure_class="config",
                hint="write one SELECT",
            )
        return self._query(sql)

    def describe(self, table: SourceTable) -> tuple[SourceColumn, ...]:
        """The columns to copy, with their target types; raises a ``config`` TaskError
        naming what is missing or unmapped."""
        found = self._catalog(table)
        if not found:
            close = difflib.get_close_matches(table.table, self._tables(), n=3, cutoff=0.5)
            raise self._table_error(
                table,
                f"table {table.table} not found in source {self.source} ({self.display_url})",
                failure_class="config",
                hint=f"closest tables there: {', '.join(close)}"
                if close
                else f"check the table name in [sources.{self.source}]",
            )
        by_name = {
            name.lower(): (name, source_type, portable) for name, source_type, portable in found
        }
        if len(by_name) != len(found):
            raise self._table_error(
                table,
                f"{table.table} in source {self.source} has columns differing only in case, "
                "which the target would fold into one",
                failure_class="config",
                hint="list the columns to copy in columns = [...]",
            )
        wanted = [c.lower() for c in table.columns] or list(by_name)
        needed = [
            ("watermark", [table.watermark] if table.watermark else []),
            ("unique_key", list(table.unique_key)),
            ("columns", list(table.columns)),
            ("column_types", list(table.column_types)),
        ]
        for key, names in needed:
            for name in names:
                if name.lower() not in by_name:
                    raise self._table_error(
                        table,
                        f"{key} column {name!r} is not a column of {table.table} in source "
                        f"{self.source} (its columns: {', '.join(n for n, _, _ in found)})",
                        failure_class="config",
                        hint=_did_you_mean(name, [n for n, _, _ in found]),
                    )
        columns = []
        for key in wanted:
            name, source_type, portable = by_name[key]
            override = table.column_types.get(key)
            if override is not None:
                columns.append(SourceColumn(name, source_type, override, as_text=portable is None))
            elif portable is None:
                raise self._table_error(
                    table,
                    f"column {name!r} of {table.table} in source {self.source} has type "
                    f"{source_type}, which has no mapping to a target type",
                    failure_class="config",
                    hint=f"leave it out with columns = [...], or read it as text with "
                    f'column_types = {{ {key} = "text" }}',
                )
            else:
                columns.append(SourceColumn(name, source_type, portable))
        return tuple(columns)

    def copy_csv(
        self,
        table: SourceTable,
        columns: Sequence[SourceColumn],
        out: BinaryIO,
        *,
        since: Any = None,
    ) -> int:
        """Stream the table's rows (only those at or past ``since`` on the watermark, when
        given) to ``out`` as CSV; returns the number of rows."""
        return self._copy(self.extract_sql(table, columns, since=since), out)

    def extract_sql(
        self, table: SourceTable, columns: Sequence[SourceColumn], *, since: Any = None
    ) -> str:
        """The statement ``copy_csv`` sends the source."""
        bound = self._literal(since) if since is not None else None
        select = _select(table, [self._column_expression(c) for c in columns], bound)
        return self._stream_sql(select)

    def _error(self, message: str, *, failure_class: str, hint: str | None = None) -> TaskError:
        return TaskError(
            message, failure_class=failure_class, path=CONFIG_FILE, line=self.line, hint=hint
        )

    def _table_error(
        self, table: SourceTable, message: str, *, failure_class: str, hint: str | None = None
    ) -> TaskError:
        return TaskError(
            message, failure_class=failure_class, path=CONFIG_FILE, line=table.line, hint=hint
        )


def connect(table: SourceTable) -> SourceConnection:
    """A read-only session on the source ``table`` belongs to; a connection failure is a
    ``runtime`` TaskError showing the masked URL."""
    engines: dict[str, type[SourceConnection]] = {
        "postgresql": PostgresSource,
        "mariadb": MariaDBSource,
    }
    return engines[table.engine](table)


def version_sql(table: SourceTable) -> str | None:
    """The table's version query: its own, or for an incremental copy its highest
    watermark (so new rows make it stale); None for a full copy without one."""
    if table.version_query is not None:
        return table.version_query
    if table.watermark is None:
        return None
    highest = exp.func("MAX", exp.column(_ident(table.watermark)))
    return _select(table, [highest], None).sql(dialect=table.dialect)


def version_of(result: QueryResult) -> str:
    """A version query's answer as the string that goes into a fingerprint."""
    return json.dumps([list(row) for row in result.rows], default=str)


# -- PostgreSQL -----------------------------------------------------------------------

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

    def _unreachable(self, exc: BaseException, password: object) -> TaskError:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(password, str) and password:
            reason = reason.replace(password, "***")
        return self._error(
            f"cannot connect to source {self.source} ({self.display_url}): {reason}",
            failure_class="runtime",
            hint=_CONNECT_HINT.format(source=self.source),
        )

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

    def _query(self, sql: str) -> QueryResult:
        with self._read_only() as cursor:
            cursor.execute(sql)
            columns = tuple(d.name for d in cursor.description or ())
            rows = tuple(tuple(row) for row in cursor.fetchall()) if cursor.description else ()
        return QueryResult(columns, rows)

    def _catalog(self, table: SourceTable) -> list[tuple[str, str, str | None]]:
        name = _table(table).sql(dialect="postgres")
        with self._read_only() as cursor:
            cursor.execute(_PG_COLUMNS_SQL, (name,))
            rows = cursor.fetchall()
        return [
            (column, type_, "text" if enum else _pg_portable(type_)) for column, type_, enum in rows
        ]

    def _tables(self) -> list[str]:
        return [row[0] for row in self.query(_PG_TABLES_SQL).rows]

    def _column_expression(self, column: SourceColumn) -> exp.Expression:
        read = exp.column(_ident(column.name))
        return exp.cast(read, "text") if column.as_text else read

    def _literal(self, value: Any) -> exp.Expression:
        return _literal(value, "postgres")

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


# -- MariaDB / MySQL ------------------------------------------------------------------

_MARIADB_TYPES = {
    "tinyint": "bigint",
    "smallint": "bigint",
    "mediumint": "bigint",
    "int": "bigint",
    "integer": "bigint",
    "bigint": "bigint",
    "year": "bigint",
    "float": "double",
    "double": "double",
    "real": "double",
    "char": "text",
    "varchar": "text",
    "tinytext": "text",
    "text": "text",
    "mediumtext": "text",
    "longtext": "text",
    "enum": "text",
    "set": "text",
    "uuid": "text",
    "inet4": "text",
    "inet6": "text",
    "json": "json",
    "date": "date",
    "datetime": "timestamp",
    "timestamp": "timestamptz",
}
_DECIMAL_RE = re.compile(r"(?:decimal|numeric)\((\d+),(\d+)\)")

# A MariaDB JSON column is a LONGTEXT with a json_valid() check; MySQL says json.
_MARIADB_COLUMNS_SQL = """
SELECT c.COLUMN_NAME, c.COLUMN_TYPE, c.DATA_TYPE, EXISTS (
    SELECT 1 FROM information_schema.CHECK_CONSTRAINTS AS k
    WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME
      AND k.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)'))
FROM information_schema.COLUMNS AS c
WHERE c.TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND c.TABLE_NAME = %s
ORDER BY c.ORDINAL_POSITION
"""
_MARIADB_TABLES_SQL = """
SELECT CASE WHEN TABLE_SCHEMA = DATABASE() THEN TABLE_NAME
            ELSE CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) END
FROM information_schema.TABLES
WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
"""
_TO_UTF8 = sqlglot.parse_one("CONVERT(c USING utf8mb4)", read="mysql")


class MariaDBSource(SourceConnection):
    """A MariaDB (or MySQL) source through PyMySQL, every transaction read-only."""

    engine: ClassVar[str] = "mariadb"

    def __init__(self, table: SourceTable) -> None:
        import pymysql

        super().__init__(table)
        parsed = parse_url(table.url)
        query = dict(parsed.query)
        options: dict[str, Any] = {
            "host": parsed.host or "localhost",
            "port": parsed.port or 3306,
            "user": parsed.username,
            "password": parsed.password or "",
            "database": parsed.database,
            "charset": "utf8mb4",
            "connect_timeout": int(str(query.get("connect_timeout", 10))),
            "autocommit": True,
        }
        if "unix_socket" in query:
            options["unix_socket"] = str(query["unix_socket"])
        try:
            self._connection = pymysql.connect(**options)
            with self._connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
                cursor.execute("SET SESSION time_zone = '+00:00'")
                # dbluigi writes string literals with backslash escapes, identifiers in backticks
                cursor.execute(
                    "SET SESSION sql_mode = REPLACE(REPLACE(@@sql_mode, "
                    "'NO_BACKSLASH_ESCAPES', ''), 'ANSI_QUOTES', '')"
                )
        except pymysql.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if parsed.password:
                reason = reason.replace(parsed.password, "***")
            raise self._error(
                f"cannot connect to source {self.source} ({self.display_url}): {reason}",
                failure_class="runtime",
                hint=_CONNECT_HINT.format(source=self.source),
            ) from None

    @contextmanager
    def _read_only(self, cursor_class: Any = None) -> Iterator[Any]:
        """A cursor inside START TRANSACTION READ ONLY ... COMMIT. The session is made
        read-only again first: DDL commits the open transaction and runs under the
        session's mode, which an earlier statement might have changed."""
        cursor = self._connection.cursor(cursor_class)
        try:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.execute("START TRANSACTION READ ONLY")
            yield cursor
        except BaseException:
            if cursor_class is None:
                with suppress(Exception):
                    self._connection.rollback()
            else:  # rows may still be coming: reading them all to roll back would take long
                result = getattr(self._connection, "_result", None)
                if result is not None:
                    result.unbuffered_active = False  # abandoned, so PyMySQL reads no more
                self.close()
            raise
        cursor.close()
        self._connection.commit()

    def _query(self, sql: str) -> QueryResult:
        with self._read_only() as cursor:
            cursor.execute(sql)
            columns = tuple(d[0] for d in cursor.description or ())
            rows = tuple(tuple(row) for row in cursor.fetchall())
        return QueryResult(columns, rows)

    def _catalog(self, table: SourceTable) -> list[tuple[str, str, str | None]]:
        schema, _, name = table.table.rpartition(".")
        with self._read_only() as cursor:
            cursor.execute(_MARIADB_COLUMNS_SQL, (schema or None, name))
            rows = cursor.fetchall()
        return [
            (column, column_type, _mariadb_portable(column_type, data_type, bool(is_json)))
            for column, column_type, data_type, is_json in rows
        ]

    def _tables(self) -> list[str]:
        return [row[0] for row in self.query(_MARIADB_TABLES_SQL).rows]

    def _column_expression(self, column: SourceColumn) -> exp.Expression:
        """The column rendered as one CSV field by the server: NULL as '', text quoted."""
        read = exp.column(_ident(column.name))
        empty = exp.Literal.string("")
        if column.type in ("text", "json") or column.as_text:
            text = _TO_UTF8.copy()
            text.find(exp.Column).replace(read)  # type: ignore[union-attr]
            quoted = _call(
                "CONCAT",
                exp.Literal.string('"'),
                _call("REPLACE", text, exp.Literal.string('"'), exp.Literal.string('""')),
                exp.Literal.string('"'),
            )
            return _call("IFNULL", quoted, empty)
        if column.type == "boolean":  # 0 and 1; anything else fails in the target, as it should
            return (
                exp.Case(this=read)
                .when(exp.Literal.number(0), exp.Literal.string("false"))
                .when(exp.Literal.number(1), exp.Literal.string("true"))
                .else_(_call("IFNULL", read.copy(), empty))
            )
        if column.type == "timestamptz":  # TIMESTAMP, rendered in the session's UTC
            return _call("IFNULL", _call("CONCAT", read, exp.Literal.string("+00")), empty)
        return _call("IFNULL", read, empty)

    def _literal(self, value: Any) -> exp.Expression:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)  # the session is in UTC
        return _literal(value, "mysql")

    def _stream_sql(self, select: exp.Select) -> str:
        """One CSV line per row, rendered by the server; a binary cast has PyMySQL hand
        it over as bytes, without decoding."""
        fields = [e.unalias() for e in select.expressions]
        line = exp.cast(
            _call(
                "CONCAT",
                _call("CONCAT_WS", exp.Literal.string(","), *fields),
                exp.Literal.string("\n"),
            ),
            "binary",
        )
        return select.select(line, append=False).sql(dialect="mysql")

    def _copy(self, sql: str, out: BinaryIO) -> int:
        """Read through an unbuffered cursor, written to ``out`` a batch at a time."""
        import pymysql.cursors

        count = 0
        with self._read_only(pymysql.cursors.SSCursor) as cursor:
            cursor.execute(sql)
            if RAW_ROWS and _raw_rows_supported(self._connection):
                return _copy_raw_rows(self._connection, out, self._too_large)
            while batch := cursor.fetchmany(FETCH_ROWS):
                try:
                    out.write(b"".join([row[0] for row in batch]))
                except TypeError:  # CONCAT gives NULL past max_allowed_packet
                    raise self._too_large() from None
                count += len(batch)
        return count

    def _too_large(self) -> TaskError:
        return self._error(
            "a row of the source is larger than the server's max_allowed_packet",
            failure_class="runtime",
            hint="raise max_allowed_packet on the source server, or leave the "
            "large column out with columns = [...]",
        )

    def close(self) -> None:
        # close() sends COM_QUIT without reading what a broken-off stream still holds
        with suppress(Exception):
            self._connection.close()


RAW_ROWS = True  # read row packets off the socket in bulk (False: PyMySQL's fetchmany)
_MAX_PACKET = 0xFFFFFF


def _raw_rows_supported(connection: Any) -> bool:
    """Whether PyMySQL's connection has the parts ``_copy_raw_rows`` relies on."""
    result = getattr(connection, "_result", None)
    return (
        hasattr(getattr(connection, "_rfile", None), "read1")
        and hasattr(connection, "_next_seq_id")
        and getattr(result, "unbuffered_active", False) is True
    )


def _copy_raw_rows(connection: Any, out: BinaryIO, too_large: Any) -> int:
    """Copy the rows of the one-column result PyMySQL has started reading unbuffered
    straight from the socket to ``out``: every row packet of it is one CSV line.

    PyMySQL decodes a row with several Python calls; here a megabyte of packets at a
    time is split by their length headers, about ten times less work a row. The
    protocol: each packet is a 3-byte length, a sequence id and the payload; a row is
    a length-encoded string (0xFB: NULL); a payload of 16 MiB - 1 continues in the next
    packet; 0xFE in a short packet ends the rows, 0xFF is an error."""
    import pymysql.err

    rfile = connection._rfile
    buffer = b""
    position = 0
    rows = 0
    pending: list[bytes] = []  # a row longer than one packet, so far
    while True:
        chunk = rfile.read1(1 << 20)
        if not chunk:
            raise pymysql.err.OperationalError(2013, "Lost connection to server during query")
        buffer = buffer[position:] + chunk if position < len(buffer) else chunk
        position, end, lines = 0, len(buffer), []
        while position + 4 <= end:
            length = buffer[position] | buffer[position + 1] << 8 | buffer[position + 2] << 16
            stop = position + 4 + length
            if stop > end:
                break
            sequence = buffer[position + 3]
            if length == _MAX_PACKET or pending:
                pending.append(buffer[position + 4 : stop])
                position = stop
                if length == _MAX_PACKET:
                    continue
                lines.append(_string(b"".join(pending), too_large))
                pending = []
                continue
            first = buffer[position + 4]
            if first < 0xFB:
                lines.append(buffer[position + 5 : stop])
            elif first == 0xFC:
                lines.append(buffer[position + 7 : stop])
            elif first == 0xFD:
                lines.append(buffer[position + 8 : stop])
            elif first == 0xFE and length < 9:  # the end of the rows
                out.write(b"".join(lines))
                connection._next_seq_id = (sequence + 1) % 256
                result = connection._result
                result.unbuffered_active = False
                result.has_next = False
                result.connection = None
                return rows + len(lines)
            elif first == 0xFF:
                connection._next_seq_id = (sequence + 1) % 256
                connection._result.unbuffered_active = False
                pymysql.err.raise_mysql_exception(buffer[position + 4 : stop])
            else:  # 0xFB: NULL, what CONCAT gives past max_allowed_packet
                raise too_large()
            position = stop
        rows += len(lines)
        out.write(b"".join(lines))


def _string(payload: bytes, too_large: Any) -> bytes:
    """The length-encoded string a whole row payload holds."""
    first = payload[0]
    if first < 0xFB:
        return payload[1:]
    skip = {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(first)
    if skip is None:
        raise too_large()
    return payload[skip:]


def _mariadb_portable(column_type: str, data_type: str, is_json: bool) -> str | None:
    column_type, data_type = column_type.lower(), data_type.lower()
    if is_json:
        return "json"
    if column_type == "tinyint(1)":
        return "boolean"
    decimal = _DECIMAL_RE.match(column_type)
    if decimal:
        return f"numeric({decimal.group(1)},{decimal.group(2)})"
    if data_type == "bigint" and "unsigned" in column_type:
        return "numeric(20,0)"  # up to 18446744073709551615, past a signed bigint
    return _MARIADB_TYPES.get(data_type)


# -- shared helpers -------------------------------------------------------------------


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _table(table: SourceTable) -> exp.Table:
    schema, _, name = table.table.rpartition(".")
    return exp.Table(this=_ident(name), db=_ident(schema) if schema else None)


def _select(
    table: SourceTable, expressions: list[exp.Expression], since: exp.Expression | None
) -> exp.Select:
    """SELECT expressions FROM the table WHERE (its where) AND watermark >= since."""
    select = exp.select(*expressions).from_(_table(table))
    if table.where is not None:
        condition = exp.maybe_parse(table.where, into=exp.Condition, dialect=table.dialect)
        select = select.where(exp.Paren(this=condition))
    if since is not None and table.watermark is not None:
        select = select.where(exp.GTE(this=exp.column(_ident(table.watermark)), expression=since))
    return select


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    """A function call written as is (sqlglot would rewrite CONCAT_WS's NULL handling)."""
    return exp.Anonymous(this=name, expressions=list(args))


def _literal(value: Any, dialect: str) -> exp.Expression:
    from dbluigi.literals import sql_literal

    return sqlglot.parse_one(sql_literal(value, dialect), read=dialect)


def _one_statement(sql: str, dialect: str) -> bool:
    """Whether ``sql`` is one statement (trailing semicolons allowed)."""
    from sqlglot.tokens import TokenType

    try:
        tokens = sqlglot.tokenize(sql, read=dialect)
    except Exception:
        return False
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    return bool(tokens) and not any(t.token_type == TokenType.SEMICOLON for t in tokens)


def _did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else None
