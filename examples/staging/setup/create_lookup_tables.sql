-- description: lookup tables of the staging schema (re-created when this file changes)
-- depends: setup.create_schema
drop table if exists {{ schema }}.countries cascade;
create table {{ schema }}.countries (
    code char(2) primary key,
    name text not null
);

drop table if exists {{ schema }}.customer_statuses cascade;
create table {{ schema }}.customer_statuses (
    code char(1) primary key,
    label text not null,
    is_active boolean not null
);
