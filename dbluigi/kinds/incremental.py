"""The ``incremental`` kind: upsert the query's rows into the published table by key.

::

    -- kind: incremental
    -- unique_key: order_id
    -- watermark: updated_at
    select * from raw.orders
    where {{ watermark }} is null or updated_at >= {{ watermark }}

``{{ watermark }}`` is filled before anything runs (so EXPLAIN, the build and the
error lines all see the same SQL) with a SQL literal of the highest ``watermark``
value in the published table (``CAST('2024-05-01 12:00:00' AS TIMESTAMP)``, ``42``,
``'abc'``), or ``NULL`` on a first build, a ``--full-refresh`` or when the table is
empty: the query decides what NULL means, and the idiom above reads everything.

- First build, or ``--full-refresh``: built like a ``table`` (aside, indexed, patched,
  checked, swapped), with a unique index on the key.
- Later builds, in one transaction: the query's rows go into ``<name>__dbluigi_new``,
  the patch corrects them, then they are upserted into the published table
  (``Session.upsert``); the checks run on the merged table, and a failed check rolls
  everything back, leaving the published table as it was.
- It runs on every build (``plan.runs_each_build``): a build that upserted no new or
  changed row (a row read again as it was does not count) keeps its build id, so the
  models reading it stay up to date. Each build records the watermark it started from
  and the one it reached (``task_runs.watermark_from`` / ``watermark_to``).
- A query whose columns changed, or a ``unique_key`` that changed (the published table
  is still unique on the old key), is a ``config`` failure asking for ``--full-refresh``:
  rows upserted under one key cannot be reconciled with another.

An upsert never deletes: rows deleted in the source stay in the table. Carry a
soft-delete flag (``is_deleted``) through the query so the update marks them, or
rebuild from scratch with ``--full-refresh`` to drop hard-deleted rows.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from dbluigi.checks import CheckOutcome, Violation
from dbluigi.errors import TaskError
from dbluigi.headers import IndexSpec
from dbluigi.kinds.base import (
    BuildRequest,
    Filled,
    Kind,
    Published,
    apply_patch,
    build_aside,
    column_change,
    find_column,
    highest_value,
    located,
    needs_full_build,
    upsert_aside,
)
from dbluigi.lazy import exp
from dbluigi.project import Model
from dbluigi.state import CheckResult
from dbluigi.targets.base import Session, literal, table_expr

_WATERMARK = re.compile(r"\{\{\s*watermark\s*\}\}")
SAMPLE_ROWS = 5


def render_watermark(session: Session, request: BuildRequest) -> BuildRequest:
    """The request with ``{{ watermark }}`` in the model's query filled in, and the
    watermark it starts from (``BuildRequest.watermark``) when the model has one."""
    model = request.model
    statement = model.statements[0]
    uses = _WATERMARK.search(statement.sql) is not None
    if uses and model.header.watermark is None:
        raise TaskError(
            "the query uses {{ watermark }} but the model has no -- watermark: header",
            failure_class="config",
            path=model.path,
            line=statement.line,
            hint="name the column that grows with new rows, e.g. -- watermark: updated_at",
        )
    value = None
    if model.header.watermark is not None and not needs_full_build(session, request):
        column = _require_published_column(session, model, model.header.watermark)
        value = highest_value(session, model, column)
    request = replace(request, watermark=value)
    if not uses:
        return request
    sql = _WATERMARK.sub(lambda _: sql_literal(value, request.project.dialect), statement.sql)
    rendered = replace(model, statements=(replace(statement, sql=sql),))
    return replace(request, model=rendered)


def sql_literal(value: Any, dialect: str) -> str:
    """A SQL literal of a value read back from the target; NULL for None."""
    return literal(value).sql(dialect=dialect)


def build(session: Session, request: BuildRequest) -> Published:
    """In full the first time (and on --full-refresh), by upsert afterwards."""
    model = request.model
    if needs_full_build(session, request):
        return build_aside(
            session,
            request,
            fill,
            indexes=_indexes(model),
            indexes_after_patch=True,  # the unique key is validated first, as a check
            validate=_key_outcome,
            watermark=model.header.watermark,
        )
    return upsert_aside(
        session,
        request,
        _fill_patched,
        key=model.header.unique_key,
        line=model.header.line_of("unique_key") or 1,
        before=lambda s: _require_same_key(model, s.unique_keys(model.schema, model.name)),
        compare_columns=lambda published, built: _require_same_columns(model, published, built),
        validate=_key_outcome,
        ensure_indexes=model.header.indexes,
        watermark=model.header.watermark,
    )


def fill(session: Session, request: BuildRequest, new: str) -> Filled:
    """The query's rows into ``new``, its key and watermark columns validated."""
    model = request.model
    statement = model.statements[0]
    with located(session, model.path, statement.line, statement.sql):
        rows = session.create_table_as(model.schema, new, statement.sql)
    columns = session.columns(model.schema, new)
    for key in ("unique_key", "watermark"):
        wanted = model.header.unique_key if key == "unique_key" else (model.header.watermark,)
        for column in wanted:
            if column is not None and find_column(column, columns) is None:
                raise TaskError(
                    f"{key} column {column!r} is not a column of the model's query "
                    f"(its columns: {', '.join(columns)})",
                    failure_class="config",
                    path=model.path,
                    line=model.header.line_of(key),
                    hint=f"select {column} in the query, or name one of its columns in -- {key}:",
                )
    return Filled(rows)


