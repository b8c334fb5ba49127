"""The protocol every kind builds on: the request, the model's transaction, and the two
sequences that publish a table.

A kind is a ``Kind``: a name, the function that builds a ``BuildRequest`` and returns
what it ``Published``, and optionally a ``prepare`` step run before anything else (the
incremental kind fills ``{{ watermark }}`` there, so EXPLAIN and the build see the same
SQL). Kinds use only the public names of this module, never each other's.

``build_aside`` is the sequence of every kind that builds a whole table::

    prepare_aside:  drop a leftover <name>__dbluigi_new, count the published rows if asked
    transaction:    lock the model, check nobody published this build (or a newer one)
      fill          the kind's own step: create and fill <name>__dbluigi_new
      indexes       the -- index: indexes (after the patch, when the kind asks)
      patch         <name>.patch.sql, its references pointed at the new table
      validate      a kind's own precondition (the incremental key), as a check
      checks        header checks, .check.sql queries, .check.py
      passed:       swap in, drop a kept failure, record the build     -> commit
      failed:       rename to <name>__dbluigi_failed (or roll back)    -> commit, CheckFailed

``upsert_aside`` is the sequence of the kinds that merge new rows into a published
table (incremental models and incremental source copies): the new rows go aside, are
validated and upserted by key, then the checks run on the merged table; a failure rolls
everything back. ``needs_full_build`` and ``highest_value`` are what both kinds ask
before choosing between the two.

Those kinds run on every build (``plan.runs_each_build``): a run for new rows that
changed none keeps the published build id, one that changed rows records the next
(``plan.after_run``). Both sequences record the watermark a build started from
(``BuildRequest.watermark``) and the one it reached (``watermark=`` the column).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from dbluigi import guards, names, pystep, versions
from dbluigi.checks import CheckOutcome, CheckTarget, Violation, point_at, retarget, run_checks
from dbluigi.errors import CheckFailed, DbluigiError, TaskError
from dbluigi.headers import IndexSpec
from dbluigi.lazy import exp
from dbluigi.plan import Decision, PartitionDecision, after_run, stored_inputs
from dbluigi.project import Model, Project
from dbluigi.state import CheckResult, StateStore, TaskRecord, now
from dbluigi.targets.base import Catalog, Session, SwapHint, table_expr

CRASHPOINT_ENV = "DBLUIGI_CRASHPOINT"  # test hook: "<point>:<model>" kills the process there


@dataclass(frozen=True)
class Published:
    """What a build published: its rows (None when unknown) and its checks' results."""

    rows: int | None
    checks: tuple[CheckResult, ...]


@dataclass(frozen=True)
class Filled:
    """What a kind's fill step made of the new table: its rows, and the planner's
    estimate when the statement that filled it was EXPLAINed with it."""

    rows: int
    explain_cost: float | None = None


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
    explain_cost: float | None = None  # set by publish() before the kind runs
    # no bound to check first: the build statement itself is EXPLAINed (one statement less)
    explain_with_build: bool = False
    partition: PartitionDecision | None = None  # one value of a partitioned model
    # models its check queries read (without depending on them) that are not available
    unavailable: frozenset[str] = frozenset()
    watermark: Any = None  # incremental: the highest watermark published when it started
    stored: bool | None = None  # whether the state had the model's row when the run started

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

    def check_target(self, schema: str, name: str, previous: int | None) -> CheckTarget:
        """What this build's checks look at: ``schema.name`` standing for the model."""
        return CheckTarget(self.model, schema, name, previous, self.unavailable)


Build = Callable[[Session, BuildRequest], Published]
Fill = Callable[[Session, BuildRequest, str], Filled]  # (session, request, new table name)


def _unchanged(session: Session, request: BuildRequest) -> BuildRequest:
    return request


@dataclass(frozen=True)
class Kind:
    """One kind of model: how a request is built, and what is settled before (``prepare``
    runs before the cost estimate: what it renders is what is EXPLAINed and built)."""

    name: str
    build: Build
    prepare: Callable[[Session, BuildRequest], BuildRequest] = field(default=_unchanged)
    partitioned: bool = False  # a -- partition: header splits its query into one task per value


