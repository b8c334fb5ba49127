"""A source's credentials are needed only to connect to it: with the ``${VAR}`` of its url
unset, the project loads, ``plan``, ``lineage`` and ``history`` run, and only the tasks
copying from it fail (class ``config``, naming dbluigi.toml and the url's line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbluigi.errors import ProjectError, TaskError
from dbluigi.plan import SOURCE_UNKNOWN
from dbluigi.project import load_project
from dbluigi.sources import ready
from dbluigi.sources.config import resolve
from tests.buildkit import build_json, cli, query, statuses
from tests.helpers import write_project
from tests.sourcekit import create_items

VAR = "DBLUIGI_TEST_SOURCE_URL"
UNKNOWN = f"{SOURCE_UNKNOWN}: {VAR} is not set"
MESSAGE = f"environment variable {VAR} is not set (used by [sources.src] url)"
PG = "postgresql://reader:s3cret@db.example:5432/shop"
MARIA = "mysql+pymysql://reader:s3cret@db.example:3306/shop"

TOML = f"""[project]
default_schema = "main"

[sources.src]
url = "${{{VAR}}}"
tables = ["items"]
"""
URL_LINE = 5


def write(tmp_path: Path, toml: str = TOML) -> Path:
    return write_project(
        tmp_path / "project",
        {
            "dbluigi.toml": toml,
            "alone.sql": "select 1 as x\n",
            "counted.sql": "select count(*) as n from src.items\n",
        },
    )


@pytest.fixture(autouse=True)
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)


@pytest.mark.unit
def test_a_project_loads_with_its_source_url_unset(tmp_path: Path) -> None:
    table = load_project(write(tmp_path)).config.source_tables["src.items"]
    assert table.engine is None and not table.resolved
    with pytest.raises(ProjectError) as info:
        resolve(table)
    assert str(info.value.message) == MESSAGE
    assert (info.value.path, info.value.line) == ("dbluigi.toml", URL_LINE)
    assert info.value.hint == f"export {VAR}=... before running dbluigi"
    with pytest.raises(TaskError) as task:  # what a task connecting to it fails with
        ready(table)
    assert task.value.failure_class == "config"
    assert (task.value.message, task.value.line) == (MESSAGE, URL_LINE)


@pytest.mark.unit
def test_once_set_the_url_is_filled_in_and_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = load_project(write(tmp_path)).config.source_tables["src.items"]
    monkeypatch.setenv(VAR, PG)
    filled = resolve(table)
    assert (filled.engine, filled.dialect, filled.url) == ("postgresql", "postgres", PG)
    assert filled.display_url == "postgresql://reader:***@db.example:5432/shop"
    assert filled.resolved and resolve(filled) is filled
    # set when the project loads: filled in at once, as before
    loaded = load_project(write(tmp_path / "again")).config.source_tables["src.items"]
    assert loaded.resolved and loaded.url == PG


@pytest.mark.unit
def test_a_written_scheme_gives_the_engine_before_the_password_is_set(tmp_path: Path) -> None:
    toml = TOML.replace(f"${{{VAR}}}", f"postgresql://reader:${{{VAR}}}@db.example/shop")
    table = load_project(write(tmp_path, toml)).config.source_tables["src.items"]
    assert table.engine == "postgresql" and not table.resolved
    assert "s3cret" not in table.display_url
    with pytest.raises(ProjectError) as info:
        resolve(table)
    assert (info.value.message, info.value.line) == (MESSAGE, URL_LINE)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sqlite:///x.db", "url 'sqlite:///x.db' is not a database dbluigi reads from"),
        ("postgresql://u@h:port/db", "is not a valid URL (the port 'port' is not a number)"),
    ],
)
def test_a_url_set_but_invalid_still_fails_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv(VAR, value)
    with pytest.raises(ProjectError) as info:
        load_project(write(tmp_path))
    assert message in str(info.value)
    assert (info.value.path, info.value.line) == ("dbluigi.toml", URL_LINE)


@pytest.mark.unit
def test_where_and_version_query_wait_for_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backquotes are MariaDB's: accepted at load while the engine is unknown, refused
    once the url says PostgreSQL, at the line of ``where``."""
    toml = TOML.replace(
        'tables = ["items"]\n',
        "\n[sources.src.tables.items]\nwhere = \"`status` <> 'test'\"\n"
        'version_query = "select count(*) from `items`"\n',
    )
    table = load_project(write(tmp_path, toml)).config.source_tables["src.items"]
    monkeypatch.setenv(VAR, MARIA)
    assert resolve(table).dialect == "mysql"
    monkeypatch.setenv(VAR, PG)
    with pytest.raises(ProjectError) as info:
        resolve(table)
    assert "[sources.src.tables.items] where = \"`status` <> 'test'\" is not one condition" in str(
        info.value
    )
    assert "in postgres SQL" in str(info.value)
    assert info.value.line == 8
    # what no engine accepts is refused at load, engine or not
    monkeypatch.delenv(VAR)
    with pytest.raises(ProjectError) as info:
        load_project(write(tmp_path / "bad", toml.replace("<> 'test'", "<>")))
    assert "is not one condition in postgres or mysql SQL" in str(info.value)
    assert info.value.line == 8


