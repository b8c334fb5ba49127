"""The dependency graph: nodes are relations, edges point from producer to reader.

Plain data with a deterministic topological order (ties broken by name), so
``plan``, ``lineage`` and the build agree run after run.

Most edges are dependencies: the child reads what the parent built, so a failed
parent skips the child and a rebuilt parent makes it stale. An edge of reason
``waits`` only orders: a check query of the child reads the parent as it is
published, so the child runs after the parent settles, whatever its outcome.
``parents``, ``children``, ``upstream`` and ``downstream`` follow dependencies
only; ``order`` honours both.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from dbluigi.errors import CycleError


class Edge(NamedTuple):
    """``parent`` must be built before ``child``; ``reason`` says why.

    A named tuple: a project of 10,000 models makes, hashes and sorts tens of thousands
    of edges on every load, and tuples do that in C."""

    parent: str
    child: str
    reason: str  # "reads" | "depends" | "writes" | "waits"

    @property
    def orders_only(self) -> bool:
        """An ordering edge (a check reads the parent): no dependency, no staleness."""
        return self.reason == WAITS


WAITS = "waits"


@dataclass(frozen=True)
class Graph:
    nodes: tuple[str, ...]
    edges: tuple[Edge, ...]
    files: Mapping[str, str] = field(default_factory=dict)  # node -> file, for cycle messages

    @cached_property
    def _parents(self) -> dict[str, set[str]]:
        parents: dict[str, set[str]] = {n: set() for n in self.nodes}
        for edge in self.edges:
            if not edge.orders_only:
                parents[edge.child].add(edge.parent)
        return parents

    @cached_property
    def _children(self) -> dict[str, set[str]]:
        children: dict[str, set[str]] = {n: set() for n in self.nodes}
        for edge in self.edges:
            if not edge.orders_only:
                children[edge.parent].add(edge.child)
        return children

    @cached_property
    def _waits(self) -> dict[str, set[str]]:
        waits: dict[str, set[str]] = {n: set() for n in self.nodes}
        for edge in self.edges:
            if edge.orders_only:
                waits[edge.child].add(edge.parent)
        return waits

    def parents(self, node: str) -> frozenset[str]:
        return frozenset(self._parents[node])

    def children(self, node: str) -> frozenset[str]:
        return frozenset(self._children[node])

    def waits_for(self, node: str) -> frozenset[str]:
        """Nodes ``node`` runs after without depending on them (``waits`` edges)."""
        return frozenset(self._waits[node])

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Topological order, ties by name; raises CycleError with the full cycle.

        Kahn's algorithm in waves: every node whose parents are all placed, sorted by
        name, then the nodes those release, and so on."""
        before = {n: self._parents[n] | self._waits[n] for n in self.nodes}
        after: dict[str, list[str]] = {n: [] for n in self.nodes}
        missing: dict[str, int] = {}
        for node, parents in before.items():
            missing[node] = len(parents)
            for parent in parents:
                after[parent].append(node)
        result: list[str] = []
        ready = sorted(n for n, count in missing.items() if count == 0)
        while ready:
            result.extend(ready)
            released = []
            for node in ready:
                for child in after[node]:
                    missing[child] -= 1
                    if missing[child] == 0:
                        released.append(child)
            ready = sorted(released)
        if len(result) < len(before):
            sorter = graphlib.TopologicalSorter(before)
            try:
                sorter.prepare()
            except graphlib.CycleError as exc:
                cycle = list(exc.args[1])
                raise CycleError(cycle, sorted({self.files.get(n, n) for n in cycle})) from None
        return tuple(result)

    @cached_property
    def position(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.order)}

    def upstream(self, nodes: Iterable[str]) -> set[str]:
        """Every ancestor of ``nodes`` (not including them)."""
        return _closure(nodes, self._parents)

    def downstream(self, nodes: Iterable[str]) -> set[str]:
        """Every descendant of ``nodes`` (not including them)."""
        return _closure(nodes, self._children)

    def waited_by(self, node: str) -> frozenset[str]:
        """Nodes that wait for ``node`` (``waits`` edges)."""
        return frozenset(self._waited_by[node])

    @cached_property
    def _waited_by(self) -> dict[str, set[str]]:
        waited: dict[str, set[str]] = {n: set() for n in self.nodes}
        for child, parents in self._waits.items():
            for parent in parents:
                waited[parent].add(child)
        return waited

    def edges_between(self, parent: str, child: str) -> list[Edge]:
        return [e for e in self.edges if e.parent == parent and e.child == child]


def _closure(start: Iterable[str], step: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        for nxt in step[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen
