"""CSV seed benchmark: ``dbluigi build`` of a one-seed project next to the database's own
bulk load of the same file, on PostgreSQL and DuckDB.

    python bench/bench_seeds.py [--rows 1000000] [--rounds 5] [--every-type]
                                [--only postgres|duckdb ...]
                                [--pg postgresql://root@127.0.0.1:5432/test]

The CSV is generated deterministically: ``id bigint, name text, amount numeric,
ts timestamp, flag boolean`` (about 58 bytes a row); with ``--every-type``, a second file
holds one column of every type the seed reader infers (bigint, numeric, double, boolean,
date, timestamp, timestamptz, text with leading zeros) and is benchmarked the same way.
Each round runs the baseline and dbluigi back to back (a paired round), each into a fresh
database:

- PostgreSQL: ``psql -c "\\copy t from file csv header"`` into a table created beforehand
  with the right types (creating it is not timed) vs ``dbluigi build`` of the project;
- DuckDB: ``python -c`` creating the table from ``read_csv`` with the right types (no
  detection) in a new DuckDB file vs ``dbluigi build`` into a new DuckDB file.

Each round runs dbluigi twice after its baseline: first with the project's cache of seed
types emptied (the first build of a file: the typing pass runs while the file loads), then
with the types that build kept (``.dbluigi/cache/seed-types.json``: the same file into
another target, a ``--full-refresh`` or a ``rebuild``), each into a fresh database.

Prints, for each case, the medians, the median of the paired ratios, and dbluigi's task
time (from ``--json``: the seed task alone, without process start, planning and state).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import Postgres, dbluigi, timed

TABLE = "events"
FIVE = {"id": "bigint", "name": "text", "amount": "numeric", "ts": "timestamp", "flag": "boolean"}
EVERY = {
    "id": "bigint",
    "amount": "numeric",
    "ratio": "double",
    "flag": "boolean",
    "day": "date",
    "ts": "timestamp",
    "at": "timestamptz",
    "zip": "text",
    "name": "text",
}
# PostgreSQL and DuckDB spell numeric the way dbluigi creates it.
PG_TYPES = {"numeric": "numeric", "double": "double precision"}
DUCKDB_TYPES = {"numeric": "decimal(38, 10)", "double": "double"}


def five_columns(path: Path, count: int) -> None:
    """``count`` rows of ``id, name, amount, ts, flag`` (a timestamp with seconds)."""
    rng = random.Random(16)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(list(FIVE))
        for i in range(count):
            writer.writerow(
                [
                    i + 1,
                    f"customer {rng.randrange(1_000_000)}",
                    f"{rng.random() * 100_000:.2f}",
                    f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} "
                    f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
                    "true" if rng.random() < 0.5 else "false",
                ]
            )


def every_type(path: Path, count: int) -> None:
    """``count`` rows with a column of every inferred type, some values empty (NULL)."""
    rng = random.Random(17)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(list(EVERY))
        for i in range(count):
            day = f"20{rng.randrange(10, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
            clock = f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
            row = [
                i + 1,
                f"{rng.random() * 1000:.3f}",
                f"{rng.random():.6e}",
                "true" if rng.random() < 0.5 else "false",
                day,
                f"{day}T{clock}.{rng.randrange(1_000_000):06d}",
                f"{day} {clock}+0{rng.randrange(10)}:00",
                f"{rng.randrange(100_000):05d}",
                f"name {rng.randrange(1000)}",
            ]
            if rng.random() < 0.05:
                row[rng.randrange(1, len(row))] = ""
            writer.writerow(row)


def project_with(work: Path, name: str, write: Callable[[Path, int], None], count: int) -> Path:
    """A one-seed project (``raw/events.csv``); returns the CSV's path."""
    project = work / name
    (project / "raw").mkdir(parents=True)
    (project / "dbluigi.toml").write_text(f'[project]\nname = "{name}"\n')
    path = project / "raw" / f"{TABLE}.csv"
    write(path, count)
    return path


def create_table(types: dict[str, str], spelled: dict[str, str]) -> str:
    columns = ", ".join(f"{name} {spelled.get(kind, kind)}" for name, kind in types.items())
    return f"create table {TABLE} ({columns})"


def task_time(payload: dict) -> float:
    return sum(result["duration_s"] for result in payload["tasks"])


def forget_types(csv_path: Path) -> None:
    """Empty the project's cache of seed types: the next build types the file."""
    (csv_path.parent.parent / ".dbluigi" / "cache" / "seed-types.json").unlink(missing_ok=True)


