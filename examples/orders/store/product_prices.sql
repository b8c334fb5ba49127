-- kind: incremental
-- description: list prices, valid from a date until the next one
-- unique_key: product_id, valid_from
-- watermark: updated_at
-- index: updated_at
-- check: unique(product_id, valid_from)
-- Rows updated at or after the newest updated_at already stored, or everything on a
-- first build (the watermark is NULL then). Re-reading the boundary rows is harmless:
-- the upsert replaces them. Deleted rows are soft deletes: is_deleted travels along.
select product_id, valid_from, unit_price, created_at, updated_at, is_deleted
from raw.product_prices
where {{ watermark }} is null or updated_at >= {{ watermark }}
