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

The pre-typed baselines know the types before they start; a first build has to find them
in the file. So each round also runs the same work without dbluigi, next to the first
build: the file typed from every one of its rows by DuckDB's own CSV detection
(``read_csv(..., sample_size = -1)``), then loaded; into DuckDB, one ``CREATE TABLE AS``
from that detection; into PostgreSQL, a ``python -c`` printing the ``CREATE TABLE`` of the
detected types and the ``\\copy``, piped into ``psql``.

Prints, for each case, the medians, the median of the paired ratios, and dbluigi's task
time (from ``--json``: the seed task alone, without process start, planning and state).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
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


Round = dict[str, float]  # what one paired round measured, by name (see ``builds``)


def builds(project: Path, target: Callable[[], str], modes: list[str]) -> Round:
    """dbluigi's builds of a round, each into a fresh database (``target()`` makes one):
    for each mode (``alone``: its own process; ``served``: through ``dbluigi server``),
    the first build of the file (``first``, its types forgotten) and the next one
    (``known``): ``<case> <mode>`` the whole command, ``... task`` the seed task."""
    measured: Round = {}
    for mode in modes:
        for case in ("first", "known"):
            if case == "first":
                forget_types(project / "raw" / f"{TABLE}.csv")
            env = {"DBLUIGI_NO_SERVER": "1"} if mode == "alone" else {"DBLUIGI_NO_SERVER": ""}
            elapsed, payload = dbluigi(project, target(), module="dbluigi", env=env)
            measured[f"{case} {mode}"] = elapsed
            measured[f"{case} {mode} task"] = task_time(payload)
    return measured


def postgres_round(pg: Postgres, csv_path: Path, types: dict[str, str], modes: list[str]) -> Round:
    """One paired round on PostgreSQL: psql \\copy into a pre-typed table (``baseline``),
    dbluigi's builds, and the same work as a first build without dbluigi (``detect``)."""
    db = "bench_seeds_psql"
    url = pg.fresh(db)
    pg.psql(db, "-c", create_table(types, PG_TYPES))
    pg.checkpoint()
    copy, _ = timed(["psql", "-X", "-q", url, "-c", f"\\copy {TABLE} from '{csv_path}' csv header"])
    pg.drop(db)

    def fresh() -> str:
        target = pg.fresh("bench_seeds_dbluigi")
        pg.checkpoint()
        return target

    measured = builds(csv_path.parent.parent, fresh, modes)
    pg.drop("bench_seeds_dbluigi")
    url = pg.fresh("bench_seeds_detect")
    pg.checkpoint()
    psql = f"psql -X -q -v ON_ERROR_STOP=1 {url}"
    detect, _ = timed(["sh", "-c", f"{detect_then_copy(csv_path)} | {psql}"])
    pg.drop("bench_seeds_detect")
    return {"baseline": copy, "detect": detect, **measured}


def duckdb_round(work: Path, csv_path: Path, types: dict[str, str], modes: list[str]) -> Round:
    """One paired round on DuckDB: ``read_csv`` with the types from Python
    (``baseline``), dbluigi's builds, and ``read_csv`` detecting the types from every row
    (``detect``)."""
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

    def fresh() -> str:
        for suffix in ("", ".wal", ".dbluigi-seen"):
            ours_db.with_name(ours_db.name + suffix).unlink(missing_ok=True)
        return f"duckdb:///{ours_db}"

    measured = builds(csv_path.parent.parent, fresh, modes)
    baseline_db.unlink(missing_ok=True)
    detecting = (
        "import duckdb\n"
        f"con = duckdb.connect({str(baseline_db)!r})\n"
        f'con.execute("create table {TABLE} as select * from read_csv({str(csv_path)!r}, '
        'header = true, sample_size = -1)")\n'
        "con.close()\n"
    )
    detect, _ = timed([sys.executable, "-c", detecting])
    for db in (baseline_db, ours_db):
        db.unlink(missing_ok=True)
    return {"baseline": baseline, "detect": detect, **measured}


# DuckDB's names of the types its CSV detection gives, as PostgreSQL spells them
DETECTED_IN_POSTGRES = {
    "BIGINT": "bigint",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "DOUBLE": "double precision",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "VARCHAR": "text",
}


def detect_then_copy(csv_path: Path) -> str:
    """A shell command printing the psql script of the same work without dbluigi: the
    CREATE TABLE of the types DuckDB detects from every row of the file, then \\copy."""
    script = (
        "import duckdb\n"
        f"spelled = {DETECTED_IN_POSTGRES!r}\n"
        'found = duckdb.sql("describe select * from read_csv('
        f'{str(csv_path)!r}, header = true, sample_size = -1)").fetchall()\n'
        "columns = ', '.join(f'{name} {spelled.get(kind, kind.lower())}' "
        "for name, kind, *_ in found)\n"
        f"print(f'create table {TABLE} ({{columns}});')\n"
        f"print(\"\\\\copy {TABLE} from '{csv_path}' csv header\")\n"
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"


def report(case: str, rounds: list[tuple[float, float, float]]) -> list[str]:
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


def rows(case: str, same_work: str, rounds: list[Round], modes: list[str]) -> list[list[str]]:
    """The rows of a case: in each mode, the file typed by the build, and its types known
    before; then the first build next to the same work without dbluigi (``same_work``)."""
    named = {"alone": "", "served": ", dbluigi server running"}

    def paired(baseline: str, build: str) -> list[tuple[float, float, float]]:
        return [(r[baseline], r[build], r[f"{build} task"]) for r in rounds]

    table = []
    for mode in modes:
        table += [
            report(
                f"{case}, first build of the file{named[mode]}", paired("baseline", f"first {mode}")
            ),
            report(f"{case}, types known{named[mode]}", paired("baseline", f"known {mode}")),
        ]
    table.append(
        report(
            f"{case.split(', vs ')[0]}, first build of the file vs {same_work}",
            paired("detect", "first alone"),
        )
    )
    return table


@contextlib.contextmanager
def server(work: Path) -> Iterator[None]:
    """``dbluigi server`` running for the benchmark's commands (its own socket folder)."""
    folder = work / "server"
    folder.mkdir(mode=0o700)
    os.environ["DBLUIGI_SERVER_DIR"] = str(folder)
    command = [sys.executable, "-m", "dbluigi", "server"]
    subprocess.run([*command, "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        subprocess.run([*command, "stop"], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds of each case")
    parser.add_argument("--every-type", action="store_true", help="also a file of every type")
    parser.add_argument("--only", choices=("postgres", "duckdb"), action="append")
    parser.add_argument(
        "--server", action="store_true", help="also each build with dbluigi server running"
    )
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
    modes = ["alone", "served"] if args.server else ["alone"]
    try:
        with server(work) if args.server else contextlib.nullcontext():
            for label, name, write, types in files:
                csv_path = project_with(work, name, write, args.rows)
                size = csv_path.stat().st_size / 1e6
                case = f"{args.rows:,} rows, {label} ({size:.0f} MB)"
                cases = {
                    "postgres": (
                        functools.partial(postgres_round, pg, csv_path, types, modes),
                        f"PostgreSQL, {case}, vs psql \\copy",
                        "DuckDB's detection over every row, then psql \\copy",
                    ),
                    "duckdb": (
                        functools.partial(duckdb_round, work, csv_path, types, modes),
                        f"DuckDB, {case}, vs read_csv",
                        "read_csv detecting the types from every row",
                    ),
                }
                for target in targets:
                    measure, label_of_case, same_work = cases[target]
                    rounds = [measure() for _ in range(args.rounds)]
                    table += rows(label_of_case, same_work, rounds, modes)
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
