"""Publishing strategies, one per kind: build aside, check, swap.

- ``table`` and ``seed``: build ``<name>__dbluigi_new``, create indexes, apply the
  patch, run the checks, then swap it in and record the build, all in one
  transaction. A failed check keeps the new table as ``<name>__dbluigi_failed``
  and leaves the published table exactly as it was. (Both names are fitted into the
  target's identifier limit by ``dbluigi.names``.)
- ``view``: replace the view, check it and record it in one transaction.
- ``sql``: run the statements, the checks and the record in one transaction.
- ``python``: a ``table`` whose new table the model's ``run(ctx)`` creates (``pystep``).
- ``incremental`` and ``dump``: in ``dbluigi.incremental`` and ``dbluigi.dump``.
- ``extract``: a table copied from a source database, in ``dbluigi.extract``.

Before anything runs, a table or view model's query is EXPLAINed where the target
estimates cost (its ``max_cost`` enforced, its cost recorded); the transaction runs
under the model's timeout (see ``dbluigi.guards``).

Every database error becomes a TaskError with a failure class and the file and
line of the statement that failed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from dbluigi import guards, names, partitions, pystep
from dbluigi.checks import CheckOutcome, CheckTarget, Violation, retarget, run_checks
from dbluigi.errors import CheckFailed, DbluigiError, ProjectError, TaskError
from dbluigi.plan import Decision, PartitionDecision
from dbluigi.project import Model, Project
from dbluigi.seeds import guess_csv, read_yaml_seed, sniff_csv
from dbluigi.state import CheckResult, StateStore, TaskRecord, now
from dbluigi.targets.base import Catalog, Session, SwapHint

CRASHPOINT_ENV = "DBLUIGI_CRASHPOINT"  # test hook: "<point>:<model>" kills the process there


@dataclass(frozen=True)
class Published:
    rows: int | None
    checks: tuple[CheckResult, ...]


@dataclass(frozen=True)
class BuildRequest:
    project: Project
    model: Model
    decision: Decision
    run_id: str
    catalog: Catalog  # what existed when the run started
    started_at: datetime | None = None
    clock: float = 0.0  # time.perf_counter() at the start of the attempt
    attempt: int = 1
    explain_cost: float | None = None  # set by publish() before the strategy runs
    # no bound to check first: the build statement itself is EXPLAINed (one statement less)
    explain_with_build: bool = False
    partition: PartitionDecision | None = None  # one value of a partitioned model
    # models its check queries read (without depending on them) that are not available
    unavailable: frozenset[str] = frozenset()

    @property
    def built(self) -> Decision | PartitionDecision:
        """What this request builds: the model, or one of its partitions."""
        return self.partition or self.decision

    def existed(self, schema: str, name: str) -> bool:
        return f"{schema}.{name}" in self.catalog.kinds

    def swap_hint(self) -> SwapHint | None:
        """What the run's catalog says of the relation a first attempt replaces."""
        if self.attempt > 1:
            return None  # an earlier attempt may have changed things; let the target look
        relation = self.model.relation
        return SwapHint(self.catalog.kinds.get(relation), relation in self.catalog.viewed)


def publish(session: Session, request: BuildRequest) -> Published:
    """Build, check and publish one model; raises TaskError (or CheckFailed) on failure."""
    from dbluigi import dump, extract, incremental  # they build on this module's protocol

    strategies = {"table": _table, "seed": _table, "python": _table, "view": _view, "sql": _sql}
    strategies |= {"incremental": incremental.publish_incremental, "dump": dump.publish_dump}
    strategies |= {"extract": extract.publish_extract}
    strategy = strategies.get(request.model.kind)
    if request.partition is not None:
        strategy = _partition
    if strategy is None:
        raise TaskError(
            f"kind {request.model.kind} cannot be built by this version of dbluigi yet",
            failure_class="config",
            path=request.model.path,
            line=request.model.header.line_of("kind"),
        )
    cost: float | None = None
    try:
        request = incremental.render_watermark(session, request)  # before EXPLAIN
        if _explained_with_build(session, request):
            request = replace(request, explain_with_build=True)
        else:
            cost = _estimate_cost(session, request)
        return strategy(session, replace(request, explain_cost=cost))
    except TaskError as exc:
        if exc.explain_cost is None and request.explain_with_build:  # the build never reported it
            cost = _cost_after_failure(session, request, exc)
        if cost is not None:
            exc.explain_cost = cost
        raise
    except DbluigiError:
        raise
    except Exception as exc:  # an error the database raised outside a located statement
        error = TaskError(
            str(exc).strip(), failure_class=session.classify(exc), path=request.model.path
        )
        error.explain_cost = cost
        raise error from exc


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


class AlreadyBuilt(DbluigiError):
    """Another worker or build published this build of the model, or a newer one."""

    def __init__(self, model: str, *, same: bool, generation: int) -> None:
        what = "this build" if same else f"a newer build (generation {generation})"
        super().__init__(f"{model}: another worker or build published {what}")
        self.same = same


