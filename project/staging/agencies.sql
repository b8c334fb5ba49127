-- description: One row per police agency, the normalized agency tables joined back together (contacts kept, staging is internal)
-- tags: staging
-- check: rows > 0
-- check: unique(agency_id)
-- check: not_null(agency_id, ori, agency_name)
select
    a.agency_id,
    a.ori,
    a.agency_name,
    t.agency_type_name,
    c.city_name,
    s.state_abbr,
    s.state_name,
    s.region,
    cast(a.nibrs_start_date as date) as nibrs_start_date,
    a.contact_name,
    a.contact_email,
    a.contact_phone
from raw.agencies as a
join raw.agency_types as t on t.agency_type_id = a.agency_type_id
join raw.states as s on s.state_id = a.state_id
-- State-wide agencies (state police, other state agencies) have no city.
left join raw.cities as c on c.city_id = a.city_id
