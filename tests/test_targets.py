"""Targets against real databases: DuckDB files and fresh PostgreSQL databases."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dbluigi.errors import TargetError, TaskError
from dbluigi.seeds import read_yaml_seed, sniff_csv
from dbluigi.targets import Column, Session, index_name, mask_url, open_target
from dbluigi.targets.duckdb import DuckDBTarget, qmark
from dbluigi.targets.postgres import PostgresTarget


@dataclass(frozen=True)
class Index:
    columns: tuple[str, ...]
    unique: bool = False


@pytest.fixture
def pg_session(pg_url: str, tmp_path: Path) -> Iterator[Session]:
    session = open_target(pg_url, project_dir=tmp_path).connect()
    session.ensure_schema("s")
    yield session
    session.close()


def is_pg(session: Session) -> bool:
    return session.target.name == "postgresql"


def rows(session: Session, sql: str) -> list[tuple[object, ...]]:
    return list(session.query(sql).rows)


def index_names(session: Session, schema: str, table: str) -> set[str]:
    if is_pg(session):
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s"
    else:
        sql = "SELECT index_name FROM duckdb_indexes() WHERE schema_name = %s AND table_name = %s"
    return {row[0] for row in session.query(sql, (schema, table)).rows}


# -- opening targets ----------------------------------------------------------------------


def test_default_target_is_a_duckdb_file_under_the_project(tmp_path: Path) -> None:
    for url in (None, "duckdb"):
        target = open_target(url, project_dir=tmp_path)
        assert isinstance(target, DuckDBTarget)
        assert target.path == tmp_path / ".dbluigi" / "target.duckdb"
        assert (tmp_path / ".dbluigi").is_dir()
        assert (target.name, target.dialect, target.supports_concurrent_writers) == (
            "duckdb",
            "duckdb",
            False,
        )


def test_duckdb_url_paths(tmp_path: Path) -> None:
    relative = open_target("duckdb:///data/x.duckdb", project_dir=tmp_path)
    absolute = open_target("duckdb:////tmp/elsewhere/x.duckdb", project_dir=tmp_path)
    assert relative.path == tmp_path / "data" / "x.duckdb"  # type: ignore[attr-defined]
    assert absolute.path == Path("/tmp/elsewhere/x.duckdb")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:pw@h/db", "postgres://u:pw@h/db", "postgresql+psycopg2://u:pw@h/db"],
)
def test_postgres_urls(url: str, tmp_path: Path) -> None:
    target = open_target(url, project_dir=tmp_path)
    assert isinstance(target, PostgresTarget)
    assert (target.name, target.dialect, target.supports_concurrent_writers) == (
        "postgresql",
        "postgres",
        True,
    )
    assert "pw" not in target.display_url and "***" in target.display_url
    assert "pw" not in repr(target)


@pytest.mark.parametrize("url", ["mysql://u:secret@h/db", "sqlite:///x.db", "target.duckdb", ""])
def test_unsupported_url_names_the_option_and_the_accepted_forms(url: str, tmp_path: Path) -> None:
    with pytest.raises(TargetError) as caught:
        open_target(url, project_dir=tmp_path)
    text = str(caught.value)
    assert "--target" in text
    assert "duckdb:///" in text and "postgresql://" in text
    assert "secret" not in text


def test_mask_url() -> None:
    assert mask_url("postgresql://ada:s3cret@db:5432/x") == "postgresql://ada:***@db:5432/x"
    assert "s3cret" not in mask_url("postgresql://ada@db/x?password=s3cret")
    # libpq's sslpassword (the client key's passphrase) and other drivers' secrets too
    masked = mask_url("postgresql://ada@db/x?sslmode=require&sslpassword=s3cret&application_name=a")
    assert masked == "postgresql://ada@db/x?sslmode=require&sslpassword=***&application_name=a"
    for name in ("PASSWORD", "passwd", "pwd", "secret", "token", "access_token", "api_key"):
        assert "s3cret" not in mask_url(f"mysql://ada@db/x?charset=utf8&{name}=s3cret"), name
    assert "cret" not in mask_url("postgresql://ada:s3@cret@db/x")  # unencoded @
    assert mask_url("postgresql://ada@db/x") == "postgresql://ada@db/x"
    assert mask_url("not a url") == "not a url"
    assert mask_url("postgresql://ada:pw@db:port/x") == "postgresql://ada:***@db:port/x"


@pytest.mark.parametrize("dialect", ["postgres", "duckdb"])
def test_quote_name_writes_what_sqlglot_writes(dialect: str) -> None:
    from sqlglot import exp

    from dbluigi.targets.base import quote_name, table_expr

    for schema, name in [("a", "b"), ('we"ird', "x y"), ("Ünï", "ça-va"), ("s", 'q""'), ("S", "T")]:
        assert quote_name(schema, name) == table_expr(schema, name).sql(dialect=dialect)
        assert quote_name(name) == exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def test_index_names_stay_within_postgres_limits() -> None:
    assert index_name("t", ("a", "b"), unique=False, limit=63) == "t__a_b_idx"
    assert index_name("t", ("a",), unique=True, limit=63) == "t__a_uidx"
    long_a = index_name("x" * 60, ("a",), unique=False, limit=63)
    long_b = index_name("x" * 60, ("b",), unique=False, limit=63)
    assert len(long_a.encode()) <= 63 and long_a.endswith("_idx")
    assert long_a != long_b


# -- connection errors ----------------------------------------------------------------------


def test_unreachable_postgres_is_a_target_error_without_the_password(tmp_path: Path) -> None:
    target = open_target("postgresql://ada:hunter2@127.0.0.1:1/nowhere", project_dir=tmp_path)
    with pytest.raises(TargetError) as caught:
        target.connect()
    text = str(caught.value)
    assert "postgresql://ada:***@127.0.0.1:1/nowhere" in text
    assert "hunter2" not in text
    assert "hint:" in text


@contextmanager
def _held(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the DuckDB file ``path`` for ``seconds``, once it holds it."""
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
        f"print('ready', flush=True); time.sleep({seconds}); c.close()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_duckdb_file_held_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dbluigi.targets.duckdb.LOCK_WAIT_S", 0.5)
    path = tmp_path / "held.duckdb"
    with _held(path, 30) as holder, pytest.raises(TargetError) as caught:
        open_target(f"duckdb:///{path}", project_dir=tmp_path).connect()
    text = str(caught.value)
    assert "held by another process" in text
    assert f"PID {holder.pid}" in text
    assert "wait for the other dbluigi/duckdb process or point --target elsewhere" in text


