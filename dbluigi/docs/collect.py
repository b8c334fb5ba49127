"""What the docs site shows, gathered into one JSON document.

Two halves: ``read_recorded`` asks the target what it holds about the project (published
columns and their types, the state of each model, its latest attempts, the latest runs
with their tasks) and never fails: an unreachable target, or one never built, is a
``Recorded`` with a note saying so. ``site_data`` turns the project, that record and the
column lineage into the plain dict the page's script reads; it touches no database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbluigi import __version__
from dbluigi.columns import ColumnLineage, ModelColumns
from dbluigi.docs.layout import layout
from dbluigi.errors import DbluigiError
from dbluigi.project import Model, Project
from dbluigi.state import RunSummary, StateStore, TaskRecord, check_digest

SOURCE_LINES = 40  # lines of a seed file shown as written


@dataclass(frozen=True)
class RunTasks:
    run: RunSummary
    tasks: tuple[TaskRecord, ...]


@dataclass(frozen=True)
class Recorded:
    """What the target holds about the project; ``note`` says why it holds nothing."""

    note: str | None = None
    columns: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    built: Mapping[str, Any] = field(default_factory=dict)  # model -> ModelState
    attempts: Mapping[str, Sequence[TaskRecord]] = field(default_factory=dict)
    runs: Sequence[RunTasks] = ()


def read_recorded(project: Project, *, runs: int = 10, attempts: int = 10) -> Recorded:
    """The target's record of the project: ``runs`` latest runs, ``attempts`` latest
    task attempts per model. Opens nothing it would create (a DuckDB file not there yet)."""
    from dbluigi.targets import open_target

    try:
        target = open_target(project.config.target_url, project_dir=project.root)
    except DbluigiError as exc:
        return Recorded(note=f"the target cannot be opened: {exc}")
    if not target.exists():
        return Recorded(note=f"nothing built yet: {target.display_url} does not exist")
    try:
        session = target.connect()
    except DbluigiError as exc:
        return Recorded(note=f"the target is not reachable: {exc.message}")
    try:
        schemas = sorted({r.split(".", 1)[0] for r in project.graph.nodes})
        columns = session.column_types(schemas)
        if session.relation_kind("dbluigi", "task_runs") is None:
            return Recorded(
                note=f"nothing built yet in {target.display_url}: no dbluigi state",
                columns=columns,
            )
        store = StateStore(session)
        store.read_as_it_is()  # never migrated: other dbluigi versions may share it
        summaries = store.runs(runs)
        tasks = store.task_records_of([r.run_id for r in summaries])
        latest = [RunTasks(r, tuple(tasks[r.run_id])) for r in summaries]
        return Recorded(
            columns=columns,
            built=store.read_models(),
            attempts=store.latest_attempts(per_model=attempts),
            runs=latest,
        )
    except DbluigiError as exc:
        return Recorded(note=f"the target's state cannot be read: {exc.message}")
    except Exception as exc:  # a driver's error (a state too old to read): structure only
        return Recorded(note=f"the target's state cannot be read: {str(exc).strip()}")
    finally:
        session.close()


def site_data(
    project: Project,
    recorded: Recorded,
    columns: Mapping[str, ModelColumns],
    *,
    pages: bool = True,
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The document the site's script renders: the graph (of ``only``, when given), and
    with ``pages`` a page per model and the latest runs."""
    graph = project.graph
    chosen = set(only) if only is not None else None
    nodes = [n for n in graph.order if chosen is None or n in chosen]
    parents = {n: sorted(graph.parents(n)) for n in nodes}
    at = layout(nodes, parents)
    status = _last_status(recorded)
    data: dict[str, Any] = {
        "project": {
            "name": project.root.resolve().name,
            "target": _target_name(project),
            "dialect": project.dialect,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "dbluigi": __version__,
        },
        "recorded": recorded.note is None,
        "note": recorded.note,
        "nodes": [_node(project, n, at[n].x, at[n].y, status.get(n)) for n in nodes],
        "edges": [
            {"from": e.parent, "to": e.child, "reason": e.reason}
            for e in graph.edges
            if chosen is None or (e.parent in chosen and e.child in chosen)
        ],
    }
    if pages:
        data["models"] = {n: _page(project, n, recorded, columns.get(n)) for n in nodes}
        data["runs"] = [_run(r) for r in recorded.runs]
    return data


