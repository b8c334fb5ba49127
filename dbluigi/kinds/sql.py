"""The ``sql`` kind: a file of statements, its checks and its record in one transaction.

A ``sql`` file that CREATEs tables produces them (``dbluigi.writes``): its build is a
replay. Each table it creates is built aside — the CREATE pointed at
``<name>__dbluigi_new`` — then the modifiers of those tables run on the new tables in
order, each table is swapped in, and the checks run; all in one transaction, so a
failure anywhere leaves every published table exactly as it was, and no reader ever sees
a table without all its modifiers. Views it creates are replaced in place.
"""

from __future__ import annotations

from dbluigi import names
from dbluigi.kinds.base import (
    BuildRequest,
    Kind,
    Published,
    apply_modifiers,
    checked,
    located,
    point_at,
    record,
    transaction,
)
from dbluigi.relation import Relation
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    aside = _aside_tables(session, request)
    affected = 0
    with transaction(session, request):
        for relation, new in aside.items():
            session.drop_relation(Relation(relation).schema, new)  # a crash's leftover
        for statement in model.statements:
            sql = (
                point_at(project, statement.sql, aside)
                if statement.unparsed is None
                else statement.sql
            )
            with located(session, model.path, statement.line, sql):
                count = session.execute(sql)
            affected += max(count, 0)
        modified = apply_modifiers(session, request, aside)
        for relation, new in aside.items():
            table = Relation(relation)
            with located(session, model.path, model.line_of_write(relation) or 1, ""):
                session.swap(table.schema, new, table.name, (), project.view_queries, None)
        outcome = checked(session, request, model.schema, model.name)  # rolls everything back
        record(session, request, affected, outcome.results, modified)
    return Published(affected, outcome.results)


def _aside_tables(session: Session, request: BuildRequest) -> dict[str, str]:
    """The tables the file creates (not its views), each with its new table's name."""
    model = request.model
    views = {
        line for line, kind in ((s.line, s.kind) for s in model.statements) if kind == "create_view"
    }
    limit = session.target.max_identifier_bytes
    return {
        created: names.aside_name(Relation(created).name, limit)
        for created in model.creates
        if model.line_of_write(created) not in views
    }


KIND = Kind("sql", build)
