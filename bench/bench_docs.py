"""Docs site benchmark: ``dbluigi docs`` on the 1,000-model layered project, and how long
headless Chromium takes to render it.

    python bench/bench_docs.py [--models 1000] [--repeat 5] [--no-build]

The project (``bench/genproject.py``'s layered one) is built once into its default
DuckDB target, so the site shows every model's last build and the run report. Medians of
``--repeat`` runs, in seconds:

- ``dbluigi docs`` as a user runs it (whole process: load, column lineage of every
  model, the target's record, writing the files);
- the site in Chromium (Debian's, driven by Playwright, as the browser tests do): from
  navigation start to the page's script having drawn the graph (``performance.now()``
  when ``body[data-ready]`` is set), then opening a model page from the search box.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from genproject import layered

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def render_times(index: Path, repeat: int, model: str) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("DBLUIGI_CHROMIUM") or shutil.which("chromium") or "chromium"
    graph: list[float] = []
    page_open: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(index.as_uri())
            page.wait_for_selector("body[data-ready='1']")
            graph.append(page.evaluate("performance.now()") / 1000)
            start = time.perf_counter()
            page.fill("#search", model)
            page.keyboard.press("Enter")
            page.wait_for_selector(f"#model-page[data-id='{model}']")
            page_open.append(time.perf_counter() - start)
            context.close()
        browser.close()
    return graph, page_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-build", action="store_true", help="structure only")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="dbluigi-bench-docs-") as tmp:
        root = Path(tmp)
        layered(root, args.models)
        dbluigi = [sys.executable, "-m", "dbluigi"]
        if not args.no_build:
            subprocess.run([*dbluigi, "build"], cwd=root, check=True, stdout=subprocess.DEVNULL)
        docs = [timed([*dbluigi, "docs"], root) for _ in range(args.repeat)]
        index = root / ".dbluigi" / "docs" / "index.html"
        size = sum(f.stat().st_size for f in index.parent.iterdir())
        last = f"bench.m{args.models - 1:05d}"
        graph, page_open = render_times(index, args.repeat, last)
    print(f"| case ({args.models} models{', not built' if args.no_build else ''}) | median s |")
    print("|---|---|")
    print(f"| `dbluigi docs`, whole command | {statistics.median(docs):.2f} |")
    print(f"| Chromium: navigation start to the graph drawn | {statistics.median(graph):.2f} |")
    print(f"| Chromium: search, Enter, model page shown | {statistics.median(page_open):.3f} |")
    print(f"\nsite size: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
