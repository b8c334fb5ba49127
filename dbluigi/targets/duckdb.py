"""DuckDB as a target: an embedded database file, the default under the project.

A DuckDB file can be open for writing in one process at a time (sessions within a
process share it), so ``supports_concurrent_writers`` is False and the run lock is the
file lock itself. Views bind by name at query time, so a swapped table is picked up by
its readers without recreating them. A table with an index cannot be renamed, so
``swap`` creates the indexes after the rename, and ``rename`` moves indexes aside.

What exists is known without asking: asking DuckDB costs a scan of its whole catalog
(milliseconds at a thousand tables, tens of them at ten thousand), and a build asks
several times per model. The sessions of a file in this process share a mirror of the
catalog, read with the run's ``catalog()`` and kept up to date by the changes they make
themselves (tables created, dropped, renamed, indexed; undone when their transaction
rolls back). Sessions building at once (``--workers``) each change only their own
models' relations, so one session's open transaction never misleads another. Any other
statement that could change the catalog (the user's SQL: anything but a query or DML,
told by DuckDB's own parser) makes them forget the mirror; they then ask DuckDB for each
name (``connection.table``, exact and cheap for a name that exists) until a ``catalog()``
taken while no session has a transaction open reads it again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from dbluigi.errors import FailureClass, TargetError, TaskError
from dbluigi.lazy import exp, sqlglot
from dbluigi.names import index_name
from dbluigi.relation import Relation
from dbluigi.targets.base import (
    Catalog,
    Column,
    IndexLike,
    QueryResult,
    Session,
    Target,
    ident,
    quote_name,
    sql_string,
    strip_statement_end,
    table_expr,
    usable_cores,
)

_REJECTS = "dbluigi_csv_rejects"  # temporary tables of values a CSV load set aside

_TYPES = {
    "bigint": "BIGINT",
    # A bare DECIMAL is DECIMAL(18, 3) in DuckDB; keep ten fractional digits instead.
    "numeric": "DECIMAL(38, 10)",
    "double": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "boolean": "BOOLEAN",
    "text": "TEXT",
    "json": "JSON",
}

CATALOG = "dbluigi_target"
"""The name the target file is attached under (DuckDB would name it after the file)."""
_PLACEHOLDER = re.compile(r"%[s%]")
_LOCK_PID = re.compile(r"\(PID (\d+)\)")
_LOCKED = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
# How long opening a file another process holds is tried again before it fails: a command
# that holds it for a moment (`docs`, `show`, `plan`) does not fail a build starting then
LOCK_WAIT_S = 5.0
_LOCK_POLL_S = 0.1
# what DuckDB says of a file that is not a database, or a database whose blocks are damaged
_CORRUPT = re.compile(
    r"not a valid DuckDB database file|corrupt database file|checksum .*does not match",
    re.IGNORECASE,
)
_LONG_ROW = re.compile(r"CSV Error on Line: (\d+).*Maximum line size .*Actual Size:\s*(\d+)", re.S)
_BATCH_ROWS = 500
# The longest row load_csv_stream reads. Its reader's buffer is sized from it (16x by
# default), and larger bounds cost DuckDB much more memory when it checkpoints the table.
STREAM_LINE_BYTES = 8 << 20

_RELATIONS_SQL = """
SELECT schema_name, table_name, 'table' FROM duckdb_tables()
WHERE database_name = current_database() AND NOT temporary
UNION ALL
SELECT schema_name, view_name, 'view' FROM duckdb_views()
WHERE database_name = current_database() AND NOT temporary AND NOT internal
"""


# Every table's and view's columns, names and types in order, for their versions.
_COLUMNS_SQL = """
SELECT schema_name, table_name, md5(string_agg(column_name || ' ' || data_type, ','
                                               ORDER BY column_index))
FROM duckdb_columns() WHERE database_name = current_database() GROUP BY ALL
"""
_VIEWS_SQL = """
SELECT schema_name, view_name, md5(sql) FROM duckdb_views()
WHERE database_name = current_database() AND NOT temporary AND NOT internal
"""
# One table's rows (a count DuckDB answers from metadata) and storage layout: every row
# group and segment with its block, statistics and pending updates. Read after a
# CHECKPOINT, an INSERT, UPDATE or ALTER rewrites segments, a DELETE changes the count;
# but freed blocks are reused, so two updates can leave a layout as it was: tables up to
# CONTENT_HASH_ROWS rows are hashed whole instead (about 20 ms a million rows).
CONTENT_HASH_ROWS = 2_000_000
_CONTENT_SQL = "SELECT %s, sum(hash(dbluigi_row)) FROM {table} AS dbluigi_row"
_COUNT_SQL = "SELECT %s, count(*) FROM {table}"
_COUNTED_SQL = "SELECT %s, count(*), sum(hash(dbluigi_row)) FROM {table} AS dbluigi_row"
# DuckDB's estimate of each table's rows: never fewer than it holds
_SIZES_SQL = """
SELECT schema_name, table_name, estimated_size FROM duckdb_tables()
WHERE database_name = current_database()
"""
_LAYOUT_SQL = """SELECT %s, (SELECT sum(hash(row_group_id, column_id, column_path, segment_id,
    count, block_id, block_offset, has_updates, persistent, stats::VARCHAR))
  FROM pragma_storage_info(%s))"""
# the tables with indexes (a table with one cannot be renamed as it is)
_INDEXED_SQL = """
SELECT DISTINCT schema_name, table_name FROM duckdb_indexes()
WHERE database_name = current_database()
"""
# Statements that cannot change which relations exist, or their indexes: anything else
# run by the user's SQL makes a session forget its mirror of the catalog (EXPLAIN is not
# one: EXPLAIN ANALYZE runs the statement it explains).
_CATALOG_SAFE = frozenset(
    {
        duckdb.StatementType.SELECT,
        duckdb.StatementType.INSERT,
        duckdb.StatementType.UPDATE,
        duckdb.StatementType.DELETE,
        duckdb.StatementType.MERGE_INTO,
        duckdb.StatementType.COPY,
        duckdb.StatementType.ANALYZE,
        duckdb.StatementType.VARIABLE_SET,
    }
)
_STATEMENT_TYPES: dict[str, tuple[duckdb.StatementType, ...]] = {}  # SQL text -> its statements
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class _Mirror:
    """The mirror of one file's catalog that its sessions in this process share (see the
    module docstring): folded (schema, name) -> kind, or None when forgotten; the tables
    among them with indexes; how many sessions have a transaction open."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], str] | None = None
        self.indexed: set[tuple[str, str]] = set()
        self.writing = 0
        # held while it changes, and by catalog() from its read of the catalog until it
        # is installed: a change noted meanwhile is applied to what was read
        self.lock = threading.RLock()


