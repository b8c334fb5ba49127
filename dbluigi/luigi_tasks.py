"""The luigi adapter: one luigi task per model, and the dispatch that runs them.

This is the only module that imports luigi. A task's identity is its model and
fingerprint, so every worker of a run (or of a central scheduler) names the same
task the same way. ``complete()`` is answered from the plan decided once at the
start of the run, never by querying the database per task.
"""

from __future__ import annotations

import logging

import luigi
import luigi.configuration

from dbluigi.runner import Run

_RUN: Run | None = None  # the run being dispatched; forked workers inherit it


def _run() -> Run:
    assert _RUN is not None, "dbluigi tasks only run inside dispatch()"
    return _RUN


class DbluigiModel(luigi.Task):
    """Build one model: build aside, check, swap (see dbluigi.publish)."""

    model: str = luigi.Parameter()  # type: ignore[assignment]
    fingerprint: str = luigi.Parameter()  # type: ignore[assignment]

    @property
    def priority(self) -> int:  # type: ignore[override]
        return _run().project.models[self.model].header.priority

    def requires(self) -> list[luigi.Task]:
        run = _run()
        decisions = run.plan.decisions
        required: list[luigi.Task] = [
            model_task(run, parent)
            for parent in run.project.model_parents(self.model)
            if parent in decisions
        ]
        required += [
            MissingRelation(relation=name) for name in decisions[self.model].missing_parents
        ]
        return required

    def complete(self) -> bool:
        return _run().is_complete(self.model)

    def run(self) -> None:
        _run().execute(self.model)


class MissingRelation(luigi.ExternalTask):
    """A parent that is neither selected nor built, or a source that does not exist."""

    relation: str = luigi.Parameter()  # type: ignore[assignment]

    def complete(self) -> bool:
        return False


def model_task(run: Run, model: str) -> DbluigiModel:
    return DbluigiModel(model=model, fingerprint=run.plan.decisions[model].fingerprint)


def dispatch(run: Run) -> None:
    """Run the plan's models with luigi's local scheduler and ``run.options.workers`` workers."""
    global _RUN
    config = luigi.configuration.get_config()
    # complete() answers from the plan; a finished parent in another worker process
    # is known to the scheduler, not to this process's plan, so don't re-ask at run time.
    config.set("worker", "check_unfulfilled_deps", "false")
    # dbluigi reports outcomes itself; luigi's own log lines would only repeat them
    config.set("core", "no_configure_logging", "true")
    logging.getLogger("luigi-interface").setLevel(logging.CRITICAL)
    logging.getLogger("luigi").setLevel(logging.CRITICAL)
    _RUN = run
    try:
        tasks = [model_task(run, m) for m in run.plan.selected]
        luigi.build(
            tasks,
            local_scheduler=True,
            workers=run.options.workers,
            detailed_summary=False,
        )
    finally:
        _RUN = None
