"""This checkout against an earlier revision: fresh and no-op builds, paired.

    python bench/bench_versions.py --base REV [--models 1000] [--rounds 7]

The earlier revision is checked out into a temporary git worktree. Each round runs the
same command with both versions back to back (the order alternates), each on its own
fresh PostgreSQL database and its own copy of the generated layered project
(``genproject.layered``): a fresh build with 4 workers, then a no-op build. The ratio
reported is the median of the per-round ratios (this VM's speed drifts; a ratio taken
within one round compares like with like), with both versions' median times. Python
writes bytecode as it does for users (PYTHONDONTWRITEBYTECODE is unset).
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
from genproject import layered

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("DBLUIGI_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def fresh_database(name: str) -> str:
    admin = psycopg2.connect(PG)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'drop database if exists "{name}"')
        cursor.execute(f'create database "{name}"')
    admin.close()
    return PG.rsplit("/", 1)[0] + f"/{name}"


def build(tree: Path, project: Path, target: str, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-m", "dbluigi.cli", "build", "--project", str(project)]
    started = time.perf_counter()
    subprocess.run(
        [*command, "--target", target, *args],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbluigi-versions-"))
    base = work / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True
    )
    try:
        trees = {"this": ROOT, "base": base}
        times: dict[tuple[str, str], list[float]] = {}
        ratios: dict[str, list[float]] = {"fresh": [], "no-op": []}
        for round_ in range(args.rounds):
            order = ["this", "base"] if round_ % 2 == 0 else ["base", "this"]
            taken: dict[tuple[str, str], float] = {}
            for who in order:
                project = work / f"{who}-{round_}"
                layered(project, args.models)
                target = fresh_database(f"dbluigi_versions_{who}")
                taken[who, "fresh"] = build(trees[who], project, target, "--workers", "4")
                taken[who, "no-op"] = build(trees[who], project, target)
            for key, value in taken.items():
                times.setdefault(key, []).append(value)
            for case in ratios:
                ratios[case].append(taken["this", case] / taken["base", case])
        print(
            f"| case ({args.models} models, {args.rounds} rounds) | base (s) | this (s) | ratio |"
        )
        print("|---|---|---|---|")
        for case, label in (("fresh", "fresh build, 4 workers"), ("no-op", "no-op build")):
            b = statistics.median(times["base", case])
            t = statistics.median(times["this", case])
            print(f"| {label} | {b:.2f} | {t:.2f} | {statistics.median(ratios[case]):.2f}x |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
        admin = psycopg2.connect(PG)
        admin.autocommit = True
        with admin.cursor() as cursor:
            for who in ("this", "base"):
                cursor.execute(f'drop database if exists "dbluigi_versions_{who}"')
        admin.close()


if __name__ == "__main__":
    main()
