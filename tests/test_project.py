"""Scanning, headers in context, dependency resolution, graph and check placement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbluigi.errors import (
    CycleError,
    DuplicateRelationError,
    HeaderError,
    ProjectError,
    SqlParseError,
    VariableError,
)
from dbluigi.project import load_project
from dbluigi.selectors import select
from tests.helpers import write_project

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parent.parent / "project"


def test_example_project_graph_is_what_its_sql_implies() -> None:
    project = load_project(EXAMPLE, use_cache=False)
    assert set(project.models) == {
        "raw.states",
        "raw.cities",
        "raw.agency_types",
        "raw.agencies",
        "raw.agency_staffing",
        "raw.offense_monthly",
        "raw.offender_ages",
        "staging.agencies",
        "reporting.agency_reporting",
        "api.cde_agencies",
        "api.offense_annual",
        "api.offender_age_histogram",
    }
    parents = {m: set(project.graph.parents(m)) for m in project.models}
    assert parents["staging.agencies"] == {
        "raw.agencies",
        "raw.agency_types",
        "raw.cities",
        "raw.states",
    }
    assert parents["reporting.agency_reporting"] == {"raw.offense_monthly", "staging.agencies"}
    assert parents["api.cde_agencies"] == {
        "raw.agency_staffing",
        "reporting.agency_reporting",
        "staging.agencies",
    }
    assert "staging.agencies" in parents["api.offender_age_histogram"]
    assert project.sources == ()
    order = project.order
    assert (
        order.index("staging.agencies")
        < order.index("reporting.agency_reporting")
        < order.index("api.cde_agencies")
    )
    agencies = project.models["staging.agencies"]
    assert agencies.kind == "table" and agencies.patch is not None
    assert {(c.path, c.gate) for c in project.checks} == {
        ("staging/agencies.check.sql", "staging.agencies")
    }
    assert project.models["raw.agency_types"].kind == "seed"
    assert project.models["raw.agency_types"].header.checks[0].text == "unique(agency_type_id)"


def test_relation_naming_and_kinds(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "top.sql": "select 1 as a",
            "staging/deep/nested.sql": "select * from top",
            "raw/people.csv": "id,name\n1,ann\n",
            "raw/codes.yaml": "- {code: a}\n",
            "fixes/fix_people.sql": "update raw.people set name = 'x' where id = 1",
            "views/v.sql": "-- kind: view\nselect * from raw.people",
            ".hidden/ignored.sql": "select 1",
            ".dbluigi/ignored.sql": "select 1",
            "exports/ignored.csv": "a\n1\n",
            "notes.txt": "not a model",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    kinds = {m: project.models[m].kind for m in project.models}
    assert kinds == {
        "main.top": "table",
        "staging.nested": "table",
        "raw.people": "seed",
        "raw.codes": "seed",
        "fixes.fix_people": "sql",
        "views.v": "view",
    }
    assert project.models["staging.nested"].reads == ("main.top",)


def test_postgres_target_uses_public_schema(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as x", "b.sql": "select * from A"})
    project = load_project(tmp_path, target="postgresql://root@127.0.0.1/test", use_cache=False)
    assert set(project.models) == {"public.a", "public.b"}
    assert project.models["public.b"].reads == ("public.a",)  # unquoted names fold to lower case
    assert project.dialect == "postgres"


def test_sql_model_writing_a_table_runs_between_producer_and_readers(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "staging/orders.sql": "select 1 as id, 'x' as status",
            "fixes/close_orders.sql": "update staging.orders set status = 'closed' where id in (select id from raw.closed)",
            "reporting/summary.sql": "select status, count(*) as n from staging.orders group by status",
            "fixes/add_index.sql": "create index orders_status on staging.orders (status)",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    order = project.order
    assert (
        order.index("staging.orders")
        < order.index("fixes.close_orders")
        < order.index("reporting.summary")
    )
    assert order.index("fixes.add_index") < order.index("reporting.summary")
    assert project.models["fixes.close_orders"].writes == ("staging.orders",)
    assert project.models["fixes.close_orders"].reads == ("raw.closed",)
    assert "raw.closed" in project.sources


def test_sql_model_creating_a_table_feeds_its_readers(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "setup/create_lookup.sql": "create table ref.lookup (id integer); insert into ref.lookup values (1)",
            "use_lookup.sql": "select * from ref.lookup",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    assert project.order == ("setup.create_lookup", "main.use_lookup")
    assert project.model_parents("main.use_lookup") == ("setup.create_lookup",)


def test_cte_shadowing_and_depends_header(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "orders.sql": "select 1 as id",
            "recent.sql": "-- depends: audit.log\nwith orders as (select * from orders) select * from orders",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    recent = project.models["main.recent"]
    assert recent.reads == ("main.orders",)
    assert recent.depends == ("audit.log",)
    assert "audit.log" in project.sources


def test_bare_name_resolves_to_unique_model_then_ambiguity_is_an_error(tmp_path: Path) -> None:
    write_project(
        tmp_path, {"staging/agencies.sql": "select 1 as id", "report.sql": "select * from agencies"}
    )
    assert load_project(tmp_path, use_cache=False).models["main.report"].reads == (
        "staging.agencies",
    )
    write_project(tmp_path, {"api/agencies.sql": "select 2 as id"})
    with pytest.raises(
        ProjectError,
        match=r"ambiguous reference 'agencies': it could be api.agencies, staging.agencies",
    ) as err:
        load_project(tmp_path, use_cache=False)
    assert err.value.path == "report.sql"


def test_check_reading_a_downstream_model_gates_the_last_one(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "staging/agencies.sql": "select 1 as id",
            "api/agencies.sql": "select * from staging.agencies",
            "staging/agencies.check.sql": "select id from staging.agencies except select id from api.agencies",
            "api/other.sql": "select 1 as x",
            "api/other.check.sql": "select * from api.other where x < 0",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    gates = {c.path: c.gate for c in project.checks}
    assert gates == {
        "staging/agencies.check.sql": "api.agencies",
        "api/other.check.sql": "api.other",
    }
    assert [c.path for c in project.gated_checks("api.agencies")] == ["staging/agencies.check.sql"]


def test_check_reading_an_independent_model_gates_its_owner_after_it(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "a.sql": "select 1 as id",
            "b.sql": "select 1 as id",
            "a.check.sql": "select id from main.a where id not in (select id from main.b)",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    (check,) = project.checks
    assert (check.gate, check.waits) == ("main.a", ("main.b",))
    # ordering only: a runs after b, but b is no dependency of a (nor a of b)
    assert project.graph.waits_for("main.a") == {"main.b"}
    assert not project.graph.parents("main.a") and not project.graph.parents("main.b")
    assert project.order == ("main.b", "main.a")


def test_variables_render_and_undefined_is_an_error(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "dbluigi.toml": "[vars]\nmin_year = 2015\n",
            "a.sql": "select * from raw.x where year >= {{ min_year }} and kind = '{{ kind }}'",
        },
    )
    with pytest.raises(VariableError, match="undefined variable 'kind'") as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == ("a.sql", 1)
    project = load_project(tmp_path, variables={"kind": "x"}, use_cache=False)
    assert "year >= 2015 and kind = 'x'" in project.models["main.a"].text


@pytest.mark.parametrize(
    ("toml", "target", "message"),
    [
        ("[vars]\nids = [1, 2]\n", None, r"(?s)variable 'ids' is an array: .*ids = \"1, 2\""),
        ("[vars]\nday = 2020-01-01\n[vars.ids]\na = 1\n", None, r"variable 'ids' is a table"),
        (
            '[targets.dev]\nurl = "duckdb"\nvars = { ids = [1] }\n',
            "dev",
            r"variable 'ids' is an array",
        ),
    ],
)
def test_a_placeholder_is_sql_text_never_an_array_or_a_table(
    tmp_path: Path, toml: str, target: str | None, message: str
) -> None:
    """Python's ``[1, 2]`` or ``{'a': 1}`` substituted into SQL is SQL nowhere: refused at
    the placeholder's file and line. A Python step may read the array all the same."""
    write_project(
        tmp_path,
        {"dbluigi.toml": toml, "a.sql": "select 1 as id\nwhere 1 in ({{ ids }})"},
    )
    with pytest.raises(VariableError, match=message) as err:
        load_project(tmp_path, target=target, use_cache=False)
    assert (err.value.path, err.value.line) == ("a.sql", 2)
    (tmp_path / "a.sql").write_text("select 1 as id")  # no placeholder: nothing to refuse
    project = load_project(tmp_path, target=target, use_cache=False)
    assert isinstance(project.config.variables["ids"], list | dict)


