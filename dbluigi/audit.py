"""Performance audit from the ``task_runs`` history: slow tasks and models that got slower.

- ``detect_slow`` (pure): the tasks of a run that took more than ``factor`` times
  the median of their recent successful builds, and more than ``min_seconds``.
- ``slow_tasks``: reads that history and applies ``detect_slow`` at the end of a build.
- ``model_speeds``: each model's median and last duration over its recent
  successful builds, for ``dbluigi history --slow``.

Only successful build attempts count as history (``check`` runs and failed or
retried attempts do not), and only the ``RECENT_BUILDS`` most recent per model.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbluigi.config import Config
from dbluigi.state import StateStore
from dbluigi.targets.base import Session

if TYPE_CHECKING:
    from dbluigi.state import TaskResult

SLOW_FACTOR = 3.0
"""A task is slow when it takes more than this many times its median ..."""
SLOW_SECONDS = 5.0
"""... and more than this many seconds (``[audit] slow_factor`` / ``slow_seconds``)."""
RECENT_BUILDS = 10
"""How many of a model's latest successful builds make its history."""
MIN_HISTORY = 3
"""Fewer earlier builds than this say too little to call anything slow."""
SLOWER_FACTOR = 1.5
"""``history --slow``: a model got slower when its last build took this many times
the median of the builds before it ..."""
SLOWER_SECONDS = 1.0
"""... and at least this many seconds more."""


@dataclass(frozen=True)
class SlowTask:
    """A task of this run that took much longer than its recent history."""

    model: str
    duration_s: float
    median_s: float  # of the model's recent successful builds before this run
    builds: int  # how many builds that median is over

    @property
    def factor(self) -> float:
        return self.duration_s / self.median_s if self.median_s > 0 else float("inf")

    def describe(self) -> str:
        return (
            f"{self.model} took {self.duration_s:.1f}s, {self.factor:.1f}x its median of "
            f"{self.median_s:.1f}s over its last {self.builds} successful builds"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "duration_s": round(self.duration_s, 4),
            "median_s": round(self.median_s, 4),
            "builds": self.builds,
        }


@dataclass(frozen=True)
class ModelSpeed:
    """A model's recent successful builds: how long they take, and whether it got slower."""

    model: str
    builds: int
    median_s: float
    last_s: float
    earlier_median_s: float | None  # of the builds before the last one

    @property
    def change(self) -> float | None:
        """The last build's duration over the median of the ones before it."""
        if self.earlier_median_s is None or self.earlier_median_s <= 0:
            return None
        return self.last_s / self.earlier_median_s

    @property
    def got_slower(self) -> bool:
        return (
            self.earlier_median_s is not None
            and self.builds - 1 >= MIN_HISTORY
            and self.last_s > SLOWER_FACTOR * self.earlier_median_s
            and self.last_s - self.earlier_median_s >= SLOWER_SECONDS
        )

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "builds": self.builds,
            "median_s": round(self.median_s, 4),
            "last_s": round(self.last_s, 4),
            "earlier_median_s": None
            if self.earlier_median_s is None
            else round(self.earlier_median_s, 4),
            "got_slower": self.got_slower,
        }


def detect_slow(
    durations: Mapping[str, float],
    history: Mapping[str, Sequence[float]],
    *,
    factor: float = SLOW_FACTOR,
    min_seconds: float = SLOW_SECONDS,
    min_history: int = MIN_HISTORY,
) -> tuple[SlowTask, ...]:
    """The tasks slower than ``factor`` x their median history and ``min_seconds``, slowest first."""
    slow = []
    for model, duration in durations.items():
        earlier = history.get(model, ())
        if len(earlier) < min_history:
            continue
        median = statistics.median(earlier)
        if duration > factor * median and duration > min_seconds:
            slow.append(SlowTask(model, duration, median, len(earlier)))
    return tuple(sorted(slow, key=lambda s: (-s.duration_s, s.model)))


def recent_durations(
    session: Session,
    *,
    models: Sequence[str] | None = None,
    exclude_run: str = "",
    limit: int = RECENT_BUILDS,
) -> dict[str, list[float]]:
    """Each model's latest successful build durations, newest first."""
    return StateStore(session).recent_durations(limit=limit, models=models, exclude_run=exclude_run)


def slow_tasks(
    session: Session, config: Config, run_id: str, results: Sequence[TaskResult]
) -> tuple[SlowTask, ...]:
    """The successful tasks of run ``run_id`` that were much slower than their history."""
    durations = {r.model: r.duration_s for r in results if r.status == "success"}
    if not durations:
        return ()
    history = recent_durations(session, models=sorted(durations), exclude_run=run_id)
    return detect_slow(
        durations,
        history,
        factor=SLOW_FACTOR if config.slow_factor is None else config.slow_factor,
        min_seconds=SLOW_SECONDS if config.slow_seconds is None else config.slow_seconds,
    )


def speeds(history: Mapping[str, Sequence[float]]) -> list[ModelSpeed]:
    """``ModelSpeed`` of each model from its durations (newest first), slowest median first."""
    result = []
    for model, durations in history.items():
        if not durations:
            continue
        earlier = durations[1:]
        result.append(
            ModelSpeed(
                model=model,
                builds=len(durations),
                median_s=statistics.median(durations),
                last_s=durations[0],
                earlier_median_s=statistics.median(earlier) if earlier else None,
            )
        )
    return sorted(result, key=lambda s: (-s.median_s, s.model))


def model_speeds(session: Session, *, limit: int = RECENT_BUILDS) -> list[ModelSpeed]:
    """Every model's recent build speed, from the audit tables; slowest median first."""
    return speeds(recent_durations(session, limit=limit))