class AlreadyBuilt(DbluigiError):
    """Another worker or build published this build of the model, or a newer one."""

    def __init__(self, model: str, *, same: bool, generation: int) -> None:
        what = "this build" if same else f"a newer build (generation {generation})"
        super().__init__(f"{model}: another worker or build published {what}")
        self.same = same


@contextmanager
def transaction(session: Session, request: BuildRequest) -> Iterator[None]:
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
            if isinstance(built, Decision) and built.tentative:
                # it builds on the stored build: anything else means someone built since
                if stored is not None and stored != (built.build_id, built.generation):
                    raise AlreadyBuilt(
                        request.model.relation,
                        same=stored[0] == after_run(built, changed=True).build_id,
                        generation=stored[1],
                    )
            elif stored is not None and (
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
            first_lines(str(exc)),
            failure_class=session.classify(exc),
            path=path,
            line=line + (offset - 1 if offset else 0),
        ) from exc


def first_lines(text: str, limit: int = 6, width: int = 500) -> str:
    """The first lines of a database error, each cut to ``width`` characters."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    # a CSV error quotes the offending row, which may be megabytes long
    return "\n".join(
        line if len(line) <= width else line[:width] + " ..." for line in lines[:limit]
    )


def prepare_aside(session: Session, request: BuildRequest) -> tuple[str, int | None]:
    """The name of the model's new table, dropped first if a crashed run (or an earlier
    attempt) left it, and the published relation's rows when a check compares with them."""
    model = request.model
    new = names.aside_name(model.name, session.target.max_identifier_bytes)
    if request.existed(model.schema, new) or request.attempt > 1:
        session.drop_relation(model.schema, new)
    return new, previous_rows(session, request)


def previous_rows(session: Session, request: BuildRequest) -> int | None:
    """Rows of the published relation, counted only when a header check compares with them."""
    model = request.model
    if not any(c.factor is not None for c in model.header.checks):
        return None
    if not request.existed(model.schema, model.name):
        return None
    return session.row_count(model.schema, model.name)


def apply_patch(session: Session, request: BuildRequest, new: str) -> bool:
    """Run the model's ``.patch.sql`` on its new table; whether there was one."""
    model, project = request.model, request.project
    if model.patch is None:
        return False
    for statement in model.patch.statements:
        sql = retarget(project, model, statement.sql, new)
        with located(session, model.patch.path, statement.line, sql):
            session.execute(sql)
    return True


def split_modifiers(request: BuildRequest) -> tuple[list[str], list[str]]:
    """The modifiers of the relation being built that run on its new table, and those from
    the first that cannot be pointed at it on (``_opaque``: run under its own name, after
    the swap)."""
    project = request.project
    modifiers = list(project.chains.modifiers.get(request.model.relation, ()))
    first = next(
        (
            i
            for i, m in enumerate(modifiers)
            if project.models[m].kind != "python" and _opaque(project.models[m])
        ),
        len(modifiers),
    )
    return modifiers[:first], modifiers[first:]


def _opaque(modifier: Model) -> bool:
    """Whether the modifier's statements cannot all be pointed at a new table: one of them
    runs as written (sqlglot cannot read it), or none names a relation it modifies (its
    writes are declared with ``-- modifies:``, none inferred: a procedure call)."""
    if any(st.unparsed is not None for st in modifier.statements):
        return True
    inferred = {written for written, _ in modifier.write_lines}
    return not any(w in inferred for w in modifier.modifies)