def test_duckdb_file_held_for_a_moment_is_waited_for(tmp_path: Path) -> None:
    """A command that holds the file briefly (`docs`, `show`, `plan` by hand) does not fail
    a build starting meanwhile (DuckDB lets one process open a file): it waits for the
    file, up to LOCK_WAIT_S; it failed at once."""
    path = tmp_path / "busy.duckdb"
    with _held(path, 1) as holder:
        session = open_target(f"duckdb:///{path}", project_dir=tmp_path).connect()
        assert holder.wait(timeout=30) == 0  # it let go in its own time, not killed
        assert list(session.query("select 42").rows) == [(42,)]
        session.close()


def test_duckdb_file_in_a_missing_folder(tmp_path: Path) -> None:
    target = open_target("duckdb:///no/such/folder/x.duckdb", project_dir=tmp_path)
    with pytest.raises(TargetError, match="cannot open the DuckDB target"):
        target.connect()


# -- statements -------------------------------------------------------------------------------


def test_execute_query_and_params(session: Session) -> None:
    session.execute("CREATE TABLE s.t (id BIGINT, name TEXT)")
    assert session.execute("INSERT INTO s.t VALUES (%s, %s), (%s, %s)", (1, "a%b", 2, None)) == 2
    session.executemany("INSERT INTO s.t VALUES (%s, %s)", [(3, "c"), (4, "d")])
    result = session.query("SELECT id, name FROM s.t WHERE id >= %s ORDER BY id", (1,))
    assert result.columns == ("id", "name")
    assert result.rows == ((1, "a%b"), (2, None), (3, "c"), (4, "d"))
    # %% is a literal % once parameters are given, as in psycopg2; untouched without.
    like = "SELECT id FROM s.t WHERE name LIKE %s || '%%' ORDER BY id"
    assert session.query(like, ("a",)).rows == ((1,),)
    assert session.query("SELECT count(*) FROM s.t WHERE name LIKE 'a%'").rows == ((1,),)
    assert session.execute("UPDATE s.t SET name = 'z' WHERE id > 2") == 2
    assert session.query("SELECT id FROM s.t ORDER BY id", limit=2).rows == ((1,), (2,))
    assert session.query("CREATE TABLE s.u (x BIGINT)").rows == ()
    assert session.row_count("s", "t") == 4


def test_upsert_counts_only_rows_inserted_or_changed(session: Session) -> None:
    """A row read again as it was is no change (``json`` included, which has no equality
    operator on PostgreSQL); a key-only table inserts what is new."""
    session.execute("CREATE TABLE s.t (id BIGINT, v TEXT, doc JSON)")
    session.execute("""INSERT INTO s.t VALUES (1, 'a', '{"k": 1}'), (2, NULL, NULL)""")
    session.execute("CREATE TABLE s.n (id BIGINT, v TEXT, doc JSON)")
    session.execute(
        """INSERT INTO s.n VALUES (1, 'a', '{"k": 1}'), (2, 'b', NULL), (3, 'c', '[]')"""
    )
    with session.transaction():
        assert session.upsert("s", "t", "n", ["id"]) == 2  # 2 changed, 3 new
    with session.transaction():
        assert session.upsert("s", "t", "n", ["id"]) == 0  # the same rows again
    rows = session.query("SELECT id, v FROM s.t ORDER BY id").rows
    assert rows == ((1, "a"), (2, "b"), (3, "c"))
    session.execute("CREATE TABLE s.keys AS SELECT id FROM s.t")
    session.execute("CREATE TABLE s.more AS SELECT id FROM s.t UNION ALL SELECT 9")
    with session.transaction():
        assert session.upsert("s", "keys", "more", ["id"]) == 1


def test_query_limit_fetches_only_the_first_rows(session: Session) -> None:
    sql = "-- a check\nSELECT i FROM range(1000000) AS r(i) ORDER BY i;"
    if is_pg(session):
        sql = "-- a check\nSELECT i FROM generate_series(0, 999999) AS i ORDER BY i;"
    assert session.query(sql, limit=3).rows == ((0,), (1,), (2,))
    with session.transaction():
        assert session.query(sql, limit=2).rows == ((0,), (1,))
        assert session.query(sql, limit=1).rows == ((0,),)  # the cursor was closed


def test_qmark_translation() -> None:
    assert qmark("SELECT %s, '%%', %s") == "SELECT ?, '%', ?"


def test_duckdb_returns_timestamptz_values(duckdb_url: str, tmp_path: Path) -> None:
    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    (value,) = session.query("SELECT TIMESTAMPTZ '2024-01-01 10:00:00+00' AS at").rows[0]
    assert value.timestamp() == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC).timestamp()
    session.close()


# -- transactions -------------------------------------------------------------------------


def test_transaction_commits_and_rolls_back(session: Session) -> None:
    with session.transaction():
        session.execute("CREATE TABLE s.kept (x BIGINT)")
        session.execute("INSERT INTO s.kept VALUES (1)")
    with pytest.raises(RuntimeError, match="boom"), session.transaction():
        session.execute("INSERT INTO s.kept VALUES (2)")
        session.execute("CREATE TABLE s.gone (x BIGINT)")
        raise RuntimeError("boom")
    assert rows(session, "SELECT x FROM s.kept") == [(1,)]
    assert session.relation_kind("s", "gone") is None
    session.execute("INSERT INTO s.kept VALUES (3)")  # autocommit again
    assert session.row_count("s", "kept") == 2


def test_transaction_aborted_by_a_caught_error_is_not_committed(session: Session) -> None:
    session.execute("CREATE TABLE s.t (x BIGINT)")
    with pytest.raises(TaskError, match="aborted"), session.transaction():
        session.execute("INSERT INTO s.t VALUES (1)")
        with pytest.raises(Exception):  # noqa: B017 - either driver's error
            session.execute("SELECT * FROM s.missing")
    assert session.row_count("s", "t") == 0


def test_transactions_do_not_nest(session: Session) -> None:
    with session.transaction():
        with pytest.raises(RuntimeError, match="do not nest"):
            session.transaction().__enter__()
        session.execute("CREATE TABLE s.t (x BIGINT)")
    assert session.relation_kind("s", "t") == "table"


