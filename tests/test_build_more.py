"""More of the build engine: check.py, previous-relative checks, plan reasons, check
command failures, ${ENV} targets, the starter project, history as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.buildkit import build_json, cli, query, ran, statuses
from tests.helpers import write_project as write_any_project
from tests.test_build import write_project


def test_check_py_gates_the_swap(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "t.sql": "select 1 as id, 10 as amount",
            "t.check.py": """
            def check(ctx):
                rows = ctx.query(f"select id, amount from {ctx.table} where amount > 100")
                return [f"id {r[0]} has amount {r[1]}" for r in rows]
            """,
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    (tmp_path / "t.sql").write_text("select 1 as id, 500 as amount")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert result["failure_class"] == "check" and result["file"] == "t.check.py"
    assert "id 1 has amount 500" in result["error"]
    assert query(target_url, tmp_path, "select amount from main.t") == [(10,)]


def test_sys_exit_in_a_check_py_fails_its_task_not_the_run(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "t.sql": "select 1 as id",
            "u.sql": "select 2 as id",
            "t.check.py": "import sys\n\n\ndef check(ctx):\n    sys.exit('stop here')\n",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload) == {"main.t": "failed", "main.u": "success"}
    result = next(r for r in payload["tasks"] if r["model"] == "main.t")
    assert result["failure_class"] == "runtime"
    assert result["file"] == "t.check.py" and result["line"] == 5
    assert "SystemExit: stop here" in result["error"]


def test_a_project_of_files_starting_with_a_bom_builds(tmp_path: Path, target_url: str) -> None:
    files = {
        "dbluigi.toml": '[project]\ndefault_schema = "main"\n[vars]\nlow = 0\n',
        "a.sql": "-- depends: main.p\n-- check: rows > 0\nselect {{ low }} + 1 as a\n",
        "a.check.sql": "select * from main.a where a < {{ low }}\n",
        "a.patch.sql": "update main.a set a = a + 1\n",
        "p.py": "def run(ctx):\n    ctx.execute(f'create table {ctx.table} as select 1 as q')\n",
        "raw/c.csv": "id,name\n1,a\n",
        "raw/y.yml": "- id: 1\n  name: b\n",
    }
    bom = {name: b"\xef\xbb\xbf" + text.encode() for name, text in files.items()}
    write_any_project(tmp_path, bom)
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select a from main.a") == [(2,)]
    assert query(target_url, tmp_path, "select id, name from raw.c") == [(1, "a")]
    assert query(target_url, tmp_path, "select id, name from raw.y") == [(1, "b")]


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"- id: 1\n  name: a\n  name: b\n", 3),
        (b"- id: 1\n- id: 2\n  name: a\0\n", 3),
        (b'- id: 1\n- id: 2\n  name: "a\\0"\n', 2),
        # a YAML seed's rows name its columns: with none, there is no table to make
        (b"{}\n", 1),
        (b"# tags: api\n[]\n", 2),
        (b"# no rows yet\n", 1),
        (b"", 1),
    ],
    ids=[
        "duplicate_key",
        "nul_byte",
        "escaped_nul",
        "empty_mapping",
        "empty_list",
        "only_comments",
        "empty_file",
    ],
)
def test_a_yaml_seed_that_would_lose_data_or_has_no_rows_fails_as_config(
    tmp_path: Path, target_url: str, content: bytes, line: int
) -> None:
    write_any_project(tmp_path, {"raw/y.yml": content, "raw/z.yml": b"- id: 1\n"})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1 and statuses(payload) == {"raw.y": "failed", "raw.z": "success"}
    (result,) = (r for r in payload["tasks"] if r["model"] == "raw.y")
    assert result["failure_class"] == "config"
    assert (result["file"], result["line"]) == ("raw/y.yml", line)


def test_a_csv_seed_with_a_blank_header_fails_as_config_at_line_1(
    tmp_path: Path, target_url: str
) -> None:
    write_any_project(tmp_path, {"raw/c.csv": b"\nid,name\n1,a\n"})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert (result["failure_class"], result["file"], result["line"]) == ("config", "raw/c.csv", 1)
    assert "the header (line 1) is blank" in result["error"]


def test_a_csv_seed_of_only_a_header_loads_an_empty_table(tmp_path: Path, target_url: str) -> None:
    """Unlike a YAML seed's rows, a CSV header names the columns without any row."""
    write_any_project(tmp_path, {"raw/c.csv": b"id,name\n", "raw/e.csv": b""})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1 and statuses(payload) == {"raw.c": "success", "raw.e": "failed"}
    assert query(target_url, tmp_path, "select count(*) from raw.c") == [(0,)]
    (result,) = (r for r in payload["tasks"] if r["model"] == "raw.e")
    assert result["failure_class"] == "config"
    assert (result["file"], result["line"]) == ("raw/e.csv", 1)
    assert "the file is empty" in result["error"]


