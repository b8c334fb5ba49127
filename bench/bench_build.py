"""Build benchmark: dbluigi's own overhead next to the physical limit, on PostgreSQL.

    python bench/bench_build.py [--models 1000] [--large 10000] [--seed-rows 1000000]
                                [--pg postgresql://root@127.0.0.1:5432/test] [--skip-large]
                                [--repeat 3] [--only fresh|noop|workers|seed ...]

Every case generates its project deterministically (bench/genproject.py), runs the
baseline and dbluigi side by side in the same run, and prints a Markdown table:

- fresh build of N layered trivial models vs the same build-aside + swap statements
  in one `psql -f` session (the physical limit), with 1 and 4 workers;
- the same at 10x the models (linearity) with dbluigi's peak memory;
- a no-op build (everything up to date), process start included;
- an edit to one model: only its downstream closure runs;
- --workers 2 vs 1 on a wide DAG of CPU-bound models;
- a 1M-row CSV seed vs `psql \\copy` of the same file.
Each database is created for the case and dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from genproject import SCHEMA, layered, wide

from dbluigi.urls import parse_url

ROOT = Path(__file__).resolve().parent.parent
WORKER_COUNTS = (1, 2, 4)


class Postgres:
    def __init__(self, admin_url: str) -> None:
        self.admin = parse_url(admin_url)

    def psql(self, database: str, *args: str, quiet: bool = True) -> None:
        url = replace(self.admin, database=database).render()
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *args]
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None
        )

    def fresh(self, name: str) -> str:
        self.psql(
            self.admin.database,
            "-c",
            f'drop database if exists "{name}"',
            "-c",
            f'create database "{name}"',
        )
        return replace(self.admin, database=name).render()

    def checkpoint(self) -> None:
        """CHECKPOINT before a timed run, so no run pays for the dirty pages of the one
        before (a checkpoint spread over minutes slows every fsync meanwhile); best effort,
        it needs a superuser."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.psql(self.admin.database, "-c", "checkpoint")

    def drop(self, name: str) -> None:
        self.psql(self.admin.database, "-c", f'drop database if exists "{name}" with (force)')


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - start
    if done.returncode not in (0,):
        raise SystemExit(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return elapsed, done.stdout


def dbluigi(
    project: Path,
    target: str,
    *args: str,
    module: str = "dbluigi.cli",
    env: dict[str, str] | None = None,
) -> tuple[float, dict]:
    """``build --json`` of ``project`` into ``target``: (seconds, what it printed).
    ``module`` ``dbluigi`` runs the ``dbluigi`` command's own entry point (which a
    ``dbluigi server`` may serve); ``dbluigi.cli`` the command line alone."""
    command = ["build", "--project", str(project), "--target", target, "--json", *args]
    elapsed, out = timed([sys.executable, "-m", module, *command], env)
    return elapsed, json.loads(out)


def peak_rss_mb_of(cmd: list[str]) -> tuple[float, float]:
    """Run a command; its wall time and peak resident memory (children's max RSS)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    elapsed, _ = timed(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(after, before) / 1024


def baseline_script(models: list[tuple[str, str]], path: Path) -> None:
    lines = ["set client_min_messages = warning;", f"create schema if not exists {SCHEMA};"]
    for name, sql in models:
        lines += [
            "begin;",
            f"drop table if exists {SCHEMA}.{name}__new;",
            f"create table {SCHEMA}.{name}__new as {sql};",
            f"drop table if exists {SCHEMA}.{name};",
            f"alter table {SCHEMA}.{name}__new rename to {name};",
            "commit;",
        ]
    path.write_text("\n".join(lines) + "\n")


def protocol_script(models: list[tuple[str, str]], path: Path) -> None:
    """The statements dbluigi sends per model on PostgreSQL, in one psql session: what the
    database does for dbluigi (lock, state read and writes, EXPLAIN with the build,
    savepoint), without dbluigi's Python. Between the two baselines lies the cost of the
    protocol; above the second, dbluigi's own process."""
    from dbluigi.state import MIGRATIONS

    lines = ["set client_min_messages = warning;", f"create schema if not exists {SCHEMA};"]
    lines += ["create schema if not exists dbluigi;", *(f"{m};" for m in MIGRATIONS[0])]
    for name, sql in models:
        relation, new = f'"{SCHEMA}"."{name}"', f'"{SCHEMA}"."{name}__dbluigi_new"'
        lines += [
            "BEGIN;",
            f"SELECT pg_advisory_xact_lock(hashtextextended('dbluigi.model:{SCHEMA}.{name}[]', 0));",
            f"select build_id, generation from dbluigi.models where model = '{SCHEMA}.{name}' "
            "and partition_key = '';",
            "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, FORMAT JSON)",
            f"CREATE TABLE {new} AS {sql};",
            f"SAVEPOINT dbluigi_swap; DROP TABLE IF EXISTS {relation}; "
            f'ALTER TABLE {new} RENAME TO "{name}"; RELEASE SAVEPOINT dbluigi_swap;',
            f"insert into dbluigi.models values ('{SCHEMA}.{name}', '', 'table', 'f', 'c', 'b', "
            "1, 1, now(), 'r') on conflict (model, partition_key) do update set "
            "build_id = excluded.build_id, generation = excluded.generation;",
            f"insert into dbluigi.task_runs values ('r', '{SCHEMA}.{name}', '', 1, 'success', "
            "null, null, 'p', 1, 'new', now(), 0.001, 1, 'f', 'b', 1.0, '[]');",
            "COMMIT;",
        ]
    path.write_text("\n".join(lines) + "\n")


def case_fresh(
    pg: Postgres,
    work: Path,
    count: int,
    workers: tuple[int, ...],
    rows: list[list[str]],
    *,
    repeat: int = 1,
    memory: bool = False,
) -> dict[int, float]:
    """``repeat`` rounds, each running the psql script, the protocol script and dbluigi per
    worker count one after the other. This VM switches, every few tens of seconds, between
    a fast and a slow mode for processes that exchange thousands of round trips (the psql
    script takes about 1.5 s or about 3.4 s at 1,000 models), so the ratio is taken within
    each round, under the same conditions, and the median of those ratios reported; the
    medians and best runs of the times are shown as well."""
    project = work / f"layered{count}"
    models = layered(project, count)
    script, protocol = work / f"baseline{count}.sql", work / f"protocol{count}.sql"
    baseline_script(models, script)
    protocol_script(models, protocol)
    # warm the parse cache, as any earlier command on the project would have
    subprocess.run(
        [sys.executable, "-m", "dbluigi.cli", "lineage", "--project", str(project)],
        capture_output=True,
        check=True,
    )

    def psql_file(path: Path) -> float:
        url = pg.fresh(f"bench_psql_{count}")
        pg.checkpoint()
        try:
            return timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", str(path)])[0]
        finally:
            pg.drop(f"bench_psql_{count}")

    physical, statements = [], []
    runs: dict[int, list[float]] = {w: [] for w in workers}
    peaks: list[float] = []
    for _ in range(repeat):
        physical.append(psql_file(script))
        statements.append(psql_file(protocol))
        for w in workers:
            db = f"bench_dbluigi_{count}_{w}"
            target = pg.fresh(db)
            pg.checkpoint()
            cmd = [sys.executable, "-m", "dbluigi.cli", "build", "--project", str(project)]
            cmd += ["--target", target, "--json", "--workers", str(w)]
            elapsed, peak = peak_rss_mb_of(cmd)
            pg.drop(db)
            runs[w].append(elapsed)
            peaks.append(peak)

    def times(runs: list[float]) -> str:
        return f"{statistics.median(runs):.2f} (best {min(runs):.2f})"

    def ratio(runs: list[float]) -> float:
        return statistics.median(a / b for a, b in zip(runs, physical, strict=True))

    base = statistics.median(physical)
    rows.append(
        [
            f"the same statements dbluigi sends, {count} models, in one psql session",
            times(physical),
            times(statements),
            f"{ratio(statements):.2f}x",
            "the database's part of the protocol (locks, state, EXPLAIN), no Python",
        ]
    )
    result = {}
    for w in workers:
        elapsed = statistics.median(runs[w])
        result[w] = elapsed
        per_model = (ratio(runs[w]) - 1) * base / count * 1000
        note = f"; peak memory {max(peaks):.0f} MB" if memory else ""
        rows.append(
            [
                f"fresh build, {count} models, {w} worker(s)",
                times(physical),
                times(runs[w]),
                f"{ratio(runs[w]):.2f}x",
                f"{per_model:+.2f} ms/model vs psql{note}",
            ]
        )
    return result


def case_noop_and_edit(pg: Postgres, work: Path, count: int, rows: list[list[str]]) -> None:
    project = work / f"layered{count}"
    if not project.exists():  # run alone (--only noop)
        layered(project, count)
    db = f"bench_noop_{count}"
    target = pg.fresh(db)
    dbluigi(project, target)
    noop, payload = dbluigi(project, target)
    assert all(r["status"] == "up to date" for r in payload["tasks"]), "no-op build ran something"
    rows.append(
        [
            f"no-op build, {count} models up to date (process start included)",
            "",
            f"{noop:.2f}",
            "",
            "goal: at most 1 s",
        ]
    )
    # edit one model a third of the way down: only its downstream closure may run
    victim = sorted((project / SCHEMA).glob("*.sql"))[count // 3]
    victim.write_text(victim.read_text() + "-- edited\n")
    edit, payload = dbluigi(project, target)
    ran = [r for r in payload["tasks"] if r["status"] != "up to date"]
    closure_sql = sum(r["duration_s"] for r in ran)
    rows.append(
        [
            f"edit one model: {len(ran)} of {count} rebuilt (its downstream closure)",
            f"{closure_sql:.2f} (tasks) + {noop:.2f} (no-op)",
            f"{edit:.2f}",
            f"{edit / (closure_sql + noop):.2f}x",
            "vs closure time + no-op cost",
        ]
    )
    pg.drop(db)


def case_workers(pg: Postgres, work: Path, rows: list[list[str]]) -> None:
    project = work / "wide"
    wide(project, width=16, rows=1_500_000)
    times = {}
    for w in (1, 2):
        db = f"bench_wide_{w}"
        target = pg.fresh(db)
        times[w], _ = dbluigi(project, target, "--workers", str(w))
        pg.drop(db)
    rows.append(
        [
            "wide DAG (16 CPU-bound models), --workers 1 vs 2",
            f"{times[1]:.2f}",
            f"{times[2]:.2f}",
            f"{times[2] / times[1]:.2f}x",
            "goal: 2 workers faster",
        ]
    )


def case_seed(
    pg: Postgres, work: Path, count: int, rows: list[list[str]], *, repeat: int = 1
) -> None:
    """``psql \\copy`` of a CSV into a table typed by hand vs ``dbluigi build`` of a project
    holding only that seed: medians of ``repeat`` runs, end to end and dbluigi's task time."""
    project = work / "seed"
    (project / "raw").mkdir(parents=True)
    path = project / "raw" / "events.csv"
    rng = random.Random(1)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "agency_id", "amount", "day", "label"])
        for i in range(count):
            writer.writerow(
                [
                    i,
                    rng.randrange(1000),
                    f"{rng.random() * 1000:.2f}",
                    f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                    f"l{rng.randrange(50)}",
                ]
            )
    copies, ours, tasks = [], [], []
    for _ in range(repeat):
        db = "bench_seed_psql"
        url = pg.fresh(db)
        pg.checkpoint()
        pg.psql(
            db,
            "-c",
            "create table events (id bigint, agency_id bigint, amount numeric, day date, label text)",
        )
        copy, _ = timed(
            [
                "psql",
                "-X",
                "-q",
                url,
                "-c",
                f"\\copy events from '{path}' with (format csv, header true)",
            ]
        )
        copies.append(copy)
        pg.drop(db)
        db = "bench_seed_dbluigi"
        target = pg.fresh(db)
        pg.checkpoint()
        elapsed, payload = dbluigi(project, target)
        ours.append(elapsed)
        tasks.append(sum(r["duration_s"] for r in payload["tasks"]))
        pg.drop(db)
    copy, elapsed, task = (statistics.median(x) for x in (copies, ours, tasks))
    rows.append(
        [
            f"CSV seed, {count:,} rows (median of {repeat})",
            f"{copy:.2f}",
            f"{elapsed:.2f} (task {task:.2f})",
            f"{elapsed / copy:.2f}x (task {task / copy:.2f}x)",
            "vs psql \\copy into a typed table; goal 1.05x",
        ]
    )


