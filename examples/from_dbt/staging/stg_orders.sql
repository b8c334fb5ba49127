-- description: one row per order since min_order_date
-- check: unique(order_id)
-- check: not_null(order_id, customer_id)
select id as order_id, user_id as customer_id, cast(order_date as date) as order_date, status, amount
from raw.orders
where order_date >= '{{ min_order_date }}'
