"""The JSON documents dbluigi prints and writes, and their versioned schemas.

Every document (``--json`` output, a line of ``build --watch --json`` or of
``ls --output json``, the run artifact) carries ``"schema": "dbluigi/<kind>/v<N>"``;
``dbluigi/schemas/<kind>.json`` is its JSON Schema (draft 2020-12). ``N`` changes when
a field is renamed, removed or changes meaning; fields may be added without a change.
Every timestamp is ISO 8601 in UTC with a ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbluigi.project import Project
    from dbluigi.targets.base import Target

RUN = "run"  # build, rebuild, retry, check --json and the run artifact
WATCH_CYCLE = "watch-cycle"  # a line of build --watch --json
PLAN = "plan"
HISTORY = "history"
SLOW_MODELS = "slow-models"  # history --slow --json
LS = "ls"  # a line of ls --output json
SHOW = "show"
LINEAGE = "lineage"  # lineage --format json
COLUMN_LINEAGE = "column-lineage"  # lineage MODEL.COLUMN --format json
ERROR = "error"  # why a command asked for JSON stopped before its document
KINDS = (RUN, WATCH_CYCLE, PLAN, HISTORY, SLOW_MODELS, LS, SHOW, LINEAGE, COLUMN_LINEAGE, ERROR)
VERSION = 1


def schema_id(kind: str) -> str:
    """The ``schema`` field of a document of ``kind``: ``dbluigi/run/v1``."""
    return f"dbluigi/{kind}/v{VERSION}"


def document(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` as a document of ``kind``: its ``schema`` first."""
    return {"schema": schema_id(kind), **fields}


def target_fields(project: Project, target: Target) -> dict[str, Any]:
    """How every document names the target it ran on: ``target``, its URL with the
    password masked; ``target_name``, the ``[targets.NAME]`` chosen (None for a URL);
    ``target_schemas``, ``{project's schema: schema built in}`` for each schema of the
    project's relations this target moves. (``dbluigi.runs.target`` keeps URL and moves
    in one string, its key for ``retry`` and ``result:``; a script reads them apart.)"""
    return {
        "target": target.display_url,
        "target_name": project.config.target_name,
        "target_schemas": dict(project.moved_schemas),
    }


def schema_text(kind: str) -> str:
    """The JSON Schema of a document of ``kind``, as shipped in the package."""
    return resources.files("dbluigi").joinpath("schemas", f"{kind}.json").read_text("utf-8")


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z; a naive value is UTC already (the audit tables store
    naive UTC timestamps)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def with_iso_times(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with every datetime value written by ``iso_utc``."""
    return {k: iso_utc(v) if isinstance(v, datetime) else v for k, v in fields.items()}
