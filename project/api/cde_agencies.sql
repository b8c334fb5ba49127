-- description: Agency endpoint, one row per agency with its latest staffing and its participation history (no personal contact data)
-- tags: api
-- index: agency_id
-- check: rows > 0
-- check: unique(agency_id)
-- check: not_null(agency_id, agency_name)
-- check: rows >= previous
with latest_staffing as (
    select
        agency_id,
        data_year,
        officers,
        civilians,
        row_number() over (partition by agency_id order by data_year desc) as recency
    from raw.agency_staffing
),
participation as (
    select
        agency_id,
        data_year,
        months_reported,
        count(*) over (partition by agency_id) as years_reported,
        row_number() over (partition by agency_id order by data_year desc) as recency
    from reporting.agency_reporting
)
select
    a.agency_id,
    a.ori,
    a.agency_name,
    a.agency_type_name,
    a.city_name,
    a.state_abbr,
    a.state_name,
    a.region,
    a.nibrs_start_date,
    s.officers,
    s.civilians,
    s.data_year as staffing_year,
    p.data_year as latest_data_year,
    p.months_reported as latest_months_reported,
    coalesce(p.years_reported, 0) as years_reported
from staging.agencies as a
left join latest_staffing as s on s.agency_id = a.agency_id and s.recency = 1
left join participation as p on p.agency_id = a.agency_id and p.recency = 1