def apply_modifiers(
    session: Session,
    request: BuildRequest,
    aside: Mapping[str, str],
    *,
    in_place: bool = False,
    only: Sequence[str] | None = None,
) -> tuple[TaskRecord, ...]:
    """Run the modifiers of the relations being built (``dbluigi.writes``) on their new
    tables, in order; returns their attempts, which ``record`` stores with the build
    (a build that is not published records none of them as built).

    A modifier whose statements name none of the relations it modifies (a ``CALL`` of a
    procedure declared with ``-- modifies:``) cannot be pointed at the new table: that is a
    ``config`` failure rather than a change lost at the swap."""
    project = request.project
    modifiers = project.chains.modifiers.get(request.model.relation, ()) if only is None else only
    records = []
    for name in modifiers:
        modifier = project.models[name]
        started, clock = now(), time.perf_counter()
        affected = 0
        if modifier.kind == "python":
            pystep.run_modifier(session, project, modifier, aside)
            affected = -1  # a step's changes are its own to count
        pointed = [
            (st, st.sql if in_place else point_at(project, st.sql, aside))
            for st in modifier.statements
        ]
        if not in_place and modifier.kind != "python" and _opaque(modifier):
            raise TaskError(
                f"{modifier.relation} modifies {', '.join(modifier.modifies)} through "
                "statements that do not name it, so dbluigi cannot apply them to the new "
                "table it builds",
                failure_class="config",
                path=modifier.path,
                line=modifier.header.line_of("modifies") or modifier.statements[0].line,
                hint="write the change as SQL naming the table (INSERT, UPDATE, DELETE ...) in "
                "this file, or make the procedure take the table's name",
            )
        for statement, sql in pointed:
            with located(session, modifier.path, statement.line, sql):
                count = session.execute(sql)
            affected = -1 if count < 0 or affected < 0 else affected + count
        crashpoint("after_modifier", modifier.relation)
        d = request.built
        records.append(
            TaskRecord(
                run_id=request.run_id,
                model=modifier.relation,
                status="success",
                started_at=started,
                duration_s=time.perf_counter() - clock,
                attempt=request.attempt,
                path=modifier.path,
                reason=d.reason,
                rows=None if affected < 0 else affected,  # unknown (a CALL) is not 0
                fingerprint=d.fingerprint,
                build_id=d.build_id,
            )
        )
    return tuple(records)


Validate = Callable[[Session, BuildRequest, str], CheckOutcome]


def build_aside(
    session: Session,
    request: BuildRequest,
    fill: Fill,
    *,
    indexes: Sequence[IndexSpec] | None = None,
    indexes_after_patch: bool = False,
    validate: Validate | None = None,
    keep_failed: bool = True,
    watermark: str | None = None,
) -> Published:
    """Build the model's table aside, check it and swap it in (see the module docstring).

    ``indexes`` defaults to the header's; ``validate`` checks what the kind needs of
    the new rows before the indexes (a failure is kept like a failed check); a kind
    whose fill changed more than its table (a Python step) passes ``keep_failed=False``:
    a failed check then rolls everything back. ``watermark`` names the column whose
    highest value the build records as the watermark it reached."""
    model, project = request.model, request.project
    schema, name = model.schema, model.name
    failed = names.failed_name(name, session.target.max_identifier_bytes)
    wanted = model.header.indexes if indexes is None else tuple(indexes)
    new, previous = prepare_aside(session, request)
    violation: Violation | None = None
    with transaction(session, request):
        filled = fill(session, request, new)
        rows = filled.rows
        if filled.explain_cost is not None:
            request = replace(request, explain_cost=filled.explain_cost)
        if not indexes_after_patch:
            session.prepare_indexes(schema, new, wanted)
        crashpoint("after_build", model.relation)
        patched = apply_patch(session, request, new)
        aside, in_place = split_modifiers(request)
        modified = apply_modifiers(session, request, {model.relation: new}, only=aside)
        if modified or patched:
            rows = session.row_count(schema, new)
        outcome = validate(session, request, new) if validate else CheckOutcome()
        swapped = False
        if outcome.passed:
            if indexes_after_patch:
                session.prepare_indexes(schema, new, wanted)
            checked = new
            if in_place:
                # modifiers that only write the table under its name run once it has it,
                # in this transaction; the checks then look at it there, and a failure
                # rolls everything back (nothing is kept aside)
                with located(session, model.path, 1, ""):
                    session.swap(
                        schema, new, name, wanted, project.view_queries, request.swap_hint()
                    )
                swapped, checked = True, name
                modified += apply_modifiers(session, request, {}, in_place=True, only=in_place)
                rows = session.row_count(schema, name)
            reached = reached_watermark(session, schema, checked, watermark, request.watermark)
            outcome = run_checks(session, project, request.check_target(schema, checked, previous))
        crashpoint("after_checks", model.relation)
        if outcome.passed:
            with located(session, model.path, 1, ""):
                if not swapped:
                    session.swap(
                        schema, new, name, wanted, project.view_queries, request.swap_hint()
                    )
                if request.existed(schema, failed):
                    session.drop_relation(schema, failed)  # a success supersedes the kept failure
            record(session, request, rows, outcome.results, modified, watermark=reached)
            crashpoint("before_commit", model.relation)
        elif not keep_failed or swapped:
            raise check_failed(outcome, outcome.violations[0], kept=None)
        else:
            session.rename(schema, new, failed)
            violation = outcome.violations[0]
    crashpoint("after_commit", model.relation)
    if violation is not None:
        raise check_failed(outcome, violation, kept=f"{schema}.{failed}")
    return Published(rows, outcome.results)


