"""The ``sql`` kind: a file of statements, its checks and its record in one transaction."""

from __future__ import annotations

from dbluigi.kinds.base import BuildRequest, Kind, Published, checked, located, record, transaction
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    model = request.model
    affected = 0
    with transaction(session, request):
        for statement in model.statements:
            with located(session, model.path, statement.line, statement.sql):
                count = session.execute(statement.sql)
            affected += max(count, 0)
        outcome = checked(session, request, model.schema, model.name)  # rolls everything back
        record(session, request, affected, outcome.results)
    return Published(affected, outcome.results)


KIND = Kind("sql", build)
