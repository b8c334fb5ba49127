"""The ``sql`` kind: a file of statements, its checks and its record in one transaction.

A ``sql`` file that CREATEs tables produces them (``dbluigi.writes``), and its build is
a replay, in one transaction: the tables it creates are dropped (unless the file drops
them itself), the file runs as written, then every modifier of those tables runs as
written, in order, and the checks run. Both targets have transactional DDL, so a failure
anywhere leaves every published table exactly as it was, and a reader sees the old tables
or the new ones with all their modifiers, never a table without them. The file's own
index and constraint names, its views and the procedures its modifiers call all work as
they would when the file is run by hand.
"""

from __future__ import annotations

from dbluigi.kinds.base import (
    BuildRequest,
    Kind,
    Published,
    apply_modifiers,
    checked,
    located,
    record,
    transaction,
)
from dbluigi.relation import Relation
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    model = request.model
    affected = 0
    with transaction(session, request):
        if not any(st.kind == "drop" for st in model.statements):
            # a replay starts from nothing; a view over the table (another model's, or
            # the application's) makes the drop fail rather than disappear with it
            # the last created first: a view of the file over a table of the file
            for created in sorted(
                model.created, key=lambda c: model.line_of_write(c) or 0, reverse=True
            ):
                table = Relation(created)
                if request.attempt == 1 and not request.existed(table.schema, table.name):
                    continue  # not there when the run started: no round trip to look
                with located(session, model.path, model.line_of_write(created) or 1, ""):
                    session.drop_relation(table.schema, table.name)
        for statement in model.statements:
            with located(session, model.path, statement.line, statement.sql):
                count = session.execute(statement.sql)
            affected += max(count, 0)
        modified = apply_modifiers(session, request, {}, in_place=True)
        outcome = checked(session, request, model.schema, model.name)  # rolls everything back
        record(session, request, affected, outcome.results, modified)
    return Published(affected, outcome.results)


KIND = Kind("sql", build)
