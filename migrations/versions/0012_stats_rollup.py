"""Statistics rollup: the valid-at-a-month-start counts of a layer, pre-aggregated and
persisted (gisplatform/stats/rollup.py, `Rollup`, explains how it is kept exact).

`city.stats_rollup`: one row per (layer, area, key values, lo, hi) with the number of
current versions (upper_inf(recorded)) whose validity covers the month starts lo <= i < hi;
lo and hi are absolute month indexes (year * 12 + month - 1) of the first month start
(00:00 UTC+8) at or after lower(valid) / upper(valid), hi null when the validity is open.
`city.stats_rollup_state`: per layer, the snapshot the rollup was counted in and what it
was counted by (the definition, the version table's file node).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create table city.stats_rollup (
          layer text not null,
          area text not null,
          keys text[] not null,
          lo integer not null,
          hi integer,
          n bigint not null
        )""")
    op.execute("create index stats_rollup_layer on city.stats_rollup (layer)")
    op.execute("""
        create table city.stats_rollup_state (
          layer text primary key,
          definition text not null,
          snapshot pg_snapshot not null,
          filenode oid not null,
          versions bigint not null,
          built_at timestamptz not null default now(),
          build_s double precision not null
        )""")
    op.execute("comment on table city.stats_rollup_state is 'the snapshot each statistics "
               "rollup was counted in: later changes come from city.change_log'")


def downgrade() -> None:
    op.execute("drop table if exists city.stats_rollup_state")
    op.execute("drop table if exists city.stats_rollup")
