"""The luigi adapter: one luigi task per model, and the dispatch that runs them.

This is the only module that imports luigi. A task's identity is its model and
fingerprint, so every worker of a run (or of a central scheduler) names the same
task the same way. ``complete()`` is answered from the plan decided once at the
start of the run, never by querying the database per task.

luigid labels a task with its *family*, which luigi takes from the task's class
(``DbluigiModel`` for every model). The worker tells the scheduler each task's
``scheduler_name`` as its family instead (``staging.agencies``, ``sales[2015]``,
``staging.agencies settled``, ``raw.offenses missing``), and
its kind travels as a parameter that is not part of its id: luigid's task list and
graph then read as the project does. The class's own family stays what luigi loads a
task by (a partition yielded at run time) and what the task id is made of.

Stock luigi costs more than the SQL of a large project, so local runs plug two
things into luigi's own extension points (``worker_scheduler_factory``):

- ``FastScheduler``: luigi's scheduler with ``get_work`` and ``count_pending`` made
  incremental. The stock ones scan every pending task (and its upstream) each time
  a worker asks for work, which is quadratic in the number of tasks; this one keeps
  a priority queue of tasks that became runnable. Everything else (``add_task``,
  statuses, resources, priorities) is luigi's.
- ``ThreadWorker``: luigi's worker running tasks in threads of this process instead
  of forking a process per task, so ``--workers N`` reuses N database sessions.

A run asked to stop (``Run.stop_requested``, set by ``dbluigi.watch`` on Ctrl-C or
SIGTERM) stops the worker the way luigi's own SIGUSR1 handler does: it asks the
scheduler for no more work and returns once its running tasks have finished. A task
handed out just before the stop refuses to start (``Run.execute``).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import multiprocessing
import queue
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dbluigi.runner import Run


@contextmanager
def _hidden(*names: str) -> Iterator[None]:
    """Modules that importing luigi would load only for what dbluigi does not use:
    jsonschema (``DictParameter`` schemas) and, through tenacity, tornado (its retrying
    of coroutines); half of luigi's import time, paid by every build. Hidden while luigi
    loads, so that it takes them for absent; importable as ever afterwards."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


with _hidden("jsonschema", "tornado"):
    import luigi
    import luigi.configuration
    import luigi.interface
    import luigi.scheduler
    import luigi.worker
    from luigi.scheduler import DONE, PENDING, RUNNING

_RUN: Run | None = None  # the run being dispatched


def _run() -> Run:
    assert _RUN is not None, "dbluigi tasks only run inside dispatch()"
    return _RUN


class _FixedParams:
    """luigi recomputes a task class's parameters with ``dir()`` each time it asks, several
    times per task; a dbluigi task class's parameters never change, nor do a task's."""

    @classmethod
    def get_params(cls) -> list[tuple[str, luigi.Parameter]]:
        params = cls.__dict__.get("_dbluigi_params")
        if params is None:
            params = super().get_params()  # type: ignore[misc]
            cls._dbluigi_params = params  # type: ignore[attr-defined]
        return list(params)

    def to_str_params(self, only_significant: bool = False, only_public: bool = False) -> dict:
        memo = self.__dict__.setdefault("_dbluigi_str_params", {})
        key = (only_significant, only_public)
        if key not in memo:
            memo[key] = super().to_str_params(only_significant, only_public)  # type: ignore[misc]
        return dict(memo[key])

    def _get_param_visibilities(self) -> dict[str, Any]:
        found = self.__dict__.get("_dbluigi_visibilities")
        if found is None:
            found = self.__dict__["_dbluigi_visibilities"] = super()._get_param_visibilities()  # type: ignore[misc]
        return dict(found)


