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
    opaque_modifiers,
    point_at,
    record,
    transaction,
)
from dbluigi.relation import Relation
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    if request.model.creates and opaque_modifiers(request):
        return _replay_in_place(session, request)
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


def _replay_in_place(session: Session, request: BuildRequest) -> Published:
    """The chain of a file whose modifiers include a procedure call, which can only write
    the tables under their own names: in one transaction, drop the tables the file
    creates, run it, run every modifier as written, check, record. Readers wait for the
    transaction and see the old tables or the new ones; views over them (which the drop
    takes along) are rebuilt by their own models in the same run."""
    model = request.model
    affected = 0
    with transaction(session, request):
        for created in model.creates:
            table = Relation(created)
            with located(session, model.path, model.line_of_write(created) or 1, ""):
                session.drop_relation(table.schema, table.name, cascade=True)
        for statement in model.statements:
            with located(session, model.path, statement.line, statement.sql):
                count = session.execute(statement.sql)
            affected += max(count, 0)
        modified = apply_modifiers(session, request, {}, in_place=True)
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
