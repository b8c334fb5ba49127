"""The Python API: what ``dbluigi build``, ``rebuild``, ``plan`` and ``check`` do, minus
the printing, for an Airflow or Dagster task (``from dbluigi import build``).

Each function takes a project folder (or a ``Project`` from ``load``) and returns the
same result the command line prints. An error that stops the whole command (a bad
project, selector, option or target) raises a ``DbluigiError`` subclass; a task that
fails does not raise: it is in the result (``RunResult.ok`` is False, ``failed`` lists
it with its error). The command line runs these same functions (``execute``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from dbluigi.errors import UsageError
from dbluigi.plan import Plan
from dbluigi.project import Project, load_project
from dbluigi.runner import EventCallback, Run, RunOptions, RunResult, run_plan
from dbluigi.selectors import TargetState, select
from dbluigi.targets import open_target
from dbluigi.targets.base import Target

ProjectLike = Project | str | Path


def load(
    project_dir: str | Path = ".",
    *,
    target: str | None = None,
    vars: Mapping[str, object] | None = None,
) -> Project:
    """Load and validate a project folder; ``target`` is a URL (as ``--target``; unset:
    ``DBLUIGI_TARGET``, then ``dbluigi.toml``), ``vars`` fill ``{{ name }}`` placeholders
    (as ``--var``). Its ``warnings`` are on the project. Raises ``ProjectError`` (or a
    subclass) when the project is wrong."""
    variables = {str(k): str(v) for k, v in (vars or {}).items()}
    return load_project(project_dir, target=target, variables=variables)


def build(
    project: ProjectLike = ".",
    select: Iterable[str] = (),
    *,
    exclude: Iterable[str] = (),
    target: str | None = None,
    vars: Mapping[str, object] | None = None,
    workers: int | None = None,
    full_refresh: bool = False,
    fail_fast: bool = False,
) -> RunResult:
    """Build what is stale in the selection (everything by default), as ``dbluigi build``.

    ``select`` and ``exclude`` are selectors as the command line takes them. A failed
    task does not raise: ``result.ok`` is False and ``result.failed`` says which and why."""
    proj = _project(project, target, vars)
    options = RunOptions(
        command="build",
        selectors=_selectors(select),
        exclude=_selectors(exclude),
        workers=workers,
        fail_fast=fail_fast,
        full_refresh=full_refresh,
    )
    return execute(proj, options)


def rebuild(
    project: ProjectLike,
    select: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    target: str | None = None,
    vars: Mapping[str, object] | None = None,
    workers: int | None = None,
    full_refresh: bool = False,
    fail_fast: bool = False,
    partitions: Iterable[str] = (),
) -> RunResult:
    """Rebuild the selection now with new build ids, as ``dbluigi rebuild`` (its downstream
    becomes stale; ``x+`` rebuilds it too). ``select`` may not be empty (``UsageError``)."""
    selectors = _selectors(select)
    if not selectors:
        raise UsageError("rebuild needs a selector", hint="for example: rebuild(project, ['x+'])")
    proj = _project(project, target, vars)
    options = RunOptions(
        command="rebuild",
        selectors=selectors,
        exclude=_selectors(exclude),
        workers=workers,
        fail_fast=fail_fast,
        force=True,
        full_refresh=full_refresh,
        partitions=_selectors(partitions),
    )
    return execute(proj, options)


def plan_build(
    project: ProjectLike = ".",
    select: Iterable[str] = (),
    *,
    exclude: Iterable[str] = (),
    target: str | None = None,
    vars: Mapping[str, object] | None = None,
) -> Plan:
    """What a build would run, and why, as ``dbluigi plan``: ``plan.to_run`` lists the
    models it would build, ``plan.decisions[model].reason`` says why. Builds nothing."""
    from dbluigi.runner import prepare

    proj = _project(project, target, vars)
    tgt = _target(proj)
    options = RunOptions(command="plan", selectors=_selectors(select), exclude=_selectors(exclude))
    prepared = prepare(proj, tgt, options)
    prepared.session.close()
    return prepared.plan


def check(
    project: ProjectLike = ".",
    select: Iterable[str] = (),
    *,
    exclude: Iterable[str] = (),
    target: str | None = None,
    vars: Mapping[str, object] | None = None,
) -> RunResult:
    """Run the selected models' checks against the published tables, as ``dbluigi check``;
    a failed check is in the result (``ok`` False), recorded as a run."""
    from dbluigi.runner import check_published, target_state

    proj = _project(project, target, vars)
    tgt = _target(proj)

    def facts() -> TargetState:
        return target_state(proj, tgt)

    state = TargetState(stale=lambda: facts().stale(), last_run=lambda: facts().last_run())
    selected = select_models(proj, select, exclude, state)
    return check_published(proj, tgt, selected)


def select_models(
    project: Project, selectors: Iterable[str], exclude: Iterable[str], state: TargetState
) -> tuple[str, ...]:
    """The models ``selectors`` pick, minus ``exclude`` (``SelectorError`` if none)."""
    return select(project, _selectors(selectors), _selectors(exclude), state=state)


def execute(
    project: Project,
    options: RunOptions,
    *,
    on_event: EventCallback | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``options`` (a build or rebuild) on the project's target with luigi: the one
    path both the command line and this API take. Unset ``workers`` and
    ``scheduler_url`` come from ``dbluigi.toml``."""
    from dataclasses import replace

    options = replace(
        options,
        workers=options.workers or project.config.workers,
        scheduler_url=scheduler_url(options.scheduler_url or project.config.scheduler_url),
    )
    return run_plan(
        project,
        _target(project),
        options,
        _dispatch,
        on_event=on_event,
        on_plan=on_plan,
        on_note=on_note,
    )


def scheduler_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) URL of a luigid scheduler; else ``UsageError``."""
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", url):
        raise UsageError(
            f"--scheduler-url {url!r} is not an http(s) URL of a luigid scheduler",
            hint="for example --scheduler-url http://scheduler-host:8082",
        )
    return url


def _dispatch(run: Run) -> None:
    """luigi is imported only when something is to be built (it costs 0.15 s to import)."""
    from dbluigi.luigi_tasks import dispatch

    dispatch(run)


def _project(
    project: ProjectLike, target: str | None, vars: Mapping[str, object] | None
) -> Project:
    if isinstance(project, Project):
        if target is not None or vars is not None:
            raise UsageError(
                "target and vars are fixed when a project is loaded",
                hint="pass them to load(), or pass the project folder instead of a Project",
            )
        return project
    return load(project, target=target, vars=vars)


def _target(project: Project) -> Target:
    return open_target(project.config.target_url, project_dir=project.root)


def _selectors(values: Iterable[str] | str) -> tuple[str, ...]:
    """A selector string is one selector, not its characters."""
    return (values,) if isinstance(values, str) else tuple(values)