class _BuildTask(_FixedParams, luigi.Task):
    """What every dbluigi task is known by, and what it holds while it runs."""

    model: str = luigi.Parameter()  # type: ignore[assignment]
    fingerprint: str = luigi.Parameter()  # type: ignore[assignment]
    # the planned build id (derived from the fingerprint and the build generation): a
    # rebuild is a new task for luigid, and every worker reading the same state agrees on it
    build_id: str = luigi.Parameter()  # type: ignore[assignment]
    # a tentative build keeps the last build id: this tells its run from the last one
    # (``plan.Decision.round``), which luigid may still hold as done
    round: str = luigi.Parameter(default="")  # type: ignore[assignment]
    # shown by luigid beside the name; not part of the id (the fingerprint covers it)
    kind: str = luigi.Parameter(default="", significant=False)  # type: ignore[assignment]

    @property
    def scheduler_name(self) -> str:
        """The task's name in luigid: its model."""
        return self.model

    @property
    def priority(self) -> int:  # type: ignore[override]
        return _run().project.models[self.model].header.priority

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        """A slot of the target; on a target whose one writer process builds with several
        sessions (DuckDB), also one of each relation the model changes in place: nothing
        orders two unmanaged files that update one outside table, and where PostgreSQL
        makes the second wait for the first's row locks, DuckDB fails it with a conflict.
        luigi runs one task at a time of a resource it has no limit for."""
        run = _run()
        held = {run.target.resource: 1}
        if not run.target.supports_concurrent_writers:
            for relation in run.project.models[self.model].modifies:
                held[f"{run.target.resource}:{relation}"] = 1
        return held


class DbluigiModel(_BuildTask):
    """Build one model: build aside, check, swap (see dbluigi.publish)."""

    def requires(self) -> list[luigi.Task]:
        return _graph().requirements[self.model]

    def complete(self) -> bool:
        return _run().is_complete(self.model)

    def run(self) -> Iterator[list[luigi.Task]]:
        run = _run()
        with _releasing_waiters(self.model):
            if run.plan.decisions[self.model].partitions_deferred:
                # values read once the upstream is built: the partitions are dynamic dependencies
                partitions = run.resolve_partitions(self.model)
                yield [
                    DbluigiPartition(
                        model=self.model,
                        partition=p.value,
                        fingerprint=p.fingerprint,
                        build_id=p.build_id,
                        kind=self.kind,
                    )
                    for p in partitions
                ]
            run.execute(self.model)


class DbluigiPartition(_BuildTask):
    """One value of a partitioned model; the model's task gathers them all, as a wrapper."""

    partition: str = luigi.Parameter()  # type: ignore[assignment]

    @property
    def scheduler_name(self) -> str:
        """The task's name in luigid: its model and partition value, as dbluigi prints them."""
        return f"{self.model}[{self.partition}]"

    def requires(self) -> list[luigi.Task]:
        return _graph().parent_requirements[self.model]

    def complete(self) -> bool:
        return _run().is_complete(self.model, self.partition)

    def run(self) -> None:
        with _releasing_waiters(self.model):
            _run().execute(self.model, self.partition)


class DbluigiSettled(_FixedParams, luigi.Task):
    """Done once ``model`` is done with in this run, built or failed: what a model waits
    for when one of its check queries reads ``model`` without depending on it.

    luigi knows only dependencies, which a failure blocks; so when ``model`` (or what it
    depends on) fails, the worker that saw the failure marks this task done itself."""

    model: str = luigi.Parameter()  # type: ignore[assignment]
    build_id: str = luigi.Parameter()  # type: ignore[assignment]
    round: str = luigi.Parameter(default="")  # type: ignore[assignment]

    @property
    def scheduler_name(self) -> str:
        """Its name in luigid: the model it waits for, apart from the model's own task."""
        return f"{self.model} settled"

    def requires(self) -> list[luigi.Task]:
        return [_graph().tasks[self.model]]

    def complete(self) -> bool:
        return _run().is_settled(self.model)

    def run(self) -> None:
        """Nothing to do: the model it stands for has been built."""


@contextmanager
def _releasing_waiters(model: str) -> Iterator[None]:
    """Run a model's task; when it fails, tell the scheduler that the models it keeps
    from being built are settled, so the models whose checks wait for them can run."""
    try:
        yield
    except Exception:
        graph, worker = _graph(), _WORKER
        if worker is not None:
            for blocked in _run().blocked_by(model):
                settled = graph.settled.get(blocked)
                if settled is not None:
                    worker._scheduler.add_task(
                        task_id=settled.task_id, status=DONE, worker=worker._id
                    )
        raise


