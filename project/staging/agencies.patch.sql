update staging.agencies
-- County agencies that report a bare place name ("Adams") get their full department name.
set agency_name = agency_name || ' County Police Department'
where agency_type_name = 'County'
  and agency_name not like '%County%'
