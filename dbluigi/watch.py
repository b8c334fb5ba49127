"""Continuous mode: ``dbluigi build --watch`` builds, then builds again whenever a file of
the project changes and every interval.

Each cycle is a normal build of the selection (``runner.run_plan``): it reads the state
and the versions of input and source tables, plans, and runs only what is stale, so a
cycle with nothing to do costs one planning pass and one row in ``dbluigi.runs``.

    watch() ── cycle 1 ── report ── wait ── cycle 2 ── report ── wait ── ...
                 │                   ▲  ▲
         run_plan on a thread   files changed (watchfiles, on a thread)
                                   the interval ran out · a stop request

A project that does not load (a file saved mid-edit) is reported and waited out: the
next file change tries again. A failed cycle is reported and the loop goes on. The
first stop request (Ctrl-C or SIGTERM, ``StopRequest``) lets the running tasks finish,
starts no new one and ends the loop; a second one calls ``hard_stop`` at once. Cycles
run on a thread of their own and the loop waits on the main thread, so a signal is
handled at once even while a query runs.

Plain Python with no luigi and no printing: the dispatch and what to show are passed in.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path, PurePath
from types import FrameType
from typing import Literal, Protocol

import watchfiles

from dbluigi.config import STATE_DIR, load_config
from dbluigi.errors import DbluigiError, ProjectError, TargetError
from dbluigi.plan import Plan
from dbluigi.project import load_project
from dbluigi.runner import Dispatch, EventCallback, RunOptions, RunResult, run_plan
from dbluigi.targets import open_target

DEFAULT_INTERVAL_S = 60.0  # unless --interval or [watch] interval says otherwise

# what the watcher ignores besides watchfiles' defaults (version control, virtualenvs,
# __pycache__, *.pyc, vim's .swp, backups~, emacs' .#lock files): dbluigi's own folder,
# caches, the scratch files editors write while saving, and DuckDB files (a target
# inside the project changes with every build)
IGNORED_DIRS = (STATE_DIR, ".ruff_cache", ".cache", ".ipynb_checkpoints", ".vscode")
IGNORED_NAMES = (
    r"^#.*#$",  # emacs auto-save
    r"^4913$",  # vim's probe of whether it may write the folder
    r"\.(tmp|temp|bak|orig|swx|swpx|kate-swp|crswap)$",
    r"^\.~lock\.",  # LibreOffice, when a CSV seed is open in it
    r"^\.goutputstream-",  # GNOME's atomic save
    r"\.duckdb(\.wal)?$",
)

Reason = Literal["start", "interval", "change"]


class StopRequest:
    """Ctrl-C and SIGTERM for a watch loop: the first sets ``event`` (running tasks finish,
    none starts, the loop ends); the second calls ``hard_stop`` with the signal number."""

    def __init__(
        self,
        hard_stop: Callable[[int], object],
        *,
        on_first: Callable[[int], object] | None = None,
    ) -> None:
        self.event = threading.Event()
        self._hard_stop = hard_stop
        self._on_first = on_first
        self._listeners: list[Callable[[], object]] = []
        self._count = 0
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def on_request(self, listener: Callable[[], object]) -> None:
        """Call ``listener`` when the first stop is requested (to wake a waiting loop)."""
        self._listeners.append(listener)

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask to stop; asked before, stop at once."""
        with self._lock:
            self._count += 1
            again = self._count > 1
        if again:
            self._hard_stop(signum)
            return
        self.event.set()
        for listener in self._listeners:
            listener()
        if self._on_first is not None:
            self._on_first(signum)

    @contextmanager
    def handling_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM request a stop while inside (main thread only).

        The request is made on a thread of its own: a signal handler runs on the main
        thread between two bytecodes, maybe inside the lock of the event the loop waits
        on (setting it there would wait forever) or inside a write to the terminal."""

        def handler(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=self.request, args=(signum,), name="dbluigi-stop").start()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, old in previous.items():
                signal.signal(s, old)


class ProjectFilter(watchfiles.BaseFilter):
    """The files of the project that matter to a build: everything under its folder but
    dbluigi's own state folder, caches, editors' scratch files and ``ignore`` (folders
    relative to the project, such as the dump output folder)."""

    def __init__(self, root: Path, ignore: Sequence[str] = ()) -> None:
        self.ignore_dirs = (*watchfiles.DefaultFilter.ignore_dirs, *IGNORED_DIRS)
        self.ignore_entity_patterns = (
            *watchfiles.DefaultFilter.ignore_entity_patterns,
            *IGNORED_NAMES,
        )
        super().__init__()
        self.root = root.resolve()
        self._ignored = tuple(PurePath(p).parts for p in ignore if p not in ("", "."))
        self._names = tuple(re.compile(p) for p in self.ignore_entity_patterns)

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        try:
            parts = Path(path).resolve().relative_to(self.root).parts
        except ValueError:
            return False  # outside the project (a symlink pointing away)
        if not parts or any(p in self.ignore_dirs for p in parts[:-1]):
            return False
        if parts[-1] in self.ignore_dirs or any(r.search(parts[-1]) for r in self._names):
            return False
        return not any(parts[: len(i)] == i for i in self._ignored)


class ProjectFiles:
    """The project's files, watched with watchfiles on a thread of their own; the paths
    that changed gather until ``take()``. ``on_change`` is called after each batch."""

    def __init__(
        self,
        root: Path,
        *,
        ignore: Sequence[str] = (),
        on_change: Callable[[], object] | None = None,
    ) -> None:
        self.root = root.resolve()
        self._filter = ProjectFilter(self.root, ignore)
        self._on_change = on_change
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._watch, name="dbluigi-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)

    def pending(self) -> bool:
        """Whether a file changed since the last ``take()``; raises if watching failed."""
        if self._failure is not None:
            raise ProjectError(
                f"cannot watch the project's files: {self._failure}",
                path=str(self.root),
                hint="on Linux, raise fs.inotify.max_user_watches; or set "
                "WATCHFILES_FORCE_POLLING=1 to poll instead",
            )
        with self._lock:
            return bool(self._pending)

    def take(self) -> tuple[str, ...]:
        """The files (relative to the project) that changed since the last call."""
        with self._lock:
            changed, self._pending = sorted(self._pending), set()
        return tuple(changed)

    def _watch(self) -> None:
        try:
            for changes in watchfiles.watch(
                self.root,
                watch_filter=self._filter,
                stop_event=self._closed,
                raise_interrupt=False,
            ):
                with self._lock:
                    self._pending.update(_relative(self.root, path) for _, path in changes)
                self._notify()
        except Exception as exc:  # reported by pending(), on the loop's thread
            self._failure = exc
            self._notify()

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change()


def _relative(root: Path, path: str) -> str:
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return path


@dataclass(frozen=True)
class Trigger:
    """Why a cycle runs: the first one, the interval ran out, or files changed."""

    number: int
    reason: Reason
    changed: tuple[str, ...] = ()  # files relative to the project, when ``reason`` is change


@dataclass(frozen=True)
class Cycle:
    """What one cycle did: its run's result, or the error that kept it from running."""

    trigger: Trigger
    started_at: datetime
    elapsed_s: float
    result: RunResult | None = None
    error: DbluigiError | None = None
    target: str | None = None  # the target's URL, password masked
    warnings: tuple[str, ...] = ()  # the project's warnings (dbluigi.project)
    interval_s: float | None = None  # None: only a file change starts the next cycle
    next_check_at: datetime | None = None  # set by the loop, when interval_s is

    @property
    def exit_code(self) -> int:
        """What a build would have exited with: 0 built, 1 a task failed, 2 an error."""
        if self.error is not None:
            return 2
        return self.result.exit_code if self.result is not None else 0


