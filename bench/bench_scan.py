"""Scan benchmark: load a generated project of N models cold (no cache) and warm.

    python bench/bench_scan.py [--models 1000] [--repeat 5]

Each model is a SELECT with a CTE, two joins and a subquery over 1-3 upstream models,
with a few header lines, like a real "after load" file. Prints medians in seconds.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbluigi.project import load_project


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


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dbluigi-bench-scan-"))
    try:
        generate(root, args.models)
        cold = median_time(lambda: load_project(root, use_cache=False), args.repeat)
        load_project(root)  # fill the cache
        warm = median_time(lambda: load_project(root), args.repeat)
        print("| models | cold scan (s) | warm scan (s) |")
        print("|---|---|---|")
        print(f"| {args.models} | {cold:.3f} | {warm:.3f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
