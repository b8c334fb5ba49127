"""The docs site in a real browser: headless Chromium driven by Playwright.

What a user sees: the graph has one node per model, search and click open a model's page
with its SQL and last build, a column's upstream link leads to the right model and
column, the run report lists a failed check's violating rows, no console error, and it
all works offline from ``file://``. The run also takes the README's screenshots
(``docs/graph.png``, ``docs/model.png``), so they show the site as it is.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it), or ``DBLUIGI_CHROMIUM``;
without one these tests fail under ``CI=true`` and are skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbluigi.project import load_project
from tests.buildkit import ROOT, cli, copy_example
from tests.test_docs import built_with_a_failure

SCREENSHOTS = ROOT / "docs"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    found = os.environ.get("DBLUIGI_CHROMIUM") or shutil.which("chromium")
    if found is None:
        reason = "Chromium is not installed (apt-get install chromium, or set DBLUIGI_CHROMIUM)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Visit:
    """One page in a fresh offline browser context, with what it logged and fetched."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.context.set_offline(True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']")

    def close(self) -> None:
        self.context.close()
        assert self.errors == []
        assert [u for u in self.requests if not u.startswith(("file://", "data:"))] == []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project's site after a good build and a build whose check failed."""
    tmp = tmp_path_factory.mktemp("docs")
    target = "duckdb"  # the default: .dbluigi/target.duckdb in the (copied) project
    project = built_with_a_failure(tmp, target)
    code, output = cli("docs", project=project, target=target)
    assert code == 0, output
    return project / ".dbluigi" / "docs" / "index.html"


@pytest.fixture
def visit(browser: Any, site: Path) -> Iterator[Visit]:
    opened = Visit(browser, site.as_uri())
    yield opened
    opened.close()


def test_the_graph_has_one_node_per_model(visit: Visit) -> None:
    page = visit.page
    ids = page.eval_on_selector_all(".node", "els => els.map(e => e.dataset.id)")
    assert len(ids) == 12 == len(set(ids))
    assert "reporting.agency_reporting" in ids and "raw.agencies" in ids
    assert page.locator("#state-note").count() == 0  # the target's record was read
    page.fill("#search", "tag:api")
    assert page.locator(".node.match").count() == 3
    page.fill("#search", "")
    page.select_option("#colour", "status")
    assert "failed" in page.inner_text("#legend") and "skipped" in page.inner_text("#legend")
    fill = "id => document.querySelector(`.node[data-id='${id}'] rect`).getAttribute('fill')"
    assert page.evaluate(fill, "staging.agencies") != page.evaluate(fill, "raw.agencies")
    page.click(".node[data-id='staging.agencies']")
    page.screenshot(path=str(SCREENSHOTS / "graph.png"))


def test_search_then_click_opens_the_model_page(visit: Visit) -> None:
    page = visit.page
    page.fill("#search", "agency_rep")
    results = page.locator("#results li[data-id]")
    assert results.all_inner_texts() == ["reporting.agency_reporting\ntable"]
    results.first.click()
    assert page.inner_text("#side h3") == "reporting.agency_reporting"
    # upstream and downstream of the selection are marked, the rest dimmed
    graph = load_project(ROOT / "project", use_cache=False).graph
    marked = "els => els.map(e => e.dataset.id)"
    up = graph.upstream(["reporting.agency_reporting"])
    assert set(page.eval_on_selector_all(".node.up", marked)) == up
    assert "staging.agencies" in up and "raw.states" in up
    assert set(page.eval_on_selector_all(".node.down", marked)) == {
        "api.cde_agencies",
        "api.offense_annual",
    }
    assert page.locator(".node.dim").count() == 12 - len(up) - 3
    page.click("#open-page")
    page.wait_for_selector("#model-page[data-id='reporting.agency_reporting']")
    assert "from raw.offense_monthly as m" in page.inner_text("#sql")
    builds = page.locator("#builds tbody tr")
    assert builds.count() == 2
    assert "skipped" in builds.nth(0).inner_text() and "success" in builds.nth(1).inner_text()
    assert "passed" in page.inner_text("#checks")
    page.screenshot(path=str(SCREENSHOTS / "model.png"), full_page=False)


