-- description: functions and procedures of the staging schema, re-created when this
-- description: file changes (and then the models that call them run again)
-- depends: setup.create_schema
create or replace function {{ schema }}.normalize_phone(raw text) returns text
language sql immutable
as $$
    -- digits only, keeping a leading +; NULL when nothing is left
    select nullif(
        case when btrim(raw) like '+%' then '+' else '' end
        || regexp_replace(raw, '[^0-9]', '', 'g'),
        ''
    )
$$;

create or replace procedure {{ schema }}.load_customers()
language plpgsql
as $$
begin
    delete from {{ schema }}.customers;
    insert into {{ schema }}.customers
        (customer_ref, full_name, country_code, status_code, phone, signed_up_on)
    select
        customer_ref,
        btrim(full_name),
        upper(country_code),
        status_code,
        {{ schema }}.normalize_phone(phone),
        signed_up_on
    from incoming.customers;
end;
$$;
