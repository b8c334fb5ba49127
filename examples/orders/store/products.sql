-- kind: incremental
-- description: the catalogue, one row per product_id
-- unique_key: product_id
-- watermark: updated_at
-- index: updated_at
-- check: unique(product_id)
-- Rows updated at or after the newest updated_at already stored, or everything on a
-- first build (the watermark is NULL then). Re-reading the boundary rows is harmless:
-- the upsert replaces them. Deleted rows are soft deletes: is_deleted travels along.
select product_id, sku, name, category, created_at, updated_at, is_deleted
from raw.products
where {{ watermark }} is null or updated_at >= {{ watermark }}
