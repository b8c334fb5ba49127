"""Publish one model: settle its SQL, estimate its cost, and hand it to its kind.

The kinds themselves (how a table, a view, a seed, an incremental model ... is built,
checked and swapped in) live in ``dbluigi.kinds``, one module each, behind one
protocol. This module is what runs them: before anything runs, a table or view
model's query is EXPLAINed where the target estimates cost (its ``max_cost``
enforced, its cost recorded), and every database error becomes a TaskError with a
failure class and the file and line of the statement that failed.
"""

from __future__ import annotations

from dataclasses import replace

from dbluigi import guards, partitions
from dbluigi.errors import DbluigiError, TaskError
from dbluigi.kinds import kind_of
from dbluigi.kinds.base import AlreadyBuilt, BuildRequest, Published, located
from dbluigi.targets.base import Session

__all__ = ["AlreadyBuilt", "BuildRequest", "Published", "publish"]


def publish(session: Session, request: BuildRequest) -> Published:
    """Build, check and publish one model; raises TaskError (or CheckFailed) on failure."""
    kind = kind_of(request)
    if kind is None:
        raise TaskError(
            f"kind {request.model.kind} cannot be built by this version of dbluigi yet",
            failure_class="config",
            path=request.model.path,
            line=request.model.header.line_of("kind"),
        )
    if request.project.config.test_before_build:
        from dbluigi.unittests import gate

        gate(request.project, request.model.relation)
    cost: float | None = None
    try:
        request = kind.prepare(session, request)  # before EXPLAIN: it reads the same SQL
        if _explained_with_build(session, request):
            request = replace(request, explain_with_build=True)
        else:
            cost = _estimate_cost(session, request)
        return kind.build(session, replace(request, explain_cost=cost))
    except TaskError as exc:
        if exc.explain_cost is None and request.explain_with_build:  # the build never reported it
            cost = _cost_after_failure(session, request, exc)
        if cost is not None:
            raise exc.with_cost(cost) from exc
        raise
    except DbluigiError:
        raise
    except Exception as exc:  # an error the database raised outside a located statement
        error = TaskError(
            str(exc).strip(), failure_class=session.classify(exc), path=request.model.path
        )
        raise error.with_cost(cost) from exc


def _estimate_cost(session: Session, request: BuildRequest) -> float | None:
    """EXPLAIN a table or view model's query before anything runs; enforce its max_cost."""
    model, project = request.model, request.project
    if model.kind not in guards.COST_KINDS:
        return None
    statement = model.statements[0]
    sql = statement.sql
    if model.header.partition is not None:
        if request.partition is None:
            return None  # gathering the partitions: each partition was EXPLAINed
        sql = partitions.partition_sql(model, request.partition.value)
    if guards.max_cost_of(project, model) is None:
        try:  # only recorded: a query that cannot be planned fails in the build, located
            return session.explain_cost(sql)
        except Exception:
            return None
    with located(session, model.path, statement.line, sql):
        cost = session.explain_cost(sql)
    guards.enforce_cost(project, model, cost)
    return cost


def _explained_with_build(session: Session, request: BuildRequest) -> bool:
    """A table model with no cost bound: its estimate comes with its CREATE TABLE AS
    (``Session.create_table_as_explained``) instead of a separate EXPLAIN first."""
    model = request.model
    return (
        model.kind == "table"
        and session.target.estimates_cost
        and model.header.partition is None
        and guards.max_cost_of(request.project, model) is None
    )


COST_AFTER_FAILURE_S = 5.0  # an EXPLAIN after a failure never waits longer than this


def _cost_after_failure(session: Session, request: BuildRequest, exc: TaskError) -> float | None:
    """The estimate of a query whose build failed, so history shows it all the same: not
    after a timeout (planning may wait on the locks the build waited on), and bounded."""
    if exc.failure_class == "timeout":
        return None
    try:
        with session.transaction(), session.statement_timeout(COST_AFTER_FAILURE_S):
            return session.explain_cost(request.model.statements[0].sql)
    except Exception:
        return None