_MIRRORS: dict[Path, _Mirror] = {}
_MIRRORS_LOCK = threading.Lock()
# per file: how many times this process opened it with no session of it open before
# (another process may have written it in between)
_EPOCHS: dict[Path, int] = {}


def _mirror_of(file: Path) -> _Mirror:
    with _MIRRORS_LOCK:
        return _MIRRORS.setdefault(file, _Mirror())


SEEN_SUFFIX = ".dbluigi-seen"  # next to the file: its size and time when dbluigi closed it
# per file: [sessions open in this process, written elsewhere, a run accounts for writes]
_OPEN: dict[Path, list[Any]] = {}
_OPEN_LOCK = threading.Lock()  # sessions open and close on several threads; before _MIRRORS_LOCK


@functools.lru_cache(maxsize=1024)
def qmark(sql: str) -> str:
    """psycopg2-style placeholders to DuckDB's: ``%s`` to ``?`` and ``%%`` to ``%``."""
    return _PLACEHOLDER.sub(lambda m: "?" if m.group() == "%s" else "%", sql)


def _statement_types(
    sql: str, connection: duckdb.DuckDBPyConnection
) -> tuple[duckdb.StatementType, ...]:
    """The type of each statement of ``sql``, as DuckDB parses it (none when it cannot:
    it would not run either); remembered per text. Parsed by the session's connection:
    ``duckdb.extract_statements`` would first open DuckDB's default in-memory database
    (35 ms)."""
    types = _STATEMENT_TYPES.get(sql)
    if types is None:
        try:
            types = tuple(statement.type for statement in connection.extract_statements(sql))
        except duckdb.ParserException:
            types = ()
        except duckdb.Error:  # the connection's (closed, say): not the text's, not remembered
            return ()
        if len(_STATEMENT_TYPES) >= 4096:
            _STATEMENT_TYPES.clear()
        _STATEMENT_TYPES[sql] = types
    return types


