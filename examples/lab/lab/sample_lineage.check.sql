-- one row per sample: a sample in a parent_id cycle, or below a missing parent, has no root
select sample_id from raw.samples
except
select sample_id from lab.sample_lineage;

-- the root of a root is itself
select r.sample_id, r.root_id
from lab.sample_lineage as l
join lab.sample_lineage as r on r.sample_id = l.root_id
where r.root_id <> r.sample_id or r.parent_id is not null;
