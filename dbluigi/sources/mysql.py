"""A MariaDB (or MySQL) source: PyMySQL, every transaction read-only, rows rendered as CSV
by the server and read through an unbuffered cursor.

The session is ``SET SESSION TRANSACTION READ ONLY`` and every statement runs inside
``START TRANSACTION READ ONLY`` (which also refuses DDL), in UTC. The SELECT has the
server render each row as one CSV line, so the client only joins bytes; row packets are
read off the socket in bulk (``RAW_ROWS``), a batch at a time.

Types: integers to ``bigint`` (an unsigned ``bigint`` to ``numeric(20,0)``), decimals to
``numeric(p,s)``, floating point to ``double``, character types, enums, sets, UUIDs and
inet addresses to ``text``, JSON columns (a LONGTEXT with a ``json_valid`` check on
MariaDB) to ``json``, ``date``, ``DATETIME`` to ``timestamp``, ``TIMESTAMP`` to
``timestamptz``, ``tinyint(1)`` (what ``BOOLEAN`` is) to ``boolean``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO, ClassVar

import sqlglot
from sqlglot import exp

from dbluigi.errors import TaskError
from dbluigi.sources.base import SourceColumn, SourceConnection
from dbluigi.sources.config import SourceTable
from dbluigi.targets.base import QueryResult, ident, literal
from dbluigi.urls import parse_url

FETCH_ROWS = 10_000  # rows per fetch from an unbuffered cursor

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
            raise self._unreachable(exc, parsed.password) from None

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
        read = exp.column(ident(column.name))
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
        return literal(value)

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


def _call(name: str, *args: exp.Expr) -> exp.Expression:
    """A function call written as is (sqlglot would rewrite CONCAT_WS's NULL handling)."""
    return exp.Anonymous(this=name, expressions=list(args))
