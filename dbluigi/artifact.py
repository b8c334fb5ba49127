"""The run artifact: one JSON file per run, under ``<project>/.dbluigi/runs/``.

Written at the end of every ``build``, ``rebuild``, ``retry`` and ``check`` run as
``<run_id>.json`` and copied to ``latest.json``, each atomically (written to a
temporary file in the same folder, then renamed), so a reader never sees half a
file. It is built from the audit tables (``dbluigi.runs`` and ``dbluigi.task_runs``),
so it says what ``dbluigi history`` says, and from the run's results (models that
were up to date, slow tasks, notes).

The same document is what ``build --json`` (and ``rebuild``, ``retry``, ``check``)
prints: schema ``dbluigi/run/v1`` (``dbluigi.documents``), one entry in ``tasks`` per
selected task with its outcome, and under each the list of its ``attempts``. The
README documents every field.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbluigi import __version__
from dbluigi.config import STATE_DIR
from dbluigi.documents import RUN, document, iso_utc, target_fields
from dbluigi.errors import FAILURE_CLASSES
from dbluigi.state import StateStore, TaskRecord
from dbluigi.targets.base import Session

if TYPE_CHECKING:
    from dbluigi.audit import SlowTask
    from dbluigi.project import Project
    from dbluigi.state import TaskResult

RUNS_DIR = "runs"
LATEST = "latest.json"
# Run artifacts kept under .dbluigi/runs, the newest (a build every minute would add a
# file a minute for ever); every run stays in the state (``dbluigi history``)
KEPT_ARTIFACTS = 1000
_RUN_FILE = re.compile(r"\d{8}T\d{6}-[0-9a-f]+\.json")  # <run_id>.json (state.new_run_id)

_RUN_FIELDS = (  # the artifact's names of ``state.RunRecord``'s fields, in order
    "run_id",
    "command",
    "selector",
    "target",
    "started_at",
    "finished_at",
    "status",
    "dbluigi_version",
    "hostname",
    "pid",
    "workers",
)


def runs_folder(project_root: Path) -> Path:
    """Where run artifacts go: ``<project>/.dbluigi/runs``."""
    return project_root / STATE_DIR / RUNS_DIR


def build_artifact(
    run: dict[str, Any],
    records: Sequence[TaskRecord],
    results: Sequence[TaskResult],
    *,
    slow: Sequence[SlowTask] = (),
    notes: Sequence[str] = (),
    artifact: Path | None = None,
) -> dict[str, Any]:
    """The run document as a JSON-ready dict: the run, then one entry per selected task in
    the order of ``results`` (with no attempts when it did not run here: up to date, or
    left to another worker), then any task attempted in the run but not among them."""
    attempts: dict[tuple[str, str], list[TaskRecord]] = {}
    for record in records:  # oldest first, so the last attempt of a task is its outcome
        attempts.setdefault((record.model, record.partition), []).append(record)
    tasks = []
    for result in results:
        tries = attempts.pop((result.model, result.partition or ""), None)
        tasks.append(_task(result.kind, tries) if tries else _unrun(result))
    kinds = {r.model: r.kind for r in results}
    tasks += [_task(kinds.get(key[0]), tries) for key, tries in attempts.items()]
    counts = {status: 0 for status in ("success", "failed", "skipped")}
    classes: dict[str, int] = {}
    for task in tasks:
        if task["attempts"] or task["status"] in counts:  # not the up to date
            counts[task["status"]] = counts.get(task["status"], 0) + 1
        if task["failure_class"]:
            classes[task["failure_class"]] = classes.get(task["failure_class"], 0) + 1
    up_to_date = [r.model for r in results if r.status == "up to date"]
    # with a shared scheduler or concurrent builds: models another worker built or still builds
    other_workers = [
        r.model for r in results if r.status == "elsewhere" or r.reason == "built by another worker"
    ]
    started, finished = run.get("started_at"), run.get("finished_at")
    return document(
        RUN,
        {
            "run_id": run["run_id"],
            "command": run.get("command"),
            "selector": run.get("selector") or "",
            "target": run.get("target"),
            "target_name": run.get("target_name"),
            "target_schemas": run.get("target_schemas") or {},
            "status": run.get("status"),
            "exit_code": 1 if counts["failed"] or counts["skipped"] else 0,
            "started_at": _timestamp(started),
            "finished_at": _timestamp(finished),
            "duration_s": _seconds(started, finished),
            "dbluigi_version": run.get("dbluigi_version") or __version__,
            "hostname": run.get("hostname"),
            "pid": run.get("pid"),
            "workers": run.get("workers"),
            "artifact": str(artifact) if artifact else None,
            "counts": {**counts, "up_to_date": len(up_to_date)},
            "failure_classes": {c: classes[c] for c in FAILURE_CLASSES if c in classes},
            "tasks": tasks,
            "up_to_date": up_to_date,
            "other_workers": other_workers,
            "slow_tasks": [s.to_json() for s in slow],
            "notes": list(notes),
        },
    )


def no_run(command: str, target: Mapping[str, Any]) -> dict[str, Any]:
    """The run document of a command that had nothing to run (``retry`` after a build
    that failed nothing) on ``target`` (``documents.target_fields``): no run id, no
    tasks."""
    return build_artifact({"run_id": None, "command": command, **target}, [], [])


def json_text(payload: dict[str, Any]) -> str:
    """``payload`` as JSON to read and to diff: a top-level key a line, and each item of
    a top-level list on a line of its own. (``json.dumps(indent=...)`` would do it with
    the pure-Python encoder, a tenth of a second per thousand tasks.)"""
    lines = []
    for key, value in payload.items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(json.dumps(item, default=str) for item in value)
            text = f"[\n    {items}\n  ]"
        else:
            text = json.dumps(value, default=str)
        lines.append(f"  {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_artifact(folder: Path, payload: dict[str, Any]) -> Path:
    """Write ``<run_id>.json`` and ``latest.json`` atomically; returns the run's file."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json_text(payload)
    path = folder / f"{payload['run_id']}.json"
    _write_atomically(path, text)
    _write_atomically(folder / LATEST, text)
    _keep_newest(folder)
    return path


