"""PostgreSQL as a target, through psycopg2.

Sessions autocommit outside ``transaction()`` (BEGIN/COMMIT are sent as statements),
so DDL and DML are transactional exactly where dbluigi asks. Bulk loads use COPY
FROM STDIN, streamed. Replacing a relation that views read captures those views
(recursively, with their schema) from the catalog, drops them, and recreates them in
dependency order on the new relation: PostgreSQL views bind to a table's identity,
not its name, and a view blocks ``DROP TABLE`` without CASCADE.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras

import dbluigi.targets.pgchanges as pgchanges
from dbluigi.errors import FailureClass, TargetError, TaskError
from dbluigi.lazy import exp, sqlglot, tokens
from dbluigi.relation import Relation
from dbluigi.targets.base import (
    Catalog,
    Column,
    DependentView,
    IndexLike,
    QueryResult,
    Session,
    SwapHint,
    Target,
    ident,
    is_literal,
    quote_name,
    strip_statement_end,
    table_expr,
)
from dbluigi.urls import libpq_dsn, mask_url, parse_url

_TYPES = {
    "bigint": "BIGINT",
    "numeric": "NUMERIC",
    "double": "DOUBLE PRECISION",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "boolean": "BOOLEAN",
    "text": "TEXT",
    "json": "JSONB",
}

# SQLSTATEs of a failure that may pass if tried again: serialization failure, deadlock,
# lock not available (lock_timeout), admin or crash shutdown, cannot connect now, too many
# connections; and class 08, connection exceptions
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})


def transient_sqlstate(code: str | None) -> bool:
    """Whether a PostgreSQL error of SQLSTATE ``code`` may pass if tried again."""
    return code is not None and (code in TRANSIENT_SQLSTATES or code.startswith("08"))


_RELKINDS = {"r": "table", "p": "table", "f": "table", "v": "view", "m": "view"}

_CURSOR_NAME = "dbluigi_query"
# Every advisory lock (run, model, migration, schemas) is keyed by this 64-bit hash of
# its name (PostgreSQL 11+): with 32-bit hashtext, two of some 77,000 names collide
# even odds, and a collision makes unrelated builds wait on each other.
ADVISORY_KEY_SQL = "hashtextextended(%s, 0)"

_RELATIONS_SQL = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
"""

# Every relation with its kind, and whether a view reads it.
_CATALOG_SQL = """
SELECT n.nspname, c.relname, c.relkind, EXISTS (
    SELECT 1 FROM pg_catalog.pg_depend AS d
    JOIN pg_catalog.pg_rewrite AS r ON r.oid = d.objid
    WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = c.oid
      AND d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.ev_class <> c.oid)
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
"""

# Every view or materialized view whose rewrite rule references the relation, and
# their readers in turn; "depth" is the longest path, so sorting by it puts a view
# after every captured view it reads.
_DEPENDENTS_SQL = """
WITH RECURSIVE base AS (
    SELECT c.oid
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relname = %s
), deps(oid, depth) AS (
    SELECT DISTINCT r.ev_class, 1
    FROM base
    JOIN pg_catalog.pg_depend AS d
      ON d.refobjid = base.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
     AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    JOIN pg_catalog.pg_rewrite AS r ON r.oid = d.objid
    WHERE r.ev_class <> base.oid
  UNION ALL
    SELECT r.ev_class, deps.depth + 1
    FROM deps
    JOIN pg_catalog.pg_depend AS d
      ON d.refobjid = deps.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
     AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    JOIN pg_catalog.pg_rewrite AS r ON r.oid = d.objid
    WHERE r.ev_class <> deps.oid
)
SELECT n.nspname, c.relname, c.relkind = 'm', c.relispopulated,
       pg_catalog.pg_get_viewdef(c.oid),
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid)
             FROM pg_catalog.pg_index AS i WHERE i.indrelid = c.oid ORDER BY i.indexrelid),
       max(deps.depth) AS depth
FROM deps
JOIN pg_catalog.pg_class AS c ON c.oid = deps.oid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm')
GROUP BY n.nspname, c.relname, c.relkind, c.relispopulated, c.oid
ORDER BY depth, n.nspname, c.relname
"""

_INDEXES_SQL = """
SELECT i.relname, x.indisunique,
       ARRAY(SELECT a.attname
             FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_catalog.pg_attribute AS a
               ON a.attrelid = x.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_catalog.pg_index AS x
JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_class AS t ON t.oid = x.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
WHERE n.nspname = %s AND t.relname = %s
"""