def test_deferred_statements_travel_with_the_commit(session: Session) -> None:
    session.execute("CREATE TABLE s.t (x BIGINT)")
    with session.transaction():
        session.defer([("INSERT INTO s.t VALUES (%s)", (1,)), ("INSERT INTO s.t VALUES (2)", None)])
    assert rows(session, "SELECT x FROM s.t ORDER BY x") == [(1,), (2,)]
    with pytest.raises(RuntimeError, match="boom"), session.transaction():
        session.defer([("INSERT INTO s.t VALUES (3)", None)])
        raise RuntimeError("boom")
    assert session.row_count("s", "t") == 2
    with session.transaction():  # deferred, then read by the next statement of the transaction
        session.defer([("INSERT INTO s.t VALUES (4)", None)])
        assert rows(session, "SELECT max(x) FROM s.t") == [(4,)]
    assert session.row_count("s", "t") == 3


def test_a_deferred_statement_that_fails_fails_the_commit_and_rolls_back(session: Session) -> None:
    with pytest.raises(Exception, match="missing"), session.transaction():
        session.execute("CREATE TABLE s.gone (x BIGINT)")
        session.defer([("INSERT INTO s.missing VALUES (1)", None)])
    assert session.relation_kind("s", "gone") is None
    with session.transaction():  # the session is usable: nothing was left open or aborted
        session.execute("CREATE TABLE s.kept (x BIGINT)")
    assert session.relation_kind("s", "kept") == "table"


class _CountingCursor:
    """A psycopg2 cursor factory counting the statements sent to the server."""

    sent: list[str] = []

    @classmethod
    def factory(cls) -> type:
        import psycopg2.extensions

        class Cursor(psycopg2.extensions.cursor):
            def execute(self, query, vars=None):  # type: ignore[no-untyped-def]
                cls.sent.append(query if isinstance(query, str) else query.decode())
                return super().execute(query, vars)

        return Cursor


def test_pg_begin_lock_and_state_writes_cost_no_round_trip_of_their_own(
    pg_session: Session,
) -> None:
    pg_session.execute("CREATE TABLE s.t (x BIGINT)")
    _CountingCursor.sent = []
    pg_session._connection.cursor_factory = _CountingCursor.factory()  # type: ignore[attr-defined]
    with pg_session.transaction():  # BEGIN and the lock travel with the read
        pg_session.lock_in_transaction("dbluigi.model:s.t[]", deferred=True)
        assert rows(pg_session, "SELECT count(*) FROM s.t") == [(0,)]
        pg_session.defer([("INSERT INTO s.t VALUES (1)", None)])
    assert len(_CountingCursor.sent) == 2, _CountingCursor.sent
    assert _CountingCursor.sent[0].startswith("BEGIN;\nSELECT pg_advisory_xact_lock(")
    assert _CountingCursor.sent[1].endswith("INSERT INTO s.t VALUES (1);\nCOMMIT")
    _CountingCursor.sent = []
    with pg_session.transaction():  # nothing ran: nothing is sent
        pass
    assert _CountingCursor.sent == []
    assert pg_session.row_count("s", "t") == 1


def test_pg_errors_are_located_when_begin_travels_with_the_statement(pg_session: Session) -> None:
    sql = "SELECT 1 AS a,\n  2 AS b,\n  no_such_column AS c"
    with pytest.raises(Exception) as caught, pg_session.transaction():
        pg_session.create_table_as("s", "t", sql)
    assert pg_session.error_line(caught.value, sql) == 3


def test_pg_a_deferred_lock_is_held_before_the_next_statement_reads(
    pg_url: str, tmp_path: Path
) -> None:
    import threading

    target = open_target(pg_url, project_dir=tmp_path)
    first, second = target.connect(), target.connect()
    first.ensure_schema("s")
    first.execute("CREATE TABLE s.t (x BIGINT)")
    seen: list[object] = []
    try:
        with first.transaction():
            first.lock_in_transaction("dbluigi.model:s.t[]")

            def reader() -> None:
                with second.transaction():
                    second.lock_in_transaction("dbluigi.model:s.t[]", deferred=True)
                    seen.extend(rows(second, "SELECT count(*) FROM s.t"))

            thread = threading.Thread(target=reader)
            thread.start()
            thread.join(0.5)
            assert thread.is_alive(), "the reader should wait for the lock"
            first.execute("INSERT INTO s.t VALUES (1)")
        thread.join(10)
        assert seen == [(1,)]  # its snapshot was taken after the lock was granted
    finally:
        first.close()
        second.close()


# -- catalog ----------------------------------------------------------------------------------


def test_relation_kind_and_relations(session: Session) -> None:
    session.ensure_schema("s")  # idempotent
    session.ensure_schema("other")
    session.create_table_as("s", "t", "SELECT 1 AS x")
    session.execute("CREATE VIEW s.v AS SELECT x FROM s.t")
    session.execute("CREATE TABLE other.t (x BIGINT)")
    assert session.relation_kind("s", "t") == "table"
    assert session.relation_kind("s", "v") == "view"
    assert session.relation_kind("s", "nope") is None
    assert session.relations("s") == {("s", "t"), ("s", "v")}
    assert {("s", "t"), ("s", "v"), ("other", "t")} <= session.relations()
    session.drop_relation("s", "v")
    session.drop_relation("s", "v")  # already gone: fine
    assert session.relations("s") == {("s", "t")}


def test_create_table_as_returns_rows_and_keeps_names_exact(session: Session) -> None:
    count = session.create_table_as("s", "Mixed Case", "SELECT 1 AS a UNION ALL SELECT 2;\n")
    assert count == 2
    assert session.relation_kind("s", "Mixed Case") == "table"
    assert session.row_count("s", "Mixed Case") == 2


@pytest.fixture
def known(duckdb_url: str, tmp_path: Path) -> Iterator[Session]:
    """A DuckDB session that has read the catalog, as a run's has: it answers from what it
    knows of it (``targets.duckdb``) rather than asking."""
    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    session.ensure_schema("s")
    session.catalog()
    yield session
    session.close()


def actual_kinds(session: Session) -> dict[str, str]:
    """What DuckDB's own catalog says, asked every time."""
    sql = (
        "SELECT table_name, 'table' FROM duckdb_tables() WHERE schema_name = 's' "
        "UNION ALL SELECT view_name, 'view' FROM duckdb_views() WHERE schema_name = 's'"
    )
    return {name: kind for name, kind in session.query(sql).rows}


