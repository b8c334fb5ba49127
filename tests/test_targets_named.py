"""Named targets (``[targets.NAME]``): choosing one, its vars and workers, the schemas its
models are built in, and state kept by the relation built, so that switching between a
dev and a prod target (or between values of a schema variable) never rebuilds for nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dbluigi.cli import app
from dbluigi.config import load_config
from dbluigi.errors import ProjectError, SelectorError
from dbluigi.project import load_project
from dbluigi.selectors import select
from tests.buildkit import query, ran, statuses

runner = CliRunner()

MODELS = {
    "raw/persons.csv": "id,name\n1,ann\n2,bob\n",
    "staging/people.sql": "select id, name, '{{ greeting }}' as greeting from raw.persons\n",
    "staging/people.check.sql": "select * from staging.people where id is null\n",
    "setup/flags.sql": (
        "-- kind: sql\ncreate table staging.flags (k integer);\ninsert into staging.flags values (1);\n"
    ),
    "reporting/summary.sql": (
        "select count(*) as n, max(f.k) as k from people p cross join staging.flags f\n"
    ),
}


def write_project(root: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    for path, text in (files or MODELS).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "dbluigi.toml").write_text(toml)
    return root


def targets_toml(prod: str, dev: str) -> str:
    return f"""
[project]
target = "prod"

[vars]
greeting = "hello"

[targets.prod]
url = "{prod}"
workers = 2

[targets.dev]
url = "{dev}"
schema_suffix = "_dev"
vars = {{ greeting = "hi" }}

[targets.mapped]
url = "{dev}"
schemas = {{ staging = "dev_staging", reporting = "dev_reporting" }}

