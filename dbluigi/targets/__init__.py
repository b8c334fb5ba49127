"""Target databases: where models are built, checked, published, and state is kept.

``open_target(url, project_dir=...)`` turns a ``--target`` URL into a ``Target``;
``Target.connect()`` opens a ``Session`` with everything a strategy needs (build a
table aside, swap it in, load seeds, classify errors). ``mask_url`` (from
``dbluigi.urls``) is how a URL is shown anywhere: its password replaced by ``***``.

Accepted URLs:

- none, or ``duckdb``: ``<project>/.dbluigi/target.duckdb``
- ``duckdb:///relative/file.duckdb`` (relative to the project) or
  ``duckdb:////absolute/file.duckdb``
- ``postgresql://user:password@host:5432/dbname`` (also ``postgres://`` and
  ``postgresql+psycopg2://``)
"""

from __future__ import annotations

from pathlib import Path

from dbluigi.errors import TargetError
from dbluigi.targets.base import Column, IndexLike, QueryResult, Session, Target, index_name
from dbluigi.urls import mask_url, parse_url

__all__ = [
    "Column",
    "IndexLike",
    "QueryResult",
    "Session",
    "Target",
    "index_name",
    "mask_url",
    "open_target",
]

_DUCKDB_PREFIX = "duckdb:///"
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")
_ACCEPTED = (
    "duckdb (the default), duckdb:///path/to/file.duckdb, or postgresql://user@host:5432/dbname"
)


def sql_dialect(url: str | None) -> tuple[str, str]:
    """(sqlglot dialect, default schema) of the target a URL names, without opening it:
    what the project is read in before any connection exists."""
    scheme = url.split("://", 1)[0].lower() if url and "://" in url else ""
    if scheme in _POSTGRES_SCHEMES:
        return "postgres", "public"
    return "duckdb", "main"


def open_target(url: str | None, *, project_dir: Path) -> Target:
    """The target a ``--target`` URL (or ``DBLUIGI_TARGET``) names; nothing is opened yet.

    The project's state folder (``.dbluigi``: the default DuckDB file, run artifacts,
    caches) must be a folder, whatever the target."""
    folder = project_dir / ".dbluigi"
    if folder.exists() and not folder.is_dir():
        raise TargetError(
            f"{folder} is a file, and dbluigi keeps its state folder there (the default "
            "DuckDB target, run artifacts, caches)",
            hint=f"move the file {folder} aside (or rename it); dbluigi creates the folder",
        )
    if url is None or url.strip() == "duckdb":
        folder.mkdir(parents=True, exist_ok=True)
        from dbluigi.targets.duckdb import DuckDBTarget

        return DuckDBTarget(folder / "target.duckdb")
    url = url.strip()
    if url.startswith(_DUCKDB_PREFIX):
        raw = url[len(_DUCKDB_PREFIX) :]
        if not raw or raw.startswith(":memory:"):
            raise TargetError(
                f"--target {url}: a DuckDB target needs a file path",
                hint=f"use {_ACCEPTED}",
            )
        path = Path(raw).expanduser()
        from dbluigi.targets.duckdb import DuckDBTarget

        return DuckDBTarget(path if path.is_absolute() else project_dir / path)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _POSTGRES_SCHEMES:
        try:
            parse_url(url)
        except ValueError as exc:
            raise TargetError(
                f"--target {mask_url(url)}: not a valid PostgreSQL URL ({exc})",
                hint=f"use {_ACCEPTED}",
            ) from None
        from dbluigi.targets.postgres import PostgresTarget

        return PostgresTarget(url)
    raise TargetError(
        f"--target {mask_url(url)!r} is not a target dbluigi supports",
        hint=f"use {_ACCEPTED} (as --target or DBLUIGI_TARGET)",
    )
