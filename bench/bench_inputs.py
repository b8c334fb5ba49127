"""What watching input tables costs (issue 15): the no-op build with 100 inputs against an
earlier revision, reading one 10-million-row input's version, and what the change trigger
costs the system that writes an input (PostgreSQL).

    python bench/bench_inputs.py --base REV [--runs 9]

The no-op builds are whole processes timed by ``farm-bench`` in strictly alternating
pairs (this, base, this, base ...), each version on its own fresh PostgreSQL database
and its own copy of the 1,000-model layered project whose first 100 models read input
tables ``raw.input_000`` .. ``raw.input_099`` (10 rows each). Python writes bytecode as
for users (PYTHONDONTWRITEBYTECODE unset).
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
from bench_versions import PG, ROOT, fresh_database
from genproject import layered

INPUTS = 100
BIG_ROWS = 10_000_000


def drop_database(name: str) -> None:
    admin = psycopg2.connect(PG)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'drop database if exists "{name}"')
    admin.close()


def run(url: str, *statements: str) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def dbluigi(tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dbluigi.cli", *args]


def env_for(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    return env


def noop_pair(base: Path, work: Path, runs: int) -> str:
    """farm-bench's report of this version's no-op build against the base's."""
    commands = []
    for who, tree in (("this", ROOT), ("base", base)):
        project = work / f"noop-{who}"
        layered(project, 1000, inputs=INPUTS)
        url = fresh_database(f"dbluigi_inputs_{who}")
        run(
            url,
            "create schema raw",
            *(
                f"create table raw.input_{i:03d} as select g as id from generate_series(1, 10) g"
                for i in range(INPUTS)
            ),
        )
        args = ["build", "--project", str(project), "--target", url]
        subprocess.run(
            dbluigi(tree, *args, "--workers", "4"),
            env=env_for(tree),
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=tree,
        )
        commands.append(
            f"sh -c 'cd {tree} && PYTHONPATH={tree} exec {sys.executable} -m dbluigi.cli "
            + " ".join(args)
            + " >/dev/null 2>&1'"
        )
    env = env_for(ROOT)
    result = subprocess.run(
        [
            "farm-bench",
            "-n",
            str(runs),
            "--timeout",
            "600",
            "--vs",
            commands[1],
            "--",
            "sh",
            "-c",
            commands[0][7:-1],
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


def median_time(action, repeat: int = 7) -> float:
    taken = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        taken.append(time.perf_counter() - started)
    return statistics.median(taken)


def big_input(work: Path) -> list[str]:
    """Reading the version of one 10M-row input, on PostgreSQL and on DuckDB; and the
    trigger's cost to whoever writes an input on PostgreSQL."""
    sys.path.insert(0, str(ROOT))
    from dbluigi.state import StateStore
    from dbluigi.targets import open_target

    lines = []
    url = fresh_database("dbluigi_inputs_big")
    try:
        run(
            url,
            "create schema raw",
            f"create table raw.big as select g as id, 'v' || g as v, now() as ts "
            f"from generate_series(1, {BIG_ROWS}) g",
        )
        session = open_target(url, project_dir=work).connect()
        StateStore(session).ensure()
        session.relation_versions(["raw.big"], track=True)  # installs the trigger
        run(url, "insert into raw.big values (0, 'x', now())")
        pg = median_time(lambda: session.relation_versions(["raw.big"], track=True))
        lines.append(f"| PostgreSQL: version of a {BIG_ROWS:,}-row input | {pg * 1000:.1f} ms |")
        inputs = [f"raw.input_{i:03d}" for i in range(INPUTS)]
        run(url, *(f"create table {t} (id int)" for t in inputs))
        session.relation_versions(inputs, track=True)
        many = median_time(lambda: session.relation_versions(inputs, track=True))
        lines.append(
            f"| PostgreSQL: versions of {INPUTS} inputs, one query | {many * 1000:.1f} ms |"
        )
        session.close()
        run(
            url,
            "create table raw.plain (id int, v text)",
            "create table raw.tracked (id int, v text)",
        )
        session = open_target(url, project_dir=work).connect()
        session.relation_versions(["raw.tracked"], track=True)
        session.close()
        for label, sql in (
            (
                "1,000,000 rows in one INSERT",
                "insert into raw.{t} select g, 'v' from generate_series(1, 1000000) g",
            ),
        ):
            times = {}
            for table in ("plain", "tracked"):
                connection = psycopg2.connect(url)
                connection.autocommit = True
                cursor = connection.cursor()
                statement = sql.format(t=table)
                times[table] = median_time(lambda c=cursor, q=statement: c.execute(q), repeat=5)
                connection.close()
            lines.append(
                f"| writer: {label}, without / with the trigger | {times['plain']:.3f} s / {times['tracked']:.3f} s |"
            )
        times = {}
        for table in ("plain", "tracked"):
            connection = psycopg2.connect(url)
            connection.autocommit = True
            cursor = connection.cursor()

            def singles(c=cursor, t=table) -> None:  # type: ignore[no-untyped-def]
                for i in range(2000):
                    c.execute(f"insert into raw.{t} values (%s, 'v')", (i,))

            times[table] = median_time(singles, repeat=5) / 2000
            connection.close()
        lines.append(
            f"| writer: one-row INSERT, autocommit, without / with the trigger | "
            f"{times['plain'] * 1e6:.0f} us / {times['tracked'] * 1e6:.0f} us |"
        )
    finally:
        drop_database("dbluigi_inputs_big")
    path = work / "big.duckdb"
    import duckdb

    connection = duckdb.connect(str(path))
    connection.execute("create schema raw")
    connection.execute(
        f"create table raw.big as select range as id, 'v' || range as v, now() as ts "
        f"from range({BIG_ROWS})"
    )
    connection.close()
    session = open_target(f"duckdb:///{path}", project_dir=work).connect()
    dd = median_time(lambda: session.relation_versions(["raw.big"], track=True))
    session.close()
    lines.append(
        f"| DuckDB: version of a {BIG_ROWS:,}-row input (read only after another process wrote the file) | {dd * 1000:.1f} ms |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--only", choices=["noop", "big"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbluigi-inputs-"))
    base = work / "base"
    if args.only != "big":
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True
        )
    try:
        if args.only != "big":
            print(noop_pair(base, work, args.runs))
        if args.only != "noop":
            print("| case | median |\n|---|---|")
            print("\n".join(big_input(work)))
    finally:
        if args.only != "big":
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
            )
        for who in ("this", "base"):
            drop_database(f"dbluigi_inputs_{who}")


if __name__ == "__main__":
    main()
