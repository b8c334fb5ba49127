"""The one exception tree of dbluigi.

Every error a user can cause says what happened, where (file and line, or the
option), and what to do next. Every error carries the same optional attributes,
set by keyword when it is made and never changed after it is raised: ``path``
and ``line`` (where), ``failure_class`` (one of FAILURE_CLASSES, when a task
failed), ``hint`` (what to do next), ``explain_cost`` and ``transient`` (trying
again may succeed: a deadlock, a lock timeout, a lost connection; set by the
adapter that read the driver's error, see ``Session.transient``). ``at()`` and
``with_cost()`` return an annotated copy to raise instead. The CLI is the only
place that prints them and picks exit codes: an error that stops a command
(``ProjectError``, ``UsageError``, ``SelectorError``, ``TargetError``,
``ServerError``) exits 2;
a failed task is recorded in the run and the run exits 1.

    DbluigiError                  path, line, failure_class, hint, explain_cost
    ├── ProjectError          the project on disk is wrong (failure class ``config``)
    │   ├── HeaderError       a bad ``-- key: value`` header
    │   ├── SqlParseError     sqlglot cannot parse a file (class ``syntax``)
    │   ├── DuplicateRelationError
    │   ├── CycleError
    │   └── VariableError     an undefined ``{{ variable }}``, or one adding a statement
    ├── UsageError            a command-line option has a value it cannot take
    ├── SelectorError         a selector matches nothing or is ambiguous
    ├── TargetError           the target database is unreachable, locked or refuses
    │   └── StateError        the ``dbluigi`` state schema is damaged (repairable)
    ├── ServerError           ``dbluigi server`` cannot start or stop
    └── TaskError             a task failed while running; requires its failure class
        └── CheckFailed       a gating check returned rows
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, get_args

REPAIR_HINT = (
    "run dbluigi debug --repair-state (it recreates missing state tables and columns and "
    "forgets unusable model rows, so those models rebuild; published tables are not touched)"
)
FailureClass = Literal[
    "syntax", "runtime", "timeout", "check", "guard", "upstream", "config", "test"
]
"""Why a task failed: the one class every failure has (DESIGN.md, "Guards and failure classes")."""
FAILURE_CLASSES: tuple[FailureClass, ...] = get_args(FailureClass)


@dataclass(frozen=True)
class Violation:
    """The first failing check: what it was, where, its SQL and its first violating rows."""

    name: str
    message: str
    path: str | None = None
    line: int | None = None
    sql: str | None = None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()


class DbluigiError(Exception):
    """Base of every error dbluigi raises on purpose."""

    failure_class: FailureClass | None = None  # a subclass's default; None: not a task's failure
    explain_cost: float | None = None  # the query's estimated cost, when it was EXPLAINed
    transient: bool = False  # trying again may succeed (``-- retries:`` retries only these)

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        failure_class: FailureClass | None = None,
        hint: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        if failure_class is not None:
            assert failure_class in FAILURE_CLASSES, failure_class
            self.failure_class = failure_class
        self.hint = hint
        if transient:
            self.transient = True

    @property
    def location(self) -> str:
        """``path:line``, ``path``, or "" when the error is not about a file."""
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else self.path

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return text if not self.hint else f"{text}\n  hint: {self.hint}"

    def at(self, *, path: str | Path | None = None, line: int | None = None) -> Self:
        """A copy located at ``path`` and ``line`` (each kept as it is when not given)."""
        changes: dict[str, Any] = {}
        if path is not None:
            changes["path"] = str(path)
        if line is not None:
            changes["line"] = line
        return self._copy(changes)

    def with_cost(self, cost: float | None) -> Self:
        """A copy carrying the query's estimated cost (kept as it is when ``cost`` is None)."""
        return self._copy({} if cost is None else {"explain_cost": cost})

    def _copy(self, changes: dict[str, Any]) -> Self:
        return _restore(type(self), self.args, {**self.__dict__, **changes})

    def __reduce__(self) -> tuple[Any, ...]:
        # the constructors take keyword-only arguments: rebuild from the attributes
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type[Any], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


def as_dbluigi(exc: BaseException, *, failure_class: FailureClass = "runtime") -> DbluigiError:
    """``exc`` itself when dbluigi raised it; else a TaskError of ``failure_class`` saying
    what ``exc`` said, so its attributes read like those of any other error."""
    if isinstance(exc, DbluigiError):
        return exc
    return TaskError(str(exc).strip() or type(exc).__name__, failure_class=failure_class)


class ProjectError(DbluigiError):
    """Something in the project's files is wrong; names the file and line."""

    failure_class: FailureClass | None = "config"


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


class UsageError(DbluigiError):
    """A command-line option has a value it cannot take (``--format``, ``--scheduler-url``,
    ``--partition``, ``--var``); the message names the option."""


class SelectorError(DbluigiError):
    """A selector matched nothing, or more than one model where one was meant."""


class TargetError(DbluigiError):
    """The target database cannot be used: unreachable, locked by another build, refused."""


class StateError(TargetError):
    """The ``dbluigi`` state schema of the target is damaged: a table or column is missing,
    or rows cannot be read. ``dbluigi debug --repair-state`` repairs it."""

    def __init__(self, message: str, *, hint: str | None = REPAIR_HINT) -> None:
        super().__init__(message, hint=hint)


class ServerError(DbluigiError):
    """``dbluigi server`` cannot start (its socket's folder is not private, another server
    answers there, the imports fail) or stop."""


class TaskError(DbluigiError):
    """A task failed; ``failure_class`` is one of FAILURE_CLASSES."""

    failure_class: FailureClass

    def __init__(
        self,
        message: str,
        *,
        failure_class: FailureClass,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(
            message,
            path=path,
            line=line,
            failure_class=failure_class,
            hint=hint,
            transient=transient,
        )


class CheckFailed(TaskError):
    """A gating check found violations; carries the check's SQL and the first violating rows."""

    def __init__(
        self,
        message: str,
        *,
        check_sql: str | None,
        columns: Sequence[str] = (),
        rows: Sequence[Sequence[object]] = (),
        path: str | Path | None = None,
        line: int | None = None,
        results: Sequence[Any] = (),  # state.CheckResult (state imports this module)
    ) -> None:
        super().__init__(message, failure_class="check", path=path, line=line)
        self.results = tuple(results)  # every check's result, passed or not
        self.check_sql = check_sql
        self.columns = tuple(columns)
        self.rows = tuple(tuple(r) for r in rows)

    @classmethod
    def from_violation(
        cls,
        violation: Violation,
        *,
        message: str | None = None,
        results: Sequence[Any] = (),  # state.CheckResult (state imports this module)
    ) -> CheckFailed:
        """The error of a check's first violation (``message`` in place of its own)."""
        return cls(
            violation.message if message is None else message,
            check_sql=violation.sql,
            columns=violation.columns,
            rows=violation.rows,
            path=violation.path,
            line=violation.line,
            results=results,
        )
