"""A named target that moves the project's schemas onto other schemas of the same
database (``staging`` -> ``dev_staging``) never reads or writes prod's relations, and
the project's names keep working wherever a user writes them: in patches, partition
queries, unit tests and their expectations, selectors, and the state a command reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dbluigi.errors import DuplicateRelationError, ProjectError
from dbluigi.project import load_project
from dbluigi.targets import open_target
from tests.buildkit import query, statuses
from tests.test_targets_named import run, run_json, write_project


def shared_toml(url: str) -> str:
    """Two targets on one database: prod as the project names it, dev moved."""
    return f"""
[project]
target = "prod"

[targets.prod]
url = "{url}"

[targets.dev]
url = "{url}"
schemas = {{ staging = "dev_staging", reporting = "dev_reporting" }}
"""


def execute(url: str, root: Path, *statements: str) -> None:
    session = open_target(url, project_dir=root).connect()
    try:
        with session.transaction():
            for sql in statements:
                session.execute(sql)
    finally:
        session.close()


@pytest.fixture(autouse=True)
def _no_target_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)


def test_a_patch_corrects_the_targets_own_table(tmp_path: Path, pg_url: str) -> None:
    """``staging/things.patch.sql`` updates ``staging.things`` as the project names it:
    on dev it corrects dev's new table. It updated prod's published table instead."""
    files = {
        "staging/things.sql": "select 1 as id, 10 as v union all select 2, 10",
        "staging/things.patch.sql": (
            "update staging.things set v = 20 where id = 1;\ndelete from things where id = 2;\n"
        ),
    }
    root = write_project(tmp_path, shared_toml(pg_url), files)
    assert run_json("build", project=root)[0] == 0  # prod
    assert query(pg_url, root, "select id, v from staging.things") == [(1, 20)]
    # prod's table changes after its build (what its readers see now)
    execute(
        pg_url, root, "insert into staging.things values (3, 30)", "update staging.things set v = 0"
    )
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0, payload
    assert query(pg_url, root, "select id, v from dev_staging.things") == [(1, 20)]
    assert sorted(query(pg_url, root, "select id, v from staging.things")) == [(1, 0), (3, 0)]


# -- unit tests (dbluigi test) ----------------------------------------------------------

PEOPLE = {
    "staging/people.sql": "select 1 as id",
    "reporting/summary.sql": "select count(*) as n from staging.people where id >= {{ min_id }}",
}
PEOPLE_TESTS = """
counts_people:
  model: reporting.summary
  given:
    staging.people: [{id: 1}, {id: 2}]
  expect: [{n: 2}]
counts_from_two:
  model: reporting.summary
  given:
    staging.people: [{id: 1}, {id: 2}]
  vars: {min_id: 2}
  expect: {query: "select count(*) as n from staging.people where id >= 2"}
"""


def test_unit_tests_take_the_projects_names_on_a_moved_target(
    tmp_path: Path, duckdb_url: str
) -> None:
    """A test file names the model and its inputs as the project does (``staging.people``):
    on dev it runs on the relations dev builds. It failed with "no model
    reporting.summary", and a test with ``vars:`` lost the target's schemas."""
    files = {**PEOPLE, "tests/summary.test.yml": PEOPLE_TESTS}
    toml = shared_toml(duckdb_url) + '\n[vars]\nmin_id = "0"\n'
    root = write_project(tmp_path, toml, files)
    for target in ("prod", "dev"):
        code, output = run("test", "--target", target, project=root)
        assert code == 0, output
        assert "2 passed, 0 failed" in output, output
    assert run("build", "--target", "dev", project=root)[0] == 0
    code, output = run("test", "--target", "dev", "--on-target", project=root)
    assert code == 0 and "2 passed, 0 failed" in output, output
    # what a test file lacks is named as the file names it, on every target
    (root / "tests/summary.test.yml").write_text(PEOPLE_TESTS.replace("staging.people:", "x.y:"))
    code, output = run("test", "--target", "dev", project=root)
    assert code == 2 and "reporting.summary reads staging.people, which" in output, output
    assert "add staging.people:" in output, output


