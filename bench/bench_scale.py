"""Scale benchmark: fresh PostgreSQL builds of 1,000 to 20,000 models against one psql session.

    python bench/bench_scale.py [--rounds 3] [--small 1000] [--large 10000 20000]
                                [--workers 1 2 4] [--large-workers 2] [--only small|large]
                                [--pg postgresql://root@127.0.0.1:5432/test]
    python bench/bench_scale.py --only scheduler [--rounds 3]

The layered project of bench/genproject.py, built into a fresh database (a `CHECKPOINT`
before each run) by dbluigi and, as the baseline, by the same build-aside + swap statements
in one `psql -f` session (``bench_build.baseline_script``: the physical limit). Each round
runs, one after the other, the baseline and dbluigi at every size and worker count asked
for: at the small size with the default number of workers (no ``--workers``: dbluigi picks
it from the machine and the server) and with each of ``--workers``; at the large sizes with
``--large-workers``; at the small size also the statements dbluigi sends per model (lock,
state, EXPLAIN, savepoint swap: ``bench_build.protocol_script``) in one psql session, the
database's share of dbluigi's protocol without its Python. The ratio reported is the median of the per-round ratios to the
baseline of the same round and size (this VM's speed drifts; a ratio taken within one
round compares like with like), with the median times, each dbluigi run's peak memory and
the largest size's wall time over the next largest's (median of per-round ratios).

``--only scheduler`` times luigi's local scheduler alone (no database, no luigi worker) at
each size, handing out the same graph two tasks at a time: it should grow linearly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import Postgres, baseline_script, protocol_script, timed
from genproject import layered

PG = os.environ.get("DBLUIGI_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
DEFAULT = 0  # the worker count standing for "no --workers"


def measured(cmd: list[str]) -> tuple[float, float]:
    """Run a command; its wall seconds and its peak resident memory in MB."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({process.returncode}):\n{errors[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


