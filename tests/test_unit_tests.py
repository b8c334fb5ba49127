"""``dbluigi test``: unit tests of models on fixture rows (dbluigi.testfiles, dbluigi.unittests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dbluigi.cli import app
from dbluigi.project import load_project
from dbluigi.scan import scan_files
from dbluigi.targets import open_target
from dbluigi.testfiles import read_test_file
from dbluigi.unittests import resolve, run_tests
from tests.helpers import write_project

REPO = Path(__file__).resolve().parent.parent
CLOSED_PG = "postgresql://nobody@127.0.0.1:1/nothing"  # nothing listens: nothing may connect

SUMS = {
    "raw/m.csv": "id,v\n1,2.5\n",
    "rep/totals.sql": """
        -- check: unique(id)
        select id, sum(v) as total from raw.m group by id
    """,
}


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["test", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def _run(root: Path, target: str | None = None, *, on_target: bool = False) -> dict[str, object]:
    project = load_project(root, target=target)
    tests = read_test_file(root, "rep/totals.test.yml")
    tgt = open_target(project.config.target_url, project_dir=root) if on_target else None
    return {r.test.name: r for r in run_tests(project, resolve(project, tests), target=tgt)}


def test_passing_and_failing_tests_with_the_diff(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        {
            **SUMS,
            "rep/totals.test.yml": """
                sums:
                  model: rep.totals
                  given:
                    raw.m: [{id: 1, v: 2}, {id: 1, v: 3}, {id: 2, v: 1.5}]
                  expect: [{id: 2, total: 1.5}, {id: 1, total: 5}]
                wrong:
                  model: totals
                  given:
                    raw.m: [{id: 1, v: 2}, {id: 3, v: 1}]
                  expect: [{id: 1, total: 3}, {id: 3, total: 1}]
                in_order:
                  model: rep.totals
                  given: {raw.m: [{id: 1, v: 2}]}
                  expect: {query: "select 1 as id, 2.0 as total", ordered: true}
            """,
        },
    )
    results = _run(root)
    assert results["sums"].status == "passed"  # type: ignore[attr-defined]
    assert results["in_order"].status == "passed"  # type: ignore[attr-defined]
    wrong = results["wrong"]
    assert wrong.status == "failed"  # type: ignore[attr-defined]
    assert wrong.columns == ("id", "total")  # type: ignore[attr-defined]
    assert [tuple(map(int, r)) for r in wrong.missing] == [(1, 3)]  # type: ignore[attr-defined]
    assert [tuple(map(int, r)) for r in wrong.unexpected] == [(1, 2)]  # type: ignore[attr-defined]

    code, out = _cli("--project", str(root))
    assert code == 1
    assert (
        "missing (expected, not produced)" in out and "unexpected (produced, not expected)" in out
    )
    assert "id=1, total=3" in out and "id=1, total=2" in out
    assert "2 passed, 1 failed" in out
    code, out = _cli("--project", str(root), "--exclude", "rep.totals")
    assert code == 0 and "no unit tests" in out


PG_MODEL = {
    "dbluigi.toml": f'[project]\nname = "pg"\n[target]\nurl = "{CLOSED_PG}"\n',
    "raw/events.csv": "id,user_id,amount,at\n1,1,2.5,2020-01-03\n",
    "rep/latest.sql": """
        -- check: unique(user_id)
        select distinct on (user_id)
            user_id,
            amount::int as amount_int,
            date_trunc('month', at)::date as month,
            (select count(*) from generate_series(1, 3) as g) as three
        from raw.events
        order by user_id, at desc
    """,
    "rep/latest.check.sql": "select * from rep.latest where amount_int < 0\n",
    "rep/locked.sql": "select user_id from raw.events for update\n",
    "rep/pivot.sql": "select * from crosstab('select 1, 2, 3') as t(a int, b int)\n",
    "tests/latest.test.yml": """
        latest_per_user:
          model: rep.latest
          given:
            raw.events:
              - {id: 1, user_id: 1, amount: 2.4, at: 2020-01-03}
              - {id: 2, user_id: 1, amount: 7.6, at: 2020-02-15}
              - {id: 3, user_id: 2, amount: 1.0, at: 2020-03-31}
          expect:
            - {user_id: 1, amount_int: 8, month: 2020-02-01, three: 3}
            - {user_id: 2, amount_int: 1, month: "2020-03-01", three: 3}
        negative_amount:
          model: rep.latest
          given:
            raw.events: [{user_id: 1, amount: -3, at: 2020-01-01}]
          expect: {checks_fail: [latest.check.sql]}
        duplicate_check_expected_but_passes:
          model: rep.latest
          given:
            raw.events: [{user_id: 1, amount: 3, at: 2020-01-01}]
          expect: {checks_fail: ["unique(user_id)"]}
        pivot:
          model: rep.pivot
          expect: []
        locked:
          model: rep.locked
          given: {raw.events: [{user_id: 1}]}
          expect: [{user_id: 1}]
    """,
}


def test_a_postgresql_model_is_tested_without_postgresql(tmp_path: Path) -> None:
    root = write_project(tmp_path, PG_MODEL)
    project = load_project(root)
    assert project.dialect == "postgres"
    assert not [f for f in scan_files(root, default_schema="public") if f.path.startswith("tests")]
    code, out = _cli("--project", str(root))
    assert code == 1, out
    lines = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 4}
    assert "passed" in lines["latest_per_user"]
    assert "passed" in lines["negative_amount"]  # a check expected to fail, failing
    assert "failed" in lines["duplicate_check_expected_but_passes"]
    assert "check unique(user_id) passed; the test expects it to fail" in out
    assert "error" in lines["locked"]
    assert "rep/locked.sql: its SQL does not transpile from postgres to DuckDB" in out
    assert "dbluigi test --on-target" in out
    assert "error" in lines["pivot"]
    assert "rep/pivot.sql: fails in DuckDB (transpiled from postgres)" in out
    assert not (root / ".dbluigi" / "target.duckdb").exists()


def test_a_python_model_runs_on_the_fixture_database(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        {
            "raw/m.csv": "id,v\n1,2\n",
            "rep/doubled.py": """
                # depends: raw.m
                def run(ctx):
                    ctx.execute(f"create table {ctx.table} as select id, v * 2 as dbl from {ctx.ref('raw.m')}")
            """,
            "rep/doubled.test.yml": """
                doubles:
                  model: rep.doubled
                  given: {raw.m: [{id: 1, v: 4}]}
                  expect: [{id: 1, dbl: 8}]
            """,
        },
    )
    code, out = _cli("--project", str(root))
    assert code == 0, out


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        {
            **SUMS,
            "rep/totals.test.yml": "sums:\n  model: rep.totals\n  given: [unclosed\n  expect: []\n",
        },
    )
    code, out = _cli("--project", str(root))
    assert code == 2
    assert "rep/totals.test.yml:4" in out.replace("\n", "") and "not valid YAML" in out

    (root / "rep/totals.test.yml").write_text("sums:\n  model: rep.nothing\n  expect: []\n")
    code, out = _cli("--project", str(root))
    assert code == 2 and "rep/totals.test.yml:1" in out and "no model rep.nothing" in out
    (root / "rep/totals.test.yml").write_text("sums:\n  model: rep.totals\n  expct: []\n")
    code, out = _cli("--project", str(root))
    assert code == 2 and "unknown key 'expct'" in out and "did you mean 'expect'" in out


def test_an_input_named_without_its_schema_is_the_one_the_model_reads(tmp_path: Path) -> None:
    """``given: {m: ...}`` names ``raw.m`` when the model reads one ``m``; else the error
    names the test file and line (it was a ValueError with neither)."""
    test = "sums:\n  model: totals\n  given: {M: [{id: 1, v: 2}]}\n  expect: [{id: 1, total: 2}]\n"
    root = write_project(tmp_path, {**SUMS, "rep/totals.test.yml": test})
    code, out = _cli("--project", str(root))
    assert code == 0, out
    assert "1 passed" in out

    (root / "rep/totals.test.yml").write_text(test.replace("{M:", "{n:"))
    code, out = _cli("--project", str(root))
    out = " ".join(out.split())
    assert code == 2, out
    assert "rep/totals.test.yml:1: test sums: given n: rep.totals reads none of that name" in out
    assert "(it reads raw.m)" in out and "Traceback" not in out

    (root / "rep/m.sql").write_text("select 1 as id, 2 as v")  # a second m
    (root / "rep/totals.sql").write_text(
        "select m.id, sum(m.v) + sum(r.v) as total from raw.m join rep.m as r using (id) group by m.id"
    )
    (root / "rep/totals.test.yml").write_text(test)
    code, out = _cli("--project", str(root))
    out = " ".join(out.split())
    assert code == 2 and "given m: rep.totals reads several relations of that name" in out
    assert "(raw.m, rep.m)" in out


def test_a_date_that_is_no_real_one_is_text_and_an_error_says_its_hint_once(
    tmp_path: Path,
) -> None:
    """``2024-02-30`` in a test file is its text, as in a CSV seed (PyYAML failed with a
    bare ValueError); a test's error prints its hint once."""
    test = (
        "sums:\n  model: rep.totals\n  given: {raw.m: [{id: 1, v: 2, day: 2024-02-30}]}\n"
        "  expect: [{id: 1, total: 2}]\n"
    )
    root = write_project(tmp_path, {**SUMS, "rep/totals.test.yml": test})
    code, out = _cli("--project", str(root))
    out = " ".join(out.split())
    assert code == 1 and "Traceback" not in out and "ValueError" not in out
    assert "raw.m has no column day" in out and out.count("hint: its columns: id, v") == 1