def test_a_date_variable_renders_as_toml_writes_it(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "dbluigi.toml": "[vars]\nday = 2020-01-31\nok = true\n",
            "a.sql": "select '{{ day }}' as day, {{ ok }} as ok",
        },
    )
    model = load_project(tmp_path, use_cache=False).models["main.a"]
    assert "'2020-01-31' as day, True as ok" in model.text


def test_depends_on_the_model_itself_is_an_error(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "raw/x.csv": "id\n1\n",
            "staging/t.sql": "-- kind: table\n-- depends: raw.x, t\nselect * from raw.x",
        },
    )
    with pytest.raises(ProjectError, match="-- depends: t is this model itself") as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == ("staging/t.sql", 2)


def test_partition_and_watermark_placeholders_stay_for_run_time(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {"a.sql": "-- partition: year in 2010..2012\nselect * from raw.x where y = {{ year }}"},
    )
    model = load_project(tmp_path, use_cache=False).models["main.a"]
    assert "{{ year }}" in model.query
    assert model.reads == ("raw.x",)


# --- bad inputs --------------------------------------------------------------------------


def test_duplicate_relation_names_both_files(tmp_path: Path) -> None:
    write_project(tmp_path, {"raw/people.csv": "id\n1\n", "raw/people.sql": "select 1 as id"})
    with pytest.raises(
        DuplicateRelationError,
        match=r"raw/people.csv and raw/people.sql both map to relation raw.people",
    ):
        load_project(tmp_path, use_cache=False)


