"""Find the files of a project and say what each one is.

Folder = schema, file stem = relation name: ``staging/agencies.sql`` is the
model ``staging.agencies``; files at the top level go to the default schema;
deeper folders only organize (``staging/crm/accounts.sql`` is still in schema
``staging``). ``.check.sql``, ``.check.py`` and ``.patch.sql`` files attach to
the model of the same stem. Hidden folders, ``.dbluigi/`` and the dump output
folder are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dbluigi.errors import DuplicateRelationError, ProjectError
from dbluigi.relation import Relation

MODEL_SUFFIXES = {".sql": "sql", ".csv": "csv", ".yml": "yaml", ".yaml": "yaml", ".py": "python"}
COMPANION_SUFFIXES = {".check.sql": "check_sql", ".check.py": "check_py", ".patch.sql": "patch"}
IGNORED_DIRS = {"__pycache__", "node_modules", "target", "venv"}


def utf8_text(data: bytes, path: str | Path) -> str:
    """A project file's bytes as text, without the BOM some editors write; a ProjectError
    at the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + len(data) - len(exc.object)  # exc.object: after a BOM
        raise ProjectError(
            f"not UTF-8 text (byte 0x{data[start]:02x} at offset {start})",
            path=path,
            line=data.count(b"\n", 0, start) + 1,
            hint="save the file as UTF-8 (for example: iconv -f latin1 -t utf-8)",
        ) from None


@dataclass(frozen=True)
class ProjectFile:
    """One file of the project: a model or seed, or a companion of one."""

    path: str  # relative to the project root, with forward slashes
    role: str  # "model" or one of COMPANION_SUFFIXES' values
    format: str  # "sql" | "csv" | "yaml" | "python"
    relation: Relation  # the model it is, or belongs to

    @property
    def schema(self) -> str:
        return self.relation.schema

    @property
    def name(self) -> str:
        return self.relation.name


def scan_files(
    root: Path,
    *,
    default_schema: str,
    ignore: tuple[str, ...] = (),
    folders: dict[str, list[str]] | None = None,
) -> list[ProjectFile]:
    """Every model, seed and companion file under ``root``, sorted by path; ``folders``
    gets what of each folder walked a scan could take (``seen``), by its path, or
    ``[UNLISTED]`` for one it could not list."""
    if not root.is_dir():
        raise ProjectError(
            f"project folder {root} is a file"
            if root.exists()
            else f"project folder {root} does not exist",
            hint="pass --project DIR or run dbluigi init DIR",
        )
    ignored = {part.strip("/") for part in ignore}
    found: list[ProjectFile] = []

    def unlisted(error: OSError) -> None:  # a folder os.walk passes over, unreadable
        if folders is not None and error.filename is not None:
            folders[_relative(os.fsdecode(error.filename), root)] = [UNLISTED]

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted):
        rel_dir = _relative(dirpath, root)
        if folders is not None:
            links = {d for d in dirnames if os.path.islink(os.path.join(dirpath, d))}
            folders[rel_dir] = seen(dirnames, filenames, links)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in IGNORED_DIRS
            and (f"{rel_dir}/{d}" if rel_dir else d) not in ignored
        )
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            file = classify(f"{rel_dir}/{filename}" if rel_dir else filename, default_schema)
            if file is not None:
                found.append(file)
    found.sort(key=lambda f: f.path)
    _reject_duplicates(found)
    return found


_SUFFIXES = tuple((*MODEL_SUFFIXES, *COMPANION_SUFFIXES))
# what ``folders`` gets for a folder the scan could not list (no name holds a "/"): it
# is never the same as a listing, so a project loaded without its files is not read back
UNLISTED = "/"


def _relative(path: str, root: Path) -> str:
    rel_dir = os.path.relpath(path, root).replace(os.sep, "/")
    return "" if rel_dir == "." else rel_dir


def seen(
    folders: list[str], files: list[str], links: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """What of a folder's entries a scan could take: its folders and the files of a
    project's suffixes (not the hidden ones), sorted, a folder's name ending in ``/``
    (``/@`` for a symbolic link to one, ``links``: the scan does not walk into it).
    Other files (the data ``-- inputs:`` read, an editor's scratch) change nothing."""
    return sorted(
        [
            f"{name}/@" if name in links else f"{name}/"
            for name in folders
            if not name.startswith(".")
        ]
        + [name for name in files if not name.startswith(".") and name.lower().endswith(_SUFFIXES)]
    )


def classify(path: str, default_schema: str) -> ProjectFile | None:
    """What a file at ``path`` is, or None when dbluigi does not read it."""
    folder, _, filename = path.rpartition("/")
    lower = filename.lower()
    for suffix, role in COMPANION_SUFFIXES.items():
        if lower.endswith(suffix):
            stem = filename[: -len(suffix)]
            fmt = "python" if suffix.endswith(".py") else "sql"
            return ProjectFile(path, role, fmt, _relation(folder, stem, default_schema))
    for suffix, fmt in MODEL_SUFFIXES.items():
        if lower.endswith(suffix):
            stem = filename[: -len(suffix)]
            if not stem or "." in stem:
                return None
            return ProjectFile(path, "model", fmt, _relation(folder, stem, default_schema))
    return None


def _relation(folder: str, stem: str, default_schema: str) -> Relation:
    schema = folder.split("/", 1)[0] if folder else default_schema
    return Relation.of(schema.lower(), stem.lower())


def _reject_duplicates(files: list[ProjectFile]) -> None:
    seen: dict[tuple[str, str], ProjectFile] = {}
    for file in files:
        key = (file.role, file.relation)
        if key in seen:
            first = seen[key]
            what = (
                "relation"
                if file.role == "model"
                else f"model's {file.role.replace('_', ' ')} file"
            )
            raise DuplicateRelationError(
                f"{first.path} and {file.path} both map to {what} {file.relation}",
                path=file.path,
                hint="rename or move one of them; folder = schema, file name = table",
            )
        seen[key] = file