SUMS_TEST = "sums:\n  model: rep.totals\n  given: {raw.m: [{id: 1, v: 2}]}\n  expect: []\n"


@pytest.mark.parametrize(
    ("folder", "content", "says", "line"),
    [
        ("rep/totals", b"# caf\xe9\n" + SUMS_TEST.encode(), "not UTF-8", 1),
        (
            "tests/sums",
            SUMS_TEST.encode()
            + b"other:\n  model: rep.totals\n  expect: []\n"
            + SUMS_TEST.encode(),
            "'sums' appears twice",
            8,
        ),
        (
            "rep/totals",
            SUMS_TEST.replace("[]", "[{id: 1, id: 2}]").encode(),
            "'id' appears twice",
            4,
        ),
        ("tests/sums", SUMS_TEST.encode() + b"  description: a\0b\n", "a NUL byte", 5),
    ],
    ids=["latin1", "duplicate_test", "duplicate_column", "nul_byte"],
)
def test_a_test_file_that_would_lose_a_test_names_the_file_and_line(
    tmp_path: Path, folder: str, content: bytes, says: str, line: int
) -> None:
    root = write_project(tmp_path, {**SUMS, f"{folder}.test.yml": content})
    code, out = _cli("--project", str(root))
    assert code == 2, out
    out = " ".join(out.split())
    assert f"{folder}.test.yml:{line}: " in out and says in out
    assert "Traceback" not in out


