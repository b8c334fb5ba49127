"""Selectors: every form dbt writes (names, schemas, wildcards, methods, graph operators,
unions, intersections, stale, result:), exclusions and their errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dbluigi.errors import SelectorError
from dbluigi.project import Project, load_project
from dbluigi.selectors import TargetState, last_results, select
from dbluigi.state import TaskRecord
from tests.helpers import write_project

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
    assert select(project, ["source:raw.*+1"]) == ("main.a",)
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


# dbt's forms, on a small project built here:
#   raw.events -> staging.agencies (tag api) -> api.cde_agencies (tag api) -> api.summary
#   raw.people -> staging.people -> staging.v_people (view) ----^
#   raw.events -> reporting.raw (a model named like the schema raw)
@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = write_project(
        tmp_path_factory.mktemp("forms"),
        {
            "raw/events.csv": "id,agency\n1,a\n",
            "raw/people.csv": "id,name\n1,x\n",
            "staging/agencies.sql": "-- tags: api\nselect distinct agency from raw.events",
            "staging/people.sql": "select * from raw.people",
            "staging/v_people.sql": "-- kind: view\nselect * from staging.people",
            "api/cde_agencies.sql": """
                -- tags: api, api_public
                select a.agency, p.name from staging.agencies as a cross join staging.v_people as p
                """,
            "api/summary.sql": "-- tags: nightly\nselect count(*) as n from api.cde_agencies",
            "reporting/raw.sql": "select count(*) as n from raw.events",
        },
    )
    return load_project(root, use_cache=False)


def chosen(project: Project, *selectors: str, **kwargs: Any) -> set[str]:
    return set(select(project, selectors, **kwargs))


def test_depth_upstream_and_downstream(forms: Project) -> None:
    assert chosen(forms, "1+cde_agencies") == {
        "api.cde_agencies",
        "staging.agencies",
        "staging.v_people",
    }
    assert chosen(forms, "2+cde_agencies") == chosen(forms, "1+cde_agencies") | {
        "raw.events",
        "staging.people",
    }
    assert chosen(forms, "+cde_agencies") == chosen(forms, "3+cde_agencies")
    assert chosen(forms, "staging.people+1") == {"staging.people", "staging.v_people"}
    assert chosen(forms, "staging.people+2") == {
        "staging.people",
        "staging.v_people",
        "api.cde_agencies",
    }
    assert chosen(forms, "staging.people+") == chosen(forms, "staging.people+2") | {"api.summary"}
    assert chosen(forms, "1+v_people+1") == {
        "staging.people",
        "staging.v_people",
        "api.cde_agencies",
    }
    assert chosen(forms, "staging.people+0") == {"staging.people"}


def test_at_takes_descendants_and_their_ancestors(forms: Project) -> None:
    assert chosen(forms, "@v_people") == {
        "staging.v_people",
        "api.cde_agencies",
        "api.summary",
        "staging.people",
        "raw.people",
        "staging.agencies",
        "raw.events",
    }  # not reporting.raw: a sibling, neither ancestor nor descendant
    with pytest.raises(SelectorError, match="@ and a leading \\+ do not go together"):
        select(forms, ["@+v_people"])


def test_kind(forms: Project) -> None:
    assert chosen(forms, "kind:view") == {"staging.v_people"}
    assert chosen(forms, "kind:seed") == {"raw.events", "raw.people"}
    assert chosen(forms, "kind:view+") == {"staging.v_people", "api.cde_agencies", "api.summary"}
    with pytest.raises(SelectorError, match="'vew' is not a kind") as err:
        select(forms, ["kind:vew"])
    assert "closest matches: view" in str(err.value)
    with pytest.raises(SelectorError, match="no model is of kind 'dump'") as err:
        select(forms, ["kind:dump"])
    assert "seed, table, view" in str(err.value)


def test_wildcards_on_relation_and_bare_names(forms: Project) -> None:
    assert chosen(forms, "raw.*") == {"raw.events", "raw.people"}
    assert chosen(forms, "*agencies") == {"staging.agencies", "api.cde_agencies"}
    assert chosen(forms, "staging.agenc?es") == {"staging.agencies"}
    assert chosen(forms, "v_*") == {"staging.v_people"}  # no dot: bare names too
    assert chosen(forms, "staging.[av]*") == {"staging.agencies", "staging.v_people"}
    assert chosen(forms, "tag:api_*") == {"api.cde_agencies"}
    assert chosen(forms, "path:api/*.sql") == {"api.cde_agencies", "api.summary"}
    with pytest.raises(SelectorError, match=r"selector 'stagin.\*' matches no model"):
        select(forms, ["stagin.*"])


def test_bare_schema_and_a_model_of_that_name(forms: Project) -> None:
    assert chosen(forms, "staging") == {"staging.agencies", "staging.people", "staging.v_people"}
    assert chosen(forms, "api+") == {"api.cde_agencies", "api.summary"}
    # a model name wins over a schema name: reporting.raw, not the seeds of schema raw
    assert chosen(forms, "raw") == {"reporting.raw"}
    assert chosen(forms, "raw.*") == {"raw.events", "raw.people"}
    with pytest.raises(SelectorError, match="'stagin' matches no model") as err:
        select(forms, ["stagin"])
    assert "staging" in str(err.value)


def test_graph_operators_on_every_method(forms: Project) -> None:
    assert chosen(forms, "+tag:nightly") == chosen(forms, "+summary")
    assert chosen(forms, "path:staging/people.sql+1") == {"staging.people", "staging.v_people"}
    assert chosen(forms, "2+api.*") == chosen(forms, "2+cde_agencies") | {"api.summary"}
    assert chosen(forms, "raw.*+1") == {
        "raw.events",
        "raw.people",
        "staging.agencies",
        "staging.people",
        "reporting.raw",
    }


def test_unions_by_space_and_by_argument(forms: Project) -> None:
    assert chosen(forms, "summary v_people") == {"api.summary", "staging.v_people"}
    assert chosen(forms, "summary", "v_people") == chosen(forms, "summary v_people")
    assert chosen(forms, "summary", exclude=["api.summary reporting.raw"]) == set()


def test_intersections(forms: Project) -> None:
    assert chosen(forms, "tag:api") == {"staging.agencies", "api.cde_agencies"}
    assert chosen(forms, "tag:api,path:api/") == {"api.cde_agencies"}
    assert chosen(forms, "+summary,staging") == {
        "staging.agencies",
        "staging.people",
        "staging.v_people",
    }
    assert chosen(forms, "+summary,kind:seed", "reporting.raw") == {
        "raw.events",
        "raw.people",
        "reporting.raw",
    }
    assert chosen(forms, "tag:nightly,staging") == set()  # nothing in common is no error
    with pytest.raises(SelectorError, match="selector 'path:nowhere/' \\(in 'tag:api,path"):
        select(forms, ["tag:api,path:nowhere/"])
    with pytest.raises(SelectorError, match="empty selector '' \\(in 'tag:api,'\\)"):
        select(forms, ["tag:api,"])


def test_unknown_method_lists_the_methods(forms: Project) -> None:
    with pytest.raises(SelectorError, match="unknown method 'foo'") as err:
        select(forms, ["foo:x"])
    assert "tag:, path:, source:, kind:, result:" in str(err.value)
    with pytest.raises(SelectorError, match="unknown method 'tg'") as err:
        select(forms, ["tg:api+"])
    assert "did you mean tag:?" in str(err.value)
    for blank in ("", "+", "@", " "):
        with pytest.raises(SelectorError, match="empty selector"):
            select(forms, [blank])


def test_whole_lineage_names_the_selector_typed(forms: Project) -> None:
    assert chosen(forms, "v_people", whole_lineage=True) == chosen(forms, "+v_people+")
    assert chosen(forms, "v_people+", whole_lineage=True) == chosen(forms, "v_people+")
    assert chosen(forms, "tag:api,path:api/", whole_lineage=True) == chosen(forms, "+cde_agencies+")
    with pytest.raises(SelectorError) as err:
        select(forms, ["v_peple"], whole_lineage=True)
    assert str(err.value).startswith("selector 'v_peple' matches no model")


def _state(stale: Sequence[str] = (), runs: Sequence[TaskRecord] | None = ()) -> TargetState:
    return TargetState(stale=lambda: stale, last_run=lambda: runs)


def _unread() -> TargetState:
    def fail() -> Any:
        raise AssertionError("the target's state was read")

    return TargetState(stale=fail, last_run=fail)


def test_stale_reads_the_target_only_when_used(forms: Project) -> None:
    assert chosen(forms, "tag:api", state=_unread()) == {"staging.agencies", "api.cde_agencies"}
    calls: list[str] = []

    def stale() -> Sequence[str]:
        calls.append("stale")
        return ("staging.people",)

    state = TargetState(stale=stale, last_run=lambda: None)
    assert chosen(forms, "stale+", "stale", state=state) == {
        "staging.people",
        "staging.v_people",
        "api.cde_agencies",
        "api.summary",
    }
    assert calls == ["stale"]  # once per selection
    assert chosen(forms, "stale,kind:view", state=_state(["staging.v_people"])) == {
        "staging.v_people"
    }
    assert chosen(forms, exclude=["stale"], state=_state(forms.order[1:])) == {forms.order[0]}
    assert chosen(forms, "stale", state=_state()) == set()  # nothing stale is no error
    with pytest.raises(SelectorError, match="reads the target's state"):
        select(forms, ["stale"])


def _attempt(model: str, status: str, cls: str | None = None, **kw: Any) -> TaskRecord:
    started = kw.pop("started", datetime(2026, 1, 1))
    return TaskRecord("r1", model, status, started, failure_class=cls, **kw)  # type: ignore[arg-type]


def test_result_from_the_last_run(forms: Project) -> None:
    runs = [
        _attempt("staging.agencies", "failed", "runtime"),
        _attempt("api.cde_agencies", "skipped", "upstream"),
        _attempt("api.summary", "skipped", "upstream"),
        _attempt("staging.people", "failed", "check"),
        _attempt("staging.v_people", "failed", "runtime", attempt=1),
        _attempt("staging.v_people", "success", attempt=2),
        _attempt("raw.events", "success"),
        _attempt("gone.model", "failed", "runtime"),  # no longer in the project
    ]
    state = _state(runs=runs)
    assert chosen(forms, "result:error", state=state) == {"staging.agencies"}
    assert chosen(forms, "result:fail", state=state) == {"staging.people"}
    assert chosen(forms, "result:skipped", state=state) == {"api.cde_agencies", "api.summary"}
    assert chosen(forms, "result:success", state=state) == {"raw.events", "staging.v_people"}
    assert chosen(forms, "result:error+", state=state) == {
        "staging.agencies",
        "api.cde_agencies",
        "api.summary",
    }
    assert chosen(forms, "result:fail", "result:error", state=state) == {
        "staging.agencies",
        "staging.people",
    }
    with pytest.raises(SelectorError, match="'eror' is not a result") as err:
        select(forms, ["result:eror"], state=state)
    assert "closest matches: error" in str(err.value)
    with pytest.raises(SelectorError, match="no run recorded yet"):
        select(forms, ["result:error"], state=_state(runs=None))


def test_a_partitioned_model_ends_as_its_worst_value() -> None:
    day = datetime(2026, 1, 1)
    records = [
        _attempt("s.p", "success", partition="2020"),
        _attempt("s.p", "failed", "check", partition="2021", started=day),
        _attempt("s.p", "success", partition="2021", attempt=2, started=day),
        _attempt("s.p", "skipped", "upstream", partition="2022"),
        _attempt("s.q", "failed", "check", partition="1"),
        _attempt("s.q", "failed", "timeout", partition="2"),
    ]
    assert last_results(records) == {"s.p": "skipped", "s.q": "error"}
