"""The name of a relation as dbluigi passes it between modules: ``schema.name``.

A ``Relation`` is made once, where a name enters dbluigi (a scanned file, a resolved
table reference, the target's catalog, a source table), and split then: every later
reader asks for ``.schema`` and ``.name`` instead of splitting a string again. It is a
``str`` — the key of every mapping of models, sorted and printed as the user writes it,
written to JSON and the state tables as is — and frozen like one.
"""

from __future__ import annotations

from typing import Any


class Relation(str):
    """``schema.name``, with its two parts (the schema never holds a dot; the name may)."""

    __match_args__ = ("schema", "name")
    schema: str
    name: str

    def __new__(cls, text: str) -> Relation:
        if isinstance(text, Relation):
            return text
        schema, dot, name = text.partition(".")
        if not (schema and dot and name):
            raise ValueError(f"not a relation name (schema.name): {text!r}")
        relation = super().__new__(cls, text)
        relation.__dict__.update(schema=schema, name=name)  # past the frozen __setattr__
        return relation

    @classmethod
    def of(cls, schema: str, name: str) -> Relation:
        """The relation ``name`` in ``schema``."""
        return cls(f"{schema}.{name}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"a Relation is frozen: cannot set {key}")

    def __reduce__(self) -> tuple[type[Relation], tuple[str]]:
        return (Relation, (str(self),))

    def __repr__(self) -> str:
        return f"Relation({str(self)!r})"