def test_a_fixture_csv_that_is_not_utf8_names_its_file_and_line(tmp_path: Path) -> None:
    test = "sums:\n  model: rep.totals\n  given: {raw.m: {csv: m.csv}}\n  expect: []\n"
    root = write_project(
        tmp_path, {**SUMS, "rep/totals.test.yml": test, "rep/m.csv": b"id,v\n1,2\n2,caf\xe9\n"}
    )
    code, out = _cli("--project", str(root))
    assert code == 1, out
    out = "".join(out.split())
    assert "rep/m.csv:3:notUTF-8" in out and "UnicodeDecodeError" not in out


ON_TARGET_TESTS = """
    sums:
      model: rep.totals
      given: {raw.m: [{id: 1, v: 2}, {id: 1, v: 3}]}
      expect: [{id: 1, total: 5}]
    wrong:
      model: rep.totals
      given: {raw.m: [{id: 1, v: 2}]}
      expect: [{id: 1, total: 7}]
"""


def _scratch_schemas(target_url: str, root: Path) -> list[str]:
    session = open_target(target_url, project_dir=root).connect()
    try:
        rows = session.query(
            "select schema_name from information_schema.schemata "
            "where schema_name like 'dbluigi_test_%'"
        ).rows
    finally:
        session.close()
    return sorted(r[0] for r in rows)


def test_on_target_leaves_no_scratch_schema_and_drops_a_killed_runs(
    tmp_path: Path, target_url: str
) -> None:
    root = write_project(tmp_path, {**SUMS, "rep/totals.test.yml": ON_TARGET_TESTS})
    session = open_target(target_url, project_dir=root).connect()
    try:  # what a run killed mid-way leaves
        session.execute('create schema "dbluigi_test_killed"')
        session.execute('create table "dbluigi_test_killed"."raw__m" (id integer)')
    finally:
        session.close()
    assert _scratch_schemas(target_url, root) == ["dbluigi_test_killed"]

    code, out = _cli("--project", str(root), "--target", target_url, "--on-target")
    assert code == 1, out
    assert "1 passed, 1 failed" in out and "id=1, total=7" in out
    assert _scratch_schemas(target_url, root) == []

    results = _run(root, target_url, on_target=True)
    assert results["sums"].status == "passed"  # type: ignore[attr-defined]
    assert _scratch_schemas(target_url, root) == []


