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

The version of a full copy without a version query (``change_versions``) is InnoDB's own
change signal, read from ``information_schema`` in one read-only transaction. What MariaDB
10.11 does, and so what the version holds:

- ``TABLES.UPDATE_TIME`` is published when a transaction that changed the table commits,
  but its value is the second that transaction *began*, not the commit's; it is kept in
  memory only (NULL after a restart, or once the table leaves the dictionary cache).
- TRUNCATE, and a rebuilding ALTER, leave it as it was; they give the table a new
  ``INNODB_SYS_TABLES.TABLE_ID``. ALTERs in place change ``CREATE_TIME`` and the columns.

So the version is (TABLE_ID, CREATE_TIME, UPDATE_TIME, the columns with their types and
collations, and the InnoDB transactions still open that began no later than
UPDATE_TIME's second), trusted only when UPDATE_TIME is at least ``SETTLED_S`` seconds old:
a transaction beginning later can only set a later UPDATE_TIME, and one that began in or
before that second and commits a change after the read ends a transaction the version
lists. ``INNODB_TRX`` is a cache InnoDB refreshes only after 0.1 s without readers, so the
read must show itself as its session's query, or it is retried. A NULL or recent
UPDATE_TIME, or a stale cache, gives ``NoVersion`` (copied again); so do views, tables of
other engines and partitioned tables, and a user without the PROCESS privilege (which
``INNODB_TRX`` and ``INNODB_SYS_TABLES`` need). MySQL caches ``TABLES`` for a day
(``information_schema_stats_expiry``) and keeps other catalogs: it gets no signal.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO, ClassVar

import sqlglot
from sqlglot import exp

from dbluigi.errors import TaskError
from dbluigi.sources.base import NoVersion, SourceColumn, SourceConnection
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

SETTLED_S = 2
"""A change time at least this many seconds old is trusted: no transaction can start in
its second any more, and the cache INNODB_TRX reads has caught up with those that did."""
# the table's identity and last change; TABLE_ID is new after TRUNCATE and every rebuild
_MARIADB_VERSION_SQL = """
SELECT t.TABLE_TYPE, t.ENGINE, t.CREATE_TIME, t.UPDATE_TIME,
       UNIX_TIMESTAMP(t.UPDATE_TIME) < UNIX_TIMESTAMP() - %s,
       (SELECT s.TABLE_ID FROM information_schema.INNODB_SYS_TABLES AS s
        WHERE s.NAME = CONCAT(t.TABLE_SCHEMA, '/', t.TABLE_NAME))
FROM information_schema.TABLES AS t
WHERE t.TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND t.TABLE_NAME = %s
"""
# the open InnoDB transactions, their start in the server's time zone; the token marks
# this statement, to tell a fresh read from a cached one
_MARIADB_OPEN_TRX_SQL = """
SELECT /* dbluigi {token} */ trx_mysql_thread_id, trx_started, trx_query,
       trx_mysql_thread_id = CONNECTION_ID()
FROM information_schema.INNODB_TRX
ORDER BY 1, 2
"""
_TRX_READS = 3
_NO_SIGNAL_MYSQL = (
    "source has no version signal (MySQL: only MariaDB's is known): copied every build"
)
_NO_SIGNAL_PRIVILEGE = (
    "source has no version signal (its user lacks the PROCESS privilege, which reading "
    "InnoDB's table ids and open transactions needs): copied every build"
)
_UNKNOWN_CHANGE_TIME = (
    "source change time unknown (not changed since the server started or the table was "
    "made): copied again"
)
_JUST_CHANGED = "source changed in the last seconds: copied again"
_TRX_UNKNOWN = "source's open transactions could not be read afresh: copied again"


def _innodb_version(
    row: tuple[Any, ...] | None,
    columns: tuple[Any, ...],
    opened: list[tuple[Any, ...]] | None,
) -> str | NoVersion | None:
    """The version of one table from its TABLES row (None: no such table), columns and
    the open transactions (None: unknown)."""
    if row is None:
        return None  # its copy fails, saying so
    kind, engine, created, updated, settled, table_id = row
    if kind != "BASE TABLE" or engine != "InnoDB" or table_id is None:
        return NoVersion(_no_signal(kind, engine))
    if updated is None:
        return NoVersion(_UNKNOWN_CHANGE_TIME)
    if not settled:
        return NoVersion(_JUST_CHANGED)
    if opened is None:
        return NoVersion(_TRX_UNKNOWN)
    # a transaction begun in the second of the last change that commits a change later
    # sets UPDATE_TIME to that same second: its end must change the version
    begun = sorted((thread, started) for thread, started in opened if started <= updated)
    return json.dumps([table_id, created, updated, begun, columns], default=str)


def _no_signal(kind: str, engine: str | None) -> str:
    if kind == "VIEW":
        what = "a view"
    elif engine != "InnoDB":
        what = f"a {engine or kind} table, not InnoDB"
    else:
        what = "InnoDB lists no table of that name: a partitioned table?"
    return f"source has no version signal ({what}): copied every build"


# PyMySQL error codes of a failure that may pass if tried again: deadlock (1213), lock
# wait timeout (1205), too many connections (1040), server gone away (2006), connection
# lost during a query (2013)
TRANSIENT_ERRORS = frozenset({1213, 1205, 1040, 2006, 2013})


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
    def _read_only(self, cursor_class: Any = None, *, snapshot: bool = False) -> Iterator[Any]:
        """A cursor inside START TRANSACTION READ ONLY ... COMMIT (``snapshot``: the InnoDB
        transaction starts at once, WITH CONSISTENT SNAPSHOT). The session is made
        read-only again first: DDL commits the open transaction and runs under the
        session's mode, which an earlier statement might have changed."""
        cursor = self._connection.cursor(cursor_class)
        try:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.execute(
                "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT"
                if snapshot
                else "START TRANSACTION READ ONLY"
            )
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

    def transient(self, exc: BaseException) -> bool:
        """By PyMySQL's error code (``TRANSIENT_ERRORS``)."""
        import pymysql

        code = exc.args[0] if isinstance(exc, pymysql.Error) and exc.args else None
        return code in TRANSIENT_ERRORS

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

    def change_versions(self, tables: Sequence[SourceTable]) -> dict[str, str | NoVersion | None]:
        """Each InnoDB table's id, create and update times and columns, with the InnoDB
        transactions open that began no later than its last change (the module's
        docstring says why each is there); NoVersion when one is unknown."""
        import pymysql

        try:
            # INNODB_TRX shows times in the server's own zone: read UPDATE_TIME in it too
            with self._connection.cursor() as cursor:
                cursor.execute("SET SESSION time_zone = 'SYSTEM'")
            with self._read_only(snapshot=True) as cursor:
                cursor.execute("SELECT VERSION()")
                if "mariadb" not in str(cursor.fetchone()[0]).lower():
                    return {t.relation: NoVersion(_NO_SIGNAL_MYSQL) for t in tables}
                found: dict[str, tuple[Any, ...] | None] = {}
                columns: dict[str, tuple[Any, ...]] = {}
                for table in tables:
                    schema, _, name = table.table.rpartition(".")
                    cursor.execute(_MARIADB_VERSION_SQL, (SETTLED_S, schema or None, name))
                    found[table.relation] = cursor.fetchone()
                    cursor.execute(_MARIADB_COLUMNS_SQL, (schema or None, name))
                    columns[table.relation] = tuple(cursor.fetchall())
                # after the change times: a transaction that commits once they are read is
                # either listed here (so its end changes the version) or already seen
                opened = self._open_transactions(cursor)
        except pymysql.Error as exc:
            if exc.args and exc.args[0] in (1142, 1227):  # may not read InnoDB's tables
                return {t.relation: NoVersion(_NO_SIGNAL_PRIVILEGE) for t in tables}
            raise
        finally:
            with suppress(Exception), self._connection.cursor() as cursor:
                cursor.execute("SET SESSION time_zone = '+00:00'")
        return {
            relation: _innodb_version(row, columns[relation], opened)
            for relation, row in found.items()
        }

    def _open_transactions(self, cursor: Any) -> list[tuple[Any, ...]] | None:
        """(thread, start) of every open InnoDB transaction but this one, read fresh; None
        when InnoDB keeps serving an older copy. INNODB_TRX is a cache refreshed only once
        nobody has read it for 0.1 s: it is fresh when it shows this very statement as the
        query of this session's transaction."""
        for attempt in range(_TRX_READS):
            token = secrets.token_hex(8)
            cursor.execute(_MARIADB_OPEN_TRX_SQL.format(token=token))
            rows = cursor.fetchall()
            if any(mine and token in (query or "") for _, _, query, mine in rows):
                return [(thread, started) for thread, started, _, mine in rows if not mine]
            if attempt + 1 < _TRX_READS:
                time.sleep(0.15)
        return None

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
