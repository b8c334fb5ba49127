"""Render the graph for people and tools: text tree, Mermaid, Graphviz dot, JSON, and an
interactive HTML page (``dbluigi.docs``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from dbluigi.documents import LINEAGE, document
from dbluigi.graph import Edge
from dbluigi.project import Project

FORMATS = ("text", "mermaid", "dot", "json", "html")


def subgraph(project: Project, models: Iterable[str] | None = None) -> tuple[list[str], list[Edge]]:
    """Nodes (the models plus the sources they read) in run order, and the edges among them."""
    chosen = set(project.models) if models is None else set(models)
    chosen |= {p for m in list(chosen) for p in project.graph.parents(m) if p not in project.models}
    nodes = [n for n in project.graph.order if n in chosen]
    edges = [e for e in project.graph.edges if e.parent in chosen and e.child in chosen]
    return nodes, edges


def render_lineage(project: Project, models: Iterable[str] | None = None, fmt: str = "text") -> str:
    nodes, edges = subgraph(project, models)
    if fmt == "html":
        from dbluigi.docs import lineage_html

        return lineage_html(project, nodes)
    renderer = {"text": _text, "mermaid": _mermaid, "dot": _dot, "json": _json}[fmt]
    return renderer(project, nodes, edges)


def _label(project: Project, node: str) -> str:
    model = project.models.get(node)
    return f"{node} [{model.kind}]" if model else f"{node} [source]"


def _check_lines(project: Project, node: str) -> list[str]:
    return project.check_notes(node)


def _text(project: Project, nodes: list[str], edges: list[Edge]) -> str:
    children: dict[str, list[str]] = {n: [] for n in nodes}
    has_parent: set[str] = set()
    for e in edges:
        if e.orders_only:
            continue  # shown with the checks that wait
        if e.child not in children[e.parent]:
            children[e.parent].append(e.child)
        has_parent.add(e.child)
    position = project.graph.position
    for kids in children.values():
        kids.sort(key=position.__getitem__)
    out: list[str] = []
    shown: set[str] = set()

    def walk(node: str, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        if node in shown:
            out.append(f"{prefix}{branch}{node} (see above)")
            return
        shown.add(node)
        out.append(f"{prefix}{branch}{_label(project, node)}")
        inner = prefix + ("" if root else ("    " if last else "│   "))
        notes = _check_lines(project, node)
        kids = children[node]
        for note in project.write_notes(node):
            out.append(f"{inner}{'│' if kids or notes else ' '}   {note}")
        if notes:
            out.append(f"{inner}{'│' if kids else ' '}   checks: {' · '.join(notes)}")
        for i, kid in enumerate(kids):
            walk(kid, inner, i == len(kids) - 1, False)

    for node in nodes:
        if node not in has_parent:
            walk(node, "", True, True)
    return "\n".join(out)


def _mermaid_id(node: str) -> str:
    return "n_" + re.sub(r"\W", "_", node)


def _mermaid(project: Project, nodes: list[str], edges: list[Edge]) -> str:
    lines = ["flowchart LR"]
    for n in nodes:
        model = project.models.get(n)
        if model:
            lines.append(f'    {_mermaid_id(n)}["{n}<br/><small>{model.kind}</small>"]')
        else:
            lines.append(f'    {_mermaid_id(n)}[("{n}")]')
    for e in edges:
        arrow = "-.->" if e.orders_only else "-->"
        label = "" if e.reason == "reads" else f"|{e.reason}|"
        lines.append(f"    {_mermaid_id(e.parent)} {arrow}{label} {_mermaid_id(e.child)}")
    return "\n".join(lines)


def _dot(project: Project, nodes: list[str], edges: list[Edge]) -> str:
    lines = ["digraph dbluigi {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for n in nodes:
        model = project.models.get(n)
        if model:
            lines.append(f'  "{n}" [label="{n}\\n{model.kind}"];')
        else:
            lines.append(f'  "{n}" [shape=cylinder, label="{n}\\nsource"];')
    for e in edges:
        style = (
            ', style=dashed, label="check waits"'
            if e.orders_only
            else (f', label="{e.reason}"' if e.reason != "reads" else "")
        )
        lines.append(f'  "{e.parent}" -> "{e.child}" [reason="{e.reason}"{style}];')
    lines.append("}")
    return "\n".join(lines)


def lineage_json(project: Project, nodes: list[str], edges: list[Edge]) -> dict[str, object]:
    out_nodes = []
    for n in nodes:
        model = project.models.get(n)
        checks = [
            {
                "file": c.path,
                "line": c.line,
                "owner": c.owner,
                "gate": c.gate,
                "waits": list(c.waits),
                "format": c.format,
            }
            for c in project.gated_checks(n)
        ]
        if model:
            out_nodes.append(
                {
                    "id": n,
                    "relation": n,
                    "kind": model.kind,
                    "file": model.path,
                    "tags": list(model.tags),
                    "description": model.header.description,
                    "header_checks": [c.text for c in model.header.checks],
                    "checks": checks,
                    "writes": project.write_notes(n),
                }
            )
        else:
            out_nodes.append(
                {
                    "id": n,
                    "relation": n,
                    "kind": "source",
                    "file": None,
                    "tags": [],
                    "checks": checks,
                }
            )
    out_edges = [{"from": e.parent, "to": e.child, "reason": e.reason} for e in edges]
    return {"nodes": out_nodes, "edges": out_edges}


def _json(project: Project, nodes: list[str], edges: list[Edge]) -> str:
    payload = document(LINEAGE, lineage_json(project, nodes, edges))
    return json.dumps(payload, indent=2)
