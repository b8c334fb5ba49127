"""The luigi adapter's optimizations keep luigi's behaviour: priorities, run order,
failures and their downstream, resources, and thread workers sharing sessions."""

from __future__ import annotations

from pathlib import Path

import luigi
import luigi.scheduler

from dbluigi.luigi_tasks import FastScheduler
from tests.buildkit import build_json, query
from tests.test_build import write_project


def _started_order(target: str, project: Path, run_id: str) -> list[str]:
    rows = query(
        target,
        project,
        "select model from dbluigi.task_runs where run_id = %s order by started_at",
        [run_id],
    )
    return [r[0] for r in rows]


def test_priority_header_runs_first_then_run_order(tmp_path: Path, duckdb_url: str) -> None:
    write_project(
        tmp_path,
        {
            "a.sql": "select 1 as id",
            "b.sql": "select 1 as id",
            "c.sql": "-- priority: 10\nselect 1 as id",
            "d.sql": "select * from main.a",
        },
    )
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0, payload
    assert _started_order(duckdb_url, tmp_path, payload["run_id"]) == [
        "main.c",
        "main.a",
        "main.b",
        "main.d",
    ]


def _scheduler_with(
    tasks: dict[str, list[str]], priorities: dict[str, int] | None = None
) -> FastScheduler:
    scheduler = FastScheduler(order={t: i for i, t in enumerate(tasks)})
    for task_id, deps in tasks.items():
        scheduler.add_task(
            worker="w",
            task_id=task_id,
            deps=deps,
            priority=(priorities or {}).get(task_id, 0),
            status=luigi.scheduler.PENDING,
        )
    return scheduler


def test_fast_scheduler_hands_out_runnable_tasks_in_rank_order() -> None:
    scheduler = _scheduler_with({"a": [], "b": ["a"], "c": [], "d": ["b", "c"]}, {"c": 5})
    assert scheduler.get_work(worker="w")["task_id"] == "c"  # priority first
    assert scheduler.get_work(worker="w")["task_id"] == "a"
    assert scheduler.get_work(worker="w")["task_id"] is None  # b waits for a, d for b and c
    scheduler.add_task(worker="w", task_id="a", status=luigi.scheduler.DONE)
    assert scheduler.get_work(worker="w")["task_id"] == "b"
    scheduler.add_task(worker="w", task_id="c", status=luigi.scheduler.DONE)
    scheduler.add_task(worker="w", task_id="b", status=luigi.scheduler.FAILED)
    reply = scheduler.get_work(worker="w")
    assert reply["task_id"] is None  # d never runs after b failed
    assert reply["n_pending_tasks"] == 1


def _finish(scheduler: FastScheduler, task_id: str) -> None:
    """What the worker does with a task: take it, run it, report it done."""
    assert scheduler.get_work(worker="w", current_tasks=[])["task_id"] == task_id
    scheduler.add_task(worker="w", task_id=task_id, status=luigi.scheduler.DONE, new_deps=[])


def test_fast_scheduler_runs_the_root_once_after_its_last_dependency() -> None:
    models = [f"m{i:03d}" for i in range(300)]
    tasks = {m: [] for m in models} | {"root": models}
    scheduler = _scheduler_with(tasks)
    walked = 0
    schedulable = scheduler._schedulable

    def counting(task: object) -> bool:
        nonlocal walked
        walked += len(task.deps)  # type: ignore[attr-defined]
        return schedulable(task)

    scheduler._schedulable = counting  # type: ignore[method-assign]
    for model in models:
        _finish(scheduler, model)
    # the root is handed out once, when its last dependency is done; its dependencies
    # are walked then, not after each of the 300 (which made large runs quadratic)
    _finish(scheduler, "root")
    assert scheduler.get_work(worker="w", current_tasks=[])["task_id"] is None
    assert walked == len(models)


def test_fast_scheduler_waits_for_dependencies_found_while_running() -> None:
    scheduler = _scheduler_with({"a": [], "p": []})
    assert scheduler.get_work(worker="w")["task_id"] == "a"
    # a yields dynamic dependencies (a partitioned model's values): it waits for them
    scheduler.add_task(worker="w", task_id="a", status=luigi.scheduler.PENDING, new_deps=["x"])
    scheduler.add_task(worker="w", task_id="x", status=luigi.scheduler.PENDING, deps=["p"])
    _finish(scheduler, "p")
    _finish(scheduler, "x")
    _finish(scheduler, "a")


def test_fast_scheduler_waits_again_for_a_dependency_no_longer_done() -> None:
    scheduler = _scheduler_with({"a": [], "b": [], "c": ["a", "b"]})
    _finish(scheduler, "a")
    assert scheduler.get_work(worker="w", current_tasks=[])["task_id"] == "b"
    scheduler._state.set_status(scheduler._state.get_task("a"), luigi.scheduler.PENDING)
    scheduler.add_task(worker="w", task_id="b", status=luigi.scheduler.DONE)
    _finish(scheduler, "a")  # not c: a is to run again
    _finish(scheduler, "c")


