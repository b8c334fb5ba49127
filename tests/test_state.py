"""The state store on both targets: runs read back as named records, and the history of
successful builds that the slow-task audit reads."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dbluigi import __version__
from dbluigi.state import StateStore, TaskRecord
from dbluigi.targets import open_target


@pytest.fixture
def store(target_url: str, tmp_path: Path) -> Iterator[StateStore]:
    session = open_target(target_url, project_dir=tmp_path).connect()
    store = StateStore(session)
    store.ensure()
    yield store
    session.close()


def test_runs_read_back_as_records(store: StateStore) -> None:
    store.start_run("r1", "build", "a+", "postgresql://etl:***@db/warehouse", 4)
    store.finish_run("r1", "success")
    store.start_run("r2", "check", "", "duckdb:///t.duckdb", 1)

    runs = store.runs(5)
    assert [r.run_id for r in runs] == ["r2", "r1"]
    done, running = runs[1], runs[0]
    assert (done.command, done.selector, done.status) == ("build", "a+", "success")
    assert (done.version, done.hostname) == (__version__, socket.gethostname())
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert running.status == "running" and running.finished_at is None
    assert tuple(done)[:3] == ("r1", "build", "a+")  # still the row, in column order
    assert store.runs(1) == [running]

    record = store.run("r1")
    assert record is not None
    assert record.target == "postgresql://etl:***@db/warehouse"
    assert (record.pid, record.workers, record.status) == (os.getpid(), 4, "success")
    assert record.started_at == done.started_at
    assert store.run("r9") is None


def test_recent_durations_are_successful_builds_newest_first(store: StateStore) -> None:
    start = datetime(2024, 5, 1, 12, 0)
    runs = {"b1": "build", "b2": "rebuild", "c3": "check", "b4": "build", "b5": "build"}
    for run_id, command in runs.items():
        store.start_run(run_id, command, "", "t", 1)
    attempts = [
        ("b1", "a", "success", 1.0),
        ("b1", "b", "success", 10.0),
        ("b2", "a", "failed", 99.0),  # a failed attempt is no build
        ("b2", "a", "success", 2.0),
        ("c3", "a", "success", 0.1),  # check runs do not count
        ("b4", "a", "success", 4.0),
        ("b5", "a", "success", 5.0),
    ]
    store.record_tasks(
        [
            TaskRecord(run_id, model, status, start + timedelta(minutes=i), duration)
            for i, (run_id, model, status, duration) in enumerate(attempts)
        ]
    )

    assert store.recent_durations(limit=10) == {"a": [5.0, 4.0, 2.0, 1.0], "b": [10.0]}
    assert store.recent_durations(limit=2, exclude_run="b5") == {"a": [4.0, 2.0], "b": [10.0]}
    assert store.recent_durations(limit=10, models=["b"]) == {"b": [10.0]}
    assert store.recent_durations(limit=10, models=[]) == {}


def test_the_state_shape_is_what_the_migrations_create(store: StateStore) -> None:
    from dbluigi.state import STATE_TABLES

    for table, columns in STATE_TABLES.items():
        created = store.session.query(
            "select column_name from information_schema.columns "
            "where table_schema = 'dbluigi' and table_name = %s order by ordinal_position",
            [table],
        ).rows
        assert [c for (c,) in created] == [name for name, _ in columns]
    assert store.diagnose() == []
    assert store.repair() == []


def test_a_build_is_recorded_whatever_the_run_knew_of_its_row(store: StateStore) -> None:
    """``stored`` is what the run read of the model's row at its start (None: nothing); a
    row it thought was there but is not is inserted all the same."""

    def build(build_id: str, generation: int, stored: bool | None) -> None:
        record = TaskRecord(
            "r1", "main.a", "success", datetime(2026, 1, 1), fingerprint="f", build_id=build_id
        )
        with store.session.transaction():
            store.record_success(
                record, kind="table", content_fp="c", generation=generation, stored=stored
            )
        assert store.model_state("main.a") == (build_id, generation)

    build("b1", 1, False)
    build("b2", 2, True)
    build("b3", 3, None)
    store.session.execute("delete from dbluigi.models")
    build("b4", 4, True)
    store.session.execute("delete from dbluigi.models")
    build("b5", 5, None)
    assert [r.build_id for r in store.task_records("r1")] == ["b1", "b2", "b3", "b4", "b5"]
    assert len(store.read_models()) == 1


def _journaled_build(store: StateStore, build_id: str, *, variant: str | None = None) -> None:
    record = TaskRecord(
        "r1", "main.a", "success", datetime(2026, 1, 1, 12, 30), fingerprint="f", build_id=build_id
    )
    with store.session.transaction():
        store.record_success(
            record,
            kind="table",
            content_fp="c",
            generation=1,
            output_version=("%s", ["pending"]),
            variant=variant,
        )


def _raw(store: StateStore, sql: str) -> list[tuple[object, ...]]:
    """A read that does not fold the journal (the tables as they are)."""
    return [tuple(r) for r in store.session.query(sql).rows]


def test_a_one_writer_target_journals_builds_and_every_read_folds_them(
    duckdb_url: str, tmp_path: Path
) -> None:
    """On DuckDB a build's rows travel as one journal entry in its publishing
    transaction; the first read of the state folds them into models and task_runs."""
    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    store = StateStore(session)
    store.ensure()
    _journaled_build(store, "b1", variant="@dev")
    assert _raw(store, "select count(*) from dbluigi.journal") == [(1,)]
    assert _raw(store, "select count(*) from dbluigi.models") == [(0,)]

    assert store.model_state("main.a") == ("b1", 1)
    assert store.model_state("main.a", "@dev") == ("b1", 1)  # the variant kept it too
    assert _raw(store, "select count(*) from dbluigi.journal") == [(0,)]
    (attempt,) = store.task_records("r1")
    assert (attempt.model, attempt.build_id, attempt.started_at) == (
        "main.a",
        "b1",
        datetime(2026, 1, 1, 12, 30),
    )
    assert _raw(store, "select output_version from dbluigi.models where partition_key = ''") == [
        ("pending",)
    ]

    # a newer build replaces the row; a rolled-back one leaves nothing behind
    _journaled_build(store, "b2")
    with pytest.raises(RuntimeError), session.transaction():
        _journaled_build_in(store, "b3")
        raise RuntimeError("the publish failed")
    assert store.model_state("main.a") == ("b2", 1)
    assert [r.build_id for r in store.task_records("r1")] == ["b1", "b2"]
    assert _raw(store, "select count(*) from dbluigi.journal") == [(0,)]
    session.close()


def _journaled_build_in(store: StateStore, build_id: str) -> None:
    """The journal entry of a build, inside the caller's transaction."""
    record = TaskRecord("r1", "main.a", "success", datetime(2026, 1, 1), build_id=build_id)
    store.record_success(
        record, kind="table", content_fp="c", generation=9, output_version=("%s", ["pending"])
    )


