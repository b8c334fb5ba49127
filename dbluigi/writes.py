"""Producers and modifiers: who builds each relation, and who changes it afterwards.

Every relation the project writes has one *producer* — the model whose relation it is
(a query, a seed, a Python step, a source copy), or the ``sql`` model that CREATEs it —
and any number of *modifiers*: ``sql`` and ``python`` models that INSERT, UPDATE,
DELETE, MERGE, TRUNCATE, ALTER or index it (inferred, or declared with
``-- modifies:``). A relation's build is its producer followed by all its modifiers,
in order: the *chain*. It runs as one task, whose readers start only once every
modifier is applied; a change to any member replays the whole chain from its producer,
so a modifier never runs twice on the same rows.

A model writing a relation that no model produces (a table that was already in the
target) cannot be replayed: that is a project error, unless its header says
``-- unmanaged: true`` (it then runs once per change of its file, as a plain step).

This module only decides the chains and the edges they add to the graph; running one
is ``kinds.base.apply_modifiers`` and the ``sql`` kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dbluigi.errors import DuplicateRelationError, ProjectError
from dbluigi.graph import Edge


class Model(Protocol):
    """What this module reads of a ``project.Model``."""

    @property
    def relation(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def reads(self) -> tuple[str, ...]: ...
    @property
    def depends(self) -> tuple[str, ...]: ...
    @property
    def creates(self) -> tuple[str, ...]: ...
    @property
    def modifies(self) -> tuple[str, ...]: ...
    @property
    def publishes_relation(self) -> bool: ...
    @property
    def kind(self) -> str: ...
    @property
    def unmanaged(self) -> bool: ...
    def line_of_write(self, relation: str) -> int | None: ...


@dataclass(frozen=True)
class Chains:
    """The producer of each relation written in the project, and each producer's chain."""

    producer: Mapping[str, str] = field(default_factory=dict)  # relation -> producing model
    modifiers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # producer -> chain
    owner: Mapping[str, str] = field(default_factory=dict)  # modifier -> its producer

    def members(self, model: str) -> tuple[str, ...]:
        """The chain ``model`` belongs to: its producer and the producer's modifiers."""
        producer = self.owner.get(model, model)
        return (producer, *self.modifiers.get(producer, ()))


def find_chains(models: Mapping[str, Model]) -> tuple[Chains, set[Edge], set[str]]:
    """The chains of the project, the edges they add, and the relations that become nodes
    of the graph without being models (relations a ``sql`` model creates, and those an
    unmanaged model writes). Modifiers are listed in no particular order yet: the caller
    orders them by the graph (``order_chains``)."""
    producer: dict[str, str] = {}
    for model in models.values():
        if model.publishes_relation:
            producer[model.relation] = model.relation
    for model in models.values():
        for created in model.creates:
            other = producer.get(created)
            if other is not None and other != model.relation:
                raise DuplicateRelationError(
                    f"{models[other].path} and {model.path} both produce {created}",
                    path=model.path,
                    hint="a relation has one producer: make the other file modify it "
                    "(INSERT, UPDATE, ...) or give it another name",
                )
            producer[created] = model.relation
    edges: set[Edge] = set()
    nodes: set[str] = set()
    modifiers: dict[str, set[str]] = defaultdict(set)
    owner: dict[str, str] = {}
    readers: dict[str, set[str]] = defaultdict(set)
    for model in models.values():
        for read in (*model.reads, *model.depends):
            readers[read].add(model.relation)
    for model in models.values():
        for created in model.creates:
            edges.add(Edge(model.relation, created, "creates"))
            nodes.add(created)
    for model in models.values():
        if not model.modifies:
            continue
        if model.unmanaged:
            produced = [w for w in model.modifies if w in producer]
            if produced:
                raise ProjectError(
                    f"{model.relation} says -- unmanaged: true, but {produced[0]} is built "
                    f"by {producer[produced[0]]}: its changes would be lost at its next build",
                    path=model.path,
                    line=model.line_of_write(produced[0]),
                    hint="remove -- unmanaged: the file then modifies it in every build of "
                    "it (unmanaged is for tables no model produces)",
                )
            for written in model.modifies:
                edges.add(Edge(model.relation, written, "writes"))
                nodes.add(written)
            continue
        owners = {producer.get(w) for w in model.modifies}
        unproduced = [w for w in model.modifies if w not in producer]
        if unproduced:
            raise ProjectError(
                f"{model.relation} modifies {unproduced[0]}, which no model produces: "
                "dbluigi cannot rebuild it, so it cannot replay this change",
                path=model.path,
                line=model.line_of_write(unproduced[0]),
                hint="add a model that produces it (a query, a seed, or a sql file that "
                "CREATEs it), or, if it is another system's table and this file should "
                "run once per change, add -- unmanaged: true",
            )
        if len(owners) > 1:
            named = ", ".join(sorted(model.modifies))
            raise ProjectError(
                f"{model.relation} modifies {named}, which different models produce; a "
                "modifier belongs to one relation's build",
                path=model.path,
                hint="split the file: one file per relation it changes",
            )
        (chain,) = owners
        assert chain is not None
        if chain == model.relation:
            continue  # a sql producer changing what it just created: part of its own build
        if model.creates or model.publishes_relation:
            raise ProjectError(
                f"{model.relation} produces {', '.join(model.creates) or model.relation} and "
                f"modifies {', '.join(model.modifies)}, which {chain} produces: a file is a "
                "producer or a modifier of another's relation, not both",
                path=model.path,
                line=model.line_of_write(model.modifies[0]),
                hint="split the file: one that creates its tables, one that changes the others",
            )
        if models[chain].kind == "view":
            raise ProjectError(
                f"{model.relation} modifies {', '.join(model.modifies)}, a view ({chain}): a "
                "view holds no rows of its own to change",
                path=model.path,
                line=model.line_of_write(model.modifies[0]),
                hint=f"make {chain} a table (remove its -- kind: view), or change the tables "
                "it reads",
            )
        modifiers[chain].add(model.relation)
        owner[model.relation] = chain
        for written in model.modifies:
            edges.add(Edge(written, model.relation, "modifies"))
            for reader in readers.get(written, ()):
                if reader != model.relation and owner.get(reader) != chain:
                    edges.add(Edge(model.relation, reader, "modifies"))
    chains = Chains(producer, {p: tuple(sorted(m)) for p, m in modifiers.items()}, owner)
    return chains, edges, nodes


def replay_edges(
    models: Mapping[str, Model], chains: Chains, calls: frozenset[Edge] | set[Edge] = frozenset()
) -> set[Edge]:
    """A producer runs its modifiers too, so it depends on what they read and call."""
    edges = {
        Edge(e.parent, chains.owner[e.child], "replays")
        for e in calls
        if e.child in chains.owner and e.parent not in chains.members(e.child)
    }
    for modifier, producer in chains.owner.items():
        members = set(chains.members(producer))
        model = models[modifier]
        for parent in (*model.reads, *model.depends):
            if parent in members or parent in model.modifies:
                continue
            edges.add(Edge(parent, producer, "replays"))
    return edges


def order_chains(chains: Chains, position: Mapping[str, int]) -> Chains:
    """Modifiers in run order: as the graph orders them, by name where nothing does."""
    ordered = {
        p: tuple(sorted(ms, key=lambda m: (position.get(m, 0), m)))
        for p, ms in chains.modifiers.items()
    }
    return Chains(chains.producer, ordered, chains.owner)
