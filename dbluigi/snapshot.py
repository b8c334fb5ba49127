"""A loaded project kept for the next command: ``.dbluigi/cache/project-*.pickle``.

Loading a project reads every file, parses its header, looks its SQL up in the parse
cache and assembles the graph (0.1 s for 1,000 models, 0.6 s for 10,000). A command on a
project in which nothing changed since it was last loaded reads the project back instead,
once it has checked that nothing did change, as git checks its index:

- the same code (``dbluigi.codestamp``), Python and configuration: ``dbluigi.toml``,
  the target, ``--var`` and the environment variables it reads (the ``Config`` itself);
- every folder the scan walked still holds the same folders and files of a project's
  suffixes (a file added, removed or renamed; a folder made; other files, such as the
  data ``-- inputs:`` globs read, change nothing);
- every file has the same size, modification and change times (in nanoseconds) and
  inode: an edit, an editor's rewrite, a checkout, a ``touch``. Each file is looked at
  before it is read: one changed while the project loads is seen by the next command.

Keeping costs about a third of a load (0.2 s for 10,000 models), so a project is kept
the second time it loads unchanged: the first load notes only what it looked at (the
file without the project), and a project edited before every command never pays for it.
A load is not kept, nor noted, when one of its files changed less than two seconds before
it was looked at (``cache.RACY_NS``, git's "racy" rule): a file system's clock ticks
coarsely, and an edit within the same tick would leave the same times. The file starts
with what is checked (JSON), and nothing of it is unpickled before that passes: a file
put into ``.dbluigi/`` by someone else (a checkout with it committed) would have to name
this checkout's inodes and change times.
"""

from __future__ import annotations

import contextlib
import copyreg
import gc
import hashlib
import io
import json
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO

from dbluigi import __version__
from dbluigi.cache import identity, settled
from dbluigi.codestamp import stamp
from dbluigi.config import Config
from dbluigi.scan import seen
from dbluigi.urls import mask_url

if TYPE_CHECKING:
    from dbluigi.scan import ProjectFile

FORMAT = 1  # bumped when the file's layout changes
MAGIC = b"dbluigi project snapshot\n"
KEPT = 4  # snapshots of as many configurations (targets, variables) kept side by side


class ProjectSnapshot:
    """The snapshot of the project at ``folder`` (its cache folder) for ``config``."""

    def __init__(self, folder: Path, root: Path, config: Config) -> None:
        self.root = root
        self.config = config
        code = sorted(stamp().items())
        self.key = hashlib.sha256(
            _dumps((FORMAT, __version__, sys.version, code, _without_secrets(config)))
        ).hexdigest()
        # one file a configuration: a project built into two targets in turn keeps both
        self.path = folder / f"project-{self.key[:16]}.pickle"
        self.files: dict[str, list[int]] | None = None  # what look_at saw
        self.looked_at = 0  # ns
        self.unchanged = False  # since a load that noted what it saw, and kept nothing

    def read(self) -> object | None:
        """The project as it was kept, or None when there is none or anything changed."""
        try:
            with self.path.open("rb") as handle:
                if handle.readline() != MAGIC:
                    return None
                header = json.loads(handle.readline())
                if header.get("key") != self.key or not self._unchanged(header):
                    return None
                if not header.get("kept"):
                    self.unchanged = True  # this load keeps it
                    return None
                with _collector_paused():  # it would scan the objects made, for nothing
                    project: object = _Unpickler(handle, self.config).load()
        except Exception:  # unreadable, damaged, of another shape: loaded from the files
            return None
        return project

    def look_at(self, files: list[ProjectFile]) -> None:
        """Note each file's identity (size, times, inode), before the load reads it."""
        self.looked_at = time.time_ns()
        try:
            self.files = {f.path: list(identity(os.path.join(self.root, f.path))) for f in files}
        except OSError:  # gone since the scan: the load says so, and nothing is kept
            self.files = None

    def write(self, project: object, folders: Mapping[str, list[str]]) -> None:
        """Keep ``project``, loaded from the files ``look_at`` saw in ``folders`` (what
        of each folder the scan took), when the last load saw the same; else note what
        this one saw. Nothing when a file changed just before. The oldest snapshots
        beyond ``KEPT`` go."""
        if self.files is None:
            return
        if not all(settled(noted, self.looked_at) for noted in self.files.values()):
            return
        header = {
            "key": self.key,
            "folders": dict(folders),
            "files": self.files,
            "kept": self.unchanged,
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as handle:
                handle.write(MAGIC)
                handle.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
                if self.unchanged:
                    handle.write(_dumps(project, configuration=False))
            os.replace(temporary, self.path)
            kept = sorted(
                self.path.parent.glob("project-*.pickle"),
                key=lambda path: path.stat().st_mtime_ns,
                reverse=True,
            )
            for old in kept[KEPT:]:
                old.unlink()
        except Exception:  # a read-only folder, a full disk: the next command loads again
            with contextlib.suppress(OSError):
                temporary.unlink()

    def _unchanged(self, header: dict[str, Any]) -> bool:
        for folder, names in header["folders"].items():
            with os.scandir(os.path.join(self.root, folder)) as entries:
                folders: list[str] = []
                files: list[str] = []
                links: set[str] = set()
                for entry in entries:
                    (folders if entry.is_dir() else files).append(entry.name)
                    if entry.is_symlink():
                        links.add(entry.name)
            if seen(folders, files, links) != names:
                return False
        for path, noted in header["files"].items():
            if list(identity(os.path.join(self.root, path))) != noted:
                return False
        return True


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off: unpickling makes no garbage, and the
    collections the new objects would start take half as long as the unpickling."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _without_secrets(config: Config) -> Config:
    """``config`` with the passwords of its URLs masked: a password changes nothing a
    load reads, and a hash of it kept on disk could be guessed at."""
    return replace(
        config,
        target_url=mask_url(config.target_url) if config.target_url else None,
        scheduler_url=mask_url(config.scheduler_url) if config.scheduler_url else None,
        source_tables={
            name: replace(table, url=table.display_url)
            for name, table in config.source_tables.items()
        },
    )


def _proxy(mapping: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(mapping)


def _configuration() -> Config:
    """What a kept project holds instead of its configuration (``_Unpickler``)."""
    raise pickle.UnpicklingError("a kept project is read by ProjectSnapshot.read")


def _dumps(value: object, *, configuration: bool = True) -> bytes:
    """``pickle.dumps``, with the read-only mappings of the project (``MappingProxyType``,
    which pickle cannot take) kept as such; without ``configuration``, the ``Config``
    left out: it holds the target's and sources' URLs, passwords from the environment
    included, which a file under the project must not, and the key says it is the same."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {
        **copyreg.dispatch_table,
        MappingProxyType: lambda m: (_proxy, (dict(m),)),
    }
    if not configuration:
        pickler.dispatch_table[Config] = lambda c: (_configuration, ())
    pickler.dump(value)
    return buffer.getvalue()


class _Unpickler(pickle.Unpickler):
    """Unpickles a kept project with ``config`` for its configuration."""

    def __init__(self, file: BinaryIO, config: Config) -> None:
        super().__init__(file)
        self.config = config

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, _configuration.__name__):
            return lambda: self.config
        return super().find_class(module, name)