@dataclass(frozen=True)
class WatchOptions:
    """``build --watch``'s options. ``run`` is the first cycle's (``rebuild --watch``
    forces it); later cycles are builds. ``workers`` and ``scheduler_url`` given on the
    command line win over ``dbluigi.toml``, read again each cycle, as is ``interval``
    over ``[watch] interval``."""

    project_dir: Path
    run: RunOptions
    target: str | None = None
    variables: Mapping[str, str] | None = None
    workers: int | None = None
    scheduler_url: str | None = None
    interval: float | None = None


ProgressFactory = Callable[
    [], AbstractContextManager[tuple[Callable[[Plan], None], EventCallback | None]]
]


def watch(
    options: WatchOptions,
    dispatch: Dispatch,
    stop: StopRequest,
    report: Callable[[Cycle], object],
    *,
    progress: ProgressFactory | None = None,
) -> int:
    """Build, then build again on each file change and every interval, until ``stop``;
    returns the number of cycles run. A first cycle that cannot run for a reason other
    than the project's files (a bad selector or option, an unreachable target) raises."""
    config = load_config(options.project_dir, target=options.target, variables=options.variables)
    cycles = _Cycles(options, dispatch, stop, progress, config.watch_interval)
    outputs = [Path(output) for output in config.outputs]
    ignore = [output.as_posix() for output in outputs if not output.is_absolute()]
    wake = threading.Event()
    files = ProjectFiles(options.project_dir, ignore=ignore, on_change=wake.set)
    stop.on_request(wake.set)
    files.start()
    try:
        return loop(cycles, files, stop, report, wake)
    finally:
        files.close()


