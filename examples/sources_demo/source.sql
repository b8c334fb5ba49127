-- The source database of examples/sources_demo/project (MariaDB or MySQL).
create table customers (
    id integer primary key,
    name varchar(80) not null,
    country char(2) not null,
    is_vip boolean not null default false,
    updated_at datetime not null
);

create table orders (
    id integer primary key,
    customer_id integer not null,
    ordered_on date not null,
    status varchar(20) not null,
    amount decimal(10, 2) not null,
    details json,
    updated_at timestamp(3) not null default current_timestamp(3) on update current_timestamp(3),
    key orders_updated_at (updated_at)
);

insert into customers values
    (1, 'Acme Industrial', 'DE', true, '2024-01-01 09:00:00'),
    (2, 'Borealis Foods', 'SE', false, '2024-01-02 09:00:00'),
    (3, 'Cordillera Mining', 'CL', false, '2024-01-03 09:00:00'),
    (4, 'Dune & Delta "Logistics"', 'EG', true, '2024-01-04 09:00:00');

insert into orders values
    (101, 1, '2024-02-01', 'shipped', 1200.00, '{"channel": "web"}', '2024-02-01 10:00:00'),
    (102, 1, '2024-02-03', 'shipped', 80.50, '{"channel": "phone"}', '2024-02-03 11:00:00'),
    (103, 2, '2024-02-03', 'paid', 310.25, null, '2024-02-03 12:00:00'),
    (104, 3, '2024-02-04', 'new', 99.99, '{"channel": "web", "coupon": "SPRING"}', '2024-02-04 08:30:00'),
    (105, 4, '2024-02-05', 'paid', 2450.00, '{"channel": "web"}', '2024-02-05 14:45:00'),
    (106, 2, '2024-02-05', 'test', 1.00, null, '2024-02-05 15:00:00'),
    (107, 4, '2024-02-06', 'cancelled', 15.00, null, '2024-02-06 09:15:00');
