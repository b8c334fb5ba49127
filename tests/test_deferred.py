"""Statements sent ahead of the next one (BEGIN, locks, state writes) and the EXPLAIN that
comes with a build keep the guarantees: timeouts bound a task, caught errors abort."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg2
import pytest

from tests.buildkit import build_json
from tests.helpers import write_project


@pytest.mark.postgres
def test_timeout_bounds_a_model_blocked_on_a_lock(tmp_path: Path, pg_url: str) -> None:
    """A table model with ``-- timeout: 2s`` whose upstream source is locked by someone
    else must fail as a timeout after about 2 s, not wait for the lock to go away."""
    write_project(
        tmp_path,
        {
            "dbluigi.toml": '[project]\ndefault_schema = "main"\n',
            "m.sql": "-- timeout: 2s\nselect * from public.src\n",
        },
    )
    holder = psycopg2.connect(pg_url)
    with holder.cursor() as cursor:
        cursor.execute("create table public.src as select 1 as id")
    holder.commit()
    released = threading.Event()

    def hold() -> None:
        with holder.cursor() as cursor:
            cursor.execute("lock table public.src in access exclusive mode")
            released.wait(15)
        holder.rollback()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    time.sleep(0.5)
    try:
        started = time.perf_counter()
        code, payload = build_json(project=tmp_path, target=pg_url)
        elapsed = time.perf_counter() - started
    finally:
        released.set()
        thread.join()
        holder.close()
    result = {r["model"]: r for r in payload["tasks"]}["main.m"]
    assert (code, result["failure_class"]) == (1, "timeout")
    assert elapsed < 8, f"the timed-out task waited {elapsed:.1f}s for the lock after its timeout"


@pytest.mark.postgres
def test_caught_syntax_error_as_first_statement_is_not_committed(
    pg_url: str, tmp_path: Path
) -> None:
    """Session.transaction() promises to refuse COMMIT after a caught error. With BEGIN
    deferred, a grammar error in the first statement means the server never ran BEGIN
    (PostgreSQL parses the whole string before running any of it), so the connection is
    idle, ``_transaction_aborted()`` says False, and what follows runs in autocommit."""
    from dbluigi.errors import TaskError
    from dbluigi.targets import open_target

    session = open_target(pg_url, project_dir=tmp_path).connect()
    try:
        session.ensure_schema("s")
        with pytest.raises(TaskError, match="aborted"), session.transaction():
            with pytest.raises(psycopg2.Error):
                session.execute("SELEC 1")  # caught, as user code (a python step) may do
            session.execute("CREATE TABLE s.leaked (x BIGINT)")
        assert session.relation_kind("s", "leaked") is None
    finally:
        session.close()