def assert_kinds_true(session: Session, *names: str) -> None:
    actual = actual_kinds(session)
    assert {n: session.relation_kind("s", n) for n in names} == {n: actual.get(n) for n in names}


def test_duckdb_knows_its_own_changes_and_forgets_those_rolled_back(known: Session) -> None:
    known.create_table_as("s", "a", "SELECT 1 AS id")
    known.replace_view("s", "v", "SELECT 1 AS x")
    assert_kinds_true(known, "a", "v", "b")
    with pytest.raises(RuntimeError), known.transaction():
        known.create_table_as("s", "b", "SELECT 1 AS id")
        known.drop_relation("s", "a")
        known.rename("s", "v", "w")
        assert_kinds_true(known, "a", "b", "v", "w")
        raise RuntimeError("roll back")
    assert_kinds_true(known, "a", "b", "v", "w")
    with pytest.raises(duckdb.Error), known.transaction():  # a failed statement rolls back too
        known.create_table_as("s", "b", "SELECT 1 AS id")
        known.execute("SELECT * FROM s.no_such_table")
    assert_kinds_true(known, "a", "b")
    known.rename("s", "a", "c")
    known.swap("s", "c", "v", [Index(("id",))])  # a table replaces the view
    assert_kinds_true(known, "a", "c", "v", "w")
    assert index_names(known, "s", "v") == {index_name("v", ("id",), unique=False, limit=None)}
    known.create_table_as("s", "v__new", "SELECT 2 AS id")
    known.swap("s", "v__new", "v", [Index(("id",))])  # the indexed table is replaced
    assert rows(known, "SELECT id FROM s.v") == [(2,)]
    assert index_names(known, "s", "v") == {index_name("v", ("id",), unique=False, limit=None)}


@pytest.mark.parametrize(
    "change",
    [
        "CREATE TABLE s.x AS SELECT 1 AS id",
        "CREATE VIEW s.x AS SELECT 1 AS id",
        "DROP TABLE s.t",
        "ALTER TABLE s.t RENAME TO x",
        "SELECT 1; CREATE TABLE s.x AS SELECT 1 AS id",
        "CREATE SCHEMA IF NOT EXISTS s; DROP VIEW s.v",
    ],
)
def test_duckdb_notices_what_other_sql_changes(known: Session, change: str) -> None:
    known.create_table_as("s", "t", "SELECT 1 AS id")
    known.replace_view("s", "v", "SELECT 1 AS id")
    known.execute(change)  # the user's SQL: a patch, a sql model, a Python step
    assert_kinds_true(known, "t", "v", "x")
    known.catalog()  # the next run's read knows it again
    assert_kinds_true(known, "t", "v", "x")


def test_duckdb_notices_a_query_that_is_more_than_a_query(known: Session) -> None:
    known.create_table_as("s", "t", "SELECT 1 AS id; CREATE VIEW s.x AS SELECT 2 AS id")
    assert_kinds_true(known, "t", "x")


def test_duckdb_swap_after_other_sql_indexed_the_new_table(known: Session) -> None:
    known.create_table_as("s", "t", "SELECT 1 AS id")
    known.create_table_as("s", "t__new", "SELECT 2 AS id")
    known.execute("CREATE INDEX by_hand ON s.t__new (id)")  # a patch indexing the new table
    known.swap("s", "t__new", "t", [])
    assert rows(known, "SELECT id FROM s.t") == [(2,)]
    assert index_names(known, "s", "t") == {"by_hand"}


def test_duckdb_sessions_of_one_file_see_each_others_changes(
    duckdb_url: str, tmp_path: Path
) -> None:
    target = open_target(duckdb_url, project_dir=tmp_path)
    first, second = target.connect(), target.connect()
    try:
        first.ensure_schema("s")
        first.catalog()
        second.catalog()
        second.create_table_as("s", "t", "SELECT 1 AS id")
        assert first.relation_kind("s", "t") == "table"
        second.drop_relation("s", "t")
        assert first.relation_kind("s", "t") is None
    finally:
        first.close()
        second.close()


# -- publishing -------------------------------------------------------------------------------


def test_swap_keeps_dependent_views_reading_the_new_table(session: Session) -> None:
    session.ensure_schema("reporting")
    session.create_table_as("s", "t", "SELECT 1 AS id, 'old' AS label")
    session.execute("CREATE VIEW reporting.v AS SELECT id, label FROM s.t")
    session.execute("CREATE VIEW reporting.vv AS SELECT label || '!' AS shout FROM reporting.v")
    session.create_table_as("s", "t__dbluigi_new", "SELECT 2 AS id, 'new' AS label, 3.5 AS extra")
    with session.transaction():
        session.swap("s", "t__dbluigi_new", "t", [])
    assert rows(session, "SELECT id, label FROM reporting.v") == [(2, "new")]
    assert rows(session, "SELECT shout FROM reporting.vv") == [("new!",)]
    assert session.relation_kind("s", "t__dbluigi_new") is None
    assert session.relation_kind("reporting", "vv") == "view"
    if is_pg(session):  # the views depend on the new table itself, not on a leftover
        depends = session.query(
            "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "WHERE r.ev_class = 'reporting.v'::regclass AND d.refobjid = 's.t'::regclass"
        )
        assert depends.rows[0][0] > 0


def test_swap_on_first_build(session: Session) -> None:
    session.create_table_as("s", "t__dbluigi_new", "SELECT 1 AS id")
    session.swap("s", "t__dbluigi_new", "t", [Index(("id",))])  # opens its own transaction
    assert rows(session, "SELECT id FROM s.t") == [(1,)]
    assert index_names(session, "s", "t") == {"t__id_idx"}


def test_swap_replaces_a_view_of_the_same_name(session: Session) -> None:
    session.execute("CREATE VIEW s.t AS SELECT 1 AS id")
    session.execute("CREATE VIEW s.reader AS SELECT id FROM s.t")
    session.create_table_as("s", "t__dbluigi_new", "SELECT 2 AS id")
    with session.transaction():
        session.swap("s", "t__dbluigi_new", "t", [])
    assert session.relation_kind("s", "t") == "table"
    assert rows(session, "SELECT id FROM s.reader") == [(2,)]


def test_swap_without_a_new_table_fails(session: Session) -> None:
    with pytest.raises(TaskError, match="does not exist"):
        session.swap("s", "t__dbluigi_new", "t", [])