def _catalog_safe(sql: str, connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether running ``sql`` leaves the catalog as it was (queries and DML only)."""
    types = _statement_types(sql, connection)
    return bool(types) and all(t in _CATALOG_SAFE for t in types)


def _one_query(sql: str, connection: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``sql`` is one query: wrapped in CREATE TABLE/VIEW AS, it creates that alone.
    Without a semicolon the wrapped text is one statement, whatever it holds (parsing it
    costs DuckDB more than the rest of a small model's own work)."""
    return ";" not in sql or _statement_types(sql, connection) == (duckdb.StatementType.SELECT,)


def _fold(schema: str, name: str) -> tuple[str, str]:
    """A relation's key in the mirror: DuckDB matches names regardless of (ASCII) case."""
    return schema.translate(_ASCII_LOWER), name.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class DuckDBTarget(Target):
    """A DuckDB database file."""

    path: Path

    name: ClassVar[str] = "duckdb"
    dialect: ClassVar[str] = "duckdb"
    supports_concurrent_writers: ClassVar[bool] = False
    max_numeric_precision: ClassVar[int] = 38
    max_identifier_bytes: ClassVar[int | None] = None
    reserved_schemas: ClassVar[frozenset[str]] = frozenset({"system", "temp", CATALOG})

    @property
    def display_url(self) -> str:
        return f"duckdb:///{self.path}"

    @property
    def identity(self) -> str:
        """The file's resolved path, and how many times this process opened it anew:
        what another process wrote in between is another database as far as what this
        process knew of it goes."""
        key = self._resolved
        return f"{key}#{_EPOCHS.get(key, 0)}"

    @functools.cached_property
    def _resolved(self) -> Path:
        return self.path.resolve()

    @property
    def versions_after_run(self) -> bool:
        return True

    def exists(self) -> bool:
        """Whether the file is there (connecting would create it)."""
        return self.path.exists()

    def written_elsewhere(self) -> bool:
        """Whether another process wrote the file since dbluigi last closed it (compared
        with the size and time recorded then, when the first session opened it)."""
        entry = _OPEN.get(self.path.resolve())
        return True if entry is None else bool(entry[1])

    def acknowledge_writes(self) -> None:
        """A run compared the versions of every input and output with what another process
        wrote (or nothing else wrote), and accounts for what this process writes: when it
        closes the file, that is how dbluigi last saw it. A process that writes through
        dbluigi's sessions without a run (a script, a test) leaves the file to be compared."""
        entry = _OPEN.get(self.path.resolve())
        if entry is not None:
            entry[1] = False
            entry[2] = True

    def _opening(self) -> None:
        key = self._resolved
        with _OPEN_LOCK:
            entry = _OPEN.setdefault(key, [0, True, False])
            if entry[0] == 0:  # other processes may have written it: no mirror of it holds
                with _MIRRORS_LOCK:
                    _MIRRORS.pop(key, None)
                    _EPOCHS[key] = _EPOCHS.get(key, 0) + 1
                seen = _seen_path(self.path)
                entry[1] = not seen.exists() or seen.read_text() != _file_identity(self.path)
                entry[2] = False
            entry[0] += 1

    def _closed(self, *, remember: bool = True) -> None:
        """A session closed; when it was the last of this process, remember how the file
        looks now, unless what another process wrote was not looked at yet (or the open
        failed: another process may be writing it)."""
        with _OPEN_LOCK:
            entry = _OPEN.get(self.path.resolve())
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] == 0 and remember and entry[2] and not entry[1] and self.path.exists():
                with suppress(OSError):  # a read-only folder: the next run compares versions
                    _seen_path(self.path).write_text(_file_identity(self.path))

    def connect(self) -> DuckDBSession:
        """Open the file (created if missing) as the catalog ``CATALOG``; a file held by
        another process is waited for (``LOCK_WAIT_S``), then a ``TargetError`` naming that
        process; a damaged one a ``TargetError`` naming the file.

        DuckDB names a database after its file, so a file called like a schema
        (``raw.duckdb`` next to a ``raw/`` folder, or ``dbluigi.duckdb``) would make
        two-part names ambiguous. The file is therefore attached under a fixed name to
        an in-memory database of its own, whose default ``memory`` catalog is then
        detached; sessions of one process share that database, as they share a file
        opened directly."""
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            self._opening()  # before the file is opened: how it looked then
            connection = None
            try:
                connection = duckdb.connect(_instance_name(self.path))
                for statement in _attach_statements(self.path):
                    connection.execute(statement)
            except duckdb.Error as exc:
                if connection is not None:
                    connection.close()
                self._closed(remember=False)
                if _LOCKED.search(str(exc)) and time.monotonic() < deadline:
                    time.sleep(_LOCK_POLL_S)  # held by another process: for a moment?
                    continue
                raise self._open_error(exc) from None
            return DuckDBSession(self, connection)

    def _open_error(self, exc: duckdb.Error) -> TargetError:
        message = str(exc)
        if _CORRUPT.search(message):
            return TargetError(
                f"the DuckDB target file {self.path} is corrupt (not a readable DuckDB "
                f"database): {message.splitlines()[0]}",
                hint=f"move {self.path} aside (keep it for inspection) and build again: "
                "dbluigi creates a new file and rebuilds every model into it",
            )
        if _LOCKED.search(message):
            pid = _LOCK_PID.search(message)
            holder = f" (PID {pid.group(1)})" if pid else ""
            return TargetError(
                f"the DuckDB target {self.display_url} is held by another process{holder}; "
                "a DuckDB file can be written by one process at a time",
                hint="wait for the other dbluigi/duckdb process or point --target elsewhere",
            )
        return TargetError(
            f"cannot open the DuckDB target {self.display_url}: {message.splitlines()[0]}",
            hint="check that its folder exists and is writable, or point --target elsewhere",
        )


def _attach_statements(path: Path) -> list[str]:
    """ATTACH the file as ``CATALOG`` (once per process), USE it, DETACH ``memory``."""
    catalog = quote_name(CATALOG)
    file = sql_string(str(path))
    return [
        f"ATTACH IF NOT EXISTS {file} AS {catalog}",
        f"USE {catalog}",
        "DETACH DATABASE IF EXISTS memory",
    ]


