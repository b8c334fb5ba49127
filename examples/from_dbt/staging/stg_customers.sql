-- description: one row per customer
-- check: unique(customer_id)
-- check: not_null(customer_id)
select id as customer_id, first_name, last_name
from raw.customers
