-- description: loads incoming customers through the stored procedure
-- depends: setup.procedures, setup.create_customers, setup.fill_lookups, incoming.customers
-- modifies: {{ schema }}.customers
call {{ schema }}.load_customers();
