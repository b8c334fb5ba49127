-- description: sales per calendar month and company, cancelled orders left out
-- check: rows > 0
-- check: unique(month, company_id)
select
    cast(date_trunc('month', order_date) as date) as month,
    company_id,
    company_name,
    count(distinct order_id) as orders,
    count(*) as lines,
    cast(sum(line_amount) as decimal(14, 2)) as revenue
from presentation.report_order_lines
where order_status <> 'cancelled'
group by 1, 2, 3
