"""Scan benchmark: a generated project of N models scanned cold (no parse cache), warm
(the parse cache filled, the project changed since the last command) and unchanged.

    python bench/bench_scan.py [--models 1000] [--repeat 5] [--base REV]

Each model is a SELECT with a CTE, two joins and a subquery over 1-3 upstream models,
with a few header lines, like a real "after load" file. Two measures, medians of
``--repeat`` runs, in seconds:

- the command as a user runs it, whole process: ``dbluigi lineage --format json``, *cold*
  with the project's caches (``.dbluigi/cache/``) deleted before each run (every file
  parsed by sqlglot), *warm* with the parse cache filled but the loaded project kept by
  the last command deleted (``project-*.pickle``: as after an edit, every file is read
  and assembled again), *unchanged* with both (the kept project is read back). With
  ``--base REV`` the same commands run with REV too (checked out into a temporary git
  worktree), in alternating pairs (this, base, base, this, ...), and the ratio is the
  median of the per-pair ratios;
- ``load_project`` in this process, cold (the cache off), warm and unchanged.

The generated files stand still for two seconds before the first run: a project loaded
within two seconds of a file's change is not kept (``dbluigi.snapshot``).

Python writes bytecode as it does for users (PYTHONDONTWRITEBYTECODE is unset).
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbluigi.project import load_project

ROOT = Path(__file__).resolve().parent.parent


def generate(root: Path, count: int) -> None:
    rng = random.Random(42)
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "base.csv").write_text("id,value\n1,10\n2,20\n")
    for i in range(count):
        layer = "staging" if i < count // 3 else ("reporting" if i < 2 * count // 3 else "api")
        folder = root / layer
        folder.mkdir(exist_ok=True)
        ups = sorted({rng.randrange(i) for _ in range(rng.randint(1, 3))}) if i else []
        names = [
            f"{'staging' if u < count // 3 else ('reporting' if u < 2 * count // 3 else 'api')}.m{u}"
            for u in ups
        ]
        source = names[0] if names else "raw.base"
        joins = "\n".join(
            f"left join {n} as j{k} on j{k}.id = b.id" for k, n in enumerate(names[1:])
        )
        (folder / f"m{i}.sql").write_text(
            f"""-- description: model {i}
-- tags: layer_{layer}
-- check: rows > 0
-- check: unique(id)
with base as (
    select id, value from {source}
    where id in (select id from {source} where value is not null)
)
select b.id, b.value
from base as b
{joins}
"""
        )


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


CASES = ("cold", "warm", "unchanged")


def forget(project: Path, case: str) -> None:
    """Delete what ``case`` runs without: every cache (cold), the kept project (warm)."""
    cache = project / ".dbluigi" / "cache"
    if case == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    elif case == "warm":
        for kept in cache.glob("project-*.pickle"):
            kept.unlink()


def lineage(tree: Path, project: Path, *, case: str) -> float:
    """One whole ``dbluigi lineage --format json`` with ``tree``'s dbluigi, in seconds."""
    forget(project, case)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    command = [sys.executable, "-m", "dbluigi", "lineage", "--format", "json"]
    started = time.perf_counter()
    subprocess.run(
        [*command, "--project", str(project)],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--base", help="a revision to compare with, whole processes in pairs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbluigi-bench-scan-"))
    root = work / "project"
    trees = {"this": ROOT}
    try:
        generate(root, args.models)
        time.sleep(2.1)  # the files stand still, as between an edit and a command
        if args.base:
            trees["base"] = work / "base"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(trees["base"]), args.base],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        for tree in trees.values():  # bytecode written, and the first run's page cache
            lineage(tree, root, case="unchanged")
        times: dict[tuple[str, str], list[float]] = {}
        for case in CASES:
            for run in range(args.repeat):
                order = list(trees) if run % 2 == 0 else list(reversed(trees))
                for who in order:
                    taken = lineage(trees[who], root, case=case)
                    times.setdefault((who, case), []).append(taken)
        print(f"`dbluigi lineage --format json`, whole process, median of {args.repeat}:\n")
        if args.base:
            print("| models | case | base (s) | this (s) | paired ratio (min-max) |")
            print("|---|---|---|---|---|")
            for case in CASES:
                this, base = times["this", case], times["base", case]
                ratios = [t / b for t, b in zip(this, base, strict=True)]
                print(
                    f"| {args.models} | {case} scan | {statistics.median(base):.3f} | "
                    f"{statistics.median(this):.3f} | {statistics.median(ratios):.2f}x "
                    f"({min(ratios):.2f}-{max(ratios):.2f}) |"
                )
        else:
            print("| models | cold scan (s) | warm scan (s) | unchanged (s) |")
            print("|---|---|---|---|")
            cold, warm, same = (statistics.median(times["this", c]) for c in CASES)
            print(f"| {args.models} | {cold:.3f} | {warm:.3f} | {same:.3f} |")

        def load(case: str) -> None:
            forget(root, case)
            load_project(root, use_cache=case != "cold")

        loads = [median_time(functools.partial(load, case), args.repeat) for case in CASES]
        print(f"\n`load_project` in this process, median of {args.repeat}:\n")
        print("| models | cold load (s) | warm load (s) | unchanged (s) |")
        print("|---|---|---|---|")
        print(f"| {args.models} | {' | '.join(f'{t:.3f}' for t in loads)} |")
    finally:
        if "base" in trees:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(trees["base"])],
                cwd=ROOT,
                check=False,
            )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
