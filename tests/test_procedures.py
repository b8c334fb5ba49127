"""sql models holding functions and procedures: installed whole, re-created when their file
changes, and the models calling them (through -- depends:) rebuilt after them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbluigi.project import load_project
from tests.buildkit import build_json, query, ran
from tests.test_build import write_project

PG_FUNCTIONS = """\
-- description: the tax rule and the marking procedure
create or replace function fns.add_tax(amount numeric) returns numeric
language plpgsql immutable
as $$
begin
    -- a body with its own semicolons; it stays one statement
    return round(amount * {rate}, 2);
end;
$$;

create or replace procedure fns.mark(p_note text)
language plpgsql
as $body$
begin
    update main.log set note = p_note;
end;
$body$;
"""


@pytest.mark.postgres
def test_postgres_functions_and_procedures_are_recreated_with_their_file(
    tmp_path: Path, pg_url: str
) -> None:
    project = write_project(
        tmp_path,
        {
            "fns/functions.sql": PG_FUNCTIONS.format(rate="1.20"),
            "prices.sql": "-- depends: fns.functions\nselect 1 as id, fns.add_tax(10) as gross",
            "log.sql": "select 1 as id, cast(null as text) as note",
            "mark.sql": "-- depends: fns.functions, main.log\ncall fns.mark('done');",
        },
    )
    loaded = load_project(project, target=pg_url)
    functions = loaded.models["fns.functions"]
    assert functions.kind == "sql"
    assert [s.kind for s in functions.statements] == ["create_function", "create_procedure"]
    assert functions.statements[0].sql.rstrip().endswith("end;\n$$")

    code, payload = build_json(project=project, target=pg_url)
    assert code == 0, payload
    assert query(pg_url, project, "select gross from main.prices") == [(pytest.approx(12),)]
    assert query(pg_url, project, "select note from main.log") == [("done",)]

    (project / "fns/functions.sql").write_text(PG_FUNCTIONS.format(rate="1.25"))
    code, payload = build_json(project=project, target=pg_url)
    assert code == 0, payload
    reasons = {r["model"]: r["reason"] for r in payload["tasks"] if r["status"] != "up to date"}
    assert reasons == {
        "fns.functions": "definition changed",
        "main.prices": "upstream rebuilt",
        "main.mark": "upstream rebuilt",
    }
    assert query(pg_url, project, "select fns.add_tax(100)") == [(pytest.approx(125),)]
    assert query(pg_url, project, "select gross from main.prices") == [(pytest.approx(12.5),)]


def test_duckdb_macros_are_recreated_with_their_file(tmp_path: Path, duckdb_url: str) -> None:
    project = write_project(
        tmp_path,
        {
            "fns/macros.sql": "create or replace macro fns.add_tax(amount) as round(amount * 1.2, 2);",
            "prices.sql": "-- depends: fns.macros\nselect 1 as id, fns.add_tax(10) as gross",
        },
    )
    assert build_json(project=project, target=duckdb_url)[0] == 0
    assert query(duckdb_url, project, "select gross from main.prices") == [(pytest.approx(12),)]
    (project / "fns/macros.sql").write_text(
        "create or replace macro fns.add_tax(amount) as round(amount * 1.25, 2);"
    )
    code, payload = build_json(project=project, target=duckdb_url)
    assert code == 0 and ran(payload) == {"fns.macros", "main.prices"}
    assert query(duckdb_url, project, "select gross from main.prices") == [(pytest.approx(12.5),)]