def _tables_read(sql: str, schema: str, known: set[str]) -> set[str]:
    """The relations a view's ``CREATE VIEW`` statement reads (CTE names aside), as
    ``schema.name``: an unqualified name in ``schema`` when ``known`` has it there, else in
    ``main``; a table function (``read_csv(...)``) as ``schema.<table function>``."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError:
        return {f"{schema}.<unreadable view>"}
    if isinstance(tree, exp.Create) and tree.expression is not None:
        tree = tree.expression
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    found = set()
    for table in tree.find_all(exp.Table):
        if not table.name:
            found.add(f"{schema}.<table function>")
        elif table.db:
            found.add(f"{table.db}.{table.name}")
        elif table.name not in ctes:
            local = f"{schema}.{table.name}"
            found.add(local if local in known else f"main.{table.name}")
    return found


def _quoted(relation: str) -> str:
    parsed = Relation(relation)
    return quote_name(parsed.schema, parsed.name)


def _seen_path(path: Path) -> Path:
    return path.with_name(path.name + SEEN_SUFFIX)


def _file_identity(path: Path) -> str:
    """What changes when a process writes the file: its size, time and inode, and those
    of its write-ahead log (a writer that stops without a checkpoint leaves its commits
    there alone)."""
    wal = path.with_name(path.name + ".wal")
    parts = []
    for file in (path, wal):
        with suppress(FileNotFoundError):
            stat = file.stat()
            parts.append(f"{stat.st_size} {stat.st_mtime_ns} {stat.st_ino}")
            continue
        parts.append("-")
    return " ".join(parts)


def _instance_name(path: Path) -> str:
    """The in-memory database the file is attached to: one per file in a process."""
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return f":memory:dbluigi_{key}"


class DuckDBSession(Session):
    """A DuckDB connection (autocommit outside ``transaction()``); see ``Session``."""

    target: DuckDBTarget

    def __init__(self, target: DuckDBTarget, connection: duckdb.DuckDBPyConnection) -> None:
        super().__init__(target)
        self._connection = connection
        self._closed_once = False
        # the mirror of the catalog it shares (see the module docstring), whether it
        # counts there as writing, how to undo what its open transaction changed in it,
        # and how deep in statements whose effect on the catalog this session notes itself
        self._file = target.path.resolve()
        self._shared = self._mirror_shared()
        self._writing = False  # counted in the mirror's ``writing``
        self._undo: list[tuple[tuple[str, str], str | None, bool]] = []
        self._own = 0

    def _mirror_shared(self) -> _Mirror:
        """The mirror this session keeps with the file's other sessions in this process."""
        return _mirror_of(self._file)

    # -- statements -----------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any] | None) -> duckdb.DuckDBPyConnection:
        statement = sql if params is None else qmark(sql)
        if (
            not self._own
            and self._shared.known is not None
            and not _catalog_safe(statement, self._connection)
        ):
            self._forget_catalog()
        try:
            if params is None:
                return self._connection.execute(statement)
            return self._connection.execute(statement, list(params))
        except duckdb.Error as exc:
            self._record_error(exc, statement)
            raise

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        return self._run(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        statement = qmark(sql)
        if (
            not self._own
            and self._shared.known is not None
            and not _catalog_safe(statement, self._connection)
        ):
            self._forget_catalog()
        try:
            self._connection.executemany(statement, [list(row) for row in rows])
        except duckdb.Error as exc:
            self._record_error(exc, statement)
            raise

    def query(
        self, sql: str, params: Sequence[Any] | None = None, *, limit: int | None = None
    ) -> QueryResult:
        result = self._run(sql, params)
        if result.description is None:
            return QueryResult((), ())
        columns = tuple(d[0] for d in result.description)
        rows = (
            result.fetchall() if limit is None else result.fetchmany(limit)
        )  # TIMESTAMPTZ needs pytz
        return QueryResult(columns, tuple(tuple(row) for row in rows))

    # -- transactions ---------------------------------------------------------------

    def _begin(self) -> None:
        self._undo.clear()
        with self._shared.lock:  # not while a catalog() reads the mirror anew
            if not self._writing:
                self._shared.writing += 1
                self._writing = True
        try:
            with self._owned():
                self._run("BEGIN TRANSACTION", None)
        except BaseException:
            self._done_writing()
            raise

    def _done_writing(self) -> None:
        with self._shared.lock:
            if self._writing:
                self._shared.writing -= 1
                self._writing = False

    def _commit(self) -> None:
        try:
            with self._owned():
                self._run("COMMIT", None)
        except BaseException:
            self._undo_changes()  # a COMMIT that fails rolls back
            raise
        finally:
            self._done_writing()
        self._undo.clear()

    def _rollback(self) -> None:
        self._undo_changes()
        try:
            with self._owned():
                self._run("ROLLBACK", None)
        finally:
            self._done_writing()

    # -- catalog --------------------------------------------------------------------

    def _relation_rows(self) -> tuple[tuple[Any, ...], ...]:
        return self.query(_RELATIONS_SQL).rows

    def relations(self, schema: str | None = None) -> set[tuple[str, str]]:
        return {
            (row[0], row[1]) for row in self._relation_rows() if schema is None or row[0] == schema
        }

    def catalog(self) -> Catalog:
        """Every relation and its kind; also the mirror, when no session of the file in
        this process has a transaction open (what it changed would be missing)."""
        shared = self._shared
        with shared.lock:
            rows = self._relation_rows()
            if not self._in_transaction and not shared.writing:
                shared.indexed = {_fold(s, n) for s, n in self.query(_INDEXED_SQL).rows}
                shared.known = {_fold(row[0], row[1]): row[2] for row in rows}
                self._undo.clear()
        # DuckDB binds views by name, so which relations views read does not matter.
        return Catalog({f"{row[0]}.{row[1]}": row[2] for row in rows})

    def relation_kind(self, schema: str, name: str) -> str | None:
        known = self._mirror()
        if known is not None:
            return known.get(_fold(schema, name))
        try:  # no statement: a name that is not there leaves the transaction as it was
            relation = self._connection.table(quote_name(CATALOG, schema, name))
        except duckdb.CatalogException:
            return None
        return "table" if relation.type == "TABLE_RELATION" else "view"

    def _mirror(self) -> dict[tuple[str, str], str] | None:
        """The mirror of the catalog, when it still holds."""
        return self._shared.known

    def _forget_catalog(self) -> None:
        with self._shared.lock:
            self._shared.known = None
        self._undo.clear()

    def _note(self, schema: str, name: str, kind: str | None, *, indexed: bool = False) -> None:
        """This session made ``schema.name`` a ``kind`` (None: dropped it)."""
        with self._shared.lock:
            known = self._mirror()
            if known is None:
                return
            key = _fold(schema, name)
            if self._in_transaction:
                self._undo.append((key, known.get(key), key in self._shared.indexed))
            self._set_known(known, key, kind, indexed)

    def _set_known(
        self,
        known: dict[tuple[str, str], str],
        key: tuple[str, str],
        kind: str | None,
        indexed: bool,
    ) -> None:
        if kind is None:
            known.pop(key, None)
        else:
            known[key] = kind
        if indexed:
            self._shared.indexed.add(key)
        else:
            self._shared.indexed.discard(key)

    def _undo_changes(self) -> None:
        """The open transaction rolled back: so does what it changed in the mirror."""
        with self._shared.lock:
            known = self._mirror()
            if known is not None and self._undo:
                for key, kind, indexed in reversed(self._undo):
                    self._set_known(known, key, kind, indexed)
        self._undo.clear()

    @contextmanager
    def _owned(self) -> Iterator[None]:
        """Statements whose effect on the catalog the caller notes (``_note``). One that
        fails changes nothing, and fails its transaction, which rolls back; outside one,
        those of the block before it did run, unnoted."""
        self._own += 1
        try:
            yield
        except BaseException:
            if self._shared.known is not None and not self._in_transaction:
                self._forget_catalog()
            raise
        finally:
            self._own -= 1

    def _may_have_indexes(self, schema: str, name: str) -> bool:
        return self._mirror() is None or _fold(schema, name) in self._shared.indexed

    # -- the changes a session notes itself -------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        with self._owned():  # no relation changes
            super().ensure_schema(schema)

    def drop_relation(self, schema: str, name: str) -> None:
        with self._owned():
            super().drop_relation(schema, name)
        self._note(schema, name, None)

    def create_table_as(self, schema: str, name: str, query_sql: str) -> int:
        with self._owned():
            count = super().create_table_as(schema, name, query_sql)
        if _one_query(strip_statement_end(query_sql), self._connection):
            self._note(schema, name, "table")
        else:  # more than the table may have changed
            self._forget_catalog()
        return count

    def create_table(self, schema: str, name: str, columns: Sequence[Column]) -> None:
        with self._owned():
            super().create_table(schema, name, columns)
        self._note(schema, name, "table")

    def replace_view(
        self,
        schema: str,
        name: str,
        query_sql: str,
        views: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        with self._owned():
            super().replace_view(schema, name, query_sql, views)
        if _one_query(strip_statement_end(query_sql), self._connection):
            self._note(schema, name, "view")
        else:
            self._forget_catalog()

    def _create_indexes(
        self, schema: str, name: str, indexes: Sequence[IndexLike], *, skip_existing: bool
    ) -> None:
        if not indexes:
            return
        with self._owned():
            super()._create_indexes(schema, name, indexes, skip_existing=skip_existing)
        self._note(schema, name, "table", indexed=True)

    def _data_type(self, portable: str) -> str:
        return _TYPES[portable]

    def _index_sql(self, schema: str, name: str) -> list[tuple[str, str]]:
        if not self._may_have_indexes(schema, name):
            return []
        sql = (
            "SELECT index_name, sql FROM duckdb_indexes() "
            "WHERE database_name = current_database() AND schema_name = %s AND table_name = %s"
        )
        return [(row[0], row[1]) for row in self.query(sql, (schema, name)).rows]

    def _index_names(self, schema: str, name: str) -> set[str]:
        return {index for index, _ in self._index_sql(schema, name)}

    def _indexes(self, schema: str, name: str) -> list[tuple[str, bool, tuple[str | None, ...]]]:
        result = []
        for index, create_sql in self._index_sql(schema, name):
            create = sqlglot.parse_one(create_sql, read="duckdb")
            ordered = create.this.args["params"].args.get("columns") or []
            columns = tuple(
                o.this.name if isinstance(o.this, exp.Column) else None for o in ordered
            )
            result.append((index, bool(create.args.get("unique")), columns))
        return result

    # -- publishing -----------------------------------------------------------------

    def prepare_indexes(self, schema: str, name: str, indexes: Sequence[IndexLike]) -> None:
        """Nothing: DuckDB cannot rename a table that has indexes; ``swap`` creates them."""

    def _rename_relation(self, schema: str, name: str, new_name: str, kind: str) -> None:
        # DuckDB refuses to rename a table with indexes: drop them, rename, recreate
        # them on the new name (dbluigi-named ones renamed to match).
        indexes = self._index_sql(schema, name) if kind == "table" else []
        with self._owned():
            for index, _ in indexes:
                drop = exp.Drop(tables=[table_expr(schema, index)], kind="INDEX")
                self.execute(self._sql(drop))
            rename = f"ALTER {'VIEW' if kind == 'view' else 'TABLE'} {quote_name(schema, name)} "
            self.execute(rename + f"RENAME TO {quote_name(new_name)}")
            for _, create_sql in indexes:
                self.execute(
                    self._sql(
                        _retarget_index(
                            create_sql, schema, name, new_name, self.target.max_identifier_bytes
                        )
                    )
                )
        self._note(schema, name, None)
        self._note(schema, new_name, kind, indexed=bool(indexes))

    # -- bulk loads -----------------------------------------------------------------

    def load_csv(
        self,
        schema: str,
        name: str,
        path: Path,
        columns: Sequence[Column],
        literal: bool | None = None,
    ) -> int:
        """CREATE TABLE, then INSERT ... SELECT FROM read_csv with the given types and
        no auto-detection; an empty field, quoted or not, is NULL."""
        insert = self._read_csv_insert(schema, name, columns, {"header": "TRUE"})
        with self._atomic():
            self.create_table(schema, name, columns)
            return self._run(insert, [str(path)]).rowcount

    def load_csv_typing(
        self,
        schema: str,
        name: str,
        path: Path,
        guess: Sequence[Column],
        typing: Callable[[], Sequence[Column]],
    ) -> int:
        """``load_csv`` with the guessed types while ``typing`` runs in a thread (its own
        in-memory DuckDB; both let go of the GIL). A value that does not take its guessed
        type is set aside by the reader (``store_rejects``) rather than failing the load,
        since an error would abort the transaction; the load is kept when ``typing``
        agrees with the guess and nothing was set aside (then it is exactly what
        ``load_csv`` loads), else the table is dropped and loaded again with the types
        ``typing`` gave, as ``load_csv`` would load it."""
        guess = tuple(guess)
        with self._atomic():
            loaded, failure, columns = self._load_while_typing(
                lambda: self._load_csv_setting_aside(schema, name, path, guess),
                typing,
                duckdb.Error,
            )
            if failure is not None:  # the transaction is aborted: nothing more can run
                raise failure
            rows, rejected = loaded or (0, True)
            if columns == guess and not rejected:
                return rows
            self.execute(f"DROP TABLE {quote_name(schema, name)}")
            return self.load_csv(schema, name, path, columns)

    def _load_csv_setting_aside(
        self, schema: str, name: str, path: Path, columns: Sequence[Column]
    ) -> tuple[int, bool]:
        """``load_csv``, rows whose values do not take the types set aside: the rows
        loaded, and whether any was set aside."""
        rejects = {"rejects_table": _REJECTS, "rejects_scan": f"{_REJECTS}_scan"}
        options = {
            "header": "TRUE",
            "store_rejects": "TRUE",
            "rejects_limit": "1",  # one tells enough; the load goes on
            **{key: sql_string(table) for key, table in rejects.items()},
        }
        insert = self._read_csv_insert(schema, name, columns, options)
        self.create_table(schema, name, columns)
        rows = self._run(insert, [str(path)]).rowcount
        rejected = bool(self.query(f"SELECT count(*) FROM {quote_name(_REJECTS)}").rows[0][0])
        for table in rejects.values():
            self.execute(f"DROP TABLE {quote_name(table)}")
        return rows, rejected

    def load_csv_stream(self, schema: str, name: str, columns: Sequence[Column], path: Path) -> int:
        """CREATE TABLE, then INSERT ... SELECT FROM read_csv reading ``path`` (a named pipe
        is read as it is written); a quoted empty field is an empty string, not NULL."""
        options = {
            "header": "FALSE",
            "allow_quoted_nulls": "FALSE",
            "max_line_size": str(STREAM_LINE_BYTES),  # 2 MiB by default
            "buffer_size": str(2 * STREAM_LINE_BYTES),
        }
        insert = self._read_csv_insert(schema, name, columns, options)
        with self._atomic():
            self.create_table(schema, name, columns)
            try:
                return self._run(insert, [str(path)]).rowcount
            except duckdb.InvalidInputException as exc:
                long_row = _LONG_ROW.search(str(exc))
                if long_row is None:
                    raise
                raise TaskError(
                    f"row {long_row.group(1)} is {int(long_row.group(2)):,} bytes long as CSV, "
                    f"more than the {STREAM_LINE_BYTES:,} bytes the DuckDB target reads as one row",
                    failure_class="runtime",
                    hint="leave the large column out (columns = [...]) or load into PostgreSQL",
                ) from None

    def _read_csv_insert(
        self, schema: str, name: str, columns: Sequence[Column], extra: Mapping[str, str]
    ) -> str:
        """INSERT INTO schema.name SELECT * FROM read_csv(?, <typed columns, options>);
        ``extra`` holds more options, each as a SQL literal. Written without sqlglot."""
        types = ", ".join(
            f"{sql_string(column.name)}: {sql_string(self._column_type(column))}"
            for column in columns
        )
        options = {
            "columns": "{" + types + "}",
            "nullstr": "''",
            "auto_detect": "FALSE",
            "delim": "','",
            "quote": "'\"'",
            "escape": "'\"'",
            "encoding": "'utf-8'",
            **extra,
        }
        settings = ", ".join(f"{quote_name(key)} = {value}" for key, value in options.items())
        names = ", ".join(quote_name(column.name) for column in columns)
        return (
            f"INSERT INTO {quote_name(schema, name)} ({names}) "
            f"SELECT * FROM read_csv(?, {settings})"
        )

    def load_rows(
        self, schema: str, name: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]
    ) -> int:
        """CREATE TABLE, then multi-row INSERTs of bound parameters, 500 rows at a time."""
        width = len(columns)
        json_columns = [i for i, column in enumerate(columns) if column.type == "json"]
        statements: dict[int, str] = {}
        loaded = 0
        with self._atomic():
            self.create_table(schema, name, columns)
            for batch in _batches(rows, _BATCH_ROWS):
                values: list[Any] = []
                for row in batch:
                    loaded += 1
                    if len(row) != width:
                        raise ValueError(
                            f"row {loaded} has {len(row)} values, the table has {width} columns"
                        )
                    row = list(row)
                    for i in json_columns:
                        if isinstance(row[i], (dict, list)):
                            row[i] = json.dumps(row[i], default=str)
                    values.extend(row)
                if len(batch) not in statements:
                    statements[len(batch)] = self._insert_values_sql(
                        schema, name, columns, len(batch)
                    )
                self._connection_execute(statements[len(batch)], values)
        return loaded

    def _insert_values_sql(
        self, schema: str, name: str, columns: Sequence[Column], count: int
    ) -> str:
        row = exp.Tuple(expressions=[exp.Placeholder() for _ in columns])
        insert = exp.Insert(
            this=exp.Schema(
                this=table_expr(schema, name), expressions=[ident(c.name) for c in columns]
            ),
            expression=exp.Values(expressions=[row.copy() for _ in range(count)]),
        )
        return self._sql(insert)

    def _connection_execute(self, statement: str, values: list[Any]) -> None:
        try:
            self._connection.execute(statement, values)
        except duckdb.Error as exc:
            self._record_error(exc, statement)
            raise

    def copy_out_csv(self, query_sql: str, path: Path) -> int:
        """``COPY (query) TO 'file' (FORMAT csv, HEADER)``: DuckDB streams it to the file."""
        file = sql_string(str(path))
        sql = f"COPY (\n{strip_statement_end(query_sql)}\n) TO {file} (FORMAT csv, HEADER)"
        row = self._run(sql, None).fetchone()
        return int(row[0]) if row else 0

    # -- guards ---------------------------------------------------------------------

    def _limit_statements(self, seconds: float) -> None:
        """Nothing: DuckDB has no statement timeout setting; the timer alone stops it."""

    def _interrupt(self) -> None:
        # The running statement raises InterruptException; an idle connection ignores it.
        self._connection.interrupt()

    # -- errors, locks --------------------------------------------------------------

    def classify(self, exc: BaseException) -> FailureClass:
        """Parser, binder and catalog errors are ``syntax``; an interrupt ``timeout``."""
        if isinstance(exc, TaskError):
            return exc.failure_class
        if isinstance(
            exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)
        ):
            return "syntax"
        if isinstance(exc, duckdb.InterruptException):
            return "timeout"
        return "runtime"

    def _transient(self, exc: BaseException) -> bool:
        """A write-write conflict with another transaction of the file ("Conflict on
        update", a catalog write-write conflict), or the file locked by another process."""
        if isinstance(exc, duckdb.TransactionException):
            return "conflict" in str(exc).lower()
        return isinstance(exc, duckdb.IOException) and bool(_LOCKED.search(str(exc)))

    def default_workers(self) -> int:
        """Two sessions per core, 2 to 8: one process writes the file, but its sessions
        build at once. A small model's time is DuckDB's (which runs without Python's lock)
        and dbluigi's Python around it; a second session per core overlaps the two, and
        its commits wait for each other (measured on 2 cores: 1, 2, 4 and 8 workers build
        the 1,000-model benchmark in 4.9, 3.9, 3.7 and 3.6 s). A large model's query runs
        on every core whatever the count."""
        return max(2, min(8, 2 * usable_cores()))

    def try_lock(self, key: str) -> bool:
        """Always True: the file lock already keeps other processes out."""
        return True

    def unlock(self, key: str) -> None:
        """Nothing to release (see ``try_lock``)."""

    def close(self) -> None:
        if self._closed_once:
            return
        self._closed_once = True
        self._done_writing()
        self._connection.close()
        self.target._closed()

    # -- versions -----------------------------------------------------------------------

    def output_version_sql(self, relations: Sequence[str]) -> tuple[str, list[Any]] | None:
        """Not yet: read after the run (``versions.settle_after_run``); until then the
        build stands as pending, which a run that died before reading it takes for a
        change (it cannot tell what happened to the table since)."""
        return ("%s", ["pending"])

    def underlying(self, relations: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The tables each view reads, through the views it reads, read from their SQL
        (DuckDB records no dependencies of views). An unqualified name is the view's own
        schema's relation when there is one, else ``main``'s; a table function stands as a
        relation that cannot be found, so the view has no signal."""
        definitions = {
            f"{schema}.{name}": sql
            for schema, name, sql in self.query(
                "SELECT schema_name, view_name, sql FROM duckdb_views() "
                "WHERE database_name = current_database() AND NOT internal"
            ).rows
        }
        known = set(self.catalog().kinds)
        result: dict[str, tuple[str, ...]] = {}
        for view in relations:
            if view not in definitions:
                continue
            tables: set[str] = set()
            pending, seen = [view], set()
            while pending:
                current = pending.pop()
                if current in seen:
                    continue
                seen.add(current)
                for read in _tables_read(definitions[current], Relation(current).schema, known):
                    if read in definitions:
                        pending.append(read)
                    else:
                        tables.add(read)
            result[view] = tuple(sorted(tables))
        return result

    def relation_versions(self, relations: Sequence[str], *, track: bool) -> dict[str, str]:
        """Tables: their row count, columns, and contents hashed (up to
        ``CONTENT_HASH_ROWS`` rows) or storage layout; views: their SQL and columns. A
        layout is read after a CHECKPOINT, so that what this process wrote is laid out as
        it will stay; contents need none (the file is checkpointed when it is closed,
        which a CHECKPOINT here would only do twice). ``track`` needs nothing more here.
        The statements leave the catalog as it is: they are not parsed to tell (the
        queries of a thousand tables are long)."""
        with self._owned():
            return self._relation_versions(relations)

    def _relation_versions(self, relations: Sequence[str]) -> dict[str, str]:
        if not relations:
            return {}
        columns = {f"{r[0]}.{r[1]}": r[2] for r in self.query(_COLUMNS_SQL).rows}
        views = {f"{r[0]}.{r[1]}": r[2] for r in self.query(_VIEWS_SQL).rows}
        found: dict[str, str] = {}
        tables: list[str] = []
        for relation in relations:
            if relation in views:
                found[relation] = f"v{views[relation]}.{columns.get(relation, '')}"
            elif relation in columns:
                tables.append(relation)
        # tables whose size DuckDB estimates small enough are counted and hashed in one
        # scan, batches on several connections at once; the others are counted first (the
        # count decides: contents or layout)
        sizes = {f"{r[0]}.{r[1]}": r[2] for r in self.query(_SIZES_SQL).rows}
        few = [t for t in tables if _at_most(sizes.get(t), CONTENT_HASH_ROWS)]
        counts: dict[str, int] = {}
        for table, count, content in self._counted(few):
            counts[table] = count
            if count <= CONTENT_HASH_ROWS:
                found[table] = f"t{count}.{columns[table]}.c{content}"
        checkpointed = False
        for batch in _batches([(t,) for t in tables if t not in found], 200):
            names = [str(t) for (t,) in batch]
            uncounted = [t for t in names if t not in counts]
            if uncounted:
                sql = " UNION ALL ".join(_COUNT_SQL.format(table=_quoted(t)) for t in uncounted)
                counts.update({table: count for table, count in self.query(sql, uncounted).rows})
            small = [t for t in names if counts[t] <= CONTENT_HASH_ROWS]
            large = [t for t in names if counts[t] > CONTENT_HASH_ROWS]
            if small:  # hashed whole: exact, and cheaper than their layout
                sql = " UNION ALL ".join(_CONTENT_SQL.format(table=_quoted(t)) for t in small)
                for table, content in self.query(sql, small).rows:
                    found[table] = f"t{counts[table]}.{columns[table]}.c{content}"
            if large:
                if not checkpointed:
                    self.execute("CHECKPOINT")
                    checkpointed = True
                sql = " UNION ALL ".join(_LAYOUT_SQL for _ in large)
                params = [p for t in large for p in (t, _quoted(t))]
                for table, layout in self.query(sql, params).rows:
                    found[table] = f"t{counts[table]}.{columns[table]}.{layout}"
        return found

    def _counted(self, tables: Sequence[str]) -> list[tuple[Any, ...]]:
        """(table, count, hash of the contents) of each table, in batches of 200 tables
        run on as many connections as there are cores: a batch of small tables costs
        DuckDB a plan per table, which one connection does one at a time."""
        batches = [[str(t) for (t,) in batch] for batch in _batches([(t,) for t in tables], 200)]
        if len(batches) <= 1 or usable_cores() <= 1:
            return [
                row for names in batches for row in self._counted_batch(self._connection, names)
            ]
        mine = threading.local()
        opened: list[duckdb.DuckDBPyConnection] = []

        def run(names: list[str]) -> list[tuple[Any, ...]]:
            cursor = getattr(mine, "cursor", None)
            if cursor is None:
                cursor = mine.cursor = self._connection.cursor()
                opened.append(cursor)
            return self._counted_batch(cursor, names)

        try:
            with ThreadPoolExecutor(min(usable_cores(), len(batches))) as pool:
                return [row for rows in pool.map(run, batches) for row in rows]
        finally:
            for cursor in opened:
                cursor.close()

    def _counted_batch(
        self, connection: duckdb.DuckDBPyConnection, names: list[str]
    ) -> list[tuple[Any, ...]]:
        sql = " UNION ALL ".join(_COUNTED_SQL.format(table=_quoted(t)) for t in names)
        try:
            return [tuple(row) for row in connection.execute(qmark(sql), names).fetchall()]
        except duckdb.Error as exc:
            self._record_error(exc, sql)
            raise


def _at_most(size: int | None, limit: int) -> bool:
    """Whether an estimated size is known, and not above ``limit`` (an empty table's is 0)."""
    return size is not None and size <= limit


def _batches(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _retarget_index(
    create_sql: str, schema: str, table: str, new_table: str, limit: int | None
) -> exp.Expr:
    """An index's CREATE statement pointed at ``new_table`` (renamed if dbluigi named it)."""
    create = sqlglot.parse_one(create_sql, read="duckdb")
    index = create.this
    columns = tuple(ordered.this.name for ordered in index.args["params"].args.get("columns") or [])
    unique = bool(create.args.get("unique"))
    if index.this.name == index_name(table, columns, unique=unique, limit=limit):
        index.set(
            "this",
            ident(index_name(new_table, columns, unique=unique, limit=limit)),
        )
    index.set("table", table_expr(schema, new_table))
    return create
