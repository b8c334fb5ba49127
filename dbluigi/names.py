"""Every name dbluigi derives from a model's name, made in one place.

A model ``schema.name`` has relations of its own next to the published one: the table
built aside (``<name>__dbluigi_new``), the failed one kept for inspection
(``<name>__dbluigi_failed``), one table per partition value (``<name>__dbluigi_p_<value>``)
and its indexes (``<table>__<columns>_idx``). Each must

- fit the target's identifier limit (``Target.max_identifier_bytes``: PostgreSQL
  silently cuts a name to 63 bytes of UTF-8, so two long names would become one):
  ``fit`` keeps ``<name><suffix>`` when it fits, and otherwise a prefix of the name cut on
  a character boundary, ``_``, ten hex digits of the SHA-1 of the whole
  ``<name><suffix>``, and the suffix. The same name always gives the same result and
  different names give different ones (but for a SHA-1 collision in 40 bits);
- never be the name of a model: ``__dbluigi_`` is reserved, and ``reserved_name`` says
  why a model may not be called so (``project.py`` refuses such models when it loads).

``guards.ensure_names_fit`` refuses, once the target is known, a model whose own name
the target would cut (a name the database changes cannot be published under its name).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

RESERVED = "__dbluigi_"
"""What every internal name holds between the model's name and its role."""
STATE_SCHEMA = "dbluigi"
"""The schema of dbluigi's own tables (``state.py``); no model may publish into it."""
NEW = "new"
FAILED = "failed"
_DIGEST_CHARS = 10
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_]{1,24}")


def fit(name: str, suffix: str, limit: int | None) -> str:
    """``name + suffix``, or when that is longer than ``limit`` bytes of UTF-8, a prefix
    of ``name`` (whole characters), ``_``, a hash of ``name + suffix``, then ``suffix``.

    ``limit`` None means the target has none."""
    full = name + suffix
    if limit is None or len(full.encode()) <= limit:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:_DIGEST_CHARS]
    room = limit - len(suffix.encode()) - len(digest) - 1
    if room < 1:
        raise ValueError(f"the suffix {suffix!r} leaves no room for a name in {limit} bytes")
    head = name.encode()[:room].decode(errors="ignore")  # drops a character cut in two
    return f"{head}_{digest}{suffix}"


def internal_name(name: str, role: str, limit: int | None) -> str:
    """``<name>__dbluigi_<role>`` fitted into ``limit`` bytes (see ``fit``)."""
    return fit(name, RESERVED + role, limit)


def aside_name(name: str, limit: int | None) -> str:
    """The table a model is built into before it is checked and swapped in."""
    return internal_name(name, NEW, limit)


def failed_name(name: str, limit: int | None) -> str:
    """The table a failed check leaves for inspection."""
    return internal_name(name, FAILED, limit)


def partition_name(name: str, value: str, limit: int | None) -> str:
    """The table holding one partition value's rows: the value itself when it is short
    and made of letters, digits and ``_``, else a hash of it."""
    plain = _PLAIN_VALUE.fullmatch(value) is not None
    shown = value if plain else hashlib.sha1(value.encode()).hexdigest()[:12]
    return internal_name(name, f"p_{shown}", limit)


def index_name(table: str, columns: Sequence[str], *, unique: bool, limit: int | None) -> str:
    """``<table>__<col1>_<col2>_idx`` (``_uidx`` when unique), fitted into ``limit``."""
    return fit(f"{table}__{'_'.join(columns)}", "_uidx" if unique else "_idx", limit)


def reserved_name(schema: str, name: str) -> str | None:
    """Why ``schema.name`` cannot be a model's relation, or None when it can."""
    if schema == STATE_SCHEMA:
        return f"schema {STATE_SCHEMA} holds dbluigi's own state tables"
    if RESERVED in name:
        return f"names containing {RESERVED} are the tables dbluigi builds aside"
    return None
