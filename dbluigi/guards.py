"""Guards that stop a model before or while it runs: its timeout and its cost bound.

- ``timeout`` (``-- timeout: 10m``, default ``[project] timeout``): for every kind.
  The model's transaction is interrupted when the time is up, so nothing is
  published, and the task fails with class ``timeout``.
- ``max_cost`` (``-- max_cost: 1e7``, default ``[project] max_cost``): for the query
  kinds (table, view, incremental, dump) on a target that estimates cost
  (PostgreSQL). The query is EXPLAINed before anything runs; above the bound the
  task fails with class ``guard``. The estimate is recorded for every such model, bounded or not, so
  bounds can be chosen from history.

What differs between engines sits behind ``Session.statement_timeout``,
``Session.explain_cost`` and ``Target.estimates_cost``; a bound the target cannot
enforce is a project error before the run starts (``ensure_supported``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dbluigi.config import CONFIG_FILE
from dbluigi.errors import DbluigiError, ProjectError, TaskError, as_dbluigi
from dbluigi.project import Model, Project
from dbluigi.targets.base import Session, Target

COST_KINDS = ("table", "view", "incremental", "dump")
"""Kinds whose one query is EXPLAINed before it runs (seeds, ``sql`` and ``python`` are not)."""

_RUNTIME_CLASSES = ("runtime", "timeout")


@dataclass(frozen=True)
class Bound:
    """A guard's value for one model and where it was set, for messages."""

    value: float
    source: str  # "-- timeout: on line 2" or "[project] timeout in dbluigi.toml"
    line: int | None = None  # the header line, when the model's header set it


def timeout_of(project: Project, model: Model) -> Bound | None:
    """The model's timeout in seconds: its header, else the project default."""
    if model.header.timeout is not None:
        line = model.header.line_of("timeout")
        return Bound(model.header.timeout, f"-- timeout: on line {line}", line)
    if project.config.timeout is not None:
        return Bound(project.config.timeout, f"[project] timeout in {CONFIG_FILE}")
    return None


def max_cost_of(project: Project, model: Model) -> Bound | None:
    """The model's cost bound: its header, else the project default (query kinds only)."""
    if model.header.max_cost is not None:
        line = model.header.line_of("max_cost")
        return Bound(model.header.max_cost, f"-- max_cost: on line {line}", line)
    if project.config.max_cost is not None and model.kind in COST_KINDS:
        return Bound(project.config.max_cost, f"[project] max_cost in {CONFIG_FILE}")
    return None


def ensure_supported(project: Project, target: Target) -> None:
    """Refuse, before anything runs, a cost bound the target cannot estimate."""
    if target.estimates_cost:
        return
    why = (
        f"the {target.name} target has no query cost estimate comparable to PostgreSQL's EXPLAIN, "
        "so a max_cost bound cannot be enforced on this target"
    )
    hint = (
        "build this project on PostgreSQL (--target postgresql://...), or remove max_cost; "
        "-- timeout: works on every target"
    )
    if project.config.max_cost is not None:
        raise ProjectError(f"[project] max_cost: {why}", path=CONFIG_FILE, hint=hint)
    for model in project.models.values():
        if model.header.max_cost is not None:
            raise ProjectError(
                f"max_cost: {why}",
                path=model.path,
                line=model.header.line_of("max_cost"),
                hint=hint,
            )


@contextmanager
def timeout(session: Session, project: Project, model: Model) -> Iterator[None]:
    """Run the block under the model's timeout; call it inside the model's transaction.

    Whatever the engine raised when the time ran out becomes a ``timeout`` TaskError
    that names the bound and where it was set; the transaction then rolls back.
    """
    bound = timeout_of(project, model)
    if bound is None:
        yield
        return
    with session.statement_timeout(bound.value) as deadline:
        try:
            yield
        except Exception as exc:
            error = as_dbluigi(exc, failure_class=session.classify(exc))
            failure_class = error.failure_class or "runtime"
            if failure_class == "timeout" or (
                deadline.expired and failure_class in _RUNTIME_CLASSES
            ):
                raise _timed_out(model, bound, error) from exc
            raise
        if deadline.expired:  # the interrupt fell between two statements
            raise _timed_out(model, bound, None)


def enforce_cost(project: Project, model: Model, cost: float | None) -> None:
    """Raise a ``guard`` TaskError when the estimated cost is above the model's bound."""
    bound = max_cost_of(project, model)
    if bound is None:
        return
    if cost is None:
        raise TaskError(
            "max_cost is set but the target gave no cost estimate",
            failure_class="config",
            path=model.path,
            line=bound.line,
        )
    if cost > bound.value:
        error = TaskError(
            f"estimated cost {format_cost(cost)} is above max_cost {format_cost(bound.value)} "
            f"(set by {bound.source}); the query was not run",
            failure_class="guard",
            path=model.path,
            line=bound.line,
            hint="make the query cheaper (look for a missing join condition), or raise max_cost; "
            "`dbluigi history` shows the estimated cost of each build",
        )
        raise error.with_cost(cost)  # recorded with the failure, to choose a better bound


def format_cost(cost: float) -> str:
    """A planner cost as people write it: 1234.5, 2.5e+07."""
    return f"{cost:.6g}"


def format_seconds(seconds: float) -> str:
    """``1s``, ``1.5s``, ``10m``, ``1h30m``: the way a timeout header is written."""
    if seconds < 60 or seconds % 60:
        return f"{seconds:g}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def _timed_out(model: Model, bound: Bound, error: DbluigiError | None) -> TaskError:
    return TaskError(
        f"{model.relation} ran longer than its timeout of {format_seconds(bound.value)} "
        f"(set by {bound.source}) and was stopped; nothing was published",
        failure_class="timeout",
        path=error.path if error is not None and error.path else model.path,
        line=error.line if error is not None and error.line else bound.line,
        hint="make the query faster, or raise the timeout",
    )


def ensure_names_fit(project: Project, target: Target) -> None:
    """Refuse, before anything runs, a model whose schema or name the target would cut
    (PostgreSQL keeps 63 bytes of an identifier), or a schema name the target reserves."""
    limit = target.max_identifier_bytes
    for model in project.models.values():
        for part, what in ((model.schema, "schema"), (model.name, "name")):
            size = len(part.encode())
            if limit is not None and size > limit:
                raise ProjectError(
                    f"the {what} {part!r} is {size} bytes long, and {target.name} keeps "
                    f"only {limit} bytes of a name",
                    path=model.path,
                    hint=f"shorten the {'folder' if what == 'schema' else 'file'} name to at "
                    f"most {limit} bytes (non-ASCII characters take 2 to 4 bytes each)",
                )
        if model.schema in target.reserved_schemas:
            raise ProjectError(
                f"schema {model.schema!r} is one of {target.name}'s own catalogs "
                f"({', '.join(sorted(target.reserved_schemas))}), so {model.relation} "
                "cannot be told apart from it",
                path=model.path,
                hint="rename the folder",
            )