class ChangeSource(Protocol):
    """What the loop needs of the file watcher (``ProjectFiles``; tests pass their own)."""

    def pending(self) -> bool: ...

    def take(self) -> tuple[str, ...]: ...


def loop(
    run_cycle: Callable[[Trigger], Cycle],
    files: ChangeSource,
    stop: StopRequest,
    report: Callable[[Cycle], object],
    wake: threading.Event,
) -> int:
    """Run cycles until ``stop``: the first at once, each next one when a file changes or
    the cycle's interval runs out (a cycle without one waits for a change). ``wake`` is
    set whenever a file changes or a stop is requested. Returns the number of cycles."""
    trigger = Trigger(1, "start")
    while True:
        cycle = _in_thread(run_cycle, trigger)
        deadline = None
        if cycle.interval_s is not None:
            deadline = time.monotonic() + cycle.interval_s
            cycle = replace(cycle, next_check_at=_now() + timedelta(seconds=cycle.interval_s))
        report(cycle)
        reason = None if stop.requested else _wait(files, stop, wake, deadline)
        if reason is None:
            return trigger.number
        trigger = Trigger(trigger.number + 1, reason, files.take() if reason == "change" else ())


def _wait(
    files: ChangeSource,
    stop: StopRequest,
    wake: threading.Event,
    deadline: float | None,
) -> Reason | None:
    """Why the next cycle starts, or None when a stop was requested first."""
    while not stop.requested:
        if files.pending():
            return "change"
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return "interval"
        wake.wait(remaining)
        wake.clear()  # before looking again, so a wake-up after the look is not lost
    return None


def _in_thread(run_cycle: Callable[[Trigger], Cycle], trigger: Trigger) -> Cycle:
    """Run one cycle on a thread of its own, so this (main) thread stays free to handle
    signals while a query runs; what it raises is raised here."""
    outcome: list[Cycle | BaseException] = []

    def target() -> None:
        try:
            outcome.append(run_cycle(trigger))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, name=f"dbluigi-cycle-{trigger.number}", daemon=True)
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


class _Cycles:
    """One cycle: load the project again, open the target, ``run_plan``."""

    def __init__(
        self,
        options: WatchOptions,
        dispatch: Dispatch,
        stop: StopRequest,
        progress: ProgressFactory | None,
        configured: float | None,
    ) -> None:
        self.options = options
        self.dispatch = dispatch
        self.stop = stop
        self.progress = progress
        self.interval = options.interval or configured or DEFAULT_INTERVAL_S

    def __call__(self, trigger: Trigger) -> Cycle:
        options = self.options
        started, clock = _now(), time.perf_counter()
        run = options.run
        if trigger.number > 1:  # rebuild --watch forces the first cycle only
            run = replace(run, command="build", force=False, partitions=())
        target = None
        try:
            project = load_project(
                options.project_dir, target=options.target, variables=options.variables
            )
            config = project.config
            self.interval = options.interval or config.watch_interval or DEFAULT_INTERVAL_S
            run = replace(
                run,
                workers=options.workers or config.workers,
                scheduler_url=options.scheduler_url or config.scheduler_url,
            )
            tgt = open_target(config.target_url, project_dir=project.root)
            target = tgt.display_url
            with self.progress() if self.progress else _no_progress() as (on_plan, on_event):
                result = run_plan(
                    project,
                    tgt,
                    run,
                    self.dispatch,
                    on_event=on_event,
                    on_plan=on_plan,
                    stop=self.stop.event,
                )
        except DbluigiError as exc:
            if trigger.number == 1 and not isinstance(exc, ProjectError):
                raise  # a bad selector or option, an unreachable target: fix it first
            return Cycle(
                trigger,
                started,
                time.perf_counter() - clock,
                error=exc,
                target=target,
                # the project's files are wrong: the next change may mend them; the
                # target may come back by itself
                interval_s=self.interval if isinstance(exc, TargetError) else None,
            )
        return Cycle(
            trigger,
            started,
            time.perf_counter() - clock,
            result=result,
            target=target,
            warnings=tuple(str(w) for w in project.warnings),
            interval_s=self.interval,
        )


@contextmanager
def _no_progress() -> Iterator[tuple[Callable[[Plan], None], EventCallback | None]]:
    yield (lambda plan: None), None


def _now() -> datetime:
    return datetime.now().astimezone()
