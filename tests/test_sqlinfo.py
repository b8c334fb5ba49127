"""What a SQL file reads, writes and is: dbluigi.sqlinfo."""

from __future__ import annotations

import json

import pytest
import sqlglot

from dbluigi.errors import SqlParseError
from dbluigi.sqlinfo import (
    SqlInfo,
    Statement,
    TableRef,
    Unparsed,
    analyze_sql,
    replace_relations,
    split_statements,
)

pytestmark = pytest.mark.unit

DIALECTS = ("postgres", "duckdb")


def analyze(sql: str, dialect: str = "postgres", **kwargs: object) -> SqlInfo:
    return analyze_sql(sql, dialect=dialect, path="models/m.sql", **kwargs)  # type: ignore[arg-type]


def names(refs: tuple[TableRef, ...]) -> list[str]:
    return [r.qualified for r in refs]


def reads(sql: str, dialect: str = "postgres") -> list[str]:
    return names(analyze(sql, dialect).reads)


def writes(sql: str, dialect: str = "postgres") -> list[str]:
    return names(analyze(sql, dialect).writes)


def same_sql(a: str, b: str, dialect: str) -> bool:
    """Equal syntax trees, statement by statement."""
    return sqlglot.parse(a, read=dialect) == sqlglot.parse(b, read=dialect)


# --- TableRef -----------------------------------------------------------------------------


def test_table_ref_qualified_name() -> None:
    assert TableRef("staging", "agencies").qualified == "staging.agencies"
    assert TableRef(None, "agencies").qualified == "agencies"


# --- splitting ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_split_ignores_semicolons_in_strings_and_comments(dialect: str) -> None:
    text = "select 'a;b' as x /* ; */ from t;\n-- c;omment\nselect 2 -- tail ;\n"
    assert split_statements(text, dialect=dialect, path="f.sql") == [
        ("select 'a;b' as x /* ; */ from t", 1),
        ("-- c;omment\nselect 2 -- tail ;", 2),
    ]


def test_split_keeps_dollar_quoted_function_body_whole() -> None:
    text = (
        "-- kind: sql\n"
        "create or replace function bump() returns int language plpgsql as $$\n"
        "begin\n"
        "  update counters set n = n + 1;\n"
        "  return 1;\n"
        "end;\n"
        "$$;\n"
        "\n"
        "select bump();\n"
    )
    statements = split_statements(text, dialect="postgres", path="f.sql")
    assert [line for _, line in statements] == [1, 9]
    assert statements[0][0].startswith("-- kind: sql\ncreate or replace function")
    assert statements[0][0].endswith("end;\n$$")
    info = analyze(text)
    assert [s.kind for s in info.statements] == ["create_function", "query"]
    assert info.reads == () and info.writes == ()  # a function body runs later, if ever


def test_split_keeps_begin_atomic_function_body_whole() -> None:
    text = (
        "create function sign_of(a int) returns int language sql\n"
        "begin atomic\n"
        "  select case when a > 0 then 1 else 0 end;\n"
        "  insert into calls values (a);\n"
        "end;\n"
        "select sign_of(1) from s"
    )
    info = analyze(text)
    assert [(s.kind, s.line) for s in info.statements] == [("create_function", 1), ("query", 6)]
    assert info.statements[0].sql.endswith("values (a);\nend")
    assert names(info.reads) == ["s"] and info.writes == ()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_split_drops_empty_statements_and_adds_line_offset(dialect: str) -> None:
    text = "\n;\n  select 1;  ;\n-- only a comment\n;\n\nselect 2\n-- the end\n"
    assert split_statements(text, dialect=dialect, path="f.sql", line_offset=10) == [
        ("select 1", 13),
        ("select 2\n-- the end", 17),
    ]


def test_comment_after_semicolon_stays_with_its_line() -> None:
    text = "select 1; -- first\n-- about the second\nselect 2"
    assert split_statements(text, dialect="postgres", path="f.sql") == [
        ("select 1", 1),
        ("-- about the second\nselect 2", 2),
    ]