def _target_name(project: Project) -> str:
    from dbluigi.urls import mask_url

    url = project.config.target_url
    return mask_url(url) if url else "duckdb (.dbluigi/target.duckdb)"


def _last_status(recorded: Recorded) -> dict[str, str]:
    return {m: records[0].status for m, records in recorded.attempts.items() if records}


def _node(project: Project, node: str, x: int, y: int, status: str | None) -> dict[str, Any]:
    model = project.models.get(node)
    return {
        "id": node,
        "kind": model.kind if model else "source",
        "file": model.path if model else None,
        "tags": list(model.tags) if model else [],
        "x": x,
        "y": y,
        "status": status,
    }


def _page(
    project: Project, node: str, recorded: Recorded, traced: ModelColumns | None
) -> dict[str, Any]:
    model = project.models.get(node)
    graph = project.graph
    chain = project.chains
    state = recorded.built.get(node)
    attempts = recorded.attempts.get(node, ())
    page: dict[str, Any] = {
        "description": model.header.description if model else None,
        "headers": _headers(project, model) if model else [],
        "written": _written(project, model) if model else None,
        "rendered": _rendered(project, model) if model else None,
        "format": model.format if model else None,
        "columns": _columns(recorded.columns.get(node, ()), traced),
        "columns_note": traced.note if traced else None,
        "checks": _checks(project, node, recorded.attempts),
        "writes": project.write_notes(node),
        "producer": chain.owner.get(node),
        "modifiers": list(chain.modifiers.get(node, ())),
        "upstream": sorted(graph.parents(node)),
        "downstream": sorted(graph.children(node)),
        "state": None
        if state is None
        else {
            "built_at": _when(state.built_at),
            "rows": state.rows,
            "watermark": state.watermark,
        },
        "builds": [_attempt(r) for r in attempts],
    }
    return page


def _rendered(project: Project, model: Model) -> str | None:
    """The file as the target runs it: variables filled and, on a target that builds
    schemas elsewhere, its statements as that target runs them, every name qualified and
    moved (a query copied from a dev site reads dev's tables), laid out by sqlglot. A
    Python step's text is as written."""
    if model.format not in ("sql", "python"):
        return None
    if model.format == "python" or not project.moved:
        return model.text
    return ";\n\n".join(_laid_out(st.sql, project.dialect) for st in model.statements)


def _laid_out(sql: str, dialect: str) -> str:
    """``sql`` pretty-printed; as it is when sqlglot cannot read it (a statement run as
    written, a ``{{ partition }}`` placeholder)."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        return ";\n".join(sqlglot.transpile(sql, read=dialect, write=dialect, pretty=True))
    except SqlglotError:
        return sql


def _headers(project: Project, model: Model) -> list[str]:
    """The header block as written: the file's lines before its body."""
    text = _file_text(project, model.path)
    if text is None or model.format not in ("sql", "python"):
        return []
    return text.splitlines()[: max(model.header.body_line - 1, 0)]


def _written(project: Project, model: Model) -> str | None:
    text = _file_text(project, model.path)
    if text is None or model.format in ("sql", "python", "yaml"):
        return text
    lines = text.splitlines()
    more = len(lines) - SOURCE_LINES
    return "\n".join(lines[:SOURCE_LINES]) + (f"\n... {more} more lines" if more > 0 else "")


def _file_text(project: Project, path: str) -> str | None:
    try:
        with (project.root / Path(path)).open(encoding="utf-8-sig", errors="replace") as f:
            return f.read(2_000_000)
    except OSError:
        return None


