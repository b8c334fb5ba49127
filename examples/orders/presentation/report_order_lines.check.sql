-- every live line of a live order is reported (a missing customer, company or product
-- would drop it from the inner joins)
select l.order_id, l.line_no
from store.order_lines as l
join store.order_headers as h on h.order_id = l.order_id
where not l.is_deleted and not h.is_deleted
except
select order_id, line_no from presentation.report_order_lines
