"""Names that break the protocol (issue 12): every name dbluigi derives from a model's
name fits the target's identifier limit and never collides; names a model may not take
are refused; a DuckDB file may have any name."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbluigi.errors import ProjectError
from dbluigi.names import (
    aside_name,
    failed_name,
    fit,
    index_name,
    partition_name,
    reserved_name,
)
from dbluigi.project import load_project
from dbluigi.targets import open_target
from tests.buildkit import build_json, cli, query
from tests.test_build import write_project

PG = 63

# -- the naming function ----------------------------------------------------------------


def test_short_names_keep_their_readable_form() -> None:
    assert aside_name("agencies", PG) == "agencies__dbluigi_new"
    assert failed_name("agencies", PG) == "agencies__dbluigi_failed"
    assert partition_name("t", "2020", PG) == "t__dbluigi_p_2020"
    assert index_name("t", ("a", "b"), unique=False, limit=PG) == "t__a_b_idx"
    assert fit("t", "_x", None) == "t_x"


def test_long_names_fit_and_never_collide() -> None:
    # two names of 60 characters that differ only past the point where they are cut
    a, b = "a" * 59 + "1", "a" * 59 + "2"
    for derive in (aside_name, failed_name):
        names = {derive(a, PG), derive(b, PG)}
        assert len(names) == 2
        assert all(len(n.encode()) <= PG for n in names)
        assert derive(a, PG) == derive(a, PG)  # stable
    years = {partition_name("x" * 50, str(y), PG) for y in range(2000, 2031)}
    assert len(years) == 31 and all(len(n.encode()) <= PG for n in years)
    assert {n.rpartition("__dbluigi_p_")[2] for n in years} == {str(y) for y in range(2000, 2031)}
    # the aside and the failed table of one name differ from each other and from others'
    assert len({aside_name(a, PG), failed_name(a, PG), aside_name(b, PG)}) == 3


def _head(derived: str, suffix: str) -> str:
    """The part of a fitted name taken from the model's name."""
    assert derived.endswith(suffix)
    kept = derived[: -len(suffix)]
    head, _, digest = kept.rpartition("_")
    assert len(digest) == 10 and all(c in "0123456789abcdef" for c in digest)
    return head


def test_limit_counts_bytes_and_cuts_on_a_character_boundary() -> None:
    for name in ("é" * 40, "数据" * 12 + "x", "ÿ" + "a" * 50 + "é"):
        for derived, suffix in (
            (aside_name(name, PG), "__dbluigi_new"),
            (failed_name(name, PG), "__dbluigi_failed"),
            (partition_name(name, "2020", PG), "__dbluigi_p_2020"),
        ):
            assert len(derived.encode()) <= PG
            head = _head(derived, suffix)
            assert head and name.startswith(head)  # whole characters of the name
    # a name that fits as characters but not as bytes is shortened
    name = "é" * 30  # 30 characters, 60 bytes
    assert len(aside_name(name, PG).encode()) <= PG
    assert aside_name(name, None) == name + "__dbluigi_new"  # no limit (DuckDB)


def test_partition_values_that_are_not_plain_are_hashed() -> None:
    assert partition_name("t", "été 2020", PG) != partition_name("t", "été 2021", PG)
    assert " " not in partition_name("t", "été 2020", PG)
    long_value = "v" * 40
    assert partition_name("t", long_value, PG) != partition_name("t", long_value + "w", PG)


def test_index_names_are_as_before() -> None:
    # fitted as index names always were, so existing indexes keep being recognized
    assert index_name("x" * 60, ("a",), unique=False, limit=PG) == "x" * 48 + "_2981aee803_idx"
    assert index_name("é" * 40, ("a", "b"), unique=True, limit=PG) == "é" * 23 + "_c8fa8eb13e_uidx"


def test_reserved_names() -> None:
    assert reserved_name("main", "x__dbluigi_new") is not None
    assert reserved_name("main", "x__dbluigi_failed") is not None
    assert reserved_name("main", "a__dbluigi_p_2020") is not None
    assert reserved_name("dbluigi", "runs") is not None
    assert reserved_name("main", "dbluigi") is None
    assert reserved_name("main", "x__dbluigi") is None


# -- names a model may not take ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("x__dbluigi_new.sql", "names containing __dbluigi_ are the tables dbluigi builds aside"),
        ("x__dbluigi_failed.csv", "names containing __dbluigi_ are the tables dbluigi builds"),
        ("dbluigi/runs.sql", "schema dbluigi holds dbluigi's own state tables"),
    ],
)
def test_a_model_named_like_dbluigi_s_own_tables_is_refused(
    tmp_path: Path, duckdb_url: str, path: str, why: str
) -> None:
    # model x's build would drop x__dbluigi_new and x__dbluigi_failed as its own leftovers
    content = "id\n1\n" if path.endswith(".csv") else "select 2 as id"
    write_project(tmp_path, {"x.sql": "select 1 as id", path: content})
    with pytest.raises(ProjectError) as raised:
        load_project(tmp_path, use_cache=False)
    assert raised.value.path == path and why in raised.value.message
    code, output = cli("build", project=tmp_path, target=duckdb_url)
    assert code == 2 and path in output and "cannot be a model" in output
    assert not Path(duckdb_url.removeprefix("duckdb:///")).exists()  # nothing ran