BAD_CSV_SEEDS = {  # the file, the line its error names, and what the error says
    "nul_byte": (b"id,name\n1,a\n2,b\0c\n3,d\n", 3, "a NUL byte"),
    "unterminated_quote": (b'id,name\n1,a\n2,"b\n3,d\n', 3, "never closed"),
}


@pytest.mark.parametrize(
    ("content", "line", "message"), BAD_CSV_SEEDS.values(), ids=BAD_CSV_SEEDS.keys()
)
def test_a_bad_csv_seed_fails_as_config_at_its_line_and_publishes_nothing(
    tmp_path: Path, target_url: str, content: bytes, line: int, message: str
) -> None:
    write_any_project(tmp_path, {"raw/c.csv": b"id,name\n1,a\n"})
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    (tmp_path / "raw/c.csv").write_bytes(content)
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert result["failure_class"] == "config"
    assert (result["file"], result["line"]) == ("raw/c.csv", line)
    assert message in result["error"]
    assert query(target_url, tmp_path, "select id, name from raw.c") == [(1, "a")]


def test_rows_relative_to_previous(tmp_path: Path, target_url: str) -> None:
    rows = " union all ".join(f"select {i} as id" for i in range(10))
    write_project(tmp_path, {"t.sql": f"-- check: rows >= 0.9 * previous\n{rows}"})
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    fewer = " union all ".join(f"select {i} as id" for i in range(9))
    (tmp_path / "t.sql").write_text(f"-- check: rows >= 0.9 * previous\n{fewer}")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload  # 9 >= 0.9 * 10
    much_fewer = " union all ".join(f"select {i} as id" for i in range(5))
    (tmp_path / "t.sql").write_text(f"-- check: rows >= 0.9 * previous\n{much_fewer}")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    error = payload["tasks"][0]["error"]
    assert "5 rows, expected >= 8.1 (0.9 x 9 previous rows)" in error
    assert query(target_url, tmp_path, "select count(*) from main.t") == [(9,)]


