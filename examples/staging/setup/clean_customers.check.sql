-- every customer has a search name, in lower case without accents
select customer_ref, full_name, search_name
from {{ schema }}.customers
where search_name is null or search_name <> lower(search_name) or search_name ~ '[^ -~]'
