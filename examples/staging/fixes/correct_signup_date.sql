-- description: correction: C-0003 signed up on 21 May 2023 (the export says the 20th)
-- depends: setup.load_customers
update {{ schema }}.customers set signed_up_on = date '2023-05-21' where customer_ref = 'C-0003';
