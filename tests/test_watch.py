"""Continuous mode (``build --watch``): the loop, stopping, the file filter, the interval
option, and whole watch processes on PostgreSQL edited, failing and stopped by signals."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import watchfiles

from dbluigi.config import load_config, parse_interval
from dbluigi.errors import ProjectError
from dbluigi.project import load_project
from dbluigi.runner import STOPPED, RunOptions, run_plan
from dbluigi.targets import open_target
from dbluigi.watch import Cycle, ProjectFilter, StopRequest, Trigger, loop
from tests.buildkit import ROOT, cli, query, validate
from tests.test_build import write_project
from tests.test_distributed import _luigid_tasks, luigid  # noqa: F401 (a fixture)

CYCLE_TIMEOUT_S = 20.0  # how long a test waits for the cycle it expects


# -- the loop, with cycles and file changes of the test's own ------------------------------


class _Files:
    """File changes the test makes happen (the loop's ChangeSource)."""

    def __init__(self, wake: threading.Event) -> None:
        self.changed: list[str] = []
        self.wake = wake

    def change(self, path: str) -> None:
        self.changed.append(path)
        self.wake.set()

    def pending(self) -> bool:
        return bool(self.changed)

    def take(self) -> tuple[str, ...]:
        taken, self.changed = tuple(self.changed), []
        return taken


def _cycle(trigger: Trigger, interval_s: float | None) -> Cycle:
    return Cycle(trigger, datetime.now().astimezone(), 0.0, interval_s=interval_s)


def _never(signum: int) -> None:
    raise AssertionError("a second stop request came")


@pytest.mark.unit
def test_loop_runs_at_start_on_each_interval_and_file_change_until_stopped() -> None:
    wake = threading.Event()
    files, stop = _Files(wake), StopRequest(_never)
    stop.on_request(wake.set)
    triggers: list[Trigger] = []
    reports: list[Cycle] = []

    def run_cycle(trigger: Trigger) -> Cycle:
        triggers.append(trigger)
        assert threading.current_thread() is not threading.main_thread()
        if trigger.number == 2:
            files.change("s/a.sql")  # saved during the cycle: the next one starts at once
        if trigger.number == 3:
            stop.request()
        return _cycle(trigger, 0.05)

    assert loop(run_cycle, files, stop, reports.append, wake) == 3
    assert [(t.reason, t.changed) for t in triggers] == [
        ("start", ()),
        ("interval", ()),
        ("change", ("s/a.sql",)),
    ]
    assert len(reports) == 3 and all(r.next_check_at is not None for r in reports)


@pytest.mark.unit
def test_loop_waits_for_a_file_change_after_a_cycle_without_an_interval() -> None:
    wake = threading.Event()
    files, stop = _Files(wake), StopRequest(_never)
    stop.on_request(wake.set)
    triggers: list[Trigger] = []

    def run_cycle(trigger: Trigger) -> Cycle:
        triggers.append(trigger)
        if trigger.number == 1:  # the project did not load: only a change may mend it
            threading.Timer(0.3, files.change, ["s/a.sql"]).start()
            return _cycle(trigger, None)
        stop.request()
        return _cycle(trigger, 0.01)

    started = time.monotonic()
    assert loop(run_cycle, files, stop, lambda cycle: None, wake) == 2
    assert time.monotonic() - started >= 0.3
    assert [t.reason for t in triggers] == ["start", "change"]


@pytest.mark.unit
def test_loop_raises_what_a_cycle_raises() -> None:
    wake = threading.Event()

    def run_cycle(trigger: Trigger) -> Cycle:
        raise ProjectError("no such selector")

    with pytest.raises(ProjectError, match="no such selector"):
        loop(run_cycle, _Files(wake), StopRequest(_never), lambda cycle: None, wake)


@pytest.mark.unit
def test_stop_request_first_asks_then_stops_at_once() -> None:
    hard: list[int] = []
    first: list[int] = []
    woken = threading.Event()
    stop = StopRequest(hard.append, on_first=first.append)
    stop.on_request(woken.set)
    previous = signal.getsignal(signal.SIGTERM)
    with stop.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        assert woken.wait(5) and stop.requested and first == [signal.SIGTERM] and hard == []
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not hard and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hard == [signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.mark.unit
def test_the_filter_keeps_project_files_and_leaves_out_state_caches_and_editor_files(
    tmp_path: Path,
) -> None:
    keep = ProjectFilter(tmp_path, ignore=["exports"])
    for path in ("s/a.sql", "raw/items.csv", "dbluigi.toml", "steps/pivot.py", "a.check.sql"):
        assert keep(watchfiles.Change.modified, str(tmp_path / path)), path
    for path in (
        ".dbluigi/runs/latest.json",
        ".dbluigi/target.duckdb.wal",
        "s/.a.sql.swp",
        "s/a.sql~",
        "s/.#a.sql",
        "s/#a.sql#",
        "s/4913",
        "s/a.sql.tmp",
        "exports/report.csv",
        "steps/__pycache__/pivot.cpython-311.pyc",
        ".git/index",
        "local.duckdb",
    ):
        assert not keep(watchfiles.Change.modified, str(tmp_path / path)), path
    assert not keep(watchfiles.Change.modified, "/elsewhere/a.sql")


@pytest.mark.unit
def test_the_interval_option_and_setting_are_checked(tmp_path: Path) -> None:
    assert parse_interval("30") == 30 and parse_interval("5m") == 300 and parse_interval(2) == 2
    for bad in ("0", "-5", "soon", 0.5, True, "nan"):
        with pytest.raises(ValueError):
            parse_interval(bad)
    write_project(tmp_path, {"a.sql": "select 1 as id", "dbluigi.toml": "[watch]\ninterval = 15\n"})
    assert load_config(tmp_path).watch_interval == 15
    (tmp_path / "dbluigi.toml").write_text('[watch]\ninterval = "soon"\n')
    with pytest.raises(ProjectError) as caught:
        load_config(tmp_path)
    assert (caught.value.path, caught.value.line) == ("dbluigi.toml", 2)
    assert "[watch] interval = 'soon'" in str(caught.value)

    code, output = cli("build", "--watch", project=tmp_path, target="duckdb")
    assert code == 2 and "dbluigi.toml:2: [watch] interval = 'soon'" in output
    code, output = cli("build", "--interval", "5", project=tmp_path, target="duckdb")
    assert code == 2 and "--interval is for --watch" in output
    code, output = cli("build", "--watch", "--interval", "0.2", project=tmp_path, target="duckdb")
    assert code == 2 and "--interval: '0.2' is less than 1 second" in output
    code, output = cli(
        "rebuild", "a", "--watch", "--interval", "x", project=tmp_path, target="duckdb"
    )
    assert code == 2 and "--interval: bad duration 'x'" in output


def test_a_first_cycle_that_cannot_run_stops_the_command(tmp_path: Path, duckdb_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    code, output = cli("build", "nosuch", "--watch", project=tmp_path, target=duckdb_url)
    assert code == 2 and "nosuch" in output, output


# -- a run asked to stop ------------------------------------------------------------------


def test_a_stopped_run_finishes_the_running_task_and_starts_no_other(
    tmp_path: Path, duckdb_url: str
) -> None:
    from dbluigi.luigi_tasks import dispatch

    write_project(
        tmp_path,
        {
            "a.sql": "select 1 as id",
            "b.sql": "select id from main.a",
            "c.sql": "select id from main.b",
            "d.sql": "select 2 as id",
        },
    )
    project = load_project(tmp_path, target=duckdb_url)
    stop = threading.Event()

    def on_event(model: str, event: str) -> None:
        if event == "start":
            stop.set()  # asked to stop while the first task runs

    result = run_plan(
        project,
        open_target(duckdb_url, project_dir=tmp_path),
        RunOptions(),
        dispatch,
        on_event=on_event,
        stop=stop,
    )
    outcome = {r.model: (r.status, r.error) for r in result.results}
    assert outcome["main.a"] == ("success", None)
    assert {m: o for m, o in outcome.items() if m != "main.a"} == {
        m: ("skipped", STOPPED) for m in ("main.b", "main.c", "main.d")
    }
    runs = query(duckdb_url, tmp_path, "select status from dbluigi.runs")
    assert runs == [("stopped",)]
    assert query(duckdb_url, tmp_path, "select id from main.a") == [(1,)]


# -- watch processes on PostgreSQL ----------------------------------------------------------


class _Watch:
    """``dbluigi build --watch --json`` in a subprocess; its cycles, one JSON line each."""

    def __init__(self, project: Path, target: str, *args: str, command: str = "build") -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dbluigi.cli",
                command,
                "--watch",
                "--json",
                *args,
                "--project",
                str(project),
                "--target",
                target,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.cycles: list[dict[str, Any]] = []
        self._lines: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self._errors.extend(self.process.stderr)

    def until(self, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The next cycle ``wanted`` holds for (failing after CYCLE_TIMEOUT_S)."""
        deadline = time.monotonic() + CYCLE_TIMEOUT_S
        while True:
            try:
                cycle = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no cycle {what} in {CYCLE_TIMEOUT_S:g}s") from None
            if cycle is None:
                raise AssertionError(f"the watch ended before a cycle {what}: {self.stop()}")
            self.cycles.append(validate(cycle))  # each line against the shipped schema
            if wanted(cycle):
                return cycle

    def stop(self, *signals: signal.Signals) -> tuple[int, str]:
        """Send ``signals`` (SIGTERM by default); (exit code, stderr) once it has ended."""
        for sent in signals or (signal.SIGTERM,):
            if self.process.poll() is None:
                self.process.send_signal(sent)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        for reader in self._readers:
            reader.join(timeout=5)
        while (cycle := self._get_nowait()) is not None:
            self.cycles.append(validate(cycle))
        return self.process.returncode, "".join(self._errors)

    def _get_nowait(self) -> dict[str, Any] | None:
        try:
            return self._lines.get_nowait()
        except queue.Empty:
            return None


@pytest.fixture
def watching() -> Iterator[list[_Watch]]:
    """Watch processes the test starts; killed afterwards if still running."""
    started: list[_Watch] = []
    yield started
    for watch in started:
        if watch.process.poll() is None:
            watch.process.kill()
            watch.process.wait()


def _built(cycle: dict[str, Any]) -> set[str]:
    return {r["model"] for r in (cycle["run"] or {}).get("tasks", []) if r["status"] == "success"}


def _leftovers(pg_url: str, project: Path) -> list[tuple[Any, ...]]:
    return query(
        pg_url,
        project,
        "select table_schema, table_name from information_schema.tables where table_name like %s",
        ["%dbluigi%"],
    )


@pytest.mark.postgres
def test_watch_rebuilds_what_an_edit_makes_stale_and_stops_on_sigterm(
    tmp_path: Path, pg_url: str, watching: list[_Watch]
) -> None:
    session = open_target(pg_url, project_dir=tmp_path).connect()
    session.execute("create schema src")
    session.execute("create table src.items (id integer)")
    session.execute("insert into src.items values (1)")
    session.close()
    write_project(
        tmp_path,
        {
            "a.sql": "select 1 as id",
            "b.sql": "select id * 10 as x from main.a",
            "counted.sql": "select count(*) as n from src.items",
        },
    )
    watch = _Watch(tmp_path, pg_url, "--interval", "2")
    watching.append(watch)
    first = watch.until(lambda c: True, "at all")
    assert first["trigger"] == "start" and first["exit_code"] == 0, first
    assert _built(first) == {"main.a", "main.b", "main.counted"}
    assert first["next_check_at"] is not None

    (tmp_path / "a.sql").write_text("select 2 as id")
    edited = watch.until(lambda c: bool(_built(c)), "building the edit")
    assert edited["trigger"] == "change" and edited["changed"] == ["a.sql"], edited
    assert _built(edited) == {"main.a", "main.b"}
    assert query(pg_url, tmp_path, "select x from main.b") == [(20,)]

    # rows inserted into an input table (no model produces src.items): seen on the interval
    session = open_target(pg_url, project_dir=tmp_path).connect()
    session.execute("insert into src.items values (2), (3)")
    session.close()
    noticed = watch.until(lambda c: bool(_built(c)), "rebuilding the input's reader")
    assert noticed["trigger"] == "interval" and _built(noticed) == {"main.counted"}
    assert query(pg_url, tmp_path, "select n from main.counted") == [(3,)]

    watch.until(lambda c: c["trigger"] == "interval", "on the interval")
    code, err = watch.stop()
    assert code == 0, err
    assert all(c["exit_code"] == 0 for c in watch.cycles), watch.cycles
    runs = query(pg_url, tmp_path, "select run_id, command, status from dbluigi.runs")
    assert sorted(runs) == sorted((c["run"]["run_id"], "build", "success") for c in watch.cycles)
    assert _leftovers(pg_url, tmp_path) == []
    assert query(pg_url, tmp_path, "select id from main.a") == [(2,)]


@pytest.mark.postgres
def test_watch_reports_a_file_that_does_not_parse_and_builds_it_once_mended(
    tmp_path: Path, pg_url: str, watching: list[_Watch]
) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select id from main.a"})
    watch = _Watch(tmp_path, pg_url, "--interval", "1")
    watching.append(watch)
    watch.until(lambda c: c["trigger"] == "start", "at start")

    (tmp_path / "b.sql").write_text("select id,\n  from main.a where")
    broken = watch.until(lambda c: c["error"] is not None, "reporting the broken file")
    assert broken["error"]["file"] == "b.sql" and broken["error"]["line"] in (1, 2), broken
    assert broken["next_check_at"] is None and broken["exit_code"] == 2
    time.sleep(2)  # two intervals: a broken project is waited out, not planned again
    since_broken = len(watch.cycles)

    (tmp_path / "b.sql").write_text("select id + 1 as id from main.a")
    mended = watch.until(lambda c: c["error"] is None, "after the file was mended")
    assert mended["trigger"] == "change" and _built(mended) == {"main.b"}, mended
    assert [c["trigger"] for c in watch.cycles[since_broken:]] == ["change"]
    assert query(pg_url, tmp_path, "select id from main.b") == [(2,)]
    code, err = watch.stop()
    assert code == 0, err


@pytest.mark.postgres
def test_a_failing_cycle_does_not_stop_the_loop(
    tmp_path: Path, pg_url: str, watching: list[_Watch]
) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select id from main.a"})
    watch = _Watch(tmp_path, pg_url, "--interval", "1")
    watching.append(watch)
    watch.until(lambda c: c["trigger"] == "start", "at start")

    (tmp_path / "a.sql").write_text("select 1 / 0 as id")
    failed = watch.until(lambda c: c["exit_code"] == 1, "failing")
    outcome = {r["model"]: r["status"] for r in failed["run"]["tasks"]}
    assert outcome == {"main.a": "failed", "main.b": "skipped"}
    assert failed["next_check_at"] is not None
    assert query(pg_url, tmp_path, "select id from main.a") == [(1,)]  # the old table stays

    watch.until(lambda c: c["trigger"] == "interval", "on the interval after the failure")
    (tmp_path / "a.sql").write_text("select 3 as id")
    mended = watch.until(lambda c: _built(c) == {"main.a", "main.b"}, "after the fix")
    assert mended["exit_code"] == 0
    code, err = watch.stop()
    assert code == 0, err
    assert query(pg_url, tmp_path, "select id from main.b") == [(3,)]
    statuses = {s for (s,) in query(pg_url, tmp_path, "select status from dbluigi.runs")}
    assert statuses == {"success", "failed"}


def _wait_for_query(pg_url: str, project: Path, text: str) -> None:
    deadline = time.monotonic() + CYCLE_TIMEOUT_S
    sql = (
        "select count(*) from pg_stat_activity where query like %s "
        "and datname = current_database() and pid <> pg_backend_pid()"
    )
    while query(pg_url, project, sql, [f"%{text}%"]) == [(0,)]:
        assert time.monotonic() < deadline, f"no query with {text!r} started"
        time.sleep(0.1)


@pytest.mark.postgres
def test_sigterm_lets_the_running_task_finish_and_starts_no_other(
    tmp_path: Path, pg_url: str, watching: list[_Watch]
) -> None:
    write_project(
        tmp_path,
        {
            "slow.sql": "select 1 as id from (select pg_sleep(2)) as s",
            "after.sql": "select id from main.slow",
        },
    )
    watch = _Watch(tmp_path, pg_url)
    watching.append(watch)
    _wait_for_query(pg_url, tmp_path, "pg_sleep")
    code, err = watch.stop()
    assert code == 0, err
    assert "stopping: running tasks finish" in err
    (cycle,) = watch.cycles
    outcome = {r["model"]: (r["status"], r["error"]) for r in cycle["run"]["tasks"]}
    assert outcome == {"main.slow": ("success", None), "main.after": ("skipped", STOPPED)}
    assert query(pg_url, tmp_path, "select id from main.slow") == [(1,)]
    assert query(pg_url, tmp_path, "select status from dbluigi.runs") == [("stopped",)]
    assert _leftovers(pg_url, tmp_path) == []


@pytest.mark.postgres
def test_a_second_sigterm_stops_at_once(
    tmp_path: Path, pg_url: str, watching: list[_Watch]
) -> None:
    write_project(tmp_path, {"slow.sql": "select 1 as id from (select pg_sleep(60)) as s"})
    watch = _Watch(tmp_path, pg_url)
    watching.append(watch)
    _wait_for_query(pg_url, tmp_path, "pg_sleep")
    started = time.monotonic()
    watch.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    code, err = watch.stop(signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and "stopped at once" in err, err
    assert time.monotonic() - started < 10
    assert watch.cycles == []
    published = "select count(*) from information_schema.tables where table_name = 'slow'"
    assert query(pg_url, tmp_path, published) == [(0,)]


@pytest.mark.postgres
def test_rebuild_watch_through_luigid_forces_the_first_cycle_only(
    tmp_path: Path,
    pg_url: str,
    luigid: str,  # noqa: F811 (the fixture imported above)
    watching: list[_Watch],
) -> None:
    project = write_project(
        tmp_path / "project", {"a.sql": "select 1 as id", "b.sql": "select id from main.a"}
    )
    watch = _Watch(project, pg_url, "a+", "--scheduler-url", luigid, command="rebuild")
    watching.append(watch)
    first = watch.until(lambda c: True, "at all")
    assert _built(first) == {"main.a", "main.b"}, first
    (project / "b.sql").write_text("select id * 2 as id from main.a")
    edited = watch.until(lambda c: c["trigger"] == "change", "after the edit")
    assert _built(edited) == {"main.b"}, edited
    code, err = watch.stop()
    assert code == 0, err
    runs = query(pg_url, project, "select command from dbluigi.runs order by started_at")
    assert [c for (c,) in runs] == ["rebuild", "build"]
    done = _luigid_tasks(luigid, "DONE")
    assert sorted(t["name"] for t in done.values() if "kind" in t["params"]) == [
        "main.a",
        "main.b",
        "main.b",
    ]  # a, b, then b
    assert query(pg_url, project, "select id from main.b") == [(2,)]
