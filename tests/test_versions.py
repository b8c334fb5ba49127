"""The pure part of watching what changes outside the project (``dbluigi.versions``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbluigi.errors import ProjectError
from dbluigi.plan import make_plan
from dbluigi.project import load_project
from dbluigi.state import ModelState
from dbluigi.targets import pgchanges
from dbluigi.versions import (
    CHANGED_MARK,
    Versions,
    changed_outside,
    check_input_queries,
    combine,
    input_relations,
    output_has_signal,
    output_relations,
)
from tests.helpers import write_project

pytestmark = pytest.mark.unit

FILES = {
    "out/a.sql": "select id from raw.events join raw.users using (id)\n",
    "out/b.sql": "select id from out.a\n",
    "setup/make.sql": "-- kind: sql\ncreate table work.made as select 1 as id;\n",
    "out/c.sql": "select id from work.made\n",
}


def _project(tmp_path: Path, extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_project(write_project(tmp_path / "p", {**FILES, **(extra or {})}), use_cache=False)


def test_inputs_are_the_relations_read_that_no_model_produces(tmp_path: Path) -> None:
    project = _project(tmp_path)
    assert input_relations(project) == {"raw.events", "raw.users"}
    assert input_relations(project, ["out.b"]) == set()  # reads a model
    assert input_relations(project, ["out.c"]) == set()  # work.made has a producer


def test_outputs_of_a_script_are_the_tables_it_creates(tmp_path: Path) -> None:
    project = _project(tmp_path)
    assert output_relations(project.models["setup.make"]) == ("work.made",)
    assert output_relations(project.models["out.a"]) == ("out.a",)


def test_combine_is_what_the_sql_expression_computes() -> None:
    versions = {"s.a": "t1.x.2", "s.b": "none: a foreign table has no change signal"}
    assert combine(versions, ["s.a"]) == "s.a=t1.x.2"
    assert (
        combine(versions, ["s.b", "s.a"])
        == "s.a=t1.x.2;s.b=none: a foreign table has no change signal"
    )
    assert not output_has_signal(combine(versions, ["s.a", "s.b"]))
    assert combine(versions, ["s.a", "s.missing"]) is None


def test_changed_outside_compares_only_versions_that_can_tell() -> None:
    assert changed_outside("s.a=t1.x.2", "s.a=t1.x.3")
    assert not changed_outside("s.a=t1.x.2", "s.a=t1.x.2")
    assert not changed_outside(None, "s.a=t1.x.3")  # built before versions were stored
    assert not changed_outside("s.a=none: not tracked yet", "s.a=t1.x.3")
    assert not changed_outside("s.a=t1.x.2", None)  # missing: another reason says so
    assert changed_outside(CHANGED_MARK, None)


def test_the_catalog_row_formats_as_the_function_returns() -> None:
    assert pgchanges.version("r", 42, 9, "cols", None, True, 7) == "t42.9.cols.7"
    assert pgchanges.version("r", 42, 9, "cols", None, False, 0) == pgchanges.UNTRACKED
    assert pgchanges.version("v", 42, 9, "cols", "def", False, 0) == "vdef.cols"
    assert pgchanges.version("m", 42, 9, "cols", None, False, 0).startswith("none: a material")


def test_plan_reasons_for_inputs(tmp_path: Path) -> None:
    project = _project(tmp_path)
    selected = ["out.a"]
    existing = {("raw", "events"), ("raw", "users"), ("out", "a")}
    first = make_plan(
        project, selected, {}, existing, observed=Versions({"raw.events": "v1", "raw.users": "u1"})
    )
    decision = first.decisions["out.a"]
    stored = {
        "out.a": ModelState(
            "out.a",
            decision.fingerprint,
            decision.content_fp,
            decision.build_id,
            1,
            inputs=dict(decision.inputs),
        )
    }
    same = make_plan(
        project,
        selected,
        stored,
        existing,
        observed=Versions({"raw.events": "v1", "raw.users": "u1"}),
    )
    assert same.decisions["out.a"].reason == "up to date"
    moved = make_plan(
        project,
        selected,
        stored,
        existing,
        observed=Versions({"raw.events": "v2", "raw.users": "u1"}),
    )
    assert moved.decisions["out.a"].reason == "input changed: raw.events"
    silent = make_plan(
        project,
        selected,
        stored,
        existing,
        observed=Versions(
            {"raw.events": "v1", "raw.users": "none: a foreign table has no change signal"}
        ),
    )
    assert silent.decisions["out.a"].run
    assert silent.decisions["out.a"].reason == (
        "no change signal for input: raw.users (a foreign table has no change signal)"
    )


def test_an_input_query_must_name_an_input(tmp_path: Path) -> None:
    project = _project(
        tmp_path, {"dbluigi.toml": '[inputs."raw.event"]\nversion_query = "select 1"\n'}
    )
    with pytest.raises(ProjectError) as raised:
        check_input_queries(project)
    assert raised.value.line == 2  # the version_query line
    assert "raw.events" in (raised.value.hint or "")


def test_an_input_query_with_an_unknown_key_names_it(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as raised:
        _project(tmp_path, {"dbluigi.toml": '[inputs."raw.events"]\nversion_sql = "select 1"\n'})
    assert "version_sql" in str(raised.value) and "version_query" in str(raised.value)
