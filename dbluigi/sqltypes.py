"""What ``dbluigi.sqlinfo`` finds in a SQL file, as plain data.

These types are all a warm scan needs (``SqlInfo.from_json`` of the parse cache): they
live apart from the parser so that loading a project whose files are all in the cache
never imports sqlglot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class TableRef:
    """A table or view as a statement names it; ``schema`` is None when unqualified."""

    schema: str | None
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def __str__(self) -> str:
        return self.qualified


@dataclass(frozen=True)
class Unparsed:
    """Why sqlglot could not read a statement that runs as written, and where."""

    line: int
    reason: str


@dataclass(frozen=True)
class Statement:
    """One statement of a file: its original text, first line and kind."""

    sql: str
    line: int
    kind: str
    unparsed: Unparsed | None = None  # set when it runs as written, unread by sqlglot


@dataclass(frozen=True)
class SqlInfo:
    """The statements of a file and what it reads, writes, defines and calls.

    ``creates``: relations a statement makes: CREATE TABLE (AS, IF NOT EXISTS), CREATE
    [OR REPLACE] [MATERIALIZED] VIEW, PostgreSQL's SELECT ... INTO, and the new name of
    ALTER TABLE/VIEW ... RENAME TO.

    ``modifies``: relations changed in place that the file does not create: INSERT,
    UPDATE, DELETE, MERGE, TRUNCATE, ALTER (the old name of a rename: it is gone
    afterwards), COPY t FROM, CREATE INDEX ON t, and DROP, which changes what the
    relation holds to nothing (a file that drops and re-creates a relation creates it).

    ``writes`` is ``creates`` and ``modifies`` together.

    ``references``: tables named by REFERENCES in a table definition (foreign keys),
    which must exist first; the file's own tables are left out.

    ``defines``: functions, procedures and macros the file creates. ``calls``: routines
    it uses and does not define: CALL p(...) and calls of functions sqlglot does not
    know as builtins. That includes builtins of the database sqlglot has no name for
    (``pg_sleep``), and in DuckDB ``col.f()``, which is ``f(col)``: a call no model
    defines is the database's own. Function bodies run later, if ever: nothing is
    inferred from them.

    ``schemas``: schemas the file creates (CREATE SCHEMA).
    """

    statements: tuple[Statement, ...]
    reads: tuple[TableRef, ...]
    writes: tuple[TableRef, ...]
    creates: tuple[TableRef, ...] = ()
    modifies: tuple[TableRef, ...] = ()
    references: tuple[TableRef, ...] = ()
    defines: tuple[TableRef, ...] = ()
    calls: tuple[TableRef, ...] = ()
    schemas: tuple[str, ...] = ()
    write_lines: tuple[tuple[TableRef, int], ...] = ()  # (relation, first line writing it)

    @property
    def is_query(self) -> bool:
        """True for exactly one statement that only returns rows (SELECT, WITH, UNION, VALUES)."""
        return len(self.statements) == 1 and self.statements[0].kind == "query"

    def line_of(self, ref: TableRef) -> int | None:
        """The line of the first statement that creates or modifies ``ref``, or None."""
        for written, line in self.write_lines:
            if written == ref:
                return line
        return None

    def to_json(self) -> dict[str, Any]:
        statements = []
        for s in self.statements:
            statement: dict[str, Any] = {"sql": s.sql, "line": s.line, "kind": s.kind}
            if s.unparsed is not None:
                statement["unparsed"] = [s.unparsed.line, s.unparsed.reason]
            statements.append(statement)
        data: dict[str, Any] = {"statements": statements}  # empty lists are left out
        for field in _REF_FIELDS:
            if refs := getattr(self, field):
                data[field] = [[r.schema, r.name] for r in refs]
        if self.schemas:
            data["schemas"] = list(self.schemas)
        if self.write_lines:
            data["write_lines"] = [[r.schema, r.name, line] for r, line in self.write_lines]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SqlInfo:
        """The ``SqlInfo`` of ``to_json``; a KeyError for data of another shape."""
        if not isinstance(data, dict):
            raise TypeError(f"not a parse-cache entry: {type(data).__name__}")
        refs = _REFS
        fields: dict[str, Any] = {}
        for field in _REF_FIELDS:
            if listed := data.get(field):
                fields[field] = tuple(
                    refs.get(key) or refs.setdefault(key, TableRef(*key))
                    for key in map(tuple, listed)
                )
        if schemas := data.get("schemas"):
            fields["schemas"] = tuple(schemas)
        if write_lines := data.get("write_lines"):
            fields["write_lines"] = tuple(
                (TableRef(schema, name), line) for schema, name, line in write_lines
            )
        return cls(
            statements=tuple(
                Statement(
                    s["sql"],
                    s["line"],
                    s["kind"],
                    Unparsed(*s["unparsed"]) if s.get("unparsed") else None,
                )
                for s in data["statements"]
            ),
            reads=fields.pop("reads", ()),
            writes=fields.pop("writes", ()),
            **fields,
        )


# The same reference read back from the parse cache is one object: files name the same
# tables over and over, and a frozen dataclass is slow to make.
_REFS: dict[tuple[str | None, str], TableRef] = {}

_REF_FIELDS = ("reads", "writes", "creates", "modifies", "references", "defines", "calls")
