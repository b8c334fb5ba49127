"""Column-level lineage: which upstream columns each column of a model comes from.

Pure core (no printing, no database): ``project_columns`` traces every model of a
project with ``sqlglot.lineage``, in run order, so that a model's inferred output
columns are known to the models that read it (a ``select *`` through a CTE expands when
its upstream's columns are known). Each model's query is qualified and scoped once, then
every output column is traced from that one scope. ``trace`` follows one column upstream
across models, recursively, for ``dbluigi lineage MODEL.COLUMN``.

Where a column cannot be traced, the result says why (a ``note``) rather than guess:
``select *`` from a relation whose columns are unknown, a Python step, a SQL script, a
column that several joined relations may hold.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbluigi.errors import ProjectError, UsageError
from dbluigi.lazy import errors, exp, sqlglot
from dbluigi.project import QUERY_KINDS, Model, Project
from dbluigi.render import PLACEHOLDER
from dbluigi.suggest import did_you_mean

if TYPE_CHECKING:
    from sqlglot.lineage import Node
    from sqlglot.optimizer.scope import Scope
    from sqlglot.schema import Schema

FORMATS = ("text", "json")
_INFERENCE_VALUE = "NULL"  # what runtime placeholders ({{ watermark }}) read as here
_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass(frozen=True, order=True)
class ColumnSource:
    """One upstream column a column comes from."""

    relation: str  # "schema.table" as dbluigi names relations (model or source)
    column: str


@dataclass(frozen=True)
class ColumnLineage:
    """An output column of a model and the columns of other relations it is made from."""

    name: str
    sources: tuple[ColumnSource, ...]  # sorted
    note: str | None = None  # why it cannot be traced (or only in part), else None


@dataclass(frozen=True)
class ModelColumns:
    """The columns of one model, in output order, each with its direct sources."""

    model: str
    columns: tuple[ColumnLineage, ...]
    note: str | None = None  # why its columns are unknown or only partly listed

    def column(self, name: str) -> ColumnLineage | None:
        """The column called ``name`` (compared case-insensitively), if it has one."""
        folded = name.lower()
        return next((c for c in self.columns if c.name.lower() == folded), None)


@dataclass(frozen=True)
class ColumnTrace:
    """A column and, recursively, the upstream columns it comes from, across models."""

    relation: str
    column: str
    kind: str  # the model's kind, or "source" for a relation no model produces
    sources: tuple[ColumnTrace, ...] = ()
    note: str | None = None

    def walk(self) -> Iterator[ColumnTrace]:
        """This column and every column upstream of it, depth first."""
        yield self
        for source in self.sources:
            yield from source.walk()

    def to_json(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "column": self.column,
            "kind": self.kind,
            "note": self.note,
            "sources": [s.to_json() for s in self.sources],
        }


def project_columns(
    project: Project, known: Mapping[str, Sequence[str]] | None = None
) -> dict[str, ModelColumns]:
    """Column lineage of every model, in run order. ``known`` maps relation -> its column
    names as published in the target (when reachable); models' own output columns are
    inferred in run order and used for their readers; known columns win for relations
    not inferable (sources, seeds, python, sql scripts)."""
    return _Tracer(project, known or {}).run(project.order)


def trace(
    project: Project,
    relation: str,
    column: str,
    known: Mapping[str, Sequence[str]] | None = None,
) -> ColumnTrace:
    """The full upstream tree of ``relation.column``; a model without that column is a
    UsageError listing the model's columns."""
    model = project.models.get(relation)
    if model is None:
        raise UsageError(
            f"{relation} is not a model of the project",
            hint=did_you_mean(relation, project.models, quote=str) or "dbluigi ls lists them",
        )
    wanted = upstream_of(project, relation)
    tracer = _Tracer(project, known or {})
    tracer.prepare(m for m in project.order if m in wanted)  # every output name upstream
    own = tracer.columns(relation)  # and the lineage of the models on the column's path
    if own.column(column) is None:
        if own.columns:
            listed = ", ".join(c.name for c in own.columns)
            hint = f"its columns: {listed}"
            if own.note:
                hint += f" ({own.note})"
        else:
            hint = own.note or "its columns are unknown"
        raise UsageError(f"model {relation} has no column {column!r}", hint=hint)
    return _trace(project, tracer, relation, column, frozenset())