LOOKUPS = """
# tags: lookups
agency_types:
  - {code: 1, name: City}
States:
  - {abbr: OR}
"""


def test_multi_table_yaml_is_one_seed_per_key(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "lookups/lookup_tables.yaml": LOOKUPS,
            "lookups/states.check.sql": "select * from lookups.states where abbr is null",
            "lookups/agency_types.patch.sql": "update lookups.agency_types set name = 'x'",
            "api/state_list.sql": "select * from agency_types, States",
        },
    )
    project = load_project(tmp_path, use_cache=False)
    assert set(project.models) == {"lookups.agency_types", "lookups.states", "api.state_list"}
    for relation, key in (("lookups.agency_types", "agency_types"), ("lookups.states", "States")):
        model = project.models[relation]
        assert (model.kind, model.path, model.part, model.tags) == (
            "seed",
            "lookups/lookup_tables.yaml",
            key,
            ("lookups",),
        )
    assert project.models["lookups.agency_types"].patch is not None
    assert project.models["lookups.states"].patch is None
    assert [c.gate for c in project.checks] == ["lookups.states"]
    assert project.models["api.state_list"].reads == ("lookups.agency_types", "lookups.states")
    assert select(project, ["states+"]) == ("lookups.states", "api.state_list")
    assert set(select(project, ["path:lookups/lookup_tables.yaml"])) == {
        "lookups.agency_types",
        "lookups.states",
    }
    assert select(project, ["tag:lookups"]) == select(project, ["path:lookups/"])


def test_multi_table_yaml_file_is_not_a_relation(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "lookups/lookup_tables.yaml": LOOKUPS,
            "lookups/lookup_tables.check.sql": "select 1 where false",
        },
    )
    with pytest.raises(ProjectError, match=r"no model lookups\.lookup_tables") as caught:
        load_project(tmp_path, use_cache=False)
    assert caught.value.path == "lookups/lookup_tables.check.sql"


@pytest.mark.parametrize(
    ("other", "path", "line"),
    [
        ("lookups/states.csv", "lookups/lookup_tables.yaml", 4),
        ("lookups/a/more.yml", "lookups/lookup_tables.yaml", 4),  # both keys: the later one
        ("lookups/z.yml", "lookups/z.yml", 1),
    ],
)
def test_a_table_taking_another_models_relation_is_refused(
    tmp_path: Path, other: str, path: str, line: int
) -> None:
    content = "states:\n  - {abbr: WA}\n" if other.endswith(".yml") else "abbr\nWA\n"
    write_project(tmp_path, {"lookups/lookup_tables.yaml": LOOKUPS, other: content})
    with pytest.raises(
        DuplicateRelationError, match=r"both map to relation lookups\.states"
    ) as caught:
        load_project(tmp_path, use_cache=False)
    assert (caught.value.path, caught.value.line) == (path, line)


