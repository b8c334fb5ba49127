"""Source sessions against real PostgreSQL and MariaDB: read-only, described, streamed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from dbluigi import sources
from dbluigi.errors import TaskError
from dbluigi.sources import SourceTable, mysql
from tests.helpers import write_project
from tests.sourcekit import (
    create_items,
    declared,
    is_mariadb,
    source_exec,
    source_rows,
    source_toml,
)

ENGINES = [
    pytest.param("mariadb_url", id="mariadb", marks=pytest.mark.mariadb),
    pytest.param("pg_source_url", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=ENGINES)
def source_url(request: pytest.FixtureRequest) -> str:
    """A fresh source database: MariaDB, then PostgreSQL."""
    return request.getfixturevalue(request.param)


def _table(tmp_path: Path, url: str, tables: str = 'tables = ["items"]') -> SourceTable:
    root = write_project(tmp_path / "p", {"dbluigi.toml": source_toml(url, tables)})
    return declared(root, "src.items")


def test_a_write_through_the_source_session_fails(tmp_path: Path, source_url: str) -> None:
    create_items(source_url, [(1, "new", "2024-01-01 00:00:00")])
    table = _table(tmp_path, source_url)
    read_write = (
        "SET SESSION TRANSACTION READ WRITE"
        if is_mariadb(source_url)
        else "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"
    )
    writes = [
        "insert into items values (2, 'x', null)",
        "update items set status = 'changed'",
        "delete from items",
        "create table other (a integer)",
        "drop table items",
        "truncate table items",
    ]
    with sources.connect(table) as source:
        assert source.query("select count(*) from items").rows == ((1,),)
        for write in writes:
            with pytest.raises(Exception) as info:
                source.query(write)
            message = str(info.value).lower().replace("-", " ")
            assert "read only" in message, (write, message)
            # asking the session to be writable does not make the next statement writable
            source.query(read_write)
        with pytest.raises(TaskError) as several:  # would end the read-only transaction
            source.query(
                "commit; set transaction read write; insert into items values (3, 'x', null)"
            )
        assert "must be one statement" in str(several.value)
    assert source_rows(source_url, "select id, status from items") == [(1, "new")]
    assert source_rows(
        source_url, "select count(*) from information_schema.tables where table_name = 'other'"
    ) == [(0,)]


def test_describe_maps_types_and_names_what_is_missing(tmp_path: Path, source_url: str) -> None:
    create_items(source_url)
    mistakes = {
        "[sources.src.tables.itemz]\n": "table itemz not found in source src",
        '[sources.src.tables.items]\nmode = "incremental"\nwatermark = "updated"\nunique_key = "id"\n': "watermark column 'updated' is not a column of items in source src (its columns: id, status, updated_at)",
        '[sources.src.tables.items]\nmode = "incremental"\nwatermark = "updated_at"\nunique_key = "item_id"\n': "unique_key column 'item_id' is not a column of items",
        '[sources.src.tables.items]\ncolumns = ["id", "state"]\n': "columns column 'state' is not a column of items",
    }
    for i, (tables, message) in enumerate(mistakes.items()):
        root = write_project(tmp_path / f"p{i}", {"dbluigi.toml": source_toml(source_url, tables)})
        relation = "src.itemz" if "itemz" in tables else "src.items"
        table = declared(root, relation)
        with sources.connect(table) as source, pytest.raises(TaskError) as info:
            source.describe(table)
        assert info.value.failure_class == "config"
        assert info.value.path == "dbluigi.toml" and info.value.line == 3
        assert message in str(info.value)
    # a close table name is suggested
    root = write_project(
        tmp_path / "q", {"dbluigi.toml": source_toml(source_url, 'tables = ["item"]')}
    )
    table = declared(root, "src.item")
    with sources.connect(table) as source, pytest.raises(TaskError) as info:
        source.describe(table)
    assert "closest tables there: items" in str(info.value)


def test_a_column_type_with_no_mapping_is_named_and_can_be_read_as_text(
    tmp_path: Path, source_url: str
) -> None:
    odd = "time" if is_mariadb(source_url) else "interval"
    value = "'01:02:03'" if is_mariadb(source_url) else "'1 day 02:03:04'"
    source_exec(
        source_url,
        f"create table items (id integer primary key, duration {odd})",
        f"insert into items values (1, {value})",
    )
    table = _table(tmp_path, source_url)
    with sources.connect(table) as source, pytest.raises(TaskError) as info:
        source.describe(table)
    assert info.value.failure_class == "config"
    assert f"column 'duration' of items in source src has type {odd}, which has no mapping" in str(
        info.value
    )
    assert 'column_types = { duration = "text" }' in str(info.value)

    table = _table(
        tmp_path / "text", source_url, 'tables.items.column_types = { duration = "text" }'
    )
    with sources.connect(table) as source:
        columns = source.describe(table)
        assert [(c.name, c.type, c.as_text) for c in columns] == [
            ("id", "bigint", False),
            ("duration", "text", True),
        ]
        out = io.BytesIO()
        assert source.copy_csv(table, columns, out) == 1
    expected = "01:02:03" if is_mariadb(source_url) else "1 day 02:03:04"
    assert list(csv.reader(io.StringIO(out.getvalue().decode()))) == [["1", expected]]


def test_an_unreachable_source_shows_its_url_masked(tmp_path: Path, source_url: str) -> None:
    scheme = "mysql+pymysql" if is_mariadb(source_url) else "postgresql"
    url = f"{scheme}://reader:Pa55word@127.0.0.1:1/nowhere?connect_timeout=2"
    table = _table(tmp_path, url)
    with pytest.raises(TaskError) as info:
        sources.connect(table)
    text = str(info.value)
    assert info.value.failure_class == "runtime"
    assert f"cannot connect to source src ({scheme}://reader:***@127.0.0.1:1/nowhere" in text
    assert "Pa55word" not in text
    assert info.value.path == "dbluigi.toml" and info.value.line == 3


def test_rows_stream_as_csv_from_the_watermark_on(tmp_path: Path, source_url: str) -> None:
    create_items(
        source_url,
        [
            (1, 'say "hi", ok', "2024-01-01 00:00:00"),
            (2, "", "2024-01-02 00:00:00"),
            (3, "two\nlines", "2024-01-03 00:00:00"),
        ],
    )
    source_exec(source_url, "insert into items values (4, null, null)")
    incremental = (
        '[sources.src.tables.items]\nmode = "incremental"\nwatermark = "updated_at"\n'
        'unique_key = "id"\nwhere = "id < 10"\n'
    )
    table = _table(tmp_path, source_url, incremental)
    import datetime as dt

    with sources.connect(table) as source:
        columns = source.describe(table)
        out = io.BytesIO()
        assert source.copy_csv(table, columns, out) == 4
        assert out.getvalue().decode().splitlines(keepends=True) == [
            '1,"say ""hi"", ok",2024-01-01 00:00:00\n',
            '2,"",2024-01-02 00:00:00\n',
            '3,"two\n',
            'lines",2024-01-03 00:00:00\n',
            "4,,\n",
        ]
        later = io.BytesIO()
        assert source.copy_csv(table, columns, later, since=dt.datetime(2024, 1, 2)) == 2
        assert later.getvalue().decode().startswith('2,"",2024-01-02')
        # the default version of an incremental copy is its highest watermark
        version = source.query(sources.version_sql(table) or "")
        assert version.rows[0][0] == dt.datetime(2024, 1, 3)


# -- MariaDB: row packets read in bulk ---------------------------------------------------


@pytest.mark.mariadb
def test_mariadb_rows_read_in_bulk_equal_pymysqls_own(
    tmp_path: Path, mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_exec(
        mariadb_url,
        "create table items (id integer primary key, body longtext, note varchar(20))",
        "insert into items values (1, 'short', null), (2, repeat('é', 200), ''), "
        "(3, repeat('x', 70000), 'a'), (4, repeat('y', 3000000), 'b'), (5, null, 'c')",
    )
    table = _table(tmp_path, mariadb_url)
    copies = {}
    for bulk in (True, False):
        monkeypatch.setattr(mysql, "RAW_ROWS", bulk)
        with sources.connect(table) as source:
            out = io.BytesIO()
            assert source.copy_csv(table, source.describe(table), out) == 5
            copies[bulk] = out.getvalue()
            # the session is usable afterwards
            assert source.query("select count(*) from items").rows == ((5,),)
    assert copies[True] == copies[False]
    csv.field_size_limit(1 << 24)
    rows = list(csv.reader(io.StringIO(copies[True].decode())))
    assert [len(r[1]) for r in rows] == [5, 200, 70000, 3000000, 0]


@pytest.mark.mariadb
def test_a_mariadb_row_past_max_allowed_packet_is_an_error_not_a_null(
    tmp_path: Path, mariadb_url: str
) -> None:
    source_exec(
        mariadb_url,
        "create table items (id integer primary key, a longtext, b longtext)",
        "insert into items values (1, repeat('a', 9000000), repeat('b', 9000000))",
    )
    table = _table(tmp_path, mariadb_url)
    with sources.connect(table) as source, pytest.raises(TaskError) as info:
        source.copy_csv(table, source.describe(table), io.BytesIO())
    assert "larger than the server's max_allowed_packet" in str(info.value)


def test_bulk_row_reader_follows_the_protocol() -> None:
    """Packets as the server sends them: every length encoding, a row split over two
    packets, then the end of the rows; and an error packet in the middle."""
    from types import SimpleNamespace

    def packet(sequence: int, payload: bytes) -> bytes:
        return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload

    def string(data: bytes) -> bytes:
        size = len(data)
        if size < 0xFB:
            return bytes([size]) + data
        if size < 1 << 16:
            return b"\xfc" + size.to_bytes(2, "little") + data
        if size < 1 << 24:
            return b"\xfd" + size.to_bytes(3, "little") + data
        return b"\xfe" + size.to_bytes(8, "little") + data

    lines = [b"1,a\n", b"2," + b"b" * 300 + b"\n", b"3," + b"c" * 70000 + b"\n"]
    huge = b"4," + b"d" * (0xFFFFFF + 10) + b"\n"
    payload = string(huge)
    stream = [packet(i, string(line)) for i, line in enumerate(lines)]
    stream += [packet(3, payload[:0xFFFFFF]), packet(4, payload[0xFFFFFF:])]
    stream.append(packet(5, b"\xfe\x00\x00\x02\x00"))

    def run(data: bytes) -> tuple[int, bytes, SimpleNamespace]:
        connection = SimpleNamespace(
            _rfile=io.BufferedReader(io.BytesIO(data)),  # type: ignore[arg-type]
            _next_seq_id=0,
            _result=SimpleNamespace(unbuffered_active=True),
        )
        out = io.BytesIO()
        rows = mysql._copy_raw_rows(
            connection, out, lambda: TaskError("x", failure_class="runtime")
        )
        return rows, out.getvalue(), connection

    rows, copied, connection = run(b"".join(stream))
    assert rows == 4 and copied == b"".join([*lines, huge])
    assert connection._next_seq_id == 6 and not connection._result.unbuffered_active

    import pymysql.err

    error = packet(1, b"\xff\x15\x04#HY000boom")
    with pytest.raises(pymysql.err.Error) as info:
        run(stream[0] + error)
    assert "boom" in str(info.value)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("code", "transient"),
    [(1213, True), (1205, True), (2006, True), (2013, True), (1040, True), (1366, False)],
)
def test_mariadb_errors_that_may_pass_if_tried_again(code: int, transient: bool) -> None:
    """PyMySQL's deadlock, lock wait timeout and lost connection are retried; a bad value
    (1366, incorrect integer value) is not."""
    import pymysql

    source = object.__new__(mysql.MariaDBSource)  # classifying needs no connection
    source.source = "shop"
    error = pymysql.err.OperationalError(code, "from the server")
    assert source.transient(error) is transient
    try:
        with source.reading():
            raise error
    except TaskError as exc:
        assert transient and exc.transient and exc.failure_class == "runtime"
        assert exc.message == f"source shop: ({code}, 'from the server')"
    except pymysql.err.OperationalError:
        assert not transient