def _keep_newest(folder: Path) -> None:
    """Remove the run artifacts older than the newest ``KEPT_ARTIFACTS`` (by the time in
    their run id, then, within its second, by when each was written); other files stay."""
    runs = [p for p in folder.iterdir() if _RUN_FILE.fullmatch(p.name)]
    if len(runs) <= KEPT_ARTIFACTS:
        return
    written: dict[Path, int] = {}
    for path in runs:
        with contextlib.suppress(FileNotFoundError):  # another build's pruning took it
            written[path] = path.stat().st_mtime_ns
    by_age = sorted(written, key=lambda p: (p.name[:15], written[p]))
    for old in by_age[: len(by_age) - KEPT_ARTIFACTS]:
        old.unlink(missing_ok=True)


def write_run_artifact(
    session: Session,
    project: Project,
    run_id: str,
    results: Sequence[TaskResult],
    *,
    slow: Sequence[SlowTask] = (),
    notes: list[str],
) -> dict[str, Any]:
    """Read run ``run_id`` back from the audit tables, write its artifact and return it.

    Call after the run is finished. A file that cannot be written does not fail the
    run: the reason is added to ``notes`` (and the document's) and ``artifact`` is None.
    """
    store = StateStore(session)
    record = store.run(run_id)
    run = dict(zip(_RUN_FIELDS, record, strict=True)) if record else {"run_id": run_id}
    # the URL alone: ``runs.target`` adds where the target moves schemas (runner.run_target)
    run.update(target_fields(project, session.target))
    records = store.task_records(run_id)
    folder = runs_folder(project.root)
    payload = build_artifact(
        run, records, results, slow=slow, notes=notes, artifact=folder / f"{run_id}.json"
    )
    try:
        write_artifact(folder, payload)
    except OSError as exc:
        notes.append(f"could not write the run artifact under {folder}: {exc}")
        payload.update(artifact=None, notes=list(notes))
    return payload


def _task(kind: str | None, tries: Sequence[TaskRecord]) -> dict[str, Any]:
    last = tries[-1]
    return {
        "model": last.model,
        "kind": kind,
        "partition": last.partition or None,
        "status": last.status,
        "reason": last.reason,
        "failure_class": last.failure_class,
        "error": last.error,
        "file": last.path,
        "line": last.line,
        "started_at": _timestamp(last.started_at),
        "duration_s": round(last.duration_s, 4),
        "rows": last.rows,
        "fingerprint": last.fingerprint,
        "build_id": last.build_id,
        "explain_cost": last.explain_cost,
        "watermark_from": last.watermark_from,
        "watermark_to": last.watermark_to,
        "checks": [c.to_json() for c in last.checks],
        "attempts": [
            {
                "attempt": t.attempt,
                "status": t.status,
                "failure_class": t.failure_class,
                "error": t.error,
                "started_at": _timestamp(t.started_at),
                "duration_s": round(t.duration_s, 4),
            }
            for t in tries
        ],
    }


def _unrun(result: TaskResult) -> dict[str, Any]:
    """A selected task that did not run here: up to date, or left to another worker."""
    last = result.last
    return {
        "model": result.model,
        "kind": result.kind,
        "partition": result.partition,
        "status": result.status,
        "reason": result.reason,
        "failure_class": result.failure_class,
        "error": result.error,
        "file": result.path,
        "line": result.line,
        "started_at": _timestamp(last.started_at) if last else None,
        "duration_s": round(result.duration_s, 4),
        "rows": result.rows,
        "fingerprint": last.fingerprint if last else None,
        "build_id": last.build_id if last else None,
        "explain_cost": last.explain_cost if last else None,
        "watermark_from": last.watermark_from if last else None,
        "watermark_to": last.watermark_to if last else None,
        "checks": [c.to_json() for c in last.checks] if last else [],
        "attempts": [],
    }


def _timestamp(value: Any) -> str | None:
    return iso_utc(value) if isinstance(value, datetime) or value is None else str(value)


def _seconds(started: Any, finished: Any) -> float | None:
    if isinstance(started, datetime) and isinstance(finished, datetime):
        return round((finished - started).total_seconds(), 4)
    return None


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
