"""The fixed cost of a command: ``--version``, a no-op build, ``plan`` on a large project.

    python bench/bench_start.py [--rounds 7] [--base REV] [--server] [--models 1000]
                                [--large 10000]

Each case is one whole process (interpreter start, imports, project, state), timed from
outside, ``--rounds`` times; medians are reported with the fastest and slowest run. The
floor is ``python -c pass``, the interpreter alone, timed in the same rounds. With
``--base REV`` the same commands also run from REV (checked out into a temporary git
worktree), strictly alternating with this checkout, and the median of the per-pair
ratios is reported: this VM's speed drifts, and a pair compares like with like.

- ``--version``: ``python -m dbluigi --version``.
- no-op build: the layered project of ``--models`` models (``genproject.layered``),
  built once into a fresh PostgreSQL database, then built again with nothing to do.
  Each revision (this, served, base) has databases of its own: an earlier revision may
  keep another version of the state.
- ``plan`` of ``--large`` models on PostgreSQL, nothing built yet (every model is
  planned to run; the output is the summary), parse cache warm, the project unchanged
  since the last command (its loaded project is read back: ``dbluigi.snapshot``).

Python writes bytecode as it does for users (PYTHONDONTWRITEBYTECODE is unset), and a
first unmeasured run of each command fills the parse cache and compiles the modules.
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

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_versions import PG, fresh_database
from genproject import layered

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], tree: Path | None, extra: dict[str, str] | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {"DBLUIGI_NO_SERVER": "1"})
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    # run from the tree: ``python -m`` puts the working folder first on sys.path
    subprocess.run(command, env=env, cwd=tree or ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def summary(runs: list[float]) -> str:
    return f"{statistics.median(runs):.3f} s ({min(runs):.3f}-{max(runs):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--base", help="an earlier revision to compare with, paired")
    parser.add_argument("--server", action="store_true", help="also through dbluigi server")
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbluigi-start-"))
    trees: dict[str, Path] = {"this": ROOT}
    envs: dict[str, dict[str, str]] = {}
    if args.server:
        folder = work / "server"
        folder.mkdir(mode=0o700)
        trees["served"] = ROOT
        envs["served"] = {"DBLUIGI_SERVER_DIR": str(folder), "PYTHONPATH": str(ROOT)}
        timed([sys.executable, "-m", "dbluigi", "server", "start"], ROOT, envs["served"])
    if args.base:
        trees["base"] = work / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(trees["base"]), args.base],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    try:
        small, large = work / "small", work / "large"
        layered(small, args.models)
        layered(large, args.large)
        time.sleep(2.1)  # the files stand still, as between an edit and a command (a
        # project loaded within two seconds of a change is not kept: dbluigi.snapshot)
        # each revision has its target databases: an earlier one may keep another
        # version of the state, which it would refuse (or this one would migrate)
        databases = {
            who: {case: f"dbluigi_bench_start_{case}_{who}" for case in ("noop", "plan")}
            for who in trees
        }
        target = {
            who: {case: fresh_database(name) for case, name in names.items()}
            for who, names in databases.items()
        }
        dbluigi = [sys.executable, "-m", "dbluigi"]

        def cases_of(who: str) -> dict[str, list[str]]:
            return {
                "python -c pass (the floor)": [sys.executable, "-c", "pass"],
                "dbluigi --version": [*dbluigi, "--version"],
                f"no-op build, {args.models:,} models (PostgreSQL)": [
                    *dbluigi,
                    "build",
                    "--project",
                    str(small),
                    "--target",
                    target[who]["noop"],
                ],
                f"plan, {args.large:,} models (PostgreSQL)": [
                    *dbluigi,
                    "plan",
                    "--project",
                    str(large),
                    "--target",
                    target[who]["plan"],
                ],
            }

        cases = {who: cases_of(who) for who in trees}
        for who, tree in trees.items():  # the no-op's first build
            timed(
                [*dbluigi, "build", "--project", str(small), "--target", target[who]["noop"]],
                tree,
                envs.get(who),
            )
            for command in cases[who].values():  # warm-up: bytecode, caches, the state
                timed(command, tree, envs.get(who))
        print(f"{args.rounds} rounds; machine load {os.getloadavg()[0]:.2f}")
        for case in cases["this"]:
            runs: dict[str, list[float]] = {who: [] for who in trees}
            for round_ in range(args.rounds):
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for who in order:
                    runs[who].append(timed(cases[who][case], trees[who], envs.get(who)))
            line = f"{case}: this {summary(runs['this'])}"
            if "base" in runs:
                ratio = statistics.median(
                    a / b for a, b in zip(runs["this"], runs["base"], strict=True)
                )
                line += f"; base {summary(runs['base'])}; paired ratio {ratio:.2f}x"
            if "served" in runs:
                ratio = statistics.median(
                    a / b for a, b in zip(runs["served"], runs["this"], strict=True)
                )
                line += f"; served {summary(runs['served'])}; served / alone {ratio:.2f}x"
            print(line, flush=True)
    finally:
        if "served" in envs:
            timed([sys.executable, "-m", "dbluigi", "server", "stop"], ROOT, envs["served"])
        admin = psycopg2.connect(PG)
        admin.autocommit = True
        with admin.cursor() as cursor:
            for who in trees:
                for case in ("noop", "plan"):
                    cursor.execute(f'drop database if exists "dbluigi_bench_start_{case}_{who}"')
        admin.close()
        if "base" in trees:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(trees["base"])],
                cwd=ROOT,
                check=False,
            )


if __name__ == "__main__":
    main()
