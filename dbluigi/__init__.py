"""dbluigi: a folder of SQL files as a reliable, resumable ETL pipeline.

The Python API, for an Airflow or Dagster task that runs a build without the command line
(README, "Python API")::

    from dbluigi import build

    result = build("path/to/project", ["staging.agencies+"], target="postgresql://...")
    if not result.ok:
        raise RuntimeError(f"dbluigi run {result.run_id} failed: {result.failed_models}")

``load``, ``build``, ``rebuild``, ``plan_build`` and ``check`` (``dbluigi.api``) return
``Project``, ``RunResult`` (of ``TaskResult``) and ``Plan``; an error that stops a command
raises a ``DbluigiError`` subclass, a failed task is in the result. The names are imported
on first use, so ``import dbluigi`` (and ``dbluigi --version``) stays cheap.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing's: importing typing would cost dbluigi --version 5 ms
if TYPE_CHECKING:
    from typing import Any

    from dbluigi.api import build, check, load, plan_build, rebuild
    from dbluigi.errors import (
        CheckFailed,
        CycleError,
        DbluigiError,
        DuplicateRelationError,
        HeaderError,
        ProjectError,
        SelectorError,
        SqlParseError,
        StateError,
        TargetError,
        TaskError,
        UsageError,
        VariableError,
    )
    from dbluigi.plan import Decision, Plan
    from dbluigi.project import Project
    from dbluigi.runner import RunResult
    from dbluigi.state import TaskResult

_MODULES = {
    "dbluigi.api": ("load", "build", "rebuild", "plan_build", "check"),  # the commands, unprinted
    "dbluigi.project": ("Project",),  # what they return
    "dbluigi.plan": ("Plan", "Decision"),
    "dbluigi.runner": ("RunResult",),
    "dbluigi.state": ("TaskResult",),
    "dbluigi.errors": (  # what they raise (the module's docstring draws the tree)
        "DbluigiError",
        "ProjectError",
        "HeaderError",
        "SqlParseError",
        "DuplicateRelationError",
        "CycleError",
        "VariableError",
        "UsageError",
        "SelectorError",
        "TargetError",
        "StateError",
        "TaskError",
        "CheckFailed",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = [  # noqa: RUF022 (grouped as _MODULES is; a test keeps the two the same)
    "__version__",
    "load",
    "build",
    "rebuild",
    "plan_build",
    "check",
    "Project",
    "Plan",
    "Decision",
    "RunResult",
    "TaskResult",
    "DbluigiError",
    "ProjectError",
    "HeaderError",
    "SqlParseError",
    "DuplicateRelationError",
    "CycleError",
    "VariableError",
    "UsageError",
    "SelectorError",
    "TargetError",
    "StateError",
    "TaskError",
    "CheckFailed",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dbluigi' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
