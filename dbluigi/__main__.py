"""``dbluigi`` and ``python -m dbluigi``: the command line, started cheaply.

``dbluigi --version`` answers before typer, rich, sqlglot and luigi are imported, so a
script checking the version pays for Python's start alone. When ``dbluigi server`` serves
this installation, a command runs there, in a process that has all of them imported
already (``dbluigi.client``); otherwise ``dbluigi.cli`` is loaded here.

A command run here ends cheaply too: as Python finalizes, it collects garbage several
times over every object still alive (modules, the project, luigi): 30 ms of a seed's
build. They are frozen first (``gc.freeze``), so those collections skip them; the rest
of the end is Python's own (atexit functions, objects freed as their last reference
goes, files flushed and closed).
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from dbluigi import __version__

        print(f"dbluigi {__version__}")
        return
    from dbluigi.client import exit_like, run_on_server

    ended = run_on_server(sys.argv[1:])
    if ended is not None:
        exit_like(ended)
    from dbluigi.cli import run_here

    try:
        run_here()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
