"""The README opens with the two set-up commands, and CI runs the second one verbatim."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_two_setup_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert text.index("```bash") < text.index("\n## ")  # before any section
    build, test = _setup_commands()
    assert build.endswith("dbluigi build --project project")
    assert test.endswith("pytest -q")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test = _setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci
