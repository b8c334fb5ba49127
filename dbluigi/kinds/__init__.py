"""Build strategies, one module per kind, behind one protocol (``kinds.base``).

Every kind that builds a whole table follows the same sequence, written once in
``base.build_aside``::

    <name>__dbluigi_new  <-  fill (the kind's own step: a query, a file, a Python
            |                step, a source table, the partitions' tables)
         indexes -> patch -> validate -> checks
            |
      passed: swap in + record the build      failed: keep <name>__dbluigi_failed
            (one transaction)                        (or roll back), CheckFailed

Incremental models and incremental source copies merge new rows instead, once a table
is published (``base.upsert_aside``); views, ``sql`` files and dumps change their
relation in place, checked before their transaction commits.

Adding a kind means adding one module that defines ``KIND = Kind(name, build)`` and
one line in ``KINDS`` below.
"""

from __future__ import annotations

from collections.abc import Mapping

from dbluigi.kinds import dump, extract, incremental, partition, python, seed, sql, table, view
from dbluigi.kinds.base import BuildRequest, Kind

KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        table.KIND,
        view.KIND,
        sql.KIND,
        seed.KIND,
        python.KIND,
        incremental.KIND,
        dump.KIND,
        extract.KIND,
    )
}


def kind_of(request: BuildRequest) -> Kind | None:
    """How ``request`` is built: by its model's kind, or as one of the values of a
    partitioned model or their gathering. None for a kind this version cannot build."""
    kind = KINDS.get(request.model.kind)
    if request.partition is not None or (kind and kind.partitioned and request.decision.partitions):
        return partition.KIND
    return kind
