"""``dbluigi retry``: what the last build left unbuilt, to build again (like ``dbt retry``).

The last ``build``, ``rebuild`` or ``retry`` run is read from the state; a model whose
last attempt there failed or was skipped (a partitioned one: any of its partitions) is
selected again, by its exact name, and built with the selection semantics of ``build``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbluigi.state import StateStore, TaskRecord

RETRIED_COMMANDS = ("build", "rebuild", "retry")
"""The runs ``retry`` looks back at: those that build (``check`` runs build nothing)."""
UNBUILT = ("failed", "skipped")


@dataclass(frozen=True)
class Retry:
    """The run looked back at and the models it left unbuilt, in the order they ran."""

    run_id: str
    command: str
    status: str
    models: tuple[str, ...]

    @property
    def force(self) -> bool:
        """A ``rebuild`` forced its models: their retry is forced too (a skipped reader
        may be up to date, yet the rebuild meant to rebuild it)."""
        return self.command == "rebuild"


def last_unbuilt(store: StateStore) -> Retry | None:
    """What the last building run left failed or skipped; None when no run built anything."""
    run = store.last_run_of(RETRIED_COMMANDS)
    if run is None:
        return None
    last: dict[tuple[str, str], TaskRecord] = {}
    for record in store.task_records(run.run_id):  # by start time, then attempt
        last[(record.model, record.partition)] = record
    models = dict.fromkeys(m for (m, _), r in last.items() if r.status in UNBUILT)
    return Retry(run.run_id, run.command, run.status, tuple(models))
