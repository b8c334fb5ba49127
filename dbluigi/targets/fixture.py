"""The database unit tests run in by default: a fresh in-memory DuckDB.

It is a ``DuckDBSession`` like any other (the same catalog name, the same statements),
except that while its ``read`` names another dialect, every statement it runs is first
transpiled from that dialect to DuckDB with sqlglot: what lets a Python step or a check
written for PostgreSQL run on fixture rows without a server.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from dbluigi.targets.duckdb import DuckDBSession, DuckDBTarget, _attach_statements, _Mirror

MEMORY = Path(":memory:")


class FixtureSession(DuckDBSession):
    """A session on an in-memory DuckDB that can read another dialect's SQL."""

    read: str | None = None  # the dialect statements are written in, while set

    def _mirror_shared(self) -> _Mirror:
        """Its own: every fixture session is a database of its own."""
        return _Mirror()

    def _run(self, sql: str, params: Sequence[Any] | None) -> duckdb.DuckDBPyConnection:
        if self.read is not None and self.read != "duckdb":
            sql = _transpiled(sql, self.read)
        return super()._run(sql, params)


def fixture_session() -> FixtureSession:
    """A new, empty in-memory database (its own: nothing is shared between sessions)."""
    connection = duckdb.connect(":memory:")
    for statement in _attach_statements(MEMORY):
        connection.execute(statement)
    return FixtureSession(DuckDBTarget(MEMORY), connection)


@functools.lru_cache(maxsize=256)
def _transpiled(sql: str, read: str) -> str:
    import sqlglot
    from sqlglot.errors import ErrorLevel

    return ";\n".join(
        sqlglot.transpile(sql, read=read, write="duckdb", unsupported_level=ErrorLevel.RAISE)
    )