class Case:
    """One size of the layered project: its files, the baseline script, and runs."""

    def __init__(self, pg: Postgres, work: Path, count: int) -> None:
        self.pg, self.count = pg, count
        self.project = work / f"layered{count}"
        models = layered(self.project, count)
        self.script = work / f"baseline{count}.sql"
        baseline_script(models, self.script)
        self.protocol = work / f"protocol{count}.sql"
        protocol_script(models, self.protocol)
        # fill the parse cache for the target's dialect, as any earlier command would have
        admin = pg.admin.render()
        lineage = [sys.executable, "-m", "dbluigi.cli", "lineage", "--project", str(self.project)]
        subprocess.run(
            [*lineage, "--target", admin],
            capture_output=True,
            check=True,
        )

    def psql(self, script: Path | None = None) -> float:
        name = f"bench_scale_psql_{self.count}"
        url = self.pg.fresh(name)
        self.pg.checkpoint()
        path = str(script or self.script)
        try:
            return timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", path])[0]
        finally:
            self.pg.drop(name)

    def dbluigi(self, workers: int) -> tuple[float, float, int]:
        """Wall seconds, peak MB and the number of workers the run used."""
        name = f"bench_scale_dbluigi_{self.count}_{workers}"
        url = self.pg.fresh(name)
        self.pg.checkpoint()
        cmd = [sys.executable, "-m", "dbluigi.cli", "build", "--project", str(self.project)]
        cmd += ["--target", url, "--json"]
        if workers != DEFAULT:
            cmd += ["--workers", str(workers)]
        try:
            elapsed, peak = measured(cmd)
            used = subprocess.run(
                ["psql", "-X", "-At", url, "-c", "select workers from dbluigi.runs"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            return elapsed, peak, int(used[-1])
        finally:
            self.pg.drop(name)


def scheduler_alone(models: list[tuple[str, str]], running: int = 2) -> float:
    """Seconds luigi's local scheduler (``FastScheduler``) takes to hand out a run of
    ``models`` as a worker drives it: the run's root task needs every model, each model
    its parents, ``running`` tasks at a time, each done as soon as it is handed out."""
    import re

    import luigi.scheduler

    from dbluigi.luigi_tasks import FastScheduler

    ids = [name for name, _ in models]
    scheduler = FastScheduler(order={m: i for i, m in enumerate(ids)})
    started = time.perf_counter()
    pending = luigi.scheduler.PENDING
    scheduler.add_task(worker="w", task_id="root", deps=ids, status=pending)
    for name, sql in models:
        parents = re.findall(r"\bbench\.(m\d+)", sql)
        scheduler.add_task(worker="w", task_id=name, deps=parents, status=pending)
    queue: list[str] = []
    finished = 0
    while True:
        while len(queue) < running:
            task = scheduler.get_work(worker="w", current_tasks=queue)["task_id"]
            if task is None:
                break
            queue.append(task)
        if not queue:
            break
        done = queue.pop(0)
        scheduler.add_task(worker="w", task_id=done, status=luigi.scheduler.DONE, new_deps=[])
        finished += 1
    assert finished == len(ids) + 1, f"{finished} of {len(ids) + 1} tasks ran"
    return time.perf_counter() - started


def label(workers: int, used: set[int]) -> str:
    if workers == DEFAULT:
        return f"default workers ({', '.join(map(str, sorted(used)))})"
    return f"{workers} worker{'s' if workers > 1 else ''}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, nargs="*", default=[10000, 20000])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--large-workers", type=int, default=2)
    parser.add_argument(
        "--only", choices=("small", "large", "scheduler"), help="scheduler: no database"
    )
    parser.add_argument("--pg", default=PG)
    args = parser.parse_args()
    if args.only == "scheduler":
        print("| models | scheduler alone (s, median) |\n|---|---|")
        for count in (args.small, *args.large):
            with tempfile.TemporaryDirectory(prefix="dbluigi-scale-") as tmp:
                models = layered(Path(tmp), count)
            times = [scheduler_alone(models) for _ in range(args.rounds)]
            print(f"| {count:,} | {statistics.median(times):.2f} |")
        return
    pg = Postgres(args.pg)
    plan: list[tuple[int, list[int]]] = []
    if args.only != "large":
        plan.append((args.small, [DEFAULT, *args.workers]))
    if args.only != "small":
        plan += [(count, [args.large_workers]) for count in args.large]
    with tempfile.TemporaryDirectory(prefix="dbluigi-scale-") as tmp:
        cases = {count: Case(pg, Path(tmp), count) for count, _ in plan}
        base: dict[int, list[float]] = {count: [] for count, _ in plan}
        runs: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
        protocol: list[float] = []  # the small size only: it doubles a round's database time
        for round_no in range(1, args.rounds + 1):
            for count, worker_counts in plan:
                base[count].append(cases[count].psql())
                if count == args.small and args.only != "large":
                    protocol.append(cases[count].psql(cases[count].protocol))
                for w in worker_counts:
                    runs.setdefault((count, w), []).append(cases[count].dbluigi(w))
                    wall = runs[(count, w)][-1][0]
                    print(
                        f"round {round_no}: {count} models, psql {base[count][-1]:.2f} s, "
                        f"{label(w, {runs[(count, w)][-1][2]})} {wall:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    print(
        f"| case ({args.rounds} rounds) | psql -f (s) | dbluigi (s) | paired ratio | peak memory |"
    )
    print("|---|---|---|---|---|")
    if protocol:
        ratio = statistics.median(a / b for a, b in zip(protocol, base[args.small], strict=True))
        print(
            f"| {args.small:,} models, the statements dbluigi sends, one psql session | "
            f"{statistics.median(base[args.small]):.2f} | {statistics.median(protocol):.2f} | "
            f"{ratio:.2f}x | |"
        )
    for count, worker_counts in plan:
        psql = statistics.median(base[count])
        for w in worker_counts:
            these = runs[(count, w)]
            walls = [r[0] for r in these]
            ratio = statistics.median(a / b for a, b in zip(walls, base[count], strict=True))
            used = {r[2] for r in these}
            print(
                f"| {count:,} models, {label(w, used)} | {psql:.2f} | "
                f"{statistics.median(walls):.2f} | {ratio:.2f}x | {max(r[1] for r in these):.0f} MB |"
            )
    if args.only != "small" and len(args.large) >= 2:
        top, below = args.large[-1], args.large[-2]
        w = args.large_workers
        ours = statistics.median(
            a[0] / b[0] for a, b in zip(runs[(top, w)], runs[(below, w)], strict=True)
        )
        theirs = statistics.median(a / b for a, b in zip(base[top], base[below], strict=True))
        print(
            f"\n{top:,} vs {below:,} models, wall time: dbluigi ({w} workers) {ours:.2f}x, "
            f"psql -f {theirs:.2f}x (median of per-round ratios)"
        )


if __name__ == "__main__":
    main()