def test_indexes_end_up_on_the_published_table_build_after_build(session: Session) -> None:
    indexes = [Index(("id",)), Index(("id", "label"), unique=True)]
    for build in range(3):
        session.create_table_as("s", "t__dbluigi_new", f"SELECT {build} AS id, 'x' AS label")
        with session.transaction():
            session.prepare_indexes("s", "t__dbluigi_new", indexes)
            session.swap("s", "t__dbluigi_new", "t", indexes)
        assert index_names(session, "s", "t") == {"t__id_idx", "t__id_label_uidx"}
        assert rows(session, "SELECT id FROM s.t") == [(build,)]
    if is_pg(session):  # prepare_indexes builds them before the checks run
        session.create_table_as("s", "t__dbluigi_new", "SELECT 9 AS id, 'x' AS label")
        session.prepare_indexes("s", "t__dbluigi_new", indexes)
        assert index_names(session, "s", "t__dbluigi_new") == {
            "t__dbluigi_new__id_idx",
            "t__dbluigi_new__id_label_uidx",
        }


def test_replace_view_changing_columns_keeps_dependents(session: Session) -> None:
    session.replace_view("s", "v", "SELECT 1 AS a, 'x' AS b")
    session.execute("CREATE VIEW s.reader AS SELECT a FROM s.v")
    with session.transaction():
        session.replace_view("s", "v", "SELECT 'one' AS a, 2 AS c -- no more b")
    assert session.query("SELECT * FROM s.v").columns == ("a", "c")
    assert rows(session, "SELECT a FROM s.reader") == [("one",)]


def test_replace_view_replaces_a_table(session: Session) -> None:
    session.create_table_as("s", "v", "SELECT 1 AS a")
    session.replace_view("s", "v", "SELECT 2 AS a")
    assert session.relation_kind("s", "v") == "view"
    assert rows(session, "SELECT a FROM s.v") == [(2,)]


def test_rename_to_failed_over_an_existing_one(session: Session) -> None:
    indexes = [Index(("id",))]
    for attempt in (1, 2):
        session.create_table_as("s", "t__dbluigi_new", f"SELECT {attempt} AS id")
        with session.transaction():
            session.prepare_indexes("s", "t__dbluigi_new", indexes)
            session.rename("s", "t__dbluigi_new", "t__dbluigi_failed")
        assert rows(session, "SELECT id FROM s.t__dbluigi_failed") == [(attempt,)]
        assert session.relation_kind("s", "t__dbluigi_new") is None
    if is_pg(session):  # the kept table's index moved out of the way of the next build
        assert index_names(session, "s", "t__dbluigi_failed") == {"t__dbluigi_failed__id_idx"}
    with pytest.raises(TaskError, match="does not exist"):
        session.rename("s", "nope", "other")


def test_rename_a_view(session: Session) -> None:
    session.replace_view("s", "v", "SELECT 1 AS a")
    session.rename("s", "v", "w")
    assert session.relations("s") == {("s", "w")}
    assert session.relation_kind("s", "w") == "view"


def test_rename_moves_indexes_along(session: Session) -> None:
    session.create_table_as("s", "a", "SELECT 1 AS id")
    session.create_table_as("s", "a__dbluigi_new", "SELECT 2 AS id")
    session.swap("s", "a__dbluigi_new", "a", [Index(("id",), unique=True)])
    session.rename("s", "a", "b")  # DuckDB cannot rename a table with indexes by itself
    assert index_names(session, "s", "b") == {"b__id_uidx"}
    assert rows(session, "SELECT id FROM s.b") == [(2,)]


# -- PostgreSQL view preservation in detail ----------------------------------------------------


@pytest.mark.postgres
def test_pg_swap_fails_cleanly_when_a_view_needs_a_dropped_column(pg_session: Session) -> None:
    session = pg_session
    session.create_table_as("s", "t", "SELECT 1 AS id, 'x' AS gone")
    session.execute("CREATE VIEW s.reader AS SELECT gone FROM s.t")
    session.create_table_as("s", "t__dbluigi_new", "SELECT 2 AS id")
    with pytest.raises(TaskError) as caught, session.transaction():
        session.swap("s", "t__dbluigi_new", "t", [])
    assert caught.value.failure_class == "runtime"
    assert "s.reader" in str(caught.value) and "gone" in str(caught.value)
    assert rows(session, "SELECT id, gone FROM s.t") == [(1, "x")]  # published as it was
    assert rows(session, "SELECT gone FROM s.reader") == [("x",)]


@pytest.mark.postgres
def test_pg_swap_preserves_materialized_views_and_their_indexes(pg_session: Session) -> None:
    session = pg_session
    session.create_table_as("s", "t", "SELECT 1 AS id")
    session.execute("CREATE VIEW s.v AS SELECT id FROM s.t")
    session.execute("CREATE MATERIALIZED VIEW s.m AS SELECT id * 10 AS tens FROM s.v")
    session.execute("CREATE INDEX m_tens ON s.m (tens)")
    session.create_table_as("s", "t__dbluigi_new", "SELECT 2 AS id")
    session.swap("s", "t__dbluigi_new", "t", [])
    assert rows(session, "SELECT tens FROM s.m") == [(20,)]
    assert index_names(session, "s", "m") == {"m_tens"}


@pytest.mark.postgres
def test_pg_swap_refuses_to_drop_other_dependents(pg_session: Session) -> None:
    session = pg_session
    session.execute("CREATE TABLE s.t (id BIGINT PRIMARY KEY)")
    session.execute("CREATE TABLE s.child (id BIGINT REFERENCES s.t (id))")
    session.create_table_as("s", "t__dbluigi_new", "SELECT 2 AS id")
    with pytest.raises(Exception) as caught:
        session.swap("s", "t__dbluigi_new", "t", [])
    assert session.classify(caught.value) == "runtime"
    assert session.relation_kind("s", "t__dbluigi_new") == "table"  # rolled back
    assert session.relation_kind("s", "child") == "table"


# -- bulk loads -------------------------------------------------------------------------------

SEED_COLUMNS = (
    Column("id", "bigint"),
    Column("amount", "numeric"),
    Column("ratio", "double"),
    Column("day", "date"),
    Column("at", "timestamp"),
    Column("at_tz", "timestamptz"),
    Column("flag", "boolean"),
    Column("name", "text"),
    Column("doc", "json"),
)

