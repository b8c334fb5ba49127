-- description: PII scrub: a closed account keeps no phone number
-- depends: setup.load_customers
update {{ schema }}.customers set phone = null where status_code = 'C';
