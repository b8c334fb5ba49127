"""``dbluigi`` and ``python -m dbluigi``: the command line, started cheaply.

``dbluigi --version`` answers before typer, rich, sqlglot and luigi are imported, so a
script checking the version pays for Python's start alone. When ``dbluigi server`` serves
this installation, a command runs there, in a process that has all of them imported
already (``dbluigi.client``); otherwise ``dbluigi.cli`` is loaded here.
"""

from __future__ import annotations

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

    run_here()


if __name__ == "__main__":
    main()
