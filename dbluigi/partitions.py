"""Partitioned models: one task per partition value, one publish for the whole table.

``-- partition: year in 2010..2020`` (or ``in (2019, 2020)``, or ``in (select ...)``)
makes a ``table`` model one luigi task per value. Each partition task builds its rows
into its own table ``<name>__dbluigi_p_<value>`` with ``{{ year }}`` set to the value,
and records its own state row; the model's task then gathers every partition table into
``<name>__dbluigi_new``, patches, checks and swaps it like any table. The partition
tables stay as the build's cache, so after a failure at one value a rerun redoes only
the failed and missing values; an edit to the model redoes them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dbluigi import names
from dbluigi.errors import ProjectError
from dbluigi.lazy import exp
from dbluigi.project import Model, Project
from dbluigi.relation import Relation
from dbluigi.render import render
from dbluigi.state import StateStore
from dbluigi.targets.base import Session, table_expr

PARTITION_INFIX = "__dbluigi_p_"
PARTITION_KINDS = ("table",)


def partition_table(model: Model, value: str, limit: int | None) -> str:
    """The table holding one partition's rows (``names.partition_name``), fitted into
    the target's identifier limit."""
    return names.partition_name(model.name, value, limit)


def partition_values(
    session: Session, project: Project, models: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """The values of each partitioned model among ``models``; a query is run once, here.

    A query that cannot run yet because it reads a table this run builds first is left
    out: the model's task evaluates it once its upstream is built (see luigi_tasks)."""
    selected = set(models)
    result: dict[str, tuple[str, ...]] = {}
    for relation in models:
        model = project.models[relation]
        spec = model.header.partition
        if spec is None:
            continue
        line = spec.line or model.header.line_of("partition")
        if model.kind not in PARTITION_KINDS:
            raise ProjectError(
                f"partitions work with table models; this one is of kind {model.kind}",
                path=model.path,
                line=line,
            )
        limit = project.config.max_partitions
        if spec.query is not None:
            sql = render(
                spec.query, project.config.variables, path=model.path, line_offset=(line or 1) - 1
            )
            try:
                rows = session.query(sql, limit=limit + 1).rows  # never more than the bound
            except Exception as exc:
                if any(p in selected for p in project.model_parents(relation)):
                    continue  # evaluated by the model's task, after its upstream is built
                raise ProjectError(
                    f"the partition query failed: {str(exc).strip().splitlines()[0]}",
                    path=model.path,
                    line=line,
                ) from exc
            if len(rows) > limit:
                raise _too_many(model, line, limit, f"its query returns more than {limit} rows")
            values = tuple(dict.fromkeys(str(r[0]) for r in rows if r and r[0] is not None))
        else:
            if len(spec.values) > limit:  # len() of a range: counted, not listed
                raise _too_many(model, line, limit, f"it lists {len(spec.values)} values")
            values = tuple(dict.fromkeys(str(v) for v in spec.values))
        if not values:
            raise ProjectError(
                f"the partition specification of {relation} yields no values",
                path=model.path,
                line=line,
                hint="a partition query must return at least one non-NULL value",
            )
        result[relation] = values
    return result


def _too_many(model: Model, line: int | None, limit: int, what: str) -> ProjectError:
    return ProjectError(
        f"too many partitions: {what}, and a model may have at most {limit} "
        "(one task, state row and table each)",
        path=model.path,
        line=line,
        hint="partition by a coarser value (a year rather than a day), or raise "
        "[project] max_partitions in dbluigi.toml",
    )


def evaluate(session: Session, project: Project, relation: str) -> tuple[str, ...]:
    """The values of one partitioned model, now (its upstream is built)."""
    return partition_values(session, project, [relation])[relation]


def partition_sql(model: Model, value: str) -> str:
    """The model's query with its partition variable set to ``value``."""
    assert model.header.partition is not None
    name = model.header.partition.name
    return render(
        model.query, {name: value}, path=model.path, line_offset=model.statements[0].line - 1
    )


def build_partition(session: Session, model: Model, value: str) -> int:
    """Build one partition's table, replacing an earlier one; call inside a transaction."""
    table = partition_table(model, value, session.target.max_identifier_bytes)
    session.drop_relation(model.schema, table)
    return session.create_table_as(model.schema, table, partition_sql(model, value))


def gather_sql(model: Model, values: Sequence[str], dialect: str, limit: int | None) -> str:
    """SELECT * FROM every partition table, UNION ALL, in value order."""
    selects = [
        exp.select(exp.Star()).from_(table_expr(model.schema, partition_table(model, v, limit)))
        for v in values
    ]
    query: exp.Query = selects[0]
    for select in selects[1:]:
        query = exp.union(query, select, distinct=False)
    return query.sql(dialect=dialect)


def drop_stale_partitions(
    session: Session, model: Model, values: Sequence[str], kinds: Mapping[str, str]
) -> None:
    """Drop the partition tables of values no longer listed (a value range shrank): those
    of the values the state knows, and any other table named ``<name>__dbluigi_p_...``
    (a long name's partition tables are hashed, so only the state finds them)."""
    limit = session.target.max_identifier_bytes
    keep = {partition_table(model, v, limit) for v in values}
    state = StateStore(session)
    known = {partition_table(model, v, limit) for v in state.partition_keys(model.relation)}
    prefix = f"{model.schema}.{model.name}{PARTITION_INFIX}"
    stale = {Relation(r).name for r in kinds if r.startswith(prefix)} | known
    for table in sorted(stale - keep):
        session.drop_relation(model.schema, table)
    state.forget_partitions(model.relation, keep=values)
