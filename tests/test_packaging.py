"""What the wheel declares: its dependencies are what the package imports, its licence
file ships with it, and typer and rich are bounded so help output does not drift."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

import dbluigi

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(dbluigi.__file__).parent
# a distribution whose import name is not its name, lowercased with - as _
IMPORT_NAMES = {"PyYAML": "yaml", "psycopg2-binary": "psycopg2", "PyMySQL": "pymysql"}
# declared, never imported by dbluigi itself, and why
NOT_IMPORTED = {"pytz": "DuckDB's Python client needs it for TIMESTAMPTZ values"}


def project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared() -> dict[str, str]:
    """Each dependency's import name, by distribution name (``sqlglot[c]`` is sqlglot)."""
    names = {}
    for requirement in project()["dependencies"]:  # type: ignore[attr-defined]
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert match, requirement
        name = match.group()
        names[name] = IMPORT_NAMES.get(name, name.lower().replace("-", "_"))
    return names


def imported() -> set[str]:
    """The top-level names of every absolute import in the package, lazy ones too, that
    are neither the standard library nor dbluigi."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "dbluigi"}


def test_every_third_party_import_is_a_declared_dependency() -> None:
    assert imported() - set(declared().values()) == set()


def test_every_declared_dependency_is_imported() -> None:
    unused = {name for name, module in declared().items() if module not in imported()}
    assert unused == set(NOT_IMPORTED)


def test_help_output_libraries_have_an_upper_bound() -> None:
    bounded = {
        name: requirement
        for requirement in project()["dependencies"]  # type: ignore[attr-defined]
        if (name := re.split(r"[<>=\[;]", requirement)[0]) in ("typer", "rich")
    }
    assert set(bounded) == {"typer", "rich"}
    assert all("<" in requirement for requirement in bounded.values()), bounded


def test_the_licence_file_ships_in_the_wheel() -> None:
    metadata = project()
    assert metadata["license"] == "MIT"
    assert metadata["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the dbluigi authors" in text
