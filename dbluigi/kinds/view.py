"""The ``view`` kind: the view replaced, checked and recorded in one transaction."""

from __future__ import annotations

from dbluigi.kinds.base import (
    BuildRequest,
    Kind,
    Published,
    checked,
    located,
    previous_rows,
    record,
    transaction,
)
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    previous = previous_rows(session, request)
    statement = model.statements[0]
    with transaction(session, request):
        with located(session, model.path, statement.line, statement.sql):
            session.replace_view(model.schema, model.name, statement.sql, project.view_queries)
        outcome = checked(session, request, model.schema, model.name, previous)
        rows = session.row_count(model.schema, model.name) if model.header.checks else None
        record(session, request, rows, outcome.results)
    return Published(rows, outcome.results)


KIND = Kind("view", build)
