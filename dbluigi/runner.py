"""One run of ``build``, ``rebuild`` or ``check``: plan, dispatch, record, summarize.

Plain Python: the executor is passed in (``dispatch``), so luigi stays in its
adapter module. A ``Run`` is what every worker shares: the project, the plan
decided once at the start, and a way to execute one model (with its retries)
and record the attempt in ``task_runs``. Results are read back from the audit
tables at the end, so they are the same whether tasks ran in this process, in
forked workers or on other machines.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from dbluigi import partitions, versions
from dbluigi.artifact import write_run_artifact
from dbluigi.audit import SlowTask, slow_tasks
from dbluigi.errors import (
    CheckFailed,
    DbluigiError,
    FailureClass,
    TargetError,
    TaskError,
    UsageError,
    as_dbluigi,
)
from dbluigi.guards import ensure_names_fit, ensure_supported
from dbluigi.kinds.extract import read_versions
from dbluigi.names import STATE_SCHEMA
from dbluigi.partitions import partition_values
from dbluigi.plan import (
    UPSTREAM_UNCHANGED,
    Decision,
    PartitionDecision,
    Plan,
    after_run,
    make_plan,
    partition_decisions,
    partition_query_fp,
    settle,
)
from dbluigi.project import Model, Project
from dbluigi.publish import AlreadyBuilt, BuildRequest, publish
from dbluigi.relation import Relation
from dbluigi.selectors import TargetState, select
from dbluigi.state import (
    RUN_OPTIONS,
    CheckResult,
    ModelState,
    StateStore,
    TaskRecord,
    TaskResult,
    TaskStatus,
    new_run_id,
    now,
)
from dbluigi.targets.base import Catalog, Session, Target

RUN_LOCK = "dbluigi.run:{run_id}"  # held by a running build's own session, to tell it is alive
RETRY_DELAY_S = 1.0  # the first wait between attempts: it doubles each time,
RETRY_MAX_DELAY_S = 30.0  # up to this, and each wait is jittered (see ``retry_delay``)
NOT_RETRIED = (
    "not retried (retries: {retries}): the error is not transient; only a lost "
    "connection, a deadlock, a serialization failure or a lock timeout is retried"
)
_sleep = time.sleep  # the wait between attempts (tests record it instead of waiting)

# (model, "start" | "success" | "failed" | "skipped" | "up to date")
EventCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class RunOptions:
    command: str = "build"
    selectors: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    workers: int | None = None  # None: the target's default (``Session.default_workers``)
    fail_fast: bool = False
    force: bool = False  # rebuild: every selected model runs, with a new build id
    full_refresh: bool = False  # selected incremental models are rebuilt from scratch
    scheduler_url: str | None = None  # a luigid central scheduler shared with other workers
    partitions: tuple[str, ...] = ()  # rebuild --partition: only these values of partitioned models


@dataclass(frozen=True)
class RunResult:
    """What one run of ``build``, ``rebuild`` or ``check`` did: one ``TaskResult`` per
    selected model (per value of a partitioned one), in run order. A failed task is a
    result here, never an exception: ``ok`` is False and ``failed`` says which."""

    run_id: str  # the run's id in the ``dbluigi.runs`` table and its artifact's name
    results: tuple[TaskResult, ...]
    notes: tuple[str, ...] = field(default=())
    slow: tuple[SlowTask, ...] = ()  # much slower than their history (dbluigi.audit)
    document: dict[str, Any] | None = None  # the run document (dbluigi.artifact)
    target: str = ""  # the target's URL, password masked

    @property
    def artifact(self) -> Path | None:
        """The run's JSON artifact, when it could be written."""
        path = self.document.get("artifact") if self.document else None
        return Path(path) if path else None

    @property
    def ok(self) -> bool:
        """Every selected model is built (or was up to date); no task failed or was skipped."""
        return not self.failed

    @property
    def failed(self) -> tuple[TaskResult, ...]:
        """The tasks that failed, and those skipped because something they need failed."""
        return tuple(r for r in self.results if r.status in ("failed", "skipped"))

    @property
    def failed_models(self) -> tuple[str, ...]:
        """The names of the models that failed or were skipped, each once."""
        return tuple(dict.fromkeys(r.model for r in self.failed))

    @property
    def built(self) -> tuple[str, ...]:
        """The names of the models this run built, each once."""
        return tuple(dict.fromkeys(r.model for r in self.results if r.status == "success"))

    @property
    def exit_code(self) -> int:
        """What the command line exits with: 0 all built, 1 a task failed."""
        return 1 if self.failed else 0


