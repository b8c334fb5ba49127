"""Declaring sources in dbluigi.toml: parsing, errors with file/line/option, the graph,
selectors and plan reasons (no database needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbluigi.errors import DuplicateRelationError, ProjectError, SelectorError
from dbluigi.plan import (
    CONDITIONAL,
    NEW_ROWS,
    SOURCE_CHANGED,
    SOURCE_UNREADABLE,
    UPSTREAM,
    ModelState,
    make_plan,
)
from dbluigi.project import load_project
from dbluigi.selectors import select
from tests.helpers import write_project

pytestmark = pytest.mark.unit

URL = "mysql+pymysql://reader:s3cret@db.example:3306/shop"

SHOP = f"""
[project]
default_schema = "main"

[sources.shop]
url = "{URL}"
tables = ["customers", "products"]

[sources.crm]
url = "postgresql://reader:${{CRM_PASSWORD}}@crm-db/crm"
schema = "raw"

[sources.crm.tables.accounts]
mode = "incremental"
watermark = "updated_at"
unique_key = ["region", "id"]
where = "not is_test"
columns = ["region", "id", "name", "updated_at"]
column_types = {{ name = "text", score = "numeric(12,2)" }}
version_query = "select count(*), max(updated_at) from accounts"

[sources.crm.tables."sales.orders"]
"""


def project_with(tmp_path: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    return write_project(
        tmp_path / "p",
        {"dbluigi.toml": toml, "report.sql": "select 1 as x\n", **(files or {})},
    )


@pytest.fixture(autouse=True)
def _crm_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_PASSWORD", "pg-secret")


def test_tables_become_extract_models_in_the_graph(tmp_path: Path) -> None:
    root = project_with(
        tmp_path,
        SHOP,
        {
            "report.sql": "select c.id from shop.customers c join raw.accounts a on a.id = c.id\n",
            "shop/customers.check.sql": "select * from shop.customers where id is null\n",
        },
    )
    project = load_project(root)
    extracts = {r: m for r, m in project.models.items() if m.kind == "extract"}
    assert set(extracts) == {"shop.customers", "shop.products", "raw.accounts", "raw.orders"}
    accounts = project.config.source_tables["raw.accounts"]
    assert accounts.mode == "incremental" and accounts.unique_key == ("region", "id")
    assert accounts.columns == ("region", "id", "name", "updated_at")
    assert dict(accounts.column_types) == {"name": "text", "score": "numeric(12,2)"}
    assert accounts.url == "postgresql://reader:pg-secret@crm-db/crm"  # ${ENV} filled in
    assert accounts.display_url == "postgresql://reader:***@crm-db/crm"
    assert project.config.source_tables["raw.orders"].table == "sales.orders"
    # where a model of each table lives, for errors
    assert extracts["raw.accounts"].path == "dbluigi.toml"
    assert extracts["raw.accounts"].header.line_of("kind") == 12
    assert extracts["shop.products"].header.line_of("kind") == 6  # the tables = line
    # readers are downstream of the copy; the check file gates it
    assert project.graph.parents("main.report") == frozenset({"shop.customers", "raw.accounts"})
    assert [c.owner for c in project.gated_checks("shop.customers")] == ["shop.customers"]
    assert "shop.customers" not in project.sources
    # the definition (what the fingerprint hashes) never holds a password
    assert all("secret" not in m.text for m in extracts.values())


def test_source_selectors_pick_the_copy_tasks(tmp_path: Path) -> None:
    root = project_with(tmp_path, SHOP, {"report.sql": "select * from shop.customers\n"})
    project = load_project(root)
    assert select(project, ["source:shop.customers"]) == ("shop.customers",)
    assert select(project, ["source:crm.accounts"]) == ("raw.accounts",)
    assert set(select(project, ["source:shop"])) == {"shop.customers", "shop.products"}
    assert select(project, ["source:shop.customers+"]) == ("shop.customers", "main.report")
    assert select(project, ["source:raw.accounts"]) == ("raw.accounts",)
    with pytest.raises(SelectorError) as info:
        select(project, ["source:shop.customer"])
    assert "matches no source table" in str(info.value)
    assert "shop.customers" in str(info.value)  # closest match


@pytest.mark.parametrize(
    ("toml", "line", "message"),
    [
        ('[sources.shop]\ntables = ["a"]\n', 1, "[sources.shop] has no url"),
        (
            '[sources.shop]\nurl = "oracle://x@y/z"\ntables = ["a"]\n',
            2,
            "url 'oracle://x@y/z' is not a database dbluigi reads from",
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\ntabels = ["a"]\n',
            3,
            "unknown key 'tabels' in [sources.shop]",
        ),
        (f'[sources.shop]\nurl = "{URL}"\n', 1, "[sources.shop] declares no tables"),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\nmode = "incrementl"\n',
            5,
            '[sources.shop.tables.orders] mode = \'incrementl\': expected "full" or "incremental"',
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\nmode = "incremental"\n'
            'unique_key = "id"\n',
            5,
            'is mode = "incremental" and needs watermark',
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\nwatermark = "ts"\n',
            5,
            'watermark: only an incremental copy uses it, and this one is mode = "full"',
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\nwhere = "a = 1; drop table x"\n',
            5,
            "where = 'a = 1; drop table x' is not one condition in mysql SQL",
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\n'
            'version_query = "select 1; delete from orders"\n',
            5,
            "version_query must be one query (SELECT ...)",
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\n'
            'version_query = "update orders set a = 1"\n',
            5,
            "version_query must be one query (SELECT ...)",
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\n'
            'column_types = { a = "varchar" }\n',
            5,
            "column_types: column 'a' has unknown type 'varchar'",
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\nmode = "incremental"\n'
            'watermark = "ts"\nunique_key = "id"\ncolumns = ["id", "name"]\n',
            8,
            "watermark 'ts' is not among columns",
        ),
        (
            f'[sources.shop]\nurl = "{URL}"\nschema = "dbluigi"\ntables = ["a"]\n',
            3,
            "schema 'dbluigi' holds dbluigi's state",
        ),
        (  # unset, but its scheme is written out: no engine dbluigi reads from, whatever it is
            '[sources.shop]\nurl = "oracle://u:${NOT_SET_ANYWHERE}@h/db"\ntables = ["a"]\n',
            2,
            "url 'oracle://u:***@h/db' is not a database dbluigi reads from",
        ),
        (
            f'[sources.a]\nurl = "{URL}"\nschema = "x"\ntables = ["t"]\n\n'
            f'[sources.b]\nurl = "{URL}"\nschema = "x"\ntables = ["t"]\n',
            9,
            "[sources.b] t and [sources.a] t both copy into x.t",
        ),
    ],
)
def test_bad_declarations_name_file_line_and_option(
    tmp_path: Path, toml: str, line: int, message: str
) -> None:
    root = project_with(tmp_path, toml)
    with pytest.raises(ProjectError) as info:
        load_project(root)
    assert info.value.path == "dbluigi.toml"
    assert info.value.line == line, str(info.value)
    assert message in str(info.value)
    assert "s3cret" not in str(info.value)


def test_a_misspelt_option_suggests_the_right_one(tmp_path: Path) -> None:
    root = project_with(
        tmp_path,
        f'[sources.shop]\nurl = "{URL}"\n\n[sources.shop.tables.orders]\nwatermak = "ts"\n',
    )
    with pytest.raises(ProjectError) as info:
        load_project(root)
    assert info.value.line == 5
    assert "did you mean 'watermark'?" in str(info.value)


def test_a_file_and_a_source_table_of_the_same_relation_conflict(tmp_path: Path) -> None:
    toml = f'[sources.shop]\nurl = "{URL}"\ntables = ["customers"]\n'
    root = project_with(tmp_path, toml, {"shop/customers.csv": "id\n1\n"})
    with pytest.raises(DuplicateRelationError) as info:
        load_project(root)
    assert "shop/customers.csv and the source table declared in dbluigi.toml" in str(info.value)
    assert info.value.line == 3


def test_a_project_of_source_tables_only_loads(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p", {"dbluigi.toml": f'[sources.shop]\nurl = "{URL}"\ntables = ["a"]\n'}
    )
    assert list(load_project(root).models) == ["shop.a"]


def test_plan_says_source_changed_and_readers_follow(tmp_path: Path) -> None:
    root = project_with(tmp_path, SHOP, {"report.sql": "select * from raw.accounts\n"})
    project = load_project(root)
    selected = ("raw.accounts", "main.report")
    existing = {("raw", "accounts"), ("main", "report")}
    first = make_plan(project, selected, {}, existing, source_versions={"raw.accounts": "[[3]]"})
    state = {
        m: ModelState(m, d.fingerprint, d.content_fp, d.build_id, 1)
        for m, d in first.decisions.items()
    }
    same = make_plan(project, selected, state, existing, source_versions={"raw.accounts": "[[3]]"})
    # an incremental copy looks for new rows all the same; its reader waits to see
    assert same.decisions["raw.accounts"].reason == NEW_ROWS
    assert same.decisions["raw.accounts"].tentative
    assert same.decisions["main.report"].reason == CONDITIONAL
    reloaded = make_plan(
        project, selected, state, existing, source_versions={"raw.accounts": "[[4]]"}
    )
    assert reloaded.decisions["raw.accounts"].reason == SOURCE_CHANGED
    assert reloaded.decisions["main.report"].reason == UPSTREAM
    unreadable = make_plan(
        project, selected, state, existing, source_versions={"raw.accounts": None}
    )
    assert unreadable.decisions["raw.accounts"].reason == SOURCE_UNREADABLE