def test_a_journal_left_by_a_process_that_died_is_folded_by_the_next(
    duckdb_url: str, tmp_path: Path
) -> None:
    from dbluigi import state

    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    store = StateStore(session)
    store.ensure()
    _journaled_build(store, "b1")
    session.close()
    state._JOURNALED.clear()  # a new process knows nothing of what the last one wrote

    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    store = StateStore(session)
    assert _raw(store, "select count(*) from dbluigi.journal") == [(1,)]
    store.ensure()  # every command that uses the state starts so
    assert _raw(store, "select model, build_id from dbluigi.models") == [("main.a", "b1")]
    assert _raw(store, "select count(*) from dbluigi.journal") == [(0,)]
    session.close()


def _killed_after_a_publish(url: str, folder: Path) -> None:
    """Another process journals a build of main.a (build b9), commits, and is killed."""
    import signal
    import subprocess
    import sys
    import textwrap

    child = textwrap.dedent(
        f"""
        import os, signal
        from datetime import datetime
        from pathlib import Path
        from dbluigi.targets import open_target
        from dbluigi.state import StateStore, TaskRecord
        s = open_target({url!r}, project_dir=Path({str(folder)!r})).connect()
        store = StateStore(s)
        store.ensure()
        record = TaskRecord(
            "r9", "main.a", "success", datetime(2026, 1, 1), fingerprint="f", build_id="b9"
        )
        with s.transaction():
            store.record_success(
                record, kind="table", content_fp="c", generation=1,
                output_version=("%s", ["pending"]),
            )
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], timeout=60)
    assert done.returncode == -signal.SIGKILL


def test_a_long_lived_process_folds_what_another_process_left_in_the_journal(
    duckdb_url: str, tmp_path: Path
) -> None:
    """A watch loop or an API caller closes the file between runs; another process killed
    after a publish meanwhile leaves its entry, which the next run here must see."""
    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    StateStore(session).ensure()  # folds: this process knows the journal empty
    session.close()
    _killed_after_a_publish(duckdb_url, tmp_path)
    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    store = StateStore(session)
    store.ensure()
    assert store.model_state("main.a") == ("b9", 1)
    assert _raw(store, "select count(*) from dbluigi.journal") == [(0,)]
    session.close()


def test_a_state_read_as_it_is_sees_the_builds_a_killed_process_journaled(
    duckdb_url: str, tmp_path: Path
) -> None:
    """``docs`` reads the state as it is, and folds what a build that died left."""
    _killed_after_a_publish(duckdb_url, tmp_path)
    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    store = StateStore(session)
    store.read_as_it_is()
    assert store.read_models()["main.a"].build_id == "b9"
    assert [r.build_id for r in store.task_records("r9")] == ["b9"]
    session.close()


def test_repair_of_a_state_of_an_older_version(store: StateStore) -> None:
    """`debug --repair-state` on a state an older dbluigi made (version 4: no
    ``runs.options``), as `debug` advises for it: the migration adds the column, which the
    repair added again (an error: the column exists)."""
    store.session.execute("alter table dbluigi.runs drop column options")
    store.session.execute("update dbluigi.meta set value = '4' where key = 'schema_version'")
    assert store.repair() == [
        "added column dbluigi.runs.options",
        "set the state schema version to 5",
    ]
    assert store.diagnose() == []
