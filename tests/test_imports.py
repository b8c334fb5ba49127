"""The package's import graph has no cycles.

Every import of a ``dbluigi`` module counts: at the top of a module, inside a function
(a lazy import only moves the cycle to run time) and under ``if TYPE_CHECKING`` (a
cycle there still ties the modules together for a reader and for mypy). Importing
``dbluigi.x.y`` runs ``dbluigi/x/__init__.py`` first, so it is an edge to the package
``dbluigi.x`` too, except from a module inside that package (its package is already
being imported).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import dbluigi

PACKAGE = Path(dbluigi.__file__).parent

# Modules whose cycles are gone (issue 13, the sources package); none may be in a cycle.
RESTRUCTURED = (
    "dbluigi.config",
    "dbluigi.configfile",
    "dbluigi.sources",
    "dbluigi.suggest",
    "dbluigi.targets",
    "dbluigi.urls",
)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("dbluigi", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The dbluigi modules ``module`` imports anywhere in its source."""
    known = set(known)
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for end in range(2, len(parts) + 1):  # the module and the packages it sits in
            name = ".".join(parts[:end])
            inside = module == name or module.startswith(name + ".")
            if name in known and (end == len(parts) or not inside):
                edges.add(name)
    edges.discard(module)
    return edges


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {module: imported(module, path, found) for module, path in found.items()}


def tangles(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's strongly
    connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycles(
    graph: Mapping[str, set[str]], groups: Iterable[set[str]] | None = None
) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) in each group of modules that import each other."""
    return [_cycle_in(graph, group) for group in (tangles(graph) if groups is None else groups)]


def _cycle_in(graph: Mapping[str, set[str]], group: set[str]) -> list[str]:
    """The shortest way back to the group's first module, through the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph[node] & group):
                if other == start:
                    return [*paths[node], start]
                if other not in paths:
                    paths[other] = [*paths[node], other]
                    following.append(other)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group has one


def _shown(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in found)


def _involves(group: set[str], prefixes: Iterable[str]) -> bool:
    return any(m == p or m.startswith(p + ".") for m in group for p in prefixes)


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "dbluigi.targets.base" in graph["dbluigi.seeds"]  # top level
    assert "dbluigi.targets" in graph["dbluigi.seeds"]  # the package it sits in
    assert "dbluigi.targets" not in graph["dbluigi.targets.duckdb"]  # its own package
    assert "dbluigi.scaffold" in graph["dbluigi.cli"]  # inside a function
    assert "dbluigi.plan" in graph["dbluigi.cli"]  # under TYPE_CHECKING


def test_cycles_are_found_and_shown() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert tangles(graph) == [{"a", "b", "c"}]
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_involves_the_restructured_modules() -> None:
    graph = import_graph()
    tangled = [group for group in tangles(graph) if _involves(group, RESTRUCTURED)]
    assert not tangled, "import cycles:\n" + _shown(cycles(graph, tangled))


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + _shown(found)
