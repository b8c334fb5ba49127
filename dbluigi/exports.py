"""Where ``dump`` models write: the output folder, the file of each dump, atomic files.

A dump writes ``<output>/<model name>.csv``, or the file its ``-- path:`` names,
relative to the output folder (``[project] output``, ``exports`` by default, relative
to the project). A path that leaves the output folder, or two dumps writing the same
file, is a project error naming the file and line. Files are written under a hidden
temporary name next to their final place and renamed into it, so a reader sees the
old file or the new one, never a part. A temporary file a killed process left behind
(its pid no longer alive on this host) is removed by the next write of that file.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from dbluigi.errors import ProjectError

if TYPE_CHECKING:
    from dbluigi.config import Config


def output_folder(config: Config) -> Path:
    """The project's output folder, absolute."""
    return (config.root / config.output).resolve()


def dump_file(
    config: Config, name: str, written: str | None, *, path: str, line: int | None
) -> Path:
    """The file a dump model writes: ``written`` (its ``-- path:``, at ``path:line``)
    inside the output folder, or ``<name>.csv`` there; a path that leaves the output
    folder is a ProjectError."""
    folder = output_folder(config)
    if written is None:
        return folder / f"{name}.csv"
    resolved = (folder / written).resolve()
    if resolved == folder or not resolved.is_relative_to(folder):
        raise ProjectError(
            f"path {written!r} leaves the output folder {config.output}/ (it names {resolved})",
            path=path,
            line=line,
            hint=f"name a file inside {config.output}/, relative to it, e.g. "
            f"-- path: {name}.csv; [project] output in dbluigi.toml moves the folder",
        )
    return resolved


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield temp
        with temp.open("rb") as written:  # on disk before it is visible under its name
            os.fsync(written.fileno())
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            temp.unlink()
        raise


def remove_dead_temps(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` (``.<name>.<pid>-<hex>.tmp``) whose writer is
    gone: a process killed while writing (SIGKILL skips its cleanup). A file of a process
    still alive on this host is another writer's, and is left alone. Returns what went."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)-[0-9a-f]+\.tmp")
    removed = []
    with suppress(OSError):
        for candidate in path.parent.iterdir():
            match = pattern.fullmatch(candidate.name)
            if match is None or _alive(int(match.group(1))):
                continue
            with suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal counts)."""
    if pid <= 0:
        return True  # not a pid a writer has: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True
