"""Small helpers for writing throwaway projects in tests."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path


def write_project(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (relative path -> content) under ``root``; returns ``root``."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


BIG_COLUMNS = ("id", "amount", "day", "flag", "code", "sparse", "label")


def write_big_csv(
    path: Path,
    rows: int,
    surprises: Mapping[int, Mapping[str, str]] | None = None,
    *,
    newline: str = "\n",
    bom: bool = False,
    quoted: str | None = None,
) -> Path:
    """A CSV seed of ``rows`` regular rows of ``BIG_COLUMNS`` (ids, decimals, dates,
    booleans, codes, an empty column, labels); ``surprises`` replace values of some rows,
    by row number; ``quoted`` (a text with a line break) is the label of every 7th row."""
    lines = [",".join(BIG_COLUMNS)]
    for i in range(rows):
        row = {
            "id": str(i),
            "amount": f"{i % 1000}.{i % 100:02d}",
            "day": f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
            "flag": "true" if i % 2 else "false",
            "code": str(i % 500 + 1),
            "sparse": "",
            "label": f'"{quoted}"' if quoted is not None and i % 7 == 0 else f"l{i % 50}",
        }
        row.update((surprises or {}).get(i, {}))
        lines.append(",".join(row[c] for c in BIG_COLUMNS))
    data = (newline.join(lines) + newline).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + data if bom else data)
    return path
