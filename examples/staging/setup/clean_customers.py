# description: cleanup step: fills customers.search_name (accents removed, case folded,
# description: spaces collapsed), which SQL alone does badly; it modifies the customers table
# depends: setup.load_customers
# modifies: {{ schema }}.customers
"""Fill the derived column search_name of the staging customers."""

import unicodedata


def search_name(full_name):
    """'  Zoë  Dubois ' -> 'zoe dubois'."""
    decomposed = unicodedata.normalize("NFKD", full_name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def run(ctx):
    customers = ctx.ref(f"{ctx.variables['schema']}.customers")
    rows = ctx.query(f"select customer_ref, full_name from {customers}")
    changes = [(search_name(name), ref) for ref, name in rows]
    ctx.executemany(f"update {customers} set search_name = %s where customer_ref = %s", changes)
    ctx.log.info("search_name filled for %d customers", len(changes))