def test_a_generated_test_names_relations_as_the_project_does(
    tmp_path: Path, duckdb_url: str
) -> None:
    """``test --generate`` on dev writes ``model: reporting.summary`` and gives
    ``staging.people``, as the project names them: the file serves every target. It
    wrote dev's names (``dev_reporting.summary``), which prod has no model of."""
    toml = shared_toml(duckdb_url) + '\n[vars]\nmin_id = "0"\n'
    root = write_project(tmp_path, toml, PEOPLE)
    assert run("build", "--target", "dev", project=root)[0] == 0
    code, output = run("test", "--target", "dev", "--generate", "summary", project=root)
    assert code == 0, output
    generated = yaml.safe_load((root / "reporting/summary.test.yml").read_text())
    assert generated == {
        "summary_generated": {
            "model": "reporting.summary",
            "given": {"staging.people": [{"id": 1}]},
            "expect": [{"n": 1}],
        }
    }
    for target in ("prod", "dev"):
        code, output = run("test", "--target", target, project=root)
        assert code == 0 and "1 passed, 0 failed" in output, output


def test_project_names_hold_when_two_schemas_share_one_on_the_target(
    tmp_path: Path, duckdb_url: str
) -> None:
    """``schemas = { a = "dev", b = "dev" }``: one sandbox schema. ``dev.t`` is the
    project's ``b.t``, not ``a.t`` (the first schema mapped there)."""
    toml = f'[targets.dev]\nurl = "{duckdb_url}"\nschemas = {{ a = "dev", b = "dev" }}\n'
    root = write_project(
        tmp_path, toml, {"a/p.sql": "select 1 as id", "b/t.sql": "select id from a.p"}
    )
    assert run("build", "--target", "dev", project=root)[0] == 0
    project = load_project(root, target="dev")
    assert (project.as_named("dev.t"), project.as_named("dev.p")) == ("b.t", "a.p")
    code, output = run("test", "--target", "dev", "--generate", "b.t", project=root)
    assert code == 0, output
    generated = yaml.safe_load((root / "b/t.test.yml").read_text())
    assert generated["t_generated"]["model"] == "b.t"
    assert list(generated["t_generated"]["given"]) == ["a.p"]
    code, output = run("test", "--target", "dev", project=root)
    assert code == 0 and "1 passed, 0 failed" in output, output


def test_an_expect_query_reads_the_targets_default_schema_input(
    tmp_path: Path, pg_url: str
) -> None:
    """An ``expect`` query naming a model of the default schema bare (``from things``)
    reads the test's rows on a target that moves the default schema. On the target it
    read prod's published ``public.things`` instead (in the database the two share)."""
    toml = shared_toml(pg_url).replace('reporting = "dev_reporting"', 'public = "dev_public"')
    tests = """
counts_things:
  model: reporting.summary
  given:
    public.things: [{id: 1}, {id: 2}, {id: 3}]
  expect: {query: "select count(*) as n from things"}
"""
    files = {
        "things.sql": "select 1 as id",
        "reporting/summary.sql": "select count(*) as n from things",
        "tests/summary.test.yml": tests,
    }
    root = write_project(tmp_path, toml, files)
    for target in ("prod", "dev"):
        assert run("build", "--target", target, project=root)[0] == 0
        code, output = run("test", "--target", target, "--on-target", project=root)
        assert code == 0 and "1 passed, 0 failed" in output, (target, output)


# -- the runs a target reads back (retry, result:) ----------------------------------------

FAILING_ON_DEV = {
    "staging/ratio.sql": "select 1 / {{ divisor }} as x",
    "reporting/ok.sql": "select 1 as x",
}


def failing_on_dev(root: Path, url: str) -> Path:
    toml = shared_toml(url).replace(
        'reporting = "dev_reporting" }', 'reporting = "dev_reporting" }\nvars = { divisor = 0 }'
    )
    return write_project(root, toml + "\n[vars]\ndivisor = 1\n", FAILING_ON_DEV)