def _fill_patched(session: Session, request: BuildRequest, new: str) -> Filled:
    """The new rows of an upsert, corrected by the patch before they are merged."""
    filled = fill(session, request, new)
    if apply_patch(session, request, new):
        return Filled(session.row_count(request.model.schema, new))
    return filled


def _indexes(model: Model) -> tuple[IndexSpec, ...]:
    """The header's indexes and the unique index on the key that the upsert needs."""
    key = IndexSpec(model.header.unique_key, unique=True)
    if any(i.unique and i.columns == key.columns for i in model.header.indexes):
        return model.header.indexes
    return (*model.header.indexes, key)


def _key_outcome(session: Session, request: BuildRequest, new: str) -> CheckOutcome:
    """One row per key, and no NULL in it: what an upsert needs of the new rows."""
    model, dialect = request.model, request.project.dialect
    key = [exp.column(c, quoted=True) for c in model.header.unique_key]
    table = table_expr(model.schema, new)
    duplicates = (
        exp.select(*key, exp.Count(this=exp.Star()).as_("rows"))
        .from_(table)
        .group_by(*(k.copy() for k in key))
        .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
    )
    nulls = (
        exp.select(*(k.copy() for k in key))
        .from_(table.copy())
        .where(exp.or_(*(exp.Is(this=k.copy(), expression=exp.Null()) for k in key)))
    )
    name = f"unique_key({', '.join(model.header.unique_key)})"
    for what, query in (("several rows with the same key", duplicates), ("a NULL key", nulls)):
        sql = query.sql(dialect=dialect)
        result = session.query(sql, limit=SAMPLE_ROWS)
        if result.rows:
            message = f"the query returned {what}; an incremental model needs one row per {name}"
            violation = Violation(
                name,
                message,
                path=model.path,
                line=model.header.line_of("unique_key"),
                sql=sql,
                columns=result.columns,
                rows=result.rows,
            )
            return CheckOutcome((CheckResult(name, False, message),), (violation,))
    return CheckOutcome((CheckResult(name, True),))


def _require_published_column(session: Session, model: Model, column: str) -> str:
    """The published table's spelling of ``column``; a config error when it has none."""
    columns = session.columns(model.schema, model.name)
    found = find_column(column, columns)
    if found is None:
        raise TaskError(
            f"watermark column {column!r} is not a column of the published "
            f"{model.relation} (its columns: {', '.join(columns)})",
            failure_class="config",
            path=model.path,
            line=model.header.line_of("watermark"),
            hint="name one of its columns in -- watermark:, or rebuild it with --full-refresh",
        )
    return found


def _require_same_key(model: Model, published_keys: list[tuple[str, ...]]) -> None:
    """Refuse to upsert into a table dbluigi made unique on columns the model no longer
    declares (its unique_key changed, or a unique -- index: went): that index would turn
    rows that are new under the model's key into duplicate-key errors, or keep rows that
    duplicate one another under it."""
    declared = {_folded(spec.columns) for spec in _indexes(model) if spec.unique}
    stale = [key for key in published_keys if _folded(key) not in declared]
    if not stale:
        return
    raise TaskError(
        f"the published {model.relation} is unique on ({', '.join(stale[0])}), which the "
        f"model no longer declares (its unique_key: {', '.join(model.header.unique_key)}); "
        "rows cannot be upserted under a changed key",
        failure_class="config",
        path=model.path,
        line=model.header.line_of("unique_key"),
        hint="rebuild it from scratch: dbluigi build --full-refresh " + model.relation,
    )


def _folded(columns: tuple[str, ...]) -> frozenset[str]:
    """A key as a set of folded names: neither the order nor the case of its columns counts."""
    return frozenset(c.lower() for c in columns)


def _require_same_columns(model: Model, published: tuple[str, ...], built: tuple[str, ...]) -> None:
    change = column_change(published, built)
    if change is None:
        return
    raise TaskError(
        f"the query's columns differ from the published {model.relation} ({change}); "
        "new rows cannot be upserted into it",
        failure_class="config",
        path=model.path,
        line=model.statements[0].line,
        hint="rebuild it from scratch: dbluigi build --full-refresh " + model.relation,
    )


KIND = Kind("incremental", build, prepare=render_watermark)
