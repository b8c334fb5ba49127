"""Parse results cached by content hash, so a warm scan skips sqlglot entirely.

One JSON file under ``.dbluigi/cache/``, read once and written once per load,
keyed by a hash of (dbluigi version, entry format, dialect, rendered text). Entries
no scan asked for are dropped when it is written, so the file does not grow forever;
an entry of another shape is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dbluigi import __version__
from dbluigi.sqltypes import SqlInfo

CACHE_FILE = "sqlinfo.json"
# Bumped whenever SqlInfo.to_json changes shape, so a cache written before is never read.
FORMAT = 4


class SqlInfoCache:
    def __init__(self, folder: Path, *, enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled
        self._old: dict[str, Any] = self._read() if enabled else {}
        self._used: dict[str, Any] = {}
        self.hits = 0
        self.misses = 0

    def analyze(
        self,
        text: str,
        *,
        dialect: str,
        path: str,
        as_written: bool = False,
        hint: str | None = None,
    ) -> SqlInfo:
        """``analyze_sql`` with the result remembered by the text's hash (errors are not
        remembered, so ``hint`` is no part of the key)."""
        mode = "\0as written" if as_written else ""
        key = hashlib.sha1(f"{__version__}\0{FORMAT}\0{dialect}{mode}\0{text}".encode()).hexdigest()
        data = self._used.get(key) or self._old.get(key)
        if data is not None:
            try:
                info = SqlInfo.from_json(data)
            except (KeyError, TypeError, ValueError):
                pass  # written by another version of dbluigi: analyze again
            else:
                self.hits += 1
                self._used[key] = data
                return info
        self.misses += 1
        from dbluigi.sqlinfo import analyze_sql  # sqlglot loads only when a file is parsed

        info = analyze_sql(text, dialect=dialect, path=path, as_written=as_written, hint=hint)
        self._used[key] = info.to_json()
        return info

    def take_used(self) -> tuple[dict[str, Any], int]:
        """The entries used and the misses counted since the last call, forgotten here:
        what a forked worker hands back to its parent's cache (``add_used``)."""
        taken = (self._used, self.misses)
        self._used, self.hits, self.misses = {}, 0, 0
        return taken

    def add_used(self, used: dict[str, Any], misses: int) -> None:
        """What a worker used (``take_used``): its entries are hits here, and saved."""
        self._used.update(used)
        self.misses += misses

    def save(self) -> None:
        """Write the entries this load used, atomically; a read-only project just skips it."""
        if not self.enabled or (self.misses == 0 and len(self._used) == len(self._old)):
            return
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{CACHE_FILE}.{os.getpid()}"
            tmp.write_text(json.dumps(self._used, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.folder / CACHE_FILE)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / CACHE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


HASHES_FILE = "files.json"
# A file changed less than this long before its hash is stored could change again within
# the same timestamp tick, unseen: its hash is kept in memory only (git's "racy" rule).
RACY_NS = 2_000_000_000


def identity(path: str | Path) -> tuple[int, int, int, int]:
    """What tells a file's content apart without reading it: size, modification and
    change times (ns; no tool sets a change time back) and inode (a file renamed over)."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def settled(seen: tuple[int, ...] | list[int], looked: int) -> bool:
    """Whether the file of ``identity`` ``seen`` had stood still long enough when it was
    looked at (``looked``, ns) for a later change to change its times."""
    return max(seen[1], seen[2]) < looked - RACY_NS


class FileHashes:
    """The sha256 of files the fingerprints read (CSV seeds, ``-- inputs:`` files), kept
    under ``.dbluigi/cache/`` while a file's size, modification and change times and inode
    stay the same, so a no-op build does not read a large seed again. Any write changes
    the change time (which no tool can set back), so a stale hash is never used."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._old: dict[tuple[str, int, int, int, int], str] = {}
        self._used: dict[tuple[str, int, int, int, int], str] = {}  # since the last save
        self._looked: dict[tuple[str, int, int, int, int], int] = {}  # when, before its stat
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads((folder / HASHES_FILE).read_text(encoding="utf-8"))
            self._old = {
                (p, s, m, c, i): h
                for p, s, m, c, i, h in data
                if isinstance(h, str) and isinstance(p, str)
            }

    def hash(self, path: Path) -> str:
        looked = time.time_ns()
        key = (str(path), *identity(path))
        found = self._used.get(key) or self._old.get(key)
        if found is None:
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            found = h.hexdigest()
            self._looked[key] = looked
        self._used[key] = found
        return found

    def save(self) -> None:
        """Store the hashes used since the last save of files that had stood still long
        enough when they were read, and keep the stored ones of files not looked at
        (a build of a few models keeps the others' hashes); entries of files gone or
        changed are dropped. Atomic; a read-only project just skips it."""
        if not self._looked and self._used.keys() <= self._old.keys():
            self._used = {}
            return
        used_paths = {key[0] for key in self._used}
        kept = {
            key: h
            for key, h in self._old.items()
            if key[0] not in used_paths and os.path.exists(key[0])
        }
        for key, h in self._used.items():
            looked = self._looked.get(key)
            if looked is None or settled(key[1:], looked):
                kept[key] = h
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{HASHES_FILE}.{os.getpid()}"
            entries = [[*key, h] for key, h in kept.items()]
            tmp.write_text(json.dumps(entries, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.folder / HASHES_FILE)
        self._old, self._used, self._looked = kept, {}, {}


TYPES_FILE = "seed-types.json"
TYPES_KEPT = 512  # the newest entries kept: a file's types are a few dozen bytes


class SeedTypes:
    """The column types of CSV seeds, by the file's content (its sha256), the types the
    project overrides and dbluigi's version: a file typed once loads again (into another
    target, a ``--full-refresh``, a ``rebuild``) without the typing pass, whose answer
    depends on nothing else; with it, whether the file is literal (``Session.load_csv``),
    where the typing pass found out. One JSON file under ``.dbluigi/cache/``; a damaged
    or foreign one is empty, a read-only project keeps its entries in memory only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        # {"columns": [[name, type], ...], "literal": bool | None}; a bare list of
        # columns is an entry written before ``literal`` was kept
        self._entries: dict[str, list[list[str]] | dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            data = json.loads((folder / TYPES_FILE).read_text(encoding="utf-8"))
            self._entries = {key: value for key, value in data.items() if _known(value)}

    @staticmethod
    def key(content: str, overrides: Mapping[str, str]) -> str:
        parts = [__version__, content, json.dumps(sorted(overrides.items()))]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def get(self, key: str) -> tuple[list[tuple[str, str]], bool | None] | None:
        """The columns (name, type) stored for ``key`` and whether the file is literal
        (None: not known); None when nothing is stored."""
        with self._lock:
            found = self._entries.get(key)
        if found is None:
            return None
        literal = None
        if isinstance(found, dict):
            found, literal = found["columns"], found.get("literal")
        return [(name, kind) for name, kind in found], literal

    def put(
        self, key: str, columns: Sequence[tuple[str, str]], literal: bool | None = None
    ) -> None:
        """Remember ``columns`` (name, type) and ``literal`` for ``key``, and store the
        file at once."""
        with self._lock:
            self._entries.pop(key, None)
            pairs = [[name, kind] for name, kind in columns]
            self._entries[key] = {"columns": pairs, "literal": literal}
            while len(self._entries) > TYPES_KEPT:
                del self._entries[next(iter(self._entries))]
            text = json.dumps(self._entries, separators=(",", ":"))
            with contextlib.suppress(OSError):
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = self.folder / f".{TYPES_FILE}.{os.getpid()}.{threading.get_ident()}"
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, self.folder / TYPES_FILE)


def _known(value: Any) -> bool:
    """Whether ``value`` is an entry of ``SeedTypes`` as this version reads them."""
    if isinstance(value, dict):
        literal = value.get("literal")
        if not (literal is None or isinstance(literal, bool)) or "columns" not in value:
            return False
        value = value["columns"]
    return isinstance(value, list) and all(
        isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in value
    )


_SEED_TYPES: dict[Path, SeedTypes] = {}  # by cache folder, for the process's life
_SEED_TYPES_LOCK = threading.Lock()


def seed_types(folder: Path) -> SeedTypes:
    """The cache of CSV seeds' column types under ``folder``, read once per process."""
    with _SEED_TYPES_LOCK:
        found = _SEED_TYPES.get(folder)
        if found is None:
            found = _SEED_TYPES[folder] = SeedTypes(folder)
        return found
