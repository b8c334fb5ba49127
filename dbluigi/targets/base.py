"""The one adapter interface between dbluigi and a target database.

Callers never branch on dialect names: everything that differs between PostgreSQL
and DuckDB (how a table is swapped in, how views that depend on it survive, how a
CSV is bulk-loaded, how an error is classified) sits behind ``Target`` and
``Session``. This module holds the interface, the small value types passed across
it, and the parts both engines share; ``postgres.py`` and ``duckdb.py`` hold the
rest.

Identifiers are always quoted (exact names); a query body handed to
``create_table_as`` or ``replace_view`` is the user's SQL and is passed to the
database verbatim, so its meaning never depends on a sqlglot round trip.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Protocol, TypeVar, runtime_checkable

from dbluigi.errors import DbluigiError, FailureClass, TaskError
from dbluigi.lazy import exp
from dbluigi.names import index_name

_R = TypeVar("_R")

PORTABLE_TYPES = (
    "bigint",
    "numeric",
    "double",
    "date",
    "timestamp",
    "timestamptz",
    "boolean",
    "text",
    "json",
)
"""Column types a seed, a load or a ``Column`` may use; each target maps them to its own.
A ``Column`` may also be ``numeric(p,s)``: a decimal of that precision and scale."""

_NUMERIC_RE = re.compile(r"numeric\(\s*(\d+)\s*,\s*(\d+)\s*\)")

_LINE_RE = re.compile(r"^LINE (\d+):", re.MULTILINE)


@dataclass(frozen=True)
class QueryResult:
    """The rows a query returned, with its column names."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Column:
    """A column to create: a name and one of ``PORTABLE_TYPES``."""

    name: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in PORTABLE_TYPES and numeric_precision(self.type) is None:
            raise ValueError(
                f"column {self.name!r}: unknown type {self.type!r}; "
                f"use one of {', '.join(PORTABLE_TYPES)} or numeric(p,s)"
            )


def numeric_precision(type_name: str) -> tuple[int, int] | None:
    """(precision, scale) of a ``numeric(p,s)`` type (1 <= p, 0 <= s <= p), else None."""
    match = _NUMERIC_RE.fullmatch(type_name.strip().lower())
    if match is None:
        return None
    precision, scale = int(match.group(1)), int(match.group(2))
    return (precision, scale) if precision >= 1 and scale <= precision else None


@dataclass(frozen=True)
class Catalog:
    """What exists in the target, read once per run."""

    kinds: Mapping[str, str]  # "schema.name" -> "table" | "view"
    viewed: frozenset[str] = frozenset()  # relations some view reads (PostgreSQL binds those)


@dataclass(frozen=True)
class SwapHint:
    """What the caller knows about the relation a swap replaces, from the run's catalog."""

    old_kind: str | None  # "table", "view", or None when there was none
    read_by_views: bool


@runtime_checkable
class IndexLike(Protocol):
    """What a target needs from an ``-- index:`` header (``headers.IndexSpec``)."""

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def unique(self) -> bool: ...


@dataclass(frozen=True)
class _KeyIndex:
    """The unique index an upsert's ``ON CONFLICT`` needs on the key columns."""

    columns: tuple[str, ...]
    unique: bool = True


@dataclass(frozen=True)
class DependentView:
    """A view captured before its base relation is replaced, to be recreated after."""

    schema: str
    name: str
    materialized: bool
    definition: str
    extra_sql: tuple[str, ...] = ()  # e.g. the indexes of a materialized view


_PUBLISHED = "dbluigi_published"  # the alias of the table an upsert writes into


def table_expr(schema: str, name: str) -> exp.Table:
    """A quoted ``schema.name`` table expression."""
    return exp.Table(
        this=exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True)
    )


def quote_name(*parts: str) -> str:
    """``"schema"."name"``: quoted as PostgreSQL and DuckDB both write identifiers (what
    sqlglot generates for ``table_expr``, without building and generating a tree; the
    statements every model runs are written with it)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def sql_string(value: str) -> str:
    """``'it''s'``: a string literal as PostgreSQL and DuckDB both write it."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> exp.Identifier:
    """A quoted identifier."""
    return exp.to_identifier(name, quoted=True)