class MissingRelation(_FixedParams, luigi.ExternalTask):
    """A parent that is neither selected nor built, or a source that does not exist."""

    relation: str = luigi.Parameter()  # type: ignore[assignment]

    @property
    def scheduler_name(self) -> str:
        """Its name in luigid: the relation it stands for."""
        return f"{self.relation} missing"

    def complete(self) -> bool:
        return False


class DbluigiRun(_FixedParams, luigi.WrapperTask):
    """The root of a run: requires every selected model, so luigi walks the graph once."""

    run_id: str = luigi.Parameter()  # type: ignore[assignment]

    def requires(self) -> list[luigi.Task]:
        return list(_graph().tasks.values())


class _TaskGraph:
    """Every task object of the run, made once (luigi's own instance cache is slow)."""

    def __init__(self, run: Run) -> None:
        decisions = run.plan.decisions
        # a modifier is built by its producer's task (dbluigi.writes): no task of its own
        built = [m for m in run.plan.selected if m not in run.project.chains.owner]
        models = run.project.models
        self.tasks = {
            m: DbluigiModel(
                model=m,
                fingerprint=decisions[m].fingerprint,
                build_id=decisions[m].build_id,
                round=decisions[m].round,
                kind=models[m].kind,
            )
            for m in built
        }
        self.requirements: dict[str, list[luigi.Task]] = {}
        self.parent_requirements: dict[str, list[luigi.Task]] = {}
        # ordering without dependency: models read by check queries of models in the run
        waited = {w for m in run.plan.selected for w in run.project.graph.waits_for(m)}
        self.settled = {
            w: DbluigiSettled(model=w, build_id=decisions[w].build_id, round=decisions[w].round)
            for w in sorted(waited)
            if w in decisions
        }
        for model in run.plan.selected:
            if decisions[model].missing_parents:  # never built by this run
                run.settle_badly(run.blocked_by(model))
        for model in built:
            required: list[luigi.Task] = [
                self.tasks[parent]
                for parent in run.project.model_parents(model)
                if parent in decisions
            ]
            required += [
                MissingRelation(relation=name) for name in decisions[model].missing_parents
            ]
            self.parent_requirements[model] = required
            required = required + [
                self.settled[w]
                for w in sorted(run.project.graph.waits_for(model))
                if w in self.settled
            ]
            partitions: list[luigi.Task] = [
                DbluigiPartition(
                    model=model,
                    partition=p.value,
                    fingerprint=p.fingerprint,
                    build_id=p.build_id,
                    kind=models[model].kind,
                )
                for p in decisions[model].partitions
            ]
            self.requirements[model] = required + partitions


_GRAPH: _TaskGraph | None = None
_WORKER: luigi.worker.Worker | None = None  # the worker of this process, to talk to its scheduler


def _graph() -> _TaskGraph:
    assert _GRAPH is not None, "dbluigi tasks only run inside dispatch()"
    return _GRAPH


