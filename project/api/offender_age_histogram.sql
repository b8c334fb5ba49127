-- description: Offenders per state, year, offense and age bucket (unknown when the age was not reported)
-- tags: api
-- check: rows > 0
-- check: unique(state_abbr, data_year, offense_code, age_bucket)
-- check: not_null(age_bucket)
with bucketed as (
    select
        a.state_abbr,
        o.data_year,
        o.offense_code,
        case
            when o.offender_age is null then 'unknown'
            when o.offender_age < 18 then 'under 18'
            when o.offender_age < 25 then '18-24'
            when o.offender_age < 35 then '25-34'
            when o.offender_age < 45 then '35-44'
            when o.offender_age < 55 then '45-54'
            else '55+'
        end as age_bucket,
        case
            when o.offender_age is null then 7
            when o.offender_age < 18 then 1
            when o.offender_age < 25 then 2
            when o.offender_age < 35 then 3
            when o.offender_age < 45 then 4
            when o.offender_age < 55 then 5
            else 6
        end as bucket_order
    from raw.offender_ages as o
    join staging.agencies as a on a.agency_id = o.agency_id
)
select
    state_abbr,
    data_year,
    offense_code,
    age_bucket,
    bucket_order,
    count(*) as offenders
from bucketed
group by state_abbr, data_year, offense_code, age_bucket, bucket_order
