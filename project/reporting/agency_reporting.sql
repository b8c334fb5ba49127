-- description: Months of offense data reported per agency and year, and whether all twelve were reported
-- tags: reporting
-- check: rows > 0
-- check: unique(agency_id, data_year)
-- check: rows >= previous
select
    m.agency_id,
    m.data_year,
    a.state_abbr,
    count(distinct m.month_num) as months_reported,
    count(distinct m.month_num) = 12 as reported_all_months
from raw.offense_monthly as m
join staging.agencies as a on a.agency_id = m.agency_id
group by m.agency_id, m.data_year, a.state_abbr
