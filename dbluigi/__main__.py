"""``dbluigi`` and ``python -m dbluigi``: the command line, started cheaply.

``dbluigi --version`` answers before typer, rich, sqlglot and luigi are imported, so a
script checking the version pays for Python's start alone; every other command loads
``dbluigi.cli``.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from dbluigi import __version__

        print(f"dbluigi {__version__}")
        return
    from dbluigi.cli import main as run

    run()


if __name__ == "__main__":
    main()
