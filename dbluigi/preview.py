"""``dbluigi render`` and ``dbluigi show``: a model's SQL as it would run, and a few rows.

``model_sql`` is the SQL a build would send for a model: its query (a ``table``,
``view``, ``incremental`` or ``dump`` model) or its statements (``sql``), variables
filled, a partition's filter filled for one ``--partition`` value, ``{{ watermark }}``
as a full build fills it (NULL); optionally transpiled to another dialect with sqlglot.
``preview`` runs a query as ``SELECT * FROM (query) LIMIT n``: nothing is published.
"""

from __future__ import annotations

from dbluigi.errors import TargetError, UsageError
from dbluigi.project import Model, Project
from dbluigi.relation import Relation
from dbluigi.render import render
from dbluigi.targets.base import QueryResult, Session, table_expr

QUERY_KINDS = ("table", "view", "incremental", "dump")
"""Kinds whose file is one SELECT: what ``show`` runs by default."""
NO_SQL_KINDS = ("seed", "python", "extract")


def model_sql(project: Project, relation: str, *, partition: str | None = None) -> str:
    """The SQL a build runs for ``relation``, in the project's dialect; statements of a
    ``sql`` model are separated by ``;`` and a blank line."""
    model = project.models[relation]
    if model.kind in NO_SQL_KINDS:
        what = {"seed": "a seed (a data file)", "python": "a Python step"}.get(
            model.kind, f"a table copied from [sources.{model.relation.schema}]"
        )
        raise UsageError(
            f"{relation} is {what}: it has no SQL to render",
            hint=f"`dbluigi show {relation} --published` shows its rows once it is built",
        )
    header = model.header
    values: dict[str, object] = {}
    if header.partition is not None:
        name = header.partition.name
        if partition is None:
            raise UsageError(
                f"{relation} is partitioned by {name}: its SQL is one partition's",
                hint=f"pass --partition VALUE, a value of {name} ({model.path})",
            )
        spec = header.partition
        if spec.query is None and not spec.lists(partition):
            listed = spec.values
            shown = ", ".join(str(v) for v in listed[:10]) + (" ..." if len(listed) > 10 else "")
            raise UsageError(
                f"--partition {partition}: not a value of {name} in {relation}",
                hint=f"pass one of its values ({model.path}): {shown}",
            )
        values[name] = partition
    elif partition is not None:
        raise UsageError(
            f"--partition: {relation} is not partitioned",
            hint=f"leave out --partition {partition}",
        )
    if model.kind == "incremental":  # a watermark goes with no other kind
        from dbluigi.kinds.incremental import sql_literal

        values["watermark"] = sql_literal(None, project.dialect)  # as a full build runs it
    statements = [
        render(st.sql, values, path=model.path, line_offset=st.line - 1, dialect=project.dialect)
        for st in model.statements
    ]
    return ";\n\n".join(statements)


def transpile(sql: str, read: str, write: str) -> str:
    """``sql`` in the dialect ``write``; an unknown dialect is a UsageError."""
    import sqlglot
    from sqlglot.dialects.dialect import Dialect

    try:
        Dialect.get_or_raise(write)
    except ValueError:
        raise UsageError(
            f"--dialect {write!r} is not a dialect sqlglot knows",
            hint="for example --dialect postgres, duckdb, snowflake, bigquery",
        ) from None
    return ";\n\n".join(sqlglot.transpile(sql, read=read, write=write, pretty=True))


def query_model(model: Model) -> bool:
    """Whether ``show`` runs the model's query (else it shows the published table)."""
    return model.kind in QUERY_KINDS


def published_query(session: Session, model: Model, dialect: str) -> str:
    """``SELECT * FROM`` the model's published relation; a TargetError when it is not."""
    from dbluigi.lazy import exp

    relation = _published_relation(model)
    if session.relation_kind(relation.schema, relation.name) is None:
        raise TargetError(
            f"{relation} is not published on this target",
            hint=f"build it first: dbluigi build {model.relation}",
        )
    return (
        exp.select(exp.Star())
        .from_(table_expr(relation.schema, relation.name))
        .sql(dialect=dialect)
    )


def _published_relation(model: Model) -> Relation:
    """The relation ``show`` reads for a model: its own, or the one table a script (a
    ``sql`` model) creates under another name; a UsageError when the script creates none
    or several."""
    if model.kind != "sql" or model.creates_itself:
        return model.relation
    if len(model.creates) == 1:
        return model.creates[0]
    if model.creates:
        raise UsageError(
            f"{model.relation} is a script that creates {', '.join(model.creates)}: "
            "show reads one table",
            hint=f'dbluigi show --sql "select * from {model.creates[0]}"',
        )
    changed = model.writes[0] if model.writes else "a table"
    raise UsageError(
        f"{model.relation} is a script ({model.path}) that creates no table: "
        "it has no rows to show",
        hint=f'dbluigi show --sql "select * from {changed}"',
    )


def preview(
    session: Session,
    sql: str,
    *,
    dialect: str,
    limit: int,
    what: str,
    path: str | None = None,
    line: int | None = None,
) -> QueryResult:
    """The first ``limit`` rows of the query ``sql`` (one SELECT), run in a transaction
    that is rolled back; ``what`` names it in errors (a relation, or ``--sql``), or
    ``path`` and ``line`` do (a model's file, and where its query starts)."""
    import sqlglot
    from sqlglot.errors import ParseError

    from dbluigi.lazy import exp

    where = "" if path is not None else f"{what}: "  # a file is the error's location
    try:
        parsed = sqlglot.parse(sql, read=dialect)
    except ParseError as exc:
        raise UsageError(f"{where}the SQL does not parse: {exc}", path=path, line=line) from None
    queries = [p for p in parsed if p is not None]
    if len(queries) != 1 or not isinstance(queries[0], exp.Query):
        raise UsageError(
            f"{where}expected one SELECT",
            path=path,
            line=line,
            hint="show previews the rows of a query",
        )
    limited = (
        exp.select(exp.Star())
        .from_(queries[0].subquery("dbluigi_show"))
        .limit(exp.Literal.number(limit))
    )
    try:
        with session.transaction():  # rolled back: a query may call a function that writes
            raise _Rows(session.query(limited.sql(dialect=dialect)))
    except _Rows as done:
        return done.result
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise TargetError(f"{where}the query failed: {text}", path=path, line=line) from None
    raise AssertionError("unreachable")  # pragma: no cover


class _Rows(Exception):
    """Carries the rows out of the transaction, which it rolls back."""

    def __init__(self, result: QueryResult) -> None:
        super().__init__()
        self.result = result
