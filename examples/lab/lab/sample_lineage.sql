-- description: every sample with its root ancestor (the original sample it was split
-- description: from) and its depth below it, following parent_id
-- check: unique(sample_id)
-- check: not_null(root_id, depth)
-- index: root_id
with recursive lineage as (
    select sample_id, sample_id as root_id, 0 as depth
    from raw.samples
    where parent_id is null
    union all
    select s.sample_id, l.root_id, l.depth + 1
    from raw.samples as s
    join lineage as l on s.parent_id = l.sample_id
)
select s.sample_id, s.parent_id, s.name, s.collected_on, l.root_id, l.depth
from raw.samples as s
join lineage as l on l.sample_id = s.sample_id
