"""``dbluigi docs`` and ``lineage --format html``: what the site's data holds, with and
without a reachable target (the browser tests in test_docs_browser.py look at the pages)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dbluigi.docs.layout import layout
from tests.buildkit import cli, copy_example, query
from tests.helpers import write_project
from tests.test_damage import _damage

FAILING_CHECK = (
    "-- agencies of Texas are not expected yet: the check returns them\n"
    "select agency_id, state_abbr from staging.agencies where state_abbr = 'TX'\n"
)


def site_data(folder: Path) -> dict[str, Any]:
    """The document the site's script renders, as ``data.js`` holds it."""
    text = (folder / "data.js").read_text(encoding="utf-8")
    assert text.startswith("window.DBLUIGI_DATA = ")
    return json.loads(text[len("window.DBLUIGI_DATA = ") :].rstrip().rstrip(";"))


def built_with_a_failure(tmp_path: Path, target: str) -> Path:
    """The example project built once, then again with a check of staging.agencies that
    returns rows (its swap is refused, its readers are skipped)."""
    project = copy_example(tmp_path)
    code, out = cli("build", project=project, target=target)
    assert code == 0, out
    (project / "staging" / "texas.check.sql").write_text(FAILING_CHECK)
    (project / "staging" / "agencies.check.sql").rename(project / "staging" / "kept.check")
    (project / "staging" / "texas.check.sql").rename(project / "staging" / "agencies.check.sql")
    code, out = cli("build", project=project, target=target)
    assert code == 1, out
    return project


@pytest.mark.unit
def test_layout_puts_every_node_right_of_its_parents() -> None:
    order = ["a", "b", "c", "d", "e"]
    parents = {"c": ["a", "b"], "d": ["c"], "e": ["a"]}
    at = layout(order, parents)
    assert at["a"].column == at["b"].column == 0
    assert at["c"].column == 1 and at["e"].column == 1 and at["d"].column == 2
    for child, ups in parents.items():
        assert all(at[p].x < at[child].x for p in ups)
    rows = [(p.column, p.row) for p in at.values()]
    assert len(rows) == len(set(rows))  # no two nodes on one spot
    assert layout(order, parents) == at  # the same picture every time