def upsert_aside(
    session: Session,
    request: BuildRequest,
    fill: Fill,
    *,
    key: Sequence[str],
    line: int,
    before: Callable[[Session], None] | None = None,
    compare_columns: Callable[[tuple[str, ...], tuple[str, ...]], None],
    validate: Validate | None = None,
    ensure_indexes: Sequence[IndexSpec] = (),
    watermark: str | None = None,
) -> Published:
    """Merge new rows into the published table by ``key``, all in one transaction.

    ``before`` refuses what cannot be upserted into (a stale unique key);
    ``compare_columns(published, new)`` raises when the new rows' columns differ;
    ``validate`` checks the new rows (one per key). The checks run on the merged table,
    and a failure rolls the upsert back. A build reports the rows it inserted or
    changed (``Session.upsert``): a row read again as it was is no change, and a run
    that changed none keeps its build id. ``watermark`` names the column whose highest
    value among the new rows (or the one it started from) is the watermark it reached."""
    model, project = request.model, request.project
    schema, name = model.schema, model.name
    new, previous = prepare_aside(session, request)
    with transaction(session, request):
        if before is not None:
            before(session)
        published = session.columns(schema, name)
        fill(session, request, new)
        modified = apply_modifiers(session, request, {model.relation: new})  # each batch
        columns = session.columns(schema, new)
        compare_columns(published, columns)
        if validate is not None:
            keys = validate(session, request, new)
            if not keys.passed:
                raise check_failed(keys, keys.violations[0], kept=None)
        reached = reached_watermark(session, schema, new, watermark, request.watermark)
        with located(session, model.path, line, ""):
            if ensure_indexes:
                session.ensure_indexes(schema, name, ensure_indexes)
            upserted = session.upsert(schema, name, new, list(key), columns)
            session.drop_relation(schema, new)
        crashpoint("after_build", model.relation)
        outcome = run_checks(session, project, request.check_target(schema, name, previous))
        if not outcome.passed:  # rolls the upsert back: the published table is as it was
            raise check_failed(outcome, outcome.violations[0], kept=None)
        record(
            session,
            request,
            upserted,
            outcome.results,
            modified,
            changed=upserted > 0,
            watermark=reached,
        )
        crashpoint("before_commit", model.relation)
    return Published(upserted, outcome.results)


def needs_full_build(session: Session, request: BuildRequest) -> bool:
    """Whether a kind that can upsert must build the table in full this time: asked to
    (``--full-refresh``), or no table is published."""
    if request.decision.full_refresh:
        return True
    model = request.model
    if request.attempt > 1:  # an earlier attempt may have changed things
        return session.relation_kind(model.schema, model.name) != "table"
    return request.catalog.kinds.get(model.relation) != "table"


def highest_value(session: Session, model: Model, column: str) -> Any:
    """The highest value of ``column`` in the published table (None when it is empty).

    Read before the model's transaction: a value older than the latest only re-reads
    rows, which an upsert makes harmless."""
    return _highest(session, model.schema, model.name, column)


def _highest(session: Session, schema: str, name: str, column: str) -> Any:
    select = exp.select(exp.func("max", exp.column(column, quoted=True))).from_(
        table_expr(schema, name)
    )
    return session.query(select.sql(dialect=session.target.dialect)).rows[0][0]


def reached_watermark(
    session: Session, schema: str, name: str, column: str | None, since: Any
) -> Any:
    """The watermark a build reached: the highest value of ``column`` in ``schema.name``
    (the new rows, or the new table), or ``since`` when it was higher or there are none."""
    if column is None:
        return None
    found = find_column(column, session.columns(schema, name))
    if found is None:
        return since
    top = _highest(session, schema, name, found)
    if top is None or since is None:
        return since if top is None else top
    try:
        return max(since, top)
    except TypeError:  # values of two types (a column retyped by a full refresh): the new one
        return top


