-- description: Offenses per state, year and offense, counted only from agencies that reported all twelve months that year
-- tags: api
-- check: rows > 0
-- check: unique(state_abbr, data_year, offense_code)
select
    r.state_abbr,
    m.data_year,
    m.offense_code,
    count(distinct m.agency_id) as agencies_reporting,
    cast(sum(m.offense_count) as bigint) as offense_count
from raw.offense_monthly as m
join reporting.agency_reporting as r
    on r.agency_id = m.agency_id and r.data_year = m.data_year
where r.reported_all_months
group by r.state_abbr, m.data_year, m.offense_code
