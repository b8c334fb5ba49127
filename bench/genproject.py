"""Deterministic generated projects for the benchmarks."""

from __future__ import annotations

import random
from pathlib import Path

SCHEMA = "bench"


def layered(
    root: Path, count: int, *, layers: int = 10, seed: int = 7, inputs: int = 0
) -> list[tuple[str, str]]:
    """``count`` trivial models in ``layers`` layers, each reading 1-3 models of the layer
    before; returns (name, sql) in a valid build order. Writes ``root/bench/<name>.sql``.
    With ``inputs``, the first ``inputs`` models of the first layer read input table
    ``raw.input_<n>`` (which the caller creates in the target)."""
    rng = random.Random(seed)
    folder = root / SCHEMA
    folder.mkdir(parents=True, exist_ok=True)
    (root / "dbluigi.toml").write_text('[project]\nname = "bench"\n')
    per_layer = max(1, count // layers)
    models: list[tuple[str, str]] = []
    previous: list[str] = []
    for i in range(count):
        layer = min(i // per_layer, layers - 1)
        name = f"m{i:05d}"
        if (layer == 0 or not previous) and i < inputs:
            sql = f"select {i} as id, 'v{i}' as v from raw.input_{i:03d} limit 1"
        elif layer == 0 or not previous:
            sql = f"select {i} as id, 'v{i}' as v"
        else:
            ups = sorted(rng.sample(previous, k=min(len(previous), rng.randint(1, 3))))
            first = ups[0]
            joins = "".join(
                f"\nleft join {SCHEMA}.{u} as u{k} on u{k}.id = a.id" for k, u in enumerate(ups[1:])
            )
            sql = f"select a.id, a.v from {SCHEMA}.{first} as a{joins}"
        (folder / f"{name}.sql").write_text(sql + "\n")
        models.append((name, sql))
        if (i + 1) % per_layer == 0 and layer < layers - 1:
            previous = [n for n, _ in models[-per_layer:]]
    return models


def wide(root: Path, width: int, rows: int) -> list[tuple[str, str]]:
    """One base model and ``width`` independent CPU-bound readers (for --workers)."""
    folder = root / SCHEMA
    folder.mkdir(parents=True, exist_ok=True)
    (root / "dbluigi.toml").write_text('[project]\nname = "bench_wide"\n')
    models = [("base", "select 1 as id")]
    for i in range(width):
        sql = (
            f"select b.id, count(*) as n, sum(g * {i + 1}) as s\n"
            f"from {SCHEMA}.base as b cross join generate_series(1, {rows}) as g\ngroup by b.id"
        )
        models.append((f"w{i:03d}", sql))
    for name, sql in models:
        (folder / f"{name}.sql").write_text(sql + "\n")
    return models