def test_a_model_writing_the_state_schema_is_refused(tmp_path: Path) -> None:
    write_project(tmp_path, {"fix.sql": "delete from dbluigi.models where model = 'main.x'"})
    with pytest.raises(ProjectError) as raised:
        load_project(tmp_path, use_cache=False)
    assert raised.value.path == "fix.sql"
    assert "a model may not write dbluigi.models" in raised.value.message


def test_a_name_the_target_would_cut_is_refused_before_anything_runs(
    tmp_path: Path, target_url: str
) -> None:
    name = "é" * 32  # 32 characters, 64 bytes: PostgreSQL would keep 63 of them
    write_project(tmp_path, {f"{name}.sql": "select 1 as id", "ok.sql": "select 1 as id"})
    code, output = cli("build", project=tmp_path, target=target_url)
    if target_url.startswith("duckdb"):  # no limit there
        assert code == 0
        assert query(target_url, tmp_path, f'select id from main."{name}"') == [(1,)]
        return
    assert code == 2
    assert f"{name}.sql" in output and "is 64 bytes long" in output
    assert "keeps only 63 bytes of a name" in output
    assert query(
        target_url, tmp_path, "select count(*) from pg_namespace where nspname = 'dbluigi'"
    ) == [(0,)]


# -- long names on the target (the cases) ----------------------------------------------


def _limit(target_url: str, project: Path) -> int | None:
    return open_target(target_url, project_dir=project).max_identifier_bytes


def _internal_tables(target_url: str, project: Path, schema: str) -> set[str]:
    session = open_target(target_url, project_dir=project).connect()
    try:
        return {n for s, n in session.relations(schema) if "__dbluigi_" in n}
    finally:
        session.close()


def test_a_long_partitioned_model_publishes_every_value_once(
    tmp_path: Path, target_url: str
) -> None:
    name = "p" * 50  # its partition tables were cut to one name by PostgreSQL
    write_project(tmp_path, {f"{name}.sql": "-- partition: y in 2000..2030\nselect {{ y }} as y"})
    code, _ = build_json(project=tmp_path, target=target_url)
    assert code == 0
    sql = f'select count(*), count(distinct y), min(y), max(y) from main."{name}"'
    assert query(target_url, tmp_path, sql) == [(31, 31, 2000, 2030)]
    assert len(_internal_tables(target_url, tmp_path, "main")) == 31  # the partitions' tables

    # shrinking the range drops the tables of the values that went, hashed names and all
    write_project(tmp_path, {f"{name}.sql": "-- partition: y in 2000..2009\nselect {{ y }} as y"})
    code, _ = build_json(project=tmp_path, target=target_url)
    assert code == 0
    assert query(target_url, tmp_path, sql) == [(10, 10, 2000, 2009)]
    limit = _limit(target_url, tmp_path)
    assert _internal_tables(target_url, tmp_path, "main") == {
        partition_name(name, str(y), limit) for y in range(2000, 2010)
    }


def test_a_long_model_with_a_failing_check_keeps_its_failed_table(
    tmp_path: Path, target_url: str
) -> None:
    name = "c" * 58  # its aside table's name was cut: "relation does not exist", class syntax
    model = "-- check: unique(id)\nselect 1 as id union all select {{ second }} as id\n"
    write_project(tmp_path, {f"{name}.sql": model, "dbluigi.toml": "[vars]\nsecond = '1'\n"})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    (result,) = payload["tasks"]
    assert result["status"] == "failed" and result["failure_class"] == "check"
    failed = failed_name(name, _limit(target_url, tmp_path))
    assert f"kept as main.{failed}" in result["error"]
    assert query(target_url, tmp_path, f'select id from main."{failed}"') == [(1,), (1,)]

    code, payload = build_json("--var", "second=2", project=tmp_path, target=target_url)
    assert code == 0
    assert query(target_url, tmp_path, f'select id from main."{name}" order by id') == [
        (1,),
        (2,),
    ]
    assert _internal_tables(target_url, tmp_path, "main") == set()


# -- DuckDB files of any name ----------------------------------------------------------------


@pytest.mark.parametrize(
    "filename", ["dbluigi.duckdb", "raw.duckdb", "memory.duckdb", "dbluigi_target.duckdb"]
)
def test_a_duckdb_file_may_have_any_name(tmp_path: Path, filename: str) -> None:
    # DuckDB names a database after its file: raw.raw, dbluigi.dbluigi were ambiguous
    project = write_project(
        tmp_path / "project",
        {
            "raw/offenses.csv": "id,n\n1,2\n2,3\n",
            "memory/totals.sql": "-- check: unique(id)\nselect id, n * 10 as n from raw.offenses",
            "report.sql": "select sum(n) as total from memory.totals",
        },
    )
    target = f"duckdb:///{tmp_path / filename}"
    code, payload = build_json(project=project, target=target)
    assert code == 0, payload
    assert query(target, project, "select total from main.report") == [(50,)]
    code, payload = build_json(project=project, target=target)
    assert code == 0 and {r["status"] for r in payload["tasks"]} == {"up to date"}