[targets.elsewhere]
url = "postgresql://app:${{DBLUIGI_TEST_NEVER_SET}}@db.invalid/app"
"""


def run(*args: str, project: Path) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--project", str(project)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def run_json(*args: str, project: Path) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, [*args, "--json", "--project", str(project)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def to_run(payload: dict[str, Any]) -> set[str]:
    return {m["model"] for m in payload["models"] if m["run"]}


# -- configuration (no database) ----------------------------------------------------------


def test_name_or_url_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    monkeypatch.delenv("DBLUIGI_TEST_NEVER_SET", raising=False)
    root = write_project(tmp_path, targets_toml("duckdb:///prod.duckdb", "duckdb:///dev.duckdb"))
    default = load_config(root)
    assert (default.target_name, default.target_url, default.workers) == (
        "prod",
        "duckdb:///prod.duckdb",
        2,
    )
    dev = load_config(root, target="dev", variables={"greeting": "yo"})
    assert dev.target_url == "duckdb:///dev.duckdb"
    assert dev.variables["greeting"] == "yo"  # --var wins over the target's vars
    assert load_config(root, target="dev").variables["greeting"] == "hi"
    url = load_config(root, target="duckdb:///other.duckdb")
    assert (url.target_name, url.target_url) == (None, "duckdb:///other.duckdb")
    assert load_config(root, target="duckdb").target_name is None
    monkeypatch.setenv("DBLUIGI_TARGET", "dev")
    assert load_config(root).target_name == "dev"


def test_unknown_target_names_the_file_and_the_closest(tmp_path: Path) -> None:
    root = write_project(tmp_path, targets_toml("duckdb:///prod.duckdb", "duckdb:///dev.duckdb"))
    with pytest.raises(ProjectError) as raised:
        load_config(root, target="prd")
    message = str(raised.value) + str(raised.value.hint)
    assert "dbluigi.toml" in message and "did you mean 'prod'?" in message
    assert "dev, elsewhere, mapped, prod" in message
    code, output = run("plan", "--target", "prd", project=root)
    assert code == 2
    assert "prod" in output and "dbluigi.toml" in output


def test_bad_target_sections_name_their_line(tmp_path: Path) -> None:
    for section, expected in (
        ('url = "duckdb"\nschema_sufix = "_dev"', "did you mean 'schema_suffix'?"),
        ('schemas = { staging = "dbluigi" }', "state tables"),
        ('schema_suffix = "-dev"', "letters, digits and _ only"),
        ("workers = 0", "whole number"),
        ("output = 7", "expected a string"),
        ('output = ""', "a folder of the project"),
    ):
        root = write_project(tmp_path, f"[targets.dev]\n{section}\n")
        with pytest.raises(ProjectError) as raised:
            load_config(root, target="dev")
        assert expected in str(raised.value) + str(raised.value.hint)
        assert raised.value.line == section.count("\n") + 2, section


def test_unset_env_of_another_target_does_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBLUIGI_TEST_NEVER_SET", raising=False)
    root = write_project(tmp_path, targets_toml("duckdb:///prod.duckdb", "duckdb:///dev.duckdb"))
    assert load_config(root, target="dev").target_url == "duckdb:///dev.duckdb"
    with pytest.raises(ProjectError, match="DBLUIGI_TEST_NEVER_SET"):
        load_config(root, target="elsewhere")


def test_schema_suffix_and_mapping_rename_relations_and_references(tmp_path: Path) -> None:
    root = write_project(tmp_path, targets_toml("duckdb:///prod.duckdb", "duckdb:///dev.duckdb"))
    prod = load_project(root, use_cache=False)
    assert set(prod.models) == {"raw.persons", "staging.people", "setup.flags", "reporting.summary"}
    dev = load_project(root, target="dev", use_cache=False)
    assert set(dev.models) == {
        "raw_dev.persons",
        "staging_dev.people",
        "setup_dev.flags",
        "reporting_dev.summary",
    }
    summary = dev.models["reporting_dev.summary"]
    assert set(summary.reads) == {"staging_dev.people", "staging_dev.flags"}
    assert "staging_dev.flags" in summary.query and "staging_dev.people" in summary.query
    assert "raw_dev.persons" in dev.models["staging_dev.people"].query
    assert dev.models["setup_dev.flags"].creates == ("staging_dev.flags",)
    (check,) = dev.checks
    assert check.owner == "staging_dev.people" and "staging_dev.people" in check.sql
    mapped = load_project(root, target="mapped", use_cache=False)
    assert set(mapped.models) == {
        "raw.persons",
        "dev_staging.people",
        "setup.flags",
        "dev_reporting.summary",
    }
    assert "raw.persons" in mapped.models["dev_staging.people"].query


def test_selectors_take_the_projects_names_on_every_target(tmp_path: Path) -> None:
    """A selector written for the project (`staging.people+`, `staging.*`, `staging`)
    selects the same models on a target that builds them elsewhere, so one command line
    serves every target; it failed with "matches no model" there. The moved names select
    them too, and a name that is neither still fails."""
    root = write_project(tmp_path, targets_toml("duckdb:///prod.duckdb", "duckdb:///dev.duckdb"))
    dev = load_project(root, target="dev", use_cache=False)
    mapped = load_project(root, target="mapped", use_cache=False)
    everything_dev = {"raw_dev.persons", "staging_dev.people", "setup_dev.flags"}
    for selector, expected in (
        ("staging.people+", {"staging_dev.people", "reporting_dev.summary"}),
        ("staging.*", {"staging_dev.people"}),
        ("staging", {"staging_dev.people"}),
        ("+reporting.summary", {*everything_dev, "reporting_dev.summary"}),
        ("raw.persons", {"raw_dev.persons"}),
        ("staging_dev.people", {"staging_dev.people"}),  # as built
        ("people", {"staging_dev.people"}),
    ):
        assert set(select(dev, [selector])) == expected, selector
    for selector, expected in (
        ("staging.people+", {"dev_staging.people", "dev_reporting.summary"}),
        ("staging.*", {"dev_staging.people"}),
        ("staging", {"dev_staging.people"}),
        ("raw.persons", {"raw.persons"}),  # raw is not mapped
    ):
        assert set(select(mapped, [selector])) == expected, selector
    with pytest.raises(SelectorError, match=r"'staging\.nobody' matches no model"):
        select(dev, ["staging.nobody"])


def test_a_name_of_two_models_on_a_target_that_moves_schemas_is_refused(tmp_path: Path) -> None:
    """With schemas `a` and `a_dev` and `schema_suffix = "_dev"`, `a_dev.t` is the
    project's `a.t` as built and the project's own `a_dev.t`: it selected the first,
    silently."""
    files = {"a/t.sql": "select 1 as id", "a_dev/t.sql": "select 2 as id"}
    root = write_project(tmp_path, targets_toml("duckdb:///p.duckdb", "duckdb:///d.duckdb"), files)
    dev = load_project(root, target="dev", use_cache=False)
    assert set(dev.models) == {"a_dev.t", "a_dev_dev.t"}
    with pytest.raises(SelectorError, match=r"names a_dev\.t as this target builds them, and "):
        select(dev, ["a_dev.t"])
    assert select(dev, ["a.t"]) == ("a_dev.t",)  # the project's a.t
    assert select(dev, ["a_dev_dev.t"]) == ("a_dev_dev.t",)  # as built


def test_lineage_of_a_column_takes_the_projects_names_on_every_target(tmp_path: Path) -> None:
    """`lineage staging.people.name` traces the column on a target that builds
    staging elsewhere, as `lineage staging.people` selects the model there; it failed
    with "matches no model"."""
    root = write_project(tmp_path, targets_toml("duckdb:///prod.duckdb", "duckdb:///dev.duckdb"))
    code, output = run("lineage", "staging.people.name", "--target", "dev", project=root)
    assert code == 0, output
    assert "staging_dev.people.name" in output and "raw_dev.persons.name" in output


# -- on the targets -------------------------------------------------------------------------


def test_named_targets_build_in_their_schemas(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    root = write_project(tmp_path, targets_toml(target_url, target_url))
    code, payload = run_json("build", project=root)  # [project] target = "prod"
    assert code == 0, payload
    assert ran(payload) == {"raw.persons", "staging.people", "setup.flags", "reporting.summary"}
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0, payload
    assert ran(payload) == {
        "raw_dev.persons",
        "staging_dev.people",
        "setup_dev.flags",
        "reporting_dev.summary",
    }
    assert query(target_url, root, "select distinct greeting from staging_dev.people") == [("hi",)]
    assert query(target_url, root, "select n, k from reporting_dev.summary") == [(2, 1)]
    # prod's tables are untouched, and prod has nothing to run
    assert query(target_url, root, "select distinct greeting from staging.people") == [("hello",)]
    code, plan = run_json("plan", "--target", "prod", project=root)
    assert code == 0 and to_run(plan) == set(), plan
    code, payload = run_json("build", "--target", "prod", project=root)
    assert code == 0 and ran(payload) == set(), payload
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0 and ran(payload) == set(), payload
    # a mapping: only the schemas it names move; setup.flags now creates dev_staging.flags
    code, payload = run_json("build", "--target", "mapped", project=root)
    assert code == 0, payload
    assert ran(payload) == {"dev_staging.people", "setup.flags", "dev_reporting.summary"}
    assert query(target_url, root, "select n from dev_reporting.summary") == [(2,)]
    # its state is that of the tables it creates: prod's build of staging.flags still counts
    code, plan = run_json("plan", "--target", "prod", project=root)
    assert code == 0 and to_run(plan) == set(), plan
    code, payload = run_json("build", "--target", "mapped", project=root)
    assert code == 0 and ran(payload) == set(), payload
    # checks read the target's relations: this one fails on dev's rows only
    (root / "staging/people.check.sql").write_text(
        "select * from staging.people where greeting <> 'hello'\n"
    )
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 1 and statuses(payload)["staging_dev.people"] == "failed", payload
    assert run_json("build", "--target", "prod", project=root)[0] == 0


def test_a_scripts_create_and_drop_schema_move_with_its_tables(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `sql` script's CREATE SCHEMA and DROP SCHEMA of a schema whose tables the target
    moves go where the tables go: a dev build made prod's schema (and its DROP SCHEMA ...
    CASCADE dropped prod's tables, in the database the two targets share). Another
    schema's statement runs as written."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    script = (
        "-- kind: sql\n"
        "drop schema if exists audit cascade;\n"
        "create schema audit;\n"
        "create schema if not exists Elsewhere;\n"
        "create table audit.events as select 1 as id;\n"
    )
    files = {
        "setup/audit.sql": script,
        "report/counts.sql": "select count(*) as n from audit.events",
    }
    root = write_project(tmp_path, targets_toml(target_url, target_url), files)
    dev = load_project(root, target="dev", use_cache=False)
    sql = ";".join(st.sql for st in dev.models["setup_dev.audit"].statements).lower()
    assert "schema if exists audit_dev cascade" in sql and "create schema audit_dev" in sql
    assert "create schema if not exists elsewhere" in sql
    assert run_json("build", project=root)[0] == 0  # prod
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0, payload
    assert query(target_url, root, "select n from report_dev.counts") == [(1,)]
    assert query(target_url, root, "select count(*) from audit.events") == [(1,)]  # prod's
    schemas = {  # DuckDB keeps the case it was given
        str(r[0]).lower()
        for r in query(target_url, root, "select schema_name from information_schema.schemata")
    }
    assert {"audit", "audit_dev", "elsewhere"} <= schemas


PG = "postgresql://root@127.0.0.1:5432/test"  # loaded only: nothing connects


def test_commands_sqlglot_keeps_as_written_move_with_the_tables_they_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Statements sqlglot keeps as commands or cannot parse (a ``-- depends:`` script) name
    the target's relations too: ``GRANT`` and ``COMMENT ON`` of a table the script
    creates, ``CREATE SCHEMA ... AUTHORIZATION``, ``ALTER SCHEMA``, ``GRANT ... ON SCHEMA``,
    and the dollar-quoted body of a ``DO`` block. On dev they ran as written:
    they touched prod's schema and tables, or failed where prod had not built them. A
    table the project only reads, a string, and another schema keep their names."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    script = (
        "-- kind: sql\n"
        "create schema if not exists audit authorization root;\n"
        "alter schema audit owner to root;\n"
        "grant usage on schema audit, elsewhere to public;\n"
        "create table audit.events as select 1 as id;\n"
        "comment on table audit.events is 'audit.events, as written';\n"
        "grant select on audit.events, audit.inputs to public;\n"
        'do $$ begin insert into "audit".events select id from audit.inputs; end $$;\n'
        "create function audit.last_id() returns int language sql\n"
        "  as $body$ select max(id) from audit.events $body$;\n"
    )
    as_written = (
        "-- kind: sql\n-- depends: setup.audit\n"
        "insert into audit.events select (xmlparse(document '<a/>') is document)::int;\n"
    )
    files = {"setup/audit.sql": script, "setup/owner.sql": as_written}
    root = write_project(tmp_path, targets_toml(PG, PG), files)
    dev = load_project(root, target="dev", use_cache=False)
    moved = [st.sql for st in dev.models["setup_dev.audit"].statements]
    assert "schema if not exists audit_dev authorization root" in moved[0].lower()
    assert moved[1].lower() == "alter schema audit_dev owner to root"
    assert "schema audit_dev, elsewhere to" in moved[2].lower()
    assert "audit_dev.events is 'audit.events, as written'" in moved[4].lower()
    assert "audit_dev.events, audit.inputs" in moved[5].lower()  # audit.inputs: an input
    assert 'insert into "audit_dev".events select id from audit.inputs' in moved[6]
    # a routine keeps its name, and so its body: another target's routine stays its own
    assert "function audit.last_id()" in moved[7].lower() and "from audit.events" in moved[7]
    (kept,) = dev.models["setup_dev.owner"].statements
    assert kept.unparsed is not None
    assert kept.sql.endswith(
        "insert into audit_dev.events select (xmlparse(document '<a/>') is document)::int"
    )
    prod = load_project(root, target="prod", use_cache=False)
    assert [st.sql for st in prod.models["setup.audit"].statements][6].startswith("do $$")
    assert "audit_dev" not in " ".join(st.sql for st in prod.models["setup.audit"].statements)


def test_a_string_after_schema_stays_a_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``set schema 'audit'`` (PostgreSQL's ``set search_path``, which takes a string) came
    out of a dev load as ``set schema audit_dev``: a syntax error on dev, where prod's
    statement ran. A string is left as written, after ``SCHEMA`` as anywhere else."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    script = (
        "-- kind: sql\n"
        "create table audit.events as select 1 as id;\n"
        "set schema 'audit';\n"
        "grant usage on schema audit to public;\n"
    )
    root = write_project(tmp_path, targets_toml(PG, PG), {"setup/audit.sql": script})
    dev = load_project(root, target="dev", use_cache=False)
    moved = [st.sql.lower() for st in dev.models["setup_dev.audit"].statements]
    assert moved[1] == "set schema 'audit'"
    assert moved[2] == "grant usage on schema audit_dev to public"


def test_statements_sqlglot_reads_as_one_command_word_move_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlglot's tokenizer reads a statement that starts with one of its command words
    (``LOCK``, ``REFRESH``, ``VACUUM``, ``REINDEX``, ``DO``) as that word and one string:
    on dev, ``lock table audit.events`` locked prod's table and ``refresh materialized
    view`` refreshed prod's view; a ``DO`` block moved only when its dollar-quoted body
    was the very last thing in it (not with a comment after it, nor with an ``EXECUTE
    $q$...$q$ USING ...`` inside)."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    script = (
        "-- kind: sql\n"
        "create table audit.events as select 1 as id;\n"
        "create materialized view audit.counts as select count(*) as n from audit.events;\n"
        "lock table audit.events in exclusive mode;\n"
        "refresh materialized view audit.counts;\n"
        "vacuum audit.events;\n"
        "do $$ begin insert into audit.events values (2); end $$ /* seed */;\n"
        "do $$ begin execute $q$insert into audit.events select $1$q$ using 3; end $$;\n"
    )
    root = write_project(tmp_path, targets_toml(PG, PG), {"setup/audit.sql": script})
    dev = load_project(root, target="dev", use_cache=False)
    moved = [st.sql.lower() for st in dev.models["setup_dev.audit"].statements]
    assert moved[2] == "lock table audit_dev.events in exclusive mode"
    assert moved[3] == "refresh materialized view audit_dev.counts"
    assert moved[4] == "vacuum audit_dev.events"
    assert "insert into audit_dev.events values (2); end $$" in moved[5]
    assert "$q$insert into audit_dev.events select $1$q$ using 3" in moved[6]


def test_a_quoted_name_moves_as_the_database_compares_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB compares quoted names in any case, so ``"AUDIT".events`` is the script's
    table there and moves; on PostgreSQL it is another schema's table and stays."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    script = (
        "-- kind: sql\n"
        "create table audit.events as select 1 as id;\n"
        "comment on table \"AUDIT\".events is 'x';\n"
    )
    for url, expected in (("duckdb:///x.duckdb", '"audit_dev".events'), (PG, '"AUDIT".events')):
        root = write_project(tmp_path / url[:6], targets_toml(url, url), {"setup/a.sql": script})
        dev = load_project(root, target="dev", use_cache=False)
        assert expected in dev.models["setup_dev.a"].statements[1].sql, url


def test_a_scripts_grants_comments_and_blocks_reach_the_targets_tables(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL, dev's build of a script that grants, comments and inserts in a DO
    block acts on dev's tables; prod's stay as prod built them."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    script = (
        "-- kind: sql\n"
        "create schema if not exists audit authorization current_user;\n"
        "create table audit.events as select 1 as id;\n"
        "comment on table audit.events is 'built';\n"
        "grant select on audit.events to public;\n"
        "do $$ begin insert into audit.events values (2); end $$;\n"
    )
    files = {
        "setup/audit.sql": script,
        "report/counts.sql": "select count(*) as n from audit.events",
    }
    root = write_project(tmp_path, targets_toml(pg_url, pg_url), files)
    assert run_json("build", project=root)[0] == 0  # prod
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0, payload
    assert query(pg_url, root, "select n from report_dev.counts") == [(2,)]
    assert query(pg_url, root, "select count(*) from audit.events") == [(2,)]  # prod's own
    comment = "select obj_description(%s::regclass)"
    assert query(pg_url, root, comment.replace("%s", "'audit_dev.events'")) == [("built",)]


def test_a_python_step_refs_the_projects_names_on_every_target(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ctx.ref("staging.people")``, as the step is written for every target, names the
    relation the target builds (``staging_dev.people`` on dev). It failed on dev: "is not a
    dependency (declared: staging_dev.people)". The name as built refs it too."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    step = (
        "# depends: staging.people\n"
        "def run(ctx):\n"
        "    assert ctx.ref('staging.people') == ctx.ref(ctx.relation.split('.')[0].replace("
        "'lab', 'staging') + '.people') == ctx.ref('people')\n"
        "    ctx.execute(f\"create table {ctx.table} as select id from {ctx.ref('staging.people')}\")\n"
    )
    files = {"staging/people.sql": "select 1 as id", "lab/pivot.py": step}
    root = write_project(tmp_path, targets_toml(target_url, target_url), files)
    for target in ("dev", "prod"):
        code, payload = run_json("build", "--target", target, project=root)
        assert code == 0, payload
    assert query(target_url, root, "select id from lab_dev.pivot") == [(1,)]
    assert query(target_url, root, "select id from lab.pivot") == [(1,)]


def test_a_target_writes_its_dumps_in_its_own_output_folder(
    tmp_path: Path, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[targets.dev] output = "exports_dev"``: dev's dumps are written there, and the file
    prod wrote stays as it is. Before, every target wrote the same file, so a dev build
    replaced the export prod's readers take. No target's folder is read as part of the
    project (a CSV in one is no seed on another target)."""
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    toml = targets_toml(target_url, target_url).replace(
        'schema_suffix = "_dev"', 'schema_suffix = "_dev"\noutput = "exports_dev"'
    )
    files = {
        "staging/people.sql": "select 1 as id, '{{ greeting }}' as greeting",
        "api/people_csv.sql": "-- kind: dump\nselect id, greeting from staging.people",
    }
    root = write_project(tmp_path, toml, files)
    assert run_json("build", project=root)[0] == 0  # prod
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0, payload
    assert (root / "exports/people_csv.csv").read_text().splitlines() == ["id,greeting", "1,hello"]
    assert (root / "exports_dev/people_csv.csv").read_text().splitlines() == ["id,greeting", "1,hi"]
    for target in ("prod", "dev", "mapped"):  # neither folder holds a model on any target
        models = set(load_project(root, target=target, use_cache=False).models)
        assert len(models) == 2, (target, models)
    code, plan = run_json("plan", "--target", "prod", project=root)
    assert code == 0 and to_run(plan) == set(), plan


