"""File inputs (`-- inputs:` / `# inputs:`): files named by glob join a model's fingerprint,
so changing, adding or deleting one makes the model and its downstream stale."""

from __future__ import annotations

import json
from pathlib import Path

from tests.buildkit import build_json, cli, query, ran
from tests.helpers import write_project

LOG_STEP = """\
# inputs: data/*.log
def run(ctx):
    assert ctx.project_dir.is_dir() and (ctx.project_dir / "dbluigi.toml").exists()
    lines = [line for path in ctx.inputs for line in path.read_text().splitlines()]
    names = ",".join(path.name for path in ctx.inputs)
    ctx.execute(
        f"create table {ctx.table} (n integer, files text)",
    )
    ctx.execute(f"insert into {ctx.table} values (%s, %s)", [len(lines), names])
"""


def log_project(root: Path) -> Path:
    return write_project(
        root,
        {
            "dbluigi.toml": '[project]\ndefault_schema = "main"\n',
            "access.py": LOG_STEP,
            "data/access.log": "GET /\nGET /a\n",
            "report.sql": "select n * 10 as n10 from main.access\n",
        },
    )


def test_a_step_reading_a_file_is_stale_after_the_file_changes(
    tmp_path: Path, duckdb_url: str
) -> None:
    root = log_project(tmp_path / "project")
    code, first = build_json(project=root, target=duckdb_url)
    assert code == 0, first
    assert query(duckdb_url, root, "select n, files from main.access") == [(2, "access.log")]
    assert ran(build_json(project=root, target=duckdb_url)[1]) == set()

    # a line appended: the step and its downstream run again
    with (root / "data/access.log").open("a") as log:
        log.write("GET /b\n")
    planned = json.loads(cli("plan", "--json", project=root, target=duckdb_url)[1])["models"]
    reasons = {m["model"]: m["reason"] for m in planned}
    assert reasons == {
        "main.access": "input file changed: data/access.log",
        "main.report": "upstream rebuilt",
    }
    code, second = build_json(project=root, target=duckdb_url)
    assert code == 0 and ran(second) == {"main.access", "main.report"}
    assert query(duckdb_url, root, "select n10 from main.report") == [(30,)]
    assert ran(build_json(project=root, target=duckdb_url)[1]) == set()

    # a matching file added, then one deleted
    (root / "data/error.log").write_text("oops\n")
    code, third = build_json(project=root, target=duckdb_url)
    assert ran(third) == {"main.access", "main.report"}
    assert query(duckdb_url, root, "select n, files from main.access") == [
        (4, "access.log,error.log")
    ]
    (root / "data/access.log").unlink()
    code, fourth = build_json(project=root, target=duckdb_url)
    assert ran(fourth) == {"main.access", "main.report"}
    assert query(duckdb_url, root, "select n, files from main.access") == [(1, "error.log")]
    # a file the glob does not match changes nothing
    (root / "data/notes.txt").write_text("x\n")
    assert ran(build_json(project=root, target=duckdb_url)[1]) == set()


def test_a_sql_model_declares_inputs_and_a_glob_matching_nothing_is_allowed(
    tmp_path: Path, target_url: str
) -> None:
    root = write_project(
        tmp_path / "project",
        {
            "dbluigi.toml": '[project]\ndefault_schema = "main"\n',
            "load_codes.sql": "-- inputs: data/*.txt\ncreate table main.codes as select 1 as n\n",
        },
    )
    code, out = cli("plan", project=root, target=target_url)
    assert code == 0 and "inputs: no file matches data/*.txt" in out
    code, first = build_json(project=root, target=target_url)
    assert code == 0 and ran(first) == {"main.load_codes"}
    assert ran(build_json(project=root, target=target_url)[1]) == set()

    (root / "data").mkdir()
    (root / "data/codes.txt").write_text("a,b\n")
    planned = json.loads(cli("plan", "--json", project=root, target=target_url)[1])["models"]
    assert planned[0]["reason"] == "input file changed: data/codes.txt (added)"
    assert planned[0]["inputs"] == ["data/codes.txt"]
    assert ran(build_json(project=root, target=target_url)[1]) == {"main.load_codes"}
    assert ran(build_json(project=root, target=target_url)[1]) == set()

    (root / "data/codes.txt").write_text("a,c\n")  # the same size: the content counts
    (root / "data/more.txt").write_text("x\n")
    code, out = cli("plan", project=root, target=target_url)
    assert "input files changed: data/codes.txt, data/more.txt (added)" in out
    (root / "data/codes.txt").unlink()
    (root / "data/more.txt").unlink()
    code, payload = build_json(project=root, target=target_url)
    assert payload["tasks"][0]["reason"] == "input file changed: data/codes.txt (deleted)"


def test_an_input_outside_the_project_is_a_project_error(tmp_path: Path, duckdb_url: str) -> None:
    root = write_project(
        tmp_path / "project",
        {
            "steps/clean.py": "# depends: main.x\n# inputs: ../shared/*.log\ndef run(ctx):\n    pass\n"
        },
    )
    code, out = cli("plan", project=root, target=duckdb_url)
    assert code == 2
    assert "steps/clean.py:2" in out and "outside the project folder" in out


def test_a_modifier_reading_a_file_replays_the_build_it_belongs_to(
    tmp_path: Path, duckdb_url: str
) -> None:
    fix = (
        "# modifies: main.base\n# inputs: data/fix.txt\n"
        "def run(ctx):\n"
        "    value = int((ctx.project_dir / 'data/fix.txt').read_text())\n"
        "    assert [p.name for p in ctx.inputs] == ['fix.txt']\n"
        "    ctx.execute(f\"update {ctx.ref('main.base')} set n = %s\", [value])\n"
    )
    root = write_project(
        tmp_path / "project",
        {
            "dbluigi.toml": '[project]\ndefault_schema = "main"\n',
            "base.sql": "select 1 as n\n",
            "fix.py": fix,
            "data/fix.txt": "5\n",
        },
    )
    assert build_json(project=root, target=duckdb_url)[0] == 0
    assert query(duckdb_url, root, "select n from main.base") == [(5,)]
    (root / "data/fix.txt").write_text("7\n")
    reasons = {
        m["model"]: m["reason"]
        for m in json.loads(cli("plan", "--json", project=root, target=duckdb_url)[1])["models"]
    }
    assert reasons["main.base"] == "input file changed: data/fix.txt"
    code, payload = build_json(project=root, target=duckdb_url)
    assert code == 0 and ran(payload) == {"main.base", "main.fix"}
    assert query(duckdb_url, root, "select n from main.base") == [(7,)]
