"""The incremental kind: upserts by unique_key, the watermark, --full-refresh, checks on the
merged table, and the bad inputs, on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest
import sqlglot

from dbluigi.kinds.incremental import sql_literal
from dbluigi.project import load_project
from tests.buildkit import build_json, cli, query, ran
from tests.test_build import write_project

HEADER = "order_id,amount,updated_at,is_deleted\n"
FIRST = HEADER + (
    "1,10,2024-01-01 10:00:00,false\n"
    "2,20,2024-01-02 10:00:00,false\n"
    "3,30,2024-01-03 10:00:00,false\n"
)
STORE = """\
-- kind: incremental
-- unique_key: order_id
-- watermark: updated_at
-- index: updated_at
-- check: unique(order_id)
select order_id, amount, updated_at, is_deleted
from raw.orders
where {{ watermark }} is null or updated_at >= {{ watermark }}
"""


def orders_project(root: Path, store: str = STORE, **files: str) -> Path:
    return write_project(root, {"raw/orders.csv": FIRST, "store/orders.sql": store, **files})


def store_rows(target: str, project: Path) -> list[tuple[object, ...]]:
    rows = query(
        target,
        project,
        "select order_id, cast(amount as integer), is_deleted from store.orders order by order_id",
    )
    return [tuple(r) for r in rows]


def task(payload: dict[str, object], model: str) -> dict[str, object]:
    return next(r for r in payload["tasks"] if r["model"] == model)  # type: ignore[union-attr, index]


def test_upserts_new_and_changed_rows_by_watermark(tmp_path: Path, target_url: str) -> None:
    project = orders_project(tmp_path)
    code, first = build_json(project=project, target=target_url)
    assert code == 0, first
    assert task(first, "store.orders")["rows"] == 3
    assert store_rows(target_url, project) == [(1, 10, False), (2, 20, False), (3, 30, False)]

    # order 2 changes and is soft-deleted, order 4 is new, order 1 changes without a newer
    # updated_at (so the watermark leaves it out), order 3 disappears from the source
    (project / "raw/orders.csv").write_text(
        HEADER + "1,11,2024-01-01 10:00:00,false\n"
        "2,21,2024-01-05 09:00:00,true\n"
        "4,40,2024-01-04 10:00:00,false\n"
    )
    code, second = build_json(project=project, target=target_url)
    assert code == 0, second
    store = task(second, "store.orders")
    assert store["reason"] == "upstream rebuilt" and store["status"] == "success"
    assert store["rows"] == 2  # only rows at or after the watermark (2024-01-03 10:00)
    assert store_rows(target_url, project) == [
        (1, 10, False),  # not newer than the watermark: untouched
        (2, 21, True),  # updated, soft delete carried along
        (3, 30, False),  # deleted in the source: an upsert never deletes
        (4, 40, False),
    ]
    keys = query(
        target_url,
        project,
        "select count(*), count(distinct order_id) from store.orders",
    )
    assert keys == [(4, 4)]

    # --full-refresh rebuilds from scratch: the source as it is now
    code, refreshed = build_json("--full-refresh", project=project, target=target_url)
    assert code == 0, refreshed
    assert ran(refreshed) == {"store.orders"}
    assert task(refreshed, "store.orders")["reason"] == "full refresh"
    assert store_rows(target_url, project) == [(1, 11, False), (2, 21, True), (4, 40, False)]

    # nothing stale: only the incremental model runs, for new rows, and finds none; the
    # indexes are there after each kind of build
    code, again = build_json(project=project, target=target_url)
    assert code == 0 and ran(again) == {"store.orders"}
    assert task(again, "store.orders")["rows"] == 0
    assert _indexes(target_url, project) == {"orders__order_id_uidx", "orders__updated_at_idx"}


def test_rebuild_full_refresh_and_an_incremental_rebuild(tmp_path: Path, target_url: str) -> None:
    project = orders_project(tmp_path)
    assert build_json(project=project, target=target_url)[0] == 0
    code, rebuilt = build_json(
        "store.orders", project=project, target=target_url, command="rebuild"
    )
    assert code == 0 and task(rebuilt, "store.orders")["reason"] == "forced"
    assert task(rebuilt, "store.orders")["rows"] == 0  # the boundary row, read again as it was
    code, rebuilt = build_json(
        "store.orders", "--full-refresh", project=project, target=target_url, command="rebuild"
    )
    assert code == 0 and task(rebuilt, "store.orders")["reason"] == "full refresh"
    assert task(rebuilt, "store.orders")["rows"] == 3
    assert store_rows(target_url, project) == [(1, 10, False), (2, 20, False), (3, 30, False)]


def test_a_failed_check_on_the_merged_table_leaves_it_as_it_was(
    tmp_path: Path, target_url: str
) -> None:
    project = orders_project(
        tmp_path,
        STORE.replace("-- check: unique(order_id)\n", "-- check: rows <= 3\n"),
        **{"store/orders.check.sql": "select order_id from store.orders where amount < 0"},
    )
    assert build_json(project=project, target=target_url)[0] == 0
    # one more row breaks `rows <= 3` only once merged; a negative amount breaks the file
    (project / "raw/orders.csv").write_text(FIRST + "4,40,2024-01-04 10:00:00,false\n")
    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    result = task(payload, "store.orders")
    assert result["failure_class"] == "check"
    assert "check 'rows <= 3' failed: 4 rows, expected <= 3" in result["error"]
    assert "nothing was published" in result["error"]
    assert store_rows(target_url, project) == [(1, 10, False), (2, 20, False), (3, 30, False)]

    (project / "raw/orders.csv").write_text(FIRST.replace("3,30,2024-01-03", "3,-30,2024-01-06"))
    code, payload = build_json(project=project, target=target_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "check"
    assert result["file"] == "store/orders.check.sql"
    assert store_rows(target_url, project)[2] == (3, 30, False)
    assert not _exists(target_url, project, "orders__dbluigi_new")


def test_several_rows_for_one_key_are_refused(tmp_path: Path, target_url: str) -> None:
    project = orders_project(tmp_path)
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "raw/orders.csv").write_text(
        FIRST + "4,40,2024-01-04 10:00:00,false\n4,41,2024-01-04 11:00:00,false\n"
    )
    code, payload = build_json(project=project, target=target_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "check"
    assert "several rows with the same key" in result["error"]
    assert "one row per unique_key(order_id)" in result["error"]
    assert (result["file"], result["line"]) == ("store/orders.sql", 2)
    assert len(store_rows(target_url, project)) == 3


def test_a_watermark_column_the_model_does_not_produce(tmp_path: Path, target_url: str) -> None:
    project = orders_project(
        tmp_path, STORE.replace("-- watermark: updated_at", "-- watermark: changed_at")
    )
    code, payload = build_json(project=project, target=target_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "config"
    assert (result["file"], result["line"]) == ("store/orders.sql", 3)
    assert (
        "watermark column 'changed_at' is not a column of the model's query "
        "(its columns: order_id, amount, updated_at, is_deleted)"
    ) in result["error"]
    assert not _exists(target_url, project, "orders")

    # once published, a later edit naming a column the table lacks fails the same way
    (project / "store/orders.sql").write_text(STORE)
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "store/orders.sql").write_text(
        STORE.replace("-- watermark: updated_at", "-- watermark: changed_at")
    )
    code, payload = build_json(project=project, target=target_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "config" and result["line"] == 3
    assert (
        "watermark column 'changed_at' is not a column of the published store.orders"
        in (result["error"])
    )


def test_changed_columns_need_a_full_refresh(tmp_path: Path, target_url: str) -> None:
    project = orders_project(tmp_path)
    assert build_json(project=project, target=target_url)[0] == 0
    wider = STORE.replace("is_deleted\nfrom", "is_deleted, amount * 2 as doubled\nfrom")
    (project / "store/orders.sql").write_text(wider)
    code, payload = build_json(project=project, target=target_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "config"
    assert (
        "the query's columns differ from the published store.orders (new: doubled)"
        in (result["error"])
    )
    assert "dbluigi build --full-refresh store.orders" in result["error"]
    code, payload = build_json("--full-refresh", project=project, target=target_url)
    assert code == 0, payload
    assert query(target_url, project, "select max(doubled) from store.orders") == [(60,)]


def test_a_changed_unique_key_needs_a_full_refresh(tmp_path: Path, target_url: str) -> None:
    """The published table is still unique on the old key: upserting under the new one
    would fail on it (or keep rows duplicating each other), so the build asks for a
    full refresh, as for changed columns."""
    project = orders_project(tmp_path)
    assert build_json(project=project, target=target_url)[0] == 0
    versions = STORE.replace("(order_id)", "(order_id, updated_at)").replace(
        "-- unique_key: order_id", "-- unique_key: order_id, updated_at"
    )
    (project / "store/orders.sql").write_text(versions)
    (project / "raw/orders.csv").write_text(FIRST + "1,12,2024-01-06 10:00:00,false\n")
    code, payload = build_json(project=project, target=target_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "config", payload
    assert (result["file"], result["line"]) == ("store/orders.sql", 2)
    assert (
        "the published store.orders is unique on (order_id), which the model no longer "
        "declares (its unique_key: order_id, updated_at)"
    ) in result["error"]
    assert "dbluigi build --full-refresh store.orders" in result["error"]
    assert store_rows(target_url, project) == [(1, 10, False), (2, 20, False), (3, 30, False)]

    code, payload = build_json("--full-refresh", project=project, target=target_url)
    assert code == 0, payload
    assert _indexes(target_url, project) == {
        "orders__order_id_updated_at_uidx",
        "orders__updated_at_idx",
    }
    # incremental again, under the new key: a new version of order 1 is a new row
    with (project / "raw/orders.csv").open("a") as csv:
        csv.write("1,13,2024-01-07 10:00:00,false\n")
    code, payload = build_json(project=project, target=target_url)
    # the new version of order 1; the one at the watermark is read again as it was
    assert code == 0 and task(payload, "store.orders")["rows"] == 1, payload
    amounts = "select cast(amount as integer) from store.orders where order_id = 1 order by 1"
    assert query(target_url, project, amounts) == [(10,), (12,), (13,)]

    # the same key with its columns in another order is no change
    (project / "store/orders.sql").write_text(
        versions.replace("order_id, updated_at\n", "updated_at, order_id\n")
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 0 and task(payload, "store.orders")["status"] == "success", payload


def test_a_query_without_the_watermark_header(tmp_path: Path, target_url: str) -> None:
    project = orders_project(tmp_path, STORE.replace("-- watermark: updated_at\n", ""))
    code, payload = build_json(project=project, target=target_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "config"
    assert "uses {{ watermark }} but the model has no -- watermark: header" in result["error"]


def test_without_a_watermark_every_row_is_upserted(tmp_path: Path, target_url: str) -> None:
    store = "-- kind: incremental\n-- unique_key: order_id\nselect * from raw.orders\n"
    project = orders_project(tmp_path, store)
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "raw/orders.csv").write_text(FIRST.replace("1,10,", "1,15,"))
    code, payload = build_json(project=project, target=target_url)
    assert code == 0 and task(payload, "store.orders")["rows"] == 1  # the one row that changed
    assert store_rows(target_url, project)[0] == (1, 15, False)


def test_an_incremental_model_without_unique_key_is_a_project_error(
    tmp_path: Path, duckdb_url: str
) -> None:
    project = orders_project(tmp_path, "-- kind: incremental\nselect * from raw.orders\n")
    code, output = cli("build", project=project, target=duckdb_url)
    assert code == 2
    assert "store/orders.sql:1" in output
    assert "an incremental model needs -- unique_key: to upsert its rows" in output


def test_patch_corrects_the_new_rows_before_they_are_merged(
    tmp_path: Path, target_url: str
) -> None:
    project = orders_project(
        tmp_path,
        **{"store/orders.patch.sql": "update store.orders set amount = 0 where amount < 0"},
    )
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "raw/orders.csv").write_text(FIRST + "4,-40,2024-01-04 10:00:00,false\n")
    assert build_json(project=project, target=target_url)[0] == 0
    assert store_rows(target_url, project)[3] == (4, 0, False)


@pytest.mark.postgres
def test_max_cost_explains_the_query_with_its_watermark(tmp_path: Path, pg_url: str) -> None:
    project = orders_project(tmp_path, "-- max_cost: 0.001\n" + STORE)
    code, payload = build_json(project=project, target=pg_url)
    result = task(payload, "store.orders")
    assert code == 1 and result["failure_class"] == "guard"
    assert "is above max_cost 0.001" in result["error"]


@pytest.mark.postgres
def test_a_view_reading_the_store_follows_the_upserts(tmp_path: Path, pg_url: str) -> None:
    project = orders_project(
        tmp_path,
        **{
            "store/live_orders.sql": "-- kind: view\nselect * from store.orders where not is_deleted"
        },
    )
    assert build_json(project=project, target=pg_url)[0] == 0
    (project / "raw/orders.csv").write_text(
        FIRST.replace("2,20,2024-01-02 10:00:00,false", "2,20,2024-01-09 10:00:00,true")
    )
    assert build_json(project=project, target=pg_url)[0] == 0
    assert query(pg_url, project, "select order_id from store.live_orders order by 1") == [
        (1,),
        (3,),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "NULL"),
        (42, "42"),
        (decimal.Decimal("12.50"), "12.50"),
        (dt.date(2024, 5, 1), "CAST('2024-05-01' AS DATE)"),
        (dt.datetime(2024, 5, 1, 12, 30), "CAST('2024-05-01 12:30:00' AS TIMESTAMP)"),
        (
            dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
            "CAST('2024-05-01 12:30:00+00:00' AS TIMESTAMPTZ)",
        ),
        ("it's", "'it''s'"),
    ],
)
@pytest.mark.parametrize("dialect", ["postgres", "duckdb"])
def test_watermark_literals(value: object, expected: str, dialect: str) -> None:
    rendered = sqlglot.parse_one(sql_literal(value, dialect), read=dialect)
    assert rendered == sqlglot.parse_one(expected, read=dialect)


def _indexes(target: str, project: Path) -> set[str]:
    if target.startswith("duckdb"):
        sql = "select index_name from duckdb_indexes() where table_name = 'orders'"
    else:
        sql = "select indexname from pg_indexes where tablename = 'orders'"
    return {r[0] for r in query(target, project, sql)}


def _exists(target: str, project: Path, name: str) -> bool:
    from dbluigi.targets import open_target

    session = open_target(target, project_dir=project).connect()
    try:
        return session.relation_kind("store", name) is not None
    finally:
        session.close()


def test_a_bare_name_is_qualified_and_the_watermark_kept(tmp_path: Path, target_url: str) -> None:
    """``from orders`` means raw.orders; qualifying it keeps the runtime placeholder."""
    store = STORE.replace("from raw.orders", "from orders")
    project = write_project(tmp_path, {"raw/orders.csv": FIRST, "store/recent.sql": store})
    sql = load_project(project).models["store.recent"].query
    assert sql.count("{{ watermark }}") == 2 and "raw.orders" in sql
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "raw/orders.csv").write_text(FIRST + "4,40,2024-01-04 10:00:00,false\n")
    code, payload = build_json(project=project, target=target_url)
    assert code == 0 and task(payload, "store.recent")["rows"] == 1  # the new row alone


def test_retry_of_a_full_refresh_refreshes_in_full(tmp_path: Path, target_url: str) -> None:
    """`retry` gives the models a failed `build --full-refresh` left unbuilt the same
    option, as `dbt retry` does; it used to upsert them, keeping what the refresh meant to
    drop. A retry of that retry refreshes too."""
    project = orders_project(tmp_path)
    assert build_json(project=project, target=target_url)[0] == 0
    # order 1 changes without a newer updated_at, order 3 goes: only a refresh sees both
    (project / "raw/orders.csv").write_text(
        HEADER + "1,11,2024-01-01 10:00:00,false\n2,20,2024-01-02 10:00:00,false\n"
    )
    # a check that fails on what the refresh makes (order 1 at 11)
    check = project / "store/orders.check.sql"
    check.write_text("select * from store.orders where amount = 11\n")
    code, refreshed = build_json("--full-refresh", project=project, target=target_url)
    assert code == 1 and task(refreshed, "store.orders")["status"] == "failed"
    assert task(refreshed, "store.orders")["reason"] == "full refresh"

    code, output = cli("retry", project=project, target=target_url)
    assert code == 1 and "(--full-refresh): store.orders" in output, output
    check.write_text("select * from store.orders where amount < 0\n")  # mended
    code, retried = build_json(project=project, target=target_url, command="retry")
    assert code == 0, retried
    assert task(retried, "store.orders")["reason"] == "full refresh"
    assert store_rows(target_url, project) == [(1, 11, False), (2, 20, False)]
