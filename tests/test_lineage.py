"""Lineage renderings: text, mermaid, dot and json describe the same graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbluigi.lineage import render_lineage
from dbluigi.project import load_project
from tests.helpers import write_project

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parent.parent / "project"


def test_json_lists_nodes_and_edges_of_the_example() -> None:
    project = load_project(EXAMPLE, use_cache=False)
    data = json.loads(render_lineage(project, fmt="json"))
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["staging.agencies"]["kind"] == "table"
    assert nodes["staging.agencies"]["file"] == "staging/agencies.sql"
    assert nodes["staging.agencies"]["checks"] == [
        {
            "file": "staging/agencies.check.sql",
            "line": line,
            "owner": "staging.agencies",
            "gate": "staging.agencies",
            "waits": [],
            "format": "sql",
        }
        for line in (1, 7)
    ]
    assert nodes["api.cde_agencies"]["tags"] == ["api"]
    edges = {(e["from"], e["to"]) for e in data["edges"]}
    assert edges == {(e.parent, e.child) for e in project.graph.edges}
    assert ("reporting.agency_reporting", "api.cde_agencies") in edges


def test_text_mermaid_and_dot(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "a.sql": "select * from raw.src",
            "b.sql": "select * from main.a",
            "a.check.sql": "select * from main.a a join main.b b using (id) where a.x <> b.x",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    text = render_lineage(project, fmt="text")
    assert text.splitlines()[0] == "raw.src [source]"
    assert "└── main.a [table]" in text
    assert "checks: a.check.sql:1 gates main.b's swap (it reads main.b)" in text
    assert "checks: a.check.sql:1 (a check of main.a, run at main.b: it reads main.b)" in text
    mermaid = render_lineage(project, fmt="mermaid")
    assert mermaid.startswith("flowchart LR")
    assert "n_main_a --> n_main_b" in mermaid
    assert 'n_raw_src[("raw.src")]' in mermaid
    dot = render_lineage(project, fmt="dot")
    assert dot.startswith("digraph dbluigi {") and dot.endswith("}")
    assert '"main.a" -> "main.b" [reason="reads"];' in dot