def postgres_round(pg: Postgres, csv_path: Path, types: dict[str, str]) -> tuple[float, ...]:
    """One paired round on PostgreSQL: (psql \\copy, dbluigi build, dbluigi task, dbluigi
    build with the types known, its task)."""
    db = "bench_seeds_psql"
    url = pg.fresh(db)
    pg.psql(db, "-c", create_table(types, PG_TYPES))
    pg.checkpoint()
    copy, _ = timed(["psql", "-X", "-q", url, "-c", f"\\copy {TABLE} from '{csv_path}' csv header"])
    pg.drop(db)
    measured: list[float] = [copy]
    for known in (False, True):
        if not known:
            forget_types(csv_path)
        db = "bench_seeds_dbluigi"
        target = pg.fresh(db)
        pg.checkpoint()
        elapsed, payload = dbluigi(csv_path.parent.parent, target)
        pg.drop(db)
        measured += [elapsed, task_time(payload)]
    return tuple(measured)


def duckdb_round(work: Path, csv_path: Path, types: dict[str, str]) -> tuple[float, ...]:
    """One paired round on DuckDB: (python read_csv, dbluigi build, dbluigi task)."""
    baseline_db, ours_db = work / "baseline.duckdb", work / "dbluigi.duckdb"
    for db in (baseline_db, ours_db):
        db.unlink(missing_ok=True)
    columns = ", ".join(
        f"'{name}': '{DUCKDB_TYPES.get(kind, kind)}'" for name, kind in types.items()
    )
    script = (
        "import duckdb\n"
        f"con = duckdb.connect({str(baseline_db)!r})\n"
        f'con.execute("create table {TABLE} as select * from read_csv({str(csv_path)!r}, '
        f'header = true, auto_detect = false, columns = {{{columns}}})")\n'
        "con.close()\n"
    )
    baseline, _ = timed([sys.executable, "-c", script])
    measured: list[float] = [baseline]
    for known in (False, True):
        if not known:
            forget_types(csv_path)
        for suffix in ("", ".wal", ".dbluigi-seen"):
            ours_db.with_name(ours_db.name + suffix).unlink(missing_ok=True)
        elapsed, payload = dbluigi(csv_path.parent.parent, f"duckdb:///{ours_db}")
        measured += [elapsed, task_time(payload)]
    for db in (baseline_db, ours_db):
        db.unlink(missing_ok=True)
    return tuple(measured)


def report(case: str, rounds: list[tuple[float, ...]]) -> list[str]:
    """A table row of (baseline, dbluigi, dbluigi task) rounds."""
    baseline, ours, task = (statistics.median(r[i] for r in rounds) for i in range(3))
    ratio = statistics.median(r[1] / r[0] for r in rounds)
    task_ratio = statistics.median(r[2] / r[0] for r in rounds)
    return [
        case,
        f"{baseline:.2f}",
        f"{ours:.2f}",
        f"{task:.2f}",
        f"{ratio:.2f}x",
        f"{task_ratio:.2f}x",
    ]


def both(case: str, rounds: list[tuple[float, ...]]) -> list[list[str]]:
    """The rows of a case: the file typed by the build, and its types known before."""
    return [
        report(f"{case}, first build of the file", [r[:3] for r in rounds]),
        report(f"{case}, types known", [(r[0], r[3], r[4]) for r in rounds]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds of each case")
    parser.add_argument("--every-type", action="store_true", help="also a file of every type")
    parser.add_argument("--only", choices=("postgres", "duckdb"), action="append")
    parser.add_argument(
        "--pg", default=os.environ.get("DBLUIGI_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
    )
    args = parser.parse_args()
    targets = args.only or ["postgres", "duckdb"]
    pg = Postgres(args.pg)
    work = Path(tempfile.mkdtemp(prefix="dbluigi-bench-seeds-"))
    files = [("5 columns", "five", five_columns, FIVE)]
    if args.every_type:
        files.append(("every type", "every", every_type, EVERY))
    table: list[list[str]] = []
    try:
        for label, name, write, types in files:
            csv_path = project_with(work, name, write, args.rows)
            size = csv_path.stat().st_size / 1e6
            case = f"{args.rows:,} rows, {label} ({size:.0f} MB)"
            if "postgres" in targets:
                rounds = [postgres_round(pg, csv_path, types) for _ in range(args.rounds)]
                table += both(f"PostgreSQL, {case}, vs psql \\copy", rounds)
            if "duckdb" in targets:
                rounds = [duckdb_round(work, csv_path, types) for _ in range(args.rounds)]
                table += both(f"DuckDB, {case}, vs read_csv", rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"median of {args.rounds} paired rounds; {os.cpu_count()} cores, load average {load}")
    print("| case | baseline (s) | dbluigi (s) | dbluigi task (s) | ratio | task ratio |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
