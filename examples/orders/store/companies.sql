-- kind: incremental
-- description: companies (the customers' employers), one row per company_id
-- unique_key: company_id
-- watermark: updated_at
-- index: updated_at
-- check: unique(company_id)
-- Rows updated at or after the newest updated_at already stored, or everything on a
-- first build (the watermark is NULL then). Re-reading the boundary rows is harmless:
-- the upsert replaces them. Deleted rows are soft deletes: is_deleted travels along.
select company_id, name, country, created_at, updated_at, is_deleted
from raw.companies
where {{ watermark }} is null or updated_at >= {{ watermark }}
