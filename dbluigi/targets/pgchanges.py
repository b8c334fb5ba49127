"""Versions of PostgreSQL relations: a change log fed by statement triggers.

PostgreSQL keeps no per-table counter of committed changes that can be read cheaply
and exactly (``pg_stat_user_tables`` is reported asynchronously, so a build started a
moment after a commit may not see it). So dbluigi keeps one:

- ``dbluigi.changes (relid, xid, weight)``: a row per table and writing transaction.
- ``dbluigi.note_change()``: an ``AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ... FOR
  EACH STATEMENT`` trigger function, named ``dbluigi_changes`` on each tracked table; on
  an input enabled ALWAYS (it fires under ``session_replication_role = replica`` too, as
  logical replication applies changes), on a table dbluigi publishes plainly enabled. It adds the transaction's row once (``ON CONFLICT DO
  NOTHING``): one small insert per writing statement, no lock shared between writers,
  and the row is visible exactly when the change commits. It never fails the writer's
  statement.
- ``dbluigi.relation_version_v2(name, track, always)``: the version of one relation, a string
  that changes with every committed change of its rows (the sum of its change rows),
  its columns (names and types) and its identity (its oid: dropped and recreated),
  and for a view with its definition. ``track`` installs the trigger where it is missing
  (waiting at most 2 s for the table's lock); without it, or where it cannot be
  installed (no privilege), the answer is ``none: <why>``: no signal.

Materialized views and foreign tables have no signal (no statement triggers). Changes
made with triggers disabled (``ALTER TABLE ... DISABLE TRIGGER ALL``, ``pg_restore
--disable-triggers``) are not seen. ``compact`` folds the log into one row per table.
"""

from __future__ import annotations

TRIGGER = "dbluigi_changes"
FUNCTION = "dbluigi.relation_version_v2"

# Created once per target (under a lock, by the first build that needs them).
SETUP = (
    """create table if not exists dbluigi.changes (
        relid oid not null,
        xid bigint not null default txid_current(),  -- PostgreSQL 10 and later
        weight bigint not null default 1,
        primary key (relid, xid))""",
    """create or replace function dbluigi.note_change() returns trigger
    language plpgsql security definer set search_path = pg_catalog as $$
    begin
        insert into dbluigi.changes (relid) values (TG_RELID) on conflict do nothing;
        return null;
    exception when others then
        return null;  -- the change log must never fail the statement of whoever writes
    end $$""",
    f"""create or replace function {FUNCTION}(name text, track boolean, always boolean)
    returns text
    language plpgsql set search_path = pg_catalog as $$
    declare
        rel regclass := to_regclass(name);
        kind "char";
        cols text;
        state "char";
        total numeric;
    begin
        if rel is null then
            return null;
        end if;
        select relkind into kind from pg_class where oid = rel;
        select md5(coalesce(string_agg(attname || ' ' || format_type(atttypid, atttypmod),
                                       ',' order by attnum), ''))
          into cols from pg_attribute where attrelid = rel and attnum > 0 and not attisdropped;
        if kind = 'v' then  -- its definition: recreated as it was, it is the same view
            return 'v' || md5(pg_get_viewdef(rel)) || '.' || cols;
        end if;
        if kind not in ('r', 'p') then
            return 'none: ' || case kind when 'm' then 'a materialized view'
                                         when 'f' then 'a foreign table'
                                         else 'not a table' end || ' has no change signal';
        end if;
        select tgenabled into state from pg_trigger where tgrelid = rel and tgname = '{TRIGGER}';
        if state is null or state = 'D' or (always and state <> 'A') then
            if not track then
                return 'none: not tracked yet';
            end if;
            begin
                perform set_config('lock_timeout', '2s', true);
                if state is null then
                    execute format('create trigger {TRIGGER} after insert or update or delete '
                                   'or truncate on %s for each statement '
                                   'execute function dbluigi.note_change()', rel);
                end if;
                if always then
                    execute format('alter table %s enable always trigger {TRIGGER}', rel);
                elsif state is not null then
                    execute format('alter table %s enable trigger {TRIGGER}', rel);
                end if;
            exception when others then
                return 'none: cannot add the change trigger (' || sqlerrm || ')';
            end;
        end if;
        select coalesce(sum(weight), 0) into total from dbluigi.changes where relid = rel;
        -- the log's own identity too: a log dropped and made again starts its sums anew
        return 't' || rel::oid || '.' || 'dbluigi.changes'::regclass::oid || '.' || cols
            || '.' || total;
    end $$""",
)