def test_docs_shows_structure_and_records(tmp_path: Path, target_url: str) -> None:
    project = built_with_a_failure(tmp_path, target_url)
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=project, target=target_url)
    assert code == 0, output
    assert (out / "index.html").is_file() and (out / "docs.js").is_file()
    data = site_data(out)
    assert data["recorded"] is True and data["note"] is None
    ids = [n["id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids)) == 12
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["staging.agencies"]["status"] == "failed"
    assert nodes["raw.agencies"]["status"] == "success"
    assert nodes["api.cde_agencies"]["status"] == "skipped"

    page = data["models"]["reporting.agency_reporting"]
    assert page["description"].startswith("Months of offense data")
    assert "-- check: rows > 0" in page["headers"]
    assert "from raw.offense_monthly as m" in page["written"]
    columns = {c["name"]: c for c in page["columns"]}
    assert list(columns) == [
        "agency_id",
        "data_year",
        "state_abbr",
        "months_reported",
        "reported_all_months",
    ]
    assert columns["state_abbr"]["sources"] == [
        {"relation": "staging.agencies", "column": "state_abbr"}
    ]
    assert columns["months_reported"]["sources"] == [
        {"relation": "raw.offense_monthly", "column": "month_num"}
    ]
    assert columns["agency_id"]["type"].lower() in ("bigint", "integer")
    assert columns["reported_all_months"]["type"].lower() == "boolean"
    assert page["upstream"] == ["raw.offense_monthly", "staging.agencies"]
    assert page["downstream"] == ["api.cde_agencies", "api.offense_annual"]
    # first built, then skipped when staging.agencies failed: newest first
    assert [b["status"] for b in page["builds"]] == ["skipped", "success"]
    assert page["builds"][1]["rows"] > 0
    assert [c["last"]["status"] for c in page["checks"]] == ["passed"] * 3

    staging = data["models"]["staging.agencies"]
    check = next(c for c in staging["checks"] if c["kind"] == "sql")
    assert check["file"] == "staging/agencies.check.sql" and check["line"] == 1
    assert check["last"]["status"] == "failed"
    assert staging["builds"][0]["failure_class"] == "check"
    assert staging["modifiers"] == [] and staging["producer"] is None

    latest, first = data["runs"]
    assert latest["status"] == "failed" and first["status"] == "success"
    failed = [t for t in latest["tasks"] if t["status"] == "failed"]
    assert [t["model"] for t in failed] == ["staging.agencies"]
    assert "first violating rows" in failed[0]["error"]
    assert re.search(r"\| TX\b", failed[0]["error"])
    assert all(t["worker"] for t in latest["tasks"] if t["status"] != "skipped")


def test_docs_without_a_reachable_target_shows_structure_only(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    out = tmp_path / "site"
    closed = "postgresql://root@127.0.0.1:9/nothing"  # nothing listens on port 9
    code, output = cli("docs", "--out", str(out), project=project, target=closed)
    assert code == 0, output
    data = site_data(out)
    assert data["recorded"] is False
    assert "not reachable" in data["note"] and "127.0.0.1:9" in data["note"]
    assert "structure only" in output
    assert len(data["nodes"]) == 12 and data["runs"] == []
    page = data["models"]["reporting.agency_reporting"]
    assert page["builds"] == [] and page["state"] is None
    # columns traced from the SQL alone, with no type (nothing published was read)
    state_abbr = next(c for c in page["columns"] if c["name"] == "state_abbr")
    assert state_abbr["type"] is None
    assert state_abbr["sources"] == [{"relation": "staging.agencies", "column": "state_abbr"}]


def test_docs_on_a_duckdb_never_built_creates_nothing(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    target = f"duckdb:///{tmp_path / 'none.duckdb'}"
    code, output = cli("docs", project=project, target=target)
    assert code == 0, output
    assert not (tmp_path / "none.duckdb").exists()
    data = site_data(project / ".dbluigi" / "docs")
    assert "nothing built yet" in data["note"]


def test_docs_with_variables_unset_names_them(tmp_path: Path, duckdb_url: str) -> None:
    write_project(
        tmp_path / "p",
        {"m/a.sql": "select 1 as id where 1 = {{ limit }}", "m/b.sql": "select id from a"},
    )
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=tmp_path / "p", target=duckdb_url)
    assert code == 0, output
    assert "limit" in output
    page = site_data(out)["models"]["m.a"]
    assert "{{ limit }}" in page["written"]
    assert "dbluigi_unset_limit" in page["rendered"]


def test_docs_shows_a_file_written_with_a_bom_without_it(tmp_path: Path, duckdb_url: str) -> None:
    write_project(tmp_path / "p", {"m/a.sql": b"\xef\xbb\xbf-- description: x\nselect 1 as id\n"})
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=tmp_path / "p", target=duckdb_url)
    assert code == 0, output
    assert site_data(out)["models"]["m.a"]["written"].startswith("-- description: x\n")


def test_docs_refuses_an_out_that_is_a_file(tmp_path: Path, duckdb_url: str) -> None:
    project = copy_example(tmp_path)
    (tmp_path / "file").write_text("x")
    code, output = cli("docs", "--out", str(tmp_path / "file"), project=project, target=duckdb_url)
    assert code == 2
    assert "is a file" in output


def test_docs_says_when_it_cannot_write_into_out(tmp_path: Path, duckdb_url: str) -> None:
    project = copy_example(tmp_path)
    (tmp_path / "file").write_text("x")
    under_a_file = tmp_path / "file" / "site"
    code, output = cli("docs", "--out", str(under_a_file), project=project, target=duckdb_url)
    assert code == 2, output
    assert f"--out {under_a_file}: cannot write there" in " ".join(output.split())
    assert "Traceback" not in output and "NotADirectoryError" not in output
    # a folder it may create, holding a folder where the site writes a file
    (tmp_path / "site" / "index.html").mkdir(parents=True)
    code, output = cli("docs", "--out", str(tmp_path / "site"), project=project, target=duckdb_url)
    assert code == 2, output
    assert "index.html" in output and "Traceback" not in output


def test_a_value_cannot_close_the_script(tmp_path: Path, duckdb_url: str) -> None:
    write_project(
        tmp_path / "p",
        {"m/a.sql": "-- description: ends </script><script>alert(1)</script>\nselect 1 as id"},
    )
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=tmp_path / "p", target=duckdb_url)
    assert code == 0, output
    assert "</script>" not in (out / "data.js").read_text()
    assert site_data(out)["models"]["m.a"]["description"].startswith("ends </script>")


@pytest.mark.unit
def test_lineage_html_is_one_file_with_nothing_to_fetch(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    code, html = cli("lineage", "--format", "html", project=project, target="duckdb")
    assert code == 0
    assert html.lstrip().startswith("<!doctype html>")
    assert "window.DBLUIGI_DATA" in html and "<style>" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script src=" not in html and "<link " not in html
    text = html[html.index("window.DBLUIGI_DATA = ") + len("window.DBLUIGI_DATA = ") :]
    data = json.loads(text[: text.index(";\n</script>")])
    assert len(data["nodes"]) == 12 and "models" not in data


@pytest.mark.unit
def test_lineage_html_of_a_selection(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    code, html = cli(
        "lineage", "api.offense_annual", "--format", "html", project=project, target="duckdb"
    )
    assert code == 0
    ids = set(re.findall(r'"id":"([^"]+)"', html))
    assert "api.offense_annual" in ids and "reporting.agency_reporting" in ids
    assert "api.cde_agencies" not in ids


def test_docs_serve_serves_the_site(tmp_path: Path) -> None:
    import subprocess
    import sys
    import urllib.request

    project = copy_example(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "dbluigi", "docs", "--serve", "--port", "0"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert lines[0].startswith("wrote "), lines
        url = re.search(r"http://127\.0\.0\.1:\d+/", lines[1])
        assert url, lines
        with urllib.request.urlopen(url.group(0), timeout=10) as response:
            assert b'<script src="docs.js">' in response.read()
        with urllib.request.urlopen(url.group(0) + "data.js", timeout=10) as response:
            assert b"reporting.agency_reporting" in response.read()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_check_results_follow_their_query_not_its_line(tmp_path: Path, duckdb_url: str) -> None:
    root = tmp_path / "p"
    first = "select id from m.a where id > 1"  # fails: a has ids 1 and 2
    second = "select id from m.a where id < 0"  # passes
    write_project(
        root,
        {
            "m/a.sql": "select 1 as id union all select 2",
            "m/a.check.sql": f"{first};\n{second};\n",
        },
    )
    code, output = cli("build", project=root, target=duckdb_url)
    assert code == 1, output
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=root, target=duckdb_url)
    checks = {c["text"].strip(): c for c in site_data(out)["models"]["m.a"]["checks"]}
    assert checks[first]["last"]["status"] == "failed"
    assert checks[second]["last"]["status"] == "passed"
    # the queries swap places (no build since): neither result is shown against the other
    (root / "m" / "a.check.sql").write_text(f"{second};\n{first};\n")
    code, output = cli("docs", "--out", str(out), project=root, target=duckdb_url)
    assert code == 0, output
    checks = {c["text"].strip(): c for c in site_data(out)["models"]["m.a"]["checks"]}
    assert checks[first]["last"] is None and checks[second]["last"] is None


def test_docs_reads_an_older_state_without_migrating_it(tmp_path: Path, target_url: str) -> None:
    project = copy_example(tmp_path)
    code, output = cli("build", project=project, target=target_url)
    assert code == 0, output
    # the state as dbluigi of schema version 2 left it: no task_runs.worker
    _damage(
        target_url,
        project,
        [
            "alter table dbluigi.task_runs drop column worker",
            "update dbluigi.meta set value = '2' where key = 'schema_version'",
        ],
    )
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=project, target=target_url)
    assert code == 0, output
    data = site_data(out)
    assert data["recorded"] is True
    assert data["runs"][0]["tasks"][0]["worker"] == ""
    assert query(target_url, project, "select value from dbluigi.meta") == [("2",)]


@pytest.mark.postgres
def test_postgres_types_are_shown_as_declared(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "p"
    write_project(
        root,
        {"m/a.sql": "select 1.5::numeric(10, 2) as x, 'a'::varchar(20) as y, array[1] as z"},
    )
    code, output = cli("build", project=root, target=pg_url)
    assert code == 0, output
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=root, target=pg_url)
    assert code == 0, output
    columns = site_data(out)["models"]["m.a"]["columns"]
    assert [(c["name"], c["type"]) for c in columns] == [
        ("x", "numeric(10,2)"),
        ("y", "character varying(20)"),
        ("z", "integer[]"),
    ]


@pytest.mark.unit
def test_no_value_can_change_how_the_single_page_parses(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_project(root, {"m/a.sql": "-- description: <!--<script> and </script>\nselect 1 as id"})
    code, html = cli("lineage", "--format", "html", project=root, target="duckdb")
    assert code == 0
    data = html[html.index("window.DBLUIGI_DATA") : html.index("</script>")]
    assert "<" not in data


def test_the_rendered_sql_on_a_dev_target_names_dev_relations(tmp_path: Path) -> None:
    """On a target that builds schemas elsewhere the site shows each model's SQL as that
    target runs it: a query copied from the dev site reads dev's tables, not prod's,
    whether the file names them with their schema or without (the default schema)."""
    project = write_project(
        tmp_path / "p",
        {
            "dbluigi.toml": '[targets.dev]\nurl = "duckdb:///'
            + str(tmp_path / "dev.duckdb")
            + '"\nschema_suffix = "_dev"\n',
            "top.csv": "id\n1\n",
            "raw/x.csv": "id\n1\n",
            "staging/a.sql": "-- tags: t\nselect id\nfrom raw.x  -- raw.x stays in a comment\n",
            "staging/b.sql": "select 'raw.x' as said, a.id from staging.a join top using (id)",
        },
    )
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=project, target="dev")
    assert code == 0, output
    pages = site_data(out)["models"]
    a, b = pages["staging_dev.a"]["rendered"], pages["staging_dev.b"]["rendered"]
    assert "FROM raw_dev.x" in a and "raw.x stays in a comment" in a and "tags: t" in a
    assert "'raw.x' AS said" in b
    assert "FROM staging_dev.a" in b and "JOIN main_dev.top" in b
    assert "from raw.x" in pages["staging_dev.a"]["written"]  # the file, as written
    code, output = cli("docs", "--out", str(out), project=project, target="duckdb")
    assert code == 0, output
    page = site_data(out)["models"]["staging.a"]  # a target that moves nothing: the file
    assert page["rendered"] == "-- tags: t\nselect id\nfrom raw.x  -- raw.x stays in a comment\n"
