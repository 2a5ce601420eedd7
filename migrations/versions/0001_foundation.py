"""Foundation: extensions, schema city, the purge audit log.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create extension if not exists postgis")
    op.execute("create extension if not exists btree_gist")
    op.execute("create schema if not exists city")
    # Purges are the only physical deletes; each leaves this record (no data, by design:
    # a purge is usually a legal erasure).
    op.execute("""
        create table city.purge_log (
          id bigint generated always as identity primary key,
          layer text not null,
          fid text not null,
          vids bigint[] not null,
          reason text not null check (reason <> ''),
          actor text not null check (actor <> ''),
          purged_at timestamptz not null default now()
        )""")


def downgrade() -> None:
    op.execute("drop table if exists city.purge_log")
