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
from pathlib import Path
from typing import Any

from dbluigi import __version__
from dbluigi.sqlinfo import SqlInfo, analyze_sql

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
