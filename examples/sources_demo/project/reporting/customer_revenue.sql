-- description: revenue per customer from orders that were paid or shipped
-- check: unique(customer_id)
select
    c.id as customer_id,
    c.name,
    c.country,
    c.is_vip,
    count(o.id) as orders,
    coalesce(sum(o.amount), 0) as revenue
from shop.customers as c
left join shop.orders as o
    on o.customer_id = c.id and o.status in ('paid', 'shipped')
group by c.id, c.name, c.country, c.is_vip
