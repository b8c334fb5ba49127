"""``dbluigi init DIR``: a small starter project that builds as it is."""

from __future__ import annotations

from pathlib import Path

from dbluigi.errors import ProjectError, UsageError

STARTER: dict[str, str] = {
    "dbluigi.toml": """\
[project]
name = "{name}"

# [target]
# url = "postgresql://user:${{PGPASSWORD}}@localhost:5432/warehouse"   # default: DuckDB under .dbluigi/

[vars]
min_year = 2020
""",
    ".gitignore": ".dbluigi/\nexports/\n",
    "raw/customers.csv": """\
customer_id,name,country,signed_up
1,Ada Lovelace,GB,2020-03-01
2,Grace Hopper,US,2021-07-15
3,Edsger Dijkstra,NL,2022-01-10
4,Barbara Liskov,US,2023-05-02
""",
    "raw/countries.yml": """\
# description: country names by ISO code
# check: unique(code)
- {code: GB, country_name: United Kingdom}
- {code: NL, country_name: Netherlands}
- {code: US, country_name: United States}
""",
    "staging/customers.sql": """\
-- description: customers with their country's name, since {{ min_year }}
-- check: rows > 0
-- check: unique(customer_id)
-- check: not_null(customer_id, country_name)
select c.customer_id, c.name, c.signed_up, k.country_name
from raw.customers as c
join raw.countries as k on k.code = c.country
where extract(year from c.signed_up) >= {{ min_year }}
""",
    "staging/customers.check.sql": """\
-- every customer signed up in the past
select * from staging.customers where signed_up > current_date
""",
    "reporting/customers_by_country.sql": """\
-- description: how many customers each country has
-- check: rows >= previous
select country_name, count(*) as customers
from staging.customers
group by country_name
""",
}


def init_project(folder: Path) -> list[Path]:
    """Write the starter project into ``folder`` (which must be empty or missing)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file", hint="name a new folder for dbluigi init")
    if folder.exists() and any(folder.iterdir()):
        raise ProjectError(f"{folder} is not empty", hint="choose a new folder for dbluigi init")
    written = []
    name = folder.resolve().name
    try:
        for relative, content in STARTER.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content.format(name=name) if relative == "dbluigi.toml" else content)
            written.append(path)
    except OSError as exc:
        raise UsageError(
            f"cannot create {folder}: {exc.strerror} ({exc.filename})",
            hint="name a folder you may write to for dbluigi init",
        ) from None
    return written