def literal(value: Any) -> exp.Expression:
    """A SQL literal of a value read back from a database (a watermark); NULL for None."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float | decimal.Decimal):
        return exp.Literal.number(value)
    if isinstance(value, dt.datetime):
        type_ = "timestamptz" if value.tzinfo is not None else "timestamp"
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), type_)
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), "date")
    return exp.Literal.string(str(value))


def find_line(statement: str, sql: str, *, position: int | None, line: int | None) -> int | None:
    """Map an error location in ``statement`` (what ran) to a 1-based line of ``sql``.

    ``position`` is a 1-based character offset, ``line`` a 1-based line number, both
    relative to ``statement``. ``sql`` is usually embedded in ``statement`` (wrapped in
    ``CREATE TABLE ... AS`` or ``DECLARE ... FOR``); a location outside it gives None.
    """
    base = _embedded_at(statement, sql)
    if base is None:
        return None
    if position is not None:
        offset = position - 1
    elif line is not None:
        lines = statement.split("\n")
        if not 1 <= line <= len(lines):
            return None
        offset = max(sum(len(part) + 1 for part in lines[: line - 1]), base)
    else:
        return None
    offset -= base
    if not 0 <= offset <= len(sql):
        return None
    return sql.count("\n", 0, offset) + 1


def _embedded_at(statement: str, sql: str) -> int | None:
    """Offset in ``statement`` where ``sql`` starts, allowing for stripped ends."""
    for candidate in (sql, sql.strip(), sql.strip().rstrip(";").rstrip()):
        if not candidate:
            continue
        at = statement.find(candidate)
        if at >= 0:
            return at - sql.find(candidate)
    return None


def line_from_message(message: str) -> int | None:
    """The ``LINE n:`` both PostgreSQL and DuckDB put in their error messages."""
    match = _LINE_RE.search(message)
    return int(match.group(1)) if match else None


def strip_statement_end(sql: str) -> str:
    """The query without trailing blanks and semicolons, so it can be wrapped."""
    return sql.rstrip().rstrip(";").rstrip()


@dataclass
class Deadline:
    """What ``Session.statement_timeout`` yields: whether the time ran out."""

    seconds: float
    expired: bool = False


NO_SIGNAL = "none: "  # a version that says there is no change signal, and why


class Target(ABC):
    """A database dbluigi builds into; ``connect()`` opens a ``Session``."""

    name: ClassVar[str]
    """``"duckdb"`` or ``"postgresql"``."""
    dialect: ClassVar[str]
    """The sqlglot dialect: ``"duckdb"`` or ``"postgres"``."""
    supports_concurrent_writers: ClassVar[bool]
    """False for DuckDB (one writer process per file), True for PostgreSQL."""
    estimates_cost: ClassVar[bool] = False
    """True when ``Session.explain_cost`` gives a planner estimate (PostgreSQL)."""
    max_numeric_precision: ClassVar[int] = 1000
    """The most digits a ``numeric(p,s)`` column may have here (DuckDB: 38)."""
    max_identifier_bytes: ClassVar[int | None]
    """The longest name the database keeps whole, in bytes of UTF-8 (PostgreSQL: 63);
    None when it has no limit. Every name dbluigi derives fits it (``dbluigi.names``)."""
    reserved_schemas: ClassVar[frozenset[str]] = frozenset()
    """Schema names a two-part name cannot reach here (DuckDB's own catalogs)."""

    @property
    @abstractmethod
    def display_url(self) -> str:
        """The URL with its password masked: safe to print, log and store."""

    @abstractmethod
    def connect(self) -> Session:
        """A new session; connection problems raise ``TargetError`` with the masked URL."""

    @property
    def identity(self) -> str:
        """What tells this database from any other in this process (two spellings of one
        database's URL may differ; a file's path is resolved)."""
        return self.display_url

    @functools.cached_property
    def resource(self) -> str:
        """The luigi resource every task on this target holds while it runs, so luigi's
        ``[resources]`` can cap concurrent queries on it across all workers, e.g.
        ``dbluigi_127_0_0_1_5432_warehouse`` (host, port and database, as an identifier)."""
        from dbluigi.urls import parse_url

        url = parse_url(self.display_url)
        parts = [str(p) for p in (url.host, url.port, url.database) if p]
        return "dbluigi_" + re.sub(r"[^A-Za-z0-9]+", "_", "_".join(parts)).strip("_").lower()

    @property
    def versions_after_run(self) -> bool:
        """Whether the versions of published relations are read at the end of the run."""
        return False

    def exists(self) -> bool:
        """Whether there is a database to read: commands that only read (``docs``,
        ``lineage``, ``test``) never connect to one that is not there, which would create
        it (a DuckDB file)."""
        return True

    def written_elsewhere(self) -> bool:
        """Whether relations may have changed since dbluigi last looked (always, but on a
        DuckDB file no other process wrote since dbluigi closed it)."""
        return True

    def acknowledge_writes(self) -> None:
        """Every version was compared with what others wrote (``written_elsewhere``)."""
        return None


MIN_DEFAULT_WORKERS = 4
MAX_DEFAULT_WORKERS = 16
WORKERS_PER_CORE = 4


def machine_workers() -> int:
    """How many models to build at once on a target that takes concurrent writers, when
    nothing says: four per core this process may run on, at least 4 and at most 16.

    A model's time is mostly waits (round trips, the database's fsyncs at commit and at
    table creation), which other sessions overlap even on one or two cores: on 2 cores, 8
    sessions build small models faster than 4, and as fast as 12. dbluigi's own Python runs
    on one core, so past a dozen or so sessions small models wait for it, and large ones
    for the database's cores, which ``--workers`` can ask for."""
    cores = usable_cores()
    return max(MIN_DEFAULT_WORKERS, min(MAX_DEFAULT_WORKERS, WORKERS_PER_CORE * cores))


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# The bytes a literal CSV file holds none of (``Session.load_csv``): a quote, a
# backslash, a carriage return, NUL.
NOT_LITERAL = (b'"', b"\\", b"\r", b"\0")


def is_literal(stream: BinaryIO) -> bool:
    """Whether the CSV file open in ``stream`` is literal: it holds none of
    ``NOT_LITERAL`` from where the stream is. Searches to the end, then goes back to
    where the stream was, so a load sends the bytes that were searched. About 0.2 ms a
    megabyte from the page cache; a file with quotes usually stops at its first block.
    The typing pass of a large file finds the same as it reads (``SeedTable.literal``)."""
    start = stream.tell()
    try:
        while block := stream.read(1 << 20):
            if any(byte in block for byte in NOT_LITERAL):
                return False
        return True
    finally:
        stream.seek(start)


class Session(ABC):
    """One connection to a target. Autocommits outside ``transaction()``.

    Statements use ``%s`` placeholders on every target. Methods documented as running
    "inside the caller's transaction" open one of their own when none is open.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self._in_transaction = False
        self._failed_in_transaction = False
        self._on_commit: list[Callable[[], None]] = []
        self._last_error: tuple[BaseException, str] | None = None

    # -- primitives each engine provides -------------------------------------------

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run a statement; returns its row count, or -1 when the database gives none."""

    def default_workers(self) -> int:
        """How many models a build runs at once when neither ``--workers`` nor ``[target]
        workers`` says: one, unless the target takes concurrent writers (a target whose
        sessions of one process write at once says so itself)."""
        return machine_workers() if self.target.supports_concurrent_writers else 1

    def execute_batch(self, statements: Sequence[tuple[str, Sequence[Any] | None]]) -> None:
        """Run several statements in order; a target with network round trips sends them as one."""
        for sql, params in statements:
            self.execute(sql, params)

    def defer(self, statements: Sequence[tuple[str, Sequence[Any] | None]]) -> None:
        """Statements whose results nobody reads, inside the open transaction.

        A target with network round trips sends them ahead of the next statement (or
        with the COMMIT), so they cost no round trip of their own; an error they raise
        surfaces there and aborts the transaction as usual. In-process targets run them
        now."""
        self.execute_batch(statements)

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    @abstractmethod
    def query(
        self, sql: str, params: Sequence[Any] | None = None, *, limit: int | None = None
    ) -> QueryResult:
        """Run a query and fetch its rows (at most ``limit`` of them)."""

    @abstractmethod
    def relations(self, schema: str | None = None) -> set[tuple[str, str]]:
        """Every ``(schema, name)`` table and view, optionally of one schema."""

    def catalog(self) -> Catalog:
        """Every relation with its kind, and which ones views read, in one look."""
        kinds = {f"{s}.{n}": self.relation_kind(s, n) or "table" for s, n in self.relations()}
        return Catalog(kinds)

    @abstractmethod
    def relation_kind(self, schema: str, name: str) -> str | None:
        """``"table"``, ``"view"``, or None when no such relation exists."""

    # -- versions of relations (``dbluigi.versions``) -----------------------------------

    def prepare_versions(self) -> None:
        """Set up what ``relation_versions`` needs, once per run (PostgreSQL: the change log)."""
        return None

    def relation_versions(self, relations: Sequence[str], *, track: bool) -> dict[str, str]:
        """The version of each of ``relations`` (``schema.name``) that exists: a string that
        changes with every committed change of its rows, its columns or its identity, or
        ``none: <why>`` where the target has no such signal. ``track`` lets the target set up
        what the signal of a relation needs (PostgreSQL's change trigger)."""
        kinds = self.catalog().kinds
        return {r: f"{NO_SIGNAL}this target has no change signal" for r in relations if r in kinds}

    def input_versions(self, relations: Sequence[str]) -> dict[str, str]:
        """``relation_versions`` of inputs (tracked), with what their rows come from: a
        view's version holds the versions of the tables it reads (through other views), a
        table's those of its partitions or inheritance children (``underlying``). One of
        them without a signal, or not found, leaves the input without one."""
        found = self.relation_versions(relations, track=True)
        parts = self.underlying([r for r, v in found.items() if not v.startswith(NO_SIGNAL)])
        read = self.relation_versions(sorted({p for ps in parts.values() for p in ps}), track=True)
        for relation, under in parts.items():
            versions = []
            for part in under:
                version = read.get(part)
                if version is None or version.startswith(NO_SIGNAL):
                    why = "not found" if version is None else version[len(NO_SIGNAL) :]
                    found[relation] = f"{NO_SIGNAL}it reads {part}: {why}"
                    break
                versions.append(f"{part}={version}")
            else:
                found[relation] += "|" + ";".join(versions)
        return found

    def underlying(self, relations: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """What the rows of each relation come from, when not only itself: the tables a
        view reads, through the views it reads; the partitions of a table."""
        return {}

    def output_version_sql(self, relations: Sequence[str]) -> tuple[str, list[Any]] | None:
        """A SQL expression of the combined version of ``relations`` (``versions.combine``),
        evaluated last in the transaction that publishes them; None when the target reads
        versions of what it published after the run instead (``versions_after_run``)."""
        return None

    @abstractmethod
    def prepare_indexes(self, schema: str, name: str, indexes: Sequence[IndexLike]) -> None:
        """Create indexes on a freshly built table before it is checked and swapped."""

    @abstractmethod
    def load_csv(
        self,
        schema: str,
        name: str,
        path: Path,
        columns: Sequence[Column],
        literal: bool | None = None,
    ) -> int:
        """Create the table and bulk-load a CSV file (header skipped, empty = NULL).
        ``literal``: whether the file holds no quote, backslash, carriage return or NUL
        byte, so that each line is a row and each value the bytes between two commas
        (None: not known; a target that loads such a file faster looks for itself,
        ``is_literal``)."""

    def load_csv_typing(
        self,
        schema: str,
        name: str,
        path: Path,
        guess: Sequence[Column],
        typing: Callable[[], Sequence[Column]],
    ) -> int:
        """``load_csv`` with the column types ``typing()`` works out (it may raise), given a
        ``guess`` of them. A target that can undo a load inside the open transaction loads
        with the guess while ``typing`` runs in another thread, and loads again when the
        types turn out otherwise; this one types first, then loads."""
        return self.load_csv(schema, name, path, typing())

    def _load_while_typing(
        self,
        load: Callable[[], _R],
        typing: Callable[[], Sequence[Column]],
        refused: type[Exception],
    ) -> tuple[_R | None, Exception | None, tuple[Column, ...]]:
        """Run ``load`` here while ``typing`` runs in a thread (the database and DuckDB's
        typing both let go of the GIL): what ``load`` returned, the error of type
        ``refused`` it raised instead (maybe a value the guess did not expect), and the
        types. A timeout or a lost connection is raised at once, without waiting for the
        typing: the task is over."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="dbluigi-typing")
        try:
            typed = pool.submit(typing)
            try:
                result = load()
            except refused as exc:
                if self.classify(exc) == "timeout" or self.connection_lost:
                    raise
                return None, exc, tuple(typed.result())
            return result, None, tuple(typed.result())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    @abstractmethod
    def load_rows(
        self, schema: str, name: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]
    ) -> int:
        """Create the table and bulk-insert rows of Python values; returns the row count."""

    def load_csv_stream(self, schema: str, name: str, columns: Sequence[Column], path: Path) -> int:
        """Create the table and bulk-load headerless CSV read from ``path`` as it is written
        (typically a named pipe another thread writes; see ``dbluigi.kinds.extract``). An unquoted
        empty field is NULL, a quoted one (``""``) an empty string. Returns the row count."""
        raise NotImplementedError(f"the {self.target.name} target cannot load a CSV stream")

    @abstractmethod
    def classify(self, exc: BaseException) -> FailureClass:
        """The failure class (``syntax``, ``timeout`` or ``runtime``) of a database error."""

    def transient(self, exc: BaseException) -> bool:
        """Whether trying again may succeed: the connection was lost, or ``exc`` or an
        error it was raised from is one the engine calls transient (``_transient``: a
        deadlock, a serialization failure, a lock timeout...) or one an adapter marked so
        (a source's, see ``DbluigiError.transient``). A data or syntax error is not."""
        if self.connection_lost:
            return True
        seen: set[int] = set()
        link: BaseException | None = exc
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            if (isinstance(link, DbluigiError) and link.transient) or self._transient(link):
                return True
            link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
        return False

    def _transient(self, exc: BaseException) -> bool:
        """Whether the engine says this error of its own may pass if tried again."""
        return False

    @abstractmethod
    def try_lock(self, key: str) -> bool:
        """Take the run-level lock ``key`` for this session if nobody holds it."""

    @abstractmethod
    def unlock(self, key: str) -> None:
        """Release a lock taken with ``try_lock``."""

    def flush(self) -> None:
        """Send what ``defer`` holds now, so its errors surface here (before something
        outside the database, such as a file rename, depends on it)."""
        return None

    def lock_in_transaction(self, key: str, *, deferred: bool = False) -> None:
        """Wait for the lock ``key`` and hold it until the open transaction ends.

        Serializes work on one model (or one migration) across processes and machines
        sharing the target; a target with one writer process needs nothing. ``deferred``:
        the lock travels with the next statement (see ``defer``), which is the first one
        that runs under it."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Close the connection; a transaction still open is rolled back."""

    @property
    def connection_lost(self) -> bool:
        """True once a statement found the connection gone (a server restart, the session
        terminated, the network cut): nothing more can run on this session. No round trip;
        an in-process target never loses it."""
        return False

    def alive(self) -> bool:
        """Whether the connection still works, asking the server when there is one (a
        round trip: once per run, not per statement)."""
        return not self.connection_lost

    @abstractmethod
    def _data_type(self, portable: str) -> str:
        """The engine's type for a portable type name, as its SQL spells it."""

    def _index_name(self, table: str, columns: Sequence[str], *, unique: bool) -> str:
        """The name dbluigi gives an index of ``table`` on this target (``names.index_name``)."""
        return index_name(table, columns, unique=unique, limit=self.target.max_identifier_bytes)

    @abstractmethod
    def _index_names(self, schema: str, name: str) -> set[str]:
        """Names of the indexes on a table."""

    @abstractmethod
    def _indexes(
        self, schema: str, name: str
    ) -> Sequence[tuple[str, bool, tuple[str | None, ...]]]:
        """(name, unique, columns) of each index on a table; None for an expression."""

    @abstractmethod
    def _rename_relation(self, schema: str, name: str, new_name: str, kind: str) -> None:
        """ALTER ... RENAME, carrying dbluigi-named indexes over to the new name."""

    def _capture_dependents(self, schema: str, name: str) -> list[DependentView]:
        """Views that must be dropped and recreated when ``schema.name`` is replaced.

        Dependency order: a view comes after every view it reads. DuckDB binds views
        by name at query time, so there is nothing to capture there.
        """
        return []

    def _error_position(self, exc: BaseException) -> int | None:
        """The 1-based character position of an error within its statement, if known."""
        return None

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    # -- transactions -----------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """BEGIN on entry; COMMIT on a clean exit, ROLLBACK on an exception.

        Both engines answer COMMIT of a transaction that an earlier (caught) error
        aborted by silently rolling back; this refuses instead, raising ``TaskError``.
        Nesting is a programming error (``RuntimeError``).
        """
        return self._transaction()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._in_transaction:
            raise RuntimeError("a transaction is already open on this session; they do not nest")
        self._begin()
        self._in_transaction = True
        self._failed_in_transaction = False
        self._on_commit.clear()
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self._on_commit.clear()
            with suppress(Exception):  # the connection may be gone; the first error matters
                self._rollback()
            raise
        self._in_transaction = False
        done, self._on_commit = self._on_commit, []
        if self._transaction_aborted():
            self._rollback()
            raise TaskError(
                "the transaction was aborted by an earlier database error and was rolled back",
                failure_class="runtime",
                hint="an error inside the transaction was caught and ignored; let it propagate",
            )
        try:
            self._commit()  # deferred statements travel with it, and may fail there
        except BaseException:
            with suppress(Exception):  # leave the session usable for the next transaction
                self._rollback()
            raise
        for callback in done:
            callback()

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction (``transaction()``) is open on this session."""
        return self._in_transaction

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the open transaction commits (at once outside one); a
        transaction that rolls back forgets it."""
        if self._in_transaction:
            self._on_commit.append(callback)
        else:
            callback()

    def _transaction_aborted(self) -> bool:
        return self._failed_in_transaction

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """Join the caller's transaction, or open one for this block."""
        if self._in_transaction:
            yield
        else:
            with self.transaction():
                yield

    def _record_error(self, exc: BaseException, statement: str) -> None:
        self._last_error = (exc, statement)
        if self._in_transaction:
            self._failed_in_transaction = True

    # -- shared DDL ---------------------------------------------------------------

    def _sql(self, expression: exp.Expr) -> str:
        return expression.sql(dialect=self.target.dialect)

    def ensure_schema(self, schema: str) -> None:
        """CREATE SCHEMA IF NOT EXISTS."""
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_name(schema)}")

    def drop_relation(self, schema: str, name: str) -> None:
        """Drop the table or view ``schema.name`` if it exists (not its dependents)."""
        kind = self.relation_kind(schema, name)
        if kind is None:
            return
        self.execute(f"DROP {'VIEW' if kind == 'view' else 'TABLE'} {quote_name(schema, name)}")

    def create_table_as(self, schema: str, name: str, query_sql: str) -> int:
        """CREATE TABLE schema.name AS <query_sql>; returns the new table's row count."""
        target = quote_name(schema, name)
        count = self.execute(f"CREATE TABLE {target} AS\n{strip_statement_end(query_sql)}\n")
        return count if count >= 0 else self.row_count(schema, name)

    def create_table_as_explained(
        self, schema: str, name: str, query_sql: str
    ) -> tuple[int, float | None]:
        """``create_table_as``, and the query's estimated cost where the target gives one
        (as ``explain_cost`` would, taken from the same statement)."""
        return self.create_table_as(schema, name, query_sql), None

    def create_table(self, schema: str, name: str, columns: Sequence[Column]) -> None:
        """CREATE TABLE with portable column types (written without sqlglot: a seed or a
        load runs without importing it)."""
        if not columns:
            raise ValueError(f"{schema}.{name}: a table needs at least one column")
        definitions = ", ".join(
            f"{quote_name(column.name)} {self._column_type(column)}" for column in columns
        )
        self.execute(f"CREATE TABLE {quote_name(schema, name)} ({definitions})")

    def _column_type(self, column: Column) -> str:
        """The engine's type of a column, as its SQL spells it: a portable type, or
        ``numeric(p,s)``."""
        params = numeric_precision(column.type)
        if params is None:
            return self._data_type(column.type)
        precision, scale = params
        if precision > self.target.max_numeric_precision:
            raise ValueError(
                f"column {column.name!r} is {column.type}, and {self.target.name} decimals "
                f"hold at most {self.target.max_numeric_precision} digits"
            )
        return f"DECIMAL({precision}, {scale})"

    def row_count(self, schema: str, name: str) -> int:
        """SELECT count(*) of a relation."""
        select = exp.select(exp.func("count", exp.Star())).from_(table_expr(schema, name))
        return int(self.query(self._sql(select)).rows[0][0])

    def columns(self, schema: str, name: str) -> tuple[str, ...]:
        """The column names of a relation, in order."""
        select = exp.select(exp.Star()).from_(table_expr(schema, name)).limit(0)
        return self.query(self._sql(select)).columns

    def column_types(self, schemas: Sequence[str]) -> dict[str, tuple[tuple[str, str], ...]]:
        """The columns of every relation in ``schemas`` with their types, in order, as
        ``{"schema.name": ((column, type), ...)}``: one catalog query."""
        if not schemas:
            return {}
        marks = ", ".join(["%s"] * len(schemas))
        rows = self.query(self._column_types_sql(marks), list(schemas)).rows
        found: dict[str, list[tuple[str, str]]] = {}
        for schema, name, column, data_type in rows:
            found.setdefault(f"{schema}.{name}", []).append((str(column), str(data_type)))
        return {relation: tuple(columns) for relation, columns in found.items()}

    def _column_types_sql(self, marks: str) -> str:
        """The catalog query of ``column_types``: (schema, table, column, type) of the
        schemas bound to ``marks``, in column order."""
        return (
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns where table_catalog = current_database() "
            f"and table_schema in ({marks}) order by table_schema, table_name, ordinal_position"
        )

    # -- incremental models and dumps ---------------------------------------------------

    def ensure_indexes(self, schema: str, name: str, indexes: Sequence[IndexLike]) -> None:
        """Create those of ``indexes`` a published table does not have yet."""
        self._create_indexes(schema, name, indexes, skip_existing=True)

    def unique_keys(self, schema: str, name: str) -> list[tuple[str, ...]]:
        """The columns of each unique index dbluigi created on a table (named by
        ``index_name``; hand-made and expression indexes are left out)."""
        keys = []
        for index, unique, columns in self._indexes(schema, name):
            names = tuple(c for c in columns if c is not None)
            if (
                unique
                and len(names) == len(columns)
                and index == self._index_name(name, names, unique=True)
            ):
                keys.append(names)
        return keys

    def upsert(
        self,
        schema: str,
        name: str,
        from_name: str,
        unique_key: Sequence[str],
        columns: Sequence[str] | None = None,
    ) -> int:
        """Insert the rows of ``from_name`` into ``name``, replacing the rows with the same key.

        Runs inside the caller's transaction: ``INSERT ... ON CONFLICT (key) DO UPDATE``
        (PostgreSQL and DuckDB read it alike), after creating the unique index on the key
        that the conflict needs when the table lacks it. The columns are those of
        ``from_name`` (``columns``, when the caller has read them); returns the number of
        rows inserted or changed: a row whose values are all as published is left alone
        and not counted (compared as text, which every type has, ``json`` included)."""
        with self._atomic():
            self.ensure_indexes(schema, name, [_KeyIndex(tuple(unique_key))])
            if columns is None:
                columns = self.columns(schema, from_name)
            keys = {k.lower() for k in unique_key}
            others = [c for c in columns if c.lower() not in keys]
            published, excluded = exp.to_identifier(_PUBLISHED), exp.to_identifier("excluded")

            def row(table: exp.Identifier) -> exp.Cast:
                values = exp.Tuple(expressions=[exp.column(ident(c), table=table) for c in others])
                return exp.cast(values, exp.DataType.build("text"))

            conflict = exp.OnConflict(
                conflict_keys=[exp.Ordered(this=exp.column(ident(k))) for k in unique_key],
                action=exp.var("DO UPDATE" if others else "DO NOTHING"),
                expressions=[
                    exp.EQ(
                        this=exp.column(ident(c)),
                        expression=exp.column(ident(c), table=excluded.copy()),
                    )
                    for c in others
                ],
                where=exp.Where(this=exp.NullSafeNEQ(this=row(published), expression=row(excluded)))
                if others
                else None,
            )
            target = table_expr(schema, name)
            target.set("alias", exp.TableAlias(this=published.copy()))
            insert = exp.Insert(
                this=exp.Schema(this=target, expressions=[ident(c) for c in columns]),
                expression=exp.select(*(exp.column(ident(c)) for c in columns)).from_(
                    table_expr(schema, from_name)
                ),
                conflict=conflict,
            )
            count = self.execute(self._sql(insert))
            return count if count >= 0 else self.row_count(schema, from_name)

    def copy_out_csv(self, query_sql: str, path: Path) -> int:
        """Stream a query's rows to a CSV file at ``path`` (header row, NULL as an empty
        field), never holding them all in memory; returns the number of rows."""
        raise NotImplementedError(f"the {self.target.name} target cannot write CSV dumps")

    def rename(self, schema: str, name: str, new_name: str) -> None:
        """Rename a table or view, dropping whatever holds ``new_name`` first.

        dbluigi-named indexes follow the table (``a__x_idx`` becomes ``b__x_idx``) so a
        later build of ``a`` can reuse its index names.
        """
        with self._atomic():
            kind = self.relation_kind(schema, name)
            if kind is None:
                raise TaskError(
                    f"cannot rename {schema}.{name} to {new_name}: it does not exist",
                    failure_class="runtime",
                )
            self.drop_relation(schema, new_name)
            self._rename_relation(schema, name, new_name, kind)

    def _create_indexes(
        self, schema: str, name: str, indexes: Sequence[IndexLike], *, skip_existing: bool
    ) -> None:
        existing = self._index_names(schema, name) if skip_existing else set()
        for spec in indexes:
            index = self._index_name(name, spec.columns, unique=spec.unique)
            if index in existing:
                continue
            create = exp.Create(
                this=exp.Index(
                    this=ident(index),
                    table=table_expr(schema, name),
                    params=exp.IndexParameters(
                        columns=[exp.Ordered(this=exp.column(ident(c))) for c in spec.columns]
                    ),
                ),
                kind="INDEX",
                unique=spec.unique,
            )
            self.execute(self._sql(create))

    # -- publishing -----------------------------------------------------------------

    def swap(
        self,
        schema: str,
        new_name: str,
        name: str,
        indexes: Sequence[IndexLike],
        views: Mapping[tuple[str, str], str] | None = None,
        hint: SwapHint | None = None,
    ) -> None:
        """Replace ``schema.name`` by the table ``schema.new_name``, atomically.

        Runs inside the caller's transaction. The old relation may be missing (first
        build) or a view (the model's kind changed). Views reading the old relation,
        and views of those views, are recreated on the new table; their grants, owner,
        comments and options are not carried over. Indexes end up named after
        ``name``; any of ``indexes`` missing on the new table is created here.
        ``views`` maps (schema, name) of views the caller defines to their current
        query: such a view is recreated from it rather than from its old definition,
        so a view edited together with the table it reads follows the new columns.
        """
        with self._atomic():
            if self.relation_kind(schema, new_name) != "table":
                raise TaskError(
                    f"cannot publish {schema}.{name}: the new table {schema}.{new_name} "
                    "does not exist",
                    failure_class="runtime",
                )
            dependents = self._capture_dependents(schema, name)
            self._drop_dependents(dependents)
            self.drop_relation(schema, name)
            self._rename_relation(schema, new_name, name, "table")
            self._create_indexes(schema, name, indexes, skip_existing=True)
            self._restore_dependents(dependents, f"{schema}.{name}", views or {})

    def replace_view(
        self,
        schema: str,
        name: str,
        query_sql: str,
        views: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        """Create or replace the view ``schema.name`` (replacing a table of that name too).

        Runs inside the caller's transaction. The view is dropped and created, so its
        columns may change; dependent views are recreated as in ``swap``.
        """
        with self._atomic():
            dependents = self._capture_dependents(schema, name)
            self._drop_dependents(dependents)
            self.drop_relation(schema, name)
            target = self._sql(table_expr(schema, name))
            self.execute(f"CREATE VIEW {target} AS\n{strip_statement_end(query_sql)}\n")
            self._restore_dependents(dependents, f"{schema}.{name}", views or {})

    def _drop_dependents(self, dependents: Sequence[DependentView]) -> None:
        # Readers first; without CASCADE, so anything else that depends on the old
        # relation (a foreign key, a function) stops the swap instead of vanishing.
        for view in reversed(dependents):
            drop = exp.Drop(
                tables=[table_expr(view.schema, view.name)],
                kind="VIEW",
                materialized=view.materialized,
            )
            self.execute(self._sql(drop))

    def _restore_dependents(
        self,
        dependents: Sequence[DependentView],
        replaced: str,
        views: Mapping[tuple[str, str], str],
    ) -> None:
        for view in dependents:
            target = self._sql(table_expr(view.schema, view.name))
            kind = "MATERIALIZED VIEW" if view.materialized else "VIEW"
            current = views.get((view.schema, view.name))
            definition = (
                strip_statement_end(current)
                if current and not view.materialized
                else view.definition
            )
            try:
                self.execute(f"CREATE {kind} {target} AS\n{definition}\n")
                for statement in view.extra_sql:
                    self.execute(statement)
            except Exception as exc:
                if isinstance(exc, TaskError):
                    raise
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise TaskError(
                    f"the view {view.schema}.{view.name}, which reads {replaced}, cannot be "
                    f"recreated on the new {replaced}: {first_line}",
                    failure_class="runtime",
                    hint=f"change or drop {view.schema}.{view.name}, or keep the columns it "
                    "reads; the published relation was left as it was",
                ) from exc

    # -- guards -------------------------------------------------------------------------

    def explain_cost(self, sql: str) -> float | None:
        """The planner's estimated total cost of a query, without running it.

        None when the engine has no estimate (``Target.estimates_cost`` is False).
        """
        return None

    @contextmanager
    def statement_timeout(self, seconds: float) -> Iterator[Deadline]:
        """Stop the statements run in this block once ``seconds`` have passed in all.

        Call it inside ``transaction()``. A timer interrupts the statement running
        when the time is up (and the engine may bound each statement too, as
        PostgreSQL's ``statement_timeout`` does); the interrupted statement raises an
        error that ``classify`` calls ``timeout``. An interrupt that lands between
        statements is lost, so callers check ``Deadline.expired`` when the block ends.
        """
        deadline = Deadline(seconds)
        lock = threading.Lock()
        active = [True]

        def expire() -> None:
            with lock:  # never interrupt a statement after the block has ended
                if active[0]:
                    deadline.expired = True
                    self._interrupt()

        self._limit_statements(seconds)
        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            yield deadline
        finally:
            with lock:
                active[0] = False
            timer.cancel()

    @abstractmethod
    def _limit_statements(self, seconds: float) -> None:
        """Have the server stop any one statement of the open transaction after ``seconds``."""

    @abstractmethod
    def _interrupt(self) -> None:
        """Interrupt the statement running on this session; called from another thread."""

    # -- errors -------------------------------------------------------------------------

    def error_line(self, exc: BaseException, sql: str) -> int | None:
        """Best-effort 1-based line within ``sql`` where the database located the error."""
        statement = sql
        if self._last_error is not None and self._last_error[0] is exc:
            statement = self._last_error[1]
        position = self._error_position(exc)
        line = line_from_message(str(exc))
        if position is None and line is None:
            return None
        return find_line(statement, sql, position=position, line=line)
