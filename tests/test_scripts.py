"""Scripts: producers and modifiers of a relation, replayed together (issue 14).

A relation's build is its producer followed by all its modifiers, applied to the new
table before its checks and swap; a change to any of them replays the whole chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dbluigi.errors import ProjectError
from dbluigi.project import load_project
from dbluigi.targets import open_target
from tests.buildkit import build_json, cli, query, statuses
from tests.helpers import write_project

PEOPLE = {
    "raw/people.csv": "id,name,email,state\n1,Ann,a@x,TX\n2,Bob,b@x,CA\n"
    "3,Test User,t@x,TX\n4,Cy,c@x,NY\n",
    "staging/people.sql": "select * from raw.people",
    "fixes/add_manual.sql": "insert into staging.people values (99, 'Manual', null, 'TX');\n",
    "fixes/drop_tests.sql": "delete from staging.people where name like 'Test%';\n",
}


def _people(target: str, project: Path) -> list[tuple[object, ...]]:
    return query(target, project, "select id, name from staging.people order by id")


CHAIN = {"staging.people", "fixes.add_manual", "fixes.drop_tests"}


def _ran(payload: dict[str, object]) -> set[str]:
    return {m for m, s in statuses(payload).items() if s != "up to date"}  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", ["1", "4"])
def test_modifiers_replay_with_their_relation(
    tmp_path: Path, target_url: str, workers: str
) -> None:
    project = write_project(tmp_path / "p", {**PEOPLE, "api/states.sql": "select 1 as x"})
    code, payload = build_json("--workers", workers, project=project, target=target_url)
    assert code == 0, payload
    assert _people(target_url, project) == [(1, "Ann"), (2, "Bob"), (4, "Cy"), (99, "Manual")]
    # each modifier has its own attempt, with the rows it changed
    rows = dict(
        query(
            target_url,
            project,
            "select model, rows_affected from dbluigi.task_runs where run_id = %s and model like 'fixes.%%'",
            [payload["run_id"]],
        )
    )
    assert rows == {"fixes.add_manual": 1, "fixes.drop_tests": 1}
    # editing a modifier replays the chain: id 99 once, never twice
    manual = project / "fixes" / "add_manual.sql"
    manual.write_text(manual.read_text() + " -- note\n")
    code, payload = build_json("--workers", workers, project=project, target=target_url)
    assert code == 0 and _ran(payload) == CHAIN  # the whole chain, nothing else
    assert _people(target_url, project).count((99, "Manual")) == 1
    # a rebuild of the modifier rebuilds the relation from its producer
    code, payload = build_json(
        "fixes.add_manual", project=project, target=target_url, command="rebuild"
    )
    assert code == 0
    assert _people(target_url, project).count((99, "Manual")) == 1
    # a removed modifier is no longer applied: 'Test User' is back
    (project / "fixes" / "drop_tests.sql").unlink()
    code, payload = build_json(project=project, target=target_url)
    assert code == 0 and _ran(payload) == CHAIN - {"fixes.drop_tests"}
    assert (3, "Test User") in _people(target_url, project)
    # and nothing runs when nothing changed
    code, payload = build_json(project=project, target=target_url)
    assert code == 0 and set(statuses(payload).values()) == {"up to date"}


SETUP = {
    "setup/create_departments.sql": "create schema if not exists stg;\n"
    "create table stg.departments (id int primary key, name text);\n",
    "setup/fill_departments.sql": "insert into stg.departments "
    "select id, name from lookups.departments;\n",
    "lookups/departments.csv": "id,name\n1,Sales\n2,Ops\n3,Legal\n",
    "api/department_names.sql": "select name from stg.departments",
}


@pytest.mark.parametrize("workers", ["1", "4"])
def test_a_setup_folder_builds_in_order(
    tmp_path: Path, new_pg_url: Callable[[], str], workers: str
) -> None:
    for attempt in range(3 if workers == "4" else 1):  # a fresh target each time
        project = write_project(tmp_path / f"p{attempt}", SETUP)
        target = new_pg_url()
        code, payload = build_json("--workers", workers, project=project, target=target)
        assert code == 0, payload
        names = query(target, project, "select name from api.department_names order by name")
        assert names == [("Legal",), ("Ops",), ("Sales",)]
    # the relation is replayed whole when its filler changes: rows are never doubled
    fill = project / "setup" / "fill_departments.sql"
    fill.write_text(fill.read_text().replace(";", " where id < 3;"))
    code, payload = build_json(project=project, target=target)
    assert code == 0, payload
    assert query(target, project, "select count(*) from stg.departments") == [(2,)]
    assert query(target, project, "select count(*) from api.department_names") == [(2,)]


def test_a_failing_modifier_keeps_the_published_relation(tmp_path: Path, target_url: str) -> None:
    project = write_project(tmp_path / "p", PEOPLE)
    assert build_json(project=project, target=target_url)[0] == 0
    before = _people(target_url, project)
    (project / "fixes" / "add_manual.sql").write_text(
        "insert into staging.people values (100, 'Late', null, 'TX');\n"
        "update staging.people set id = 'x' where id = 100;\n"
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"]}
    assert results["fixes.add_manual"]["status"] == "failed"
    assert results["fixes.add_manual"]["file"] == "fixes/add_manual.sql"
    assert results["fixes.add_manual"]["line"] == 2
    assert results["staging.people"]["status"] == "failed"
    assert _people(target_url, project) == before


def test_a_modifier_of_an_unproduced_relation_is_refused(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {"a.sql": "select 1 as id", "fix.sql": "-- description: x\nupdate ext.t set v = 1;\n"},
    )
    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path, use_cache=False)
    assert (caught.value.path, caught.value.line) == ("fix.sql", 2)
    assert "ext.t, which no model produces" in caught.value.message
    (tmp_path / "fix.sql").write_text("-- unmanaged: true\nupdate ext.t set v = 1;\n")
    project = load_project(tmp_path, use_cache=False)
    assert project.models["main.fix"].unmanaged


def test_plan_and_lineage_show_producers_and_modifiers(tmp_path: Path) -> None:
    write_project(tmp_path, PEOPLE)
    project = load_project(tmp_path, use_cache=False)
    assert project.chains.modifiers["staging.people"] == ("fixes.add_manual", "fixes.drop_tests")
    assert project.chains.owner["fixes.drop_tests"] == "staging.people"


def test_a_python_cleanup_is_a_modifier_and_undeclared_writes_fail(
    tmp_path: Path, target_url: str
) -> None:
    """The published reader always sees the cleaned column: the step runs in the build of
    the relation it declares, before its readers; a write it does not declare fails."""
    project = write_project(
        tmp_path / "p",
        {
            **{k: v for k, v in PEOPLE.items() if not k.startswith("fixes/")},
            "fixes/clean.py": "# modifies: staging.people\n"
            "def run(ctx):\n"
            "    ctx.execute(f\"update {ctx.ref('staging.people')} set email = lower(name)\")\n",
            "api/emails.sql": "select id, email from staging.people",
        },
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    assert query(target_url, project, "select email from api.emails where id = 1") == [("ann",)]
    (project / "fixes" / "clean.py").write_text(
        "# modifies: staging.people\ndef run(ctx):\n    ctx.execute('delete from raw.people')\n"
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 1
    failed = {r["model"]: r for r in payload["tasks"]}["fixes.clean"]
    assert failed["failure_class"] == "config"
    assert "writes raw.people, which it does not declare" in failed["error"]
    assert query(target_url, project, "select count(*) from raw.people") == [(4,)]


def test_plan_and_lineage_name_the_chain(tmp_path: Path) -> None:
    write_project(
        tmp_path, {**PEOPLE, "other.sql": "-- unmanaged: true\nupdate ext.t set v = 1;\n"}
    )
    project = load_project(tmp_path, use_cache=False)
    assert project.write_notes("staging.people") == [
        "then, in its build: fixes.add_manual -> fixes.drop_tests"
    ]
    assert project.write_notes("fixes.drop_tests") == [
        "modifies staging.people: step 2 of 2 of staging.people's build"
    ]
    assert project.write_notes("main.other")[0].startswith("unmanaged: writes ext.t")
    from dbluigi.lineage import render_lineage

    text = render_lineage(project, fmt="text")
    assert "then, in its build: fixes.add_manual -> fixes.drop_tests" in text
    code, output = cli(
        "plan", "--json", project=tmp_path, target=f"duckdb:///{tmp_path / 't.duckdb'}"
    )
    assert code == 0
    rows = {r["model"]: r for r in json.loads(output)["models"]}
    assert rows["fixes.add_manual"]["writes"] == [
        "modifies staging.people: step 1 of 2 of staging.people's build"
    ]
    assert rows["main.other"]["writes"][0].startswith("unmanaged")


CHAIN_POINTS = [
    ("after_build", "staging.people", False),
    ("after_modifier", "fixes.add_manual", False),  # one modifier applied, the other not
    ("after_checks", "staging.people", False),
    ("before_commit", "staging.people", False),
    ("after_commit", "staging.people", True),
]


@pytest.mark.parametrize(
    ("point", "where", "published"), CHAIN_POINTS, ids=[p for p, _, _ in CHAIN_POINTS]
)
def test_sigkill_during_a_chain_leaves_old_or_new_with_all_modifiers(
    tmp_path: Path, target_url: str, point: str, where: str, published: bool
) -> None:
    import signal

    from tests.buildkit import cli_process

    project = write_project(tmp_path / "p", PEOPLE)
    assert build_json(project=project, target=target_url)[0] == 0
    old = _people(target_url, project)
    (project / "fixes" / "add_manual.sql").write_text(
        "insert into staging.people values (98, 'Other', null, 'TX');\n"
    )
    new = sorted([*(r for r in old if r[0] != 99), (98, "Other")])
    process = cli_process(
        "build", project=project, target=target_url, env={"DBLUIGI_CRASHPOINT": f"{point}:{where}"}
    )
    process.wait(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert _people(target_url, project) == (new if published else old)
    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    assert _people(target_url, project) == new


@pytest.mark.postgres
def test_a_reader_during_a_rebuild_sees_old_or_new_with_every_modifier(
    tmp_path: Path, pg_url: str
) -> None:
    import time

    from tests.buildkit import cli_process

    project = write_project(tmp_path / "p", PEOPLE)
    assert build_json(project=project, target=pg_url)[0] == 0
    old = _people(pg_url, project)
    (project / "fixes" / "add_manual.sql").write_text(
        "insert into staging.people values (98, 'Other', null, 'TX');\n"
        "select pg_sleep(1.5);\n"  # the window in which a reader looks
    )
    new = sorted([*(r for r in old if r[0] != 99), (98, "Other")])
    process = cli_process("build", project=project, target=pg_url)
    seen = []
    while process.poll() is None:
        seen.append(_people(pg_url, project))
        time.sleep(0.1)
    assert process.returncode == 0, process.communicate()
    seen.append(_people(pg_url, project))
    assert len(seen) > 5 and seen[0] == old and seen[-1] == new
    assert all(rows in (old, new) for rows in seen)


def test_modifiers_of_an_incremental_model_apply_to_each_batch(
    tmp_path: Path, target_url: str
) -> None:
    """Never twice on a row: in full on the first build, then on each batch of new rows
    before it is merged, as a patch is."""
    project = write_project(
        tmp_path / "p",
        {
            "raw/events.csv": "id,v,ts\n1,a,2024-01-01 00:00:00\n2,b,2024-01-02 00:00:00\n",
            "out/events.sql": "-- kind: incremental\n-- unique_key: id\n-- watermark: ts\n"
            "select id, v, ts from raw.events\n"
            "where {{ watermark }} is null or ts >= {{ watermark }}",
            "fixes/mark.sql": "update out.events set v = v || '!';\n",
        },
    )
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "raw" / "events.csv").write_text(
        "id,v,ts\n1,a,2024-01-01 00:00:00\n2,b,2024-01-02 00:00:00\n3,c,2024-01-03 00:00:00\n"
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    rows = query(target_url, project, "select id, v from out.events order by id")
    assert rows == [(1, "a!"), (2, "b!"), (3, "c!")]


@pytest.mark.postgres
def test_a_procedure_that_loads_a_table_is_replayed_with_it(tmp_path: Path, pg_url: str) -> None:
    """A CALL writes the table under its own name: the chain replays in place, in one
    transaction, and the reader never runs beside the call."""
    files = {
        **{k: v for k, v in SETUP.items() if k != "setup/fill_departments.sql"},
        # plpgsql: the body is read when it runs (a sql-language body needs the table now)
        "setup/procs.sql": "create or replace procedure load_departments() language plpgsql\n"
        "as $$ begin insert into stg.departments select id, name from lookups.departments;\n"
        "end $$;\n",
        "setup/load.sql": "-- modifies: stg.departments\n-- depends: lookups.departments\n"
        "call load_departments();\n",
    }
    project = write_project(tmp_path / "p", files)
    code, payload = build_json("--workers", "4", project=project, target=pg_url)
    assert code == 0, payload
    assert query(pg_url, project, "select count(*) from api.department_names") == [(3,)]
    loaded = {r["model"]: r for r in payload["tasks"]}["setup.load"]
    assert loaded["status"] == "success" and loaded["rows"] is None  # a CALL does not say
    (project / "lookups" / "departments.csv").write_text("id,name\n1,Sales\n")
    code, payload = build_json("--workers", "4", project=project, target=pg_url)
    assert code == 0, payload
    assert query(pg_url, project, "select name from api.department_names") == [("Sales",)]


def test_adding_a_modifier_replays_its_relation_and_nothing_else(
    tmp_path: Path, target_url: str
) -> None:
    project = write_project(tmp_path / "p", {**PEOPLE, "other/unrelated.sql": "select 1 as id"})
    assert build_json(project=project, target=target_url)[0] == 0
    (project / "fixes" / "rename_bob.sql").write_text(
        "update staging.people set name = 'Robert' where name = 'Bob';\n"
    )
    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    ran_now = {m for m, s in statuses(payload).items() if s != "up to date"}
    assert ran_now == {
        "staging.people",
        "fixes.add_manual",
        "fixes.drop_tests",
        "fixes.rename_bob",
    }
    assert _people(target_url, project) == [(1, "Ann"), (2, "Robert"), (4, "Cy"), (99, "Manual")]


def test_a_setup_folder_builds_on_duckdb_too(tmp_path: Path, duckdb_url: str) -> None:
    project = write_project(tmp_path / "p", SETUP)
    code, payload = build_json("--workers", "4", project=project, target=duckdb_url)
    assert code == 0, payload
    names = query(duckdb_url, project, "select name from api.department_names order by name")
    assert names == [("Legal",), ("Ops",), ("Sales",)]
    fill = project / "setup" / "fill_departments.sql"
    fill.write_text(fill.read_text().replace(";", " where id < 3;"))
    assert build_json(project=project, target=duckdb_url)[0] == 0
    assert query(duckdb_url, project, "select count(*) from stg.departments") == [(2,)]


def test_references_routines_and_schemas_order_models(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "setup/schema.sql": "create schema if not exists app;",
            "setup/accounts.sql": "create table app.accounts (id int primary key);",
            "setup/orders.sql": "create table app.orders "
            "(id int, account_id int references app.accounts (id));",
            "setup/funcs.sql": "create or replace function util_double(x int) returns int "
            "language sql as $$ select x * 2 $$;",
            "api/doubled.sql": "select util_double(id) as d from app.accounts",
        },
    )
    project = load_project(tmp_path, target="postgresql://u@h/db", use_cache=False)
    order = project.order
    # CREATE SCHEMA first; REFERENCES before the referencing table; the function before
    # the model calling it
    assert order.index("setup.schema") < order.index("setup.accounts")
    assert order.index("setup.accounts") < order.index("setup.orders")
    assert "setup.accounts" in project.model_parents("setup.orders")
    assert "setup.funcs" in project.model_parents("api.doubled")
    assert project.chains.producer["app.accounts"] == "setup.accounts"


def test_what_cannot_be_replayed_is_refused(tmp_path: Path) -> None:
    """A view cannot be modified; unmanaged is for tables nobody produces; a file is a
    producer or a modifier of another's relation, not both."""
    base = {"raw/people.csv": "id,name\n1,a\n", "staging/people.sql": "select * from raw.people"}
    cases = {
        "a view": (
            {
                "staging/v.sql": "-- kind: view\nselect * from raw.people",
                "f.sql": "delete from staging.v;",
            },
            "a view holds no rows",
        ),
        "unmanaged": (
            {"f.sql": "-- unmanaged: true\ndelete from staging.people;"},
            "is built by staging.people",
        ),
        "both": (
            {
                "f.sql": "create table main.audit (n int);\ninsert into staging.people values (9, 'n');"
            },
            "a file is a producer or a modifier",
        ),
    }
    for name, (files, message) in cases.items():
        root = write_project(tmp_path / name.replace(" ", "_"), {**base, **files})
        with pytest.raises(ProjectError, match=message) as caught:
            load_project(root, use_cache=False)
        assert caught.value.path == "f.sql", name