def render_trace(found: ColumnTrace, fmt: str = "text") -> str:
    """A trace as a text tree or as JSON."""
    if fmt == "json":
        return json.dumps(found.to_json(), indent=2)
    out: list[str] = []

    def walk(node: ColumnTrace, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        out.append(f"{prefix}{branch}{node.relation}.{node.column} [{node.kind}]")
        inner = prefix + ("" if root else ("    " if last else "│   "))
        if node.note:
            out.append(f"{inner}{'│' if node.sources else ' '}   note: {node.note}")
        for i, child in enumerate(node.sources):
            walk(child, inner, i == len(node.sources) - 1, False)

    walk(found, "", True, True)
    return "\n".join(out)


# -- tracing across models --------------------------------------------------------------


def upstream_of(project: Project, relation: str) -> set[str]:
    """``relation`` and every relation upstream of it, sources included."""
    seen: set[str] = set()
    stack = [relation]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(project.graph.parents(node))
    return seen


def _trace(
    project: Project,
    tracer: _Tracer,
    relation: str,
    column: str,
    path: frozenset[tuple[str, str]],
) -> ColumnTrace:
    model = project.models.get(relation)
    if model is None:
        names = tracer.known.get(relation)
        note = None
        producer = next(
            (m.relation for m in project.models.values() if relation in m.creates), None
        )
        if producer is not None:
            note = f"created by {producer}, a SQL script: its columns cannot be traced"
        elif names is None:
            note = "a relation no model produces; its columns are unknown here"
        elif column.lower() not in {n.lower() for n in names}:
            note = f"not among {relation}'s published columns"
        kind = project.models[producer].kind if producer is not None else "source"
        return ColumnTrace(relation, column, kind, note=note)
    if (relation, column) in path:
        return ColumnTrace(relation, column, model.kind, note="itself, as last published")
    own = tracer.columns(relation) if relation in tracer.prepared else None
    found = own.column(column) if own else None
    if own is None or found is None:
        note = (own.note if own else None) or f"{relation} has no traced column {column!r}"
        return ColumnTrace(relation, column, model.kind, note=note)
    inner = path | {(relation, column)}
    return ColumnTrace(
        relation,
        found.name,
        model.kind,
        tuple(_trace(project, tracer, s.relation, s.column, inner) for s in found.sources),
        found.note,
    )


@dataclass(frozen=True)
class _Prepared:
    """A model's query, qualified with the columns upstream and scoped, once."""

    relation: str
    tree: exp.Query
    scope: Scope
    schema: Schema
    outputs: tuple[str, ...]  # its output columns (the ones it names, under a star)
    note: str | None
    recursive: bool  # it has a recursive CTE


class _Tracer:
    """Qualifies models in run order, each model's output columns feeding its readers,
    and traces their columns. A qualified query is not kept: a thousand of them alive
    make every cyclic garbage collection walk them all."""

    def __init__(self, project: Project, known: Mapping[str, Sequence[str]]) -> None:
        self.project = project
        self.known = {r: tuple(cols) for r, cols in known.items()}
        self.dialect = project.dialect
        self.inferred: dict[str, tuple[str, ...]] = {}
        self.prepared: set[str] = set()
        self.traced: dict[str, ModelColumns] = {}

    def run(self, order: Iterable[str]) -> dict[str, ModelColumns]:
        """Every model of ``order`` (a run order), traced."""
        return {relation: self._prepare(relation, trace=True) for relation in order}

    def prepare(self, order: Iterable[str]) -> None:
        """The output columns of every model of ``order`` (a run order), untraced."""
        for relation in order:
            self._prepare(relation, trace=False)

    def columns(self, relation: str) -> ModelColumns:
        """The lineage of a prepared model's columns (its query qualified again)."""
        done = self.traced.get(relation)
        return self._prepare(relation, trace=True) if done is None else done

    def _prepare(self, relation: str, *, trace: bool) -> ModelColumns:
        prepared = self._model(self.project.models[relation])
        self.prepared.add(relation)
        if isinstance(prepared, _Prepared):
            if prepared.note is None:
                self.inferred[relation] = prepared.outputs
            if not trace:
                return ModelColumns(relation, ())
            try:
                done = self._lineage(prepared)
            except (errors.SqlglotError, ValueError) as exc:
                done = self._leaf(
                    self.project.models[relation], f"sqlglot cannot trace its columns: {exc}"
                )
        else:
            done = prepared
            if prepared.columns:
                self.inferred[relation] = tuple(c.name for c in prepared.columns)
        if trace:
            self.traced[relation] = done
        return done

    def columns_of(self, relation: str) -> tuple[str, ...] | None:
        return self.inferred.get(relation) or self.known.get(relation)

    def _model(self, model: Model) -> _Prepared | ModelColumns:
        relation = model.relation
        if model.kind == "seed":
            return self._seed(model)
        if model.kind == "python":
            return self._leaf(model, "a Python step: its columns cannot be traced")
        if model.kind == "extract":
            return self._leaf(model, "copied from a source database: its columns are its source's")
        statements = model.statements
        if model.kind not in (*QUERY_KINDS, "sql") or len(statements) != 1:
            return self._leaf(
                model, f"a SQL script (kind {model.kind}): its columns cannot be traced"
            )
        statement = statements[0]
        if statement.unparsed is not None:
            return self._leaf(
                model,
                f"sqlglot cannot parse its query ({statement.unparsed.reason}): "
                "its columns cannot be traced",
            )
        try:
            tree = sqlglot.parse_one(
                PLACEHOLDER.sub(_INFERENCE_VALUE, statement.sql), dialect=self.dialect
            )
        except errors.SqlglotError as exc:
            return self._leaf(model, f"sqlglot cannot parse its query: {exc}")
        if model.kind == "sql":
            query = _created_query(tree, relation)
            if query is None:
                return self._leaf(
                    model,
                    "a SQL script (kind sql): its columns cannot be traced (only a single "
                    "CREATE TABLE AS SELECT of its own table is)",
                )
            tree = query
        if not isinstance(tree, exp.Query):
            return self._leaf(model, "not a single SELECT: its columns cannot be traced")
        try:
            return self._qualify(model, tree)
        except (errors.SqlglotError, ValueError) as exc:
            return self._leaf(model, f"sqlglot cannot trace its columns: {exc}")

    def _leaf(self, model: Model, note: str) -> ModelColumns:
        names = self.known.get(model.relation, ())
        return ModelColumns(
            model.relation, tuple(ColumnLineage(n, (), note) for n in names), note=note
        )

    def _seed(self, model: Model) -> ModelColumns:
        names = self.known.get(model.relation) or _seed_columns(self.project, model)
        note = f"a seed: its columns come from {model.path}"
        return ModelColumns(model.relation, tuple(ColumnLineage(n, ()) for n in names), note)

    def _qualify(self, model: Model, tree: exp.Query) -> _Prepared:
        from sqlglot.optimizer.qualify import qualify
        from sqlglot.optimizer.scope import build_scope
        from sqlglot.schema import MappingSchema

        mapping: dict[str, object] = {}
        unknown: list[str] = []
        for read in (*model.reads, *model.depends, model.relation):
            cols = self.columns_of(read)
            if cols:
                tables = mapping.setdefault(read.schema, {})
                assert isinstance(tables, dict)
                # quoted: a name with capitals is that name, not its lower-cased form
                tables[read.name] = {
                    exp.to_identifier(c, quoted=True).sql(dialect=self.dialect): "UNKNOWN"
                    for c in cols
                }
            elif read != model.relation:
                unknown.append(read)
        schema = MappingSchema(mapping, dialect=self.dialect)
        tree = qualify(
            tree,
            dialect=self.dialect,
            db=self.project.config.schema,
            schema=schema,
            validate_qualify_columns=False,
            quote_identifiers=False,  # names keep the quotes they were written with
        )
        scope = build_scope(tree)
        if scope is None:
            raise ValueError("not a query")
        outputs = tuple(n for n in _first_select(tree).named_selects if n != "*")
        note = None
        if _has_star(tree):
            starred = ", ".join(dict.fromkeys(unknown)) or "a relation"
            note = f"select * from {starred}, whose columns are unknown"
            if outputs:
                note += ": only the columns it names are listed"
        recursive = bool(tree.args.get("with_") and tree.args["with_"].args.get("recursive"))
        return _Prepared(model.relation, tree, scope, schema, outputs, note, recursive)

    def _lineage(self, prepared: _Prepared) -> ModelColumns:
        from sqlglot.lineage import lineage

        nodes = lineage(
            None,
            prepared.tree,
            prepared.schema,
            dialect=self.dialect,
            scope=prepared.scope,
            trim_selects=False,
            copy=False,
        )
        # a recursive CTE's reference to itself adds no column its first branch lacks
        columns = tuple(
            self._column(name, nodes[name], prepared.recursive) for name in prepared.outputs
        )
        return ModelColumns(prepared.relation, columns, prepared.note)

    def _column(self, name: str, node: Node, recursive: bool) -> ColumnLineage:
        sources: set[ColumnSource] = set()
        notes: list[str] = []
        self._collect(node, sources, notes, set(), recursive)
        note = "; ".join(dict.fromkeys(notes)) or None
        if not sources and note is None:
            note = _sourceless(node.expression)
        return ColumnLineage(name, tuple(sorted(sources)), note)

    def _collect(
        self,
        node: Node,
        sources: set[ColumnSource],
        notes: list[str],
        seen: set[int],
        recursive: bool,
    ) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        expression = node.expression
        if isinstance(expression, exp.Star):
            self._star(node, sources, notes)
            return
        if not node.downstream:
            if isinstance(expression, exp.Table):
                relation = self._relation(expression)
                if relation is None:
                    notes.append(f"from a table function ({expression.sql(self.dialect)})")
                else:
                    sources.add(ColumnSource(relation, self._column_name(node.name)))
            elif isinstance(expression, exp.Placeholder) and not recursive:
                notes.append(
                    f"cannot tell which relation column {node.name} comes from "
                    "(the columns of the relations it joins are unknown)"
                )
            return
        for child in node.downstream:
            self._collect(child, sources, notes, seen, recursive)

    def _star(self, node: Node, sources: set[ColumnSource], notes: list[str]) -> None:
        """A column taken from a ``*`` that could not be expanded: it comes from the one
        relation the ``*`` reads, else nobody can tell which."""
        column = self._column_name(node.name)
        tables = [c.expression for c in node.downstream]
        relations = [self._relation(t) for t in tables if isinstance(t, exp.Table)]
        if len(tables) == 1 and relations and relations[0] is not None:
            sources.add(ColumnSource(relations[0], column))
            return
        named = ", ".join(r for r in relations if r) or "a subquery"
        notes.append(f"select * over {named}, whose columns are unknown: cannot tell which")

    def _relation(self, table: exp.Table) -> str | None:
        if not isinstance(table.this, exp.Identifier):
            return None
        db = table.db or self.project.config.schema
        return f"{db}.{table.name}"

    def _column_name(self, sql: str) -> str:
        """The column of a lineage node's name (``alias.column``, quoted where needed)."""
        last = sql.rpartition(".")[2]
        if _SIMPLE.fullmatch(last):
            return last
        return exp.to_column(sql, dialect=self.dialect).name


def _first_select(query: exp.Expr) -> exp.Query:
    """The select whose names a query's output takes (a union's left-most)."""
    while isinstance(query, (exp.SetOperation, exp.Subquery)):
        query = query.left if isinstance(query, exp.SetOperation) else query.this
    assert isinstance(query, exp.Query)
    return query


def _has_star(query: exp.Query) -> bool:
    first = _first_select(query)
    return any(
        isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star))
        for s in first.selects
    )