def test_statement_records_original_text_line_and_kind() -> None:
    text = "-- kind: sql\n-- depends: raw.x\nDELETE FROM t WHERE A = 'x;y';\nSELECT  *  FROM t"
    assert analyze(text).statements == (
        Statement("-- kind: sql\n-- depends: raw.x\nDELETE FROM t WHERE A = 'x;y'", 1, "delete"),
        Statement("SELECT  *  FROM t", 4, "query"),
    )


# --- reads --------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_names_are_not_tables(dialect: str) -> None:
    sql = """
        with a as (select * from raw.x),
             b as (select * from a join raw.y using (id))
        select * from b join a on a.id = b.id
    """
    assert reads(sql, dialect) == ["raw.x", "raw.y"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_derived_table_aliases_are_not_tables(dialect: str) -> None:
    sql = "select * from (select * from raw.x) as sub join (select 1 as id) one on true"
    assert reads(sql, dialect) == ["raw.x"]


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("postgres", "select * from generate_series(1, 10) as g(n)"),
        ("duckdb", "select * from generate_series(1, 10) g(n)"),
        ("duckdb", "select * from range(5)"),
        ("duckdb", "select * from read_csv('data/x.csv')"),
        ("duckdb", "select * from read_parquet(['a.parquet', 'b.parquet'])"),
        ("duckdb", "select * from 'data/x.csv'"),
        ("postgres", "select * from unnest(array[1, 2]) as u(n)"),
        ("duckdb", "select * from unnest([1, 2])"),
        ("postgres", "select * from my_set_returning_function(1) f"),
        ("postgres", "values (1), (2)"),
    ],
)
def test_table_functions_and_files_are_not_tables(dialect: str, sql: str) -> None:
    assert reads(sql, dialect) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_lateral_functions_and_subqueries(dialect: str) -> None:
    sql = """
        select * from raw.t
        cross join lateral (select * from raw.u where u.id = t.id) l
        cross join lateral unnest(t.arr) as e(v)
    """
    assert reads(sql, dialect) == ["raw.t", "raw.u"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_shadowing_a_table_still_reads_the_table(dialect: str) -> None:
    assert reads("with orders as (select * from orders) select * from orders", dialect) == [
        "orders"
    ]
    # a qualified name is never the CTE
    sql = "with orders as (select 1 as id) select * from orders join raw.orders o using (id)"
    assert reads(sql, dialect) == ["raw.orders"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_recursive_cte_self_reference_is_not_a_table(dialect: str) -> None:
    sql = """
        with recursive tree as (
            select id, parent_id from raw.nodes where parent_id is null
            union all
            select n.id, n.parent_id from raw.nodes n join tree on n.parent_id = tree.id
        )
        select * from tree
    """
    assert reads(sql, dialect) == ["raw.nodes"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_references_in_every_corner_of_a_query(dialect: str) -> None:
    sql = """
        select a.id, (select max(v) from s.scalar_sub) as m
        from s.a a
        join s.b b on a.id = b.id
        left join s.c c on c.id = a.id
        where a.id in (select id from s.in_sub)
          and exists (select 1 from s.exists_sub e where e.id = a.id)
        group by a.id
        having count(*) > (select count(*) from s.having_sub)
        union all
        select id, 0 from s.union_branch
        intersect
        select id, 0 from s.intersect_branch
        except
        select id, 0 from s.except_branch
    """
    assert reads(sql, dialect) == [
        "s.a",
        "s.b",
        "s.c",
        "s.except_branch",
        "s.exists_sub",
        "s.having_sub",
        "s.in_sub",
        "s.intersect_branch",
        "s.scalar_sub",
        "s.union_branch",
    ]


@pytest.mark.parametrize(
    ("sql", "expected_reads", "expected_writes"),
    [
        ("insert into t (a) select a from s join u using (id)", ["s", "u"], ["t"]),
        ("update t set x = s.y from s where t.id = s.id", ["s"], ["t"]),
        ("update t set x = (select max(y) from s where s.id = t.id)", ["s"], ["t"]),
        ("delete from t using s where t.id = s.id", ["s"], ["t"]),
        ("delete from t where id in (select id from s)", ["s"], ["t"]),
        ("create table t as select * from s", ["s"], ["t"]),
        ("create view v as with c as (select * from s) select * from c", ["s"], ["v"]),
        (
            "merge into t using s on t.id = s.id "
            "when matched then update set x = s.x when not matched then insert (id) values (s.id)",
            ["s"],
            ["t"],
        ),
        (
            "merge into t using (select * from s join u using (id)) as src on t.id = src.id "
            "when matched then delete",
            ["s", "u"],
            ["t"],
        ),
    ],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_reads_and_writes_of_dml_and_ddl(
    dialect: str, sql: str, expected_reads: list[str], expected_writes: list[str]
) -> None:
    info = analyze(sql, dialect)
    assert names(info.reads) == expected_reads
    assert names(info.writes) == expected_writes


@pytest.mark.parametrize("dialect", DIALECTS)
def test_write_target_is_not_a_read(dialect: str) -> None:
    info = analyze("update t set a = (select max(a) from t)", dialect)
    assert info.reads == ()
    assert info.writes == (TableRef(None, "t"),)
    assert reads("insert into s.t select * from s.t where false", dialect) == []


# --- writes and kinds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind", "expected_writes"),
    [
        ("insert into s.t values (1)", "insert", ["s.t"]),
        ("insert into s.t (a, b) values (1, 2)", "insert", ["s.t"]),
        ("update s.t set a = 1", "update", ["s.t"]),
        ("delete from s.t where a = 1", "delete", ["s.t"]),
        ("merge into s.t using s.u on t.id = u.id when matched then delete", "merge", ["s.t"]),
        ("truncate table s.t", "truncate", ["s.t"]),
        ("alter table s.t add column c int", "alter", ["s.t"]),
        ("alter table s.t rename to u", "alter", ["s.t", "s.u"]),
        ("create index ix_t_a on s.t (a)", "create_index", ["s.t"]),
        ("drop table if exists s.t", "drop", ["s.t"]),
        ("drop view s.v", "drop", ["s.v"]),
        ("drop index s.ix_t_a", "drop", []),
        ("create table s.t (a int, b text)", "create_table", ["s.t"]),
        ("create table s.t as select 1 as a", "create_table", ["s.t"]),
        ("create or replace view s.v as select 1 as a", "create_view", ["s.v"]),
        ("create view s.v (a) as select 1", "create_view", ["s.v"]),
        ("create schema if not exists s", "create_schema", []),
        ("select 1", "query", []),
        ("select * from s.t union select * from s.u", "query", []),
        ("with c as (select 1) select * from c", "query", []),
        ("values (1), (2)", "query", []),
        ("set search_path = s", "other", []),
        ("begin", "other", []),
    ],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_statement_kinds_and_write_targets(
    dialect: str, sql: str, kind: str, expected_writes: list[str]
) -> None:
    info = analyze(sql, dialect)
    assert [s.kind for s in info.statements] == [kind]
    assert names(info.writes) == expected_writes


def test_postgres_only_write_kinds() -> None:
    assert writes("truncate s.t, s.u") == ["s.t", "s.u"]
    assert writes("drop table s.t, s.u cascade") == ["s.t", "s.u"]
    assert writes("create unique index if not exists ix on s.t using btree (a)") == ["s.t"]
    assert writes("create materialized view s.mv as select 1") == ["s.mv"]
    info = analyze("select * into s.snapshot from s.t")
    assert (info.statements[0].kind, names(info.reads), names(info.writes)) == (
        "create_table",
        ["s.t"],
        ["s.snapshot"],
    )


def test_postgres_functions_and_procedures() -> None:
    info = analyze(
        "create procedure s.p() language plpgsql as $$ begin delete from s.t; end $$;\n"
        "call s.p();\n"
        # sqlglot keeps this one as an opaque Command; its kind is still recognised
        "create function s.f() returns trigger as $$ begin return new; end $$ "
        "language plpgsql security definer;\n"
        "do $$ begin perform 1; end $$;\n"
        "refresh materialized view s.mv"
    )
    assert [s.kind for s in info.statements] == [
        "create_procedure",
        "other",
        "create_function",
        "other",
        "other",
    ]
    assert info.reads == () and info.writes == ()


def test_duckdb_macro_is_a_function() -> None:
    info = analyze("create macro add_one(a) as a + 1", "duckdb")
    assert [s.kind for s in info.statements] == ["create_function"]


def test_data_modifying_cte() -> None:
    info = analyze(
        "with gone as (delete from s.t where old returning *) insert into s.archive select * from gone"
    )
    assert names(info.reads) == []
    assert names(info.writes) == ["s.archive", "s.t"]


def test_tables_created_earlier_in_the_file_are_not_inputs() -> None:
    info = analyze(
        "insert into s.log select * from s.pending;\n"
        "create table s.stage as select * from raw.x;\n"
        "create temporary table scratch as select * from s.stage;\n"
        "insert into s.out select * from scratch join raw.y using (id);\n"
        "drop table scratch"
    )
    assert names(info.reads) == ["raw.x", "raw.y", "s.pending"]
    # a temporary table lives for the session: nobody's relation
    assert names(info.writes) == ["s.log", "s.out", "s.stage"]


def test_mysql_is_accepted() -> None:
    info = analyze("update t join s on t.id = s.id set t.a = s.a; select * from Db.T", "mysql")
    assert [s.kind for s in info.statements] == ["update", "query"]
    assert names(info.reads) == ["s", "Db.T"]  # MySQL on Linux: names are case-sensitive
    assert names(info.writes) == ["t"]


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unquoted_names_fold_to_lower_case(dialect: str) -> None:
    sql = "WITH Recent AS (SELECT * FROM Staging.Orders) SELECT * FROM recent JOIN RAW.Items USING (id)"
    assert reads(sql, dialect) == ["raw.items", "staging.orders"]


def test_quoted_names_keep_their_case_in_postgres() -> None:
    assert reads('select * from "Staging"."Orders" join staging.orders using (id)') == [
        "Staging.Orders",
        "staging.orders",
    ]
    # a quoted CTE name only matches the same quoted spelling
    assert reads('with "Recent" as (select 1) select * from "Recent", recent') == ["recent"]


def test_quoted_names_fold_in_duckdb_because_duckdb_ignores_case() -> None:
    assert reads('select * from "Staging"."Orders" join staging.orders using (id)', "duckdb") == [
        "staging.orders"
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_catalog_is_dropped_and_schema_kept(dialect: str) -> None:
    info = analyze("insert into warehouse.s.t select * from lake.raw.x join y using (id)", dialect)
    assert info.reads == (TableRef(None, "y"), TableRef("raw", "x"))
    assert info.writes == (TableRef("s", "t"),)


# --- is_query -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select 1", True),
        ("-- kind: table\nwith c as (select 1 as a) select a from c;", True),
        ("select 1 union all select 2", True),
        ("select 1 intersect select 1", True),
        ("select 1 except select 2", True),
        ("(select 1)", True),
        ("values (1), (2)", True),
        ("select 1; select 2", False),
        ("insert into t select 1", False),
        ("create table t as select 1", False),
        ("select 1 into t", False),
        ("", False),
        ("-- only a comment", False),
    ],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_is_query(dialect: str, sql: str, expected: bool) -> None:
    assert analyze(sql, dialect).is_query is expected


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_parse_error_names_file_and_line(dialect: str) -> None:
    text = (
        "-- kind: table\n"
        "-- description: agencies\n"
        "select id\n"
        "from raw.agencies;\n"
        "select (id from raw.other\n"
    )
    with pytest.raises(SqlParseError) as caught:
        analyze_sql(text, dialect=dialect, path="staging/agencies.sql")
    error = caught.value
    assert error.path == "staging/agencies.sql"
    assert error.line == 5
    assert error.failure_class == "syntax"
    assert error.message == "cannot parse SQL: Expecting ) near 'from'"
    assert str(error).startswith("staging/agencies.sql:5: cannot parse SQL")
    assert f"dialect {dialect}" in str(error) and "-- depends:" in str(error)


def test_parse_error_line_counts_the_line_offset() -> None:
    with pytest.raises(SqlParseError) as caught:
        analyze_sql(
            "select 1;\n\nselect * from t where a = ;",
            dialect="postgres",
            path="f.sql",
            line_offset=4,
        )
    assert caught.value.line == 7
    assert "missing for EQ near '='" in caught.value.message  # not sqlglot's Python class repr


def test_unclosed_string_points_at_its_opening_line() -> None:
    with pytest.raises(SqlParseError) as caught:
        analyze_sql("select 1;\nselect 'abc\nfrom t\n\n", dialect="duckdb", path="f.sql")
    assert caught.value.line == 2
    assert caught.value.message == "cannot parse SQL: ' opened here is never closed"
    with pytest.raises(SqlParseError):
        split_statements("select $$ never closed", dialect="postgres", path="f.sql")


# --- SQL sqlglot cannot parse, run as written ----------------------------------------------

UNPARSABLE = (
    "-- depends: raw.items\n"
    "update raw.items set n = 0;\n"
    "select id\nfrom raw.items\norder by id using <;\n"
    "with w as (select 1) insert into raw.log select * from w order by 1 using <\n"
)


def test_a_statement_sqlglot_cannot_parse_is_kept_as_written() -> None:
    info = analyze(UNPARSABLE, as_written=True)
    update, query, insert = info.statements
    assert update == Statement("-- depends: raw.items\nupdate raw.items set n = 0", 1, "update")
    assert query == Statement(
        "select id\nfrom raw.items\norder by id using <",
        3,
        "query",  # guessed from its first word
        Unparsed(5, "Invalid expression / Unexpected token near 'using'"),
    )
    assert insert.kind == "other" and insert.unparsed is not None  # WITH ... INSERT
    # nothing is inferred from the unparsed statements: raw.items and raw.log go unread
    assert (info.reads, info.writes) == ((), (TableRef("raw", "items"),))
    assert SqlInfo.from_json(json.loads(json.dumps(info.to_json()))) == info


def test_without_as_written_the_statement_is_an_error_that_says_how_to_run_it() -> None:
    with pytest.raises(SqlParseError) as caught:
        analyze(UNPARSABLE)
    assert caught.value.line == 5
    assert "-- depends:" in str(caught.value) and "runs it as written" in str(caught.value)
    # a statement that cannot even be split off stays an error
    with pytest.raises(SqlParseError, match="never closed") as caught:
        analyze("select 1;\nselect 'abc\nfrom t", as_written=True)
    assert "unclosed quote" in str(caught.value.hint)


# --- replace_relations --------------------------------------------------------------------

NEW = {TableRef("staging", "agencies"): TableRef("staging", "agencies__dbluigi_new")}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "select * from staging.agencies where agencies.id = 1",
            "select * from staging.agencies__dbluigi_new as agencies where agencies.id = 1",
        ),
        (
            "select a.id from Staging.Agencies a join staging.other o on a.id = o.id",
            "select a.id from staging.agencies__dbluigi_new a join staging.other o on a.id = o.id",
        ),
        (
            "with agencies as (select * from staging.agencies) select * from agencies",
            "with agencies as (select * from staging.agencies__dbluigi_new as agencies) "
            "select * from agencies",
        ),
        (
            "select * from raw.agencies join staging.agencies s using (id)",
            "select * from raw.agencies join staging.agencies__dbluigi_new s using (id)",
        ),
        (
            "update staging.agencies set name = trim(name) where agencies.id in "
            "(select id from staging.agencies where name like ' %')",
            "update staging.agencies__dbluigi_new as agencies set name = trim(name) "
            "where agencies.id in (select id from staging.agencies__dbluigi_new as agencies "
            "where name like ' %')",
        ),
        (
            "delete from staging.agencies where agencies.id < 0;\n"
            "insert into staging.agencies (id) values (1);\n"
            "create index on staging.agencies (id)",
            "delete from staging.agencies__dbluigi_new as agencies where agencies.id < 0;\n"
            "insert into staging.agencies__dbluigi_new (id) values (1);\n"
            "create index on staging.agencies__dbluigi_new (id)",
        ),
        (
            "select * from lake.staging.agencies",
            "select * from staging.agencies__dbluigi_new as agencies",
        ),
    ],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_replace_relations(dialect: str, sql: str, expected: str) -> None:
    assert same_sql(replace_relations(sql, NEW, dialect=dialect), expected, dialect)


def test_replace_relations_quotes_names_that_need_it() -> None:
    mapping = {TableRef(None, "agencies"): TableRef("Staging", "New Agencies")}
    result = replace_relations("select * from Agencies", mapping, dialect="postgres")
    assert same_sql(result, 'select * from "Staging"."New Agencies" as Agencies', "postgres")


def test_replace_relations_leaves_other_sql_alone() -> None:
    sql = 'select "Name", count(*) as "N" from other.t -- keep\ngroup by 1'
    result = replace_relations(sql, NEW, dialect="postgres")
    assert same_sql(result, sql, "postgres")
    assert "keep" in result


# --- serialisation ------------------------------------------------------------------------


def test_json_round_trip() -> None:
    info = analyze(
        '-- kind: sql\ninsert into s.t select * from "Raw".x join y using (id);\nselect 1'
    )
    data = json.loads(json.dumps(info.to_json()))
    assert SqlInfo.from_json(data) == info
    assert info.reads == (TableRef(None, "y"), TableRef("Raw", "x"))


# --- creates, modifies, references, routines, schemas (the script world) -------------------


def creates(sql: str, dialect: str = "postgres") -> list[str]:
    return names(analyze(sql, dialect).creates)


def modifies(sql: str, dialect: str = "postgres") -> list[str]:
    return names(analyze(sql, dialect).modifies)


@pytest.mark.parametrize(
    ("sql", "expected_creates", "expected_modifies"),
    [
        ("create table s.t (a int, b text)", ["s.t"], []),
        ("create table if not exists s.t (a int)", ["s.t"], []),
        ("create table s.t as select * from s.u", ["s.t"], []),
        ("create or replace view s.v as select * from s.u", ["s.v"], []),
        ("insert into s.t select * from s.u", [], ["s.t"]),
        ("update s.t set a = 1", [], ["s.t"]),
        ("delete from s.t where a = 1", [], ["s.t"]),
        ("merge into s.t using s.u on t.id = u.id when matched then delete", [], ["s.t"]),
        ("truncate table s.t", [], ["s.t"]),
        ("alter table s.t add column c int", [], ["s.t"]),
        # the old name is gone afterwards (a change of s.t), the new one is made
        ("alter table s.t rename to u", ["s.u"], ["s.t"]),
        ("alter view s.v rename to w", ["s.w"], ["s.v"]),
        ("copy s.t from 'data/t.csv'", [], ["s.t"]),
        ("create index ix_t_a on s.t (a)", [], ["s.t"]),
        ("drop table if exists s.t", [], ["s.t"]),
        ("drop view s.v", [], ["s.v"]),
        ("copy s.t to 'data/t.csv'", [], []),
        ("select * from s.t", [], []),
    ],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_creates_and_modifies(
    dialect: str, sql: str, expected_creates: list[str], expected_modifies: list[str]
) -> None:
    info = analyze(sql, dialect)
    assert names(info.creates) == expected_creates
    assert names(info.modifies) == expected_modifies
    assert names(info.writes) == sorted({*expected_creates, *expected_modifies})


def test_postgres_only_creates() -> None:
    assert creates("create materialized view s.mv as select * from s.t") == ["s.mv"]
    info = analyze("select * into s.snapshot from s.t")
    assert (names(info.creates), names(info.modifies), names(info.reads)) == (
        ["s.snapshot"],
        [],
        ["s.t"],
    )
    assert creates("select * into temporary snapshot from s.t") == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_relation_the_file_creates_is_not_also_modified(dialect: str) -> None:
    info = analyze(
        "drop table if exists s.t;\n"
        "create table s.t as select * from raw.x;\n"
        "create index ix_t on s.t (a);\n"
        "insert into s.t select * from raw.y;\n"
        "update raw.log set n = n + 1;\n"
        "alter table s.t_new rename to t_old;\n",
        dialect,
    )
    assert names(info.creates) == ["s.t", "s.t_old"]
    assert names(info.modifies) == ["raw.log", "s.t_new"]
    assert names(info.writes) == ["raw.log", "s.t", "s.t_new", "s.t_old"]
    assert names(info.reads) == ["raw.x", "raw.y"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_line_of_names_the_first_statement_writing_a_relation(dialect: str) -> None:
    info = analyze(
        "-- kind: sql\n"
        "create schema if not exists s;\n"
        "\n"
        "create table s.t (a int);\n"
        "insert into s.t values (1);\n"
        "update raw.log\n"
        "   set n = n + 1;\n"
        "delete from raw.log where n > 10;\n"
        "alter table s.t rename to u;\n"
        "select * from raw.x",
        dialect,
        line_offset=2,
    )
    assert info.line_of(TableRef("s", "t")) == 6
    assert info.line_of(TableRef("raw", "log")) == 8
    assert info.line_of(TableRef("s", "u")) == 11
    assert info.line_of(TableRef("raw", "x")) is None  # read, never written
    assert info.line_of(TableRef(None, "t")) is None  # another relation than s.t


@pytest.mark.parametrize("dialect", DIALECTS)
def test_temporary_tables_are_in_no_list(dialect: str) -> None:
    info = analyze(
        "create temporary table scratch as select * from raw.x;\n"
        "create temp view v as select * from scratch;\n"
        "create index on scratch (a);\n"
        "insert into scratch select * from raw.y;\n"
        "alter table scratch rename to scratch2;\n"
        "update scratch2 set a = 1;\n"
        "insert into s.out select * from scratch2;\n"
        "drop table scratch2",
        dialect,
    )
    assert names(info.creates) == []
    assert names(info.modifies) == ["s.out"]
    assert names(info.writes) == ["s.out"]
    assert names(info.reads) == ["raw.x", "raw.y"]
    assert info.line_of(TableRef(None, "scratch")) is None


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_names_are_not_created_modified_or_read(dialect: str) -> None:
    info = analyze(
        "insert into s.t with c as (select * from raw.x) select * from c;\n"
        "create table s.u as with t as (select * from raw.y) select * from t",
        dialect,
    )
    assert names(info.creates) == ["s.u"]
    assert names(info.modifies) == ["s.t"]
    assert names(info.reads) == ["raw.x", "raw.y"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_foreign_keys_reference_tables(dialect: str) -> None:
    info = analyze(
        "create table s.parent (id int primary key);\n"
        "create table s.child (\n"
        "  id int primary key,\n"
        "  parent_id int references s.parent (id),\n"
        "  region_id int references Raw.Regions (id),\n"
        "  manager_id int,\n"
        "  foreign key (manager_id) references s.child (id),\n"
        "  foreign key (id) references raw.people (id)\n"
        ");\n"
        "alter table s.other add constraint fk_kind foreign key (kind) references raw.kinds (id)",
        dialect,
    )
    # the file's own tables are no dependency; a foreign key is no read
    assert names(info.references) == ["raw.kinds", "raw.people", "raw.regions"]
    assert info.reads == ()
    assert names(info.creates) == ["s.child", "s.parent"]
    assert names(info.modifies) == ["s.other"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_schema(dialect: str) -> None:
    info = analyze("create schema if not exists Stg;\ncreate schema reporting", dialect)
    assert info.schemas == ("reporting", "stg")
    assert info.writes == () and info.reads == ()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_calls_of_functions_sqlglot_does_not_know(dialect: str) -> None:
    info = analyze(
        "select stg.f(x), f(y), upper(z), coalesce(a, 0), count(*), sum(b),\n"
        "       Stg.Clean_Name(n), lake.stg.g(1)\n"
        "from raw.t where stg.is_valid(t.id)",
        dialect,
    )
    assert names(info.calls) == ["f", "stg.clean_name", "stg.f", "stg.g", "stg.is_valid"]
    assert names(info.reads) == ["raw.t"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_calls_anywhere_in_any_statement(dialect: str) -> None:
    info = analyze(
        "insert into s.t select stg.f(x) from raw.x;\n"
        "update s.t set a = stg.g(a) where stg.h(a);\n"
        "create table s.u (a int default stg.next_id());\n"
        "create index ix on s.u (stg.key_of(a));\n"
        "select * from stg.rows_of(1) r",
        dialect,
    )
    assert names(info.calls) == [
        "stg.f",
        "stg.g",
        "stg.h",
        "stg.key_of",
        "stg.next_id",
        "stg.rows_of",
    ]
    assert info.reads == (TableRef("raw", "x"),)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_call_statement(dialect: str) -> None:
    info = analyze("call stg.load_departments();\nCALL Stg.Load(1, 'a')", dialect)
    assert names(info.calls) == ["stg.load", "stg.load_departments"]
    assert [s.kind for s in info.statements] == ["other", "other"]
    assert info.writes == ()


def test_quoted_routine_names_keep_their_case_in_postgres() -> None:
    info = analyze('select "Stg"."F"(x), "G"(y); call "Stg"."Load"()')
    assert names(info.calls) == ["G", "Stg.F", "Stg.Load"]


def test_postgres_defines_functions_and_procedures() -> None:
    info = analyze(
        "create or replace function Stg.Clean(a text) returns text language sql as 'select a';\n"
        # sqlglot keeps this one as an opaque Command; its name is still read
        "create function stg.touch() returns trigger as $$ begin return new; end $$ "
        "language plpgsql security definer;\n"
        'create procedure "Stg"."Load"() language plpgsql as $$ begin delete from s.t; end $$;\n'
        'call "Stg"."Load"();\n'
        "select stg.clean(x), stg.other(x) from raw.x"
    )
    assert names(info.defines) == ["Stg.Load", "stg.clean", "stg.touch"]
    # calls of the file's own routines are no dependency
    assert names(info.calls) == ["stg.other"]
    assert info.writes == ()  # what a body does is not inferred


def test_duckdb_defines_macros() -> None:
    info = analyze(
        "create or replace macro stg.add_one(a) as a + 1;\n"
        "create macro stg.rows_of(n) as table select * from range(n);\n"
        "create temp macro scratch(a) as a * 2;\n"
        "select stg.add_one(1), scratch(2), stg.elsewhere(3) from stg.rows_of(5)",
        "duckdb",
    )
    assert names(info.defines) == ["stg.add_one", "stg.rows_of"]  # a temporary macro is not
    assert names(info.calls) == ["stg.elsewhere"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_nothing_is_inferred_from_a_statement_run_as_written(dialect: str) -> None:
    info = analyze(
        "insert into s.t select stg.f(x) from raw.x order by;\nupdate s.u set a = 1",
        dialect,
        as_written=True,
    )
    assert info.statements[0].unparsed is not None
    assert names(info.modifies) == ["s.u"]
    assert info.calls == () and info.reads == ()


def test_json_round_trip_of_every_field() -> None:
    info = analyze(
        "create schema s;\n"
        "create table s.t (id int references raw.p (id));\n"
        "create function s.f() returns int language sql as 'select 1';\n"
        "insert into raw.log select s.f(), stg.g() from raw.x;\n"
        "call stg.p()"
    )
    assert (info.creates, info.modifies, info.references, info.defines, info.schemas) == (
        (TableRef("s", "t"),),
        (TableRef("raw", "log"),),
        (TableRef("raw", "p"),),
        (TableRef("s", "f"),),
        ("s",),
    )
    assert names(info.calls) == ["stg.g", "stg.p"]
    data = json.loads(json.dumps(info.to_json()))
    assert SqlInfo.from_json(data) == info
    assert SqlInfo.from_json(data).line_of(TableRef("raw", "log")) == 4