@pytest.mark.mariadb
def test_commands_run_without_the_credentials_and_copies_fail_until_they_are_set(
    tmp_path: Path, duckdb_url: str, mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(tmp_path)
    create_items(mariadb_url, [(1, "new", "2024-01-01 00:00:00")])

    code, output = cli("plan", project=root, target=duckdb_url)
    assert code == 0, output
    assert f"src.items     extract {UNKNOWN}" in output
    code, plan = build_json(command="plan", project=root, target=duckdb_url)
    assert code == 0
    reasons = {row["model"]: row["reason"] for row in plan["models"]}
    assert reasons == {"main.alone": "new", "src.items": UNKNOWN, "main.counted": "new"}
    code, output = cli("lineage", "--format", "json", project=root, target=duckdb_url)
    assert code == 0, output
    assert "src.items" in {node["id"] for node in json.loads(output)["nodes"]}
    for fmt in ("text", "mermaid", "dot"):
        code, output = cli("lineage", "--format", fmt, project=root, target=duckdb_url)
        assert code == 0, (fmt, output)

    code, payload = build_json("alone", project=root, target=duckdb_url)
    assert code == 0
    assert statuses(payload) == {"main.alone": "success"}
    code, output = cli("history", project=root, target=duckdb_url)
    assert code == 0, output
    code, output = cli("history", "--model", "alone", "--json", project=root, target=duckdb_url)
    assert code == 0, output
    assert "main.alone" in output

    # the copy fails, its reader is skipped, and the rest is up to date
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    copy = results["src.items"]
    assert (copy["status"], copy["failure_class"]) == ("failed", "config")
    assert (copy["file"], copy["line"]) == ("dbluigi.toml", URL_LINE)
    assert copy["error"].startswith(f"dbluigi.toml:{URL_LINE}: {MESSAGE}")
    assert results["main.counted"]["failure_class"] == "upstream"
    assert results["main.alone"]["status"] == "up to date"
    code, output = cli("build", project=root, target=duckdb_url)
    assert code == 1
    assert f"config error in src.items:\ndbluigi.toml:{URL_LINE}: {MESSAGE}" in output
    # nothing published or left aside for it
    tables = query(
        duckdb_url,
        root,
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema in ('src', 'main')",
    )
    assert sorted(t for (t,) in tables) == ["main.alone"]

    monkeypatch.setenv(VAR, mariadb_url)
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 0, payload
    assert statuses(payload) == {
        "main.alone": "up to date",
        "src.items": "success",
        "main.counted": "success",
    }
    assert query(duckdb_url, root, "select n from main.counted") == [(1,)]
    assert query(duckdb_url, root, "select id, status from src.items") == [(1, "new")]


def test_docs_runs_without_the_credentials(tmp_path: Path, duckdb_url: str) -> None:
    root = write(tmp_path)
    code, output = cli("build", "alone", project=root, target=duckdb_url)
    assert code == 0, output
    out = tmp_path / "site"
    code, output = cli("docs", "--out", str(out), project=root, target=duckdb_url)
    assert code == 0, output
    text = (out / "data.js").read_text()
    data = json.loads(text[text.index("{") :].rstrip().rstrip(";"))
    assert data["recorded"] is True
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["main.alone"]["status"] == "success"
    assert nodes["src.items"]["kind"] == "extract" and nodes["src.items"]["status"] is None
    code, html = cli("lineage", "--format", "html", project=root, target=duckdb_url)
    assert code == 0 and "src.items" in html
