"""Selectors: names, +, tags, paths, sources, unions, exclusions and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbluigi.errors import SelectorError
from dbluigi.project import Project, load_project
from dbluigi.selectors import select

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parent.parent / "project"


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(EXAMPLE, use_cache=False)


def test_all_by_default_in_run_order(project: Project) -> None:
    assert select(project) == project.order


def test_name_and_qualified_name(project: Project) -> None:
    assert select(project, ["agency_reporting"]) == ("reporting.agency_reporting",)
    assert select(project, ["reporting.agency_reporting"]) == ("reporting.agency_reporting",)


def test_downstream_upstream_and_both(project: Project) -> None:
    assert select(project, ["agency_reporting+"]) == (
        "reporting.agency_reporting",
        "api.cde_agencies",
        "api.offense_annual",
    )
    up = select(project, ["+agency_reporting"])
    assert set(up) == {
        "reporting.agency_reporting",
        "staging.agencies",
        "raw.offense_monthly",
        "raw.agencies",
        "raw.agency_types",
        "raw.cities",
        "raw.states",
    }
    assert set(select(project, ["+agency_reporting+"])) == set(up) | {
        "api.cde_agencies",
        "api.offense_annual",
    }


def test_tag_path_source_union_and_exclude(project: Project) -> None:
    assert set(select(project, ["tag:api"])) == {
        "api.cde_agencies",
        "api.offense_annual",
        "api.offender_age_histogram",
    }
    assert set(select(project, ["path:staging/"])) == {"staging.agencies"}
    assert set(select(project, ["path:api/", "staging.agencies"])) == {
        "staging.agencies",
        "api.cde_agencies",
        "api.offense_annual",
        "api.offender_age_histogram",
    }
    assert select(project, ["agency_reporting+"], exclude=["offense_annual"]) == (
        "reporting.agency_reporting",
        "api.cde_agencies",
    )


def test_source_selector(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("select * from raw.events")
    (tmp_path / "b.sql").write_text("select * from main.a")
    project = load_project(tmp_path, use_cache=False)
    assert select(project, ["source:raw.events+"]) == ("main.a", "main.b")
    assert select(project, ["source:events+"]) == ("main.a", "main.b")
    with pytest.raises(SelectorError, match="matches no source"):
        select(project, ["source:raw.nope"])


def test_unknown_selector_lists_closest_matches(project: Project) -> None:
    with pytest.raises(SelectorError) as err:
        select(project, ["agency_reportin"])
    assert "matches no model" in str(err.value)
    assert "agency_reporting" in str(err.value)
    with pytest.raises(SelectorError, match="no model has tag 'apx'") as err:
        select(project, ["tag:apx"])
    assert "api" in str(err.value)
    with pytest.raises(SelectorError, match="no model file under"):
        select(project, ["path:nowhere/"])


def test_ambiguous_bare_name(tmp_path: Path) -> None:
    for folder in ("staging", "api"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "agencies.sql").write_text("select 1 as id")
    project = load_project(tmp_path, use_cache=False)
    with pytest.raises(
        SelectorError, match=r"ambiguous: it matches api.agencies, staging.agencies"
    ):
        select(project, ["agencies"])
