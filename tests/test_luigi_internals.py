"""The luigi internals that ``dbluigi.luigi_tasks`` builds on, pinned in one place.

``FastScheduler`` and ``ThreadWorker`` override or call private parts of luigi's
scheduler and worker (see their docstrings). The ``luigi<4`` pin guards them; this test
makes a luigi upgrade that renames or reshapes any of them fail here, loudly and first,
instead of somewhere in the middle of a build.
"""

from __future__ import annotations

import inspect

import luigi
import luigi.interface
import luigi.rpc
import luigi.scheduler
import luigi.worker
import pytest

from dbluigi.luigi_tasks import FastScheduler, ThreadWorker, _Factory

pytestmark = pytest.mark.unit


def _parameters(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_scheduler_methods_and_signatures() -> None:
    scheduler = luigi.scheduler.Scheduler
    assert _parameters(scheduler.add_task)[:2] == ["self", "task_id"]
    for name in (
        "status",
        "deps",
        "new_deps",
        "resources",
        "priority",
        "family",
        "params",
        "worker",
    ):
        assert name in _parameters(scheduler.add_task), name
    assert _parameters(scheduler.get_work)[:5] == [
        "self",
        "host",
        "assistant",
        "current_tasks",
        "worker",
    ]
    assert _parameters(scheduler.count_pending) == ["self", "worker"]
    assert _parameters(scheduler._update_worker)[:2] == ["self", "worker_id"]
    for private in (
        "_schedulable",
        "_used_resources",
        "_has_resources",
        "update_metrics_task_started",
    ):
        assert callable(getattr(scheduler, private)), private
    assert _parameters(scheduler._has_resources) == ["self", "needed_resources", "used_resources"]
    # the settings FastScheduler passes as keyword arguments
    for setting in ("prune_on_get_work", "record_task_history"):
        assert isinstance(getattr(luigi.scheduler.scheduler, setting), luigi.Parameter), setting
    assert (luigi.scheduler.PENDING, luigi.scheduler.RUNNING, luigi.scheduler.DONE) == (
        "PENDING",
        "RUNNING",
        "DONE",
    )


def test_scheduler_state_and_task_attributes() -> None:
    scheduler = FastScheduler()
    for name in ("_state", "_config", "_resources", "_paused", "_make_task"):
        assert hasattr(scheduler, name), name
    state = scheduler._state
    for name in (
        "get_task",
        "get_worker",
        "set_status",
        "get_active_tasks_by_status",
        "get_active_task_count_for_status",
    ):
        assert callable(getattr(state, name)), name
    assert _parameters(state.get_task)[:2] == ["task_id", "default"]
    # FastScheduler wraps set_status, through which every status change goes
    assert _parameters(luigi.scheduler.SimpleTaskState.set_status) == [
        "self",
        "task",
        "new_status",
        "config",
    ]
    scheduler.add_task(worker="w", task_id="T_1", deps=["T_0"], resources={"r": 1}, priority=3)
    task = state.get_task("T_1")
    for name in ("id", "deps", "status", "priority", "workers", "resources", "family", "params"):
        assert hasattr(task, name), name
    for name in ("worker_running", "time_running"):  # resources_running is set by get_work
        assert name in vars(task), name
    # a task marked done by a worker that is not running it (a check's wait released)
    scheduler.add_task(worker="w", task_id="T_1", status=luigi.scheduler.DONE)
    assert state.get_task("T_1").status == luigi.scheduler.DONE


def test_worker_internals() -> None:
    worker = luigi.worker.Worker
    assert _parameters(worker.__init__)[:4] == [
        "self",
        "scheduler",
        "worker_id",
        "worker_processes",
    ]
    assert _parameters(worker._create_task_process) == ["self", "task"]
    for name in ("__exit__", "_create_task_process"):
        assert callable(getattr(worker, name)), name
    with ThreadWorker(scheduler=FastScheduler(), worker_processes=2) as running:
        for name in ("_task_result_queue", "worker_processes", "_scheduler", "_id"):
            assert hasattr(running, name), name
    process = luigi.worker.ContextManagedTaskProcess
    assert issubclass(process, luigi.worker.TaskProcess)
    for name in ("start", "is_alive", "join", "terminate", "run"):
        assert callable(getattr(process, name)), name
    assert "use_multiprocessing" in _parameters(luigi.worker.TaskProcess.__init__)


def test_worker_phasing_out() -> None:
    """A run asked to stop phases its worker out as luigi's SIGUSR1 handler does; luigi's
    handler is not installed when a watch loop dispatches from another thread."""
    assert _parameters(luigi.worker.Worker._get_work) == ["self"]
    assert isinstance(luigi.worker.worker.no_install_shutdown_handler, luigi.Parameter)
    with ThreadWorker(scheduler=FastScheduler(), worker_processes=1) as running:
        assert running._stop_requesting_work is False
        running._start_phasing_out()
        assert running._stop_requesting_work is True
        assert running._get_work().worker_state == luigi.worker.WORKER_STATE_DISABLED


def test_build_takes_the_factory() -> None:
    assert "worker_scheduler_factory" in _parameters(luigi.interface.build)
    for name in ("create_local_scheduler", "create_remote_scheduler", "create_worker"):
        assert callable(getattr(_Factory, name)), name
        assert callable(getattr(luigi.interface._WorkerSchedulerFactory, name)), name
    assert _parameters(luigi.interface._WorkerSchedulerFactory.create_worker) == _parameters(
        _Factory.create_worker
    )
    assert callable(luigi.rpc.RemoteScheduler)


def test_worker_names_a_task_to_the_scheduler_through_add_task() -> None:
    """``ThreadWorker._add_task`` swaps the family luigi sends for the task's
    ``scheduler_name`` (what luigid shows as its name): luigi's worker must call it with
    ``task_id`` and ``family`` as keywords, the task already in ``_scheduled_tasks``; a
    parameter that is not significant still reaches the scheduler as a public one."""
    assert _parameters(luigi.worker.Worker._add_task) == ["self", "args", "kwargs"]

    class NamedForLuigid(luigi.Task):
        scheduler_name = "staging.agencies"
        kind = luigi.Parameter(default="", significant=False)

        def complete(self) -> bool:
            return False

    named = NamedForLuigid(kind="table")
    assert named.task_id == NamedForLuigid().task_id  # kind is not part of the id
    assert named.task_id.startswith("NamedForLuigid_")
    scheduler = FastScheduler()
    with ThreadWorker(scheduler=scheduler, worker_processes=1) as worker:
        assert worker.add(named)
        assert worker._scheduled_tasks[named.task_id] is named
    task = scheduler._state.get_task(named.task_id)
    assert task.family == "staging.agencies"
    assert task.public_params == {"kind": "table"}
    assert task.pretty_id == "staging.agencies(kind=table)"
    assert scheduler._serialize_task(named.task_id)["name"] == "staging.agencies"