def _created_query(tree: exp.Expr, relation: str) -> exp.Query | None:
    """The query of ``CREATE TABLE <relation> AS SELECT ...``, else None."""
    if not isinstance(tree, exp.Create) or not isinstance(tree.expression, exp.Query):
        return None
    table = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    if not isinstance(table, exp.Table) or table.name.lower() != relation.split(".", 1)[1]:
        return None
    return tree.expression


def _sourceless(expression: exp.Expr) -> str:
    if isinstance(expression, exp.Alias):
        expression = expression.this
    if list(expression.find_all(exp.AggFunc, exp.Window, exp.Star)):
        return "computed from no column (such as count(*) or row_number())"
    if expression.find(exp.Column):
        return "reads no column of another relation (a constant, through a CTE or subquery)"
    return "a constant: it reads no column"


def _seed_columns(project: Project, model: Model) -> tuple[str, ...]:
    """A seed's column names: a CSV's header line, a YAML seed's keys."""
    path = project.root / model.path
    try:
        if model.format == "csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                return tuple(next(csv.reader(f), ()))
        from dbluigi.seeds import read_yaml_seed

        table, _ = read_yaml_seed(path, table=model.part)
        return tuple(c.name for c in table.columns)
    except (OSError, UnicodeDecodeError, csv.Error, ProjectError):
        return ()