def test_fast_scheduler_respects_resources() -> None:
    scheduler = FastScheduler(resources={"db": 1})
    for task_id in ("x", "y"):
        scheduler.add_task(
            worker="w", task_id=task_id, resources={"db": 1}, status=luigi.scheduler.PENDING
        )
    first = scheduler.get_work(worker="w")["task_id"]
    assert first in ("x", "y")
    assert (
        scheduler.get_work(worker="w", current_tasks=[first])["task_id"] is None
    )  # the resource is taken
    scheduler.add_task(worker="w", task_id=first, status=luigi.scheduler.DONE)
    assert (
        scheduler.get_work(worker="w", current_tasks=[])["task_id"] == ({"x", "y"} - {first}).pop()
    )


def test_fast_scheduler_rehands_a_task_the_worker_lost() -> None:
    scheduler = _scheduler_with({"a": []})
    assert scheduler.get_work(worker="w")["task_id"] == "a"
    # the worker says it runs nothing: the RUNNING task is handed out again, as stock luigi does
    assert scheduler.get_work(worker="w", current_tasks=[])["task_id"] == "a"


def test_cached_parameters_give_the_task_ids_and_params_stock_luigi_gives() -> None:
    from dbluigi.luigi_tasks import DbluigiModel, DbluigiPartition, MissingRelation

    class StockModel(luigi.Task):  # the same parameters, without the caches
        model = luigi.Parameter()
        fingerprint = luigi.Parameter()
        build_id = luigi.Parameter()
        round = luigi.Parameter(default="")
        kind = luigi.Parameter(default="", significant=False)

    ours = DbluigiModel(model="main.a", fingerprint="f1", build_id="b1")
    stock = StockModel(model="main.a", fingerprint="f1", build_id="b1")
    assert ours.get_params() == DbluigiModel.get_params()
    assert [name for name, _ in ours.get_params()] == [name for name, _ in stock.get_params()]
    assert ours.to_str_params() == stock.to_str_params()
    assert ours.to_str_params(only_significant=True) == stock.to_str_params(only_significant=True)
    assert ours.task_id.split("_", 1)[1] == stock.task_id.split("_", 1)[1]
    ours.to_str_params()["model"] = "changed"  # a caller's copy, not the cache
    assert ours.to_str_params()["model"] == "main.a"
    other = DbluigiModel(model="main.b", fingerprint="f1", build_id="b1")
    assert other.to_str_params()["model"] == "main.b" and other.task_id != ours.task_id
    part = DbluigiPartition(model="main.a", fingerprint="f", build_id="b", partition="2024")
    names = ["model", "fingerprint", "build_id", "round", "kind", "partition"]
    assert [n for n, _ in part.get_params()] == names
    assert MissingRelation(relation="x.y").to_str_params() == {"relation": "x.y"}


def test_tasks_are_named_for_luigid_by_model_and_partition_kind_outside_the_id() -> None:
    from dbluigi.luigi_tasks import DbluigiModel, DbluigiPartition, DbluigiSettled, MissingRelation

    model = DbluigiModel(model="staging.agencies", fingerprint="f", build_id="b", kind="table")
    assert model.scheduler_name == "staging.agencies"
    assert (
        model.task_id
        == DbluigiModel(model="staging.agencies", fingerprint="f", build_id="b").task_id
    )
    assert model.to_str_params()["kind"] == "table"
    assert "kind" not in model.to_str_params(only_significant=True)
    part = DbluigiPartition(
        model="main.sales", partition="[gb]", fingerprint="f", build_id="b", kind="table"
    )
    assert part.scheduler_name == "main.sales[[gb]]"
    assert DbluigiModel.get_task_family() == "DbluigiModel"  # what luigi loads a task by
    assert MissingRelation(relation="raw.x").scheduler_name == "raw.x missing"
    assert DbluigiSettled(model="main.a", build_id="b").scheduler_name == "main.a settled"


def test_fast_scheduler_reuses_the_task_a_dependency_already_named() -> None:
    scheduler = FastScheduler()
    scheduler.add_task(worker="w", task_id="child", deps=["parent"], status="PENDING")
    stub = scheduler._state.get_task("parent")
    assert stub is not None and stub.status == "UNKNOWN"
    scheduler.add_task(
        worker="w", task_id="parent", status="PENDING", family="F", params={"a": "1"}
    )
    task = scheduler._state.get_task("parent")
    assert task is stub and task.status == "PENDING" and task.family == "F"
    assert task.params == {"a": "1"}
    scheduler.add_task(worker="w", task_id="parent", status="DONE")
    reply = scheduler.get_work(worker="w")
    assert reply["task_id"] == "child"


def test_thread_pool_reuses_idle_threads_and_grows_past_a_stuck_one() -> None:
    import threading

    from dbluigi.luigi_tasks import _ThreadPool

    pool = _ThreadPool()
    names: list[str] = []
    try:
        for _ in range(5):  # one at a time: one thread does them all
            assert pool.submit(lambda: names.append(threading.current_thread().name)).acquire(
                timeout=5
            )
        assert len(set(names)) == 1 and names[0].startswith("dbluigi-worker")
        stuck = threading.Event()
        pool.submit(stuck.wait)  # a task luigi gave up on keeps its thread
        ran = pool.submit(lambda: names.append(threading.current_thread().name))
        assert ran.acquire(timeout=5), "a job waited behind a stuck thread"
        stuck.set()
    finally:
        pool.shutdown()