def test_clicking_a_node_selects_it_and_double_click_opens_it(visit: Visit) -> None:
    page = visit.page
    page.click(".node[data-id='staging.agencies']")
    assert page.inner_text("#side h3") == "staging.agencies"
    assert "failed" in page.inner_text("#side")
    page.dblclick(".node[data-id='staging.agencies']")
    page.wait_for_selector("#model-page[data-id='staging.agencies']")
    assert "check" in page.inner_text("#builds")


def test_a_column_links_to_the_column_it_comes_from(visit: Visit) -> None:
    page = visit.page
    page.goto(page.url.split("#")[0] + "#/model/reporting.agency_reporting")
    page.wait_for_selector("#model-page[data-id='reporting.agency_reporting']")
    row = page.locator("#columns tr[data-column='state_abbr']")
    assert "VARCHAR" in row.inner_text()
    row.locator("a", has_text="staging.agencies.state_abbr").click()
    page.wait_for_selector("#model-page[data-id='staging.agencies']")
    assert page.url.endswith("#/model/staging.agencies/state_abbr")
    assert page.locator("#columns tr.hl").get_attribute("data-column") == "state_abbr"
    # and on, to the seed it comes from
    page.locator("#columns tr.hl a", has_text="raw.states.state_abbr").click()
    page.wait_for_selector("#model-page[data-id='raw.states']")
    assert page.locator("#columns tr.hl").get_attribute("data-column") == "state_abbr"


def test_the_run_report_lists_the_violating_rows(visit: Visit) -> None:
    page = visit.page
    page.click("header nav a:has-text('Runs')")
    page.wait_for_selector("#runs")
    latest = page.locator(".run").first
    failure = latest.locator(".failure")
    assert failure.count() == 1
    text = failure.inner_text()
    assert "staging.agencies" in text and "first violating rows" in text and "TX" in text
    # the edit reran staging.agencies (failed) and skipped its four readers: a bar each
    assert latest.locator(".timeline .bar").count() == 5
    assert latest.locator(".timeline .bar.failed").count() == 1
    assert "5 task attempts" in latest.inner_text() and "1 failed" in latest.inner_text()


def test_a_1000_model_project_renders(browser: Any, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from genproject import layered
    finally:
        sys.path.remove(str(ROOT / "bench"))
    layered(tmp_path, 1000)
    target = f"duckdb:///{tmp_path / 'never.duckdb'}"
    code, output = cli("docs", project=tmp_path, target=target)
    assert code == 0, output
    opened = Visit(browser, (tmp_path / ".dbluigi" / "docs" / "index.html").as_uri())
    page = opened.page
    assert page.locator(".node").count() == 1000
    assert "nothing built yet" in page.inner_text("#state-note")
    page.fill("#search", "m00999")
    page.keyboard.press("Enter")
    page.wait_for_selector("#model-page[data-id='bench.m00999']")
    assert "select a.id, a.v from bench." in page.inner_text("#sql")
    opened.close()


def test_lineage_html_renders_alone(browser: Any, tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    code, html = cli("lineage", "--format", "html", project=project, target="duckdb")
    assert code == 0
    (tmp_path / "lineage.html").write_text(html)
    opened = Visit(browser, (tmp_path / "lineage.html").as_uri())
    page = opened.page
    assert page.locator(".node").count() == 12
    assert page.locator("header nav a:has-text('Runs')").count() == 0
    page.click(".node[data-id='api.offense_annual']")
    up = load_project(project, use_cache=False).graph.upstream(["api.offense_annual"])
    assert page.locator(".node.up").count() == len(up) > 3
    opened.close()
