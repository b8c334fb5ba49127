"""The ``table`` kind: a query built aside into a new table, checked and swapped in.

Where the target estimates cost and no ``max_cost`` bounds the model, the query's
estimate comes with its ``CREATE TABLE AS`` (``Session.create_table_as_explained``)
instead of a separate EXPLAIN first: one statement less per model.
"""

from __future__ import annotations

from dbluigi.kinds.base import BuildRequest, Filled, Kind, Published, build_aside, located
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    return build_aside(session, request, fill)


def fill(session: Session, request: BuildRequest, new: str) -> Filled:
    """The model's query into ``new``."""
    model = request.model
    statement = model.statements[0]
    with located(session, model.path, statement.line, statement.sql):
        if request.explain_with_build:  # a failure is EXPLAINed afterwards (publish)
            rows, cost = session.create_table_as_explained(model.schema, new, statement.sql)
            return Filled(rows, cost)
        return Filled(session.create_table_as(model.schema, new, statement.sql))


KIND = Kind("table", build, partitioned=True)