def test_a_schema_duckdb_keeps_for_itself_is_a_config_error(
    tmp_path: Path, target_url: str
) -> None:
    write_project(tmp_path, {"system/settings.sql": "select 1 as id"})
    code, output = cli("build", project=tmp_path, target=target_url)
    if target_url.startswith("postgres"):
        assert code == 0
        return
    assert code == 2
    assert "system/settings.sql" in output and "schema 'system' is one of duckdb's own" in output


# -- end to end: long, non-ASCII names on both targets -----------------------------------------

SCHEMA = "数é" + "s" * 58  # 60 characters, 63 bytes
MODEL = "ÿ" + "m" * 58 + "é"  # 60 characters, 62 bytes
READER = "报" + "r" * 60  # 61 characters, 63 bytes
PARTITIONED = "ÿ" + "p" * 58 + "数"  # 60 characters, 63 bytes
REGIONS = (
    "Île-de-France et ses départements: Paris, Essonne, Hauts-de-Seine, Yvelines",
    "北京市东城区西城区朝阳区丰台区石景山区海淀区门头沟区房山区通州区顺义区昌平区大兴区怀柔区平谷区密云区延庆区",
)


def _model_sql(rows: str) -> str:
    return f"-- check: unique(id)\nselect * from (values {rows}) as v(id, label)\n"


def test_long_non_ascii_names_build_fail_a_check_and_publish(
    tmp_path: Path, target_url: str
) -> None:
    table = f'"{SCHEMA}"."{MODEL}"'
    regions = ", ".join(f"'{r}'" for r in REGIONS)
    files = {
        f"{SCHEMA}/{MODEL}.sql": _model_sql("(1, 'a'), (2, 'c')"),
        f"{SCHEMA}/{MODEL}.check.sql": f"select id from {table} where label = 'b'\n",
        f"{SCHEMA}/{READER}.sql": f"select count(*) as n from {table}\n",
        f"{SCHEMA}/{PARTITIONED}.sql": (
            f"-- partition: region in ({regions})\n-- check: unique(region)\n"
            "select '{{ region }}' as region, 1 as id\n"
        ),
    }
    write_project(tmp_path, files)
    limit = _limit(target_url, tmp_path)
    rows = f"select id, label from {table} order by id"

    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, rows) == [(1, "a"), (2, "c")]
    assert query(target_url, tmp_path, f'select n from "{SCHEMA}"."{READER}"') == [(2,)]
    regions_sql = f'select region from "{SCHEMA}"."{PARTITIONED}" order by region'
    assert [r[0] for r in query(target_url, tmp_path, regions_sql)] == sorted(REGIONS)
    kept = set(partition_name(PARTITIONED, r, limit) for r in REGIONS)
    assert _internal_tables(target_url, tmp_path, SCHEMA) == kept  # the partitions' cache

    # both checks fail: the header's unique(id) and the .check.sql
    write_project(tmp_path, {f"{SCHEMA}/{MODEL}.sql": _model_sql("(1, 'a'), (1, 'b')")})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 1
    results = {r["model"]: r for r in payload["tasks"] if r["partition"] is None}
    failed = results[f"{SCHEMA}.{MODEL}"]
    assert failed["status"] == "failed" and failed["failure_class"] == "check"
    assert "unique(id)" in failed["error"] and "1 more failed" in failed["error"]
    failed_table = failed_name(MODEL, limit)
    assert f"kept as {SCHEMA}.{failed_table}" in failed["error"]
    assert len(failed_table.encode()) <= (limit or 1000)
    assert query(
        target_url, tmp_path, f'select id, label from "{SCHEMA}"."{failed_table}" order by label'
    ) == [(1, "a"), (1, "b")]
    assert query(target_url, tmp_path, rows) == [(1, "a"), (2, "c")]  # as it was
    assert results[f"{SCHEMA}.{READER}"]["failure_class"] == "upstream"
    assert _internal_tables(target_url, tmp_path, SCHEMA) == kept | {failed_table}

    # fixed: published, the failed table dropped, the reader rebuilt
    write_project(tmp_path, {f"{SCHEMA}/{MODEL}.sql": _model_sql("(1, 'a'), (3, 'c')")})
    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0, payload
    assert query(target_url, tmp_path, rows) == [(1, "a"), (3, "c")]
    assert query(target_url, tmp_path, f'select n from "{SCHEMA}"."{READER}"') == [(2,)]
    assert _internal_tables(target_url, tmp_path, SCHEMA) == kept

    code, payload = build_json(project=tmp_path, target=target_url)
    assert code == 0 and {r["status"] for r in payload["tasks"]} == {"up to date"}