EXPECTED_TYPES = {
    "postgresql": [
        "bigint",
        "numeric",
        "double precision",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "boolean",
        "text",
        "jsonb",
    ],
    "duckdb": [
        "BIGINT",
        "DECIMAL(38,10)",
        "DOUBLE",
        "DATE",
        "TIMESTAMP",
        "TIMESTAMP WITH TIME ZONE",
        "BOOLEAN",
        "VARCHAR",
        "JSON",
    ],
}

# Portable rendering of the loaded values: timestamptz as epoch seconds, JSON as text.
CONTENT_SQL = (
    'SELECT id, amount, ratio, day, "at", CAST(extract(epoch FROM at_tz) AS DOUBLE PRECISION), '
    "flag, name, CAST(doc AS TEXT) FROM s.seed ORDER BY id"
)


def column_types(session: Session, table: str) -> list[str]:
    sql = (
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position"
    )
    return [row[0] for row in session.query(sql, ("s", table)).rows]


def test_load_csv_types_and_nulls(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(
        "id,amount,ratio,day,at,at_tz,flag,name,doc\n"
        '1,12.50,0.25,2024-02-29,2024-01-02 03:04:05,2024-01-02T03:04:05Z,true,"a, ""b""",'
        '"{""k"": 1}"\n'
        '2,,,,,,,"",\n'
        "3,-7,1e3,1999-12-31,2024-01-02T03:04,2024-01-02 05:04:05+02:00,FALSE,plain,[]\n",
        encoding="utf-8",
    )
    assert session.load_csv("s", "seed", path, SEED_COLUMNS) == 3
    assert column_types(session, "seed") == EXPECTED_TYPES[session.target.name]
    epoch = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    assert rows(session, CONTENT_SQL) == [
        (1, Decimal("12.5"), 0.25, dt.date(2024, 2, 29), dt.datetime(2024, 1, 2, 3, 4, 5),
         epoch, True, 'a, "b"', '{"k": 1}'),
        (2, None, None, None, None, None, None, None, None),
        (3, Decimal("-7"), 1000.0, dt.date(1999, 12, 31), dt.datetime(2024, 1, 2, 3, 4),
         epoch, False, "plain", "[]"),
    ]  # fmt: skip


def test_every_format_the_sniffer_accepts_loads(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "sniffed.csv"
    path.write_text(
        "n,d,x,day,ts,tz,flag\n"
        "+5,.5,1e3,2024-02-29,2024-01-02 03:04,2024-01-02T03:04:05Z,TRUE\n"
        "-0,5.,2.5E-3,2024-01-01,2024-01-02T03:04:05.123456,2024-01-02 03:04+05:30,false\n"
        "9223372036854775807,-1.25,-1,,2024-01-02 03:04:05,2024-01-02 03:04:05-08,False\n",
        encoding="utf-8",
    )
    table = sniff_csv(path)
    assert [c.type for c in table.columns] == [
        "bigint", "numeric", "double", "date", "timestamp", "timestamptz", "boolean",
    ]  # fmt: skip
    assert session.load_csv("s", "sniffed", path, table.columns) == table.rows == 3
    loaded = rows(session, "SELECT n, d, flag, CAST(extract(epoch FROM tz) AS BIGINT) "
                           "FROM s.sniffed ORDER BY n")  # fmt: skip

    def epoch(text: str) -> int:
        return int(dt.datetime.fromisoformat(text).timestamp())

    assert loaded == [
        (0, Decimal("5"), False, epoch("2024-01-02T03:04:00+05:30")),
        (5, Decimal("0.5"), True, epoch("2024-01-02T03:04:05+00:00")),
        (9223372036854775807, Decimal("-1.25"), False, epoch("2024-01-02T03:04:05-08:00")),
    ]


def test_yaml_seed_rows_load(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "lookup.yml"
    path.write_text(
        "- {code: 1, label: City, since: 2020-01-01, meta: {a: 1}, at: 2020-01-01 10:00:00Z}\n"
        "- {code: 2, label: 'NO', ratio: 0.5}\n",
        encoding="utf-8",
    )
    table, data = read_yaml_seed(path)
    assert session.load_rows("s", "lookup", table.columns, data) == 2
    loaded = rows(session, "SELECT code, label, since, CAST(meta AS TEXT), ratio "
                           "FROM s.lookup ORDER BY code")  # fmt: skip
    assert [row[:3] for row in loaded] == [(1, "City", dt.date(2020, 1, 1)), (2, "NO", None)]
    assert loaded[0][3].replace(" ", "") == '{"a":1}' and loaded[1][4] == 0.5


def test_load_csv_with_windows_line_endings(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b'\xef\xbb\xbfid,name\r\n1,"two\r\nlines"\r\n2,\r\n')
    columns = [Column("id", "bigint"), Column("name", "text")]
    assert session.load_csv("s", "crlf", path, columns) == 2
    assert rows(session, "SELECT id, name FROM s.crlf ORDER BY id") == [
        (1, "two\r\nlines"),
        (2, None),
    ]


def test_load_csv_bad_value_is_a_database_error(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id\n1\nnot a number\n", encoding="utf-8")
    with pytest.raises(Exception) as caught:
        session.load_csv("s", "bad", path, [Column("id", "bigint")])
    assert session.classify(caught.value) == "runtime"
    assert session.relation_kind("s", "bad") is None  # create + load is atomic


def test_load_rows(session: Session) -> None:
    data = [
        (1, Decimal("12.50"), 0.25, dt.date(2024, 2, 29), dt.datetime(2024, 1, 2, 3, 4, 5),
         dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), True, 'a, "b"\nline', {"k": 1}),
        (2, None, None, None, None, None, None, "", None),
        (3, Decimal("-7"), float("inf"), dt.date(1999, 12, 31), dt.datetime(2024, 1, 2, 3, 4),
         dt.datetime(2024, 1, 2, 5, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))), False,
         None, [1, "two"]),
    ]  # fmt: skip
    assert session.load_rows("s", "seed", SEED_COLUMNS, iter(data)) == 3
    assert column_types(session, "seed") == EXPECTED_TYPES[session.target.name]
    epoch = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    loaded = rows(session, CONTENT_SQL)
    assert loaded[0][:8] == (1, Decimal("12.5"), 0.25, dt.date(2024, 2, 29),
                             dt.datetime(2024, 1, 2, 3, 4, 5), epoch, True, 'a, "b"\nline')  # fmt: skip
    assert loaded[1] == (2, None, None, None, None, None, None, "", None)  # "" is not NULL
    assert loaded[2][2] == float("inf") and loaded[2][7] is None
    docs = [row[0] for row in session.query(
        "SELECT CAST(doc AS TEXT) FROM s.seed WHERE doc IS NOT NULL ORDER BY id").rows]  # fmt: skip
    assert [d.replace(" ", "") for d in docs] == ['{"k":1}', '[1,"two"]']


def test_load_rows_rejects_a_row_of_the_wrong_width(session: Session) -> None:
    columns = [Column("id", "bigint"), Column("name", "text")]
    with pytest.raises(ValueError, match="row 2 has 1 values, the table has 2 columns"):
        session.load_rows("s", "ragged", columns, [(1, "a"), (2,)])
    assert session.relation_kind("s", "ragged") is None


def test_load_rows_passes_on_the_error_of_its_row_source(session: Session) -> None:
    def source() -> Iterator[tuple[int]]:
        yield (1,)
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError, match="source went away"):
        session.load_rows("s", "broken", [Column("id", "bigint")], source())
    assert session.relation_kind("s", "broken") is None


