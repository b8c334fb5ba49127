"""MariaDB -> PostgreSQL full copy at scale: dbluigi next to the plain pipe, paired rounds.

    python bench/bench_extract.py [--rows 3000000] [--rounds 5] [--source-db dbluigi_bench_src]
                                  [--pg postgresql://root@127.0.0.1:5432/test]
                                  [--mariadb mysql+pymysql://root@127.0.0.1:3306/test]
                                  [--drop-source]

The table of ``bench_sources.py`` (``orders_<rows>``, generated once in MariaDB database
``--source-db`` and kept: ``--drop-source`` drops that database at the end). Each round
runs, back to back and in alternating order:

- ``dbluigi build`` of a project declaring the table as a source, into a fresh
  PostgreSQL database: the whole command, and the task's own time (from ``--json``);
- the same CSV through the plain pipe doing the same work: ``mariadb --quick --batch
  --raw`` running the very statement dbluigi sends, piped into ``psql \\copy`` into the
  table dbluigi would create (same column types), created beforehand in a fresh database.

Every run starts from a CHECKPOINT, so none pays for the dirty pages of the one before.
Printed: the median of each, the median of the per-round ratios (task / pipe and whole
command / pipe), and the peak resident set of any process of each command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sources import COLUMNS, Databases, Measure, generate_mariadb, run, same_csv_pipe

TARGET_DB = "dbluigi_bench_extract"


def fresh_target(dbs: Databases, *, table: bool) -> str:
    target = dbs.fresh_pg(TARGET_DB)
    if table:
        dbs.psql(TARGET_DB, f"create table t ({COLUMNS})")
    dbs.psql(str(dbs.pg.database), "checkpoint")
    return target


def dbluigi(dbs: Databases, database: str, table: str, folder: Path) -> Measure:
    project = folder / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "dbluigi.toml").write_text(
        f'[sources.bench]\nurl = "{dbs.mariadb_url(database)}"\ntables = ["{table}"]\n'
    )
    target = fresh_target(dbs, table=False)
    cmd = [sys.executable, "-m", "dbluigi.cli", "build", "--project", str(project)]
    measure, out = run([*cmd, "--target", target, "--json"])
    result = json.loads(out)["tasks"][0]
    assert result["status"] == "success", result
    measure.task_seconds = result["duration_s"]
    return measure


def pipe(dbs: Databases, database: str, table: str, folder: Path) -> Measure:
    target = fresh_target(dbs, table=True)
    return run(same_csv_pipe(dbs, database, table, target, folder))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--source-db", default="dbluigi_bench_src")
    parser.add_argument("--pg", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--mariadb", default="mysql+pymysql://root@127.0.0.1:3306/test")
    parser.add_argument("--drop-source", action="store_true")
    args = parser.parse_args()
    dbs = Databases(args.pg, args.mariadb)
    table = generate_mariadb(dbs, args.rows, args.source_db)
    load_before = os.getloadavg()[0]
    ours: list[Measure] = []
    theirs: list[Measure] = []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            if round_ % 2 == 0:
                ours.append(dbluigi(dbs, args.source_db, table, Path(folder)))
                theirs.append(pipe(dbs, args.source_db, table, Path(folder)))
            else:
                theirs.append(pipe(dbs, args.source_db, table, Path(folder)))
                ours.append(dbluigi(dbs, args.source_db, table, Path(folder)))
            a, b = ours[-1], theirs[-1]
            print(
                f"round {round_ + 1}: dbluigi {a.seconds:.2f} s (task {a.task_seconds:.2f} s, "
                f"{a.peak_mb:.0f} MB), pipe {b.seconds:.2f} s ({b.peak_mb:.0f} MB)",
                file=sys.stderr,
                flush=True,
            )
    dbs.psql(str(dbs.pg.database), f'drop database if exists "{TARGET_DB}" with (force)')
    if args.drop_source:
        dbs.maria(f"drop database if exists {args.source_db}")

    tasks = [m.task_seconds or 0.0 for m in ours]
    whole = [m.seconds for m in ours]
    base = [m.seconds for m in theirs]
    rows = args.rows
    print(
        f"MariaDB -> PostgreSQL, {rows:,} rows, {args.rounds} paired rounds (medians); "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print("| command | seconds | rows/s | ratio to the pipe (median of rounds) | peak MB |")
    print("|---|---|---|---|---|")
    for label, times, peak in (
        ("dbluigi task", tasks, max(m.peak_mb for m in ours)),
        ("dbluigi build (whole command)", whole, max(m.peak_mb for m in ours)),
        ("mariadb --quick --batch --raw \\| psql \\copy", base, max(m.peak_mb for m in theirs)),
    ):
        ratio = statistics.median(t / b for t, b in zip(times, base, strict=True))
        seconds = statistics.median(times)
        print(f"| {label} | {seconds:.2f} | {rows / seconds:,.0f} | {ratio:.2f}x | {peak:.0f} |")


if __name__ == "__main__":
    main()
