"""What identifies the code this process runs: the files of the ``dbluigi`` package and
the ``site-packages`` folders of its module path. ``dbluigi server`` starts again when it
changes (``dbluigi.server``); a project kept between commands is read back only by the
code that kept it (``dbluigi.snapshot``)."""

from __future__ import annotations

import contextlib
import os
import sys


def stamp() -> dict[str, tuple[int, int]]:
    """The modification time and size of every file of the ``dbluigi`` package, and of
    each ``site-packages`` folder of the module path (installing, upgrading or removing a
    distribution changes its folder). Other folders of the path are left out: a project
    folder on ``$PYTHONPATH`` changes with every build (its DuckDB file's WAL comes and
    goes), and would start the server again each time."""
    found: dict[str, tuple[int, int]] = {}
    package = os.path.dirname(os.path.abspath(__file__))
    for folder, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                st = os.stat(path)
                found[path] = (st.st_mtime_ns, st.st_size)
    for folder in sys.path[1:]:
        if os.path.basename(os.path.normpath(folder)) not in ("site-packages", "dist-packages"):
            continue
        with contextlib.suppress(OSError):
            st = os.stat(folder)
            found[folder] = (st.st_mtime_ns, 0)
    return found
