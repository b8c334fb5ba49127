select agency_id, ori, agency_name
from staging.agencies
-- Every county agency is named after its county.
where agency_type_name = 'County'
  and agency_name not like '%County%';

select agency_id, ori, state_abbr
from staging.agencies
-- An ORI is nine characters and starts with the state abbreviation.
where length(ori) <> 9
   or substr(ori, 1, 2) <> state_abbr;
