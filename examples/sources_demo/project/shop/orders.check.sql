-- Gates the copy of shop.orders: no negative amounts, no order of an unknown customer.
select id, amount from shop.orders where amount < 0;
select o.id, o.customer_id
from shop.orders as o
left join shop.customers as c on c.id = o.customer_id
where c.id is null
