-- description: customers with their first and latest order and lifetime value
-- tags: marts
-- check: rows > 0
-- check: unique(customer_id)
with orders as (
    select customer_id, min(order_date) as first_order, max(order_date) as most_recent_order,
           count(*) as number_of_orders, sum(amount) as lifetime_value
    from staging.stg_orders
    group by customer_id
)
select c.customer_id, c.first_name, c.last_name, o.first_order, o.most_recent_order,
       coalesce(o.number_of_orders, 0) as number_of_orders,
       coalesce(o.lifetime_value, 0) as lifetime_value
from staging.stg_customers as c
left join orders as o on o.customer_id = c.customer_id
