"""Run ``examples/orders`` with its raw tables read from MariaDB instead of CSV seeds.

::

    python scripts/orders_from_mariadb.py mysql+pymysql://root@127.0.0.1:3306/orders /tmp/orders
    SOURCE_URL=mysql+pymysql://root@127.0.0.1:3306/orders dbluigi build --project /tmp/orders

The first command loads each ``raw/*.csv`` of the example into a table of the MariaDB
database at the URL (typed the way dbluigi types the seeds: the CSV is loaded into a
scratch DuckDB file first), then writes a copy of the example to the destination folder
in which the seeds are gone and ``dbluigi.toml`` declares the same tables as a source::

    [sources.raw]
    url = "${SOURCE_URL}"
    tables = ["companies", "customers", ...]

Everything downstream (the store and presentation layers) is the example's own files,
unchanged: they read ``raw.*`` either way.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import pymysql
from sqlglot import exp

from dbluigi.seeds import sniff_csv
from dbluigi.targets import open_target
from dbluigi.targets.base import table_expr
from dbluigi.urls import parse_url

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "orders"
MARIADB_TYPES = {
    "bigint": "BIGINT",
    "numeric": "DECIMAL(38, 10)",
    "double": "DOUBLE",
    "date": "DATE",
    "timestamp": "DATETIME(6)",
    "timestamptz": "TIMESTAMP(6) NULL",
    "boolean": "BOOLEAN",
    "text": "LONGTEXT",
    "json": "JSON",
}


def load_raw_tables(url: str, example: Path = EXAMPLE) -> list[str]:
    """Create and fill one MariaDB table per ``raw/*.csv``; returns the table names."""
    parsed = parse_url(url)
    connection = pymysql.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database,
        charset="utf8mb4",
        autocommit=True,
    )
    names = []
    with tempfile.TemporaryDirectory() as scratch:
        session = open_target(
            f"duckdb:///{scratch}/scratch.duckdb", project_dir=Path(scratch)
        ).connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET time_zone = '+00:00'")
                for csv_path in sorted((example / "raw").glob("*.csv")):
                    name = csv_path.stem
                    columns = sniff_csv(csv_path).columns
                    session.ensure_schema("raw")
                    session.load_csv("raw", name, csv_path, columns)
                    table = exp.to_identifier(name, quoted=True).sql(dialect="mysql")
                    definitions = ", ".join(
                        f"{exp.to_identifier(c.name, quoted=True).sql(dialect='mysql')} "
                        f"{MARIADB_TYPES[c.type]}"
                        for c in columns
                    )
                    cursor.execute(f"DROP TABLE IF EXISTS {table}")
                    cursor.execute(f"CREATE TABLE {table} ({definitions})")
                    select = exp.select("*").from_(table_expr("raw", name))
                    rows = session.query(select.sql(dialect="duckdb")).rows
                    placeholders = ", ".join(["%s"] * len(columns))
                    cursor.executemany(
                        f"INSERT INTO {table} VALUES ({placeholders})",
                        [tuple(_utc(v) for v in row) for row in rows],
                    )
                    names.append(name)
        finally:
            session.close()
            connection.close()
    return names


def write_project(dest: Path, tables: list[str], example: Path = EXAMPLE) -> Path:
    """A copy of the example whose raw tables come from ``[sources.raw]``: the seeds are
    left out (a check file of a raw table, if any, then gates its copy)."""
    shutil.copytree(example, dest, ignore=shutil.ignore_patterns(".dbluigi", "exports"))
    for seed in (dest / "raw").iterdir():
        if seed.stem in tables and seed.suffix in (".csv", ".yml", ".yaml"):
            seed.unlink()
    listed = ", ".join(f'"{t}"' for t in tables)
    with (dest / "dbluigi.toml").open("a") as toml:
        toml.write(
            "\n# raw/ is read from MariaDB (scripts/orders_from_mariadb.py), not from CSV seeds\n"
            f'[sources.raw]\nurl = "${{SOURCE_URL}}"\ntables = [{listed}]\n'
        )
    return dest


def _utc(value: object) -> object:
    """An aware timestamp as the naive UTC value the UTC session stores."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    url, dest = argv
    tables = load_raw_tables(url)
    write_project(Path(dest), tables)
    print(f"loaded {len(tables)} raw tables; now run:")
    print(f"  SOURCE_URL='{url}' dbluigi build --project {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