def test_load_rows_many_rows_streams(session: Session) -> None:
    data = ((i, f"name {i}") for i in range(2500))
    columns = [Column("id", "bigint"), Column("name", "text")]
    assert session.load_rows("s", "many", columns, data) == 2500
    assert session.row_count("s", "many") == 2500
    assert rows(session, "SELECT max(id) FROM s.many") == [(2499,)]


# -- errors -----------------------------------------------------------------------------------


def failure(session: Session, sql: str) -> BaseException:
    with pytest.raises(Exception) as caught:
        session.execute(sql)
    return caught.value


def test_classify(session: Session) -> None:
    session.create_table_as("s", "t", "SELECT 1 AS x")
    assert session.classify(failure(session, "SELEC 1")) == "syntax"
    assert session.classify(failure(session, "SELECT * FROM s.missing")) == "syntax"
    assert session.classify(failure(session, "SELECT nope FROM s.t")) == "syntax"
    division = "SELECT 1 // 0" if session.target.name == "duckdb" else "SELECT 1 / 0"
    assert session.classify(failure(session, division)) == "runtime"
    task_error = TaskError("x", failure_class="check")
    assert session.classify(task_error) == "check"


@pytest.mark.postgres
def test_classify_statement_timeout(pg_session: Session) -> None:
    pg_session.execute("SET statement_timeout = 50")
    assert pg_session.classify(failure(pg_session, "SELECT pg_sleep(2)")) == "timeout"


def test_error_line(session: Session) -> None:
    session.create_table_as("s", "t", "SELECT 1 AS x")
    sql = "SELECT\n  x,\n  nope\nFROM s.t"
    with pytest.raises(Exception) as caught:
        session.create_table_as("s", "u", sql)
    assert session.error_line(caught.value, sql) == 3
    plain = "\n\nSELEC 2"
    assert session.error_line(failure(session, plain), plain) == 3
    division = "SELECT 1 // 0" if session.target.name == "duckdb" else "SELECT 1 / 0"
    assert session.error_line(failure(session, division), division) is None


def test_error_line_of_a_limited_query(session: Session) -> None:
    session.create_table_as("s", "t", "SELECT 1 AS x")
    # (DuckDB only locates binder errors in the select list, not in WHERE.)
    sql = "-- check\nSELECT x,\n  nope\nFROM s.t"
    with pytest.raises(Exception) as caught:
        session.query(sql, limit=5)
    assert session.classify(caught.value) == "syntax"
    assert session.error_line(caught.value, sql) == 3


def test_unique_keys_are_the_unique_indexes_dbluigi_made(session: Session) -> None:
    session.create_table_as("s", "t", "SELECT 1 AS a, 2 AS b, 'x' AS c")
    session.ensure_indexes("s", "t", [Index(("a", "b"), unique=True), Index(("c",))])
    session.execute("CREATE UNIQUE INDEX handmade ON s.t (c)")
    session.execute("CREATE UNIQUE INDEX t__c_uidx ON s.t (lower(c))")  # an expression
    assert session.unique_keys("s", "t") == [("a", "b")]
    assert session.unique_keys("s", "missing") == []


@pytest.mark.postgres
def test_try_lock_is_exclusive_across_sessions(pg_url: str, tmp_path: Path) -> None:
    target = open_target(pg_url, project_dir=tmp_path)
    first, second = target.connect(), target.connect()
    try:
        assert first.try_lock("dbluigi run")
        assert not second.try_lock("dbluigi run")
        assert second.try_lock("another key")
        first.unlock("dbluigi run")
        assert second.try_lock("dbluigi run")
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_locks_are_keyed_by_a_64_bit_hash(pg_url: str, tmp_path: Path) -> None:
    """Names whose 32-bit hashtext collides lock independently, and every lock, session
    or transaction scoped, is the one another session takes as hashtextextended(name, 0)."""
    target = open_target(pg_url, project_dir=tmp_path)
    first, second = target.connect(), target.connect()
    try:
        a, b = second.query(
            "SELECT min(name), max(name) FROM ("
            "SELECT 'dbluigi.run:' || g AS name FROM generate_series(1, 300000) AS g"
            ") AS names GROUP BY hashtext(name) HAVING count(*) > 1 LIMIT 1"
        ).rows[0]
        assert first.try_lock(a)
        assert second.try_lock(b)  # hashtext(a) = hashtext(b): they would exclude each other
        assert not second.try_lock(a)
        second.unlock(b)

        def taken_by_other(name: str) -> bool:
            sql = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
            if second.query(sql, (name,)).rows[0][0]:
                second.query("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
                return False
            return True

        assert taken_by_other(a)
        first.unlock(a)
        assert not taken_by_other(a)
        with first.transaction():
            first.lock_in_transaction(b)
            assert taken_by_other(b) and not taken_by_other(a)
        assert not taken_by_other(b)
    finally:
        first.close()
        second.close()


def test_duckdb_lock_is_the_file(duckdb_url: str, tmp_path: Path) -> None:
    session = open_target(duckdb_url, project_dir=tmp_path).connect()
    assert session.try_lock("dbluigi run")
    session.unlock("dbluigi run")
    session.close()


@pytest.mark.postgres
def test_pg_sessions_identify_themselves(pg_session: Session) -> None:
    name = pg_session.query("SELECT current_setting('application_name')").rows[0][0]
    assert name == "dbluigi"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 AS x WHERE false",
        "SELECT g AS x FROM generate_series(1, 100000) AS g",
        "SELECT g % 10 AS x, count(*) AS c FROM generate_series(1, 1000) AS g GROUP BY 1",
        "SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 3",
        "SELECT g AS x FROM generate_series(1, 1000) AS g ORDER BY g LIMIT 7",
    ],
)
def test_pg_create_table_as_explained_counts_rows_like_create_table_as(
    pg_session: Session, sql: str
) -> None:
    rows, cost = pg_session.create_table_as_explained("s", "explained", sql)
    assert rows == pg_session.create_table_as("s", "plain", sql)
    assert rows == pg_session.row_count("s", "explained")
    assert cost == pg_session.explain_cost(sql)


