"""The connection protocol every source engine implements, and the parts they share.

``SourceConnection`` is one read-only session on a source database: ``describe``
reads the catalog once and gives the columns to copy with the target type each maps
to (``SourceColumn``); a missing table, a missing key or watermark column, or a column
type with no mapping is a ``config`` failure that names it. ``copy_csv`` streams the
rows as CSV into a binary file (a named pipe the target is reading); nothing holds
more than a batch of rows. ``query`` runs one statement (a version query) and refuses
several. Each engine (``postgres.py``, ``mysql.py``) provides the catalog query, the
read-only transaction and the streaming statement; dbluigi itself only sends the
SELECTs it builds here and version queries checked to be one query.

``transient`` says whether an error of the engine's driver may pass if tried again (a
deadlock, a lock wait timeout, a lost connection); ``reading`` marks such an error so
the target's ``Session.transient`` sees it and ``-- retries:`` tries the copy again.

``change_versions`` gives full copies that declare no version query their default
version: a string that changes whenever the table's data may have changed (MariaDB: see
``mysql.py``), or ``NoVersion`` saying why the engine cannot tell now (PostgreSQL
always: see ``postgres.py``), and the table is then copied again.

The CSV both ends agree on: comma separated, every text value quoted with ``"``
(doubled inside), NULL an unquoted empty field, an empty string ``""``, timestamps with
a time zone in UTC with an offset, one row per line (newlines stay inside quotes).

Types map to the portable types of ``dbluigi.targets``; column names are lowercased.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from dbluigi.configfile import CONFIG_FILE
from dbluigi.errors import DbluigiError, FailureClass, TaskError
from dbluigi.lazy import exp, sqlglot
from dbluigi.sources.config import SourceTable
from dbluigi.suggest import close_matches, did_you_mean
from dbluigi.targets.base import QueryResult, ident, literal

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


NO_SIGNAL = "source has no version signal: copied every build"


@dataclass(frozen=True)
class NoVersion:
    """Why a source cannot give a table's version now; the table is copied again, and
    ``reason`` is what ``plan`` says."""

    reason: str = NO_SIGNAL


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
    def close(self) -> None:
        """Close the session; a statement still streaming is abandoned."""

    def transient(self, exc: BaseException) -> bool:
        """Whether this error of the engine's driver may pass if tried again."""
        return False

    def _literal(self, value: Any) -> exp.Expression:
        """A watermark value as a SQL literal (an engine may first convert it)."""
        return literal(value)

    def change_versions(self, tables: Sequence[SourceTable]) -> dict[str, str | NoVersion | None]:
        """For each table (by relation), what a full copy without a version query compares
        between builds: a string that differs whenever a change may have been committed
        since it was last read (a false change costs a copy; a missed one would leave the
        copy stale), NoVersion, or None when the table cannot be read (its task says why).
        An engine with a signal it can trust overrides this."""
        return {table.relation: NoVersion() for table in tables}

    # -- shared -----------------------------------------------------------------------

    def __enter__(self) -> SourceConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Raise a transient driver error raised inside as a ``runtime`` TaskError marked
        ``transient`` (the target cannot tell one of this engine's errors); others pass
        as they are."""
        try:
            yield
        except DbluigiError:
            raise
        except Exception as exc:
            if not self.transient(exc):
                raise
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise TaskError(
                f"source {self.source}: {reason}", failure_class="runtime", transient=True
            ) from exc

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
            close = close_matches(table.table, self._tables(), n=3, cutoff=0.5)
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
                        hint=did_you_mean(name, [n for n, _, _ in found]),
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
        select = source_select(table, [self._column_expression(c) for c in columns], bound)
        return self._stream_sql(select)

    def _unreachable(self, exc: BaseException, password: str | None) -> TaskError:
        """A connection failure, its password masked should the driver repeat it."""
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if password:
            reason = reason.replace(password, "***")
        return self._error(
            f"cannot connect to source {self.source} ({self.display_url}): {reason}",
            failure_class="runtime",
            hint=_CONNECT_HINT.format(source=self.source),
            transient=self.transient(exc),
        )

    def _error(
        self,
        message: str,
        *,
        failure_class: FailureClass,
        hint: str | None = None,
        transient: bool = False,
    ) -> TaskError:
        return TaskError(
            message,
            failure_class=failure_class,
            path=CONFIG_FILE,
            line=self.line,
            hint=hint,
            transient=transient,
        )

    def _table_error(
        self,
        table: SourceTable,
        message: str,
        *,
        failure_class: FailureClass,
        hint: str | None = None,
    ) -> TaskError:
        return TaskError(
            message, failure_class=failure_class, path=CONFIG_FILE, line=table.line, hint=hint
        )


def source_table(table: SourceTable) -> exp.Table:
    """The table in the source, quoted: ``"orders"`` or ``"sales"."orders"``."""
    schema, _, name = table.table.rpartition(".")
    return exp.Table(this=ident(name), db=ident(schema) if schema else None)


def source_select(
    table: SourceTable, expressions: Sequence[exp.Expr], since: exp.Expr | None
) -> exp.Select:
    """SELECT expressions FROM the table WHERE (its where) AND watermark >= since."""
    select = exp.select(*expressions).from_(source_table(table))
    if table.where is not None:
        condition = exp.maybe_parse(table.where, into=exp.Condition, dialect=table.dialect)
        select = select.where(exp.Paren(this=condition))
    if since is not None and table.watermark is not None:
        select = select.where(exp.GTE(this=exp.column(ident(table.watermark)), expression=since))
    return select


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
