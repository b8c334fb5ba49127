"""The dump kind: CSV files under the output folder, written aside and renamed, streamed,
rebuilt when missing; bad paths are project errors. DuckDB and PostgreSQL."""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import pytest

from dbluigi.errors import ProjectError
from dbluigi.project import load_project
from tests.buildkit import build_json, cli, query, ran
from tests.test_build import write_project

DUMP = """\
-- kind: dump
select id, name, amount from main.items order by id
"""
ITEMS = (
    "select 1 as id, 'plain' as name, 1.5 as amount union all "
    "select 2, 'with, comma and \"quotes\"', null"
)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def test_a_dump_writes_csv_with_a_header_and_is_rebuilt_when_missing(
    tmp_path: Path, target_url: str
) -> None:
    write_project(tmp_path, {"items.sql": ITEMS, "items_csv.sql": DUMP})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    result = next(r for r in payload["tasks"] if r["model"] == "main.items_csv")
    assert (result["kind"], result["rows"]) == ("dump", 2)
    out = tmp_path / "exports" / "items_csv.csv"
    assert read_csv(out) == [
        ["id", "name", "amount"],
        ["1", "plain", "1.5"],
        ["2", 'with, comma and "quotes"', ""],
    ]
    assert [p.name for p in out.parent.iterdir()] == ["items_csv.csv"]  # no temporary left

    code, again = build_json(project=tmp_path, target=target_url)
    assert code == 0 and ran(again) == set()
    out.unlink()
    code, plan_out = cli("plan", project=tmp_path, target=target_url)
    assert "output missing" in plan_out
    code, again = build_json(project=tmp_path, target=target_url)
    assert ran(again) == {"main.items_csv"} and out.exists()
    assert next(r for r in again["tasks"] if r["model"] == "main.items_csv")["reason"] == (
        "output missing"
    )


