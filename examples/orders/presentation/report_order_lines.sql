-- description: one row per live order line, flattened for reporting: order, customer,
-- description: company, product and the list price valid on the order date
-- check: rows > 0
-- check: unique(order_id, line_no)
-- check: not_null(unit_price, company_name)
with prices as (
    select
        product_id,
        valid_from,
        lead(valid_from) over (partition by product_id order by valid_from) as valid_until,
        unit_price
    from store.product_prices
    where not is_deleted
)
select
    l.order_id,
    l.line_no,
    h.order_date,
    h.status as order_status,
    c.customer_id,
    c.name as customer_name,
    co.company_id,
    co.name as company_name,
    co.country,
    p.product_id,
    p.sku,
    p.name as product_name,
    p.category,
    l.quantity,
    pr.unit_price,
    l.discount_pct,
    cast(l.quantity * pr.unit_price * (100 - l.discount_pct) / 100 as decimal(14, 2)) as line_amount
from store.order_lines as l
join store.order_headers as h on h.order_id = l.order_id
join store.customers as c on c.customer_id = h.customer_id
join store.companies as co on co.company_id = c.company_id
join store.products as p on p.product_id = l.product_id
left join prices as pr
    on pr.product_id = l.product_id
    and h.order_date >= pr.valid_from
    and (pr.valid_until is null or h.order_date < pr.valid_until)
where not l.is_deleted and not h.is_deleted
