"""Where each node of the lineage graph sits on the page: columns by dependency depth.

A node's column is one more than its deepest parent's (sources and models reading
nothing managed sit in column 0). Within a column nodes are ordered by the mean row of
their parents (the barycenter heuristic, one sweep left to right), which keeps most
edges short and uncrossed without a layout library; ties break by name, so the picture
is the same run after run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

COLUMN_WIDTH = 260  # pixels between the left edges of two columns
ROW_HEIGHT = 44  # pixels between the tops of two nodes of a column


@dataclass(frozen=True)
class Position:
    column: int
    row: float

    @property
    def x(self) -> int:
        return self.column * COLUMN_WIDTH

    @property
    def y(self) -> int:
        return round(self.row * ROW_HEIGHT)


def layout(order: Sequence[str], parents: Mapping[str, Sequence[str]]) -> dict[str, Position]:
    """Positions of ``order`` (nodes in a topological order) given each node's parents
    (among ``order``; others are ignored)."""
    column: dict[str, int] = {}
    for node in order:
        known = [column[p] for p in parents.get(node, ()) if p in column]
        column[node] = max(known) + 1 if known else 0
    by_column: dict[int, list[str]] = {}
    for node in order:
        by_column.setdefault(column[node], []).append(node)
    row: dict[str, float] = {}
    positions: dict[str, Position] = {}
    for c in sorted(by_column):
        nodes = by_column[c]

        def barycenter(node: str) -> tuple[float, str]:
            placed = [row[p] for p in parents.get(node, ()) if p in row]
            return (sum(placed) / len(placed) if placed else float("inf"), node)

        wanted = {node: barycenter(node) for node in nodes}
        nodes.sort(key=wanted.__getitem__)
        free = 0.0
        for node in nodes:
            at = wanted[node][0]
            row[node] = at = free if at == float("inf") else max(at, free)
            positions[node] = Position(c, at)
            free = at + 1
    return positions