def test_the_example_project_tests_pass() -> None:
    code, out = _cli("--project", str(REPO / "project"))
    assert code == 0, out
    assert "reported_all_twelve_months" in out and "county_name_corrected" in out


def test_the_example_rollup_test_catches_a_broken_rule(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "project"
    shutil.copytree(REPO / "project", root, ignore=shutil.ignore_patterns(".dbluigi"))
    sql = root / "reporting" / "agency_reporting.sql"
    sql.write_text(
        sql.read_text().replace("= 12 as reported_all_months", ">= 11 as reported_all_months")
    )
    code, out = _cli("--project", str(root), "agency_reporting")
    assert code == 1, out
    assert "months_reported=11, reported_all_months=False" in out
    assert "months_reported=11, reported_all_months=True" in out


@pytest.mark.parametrize("name", ["x.test.yml", "x.tests.yaml"])
def test_test_files_are_not_seeds(tmp_path: Path, name: str) -> None:
    root = write_project(tmp_path, {**SUMS, f"tests/{name}": "{}\n", f"rep/{name}": "{}\n"})
    assert sorted(load_project(root).models) == ["raw.m", "rep.totals"]


def test_vars_partition_a_csv_input_and_typed_empty_input(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        {
            "dbluigi.toml": '[project]\nname = "p"\n[vars]\nmin_v = "0"\n',
            "raw/m.csv": "id,v\n1,2\n",
            "rep/fixtures/m.csv": "id,v\n1,10\n2,-4\n",
            "rep/part.sql": """
                -- partition: year in 2010..2012
                select id, v, {{ year }} as year from raw.m where v > {{ min_v }}
            """,
            "rep/j.sql": "select a.id, b.name from rep.part as a left join raw.names as b on b.id = a.id\n",
            "rep/x.test.yml": """
                part_and_vars:
                  model: rep.part
                  given: {raw.m: {csv: fixtures/m.csv}}
                  vars: {min_v: "5"}
                  partition: 2011
                  expect: [{id: 1, v: 10, year: 2011}]
                no_partition:
                  model: rep.part
                  given: {raw.m: []}
                  expect: []
                empty_names:
                  model: rep.j
                  given:
                    rep.part: [{id: 1}]
                    raw.names: {rows: [], columns: {id: bigint, name: text}}
                  expect: [{id: 1, name: null}]
            """,
        },
    )
    code, out = _cli("--project", str(root))
    assert code == 1, out
    assert "2 passed, 1 failed" in out
    assert "rep.part is partitioned by year" in out


def test_test_before_build_fails_a_model_with_class_test(tmp_path: Path, duckdb_url: str) -> None:
    from tests.buildkit import build_json

    files = {
        **SUMS,
        "rep/totals.test.yml": """
            sums:
              model: rep.totals
              given: {raw.m: [{id: 1, v: 2}, {id: 1, v: 3}]}
              expect: [{id: 1, total: 6}]
        """,
        "rep/after.sql": "select * from rep.totals\n",
    }
    root = write_project(tmp_path, files)
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 0  # off by default
    write_project(
        root,
        {**files, "dbluigi.toml": '[project]\nname = "p"\ntest_before_build = true\n'},
    )
    code, payload = build_json("rep.totals+", project=root, target=duckdb_url, command="rebuild")
    assert code == 1
    got = {r["model"]: (r["status"], r["failure_class"]) for r in payload["tasks"]}
    assert got["rep.totals"] == ("failed", "test")
    assert got["rep.after"] == ("skipped", "upstream")
    error = next(r["error"] for r in payload["tasks"] if r["model"] == "rep.totals")
    assert "unit tests failed before the build (sums)" in error
    (root / "rep/totals.test.yml").write_text(
        (root / "rep/totals.test.yml").read_text().replace("total: 6", "total: 5")
    )
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 0, payload
    (root / "dbluigi.toml").write_text('[project]\ntest_before_build = "yes"\n')
    code, out = _cli("--project", str(root))
    assert code == 2 and "test_before_build = 'yes': expected true or false" in out


def test_generate_writes_a_test_that_passes_as_written(tmp_path: Path, target_url: str) -> None:
    import shutil

    from tests.buildkit import build_json

    root = tmp_path / "project"
    shutil.copytree(REPO / "project", root, ignore=shutil.ignore_patterns(".dbluigi", "*.test.yml"))
    code, out = _cli(
        "--project", str(root), "--target", target_url, "--generate", "agency_reporting"
    )
    assert code == 2 and "cannot read" in out and "build them first" in out  # nothing built
    code, payload = build_json(project=root, target=target_url)
    assert code == 0, payload
    for model, name in (("agency_reporting", "reporting"), ("staging.agencies", "staging")):
        code, out = _cli(
            "--project", str(root), "--target", target_url, "--generate", model, "--rows", "3"
        )
        assert code == 0, out
        written = next((root / name).glob("*.test.yml"))
        assert "Generated by dbluigi test --generate" in written.read_text()
        assert read_test_file(root, written.relative_to(root).as_posix())[0].rows
    code, out = _cli("--project", str(root), "--target", target_url)
    assert code == 0, out
    assert "2 passed, 0 failed" in out
    code, out = _cli(
        "--project", str(root), "--target", target_url, "--generate", "agency_reporting"
    )
    assert code == 2 and "does not overwrite" in out
    assert _scratch_schemas(target_url, root) == []


def test_inputs_take_the_published_tables_types(tmp_path: Path, target_url: str) -> None:
    """An input the target publishes is typed as published, with every column of it: a
    test gives only what it cares about, and a string stands for a number there."""
    root = write_project(
        tmp_path / "p",
        {
            "rep/doubled.sql": "select id, amount * 2 as doubled, happened_at from ext.events",
            "rep/doubled.test.yml": """
doubles_the_amount:
  model: rep.doubled
  given:
    ext.events:
      - {id: 1, amount: "1.50"}
  expect:
    - {id: 1, doubled: 3.00, happened_at: null}
""",
        },
    )
    session = open_target(target_url, project_dir=root).connect()
    try:
        session.ensure_schema("ext")
        session.execute(
            "create table ext.events (id integer, amount numeric(10, 2), happened_at timestamp)"
        )
    finally:
        session.close()
    code, output = _cli("--project", str(root), "--target", target_url)
    assert code == 0, output
    assert "1 passed, 0 failed" in output
    # without the target (nothing reachable) the same test has no happened_at to read
    code, output = _cli("--project", str(root), "--target", CLOSED_PG)
    assert code == 1
    assert "the target cannot be read" in output and "happened_at" in output


@pytest.mark.postgres
def test_on_target_a_run_killed_mid_way_is_cleaned_up_by_the_next(
    tmp_path: Path, pg_url: str
) -> None:
    """SIGKILL while a test's model runs on the target: its scratch schema stays behind,
    and the next run drops it (its lock went with the killed run's connection)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    slow = {
        "rep/slow.sql": "select id, pg_sleep(2) is null as slept from rep.src",
        "rep/slow.test.yml": "slow:\n  model: rep.slow\n  given:\n    rep.src: [{id: 1}]\n"
        "  expect: [{id: 1}]\n",
    }
    root = write_project(tmp_path, slow)
    process = subprocess.Popen(
        [sys.executable, "-m", "dbluigi", "test", "--on-target", "--project", str(root)],
        env={**os.environ, "DBLUIGI_TARGET": pg_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _scratch_schemas(pg_url, root) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # into the model's two seconds
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    left = _scratch_schemas(pg_url, root)
    assert len(left) == 1, left  # what the killed run leaves
    # its server session ends (and its lock goes) once the statement it ran does
    session = open_target(pg_url, project_dir=root).connect()
    try:
        while time.monotonic() < deadline + 30:
            busy = session.query(  # the killed run's lock on its scratch schema
                "select count(*) from pg_locks where locktype = 'advisory' "
                "and pid <> pg_backend_pid() and database = "
                "(select oid from pg_database where datname = current_database())"
            ).rows[0][0]
            if not busy:
                break
            time.sleep(0.1)
    finally:
        session.close()
    code, out = _cli("--project", str(root), "--target", pg_url, "--on-target")
    assert code == 0, out
    assert _scratch_schemas(pg_url, root) == []


def test_fixture_databases_share_nothing_not_even_what_they_know_of_their_catalogs() -> None:
    from dbluigi.targets.fixture import fixture_session

    first, second = fixture_session(), fixture_session()
    try:
        first.catalog()
        second.catalog()
        first.create_table_as("main", "t", "select 1 as id")
        assert first.relation_kind("main", "t") == "table"
        assert second.relation_kind("main", "t") is None
        second.create_table_as("main", "t", "select 2 as id")  # no "already exists"
        assert second.query("select id from main.t").rows == ((2,),)
    finally:
        first.close()
        second.close()