def test_retry_reads_the_last_build_of_its_own_target(tmp_path: Path, pg_url: str) -> None:
    """Two targets in one database keep their runs apart: ``retry`` on prod does not
    build what dev left failed, and ``retry`` on dev after a prod build retries dev's
    failure. Both read whichever target built last."""
    root = failing_on_dev(tmp_path, pg_url)
    assert run_json("build", project=root)[0] == 0  # prod
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 1 and statuses(payload)["dev_staging.ratio"] == "failed", payload
    code, output = run("retry", project=root)  # prod: its last build failed nothing
    assert code == 0 and "nothing to retry" in output and "dev_staging" not in output, output
    assert run_json("build", project=root)[0] == 0  # prod builds again, last
    code, output = run("retry", "--target", "dev", project=root)
    assert code == 1 and "retrying 1 models" in output and "dev_staging.ratio" in output, output


def test_result_selectors_read_the_last_run_of_their_own_target(
    tmp_path: Path, pg_url: str
) -> None:
    """``result:error`` selects by the last run of the target it is given: dev's failure
    is not prod's, and a prod run after it does not hide it from dev."""
    root = failing_on_dev(tmp_path, pg_url)
    assert run_json("build", project=root)[0] == 0  # prod
    assert run_json("build", "--target", "dev", project=root)[0] == 1
    code, plan = run_json("plan", "result:success", project=root)  # prod's last run
    assert code == 0 and {m["model"] for m in plan["models"]} == {"staging.ratio", "reporting.ok"}
    assert run_json("build", project=root)[0] == 0  # prod builds again, last
    code, plan = run_json("plan", "--target", "dev", "result:error", project=root)
    assert code == 0, plan
    assert {m["model"] for m in plan["models"]} == {"dev_staging.ratio"}


# -- what the loader moves --------------------------------------------------------------


def test_a_partition_query_of_bare_names_reads_the_targets_relations(
    tmp_path: Path, duckdb_url: str
) -> None:
    """A partition query names models bare, as the model's query does: ``years`` in the
    default schema, ``keys`` the one model of that name (``staging.keys``). On prod it
    failed ("keys does not exist"): it ran as written while the query was qualified;
    on dev both read dev's tables."""
    toml = shared_toml(duckdb_url).replace(" }", ', main = "dev_main" }', 1)
    files = {
        "years.sql": "select 2020 as y union all select 2021 union all select 2022",
        "staging/keys.sql": "select 2020 as k",
        "reporting/by_year.sql": (
            "-- partition: y in (select y from years where y > (select min(k) from keys))\n"
            "select {{ y }} as y, k from keys\n"
        ),
    }
    root = write_project(tmp_path, toml, files)
    assert run_json("build", project=root)[0] == 0
    query(duckdb_url, root, "delete from main.years where y = 2022")  # prod's, not dev's
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0, payload
    assert query(duckdb_url, root, "select y from reporting.by_year order by y") == [
        (2021,),
        (2022,),
    ]
    assert query(duckdb_url, root, "select y from dev_reporting.by_year order by y") == [
        (2021,),
        (2022,),
    ]


def test_two_models_on_one_relation_of_a_target_are_refused(tmp_path: Path) -> None:
    """``staging/people.sql`` moved by ``schemas`` lands on ``dev_staging.people``, which
    ``dev_staging/people.sql`` builds as the project names it: loading dev is an error
    naming both files. One of them was silently dropped and the other built twice."""
    files = {
        "staging/people.sql": "select 1 as id",
        "dev_staging/people.sql": "select 2 as id",
    }
    root = write_project(tmp_path, shared_toml("duckdb:///t.duckdb"), files)
    assert len(load_project(root, target="prod", use_cache=False).models) == 2
    with pytest.raises(DuplicateRelationError) as raised:
        load_project(root, target="dev", use_cache=False)
    message = str(raised.value)
    assert "staging/people.sql" in message and "dev_staging/people.sql" in message
    assert "dev_staging.people" in message and "[targets.dev] schemas" in message
    code, output = run("plan", "--target", "dev", project=root)
    assert code == 2 and "dev_staging/people.sql" in output, output