def test_a_bad_table_of_a_multi_table_yaml_names_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"lookups/t.yml": "a:\n  - {x: 1}\nb: []\n"})
    with pytest.raises(ProjectError, match="table b has no rows") as caught:
        load_project(tmp_path, use_cache=False)
    assert (caught.value.path, caught.value.line) == ("lookups/t.yml", 3)


def test_a_reserved_table_name_in_a_multi_table_yaml_names_its_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"lookups/t.yml": "a:\n  - {x: 1}\nb__dbluigi_new:\n  - {x: 1}\n"})
    with pytest.raises(ProjectError, match=r"lookups\.b__dbluigi_new cannot be a model") as caught:
        load_project(tmp_path, use_cache=False)
    assert (caught.value.path, caught.value.line) == ("lookups/t.yml", 3)


def test_cycle_reports_full_cycle_and_files(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "a.sql": "select * from main.c",
            "b.sql": "select * from main.a",
            "c.sql": "select * from main.b",
        },
    )
    with pytest.raises(CycleError) as err:
        load_project(tmp_path, use_cache=False)
    assert set(err.value.cycle) >= {"main.a", "main.b", "main.c"}
    assert err.value.files == ("a.sql", "b.sql", "c.sql")
    assert "dependency cycle: " in str(err.value) and "a.sql" in str(err.value)


def test_unknown_header_key_names_file_line_and_suggestion(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "-- description: x\n-- dependz: b\nselect 1"})
    with pytest.raises(HeaderError) as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == ("a.sql", 2)
    assert "did you mean 'depends'" in str(err.value)


def test_bad_duration_and_bad_check(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "-- timeout: 10 minutes\nselect 1"})
    with pytest.raises(HeaderError, match="bad duration '10 minutes'") as err:
        load_project(tmp_path, use_cache=False)
    assert str(err.value).startswith("a.sql:1:")
    write_project(tmp_path, {"a.sql": "-- check: rows > banana\nselect 1"})
    with pytest.raises(HeaderError, match="bad check expression 'rows > banana'"):
        load_project(tmp_path, use_cache=False)


def test_invalid_sql_names_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "-- description: broken\n\nselect a,\n  from (\n  where"})
    with pytest.raises(SqlParseError) as err:
        load_project(tmp_path, use_cache=False)
    assert err.value.path == "a.sql"
    assert err.value.line is not None and err.value.line >= 3
    assert str(err.value).startswith(f"a.sql:{err.value.line}:")


def test_empty_project_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no models found"):
        load_project(tmp_path, use_cache=False)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": b"-- description: ok\nselect 'caf\xe9' as x\n"})
    with pytest.raises(ProjectError, match="not UTF-8") as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == ("a.sql", 2)


def test_a_config_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    write_project(tmp_path, {"dbluigi.toml": b'[project]\nname = "caf\xe9"\n', "a.sql": "select 1"})
    with pytest.raises(ProjectError, match="not UTF-8 text") as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == ("dbluigi.toml", 2)


def test_check_file_holding_a_statement_that_is_not_a_query(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {"a.sql": "select 1 as id", "a.check.sql": "select 1 where false;\ndelete from main.a"},
    )
    with pytest.raises(ProjectError, match="a check must be a query") as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == ("a.check.sql", 2)


def test_orphan_companion_and_kind_mismatch(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "select 1 as id", "b.check.sql": "select 1"})
    with pytest.raises(ProjectError, match=r"no model main.b for this check sql file"):
        load_project(tmp_path, use_cache=False)
    (tmp_path / "b.check.sql").unlink()
    write_project(tmp_path, {"c.sql": "-- kind: table\nupdate main.a set id = 2"})
    with pytest.raises(ProjectError, match="kind table needs exactly one query") as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == ("c.sql", 1)


