-- kind: dump
-- description: monthly sales for the finance team, as exports/monthly_sales.csv
-- path: monthly_sales.csv
select month, company_name, orders, lines, revenue
from presentation.monthly_sales
order by month, company_name