@contextmanager
def _transaction(session: Session, request: BuildRequest) -> Iterator[None]:
    """The model's one transaction, under its timeout (the guard must be inside it).

    Where several builds can share the target, the transaction first takes the
    model's lock, then reads its published build: a build someone else published
    meanwhile (this one, or a newer generation) is never built again or overwritten."""
    with session.transaction():
        # the lock first: waiting for another build of this model is not running past a timeout
        if session.target.supports_concurrent_writers:
            key = request.partition.value if request.partition else ""
            lock = f"dbluigi.model:{request.model.relation}[{key}]"
            session.lock_in_transaction(lock, deferred=True)  # with the read: one round trip
            stored = StateStore(session).model_state(request.model.relation, key)
            built = request.built
            if stored is not None and (
                stored[0] == built.build_id or stored[1] >= built.generation
            ):
                raise AlreadyBuilt(
                    request.model.relation + (f"[{key}]" if key else ""),
                    same=stored[0] == built.build_id,
                    generation=stored[1],
                )
        with guards.timeout(session, request.project, request.model):
            yield


def crashpoint(point: str, model: str) -> None:
    """Kill the process here when the test hook asks for it (crash-safety tests)."""
    if os.environ.get(CRASHPOINT_ENV) == f"{point}:{model}":
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def located(session: Session, path: str, line: int, sql: str) -> Iterator[None]:
    """Turn a database error raised by ``sql`` into a TaskError at its file and line."""
    try:
        yield
    except DbluigiError:
        raise
    except Exception as exc:
        offset = session.error_line(exc, sql)
        raise TaskError(
            _first_lines(str(exc)),
            failure_class=session.classify(exc),
            path=path,
            line=line + (offset - 1 if offset else 0),
        ) from exc


def prepare_aside(session: Session, request: BuildRequest) -> tuple[str, int | None]:
    """The name of the model's new table, dropped first if a crashed run (or an earlier
    attempt) left it, and the published relation's rows when a check compares with them."""
    model = request.model
    new = names.aside_name(model.name, session.target.max_identifier_bytes)
    if request.existed(model.schema, new) or request.attempt > 1:
        session.drop_relation(model.schema, new)
    return new, _previous_rows(session, request)


