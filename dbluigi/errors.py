"""The one exception tree of dbluigi.

Every error a user can cause says what happened, where (file and line, or the
option), and what to do next. The CLI is the only place that prints them and
picks exit codes: ``ProjectError``, ``SelectorError`` and ``TargetError`` exit 2,
a failed task exits 1.

    DbluigiError
    ├── ProjectError          the project on disk is wrong (failure class ``config``)
    │   ├── HeaderError       a bad ``-- key: value`` header
    │   ├── SqlParseError     sqlglot cannot parse a file (class ``syntax``)
    │   ├── DuplicateRelationError
    │   ├── CycleError
    │   └── VariableError     an undefined ``{{ variable }}``, or one adding a statement
    ├── SelectorError         a selector matches nothing or is ambiguous
    ├── TargetError           the target database is unreachable, locked or refuses
    │   └── StateError        the ``dbluigi`` state schema is damaged (repairable)
    └── TaskError             a task failed while running; carries its failure class
        └── CheckFailed       a gating check returned rows
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

REPAIR_HINT = (
    "run dbluigi debug --repair-state (it recreates missing state tables and columns and "
    "forgets unusable model rows, so those models rebuild; published tables are not touched)"
)
FAILURE_CLASSES = ("syntax", "runtime", "timeout", "check", "guard", "upstream", "config")


class DbluigiError(Exception):
    """Base of every error dbluigi raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ProjectError(DbluigiError):
    """Something in the project's files is wrong; names the file and line."""

    failure_class = "config"

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = str(path) if path is not None else None
        self.line = line

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else self.path

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return text if not self.hint else f"{text}\n  hint: {self.hint}"


class HeaderError(ProjectError):
    """A header line has an unknown key or a value that does not parse."""


class SqlParseError(ProjectError):
    """sqlglot could not parse a file of the project."""

    failure_class = "syntax"


class DuplicateRelationError(ProjectError):
    """Two files map to the same relation."""


class CycleError(ProjectError):
    """The dependency graph has a cycle."""

    def __init__(self, cycle: Sequence[str], files: Sequence[str]) -> None:
        chain = " -> ".join(cycle)
        listing = "\n".join(f"  {f}" for f in files)
        super().__init__(
            f"dependency cycle: {chain}\nfiles involved:\n{listing}",
            hint="break the cycle by removing one of these references or `-- depends:` lines",
        )
        self.cycle = tuple(cycle)
        self.files = tuple(files)


class VariableError(ProjectError):
    """A ``{{ name }}`` placeholder has no value, or a value that adds a statement."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
        variable: str | None = None,
    ) -> None:
        super().__init__(message, path=path, line=line, hint=hint)
        self.variable = variable  # the variable's name


class SelectorError(DbluigiError):
    """A selector matched nothing, or more than one model where one was meant."""


class TargetError(DbluigiError):
    """The target database cannot be used: unreachable, locked by another build, refused."""


class StateError(TargetError):
    """The ``dbluigi`` state schema of the target is damaged: a table or column is missing,
    or rows cannot be read. ``dbluigi debug --repair-state`` repairs it."""

    def __init__(self, message: str, *, hint: str | None = REPAIR_HINT) -> None:
        super().__init__(message, hint=hint)


class TaskError(DbluigiError):
    """A task failed; ``failure_class`` is one of FAILURE_CLASSES."""

    explain_cost: float | None = None  # the query's estimated cost, when it was EXPLAINed

    def __init__(
        self,
        message: str,
        *,
        failure_class: str,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        assert failure_class in FAILURE_CLASSES, failure_class
        super().__init__(message, hint=hint)
        self.failure_class = failure_class
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = (
            f"{self.path}:{self.line}: "
            if self.path and self.line
            else (f"{self.path}: " if self.path else "")
        )
        text = f"{where}{self.message}"
        return text if not self.hint else f"{text}\n  hint: {self.hint}"


class CheckFailed(TaskError):
    """A gating check found violations; carries the check's SQL and the first violating rows."""

    def __init__(
        self,
        message: str,
        *,
        check_sql: str | None,
        columns: Sequence[str] = (),
        rows: Sequence[Sequence[object]] = (),
        path: str | None = None,
        line: int | None = None,
        results: Sequence[object] = (),
    ) -> None:
        super().__init__(message, failure_class="check", path=path, line=line)
        self.results = tuple(results)  # every check's result, passed or not
        self.check_sql = check_sql
        self.columns = tuple(columns)
        self.rows = tuple(tuple(r) for r in rows)