class Run:
    """The shared context of one run; its ``execute`` is what a task runs.

    Worker threads lease database sessions from a pool, so ``--workers N`` opens at
    most N sessions for the whole run, whatever the number of models.
    """

    def __init__(
        self,
        project: Project,
        target: Target,
        plan: Plan,
        run_id: str,
        options: RunOptions,
        session: Session,
        catalog: Catalog | None = None,
        on_event: EventCallback | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.project = project
        self.target = target
        self.plan = plan
        self.run_id = run_id
        self.options = options
        self.catalog = catalog or Catalog({})  # what existed when the run started
        self.on_event = on_event
        self._pool: list[Session] = [session]
        self._opened: list[Session] = []
        self._lock = threading.Lock()
        self._done: set[tuple[str, str | None]] = set()
        self._partitions: dict[str, tuple[PartitionDecision, ...]] = {}  # resolved during the run
        # model -> (its partitions, the same by value): a model may have thousands of values
        self._by_value: dict[
            str, tuple[tuple[PartitionDecision, ...], dict[str, PartitionDecision]]
        ] = {}
        self._failed = threading.Event()
        self._settled_badly: set[str] = set()  # models that failed or were skipped in this run
        self._decided: dict[str, Decision] = {}  # decisions settled once their parents ran
        # build ids of models this process finished in this run, as settling read them
        self._finished_builds: dict[str, tuple[str, int] | None] = {}
        self._reading: dict[str, threading.Lock] = {}  # one read of a parent at a time
        self.up_to_date: set[str] = set()  # conditional models whose parents changed nothing
        self.unrecorded: list[TaskRecord] = []  # failures the target could not take
        self._stop = stop  # set: start no more tasks (a watch loop was asked to stop)
        self.stored: frozenset[str] | None = None  # models with a state row at the start

    def stored_row(self, model: str) -> bool | None:
        """Whether the model had its row in the state when the run started (None: not known)."""
        return None if self.stored is None else model in self.stored

    @property
    def stop_requested(self) -> bool:
        """Whether the run was asked to stop: tasks running finish, no new task starts."""
        return self._stop is not None and self._stop.is_set()

    @contextmanager
    def lease(self) -> Iterator[Session]:
        """A session of this run for one task; returned to the pool afterwards. A session
        whose connection was lost is not: the next task gets a new one."""
        with self._lock:
            while self._pool and self._pool[-1].connection_lost:
                self._pool.pop()
            session = self._pool.pop() if self._pool else None
        if session is None:
            session = self.target.connect()
            with self._lock:
                self._opened.append(session)
        try:
            yield session
        finally:
            if not session.connection_lost:
                with self._lock:
                    self._pool.append(session)

    def record_failures(self, session: Session, records: Sequence[TaskRecord]) -> None:
        """Record failed attempts; through another session when this one lost its
        connection, and kept for the run's results when the target cannot take them."""
        try:
            if not session.connection_lost:
                StateStore(session).record_tasks(records)
                return
            with self.lease() as fresh:
                StateStore(fresh).record_tasks(records)
        except Exception:
            if not session.connection_lost:
                raise
            with self._lock:
                self.unrecorded.extend(records)

    def close(self) -> None:
        """Close the sessions opened for worker threads (not the run's own)."""
        for session in self._opened:
            session.close()
        self._opened.clear()

    def decision_of(self, model: str) -> Decision:
        """The model's decision: as planned, or as settled once its parents ran."""
        return self._decided.get(model) or self.plan.decisions[model]

    def settle(self, model: str, session: Session) -> Decision:
        """The decision of a model whose parents' build ids were known only once they ran
        (``plan.settle``), from the build ids the state in the target has now: every
        worker of a shared scheduler reads the same."""
        decision = self.decision_of(model)
        if not decision.pending:
            return decision
        store = StateStore(session)
        actual = {}
        for parent in decision.pending:
            built = self._parent_build(self.project.chains.owner.get(parent, parent), store)
            if built is not None:
                actual[parent] = built[0]
        settled = settle(decision, actual)
        with self._lock:
            self._decided[model] = settled
        return settled

    def _parent_build(self, parent: str, store: StateStore) -> tuple[str, int] | None:
        """The parent's published (build_id, generation), read from the state once this
        process finished it in this run: this run builds it no more, so its readers (an
        incremental model may have hundreds) share one read. A parent finished by another
        worker of a shared scheduler is read each time, as it was before."""
        with self._lock:
            reading = self._reading.setdefault(parent, threading.Lock())
        with reading:
            if parent in self._finished_builds:
                return self._finished_builds[parent]
            built = store.model_state(parent)
            if (parent, None) in self._done:
                self._finished_builds[parent] = built
            return built

    def is_complete(self, model: str, partition: str | None = None) -> bool:
        if (model, partition) in self._done:
            return True
        if partition is None:
            return not self.plan.decisions[model].run
        return not self.partition_of(model, partition).run

    def is_settled(self, model: str) -> bool:
        """Whether ``model`` is done with in this run, built or not (what a check that
        reads it without depending on it waits for)."""
        decision = self.plan.decisions.get(model)
        return (
            decision is None
            or not decision.run
            or (model, None) in self._done
            or model in self._settled_badly
        )

    def settle_badly(self, models: Sequence[str]) -> None:
        """``models`` will not be built by this run (one failed, or a parent did)."""
        with self._lock:
            self._settled_badly.update(models)

    def unavailable(self, model: str, session: Session) -> frozenset[str]:
        """The models that ``model``'s check queries read without depending on them and
        that are not available now: failed or skipped in this run, or never built."""
        missing = set()
        for other in self.project.check_waits(model):
            decision = self.plan.decisions.get(other)
            if other in self._settled_badly:
                missing.add(other)
            elif decision is not None and decision.run and (other, None) not in self._done:
                # built by another worker of a shared scheduler, or not (yet) at all
                state = StateStore(session).model_state(other)
                if state is None or (
                    state[0] != self.decision_of(other).build_id and not decision.tentative
                ):
                    missing.add(other)
            elif not _exists(session, self.project.models[other]):
                missing.add(other)
        return frozenset(missing)

    def partitions_of(self, model: str) -> tuple[PartitionDecision, ...]:
        return self._partitions.get(model, self.plan.decisions[model].partitions)

    def partition_of(self, model: str, value: str) -> PartitionDecision:
        """The decision for one value of a partitioned model."""
        partitions = self.partitions_of(model)
        known = self._by_value.get(model)
        if known is None or known[0] is not partitions:  # first asked, or resolved since
            known = (partitions, {p.value: p for p in partitions})
            self._by_value[model] = known
        return known[1][value]

    def resolve_partitions(self, model: str) -> tuple[PartitionDecision, ...]:
        """A partitioned model's values and decisions; values that come from a query on
        tables this run builds are read now, once its upstream is built."""
        decision = self.plan.decisions[model]
        if not decision.partitions_deferred or model in self._partitions:
            return self.partitions_of(model)
        spec = self.project.models[model]
        started, clock = now(), time.perf_counter()
        with self.lease() as session:
            try:
                values = partitions.evaluate(session, self.project, model)
                state = StateStore(session).read_partitions()
                existing = session.catalog().kinds
            except Exception as exc:
                error = connection_lost(exc, spec.path) if session.connection_lost else exc
                record = self._failure(model, None, error, started, clock, 1)
                self.record_failures(session, [record])
                self._failed.set()
                self.settle_badly(self.blocked_by(model))
                if error is not exc:
                    raise error from exc
                raise
        self._partitions[model] = partition_decisions(
            spec,
            values,
            partition_query_fp(spec),
            decision.partition_basis,
            state,
            existing,
            forced=self.options.force,
            only=self.options.partitions,
            max_identifier_bytes=self.target.max_identifier_bytes,
        )
        return self._partitions[model]

    def _failure(
        self,
        model: str,
        partition: str | None,
        exc: Exception,
        started: datetime,
        clock: float,
        attempt: int,
    ) -> TaskRecord:
        decision = self.decision_of(model)
        part = self.partition_of(model, partition) if partition else None
        error = as_dbluigi(exc)
        failure_class = error.failure_class or "runtime"
        return TaskRecord(
            run_id=self.run_id,
            model=model,
            partition=partition or "",
            status="skipped" if failure_class == "upstream" else "failed",
            started_at=started,
            duration_s=time.perf_counter() - clock,
            attempt=attempt,
            failure_class=failure_class,
            error=_error_text(exc),
            path=error.path or self.project.models[model].path,
            line=error.line,
            reason=(part or decision).reason,
            fingerprint=(part or decision).fingerprint,
            checks=error.results if isinstance(error, CheckFailed) else (),
            explain_cost=error.explain_cost,
        )

    def execute(self, model: str, partition: str | None = None) -> None:
        """Build one model (or one partition of it) with its retries, recording every
        attempt; raises on failure.

        A successful attempt is recorded by ``publish``, in the transaction that
        publishes the model; failed attempts are recorded here. A conditional model
        (``plan.settle``) whose parents changed nothing is up to date: nothing is recorded.
        """
        part = self.partition_of(model, partition) if partition else None
        spec = self.project.models[model]
        attempts = 1 + spec.header.retries
        name = model if partition is None else f"{model}[{partition}]"
        if self.stop_requested:  # handed out just as the stop came: never started, no record
            raise StopRequested(f"{name} was not started: the build was asked to stop")
        self._emit(name, "start")
        for attempt in range(1, attempts + 1):
            started, clock = now(), time.perf_counter()
            with self.lease() as session:
                try:
                    if self.options.fail_fast and self._failed.is_set():
                        raise TaskError(
                            "skipped: an earlier task failed and --fail-fast is on",
                            failure_class="upstream",
                        )
                    decision = replace(
                        self.settle(model, session)
                        if partition is None
                        else self.decision_of(model),
                        partitions=self.partitions_of(model),
                    )
                    if not decision.run:
                        with self._lock:
                            self.up_to_date.add(model)
                        self._done.add((model, partition))
                        self._emit(name, "up to date")
                        return
                    request = BuildRequest(
                        self.project,
                        spec,
                        decision,
                        self.run_id,
                        self.catalog,
                        started,
                        clock,
                        attempt,
                        partition=part,
                        unavailable=self.unavailable(model, session),
                        # a later attempt may follow one that committed its row, then failed
                        stored=self.stored_row(model)
                        if partition is None and attempt == 1
                        else None,
                    )
                    publish(session, request)
                except AlreadyBuilt as done:
                    record = self._elsewhere(model, done, started, clock, partition)
                    StateStore(session).record_tasks([record])
                    if not done.same:
                        self._failed.set()
                        self.settle_badly(self.blocked_by(model))
                        self._emit(name, "skipped")
                        raise
                    self._done.add((model, partition))
                    self._emit(name, "success")
                    return
                except Exception as exc:
                    error = connection_lost(exc, spec.path) if session.connection_lost else exc
                    failure_class = as_dbluigi(error).failure_class or "runtime"
                    skipped = failure_class == "upstream"
                    retry = failure_class == "runtime" and session.transient(exc)
                    record = self._failure(model, partition, error, started, clock, attempt)
                    if attempt < attempts and not retry and not skipped:
                        note = NOT_RETRIED.format(retries=spec.header.retries)
                        record = replace(record, error=f"{record.error}\n{note}")
                    self.record_failures(session, [record, *self._culprits(model, record)])
                    if retry and attempt < attempts:
                        _sleep(retry_delay(attempt))
                        continue
                    self._failed.set()
                    self.settle_badly(self.blocked_by(model))
                    self._emit(name, "skipped" if skipped else "failed")
                    if error is not exc:
                        raise error from exc
                    raise
            self._done.add((model, partition))
            self._emit(name, "success")
            return

    def _culprits(self, model: str, failure: TaskRecord) -> list[TaskRecord]:
        """The failure of a modifier that failed ``model``'s build, as its own attempt."""
        modifiers = self.project.chains.modifiers.get(model, ())
        checks = {c.path: c.owner for c in self.project.gated_checks(model)}
        return [
            replace(failure, model=m)
            for m in modifiers
            if failure.path
            in (self.project.models[m].path, *(p for p, o in checks.items() if o == m))
        ]

    def blocked_by(self, model: str) -> list[str]:
        """``model`` and what this run would build downstream of it: none of them will be
        built now that it failed."""
        downstream = self.project.graph.downstream([model])
        return [model, *(m for m in self.plan.to_run if m in downstream)]

    def _elsewhere(
        self,
        model: str,
        done: AlreadyBuilt,
        started: datetime,
        clock: float,
        partition: str | None = None,
    ) -> TaskRecord:
        """The record of an attempt that found its work done, or superseded, by another build."""
        decision = after_run(self.decision_of(model), changed=True)  # what another published
        part = self.partition_of(model, partition) if partition else None
        return TaskRecord(
            run_id=self.run_id,
            model=model,
            partition=partition or "",
            status="success" if done.same else "skipped",
            started_at=started,
            duration_s=time.perf_counter() - clock,
            failure_class=None if done.same else "upstream",
            error=None if done.same else f"superseded: {done}; rebuild to publish this version",
            path=self.project.models[model].path,
            reason="built by another worker" if done.same else (part or decision).reason,
            fingerprint=(part or decision).fingerprint,
            build_id=(part or decision).build_id if done.same else None,
        )

    def _emit(self, model: str, event: str) -> None:
        if self.on_event is not None:
            self.on_event(model, event)


Dispatch = Callable[[Run], None]


class StopRequested(Exception):
    """A task that did not start because its run was asked to stop (not a failure: the
    run's results report the model as not started)."""


STOPPED = "skipped: the build was stopped before it started"


def retry_delay(attempt: int) -> float:
    """The wait after failed attempt ``attempt`` (1, 2, ...): exponential, capped, and
    jittered over its upper half, so workers that failed together (a deadlock) do not
    come back together."""
    ceiling = min(RETRY_MAX_DELAY_S, RETRY_DELAY_S * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def connection_lost(exc: Exception, path: str) -> TaskError:
    """The failure of a task whose target connection went away under it."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, TaskError) and exc.message.startswith("connection to the target lost"):
        return exc
    return TaskError(
        f"connection to the target lost: {first}",
        failure_class="runtime",
        path=as_dbluigi(exc).path or path,
        hint="the server restarted, the session was terminated or the network failed; "
        "nothing of this task was published, and the next build rebuilds it",
    )


RECONNECT_S = 30.0  # how long the end of a run waits for a target that went away


def _reconnect(target: Target, run_id: str) -> Session:
    """A new session to finish a run whose own session lost its connection (a restarting
    server takes a few seconds to accept connections again)."""
    deadline = time.monotonic() + RECONNECT_S
    while True:
        try:
            session = target.connect()
        except TargetError as exc:
            if time.monotonic() > deadline:
                raise TargetError(
                    f"the connection to the target was lost during run {run_id}, and the "
                    f"target is still unreachable after {RECONNECT_S:g}s: {exc.message}",
                    hint="once it is back, build again: the run is marked interrupted and "
                    "what did not finish is rebuilt",
                ) from None
            time.sleep(1.0)
            continue
        session.try_lock(RUN_LOCK.format(run_id=run_id))  # alive: not "interrupted" to others
        return session


@dataclass
class Prepared:
    """A connected, locked run with its plan, before anything is built."""

    session: Session
    state: StateStore
    plan: Plan
    catalog: Catalog  # every relation that exists now
    observed: versions.Versions = field(default_factory=versions.Versions)  # inputs, outputs
    stored: frozenset[str] | None = None  # the models with a row in the state


def prepare(project: Project, target: Target, options: RunOptions) -> Prepared:
    """Connect, migrate state and decide the plan.

    The state, the catalog and the version queries of source tables are read once
    here, for the whole run. Several builds
    may run at once on one target (workers of a luigid scheduler, or independent
    builds): each model is built under its own lock (see publish.py)."""
    ensure_supported(project, target)  # a guard the target cannot enforce: before connecting
    ensure_names_fit(project, target)
    session = target.connect()
    try:
        state = StateStore(session)
        state.ensure()
        planner = _Planner(project, target, session, state)
        facts = TargetState(
            stale=planner.stale, last_run=lambda: _last_run(state, run_target(project, target))
        )
        selected = select(project, options.selectors, options.exclude, state=facts)
        _refuse_excluded_chain_members(project, selected, options.exclude, facts)
        plan, observed = planner.plan(selected, options)
    except BaseException:
        session.close()
        raise
    return Prepared(session, state, plan, planner.catalog, observed, frozenset(planner.models))


class _Planner:
    """Decides plans on one session. The ``stale`` selector plans every model first; what
    a plan reads of the target and the sources (partition values, versions of inputs,
    outputs and source tables) is then read once, for every model, and the selection's
    plan reuses it."""

    def __init__(self, project: Project, target: Target, session: Session, state: StateStore):
        self.project, self.target, self.session, self.state = project, target, session, state
        self._catalog: Catalog | None = None
        self._models: dict[str, ModelState] | None = None
        self._read: tuple[frozenset[str], _Read] | None = None
        self._stale: tuple[str, ...] | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = self.session.catalog()
        return self._catalog

    @property
    def models(self) -> dict[str, ModelState]:
        if self._models is None:
            self._models = self.state.read_models(self.project.state_variants)
        return self._models

    def stale(self) -> tuple[str, ...]:
        """What a build of every model would run now (what ``plan`` counts as would run)."""
        if self._stale is None:
            plan, _ = self.plan(self.project.order, RunOptions())
            self._stale = tuple(m for m in plan.to_run if not plan.decisions[m].conditional)
        return self._stale

    def plan(self, selected: Sequence[str], options: RunOptions) -> tuple[Plan, versions.Versions]:
        """The plan of ``selected``, and the versions it observed."""
        relations = {(r.schema, r.name) for r in map(Relation, self.catalog.kinds)}
        read = self._read_for(selected, options)
        chosen = set(selected)
        values = {m: v for m, v in read.values.items() if m in chosen}
        plan = make_plan(
            self.project,
            selected,
            self.models,
            relations,
            forced=selected if options.force else (),
            full_refresh=selected if options.full_refresh else (),
            source_versions=read.source_versions,
            partition_values=values,
            partition_state=self.state.read_partitions() if values else {},
            forced_partitions=options.partitions,
            max_identifier_bytes=self.target.max_identifier_bytes,
            observed=read.observed,
        )
        return plan, read.observed

    def _read_for(self, selected: Sequence[str], options: RunOptions) -> _Read:
        chosen = set(selected)
        if self._read is not None and self._read[0] >= chosen:
            read = self._read[1]
            _check_partition_option(options, {m: v for m, v in read.values.items() if m in chosen})
            return read
        project, session = self.project, self.session
        values = partition_values(session, project, selected)
        _check_partition_option(options, values)
        versions.check_input_queries(project)
        session.prepare_versions()
        read = _Read(
            values,
            versions.read(session, project, selected, self.models, self.catalog.kinds),
            read_versions(project, selected),
        )
        self._read = (frozenset(chosen), read)
        return read


@dataclass(frozen=True)
class _Read:
    """What a plan reads of the target and the sources for its selection."""

    values: dict[str, tuple[str, ...]]
    observed: versions.Versions
    source_versions: Mapping[str, str | None]


def _last_run(state: StateStore, target: str) -> list[TaskRecord] | None:
    """The task attempts of the last run recorded on ``target`` (``run_target``); None
    when there is none."""
    last = state.last_run_of(None, target=target)
    return state.task_records(last.run_id) if last else None


def run_target(project: Project, target: Target) -> str:
    """The target as ``runs.target`` records it: its URL, and where it moves the
    project's schemas. Two targets sharing a database keep their runs apart so: ``retry``
    and ``result:`` read those of the target they are given."""
    moves = project.config.schema_map.describe()
    return f"{target.display_url} (schemas: {moves})" if moves else target.display_url


def target_state(project: Project, target: Target) -> TargetState:
    """``stale`` and ``result:`` for a command without a run of its own (``check``,
    ``lineage``): each connects to the target only when a selector asks."""

    def stale() -> tuple[str, ...]:
        session = target.connect()
        try:
            state = StateStore(session)
            state.ensure()
            return _Planner(project, target, session, state).stale()
        finally:
            session.close()

    def last_run() -> list[TaskRecord] | None:
        session = target.connect()
        try:
            state = StateStore(session)
            state.ensure()
            return _last_run(state, run_target(project, target))
        finally:
            session.close()

    return TargetState(stale=stale, last_run=last_run)


def _refuse_excluded_chain_members(
    project: Project, selected: Sequence[str], exclude: Sequence[str], facts: TargetState
) -> None:
    """A relation's build is its whole chain (``dbluigi.writes``): excluding one member of
    a chain that runs is refused rather than silently ignored."""
    if not exclude:
        return
    excluded = set(select(project, exclude, state=facts))
    for model in selected:
        members = project.chains.members(model)
        left_out = [m for m in members if m in excluded]
        if left_out and len(members) > 1:
            raise UsageError(
                f"--exclude {left_out[0]}: it is part of the build of {members[0]} "
                f"({', '.join(members)}), which runs whole",
                hint=f"exclude the whole build with --exclude {members[0]}, or select less",
            )


def _check_partition_option(options: RunOptions, values: Mapping[str, tuple[str, ...]]) -> None:
    """``rebuild X --partition V``: V must be a value of a selected partitioned model."""
    if not options.partitions:
        return
    if not values:
        raise UsageError(
            "--partition: none of the selected models is partitioned",
            hint="select a model with a `-- partition:` header, or leave out --partition",
        )
    known = {v for vs in values.values() for v in vs}
    unknown = [v for v in options.partitions if v not in known]
    if unknown:
        shown = ", ".join(sorted(known)[:10])
        more = f" (and {len(known) - 10} more)" if len(known) > 10 else ""
        raise UsageError(
            f"--partition {', '.join(unknown)}: no selected model has that partition value",
            hint=f"pass one of the values of the selected models: {shown}{more}",
        )


def run_plan(
    project: Project,
    target: Target,
    options: RunOptions,
    dispatch: Dispatch,
    *,
    on_event: EventCallback | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Execute a build: everything stale in the selection, through ``dispatch``.

    Each note is also given to ``on_note`` when it is made, most before the run starts
    (they say how it will run); all of them are in the result. Once ``stop`` is set, the
    tasks running finish and no new one starts; the run is recorded as ``stopped`` when
    models were left unbuilt (``dbluigi.watch``)."""
    prepared = prepare(project, target, options)
    session, state, plan = prepared.session, prepared.state, prepared.plan
    run_id = new_run_id()
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if on_note is not None:
            on_note(text)

    session.try_lock(RUN_LOCK.format(run_id=run_id))
    if _close_interrupted_runs(session, state):
        note("an earlier build was interrupted; its run is now marked 'interrupted'")
    workers = options.workers if options.workers is not None else session.default_workers()
    options = replace(options, workers=workers)
    if options.scheduler_url:
        note(
            f"luigid runs as many tasks at once on this target as its [resources] "
            f"{target.resource} allows (1 when unset)"
        )
    try:
        state.start_run(
            run_id,
            options.command,
            " ".join(options.selectors),
            run_target(project, target),
            workers,
            {name: getattr(options, name) for name in RUN_OPTIONS},
        )
        if on_plan is not None:
            on_plan(plan)
        run = Run(project, target, plan, run_id, options, session, prepared.catalog, on_event, stop)
        run.stored = prepared.stored
        status = "error"
        try:
            if plan.to_run:
                _ensure_schemas(session, project, plan)
                dispatch(run)
                if session.alive():
                    versions.settle_after_run(
                        session, project, run_id, plan.selected, prepared.observed
                    )
            if not session.alive():  # a task lost the connection it shared with the run
                lost, session = session, _reconnect(target, run_id)
                lost.close()
                state = StateStore(session)
                if run.unrecorded:  # failures recorded now that the target is back
                    state.record_tasks(run.unrecorded)
                    run.unrecorded.clear()
                note("the connection to the target was lost during the run")
            results = _results(
                project,
                plan,
                [*state.task_records(run_id), *run.unrecorded],
                state,
                run_id,
                shared=options.scheduler_url is not None,
                stopped=run.stop_requested,
                up_to_date=run.up_to_date,
                catalog=prepared.catalog,
            )
            status = _run_status(results)
        finally:
            run.close()
            if not session.connection_lost:
                state.finish_run(run_id, status)
        slow = slow_tasks(session, project.config, run_id, results)
        document = write_run_artifact(session, project, run_id, results, slow=slow, notes=notes)
    finally:
        if not session.connection_lost:
            session.unlock(RUN_LOCK.format(run_id=run_id))
        session.close()
    return RunResult(run_id, tuple(results), tuple(notes), slow, document, target.display_url)


def _run_status(results: Sequence[TaskResult]) -> str:
    """``failed`` when a task failed or was skipped; ``stopped`` when the only models not
    built are those a stop request kept from starting; else ``success``."""
    unbuilt = [r for r in results if r.status in ("failed", "skipped")]
    if not unbuilt:
        return "success"
    if all(r.last is not None and r.last.error == STOPPED for r in unbuilt):
        return "stopped"
    return "failed"


def _close_interrupted_runs(session: Session, state: StateStore) -> bool:
    """Mark runs left ``running`` whose build is gone (nobody holds their lock)."""
    closed = False
    for other in state.running_runs():
        key = RUN_LOCK.format(run_id=other)
        if session.try_lock(key):
            state.mark_interrupted(other)
            session.unlock(key)
            closed = True
    return closed


def _ensure_schemas(session: Session, project: Project, plan: Plan) -> None:
    """Create the schemas the models to run publish into, once per run (builds starting
    together take turns: CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent one)."""
    schemas: set[str] = set()
    for relation in plan.to_run:
        model = project.models[relation]
        schemas.add(model.schema)
        schemas.update(w.schema for w in model.writes)
    with session.transaction():
        session.lock_in_transaction("dbluigi.schemas")
        for schema in sorted(schemas):
            session.ensure_schema(schema)


def _results(
    project: Project,
    plan: Plan,
    records: Sequence[TaskRecord],
    state: StateStore,
    run_id: str,
    *,
    shared: bool = False,
    stopped: bool = False,
    up_to_date: Collection[str] = (),
    catalog: Catalog | None = None,
) -> list[TaskResult]:
    """One result per selected model.

    A conditional model this run found ``up_to_date`` (its parents changed nothing) is
    so. A model this run did not build may have been built by another worker or build
    (its stored build id is the one planned here): a success. With a shared scheduler,
    one still unbuilt and not blocked by a failure here is left to the other workers.
    Otherwise it never started, and is recorded as skipped."""
    last: dict[str, TaskRecord] = {}
    attempts: dict[str, int] = {}
    parts: dict[str, list[TaskRecord]] = {}  # the last attempt of each partition that ran
    for attempt in records:
        if attempt.partition:
            runs = parts.setdefault(attempt.model, [])
            runs[:] = [r for r in runs if r.partition != attempt.partition] + [attempt]
            continue
        last[attempt.model] = attempt
        attempts[attempt.model] = attempts.get(attempt.model, 0) + 1
    bad: set[str] = {m for m, r in last.items() if r.status != "success"}
    failed_parts = {
        m: [r.partition for r in rs if r.status != "success"] for m, rs in parts.items()
    }
    unbuilt = [m for m in plan.to_run if m not in last]
    stored = state.read_models(project.state_variants) if unbuilt else {}
    skipped: list[TaskRecord] = []
    held: set[str] = set()  # not started because the run was asked to stop
    results: list[TaskResult] = []
    for model in plan.selected:
        decision = plan.decisions[model]
        kind = project.models[model].kind
        record = last.get(model)
        results += [_result(kind, r, 1) for r in parts.get(model, ())]
        producer = project.chains.owner.get(model)  # a modifier: built by its producer
        if record is None and decision.run and (producer or model) in up_to_date:
            results.append(TaskResult(model, kind, "up to date", UPSTREAM_UNCHANGED))
            continue
        if record is None and decision.run:
            now_built = stored.get(producer or model)
            if (  # a tentative build id is the one stored before: it says nothing
                now_built is not None
                and now_built.build_id == decision.build_id
                and not decision.tentative
            ):
                results.append(TaskResult(model, kind, "success", "built by another worker"))
                continue
            blocked = (
                failed_parts.get(model)
                or producer in bad
                or any(p in bad for p in project.model_parents(model))
            )
            if shared and not blocked:
                results.append(TaskResult(model, kind, "elsewhere", "left to another worker"))
                continue
            # a model kept from starting by a stop request blocks nothing: it did not fail
            status: TaskStatus = "skipped"
            failure_class: FailureClass = "upstream"
            blockers = [p for p in project.model_parents(model) if p in bad - held]
            if producer is not None and producer in bad - held:
                error = f"skipped: the build of {producer}, which it modifies, failed"
            elif failed_parts.get(model):
                error = f"skipped: partition {', '.join(failed_parts[model])} failed"
            elif blockers:
                error = f"skipped: upstream {', '.join(blockers)} failed"
            elif absent := [p for p in decision.missing_parents if p not in project.models]:
                status, failure_class = "failed", "config"  # a misspelt name fails, not skips
                error = _absent_error(absent, project, catalog or Catalog({}))
            elif decision.missing_parents:
                missing = ", ".join(decision.missing_parents)
                error = f"skipped: {missing} does not exist (not selected and never built); select it too, e.g. +{model.split('.', 1)[1]}"
            elif stopped:
                error = STOPPED
                held.add(model)
            else:
                error = "skipped: the run stopped before it"
            record = TaskRecord(
                run_id=run_id,
                model=model,
                path=project.models[model].path,
                status=status,
                started_at=now(),
                failure_class=failure_class,
                error=error,
                reason=decision.reason,
                fingerprint=decision.fingerprint,
            )
            skipped.append(record)
            bad.add(model)
        if record is None:
            results.append(TaskResult(model, kind, "up to date", decision.reason))
            continue
        results.append(_result(kind, record, attempts.get(model, 1)))
    state.record_tasks(skipped)
    return results


def _absent_error(absent: Sequence[str], project: Project, catalog: Catalog) -> str:
    """A model reads relations no model produces and the target does not have: most
    often a misspelt name, so the closest model or table is named."""
    from dbluigi.suggest import close_matches

    known = [
        name
        for name in (*project.models, *catalog.kinds)
        if not name.startswith(f"{STATE_SCHEMA}.") and "__dbluigi_" not in name
    ]
    lines = []
    for name in absent:
        line = f"{name} does not exist: no model produces it and the target has no such relation"
        close = close_matches(name, dict.fromkeys(known))
        lines.append(f"{line}; did you mean {close[0]}?" if close else line)
    return "\n".join(lines)


def _result(kind: str, r: TaskRecord, attempts: int) -> TaskResult:
    return TaskResult(r.model, kind, r.status, r.reason or "", last=r, attempts=attempts)


def _error_text(exc: BaseException) -> str:
    if not isinstance(exc, DbluigiError):
        return "".join(traceback.format_exception(exc, limit=-4)).strip()
    text = str(exc)
    if isinstance(exc, CheckFailed) and exc.rows:
        header = " | ".join(exc.columns)
        body = "\n".join(
            " | ".join("NULL" if v is None else str(v) for v in row) for row in exc.rows
        )
        sql = f"\ncheck SQL:\n{exc.check_sql}" if exc.check_sql else ""
        text += f"{sql}\nfirst violating rows:\n{header}\n{body}"
    return text


def _exists(session: Session, model: Model) -> bool:
    """Whether what ``model`` publishes is there to read."""
    if not model.publishes_relation:
        return True
    return session.relation_kind(model.schema, model.name) is not None


def check_published(project: Project, target: Target, selected: Sequence[str]) -> RunResult:
    """Run each selected model's checks against what is published now; record them as a run."""
    session = target.connect()
    results: list[TaskResult] = []
    records: list[TaskRecord] = []
    run_id = new_run_id()
    try:
        state = StateStore(session)
        state.ensure()
        session.try_lock(RUN_LOCK.format(run_id=run_id))  # alive: not "interrupted" to others
        state.start_run(run_id, "check", " ".join(selected), run_target(project, target), 1)
        stored = state.read_models()
        session.prepare_versions()
        observed = versions.read(session, project, selected, stored, session.catalog().kinds)
        for relation in selected:
            model = project.models[relation]
            started, clock = now(), time.perf_counter()
            built = stored.get(relation)
            changed = built is not None and versions.changed_outside(
                built.output_version, observed.outputs.get(relation)
            )
            has_checks = bool(model.header.checks or project.gated_checks(relation))
            if not has_checks and not changed:
                continue
            status, cls, error, results_ = (
                _check_one(session, project, model) if has_checks else ("success", None, None, ())
            )
            if changed:
                status, cls = "failed", "check"
                error = "\n".join(
                    filter(
                        None,
                        [
                            f"{relation} was changed outside dbluigi since its build"
                            f"{f' at {built.built_at}' if built and built.built_at else ''}; "
                            "the next build rebuilds it",
                            error,
                        ],
                    )
                )
            records.append(
                TaskRecord(
                    run_id=run_id,
                    model=relation,
                    status=status,
                    started_at=started,
                    duration_s=time.perf_counter() - clock,
                    failure_class=cls,
                    error=error,
                    reason="check",
                    checks=results_,
                )
            )
            results.append(TaskResult(relation, model.kind, status, "check", last=records[-1]))
        state.record_tasks(records)
        state.finish_run(
            run_id, "failed" if any(r.status != "success" for r in results) else "success"
        )
        notes: list[str] = []
        document = write_run_artifact(session, project, run_id, results, notes=notes)
    finally:
        session.close()
    return RunResult(
        run_id, tuple(results), tuple(notes), document=document, target=target.display_url
    )


def _check_one(
    session: Session, project: Project, model: Model
) -> tuple[TaskStatus, FailureClass | None, str | None, tuple[CheckResult, ...]]:
    """(status, failure class, error, check results) of the checks of a published model."""
    from dbluigi.checks import CheckTarget, run_checks

    if model.publishes_relation and session.relation_kind(model.schema, model.name) is None:
        return "failed", "check", f"{model.relation} is not built yet", ()
    try:
        unavailable = frozenset(
            w
            for w in project.check_waits(model.relation)
            if not _exists(session, project.models[w])
        )
        outcome = run_checks(
            session, project, CheckTarget(model, model.schema, model.name, None, unavailable)
        )
    except TaskError as exc:
        return "failed", exc.failure_class, str(exc), ()
    if outcome.passed:
        return "success", None, None, outcome.results
    failed = CheckFailed.from_violation(outcome.violations[0], results=outcome.results)
    return "failed", "check", _error_text(failed), outcome.results
