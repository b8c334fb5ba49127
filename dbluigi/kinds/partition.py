"""Partitioned models (``-- partition: year in 2010..2020``): one task per value, then
the whole.

Each value is built into its own table (``dbluigi.partitions.partition_table``) and
recorded with its own state row, in its own transaction; once every value is in, the
model gathers them (``UNION ALL``, in value order) into its new table, which is then
indexed, patched, checked and swapped like any table (``build_aside``). Which values
a model has, and which of them are stale: ``dbluigi.partitions`` and ``dbluigi.plan``.
"""

from __future__ import annotations

from dbluigi import partitions
from dbluigi.kinds.base import (
    BuildRequest,
    Filled,
    Kind,
    Published,
    build_aside,
    located,
    record,
    transaction,
)
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    """One value of the model (``request.partition``), or the gathering of them all."""
    if request.partition is None:
        return build_aside(session, request, gather)
    model, value = request.model, request.partition.value
    statement = model.statements[0]
    with transaction(session, request):
        sql = partitions.partition_sql(model, value)
        with located(session, model.path, statement.line, sql):
            rows = partitions.build_partition(session, model, value)
        record(session, request, rows, ())
    return Published(rows, ())


def gather(session: Session, request: BuildRequest, new: str) -> Filled:
    """Every value's table into ``new``; tables of values no longer listed are dropped."""
    model = request.model
    values = [p.value for p in request.decision.partitions]
    partitions.drop_stale_partitions(session, model, values, request.catalog.kinds)
    sql = partitions.gather_sql(
        model, values, request.project.dialect, session.target.max_identifier_bytes
    )
    with located(session, model.path, 1, ""):
        return Filled(session.create_table_as(model.schema, new, sql))


KIND = Kind("partition", build)