class FastScheduler(luigi.scheduler.Scheduler):
    """luigi's local scheduler with incremental ``get_work`` and ``count_pending``.

    Each task keeps the set of its dependencies not yet done, updated whenever a task's
    status changes (every change goes through the state's ``set_status``). A task whose
    set empties while it is pending goes on a heap ordered like luigi's own ranking
    (priority, then age); ``get_work`` pops until it finds one that is schedulable and
    fits the resources. A task is so offered once per time it becomes runnable, never
    once per finished dependency: the run's root, which depends on every model, would
    otherwise be offered and its dependencies walked after each of them (quadratic).
    """

    def __init__(self, order: dict[str, int] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("prune_on_get_work", False)
        kwargs.setdefault("record_task_history", False)
        super().__init__(**kwargs)
        self._order = order or {}  # task id -> run-order position, to break priority ties
        self._candidates: list[tuple[float, float, int, str]] = []
        self._dependents: dict[str, set[str]] = defaultdict(set)
        self._waiting: dict[str, set[str]] = {}  # task id -> its dependencies not done
        self._sequence = itertools.count()
        self._lock = threading.RLock()
        # add_task makes a task object for the task and each dependency before looking
        # them up (to setdefault them); a task already known is returned instead
        make = self._make_task

        def make_unless_known(task_id: str, **kwargs: Any) -> Any:
            known = self._state.get_task(task_id)
            return known if known is not None else make(task_id=task_id, **kwargs)

        self._make_task = make_unless_known
        set_status = self._state.set_status

        def set_status_noting_done(task: Any, new_status: str, config: Any = None) -> None:
            before = task.status
            set_status(task, new_status, config)
            if (before == DONE) != (task.status == DONE):
                self._dependency_changed(task)
            if before != PENDING and task.status == PENDING and self._waiting.get(task.id) == set():
                self._offer(task)  # pending again (a retry) with nothing to wait for

        self._state.set_status = set_status_noting_done  # type: ignore[method-assign]

    def add_task(  # type: ignore[override]
        self,
        task_id: str | None = None,
        deps: list[str] | None = None,
        new_deps: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            super().add_task(task_id=task_id, deps=deps, new_deps=new_deps, **kwargs)
            task = self._state.get_task(task_id)
            if task is None:
                return
            if deps is not None or new_deps or task.id not in self._waiting:
                get = self._state.get_task
                waiting = set()
                for dep in task.deps or ():
                    self._dependents[dep].add(task.id)
                    dep_task = get(dep)
                    if dep_task is None or dep_task.status != DONE:
                        waiting.add(dep)
                self._waiting[task.id] = waiting
            if task.status == PENDING and not self._waiting[task.id]:
                self._offer(task)

    def _dependency_changed(self, task: Any) -> None:
        """``task`` became done, or stopped being done: its dependents learn it, and a
        pending one with nothing left to wait for is offered."""
        done = task.status == DONE
        for child in self._dependents.get(task.id, ()):
            waiting = self._waiting.get(child)
            if waiting is None:  # not added yet: its own add_task looks at its dependencies
                continue
            if not done:
                waiting.add(task.id)
            elif task.id in waiting:
                waiting.discard(task.id)
                child_task = self._state.get_task(child)
                if not waiting and child_task is not None and child_task.status == PENDING:
                    self._offer(child_task)

    def _offer(self, task: Any) -> None:
        rank = self._order.get(task.id, len(self._order))
        heapq.heappush(self._candidates, (-task.priority, rank, next(self._sequence), task.id))

    def count_pending(self, worker: str) -> dict[str, Any]:  # type: ignore[override]
        state = self._state.get_worker(worker)
        pending = self._state.get_active_task_count_for_status(PENDING)
        return {
            "n_pending_tasks": pending,
            "n_unique_pending": pending,
            "n_pending_last_scheduled": pending,
            "worker_state": state.state,
            "running_tasks": self._running(state),
        }

    def _running(self, state: Any) -> list[dict[str, str]]:
        name = str(state)
        return [
            {"task_id": task.id, "worker": name}
            for task in self._state.get_active_tasks_by_status(RUNNING)
        ]

    def get_work(  # type: ignore[override]
        self,
        host: str | None = None,
        assistant: bool = False,
        current_tasks: list[str] | None = None,
        worker: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        with self._lock:
            assert worker is not None
            worker_state = self._update_worker(
                worker, worker_reference={"host": host}, get_work=True
            )
            reply = self.count_pending(worker)
            reply["task_id"] = None
            if not worker_state.enabled or self._paused:
                return reply
            best = None
            if current_tasks is not None:  # a task handed out but never started: hand it out again
                claimed = set(current_tasks)
                for task in self._state.get_active_tasks_by_status(RUNNING):
                    if task.worker_running == worker and task.id not in claimed:
                        best = task
            deferred = []
            used = self._used_resources()
            while best is None and self._candidates:
                entry = heapq.heappop(self._candidates)
                task = self._state.get_task(entry[3])
                if task is None or not self._schedulable(task) or worker not in task.workers:
                    continue  # offered again when its last dependency finishes
                if not self._has_resources(task.resources, used):
                    deferred.append(entry)
                    continue
                best = task
            for entry in deferred:
                heapq.heappush(self._candidates, entry)
            if best is None:
                return reply
            self.update_metrics_task_started(best)
            self._state.set_status(best, RUNNING, self._config)
            best.worker_running = worker
            best.resources_running = best.resources.copy()
            best.time_running = luigi.scheduler.time.time()
            reply.update(
                task_id=best.id,
                task_family=best.family,
                task_module=getattr(best, "module", None),
                task_params=best.params,
            )
            reply["running_tasks"] = self._running(worker_state)
            return reply


class _ThreadPool:
    """Daemon threads that run the tasks handed to them, made when none is idle: as many
    as luigi runs at once (``--workers``), plus any still busy with a task luigi gave up
    on (its ``[worker] timeout``). A new thread per task made luigi's worker loop wait for
    each thread to start, which with busy threads holding the GIL cost milliseconds per
    task. Daemon threads, so a task stuck in the database never keeps the process from
    exiting."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, threading.Lock] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job: Any) -> threading.Lock:
        """Run ``job()`` on a thread of the pool; the lock is held until it has returned
        (a lock costs a tenth of an event to make)."""
        done = threading.Lock()
        done.acquire()
        with self._lock:
            if self._idle <= 0:
                thread = threading.Thread(
                    target=self._serve, name=f"dbluigi-worker-{len(self._threads) + 1}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1
        self._jobs.put((job, done))
        return done

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            try:
                job()
            finally:
                with self._lock:
                    self._idle += 1
                done.release()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()


class _NoProcess(multiprocessing.Process):
    """Put between luigi's TaskProcess and ``multiprocessing.Process`` (see
    ``_ThreadTaskProcess``): what the process machinery sets up at creation (a counter, a
    copy of the process's config, a weak reference to remember it by) is no use to a task
    that runs on a thread, and cost a tenth of a millisecond of every task."""

    def __init__(self) -> None:
        self._name = "dbluigi-task"
        self._popen = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name}>"


class _ThreadTaskProcess(luigi.worker.ContextManagedTaskProcess, _NoProcess):
    """luigi's TaskProcess, run on a thread of the worker's pool instead of a fork."""

    pool: _ThreadPool

    def start(self) -> None:
        self._done = self.pool.submit(self.run)

    def is_alive(self) -> bool:
        return self._done.locked()

    @property
    def exitcode(self) -> int | None:  # type: ignore[override]
        return None  # a thread reports through the result queue; it cannot die silently

    def join(self, timeout: float | None = None) -> None:
        if self._done.acquire(timeout=-1 if timeout is None else timeout):
            self._done.release()

    def terminate(self) -> None:
        """Threads cannot be killed; a timed-out task is stopped by its database timeout."""


class _ResultQueue(queue.SimpleQueue):  # type: ignore[type-arg]
    """What luigi's worker needs of its result queue, without pickling or feeder threads."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return super().get(block, timeout)

    def close(self) -> None:
        """Nothing to release."""


class ThreadWorker(luigi.worker.Worker):
    """luigi's worker, running up to ``worker_processes`` tasks as threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._task_result_queue = _ResultQueue()  # type: ignore[assignment]
        self._pool = _ThreadPool()

    def _add_task(self, *args: Any, **kwargs: Any) -> None:
        """luigi's, naming a dbluigi task to the scheduler by its model (``scheduler_name``)
        rather than by its class: luigid shows this family as the task's name."""
        if kwargs.get("family"):
            task = self._scheduled_tasks.get(kwargs.get("task_id"))
            name = getattr(task, "scheduler_name", None)
            if name is not None:
                kwargs["family"] = name
        super()._add_task(*args, **kwargs)

    def _get_work(self) -> Any:
        """luigi's, unless the run was asked to stop: then the worker phases out as on
        SIGUSR1 (no more work asked for; ``run()`` returns once running tasks finish)."""
        run = _RUN
        if run is not None and run.stop_requested and not self._stop_requesting_work:
            self._start_phasing_out()
        return super()._get_work()

    def _create_task_process(self, task: luigi.Task) -> luigi.worker.TaskProcess:
        """luigi's, made as a ``_ThreadTaskProcess`` when tasks run on threads."""
        if self.worker_processes <= 1:
            return super()._create_task_process(task)
        config = self._config
        messages: Any = multiprocessing.Queue() if task.accepts_messages else None
        process = _ThreadTaskProcess(
            config.task_process_context,
            task,
            self._id,
            self._task_result_queue,
            luigi.worker.TaskStatusReporter(self._scheduler, task.task_id, self._id, messages),
            use_multiprocessing=True,  # luigi then calls start() instead of run()
            worker_timeout=config.timeout,
            check_unfulfilled_deps=config.check_unfulfilled_deps,
            check_complete_on_run=config.check_complete_on_run,
            task_completion_cache=self._task_completion_cache,
        )
        process.pool = self._pool
        return process

    def __exit__(self, *exc: Any) -> bool:
        try:
            return super().__exit__(*exc)  # type: ignore[no-any-return]
        finally:
            self._pool.shutdown()


class _Factory:
    """The ``worker_scheduler_factory`` luigi.build accepts."""

    def __init__(self, graph: _TaskGraph) -> None:
        self.graph = graph

    def create_local_scheduler(self) -> FastScheduler:
        order = {task.task_id: i for i, task in enumerate(self.graph.tasks.values())}
        scheduler = FastScheduler(order=order)
        # without a [resources] limit for the target, its tasks are capped by --workers alone
        # (luigi's default for an unlisted resource would be one task at a time)
        run = _run()
        limits = dict(scheduler._resources or {})
        limits.setdefault(run.target.resource, run.options.workers)
        scheduler._resources = limits
        return scheduler

    def create_remote_scheduler(self, url: str) -> Any:
        import luigi.rpc

        return luigi.rpc.RemoteScheduler(url)

    def create_worker(
        self, scheduler: Any, worker_processes: int, assistant: bool = False
    ) -> ThreadWorker:
        global _WORKER
        _WORKER = ThreadWorker(
            scheduler=scheduler, worker_processes=worker_processes, assistant=assistant
        )
        return _WORKER


def dispatch(run: Run) -> None:
    """Run the plan's models with luigi: local scheduler, ``run.options.workers`` threads."""
    global _RUN, _GRAPH, _WORKER
    config = luigi.configuration.get_config()
    # complete() answers from the plan; a parent finished in another worker thread is
    # known to the scheduler, so luigi need not re-ask before running a task.
    config.set("worker", "check_unfulfilled_deps", "false")
    # dbluigi reports outcomes itself; luigi's own log lines would only repeat them.
    config.set("core", "no_configure_logging", "true")
    config.set("core", "autoload_range", "false")
    logging.getLogger("luigi-interface").setLevel(logging.CRITICAL)
    logging.getLogger("luigi").setLevel(logging.CRITICAL)
    # luigi's SIGUSR1 handler can only be installed from the main thread; a watch loop
    # dispatches from another one (and stops its runs through Run.stop_requested)
    in_main = threading.current_thread() is threading.main_thread()
    config.set("worker", "no_install_shutdown_handler", "false" if in_main else "true")
    if run.stop_requested:
        return
    _RUN = run
    try:
        _GRAPH = _TaskGraph(run)
        where: dict[str, Any] = {"local_scheduler": True}
        if run.options.scheduler_url:
            # workers of other processes and machines share luigid's view of the graph;
            # a task's identity (model, fingerprint, build id) is the same in every one.
            # A worker waits while others still build what it could take on next, and
            # leaves after half a minute with nothing to do (a failure elsewhere).
            where = {"local_scheduler": False, "scheduler_url": run.options.scheduler_url}
        # set for every run: luigi's configuration outlives a run in this process
        config.set("worker", "keep_alive", "true" if run.options.scheduler_url else "false")
        config.set("worker", "max_keep_alive_idle_duration", "30 s")
        luigi.build(
            [DbluigiRun(run_id=run.run_id)],
            worker_scheduler_factory=_Factory(_GRAPH),
            workers=run.options.workers,
            detailed_summary=False,
            **where,
        )
    finally:
        _RUN = None
        _GRAPH = None
        _WORKER = None
