"""The example projects under examples/ build, and behave as their README section says."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.buildkit import ROOT, build_json, cli, query, ran, statuses

EXAMPLES = ROOT / "examples"


def copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(
        EXAMPLES / name, dest, ignore=shutil.ignore_patterns(".dbluigi", "exports", "__pycache__")
    )
    return dest


def all_succeeded(payload: dict[str, object]) -> bool:
    """Everything that ran succeeded (the rest was up to date), and something ran."""
    found = set(statuses(payload).values())
    return "success" in found and found <= {"success", "up to date"}


# -- staging: CREATE TABLE files, YAML lookups, procedures, a Python cleanup -------------


@pytest.mark.postgres
def test_staging_builds_a_schema_named_by_a_variable(tmp_path: Path, pg_url: str) -> None:
    project = copy("staging", tmp_path)
    code, dev = build_json("--var", "schema=staging_dev", project=project, target=pg_url)
    assert code == 0 and all_succeeded(dev), dev
    code, prod = build_json(project=project, target=pg_url)  # [vars] schema = "staging"
    assert code == 0 and all_succeeded(prod), prod
    for schema in ("staging_dev", "staging"):
        customers = query(
            pg_url,
            project,
            f"select customer_ref, full_name, search_name, country_code, phone "
            f"from {schema}.customers order by customer_ref",
        )
        assert len(customers) == 6
        assert customers[0] == ("C-0001", "Zoë Dubois", "zoe dubois", "FR", "+33123456789")
        assert customers[3][2:] == ("jose angel garcia", "ES", None)
        assert query(pg_url, project, f"select count(*) from {schema}.countries") == [(5,)]
        assert query(pg_url, project, f"select {schema}.normalize_phone('(030) 12-34')") == [
            ("0301234",)
        ]
    # the modifiers of staging.customers (fixes/): a PII scrub and a correction
    assert query(
        pg_url, project, "select customer_ref from staging.customers where phone is null"
    ) == [("C-0004",), ("C-0006",)]
    assert query(
        pg_url,
        project,
        "select signed_up_on::text from staging.customers where customer_ref = 'C-0003'",
    ) == [("2023-05-21",)]

    # a procedure edit re-creates it and replays the build of the table its caller loads
    procedures = project / "setup" / "procedures.sql"
    procedures.write_text(
        procedures.read_text().replace("btrim(full_name)", "upper(btrim(full_name))")
    )
    code, edited = build_json(project=project, target=pg_url)
    assert code == 0, edited
    assert ran(edited) == {
        "setup.procedures",
        "setup.create_customers",  # staging.customers: its producer, then every modifier
        "setup.load_customers",
        "setup.clean_customers",
        "fixes.scrub_closed_phones",
        "fixes.correct_signup_date",
    }
    assert query(
        pg_url,
        project,
        "select full_name, search_name from staging.customers where customer_ref = 'C-0002'",
    ) == [("JÜRGEN MÜLLER", "jurgen muller")]


# -- orders: a store upserted incrementally, presentation tables, a CSV export -------------

STORE = (
    "companies",
    "customers",
    "products",
    "product_prices",
    "order_headers",
    "order_lines",
)
KEYS = {
    "companies": "company_id",
    "customers": "customer_id",
    "products": "product_id",
    "product_prices": "product_id, valid_from",
    "order_headers": "order_id",
    "order_lines": "order_id, line_no",
}


def edit_csv(path: Path, change: dict[str, dict[str, str]], add: list[dict[str, str]]) -> None:
    """Update rows (by their first column) and append rows to a seed CSV."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    for row in rows:
        row.update(change.get(row[fields[0]], {}))
    rows.extend(add)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_orders_store_takes_changed_and_new_rows_without_duplicates(
    tmp_path: Path, target_url: str
) -> None:
    project = copy("orders", tmp_path)
    code, first = build_json(project=project, target=target_url)
    assert code == 0 and all_succeeded(first), first
    assert len(first["tasks"]) == 15
    before = query(target_url, project, "select count(*) from store.order_lines")[0][0]
    assert before == 40
    export = project / "exports" / "monthly_sales.csv"
    assert export.read_text().splitlines()[0] == "month,company_name,orders,lines,revenue"

    raw = project / "raw"
    later = "2024-05-02 09:30:00"
    edit_csv(raw / "companies.csv", {"3": {"name": "Cortex Labs GmbH", "updated_at": later}}, [])
    edit_csv(
        raw / "order_headers.csv",
        {"5002": {"status": "cancelled", "updated_at": later}},
        [
            {
                "order_id": "5015",
                "customer_id": "201",
                "order_date": "2024-05-02",
                "status": "open",
                "created_at": later,
                "updated_at": later,
                "is_deleted": "false",
            }
        ],
    )
    # order_lines are keyed by (order_id, line_no): change 5001/2, soft-delete 5001/3
    path = raw / "order_lines.csv"
    with path.open(newline="") as f:
        lines = list(csv.DictReader(f))
    for line in lines:
        if (line["order_id"], line["line_no"]) == ("5001", "2"):
            line.update(quantity="7", updated_at=later)
        if (line["order_id"], line["line_no"]) == ("5001", "3"):
            line.update(is_deleted="true", updated_at=later)
    lines += [
        {
            "order_id": "5015",
            "line_no": str(n),
            "product_id": str(n),
            "quantity": "2",
            "discount_pct": "0",
            "created_at": later,
            "updated_at": later,
            "is_deleted": "false",
        }
        for n in (1, 2)
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(lines[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(lines)

    code, second = build_json(project=project, target=target_url)
    assert code == 0 and all_succeeded(second), second
    upserted = {r["model"]: r["rows"] for r in second["tasks"] if r["model"].startswith("store.")}
    # only what changed since the watermark (plus rows at the watermark itself) travels
    assert upserted["store.order_lines"] < 10 and upserted["store.companies"] < 4
    for table in STORE:
        duplicates = query(
            target_url,
            project,
            f"select {KEYS[table]}, count(*) from store.{table} "
            f"group by {KEYS[table]} having count(*) > 1",
        )
        assert duplicates == [], table
        # every update is reflected: the store holds exactly the source
        for a, b in (("raw", "store"), ("store", "raw")):
            diff = query(
                target_url,
                project,
                f"select count(*) from (select * from {a}.{table} except select * from {b}.{table}) as d",
            )
            assert diff == [(0,)], (table, a, b)
    assert query(target_url, project, "select count(*) from store.order_lines")[0][0] == 42
    report = query(
        target_url,
        project,
        "select order_id, line_no, quantity, company_name, order_status "
        "from presentation.report_order_lines where order_id in (5001, 5015) order by 1, 2",
    )
    assert [tuple(r)[:3] for r in report] == [
        (5001, 1, 1),
        (5001, 2, 7),
        (5015, 1, 2),
        (5015, 2, 2),
    ]
    assert (
        query(
            target_url,
            project,
            "select count(*) from presentation.report_order_lines where company_name = 'Cortex Labs GmbH'",
        )[0][0]
        > 0
    )
    assert "2024-05-01," in export.read_text()

    # nothing new: the incremental store models look for new rows and find none, so
    # nothing reading them builds
    code, third = build_json(project=project, target=target_url)
    assert code == 0 and ran(third) == {f"store.{t}" for t in STORE}, third
    assert {r["rows"] for r in third["tasks"] if r["status"] == "success"} == {0}


# -- lab: a recursive CTE and a dynamic pivot in Python ------------------------------------


def test_lab_roots_and_a_pivot_that_grows_a_column(tmp_path: Path, target_url: str) -> None:
    project = copy("lab", tmp_path)
    code, first = build_json(project=project, target=target_url)
    assert code == 0 and all_succeeded(first), first
    lineage = query(
        target_url, project, "select sample_id, root_id, depth from lab.sample_lineage order by 1"
    )
    assert [tuple(r) for r in lineage][:5] == [
        (1, 1, 0),
        (2, 1, 1),
        (3, 1, 1),
        (4, 1, 2),
        (5, 1, 3),
    ]
    columns = _columns(target_url, project)
    assert columns == [
        "sample_id",
        "name",
        "root_id",
        "depth",
        "conductivity_us_cm",
        "nitrate_mg_l",
        "ph",
    ]
    assert query(
        target_url,
        project,
        "select nitrate_mg_l, ph from lab.experiment_measurements where sample_id = 4",
    ) == [(pytest.approx(12.4), pytest.approx(6.9))]

    # a measurement type that appears in the data adds a column on the next build
    with (project / "raw" / "sample_measurements.csv").open("a") as f:
        f.write("3,organic_carbon_pct,2.4\n")
    code, second = build_json(project=project, target=target_url)
    assert code == 0 and ran(second) == {"raw.sample_measurements", "lab.experiment_measurements"}
    assert _columns(target_url, project)[-2:] == ["organic_carbon_pct", "ph"]

    # a sample whose parent is missing has no root: the check stops the publish
    with (project / "raw" / "samples.csv").open("a") as f:
        f.write("11,99,orphan aliquot,2024-03-08\n")
    code, third = build_json(project=project, target=target_url)
    assert code == 1
    failed = {r["model"]: r for r in third["tasks"] if r["status"] == "failed"}
    assert failed["lab.sample_lineage"]["failure_class"] == "check"
    assert failed["lab.sample_lineage"]["file"] == "lab/sample_lineage.check.sql"
    assert "11" in failed["lab.sample_lineage"]["error"]
    assert query(target_url, project, "select count(*) from lab.sample_lineage") == [(10,)]


def _columns(target: str, project: Path) -> list[str]:
    from dbluigi.targets import open_target

    session = open_target(target, project_dir=project).connect()
    try:
        return list(session.columns("lab", "experiment_measurements"))
    finally:
        session.close()


def test_every_example_is_covered() -> None:
    # sources_demo needs MariaDB: built by tests/test_examples_sources.py
    examples = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert examples == ["from_dbt", "lab", "orders", "sources_demo", "staging"]
    code, output = cli("lineage", project=EXAMPLES / "lab", target="duckdb:///unused.duckdb")
    assert code == 0 and "lab.experiment_measurements [python]" in output


# -- from_dbt: the README's "Coming from dbt" conversion --------------------------------


def test_from_dbt_builds_as_the_dbt_project_did(tmp_path: Path, target_url: str) -> None:
    project = copy("from_dbt", tmp_path)
    code, payload = build_json(project=project, target=target_url)
    assert code == 0 and all_succeeded(payload), payload
    rows = query(
        target_url,
        project,
        "select customer_id, number_of_orders, lifetime_value from marts.customers "
        "order by customer_id",
    )
    # order 5 predates min_order_date: dbt's var, a dbluigi variable
    assert [(int(c), int(n), float(v)) for c, n, v in rows] == [
        (1, 2, 15.0),
        (2, 1, 7.25),
        (3, 1, 20.5),
    ]
    # dbt's accepted_values test is a check query: an unknown status stops the swap
    with (project / "raw" / "orders.csv").open("a") as f:
        f.write("6,2,2018-01-06,lost,1.00\n")
    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    assert statuses(payload)["staging.stg_orders"] == "failed"
    assert statuses(payload)["marts.customers"] == "skipped"
    assert query(target_url, project, "select count(*) from staging.stg_orders") == [(4,)]


# -- unit tests of the examples' models (dbluigi test, issue 19) ------------------------


@pytest.mark.parametrize("name", ["lab", "orders", "from_dbt", "sources_demo/project"])
def test_the_examples_unit_tests_pass(tmp_path: Path, name: str) -> None:
    project = copy(name, tmp_path)
    code, output = cli("test", project=project, target=f"duckdb:///{tmp_path / 'unused.duckdb'}")
    assert code == 0, output
    assert " 0 failed" in output and " passed" in output
    assert not (tmp_path / "unused.duckdb").exists()  # unit tests never touch the target
