-- description: fills the lookup tables from the YAML seeds in lookups/
-- depends: setup.create_lookup_tables
delete from {{ schema }}.countries;
insert into {{ schema }}.countries (code, name)
select code, name from lookups.countries;

delete from {{ schema }}.customer_statuses;
insert into {{ schema }}.customer_statuses (code, label, is_active)
select code, label, is_active from lookups.customer_statuses;
