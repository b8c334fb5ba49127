-- dbt's accepted_values test, as a query that must return no rows
select order_id, status
from staging.stg_orders
where status not in ('placed', 'shipped', 'completed', 'returned')
