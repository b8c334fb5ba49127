"""``dbluigi clean``: what a project leaves behind that nothing needs.

- the caches under ``.dbluigi/`` (``cache/``: parsed files, file hashes, seed types and
  the loaded project, rebuilt on the next load; ``docs/``: generated documentation).
  Run artifacts (``runs/``) are the record of what ran and stay; the DuckDB target file
  (``target.duckdb``) is the warehouse and is never touched;
- tables a build left aside in the project's schemas: ``<name>__dbluigi_new`` (a build
  that died before its swap) and ``<name>__dbluigi_failed`` (kept after a failed check,
  for inspection). Never a published table, never the ``dbluigi`` state schema, never a
  partition table (``__dbluigi_p_``: a partitioned build resumes from them).

While a build is running on the target, its aside tables are in use: ``find`` reports
the running runs and ``remove`` refuses to drop tables then.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dbluigi import names
from dbluigi.config import STATE_DIR
from dbluigi.errors import TargetError
from dbluigi.project import Project
from dbluigi.state import StateStore
from dbluigi.targets.base import Session

CACHE_DIRS = ("cache", "docs")
"""Folders under ``.dbluigi/`` that are caches or generated output."""
LEFTOVER_SUFFIXES = (names.RESERVED + names.NEW, names.RESERVED + names.FAILED)


@dataclass(frozen=True)
class Cleanup:
    """What ``clean`` would remove."""

    folders: tuple[Path, ...]
    tables: tuple[str, ...]  # schema.name
    running: tuple[str, ...] = ()  # run ids of builds running on the target now

    @property
    def empty(self) -> bool:
        return not self.folders and not self.tables


def cache_folders(root: Path) -> tuple[Path, ...]:
    """The cache folders of the project that exist."""
    return tuple(p for p in (root / STATE_DIR / d for d in CACHE_DIRS) if p.is_dir())


def leftover_tables(session: Session, project: Project) -> tuple[str, ...]:
    """Aside tables (``__dbluigi_new``, ``__dbluigi_failed``) in the project's schemas."""
    schemas = {m.schema for m in project.models.values()}
    schemas |= {w.schema for m in project.models.values() for w in m.writes}
    schemas.discard(names.STATE_SCHEMA)
    found = [
        f"{schema}.{name}"
        for schema, name in session.relations()
        if schema in schemas and name.endswith(LEFTOVER_SUFFIXES)
    ]
    return tuple(sorted(found))


def running_builds(session: Session) -> tuple[str, ...]:
    """Runs recorded as running whose build still holds its lock (it is alive)."""
    from dbluigi.runner import RUN_LOCK

    store = StateStore(session)
    store.ensure()
    alive = []
    for run_id in store.running_runs():
        key = RUN_LOCK.format(run_id=run_id)
        if session.try_lock(key):
            session.unlock(key)  # nobody held it: the build is gone
        else:
            alive.append(run_id)
    return tuple(alive)


def find(session: Session, project: Project) -> Cleanup:
    """What there is to clean in ``project`` and on its target."""
    return Cleanup(
        cache_folders(project.root), leftover_tables(session, project), running_builds(session)
    )


def remove(session: Session, cleanup: Cleanup) -> None:
    """Remove the folders and drop the tables of ``cleanup``; refuse to drop tables
    while a build runs."""
    if cleanup.tables:
        running = running_builds(session)
        if running:
            raise TargetError(
                f"a build is running on the target (run {', '.join(running)}): "
                "its aside tables may be in use",
                hint="run dbluigi clean again when it has finished",
            )
        for relation in cleanup.tables:
            schema, name = relation.split(".", 1)
            session.drop_relation(schema, name)
    for folder in cleanup.folders:
        shutil.rmtree(folder, ignore_errors=True)


def describe(cleanup: Cleanup) -> Sequence[str]:
    """One line per thing to remove, as ``clean`` lists it."""
    return [*(f"folder {p}" for p in cleanup.folders), *(f"table {t}" for t in cleanup.tables)]