def test_excluding_part_of_a_build_is_refused(tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", PEOPLE)
    target = f"duckdb:///{tmp_path / 't.duckdb'}"
    code, output = cli("build", "--exclude", "fixes.drop_tests", project=project, target=target)
    assert code == 2 and "part of the build of staging.people" in output


def test_a_sql_producer_with_named_indexes_rebuilds(tmp_path: Path, target_url: str) -> None:
    project = write_project(
        tmp_path / "p",
        {
            "setup/d.sql": "create schema if not exists stg;\n"
            "create table stg.d (id int, constraint d_pk primary key (id));\n"
            "create index d_idx on stg.d (id);\n"
            "create or replace view stg.dv as select id from stg.d;\n",
            "setup/fill.sql": "insert into stg.d values (1), (2);\n",
            "api/ids.sql": "select id from stg.dv",
        },
    )
    for command in ("build", "rebuild"):
        args = ("setup.d",) if command == "rebuild" else ()
        code, payload = build_json(*args, project=project, target=target_url, command=command)
        assert code == 0, payload
        assert query(target_url, project, "select id from stg.dv order by id") == [(1,), (2,)]


def test_removing_a_modifier_of_an_incremental_model_rebuilds_it_in_full(
    tmp_path: Path, target_url: str
) -> None:
    project = write_project(
        tmp_path / "p",
        {
            "raw/events.csv": "id,v,ts\n1,a,2024-01-01 00:00:00\n2,Test,2024-01-02 00:00:00\n",
            "out/events.sql": "-- kind: incremental\n-- unique_key: id\n-- watermark: ts\n"
            "select id, v, ts from raw.events\n"
            "where {{ watermark }} is null or ts >= {{ watermark }}",
            "fixes/upper.sql": "update out.events set v = upper(v);\n",
            "fixes/drop_tests.sql": "delete from out.events where v ilike 'test%';\n",
        },
    )
    assert build_json(project=project, target=target_url)[0] == 0
    assert query(target_url, project, "select id, v from out.events order by id") == [(1, "A")]
    (project / "fixes" / "drop_tests.sql").unlink()
    (project / "fixes" / "upper.sql").unlink()
    code, payload = build_json(project=project, target=target_url)
    assert code == 0, payload
    assert query(target_url, project, "select id, v from out.events order by id") == [
        (1, "a"),
        (2, "Test"),
    ]


@pytest.mark.postgres
def test_a_view_over_a_replayed_table_is_never_lost(tmp_path: Path, pg_url: str) -> None:
    """Another model's (or the application's) view over a table a sql file creates stops
    the replay with the database's message; it is never dropped along."""
    project = write_project(
        tmp_path / "p",
        {
            "setup/d.sql": "create schema if not exists stg;\ncreate table stg.d (id int);\n",
            "setup/fill.sql": "insert into stg.d values (1);\n",
        },
    )
    assert build_json(project=project, target=pg_url)[0] == 0
    session_sql = "create view public.app_view as select * from stg.d"
    from tests.buildkit import open_target

    session = open_target(pg_url, project_dir=project).connect()
    try:
        with session.transaction():
            session.execute(session_sql)
    finally:
        session.close()
    code, payload = build_json("setup.d", project=project, target=pg_url, command="rebuild")
    assert code == 1
    failed = {r["model"]: r for r in payload["tasks"]}["setup.d"]
    assert "depend" in failed["error"]
    assert query(pg_url, project, "select * from public.app_view") == [(1,)]


def test_a_python_modifier_writing_the_published_name_is_told_where_to_write(
    tmp_path: Path, duckdb_url: str
) -> None:
    project = write_project(
        tmp_path / "p",
        {
            **{k: v for k, v in PEOPLE.items() if not k.startswith("fixes/")},
            "fixes/clean.py": "# modifies: staging.people\n"
            "def run(ctx):\n"
            "    ctx.execute('update staging.people set name = upper(name)')\n",
        },
    )
    code, payload = build_json(project=project, target=duckdb_url)
    assert code == 1
    failed = {r["model"]: r for r in payload["tasks"]}["fixes.clean"]
    assert failed["failure_class"] == "config"
    assert "ctx.ref('staging.people')" in failed["error"]


def test_a_script_creating_the_table_of_its_own_name_is_replayed(
    tmp_path: Path, target_url: str
) -> None:
    project = write_project(
        tmp_path / "p",
        {
            "main/codes.sql": "-- kind: sql\ncreate table main.codes as select 1 as id;\n",
            "main/reader.sql": "select id from main.codes\n",
        },
    )
    assert build_json(project=project, target=target_url)[0] == 0
    code, rebuilt = build_json("codes+", project=project, target=target_url, command="rebuild")
    assert code == 0, rebuilt  # dropped before it runs again, like any table it creates
    session = open_target(target_url, project_dir=project).connect()
    session.execute("drop table main.reader")
    session.execute("drop table main.codes")
    session.close()
    code, after = build_json(project=project, target=target_url)
    assert code == 0
    assert {r["model"]: r["reason"] for r in after["tasks"]}["main.codes"] == "relation missing"