def test_pg_create_table_as_explained_with_a_parallel_plan(pg_session: Session) -> None:
    pg_session.execute("CREATE TABLE s.big AS SELECT g AS x FROM generate_series(1, 200000) AS g")
    pg_session.execute("ANALYZE s.big")
    with pg_session.transaction():  # a parallel scan: rows come from several processes
        for setting in (
            "parallel_setup_cost",
            "parallel_tuple_cost",
            "min_parallel_table_scan_size",
        ):
            pg_session.query("SELECT set_config(%s, '0', true)", (setting,))
        sql = "SELECT x FROM s.big WHERE x % 3 = 0"
        plan = pg_session.query(f"EXPLAIN (FORMAT JSON) {sql}").rows[0][0]
        assert "Gather" in json.dumps(plan)
        rows, _ = pg_session.create_table_as_explained("s", "third", sql)
    assert rows == 66666 == pg_session.row_count("s", "third")


def test_a_change_noted_while_another_session_reads_the_catalog_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sessions of a DuckDB file share what they know of its catalog: a table one of
    them drops while another reads the catalog anew stays dropped in what both know."""
    import threading

    import dbluigi.targets.duckdb as duckdb_target

    target = open_target(f"duckdb:///{tmp_path / 't.duckdb'}", project_dir=tmp_path)
    reader, dropper = target.connect(), target.connect()
    try:
        reader.execute("create table main.x__dbluigi_new as select 1 as i")
        reader.catalog()
        rows_of = duckdb_target.DuckDBSession._relation_rows
        read, go = threading.Event(), threading.Event()

        def slow(self: duckdb_target.DuckDBSession) -> tuple[tuple[object, ...], ...]:
            rows = rows_of(self)
            read.set()
            go.wait(10)  # a large catalog takes milliseconds to read
            return rows

        monkeypatch.setattr(duckdb_target.DuckDBSession, "_relation_rows", slow)
        refresh = threading.Thread(target=reader.catalog)
        refresh.start()
        assert read.wait(10)
        drop = threading.Thread(target=dropper.drop_relation, args=("main", "x__dbluigi_new"))
        drop.start()  # the DROP runs now; noting it waits for the catalog read
        drop.join(0.5)
        go.set()
        refresh.join(10)
        drop.join(10)
        monkeypatch.undo()
        assert dropper.relation_kind("main", "x__dbluigi_new") is None
        assert reader.relation_kind("main", "x__dbluigi_new") is None
    finally:
        reader.close()
        dropper.close()


def test_duckdb_versions_of_many_tables_are_the_same_read_on_one_connection_or_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of small tables are counted and hashed on as many connections as there are
    cores; what they read is what one connection reads."""
    import dbluigi.targets.duckdb as duckdb_target

    target = open_target(f"duckdb:///{tmp_path / 't.duckdb'}", project_dir=tmp_path)
    session = target.connect()
    try:
        session.ensure_schema("s")
        names = [f"s.t{i}" for i in range(450)]
        for i, name in enumerate(names):
            session.execute(f"create table {name} as select range as x from range({i % 7})")
        monkeypatch.setattr(duckdb_target, "usable_cores", lambda: 4)
        several = session.relation_versions(names, track=False)
        monkeypatch.setattr(duckdb_target, "usable_cores", lambda: 1)
        one = session.relation_versions(names, track=False)
        assert several == one and len(one) == 450
        assert one["s.t3"].startswith("t3.") and one["s.t3"] == one["s.t10"]  # the same rows
        session.execute("insert into s.t10 values (99)")
        assert session.relation_versions(["s.t10"], track=False)["s.t10"] != one["s.t10"]
    finally:
        session.close()


def test_duckdb_sessions_opened_at_once_count_as_one_opening(tmp_path: Path) -> None:
    """Sessions of one file opened on several threads at the same moment: the file is
    opened anew once (one epoch, one comparison with how dbluigi last saw it), and when
    the last closes, none is counted open."""
    import threading

    from dbluigi.targets import duckdb as duckdb_target

    target = open_target(f"duckdb:///{tmp_path / 'at_once.duckdb'}", project_dir=tmp_path)
    assert isinstance(target, DuckDBTarget)
    target.connect().close()  # the file exists; nothing of it is open
    key = target.path.resolve()
    epoch = duckdb_target._EPOCHS[key]
    for _ in range(5):
        start = threading.Barrier(8)
        sessions: list[Session] = []

        def open_one(start: threading.Barrier, sessions: list[Session]) -> None:
            start.wait()
            sessions.append(target.connect())

        threads = [threading.Thread(target=open_one, args=(start, sessions)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(sessions) == 8 and duckdb_target._OPEN[key][0] == 8
        epoch += 1
        assert duckdb_target._EPOCHS[key] == epoch
        closing = [threading.Thread(target=session.close) for session in sessions]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()
        assert duckdb_target._OPEN[key][0] == 0


def test_duckdb_statement_types_are_the_texts_not_a_closed_connections() -> None:
    """A statement's types are remembered by its text; a connection that cannot parse
    (closed) answers nothing for that once, and leaves the text to the next."""
    from dbluigi.targets.duckdb import _catalog_safe, _statement_types

    closed = duckdb.connect()
    closed.close()
    assert _statement_types("select 4242 as closed_then_open", closed) == ()
    with duckdb.connect() as connection:
        assert _catalog_safe("select 4242 as closed_then_open", connection)
        assert not _catalog_safe("create table t (x int)", connection)
        assert not _catalog_safe("select from where", connection)  # unparsable: not safe
