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


def _tricky_values() -> tuple[str, ...]:
    ints = [
        "0",
        "-0",
        "+0",
        "00",
        "007",
        "-007",
        "+5",
        "5",
        "-5",
        "--5",
        "+-5",
        "5-",
        " 5",
        "5 ",
        "1_000",
        "1,000",
        "999999999999999999",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "+9223372036854775807",
        "+9223372036854775808",
        "1" * 28,
        "1" * 29,
        "-" + "9" * 28,
        "1" * 40,
    ]
    decimals = [
        ".5",
        "5.",
        ".",
        "+.",
        "-.",
        "-.5",
        "+.5",
        "0.5",
        "00.5",
        "-00.5",
        "0.",
        "-0.0",
        "1.1234567890",
        "1.12345678901",
        "1.123456789",
        "1" * 28 + ".5",
        "1" * 29 + ".5",
        "1.2.3",
        "1..2",
        "12345678901234567890.5",
        "0.0000000001",
        "3.14 ",
    ]
    exponents = [
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "1.e5",
        ".5e5",
        "-.5E-5",
        "e5",
        "1e",
        "1.5e5.5",
        "007e1",
        "00.5e1",
        "Inf",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e5 ",
        "1e500",
    ]
    booleans = [
        "true",
        "TRUE",
        "True",
        "tRuE",
        "false",
        "FALSE",
        "t",
        "f",
        "yes",
        "no",
        "Y",
        "on",
        "off",
        "truee",
        "true ",
        " false",
    ]
    dates = [
        "2024-02-29",
        "2023-02-29",
        "1900-02-29",
        "2000-02-29",
        "2100-02-29",
        "0000-01-01",
        "0001-01-01",
        "9999-12-31",
        "2024-13-01",
        "2024-00-10",
        "2024-01-00",
        "2024-01-32",
        "2024-04-31",
        "2024-04-30",
        "2024-12-31",
        "2024-11-31",
        "2024-1-01",
        "24-01-01",
        "2024/01/01",
        "20240101",
        "2024-01-01 ",
        "12:30",
        "1000-01-01",
        "3000-01-01",
    ]
    stamps = [
        "2024-01-01 00:00",
        "2024-01-01T23:59:59",
        "2024-01-01 24:00",
        "2024-01-01 23:60",
        "2024-01-01 23:59:60",
        "2024-01-01 10:00:00.1",
        "2024-01-01 10:00:00.123456",
        "2024-01-01 10:00:00.1234567",
        "2024-01-01 10:00:00.",
        "2024-01-01t10:00",
        "2024-01-01  10:00",
        "2024-02-30 10:00",
        "0000-01-01 10:00",
        "2024-01-01 10",
        "2024-01-01T10:00:00,5",
        "2024-02-29T12:00",
        "2023-02-29T12:00",
        "2024-01-01 9:00",
        "2024-01-01 10:00:5",
    ]
    zones = [
        "+00",
        "+05:30",
        "+0530",
        "-08",
        "Z",
        "z",
        "+24:00",
        "+23:59",
        "+05:60",
        "+23:60",
        "-23:59",
        "-24",
        "+5",
        "+05:3",
        " UTC",
        " +05:00",
        "+05:30:00",
        "-00",
    ]
    stamped = [f"{when}{zone}" for when in ("2024-01-01 10:00", "2024-03-31T23:59:59.5",
                                            "2024-02-30 10:00", "0001-01-01T00:00:00")
               for zone in zones]  # fmt: skip
    other = [
        "NULL",
        "null",
        "NA",
        "N/A",
        "None",
        "nan",
        "-",
        "\\N",
        "abc",
        "x y",
        "é",
        "日本",
        "\u0663",
        "\u0661\u0662\u0663",
        "\u0661.\u0665",
        "\u0660\u0660\u0667",
        "2024-01-\u0660\u0661",
        "tru\u0435",
        "\u0661\u0662:\u0663\u0660",
        "\uff11\uff12",
        '"',
        'a"b',
        "a,b",
        "two\nlines",
        "x" * 5000,
        "7" * 1000,
    ]
    return tuple(ints + decimals + exponents + booleans + dates + stamps + stamped + other)


TRICKY_VALUES = _tricky_values()
"""Values that test the edges of every type the CSV seed reader infers (and some that
look like one and are not): typed the same by the reference pass and by DuckDB."""


TYPED_POOLS = {  # values of one type each, as a generated column holds them
    "bigint": ["0", "-5", "+5", "42", "9223372036854775807", "-9223372036854775808"],
    "numeric": ["1.5", "-0.25", ".5", "5.", "12", "1234567890.1234567891"],
    "double": ["1e5", "-2.5E-3", ".5e1", "1.5", "7", "1.12345678901"],
    "boolean": ["true", "FALSE", "True", "fAlSe"],
    "date": ["2024-02-29", "2023-12-31", "0001-01-01", "9999-12-31", "2024-04-30"],
    "timestamp": ["2024-01-01 10:00", "2024-01-01T10:00:05", "2024-01-01 10:00:05.123456",
                  "2024-02-29T23:59:59.5", "2024-01-01"],
    "timestamptz": ["2024-01-01 10:00Z", "2024-01-01T10:00:05+05:30", "2024-01-01 10:00-08",
                    "2024-01-01 10:00:00.5+0530", "2024-01-01 10:00+14:00"],
    "text": ["007", "abc", "x y", "NULL", "é", "a,b", 'say "hi"', "two\nlines", "x" * 3000],
}  # fmt: skip
