"""Column lineage (dbluigi.columns): tricky SQL on both dialects, traces across models,
and ``dbluigi lineage MODEL.COLUMN``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from dbluigi.columns import ColumnSource, ModelColumns, project_columns, trace
from dbluigi.errors import UsageError
from dbluigi.project import load_project
from dbluigi.targets import open_target
from tests.buildkit import cli
from tests.helpers import write_project

unit = pytest.mark.unit

PG = "postgresql://root@127.0.0.1/test"  # only its dialect is used: nothing connects
DIALECTS = [pytest.param(None, id="duckdb"), pytest.param(PG, id="postgres")]

ORDERS = {
    "raw.orders": ("id", "customer_id", "amount", "day"),
    "raw.customers": ("id", "name", "region"),
    "raw.payments": ("order_id", "paid", "amount"),
}


def model_columns(
    tmp_path: Path,
    sql: str,
    target: str | None,
    known: Mapping[str, Sequence[str]] | None = ORDERS,
    **files: str,
) -> ModelColumns:
    write_project(tmp_path, {"s/m.sql": sql, **files})
    project = load_project(tmp_path, target=target, use_cache=False)
    return project_columns(project, known)["s.m"]


def sources(found: ModelColumns) -> dict[str, set[tuple[str, str]]]:
    return {c.name: {(s.relation, s.column) for s in c.sources} for c in found.columns}


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_a_cte_shadowing_a_table_is_the_cte(tmp_path: Path, target: str | None) -> None:
    found = model_columns(
        tmp_path,
        """
        with orders as (select order_id as id, paid as amount from raw.payments)
        select id, amount from orders
        """,
        target,
        known={**ORDERS, "main.orders": ("id", "amount"), "public.orders": ("id", "amount")},
    )
    assert sources(found) == {
        "id": {("raw.payments", "order_id")},
        "amount": {("raw.payments", "paid")},
    }
    assert found.note is None


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_select_star_through_a_cte_expands_known_columns(
    tmp_path: Path, target: str | None
) -> None:
    found = model_columns(
        tmp_path, "with c as (select * from raw.customers) select * from c", target
    )
    assert [c.name for c in found.columns] == ["id", "name", "region"]
    assert sources(found) == {c: {("raw.customers", c)} for c in ("id", "name", "region")}
    assert found.note is None


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_a_union_has_each_branch_as_source(tmp_path: Path, target: str | None) -> None:
    found = model_columns(
        tmp_path,
        """
        select id as key, amount from raw.orders
        union all
        select order_id, paid from raw.payments
        union all
        select 0, 0
        """,
        target,
    )
    assert sources(found) == {
        "key": {("raw.orders", "id"), ("raw.payments", "order_id")},
        "amount": {("raw.orders", "amount"), ("raw.payments", "paid")},
    }


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_a_window_function_reads_its_partition_and_order(
    tmp_path: Path, target: str | None
) -> None:
    found = model_columns(
        tmp_path,
        """
        select id,
               sum(amount) over (partition by customer_id order by day) as running,
               row_number() over () as n
        from raw.orders
        """,
        target,
    )
    assert sources(found)["running"] == {
        ("raw.orders", "amount"),
        ("raw.orders", "customer_id"),
        ("raw.orders", "day"),
    }
    n = found.columns[2]
    assert n.sources == () and n.note is not None and "no column" in n.note


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_aliases_of_tables_columns_and_subqueries(tmp_path: Path, target: str | None) -> None:
    found = model_columns(
        tmp_path,
        """
        select o.id as order_key, totals.total, upper(c.name) as "Shouted"
        from raw.orders as o
        join (select customer_id as cid, sum(amount) as total from raw.orders group by 1) totals
          on totals.cid = o.customer_id
        join raw.customers c on c.id = o.customer_id
        """,
        target,
    )
    # DuckDB compares names case-insensitively (sqlglot folds them, quoted too)
    shouted = "Shouted" if target == PG else "shouted"
    assert sources(found) == {
        "order_key": {("raw.orders", "id")},
        "total": {("raw.orders", "amount")},
        shouted: {("raw.customers", "name")},
    }


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_a_correlated_subquery_is_a_source(tmp_path: Path, target: str | None) -> None:
    found = model_columns(
        tmp_path,
        """
        select o.id,
               (select max(p.paid) from raw.payments p where p.order_id = o.id) as last_paid
        from raw.orders o
        """,
        target,
    )
    assert sources(found) == {
        "id": {("raw.orders", "id")},
        "last_paid": {("raw.payments", "paid")},
    }


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_unqualified_columns_of_a_join_resolve_with_the_schema(
    tmp_path: Path, target: str | None
) -> None:
    sql = """
        select amount, name, region as area
        from raw.orders o join raw.customers c on o.customer_id = c.id
        """
    found = model_columns(tmp_path, sql, target)
    assert sources(found) == {
        "amount": {("raw.orders", "amount")},
        "name": {("raw.customers", "name")},
        "area": {("raw.customers", "region")},
    }
    # the same without the columns of the joined relations: said, not guessed
    unknown = model_columns(tmp_path / "unknown", sql, target, known={})
    assert sources(unknown) == {"amount": set(), "name": set(), "area": set()}
    assert all(c.note and c.note.startswith("cannot tell which relation") for c in unknown.columns)


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_a_constant_reads_no_column(tmp_path: Path, target: str | None) -> None:
    found = model_columns(tmp_path, "select 1 as one, 'x' as label, id from raw.orders", target)
    one, label, id_ = found.columns
    assert (one.sources, one.note) == ((), "a constant: it reads no column")
    assert (label.sources, label.note) == ((), "a constant: it reads no column")
    assert id_.sources == (ColumnSource("raw.orders", "id"),) and id_.note is None


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_select_star_from_an_unknown_source_is_said_not_guessed(
    tmp_path: Path, target: str | None
) -> None:
    found = model_columns(tmp_path, "select * from raw.unknown", target)
    assert found.columns == ()
    assert found.note == "select * from raw.unknown, whose columns are unknown"
    named = model_columns(
        tmp_path / "named", "select *, amount * 2 as doubled from raw.unknown", target
    )
    assert sources(named) == {"doubled": {("raw.unknown", "amount")}}
    assert named.note is not None and named.note.startswith("select * from raw.unknown")


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_a_python_model_and_a_sql_script_are_not_traced(tmp_path: Path, target: str | None) -> None:
    write_project(
        tmp_path,
        {
            "s/py.py": "def run(ctx):\n    pass\n",
            "s/script.sql": "-- kind: sql\n-- unmanaged: true\nupdate raw.orders set amount = 0 where amount < 0",
            "s/copy.sql": "create table s.copy as select id, amount from raw.orders",
        },
    )
    project = load_project(tmp_path, target=target, use_cache=False)
    found = project_columns(project, ORDERS)
    assert found["s.py"].note == "a Python step: its columns cannot be traced"
    assert found["s.py"].columns == ()
    assert found["s.script"].note is not None
    assert "cannot be traced" in found["s.script"].note
    assert sources(found["s.copy"]) == {
        "id": {("raw.orders", "id")},
        "amount": {("raw.orders", "amount")},
    }


@unit
def test_a_table_a_sql_script_creates_is_a_leaf_that_says_so(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "s/setup.sql": "create table s.made (id int, name text);\n"
            "insert into s.made values (1, 'a');",
            "s/reader.sql": "select id, name as label from s.made",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    found = trace(project, "s.reader", "label")
    assert [(n.relation, n.column, n.kind) for n in found.walk()] == [
        ("s.reader", "label", "table"),
        ("s.made", "name", "sql"),
    ]
    assert found.sources[0].note == "created by s.setup, a SQL script: its columns cannot be traced"


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_an_incremental_model_with_its_watermark(tmp_path: Path, target: str | None) -> None:
    found = model_columns(
        tmp_path,
        """
        -- kind: incremental
        -- unique_key: id
        -- watermark: day
        select id, amount as total, day
        from raw.orders
        where {{ watermark }} is null or day >= {{ watermark }}
        """,
        target,
    )
    assert sources(found) == {
        "id": {("raw.orders", "id")},
        "total": {("raw.orders", "amount")},
        "day": {("raw.orders", "day")},
    }


THREE = {
    "raw/people.csv": "id,First_Name,city_id\n1,Ada,7\n",
    "staging/people.sql": """
        with p as (select * from raw.people)
        select *, "First_Name" || '!' as greeting from p
        """,
    "staging/cities.sql": "select id as city_id, name as city from raw.cities",
    "reporting/people.sql": """
        select people.id, greeting as hello, city
        from staging.people
        join cities using (city_id)
        """,
}


@unit
@pytest.mark.parametrize("target", DIALECTS)
def test_a_column_traced_across_three_models(tmp_path: Path, target: str | None) -> None:
    write_project(tmp_path, THREE)
    project = load_project(tmp_path, target=target, use_cache=False)
    found = project_columns(project, {"raw.cities": ("id", "name")})
    assert list(found) == list(project.order)
    # PostgreSQL keeps the seed's quoted name; DuckDB compares names without case
    first = "first_name" if project.dialect == "duckdb" else "First_Name"
    assert [c.name for c in found["staging.people"].columns] == [
        "id",
        first,
        "city_id",
        "greeting",
    ]
    assert sources(found["reporting.people"]) == {
        "id": {("staging.people", "id")},
        "hello": {("staging.people", "greeting")},
        "city": {("staging.cities", "city")},
    }
    hello = trace(project, "reporting.people", "hello", {"raw.cities": ("id", "name")})
    assert [(n.relation, n.column, n.kind) for n in hello.walk()] == [
        ("reporting.people", "hello", "table"),
        ("staging.people", "greeting", "table"),
        ("raw.people", "First_Name", "seed"),  # as the seed's header spells it
    ]
    city = trace(project, "reporting.people", "city")  # raw.cities unknown: a source leaf
    assert [(n.relation, n.column, n.kind) for n in city.walk()] == [
        ("reporting.people", "city", "table"),
        ("staging.cities", "city", "table"),
        ("raw.cities", "name", "source"),
    ]
    assert city.sources[0].sources[0].note is not None
    with pytest.raises(UsageError, match="has no column 'nope'") as raised:
        trace(project, "reporting.people", "nope")
    assert raised.value.hint == "its columns: id, hello, city"


@unit
def test_cli_lineage_of_a_column_as_text_and_json(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", THREE)
    target = f"duckdb:///{tmp_path / 'never_built.duckdb'}"
    code, out = cli("lineage", "reporting.people.hello", project=project, target=target)
    assert code == 0, out
    assert out.splitlines() == [
        "reporting.people.hello [table]",
        "└── staging.people.greeting [table]",
        "    └── raw.people.First_Name [seed]",
    ]
    # a bare model name (unambiguous: staging.cities) with a column
    code, out = cli("lineage", "cities.city", "--format", "json", project=project, target=target)
    assert code == 0, out
    payload = json.loads(out)
    assert payload["target_read"] is False
    assert "columns of sources are unknown" in payload["note"]
    city = payload["column"]
    assert (city["relation"], city["column"], city["kind"]) == ("staging.cities", "city", "table")
    assert city["sources"] == [
        {
            "relation": "raw.cities",
            "column": "name",
            "kind": "source",
            "note": "a relation no model produces; its columns are unknown here",
            "sources": [],
        }
    ]
    assert not (tmp_path / "never_built.duckdb").exists()  # reading lineage creates nothing
    # a model's name stays a model selector
    code, out = cli("lineage", "staging.people", project=project, target=target)
    assert code == 0 and "reporting.people [table]" in out


@unit
def test_cli_lineage_of_an_unknown_column(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", THREE)
    target = f"duckdb:///{tmp_path / 'never_built.duckdb'}"
    code, out = cli("lineage", "reporting.people.nope", project=project, target=target)
    assert code == 2
    assert "model reporting.people has no column 'nope'" in out
    assert "its columns: id, hello, city" in out
    code, out = cli(
        "lineage", "reporting.people.id", "--format", "dot", project=project, target=target
    )
    assert code == 2 and "use text or json" in out


def test_cli_lineage_reads_source_columns_from_the_target(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", THREE)
    target = f"duckdb:///{tmp_path / 'target.duckdb'}"
    session = open_target(target, project_dir=project).connect()
    try:
        session.execute("create schema raw")
        session.execute("create table raw.cities (id integer, name text)")
    finally:
        session.close()
    code, out = cli("lineage", "reporting.people.city", project=project, target=target)
    assert code == 0, out
    assert out.splitlines() == [
        "reporting.people.city [table]",
        "└── staging.cities.city [table]",
        "    └── raw.cities.name [source]",
    ]


@unit
def test_a_published_column_with_capitals_keeps_its_name_on_postgres(tmp_path: Path) -> None:
    write_project(
        tmp_path, {"staging/people.sql": 'select p.id, p."Amount" as a from raw.people p'}
    )
    project = load_project(tmp_path, target=PG, use_cache=False)
    found = project_columns(project, {"raw.people": ("id", "Amount")})
    assert sources(found["staging.people"]) == {
        "id": {("raw.people", "id")},
        "a": {("raw.people", "Amount")},
    }