def test_a_target_in_another_database_has_its_own_state(
    tmp_path: Path, duckdb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBLUIGI_TARGET", raising=False)
    other = f"duckdb:///{tmp_path / 'other.duckdb'}"
    root = write_project(tmp_path / "p", targets_toml(duckdb_url, other).replace("_dev", ""))
    (root / ".dbluigi").mkdir()
    assert run_json("build", project=root)[0] == 0
    code, payload = run_json("build", "--target", "dev", project=root)
    assert code == 0 and "staging.people" in ran(payload)
    assert query(other, root, "select distinct greeting from staging.people") == [("hi",)]
    code, payload = run_json("build", "--target", "prod", project=root)
    assert code == 0 and ran(payload) == set()


def test_switching_a_schema_variable_back_runs_nothing(tmp_path: Path, target_url: str) -> None:
    files = {
        "setup/tables.sql": (
            "-- kind: sql\ncreate table {{ schema }}.x (k integer);\n"
            "insert into {{ schema }}.x values (1);\n"
        ),
    }
    root = write_project(tmp_path, f'[target]\nurl = "{target_url}"\n', files)
    for schema in ("a", "b"):
        run("build", "--var", f"schema={schema}", project=root)  # creates its schema
    for schema, expected in (("a", set()), ("b", set())):
        code, payload = run_json("build", "--var", f"schema={schema}", project=root)
        assert code == 0 and ran(payload) == expected, payload
