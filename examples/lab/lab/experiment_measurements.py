# description: one row per sample with its root ancestor and one column per measurement
# description: type (the average of its values); a type that appears in the data adds a
# description: column on the next build
# depends: lab.sample_lineage, raw.sample_measurements
# check: rows > 0
# check: unique(sample_id)
# index: root_id
"""A dynamic pivot: the columns are the measurement types found in the data."""


def run(ctx):
    lineage = ctx.ref("lab.sample_lineage")
    measurements = ctx.ref("raw.sample_measurements")
    types = [t for (t,) in ctx.query(f"select distinct measurement_type from {measurements}")]
    types.sort()
    ctx.log.info("pivoting %d measurement types: %s", len(types), ", ".join(types))
    columns = "".join(
        f",\n    avg(case when m.measurement_type = %s then m.value end) as {ctx.quote(t)}"
        for t in types
    )
    ctx.execute(
        f"""
create table {ctx.table} as
select l.sample_id, l.name, l.root_id, l.depth{columns}
from {lineage} as l
left join {measurements} as m on m.sample_id = l.sample_id
group by l.sample_id, l.name, l.root_id, l.depth
""",
        types,
    )