CASES = ("fresh", "noop", "workers", "seed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--seed-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--pg", default=os.environ.get("DBLUIGI_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
    )
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--large-repeat", type=int, default=1, help="rounds of the large case")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed case")
    parser.add_argument(
        "--only", choices=CASES, action="append", help="run only these cases (repeatable)"
    )
    args = parser.parse_args()
    only = set(args.only or CASES)
    pg = Postgres(args.pg)
    work = Path(tempfile.mkdtemp(prefix="dbluigi-bench-"))
    rows: list[list[str]] = []
    try:
        if "fresh" in only:
            small = case_fresh(pg, work, args.models, WORKER_COUNTS, rows, repeat=args.repeat)
            if not args.skip_large:
                large = case_fresh(
                    pg, work, args.large, (4,), rows, repeat=args.large_repeat, memory=True
                )
                ratio = large[4] / small[4]
                name = f"linearity: {args.large} vs {args.models} models, 4 workers"
                rows.append(
                    [
                        name,
                        f"{small[4]:.2f}",
                        f"{large[4]:.2f}",
                        f"{ratio:.1f}x",
                        "goal: at most 12x",
                    ]
                )
        if "noop" in only:
            case_noop_and_edit(pg, work, args.models, rows)
        if "workers" in only:
            case_workers(pg, work, rows)
        if "seed" in only:
            case_seed(pg, work, args.seed_rows, rows, repeat=args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| case | baseline (s) | dbluigi (s) | ratio | note |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
