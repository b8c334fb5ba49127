-- description: the staging schema itself
create schema if not exists {{ schema }};
