"""``dbluigi debug``: the versions dbluigi runs with, and whether each database answers.

Each ``[sources.NAME]`` is read and reached on its own, so one source that is
misconfigured (an unset ``${ENV}`` in its URL) or unreachable is reported without
hiding the others. URLs are shown masked (``dbluigi.urls.mask_url``).
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from dbluigi.configfile import CONFIG_FILE, TomlLines
from dbluigi.errors import DbluigiError
from dbluigi.urls import mask_url

PACKAGES = ("sqlglot", "luigi", "duckdb", "psycopg2-binary", "typer", "rich")


@dataclass(frozen=True)
class SourceReport:
    """One ``[sources.NAME]``: its masked URL (None when it cannot be read) and the
    error that kept dbluigi from reaching it (None: it answered ``select 1``)."""

    name: str
    url: str | None
    error: str | None


def versions() -> dict[str, str]:
    """Python's and each package's version (``not installed`` when absent)."""
    from dbluigi import __version__

    found = {"dbluigi": __version__, "python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            found[package.removesuffix("-binary")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if package != "psycopg2-binary":
                found[package] = "not installed"
    return found


def check_sources(root: Path) -> list[SourceReport]:
    """Each source of ``dbluigi.toml``, reached with ``select 1``, in file order."""
    from dbluigi.sources import connect
    from dbluigi.sources.config import parse_sources

    path = root / CONFIG_FILE
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8-sig")
    sources = tomllib.loads(text).get("sources", {})
    if not isinstance(sources, dict):
        return []
    lines = TomlLines(text)
    reports = []
    for name, settings in sources.items():
        raw = settings.get("url") if isinstance(settings, dict) else None
        shown = mask_url(str(raw)) if raw is not None else None
        try:
            tables = parse_sources({name: settings}, lines)
            first = next(iter(tables.values()))
            shown = first.display_url
            with connect(first) as connection:
                connection.query("select 1")
        except DbluigiError as exc:
            reports.append(SourceReport(name, shown, _one_line(exc)))
        except Exception as exc:  # a driver's error: the source is not reachable
            reports.append(SourceReport(name, shown, mask_url(_one_line(exc))))
        else:
            reports.append(SourceReport(name, shown, None))
    return reports


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