def watermark_text(value: Any) -> str | None:
    """A watermark as the state stores and shows it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def column_change(published: tuple[str, ...], built: tuple[str, ...]) -> str | None:
    """How a table's columns changed ("new: a; missing: b"), or None when they did not
    (unquoted names fold, so case alone is no change)."""
    if {c.lower() for c in published} == {c.lower() for c in built}:
        return None
    added = [c for c in built if find_column(c, published) is None]
    gone = [c for c in published if find_column(c, built) is None]
    parts = (
        f"new: {', '.join(added)}" if added else "",
        f"missing: {', '.join(gone)}" if gone else "",
    )
    return "; ".join(part for part in parts if part)


def find_column(column: str, columns: tuple[str, ...]) -> str | None:
    """``column`` among ``columns``: exactly, else ignoring case (unquoted names fold)."""
    if column in columns:
        return column
    folded = [c for c in columns if c.lower() == column.lower()]
    return folded[0] if len(folded) == 1 else None


def record(
    session: Session,
    request: BuildRequest,
    rows: int | None,
    checks: tuple[CheckResult, ...],
    modifiers: Sequence[TaskRecord] = (),
    *,
    changed: bool = True,
    watermark: Any = None,
) -> None:
    """Record the build and its successful attempt (and those of the modifiers applied
    with it) in the publishing transaction.

    A tentative build (``plan.after_run``) that ``changed`` nothing keeps the published
    build id; ``watermark`` is the one the build reached (``reached_watermark``)."""
    d = request.built
    whole = request.partition is None  # a partition's table is not an output of its own
    outputs = versions.output_relations(request.model) if whole else ()
    if isinstance(d, Decision):
        d = after_run(d, changed=changed)
        modifiers = [replace(m, fingerprint=d.fingerprint, build_id=d.build_id) for m in modifiers]
    store = StateStore(session)
    store.record_tasks(modifiers)
    store.record_success(
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
            watermark_from=watermark_text(request.watermark),
            watermark_to=watermark_text(watermark),
        ),
        kind=request.model.kind,
        content_fp=d.content_fp,
        generation=d.generation,
        output_version=session.output_version_sql(outputs) if outputs else None,
        inputs={**stored_inputs(request.decision), **dict(request.decision.inputs)},
        stored=request.stored if whole else None,
        variant=(request.model.state_variant or None) if whole else None,
    )


def check_failed(outcome: CheckOutcome, first: Violation, *, kept: str | None) -> CheckFailed:
    """The error of a failed check: the first violation, what else failed, what was kept."""
    failed = [v.name for v in outcome.violations]
    message = first.message
    if len(failed) > 1:
        message += f" (and {len(failed) - 1} more failed: {', '.join(failed[1:])})"
    message += (
        f"; the failed table is kept as {kept} for inspection"
        if kept
        else "; nothing was published"
    )
    return CheckFailed.from_violation(first, message=message, results=outcome.results)


def checked(
    session: Session,
    request: BuildRequest,
    schema: str,
    name: str,
    previous: int | None = None,
) -> CheckOutcome:
    """Run the checks of a relation changed in place (a view, a ``sql`` model, a dump):
    a failure raises, rolling the model's transaction back."""
    outcome = run_checks(session, request.project, request.check_target(schema, name, previous))
    if not outcome.passed:
        raise check_failed(outcome, outcome.violations[0], kept=None)
    return outcome


__all__ = [
    "AlreadyBuilt",
    "Build",
    "BuildRequest",
    "Fill",
    "Filled",
    "Kind",
    "Published",
    "apply_modifiers",
    "apply_patch",
    "build_aside",
    "check_failed",
    "checked",
    "column_change",
    "crashpoint",
    "find_column",
    "first_lines",
    "highest_value",
    "located",
    "needs_full_build",
    "point_at",
    "prepare_aside",
    "previous_rows",
    "reached_watermark",
    "record",
    "transaction",
    "upsert_aside",
    "watermark_text",
]