def test_path_header_and_output_folder(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "dbluigi.toml": 'output = "out/files"\n',  # under [project]
            "items.sql": ITEMS,
            "api/items_csv.sql": "-- kind: dump\n-- path: api/v1/items.csv\n"
            "select id from main.items order by id",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert read_csv(tmp_path / "out/files/api/v1/items.csv") == [["id"], ["1"], ["2"]]
    # the output folder is not scanned: a CSV written there is not a seed
    assert load_project(tmp_path).models.keys() == {"main.items", "api.items_csv"}


def test_a_failed_dump_leaves_the_previous_file(tmp_path: Path, target_url: str) -> None:
    write_project(tmp_path, {"items.sql": ITEMS, "items_csv.sql": DUMP})
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    out = tmp_path / "exports" / "items_csv.csv"
    before = out.read_bytes()
    (tmp_path / "items_csv.sql").write_text(
        "-- kind: dump\nselect id, cast(name as integer) as broken from main.items"
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    result = next(r for r in payload["tasks"] if r["model"] == "main.items_csv")
    assert code == 1 and result["failure_class"] == "runtime"
    assert result["file"] == "items_csv.sql" and result["line"] in (1, 2)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["items_csv.csv"]


def test_a_dump_the_file_system_refuses_fails_at_its_path_line(
    tmp_path: Path, duckdb_url: str
) -> None:
    """A folder where the dump writes its file, a file where it needs a folder: a runtime
    failure at the ``-- path:`` line naming what is in the way; nothing is left behind."""
    dump = DUMP.replace("\n", "\n-- path: api/items.csv\n", 1)
    write_project(tmp_path, {"items.sql": ITEMS, "items_csv.sql": dump})
    assert build_json(project=tmp_path, target=duckdb_url)[0] == 0
    api = tmp_path / "exports" / "api"
    (api / "items.csv").unlink()
    (api / "items.csv").mkdir()  # a folder under the file's name is no dump
    (api / "items.csv" / "kept").write_text("mine")
    code, plan_out = cli("plan", project=tmp_path, target=duckdb_url)
    assert "output missing" in plan_out
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    result = next(r for r in payload["tasks"] if r["model"] == "main.items_csv")
    assert code == 1 and result["failure_class"] == "runtime"
    assert (result["file"], result["line"]) == ("items_csv.sql", 2)
    assert "cannot write the dump items.csv: " in result["error"]
    assert (
        "a folder stands where the dump writes its file: move exports/api/items.csv away"
        in (result["error"])
    )
    assert [p.name for p in api.iterdir()] == ["items.csv"]  # no temporary left
    assert (api / "items.csv" / "kept").read_text() == "mine"

    (api / "items.csv" / "kept").unlink()
    (api / "items.csv").rmdir()
    api.rmdir()
    api.write_text("in the way")
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    result = next(r for r in payload["tasks"] if r["model"] == "main.items_csv")
    assert code == 1 and (result["file"], result["line"]) == ("items_csv.sql", 2)
    assert "cannot write the dump items.csv: File exists (exports/api)" in result["error"]
    assert "a file stands where the dump needs a folder: move exports/api away" in (result["error"])
    assert api.read_text() == "in the way"

    api.unlink()
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0 and ran(payload) == {"main.items_csv"}
    assert read_csv(api / "items.csv")[0] == ["id", "name", "amount"]


def test_a_check_file_gates_the_dump(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "items.sql": ITEMS,
            "items_csv.sql": DUMP,
            "items_csv.check.sql": "select id from main.items where amount is null",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    result = next(r for r in payload["tasks"] if r["model"] == "main.items_csv")
    assert code == 1 and result["failure_class"] == "check"
    assert "nothing was published" in result["error"]
    assert not (tmp_path / "exports" / "items_csv.csv").exists()


def test_a_dump_streams_its_rows(tmp_path: Path, target_url: str) -> None:
    """Python memory stays flat however many rows go to the file (the target streams them)."""
    generate = (
        "select i as id, 'row number ' || cast(i as text) || ' of many' as label "
        "from generate_series(1, {n}) as g(i)"
    )
    write_project(tmp_path, {"big.sql": f"-- kind: dump\n{generate.format(n=10)}"})
    assert build_json(project=tmp_path, target=target_url)[0] == 0  # imports done, state made
    (tmp_path / "big.sql").write_text(f"-- kind: dump\n{generate.format(n=300000)}")
    tracemalloc.start()
    try:
        code, payload = build_json(project=tmp_path, target=target_url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, payload
    assert payload["tasks"][0]["rows"] == 300000
    out = tmp_path / "exports" / "big.csv"
    assert out.stat().st_size > 9_000_000
    assert peak < 4_000_000  # fetching the rows into Python would take well over 30 MB


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("../outside.csv", "exports/"),
        ("/tmp/elsewhere.csv", "exports/"),
        ("sub/../../x.csv", "exports/"),
        (".", "exports/"),
    ],
)
def test_a_path_outside_the_output_folder_is_an_error(
    tmp_path: Path, duckdb_url: str, path: str, names: str
) -> None:
    write_project(
        tmp_path, {"x.sql": f"-- kind: dump\n-- description: d\n-- path: {path}\nselect 1 as a"}
    )
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path)
    exc = caught.value
    assert (exc.path, exc.line) == ("x.sql", 3)
    assert f"path {path!r} leaves the output folder {names}" in exc.message
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 2 and "x.sql:3" in output and "leaves the output folder" in output


def test_two_dumps_writing_one_file_and_a_path_on_another_kind(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "a.sql": "-- kind: dump\n-- path: same.csv\nselect 1 as a",
            "b.sql": "-- kind: dump\n-- path: same.csv\nselect 2 as a",
        },
    )
    with pytest.raises(ProjectError, match=r"a\.sql and b\.sql both write"):
        load_project(tmp_path)
    (tmp_path / "b.sql").write_text("-- path: same.csv\nselect 2 as a")
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path)
    assert caught.value.message == (
        "path names the file a dump writes, and this model is of kind table"
    )
    assert (caught.value.path, caught.value.line) == ("b.sql", 1)


@pytest.mark.postgres
def test_postgres_writes_nulls_as_empty_fields(tmp_path: Path, pg_url: str) -> None:
    write_project(
        tmp_path,
        {"d.sql": "-- kind: dump\nselect 1 as id, cast(null as text) as note, true as flag"},
    )
    assert build_json(project=tmp_path, target=pg_url)[0] == 0
    assert read_csv(tmp_path / "exports" / "d.csv") == [["id", "note", "flag"], ["1", "", "t"]]
    assert query(pg_url, tmp_path, "select rows_affected from dbluigi.models") == [(1,)]
