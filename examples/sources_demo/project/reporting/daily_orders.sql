-- description: orders and amounts per day and status
select ordered_on, status, count(*) as orders, sum(amount) as amount
from shop.orders
group by ordered_on, status
