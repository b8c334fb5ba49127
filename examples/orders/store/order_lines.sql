-- kind: incremental
-- description: order lines, one row per (order_id, line_no)
-- unique_key: order_id, line_no
-- watermark: updated_at
-- index: updated_at
-- check: unique(order_id, line_no)
-- Rows updated at or after the newest updated_at already stored, or everything on a
-- first build (the watermark is NULL then). Re-reading the boundary rows is harmless:
-- the upsert replaces them. Deleted rows are soft deletes: is_deleted travels along.
select order_id, line_no, product_id, quantity, discount_pct, created_at, updated_at, is_deleted
from raw.order_lines
where {{ watermark }} is null or updated_at >= {{ watermark }}
