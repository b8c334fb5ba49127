-- description: the customers table; search_name is derived by setup/clean_customers.py
-- depends: setup.create_lookup_tables
drop table if exists {{ schema }}.customers cascade;
create table {{ schema }}.customers (
    customer_ref text primary key,
    full_name text not null,
    search_name text,
    country_code char(2) not null references {{ schema }}.countries (code),
    status_code char(1) not null references {{ schema }}.customer_statuses (code),
    phone text,
    signed_up_on date not null
);
create index customers_country_code_idx on {{ schema }}.customers (country_code);
