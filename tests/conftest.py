"""Shared fixtures: real target databases, one fresh database or file per test.

- ``pg_url``: a new PostgreSQL database per test (dropped afterwards), as a URL.
  PostgreSQL is looked for at ``DBLUIGI_TEST_PG`` (default
  ``postgresql://root@127.0.0.1:5432/test``); when it is unreachable the test fails
  if ``CI=true`` and is skipped otherwise.
- ``duckdb_url``: a DuckDB file under the test's ``tmp_path``.
- ``target_url``: both of the above, parametrized with ids ``duckdb`` and ``postgres``.
- ``session``: a connected session on each target in turn, with a schema ``s``.
- ``pg_source_url``: another new PostgreSQL database, for a source.
- ``mariadb_url``: a new MariaDB database per test (dropped afterwards), as a
  ``mysql+pymysql://`` URL, for sources. MariaDB is looked for at
  ``DBLUIGI_TEST_MARIADB`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``);
  unreachable, the test fails if ``CI=true`` and is skipped otherwise.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest
from sqlglot import exp

from dbluigi.targets import Session, mask_url, open_target
from dbluigi.urls import parse_url

# A dbluigi server the developer runs must not serve the suite's commands (they would run
# in it, not in the process a test looks at); tests/test_server.py starts its own.
os.environ["DBLUIGI_NO_SERVER"] = "1"

# A suite started in the background by a script (`pytest &` without job control) inherits
# SIGINT and SIGQUIT ignored, and so would every command a test starts: the tests of
# Ctrl-C would then see none. They are given back as a terminal gives them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)

PG_ADMIN_URL = os.environ.get("DBLUIGI_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
MARIADB_ADMIN_URL = os.environ.get(
    "DBLUIGI_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"
)


def _pg_admin() -> psycopg2.extensions.connection:
    """An autocommit connection to the admin database, or fail/skip the test."""
    try:
        connection = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        reason = (
            f"PostgreSQL is not reachable at {mask_url(PG_ADMIN_URL)}: {' '.join(str(exc).split())}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    connection.autocommit = True
    return connection


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test; dropped (sessions and all) afterwards."""
    yield from _fresh_pg_database()


@pytest.fixture
def new_pg_url() -> Iterator[Callable[[], str]]:
    """Makes more fresh PostgreSQL databases for this test; all dropped afterwards."""
    made: list[Iterator[str]] = []

    def make() -> str:
        database = _fresh_pg_database()
        made.append(database)
        return next(database)

    yield make
    for database in made:
        next(database, None)  # runs its cleanup


@pytest.fixture
def pg_source_url() -> Iterator[str]:
    """Another fresh PostgreSQL database, for a source (``pg_url`` is the target's)."""
    yield from _fresh_pg_database()


def _fresh_pg_database() -> Iterator[str]:
    admin = _pg_admin()
    name = f"dbluigi_t_{secrets.token_hex(6)}"
    database = exp.to_identifier(name, quoted=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(exp.Create(this=database, kind="DATABASE").sql(dialect="postgres"))
        yield replace(parse_url(PG_ADMIN_URL), database=name).render()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            drop = exp.Drop(tables=[exp.Table(this=database)], kind="DATABASE", exists=True)
            cursor.execute(drop.sql(dialect="postgres"))
        admin.close()


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    """A DuckDB file (not yet created) under this test's tmp_path."""
    return f"duckdb:///{tmp_path / 'target.duckdb'}"


@pytest.fixture(
    params=[
        pytest.param("duckdb", id="duckdb"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def target_url(request: pytest.FixtureRequest) -> str:
    """Each target in turn: a DuckDB file, then a fresh PostgreSQL database."""
    fixture = "duckdb_url" if request.param == "duckdb" else "pg_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def session(target_url: str, tmp_path: Path) -> Iterator[Session]:
    """A session on each target in turn, with a schema ``s`` to work in."""
    session = open_target(target_url, project_dir=tmp_path).connect()
    session.ensure_schema("s")
    yield session
    session.close()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database for this test; dropped afterwards."""
    import pymysql

    admin_url = parse_url(MARIADB_ADMIN_URL)
    try:
        admin = pymysql.connect(
            host=admin_url.host,
            port=admin_url.port or 3306,
            user=admin_url.username,
            password=admin_url.password or "",
            connect_timeout=5,
            autocommit=True,
        )
    except pymysql.Error as exc:
        reason = f"MariaDB is not reachable at {mask_url(MARIADB_ADMIN_URL)}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"dbluigi_t_{secrets.token_hex(6)}"
    database = exp.to_identifier(name, quoted=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(exp.Create(this=database, kind="DATABASE").sql(dialect="mysql"))
        yield replace(admin_url, database=name).render()
    finally:
        with admin.cursor() as cursor:
            drop = exp.Drop(tables=[exp.Table(this=database)], kind="DATABASE", exists=True)
            cursor.execute(drop.sql(dialect="mysql"))
        admin.close()


@pytest.fixture(autouse=True)
def retry_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between retried attempts, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr("dbluigi.runner._sleep", waits.append)
    return waits


FORK_CHILD = "DBLUIGI_TEST_FORK_CHILD"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A test marked ``forks`` needs a process with no other thread (``dbluigi.forked``
    never forks one that has threads). Once earlier tests have started threads (DuckDB,
    luigi), it runs alone in a fresh pytest process, and must pass there."""
    if pyfuncitem.get_closest_marker("forks") is None:
        return None
    from dbluigi import forked

    if forked.available():
        return None
    if os.environ.get(FORK_CHILD):
        pytest.fail("forked workers are not available even in a fresh process")
    if not sys.platform.startswith("linux") or forked.cores() < 2:
        pytest.skip("forked workers need Linux and two cores")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", pyfuncitem.nodeid],
        env={**os.environ, FORK_CHILD: "1"},
        cwd=pyfuncitem.config.rootpath,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and f"PASSED {pyfuncitem.nodeid}" in output, output
    return True