def _table(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    schema, name = model.schema, model.name
    failed = names.failed_name(name, session.target.max_identifier_bytes)
    new, previous = prepare_aside(session, request)
    violation: Violation | None = None
    with _transaction(session, request):
        if request.explain_with_build:  # a failure is EXPLAINed afterwards (publish)
            statement = model.statements[0]
            with located(session, model.path, statement.line, statement.sql):
                rows, cost = session.create_table_as_explained(schema, new, statement.sql)
            request = replace(request, explain_cost=cost)
        else:
            rows = _build_new(session, project, model, new, request)
        session.prepare_indexes(schema, new, model.header.indexes)
        crashpoint("after_build", model.relation)
        if model.patch is not None:
            for statement in model.patch.statements:
                sql = retarget(project, model, statement.sql, new)
                with located(session, model.patch.path, statement.line, sql):
                    session.execute(sql)
            rows = session.row_count(schema, new)
        outcome = run_checks(
            session, project, CheckTarget(model, schema, new, previous, request.unavailable)
        )
        crashpoint("after_checks", model.relation)
        if outcome.passed:
            with located(session, model.path, 1, ""):
                session.swap(
                    schema,
                    new,
                    name,
                    model.header.indexes,
                    project.view_queries,
                    request.swap_hint(),
                )
                if request.existed(schema, failed):
                    session.drop_relation(schema, failed)  # a success supersedes the kept failure
            _record(session, request, rows, outcome.results)
            crashpoint("before_commit", model.relation)
        elif model.kind == "python":  # roll back what the step changed besides its table
            raise _check_failed(outcome, outcome.violations[0], kept=None)
        else:
            session.rename(schema, new, failed)
            violation = outcome.violations[0]
    crashpoint("after_commit", model.relation)
    if violation is not None:
        raise _check_failed(outcome, violation, kept=f"{schema}.{failed}")
    return Published(rows, outcome.results)


def _partition(session: Session, request: BuildRequest) -> Published:
    """One value of a partitioned model: its rows into its own table, and its state row."""
    model, part = request.model, request.partition
    assert part is not None
    statement = model.statements[0]
    with _transaction(session, request):
        sql = partitions.partition_sql(model, part.value)
        with located(session, model.path, statement.line, sql):
            rows = partitions.build_partition(session, model, part.value)
        _record(session, request, rows, ())
    return Published(rows, ())


def _build_new(
    session: Session, project: Project, model: Model, new: str, request: BuildRequest | None = None
) -> int:
    if request is not None and request.decision.partitions:  # gather the partitions' tables
        values = [p.value for p in request.decision.partitions]
        partitions.drop_stale_partitions(session, model, values, request.catalog.kinds)
        with located(session, model.path, 1, ""):
            return session.create_table_as(
                model.schema,
                new,
                partitions.gather_sql(
                    model, values, project.dialect, session.target.max_identifier_bytes
                ),
            )
    if model.kind == "python":
        return pystep.run_step(session, project, model, new)
    if model.kind == "extract":
        from dbluigi import extract

        return extract.load_new(session, project, model, new)
    if model.kind == "table":
        statement = model.statements[0]
        with located(session, model.path, statement.line, statement.sql):
            return session.create_table_as(model.schema, new, statement.sql)
    path = project.root / model.path
    overrides = project.config.seed_types.get(model.relation, {})
    try:
        if model.format == "csv":
            guess = guess_csv(path, overrides=overrides)
            if guess is not None:  # a large file: typed while it loads, where the target can
                with located(session, model.path, 1, ""):
                    return session.load_csv_typing(
                        model.schema,
                        new,
                        path,
                        guess.columns,
                        lambda: sniff_csv(path, guess=guess).columns,
                    )
            table = sniff_csv(path, overrides=overrides)
        else:
            table, rows = read_yaml_seed(path, overrides=overrides)
    except ProjectError as exc:
        exc.path = model.path  # as the user knows it, relative to the project
        raise
    with located(session, model.path, 1, ""):
        if model.format == "csv":
            return session.load_csv(model.schema, new, path, table.columns)
        return session.load_rows(model.schema, new, table.columns, rows)


def _view(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    previous = _previous_rows(session, request)
    statement = model.statements[0]
    with _transaction(session, request):
        with located(session, model.path, statement.line, statement.sql):
            session.replace_view(model.schema, model.name, statement.sql, project.view_queries)
        outcome = run_checks(
            session,
            project,
            CheckTarget(model, model.schema, model.name, previous, request.unavailable),
        )
        if not outcome.passed:
            raise _check_failed(outcome, outcome.violations[0], kept=None)  # rolls the view back
        rows = session.row_count(model.schema, model.name) if model.header.checks else None
        _record(session, request, rows, outcome.results)
    return Published(rows, outcome.results)


def _sql(session: Session, request: BuildRequest) -> Published:
    model, project = request.model, request.project
    affected = 0
    with _transaction(session, request):
        for statement in model.statements:
            with located(session, model.path, statement.line, statement.sql):
                count = session.execute(statement.sql)
            affected += max(count, 0)
        outcome = run_checks(
            session,
            project,
            CheckTarget(model, model.schema, model.name, None, request.unavailable),
        )
        if not outcome.passed:
            raise _check_failed(outcome, outcome.violations[0], kept=None)  # rolls everything back
        _record(session, request, affected, outcome.results)
    return Published(affected, outcome.results)


def _record(
    session: Session, request: BuildRequest, rows: int | None, checks: tuple[CheckResult, ...]
) -> None:
    """Record the build and its successful attempt in the publishing transaction."""
    d = request.built
    StateStore(session).record_success(
        TaskRecord(
            run_id=request.run_id,
            model=request.model.relation,
            partition=request.partition.value if request.partition else "",
            status="success",
            started_at=request.started_at or now(),
            duration_s=time.perf_counter() - request.clock if request.clock else 0.0,
            attempt=request.attempt,
            reason=d.reason,
            rows=rows,
            fingerprint=d.fingerprint,
            build_id=d.build_id,
            explain_cost=request.explain_cost,
            checks=checks,
        ),
        kind=request.model.kind,
        content_fp=d.content_fp,
        generation=d.generation,
    )


def _previous_rows(session: Session, request: BuildRequest) -> int | None:
    """Rows of the published relation, counted only when a header check compares with them."""
    model = request.model
    if not any(c.factor is not None for c in model.header.checks):
        return None
    if not request.existed(model.schema, model.name):
        return None
    return session.row_count(model.schema, model.name)


def _check_failed(outcome: CheckOutcome, first: Violation, *, kept: str | None) -> CheckFailed:
    failed = [v.name for v in outcome.violations]
    message = first.message
    if len(failed) > 1:
        message += f" (and {len(failed) - 1} more failed: {', '.join(failed[1:])})"
    message += (
        f"; the failed table is kept as {kept} for inspection"
        if kept
        else "; nothing was published"
    )
    return CheckFailed(
        message,
        check_sql=first.sql,
        columns=first.columns,
        rows=first.rows,
        path=first.path,
        line=first.line,
        results=outcome.results,
    )


def _first_lines(text: str, limit: int = 6, width: int = 500) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    # a CSV error quotes the offending row, which may be megabytes long
    return "\n".join(
        line if len(line) <= width else line[:width] + " ..." for line in lines[:limit]
    )
