-- kind: incremental
-- description: buyers, one row per customer_id
-- unique_key: customer_id
-- watermark: updated_at
-- index: updated_at
-- check: unique(customer_id)
-- Rows updated at or after the newest updated_at already stored, or everything on a
-- first build (the watermark is NULL then). Re-reading the boundary rows is harmless:
-- the upsert replaces them. Deleted rows are soft deletes: is_deleted travels along.
select customer_id, company_id, name, email, created_at, updated_at, is_deleted
from raw.customers
where {{ watermark }} is null or updated_at >= {{ watermark }}
