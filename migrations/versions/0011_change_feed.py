"""Change feed: a log of every version opened or closed, written by the writing transaction,
and the webhook subscriptions that follow it (gisplatform/changefeed/feed.py, webhooks.py).

`city.change_log` gets one row per version row a statement inserts ('opened'), updates
('superseded' when its `recorded` upper bound is set, 'valid_changed' when its `valid`
changes in place, else 'updated') or deletes ('purged'), stamped with the writing
transaction's id (`pg_current_xact_id()`) and a sequence. Rows are appended by the version
tables' statement-level triggers of migration 0005: their function `city.log_tile_changes`
is extended here to write this log too (one trigger per event and table, so the Citus
preparation of 0010, which drops those triggers, still covers everything; on Citus the
feed is not written — docs/scaling.md). A version inserted and deleted by the same
transaction (the store's `_supersede` of its own rows) was never visible: its 'opened'
row is removed again, no 'purged' is logged. Each statement NOTIFYs `gisplatform_changes`
with the layer name (delivered at commit).

Rows already in the version tables when this runs are logged once, in transaction-time
order (opened at lower(recorded), superseded at upper(recorded)), so the feed starts at
the beginning of the history, not at the migration.

`city.change_log_horizon` remembers the last entry pruned by retention (a cursor before
it gets 410 Gone). `city.webhooks`: one row per subscription; it acts with the grants of
token `token_id` (no foreign key: the tokens table is a Citus reference table and this one
stays on the coordinator; a revoked token stops its deliveries).

Revision ID: 0011
Revises: 0010
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _m0005():
    """Migration 0005 (the tile log the trigger function also writes): one source of truth
    for its SQL, reused to extend the function here and to restore it on downgrade."""
    path = Path(__file__).with_name("0005_tile_changes.py")
    spec = importlib.util.spec_from_file_location("_gisplatform_m0005", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FEED_INSERT = """
            insert into city.change_log (layer, op, vid, fid)
            select tg_argv[0], 'opened', vid, fid from new_rows order by vid;"""
FEED_UPDATE = """
            insert into city.change_log (layer, op, vid, fid)
            select tg_argv[0],
                   case when o.recorded is distinct from n.recorded then 'superseded'
                        when o.valid is distinct from n.valid then 'valid_changed'
                        else 'updated' end, n.vid, n.fid
            from old_rows o join new_rows n using (vid) order by n.vid;"""
FEED_DELETE = """
            with unseen as (
              delete from city.change_log c
              where c.layer = tg_argv[0] and c.xid = pg_current_xact_id() and c.op = 'opened'
                and c.vid in (select vid from old_rows)
              returning c.vid)
            insert into city.change_log (layer, op, vid, fid)
            select tg_argv[0], 'purged', o.vid, o.fid from old_rows o
            where o.vid not in (select vid from unseen) order by o.vid;"""
FEED_NOTIFY = "\n          perform pg_notify('gisplatform_changes', tg_argv[0]);"


def _function_sql(feed: bool) -> str:
    """`city.log_tile_changes()` as 0005 wrote it, plus (feed=True) the change-log writes."""
    m = _m0005()

    def branch(tiles: str, log: str) -> str:
        return tiles + (log if feed else "")

    return f"""
        create or replace function city.log_tile_changes() returns trigger
        language plpgsql as $$
        declare lo bigint; hi bigint;
        begin
          if tg_op = 'INSERT' then {branch(m._log("select geom, valid from new_rows"), FEED_INSERT)}
          elsif tg_op = 'DELETE' then {branch(m._log("select geom, valid from old_rows"), FEED_DELETE)}
          else {branch(m._log(m._UPDATED), FEED_UPDATE)}
          end if;
          if lo is not null then
            perform pg_notify('gisplatform_tiles', tg_argv[0] || ' ' || lo || ' ' || hi);
          end if;{FEED_NOTIFY if feed else ""}
          return null;
        end $$"""


def _seed_sql(layer: str) -> str:
    """Log the versions already there, in transaction-time order."""
    table = "city." + _m0005()._table(layer)
    return f"""
        insert into city.change_log (layer, op, vid, fid, at)
        select '{layer}', op, vid, fid, at from (
          select 'opened' as op, vid, fid, lower(recorded) as at, 0 as k from {table}
          union all
          select 'superseded', vid, fid, upper(recorded), 1 from {table}
          where not upper_inf(recorded)) e
        order by at, k, vid"""


def upgrade() -> None:
    op.execute("""
        create table city.change_log (
          layer text not null,
          xid xid8 not null default pg_current_xact_id(),
          seq bigint generated always as identity,
          op text not null check (op in ('opened', 'superseded', 'valid_changed', 'updated',
                                         'purged')),
          vid bigint not null,
          fid text not null,
          at timestamptz not null default now(),  -- the writing transaction's start
          primary key (layer, xid, seq)
        )""")
    op.execute("comment on table city.change_log is 'the change feed: served in (xid, seq)"
               " order, only for transactions older than the reader''s snapshot xmin'")
    # retention deletes by age; rows arrive in roughly `at` order, so a BRIN index is enough
    op.execute("create index change_log_at on city.change_log using brin (at)")
    op.execute("""
        create table city.change_log_horizon (
          singleton boolean primary key default true check (singleton),
          xid xid8 not null,
          seq bigint not null,
          pruned_at timestamptz not null default now()
        )""")
    op.execute("""
        create table city.webhooks (
          id bigint generated always as identity primary key,
          url text not null check (url ~ '^https?://'),
          layer text not null check (layer ~ '^[a-z][a-z0-9-]*$'),
          token_id bigint not null,
          secret text not null,
          cursor text not null,
          pending_to text,
          attempts integer not null default 0,
          next_attempt_at timestamptz not null default now(),
          last_status integer,
          last_error text,
          last_delivered_at timestamptz,
          delivered bigint not null default 0,
          active boolean not null default true,
          created_at timestamptz not null default now()
        )""")
    op.execute("comment on column city.webhooks.secret is 'HMAC-SHA256 key for the "
               "signature; kept in clear because the sender signs with it'")
    m = _m0005()
    for layer in m.LAYER_NAMES:
        op.execute(_seed_sql(layer))
    op.execute(_function_sql(feed=True))


def downgrade() -> None:
    op.execute(_function_sql(feed=False))
    op.execute("drop table if exists city.webhooks")
    op.execute("drop table if exists city.change_log_horizon")
    op.execute("drop table if exists city.change_log")
