"""Every JSON document dbluigi prints or writes validates against the JSON Schema shipped
in the package (``dbluigi/schemas``), names it in ``schema``, and writes its timestamps in
ISO 8601 UTC with a Z."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dbluigi.artifact import build_artifact
from dbluigi.cli import _cycle_json
from dbluigi.documents import KINDS, RUN, iso_utc, schema_id, schema_text
from dbluigi.errors import ProjectError
from dbluigi.runner import RunResult
from dbluigi.state import TaskRecord, TaskResult
from dbluigi.watch import Cycle, Trigger
from tests.buildkit import build_json, cli, validate
from tests.helpers import write_project

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

PROJECT = {
    "dbluigi.toml": '[project]\ndefault_schema = "main"\n',
    "raw/people.csv": "id,name\n1,ann\n2,bob\n",
    "people.sql": "-- check: rows > 0\n-- check: unique(id)\nselect id, name from raw.people",
    "names.sql": "select name from main.people",
}


def _lines(output: str) -> list[dict[str, Any]]:
    return [validate(json.loads(line)) for line in output.splitlines() if line.strip()]


def test_every_kind_ships_a_draft_2020_12_schema() -> None:
    folder = Path(__file__).resolve().parent.parent / "dbluigi" / "schemas"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(KINDS)
    for kind in KINDS:
        schema = json.loads(schema_text(kind))
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert (
            schema["properties"]["schema"]
            == {"const": schema_id(kind)}
            == {"const": f"dbluigi/{kind}/v1"}
        )
        assert "schema" in schema["required"]


def test_timestamps_are_iso_utc_with_a_z() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)  # the audit tables' naive UTC
    assert iso_utc(naive) == "2026-01-02T03:04:05.000000Z"
    local = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert iso_utc(local) == iso_utc(naive.replace(tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    assert iso_utc(None) is None


def test_every_json_output_validates_on_the_target(tmp_path: Path, target_url: str) -> None:
    project = write_project(tmp_path / "p", PROJECT)
    # build: success; the artifact is the same document (build_json validates each payload)
    code, built = build_json(project=project, target=target_url)
    assert code == 0 and built["schema"] == schema_id(RUN)
    artifact = validate(json.loads(Path(built["artifact"]).read_text()))
    assert artifact == built
    latest = validate(json.loads((project / ".dbluigi/runs/latest.json").read_text()))
    assert latest == built
    assert all(ISO_Z.match(t["started_at"]) for t in built["tasks"])
    assert all(ISO_Z.match(a["started_at"]) for t in built["tasks"] for a in t["attempts"])
    assert ISO_Z.match(built["started_at"]) and ISO_Z.match(built["finished_at"])

    # history: the same run, its timestamps as the artifact writes them
    code, history = build_json(project=project, target=target_url, command="history")
    assert code == 0 and history["schema"] == "dbluigi/history/v1"
    (run,) = history["runs"]
    assert (run["run_id"], run["started_at"]) == (built["run_id"], built["started_at"])
    assert run["finished_at"] == built["finished_at"]
    started = {t["model"]: t["started_at"] for t in built["tasks"]}
    assert {t["model"]: t["started_at"] for t in history["tasks"]} == started
    code, slow = build_json("--slow", project=project, target=target_url, command="history")
    assert code == 0 and slow["schema"] == "dbluigi/slow-models/v1"
    code, history = build_json(
        "--model", "names", project=project, target=target_url, command="history"
    )
    assert code == 0 and [t["model"] for t in history["tasks"]] == ["main.names"]

    # nothing stale: every task up to date, with no attempts
    code, again = build_json(project=project, target=target_url)
    assert code == 0 and {t["status"] for t in again["tasks"]} == {"up to date"}

    # plan, rebuild, check
    code, plan = build_json(project=project, target=target_url, command="plan")
    assert code == 0 and plan["schema"] == "dbluigi/plan/v1" and len(plan["models"]) == 3
    code, rebuilt = build_json("names", project=project, target=target_url, command="rebuild")
    assert code == 0 and [t["reason"] for t in rebuilt["tasks"]] == ["forced"]
    code, checked = build_json(project=project, target=target_url, command="check")
    assert code == 0 and [t["model"] for t in checked["tasks"]] == ["main.people"]

    # show, ls (a document a line), lineage (graph and column)
    code, shown = build_json("main.people", project=project, target=target_url, command="show")
    assert code == 0 and shown["schema"] == "dbluigi/show/v1" and len(shown["rows"]) == 2
    code, shown = build_json(
        "--sql", "select 1 as n", project=project, target=target_url, command="show"
    )
    assert code == 0 and shown["rows"] == [{"n": 1}]
    code, output = cli("ls", "--output", "json", project=project, target=target_url)
    assert code == 0
    assert [r["relation"] for r in _lines(output)] == ["raw.people", "main.people", "main.names"]
    code, output = cli("lineage", "--format", "json", project=project, target=target_url)
    assert code == 0 and validate(json.loads(output))["schema"] == "dbluigi/lineage/v1"
    code, output = cli(
        "lineage", "main.names.name", "-f", "json", project=project, target=target_url
    )
    assert code == 0 and validate(json.loads(output))["column"]["column"] == "name"

    # failure: a build, then retry (what failed), then retry with nothing left
    (project / "people.sql").write_text("select cast('x' as integer) as id")
    code, failed = build_json(project=project, target=target_url)
    assert code == 1 and failed["counts"]["failed"] == 1 and failed["counts"]["skipped"] == 1
    (broken,) = [t for t in failed["tasks"] if t["status"] == "failed"]
    assert broken["failure_class"] == "runtime" and len(broken["attempts"]) == 1
    code, retried = build_json(project=project, target=target_url, command="retry")
    assert code == 1 and retried["command"] == "retry"
    (project / "people.sql").write_text(PROJECT["people.sql"])
    code, retried = build_json(project=project, target=target_url, command="retry")
    assert code == 0 and {t["model"] for t in retried["tasks"]} == {"main.people", "main.names"}
    code, nothing = build_json(project=project, target=target_url, command="retry")
    assert code == 0 and nothing["run_id"] is None and nothing["tasks"] == []
    # check failing
    (project / "people.check.sql").write_text("select id from main.people where id = 1")
    code, checked = build_json("main.people", project=project, target=target_url, command="check")
    assert code == 1 and [t["status"] for t in checked["tasks"]] == ["failed"]


def test_watch_cycle_lines_validate() -> None:
    at = datetime(2026, 5, 1, 12, 0, 0)
    records = [TaskRecord("r1", "main.a", "success", at, 0.25, rows=1)]
    results = [
        TaskResult("main.a", "table", "success", "new", last=records[0], attempts=1),
        TaskResult("main.b", "view", "up to date", "up to date"),
    ]
    run = {"run_id": "r1", "command": "build", "started_at": at, "finished_at": at}
    result = RunResult("r1", tuple(results), document=build_artifact(run, records, results))
    local = datetime(2026, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    built = Cycle(Trigger(1, "start"), local, 0.5, result=result, target="duckdb:///x.db")
    line = validate(_cycle_json(built))
    assert line["schema"] == "dbluigi/watch-cycle/v1"
    assert line["started_at"] == "2026-05-01T12:00:00.000000Z"
    assert line["run"]["run_id"] == "r1" and line["run"]["tasks"][1]["status"] == "up to date"
    broken = Cycle(
        Trigger(2, "change", ("a.sql",)),
        local,
        0.1,
        error=ProjectError("bad header", path="a.sql", line=1),
        next_check_at=local + timedelta(seconds=30),
    )
    line = validate(_cycle_json(broken))
    assert line["run"] is None and line["error"]["file"] == "a.sql" and line["exit_code"] == 2
    assert line["next_check_at"] == "2026-05-01T12:00:30.000000Z"


def test_a_json_command_that_stops_prints_an_error_document(tmp_path: Path) -> None:
    """A command asked for JSON (``--json``, ``--format json``, ``--output json``) that stops
    before its document (a usage error, a broken project, a selector matching nothing)
    prints ``dbluigi/error/v1`` on stdout, so a script parsing stdout reads why; stderr
    says it as before, and the exit status is 2."""
    from typer.testing import CliRunner

    from dbluigi.cli import app

    project = tmp_path / "p"
    write_project(project, {**PROJECT, "broken.sql": "-- dependz: main.people\nselect 1 as x"})
    where = ["--project", str(project), "--target", f"duckdb:///{tmp_path / 't.duckdb'}"]

    def stopped(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(app, [*args, *where])
        assert result.exit_code == 2, result.output
        assert "error" in result.stderr.lower() or "Usage" in result.stderr
        return validate(json.loads(result.stdout))

    broken = stopped("build", "--json")
    assert broken["schema"] == "dbluigi/error/v1" and broken["command"] == "build"
    assert broken["exit_code"] == 2
    assert broken["error"]["kind"] == "HeaderError" and broken["error"]["file"] == "broken.sql"
    assert broken["error"]["line"] == 1 and "dependz" in broken["error"]["message"]
    assert broken["error"]["hint"] == "did you mean 'depends'?"
    (project / "broken.sql").unlink()
    usage = stopped("build", "--json", "--no-such-option")
    assert (
        usage["error"]["kind"] == "UsageError" and "--no-such-option" in usage["error"]["message"]
    )
    assert stopped("rebuild", "--workers", "lots", "--json")["error"]["kind"] == "UsageError"
    nothing = stopped("plan", "nosuchmodel", "--json")
    assert nothing["command"] == "plan" and nothing["error"]["kind"] == "SelectorError"
    assert stopped("lineage", "nosuchmodel", "--format", "json")["command"] == "lineage"
    assert stopped("ls", "nosuchmodel", "-o", "json")["error"]["kind"] == "SelectorError"
    assert stopped("history", "--json", "--limit", "-3")["command"] == "history"
    # asked for text, an error stays on stderr alone
    text = CliRunner().invoke(app, ["plan", "nosuchmodel", *where])
    assert text.exit_code == 2 and text.stdout == ""


def test_the_list_alias_asked_for_json_prints_an_error_document(tmp_path: Path) -> None:
    """``dbluigi list nosuchmodel -o json`` (``ls`` under its other name) printed nothing
    on stdout where ``dbluigi ls nosuchmodel -o json`` printed ``dbluigi/error/v1``: a
    script parsing stdout failed on empty input."""
    from typer.testing import CliRunner

    from dbluigi.cli import app

    project = tmp_path / "p"
    write_project(project, PROJECT)
    where = ["--project", str(project), "--target", f"duckdb:///{tmp_path / 't.duckdb'}"]
    for name in ("ls", "list"):
        result = CliRunner().invoke(app, [name, "nosuchmodel", "-o", "json", *where])
        assert result.exit_code == 2, result.output
        error = validate(json.loads(result.stdout))
        assert error["command"] == name and error["error"]["kind"] == "SelectorError"
        result = CliRunner().invoke(app, [name, "-o", "json", "--no-such-option", *where])
        assert result.exit_code == 2, result.output
        assert validate(json.loads(result.stdout))["error"]["kind"] == "UsageError"


def test_an_option_named_like_a_json_one_asks_for_no_json(tmp_path: Path) -> None:
    """``dbluigi docs -o json --typo`` (``-o`` is ``docs --out``: a folder named json)
    printed ``dbluigi/error/v1`` on stdout, though docs prints no JSON; ``-ojson``, which
    asks ls for JSON, printed none."""
    from typer.testing import CliRunner

    from dbluigi.cli import app

    docs = CliRunner().invoke(app, ["docs", "-o", "json", "--typo"])
    assert docs.exit_code == 2 and docs.stdout == ""
    ls = CliRunner().invoke(app, ["ls", "-ojson", "--typo", "--project", str(tmp_path)])
    assert ls.exit_code == 2
    assert validate(json.loads(ls.stdout))["error"]["kind"] == "UsageError"


def test_every_document_gives_the_target_as_its_url(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``target`` is the target's URL, password masked, in every document that has it (and
    ``RunResult.target``), on a named target that moves schemas too; ``target_name`` and
    ``target_schemas`` say which ``[targets.NAME]`` ran and where it builds the project's
    schemas. The run document gave the URL and the moves in words (``dbluigi.runs.target``'s
    spelling), while ``plan --json`` and ``RunResult`` gave the URL alone."""
    import dbluigi
    from dbluigi.targets import open_target

    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    toml = (
        PROJECT["dbluigi.toml"]
        + f'\n[targets.dev]\nurl = "{target_url}"\nschema_suffix = "_dev"\n'
        + 'schemas = { raw = "dev_raw" }\n'
    )
    project = write_project(tmp_path / "p", {**PROJECT, "dbluigi.toml": toml})
    url = open_target(target_url, project_dir=project).display_url
    dev = {
        "target": url,
        "target_name": "dev",
        "target_schemas": {"main": "main_dev", "raw": "dev_raw"},
    }

    def named(payload: dict[str, Any]) -> dict[str, Any]:
        return {key: payload.get(key) for key in dev}

    code, plan = build_json(project=project, target="dev", command="plan")
    assert code == 0 and named(plan) == dev, plan
    code, built = build_json(project=project, target="dev")
    assert code == 0 and named(built) == dev, built
    assert named(json.loads(Path(built["artifact"]).read_text())) == dev
    code, checked = build_json(project=project, target="dev", command="check")
    assert code == 0 and named(checked) == dev, checked
    code, nothing = build_json(project=project, target="dev", command="retry")
    assert code == 0 and nothing["run_id"] is None and named(nothing) == dev, nothing
    result = dbluigi.build(project, target="dev")
    assert result.ok and result.target == url and named(result.document or {}) == dev
    plain = {"target": url, "target_name": None, "target_schemas": {}}
    for command in ("plan", "build", "check", "retry"):
        code, payload = build_json(project=project, target=target_url, command=command)
        assert code == 0 and named(payload) == plain, (command, payload)
