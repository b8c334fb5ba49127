"""Source extraction benchmark: dbluigi next to pgloader and plain pipes, same data, same run.

    python bench/bench_sources.py [--rows 1000000,5000000] [--repeat 3]
                                  [--pg postgresql://root@127.0.0.1:5432/test]
                                  [--mariadb mysql+pymysql://root@127.0.0.1:3306/test]

One table, ``orders_<rows>``, generated in MariaDB and in PostgreSQL with the same
rows: id bigint, customer_id int, amount decimal(12,2), status varchar(20), note text
(NULL every 7th row), is_paid boolean, created_at timestamp, updated_at timestamp with
time zone, payload json; about 116 bytes a row as CSV. For every row count:

- MariaDB -> PostgreSQL: ``dbluigi build`` of a project declaring the table as a source;
  pgloader (Debian package) of the same table; the same CSV the server renders for
  dbluigi through ``mariadb --quick --batch | psql \\copy`` (the plain pipe doing the same
  work, streaming); and the naive pipe (``select *`` as mariadb's TSV, where NULL and the
  string 'NULL' are alike).
- PostgreSQL -> PostgreSQL: ``dbluigi build``; ``psql \\copy (select ...) to stdout |
  psql \\copy ... from stdin``.
- PostgreSQL -> DuckDB: ``dbluigi build``; ``psql \\copy ... to stdout`` piped into
  DuckDB's ``read_csv('/dev/stdin')`` in a Python process.

Time is wall-clock with process start; dbluigi's own task time (from ``--json``) is
shown too. Peak memory is the largest resident set of any process of the command
(GNU time's %M). Medians of ``--repeat`` runs; each run loads into a fresh database.
Needs psql, mariadb, pgloader and /usr/bin/time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pymysql

from dbluigi.urls import parse_url

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DB = "dbluigi_bench_src"
TARGET_DB = "dbluigi_bench_tgt"
# the table dbluigi creates for orders_<rows> (a JSON column becomes jsonb)
COLUMNS = (
    "id bigint, customer_id bigint, amount numeric(12,2), status text, note text, "
    "is_paid boolean, created_at timestamp, updated_at timestamptz, payload jsonb"
)
DUCKDB_COLUMNS = (
    "{'id': 'BIGINT', 'customer_id': 'BIGINT', 'amount': 'DECIMAL(12,2)', 'status': 'VARCHAR', "
    "'note': 'VARCHAR', 'is_paid': 'BOOLEAN', 'created_at': 'TIMESTAMP', "
    "'updated_at': 'TIMESTAMPTZ', 'payload': 'JSON'}"
)


@dataclass
class Measure:
    seconds: float
    peak_mb: float
    task_seconds: float | None = None


class Databases:
    def __init__(self, pg: str, mariadb: str) -> None:
        self.pg = parse_url(pg)
        self.mariadb = parse_url(mariadb)

    def pg_url(self, database: str) -> str:
        return replace(self.pg, database=database).render()

    def mariadb_url(self, database: str) -> str:
        return replace(self.mariadb, database=database).render()

    def psql(self, database: str, sql: str) -> None:
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.pg_url(database), "-c", sql],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def fresh_pg(self, name: str) -> str:
        self.psql(str(self.pg.database), f'drop database if exists "{name}" with (force)')
        self.psql(str(self.pg.database), f'create database "{name}"')
        return self.pg_url(name)

    def maria(self, *statements: str, database: str | None = None) -> None:
        connection = pymysql.connect(
            host=self.mariadb.host,
            port=self.mariadb.port or 3306,
            user=self.mariadb.username,
            password=self.mariadb.password or "",
            database=database,
            autocommit=True,
        )
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()

    def mariadb_cli(self) -> list[str]:
        url = self.mariadb
        cmd = ["mariadb", "-h", str(url.host), "-P", str(url.port or 3306), "-u", str(url.username)]
        if url.password:
            cmd.append(f"-p{url.password}")
        return cmd


def generate(dbs: Databases, rows: int) -> str:
    """orders_<rows> in both sources (kept between runs: generating 5M rows takes a while)."""
    table = generate_mariadb(dbs, rows, SOURCE_DB)
    exists = subprocess.run(
        [
            "psql",
            "-X",
            "-qtA",
            dbs.pg_url(str(dbs.pg.database)),
            "-c",
            f"select 1 from pg_database where datname = '{SOURCE_DB}'",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not exists:
        dbs.psql(str(dbs.pg.database), f'create database "{SOURCE_DB}"')
    present = subprocess.run(
        ["psql", "-X", "-qtA", dbs.pg_url(SOURCE_DB), "-c", f"select to_regclass('{table}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not present:
        print(f"generating {rows:,} rows in PostgreSQL", file=sys.stderr)
        dbs.psql(
            SOURCE_DB,
            f"create table {table} (id bigint primary key, customer_id int not null, "
            "amount numeric(12,2), status varchar(20), note text, is_paid boolean, "
            "created_at timestamp, updated_at timestamptz, payload jsonb); "
            f"insert into {table} select n, n % 5000, (n % 100000) / 100.0, "
            "(array['new','paid','shipped','cancelled'])[1 + n % 4], "
            "case when n % 7 = 0 then null else 'note ' || n end, n % 2 = 1, "
            "timestamp '2020-01-01' + n * interval '1 second', "
            "timestamptz '2021-01-01 00:00:00+00' + n * interval '1 second', "
            f"jsonb_build_object('k', n) from generate_series(1, {rows}) n",
        )
    return table


def generate_mariadb(dbs: Databases, rows: int, database: str) -> str:
    """orders_<rows> in MariaDB database ``database``, unless it is there already."""
    table = f"orders_{rows}"
    dbs.maria(f"create database if not exists {database}")
    try:
        dbs.maria(f"select 1 from {table} limit 1", database=database)
    except pymysql.Error:
        print(f"generating {rows:,} rows in MariaDB", file=sys.stderr)
        dbs.maria(
            "set time_zone = '+00:00'",
            f"create table {table} (id bigint primary key, customer_id int not null, "
            "amount decimal(12,2), status varchar(20), note text, is_paid boolean, "
            "created_at datetime(6), updated_at timestamp(6) null, payload json)",
            f"insert into {table} select seq, seq % 5000, (seq % 100000) / 100, "
            "elt(1 + seq % 4, 'new', 'paid', 'shipped', 'cancelled'), "
            "if(seq % 7 = 0, null, concat('note ', seq)), seq % 2, "
            "timestamp'2020-01-01 00:00:00' + interval seq second, "
            "timestamp'2021-01-01 00:00:00' + interval seq second, json_object('k', seq) "
            f"from seq_1_to_{rows}",
            database=database,
        )
    return table


def run(cmd: list[str] | str, *, env: dict[str, str] | None = None) -> tuple[Measure, str]:
    """Run under GNU time; wall seconds, peak RSS of the largest process, stdout."""
    import os

    with tempfile.NamedTemporaryFile(suffix=".time") as report:
        shell = cmd if isinstance(cmd, str) else subprocess.list2cmdline(cmd)
        full = [
            "/usr/bin/time",
            "-f",
            "%M",
            "-o",
            report.name,
            "bash",
            "-o",
            "pipefail",
            "-c",
            shell,
        ]
        start = time.perf_counter()
        done = subprocess.run(
            full, capture_output=True, text=True, env={**os.environ, **(env or {})}
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(
                f"{shell}\nfailed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        peak_kb = int(Path(report.name).read_text().split()[-1])
    return Measure(seconds, peak_kb / 1024), done.stdout


def dbluigi(source_url: str, table: str, target: str, folder: Path) -> Measure:
    project = folder / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "dbluigi.toml").write_text(
        f'[sources.bench]\nurl = "{source_url}"\ntables = ["{table}"]\n'
    )
    measure, out = run(
        [
            sys.executable,
            "-m",
            "dbluigi.cli",
            "build",
            "--project",
            str(project),
            "--target",
            target,
            "--json",
        ]
    )
    result = json.loads(out)["tasks"][0]
    assert result["status"] == "success", result
    measure.task_seconds = result["duration_s"]
    return measure


def mariadb_to_pg(dbs: Databases, table: str, rows: int) -> dict[str, Measure]:
    source = dbs.mariadb_url(SOURCE_DB)
    found: dict[str, Measure] = {}
    with tempfile.TemporaryDirectory() as folder:
        target = dbs.fresh_pg(TARGET_DB)
        found["dbluigi"] = dbluigi(source, table, target, Path(folder))

    target = dbs.fresh_pg(TARGET_DB)
    load = Path(tempfile.mkdtemp()) / "bench.load"
    load.write_text(
        f"LOAD DATABASE FROM {source.replace('mysql+pymysql', 'mysql')} INTO {target}\n"
        "WITH include drop, create tables, no foreign keys, create no indexes, "
        "reset no sequences\n"
        f"INCLUDING ONLY TABLE NAMES MATCHING '{table}';\n"
    )
    found["pgloader"] = run(["pgloader", "--quiet", str(load)])[0]
    counted = subprocess.run(
        ["psql", "-X", "-qtA", target, "-c", f"select count(*) from {SOURCE_DB}.{table}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert counted == str(rows), f"pgloader loaded {counted} rows"

    # the same CSV dbluigi has the server render, through the mariadb client
    target = dbs.fresh_pg(TARGET_DB)
    dbs.psql(TARGET_DB, f"create table t ({COLUMNS})")
    pipe = same_csv_pipe(dbs, SOURCE_DB, table, target, Path(tempfile.mkdtemp()))
    found["mariadb | psql (same CSV)"] = run(pipe)[0]
    client = " ".join(dbs.mariadb_cli())
    target = dbs.fresh_pg(TARGET_DB)
    dbs.psql(TARGET_DB, f"create table t ({COLUMNS})")
    found["mariadb | psql (naive TSV)"] = run(
        f"{client} --quick --batch --skip-column-names {SOURCE_DB} -e 'select * from {table}' "
        f"| psql -X -q {target} -c \"\\copy t from stdin with (null 'NULL')\""
    )[0]
    return found


def same_csv_pipe(dbs: Databases, database: str, table: str, target: str, folder: Path) -> str:
    """The shell pipe sending the query dbluigi sends MariaDB through ``mariadb --quick
    --batch --raw`` into ``psql \\copy t`` (``t`` created beforehand in ``target``); the
    query is written to a file in ``folder``."""
    query = folder / "extract.sql"
    # the client ends every row with a newline itself
    line = extract_sql(dbs.mariadb_url(database), table)
    line = line.replace(", '\\n') AS BINARY)", ") AS BINARY)")
    query.write_text(f"set time_zone = '+00:00';\n{line};\n")
    client = " ".join(dbs.mariadb_cli())
    return (
        f"{client} --quick --batch --raw --skip-column-names {database} < {query} "
        f"| psql -X -q {target} -c '\\copy t from stdin with (format csv)'"
    )


def extract_sql(source_url: str, table: str) -> str:
    """The statement dbluigi sends MariaDB for the table (one CSV line a row)."""
    from dbluigi.config import load_config
    from dbluigi.sources import connect

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "dbluigi.toml").write_text(
            f'[sources.bench]\nurl = "{source_url}"\ntables = ["{table}"]\n'
        )
        spec = load_config(Path(folder)).source_tables[f"bench.{table}"]
    with connect(spec) as source:
        return source.extract_sql(spec, source.describe(spec))


def pg_to_pg(dbs: Databases, table: str) -> dict[str, Measure]:
    source = dbs.pg_url(SOURCE_DB)
    found: dict[str, Measure] = {}
    with tempfile.TemporaryDirectory() as folder:
        target = dbs.fresh_pg(TARGET_DB)
        found["dbluigi"] = dbluigi(source, table, target, Path(folder))
    target = dbs.fresh_pg(TARGET_DB)
    dbs.psql(TARGET_DB, f"create table t ({COLUMNS})")
    found["psql \\copy | psql \\copy"] = run(
        f"psql -X -q {source} -c '\\copy (select * from {table}) to stdout with (format csv)' "
        f"| psql -X -q {target} -c '\\copy t from stdin with (format csv)'"
    )[0]
    return found


def pg_to_duckdb(dbs: Databases, table: str) -> dict[str, Measure]:
    source = dbs.pg_url(SOURCE_DB)
    found: dict[str, Measure] = {}
    with tempfile.TemporaryDirectory() as folder:
        found["dbluigi"] = dbluigi(source, table, f"duckdb:///{folder}/t.duckdb", Path(folder))
    with tempfile.TemporaryDirectory() as folder:
        reader = Path(folder) / "reader.py"
        reader.write_text(
            "import duckdb\n"
            f"duckdb.connect('{folder}/t.duckdb').execute(\"create table t as select * from "
            f"read_csv('/dev/stdin', columns={DUCKDB_COLUMNS}, header=false, auto_detect=false, "
            "nullstr='', allow_quoted_nulls=false)\")\n"
        )
        found["psql \\copy | DuckDB read_csv"] = run(
            f"psql -X -q {source} -c '\\copy (select * from {table}) to stdout with (format csv)' "
            f"| {sys.executable} {reader}"
        )[0]
    return found


def median(measures: list[Measure]) -> Measure:
    tasks = [m.task_seconds for m in measures if m.task_seconds is not None]
    return Measure(
        statistics.median(m.seconds for m in measures),
        max(m.peak_mb for m in measures),
        statistics.median(tasks) if tasks else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000,5000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306/test")
    args = parser.parse_args()
    dbs = Databases(args.pg, args.mariadb)
    print("| case | rows | tool | seconds | rows/s | dbluigi task (s) | peak memory (MB) |")
    print("|---|---|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        table = generate(dbs, rows)
        cases = {
            "MariaDB -> PostgreSQL": lambda t=table, n=rows: mariadb_to_pg(dbs, t, n),
            "PostgreSQL -> PostgreSQL": lambda t=table: pg_to_pg(dbs, t),
            "PostgreSQL -> DuckDB": lambda t=table: pg_to_duckdb(dbs, t),
        }
        for case, measure in cases.items():
            runs: dict[str, list[Measure]] = {}
            for _ in range(args.repeat):
                for tool, found in measure().items():
                    runs.setdefault(tool, []).append(found)
            for tool, found in runs.items():
                m = median(found)
                task = f"{m.task_seconds:.2f}" if m.task_seconds is not None else ""
                shown = tool.replace("|", "\\|")  # a pipe inside a Markdown table cell
                print(
                    f"| {case} | {rows:,} | {shown} | {m.seconds:.2f} | {rows / m.seconds:,.0f} "
                    f"| {task} | {m.peak_mb:.0f} |",
                    flush=True,
                )
    dbs.psql(str(dbs.pg.database), f'drop database if exists "{TARGET_DB}" with (force)')


if __name__ == "__main__":
    main()
