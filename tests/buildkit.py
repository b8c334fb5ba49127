"""Helpers for build tests: run the CLI, copy the example, read the target."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dbluigi.cli import app
from dbluigi.documents import schema_text
from dbluigi.targets import open_target

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "project"
runner = CliRunner()


def copy_example(tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".dbluigi", "exports"))
    return dest


def cli(*args: str, project: Path, target: str) -> tuple[int, str]:
    """Run a dbluigi command in-process; returns (exit code, output)."""
    result = runner.invoke(app, [*args, "--project", str(project), "--target", target])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def build_json(
    *args: str, project: Path, target: str, command: str = "build"
) -> tuple[int, dict[str, Any]]:
    """Run a command with ``--json``; returns (exit code, what it printed on stdout)."""
    arguments = [command, *args, "--json", "--project", str(project), "--target", target]
    result = runner.invoke(app, arguments)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    payload = json.loads(result.stdout)  # warnings go to stderr
    validate(payload)
    return result.exit_code, payload


def validate(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` checked against the JSON Schema its ``schema`` field names, as shipped
    in the package (``dbluigi/schemas``); returns it."""
    import jsonschema

    kind = re.fullmatch(r"dbluigi/([a-z-]+)/v1", payload["schema"])
    assert kind, payload["schema"]
    schema = json.loads(schema_text(kind.group(1)))
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(payload)
    return payload


def statuses(payload: dict[str, Any]) -> dict[str, str]:
    return {r["model"]: r["status"] for r in payload["tasks"]}


def ran(payload: dict[str, Any]) -> set[str]:
    return {r["model"] for r in payload["tasks"] if r["status"] != "up to date"}


def query(
    target: str, project: Path, sql: str, params: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    session = open_target(target, project_dir=project).connect()
    try:
        return list(session.query(sql, params).rows)
    finally:
        session.close()


def cli_process(
    *args: str, project: Path, target: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Run dbluigi in a separate process (for crashes and concurrency)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dbluigi.cli", *args, "--project", str(project), "--target", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
