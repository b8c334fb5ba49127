"""``dbluigi retry``: what the last build left unbuilt, to build again (like ``dbt retry``).

The last ``build``, ``rebuild`` or ``retry`` run is read from the state; a model whose
last attempt there failed or was skipped (a partitioned one: any of its partitions) is
selected again, by its exact name, and built with the selection semantics of ``build``
and the options that run was given (``--full-refresh``, ``--partition``, a rebuild's
forcing), as the state keeps them (``runs.options``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dbluigi.state import StateStore, TaskRecord

RETRIED_COMMANDS = ("build", "rebuild", "retry")
"""The runs ``retry`` looks back at: those that build (``check`` runs build nothing)."""
UNBUILT = ("failed", "skipped")


@dataclass(frozen=True)
class Retry:
    """The run looked back at, the models it left unbuilt (in the order they ran), and
    the options it was given, which their retry takes again (as ``dbt retry`` does)."""

    run_id: str
    command: str
    status: str
    models: tuple[str, ...]
    # a ``rebuild`` forced its models: their retry is forced too (a skipped reader may
    # be up to date, yet the rebuild meant to rebuild it); so is a retry of it
    force: bool = False
    full_refresh: bool = False  # --full-refresh: incremental models from scratch again
    partitions: tuple[str, ...] = ()  # --partition: those values only, again

    @property
    def options(self) -> list[str]:
        """The options, as the command line gives them."""
        given = ["--full-refresh"] if self.full_refresh else []
        return given + [f"--partition {value}" for value in self.partitions]


def last_unbuilt(store: StateStore, target: str) -> Retry | None:
    """What the last building run on ``target`` (``runner.run_target``) left failed or
    skipped; None when no run built anything there."""
    run = store.last_run_of(RETRIED_COMMANDS, target=target)
    if run is None:
        return None
    last: dict[tuple[str, str], TaskRecord] = {}
    for record in store.task_records(run.run_id):  # by start time, then attempt
        last[(record.model, record.partition)] = record
    models = dict.fromkeys(m for (m, _), r in last.items() if r.status in UNBUILT)
    return Retry(
        run.run_id,
        run.command,
        run.status,
        tuple(models),
        force=run.force,
        full_refresh=run.full_refresh,
        partitions=run.partitions,
    )