# Whether the objects above are there (the function is created last; the log may have
# been dropped by hand since).
READY_SQL = (
    f"select to_regprocedure('{FUNCTION}(text, boolean, boolean)') is not null "
    "and to_regclass('dbluigi.changes') is not null"
)

# One row per relation asked: (name, version); what installs a missing trigger.
VERSIONS_SQL = f"select name, {FUNCTION}(name, %s, true) from unnest(%s::text[]) as name"

# The same facts for many relations in one set-based query (no function call per
# relation): what a no-op build reads. ``version`` formats a row as the function does.
CATALOG_SQL = f"""
with wanted as (
    select name, to_regclass(name) as rel from unnest(%s::text[]) as name
), cols as (
    select a.attrelid, md5(coalesce(string_agg(
               a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' order by a.attnum
           ), '')) as sig
    from pg_attribute as a join wanted as w on a.attrelid = w.rel
    where a.attnum > 0 and not a.attisdropped
    group by a.attrelid
), logged as (
    select relid, sum(weight) as total from dbluigi.changes
    where relid in (select rel from wanted) group by relid
)
select w.name, c.relkind, w.rel::oid, 'dbluigi.changes'::regclass::oid,
       coalesce(cols.sig, md5('')),
       case when c.relkind = 'v' then md5(pg_get_viewdef(w.rel)) end,
       exists (select 1 from pg_trigger as t
               where t.tgrelid = w.rel and t.tgname = '{TRIGGER}' and t.tgenabled <> 'D'),
       coalesce(logged.total, 0)
from wanted as w
join pg_class as c on c.oid = w.rel
left join cols on cols.attrelid = w.rel
left join logged on logged.relid = w.rel
"""
UNTRACKED = "none: not tracked yet"

# What the rows of each named relation come from, in one query: the tables a view reads
# (through the views it reads), and the partitions and inheritance children of a table,
# recursively (their own statements do not fire the parent's trigger). (name, schema, table)
UNDERLYING_SQL = """
with recursive wanted as (
    select name, to_regclass(name) as rel from unnest(%s::text[]) as name
), reads(root, rel) as (
    select r.ev_class, d.refobjid
    from pg_rewrite as r
    join pg_depend as d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
     and d.refclassid = 'pg_class'::regclass and d.refobjid <> r.ev_class
    where r.ev_class in (select rel from wanted)
  union
    select reads.root, d.refobjid
    from reads
    join pg_class as c on c.oid = reads.rel and c.relkind = 'v'
    join pg_rewrite as r on r.ev_class = reads.rel
    join pg_depend as d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
     and d.refclassid = 'pg_class'::regclass and d.refobjid <> r.ev_class
), kids(root, rel) as (
    select i.inhparent, i.inhrelid from pg_inherits as i
    where i.inhparent in (select rel from wanted)
  union
    select kids.root, i.inhrelid from kids join pg_inherits as i on i.inhparent = kids.rel
), under as (
    select root, rel from reads union select root, rel from kids
)
select distinct w.name, n.nspname, c.relname
from under
join wanted as w on w.rel = under.root
join pg_class as c on c.oid = under.rel and c.relkind <> 'v'
join pg_namespace as n on n.oid = c.relnamespace
"""


def version(
    kind: str, oid: int, log: int, columns: str, view: str | None, tracked: bool, total: object
) -> str:
    """A row of ``CATALOG_SQL`` as the version ``FUNCTION`` returns for it."""
    if kind == "v":
        return f"v{view}.{columns}"
    if kind not in ("r", "p"):
        what = {"m": "a materialized view", "f": "a foreign table"}.get(kind, "not a table")
        return f"none: {what} has no change signal"
    if not tracked:
        return UNTRACKED
    return f"t{oid}.{log}.{columns}.{total}"


# The log folded into one row per table (xid 0 holds the sum), rows of dropped tables gone.
COMPACT_SQL = """
with moved as (
    delete from dbluigi.changes where xid <> 0 returning relid, weight
)
insert into dbluigi.changes (relid, xid, weight)
select relid, 0, sum(weight) from moved group by relid
on conflict (relid, xid) do update set weight = dbluigi.changes.weight + excluded.weight
"""
PRUNE_SQL = "delete from dbluigi.changes where relid not in (select oid from pg_class)"
COMPACT_ABOVE = 10_000  # rows in the log before a build folds it