def test_plan_says_relation_missing_and_builds_it_back(tmp_path: Path, target_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select * from main.a"})
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    from dbluigi.targets import open_target

    session = open_target(target_url, project_dir=tmp_path).connect()
    session.drop_relation("main", "b")
    session.close()
    code, output = cli("plan", "--json", project=tmp_path, target=target_url)
    assert code == 0
    reasons = {m["model"]: (m["run"], m["reason"]) for m in json.loads(output)["models"]}
    assert reasons == {"main.a": (False, "up to date"), "main.b": (True, "relation missing")}
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0 and ran(payload) == {"main.b"}


def test_check_command_reports_violations_of_published_tables(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "raw/src.csv": "id\n1\n2\n",
            "t.sql": "select id from raw.src",
            "t.check.sql": "select id from main.t where id > 5",
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    from dbluigi.targets import open_target

    session = open_target(target_url, project_dir=tmp_path).connect()
    session.execute("insert into main.t values (7)")  # someone wrote into the published table
    session.close()
    code, output = cli("check", "t", "--json", project=tmp_path, target=target_url)
    assert code == 1
    (result,) = json.loads(output)["tasks"]
    assert result["status"] == "failed" and result["failure_class"] == "check"
    assert "7" in result["error"]


def test_target_from_toml_with_env_interpolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbluigi.cli import app
    from tests.buildkit import runner

    write_project(
        tmp_path,
        {
            "dbluigi.toml": '[target]\nurl = "duckdb:///${DBLUIGI_TEST_DIR}/t.duckdb"\n',
            "a.sql": "select 1 as id",
        },
    )
    monkeypatch.setenv("DBLUIGI_TEST_DIR", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    result = runner.invoke(app, ["build", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "t.duckdb").exists()
    monkeypatch.delenv("DBLUIGI_TEST_DIR")
    result = runner.invoke(app, ["build", "--project", str(tmp_path)])
    assert result.exit_code == 2
    assert "environment variable DBLUIGI_TEST_DIR is not set" in result.output


def test_starter_project_builds(tmp_path: Path, target_url: str) -> None:
    from dbluigi.scaffold import init_project

    folder = tmp_path / "starter"
    init_project(folder)
    code, payload = build_json(project=folder, target=target_url)
    assert code == 0, payload
    assert set(statuses(payload).values()) == {"success"}
    assert query(target_url, folder, "select count(*) from staging.customers") == [(4,)]


def test_history_json_lists_attempts(tmp_path: Path, duckdb_url: str) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id"})
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    code, output = cli("history", "--json", project=tmp_path, target=duckdb_url)
    assert code == 0
    data = json.loads(output)
    assert data["runs"][0]["run_id"] == payload["run_id"] and data["runs"][0]["status"] == "success"
    assert [(t["model"], t["status"], t["reason"]) for t in data["tasks"]] == [
        ("main.a", "success", "new")
    ]


def test_history_model_takes_one_model(tmp_path: Path, duckdb_url: str) -> None:
    """`--model` with a selector of several models said nothing and showed one of them."""
    write_project(tmp_path, {"a.sql": "select 1 as id", "ab.sql": "select id from a"})
    assert build_json(project=tmp_path, target=duckdb_url)[0] == 0
    code, output = cli("history", "--model", "a*", project=tmp_path, target=duckdb_url)
    assert code == 2
    assert "'a*' selects 2 models; this command takes one" in output
    assert "main.a, main.ab" in output
    code, output = cli("history", "--model", "ab", "--json", project=tmp_path, target=duckdb_url)
    assert code == 0 and [t["model"] for t in json.loads(output)["tasks"]] == ["main.ab"]


def test_view_model_edited_with_the_table_it_reads(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "s/t.sql": "select 1 as id, 'a' as c",
            "s/v.sql": "-- kind: view\nselect id, c from s.t",
        },
    )
    assert build_json(project=tmp_path, target=target_url)[0] == 0
    (tmp_path / "s" / "t.sql").write_text("select 1 as id, 'b' as d")
    (tmp_path / "s" / "v.sql").write_text("-- kind: view\nselect id, d from s.t")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select id, d from s.v") == [(1, "b")]


def test_bare_name_of_a_model_in_another_schema_runs(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "s/base.sql": "select 1 as id",
            "r/reader.sql": "select id from base",
            "r/reader.check.sql": "select * from base where id < 0",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select id from r.reader") == [(1,)]


def test_tables_a_patch_reads_are_dependencies(tmp_path: Path, target_url: str) -> None:
    write_project(
        tmp_path,
        {
            "s/a.sql": "select 1 as id, cast('broken' as varchar) as name",
            "s/a.patch.sql": "update s.a set name = c.name from z.corr as c where c.id = s.a.id",
            "z/corr.csv": "id,name\n1,fixed\n",
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select name from s.a") == [("fixed",)]
    (tmp_path / "z" / "corr.csv").write_text("id,name\n1,refixed\n")
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0 and ran(payload) == {"z.corr", "s.a"}
    assert query(target_url, tmp_path, "select name from s.a") == [("refixed",)]


def test_yaml_seed_type_override_makes_it_stale(tmp_path: Path, duckdb_url: str) -> None:
    write_project(tmp_path, {"raw/k.yml": "- {code: 1}\n- {code: 2}\n"})
    assert build_json(project=tmp_path, target=duckdb_url)[0] == 0
    (tmp_path / "dbluigi.toml").write_text(
        '[project]\ndefault_schema = "main"\n[seeds."raw.k"]\ncolumn_types = { code = "text" }\n'
    )
    code, payload = build_json(project=tmp_path, target=duckdb_url)
    assert code == 0 and ran(payload) == {"raw.k"}
    assert query(duckdb_url, tmp_path, "select code from raw.k order by code") == [("1",), ("2",)]


LOOKUPS = """
# description: lookups for the API
agency_types:
  - {code: 1, name: City}
  - {code: 2, name: County}
states:
  - {abbr: OR, fips: "41"}
  - {abbr: WA, fips: "53"}
"""


def test_multi_table_yaml_seed_builds_and_rebuilds_one_table(
    tmp_path: Path, target_url: str
) -> None:
    write_project(
        tmp_path,
        {
            "lookups/lookup_tables.yaml": LOOKUPS,
            "lookups/states.check.sql": "select * from lookups.states where abbr = 'XX'",
            "api/type_names.sql": "select name from lookups.agency_types",
            "api/state_codes.sql": "select abbr, fips from lookups.states",
            "dbluigi.toml": '[seeds."lookups.states"]\ncolumn_types = { fips = "bigint" }\n',
        },
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert ran(payload) == {
        "lookups.agency_types",
        "lookups.states",
        "api.type_names",
        "api.state_codes",
    }
    assert query(target_url, tmp_path, "select code, name from lookups.agency_types") == [
        (1, "City"),
        (2, "County"),
    ]
    states = "select abbr, fips from lookups.states order by abbr"
    assert query(target_url, tmp_path, states) == [("OR", 41), ("WA", 53)]
    code, plan = build_json(project=tmp_path, target=target_url, command="plan")
    assert code == 0 and {
        m["file"] for m in plan["models"] if m["model"].startswith("lookups.")
    } == {"lookups/lookup_tables.yaml"}

    path = tmp_path / "lookups/lookup_tables.yaml"
    path.write_text(path.read_text().replace('{abbr: WA, fips: "53"}', '{abbr: ID, fips: "16"}'))
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0 and ran(payload) == {"lookups.states", "api.state_codes"}
    assert query(target_url, tmp_path, states) == [("ID", 16), ("OR", 41)]

    path.write_text(path.read_text().replace("abbr: ID", "abbr: XX"))  # the check fails
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload) == {
        "lookups.states": "failed",
        "api.state_codes": "skipped",
        "lookups.agency_types": "up to date",
        "api.type_names": "up to date",
    }
    (failed,) = [r for r in payload["tasks"] if r["status"] == "failed"]
    assert failed["failure_class"] == "check" and failed["file"] == "lookups/states.check.sql"
    assert query(target_url, tmp_path, states) == [("ID", 16), ("OR", 41)]  # as it was


def test_a_yaml_seed_date_that_is_no_day_loads_as_text(tmp_path: Path, target_url: str) -> None:
    write_any_project(
        tmp_path, {"raw/d.yml": b"- {id: 1, day: 2024-02-30}\n- {id: 2, day: 2024-01-31}\n"}
    )
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select id, day from raw.d order by id") == [
        (1, "2024-02-30"),
        (2, "2024-01-31"),
    ]


def test_a_bad_table_of_a_multi_table_yaml_seed_fails_alone(
    tmp_path: Path, target_url: str
) -> None:
    tables = "a:\n  - {x: 1}\nb:\n  - {y: 1}\n  - {y: 2, y: 3}\nc:\n  - {z: 1}\n"
    write_any_project(tmp_path, {"raw/t.yml": tables})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    assert statuses(payload) == {"raw.a": "success", "raw.b": "failed", "raw.c": "success"}
    (result,) = (r for r in payload["tasks"] if r["model"] == "raw.b")
    assert result["failure_class"] == "config"
    assert (result["file"], result["line"]) == ("raw/t.yml", 5)
    assert "'y' appears twice" in result["error"]
    assert query(target_url, tmp_path, "select x from raw.a") == [(1,)]


def test_unselected_parent_whose_table_exists_is_not_missing(
    tmp_path: Path, target_url: str
) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "b.sql": "select * from main.a"})
    from dbluigi.targets import open_target

    session = open_target(target_url, project_dir=tmp_path).connect()
    session.ensure_schema("main")
    session.execute("create table main.a as select 7 as id")  # built by someone else
    session.close()
    code, payload = build_json("b", project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, "select id from main.b") == [(7,)]


def test_python_step_is_stale_when_a_variable_changes(tmp_path: Path, duckdb_url: str) -> None:
    write_project(
        tmp_path,
        {
            "v.py": "def run(ctx):\n    ctx.execute(f\"create table {ctx.table} as select '{ctx.variables['x']}' as x\")\n",
        },
    )
    assert build_json("--var", "x=1", project=tmp_path, target=duckdb_url)[0] == 0
    code, payload = build_json("--var", "x=2", project=tmp_path, target=duckdb_url)
    assert code == 0 and ran(payload) == {"main.v"}
    assert query(duckdb_url, tmp_path, "select x from main.v") == [("2",)]


@pytest.mark.postgres
def test_sql_sqlglot_cannot_parse_runs_as_written(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL's ORDER BY ... USING is beyond sqlglot: with -- depends: the models run
    as written, EXPLAIN and the checks work on them, and every command warns."""
    write_project(
        tmp_path,
        {
            "raw/items.csv": "id\n2\n1\n3\n",
            "reporting/sorted.sql": (
                "-- depends: raw.items\n-- check: unique(id)\n-- max_cost: 1e6\n"
                "select id\nfrom raw.items\norder by id using >\n"
            ),
            "reporting/fix.sql": (
                "-- kind: sql\n-- depends: reporting.sorted\n"
                "delete from reporting.sorted where id = 2;\n"
                "insert into reporting.sorted\n"
                "select id + 10 from reporting.sorted order by id using <\n"
            ),
        },
    )
    code, output = cli("plan", project=tmp_path, target=pg_url)
    assert code == 0, output
    assert "warning: reporting/sorted.sql:6: sqlglot cannot parse this statement" in output
    assert "warning: reporting/fix.sql:5: sqlglot cannot parse this statement" in output
    assert "<- raw.items" in output  # the declared dependency

    code, payload = build_json(project=tmp_path, target=pg_url)
    assert code == 0, payload
    assert query(pg_url, tmp_path, "select id from reporting.sorted order by id") == [
        (1,),
        (3,),
        (11,),
        (13,),
    ]
    costs = query(
        pg_url,
        tmp_path,
        "select explain_cost from dbluigi.task_runs where model = 'reporting.sorted'",
    )
    assert costs[0][0] is not None and costs[0][0] > 0

    (tmp_path / "reporting/sorted.sql").write_text(
        "-- depends: raw.items\n-- check: rows > 5\nselect id\nfrom raw.items\norder by id using >\n"
    )
    code, payload = build_json(project=tmp_path, target=pg_url)
    (result,) = [r for r in payload["tasks"] if r["model"] == "reporting.sorted"]
    assert code == 1 and result["failure_class"] == "check"


def test_a_long_plan_is_summarized_and_all_lists_it(tmp_path: Path, duckdb_url: str) -> None:
    files = {f"m{i:03d}.sql": f"select {i} as id" for i in range(230)}
    files["late.sql"] = "select id from main.m000"
    project = write_project(tmp_path, files)
    code, out = cli("plan", project=project, target=duckdb_url)
    assert code == 0, out
    lines = out.splitlines()
    assert "    231  new" in lines  # the reasons, counted
    assert sum(1 for line in lines if "  run  " in line) == 50
    assert "... 181 more not listed: dbluigi plan --all lists every model" in out
    assert lines[-1] == "231 of 231 selected models would run"
    code, everything = cli("plan", "--all", project=project, target=duckdb_url)
    assert code == 0 and sum(1 for line in everything.splitlines() if "  run  " in line) == 231
    code, small = cli("plan", "late", project=project, target=duckdb_url)
    assert code == 0 and "not listed" not in small
