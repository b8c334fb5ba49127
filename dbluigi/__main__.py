"""``dbluigi`` and ``python -m dbluigi``: the command line, started cheaply.

``dbluigi --version`` answers before typer, rich, sqlglot and luigi are imported, so a
script checking the version pays for Python's start alone; every other command loads
``dbluigi.cli``.
"""

from __future__ import annotations

import gc
import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from dbluigi import __version__

        print(f"dbluigi {__version__}")
        return
    # A project of 10,000 models is a few hundred thousand small objects that live for the
    # whole command: collecting the youngest generation every 700 allocations (Python's
    # default) rescans them for nothing, 10% of a `plan` of 10,000 models. Cyclic garbage
    # is still collected, every 100,000 allocations; peak memory does not change.
    gc.set_threshold(100_000, 50, 100)
    from dbluigi.cli import main as run

    run()


if __name__ == "__main__":
    main()
