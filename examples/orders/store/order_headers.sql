-- kind: incremental
-- description: orders, one row per order_id
-- unique_key: order_id
-- watermark: updated_at
-- index: updated_at
-- check: unique(order_id)
-- Rows updated at or after the newest updated_at already stored, or everything on a
-- first build (the watermark is NULL then). Re-reading the boundary rows is harmless:
-- the upsert replaces them. Deleted rows are soft deletes: is_deleted travels along.
select order_id, customer_id, order_date, status, created_at, updated_at, is_deleted
from raw.order_headers
where {{ watermark }} is null or updated_at >= {{ watermark }}