# What a swap needs to know, in one round trip: the old relation's kind, whether any
# view reads it (then the general path captures and recreates them), and the indexes
# of the new table.
_SWAP_INFO_SQL = """
SELECT
    (SELECT c.relkind FROM pg_catalog.pg_class AS c
     JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE n.nspname = %s AND c.relname = %s),
    EXISTS (
        SELECT 1 FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_depend AS d
          ON d.refobjid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
         AND d.classid = 'pg_catalog.pg_rewrite'::regclass
        JOIN pg_catalog.pg_rewrite AS r ON r.oid = d.objid AND r.ev_class <> c.oid
        WHERE n.nspname = %s AND c.relname = %s),
    ARRAY(
        SELECT pg_catalog.json_build_array(i.relname, x.indisunique, ARRAY(
            SELECT a.attname
            FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
            LEFT JOIN pg_catalog.pg_attribute AS a
              ON a.attrelid = x.indrelid AND a.attnum = k.attnum
            ORDER BY k.ord))::text
        FROM pg_catalog.pg_index AS x
        JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
        JOIN pg_catalog.pg_class AS t ON t.oid = x.indrelid
        JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND t.relname = %s),
    (SELECT c.relkind FROM pg_catalog.pg_class AS c
     JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
     WHERE n.nspname = %s AND c.relname = %s)
"""

# connection slots not yet taken by client sessions, outside those kept for superusers
_FREE_CONNECTIONS_SQL = """
SELECT current_setting('max_connections')::int
     - current_setting('superuser_reserved_connections')::int
     - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')::int
"""


@dataclass(frozen=True)
class PostgresTarget(Target):
    """A PostgreSQL database named by a ``postgresql://`` URL."""

    url: str = field(repr=False)

    name: ClassVar[str] = "postgresql"
    dialect: ClassVar[str] = "postgres"
    supports_concurrent_writers: ClassVar[bool] = True
    estimates_cost: ClassVar[bool] = True
    max_identifier_bytes: ClassVar[int | None] = 63  # NAMEDATALEN - 1: longer names are cut

    @functools.cached_property
    def display_url(self) -> str:
        return mask_url(self.url)

    def __repr__(self) -> str:
        return f"PostgresTarget({self.display_url!r})"

    def connect(self) -> PostgresSession:
        """Open a session (``application_name=dbluigi``, UTF-8, autocommit)."""
        dsn, timeout = libpq_dsn(self.url)
        parsed = parse_url(self.url)  # its secrets, to keep them out of messages
        options: dict[str, Any] = {
            "application_name": "dbluigi",
            "client_encoding": "UTF8",
            **timeout,
        }
        try:
            connection = psycopg2.connect(dsn, **options)
        except psycopg2.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            for secret in (parsed.password, parsed.query.get("password")):
                if secret and isinstance(secret, str):
                    reason = reason.replace(secret, "***")
            raise TargetError(
                f"cannot connect to the PostgreSQL target {self.display_url}: {reason}",
                hint="check that the server is running and reachable, and that --target "
                "(or DBLUIGI_TARGET) names the right host, port, database and user",
            ) from None
        connection.autocommit = True
        if connection.server_version >= 140000:
            # A killed dbluigi must not leave its query running (and its locks held) on the
            # server: have the backend notice a vanished client within a second.
            with connection.cursor() as cursor:
                cursor.execute("set client_connection_check_interval = 1000")
        return PostgresSession(self, connection)