def test_a_model_moved_onto_an_input_table_is_refused(tmp_path: Path) -> None:
    """``schemas = { staging = "lookups" }`` moves ``staging.codes`` onto
    ``lookups.codes``, a table the project only reads (an input, here declared with a
    version query too): a dev build replaced it, and its readers read the model instead.
    Loading dev is an error naming the model's file and the reader's."""
    toml = shared_toml("duckdb:///t.duckdb").replace(
        'staging = "dev_staging"', 'staging = "lookups"'
    )
    files = {
        "staging/codes.sql": "select 1 as code",
        "reporting/named.sql": "select c.code, l.name from staging.codes c join lookups.codes l using (code)",
    }
    root = write_project(tmp_path, toml, files)
    assert "lookups.codes" in load_project(root, target="prod", use_cache=False).sources
    with pytest.raises(ProjectError) as raised:
        load_project(root, target="dev", use_cache=False)
    message = str(raised.value)
    assert raised.value.path == "staging/codes.sql"
    assert "reporting/named.sql" in message and "lookups.codes" in message
    script = "-- kind: sql\n-- unmanaged: true\ndelete from lookups.codes where code < 0\n"
    write_project(tmp_path, toml, {"reporting/named.sql": "select 1 as code", "fix.sql": script})
    with pytest.raises(ProjectError) as raised:
        load_project(root, target="dev", use_cache=False)
    assert raised.value.path == "staging/codes.sql" and "fix.sql writes it" in str(raised.value)
    (root / "fix.sql").unlink()
    declared = '\n[inputs."lookups.codes"]\nversion_query = "select 1"\n'
    write_project(tmp_path, toml + declared, {"reporting/named.sql": "select 1 as code"})
    with pytest.raises(ProjectError) as raised:
        load_project(root, target="dev", use_cache=False)
    assert raised.value.path == "staging/codes.sql"
    assert '[inputs."lookups.codes"]' in str(raised.value), raised.value


def test_a_model_moved_onto_a_table_a_check_reads_is_refused(tmp_path: Path) -> None:
    """A ``.check.sql`` reading ``lookups.codes``, a table no model builds, makes it an
    input as a model reading it does: dev moving ``staging.codes`` onto it is an error
    naming the model's file, the check file and the option. The check read dev's model
    in place of the input, and the build replaced the input."""
    toml = shared_toml("duckdb:///t.duckdb").replace(
        'staging = "dev_staging"', 'staging = "lookups"'
    )
    files = {
        "staging/codes.sql": "select 1 as code",
        "reporting/named.sql": "select 1 as code",
        "reporting/named.check.sql": (
            "select code from reporting.named where code is null;\n"  # each query is read
            "select n.code from reporting.named n\n"
            "where n.code not in (select code from lookups.codes)\n"
        ),
    }
    root = write_project(tmp_path, toml, files)
    assert "lookups.codes" in load_project(root, target="prod", use_cache=False).sources
    with pytest.raises(ProjectError) as raised:
        load_project(root, target="dev", use_cache=False)
    message = str(raised.value)
    assert raised.value.path == "staging/codes.sql", message
    assert "reporting/named.check.sql reads it" in message and "lookups.codes" in message
    assert "[targets.dev] schemas" in message, message
    code, output = run("plan", "--target", "dev", project=root)
    assert code == 2 and "staging/codes.sql" in output and "named.check.sql" in output, output


# -- selectors --------------------------------------------------------------------------


def test_source_selectors_take_the_projects_names_on_a_moved_target(tmp_path: Path) -> None:
    """``source:staging.flags+`` (a table a script creates, which dev builds as
    ``dev_staging.flags``) selects its readers on every target, as ``staging.people+``
    does; on dev it failed with "matches no source". A relation the project only reads
    keeps its name on every target (``source:raw.people``)."""
    files = {
        "setup/flags.sql": "-- kind: sql\ncreate table staging.flags as select 1 as k\n",
        "reporting/summary.sql": "select max(f.k) as k, count(*) as n from staging.flags f, raw.people",
        "reporting/other.sql": "select 1 as x",
    }
    root = write_project(tmp_path, shared_toml("duckdb:///t.duckdb"), files)
    for target, summary in (("prod", "reporting.summary"), ("dev", "dev_reporting.summary")):
        for selector in ("source:staging.flags+", "source:staging.*+", "source:raw.people+"):
            code, output = run("ls", "--target", target, selector, project=root)
            assert code == 0 and output.split() == [summary], (target, selector, output)