def _columns(published: Sequence[tuple[str, str]], traced: ModelColumns | None) -> list[Any]:
    """Columns as published (with their types) joined with their traced lineage; a column
    traced but not (yet) published is listed without a type."""
    lineage = {c.name: c for c in traced.columns} if traced else {}
    names = [name for name, _ in published] or list(lineage)
    types = dict(published)
    rows = []
    folded: dict[str, list[ColumnLineage]] = {}
    for traced_column in lineage.values():
        folded.setdefault(traced_column.name.lower(), []).append(traced_column)
    for name in names:
        same = folded.get(name.lower(), [])
        c = lineage.get(name) or (same[0] if len(same) == 1 else None)
        rows.append(
            {
                "name": name,
                "type": types.get(name),
                "sources": [{"relation": s.relation, "column": s.column} for s in c.sources]
                if c
                else [],
                "note": c.note if c else ("not traced" if traced and traced.columns else None),
            }
        )
    return rows


def _checks(
    project: Project, node: str, attempts: Mapping[str, Sequence[TaskRecord]]
) -> list[dict[str, Any]]:
    """The checks on ``node``: its header checks, the check queries gating its swap and
    its own queries gating another model's swap, each with its latest result (recorded
    with the attempts of the model whose swap it gates)."""
    model = project.models.get(node)
    checks: list[dict[str, Any]] = []
    for header in model.header.checks if model else ():
        checks.append(
            {
                "kind": "header",
                "name": header.text,
                "file": model.path if model else None,
                "line": header.line,
                "text": header.text,
                "gate": node,
                "owner": node,
                "last": _latest_result(attempts.get(node, ()), header.text, header.text),
            }
        )
    # those gating its swap, and its own that gate another model's (the project's indexes)
    for c in (*project.gated_checks(node), *project.moved_checks.get(node, ())):
        checks.append(
            {
                "kind": c.format,
                "name": c.name,
                "file": c.path,
                "line": c.line,
                "text": c.sql,
                "gate": c.gate,
                "owner": c.owner,
                "waits": list(c.waits),
                "last": _latest_result(attempts.get(c.gate, ()), c.name, c.sql),
            }
        )
    return checks


def _latest_result(attempts: Sequence[TaskRecord], name: str, sql: str) -> dict[str, Any] | None:
    """The newest result of the check called ``name`` whose text is ``sql`` among a
    model's attempts (newest first). A result recorded before results carried the digest
    of their check's text is taken by name alone."""
    digest = check_digest(sql)
    for record in attempts:
        for r in record.checks:
            if r.name == name and r.digest in ("", digest):
                return {
                    "passed": r.passed,
                    "status": r.status or ("passed" if r.passed else "failed"),
                    "detail": r.detail,
                    "run_id": record.run_id,
                    "partition": record.partition,
                    "when": _when(record.started_at),
                }
    return None


def _attempt(r: TaskRecord) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "model": r.model,
        "partition": r.partition,
        "attempt": r.attempt,
        "status": r.status,
        "started_at": _when(r.started_at, precise=True),
        "duration_s": r.duration_s,
        "rows": r.rows,
        "failure_class": r.failure_class,
        "error": r.error,
        "path": r.path,
        "line": r.line,
        "reason": r.reason,
        "watermark_from": r.watermark_from,
        "watermark_to": r.watermark_to,
        "worker": r.worker,
        "checks": [c.to_json() for c in r.checks],
    }


def _run(r: RunTasks) -> dict[str, Any]:
    return {
        "run_id": r.run.run_id,
        "command": r.run.command,
        "selector": r.run.selector,
        "started_at": _when(r.run.started_at),
        "finished_at": _when(r.run.finished_at),
        "status": r.run.status,
        "host": r.run.hostname,
        "tasks": [_attempt(t) for t in r.tasks],
    }


def _when(value: object, *, precise: bool = False) -> str | None:
    """A time as the page shows it (UTC, as recorded); ``precise`` keeps milliseconds,
    which the run timeline places bars by."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds" if precise else "seconds")
    return str(value)