def test_header_checks_on_a_sql_model_are_refused(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "-- check: rows > 0\nupdate raw.x set y = 1"})
    with pytest.raises(ProjectError, match="needs a table or view") as err:
        load_project(tmp_path, use_cache=False)
    assert err.value.line == 1


def test_bad_config(tmp_path: Path) -> None:
    write_project(tmp_path, {"a.sql": "select 1", "dbluigi.toml": "[projekt]\nname = 'x'\n"})
    with pytest.raises(ProjectError, match=r"unknown section \[projekt\]") as err:
        load_project(tmp_path, use_cache=False)
    assert "did you mean 'project'" in str(err.value)


def test_warm_scan_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, {f"m{i}.sql": f"select * from raw.t{i}" for i in range(20)})
    load_project(tmp_path)
    assert (tmp_path / ".dbluigi" / "cache" / "sqlinfo.json").exists()
    from dbluigi import sqlinfo

    calls: list[str] = []
    original = sqlinfo.analyze_sql
    monkeypatch.setattr(
        sqlinfo, "analyze_sql", lambda *a, **k: calls.append("x") or original(*a, **k)
    )
    project = load_project(tmp_path)
    assert calls == []
    assert project.models["main.m3"].reads == ("raw.t3",)


def test_warm_scan_never_imports_sqlglot(tmp_path: Path) -> None:
    """Loading a project whose files are all in the parse cache, and planning it, leaves
    sqlglot unimported (it is a quarter of a no-op build's time); a cold one needs it."""
    write_project(
        tmp_path,
        {
            "base.sql": "select 1 as id",
            "reader.sql": "-- check: unique(id)\nselect b.id from base as b join raw.t using (id)",
            "reader.check.sql": "select id from reader where id < 0",
        },
    )
    script = (
        "import sys\n"
        "from dbluigi.cli import app\n"
        "from dbluigi.project import load_project\n"
        f"project = load_project({str(tmp_path)!r})\n"
        "print(project.order, 'sqlglot' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    cold = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert cold.stdout.strip().endswith("True"), cold.stderr
    warm = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert warm.stdout.strip().endswith("False"), warm.stderr
    assert warm.stdout.split(")")[0] == cold.stdout.split(")")[0]  # the same project


PG = "postgresql://root@127.0.0.1/test"  # only its dialect is used: nothing connects
SORTED = "-- depends: staging.items\nselect id\nfrom items\norder by id using <\n"


def test_sql_sqlglot_cannot_parse_runs_as_written_with_declared_dependencies(
    tmp_path: Path,
) -> None:
    write_project(
        tmp_path,
        {
            "staging/items.sql": "select 1 as id",
            "reporting/sorted.sql": SORTED,
            "reporting/fix.sql": (
                # it modifies staging.items, so it runs in that table's build: before
                # reporting.sorted, which reads the table
                "-- kind: sql\n-- depends: staging.items\n"
                "update items set id = id;\n"
                "insert into reporting.sorted select id from items order by id using <\n"
            ),
        },
    )
    for use_cache in (True, True):  # a cold scan, then a warm one from the cache
        project = load_project(tmp_path, target=PG, use_cache=use_cache)
        sorted_, fix = project.models["reporting.sorted"], project.models["reporting.fix"]
        assert (sorted_.kind, sorted_.reads, sorted_.depends) == ("table", (), ("staging.items",))
        # run as written: the bare name is left to the database, unlike in a parsed statement
        assert sorted_.query.endswith("select id\nfrom items\norder by id using <")
        assert "staging.items" in fix.statements[0].sql and fix.writes == ("staging.items",)
        assert fix.statements[1].sql.startswith("insert into reporting.sorted select id from items")
        # after the modifier of what it depends on
        assert set(project.graph.parents("reporting.sorted")) == {"staging.items", "reporting.fix"}
        assert [(w.path, w.line) for w in project.warnings] == [
            ("reporting/fix.sql", 4),
            ("reporting/sorted.sql", 4),
        ]
        assert str(project.warnings[1]).startswith(
            "reporting/sorted.sql:4: sqlglot cannot parse this statement (Invalid expression"
        )
        assert "it runs as written" in project.warnings[1].message


def test_sql_sqlglot_cannot_parse_without_depends_is_an_error(tmp_path: Path) -> None:
    write_project(tmp_path, {"sorted.sql": SORTED.replace("-- depends: staging.items\n", "")})
    with pytest.raises(SqlParseError) as err:
        load_project(tmp_path, target=PG, use_cache=False)
    assert (err.value.path, err.value.line) == ("sorted.sql", 3)
    assert "-- depends:" in str(err.value.hint)
    assert "runs it as written" in str(err.value.hint)

    write_project(
        tmp_path,
        {
            "sorted.sql": "select 1 as id",
            "sorted.check.sql": "-- depends: main.sorted\nselect id from sorted order by id using <",
        },
    )
    with pytest.raises(SqlParseError) as err:
        load_project(tmp_path, target=PG, use_cache=False)
    assert err.value.path == "sorted.check.sql"
    assert "check and patch files are rewritten with sqlglot" in str(err.value.hint)


def _layers(count: int) -> dict[str, str | bytes]:
    """``count`` models in three schemas, each reading the one before, some with a check
    file, a patch or a header check: enough files for a load to parse on all cores."""
    files: dict[str, str | bytes] = {"s0/m0.sql": "select 1 as id, 'a' as label"}
    for i in range(1, count):
        up = f"s{(i - 1) % 3}.m{i - 1}"
        files[f"s{i % 3}/m{i}.sql"] = (
            f"-- description: model {i}\n-- check: unique(id)\n"
            f"with base as (select id, label from {up})\n"
            f"select b.id, b.label from base as b where b.id in (select id from m{i - 1})\n"
        )
        if i % 50 == 0:
            files[f"s{i % 3}/m{i}.check.sql"] = f"select id from m{i} where label is null"
            files[f"s{i % 3}/m{i}.patch.sql"] = f"update m{i} set label = 'x' where label = ''"
    return files


def _spy_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from dbluigi import forked

    counts: list[int] = []
    spread = forked.map_ranges

    def spy(task, count, *, chunk):  # type: ignore[no-untyped-def]
        counts.append(count)
        return spread(task, count, chunk=chunk)

    monkeypatch.setattr(forked, "map_ranges", spy)
    return counts


@pytest.mark.forks
def test_a_cold_load_on_all_cores_is_the_sequential_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbluigi import forked

    write_project(tmp_path / "a", _layers(400))
    write_project(tmp_path / "b", _layers(400))
    forks = _spy_forks(monkeypatch)
    spread = load_project(tmp_path / "a")
    assert len(forks) == 1 and forks[0] > 300  # once 32 files were not in the parse cache
    with monkeypatch.context() as m:
        m.setattr(forked, "available", lambda: False)
        alone = load_project(tmp_path / "b")
    assert list(spread.models) == list(alone.models)
    assert spread.models == alone.models
    assert spread.graph.order == alone.graph.order
    assert spread.checks == alone.checks
    cache = Path(".dbluigi/cache/sqlinfo.json")
    assert (tmp_path / "a" / cache).read_text() == (tmp_path / "b" / cache).read_text()
    # warm: every file is in the parse cache, and nothing is forked
    assert load_project(tmp_path / "a").models == alone.models
    assert len(forks) == 1


@pytest.mark.forks
def test_a_cold_load_on_all_cores_raises_the_first_error_in_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbluigi import forked

    files = _layers(400)
    files["s0/m300.sql"] = "select id,\n  from s2.m299 where"  # a parse error, line 2
    files["s1/m100.sql"] = "-- kind: view\nselect 1 as id"  # a view with a patch
    files["s2/m353.sql"] = (
        "-- kind: table\nselect 1 as id;\nselect 2 as id\n"  # two queries in a table
    )
    write_project(tmp_path, files)
    forks = _spy_forks(monkeypatch)

    def first_error() -> tuple[str | None, int | None, str]:
        with pytest.raises(ProjectError) as spread:
            load_project(tmp_path, use_cache=False)
        with monkeypatch.context() as m, pytest.raises(ProjectError) as alone:
            m.setattr(forked, "available", lambda: False)
            load_project(tmp_path, use_cache=False)
        found = (spread.value.path, spread.value.line, str(spread.value))
        assert found == (alone.value.path, alone.value.line, str(alone.value))
        return found

    assert first_error()[:2] == ("s0/m300.sql", 2)
    write_project(tmp_path, {"s0/m300.sql": "select 1 as id"})
    path, line, message = first_error()
    assert (path, line) == ("s1/m100.patch.sql", None)
    assert "a patch applies to a new table" in message
    write_project(tmp_path, {"s1/m100.sql": "select 1 as id"})
    assert first_error()[:2] == ("s2/m353.sql", 1)
    assert len(forks) == 3


@pytest.mark.forks
def test_files_a_dead_worker_left_are_loaded_by_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from dbluigi import project as loader

    write_project(tmp_path, _layers(400))
    alone = load_project(tmp_path, use_cache=False)
    forks = _spy_forks(monkeypatch)
    parent, model = os.getpid(), loader._Loader._model

    def killed_in_a_worker(self, file, companions):  # type: ignore[no-untyped-def]
        if os.getpid() != parent and file.path == "s1/m301.sql":
            os._exit(1)
        return model(self, file, companions)

    monkeypatch.setattr(loader._Loader, "_model", killed_in_a_worker)
    assert load_project(tmp_path, use_cache=False).models == alone.models
    assert len(forks) == 1


BOM_FILES = {
    "dbluigi.toml": "[vars]\nlow = 0\n",
    "staging/a.sql": "-- depends: staging.x\n-- check: rows > 0\nselect {{ low }} as a\n",
    "staging/a.check.sql": "select * from staging.a where a < {{ low }}\n",
    "staging/a.patch.sql": "update staging.a set a = a + 1\n",
    "staging/x.sql": "select 1 as a\n",
    "staging/p.py": "# depends: staging.x\ndef run(ctx):\n    pass\n",
    "raw/c.csv": "id,name\n1,a\n",
    "raw/y.yml": "- id: 1\n  name: a\n",
}


def test_files_starting_with_a_bom_load_as_without_it(tmp_path: Path) -> None:
    plain = load_project(write_project(tmp_path / "plain", BOM_FILES), use_cache=False)
    with_bom = {name: b"\xef\xbb\xbf" + text.encode() for name, text in BOM_FILES.items()}
    loaded = load_project(write_project(tmp_path / "bom", with_bom), use_cache=False)
    assert loaded.config.variables == plain.config.variables == {"low": 0}
    assert loaded.warnings == plain.warnings == ()
    assert loaded.models == plain.models
    a = loaded.models["staging.a"]
    assert a.kind == "table" and a.depends == ("staging.x",) and a.header.line_of("check") == 2
    assert loaded.gated_checks("staging.a") == plain.gated_checks("staging.a")
    # a byte that is not UTF-8 after a BOM is placed in the file as it is
    (tmp_path / "bom" / "staging" / "x.sql").write_bytes(b"\xef\xbb\xbfselect 1 as a\n-- \xe9\n")
    with pytest.raises(ProjectError, match="byte 0xe9 at offset 20") as err:
        load_project(tmp_path / "bom", use_cache=False)
    assert (err.value.path, err.value.line) == ("staging/x.sql", 2)


@pytest.mark.parametrize(
    ("path", "text", "message", "line"),
    [
        ("a.sql", "-- unique_key: id\nselect 1 as id", "unique_key", 1),
        (
            "a.sql",
            "-- kind: view\n-- description: x\n-- watermark: day\nselect 1 as id, 2 as day",
            "watermark",
            3,
        ),
        ("a.sql", "-- kind: sql\n-- unique_key: id\nupdate b set id = 1", "unique_key", 2),
        ("a.py", "# unique_key: id\ndef run(ctx):\n    pass\n", "unique_key", 1),
        ("a.sql", "-- kind: dump\n-- watermark: id\nselect 1 as id", "watermark", 2),
    ],
    ids=["table", "view", "sql", "python", "dump"],
)
def test_unique_key_or_watermark_on_a_model_not_incremental_is_an_error(
    tmp_path: Path, path: str, text: str, message: str, line: int
) -> None:
    write_project(tmp_path, {"b.sql": "select 1 as id", path: text})
    with pytest.raises(ProjectError, match=f"{message} goes with kind incremental") as err:
        load_project(tmp_path, use_cache=False)
    assert (err.value.path, err.value.line) == (path, line)
    assert "incremental" in (err.value.hint or "")