class PostgresSession(Session):
    """A psycopg2 connection in autocommit mode; see ``Session`` for each method."""

    target: PostgresTarget

    def __init__(self, target: PostgresTarget, connection: psycopg2.extensions.connection) -> None:
        super().__init__(target)
        self._connection = connection
        # statements nobody reads the result of (BEGIN, a lock, state writes), sent ahead
        # of the next one: psycopg2 binds parameters client-side, so they join as text
        self._pending: list[bytes] = []
        self._change_log_ready = False

    # -- statements -------------------------------------------------------------------

    def _run(
        self, cursor: psycopg2.extensions.cursor, sql: str, params: Sequence[Any] | None
    ) -> None:
        began = self._pending[:1] == [b"BEGIN"]
        try:
            if self._pending:
                bound = cursor.mogrify(sql, tuple(params)) if params is not None else sql.encode()
                batch, self._pending = b";\n".join([*self._pending, bound]), []
                cursor.execute(batch)
            elif params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, tuple(params))
        except psycopg2.Error as exc:
            sent = cursor.query.decode("utf-8", "replace") if cursor.query else sql
            self._record_error(exc, sent)
            idle = psycopg2.extensions.TRANSACTION_STATUS_IDLE
            if began and self._connection.get_transaction_status() == idle:
                # the server could not parse the batch, so the BEGIN ahead of it never ran:
                # open the transaction now, or what follows would commit statement by statement
                with suppress(psycopg2.Error):
                    cursor.execute("BEGIN")
            raise

    def defer(self, statements: Sequence[tuple[str, Sequence[Any] | None]]) -> None:
        if not self._in_transaction:
            self.execute_batch(statements)
            return
        with self._connection.cursor() as cursor:
            self._pending += [
                cursor.mogrify(sql, tuple(params)) if params is not None else sql.encode()
                for sql, params in statements
            ]

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> None:
        """Send what is deferred now, before a statement that cannot carry it (COPY)."""
        if self._pending:
            with self._connection.cursor() as cursor:
                batch, self._pending = b";\n".join(self._pending), []
                try:
                    cursor.execute(batch)
                except psycopg2.Error as exc:
                    self._record_error(exc, batch.decode("utf-8", "replace"))
                    raise

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        with self._connection.cursor() as cursor:
            self._run(cursor, sql, params)
            return cursor.rowcount

    def execute_batch(self, statements: Sequence[tuple[str, Sequence[Any] | None]]) -> None:
        """One round trip: psycopg2 binds the parameters client-side, so the statements
        can travel as one string."""
        with self._connection.cursor() as cursor:
            parts = [
                (cursor.mogrify(sql, tuple(params)) if params is not None else sql.encode())
                for sql, params in statements
            ]
            self._run(cursor, b";\n".join(parts).decode(), None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._flush()
        with self._connection.cursor() as cursor:
            try:
                psycopg2.extras.execute_batch(cursor, sql, rows, page_size=1000)
            except psycopg2.Error as exc:
                self._record_error(exc, sql)
                raise

    def query(
        self, sql: str, params: Sequence[Any] | None = None, *, limit: int | None = None
    ) -> QueryResult:
        """Run a query; with ``limit``, a plain SELECT goes through a server-side cursor
        so a check that matches millions of rows transfers only the first few."""
        if limit is not None and _is_single_query(sql):
            return self._query_with_cursor(sql, params, limit)
        with self._connection.cursor() as cursor:
            self._run(cursor, sql, params)
            return _result(cursor, limit)

    def _query_with_cursor(self, sql: str, params: Sequence[Any] | None, limit: int) -> QueryResult:
        name = exp.to_identifier(_CURSOR_NAME).sql(dialect="postgres")
        declare = f"DECLARE {name} NO SCROLL CURSOR FOR\n{strip_statement_end(sql)}\n"
        with self._atomic(), self._connection.cursor() as cursor:
            self._run(cursor, declare, params)
            try:
                self._run(cursor, f"FETCH FORWARD %s FROM {name}", (limit,))
                return _result(cursor, None)
            finally:
                if not self._transaction_aborted():
                    self._run(cursor, f"CLOSE {name}", None)

    # -- transactions ---------------------------------------------------------------

    def _begin(self) -> None:
        self._pending = [b"BEGIN"]  # travels with the transaction's first statement

    def _commit(self) -> None:
        if self._pending == [b"BEGIN"]:  # nothing ran: nothing to send
            self._pending = []
            return
        self.execute("COMMIT")

    def _rollback(self) -> None:
        unsent = self._pending[:1] == [b"BEGIN"]
        self._pending = []
        if not unsent:  # the server never saw the transaction otherwise
            self.execute("ROLLBACK")

    def _transaction_aborted(self) -> bool:
        # the flag as well: a statement the server could not parse fails its whole batch,
        # so a BEGIN sent ahead of it never ran and the connection is idle, not aborted
        status = self._connection.get_transaction_status()
        return (
            status == psycopg2.extensions.TRANSACTION_STATUS_INERROR
            or super()._transaction_aborted()
        )

    # -- catalog ----------------------------------------------------------------------

    def _column_types_sql(self, marks: str) -> str:
        """Each type as PostgreSQL writes it in DDL (``numeric(10,2)``, ``character
        varying(20)``, ``integer[]``), not information_schema's bare names."""
        return (
            "select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
            "from pg_attribute a join pg_class c on c.oid = a.attrelid "
            "join pg_namespace n on n.oid = c.relnamespace "
            f"where n.nspname in ({marks}) and a.attnum > 0 and not a.attisdropped "
            "and c.relkind in ('r', 'p', 'v', 'm', 'f') order by n.nspname, c.relname, a.attnum"
        )

    def relations(self, schema: str | None = None) -> set[tuple[str, str]]:
        if schema is None:
            rows = self.query(_RELATIONS_SQL, ()).rows
        else:
            rows = self.query(_RELATIONS_SQL + " AND n.nspname = %s", (schema,)).rows
        return {(row[0], row[1]) for row in rows}

    def default_workers(self) -> int:
        """The machine's default (``base.machine_workers``), but at most half the
        connections the server has left for ordinary users: a build never crowds others
        out of a small or busy server."""
        free = self.query(_FREE_CONNECTIONS_SQL, ()).rows[0][0]
        return max(1, min(super().default_workers(), free // 2))

    def catalog(self) -> Catalog:
        rows = self.query(_CATALOG_SQL, ()).rows
        return Catalog(
            {f"{r[0]}.{r[1]}": _RELKINDS[r[2]] for r in rows},
            frozenset(f"{r[0]}.{r[1]}" for r in rows if r[3]),
        )

    def relation_kind(self, schema: str, name: str) -> str | None:
        rows = self.query(
            _RELATIONS_SQL + " AND n.nspname = %s AND c.relname = %s", (schema, name)
        ).rows
        return _RELKINDS[rows[0][2]] if rows else None

    # -- versions (dbluigi.targets.pgchanges) ---------------------------------------------

    def prepare_versions(self) -> None:
        """Create the change log once per target, and fold it when it grew long."""
        if self._change_log_ready:
            return
        (ready,) = self.query(pgchanges.READY_SQL).rows[0]
        if not ready:
            with self.transaction():
                self.lock_in_transaction("dbluigi.changes")
                for statement in pgchanges.SETUP:
                    self.execute(statement)
        else:
            rows = self.query(
                "select count(*) from (select 1 from dbluigi.changes limit %s) as c",
                (pgchanges.COMPACT_ABOVE + 1,),
            ).rows[0][0]
            if rows > pgchanges.COMPACT_ABOVE:
                with self.transaction():
                    self.lock_in_transaction("dbluigi.changes")
                    self.execute(pgchanges.PRUNE_SQL)
                    self.execute(pgchanges.COMPACT_SQL)
        self._change_log_ready = True

    def relation_versions(self, relations: Sequence[str], *, track: bool) -> dict[str, str]:
        if not relations:
            return {}
        self.prepare_versions()
        names = {_regclass_name(r): r for r in relations}
        with self.transaction():  # compiling it (JIT) would cost more than running it
            self.defer([("set local jit = off", None)])
            rows = self.query(pgchanges.CATALOG_SQL, (list(names),)).rows
        found = {names[row[0]]: pgchanges.version(*row[1:]) for row in rows}
        untracked = [n for n, r in names.items() if found.get(r) == pgchanges.UNTRACKED]
        if track and untracked:  # the function adds their trigger first
            rows = self.query(pgchanges.VERSIONS_SQL, (True, untracked)).rows
            found.update((names[name], version) for name, version in rows if version is not None)
        return found

    def underlying(self, relations: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Views: the tables they read; tables with partitions or inheritance children:
        those children, recursively (one query, ``pgchanges.UNDERLYING_SQL``)."""
        if not relations:
            return {}
        names = {_regclass_name(r): r for r in relations}
        found: dict[str, set[str]] = {}
        with self.transaction():
            self.defer([("set local jit = off", None)])
            rows = self.query(pgchanges.UNDERLYING_SQL, (list(names),)).rows
        for name, schema, table in rows:
            found.setdefault(names[name], set()).add(f"{schema}.{table}")
        return {relation: tuple(sorted(parts)) for relation, parts in found.items()}

    def output_version_sql(self, relations: Sequence[str]) -> tuple[str, list[Any]] | None:
        parts: list[str] = []
        params: list[Any] = []
        for relation in sorted(relations):
            parts.append(f"%s || {pgchanges.FUNCTION}(%s, true, false)")
            params += [f"{relation}=", _regclass_name(relation)]
        return (" || ';' || ".join(parts), params) if parts else None

    def _data_type(self, portable: str) -> str:
        return _TYPES[portable]

    def _indexes(self, schema: str, name: str) -> list[tuple[str, bool, tuple[str, ...]]]:
        rows = self.query(_INDEXES_SQL, (schema, name)).rows
        return [(row[0], row[1], tuple(row[2])) for row in rows]

    def _index_names(self, schema: str, name: str) -> set[str]:
        return {index for index, _, _ in self._indexes(schema, name)}

    # -- publishing -------------------------------------------------------------------

    def prepare_indexes(self, schema: str, name: str, indexes: Sequence[IndexLike]) -> None:
        """Create the indexes now, named after ``name`` (the new table); ``swap`` renames
        them after the published name once the old table and its indexes are gone."""
        self._create_indexes(schema, name, indexes, skip_existing=False)

    def swap(
        self,
        schema: str,
        new_name: str,
        name: str,
        indexes: Sequence[IndexLike],
        views: Mapping[tuple[str, str], str] | None = None,
        hint: SwapHint | None = None,
    ) -> None:
        """As ``Session.swap``; when no view reads the old relation (the usual case) it
        is one batch of DDL: with a ``hint`` from the run's catalog, no catalog query at
        all (a view created since is caught by a savepoint and handled the general way);
        without one, one catalog query first."""
        if hint is not None and not hint.read_by_views:
            if self._swap_known(schema, new_name, name, indexes, hint):
                return
            super().swap(schema, new_name, name, indexes, views)
            return
        params = (schema, name, schema, name, schema, new_name, schema, new_name)
        old_kind, has_readers, index_rows, new_kind = self.query(_SWAP_INFO_SQL, params).rows[0]
        if new_kind is None or has_readers:
            super().swap(schema, new_name, name, indexes, views)
            return
        statements: list[str] = []
        if old_kind is not None:
            kind = "VIEW" if _RELKINDS[old_kind] == "view" else "TABLE"
            drop = exp.Drop(
                tables=[table_expr(schema, name)], kind=kind, materialized=old_kind == "m"
            )
            statements.append(self._sql(drop))
        rename = exp.Alter(
            this=table_expr(schema, new_name),
            kind="TABLE",
            actions=[exp.AlterRename(this=exp.Table(this=ident(name)))],
        )
        statements.append(self._sql(rename))
        present = set()
        for index, unique, columns in (json.loads(row) for row in index_rows):
            columns = tuple(columns)
            if None in columns or index != self._index_name(new_name, columns, unique=unique):
                continue  # not one of ours
            wanted = self._index_name(name, columns, unique=unique)
            present.add(wanted)
            alter = exp.Alter(
                this=table_expr(schema, index),
                kind="INDEX",
                actions=[exp.AlterRename(this=exp.Table(this=ident(wanted)))],
            )
            statements.append(self._sql(alter))
        with self._atomic():
            self.execute_batch([(sql, None) for sql in statements])
            missing = [
                i
                for i in indexes
                if self._index_name(name, i.columns, unique=i.unique) not in present
            ]
            if missing:
                self._create_indexes(schema, name, missing, skip_existing=False)

    def _swap_known(
        self, schema: str, new_name: str, name: str, indexes: Sequence[IndexLike], hint: SwapHint
    ) -> bool:
        """Swap from what the run's catalog says; False (rolled back to a savepoint) when
        the catalog no longer holds, e.g. a view now reads the old table."""
        statements = ["SAVEPOINT dbluigi_swap"]
        if hint.old_kind is not None:
            kind = "VIEW" if hint.old_kind == "view" else "TABLE"
            statements.append(f"DROP {kind} IF EXISTS {quote_name(schema, name)}")
        statements.append(
            f"ALTER TABLE {quote_name(schema, new_name)} RENAME TO {quote_name(name)}"
        )
        for spec in indexes:  # prepare_indexes named them after the new table
            index = quote_name(schema, self._index_name(new_name, spec.columns, unique=spec.unique))
            wanted = quote_name(self._index_name(name, spec.columns, unique=spec.unique))
            statements.append(f"ALTER INDEX {index} RENAME TO {wanted}")
        statements.append("RELEASE SAVEPOINT dbluigi_swap")
        with self._atomic():
            try:
                self.execute_batch([(sql, None) for sql in statements])
            except psycopg2.Error:
                self.execute("ROLLBACK TO SAVEPOINT dbluigi_swap")
                self._failed_in_transaction = False
                return False
        return True

    def _rename_relation(self, schema: str, name: str, new_name: str, kind: str) -> None:
        # Index names are schema-wide in PostgreSQL and do not follow a table rename.
        indexes = self._indexes(schema, name) if kind == "table" else []
        rename = exp.Alter(
            this=table_expr(schema, name),
            kind="VIEW" if kind == "view" else "TABLE",
            actions=[exp.AlterRename(this=exp.Table(this=ident(new_name)))],
        )
        self.execute(self._sql(rename))
        for index, unique, columns in indexes:
            if None in columns or index != self._index_name(name, columns, unique=unique):
                continue  # not one of ours (an expression index, a hand-made one)
            wanted = self._index_name(new_name, columns, unique=unique)
            alter = exp.Alter(
                this=table_expr(schema, index),
                kind="INDEX",
                actions=[exp.AlterRename(this=exp.Table(this=ident(wanted)))],
            )
            self.execute(self._sql(alter))

    def _capture_dependents(self, schema: str, name: str) -> list[DependentView]:
        # With only pg_catalog on the search path, pg_get_viewdef qualifies every
        # relation, so the definitions do not depend on the caller's search_path.
        with self._atomic():
            saved = self.query("SELECT pg_catalog.current_setting('search_path')").rows[0][0]
            self.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
            try:
                rows = self.query(_DEPENDENTS_SQL, (schema, name)).rows
            finally:
                if not self._transaction_aborted():
                    self.query("SELECT pg_catalog.set_config('search_path', %s, true)", (saved,))
        views = []
        for view_schema, view_name, materialized, populated, definition, index_defs, _ in rows:
            body = strip_statement_end(definition)
            if materialized and not populated:
                body += "\nWITH NO DATA"
            views.append(
                DependentView(view_schema, view_name, materialized, body, tuple(index_defs))
            )
        return views

    # -- bulk loads ---------------------------------------------------------------------

    def _copy(self, sql: str, stream: Any) -> int:
        self._flush()
        with self._connection.cursor() as cursor:
            try:
                cursor.copy_expert(sql, stream, size=1 << 16)
            except psycopg2.Error as exc:
                # psycopg2 reports an exception raised by read() as QueryCanceled
                # (57014, which would classify as a timeout): raise the real one.
                if isinstance(stream, _CsvRows) and stream.error is not None:
                    raise stream.error from None
                self._record_error(exc, sql)
                raise
            return cursor.rowcount

    def _copy_sql(
        self, schema: str, name: str, columns: Sequence[Column], header: bool, text: bool = False
    ) -> str:
        """``COPY ... FROM STDIN WITH (FORMAT csv, ...)``, written without sqlglot (a seed or
        a load runs without importing it); from a file (``header``), ``""`` is NULL as
        well, as in DuckDB's read_csv. ``text``: COPY's text format, for a literal file,
        which it reads as csv does (see ``load_csv``)."""
        names = ", ".join(quote_name(column.name) for column in columns)
        if text:
            options = "FORMAT text, HEADER TRUE, DELIMITER ',', NULL ''"
        else:
            options = f"FORMAT csv, HEADER {'TRUE' if header else 'FALSE'}"
            if header:
                options += f", FORCE_NULL ({names})"
        return f"COPY {quote_name(schema, name)} ({names}) FROM STDIN WITH ({options})"

    def load_csv(
        self,
        schema: str,
        name: str,
        path: Path,
        columns: Sequence[Column],
        literal: bool | None = None,
    ) -> int:
        """CREATE TABLE, then COPY ... FROM STDIN (FORMAT csv, HEADER) streaming the file;
        an empty field, quoted or not, is NULL. A literal file is sent in COPY's text
        format, which reads it alike and which the server parses about 8% faster (from
        PostgreSQL 15, whose text format can skip a header). Text format reads each byte
        a literal file lacks otherwise: a quote as data, a backslash as an escape
        (``\\N`` as ``N``, ``\\.`` as the end), a stray carriage return with another error
        than csv's, which names the fix; and csv's error for NUL is the one dbluigi
        places at its line."""
        with self._atomic():
            self.create_table(schema, name, columns)
            with path.open("rb") as stream:
                text = self._connection.server_version >= 150000 and (
                    is_literal(stream) if literal is None else literal
                )
                sql = self._copy_sql(schema, name, columns, header=True, text=text)
                return self._copy(sql, stream)

    def load_csv_typing(
        self,
        schema: str,
        name: str,
        path: Path,
        guess: Sequence[Column],
        typing: Callable[[], Sequence[Column]],
    ) -> int:
        """COPY with the guessed types, after a savepoint, while ``typing`` runs in a thread
        (the server parses the COPY; psycopg2 and DuckDB let go of the GIL); rolled back to
        the savepoint and loaded again when the types turn out otherwise. A COPY that
        succeeds proves nothing of the types: PostgreSQL takes ``007`` as a bigint, ``1e5``
        as a numeric and ``yes`` as a boolean, so only ``typing`` decides."""
        guess = tuple(guess)

        def load() -> int:
            self.defer([("SAVEPOINT dbluigi_load", None)])  # travels with CREATE TABLE
            return self.load_csv(schema, name, path, guess)

        with self._atomic():
            rows, failure, columns = self._load_while_typing(load, typing, psycopg2.Error)
            if columns == guess:
                if failure is not None:  # the same load again would fail the same way
                    raise failure
                return rows or 0
            self.execute("ROLLBACK TO SAVEPOINT dbluigi_load")
            self._failed_in_transaction = False
            return self.load_csv(schema, name, path, columns)

    def load_rows(
        self, schema: str, name: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]
    ) -> int:
        """CREATE TABLE, then COPY the rows, rendered as CSV as they are read (None is
        NULL, "" an empty string)."""
        with self._atomic():
            self.create_table(schema, name, columns)
            stream = _CsvRows(rows, len(columns))
            return self._copy(self._copy_sql(schema, name, columns, header=False), stream)

    def load_csv_stream(self, schema: str, name: str, columns: Sequence[Column], path: Path) -> int:
        """CREATE TABLE, then COPY ... FROM STDIN (FORMAT csv) reading ``path`` as it is
        written (a named pipe); ``""`` stays an empty string, an unquoted empty field is NULL."""
        with self._atomic():
            self.create_table(schema, name, columns)
            with path.open("rb") as stream:
                return self._copy(self._copy_sql(schema, name, columns, header=False), stream)

    def copy_out_csv(self, query_sql: str, path: Path) -> int:
        """``COPY (query) TO STDOUT (FORMAT csv, HEADER)``, written to the file as it comes."""
        sql = f"COPY (\n{strip_statement_end(query_sql)}\n) TO STDOUT WITH (FORMAT csv, HEADER)"
        with path.open("wb") as stream:
            return self._copy(sql, stream)

    # -- guards -----------------------------------------------------------------------

    def create_table_as_explained(
        self, schema: str, name: str, query_sql: str
    ) -> tuple[int, float | None]:
        """``EXPLAIN (ANALYZE, TIMING OFF) CREATE TABLE ... AS``: the table is created as
        by ``create_table_as``, and the plan gives the estimate and the rows inserted (row
        counting only, no clock reads per row)."""
        sql = (
            "EXPLAIN (ANALYZE, TIMING OFF, BUFFERS OFF, SUMMARY OFF, FORMAT JSON)\n"
            f"CREATE TABLE {quote_name(schema, name)} AS\n{strip_statement_end(query_sql)}\n"
        )
        plan = self.query(sql).rows[0][0]
        if isinstance(plan, str):  # json, unless a type caster has been changed
            plan = json.loads(plan)
        top = plan[0]["Plan"]
        return round(top["Actual Rows"] * top["Actual Loops"]), float(top["Total Cost"])

    def explain_cost(self, sql: str) -> float | None:
        """``EXPLAIN (FORMAT JSON)``: the top plan node's total cost; nothing runs."""
        rows = self.query(f"EXPLAIN (FORMAT JSON)\n{strip_statement_end(sql)}\n").rows
        plan = rows[0][0]
        if isinstance(plan, str):  # json, unless a type caster has been changed
            plan = json.loads(plan)
        return float(plan[0]["Plan"]["Total Cost"])

    def _limit_statements(self, seconds: float) -> None:
        # SET LOCAL: the server enforces it and it ends with the transaction.
        milliseconds = str(max(1, math.ceil(seconds * 1000)))
        self.query("SELECT pg_catalog.set_config('statement_timeout', %s, true)", (milliseconds,))

    def _interrupt(self) -> None:
        # A cancel request: the running statement fails with 57014 (query_canceled);
        # an idle backend ignores it.
        self._connection.cancel()

    # -- errors, locks ------------------------------------------------------------------

    def classify(self, exc: BaseException) -> FailureClass:
        """SQLSTATE class 42 (but 42501, insufficient privilege) is ``syntax``, 57014
        (query_canceled) ``timeout``."""
        if isinstance(exc, TaskError):
            return exc.failure_class
        code = getattr(exc, "pgcode", None) or ""
        if code.startswith("42") and code != "42501":  # 42501: permission denied is runtime
            return "syntax"
        if code == "57014":
            return "timeout"
        return "runtime"

    def _transient(self, exc: BaseException) -> bool:
        """By SQLSTATE (``TRANSIENT_SQLSTATES``, class 08)."""
        return transient_sqlstate(getattr(exc, "pgcode", None))

    def _error_position(self, exc: BaseException) -> int | None:
        diag = getattr(exc, "diag", None)
        position = getattr(diag, "statement_position", None)
        return int(position) if position else None

    def try_lock(self, key: str) -> bool:
        """pg_try_advisory_lock on ``key``'s 64-bit hash, held by this session until ``unlock``."""
        sql = f"SELECT pg_try_advisory_lock({ADVISORY_KEY_SQL})"
        return bool(self.query(sql, (key,)).rows[0][0])

    def unlock(self, key: str) -> None:
        self.query(f"SELECT pg_advisory_unlock({ADVISORY_KEY_SQL})", (key,))

    def lock_in_transaction(self, key: str, *, deferred: bool = False) -> None:
        """pg_advisory_xact_lock on ``key``'s 64-bit hash: released by COMMIT or ROLLBACK.
        Deferred, it is sent ahead of the next statement: a separate statement, so that
        one reads with a snapshot taken after the lock was granted."""
        sql = f"SELECT pg_advisory_xact_lock({ADVISORY_KEY_SQL})"
        if deferred:
            self.defer([(sql, (key,))])
        else:
            self.query(sql, (key,))

    def close(self) -> None:
        if not self._connection.closed:
            self._connection.close()

    @property
    def connection_lost(self) -> bool:
        # psycopg2 marks the connection closed (2) when a statement finds the server gone
        return bool(self._connection.closed)

    def alive(self) -> bool:
        if self._connection.closed:
            return False
        try:
            with self._connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except psycopg2.Error:
            return not self._connection.closed  # another error: the connection is there
        return True


def _regclass_name(relation: str) -> str:
    """``schema.name`` as ``to_regclass`` reads it: each part quoted."""
    parts = Relation(relation)
    return quote_name(parts.schema, parts.name)


def _result(cursor: psycopg2.extensions.cursor, limit: int | None) -> QueryResult:
    if cursor.description is None:
        return QueryResult((), ())
    columns = tuple(d.name for d in cursor.description)
    rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
    return QueryResult(columns, tuple(tuple(row) for row in rows))


def _is_single_query(sql: str) -> bool:
    """True for one SELECT/WITH/VALUES statement, which DECLARE CURSOR accepts."""
    try:
        found = sqlglot.tokenize(sql, read="postgres")
    except Exception:
        return False
    kind = tokens.TokenType
    while found and found[-1].token_type == kind.SEMICOLON:
        found.pop()
    if not found or found[0].token_type not in (kind.SELECT, kind.WITH, kind.VALUES, kind.L_PAREN):
        return False
    return not any(token.token_type == kind.SEMICOLON for token in found)


def _csv_field(value: Any) -> str:
    """One CSV field as COPY reads it: NULL unquoted and empty, everything else quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value).replace("inf", "Infinity")
    elif isinstance(value, (dt.date, dt.datetime, dt.time)):
        text = value.isoformat()
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
    elif isinstance(value, (int, decimal.Decimal)):
        text = str(value)
    else:
        text = str(value)
    return '"' + text.replace('"', '""') + '"'


class _CsvRows(io.RawIOBase):
    """A file-like object that renders rows to CSV as COPY reads it, row by row.

    ``error`` keeps what went wrong inside ``read()``: psycopg2 reports it only as a
    QueryCanceled error."""

    def __init__(self, rows: Iterable[Sequence[Any]], width: int) -> None:
        super().__init__()
        self._rows: Iterator[Sequence[Any]] = iter(rows)
        self._width = width
        self._buffer = bytearray()
        self._count = 0
        self.error: Exception | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        try:
            self._fill(size)
        except Exception as exc:  # a bad row, or the rows' own iterator failing
            self.error = exc
            raise
        if size < 0:
            size = len(self._buffer)
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        return chunk

    def _fill(self, size: int) -> None:
        while size < 0 or len(self._buffer) < size:
            row = next(self._rows, None)
            if row is None:
                return
            self._count += 1
            if len(row) != self._width:
                raise ValueError(
                    f"row {self._count} has {len(row)} values, the table has {self._width} columns"
                )
            self._buffer += (",".join(_csv_field(v) for v in row) + "\n").encode()
