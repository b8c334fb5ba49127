"""The examples read their raw tables from MariaDB: examples/sources_demo, and
examples/orders with its seeds replaced by a source (scripts/orders_from_mariadb.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from tests.buildkit import ROOT, build_json, cli, query, ran
from tests.sourcekit import source_exec, source_script

pytestmark = pytest.mark.mariadb

DEMO = ROOT / "examples" / "sources_demo"
ORDERS = ROOT / "examples" / "orders"


def test_sources_demo_builds_from_mariadb_and_follows_the_source(
    tmp_path: Path, mariadb_url: str, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_script(mariadb_url, DEMO / "source.sql")
    monkeypatch.setenv("SOURCE_URL", mariadb_url)
    root = tmp_path / "demo"
    shutil.copytree(DEMO / "project", root)

    code, first = build_json(project=root, target=target_url)
    assert code == 0, first
    assert {r["model"]: r["kind"] for r in first["tasks"]} == {
        "shop.customers": "extract",
        "shop.orders": "extract",
        "reporting.customer_revenue": "table",
        "reporting.daily_orders": "table",
    }
    revenue = "select customer_id, orders, revenue from reporting.customer_revenue order by 1"
    assert query(target_url, root, revenue) == [
        (1, 2, Decimal("1280.50")),
        (2, 1, Decimal("310.25")),
        (3, 0, Decimal("0.00")),
        (4, 1, Decimal("2450.00")),
    ]
    # the where clause keeps test orders out
    assert query(target_url, root, "select count(*) from shop.orders where id = 106") == [(0,)]

    source_exec(
        mariadb_url,
        "update orders set status = 'paid' where id = 104",  # updated_at moves on by itself
        "insert into orders (id, customer_id, ordered_on, status, amount) "
        "values (108, 3, '2024-02-07', 'shipped', 500.00)",
    )
    plan = json.loads(cli("plan", "--json", project=root, target=target_url)[1])
    reasons = {m["model"]: m["reason"] for m in plan["models"]}
    assert reasons == {
        "shop.customers": "up to date",
        "shop.orders": "source changed",
        "reporting.customer_revenue": "upstream rebuilt",
        "reporting.daily_orders": "upstream rebuilt",
    }
    code, second = build_json(project=root, target=target_url)
    assert code == 0, second
    assert ran(second) == {"shop.orders", "reporting.customer_revenue", "reporting.daily_orders"}
    assert query(target_url, root, revenue)[2] == (3, 2, Decimal("599.99"))


def test_orders_example_reads_its_raw_tables_from_mariadb(
    tmp_path: Path, mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(
        "orders_from_mariadb", ROOT / "scripts" / "orders_from_mariadb.py"
    )
    assert spec is not None and spec.loader is not None
    orders_from_mariadb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(orders_from_mariadb)

    seeded = tmp_path / "seeded"
    shutil.copytree(ORDERS, seeded, ignore=shutil.ignore_patterns(".dbluigi", "exports"))
    seeded_target = f"duckdb:///{tmp_path / 'seeded.duckdb'}"
    assert build_json(project=seeded, target=seeded_target)[0] == 0

    tables = orders_from_mariadb.load_raw_tables(mariadb_url, ORDERS)
    sourced = orders_from_mariadb.write_project(tmp_path / "sourced", tables, ORDERS)
    assert not list((sourced / "raw").glob("*.csv"))
    monkeypatch.setenv("SOURCE_URL", mariadb_url)
    sourced_target = f"duckdb:///{tmp_path / 'sourced.duckdb'}"
    code, payload = build_json(project=sourced, target=sourced_target)
    assert code == 0, payload
    kinds = {r["model"]: r["kind"] for r in payload["tasks"]}
    assert {m for m, k in kinds.items() if k == "extract"} == {f"raw.{t}" for t in tables}

    # every table downstream of raw is the same as when raw came from the seeds
    relations = query(
        seeded_target,
        seeded,
        "select schema_name || '.' || table_name from duckdb_tables() "
        "where schema_name not in ('raw', 'dbluigi') order by 1",
    )
    assert relations
    for (relation,) in relations:
        sql = f"select * from {relation} order by all"
        assert query(sourced_target, sourced, sql) == query(seeded_target, seeded, sql), relation
